//! splitmix64: the seeded randomness of the evaluation stages (answer order per row, bootstrap
//! resamples). Written out rather than taken from a crate so that a seed means the same numbers
//! in every camel version.

#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator for item `i` of a stream seeded by `seed` (independent of other items).
    pub fn for_item(seed: u64, i: u64) -> Self {
        let mut g = SplitMix64(seed ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03));
        g.next_u64();
        g
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0), without modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutations_are_seeded_and_cover_all_orders() {
        let a = SplitMix64::for_item(7, 3).permutation(4);
        assert_eq!(a, SplitMix64::for_item(7, 3).permutation(4));
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..500 {
            let mut p = SplitMix64::for_item(7, i).permutation(3);
            seen.insert(p.clone());
            p.sort();
            assert_eq!(p, [0, 1, 2]);
        }
        assert_eq!(seen.len(), 6);
    }
}
