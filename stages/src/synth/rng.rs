//! The generator's own PRNGs, written here rather than taken from `rand`, so that `synth` output never
//! changes with a dependency upgrade: the bytes of a corpus are part of every downstream cache key.
//!
//! [`SplitMix64`] (camel-rng's, shared with every other seeded stream) only seeds; [`Rng`] is
//! xoshiro256** (Blackman & Vigna), one per note, seeded from the run's seed and the note's index, so a
//! note's text does not depend on how notes are split into chunks or on how many threads generate them.

use camel_rng::SplitMix64;

/// xoshiro256**.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn from_seed(seed: u64) -> Rng {
        let mut sm = SplitMix64(seed);
        Rng { s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()] }
    }

    /// The generator of item `index` of stream `stream` (a constant per use: notes, patients, ...) in a
    /// run seeded with `seed`.
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Rng {
        let mut sm = SplitMix64(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        let base = sm.next_u64();
        let mut sm = SplitMix64(base ^ index.wrapping_mul(0xE703_7ED1_A0B4_28DB));
        Rng::from_seed(sm.next_u64())
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`), by Lemire's multiply-shift (the bias is below 2^-32 for the small
    /// `n` used here, and the mapping is fixed, which is what matters).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    #[inline]
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    #[inline]
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// An index into `weights`, each chosen with probability proportional to its weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        let mut r = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if r < w as u64 {
                return i;
            }
            r -= w as u64;
        }
        weights.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_independent_of_each_other_and_stable() {
        let a: Vec<u64> = (0..4).map(|_| Rng::for_item(7, 1, 3).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::for_item(7, 1, 3).next_u64(), Rng::for_item(7, 1, 4).next_u64());
        assert_ne!(Rng::for_item(7, 1, 3).next_u64(), Rng::for_item(8, 1, 3).next_u64());
        assert_ne!(Rng::for_item(7, 1, 3).next_u64(), Rng::for_item(7, 2, 3).next_u64());
        let mut r = Rng::from_seed(1);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
            let x = r.range(3, 5);
            assert!((3..=5).contains(&x));
        }
    }
}
