//! Slurm's command-line tools, as camel calls them. A busy controller makes `sbatch`, `squeue`
//! and `scontrol` fail for a moment ("Socket timed out", "Unable to contact slurm controller");
//! those failures are retried with backoff for `retry_for`, anything else is a real answer.
//! Job states come from one `squeue` for all of the user's jobs per `poll_interval`, however many
//! stages are waiting, and from `scontrol`/`sacct` only for a job `squeue` no longer lists
//! (`sacct` only where accounting answers: many small clusters have none).

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What Slurm says of one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobState {
    pub id: String,
    /// PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY, CANCELLED, …
    pub state: String,
    /// The pending reason (Priority, Resources, BeginTime, …) or `None`.
    pub reason: String,
    /// `exit:signal` where Slurm reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
}

impl JobState {
    /// Slurm's reason, unless it has none (`None`, as squeue and scontrol write it).
    pub fn reason(&self) -> Option<&str> {
        Some(self.reason.trim()).filter(|r| !r.is_empty() && *r != "None" && *r != "(null)")
    }

    /// Slurm's reason for a job that ended, where it says why it ended (`NonZeroExitCode`,
    /// `TimeLimit`, `NodeDown`, …). Slurm keeps a job's last pending reason after it ends: a job
    /// cancelled while it waited still says `Priority` or `Resources`, which is not why it ended.
    /// So a cancelled job has none, nor has a job whose reason is one of waiting.
    pub fn end_reason(&self) -> Option<&str> {
        if self.state.starts_with("CANCELLED") {
            return None;
        }
        self.reason().filter(|r| !is_pending_reason(r))
    }

    /// The job may still run (or is being requeued): wait for it.
    pub fn is_active(&self) -> bool {
        matches!(
            self.state.as_str(),
            "PENDING"
                | "RUNNING"
                | "CONFIGURING"
                | "COMPLETING"
                | "REQUEUED"
                | "REQUEUE_FED"
                | "REQUEUE_HOLD"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
                | "SIGNALING"
                | "STAGE_OUT"
                | "RESV_DEL_HOLD"
                | "SPECIAL_EXIT"
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot run `{cmd}`: {source} (is Slurm's client installed and on PATH?)")]
    Start {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    /// Slurm answered no: the message is Slurm's.
    #[error("`{cmd}` failed: {message}")]
    Refused { cmd: String, message: String },
    #[error("`{cmd}` kept failing for {secs:.0} s (the controller is unreachable or busy): {message}")]
    Unavailable { cmd: String, message: String, secs: f64 },
}

/// Messages of a controller that is busy or restarting, worth another try.
const TRANSIENT: &[&str] = &[
    "socket timed out",
    "timed out",
    "unexpected message received",
    "unable to contact slurm controller",
    "slurm controller not responding",
    "connection refused",
    "connection reset",
    "transport endpoint is not connected",
    "zero bytes were transmitted or received",
    "communication connection failure",
    "resource temporarily unavailable",
    "try again",
    "backup controller in standby mode",
];

pub fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    TRANSIENT.iter().any(|t| m.contains(t))
}

/// How long one call may take before it counts as a transient failure (and is killed).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The Slurm tools, shared by every stage of a run.
pub struct Slurm {
    retry_for: Duration,
    poll_interval: Duration,
    poll: Mutex<Poll>,
    /// Told about each retried failure, so that the user sees a struggling controller.
    on_retry: Box<dyn Fn(&str) + Send + Sync>,
    /// Environment variables set for every tool, over camel's own (`SLURM_CONF` in tests).
    envs: Vec<(String, String)>,
}

#[derive(Default)]
struct Poll {
    at: Option<Instant>,
    states: HashMap<String, JobState>,
    calls: u64,
}

impl Slurm {
    pub fn new(
        poll_interval: Duration,
        retry_for: Duration,
        on_retry: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Slurm {
        Slurm { retry_for, poll_interval, poll: Mutex::new(Poll::default()), on_retry, envs: Vec::new() }
    }

    /// Sets `key=value` in the environment of every Slurm tool this client runs.
    pub fn env(mut self, key: &str, value: &str) -> Slurm {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// One call, no retry: stdout, or the error with Slurm's message.
    pub fn call_once(&self, program: &str, args: &[&str]) -> Result<String, CtlError> {
        let cmd = format!("{program} {}", args.join(" "));
        let mut child = Command::new(program)
            .args(args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| CtlError::Start { cmd: cmd.clone(), source })?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + CALL_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stderr = reader.join().unwrap_or_default();
        let stdout = out_reader.join().unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(stdout),
            Some(s) => {
                let msg = stderr.trim();
                let msg = if msg.is_empty() {
                    format!("exit status {}", s.code().unwrap_or(-1))
                } else {
                    msg.into()
                };
                Err(CtlError::Refused { cmd, message: msg })
            }
            None => Err(CtlError::Refused {
                cmd,
                message: format!("socket timed out: no answer within {} s", CALL_TIMEOUT.as_secs()),
            }),
        }
    }

    /// `call_once`, retried with backoff while the failure looks transient, for `retry_for`.
    /// `before_retry` runs before each new try; when it returns `Some`, that is the answer (for
    /// `sbatch`: the job that the failed call did submit after all).
    pub fn call(
        &self,
        program: &str,
        args: &[&str],
        mut before_retry: impl FnMut() -> Option<String>,
    ) -> Result<String, CtlError> {
        let t0 = Instant::now();
        let mut wait = Duration::from_millis(500);
        loop {
            match self.call_once(program, args) {
                Err(CtlError::Refused { cmd, message }) if is_transient(&message) => {
                    if t0.elapsed() + wait > self.retry_for {
                        return Err(CtlError::Unavailable { cmd, message, secs: t0.elapsed().as_secs_f64() });
                    }
                    (self.on_retry)(&format!(
                        "`{cmd}` failed ({message}); retrying in {:.1} s",
                        wait.as_secs_f64()
                    ));
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(30));
                    if let Some(answer) = before_retry() {
                        return Ok(answer);
                    }
                }
                other => return other,
            }
        }
    }

    /// The state of every job of this user that Slurm still lists (recently finished ones
    /// included), by job id. At most one `squeue` per poll interval, whoever asks.
    pub fn states(&self) -> Result<HashMap<String, JobState>, CtlError> {
        let mut p = self.poll.lock().expect("poll lock");
        if let Some(at) = p.at
            && at.elapsed() < self.poll_interval
        {
            return Ok(p.states.clone());
        }
        let out = self.call("squeue", &["-h", "-t", "all", "-u", &uid(), "-o", "%i|%T|%r"], || None)?;
        p.calls += 1;
        p.states = parse_squeue(&out);
        p.at = Some(Instant::now());
        Ok(p.states.clone())
    }

    /// Forgets the last poll, so that the next [`Slurm::states`] asks Slurm again.
    pub fn refresh(&self) {
        self.poll.lock().expect("poll lock").at = None;
    }

    /// How many `squeue` polls this client made (for the overhead benchmark and tests).
    pub fn polls(&self) -> u64 {
        self.poll.lock().expect("poll lock").calls
    }

    /// A job's final word from `scontrol` (or `sacct`, where accounting answers), for a job that
    /// `squeue` no longer lists or to learn its exit code. `None` when nobody knows it any more.
    pub fn final_state(&self, id: &str) -> Option<JobState> {
        if let Ok(out) = self.call("scontrol", &["show", "job", "-o", id], || None) {
            let field =
                |name: &str| out.split_whitespace().find_map(|w| w.strip_prefix(name).map(str::to_string));
            if let Some(state) = field("JobState=") {
                return Some(JobState {
                    id: id.into(),
                    state,
                    reason: field("Reason=").unwrap_or_default(),
                    exit_code: field("ExitCode="),
                });
            }
        }
        let out = self.call_once("sacct", &["-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"]).ok()?;
        let line = out.lines().next()?;
        let (state, exit) = line.split_once('|')?;
        // sacct writes `CANCELLED by 0`.
        let state = state.split_whitespace().next()?.to_string();
        Some(JobState { id: id.into(), state, reason: String::new(), exit_code: Some(exit.into()) })
    }

    /// This user's jobs called `name` that Slurm still lists, ended ones included: a caller
    /// that looks for a job to wait for keeps the [active](JobState::is_active) ones (an sbatch
    /// that Slurm refused can leave a FAILED job of that name behind).
    pub fn find_by_name(&self, name: &str) -> Result<Vec<JobState>, CtlError> {
        let out =
            self.call("squeue", &["-h", "-t", "all", "-u", &uid(), "-n", name, "-o", "%i|%T|%r"], || None)?;
        Ok(parse_squeue(&out).into_values().collect())
    }

    /// The cluster's partitions (`sinfo`), and which one is the default.
    pub fn partitions(&self) -> Result<Partitions, CtlError> {
        let out = self.call("sinfo", &["-h", "-o", "%P"], || None)?;
        let mut p = Partitions::default();
        for name in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match name.strip_suffix('*') {
                Some(d) => {
                    p.default = Some(d.to_string());
                    p.names.push(d.to_string());
                }
                None => p.names.push(name.to_string()),
            }
        }
        p.names.dedup();
        Ok(p)
    }

    pub fn cancel(&self, id: &str) -> Result<(), CtlError> {
        self.call("scancel", &[id], || None).map(|_| ())
    }
}

/// Reasons Slurm gives a job for waiting in the queue (squeue's "JOB REASON CODES"), which stay
/// on the job after it ends without saying anything about its end.
fn is_pending_reason(r: &str) -> bool {
    const WAITING: &[&str] = &[
        "Priority",
        "Resources",
        "BeginTime",
        "Dependency",
        "DependencyNeverSatisfied",
        "JobHeldUser",
        "JobHeldAdmin",
        "JobArrayTaskLimit",
        "Licenses",
        "None",
        "PartitionDown",
        "PartitionInactive",
        "PartitionNodeLimit",
        "PartitionTimeLimit",
        "Reservation",
        "ReqNodeNotAvail",
        "Cleaning",
        "Prolog",
    ];
    WAITING.iter().any(|w| r == *w || (r.starts_with(w) && r[w.len()..].starts_with([',', ' ', '('])))
        || r.starts_with("QOS")
        || r.starts_with("Assoc")
        || r.starts_with("MaxCpuPerAccount")
}

/// `squeue -o %i|%T|%r` lines, by job id.
fn parse_squeue(out: &str) -> HashMap<String, JobState> {
    out.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, '|');
            let (id, state, reason) = (f.next()?, f.next()?, f.next().unwrap_or(""));
            (!id.is_empty()).then(|| {
                (
                    id.to_string(),
                    JobState { id: id.into(), state: state.into(), reason: reason.into(), exit_code: None },
                )
            })
        })
        .collect()
}

/// What `sinfo` says of the cluster's partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Partitions {
    pub names: Vec<String>,
    /// The partition a job without `--partition` goes to, if the cluster has one.
    pub default: Option<String>,
}

/// This user's id, as squeue's `-u` takes it: camel watches only its own jobs.
fn uid() -> String {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_are_told_from_answers() {
        assert!(is_transient(
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
        ));
        assert!(is_transient("squeue: error: slurm_receive_msg: Unexpected message received"));
        assert!(is_transient("error: Unable to contact slurm controller (connect failure)"));
        assert!(!is_transient(
            "sbatch: error: Batch job submission failed: Invalid partition name specified"
        ));
        assert!(!is_transient(
            "sbatch: error: Batch job submission failed: Requested node configuration is not available"
        ));
    }

    #[test]
    fn states_active_or_final() {
        let s = |state: &str| JobState {
            id: "1".into(),
            state: state.into(),
            reason: String::new(),
            exit_code: None,
        };
        for a in ["PENDING", "RUNNING", "COMPLETING", "REQUEUED"] {
            assert!(s(a).is_active(), "{a}");
        }
        for f in ["COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "CANCELLED", "NODE_FAIL", "PREEMPTED"] {
            assert!(!s(f).is_active(), "{f}");
        }
    }

    #[test]
    fn a_reason_of_none_is_no_reason() {
        let s = |reason: &str| JobState {
            id: "1".into(),
            state: "PENDING".into(),
            reason: reason.into(),
            exit_code: None,
        };
        assert_eq!(s("None").reason(), None);
        assert_eq!(s("").reason(), None);
        assert_eq!(s("Priority").reason(), Some("Priority"));
        let parsed = parse_squeue("7|PENDING|None\n8|FAILED|BadConstraints\n\n");
        assert_eq!(parsed["7"].reason(), None);
        assert_eq!(parsed["8"].reason(), Some("BadConstraints"));
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn an_ended_job_keeps_no_stale_pending_reason() {
        let s = |state: &str, reason: &str| JobState {
            id: "1".into(),
            state: state.into(),
            reason: reason.into(),
            exit_code: None,
        };
        assert_eq!(s("CANCELLED", "Resources").end_reason(), None);
        assert_eq!(s("CANCELLED", "Priority").end_reason(), None);
        assert_eq!(s("CANCELLED+", "None").end_reason(), None);
        assert_eq!(s("FAILED", "Priority").end_reason(), None);
        assert_eq!(s("FAILED", "ReqNodeNotAvail, UnavailableNodes:vm").end_reason(), None);
        assert_eq!(s("COMPLETED", "QOSMaxJobsPerUserLimit").end_reason(), None);
        assert_eq!(s("FAILED", "NonZeroExitCode").end_reason(), Some("NonZeroExitCode"));
        assert_eq!(s("TIMEOUT", "TimeLimit").end_reason(), Some("TimeLimit"));
        assert_eq!(s("NODE_FAIL", "NodeDown").end_reason(), Some("NodeDown"));
        assert_eq!(s("OUT_OF_MEMORY", "OutOfMemory").end_reason(), Some("OutOfMemory"));
    }

    #[test]
    fn a_missing_tool_says_so() {
        let s = Slurm::new(Duration::from_secs(1), Duration::from_secs(1), Box::new(|_| {}));
        let e = s.call_once("camel-no-such-sbatch", &["x"]).unwrap_err();
        assert!(e.to_string().contains("Slurm's client"), "{e}");
    }
}
