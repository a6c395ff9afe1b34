//! The seeded randomness of camel: SplitMix64 (Steele, Lea & Flood; Vigna's reference
//! constants), written out here once rather than taken from a crate, because a seed is part of
//! cache keys and recorded outputs: the note order of `tokenize`, the final shuffle of
//! `instructions`, the answer order of `judge`, the bootstrap of `report` and the seeds of
//! `synth`'s generators must mean the same numbers in every camel version.
//!
//! Streams differ in how they turn a 64-bit output into an index (multiply-shift, rejection or
//! plain modulo). Each stream keeps the mapping it was published with, so the mappings are
//! named methods and [`SplitMix64::shuffle`] takes the one its stream uses; there is
//! deliberately no plain `below`, so choosing one is always a decision.
//!
//! The crate has no dependencies so that anything, the libtorch worker included, can use it.

/// The golden-ratio increment SplitMix64 adds to its state for every output.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (the `mix64` finalizer): a bijection that scatters every input
/// bit over the whole word. Also usable alone as a fast integer hash.
#[inline]
pub const fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in [0, 1) from the top 53 bits of `x` (every value a multiple of 2^-53).
#[inline]
pub fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64: a 64-bit counter stepped by [`GAMMA`] and passed through [`mix`]. The field is
/// the state, public so that a generator can be written as `SplitMix64(seed)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The generator of item `i` of a stream seeded by `seed`, independent of every other item
    /// (so item `i` does not depend on how many items came before it, or in which order). The
    /// judge's answer order per row is drawn from these.
    pub fn for_item(seed: u64, i: u64) -> Self {
        let mut g = SplitMix64(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// In `0..n` (`n > 0`) by Lemire's multiply-shift, `(x * n) >> 64`: one draw per number, a
    /// bias below n / 2^64. `tokenize`'s note order and the torch worker's data order use it.
    #[inline]
    pub fn below_lemire(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// In `0..n` (`n > 0`) without bias: draws below the largest multiple of `n` are kept, the
    /// rest drawn again, then reduced modulo `n`. The judge's answer order and the report's
    /// bootstrap use it.
    pub fn below_rejection(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// `next_u64() % n` (`n > 0`), biased by up to n / 2^64. Only for the streams published with
    /// it (the `instructions` stage's final shuffle); new streams take one of the others.
    #[inline]
    pub fn below_modulo(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next_u64() % n
    }

    /// Fisher–Yates: for `i` from `len - 1` down to 1, swap `v[i]` with `v[below(i + 1)]`, where
    /// `below` is the stream's mapping (`SplitMix64::below_lemire`, `below_rejection` or
    /// `below_modulo`). One draw per position, so the order depends on the seed and `len` only.
    pub fn shuffle<T>(&mut self, v: &mut [T], below: fn(&mut SplitMix64, u64) -> u64) {
        for i in (1..v.len()).rev() {
            let j = below(self, i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`: [`Self::shuffle`] of the identity with
    /// [`Self::below_rejection`] (the judge's answer order).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        self.shuffle(&mut v, SplitMix64::below_rejection);
        v
    }
}

#[cfg(test)]
mod tests;
