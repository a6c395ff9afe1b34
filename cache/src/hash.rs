//! blake3 content hashes of files and directories.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{CacheError, StatCache};

/// Files at least this large are memory-mapped and hashed on all cores; smaller ones are read,
/// since a thread pool and a mapping cost more than they save on a few kilobytes.
const MMAP_THRESHOLD: u64 = 1 << 20;

/// A blake3 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        blake3::Hash::from_hex(s).ok().map(|h| ContentHash(*h.as_bytes()))
    }

    /// The first 12 hex digits: enough to tell entries apart in messages.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ContentHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a blake3 hex digest"))
    }
}

/// blake3 of a byte string.
pub fn hash_bytes(bytes: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(bytes).as_bytes())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    File,
    Dir,
}

/// The content hash of a file, or of a directory as the sorted manifest of its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathHash {
    pub kind: PathKind,
    pub hash: ContentHash,
    /// Bytes: the file's size, or the sum over the directory's files.
    pub size: u64,
}

/// Hashes paths, consulting and feeding an optional [`StatCache`].
#[derive(Clone, Copy, Default)]
pub struct Hasher<'a> {
    stat_cache: Option<&'a StatCache>,
    /// A directory (device, inode) that directory walks leave out.
    skip: Option<(u64, u64)>,
}

impl<'a> Hasher<'a> {
    pub fn new(stat_cache: Option<&'a StatCache>) -> Self {
        Hasher { stat_cache, skip: None }
    }

    /// Leaves `dir` (when it exists) out of every directory this hasher walks: camel's workspace,
    /// whose files change with every run, inside a directory input such as `.`.
    pub fn skipping(mut self, dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        self.skip = fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()));
        self
    }

    /// Hashes a file or a directory (following symbolic links).
    pub fn hash_path(&self, path: &Path) -> Result<PathHash, CacheError> {
        let meta = fs::metadata(path).map_err(CacheError::read(path))?;
        if meta.is_file() {
            let hash = self.hash_file_with_meta(path, &meta)?;
            Ok(PathHash { kind: PathKind::File, hash, size: meta.len() })
        } else if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, Path::new(""), &mut files, true, self.skip)?;
            let mut records = Vec::with_capacity(files.len());
            for rel in files {
                let full = path.join(&rel);
                let meta = fs::metadata(&full).map_err(CacheError::read(&full))?;
                let hash = self.hash_file_with_meta(&full, &meta)?;
                records.push((rel_string(&rel), meta.len(), hash));
            }
            let size = records.iter().map(|r| r.1).sum();
            let hash = dir_hash(records.iter().map(|(p, s, h)| (p.as_str(), *s, *h)));
            Ok(PathHash { kind: PathKind::Dir, hash, size })
        } else {
            Err(CacheError::NotFileOrDir { path: path.to_path_buf() })
        }
    }

    fn hash_file_with_meta(&self, path: &Path, meta: &fs::Metadata) -> Result<ContentHash, CacheError> {
        if let Some(cache) = self.stat_cache
            && let Some(hash) = cache.lookup(path, meta)
        {
            return Ok(hash);
        }
        let hash = hash_file(path, meta.len())?;
        if let Some(cache) = self.stat_cache {
            cache.insert(path, meta, hash);
        }
        Ok(hash)
    }
}

/// Hashes one file's bytes: memory-mapped on all cores when large, read otherwise.
pub(crate) fn hash_file(path: &Path, len: u64) -> Result<ContentHash, CacheError> {
    let mut hasher = blake3::Hasher::new();
    if len >= MMAP_THRESHOLD {
        hasher.update_mmap_rayon(path).map_err(CacheError::read(path))?;
    } else {
        let mut file = fs::File::open(path).map_err(CacheError::read(path))?;
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf).map_err(CacheError::read(path))?;
        hasher.update(&buf);
    }
    Ok(ContentHash(*hasher.finalize().as_bytes()))
}

/// The hash of a directory from its files, given in sorted order of their `/`-separated relative
/// paths. Both external input directories and committed output directories hash through here, so
/// a directory copied out of the cache hashes the same as the output it came from.
pub(crate) fn dir_hash<'p>(records: impl Iterator<Item = (&'p str, u64, ContentHash)>) -> ContentHash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"camel-dir-v1\n");
    for (path, size, hash) in records {
        hasher.update(path.as_bytes());
        hasher.update(b"\0");
        hasher.update(size.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(hash.to_hex().as_bytes());
        hasher.update(b"\n");
    }
    ContentHash(*hasher.finalize().as_bytes())
}

/// The regular files below `root`, as paths relative to it sorted by their `/`-joined form, where
/// a symbolic link is an error: used on stage outputs, which must be
/// real files (a link could point anywhere, and committing makes files read-only).
pub(crate) fn walk_own_files(root: &Path, out: &mut Vec<PathBuf>) -> Result<(), CacheError> {
    walk(root, Path::new(""), out, false, None)
}

/// Lists the regular files below `root` (following links when `follow`, else a link is an
/// error), as paths relative to it, sorted by their `/`-joined form; `skip`: the (device, inode)
/// of a directory left out.
fn walk(
    root: &Path,
    rel: &Path,
    out: &mut Vec<PathBuf>,
    follow: bool,
    skip: Option<(u64, u64)>,
) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let dir = root.join(rel);
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .map_err(CacheError::read(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(CacheError::read(&dir))?;
    entries.sort();
    for name in entries {
        let rel_child = rel.join(&name);
        let full = root.join(&rel_child);
        let meta = if follow { fs::metadata(&full) } else { fs::symlink_metadata(&full) }
            .map_err(CacheError::read(&full))?;
        if meta.is_symlink() {
            return Err(CacheError::Symlink { path: full });
        }
        if meta.is_dir() {
            if skip == Some((meta.dev(), meta.ino())) {
                continue;
            }
            walk(root, &rel_child, out, follow, skip)?;
        } else if meta.is_file() {
            out.push(rel_child);
        } else {
            return Err(CacheError::NotFileOrDir { path: full });
        }
    }
    // Sorting per directory by name is not the same as sorting the joined paths ("a/b" vs
    // "a.txt"): sort the whole list once so the order is defined by the strings alone.
    if rel.as_os_str().is_empty() {
        out.sort_by_key(|p| rel_string(p));
    }
    Ok(())
}

pub(crate) fn rel_string(path: &Path) -> String {
    path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_hash_matches_blake3_for_small_and_large_files() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 10, (MMAP_THRESHOLD as usize) + 12345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            fs::write(&p, &data).unwrap();
            let h = Hasher::default().hash_path(&p).unwrap();
            assert_eq!(h.hash.0, *blake3::hash(&data).as_bytes());
            assert_eq!(h.size, len as u64);
            assert_eq!(h.kind, PathKind::File);
        }
    }

    #[test]
    fn a_skipped_directory_is_left_out_of_a_walk() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        fs::create_dir_all(d.path().join(".camel/state")).unwrap();
        fs::write(d.path().join(".camel/state/x"), "1").unwrap();
        let h = || Hasher::new(None).skipping(&d.path().join(".camel")).hash_path(d.path()).unwrap().hash;
        let before = h();
        fs::write(d.path().join(".camel/state/x"), "2").unwrap();
        assert_eq!(h(), before, "the skipped dir's files count");
        fs::write(d.path().join("a.txt"), "b").unwrap();
        assert_ne!(h(), before);
        assert_ne!(Hasher::new(None).hash_path(d.path()).unwrap().hash, h(), "nothing skipped without it");
    }

    #[test]
    fn dir_hash_depends_on_names_and_contents_only() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            fs::create_dir_all(d.join("sub")).unwrap();
            fs::write(d.join("sub/x.txt"), "x").unwrap();
            fs::write(d.join("a.txt"), "a").unwrap();
        }
        let ha = Hasher::default().hash_path(a.path()).unwrap();
        let hb = Hasher::default().hash_path(b.path()).unwrap();
        assert_eq!(ha, hb);
        fs::write(b.path().join("sub/x.txt"), "y").unwrap();
        assert_ne!(ha.hash, Hasher::default().hash_path(b.path()).unwrap().hash);
        fs::rename(b.path().join("sub/x.txt"), b.path().join("sub/z.txt")).unwrap();
        fs::write(b.path().join("sub/z.txt"), "x").unwrap();
        assert_ne!(ha.hash, Hasher::default().hash_path(b.path()).unwrap().hash);
    }

    #[test]
    fn walk_sorts_by_joined_path() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("a")).unwrap();
        fs::write(d.path().join("a/b"), "").unwrap();
        fs::write(d.path().join("a.txt"), "").unwrap();
        let mut out = Vec::new();
        walk(d.path(), Path::new(""), &mut out, true, None).unwrap();
        let names: Vec<_> = out.iter().map(|p| rel_string(p)).collect();
        assert_eq!(names, ["a.txt", "a/b"]);
    }
}
