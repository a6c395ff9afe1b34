//! The training job (`camel-torch-worker train JOB.json`) and the params it carries.
//!
//! The params of `kind: pretrain` and `kind: finetune` are the stages' own params (as written
//! under `params:` in a pipeline, and as hashed into their cache keys); the worker reads both as
//! one [`TrainParams`], the union of the two. All three structs are generated from one field list
//! ([`train_params!`]), so a param is added in one place. A [`Job`] on the wire carries only its
//! task's params, exactly the stage's params with every default filled in, so the worker reads the
//! values that went into the cache key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::prompt::{ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT};

/// Generates [`PretrainParams`], [`FinetuneParams`] and [`TrainParams`] (common fields, then
/// pretraining's, then fine-tuning's), their defaults, and the conversions between them.
macro_rules! train_params {
    (
        common { $($(#[$cm:meta])* $cf:ident : $ct:ty = $cd:expr,)* }
        pretrain { $($(#[$pm:meta])* $pf:ident : $pt:ty = $pd:expr,)* }
        finetune { $($(#[$fm:meta])* $ff:ident : $ft:ty = $fd:expr,)* }
    ) => {
        /// Params of `kind: pretrain`: HF Trainer's, with CAMEL's values as defaults. Every field
        /// may be omitted; unknown ones are errors.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        pub struct PretrainParams {
            $($(#[$cm])* pub $cf: $ct,)*
            $($(#[$pm])* pub $pf: $pt,)*
        }

        /// Params of `kind: finetune`: the common training params, then the instruction data's.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        pub struct FinetuneParams {
            $($(#[$cm])* pub $cf: $ct,)*
            $($(#[$fm])* pub $ff: $ft,)*
        }

        /// What the worker reads: the params of both training kinds (a job fills in the other
        /// kind's with their defaults).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(deny_unknown_fields, default)]
        pub struct TrainParams {
            $($(#[$cm])* pub $cf: $ct,)*
            $($(#[$pm])* pub $pf: $pt,)*
            $($(#[$fm])* pub $ff: $ft,)*
        }

        impl Default for PretrainParams {
            fn default() -> Self {
                PretrainParams { $($cf: $cd,)* $($pf: $pd,)* }
            }
        }

        impl Default for FinetuneParams {
            fn default() -> Self {
                FinetuneParams { $($cf: $cd,)* $($ff: $fd,)* }
            }
        }

        impl Default for TrainParams {
            fn default() -> Self {
                TrainParams { $($cf: $cd,)* $($pf: $pd,)* $($ff: $fd,)* }
            }
        }

        impl From<PretrainParams> for TrainParams {
            fn from(p: PretrainParams) -> Self {
                TrainParams { $($cf: p.$cf,)* $($pf: p.$pf,)* $($ff: $fd,)* }
            }
        }

        impl From<FinetuneParams> for TrainParams {
            fn from(p: FinetuneParams) -> Self {
                TrainParams { $($cf: p.$cf,)* $($pf: $pd,)* $($ff: p.$ff,)* }
            }
        }

        impl From<&TrainParams> for PretrainParams {
            fn from(p: &TrainParams) -> Self {
                PretrainParams { $($cf: p.$cf.clone(),)* $($pf: p.$pf.clone(),)* }
            }
        }

        impl From<&TrainParams> for FinetuneParams {
            fn from(p: &TrainParams) -> Self {
                FinetuneParams { $($cf: p.$cf.clone(),)* $($ff: p.$ff.clone(),)* }
            }
        }
    };
}

train_params! {
    common {
        /// Random initialisation from these config.json fields when there is no `model` input.
        config: Option<Value> = None,
        /// Seeds the data order of every epoch, the held-out split and a random initialisation.
        seed: u64 = 42,
        /// Passes over the training data, possibly fractional (steps: ⌈epochs × steps per epoch⌉).
        #[schemars(extend("exclusiveMinimum" = 0))]
        epochs: f64 = 1.0,
        /// Per-device micro-batch size.
        #[schemars(range(min = 1))]
        batch_size: usize = 1,
        /// Micro-batches whose gradients are accumulated into one optimizer step (global batch =
        /// batch_size × grad_accum × ranks).
        #[schemars(range(min = 1))]
        grad_accum: usize = 1,
        /// Peak learning rate (linear warmup, then cosine decay to 0 over the run, as HF
        /// Trainer's `get_cosine_schedule_with_warmup`).
        #[schemars(range(min = 0))]
        lr: f64 = 2e-5,
        /// AdamW's decoupled weight decay; never applied to biases and norm weights (HF's groups).
        #[schemars(range(min = 0))]
        weight_decay: f64 = 0.0,
        /// Share of the optimizer steps spent warming the learning rate up linearly from 0.
        #[schemars(range(min = 0, max = 1))]
        warmup_ratio: f64 = 0.03,
        /// AdamW's decay rate of the first-moment (mean) estimate.
        #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
        adam_beta1: f64 = 0.9,
        /// AdamW's decay rate of the second-moment (squared gradient) estimate.
        #[schemars(range(min = 0), extend("exclusiveMaximum" = 1))]
        adam_beta2: f64 = 0.999,
        /// AdamW's epsilon, added to the denominator for numerical stability.
        #[schemars(extend("exclusiveMinimum" = 0))]
        adam_eps: f64 = 1e-8,
        /// Gradients are clipped to this total 2-norm before each optimizer step (0: no clipping).
        #[schemars(range(min = 0))]
        max_grad_norm: f64 = 1.0,
        /// `adamw_torch_fused` (libtorch's fused kernel, HF Trainer's default) or `adamw_torch`.
        optim: String = "adamw_torch_fused".into(),
        /// Stop after this many optimizer steps (the schedule still spans the whole run, as HF's
        /// `max_steps` does not: here it only truncates). `None`: the whole run.
        #[schemars(range(min = 1))]
        max_steps: Option<u64> = None,
        /// Shuffle the examples anew each epoch (seeded); otherwise they are read in order.
        shuffle: bool = true,
        /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
        device: String = "auto".into(),
        /// Compute dtype: `auto` (bf16 on CUDA with fp32 master weights, fp32 on CPU), `float32`, `bfloat16`.
        dtype: String = "auto".into(),
        /// Dtype of the saved weights: `auto` (the base checkpoint's; fp32 for random init).
        save_dtype: String = "auto".into(),
        /// Optimizer steps between checkpoints in the scratch dir (0: none).
        checkpoint_every: u64 = 50,
        /// Recompute each decoder layer in the backward pass instead of keeping its activations:
        /// `false`, `true`, or `auto` (where a step's estimated memory would not fit the device's
        /// free memory; never on the CPU).
        activation_checkpointing: Checkpointing = Checkpointing::Off,
        /// libtorch intra-op threads (0: its default, one per core).
        threads: usize = 0,
        /// Shard the saved weights above this many MB.
        #[schemars(range(min = 1))]
        max_shard_mb: u64 = 5000,
        /// Data-parallel training over several processes (see docs/training.md, "Distributed"):
        /// `{nproc_per_node: 8, strategy: fsdp}`. `None`: one process, unless the torchrun
        /// environment says otherwise (an error then). Left out of the JSON when `None`, so
        /// single-process params read and hash as before it existed.
        #[serde(skip_serializing_if = "Option::is_none")]
        distributed: Option<DistParams> = None,
        /// What a step's loss is divided by (see docs/training.md, "Loss normalisation"):
        /// `global_tokens`, the label tokens of the whole global batch (transformers ≥ 4.46), so
        /// that any split of a batch over micro-batches and ranks trains alike; or `camel`, the
        /// mean per micro-batch averaged over micro-batches and ranks, as CAMEL's published run.
        /// Left out of the JSON at its default, so the params' serialization keeps its shape; the
        /// kinds' `VERSION` 2 is what separates today's default from the old formula's entries.
        #[serde(skip_serializing_if = "LossNormalization::is_default")]
        #[schemars(extend("default" = "global_tokens"))]
        loss_normalization: LossNormalization = LossNormalization::GlobalTokens,
        /// Share of the examples (token blocks or instruction records) held out for evaluation and
        /// never trained on, chosen by `seed`; in [0, 1), 0: no held-out evaluation. Left out of
        /// the JSON when 0, so params without it read and hash as before it existed.
        #[serde(skip_serializing_if = "is_zero_f64")]
        #[schemars(range(min = 0), extend("exclusiveMaximum" = 1, "default" = 0.0))]
        eval_fraction: f64 = 0.0,
        /// Optimizer steps between held-out evaluations (0: only after the last step); needs
        /// `eval_fraction`. Left out of the JSON when 0.
        #[serde(skip_serializing_if = "is_zero_u64")]
        #[schemars(extend("default" = 0))]
        eval_every: u64 = 0,
    }
    pretrain {
        /// Set the token file's ignored ids (`[ANON]`) to -100 in the labels. CAMEL's published
        /// collator built masked labels but passed the unmasked ids, so its model did learn
        /// `[ANON]`: `mask_ids: false` reproduces that.
        mask_ids: bool = true,
    }
    finetune {
        /// Prompt + response tokens beyond this are cut.
        #[schemars(range(min = 1))]
        max_length: usize = 512,
        /// Prompt template for records with a non-empty `input` (`{instruction}`, `{input}`).
        prompt_input: String = ALPACA_PROMPT_INPUT.into(),
        /// Prompt template for records without one.
        prompt_no_input: String = ALPACA_PROMPT_NO_INPUT.into(),
        /// Added to the tokenizer (new embedding rows = the mean of the old ones) when it has no pad token.
        pad_token: String = "[PAD]".into(),
        /// Batches of similar lengths (less padding), in a seeded order.
        group_by_length: bool = false,
    }
}

/// `activation_checkpointing`: off, on, or decided per micro-batch shape from a memory estimate
/// (docs/training.md). Written as `false`, `true` and `"auto"`, so the booleans read and hash as
/// they did when the param was one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checkpointing {
    #[default]
    Off,
    On,
    Auto,
}

impl Serialize for Checkpointing {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Checkpointing::Off => s.serialize_bool(false),
            Checkpointing::On => s.serialize_bool(true),
            Checkpointing::Auto => s.serialize_str("auto"),
        }
    }
}

/// Written as `false`, `true` or `"auto"`.
impl schemars::JsonSchema for Checkpointing {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Checkpointing".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"anyOf": [{"type": "boolean"}, {"const": "auto"}], "default": false})
    }
}

impl<'de> Deserialize<'de> for Checkpointing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bool(bool),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Bool(false) => Ok(Checkpointing::Off),
            Written::Bool(true) => Ok(Checkpointing::On),
            Written::Text(t) if t == "auto" => Ok(Checkpointing::Auto),
            Written::Text(t) => Err(serde::de::Error::custom(format!(
                "activation_checkpointing must be true, false or \"auto\", not {t:?}"
            ))),
        }
    }
}

/// How a training step's token losses are reduced to the loss that is backpropagated and logged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossNormalization {
    /// The sum of the step's token losses over the number of label tokens (not -100, after the
    /// causal shift) in the whole global batch: every micro-batch of every rank, counted before
    /// the forward passes. transformers' `num_items_in_batch` with
    /// `average_tokens_across_devices=True`: the loss and gradients do not depend on how the
    /// global batch is split.
    #[default]
    GlobalTokens,
    /// CAMEL's published behaviour (transformers < 4.46): each micro-batch's token mean, divided
    /// by the accumulation steps, and the ranks' gradients averaged. With masked labels a split
    /// changes the weight of each token.
    Camel,
}

impl LossNormalization {
    pub fn is_default(&self) -> bool {
        *self == LossNormalization::default()
    }
}

fn is_zero_f64(x: &f64) -> bool {
    *x == 0.0
}

fn is_zero_u64(x: &u64) -> bool {
    *x == 0
}

/// How the `distributed` training processes split the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every rank holds the whole model; gradients are averaged by bucketed all-reduce.
    Ddp,
    /// Fully sharded: parameters, gradients and optimizer state split across ranks per unit.
    Fsdp,
}

/// The collective backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// NCCL when the rank's device is CUDA, Gloo on the CPU.
    Auto,
    Gloo,
    Nccl,
}

/// The training stages' param `distributed:`, handed to the worker in its job as it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DistParams {
    /// Worker processes this `camel run` starts, one device each (torchrun's `--nproc_per_node`).
    /// Under an external launcher (torchrun, srun) the launcher starts the processes and this is
    /// not used.
    #[schemars(range(min = 1))]
    pub nproc_per_node: usize,
    /// `ddp` (replicated weights, all-reduced gradients) or `fsdp` (full shard per decoder layer).
    pub strategy: Strategy,
    /// `auto` (NCCL on CUDA devices, Gloo on CPUs), `nccl` or `gloo`.
    pub backend: BackendChoice,
    /// Seconds a collective or the rendezvous may wait before the job fails instead of hanging.
    #[schemars(range(min = 1))]
    pub timeout_s: u64,
    /// FSDP: decoder layers whose all-gather runs ahead of the one computing, and gradient
    /// reduce-scatters left in flight (0: every collective waited for at once). Memory per rank
    /// grows by up to this many gathered layers and fp32 layer gradients; the results do not
    /// change. Left out of the JSON at its default (1), so params without it read and hash as
    /// before it existed.
    #[serde(skip_serializing_if = "is_one")]
    #[schemars(extend("default" = 1))]
    pub prefetch: usize,
}

fn is_one(x: &usize) -> bool {
    *x == 1
}

impl Default for DistParams {
    fn default() -> Self {
        DistParams {
            nproc_per_node: 1,
            strategy: Strategy::Ddp,
            backend: BackendChoice::Auto,
            timeout_s: 1800,
            prefetch: 1,
        }
    }
}

impl DistParams {
    /// What parsing cannot check.
    pub fn validate(&self) -> Result<(), String> {
        if self.nproc_per_node == 0 {
            return Err("distributed.nproc_per_node must be at least 1".into());
        }
        if self.timeout_s == 0 {
            return Err("distributed.timeout_s must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Pretrain,
    Finetune,
}

/// A training job: what to train, on what, and where to write. Written by the training stages
/// (with every default filled in), read by `camel-torch-worker train`; the defaults only serve
/// tests that build jobs by hand.
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
    /// Held-out examples in the training input's format (a token directory, or an Alpaca JSON
    /// list), evaluated instead of an `eval_fraction` split.
    #[serde(default)]
    pub eval: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub scratch_dir: PathBuf,
    pub params: TrainParams,
}

/// The params a job's task has: the other kind's are left out (they hold their defaults).
#[derive(Serialize)]
#[serde(untagged)]
enum TaskParams {
    Pretrain(PretrainParams),
    Finetune(FinetuneParams),
}

/// On the wire, a job names the input its task reads (`tokens` or `data`), always `model` (null
/// for a pretraining from `config`), and its task's params only.
impl Serialize for Job {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            task: Task,
            #[serde(skip_serializing_if = "Option::is_none")]
            tokens: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a Path>,
            model: Option<&'a Path>,
            #[serde(skip_serializing_if = "Option::is_none")]
            eval: Option<&'a Path>,
            out_dir: &'a Path,
            scratch_dir: &'a Path,
            params: TaskParams,
        }
        Wire {
            task: self.task,
            tokens: self.tokens.as_deref(),
            data: self.data.as_deref(),
            model: self.model.as_deref(),
            eval: self.eval.as_deref(),
            out_dir: &self.out_dir,
            scratch_dir: &self.scratch_dir,
            params: match self.task {
                Task::Pretrain => TaskParams::Pretrain((&self.params).into()),
                Task::Finetune => TaskParams::Finetune((&self.params).into()),
            },
        }
        .serialize(s)
    }
}

impl Job {
    /// A `pretrain` stage's job.
    pub fn pretrain(
        tokens: PathBuf,
        model: Option<PathBuf>,
        params: PretrainParams,
        out_dir: PathBuf,
        scratch_dir: PathBuf,
    ) -> Job {
        Job {
            task: Task::Pretrain,
            tokens: Some(tokens),
            data: None,
            model,
            eval: None,
            out_dir,
            scratch_dir,
            params: params.into(),
        }
    }

    /// A `finetune` stage's job.
    pub fn finetune(
        data: PathBuf,
        model: PathBuf,
        params: FinetuneParams,
        out_dir: PathBuf,
        scratch_dir: PathBuf,
    ) -> Job {
        Job {
            task: Task::Finetune,
            tokens: None,
            data: Some(data),
            model: Some(model),
            eval: None,
            out_dir,
            scratch_dir,
            params: params.into(),
        }
    }

    /// The job with held-out examples read from `eval` (the stage's optional `eval` input).
    pub fn with_eval(mut self, eval: Option<PathBuf>) -> Job {
        self.eval = eval;
        self
    }

    /// Reads a job file.
    pub fn from_file(path: &Path) -> Result<Job, crate::ReadError> {
        crate::read_json_file(path, "job description")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::round_trip;

    /// What `kind: pretrain` wrote before this crate (its `json!` job), for a default stage.
    const PRETRAIN_JOB: &str = r#"{
  "model": null,
  "out_dir": "/ws/tmp/out",
  "params": {
    "activation_checkpointing": false,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "adam_eps": 1e-8,
    "batch_size": 1,
    "checkpoint_every": 50,
    "config": {
      "hidden_size": 48,
      "vocab_size": 97
    },
    "device": "cpu",
    "dtype": "auto",
    "epochs": 1.0,
    "grad_accum": 1,
    "lr": 0.00002,
    "mask_ids": true,
    "max_grad_norm": 1.0,
    "max_shard_mb": 5000,
    "max_steps": null,
    "optim": "adamw_torch_fused",
    "save_dtype": "auto",
    "seed": 42,
    "shuffle": true,
    "threads": 0,
    "warmup_ratio": 0.03,
    "weight_decay": 0.0
  },
  "scratch_dir": "/ws/scratch/k",
  "task": "pretrain",
  "tokens": "/ws/tokens"
}"#;

    #[test]
    fn a_pretrain_job_reads_and_writes_as_before() {
        let params = PretrainParams {
            config: Some(serde_json::json!({"vocab_size": 97, "hidden_size": 48})),
            device: "cpu".into(),
            ..Default::default()
        };
        let job =
            Job::pretrain("/ws/tokens".into(), None, params, "/ws/tmp/out".into(), "/ws/scratch/k".into());
        round_trip(&job, PRETRAIN_JOB);
    }

    #[test]
    fn a_distributed_finetune_job_reads_and_writes_as_before() {
        let params = FinetuneParams {
            max_length: 10,
            distributed: Some(DistParams {
                nproc_per_node: 2,
                strategy: Strategy::Fsdp,
                ..Default::default()
            }),
            ..Default::default()
        };
        let job = Job::finetune("/d.json".into(), "/m".into(), params, "/o".into(), "/s".into());
        // The pretraining-only `mask_ids` is not on the wire, and the worker reads its default.
        let literal = r#"{"data":"/d.json","model":"/m","out_dir":"/o","params":{"activation_checkpointing":false,"adam_beta1":0.9,"adam_beta2":0.999,"adam_eps":1e-8,"batch_size":1,"checkpoint_every":50,"config":null,"device":"auto","distributed":{"backend":"auto","nproc_per_node":2,"strategy":"fsdp","timeout_s":1800},"dtype":"auto","epochs":1.0,"grad_accum":1,"group_by_length":false,"lr":0.00002,"max_grad_norm":1.0,"max_length":10,"max_shard_mb":5000,"max_steps":null,"optim":"adamw_torch_fused","pad_token":"[PAD]","prompt_input":"Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:","prompt_no_input":"Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:","save_dtype":"auto","seed":42,"shuffle":true,"threads":0,"warmup_ratio":0.03,"weight_decay":0.0},"scratch_dir":"/s","task":"finetune"}"#;
        round_trip(&job, literal);
        assert!(job.params.mask_ids);
    }

    #[test]
    fn stage_params_keep_their_fields_and_defaults() {
        // The cache keys hash these serializations: the field sets must not move between kinds.
        let keys = |v: Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        let pre = keys(serde_json::to_value(PretrainParams::default()).unwrap());
        let fine = keys(serde_json::to_value(FinetuneParams::default()).unwrap());
        assert!(pre.contains(&"mask_ids".to_string()) && !pre.contains(&"max_length".to_string()));
        assert!(fine.contains(&"max_length".to_string()) && !fine.contains(&"mask_ids".to_string()));
        assert_eq!((pre.len(), fine.len()), (23, 27));
        let p: PretrainParams = serde_json::from_str(r#"{"epochs": 2}"#).unwrap();
        assert_eq!(
            (p.lr, p.warmup_ratio, p.weight_decay, p.max_grad_norm, p.mask_ids, p.epochs),
            (2e-5, 0.03, 0.0, 1.0, true, 2.0)
        );
        assert!(serde_json::from_str::<PretrainParams>(r#"{"max_length": 10}"#).is_err());
        assert_eq!(TrainParams::from(p.clone()).max_length, 512);
        assert_eq!(PretrainParams::from(&TrainParams::from(p.clone())), p);
    }

    #[test]
    fn the_loss_normalisation_is_global_by_default_and_written_only_when_not() {
        let p: PretrainParams = serde_json::from_str("{}").unwrap();
        assert_eq!(p.loss_normalization, LossNormalization::GlobalTokens);
        assert!(serde_json::to_value(&p).unwrap().get("loss_normalization").is_none());
        let c: FinetuneParams = serde_json::from_str(r#"{"loss_normalization": "camel"}"#).unwrap();
        assert_eq!(c.loss_normalization, LossNormalization::Camel);
        assert_eq!(serde_json::to_value(&c).unwrap()["loss_normalization"], "camel");
        let g: TrainParams = serde_json::from_str(r#"{"loss_normalization": "global_tokens"}"#).unwrap();
        assert_eq!(g, TrainParams::default());
        assert!(serde_json::from_str::<PretrainParams>(r#"{"loss_normalization": "mean"}"#).is_err());
        let job = Job::finetune("/d".into(), "/m".into(), c, "/o".into(), "/s".into());
        let back: Job = serde_json::from_str(&crate::to_json_pretty(&job)).unwrap();
        assert_eq!(back.params.loss_normalization, LossNormalization::Camel);
    }

    #[test]
    fn distributed_params_parse_with_defaults() {
        let d: DistParams = serde_json::from_str(r#"{"nproc_per_node": 2, "strategy": "fsdp"}"#).unwrap();
        assert_eq!(
            (d.nproc_per_node, d.strategy, d.backend, d.timeout_s),
            (2, Strategy::Fsdp, BackendChoice::Auto, 1800)
        );
        round_trip(&d, r#"{"backend":"auto","nproc_per_node":2,"strategy":"fsdp","timeout_s":1800}"#);
        assert!(serde_json::from_str::<DistParams>(r#"{"strategy": "zero3"}"#).is_err());
        assert!(serde_json::from_str::<DistParams>(r#"{"nprocs": 2}"#).is_err());
        assert!(serde_json::from_str::<DistParams>(r#"{"backend": "mpi"}"#).is_err());
        assert!(DistParams { nproc_per_node: 0, ..Default::default() }.validate().is_err());
        assert!(DistParams { timeout_s: 0, ..Default::default() }.validate().is_err());
        assert!(DistParams::default().validate().is_ok());
    }

    #[test]
    fn fsdp_prefetch_is_written_only_when_not_one() {
        let d: DistParams = serde_json::from_str(r#"{"strategy": "fsdp", "prefetch": 2}"#).unwrap();
        assert_eq!(d.prefetch, 2);
        round_trip(
            &d,
            r#"{"backend":"auto","nproc_per_node":1,"prefetch":2,"strategy":"fsdp","timeout_s":1800}"#,
        );
        assert_eq!(serde_json::from_str::<DistParams>("{}").unwrap().prefetch, 1);
    }

    #[test]
    fn activation_checkpointing_reads_booleans_and_auto_and_writes_booleans_as_before() {
        for (text, want) in
            [("false", Checkpointing::Off), ("true", Checkpointing::On), (r#""auto""#, Checkpointing::Auto)]
        {
            let p: PretrainParams =
                serde_json::from_str(&format!(r#"{{"activation_checkpointing": {text}}}"#)).unwrap();
            assert_eq!(p.activation_checkpointing, want);
            assert_eq!(serde_json::to_value(p).unwrap()["activation_checkpointing"].to_string(), text);
        }
        let bad = serde_json::from_str::<PretrainParams>(r#"{"activation_checkpointing": "sometimes"}"#);
        assert!(bad.unwrap_err().to_string().contains("true, false or \"auto\""));
    }
}
