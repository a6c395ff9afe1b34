//! The `answer` stage's job (`camel-torch-worker answer JOB.json`) and the rows the worker appends
//! to `rows.jsonl` in the scratch dir, which the stage assembles into `answers.json`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::generate::GenParams;

/// What the `answer` stage hands the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerJob {
    /// A Hugging Face checkpoint dir with `tokenizer.json`.
    pub model: PathBuf,
    /// A JSON list of `{instruction, input}` records.
    pub instructions: PathBuf,
    /// Where `rows.jsonl` goes (kept across kills).
    pub scratch_dir: PathBuf,
    /// Answer the first `limit` rows only.
    #[serde(default)]
    pub limit: Option<usize>,
    pub batch_size: usize,
    pub device: String,
    pub dtype: String,
    /// libtorch intra-op threads (0: its default).
    #[serde(default)]
    pub threads: usize,
    pub prompt_input: String,
    pub prompt_no_input: String,
    pub generation: GenParams,
}

impl AnswerJob {
    pub fn from_file(path: &Path) -> Result<AnswerJob, crate::ReadError> {
        crate::read_json_file(path, "answer job")
    }
}

/// One finished row in `rows.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub index: usize,
    pub output: String,
    /// New tokens generated (eos included when reached).
    pub tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::round_trip;

    /// What `kind: answer` wrote before this crate (its `json!` job), for CAMEL's 5 beams.
    const ANSWER_JOB: &str = r#"{
  "batch_size": 8,
  "device": "auto",
  "dtype": "auto",
  "generation": {
    "do_sample": false,
    "length_penalty": 1.0,
    "max_new_tokens": 512,
    "num_beams": 5,
    "seed": 42,
    "temperature": 1.0,
    "top_p": 1.0
  },
  "instructions": "/data/mtsamples_instructions.json",
  "limit": null,
  "model": "/ws/out/finetune/model",
  "prompt_input": "in {instruction} {input}",
  "prompt_no_input": "no {instruction}",
  "scratch_dir": "/ws/scratch/k",
  "threads": 0
}"#;

    #[test]
    fn an_answer_job_reads_and_writes_as_before() {
        let job = AnswerJob {
            model: "/ws/out/finetune/model".into(),
            instructions: "/data/mtsamples_instructions.json".into(),
            scratch_dir: "/ws/scratch/k".into(),
            limit: None,
            batch_size: 8,
            device: "auto".into(),
            dtype: "auto".into(),
            threads: 0,
            prompt_input: "in {instruction} {input}".into(),
            prompt_no_input: "no {instruction}".into(),
            generation: GenParams { max_new_tokens: 512, num_beams: 5, seed: 42, ..Default::default() },
        };
        round_trip(&job, ANSWER_JOB);
    }

    #[test]
    fn a_row_reads_and_writes_as_before() {
        let row = Row { index: 3, output: "Aspirin 81 mg.".into(), tokens: 6 };
        round_trip(&row, r#"{"index":3,"output":"Aspirin 81 mg.","tokens":6}"#);
        // The worker writes rows with `serde_json::to_string` (field order), the same bytes.
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"index":3,"output":"Aspirin 81 mg.","tokens":6}"#
        );
    }
}
