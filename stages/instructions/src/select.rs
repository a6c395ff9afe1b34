//! Choosing notes: by source, by length in tokens, then a seeded sample per source.
//!
//! The sample is not "the first n" (which would favour one period or one hospital in a sorted
//! export) nor a draw from a generator (which would change every pick when one note is added):
//! each note gets a rank, blake3 of the seed, the task and its `source`/`id` (its row number when
//! it has no id), and the n lowest ranks are kept. Adding notes to a corpus changes a sample only
//! where a new note outranks a chosen one.

use std::collections::{BTreeMap, BinaryHeap};
use std::path::Path;

use camel_corpus::{Columns, CorpusReader};
use camel_engine::{StageContext, StageError};

use crate::InstructionsParams;

/// How a note's length is measured.
pub enum Lengths {
    /// Tokens of this tokenizer, without special tokens.
    Tokenizer(Box<tokenizers::Tokenizer>),
    /// UTF-8 bytes / 4, rounded up: for pipelines without a tokenizer (the demo).
    Approximate,
}

impl Lengths {
    pub fn tokenizer(path: &Path) -> Result<Lengths, StageError> {
        let t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| StageError::msg(format!("failed to load the tokenizer {}: {e}", path.display())))?;
        Ok(Lengths::Tokenizer(Box::new(t)))
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Lengths::Tokenizer(_) => "tokens of the `tokenizer` input, without special tokens",
            Lengths::Approximate => "approximate tokens (UTF-8 bytes / 4; no `tokenizer` input)",
        }
    }

    /// The length of `text`; `None` when it is certainly not inside `(lo, hi)` and was not counted.
    fn measure(&self, text: &str, lo: u64) -> Result<Option<u64>, StageError> {
        match self {
            Lengths::Approximate => Ok(Some((text.len() as u64).div_ceil(4))),
            Lengths::Tokenizer(t) => {
                // A LLaMA-style token covers at least one character (plus one for the leading
                // `▁`): a text that short cannot be over `lo`, so skip the encoding.
                if (text.chars().count() as u64) < lo {
                    return Ok(None);
                }
                let enc = t
                    .encode(text, false)
                    .map_err(|e| StageError::msg(format!("the tokenizer failed on a note: {e}")))?;
                Ok(Some(enc.len() as u64))
            }
        }
    }
}

/// A chosen note.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub source: String,
    /// `source:id` (or `source:#row`): identifies the note in logs without its text.
    pub key: String,
    pub tokens: u64,
    pub text: String,
    rank: [u8; 32],
}

impl PartialEq for Candidate {
    fn eq(&self, o: &Self) -> bool {
        self.rank == o.rank && self.key == o.key
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Candidate {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.rank, &self.key).cmp(&(o.rank, &o.key))
    }
}

fn rank(seed: u64, task: &str, key: &str) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&seed.to_le_bytes());
    h.update(task.as_bytes());
    h.update(b"\0");
    h.update(key.as_bytes());
    *h.finalize().as_bytes()
}

struct Picker<'a> {
    task: &'static str,
    n: u64,
    sources: Option<&'a [String]>,
    note_categories: Option<&'a [String]>,
    window: [u64; 2],
    /// Per source, a max-heap of the n lowest ranks.
    heaps: BTreeMap<String, BinaryHeap<Candidate>>,
}

impl Picker<'_> {
    fn wants(&self, source: &str, category: &str) -> bool {
        self.n > 0
            && self.sources.is_none_or(|s| s.iter().any(|x| x == source))
            && self
                .note_categories
                .is_none_or(|c| c.iter().any(|x| x.trim().eq_ignore_ascii_case(category.trim())))
    }

    fn offer(&mut self, c: Candidate) {
        let heap = self.heaps.entry(c.source.clone()).or_default();
        if (heap.len() as u64) < self.n {
            heap.push(c);
        } else if heap.peek().is_some_and(|top| c < *top) {
            heap.pop();
            heap.push(c);
        }
    }

    /// The sample: sources in name order, notes by rank.
    fn finish(self) -> Vec<Candidate> {
        self.heaps.into_values().flat_map(|h| h.into_sorted_vec()).collect()
    }
}

/// Reads the corpus once and returns the notes for general tasks and for de-identification.
pub fn select(
    corpus: &Path,
    lengths: &Lengths,
    p: &InstructionsParams,
    ctx: &StageContext,
) -> Result<(Vec<Candidate>, Vec<Candidate>), StageError> {
    let reader = CorpusReader::open(corpus, Columns::All).map_err(|e| StageError::msg(e.to_string()))?;
    ctx.progress().set_total(Some(reader.rows()), "notes read");
    let mut general = Picker {
        task: "general",
        n: p.general.notes_per_source,
        sources: p.general.sources.as_deref(),
        note_categories: p.general.note_categories.as_deref(),
        window: p.general.note_tokens,
        heaps: BTreeMap::new(),
    };
    let mut deid = Picker {
        task: "deid",
        n: p.deid.notes_per_source,
        sources: p.deid.sources.as_deref(),
        note_categories: p.deid.note_categories.as_deref(),
        window: p.deid.note_tokens,
        heaps: BTreeMap::new(),
    };
    let mut row = 0u64;
    for batch in reader {
        ctx.check_cancelled()?;
        for note in batch.map_err(|e| StageError::msg(e.to_string()))? {
            let source = note.source.unwrap_or_default();
            let category = note.category.unwrap_or_default();
            let key = match &note.id {
                Some(id) => format!("{source}:{id}"),
                None => format!("{source}:#{row}"),
            };
            row += 1;
            let pickers = [&mut general, &mut deid];
            let wanted: Vec<usize> = (0..2).filter(|&i| pickers[i].wants(&source, &category)).collect();
            if wanted.is_empty() {
                continue;
            }
            let lo = wanted.iter().map(|&i| pickers[i].window[0]).min().unwrap_or(0);
            let Some(tokens) = lengths.measure(&note.text, lo)? else { continue };
            for i in wanted {
                let pk = &mut *pickers[i];
                if pk.window[0] < tokens && tokens < pk.window[1] {
                    pk.offer(Candidate {
                        source: source.clone(),
                        key: key.clone(),
                        tokens,
                        text: note.text.clone(),
                        rank: rank(p.seed, pk.task, &key),
                    });
                }
            }
        }
        ctx.progress().set_position(row);
    }
    Ok((general.finish(), deid.finish()))
}

/// `k` of `categories`, chosen by a seeded hash of the note and each category, listed in the
/// order of `categories`.
pub fn sample_categories(categories: &[String], k: usize, seed: u64, note_key: &str) -> Vec<String> {
    let mut ranked: Vec<(usize, [u8; 32])> =
        categories.iter().enumerate().map(|(i, c)| (i, rank(seed, c, note_key))).collect();
    ranked.sort_by_key(|a| a.1);
    let mut chosen: Vec<usize> = ranked.into_iter().take(k).map(|(i, _)| i).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| categories[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_a_stable_subset_in_list_order() {
        let cats: Vec<String> = crate::CATEGORIES.iter().map(|s| s.to_string()).collect();
        let a = sample_categories(&cats, 5, 42, "mimic3:1");
        assert_eq!(a.len(), 5);
        assert_eq!(a, sample_categories(&cats, 5, 42, "mimic3:1"));
        let pos: Vec<usize> = a.iter().map(|c| cats.iter().position(|x| x == c).unwrap()).collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sample_categories(&cats, 12, 42, "x"), cats);
    }

    #[test]
    fn the_llama_tokenizer_counts_like_sentencepiece() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/llama_tokenizer.json");
        if !path.exists() {
            eprintln!("skipped: {} is absent", path.display());
            return;
        }
        let l = Lengths::tokenizer(&path).unwrap();
        // Python `tokenizers` on the same file: ▁The ▁patient ▁was ▁dis charg ed ▁home .
        assert_eq!(l.measure("The patient was discharged home.", 0).unwrap(), Some(8));
        assert_eq!(l.measure("short", 100).unwrap(), None);
    }
}
