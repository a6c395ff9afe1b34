//! What the `camel` command line needs from the torch side, and nothing else: the part this
//! `camel run` plays in a torchrun/Slurm launch ([`role`]), a follower's loop ([`Follower::run`]),
//! and `camel generate` ([`generate`]).

use std::path::Path;
use std::time::Duration;

use camel_engine::StageError;
use camel_torch_job::GenOutput;
pub use camel_torch_job::{ALPACA_PROMPT_NO_INPUT, GenJob, GenParams};

pub use crate::launch::{ExternalRank, Leader};
use crate::worker::{Ranks, Subcommand, Terminal, Worker};

/// How long a follower waits for rank 0 to publish its next job (seconds; default a day).
pub const FOLLOW_WAIT_ENV: &str = "CAMEL_FOLLOW_WAIT_S";

/// The part a `camel run` plays, from the torchrun variables in its environment.
pub enum Role {
    /// Not started by a launcher: run the pipeline.
    Alone,
    /// Rank 0: run the pipeline, publishing training jobs; call [`Leader::end`] when done.
    Leader(Leader),
    /// Another rank: run rank 0's training jobs instead of the pipeline.
    Follower(Follower),
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The launcher's variables are incomplete or malformed (a usage error).
    #[error("{0}")]
    Environment(String),
    #[error("failed to write the job list for the other ranks")]
    JobList(#[source] std::io::Error),
}

/// Reads the environment; for rank 0, starts the job list in `workspace`.
pub fn role(workspace: &Path) -> Result<Role, LaunchError> {
    Ok(match ExternalRank::from_env().map_err(LaunchError::Environment)? {
        None => Role::Alone,
        Some(ext) if ext.is_leader() => {
            Role::Leader(Leader::start(workspace, &ext).map_err(LaunchError::JobList)?)
        }
        Some(ext) => Role::Follower(Follower { ext, workspace: workspace.to_path_buf() }),
    })
}

/// A rank other than 0 of an external launch.
pub struct Follower {
    ext: ExternalRank,
    workspace: std::path::PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// There is no worker to run (a setup problem, reported before anything runs).
    #[error("{0}")]
    NoWorker(String),
    #[error("{0}")]
    Failed(String),
}

impl Follower {
    pub fn rank(&self) -> usize {
        self.ext.rank
    }

    /// Runs this rank of each training job rank 0 publishes, until rank 0's run ends.
    pub fn run(self) -> Result<(), FollowError> {
        let worker = Worker::find().map_err(|e| FollowError::NoWorker(e.to_string()))?;
        let wait = std::env::var(FOLLOW_WAIT_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(24 * 3600), Duration::from_secs);
        crate::launch::follow(&self.workspace, &self.ext, &worker, wait).map_err(FollowError::Failed)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{0}")]
    NoWorker(String),
    #[error("failed to write the generation job {}", path.display())]
    WriteJob {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The worker did not start.
    #[error("cannot run camel-torch-worker")]
    Start(#[source] StageError),
    /// The worker failed; it has printed its error on stderr.
    #[error("{0}")]
    Worker(String),
}

/// Runs the worker's `generate` on `job`: one output per prompt, in order. The worker's stderr
/// (its log and error) is passed through to camel's.
pub fn generate(job: &GenJob) -> Result<Vec<GenOutput>, GenerateError> {
    let worker = Worker::find().map_err(|e| GenerateError::NoWorker(e.to_string()))?;
    let path = std::env::temp_dir().join(format!("camel-generate-{}.json", std::process::id()));
    std::fs::write(&path, camel_torch_job::to_json_line(job))
        .map_err(|source| GenerateError::WriteJob { path: path.clone(), source })?;
    let host = Terminal::keeping_stdout();
    let result = worker.run(&host, Subcommand::Generate, &path, Ranks::Inherit, None);
    let _ = std::fs::remove_file(&path);
    result.map_err(|e| match e {
        StageError::Io { .. } => GenerateError::Start(e),
        e => GenerateError::Worker(e.to_string()),
    })?;
    let stdout = host.into_stdout();
    Ok(String::from_utf8_lossy(&stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}
