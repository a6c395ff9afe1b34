//! What the engine tells its caller while it works. The engine never prints: the CLI renders
//! these events as progress bars or log lines, and tests collect them or drop them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The stage ran and its outputs were committed.
    Ran,
    /// A valid cache entry for the stage's key already existed.
    Cached,
    Failed(String),
    /// Not run: an upstream stage failed, or the run was interrupted first.
    Skipped,
    /// `--detach`: submitted to Slurm as this job id; a later `camel run` commits it.
    Submitted(String),
    /// Stopped by Ctrl-C while running; its scratch state is kept for the next run.
    Interrupted,
}

#[derive(Clone, Debug)]
pub enum Event {
    RunStarted {
        pipeline: String,
        stages: usize,
    },
    /// The stage's key is known and it is about to run; `reasons` says why it is not cached.
    StageStarted {
        stage: String,
        key: String,
        reasons: Vec<String>,
    },
    /// Sent right after [`Event::StageStarted`] when the stage picks up what an earlier run left.
    StageResumes {
        stage: String,
        partial: Partial,
    },
    /// Sent before a stage's [`Outcome::Skipped`] when it was skipped because upstream stages failed
    /// (`--keep-going` runs everything else).
    StageBlocked {
        stage: String,
        failed: Vec<String>,
    },
    Progress {
        stage: String,
        pos: u64,
        total: Option<u64>,
        unit: String,
        message: Option<String>,
    },
    StageFinished {
        stage: String,
        outcome: Outcome,
        elapsed: Duration,
        output_bytes: u64,
        log: Option<PathBuf>,
    },
    /// Something the user should know that does not stop the run.
    Warning {
        stage: Option<String>,
        message: String,
    },
    /// Lines of information (lock taken over, waiting for a lock, ...).
    Info {
        message: String,
    },
}

/// Receives events; called from several threads when stages run in parallel.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// A sink that drops everything.
pub fn silent() -> EventSink {
    Arc::new(|_| {})
}

/// Resumable state found in a stage's scratch directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Partial {
    /// What is there, e.g. `checkpoint at step 30/330`.
    pub state: String,
    /// Where the next run starts, e.g. `step 30`.
    pub resumes_from: String,
    /// The progress position the next run starts at, in the units of the stage's progress bar:
    /// the renderer measures the rate (and so the ETA) from there.
    pub position: Option<u64>,
}
