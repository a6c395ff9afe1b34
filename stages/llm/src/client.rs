//! The client: one [`Client`] per stage run, used from many tokio tasks at once.
//!
//! Per request, in order: the request log (a logged response is returned without sending), a
//! per-key lock (two tasks asking the same thing send it once), then for each attempt: a
//! concurrency permit, any pause a 429 imposed on everyone, the requests-per-minute and
//! tokens-per-minute limiters (GCRA, `governor`), and the HTTP exchange under a per-request
//! timeout. 429, 408, 409, 5xx, timeouts, connection errors and unparseable 200 bodies are retried
//! after an exponential backoff with jitter, or after `Retry-After` when the server sends one;
//! after `max_retries` retries the request fails with [`Failure::Exhausted`], which callers record
//! and report. Other 4xx answers are not retried ([`Failure::Rejected`]).
//!
//! Nothing here logs or returns a prompt, a reply, or the API key: messages name the request by
//! the first 12 hex digits of its key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

use crate::LlmError;
use crate::guard::AllowedEndpoints;
use crate::log::RequestLog;
use crate::provider::{Auth, Completion, FinishReason, Message, Provider};

/// Concurrency, rate limits, timeout and retries. Written in YAML as `limits:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests in flight at once.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1))]
    pub concurrency: usize,
    /// Requests per minute (your deployment's RPM quota); none: unlimited.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (prompt + `max_tokens`, as providers count them before answering), with
    /// bursts of at most a sixth of it (Azure enforces the limit over 10-second windows).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
    /// Seconds one attempt may take, connection to last byte.
    #[serde(default = "default_timeout")]
    #[schemars(extend("exclusiveMinimum" = 0))]
    pub timeout_s: f64,
    /// Retries after the first attempt; then the request is recorded as failed.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// The first backoff; it doubles per retry, up to `backoff_max_s`, times a random factor in [0.5, 1).
    #[serde(default = "default_backoff")]
    #[schemars(range(min = 0))]
    pub backoff_initial_s: f64,
    /// The longest backoff, in seconds (at least `backoff_initial_s`).
    #[serde(default = "default_backoff_max")]
    pub backoff_max_s: f64,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    6
}
fn default_backoff() -> f64 {
    1.0
}
fn default_backoff_max() -> f64 {
    60.0
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: default_concurrency(),
            requests_per_minute: None,
            tokens_per_minute: None,
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_initial_s: default_backoff(),
            backoff_max_s: default_backoff_max(),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), LlmError> {
        let bad = |m: &str| Err(LlmError::Config(format!("limits: {m}")));
        if self.concurrency == 0 {
            return bad("`concurrency` must be at least 1");
        }
        if self.requests_per_minute == Some(0) || self.tokens_per_minute == Some(0) {
            return bad("a per-minute limit must be at least 1 (leave it out for no limit)");
        }
        if !(self.timeout_s > 0.0 && self.timeout_s.is_finite()) {
            return bad("`timeout_s` must be a positive number of seconds");
        }
        if !(self.backoff_initial_s >= 0.0 && self.backoff_max_s >= self.backoff_initial_s) {
            return bad("`backoff_initial_s` must be ≥ 0 and ≤ `backoff_max_s`");
        }
        Ok(())
    }
}

/// A completion, and whether it came from the request log.
#[derive(Clone, Debug)]
pub struct Reply {
    pub completion: Completion,
    pub from_log: bool,
}

/// Why a request produced no completion.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    #[error("no answer after {attempts} attempts (last: {last})")]
    Exhausted { attempts: u32, last: String },
    /// A 4xx other than 408/409/429: retrying would not help. `code` is the provider's
    /// `error.code` (e.g. Azure's `content_filter` for a filtered prompt). The provider's own
    /// message is not kept: it can quote the prompt, or part of the key (OpenAI's 401 does).
    #[error(
        "rejected by the provider with HTTP {status}{}{}",
        code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
        hint(*status)
    )]
    Rejected { status: u16, code: Option<String> },
    #[error("cancelled")]
    Cancelled,
    #[error("failed to append to the request log: {0}")]
    Log(String),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => ": check `api_key` (the environment variable it reads)",
        403 => ": the key has no access to this deployment or model",
        404 => ": check the endpoint, the deployment or model name and `api_version`",
        300..=399 => {
            ": the server redirected the request; camel does not follow redirects (notes go only to the \
             endpoint the pipeline names and allows): set the provider's URL to the final address"
        }
        _ => "",
    }
}

impl Failure {
    /// A short reason for stats: `retries_exhausted`, `content_filter`, `http_4xx`, ...
    pub fn reason(&self) -> String {
        match self {
            Failure::Exhausted { .. } => "retries_exhausted".into(),
            Failure::Rejected { code: Some(c), .. } if c == "content_filter" => "content_filter".into(),
            Failure::Rejected { status, .. } => format!("http_{status}"),
            Failure::Cancelled => "cancelled".into(),
            Failure::Log(_) => "request_log".into(),
        }
    }
}

/// Counters since the client was made.
#[derive(Default)]
struct Counters {
    attempts: AtomicU64,
    responses: AtomicU64,
    from_log: AtomicU64,
    retries: AtomicU64,
    failures: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    logged_prompt_tokens: AtomicU64,
    logged_completion_tokens: AtomicU64,
    finish_length: AtomicU64,
    finish_content_filter: AtomicU64,
}

/// A snapshot of what the client did, for progress and stats.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientStats {
    /// HTTP requests sent (every attempt).
    pub attempts: u64,
    /// Completions received from the provider in this run.
    pub responses: u64,
    /// Completions taken from the request log instead of sending.
    pub from_log: u64,
    pub retries: u64,
    /// Requests given up on (after retries, or rejected).
    pub failures: u64,
    /// Tokens of completions received in this run.
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Tokens of completions taken from the log (paid for in an earlier run).
    pub logged_prompt_tokens: u64,
    pub logged_completion_tokens: u64,
    pub finish_length: u64,
    pub finish_content_filter: u64,
    pub elapsed_s: f64,
}

impl ClientStats {
    /// Requests per second sent so far.
    pub fn requests_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 { self.responses as f64 / self.elapsed_s } else { 0.0 }
    }
    pub fn tokens_per_s(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            (self.prompt_tokens + self.completion_tokens) as f64 / self.elapsed_s
        } else {
            0.0
        }
    }
}

type Hook<T> = Arc<dyn Fn(T) + Send + Sync>;

pub struct Client {
    provider: Provider,
    api_key: Option<String>,
    limits: Limits,
    http: reqwest::Client,
    log: Arc<RequestLog>,
    permits: tokio::sync::Semaphore,
    rpm: Option<DefaultDirectRateLimiter>,
    tpm: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
    pause_until: Mutex<Option<tokio::time::Instant>>,
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
    started: Instant,
    rng: AtomicU64,
    cancelled: Arc<dyn Fn() -> bool + Send + Sync>,
    notify: Hook<String>,
}

impl Client {
    /// A client for `provider`. Fails when the PHI guard does not allow the provider's host, or
    /// when the limits make no sense. `api_key` travels only in a header.
    pub fn new(
        provider: Provider,
        api_key: Option<String>,
        limits: Limits,
        log: Arc<RequestLog>,
        allowed: &AllowedEndpoints,
    ) -> Result<Client, LlmError> {
        limits.validate()?;
        let url = provider.url();
        allowed.check(&url)?;
        let mut http = reqwest::Client::builder();
        if !crate::guard::may_use_proxy(&url) {
            // Plain HTTP (note and key in clear) or loopback: never through a proxy the guard did
            // not check. HTTPS to an allowed host may use the system's proxy: a TLS tunnel.
            http = http.no_proxy();
        }
        let http = http
            .connect_timeout(Duration::from_secs_f64(limits.timeout_s.min(30.0)))
            .pool_max_idle_per_host(limits.concurrency)
            .user_agent(concat!("camel/", env!("CARGO_PKG_VERSION")))
            // The PHI guard checked this provider's address; a redirect would send the note (and
            // an Azure `api-key` header) to one it never saw. A 3xx is a rejection instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LlmError::Config(format!("failed to build the HTTP client: {e}")))?;
        let rpm = limits.requests_per_minute.map(|r| {
            // One request per period, no burst: the limit holds over any window, however short.
            let period = Duration::from_secs_f64(60.0 / f64::from(r));
            RateLimiter::direct(Quota::with_period(period).expect("a positive period"))
        });
        // Tokens per minute, spent at most a sixth at a time: Azure enforces TPM over 10-second
        // windows. A request larger than that burst counts as the burst.
        let tpm = limits.tokens_per_minute.and_then(NonZeroU32::new).map(|t| {
            let burst = NonZeroU32::new(t.get() / 6).unwrap_or(NonZeroU32::MIN);
            (RateLimiter::direct(Quota::per_minute(t).allow_burst(burst)), burst)
        });
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(Client {
            provider,
            api_key: api_key.filter(|k| !k.is_empty()),
            permits: tokio::sync::Semaphore::new(limits.concurrency),
            limits,
            http,
            log,
            rpm,
            tpm,
            pause_until: Mutex::new(None),
            inflight: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            started: Instant::now(),
            rng: AtomicU64::new(seed),
            cancelled: Arc::new(|| false),
            notify: Arc::new(|_| {}),
        })
    }

    /// Requests stop (with [`Failure::Cancelled`]) once `f` returns true.
    pub fn with_cancel(mut self, f: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.cancelled = Arc::new(f);
        self
    }

    /// Receives one line per retry and per failure (secret-free, note-free): for the stage log.
    pub fn with_notify(mut self, f: impl Fn(String) + Send + Sync + 'static) -> Self {
        self.notify = Arc::new(f);
        self
    }

    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn stats(&self) -> ClientStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            attempts: l(&c.attempts),
            responses: l(&c.responses),
            from_log: l(&c.from_log),
            retries: l(&c.retries),
            failures: l(&c.failures),
            prompt_tokens: l(&c.prompt_tokens),
            completion_tokens: l(&c.completion_tokens),
            logged_prompt_tokens: l(&c.logged_prompt_tokens),
            logged_completion_tokens: l(&c.logged_completion_tokens),
            finish_length: l(&c.finish_length),
            finish_content_filter: l(&c.finish_content_filter),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// The completion for `messages`: from the request log if it holds one, else from the
    /// provider (then logged before it is returned).
    pub async fn chat(&self, messages: &[Message]) -> Result<Reply, Failure> {
        let req = self.provider.request(messages);
        let key = req.key();
        if let Some(c) = self.log.get(&key) {
            return Ok(self.logged(c));
        }
        let lock = self.inflight.lock().unwrap().entry(key.clone()).or_default().clone();
        let _guard = lock.lock().await;
        let result = self.send(&req, &key).await;
        self.inflight.lock().unwrap().remove(&key);
        result
    }

    fn logged(&self, c: Completion) -> Reply {
        let k = &self.counters;
        k.from_log.fetch_add(1, Ordering::Relaxed);
        k.logged_prompt_tokens.fetch_add(c.usage.prompt_tokens, Ordering::Relaxed);
        k.logged_completion_tokens.fetch_add(c.usage.completion_tokens, Ordering::Relaxed);
        self.count_finish(&c);
        Reply { completion: c, from_log: true }
    }

    fn count_finish(&self, c: &Completion) {
        match c.finish_reason {
            FinishReason::Length => self.counters.finish_length.fetch_add(1, Ordering::Relaxed),
            FinishReason::ContentFilter => {
                self.counters.finish_content_filter.fetch_add(1, Ordering::Relaxed)
            }
            _ => 0,
        };
    }

    async fn send(&self, req: &crate::provider::HttpRequest, key: &str) -> Result<Reply, Failure> {
        // Another task may have logged it while this one waited for the key's lock.
        if let Some(c) = self.log.get(key) {
            return Ok(self.logged(c));
        }
        let short = &key[..12];
        let timeout = Duration::from_secs_f64(self.limits.timeout_s);
        let tokens = NonZeroU32::new(req.estimated_tokens(self.provider.generation().max_tokens))
            .unwrap_or(NonZeroU32::MIN);
        let mut last = String::new();
        let attempts = self.limits.max_retries + 1;
        for attempt in 0..attempts {
            if (self.cancelled)() {
                return Err(Failure::Cancelled);
            }
            let outcome = {
                let _permit = self.permits.acquire().await.expect("the semaphore is never closed");
                self.wait_for_pause().await;
                if let Some(r) = &self.rpm {
                    r.until_ready().await;
                }
                if let Some((t, cap)) = &self.tpm {
                    let n = tokens.min(*cap);
                    let _ = t.until_n_ready(n).await;
                }
                if (self.cancelled)() {
                    return Err(Failure::Cancelled);
                }
                self.counters.attempts.fetch_add(1, Ordering::Relaxed);
                let mut builder = self
                    .http
                    .post(&req.url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .timeout(timeout)
                    .body(req.body.clone());
                if let Some(k) = &self.api_key {
                    builder = match req.auth {
                        Auth::Bearer => builder.bearer_auth(k),
                        Auth::ApiKey => builder.header("api-key", k),
                    };
                }
                tokio::select! {
                    r = exchange(builder) => r,
                    _ = self.wait_cancelled() => return Err(Failure::Cancelled),
                }
            };
            let retry_after = match outcome {
                Exchange::Done(c) => {
                    self.log.append(key, &req.url, &c).map_err(|e| Failure::Log(e.to_string()))?;
                    let k = &self.counters;
                    k.responses.fetch_add(1, Ordering::Relaxed);
                    k.prompt_tokens.fetch_add(c.usage.prompt_tokens, Ordering::Relaxed);
                    k.completion_tokens.fetch_add(c.usage.completion_tokens, Ordering::Relaxed);
                    self.count_finish(&c);
                    return Ok(Reply { completion: c, from_log: false });
                }
                Exchange::Fatal { status, code } => {
                    self.counters.failures.fetch_add(1, Ordering::Relaxed);
                    let f = Failure::Rejected { status, code };
                    (self.notify)(format!("request {short}: {f}; not retried"));
                    return Err(f);
                }
                Exchange::Retry { why, retry_after } => {
                    last = why;
                    retry_after
                }
            };
            if attempt + 1 == attempts {
                break;
            }
            let delay = match retry_after {
                Some(ra) => {
                    // Everyone waits: the limit is the deployment's, not this request's.
                    let until = tokio::time::Instant::now() + ra;
                    let mut p = self.pause_until.lock().unwrap();
                    if p.is_none_or(|t| t < until) {
                        *p = Some(until);
                    }
                    ra + ra.mul_f64(0.1 * self.random())
                }
                None => {
                    let base = (self.limits.backoff_initial_s * 2f64.powi(attempt as i32))
                        .min(self.limits.backoff_max_s);
                    Duration::from_secs_f64(base * (0.5 + 0.5 * self.random()))
                }
            };
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            (self.notify)(format!(
                "request {short}: {last}; retry {}/{} in {:.1}s",
                attempt + 1,
                self.limits.max_retries,
                delay.as_secs_f64()
            ));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.wait_cancelled() => return Err(Failure::Cancelled),
            }
        }
        self.counters.failures.fetch_add(1, Ordering::Relaxed);
        let f = Failure::Exhausted { attempts, last };
        (self.notify)(format!("request {short}: {f}"));
        Err(f)
    }

    async fn wait_for_pause(&self) {
        loop {
            let until = *self.pause_until.lock().unwrap();
            match until {
                Some(t) if t > tokio::time::Instant::now() => tokio::time::sleep_until(t).await,
                _ => return,
            }
        }
    }

    async fn wait_cancelled(&self) {
        while !(self.cancelled)() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A uniform number in [0, 1) (splitmix64): jitter needs no cryptographic randomness.
    /// The state is an atomic shared by every request's task, stepped as `SplitMix64` steps its own.
    fn random(&self) -> f64 {
        use camel_rng::{GAMMA, mix, unit_f64};
        unit_f64(mix(self.rng.fetch_add(GAMMA, Ordering::Relaxed).wrapping_add(GAMMA)))
    }
}

enum Exchange {
    Done(Completion),
    Retry { why: String, retry_after: Option<Duration> },
    Fatal { status: u16, code: Option<String> },
}

async fn exchange(builder: reqwest::RequestBuilder) -> Exchange {
    let resp = match builder.send().await {
        Ok(r) => r,
        Err(e) => return Exchange::Retry { why: describe(&e), retry_after: None },
    };
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return Exchange::Retry { why: describe(&e), retry_after: None },
    };
    match status {
        200 => match crate::provider::parse_completion(&body) {
            Some(c) => Exchange::Done(c),
            None => {
                Exchange::Retry { why: "a truncated or malformed response body".into(), retry_after: None }
            }
        },
        408 | 409 | 429 | 500..=599 => Exchange::Retry { why: format!("HTTP {status}"), retry_after },
        _ => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            // Only the code: a provider's message can quote the prompt or part of the key.
            let code = v["error"]["code"].as_str().filter(|c| c.len() <= 64).map(str::to_string);
            Exchange::Fatal { status, code }
        }
    }
}

/// A reqwest error as a short phrase (reqwest's own text names the URL, which is fine, but the
/// kind is what helps).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "the response body was cut off".into()
    } else {
        "the connection failed".into()
    }
}

/// The longest wait a server's `Retry-After` can ask for.
const MAX_RETRY_AFTER_S: f64 = 3600.0;

/// `retry-after-ms` (Azure, OpenAI), else `Retry-After` in seconds or as an HTTP date; at most
/// [`MAX_RETRY_AFTER_S`]. A value that is not a finite number or a date is ignored (the client's
/// own backoff applies).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    let secs = |s: f64| s.is_finite().then(|| Duration::from_secs_f64(s.clamp(0.0, MAX_RETRY_AFTER_S)));
    if let Some(d) =
        get("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).and_then(|ms| secs(ms / 1000.0))
    {
        return Some(d);
    }
    let v = get("retry-after")?;
    if let Ok(s) = v.parse::<f64>() {
        return secs(s);
    }
    let when = httpdate(v)?;
    let wait = when.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    Some(wait.min(Duration::from_secs_f64(MAX_RETRY_AFTER_S)))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form servers send today.
fn httpdate(s: &str) -> Option<std::time::SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let day: u64 = parts[1].parse().ok()?;
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|m| *m == parts[2])? as u64 + 1;
    let year: u64 = parts[3].parse().ok()?;
    let hms: Vec<u64> = parts[4].split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    if hms.len() != 3 {
        return None;
    }
    // Days since the epoch (civil-from-days inverse, Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2];
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(250)));
        let t = httpdate("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
    }

    #[test]
    fn retry_after_is_bounded_and_nonsense_is_ignored() {
        let one = |k: &str, v: &str| {
            let mut h = reqwest::header::HeaderMap::new();
            h.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            retry_after(&h)
        };
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(one("retry-after", "NaN"), None);
        assert_eq!(one("retry-after", "inf"), None);
        assert_eq!(one("retry-after-ms", "NaN"), None);
        assert_eq!(one("retry-after-ms", "1e30"), hour);
        assert_eq!(one("retry-after-ms", "7200000"), hour);
        assert_eq!(one("retry-after", "7200"), hour);
        assert_eq!(one("retry-after", "Fri, 01 Jan 2200 00:00:00 GMT"), hour);
        assert_eq!(one("retry-after", "-5"), Some(Duration::ZERO));
    }
}
