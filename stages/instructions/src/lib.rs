//! `kind: instructions` — clinical instruction/answer pairs written by an LLM from notes, as
//! CAMEL made its instruction data, or by the offline `extractive` baseline.
//!
//! One stage does CAMEL's three steps, so a pipeline needs one block of YAML:
//!
//! 1. **Select notes** from a corpus (`corpus.parquet`: `source`, `id`, `category`, `text`) by
//!    source, note type (`note_categories`) and LLaMA token length: general tasks from notes with `note_tokens[0] < tokens <
//!    note_tokens[1]` (default 1024–1536), de-identification tasks from `i2b2` notes under 1024
//!    tokens. Up to `notes_per_source` notes per source are sampled by a seeded hash of each
//!    note's identity (stable when the corpus grows).
//! 2. **Ask**: general tasks in two requests per note (k categories → k numbered
//!    `Category: instruction` lines; then the note and those instructions → k numbered
//!    `Category: answer` lines), de-identification tasks in 1 + k requests (k `Instruction N:`
//!    lines, then one answer per instruction). Pairs are kept when both sides parse, the
//!    categories agree and both start with a capital letter; every rejection is counted by reason.
//! 3. **Merge**: Alpaca records `{instruction, input: note, output}` from both task sets,
//!    shuffled with `seed` (42), as `instructions.json`; `stats.json` counts pairs per category
//!    and per source, rejections by reason, failed requests, token usage and a cost estimate.
//!
//! Requests go through [`camel_llm::Client`]: every response is in the workspace's request log
//! (`<workspace>/llm/requests.jsonl`) before it is used, so a rerun after a kill sends only what
//! was never answered. A run that keeps no pair fails rather than write an empty dataset; since
//! its replies are in the request log, only a changed request (model, prompt, temperature, seed)
//! gets different ones, and the error says so. `api_key` (`${env:NAME}`) and `limits` are not
//! hashed: neither changes what a response says.

mod extractive;
pub mod parse;
pub mod prompts;
mod select;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use camel_engine::{
    InputSpec, OutputSpec, Partial, PartialProbe, Problem, Stage, StageContext, StageError, ValidateContext,
};
use camel_llm::{AzureConfig, Client, Limits, Message, OpenAiConfig, Prices, Provider, StageClient};
use camel_rng::SplitMix64;
use serde::{Deserialize, Serialize};

pub use select::{Candidate, Lengths};

/// CAMEL's twelve general task categories.
pub const CATEGORIES: [&str; 12] = [
    "Coreference Resolution",
    "Question Answering",
    "Natural Language Generation",
    "Text Summarization",
    "Text Classification",
    "Temporal Information Extraction",
    "Relation Extraction",
    "Named Entity Recognition",
    "Paraphrasing",
    "Clinical Concept Normalization",
    "Keyword Extraction",
    "Abbreviation Expansion",
];

pub struct Instructions;

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstructionsParams {
    /// Who writes the pairs: `azure`, `openai` (any OpenAI-compatible server) or `extractive`.
    pub provider: ProviderParams,
    /// The API key, as `${env:NAME}`. Never hashed, logged or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Concurrency, rate limits, timeout and retries (not hashed).
    #[serde(default)]
    pub limits: Limits,
    /// Per 1,000 tokens, for the cost estimate.
    #[serde(default)]
    pub prices: Prices,
    /// Seeds note sampling, category sampling and the final shuffle.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The system message of every request (question and answer).
    #[serde(default = "prompts_system")]
    pub system_prompt: String,
    /// General clinical tasks: how many notes of which sources and types, and their prompts.
    #[serde(default)]
    pub general: GeneralParams,
    /// De-identification tasks on de-identified notes: how many notes of which sources, and their prompts.
    #[serde(default)]
    pub deid: DeidParams,
    /// Notes whose requests may fail (after retries) before the stage fails instead of writing
    /// its outputs without them.
    #[serde(default)]
    pub max_failed_notes: u64,
}

fn default_seed() -> u64 {
    42
}
fn prompts_system() -> String {
    prompts::SYSTEM.into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProviderParams {
    Openai(OpenAiConfig),
    Azure(AzureConfig),
    /// The offline baseline: pairs copied from the note's own sections.
    Extractive(ExtractiveParams),
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractiveParams {}

impl ProviderParams {
    fn llm(&self) -> Option<Provider> {
        match self {
            ProviderParams::Openai(c) => Some(Provider::Openai(c.clone())),
            ProviderParams::Azure(c) => Some(Provider::Azure(c.clone())),
            ProviderParams::Extractive(_) => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneralParams {
    /// Notes sampled per source (0: no general tasks).
    #[serde(default = "default_notes")]
    pub notes_per_source: u64,
    /// Sources to take notes from (the corpus's `source` column); none: every source.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    /// Note types to take (the corpus's `category` column, ignoring case, e.g. `Discharge
    /// summary`); none: every type.
    #[serde(default)]
    pub note_categories: Option<Vec<String>>,
    /// Exclusive bounds on a note's length in tokens.
    #[serde(default = "general_window")]
    pub note_tokens: [u64; 2],
    /// The task categories instructions are asked for (CAMEL's 12).
    #[serde(default = "default_categories")]
    pub categories: Vec<String>,
    /// Categories sampled per note (CAMEL: all 12).
    #[serde(default = "default_k")]
    pub categories_per_note: usize,
    /// Placeholders: `{note}`, `{k}`, `{categories}` (one `- Category` line each).
    #[serde(default = "general_question")]
    pub question_prompt: String,
    /// Placeholders: `{note}`, `{instructions}` (the parsed `N. Category: instruction` lines).
    #[serde(default = "general_answer")]
    pub answer_prompt: String,
}

fn default_notes() -> u64 {
    100
}
fn general_window() -> [u64; 2] {
    [1024, 1536]
}
fn default_categories() -> Vec<String> {
    CATEGORIES.iter().map(|c| c.to_string()).collect()
}
fn default_k() -> usize {
    12
}
fn general_question() -> String {
    prompts::GENERAL_QUESTION.into()
}
fn general_answer() -> String {
    prompts::GENERAL_ANSWER.into()
}

impl Default for GeneralParams {
    fn default() -> Self {
        GeneralParams {
            notes_per_source: default_notes(),
            sources: None,
            note_categories: None,
            note_tokens: general_window(),
            categories: default_categories(),
            categories_per_note: default_k(),
            question_prompt: general_question(),
            answer_prompt: general_answer(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeidParams {
    /// Notes sampled per source (0: no de-identification tasks).
    #[serde(default = "default_notes")]
    pub notes_per_source: u64,
    /// Sources to take notes from (the corpus's `source` column); none: every source.
    #[serde(default = "deid_sources")]
    pub sources: Option<Vec<String>>,
    /// Note types to take (the corpus's `category` column, ignoring case); none: every type.
    #[serde(default)]
    pub note_categories: Option<Vec<String>>,
    /// Exclusive bounds on a note's length in tokens.
    #[serde(default = "deid_window")]
    pub note_tokens: [u64; 2],
    /// De-identification instructions asked for per note.
    #[serde(default = "deid_k")]
    pub instructions_per_note: usize,
    /// Placeholders: `{note}`, `{k}`.
    #[serde(default = "deid_question")]
    pub question_prompt: String,
    /// Placeholders: `{note}`, `{instruction}`.
    #[serde(default = "deid_answer")]
    pub answer_prompt: String,
}

fn deid_sources() -> Option<Vec<String>> {
    Some(vec!["i2b2".into()])
}
fn deid_window() -> [u64; 2] {
    [0, 1024]
}
fn deid_k() -> usize {
    2
}
fn deid_question() -> String {
    prompts::DEID_QUESTION.into()
}
fn deid_answer() -> String {
    prompts::DEID_ANSWER.into()
}

impl Default for DeidParams {
    fn default() -> Self {
        DeidParams {
            notes_per_source: default_notes(),
            sources: deid_sources(),
            note_categories: None,
            note_tokens: deid_window(),
            instructions_per_note: deid_k(),
            question_prompt: deid_question(),
            answer_prompt: deid_answer(),
        }
    }
}

/// One kept instruction/answer pair (without its note).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pair {
    pub category: String,
    pub instruction: String,
    pub output: String,
}

/// What one note's requests produced.
#[derive(Debug, Default)]
struct NoteResult {
    pairs: Vec<Pair>,
    rejected: Vec<String>,
    /// Why a request failed, if one did (the note's remaining pairs are lost with it).
    failure: Option<String>,
    /// The failure as a message (no note text, no key), for the stage's error.
    failure_detail: Option<String>,
    prompt_tokens: u64,
    completion_tokens: u64,
    requests: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Task {
    General,
    Deid,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::General => "general",
            Task::Deid => "deid",
        })
    }
}

/// One Alpaca record.
#[derive(Serialize)]
struct Record<'a> {
    instruction: &'a str,
    input: &'a str,
    output: &'a str,
}

#[derive(Clone, Default, Serialize)]
struct TaskStats {
    notes_selected: BTreeMap<String, u64>,
    pairs: u64,
    pairs_by_category: BTreeMap<String, u64>,
    pairs_by_source: BTreeMap<String, u64>,
    rejected: BTreeMap<String, u64>,
    failed_notes: u64,
    failed_requests_by_reason: BTreeMap<String, u64>,
}

impl Stage for Instructions {
    type Params = InstructionsParams;
    const KIND: &'static str = "instructions";
    /// 2: a run that keeps no pair (every reply refused, unparsed or filtered; no note selected)
    /// fails instead of writing and caching an empty `instructions.json`.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "clinical instruction/answer pairs from notes, written by an LLM (Azure, OpenAI-compatible) or the offline extractive baseline";
    const UNHASHED: &'static [&'static str] = &["api_key", "limits"];

    fn inputs(_: &Self::Params) -> InputSpec {
        InputSpec::Named { required: vec!["notes".into()], optional: vec!["tokenizer".into()] }
    }

    fn outputs(_: &Self::Params) -> Vec<OutputSpec> {
        vec![OutputSpec::file("instructions", "instructions.json"), OutputSpec::file("stats", "stats.json")]
    }

    /// The PHI guard's verdict, `limits`, the other params, and a `tokenizer` that is a
    /// directory (tokenizers want the tokenizer.json file).
    fn validate(p: &Self::Params, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();
        if let Some(provider) = p.provider.llm() {
            problems.extend(camel_llm::checks::provider_problem(
                "provider",
                &provider,
                ctx.allowed_endpoints(),
            ));
        }
        problems.extend(camel_llm::checks::limits_problems("limits", &p.limits));
        if let Err(e) = validate(p) {
            // `limits` is reported field by field above.
            if !e.to_string().starts_with("limits:") {
                problems.push(Problem::param("", e.to_string()));
            }
        }
        problems.extend(ctx.expect_file(
            "tokenizer",
            "a tokenizer.json file",
            "point it at the tokenizer.json file inside the directory (or `tokenize.tokenizer`, the \
             extended tokenizer a tokenize stage writes)",
        ));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    /// Items done by a killed run (their replies are in the request log), and whether the last
    /// run kept no pair.
    fn partial(_: &InstructionsParams, at: &PartialProbe) -> Option<Partial> {
        let mut partial = camel_llm::runner::partial(at.scratch_dir)?;
        let record = std::fs::read_to_string(at.scratch_dir.join(EMPTY_FILE)).ok();
        if let Some(r) = record.and_then(|t| serde_json::from_str::<EmptyRecord>(&t).ok()) {
            partial.state.push_str(&format!(
                "; the last run kept no pair, and a rerun replays the replies of {} note(s) from the request \
                 log: change the model or a prompt",
                r.replayed
            ));
        }
        Some(partial)
    }

    fn run(p: &Self::Params, ctx: &StageContext) -> Result<(), StageError> {
        run(p, ctx)
    }
}

fn validate(p: &InstructionsParams) -> Result<(), StageError> {
    let bad = |m: String| Err(StageError::msg(m));
    let g = &p.general;
    let d = &p.deid;
    for (name, w) in [("general.note_tokens", g.note_tokens), ("deid.note_tokens", d.note_tokens)] {
        if w[0] >= w[1] {
            return bad(format!("`{name}`: the lower bound must be below the upper bound"));
        }
    }
    if g.notes_per_source > 0 {
        if g.categories.is_empty() || g.categories_per_note == 0 {
            return bad(
                "`general.categories` and `general.categories_per_note` must not be empty or 0".into()
            );
        }
        if g.categories_per_note > g.categories.len() {
            return bad(format!(
                "`general.categories_per_note` is {} but only {} categories are listed",
                g.categories_per_note,
                g.categories.len()
            ));
        }
        prompts::require("general.question_prompt", &g.question_prompt, &["note", "k", "categories"])
            .map_err(StageError::msg)?;
        prompts::require("general.answer_prompt", &g.answer_prompt, &["note", "instructions"])
            .map_err(StageError::msg)?;
    }
    if d.notes_per_source > 0 {
        if d.instructions_per_note == 0 {
            return bad("`deid.instructions_per_note` must be at least 1".into());
        }
        prompts::require("deid.question_prompt", &d.question_prompt, &["note", "k"])
            .map_err(StageError::msg)?;
        prompts::require("deid.answer_prompt", &d.answer_prompt, &["note", "instruction"])
            .map_err(StageError::msg)?;
    }
    p.limits.validate().map_err(|e| StageError::msg(e.to_string()))
}

/// The stage's steps, in order. Each is a function below.
fn run(p: &InstructionsParams, ctx: &StageContext) -> Result<(), StageError> {
    validate(p)?;
    // The client first: a provider the PHI guard refuses must fail before any note is read.
    let client = match p.provider.llm() {
        None => None,
        Some(provider) => Some(StageClient::open(ctx, "provider", provider, p.api_key.clone(), &p.limits)?),
    };
    let selection = select_notes(p, ctx)?;
    let results = ask(p, ctx, client.as_ref(), &selection.jobs)?;
    let merged = merge(p, &selection, results)?;
    let _ = std::fs::remove_file(ctx.scratch_dir().join(EMPTY_FILE));
    if merged.records.is_empty() {
        let e = no_pair(ctx, client.is_some(), &selection, &merged);
        // For `camel status` and the rerun's header (see `partial`).
        let replayed = selection.jobs.len() as u64 - merged.failed_notes;
        let _ =
            camel_cache::write_json_atomic(&ctx.scratch_dir().join(EMPTY_FILE), &EmptyRecord { replayed });
        return Err(e);
    }
    let records = write_instructions(p, ctx, &selection.jobs, &merged.records)?;
    let baseline = client.is_none();
    write_stats(p, ctx, &selection, &merged, records, baseline)?;
    if let Some(c) = &client {
        log_client_stats(p, ctx, c);
    }
    ctx.log(&format!("{records} records written (baseline: {baseline})"));
    Ok(())
}

/// One note to ask about, and for which task.
type Job = (Task, Arc<Candidate>);

/// The file in the scratch directory where a run that kept no pair says so, for `partial`.
const EMPTY_FILE: &str = "instructions-empty.json";

#[derive(Debug, Serialize, Deserialize)]
struct EmptyRecord {
    /// Notes whose replies are all in the request log (those that lost no request).
    replayed: u64,
}

/// The error of a run that kept no pair: an empty `instructions.json` is never written (nor
/// cached). Says how the replies were rejected, where they are, and what a rerun would do:
/// replies in the request log are replayed, so only a changed request gets another answer.
/// The rejection counts go to the stage log too.
fn no_pair(ctx: &StageContext, llm: bool, selection: &Selection, m: &Merged) -> StageError {
    let notes = selection.jobs.len();
    if notes == 0 {
        return StageError::msg(
            "no note was selected, so there is no pair to write (an empty instructions.json is not written): \
             check the `sources`, `note_categories` and `note_tokens` of `general` and `deid` against the corpus \
             (the stage log says how many notes each task selected and how lengths were counted)",
        );
    }
    if !llm {
        return StageError::msg(format!(
            "the extractive baseline kept no pair from the {notes} selected note(s) (an empty instructions.json \
             is not written): it copies sections under headings it knows (`Chief Complaint:`, `Discharge \
             Medications:`, …; docs/instructions.md) and dates and telephone numbers for de-identification; \
             none of the selected notes has one"
        ));
    }
    let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for s in m.stats.values() {
        for (k, v) in s.rejected.iter().chain(&s.failed_requests_by_reason) {
            *reasons.entry(k).or_insert(0) += v;
        }
    }
    let mut by_count: Vec<(&str, u64)> = reasons.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let counts: Vec<String> = by_count.iter().map(|(k, v)| format!("{v} {k}")).collect();
    ctx.log(&format!("no pair kept from {notes} note(s): {}", counts.join(", ")));
    let log = ctx.workspace_dir().join("llm").join("requests.jsonl");
    let replayed = notes as u64 - m.failed_notes;
    let rerun = if m.failed_notes == 0 {
        "A rerun as it is replays every reply from the request log, sends nothing and fails the same way"
            .to_string()
    } else {
        format!(
            "A rerun as it is sends the failed requests of {} note(s) again but replays the replies of the other \
             {replayed} from the request log",
            m.failed_notes
        )
    };
    StageError::msg(format!(
        "{}no pair was kept from the {notes} selected note(s) ({}; reasons: docs/instructions.md), so no \
         instructions.json is written. The replies are the `content` of the newest lines of {}; a model that \
         refuses or does not write numbered lists is the usual cause. {rerun}: to get new replies, change what \
         is asked — the provider's model or deployment, `system_prompt`, a `question_prompt` or \
         `answer_prompt`, or the provider's `temperature` or `seed` (each changes the requests)",
        if m.failed_notes == 0 { "every reply was unusable: " } else { "" },
        counts.join(", "),
        log.display()
    ))
}

/// The notes chosen for each task, in the order their results are merged.
struct Selection {
    lengths: Lengths,
    /// General notes first, then de-identification notes, each in selection order.
    jobs: Vec<Job>,
    /// With `notes_selected` filled in; [`merge`] adds the rest.
    stats: BTreeMap<Task, TaskStats>,
}

/// Step 1: notes by source, type and token length, a seeded sample per source.
fn select_notes(p: &InstructionsParams, ctx: &StageContext) -> Result<Selection, StageError> {
    let lengths = match ctx.inputs().get("tokenizer") {
        Some(path) => Lengths::tokenizer(path)?,
        None => {
            ctx.log("no `tokenizer` input: note lengths are approximated as UTF-8 bytes / 4");
            Lengths::Approximate
        }
    };
    let corpus = ctx.input("notes")?;
    ctx.progress().message("selecting notes");
    let (general, deid) = select::select(corpus, &lengths, p, ctx)?;
    let count = |c: &[Candidate]| {
        let mut m = BTreeMap::new();
        for n in c {
            *m.entry(n.source.clone()).or_insert(0u64) += 1;
        }
        m
    };
    let mut stats: BTreeMap<Task, TaskStats> = BTreeMap::new();
    stats.entry(Task::General).or_default().notes_selected = count(&general);
    stats.entry(Task::Deid).or_default().notes_selected = count(&deid);
    ctx.log(&format!(
        "selected {} notes for general tasks and {} for de-identification ({})",
        general.len(),
        deid.len(),
        lengths.describe()
    ));
    let jobs: Vec<Job> = general
        .into_iter()
        .map(|c| (Task::General, Arc::new(c)))
        .chain(deid.into_iter().map(|c| (Task::Deid, Arc::new(c))))
        .collect();
    Ok(Selection { lengths, jobs, stats })
}

/// Step 2: every note's pairs, in `jobs` order: from the LLM (instructions, then answers, each
/// pair checked) through the shared request runner, or copied from the note by the extractive
/// baseline.
fn ask(
    p: &InstructionsParams,
    ctx: &StageContext,
    client: Option<&StageClient>,
    jobs: &[Job],
) -> Result<Vec<NoteResult>, StageError> {
    // Selection counted the corpus rows it read on the same bar.
    ctx.progress().set_position(0);
    ctx.progress().set_total(Some(jobs.len() as u64), "notes");
    let Some(client) = client else {
        return Ok(jobs
            .iter()
            .map(|(task, note)| {
                let pairs = match task {
                    Task::General => {
                        extractive::general(&note.text, &p.general.categories, p.general.categories_per_note)
                    }
                    Task::Deid => extractive::deid(&note.text, p.deid.instructions_per_note),
                };
                ctx.progress().inc(1);
                NoteResult { pairs, ..Default::default() }
            })
            .collect());
    };
    let p = Arc::new(p.clone());
    client.run(ctx, jobs.len(), "note", |i, client| {
        let ((task, note), p) = (jobs[i].clone(), p.clone());
        async move {
            match task {
                Task::General => general_note(&client, &p, &note).await,
                Task::Deid => deid_note(&client, &p, &note).await,
            }
        }
    })
}

/// The notes' results tallied: kept pairs (with the index of their note), counts and usage.
struct Merged {
    records: Vec<(usize, Pair)>,
    stats: BTreeMap<Task, TaskStats>,
    failed_notes: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    requests: u64,
}

/// Step 3: the pairs of every note in a fixed order, every rejection and failure counted; more
/// failed notes than `max_failed_notes` fail the stage before anything is written.
fn merge(
    p: &InstructionsParams,
    selection: &Selection,
    results: Vec<NoteResult>,
) -> Result<Merged, StageError> {
    let mut m = Merged {
        records: Vec::new(),
        stats: selection.stats.clone(),
        failed_notes: 0,
        prompt_tokens: 0,
        completion_tokens: 0,
        requests: 0,
    };
    let mut first_failure: Option<String> = None;
    for (i, ((task, note), r)) in selection.jobs.iter().zip(results).enumerate() {
        let s = m.stats.entry(*task).or_default();
        for reason in r.rejected {
            *s.rejected.entry(reason).or_insert(0) += 1;
        }
        if let Some(f) = r.failure {
            s.failed_notes += 1;
            m.failed_notes += 1;
            *s.failed_requests_by_reason.entry(f).or_insert(0) += 1;
            if first_failure.is_none() {
                first_failure = r.failure_detail.map(|d| format!("note {}, {d}", note.key));
            }
        }
        m.prompt_tokens += r.prompt_tokens;
        m.completion_tokens += r.completion_tokens;
        m.requests += r.requests;
        for pair in r.pairs {
            s.pairs += 1;
            *s.pairs_by_category.entry(pair.category.clone()).or_insert(0) += 1;
            *s.pairs_by_source.entry(note.source.clone()).or_insert(0) += 1;
            m.records.push((i, pair));
        }
    }
    if m.failed_notes > p.max_failed_notes {
        return Err(StageError::msg(format!(
            "{} note(s) lost a request ({}; first: {}); `max_failed_notes` is {}. \
             Every answered request is in the request log, so a rerun sends only the failed ones",
            m.failed_notes,
            m.stats
                .iter()
                .flat_map(|(task, s)| {
                    s.failed_requests_by_reason.iter().map(move |(k, v)| format!("{v} {task} {k}"))
                })
                .collect::<Vec<_>>()
                .join(", "),
            first_failure.unwrap_or_default(),
            p.max_failed_notes
        )));
    }
    Ok(m)
}

/// Step 4: `instructions.json`, the Alpaca records shuffled with `seed`. Returns their number.
fn write_instructions(
    p: &InstructionsParams,
    ctx: &StageContext,
    jobs: &[Job],
    records: &[(usize, Pair)],
) -> Result<usize, StageError> {
    let mut order: Vec<&(usize, Pair)> = records.iter().collect();
    shuffle(&mut order, p.seed);
    let alpaca: Vec<Record> = order
        .iter()
        .map(|(i, pair)| Record {
            instruction: &pair.instruction,
            input: &jobs[*i].1.text,
            output: &pair.output,
        })
        .collect();
    write_json(&ctx.out_dir().join("instructions.json"), &alpaca)?;
    Ok(alpaca.len())
}

/// Step 5: `stats.json`: who wrote the pairs, what was selected, kept and rejected, and the cost.
fn write_stats(
    p: &InstructionsParams,
    ctx: &StageContext,
    selection: &Selection,
    m: &Merged,
    records: usize,
    baseline: bool,
) -> Result<(), StageError> {
    let provider = match &p.provider {
        ProviderParams::Openai(c) => format!("openai-compatible: model {} at {}", c.model, c.base_url),
        ProviderParams::Azure(c) => format!("azure: deployment {} at {}", c.deployment, c.endpoint),
        ProviderParams::Extractive(_) => "extractive".into(),
    };
    let summary = serde_json::json!({
        "provider": provider,
        "baseline": baseline,
        "note": if baseline {
            "BASELINE: pairs copied from each note's own sections (extractive provider), not written by an LLM"
        } else {
            "pairs written by an LLM from each note; see docs/instructions.md"
        },
        "note_lengths": selection.lengths.describe(),
        "records": records,
        "seed": p.seed,
        "general": m.stats.get(&Task::General),
        "deid": m.stats.get(&Task::Deid),
        "failed_notes": m.failed_notes,
        "usage": {
            "responses": m.requests,
            "prompt_tokens": m.prompt_tokens,
            "completion_tokens": m.completion_tokens,
            "cost_estimate": p.prices.cost(m.prompt_tokens, m.completion_tokens),
        },
    });
    write_json(&ctx.out_dir().join("stats.json"), &summary)
}

/// What this run sent and paid (a rerun's responses come from the request log).
fn log_client_stats(p: &InstructionsParams, ctx: &StageContext, client: &StageClient) {
    let s = client.stats();
    ctx.log(&format!(
        "this run: {} requests sent, {} answered ({} prompt + {} completion tokens, cost ≈ {:.4}), {} from the request log, {} retries, {} failed, {} stopped at max_tokens, {} content-filtered; {:.1} s",
        s.attempts,
        s.responses,
        s.prompt_tokens,
        s.completion_tokens,
        p.prices.cost(s.prompt_tokens, s.completion_tokens),
        s.from_log,
        s.retries,
        s.failures,
        s.finish_length,
        s.finish_content_filter,
        s.elapsed_s
    ));
}

/// Pretty JSON and a final newline, written atomically (temp file, fsync, rename) by camel-cache.
fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), StageError> {
    camel_cache::write_json_atomic(path, v).map_err(|e| StageError::Other(Box::new(e)))
}

/// A deterministic Fisher–Yates shuffle (splitmix64): the order depends on `seed` only. The
/// index is drawn modulo `i + 1`, as the published outputs were; changing the mapping would
/// reorder every `instructions.json`.
fn shuffle<T>(v: &mut [T], seed: u64) {
    SplitMix64::new(seed).shuffle(v, SplitMix64::below_modulo);
}

/// A request's outcome folded into the note's result: the content, or None after recording why.
fn take(
    r: &mut NoteResult,
    reply: Result<camel_llm::Reply, camel_llm::Failure>,
    phase: &str,
) -> Option<camel_llm::Completion> {
    match reply {
        Ok(rep) => {
            r.requests += 1;
            r.prompt_tokens += rep.completion.usage.prompt_tokens;
            r.completion_tokens += rep.completion.usage.completion_tokens;
            if rep.completion.finish_reason == camel_llm::FinishReason::ContentFilter {
                r.rejected.push(format!("{phase}_content_filter"));
                return None;
            }
            Some(rep.completion)
        }
        Err(camel_llm::Failure::Rejected { code: Some(c), .. }) if c == "content_filter" => {
            r.rejected.push(format!("{phase}_content_filter"));
            None
        }
        Err(f) => {
            r.failure = Some(format!("{phase}_{}", f.reason()));
            r.failure_detail = Some(format!("a {phase} request: {f}"));
            None
        }
    }
}

fn messages(system: &str, user: String) -> Vec<Message> {
    vec![Message::system(system), Message::user(user)]
}

async fn general_note(client: &Client, p: &InstructionsParams, note: &Candidate) -> NoteResult {
    let g = &p.general;
    let mut r = NoteResult::default();
    let cats = select::sample_categories(&g.categories, g.categories_per_note, p.seed, &note.key);
    let k = cats.len().to_string();
    let listed: String = cats.iter().map(|c| format!("- {c}\n")).collect();
    let q = prompts::render(
        &g.question_prompt,
        &[("note", &note.text), ("k", &k), ("categories", listed.trim_end())],
    );
    let Some(qc) = take(&mut r, client.chat(&messages(&p.system_prompt, q)).await, "question") else {
        return r;
    };
    // Instructions: keep those whose category is one that was asked for.
    let mut instructions: Vec<(&str, String)> = Vec::new();
    let items = parse::items(&qc.content);
    if items.is_empty() {
        r.rejected.push("question_unparsed".into());
        return r;
    }
    for item in items {
        match parse::split_category(&item, &cats) {
            Some((c, text)) if !text.is_empty() => instructions.push((c, text)),
            _ => r.rejected.push("instruction_category_unknown".into()),
        }
    }
    if instructions.is_empty() {
        return r;
    }
    let numbered: String = instructions
        .iter()
        .enumerate()
        .map(|(i, (c, t))| format!("{}. {c}: {}\n", i + 1, t.replace('\n', " ")))
        .collect();
    let a = prompts::render(&g.answer_prompt, &[("note", &note.text), ("instructions", numbered.trim_end())]);
    let Some(ac) = take(&mut r, client.chat(&messages(&p.system_prompt, a)).await, "answer") else {
        return r;
    };
    let answers = parse::items(&ac.content);
    let truncated = ac.finish_reason == camel_llm::FinishReason::Length;
    let n = instructions.len();
    for (i, (cat, instruction)) in instructions.into_iter().enumerate() {
        let Some(answer) = answers.get(i) else {
            r.rejected.push(if truncated { "answer_truncated" } else { "answer_missing" }.into());
            continue;
        };
        if truncated && i + 1 >= answers.len().min(n) {
            r.rejected.push("answer_truncated".into());
            continue;
        }
        let Some((acat, output)) = parse::split_category(answer, &cats) else {
            r.rejected.push("answer_category_unknown".into());
            continue;
        };
        if acat != cat {
            r.rejected.push("category_mismatch".into());
            continue;
        }
        if !parse::starts_capitalized(&instruction) || !parse::starts_capitalized(&output) {
            r.rejected.push("not_capitalized".into());
            continue;
        }
        r.pairs.push(Pair { category: cat.to_string(), instruction, output });
    }
    r
}

async fn deid_note(client: &Client, p: &InstructionsParams, note: &Candidate) -> NoteResult {
    let d = &p.deid;
    let mut r = NoteResult::default();
    let k = d.instructions_per_note.to_string();
    let q = prompts::render(&d.question_prompt, &[("note", &note.text), ("k", &k)]);
    let Some(qc) = take(&mut r, client.chat(&messages(&p.system_prompt, q)).await, "question") else {
        return r;
    };
    let mut items = parse::items(&qc.content);
    if items.is_empty() {
        r.rejected.push("question_unparsed".into());
        return r;
    }
    if items.len() > d.instructions_per_note {
        for _ in d.instructions_per_note..items.len() {
            r.rejected.push("instruction_extra".into());
        }
        items.truncate(d.instructions_per_note);
    }
    for instruction in items {
        if !parse::starts_capitalized(&instruction) {
            r.rejected.push("not_capitalized".into());
            continue;
        }
        let a = prompts::render(&d.answer_prompt, &[("note", &note.text), ("instruction", &instruction)]);
        let Some(ac) = take(&mut r, client.chat(&messages(&p.system_prompt, a)).await, "answer") else {
            if r.failure.is_some() {
                return r;
            }
            continue;
        };
        let output = ac.content.trim().to_string();
        if ac.finish_reason == camel_llm::FinishReason::Length {
            r.rejected.push("answer_truncated".into());
        } else if output.is_empty() {
            r.rejected.push("answer_empty".into());
        } else if !parse::starts_capitalized(&output) {
            r.rejected.push("not_capitalized".into());
        } else {
            r.pairs.push(Pair { category: "De-identification".into(), instruction, output });
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_defaults_and_providers() {
        let parse = |s: &str| serde_yaml::from_str::<InstructionsParams>(s);
        let p = parse("{provider: {type: extractive}}").unwrap();
        assert_eq!(p.seed, 42);
        assert_eq!(p.general.note_tokens, [1024, 1536]);
        assert_eq!(p.deid.sources, Some(vec!["i2b2".to_string()]));
        assert_eq!(p.general.categories.len(), 12);
        let p = parse("{provider: {type: openai, base_url: 'http://127.0.0.1:1/v1', model: m, seed: 3}}")
            .unwrap();
        assert!(matches!(p.provider, ProviderParams::Openai(ref c) if c.seed == Some(3)));
        assert!(parse("{provider: {type: extractive, x: 1}}").is_err());
        assert!(parse("{provider: {type: gpt}}").is_err());
        assert!(parse("{provider: {type: azure, endpoint: e, deployment: d, modle: x}}").is_err());
    }

    #[test]
    fn shuffle_depends_on_the_seed_only() {
        let mut a: Vec<u32> = (0..50).collect();
        let mut b = a.clone();
        shuffle(&mut a, 42);
        shuffle(&mut b, 42);
        assert_eq!(a, b);
        assert_ne!(a, (0..50).collect::<Vec<_>>());
        let mut c: Vec<u32> = (0..50).collect();
        shuffle(&mut c, 7);
        assert_ne!(a, c);
    }
}
