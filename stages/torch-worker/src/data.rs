//! Training data: the packed token blocks of the tokenize stage (`camel-tokens-v1`), read through
//! a memory map, and the deterministic order in which micro-batches visit them.
//!
//! The order is a pure function of (seed, micro-batch index): each epoch is a Fisher-Yates
//! permutation drawn from a SplitMix64 stream seeded by `seed` and the epoch, so a resumed run
//! needs no saved RNG state beyond the step it resumes at, and reads exactly the batches an
//! uninterrupted run would have read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

pub const TOKENS_FORMAT: &str = "camel-tokens-v1";

/// `meta.json` of a token directory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenMeta {
    pub format: String,
    pub dtype: String,
    pub vocab_size: i64,
    pub block_size: usize,
    pub blocks: usize,
    #[serde(default)]
    pub tokens_total: u64,
    #[serde(default)]
    pub tokens_dropped: u64,
    #[serde(default)]
    pub bos_id: Option<i64>,
    #[serde(default)]
    pub eos_id: Option<i64>,
    #[serde(default)]
    pub added_tokens: BTreeMap<String, i64>,
    #[serde(default)]
    pub ignore_ids: Vec<i64>,
    #[serde(default)]
    pub layout: Option<String>,
    #[serde(default)]
    pub shuffle: Option<bool>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub tokenizer_blake3: Option<String>,
}

/// A memory-mapped token directory.
pub struct TokenData {
    pub dir: PathBuf,
    pub meta: TokenMeta,
    map: memmap2::Mmap,
    width: usize,
}

impl TokenData {
    pub fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join("meta.json");
        let text = std::fs::read_to_string(&meta_path).with_context(|| {
            format!(
                "failed to read {} (is {} a token directory of the tokenize stage?)",
                meta_path.display(),
                dir.display()
            )
        })?;
        let meta: TokenMeta = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid meta.json", meta_path.display()))?;
        ensure!(
            meta.format == TOKENS_FORMAT,
            "{} has format {:?}; this camel reads {TOKENS_FORMAT:?}",
            meta_path.display(),
            meta.format
        );
        let width = match meta.dtype.as_str() {
            "u16" => 2,
            "u32" => 4,
            other => bail!("{}: unknown token dtype {other:?} (u16 or u32)", meta_path.display()),
        };
        ensure!(meta.block_size >= 2, "{}: block_size must be at least 2", meta_path.display());
        let bin = dir.join("tokens.bin");
        let file = std::fs::File::open(&bin).with_context(|| format!("failed to open {}", bin.display()))?;
        // SAFETY: read-only map of an immutable input (cache entries are read-only).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("failed to map {}", bin.display()))?;
        let want = meta.blocks * meta.block_size * width;
        ensure!(
            map.len() == want,
            "{} holds {} bytes but meta.json announces {} blocks of {} {} tokens ({want} bytes)",
            bin.display(),
            map.len(),
            meta.blocks,
            meta.block_size,
            meta.dtype
        );
        ensure!(meta.blocks > 0, "{} holds no block: the corpus is shorter than one block", dir.display());
        Ok(TokenData { dir: dir.to_path_buf(), meta, map, width })
    }

    pub fn blocks(&self) -> usize {
        self.meta.blocks
    }

    /// Block `i` as i64 ids.
    pub fn block(&self, i: usize) -> Vec<i64> {
        let n = self.meta.block_size;
        let bytes = &self.map[i * n * self.width..(i + 1) * n * self.width];
        match self.width {
            2 => bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect(),
            _ => bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
        }
    }

    /// The largest id in the file (a full scan, done once before training).
    pub fn max_id(&self) -> i64 {
        match self.width {
            2 => self.map.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).max(),
            _ => self.map.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).max(),
        }
        .unwrap_or(0)
    }
}

/// Writes a token directory (for tests and fixtures): `blocks` of `block_size` ids each.
pub fn write_token_dir(
    dir: &Path,
    meta: &TokenMeta,
    ids: &[i64],
    tokenizer_json: Option<&str>,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    ensure!(ids.len() == meta.blocks * meta.block_size, "ids do not fill {} blocks", meta.blocks);
    let mut bytes = Vec::new();
    for &id in ids {
        match meta.dtype.as_str() {
            "u16" => bytes.extend_from_slice(&u16::try_from(id)?.to_le_bytes()),
            _ => bytes.extend_from_slice(&u32::try_from(id)?.to_le_bytes()),
        }
    }
    std::fs::write(dir.join("tokens.bin"), bytes)?;
    std::fs::write(dir.join("meta.json"), serde_json::to_string_pretty(meta)?)?;
    if let Some(t) = tokenizer_json {
        std::fs::write(dir.join("tokenizer.json"), t)?;
    }
    Ok(())
}

/// The data order's stream: SplitMix64, fully specified, so it never depends on a library.
pub use camel_rng::SplitMix64;

/// Which examples each micro-batch holds: epochs of `n` examples cut into batches of `batch`
/// (the last one of an epoch may be short, as a DataLoader without `drop_last`).
#[derive(Clone, Debug)]
pub struct BatchOrder {
    pub n: usize,
    pub batch: usize,
    pub shuffle: bool,
    pub seed: u64,
    /// With lengths, batches group similar lengths as HF's `LengthGroupedSampler`: the epoch's
    /// permutation is cut into mega-batches of 50 batches, each sorted by length, longest first.
    pub lengths: Option<std::sync::Arc<Vec<usize>>>,
}

impl BatchOrder {
    pub fn batches_per_epoch(&self) -> usize {
        self.n.div_ceil(self.batch)
    }

    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut p: Vec<usize> = (0..self.n).collect();
        if self.shuffle {
            let mut rng = SplitMix64::new(self.seed ^ epoch.wrapping_mul(0xA24B_AED4_963E_E407));
            rng.shuffle(&mut p, SplitMix64::below_lemire);
        }
        if let Some(lengths) = &self.lengths {
            for mega in p.chunks_mut(self.batch * 50) {
                mega.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
            }
        }
        p
    }

    /// The example indices of micro-batch `m` (counted from the start of training).
    pub fn micro_batch(&self, m: u64) -> Vec<usize> {
        let bpe = self.batches_per_epoch() as u64;
        let (epoch, within) = (m / bpe, (m % bpe) as usize);
        let p = self.permutation(epoch);
        let end = ((within + 1) * self.batch).min(self.n);
        p[within * self.batch..end].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_covers_each_epoch_once() {
        let o = BatchOrder { n: 7, batch: 3, shuffle: true, seed: 5, lengths: None };
        assert_eq!(o.batches_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|m| o.micro_batch(m)).collect();
        assert_eq!(o.micro_batch(2).len(), 1);
        seen.sort();
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
        assert_ne!(o.permutation(0), o.permutation(1));
        let plain = BatchOrder { shuffle: false, ..o };
        assert_eq!(plain.micro_batch(4), vec![3, 4, 5]);
        let grouped = BatchOrder { lengths: Some(vec![1, 9, 3, 7, 5, 2, 8].into()), ..plain };
        assert_eq!(grouped.micro_batch(0), vec![1, 6, 3]);
    }
}
