//! `kind: pretrain` and `kind: finetune` — continued pretraining on the tokenize stage's blocks and
//! instruction fine-tuning on Alpaca-style records, as CAMEL ran them with HF Trainer.
//!
//! The model code links libtorch, which the `camel` binary must not: these stages write a job
//! description (params with every default filled in, input paths, output and scratch dirs) and
//! run `camel-torch-worker train JOB`, found next to the running `camel` (or at
//! `$CAMEL_TORCH_WORKER`). Its progress lines drive the stage's bar, its stderr goes to the stage
//! log, and cancelling kills its process group. Checkpoints go to the stage's scratch dir, so a
//! rerun after a kill resumes from the last one.
//!
//! Outputs: `model/` (a Hugging Face checkpoint dir with the tokenizer files), `metrics.jsonl`
//! (step, epoch, loss, lr, grad_norm, tokens, tokens_per_s) and `loss.svg`.

use std::path::PathBuf;

use camel_engine::{InputSpec, OutputSpec, Stage, StageContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub mod launch;

pub use launch::{DistributedParams, ExternalRank, Strategy};

pub const WORKER_ENV: &str = "CAMEL_TORCH_WORKER";
const WORKER_NAME: &str = "camel-torch-worker";

/// Params with a struct-level default: every field may be omitted, unknown ones are errors.
macro_rules! params_struct {
    ($(#[$sm:meta])* $name:ident { $($(#[$m:meta])* $f:ident : $t:ty = $d:expr,)* }) => {
        $(#[$sm])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $($(#[$m])* pub $f: $t,)*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($f: $d,)* }
            }
        }
    };
}

/// The params both kinds share (HF Trainer's, with CAMEL's values as defaults), then the kind's own.
macro_rules! train_params {
    ($(#[$sm:meta])* $name:ident { $($extra:tt)* }) => {
        params_struct! {
            $(#[$sm])*
            $name {
                /// Random initialisation from these config.json fields when there is no `model` input.
                config: Option<Value> = None,
                seed: u64 = 42,
                epochs: f64 = 1.0,
                /// Per-device micro-batch size.
                batch_size: usize = 1,
                grad_accum: usize = 1,
                lr: f64 = 2e-5,
                weight_decay: f64 = 0.0,
                warmup_ratio: f64 = 0.03,
                adam_beta1: f64 = 0.9,
                adam_beta2: f64 = 0.999,
                adam_eps: f64 = 1e-8,
                max_grad_norm: f64 = 1.0,
                /// `adamw_torch_fused` (libtorch's fused kernel, HF Trainer's default) or `adamw_torch`.
                optim: String = "adamw_torch_fused".into(),
                /// Stop after this many optimizer steps (the schedule still spans the whole run).
                max_steps: Option<u64> = None,
                shuffle: bool = true,
                /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
                device: String = "auto".into(),
                /// Compute dtype: `auto` (bf16 on CUDA with fp32 master weights, fp32 on CPU), `float32`, `bfloat16`.
                dtype: String = "auto".into(),
                /// Dtype of the saved weights: `auto` (the base checkpoint's; fp32 for random init).
                save_dtype: String = "auto".into(),
                /// Optimizer steps between checkpoints in the scratch dir (0: none).
                checkpoint_every: u64 = 50,
                /// Recompute each decoder layer in the backward pass instead of keeping its activations.
                activation_checkpointing: bool = false,
                /// libtorch intra-op threads (0: its default, one per core).
                threads: usize = 0,
                /// Shard the saved weights above this many MB.
                max_shard_mb: u64 = 5000,
                /// Data-parallel training over several processes (see docs/training.md,
                /// "Distributed"): `{nproc_per_node: 8, strategy: fsdp}`.
                #[serde(skip_serializing_if = "Option::is_none")]
                distributed: Option<DistributedParams> = None,
                $($extra)*
            }
        }
    };
}

train_params! {
    /// Params of `kind: pretrain`.
    PretrainParams {
        /// Set the token file's ignored ids (`[ANON]`) to -100 in the labels. CAMEL's published
        /// collator built masked labels but passed the unmasked ids, so its model did learn
        /// `[ANON]`: `mask_ids: false` reproduces that.
        mask_ids: bool = true,
    }
}

train_params! {
    /// Params of `kind: finetune`.
    FinetuneParams {
        /// Prompt + response tokens beyond this are cut.
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

pub const ALPACA_PROMPT_INPUT: &str = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";
pub const ALPACA_PROMPT_NO_INPUT: &str = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:";

fn train_outputs() -> Vec<OutputSpec> {
    vec![
        OutputSpec::new("model", "model"),
        OutputSpec::new("metrics", "metrics.jsonl"),
        OutputSpec::new("loss_curve", "loss.svg"),
    ]
}

pub struct Pretrain;

impl Stage for Pretrain {
    type Params = PretrainParams;
    const KIND: &'static str = "pretrain";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "continue pretraining a LLaMA-family model on token blocks (libtorch worker)";

    fn inputs(_: &PretrainParams) -> InputSpec {
        InputSpec::Named { required: vec!["tokens".into()], optional: vec!["model".into()] }
    }

    fn outputs(_: &PretrainParams) -> Vec<OutputSpec> {
        train_outputs()
    }

    fn exclusive(_: &PretrainParams) -> bool {
        true
    }

    fn run(p: &PretrainParams, ctx: &StageContext) -> Result<(), StageError> {
        let model = ctx.inputs().get("model").cloned();
        check_model_source(model.is_some(), p.config.is_some())?;
        let job = json!({
            "task": "pretrain",
            "tokens": ctx.input("tokens")?,
            "model": model,
            "params": p,
        });
        run_worker(ctx, job, p.distributed.as_ref())
    }
}

pub struct Finetune;

impl Stage for Finetune {
    type Params = FinetuneParams;
    const KIND: &'static str = "finetune";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str =
        "instruction-tune a LLaMA-family model on Alpaca-style records (libtorch worker)";

    fn inputs(_: &FinetuneParams) -> InputSpec {
        InputSpec::Named { required: vec!["data".into(), "model".into()], optional: vec![] }
    }

    fn outputs(_: &FinetuneParams) -> Vec<OutputSpec> {
        train_outputs()
    }

    fn exclusive(_: &FinetuneParams) -> bool {
        true
    }

    fn run(p: &FinetuneParams, ctx: &StageContext) -> Result<(), StageError> {
        if p.config.is_some() {
            return Err(StageError::msg(
                "finetune starts from a `model` input (its tokenizer is needed); `config` is for pretrain",
            ));
        }
        let job = json!({
            "task": "finetune",
            "data": ctx.input("data")?,
            "model": ctx.input("model")?,
            "params": p,
        });
        run_worker(ctx, job, p.distributed.as_ref())
    }
}

fn check_model_source(has_model: bool, has_config: bool) -> Result<(), StageError> {
    match (has_model, has_config) {
        (true, true) => Err(StageError::msg("give either a `model` input or a `config` param, not both")),
        (false, false) => Err(StageError::msg(
            "no model to train: bind a `model` input (a Hugging Face checkpoint dir) or give a `config` param \
             for a randomly initialised one",
        )),
        _ => Ok(()),
    }
}

/// The worker binary: `$CAMEL_TORCH_WORKER`, else next to the running camel.
pub fn worker_path() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os(WORKER_ENV) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(StageError::msg(format!("{WORKER_ENV}={} does not name a file", p.display())))
        };
    }
    let exe = std::env::current_exe().map_err(StageError::io("find the running camel executable"))?;
    let beside = exe.parent().map(|d| d.join(WORKER_NAME));
    match beside {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(StageError::msg(format!(
            "the libtorch worker `{WORKER_NAME}` is not next to {}: build it with `scripts/setup` (a release \
             build of the whole workspace against the venv's torch), or set {WORKER_ENV} to its path",
            exe.display()
        ))),
    }
}

fn run_worker(
    ctx: &StageContext,
    mut job: Value,
    dist: Option<&DistributedParams>,
) -> Result<(), StageError> {
    if let Some(d) = dist {
        d.validate()?;
    }
    let worker = worker_path()?;
    job["out_dir"] = json!(ctx.out_dir());
    job["scratch_dir"] = json!(ctx.scratch_dir());
    let job_path = ctx.scratch_dir().join("job.json");
    std::fs::create_dir_all(ctx.scratch_dir()).map_err(StageError::io("create the scratch dir"))?;
    std::fs::write(&job_path, serde_json::to_string_pretty(&job).expect("job serializes"))
        .map_err(StageError::io(format!("write {}", job_path.display())))?;
    launch::run_training_job(ctx, &worker, &job_path, dist)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_camels_recipe_and_unknown_fields_fail() {
        let p: PretrainParams = serde_yaml::from_str("epochs: 2").unwrap();
        assert_eq!(
            (p.lr, p.warmup_ratio, p.weight_decay, p.max_grad_norm, p.mask_ids),
            (2e-5, 0.03, 0.0, 1.0, true)
        );
        assert!(serde_yaml::from_str::<PretrainParams>("max_length: 10").is_err());
        let f: FinetuneParams = serde_yaml::from_str("max_length: 10\nlr: 1e-5").unwrap();
        assert_eq!((f.max_length, f.lr), (10, 1e-5));
        assert!(f.prompt_input.contains("### Input:\n{input}"));
    }
}
