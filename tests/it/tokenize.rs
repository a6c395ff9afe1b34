//! `kind: tokenize` through the camel binary: blocks identical to the Python `tokenizers` package
//! plus CAMEL's packing (`tests/reference/tokenize_reference.py`), with and without shuffling and
//! in both layouts; bad tokenizers (a clear error, nothing cached); the example pipeline.

use std::path::Path;
use std::process::Command;

use camel_stages::tokenize::testing::{edge_notes, synthetic_notes, write_corpus};

use crate::common::{TestContext, project_root, shared_data, venv_python};

/// Runs the reference; returns its JSON summary.
fn reference(py: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(py)
        .arg(project_root().join("tests/reference/tokenize_reference.py"))
        .args(args)
        .output()
        .expect("run the tokenizers reference");
    assert!(out.status.success(), "reference {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn meta(t: &TestContext, stage: &str) -> serde_json::Value {
    serde_json::from_str(&t.read(&format!(".camel/out/{stage}/meta.json"))).unwrap()
}

#[test]
fn llama_blocks_are_identical_to_the_python_tokenizers_reference() {
    let (Some(py), Some(llama)) = (venv_python(), shared_data("llama_tokenizer.json")) else { return };
    let t = TestContext::new();
    let mut texts = edge_notes();
    texts.extend(synthetic_notes(400_000, 3, t.dir.path()));
    texts.extend(edge_notes());
    write_corpus(&t.path("corpus.parquet"), &texts);
    t.write(
        "p.yaml",
        &format!(
            r#"
name: tok-parity
stages:
  plain:
    kind: tokenize
    inputs: {{corpus: corpus.parquet, tokenizer: {llama}}}
    params: {{shuffle: false, parquet: true}}
  shuffled:
    kind: tokenize
    inputs: {{corpus: corpus.parquet, tokenizer: {llama}}}
    params: {{seed: 11}}
  clean:
    kind: tokenize
    inputs: {{corpus: corpus.parquet, tokenizer: {llama}}}
    params: {{layout: clean, block_size: 512, seed: 5}}
"#,
            llama = llama.display()
        ),
    );
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran().len(), 3);

    let corpus = t.path("corpus.parquet");
    let cases: [(&str, &[&str]); 3] = [
        ("plain", &["--layout", "camel"]),
        ("shuffled", &["--layout", "camel", "--shuffle", "--seed", "11"]),
        ("clean", &["--layout", "clean", "--shuffle", "--seed", "5", "--block-size", "512"]),
    ];
    let mut outputs = Vec::new();
    for (stage, opts) in cases {
        let ref_tokens = t.path(&format!("{stage}.ref.bin"));
        let mut args = vec![corpus.to_str().unwrap(), llama.to_str().unwrap(), ref_tokens.to_str().unwrap()];
        args.extend(opts);
        let out = t.path(&format!(".camel/out/{stage}"));
        let (parquet, tokjson) = (out.join("blocks.parquet"), out.join("tokenizer.json"));
        if stage == "plain" {
            args.extend(["--check-parquet", parquet.to_str().unwrap()]);
            args.extend(["--check-tokenizer", tokjson.to_str().unwrap()]);
        }
        let want = reference(&py, &args);
        let got = meta(&t, stage);
        for f in
            ["blocks", "tokens_total", "tokens_dropped", "notes", "vocab_size", "dtype", "bos_id", "eos_id"]
        {
            assert_eq!(got[f], want[f], "{stage}: meta.json `{f}`");
        }
        assert_eq!(got["added_tokens"]["[ANON]"], want["anon_id"], "{stage}");
        assert_eq!(got["ignore_ids"], serde_json::json!([want["anon_id"]]), "{stage}");
        assert_eq!(got["anon_replaced"], want["anon_replaced"], "{stage}");
        assert_eq!((got["vocab_size"].as_u64(), got["dtype"].as_str()), (Some(32001), Some("u16")));
        assert!(got["blocks"].as_u64().unwrap() >= 3, "{stage}: several blocks");
        assert!(got["anon_replaced"].as_u64().unwrap() > 20, "{stage}: the corpus has ___ marks");
        let camel_bytes = std::fs::read(out.join("tokens.bin")).unwrap();
        let ref_bytes = std::fs::read(&ref_tokens).unwrap();
        assert_eq!(camel_bytes.len(), ref_bytes.len(), "{stage}: tokens.bin size");
        assert!(camel_bytes == ref_bytes, "{stage}: tokens.bin differs from the reference");
        if stage == "plain" {
            assert_eq!(want["parquet_equal"], true, "blocks.parquet rows are the blocks");
            assert_eq!(want["parquet_rows"], got["blocks"]);
            assert_eq!(want["tokenizer_anon_id"], 32000);
            assert_eq!(want["tokenizer_same_ids"], true, "the written tokenizer.json encodes the same");
        }
        outputs.push(camel_bytes);
    }
    assert_ne!(outputs[0], outputs[1], "shuffling changes the order");
    // Nothing of the notes in the logs.
    for stage in ["plain", "shuffled", "clean"] {
        let log = t.read(&format!(".camel/logs/{stage}.log"));
        assert!(log.contains("tokenize:") && !log.contains("Discharge") && !log.contains("mg"), "{log}");
        // The ids compared above came through the word-splitting fast path.
        assert!(log.contains("words split: true"), "{log}");
    }
    // A second run is all cached.
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.ran().is_empty() && r.cached().len() == 3, "{}", r.stderr);
}

#[test]
fn a_file_that_is_not_a_tokenizer_fails_the_stage_and_caches_nothing() {
    let t = TestContext::new();
    write_corpus(&t.path("corpus.parquet"), &["Patient Jane Roe, MRN 1234".to_string()]);
    t.write("notes.csv", "text\nPatient Jane Roe, MRN 1234\n");
    t.write(
        "p.yaml",
        "name: bad\nstages:\n  tok:\n    kind: tokenize\n    inputs: {corpus: corpus.parquet, tokenizer: notes.csv}\n",
    );
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("notes.csv") && r.stderr.contains("not a Hugging Face tokenizer.json"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Jane") && !r.stdout.contains("Jane"), "no note text: {}", r.stderr);
    assert_eq!(t.cache_entries(), 0, "no cache entry for a failed stage");

    // A directory (a model directory instead of its tokenizer.json).
    std::fs::create_dir_all(t.path("model")).unwrap();
    t.write("model/config.json", "{}");
    t.write("p.yaml", "name: bad\nstages:\n  tok:\n    kind: tokenize\n    inputs: {corpus: corpus.parquet, tokenizer: model}\n");
    let r = t.camel(&["run", "p.yaml"]);
    // Decided before anything runs (issue 16): an invalid pipeline, exit 2.
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("is a directory") && r.stderr.contains("tokenizer.json"), "{}", r.stderr);
    assert_eq!(t.cache_entries(), 0);
}

#[test]
fn a_tokenizer_path_that_does_not_exist_is_a_pipeline_error() {
    let t = TestContext::new();
    write_corpus(&t.path("corpus.parquet"), &["x".to_string()]);
    t.write(
        "p.yaml",
        "name: bad\nstages:\n  tok:\n    kind: tokenize\n    inputs: {corpus: corpus.parquet, tokenizer: tok/nope.json}\n",
    );
    let r = t.camel(&["run", "p.yaml"]);
    // Inputs are checked before anything runs (exit 2, the line pointed at).
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("tok/nope.json does not exist"), "{}", r.stderr);
    assert_eq!(t.cache_entries(), 0);
    // Without its tokenizer input, the kind says what it needs.
    t.write(
        "p.yaml",
        "name: bad\nstages:\n  tok:\n    kind: tokenize\n    inputs: {corpus: corpus.parquet}\n",
    );
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("missing input `tokenizer`"), "{}", r.stderr);
}

#[test]
fn the_example_pipeline_runs_synth_to_blocks() {
    // As a clone has it: nothing but the example and the demo's tokenizer.
    let t = TestContext::new();
    t.write(
        "examples/tokenize.yaml",
        &std::fs::read_to_string(project_root().join("examples/tokenize.yaml")).unwrap(),
    );
    std::fs::create_dir_all(t.path("examples/demo")).unwrap();
    std::fs::copy(
        project_root().join("examples/demo/tokenizer.json"),
        t.path("examples/demo/tokenizer.json"),
    )
    .unwrap();
    let check = |args: &[&str]| {
        let r = t.camel(args);
        r.assert_ok();
        assert_eq!(r.ran(), ["synth", "notes", "tokenize"], "{}", r.stderr);
        let m: serde_json::Value =
            serde_json::from_str(&t.read("examples/.camel/out/tokenize/meta.json")).unwrap();
        assert_eq!(m["format"], "camel-tokens-v1");
        // synth's mimic4 notes are about half discharge summaries, which the notes stage reads.
        let notes = m["notes"].as_u64().unwrap();
        assert!((50..200).contains(&notes), "{m}");
        assert_eq!(m["block_size"], 512);
        assert!(m["blocks"].as_u64().unwrap() > 10, "{m}");
        let bin = std::fs::metadata(t.path("examples/.camel/out/tokenize/tokens.bin")).unwrap().len();
        assert_eq!(bin, m["blocks"].as_u64().unwrap() * 512 * 2);
        assert!(t.path("examples/.camel/out/tokenize/blocks.parquet").exists());
        let r = t.camel(args);
        r.assert_ok();
        assert!(r.ran().is_empty(), "{}", r.stderr);
    };
    check(&["run", "examples/tokenize.yaml"]);
    // With LLaMA's tokenizer, as the example's comment says.
    if let Some(llama) = shared_data("llama_tokenizer.json") {
        std::fs::remove_dir_all(t.path("examples/.camel")).unwrap();
        let set_tok = format!("params.tokenizer={}", llama.display());
        check(&["run", "examples/tokenize.yaml", "--set", &set_tok]);
    }
}
