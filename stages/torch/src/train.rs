//! `kind: pretrain` and `kind: finetune` — continued pretraining on the tokenize stage's blocks and
//! instruction fine-tuning on Alpaca-style records, as CAMEL ran them with HF Trainer.
//!
//! The model code links libtorch, which the `camel` binary must not: these stages write a
//! [`Job`] (params with every default filled in, input paths, output and scratch dirs) and run
//! `camel-torch-worker train JOB` ([`crate::launch`]: one process, local ranks, or this camel's
//! rank of an external launch). Its progress lines drive the stage's bar, its stderr goes to the
//! stage log, and cancelling kills its process group. Checkpoints go to the stage's scratch dir,
//! so a rerun after a kill resumes from the last one.
//!
//! The params are `camel_torch_job::{PretrainParams, FinetuneParams}`: the worker reads the same
//! types, so a param exists in one place.
//!
//! Outputs: `model/` (a Hugging Face checkpoint dir with the tokenizer files), `metrics.jsonl`
//! (step, epoch, loss, lr, grad_norm, tokens, tokens_per_s, and eval_loss, eval_perplexity,
//! eval_tokens on evaluated steps with `eval_fraction`) and `loss.svg`.

use camel_engine::{InputSpec, OutputSpec, Stage, StageContext, StageError};
use camel_torch_job::{DistParams, FinetuneParams, Job, PretrainParams};

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
        let job = Job::pretrain(
            ctx.input("tokens")?.to_path_buf(),
            model,
            p.clone(),
            ctx.out_dir().to_path_buf(),
            ctx.scratch_dir().to_path_buf(),
        );
        run_job(ctx, &job, p.distributed.as_ref())
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
        let job = Job::finetune(
            ctx.input("data")?.to_path_buf(),
            ctx.input("model")?.to_path_buf(),
            p.clone(),
            ctx.out_dir().to_path_buf(),
            ctx.scratch_dir().to_path_buf(),
        );
        run_job(ctx, &job, p.distributed.as_ref())
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

/// Writes the job to `job.json` in the scratch dir and runs it.
fn run_job(ctx: &StageContext, job: &Job, dist: Option<&DistParams>) -> Result<(), StageError> {
    if let Some(d) = dist {
        d.validate().map_err(StageError::msg)?;
    }
    let worker = crate::worker::Worker::find()?;
    let job_path = ctx.scratch_dir().join("job.json");
    std::fs::create_dir_all(ctx.scratch_dir()).map_err(StageError::io("create the scratch dir"))?;
    std::fs::write(&job_path, camel_torch_job::to_json_pretty(job))
        .map_err(StageError::io(format!("write {}", job_path.display())))?;
    crate::launch::run_training_job(ctx, &worker, job, &job_path, dist)
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

    #[test]
    fn hashed_params_are_what_they_were() {
        // The blake3 of a kind's normalized params is in its cache key; these are the params of
        // tests/it/launch.rs's stage as camel-stages serialized them before the kinds moved here.
        let p: PretrainParams = serde_yaml::from_str(
            "{config: {vocab_size: 97}, device: cpu, distributed: {nproc_per_node: 2, strategy: fsdp}}",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap().to_string(),
            r#"{"activation_checkpointing":false,"adam_beta1":0.9,"adam_beta2":0.999,"adam_eps":1e-8,"batch_size":1,"checkpoint_every":50,"config":{"vocab_size":97},"device":"cpu","distributed":{"backend":"auto","nproc_per_node":2,"strategy":"fsdp","timeout_s":1800},"dtype":"auto","epochs":1.0,"grad_accum":1,"lr":0.00002,"mask_ids":true,"max_grad_norm":1.0,"max_shard_mb":5000,"max_steps":null,"optim":"adamw_torch_fused","save_dtype":"auto","seed":42,"shuffle":true,"threads":0,"warmup_ratio":0.03,"weight_decay":0.0}"#
        );
    }
}
