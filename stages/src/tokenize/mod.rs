//! `kind: tokenize` — the notes corpus as CAMEL's 2,048-token pretraining blocks.
//!
//! Inputs: `corpus` (a corpus.parquet: the notes stage's output, or any Parquet file with a `text`
//! column, read with [`camel_corpus`]) and `tokenizer` (a Hugging Face `tokenizer.json`; as an input,
//! the engine hashes its content, so the same tokenizer under another path reruns nothing).
//!
//! What it does, as CAMEL's tokenization script did:
//!
//! 1. Adds `anon_token` (`[ANON]`) to the tokenizer as a special token (LLaMA: id 32000), and
//!    replaces every `anon_marker` (`___`, MIMIC's de-identification mark) in each note with it.
//! 2. Shuffles the notes (`shuffle`, default true) with the permutation of [`pack::permutation`]
//!    seeded by `seed` (CAMEL shuffled without a seed; here it is recorded).
//! 3. Encodes each note with the tokenizer's post-processor (LLaMA prepends bos) and concatenates:
//!    `layout: camel` (default) is `[bos]`, then for each note its ids followed by `[eos, bos]`
//!    (so notes start with a doubled bos, as in CAMEL); `layout: clean` is each note's ids followed
//!    by `[eos]` (LLaMA: `bos ids eos`).
//! 4. Cuts the stream to a multiple of `block_size` (2,048) and drops the rest, reporting how many
//!    tokens were dropped.
//!
//! Outputs (names are a contract with the trainer; `docs/tokenize.md` documents the format):
//! `dataset` (the whole directory), `tokens` = `tokens.bin` (flat little-endian u16 when the
//! vocabulary fits, else u32; `blocks × block_size` ids), `meta` = `meta.json` ([`output::Meta`]),
//! `tokenizer` = `tokenizer.json` (the tokenizer with `[ANON]`, for the trainer to save with the
//! model), and with `parquet: true`, `blocks` = `blocks.parquet` (an `input_ids` list<int32> column).
//!
//! Scale: notes stream from the corpus in record batches (a reader thread decodes the next batch
//! while the rayon pool encodes this one); encoded ids are written in corpus order, so the output
//! does not depend on the thread count. With `shuffle`, ids first go to a scratch file with one
//! offset per note, then are copied in permuted order into `tokens.bin`: memory holds one batch of
//! notes and 12 bytes per note, never the whole corpus or all its ids. Note text is never logged.
//!
//! Speed: SentencePiece-style BPE tokenizers (LLaMA) encode through a copy split into words where
//! the tokenizer's merges prove that the ids cannot change (see `tok::split_tokenizer`); each
//! word's ids then come from a per-thread cache in front of the BPE model, without building an
//! `Encoding` (`tok::Loaded::encode_ids`). `cargo bench --workspace --bench tokenize` measures it
//! against Python (use `--workspace`: `-p camel-stages` resolves other features and rebuilds DuckDB).

mod output;
pub mod pack;
#[doc(hidden)]
pub mod testing;
mod tok;

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use camel_corpus::{Columns, CorpusError, CorpusReader};
use camel_engine::validate;
use camel_engine::{InputSpec, OutputSpec, Problem, Stage, StageContext, StageError, ValidateContext};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use output::{FORMAT, Meta};
use pack::Packer;

pub struct Tokenize;

/// How notes are joined into the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// CAMEL's: `[bos]`, then per note `ids eos bos` (ids start with bos: doubled bos).
    #[default]
    Camel,
    /// Per note `ids eos` (LLaMA: `bos ids eos`), nothing else.
    Clean,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeParams {
    /// Tokens per block.
    #[serde(default = "default_block_size")]
    #[schemars(range(min = 1, max = MAX_BLOCK_SIZE))]
    pub block_size: u64,
    #[serde(default)]
    pub layout: Layout,
    /// Shuffle the notes before packing them.
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Seed of the shuffle.
    #[serde(default)]
    pub seed: u64,
    /// The special token added to the tokenizer for anonymized spans; ignored in the loss.
    #[serde(default = "default_anon_token")]
    pub anon_token: String,
    /// The text replaced by `anon_token` before encoding (empty: replace nothing).
    #[serde(default = "default_anon_marker")]
    pub anon_marker: String,
    /// The beginning-of-sequence token (a special token of the tokenizer).
    #[serde(default = "default_bos")]
    pub bos: String,
    /// The end-of-sequence token (a special token of the tokenizer).
    #[serde(default = "default_eos")]
    pub eos: String,
    /// Also write `blocks.parquet` (one row per block) for `datasets.load_dataset("parquet")`.
    #[serde(default)]
    pub parquet: bool,
}

fn default_block_size() -> u64 {
    2048
}
fn yes() -> bool {
    true
}
fn default_anon_token() -> String {
    "[ANON]".into()
}
fn default_anon_marker() -> String {
    "___".into()
}
fn default_bos() -> String {
    "<s>".into()
}
fn default_eos() -> String {
    "</s>".into()
}

impl Default for TokenizeParams {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every param has a default")
    }
}

pub const CORPUS: &str = "corpus";
pub const TOKENIZER: &str = "tokenizer";
pub const TOKENS_FILE: &str = "tokens.bin";
pub const META_FILE: &str = "meta.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const PARQUET_FILE: &str = "blocks.parquet";
/// The largest `block_size` (a Parquet row group of blocks must stay below 2^31 values).
pub const MAX_BLOCK_SIZE: u64 = 1 << 20;

impl Stage for Tokenize {
    type Params = TokenizeParams;
    const KIND: &'static str = "tokenize";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "tokenize a notes corpus with a tokenizer.json and pack it into pretraining blocks (CAMEL's layout)";

    fn inputs(_p: &TokenizeParams) -> InputSpec {
        InputSpec::Named { required: vec![CORPUS.into(), TOKENIZER.into()], optional: vec![] }
    }

    fn outputs(p: &TokenizeParams) -> Vec<OutputSpec> {
        let mut o = vec![
            OutputSpec::dir("dataset", "."),
            OutputSpec::file("tokens", TOKENS_FILE),
            OutputSpec::file("meta", META_FILE),
            OutputSpec::file("tokenizer", TOKENIZER_FILE),
        ];
        if p.parquet {
            o.push(OutputSpec::file("blocks", PARQUET_FILE));
        }
        o
    }

    /// Encoding uses every core.
    fn exclusive(_p: &TokenizeParams) -> bool {
        true
    }

    fn validate(p: &TokenizeParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        validate::collect([
            validate::in_range(
                "block_size",
                p.block_size,
                1,
                Some(MAX_BLOCK_SIZE),
                "tokens per block; CAMEL used 2048",
            ),
            ctx.expect_file(
                TOKENIZER,
                "a tokenizer.json file",
                "point it at the tokenizer.json file inside the directory",
            ),
            ctx.expect_file(CORPUS, "the corpus.parquet file", "bind it to a notes stage's `corpus` output"),
        ])
    }

    fn run(p: &TokenizeParams, ctx: &StageContext) -> Result<(), StageError> {
        let obs = CtxObserver { ctx, start: Instant::now(), last: Mutex::new(None) };
        tokenize(p, ctx.input(CORPUS)?, ctx.input(TOKENIZER)?, ctx.out_dir(), ctx.scratch_dir(), &obs)?;
        Ok(())
    }
}

/// Where a run reports to; every method has a silent default.
pub trait Observer: Sync {
    /// The number of notes, from the corpus footer.
    fn total(&self, _notes: u64) {}
    /// Notes and tokens encoded so far.
    fn progress(&self, _notes: u64, _tokens: u64) {}
    /// A short status (never note text).
    fn message(&self, _msg: &str) {}
    /// A line for the stage's log (never note text).
    fn log(&self, _line: &str) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// An [`Observer`] that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

struct CtxObserver<'a> {
    ctx: &'a StageContext,
    start: Instant,
    last: Mutex<Option<Instant>>,
}

impl Observer for CtxObserver<'_> {
    fn total(&self, notes: u64) {
        self.ctx.progress().set_total(Some(notes), "notes");
    }
    fn progress(&self, notes: u64, tokens: u64) {
        self.ctx.progress().set_position(notes);
        // The bar shows notes/s; tokens/s goes in its message, twice a second at most.
        let now = Instant::now();
        let mut last = self.last.lock().unwrap();
        if last.is_none_or(|t| now.duration_since(t).as_millis() >= 500) {
            *last = Some(now);
            let secs = now.duration_since(self.start).as_secs_f64().max(1e-9);
            self.ctx.progress().message(&format!(
                "{:.1}M tokens, {:.0}k tokens/s",
                tokens as f64 / 1e6,
                tokens as f64 / secs / 1e3
            ));
        }
    }
    fn message(&self, msg: &str) {
        self.ctx.progress().message(msg);
    }
    fn log(&self, line: &str) {
        self.ctx.log(line);
    }
    fn cancelled(&self) -> bool {
        self.ctx.is_cancelled()
    }
}

fn validate(p: &TokenizeParams) -> Result<(), StageError> {
    if p.block_size == 0 || p.block_size > MAX_BLOCK_SIZE {
        return Err(StageError::msg(format!(
            "`block_size` must be between 1 and {MAX_BLOCK_SIZE} (CAMEL used 2048), not {}",
            p.block_size
        )));
    }
    if p.anon_token.is_empty() {
        return Err(StageError::msg("`anon_token` must not be empty (CAMEL used `[ANON]`)"));
    }
    Ok(())
}

/// Notes per record batch read from the corpus (and encoded in one parallel wave).
const BATCH_NOTES: usize = 2048;

/// Tokenizes `corpus` with `tokenizer` into `out_dir` (which must exist), using `scratch` for the
/// shuffle's temporary ids, on the current rayon pool.
pub fn tokenize(
    p: &TokenizeParams,
    corpus: &Path,
    tokenizer: &Path,
    out_dir: &Path,
    scratch: &Path,
    obs: &dyn Observer,
) -> Result<Meta, StageError> {
    validate(p)?;
    let started = Instant::now();
    let tok = tok::load(tokenizer, p)?;
    let tokenizer_json = tok
        .tokenizer
        .to_string(true)
        .map_err(|e| StageError::msg(format!("failed to serialize the tokenizer: {e}")))?;
    let tok_out = out_dir.join(TOKENIZER_FILE);
    std::fs::write(&tok_out, &tokenizer_json)
        .map_err(StageError::io(format!("write {}", tok_out.display())))?;
    obs.log(&format!(
        "tokenize: tokenizer {} (blake3 {}), vocabulary {} with {} = {}, bos {}, eos {}, {}, words split: {}, words cached: {}",
        tokenizer.display(),
        &tok.blake3[..16],
        tok.vocab_size,
        p.anon_token,
        tok.anon,
        tok.bos,
        tok.eos,
        tok.width.name(),
        tok.splits_words(),
        tok.caches_words()
    ));

    let reader =
        CorpusReader::open_with_batch_size(corpus, Columns::TextOnly, BATCH_NOTES).map_err(corpus_err)?;
    let notes = reader.rows();
    obs.total(notes);

    let tokens_path = out_dir.join(TOKENS_FILE);
    let out =
        File::create(&tokens_path).map_err(StageError::io(format!("create {}", tokens_path.display())))?;
    let packer = Packer::new(BufWriter::with_capacity(1 << 20, out), tok.width, p.layout, tok.bos, tok.eos)
        .map_err(StageError::io(format!("write {}", tokens_path.display())))?;

    // Without shuffling, notes go straight into the stream; with it, into a scratch file first.
    let (encoded, packer) = if p.shuffle {
        let tmp_path = scratch.join("ids.tmp");
        let tmp = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp_path)
            .map_err(StageError::io(format!("create {}", tmp_path.display())))?;
        let mut sink = Spool { out: BufWriter::with_capacity(1 << 20, tmp), offsets: vec![0] };
        let enc = encode_corpus(p, &tok, reader, &mut sink, obs)?;
        let Spool { out, offsets } = sink;
        let tmp = out
            .into_inner()
            .map_err(|e| StageError::io(format!("write {}", tmp_path.display()))(e.into_error()))?;
        obs.message("writing the notes in shuffled order");
        let packer = gather(p, &tmp, &tmp_path, &offsets, packer, obs)?;
        drop(tmp);
        let _ = std::fs::remove_file(&tmp_path);
        (enc, packer)
    } else {
        let mut sink = Direct(packer);
        let enc = encode_corpus(p, &tok, reader, &mut sink, obs)?;
        (enc, sink.0)
    };
    let (out, total) = packer.finish().map_err(StageError::io(format!("write {}", tokens_path.display())))?;
    let file = out
        .into_inner()
        .map_err(|e| StageError::io(format!("write {}", tokens_path.display()))(e.into_error()))?;
    let (blocks, dropped) = pack::blocks(total, p.block_size);
    file.set_len(blocks * p.block_size * tok.width.bytes() as u64)
        .map_err(StageError::io(format!("truncate {}", tokens_path.display())))?;
    drop(file);

    let parquet_file = if p.parquet {
        obs.message("writing blocks.parquet");
        let path = out_dir.join(PARQUET_FILE);
        output::write_parquet(&tokens_path, tok.width, p.block_size, blocks, &path, &|| obs.cancelled())?;
        Some(PARQUET_FILE.to_string())
    } else {
        None
    };

    let meta = Meta {
        format: FORMAT.into(),
        dtype: tok.width.name().into(),
        vocab_size: tok.vocab_size,
        block_size: p.block_size,
        blocks,
        tokens_total: total,
        tokens_dropped: dropped,
        notes: encoded.notes,
        bos_id: tok.bos,
        eos_id: tok.eos,
        added_tokens: tok.added_tokens(p),
        ignore_ids: vec![tok.anon],
        layout: p.layout,
        shuffle: p.shuffle,
        seed: p.seed,
        tokenizer_blake3: tok.blake3.clone(),
        tokenizer_json_blake3: blake3::hash(tokenizer_json.as_bytes()).to_hex().to_string(),
        anon_marker: p.anon_marker.clone(),
        anon_replaced: encoded.anon_replaced,
        tokens_file: TOKENS_FILE.into(),
        parquet_file,
    };
    output::write_meta(&out_dir.join(META_FILE), &meta)?;
    let secs = started.elapsed().as_secs_f64();
    obs.log(&format!(
        "tokenize: {} notes, {} tokens ({} in {} blocks of {}, {} dropped) in {secs:.1} s: {:.0} notes/s, {:.0} tokens/s",
        meta.notes,
        total,
        blocks * p.block_size,
        blocks,
        p.block_size,
        dropped,
        meta.notes as f64 / secs,
        total as f64 / secs
    ));
    Ok(meta)
}

fn corpus_err(e: CorpusError) -> StageError {
    StageError::Other(Box::new(e))
}

/// Where encoded notes go, in corpus order.
trait Sink {
    fn note(&mut self, encoded: &[u8]) -> std::io::Result<()>;
}

/// Straight into the stream (no shuffle).
struct Direct<W: Write>(Packer<W>);

impl<W: Write> Sink for Direct<W> {
    fn note(&mut self, encoded: &[u8]) -> std::io::Result<()> {
        self.0.note(encoded)
    }
}

/// Into a scratch file, remembering where each note starts (for the shuffle).
struct Spool {
    out: BufWriter<File>,
    offsets: Vec<u64>,
}

impl Sink for Spool {
    fn note(&mut self, encoded: &[u8]) -> std::io::Result<()> {
        self.out.write_all(encoded)?;
        let end = self.offsets.last().copied().unwrap_or(0) + encoded.len() as u64;
        self.offsets.push(end);
        Ok(())
    }
}

struct Encoded {
    notes: u64,
    anon_replaced: u64,
}

type Batch = Result<Vec<String>, CorpusError>;

/// Reads the corpus on a helper thread, encodes each batch on the rayon pool and hands the notes'
/// ids to `sink` in corpus order.
fn encode_corpus(
    p: &TokenizeParams,
    tok: &tok::Loaded,
    reader: CorpusReader,
    sink: &mut dyn Sink,
    obs: &dyn Observer,
) -> Result<Encoded, StageError> {
    let (tx, rx) = sync_channel::<Batch>(1);
    std::thread::scope(|s| {
        s.spawn(move || {
            for batch in reader {
                let texts = batch.map(|notes| notes.into_iter().map(|n| n.text).collect());
                if tx.send(texts).is_err() {
                    break; // the encoder stopped (error or cancellation)
                }
            }
        });
        encode_batches(p, tok, rx, sink, obs)
    })
}

fn encode_batches(
    p: &TokenizeParams,
    tok: &tok::Loaded,
    rx: Receiver<Batch>,
    sink: &mut dyn Sink,
    obs: &dyn Observer,
) -> Result<Encoded, StageError> {
    let mut done = Encoded { notes: 0, anon_replaced: 0 };
    let mut tokens = 0u64;
    for batch in rx {
        if obs.cancelled() {
            return Err(StageError::Cancelled);
        }
        let texts = batch.map_err(corpus_err)?;
        let first = done.notes;
        let encoded: Vec<(Vec<u8>, u64)> = texts
            .par_iter()
            .enumerate()
            .map(|(i, text)| encode_note(p, tok, text).map_err(|e| encode_err(first + i as u64, e)))
            .collect::<Result<_, _>>()?;
        for (bytes, anon) in &encoded {
            sink.note(bytes).map_err(StageError::io("write the encoded notes"))?;
            done.anon_replaced += anon;
            tokens += (bytes.len() / tok.width.bytes()) as u64;
        }
        done.notes += texts.len() as u64;
        obs.progress(done.notes, tokens);
    }
    Ok(done)
}

fn encode_err(note: u64, e: tokenizers::Error) -> StageError {
    StageError::msg(format!("failed to encode note {note} (0-based, in corpus order): {e}"))
}

/// One note's ids, as [`pack::Width`] bytes, and how many markers were replaced.
fn encode_note(
    p: &TokenizeParams,
    tok: &tok::Loaded,
    text: &str,
) -> Result<(Vec<u8>, u64), tokenizers::Error> {
    let (text, replaced) = anonymize(text, &p.anon_marker, &p.anon_token);
    let ids = tok.encode_ids(text.as_ref())?;
    let mut bytes = Vec::new();
    tok.width.extend(&mut bytes, &ids);
    Ok((bytes, replaced))
}

/// `text` with every `marker` replaced by `token` (leftmost first, not overlapping: `____` is
/// `[ANON]_`, as Python's `str.replace`).
pub fn anonymize<'t>(text: &'t str, marker: &str, token: &str) -> (Cow<'t, str>, u64) {
    if marker.is_empty() || !text.contains(marker) {
        return (Cow::Borrowed(text), 0);
    }
    let n = text.matches(marker).count() as u64;
    (Cow::Owned(text.replace(marker, token)), n)
}

/// Copies the spooled notes into the stream in the order of [`pack::permutation`].
fn gather<W: Write>(
    p: &TokenizeParams,
    tmp: &File,
    tmp_path: &Path,
    offsets: &[u64],
    mut packer: Packer<W>,
    obs: &dyn Observer,
) -> Result<Packer<W>, StageError> {
    let n = offsets.len() - 1;
    let perm = pack::permutation(n, p.seed);
    let mut buf = Vec::new();
    for (k, &i) in perm.iter().enumerate() {
        if k % 4096 == 0 && obs.cancelled() {
            return Err(StageError::Cancelled);
        }
        let (start, end) = (offsets[i as usize], offsets[i as usize + 1]);
        buf.resize((end - start) as usize, 0);
        tmp.read_exact_at(&mut buf, start).map_err(StageError::io(format!("read {}", tmp_path.display())))?;
        packer.note(&buf).map_err(StageError::io("write the shuffled notes"))?;
    }
    Ok(packer)
}

#[cfg(test)]
mod tests;
