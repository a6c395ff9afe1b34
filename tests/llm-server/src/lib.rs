//! A local chat-completions server for camel's LLM tests and benchmarks.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, `Content-Length` bodies) to serve
//! `POST /v1/chat/completions` (OpenAI-compatible) and
//! `POST /openai/deployments/{deployment}/chat/completions?api-version=…` (Azure OpenAI), with:
//!
//! - a reply written by a test-supplied [`Responder`] from the parsed request body;
//! - a fixed latency per request;
//! - scripted faults ([`Fault`]): 429 with `Retry-After`, 500, a stall longer than the client's
//!   timeout, a truncated JSON body, a `content_filter` finish reason; each fault is taken from a
//!   queue by the next request (or by requests matching a predicate);
//! - a record of every request (method, path, headers, body, arrival time), so tests can count
//!   requests, check exact URLs, headers and bodies, and measure rates.
//!
//! Std threads only (one per connection): no async runtime, nothing shared with the client
//! under test.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent (`/v1/chat/completions`, `/openai/deployments/d/chat/completions?api-version=x`).
    pub path: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Time since the server started.
    pub at: Duration,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The concatenated `content` of every message.
    pub fn prompt(&self) -> String {
        let v = self.json();
        let mut s = String::new();
        for m in v["messages"].as_array().into_iter().flatten() {
            s.push_str(m["content"].as_str().unwrap_or(""));
            s.push('\n');
        }
        s
    }
}

/// A fault the server injects instead of (or into) a normal reply.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: <secs>` (whole seconds, as OpenAI and Azure send it).
    RateLimited { retry_after_s: u64 },
    /// 500 with a JSON error body.
    ServerError,
    /// Sleep this long before answering normally (longer than the client's timeout: it gives up).
    Stall(Duration),
    /// A 200 whose JSON body is cut in half.
    TruncatedJson,
    /// A 200 whose choice has `finish_reason: content_filter` and no content.
    ContentFilter,
    /// A 400 with `error.code` (e.g. `content_filter` for Azure's prompt filter).
    BadRequest { code: String },
    /// A 307 to `location` (a gateway sending the request elsewhere; the body would follow it).
    Redirect { location: String },
    /// A 429 with one header as given (`retry-after-ms: 1e30`, `Retry-After: NaN`, a date, …).
    RateLimitedWith { header: String, value: String },
}

/// Writes the assistant's message for a request.
pub type Responder = Arc<dyn Fn(&Request) -> String + Send + Sync>;

type FaultRule = (Arc<dyn Fn(&Request) -> bool + Send + Sync>, Fault);

struct State {
    started: Instant,
    latency: Mutex<Duration>,
    responder: Mutex<Responder>,
    faults: Mutex<VecDeque<Fault>>,
    rules: Mutex<Vec<FaultRule>>,
    requests: Mutex<Vec<Request>>,
    completed: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    stop: AtomicBool,
}

/// A running server; it stops when dropped.
pub struct Server {
    addr: std::net::SocketAddr,
    state: Arc<State>,
}

impl Server {
    /// Starts a server on an ephemeral loopback port that answers every request with `"OK"`.
    pub fn start() -> Server {
        Server::start_on(0)
    }

    /// [`Server::start`] on a given loopback port (0: any free port).
    pub fn start_on(port: u16) -> Server {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind a loopback port");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            started: Instant::now(),
            latency: Mutex::new(Duration::ZERO),
            responder: Mutex::new(Arc::new(|_| "OK".to_string())),
            faults: Mutex::new(VecDeque::new()),
            rules: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            completed: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || serve(conn, &st));
            }
        });
        Server { addr, state }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn set_latency(&self, d: Duration) -> &Self {
        *self.state.latency.lock().unwrap() = d;
        self
    }

    pub fn set_responder(&self, f: impl Fn(&Request) -> String + Send + Sync + 'static) -> &Self {
        *self.state.responder.lock().unwrap() = Arc::new(f);
        self
    }

    /// The next requests (one each, in order) get these faults.
    pub fn push_faults(&self, faults: impl IntoIterator<Item = Fault>) -> &Self {
        self.state.faults.lock().unwrap().extend(faults);
        self
    }

    /// Every request for which `matches` holds gets `fault` (before queued faults are considered).
    pub fn fault_when(
        &self,
        matches: impl Fn(&Request) -> bool + Send + Sync + 'static,
        fault: Fault,
    ) -> &Self {
        self.state.rules.lock().unwrap().push((Arc::new(matches), fault));
        self
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Requests answered with a normal 200 reply (not a fault).
    pub fn completed(&self) -> u64 {
        self.state.completed.load(Ordering::Relaxed)
    }

    /// The most requests the server was answering at once.
    pub fn max_in_flight(&self) -> u64 {
        self.state.max_in_flight.load(Ordering::Relaxed)
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(conn: TcpStream, st: &State) {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        let Some(req) = read_request(&mut reader, st.started) else { return };
        if st.stop.load(Ordering::Relaxed) {
            return;
        }
        st.requests.lock().unwrap().push(req.clone());
        let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        st.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let ok = answer(&req, &mut out, st);
        st.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !ok {
            return;
        }
    }
}

/// Writes the reply to one request; false when the connection is gone.
fn answer(req: &Request, out: &mut TcpStream, st: &State) -> bool {
    let fault = {
        let rules = st.rules.lock().unwrap();
        rules.iter().find(|(m, _)| m(req)).map(|(_, f)| f.clone())
    }
    .or_else(|| st.faults.lock().unwrap().pop_front());
    let latency = *st.latency.lock().unwrap();
    std::thread::sleep(latency);
    let (status, body) = match fault {
        None => (200, ok_body(req, &(st.responder.lock().unwrap().clone())(req), "stop")),
        Some(Fault::Stall(d)) => {
            std::thread::sleep(d);
            (200, ok_body(req, &(st.responder.lock().unwrap().clone())(req), "stop"))
        }
        Some(Fault::RateLimited { retry_after_s }) => {
            let body = br#"{"error":{"code":"429","message":"Rate limit exceeded"}}"#;
            let head = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: {retry_after_s}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            return out.write_all(head.as_bytes()).and_then(|_| out.write_all(body)).is_ok();
        }
        Some(Fault::Redirect { location }) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            );
            return out.write_all(head.as_bytes()).is_ok();
        }
        Some(Fault::RateLimitedWith { header, value }) => {
            let body = br#"{"error":{"code":"429","message":"Rate limit exceeded"}}"#;
            let head = format!(
                "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n{header}: {value}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            return out.write_all(head.as_bytes()).and_then(|_| out.write_all(body)).is_ok();
        }
        Some(Fault::ServerError) => {
            (500, br#"{"error":{"code":"server_error","message":"The server had an error"}}"#.to_vec())
        }
        Some(Fault::TruncatedJson) => {
            let b = ok_body(req, "this reply is cut off", "stop");
            let half = b.len() / 2;
            (200, b[..half].to_vec())
        }
        Some(Fault::ContentFilter) => (200, filtered_body()),
        Some(Fault::BadRequest { code }) => (
            400,
            serde_json::to_vec(&serde_json::json!({"error": {"code": code, "message": "bad request"}}))
                .unwrap(),
        ),
    };
    if status == 200 && serde_json::from_slice::<serde_json::Value>(&body).is_ok() {
        st.completed.fetch_add(1, Ordering::Relaxed);
    }
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes()).and_then(|_| out.write_all(&body)).is_ok()
}

fn read_request(r: &mut BufReader<TcpStream>, started: Instant) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
        if k == "content-length" {
            len = v.parse().ok()?;
        }
        headers.push((k, v));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body, at: started.elapsed() })
}

/// A chat-completion response body: token counts are words, which is all tests need.
fn ok_body(req: &Request, content: &str, finish: &str) -> Vec<u8> {
    let prompt_tokens = req.prompt().split_whitespace().count();
    let completion_tokens = content.split_whitespace().count();
    let model = req.json()["model"].as_str().unwrap_or("test-deployment").to_string();
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens}
    }))
    .unwrap()
}

fn filtered_body() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10}
    }))
    .unwrap()
}

/// The responder the instruction tests use: it answers camel's default prompts the way a
/// well-behaved model would. A question-phase prompt (it lists categories as `- NAME` lines) gets
/// one numbered `NAME: instruction` line per category; an answer-phase prompt (it lists numbered
/// `N. NAME: instruction` lines after `Instructions:`) gets one numbered `NAME: answer` per line;
/// a de-identification question gets two `Instruction N:` lines, and its answer prompt gets a
/// fixed de-identified text.
pub fn clinical_responder(req: &Request) -> String {
    let prompt = req.prompt();
    if let Some(rest) = prompt.split("\nInstructions:\n").nth(1) {
        let mut out = String::new();
        for line in rest.lines() {
            let t = line.trim();
            let Some((num, item)) = t.split_once(". ") else { continue };
            if num.parse::<u32>().is_err() {
                continue;
            }
            let cat = item.split_once(':').map_or(item, |(c, _)| c);
            out.push_str(&format!("{num}. {cat}: The answer for {} is in the note.\n", cat.to_lowercase()));
        }
        return out;
    }
    if prompt.contains("de-identif") && prompt.contains("Instruction 1:") {
        return "Instruction 1: Remove every name and date from the note.\nInstruction2 : Replace each identifier with a tag such as [NAME].".into();
    }
    if prompt.contains("de-identif") {
        return "The note with [NAME] and [DATE] in place of identifiers.".into();
    }
    let cats: Vec<&str> = prompt.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    cats.iter()
        .enumerate()
        .map(|(i, c)| format!("{}. {c}: Describe the {} in this note.\n", i + 1, c.to_lowercase()))
        .collect()
}
