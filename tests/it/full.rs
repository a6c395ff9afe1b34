//! `pipelines/full.yaml`, the published recipe: with none of its data present `camel status`
//! still works and says, per stage, which input is missing and which param sets it; with every
//! path overridden from the command line nothing is missing and the plan is the recipe's.

use crate::common::{TestContext, project_root};

fn copy_full(t: &TestContext) {
    let src = std::fs::read_to_string(project_root().join("pipelines/full.yaml")).unwrap();
    t.write("pipelines/full.yaml", &src);
}

#[test]
fn status_without_data_names_each_missing_input_and_its_param() {
    let t = TestContext::new();
    copy_full(&t);
    let r = t.camel(&["status", "pipelines/full.yaml"]);
    r.assert_ok();
    for (stage, param) in [
        ("notes", "noteevents"),
        ("notes", "mimiciii_filter"),
        ("notes", "discharge"),
        ("notes", "radiology"),
        ("notes", "i2b2"),
        ("tokenize", "tokenizer"),
        ("pretrain", "llama"),
        ("answer", "mtsamples_instructions"),
        ("metrics", "mtsamples_results"),
    ] {
        let (state, reasons) = t.state_of("pipelines/full.yaml", stage);
        assert_eq!(state, "missing", "{stage}");
        let hint = format!("--set params.{param}=PATH");
        assert!(
            reasons.iter().any(|r| r.contains("does not exist") && r.contains(&hint)),
            "{stage}: no reason with {hint}: {reasons:?}"
        );
    }
    let (_, reasons) = t.state_of("pipelines/full.yaml", "finetune");
    assert!(reasons.iter().any(|r| r.contains("upstream `pretrain` is not cached")), "{reasons:?}");
    assert!(!t.path("pipelines/.camel-full/cache").exists(), "status wrote a cache");
    // `run` still refuses a pipeline whose inputs are missing, before anything starts.
    assert_eq!(t.camel(&["run", "pipelines/full.yaml"]).code, 2);
}

#[test]
fn every_path_is_a_param_overridable_from_the_command_line() {
    let t = TestContext::new();
    copy_full(&t);
    let mut args: Vec<String> = vec!["status".into(), "pipelines/full.yaml".into(), "--json".into()];
    for (param, rel) in [
        ("noteevents", "data/NOTEEVENTS.csv"),
        ("mimiciii_filter", "data/filter.txt"),
        ("discharge", "data/discharge.csv"),
        ("radiology", "data/radiology.csv"),
        ("i2b2", "data/i2b2/note.txt"),
        ("tokenizer", "model/tokenizer.json"),
        ("llama", "model/config.json"),
        ("mtsamples_instructions", "data/mtsamples_instructions.json"),
        ("mtsamples_results", "data/mtsamples_results.json"),
    ] {
        // The model dir's config.json is read while planning: a LLaMA-7B-shaped one.
        let content = if param == "llama" {
            r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
                "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                "num_attention_heads": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}"#
        } else {
            "x"
        };
        let p = t.write(rel, content);
        let p = if param == "i2b2" || param == "llama" { p.parent().unwrap().to_path_buf() } else { p };
        args.push("--set".into());
        args.push(format!("params.{param}={}", p.display()));
    }
    // …and its weights, of which planning reads the safetensors header only (tensor names, shapes).
    llama_7b_header(&t.path("model/model.safetensors"));
    args.extend(["--set".into(), "params.gpus=2".into()]);
    let r = t.camel(&args.iter().map(String::as_str).collect::<Vec<_>>());
    r.assert_ok();
    let st: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let stages: Vec<&str> = st.iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["notes", "tokenize", "pretrain", "instructions", "finetune", "answer", "judge", "metrics", "report"]
    );
    for s in &st {
        let reasons = s["reasons"].as_array().unwrap();
        assert!(!reasons.iter().any(|r| r.as_str().unwrap().contains("does not exist")), "{s}");
    }
    // A GPU count that is not a number is caught when the plan is loaded.
    let bad = t.camel(&["status", "pipelines/full.yaml", "--set", "params.gpus=eight"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// A safetensors file holding only the header of LLaMA-7B's weights (bf16, no data): what
/// planning reads of a checkpoint (docs/training.md, "Checked while planning").
fn llama_7b_header(path: &std::path::Path) {
    let (h, i, v) = (4096u64, 11008u64, 32000u64);
    let mut tensors = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
    for l in 0..32 {
        for (n, shape) in [
            ("input_layernorm", vec![h]),
            ("self_attn.q_proj", vec![h, h]),
            ("self_attn.k_proj", vec![h, h]),
            ("self_attn.v_proj", vec![h, h]),
            ("self_attn.o_proj", vec![h, h]),
            ("post_attention_layernorm", vec![h]),
            ("mlp.gate_proj", vec![i, h]),
            ("mlp.up_proj", vec![i, h]),
            ("mlp.down_proj", vec![h, i]),
        ] {
            tensors.push((format!("model.layers.{l}.{n}.weight"), shape));
        }
    }
    tensors.push(("model.norm.weight".into(), vec![h]));
    tensors.push(("lm_head.weight".into(), vec![v, h]));
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape) in tensors {
        let len = 2 * shape.iter().product::<u64>();
        header.insert(
            name,
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let head = serde_json::Value::Object(header).to_string().into_bytes();
    let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
    bytes.extend(head);
    std::fs::write(path, bytes).unwrap();
}
