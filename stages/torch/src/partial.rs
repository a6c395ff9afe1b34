//! What an unfinished run of a torch stage left in its scratch directory, for `camel status` and
//! the run's header (`Stage::partial`): the newest training checkpoint, or the rows `answer` has
//! already written. The worker owns these layouts (its `resume.rs`, `rows.jsonl`); this module
//! only reads them, and records the one thing the checkpoints lack: how many steps the run has
//! in all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use camel_engine::Partial;
use camel_engine::process::{ChildHost, Stream};
use camel_torch_job::{Progress, Row};

/// The file in the scratch dir holding the total the worker reported for its progress bar.
const TOTAL_FILE: &str = "progress-total";

/// The newest complete training checkpoint, `checkpoints/step-N` (committed by a rename, so a
/// directory of that name is whole), out of the total the last run reported.
pub(crate) fn training(scratch: &Path) -> Option<Partial> {
    let step = std::fs::read_dir(scratch.join("checkpoints"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_prefix("step-")?.parse::<u64>().ok())
        .max()?;
    let total =
        std::fs::read_to_string(scratch.join(TOTAL_FILE)).ok().and_then(|t| t.trim().parse::<u64>().ok());
    Some(Partial {
        state: format!("checkpoint at step {step}{}", total.map(|t| format!("/{t}")).unwrap_or_default()),
        resumes_from: format!("step {step}"),
        position: Some(step),
    })
}

/// The rows `answer` has written to `rows.jsonl` (a line a kill cut short is not a row), out of
/// `total` when known.
pub(crate) fn answered(scratch: &Path, total: Option<usize>) -> Option<Partial> {
    let text = std::fs::read_to_string(scratch.join("rows.jsonl")).ok()?;
    let done: BTreeSet<usize> =
        text.lines().filter_map(|l| serde_json::from_str::<Row>(l).ok()).map(|r| r.index).collect();
    if done.is_empty() {
        return None;
    }
    let n = done.len();
    Some(Partial {
        state: format!("{n}{} rows answered", total.map(|t| format!("/{t}")).unwrap_or_default()),
        resumes_from: format!("row {n}"),
        position: Some(n as u64),
    })
}

/// The headline numbers of a training run for `camel diff`: the last value of `loss` (and of
/// each held-out `eval…` field, where the run had one) in `metrics.jsonl`, and the steps taken.
pub(crate) fn training_metrics(out_dir: &Path) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(out_dir.join("metrics.jsonl")) else { return out };
    for line in text.lines() {
        let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        for (k, v) in &m {
            let Some(x) = v.as_f64() else { continue };
            match k.as_str() {
                "loss" => out.insert("final loss".to_string(), x),
                "step" => out.insert("steps".to_string(), x),
                k if k.starts_with("eval") => out.insert(format!("final {k}"), x),
                _ => None,
            };
        }
    }
    out
}

/// Passes everything to `inner`, writing the progress total to the scratch dir whenever it
/// changes, so that [`training`] can say "step 30/330" after a kill.
pub(crate) struct RecordTotal<H> {
    inner: H,
    path: PathBuf,
    last: AtomicU64,
}

impl<H: ChildHost> RecordTotal<H> {
    pub(crate) fn new(inner: H, scratch: &Path) -> Self {
        RecordTotal { inner, path: scratch.join(TOTAL_FILE), last: AtomicU64::new(0) }
    }
}

impl<H: ChildHost> ChildHost for RecordTotal<H> {
    fn progress(&self, p: Progress) {
        if let Some(t) = p.total
            && self.last.swap(t, Ordering::Relaxed) != t
        {
            // Best effort: without it, status shows the step without the total.
            let _ = std::fs::write(&self.path, t.to_string());
        }
        self.inner.progress(p);
    }
    fn output(&self, child: usize, stream: Stream, line: &[u8]) {
        self.inner.output(child, stream, line);
    }
    fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }
    fn output_location(&self) -> Option<String> {
        self.inner.output_location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sink;
    impl ChildHost for Sink {
        fn progress(&self, _: Progress) {}
        fn output(&self, _: usize, _: Stream, _: &[u8]) {}
    }

    #[test]
    fn a_checkpoint_and_the_recorded_total_make_the_partial_state() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(training(d.path()), None);
        // Only a committed checkpoint counts; one being written does not.
        for dir in ["checkpoints/step-20", "checkpoints/step-30", "checkpoints/.tmp-step-40"] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
        }
        assert_eq!(training(d.path()).unwrap().state, "checkpoint at step 30");
        let host = RecordTotal::new(Sink, d.path());
        host.progress(Progress { pos: 31, total: Some(330), unit: "steps".into(), message: None });
        let p = training(d.path()).unwrap();
        assert_eq!(
            (p.state.as_str(), p.resumes_from.as_str(), p.position),
            ("checkpoint at step 30/330", "step 30", Some(30))
        );
    }

    #[test]
    fn the_last_logged_values_are_the_training_metrics() {
        let d = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"step":1,"epoch":0.5,"loss":3.5,"lr":0.001}"#,
            r#"{"step":2,"epoch":1.0,"loss":2.25,"lr":0.0005,"eval_loss":2.5}"#,
            "",
        ];
        std::fs::write(d.path().join("metrics.jsonl"), lines.join("\n")).unwrap();
        let m = training_metrics(d.path());
        let got: Vec<(&str, f64)> = m.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("final eval_loss", 2.5), ("final loss", 2.25), ("steps", 2.0)]);
    }

    #[test]
    fn answered_rows_are_counted_once_and_a_cut_line_is_not_a_row() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(answered(d.path(), Some(8)), None);
        let row =
            |i: usize| serde_json::to_string(&Row { index: i, output: "ok".into(), tokens: 2 }).unwrap();
        let text = format!("{}\n{}\n{}\n{{\"index\": 3, \"out", row(0), row(1), row(1));
        std::fs::write(d.path().join("rows.jsonl"), text).unwrap();
        let p = answered(d.path(), Some(8)).unwrap();
        assert_eq!((p.state.as_str(), p.resumes_from.as_str()), ("2/8 rows answered", "row 2"));
    }
}
