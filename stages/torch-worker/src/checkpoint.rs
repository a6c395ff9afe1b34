//! Hugging Face checkpoint directories: `config.json` plus `model.safetensors`, or shards listed
//! in `model.safetensors.index.json`; fp32, fp16 or bf16. Reading memory-maps each file; writing
//! produces what `transformers.AutoModelForCausalLM.from_pretrained` loads (the `format: pt`
//! metadata it checks, a tied head left out, shards and an index above `max_shard_bytes`), and
//! copies the tokenizer files beside the weights.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use safetensors::SafeTensors;
use safetensors::tensor::Dtype;
use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::config::LlamaConfig;
use crate::model::{Llama, kind_name};

use camel_torch_job::model_dir::{self, Weights};
pub use camel_torch_job::model_dir::{INDEX, SINGLE};
/// Tokenizer and generation files that travel with a checkpoint.
pub const SIDE_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "added_tokens.json",
    "generation_config.json",
];

fn kind_of(dtype: Dtype, file: &Path, name: &str) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        other => {
            bail!("tensor `{name}` in {} has dtype {other:?}, which camel does not read", file.display())
        }
    })
}

fn dtype_of(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Double => Dtype::F64,
        other => bail!("cannot save tensors of kind {other:?}"),
    })
}

/// Reads every tensor of one safetensors file (onto the CPU, in its stored kind).
pub fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    // SAFETY: the file is opened read-only and not modified while mapped (checkpoints are
    // immutable inputs; cache entries are read-only).
    let map =
        unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("failed to map {}", path.display()))?;
    let st = SafeTensors::deserialize(&map)
        .map_err(|e| anyhow::anyhow!("{} is not a valid safetensors file: {e:?}", path.display()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype(), path, &name)?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.insert(name, Tensor::f_from_data_size(view.data(), &shape, kind)?);
    }
    Ok(out)
}

/// Writes tensors (any device, any layout) to one safetensors file with `format: pt` metadata.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_safetensors_as(path, tensors, None)
}

/// Like [`write_safetensors`], converting each tensor to `kind` as it is written. The file is
/// streamed one tensor at a time (the header is computed from shapes first), so saving a 7B model
/// or its optimizer state never holds more than one tensor's bytes in host memory.
pub fn write_safetensors_as(path: &Path, tensors: &[(String, Tensor)], kind: Option<Kind>) -> Result<()> {
    use std::io::Write;
    let dtype_name = |k: Kind| -> Result<&'static str> {
        Ok(match dtype_of(k)? {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::F64 => "F64",
            other => bail!("cannot save dtype {other:?}"),
        })
    };
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for (name, t) in tensors {
        let k = kind.unwrap_or(t.kind());
        let len = (t.numel() * k.elt_size_in_bytes()) as u64;
        header.insert(
            name.clone(),
            json!({"dtype": dtype_name(k)?, "shape": t.size(), "data_offsets": [offset, offset + len]}),
        );
        offset += len;
    }
    let mut head = serde_json::to_vec(&Value::Object(header))?;
    // Pad the header with spaces to a multiple of 8 bytes, as the safetensors writer does.
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let tmp = path.with_extension("safetensors.tmp");
    let file = File::create(&tmp).with_context(|| format!("failed to create {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
    w.write_all(&(head.len() as u64).to_le_bytes())?;
    w.write_all(&head)?;
    for (_, t) in tensors {
        let t = t.detach().to_device(Device::Cpu);
        let t = match kind {
            Some(k) => t.to_kind(k),
            None => t,
        }
        .contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel)?;
        w.write_all(&bytes)?;
    }
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to rename {}", tmp.display()))?;
    Ok(())
}

/// The state dict of a checkpoint directory, single-file or sharded (found and checked against
/// the index by camel-torch-job's [`model_dir::weights`], as the stages check a dir at plan time).
pub fn read_state(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    match model_dir::weights(dir)? {
        Weights::Single(path) => read_safetensors(&path),
        Weights::Sharded { index, shards, weight_map } => {
            let mut state = BTreeMap::new();
            for s in &shards {
                for (name, t) in read_safetensors(&dir.join(s))? {
                    ensure!(
                        weight_map.get(&name) == Some(s),
                        "tensor `{name}` is in {s} but {} places it elsewhere",
                        index.display()
                    );
                    state.insert(name, t);
                }
            }
            if let Some(name) = weight_map.keys().find(|n| !state.contains_key(*n)) {
                bail!("tensor `{name}` listed in {} is in no shard", index.display());
            }
            Ok(state)
        }
    }
}

/// Loads a model from a checkpoint directory, with parameters in `param_kind` on `device`.
pub fn load(dir: &Path, device: Device, param_kind: Kind) -> Result<Llama> {
    ensure!(dir.is_dir(), "model checkpoint {} is not a directory", dir.display());
    let config_path = dir.join("config.json");
    ensure!(config_path.is_file(), "model checkpoint {} has no config.json", dir.display());
    let cfg = LlamaConfig::from_file(&config_path)?;
    let state = read_state(dir)?;
    Llama::from_state(cfg, state, device, param_kind)
        .with_context(|| format!("failed to load the weights of {}", dir.display()))
}

/// Writes `model` as a transformers checkpoint in `dir` with weights in `dtype`, sharded when
/// larger than `max_shard_bytes`.
pub fn save(model: &Llama, dir: &Path, dtype: Kind, max_shard_bytes: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("failed to create {}", dir.display()))?;
    let mut cfg = model.cfg.clone();
    cfg.set_dtype(kind_name(dtype));
    let params = model.named_parameters();
    let mut shards: Vec<Vec<(String, Tensor)>> = vec![Vec::new()];
    let mut size = 0u64;
    let mut total = 0u64;
    for (n, t) in params {
        let bytes = (t.numel() * dtype.elt_size_in_bytes()) as u64;
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        total += bytes;
        shards.last_mut().expect("one shard").push((n, t));
    }
    for stale in [SINGLE, INDEX] {
        let _ = std::fs::remove_file(dir.join(stale));
    }
    if shards.len() == 1 {
        write_safetensors_as(&dir.join(SINGLE), &shards[0], Some(dtype))?;
    } else {
        let n = shards.len();
        let mut weight_map = serde_json::Map::new();
        for (i, shard) in shards.iter().enumerate() {
            let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
            write_safetensors_as(&dir.join(&file), shard, Some(dtype))?;
            for (name, _) in shard {
                weight_map.insert(name.clone(), Value::from(file.clone()));
            }
        }
        let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        std::fs::write(dir.join(INDEX), serde_json::to_string_pretty(&index)?)?;
    }
    std::fs::write(dir.join("config.json"), cfg.to_json_pretty() + "\n")?;
    Ok(())
}

/// Copies the tokenizer and generation files of `from` (those that exist) into `to`.
pub fn copy_side_files(from: &Path, to: &Path) -> Result<Vec<PathBuf>> {
    let mut copied = Vec::new();
    for f in SIDE_FILES {
        let src = from.join(f);
        if src.is_file() {
            let dst = to.join(f);
            std::fs::copy(&src, &dst).with_context(|| format!("failed to copy {}", src.display()))?;
            copied.push(dst);
        }
    }
    Ok(copied)
}
