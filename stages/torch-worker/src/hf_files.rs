//! The files transformers' `save_pretrained` writes beside the weights and `tokenizer.json`, so
//! that the model dirs of `pretrain` and `finetune` drop into the Hugging Face ecosystem:
//! `AutoTokenizer.from_pretrained` knows bos, eos, unk and pad and the added tokens (`[ANON]`,
//! `[PAD]`) and can pad a batch, and `pipeline("text-generation")` finds the generation defaults.
//!
//! Everything is derived from the dir's `config.json` (the bos/eos/pad ids, the context length)
//! and `tokenizer.json` (the tokens of those ids, the added tokens), written over the base model's
//! files when it had them (copied into the dir first), so that a base's own settings — its
//! tokenizer class, a chat template, sampling defaults — are kept. The files use the layout
//! transformers 4.x writes (`added_tokens_decoder`, `special_tokens_map.json`), which 4.x and 5.x
//! both read.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value, json};
use tokenizers::{AddedToken, Tokenizer};

use crate::config::LlamaConfig;

pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
pub const SPECIAL_TOKENS_MAP: &str = "special_tokens_map.json";
pub use camel_torch_job::model_dir::GENERATION_CONFIG;

/// Writes `generation_config.json`, and `tokenizer_config.json` and `special_tokens_map.json`
/// when the dir has a `tokenizer.json`, for the model config `cfg` saved in `dir`.
pub fn write(dir: &Path, cfg: &LlamaConfig) -> Result<()> {
    write_generation_config(dir, cfg)?;
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Ok(());
    }
    let tok = Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("{} is not a tokenizer: {e}", tok_path.display()))?;
    let raw: Value = serde_json::from_str(&std::fs::read_to_string(&tok_path)?)
        .with_context(|| format!("{} is not JSON", tok_path.display()))?;
    let specials = Specials::of(dir, &tok, &raw, cfg);
    write_tokenizer_config(dir, &tok, &specials, cfg)?;
    write_special_tokens_map(dir, &specials)
}

/// A JSON object file of the dir (the base's copy), or an empty object.
fn read_object(path: &Path) -> Result<Map<String, Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(Value::Object(m)) => Ok(m),
            _ => anyhow::bail!("{} is not a JSON object", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
}

fn write_object(path: &Path, m: Map<String, Value>) -> Result<()> {
    let text = serde_json::to_string_pretty(&Value::Object(m))? + "\n";
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// The generation defaults transformers derives from a model config (`_from_model_config`), or a
/// base's file with its bos and eos ids as they were (what `save_pretrained` of the loaded base
/// writes: LLaMA-3 Instruct's file stops at `<|eot_id|>` too, which its config.json does not name)
/// and the config's pad id (fine-tuning adds one).
fn write_generation_config(dir: &Path, cfg: &LlamaConfig) -> Result<()> {
    let path = dir.join(GENERATION_CONFIG);
    let mut g = read_object(&path)?;
    if g.is_empty() {
        g.insert("_from_model_config".into(), Value::Bool(true));
    }
    for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        let based = key != "pad_token_id" && g.get(key).is_some_and(|v| !v.is_null());
        if let Some(v) = cfg.extra.get(key).filter(|v| !v.is_null() && !based) {
            g.insert(key.into(), v.clone());
        }
    }
    write_object(&path, g)
}

/// The text of special token `key` (`eos_token`, `pad_token`, …) that `dir`'s
/// `tokenizer_config.json` or `special_tokens_map.json` names (a string or `{content}`), as
/// `AutoTokenizer` reads it; `None` when neither does.
pub fn configured_token(dir: &Path, key: &str) -> Option<String> {
    for f in [TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP] {
        let Ok(text) = std::fs::read_to_string(dir.join(f)) else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
        match &v[key] {
            Value::String(s) => return Some(s.clone()),
            Value::Object(o) => {
                if let Some(s) = o.get("content").and_then(Value::as_str) {
                    return Some(s.to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// The special tokens' texts; `None` where the model has none (a pretrained model has no pad).
struct Specials {
    bos: Option<String>,
    eos: Option<String>,
    unk: Option<String>,
    pad: Option<String>,
}

impl Specials {
    /// A base's bos, eos and unk (in `dir`'s copies of its tokenizer files) stand: they are the
    /// tokens its tokenizer and fine-tuning use (a config.json may list several eos ids, the
    /// tokenizer's eos being one of them). Where it named none, they come from the config's ids;
    /// the pad is always the config's (fine-tuning sets it).
    fn of(dir: &Path, tok: &Tokenizer, raw: &Value, cfg: &LlamaConfig) -> Specials {
        let text = |id: Option<i64>| id.and_then(|i| u32::try_from(i).ok()).and_then(|i| tok.id_to_token(i));
        let based = |key: &str| configured_token(dir, key);
        Specials {
            bos: based("bos_token").or_else(|| text(cfg.bos_token_id())),
            eos: based("eos_token").or_else(|| text(cfg.eos_token_ids().first().copied())),
            // The model's unknown token (BPE and Unigram name it).
            unk: based("unk_token").or_else(|| {
                raw["model"]["unk_token"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| raw["model"]["unk_id"].as_i64().and_then(|i| text(Some(i))))
            }),
            pad: text(cfg.extra.get("pad_token_id").and_then(Value::as_i64)),
        }
    }
}

/// An added token as transformers writes it.
fn added_token_json(t: &AddedToken) -> Value {
    json!({"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
           "single_word": t.single_word, "special": t.special})
}

fn write_tokenizer_config(dir: &Path, tok: &Tokenizer, s: &Specials, cfg: &LlamaConfig) -> Result<()> {
    let path = dir.join(TOKENIZER_CONFIG);
    let mut c = read_object(&path)?;
    let mut added: Vec<(u32, AddedToken)> = tok.get_added_tokens_decoder().into_iter().collect();
    added.sort_by_key(|(id, _)| *id);
    let decoder: Map<String, Value> =
        added.iter().map(|(id, t)| (id.to_string(), added_token_json(t))).collect();
    c.insert("added_tokens_decoder".into(), Value::Object(decoder));
    for (key, v) in
        [("bos_token", &s.bos), ("eos_token", &s.eos), ("unk_token", &s.unk), ("pad_token", &s.pad)]
    {
        match v {
            Some(t) => {
                c.insert(key.into(), Value::from(t.as_str()));
            }
            // A base's setting stands; else transformers writes null.
            None => {
                c.entry(key).or_insert(Value::Null);
            }
        }
    }
    c.entry("model_max_length").or_insert(Value::from(cfg.max_position_embeddings));
    // The fast tokenizer over tokenizer.json as it is (its normalizer, post-processor and added
    // tokens), unless the base named its own class.
    c.entry("tokenizer_class").or_insert(Value::from("PreTrainedTokenizerFast"));
    c.entry("clean_up_tokenization_spaces").or_insert(Value::Bool(false));
    write_object(&path, c)
}

fn write_special_tokens_map(dir: &Path, s: &Specials) -> Result<()> {
    let path = dir.join(SPECIAL_TOKENS_MAP);
    let mut m = read_object(&path)?;
    for (key, v) in
        [("bos_token", &s.bos), ("eos_token", &s.eos), ("unk_token", &s.unk), ("pad_token", &s.pad)]
    {
        if let Some(t) = v {
            m.insert(
                key.into(),
                json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}),
            );
        }
    }
    write_object(&path, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A word-level tokenizer with `<unk>`, `<s>`, `</s>` and an added `[ANON]`.
    fn tokenizer_json() -> String {
        json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
                {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 5, "content": "[ANON]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3, "b": 4, "[ANON]": 5},
                      "unk_token": "<unk>"}
        })
        .to_string()
    }

    fn cfg(extra: Value) -> LlamaConfig {
        let mut v = json!({"vocab_size": 6, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "max_position_embeddings": 64});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        LlamaConfig::from_value(v).unwrap()
    }

    fn read(dir: &Path, f: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).unwrap()).unwrap()
    }

    #[test]
    fn a_pretrained_dir_names_its_specials_and_added_tokens_without_a_pad() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("tokenizer.json"), tokenizer_json()).unwrap();
        write(d, &cfg(json!({}))).unwrap();
        let c = read(d, TOKENIZER_CONFIG);
        assert_eq!(
            (&c["bos_token"], &c["eos_token"], &c["unk_token"]),
            (&json!("<s>"), &json!("</s>"), &json!("<unk>"))
        );
        assert_eq!(c["pad_token"], Value::Null);
        assert_eq!(c["model_max_length"], 64);
        assert_eq!(c["added_tokens_decoder"]["5"]["content"], "[ANON]");
        assert_eq!(c["added_tokens_decoder"]["5"]["special"], true);
        let m = read(d, SPECIAL_TOKENS_MAP);
        assert_eq!(m["eos_token"]["content"], "</s>");
        assert!(m.get("pad_token").is_none());
        let g = read(d, GENERATION_CONFIG);
        assert_eq!((&g["bos_token_id"], &g["eos_token_id"]), (&json!(1), &json!(2)));
        assert!(g.get("pad_token_id").is_none());
    }

    #[test]
    fn a_base_models_settings_are_kept_and_the_pad_is_the_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("tokenizer.json"), tokenizer_json()).unwrap();
        std::fs::write(
            d.join(TOKENIZER_CONFIG),
            json!({"tokenizer_class": "LlamaTokenizer", "model_max_length": 4096, "chat_template": "x"})
                .to_string(),
        )
        .unwrap();
        std::fs::write(
            d.join(GENERATION_CONFIG),
            json!({"temperature": 0.6, "eos_token_id": [2, 9], "bos_token_id": null}).to_string(),
        )
        .unwrap();
        write(d, &cfg(json!({"pad_token_id": 5, "eos_token_id": [1, 2]}))).unwrap();
        let c = read(d, TOKENIZER_CONFIG);
        // No eos_token in the base's file: the config's first eos id's text.
        assert_eq!(c["eos_token"], "<s>");
        assert_eq!(
            (&c["tokenizer_class"], &c["model_max_length"], &c["chat_template"]),
            (&json!("LlamaTokenizer"), &json!(4096), &json!("x"))
        );
        assert_eq!(c["pad_token"], "[ANON]");
        let g = read(d, GENERATION_CONFIG);
        // The base's eos ids stand (config.json's [2, 1] is not what its generate stops at); its
        // missing bos is the config's.
        assert_eq!(
            (&g["temperature"], &g["eos_token_id"], &g["pad_token_id"], &g["bos_token_id"]),
            (&json!(0.6), &json!([2, 9]), &json!(5), &json!(1))
        );
        assert!(g.get("_from_model_config").is_none());
    }

    #[test]
    fn a_base_tokenizers_eos_stands_when_the_config_lists_several() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::write(d.join("tokenizer.json"), tokenizer_json()).unwrap();
        std::fs::write(d.join(TOKENIZER_CONFIG), json!({"eos_token": "</s>"}).to_string()).unwrap();
        std::fs::write(d.join(SPECIAL_TOKENS_MAP), json!({"eos_token": {"content": "</s>"}}).to_string())
            .unwrap();
        write(d, &cfg(json!({"eos_token_id": [3, 2]}))).unwrap();
        assert_eq!(read(d, TOKENIZER_CONFIG)["eos_token"], "</s>");
        assert_eq!(read(d, SPECIAL_TOKENS_MAP)["eos_token"]["content"], "</s>");
        assert_eq!(configured_token(d, "eos_token").as_deref(), Some("</s>"));
        assert_eq!(configured_token(d, "pad_token"), None);
    }

    #[test]
    fn without_a_tokenizer_only_the_generation_config_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), &cfg(json!({}))).unwrap();
        assert!(tmp.path().join(GENERATION_CONFIG).is_file());
        assert!(!tmp.path().join(TOKENIZER_CONFIG).exists());
    }
}
