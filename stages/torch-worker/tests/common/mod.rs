//! Shared helpers of the worker's tests: the project venv's Python as the reference.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's Python if it has torch and transformers; `None` otherwise.
pub fn python() -> Option<PathBuf> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        let py = root().join(".venv/bin/python");
        let ok = Command::new(&py)
            .args(["-c", "import torch, transformers, safetensors"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok { Some(py) } else { None }
    })
    .clone()
}

/// Whether the venv's Python can import `module` (for references that need more than torch and
/// transformers).
pub fn python_imports(py: &Path, module: &str) -> bool {
    Command::new(py).args(["-c", &format!("import {module}")]).output().is_ok_and(|o| o.status.success())
}

/// Skips the calling test (returns from it) when the reference venv is missing.
#[macro_export]
macro_rules! need_python {
    () => {
        match common::python() {
            Some(p) => p,
            None => {
                println!("skipped: .venv/bin/python lacks torch/transformers (run scripts/setup)");
                return;
            }
        }
    };
}

/// Runs `tests/reference/llama_reference.py ARGS`, panicking with its stderr on failure.
pub fn reference(py: &Path, args: &[&str]) {
    let script = root().join("tests/reference/llama_reference.py");
    let out = Command::new(py)
        .arg(&script)
        .args(args)
        .env("TOKENIZERS_PARALLELISM", "false")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run the Python reference");
    assert!(
        out.status.success(),
        "reference {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn max_abs_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(tch::Kind::Double) - b.to_kind(tch::Kind::Double)).abs().max().double_value(&[])
}

/// A deterministic pseudo-random id sequence.
pub fn ids(n: usize, vocab: i64, seed: u64) -> Vec<i64> {
    let mut r = camel_torch_worker::data::SplitMix64::new(seed);
    (0..n).map(|_| r.below_lemire(vocab as u64) as i64).collect()
}

/// Writes `ids` as a camel-tokens-v1 dir of `block_size`-token blocks (vocabulary 97, bos 1,
/// eos 2), with `anon` (the `[ANON]` id) added and masked in the labels when given.
pub fn write_tokens(dir: &Path, ids: &[i64], block_size: usize, anon: Option<i64>) {
    let meta = camel_torch_worker::data::TokenMeta {
        format: "camel-tokens-v1".into(),
        dtype: "u16".into(),
        vocab_size: 97,
        block_size,
        blocks: ids.len() / block_size,
        tokens_total: ids.len() as u64,
        tokens_dropped: 0,
        bos_id: Some(1),
        eos_id: Some(2),
        added_tokens: anon.map(|a| ("[ANON]".to_string(), a)).into_iter().collect(),
        ignore_ids: anon.into_iter().collect(),
        layout: Some("camel".into()),
        shuffle: Some(false),
        seed: Some(0),
        tokenizer_blake3: None,
    };
    camel_torch_worker::data::write_token_dir(dir, &meta, ids, None).unwrap();
}

/// A pretraining job on the token dir `tokens` (from `model`, or a random initialisation), writing
/// to `dir/out` (created) with its scratch state in `dir/scratch`.
pub fn pretrain_job(
    tokens: &Path,
    model: Option<PathBuf>,
    dir: &Path,
    params: camel_torch_worker::job::TrainParams,
) -> camel_torch_worker::job::Job {
    let job = camel_torch_worker::job::Job {
        task: camel_torch_worker::job::Task::Pretrain,
        tokens: Some(tokens.to_path_buf()),
        data: None,
        model,
        eval: None,
        out_dir: dir.join("out"),
        scratch_dir: dir.join("scratch"),
        params,
    };
    std::fs::create_dir_all(&job.out_dir).unwrap();
    job
}
