//! `dist_gpu`: training steps of a LLaMA config in bf16 (fp32 master weights and AdamW state) on
//! one device: without FSDP (activation checkpointing `auto`, as the memory estimate decides, and
//! on), with FSDP over a process group of world size 1 (NCCL on CUDA, Gloo on the CPU, rendezvous
//! through a TCPStore on 127.0.0.1), and on CUDA once more with libtorch's fused RMSNorm: step
//! time, tokens/s, peak memory against the estimate (src/memory.rs), the bytes of parameters +
//! gradients + optimizer state held, the SDPA backend libtorch selects for the config's
//! attention, and evidence that CUDA kernels and NCCL ran. Prints the device name with the
//! figures; `--json FILE` writes them for scripts/gpu-bench, which puts them beside transformers'.
//!
//! Build: `cargo bench --workspace --bench dist_gpu --no-run` (prints the executable's
//! path; `scripts/gpu-bench --build` copies it). It needs no Rust to run, only libtorch:
//! `LD_LIBRARY_PATH=<torch lib dir> dist_gpu …`.
//!
//! Options: `--config 1b|7b|tiny|PATH` (a config.json; 1b: hidden 2048, 16 layers, 16 heads,
//! intermediate 5632, vocab 32000; 7b: LLaMA-2-7B's shape, hidden 4096, 32 heads, intermediate
//! 11008, with `--layers` of its 32 layers, 12 by default), `--layers N`, `--device auto|cpu|cuda`,
//! `--seq N` (2048, 64 for tiny), `--batch N` (1), `--steps N` timed steps after one warm-up (3),
//! `--json FILE`.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use camel_torch_worker::config::LlamaConfig;
use camel_torch_worker::dist::{self, Backend, ProcessGroup, Rendezvous};
use camel_torch_worker::examples::Batch;
use camel_torch_worker::fsdp::Sharded;
use camel_torch_worker::job::{BackendChoice, Checkpointing, DistParams, Strategy, TrainParams};
use camel_torch_worker::memory;
use camel_torch_worker::model::{self, Llama};
use camel_torch_worker::optim::{AdamW, clip_grad_norm};
use camel_torch_worker::parallel::{self, Dist};
use camel_torch_worker::replicated::micro_step;
use camel_torch_worker::step::{MicroLoss, Reduction, StepStrategy};
use serde_json::json;
use tch::{Device, Kind, Tensor};

struct Opts {
    config: String,
    device: String,
    seq: Option<i64>,
    batch: i64,
    steps: usize,
    layers: Option<i64>,
    json: Option<String>,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        config: "1b".into(),
        device: "auto".into(),
        seq: None,
        batch: 1,
        steps: 3,
        layers: None,
        json: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = || args.get(i + 1).cloned().with_context(|| format!("{} needs a value", args[i]));
        match args[i].as_str() {
            "--config" => o.config = val()?,
            "--device" => o.device = val()?,
            "--seq" => o.seq = Some(val()?.parse()?),
            "--batch" => o.batch = val()?.parse()?,
            "--steps" => o.steps = val()?.parse()?,
            "--layers" => o.layers = Some(val()?.parse()?),
            "--json" => o.json = Some(val()?),
            // What `cargo bench` passes to a harness-less bench.
            "--bench" => {
                i += 1;
                continue;
            }
            other => {
                bail!(
                    "unknown argument {other:?} (--config, --layers, --device, --seq, --batch, --steps, --json)"
                )
            }
        }
        i += 2;
    }
    Ok(o)
}

fn config(name: &str, layers: Option<i64>) -> Result<LlamaConfig> {
    let mut v = match name {
        "1b" => json!({"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
            "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 16,
            "max_position_embeddings": 2048, "tie_word_embeddings": false}),
        "7b" => json!({"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 12, "num_attention_heads": 32, "num_key_value_heads": 32,
            "max_position_embeddings": 4096, "tie_word_embeddings": false}),
        "tiny" => json!({"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": false}),
        path => {
            serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?)?
        }
    };
    if let Some(l) = layers {
        v["num_hidden_layers"] = json!(l);
    }
    Ok(LlamaConfig::from_value(v)?)
}

fn device_name(device: Device) -> String {
    if !device.is_cuda() {
        return "CPU".into();
    }
    let smi = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", "0"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(n) = smi.filter(|n| !n.is_empty()) {
        return n;
    }
    // Without nvidia-smi: the driver's /proc entry ("Model: NVIDIA H100 ...").
    std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .and_then(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string())))
        .unwrap_or_else(|| "unknown CUDA device".into())
}

/// Shared objects of interest mapped into this process (which proves they were loaded).
fn loaded(names: &[&str]) -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut out: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| names.iter().any(|n| p.rsplit('/').next().is_some_and(|f| f.starts_with(n))))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn batch(cfg: &LlamaConfig, b: i64, t: i64) -> Batch {
    let ids = Tensor::randint(cfg.vocab_size, [b, t], (Kind::Int64, Device::Cpu));
    Batch { labels: ids.copy(), ids, tokens: b * t }
}

struct Figures {
    step_s: f64,
    tokens_per_s: f64,
    peak: Option<u64>,
    state: u64,
    loss: f64,
    /// Whether the layers were recomputed in the backward pass.
    checkpointing: bool,
    /// What src/memory.rs expects the step to need beyond the fp32 parameters.
    estimate: u64,
}

fn params() -> TrainParams {
    TrainParams { lr: 1e-4, weight_decay: 0.0, max_grad_norm: 1.0, ..TrainParams::default() }
}

/// Timed steps of `step` after one warm-up; the CUDA peak counts from the first step (not the
/// model's construction, which holds a full fp32 copy before sharding).
fn time(
    device: Device,
    steps: usize,
    tokens: i64,
    mut step: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64, f64)> {
    sync(device);
    if let Device::Cuda(i) = device {
        dist::cuda_reset_peak(i);
    }
    let mut loss = step()?;
    sync(device);
    let t0 = Instant::now();
    for _ in 0..steps {
        loss = step()?;
    }
    sync(device);
    let s = t0.elapsed().as_secs_f64() / steps.max(1) as f64;
    Ok((s, tokens as f64 / s, loss))
}

/// The token-mean loss of a micro-batch, backpropagated as it is.
const MEAN: MicroLoss = MicroLoss { reduction: Reduction::Mean, scale: 1.0 };

/// How a run without FSDP treats activation checkpointing and RMSNorm.
#[derive(Clone, Copy)]
struct Variant {
    checkpointing: Checkpointing,
    fused_rms_norm: bool,
}

fn single(cfg: &LlamaConfig, o: &Opts, device: Device, kind: Kind, t: i64, v: Variant) -> Result<Figures> {
    let mut model = Llama::random(cfg.clone(), device, Kind::Float, 1)?;
    model.compute_kind = kind;
    model.fused_rms_norm = v.fused_rms_norm;
    let params = model.named_parameters();
    let p = self::params();
    let free = match device {
        Device::Cuda(i) => dist::cuda_mem_info(i).map(|(free, _)| free),
        _ => None,
    };
    let ac = match v.checkpointing {
        Checkpointing::Off => false,
        Checkpointing::On => true,
        Checkpointing::Auto => memory::checkpointing_needed(cfg, o.batch, t, kind, free),
    };
    let mut opt = AdamW::new(model.named_parameters(), model::is_no_decay, 0.9, 0.999, 1e-8, p.weight_decay);
    let b = batch(cfg, o.batch, t);
    let (step_s, tps, loss) = time(device, o.steps, b.tokens, || {
        let loss = micro_step(&model, &b, MEAN, ac);
        clip_grad_norm(&params, p.max_grad_norm);
        opt.step(p.lr)?;
        opt.zero_grad();
        Ok(loss)
    })?;
    // The gradients are dropped after each step (set to none): counted as the parameters' size.
    let weights: Vec<&Tensor> = params.iter().map(|(_, t)| t).collect();
    let moments: Vec<&Tensor> = opt.exp_avg.iter().chain(&opt.exp_avg_sq).collect();
    Ok(Figures {
        step_s,
        tokens_per_s: tps,
        peak: parallel::cuda_peak(device),
        state: 2 * parallel::state_bytes(&weights) + parallel::state_bytes(&moments),
        loss,
        checkpointing: ac,
        estimate: 4 * memory::parameters(cfg) + memory::step_bytes(cfg, o.batch, t, kind, ac),
    })
}

fn fsdp(cfg: &LlamaConfig, o: &Opts, device: Device, kind: Kind, t: i64) -> Result<Figures> {
    let backend = if device.is_cuda() { Backend::Nccl } else { Backend::Gloo };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let rv = Rendezvous {
        addr: "127.0.0.1".into(),
        port,
        rank: 0,
        world: 1,
        serve_store: true,
        timeout: std::time::Duration::from_secs(600),
        cuda_device: match device {
            Device::Cuda(i) => Some(i),
            _ => None,
        },
    };
    let pg = ProcessGroup::new(&rv, backend)?;
    let d = Dist {
        rank: 0,
        world: 1,
        local_rank: 0,
        strategy: Some(Strategy::Fsdp),
        pg: Some(std::rc::Rc::new(pg)),
    };
    let mut model = Llama::random(cfg.clone(), device, Kind::Float, 1)?;
    model.compute_kind = kind;
    let p = TrainParams {
        distributed: Some(DistParams {
            strategy: Strategy::Fsdp,
            backend: BackendChoice::Auto,
            nproc_per_node: 1,
            timeout_s: 600,
            ..DistParams::default()
        }),
        ..params()
    };
    let mut sharded = Sharded::new(&mut model, &d, &p)?;
    // The peak counts from the sharded state: building the model held a full fp32 copy.
    if let Device::Cuda(i) = device {
        dist::cuda_reset_peak(i);
    }
    let b = batch(cfg, o.batch, t);
    let (step_s, tps, loss) = time(device, o.steps, b.tokens, || {
        let loss = sharded.micro_step(&mut model, &b, MEAN)?;
        sharded.optimizer_step(p.lr, p.max_grad_norm)?;
        Ok(loss)
    })?;
    Ok(Figures {
        step_s,
        tokens_per_s: tps,
        peak: parallel::cuda_peak(device),
        state: sharded.state_bytes(),
        loss,
        checkpointing: true,
        estimate: 4 * memory::parameters(cfg) + memory::step_bytes(cfg, o.batch, t, kind, true),
    })
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

fn line(what: &str, f: &Figures) {
    println!(
        "{what:<52} step {:>8.3} s  {:>9.0} tok/s  peak {:>10} (estimate {:>10})  params+grads+AdamW {:>10}  loss {:.4}",
        f.step_s,
        f.tokens_per_s,
        f.peak.map_or("n/a (CPU)".into(), gib),
        gib(f.estimate),
        gib(f.state),
        f.loss
    );
}

/// The SDPA backend libtorch selects for the config's causal attention in `kind` on `device`.
fn sdpa_backend(cfg: &LlamaConfig, device: Device, kind: Kind, b: i64, t: i64) -> String {
    let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_kv_heads(), cfg.head_dim());
    let q = Tensor::zeros([b, nh, t, hd], (kind, device)).set_requires_grad(true);
    let k = Tensor::zeros([b, nkv, t, hd], (kind, device)).set_requires_grad(true);
    let v = Tensor::zeros([b, nkv, t, hd], (kind, device)).set_requires_grad(true);
    let choice = Tensor::f_internal_fused_sdp_choice::<Tensor>(&q, &k, &v, None, 0.0, true, None, nkv != nh);
    // at::SDPBackend's values.
    match choice {
        Ok(0) => "math".into(),
        Ok(1) => "flash attention".into(),
        Ok(2) => "memory-efficient attention".into(),
        Ok(3) => "cuDNN attention".into(),
        Ok(4) => "overrideable".into(),
        Ok(n) => format!("unknown ({n})"),
        Err(e) => format!("unknown ({e})"),
    }
}

fn main() -> Result<()> {
    let o = parse()?;
    let cfg = config(&o.config, o.layers)?;
    let device = match o.device.as_str() {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => {
            anyhow::ensure!(tch::Cuda::is_available(), "--device cuda but libtorch sees no CUDA device");
            Device::Cuda(0)
        }
        other => bail!("unknown device {other:?}"),
    };
    let kind = if device.is_cuda() { Kind::BFloat16 } else { Kind::Float };
    let t = o.seq.unwrap_or(if o.config == "tiny" { 64 } else { 2048 });
    let n_params = memory::parameters(&cfg);
    let sdpa = sdpa_backend(&cfg, device, kind, o.batch, t);
    println!("device: {} ({device:?}), NCCL in this build: {}", device_name(device), dist::has_nccl());
    println!(
        "config {}: hidden {}, {} layers, {} heads ({} kv), intermediate {}, vocab {}; {:.4}e9 parameters; \
         batch {} x {t} tokens; compute {kind:?}, fp32 master weights and AdamW state; {} timed steps after 1 warm-up",
        o.config,
        cfg.hidden_size,
        cfg.num_hidden_layers,
        cfg.num_attention_heads,
        cfg.num_kv_heads(),
        cfg.intermediate_size,
        cfg.vocab_size,
        n_params as f64 / 1e9,
        o.batch,
        o.steps
    );
    println!("SDPA backend selected for this attention: {sdpa}");
    let backend = if device.is_cuda() { Backend::Nccl } else { Backend::Gloo }.name();
    let name = device_name(device);
    // What the runs so far measured, as JSON, written after each run: a later run that hangs and
    // is killed (scripts/gpu-bench's time limit) leaves the earlier ones' figures.
    let write = |runs: &[(String, Option<Figures>)]| -> Result<serde_json::Value> {
        let runs_json: Vec<serde_json::Value> = runs
            .iter()
            .map(|(what, f)| match f {
                Some(f) => json!({"run": what, "step_s": f.step_s, "tokens_per_s": f.tokens_per_s,
                    "peak_bytes": f.peak, "estimate_bytes": f.estimate, "state_bytes": f.state, "loss": f.loss,
                    "checkpointing": f.checkpointing}),
                None => json!({"run": what, "failed": true}),
            })
            .collect();
        let out = json!({"implementation": "camel", "device": name, "config": o.config,
            "layers": cfg.num_hidden_layers, "hidden": cfg.hidden_size, "vocab": cfg.vocab_size,
            "seq": t, "batch": o.batch, "steps": o.steps, "parameters": n_params,
            "embedding_parameters": cfg.vocab_size * cfg.hidden_size, "backend": backend, "sdpa_backend": sdpa,
            "torch": env!("CAMEL_TORCH_VERSION"), "runs": runs_json});
        if let Some(path) = &o.json {
            std::fs::write(path, format!("{out}\n")).with_context(|| format!("writing {path}"))?;
        }
        Ok(out)
    };
    // Each run on its own: one failing (out of memory, NCCL) still lets the others report.
    let mut runs: Vec<(String, Option<Figures>)> = Vec::new();
    let mut report = |what: String, r: Result<Figures>| -> Result<()> {
        let f = match r {
            Ok(f) => {
                line(&what, &f);
                Some(f)
            }
            Err(e) => {
                println!("{what:<52} FAILED: {e:#}");
                None
            }
        };
        runs.push((what, f));
        write(&runs).map(drop)
    };
    let plain = Variant { checkpointing: Checkpointing::Auto, fused_rms_norm: false };
    report("no FSDP, activation checkpointing auto".into(), single(&cfg, &o, device, kind, t, plain))?;
    let on = Variant { checkpointing: Checkpointing::On, ..plain };
    report("no FSDP, activation checkpointing".into(), single(&cfg, &o, device, kind, t, on))?;
    if device.is_cuda() {
        let fused = Variant { fused_rms_norm: true, ..plain };
        report("no FSDP, auto, fused RMSNorm".into(), single(&cfg, &o, device, kind, t, fused))?;
    }
    report(format!("FSDP world 1 ({backend}; recomputes layers)"), fsdp(&cfg, &o, device, kind, t))?;
    let libs = loaded(&["libtorch_cuda", "libnccl", "libcublas", "libcudnn", "libcudart"]);
    if device.is_cuda() {
        let used = runs.iter().all(|(_, f)| f.as_ref().is_some_and(|f| f.peak.is_some_and(|p| p > 0)));
        println!(
            "CUDA kernels used: {} (parameters and activations on {device:?}; the CUDA caching allocator's peak \
             is nonzero in every run; the FSDP run's all-gathers and reduce-scatters went through ProcessGroupNCCL)",
            if used { "yes" } else { "NO" }
        );
    }
    println!("loaded: {}", if libs.is_empty() { "(no CUDA libraries)".into() } else { libs.join(" ") });
    println!("{}", write(&runs)?);
    anyhow::ensure!(runs.iter().all(|(_, f)| f.is_some()), "a run failed");
    Ok(())
}
