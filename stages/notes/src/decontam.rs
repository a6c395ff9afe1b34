//! Decontamination: word n-grams of evaluation texts, and how many of them a note shares.
//!
//! Words are maximal runs of alphanumeric characters, lower-cased; an n-gram is `n` consecutive
//! words. Each word is hashed (64-bit FNV-1a of its lower-cased UTF-8), and an n-gram's hash is a
//! polynomial of its words' hashes, rolled along the text in O(1) per word. With 64-bit hashes a
//! false match is about as likely as one in 10^5 over a billion-word corpus and a million
//! evaluation n-grams; a match drops a note, it never changes one.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

// splitmix64's finalizer, which scatters a hash's bits over the whole word.
use camel_rng::mix;

/// The hashes are already uniform: hash maps keyed by them use them as they are.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;
type IdSet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

const BASE: u64 = camel_rng::GAMMA | 1;

/// Calls `f` with the hash of each word of `text`.
fn for_each_word(text: &str, mut f: impl FnMut(u64)) {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut in_word = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_alphanumeric() {
            in_word = true;
            if c.is_ascii() {
                h = (h ^ u64::from(c.to_ascii_lowercase() as u8)).wrapping_mul(PRIME);
            } else {
                for lc in c.to_lowercase() {
                    for &b in lc.encode_utf8(&mut buf).as_bytes() {
                        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
                    }
                }
            }
        } else if in_word {
            f(mix(h));
            h = OFFSET;
            in_word = false;
        }
    }
    if in_word {
        f(mix(h));
    }
}

/// Calls `f` with the hash of each word `n`-gram of `text`.
pub fn for_each_ngram(text: &str, n: usize, mut f: impl FnMut(u64)) {
    let top = (1..n).fold(1u64, |p, _| p.wrapping_mul(BASE));
    let mut window = std::collections::VecDeque::with_capacity(n);
    let mut h = 0u64;
    for_each_word(text, |w| {
        if window.len() == n {
            let old: u64 = window.pop_front().unwrap();
            h = h.wrapping_sub(old.wrapping_mul(top));
        }
        h = h.wrapping_mul(BASE).wrapping_add(w);
        window.push_back(w);
        if window.len() == n {
            f(mix(h));
        }
    });
}

/// The n-grams of the evaluation sets, each with the sets (a bit per set) it occurs in.
pub struct NgramIndex {
    pub n: usize,
    grams: IdMap<u64>,
}

/// What one note shares with the sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shared {
    /// Distinct n-grams of the note found in any set.
    pub grams: u32,
    /// The sets those came from, a bit each.
    pub sets: u64,
}

impl NgramIndex {
    pub fn new(n: usize) -> Self {
        NgramIndex { n, grams: IdMap::default() }
    }

    /// Adds the n-grams of `text` as belonging to set `set` (0..64).
    pub fn add(&mut self, set: usize, text: &str) {
        let bit = 1u64 << set;
        let grams = &mut self.grams;
        for_each_ngram(text, self.n, |g| *grams.entry(g).or_insert(0) |= bit);
    }

    pub fn len(&self) -> usize {
        self.grams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    /// Distinct n-grams of set `set`.
    pub fn grams_in(&self, set: usize) -> usize {
        self.grams.values().filter(|&&b| b & (1 << set) != 0).count()
    }

    /// The n-grams of `text` found in the index (each counted once).
    pub fn shared(&self, text: &str) -> Shared {
        let mut seen = IdSet::default();
        let mut s = Shared::default();
        if self.grams.is_empty() {
            return s;
        }
        for_each_ngram(text, self.n, |g| {
            if let Some(bits) = self.grams.get(&g)
                && seen.insert(g)
            {
                s.grams += 1;
                s.sets |= bits;
            }
        });
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grams(t: &str, n: usize) -> Vec<u64> {
        let mut v = Vec::new();
        for_each_ngram(t, n, |g| v.push(g));
        v
    }

    #[test]
    fn ngrams_ignore_case_and_punctuation() {
        assert_eq!(grams("a b c d", 2).len(), 3);
        assert_eq!(grams("a b", 3).len(), 0);
        assert_eq!(grams("The  patient, was SEEN.", 2), grams("the patient was seen", 2));
        assert_ne!(grams("a b c", 3), grams("a c b", 3));
        assert_eq!(grams("Café résumé x", 3), grams("CAFÉ RÉSUMÉ X", 3));
    }

    #[test]
    fn shared_counts_distinct_ngrams_per_set() {
        let mut ix = NgramIndex::new(3);
        ix.add(0, "one two three four");
        ix.add(1, "seven eight nine");
        assert_eq!(ix.len(), 3);
        let s = ix.shared("x one two three four y one two three");
        assert_eq!(s, Shared { grams: 2, sets: 1 });
        let s = ix.shared("Seven eight nine; one two three.");
        assert_eq!(s, Shared { grams: 2, sets: 3 });
        assert_eq!(ix.shared("nothing in common here at all"), Shared::default());
    }
}
