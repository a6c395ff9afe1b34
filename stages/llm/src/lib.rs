//! camel's LLM client, shared by every stage that asks a language model something: instruction
//! generation (`instructions`) and the evaluation judge (`judge`).
//!
//! - [`provider`]: Azure OpenAI and OpenAI-compatible servers, the exact URL, headers and body.
//! - [`client`]: bounded concurrency, requests- and tokens-per-minute limits, retries with
//!   backoff that honours `Retry-After`, a per-request timeout, usage accounting.
//! - [`log`]: the fsync'd request log that makes a rerun never pay for a response twice.
//! - [`guard`]: the PHI guard; notes go only to loopback or to hosts the pipeline allows.
//! - [`checks`]: what the pipeline file decides (a refused host, limits out of range), checked
//!   before anything runs.
//! - [`runner`]: a stage's client set up from its context, and the one windowed loop that sends
//!   a stage's items through it (progress, cancellation, log lines).
//!
//! The API key is passed in by the caller (a stage reads it through `${env:NAME}` in an unhashed
//! param) and used only as a header value: it is in no URL, body, log line, error or cache key.

pub mod checks;
pub mod client;
pub mod guard;
pub mod log;
pub mod provider;
pub mod runner;

pub use client::{Client, ClientStats, Failure, Limits, Reply};
pub use guard::{AllowedEndpoints, check_entry};
pub use log::RequestLog;
pub use provider::{AzureConfig, Completion, FinishReason, Message, OpenAiConfig, Provider, Usage};
pub use runner::StageClient;

/// Errors that stop a client from being made (a request's own failures are [`Failure`]s).
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("{0}")]
    Config(String),
    /// The PHI guard refused the provider's host.
    #[error("{0}")]
    NotAllowed(String),
    #[error("failed to open the request log {path}: {source}")]
    Log {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Prices per 1,000 tokens, for the cost estimate in stats. Written in YAML as `prices:`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    /// Price of 1,000 prompt tokens.
    #[serde(default)]
    pub prompt_per_1k: f64,
    /// Price of 1,000 completion tokens.
    #[serde(default)]
    pub completion_per_1k: f64,
}

impl Prices {
    pub fn cost(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.prompt_per_1k + completion_tokens as f64 * self.completion_per_1k)
            / 1000.0
    }
}

#[cfg(test)]
mod tests;
