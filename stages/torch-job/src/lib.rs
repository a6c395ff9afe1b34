//! The boundary between camel and `camel-torch-worker`, in one place: every message either side
//! writes or reads, as types both sides compile against (serde only, so the `camel` binary never
//! links libtorch by depending on it).
//!
//! | message | written by | read by |
//! |---|---|---|
//! | [`train::Job`] (`train JOB.json`) | `pretrain`/`finetune` stages | worker |
//! | [`answer::AnswerJob`] (`answer JOB.json`) | `answer` stage | worker |
//! | [`answer::Row`] (`rows.jsonl` in the scratch dir) | worker | `answer` stage |
//! | [`generate::GenJob`] (`generate JOB.json`) | `camel generate` | worker |
//! | [`generate::GenOutput`] (stdout, one per prompt) | worker | `camel generate` |
//! | [`line::Progress`], [`line::ERROR_PREFIX`] (stdout / stderr lines) | worker, `command` scripts | camel |
//! | [`follow::JobListLine`] (`jobs.jsonl`) | rank 0's camel | the other ranks' camel |
//!
//! Besides the messages, [`model_config`] holds the model's `config.json` type and the checks of
//! what camel implements, and [`model_dir`] a checkpoint dir's weights (found, and their tensors
//! read from the safetensors headers) and tokenizer, so that the stages run at plan time the
//! checks the worker runs on load.
//!
//! Files are written with [`to_json_pretty`] / [`to_json_line`]: keys sorted at every level, the
//! bytes camel has always written (the jobs were once built as `serde_json::Value`s, whose maps are
//! sorted), so a job file reads the same whatever the field order of a struct.

pub mod answer;
pub mod follow;
pub mod generate;
pub mod generation_config;
pub mod line;
pub mod model_config;
pub mod model_dir;
pub mod prompt;
pub mod train;

pub use answer::{AnswerJob, Row};
pub use follow::JobListLine;
pub use generate::{DEFAULT_TOP_K, GenJob, GenOutput, GenParams};
pub use line::{ERROR_PREFIX, PROGRESS_PREFIX, Progress};
pub use prompt::{ALPACA_PROMPT_INPUT, ALPACA_PROMPT_NO_INPUT};
pub use train::{
    BackendChoice, Checkpointing, DistParams, FinetuneParams, Job, LossNormalization, PretrainParams,
    Strategy, Task, TrainParams,
};

use serde::Serialize;

/// `value` as pretty JSON with sorted keys (how job files are written).
pub fn to_json_pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(&canonical(value)).expect("a JSON value serializes")
}

/// `value` as one line of JSON with sorted keys (how `jobs.jsonl` lines are written).
pub fn to_json_line<T: Serialize>(value: &T) -> String {
    canonical(value).to_string()
}

/// Through `serde_json::Value`, whose maps are sorted (the workspace does not enable serde_json's
/// `preserve_order`): the canonical form, whatever a struct's field order.
fn canonical<T: Serialize>(value: &T) -> serde_json::Value {
    // Only types of this crate come here; every one of them serializes to JSON (string keys).
    serde_json::to_value(value).expect("boundary messages serialize to JSON")
}

/// An error and its sources, as one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
pub(crate) mod testing {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// A scratch dir under the system's temp dir, removed when dropped (this crate has no
    /// tempfile dependency).
    pub struct TempDir(pub std::path::PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicU64, Ordering};
            static N: AtomicU64 = AtomicU64::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let d = std::env::temp_dir().join(format!("camel-torch-job-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Serialize → deserialize gives the value back, and the canonical text is `literal` (the bytes
    /// today's code writes), which itself deserializes to the value.
    pub fn round_trip<T>(value: &T, literal: &str)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let text = serde_json::to_string(value).unwrap();
        assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), value, "round trip of {text}");
        let parsed: T = serde_json::from_str(literal).unwrap();
        assert_eq!(&parsed, value, "the fixed literal reads as the value");
        let canonical =
            if literal.contains('\n') { super::to_json_pretty(value) } else { super::to_json_line(value) };
        assert_eq!(canonical, literal, "the wire bytes did not change");
    }
}

/// A job file the worker could not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to read {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {what} {}", path.display())]
    Invalid {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

fn read_json_file<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &'static str,
) -> Result<T, ReadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ReadError::Read { path: path.to_path_buf(), source })?;
    serde_json::from_str(&text).map_err(|source| ReadError::Invalid {
        what,
        path: path.to_path_buf(),
        source,
    })
}
