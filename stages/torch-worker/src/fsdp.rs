//! Fully sharded data parallel (FSDP `full_shard`), as CAMEL ran with torch: the model is cut
//! into units — the embeddings, final norm and head as one, each decoder layer as one — whose
//! parameters are flattened, padded to a multiple of the world size and split across ranks.
//! Each rank keeps only its fp32 master shard, the shard's gradient and the AdamW moments of the
//! shard, so parameter + optimizer memory per rank falls as 1/world.
//!
//! A micro-batch runs unit by unit: before a layer's forward its parameters are all-gathered (in
//! the compute dtype: bf16 on CUDA), the layer runs without a graph keeping only its input, and
//! the gathered parameters are freed. The backward goes through the layers in reverse:
//! re-gather, recompute the layer with a graph, push the incoming gradient through it, then
//! reduce-scatter the layer's gradients into the rank's shard (fp32, averaged over ranks) and
//! free. So activation checkpointing is built in: only layer inputs are kept whatever
//! `activation_checkpointing` says. The root unit (embeddings, norm, head) stays gathered for the
//! whole micro-batch, as torch FSDP's root does.
//!
//! Communication overlaps compute, as torch FSDP's prefetching does: while a unit computes, the
//! all-gathers of the next `distributed.prefetch` units of the micro-step's order (layers forward,
//! then backward in reverse; [`recompute_micro_step`]) are already running, and a layer's
//! gradients are reduce-scattered while the layers below it run their backward, at most
//! `prefetch` of them in flight; the oldest is waited for (and added into its shard's gradient)
//! when that bound is reached, the rest before the optimizer step. So a rank holds its shards plus
//! the units computing and at most `prefetch` gathered ahead and `prefetch` gradient buffers in
//! flight. Gloo runs the started collectives on its own threads; NCCL on two communication streams
//! ordered against the compute stream by CUDA events (src/dist_cuda.cpp). Every shard gradient
//! receives the same additions in the same order whatever `prefetch` is, so the results are
//! identical with it on or off (`prefetch: 0` waits for every collective at once).
//!
//! Checkpoints are sharded (`rank-R-of-W.safetensors` per rank in the step directory, committed
//! by rank 0 after a barrier); the final model is gathered unit by unit and saved by rank 0 in the
//! single-process format.
//!
//! [`Sharded`] is the training loop's [`StepStrategy`] for FSDP; the loop is src/train.rs.

use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, ensure};
use tch::{Device, Kind, Tensor};

use crate::checkpoint;
use crate::dist::{ProcessGroup, ReduceOp, Started};
use crate::examples::Batch;
use crate::job::TrainParams;
use crate::model::Llama;
use crate::optim::AdamW;
use crate::parallel::{self, Dist};
use crate::resume;
use crate::step::{MicroLoss, StepStrategy, Units, recompute_micro_step};

struct Unit {
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    offsets: Vec<i64>,
    numels: Vec<i64>,
    /// Flat length rounded up to a multiple of the world size.
    padded: i64,
    shard_len: i64,
    /// This rank's fp32 master slice `[rank·shard_len, (rank+1)·shard_len)` of the flat unit.
    shard: Tensor,
    /// The accumulated, rank-averaged fp32 gradient of the shard.
    grad: Tensor,
}

/// The sharded model state of one rank.
pub struct Sharded {
    units: Vec<Unit>,
    pg: Rc<ProcessGroup>,
    rank: usize,
    world: usize,
    device: Device,
    compute: Kind,
    pub opt: AdamW,
    /// Per optimizer parameter: (unit, start in the shard, length).
    pieces: Vec<(usize, i64, i64)>,
    /// Units gathered ahead of the one computing, and gradient reduce-scatters left in flight.
    prefetch: usize,
    /// Started all-gathers, in the order their units will be fetched.
    gathers: VecDeque<(usize, Started)>,
    /// Started reduce-scatters of units' gradients, oldest first.
    reduces: VecDeque<(usize, Started)>,
    /// Per unit, the bytes of its gathered parameters installed in the model (0 when freed).
    installed: Vec<u64>,
    /// Bytes of gathered parameters (installed or in flight) and gradient buffers in flight.
    held: u64,
    /// The most `held` has been.
    pub peak_held: u64,
}

/// Which unit a parameter belongs to: 0 for embeddings, norm and head, 1 + i for layer i.
fn unit_of(name: &str) -> usize {
    name.strip_prefix("model.layers.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|i| i.parse::<usize>().ok())
        .map_or(0, |i| i + 1)
}

/// The model's field that holds parameter `name`.
fn slot<'a>(model: &'a mut Llama, name: &str) -> &'a mut Tensor {
    match name {
        "model.embed_tokens.weight" => &mut model.embed,
        "model.norm.weight" => &mut model.norm,
        "lm_head.weight" => model.lm_head.as_mut().expect("an untied head"),
        _ => {
            let rest = name.strip_prefix("model.layers.").expect("a layer parameter");
            let (i, leaf) = rest.split_once('.').expect("layer.leaf");
            let l = &mut model.layers[i.parse::<usize>().expect("layer index")];
            match leaf.trim_end_matches(".weight") {
                "input_layernorm" => &mut l.input_norm,
                "self_attn.q_proj" => &mut l.q,
                "self_attn.k_proj" => &mut l.k,
                "self_attn.v_proj" => &mut l.v,
                "self_attn.o_proj" => &mut l.o,
                "post_attention_layernorm" => &mut l.post_norm,
                "mlp.gate_proj" => &mut l.gate,
                "mlp.up_proj" => &mut l.up,
                "mlp.down_proj" => &mut l.down,
                other => unreachable!("unknown layer parameter {other}"),
            }
        }
    }
}

impl Sharded {
    /// Shards `model` (identical on every rank after a broadcast from rank 0) and frees its
    /// full parameters.
    pub fn new(model: &mut Llama, dist: &Dist, p: &TrainParams) -> Result<Self> {
        let pg = dist.pg.clone().context("FSDP needs a process group")?;
        let (rank, world) = (dist.rank, dist.world);
        let device = model.device;
        let named = model.named_parameters();
        let n_units = model.layers.len() + 1;
        let mut units = Vec::with_capacity(n_units);
        for u in 0..n_units {
            let members: Vec<&(String, Tensor)> = named.iter().filter(|(n, _)| unit_of(n) == u).collect();
            let mut offsets = Vec::new();
            let mut off = 0i64;
            for (_, t) in &members {
                offsets.push(off);
                off += t.numel() as i64;
            }
            let w = world as i64;
            let padded = (off + w - 1) / w * w;
            let shard_len = padded / world as i64;
            let (shard, grad) = tch::no_grad(|| -> Result<(Tensor, Tensor)> {
                let mut parts: Vec<Tensor> =
                    members.iter().map(|(_, t)| t.detach().to_kind(Kind::Float).reshape([-1])).collect();
                parts.push(Tensor::zeros([padded - off], (Kind::Float, device)));
                let flat = Tensor::cat(&parts, 0);
                pg.broadcast(&flat, 0).context("broadcasting the initial weights")?;
                let shard = flat.narrow(0, rank as i64 * shard_len, shard_len).copy();
                Ok((shard, Tensor::zeros([shard_len], (Kind::Float, device))))
            })?;
            units.push(Unit {
                names: members.iter().map(|(n, _)| n.clone()).collect(),
                shapes: members.iter().map(|(_, t)| t.size()).collect(),
                numels: members.iter().map(|(_, t)| t.numel() as i64).collect(),
                offsets,
                padded,
                shard_len,
                shard,
                grad,
            });
        }
        drop(named);
        let mut pieces = Vec::new();
        let mut named_pieces = Vec::new();
        for (u, unit) in units.iter().enumerate() {
            let (lo_shard, hi_shard) = (rank as i64 * unit.shard_len, (rank as i64 + 1) * unit.shard_len);
            for j in 0..unit.names.len() {
                let (lo, hi) =
                    (unit.offsets[j].max(lo_shard), (unit.offsets[j] + unit.numels[j]).min(hi_shard));
                if hi > lo {
                    pieces.push((u, lo - lo_shard, hi - lo));
                    named_pieces.push((unit.names[j].clone(), unit.shard.narrow(0, lo - lo_shard, hi - lo)));
                }
            }
        }
        let opt = AdamW::for_training(named_pieces, p)?;
        let installed = vec![0; n_units];
        let prefetch = p.distributed.as_ref().map_or(1, |d| d.prefetch);
        let mut s = Sharded {
            units,
            pg,
            rank,
            world,
            device,
            compute: model.compute_kind,
            opt,
            pieces,
            prefetch,
            gathers: VecDeque::new(),
            reduces: VecDeque::new(),
            installed,
            held: 0,
            peak_held: 0,
        };
        for u in 0..n_units {
            s.free(model, u);
        }
        Ok(s)
    }

    fn hold(&mut self, bytes: u64) {
        self.held += bytes;
        self.peak_held = self.peak_held.max(self.held);
    }

    /// Bytes of unit `u` gathered in the compute dtype.
    fn gathered_bytes(&self, u: usize) -> u64 {
        (self.units[u].padded * self.compute.elt_size_in_bytes() as i64) as u64
    }

    /// Starts all-gathering unit `u`'s shards in the compute dtype.
    fn start_gather(&mut self, u: usize) -> Result<()> {
        let unit = &self.units[u];
        let (full, local) = tch::no_grad(|| {
            let local = if self.compute == Kind::Float {
                unit.shard.shallow_clone()
            } else {
                unit.shard.to_kind(self.compute)
            };
            (Tensor::empty([unit.padded], (self.compute, self.device)), local)
        });
        let started = self.pg.all_gather_start(full, local).with_context(|| format!("gathering unit {u}"))?;
        self.hold(self.gathered_bytes(u));
        self.gathers.push_back((u, started));
        Ok(())
    }

    /// Waits for every started all-gather and drops what they gathered.
    fn drain_gathers(&mut self) -> Result<()> {
        while let Some((u, started)) = self.gathers.pop_front() {
            let _ = self.pg.wait(started).with_context(|| format!("gathering unit {u}"))?;
            self.held -= self.gathered_bytes(u);
        }
        Ok(())
    }

    /// Makes sure the all-gathers of the next `prefetch` units of `upcoming` (in the order they
    /// will be fetched) are running.
    fn prefetch(&mut self, upcoming: &[usize]) -> Result<()> {
        let want = &upcoming[..upcoming.len().min(self.prefetch)];
        // The started gathers are always a prefix of what comes next; anything else (a caller
        // that changed its order) is waited for and dropped, then started again.
        if !self.gathers.iter().zip(want).all(|((u, _), w)| u == w) || self.gathers.len() > want.len() {
            self.drain_gathers()?;
        }
        for &u in &want[self.gathers.len()..] {
            self.start_gather(u)?;
        }
        Ok(())
    }

    /// Unit `u`'s parameters in the model in the compute dtype (leaves that collect gradients
    /// when `grad`): from its started all-gather when it is next in line, else gathered now.
    fn gather(&mut self, model: &mut Llama, u: usize, grad: bool) -> Result<()> {
        if self.gathers.front().is_none_or(|(v, _)| *v != u) {
            self.drain_gathers()?;
            self.start_gather(u)?;
        }
        let (_, started) = self.gathers.pop_front().expect("a started gather");
        let full = self.pg.wait(started).with_context(|| format!("gathering unit {u}"))?;
        // Installed over a previous copy (none in the micro-step's order): that copy is freed.
        let bytes = self.gathered_bytes(u);
        self.held -= std::mem::replace(&mut self.installed[u], bytes);
        let unit = &self.units[u];
        tch::no_grad(|| {
            for j in 0..unit.names.len() {
                let t = full.narrow(0, unit.offsets[j], unit.numels[j]).view(unit.shapes[j].as_slice());
                *slot(model, &unit.names[j]) = if grad { t.detach().set_requires_grad(true) } else { t };
            }
        });
        Ok(())
    }

    fn free(&mut self, model: &mut Llama, u: usize) {
        for name in &self.units[u].names {
            *slot(model, name) = Tensor::zeros([0], (Kind::Float, self.device));
        }
        self.held -= std::mem::take(&mut self.installed[u]);
    }

    /// Starts reduce-scattering unit `u`'s gradients (fp32, summed over ranks) into the rank's
    /// shard, after finishing the oldest while `prefetch` (at least one) are in flight; with
    /// `prefetch` 0 it is finished at once.
    fn reduce(&mut self, model: &mut Llama, u: usize) -> Result<()> {
        while self.reduces.len() >= self.prefetch.max(1) {
            self.finish_reduce()?;
        }
        let unit = &self.units[u];
        let (out, flat) = tch::no_grad(|| {
            let mut parts = Vec::with_capacity(unit.names.len() + 1);
            let mut total = 0;
            for j in 0..unit.names.len() {
                let g = slot(model, &unit.names[j]).grad();
                total += unit.numels[j];
                parts.push(if g.defined() {
                    g.to_kind(Kind::Float).reshape([-1])
                } else {
                    Tensor::zeros([unit.numels[j]], (Kind::Float, self.device))
                });
            }
            parts.push(Tensor::zeros([unit.padded - total], (Kind::Float, self.device)));
            (Tensor::zeros([unit.shard_len], (Kind::Float, self.device)), Tensor::cat(&parts, 0))
        });
        let started = self
            .pg
            .reduce_scatter_start(out, flat)
            .with_context(|| format!("reducing unit {u}'s gradients"))?;
        self.hold(self.reduce_bytes(u));
        self.reduces.push_back((u, started));
        if self.prefetch == 0 {
            self.finish_reduce()?;
        }
        Ok(())
    }

    /// Bytes of a reduce-scatter of unit `u` in flight: the flat fp32 gradient and the output.
    fn reduce_bytes(&self, u: usize) -> u64 {
        ((self.units[u].padded + self.units[u].shard_len) * 4) as u64
    }

    /// Waits for the oldest reduce-scatter and adds its result, divided by world, into the
    /// shard's gradient (in the order the reduce-scatters started, so the sums are the same
    /// whatever overlapped).
    fn finish_reduce(&mut self) -> Result<()> {
        let Some((u, started)) = self.reduces.pop_front() else { return Ok(()) };
        let out = self.pg.wait(started).with_context(|| format!("reducing unit {u}'s gradients"))?;
        let world = self.world as f64;
        tch::no_grad(|| {
            let _ = self.units[u].grad.shallow_clone().g_add_(&(out / world));
        });
        self.held -= self.reduce_bytes(u);
        Ok(())
    }

    fn shard_file(&self) -> String {
        format!("rank-{}-of-{}.safetensors", self.rank, self.world)
    }
}

/// The units of a micro-batch on this rank: fetched by all-gathering the shards (started ahead
/// by `prefetch`), released by freeing the gathered parameters after starting to reduce-scatter
/// their gradients.
struct Gathered<'a> {
    sharded: &'a mut Sharded,
    model: &'a mut Llama,
}

impl Units for Gathered<'_> {
    type Error = anyhow::Error;

    fn model(&self) -> &Llama {
        &*self.model
    }

    fn fetch(&mut self, u: usize, grad: bool) -> Result<()> {
        self.sharded.gather(self.model, u, grad)
    }

    fn prefetch(&mut self, upcoming: &[usize]) -> Result<()> {
        self.sharded.prefetch(upcoming)
    }

    fn release(&mut self, u: usize, grad: bool) -> Result<()> {
        if grad {
            self.sharded.reduce(self.model, u)?;
        }
        self.sharded.free(self.model, u);
        Ok(())
    }
}

impl StepStrategy for Sharded {
    fn describe(&self, model: &Llama, _examples: usize, _batches_per_epoch: usize, steps: &str) -> String {
        // The model's own parameters were freed when it was sharded; the units know their sizes.
        let n_params: i64 = self.units.iter().flat_map(|u| &u.numels).sum();
        format!(
            "FSDP over {} ranks: {} units, {n_params} parameters on {:?} computing in {:?}, gathering {} layer(s) \
             ahead; {steps}",
            self.world,
            self.units.len(),
            model.device,
            model.compute_kind,
            self.prefetch,
        )
    }

    /// Unit by unit: the root unit stays gathered for the whole micro-batch, each layer is
    /// gathered for its forward and again for its recomputation in the backward pass.
    fn micro_step(&mut self, model: &mut Llama, batch: &Batch, loss: MicroLoss) -> Result<f64> {
        recompute_micro_step(&mut Gathered { sharded: self, model }, batch, loss)
    }

    /// Unit by unit, as the forward of a micro-step, each unit gathered and freed again.
    fn eval_sums(&mut self, model: &mut Llama, batch: Option<&Batch>) -> Result<(f64, f64)> {
        crate::eval::forward_sums(&mut Gathered { sharded: self, model }, batch)
    }

    fn optimizer_step(&mut self, lr: f64, max_norm: f64) -> Result<f64> {
        // The gradients still in flight land in their shards first (the micro-steps leave no
        // gather running, but a failed one may have).
        while !self.reduces.is_empty() {
            self.finish_reduce()?;
        }
        self.drain_gathers()?;
        // The gradients are already averaged (reduce-scattered); the norm is global over shards.
        let total = tch::no_grad(|| -> Result<Tensor> {
            let sq: Vec<Tensor> =
                self.units.iter().map(|u| u.grad.pow_tensor_scalar(2).sum(Kind::Float)).collect();
            let sq = Tensor::stack(&sq, 0).sum(Kind::Float).reshape([1]);
            self.pg.all_reduce(&sq, ReduceOp::Sum).context("summing the gradient norm")?;
            let total = sq.sqrt().reshape([]);
            if max_norm > 0.0 {
                let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
                for u in &self.units {
                    let _ = u.grad.shallow_clone().g_mul_(&coef);
                }
            }
            Ok(total)
        })?;
        let grads: Vec<Tensor> =
            self.pieces.iter().map(|&(u, start, len)| self.units[u].grad.narrow(0, start, len)).collect();
        self.opt.step_with_grads(lr, &grads)?;
        for u in &self.units {
            let _ = u.grad.shallow_clone().zero_();
        }
        Ok(total.double_value(&[]))
    }

    /// Every rank writes its shard and moments (`rank-R-of-W.safetensors`); rank 0 commits the
    /// directory once all are written.
    fn save_checkpoint(&self, scratch: &Path, step: u64, params: &TrainParams) -> Result<()> {
        if self.rank == 0 {
            resume::begin(scratch, step)?;
        }
        self.pg.barrier().context("waiting for the checkpoint directory")?;
        let mut tensors: Vec<(String, Tensor)> = self
            .units
            .iter()
            .enumerate()
            .map(|(u, unit)| (format!("shard.{u}"), unit.shard.shallow_clone()))
            .collect();
        tensors.extend(self.opt.state_tensors());
        checkpoint::write_safetensors(&resume::staging_dir(scratch, step).join(self.shard_file()), &tensors)?;
        self.pg.barrier().context("waiting for every rank's checkpoint shard")?;
        if self.rank == 0 {
            resume::commit(scratch, step, params, Some(self.world))?;
        }
        self.pg.barrier().context("waiting for the checkpoint to be committed")?;
        Ok(())
    }

    fn resume(&mut self, scratch: &Path, params: &TrainParams) -> Result<Option<u64>> {
        let Some(found) = resume::find(scratch, params)? else { return Ok(None) };
        let dir = &found.dir;
        ensure!(
            found.state.world == Some(self.world),
            "checkpoint {} holds FSDP shards for a world of {:?}, this run has {} ranks; delete it to start over",
            dir.display(),
            found.state.world,
            self.world
        );
        let file = dir.join(self.shard_file());
        let saved = checkpoint::read_safetensors(&file)?;
        tch::no_grad(|| -> Result<()> {
            for (u, unit) in self.units.iter().enumerate() {
                let t = saved
                    .get(&format!("shard.{u}"))
                    .with_context(|| format!("{} lacks unit {u}", file.display()))?;
                ensure!(t.size() == unit.shard.size(), "{}: unit {u} has the wrong size", file.display());
                unit.shard.shallow_clone().copy_(t);
            }
            Ok(())
        })?;
        self.opt.load_state(&saved, found.step)?;
        Ok(Some(found.step))
    }

    fn held_peak_bytes(&self) -> Option<u64> {
        Some(self.peak_held)
    }

    /// Bytes of fp32 master shards, their gradients and AdamW moments on this rank.
    fn state_bytes(&self) -> u64 {
        let mut held: Vec<&Tensor> = self.units.iter().flat_map(|u| [&u.shard, &u.grad]).collect();
        held.extend(&self.opt.exp_avg);
        held.extend(&self.opt.exp_avg_sq);
        parallel::state_bytes(&held)
    }

    /// Gathers the full fp32 weights unit by unit; rank 0 gets them into `model` (on the CPU).
    fn export(&self, model: &mut Llama) -> Result<()> {
        for (u, unit) in self.units.iter().enumerate() {
            let full = Tensor::empty([unit.padded], (Kind::Float, self.device));
            self.pg
                .all_gather_into(&full, &unit.shard)
                .with_context(|| format!("gathering unit {u} for the export"))?;
            if self.rank == 0 {
                let full = full.to_device(Device::Cpu);
                for j in 0..unit.names.len() {
                    let t = full
                        .narrow(0, unit.offsets[j], unit.numels[j])
                        .view(unit.shapes[j].as_slice())
                        .copy();
                    *slot(model, &unit.names[j]) = t;
                }
            }
        }
        Ok(())
    }
}
