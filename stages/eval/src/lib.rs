//! The evaluation stage kinds, CAMEL's MTSamples comparison as stages anyone can rerun:
//!
//! - [`judge::Judge`] (`kind: judge`): an LLM scores every system's answer 1–10 per row, through
//!   camel-llm (rate limits, request log, PHI guard), with the answers shown in a seeded random
//!   order per row so that position bias cancels.
//! - [`metrics::Metrics`] (`kind: metrics`): offline ROUGE-L, BLEU and token F1 of each system
//!   against a reference system, per row and per task type.
//! - [`report::Report`] (`kind: report`): mean judge scores with bootstrap intervals, the ratio to
//!   a reference system (CAMEL's "96 % of GPT-3.5"), per task type, the offline metrics; Markdown
//!   and an SVG bar chart.
//!
//! The `answer` kind (a checkpoint answers the instructions) is in camel-torch: it runs the
//! libtorch worker. The answer sets the kinds here read are [`data`]'s: `answers.json` files and
//! columns of results files such as CAMEL's `mtsamples_results.json`.

pub mod data;
pub mod judge;
pub mod metrics;
pub mod py_word;
pub mod report;

pub use judge::Judge;
pub use metrics::Metrics;
pub use report::Report;

use std::path::Path;

use camel_engine::StageError;
use serde::Serialize;

/// Pretty JSON and a final newline, written atomically by camel-cache (the kinds' one writer).
/// A committed output's JSON, for [`camel_engine::Stage::metrics`] (`None` when it is missing or
/// not JSON: a metric absent is shown as such).
pub(crate) fn read_json_value(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), StageError> {
    camel_cache::write_json_atomic(path, v).map_err(|e| StageError::Other(Box::new(e)))
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    camel_cache::write_atomic(path, text.as_bytes()).map_err(|e| StageError::Other(Box::new(e)))
}
