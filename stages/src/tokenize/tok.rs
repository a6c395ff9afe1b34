//! Loading the tokenizer: a Hugging Face `tokenizer.json`, with the anonymization token added as a
//! special token, and the ids the packing needs (bos, eos, the added token, the vocabulary size).
//!
//! Error messages name the file and say what to do; they never quote the file's content beyond the
//! JSON parser's position (a notes file passed by mistake must not leak into a log).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use camel_engine::StageError;
use tokenizers::tokenizer::pattern::Pattern;
use tokenizers::{
    AddedToken, DecoderWrapper, Encoding, Model, ModelWrapper, NormalizerWrapper, OffsetReferential,
    OffsetType, Offsets, PostProcessorWrapper, PreTokenizedString, PreTokenizer, SplitDelimiterBehavior,
    Tokenizer, TokenizerImpl,
};

use super::TokenizeParams;
use super::pack::Width;

/// A tokenizer ready to encode notes.
pub struct Loaded {
    /// The input tokenizer with the added token: what `tokenizer.json` holds.
    pub tokenizer: Tokenizer,
    /// The same tokenizer, split into words where that provably changes no id ([`SpaceRuns`]),
    /// when it applies.
    split: Option<SplitTokenizer>,
    /// With `split`: the ids the post-processor puts around a text, for [`Loaded::encode_ids`].
    frame: Option<Frame>,
    /// Ids are below this (the model's vocabulary and the added tokens, [ANON] included).
    pub vocab_size: u64,
    pub bos: u32,
    pub eos: u32,
    /// The id of `anon_token`.
    pub anon: u32,
    /// blake3 of the input file's bytes.
    pub blake3: String,
    pub width: Width,
}

impl Loaded {
    /// Encodes one text with the post-processor (special tokens added).
    pub fn encode(&self, text: &str) -> tokenizers::Result<Encoding> {
        match &self.split {
            Some(t) => t.encode_fast(text, true),
            None => self.tokenizer.encode_fast(text, true),
        }
    }

    /// The ids of one text with the post-processor's (as `encode(text).get_ids()`). With the
    /// word-split tokenizer, each word's ids come from a per-thread cache in front of the BPE
    /// model, and no `Encoding` (token strings, offsets) is built.
    pub fn encode_ids(&self, text: &str) -> tokenizers::Result<Vec<u32>> {
        let (Some(t), Some(frame)) = (&self.split, &self.frame) else {
            return Ok(self.encode(text)?.get_ids().to_vec());
        };
        let mut pre = t.get_added_vocabulary().extract_and_normalize(t.get_normalizer(), text);
        t.get_pre_tokenizer().expect("the split tokenizer has its pre-tokenizer").pre_tokenize(&mut pre)?;
        let mut ids = frame.prefix.clone();
        WORDS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.owner != frame.owner {
                cache.owner = frame.owner;
                cache.ids.clear();
            }
            for (word, _, tokens) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
                if let Some(tokens) = tokens {
                    ids.extend(tokens.iter().map(|t| t.id)); // an added token
                } else if let Some(known) = cache.ids.get(word) {
                    ids.extend_from_slice(known);
                } else {
                    let new: Box<[u32]> = t.get_model().tokenize(word)?.iter().map(|t| t.id).collect();
                    ids.extend_from_slice(&new);
                    if cache.ids.len() >= WORD_CACHE_CAPACITY {
                        cache.ids.clear();
                    }
                    cache.ids.insert(word.into(), new);
                }
            }
            Ok::<_, tokenizers::Error>(())
        })?;
        ids.extend_from_slice(&frame.suffix);
        Ok(ids)
    }

    /// Whether [`Loaded::encode_ids`] takes the cached-words path.
    pub fn caches_words(&self) -> bool {
        self.split.is_some() && self.frame.is_some()
    }

    /// Whether the word-splitting fast path is used.
    pub fn splits_words(&self) -> bool {
        self.split.is_some()
    }

    /// The tokens added on top of the input file (the anonymization token), by content.
    pub fn added_tokens(&self, p: &TokenizeParams) -> BTreeMap<String, u32> {
        [(p.anon_token.clone(), self.anon)].into()
    }
}

/// Reads `path` and adds `p.anon_token` as a special token.
pub fn load(path: &Path, p: &TokenizeParams) -> Result<Loaded, StageError> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        StageError::msg(format!(
            "failed to read the tokenizer {shown}: {e}; the `tokenizer` input must be a Hugging Face tokenizer.json file"
        ))
    })?;
    if meta.is_dir() {
        return Err(StageError::msg(format!(
            "the tokenizer {shown} is a directory; point the `tokenizer` input at the tokenizer.json file inside it"
        )));
    }
    let bytes = std::fs::read(path).map_err(StageError::io(format!("read the tokenizer {shown}")))?;
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    let not_a_tokenizer = |why: String| {
        StageError::msg(format!(
            "{shown} is not a Hugging Face tokenizer.json ({why}); the `tokenizer` input must be the tokenizer.json \
             of a model (a SentencePiece tokenizer.model must be converted first, e.g. by saving \
             transformers' LlamaTokenizerFast)"
        ))
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(not_a_tokenizer("it is not a JSON object".into()));
    }
    let mut tokenizer = Tokenizer::from_bytes(&bytes).map_err(|e| not_a_tokenizer(scrub(&e.to_string())))?;

    let id = |name: &str, what: &str, param: &str| {
        tokenizer.token_to_id(name).ok_or_else(|| {
            StageError::msg(format!(
                "the tokenizer {shown} has no {what} token `{name}`; set the `{param}` param to the token it uses"
            ))
        })
    };
    let bos = id(&p.bos, "beginning-of-sequence", "bos")?;
    let eos = id(&p.eos, "end-of-sequence", "eos")?;
    tokenizer.add_special_tokens([AddedToken::from(p.anon_token.clone(), true)]).map_err(|e| {
        StageError::msg(format!("failed to add the token `{}` to the tokenizer {shown}: {e}", p.anon_token))
    })?;
    let anon = tokenizer.token_to_id(&p.anon_token).ok_or_else(|| {
        StageError::msg(format!("the tokenizer {shown} did not take the added token `{}`", p.anon_token))
    })?;
    let max_id = tokenizer.get_vocab(true).into_values().max().map_or(0, u64::from);
    let vocab_size = (tokenizer.get_vocab_size(true) as u64).max(max_id + 1);
    let split = split_tokenizer(&tokenizer, &bytes);
    let frame = split.as_ref().and_then(frame);
    Ok(Loaded {
        tokenizer,
        split,
        frame,
        vocab_size,
        bos,
        eos,
        anon,
        blake3,
        width: Width::for_vocab(vocab_size),
    })
}

/// Words cached per thread, for [`Loaded::encode_ids`] (a clinical corpus repeats its words).
const WORD_CACHE_CAPACITY: usize = 1 << 18;

struct WordIds {
    /// The [`Frame::owner`] the entries belong to (tokenizers differ between stages).
    owner: u64,
    ids: HashMap<Box<str>, Box<[u32]>>,
}

thread_local! {
    static WORDS: RefCell<WordIds> = RefCell::new(WordIds { owner: 0, ids: HashMap::new() });
}

/// What the post-processor adds around a single text (LLaMA's: bos before it).
struct Frame {
    prefix: Vec<u32>,
    suffix: Vec<u32>,
    /// Unique per loaded tokenizer in this process.
    owner: u64,
}

/// The post-processor's prefix and suffix ids, read off encodings of probe texts with and without
/// special tokens; `None` (no fast path) unless every probe is exactly prefix + ids + suffix.
fn frame(t: &SplitTokenizer) -> Option<Frame> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let probes = ["a", "Patient denies chest pain.\n"];
    let mut found: Option<(Vec<u32>, Vec<u32>)> = None;
    for probe in probes {
        let with = t.encode_fast(probe, true).ok()?.get_ids().to_vec();
        let without = t.encode_fast(probe, false).ok()?.get_ids().to_vec();
        let start =
            (0..=with.len().checked_sub(without.len())?).find(|&i| with[i..].starts_with(&without))?;
        let (prefix, suffix) = (with[..start].to_vec(), with[start + without.len()..].to_vec());
        match &found {
            Some(f) if *f != (prefix.clone(), suffix.clone()) => return None,
            _ => found = Some((prefix, suffix)),
        }
    }
    let (prefix, suffix) = found?;
    Some(Frame { prefix, suffix, owner: NEXT.fetch_add(1, Ordering::Relaxed) })
}

type SplitTokenizer =
    TokenizerImpl<ModelWrapper, NormalizerWrapper, SpaceRuns, PostProcessorWrapper, DecoderWrapper>;

/// SentencePiece-style BPE tokenizers converted to `tokenizer.json` (LLaMA 1 and 2, Mistral) have no
/// pre-tokenizer: each note (between added tokens) is one "word", merged as a whole, so the BPE
/// cache never helps and the merge queue spans the whole note. Cutting the normalized text before
/// each run of `▁` that follows another character, and around `\n`, changes no id when no merge
/// can cross those cuts: BPE merges (without dropout) only ever join adjacent symbols, so if no
/// merge joins a piece ending in a non-`▁` character to one starting with `▁`, and no merge
/// involves `\n` (or its byte-fallback token), the pieces evolve exactly as they do inside the whole
/// text, in the same rank order. This checks those conditions on the tokenizer's own merges and
/// returns the split tokenizer only when they hold (the Python reference test compares the ids).
fn split_tokenizer(tokenizer: &Tokenizer, json: &[u8]) -> Option<SplitTokenizer> {
    let ModelWrapper::BPE(bpe) = tokenizer.get_model() else { return None };
    if tokenizer.get_pre_tokenizer().is_some()
        || bpe.dropout.is_some_and(|d| d > 0.0)
        || bpe.ignore_merges
        || bpe.continuing_subword_prefix.is_some()
        || bpe.end_of_word_suffix.is_some()
    {
        return None;
    }
    // Unknown characters next to a cut would no longer fuse into one unk token; with a full set of
    // byte-fallback tokens there are no unknown characters.
    let vocab = tokenizer.get_vocab(false);
    let all_bytes = (0..=255u8).all(|b| vocab.contains_key(&format!("<0x{b:02X}>")));
    if bpe.fuse_unk && bpe.unk_token.is_some() && !(bpe.byte_fallback && all_bytes) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let merges = v.get("model")?.get("merges")?.as_array()?;
    let mut newline_safe = true;
    for m in merges {
        let (a, b) = match m {
            serde_json::Value::String(s) => s.split_once(' ')?,
            serde_json::Value::Array(p) if p.len() == 2 => (p[0].as_str()?, p[1].as_str()?),
            _ => return None,
        };
        if !a.ends_with(SPACE) && b.starts_with(SPACE) {
            return None;
        }
        if [a, b].iter().any(|s| s.contains('\n') || s.contains("<0x0A>")) {
            newline_safe = false;
        }
    }
    let mut t = SplitTokenizer::new(tokenizer.get_model().clone());
    t.with_normalizer(tokenizer.get_normalizer().cloned()).ok()?;
    t.with_pre_tokenizer(Some(SpaceRuns { newline: newline_safe }));
    t.with_post_processor(tokenizer.get_post_processor().cloned());
    t.with_decoder(tokenizer.get_decoder().cloned());
    t.with_added_vocabulary(tokenizer.get_added_vocabulary().clone());
    t.with_truncation(tokenizer.get_truncation().cloned()).ok()?;
    t.with_padding(tokenizer.get_padding().cloned());
    Some(t)
}

const SPACE: char = '\u{2581}';

/// The pre-tokenizer of [`split_tokenizer`]: cuts before each run of `▁` that follows another
/// character, and (`newline`) before and after each `\n`.
#[derive(Clone, Copy, Debug)]
pub struct SpaceRuns {
    newline: bool,
}

impl PreTokenizer for SpaceRuns {
    fn pre_tokenize(&self, pretokenized: &mut PreTokenizedString) -> tokenizers::Result<()> {
        pretokenized.split(|_, normalized| normalized.split(*self, SplitDelimiterBehavior::Isolated))
    }
}

impl Pattern for SpaceRuns {
    fn find_matches(&self, inside: &str) -> tokenizers::Result<Vec<(Offsets, bool)>> {
        let mut out = Vec::new();
        let (mut start, mut prev) = (0, None::<char>);
        for (i, c) in inside.char_indices() {
            let cut = match prev {
                None => false,
                Some(p) => (c == SPACE && p != SPACE) || (self.newline && (c == '\n' || p == '\n')),
            };
            if cut {
                out.push(((start, i), false));
                start = i;
            }
            prev = Some(c);
        }
        out.push(((start, inside.len()), false));
        Ok(out)
    }
}

/// A parser message without anything it quotes (`"…"` or `` `…` ``): only positions and kinds stay.
fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote = None;
    for c in msg.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                quote = Some(c);
            }
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push('…');
    }
    out.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_runs_cut_before_runs_and_around_newlines() {
        let cuts = |s: &str, newline: bool| -> Vec<String> {
            SpaceRuns { newline }
                .find_matches(s)
                .unwrap()
                .into_iter()
                .map(|((a, b), _)| s[a..b].to_string())
                .collect()
        };
        assert_eq!(cuts("▁a▁▁bc▁d▁", false), ["▁a", "▁▁bc", "▁d", "▁"]);
        assert_eq!(cuts("▁▁x\n\ny▁z", true), ["▁▁x", "\n", "\n", "y", "▁z"]);
        assert_eq!(cuts("▁▁x\n\ny▁z", false), ["▁▁x\n\ny", "▁z"]);
        assert_eq!(cuts("", true), [""]);
    }

    #[test]
    fn scrub_drops_quoted_content() {
        assert_eq!(
            scrub("unknown variant `Patient X`, expected `BPE` at line 3 column 9"),
            "unknown variant `…`, expected `…` at line 3 column 9"
        );
        assert_eq!(scrub("invalid type: string \"note text"), "invalid type: string \"…");
    }
}
