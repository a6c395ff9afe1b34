//! The client against the test server (`camel-llm-server`): exact requests, faults, the log,
//! limits.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camel_llm_server::{Fault, Server};

use crate::provider::{AzureConfig, OpenAiConfig};
use crate::*;

const KEY: &str = "sk-test-SECRET-0123456789";

fn openai(server: &Server) -> Provider {
    Provider::Openai(OpenAiConfig {
        base_url: format!("{}/v1", server.url()),
        model: "test-model".into(),
        max_tokens: 64,
        temperature: 0.0,
        seed: Some(1),
    })
}

fn fast_limits() -> Limits {
    Limits {
        timeout_s: 2.0,
        max_retries: 3,
        backoff_initial_s: 0.05,
        backoff_max_s: 0.2,
        ..Limits::default()
    }
}

struct T {
    _dir: tempfile::TempDir,
    client: Client,
    lines: Arc<Mutex<Vec<String>>>,
}

fn client(server: &Server, provider: Option<Provider>, limits: Limits) -> T {
    let dir = tempfile::tempdir().unwrap();
    let log = RequestLog::open(&dir.path().join("requests.jsonl")).unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l2 = lines.clone();
    let client = Client::new(
        provider.unwrap_or_else(|| openai(server)),
        Some(KEY.into()),
        limits,
        log,
        &AllowedEndpoints::loopback_only(),
    )
    .unwrap()
    .with_notify(move |s| l2.lock().unwrap().push(s));
    T { _dir: dir, client, lines }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn msgs(s: &str) -> Vec<Message> {
    vec![Message::system("You are a clinician."), Message::user(s)]
}

#[test]
fn openai_request_is_exact() {
    let server = Server::start();
    server.set_responder(|_| "hello".into());
    let t = client(&server, None, fast_limits());
    let r = rt().block_on(t.client.chat(&msgs("note text"))).unwrap();
    assert_eq!(r.completion.content, "hello");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0];
    assert_eq!((q.method.as_str(), q.path.as_str()), ("POST", "/v1/chat/completions"));
    assert_eq!(q.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(q.header("content-type"), Some("application/json"));
    assert_eq!(q.header("api-key"), None);
    assert_eq!(
        String::from_utf8(q.body.clone()).unwrap(),
        r#"{"model":"test-model","messages":[{"role":"system","content":"You are a clinician."},{"role":"user","content":"note text"}],"max_tokens":64,"temperature":0.0,"seed":1}"#
    );
}

#[test]
fn azure_request_is_exact() {
    let server = Server::start();
    let azure = Provider::Azure(AzureConfig {
        endpoint: server.url(),
        deployment: "gpt-35-turbo".into(),
        api_version: "2024-06-01".into(),
        max_tokens: 100,
        temperature: 0.5,
        seed: None,
    });
    let t = client(&server, Some(azure), fast_limits());
    rt().block_on(t.client.chat(&msgs("x"))).unwrap();
    let q = &server.requests()[0];
    assert_eq!(q.path, "/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-06-01");
    assert_eq!(q.header("api-key"), Some(KEY));
    assert_eq!(q.header("authorization"), None);
    assert_eq!(
        String::from_utf8(q.body.clone()).unwrap(),
        r#"{"messages":[{"role":"system","content":"You are a clinician."},{"role":"user","content":"x"}],"max_tokens":100,"temperature":0.5}"#
    );
}

#[test]
fn faults_are_retried_then_logged_once() {
    let server = Server::start();
    server.push_faults([
        Fault::ServerError,
        Fault::TruncatedJson,
        Fault::Stall(Duration::from_secs(5)),
        Fault::RateLimited { retry_after_s: 1 },
    ]);
    let t = client(&server, None, Limits { max_retries: 4, ..fast_limits() });
    let t0 = Instant::now();
    let r = rt().block_on(t.client.chat(&msgs("a"))).unwrap();
    assert!(!r.from_log);
    assert_eq!(server.request_count(), 5);
    // Retry-After: 1 was honoured (the other backoffs are ≤ 0.2 s, the stall is cut at 2 s).
    let reqs = server.requests();
    assert!(reqs[4].at - reqs[3].at >= Duration::from_millis(1000), "{:?}", reqs[4].at - reqs[3].at);
    assert!(t0.elapsed() < Duration::from_secs(6));
    let s = t.client.stats();
    assert_eq!((s.attempts, s.retries, s.responses, s.failures), (5, 4, 1, 0));
    let lines = t.lines.lock().unwrap().join("\n");
    for w in ["HTTP 500", "truncated", "timed out", "HTTP 429"] {
        assert!(lines.contains(w), "{w} not in {lines}");
    }
    assert!(!lines.contains(KEY) && !lines.contains("clinician"), "{lines}");
    // Asked again: from the log, nothing sent.
    let r = rt().block_on(t.client.chat(&msgs("a"))).unwrap();
    assert!(r.from_log);
    assert_eq!(server.request_count(), 5);
}

/// A redirect is never followed: the note (and Azure's `api-key`) would go to an address the PHI
/// guard never checked. The request fails as a rejection naming the redirect.
#[test]
fn redirects_are_not_followed() {
    let elsewhere = Server::start();
    let server = Server::start();
    for _ in 0..2 {
        server.push_faults([Fault::Redirect {
            location: format!("{}/openai/deployments/d/chat/completions?api-version=1", elsewhere.url()),
        }]);
    }
    let azure = Provider::Azure(AzureConfig {
        endpoint: server.url(),
        deployment: "d".into(),
        api_version: "1".into(),
        max_tokens: 10,
        temperature: 0.0,
        seed: None,
    });
    let rt = rt();
    for provider in [None, Some(azure)] {
        let t = client(&server, provider, fast_limits());
        let e = rt.block_on(t.client.chat(&msgs("note text"))).unwrap_err();
        assert!(matches!(e, Failure::Rejected { status: 307, .. }), "{e}");
        assert!(e.to_string().contains("does not follow redirects"), "{e}");
    }
    assert_eq!(server.request_count(), 2);
    assert_eq!(elsewhere.request_count(), 0, "a redirect was followed");
}

/// A `Retry-After` that is not a number or a date (here NaN, which once panicked) falls back to
/// the client's backoff.
#[test]
fn a_malformed_retry_after_is_ignored() {
    let server = Server::start();
    server.push_faults([
        Fault::RateLimitedWith { header: "Retry-After".into(), value: "NaN".into() },
        Fault::RateLimitedWith { header: "retry-after-ms".into(), value: "NaN".into() },
    ]);
    let t = client(&server, None, fast_limits());
    let t0 = Instant::now();
    let r = rt().block_on(t.client.chat(&msgs("a"))).unwrap();
    assert!(!r.completion.content.is_empty());
    assert_eq!(server.request_count(), 3);
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn retry_cap_and_fatal_answers_fail_and_are_not_logged() {
    let server = Server::start();
    server.fault_when(|r| r.prompt().contains("always"), Fault::ServerError);
    server
        .fault_when(|r| r.prompt().contains("filtered"), Fault::BadRequest { code: "content_filter".into() });
    let t = client(&server, None, Limits { max_retries: 2, ..fast_limits() });
    let rt = rt();
    let e = rt.block_on(t.client.chat(&msgs("always"))).unwrap_err();
    assert!(matches!(e, Failure::Exhausted { attempts: 3, .. }), "{e}");
    assert_eq!(e.reason(), "retries_exhausted");
    assert_eq!(server.request_count(), 3);
    let e = rt.block_on(t.client.chat(&msgs("filtered"))).unwrap_err();
    assert_eq!(e.reason(), "content_filter");
    assert_eq!(server.request_count(), 4);
    // A failure is not logged: asking again sends again.
    rt.block_on(t.client.chat(&msgs("always"))).unwrap_err();
    assert_eq!(server.request_count(), 7);
    assert_eq!(t.client.stats().failures, 3);
}

#[test]
fn content_filter_finish_is_a_reply() {
    let server = Server::start();
    server.push_faults([Fault::ContentFilter]);
    let t = client(&server, None, fast_limits());
    let r = rt().block_on(t.client.chat(&msgs("a"))).unwrap();
    assert_eq!(r.completion.finish_reason, FinishReason::ContentFilter);
    assert_eq!(t.client.stats().finish_content_filter, 1);
}

#[test]
fn the_log_is_shared_across_clients_and_reopens() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("requests.jsonl");
    let make = || {
        Client::new(
            openai(&server),
            None,
            fast_limits(),
            RequestLog::open(&path).unwrap(),
            &AllowedEndpoints::loopback_only(),
        )
        .unwrap()
    };
    let rt = rt();
    rt.block_on(make().chat(&msgs("a"))).unwrap();
    assert!(rt.block_on(make().chat(&msgs("a"))).unwrap().from_log);
    assert_eq!(server.request_count(), 1);
    // No key configured: no auth header at all.
    assert_eq!(server.requests()[0].header("authorization"), None);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains("\"a\""), "the request log holds no prompt: {text}");
}

#[test]
fn identical_concurrent_requests_are_sent_once() {
    let server = Server::start();
    server.set_latency(Duration::from_millis(100));
    let t = client(&server, None, fast_limits());
    let rt = rt();
    rt.block_on(async {
        let m = msgs("same");
        let (a, b) = tokio::join!(t.client.chat(&m), t.client.chat(&m));
        assert!(a.unwrap().from_log != b.unwrap().from_log);
    });
    assert_eq!(server.request_count(), 1);
}

#[test]
fn requests_per_minute_and_concurrency_are_respected() {
    let server = Server::start();
    server.set_latency(Duration::from_millis(50));
    // 1200/min: one request every 50 ms.
    let t =
        client(&server, None, Limits { requests_per_minute: Some(1200), concurrency: 3, ..fast_limits() });
    let client = Arc::new(t.client);
    let n = 20;
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let c = client.clone();
            set.spawn(async move { c.chat(&msgs(&format!("r{i}"))).await.unwrap() });
        }
        while set.join_next().await.is_some() {}
    });
    let mut at: Vec<Duration> = server.requests().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), n);
    for (i, t) in at.iter().enumerate() {
        // GCRA without burst: the i-th request is at least i periods after the first (small slack
        // for timer resolution).
        let min = Duration::from_millis(50 * i as u64).saturating_sub(Duration::from_millis(10));
        assert!(*t - at[0] >= min, "request {i} at {:?}, first at {:?}", t, at[0]);
    }
    assert!(server.max_in_flight() <= 3);
}

#[test]
fn tokens_per_minute_are_respected() {
    let server = Server::start();
    // max_tokens 64 + about 40 for the body: ~100 tokens a request. 6,000/min = 100/s, bursts of
    // 1,000: about 10 requests at once, then about one per second.
    let t = client(&server, None, Limits { tokens_per_minute: Some(6000), concurrency: 16, ..fast_limits() });
    let client = Arc::new(t.client);
    let t0 = Instant::now();
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..12 {
            let c = client.clone();
            set.spawn(async move { c.chat(&msgs(&format!("t{i}"))).await.unwrap() });
        }
        while set.join_next().await.is_some() {}
    });
    let el = t0.elapsed();
    assert!(el >= Duration::from_millis(1500) && el < Duration::from_secs(6), "{el:?}");
    let mut at: Vec<Duration> = server.requests().iter().map(|r| r.at).collect();
    at.sort();
    assert!(at[8] - at[0] < Duration::from_millis(800), "the burst went out at once: {at:?}");
}

#[test]
fn concurrency_bounds_requests_in_flight() {
    let server = Server::start();
    server.set_latency(Duration::from_millis(150));
    let t = client(&server, None, Limits { concurrency: 2, ..fast_limits() });
    let client = Arc::new(t.client);
    let t0 = Instant::now();
    rt().block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..6 {
            let c = client.clone();
            set.spawn(async move { c.chat(&msgs(&format!("c{i}"))).await.unwrap() });
        }
        while set.join_next().await.is_some() {}
    });
    assert_eq!(server.max_in_flight(), 2);
    assert!(t0.elapsed() >= Duration::from_millis(450));
}

#[test]
fn the_phi_guard_refuses_a_remote_host() {
    let dir = tempfile::tempdir().unwrap();
    let log = RequestLog::open(&dir.path().join("r.jsonl")).unwrap();
    let azure = Provider::Azure(AzureConfig {
        endpoint: "https://myres.openai.azure.com".into(),
        deployment: "d".into(),
        api_version: "2024-06-01".into(),
        max_tokens: 1,
        temperature: 0.0,
        seed: None,
    });
    let e = Client::new(
        azure.clone(),
        Some(KEY.into()),
        Limits::default(),
        log.clone(),
        &AllowedEndpoints::loopback_only(),
    )
    .err()
    .unwrap();
    let m = e.to_string();
    assert!(m.contains("myres.openai.azure.com") && m.contains("allowed_endpoints"), "{m}");
    assert!(!m.contains(KEY));
    Client::new(
        azure,
        None,
        Limits::default(),
        log,
        &AllowedEndpoints::parse(&["*.openai.azure.com"]).unwrap(),
    )
    .unwrap();
}

#[test]
fn cancellation_stops_waiting() {
    let server = Server::start();
    server.set_latency(Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let f2 = flag.clone();
    let c = Client::new(
        openai(&server),
        None,
        Limits { timeout_s: 30.0, ..Limits::default() },
        RequestLog::open(&dir.path().join("r.jsonl")).unwrap(),
        &AllowedEndpoints::loopback_only(),
    )
    .unwrap()
    .with_cancel(move || f2.load(std::sync::atomic::Ordering::Relaxed));
    let t0 = Instant::now();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let e = rt().block_on(c.chat(&msgs("slow"))).unwrap_err();
    assert!(matches!(e, Failure::Cancelled));
    assert!(t0.elapsed() < Duration::from_secs(3));
}
