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
pub mod report;
pub mod rng;

pub use judge::Judge;
pub use metrics::Metrics;
pub use report::Report;

use std::path::Path;

use camel_engine::StageError;
use serde::Serialize;

/// Writes pretty JSON (and a final newline) to a temporary name beside `path`, then renames it.
pub(crate) fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), StageError> {
    let mut text = serde_json::to_string_pretty(v)
        .map_err(|e| StageError::msg(format!("failed to serialize {}: {e}", path.display())))?;
    text.push('\n');
    write_text(path, &text)
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(StageError::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(StageError::io(format!("rename {}", tmp.display())))
}
