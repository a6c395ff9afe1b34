//! Running child processes for a stage: one process group for all of them (so cancelling kills
//! everything they started) that dies with camel (`PR_SET_PDEATHSIG`, so a `kill -9` of camel
//! leaves nothing writing behind it); stdout lines `camel-progress: DONE/TOTAL [UNIT] [message]`
//! of the first child move the stage's progress bar, other output goes to the stage log. Used by
//! `command` (one child) and by the torch stages (one child per rank when training is
//! distributed: the first one to fail stops the others and names the stage's error).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use camel_engine::{StageContext, StageError};

/// Lines of stderr kept per child to explain a failure.
const TAIL_LINES: usize = 20;

/// How a finished child is reported.
pub struct ChildOptions<'a> {
    /// What the child is, for messages: "the command", "camel-torch-worker".
    pub what: &'a str,
    /// On failure, append the child's last stderr lines that start with this prefix (its error
    /// message) to the stage's error.
    pub error_prefix: Option<&'a str>,
}

/// Runs `cmd` to completion for the stage, relaying progress and logs and honouring cancellation.
pub fn run_child(ctx: &StageContext, cmd: Process, opts: ChildOptions) -> Result<(), StageError> {
    run_children(ctx, vec![cmd], opts)
}

/// Runs `cmds` side by side (ranks of one job) until all have exited. Child 0 drives the progress
/// bar. When one fails, the others are killed at once, and the error is the first failure's.
pub fn run_children(ctx: &StageContext, cmds: Vec<Process>, opts: ChildOptions) -> Result<(), StageError> {
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
    let log_path = ctx.log_path().to_path_buf();
    let log = Mutex::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(StageError::io("open the stage log"))?,
    );
    let tails: Vec<Mutex<VecDeque<String>>> =
        (0..n).map(|_| Mutex::new(VecDeque::with_capacity(TAIL_LINES))).collect();
    let pipes: Vec<_> = children
        .iter_mut()
        .map(|c| (c.stdout.take().expect("stdout is piped"), c.stderr.take().expect("stderr is piped")))
        .collect();
    let outcome = std::thread::scope(|s| {
        let mut readers = Vec::new();
        for (i, (stdout, stderr)) in pipes.into_iter().enumerate() {
            let (log, tail) = (&log, &tails[i]);
            readers.push(s.spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match line.strip_prefix("camel-progress:") {
                        Some(p) if i == 0 => report_progress(ctx, p.trim()),
                        Some(_) => {}
                        None => {
                            let _ = writeln!(log.lock().unwrap(), "{line}");
                        }
                    }
                }
            }));
            readers.push(s.spawn(move || {
                let mut reader = BufReader::new(stderr);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.by_ref().read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let _ = log.lock().unwrap().write_all(&buf);
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            let mut t = tail.lock().unwrap();
                            if t.len() == TAIL_LINES {
                                t.pop_front();
                            }
                            t.push_back(line);
                        }
                    }
                }
            }));
        }
        let outcome = wait_all(ctx, group, &mut children);
        for r in readers {
            let _ = r.join();
        }
        outcome
    })?;
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
        msg.push_str(&format!(
            "\n(the other ranks were stopped; every rank's output is in {})",
            ctx.log_path().display()
        ));
    }
    Err(StageError::msg(msg))
}

/// Waits for every child. `Ok(None)`: all succeeded; `Ok(Some((i, status)))`: child `i` was the
/// first to fail (the rest were killed); `Err(Cancelled)` when the run was interrupted.
fn wait_all(
    ctx: &StageContext,
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
        if ctx.is_cancelled() {
            kill_group(group, children);
            return Err(StageError::Cancelled);
        }
        std::thread::sleep(Duration::from_millis(20));
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
/// `DONE/TOTAL [UNIT] [message…]`: a position, an optional total and unit, and the rest of the
/// line as the bar's message (e.g. `12/300 steps loss 2.31 · 5400 tok/s`).
fn report_progress(ctx: &StageContext, spec: &str) {
    let mut parts = spec.splitn(3, char::is_whitespace);
    let Some(frac) = parts.next() else { return };
    let unit = parts.next().unwrap_or("items");
    let message = parts.next().map(str::trim).filter(|m| !m.is_empty());
    let (pos, total) = match frac.split_once('/') {
        Some((a, b)) => (a.parse().ok(), b.parse().ok()),
        None => (frac.parse().ok(), None),
    };
    if let Some(pos) = pos {
        ctx.progress().set_total(total, unit);
        ctx.progress().set_position(pos);
        if let Some(m) = message {
            ctx.progress().message(m);
        }
    }
}
