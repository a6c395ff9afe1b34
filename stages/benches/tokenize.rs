//! `cargo bench --workspace --bench tokenize`: ~200 MB of synthetic notes (synth's MIMIC-III and
//! MIMIC-IV shapes) with the shared LLaMA tokenizer, in one run:
//!
//! - **camel**: the whole stage (`tokenize::tokenize`: read corpus.parquet, `[ANON]`, encode,
//!   shuffle, pack, write tokens.bin), default params;
//! - **python**: `tests/reference/tokenize_reference.py` (the `tokenizers` package's `encode_batch`
//!   and the same packing, numpy), timed from after reading the corpus to the written blocks;
//! - **raw**: the `tokenizers` crate's `encode_batch_fast` on the same texts in memory (already
//!   anonymized), 2,048 notes per call: encoding alone, no reading, packing or writing.
//!
//! It prints seconds, MB/s and tokens/s for each and the ratios against the goals (camel ≥ 2×
//! python, camel ≥ 0.9× raw), and checks that camel's tokens.bin equals the reference's.
//!
//! `TOKENIZE_BENCH_BYTES` overrides the size (note-text bytes), `RAYON_NUM_THREADS` the threads
//! (both Rust and the Python package use rayon). Needs `../shared/data/llama_tokenizer.json` and
//! `./.venv` (`scripts/setup`); without the venv the python column is skipped.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use camel_stages::tokenize::testing::{synthetic_notes, write_corpus};
use camel_stages::tokenize::{Quiet, TokenizeParams, anonymize, tokenize};

fn main() {
    let bytes: u64 =
        std::env::var("TOKENIZE_BENCH_BYTES").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000_000);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let llama = root.join("../shared/data/llama_tokenizer.json");
    if !llama.exists() {
        println!("SKIP tokenize bench: {} is absent", llama.display());
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let texts = synthetic_notes(bytes, 0, dir.path());
    let text_bytes: u64 = texts.iter().map(|s| s.len() as u64).sum();
    let corpus = dir.path().join("corpus.parquet");
    write_corpus(&corpus, &texts);
    println!(
        "corpus: {} notes, {:.1} MB of text (generated in {:.1} s), {} threads",
        texts.len(),
        text_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    let mb = text_bytes as f64 / 1e6;

    // camel: the stage, end to end.
    let p = TokenizeParams::default();
    let (out, scratch) = (dir.path().join("out"), dir.path().join("scratch"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let t = Instant::now();
    let meta = tokenize(&p, &corpus, &llama, &out, &scratch, &Quiet).expect("tokenize");
    let camel = t.elapsed().as_secs_f64();
    let tokens = meta.tokens_total as f64;
    println!(
        "camel  : {camel:7.2} s  {:6.2} MB/s  {:6.3} M tokens/s  ({} tokens, {} blocks)",
        mb / camel,
        tokens / camel / 1e6,
        meta.tokens_total,
        meta.blocks
    );

    // raw: the tokenizers crate's batch encoder on the same (anonymized) texts.
    let mut tok = tokenizers::Tokenizer::from_file(&llama).expect("tokenizer");
    tok.add_special_tokens([tokenizers::AddedToken::from("[ANON]", true)]).unwrap();
    let anon: Vec<String> = texts.iter().map(|s| anonymize(s, "___", "[ANON]").0.into_owned()).collect();
    drop(texts);
    let t = Instant::now();
    let mut raw_tokens = 0u64;
    for chunk in anon.chunks(2048) {
        let encs = tok.encode_batch_fast(chunk.iter().map(String::as_str).collect(), true).expect("encode");
        raw_tokens += encs.iter().map(|e| e.len() as u64).sum::<u64>();
    }
    let raw = t.elapsed().as_secs_f64();
    drop(anon);
    println!(
        "raw    : {raw:7.2} s  {:6.2} MB/s  {:6.3} M tokens/s  (encode only)",
        mb / raw,
        raw_tokens as f64 / raw / 1e6
    );

    // python: the reference (encode_batch + packing), same permutation.
    let py = root.join(".venv/bin/python");
    let python = if py.exists() {
        let ref_out = dir.path().join("ref.bin");
        let t = Instant::now();
        let o = Command::new(&py)
            .arg(root.join("tests/reference/tokenize_reference.py"))
            .args([corpus.as_os_str(), llama.as_os_str(), ref_out.as_os_str()])
            .args(["--shuffle", "--seed", "0"])
            .output()
            .expect("run python");
        let wall = t.elapsed().as_secs_f64();
        assert!(o.status.success(), "reference failed: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value =
            serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
        let secs = v["seconds"].as_f64().unwrap();
        println!(
            "python : {secs:7.2} s  {:6.2} MB/s  {:6.3} M tokens/s  (encode_batch + packing; {wall:.1} s with reading and startup)",
            mb / secs,
            tokens / secs / 1e6
        );
        let same = std::fs::read(out.join("tokens.bin")).unwrap() == std::fs::read(&ref_out).unwrap();
        println!("tokens.bin identical to the python reference: {same}");
        assert!(same, "camel and the reference disagree");
        Some(secs)
    } else {
        println!("SKIP python: {} is absent (scripts/setup)", py.display());
        None
    };

    println!("camel vs raw tokenizers crate: {:.2}x (goal >= 0.9x)", raw / camel);
    if let Some(secs) = python {
        println!("camel vs python tokenizers + packing: {:.2}x faster (goal >= 2x)", secs / camel);
    }
}
