//! camel's LLaMA against transformers: logits, loss, checkpoints both ways, bad checkpoints.
//! The reference numbers come from tests/reference/llama_reference.py in the project venv.

mod common;

use std::path::Path;

use camel_torch_worker::checkpoint;
use camel_torch_worker::model::causal_lm_loss;
use common::{ids, max_abs_diff, reference};
use serde_json::json;
use tch::{Device, Kind, Tensor};

fn read(path: &Path) -> std::collections::BTreeMap<String, Tensor> {
    checkpoint::read_safetensors(path).unwrap()
}

/// Input ids `[2, 19]` with a few positions ignored in the labels, written for the reference.
fn batch(dir: &Path, vocab: i64) -> (Tensor, Tensor) {
    let v = ids(38, vocab, 7);
    let ignore: Vec<i64> = (0..38).map(|i| i64::from(i % 5 == 3)).collect();
    std::fs::write(
        dir.join("ids.json"),
        json!({"ids": [&v[..19], &v[19..]], "ignore": [&ignore[..19], &ignore[19..]]}).to_string(),
    )
    .unwrap();
    let ids = Tensor::from_slice(&v).view([2, 19]);
    let mask = Tensor::from_slice(&ignore).view([2, 19]).to_kind(Kind::Bool);
    let labels = ids.masked_fill(&mask, -100);
    (ids, labels)
}

fn check_logits(py: &Path, tmp: &Path, model_dir: &Path, what: &str) {
    let (ids, labels) = batch(tmp, 96);
    let out = tmp.join(format!("{what}.safetensors"));
    reference(
        py,
        &[
            "logits",
            model_dir.to_str().unwrap(),
            tmp.join("ids.json").to_str().unwrap(),
            out.to_str().unwrap(),
        ],
    );
    let want = read(&out);
    let model = checkpoint::load(model_dir, Device::Cpu, Kind::Float).unwrap();
    let logits = tch::no_grad(|| model.forward(&ids));
    let d = max_abs_diff(&logits, &want["logits"]);
    assert!(d <= 1e-4, "{what}: logits differ from transformers by {d}");
    let loss = tch::no_grad(|| causal_lm_loss(&logits, &labels)).double_value(&[]);
    let want_loss = want["loss"].double_value(&[0]);
    assert!((loss - want_loss).abs() <= 1e-5, "{what}: loss {loss} vs transformers {want_loss}");
    println!("{what}: max |Δlogits| = {d:.2e}, loss {loss:.6} vs {want_loss:.6}");
}

#[test]
fn logits_and_loss_equal_transformers() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // Untied head, sharded checkpoint.
    let sharded = t.join("sharded");
    reference(&py, &["make", sharded.to_str().unwrap(), "--shard-bytes", "40000"]);
    assert!(sharded.join(checkpoint::INDEX).is_file());
    check_logits(&py, t, &sharded, "untied-sharded-fp32");
    // Tied head, one file, stored in bf16 (both sides upcast the same bf16 weights to fp32).
    let tied = t.join("tied");
    reference(&py, &["make", tied.to_str().unwrap(), "--tied", "--dtype", "bfloat16", "--seed", "3"]);
    check_logits(&py, t, &tied, "tied-bf16");
    // Rope scaling as LLaMA 3.1 and linear interpolation configs ask.
    for rope in ["llama3", "linear"] {
        let d = t.join(rope);
        reference(&py, &["make", d.to_str().unwrap(), "--rope", rope, "--seed", "4"]);
        check_logits(&py, t, &d, &format!("rope-{rope}"));
    }
}

#[test]
fn a_checkpoint_written_by_camel_loads_in_transformers_with_the_same_logits() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let src = t.join("src");
    reference(&py, &["make", src.to_str().unwrap(), "--seed", "5"]);
    let mut model = checkpoint::load(&src, Device::Cpu, Kind::Float).unwrap();
    // Grown vocabulary (mean rows) and both layouts: sharded fp32 and one-file fp16.
    model.grow_vocab(96).unwrap();
    let out = t.join("camel-sharded");
    checkpoint::save(&model, &out, Kind::Float, 50_000).unwrap();
    assert!(out.join(checkpoint::INDEX).is_file(), "expected shards");
    check_logits(&py, t, &out, "camel-written-sharded");
    let out16 = t.join("camel-fp16");
    checkpoint::save(&model, &out16, Kind::Half, u64::MAX).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out16.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["dtype"], "float16");
    check_logits(&py, t, &out16, "camel-written-fp16");
}

#[test]
fn random_init_from_a_config_loads_in_transformers() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = camel_torch_worker::config::LlamaConfig::from_value(json!({
        "vocab_size": 96, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "rope_theta": 500000.0, "tie_word_embeddings": true
    }))
    .unwrap();
    let model = camel_torch_worker::model::Llama::random(cfg, Device::Cpu, Kind::Float, 1).unwrap();
    let std = model.layers[0].q.std(true).double_value(&[]);
    assert!((std - 0.02).abs() < 0.002, "init std {std}");
    let dir = tmp.path().join("random");
    checkpoint::save(&model, &dir, Kind::Float, u64::MAX).unwrap();
    check_logits(&py, tmp.path(), &dir, "random-init-mqa-tied");
}

#[test]
fn bad_checkpoints_fail_clearly() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--shard-bytes", "40000"]);
    std::fs::remove_file(d.join("model-00003-of-00012.safetensors")).unwrap();
    let e = format!("{:#}", checkpoint::load(&d, Device::Cpu, Kind::Float).err().unwrap());
    assert!(e.contains("shard model-00003-of-00012.safetensors") && e.contains("missing"), "{e}");

    let d2 = tmp.path().join("gpt2");
    std::fs::create_dir_all(&d2).unwrap();
    std::fs::write(
        d2.join("config.json"),
        json!({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 10, "hidden_size": 8,
               "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2})
        .to_string(),
    )
    .unwrap();
    let e = format!("{:#}", checkpoint::load(&d2, Device::Cpu, Kind::Float).err().unwrap());
    assert!(
        e.contains("unknown architecture") && e.contains("GPT2LMHeadModel") && e.contains("config.json"),
        "{e}"
    );

    let d3 = tmp.path().join("empty");
    std::fs::create_dir_all(&d3).unwrap();
    std::fs::copy(tmp.path().join("m/config.json"), d3.join("config.json")).unwrap();
    let e = format!("{:#}", checkpoint::load(&d3, Device::Cpu, Kind::Float).err().unwrap());
    assert!(e.contains("neither model.safetensors nor model.safetensors.index.json"), "{e}");
}

#[test]
fn greedy_generation_equals_transformers_generate() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--seed", "9"]);
    // Prompts of different lengths (left padding) and eos = 2 so that some rows may stop early.
    let prompts: Vec<Vec<i64>> = vec![ids(7, 96, 1), ids(3, 96, 2), ids(11, 96, 3)];
    let spec = tmp.path().join("gen.json");
    std::fs::write(&spec, json!({"prompts": prompts, "pad_id": 0, "eos_id": 2}).to_string()).unwrap();
    let out = tmp.path().join("gen-out.json");
    reference(&py, &["generate", d.to_str().unwrap(), spec.to_str().unwrap(), "12", out.to_str().unwrap()]);
    let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
    let p = camel_torch_worker::generate::GenParams {
        max_new_tokens: 12,
        eos_ids: vec![2],
        pad_id: 0,
        ..Default::default()
    };
    let got = camel_torch_worker::generate::generate(&model, &prompts, &p).unwrap();
    for (i, g) in got.iter().enumerate() {
        let mut w: Vec<i64> = serde_json::from_value(want["tokens"][i].clone()).unwrap();
        // transformers pads finished rows to the batch's length.
        if let Some(e) = w.iter().position(|&t| t == 2) {
            w.truncate(e + 1);
        }
        assert_eq!(g, &w, "prompt {i}");
    }
    // And one row alone gives the same tokens as in the batch (padding does not leak).
    let alone = camel_torch_worker::generate::generate(&model, &prompts[1..2], &p).unwrap();
    assert_eq!(alone[0], got[1]);
}

#[test]
fn sampling_is_seeded_and_a_tiny_top_p_is_greedy() {
    let cfg = camel_torch_worker::config::LlamaConfig::from_value(json!({
        "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "eos_token_id": 999
    }))
    .unwrap();
    let model = camel_torch_worker::model::Llama::random(cfg, Device::Cpu, Kind::Float, 2).unwrap();
    let prompts = vec![ids(5, 64, 1), ids(9, 64, 2)];
    use camel_torch_worker::generate::{GenParams, generate};
    let greedy = generate(&model, &prompts, &GenParams { max_new_tokens: 10, ..Default::default() }).unwrap();
    let nucleus =
        GenParams { max_new_tokens: 10, do_sample: true, top_p: 1e-9, seed: 3, ..Default::default() };
    assert_eq!(generate(&model, &prompts, &nucleus).unwrap(), greedy);
    let hot =
        GenParams { max_new_tokens: 10, do_sample: true, temperature: 5.0, seed: 3, ..Default::default() };
    let a = generate(&model, &prompts, &hot).unwrap();
    assert_eq!(a, generate(&model, &prompts, &hot).unwrap(), "same seed, same tokens");
    assert_ne!(a, greedy, "sampling at temperature 5 followed the greedy path");
    assert!(a.iter().all(|r| r.len() == 10));
}

#[test]
fn sampling_equals_transformers_generate_with_the_same_seed() {
    use camel_torch_worker::generate::{GenParams, generate};
    use camel_torch_worker::generation_config::resolve;
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--seed", "9"]);
    let model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
    let prompts: Vec<Vec<i64>> = vec![ids(7, 96, 1), ids(3, 96, 2), ids(11, 96, 3)];
    // top_k unset (transformers' default 50 of 96 tokens), set with top_p, and off; a high
    // temperature so that the filters matter.
    for (i, set) in [
        json!({"temperature": 1.5}),
        json!({"temperature": 0.8, "top_k": 5, "top_p": 0.9}),
        json!({"temperature": 1.3, "top_k": 0}),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = 20 + i as u64;
        let mut spec =
            json!({"prompts": prompts, "pad_id": 0, "eos_id": -1, "do_sample": true, "seed": seed});
        spec.as_object_mut().unwrap().extend(set.as_object().unwrap().clone());
        let spec_path = tmp.path().join("sample.json");
        std::fs::write(&spec_path, spec.to_string()).unwrap();
        let out = tmp.path().join("sample-out.json");
        reference(
            &py,
            &["generate", d.to_str().unwrap(), spec_path.to_str().unwrap(), "12", out.to_str().unwrap()],
        );
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let base = GenParams {
            max_new_tokens: 12,
            do_sample: true,
            seed,
            eos_ids: vec![-1],
            temperature: set["temperature"].as_f64().unwrap(),
            top_p: set.get("top_p").and_then(serde_json::Value::as_f64).unwrap_or(1.0),
            top_k: set.get("top_k").and_then(serde_json::Value::as_u64).map(|k| k as usize),
            ..Default::default()
        };
        let (p, _) = resolve(&d, &model.cfg, &base).unwrap();
        let got = generate(&model, &prompts, &p).unwrap();
        let want: Vec<Vec<i64>> = serde_json::from_value(want["tokens"].clone()).unwrap();
        assert_eq!(got, want, "sampling with {set}");
        println!("sampling {set}: {got:?}");
    }
}

#[test]
fn beam_search_equals_transformers_generate() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--seed", "13"]);
    let model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
    let prompts: Vec<Vec<i64>> = vec![ids(6, 96, 4), ids(2, 96, 5), ids(9, 96, 6)];
    use camel_torch_worker::generate::{GenParams, generate};
    // An eos that the model does produce: the third greedy token of the first prompt, so that
    // hypotheses finish at different lengths and the early-stop heuristic matters.
    let greedy =
        generate(&model, &prompts, &GenParams { max_new_tokens: 3, eos_ids: vec![-1], ..Default::default() })
            .unwrap();
    let eos = greedy[0][2];
    for beams in [2usize, 4] {
        let spec = tmp.path().join("beam.json");
        std::fs::write(
            &spec,
            json!({"prompts": prompts, "pad_id": 0, "eos_id": eos, "num_beams": beams}).to_string(),
        )
        .unwrap();
        let out = tmp.path().join("beam-out.json");
        reference(
            &py,
            &["generate", d.to_str().unwrap(), spec.to_str().unwrap(), "10", out.to_str().unwrap()],
        );
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let p = GenParams {
            max_new_tokens: 10,
            eos_ids: vec![eos],
            pad_id: 0,
            num_beams: beams,
            ..Default::default()
        };
        let got = generate(&model, &prompts, &p).unwrap();
        for (i, g) in got.iter().enumerate() {
            let w: Vec<i64> = serde_json::from_value(want["tokens"][i].clone()).unwrap();
            assert!(g.len() <= w.len(), "{beams} beams, prompt {i}: {g:?} vs transformers {w:?}");
            assert_eq!(g[..], w[..g.len()], "{beams} beams, prompt {i}");
            // transformers fills the rest with `pad_token_id or eos` (pad id 0 is falsy there: eos).
            assert!(w[g.len()..].iter().all(|&t| t == eos), "{beams} beams, prompt {i}: {g:?} vs {w:?}");
        }
        println!("{beams} beams (eos {eos}): {got:?}");
    }
}

/// Rewrites the JSON object file `dir/name` with `set` merged in.
fn merge_json(dir: &Path, name: &str, set: serde_json::Value) {
    let path = dir.join(name);
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v.as_object_mut().unwrap().extend(set.as_object().unwrap().clone());
    std::fs::write(&path, v.to_string()).unwrap();
}

#[test]
fn generation_config_eos_ids_stop_decoding_as_in_transformers() {
    use camel_torch_worker::generate::{GenParams, generate};
    use camel_torch_worker::generation_config::resolve;
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--seed", "9"]);
    let prompts: Vec<Vec<i64>> = vec![ids(7, 96, 1), ids(3, 96, 2), ids(11, 96, 3)];
    let model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
    let free = GenParams { max_new_tokens: 12, eos_ids: vec![-1], ..Default::default() };
    let stop = generate(&model, &prompts, &free).unwrap()[0][2];
    let spec = tmp.path().join("gen.json");
    std::fs::write(&spec, json!({"prompts": prompts, "pad_id": 0}).to_string()).unwrap();
    // LLaMA-3 Instruct's layout: config.json eos 2, generation_config.json [2, X]; and the reverse,
    // config.json [2, X] with generation_config.json 2 (transformers stops at 2 only).
    for (config_eos, gen_eos) in [(json!(2), json!([2, stop])), (json!([2, stop]), json!(2))] {
        merge_json(&d, "config.json", json!({"eos_token_id": config_eos}));
        merge_json(&d, "generation_config.json", json!({"eos_token_id": gen_eos}));
        let out = tmp.path().join("gen-out.json");
        reference(
            &py,
            &["generate", d.to_str().unwrap(), spec.to_str().unwrap(), "12", out.to_str().unwrap()],
        );
        let want: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
        let base = GenParams { max_new_tokens: 12, ..Default::default() };
        let (p, _) = resolve(&d, &model.cfg, &base).unwrap();
        let eos: Vec<i64> = serde_json::from_value(gen_eos.clone()).unwrap_or_else(|_| vec![2]);
        assert_eq!(p.eos_ids, eos);
        let got = generate(&model, &prompts, &p).unwrap();
        for (i, g) in got.iter().enumerate() {
            let mut w: Vec<i64> = serde_json::from_value(want["tokens"][i].clone()).unwrap();
            if let Some(e) = w.iter().position(|t| eos.contains(t)) {
                w.truncate(e + 1);
            }
            assert_eq!(g, &w, "generation_config eos {gen_eos}, prompt {i}");
        }
        println!("generation_config eos {gen_eos}: {got:?}");
    }
    // A logits processor transformers would apply and camel does not: refused, named.
    merge_json(&d, "generation_config.json", json!({"repetition_penalty": 1.3}));
    let e = format!("{:#}", resolve(&d, &model.cfg, &GenParams::default()).unwrap_err());
    assert!(e.contains("repetition_penalty 1.3") && e.contains("generation_config.json"), "{e}");
}

/// Fine-tuning's embedding resize against Alpaca's `smart_tokenizer_and_embedding_resize` in
/// transformers: a checkpoint with spare rows (100 for a tokenizer of 96 + `[PAD]`) is cut to 97
/// and `[PAD]`'s row is the mean of the 96 before it; one with 96 rows grows to 97 alike.
#[test]
fn the_vocabulary_is_resized_as_alpacas_smart_resize() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    for (rows, new, num_new) in [(100i64, 97i64, 1i64), (96, 97, 1), (100, 96, 0)] {
        let d = tmp.path().join(format!("m{rows}-{new}"));
        reference(&py, &["make", d.to_str().unwrap(), "--vocab", &rows.to_string(), "--seed", "6"]);
        let out = tmp.path().join(format!("resized{rows}-{new}.safetensors"));
        let (n, k) = (new.to_string(), num_new.to_string());
        reference(&py, &["alpaca_resize", d.to_str().unwrap(), &n, &k, out.to_str().unwrap()]);
        let want = read(&out);
        let mut model = checkpoint::load(&d, Device::Cpu, Kind::Float).unwrap();
        model.alpaca_resize(new, num_new).unwrap();
        assert_eq!(model.cfg.vocab_size, new);
        let head = model.lm_head.as_ref().unwrap();
        for (what, got, w) in [("embedding", &model.embed, &want["embed"]), ("head", head, &want["head"])] {
            assert_eq!(got.size(), w.size(), "{rows} → {new}: {what}");
            let d = max_abs_diff(got, w);
            assert!(d <= 1e-6, "{rows} → {new} ({num_new} new): {what} differs from Alpaca's by {d}");
        }
    }
}

/// transformers' Llama ignores a `sliding_window` key (camel too: same logits over 19 positions
/// with a window of 8), and Mistral's window when the key is absent is camel's default.
#[test]
fn sliding_window_is_read_as_transformers_reads_it() {
    let py = need_python!();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("m");
    reference(&py, &["make", d.to_str().unwrap(), "--seed", "8"]);
    merge_json(&d, "config.json", json!({"sliding_window": 8}));
    check_logits(&py, tmp.path(), &d, "llama-with-sliding-window-key");
    let out = std::process::Command::new(&py)
        .args(["-c", "from transformers import MistralConfig; print(MistralConfig().sliding_window)"])
        .output()
        .unwrap();
    let default: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(default, camel_torch_job::model_config::MISTRAL_DEFAULT_SLIDING_WINDOW);
}
