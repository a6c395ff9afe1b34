//! Held-out evaluation for pretraining and fine-tuning (issue 17): without it the only number a
//! run reports is the training loss, which keeps falling on a tiny set long after the model has
//! stopped generalising.
//!
//! `eval_fraction` sets aside that share of the examples (blocks or instruction records) before
//! training, chosen by a permutation drawn from the run's `seed` alone, so the split is the same
//! on every rank, on a resume and on a rerun, and is part of the cache key through the params.
//! The training loop only ever sees the other examples ([`Subset`]).
//!
//! The held-out loss is the mean over every label token of the held-out set: each rank sums the
//! token losses of its share of each batch and counts its tokens, and the sums are added over
//! ranks before dividing, so one rank and two ranks report the same number (up to the order of
//! float additions). The forward pass goes through the step strategy ([`StepStrategy::eval_sums`])
//! since FSDP's parameters live in shards and every rank has to take part in gathering them.

use anyhow::{Result, ensure};
use tch::{Kind, Tensor};

use crate::data::SplitMix64;
use crate::examples::{Batch, Examples};
use crate::job::TrainParams;
use crate::model;
use crate::parallel::Dist;
use crate::step::{StepStrategy, Units};

/// Mixed into the seed so that the split's permutation is not the first epoch's batch order.
const SPLIT_SALT: u64 = 0x5EED_E7A1_0F0F_17E1;

/// The indices of the training and the held-out examples out of `n`, for `fraction` (0: none
/// held out). The held-out count is `ceil(fraction · n)`, at least one, and at least one example
/// is left to train on. Both lists are in increasing order, so the training loop visits the
/// training examples in the order it would visit a set that held only them.
pub fn split(n: usize, fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    ensure!((0.0..1.0).contains(&fraction), "eval_fraction must be in [0, 1), got {fraction}");
    if fraction == 0.0 {
        return Ok(((0..n).collect(), Vec::new()));
    }
    let held = ((fraction * n as f64).ceil() as usize).max(1);
    ensure!(held < n, "eval_fraction {fraction} of {n} examples holds out {held}, leaving none to train on");
    let perm = SplitMix64::new(seed ^ SPLIT_SALT).permutation(n);
    let mut eval = perm[..held].to_vec();
    let mut train = perm[held..].to_vec();
    eval.sort_unstable();
    train.sort_unstable();
    Ok((train, eval))
}

/// Some of another example set's examples, renumbered from 0.
pub struct Subset<'a> {
    pub inner: &'a dyn Examples,
    pub indices: Vec<usize>,
}

impl Examples for Subset<'_> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        let mapped: Vec<usize> = indices.iter().map(|&i| self.indices[i]).collect();
        self.inner.batch(&mapped)
    }

    fn lengths(&self) -> Option<Vec<usize>> {
        let all = self.inner.lengths()?;
        Some(self.indices.iter().map(|&i| all[i]).collect())
    }
}

/// The held-out loss after a step: the token-mean cross-entropy and its perplexity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalResult {
    pub loss: f64,
    pub perplexity: f64,
    /// Label tokens the loss is the mean over (all ranks).
    pub tokens: u64,
}

/// The summed token loss and the label-token count of one batch's causal-LM loss (the labels
/// shifted by one, -100 ignored), as [`model::causal_lm_loss`] computes their ratio.
pub fn causal_lm_loss_sums(logits: &Tensor, labels: &Tensor) -> (f64, f64) {
    let (b, t, v) = (logits.size()[0], logits.size()[1], logits.size()[2]);
    if b == 0 || t < 2 {
        return (0.0, 0.0);
    }
    let logits = logits.narrow(1, 0, t - 1).to_kind(Kind::Float).reshape([b * (t - 1), v]);
    let labels = labels.narrow(1, 1, t - 1).reshape([b * (t - 1)]);
    let count = labels.ne(-100).sum(Kind::Int64).int64_value(&[]);
    if count == 0 {
        return (0.0, 0.0);
    }
    let sum = logits.cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Sum, -100, 0.0);
    (sum.double_value(&[]), count as f64)
}

/// A forward pass without gradients, unit by unit as the strategy's [`Units`] hold the model
/// (nothing to fetch for a whole model; all-gather and free for FSDP's shards). A rank whose
/// share of the batch is empty (`None`) still fetches and releases every unit, since the others
/// wait for it in the gathers. Returns this rank's (summed loss, label tokens).
pub fn forward_sums<U: Units>(units: &mut U, batch: Option<&Batch>) -> Result<(f64, f64), U::Error> {
    tch::no_grad(|| {
        units.fetch(0, false)?;
        let n = units.model().layers.len();
        let mut state = batch.map(|b| {
            let m = units.model();
            let ids = b.ids.to_device(m.device);
            let (bs, t) = (ids.size()[0], ids.size()[1]);
            let rope = m.rope(&m.default_positions(bs, t, 0));
            (m.embed(&ids), rope)
        });
        let order: Vec<usize> = (1..=n).collect();
        units.prefetch(&order)?;
        for i in 0..n {
            units.fetch(i + 1, false)?;
            units.prefetch(&order[i + 1..])?;
            if let Some((x, rope)) = &mut state {
                *x = units.model().layer(i, x, rope, &model::Attn::Causal, None);
            }
            units.release(i + 1, false)?;
        }
        let sums = match (&state, batch) {
            (Some((x, _)), Some(b)) => {
                let m = units.model();
                causal_lm_loss_sums(&m.head(x), &b.labels.to_device(m.device))
            }
            _ => (0.0, 0.0),
        };
        units.release(0, false)?;
        Ok(sums)
    })
}

/// Runs the held-out set through the model in batches of `batch_size` per rank (in order, no
/// shuffling) and returns the token-mean loss over all ranks.
pub fn evaluate(
    strategy: &mut dyn StepStrategy,
    model: &mut model::Llama,
    eval: &dyn Examples,
    p: &TrainParams,
    dist: &Dist,
) -> Result<EvalResult> {
    let global = p.batch_size * dist.world;
    let (mut loss_sum, mut tokens) = (0.0, 0.0);
    let all: Vec<usize> = (0..eval.len()).collect();
    for chunk in all.chunks(global) {
        let mine = dist.shard(chunk);
        let batch = (!mine.is_empty()).then(|| eval.batch(&mine));
        let (s, n) = strategy.eval_sums(model, batch.as_ref())?;
        loss_sum += s;
        tokens += n;
    }
    let s = dist.sum(&[loss_sum, tokens], model.device)?;
    ensure!(s[1] > 0.0, "the held-out examples have no label token to score");
    let loss = s[0] / s[1];
    Ok(EvalResult { loss, perplexity: loss.exp(), tokens: s[1] as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_seeded_disjoint_and_complete() {
        let (train, eval) = split(10, 0.2, 7).unwrap();
        assert_eq!(eval.len(), 2);
        assert_eq!(train.len(), 8);
        let mut all: Vec<usize> = train.iter().chain(&eval).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(split(10, 0.2, 7).unwrap(), (train, eval.clone()));
        // Another seed holds out other examples (for these two seeds).
        assert_ne!(split(10, 0.2, 8).unwrap().1, eval);
        // A tiny fraction still holds out one; none, when it is 0.
        assert_eq!(split(10, 0.01, 7).unwrap().1.len(), 1);
        assert!(split(10, 0.0, 7).unwrap().1.is_empty());
        assert!(split(1, 0.5, 7).is_err());
        assert!(split(10, 1.0, 7).is_err());
        assert!(split(10, -0.1, 7).is_err());
    }

    #[test]
    fn the_sums_divide_to_the_mean_loss() {
        tch::manual_seed(0);
        let logits = Tensor::randn([2, 5, 11], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[1i64, 2, -100, 4, 5, 6, 7, 8, -100, -100]).view([2, 5]);
        let (s, n) = causal_lm_loss_sums(&logits, &labels);
        // The labels after the first position: 2, -100, 4, 5 and 7, 8, -100, -100.
        assert_eq!(n, 5.0);
        let mean = model::causal_lm_loss(&logits, &labels).double_value(&[]);
        assert!((s / n - mean).abs() < 1e-6, "{} vs {mean}", s / n);
    }
}
