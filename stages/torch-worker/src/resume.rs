//! Training checkpoints in the scratch directory, which let a killed run go on where it stopped:
//! `checkpoints/step-N/` with `state.json` (the step, the params it was written with and, for
//! FSDP, the world size) beside the tensors a step strategy writes. A checkpoint is written into
//! `.tmp-step-N` and renamed into place when complete, so the newest `step-N` is always whole;
//! older ones are removed once a newer one is committed.
//!
//! The tensors themselves are the strategy's business (src/replicated.rs, src/fsdp.rs); this
//! module owns the directory layout, the state file and the commit, in the format runs started
//! before the loop was shared already wrote.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::job::TrainParams;

/// `state.json` of a checkpoint.
#[derive(Serialize, Deserialize)]
pub struct State {
    pub step: u64,
    pub params: serde_json::Value,
    /// FSDP: the world size the shards were written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world: Option<usize>,
}

/// A committed checkpoint to resume from.
pub struct Found {
    /// The step it was written after (from its directory name).
    pub step: u64,
    pub dir: PathBuf,
    pub state: State,
}

fn root(scratch: &Path) -> PathBuf {
    scratch.join("checkpoints")
}

/// The newest complete checkpoint (a directory `step-N`, renamed into place when complete).
pub fn latest(scratch: &Path) -> Option<(u64, PathBuf)> {
    std::fs::read_dir(root(scratch))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let step = name.strip_prefix("step-")?.parse::<u64>().ok()?;
            Some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s)
}

/// Where the checkpoint of `step` is written before it is committed.
pub fn staging_dir(scratch: &Path, step: u64) -> PathBuf {
    root(scratch).join(format!(".tmp-step-{step}"))
}

/// Makes an empty staging directory for `step` (a run killed while writing leaves one behind).
pub fn begin(scratch: &Path, step: u64) -> Result<PathBuf> {
    let tmp = staging_dir(scratch, step);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    Ok(tmp)
}

/// Writes `state.json` into the staging directory of `step`, whose tensors are all written,
/// renames it to `step-N` and removes the older checkpoints.
pub fn commit(scratch: &Path, step: u64, params: &TrainParams, world: Option<usize>) -> Result<()> {
    let root = root(scratch);
    let tmp = staging_dir(scratch, step);
    let state = State { step, params: serde_json::to_value(params)?, world };
    std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)?)?;
    let dst = root.join(format!("step-{step}"));
    std::fs::rename(&tmp, &dst).with_context(|| format!("failed to commit checkpoint {}", dst.display()))?;
    // Older checkpoints are no longer needed once a newer one is complete.
    for e in std::fs::read_dir(&root)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("step-") && name != format!("step-{step}") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    Ok(())
}

/// The newest checkpoint, if any; an error if it was written with other params (its batches and
/// schedule would not be this run's).
pub fn find(scratch: &Path, params: &TrainParams) -> Result<Option<Found>> {
    let Some((step, dir)) = latest(scratch) else { return Ok(None) };
    let state: State = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
    if state.params != serde_json::to_value(params)? {
        bail!("checkpoint {} was written with other params; delete it to start over", dir.display());
    }
    Ok(Some(Found { step, dir, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A committed checkpoint is found again, replaces the older one, and keeps the `state.json`
    /// that runs started before this module wrote (so their checkpoints still resume).
    #[test]
    fn commit_find_and_prune() {
        let scratch = tempfile::tempdir().unwrap();
        let s = scratch.path();
        let p = TrainParams::default();
        assert!(find(s, &p).unwrap().is_none());
        for step in [2, 4] {
            let tmp = begin(s, step).unwrap();
            std::fs::write(tmp.join("model.safetensors"), b"x").unwrap();
            commit(s, step, &p, None).unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(root(s))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["step-4"]);
        let found = find(s, &p).unwrap().unwrap();
        assert_eq!((found.step, found.state.step, found.state.world), (4, 4, None));
        assert!(found.dir.join("model.safetensors").is_file());
        // The params go through a JSON value, so their keys are sorted.
        let text = std::fs::read_to_string(found.dir.join("state.json")).unwrap();
        let expected = format!(
            "{{\n  \"step\": 4,\n  \"params\": {}\n}}",
            serde_json::to_string_pretty(&serde_json::to_value(&p).unwrap()).unwrap().replace('\n', "\n  ")
        );
        assert_eq!(text, expected);

        // A world size is kept for FSDP's shards.
        begin(s, 6).unwrap();
        commit(s, 6, &p, Some(2)).unwrap();
        assert_eq!(find(s, &p).unwrap().unwrap().state.world, Some(2));

        let other = TrainParams { seed: 7, ..TrainParams::default() };
        let err = find(s, &other).err().unwrap().to_string();
        assert!(err.contains("was written with other params"), "{err}");
    }
}
