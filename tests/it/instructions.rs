//! `kind: instructions` through the camel binary, against the local test server
//! (`camel-llm-server`): the pairs it writes, what it never leaks, resuming after kill -9 without
//! paying twice, the PHI guard, failures, and the offline extractive baseline.

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use camel_corpus::Note;
use camel_llm_server::{Fault, Server, clinical_responder};

use crate::common::{TestContext, shared_data};

const KEY: &str = "sk-camel-test-KEY-5f3a9c";
/// Every note contains this; it may appear in instructions.json (the Alpaca `input`) only.
const MARK: &str = "ZEBRA-PHI-7731";

fn note(source: &str, id: usize, words: usize) -> Note {
    let body: String = (0..words).map(|i| format!("finding{} ", i % 37)).collect();
    Note {
        source: Some(source.into()),
        id: Some(id.to_string()),
        category: Some("Discharge summary".into()),
        text: format!("Patient {MARK} number {id}.\nChief Complaint:\nchest pain\n{body}\n"),
    }
}

/// A corpus of `general` mimic3 notes (~400 approximate tokens) and `deid` short i2b2 notes.
fn corpus(t: &TestContext, general: usize, deid: usize) {
    let mut notes: Vec<Note> = (0..general).map(|i| note("mimic3", i, 180)).collect();
    notes.extend((0..deid).map(|i| note("i2b2", 1000 + i, 20)));
    camel_corpus::write(&t.path("corpus.parquet"), &notes).unwrap();
}

fn pipeline(t: &TestContext, server: &Server, general_extra: &str, extra: &str) {
    t.write(
        "p.yaml",
        &format!(
            r#"name: instr
stages:
  instructions:
    kind: instructions
    inputs:
      notes: corpus.parquet
    params:
      provider:
        type: openai
        base_url: {url}/v1
        model: test-model
        max_tokens: 512
        temperature: 0
      api_key: ${{env:CAMEL_TEST_LLM_KEY}}
      limits: {{concurrency: 4, timeout_s: 5, backoff_initial_s: 0.05, backoff_max_s: 0.2}}
      prices: {{prompt_per_1k: 0.5, completion_per_1k: 1.5}}
      general: {{note_tokens: [100, 2000], notes_per_source: 50{general_extra}}}
      deid: {{note_tokens: [0, 100]}}
{extra}"#,
            url = server.url()
        ),
    );
}

fn run(t: &TestContext, args: &[&str]) -> crate::common::Run {
    t.command(args).env("CAMEL_TEST_LLM_KEY", KEY).output().unwrap().into()
}

fn records(t: &TestContext) -> Vec<serde_json::Value> {
    serde_json::from_str(&t.read(".camel/out/instructions/instructions.json")).unwrap()
}

fn stats(t: &TestContext) -> serde_json::Value {
    serde_json::from_str(&t.read(".camel/out/instructions/stats.json")).unwrap()
}

/// Every file below `dir` (links not followed), as (path, bytes).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                out.push((e.path().display().to_string(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The request log's key for a request the server received (see `camel_llm::provider`).
fn key_of(server: &Server, r: &camel_llm_server::Request) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"camel-llm-request-v1\0");
    h.update(format!("{}{}", server.url(), r.path).as_bytes());
    h.update(b"\0");
    h.update(&r.body);
    h.finalize().to_hex().to_string()
}

fn logged_keys(t: &TestContext) -> HashSet<String> {
    let text = std::fs::read_to_string(t.path(".camel/llm/requests.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["key"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn pairs_from_the_test_server_with_no_key_or_note_text_outside_the_output() {
    let server = Server::start();
    server.set_responder(clinical_responder);
    let t = TestContext::new();
    corpus(&t, 2, 1);
    pipeline(&t, &server, "", "");
    let r = run(&t, &["run", "p.yaml"]);
    r.assert_ok();
    // 2 general notes × (questions + answers) + 1 de-id note × (questions + 2 answers).
    assert_eq!(server.request_count(), 7);
    for q in server.requests() {
        assert_eq!(q.path, "/v1/chat/completions");
        assert_eq!(q.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
        assert_eq!(q.json()["model"], "test-model");
    }
    let recs = records(&t);
    assert_eq!(recs.len(), 2 * 12 + 2);
    for rec in &recs {
        let keys: Vec<&str> = rec.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["input", "instruction", "output"]);
        assert!(rec["input"].as_str().unwrap().contains(MARK));
    }
    let s = stats(&t);
    assert_eq!(s["baseline"], false);
    assert_eq!(s["general"]["pairs"], 24);
    assert_eq!(s["general"]["pairs_by_category"]["Paraphrasing"], 2);
    assert_eq!(s["general"]["pairs_by_source"]["mimic3"], 24);
    assert_eq!(s["deid"]["pairs"], 2);
    assert_eq!(s["deid"]["notes_selected"]["i2b2"], 1);
    assert_eq!(s["usage"]["responses"], 7);
    assert!(s["usage"]["cost_estimate"].as_f64().unwrap() > 0.0);

    // The key is nowhere in the workspace, the output or the messages; the note text is only in
    // the Alpaca output.
    for (path, bytes) in files(&t.path(".camel")) {
        assert!(!contains(&bytes, KEY), "the API key is in {path}");
        if !path.ends_with("instructions.json") {
            assert!(!contains(&bytes, MARK), "note text is in {path}");
        }
    }
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains(KEY) && !out.contains(MARK), "{out}");
    }

    // Cached: nothing sent. Forced: everything from the request log, nothing sent.
    run(&t, &["run", "p.yaml"]).assert_ok();
    run(&t, &["run", "p.yaml", "--force", "instructions"]).assert_ok();
    assert_eq!(server.request_count(), 7);
    let log = t.read(".camel/logs/instructions.log");
    assert!(log.contains("0 requests sent") && log.contains("7 from the request log"), "{log}");

    // A new answer prompt: the question-phase responses are reused, only answers are asked.
    server.clear_requests();
    pipeline(&t, &server, r#", answer_prompt: "Please answer. {note}\nInstructions:\n{instructions}""#, "");
    run(&t, &["run", "p.yaml"]).assert_ok();
    assert_eq!(server.request_count(), 2, "one answer request per general note");
    assert!(server.requests().iter().all(|q| q.prompt().contains("Please answer.")));
}

/// `camel run p.yaml` in the background, with the test key and its output discarded (to be killed).
fn spawn_run(t: &TestContext) -> std::process::Child {
    t.command(&["run", "p.yaml"])
        .env("CAMEL_TEST_LLM_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_run_killed_mid_way_resumes_without_sending_a_logged_request_again() {
    let server = Server::start();
    server.set_responder(clinical_responder);
    server.set_latency(Duration::from_millis(150));
    let t = TestContext::new();
    corpus(&t, 12, 0);
    pipeline(&t, &server, "", "");
    let mut child = spawn_run(&t);
    let t0 = Instant::now();
    while server.completed() < 8 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the run did not progress");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Requests in flight at the kill finish on the server but their responses were never logged.
    std::thread::sleep(Duration::from_millis(300));
    let first = server.requests();
    let logged = logged_keys(&t);
    assert!(logged.len() >= 4 && logged.len() < 24, "{} responses logged before the kill", logged.len());

    server.clear_requests();
    run(&t, &["run", "p.yaml"]).assert_ok();
    let second = server.requests();
    let resent: Vec<String> =
        second.iter().map(|r| key_of(&server, r)).filter(|k| logged.contains(k)).collect();
    assert!(resent.is_empty(), "{} logged requests were sent again", resent.len());
    // Every request is answered exactly once in the log, and the output is complete.
    assert_eq!(logged_keys(&t).len(), 24);
    assert_eq!(second.len() + logged.len(), 24);
    assert!(first.len() >= logged.len());
    assert_eq!(records(&t).len(), 12 * 12);
}

/// How many notes the run in `t` has recorded as done (camel-llm's `runner::PROGRESS_FILE` in the
/// stage's scratch directory).
fn notes_done(t: &TestContext) -> usize {
    let Ok(dirs) = std::fs::read_dir(t.path(".camel/scratch")) else { return 0 };
    dirs.filter_map(|d| std::fs::read_to_string(d.ok()?.path().join("llm-progress.json")).ok())
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(&text).ok()?["done"].as_u64())
        .max()
        .unwrap_or(0) as usize
}

#[test]
fn a_killed_run_shows_the_notes_done_and_the_rerun_says_it_resumes() {
    let server = Server::start();
    server.set_responder(clinical_responder);
    // Requests from the 19th on stall past the client's timeout until `stall` is cleared: 12
    // notes ask 12 questions and at least 6 answers in 18 requests, so 6 to 9 notes get done.
    let stall = Arc::new(AtomicBool::new(true));
    let count = Arc::new(AtomicUsize::new(0));
    let (s2, c2) = (stall.clone(), count.clone());
    server.fault_when(
        move |_| c2.fetch_add(1, Ordering::SeqCst) >= 18 && s2.load(Ordering::SeqCst),
        Fault::Stall(Duration::from_secs(6)),
    );
    let t = TestContext::new();
    corpus(&t, 12, 0);
    pipeline(&t, &server, "", "");
    let mut child = spawn_run(&t);
    let t0 = Instant::now();
    while notes_done(&t) < 6 || count.load(Ordering::SeqCst) < 19 {
        assert!(t0.elapsed() < Duration::from_secs(30), "the run did not progress");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before the kill");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The runner records what a burst of replies left unrecorded on its next half-second tick.
    std::thread::sleep(Duration::from_millis(1200));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let n = notes_done(&t);
    assert!((6..=9).contains(&n), "{n} notes done at the kill");
    stall.store(false, Ordering::SeqCst);
    let state = format!("{n}/12 notes done");

    let r = run(&t, &["status", "p.yaml", "--json"]);
    r.assert_ok();
    let st: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    let partial = &st.iter().find(|s| s["stage"] == "instructions").unwrap()["partial"];
    assert_eq!(partial["state"], state.as_str(), "{partial}");
    assert_eq!(partial["position"], n, "{partial}");
    let r = run(&t, &["status", "p.yaml"]);
    r.assert_ok();
    assert!(r.stdout.contains(&format!("partial: {state}")), "{}", r.stdout);

    let r = run(&t, &["run", "p.yaml"]);
    r.assert_ok();
    assert!(
        r.stderr.contains(&format!("instructions resumes from the request log ({state})")),
        "{}",
        r.stderr
    );
    // Committed: the scratch directory, and with it the partial state, is gone.
    let r = run(&t, &["status", "p.yaml", "--json"]);
    let st: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert!(st.iter().all(|s| s["partial"].is_null()), "{st:?}");
    assert_eq!(records(&t).len(), 12 * 12);
}

/// A system-wide `http_proxy` (common on hospital machines) must not see a loopback or plain-HTTP
/// provider's requests: through a proxy they carry the note and the key in clear to a host the
/// PHI guard never checked. Here the "proxy" is a second test server that records what reaches it.
#[test]
fn a_loopback_provider_is_reached_directly_whatever_the_proxy_settings() {
    let server = Server::start();
    server.set_responder(clinical_responder);
    let proxy = Server::start();
    let t = TestContext::new();
    corpus(&t, 1, 0);
    pipeline(&t, &server, "", "");
    let mut cmd = t.command(&["run", "p.yaml"]);
    cmd.env("CAMEL_TEST_LLM_KEY", KEY);
    for var in ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env(var, proxy.url());
    }
    for var in ["no_proxy", "NO_PROXY"] {
        cmd.env_remove(var);
    }
    let r: crate::common::Run = cmd.output().unwrap().into();
    r.assert_ok();
    assert_eq!(proxy.request_count(), 0, "a request went through the proxy");
    assert!(server.request_count() > 0);
}

#[test]
fn a_host_not_in_allowed_endpoints_gets_no_notes() {
    let t = TestContext::new();
    corpus(&t, 1, 0);
    t.write(
        "p.yaml",
        r#"name: guard
stages:
  instructions:
    kind: instructions
    inputs: {notes: corpus.parquet}
    params:
      provider: {type: azure, endpoint: "https://example-res.openai.azure.com", deployment: gpt35}
      api_key: ${env:CAMEL_TEST_LLM_KEY}
"#,
    );
    let r = run(&t, &["run", "p.yaml"]);
    // Refused while the pipeline is validated (issue 16): exit 2, nothing run or written.
    assert_eq!(r.code, 2, "{}", r.stderr);
    let all = r.stderr.clone();
    assert!(all.contains("p.yaml:7:41: stage `instructions`: refusing to send notes to https://"), "{all}");
    assert!(all.contains("res.openai.azure.com"), "{all}");
    assert!(all.contains("allowed_endpoints"), "{all}");
    assert!(!all.contains(KEY) && !all.contains(MARK), "{all}");
    assert!(!t.path(".camel").exists(), "nothing is written for a refused pipeline");
}

#[test]
fn failures_are_retried_recorded_and_fail_the_stage_past_the_allowance() {
    let server = Server::start();
    server.set_responder(clinical_responder);
    let t = TestContext::new();
    corpus(&t, 3, 0);
    // Note 1's question always fails; note 2's question is content-filtered; others see transient faults.
    server.fault_when(
        |r| r.prompt().contains("number 1.") && !r.prompt().contains("Instructions:"),
        Fault::ServerError,
    );
    server.fault_when(
        |r| r.prompt().contains("number 2.") && !r.prompt().contains("Instructions:"),
        Fault::ContentFilter,
    );
    server.push_faults([Fault::RateLimited { retry_after_s: 1 }, Fault::TruncatedJson]);
    pipeline(&t, &server, "", "      max_failed_notes: 0\n");
    let r = run(&t, &["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("1 note(s) lost a request (1 general question_retries_exhausted; first: note mimic3:1, a question request: no answer after 7 attempts (last: HTTP 500))"),
        "{}",
        r.stderr
    );
    let log = t.read(".camel/logs/instructions.log");
    assert!(log.contains("HTTP 429") && log.contains("HTTP 500") && log.contains("truncated"), "{log}");

    // Allowing one failed note: outputs are written and the failure is in the stats.
    let n = server.request_count();
    let r = run(&t, &["run", "p.yaml", "--set", "instructions.max_failed_notes=1"]);
    r.assert_ok();
    let s = stats(&t);
    assert_eq!(s["failed_notes"], 1);
    assert_eq!(s["general"]["failed_requests_by_reason"]["question_retries_exhausted"], 1);
    assert_eq!(s["general"]["rejected"]["question_content_filter"], 1);
    assert_eq!(s["general"]["pairs"], 12);
    // Only note 1's question was sent again (1 + 6 retries); the rest came from the log.
    assert_eq!(server.request_count() - n, 7);
}

/// A model that refuses every note (or writes nothing the parser reads): the stage fails instead
/// of caching an empty `instructions.json`, says how the replies were rejected and where they are,
/// and that a rerun as it is replays them (it sends nothing and fails the same way); `camel
/// status` says so too. A changed request (here the provider's temperature) gets new replies.
#[test]
fn a_run_whose_every_reply_is_refused_fails_and_caches_nothing() {
    let server = Server::start();
    server.set_responder(|_| "I'm sorry, but I can't help with that request.".into());
    let t = TestContext::new();
    corpus(&t, 3, 2);
    pipeline(&t, &server, "", "");
    let r = run(&t, &["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "every reply was unusable: no pair was kept from the 5 selected note(s) (5 question_unparsed;"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(".camel/llm/requests.jsonl"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "A rerun as it is replays every reply from the request log, sends nothing and fails the same way"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains(MARK), "note text in the error");
    assert!(!t.path(".camel/out/instructions").exists(), "an empty dataset was committed");
    assert_eq!(t.cache_entries(), 0);
    assert_eq!(server.request_count(), 5);
    let log = t.read(".camel/logs/instructions.log");
    assert!(log.contains("no pair kept from 5 note(s): 5 question_unparsed"), "{log}");

    // The advice is true: a rerun sends nothing and fails the same way; status says why.
    let r = run(&t, &["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no pair was kept from the 5 selected note(s)"), "{}", r.stderr);
    assert_eq!(server.request_count(), 5, "the rerun replayed the refusals");
    let r = run(&t, &["status", "p.yaml"]);
    assert!(
        r.stdout.contains(
            "partial: 5/5 notes done; the last run kept no pair, and a rerun replays the replies of 5 note(s)"
        ),
        "{}",
        r.stdout
    );

    // A changed request is a new one: a model that answers now gives pairs.
    server.set_responder(clinical_responder);
    run(&t, &["run", "p.yaml", "--set", "instructions.provider.temperature=0.5"]).assert_ok();
    assert!(!records(&t).is_empty());
}

#[test]
fn the_extractive_baseline_needs_no_server() {
    let t = TestContext::new();
    let text = |i: usize| {
        format!(
            "Admission Date:  [**2101-10-20**]\nChief Complaint:\nchest pain {i}\n\nDischarge Medications:\n1. Aspirin 81 mg\n\nDischarge Diagnosis:\nNSTEMI\n{}",
            "filler text. ".repeat(400)
        )
    };
    // Three discharge summaries, and a radiology report that `note_categories` leaves out.
    let notes: Vec<Note> = (0..4)
        .map(|i| Note {
            source: Some("mimic3".into()),
            id: Some(i.to_string()),
            category: Some(if i < 3 { "Discharge summary" } else { "Radiology" }.into()),
            text: text(i),
        })
        .chain([Note {
            source: Some("i2b2".into()),
            id: Some("x".into()),
            category: None,
            text: "Seen on 3/4/2102, call 617-555-0000.".into(),
        }])
        .collect();
    camel_corpus::write(&t.path("corpus.parquet"), &notes).unwrap();
    let tok_line = match shared_data("llama_tokenizer.json") {
        Some(tok) => format!("      tokenizer: {}\n", tok.display()),
        None => String::new(),
    };
    t.write(
        "p.yaml",
        &format!(
            "name: ex\nstages:\n  instructions:\n    kind: instructions\n    inputs:\n      notes: corpus.parquet\n{tok_line}    params:\n      provider: {{type: extractive}}\n      general: {{note_tokens: [500, 3000], note_categories: [discharge summary]}}\n"
        ),
    );
    run(&t, &["run", "p.yaml"]).assert_ok();
    let s = stats(&t);
    assert_eq!(s["baseline"], true);
    assert!(s["note"].as_str().unwrap().contains("BASELINE"));
    assert_eq!(s["general"]["pairs"], 9, "{s}");
    assert_eq!(s["general"]["notes_selected"]["mimic3"], 3, "{s}");
    assert_eq!(s["deid"]["pairs"], 2, "{s}");
    let recs = records(&t);
    assert!(
        recs.iter()
            .any(|r| r["instruction"] == "List the discharge medications."
                && r["output"] == "1. Aspirin 81 mg")
    );
    // Deterministic: a forced rerun writes the same bytes.
    let before = t.read(".camel/out/instructions/instructions.json");
    run(&t, &["run", "p.yaml", "--force", "instructions"]).assert_ok();
    assert_eq!(before, t.read(".camel/out/instructions/instructions.json"));
}
