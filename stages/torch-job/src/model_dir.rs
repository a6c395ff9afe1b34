//! A Hugging Face checkpoint directory as camel reads it, without libtorch: where its weights are
//! (`model.safetensors`, or the shards `model.safetensors.index.json` lists), the name, dtype and
//! shape of every tensor from the safetensors headers (no weight is read: a 13 GB checkpoint costs
//! a few kilobytes), and what those tensors lack or have beyond what `config.json` implies.
//!
//! The worker loads weights through [`weights`] and checks a state dict with
//! [`LlamaConfig::tensor_problems`]; the stages run [`problems`] on a `model` dir that exists when
//! the pipeline is planned, so a checkpoint the worker would refuse (only `pytorch_model.bin`, a
//! tensor missing or misshapen, no `tokenizer.json` where the kind needs one) is reported before
//! any stage runs, with the worker's own messages.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model_config::LlamaConfig;

/// The single-file weights.
pub const SINGLE: &str = "model.safetensors";
/// The index of sharded weights.
pub const INDEX: &str = "model.safetensors.index.json";
/// The fast tokenizer fine-tuning and generation encode with.
pub const TOKENIZER: &str = "tokenizer.json";
/// The decoding defaults transformers' `generate` reads.
pub const GENERATION_CONFIG: &str = "generation_config.json";

/// The largest safetensors header read (the safetensors format's own limit, 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// A checkpoint dir whose weights camel cannot find or read.
#[derive(Debug, thiserror::Error)]
pub enum ModelDirError {
    #[error("failed to read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(m: String) -> ModelDirError {
    ModelDirError::Invalid(m)
}

/// Where a checkpoint dir's weights are.
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    /// `model.safetensors`.
    Single(PathBuf),
    /// `model.safetensors.index.json`: its path, the shard files it names (sorted, each once, all
    /// present) and the shard it places each tensor in.
    Sharded { index: PathBuf, shards: Vec<String>, weight_map: BTreeMap<String, String> },
}

/// The weights of `dir`: `model.safetensors`, else the index with every shard it lists present.
/// A dir with neither is an error that says how to convert a `pytorch_model.bin`.
pub fn weights(dir: &Path) -> Result<Weights, ModelDirError> {
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(Weights::Single(single));
    }
    let index = dir.join(INDEX);
    if !index.is_file() {
        let hint = if dir.join("pytorch_model.bin").exists()
            || dir.join("pytorch_model.bin.index.json").exists()
        {
            " (it holds pytorch_model.bin: convert it with `model.save_pretrained(dir, safe_serialization=True)`)"
        } else {
            ""
        };
        return Err(invalid(format!("{} has neither {SINGLE} nor {INDEX}{hint}", dir.display())));
    }
    let text = std::fs::read_to_string(&index)
        .map_err(|source| ModelDirError::Read { path: index.clone(), source })?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| invalid(format!("{} is not JSON: {e}", index.display())))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| invalid(format!("{} has no `weight_map`", index.display())))?;
    let mut weight_map = BTreeMap::new();
    for (name, file) in map {
        let file = file.as_str().ok_or_else(|| {
            invalid(format!("{} places tensor `{name}` in {file}, which is not a file name", index.display()))
        })?;
        weight_map.insert(name.clone(), file.to_string());
    }
    let mut shards: Vec<String> = weight_map.values().cloned().collect();
    shards.sort_unstable();
    shards.dedup();
    for s in &shards {
        if !dir.join(s).is_file() {
            return Err(invalid(format!(
                "shard {s} listed in {} is missing from {}",
                index.display(),
                dir.display()
            )));
        }
    }
    Ok(Weights::Sharded { index, shards, weight_map })
}

/// A tensor as a safetensors header describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The safetensors dtype name (`F32`, `BF16`, …).
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// The dtypes the worker reads, with their sizes in bytes.
pub const READ_DTYPES: &[(&str, usize)] =
    &[("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("I64", 8), ("I32", 4)];

/// Sizes of the other safetensors dtypes, to check a header's byte ranges.
const OTHER_DTYPES: &[(&str, usize)] = &[
    ("BOOL", 1),
    ("U8", 1),
    ("I8", 1),
    ("F8_E5M2", 1),
    ("F8_E4M3", 1),
    ("I16", 2),
    ("U16", 2),
    ("U32", 4),
    ("U64", 8),
];

/// The tensors of one safetensors file from its header alone (the first 8 + N bytes): each one's
/// dtype and shape, every byte range checked against them. Tensors of a dtype the worker does
/// not read are errors naming the tensor.
pub fn read_header(path: &Path) -> Result<BTreeMap<String, TensorInfo>, ModelDirError> {
    let io = |source| ModelDirError::Read { path: path.to_path_buf(), source };
    let not_valid = |m: &str| invalid(format!("{} is not a valid safetensors file: {m}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| not_valid("shorter than its 8-byte header length"))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > len {
        return Err(not_valid(&format!("its header length {n} does not fit the file's {len} bytes")));
    }
    let mut head = vec![0u8; n as usize];
    file.read_exact(&mut head).map_err(io)?;
    let Ok(Value::Object(header)) = serde_json::from_slice::<Value>(&head) else {
        return Err(not_valid("its header is not a JSON object"));
    };
    let mut out = BTreeMap::new();
    for (name, t) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| not_valid(&format!("tensor `{name}` has {what}"));
        let dtype = t["dtype"].as_str().ok_or_else(|| bad("no dtype"))?.to_string();
        let shape: Vec<i64> = match t["shape"].as_array() {
            Some(a) => a.iter().map(|d| d.as_i64().filter(|&d| d >= 0)).collect::<Option<_>>(),
            None => None,
        }
        .ok_or_else(|| bad("no valid shape"))?;
        let offsets: Option<Vec<u64>> =
            t["data_offsets"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect());
        let Some([start, end]) = offsets.as_deref().and_then(|o| <[u64; 2]>::try_from(o).ok()) else {
            return Err(bad("no valid data_offsets"));
        };
        let Some(&(_, size)) = READ_DTYPES.iter().chain(OTHER_DTYPES).find(|(d, _)| *d == dtype) else {
            return Err(bad(&format!("the unknown dtype {dtype:?}")));
        };
        let bytes = shape.iter().try_fold(size as u64, |acc, &d| acc.checked_mul(d as u64));
        if end < start || bytes != Some(end - start) {
            return Err(bad(&format!(
                "data_offsets [{start}, {end}] that do not hold a {dtype} tensor of shape {shape:?}"
            )));
        }
        if !READ_DTYPES.iter().any(|(d, _)| *d == dtype) {
            return Err(invalid(format!(
                "tensor `{name}` in {} has dtype {dtype}, which camel does not read",
                path.display()
            )));
        }
        out.insert(name, TensorInfo { dtype, shape });
    }
    Ok(out)
}

/// Every tensor of `dir`'s weights from the headers, the index's placements checked: each tensor
/// in the shard the index names, each listed tensor in a shard.
pub fn tensors(dir: &Path) -> Result<BTreeMap<String, TensorInfo>, ModelDirError> {
    match weights(dir)? {
        Weights::Single(path) => read_header(&path),
        Weights::Sharded { index, shards, weight_map } => {
            let mut all = BTreeMap::new();
            for s in &shards {
                for (name, info) in read_header(&dir.join(s))? {
                    if weight_map.get(&name) != Some(s) {
                        return Err(invalid(format!(
                            "tensor `{name}` is in {s} but {} places it elsewhere",
                            index.display()
                        )));
                    }
                    all.insert(name, info);
                }
            }
            if let Some(name) = weight_map.keys().find(|n| !all.contains_key(*n)) {
                return Err(invalid(format!("tensor `{name}` listed in {} is in no shard", index.display())));
            }
            Ok(all)
        }
    }
}

/// Why a kind reads a model dir's `tokenizer.json`, for [`problems`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerUse {
    /// The kind does not read it (pretraining: the token dir is already tokenized).
    None,
    /// Fine-tuning encodes the records with it.
    Finetune,
    /// Generation (`answer`, `camel generate`) encodes prompts and decodes answers with it.
    Generate,
}

/// The message when `dir` lacks the tokenizer `use_` needs; the worker's own.
pub fn missing_tokenizer(dir: &Path, use_: TokenizerUse) -> Option<String> {
    let what = match use_ {
        TokenizerUse::None => return None,
        TokenizerUse::Finetune => "fine-tuning needs it",
        TokenizerUse::Generate => "generation encodes the prompts with it",
    };
    (!dir.join(TOKENIZER).is_file()).then(|| {
        format!(
            "the model {} has no {TOKENIZER} ({what}; a checkpoint with only a slow tokenizer's tokenizer.model \
             can be converted with `AutoTokenizer.from_pretrained(dir).save_pretrained(dir)`)",
            dir.display()
        )
    })
}

/// What camel would refuse in the checkpoint dir `dir` whose `config.json` is `cfg`, found from
/// its files and safetensors headers alone: weights missing or unreadable, tensors missing,
/// misshapen or not of the architecture (compared only with a `cfg` camel implements: `None`
/// when its own problems are reported), and `tokenizer.json` where `tokenizer` says the kind
/// reads it. Every problem, each a line of its own; empty when loading would get past them.
pub fn problems(dir: &Path, cfg: Option<&LlamaConfig>, tokenizer: TokenizerUse) -> Vec<String> {
    let mut out = Vec::new();
    match tensors(dir) {
        Ok(t) => {
            if let Some(cfg) = cfg {
                let problems = cfg.tensor_problems(t.iter().map(|(n, i)| (n.as_str(), i.shape.as_slice())));
                out.extend(problems.into_iter().map(|m| format!("{}: {m}", dir.display())));
            }
        }
        Err(e) => out.push(crate::error_chain(&e)),
    }
    out.extend(missing_tokenizer(dir, tokenizer));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use serde_json::json;

    fn cfg(tied: bool) -> LlamaConfig {
        LlamaConfig::from_value(json!({"vocab_size": 10, "hidden_size": 8, "intermediate_size": 12,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "tie_word_embeddings": tied}))
        .unwrap()
    }

    /// A safetensors file of zeros with these tensors (F32 unless the name says `bf16`).
    pub(crate) fn write_safetensors(path: &Path, tensors: &[(String, Vec<i64>)]) {
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), json!({"format": "pt"}));
        let mut offset = 0u64;
        for (name, shape) in tensors {
            let (dtype, size) = if name.contains("bf16") { ("BF16", 2) } else { ("F32", 4) };
            let len = shape.iter().product::<i64>() as u64 * size;
            header.insert(
                name.clone(),
                json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let mut head = serde_json::to_vec(&Value::Object(header)).unwrap();
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
        bytes.extend(head);
        bytes.resize(bytes.len() + offset as usize, 0);
        std::fs::write(path, bytes).unwrap();
    }

    fn expected(c: &LlamaConfig) -> Vec<(String, Vec<i64>)> {
        c.param_names().into_iter().map(|n| (n.clone(), c.param_shape(&n))).collect()
    }

    #[test]
    fn a_complete_checkpoint_has_no_problem_and_each_defect_is_named() {
        let d = TempDir::new("dir");
        let dir = &d.0;
        let c = cfg(false);
        let mut t = expected(&c);
        write_safetensors(&dir.join(SINGLE), &t);
        std::fs::write(dir.join(TOKENIZER), "{}").unwrap();
        assert!(problems(dir, Some(&c), TokenizerUse::Finetune).is_empty());
        let infos = tensors(dir).unwrap();
        assert_eq!(
            infos["model.embed_tokens.weight"],
            TensorInfo { dtype: "F32".into(), shape: vec![10, 8] }
        );
        // A tied model's redundant head and a rotary buffer are accepted, as on load.
        let tied = cfg(true);
        t.push(("model.layers.0.self_attn.rotary_emb.inv_freq".into(), vec![2]));
        write_safetensors(&dir.join(SINGLE), &t);
        assert!(
            problems(dir, Some(&tied), TokenizerUse::None).is_empty(),
            "{:?}",
            problems(dir, Some(&tied), TokenizerUse::None)
        );

        // Missing, misshapen and extra tensors, all at once.
        let mut bad = expected(&c);
        bad.retain(|(n, _)| n != "model.norm.weight");
        bad[0].1 = vec![12, 8];
        bad.push(("score.weight".into(), vec![2, 8]));
        write_safetensors(&dir.join(SINGLE), &bad);
        let p = problems(dir, Some(&c), TokenizerUse::None);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|m| m.contains("has no tensor `model.norm.weight`")), "{p:?}");
        assert!(
            p.iter()
                .any(|m| m
                    .contains("`model.embed_tokens.weight` has shape [12, 8], the config implies [10, 8]")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.contains("does not use, e.g. `score.weight`")), "{p:?}");

        // No tokenizer.json where the kind needs it.
        std::fs::remove_file(dir.join(TOKENIZER)).unwrap();
        write_safetensors(&dir.join(SINGLE), &expected(&c));
        let p = problems(dir, Some(&c), TokenizerUse::Finetune);
        assert!(p.len() == 1 && p[0].contains("has no tokenizer.json (fine-tuning needs it"), "{p:?}");
        assert!(problems(dir, Some(&c), TokenizerUse::None).is_empty());
        assert!(problems(dir, Some(&c), TokenizerUse::Generate)[0].contains("generation"));

        // Only pytorch_model.bin.
        std::fs::remove_file(dir.join(SINGLE)).unwrap();
        std::fs::write(dir.join("pytorch_model.bin"), b"PK").unwrap();
        let p = problems(dir, Some(&c), TokenizerUse::None);
        assert!(
            p.len() == 1
                && p[0].contains("neither model.safetensors nor")
                && p[0].contains("safe_serialization=True"),
            "{p:?}"
        );
    }

    #[test]
    fn shards_are_read_through_the_index_and_checked_against_it() {
        let d = TempDir::new("shards");
        let dir = &d.0;
        let c = cfg(false);
        let t = expected(&c);
        let (a, b) = t.split_at(4);
        write_safetensors(&dir.join("model-00001-of-00002.safetensors"), a);
        write_safetensors(&dir.join("model-00002-of-00002.safetensors"), b);
        let mut map = serde_json::Map::new();
        for (n, _) in a {
            map.insert(n.clone(), json!("model-00001-of-00002.safetensors"));
        }
        for (n, _) in b {
            map.insert(n.clone(), json!("model-00002-of-00002.safetensors"));
        }
        let write_index = |m: &serde_json::Map<String, Value>| {
            std::fs::write(dir.join(INDEX), json!({"metadata": {}, "weight_map": m}).to_string()).unwrap()
        };
        write_index(&map);
        assert!(
            problems(dir, Some(&c), TokenizerUse::None).is_empty(),
            "{:?}",
            problems(dir, Some(&c), TokenizerUse::None)
        );
        assert_eq!(tensors(dir).unwrap().len(), t.len());
        // The index places a tensor in the other shard.
        let mut wrong = map.clone();
        wrong.insert(a[0].0.clone(), json!("model-00002-of-00002.safetensors"));
        write_index(&wrong);
        assert!(problems(dir, Some(&c), TokenizerUse::None)[0].contains("places it elsewhere"));
        // A shard missing.
        write_index(&map);
        std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).unwrap();
        let p = problems(dir, Some(&c), TokenizerUse::None);
        assert!(p[0].contains("shard model-00002-of-00002.safetensors") && p[0].contains("missing"), "{p:?}");
    }

    #[test]
    fn headers_are_checked_without_reading_the_weights() {
        let d = TempDir::new("header");
        let path = d.0.join("x.safetensors");
        write_safetensors(&path, &[("a.bf16".into(), vec![3, 2]), ("b".into(), vec![4])]);
        let h = read_header(&path).unwrap();
        assert_eq!(h["a.bf16"], TensorInfo { dtype: "BF16".into(), shape: vec![3, 2] });
        // A dtype the worker does not read, a byte range that does not fit the shape, garbage.
        let header = |t: Value| {
            let head = t.to_string().into_bytes();
            let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
            bytes.extend(head);
            bytes.extend([0u8; 64]);
            std::fs::write(&path, bytes).unwrap();
            format!("{}", read_header(&path).unwrap_err())
        };
        let e = header(json!({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}));
        assert!(e.contains("tensor `w`") && e.contains("dtype U8, which camel does not read"), "{e}");
        let e = header(json!({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4]}}));
        assert!(e.contains("not a valid safetensors file") && e.contains("[0, 4]"), "{e}");
        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk").unwrap();
        assert!(read_header(&path).unwrap_err().to_string().contains("header length"));
    }
}
