//! The evaluation stages through the camel binary: `metrics` against the venv's rouge-score and
//! sacrebleu on real MTSamples rows, `judge` against the local test server (scripted scores,
//! malformed replies, the order mapping, the request log, the PHI guard), `report`, and `answer`
//! on a tiny model (deterministic under greedy decoding, resuming after kill -9 to the same bytes).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use camel_llm_server::{Fault, Request, Server};
use serde_json::{Value, json};

use crate::common::{TestContext, camel_bin, shared_data, venv_python};

const KEY: &str = "sk-camel-eval-KEY-93be1";

fn run(t: &TestContext, args: &[&str]) -> crate::common::Run {
    t.command(args).env("CAMEL_TEST_LLM_KEY", KEY).output().unwrap().into()
}

fn read_json(t: &TestContext, rel: &str) -> Value {
    serde_json::from_str(&t.read(rel)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// metrics

const REFERENCE_PY: &str = r#"
import json, sys
from rouge_score import rouge_scorer
import sacrebleu
path, n = sys.argv[1], int(sys.argv[2])
cols = json.load(open(path))
rows = sorted(cols["gpt-3.5"], key=int)[:n]
refs = [cols["gpt-3.5"][k] for k in rows]
scorer = rouge_scorer.RougeScorer(["rougeL"])
out = {}
for system in ["alpaca", "clinical-alpaca"]:
    hyps = [cols[system][k] for k in rows]
    out[system] = {
        "rouge_l": [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)],
        "sentence_bleu": [sacrebleu.sentence_bleu(h, [r]).score for r, h in zip(refs, hyps)],
        "corpus_bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
    }
print(json.dumps(out))
"#;

#[test]
fn metrics_match_rouge_score_and_sacrebleu_on_mtsamples_rows() {
    let Some(results) = shared_data("mtsamples_results.json") else { return };
    let Some(python) = venv_python() else { return };
    const ROWS: usize = 300;
    let t = TestContext::new();
    t.write("ref.py", REFERENCE_PY);
    let out = std::process::Command::new(python)
        .arg(t.path("ref.py"))
        .arg(&results)
        .arg(ROWS.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();

    t.write(
        "p.yaml",
        &format!(
            r#"name: metrics
stages:
  metrics:
    kind: metrics
    inputs: {{results: {}}}
    params:
      reference: gpt-3.5
      limit: {ROWS}
      systems:
        - {{name: gpt-3.5, input: results, column: gpt-3.5}}
        - {{name: alpaca, input: results, column: alpaca}}
        - {{name: clinical-alpaca, input: results, column: clinical-alpaca}}
"#,
            results.display()
        ),
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let m = read_json(&t, ".camel/out/metrics/metrics.json");
    let rows: Vec<Value> =
        t.read(".camel/out/metrics/rows.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2 * ROWS);
    let mut worst = (0.0f64, 0.0f64);
    for system in ["alpaca", "clinical-alpaca"] {
        let r = &reference[system];
        let mine: Vec<&Value> = rows.iter().filter(|x| x["system"] == system).collect();
        for (i, row) in mine.iter().enumerate() {
            assert_eq!(row["index"], i);
            let (a, b) = (row["rouge_l"].as_f64().unwrap(), r["rouge_l"][i].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-12, "{system} row {i}: ROUGE-L {a} vs rouge-score {b}");
            worst.0 = worst.0.max((a - b).abs());
            let (a, b) = (row["bleu"].as_f64().unwrap(), r["sentence_bleu"][i].as_f64().unwrap());
            assert!((a - b).abs() <= 1e-9, "{system} row {i}: sentence BLEU {a} vs sacrebleu {b}");
            worst.1 = worst.1.max((a - b).abs());
        }
        let (a, b) =
            (m["systems"][system]["overall"]["bleu"].as_f64().unwrap(), r["corpus_bleu"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-9, "{system}: corpus BLEU {a} vs sacrebleu {b}");
        let types = m["systems"][system]["by_type"].as_object().unwrap();
        assert!(
            types.contains_key("named entity recognition") && types.contains_key("yes/no question"),
            "{types:?}"
        );
    }
    println!("max |diff|: ROUGE-L {:e}, sentence BLEU {:e}", worst.0, worst.1);
}

/// SQuAD's token F1 (`normalize_answer` of the SQuAD v2 evaluation script) of each row of two
/// JSON lists of strings.
const SQUAD_F1_PY: &str = r#"
import collections, json, re, string, sys
def norm(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())
def f1(p, t):
    p, t = norm(p).split(), norm(t).split()
    if not p or not t:
        return float(p == t)
    same = sum((collections.Counter(p) & collections.Counter(t)).values())
    if same == 0:
        return 0.0
    pr, rc = same / len(p), same / len(t)
    return 2 * pr * rc / (pr + rc)
hyp, ref = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(json.dumps([f1(h, r) for h, r in zip(hyp, ref)]))
"#;

/// The articles are removed where Python's `\b(a|an|the)\b` removes them, next to every BMP
/// character the venv's Python knows (Rust's `is_alphanumeric` counted combining marks and
/// circled letters as word characters, which Python's `\w` does not). Characters unassigned in
/// the venv's Unicode database (14.0) are left out: there lower-casing, not `\w`, follows the
/// Unicode version of each side.
#[test]
fn token_f1_removes_articles_as_squads_python_next_to_every_bmp_character() {
    let Some(python) = venv_python() else { return };
    let t = TestContext::new();
    t.write("f1.py", SQUAD_F1_PY);
    t.write(
        "chars.py",
        "import json, unicodedata\nprint(json.dumps([c for c in range(0x10000) if not 0xD800 <= c < 0xE000 \
         and unicodedata.category(chr(c)) != 'Cn']))\n",
    );
    let out = std::process::Command::new(&python).arg(t.path("chars.py")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chars: Vec<char> = serde_json::from_slice::<Vec<u32>>(&out.stdout)
        .unwrap()
        .into_iter()
        .map(|c| char::from_u32(c).unwrap())
        .collect();
    assert!(chars.len() > 55_000, "{} characters", chars.len());
    let hyp: Vec<String> = chars.iter().map(|c| format!("the{c} a{c}x {c}an cat")).collect();
    let reference: Vec<String> = chars.iter().map(|c| format!("{c}the x{c} an cat")).collect();
    t.write("hyp.json", &serde_json::to_string(&hyp).unwrap());
    t.write("ref.json", &serde_json::to_string(&reference).unwrap());
    let out = std::process::Command::new(&python)
        .args([t.path("f1.py"), t.path("hyp.json"), t.path("ref.json")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want: Vec<f64> = serde_json::from_slice(&out.stdout).unwrap();

    let records = |col: &str, v: &[String]| {
        serde_json::to_string(&v.iter().map(|s| json!({ col: s })).collect::<Vec<_>>()).unwrap()
    };
    t.write("hyp_rows.json", &records("output", &hyp));
    t.write("ref_rows.json", &records("reference", &reference));
    t.write(
        "p.yaml",
        "name: f1\nstages:\n  metrics:\n    kind: metrics\n    inputs: {hyp: hyp_rows.json, ref: ref_rows.json}\n    params:\n      reference: ref\n      systems: [{name: sys, input: hyp}, {name: ref, input: ref, column: reference}]\n",
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let rows = t.read(".camel/out/metrics/rows.jsonl");
    let mut bad = Vec::new();
    for line in rows.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let i = r["index"].as_u64().unwrap() as usize;
        let got = r["token_f1"].as_f64().unwrap();
        if (got - want[i]).abs() > 1e-12 {
            bad.push(format!("U+{:04X}: camel {got} SQuAD {}", u32::from(chars[i]), want[i]));
        }
    }
    assert_eq!(rows.lines().count(), chars.len());
    assert!(bad.is_empty(), "{} of {} rows differ: {:?}", bad.len(), chars.len(), &bad[..bad.len().min(20)]);
}

#[test]
fn bad_answer_sets_fail_before_anything_runs_and_name_the_file() {
    let t = TestContext::new();
    t.write("answers.json", r#"[{"instruction": "i", "input": "", "output": "o"}]"#);
    t.write("results.json", r#"{"instruction": {"0": "i"}, "gpt-3.5": {"0": "g"}}"#);
    t.write("notalist.json", r#"{"instruction": "i"}"#);
    let pipeline = |reference: &str, column: &str| {
        format!(
            "name: m\nstages:\n  metrics:\n    kind: metrics\n    inputs: {{a: answers.json, r: results.json}}\n    params:\n      reference: {reference}\n      systems:\n        - {{name: camel, input: a}}\n        - {{name: gpt, input: r, column: {column}}}\n"
        )
    };
    t.write("p.yaml", &pipeline("gpt", "alpaca"));
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("results.json: has no column `alpaca`; it has gpt-3.5, instruction"),
        "{}",
        r.stderr
    );
    assert_eq!(t.cache_entries(), 0);
    t.write("p.yaml", &pipeline("gpt-4", "gpt-3.5"));
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("`reference: gpt-4` is not one of the systems (camel, gpt)"), "{}", r.stderr);
    t.write("p.yaml", &pipeline("gpt", "gpt-3.5").replace("r: results.json", "r: notalist.json"));
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("notalist.json: column `instruction` is not an object of rows"),
        "{}",
        r.stderr
    );
    assert_eq!(t.cache_entries(), 0);
    t.write("p.yaml", &pipeline("gpt", "gpt-3.5"));
    t.camel(&["run", "p.yaml"]).assert_ok();
}

// ---------------------------------------------------------------------------------------------
// judge + report

/// Three systems' answers to `n` rows: `answer from SYS to row I`.
fn answer_sets(t: &TestContext, n: usize) {
    let instruction = |i: usize| match i {
        1 => "MALFORMED-ONCE question 1".to_string(),
        2 => "NEVER-PARSES question 2".to_string(),
        3 => "JSON-REPLY question 3".to_string(),
        4 => "JSON-EXPLAINED question 4".to_string(),
        _ => format!("question {i}"),
    };
    let a: Vec<Value> = (0..n)
        .map(|i| json!({"instruction": instruction(i), "input": "note ZEBRA-PHI", "output": format!("answer from a to row {i}")}))
        .collect();
    t.write("a.json", &serde_json::to_string(&a).unwrap());
    let mut cols = json!({"instruction": {}, "input": {}, "type": {}, "b": {}, "c": {}});
    for i in 0..n {
        cols["instruction"][i.to_string()] = json!(instruction(i));
        cols["input"][i.to_string()] = json!("note ZEBRA-PHI");
        cols["type"][i.to_string()] = json!(if i % 2 == 0 { "Question Answering" } else { "Paraphrasing" });
        cols["b"][i.to_string()] = json!(format!("answer from b to row {i}"));
        cols["c"][i.to_string()] = json!(format!("answer from c to row {i}"));
    }
    t.write("results.json", &cols.to_string());
}

/// The judge: a → 3, b → 6, c → 9 wherever they are shown; scripted bad replies by instruction.
fn judge_responder(req: &Request) -> String {
    let prompt = req.prompt();
    let mut scores = Vec::new();
    for k in 1..=3 {
        let start = format!("[Assistant {k}]\n");
        let at = prompt.find(&start).expect("the answers are numbered") + start.len();
        let system = prompt[at..].strip_prefix("answer from ").unwrap().chars().next().unwrap();
        scores.push(match system {
            'a' => 3,
            'b' => 6,
            _ => 9,
        });
    }
    let retried = prompt.contains("(Attempt ");
    if prompt.contains("NEVER-PARSES") || (prompt.contains("MALFORMED-ONCE") && !retried) {
        return "I would rate them all fairly well.".into();
    }
    if prompt.contains("JSON-REPLY") {
        return format!("```json\n{{\"scores\": [{}, {}, {}]}}\n```", scores[0], scores[1], scores[2]);
    }
    if prompt.contains("JSON-EXPLAINED") {
        // The documented keyed form with a reason, as judges asked for JSON write it.
        return format!(
            "{{\"Assistant 1\": {}, \"Assistant 2\": {}, \"Assistant 3\": {}, \"explanation\": \"3 is best.\"}}",
            scores[0], scores[1], scores[2]
        );
    }
    format!("Assistant 1: {}\nAssistant 2: {}\nAssistant 3: {}\n\nReasons.", scores[0], scores[1], scores[2])
}

fn judge_pipeline(t: &TestContext, server: &Server, extra: &str) {
    t.write(
        "p.yaml",
        &format!(
            r#"name: judge
stages:
  judge:
    kind: judge
    inputs: {{ours: a.json, results: results.json}}
    params:
      provider: {{type: openai, base_url: {url}/v1, model: judge-model, temperature: 0, max_tokens: 256}}
      api_key: ${{env:CAMEL_TEST_LLM_KEY}}
      limits: {{concurrency: 4, timeout_s: 5, backoff_initial_s: 0.05, backoff_max_s: 0.2}}
      seed: 7
      systems:
        - {{name: a, input: ours}}
        - {{name: b, input: results, column: b}}
        - {{name: c, input: results, column: c}}
  report:
    kind: report
    inputs: {{judgments: judge.judgments}}
    params: {{reference: b, bootstrap: 500}}
{extra}"#,
            url = server.url()
        ),
    );
}

#[test]
fn the_judge_maps_scores_back_through_a_seeded_order_and_never_scores_unparsed_rows() {
    const N: usize = 12;
    let server = Server::start();
    server.set_responder(judge_responder);
    let t = TestContext::new();
    answer_sets(&t, N);
    judge_pipeline(&t, &server, "");
    run(&t, &["run", "p.yaml"]).assert_ok();
    let j = read_json(&t, ".camel/out/judge/judgments.json");
    let rows = j.as_array().unwrap();
    assert_eq!(rows.len(), N);
    let mut orders = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["index"], i);
        orders.insert(row["order"].to_string());
        if i == 2 {
            assert_eq!(row["status"], "unparsed");
            assert_eq!(row["attempts"], 3);
            assert_eq!(row["scores"], json!({"a": null, "b": null, "c": null}), "never 0");
        } else {
            assert_eq!(row["status"], "scored", "row {i}: {row}");
            assert_eq!(row["scores"], json!({"a": 3.0, "b": 6.0, "c": 9.0}), "row {i}: {row}");
            assert_eq!(row["attempts"], if i == 1 { 2 } else { 1 });
        }
    }
    assert!(orders.len() >= 3, "the order varies by row: {orders:?}");
    assert_eq!(server.request_count(), N + 1 + 2, "one retry for row 1, two for row 2");
    let s = read_json(&t, ".camel/out/judge/stats.json");
    assert_eq!((s["scored"].as_u64(), s["unparsed"].as_u64()), (Some(N as u64 - 1), Some(1)));

    // The report: means over the scored rows, the ratio to `b`, a row per task type, a chart.
    let md = t.read(".camel/out/report/report.md");
    assert!(md.contains("11 of 12 rows scored"), "{md}");
    assert!(md.contains("| a | 3.00 | 3.00–3.00 | 50.0 % | 50.0–50.0 % |"), "{md}");
    assert!(md.contains("| c | 9.00 | 9.00–9.00 | 150.0 % | 150.0–150.0 % |"), "{md}");
    assert!(md.contains("| question answering | 5 | 3.00 | 6.00 | 9.00 |"), "{md}");
    assert!(md.contains("| paraphrasing | 6 | 3.00 | 6.00 | 9.00 |"), "{md}");
    let svg = t.read(".camel/out/report/chart.svg");
    assert!(svg.contains("<svg") && svg.contains("\nb\n</text>"), "{svg}");

    // Nothing leaks: no key anywhere, no note text in logs.
    for entry in walk(&t.path(".camel")) {
        let bytes = std::fs::read(&entry).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY), "the API key is in {}", entry.display());
        if entry.extension().is_some_and(|e| e == "log") {
            assert!(!text.contains("ZEBRA-PHI") && !text.contains("answer from"), "{}", entry.display());
        }
    }

    // A forced rerun sends nothing (every request is in the log) and writes the same bytes.
    let before = t.read(".camel/out/judge/judgments.json");
    let n = server.request_count();
    run(&t, &["run", "p.yaml", "--force", "judge"]).assert_ok();
    assert_eq!(server.request_count(), n, "a rerun pays for nothing");
    assert_eq!(before, t.read(".camel/out/judge/judgments.json"));

    // Another seed: other orders, the same scores.
    run(&t, &["run", "p.yaml", "--set", "judge.seed=8"]).assert_ok();
    let j2 = read_json(&t, ".camel/out/judge/judgments.json");
    assert_ne!(j2.to_string(), j.to_string());
    assert_eq!(j2[0]["scores"], json!({"a": 3.0, "b": 6.0, "c": 9.0}));
}

/// A row whose reply the provider's filter cut (`finish_reason: content_filter`) fails the stage,
/// and the error says what is true: that reply is in the request log, so a rerun replays it and
/// fails the same way without sending anything (the finding: it said "rerun to retry them"). It
/// names the row and the ways out; `camel status` and the rerun's header say it too; allowing
/// the row with `max_failed_rows` finishes without a request.
#[test]
fn a_content_filtered_row_is_named_and_never_advertised_as_retryable() {
    const N: usize = 6;
    let server = Server::start();
    server.set_responder(judge_responder);
    server.fault_when(|r| r.prompt().contains("[Instruction]\nquestion 5\n"), Fault::ContentFilter);
    let t = TestContext::new();
    answer_sets(&t, N);
    judge_pipeline(&t, &server, "");
    let r = run(&t, &["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    for want in [
        "1 row(s) got no scores from the judge (max_failed_rows: 0).",
        "The judge's reply to row 5 was content-filtered (finish_reason: content_filter); that reply is in the \
         request log, so a rerun replays it, sends nothing and fails the same way.",
        "To finish without it, set `max_failed_rows: 1`",
    ] {
        assert!(r.stderr.contains(want), "{want}\n---\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("rerun to retry") && !r.stderr.contains("a rerun sends only"), "{}", r.stderr);
    assert!(t.read(".camel/logs/judge.log").contains("row 5: no scores: content_filter"));
    let sent = server.request_count();
    assert_eq!(sent, N + 1 + 2, "rows 1 and 2 are asked again; row 5 is not");

    let r = run(&t, &["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert_eq!(server.request_count(), sent, "the rerun replays everything from the request log");
    assert!(
        r.stderr.contains("judge resumes from the request log (6/6 rows done; the last run failed on 1 row(s), 1 of them content-filtered, which a rerun replays"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("The judge's reply to row 5 was content-filtered"), "{}", r.stderr);
    let r = run(&t, &["status", "p.yaml"]);
    assert!(
        r.stdout.contains(
            "1 of them content-filtered, which a rerun replays from the request log (see `max_failed_rows`)"
        ),
        "{}",
        r.stdout
    );

    run(&t, &["run", "p.yaml", "--set", "judge.max_failed_rows=1"]).assert_ok();
    assert_eq!(server.request_count(), sent, "allowing the row sends nothing");
    let j = read_json(&t, ".camel/out/judge/judgments.json");
    assert_eq!((j[5]["status"].as_str(), j[5]["failure"].as_str()), (Some("failed"), Some("content_filter")));
    assert_eq!(j[5]["scores"], json!({"a": null, "b": null, "c": null}));
}

/// Answer sets that are all or mostly empty (the published `clinical_alpaca(ft)` column is 1048
/// empty strings): `metrics` scores them with a warning on the terminal and in the log, counts
/// them in metrics.json and the report says so; `judge` refuses a system of empty answers before
/// sending anything, and judges one that is half empty, with a warning (and one when half the
/// rows are unparsed).
#[test]
fn empty_answer_sets_are_warned_about_and_the_judge_refuses_an_all_empty_one() {
    let t = TestContext::new();
    answer_sets(&t, 4);
    let mut cols: Value = serde_json::from_str(&t.read("results.json")).unwrap();
    cols["ft"] = json!({"0": "", "1": null, "2": "  ", "3": ""});
    cols["half"] = json!({"0": "", "1": "an answer", "2": "\n", "3": "another"});
    t.write("results.json", &cols.to_string());
    t.write(
        "m.yaml",
        r#"name: m
stages:
  metrics:
    kind: metrics
    inputs: {results: results.json}
    params:
      reference: b
      systems:
        - {name: b, input: results, column: b}
        - {name: ft, input: results, column: ft}
        - {name: half, input: results, column: half}
        - {name: c, input: results, column: c}
  report:
    kind: report
    inputs: {metrics: metrics.metrics}
"#,
    );
    let r = run(&t, &["run", "m.yaml"]);
    r.assert_ok();
    for want in [
        "warning: metrics: system `ft`: all 4 answers are empty (column `ft` of input `results`)",
        "warning: metrics: system `half`: 2 of 4 answers are empty (column `half` of input `results`)",
    ] {
        assert!(r.stderr.contains(want), "{want}\n---\n{}", r.stderr);
    }
    assert!(!r.stderr.contains("system `c`"), "{}", r.stderr);
    let log = t.read(".camel/logs/metrics.log");
    assert!(log.contains("empty answers of 4 rows: b 0, ft 4, half 2, c 0"), "{log}");
    let m = read_json(&t, ".camel/out/metrics/metrics.json");
    assert_eq!(
        (m["systems"]["ft"]["empty_answers"].as_u64(), m["reference_empty_answers"].as_u64()),
        (Some(4), Some(0))
    );
    let md = t.read(".camel/out/report/report.md");
    assert!(
        md.contains("**Warning: empty answers.** `ft`: all 4 answers empty; `half`: 2 of 4 answers empty."),
        "{md}"
    );

    let server = Server::start();
    server.set_responder(judge_responder);
    judge_pipeline(&t, &server, "");
    let text = t.read("p.yaml").replace("column: c}", "column: ft}");
    t.write("p.yaml", &text);
    let r = run(&t, &["run", "p.yaml", "--until", "judge"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("every answer of `c` (column `ft` of input `results`) is empty (4 rows): there is nothing to judge"),
        "{}",
        r.stderr
    );
    assert_eq!(server.request_count(), 0, "nothing is paid for");
    assert_eq!(t.cache_entries(), 2, "only metrics and report");

    // Half empty: judged (an empty answer is the system's answer), with a warning. Half the rows
    // unparsed: a warning too.
    server.set_responder(|r: &Request| {
        let p = r.prompt();
        if p.contains("NEVER-PARSES") || p.contains("[Instruction]\nquestion 0\n") {
            "They are all fine.".into()
        } else {
            "Assistant 1: 5\nAssistant 2: 5\nAssistant 3: 5".into()
        }
    });
    t.write("p.yaml", &text.replace("column: ft}", "column: half}"));
    let r = run(&t, &["run", "p.yaml", "--until", "judge"]);
    r.assert_ok();
    for want in [
        "warning: judge: system `c`: 2 of 4 answers are empty (column `half` of input `results`)",
        "warning: judge: 2 of 4 rows are `unparsed`",
    ] {
        assert!(r.stderr.contains(want), "{want}\n---\n{}", r.stderr);
    }
    let s = read_json(&t, ".camel/out/judge/stats.json");
    assert_eq!(s["empty_answers"], json!({"a": 0, "b": 0, "c": 2}));
    assert_eq!((s["scored"].as_u64(), s["unparsed"].as_u64()), (Some(2), Some(2)));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn a_judge_host_not_in_allowed_endpoints_gets_nothing() {
    let t = TestContext::new();
    answer_sets(&t, 2);
    let server = Server::start();
    judge_pipeline(&t, &server, "");
    let text = t.read("p.yaml").replace(&server.url(), "http://judge.example.org");
    t.write("p.yaml", &text);
    let r = run(&t, &["run", "p.yaml"]);
    // Refused while the pipeline is validated (issue 16): exit 2, nothing run.
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("allowed_endpoints"), "{}", r.stderr);
    assert_eq!(server.request_count(), 0);
    assert_eq!(t.cache_entries(), 0);
}

// ---------------------------------------------------------------------------------------------
// answer

/// The worker beside the camel binary, or `None` (test skipped) when it was not built.
fn worker() -> Option<PathBuf> {
    let w = Path::new(camel_bin()).with_file_name("camel-torch-worker");
    if w.is_file() {
        Some(w)
    } else {
        println!("skipped: {} is missing (build the workspace with scripts/setup)", w.display());
        None
    }
}

/// A tiny random-init model (with the demo tokenizer) and `n` instructions, as a pipeline.
fn answer_project(n: usize, batch: usize) -> TestContext {
    let t = TestContext::new();
    let dir = t.path("tokens");
    std::fs::create_dir_all(&dir).unwrap();
    let ids: Vec<u8> =
        (0..4 * 32u32).flat_map(|i| ((i * 37 + 11) % 1000 + 3).to_le_bytes()[..2].to_vec()).collect();
    std::fs::write(dir.join("tokens.bin"), ids).unwrap();
    let meta = json!({
        "format": "camel-tokens-v1", "dtype": "u16", "vocab_size": 1024, "block_size": 32, "blocks": 4,
        "tokens_total": 128, "tokens_dropped": 0, "bos_id": 1, "eos_id": 2, "added_tokens": {},
        "ignore_ids": [], "layout": "camel", "shuffle": false, "seed": 0, "tokenizer_blake3": "test"
    });
    std::fs::write(dir.join("meta.json"), meta.to_string()).unwrap();
    let root = crate::common::project_root();
    std::fs::copy(root.join("examples/demo/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let rows: Vec<Value> = (0..n)
        .map(|i| json!({"instruction": format!("Summarize finding {i} of the patient."),
                        "input": if i % 3 == 0 { String::new() } else { format!("Chest pain {i}. ").repeat(8) }}))
        .collect();
    t.write("instructions.json", &serde_json::to_string(&rows).unwrap());
    t.write(
        "p.yaml",
        &format!(
            r#"name: answer-test
stages:
  pretrain:
    kind: pretrain
    inputs: {{tokens: tokens}}
    params:
      config: {{vocab_size: 1024, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512}}
      batch_size: 2
      device: cpu
  answer:
    kind: answer
    inputs: {{instructions: instructions.json, model: pretrain.model}}
    params: {{batch_size: {batch}, max_new_tokens: 40, device: cpu, threads: 1}}
"#
        ),
    );
    t
}

fn rows_written(ws: &Path) -> usize {
    let Ok(keys) = std::fs::read_dir(ws.join("scratch")) else { return 0 };
    keys.flatten()
        .map(|k| std::fs::read_to_string(k.path().join("rows.jsonl")).map_or(0, |s| s.lines().count()))
        .max()
        .unwrap_or(0)
}

#[test]
fn answer_is_deterministic_and_resumes_after_kill_9_to_the_same_bytes() {
    if worker().is_none() {
        return;
    }
    const N: usize = 60;
    let whole = answer_project(N, 3);
    whole.camel(&["run", "p.yaml"]).assert_ok();
    let answers = whole.read(".camel/out/answer/answers.json");
    let parsed: Vec<Value> = serde_json::from_str(&answers).unwrap();
    assert_eq!(parsed.len(), N);
    assert_eq!(parsed[4]["instruction"], "Summarize finding 4 of the patient.");
    assert!(parsed.iter().all(|r| r["output"].is_string() && r["input"].is_string()));
    let stats = read_json(&whole, ".camel/out/answer/stats.json");
    assert_eq!(stats["rows"], N);

    let t = answer_project(N, 3);
    t.camel(&["run", "p.yaml", "--until", "pretrain"]).assert_ok();
    let mut child =
        t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    while rows_written(&t.path(".camel")) < 6 {
        assert!(t0.elapsed() < Duration::from_secs(120), "no rows appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL; the worker follows through PDEATHSIG
    child.wait().unwrap();
    let done = rows_written(&t.path(".camel"));
    assert!(done < N, "killed after every row was answered");
    assert!(!t.path(".camel/out/answer").exists(), "the killed run committed its outputs");
    t.camel(&["run", "p.yaml"]).assert_ok();
    let log = t.read(".camel/logs/answer.log");
    assert!(log.contains("resuming: ") && log.contains(&format!("of {N} rows already answered")), "{log}");
    assert!(t.read(".camel/out/answer/answers.json") == answers, "the resumed run wrote other answers");
    assert!(!log.contains("Summarize finding"), "instruction text in the log");
}

#[test]
fn answer_rejects_bad_inputs_before_starting_the_worker() {
    let t = TestContext::new();
    t.write("instructions.json", r#"{"instruction": "x"}"#);
    std::fs::create_dir_all(t.path("model")).unwrap();
    t.write(
        "p.yaml",
        "name: a\nstages:\n  answer:\n    kind: answer\n    inputs: {instructions: instructions.json, model: model}\n",
    );
    let r = t.command(&["run", "p.yaml"]).env("CAMEL_TORCH_WORKER", "/nonexistent").output().unwrap();
    let r: crate::common::Run = r.into();
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("instructions.json: not a JSON list"), "{}", r.stderr);
    t.write("instructions.json", r#"[{"instruction": "x", "input": ""}]"#);
    let r: crate::common::Run = t.command(&["run", "p.yaml"]).output().unwrap().into();
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("model has no config.json") && r.stderr.contains("finetune.model"),
        "{}",
        r.stderr
    );
    assert_eq!(t.cache_entries(), 0);
}
