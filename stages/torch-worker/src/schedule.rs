//! HF Trainer's step count and `get_cosine_schedule_with_warmup`, exactly:
//! T = ceil(epochs × max(batches_per_epoch // accumulation, 1)), W = ceil(T × warmup_ratio),
//! multiplier s/W while s < W (so the first optimizer step runs at lr 0), then
//! 0.5·(1 + cos(π·(s−W)/(T−W))), never below 0.

/// Optimizer steps of a run: HF's `num_update_steps_per_epoch` and `max_steps`.
pub fn total_steps(batches_per_epoch: usize, accumulation: usize, epochs: f64) -> u64 {
    let per_epoch = (batches_per_epoch / accumulation.max(1)).max(1);
    (epochs * per_epoch as f64).ceil() as u64
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
        assert_eq!(total_steps(10, 3, 1.0), 3);
        assert_eq!(total_steps(2, 8, 3.0), 3);
        assert_eq!(total_steps(10, 1, 1.5), 15);
        assert_eq!(warmup_steps(100, 0.03), 3);
        assert_eq!(warmup_steps(10, 0.03), 1);
        let c = Cosine { total: 10, warmup: 2 };
        assert_eq!(c.multiplier(0), 0.0);
        assert_eq!(c.multiplier(1), 0.5);
        assert_eq!(c.multiplier(2), 1.0);
        assert!((c.multiplier(6) - 0.5).abs() < 1e-12);
        assert!(c.multiplier(10).abs() < 1e-12);
    }
}
