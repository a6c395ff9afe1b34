//! Loading the tokenizer: a Hugging Face `tokenizer.json`, with the anonymization token added as a
//! special token, and the ids the packing needs (bos, eos, the added token, the vocabulary size).
//!
//! Error messages name the file and say what to do; they never quote the file's content beyond the
//! JSON parser's position (a notes file passed by mistake must not leak into a log).

use std::collections::BTreeMap;
use std::path::Path;

use camel_engine::StageError;
use tokenizers::{AddedToken, Tokenizer};

use super::TokenizeParams;
use super::pack::Width;

/// A tokenizer ready to encode notes.
pub struct Loaded {
    pub tokenizer: Tokenizer,
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
    Ok(Loaded { tokenizer, vocab_size, bos, eos, anon, blake3, width: Width::for_vocab(vocab_size) })
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
    #[test]
    fn scrub_drops_quoted_content() {
        assert_eq!(
            super::scrub("unknown variant `Patient X`, expected `BPE` at line 3 column 9"),
            "unknown variant `…`, expected `…` at line 3 column 9"
        );
        assert_eq!(super::scrub("invalid type: string \"note text"), "invalid type: string \"…");
    }
}
