//! Running a child process for a stage: its own process group (so cancelling kills everything it
//! started) that dies with camel (`PR_SET_PDEATHSIG`, so a `kill -9` of camel leaves nothing
//! writing behind it); stdout lines `camel-progress: DONE/TOTAL [UNIT] [message]` move the stage's
//! progress bar, other output goes to the stage log. Used by `command` and by the torch stages.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command as Process, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use camel_engine::{StageContext, StageError};

/// Lines of stderr kept to explain a failure.
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
pub fn run_child(ctx: &StageContext, mut cmd: Process, opts: ChildOptions) -> Result<(), StageError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(StageError::io(format!("start {}", opts.what)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let log_path = ctx.log_path().to_path_buf();
    let log = Mutex::new(
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(StageError::io("open the stage log"))?,
    );
    let tail = Mutex::new(VecDeque::with_capacity(TAIL_LINES));
    let status = std::thread::scope(|s| {
        let out = s.spawn(|| {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(p) = line.strip_prefix("camel-progress:") {
                    report_progress(ctx, p.trim());
                } else {
                    let _ = writeln!(log.lock().unwrap(), "{line}");
                }
            }
        });
        let err = s.spawn(|| {
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
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) => {}
                Err(e) => break Err(StageError::io(format!("wait for {}", opts.what))(e)),
            }
            if ctx.is_cancelled() {
                // SAFETY: kill(2) on our child's process group.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGTERM) };
                std::thread::sleep(Duration::from_millis(200));
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                break Err(StageError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = out.join();
        let _ = err.join();
        status
    })?;
    if status.success() {
        return Ok(());
    }
    let mut msg = match status.code() {
        Some(code) => format!("{} exited with status {code}", opts.what),
        None => format!("{} was killed by signal {}", opts.what, status.signal().unwrap_or(0)),
    };
    if let Some(prefix) = opts.error_prefix {
        let tail = tail.lock().unwrap();
        if let Some(i) = tail.iter().position(|l| l.starts_with(prefix)) {
            let lines: Vec<&str> = tail.iter().skip(i).map(String::as_str).collect();
            msg = format!("{msg}: {}", lines.join("\n").trim_start_matches(prefix).trim());
        }
    }
    Err(StageError::msg(msg))
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
