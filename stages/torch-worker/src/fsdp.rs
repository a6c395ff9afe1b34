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
//! Checkpoints are sharded (`rank-R-of-W.safetensors` per rank in the step directory, committed
//! by rank 0 after a barrier); the final model is gathered unit by unit and saved by rank 0 in the
//! single-process format.

use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::checkpoint;
use crate::data::BatchOrder;
use crate::dist::{ProcessGroup, ReduceOp};
use crate::job::Job;
use crate::model::{self, Llama, causal_lm_loss};
use crate::optim::AdamW;
use crate::parallel::Dist;
use crate::schedule::{Cosine, total_steps, warmup_steps};
use crate::train::{
    Batch, CkptState, Event, Examples, Summary, ckpt_dir, compute_kind, latest_checkpoint, open_metrics,
    report_memory, write_outputs,
};

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
    pub fn new(model: &mut Llama, dist: &Dist, p: &crate::job::TrainParams) -> Result<Self> {
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
        let mut opt = AdamW::new(
            named_pieces,
            model::is_no_decay,
            p.adam_beta1,
            p.adam_beta2,
            p.adam_eps,
            p.weight_decay,
        );
        opt.implementation = crate::optim::Implementation::from_name(&p.optim)?;
        let s = Sharded { units, pg, rank, world, device, compute: model.compute_kind, opt, pieces };
        for u in 0..n_units {
            s.free(model, u);
        }
        Ok(s)
    }

    /// All-gathers unit `u` into the model's parameters in the compute dtype (leaves that
    /// collect gradients when `grad`).
    fn gather(&self, model: &mut Llama, u: usize, grad: bool) -> Result<()> {
        let unit = &self.units[u];
        tch::no_grad(|| -> Result<()> {
            let local = if self.compute == Kind::Float {
                unit.shard.shallow_clone()
            } else {
                unit.shard.to_kind(self.compute)
            };
            let full = Tensor::empty([unit.padded], (self.compute, self.device));
            self.pg.all_gather_into(&full, &local).with_context(|| format!("gathering unit {u}"))?;
            for j in 0..unit.names.len() {
                let t = full.narrow(0, unit.offsets[j], unit.numels[j]).view(unit.shapes[j].as_slice());
                *slot(model, &unit.names[j]) = if grad { t.detach().set_requires_grad(true) } else { t };
            }
            Ok(())
        })
    }

    fn free(&self, model: &mut Llama, u: usize) {
        for name in &self.units[u].names {
            *slot(model, name) = Tensor::zeros([0], (Kind::Float, self.device));
        }
    }

    /// Reduce-scatters unit `u`'s gradients (fp32, summed over ranks, divided by world) into the
    /// rank's shard gradient.
    fn reduce(&mut self, model: &mut Llama, u: usize) -> Result<()> {
        let world = self.world as f64;
        let unit = &self.units[u];
        tch::no_grad(|| -> Result<()> {
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
            let flat = Tensor::cat(&parts, 0);
            let out = Tensor::zeros([unit.shard_len], (Kind::Float, self.device));
            self.pg
                .reduce_scatter_into(&out, &flat)
                .with_context(|| format!("reducing unit {u}'s gradients"))?;
            let _ = unit.grad.shallow_clone().g_add_(&(out / world));
            Ok(())
        })
    }

    /// One micro-batch forward and backward, unit by unit; returns the rank's (unscaled) loss.
    pub fn micro_step(&mut self, model: &mut Llama, batch: &Batch, scale: f64) -> Result<f64> {
        let ids = batch.ids.to_device(self.device);
        let labels = batch.labels.to_device(self.device);
        let (b, t) = (ids.size()[0], ids.size()[1]);
        self.gather(model, 0, true)?;
        let rope = model.rope(&model.default_positions(b, t, 0));
        let emb = model.embed(&ids);
        let n = model.layers.len();
        let mut inputs = Vec::with_capacity(n);
        let mut x = emb.detach();
        for i in 0..n {
            self.gather(model, i + 1, false)?;
            inputs.push(x.shallow_clone());
            x = tch::no_grad(|| model.layer(i, &x, &rope, &model::Attn::Causal, None));
            self.free(model, i + 1);
        }
        let top = x.detach().set_requires_grad(true);
        let loss = causal_lm_loss(&model.head(&top), &labels);
        (&loss * scale).backward();
        let mut g = top.grad();
        for i in (0..n).rev() {
            self.gather(model, i + 1, true)?;
            let xi = inputs[i].detach().set_requires_grad(true);
            let out = model.layer(i, &xi, &rope, &model::Attn::Causal, None);
            (out * &g).sum(Kind::Float).backward();
            g = xi.grad();
            self.reduce(model, i + 1)?;
            self.free(model, i + 1);
        }
        (emb * g).sum(Kind::Float).backward();
        self.reduce(model, 0)?;
        self.free(model, 0);
        Ok(loss.double_value(&[]))
    }

    /// Clips the (global) gradient norm, steps AdamW on the shards, zeroes the gradients;
    /// returns the norm before clipping.
    pub fn optimizer_step(&mut self, lr: f64, max_norm: f64) -> Result<f64> {
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

    /// Bytes of fp32 master shards, their gradients and AdamW moments on this rank.
    pub fn state_bytes(&self) -> u64 {
        let mut held: Vec<&Tensor> = self.units.iter().flat_map(|u| [&u.shard, &u.grad]).collect();
        held.extend(&self.opt.exp_avg);
        held.extend(&self.opt.exp_avg_sq);
        crate::parallel::state_bytes(&held)
    }

    fn shard_file(&self) -> String {
        format!("rank-{}-of-{}.safetensors", self.rank, self.world)
    }

    /// Writes every rank's shard into `checkpoints/step-N` (rank 0 commits it once all are
    /// written) and removes older checkpoints.
    pub fn save_checkpoint(&self, scratch: &Path, step: u64, params: &crate::job::TrainParams) -> Result<()> {
        let root = ckpt_dir(scratch);
        let tmp = root.join(format!(".tmp-step-{step}"));
        if self.rank == 0 {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
        }
        self.pg.barrier().context("waiting for the checkpoint directory")?;
        let mut tensors: Vec<(String, Tensor)> = self
            .units
            .iter()
            .enumerate()
            .map(|(u, unit)| (format!("shard.{u}"), unit.shard.shallow_clone()))
            .collect();
        tensors.extend(self.opt.state_tensors());
        checkpoint::write_safetensors(&tmp.join(self.shard_file()), &tensors)?;
        self.pg.barrier().context("waiting for every rank's checkpoint shard")?;
        if self.rank == 0 {
            let state = CkptState { step, params: serde_json::to_value(params)?, world: Some(self.world) };
            std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)?)?;
            let dst = root.join(format!("step-{step}"));
            std::fs::rename(&tmp, &dst)
                .with_context(|| format!("failed to commit checkpoint {}", dst.display()))?;
            for e in std::fs::read_dir(&root)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("step-") && name != format!("step-{step}") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        self.pg.barrier().context("waiting for the checkpoint to be committed")?;
        Ok(())
    }

    /// Restores this rank's shard and moments from the newest checkpoint; the step to go on at.
    pub fn resume(&mut self, scratch: &Path, params: &crate::job::TrainParams) -> Result<Option<u64>> {
        let Some((step, dir)) = latest_checkpoint(scratch) else { return Ok(None) };
        let state: CkptState = serde_json::from_str(&std::fs::read_to_string(dir.join("state.json"))?)?;
        if state.params != serde_json::to_value(params)? {
            bail!("checkpoint {} was written with other params; delete it to start over", dir.display());
        }
        ensure!(
            state.world == Some(self.world),
            "checkpoint {} holds FSDP shards for a world of {:?}, this run has {} ranks; delete it to start over",
            dir.display(),
            state.world,
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
        self.opt.load_state(&saved, step)?;
        Ok(Some(step))
    }

    /// Gathers the full fp32 weights unit by unit; rank 0 gets them into `model` (on the CPU).
    pub fn gather_full(&self, model: &mut Llama) -> Result<()> {
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

/// The training loop of src/train.rs with FSDP's sharded state.
pub fn train(
    job: &Job,
    mut model: Llama,
    save_kind: Kind,
    examples: &dyn Examples,
    side_dirs: &[&Path],
    dist: Dist,
    report: &mut dyn FnMut(Event),
) -> Result<Summary> {
    let p = &job.params;
    ensure!(p.batch_size > 0 && p.grad_accum > 0, "batch_size and grad_accum must be at least 1");
    ensure!(p.epochs > 0.0, "epochs must be positive");
    ensure!(!examples.is_empty(), "the training set is empty");
    model.compute_kind = compute_kind(p, model.device)?;
    let lengths = if p.group_by_length { examples.lengths().map(std::sync::Arc::new) } else { None };
    let order = BatchOrder {
        n: examples.len(),
        batch: p.batch_size * dist.world,
        shuffle: p.shuffle,
        seed: p.seed,
        lengths,
    };
    let total = total_steps(order.batches_per_epoch(), p.grad_accum, p.epochs);
    let warmup = warmup_steps(total, p.warmup_ratio);
    let sched = Cosine { total, warmup };
    let stop = p.max_steps.map_or(total, |m| m.min(total));
    let n_params = model.num_parameters();
    let mut sharded = Sharded::new(&mut model, &dist, p)?;
    // The peak counts from here: building the model held a full fp32 copy before sharding.
    if let Device::Cuda(i) = model.device {
        crate::dist::cuda_reset_peak(i);
    }
    report(Event::Log(&format!(
        "FSDP over {} ranks: {} units, {n_params} parameters on {:?} computing in {:?}; {total} optimizer steps \
         ({warmup} warmup){}",
        dist.world,
        sharded.units.len(),
        model.device,
        model.compute_kind,
        if stop < total { format!(", stopping after {stop}") } else { String::new() },
    )));
    std::fs::create_dir_all(&job.scratch_dir)?;
    let resumed = sharded.resume(&job.scratch_dir, p)?;
    let start = resumed.unwrap_or(0);
    if let Some(s) = resumed {
        report(Event::Log(&format!("resuming from the checkpoint at step {s}")));
    }
    let metrics_path = job.scratch_dir.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, start, dist.is_main())?;

    let mut t0 = Instant::now();
    let mut tokens_seen = 0i64;
    let mut warm = false;
    let mut last_loss = None;
    for step in start..stop {
        let lr = p.lr * sched.multiplier(step);
        let mut loss_sum = 0.0;
        let mut step_tokens = 0;
        for micro in 0..p.grad_accum as u64 {
            let m = step * p.grad_accum as u64 + micro;
            let batch = examples.batch(&dist.shard(&order.micro_batch(m)));
            step_tokens += batch.tokens;
            loss_sum += sharded.micro_step(&mut model, &batch, 1.0 / p.grad_accum as f64)?;
            if micro == 0 {
                crate::parallel::fault_point(&dist, step + 1);
            }
        }
        let grad_norm = sharded.optimizer_step(lr, p.max_grad_norm)?;
        let s = dist.sum(&[loss_sum, step_tokens as f64], model.device)?;
        let loss = s[0] / dist.world as f64 / p.grad_accum as f64;
        let step_tokens = s[1] as i64;
        ensure!(loss.is_finite(), "the loss became {loss} at step {}", step + 1);
        tokens_seen += step_tokens;
        let tps = tokens_seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        if !warm {
            warm = true;
            t0 = Instant::now();
            tokens_seen = 0;
        }
        last_loss = Some(loss);
        let epoch = ((step + 1) * p.grad_accum as u64) as f64 / order.batches_per_epoch() as f64;
        let line = json!({"step": step + 1, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                          "tokens": step_tokens, "tokens_per_s": tps});
        if let Some(m) = &mut metrics {
            writeln!(m, "{line}")?;
        }
        report(Event::Step { step: step + 1, total: stop, loss, tokens_per_s: tps });
        let done = step + 1 == stop;
        if p.checkpoint_every > 0 && (step + 1) % p.checkpoint_every == 0 && !done {
            if let Some(m) = &mut metrics {
                m.flush()?;
            }
            sharded.save_checkpoint(&job.scratch_dir, step + 1, p)?;
        }
    }
    if let Some(mut m) = metrics {
        m.flush()?;
    }
    let tps = if tokens_seen > 0 { tokens_seen as f64 / t0.elapsed().as_secs_f64().max(1e-9) } else { 0.0 };
    let summary = Summary {
        steps: stop,
        total_steps: total,
        warmup_steps: warmup,
        resumed_from: resumed,
        final_loss: last_loss,
        tokens_per_s: tps,
        state_bytes: sharded.state_bytes(),
        cuda_peak_bytes: crate::parallel::cuda_peak(model.device),
        prefix: dist.prefix(),
    };
    report_memory(&summary, report);
    sharded.gather_full(&mut model)?;
    if dist.is_main() {
        write_outputs(job, &model, save_kind, side_dirs, &metrics_path, report)?;
    }
    dist.barrier()?;
    Ok(summary)
}
