//! HF Trainer's (transformers 5) step count, epoch loop and `get_cosine_schedule_with_warmup`,
//! exactly:
//!
//! - Each epoch is cut into optimizer steps of `accumulation` micro-batches, the last one taking
//!   the micro-batches left (`num_update_steps_per_epoch` = ceil(batches_per_epoch / accumulation));
//!   no accumulation crosses an epoch boundary, so no step holds an example twice.
//! - T = ceil(epochs × steps per epoch) optimizer steps (a fractional epoch stops part-way through
//!   its last epoch), W = ceil(T × warmup_ratio).
//! - The lr multiplier is s/W while s < W (so the first optimizer step runs at lr 0), then
//!   0.5·(1 + cos(π·(s−W)/(T−W))), never below 0.

use std::ops::Range;

/// Which micro-batches each optimizer step takes: HF Trainer's `_run_epoch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    /// Micro-batches per epoch (a DataLoader's length: the last one of an epoch may be short).
    pub batches_per_epoch: u64,
    /// `grad_accum`: micro-batches per optimizer step.
    pub accumulation: u64,
}

impl Steps {
    pub fn new(batches_per_epoch: usize, accumulation: usize) -> Steps {
        Steps { batches_per_epoch: batches_per_epoch.max(1) as u64, accumulation: accumulation.max(1) as u64 }
    }

    /// Optimizer steps per epoch: HF's `num_update_steps_per_epoch`, ceil(batches / accumulation).
    pub fn per_epoch(&self) -> u64 {
        self.batches_per_epoch.div_ceil(self.accumulation)
    }

    /// Optimizer steps of a run of `epochs` (possibly fractional): HF's `max_steps`.
    pub fn total(&self, epochs: f64) -> u64 {
        (epochs * self.per_epoch() as f64).ceil() as u64
    }

    /// The micro-batches of optimizer step `s` (0-based), as indices counted from the start of
    /// training ([`crate::data::BatchOrder::micro_batch`]'s): `accumulation` consecutive
    /// micro-batches of one epoch, or the ones left in the epoch for its last step.
    pub fn micro_batches(&self, s: u64) -> Range<u64> {
        let (epoch, within) = (s / self.per_epoch(), s % self.per_epoch());
        let first = epoch * self.batches_per_epoch + within * self.accumulation;
        let end = (epoch + 1) * self.batches_per_epoch;
        first..(first + self.accumulation).min(end)
    }

    /// The epoch the run has reached after step `s` (0-based): HF's `state.epoch`, the epoch's
    /// index plus the share of its micro-batches done (computed as Trainer computes it).
    pub fn epoch_after(&self, s: u64) -> f64 {
        let epoch = s / self.per_epoch();
        let done = self.micro_batches(s).end - epoch * self.batches_per_epoch;
        epoch as f64 + done as f64 / self.batches_per_epoch as f64
    }
}

pub fn warmup_steps(total: u64, warmup_ratio: f64) -> u64 {
    (total as f64 * warmup_ratio).ceil() as u64
}

#[derive(Clone, Copy, Debug)]
pub struct Cosine {
    pub total: u64,
    pub warmup: u64,
}

impl Cosine {
    /// The lr multiplier of optimizer step `s` (0-based).
    pub fn multiplier(&self, s: u64) -> f64 {
        if s < self.warmup {
            return s as f64 / self.warmup.max(1) as f64;
        }
        let progress = (s - self.warmup) as f64 / (self.total.saturating_sub(self.warmup)).max(1) as f64;
        (0.5 * (1.0 + (std::f64::consts::PI * 2.0 * 0.5 * progress).cos())).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_issue_formulas() {
        assert_eq!(Steps::new(10, 3).total(1.0), 4);
        assert_eq!(Steps::new(2, 8).total(3.0), 3);
        assert_eq!(Steps::new(10, 1).total(1.5), 15);
        assert_eq!(warmup_steps(100, 0.03), 3);
        assert_eq!(warmup_steps(10, 0.03), 1);
        let c = Cosine { total: 10, warmup: 2 };
        assert_eq!(c.multiplier(0), 0.0);
        assert_eq!(c.multiplier(1), 0.5);
        assert_eq!(c.multiplier(2), 1.0);
        assert!((c.multiplier(6) - 0.5).abs() < 1e-12);
        assert!(c.multiplier(10).abs() < 1e-12);
    }

    /// QA's case: 16 micro-batches per epoch, accumulation 10, 2 epochs is 4 steps (10 + 6 per
    /// epoch) at the epochs transformers' Trainer logs; accumulation 32 over 16 is one step of
    /// the 16, not 32 holding each example twice.
    #[test]
    fn no_step_crosses_an_epoch_and_the_last_one_takes_what_is_left() {
        let s = Steps::new(16, 10);
        assert_eq!((s.per_epoch(), s.total(2.0)), (2, 4));
        let steps: Vec<_> = (0..4).map(|i| (s.micro_batches(i), s.epoch_after(i))).collect();
        assert_eq!(steps, [(0..10, 0.625), (10..16, 1.0), (16..26, 1.625), (26..32, 2.0)]);
        let s = Steps::new(16, 32);
        assert_eq!((s.total(1.0), s.micro_batches(0), s.epoch_after(0)), (1, 0..16, 1.0));
        assert_eq!((s.total(3.0), s.micro_batches(2)), (3, 32..48));
        // Every micro-batch of every epoch exactly once, whatever the accumulation.
        for (bpe, accum) in [(7, 3), (6, 3), (5, 1), (3, 8), (1, 1)] {
            let s = Steps::new(bpe, accum);
            let all: Vec<u64> = (0..s.total(3.0)).flat_map(|i| s.micro_batches(i)).collect();
            assert_eq!(all, (0..3 * bpe as u64).collect::<Vec<_>>(), "{bpe} per epoch, accumulation {accum}");
        }
        // A fractional epoch stops part-way (HF: ceil(epochs × steps per epoch)).
        let s = Steps::new(7, 3);
        assert_eq!((s.total(1.5), s.micro_batches(4), s.epoch_after(4)), (5, 10..13, 1.0 + 6.0 / 7.0));
    }
}
