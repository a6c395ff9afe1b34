//! `kind: judge` — an LLM scores every system's answer to each instruction 1–10, as CAMEL had
//! GPT-4 compare four systems on MTSamples, with what CAMEL's scoring lacked:
//!
//! - **Order**: per row the answers are shown in a random order (seeded by `seed` and the row
//!   number, recorded in `judgments.json`) and the scores are mapped back, so position bias
//!   averages out instead of favouring whichever system is listed first.
//! - **Parsing**: `Assistant K: SCORE` lines, a JSON object (`{"scores": [...]}` or
//!   `{"Assistant 1": 7, ...}`; other keys such as an `explanation` are ignored), or a first line
//!   of n numbers; every position must get exactly one score in 1–10. A reply that does not parse
//!   is asked again (a new request: the attempt number is in the prompt, so it is a different
//!   entry in the request log), up to `max_attempts`, then the row is recorded as `unparsed` —
//!   never as 0, which would punish the systems for the judge's formatting. `report` leaves
//!   unparsed rows out.
//! - **Cost**: requests go through camel-llm — the same provider config, rate limits, request
//!   log (a rerun replays every answered request and pays nothing) and PHI guard
//!   (`allowed_endpoints`) as the `instructions` stage.
//! - **Failures**: a row whose request failed is `failed`; more than `max_failed_rows` fail the
//!   stage, naming the rows and what a rerun does for each: a reply the provider's filter cut
//!   (`finish_reason: content_filter`) is in the request log and is replayed, so only
//!   `max_failed_rows` or a changed request gets past it; a request that got no answer is sent
//!   again.
//! - **Empty answers**: a system whose every answer is empty (a wrong `column`, such as the empty
//!   `clinical_alpaca(ft)` of mtsamples_results.json) fails the stage before any request: there is
//!   nothing to judge. Empty answers of other systems are judged like any answer (leaving them
//!   out would favour the system that answered nothing), with a warning when they are at least
//!   half of a system's rows.
//!
//! Outputs: `judgments.json` (per row: `index`, `type`, `order` (system names as shown),
//! `scores` (by system, null unless parsed), `status` (`scored`, `unparsed`, `failed`),
//! `attempts`) and `stats.json`.

use std::sync::Arc;

use camel_engine::validate::in_range;
use camel_engine::{
    InputSpec, OutputSpec, Partial, PartialProbe, Problem, Stage, StageContext, StageError, ValidateContext,
};
use camel_llm::{Client, Failure, FinishReason, Limits, Message, Prices, Provider, StageClient};
use camel_rng::SplitMix64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::data::{self, SystemSpec};

pub const SYSTEM_PROMPT: &str = "You are a careful clinical expert who grades answers to instructions about medical notes. You judge helpfulness, relevance, accuracy and level of detail. You are impartial: the order in which the answers are shown says nothing about their quality, and neither does their length.";

pub const PROMPT: &str = "[Instruction]\n{instruction}\n\n[Note]\n{input}\n\n{answers}\n\nRate each of the {n} answers above on a scale of 1 to 10, where 10 is best. Start your reply with exactly {n} lines, one per answer, in the form `Assistant K: SCORE` (K from 1 to {n}, SCORE a whole number from 1 to 10). Then explain your scores briefly.";

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JudgeParams {
    /// The judge: `{type: openai, base_url, model, …}` or `{type: azure, endpoint, deployment, …}`.
    pub provider: Provider,
    /// The API key, as `${env:NAME}`. Never hashed, logged or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Concurrency, rate limits, timeout and retries (not hashed).
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub prices: Prices,
    /// The answer sets to score.
    pub systems: Vec<SystemSpec>,
    /// Seeds the order of the answers in each row.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Requests per row while the reply does not parse.
    #[serde(default = "default_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// Only the first rows.
    #[serde(default)]
    pub limit: Option<usize>,
    /// Rows whose request failed (after the client's retries) that are tolerated; more fail the
    /// stage (a rerun then sends only those).
    #[serde(default)]
    pub max_failed_rows: u64,
    /// The system message of every request.
    #[serde(default = "default_system_prompt")]
    pub system_prompt: String,
    /// `{instruction}`, `{input}`, `{answers}` (the numbered answers), `{n}`.
    #[serde(default = "default_prompt")]
    pub prompt: String,
}

fn default_seed() -> u64 {
    42
}
fn default_attempts() -> u32 {
    3
}
fn default_system_prompt() -> String {
    SYSTEM_PROMPT.into()
}
fn default_prompt() -> String {
    PROMPT.into()
}

pub struct Judge;

impl Stage for Judge {
    type Params = JudgeParams;
    const KIND: &'static str = "judge";
    /// 2: a JSON reply with keys besides the scores (`{"Assistant 1": 7, …, "explanation": …}`)
    /// parses instead of being asked again and recorded `unparsed`; stats.json counts each
    /// system's empty answers (`empty_answers`); a system whose answers are all empty fails the
    /// stage before any request.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str =
        "an LLM scores each system's answers 1-10 per row (seeded answer order, robust parsing, request log)";
    const UNHASHED: &'static [&'static str] = &["api_key", "limits"];

    fn inputs(p: &JudgeParams) -> InputSpec {
        InputSpec::Named { required: data::input_names(&p.systems), optional: vec![] }
    }

    fn outputs(_: &JudgeParams) -> Vec<OutputSpec> {
        vec![OutputSpec::file("judgments", "judgments.json"), OutputSpec::file("stats", "stats.json")]
    }

    /// The PHI guard's verdict on the judge's host, `limits`, `max_attempts` and the prompt's
    /// placeholders.
    fn validate(p: &JudgeParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();
        problems.extend(camel_llm::checks::provider_problem(
            "provider",
            &p.provider,
            ctx.allowed_endpoints(),
        ));
        problems.extend(camel_llm::checks::limits_problems("limits", &p.limits));
        problems.extend(in_range("max_attempts", p.max_attempts, 1, None, "requests per row"));
        for ph in ["{instruction}", "{answers}"] {
            if !p.prompt.contains(ph) {
                problems.push(Problem::param("prompt", format!("`prompt` must contain {ph}")));
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Items done by a killed run (their replies are in the request log).
    /// With what the last run's failure recorded: rows a rerun cannot change.
    fn partial(_: &JudgeParams, at: &PartialProbe) -> Option<Partial> {
        let mut partial = camel_llm::runner::partial(at.scratch_dir)?;
        let record = std::fs::read_to_string(at.scratch_dir.join(FAILED_FILE)).ok();
        if let Some(f) = record.and_then(|t| serde_json::from_str::<FailedRecord>(&t).ok()) {
            partial.state.push_str(&format!("; the last run failed on {} row(s)", f.failed));
            if f.replayed > 0 {
                partial.state.push_str(&format!(
                    ", {} of them content-filtered, which a rerun replays from the request log (see \
                     `max_failed_rows`)",
                    f.replayed
                ));
            }
        }
        Some(partial)
    }

    fn run(p: &JudgeParams, ctx: &StageContext) -> Result<(), StageError> {
        run(p, ctx)
    }

    /// `SYSTEM.judge_mean`: each system's mean score over the rows the judge scored.
    fn metrics(_: &JudgeParams, out_dir: &std::path::Path) -> std::collections::BTreeMap<String, f64> {
        let mut sums: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        let rows = crate::read_json_value(&out_dir.join("judgments.json"));
        for row in rows.as_ref().and_then(Value::as_array).into_iter().flatten() {
            for (system, score) in row["scores"].as_object().into_iter().flatten() {
                if let Some(x) = score.as_f64() {
                    let e = sums.entry(system.clone()).or_default();
                    *e = (e.0 + x, e.1 + 1);
                }
            }
        }
        sums.into_iter().map(|(s, (sum, n))| (format!("{s}.judge_mean"), sum / n as f64)).collect()
    }
}

/// One row's verdict.
#[derive(Clone, Debug, Default)]
struct Verdict {
    /// By presented position.
    scores: Option<Vec<f64>>,
    attempts: u32,
    failure: Option<Failed>,
    prompt_tokens: u64,
    completion_tokens: u64,
}

/// Why a row got no scores, and what rerunning its request would do.
#[derive(Clone, Debug)]
struct Failed {
    /// `failure` in judgments.json: `content_filter`, or the client's failure.
    reason: String,
    rerun: Rerun,
}

/// What a rerun does with a failed row's request, given the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rerun {
    /// The judge's reply was filtered (`finish_reason: content_filter`). That reply is a
    /// completion, so it is in the request log: a rerun replays it, sends nothing and fails again.
    Replays,
    /// The provider refused the prompt (HTTP 400 `content_filter`). Refusals are not logged: a
    /// rerun sends the prompt again, which is most likely refused again.
    Refused,
    /// No answer (retries exhausted, another HTTP error): a rerun sends the request again.
    Sends,
}

/// The file in the scratch directory where a failed run records its failed rows, for `partial`
/// (`camel status`, the rerun's header).
const FAILED_FILE: &str = "judge-failed.json";

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct FailedRecord {
    failed: usize,
    /// Of them, rows whose filtered reply a rerun replays.
    replayed: usize,
}

fn run(p: &JudgeParams, ctx: &StageContext) -> Result<(), StageError> {
    data::check_systems(&p.systems, 1, None)?;
    if p.max_attempts == 0 {
        return Err(StageError::msg("`max_attempts` must be at least 1"));
    }
    for ph in ["{instruction}", "{answers}"] {
        if !p.prompt.contains(ph) {
            return Err(StageError::msg(format!("`prompt` must contain {ph}")));
        }
    }
    p.limits.validate().map_err(|e| StageError::msg(e.to_string()))?;
    // The client first: a judge the PHI guard refuses fails before any note is read.
    let client = StageClient::open(ctx, "judge", p.provider.clone(), p.api_key.clone(), &p.limits)?;

    let al = data::load(&p.systems, ctx.inputs(), p.limit)?;
    refuse_blank_systems(&al, &p.systems)?;
    let blank = data::warn_blank(ctx, &al, &p.systems);
    let n = al.systems.len();
    let orders: Vec<Vec<usize>> =
        (0..al.rows).map(|i| SplitMix64::for_item(p.seed, i as u64).permutation(n)).collect();
    let prompts: Vec<String> = (0..al.rows)
        .map(|i| {
            let answers: Vec<String> = orders[i]
                .iter()
                .enumerate()
                .map(|(k, &s)| {
                    format!(
                        "[Assistant {}]\n{}\n[End of Assistant {}]",
                        k + 1,
                        al.systems[s].1[i].trim(),
                        k + 1
                    )
                })
                .collect();
            render(&p.prompt, &al.instruction[i], &al.input[i], &answers.join("\n\n"), n)
        })
        .collect();

    ctx.progress().set_total(Some(al.rows as u64), "rows");
    let _ = std::fs::remove_file(ctx.scratch_dir().join(FAILED_FILE));
    let pa = Arc::new(p.clone());
    let verdicts = client.run(ctx, prompts.len(), "row", |i, c| {
        let (pa, prompt) = (pa.clone(), prompts[i].clone());
        async move { judge_row(&c, &pa, &prompt, n).await }
    })?;

    let mut rows = Vec::with_capacity(al.rows);
    let (mut scored, mut unparsed, mut failed) = (0u64, 0u64, 0u64);
    let (mut prompt_tokens, mut completion_tokens) = (0u64, 0u64);
    for (i, v) in verdicts.iter().enumerate() {
        prompt_tokens += v.prompt_tokens;
        completion_tokens += v.completion_tokens;
        let mut by_system = serde_json::Map::new();
        for (s, (name, _)) in al.systems.iter().enumerate() {
            let pos = orders[i].iter().position(|&x| x == s).expect("a permutation");
            by_system.insert(name.clone(), v.scores.as_ref().map_or(Value::Null, |sc| json!(sc[pos])));
        }
        let status = match (&v.scores, &v.failure) {
            (Some(_), _) => {
                scored += 1;
                "scored"
            }
            (None, Some(_)) => {
                failed += 1;
                "failed"
            }
            (None, None) => {
                unparsed += 1;
                "unparsed"
            }
        };
        let mut row = json!({
            "index": i,
            "type": al.types[i],
            "order": orders[i].iter().map(|&s| al.systems[s].0.clone()).collect::<Vec<_>>(),
            "scores": by_system,
            "status": status,
            "attempts": v.attempts,
        });
        if let Some(f) = &v.failure {
            ctx.log(&format!("row {i}: no scores: {}", f.reason));
            row["failure"] = json!(f.reason);
        }
        rows.push(row);
    }
    let s = client.stats();
    ctx.log(&format!(
        "this run: {} requests sent, {} answered, {} from the request log, {} retries, {} failed; {scored} rows scored, {unparsed} unparsed, {failed} failed",
        s.attempts, s.responses, s.from_log, s.retries, s.failures
    ));
    if failed > p.max_failed_rows {
        let record = FailedRecord {
            failed: failed as usize,
            replayed: verdicts
                .iter()
                .filter(|v| v.failure.as_ref().is_some_and(|f| f.rerun == Rerun::Replays))
                .count(),
        };
        let _ = camel_cache::write_json_atomic(&ctx.scratch_dir().join(FAILED_FILE), &record);
        return Err(StageError::msg(failure_message(&verdicts, p.max_failed_rows)));
    }
    if unparsed > 0 && 2 * unparsed >= al.rows as u64 {
        ctx.warn(&format!(
            "{} rows are `unparsed`: the judge's replies did not give every answer one score from 1 to 10 in \
             {} attempt(s) (accepted forms: docs/evaluation.md); those rows are left out of the report. The \
             replies are in the request log",
            data::blank_count(unparsed as usize, al.rows),
            p.max_attempts
        ));
    }
    crate::write_json(&ctx.out_dir().join("judgments.json"), &rows)?;
    let empty_answers: serde_json::Map<String, Value> =
        al.systems.iter().zip(&blank).map(|((name, _), b)| (name.clone(), json!(b))).collect();
    let stats = json!({
        "judge": p.provider.describe(),
        "systems": al.names(),
        "rows": al.rows,
        "scored": scored,
        "unparsed": unparsed,
        "failed": failed,
        "seed": p.seed,
        "max_attempts": p.max_attempts,
        "empty_answers": empty_answers,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "cost_estimate": p.prices.cost(prompt_tokens, completion_tokens),
        },
    });
    crate::write_json(&ctx.out_dir().join("stats.json"), &stats)
}

/// A system whose every answer is empty: almost surely a wrong `input` or `column`, and judging
/// it would pay for requests that score blanks. Refused before any request. Systems with some
/// empty answers are judged (an empty answer is that system's answer), with a warning when they
/// are at least half ([`data::warn_blank`]).
fn refuse_blank_systems(al: &data::Aligned, specs: &[SystemSpec]) -> Result<(), StageError> {
    let blank = data::blank_answers(al);
    let all: Vec<String> = al
        .systems
        .iter()
        .zip(&blank)
        .zip(specs)
        .filter(|((_, b), _)| **b == al.rows)
        .map(|(((name, _), _), spec)| {
            format!("`{name}` (column `{}` of input `{}`)", spec.column, spec.input)
        })
        .collect();
    if all.is_empty() {
        return Ok(());
    }
    Err(StageError::msg(format!(
        "every answer of {} is empty ({} rows): there is nothing to judge, and each request would pay for \
         scoring blanks. Check the system's `input` and `column`, or leave it out of `systems`; nothing was \
         sent",
        all.join(" and of "),
        al.rows
    )))
}

/// `row 3`, `rows 1, 4 and 9`, `rows 1, 2, …, 10 and 5 more`.
fn row_list(rows: &[usize]) -> String {
    const SHOWN: usize = 10;
    let mut names: Vec<String> = rows.iter().take(SHOWN).map(usize::to_string).collect();
    if rows.len() > SHOWN {
        return format!("rows {} and {} more", names.join(", "), rows.len() - SHOWN);
    }
    match names.len() {
        0 => "no row".into(),
        1 => format!("row {}", names[0]),
        _ => {
            let last = names.pop().expect("two or more");
            format!("rows {} and {last}", names.join(", "))
        }
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The error of a run with more failed rows than `max_failed_rows`: which rows, why, and what a
/// rerun can do about each, given that the request log replays every completion it holds.
fn failure_message(verdicts: &[Verdict], max_failed_rows: u64) -> String {
    let failed: Vec<(usize, &Failed)> =
        verdicts.iter().enumerate().filter_map(|(i, v)| v.failure.as_ref().map(|f| (i, f))).collect();
    let of =
        |r: Rerun| -> Vec<usize> { failed.iter().filter(|(_, f)| f.rerun == r).map(|(i, _)| *i).collect() };
    let (replays, refused, sends) = (of(Rerun::Replays), of(Rerun::Refused), of(Rerun::Sends));
    let mut m =
        format!("{} row(s) got no scores from the judge (max_failed_rows: {max_failed_rows}).", failed.len());
    if !replays.is_empty() {
        m.push_str(&format!(
            " The judge's reply to {} was content-filtered (finish_reason: content_filter); that reply is in \
             the request log, so a rerun replays it, sends nothing and fails the same way.",
            row_list(&replays)
        ));
    }
    if !refused.is_empty() {
        m.push_str(&format!(
            " The provider refused the prompt of {} (HTTP 400, content_filter); a rerun sends it again, and \
             the same prompt is most likely refused again.",
            row_list(&refused)
        ));
    }
    let stuck = replays.len() + refused.len();
    if stuck as u64 > max_failed_rows {
        m.push_str(&format!(
            " To finish without {it}, set `max_failed_rows: {stuck}` ({it_is} kept as `failed`, with null scores, \
             and left out of the report for every system), or change what is sent for {it} (`prompt`, \
             `system_prompt`, the judge's model): a changed request is a new one.",
            it = if stuck == 1 { "it" } else { "them" },
            it_is = if stuck == 1 { "it is" } else { "they are" },
        ));
    }
    if !sends.is_empty() {
        let mut reasons: Vec<&str> = Vec::new();
        for (_, f) in failed.iter().filter(|(_, f)| f.rerun == Rerun::Sends) {
            if !reasons.contains(&f.reason.as_str()) {
                reasons.push(&f.reason);
            }
        }
        m.push_str(&format!(
            " {} got no answer ({}); a rerun sends only {} again (answered rows come from the request log).",
            capitalized(&row_list(&sends)),
            reasons.iter().take(3).copied().collect::<Vec<_>>().join("; "),
            if sends.len() == 1 { "it" } else { "those" }
        ));
    }
    m
}

/// Fills `{instruction}`, `{input}`, `{answers}` and `{n}` in one pass (inserted text is never
/// scanned for placeholders).
fn render(template: &str, instruction: &str, input: &str, answers: &str, n: usize) -> String {
    let n = n.to_string();
    let subs =
        [("{instruction}", instruction), ("{input}", input), ("{answers}", answers), ("{n}", n.as_str())];
    let mut out = String::with_capacity(template.len() + instruction.len() + input.len() + answers.len());
    let mut rest = template;
    'outer: while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        for (ph, v) in subs {
            if let Some(r) = tail.strip_prefix(ph) {
                out.push_str(v);
                rest = r;
                continue 'outer;
            }
        }
        out.push('{');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

fn messages(p: &JudgeParams, prompt: &str, attempt: u32, n: usize) -> Vec<Message> {
    let mut user = prompt.to_string();
    if attempt > 0 {
        user.push_str(&format!(
            "\n\n(Attempt {}: a previous reply could not be read. Begin with exactly {n} lines `Assistant K: SCORE`.)",
            attempt + 1
        ));
    }
    vec![Message::system(p.system_prompt.clone()), Message::user(user)]
}

async fn judge_row(client: &Client, p: &JudgeParams, prompt: &str, n: usize) -> Verdict {
    let mut v = Verdict::default();
    for attempt in 0..p.max_attempts {
        v.attempts = attempt + 1;
        match client.chat(&messages(p, prompt, attempt, n)).await {
            Ok(reply) => {
                v.prompt_tokens += reply.completion.usage.prompt_tokens;
                v.completion_tokens += reply.completion.usage.completion_tokens;
                if reply.completion.finish_reason == FinishReason::ContentFilter {
                    v.failure = Some(Failed { reason: "content_filter".into(), rerun: Rerun::Replays });
                    return v;
                }
                if let Some(s) = parse_scores(&reply.completion.content, n) {
                    v.scores = Some(s);
                    return v;
                }
            }
            Err(f) => {
                v.failure = Some(match &f {
                    Failure::Rejected { code: Some(c), .. } if c == "content_filter" => {
                        Failed { reason: "content_filter".into(), rerun: Rerun::Refused }
                    }
                    _ => Failed { reason: f.to_string(), rerun: Rerun::Sends },
                });
                return v;
            }
        }
    }
    v
}

/// Scores by presented position (1..=n → index 0..n), or None when the reply does not give every
/// position exactly one score in 1–10.
pub fn parse_scores(reply: &str, n: usize) -> Option<Vec<f64>> {
    parse_json(reply, n).or_else(|| parse_lines(reply, n)).or_else(|| parse_first_line(reply, n))
}

fn valid(s: &[Option<f64>]) -> Option<Vec<f64>> {
    s.iter().map(|x| x.filter(|v| (1.0..=10.0).contains(v))).collect()
}

/// A JSON object anywhere in the reply: `{"scores": [7, 8]}`, or keys naming the positions
/// (`{"Assistant 1": 7, "Assistant 2": 8}`, `"Answer 2"`, `"assistant_2"`, `"2"`), each score a
/// number, a numeric string or an object with a `score`; `scores` may also hold such an object.
/// Other keys (`explanation`, `reason`, …) are ignored.
fn parse_json(reply: &str, n: usize) -> Option<Vec<f64>> {
    let start = reply.find('{')?;
    let end = reply.rfind('}')?;
    let v: Value = serde_json::from_str(reply.get(start..=end)?).ok()?;
    match v.get("scores") {
        Some(Value::Array(a)) => {
            if a.len() != n {
                return None;
            }
            valid(&a.iter().map(json_score).collect::<Vec<_>>())
        }
        Some(o @ Value::Object(_)) => parse_keyed(o, n),
        _ => parse_keyed(&v, n),
    }
}

/// A score as JSON: `7`, `"7"`, `"7/10"` or `{"score": 7, …}`.
fn json_score(v: &Value) -> Option<f64> {
    match v {
        Value::Number(x) => x.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            s.strip_suffix("/10").unwrap_or(s).trim().parse().ok()
        }
        Value::Object(o) => o.get("score").and_then(json_score),
        _ => None,
    }
}

/// `{"Assistant 1": 7, "Assistant 2": 8, "explanation": "…"}`: the keys that name a position;
/// each position exactly once, every position scored.
fn parse_keyed(v: &Value, n: usize) -> Option<Vec<f64>> {
    let o = v.as_object()?;
    let mut s = vec![None; n];
    for (k, x) in o {
        let Some(k) = position_key(k) else { continue };
        if k == 0 || k > n || s[k - 1].is_some() {
            return None;
        }
        s[k - 1] = Some(json_score(x)?);
    }
    valid(&s)
}

/// The position a key names: `Assistant 1`, `assistant_1`, `Answer #2`, `score 2`, `Assistant 2
/// score`, `2`, any case: digits and only the words `assistant`, `answer`, `score`, `rating` and
/// separators besides. None for any other key (`explanation`, `reason 1`, …).
fn position_key(k: &str) -> Option<usize> {
    let mut rest = k.to_lowercase();
    for word in ["assistant", "answer", "score", "rating"] {
        rest = rest.replace(word, " ");
    }
    let digits: String = rest.chars().filter(|c| !matches!(c, ' ' | '_' | '-' | '#' | ':' | '.')).collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `Assistant K: SCORE` (also `Assistant K - SCORE`, `**Assistant K**: SCORE/10`, `Answer K: …`,
/// `"Assistant K": SCORE,` as in JSON that does not parse as a whole).
fn parse_lines(reply: &str, n: usize) -> Option<Vec<f64>> {
    let mut s: Vec<Option<f64>> = vec![None; n];
    let mut any = false;
    for line in reply.lines() {
        let l = line.trim().trim_start_matches(['*', '-', '#', ' ', '"']).to_lowercase();
        let Some(rest) = l.strip_prefix("assistant").or_else(|| l.strip_prefix("answer")) else { continue };
        let rest = rest.trim_start_matches([' ', '#']);
        let k_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let Ok(k) = rest[..k_len].parse::<usize>() else { continue };
        let rest = rest[k_len..].trim_start_matches(['*', ' ', ')', ']', '"']);
        let Some(rest) = rest.strip_prefix([':', '=', '-', '–']) else { continue };
        let rest = rest.trim_start_matches(['*', ' ', '"']);
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let Ok(score) = rest[..num_len].trim_end_matches('.').parse::<f64>() else { continue };
        if k == 0 || k > n {
            return None;
        }
        match s[k - 1] {
            Some(prev) if prev != score => return None,
            _ => s[k - 1] = Some(score),
        }
        any = true;
    }
    if any { valid(&s) } else { None }
}

/// Vicuna's format, which CAMEL's judge prompt used: a first line of n numbers.
fn parse_first_line(reply: &str, n: usize) -> Option<Vec<f64>> {
    let first = reply.lines().find(|l| !l.trim().is_empty())?;
    let nums: Vec<Option<f64>> =
        first.split([' ', ',', '\t', ';']).filter(|t| !t.is_empty()).map(|t| t.parse::<f64>().ok()).collect();
    if nums.len() != n {
        return None;
    }
    valid(&nums)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `camel diff`'s numbers: the mean over the rows each system was scored on (unscored rows,
    /// recorded as null, are left out rather than counted as 0).
    #[test]
    fn the_mean_scores_are_the_metrics() {
        let d = tempfile::tempdir().unwrap();
        let rows = json!([
            {"index": 0, "scores": {"camel": 7.0, "gpt": 9.0}},
            {"index": 1, "scores": {"camel": 8.0, "gpt": null}},
        ]);
        std::fs::write(d.path().join("judgments.json"), rows.to_string()).unwrap();
        let p: JudgeParams = serde_json::from_value(json!({
            "systems": [], "provider": {"type": "openai", "base_url": "http://127.0.0.1:1", "model": "m"}
        }))
        .expect("judge params");
        let got = <Judge as Stage>::metrics(&p, d.path());
        let got: Vec<(&str, f64)> = got.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(got, [("camel.judge_mean", 7.5), ("gpt.judge_mean", 9.0)]);
    }

    #[test]
    fn replies_parse_in_every_accepted_form() {
        assert_eq!(parse_scores("Assistant 1: 7\nAssistant 2: 9\nThe first…", 2), Some(vec![7.0, 9.0]));
        assert_eq!(parse_scores("**Assistant 2**: 8/10\n**Assistant 1**: 6/10", 2), Some(vec![6.0, 8.0]));
        assert_eq!(
            parse_scores("Sure! ```json\n{\"scores\": [3, 10, 5]}\n```", 3),
            Some(vec![3.0, 10.0, 5.0])
        );
        assert_eq!(parse_scores("{\"Assistant 1\": 4, \"Assistant 2\": \"6\"}", 2), Some(vec![4.0, 6.0]));
        assert_eq!(parse_scores("8 7.5\nAssistant 1 is better", 2), Some(vec![8.0, 7.5]));
        // Missing, out of range, contradictory, absent: not parsed.
        assert_eq!(parse_scores("Assistant 1: 7", 2), None);
        assert_eq!(parse_scores("Assistant 1: 0\nAssistant 2: 5", 2), None);
        assert_eq!(parse_scores("Assistant 1: 11\nAssistant 2: 5", 2), None);
        assert_eq!(parse_scores("Assistant 1: 3\nAssistant 1: 4\nAssistant 2: 5", 2), None);
        assert_eq!(parse_scores("Both answers are good.", 2), None);
    }

    /// What judges asked for JSON write: the documented `{"Assistant 1": 7, …}` with a reason key
    /// (the finding: every such row was asked 3 times and dropped), per-answer reasons, nested
    /// scores, keys in other spellings, pretty-printed or not quite JSON.
    #[test]
    fn json_replies_with_reasons_parse() {
        let two = Some(vec![7.0, 9.0]);
        assert_eq!(
            parse_scores(
                r#"{"Assistant 1": 7, "Assistant 2": 9, "explanation": "Assistant 2 names the dose."}"#,
                2
            ),
            two
        );
        assert_eq!(
            parse_scores(
                "```json\n{\n  \"explanation\": \"2 is better\",\n  \"Assistant 2\": 9,\n  \"Assistant 1\": 7\n}\n```",
                2
            ),
            two
        );
        assert_eq!(
            parse_scores(
                r#"{"Assistant 1": 7, "reason 1": "vague", "Assistant 2": 9, "reason 2": "precise"}"#,
                2
            ),
            two
        );
        assert_eq!(
            parse_scores(
                r#"{"assistant_1": {"score": 7, "reason": "x"}, "Assistant #2": {"score": "9"}}"#,
                2
            ),
            two
        );
        assert_eq!(
            parse_scores(r#"{"scores": {"Assistant 1": 7, "Assistant 2": "9/10"}, "why": "…"}"#, 2),
            two
        );
        assert_eq!(parse_scores(r#"{"scores": [7, 9], "explanation": "…"}"#, 2), two);
        assert_eq!(parse_scores(r#"{"1": 7, "2": 9}"#, 2), two);
        assert_eq!(parse_scores(r#"{"score 1": 7, "Assistant 2 score": 9}"#, 2), two);
        // A trailing comma: not JSON, but the lines read as `Assistant K: SCORE`.
        assert_eq!(parse_scores("{\n  \"Assistant 1\": 7,\n  \"Assistant 2\": 9,\n}", 2), two);
        // Still refused: a position missing, twice, out of range or not a score; no score at all.
        assert_eq!(parse_scores(r#"{"Assistant 1": 7, "explanation": "…"}"#, 2), None);
        assert_eq!(parse_scores(r#"{"Assistant 1": 7, "assistant_1": 8, "Assistant 2": 9}"#, 2), None);
        assert_eq!(parse_scores(r#"{"Assistant 1": 7, "Assistant 3": 9}"#, 2), None);
        assert_eq!(parse_scores(r#"{"Assistant 1": 7, "Assistant 2": "good"}"#, 2), None);
        assert_eq!(parse_scores(r#"{"Assistant 1": 0, "Assistant 2": 9}"#, 2), None);
        assert_eq!(parse_scores(r#"{"explanation": "both fine"}"#, 2), None);
    }

    fn failed(rerun: Rerun, reason: &str) -> Verdict {
        Verdict { failure: Some(Failed { reason: reason.into(), rerun }), attempts: 1, ..Default::default() }
    }

    /// The finding: a content-filtered row was advertised as "rerun to retry", but its filtered
    /// reply is in the request log and every rerun replays it. The message names the rows and
    /// says what works for each kind of failure.
    #[test]
    fn the_failure_message_names_the_rows_and_what_a_rerun_can_do() {
        let ok = Verdict { scores: Some(vec![7.0, 9.0]), attempts: 1, ..Default::default() };
        let m = failure_message(&[ok.clone(), failed(Rerun::Replays, "content_filter"), ok.clone()], 0);
        assert!(m.starts_with("1 row(s) got no scores from the judge (max_failed_rows: 0)."), "{m}");
        assert!(m.contains("The judge's reply to row 1 was content-filtered"), "{m}");
        assert!(m.contains("a rerun replays it, sends nothing and fails the same way"), "{m}");
        assert!(
            m.contains("set `max_failed_rows: 1` (it is kept") && m.contains("change what is sent for it"),
            "{m}"
        );
        assert!(!m.contains("a rerun sends only"), "{m}");

        let mixed = [
            failed(Rerun::Sends, "no answer after 2 attempts (last: HTTP 500)"),
            ok.clone(),
            failed(Rerun::Refused, "content_filter"),
            failed(Rerun::Sends, "no answer after 2 attempts (last: HTTP 500)"),
        ];
        let within = failure_message(&mixed, 1);
        assert!(!within.contains("set `max_failed_rows"), "the refused row is already allowed: {within}");
        let m = failure_message(&mixed, 0);
        assert!(m.starts_with("3 row(s) got no scores from the judge (max_failed_rows: 0)."), "{m}");
        assert!(m.contains("The provider refused the prompt of row 2 (HTTP 400, content_filter)"), "{m}");
        assert!(m.contains("set `max_failed_rows: 1`"), "{m}");
        assert!(
            m.contains(
                " Rows 0 and 3 got no answer (no answer after 2 attempts (last: HTTP 500)); a rerun sends only \
                 those again"
            ),
            "{m}"
        );
        let only_sends =
            failure_message(&[failed(Rerun::Sends, "rejected by the provider with HTTP 401")], 0);
        assert!(!only_sends.contains("max_failed_rows: 1") && only_sends.contains("a rerun sends only it"));
    }

    #[test]
    fn row_lists() {
        assert_eq!(row_list(&[4]), "row 4");
        assert_eq!(row_list(&[1, 4, 9]), "rows 1, 4 and 9");
        assert_eq!(row_list(&(0..13).collect::<Vec<_>>()), "rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 3 more");
    }

    #[test]
    fn a_system_of_empty_answers_is_refused() {
        let al = data::Aligned {
            rows: 2,
            instruction: vec!["i".into(); 2],
            input: vec![String::new(); 2],
            types: vec!["unknown".into(); 2],
            systems: vec![
                ("a".into(), vec!["x".into(), " ".into()]),
                ("ft".into(), vec![String::new(), "\n".into()]),
            ],
        };
        let specs = [
            SystemSpec { name: "a".into(), input: "r".into(), column: "a".into() },
            SystemSpec { name: "ft".into(), input: "r".into(), column: "clinical_alpaca(ft)".into() },
        ];
        assert_eq!(data::blank_answers(&al), [1, 2]);
        let e = refuse_blank_systems(&al, &specs).unwrap_err().to_string();
        assert!(
            e.contains("every answer of `ft` (column `clinical_alpaca(ft)` of input `r`) is empty (2 rows)"),
            "{e}"
        );
        let mut al = al;
        al.systems[1].1[0] = "an answer".into();
        assert!(refuse_blank_systems(&al, &specs).is_ok(), "some empty answers are judged");
    }

    #[test]
    fn render_fills_placeholders_once() {
        assert_eq!(
            render("{instruction}|{input}|{answers}|{n}|{x}", "i {input}", "", "a", 3),
            "i {input}||a|3|{x}"
        );
    }
}
