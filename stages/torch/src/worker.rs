//! Finding `camel-torch-worker` and running it. Every worker process camel starts (a training
//! stage's ranks, an `answer` stage, `camel generate`, a follower rank's jobs) starts in
//! [`Worker::run`] and is supervised by `camel_engine::process`: one process group, killed with
//! camel, stopped on cancellation or when a sibling rank fails, progress lines relayed, output
//! captured.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::sync::Mutex;

use camel_engine::StageError;
use camel_engine::process::{ChildHost, ChildOptions, Stream, supervise};
use camel_torch_job::line::{ERROR_PREFIX, Progress};

/// Names the worker binary, overriding the one beside camel.
pub const WORKER_ENV: &str = "CAMEL_TORCH_WORKER";
const WORKER_NAME: &str = "camel-torch-worker";

/// The torchrun variables that make a process a rank of a group.
pub(crate) const RANK_VARS: [&str; 5] = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

/// The worker's commands that run a job file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subcommand {
    Train,
    Answer,
    Generate,
}

impl Subcommand {
    fn as_str(self) -> &'static str {
        match self {
            Subcommand::Train => "train",
            Subcommand::Answer => "answer",
            Subcommand::Generate => "generate",
        }
    }
}

/// Which processes one job runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranks {
    /// One process outside any group: rank variables in camel's environment do not reach it.
    Single,
    /// One process with camel's environment as it is (this camel's rank of an external launch,
    /// or a job that does no collectives).
    Inherit,
    /// `n` processes on this machine meeting at `127.0.0.1:port`.
    Local { n: usize, port: u16 },
}

impl Ranks {
    /// `n` local ranks with a rendezvous port the OS had free a moment ago.
    pub fn local(n: usize) -> Result<Ranks, StageError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(StageError::io("find a free port for the ranks' rendezvous"))?
            .port();
        Ok(Ranks::Local { n, port })
    }
}

/// The worker binary.
#[derive(Clone, Debug)]
pub struct Worker {
    path: PathBuf,
}

impl Worker {
    /// `$CAMEL_TORCH_WORKER`, else `camel-torch-worker` next to the running camel.
    pub fn find() -> Result<Worker, StageError> {
        if let Some(p) = std::env::var_os(WORKER_ENV) {
            let path = PathBuf::from(p);
            return if path.is_file() {
                Ok(Worker { path })
            } else {
                Err(StageError::msg(format!("{WORKER_ENV}={} does not name a file", path.display())))
            };
        }
        let exe = std::env::current_exe().map_err(StageError::io("find the running camel executable"))?;
        match exe.parent().map(|d| d.join(WORKER_NAME)) {
            Some(path) if path.is_file() => Ok(Worker { path }),
            _ => Err(StageError::msg(format!(
                "the libtorch worker `{WORKER_NAME}` is not next to {}: build it with `scripts/setup` (a release \
                 build of the whole workspace against the venv's torch), or set {WORKER_ENV} to its path",
                exe.display()
            ))),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `camel-torch-worker SUB JOB` as `ranks` in `dir` until every process has exited, with
    /// `host` receiving their progress and output; the first failure stops the others and is the
    /// error (with the worker's error line).
    pub fn run(
        &self,
        host: &dyn ChildHost,
        sub: Subcommand,
        job: &Path,
        ranks: Ranks,
        dir: Option<&Path>,
    ) -> Result<(), StageError> {
        let command = || {
            let mut cmd = Process::new(&self.path);
            cmd.arg(sub.as_str()).arg(job);
            if let Some(d) = dir {
                cmd.current_dir(d);
            }
            cmd
        };
        let cmds = match ranks {
            Ranks::Inherit => vec![command()],
            Ranks::Single => {
                let mut cmd = command();
                for k in RANK_VARS.iter().chain(&["LOCAL_WORLD_SIZE"]) {
                    cmd.env_remove(k);
                }
                vec![cmd]
            }
            Ranks::Local { n, port } => (0..n)
                .map(|rank| {
                    let mut cmd = command();
                    cmd.env("RANK", rank.to_string())
                        .env("LOCAL_RANK", rank.to_string())
                        .env("WORLD_SIZE", n.to_string())
                        .env("LOCAL_WORLD_SIZE", n.to_string())
                        .env("MASTER_ADDR", "127.0.0.1")
                        .env("MASTER_PORT", port.to_string());
                    cmd
                })
                .collect(),
        };
        supervise(host, cmds, ChildOptions { what: WORKER_NAME, error_prefix: Some(ERROR_PREFIX) })
    }
}

/// The CLI's side of a worker (no stage, no progress bar): its stderr goes to camel's stderr as
/// it comes; its stdout to camel's stdout, or kept for the caller (`camel generate` reads it).
pub(crate) struct Terminal {
    kept: Option<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Passes everything through.
    pub(crate) fn passthrough() -> Terminal {
        Terminal { kept: None }
    }

    /// Keeps stdout.
    pub(crate) fn keeping_stdout() -> Terminal {
        Terminal { kept: Some(Mutex::new(Vec::new())) }
    }

    pub(crate) fn into_stdout(self) -> Vec<u8> {
        self.kept.map(|k| k.into_inner().unwrap()).unwrap_or_default()
    }
}

impl ChildHost for Terminal {
    /// Another camel (rank 0, or nobody for `camel generate`) draws the bar.
    fn progress(&self, _: Progress) {}

    fn output(&self, _child: usize, stream: Stream, line: &[u8]) {
        match (stream, &self.kept) {
            (Stream::Stdout, Some(kept)) => kept.lock().unwrap().extend_from_slice(line),
            (Stream::Stdout, None) => {
                let _ = std::io::stdout().lock().write_all(line);
            }
            (Stream::Stderr, _) => {
                let _ = std::io::stderr().lock().write_all(line);
            }
        }
    }
}
