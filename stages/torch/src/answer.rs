//! `kind: answer` — a fine-tuned checkpoint answers an instructions file (a JSON list of
//! `{instruction, input}`, as CAMEL's `mtsamples_instructions.json`), for the evaluation stages
//! (`judge`, `metrics`, `report` in camel-eval).
//!
//! Like `pretrain`/`finetune`, it runs `camel-torch-worker answer JOB` (the prompt is built by the
//! same template function fine-tuning uses). The worker appends every finished batch of rows to
//! `rows.jsonl` in the scratch dir, fsync'd, so a rerun after a kill answers only what is missing
//! and gives the same bytes as an uninterrupted run. This side checks the inputs before anything
//! starts and assembles `answers.json` (`{instruction, input, output}` per row, in input order;
//! a row's `type` is carried over when the instructions file has one) once every row is there.
//!
//! This kind lives with the training kinds rather than in camel-eval because it runs the worker;
//! camel-eval holds the evaluation kinds that need no libtorch.

use std::path::Path;

use camel_engine::process::StageHost;
use camel_engine::validate::{collect, in_range};
use camel_engine::{
    InputSpec, OutputSpec, Partial, PartialProbe, Problem, Stage, StageContext, StageError, ValidateContext,
};
use camel_torch_job::{ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT, AnswerJob, GenParams, Row};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::worker::{Ranks, Subcommand, Worker};

/// Params of `kind: answer`: batching, device, and decoding as transformers' `generate` names it.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnswerParams {
    /// Rows decoded together (left-padded). Part of the key: padding changes the arithmetic.
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// `auto` (CUDA when available), `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    /// `auto` (bf16 on CUDA, fp32 on CPU), `float32`, `bfloat16`, `float16`.
    pub dtype: String,
    /// libtorch intra-op threads (0: its default).
    pub threads: usize,
    /// Answer the first `limit` rows only.
    pub limit: Option<usize>,
    /// Tokens generated per answer at most (fewer when it ends with an end-of-sequence token).
    #[schemars(range(min = 1))]
    pub max_new_tokens: usize,
    /// Sampling instead of greedy decoding (with `num_beams > 1`: beam search, which ignores it).
    pub do_sample: bool,
    /// Sampling: logits are divided by it (must be > 0 with `do_sample`).
    pub temperature: f64,
    /// Sampling: only the most likely tokens whose probabilities sum to `top_p` (in (0, 1] with
    /// `do_sample`).
    pub top_p: f64,
    /// Sampling: only the `top_k` most likely tokens (0: no such filter). Unset: the checkpoint's
    /// `generation_config.json` `top_k`, else 50, as transformers' `generate`.
    pub top_k: Option<usize>,
    /// More than 1: beam search (CAMEL used 5).
    #[schemars(range(min = 1))]
    pub num_beams: usize,
    /// Beam search: a finished beam's score is its log-probability over length^length_penalty.
    pub length_penalty: f64,
    /// Seeds sampling (batch k uses `seed + k`).
    pub seed: u64,
    /// The prompt for rows with a non-empty `input` (`{instruction}`, `{input}`); keep it equal
    /// to finetune's.
    pub prompt_input: String,
    /// The prompt for rows without one (`{instruction}`); keep it equal to finetune's.
    pub prompt_no_input: String,
}

impl Default for AnswerParams {
    fn default() -> Self {
        AnswerParams {
            batch_size: 8,
            device: "auto".into(),
            dtype: "auto".into(),
            threads: 0,
            limit: None,
            max_new_tokens: 512,
            do_sample: false,
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            num_beams: 1,
            length_penalty: 1.0,
            seed: 42,
            prompt_input: ALPACA_PROMPT_INPUT.into(),
            prompt_no_input: ALPACA_PROMPT_NO_INPUT.into(),
        }
    }
}

impl AnswerParams {
    /// The decoding the worker is asked for.
    fn generation(&self) -> GenParams {
        GenParams {
            max_new_tokens: self.max_new_tokens,
            do_sample: self.do_sample,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            num_beams: self.num_beams,
            length_penalty: self.length_penalty,
            seed: self.seed,
            // The checkpoint's own ids (`eos_ids`, `pad_id` are left unset).
            ..GenParams::default()
        }
    }
}

pub struct Answer;

impl Stage for Answer {
    type Params = AnswerParams;
    const KIND: &'static str = "answer";
    /// 2: decoding stops at the eos ids of the checkpoint's generation_config.json (as
    /// transformers' generate), not only config.json's. 3: sampling applies `top_k` (the
    /// checkpoint's, else 50, as transformers' generate).
    const VERSION: u32 = 3;
    const SUMMARY: &'static str =
        "answer an instructions file with a checkpoint (libtorch worker), resumable per row";

    fn inputs(_: &AnswerParams) -> InputSpec {
        InputSpec::Named { required: vec!["instructions".into(), "model".into()], optional: vec![] }
    }

    fn outputs(_: &AnswerParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("answers", "answers.json"), OutputSpec::new("stats", "stats.json")]
    }

    fn exclusive(_: &AnswerParams) -> bool {
        true
    }

    fn partial(p: &AnswerParams, at: &PartialProbe) -> Option<Partial> {
        let rows = at.inputs.get("instructions").and_then(|i| read_instructions(i).ok()).map(|r| r.len());
        crate::partial::answered(at.scratch_dir, rows.map(|n| p.limit.map_or(n, |l| l.min(n))))
    }

    fn validate(p: &AnswerParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems = collect([
            in_range("batch_size", p.batch_size, 1, None, "rows decoded together"),
            in_range("max_new_tokens", p.max_new_tokens, 1, None, "tokens per answer"),
            in_range("num_beams", p.num_beams, 1, None, "1: no beam search"),
        ])
        .err()
        .unwrap_or_default();
        problems.extend(p.generation().problems().into_iter().map(|(name, m)| Problem::param(name, m)));
        // A checkpoint on disk that the worker would refuse (its config, weights, tokenizer or
        // generation_config.json) fails here, not after the stages before this one.
        let generation = p.generation();
        problems.extend(crate::train::model_dir_problems(ctx, crate::train::ModelUse::Answer(&generation)));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn run(p: &AnswerParams, ctx: &StageContext) -> Result<(), StageError> {
        if p.batch_size == 0 || p.max_new_tokens == 0 || p.num_beams == 0 {
            return Err(StageError::msg("`batch_size`, `max_new_tokens` and `num_beams` must be at least 1"));
        }
        if let Some((_, m)) = p.generation().problems().into_iter().next() {
            return Err(StageError::msg(m));
        }
        let instructions = ctx.input("instructions")?;
        let mut rows = read_instructions(instructions)?;
        if let Some(l) = p.limit {
            rows.truncate(l);
        }
        let model = ctx.input("model")?;
        check_model(model)?;

        let worker = Worker::find()?;
        let job = AnswerJob {
            model: model.to_path_buf(),
            instructions: instructions.to_path_buf(),
            scratch_dir: ctx.scratch_dir().to_path_buf(),
            limit: p.limit,
            batch_size: p.batch_size,
            device: p.device.clone(),
            dtype: p.dtype.clone(),
            threads: p.threads,
            prompt_input: p.prompt_input.clone(),
            prompt_no_input: p.prompt_no_input.clone(),
            generation: p.generation(),
        };
        std::fs::create_dir_all(ctx.scratch_dir()).map_err(StageError::io("create the scratch dir"))?;
        let job_path = ctx.scratch_dir().join("answer-job.json");
        std::fs::write(&job_path, camel_torch_job::to_json_pretty(&job))
            .map_err(StageError::io(format!("write {}", job_path.display())))?;
        ctx.log(&format!(
            "$ {} answer {} ({} rows)",
            worker.path().display(),
            job_path.display(),
            rows.len()
        ));
        worker.run(
            &StageHost::new(ctx)?,
            Subcommand::Answer,
            &job_path,
            Ranks::Inherit,
            Some(ctx.work_dir()),
        )?;

        // Assemble the answers in input order from the worker's rows.
        let rows_path = ctx.scratch_dir().join("rows.jsonl");
        let text = std::fs::read_to_string(&rows_path)
            .map_err(StageError::io(format!("read {}", rows_path.display())))?;
        let mut outputs: Vec<Option<(String, u64)>> = vec![None; rows.len()];
        for line in text.lines() {
            // A line a kill cut short is not a row; the worker redid its batch.
            let Ok(row) = serde_json::from_str::<Row>(line) else { continue };
            if let Some(slot) = outputs.get_mut(row.index) {
                *slot = Some((row.output, row.tokens as u64));
            }
        }
        let mut answers = Vec::with_capacity(rows.len());
        let mut tokens = 0u64;
        for (i, (row, out)) in rows.iter_mut().zip(outputs).enumerate() {
            let (o, t) = out.ok_or_else(|| {
                StageError::msg(format!(
                    "the worker finished without answering row {i} (a bug; please report it)"
                ))
            })?;
            tokens += t;
            row.insert("output".into(), Value::String(o));
            answers.push(Value::Object(std::mem::take(row)));
        }
        write_atomic(&ctx.out_dir().join("answers.json"), &Value::Array(answers))?;
        let stats = json!({
            "rows": rows.len(),
            "new_tokens": tokens,
            "mean_new_tokens": if rows.is_empty() { 0.0 } else { tokens as f64 / rows.len() as f64 },
            "decoding": job.generation,
            "batch_size": p.batch_size,
        });
        write_atomic(&ctx.out_dir().join("stats.json"), &stats)?;
        ctx.log(&format!("{} rows answered, {tokens} new tokens", rows.len()));
        Ok(())
    }
}

/// The instructions file as records `{instruction, input[, type]}` (other fields dropped), or an
/// error naming the file and the row at fault.
pub fn read_instructions(path: &Path) -> Result<Vec<serde_json::Map<String, Value>>, StageError> {
    let text = std::fs::read_to_string(path).map_err(StageError::io(format!("read {}", path.display())))?;
    let bad = |m: String| {
        StageError::msg(format!(
            "{}: {m}; the `instructions` input must be a JSON list of {{\"instruction\": …, \"input\": …}} \
             records (as mtsamples_instructions.json)",
            path.display()
        ))
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    let Value::Array(items) = v else { return Err(bad("not a JSON list".into())) };
    let mut rows = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(o) = item else { return Err(bad(format!("row {i} is not an object"))) };
        let mut row = serde_json::Map::new();
        match o.get("instruction") {
            Some(Value::String(s)) => row.insert("instruction".into(), Value::String(s.clone())),
            _ => return Err(bad(format!("row {i} has no string `instruction`"))),
        };
        match o.get("input") {
            None | Some(Value::Null) => row.insert("input".into(), Value::String(String::new())),
            Some(Value::String(s)) => row.insert("input".into(), Value::String(s.clone())),
            Some(_) => return Err(bad(format!("row {i}: `input` is not a string"))),
        };
        if let Some(Value::String(t)) = o.get("type") {
            row.insert("type".into(), Value::String(t.clone()));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(bad("the list is empty".into()));
    }
    Ok(rows)
}

fn check_model(dir: &Path) -> Result<(), StageError> {
    for f in ["config.json", "tokenizer.json"] {
        if !dir.join(f).is_file() {
            return Err(StageError::msg(format!(
                "the `model` input {} has no {f}: bind a Hugging Face checkpoint dir with its tokenizer \
                 (e.g. `finetune.model`)",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Pretty JSON, written atomically (camel-cache's writer: temp file, fsync, rename).
fn write_atomic(path: &Path, v: &Value) -> Result<(), StageError> {
    camel_cache::write_json_atomic(path, v).map_err(|e| StageError::Other(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_checked_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.json");
        std::fs::write(
            &p,
            r#"[{"instruction": "a", "input": "b", "type": "QA", "x": 1}, {"instruction": "c"}]"#,
        )
        .unwrap();
        let rows = read_instructions(&p).unwrap();
        assert_eq!(Value::Object(rows[0].clone()), json!({"instruction": "a", "input": "b", "type": "QA"}));
        assert_eq!(rows[1]["input"], "");
        std::fs::write(&p, r#"{"instruction": "a"}"#).unwrap();
        assert!(read_instructions(&p).unwrap_err().to_string().contains("not a JSON list"));
        std::fs::write(&p, r#"[{"input": "a"}]"#).unwrap();
        assert!(read_instructions(&p).unwrap_err().to_string().contains("row 0 has no string `instruction`"));
    }
}
