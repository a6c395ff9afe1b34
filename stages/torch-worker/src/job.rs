//! The job description a stage hands the worker (a JSON file): what to train, on what, and where
//! to write. The stage fills in every default, so the worker reads the same values that went into
//! the cache key; the defaults here only serve tests that build jobs by hand.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Pretrain,
    Finetune,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub task: Task,
    /// Pretraining: the token directory of the tokenize stage.
    #[serde(default)]
    pub tokens: Option<PathBuf>,
    /// Fine-tuning: the Alpaca JSON list.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// A Hugging Face checkpoint directory to start from (else `params.config`).
    #[serde(default)]
    pub model: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub params: TrainParams,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// A model config (config.json fields) for random initialisation, when no `model` input.
    pub config: Option<Value>,
    pub seed: u64,
    pub epochs: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub max_grad_norm: f64,
    /// `adamw_torch_fused` (libtorch's fused kernel, HF's default) or `adamw_torch`.
    pub optim: String,
    /// Stop after this many optimizer steps (the schedule still spans the full run, as HF's
    /// `max_steps` does not: here it only truncates). `None`: the whole run.
    pub max_steps: Option<u64>,
    pub shuffle: bool,
    /// Pretraining: set the token file's `ignore_ids` to -100 in the labels.
    pub mask_ids: bool,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute dtype: `auto` (bf16 on CUDA, fp32 on CPU), `float32`, `bfloat16`, `float16`.
    pub dtype: String,
    /// Dtype of the saved weights: `auto` (the base checkpoint's, fp32 for random init) or a dtype.
    pub save_dtype: String,
    pub checkpoint_every: u64,
    pub activation_checkpointing: bool,
    /// Intra-op threads (0: libtorch's default).
    pub threads: usize,
    pub max_shard_mb: u64,
    // Fine-tuning.
    pub max_length: usize,
    pub prompt_input: String,
    pub prompt_no_input: String,
    pub pad_token: String,
    pub group_by_length: bool,
    /// Data-parallel training over several processes (issue 8); `None`: one process, unless the
    /// torchrun environment says otherwise (an error then). Left out of the JSON when `None`, so
    /// single-process jobs read and hash as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistParams>,
}

/// How the `distributed` training processes split the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every rank holds the whole model; gradients are averaged by bucketed all-reduce.
    Ddp,
    /// Fully sharded: parameters, gradients and optimizer state split across ranks per unit.
    Fsdp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// NCCL when the rank's device is CUDA, Gloo on the CPU.
    Auto,
    Gloo,
    Nccl,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistParams {
    pub strategy: Strategy,
    pub backend: BackendChoice,
    /// Worker processes per node (the stage spawns them; torchrun's `--nproc_per_node`).
    pub nproc_per_node: usize,
    /// Seconds a collective may wait for the other ranks before failing.
    pub timeout_s: u64,
}

impl Default for DistParams {
    fn default() -> Self {
        DistParams {
            strategy: Strategy::Ddp,
            backend: BackendChoice::Auto,
            nproc_per_node: 1,
            timeout_s: 1800,
        }
    }
}

pub const ALPACA_PROMPT_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";
pub const ALPACA_PROMPT_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:";

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            config: None,
            seed: 42,
            epochs: 1.0,
            batch_size: 1,
            grad_accum: 1,
            lr: 2e-5,
            weight_decay: 0.0,
            warmup_ratio: 0.03,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            max_grad_norm: 1.0,
            optim: "adamw_torch_fused".into(),
            max_steps: None,
            shuffle: true,
            mask_ids: true,
            device: "auto".into(),
            dtype: "auto".into(),
            save_dtype: "auto".into(),
            checkpoint_every: 50,
            activation_checkpointing: false,
            threads: 0,
            max_shard_mb: 5000,
            max_length: 512,
            prompt_input: ALPACA_PROMPT_INPUT.into(),
            prompt_no_input: ALPACA_PROMPT_NO_INPUT.into(),
            pad_token: "[PAD]".into(),
            group_by_length: false,
            distributed: None,
        }
    }
}

impl Job {
    pub fn from_file(path: &std::path::Path) -> Result<Job> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read job {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("invalid job description {}", path.display()))
    }
}
