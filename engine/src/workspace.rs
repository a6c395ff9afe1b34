//! The workspace directory of a pipeline (default `.camel/` beside it) and its lock.
//!
//! ```text
//! cache/<key>/        committed entries (see camel_cache::Store)
//! tmp/, trash/        staging and removal areas, emptied at the start of every locked command
//! scratch/<key>/      per-key scratch that survives failures; removed when the key commits
//! slurm/<key>/        a Slurm stage's job: script, spec, submission record, logs (docs/slurm.md)
//! state/<stage>.json  the key struct of each stage's last success (for `status` reasons)
//! state/statcache.json
//! logs/<stage>.log    the log of each stage's latest attempt
//! out/<stage>         symlink to the latest output directory of each stage
//! lock                held (flock) by the one process allowed to write
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use camel_cache::{Store, write_atomic};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::key::CacheKey;

#[derive(Clone, Debug)]
pub struct Workspace {
    pub root: PathBuf,
}

/// What `state/<stage>.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub key: String,
    pub cache_key: CacheKey,
    /// How each input was written (path or STAGE.OUTPUT), for messages only.
    pub sources: BTreeMap<String, String>,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspace { root: root.into() }
    }

    pub fn store(&self) -> Store {
        Store::new(&self.root)
    }

    pub fn scratch_dir(&self, key: &str) -> PathBuf {
        self.root.join("scratch").join(key)
    }

    pub fn log_path(&self, stage: &str) -> PathBuf {
        self.root.join("logs").join(format!("{stage}.log"))
    }

    pub fn stat_cache_path(&self) -> PathBuf {
        self.root.join("state").join("statcache.json")
    }

    fn record_path(&self, stage: &str) -> PathBuf {
        self.root.join("state").join(format!("{stage}.json"))
    }

    pub fn out_link(&self, stage: &str) -> PathBuf {
        self.root.join("out").join(stage)
    }

    pub fn read_record(&self, stage: &str) -> Option<StageRecord> {
        let bytes = fs::read(self.record_path(stage)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records a stage's latest key, writing only if it changed (a no-op run writes nothing).
    pub fn write_record(&self, stage: &str, record: &StageRecord) -> Result<(), EngineError> {
        if self.read_record(stage).as_ref() == Some(record) {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        Ok(write_atomic(&self.record_path(stage), &bytes)?)
    }

    /// Points `out/<stage>` at the entry `key`, atomically (a new link renamed over the old).
    pub fn link_output(&self, stage: &str, key: &str) -> Result<(), EngineError> {
        let link = self.out_link(stage);
        let target = PathBuf::from("../cache").join(key).join("out");
        if fs::read_link(&link).ok().as_deref() == Some(target.as_path()) {
            return Ok(());
        }
        let dir = self.root.join("out");
        fs::create_dir_all(&dir).map_err(EngineError::io(format!("create {}", dir.display())))?;
        let tmp = dir.join(format!(".{stage}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(EngineError::io(format!("link {}", tmp.display())))?;
        fs::rename(&tmp, &link).map_err(EngineError::io(format!("link {}", link.display())))
    }

    /// Removes temporary links a killed run left in `out/` (call while holding the lock).
    pub fn clean_link_leftovers(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("out")) else { return };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    /// Takes the workspace lock. With `wait`, blocks until the holder is done (calling
    /// `on_wait` once with the holder's PID); otherwise fails at once naming it. A lock file left
    /// by a killed process is not held by anyone (flock dies with its process) and is taken over.
    pub fn lock(&self, wait: bool, on_wait: impl FnOnce(&str)) -> Result<WorkspaceLock, EngineError> {
        fs::create_dir_all(&self.root)
            .map_err(EngineError::io(format!("create workspace {}", self.root.display())))?;
        let path = self.root.join("lock");
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(EngineError::io(format!("open {}", path.display())))?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                if !wait {
                    return Err(EngineError::Locked { workspace: self.root.clone(), holder });
                }
                on_wait(&holder);
                fs4::FileExt::lock(&file).map_err(EngineError::io(format!("lock {}", path.display())))?;
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(EngineError::io(format!("lock {}", path.display()))(e));
            }
        }
        let previous = read_holder(&mut file);
        let stale_holder = (!previous.is_empty() && previous != "unknown").then_some(previous);
        file.set_len(0).and_then(|_| file.rewind()).map_err(EngineError::io("write the lock file"))?;
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(WorkspaceLock { file, stale_holder })
    }
}

fn read_holder(file: &mut fs::File) -> String {
    let mut s = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut s);
    let s = s.trim();
    if s.is_empty() { "unknown".into() } else { s.to_string() }
}

/// Held for as long as the process writes to the workspace; released on drop or death.
pub struct WorkspaceLock {
    file: fs::File,
    /// The PID recorded by a previous holder that did not release the lock cleanly.
    pub stale_holder: Option<String>,
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        // Clear the PID so that the next holder does not report a dead process; the flock
        // itself is released when the file closes.
        let _ = self.file.set_len(0);
    }
}

/// Whether the process `pid` exists (used only for messages).
pub fn pid_alive(pid: &str) -> bool {
    pid.parse::<i32>().is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_fast_and_names_the_holder() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path());
        let _held = ws.lock(false, |_| {}).unwrap();
        // flock locks belong to open file descriptions: a second open in the same process
        // conflicts like another process would.
        match ws.lock(false, |_| {}) {
            Err(EngineError::Locked { holder, .. }) => assert_eq!(holder, std::process::id().to_string()),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("second lock should fail"),
        }
    }

    #[test]
    fn lock_released_on_drop_and_stale_pid_reported() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path());
        drop(ws.lock(false, |_| {}).unwrap());
        fs::write(d.path().join("lock"), "999999999").unwrap();
        let l = ws.lock(false, |_| {}).unwrap();
        assert_eq!(l.stale_holder.as_deref(), Some("999999999"));
    }
}
