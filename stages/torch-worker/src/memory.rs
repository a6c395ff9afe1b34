//! How much device memory a training step needs, estimated from the config and the micro-batch
//! shape. It exists for `activation_checkpointing: auto`: recomputing every layer costs about a
//! third more compute, so it should be paid only where keeping the activations would not fit.
//! The estimate counts what the step allocates beyond the fp32 parameters already on the device
//! (they are resident when the decision is made): gradients, AdamW moments, the compute-dtype
//! copies of the weights that the backward pass keeps, the activations each decoder layer saves
//! for its backward (counted tensor by tensor from src/model.rs), one layer's worth of backward
//! workspace, and the head's logits (one chunk of them: src/step.rs). It leaves out the CUDA
//! allocator's fragmentation and the libraries' workspaces (cuBLAS, cuDNN); hence the margin in
//! [`checkpointing_needed`].

use tch::Kind;

use crate::config::LlamaConfig;
use crate::step::ce_chunk_rows;

/// The share of the free memory a step may plan to use; the rest is left to fragmentation and
/// the libraries' workspaces.
pub const USABLE_SHARE: f64 = 0.85;

/// Parameters of a config, as the model holds them.
pub fn parameters(cfg: &LlamaConfig) -> u64 {
    let (h, i, v, l) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers);
    let q = cfg.num_attention_heads * cfg.head_dim();
    let kv = cfg.num_kv_heads() * cfg.head_dim();
    let layer = 2 * h + 2 * h * q + 2 * h * kv + 3 * h * i;
    let embeddings = if cfg.tie_word_embeddings { v * h } else { 2 * v * h };
    (embeddings + h + l * layer) as u64
}

/// Bytes one decoder layer saves for its backward pass per token, in compute dtype `kind`.
pub fn layer_activation_bytes(cfg: &LlamaConfig, kind: Kind) -> u64 {
    let e = kind.elt_size_in_bytes() as i64;
    let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
    let q = cfg.num_attention_heads * cfg.head_dim();
    let kv = cfg.num_kv_heads() * cfg.head_dim();
    // RMSNorm keeps its fp32 input (the layer's input itself when computing in fp32).
    let fp32_input = if e < 4 { 4 * h } else { e * h };
    let norms = 2 * (fp32_input + e * h); // the fp32 input and the normed output cast back, twice
    let projections_in = 2 * e * h; // the normed states the q/k/v and gate/up projections read
    let rope = 2 * e * (q + kv); // q and k before rotation and their rotated halves
    let attention = e * (q + 2 * kv) + 2 * e * q; // SDPA's q, k, v and output, o_proj's input
    let mlp = 4 * e * i; // gate, silu(gate), up, silu(gate)·up
    (norms + projections_in + rope + attention + mlp) as u64
}

/// Bytes a training step on a micro-batch of `batch` × `seq` tokens needs beyond the fp32
/// parameters, computing in `kind`, with or without activation checkpointing.
pub fn step_bytes(cfg: &LlamaConfig, batch: i64, seq: i64, kind: Kind, checkpointing: bool) -> u64 {
    let n = parameters(cfg);
    let e = kind.elt_size_in_bytes() as u64;
    let tokens = (batch * seq) as u64;
    let (h, v, l) = (cfg.hidden_size as u64, cfg.vocab_size as u64, cfg.num_hidden_layers as u64);
    let layer_params =
        (parameters(cfg) - if cfg.tie_word_embeddings { v * h } else { 2 * v * h } - h) / l.max(1);
    let head_params = v * h;
    // fp32 gradients and the two AdamW moments.
    let state = 4 * n + 8 * n;
    let per_layer = layer_activation_bytes(cfg, kind) * tokens;
    // Compute-dtype weight copies the backward reads: every layer's without recomputation, the
    // layer being recomputed's with it (none in fp32, where the weights are used as they are).
    let copies = if e < 4 {
        e * (head_params + if checkpointing { layer_params } else { l * layer_params })
    } else {
        0
    };
    let activations = if checkpointing {
        // Each layer's input, and the one layer recomputed at a time.
        l * e * h * tokens + per_layer
    } else {
        l * per_layer
    };
    // The backward of one layer: gradients of its activations, about as large as what it saved.
    let workspace = per_layer;
    // One chunk of logits: in the compute dtype, their fp32 log-softmax and its gradient.
    let rows = ((batch * (seq - 1).max(0)) as u64).min(ce_chunk_rows(cfg.vocab_size) as u64);
    let logits = rows * v * (e + 4 + 4);
    // The embedding output and the gradient flowing between layers.
    let stream = 2 * e * h * tokens;
    state + copies + activations + workspace + logits + stream
}

/// Whether `activation_checkpointing: auto` recomputes the layers for a micro-batch of `batch` ×
/// `seq`: when the step without it would not fit in [`USABLE_SHARE`] of `free` bytes (the
/// device's free memory with the parameters loaded). Without a device memory figure (the CPU)
/// it does not.
pub fn checkpointing_needed(cfg: &LlamaConfig, batch: i64, seq: i64, kind: Kind, free: Option<u64>) -> bool {
    match free {
        Some(free) => step_bytes(cfg, batch, seq, kind, false) as f64 > USABLE_SHARE * free as f64,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn config(hidden: i64, inter: i64, layers: i64, heads: i64, kv: i64) -> LlamaConfig {
        LlamaConfig::from_value(serde_json::json!({"vocab_size": 32000, "hidden_size": hidden,
            "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "tie_word_embeddings": false}))
        .unwrap()
    }

    #[test]
    fn the_parameter_count_is_the_models() {
        let cfg = config(64, 128, 2, 4, 2);
        let m = crate::model::Llama::random(cfg.clone(), tch::Device::Cpu, Kind::Float, 0).unwrap();
        assert_eq!(parameters(&cfg), m.num_parameters() as u64);
    }

    #[test]
    fn a_layer_saves_what_the_hand_count_says() {
        // hidden 2048, 16 heads of 128 (all kv heads), intermediate 5632, bf16: RMSNorm's fp32
        // inputs (2 × 8 KiB), 9 hidden-sized bf16 tensors, the kv-sized k pieces (3 × 4 KiB),
        // and 4 intermediate-sized ones (4 × 11 KiB).
        let cfg = config(2048, 5632, 16, 16, 16);
        let want = 2 * 4 * 2048
            + 2 * 2 * 2048
            + 2 * 2 * 2048
            + 2 * 2 * (2048 + 2048)
            + 2 * (2048 + 2 * 2048)
            + 2 * 2 * 2048
            + 4 * 2 * 5632;
        assert_eq!(layer_activation_bytes(&cfg, Kind::BFloat16), want);
        // In fp32 the norms' input is the layer's input, stored once.
        assert!(layer_activation_bytes(&cfg, Kind::Float) < 2 * layer_activation_bytes(&cfg, Kind::BFloat16));
    }

    #[test]
    fn auto_checkpoints_only_where_the_step_would_not_fit() {
        // The ~1.1B benchmark config (batch 4 × 2048, bf16): about 30 GiB without recomputation,
        // so it fits an H200 (about 140 GiB) and an 80 GiB card, not a 24 GiB one.
        let cfg = config(2048, 5632, 16, 16, 16);
        let without = step_bytes(&cfg, 4, 2048, Kind::BFloat16, false);
        let with = step_bytes(&cfg, 4, 2048, Kind::BFloat16, true);
        println!(
            "1.1B, 4 × 2048, bf16: {:.1} GiB without recomputation, {:.1} GiB with",
            without as f64 / GIB as f64,
            with as f64 / GIB as f64
        );
        assert!((25 * GIB..40 * GIB).contains(&without), "{without}");
        assert!(with < without / 2, "recomputation keeps only layer inputs: {with} vs {without}");
        assert!(!checkpointing_needed(&cfg, 4, 2048, Kind::BFloat16, Some(138 * GIB)));
        assert!(!checkpointing_needed(&cfg, 4, 2048, Kind::BFloat16, Some(75 * GIB)));
        assert!(checkpointing_needed(&cfg, 4, 2048, Kind::BFloat16, Some(22 * GIB)));
        // A longer micro-batch needs more: at 8 × 4096 the 80 GiB card recomputes.
        assert!(checkpointing_needed(&cfg, 8, 4096, Kind::BFloat16, Some(75 * GIB)));
        // Activations grow with the tokens, the optimizer state does not.
        // (From 2 rows of 2048 on, the logits are one chunk's whatever the batch.)
        let two = step_bytes(&cfg, 2, 2048, Kind::BFloat16, false);
        let three = step_bytes(&cfg, 3, 2048, Kind::BFloat16, false);
        let four = step_bytes(&cfg, 4, 2048, Kind::BFloat16, false);
        assert_eq!(four - three, three - two);
        let one = step_bytes(&cfg, 1, 2048, Kind::BFloat16, false);
        assert!(one > 12 * parameters(&cfg));
        // The CPU: no device memory figure, no recomputation.
        assert!(!checkpointing_needed(&cfg, 64, 4096, Kind::Float, None));
    }
}
