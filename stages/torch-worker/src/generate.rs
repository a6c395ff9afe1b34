//! Text generation with a KV cache, as transformers' `generate` does it: prompts batched with
//! left padding (position ids from the attention mask's cumulative sum), greedy decoding or
//! temperature / top-p sampling, stopping at eos; finished rows are padded.

use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::model::{KvCache, Llama};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenParams {
    pub max_new_tokens: usize,
    pub do_sample: bool,
    pub temperature: f64,
    pub top_p: f64,
    /// Ids that end a sequence (default: the model config's eos ids).
    pub eos_ids: Vec<i64>,
    pub pad_id: i64,
    pub seed: u64,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_new_tokens: 64,
            do_sample: false,
            temperature: 1.0,
            top_p: 1.0,
            eos_ids: Vec::new(),
            pad_id: 0,
            seed: 0,
        }
    }
}

/// `[batch, 1, q, k]` boolean mask: causal over real keys; a padding query sees itself only
/// (its output is never used, and a fully masked row would make NaNs).
fn prefill_mask(real: &Tensor) -> Tensor {
    let (b, l) = (real.size()[0], real.size()[1]);
    let causal = Tensor::ones([l, l], (Kind::Bool, real.device())).tril(0);
    let eye = Tensor::eye(l, (Kind::Bool, real.device()));
    let keys = real.view([b, 1, 1, l]);
    causal.view([1, 1, l, l]).logical_and(&keys).logical_or(&eye.view([1, 1, l, l]))
}

/// Samples or picks the next token from last-position logits `[batch, vocab]` (fp32).
fn next_tokens(logits: &Tensor, p: &GenParams) -> Tensor {
    if !p.do_sample {
        return logits.argmax(-1, false);
    }
    let mut scores = logits / p.temperature.max(1e-6);
    if p.top_p < 1.0 {
        // HF's TopPLogitsWarper: drop the smallest tokens whose cumulative mass is ≤ 1 - top_p,
        // always keeping the most likely one.
        let (sorted, idx) = scores.sort(-1, false);
        let cum = sorted.softmax(-1, Kind::Float).cumsum(-1, Kind::Float);
        let remove = cum.le(1.0 - p.top_p);
        let v = remove.size()[1];
        let _ = remove.narrow(1, v - 1, 1).fill_(0);
        let remove = remove.scatter(1, &idx, &remove);
        scores = scores.masked_fill(&remove, f64::NEG_INFINITY);
    }
    scores.softmax(-1, Kind::Float).multinomial(1, false).squeeze_dim(1)
}

/// New tokens for each prompt (eos included when reached).
pub fn generate(model: &Llama, prompts: &[Vec<i64>], p: &GenParams) -> Result<Vec<Vec<i64>>> {
    ensure!(!prompts.is_empty() && prompts.iter().all(|x| !x.is_empty()), "empty prompt");
    let eos: Vec<i64> = if p.eos_ids.is_empty() { model.cfg.eos_token_ids() } else { p.eos_ids.clone() };
    if p.do_sample {
        tch::manual_seed(p.seed as i64);
    }
    let dev = model.device;
    let b = prompts.len() as i64;
    let l = prompts.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let mut ids = Vec::new();
    let mut real = Vec::new();
    for x in prompts {
        let pad = l as usize - x.len();
        ids.extend(std::iter::repeat_n(p.pad_id, pad).chain(x.iter().copied()));
        real.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, x.len())));
    }
    let ids = Tensor::from_slice(&ids).view([b, l]).to_device(dev);
    let mut real = Tensor::from_slice(&real).view([b, l]).to_device(dev);
    let mut pos = (real.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1).clamp_min(0);
    let mut out: Vec<Vec<i64>> = vec![Vec::new(); prompts.len()];
    let mut done = vec![false; prompts.len()];
    tch::no_grad(|| {
        let mut cache = KvCache::default();
        let logits = model.forward_cached(&ids, &pos, &prefill_mask(&real), &mut cache);
        let mut last = logits.select(1, l - 1).to_kind(Kind::Float);
        for _ in 0..p.max_new_tokens {
            let next: Vec<i64> = Vec::try_from(next_tokens(&last, p).to_device(tch::Device::Cpu))?;
            let mut step = Vec::with_capacity(next.len());
            for (i, &t) in next.iter().enumerate() {
                if done[i] {
                    step.push(p.pad_id);
                } else {
                    out[i].push(t);
                    done[i] = eos.contains(&t);
                    step.push(t);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            let step_ids = Tensor::from_slice(&step).view([b, 1]).to_device(dev);
            real = Tensor::cat(&[&real, &Tensor::ones([b, 1], (Kind::Bool, dev))], 1);
            pos = pos.narrow(1, pos.size()[1] - 1, 1) + 1;
            let mask = real.view([b, 1, 1, -1]);
            let logits = model.forward_cached(&step_ids, &pos, &mask, &mut cache);
            last = logits.select(1, 0).to_kind(Kind::Float);
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(out)
}

/// A `camel generate` request: prompts as text, encoded and decoded with the checkpoint's
/// tokenizer.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenJob {
    pub model: std::path::PathBuf,
    pub prompts: Vec<String>,
    /// A template with `{instruction}` each prompt is put into (e.g. Alpaca's), or none.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default = "auto")]
    pub device: String,
    #[serde(default = "auto")]
    pub dtype: String,
    #[serde(default)]
    pub params: GenParams,
}

fn auto() -> String {
    "auto".into()
}

/// Runs a [`GenJob`]: one JSON line `{index, text, tokens}` per prompt on `out`.
pub fn run_job(job: &GenJob, out: &mut dyn std::io::Write) -> Result<()> {
    use anyhow::Context;
    let device = crate::train::parse_device(&job.device)?;
    let kind = if job.dtype == "auto" {
        if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }
    } else {
        crate::model::kind_from_name(&job.dtype)?
    };
    let model = crate::checkpoint::load(&job.model, device, kind)?;
    let tok_path = job.model.join("tokenizer.json");
    let tok = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("cannot read the tokenizer {}: {e}", tok_path.display()))?;
    let mut p = job.params.clone();
    if p.pad_id == 0
        && let Some(pad) = model.cfg.extra.get("pad_token_id").and_then(serde_json::Value::as_i64)
    {
        p.pad_id = pad;
    }
    let mut prompts = Vec::new();
    for text in &job.prompts {
        let text = match &job.template {
            Some(t) => t.replace("{instruction}", text),
            None => text.clone(),
        };
        let enc = tok.encode(text, true).map_err(|e| anyhow::anyhow!("tokenization failed: {e}"))?;
        prompts.push(enc.get_ids().iter().map(|&i| i as i64).collect::<Vec<_>>());
    }
    let outs = generate(&model, &prompts, &p)?;
    for (i, ids) in outs.iter().enumerate() {
        let u: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
        let text = tok.decode(&u, true).map_err(|e| anyhow::anyhow!("decoding failed: {e}"))?;
        let line = serde_json::json!({"index": i, "text": text, "tokens": ids.len()});
        writeln!(out, "{line}").context("failed to write the output")?;
    }
    Ok(())
}
