//! How one optimizer step is done, which is all that differs between the ways the worker trains:
//! [`StepStrategy`] is implemented by the replicated model (one process, or DDP: src/replicated.rs)
//! and the sharded one (FSDP: src/fsdp.rs), and the loop in src/train.rs (schedule, accumulation,
//! metrics, checkpoint cadence, resume, progress, outputs) is written once over it.
//!
//! Both strategies can run a micro-batch with per-layer recomputation; [`recompute_micro_step`]
//! is that pass, written once over [`Units`], which says how a unit's parameters are fetched
//! before it runs and released after (nothing to do for a whole model; all-gather, reduce-scatter
//! and free for FSDP's shards).

use std::path::Path;

use anyhow::Result;
use tch::{Kind, Tensor};

use crate::examples::Batch;
use crate::job::{LossNormalization, TrainParams};
use crate::model::{self, Llama, causal_lm_loss, causal_lm_loss_sum};

/// What one micro-batch backpropagates: its token losses reduced to one number, times `scale`.
/// The loop (src/train.rs) picks both for the step's loss normalisation: CAMEL's is the token
/// mean times 1/accumulation; the global one is the token sum times world/(label tokens of the
/// global batch) — the world undoes the ranks' gradient averaging, as transformers' loss *=
/// world_size does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MicroLoss {
    pub reduction: Reduction,
    pub scale: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over the micro-batch's label tokens ([`causal_lm_loss`]).
    Mean,
    /// The sum over them ([`causal_lm_loss_sum`]).
    Sum,
}

impl MicroLoss {
    /// The reduced (unscaled) loss of `logits` against `labels`.
    pub fn reduce(&self, logits: &Tensor, labels: &Tensor) -> Tensor {
        match self.reduction {
            Reduction::Mean => causal_lm_loss(logits, labels),
            Reduction::Sum => causal_lm_loss_sum(logits, labels),
        }
    }
}

/// Rows (token positions) of logits the chunked loss computes at once: a chunk's fp32 logits
/// and their gradient stay near 256 MiB each (2048 positions of LLaMA-2's 32000-token vocabulary,
/// 512 of LLaMA-3's 128256) instead of the whole micro-batch's.
pub const CE_CHUNK_ELEMENTS: i64 = 1 << 26;

/// Positions per chunk of [`head_loss_backward`] for a vocabulary of `vocab`.
pub fn ce_chunk_rows(vocab: i64) -> i64 {
    (CE_CHUNK_ELEMENTS / vocab.max(1)).max(1)
}

/// The final norm, output head and loss of `top` (the last layer's output), backpropagated
/// (times `how.scale`) into the head's and norm's parameters; returns the reduced (unscaled) loss
/// and the gradient with respect to `top`.
///
/// When the shifted positions fit in one chunk of `chunk_rows`, this is the plain graph (the
/// logits, their fp32 copy and its gradient each materialised once). Otherwise the normed hidden
/// states are cut into chunks of positions and each chunk's logits are computed, cast to fp32,
/// reduced and backpropagated before the next: only one chunk's logits exist at a time, and the
/// hidden-state gradients of the chunks are put together and pushed through the final norm once.
/// The loss is the same sum of token losses (a mean divides it by the label-token count), added
/// up in another order: equal within fp32 rounding.
pub fn head_loss_backward(
    model: &Llama,
    top: &Tensor,
    labels: &Tensor,
    how: MicroLoss,
    chunk_rows: i64,
) -> (f64, Tensor) {
    let leaf = top.detach().set_requires_grad(true);
    let (b, t) = (top.size()[0], top.size()[1]);
    let rows = b * (t - 1).max(0);
    if rows <= chunk_rows {
        let loss = how.reduce(&model.head(&leaf), labels);
        (&loss * how.scale).backward();
        return (loss.double_value(&[]), leaf.grad());
    }
    let h = model.final_norm(&leaf);
    let hidden = h.size()[2];
    let (flat, targets) = tch::no_grad(|| {
        (
            h.detach().narrow(1, 0, t - 1).reshape([rows, hidden]),
            labels.narrow(1, 1, t - 1).reshape([rows]).to_device(h.device()),
        )
    });
    // A mean divides the token-loss sum by the label tokens. With none, every token loss is
    // ignored: the sum and its gradients are zeros, as `causal_lm_loss` gives.
    let count = match how.reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => model::label_tokens(labels).max(1) as f64,
    };
    let mut total = Tensor::zeros([], (Kind::Float, h.device()));
    let mut grads = Vec::new();
    let mut start = 0;
    while start < rows {
        let n = chunk_rows.min(rows - start);
        let x = flat.narrow(0, start, n).detach().set_requires_grad(true);
        let logits = x.linear::<Tensor>(&model.head_weight(), None).to_kind(Kind::Float);
        let sum = logits.cross_entropy_loss::<Tensor>(
            &targets.narrow(0, start, n),
            None,
            tch::Reduction::Sum,
            -100,
            0.0,
        );
        (&sum * (how.scale / count)).backward();
        grads.push(x.grad());
        total += sum.detach();
        start += n;
    }
    // The last position predicts nothing: its gradient is zero.
    let g = Tensor::cat(&grads, 0).reshape([b, t - 1, hidden]);
    let last = Tensor::zeros([b, 1, hidden], (g.kind(), g.device()));
    let g = Tensor::cat(&[g, last], 1);
    (h * g).sum(Kind::Float).backward();
    (total.double_value(&[]) / count, leaf.grad())
}

/// How one optimizer step's losses are normalised ([`LossNormalization`]): what each micro-batch
/// backpropagates, and the step's logged loss from the sum of the micro-batches' reduced losses
/// over micro-batches and ranks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StepLoss {
    /// CAMEL's: each micro-batch's token mean over the step's micro-batches (`grad_accum`, fewer
    /// in an epoch's last step, as transformers' `current_gradient_accumulation_steps`), the
    /// ranks' gradients averaged; the logged loss is the mean of the micro-batches' means.
    Camel { grad_accum: usize, world: usize },
    /// The global batch's `tokens` label tokens (every micro-batch of every rank): each
    /// micro-batch's token sum × world / tokens (the ranks' gradient averaging divides by world
    /// again), so the gradient is that of the global token mean whatever the split; the logged
    /// loss is that mean. A step without a label token (every response cut off) backpropagates
    /// zeros and logs 0, as the mean of such micro-batches did.
    Global { tokens: i64, world: usize },
}

impl StepLoss {
    /// The step's normalisation over its `grad_accum` micro-batches; `global_tokens` counts the
    /// global batch's label tokens (an all-reduce across ranks) and is called only when the
    /// normalisation needs it.
    pub fn new(
        how: LossNormalization,
        grad_accum: usize,
        world: usize,
        global_tokens: impl FnOnce() -> Result<i64>,
    ) -> Result<StepLoss> {
        Ok(match how {
            LossNormalization::Camel => StepLoss::Camel { grad_accum, world },
            LossNormalization::GlobalTokens => StepLoss::Global { tokens: global_tokens()?, world },
        })
    }

    /// What each micro-batch backpropagates.
    pub fn micro(&self) -> MicroLoss {
        match *self {
            StepLoss::Camel { grad_accum, .. } => {
                MicroLoss { reduction: Reduction::Mean, scale: 1.0 / grad_accum as f64 }
            }
            StepLoss::Global { tokens, world } => {
                MicroLoss { reduction: Reduction::Sum, scale: world as f64 / tokens.max(1) as f64 }
            }
        }
    }

    /// The step's loss from the sum over micro-batches and ranks of [`MicroLoss::reduce`].
    pub fn logged(&self, reduced_sum: f64) -> f64 {
        match *self {
            StepLoss::Camel { grad_accum, world } => reduced_sum / world as f64 / grad_accum as f64,
            StepLoss::Global { tokens, .. } => reduced_sum / tokens.max(1) as f64,
        }
    }
}

/// The per-strategy operations of the training loop. `model` is the one the job built; a
/// strategy may hold its parameters elsewhere (FSDP's shards) and fill it in only when needed.
pub trait StepStrategy {
    /// The log line that opens the run; `steps` is the schedule, as "T optimizer steps (E per epoch, W warmup)".
    fn describe(&self, model: &Llama, examples: usize, batches_per_epoch: usize, steps: &str) -> String;

    /// One micro-batch forward and backward, its loss reduced and scaled as `loss` says and its
    /// gradients accumulated for the next optimizer step; returns this rank's reduced (unscaled)
    /// loss.
    fn micro_step(&mut self, model: &mut Llama, batch: &Batch, loss: MicroLoss) -> Result<f64>;

    /// Averages the accumulated gradients over ranks, clips their global norm to `max_norm`,
    /// steps AdamW at `lr` and zeroes the gradients; returns the norm before clipping.
    fn optimizer_step(&mut self, lr: f64, max_norm: f64) -> Result<f64>;

    /// A forward pass without gradients for held-out evaluation (src/eval.rs): this rank's summed
    /// token loss and label-token count for its share of a batch. Every rank calls it once per
    /// held-out batch, with `None` where its share is empty.
    fn eval_sums(&mut self, model: &mut Llama, batch: Option<&Batch>) -> Result<(f64, f64)>;

    /// Writes the checkpoint after `step` into the scratch dir (src/resume.rs); every rank calls
    /// it, and it returns once the checkpoint is committed.
    fn save_checkpoint(&self, scratch: &Path, step: u64, params: &TrainParams) -> Result<()>;

    /// Restores the state of the newest checkpoint in the scratch dir; the step to go on at.
    fn resume(&mut self, scratch: &Path, params: &TrainParams) -> Result<Option<u64>>;

    /// Bytes of parameters, gradients and optimizer state this rank holds.
    fn state_bytes(&self) -> u64;

    /// The most bytes of gathered parameters and gradient buffers in flight this rank held at
    /// once (FSDP: the units computing plus those prefetched); None where the whole model is held.
    fn held_peak_bytes(&self) -> Option<u64> {
        None
    }

    /// Puts the trained fp32 weights into `model` on rank 0, which writes the outputs (every rank
    /// calls it).
    fn export(&self, model: &mut Llama) -> Result<()>;
}

/// Where a model's units (0: embeddings, final norm and head; 1 + i: decoder layer i) are while
/// [`recompute_micro_step`] runs them.
pub trait Units {
    type Error;

    /// The model, with the parameters of the units that were fetched and not yet released.
    fn model(&self) -> &Llama;

    /// Makes unit `u`'s parameters present in the model; as leaves that collect gradients when
    /// `grad` (the backward pass).
    fn fetch(&mut self, u: usize, grad: bool) -> Result<(), Self::Error>;

    /// Done with unit `u`; after the backward pass (`grad`) its gradients are collected first.
    fn release(&mut self, u: usize, grad: bool) -> Result<(), Self::Error>;

    /// The units to be fetched next, in order, after the one just fetched: an implementation
    /// that must bring them from elsewhere may start doing so now (FSDP's prefetch).
    fn prefetch(&mut self, _upcoming: &[usize]) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// One micro-batch forward and backward with per-layer recomputation; returns the reduced
/// (unscaled) loss. The forward keeps only each layer's input; the backward recomputes one layer at a time
/// and pushes the incoming gradient through it (the gradient of sum(out · g) with respect to out
/// is g). The root unit stays fetched for the whole micro-batch.
pub fn recompute_micro_step<U: Units>(units: &mut U, batch: &Batch, how: MicroLoss) -> Result<f64, U::Error> {
    let device = units.model().device;
    let ids = batch.ids.to_device(device);
    let labels = batch.labels.to_device(device);
    let (b, t) = (ids.size()[0], ids.size()[1]);
    let n = units.model().layers.len();
    // The order the layers' units are fetched in: forward, then backward in reverse.
    let order: Vec<usize> = (1..=n).chain((1..=n).rev()).collect();
    units.fetch(0, true)?;
    units.prefetch(&order)?;
    let m = units.model();
    let rope = m.rope(&m.default_positions(b, t, 0));
    let emb = m.embed(&ids);
    let mut inputs: Vec<Tensor> = Vec::with_capacity(n);
    let mut x = emb.detach();
    for i in 0..n {
        units.fetch(i + 1, false)?;
        units.prefetch(&order[i + 1..])?;
        inputs.push(x.shallow_clone());
        x = tch::no_grad(|| units.model().layer(i, &x, &rope, &model::Attn::Causal, None));
        units.release(i + 1, false)?;
    }
    let m = units.model();
    let (loss, mut g) = head_loss_backward(m, &x, &labels, how, ce_chunk_rows(m.cfg.vocab_size));
    for i in (0..n).rev() {
        units.fetch(i + 1, true)?;
        units.prefetch(&order[2 * n - i..])?;
        let xi = inputs[i].detach().set_requires_grad(true);
        let out = units.model().layer(i, &xi, &rope, &model::Attn::Causal, None);
        (out * &g).sum(Kind::Float).backward();
        g = xi.grad();
        units.release(i + 1, true)?;
    }
    (emb * g).sum(Kind::Float).backward();
    units.release(0, true)?;
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlamaConfig;

    /// Every gradient of a tiny model after [`head_loss_backward`] with `chunk` positions per chunk.
    fn grads(m: &Llama, x: &Tensor, labels: &Tensor, how: MicroLoss, chunk: i64) -> (f64, Vec<Tensor>) {
        for (_, p) in m.named_parameters() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let top = x.detach().set_requires_grad(true);
        let (loss, g) = head_loss_backward(m, &top, labels, how, chunk);
        let mut out = vec![g];
        out.extend(
            m.named_parameters().iter().filter(|(_, p)| p.grad().defined()).map(|(_, p)| p.grad().copy()),
        );
        (loss, out)
    }

    #[test]
    fn the_chunked_loss_equals_the_whole_one() {
        let cfg = LlamaConfig::from_value(serde_json::json!({"vocab_size": 97, "hidden_size": 16,
            "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "tie_word_embeddings": false}))
        .unwrap();
        let m = Llama::random(cfg, tch::Device::Cpu, Kind::Float, 7).unwrap();
        tch::manual_seed(1);
        let x = Tensor::randn([3, 11, 16], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::randint(97, [3, 11], (Kind::Int64, tch::Device::Cpu));
        // Some labels ignored, as masked ids and prompts are.
        let _ = labels.narrow(1, 2, 3).fill_(-100);
        let none = labels.full_like(-100);
        for (labels, what) in [(&labels, "labels"), (&none, "no label")] {
            for how in [
                MicroLoss { reduction: Reduction::Mean, scale: 0.5 },
                MicroLoss { reduction: Reduction::Sum, scale: 0.25 },
            ] {
                let (want_loss, want) = grads(&m, &x, labels, how, 1000);
                // 30 positions: chunks of 7 (the last one short) and of 1.
                for chunk in [7, 1] {
                    let (loss, got) = grads(&m, &x, labels, how, chunk);
                    assert!(
                        (loss - want_loss).abs() <= 1e-6 * want_loss.abs().max(1e-6),
                        "{what}, {how:?}, chunk {chunk}: loss {loss} vs {want_loss}"
                    );
                    assert_eq!(got.len(), want.len(), "{what}: the same parameters got gradients");
                    for (g, w) in got.iter().zip(&want) {
                        let scale = w.abs().max().double_value(&[]).max(1e-6);
                        let diff = (g - w).abs().max().double_value(&[]);
                        assert!(
                            diff <= 1e-6 * scale,
                            "{what}, {how:?}, chunk {chunk}: gradient off by {diff:e}"
                        );
                    }
                }
            }
        }
    }
}
