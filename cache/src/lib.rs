//! Content hashing and the store of stage outputs.
//!
//! Everything camel caches is addressed by blake3 hashes: external input files are hashed
//! (multithreaded, memory-mapped) with a stat cache in front so an unchanged multi-gigabyte file
//! is never read twice, and each stage's outputs are committed into the [`Store`] by one atomic
//! rename, with a manifest that lets any later reader check them. See `docs/caching.md`.

mod error;
mod hash;
mod statcache;
mod store;

pub use error::CacheError;
pub use hash::{ContentHash, Hasher, PathHash, PathKind, hash_bytes};
pub use statcache::StatCache;
pub use store::{
    CACHE_FORMAT_VERSION, DeclaredOutput, EntryState, FileRecord, Manifest, OutputRecord, Staging, Store,
    VerifyReport, write_atomic, write_json_atomic,
};
