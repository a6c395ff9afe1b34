//! Text generation with a KV cache, as transformers' `generate` does it: prompts batched with
//! left padding (position ids from the attention mask's cumulative sum), greedy decoding,
//! temperature / top-k / top-p sampling, or beam search (a port of transformers 5's vectorized
//! `_beam_search`: length penalty, early-stopping heuristic, cache reordered per step); stopping
//! at eos.

use anyhow::{Result, ensure};
use camel_torch_job::model_dir::{TOKENIZER, TokenizerUse, missing_tokenizer};
pub use camel_torch_job::{DEFAULT_TOP_K, GenJob, GenOutput, GenParams};
use tch::{Kind, Tensor};

use crate::model::{KvCache, Llama};

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
    // transformers' warpers, in its order: temperature, top-k, top-p.
    let mut scores = logits / p.temperature.max(1e-6);
    let vocab = scores.size()[1] as usize;
    let k = p.top_k.unwrap_or(DEFAULT_TOP_K).min(vocab);
    if k > 0 {
        // HF's TopKLogitsWarper: drop every token below the k-th largest score (ties kept).
        let (top, _) = scores.topk(k as i64, -1, true, true);
        let kth = top.narrow(1, k as i64 - 1, 1);
        scores = scores.masked_fill(&scores.lt_tensor(&kth), f64::NEG_INFINITY);
    }
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

/// New tokens for each prompt (eos included when reached). `p.eos_ids` are the ids that stop a
/// sequence (none: every sequence runs to `max_new_tokens`); a job's params get the checkpoint's
/// from [`crate::generation_config::resolve`].
pub fn generate(model: &Llama, prompts: &[Vec<i64>], p: &GenParams) -> Result<Vec<Vec<i64>>> {
    ensure!(!prompts.is_empty() && prompts.iter().all(|x| !x.is_empty()), "empty prompt");
    check_ids(prompts, model.cfg.vocab_size, None)?;
    let eos = p.eos_ids.clone();
    if p.num_beams > 1 {
        return beam_search(model, prompts, p, &eos);
    }
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

/// Every prompt id is a row of the embedding (libtorch would abort on another). `tokenizer`: the
/// size of the tokenizer that encoded the prompts, for the message.
pub fn check_ids(prompts: &[Vec<i64>], vocab_size: i64, tokenizer: Option<usize>) -> Result<()> {
    let Some(&bad) = prompts.iter().flatten().find(|&&id| id < 0 || id >= vocab_size) else { return Ok(()) };
    let tok = match tokenizer {
        Some(n) => format!("; its tokenizer.json has {n} tokens"),
        None => String::new(),
    };
    anyhow::bail!(
        "the prompt holds token id {bad}, beyond the model's vocabulary of {vocab_size} (config.json's \
         vocab_size{tok}): is tokenizer.json this model's?"
    )
}

/// A checkpoint dir's model on `device` (`auto`, `cpu`, `cuda[:N]`) in `dtype` (`auto`: bf16 on
/// CUDA, fp32 on the CPU) and its `tokenizer.json`, for `generate` and `answer` jobs.
pub fn load_for_generation(
    dir: &std::path::Path,
    device: &str,
    dtype: &str,
) -> Result<(Llama, tokenizers::Tokenizer)> {
    let device = crate::device::parse_device(device)?;
    let kind = if dtype == "auto" {
        if device.is_cuda() { Kind::BFloat16 } else { Kind::Float }
    } else {
        crate::model::kind_from_name(dtype)?
    };
    if let Some(m) = missing_tokenizer(dir, TokenizerUse::Generate) {
        anyhow::bail!(m);
    }
    let model = crate::checkpoint::load(dir, device, kind)?;
    let tok_path = dir.join(TOKENIZER);
    let tok = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| anyhow::anyhow!("cannot read the tokenizer {}: {e}", tok_path.display()))?;
    Ok((model, tok))
}

/// The decoding `p` asks of the checkpoint `dir` as its config.json and generation_config.json
/// complete it ([`crate::generation_config::resolve`]), with notes for the log: read before the
/// weights, so that a setting camel refuses fails at once.
pub fn decoding_for(dir: &std::path::Path, p: &GenParams) -> Result<(GenParams, Vec<String>)> {
    let config = dir.join("config.json");
    ensure!(config.is_file(), "model checkpoint {} has no config.json", dir.display());
    let cfg = crate::config::LlamaConfig::from_file(&config)?;
    crate::generation_config::resolve(dir, &cfg, p)
}

/// Runs a [`GenJob`]: one JSON line `{index, text, tokens}` per prompt on `out`.
pub fn run_job(job: &GenJob, out: &mut dyn std::io::Write) -> Result<()> {
    use anyhow::Context;
    let (p, notes) = decoding_for(&job.model, &job.params)?;
    let (model, tok) = load_for_generation(&job.model, &job.device, &job.dtype)?;
    for n in notes {
        eprintln!("note: {n}");
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
    check_ids(&prompts, model.cfg.vocab_size, Some(tok.get_vocab_size(true)))?;
    let outs = generate(&model, &prompts, &p)?;
    for (i, ids) in outs.iter().enumerate() {
        let u: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
        let text = tok.decode(&u, true).map_err(|e| anyhow::anyhow!("decoding failed: {e}"))?;
        let line = serde_json::to_string(&GenOutput { index: i, text, tokens: ids.len() })?;
        writeln!(out, "{line}").context("failed to write the output")?;
    }
    Ok(())
}

/// Left-padded ids and the mask of real tokens, each prompt repeated `copies` times.
fn left_pad(prompts: &[Vec<i64>], pad_id: i64, copies: usize, dev: tch::Device) -> (Tensor, Tensor) {
    let l = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let (mut ids, mut real) = (Vec::new(), Vec::new());
    for x in prompts {
        for _ in 0..copies {
            let pad = l - x.len();
            ids.extend(std::iter::repeat_n(pad_id, pad).chain(x.iter().copied()));
            real.extend(std::iter::repeat_n(false, pad).chain(std::iter::repeat_n(true, x.len())));
        }
    }
    let rows = (prompts.len() * copies) as i64;
    (
        Tensor::from_slice(&ids).view([rows, l as i64]).to_device(dev),
        Tensor::from_slice(&real).view([rows, l as i64]).to_device(dev),
    )
}

/// `t[b, idx[b, j], ...]` for `t` `[batch, beams, ...]` and `idx` `[batch, k]`.
fn gather_beams(t: &Tensor, idx: &Tensor) -> Tensor {
    let mut shape = idx.size();
    let mut index = idx.shallow_clone();
    for &d in &t.size()[2..] {
        index = index.unsqueeze(-1);
        shape.push(d);
    }
    t.gather(1, &index.expand(shape.as_slice(), false), false)
}

/// transformers 5's `_beam_search` with `early_stopping=False`, one returned sequence per prompt.
fn beam_search(model: &Llama, prompts: &[Vec<i64>], p: &GenParams, eos: &[i64]) -> Result<Vec<Vec<i64>>> {
    let dev = model.device;
    let nb = p.num_beams as i64;
    let b = prompts.len() as i64;
    let (ids, mut real) = left_pad(prompts, p.pad_id, p.num_beams, dev);
    let prompt_len = ids.size()[1];
    let max_len = prompt_len + p.max_new_tokens as i64;
    let keep = (2.max(1 + eos.len()) as i64) * nb;
    let i64o = (Kind::Int64, dev);
    let fill = p.pad_id;
    let mut running = Tensor::full([b, nb, max_len], fill, i64o);
    running.narrow(2, 0, prompt_len).copy_(&ids.view([b, nb, prompt_len]));
    let mut sequences = running.copy();
    let mut running_scores = Tensor::zeros([b, nb], (Kind::Float, dev));
    let _ = running_scores.narrow(1, 1, nb - 1).fill_(-1e9);
    let mut beam_scores = Tensor::full([b, nb], -1e9, (Kind::Float, dev));
    let mut finished = Tensor::zeros([b, nb], (Kind::Bool, dev));
    let mut unsatisfied = Tensor::ones([b, 1], (Kind::Bool, dev));
    let new_tokens = p.max_new_tokens as i64;
    let mut running_idx = Tensor::full([b, nb, new_tokens.max(1)], -1, i64o);
    let mut beam_idx = running_idx.copy();
    let top_nb_mask = Tensor::cat(
        &[Tensor::ones([nb], (Kind::Bool, dev)), Tensor::zeros([keep - nb], (Kind::Bool, dev))],
        0,
    );
    let eos_t = Tensor::from_slice(eos).to_device(dev);
    let batch_offset = (Tensor::arange(b, i64o) * nb).view([b, 1]);
    let mut cur = prompt_len;
    let mut pos = (real.to_kind(Kind::Int64).cumsum(-1, Kind::Int64) - 1).clamp_min(0);
    tch::no_grad(|| {
        let mut cache = KvCache::default();
        let mut logits =
            model.forward_cached(&ids, &pos, &prefill_mask(&real), &mut cache).select(1, prompt_len - 1);
        while cur < max_len {
            let v = logits.size()[1];
            let log_probs = logits.to_kind(Kind::Float).log_softmax(-1, Kind::Float).view([b, nb, v])
                + running_scores.unsqueeze(-1);
            let (top_lp, top_i) = log_probs.view([b, nb * v]).topk(keep, -1, true, true);
            let cur_beam = top_i.divide_scalar_mode(v, "floor");
            let top_ids = top_i.remainder(v);
            let top_running_idx = gather_beams(&running_idx, &cur_beam);
            let top_running = gather_beams(&running, &cur_beam);
            top_running.select(2, cur).copy_(&top_ids);
            top_running_idx.select(2, cur - prompt_len).copy_(&(&cur_beam + &batch_offset));
            let mut hits = Tensor::isin(&top_ids, &eos_t, false, false);
            if cur + 1 >= max_len {
                hits = hits.ones_like();
            }
            // Running beams: the best continuations that do not stop.
            let top_running_lp = &top_lp + hits.to_kind(Kind::Float) * -1e9;
            let (_, nxt) = top_running_lp.topk(nb, -1, true, true);
            running = gather_beams(&top_running, &nxt);
            running_scores = gather_beams(&top_running_lp, &nxt);
            running_idx = gather_beams(&top_running_idx, &nxt);
            // Finished hypotheses: merge the stopping continuations among the top beams.
            let just = hits.logical_and(&top_nb_mask.unsqueeze(0));
            let mut lp = &top_lp / ((cur + 1 - prompt_len) as f64).powf(p.length_penalty);
            lp += unsatisfied.logical_not().to_kind(Kind::Float) * -1e9;
            lp += just.logical_not().to_kind(Kind::Float) * -1e9;
            let merged_seq = Tensor::cat(&[&sequences, &top_running], 1);
            let merged_scores = Tensor::cat(&[&beam_scores, &lp], 1);
            let merged_idx = Tensor::cat(&[&beam_idx, &top_running_idx], 1);
            let merged_fin = Tensor::cat(&[&finished, &just], 1);
            let (_, best) = merged_scores.topk(nb, -1, true, true);
            sequences = gather_beams(&merged_seq, &best);
            beam_scores = gather_beams(&merged_scores, &best);
            beam_idx = gather_beams(&merged_idx, &best);
            finished = gather_beams(&merged_fin, &best);
            let reorder = running_idx.select(2, cur - prompt_len).reshape([-1]);
            cache.select(&reorder);
            cur += 1;
            // The early-stop heuristic (early_stopping=False): stop once the best running beam
            // cannot beat the worst finished one.
            let best_possible =
                running_scores.narrow(1, 0, 1) / ((cur - prompt_len) as f64).powf(p.length_penalty);
            let worst = beam_scores
                .min_dim(1, true)
                .0
                .expand([b, nb], false)
                .where_self(&finished, &Tensor::full([b, nb], -1e9, (Kind::Float, dev)));
            unsatisfied = unsatisfied.logical_and(&best_possible.gt_tensor(&worst).any_dim(-1, true));
            let go_on = unsatisfied.any().int64_value(&[]) != 0 && hits.all().int64_value(&[]) == 0;
            if !go_on || cur >= max_len {
                break;
            }
            let step_ids = running.select(2, cur - 1).reshape([b * nb, 1]);
            real = Tensor::cat(&[&real, &Tensor::ones([b * nb, 1], (Kind::Bool, dev))], 1);
            pos = pos.narrow(1, pos.size()[1] - 1, 1) + 1;
            let mask = real.view([b * nb, 1, 1, -1]);
            logits = model.forward_cached(&step_ids, &pos, &mask, &mut cache).select(1, 0);
        }
    });
    let best_seq = sequences.select(1, 0);
    let best_idx = beam_idx.select(1, 0);
    let mut out = Vec::new();
    for i in 0..b {
        let n = best_idx.get(i).ne(-1).sum(Kind::Int64).int64_value(&[]);
        let row: Vec<i64> =
            Vec::try_from(best_seq.get(i).narrow(0, prompt_len, n).to_device(tch::Device::Cpu))?;
        out.push(row);
    }
    Ok(out)
}
