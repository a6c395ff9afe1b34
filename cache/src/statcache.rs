//! Remembers the hash of a file for as long as its (size, mtime, inode, device) stay the same,
//! so a no-op run over gigabytes of input reads none of it.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::{CacheError, ContentHash};

/// A file modified this recently may be modified again within the same mtime tick without its
/// stat changing (git's "racily clean" problem): such files are hashed but not remembered.
const RACY_WINDOW: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
    dev: u64,
}

impl Stat {
    fn of(meta: &fs::Metadata) -> Stat {
        Stat {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    stat: Stat,
    hash: ContentHash,
}

#[derive(Default, Serialize, Deserialize)]
struct Disk {
    version: u32,
    files: HashMap<PathBuf, Record>,
}

const DISK_VERSION: u32 = 1;

/// A persistent map from absolute path and stat to content hash.
#[derive(Default)]
pub struct StatCache {
    files: Mutex<HashMap<PathBuf, Record>>,
    dirty: AtomicBool,
}

impl StatCache {
    /// Loads the cache from `path`; a missing or unreadable file starts an empty cache (it is
    /// only an accelerator, never a source of truth).
    pub fn load(path: &Path) -> StatCache {
        let files = fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Disk>(&bytes).ok())
            .filter(|d| d.version == DISK_VERSION)
            .map(|d| d.files)
            .unwrap_or_default();
        StatCache { files: Mutex::new(files), dirty: AtomicBool::new(false) }
    }

    pub fn lookup(&self, path: &Path, meta: &fs::Metadata) -> Option<ContentHash> {
        let key = absolute(path);
        let files = self.files.lock().unwrap();
        let rec = files.get(&key)?;
        (rec.stat == Stat::of(meta)).then_some(rec.hash)
    }

    pub fn insert(&self, path: &Path, meta: &fs::Metadata, hash: ContentHash) {
        let racy = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < RACY_WINDOW);
        if racy {
            return;
        }
        let key = absolute(path);
        let rec = Record { stat: Stat::of(meta), hash };
        self.files.lock().unwrap().insert(key, rec);
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// Writes the cache if anything was added, atomically (a temp file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), CacheError> {
        if !self.dirty.load(Ordering::Relaxed) {
            return Ok(());
        }
        let files = self.files.lock().unwrap();
        // Forget files that are gone, so the cache does not grow without bound.
        let kept: HashMap<PathBuf, Record> =
            files.iter().filter(|(p, _)| p.exists()).map(|(p, r)| (p.clone(), r.clone())).collect();
        let disk = Disk { version: DISK_VERSION, files: kept };
        let bytes = serde_json::to_vec(&disk).expect("stat cache serializes");
        crate::store::write_atomic(path, &bytes)?;
        self.dirty.store(false, Ordering::Relaxed);
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hasher;

    #[test]
    fn unchanged_file_is_not_reread_and_changed_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "hello").unwrap();
        // Age the file past the racy window.
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
        let cache = StatCache::default();
        let h1 = Hasher::new(Some(&cache)).hash_path(&p).unwrap().hash;
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(cache.lookup(&p, &meta), Some(h1));

        fs::write(&p, "world").unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(cache.lookup(&p, &meta), None);
        let h2 = Hasher::new(Some(&cache)).hash_path(&p).unwrap().hash;
        assert_ne!(h1, h2);
    }

    #[test]
    fn racily_fresh_files_are_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "hello").unwrap();
        let cache = StatCache::default();
        Hasher::new(Some(&cache)).hash_path(&p).unwrap();
        assert_eq!(cache.lookup(&p, &fs::metadata(&p).unwrap()), None);
    }

    #[test]
    fn round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        fs::write(&p, "hello").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        fs::File::options().write(true).open(&p).unwrap().set_modified(old).unwrap();
        let cache = StatCache::default();
        let h = Hasher::new(Some(&cache)).hash_path(&p).unwrap().hash;
        let file = dir.path().join("stat.json");
        cache.save(&file).unwrap();
        let again = StatCache::load(&file);
        assert_eq!(again.lookup(&p, &fs::metadata(&p).unwrap()), Some(h));
    }
}
