//! Instruction fine-tuning data, as Stanford Alpaca's `train.py` (which CAMEL used) prepares it:
//! prompt = the template with `{instruction}` (and `{input}` when the record has one), target =
//! output + eos; the example is tokenized with the tokenizer's post-processor (bos first),
//! truncated at `max_length`, and the prompt's tokens are -100 in the labels. Batches are right
//! padded with the pad token. A tokenizer without a pad token gets `pad_token` added, and the
//! model's new rows are the mean of the old ones (Alpaca's `smart_tokenizer_and_embedding_resize`).

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use camel_torch_job::model_dir::{TOKENIZER, TokenizerUse, missing_tokenizer};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use tch::Tensor;
use tokenizers::{AddedToken, Tokenizer};

use crate::examples::{Batch, Examples};
use crate::job::{Job, Task, TrainParams};
use crate::parallel::Dist;
use crate::train::{self, Event, Summary};

#[derive(Debug, Deserialize)]
pub struct Record {
    pub instruction: String,
    #[serde(default)]
    pub input: String,
    pub output: String,
}

/// Tokenized examples: ids and labels of equal length.
pub struct Sft {
    pub examples: Vec<(Vec<i64>, Vec<i64>)>,
    pub pad_id: i64,
}

pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
    let records: Vec<Record> = serde_json::from_str(&text).with_context(|| {
        format!("{} is not a JSON list of {{instruction, input, output}} records", path.display())
    })?;
    ensure!(!records.is_empty(), "{} holds no record", path.display());
    Ok(records)
}

/// Fills a template's `{instruction}` and `{input}` in one pass, as Python's `format_map` does
/// (text inserted for one placeholder is never scanned for another).
pub fn prompt(p: &TrainParams, r: &Record) -> String {
    let t = if r.input.is_empty() { &p.prompt_no_input } else { &p.prompt_input };
    let mut out = String::with_capacity(t.len() + r.instruction.len() + r.input.len());
    let mut rest = t.as_str();
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(v) = tail.strip_prefix("{instruction}") {
            out.push_str(&r.instruction);
            rest = v;
        } else if let Some(v) = tail.strip_prefix("{input}") {
            out.push_str(&r.input);
            rest = v;
        } else {
            out.push('{');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// The eos token fine-tuning appends, as Alpaca appends `tokenizer.eos_token`: the one
/// `tokenizer_config.json` / `special_tokens_map.json` name, else the text of `config.json`'s
/// first eos id (a tokenizer without any: Alpaca would add `</s>`, which would not be an eos the
/// model stops at).
pub fn eos_token(model_dir: &Path, tok: &Tokenizer, cfg: &crate::config::LlamaConfig) -> Result<String> {
    if let Some(t) = crate::hf_files::configured_token(model_dir, "eos_token") {
        ensure!(
            tok.token_to_id(&t).is_some(),
            "the tokenizer's eos_token {t:?} ({}) is not a token of its tokenizer.json",
            crate::hf_files::TOKENIZER_CONFIG
        );
        return Ok(t);
    }
    let id = *cfg.eos_token_ids().first().context(
        "the tokenizer names no eos_token and the model config has no eos_token_id: fine-tuning appends eos",
    )?;
    tok.id_to_token(id as u32).with_context(|| format!("the tokenizer has no token for eos id {id}"))
}

/// Tokenizes every record: (ids, labels with the prompt masked), truncated at `max_length`; `eos`
/// is appended to each output as text ([`eos_token`]).
pub fn tokenize(
    tok: &Tokenizer,
    records: &[Record],
    p: &TrainParams,
    eos: &str,
) -> Result<Vec<(Vec<i64>, Vec<i64>)>> {
    Ok(tokenize_with_lengths(tok, records, p, eos)?.into_iter().map(|(x, y, _)| (x, y)).collect())
}

/// A tokenized record: input ids, labels (-100 on the prompt), and its length before truncation.
pub type Tokenized = (Vec<i64>, Vec<i64>, usize);

/// As [`tokenize`], with each record's length before truncation (for advice on `max_length`).
pub fn tokenize_with_lengths(
    tok: &Tokenizer,
    records: &[Record],
    p: &TrainParams,
    eos: &str,
) -> Result<Vec<Tokenized>> {
    records
        .par_iter()
        .enumerate()
        .map(|(i, r)| {
            let source = prompt(p, r);
            let full = format!("{source}{}{eos}", r.output);
            let enc = |s: &str| -> Result<Vec<i64>> {
                let e = tok
                    .encode(s, true)
                    .map_err(|e| anyhow::anyhow!("record {i}: tokenization failed: {e}"))?;
                Ok(e.get_ids().iter().map(|&x| x as i64).collect())
            };
            let mut ids = enc(&full)?;
            let whole = ids.len();
            let source_len = enc(&source)?.len();
            ids.truncate(p.max_length);
            let labels =
                ids.iter().enumerate().map(|(j, &id)| if j < source_len { -100 } else { id }).collect();
            Ok((ids, labels, whole))
        })
        .collect()
}

impl Examples for Sft {
    fn len(&self) -> usize {
        self.examples.len()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        let t = indices.iter().map(|&i| self.examples[i].0.len()).max().unwrap_or(1);
        let mut ids = Vec::with_capacity(indices.len() * t);
        let mut labels = Vec::with_capacity(indices.len() * t);
        let mut tokens = 0;
        for &i in indices {
            let (x, y) = &self.examples[i];
            tokens += x.len() as i64;
            ids.extend_from_slice(x);
            ids.extend(std::iter::repeat_n(self.pad_id, t - x.len()));
            labels.extend_from_slice(y);
            labels.extend(std::iter::repeat_n(-100, t - y.len()));
        }
        let b = indices.len() as i64;
        Batch {
            ids: Tensor::from_slice(&ids).view([b, t as i64]),
            labels: Tensor::from_slice(&labels).view([b, t as i64]),
            tokens,
        }
    }

    fn lengths(&self) -> Option<Vec<usize>> {
        Some(self.examples.iter().map(|(x, _)| x.len()).collect())
    }
}

/// The embedding sized to the tokenizer as Alpaca's `smart_tokenizer_and_embedding_resize` does
/// ([`crate::model::Llama::alpaca_resize`]: to `len(tokenizer)`, the `num_new` tokens just added
/// mean-initialised). Rows beyond the model's vocabulary may only be tokens the tokenizer added
/// (`[ANON]`, `[PAD]`), as pretraining's `fit_vocab_to_tokens` requires: a tokenizer.json of another
/// model fails here instead of growing the model by real tokens.
pub fn fit_vocab_to_tokenizer(
    model: &mut crate::model::Llama,
    tok: &Tokenizer,
    num_new: i64,
    report: &mut dyn FnMut(Event),
) -> Result<()> {
    let have = model.cfg.vocab_size;
    let want = tok.get_vocab_size(true) as i64;
    let top = tok.get_vocab(true).into_values().max().map_or(0, |id| id as i64 + 1);
    ensure!(
        top <= want,
        "the tokenizer has {want} tokens but ids up to {}: camel cannot size the embedding to it",
        top - 1
    );
    if want > have {
        let added: Vec<i64> = tok.get_added_tokens_decoder().into_keys().map(i64::from).collect();
        let missing: Vec<i64> = (have..want).filter(|id| !added.contains(id)).collect();
        ensure!(
            missing.is_empty(),
            "the tokenizer has {want} tokens but the model's vocabulary (config.json vocab_size) is {have}, and \
             ids {:?}… are not tokens the tokenizer added: is tokenizer.json this model's?",
            &missing[..missing.len().min(5)]
        );
    }
    if want != have || num_new > 0 {
        report(Event::Log(&format!(
            "resizing the vocabulary from {have} to {want} rows as Alpaca (len(tokenizer); {num_new} new token(s) \
             set to the mean of the rows before them)"
        )));
    }
    model.alpaca_resize(want, num_new)
}

/// Runs a fine-tuning job end to end.
pub fn run_finetune(job: &Job, report: &mut dyn FnMut(Event)) -> Result<Summary> {
    finetune(job, report).map_err(|e| crate::parallel::rank_context(e, &job.params))
}

fn finetune(job: &Job, report: &mut dyn FnMut(Event)) -> Result<Summary> {
    ensure!(job.task == Task::Finetune, "not a fine-tuning job");
    let p = &job.params;
    let model_dir = job.model.as_ref().context("a fine-tuning job needs a `model` checkpoint dir")?;
    let data = job.data.as_ref().context("a fine-tuning job needs `data` (Alpaca-style JSON)")?;
    if let Some(m) = missing_tokenizer(model_dir, TokenizerUse::Finetune) {
        bail!(m);
    }
    let tok_path = model_dir.join(TOKENIZER);
    let mut tok = Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("{} is not a tokenizer: {e}", tok_path.display()))?;
    let records = read_records(data)?;

    let (dist, device) = Dist::from_env(p)?;
    let (mut model, stored_kind) = train::initial_model(job, device)?;
    let eos = eos_token(model_dir, &tok, &model.cfg)?;

    // The pad token: configured, or an added token of that name, or added now.
    let pad_name =
        crate::hf_files::configured_token(model_dir, "pad_token").unwrap_or_else(|| p.pad_token.clone());
    let mut num_new = 0;
    let pad_id = match tok.token_to_id(&pad_name) {
        Some(id) => id as i64,
        None => {
            tok.add_special_tokens([AddedToken::from(pad_name.clone(), true)])
                .map_err(|e| anyhow::anyhow!("adding the pad token {pad_name:?}: {e}"))?;
            let id = tok.token_to_id(&pad_name).context("adding the pad token failed")? as i64;
            report(Event::Log(&format!("added pad token {pad_name:?} as id {id}")));
            num_new = 1;
            id
        }
    };
    fit_vocab_to_tokenizer(&mut model, &tok, num_new, report)?;
    ensure!(pad_id < model.cfg.vocab_size, "pad id {pad_id} is beyond the model's vocabulary");
    model.cfg.extra.insert("pad_token_id".into(), Value::from(pad_id));

    let tokenized = tokenize_with_lengths(&tok, &records, p, &eos)?;
    let lengths: Vec<usize> = tokenized.iter().map(|t| t.2).collect();
    let examples: Vec<(Vec<i64>, Vec<i64>)> = tokenized.into_iter().map(|(x, y, _)| (x, y)).collect();
    let kept = examples.iter().filter(|(_, y)| y.iter().any(|&l| l != -100)).count();
    if kept < examples.len() {
        report(Event::Log(&format!(
            "{} of {} records have no response token left after truncation at {} tokens; {}",
            examples.len() - kept,
            examples.len(),
            p.max_length,
            max_length_advice(&lengths)
        )));
    }
    if kept == 0 {
        bail!(
            "every record's response is cut off by max_length {}; {}",
            p.max_length,
            max_length_advice(&lengths)
        );
    }
    let save_kind = train::save_kind(p, stored_kind)?;
    let sft = Sft { examples, pad_id };
    // Held-out records: the same prompts, truncation and tokenizer (with the pad token) as the
    // training records.
    let eval_set = match &job.eval {
        Some(path) => {
            let records = read_records(path)?;
            let examples =
                tokenize_with_lengths(&tok, &records, p, &eos)?.into_iter().map(|(x, y, _)| (x, y));
            Some(Sft { examples: examples.collect(), pad_id })
        }
        None => None,
    };
    // The tokenizer (with the pad token) goes beside the weights, over the base model's copy.
    // Only rank 0 writes outputs, so only it writes this file.
    let tok_dir = job.scratch_dir.join("tokenizer");
    std::fs::create_dir_all(&tok_dir)?;
    if dist.is_main() {
        tok.save(tok_dir.join("tokenizer.json"), false)
            .map_err(|e| anyhow::anyhow!("failed to save the tokenizer: {e}"))?;
    }
    if dist.is_main()
        && let Ok(text) = std::fs::read_to_string(model_dir.join("tokenizer_config.json"))
        && let Ok(mut v) = serde_json::from_str::<Value>(&text)
    {
        v["pad_token"] = Value::from(pad_name.clone());
        std::fs::write(tok_dir.join("tokenizer_config.json"), serde_json::to_string_pretty(&v)?)?;
    }
    let eval_set = eval_set.as_ref().map(|e| e as &dyn crate::examples::Examples);
    let summary = train::train(job, model, save_kind, &sft, eval_set, &[model_dir, &tok_dir], dist, report)?;
    Ok(summary)
}

/// Which `max_length` keeps which share of the records whole (prompt, response and end token):
/// "max_length 310 keeps 50% of the records whole, 840 keeps 90%, 1210 keeps all".
pub fn max_length_advice(lengths: &[usize]) -> String {
    if lengths.is_empty() {
        return "there are no records".into();
    }
    let mut v = lengths.to_vec();
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    let mut parts = Vec::new();
    for (q, what) in [(0.5, "50%"), (0.9, "90%"), (0.99, "99%")] {
        let l = at(q);
        if parts.last().is_none_or(|(prev, _): &(usize, String)| *prev < l) && l < v[v.len() - 1] {
            parts.push((l, format!("{what} of the records whole")));
        }
    }
    parts.push((v[v.len() - 1], "all of them".into()));
    let text: Vec<String> = parts
        .iter()
        .enumerate()
        .map(
            |(i, (l, w))| if i == 0 { format!("max_length {l} keeps {w}") } else { format!("{l} keeps {w}") },
        )
        .collect();
    text.join(", ")
}

#[cfg(test)]
mod tests {
    use super::max_length_advice;

    #[test]
    fn max_length_advice_names_lengths_that_keep_shares_of_the_records() {
        let lengths: Vec<usize> = (1..=100).map(|i| i * 10).collect();
        assert_eq!(
            max_length_advice(&lengths),
            "max_length 500 keeps 50% of the records whole, 900 keeps 90% of the records whole, \
             990 keeps 99% of the records whole, 1000 keeps all of them"
        );
        assert_eq!(max_length_advice(&[7, 7, 7]), "max_length 7 keeps all of them");
    }
}
