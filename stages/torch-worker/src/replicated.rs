//! The replicated step: every process holds the whole model and its optimizer state. With one
//! process that is plain training; with DDP (issue 8) rank 0's parameters are broadcast at the
//! start and gradients are averaged over ranks (bucketed all-reduce, src/parallel.rs) before each
//! optimizer step, so every rank takes the same step and rank 0 alone writes checkpoints.

use std::convert::Infallible;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use tch::Tensor;

use crate::checkpoint;
use crate::examples::Batch;
use crate::job::TrainParams;
use crate::model::Llama;
use crate::optim::{AdamW, clip_grad_norm};
use crate::parallel::{self, Dist};
use crate::resume;
use crate::step::{MicroLoss, StepStrategy, Units, recompute_micro_step};

/// The whole model's parameters, its AdamW state, and the group it is replicated over.
pub struct Replicated {
    /// The model's parameters (sharing storage with it).
    params: Vec<(String, Tensor)>,
    opt: AdamW,
    dist: Dist,
    activation_checkpointing: bool,
}

impl Replicated {
    /// Makes every rank's `model` rank 0's and sets up AdamW over its parameters.
    pub fn new(model: &Llama, dist: &Dist, p: &TrainParams) -> Result<Self> {
        let params = model.named_parameters();
        dist.broadcast_parameters(&params)?;
        let opt = AdamW::for_training(model.named_parameters(), p)?;
        Ok(Replicated {
            params,
            opt,
            dist: dist.clone(),
            activation_checkpointing: p.activation_checkpointing,
        })
    }
}

impl StepStrategy for Replicated {
    fn describe(&self, model: &Llama, examples: usize, batches_per_epoch: usize, steps: &str) -> String {
        format!(
            "{examples} examples, {batches_per_epoch} micro-batches per epoch, {steps}; {} parameters on {:?} \
             computing in {:?}",
            model.num_parameters(),
            model.device,
            model.compute_kind
        )
    }

    fn micro_step(&mut self, model: &mut Llama, batch: &Batch, loss: MicroLoss) -> Result<f64> {
        Ok(micro_step(model, batch, loss, self.activation_checkpointing))
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

    fn state_bytes(&self) -> u64 {
        let grads: Vec<Tensor> = self.params.iter().map(|(_, t)| t.grad()).collect();
        let held: Vec<&Tensor> = self
            .params
            .iter()
            .map(|(_, t)| t)
            .chain(&grads)
            .chain(&self.opt.exp_avg)
            .chain(&self.opt.exp_avg_sq)
            .collect();
        parallel::state_bytes(&held)
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
    let loss = how.reduce(&model.forward(&ids), &labels);
    (&loss * how.scale).backward();
    loss.double_value(&[])
}
