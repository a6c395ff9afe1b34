//! The LLaMA architecture, written to match transformers' `LlamaForCausalLM` operation by
//! operation: RMSNorm computed in fp32 and cast back before the weight multiplies, rotary
//! embeddings with HF's half rotation, grouped-query attention through libtorch's
//! `scaled_dot_product_attention`, a SwiGLU MLP, and a tied or separate output head.
//!
//! Parameters are kept in `param_kind` (fp32 master weights when training) and cast to
//! `compute_kind` where they are used, so bf16 training on a GPU keeps fp32 weights and optimizer
//! state, as HF Trainer's `bf16=True` does. Tensor names follow transformers, so a state dict goes
//! to and from `model.safetensors` without renaming.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use tch::{Device, Kind, Tensor};

use crate::config::{LlamaConfig, RopeScaling};

pub struct Layer {
    pub input_norm: Tensor,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub o: Tensor,
    pub post_norm: Tensor,
    pub gate: Tensor,
    pub up: Tensor,
    pub down: Tensor,
}

pub struct Llama {
    pub cfg: LlamaConfig,
    pub embed: Tensor,
    pub layers: Vec<Layer>,
    pub norm: Tensor,
    /// `None` when the head is tied to the embedding.
    pub lm_head: Option<Tensor>,
    pub device: Device,
    pub compute_kind: Kind,
    /// RMSNorm through libtorch's `rms_norm` (a fused kernel on CUDA) instead of transformers'
    /// sequence of operations: equal up to the compute dtype's rounding (the normalised value is
    /// not rounded before the weight multiplies). Off by default; the GPU benchmark measures it.
    pub fused_rms_norm: bool,
    inv_freq: Tensor,
}

/// Cached keys and values of one layer for incremental decoding: `[batch, kv_heads, len, head_dim]`.
#[derive(Default)]
pub struct KvCache {
    pub layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn len(&self) -> i64 {
        self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.size()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the rows `index` (beam search reorders hypotheses).
    pub fn select(&mut self, index: &Tensor) {
        for (k, v) in self.layers.iter_mut().flatten() {
            *k = k.index_select(0, index);
            *v = v.index_select(0, index);
        }
    }
}

/// The attention a forward pass uses.
pub enum Attn<'a> {
    /// Plain causal attention over the batch (training; right padding needs no mask because a
    /// padded position only feeds positions that are themselves ignored).
    Causal,
    /// An explicit boolean mask `[batch, 1, q_len, kv_len]` (true = may attend), for left padding
    /// and decoding with a cache.
    Mask(&'a Tensor),
}

/// Names of the parameters that HF Trainer exempts from weight decay (norm weights; LLaMA has
/// no biases).
pub fn is_no_decay(name: &str) -> bool {
    name.contains("norm")
}

fn inv_freq(cfg: &LlamaConfig, device: Device) -> Tensor {
    let dim = cfg.head_dim();
    let base = cfg.rope_theta();
    // As transformers: base ** (arange(0, dim, 2, float32) / dim), in fp32.
    let exponent = Tensor::arange_start_step(0, dim, 2, (Kind::Float, Device::Cpu)) / (dim as f64);
    let inv = Tensor::pow_scalar(base, &exponent).reciprocal();
    let inv = match cfg.rope_scaling().expect("validated") {
        RopeScaling::Default => inv,
        RopeScaling::Linear { factor } => inv / factor,
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            let wavelen = inv.reciprocal() * (2.0 * std::f64::consts::PI);
            // tch's `a.where_self(cond, b)` is `where(cond, a, b)`.
            let scaled = (&inv / factor).where_self(&wavelen.gt(low_wavelen), &inv);
            let smooth = (original_max_position_embeddings / &wavelen - low_freq_factor)
                / (high_freq_factor - low_freq_factor);
            let smoothed: Tensor = (1.0 - &smooth) * &scaled / factor + &smooth * &scaled;
            let medium = wavelen.ge(high_wavelen).logical_and(&wavelen.le(low_wavelen));
            smoothed.where_self(&medium, &scaled)
        }
    };
    inv.to_device(device)
}

impl Llama {
    /// A model initialised as transformers does: normal(0, initializer_range) for embeddings and
    /// projections, ones for norms, the pad row zeroed.
    pub fn random(cfg: LlamaConfig, device: Device, param_kind: Kind, seed: u64) -> Result<Self> {
        cfg.validate_as("the model config")?;
        tch::manual_seed(seed as i64);
        let mut state = BTreeMap::new();
        for name in cfg.param_names() {
            let shape = cfg.param_shape(&name);
            let t = if name.contains("norm") {
                Tensor::ones(shape.as_slice(), (Kind::Float, Device::Cpu))
            } else {
                Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
                    .normal_(0.0, cfg.initializer_range)
            };
            state.insert(name, t);
        }
        if let Some(pad) = cfg.extra.get("pad_token_id").and_then(serde_json::Value::as_i64)
            && (0..cfg.vocab_size).contains(&pad)
        {
            let _ = state["model.embed_tokens.weight"].get(pad).zero_();
        }
        Self::from_state(cfg, state, device, param_kind)
    }

    /// A model from a state dict with transformers' names. Missing, misshapen and unused tensors
    /// are errors, every one at once ([`LlamaConfig::tensor_problems`], the check the stages run
    /// on the safetensors headers when the pipeline is planned); `lm_head.weight` of a tied model
    /// and rotary buffers are ignored.
    pub fn from_state(
        cfg: LlamaConfig,
        mut state: BTreeMap<String, Tensor>,
        device: Device,
        param_kind: Kind,
    ) -> Result<Self> {
        cfg.validate_as("the model config")?;
        let shapes: Vec<(String, Vec<i64>)> = state.iter().map(|(n, t)| (n.clone(), t.size())).collect();
        let problems = cfg.tensor_problems(shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())));
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        let mut take = |name: &str| -> Result<Tensor> {
            let t = state.remove(name).with_context(|| format!("the checkpoint has no tensor `{name}`"))?;
            Ok(t.to_device(device).to_kind(param_kind).detach().set_requires_grad(true))
        };
        let embed = take("model.embed_tokens.weight")?;
        let mut layers = Vec::new();
        for i in 0..cfg.num_hidden_layers {
            let p = |n: &str| format!("model.layers.{i}.{n}.weight");
            layers.push(Layer {
                input_norm: take(&p("input_layernorm"))?,
                q: take(&p("self_attn.q_proj"))?,
                k: take(&p("self_attn.k_proj"))?,
                v: take(&p("self_attn.v_proj"))?,
                o: take(&p("self_attn.o_proj"))?,
                post_norm: take(&p("post_attention_layernorm"))?,
                gate: take(&p("mlp.gate_proj"))?,
                up: take(&p("mlp.up_proj"))?,
                down: take(&p("mlp.down_proj"))?,
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if cfg.tie_word_embeddings { None } else { Some(take("lm_head.weight")?) };
        let inv_freq = inv_freq(&cfg, device);
        Ok(Llama {
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            device,
            compute_kind: param_kind,
            fused_rms_norm: false,
            inv_freq,
        })
    }

    /// Every parameter with its transformers name, in a fixed order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), self.embed.shallow_clone())];
        for (i, l) in self.layers.iter().enumerate() {
            for (n, t) in [
                ("input_layernorm", &l.input_norm),
                ("self_attn.q_proj", &l.q),
                ("self_attn.k_proj", &l.k),
                ("self_attn.v_proj", &l.v),
                ("self_attn.o_proj", &l.o),
                ("post_attention_layernorm", &l.post_norm),
                ("mlp.gate_proj", &l.gate),
                ("mlp.up_proj", &l.up),
                ("mlp.down_proj", &l.down),
            ] {
                out.push((format!("model.layers.{i}.{n}.weight"), t.shallow_clone()));
            }
        }
        out.push(("model.norm.weight".into(), self.norm.shallow_clone()));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".into(), h.shallow_clone()));
        }
        out
    }

    pub fn param_kind(&self) -> Kind {
        self.embed.kind()
    }

    pub fn num_parameters(&self) -> i64 {
        self.named_parameters().iter().map(|(_, t)| t.numel() as i64).sum()
    }

    fn w(&self, t: &Tensor) -> Tensor {
        if t.kind() == self.compute_kind { t.shallow_clone() } else { t.to_kind(self.compute_kind) }
    }

    fn rms_norm(&self, x: &Tensor, weight: &Tensor) -> Tensor {
        if self.fused_rms_norm {
            let h = *x.size().last().expect("a hidden dimension");
            return x.rms_norm([h], Some(self.w(weight)), self.cfg.rms_norm_eps);
        }
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let var = xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float);
        let y = xf * (var + self.cfg.rms_norm_eps).rsqrt();
        self.w(weight) * y.to_kind(kind)
    }

    /// cos and the signed sin `[batch, 1, len, head_dim]` for positions `[batch, len]`: HF's
    /// `emb = cat(freqs, freqs)`, its cos, and its sin with the first half negated, so that
    /// [`apply_rope`] multiplies the swapped halves directly instead of negating one of them for
    /// every q and k (the same products, bit for bit: negation is exact).
    pub fn rope(&self, positions: &Tensor) -> (Tensor, Tensor) {
        let freqs = positions.to_kind(Kind::Float).unsqueeze(-1) * &self.inv_freq;
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let sin = freqs.sin();
        let signed = Tensor::cat(&[sin.neg(), sin], -1);
        (emb.cos().to_kind(self.compute_kind).unsqueeze(1), signed.to_kind(self.compute_kind).unsqueeze(1))
    }

    /// Token embeddings `[batch, len, hidden]` in the compute kind.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed, ids, -1, false, false).to_kind(self.compute_kind)
    }

    /// One decoder layer. With a cache, the new keys and values are appended to `cache`.
    pub fn layer(
        &self,
        i: usize,
        x: &Tensor,
        rope: &(Tensor, Tensor),
        attn: &Attn,
        cache: Option<&mut Option<(Tensor, Tensor)>>,
    ) -> Tensor {
        let l = &self.layers[i];
        let (b, t) = (x.size()[0], x.size()[1]);
        let (nh, nkv, hd) = (self.cfg.num_attention_heads, self.cfg.num_kv_heads(), self.cfg.head_dim());
        let h = self.rms_norm(x, &l.input_norm);
        let q = h.linear::<Tensor>(&self.w(&l.q), None).view([b, t, nh, hd]).transpose(1, 2);
        let k = h.linear::<Tensor>(&self.w(&l.k), None).view([b, t, nkv, hd]).transpose(1, 2);
        let v = h.linear::<Tensor>(&self.w(&l.v), None).view([b, t, nkv, hd]).transpose(1, 2);
        let (cos, sin) = rope;
        let q = apply_rope(&q, cos, sin);
        let mut k = apply_rope(&k, cos, sin);
        let mut v = v;
        if let Some(slot) = cache {
            if let Some((pk, pv)) = slot.as_ref() {
                k = Tensor::cat(&[pk, &k], 2);
                v = Tensor::cat(&[pv, &v], 2);
            }
            *slot = Some((k.shallow_clone(), v.shallow_clone()));
        }
        let a = match attn {
            Attn::Causal => {
                Tensor::scaled_dot_product_attention::<Tensor>(&q, &k, &v, None, 0.0, t > 1, None, nkv != nh)
            }
            Attn::Mask(m) => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, Some(*m), 0.0, false, None, nkv != nh)
            }
        };
        let a = a.transpose(1, 2).reshape([b, t, nh * hd]).linear::<Tensor>(&self.w(&l.o), None);
        let x = x + a;
        let h = self.rms_norm(&x, &l.post_norm);
        let g = h.linear::<Tensor>(&self.w(&l.gate), None).silu();
        let u = h.linear::<Tensor>(&self.w(&l.up), None);
        let m = (g * u).linear::<Tensor>(&self.w(&l.down), None);
        x + m
    }

    /// Final norm and output head: logits `[batch, len, vocab]` in the compute kind.
    pub fn head(&self, x: &Tensor) -> Tensor {
        self.final_norm(x).linear::<Tensor>(&self.head_weight(), None)
    }

    /// The final norm of the last layer's output (what [`Self::head`] projects).
    pub fn final_norm(&self, x: &Tensor) -> Tensor {
        self.rms_norm(x, &self.norm)
    }

    /// The output head's weight `[vocab, hidden]` in the compute kind (the embedding when tied).
    pub fn head_weight(&self) -> Tensor {
        self.w(self.lm_head.as_ref().unwrap_or(&self.embed))
    }

    /// Positions 0..len for every row.
    pub fn default_positions(&self, b: i64, t: i64, offset: i64) -> Tensor {
        Tensor::arange_start(offset, offset + t, (Kind::Int64, self.device))
            .unsqueeze(0)
            .expand([b, t], false)
    }

    /// Logits of a causal forward pass over `ids` `[batch, len]` (no cache, no padding mask).
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        self.head(&self.hidden_states(ids))
    }

    /// The last decoder layer's output of a causal forward pass over `ids` (before the final
    /// norm and the head).
    pub fn hidden_states(&self, ids: &Tensor) -> Tensor {
        let (b, t) = (ids.size()[0], ids.size()[1]);
        let rope = self.rope(&self.default_positions(b, t, 0));
        let mut x = self.embed(ids);
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &rope, &Attn::Causal, None);
        }
        x
    }

    /// A forward pass for generation: explicit positions and mask, keys and values cached.
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        positions: &Tensor,
        mask: &Tensor,
        cache: &mut KvCache,
    ) -> Tensor {
        if cache.layers.is_empty() {
            cache.layers = (0..self.layers.len()).map(|_| None).collect();
        }
        let rope = self.rope(positions);
        let mut x = self.embed(ids);
        for i in 0..self.layers.len() {
            x = self.layer(i, &x, &rope, &Attn::Mask(mask), Some(&mut cache.layers[i]));
        }
        self.head(&x)
    }

    /// Alpaca's `smart_tokenizer_and_embedding_resize` after its tokenizer got `num_new` special
    /// tokens (camel adds only `[PAD]`): `resize_token_embeddings(len(tokenizer))`, which cuts the
    /// rows beyond `new_vocab` off when the checkpoint has more (transformers keeps the first ones)
    /// and adds rows when it has fewer, then the last `num_new` rows of the embedding and of the
    /// head set to the mean of the rows before them. Rows added beyond those `num_new` are the mean
    /// of the old rows (transformers draws them around it; Alpaca never has any).
    pub fn alpaca_resize(&mut self, new_vocab: i64, num_new: i64) -> Result<()> {
        ensure!(new_vocab > num_new && num_new >= 0, "cannot resize the vocabulary to {new_vocab} rows");
        if new_vocab < self.cfg.vocab_size {
            let cut = |w: &Tensor| tch::no_grad(|| w.narrow(0, 0, new_vocab).copy()).set_requires_grad(true);
            self.embed = cut(&self.embed);
            if let Some(h) = &self.lm_head {
                self.lm_head = Some(cut(h));
            }
            self.cfg.vocab_size = new_vocab;
        } else {
            self.grow_vocab(new_vocab)?;
        }
        if num_new > 0 {
            let keep = new_vocab - num_new;
            let mean_last = |w: &Tensor| {
                tch::no_grad(|| {
                    let mean = w.narrow(0, 0, keep).to_kind(Kind::Float).mean_dim(0, true, Kind::Float);
                    w.narrow(0, keep, num_new)
                        .copy_(&mean.to_kind(w.kind()).expand([num_new, w.size()[1]], false));
                })
            };
            mean_last(&self.embed);
            if let Some(h) = &self.lm_head {
                mean_last(h);
            }
        }
        Ok(())
    }

    /// Grows the vocabulary to `new_vocab`, initialising the new rows of the embedding and of the
    /// head with the mean of the existing rows (as Alpaca's `smart_tokenizer_and_embedding_resize`).
    pub fn grow_vocab(&mut self, new_vocab: i64) -> Result<()> {
        let old = self.cfg.vocab_size;
        ensure!(new_vocab >= old, "cannot shrink the vocabulary from {old} to {new_vocab}");
        if new_vocab == old {
            return Ok(());
        }
        let grow = |w: &Tensor| -> Tensor {
            tch::no_grad(|| {
                let mean = w.to_kind(Kind::Float).mean_dim(0, true, Kind::Float).to_kind(w.kind());
                Tensor::cat(&[w, &mean.expand([new_vocab - old, w.size()[1]], false)], 0)
            })
            .detach()
            .set_requires_grad(true)
        };
        self.embed = grow(&self.embed);
        if let Some(h) = &self.lm_head {
            self.lm_head = Some(grow(h));
        }
        self.cfg.vocab_size = new_vocab;
        Ok(())
    }
}

/// HF's `x·cos + rotate_half(x)·sin` with `rotate_half(x) = cat(-x2, x1)`, written with the
/// signed sin of [`Llama::rope`]: `cat(x2, x1)·signed_sin`.
fn apply_rope(x: &Tensor, cos: &Tensor, signed_sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let swapped = Tensor::cat(&[x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
    x * cos + swapped * signed_sin
}

/// HF's causal-LM loss: logits shifted by one against labels, fp32 cross-entropy, mean over the
/// labels that are not -100. A batch with no label left gives 0 (and no gradient) instead of NaN.
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let (logits, labels) = shifted(logits, labels);
    if labels.ne(-100).sum(Kind::Int64).int64_value(&[]) == 0 {
        return logits.sum(Kind::Float) * 0.0;
    }
    logits.cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Mean, -100, 0.0)
}

/// The sum of the causal-LM token losses (cross entropy of each position's logits against the
/// next label, fp32), over the labels that are not -100: the numerator of transformers'
/// `ForCausalLMLoss` with `num_items_in_batch`. Zero (with a graph) when no label counts.
pub fn causal_lm_loss_sum(logits: &Tensor, labels: &Tensor) -> Tensor {
    let (logits, labels) = shifted(logits, labels);
    logits.cross_entropy_loss::<Tensor>(&labels, None, tch::Reduction::Sum, -100, 0.0)
}

/// The logits `[batch·len, vocab]` in fp32 and, row for row, the label each position predicts:
/// the next one, -100 after the last. As transformers' `ForCausalLMLoss`, the labels are shifted
/// (padded with -100) rather than the logits cut, so the logits are used in place (no copy of the
/// largest tensor of the step, nor a zero-filled one for its gradient); the last position of each
/// row is ignored by the loss, as it was absent before.
fn shifted(logits: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
    let (b, t, v) = (logits.size()[0], logits.size()[1], logits.size()[2]);
    let next = Tensor::cat(&[labels.narrow(1, 1, t - 1), labels.narrow(1, 0, 1).full_like(-100)], 1);
    (logits.to_kind(Kind::Float).reshape([b * t, v]), next.reshape([b * t]))
}

/// The labels that count in [`causal_lm_loss`] and [`causal_lm_loss_sum`]: not -100, from the
/// second position on (the first is never a target after the shift).
pub fn label_tokens(labels: &Tensor) -> i64 {
    let t = labels.size()[1];
    if t < 2 {
        return 0;
    }
    labels.narrow(1, 1, t - 1).ne(-100).sum(Kind::Int64).int64_value(&[])
}

/// Checks a tensor kind name from configs or params.
pub fn kind_from_name(name: &str) -> Result<Kind> {
    Ok(match name {
        "float32" | "fp32" | "f32" => Kind::Float,
        "float16" | "fp16" | "f16" => Kind::Half,
        "bfloat16" | "bf16" => Kind::BFloat16,
        other => bail!("unknown dtype {other:?} (float32, float16 or bfloat16)"),
    })
}

pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        _ => "float32",
    }
}
