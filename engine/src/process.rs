//! Supervising the child processes camel starts, in one place: a stage's (the `command` kind's
//! shell, the torch worker's ranks) and the CLI's (`camel generate`, a follower rank's worker).
//!
//! All children of one call share a process group, so that stopping them kills everything they
//! started, and each dies with camel (`PR_SET_PDEATHSIG`), so that a `kill -9` of camel leaves
//! nothing writing behind it. What they start in turn (a command's own background jobs, a
//! script's subprocesses) does not inherit that setting: a watchdog process, which sees camel go
//! by the end of a pipe only camel holds, kills the whole group then (a kill -9, a hangup). When
//! the children have all exited, whatever they left running in the group is stopped too: a stage
//! ends when its commands do. Stdout lines `camel-progress: DONE/TOTAL [UNIT] [message]`
//! ([`camel_torch_job::line`]) of the first child move a progress bar; every other line goes to
//! the [`ChildHost`] (a stage's log, or the terminal). When one child fails, the others are
//! stopped at once, and the error names the first failure with its last words.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use camel_torch_job::line::Progress as ProgressLine;

use crate::{StageContext, StageError};

/// Lines of stderr kept per child to explain a failure.
const TAIL_LINES: usize = 20;

/// How a finished child is reported.
pub struct ChildOptions<'a> {
    /// What the child is, for messages: "the command", "camel-torch-worker".
    pub what: &'a str,
    /// On failure, append the child's last stderr lines that start with this prefix (its error
    /// message) to the error.
    pub error_prefix: Option<&'a str>,
}

/// Which of a child's streams a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where supervised children's output goes, and whether to stop them.
pub trait ChildHost: Sync {
    /// A progress line of child 0 (the other children's are dropped: one bar per job).
    fn progress(&self, progress: ProgressLine);
    /// Any other line of child `child`, as written (with its newline, when it had one).
    fn output(&self, child: usize, stream: Stream, line: &[u8]);
    /// Polled while the children run: `true` stops them and fails with [`StageError::Cancelled`].
    fn is_cancelled(&self) -> bool {
        false
    }
    /// Where every child's output can be read, named when one of several children failed.
    fn output_location(&self) -> Option<String> {
        None
    }
}

/// Runs `cmd` to completion for the stage: progress on its bar, output in its log, stopped when
/// the run is cancelled.
pub fn run_child(ctx: &StageContext, cmd: Process, opts: ChildOptions) -> Result<(), StageError> {
    run_children(ctx, vec![cmd], opts)
}

/// [`run_child`] for several children side by side (the ranks of one job).
pub fn run_children(ctx: &StageContext, cmds: Vec<Process>, opts: ChildOptions) -> Result<(), StageError> {
    supervise(&StageHost::new(ctx)?, cmds, opts)
}

/// A stage's side of its children: its progress bar, its log, its cancellation.
pub struct StageHost<'a> {
    ctx: &'a StageContext,
    log: Mutex<std::fs::File>,
}

impl<'a> StageHost<'a> {
    pub fn new(ctx: &'a StageContext) -> Result<Self, StageError> {
        // Appending: the stage's own lines and its children's interleave in order.
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(ctx.log_path())
            .map_err(StageError::io("open the stage log"))?;
        Ok(StageHost { ctx, log: Mutex::new(log) })
    }
}

impl ChildHost for StageHost<'_> {
    fn progress(&self, p: ProgressLine) {
        let bar = self.ctx.progress();
        bar.set_total(p.total, &p.unit);
        bar.set_position(p.pos);
        if let Some(m) = &p.message {
            bar.message(m);
        }
    }

    fn output(&self, _child: usize, _stream: Stream, line: &[u8]) {
        let _ = self.log.lock().unwrap().write_all(line);
    }

    fn is_cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }

    fn output_location(&self) -> Option<String> {
        Some(self.ctx.log_path().display().to_string())
    }
}

/// Runs `cmds` side by side until all have exited, relaying their output to `host`. Child 0
/// drives the progress. When one fails, the others are killed at once, and the error is the
/// first failure's.
pub fn supervise(host: &dyn ChildHost, cmds: Vec<Process>, opts: ChildOptions) -> Result<(), StageError> {
    let n = cmds.len();
    let label = |i: usize| if n == 1 { opts.what.to_string() } else { format!("{} rank {i}", opts.what) };
    let mut children: Vec<Child> = Vec::with_capacity(n);
    let mut group: Option<i32> = None;
    for (i, mut cmd) in cmds.into_iter().enumerate() {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.process_group(group.unwrap_or(0));
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(child) => {
                group.get_or_insert(child.id() as i32);
                children.push(child);
            }
            Err(e) => {
                if let Some(g) = group {
                    kill_group(g, &mut children);
                }
                return Err(StageError::io(format!("start {}", label(i)))(e));
            }
        }
    }
    let Some(group) = group else { return Ok(()) };
    let watchdog = Watchdog::start(group);
    let tails: Vec<Mutex<VecDeque<String>>> =
        (0..n).map(|_| Mutex::new(VecDeque::with_capacity(TAIL_LINES))).collect();
    let pipes: Vec<_> = children
        .iter_mut()
        .map(|c| (c.stdout.take().expect("stdout is piped"), c.stderr.take().expect("stderr is piped")))
        .collect();
    let outcome = std::thread::scope(|s| {
        let mut readers = Vec::new();
        for (i, (stdout, stderr)) in pipes.into_iter().enumerate() {
            let tail = &tails[i];
            readers.push(s.spawn(move || {
                each_line(stdout, |line| {
                    let text = String::from_utf8_lossy(line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    if !ProgressLine::is_progress_line(text) {
                        host.output(i, Stream::Stdout, line);
                    } else if i == 0
                        && let Some(p) = ProgressLine::parse(text)
                    {
                        host.progress(p);
                    }
                })
            }));
            readers.push(s.spawn(move || {
                each_line(stderr, |line| {
                    host.output(i, Stream::Stderr, line);
                    let line = String::from_utf8_lossy(line).trim_end().to_string();
                    let mut t = tail.lock().unwrap();
                    if t.len() == TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line);
                })
            }));
        }
        let outcome = wait_all(host, group, &mut children);
        // SAFETY: kill(2) with signal 0 only asks whether the group still has a process.
        if matches!(outcome, Ok(None)) && unsafe { libc::kill(-group, 0) } == 0 {
            // Every child exited well, and left something in the group (a `server &`), which
            // would hold the pipes open and outlive the stage.
            kill_group(group, &mut children);
        }
        for r in readers {
            let _ = r.join();
        }
        outcome
    });
    drop(watchdog);
    let outcome = outcome?;
    let Some((i, status)) = outcome else { return Ok(()) };
    let mut msg = match status.code() {
        Some(code) => format!("{} exited with status {code}", label(i)),
        None => format!("{} was killed by signal {}", label(i), status.signal().unwrap_or(0)),
    };
    if let Some(prefix) = opts.error_prefix {
        let tail = tails[i].lock().unwrap();
        if let Some(j) = tail.iter().position(|l| l.starts_with(prefix)) {
            let lines: Vec<&str> = tail.iter().skip(j).map(String::as_str).collect();
            msg = format!("{msg}: {}", lines.join("\n").trim_start_matches(prefix).trim());
        } else if let Some(last) = tail.iter().rev().find(|l| !l.trim().is_empty()) {
            // Killed or aborted without an error line: its last words say where it was.
            msg = format!("{msg}; its last line: {}", last.trim());
        }
    }
    if n > 1 {
        msg.push_str("\n(the other ranks were stopped");
        if let Some(place) = host.output_location() {
            msg.push_str(&format!("; every rank's output is in {place}"));
        }
        msg.push(')');
    }
    Err(StageError::msg(msg))
}

/// Calls `f` with each line of `pipe` (its newline included) until it closes.
fn each_line(pipe: impl Read, mut f: impl FnMut(&[u8])) {
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => f(&buf),
        }
    }
}

/// Waits for every child. `Ok(None)`: all succeeded; `Ok(Some((i, status)))`: child `i` was the
/// first to fail (the rest were killed); `Err(Cancelled)` when the host cancelled.
fn wait_all(
    host: &dyn ChildHost,
    group: i32,
    children: &mut [Child],
) -> Result<Option<(usize, ExitStatus)>, StageError> {
    let mut done: Vec<Option<ExitStatus>> = vec![None; children.len()];
    loop {
        for (i, child) in children.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match child.try_wait() {
                Ok(Some(st)) => {
                    done[i] = Some(st);
                    if !st.success() {
                        kill_group(group, children);
                        return Ok(Some((i, st)));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    kill_group(group, children);
                    return Err(StageError::io("wait for a child process")(e));
                }
            }
        }
        if done.iter().all(Option::is_some) {
            return Ok(None);
        }
        if host.is_cancelled() {
            kill_group(group, children);
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process that kills a process group with SIGKILL when camel is gone: it waits for the end of
/// a pipe whose only writer is camel (close-on-exec: no child inherits it), which the kernel
/// closes however camel ends. Dropped when the group is done with: it is killed first, so that it
/// never signals a group id the system may since have reused.
struct Watchdog {
    child: Option<Child>,
    _writer: Option<std::os::fd::OwnedFd>,
}

impl Watchdog {
    fn start(group: i32) -> Watchdog {
        let none = Watchdog { child: None, _writer: None };
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return none;
        }
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (reader, writer) =
            unsafe { (std::os::fd::OwnedFd::from_raw_fd(fds[0]), std::os::fd::OwnedFd::from_raw_fd(fds[1])) };
        let mut cmd = Process::new("/bin/sh");
        cmd.args([
            "-c",
            r#"trap '' HUP INT TERM; read _; kill -s KILL -- "-$1" 2>/dev/null"#,
            "camel-watchdog",
        ])
        .arg(group.to_string())
        .stdin(Stdio::from(reader))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
        match cmd.spawn() {
            Ok(child) => Watchdog { child: Some(child), _writer: Some(writer) },
            // Without one, the direct children still die with camel.
            Err(_) => none,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM to the whole group, SIGKILL shortly after, then reap every child.
fn kill_group(group: i32, children: &mut [Child]) {
    // SAFETY: kill(2) on the process group our children were started in.
    unsafe { libc::kill(-group, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(200));
    unsafe { libc::kill(-group, libc::SIGKILL) };
    for c in children {
        let _ = c.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a host is told.
    #[derive(Default)]
    struct Recorder {
        progress: Mutex<Vec<ProgressLine>>,
        lines: Mutex<Vec<(usize, Stream, String)>>,
    }

    impl ChildHost for Recorder {
        fn progress(&self, p: ProgressLine) {
            self.progress.lock().unwrap().push(p);
        }
        fn output(&self, child: usize, stream: Stream, line: &[u8]) {
            self.lines.lock().unwrap().push((child, stream, String::from_utf8_lossy(line).into_owned()));
        }
    }

    fn sh(script: &str) -> Process {
        let mut c = Process::new("sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn progress_and_output_are_relayed() {
        let host = Recorder::default();
        let cmds = vec![
            sh("echo 'camel-progress: 2/4 rows fast'; echo out; echo err >&2"),
            sh("echo 'camel-progress: 1/4 rows'; echo other"),
        ];
        supervise(&host, cmds, ChildOptions { what: "t", error_prefix: None }).unwrap();
        let p = host.progress.lock().unwrap();
        assert_eq!(p.len(), 1, "only child 0 drives the bar: {p:?}");
        assert_eq!((p[0].pos, p[0].total, p[0].message.as_deref()), (2, Some(4), Some("fast")));
        let mut lines = host.lines.lock().unwrap().clone();
        lines.sort_by_key(|l| (l.0, l.2.clone()));
        assert_eq!(
            lines,
            [
                (0, Stream::Stderr, "err\n".to_string()),
                (0, Stream::Stdout, "out\n".to_string()),
                (1, Stream::Stdout, "other\n".to_string())
            ]
        );
    }

    #[test]
    fn the_first_failure_stops_the_others_and_is_quoted() {
        let host = Recorder::default();
        let started = std::time::Instant::now();
        let cmds =
            vec![sh("sleep 60"), sh("sleep 0.2; echo 'w: error: it broke' >&2; echo more >&2; exit 3")];
        let err =
            supervise(&host, cmds, ChildOptions { what: "w", error_prefix: Some("w: error:") }).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(30), "child 0 was not stopped");
        assert_eq!(
            err.to_string(),
            "w rank 1 exited with status 3: it broke\nmore\n(the other ranks were stopped)"
        );
        let err = supervise(
            &host,
            vec![sh("echo last words >&2; kill -9 $$")],
            ChildOptions { what: "w", error_prefix: Some("w: error:") },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "w was killed by signal 9; its last line: last words");
    }
}
