//! The store of committed stage outputs: `<workspace>/cache/<key>/`.
//!
//! A stage writes into a private staging directory under `<workspace>/tmp/`; on success the
//! engine commits it: every file is hashed into `manifest.json`, made read-only, and the whole
//! directory is renamed to `cache/<key>` in one step. A reader therefore sees either no entry or
//! a complete one, whatever moment a run was killed at. An entry whose files no longer match its
//! manifest is reported as [`EntryState::Corrupt`] and treated as missing.
//!
//! Entry layout:
//! ```text
//! cache/<key>/out/...           the stage's outputs
//! cache/<key>/manifest.json     every file's path, size, mtime and blake3; the declared outputs
//! cache/<key>/provenance.json   what produced it (written by the engine; the store keeps its bytes
//!                               as given: its format is the engine's `Provenance`)
//! cache/<key>/log.txt           the stage's log
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::hash::{dir_hash, hash_file, rel_string, walk_own_files};
use crate::{CacheError, ContentHash, PathKind};

/// Version of the on-disk layout of entries and manifests. It is part of every cache key, so
/// bumping it (whenever a manifest field or the entry layout changes meaning) makes every old
/// entry unreachable instead of misread; `camel gc` then removes them.
pub const CACHE_FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `/`-separated, relative to the entry's `out/`.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i128,
    pub hash: ContentHash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRecord {
    /// Relative to the entry's `out/`; `.` is the whole output directory.
    pub path: String,
    pub kind: PathKind,
    pub hash: ContentHash,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub key: String,
    pub files: Vec<FileRecord>,
    pub outputs: BTreeMap<String, OutputRecord>,
}

impl Manifest {
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// What a look-up of an entry found.
#[derive(Debug)]
pub enum EntryState {
    Missing,
    Valid(Manifest),
    /// The entry exists but does not match its manifest (the string says how).
    Corrupt(String),
}

/// The outcome of a full verification of one entry.
#[derive(Debug)]
pub struct VerifyReport {
    pub key: String,
    pub problem: Option<String>,
}

/// The content store of one workspace.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store rooted at a workspace directory (created on first write).
    pub fn new(workspace: impl Into<PathBuf>) -> Store {
        Store { root: workspace.into() }
    }

    pub fn entries_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.entries_dir().join(key)
    }

    /// Where the outputs of the entry `key` live.
    pub fn out_dir(&self, key: &str) -> PathBuf {
        self.entry_dir(key).join("out")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Keys of every entry in the store.
    pub fn keys(&self) -> Result<Vec<String>, CacheError> {
        let dir = self.entries_dir();
        let Ok(rd) = fs::read_dir(&dir) else { return Ok(Vec::new()) };
        let mut keys = Vec::new();
        for e in rd {
            let e = e.map_err(CacheError::read(&dir))?;
            keys.push(e.file_name().to_string_lossy().into_owned());
        }
        keys.sort();
        Ok(keys)
    }

    /// Reads an entry's manifest and checks each file's size and mtime against it; files whose
    /// stat changed are hashed again. Cheap enough for every run: no file is read unless touched.
    pub fn check(&self, key: &str) -> EntryState {
        self.check_with(key, false)
    }

    /// Hashes every file of the entry again (`camel verify`).
    pub fn verify(&self, key: &str) -> EntryState {
        self.check_with(key, true)
    }

    fn check_with(&self, key: &str, full: bool) -> EntryState {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return EntryState::Missing;
        }
        let manifest_path = dir.join("manifest.json");
        let manifest: Manifest = match fs::read(&manifest_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(m) => m,
                Err(e) => return EntryState::Corrupt(format!("manifest.json does not parse: {e}")),
            },
            Err(e) => return EntryState::Corrupt(format!("manifest.json unreadable: {e}")),
        };
        if manifest.format != CACHE_FORMAT_VERSION || manifest.key != key {
            return EntryState::Corrupt("manifest.json belongs to another key or format".into());
        }
        let out = dir.join("out");
        for rec in &manifest.files {
            let path = out.join(&rec.path);
            let meta = match fs::metadata(&path) {
                Ok(m) => m,
                Err(_) => return EntryState::Corrupt(format!("out/{} is missing", rec.path)),
            };
            if meta.len() != rec.size {
                return EntryState::Corrupt(format!(
                    "out/{} has {} bytes, the manifest says {}",
                    rec.path,
                    meta.len(),
                    rec.size
                ));
            }
            if full || mtime_ns(&meta) != rec.mtime_ns {
                match hash_file(&path, meta.len()) {
                    Ok(h) if h == rec.hash => {}
                    Ok(_) => {
                        return EntryState::Corrupt(format!(
                            "out/{} does not match its recorded blake3",
                            rec.path
                        ));
                    }
                    Err(e) => return EntryState::Corrupt(format!("out/{}: {e}", rec.path)),
                }
            }
        }
        EntryState::Valid(manifest)
    }

    /// Opens a fresh staging directory for a run of `key`.
    pub fn stage(&self, key: &str) -> Result<Staging, CacheError> {
        let tmp = self.tmp_dir();
        fs::create_dir_all(&tmp).map_err(CacheError::write(&tmp))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let dir = tmp.join(format!("{key}.{}.{nanos}", std::process::id()));
        let out = dir.join("out");
        fs::create_dir_all(&out).map_err(CacheError::write(&out))?;
        Ok(Staging { dir, key: key.to_string(), own_links: false })
    }

    /// Removes staging directories left by killed runs. Call only while holding the workspace
    /// lock: a staging directory of a live run would be removed too.
    pub fn clean_tmp(&self) -> Result<usize, CacheError> {
        let mut n = 0;
        for dir in [self.tmp_dir(), self.trash_dir()] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                remove_tree(&e.path())?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Removes an entry: renamed into the trash first, so that it vanishes from `cache/` in one
    /// step even if the deletion of its files is interrupted.
    pub fn remove(&self, key: &str) -> Result<(), CacheError> {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Ok(());
        }
        let trash = self.trash_dir();
        fs::create_dir_all(&trash).map_err(CacheError::write(&trash))?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let to = trash.join(format!("{key}.{nanos}"));
        fs::rename(&dir, &to).map_err(CacheError::write(&dir))?;
        remove_tree(&to)
    }
}

/// A stage's private output directory, not yet visible in the store.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    key: String,
    /// Files with other hard links are camel's own (a Slurm job's `out/`): kept as they are.
    own_links: bool,
}

/// An output a stage declares: its name, and its path relative to the output directory.
pub struct DeclaredOutput<'a> {
    pub name: &'a str,
    pub path: &'a str,
}

impl Staging {
    /// Says that the files put in `out/` with other hard links are camel's own (a finished Slurm
    /// job's outputs, linked from its job dir until the commit is durable): committed as they
    /// are, not copied. Otherwise a file with other links is copied before it is made read-only.
    pub fn own_links(&mut self) {
        self.own_links = true;
    }

    /// Where the stage writes its outputs.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// The staging root (for the log and other metadata written next to `out/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Hashes the outputs, writes the manifest and the given metadata files, and renames the
    /// staging directory to `cache/<key>`. With `replace`, an existing entry of the same key is
    /// removed first (a forced rerun); otherwise an existing valid entry wins and this staging
    /// directory is dropped (two runs that produced the same key concurrently).
    pub fn commit(
        self,
        store: &Store,
        outputs: &[(String, String)],
        extra_files: &[(&str, &[u8])],
        replace: bool,
    ) -> Result<Manifest, CacheError> {
        let dir = self.dir.clone();
        let result = self.commit_inner(store, outputs, extra_files, replace);
        if result.is_err() {
            // Nothing half-committed stays behind: a failed commit drops the staging directory.
            let _ = remove_tree(&dir);
        }
        result
    }

    fn commit_inner(
        self,
        store: &Store,
        outputs: &[(String, String)],
        extra_files: &[(&str, &[u8])],
        replace: bool,
    ) -> Result<Manifest, CacheError> {
        let out = self.out_dir();
        let mut rels = Vec::new();
        walk_own_files(&out, &mut rels)?;
        let mut files = Vec::with_capacity(rels.len());
        for rel in rels {
            let path = out.join(&rel);
            let mut meta = fs::metadata(&path).map_err(CacheError::read(&path))?;
            if meta.nlink() > 1 && !self.own_links {
                // A hard link to a file outside (a stage's `ln "$CAMEL_IN_X" …`): committing makes
                // files read-only and the entry would share the user's inode. The entry gets a
                // copy of its own; the user's file stays as it was.
                let copy = path.with_file_name(format!(".camel-unlink.{}", std::process::id()));
                fs::copy(&path, &copy).map_err(CacheError::write(&copy))?;
                fs::rename(&copy, &path).map_err(CacheError::write(&path))?;
                meta = fs::metadata(&path).map_err(CacheError::read(&path))?;
            }
            let hash = hash_file(&path, meta.len())?;
            // Read-only, so that a user editing a file under out/ gets an error instead of
            // silently changing a cached result.
            let mut perm = meta.permissions();
            perm.set_mode(perm.mode() & !0o222);
            fs::set_permissions(&path, perm).map_err(CacheError::write(&path))?;
            let meta = fs::metadata(&path).map_err(CacheError::read(&path))?;
            files.push(FileRecord {
                path: rel_string(&rel),
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                hash,
            });
        }
        let mut records = BTreeMap::new();
        for (name, path) in outputs {
            let rec = output_record(&out, &files, name, path)?;
            records.insert(name.clone(), rec);
        }
        let manifest =
            Manifest { format: CACHE_FORMAT_VERSION, key: self.key.clone(), files, outputs: records };
        for (name, bytes) in extra_files {
            let p = self.dir.join(name);
            fs::write(&p, bytes).map_err(CacheError::write(&p))?;
        }
        let mpath = self.dir.join("manifest.json");
        let mut f = fs::File::create(&mpath).map_err(CacheError::write(&mpath))?;
        f.write_all(&serde_json::to_vec_pretty(&manifest).expect("manifest serializes"))
            .and_then(|_| f.sync_all())
            .map_err(CacheError::write(&mpath))?;

        let entries = store.entries_dir();
        fs::create_dir_all(&entries).map_err(CacheError::write(&entries))?;
        let target = store.entry_dir(&self.key);
        if target.exists() {
            if replace || !matches!(store.check(&self.key), EntryState::Valid(_)) {
                store.remove(&self.key)?;
            } else {
                remove_tree(&self.dir)?;
                return Ok(manifest);
            }
        }
        fs::rename(&self.dir, &target).map_err(CacheError::write(&target))?;
        if let Ok(d) = fs::File::open(&entries) {
            let _ = d.sync_all();
        }
        Ok(manifest)
    }

    /// Drops the staging directory (a failed or cancelled stage).
    pub fn discard(self) -> Result<(), CacheError> {
        remove_tree(&self.dir)
    }
}

fn output_record(
    out: &Path,
    files: &[FileRecord],
    name: &str,
    path: &str,
) -> Result<OutputRecord, CacheError> {
    let clean = path.trim_start_matches("./").trim_end_matches('/');
    let full = if clean.is_empty() || clean == "." { out.to_path_buf() } else { out.join(clean) };
    let meta = fs::metadata(&full)
        .map_err(|_| CacheError::OutputMissing { name: name.to_string(), path: full.clone() })?;
    if meta.is_file() {
        let rec = files
            .iter()
            .find(|f| f.path == clean)
            .ok_or_else(|| CacheError::OutputMissing { name: name.to_string(), path: full.clone() })?;
        Ok(OutputRecord { path: clean.to_string(), kind: PathKind::File, hash: rec.hash, size: rec.size })
    } else {
        let whole = clean.is_empty() || clean == ".";
        let prefix = format!("{clean}/");
        let inside: Vec<(&str, u64, ContentHash)> = files
            .iter()
            .filter_map(|f| {
                if whole {
                    Some((f.path.as_str(), f.size, f.hash))
                } else {
                    f.path.strip_prefix(&prefix).map(|p| (p, f.size, f.hash))
                }
            })
            .collect();
        let size = inside.iter().map(|r| r.1).sum();
        let hash = dir_hash(inside.into_iter());
        Ok(OutputRecord {
            path: if whole { ".".into() } else { clean.to_string() },
            kind: PathKind::Dir,
            hash,
            size,
        })
    }
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

/// Removes a directory tree (or file) if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<(), CacheError> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(CacheError::write(path)),
        Ok(_) => fs::remove_file(path).map_err(CacheError::write(path)),
    }
}

/// Writes `bytes` to `path` so that readers see the old file or the whole new one, never half of
/// it, even after a crash: the bytes go to a temp file in the same directory (a rename is atomic
/// only within one filesystem), are fsync'd (so the rename cannot land before the data), and the
/// temp file is renamed over `path`. Every file camel writes whole (records, stat cache, stage
/// JSON outputs) goes through here.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(CacheError::write(parent))?;
    }
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(CacheError::write(&tmp)(e));
    }
    fs::rename(&tmp, path).map_err(CacheError::write(path))
}

/// Writes `v` as pretty JSON with a final newline, atomically ([`write_atomic`]): the form of
/// every JSON file a stage outputs.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), CacheError> {
    let mut bytes = serde_json::to_vec_pretty(v)
        .map_err(|source| CacheError::Serialize { path: path.to_path_buf(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hasher;

    fn commit_one(store: &Store, key: &str, content: &str) -> Manifest {
        let st = store.stage(key).unwrap();
        fs::create_dir_all(st.out_dir().join("d")).unwrap();
        fs::write(st.out_dir().join("a.txt"), content).unwrap();
        fs::write(st.out_dir().join("d/b.txt"), "b").unwrap();
        let outs = vec![("a".to_string(), "a.txt".to_string()), ("d".to_string(), "d".to_string())];
        st.commit(store, &outs, &[("log.txt", b"log")], false).unwrap()
    }

    #[test]
    fn commit_then_check_and_detect_corruption() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::new(ws.path());
        let m = commit_one(&store, "k1", "hello");
        assert_eq!(m.outputs["a"].hash, crate::hash_bytes(b"hello"));
        // The dir output hashes like the same directory hashed from outside.
        let outside = Hasher::default().hash_path(&store.out_dir("k1").join("d")).unwrap();
        assert_eq!(m.outputs["d"].hash, outside.hash);
        assert!(matches!(store.check("k1"), EntryState::Valid(_)));
        assert!(fs::read_dir(ws.path().join("tmp")).unwrap().next().is_none());

        // Same size, different bytes, mtime changed by the write: the cheap check catches it.
        let f = store.out_dir("k1").join("a.txt");
        let mut perm = fs::metadata(&f).unwrap().permissions();
        perm.set_mode(0o644);
        fs::set_permissions(&f, perm).unwrap();
        fs::write(&f, "jello").unwrap();
        assert!(matches!(store.check("k1"), EntryState::Corrupt(_)));
    }

    #[test]
    fn full_verify_catches_corruption_that_keeps_mtime() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::new(ws.path());
        commit_one(&store, "k1", "hello");
        let f = store.out_dir("k1").join("a.txt");
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        let mut perm = fs::metadata(&f).unwrap().permissions();
        perm.set_mode(0o644);
        fs::set_permissions(&f, perm).unwrap();
        fs::write(&f, "jello").unwrap();
        fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
        assert!(matches!(store.check("k1"), EntryState::Valid(_)));
        assert!(matches!(store.verify("k1"), EntryState::Corrupt(_)));
    }

    #[test]
    fn missing_output_fails_commit_and_store_stays_empty() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::new(ws.path());
        let st = store.stage("k").unwrap();
        let err = st.commit(&store, &[("x".into(), "x.txt".into())], &[], false).unwrap_err();
        assert!(matches!(err, CacheError::OutputMissing { .. }));
        assert!(matches!(store.check("k"), EntryState::Missing));
        assert_eq!(fs::read_dir(ws.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_hard_linked_output_is_copied_and_the_other_link_left_writable() {
        let ws = tempfile::tempdir().unwrap();
        let outside = ws.path().join("input.txt");
        fs::write(&outside, "mine").unwrap();
        let store = Store::new(ws.path());
        let st = store.stage("k").unwrap();
        fs::hard_link(&outside, st.out_dir().join("x.txt")).unwrap();
        st.commit(&store, &[("x".into(), "x.txt".into())], &[], false).unwrap();
        assert!(!fs::metadata(&outside).unwrap().permissions().readonly());
        assert_eq!(fs::metadata(&outside).unwrap().nlink(), 1, "the entry still shares the inode");
        fs::write(&outside, "edited").unwrap();
        assert!(matches!(store.check("k"), EntryState::Valid(_)), "editing the input changed the entry");
        // A Slurm job's own links stay links.
        let st = {
            let mut st = store.stage("j").unwrap();
            st.own_links();
            st
        };
        fs::hard_link(&outside, st.out_dir().join("y.txt")).unwrap();
        st.commit(&store, &[("y".into(), "y.txt".into())], &[], false).unwrap();
        assert_eq!(fs::metadata(&outside).unwrap().nlink(), 2);
    }

    #[test]
    fn symlinks_in_outputs_are_refused_and_their_targets_untouched() {
        let ws = tempfile::tempdir().unwrap();
        let outside = ws.path().join("outside.txt");
        fs::write(&outside, "precious").unwrap();
        let store = Store::new(ws.path());
        let st = store.stage("k").unwrap();
        std::os::unix::fs::symlink(&outside, st.out_dir().join("link")).unwrap();
        let err = st.commit(&store, &[], &[], false).unwrap_err();
        assert!(matches!(err, CacheError::Symlink { .. }), "{err}");
        assert!(!fs::metadata(&outside).unwrap().permissions().readonly());
        assert!(matches!(store.check("k"), EntryState::Missing));
    }

    #[test]
    fn remove_and_clean_tmp() {
        let ws = tempfile::tempdir().unwrap();
        let store = Store::new(ws.path());
        commit_one(&store, "k1", "x");
        let _left = store.stage("k2").unwrap();
        assert_eq!(store.clean_tmp().unwrap(), 1);
        store.remove("k1").unwrap();
        assert!(store.keys().unwrap().is_empty());
    }

    #[test]
    fn json_is_written_whole_pretty_with_a_newline_and_no_temp_file_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/stats.json");
        let v = serde_json::json!({"b": [1, 2], "a": "x"});
        write_json_atomic(&path, &v).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), serde_json::to_string_pretty(&v).unwrap() + "\n");
        write_json_atomic(&path, &[3]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "[\n  3\n]\n");
        let names: Vec<_> =
            fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["stats.json"]);
        // A map with non-string keys does not serialize: an error, and nothing written.
        let bad: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let err = write_json_atomic(&dir.path().join("bad.json"), &bad).unwrap_err();
        assert!(matches!(err, CacheError::Serialize { .. }), "{err}");
        assert!(!dir.path().join("bad.json").exists());
    }
}
