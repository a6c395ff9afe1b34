//! The training loop shared by continued pretraining and instruction fine-tuning, with HF
//! Trainer's semantics: micro-batches of `batch_size`, `grad_accum` of them per optimizer step
//! within an epoch, its last step taking the micro-batches left ([`Steps`]), the loss normalised
//! over the label tokens of the whole global batch, or CAMEL's mean per micro-batch
//! ([`StepLoss`]), gradient-norm clipping, AdamW,
//! the cosine schedule with warmup, checkpoints in the scratch directory every
//! `checkpoint_every` steps, and a resume that ends at the same weights as an uninterrupted run.
//!
//! The loop is written once; how a step is done is a [`StepStrategy`]: the replicated model (one
//! process, or DDP: src/replicated.rs) or FSDP's shards (src/fsdp.rs). [`Dist`] says which rank
//! this process is (issue 8). Only rank 0 writes outputs, metrics and the replicated model's
//! checkpoints and reports steps; the other ranks log to stderr with a `[rank N]` prefix.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::checkpoint;
use crate::config::LlamaConfig;
use crate::data::{BatchOrder, TokenData};
use crate::device::compute_kind;
use crate::eval::{self, EvalResult, Subset};
/// Generation (src/generate.rs) reads the device here.
use crate::examples::{Batch, Blocks, Examples};
use crate::fsdp::Sharded;
use crate::interrupt;
use crate::job::{Job, Task, TrainParams};
use crate::model::{self, Llama};
use crate::parallel::{self, Dist};
use crate::replicated::Replicated;
use crate::schedule::{Cosine, Steps, warmup_steps};
use crate::step::{StepLoss, StepStrategy};

/// What the loop reports as it goes.
pub enum Event<'a> {
    Log(&'a str),
    Step { step: u64, total: u64, loss: f64, tokens_per_s: f64 },
}

/// The model a job starts from: its checkpoint (fp32 master weights) or a random init.
pub fn initial_model(job: &Job, device: Device) -> Result<(Llama, Kind)> {
    match (&job.model, &job.params.config) {
        (Some(dir), None) => {
            let path = dir.join("config.json");
            LlamaConfig::from_file(&path)?.validate_training_as(&path.display().to_string())?;
            let m = checkpoint::load(dir, device, Kind::Float)?;
            let stored = m.cfg.extra.get("dtype").or_else(|| m.cfg.extra.get("torch_dtype"));
            let kind = stored.and_then(|v| v.as_str()).and_then(|s| model::kind_from_name(s).ok());
            Ok((m, kind.unwrap_or(Kind::Float)))
        }
        (None, Some(cfg)) => {
            let cfg = LlamaConfig::from_value(cfg.clone())?;
            cfg.validate_training_as("`config`")?;
            Ok((Llama::random(cfg, device, Kind::Float, job.params.seed)?, Kind::Float))
        }
        (Some(_), Some(_)) => bail!("give either a `model` input or a `config` param, not both"),
        (None, None) => {
            bail!("no model: give a `model` input (a Hugging Face checkpoint dir) or a `config` param")
        }
    }
}

/// Grows the model's vocabulary to the token file's when the difference is made only of the
/// file's added tokens (`[ANON]`); anything else means another tokenizer and is an error.
pub fn fit_vocab_to_tokens(model: &mut Llama, data: &TokenData) -> Result<()> {
    let (have, want) = (model.cfg.vocab_size, data.meta.vocab_size);
    if want > have {
        let added: Vec<i64> = data.meta.added_tokens.values().copied().collect();
        let missing: Vec<i64> = (have..want).filter(|id| !added.contains(id)).collect();
        ensure!(
            missing.is_empty(),
            "the token file {} has a vocabulary of {want} but the model has {have}, and ids {:?}… are not \
             tokens the tokenizer added: were the notes tokenized with another model's tokenizer?",
            data.dir.display(),
            &missing[..missing.len().min(5)]
        );
        model.grow_vocab(want)?;
    }
    let max = data.max_id();
    ensure!(
        max < model.cfg.vocab_size,
        "the token file {} holds id {max}, beyond the model's vocabulary of {}",
        data.dir.display(),
        model.cfg.vocab_size
    );
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub steps: u64,
    pub total_steps: u64,
    pub warmup_steps: u64,
    pub resumed_from: Option<u64>,
    pub final_loss: Option<f64>,
    /// The held-out loss after the last step, with `eval_fraction`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_loss: Option<f64>,
    pub tokens_per_s: f64,
    /// Bytes of parameters, gradients and optimizer state this rank holds.
    pub state_bytes: u64,
    /// Peak bytes of the CUDA caching allocator on this rank's device (None on the CPU).
    pub cuda_peak_bytes: Option<u64>,
    /// FSDP: the most bytes of gathered parameters (computing or prefetched) and gradient
    /// buffers in flight held at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_peak_bytes: Option<u64>,
    /// `[rank N] ` in a distributed run, for the lines the worker prints.
    #[serde(skip)]
    pub prefix: String,
}

/// Trains `model` on `examples` as `job` says, writes the checkpoint to `out_dir/model` and
/// `metrics.jsonl`; `side_dirs` give tokenizer files to copy beside the weights (later ones win).
/// `eval_set` is the job's `eval` input, held out as a whole, instead of an `eval_fraction` split.
#[allow(clippy::too_many_arguments)]
pub fn train(
    job: &Job,
    mut model: Llama,
    save_kind: Kind,
    examples: &dyn Examples,
    eval_set: Option<&dyn Examples>,
    side_dirs: &[&Path],
    dist: Dist,
    report: &mut dyn FnMut(Event),
) -> Result<Summary> {
    // Other ranks only log, with their rank in front.
    let prefix = dist.prefix();
    let main = dist.is_main();
    let report = &mut |e: Event| match e {
        Event::Log(line) if !prefix.is_empty() => report(Event::Log(&format!("{prefix}{line}"))),
        Event::Step { .. } if !main => {}
        e => report(e),
    };
    let p = &job.params;
    ensure!(p.batch_size > 0 && p.grad_accum > 0, "batch_size and grad_accum must be at least 1");
    ensure!(p.epochs > 0.0, "epochs must be positive");
    ensure!(!examples.is_empty(), "the training set is empty");
    ensure!(
        p.eval_every == 0 || p.eval_fraction > 0.0 || eval_set.is_some(),
        "eval_every needs held-out examples: set eval_fraction or bind an `eval` input"
    );
    ensure!(
        eval_set.is_none() || p.eval_fraction == 0.0,
        "give either an `eval` input or eval_fraction, not both"
    );
    ensure!(eval_set.is_none_or(|e| !e.is_empty()), "the `eval` input holds no examples");
    // The held-out examples are set aside before anything else looks at the set, so the batch
    // order, the schedule and the log all describe the examples trained on.
    let (train_idx, eval_idx) = eval::split(examples.len(), p.eval_fraction, p.seed)?;
    let split_off = Subset { inner: examples, indices: eval_idx };
    let train_set = Subset { inner: examples, indices: train_idx };
    let examples: &dyn Examples = if split_off.is_empty() { examples } else { &train_set };
    let held_out: &dyn Examples = eval_set.unwrap_or(&split_off);
    model.compute_kind = compute_kind(p, model.device)?;
    let lengths = if p.group_by_length { examples.lengths().map(std::sync::Arc::new) } else { None };
    let order = BatchOrder {
        n: examples.len(),
        batch: p.batch_size * dist.world,
        shuffle: p.shuffle,
        seed: p.seed,
        lengths,
    };
    // As HF Trainer: each epoch's micro-batches cut into steps of grad_accum, the last step of an
    // epoch taking those left (src/schedule.rs).
    let steps_of = Steps::new(order.batches_per_epoch(), p.grad_accum);
    let total = steps_of.total(p.epochs);
    let warmup = warmup_steps(total, p.warmup_ratio);
    let sched = Cosine { total, warmup };
    let stop = p.max_steps.map_or(total, |m| m.min(total));

    let mut strategy: Box<dyn StepStrategy> = if dist.is_fsdp() {
        let sharded = Sharded::new(&mut model, &dist, p)?;
        // The peak counts from here: building the model held a full fp32 copy before sharding.
        if let Device::Cuda(i) = model.device {
            crate::dist::cuda_reset_peak(i);
        }
        Box::new(sharded)
    } else {
        Box::new(Replicated::new(&model, &dist, p)?)
    };
    let stopping = if stop < total { format!(", stopping after {stop}") } else { String::new() };
    let steps =
        format!("{total} optimizer steps ({} per epoch, {warmup} warmup){stopping}", steps_of.per_epoch());
    report(Event::Log(&strategy.describe(&model, examples.len(), order.batches_per_epoch(), &steps)));
    if !held_out.is_empty() {
        let every =
            if p.eval_every > 0 { format!("every {} steps and ", p.eval_every) } else { String::new() };
        let source = if eval_set.is_some() {
            "the `eval` input".to_string()
        } else {
            format!("eval_fraction {}", p.eval_fraction)
        };
        report(Event::Log(&format!(
            "{} examples held out ({source}), evaluated {every}after the last step",
            held_out.len()
        )));
    }
    std::fs::create_dir_all(&job.scratch_dir)?;
    let resumed = strategy.resume(&job.scratch_dir, p)?;
    let start = resumed.unwrap_or(0);
    if let Some(s) = resumed {
        report(Event::Log(&format!("resuming from the checkpoint at step {s}")));
    }
    let metrics_path = job.scratch_dir.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, start, dist.is_main())?;

    // Throughput is measured from the end of the first step of this process (the first one also
    // pays for libtorch's warm-up); until then, over that step.
    let mut t0 = Instant::now();
    let mut tokens_seen = 0i64;
    let mut warm = false;
    let mut last_loss = None;
    let mut last_eval: Option<EvalResult> = None;
    for step in start..stop {
        let lr = p.lr * sched.multiplier(step);
        // This rank's micro-batches of the step (grad_accum, or fewer in an epoch's last step),
        // all built before the first forward pass: the global normalisation divides by the label
        // tokens of the whole global batch.
        let batches: Vec<Batch> = steps_of
            .micro_batches(step)
            .map(|m| examples.batch(&dist.shard(&order.micro_batch(m))))
            .collect();
        let norm = StepLoss::new(p.loss_normalization, batches.len(), dist.world, || {
            let here: i64 = batches.iter().map(|b| model::label_tokens(&b.labels)).sum();
            Ok(dist.sum(&[here as f64], model.device).context("counting the step's label tokens")?[0] as i64)
        })?;
        let mut loss_sum = 0.0;
        let mut step_tokens = 0;
        for (micro, batch) in batches.iter().enumerate() {
            step_tokens += batch.tokens;
            loss_sum += strategy.micro_step(&mut model, batch, norm.micro())?;
            if micro == 0 {
                parallel::fault_point(&dist, step + 1);
            }
        }
        let grad_norm = strategy.optimizer_step(lr, p.max_grad_norm)?;
        // The reduced losses and the tokens are summed over ranks (one process: its own).
        let s = dist.sum(&[loss_sum, step_tokens as f64], model.device)?;
        let loss = norm.logged(s[0]);
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
        let done = step + 1 == stop;
        let epoch = steps_of.epoch_after(step);
        // Only what the run computes: no timings, so that a rerun (resumed after a kill or not)
        // writes the same bytes. Throughput is on the progress bar and in the log's summary line.
        let mut line = json!({"step": step + 1, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm,
                              "tokens": step_tokens});
        // Held-out scores go on the line of the step they follow (one line per step stays true).
        if !held_out.is_empty() && (done || (p.eval_every > 0 && (step + 1) % p.eval_every == 0)) {
            let e = eval::evaluate(strategy.as_mut(), &mut model, held_out, p, &dist)?;
            ensure!(e.loss.is_finite(), "the held-out loss became {} at step {}", e.loss, step + 1);
            line["eval_loss"] = json!(e.loss);
            line["eval_perplexity"] = json!(e.perplexity);
            line["eval_tokens"] = json!(e.tokens);
            report(Event::Log(&format!(
                "step {}: held-out loss {:.4}, perplexity {:.2} ({} tokens)",
                step + 1,
                e.loss,
                e.perplexity,
                e.tokens
            )));
            last_eval = Some(e);
        }
        if let Some(m) = &mut metrics {
            writeln!(m, "{line}")?;
        }
        report(Event::Step { step: step + 1, total: stop, loss, tokens_per_s: tps });
        // SIGUSR1 (Slurm: time limit near, preemption) reaches the ranks at different moments;
        // they stop together at the first step boundary where any of them has seen it.
        if !done && dist.sum(&[f64::from(u8::from(interrupt::requested()))], model.device)?[0] > 0.0 {
            if let Some(m) = &mut metrics {
                m.flush()?;
            }
            strategy.save_checkpoint(&job.scratch_dir, step + 1, p)?;
            dist.barrier()?;
            return Err(interrupt::Interrupted { step: step + 1, saved: "a checkpoint at step" }.into());
        }
        if p.checkpoint_every > 0 && (step + 1) % p.checkpoint_every == 0 && !done {
            // A resumed run keeps the metrics up to its checkpoint, so they are on disk first.
            if let Some(m) = &mut metrics {
                m.flush()?;
            }
            strategy.save_checkpoint(&job.scratch_dir, step + 1, p)?;
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
        eval_loss: last_eval.map(|e| e.loss),
        tokens_per_s: tps,
        state_bytes: strategy.state_bytes(),
        cuda_peak_bytes: parallel::cuda_peak(model.device),
        held_peak_bytes: strategy.held_peak_bytes(),
        prefix: dist.prefix(),
    };
    report_memory(&summary, report);
    strategy.export(&mut model)?;
    if dist.is_main() {
        write_outputs(job, &model, save_kind, side_dirs, &metrics_path, report)?;
    }
    // The ranks leave together, once rank 0 has written the outputs.
    dist.barrier()?;
    Ok(summary)
}

fn report_memory(s: &Summary, report: &mut dyn FnMut(Event)) {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let cuda = s.cuda_peak_bytes.map_or(String::new(), |b| format!(", CUDA peak {:.1} MiB", mib(b)));
    report(Event::Log(&format!(
        "memory: parameters + gradients + optimizer state {:.1} MiB{cuda}",
        mib(s.state_bytes)
    )));
}

/// metrics.jsonl in scratch while training, cut back to the resumed step; only rank 0 has one.
fn open_metrics(path: &Path, start: u64, main: bool) -> Result<Option<std::fs::File>> {
    if !main {
        return Ok(None);
    }
    let kept: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= start)
        })
        .map(str::to_string)
        .collect();
    let mut metrics = std::fs::File::create(path)?;
    for l in &kept {
        writeln!(metrics, "{l}")?;
    }
    Ok(Some(metrics))
}

/// The job's outputs (rank 0): the checkpoint with tokenizer files (src/hf_files.rs),
/// metrics.jsonl and loss.svg.
fn write_outputs(
    job: &Job,
    model: &Llama,
    save_kind: Kind,
    side_dirs: &[&Path],
    metrics_path: &Path,
    report: &mut dyn FnMut(Event),
) -> Result<()> {
    let out_model = job.out_dir.join("model");
    checkpoint::save(model, &out_model, save_kind, job.params.max_shard_mb * 1_000_000)?;
    for d in side_dirs {
        checkpoint::copy_side_files(d, &out_model)?;
    }
    if !out_model.join("tokenizer.json").is_file() {
        report(Event::Log(
            "note: neither the base model nor the token dir has a tokenizer.json, so the checkpoint has none",
        ));
    }
    // What save_pretrained writes besides: the tokenizer's config and special tokens, the
    // generation defaults.
    crate::hf_files::write(&out_model, &model.cfg)?;
    std::fs::copy(metrics_path, job.out_dir.join("metrics.jsonl"))?;
    let text = std::fs::read_to_string(metrics_path)?;
    std::fs::write(job.out_dir.join("loss.svg"), crate::plot::loss_svg(&text))?;
    Ok(())
}

/// Runs a pretraining job end to end.
pub fn run_pretrain(job: &Job, report: &mut dyn FnMut(Event)) -> Result<Summary> {
    pretrain(job, report).map_err(|e| parallel::rank_context(e, &job.params))
}

fn pretrain(job: &Job, report: &mut dyn FnMut(Event)) -> Result<Summary> {
    ensure!(job.task == Task::Pretrain, "not a pretraining job");
    let tokens_dir =
        job.tokens.as_ref().context("a pretraining job needs `tokens` (the tokenize stage's output)")?;
    let data = TokenData::open(tokens_dir)?;
    let (dist, device) = Dist::from_env(&job.params)?;
    let (mut model, stored_kind) = initial_model(job, device)?;
    fit_vocab_to_tokens(&mut model, &data)?;
    let save_kind = save_kind(&job.params, stored_kind)?;
    let ignore = if job.params.mask_ids { data.meta.ignore_ids.clone() } else { Vec::new() };
    let mut sides: Vec<&Path> = Vec::new();
    if let Some(m) = &job.model {
        sides.push(m);
    }
    sides.push(tokens_dir);
    // Held-out blocks: tokenized like the training blocks (their ids must fit the model too).
    let eval_set = match &job.eval {
        Some(dir) => {
            let eval_data = TokenData::open(dir)?;
            fit_vocab_to_tokens(&mut model, &eval_data)?;
            let ignore = if job.params.mask_ids { eval_data.meta.ignore_ids.clone() } else { Vec::new() };
            Some(Blocks { data: eval_data, ignore })
        }
        None => None,
    };
    let examples = Blocks { data, ignore };
    train(
        job,
        model,
        save_kind,
        &examples,
        eval_set.as_ref().map(|e| e as &dyn Examples),
        &sides,
        dist,
        report,
    )
}

pub fn save_kind(p: &TrainParams, stored: Kind) -> Result<Kind> {
    if p.save_dtype == "auto" { Ok(stored) } else { model::kind_from_name(&p.save_dtype) }
}

/// Tensors by name, for comparing runs in tests.
pub fn state_of(model: &Llama) -> BTreeMap<String, Tensor> {
    model.named_parameters().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}
