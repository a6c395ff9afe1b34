//! `camel generate`'s job (`camel-torch-worker generate JOB.json`), the decoding params it shares
//! with the `answer` job, and the line the worker prints per prompt.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Decoding, as transformers' `generate` names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenParams {
    pub max_new_tokens: usize,
    pub do_sample: bool,
    pub temperature: f64,
    pub top_p: f64,
    /// Sampling: only the `top_k` most likely tokens (0: no such filter). Unset: the checkpoint's
    /// `generation_config.json` `top_k`, else 50, as transformers' `generate` takes it. Only on the
    /// wire when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k: Option<usize>,
    /// Ids that end a sequence (empty: the checkpoint's, from its `generation_config.json` as
    /// transformers reads it, else `config.json`). Only on the wire when set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub eos_ids: Vec<i64>,
    /// The padding id (0: the checkpoint's `pad_token_id`, else 0). Only on the wire when set.
    #[serde(skip_serializing_if = "is_zero")]
    pub pad_id: i64,
    pub seed: u64,
    /// More than 1: beam search (deterministic; `do_sample` is ignored).
    pub num_beams: usize,
    pub length_penalty: f64,
}

impl GenParams {
    /// What transformers' `generate` would refuse in these settings (`temperature` 0 with
    /// sampling, a NaN, …), as (param name, problem); empty when they are fine.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (name, v) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("length_penalty", self.length_penalty),
        ] {
            if !v.is_finite() {
                out.push((name, format!("`{name}` must be a finite number, not {v}")));
            }
        }
        if self.do_sample && self.num_beams <= 1 {
            if self.temperature <= 0.0 {
                out.push((
                    "temperature",
                    format!(
                        "sampling needs `temperature` > 0 (not {}); for greedy decoding, do not sample",
                        self.temperature
                    ),
                ));
            }
            if !(self.top_p > 0.0 && self.top_p <= 1.0) && self.top_p.is_finite() {
                out.push(("top_p", format!("sampling needs `top_p` in (0, 1] (not {})", self.top_p)));
            }
        }
        out
    }
}

/// transformers' `top_k` when neither the call nor the checkpoint's `generation_config.json` sets it.
pub const DEFAULT_TOP_K: usize = 50;

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_new_tokens: 64,
            do_sample: false,
            temperature: 1.0,
            top_p: 1.0,
            top_k: None,
            eos_ids: Vec::new(),
            pad_id: 0,
            seed: 0,
            num_beams: 1,
            length_penalty: 1.0,
        }
    }
}

/// A `camel generate` request: prompts as text, encoded and decoded with the checkpoint's
/// tokenizer.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenJob {
    pub model: PathBuf,
    pub prompts: Vec<String>,
    /// A template with `{instruction}` each prompt is put into (e.g. Alpaca's), or none.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default = "auto")]
    pub device: String,
    #[serde(default = "auto")]
    pub dtype: String,
    #[serde(default)]
    pub params: GenParams,
}

fn auto() -> String {
    "auto".into()
}

impl GenJob {
    pub fn from_file(path: &Path) -> Result<GenJob, crate::ReadError> {
        crate::read_json_file(path, "generation job")
    }
}

/// One line of the worker's stdout per prompt, in prompt order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenOutput {
    pub index: usize,
    pub text: String,
    /// New tokens generated (eos included when reached).
    pub tokens: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::round_trip;

    #[test]
    fn settings_generate_refuses_are_named() {
        let names = |p: GenParams| p.problems().into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert!(names(GenParams::default()).is_empty());
        assert!(
            names(GenParams { temperature: 0.0, ..GenParams::default() }).is_empty(),
            "greedy ignores it"
        );
        let sample = GenParams { do_sample: true, ..GenParams::default() };
        assert_eq!(names(GenParams { temperature: 0.0, ..sample.clone() }), ["temperature"]);
        assert_eq!(names(GenParams { top_p: 1.5, ..sample.clone() }), ["top_p"]);
        assert_eq!(names(GenParams { temperature: f64::NAN, ..sample.clone() }), ["temperature"]);
        assert_eq!(
            names(GenParams { length_penalty: f64::INFINITY, ..GenParams::default() }),
            ["length_penalty"]
        );
        assert!(
            names(GenParams { temperature: 0.0, num_beams: 2, ..sample }).is_empty(),
            "beam search ignores it"
        );
    }

    #[test]
    fn a_generation_job_reads_and_writes_as_before() {
        let job = GenJob {
            model: "/m".into(),
            prompts: vec!["The patient".into(), "List the medications.".into()],
            template: None,
            device: "cpu".into(),
            dtype: "auto".into(),
            params: GenParams { max_new_tokens: 5, seed: 3, num_beams: 2, ..Default::default() },
        };
        round_trip(
            &job,
            r#"{"device":"cpu","dtype":"auto","model":"/m","params":{"do_sample":false,"length_penalty":1.0,"max_new_tokens":5,"num_beams":2,"seed":3,"temperature":1.0,"top_p":1.0},"prompts":["The patient","List the medications."],"template":null}"#,
        );
        // What `camel generate` wrote before this crate: no dtype, no length_penalty (defaults).
        let before = r#"{"device":"cpu","model":"/m","params":{"do_sample":false,"max_new_tokens":5,"num_beams":2,"seed":3,"temperature":1.0,"top_p":1.0},"prompts":["The patient","List the medications."],"template":null}"#;
        assert_eq!(serde_json::from_str::<GenJob>(before).unwrap(), job);
    }

    #[test]
    fn decoding_params_leave_unset_ids_off_the_wire() {
        let p = GenParams { eos_ids: vec![2], pad_id: 7, ..Default::default() };
        round_trip(
            &p,
            r#"{"do_sample":false,"eos_ids":[2],"length_penalty":1.0,"max_new_tokens":64,"num_beams":1,"pad_id":7,"seed":0,"temperature":1.0,"top_p":1.0}"#,
        );
    }

    #[test]
    fn an_output_line_reads_and_writes_as_before() {
        let out = GenOutput { index: 1, text: "Aspirin.".into(), tokens: 4 };
        round_trip(&out, r#"{"index":1,"text":"Aspirin.","tokens":4}"#);
        assert_eq!(serde_json::to_string(&out).unwrap(), r#"{"index":1,"text":"Aspirin.","tokens":4}"#);
    }
}
