//! The training loop against torch: 3 optimizer steps of AdamW + cosine warmup + clipping +
//! accumulation on the same data as the Python reference (HF Trainer's semantics), with the
//! vocabulary grown by an added `[ANON]` token whose id is masked in the labels, under both loss
//! normalisations; and the default normalisation against transformers' Trainer itself, also
//! with epochs that do not divide into steps of `grad_accum`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use camel_torch_worker::checkpoint;
use camel_torch_worker::job::{Checkpointing, LossNormalization, TrainParams};
use camel_torch_worker::step::{MicroLoss, Reduction};
use camel_torch_worker::train;
use common::{ids, max_abs_diff, reference};
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

const ANON: i64 = 96;

pub fn token_dir(dir: &Path, blocks: usize, block_size: usize, seed: u64) {
    let mut v = ids(blocks * block_size, 97, seed);
    // Make sure [ANON] occurs.
    for i in (3..v.len()).step_by(11) {
        v[i] = ANON;
    }
    common::write_tokens(dir, &v, block_size, Some(ANON));
}

fn params() -> TrainParams {
    TrainParams {
        epochs: 1.0,
        batch_size: 2,
        grad_accum: 2,
        lr: 1e-2,
        weight_decay: 0.1,
        warmup_ratio: 0.34,
        max_grad_norm: 0.5,
        shuffle: false,
        mask_ids: true,
        device: "cpu".into(),
        ..TrainParams::default()
    }
}

#[test]
fn three_steps_equal_torch_fused_adamw_with_cosine_warmup() {
    three_steps_equal_torch("adamw_torch_fused");
}

#[test]
fn three_steps_equal_torch_single_tensor_adamw_with_cosine_warmup() {
    three_steps_equal_torch("adamw_torch");
}

/// CAMEL's normalisation (each micro-batch's token mean over the accumulation steps) is the
/// formula the reference used before the global one became the default.
#[test]
fn three_steps_with_camel_normalisation_equal_the_old_formula() {
    three_steps_equal_torch_with(TrainParams {
        optim: "adamw_torch_fused".into(),
        loss_normalization: LossNormalization::Camel,
        ..params()
    });
}

fn three_steps_equal_torch(optim: &str) {
    three_steps_equal_torch_with(TrainParams { optim: optim.into(), ..params() });
}

/// Runs the reference's `cmd` (`train`: the torch loop; `trainer`: transformers' Trainer) from
/// `base` on `tokens` with `p`, in `dir`: the weights it wrote (`dir/want.safetensors` or
/// `dir/trainer.safetensors`) and its log.
fn reference_training(
    py: &Path,
    cmd: &str,
    base: &Path,
    tokens: &Path,
    dir: &Path,
    p: &TrainParams,
) -> (PathBuf, Value) {
    let params = dir.join("params.json");
    std::fs::write(&params, serde_json::to_string(p).unwrap()).unwrap();
    let want = dir.join(if cmd == "trainer" { "trainer.safetensors" } else { "want.safetensors" });
    let args = [
        cmd,
        base.to_str().unwrap(),
        tokens.to_str().unwrap(),
        want.to_str().unwrap(),
        params.to_str().unwrap(),
    ];
    reference(py, &args);
    let log_path = want.with_extension("safetensors.json");
    let log = serde_json::from_str(&std::fs::read_to_string(log_path).unwrap()).unwrap();
    (want, log)
}

fn three_steps_equal_torch_with(p: TrainParams) {
    let optim = format!("{}, {:?}", p.optim, p.loss_normalization);
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let base = t.join("base");
    reference(&py, &["make", base.to_str().unwrap(), "--seed", "11"]);
    let tokens = t.join("tokens");
    token_dir(&tokens, 12, 16, 3);
    let (want_path, log) = reference_training(&py, "train", &base, &tokens, t, &p);
    let want = checkpoint::read_safetensors(&want_path).unwrap();
    assert_eq!((log["total_steps"].as_u64(), log["warmup_steps"].as_u64()), (Some(3), Some(2)));

    let job = common::pretrain_job(&tokens, Some(base.clone()), t, p);
    let summary = train::run_pretrain(&job, &mut |_| {}).unwrap();
    assert_eq!((summary.total_steps, summary.warmup_steps), (3, 2));

    // Per-step loss, lr and gradient norm.
    let metrics: Vec<Value> = std::fs::read_to_string(job.out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 3);
    for (m, w) in metrics.iter().zip(log["log"].as_array().unwrap()) {
        for k in ["loss", "lr", "grad_norm"] {
            let (a, b) = (m[k].as_f64().unwrap(), w[k].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-8), "step {}: {k} {a} vs torch {b}", m["step"]);
        }
    }
    assert_eq!(metrics[0]["lr"].as_f64(), Some(0.0), "the first step runs at lr 0");

    // Every weight within 1e-5 relative (allclose with rtol 1e-5 and, for weights that pass near
    // zero, atol 1e-7: a twentieth of 1e-5 of the typical |w| of 0.02).
    let got = checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    let mut worst = 0f64;
    for (name, w) in &want {
        let g = &got[name];
        assert_eq!(g.size(), w.size(), "{name}");
        let excess = ((g - w).abs() - w.abs() * 1e-5 - 1e-7).max().double_value(&[]);
        assert!(excess <= 0.0, "{name}: differs from torch beyond rtol 1e-5 / atol 1e-7 (by {excess:e})");
        worst = worst.max(max_abs_diff(g, w) / w.abs().max().double_value(&[]));
    }
    let base_w = checkpoint::read_safetensors(&base.join("model.safetensors")).unwrap();
    let moved =
        max_abs_diff(&got["model.layers.0.mlp.up_proj.weight"], &base_w["model.layers.0.mlp.up_proj.weight"]);
    assert!(moved > 1e-4, "training did not change the weights ({moved})");
    println!("{optim}, 3 steps: worst max|Δw|/max|w| vs torch {worst:.2e}");
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(job.out_dir.join("model/config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["vocab_size"], 97);
}

/// The default normalisation is transformers' Trainer's (≥ 4.46, `num_items_in_batch`): on the
/// same data, initial weights and seed, 4 steps of batch 2 × accumulation 2 with `[ANON]` masked
/// in the labels end at the losses and gradient norms Trainer logs and at its weights.
#[test]
fn the_default_normalisation_equals_transformers_trainer() {
    let py = need_python!();
    if !common::python_imports(&py, "accelerate") {
        println!("skipped: transformers' Trainer needs `accelerate`, which the venv lacks");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // The base has the token file's vocabulary, so that neither side grows it.
    let base = t.join("base");
    reference(&py, &["make", base.to_str().unwrap(), "--seed", "11", "--vocab", "97"]);
    let tokens = t.join("tokens");
    token_dir(&tokens, 16, 16, 3);
    let p = TrainParams { warmup_ratio: 0.25, ..params() };
    assert_eq!(p.loss_normalization, LossNormalization::GlobalTokens, "the default");
    let (want_path, log) = reference_training(&py, "trainer", &base, &tokens, t, &p);
    assert_eq!(log["accepts_loss_kwargs"], true, "Trainer would not pass num_items_in_batch to the model");
    assert_eq!(log["total_steps"], 4);

    let job = common::pretrain_job(&tokens, Some(base), t, p);
    train::run_pretrain(&job, &mut |_| {}).unwrap();
    let metrics: Vec<Value> = std::fs::read_to_string(job.out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged = log["log"].as_array().unwrap();
    assert_eq!(metrics.len(), logged.len());
    for (m, w) in metrics.iter().zip(logged) {
        for k in ["loss", "grad_norm"] {
            let (a, b) = (m[k].as_f64().unwrap(), w[k].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs(), "step {}: {k} {a} vs Trainer {b}", m["step"]);
        }
    }
    let got = checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap();
    let want = checkpoint::read_safetensors(&want_path).unwrap();
    let worst = assert_weights_close(&got, &want, "Trainer");
    println!("4 steps vs transformers' Trainer: worst max|Δw|/max|w| {worst:.2e}");
}

/// Epochs whose micro-batches do not divide into steps of `grad_accum` train as transformers 5's
/// Trainer does (QA finding: camel accumulated across epoch boundaries, so 2 epochs of 16
/// micro-batches at accumulation 10 ended after 1.25 epochs, and an accumulation beyond the data
/// put examples twice into one step): each epoch's last step takes the micro-batches left, the
/// schedule spans the real step count, and every example is trained on once per epoch. 13 blocks
/// of batch 2 are 7 micro-batches per epoch (the last one a single block): accumulation 3 is steps
/// of 3, 3 and 1 micro-batches, accumulation 10 one step of all 7 per epoch. Losses, gradient
/// norms, the logged epochs, the examples read and the weights equal Trainer's.
#[test]
fn epochs_not_divisible_into_steps_train_as_transformers_trainer() {
    let py = need_python!();
    if !common::python_imports(&py, "accelerate") {
        println!("skipped: transformers' Trainer needs `accelerate`, which the venv lacks");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let base = t.join("base");
    reference(&py, &["make", base.to_str().unwrap(), "--seed", "11", "--vocab", "97"]);
    let tokens = t.join("tokens");
    token_dir(&tokens, 13, 16, 3);
    for (grad_accum, steps) in [(3, 6), (10, 2)] {
        let p = TrainParams { grad_accum, epochs: 2.0, warmup_ratio: 0.2, checkpoint_every: 0, ..params() };
        let dir = t.join(format!("accum-{grad_accum}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (want_path, log) = reference_training(&py, "trainer", &base, &tokens, &dir, &p);
        assert_eq!(log["total_steps"], steps, "accumulation {grad_accum}: Trainer's step count");
        let mut seen: Vec<u64> =
            log["examples_seen"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..13).flat_map(|i| [i, i]).collect::<Vec<u64>>(), "Trainer read each block twice");

        let job = common::pretrain_job(&tokens, Some(base.clone()), &dir, p);
        let summary = train::run_pretrain(&job, &mut |_| {}).unwrap();
        assert_eq!(summary.total_steps, steps);
        let metrics: Vec<Value> = std::fs::read_to_string(job.out_dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logged = log["log"].as_array().unwrap();
        assert_eq!(metrics.len(), logged.len());
        for (m, w) in metrics.iter().zip(logged) {
            assert_eq!(
                m["epoch"].as_f64(),
                w["epoch"].as_f64(),
                "step {}: the epoch Trainer logs",
                m["step"]
            );
            for k in ["loss", "grad_norm"] {
                let (a, b) = (m[k].as_f64().unwrap(), w[k].as_f64().unwrap());
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs(),
                    "accumulation {grad_accum}, step {}: {k} {a} vs Trainer {b}",
                    m["step"]
                );
            }
        }
        // Each block trained on once per epoch: 2 × 13 blocks of 16 tokens.
        let tokens_trained: i64 = metrics.iter().map(|m| m["tokens"].as_i64().unwrap()).sum();
        assert_eq!(tokens_trained, 2 * 13 * 16);
        let got = checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap();
        let want = checkpoint::read_safetensors(&want_path).unwrap();
        let worst = assert_weights_close(&got, &want, "Trainer");
        println!(
            "accumulation {grad_accum}, {steps} steps vs transformers' Trainer: worst max|Δw|/max|w| {worst:.2e}"
        );
    }
}

/// CAMEL's normalisation in an epoch's shorter last step: the mean of its micro-batches' means
/// (transformers' `current_gradient_accumulation_steps`, as its Trainer does without
/// `num_items_in_batch`), against the step-by-step torch reference.
#[test]
fn camel_normalisation_of_an_epochs_shorter_last_step_equals_the_reference() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let base = t.join("base");
    reference(&py, &["make", base.to_str().unwrap(), "--seed", "11"]);
    let tokens = t.join("tokens");
    token_dir(&tokens, 10, 16, 3);
    // 5 micro-batches per epoch, accumulation 2: steps of 2, 2 and 1 micro-batches, 1.5 epochs.
    let p = TrainParams {
        epochs: 1.5,
        loss_normalization: LossNormalization::Camel,
        optim: "adamw_torch_fused".into(),
        ..params()
    };
    let (want_path, log) = reference_training(&py, "train", &base, &tokens, t, &p);
    assert_eq!(log["total_steps"], 5);
    let job = common::pretrain_job(&tokens, Some(base), t, p);
    train::run_pretrain(&job, &mut |_| {}).unwrap();
    let metrics: Vec<Value> = std::fs::read_to_string(job.out_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 5);
    for (m, w) in metrics.iter().zip(log["log"].as_array().unwrap()) {
        assert_eq!(m["epoch"].as_f64(), w["epoch"].as_f64(), "step {}", m["step"]);
        for k in ["loss", "lr", "grad_norm"] {
            let (a, b) = (m[k].as_f64().unwrap(), w[k].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1e-8), "step {}: {k} {a} vs torch {b}", m["step"]);
        }
    }
    assert_eq!(metrics[2]["epoch"].as_f64(), Some(1.0), "the third step ends the first epoch");
    let got = checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap();
    let want = checkpoint::read_safetensors(&want_path).unwrap();
    assert_weights_close(&got, &want, "torch");
}

/// Every weight within rtol 1e-5 (atol 1e-7 for weights that pass near zero); the worst
/// relative difference.
fn assert_weights_close(got: &BTreeMap<String, Tensor>, want: &BTreeMap<String, Tensor>, what: &str) -> f64 {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    let mut worst = 0f64;
    for (name, w) in want {
        let g = &got[name];
        assert_eq!(g.size(), w.size(), "{name}");
        let excess = ((g - w).abs() - w.abs() * 1e-5 - 1e-7).max().double_value(&[]);
        assert!(excess <= 0.0, "{name}: differs from {what} beyond rtol 1e-5 / atol 1e-7 (by {excess:e})");
        worst = worst.max(max_abs_diff(g, w) / w.abs().max().double_value(&[]));
    }
    worst
}

/// Per-layer recomputation gives the gradients of the plain backward pass.
#[test]
fn activation_checkpointing_gives_the_same_gradients() {
    let cfg = camel_torch_worker::config::LlamaConfig::from_value(json!({
        "vocab_size": 50, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": true
    }))
    .unwrap();
    let model = camel_torch_worker::model::Llama::random(cfg, Device::Cpu, Kind::Float, 4).unwrap();
    let v = ids(2 * 12, 50, 9);
    let batch = camel_torch_worker::examples::Batch {
        ids: Tensor::from_slice(&v).view([2, 12]),
        labels: Tensor::from_slice(&v).view([2, 12]),
        tokens: 24,
    };
    let grads = |ckpt: bool| -> (f64, BTreeMap<String, Tensor>) {
        for (_, p) in model.named_parameters() {
            p.shallow_clone().zero_grad();
        }
        let how = MicroLoss { reduction: Reduction::Mean, scale: 0.5 };
        let loss = camel_torch_worker::replicated::micro_step(&model, &batch, how, ckpt);
        (loss, model.named_parameters().into_iter().map(|(n, p)| (n, p.grad().copy())).collect())
    };
    let (l1, g1) = grads(false);
    let (l2, g2) = grads(true);
    assert_eq!(l1, l2);
    for (n, a) in &g1 {
        let d = max_abs_diff(a, &g2[n]);
        assert!(d <= 1e-6, "{n}: gradients differ by {d}");
    }
}

/// `activation_checkpointing: auto` resolves to no recomputation on the CPU (no device memory
/// figure), says so, and trains to the very weights of `false`; `true` recomputes to the same
/// weights within fp32 rounding.
#[test]
fn auto_checkpointing_is_off_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tokens = t.join("tokens");
    token_dir(&tokens, 8, 16, 5);
    let run = |name: &str, ac: Checkpointing| {
        let p = TrainParams {
            config: Some(json!({"vocab_size": 97, "hidden_size": 32, "intermediate_size": 48,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2})),
            activation_checkpointing: ac,
            ..params()
        };
        let job = common::pretrain_job(&tokens, None, &t.join(name), p);
        let mut log = Vec::new();
        train::run_pretrain(&job, &mut |e| {
            if let train::Event::Log(l) = e {
                log.push(l.to_string());
            }
        })
        .unwrap();
        (checkpoint::read_safetensors(&job.out_dir.join("model/model.safetensors")).unwrap(), log.join("\n"))
    };
    let (off, _) = run("off", Checkpointing::Off);
    let (auto, log) = run("auto", Checkpointing::Auto);
    let (on, _) = run("on", Checkpointing::On);
    assert!(log.contains("activation checkpointing auto: off on the CPU"), "{log}");
    for (name, w) in &off {
        assert!(auto[name].equal(w), "`{name}`: auto differs from false");
    }
    let worst = assert_weights_close(&on, &off, "activation checkpointing on vs off");
    println!("activation checkpointing on vs off: worst max|Δw|/max|w| {worst:.2e}");
}

/// The real LLaMA tokenizer beside the project (`../shared/data`), or `None` with a message saying
/// the test is skipped.
fn llama_tokenizer() -> Option<std::path::PathBuf> {
    let path = common::root().join("../shared/data/llama_tokenizer.json");
    if !path.is_file() {
        println!("skipped: {} is missing", path.display());
        return None;
    }
    Some(path)
}

/// Prompts, eos, masking and truncation as Stanford Alpaca's train.py with transformers.
#[test]
fn alpaca_preprocessing_equals_the_python_reference() {
    let py = need_python!();
    let Some(tok_path) = llama_tokenizer() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let long = "A very long answer that will be cut off by the maximum length of the example, well past it. "
        .repeat(4);
    let records = json!([
        {"instruction": "List the medications.", "input": "Pt on aspirin 81 mg daily, metoprolol.", "output": "Aspirin; metoprolol."},
        {"instruction": "What is {input} here?", "input": "", "output": "Nothing — the note is empty.\nÉtat: stable."},
        {"instruction": "Summarize.", "input": "  leading spaces and a {instruction} brace", "output": long},
    ]);
    let rec_path = tmp.path().join("records.json");
    std::fs::write(&rec_path, records.to_string()).unwrap();
    let out = tmp.path().join("sft.json");
    reference(
        &py,
        &["sft", tok_path.to_str().unwrap(), rec_path.to_str().unwrap(), "100", out.to_str().unwrap()],
    );
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();

    let mut tok = tokenizers::Tokenizer::from_file(&tok_path).unwrap();
    tok.add_special_tokens([tokenizers::AddedToken::from("[PAD]", true)]).unwrap();
    assert_eq!(tok.token_to_id("[PAD]").map(i64::from), want["pad_id"].as_i64());
    let p = TrainParams { max_length: 100, ..TrainParams::default() };
    let recs = camel_torch_worker::sft::read_records(&rec_path).unwrap();
    let got = camel_torch_worker::sft::tokenize(&tok, &recs, &p, "</s>").unwrap();
    for (i, (ids, labels)) in got.iter().enumerate() {
        let w = &want["examples"][i];
        let wi: Vec<i64> = serde_json::from_value(w["ids"].clone()).unwrap();
        let wl: Vec<i64> = serde_json::from_value(w["labels"].clone()).unwrap();
        assert_eq!(ids, &wi, "record {i}: ids");
        assert_eq!(labels, &wl, "record {i}: labels");
    }
    assert_eq!(got[2].0.len(), 100, "the long record is truncated");
    assert_eq!(*got[0].0.last().unwrap(), 2, "eos ends a record");
    assert_eq!(got[0].0[0], 1, "bos starts a record");
}

/// The eos fine-tuning appends is the tokenizer's `eos_token`, as Alpaca's `tokenizer.eos_token`
/// (AutoTokenizer's), not the first of several eos ids in config.json (LLaMA-3.1's layout).
#[test]
fn finetuning_appends_the_tokenizers_eos_token_as_alpaca() {
    let py = need_python!();
    let Some(tok_path) = llama_tokenizer() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::copy(&tok_path, d.join("tokenizer.json")).unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        json!({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "tokenizer_class": "PreTrainedTokenizerFast"})
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(&py)
        .args(["-c", "import sys; from transformers import AutoTokenizer; print(AutoTokenizer.from_pretrained(sys.argv[1]).eos_token)"])
        .arg(d)
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let tok = tokenizers::Tokenizer::from_file(d.join("tokenizer.json")).unwrap();
    let cfg = camel_torch_worker::config::LlamaConfig::from_value(json!({"vocab_size": 32000,
        "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
        "eos_token_id": [29889, 2]}))
    .unwrap();
    let got = camel_torch_worker::sft::eos_token(d, &tok, &cfg).unwrap();
    assert_eq!((got.as_str(), want.as_str()), ("</s>", "</s>"));
    // Without a tokenizer_config.json naming one: config.json's first eos id.
    std::fs::remove_file(d.join("tokenizer_config.json")).unwrap();
    assert_eq!(camel_torch_worker::sft::eos_token(d, &tok, &cfg).unwrap(), ".");
}

/// A word-level tokenizer of `n` tokens (`<unk>`, `<s>`, `</s>`, `w0`, …) with the specials added.
fn word_tokenizer(n: usize) -> tokenizers::Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (i, w) in ["<unk>", "<s>", "</s>"]
        .into_iter()
        .map(String::from)
        .chain((0..).map(|i| format!("w{i}")))
        .take(n)
        .enumerate()
    {
        vocab.insert(w, json!(i));
    }
    let added: Vec<Value> = ["<unk>", "<s>", "</s>"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": i, "content": t,
        "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let text = json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}})
    .to_string();
    text.parse().unwrap()
}

/// Fine-tuning sizes the embedding to the tokenizer only by tokens the tokenizer added (`[PAD]`):
/// a tokenizer.json of another, larger vocabulary fails naming both sizes instead of growing the
/// model by real tokens.
#[test]
fn finetuning_refuses_a_tokenizer_larger_than_the_model_by_real_tokens() {
    use camel_torch_worker::sft::fit_vocab_to_tokenizer;
    let model = |v: i64| {
        let cfg =
            camel_torch_worker::config::LlamaConfig::from_value(json!({"vocab_size": v, "hidden_size": 16,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}))
            .unwrap();
        camel_torch_worker::model::Llama::random(cfg, tch::Device::Cpu, tch::Kind::Float, 1).unwrap()
    };
    let mut m = model(20);
    let e = format!("{:#}", fit_vocab_to_tokenizer(&mut m, &word_tokenizer(37), 0, &mut |_| {}).unwrap_err());
    assert!(e.contains("37 tokens") && e.contains("is 20") && e.contains("[20, 21, 22, 23, 24]"), "{e}");
    assert_eq!(m.cfg.vocab_size, 20, "the model is left as it was");
    // The same model with its own tokenizer and an added [PAD]: one mean row.
    let mut tok = word_tokenizer(20);
    tok.add_special_tokens([tokenizers::AddedToken::from("[PAD]", true)]).unwrap();
    fit_vocab_to_tokenizer(&mut m, &tok, 1, &mut |_| {}).unwrap();
    assert_eq!(m.cfg.vocab_size, 21);
}
