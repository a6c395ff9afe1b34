//! The model configuration, read from and written to Hugging Face `config.json`, and the checks
//! that say whether camel implements it. It lives here, without libtorch, so that the stages
//! validate a `config:` param or a checkpoint's config.json when the pipeline is planned, with
//! the very checks the worker applies when it loads the model.
//!
//! Only the fields the architecture needs are typed; every other field is kept as it was read and
//! written back unchanged, so a checkpoint that goes through camel keeps its `generation_config`
//! hints, token ids and version stamps. Both the transformers 4 spelling (`rope_theta`,
//! `rope_scaling`, `torch_dtype`) and the transformers 5 one (`rope_parameters`, `dtype`) are read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The architectures whose weights and forward pass camel implements exactly.
pub const ARCHITECTURES: &[&str] = &["LlamaForCausalLM", "MistralForCausalLM"];

/// The class transformers' `AutoModelForCausalLM` builds for a `model_type`, for the types camel
/// implements: what a config.json without `architectures` (optional in Hugging Face configs) is
/// loaded as.
pub const MODEL_TYPES: &[(&str, &str)] = &[("llama", "LlamaForCausalLM"), ("mistral", "MistralForCausalLM")];

/// The parameters of each decoder layer, in transformers' order (each `model.layers.N.{name}.weight`).
pub const LAYER_PARAMS: &[&str] = &[
    "input_layernorm",
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "post_attention_layernorm",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// transformers' `MistralConfig.sliding_window` when config.json has no such key.
pub const MISTRAL_DEFAULT_SLIDING_WINDOW: i64 = 4096;

/// A model config camel cannot read or does not implement.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not a LLaMA-family config.json")]
    Parse {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// One setting camel does not implement.
    #[error("{0}")]
    Invalid(String),
    /// Every problem found, not only the first.
    #[error("unsupported model config {what}: {}", problems.join("; "))]
    Unsupported { what: String, problems: Vec<String> },
}

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
    /// Reads and checks a checkpoint's `config.json` (every problem at once).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let cfg = Self::parse_file(path)?;
        cfg.validate_as(&path.display().to_string())?;
        Ok(cfg)
    }

    /// Reads a `config.json` without checking what camel implements. Without `architectures`,
    /// the class is the one `AutoModelForCausalLM` picks for its `model_type` ([`MODEL_TYPES`]),
    /// and it is written back so, as `save_pretrained` writes the class it saves.
    pub fn parse_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg: LlamaConfig = serde_json::from_str(&text)
            .map_err(|source| ConfigError::Parse { what: path.display().to_string(), source })?;
        cfg.fill_architecture();
        Ok(cfg)
    }

    /// An empty `architectures` filled in from `model_type`, when camel implements that type
    /// (another type stays empty and [`LlamaConfig::problems`] names it).
    fn fill_architecture(&mut self) {
        if self.architectures.is_empty()
            && let Some((_, class)) = MODEL_TYPES.iter().find(|(t, _)| *t == self.model_type)
        {
            self.architectures = vec![(*class).to_string()];
        }
    }

    /// A config from YAML/JSON params (random init): the same fields as `config.json`, with the
    /// architecture filled in from `model_type` (default `llama`) when omitted; checked.
    pub fn from_value(v: Value) -> Result<Self, ConfigError> {
        let cfg = Self::parse_value(v)?;
        cfg.validate_as("`config`")?;
        Ok(cfg)
    }

    /// [`LlamaConfig::from_value`] without the check.
    pub fn parse_value(v: Value) -> Result<Self, ConfigError> {
        let mut cfg: LlamaConfig = serde_json::from_value(v)
            .map_err(|source| ConfigError::Parse { what: "`config`".into(), source })?;
        cfg.fill_architecture();
        cfg.extra.entry("bos_token_id".into()).or_insert(Value::from(1));
        cfg.extra.entry("eos_token_id".into()).or_insert(Value::from(2));
        Ok(cfg)
    }

    /// [`LlamaConfig::problems`] as an error naming `what` (a path, or `` `config` ``).
    pub fn validate_as(&self, what: &str) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unsupported { what: what.to_string(), problems })
        }
    }

    /// [`LlamaConfig::training_problems`] as an error naming `what`.
    pub fn validate_training_as(&self, what: &str) -> Result<(), ConfigError> {
        let problems = self.training_problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Unsupported { what: what.to_string(), problems })
        }
    }

    /// Everything in the config camel does not implement (empty: camel computes what
    /// transformers computes for it, in inference).
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let arch = self.architectures.first().map(String::as_str).unwrap_or("");
        if self.architectures.is_empty() {
            p.push(format!(
                "no `architectures`, and model_type {:?} is not one camel implements ({})",
                self.model_type,
                MODEL_TYPES.iter().map(|(t, c)| format!("{t} → {c}")).collect::<Vec<_>>().join(", ")
            ));
        } else if !ARCHITECTURES.contains(&arch) {
            p.push(format!(
                "unknown architecture {:?} (model_type {:?}): camel implements {}",
                self.architectures,
                self.model_type,
                ARCHITECTURES.join(", ")
            ));
        }
        if self.hidden_act != "silu" {
            p.push(format!("hidden_act {:?} is not supported (LLaMA uses silu)", self.hidden_act));
        }
        if self.attention_bias || self.mlp_bias {
            p.push("attention_bias / mlp_bias are not supported".into());
        }
        if self.vocab_size <= 0 || self.hidden_size <= 0 || self.num_hidden_layers <= 0 {
            p.push("vocab_size, hidden_size and num_hidden_layers must be positive".into());
        }
        if self.num_attention_heads <= 0
            || self.num_kv_heads() <= 0
            || self.num_attention_heads % self.num_kv_heads() != 0
        {
            p.push(format!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        if self.head_dim() % 2 != 0 {
            p.push("head_dim must be even for rotary embeddings".into());
        }
        if self.head_dim.is_none()
            && self.num_attention_heads > 0
            && self.hidden_size % self.num_attention_heads != 0
        {
            p.push(format!(
                "hidden_size ({}) is not a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        match self.sliding_window() {
            Ok(Some(w)) if w < self.max_position_embeddings => p.push(format!(
                "sliding-window attention (sliding_window {w}{} < max_position_embeddings {}) is not supported",
                if self.extra.contains_key("sliding_window") { "" } else { ", Mistral's default when the key is absent" },
                self.max_position_embeddings
            )),
            Ok(_) => {}
            Err(e) => p.push(e.to_string()),
        }
        if let Err(e) = self.rope_scaling() {
            p.push(e.to_string());
        }
        p
    }

    /// What training needs beyond [`LlamaConfig::problems`]: transformers applies attention
    /// dropout in train mode, and camel's training has none.
    pub fn training_problems(&self) -> Vec<String> {
        let mut p = self.problems();
        match self.extra.get("attention_dropout") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64() == Some(0.0) => {}
            Some(v) => p.push(format!(
                "attention_dropout {v} is not supported in training (camel trains without dropout; \
                 transformers applies it in train mode): set it to 0.0"
            )),
        }
        p
    }

    /// The attention window transformers applies: MistralForCausalLM's `sliding_window` (4096 when
    /// the key is absent, none when null); LlamaForCausalLM ignores the key.
    pub fn sliding_window(&self) -> Result<Option<i64>, ConfigError> {
        if self.architectures.first().map(String::as_str) != Some("MistralForCausalLM") {
            return Ok(None);
        }
        match self.extra.get("sliding_window") {
            None => Ok(Some(MISTRAL_DEFAULT_SLIDING_WINDOW)),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| ConfigError::Invalid(format!("sliding_window {v} is not an integer or null"))),
        }
    }

    /// The names of the tensors transformers' `state_dict` of this architecture holds (and camel
    /// trains), in a fixed order: the embedding, each layer's norms and projections, the final
    /// norm, and the head unless it is tied to the embedding.
    pub fn param_names(&self) -> Vec<String> {
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for i in 0..self.num_hidden_layers.max(0) {
            for n in LAYER_PARAMS {
                names.push(format!("model.layers.{i}.{n}.weight"));
            }
        }
        names.push("model.norm.weight".into());
        if !self.tie_word_embeddings {
            names.push("lm_head.weight".into());
        }
        names
    }

    /// The shape transformers gives the parameter `name` (one of [`LlamaConfig::param_names`]).
    pub fn param_shape(&self, name: &str) -> Vec<i64> {
        let (h, v, i) = (self.hidden_size, self.vocab_size, self.intermediate_size);
        let q = self.num_attention_heads * self.head_dim();
        let kv = self.num_kv_heads() * self.head_dim();
        let leaf = name.trim_end_matches(".weight");
        let leaf = leaf.rsplit_once('.').map_or(leaf, |(_, l)| l);
        match leaf {
            "embed_tokens" | "lm_head" => vec![v, h],
            "input_layernorm" | "post_attention_layernorm" | "norm" => vec![h],
            "q_proj" => vec![q, h],
            "k_proj" | "v_proj" => vec![kv, h],
            "o_proj" => vec![h, q],
            "gate_proj" | "up_proj" => vec![i, h],
            "down_proj" => vec![h, i],
            _ => panic!("unknown parameter {name}"),
        }
    }

    /// What a checkpoint's tensors (name, shape) lack or hold beyond what this config implies,
    /// as loading finds it: each parameter missing or of another shape, and the tensors the
    /// architecture does not use (a tied model's redundant `lm_head.weight` and rotary
    /// `inv_freq` buffers are ignored, as transformers ignores them). The stages check the
    /// safetensors headers with it when the pipeline is planned; the worker checks the state
    /// dict it loaded.
    pub fn tensor_problems<'a>(
        &self,
        tensors: impl IntoIterator<Item = (&'a str, &'a [i64])>,
    ) -> Vec<String> {
        let mut have: BTreeMap<&str, &[i64]> = tensors.into_iter().collect();
        let mut p = Vec::new();
        for name in self.param_names() {
            let want = self.param_shape(&name);
            match have.remove(name.as_str()) {
                None => p.push(format!("the checkpoint has no tensor `{name}`")),
                Some(shape) if shape != want.as_slice() => {
                    p.push(format!("tensor `{name}` has shape {shape:?}, the config implies {want:?}"))
                }
                Some(_) => {}
            }
        }
        have.remove("lm_head.weight");
        have.retain(|k, _| !k.ends_with("rotary_emb.inv_freq"));
        if let Some(extra) = have.keys().next() {
            p.push(format!(
                "the checkpoint has tensors the architecture does not use, e.g. `{extra}` ({} in all)",
                have.len()
            ));
        }
        // A checkpoint of another model lacks every tensor: the first few say enough.
        let missing = p.iter().filter(|m| m.starts_with("the checkpoint has no tensor")).count();
        if missing > 3 {
            let mut shown = 0;
            p.retain(|m| {
                !m.starts_with("the checkpoint has no tensor") || {
                    shown += 1;
                    shown <= 3
                }
            });
            p.insert(3.min(p.len()), format!("… and {} more tensors missing", missing - 3));
        }
        p
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

    pub fn rope_scaling(&self) -> Result<RopeScaling, ConfigError> {
        let p = self.rope_params();
        let ty = p.get("rope_type").or_else(|| p.get("type")).and_then(Value::as_str).unwrap_or("default");
        let num = |k: &str| -> Result<f64, ConfigError> {
            p.get(k)
                .and_then(Value::as_f64)
                .ok_or_else(|| ConfigError::Invalid(format!("rope scaling {ty:?} needs `{k}`")))
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
            other => {
                return Err(ConfigError::Invalid(format!(
                    "rope scaling type {other:?} is not supported (default, linear, llama3 are)"
                )));
            }
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

    /// `architectures` is optional: a config.json without it is read as `AutoModelForCausalLM`
    /// reads it, the class from `model_type`; a type camel does not implement is named.
    #[test]
    fn a_config_without_architectures_is_its_model_types_causal_lm() {
        let dir = crate::testing::TempDir::new("arch");
        let path = dir.0.join("config.json");
        let read = |v: &Value| {
            std::fs::write(&path, v.to_string()).unwrap();
            LlamaConfig::parse_file(&path).unwrap()
        };
        let mut v = base();
        v.as_object_mut().unwrap().remove("architectures");
        v["model_type"] = json!("llama");
        let c = read(&v);
        assert_eq!(c.architectures, ["LlamaForCausalLM"]);
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        // Written back with the class, as save_pretrained writes it.
        let back: Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
        assert_eq!(back["architectures"], json!(["LlamaForCausalLM"]));
        // Mistral's class, with its default window (the key absent).
        v["model_type"] = json!("mistral");
        v["max_position_embeddings"] = json!(32768);
        let c = read(&v);
        assert_eq!(c.architectures, ["MistralForCausalLM"]);
        assert_eq!(c.sliding_window().unwrap(), Some(MISTRAL_DEFAULT_SLIDING_WINDOW));
        v["model_type"] = json!("gpt2");
        let p = read(&v).problems();
        assert!(p.len() == 1 && p[0].contains("no `architectures`") && p[0].contains("\"gpt2\""), "{p:?}");
        assert!(p[0].contains("llama → LlamaForCausalLM"), "{p:?}");
        // A `config` param: the same rule (model_type defaults to llama).
        let mut v = base();
        v.as_object_mut().unwrap().remove("architectures");
        assert_eq!(LlamaConfig::from_value(v.clone()).unwrap().architectures, ["LlamaForCausalLM"]);
        v["model_type"] = json!("mistral");
        v["sliding_window"] = Value::Null;
        assert_eq!(LlamaConfig::from_value(v).unwrap().architectures, ["MistralForCausalLM"]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut v = base();
        v["hidden_act"] = json!("gelu");
        v["rope_scaling"] = json!({"type": "yarn", "factor": 2.0});
        v["num_key_value_heads"] = json!(3);
        let e = LlamaConfig::from_value(v).unwrap_err();
        let ConfigError::Unsupported { problems, .. } = &e else { panic!("{e}") };
        assert_eq!(problems.len(), 3, "{problems:?}");
        let e = e.to_string();
        assert!(e.contains("gelu") && e.contains("yarn") && e.contains("num_key_value_heads (3)"), "{e}");
    }

    #[test]
    fn sliding_window_as_transformers_reads_it() {
        // Mistral: the key absent is transformers' default of 4096; null is none.
        let mut v = base();
        v["architectures"] = json!(["MistralForCausalLM"]);
        v["max_position_embeddings"] = json!(32768);
        let e = LlamaConfig::from_value(v.clone()).unwrap_err().to_string();
        assert!(e.contains("sliding_window 4096, Mistral's default") && e.contains("32768"), "{e}");
        v["sliding_window"] = Value::Null;
        assert_eq!(LlamaConfig::from_value(v.clone()).unwrap().sliding_window().unwrap(), None);
        v["sliding_window"] = json!(32768);
        LlamaConfig::from_value(v.clone()).unwrap();
        v["sliding_window"] = json!("8");
        assert!(LlamaConfig::from_value(v).unwrap_err().to_string().contains("not an integer"));
        // Llama ignores the key, as transformers' LlamaModel does.
        let mut v = base();
        v["sliding_window"] = json!(64);
        assert_eq!(LlamaConfig::from_value(v).unwrap().sliding_window().unwrap(), None);
    }

    #[test]
    fn attention_dropout_is_refused_for_training_only() {
        let mut v = base();
        v["attention_dropout"] = json!(0.1);
        let c = LlamaConfig::from_value(v).unwrap();
        let e = c.validate_training_as("m/config.json").unwrap_err().to_string();
        assert!(e.contains("attention_dropout 0.1") && e.contains("m/config.json"), "{e}");
        let mut v = base();
        v["attention_dropout"] = json!(0.0);
        LlamaConfig::from_value(v).unwrap().validate_training_as("x").unwrap();
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
