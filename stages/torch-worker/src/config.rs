//! The model configuration, read from and written to Hugging Face `config.json`.
//!
//! Only the fields the architecture needs are typed; every other field is kept as it was read and
//! written back unchanged, so a checkpoint that goes through camel keeps its `generation_config`
//! hints, token ids and version stamps. Both the transformers 4 spelling (`rope_theta`,
//! `rope_scaling`, `torch_dtype`) and the transformers 5 one (`rope_parameters`, `dtype`) are read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The architectures whose weights and forward pass this crate implements exactly.
pub const ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<i64>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// Every other field, written back as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_pos() -> i64 {
    2048
}
fn default_init_range() -> f64 {
    0.02
}
fn default_act() -> String {
    "silu".into()
}

/// How rotary frequencies are derived from `rope_theta` (transformers' `rope_type`).
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    Default,
    /// Positions divided by `factor` (inverse frequencies divided by it).
    Linear {
        factor: f64,
    },
    /// LLaMA 3.1's frequency-band scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

impl LlamaConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))?;
        let cfg: LlamaConfig = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a LLaMA-family config.json", path.display()))?;
        cfg.validate().with_context(|| format!("unsupported model config {}", path.display()))?;
        Ok(cfg)
    }

    /// A config from YAML/JSON params (random init): the same fields as `config.json`, with the
    /// architecture filled in when omitted.
    pub fn from_value(v: Value) -> Result<Self> {
        let mut cfg: LlamaConfig = serde_json::from_value(v).context("invalid model `config`")?;
        if cfg.architectures.is_empty() {
            cfg.architectures = vec!["LlamaForCausalLM".into()];
        }
        cfg.extra.entry("bos_token_id".into()).or_insert(Value::from(1));
        cfg.extra.entry("eos_token_id".into()).or_insert(Value::from(2));
        cfg.validate().context("invalid model `config`")?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        let arch = self.architectures.first().map(String::as_str).unwrap_or("");
        if !ARCHITECTURES.contains(&arch) {
            bail!(
                "unknown architecture {:?} (model_type {:?}): camel implements {}",
                self.architectures,
                self.model_type,
                ARCHITECTURES.join(", ")
            );
        }
        ensure!(
            self.hidden_act == "silu",
            "hidden_act {:?} is not supported (LLaMA uses silu)",
            self.hidden_act
        );
        ensure!(!self.attention_bias && !self.mlp_bias, "attention_bias / mlp_bias are not supported");
        ensure!(
            self.vocab_size > 0 && self.hidden_size > 0 && self.num_hidden_layers > 0,
            "sizes must be positive"
        );
        ensure!(
            self.num_attention_heads > 0 && self.num_attention_heads % self.num_kv_heads() == 0,
            "num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
            self.num_attention_heads,
            self.num_kv_heads()
        );
        ensure!(self.head_dim() % 2 == 0, "head_dim must be even for rotary embeddings");
        if self.head_dim.is_none() {
            ensure!(
                self.hidden_size % self.num_attention_heads == 0,
                "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if let Some(w) = self.extra.get("sliding_window").and_then(Value::as_i64) {
            ensure!(
                w >= self.max_position_embeddings,
                "sliding-window attention (sliding_window {w} < max_position_embeddings) is not supported"
            );
        }
        self.rope_scaling()?;
        Ok(())
    }

    pub fn num_kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (transformers 4).
    fn rope_params(&self) -> BTreeMap<String, Value> {
        let mut p = BTreeMap::new();
        if let Some(Value::Object(m)) = self.extra.get("rope_scaling") {
            p.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(t) = self.extra.get("rope_theta") {
            p.insert("rope_theta".into(), t.clone());
        }
        if let Some(Value::Object(m)) = self.extra.get("rope_parameters") {
            p.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        p
    }

    pub fn rope_theta(&self) -> f64 {
        self.rope_params().get("rope_theta").and_then(Value::as_f64).unwrap_or(10000.0)
    }

    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        let p = self.rope_params();
        let ty = p.get("rope_type").or_else(|| p.get("type")).and_then(Value::as_str).unwrap_or("default");
        let num = |k: &str| -> Result<f64> {
            p.get(k).and_then(Value::as_f64).with_context(|| format!("rope scaling {ty:?} needs `{k}`"))
        };
        Ok(match ty {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: num("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            },
            other => bail!("rope scaling type {other:?} is not supported (default, linear, llama3 are)"),
        })
    }

    pub fn bos_token_id(&self) -> Option<i64> {
        self.extra.get("bos_token_id").and_then(Value::as_i64)
    }

    /// The first eos id (transformers allows a list).
    pub fn eos_token_ids(&self) -> Vec<i64> {
        match self.extra.get("eos_token_id") {
            Some(Value::Number(n)) => n.as_i64().into_iter().collect(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }

    /// Records the dtype of saved weights under both spellings transformers reads.
    pub fn set_dtype(&mut self, dtype: &str) {
        self.extra.insert("dtype".into(), Value::from(dtype));
        if self.extra.contains_key("torch_dtype") {
            self.extra.insert("torch_dtype".into(), Value::from(dtype));
        }
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
               "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})
    }

    #[test]
    fn rope_v4_and_v5_spellings() {
        let mut v = base();
        v["rope_theta"] = json!(500000.0);
        v["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
        let c = LlamaConfig::from_value(v).unwrap();
        assert_eq!(c.rope_theta(), 500000.0);
        assert_eq!(c.rope_scaling().unwrap(), RopeScaling::Linear { factor: 2.0 });
        let mut v = base();
        v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 1000.0});
        let c = LlamaConfig::from_value(v).unwrap();
        assert_eq!((c.rope_theta(), c.rope_scaling().unwrap()), (1000.0, RopeScaling::Default));
    }

    #[test]
    fn unknown_architecture_is_refused() {
        let mut v = base();
        v["architectures"] = json!(["GPT2LMHeadModel"]);
        let e = format!("{:#}", LlamaConfig::from_value(v).unwrap_err());
        assert!(e.contains("unknown architecture") && e.contains("LlamaForCausalLM"), "{e}");
    }

    #[test]
    fn extra_fields_round_trip() {
        let mut v = base();
        v["transformers_version"] = json!("5.24.0");
        let c = LlamaConfig::from_value(v).unwrap();
        let back: Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
        assert_eq!(back["transformers_version"], "5.24.0");
        assert_eq!(c.num_kv_heads(), 2);
        assert_eq!(c.head_dim(), 4);
    }
}
