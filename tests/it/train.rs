//! The `pretrain` and `finetune` stages end to end through the real `camel` binary and the
//! libtorch worker next to it: outputs, a resume after `kill -9` that ends at the weights of an
//! uninterrupted run, fine-tuning on Alpaca records, and errors raised before any training.
//! (Numerical equality with transformers is tested in stages/torch-worker/tests/.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{TestContext, camel_bin, shared_data};

/// The worker beside the camel binary, or `None` (test skipped) when it was not built.
pub(crate) fn worker() -> Option<PathBuf> {
    let w = Path::new(camel_bin()).with_file_name("camel-torch-worker");
    if w.is_file() {
        Some(w)
    } else {
        println!("skipped: {} is missing (build the workspace with scripts/setup)", w.display());
        None
    }
}

/// A `camel-tokens-v1` directory of `blocks` × `block` u16 ids below `vocab` (a SplitMix64 stream).
pub(crate) fn token_dir(
    t: &TestContext,
    rel: &str,
    blocks: usize,
    block: usize,
    vocab: u64,
    tokenizer: Option<&Path>,
) {
    let dir = t.path(rel);
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = camel_rng::SplitMix64::new(7);
    let mut bytes = Vec::new();
    for _ in 0..blocks * block {
        let id = s.below_modulo(vocab) as u16;
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    std::fs::write(dir.join("tokens.bin"), bytes).unwrap();
    let meta = serde_json::json!({
        "format": "camel-tokens-v1", "dtype": "u16", "vocab_size": vocab, "block_size": block, "blocks": blocks,
        "tokens_total": blocks * block, "tokens_dropped": 0, "bos_id": 1, "eos_id": 2, "added_tokens": {},
        "ignore_ids": [], "layout": "camel", "shuffle": false, "seed": 0, "tokenizer_blake3": "test"
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    if let Some(tok) = tokenizer {
        std::fs::copy(tok, dir.join("tokenizer.json")).unwrap();
    }
}

const PRETRAIN: &str = r#"
name: pretrain-test
stages:
  pretrain:
    kind: pretrain
    inputs: {tokens: tokens}
    params:
      config: {vocab_size: 97, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}
      epochs: 2
      batch_size: 2
      grad_accum: 2
      lr: 3e-3
      warmup_ratio: 0.1
      checkpoint_every: 5
      device: cpu
      threads: 1
"#;

fn metrics(t: &TestContext) -> Vec<serde_json::Value> {
    t.read(".camel/out/pretrain/metrics.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn pretrain_writes_a_checkpoint_metrics_and_a_curve() {
    if worker().is_none() {
        return;
    }
    let t = TestContext::new();
    t.write("p.yaml", PRETRAIN);
    token_dir(&t, "tokens", 40, 32, 97, None);
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    let out = t.path(".camel/out/pretrain");
    for f in ["model/config.json", "model/model.safetensors", "metrics.jsonl", "loss.svg"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let m = metrics(&t);
    // 40 blocks / batch 2 = 20 micro-batches per epoch, 10 steps per epoch, 2 epochs.
    assert_eq!(m.len(), 20);
    assert_eq!(m[0]["lr"], 0.0);
    let (first, last) = (m[0]["loss"].as_f64().unwrap(), m[19]["loss"].as_f64().unwrap());
    assert!(last < first, "the loss did not fall: {first} -> {last}");
    // No timings in an output: a rerun writes the same bytes (throughput is in the log).
    assert!(m.iter().all(|x| x.get("tokens_per_s").is_none()));
    let log = t.read(".camel/logs/pretrain.log");
    assert!(log.contains("20 optimizer steps (10 per epoch, 2 warmup)"), "{log}");
    // Scratch checkpoints are gone once the stage commits.
    assert!(std::fs::read_dir(t.path(".camel/scratch")).map_or(true, |mut d| d.next().is_none()));
    // A second run is a cache hit.
    let again = t.camel(&["run", "p.yaml"]);
    assert_eq!(again.cached(), ["pretrain"]);
}

fn checkpoint_exists(ws: &Path) -> bool {
    let Ok(keys) = std::fs::read_dir(ws.join("scratch")) else { return false };
    keys.flatten().any(|k| {
        std::fs::read_dir(k.path().join("checkpoints")).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("step-")))
        })
    })
}

#[test]
fn a_kill_9_during_training_resumes_to_the_weights_of_an_uninterrupted_run() {
    if worker().is_none() {
        return;
    }
    // Accumulation 3 over 20 micro-batches per epoch: each epoch ends with a step of 2 (HF
    // Trainer's), and checkpoints every 5 steps fall inside epochs and across their ends.
    let pipeline = PRETRAIN.replace("epochs: 2", "epochs: 6").replace("grad_accum: 2", "grad_accum: 3");
    let whole = TestContext::new();
    whole.write("p.yaml", &pipeline);
    token_dir(&whole, "tokens", 40, 32, 97, None);
    whole.camel(&["run", "p.yaml"]).assert_ok();

    let t = TestContext::new();
    t.write("p.yaml", &pipeline);
    token_dir(&t, "tokens", 40, 32, 97, None);
    let mut child =
        t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while !checkpoint_exists(&t.path(".camel")) {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before a checkpoint was seen");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL; the worker follows through PDEATHSIG
    child.wait().unwrap();
    assert!(!t.path(".camel/out/pretrain").exists(), "the killed run committed its outputs");
    // The checkpoint is visible before the rerun (issue 17), and the rerun says it resumes.
    let st = t.status("p.yaml");
    let partial = st.iter().find(|s| s["stage"] == "pretrain").unwrap()["partial"]["state"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(partial.starts_with("checkpoint at step "), "{partial}");
    assert_eq!(t.state_of("p.yaml", "pretrain").1, ["never finished"]);

    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains("pretrain resumes from step "), "{}", r.stderr);
    let log = t.read(".camel/logs/pretrain.log");
    assert!(log.contains("resuming from the checkpoint at step"), "{log}");
    let weights =
        |c: &TestContext| std::fs::read(c.path(".camel/out/pretrain/model/model.safetensors")).unwrap();
    assert!(weights(&t) == weights(&whole), "the resumed run ended at other weights");
    let strip = |v: Vec<serde_json::Value>| -> Vec<(u64, f64, f64)> {
        v.iter()
            .map(|m| (m["step"].as_u64().unwrap(), m["loss"].as_f64().unwrap(), m["lr"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(strip(metrics(&t)), strip(metrics(&whole)));
}

#[test]
fn a_token_file_beyond_the_models_vocabulary_fails_before_training() {
    if worker().is_none() {
        return;
    }
    let t = TestContext::new();
    t.write("p.yaml", PRETRAIN);
    token_dir(&t, "tokens", 8, 32, 200, None);
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("vocabulary of 200 but the model has 97")
            && r.stderr.contains("another model's tokenizer"),
        "{}",
        r.stderr
    );
    assert!(!t.read(".camel/logs/pretrain.log").contains("steps loss"));
}

/// A pipeline that pretrains a one-layer model (LLaMA's vocabulary, on the CPU) on the token
/// directory `tokens`, then fine-tunes it; `finetune_inputs` and `finetune_params` are the
/// finetune stage's `inputs` and `params` as YAML flow maps.
fn pretrain_then_finetune(name: &str, finetune_inputs: &str, finetune_params: &str) -> String {
    format!(
        r#"
name: {name}
stages:
  pretrain:
    kind: pretrain
    inputs: {{tokens: tokens}}
    params:
      config: {{vocab_size: 32000, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
               num_attention_heads: 4, num_key_value_heads: 2}}
      batch_size: 4
      device: cpu
  finetune:
    kind: finetune
    inputs: {finetune_inputs}
    params: {finetune_params}
"#
    )
}

#[test]
fn finetune_after_pretrain_with_the_llama_tokenizer() {
    if worker().is_none() {
        return;
    }
    let Some(tok) = shared_data("llama_tokenizer.json") else { return };
    let t = TestContext::new();
    token_dir(&t, "tokens", 8, 32, 32000, Some(&tok));
    let records: Vec<serde_json::Value> = (0..6)
        .map(|i| {
            serde_json::json!({"instruction": format!("Summarize finding {i}."),
                               "input": if i % 2 == 0 { "Chest x-ray: no acute process." } else { "" },
                               "output": format!("Finding {i} is unremarkable.")})
        })
        .collect();
    t.write("alpaca.json", &serde_json::to_string(&records).unwrap());
    t.write(
        "p.yaml",
        &pretrain_then_finetune(
            "sft-test",
            "{model: pretrain.model, data: alpaca.json}",
            "{epochs: 2, batch_size: 2, lr: 1e-3, max_length: 64, group_by_length: true, device: cpu}",
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let dir = t.path(".camel/out/finetune/model");
    let cfg: serde_json::Value =
        serde_json::from_str(&t.read(".camel/out/finetune/model/config.json")).unwrap();
    assert_eq!(cfg["vocab_size"], 32001, "[PAD] was added");
    assert_eq!(cfg["pad_token_id"], 32000);
    let tokenizer = std::fs::read_to_string(dir.join("tokenizer.json")).unwrap();
    assert!(tokenizer.contains("\"[PAD]\""));
    let log = t.read(".camel/logs/finetune.log");
    assert!(log.contains("added pad token \"[PAD]\" as id 32000"), "{log}");
    // 6 records / batch 2 = 3 steps per epoch, 2 epochs.
    assert_eq!(t.read(".camel/out/finetune/metrics.jsonl").lines().count(), 6);

    // `camel generate` on the fine-tuned checkpoint.
    let g = t.camel(&[
        "generate",
        ".camel/out/finetune/model",
        "--alpaca",
        "--prompt",
        "Summarize finding 1.",
        "--prompt",
        "List the medications.",
        "--max-new-tokens",
        "5",
        "--device",
        "cpu",
        "--json",
    ]);
    g.assert_ok();
    let lines: Vec<serde_json::Value> = g.stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{}", g.stdout);
    assert!(lines.iter().all(|l| (1..=5).contains(&l["tokens"].as_u64().unwrap()) && l["text"].is_string()));
    let missing = t.camel(&["generate", "nowhere", "--prompt", "x", "--device", "cpu"]);
    assert_eq!(missing.code, 2, "a usage error");
    assert!(missing.stderr.contains("nowhere does not exist"), "{}", missing.stderr);
}

/// transformers' view of a model dir, from tests/reference/hf_model_dir.py.
fn hf_check(py: &Path, dir: &Path, generate: Option<&str>) -> serde_json::Value {
    let mut c = std::process::Command::new(py);
    c.arg(crate::common::project_root().join("tests/reference/hf_model_dir.py")).arg("check").arg(dir);
    if let Some(prompt) = generate {
        c.args(["--generate", prompt]);
    }
    let out = c.env("HF_HUB_OFFLINE", "1").env("TOKENIZERS_PARALLELISM", "false").output().unwrap();
    assert!(out.status.success(), "hf_model_dir.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap()
}

/// The model dirs of pretrain and finetune hold what `save_pretrained` writes, so transformers
/// loads their tokenizer with its special tokens (and, fine-tuned, pads a batch and generates
/// through `pipeline`), with the ids of `[ANON]` and `[PAD]` that camel trained with.
#[test]
fn model_dirs_load_in_transformers_with_their_special_tokens() {
    if worker().is_none() {
        return;
    }
    let (Some(py), Some(llama)) = (crate::common::venv_python(), shared_data("llama_tokenizer.json")) else {
        return;
    };
    let t = TestContext::new();
    let notes: Vec<String> = (0..24)
        .map(|i| {
            format!("Patient ___ seen on ___ for chest pain, day {i}. Plan: aspirin, follow up with Dr. ___.")
        })
        .collect();
    camel_stages::tokenize::testing::write_corpus(&t.path("corpus.parquet"), &notes);
    let records: Vec<serde_json::Value> = (0..4)
        .map(|i| {
            serde_json::json!({"instruction": format!("Summarize note {i}."), "input": "Chest pain, seen by ___.",
                               "output": "Chest pain; aspirin."})
        })
        .collect();
    t.write("alpaca.json", &serde_json::to_string(&records).unwrap());
    t.write(
        "p.yaml",
        &format!(
            r#"
name: hf-dirs
stages:
  tokenize:
    kind: tokenize
    inputs: {{corpus: corpus.parquet, tokenizer: {llama}}}
    params: {{block_size: 32}}
  pretrain:
    kind: pretrain
    inputs: {{tokens: tokenize.dataset}}
    params:
      config: {{vocab_size: 32000, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}}
      batch_size: 4
      device: cpu
  finetune:
    kind: finetune
    inputs: {{model: pretrain.model, data: alpaca.json}}
    params: {{batch_size: 2, max_length: 128, device: cpu}}
"#,
            llama = llama.display()
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let meta: serde_json::Value = serde_json::from_str(&t.read(".camel/out/tokenize/meta.json")).unwrap();
    let anon = meta["added_tokens"]["[ANON]"].as_i64().unwrap();
    let out = |stage: &str| t.path(&format!(".camel/out/{stage}/model"));
    for stage in ["pretrain", "finetune"] {
        for f in
            ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]
        {
            assert!(out(stage).join(f).is_file(), "{stage}: no {f}");
        }
    }

    // Continued pretraining: LLaMA's specials and [ANON] as the tokenize stage numbered it; no pad
    // (fine-tuning adds one).
    let pre = hf_check(&py, &out("pretrain"), None);
    assert_eq!(
        (&pre["bos"], &pre["eos"], &pre["unk"]),
        (&"<s>".into(), &"</s>".into(), &"<unk>".into()),
        "{pre}"
    );
    assert_eq!((pre["bos_id"].as_i64(), pre["eos_id"].as_i64()), (Some(1), Some(2)));
    assert!(pre["pad"].is_null(), "{pre}");
    assert_eq!(pre["ids"]["[ANON]"].as_i64(), Some(anon));
    assert!(pre["anon_encoded"].as_array().unwrap().contains(&anon.into()), "[ANON] is one token: {pre}");
    assert_eq!(pre["model_max_length"], 128);

    // Fine-tuned: [PAD] as camel added it (the config's pad_token_id), a padded batch, generation.
    let cfg: serde_json::Value =
        serde_json::from_str(&t.read(".camel/out/finetune/model/config.json")).unwrap();
    let pad = cfg["pad_token_id"].as_i64().unwrap();
    let fine = hf_check(&py, &out("finetune"), Some("Below is an instruction."));
    assert_eq!((&fine["pad"], fine["pad_id"].as_i64()), (&"[PAD]".into(), Some(pad)), "{fine}");
    assert_eq!((fine["ids"]["[ANON]"].as_i64(), fine["ids"]["[PAD]"].as_i64()), (Some(anon), Some(pad)));
    let ids: Vec<Vec<i64>> = serde_json::from_value(fine["padded"]["input_ids"].clone()).unwrap();
    let mask: Vec<Vec<i64>> = serde_json::from_value(fine["padded"]["attention_mask"].clone()).unwrap();
    assert_eq!(ids[0].len(), ids[1].len(), "the batch is padded to one length");
    let short = mask[0].iter().filter(|&&m| m == 1).count();
    assert!(short < ids[0].len() && ids[0][short..].iter().all(|&i| i == pad), "{fine}");
    assert!(mask[1].iter().all(|&m| m == 1));
    let generated = fine["generated"].as_str().unwrap();
    assert!(generated.starts_with("Below is an instruction."), "{generated:?}");
    let gen_cfg: serde_json::Value =
        serde_json::from_str(&t.read(".camel/out/finetune/model/generation_config.json")).unwrap();
    assert_eq!((gen_cfg["eos_token_id"].as_i64(), gen_cfg["pad_token_id"].as_i64()), (Some(2), Some(pad)));
}

#[test]
fn a_missing_worker_is_reported_with_how_to_build_it() {
    let t = TestContext::new();
    t.write("p.yaml", PRETRAIN);
    token_dir(&t, "tokens", 4, 32, 97, None);
    // A camel binary without its worker, installed as scripts/install lays it out (it does not
    // link libtorch; libduckdb.so, on the prebuilt path, lies in ../lib/camel).
    let lonely = t.path("bin/camel");
    std::fs::create_dir_all(lonely.parent().unwrap()).unwrap();
    std::fs::copy(camel_bin(), &lonely).unwrap();
    let duckdb = std::path::Path::new(camel_bin()).parent().unwrap().join("../lib/camel/libduckdb.so");
    if duckdb.is_file() {
        std::fs::create_dir_all(t.path("lib/camel")).unwrap();
        std::fs::copy(&duckdb, t.path("lib/camel/libduckdb.so")).unwrap();
    }
    let out = std::process::Command::new(&lonely)
        .args(["run", "p.yaml"])
        .current_dir(t.dir.path())
        .env_remove("CAMEL_TORCH_WORKER")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("camel-torch-worker` is not next to") && stderr.contains("scripts/setup"),
        "{stderr}"
    );
    let r = t.command(&["run", "p.yaml"]).env("CAMEL_TORCH_WORKER", "/nonexistent/worker").output().unwrap();
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(stderr.contains("CAMEL_TORCH_WORKER=/nonexistent/worker does not name a file"), "{stderr}");
}

/// FSDP over two local ranks (Gloo on the CPU) through `camel run`: a rank that dies mid-step
/// fails the stage with that rank's error and commits nothing; the rerun resumes from the last
/// sharded checkpoint and ends at the weights of an uninterrupted two-rank run, which are the
/// weights of the single-process run to rounding (stages/torch-worker/tests/distributed.rs holds
/// the numerics).
#[test]
fn two_fsdp_ranks_survive_a_rank_dying_mid_step_and_match_an_uninterrupted_run() {
    if worker().is_none() {
        return;
    }
    let pipeline = PRETRAIN
        .replace("checkpoint_every: 5", "checkpoint_every: 2")
        .replace("epochs: 2", "epochs: 1\n      mask_ids: false\n      distributed: {nproc_per_node: 2, strategy: fsdp, timeout_s: 60}")
        .replace("batch_size: 2", "batch_size: 1");
    let whole = TestContext::new();
    whole.write("p.yaml", &pipeline);
    token_dir(&whole, "tokens", 24, 32, 97, None);
    whole.camel(&["run", "p.yaml"]).assert_ok();

    let t = TestContext::new();
    t.write("p.yaml", &pipeline);
    token_dir(&t, "tokens", 24, 32, 97, None);
    let t0 = Instant::now();
    let failed = t.command(&["run", "p.yaml"]).env("CAMEL_WORKER_FAULT", "1:4").output().unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(90), "the failure took {:?}", t0.elapsed());
    assert!(stderr.contains("camel-torch-worker rank"), "{stderr}");
    assert!(stderr.contains("rank 1 was killed by signal"), "{stderr}");
    assert!(
        stderr.contains("[rank 1] CAMEL_WORKER_FAULT: aborting in step 4"),
        "its last line is quoted: {stderr}"
    );
    assert!(!t.path(".camel/out/pretrain").exists(), "a failed run committed outputs");

    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    let log = t.read(".camel/logs/pretrain.log");
    assert!(log.contains("resuming"), "{log}");
    let weights =
        |c: &TestContext| std::fs::read(c.path(".camel/out/pretrain/model/model.safetensors")).unwrap();
    assert!(weights(&t) == weights(&whole), "the resumed run's weights differ from the uninterrupted run's");
    assert_eq!(
        t.read(".camel/out/pretrain/metrics.jsonl").lines().count(),
        whole.read(".camel/out/pretrain/metrics.jsonl").lines().count()
    );
}

/// Issue 17, item 5: held-out examples from an `eval` input (here other blocks than the training
/// ones), evaluated every `eval_every` steps and after the last, with nothing split off the
/// training input; with `eval_fraction` as well it is an error before anything runs.
#[test]
fn an_eval_input_is_held_out_and_evaluated_instead_of_a_fraction() {
    if worker().is_none() {
        return;
    }
    let t = TestContext::new();
    let p = PRETRAIN
        .replace("inputs: {tokens: tokens}", "inputs: {tokens: tokens, eval: held}")
        .replace("      threads: 1\n", "      threads: 1\n      eval_every: 5\n");
    t.write("p.yaml", &p);
    token_dir(&t, "tokens", 40, 32, 97, None);
    token_dir(&t, "held", 8, 32, 97, None);
    let held_ids = |seed: u64| -> Vec<u8> {
        let mut s = camel_rng::SplitMix64::new(seed);
        (0..8 * 32).flat_map(|_| (s.below_modulo(97) as u16).to_le_bytes()).collect()
    };
    std::fs::write(t.path("held/tokens.bin"), held_ids(99)).unwrap();
    t.camel(&["run", "p.yaml"]).assert_ok();
    let m = metrics(&t);
    // Every one of the 40 training blocks is trained on: 20 steps, as without held-out examples.
    assert_eq!(m.len(), 20);
    let evals: Vec<(f64, f64)> = m
        .iter()
        .filter(|x| x.get("eval_loss").is_some())
        .map(|x| (x["eval_loss"].as_f64().unwrap(), x["eval_perplexity"].as_f64().unwrap()))
        .collect();
    assert_eq!(evals.len(), 4, "{m:?}");
    for (loss, ppl) in &evals {
        assert!(loss.is_finite() && (ppl - loss.exp()).abs() < 1e-6 * ppl, "{loss} {ppl}");
    }
    let log = t.read(".camel/logs/pretrain.log");
    assert!(log.contains("8 examples held out (the `eval` input)"), "{log}");
    // The held-out blocks are an input: other ones make the stage stale.
    std::fs::write(t.path("held/tokens.bin"), held_ids(100)).unwrap();
    assert_ne!(t.state_of("p.yaml", "pretrain").0, "cached");

    t.write("q.yaml", &p.replace("eval_every: 5", "eval_fraction: 0.1"));
    let r = t.camel(&["run", "q.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("`eval_fraction` is 0.1 and an `eval` input is bound"), "{}", r.stderr);
}

/// The fine-tuning side of the `eval` input: held-out Alpaca records, prompted and tokenized as
/// the training records, scored after the last step; the training records are all trained on.
#[test]
fn finetune_evaluates_an_eval_input_of_alpaca_records() {
    if worker().is_none() {
        return;
    }
    let Some(tok) = shared_data("llama_tokenizer.json") else { return };
    let t = TestContext::new();
    token_dir(&t, "tokens", 8, 32, 32000, Some(&tok));
    let records = |from: usize, n: usize| -> String {
        let r: Vec<serde_json::Value> = (from..from + n)
            .map(|i| {
                serde_json::json!({"instruction": format!("Summarize finding {i}."), "input": "",
                                   "output": format!("Finding {i} is unremarkable.")})
            })
            .collect();
        serde_json::to_string(&r).unwrap()
    };
    t.write("alpaca.json", &records(0, 6));
    t.write("held.json", &records(100, 3));
    t.write(
        "p.yaml",
        &pretrain_then_finetune(
            "sft-eval-test",
            "{model: pretrain.model, data: alpaca.json, eval: held.json}",
            "{batch_size: 2, lr: 1e-3, max_length: 64, device: cpu}",
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let m: Vec<serde_json::Value> = t
        .read(".camel/out/finetune/metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 6 records / batch 2: 3 steps, the held-out records scored after the last.
    assert_eq!(m.len(), 3);
    assert!(m[..2].iter().all(|x| x.get("eval_loss").is_none()), "{m:?}");
    let (loss, ppl) = (m[2]["eval_loss"].as_f64().unwrap(), m[2]["eval_perplexity"].as_f64().unwrap());
    assert!(loss.is_finite() && loss > 0.0 && (ppl - loss.exp()).abs() < 1e-6 * ppl, "{loss} {ppl}");
    let log = t.read(".camel/logs/finetune.log");
    assert!(log.contains("3 examples held out (the `eval` input)"), "{log}");
}
