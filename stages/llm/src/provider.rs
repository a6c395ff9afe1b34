//! Providers and the exact HTTP requests sent to them.
//!
//! Two wire formats cover the servers camel talks to: Azure OpenAI
//! (`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`, header `api-key`)
//! and the OpenAI-compatible `POST {base_url}/chat/completions` with `Authorization: Bearer`
//! (OpenAI itself, vLLM, llama.cpp's server, …). The body is built here, byte for byte, because its
//! blake3 (with the URL, without any secret) is the request's key in the request log.

use serde::{Deserialize, Serialize};

/// Where requests go. Written in YAML as `provider: {type: azure | openai, …}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Provider {
    Openai(OpenAiConfig),
    Azure(AzureConfig),
}

/// An OpenAI-compatible server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// Up to and including the version path: `https://api.openai.com/v1`, `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    pub model: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Sent as `seed` (OpenAI, Azure ≥ 2023-12-01-preview, vLLM); best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// An Azure OpenAI deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// `https://RESOURCE.openai.azure.com`
    pub endpoint: String,
    pub deployment: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Sent as `seed` (OpenAI, Azure ≥ 2023-12-01-preview, vLLM); best-effort determinism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

fn default_api_version() -> String {
    "2024-06-01".into()
}

/// Decoding settings sent with every request (written beside the provider's other fields; serde's
/// `flatten` cannot be combined with `deny_unknown_fields`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Generation {
    pub max_tokens: u32,
    pub temperature: f64,
    pub seed: Option<u64>,
}

fn default_max_tokens() -> u32 {
    1024
}

fn default_temperature() -> f64 {
    0.7
}

impl Default for Generation {
    fn default() -> Self {
        Generation { max_tokens: default_max_tokens(), temperature: default_temperature(), seed: None }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn system(c: impl Into<String>) -> Self {
        Message { role: "system".into(), content: c.into() }
    }
    pub fn user(c: impl Into<String>) -> Self {
        Message { role: "user".into(), content: c.into() }
    }
}

/// A request ready to send: URL, the auth header's name, and the body bytes.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub url: String,
    /// The header that carries the key, and how its value is formed from the key.
    pub auth: Auth,
    pub body: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer KEY`
    Bearer,
    /// `api-key: KEY`
    ApiKey,
}

impl Provider {
    pub fn generation(&self) -> Generation {
        match self {
            Provider::Openai(c) => {
                Generation { max_tokens: c.max_tokens, temperature: c.temperature, seed: c.seed }
            }
            Provider::Azure(c) => {
                Generation { max_tokens: c.max_tokens, temperature: c.temperature, seed: c.seed }
            }
        }
    }

    /// The URL requests go to (no secret is ever part of it).
    pub fn url(&self) -> String {
        match self {
            Provider::Openai(c) => format!("{}/chat/completions", c.base_url.trim_end_matches('/')),
            Provider::Azure(c) => format!(
                "{}/openai/deployments/{}/chat/completions?api-version={}",
                c.endpoint.trim_end_matches('/'),
                c.deployment,
                c.api_version
            ),
        }
    }

    /// A short, secret-free description for logs: `azure deployment gpt-35 at https://x.openai.azure.com`.
    pub fn describe(&self) -> String {
        match self {
            Provider::Openai(c) => format!("model {} at {}", c.model, c.base_url),
            Provider::Azure(c) => format!("Azure deployment {} at {}", c.deployment, c.endpoint),
        }
    }

    /// The request for `messages`. OpenAI-compatible bodies name the model; Azure's name it in
    /// the URL instead.
    pub fn request(&self, messages: &[Message]) -> HttpRequest {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            model: Option<&'a str>,
            messages: &'a [Message],
            max_tokens: u32,
            temperature: f64,
            #[serde(skip_serializing_if = "Option::is_none")]
            seed: Option<u64>,
        }
        let g = self.generation();
        let (model, auth) = match self {
            Provider::Openai(c) => (Some(c.model.as_str()), Auth::Bearer),
            Provider::Azure(_) => (None, Auth::ApiKey),
        };
        let body =
            Body { model, messages, max_tokens: g.max_tokens, temperature: g.temperature, seed: g.seed };
        HttpRequest {
            url: self.url(),
            auth,
            body: serde_json::to_vec(&body).expect("a chat body serializes"),
        }
    }
}

impl HttpRequest {
    /// The request's key in the request log: blake3 of the URL and the body. Neither holds the
    /// key (it travels in a header), so the log can be shared and kept.
    pub fn key(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"camel-llm-request-v1\0");
        h.update(self.url.as_bytes());
        h.update(b"\0");
        h.update(&self.body);
        h.finalize().to_hex().to_string()
    }

    /// A rough token count for the tokens-per-minute limit, counted the way the providers do
    /// before running the model: the prompt (about 4 bytes a token) plus `max_tokens`.
    pub fn estimated_tokens(&self, max_tokens: u32) -> u32 {
        u32::try_from(self.body.len() / 4).unwrap_or(u32::MAX).saturating_add(max_tokens)
    }
}

/// Why a completion stopped, as the provider reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    /// Cut at `max_tokens`.
    Length,
    /// The provider's content filter removed the reply.
    ContentFilter,
    Other(String),
}

impl FinishReason {
    fn parse(s: Option<&str>) -> FinishReason {
        match s {
            Some("stop") | None => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            Some("content_filter") => FinishReason::ContentFilter,
            Some(o) => FinishReason::Other(o.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
            FinishReason::Other(o) => o,
        }
    }
}

/// Token usage as reported by the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The part of a chat-completion response camel keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Completion {
    pub content: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
}

/// Parses a 200 response body; `None` when it is not a complete chat completion (a truncated
/// body, an HTML error page behind a proxy, …), which the client retries.
pub fn parse_completion(body: &[u8]) -> Option<Completion> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let choice = v.get("choices")?.get(0)?;
    let finish_reason = FinishReason::parse(choice.get("finish_reason").and_then(|f| f.as_str()));
    let content = match choice.get("message").and_then(|m| m.get("content")) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None if finish_reason == FinishReason::ContentFilter => String::new(),
        _ => return None,
    };
    let n = |k: &str| v.get("usage").and_then(|u| u.get(k)).and_then(|x| x.as_u64()).unwrap_or(0);
    Some(Completion {
        content,
        finish_reason,
        usage: Usage { prompt_tokens: n("prompt_tokens"), completion_tokens: n("completion_tokens") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> Provider {
        Provider::Openai(OpenAiConfig {
            base_url: "http://127.0.0.1:8000/v1/".into(),
            model: "gpt-4o-mini".into(),
            max_tokens: 256,
            temperature: 0.0,
            seed: Some(7),
        })
    }

    fn azure() -> Provider {
        Provider::Azure(AzureConfig {
            endpoint: "https://res.openai.azure.com".into(),
            deployment: "gpt35".into(),
            api_version: "2024-06-01".into(),
            max_tokens: 1024,
            temperature: 0.7,
            seed: None,
        })
    }

    #[test]
    fn exact_urls_and_bodies() {
        let m = [Message::system("s"), Message::user("u")];
        let r = openai().request(&m);
        assert_eq!(r.url, "http://127.0.0.1:8000/v1/chat/completions");
        assert_eq!(r.auth, Auth::Bearer);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"max_tokens":256,"temperature":0.0,"seed":7}"#
        );
        let r = azure().request(&m);
        assert_eq!(
            r.url,
            "https://res.openai.azure.com/openai/deployments/gpt35/chat/completions?api-version=2024-06-01"
        );
        assert_eq!(r.auth, Auth::ApiKey);
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"max_tokens":1024,"temperature":0.7}"#
        );
    }

    #[test]
    fn keys_depend_on_url_and_body_only() {
        let m = [Message::user("u")];
        let a = openai().request(&m).key();
        assert_eq!(a, openai().request(&m).key());
        assert_ne!(a, openai().request(&[Message::user("v")]).key());
        assert_ne!(a, azure().request(&m).key());
    }

    #[test]
    fn yaml_configs() {
        let p: Provider =
            serde_yaml_like(r#"{"type":"azure","endpoint":"https://x","deployment":"d","max_tokens":5}"#);
        assert_eq!(p.generation().max_tokens, 5);
        assert!(
            serde_json::from_str::<Provider>(
                r#"{"type":"azure","endpoint":"https://x","deployment":"d","modle":"m"}"#
            )
            .is_err()
        );
    }

    fn serde_yaml_like(s: &str) -> Provider {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn completions_parse() {
        let ok = br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let c = parse_completion(ok).unwrap();
        assert_eq!(
            (c.content.as_str(), c.finish_reason, c.usage.prompt_tokens),
            ("hi", FinishReason::Length, 3)
        );
        let f = br#"{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}"#;
        assert_eq!(parse_completion(f).unwrap().finish_reason, FinishReason::ContentFilter);
        assert!(parse_completion(&ok[..ok.len() / 2]).is_none());
        assert!(parse_completion(b"<html>bad gateway</html>").is_none());
    }
}
