//! `cargo bench --workspace --bench llama`: camel's training step and greedy generation
//! against transformers + torch AdamW and HF `generate`, same config, same threads, same run, as
//! ratios (goal ≥ 1.0×), over all timed steps and over each side's fastest step (on a shared
//! machine, the figure least disturbed by the load). Config: 4 layers, hidden 256, GQA 8/4 heads,
//! vocabulary 32000, batch 4 × 256 tokens. Env: CAMEL_BENCH_THREADS (default 2),
//! CAMEL_BENCH_STEPS (default 5).
//!
//! Where CUDA is available it then times a bf16 training step (fp32 master weights, fused AdamW,
//! activation checkpointing) of a ~1.1B config (TinyLlama's shape) and prints its MFU with the
//! device name; `CAMEL_BENCH_GPU_ONLY=1` skips the CPU part.

use std::process::Command;
use std::time::Instant;

use camel_torch_worker::generate::{GenParams, generate};
use camel_torch_worker::model::causal_lm_loss;
use camel_torch_worker::optim::{AdamW, clip_grad_norm};
use camel_torch_worker::{checkpoint, model};
use tch::{Device, Kind, Tensor};

fn main() {
    if std::env::var_os("CAMEL_BENCH_GPU_ONLY").is_none() {
        cpu();
    }
    if tch::Cuda::is_available() {
        gpu();
    } else {
        println!("no CUDA device: the bf16 GPU benchmark is skipped");
    }
}

/// Dense bf16 peak of known cards, in TFLOP/s, by `nvidia-smi` name.
fn peak_tflops(name: &str) -> Option<f64> {
    let n = name.to_lowercase();
    [("h200", 989.0), ("h100", 989.0), ("a100", 312.0), ("l40s", 362.0), ("a10", 125.0)]
        .iter()
        .find(|(k, _)| n.contains(k))
        .map(|&(_, v)| v)
}

fn gpu() {
    use camel_torch_worker::config::LlamaConfig;
    use camel_torch_worker::examples::Batch;
    use camel_torch_worker::replicated::micro_step;
    use camel_torch_worker::step::{MicroLoss, Reduction};
    let name = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown CUDA device".into());
    let cfg = LlamaConfig::from_value(serde_json::json!({
        "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
        "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 2048
    }))
    .unwrap();
    let (layers, hidden) = (cfg.num_hidden_layers as f64, cfg.hidden_size as f64);
    let mut m = model::Llama::random(cfg, Device::Cuda(0), Kind::Float, 0).unwrap();
    m.compute_kind = Kind::BFloat16;
    let n_params = m.num_parameters() as f64;
    let mut opt = AdamW::new(m.named_parameters(), model::is_no_decay, 0.9, 0.999, 1e-8, 0.0);
    let (batch, seq) = (4i64, 2048i64);
    let ids = Tensor::randint(32000, [batch, seq], (Kind::Int64, Device::Cpu));
    let b = Batch { ids: ids.shallow_clone(), labels: ids, tokens: batch * seq };
    let mut step = || {
        micro_step(&m, &b, MicroLoss { reduction: Reduction::Mean, scale: 1.0 }, true);
        clip_grad_norm(&opt.params, 1.0);
        opt.step(2e-5).unwrap();
        opt.zero_grad();
        tch::Cuda::synchronize(0);
    };
    step();
    let steps = 5;
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    let secs = t.elapsed().as_secs_f64() / steps as f64;
    let tokens = (batch * seq) as f64;
    // 6·N per token for the matmuls plus causal attention (12·layers·hidden·seq / 2), and the
    // recomputed forward of activation checkpointing is not counted (MFU counts useful work).
    let flops = tokens * (6.0 * n_params + 6.0 * layers * hidden * seq as f64);
    let achieved = flops / secs / 1e12;
    print!(
        "{name}: ~{:.2}B-parameter LLaMA, bf16 with fp32 master weights, activation checkpointing, batch {batch} × {seq}: \
         {:.3} s/step, {:.0} tok/s, {achieved:.0} TFLOP/s",
        n_params / 1e9,
        secs,
        tokens / secs
    );
    match peak_tflops(&name) {
        Some(peak) => println!(", MFU {:.1}% of {peak} TFLOP/s", 100.0 * achieved / peak),
        None => println!(" (peak of this card unknown: no MFU)"),
    }
}

fn cpu() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let py = root.join(".venv/bin/python");
    let script = root.join("tests/reference/llama_reference.py");
    let threads: usize = std::env::var("CAMEL_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps: usize = std::env::var("CAMEL_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let (batch, seq, gen_tokens) = (4i64, 256i64, 64usize);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    let ok = Command::new(&py).arg(&script).args(["make", dir.to_str().unwrap(), "--bench"]).status();
    if !ok.is_ok_and(|s| s.success()) {
        println!("skipped: the reference venv could not make the model (run scripts/setup)");
        return;
    }
    tch::set_num_threads(threads as i32);

    // camel: forward + loss + backward + clip + AdamW.
    let m = checkpoint::load(&dir, Device::Cpu, Kind::Float).unwrap();
    let mut opt = AdamW::new(m.named_parameters(), model::is_no_decay, 0.9, 0.999, 1e-8, 0.0);
    let ids = Tensor::randint(32000, [batch, seq], (Kind::Int64, Device::Cpu));
    let mut step = || {
        let loss = causal_lm_loss(&m.forward(&ids), &ids);
        loss.backward();
        clip_grad_norm(&opt.params, 1.0);
        opt.step(1e-4).unwrap();
        opt.zero_grad();
    };
    step();
    let t = Instant::now();
    let mut best = f64::INFINITY;
    for _ in 0..steps {
        let s = Instant::now();
        step();
        best = best.min(s.elapsed().as_secs_f64());
    }
    let camel_train = (steps as i64 * batch * seq) as f64 / t.elapsed().as_secs_f64();
    let camel_best = (batch * seq) as f64 / best;

    let prompt: Vec<Vec<i64>> = vec![Vec::try_from(ids.get(0).narrow(0, 0, 32)).unwrap()];
    let p = GenParams { max_new_tokens: gen_tokens, eos_ids: vec![-1], ..Default::default() };
    generate(&m, &prompt, &GenParams { max_new_tokens: 4, ..p.clone() }).unwrap();
    let t = Instant::now();
    let out = generate(&m, &prompt, &p).unwrap();
    let camel_gen = out[0].len() as f64 / t.elapsed().as_secs_f64();

    let r = Command::new(&py)
        .arg(&script)
        .args(["bench", dir.to_str().unwrap()])
        .args([
            threads.to_string(),
            batch.to_string(),
            seq.to_string(),
            steps.to_string(),
            gen_tokens.to_string(),
        ])
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let line = String::from_utf8_lossy(&r.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    let (hf_train, hf_gen) =
        (v["train_tokens_per_s"].as_f64().unwrap(), v["generate_tokens_per_s"].as_f64().unwrap());
    let hf_best = v["train_best_tokens_per_s"].as_f64().unwrap();
    println!("CPU, {threads} threads, 4 layers × hidden 256, batch {batch} × {seq} tokens, {steps} steps:");
    println!(
        "  training   camel {camel_train:8.0} tok/s   transformers+torch AdamW {hf_train:8.0} tok/s   ratio {:.2}×",
        camel_train / hf_train
    );
    // On a shared machine the load changes between the two halves of the run; each side's fastest
    // step is the figure least disturbed by it.
    println!(
        "  best step  camel {camel_best:8.0} tok/s   transformers+torch AdamW {hf_best:8.0} tok/s   ratio {:.2}×",
        camel_best / hf_best
    );
    println!(
        "  greedy gen camel {camel_gen:8.1} tok/s   HF generate              {hf_gen:8.1} tok/s   ratio {:.2}×",
        camel_gen / hf_gen
    );
}
