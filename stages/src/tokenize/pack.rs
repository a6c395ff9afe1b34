//! Packing: the token stream of [`Layout::Camel`] or [`Layout::Clean`], written as flat
//! little-endian ids, and the shuffle order of the notes.
//!
//! The stream is cut into blocks later, by truncating the file to a multiple of the block size:
//! the dropped tokens are always the last ones of the stream.

use std::io::{self, Write};

use super::Layout;
use camel_rng::SplitMix64;

/// The width of one id in `tokens.bin`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    U16,
    U32,
}

impl Width {
    /// u16 when every id fits (vocabulary size, added tokens included, ≤ 65,536).
    pub fn for_vocab(vocab_size: u64) -> Width {
        if vocab_size <= 1 << 16 { Width::U16 } else { Width::U32 }
    }

    pub fn bytes(self) -> usize {
        match self {
            Width::U16 => 2,
            Width::U32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Width::U16 => "u16",
            Width::U32 => "u32",
        }
    }

    /// Appends `ids` to `out`, little-endian. Ids must fit (the vocabulary size decided the width).
    pub fn extend(self, out: &mut Vec<u8>, ids: &[u32]) {
        match self {
            Width::U16 => {
                out.reserve(ids.len() * 2);
                for &id in ids {
                    debug_assert!(id <= u32::from(u16::MAX));
                    out.extend_from_slice(&(id as u16).to_le_bytes());
                }
            }
            Width::U32 => {
                out.reserve(ids.len() * 4);
                for &id in ids {
                    out.extend_from_slice(&id.to_le_bytes());
                }
            }
        }
    }

    /// Reads little-endian ids of this width.
    pub fn decode(self, bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
        bytes.chunks_exact(self.bytes()).map(move |c| match self {
            Width::U16 => u32::from(u16::from_le_bytes([c[0], c[1]])),
            Width::U32 => u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        })
    }
}

/// Writes the token stream: notes' encoded ids (already in [`Width`] bytes) with the layout's
/// separators, counting tokens.
pub struct Packer<W: Write> {
    out: W,
    width: Width,
    layout: Layout,
    /// `[eos, bos]` (camel) or `[eos]` (clean), encoded.
    sep: Vec<u8>,
    tokens: u64,
    notes: u64,
}

impl<W: Write> Packer<W> {
    /// A stream that, in `camel` layout, starts with one `bos`.
    pub fn new(mut out: W, width: Width, layout: Layout, bos: u32, eos: u32) -> io::Result<Self> {
        let mut sep = Vec::new();
        let mut tokens = 0;
        match layout {
            Layout::Camel => {
                let mut head = Vec::new();
                width.extend(&mut head, &[bos]);
                out.write_all(&head)?;
                tokens = 1;
                width.extend(&mut sep, &[eos, bos]);
            }
            Layout::Clean => width.extend(&mut sep, &[eos]),
        }
        Ok(Packer { out, width, layout, sep, tokens, notes: 0 })
    }

    /// Appends one note: its ids as the tokenizer's post-processor returned them (LLaMA: bos first),
    /// encoded with [`Width::extend`].
    pub fn note(&mut self, encoded: &[u8]) -> io::Result<()> {
        debug_assert_eq!(encoded.len() % self.width.bytes(), 0);
        self.out.write_all(encoded)?;
        self.out.write_all(&self.sep)?;
        self.tokens += (encoded.len() / self.width.bytes()) as u64 + self.sep_tokens();
        self.notes += 1;
        Ok(())
    }

    fn sep_tokens(&self) -> u64 {
        match self.layout {
            Layout::Camel => 2,
            Layout::Clean => 1,
        }
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    pub fn notes(&self) -> u64 {
        self.notes
    }

    /// Flushes and returns the writer with the number of tokens written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.out.flush()?;
        Ok((self.out, self.tokens))
    }
}

/// The order in which the notes are written when shuffling: a Fisher–Yates shuffle of `0..n`
/// driven by SplitMix64 seeded with `seed`. For `i` from `n - 1` down to 1, draw `x` (the next
/// SplitMix64 output), let `j = (x * (i + 1)) >> 64` (128-bit product), and swap positions `i` and
/// `j`. Written out here so that any language can reproduce it (`tests/reference/tokenize_reference.py`
/// does, in ten lines); it never depends on a library's random generator.
pub fn permutation(n: usize, seed: u64) -> Vec<u32> {
    assert!(n <= u32::MAX as usize, "at most 2^32 - 1 notes");
    let mut perm: Vec<u32> = (0..n as u32).collect();
    SplitMix64(seed).shuffle(&mut perm, SplitMix64::below_lemire);
    perm
}

/// How a stream of `total` tokens is cut into blocks of `block_size`: (blocks, dropped tokens).
pub fn blocks(total: u64, block_size: u64) -> (u64, u64) {
    let blocks = total / block_size;
    (blocks, total - blocks * block_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(layout: Layout, notes: &[&[u32]]) -> (Vec<u32>, u64) {
        let mut p = Packer::new(Vec::new(), Width::U16, layout, 1, 2).unwrap();
        for n in notes {
            let mut b = Vec::new();
            Width::U16.extend(&mut b, n);
            p.note(&b).unwrap();
        }
        let (bytes, tokens) = p.finish().unwrap();
        (Width::U16.decode(&bytes).collect(), tokens)
    }

    #[test]
    fn camel_layout_doubles_bos_and_clean_does_not() {
        let notes: [&[u32]; 2] = [&[1, 10, 11], &[1, 12]];
        let (s, t) = stream(Layout::Camel, &notes);
        assert_eq!(s, [1, 1, 10, 11, 2, 1, 1, 12, 2, 1]);
        assert_eq!(t, 10);
        let (s, t) = stream(Layout::Clean, &notes);
        assert_eq!(s, [1, 10, 11, 2, 1, 12, 2]);
        assert_eq!(t, 7);
        assert_eq!(stream(Layout::Camel, &[]).0, [1]);
        assert!(stream(Layout::Clean, &[]).0.is_empty());
    }

    #[test]
    fn widths_round_trip_little_endian() {
        let mut b = Vec::new();
        Width::U16.extend(&mut b, &[1, 0x1234, 65535]);
        assert_eq!(b, [1, 0, 0x34, 0x12, 0xff, 0xff]);
        let mut b = Vec::new();
        Width::U32.extend(&mut b, &[0x0102_0304, 70000]);
        assert_eq!(b[..4], [4, 3, 2, 1]);
        assert_eq!(Width::U32.decode(&b).collect::<Vec<_>>(), [0x0102_0304, 70000]);
        assert_eq!(Width::for_vocab(32001), Width::U16);
        assert_eq!(Width::for_vocab(65536), Width::U16);
        assert_eq!(Width::for_vocab(65537), Width::U32);
    }

    #[test]
    fn block_arithmetic() {
        assert_eq!(blocks(0, 2048), (0, 0));
        assert_eq!(blocks(2047, 2048), (0, 2047));
        assert_eq!(blocks(4096, 2048), (2, 0));
        assert_eq!(blocks(4097, 2048), (2, 1));
    }

    #[test]
    fn permutation_is_pinned_and_a_permutation() {
        // SplitMix64(0)'s first output is 0xe220a8397b1dcdaf (the published test vector).
        assert_eq!(SplitMix64(0).next_u64(), 0xe220_a839_7b1d_cdaf);
        assert!(permutation(0, 1).is_empty());
        assert_eq!(permutation(1, 1), [0]);
        // Pinned: the Python reference computes the same; changing it changes every shuffled output.
        assert_eq!(permutation(10, 0), [4, 9, 2, 5, 1, 7, 6, 0, 3, 8]);
        let mut p = permutation(10_000, 42);
        assert_eq!(p, permutation(10_000, 42));
        assert_ne!(p, permutation(10_000, 43));
        p.sort_unstable();
        assert!(p.iter().enumerate().all(|(i, &v)| i as u32 == v));
    }
}
