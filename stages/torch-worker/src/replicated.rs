//! The replicated step: every process holds the whole model and its optimizer state. With one
//! process that is plain training; with DDP (issue 8) rank 0's parameters are broadcast at the
//! start and gradients are averaged over ranks (bucketed all-reduce, src/parallel.rs) before each
//! optimizer step, so every rank takes the same step and rank 0 alone writes checkpoints.

use std::convert::Infallible;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor};

use crate::checkpoint;
use crate::examples::Batch;
use crate::job::{Checkpointing, TrainParams};
use crate::memory;
use crate::model::Llama;
use crate::optim::{AdamW, clip_grad_norm};
use crate::parallel::{self, Dist};
use crate::resume;
use crate::step::{MicroLoss, StepStrategy, Units, ce_chunk_rows, head_loss_backward, recompute_micro_step};

/// The whole model's parameters, its AdamW state, and the group it is replicated over.
pub struct Replicated {
    /// The model's parameters (sharing storage with it).
    params: Vec<(String, Tensor)>,
    opt: AdamW,
    dist: Dist,
    activation_checkpointing: Checkpointing,
    /// The device's free bytes once the parameters were loaded (None on the CPU), against which
    /// `activation_checkpointing: auto` decides.
    free: Option<u64>,
}

impl Replicated {
    /// Makes every rank's `model` rank 0's and sets up AdamW over its parameters.
    pub fn new(model: &Llama, dist: &Dist, p: &TrainParams) -> Result<Self> {
        let params = model.named_parameters();
        dist.broadcast_parameters(&params)?;
        let opt = AdamW::for_training(model.named_parameters(), p)?;
        let free = match model.device {
            Device::Cuda(i) => crate::dist::cuda_mem_info(i).map(|(free, _)| free),
            _ => None,
        };
        Ok(Replicated {
            params,
            opt,
            dist: dist.clone(),
            activation_checkpointing: p.activation_checkpointing,
            free,
        })
    }

    /// Whether a micro-batch of this shape recomputes its layers.
    fn recompute(&self, model: &Llama, batch: &Batch) -> bool {
        match self.activation_checkpointing {
            Checkpointing::Off => false,
            Checkpointing::On => true,
            Checkpointing::Auto => {
                let (b, t) = (batch.ids.size()[0], batch.ids.size()[1]);
                memory::checkpointing_needed(&model.cfg, b, t, model.compute_kind, self.free)
            }
        }
    }
}

impl StepStrategy for Replicated {
    fn describe(&self, model: &Llama, examples: usize, batches_per_epoch: usize, steps: &str) -> String {
        let auto = match (self.activation_checkpointing, self.free) {
            (Checkpointing::Auto, Some(free)) => format!(
                "; activation checkpointing where a micro-batch's step is estimated above {:.1} GiB ({:.0}% of \
                 the {:.1} GiB free)",
                memory::USABLE_SHARE * free as f64 / (1u64 << 30) as f64,
                100.0 * memory::USABLE_SHARE,
                free as f64 / (1u64 << 30) as f64
            ),
            (Checkpointing::Auto, None) => "; activation checkpointing auto: off on the CPU".into(),
            _ => String::new(),
        };
        format!(
            "{examples} examples, {batches_per_epoch} micro-batches per epoch, {steps}; {} parameters on {:?} \
             computing in {:?}{auto}",
            model.num_parameters(),
            model.device,
            model.compute_kind
        )
    }

    fn micro_step(&mut self, model: &mut Llama, batch: &Batch, loss: MicroLoss) -> Result<f64> {
        Ok(micro_step(model, batch, loss, self.recompute(model, batch)))
    }

    fn optimizer_step(&mut self, lr: f64, max_norm: f64) -> Result<f64> {
        self.dist.reduce_gradients(&self.params)?;
        let grad_norm = clip_grad_norm(&self.params, max_norm);
        self.opt.step(lr)?;
        self.opt.zero_grad();
        Ok(grad_norm)
    }

    fn eval_sums(&mut self, model: &mut Llama, batch: Option<&Batch>) -> Result<(f64, f64)> {
        let Ok(sums) = crate::eval::forward_sums(&mut Whole(model), batch);
        Ok(sums)
    }

    /// Rank 0 writes the weights and the AdamW moments (the other ranks' are the same); the
    /// others wait until it has committed them.
    fn save_checkpoint(&self, scratch: &Path, step: u64, params: &TrainParams) -> Result<()> {
        if self.dist.is_main() {
            let tmp = resume::begin(scratch, step)?;
            checkpoint::write_safetensors(&tmp.join("model.safetensors"), &self.params)?;
            checkpoint::write_safetensors(&tmp.join("optimizer.safetensors"), &self.opt.state_tensors())?;
            resume::commit(scratch, step, params, None)?;
        }
        self.dist.barrier()
    }

    fn resume(&mut self, scratch: &Path, params: &TrainParams) -> Result<Option<u64>> {
        let Some(found) = resume::find(scratch, params)? else { return Ok(None) };
        let weights = checkpoint::read_safetensors(&found.dir.join("model.safetensors"))?;
        tch::no_grad(|| -> Result<()> {
            for (name, p) in &self.params {
                let t = weights.get(name).with_context(|| format!("checkpoint lacks `{name}`"))?;
                ensure!(t.size() == p.size(), "checkpoint tensor `{name}` has the wrong shape");
                p.shallow_clone().copy_(t);
            }
            Ok(())
        })?;
        let optim = checkpoint::read_safetensors(&found.dir.join("optimizer.safetensors"))?;
        self.opt.load_state(&optim, found.step)?;
        Ok(Some(found.step))
    }

    /// The parameters, their gradients (held from a step's first backward to its optimizer
    /// step, dropped in between: counted as the parameters' size) and the AdamW moments.
    fn state_bytes(&self) -> u64 {
        let params: Vec<&Tensor> = self.params.iter().map(|(_, t)| t).collect();
        let moments: Vec<&Tensor> = self.opt.exp_avg.iter().chain(&self.opt.exp_avg_sq).collect();
        2 * parallel::state_bytes(&params) + parallel::state_bytes(&moments)
    }

    /// The model already holds the trained weights.
    fn export(&self, _model: &mut Llama) -> Result<()> {
        Ok(())
    }
}

/// A whole model: every unit is always there, so fetching and releasing do nothing.
struct Whole<'a>(&'a Llama);

impl Units for Whole<'_> {
    type Error = Infallible;

    fn model(&self) -> &Llama {
        self.0
    }

    fn fetch(&mut self, _u: usize, _grad: bool) -> Result<(), Infallible> {
        Ok(())
    }

    fn release(&mut self, _u: usize, _grad: bool) -> Result<(), Infallible> {
        Ok(())
    }
}

/// One micro-batch forward and backward on the whole model; returns the reduced (unscaled) loss. With
/// `activation_checkpointing` the layers are recomputed in the backward pass
/// ([`recompute_micro_step`]) instead of keeping their activations.
pub fn micro_step(model: &Llama, batch: &Batch, how: MicroLoss, activation_checkpointing: bool) -> f64 {
    if activation_checkpointing {
        let Ok(loss) = recompute_micro_step(&mut Whole(model), batch, how);
        return loss;
    }
    let ids = batch.ids.to_device(model.device);
    let labels = batch.labels.to_device(model.device);
    let chunk = ce_chunk_rows(model.cfg.vocab_size);
    let (b, t) = (ids.size()[0], ids.size()[1]);
    if b * (t - 1) <= chunk {
        let loss = how.reduce(&model.forward(&ids), &labels);
        (&loss * how.scale).backward();
        return loss.double_value(&[]);
    }
    // Too many positions for one chunk of the loss: the layers keep their graph, the head and
    // loss go chunk by chunk (step::head_loss_backward), and the gradient of the last layer's
    // output is pushed through the layers.
    let x = model.hidden_states(&ids);
    let (loss, g) = head_loss_backward(model, &x, &labels, how, chunk);
    (x * g).sum(Kind::Float).backward();
    loss
}
