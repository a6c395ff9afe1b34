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
//! Outputs: `model/` (a Hugging Face checkpoint dir with the tokenizer and generation files that
//! `save_pretrained` writes), `metrics.jsonl` (step, epoch, loss, lr, grad_norm, tokens, and
//! eval_loss, eval_perplexity, eval_tokens on evaluated steps with `eval_fraction`; no timings,
//! so that reruns write the same bytes) and `loss.svg`.

use camel_engine::validate::in_range;
use camel_engine::{
    InputSpec, OutputSpec, Partial, PartialProbe, Problem, Stage, StageContext, StageError, ValidateContext,
};
use camel_torch_job::model_config::LlamaConfig;
use camel_torch_job::model_dir::{self, TokenizerUse};
use camel_torch_job::{
    DistParams, FinetuneParams, GenParams, Job, PretrainParams, TrainParams, error_chain, generation_config,
};

fn train_outputs() -> Vec<OutputSpec> {
    vec![
        OutputSpec::dir("model", "model"),
        OutputSpec::file("metrics", "metrics.jsonl"),
        OutputSpec::file("loss_curve", "loss.svg"),
    ]
}

pub struct Pretrain;

impl Stage for Pretrain {
    type Params = PretrainParams;
    const KIND: &'static str = "pretrain";
    /// 2: the loss is normalised over the global batch's label tokens by default
    /// (`loss_normalization: global_tokens`), which changes the weights of runs with masked
    /// labels and accumulation or several ranks; `camel` is the formula of version 1. The model
    /// dir also holds what `save_pretrained` writes (tokenizer_config.json,
    /// special_tokens_map.json, generation_config.json).
    /// 3: `metrics.jsonl` without timings (reruns write the same bytes), and the model dir's
    /// generation_config.json and tokenizer files keep the base model's bos/eos.
    /// 4: `epochs` as transformers 5's Trainer: no accumulation crosses an epoch, whose last step
    /// takes the micro-batches left (⌈micro-batches / grad_accum⌉ steps per epoch), so a run
    /// whose micro-batches per epoch are not a multiple of `grad_accum` trains on every example
    /// once per epoch and has another step count and schedule; `epoch` in `metrics.jsonl` is
    /// computed as Trainer logs it. A `config` param without `architectures` gets its
    /// `model_type`'s class (it was always LlamaForCausalLM).
    const VERSION: u32 = 4;
    const SUMMARY: &'static str =
        "continue pretraining a LLaMA-family model on token blocks (libtorch worker)";

    fn inputs(_: &PretrainParams) -> InputSpec {
        InputSpec::Named { required: vec!["tokens".into()], optional: vec!["model".into(), "eval".into()] }
    }

    fn outputs(_: &PretrainParams) -> Vec<OutputSpec> {
        train_outputs()
    }

    fn exclusive(_: &PretrainParams) -> bool {
        true
    }

    fn partial(_: &PretrainParams, at: &PartialProbe) -> Option<Partial> {
        crate::partial::training(at.scratch_dir)
    }

    fn metrics(_: &PretrainParams, out_dir: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
        crate::partial::training_metrics(out_dir)
    }

    fn validate(p: &PretrainParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems = train_problems(&TrainParams::from(p.clone()));
        if let Err(e) = check_model_source(ctx.input("model").is_some(), p.config.is_some()) {
            problems.push(Problem::stage(e.to_string()));
        }
        problems.extend(ctx.expect_dir(
            "tokens",
            "the token dataset directory (tokens.bin with its meta.json and tokenizer.json)",
            "bind it to a tokenize stage's `dataset` output: `tokens: STAGE.dataset`",
        ));
        problems.extend(ctx.expect_dir("model", MODEL_DIR, MODEL_DIR_HELP));
        problems.extend(ctx.expect_dir(
            "eval",
            "held-out token blocks (a tokenize stage's `dataset` output)",
            "bind it to a tokenize stage's `dataset` output of held-out notes",
        ));
        problems.extend(eval_problem(ctx.input("eval").is_some(), p.eval_fraction));
        if let Some(c) = &p.config {
            problems.extend(config_param_problems(c));
        }
        problems.extend(model_dir_problems(ctx, ModelUse::Pretrain));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn run(p: &PretrainParams, ctx: &StageContext) -> Result<(), StageError> {
        let model = ctx.inputs().get("model").cloned();
        check_model_source(model.is_some(), p.config.is_some())?;
        if let Some(e) = eval_problem(ctx.inputs().contains_key("eval"), p.eval_fraction) {
            return Err(StageError::msg(e.message));
        }
        let job = Job::pretrain(
            ctx.input("tokens")?.to_path_buf(),
            model,
            p.clone(),
            ctx.out_dir().to_path_buf(),
            ctx.scratch_dir().to_path_buf(),
        )
        .with_eval(ctx.inputs().get("eval").cloned());
        run_job(ctx, &job, p.distributed.as_ref())
    }
}

pub struct Finetune;

impl Stage for Finetune {
    type Params = FinetuneParams;
    const KIND: &'static str = "finetune";
    /// 2: as `pretrain`'s: the global token normalisation by default (the prompt is masked, so
    /// every fine-tuning run with accumulation or several ranks changes), and the model dir's
    /// `save_pretrained` files.
    /// 3: the tokenizer's `eos_token` ends each response (config.json's first eos id did when it
    /// listed several); the embedding sized as Alpaca's resize (spare rows cut, `[PAD]` the mean);
    /// `metrics.jsonl` without timings.
    /// 4: `epochs` as transformers 5's Trainer (as `pretrain`'s 4): an epoch's last step takes the
    /// records left instead of accumulating into the next epoch.
    const VERSION: u32 = 4;
    const SUMMARY: &'static str =
        "instruction-tune a LLaMA-family model on Alpaca-style records (libtorch worker)";

    fn inputs(_: &FinetuneParams) -> InputSpec {
        InputSpec::Named { required: vec!["data".into(), "model".into()], optional: vec!["eval".into()] }
    }

    fn outputs(_: &FinetuneParams) -> Vec<OutputSpec> {
        train_outputs()
    }

    fn exclusive(_: &FinetuneParams) -> bool {
        true
    }

    fn partial(_: &FinetuneParams, at: &PartialProbe) -> Option<Partial> {
        crate::partial::training(at.scratch_dir)
    }

    fn metrics(_: &FinetuneParams, out_dir: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
        crate::partial::training_metrics(out_dir)
    }

    fn validate(p: &FinetuneParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems = train_problems(&TrainParams::from(p.clone()));
        problems.extend(in_range("max_length", p.max_length, 1, None, "prompt + response tokens"));
        if p.config.is_some() {
            problems.push(Problem::param(
                "config",
                "finetune starts from a `model` input (its tokenizer is needed); `config` is for pretrain",
            ));
        }
        problems.extend(ctx.expect_file(
            "data",
            "a JSON file of Alpaca records",
            "bind it to an instructions stage's `instructions` output, or a JSON file",
        ));
        problems.extend(ctx.expect_file(
            "eval",
            "a JSON file of held-out Alpaca records",
            "bind it to a JSON file of Alpaca records that are not in `data`",
        ));
        problems.extend(eval_problem(ctx.input("eval").is_some(), p.eval_fraction));
        problems.extend(ctx.expect_dir("model", MODEL_DIR, MODEL_DIR_HELP));
        problems.extend(model_dir_problems(ctx, ModelUse::Finetune));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn run(p: &FinetuneParams, ctx: &StageContext) -> Result<(), StageError> {
        if p.config.is_some() {
            return Err(StageError::msg(
                "finetune starts from a `model` input (its tokenizer is needed); `config` is for pretrain",
            ));
        }
        if let Some(e) = eval_problem(ctx.inputs().contains_key("eval"), p.eval_fraction) {
            return Err(StageError::msg(e.message));
        }
        let job = Job::finetune(
            ctx.input("data")?.to_path_buf(),
            ctx.input("model")?.to_path_buf(),
            p.clone(),
            ctx.out_dir().to_path_buf(),
            ctx.scratch_dir().to_path_buf(),
        )
        .with_eval(ctx.inputs().get("eval").cloned());
        run_job(ctx, &job, p.distributed.as_ref())
    }
}

/// Held-out examples come from an `eval` input or an `eval_fraction` split of the training
/// input, not both.
fn eval_problem(has_eval_input: bool, eval_fraction: f64) -> Option<Problem> {
    (has_eval_input && eval_fraction > 0.0).then(|| {
        Problem::param(
            "eval_fraction",
            format!(
                "`eval_fraction` is {eval_fraction} and an `eval` input is bound; held-out examples come from one \
                 of them"
            ),
        )
        .help("remove `eval_fraction` to evaluate on the `eval` input, or unbind `eval`")
    })
}

/// A `config` param's problems (a random init), each as the worker would report it when the
/// training stage runs, found when the pipeline is planned instead.
fn config_param_problems(config: &serde_json::Value) -> Vec<Problem> {
    let problems = match LlamaConfig::parse_value(config.clone()) {
        Ok(cfg) => cfg.training_problems(),
        Err(e) => vec![error_chain(&e)],
    };
    problems.into_iter().map(|m| Problem::param("config", m).help(MODELS_HELP)).collect()
}

const MODELS_HELP: &str = "camel implements LlamaForCausalLM and MistralForCausalLM as transformers computes them (docs/training.md, Models)";

/// What a kind does with its `model` input, for [`model_dir_problems`].
#[derive(Clone, Copy)]
pub(crate) enum ModelUse<'a> {
    /// Continued pretraining: trains it; its token dir is already tokenized.
    Pretrain,
    /// Fine-tuning: trains it and encodes the records with its tokenizer.json.
    Finetune,
    /// `answer`: decodes with it as these params and its generation_config.json say.
    Answer(&'a GenParams),
}

/// The problems of the `model` input when that dir exists at plan time (a checkpoint on disk; an
/// upstream stage's output is checked by the worker when it runs), every one at once and each in
/// the worker's words: its config.json (what camel does not implement; for training, also what
/// training refuses, attention dropout), its weights from the safetensors headers alone (none, or
/// only `pytorch_model.bin`; tensors missing, misshapen or unused), its tokenizer.json where the
/// kind reads it, and for `answer` the settings of its generation_config.json that camel's
/// decoding refuses. A dir without config.json fails when the stage runs, saying what to bind.
pub(crate) fn model_dir_problems(ctx: &ValidateContext, usage: ModelUse) -> Vec<Problem> {
    let Some(dir) = ctx.existing_path("model").filter(|d| d.is_dir()) else { return Vec::new() };
    let path = dir.join("config.json");
    if !path.is_file() {
        return Vec::new();
    }
    let in_config = |m: String| Problem::input("model", format!("{}: {m}", path.display())).help(MODELS_HELP);
    let cfg = match LlamaConfig::parse_file(&path) {
        Ok(cfg) => cfg,
        Err(e) => return vec![in_config(error_chain(&e))],
    };
    let config_problems = match usage {
        ModelUse::Pretrain | ModelUse::Finetune => cfg.training_problems(),
        ModelUse::Answer(_) => cfg.problems(),
    };
    let tokenizer = match usage {
        ModelUse::Pretrain => TokenizerUse::None,
        ModelUse::Finetune => TokenizerUse::Finetune,
        ModelUse::Answer(_) => TokenizerUse::Generate,
    };
    // Tensors are compared with a config camel implements only (another architecture's would
    // name every tensor); the files are looked for in any case.
    let implemented = cfg.problems().is_empty().then_some(&cfg);
    let mut problems: Vec<Problem> = config_problems.into_iter().map(in_config).collect();
    problems.extend(
        model_dir::problems(dir, implemented, tokenizer)
            .into_iter()
            .map(|m| Problem::input("model", m).help(WEIGHTS_HELP)),
    );
    if let ModelUse::Answer(generation) = usage {
        problems.extend(
            generation_config::problems(dir, &cfg, generation)
                .into_iter()
                .map(|m| Problem::input("model", m).help(GENERATION_HELP)),
        );
    }
    problems
}

const WEIGHTS_HELP: &str = "camel loads Hugging Face checkpoints with safetensors weights (model.safetensors, or shards and \
     model.safetensors.index.json) and a fast tokenizer's tokenizer.json (docs/training.md, Models)";

const GENERATION_HELP: &str = "camel decodes as transformers' generate and refuses settings it does not implement (docs/training.md, `camel generate`)";

const MODEL_DIR: &str = "a Hugging Face checkpoint directory (config.json, weights, tokenizer.json)";
const MODEL_DIR_HELP: &str = "bind it to a checkpoint directory, or to a training stage's `model` output";

/// The training params' ranges, shared by both kinds; paths are the params' own.
fn train_problems(p: &TrainParams) -> Vec<Problem> {
    let within = |name: &str, v: f64, range: std::ops::Range<f64>, inclusive: bool| {
        let ok = range.contains(&v) || (inclusive && v == range.end);
        let upper = if inclusive { "" } else { " (excluded)" };
        (!ok).then(|| {
            Problem::param(
                name,
                format!("`{name}` is {v}; it must be a number from {} to {}{upper}", range.start, range.end),
            )
        })
    };
    let non_negative = |name: &str, v: f64, positive: bool| {
        let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
        (!ok).then(|| {
            let what = if positive { "a number above 0" } else { "a number ≥ 0" };
            Problem::param(name, format!("`{name}` is {v}; it must be {what}"))
        })
    };
    let mut v: Vec<Option<Problem>> = vec![
        non_negative("epochs", p.epochs, true),
        in_range("batch_size", p.batch_size, 1, None, "examples per device and micro-batch"),
        in_range("grad_accum", p.grad_accum, 1, None, "micro-batches per optimizer step"),
        non_negative("lr", p.lr, false),
        non_negative("weight_decay", p.weight_decay, false),
        within("warmup_ratio", p.warmup_ratio, 0.0..1.0, true),
        within("adam_beta1", p.adam_beta1, 0.0..1.0, false),
        within("adam_beta2", p.adam_beta2, 0.0..1.0, false),
        // The worker checks it too, but only once it runs.
        within("eval_fraction", p.eval_fraction, 0.0..1.0, false),
        non_negative("adam_eps", p.adam_eps, true),
        non_negative("max_grad_norm", p.max_grad_norm, false),
        p.max_steps.and_then(|s| in_range("max_steps", s, 1, None, "leave it out to train the whole run")),
        in_range("max_shard_mb", p.max_shard_mb, 1, None, "MB per weight file"),
    ];
    if let Some(d) = &p.distributed {
        v.push(in_range(
            "distributed.nproc_per_node",
            d.nproc_per_node,
            1,
            None,
            "worker processes, one device each",
        ));
        v.push(in_range("distributed.timeout_s", d.timeout_s, 1, None, "seconds"));
    }
    v.into_iter().flatten().collect()
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
    use crate::AnswerParams;

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

    /// A `config` param and a checkpoint's config.json are checked when the pipeline is planned,
    /// with every problem at once (the worker's own checks, from camel-torch-job).
    #[test]
    fn unsupported_model_configs_fail_at_plan_time_with_every_problem() {
        use camel_engine::validate::InputInfo;
        let tmp = tempfile::tempdir().unwrap();
        let messages = |r: Result<(), Vec<Problem>>| -> Vec<String> {
            r.unwrap_err().iter().map(|p| p.message.clone()).collect()
        };
        let p: PretrainParams = serde_yaml::from_str(
            "config: {vocab_size: 64, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, \
             num_attention_heads: 4, num_key_value_heads: 3, rope_scaling: {type: dynamic, factor: 2.0}, \
             attention_dropout: 0.1}",
        )
        .unwrap();
        let ctx = ValidateContext::for_test("pretrain", tmp.path(), &[])
            .with_input("tokens", InputInfo::Path(tmp.path().join("tokens")));
        let m = messages(Pretrain::validate(&p, &ctx));
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("num_key_value_heads (3)") && m[1].contains("\"dynamic\""), "{m:?}");
        assert!(m[2].contains("attention_dropout 0.1"), "{m:?}");

        // A Mistral checkpoint on disk without `sliding_window` (transformers' 4096 < the context).
        let model = tmp.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(
            model.join("config.json"),
            serde_json::json!({"architectures": ["MistralForCausalLM"], "vocab_size": 64, "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "max_position_embeddings": 32768, "hidden_act": "gelu"})
            .to_string(),
        )
        .unwrap();
        // Weights of the Llama config below and a tokenizer: only the configs are at fault here.
        write_weights(&model.join("model.safetensors"), &small(json!({"attention_dropout": 0.1})), &[]);
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
        let p: FinetuneParams = serde_yaml::from_str("epochs: 1").unwrap();
        let ctx = ValidateContext::for_test("finetune", tmp.path(), &[])
            .with_input("model", InputInfo::Path(model.clone()))
            .with_input("data", InputInfo::Path(tmp.path().join("data.json")));
        let m = messages(Finetune::validate(&p, &ctx));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().all(|x| x.contains("config.json")), "{m:?}");
        assert!(m[0].contains("gelu") && m[1].contains("sliding_window 4096"), "{m:?}");
        // The answer stage checks what inference needs only: attention dropout is fine there.
        std::fs::write(
            model.join("config.json"),
            serde_json::json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 64,
                "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                "attention_dropout": 0.1, "sliding_window": 16})
            .to_string(),
        )
        .unwrap();
        let m = messages(Finetune::validate(&p, &ctx));
        assert!(m.len() == 1 && m[0].contains("attention_dropout"), "{m:?}");
        assert!(model_dir_problems(&ctx, ModelUse::Answer(&GenParams::default())).is_empty());
    }

    use serde_json::json;

    /// The config.json of a small Llama (vocab 64, hidden 64, 2 layers), with `extra` fields.
    fn small(extra: serde_json::Value) -> serde_json::Value {
        let mut c = json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 64, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        c
    }

    /// A header-only stand-in for `config`'s model.safetensors (the plan-time check reads headers
    /// only): every tensor the config implies, but `drop`, as F32 zeros of no bytes on disk.
    fn write_weights(path: &std::path::Path, config: &serde_json::Value, drop: &[&str]) {
        write_tensors(path, &tensors_of(config, drop));
    }

    fn tensors_of(config: &serde_json::Value, drop: &[&str]) -> Vec<(String, Vec<i64>)> {
        let cfg = LlamaConfig::parse_value(config.clone()).unwrap();
        cfg.param_names()
            .into_iter()
            .filter(|n| !drop.contains(&n.as_str()))
            .map(|n| (n.clone(), cfg.param_shape(&n)))
            .collect()
    }

    /// A safetensors file of F32 zeros with these tensors.
    fn write_tensors(path: &std::path::Path, tensors: &[(String, Vec<i64>)]) {
        let mut header = serde_json::Map::new();
        let mut offset = 0i64;
        for (name, shape) in tensors {
            let len = 4 * shape.iter().product::<i64>();
            header.insert(
                name.clone(),
                json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len]}),
            );
            offset += len;
        }
        let head = serde_json::Value::Object(header).to_string().into_bytes();
        let mut bytes = (head.len() as u64).to_le_bytes().to_vec();
        bytes.extend(head);
        bytes.resize(bytes.len() + offset as usize, 0);
        std::fs::write(path, bytes).unwrap();
    }

    /// `root/model`: a small config.json, a tokenizer.json, and weights of the config's shapes.
    fn model_dir(root: &std::path::Path) -> (std::path::PathBuf, serde_json::Value) {
        let model = root.join("model");
        std::fs::create_dir_all(&model).unwrap();
        let config = small(json!({}));
        std::fs::write(model.join("config.json"), config.to_string()).unwrap();
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();
        write_weights(&model.join("model.safetensors"), &config, &[]);
        (model, config)
    }

    /// The messages of a `validate`'s problems (none when it passed).
    fn messages(r: Result<(), Vec<Problem>>) -> Vec<String> {
        r.err().unwrap_or_default().iter().map(|p| p.message.clone()).collect()
    }

    /// A checkpoint dir on disk whose config.json is fine but whose weights or tokenizer the worker
    /// would refuse is reported when the pipeline is planned, from the safetensors headers, in the
    /// worker's words (QA finding: upstream stages ran first, then training refused the dir).
    #[test]
    fn unusable_weights_and_tokenizers_fail_at_plan_time() {
        use camel_engine::validate::InputInfo;
        let tmp = tempfile::tempdir().unwrap();
        let (model, config) = model_dir(tmp.path());
        let weights = model.join("model.safetensors");
        let ctx = |kind: &'static str| {
            ValidateContext::for_test(kind, tmp.path(), &[])
                .with_input("model", InputInfo::Path(model.clone()))
                .with_input("data", InputInfo::Path(tmp.path().join("data.json")))
                .with_input("tokens", InputInfo::Path(tmp.path().join("tokens")))
        };
        let finetune = |p: &str| -> Vec<String> {
            let p: FinetuneParams = serde_yaml::from_str(p).unwrap();
            messages(Finetune::validate(&p, &ctx("finetune")))
        };
        let pretrain =
            || -> Vec<String> { messages(Pretrain::validate(&PretrainParams::default(), &ctx("pretrain"))) };
        let answer =
            |p: AnswerParams| -> Vec<String> { messages(crate::Answer::validate(&p, &ctx("answer"))) };
        assert_eq!((finetune("{}"), pretrain(), answer(AnswerParams::default())), (vec![], vec![], vec![]));

        // A tensor missing, one the architecture does not use, the vocabulary not the config's.
        let mut t = tensors_of(&config, &["model.norm.weight"]);
        t.push(("score.weight".into(), vec![2, 64]));
        t.iter_mut().filter(|(n, _)| n == "lm_head.weight").for_each(|(_, s)| s[0] = 80);
        write_tensors(&weights, &t);
        let m = finetune("{}");
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("has no tensor `model.norm.weight`"), "{m:?}");
        assert!(m[1].contains("`lm_head.weight` has shape [80, 64], the config implies [64, 64]"), "{m:?}");
        assert!(m[2].contains("does not use, e.g. `score.weight`"), "{m:?}");
        assert_eq!(pretrain(), m, "pretraining loads the same weights");

        // Only pytorch_model.bin: named with the conversion, for every kind.
        std::fs::remove_file(&weights).unwrap();
        std::fs::write(model.join("pytorch_model.bin"), "PK").unwrap();
        for m in [finetune("{}"), pretrain(), answer(AnswerParams::default())] {
            assert!(
                m.len() == 1
                    && m[0].contains("neither model.safetensors nor")
                    && m[0].contains("safe_serialization"),
                "{m:?}"
            );
        }

        // No tokenizer.json: fine-tuning and answer read it, pretraining does not.
        write_weights(&weights, &config, &[]);
        std::fs::remove_file(model.join("tokenizer.json")).unwrap();
        let m = finetune("{}");
        assert!(m.len() == 1 && m[0].contains("no tokenizer.json (fine-tuning needs it"), "{m:?}");
        assert!(answer(AnswerParams::default())[0].contains("no tokenizer.json"));
        assert!(pretrain().is_empty());
        std::fs::write(model.join("tokenizer.json"), "{}").unwrap();

        // A dir without config.json is the stage's to report when it runs (it says what to bind).
        std::fs::remove_file(model.join("config.json")).unwrap();
        std::fs::remove_file(&weights).unwrap();
        assert!(finetune("{}").is_empty());
    }

    /// `answer` refuses, when the pipeline is planned, the generation_config.json settings its
    /// decoding refuses (the worker's own check): they were found only after the weights loaded.
    #[test]
    fn refused_generation_settings_fail_at_plan_time() {
        use camel_engine::validate::InputInfo;
        let tmp = tempfile::tempdir().unwrap();
        let (model, _) = model_dir(tmp.path());
        let gen_path = model.join("generation_config.json");
        std::fs::write(
            &gen_path,
            json!({"eos_token_id": 2, "repetition_penalty": 1.1, "top_k": "40",
            "early_stopping": true})
            .to_string(),
        )
        .unwrap();
        let ctx = ValidateContext::for_test("answer", tmp.path(), &[])
            .with_input("model", InputInfo::Path(model.clone()))
            .with_input("instructions", InputInfo::Path(tmp.path().join("i.json")));
        let problems = |p: AnswerParams| -> Vec<String> { messages(crate::Answer::validate(&p, &ctx)) };
        let m = problems(AnswerParams::default());
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m.iter().all(|x| x.contains(&gen_path.display().to_string())), "{m:?}");
        assert!(m[0].contains("top_k \"40\"") && m[1].contains("repetition_penalty 1.1"), "{m:?}");
        // Beam search (CAMEL's 5 beams) refuses early_stopping too; a top_k of the stage's own is
        // taken instead of the file's, as transformers does.
        let m = problems(AnswerParams { num_beams: 5, top_k: Some(10), ..AnswerParams::default() });
        assert!(
            m.len() == 1 && m[0].contains("early_stopping true") && m[0].contains("repetition_penalty"),
            "{m:?}"
        );
        // The training kinds do not decode: the file is not theirs to refuse.
        let p: FinetuneParams = serde_yaml::from_str("{}").unwrap();
        let ctx = ValidateContext::for_test("finetune", tmp.path(), &[])
            .with_input("model", InputInfo::Path(model.clone()))
            .with_input("data", InputInfo::Path(tmp.path().join("data.json")));
        assert!(Finetune::validate(&p, &ctx).is_ok());
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
