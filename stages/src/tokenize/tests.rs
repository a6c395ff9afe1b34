use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::pack::Width;
use super::testing::{edge_notes, write_corpus};
use super::*;

/// A word-level tokenizer: whitespace-separated `wN` is id N (3 ≤ N < `size`), bos `<s>` = 1 is
/// prepended by the post-processor, eos `</s>` = 2. Its ids are known without running anything.
fn toy_tokenizer(dir: &Path, size: u32) -> PathBuf {
    let special = |id: u32, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                           "rstrip": false, "normalized": false, "special": true})
    };
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(t.to_string(), (i as u32).into());
    }
    for i in 3..size {
        vocab.insert(format!("w{i}"), i.into());
    }
    let bos_a = serde_json::json!([{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]);
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": {"type": "TemplateProcessing", "single": bos_a, "pair": bos_a,
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
    });
    let path = dir.join(format!("toy-{size}.json"));
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    path
}

fn llama() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/llama_tokenizer.json");
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} is absent (the shared LLaMA tokenizer)", p.display());
        None
    }
}

struct Run {
    _dir: tempfile::TempDir,
    out: PathBuf,
    meta: Meta,
}

impl Run {
    fn ids(&self) -> Vec<u32> {
        let w = if self.meta.dtype == "u16" { Width::U16 } else { Width::U32 };
        Width::decode(w, &std::fs::read(self.out.join(TOKENS_FILE)).unwrap()).collect()
    }
}

fn run_with(
    p: &TokenizeParams,
    texts: &[String],
    tokenizer: &Path,
    obs: &dyn Observer,
) -> Result<Run, StageError> {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.parquet");
    write_corpus(&corpus, texts);
    let (out, scratch) = (dir.path().join("out"), dir.path().join("scratch"));
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let meta = tokenize(p, &corpus, tokenizer, &out, &scratch, obs)?;
    Ok(Run { _dir: dir, out, meta })
}

fn run(p: &TokenizeParams, texts: &[String], tokenizer: &Path) -> Run {
    run_with(p, texts, tokenizer, &Quiet).unwrap()
}

fn params(block_size: u64, layout: Layout, shuffle: bool) -> TokenizeParams {
    TokenizeParams { block_size, layout, shuffle, ..TokenizeParams::default() }
}

fn words(ids: &[u32]) -> String {
    ids.iter().map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn params_have_camels_defaults_and_reject_unknown_fields() {
    let p: TokenizeParams = serde_yaml::from_str("{}").unwrap();
    assert_eq!((p.block_size, p.layout, p.shuffle, p.seed), (2048, Layout::Camel, true, 0));
    assert_eq!((p.anon_token.as_str(), p.anon_marker.as_str()), ("[ANON]", "___"));
    assert_eq!((p.bos.as_str(), p.eos.as_str(), p.parquet), ("<s>", "</s>", false));
    let p: TokenizeParams = serde_yaml::from_str("{layout: clean, shuffle: false, parquet: true}").unwrap();
    assert_eq!((p.layout, p.shuffle), (Layout::Clean, false));
    assert_eq!(Tokenize::outputs(&p).last().unwrap(), &OutputSpec::file("blocks", PARQUET_FILE));
    let e = serde_yaml::from_str::<TokenizeParams>("{block_sise: 4}").unwrap_err();
    assert!(e.to_string().contains("unknown field `block_sise`"), "{e}");
    let e = serde_yaml::from_str::<TokenizeParams>("{layout: packed}").unwrap_err();
    assert!(e.to_string().contains("camel") && e.to_string().contains("clean"), "{e}");
}

#[test]
fn camel_layout_is_bos_then_ids_eos_bos_cut_to_whole_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let tok = toy_tokenizer(dir.path(), 100);
    let texts = vec![words(&[10, 11, 12]), words(&[13]), String::new()];
    // [1] + [1 10 11 12] 2 1 + [1 13] 2 1 + [1] 2 1 = 14 tokens.
    let stream = [1, 1, 10, 11, 12, 2, 1, 1, 13, 2, 1, 1, 2, 1];
    let r = run(&params(4, Layout::Camel, false), &texts, &tok);
    assert_eq!(r.ids(), stream[..12]);
    let m = &r.meta;
    assert_eq!((m.blocks, m.tokens_total, m.tokens_dropped, m.notes), (3, 14, 2, 3));
    assert_eq!((m.bos_id, m.eos_id, m.dtype.as_str(), m.vocab_size), (1, 2, "u16", 101));
    assert_eq!(m.added_tokens, [("[ANON]".to_string(), 100)].into());
    assert_eq!(m.ignore_ids, [100]);

    let r = run(&params(4, Layout::Clean, false), &texts, &tok);
    // [1 10 11 12] 2 + [1 13] 2 + [1] 2 = 10 tokens: 2 blocks, 2 dropped.
    assert_eq!(r.ids(), [1, 10, 11, 12, 2, 1, 13, 2]);
    assert_eq!((r.meta.blocks, r.meta.tokens_total, r.meta.tokens_dropped), (2, 10, 2));
}

#[test]
fn a_corpus_shorter_than_a_block_gives_no_blocks_and_drops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let tok = toy_tokenizer(dir.path(), 100);
    let r = run(&params(2048, Layout::Camel, true), &[words(&[5, 6, 7])], &tok);
    assert_eq!((r.meta.blocks, r.meta.tokens_total, r.meta.tokens_dropped), (0, 7, 7));
    assert!(r.ids().is_empty());
    let r = run(&params(2048, Layout::Camel, false), &[], &tok);
    assert_eq!((r.meta.notes, r.meta.blocks, r.meta.tokens_total, r.meta.tokens_dropped), (0, 0, 1, 1));
}

#[test]
fn an_exact_multiple_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tok = toy_tokenizer(dir.path(), 100);
    // camel: 1 + (1 + 3 + 2) * 2 = 13 tokens; clean: (1 + 3 + 1) * 2 = 10.
    let texts = vec![words(&[3, 4, 5]), words(&[6, 7, 8])];
    let r = run(&params(13, Layout::Camel, true), &texts, &tok);
    assert_eq!((r.meta.blocks, r.meta.tokens_dropped), (1, 0));
    assert_eq!(r.ids().len(), 13);
    let r = run(&params(5, Layout::Clean, false), &texts, &tok);
    assert_eq!((r.meta.blocks, r.meta.tokens_dropped), (2, 0));
    assert_eq!(r.ids(), [1, 3, 4, 5, 2, 1, 6, 7, 8, 2]);
}

/// Notes of 0 to 40 distinct words, each note's words unique to it.
fn numbered_notes(n: u32) -> (Vec<String>, Vec<Vec<u32>>) {
    let mut next = 3;
    let mut ids = Vec::new();
    for i in 0..n {
        let len = (i * 7919) % 41;
        ids.push((next..next + len).collect::<Vec<u32>>());
        next += len;
    }
    (ids.iter().map(|v| words(v)).collect(), ids)
}

#[test]
fn shuffling_writes_whole_notes_in_the_documented_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let (texts, ids) = numbered_notes(5000);
    let tok = toy_tokenizer(dir.path(), 120_000);
    let mut p = params(64, Layout::Camel, true);
    p.seed = 7;
    let r = run(&p, &texts, &tok);
    assert_eq!(r.meta.dtype, "u32");
    let mut want = vec![1];
    for &i in &pack::permutation(ids.len(), 7) {
        want.push(1);
        want.extend(&ids[i as usize]);
        want.extend([2, 1]);
    }
    assert_eq!(r.meta.tokens_total, want.len() as u64);
    want.truncate((r.meta.blocks * 64) as usize);
    assert_eq!(r.ids(), want);
    assert_eq!((r.meta.shuffle, r.meta.seed), (true, 7));
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = numbered_notes(5000);
    let tok = toy_tokenizer(dir.path(), 120_000);
    let mut outs = Vec::new();
    for threads in [1, 3] {
        for shuffle in [false, true] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let r = pool.install(|| run(&params(100, Layout::Clean, shuffle), &texts, &tok));
            outs.push((std::fs::read(r.out.join(TOKENS_FILE)).unwrap(), r.meta));
        }
    }
    assert_eq!(outs[0], outs[2]);
    assert_eq!(outs[1], outs[3]);
    assert_ne!(outs[0].0, outs[1].0);
}

#[test]
fn parquet_blocks_are_the_token_file_cut_into_rows() {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = numbered_notes(3000);
    let tok = toy_tokenizer(dir.path(), 60_000);
    let mut p = params(50, Layout::Camel, true);
    p.parquet = true;
    let r = run(&p, &texts, &tok);
    assert!(r.meta.blocks > 1024, "more than one row group: {}", r.meta.blocks);
    assert_eq!(r.meta.parquet_file.as_deref(), Some(PARQUET_FILE));
    let file = File::open(r.out.join(PARQUET_FILE)).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut back = Vec::new();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let list = batch.column_by_name("input_ids").unwrap().as_list::<i32>();
        for row in 0..list.len() {
            let v = list.value(row);
            let v = v.as_primitive::<Int32Type>();
            assert_eq!(v.len(), 50);
            back.extend(v.values().iter().map(|&x| x as u32));
            rows += 1;
        }
    }
    assert_eq!(rows, r.meta.blocks);
    assert_eq!(back, r.ids());
}

#[test]
fn bad_tokenizers_are_clear_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let texts = vec!["w3 w4".to_string()];
    let p = TokenizeParams::default();
    let err = |path: &Path| run_with(&p, &texts, path, &Quiet).err().expect("an error").to_string();

    let missing = dir.path().join("nope.json");
    let e = err(&missing);
    assert!(e.contains("nope.json") && e.contains("tokenizer.json"), "{e}");
    let e = err(dir.path());
    assert!(e.contains("is a directory") && e.contains("tokenizer.json"), "{e}");
    let csv = dir.path().join("notes.csv");
    std::fs::write(&csv, "text\nPatient John Smith was seen\n").unwrap();
    let e = err(&csv);
    assert!(e.contains("notes.csv") && e.contains("not a Hugging Face tokenizer.json"), "{e}");
    assert!(!e.contains("John"), "no file content in errors: {e}");
    let json = dir.path().join("config.json");
    std::fs::write(&json, r#"{"architectures": ["LlamaForCausalLM"], "secret": "John Smith"}"#).unwrap();
    let e = err(&json);
    assert!(e.contains("config.json") && e.contains("not a Hugging Face tokenizer.json"), "{e}");
    assert!(!e.contains("John"), "no file content in errors: {e}");

    let tok = toy_tokenizer(dir.path(), 50);
    let e = run_with(&TokenizeParams { bos: "<bos>".into(), ..p.clone() }, &texts, &tok, &Quiet)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("no beginning-of-sequence token `<bos>`") && e.contains("`bos`"), "{e}");
    let e = run_with(&TokenizeParams { block_size: 0, ..p.clone() }, &texts, &tok, &Quiet).err().unwrap();
    assert!(e.to_string().contains("block_size"), "{e}");
}

#[test]
fn a_cancelled_run_stops_with_cancelled() {
    struct CancelAfter(AtomicU64);
    impl Observer for CancelAfter {
        fn cancelled(&self) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed) >= 1
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (texts, _) = numbered_notes(6000);
    let tok = toy_tokenizer(dir.path(), 60_000);
    for shuffle in [false, true] {
        let e = run_with(&params(64, Layout::Camel, shuffle), &texts, &tok, &CancelAfter(AtomicU64::new(0)));
        assert!(matches!(e, Err(StageError::Cancelled)), "{:?}", e.err());
    }
}

#[test]
fn progress_reports_every_note_and_token() {
    #[derive(Default)]
    struct Seen(Mutex<(u64, u64, u64)>);
    impl Observer for Seen {
        fn total(&self, n: u64) {
            self.0.lock().unwrap().0 = n;
        }
        fn progress(&self, notes: u64, tokens: u64) {
            let mut s = self.0.lock().unwrap();
            (s.1, s.2) = (notes, tokens);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let (texts, ids) = numbered_notes(4100);
    let tok = toy_tokenizer(dir.path(), 60_000);
    let seen = Seen::default();
    run_with(&params(64, Layout::Clean, false), &texts, &tok, &seen).unwrap();
    let tokens: usize = ids.iter().map(|v| v.len() + 1).sum();
    assert_eq!(*seen.0.lock().unwrap(), (4100, 4100, tokens as u64));
}

#[test]
fn anonymize_replaces_like_python_str_replace() {
    assert_eq!(anonymize("a ___ b", "___", "[ANON]"), (Cow::Borrowed("a [ANON] b"), 1));
    assert_eq!(anonymize("____", "___", "[ANON]").0, "[ANON]_");
    assert_eq!(anonymize("______", "___", "[ANON]"), (Cow::Borrowed("[ANON][ANON]"), 2));
    assert_eq!(anonymize("__", "___", "[ANON]").1, 0);
    assert_eq!(anonymize("a ___", "", "[ANON]").0, "a ___");
}

#[test]
fn llama_anon_is_token_32000_and_ignored() {
    let Some(llama) = llama() else { return };
    let texts = edge_notes();
    let r = run(&params(16, Layout::Clean, false), &texts, &llama);
    let m = &r.meta;
    assert_eq!((m.vocab_size, m.dtype.as_str(), m.bos_id, m.eos_id), (32001, "u16", 1, 2));
    assert_eq!(m.added_tokens, [("[ANON]".to_string(), 32000)].into());
    assert_eq!(m.ignore_ids, [32000]);
    let marks: u64 = texts.iter().map(|t| t.matches("___").count() as u64).sum();
    assert_eq!(m.anon_replaced, marks);
    // `___` alone: bos [ANON] eos (clean layout), the second note of the stream.
    let ids = r.ids();
    assert_eq!(ids[..2], [1, 2], "the empty note is bos eos");
    assert_eq!(ids[2..5], [1, 32000, 2]);
    assert_eq!(ids[5..7], [1, 32000], "`____` starts with [ANON]");
    // The written tokenizer.json knows [ANON] and encodes as the stage did.
    let back = tokenizers::Tokenizer::from_file(r.out.join(TOKENIZER_FILE)).unwrap();
    assert_eq!(back.token_to_id("[ANON]"), Some(32000));
    assert_eq!(back.encode("___ [ANON]", true).unwrap().get_ids()[..2], [1, 903]);
    assert_eq!(back.encode("[ANON]", true).unwrap().get_ids(), [1, 32000]);
    assert_eq!(m.tokenizer_blake3, blake3::hash(&std::fs::read(&llama).unwrap()).to_hex().to_string());
}

#[test]
fn llama_word_splitting_changes_no_id() {
    let Some(llama) = llama() else { return };
    let tok = tok::load(&llama, &TokenizeParams::default()).unwrap();
    assert!(tok.splits_words(), "the LLaMA tokenizer qualifies for the fast path");
    assert!(tok.caches_words(), "and for the cached-words path (bos prefix, no suffix)");
    let dir = tempfile::tempdir().unwrap();
    let mut texts = edge_notes();
    texts.extend(super::testing::synthetic_notes(300_000, 9, dir.path()));
    texts.extend(
        [
            "literal ▁ marks▁▁in ▁▁▁ text▁",
            "  \n  \n\n   x",
            "tabs\tand\u{a0}nbsp and\u{2003}em space",
            "🙂🙂 zero\u{200b}width 㐀 unknown \u{10ffff} chars",
            "x\r\ny\n",
        ]
        .map(String::from),
    );
    for (i, t) in texts.iter().enumerate() {
        let (t, _) = anonymize(t, "___", "[ANON]");
        let fast = tok.encode(&t).unwrap();
        let plain = tok.tokenizer.encode_fast(t.as_ref(), true).unwrap();
        assert_eq!(fast.get_ids(), plain.get_ids(), "note {i}");
        assert_eq!(tok.encode_ids(&t).unwrap(), plain.get_ids(), "note {i} (cached words)");
    }
}
