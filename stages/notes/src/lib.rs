//! `kind: notes` — MIMIC-III, MIMIC-IV, i2b2 and any institution's table of notes into the CAMEL
//! corpus: `corpus.parquet` (source, id, category, text, in source and file order) and
//! `stats.json`. DuckDB reads the files; the per-note work (de-identification marks,
//! decontamination, hashing) runs in Rust on a rayon pool; corpus.parquet is written on its own
//! thread, one bounded row group at a time. docs/notes.md is the YAML reference.
//!
//! CAMEL's own preprocessing, which the defaults reproduce exactly:
//! - MIMIC-III: drop the ROW_IDs of the filter list, text = CATEGORY + "\n" + TEXT, file order.
//! - MIMIC-IV: "Discharge summary\n" + text for discharge.csv, then "Radiology\n" + text.
//!
//! Note text never reaches a log, an error or stats.json: errors name the file, the row or CSV
//! record, and the column.

pub mod decontam;
pub mod marks;
pub mod params;
pub mod process;
pub mod read;
pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use camel_engine::{InputSpec, OutputSpec, Problem, Stage, StageContext, StageError, ValidateContext};
use duckdb::Connection;
use duckdb::arrow::array::{RecordBatch, StringArray};
use serde::Serialize;

use crate::decontam::NgramIndex;
use crate::marks::MarkTable;
use crate::params::{Exclude, NotesParams, Source, TableFormat};
use crate::process::{Category, IdList, Pipeline, Rows, SourceRun, SourceStats, mark_stats, process};
use crate::read::{
    Decode, check_file, columns_of, csv_scan, find_columns, read_header, require_columns, sql_ident, sql_str,
    stream,
};

/// A failure of the notes stage: one message that names the file and place, never note text.
#[derive(Debug)]
pub struct NotesError(String);

impl NotesError {
    pub fn new(m: impl Into<String>) -> Self {
        NotesError(m.into())
    }
}

impl std::fmt::Display for NotesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotesError {}

/// What the stage reports while it runs: [`StageContext`] in camel, something simpler in the
/// benchmark.
pub trait Env: Sync {
    fn log(&self, line: &str);
    /// A warning for the user (the stage log, and the run's summary on the console).
    fn warn(&self, message: &str) {
        self.log(&format!("warning: {message}"));
    }
    /// Rows read so far, all sources together.
    fn rows(&self, n: u64);
    fn message(&self, m: &str);
    fn cancelled(&self) -> bool;
}

impl Env for StageContext {
    fn log(&self, line: &str) {
        StageContext::log(self, line);
    }
    fn warn(&self, message: &str) {
        StageContext::warn(self, message);
    }
    fn rows(&self, n: u64) {
        self.progress().set_position(n);
    }
    fn message(&self, m: &str) {
        self.progress().message(m);
    }
    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }
}

pub struct Notes;

impl Stage for Notes {
    type Params = NotesParams;
    const KIND: &'static str = "notes";
    /// 2: JSON-lines columns read as written (no longer typed by DuckDB), Parquet BINARY text
    /// decoded as UTF-8.
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "MIMIC-III/IV, i2b2 or any table of notes into the filtered CAMEL corpus (corpus.parquet, stats.json)";
    const UNHASHED: &'static [&'static str] = params::UNHASHED;

    fn inputs(p: &NotesParams) -> InputSpec {
        InputSpec::Named { required: p.input_names(), optional: Vec::new() }
    }

    fn input_params(p: &NotesParams) -> Vec<(String, String)> {
        p.input_params()
    }

    fn outputs(_p: &NotesParams) -> Vec<OutputSpec> {
        vec![OutputSpec::file("corpus", "corpus.parquet"), OutputSpec::file("stats", "stats.json")]
    }

    /// A source's `categories` that would drop every row, a table source's delimiter, and its
    /// `columns:` against the header of a CSV/TSV file that is already there (one line is read).
    fn validate(p: &NotesParams, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        let problems: Vec<Problem> = p
            .sources
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                let mut v = category_problems(i, s);
                if let Source::Table(t) = s {
                    v.extend(table_problems(i, t, ctx));
                }
                v
            })
            .collect();
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }

    fn run(p: &NotesParams, ctx: &StageContext) -> Result<(), StageError> {
        ctx.progress().set_total(None, "notes");
        let inputs: BTreeMap<String, PathBuf> = ctx.inputs().clone();
        match build(p, &inputs, ctx.out_dir(), ctx.scratch_dir(), ctx) {
            Ok(_) => Ok(()),
            Err(_) if ctx.is_cancelled() => Err(StageError::Cancelled),
            Err(e) => Err(StageError::msg(e.0)),
        }
    }
}

/// stats.json.
#[derive(Debug, Serialize)]
pub struct Stats {
    pub sources: Vec<SourceStats>,
    pub total: Total,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decontamination: Option<DecontamStats>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Total {
    pub rows_read: u64,
    pub rows_written: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    pub input_bytes: u64,
    pub text_bytes_written: u64,
}

#[derive(Debug, Serialize)]
pub struct DecontamStats {
    pub ngram: u32,
    pub min_shared: u32,
    pub sets: Vec<EvalSetStats>,
    /// Notes dropped, all sources.
    pub dropped: u64,
    /// `source:id` of the first 1,000 dropped notes.
    pub dropped_ids: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct EvalSetStats {
    pub input: String,
    pub field: String,
    pub texts: u64,
    pub ngrams: u64,
    /// Dropped notes sharing at least one n-gram with this set.
    pub notes_dropped: u64,
}

fn input<'a>(inputs: &'a BTreeMap<String, PathBuf>, name: &str) -> Result<&'a Path, NotesError> {
    inputs
        .get(name)
        .map(PathBuf::as_path)
        .ok_or_else(|| NotesError::new(format!("input `{name}` is not bound")))
}

/// Builds corpus.parquet and stats.json in `out_dir`. DuckDB spills to `scratch` if it must.
pub fn build(
    p: &NotesParams,
    inputs: &BTreeMap<String, PathBuf>,
    out_dir: &Path,
    scratch: &Path,
    env: &dyn Env,
) -> Result<Stats, NotesError> {
    let threads = p
        .threads
        .map(|t| t.get() as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut warnings = Vec::new();

    // Id lists first: a wrong list fails before anything is read.
    let mut lists: Vec<Option<(IdList, String)>> = Vec::new();
    for s in &p.sources {
        lists.push(match s.common().exclude {
            Some(e) => Some(read_id_list(inputs, e, matches!(s, Source::Mimic3(_)))?),
            None => None,
        });
    }

    let tmp = scratch.join("duckdb");
    std::fs::create_dir_all(&tmp)
        .map_err(|e| NotesError::new(format!("cannot create {}: {e}", tmp.display())))?;
    let conn = read::open_duckdb(threads, &p.memory_limit, &tmp)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("notes-{i}"))
        .build()
        .map_err(|e| NotesError::new(format!("cannot start worker threads: {e}")))?;

    // Evaluation sets for decontamination.
    let mut index = None;
    let mut set_stats = Vec::new();
    if let Some(d) = &p.decontaminate {
        if d.sets.len() > 64 {
            return Err(NotesError::new("decontaminate: at most 64 evaluation sets"));
        }
        env.message("reading evaluation sets");
        let mut ix = NgramIndex::new(d.ngram.get() as usize);
        for (k, set) in d.sets.iter().enumerate() {
            let path = input(inputs, &set.input)?;
            let texts = read::read_eval_texts(&conn, path, &set.field)?;
            for t in &texts {
                ix.add(k, t);
            }
            let grams = ix.grams_in(k);
            env.log(&format!(
                "evaluation set `{}` (field `{}`): {} texts, {} distinct {}-grams",
                set.input,
                set.field,
                texts.len(),
                grams,
                d.ngram
            ));
            set_stats.push(EvalSetStats {
                input: set.input.clone(),
                field: set.field.clone(),
                texts: texts.len() as u64,
                ngrams: grams as u64,
                notes_dropped: 0,
            });
            if texts.is_empty() {
                warnings
                    .push(format!("evaluation set `{}` has no texts in field `{}`", set.input, set.field));
            }
        }
        index = Some(ix);
    }

    let extra: Vec<(String, String)> = p.marks.table.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let table = MarkTable::new(&extra, p.marks.builtin, p.marks.unknown.clone(), p.marks.spacing);
    let writer = write::CorpusWriter::create(&out_dir.join("corpus.parquet"), &p.parquet)?;
    let decontam = match (&index, &p.decontaminate) {
        (Some(ix), Some(d)) => Some((ix, d.min_shared.get())),
        _ => None,
    };
    let mut pipe = Pipeline::new(&p.drop, &table, decontam, set_stats.len(), &pool, writer);

    let mut all = Vec::new();
    let mut total_rows = 0u64;
    for (s, list) in p.sources.iter().zip(lists) {
        let common = s.common();
        env.message(&format!("reading {}", common.name));
        let (list, list_hash) = match list {
            Some((l, h)) => (Some(l), Some(h)),
            None => (None, None),
        };
        let exclude_input = common.exclude.map(|e| e.ids.clone());
        let mut run = SourceRun::new(common, list, &table);
        read_source(s, inputs, &conn, &mut pipe, &mut run, env, &mut total_rows)?;
        for input in &run.empty_inputs {
            warnings.push(format!(
                "input `{input}` has no rows (a header and nothing else?): source `{}` read nothing from it",
                run.stats.name
            ));
        }
        if let (Some(list), Some(h), Some(input)) = (&run.exclude, list_hash, exclude_input) {
            let listed = list.len() as u64;
            let matched = list.matched() as u64;
            let earlier = list.dropped_earlier() as u64;
            let absent = listed - matched - earlier;
            // Counted against every row read: an id whose row an earlier filter dropped is in
            // the export, and is said apart from ids the export does not have.
            if absent > 0 {
                let sample = list.absent_sample(10);
                warnings.push(format!(
                    "{absent} of the {listed} ids in `{input}` are not in source `{}` (first: {})",
                    run.stats.name,
                    sample.join(", ")
                ));
            }
            if earlier > 0 {
                env.log(&format!(
                    "{earlier} of the {listed} ids in `{input}` are in rows of source `{}` that the category \
                     filter (or ISERROR) dropped first",
                    run.stats.name
                ));
            }
            run.stats.exclude = Some(process::ExcludeStats {
                input,
                blake3: h,
                listed,
                matched,
                dropped_earlier: earlier,
                absent,
            });
        }
        if run.stats.empty_written > 0 {
            warnings.push(format!(
                "{} empty notes of source `{}` are in the corpus (`drop: {{empty: true}}` leaves them out)",
                run.stats.empty_written, run.stats.name
            ));
        }
        warnings.extend(filter_warnings(&run));
        if s.common().deid == params::DeidMode::Tags {
            run.stats.marks = Some(mark_stats(&run.mark_counts, &table));
        }
        env.log(&format!(
            "source `{}`: {} rows read, {} written, dropped {:?}",
            run.stats.name, run.stats.rows_read, run.stats.rows_written, run.stats.dropped
        ));
        all.push(run.stats);
    }
    let contaminated_ids = std::mem::take(&mut pipe.contaminated_ids);
    let per_set = std::mem::take(&mut pipe.contaminated_per_set);
    pipe.finish()?;

    let mut total = Total::default();
    for s in &all {
        total.rows_read += s.rows_read;
        total.rows_written += s.rows_written;
        total.input_bytes += s.inputs.values().sum::<u64>();
        total.text_bytes_written += s.text_bytes_written;
        for (k, v) in &s.dropped {
            *total.dropped.entry(*k).or_insert(0) += v;
        }
    }
    let decontamination = p.decontaminate.as_ref().map(|d| {
        for (st, n) in set_stats.iter_mut().zip(&per_set) {
            st.notes_dropped = *n;
        }
        DecontamStats {
            ngram: d.ngram.get(),
            min_shared: d.min_shared.get(),
            sets: std::mem::take(&mut set_stats),
            dropped: total.dropped.get("contaminated").copied().unwrap_or(0),
            dropped_ids: contaminated_ids,
        }
    });
    if total.rows_written == 0 {
        warnings.push("the corpus is empty: no note was written, so the stages that read it get none".into());
    }
    for w in &warnings {
        env.warn(w);
    }
    let stats = Stats { sources: all, total, decontamination, warnings };
    let json = serde_json::to_vec_pretty(&stats).expect("stats serialize");
    std::fs::write(out_dir.join("stats.json"), json)
        .map_err(|e| NotesError::new(format!("cannot write stats.json: {e}")))?;
    env.log(&format!(
        "corpus: {} notes, {} bytes of text, from {} rows read",
        stats.total.rows_written, stats.total.text_bytes_written, stats.total.rows_read
    ));
    Ok(stats)
}

/// What a source's filters did that is likely a mistake: listed categories no row read has (a
/// site's own category names, a misspelling), and a source whose rows were all dropped.
fn filter_warnings(run: &SourceRun<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let st = &run.stats;
    if let Some(listed) = run.common.categories
        && st.rows_read > 0
    {
        let unmatched: Vec<String> = listed
            .iter()
            .filter(|c| !run.categories_seen.contains(&c.trim().to_lowercase()))
            .map(|c| format!("`{c}`"))
            .collect();
        if !unmatched.is_empty() {
            out.push(format!(
                "{} {} of source `{}` matched none of the {} rows read (categories are compared trimmed, \
                 in any case)",
                if unmatched.len() == 1 { "category" } else { "categories" },
                unmatched.join(", "),
                st.name,
                st.rows_read
            ));
        }
    }
    if st.rows_read > 0 && st.rows_written == 0 {
        let why: Vec<String> =
            st.dropped.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}: {n}")).collect();
        out.push(format!(
            "source `{}` wrote no note: its filters dropped all {} rows read ({})",
            st.name,
            st.rows_read,
            why.join(", ")
        ));
    }
    out
}

/// Reads an exclusion list: one id per line (blank lines ignored), its blake3 checked.
fn read_id_list(
    inputs: &BTreeMap<String, PathBuf>,
    e: &Exclude,
    ints: bool,
) -> Result<(IdList, String), NotesError> {
    let path = input(inputs, &e.ids)?;
    check_file(path, "a list of ids")?;
    let bytes = std::fs::read(path)
        .map_err(|err| NotesError::new(format!("{}: cannot be read ({err})", path.display())))?;
    let hash = blake3::hash(&bytes).to_hex().to_string();
    if let Some(want) = &e.blake3
        && *want != hash
    {
        return Err(NotesError::new(format!(
            "{}: its blake3 is {hash}, but `exclude.blake3` expects {want}: not the expected id list",
            path.display()
        )));
    }
    let text = String::from_utf8(bytes).map_err(|err| {
        NotesError::new(format!(
            "{}: not valid UTF-8 (byte {})",
            path.display(),
            err.utf8_error().valid_up_to() + 1
        ))
    })?;
    // A byte-order mark (Windows editors write one) is not part of the first id.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut list = if ints { IdList::Ints(HashMap::new()) } else { IdList::Strings(HashMap::new()) };
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        match &mut list {
            IdList::Ints(m) => {
                let v: i64 = t.parse().map_err(|_| {
                    NotesError::new(format!("{}: line {} is not an integer ROW_ID", path.display(), n + 1))
                })?;
                m.insert(v, process::Seen::No);
            }
            IdList::Strings(m) => {
                m.insert(t.to_string(), process::Seen::No);
            }
        }
    }
    if list.is_empty() {
        return Err(NotesError::new(format!("{}: lists no ids", path.display())));
    }
    Ok((list, hash))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn limit_sql(limit: Option<u64>) -> String {
    limit.map(|l| format!(" LIMIT {l}")).unwrap_or_default()
}

/// A column of the query that is decoded on the Rust side: its alias in the query, its name in
/// the file, and how.
type Decoded<'a> = (&'static str, &'a str, Decode);

/// Streams a DuckDB query's batches (columns id, category?, text, iserror?) through `process`;
/// the columns of `decode` are made text on the way.
#[allow(clippy::too_many_arguments)]
fn run_query(
    conn: &Connection,
    scan: &str,
    sql: &str,
    file: &Path,
    const_category: Option<&str>,
    int_ids: bool,
    decode: &[Decoded<'_>],
    pipe: &mut Pipeline<'_>,
    run: &mut SourceRun<'_>,
    env: &dyn Env,
    total_rows: &mut u64,
) -> Result<(), NotesError> {
    run.file_rows = 0;
    // A `.gz` file is checked whole beside DuckDB's read (not with `limit`, which reads a part).
    let check = if run.common.limit.is_none() { read::GzipCheck::start(file) } else { None };
    let read = stream(conn, scan, sql, file, &mut |b: &RecordBatch| {
        if env.cancelled() {
            return Err(NotesError::new("cancelled"));
        }
        let mut decoded: Vec<(&str, StringArray)> = Vec::new();
        for &(alias, column, how) in decode {
            decoded.push((alias, read::decode_column(b, alias, column, how, file, run.file_rows)?));
        }
        let col = |alias: &str| match decoded.iter().find(|(a, _)| *a == alias) {
            Some((_, c)) => Some(c),
            None => read::string_column(b, alias),
        };
        let text = col("text").ok_or_else(|| {
            NotesError::new(format!("{}: DuckDB returned the text column with another type", file.display()))
        })?;
        let category = match (const_category, col("category")) {
            (Some(c), _) => Category::Const(c),
            (None, Some(c)) => Category::Column(c),
            (None, None) => Category::None,
        };
        let rows =
            Rows { file, id: col("id"), category, text, iserror: read::string_column(b, "iserror"), int_ids };
        process(pipe, run, &rows)?;
        *total_rows += b.num_rows() as u64;
        env.rows(*total_rows);
        Ok(())
    });
    // A corrupt stream is the cause of whatever DuckDB said about its end (a short last row).
    match check {
        Some(c) => match (read, c.finish(env.cancelled())) {
            (_, Err(gz)) => Err(gz),
            (r, Ok(())) => r,
        },
        None => read,
    }
}

fn read_source(
    s: &Source,
    inputs: &BTreeMap<String, PathBuf>,
    conn: &Connection,
    pipe: &mut Pipeline<'_>,
    run: &mut SourceRun<'_>,
    env: &dyn Env,
    total_rows: &mut u64,
) -> Result<(), NotesError> {
    match s {
        Source::Mimic3(m) => {
            let path = input(inputs, &m.notes)?;
            check_file(path, "NOTEEVENTS.csv[.gz]")?;
            run.stats.inputs.insert(m.notes.clone(), file_size(path));
            let cols = read_header(path, b',')?;
            let mut need = vec!["ROW_ID", "CATEGORY", "TEXT"];
            if m.iserror == params::IsError::Drop {
                need.push("ISERROR");
            }
            let found = find_columns(path, &cols, &need, true, b',')?;
            let [row_id, category, text] = [&found[0], &found[1], &found[2]].map(|c| sql_ident(c));
            let iserror = match found.get(3) {
                Some(c) => format!(", {} AS iserror", sql_ident(c)),
                None => String::new(),
            };
            let scan = csv_scan(path, b',', &cols);
            let sql = format!(
                "SELECT {row_id} AS id, {category} AS category{iserror}, {text} AS text FROM {scan}{}",
                limit_sql(m.limit)
            );
            run_query(conn, &scan, &sql, path, None, true, &[], pipe, run, env, total_rows)?;
            if run.file_rows == 0 {
                run.empty_inputs.push(m.notes.clone());
            }
            Ok(())
        }
        Source::Mimic4(m) => {
            let files = [(m.discharge.as_ref(), "Discharge summary"), (m.radiology.as_ref(), "Radiology")];
            let mut left = m.limit;
            for (name, category) in files {
                let Some(name) = name else { continue };
                if !run.wants_category(category) || left == Some(0) {
                    continue;
                }
                let path = input(inputs, name)?;
                check_file(path, "a MIMIC-IV note file (discharge.csv or radiology.csv, optionally .gz)")?;
                run.stats.inputs.insert(name.clone(), file_size(path));
                let cols = read_header(path, b',')?;
                let found = find_columns(path, &cols, &["note_id", "text"], true, b',')?;
                let scan = csv_scan(path, b',', &cols);
                let sql = format!(
                    "SELECT {} AS id, {} AS text FROM {scan}{}",
                    sql_ident(&found[0]),
                    sql_ident(&found[1]),
                    limit_sql(left)
                );
                let before = run.stats.rows_read;
                run_query(conn, &scan, &sql, path, Some(category), false, &[], pipe, run, env, total_rows)?;
                if run.file_rows == 0 {
                    run.empty_inputs.push(name.clone());
                }
                if let Some(l) = &mut left {
                    *l = l.saturating_sub(run.stats.rows_read - before);
                }
            }
            Ok(())
        }
        Source::I2b2(m) => {
            let path = input(inputs, &m.notes)?;
            let (notes, skipped) = read::read_i2b2(path, m.limit)?;
            run.stats.inputs.insert(m.notes.clone(), notes.iter().map(|n| n.text.len() as u64).sum());
            if skipped > 0 {
                run.stats.files_skipped = Some(skipped);
            }
            if notes.is_empty() {
                run.empty_inputs.push(m.notes.clone());
            }
            run.file_rows = 0;
            for chunk in notes.chunks(2048) {
                if env.cancelled() {
                    return Err(NotesError::new("cancelled"));
                }
                let ids = StringArray::from_iter_values(chunk.iter().map(|n| n.id.as_str()));
                let texts = StringArray::from_iter_values(chunk.iter().map(|n| n.text.as_str()));
                let rows = Rows {
                    file: path,
                    id: Some(&ids),
                    category: Category::None,
                    text: &texts,
                    iserror: None,
                    int_ids: false,
                };
                process(pipe, run, &rows)?;
                *total_rows += chunk.len() as u64;
                env.rows(*total_rows);
            }
            Ok(())
        }
        Source::Table(t) => {
            let path = input(inputs, &t.notes)?;
            check_file(path, "a table of notes")?;
            run.stats.inputs.insert(t.notes.clone(), file_size(path));
            let format = match t.format {
                TableFormat::Auto => guess_format(path)?,
                f => f,
            };
            let mut need = vec![t.columns.text.as_str()];
            need.extend(t.columns.id.as_deref());
            need.extend(t.columns.category.as_deref());
            let lit = sql_str(&path.to_string_lossy());
            let mapped: [(&'static str, Option<&str>); 3] = [
                ("text", Some(t.columns.text.as_str())),
                ("id", t.columns.id.as_deref()),
                ("category", t.columns.category.as_deref()),
            ];
            let mut select = Vec::new();
            let mut decode: Vec<Decoded<'_>> = Vec::new();
            let cast = |c: &str, alias: &str| format!("CAST({} AS VARCHAR) AS {alias}", sql_ident(c));
            let scan = match format {
                TableFormat::Csv | TableFormat::Tsv => {
                    let delim = match (&t.delimiter, format) {
                        (Some(d), _) => {
                            let d = if d == "\\t" { "\t" } else { d.as_str() };
                            if d.len() != 1 {
                                return Err(NotesError::new(format!(
                                    "source `{}`: `delimiter` must be one ASCII character",
                                    run.stats.name
                                )));
                            }
                            d.as_bytes()[0]
                        }
                        (None, TableFormat::Tsv) => b'\t',
                        _ => b',',
                    };
                    let cols = read_header(path, delim)?;
                    let found = find_columns(path, &cols, &need, false, delim)?;
                    for ((alias, _), c) in mapped.iter().filter(|(_, c)| c.is_some()).zip(&found) {
                        select.push(cast(c, alias));
                    }
                    csv_scan(path, delim, &cols)
                }
                // Each mapped column by its type: text as it is, BINARY decoded as UTF-8 here,
                // other single values (integer ids, dates) as DuckDB writes them; a list or a
                // struct is not text.
                TableFormat::Parquet => {
                    let scan = format!("read_parquet({lit})");
                    let types = read::column_types(conn, &scan, path)?;
                    let names: Vec<String> = types.iter().map(|(n, _)| n.clone()).collect();
                    require_columns(path, &names, &need, None)?;
                    for (alias, c) in mapped {
                        let Some(c) = c else { continue };
                        let ty = types.iter().find(|(n, _)| n == c).map_or("", |(_, t)| t.as_str());
                        if ty.eq_ignore_ascii_case("BLOB") {
                            select.push(format!("{} AS {alias}", sql_ident(c)));
                            decode.push((alias, c, Decode::Utf8Bytes));
                        } else if read::is_nested_type(ty) {
                            return Err(NotesError::new(format!(
                                "{}: column `{c}` holds {ty} values, not text; `columns:` must name a \
                                 column of text (or of single values, for `id` and `category`)",
                                path.display()
                            )));
                        } else {
                            select.push(cast(c, alias));
                        }
                    }
                    scan
                }
                // DuckDB types a JSON column by its values: one number among strings makes every
                // value JSON text, and ids of mixed kinds keep their quotes. The mapped columns
                // are read as JSON and decoded here: a string is its text, a number is written as
                // it is, an object or a list is an error naming the row.
                TableFormat::Jsonl => {
                    read::check_json_lines(path)?;
                    let auto = format!("read_json({lit}, format = 'newline_delimited')");
                    let names = columns_of(conn, &auto, path)?;
                    require_columns(path, &names, &need, None)?;
                    let mut json_cols: Vec<&str> = Vec::new();
                    for (alias, c) in mapped {
                        let Some(c) = c else { continue };
                        if !json_cols.contains(&c) {
                            json_cols.push(c);
                        }
                        select.push(format!("{} AS {alias}", sql_ident(c)));
                        decode.push((alias, c, Decode::Json));
                    }
                    let spec: Vec<String> =
                        json_cols.iter().map(|c| format!("{}: 'JSON'", sql_str(c))).collect();
                    format!(
                        "read_json({lit}, format = 'newline_delimited', columns = {{{}}})",
                        spec.join(", ")
                    )
                }
                TableFormat::Auto => unreachable!("resolved above"),
            };
            let sql = format!("SELECT {} FROM {scan}{}", select.join(", "), limit_sql(t.limit));
            run_query(conn, &scan, &sql, path, None, false, &decode, pipe, run, env, total_rows)?;
            if run.file_rows == 0 {
                run.empty_inputs.push(t.notes.clone());
            }
            Ok(())
        }
    }
}

/// `categories` of source `i` that would drop every row, decidable from the params: an empty
/// list, a table source without a `category` column mapped, and MIMIC-IV categories other than
/// its two, or none of whose files the source names.
fn category_problems(i: usize, s: &Source) -> Vec<Problem> {
    let at = format!("sources.{i}.categories");
    let Some(cats) = s.common().categories else { return Vec::new() };
    if cats.is_empty() {
        return vec![
            Problem::param(&at, "`categories` is empty: every row would be dropped")
                .help("list the categories to keep, or leave `categories` out to keep all"),
        ];
    }
    match s {
        Source::Table(t) if t.columns.category.is_none() => vec![
            Problem::param(
                &at,
                "`categories` keeps rows by their category, but `columns` maps no `category` column: \
                 every row would be dropped",
            )
            .help("name the column that holds each note's category in `columns: {…, category: COLUMN}`, or leave `categories` out"),
        ],
        Source::Mimic4(m) => {
            const MIMIC4: [&str; 2] = ["Discharge summary", "Radiology"];
            let known = |c: &str| MIMIC4.iter().find(|k| k.eq_ignore_ascii_case(c.trim())).copied();
            let mut out: Vec<Problem> = cats
                .iter()
                .enumerate()
                .filter(|(_, c)| known(c).is_none())
                .map(|(j, c)| {
                    let help = match camel_engine::validate::nearest(c, MIMIC4) {
                        Some(n) => format!("did you mean `{n}`?"),
                        None => "MIMIC-IV-Note's categories are `Discharge summary` (discharge.csv) and `Radiology` (radiology.csv)".into(),
                    };
                    Problem::param(
                        &format!("{at}.{j}"),
                        format!("`{c}` is not a MIMIC-IV-Note category: it matches no row"),
                    )
                    .help(help)
                })
                .collect();
            let read = [("Discharge summary", &m.discharge), ("Radiology", &m.radiology)]
                .into_iter()
                .any(|(c, file)| file.is_some() && cats.iter().any(|x| known(x) == Some(c)));
            if out.is_empty() && !read {
                let given: Vec<&str> = [("discharge", &m.discharge), ("radiology", &m.radiology)]
                    .into_iter()
                    .filter(|(_, f)| f.is_some())
                    .map(|(n, _)| n)
                    .collect();
                out.push(
                    Problem::param(
                        &at,
                        format!(
                            "`categories` keeps none of the files the source names (`{}`): it would read nothing",
                            given.join("`, `")
                        ),
                    )
                    .help("`Discharge summary` keeps `discharge`, `Radiology` keeps `radiology`"),
                );
            }
            out
        }
        _ => Vec::new(),
    }
}

/// The delimiter of a CSV/TSV table source, or why `delimiter` is not one.
fn table_delimiter(t: &crate::params::Table, format: TableFormat) -> Result<u8, String> {
    match (&t.delimiter, format) {
        (Some(d), _) => {
            let d = if d == "\\t" { "\t" } else { d.as_str() };
            if d.len() != 1 {
                return Err(format!(
                    "`delimiter` is {d:?}; it must be one ASCII character (`\\t` for a tab)"
                ));
            }
            Ok(d.as_bytes()[0])
        }
        (None, TableFormat::Tsv) => Ok(b'\t'),
        _ => Ok(b','),
    }
}

/// Problems of table source `i` found before running: a malformed delimiter, and `columns:`
/// that are not in the header of its CSV/TSV file when that file exists (Parquet and JSON lines
/// need DuckDB to read their schema, so they are checked when the stage runs).
fn table_problems(i: usize, t: &crate::params::Table, ctx: &ValidateContext) -> Vec<Problem> {
    let at = |f: &str| format!("sources.{i}.{f}");
    let Some(path) = ctx.existing_path(&t.notes).filter(|p| p.is_file()) else {
        return table_delimiter(t, TableFormat::Csv)
            .err()
            .map(|m| Problem::param(&at("delimiter"), m))
            .into_iter()
            .collect();
    };
    let format = match t.format {
        TableFormat::Auto => match guess_format(path) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        },
        f => f,
    };
    if !matches!(format, TableFormat::Csv | TableFormat::Tsv) {
        return Vec::new();
    }
    let delim = match table_delimiter(t, format) {
        Ok(d) => d,
        Err(m) => return vec![Problem::param(&at("delimiter"), m)],
    };
    // An unreadable header is reported, with the file's own words, when the stage runs.
    let Ok(cols) = read_header(path, delim) else { return Vec::new() };
    let file = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into());
    let expected: Vec<&str> = [Some(&t.columns.text), t.columns.id.as_ref(), t.columns.category.as_ref()]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let named = read::is_header(&cols, &expected);
    // A header that is one field holding another delimiter is most likely a semicolon- or
    // tab-separated export read with `,`: one problem at `delimiter`, not one per column.
    let other = if named { None } else { read::other_delimiter(&cols, delim) };
    if let Some(o) = other
        && let Ok(split) = read_header(path, o)
        && read::is_header(&split, &expected)
    {
        let found: Vec<String> =
            expected.iter().filter(|e| split.iter().any(|c| c == *e)).map(|e| format!("`{e}`")).collect();
        return vec![
            Problem::param(
                &at("delimiter"),
                format!(
                    "the header of {file} is split on {} but contains {}: wrong delimiter?",
                    read::show_delim(delim),
                    read::show_delim(o)
                ),
            )
            .help(match found.is_empty() {
                true => format!("set {} in this source", read::delimiter_param(o)),
                false => format!(
                    "set {} in this source: split on {}, line 1 has the columns {}",
                    read::delimiter_param(o),
                    read::show_delim(o),
                    found.join(", ")
                ),
            }),
        ];
    }
    [
        ("text", Some(&t.columns.text)),
        ("id", t.columns.id.as_ref()),
        ("category", t.columns.category.as_ref()),
    ]
    .into_iter()
    .filter_map(|(field, col)| {
        let col = col?;
        let param = at(&format!("columns.{field}"));
        let positions: Vec<usize> = (0..cols.len()).filter(|&k| cols[k] == *col).collect();
        match positions.len() {
            1 => return None,
            0 => {}
            n => {
                let list: Vec<String> = positions.iter().map(|k| (k + 1).to_string()).collect();
                return Some(
                    Problem::param(
                        &param,
                        format!(
                            "column `{col}` appears {n} times in the header of {file} (columns {})",
                            list.join(", ")
                        ),
                    )
                    .help("which one is meant is ambiguous: rename the others"),
                );
            }
        }
        let nearest = read::near_hint(&cols, col);
        let help = match (named, nearest) {
            (true, Some(n)) => format!(
                "{n}{} The header of {file} has: {}",
                if n.ends_with('?') { "" } else { "." },
                cols.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
            (true, None) => format!(
                "the header of {file} has: {}",
                cols.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
            (false, _) => read::not_a_header(&file, cols.len(), delim, other),
        };
        Some(Problem::param(&param, format!("column `{col}` is not in the header of {file}")).help(help))
    })
    .collect()
}

fn guess_format(path: &Path) -> Result<TableFormat, NotesError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let ext = name.rsplit('.').next().unwrap_or("");
    Ok(match ext {
        "csv" => TableFormat::Csv,
        "tsv" | "tab" => TableFormat::Tsv,
        "parquet" | "pq" => TableFormat::Parquet,
        "jsonl" | "ndjson" | "json" => TableFormat::Jsonl,
        _ => {
            return Err(NotesError::new(format!(
                "{}: cannot tell the format from the name; set `format:` (csv, tsv, parquet or jsonl)",
                path.display()
            )));
        }
    })
}

/// The DuckDB library version this crate was built with.
pub fn duckdb_version() -> String {
    let conn = Connection::open_in_memory().expect("in-memory DuckDB opens");
    conn.query_row("SELECT version()", [], |r| r.get::<_, String>(0)).expect("version() answers")
}

#[cfg(test)]
mod tests;
