//! What a checkpoint's `generation_config.json` asks of decoding, as transformers' `generate`
//! reads it, for `camel generate` and the `answer` stage.
//!
//! transformers loads `generation_config.json` when the dir has one and then ignores `config.json`
//! for generation: the file's `eos_token_id` (an id or a list, LLaMA-3 Instruct's
//! `[<|end_of_text|>, <|eot_id|>]`) is what stops a sequence, and without the key nothing does.
//! Only a dir without the file falls back to `config.json`'s ids.
//!
//! camel passes its decoding explicitly, as `generate(do_sample=…, temperature=…, top_p=…,
//! num_beams=…, length_penalty=…, max_new_tokens=…)` would, so the file's values of those do not
//! apply (a `do_sample: true` in LLaMA-2's file does not make greedy decoding sample). The file's
//! other logits processors and stopping rules (`repetition_penalty`, `no_repeat_ngram_size`, …)
//! would change transformers' tokens, and camel does not implement them: a file that sets one
//! to a value that does something is refused, naming the key, rather than decoded differently
//! from transformers without a word. Sampling takes the file's `top_k` when the call sets none
//! (else transformers' default, 50); the other sampling-only filters (`typical_p`, `min_p`, …)
//! are not applied, and under `do_sample` a note says so.
//!
//! It lives here, without libtorch, so that the `answer` stage refuses such a file when the
//! pipeline is planned (the checkpoint dir on disk), with the worker's own check, instead of after
//! the stages before it and the weights have loaded.

use std::path::Path;

use serde_json::{Map, Value};

use crate::generate::{DEFAULT_TOP_K, GenParams};
use crate::model_config::LlamaConfig;
use crate::model_dir::GENERATION_CONFIG;

/// A `generation_config.json` camel cannot decode as transformers would.
#[derive(Debug, thiserror::Error)]
pub enum GenerationConfigError {
    #[error("failed to read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a JSON object", path.display())]
    NotAnObject { path: std::path::PathBuf },
    /// Every setting refused, each a sentence of its own.
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
}

/// A setting's key and a test of the value at which it does nothing.
type Setting = (&'static str, fn(&Value) -> bool);

/// Settings transformers' `generate` applies in every decoding mode, which camel does not
/// implement, with a test of the value at which they do nothing.
const UNSUPPORTED: &[Setting] = &[
    ("repetition_penalty", is_one),
    ("encoder_repetition_penalty", is_one),
    ("no_repeat_ngram_size", is_zero),
    ("min_length", is_zero),
    ("min_new_tokens", is_zero),
    ("bad_words_ids", is_empty),
    ("sequence_bias", is_empty),
    ("suppress_tokens", is_empty),
    ("begin_suppress_tokens", is_empty),
    ("forced_bos_token_id", Value::is_null),
    ("forced_eos_token_id", Value::is_null),
    ("exponential_decay_length_penalty", Value::is_null),
    ("guidance_scale", is_one),
    ("penalty_alpha", Value::is_null),
    ("dola_layers", Value::is_null),
    ("max_time", Value::is_null),
    ("stop_strings", is_empty),
    ("watermarking_config", Value::is_null),
];

/// Beam-search settings camel does not implement (it runs `early_stopping=False`, one group).
const UNSUPPORTED_BEAM: &[Setting] = &[
    ("early_stopping", |v| v.is_null() || v == &Value::Bool(false)),
    ("num_beam_groups", is_one),
    ("diversity_penalty", is_zero),
];

/// Sampling filters camel does not apply (it samples with temperature, top-k and top-p only).
const SAMPLING_ONLY: &[Setting] =
    &[("typical_p", is_one), ("min_p", Value::is_null), ("epsilon_cutoff", is_zero), ("eta_cutoff", is_zero)];

fn is_one(v: &Value) -> bool {
    v.is_null() || v.as_f64() == Some(1.0)
}
fn is_zero(v: &Value) -> bool {
    v.is_null() || v.as_f64() == Some(0.0)
}
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// Reads `generation_config.json` of `dir` (`None` when there is none).
pub fn read(dir: &Path) -> Result<Option<Map<String, Value>>, GenerationConfigError> {
    let path = dir.join(GENERATION_CONFIG);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(GenerationConfigError::Read { path, source }),
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(GenerationConfigError::NotAnObject { path }),
    }
}

/// Ids of an `eos_token_id` value (an id, a list of ids, or null).
fn ids(v: Option<&Value>) -> Vec<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// What `dir`'s `generation_config.json` makes camel refuse for decoding as `p` says (empty: it
/// decodes), each problem a line naming the file; what the stages report when the pipeline is
/// planned. `cfg` is the dir's config.json.
pub fn problems(dir: &Path, cfg: &LlamaConfig, p: &GenParams) -> Vec<String> {
    let path = dir.join(GENERATION_CONFIG);
    match read(dir).and_then(|file| resolve_with(file.as_ref(), cfg, p)) {
        Ok(_) => Vec::new(),
        Err(GenerationConfigError::Refused(all)) => {
            all.into_iter().map(|m| format!("{}: {m}", path.display())).collect()
        }
        Err(e) => vec![crate::error_chain(&e)],
    }
}

/// `p` with the checkpoint's eos ids (unless `p` names its own) and pad id filled in from the
/// dir's `generation_config.json` (`file`; else `cfg`), as transformers' `generate` takes them;
/// notes for the log; an error listing every setting transformers would apply that camel does
/// not implement, and a `top_k` that is not a whole number.
pub fn resolve_with(
    file: Option<&Map<String, Value>>,
    cfg: &LlamaConfig,
    p: &GenParams,
) -> Result<(GenParams, Vec<String>), GenerationConfigError> {
    let mut p = p.clone();
    let mut notes = Vec::new();
    let mut refused = Vec::new();
    if p.eos_ids.is_empty() {
        p.eos_ids = match file {
            Some(g) => {
                let eos = ids(g.get("eos_token_id"));
                if eos.is_empty() {
                    notes.push(format!(
                        "{GENERATION_CONFIG} has no eos_token_id: every sequence runs to max_new_tokens, as \
                         transformers' generate does with this file (config.json's eos is not used when the \
                         file exists)"
                    ));
                }
                eos
            }
            None => cfg.eos_token_ids(),
        };
    }
    if p.pad_id == 0 {
        let pad = file.and_then(|g| g.get("pad_token_id")).and_then(Value::as_i64);
        if let Some(pad) = pad.or_else(|| cfg.extra.get("pad_token_id").and_then(Value::as_i64)) {
            p.pad_id = pad;
        }
    }
    if p.top_k.is_none() {
        // transformers: the call's top_k, else the file's, else its global default.
        let file_k = file.and_then(|g| g.get("top_k")).filter(|v| !v.is_null());
        p.top_k = match file_k {
            None => Some(DEFAULT_TOP_K),
            Some(v) => match v.as_u64() {
                Some(k) => Some(k as usize),
                None => {
                    refused
                        .push(format!("{GENERATION_CONFIG} sets top_k {v}: a whole number ≥ 0 was expected"));
                    None
                }
            },
        };
    }
    if let Some(g) = file {
        let set = |list: &[Setting]| -> Vec<String> {
            list.iter()
                .filter_map(|(k, neutral)| g.get(*k).filter(|v| !neutral(v)).map(|v| format!("{k} {v}")))
                .collect()
        };
        let mut unsupported = set(UNSUPPORTED);
        if p.num_beams > 1 {
            unsupported.extend(set(UNSUPPORTED_BEAM));
        }
        if !unsupported.is_empty() {
            refused.push(format!(
                "{GENERATION_CONFIG} sets {}, which transformers' generate applies and camel's decoding does \
                 not implement; remove the setting (or set it to its neutral value) to decode without it",
                unsupported.join(", ")
            ));
        }
        if p.do_sample && p.num_beams <= 1 {
            let ignored = set(SAMPLING_ONLY);
            if !ignored.is_empty() {
                notes.push(format!(
                    "{GENERATION_CONFIG} sets {}: camel samples with temperature, top_k and top_p only, so \
                     these are not applied",
                    ignored.join(", ")
                ));
            }
        }
    }
    if !refused.is_empty() {
        return Err(GenerationConfigError::Refused(refused));
    }
    Ok((p, notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(eos: Value) -> LlamaConfig {
        LlamaConfig::from_value(json!({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
            "num_hidden_layers": 1, "num_attention_heads": 2, "eos_token_id": eos, "pad_token_id": 4}))
        .unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_files_eos_wins_over_config_json_and_its_absence_means_no_eos() {
        let p = GenParams::default();
        let (got, _) = resolve_with(Some(&obj(json!({"eos_token_id": [2, 7]}))), &cfg(json!(2)), &p).unwrap();
        assert_eq!((got.eos_ids, got.pad_id), (vec![2, 7], 4));
        let (got, _) = resolve_with(Some(&obj(json!({"eos_token_id": 2}))), &cfg(json!([2, 7])), &p).unwrap();
        assert_eq!(got.eos_ids, [2]);
        let (got, notes) = resolve_with(Some(&obj(json!({"pad_token_id": 3}))), &cfg(json!(2)), &p).unwrap();
        assert_eq!((got.eos_ids.len(), got.pad_id), (0, 3));
        assert!(notes[0].contains("no eos_token_id"), "{notes:?}");
        let (got, _) = resolve_with(None, &cfg(json!([2, 7])), &p).unwrap();
        assert_eq!(got.eos_ids, [2, 7]);
        // The job's own ids stand.
        let own = GenParams { eos_ids: vec![5], ..GenParams::default() };
        let (got, _) = resolve_with(Some(&obj(json!({"eos_token_id": [2]}))), &cfg(json!(2)), &own).unwrap();
        assert_eq!(got.eos_ids, [5]);
    }

    #[test]
    fn settings_camel_does_not_implement_are_refused_or_noted() {
        let p = GenParams::default();
        let g = obj(json!({"repetition_penalty": 1.3, "no_repeat_ngram_size": 2, "top_k": 50,
                           "do_sample": true, "temperature": 0.6}));
        let e = format!("{:#}", resolve_with(Some(&g), &cfg(json!(2)), &p).unwrap_err());
        assert!(e.contains("repetition_penalty 1.3") && e.contains("no_repeat_ngram_size 2"), "{e}");
        // Neutral values, and the settings camel passes explicitly, are fine.
        let g = obj(
            json!({"eos_token_id": 2, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": null,
                           "do_sample": true, "temperature": 0.6, "top_p": 0.9, "top_k": 50,
                           "early_stopping": true}),
        );
        let (_, notes) = resolve_with(Some(&g), &cfg(json!(2)), &p).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let beams = GenParams { num_beams: 4, ..GenParams::default() };
        let e = format!("{:#}", resolve_with(Some(&g), &cfg(json!(2)), &beams).unwrap_err());
        assert!(e.contains("early_stopping true"), "{e}");
        let sample = GenParams { do_sample: true, ..GenParams::default() };
        let (_, notes) = resolve_with(Some(&g), &cfg(json!(2)), &sample).unwrap();
        assert!(notes.is_empty(), "top_k is applied: {notes:?}");
        let mut typical = g.clone();
        typical.insert("typical_p".into(), json!(0.9));
        let (_, notes) = resolve_with(Some(&typical), &cfg(json!(2)), &sample).unwrap();
        assert!(notes.iter().any(|n| n.contains("typical_p 0.9")), "{notes:?}");
    }

    #[test]
    fn top_k_is_the_calls_else_the_files_else_fifty_as_in_transformers() {
        let k = |file: Option<Value>, call: Option<usize>| {
            let p = GenParams { do_sample: true, top_k: call, ..GenParams::default() };
            let file = file.map(obj);
            resolve_with(file.as_ref(), &cfg(json!(2)), &p).map(|(p, _)| p.top_k)
        };
        assert_eq!(k(None, None).unwrap(), Some(50));
        assert_eq!(k(Some(json!({"eos_token_id": 2})), None).unwrap(), Some(50));
        assert_eq!(k(Some(json!({"top_k": null})), None).unwrap(), Some(50));
        assert_eq!(k(Some(json!({"top_k": 20})), None).unwrap(), Some(20));
        assert_eq!(k(Some(json!({"top_k": 0})), None).unwrap(), Some(0));
        assert_eq!(k(Some(json!({"top_k": 20})), Some(3)).unwrap(), Some(3));
        assert_eq!(k(None, Some(0)).unwrap(), Some(0));
        let e = format!("{:#}", k(Some(json!({"top_k": -1})), None).unwrap_err());
        assert!(e.contains("top_k -1"), "{e}");
    }

    /// The check the `answer` stage runs when the pipeline is planned: every refused setting of
    /// the file on disk, each naming the file; nothing for a dir without one.
    #[test]
    fn problems_name_the_file_and_every_refused_setting() {
        let d = crate::testing::TempDir::new("genconfig");
        let dir = &d.0;
        let greedy = GenParams::default();
        assert!(problems(dir, &cfg(json!(2)), &greedy).is_empty(), "no file");
        let path = dir.join(GENERATION_CONFIG);
        std::fs::write(
            &path,
            json!({"top_k": 2.5, "repetition_penalty": 1.2, "early_stopping": true}).to_string(),
        )
        .unwrap();
        let p = problems(dir, &cfg(json!(2)), &greedy);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().all(|m| m.starts_with(&path.display().to_string())), "{p:?}");
        assert!(p[0].contains("top_k 2.5") && p[1].contains("repetition_penalty 1.2"), "{p:?}");
        assert!(!p[1].contains("early_stopping"), "greedy decoding has no beams: {p:?}");
        // The call's top_k wins over the file's, as in transformers; beams add early_stopping.
        let beams = GenParams { top_k: Some(5), num_beams: 5, ..GenParams::default() };
        let p = problems(dir, &cfg(json!(2)), &beams);
        assert!(p.len() == 1 && p[0].contains("early_stopping true"), "{p:?}");
        std::fs::write(&path, "[1]").unwrap();
        assert!(problems(dir, &cfg(json!(2)), &greedy)[0].contains("is not a JSON object"));
    }
}
