//! The files through which `camel run` (job.rs) and the job's `camel exec-stage` (exec_stage.rs)
//! talk: the spec the job runs, the result and progress it writes back, and the exit status of a
//! resumable interruption. Both sides depend on this module and not on each other.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The exit status of an interrupted stage that can go on from where it stopped (EX_TEMPFAIL).
pub const EXIT_RESUMABLE: i32 = 75;

/// `spec.json`: what the job runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageSpec {
    pub format: u32,
    pub pipeline: PathBuf,
    pub overrides: Vec<String>,
    pub stage: String,
    /// The cache key digest the outputs are for.
    pub key: String,
    pub kind: String,
    pub version: u32,
    /// The hashed params camel run planned with.
    pub params: serde_json::Value,
    pub inputs: BTreeMap<String, PathBuf>,
    pub out_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub log: PathBuf,
    pub result: PathBuf,
    pub progress: PathBuf,
}

impl StageSpec {
    pub const FORMAT: u32 = 1;

    pub fn read(path: &std::path::Path) -> Result<StageSpec, String> {
        let bytes =
            fs::read(path).map_err(|e| format!("cannot read the stage spec {}: {e}", path.display()))?;
        let spec: StageSpec = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a camel stage spec: {e}", path.display()))?;
        if spec.format != Self::FORMAT {
            return Err(format!(
                "{} has format {}, this camel reads {}: submit it with this camel",
                path.display(),
                spec.format,
                Self::FORMAT
            ));
        }
        Ok(spec)
    }
}

/// `result.json`, written by `camel exec-stage` inside the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    pub outcome: ResultOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// SLURM_RESTART_COUNT of the attempt that wrote it.
    #[serde(default)]
    pub restarts: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResultOutcome {
    Ok,
    Failed,
    /// Stopped by SIGUSR1 (time limit near, preemption) after saving what it could: resumable.
    Interrupted,
}

/// `progress.json`: the job's stage progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub pos: u64,
    pub total: Option<u64>,
    pub unit: String,
    pub message: Option<String>,
}
