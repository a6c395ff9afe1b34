//! The rows of every source, in order, through the same steps: drops by ISERROR, category and id
//! list; de-identification marks; drops of empty, short, contaminated and duplicate notes; then
//! into corpus.parquet. The per-note work runs on a rayon pool, batch by batch; everything that
//! depends on order (duplicates, the first error, counts) is decided sequentially afterwards.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use duckdb::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringBuilder};
use rayon::prelude::*;
use serde::Serialize;

use crate::NotesError;
use crate::decontam::NgramIndex;
use crate::marks::{MarkCounts, MarkTable, anon};
use crate::params::{AnonMode, Common, DeidMode, DropParams, Template};
use crate::write::CorpusWriter;
use camel_corpus::schema;

/// Why a row was dropped, in the order the checks run (a row counts for the first only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    IsError,
    Category,
    ExcludedId,
    Empty,
    TooShort,
    Contaminated,
    Duplicate,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::IsError,
        Reason::Category,
        Reason::ExcludedId,
        Reason::Empty,
        Reason::TooShort,
        Reason::Contaminated,
        Reason::Duplicate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::IsError => "iserror",
            Reason::Category => "category",
            Reason::ExcludedId => "excluded_id",
            Reason::Empty => "empty",
            Reason::TooShort => "too_short",
            Reason::Contaminated => "contaminated",
            Reason::Duplicate => "duplicate",
        }
    }
}

/// Where a listed id was met in the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not in any row read.
    No,
    /// Its row was dropped by the list (`excluded_id`).
    Excluded,
    /// Its row was read but dropped by an earlier filter (ISERROR, category).
    DroppedEarlier,
}

/// The ids of an exclusion list, each remembering where the source had it.
pub enum IdList {
    /// MIMIC-III ROW_IDs, compared as integers (as CAMEL's `int(line)` did).
    Ints(HashMap<i64, Seen>),
    Strings(HashMap<String, Seen>),
}

impl IdList {
    pub fn len(&self) -> usize {
        match self {
            IdList::Ints(m) => m.len(),
            IdList::Strings(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count(&self, state: Seen) -> usize {
        match self {
            IdList::Ints(m) => m.values().filter(|&&v| v == state).count(),
            IdList::Strings(m) => m.values().filter(|&&v| v == state).count(),
        }
    }

    /// Listed ids whose rows the list dropped.
    pub fn matched(&self) -> usize {
        self.count(Seen::Excluded)
    }

    /// Listed ids whose rows an earlier filter dropped first.
    pub fn dropped_earlier(&self) -> usize {
        self.count(Seen::DroppedEarlier)
    }

    /// Records that `id`'s row was read but dropped before the list was consulted.
    fn seen_before(&mut self, id: &str) {
        let slot = match self {
            IdList::Ints(m) => id.trim().parse::<i64>().ok().and_then(|v| m.get_mut(&v)),
            IdList::Strings(m) => m.get_mut(id.trim()),
        };
        if let Some(s) = slot
            && *s == Seen::No
        {
            *s = Seen::DroppedEarlier;
        }
    }

    /// Up to `n` ids the source never had, smallest first.
    pub fn absent_sample(&self, n: usize) -> Vec<String> {
        match self {
            IdList::Ints(m) => {
                let mut v: Vec<i64> = m.iter().filter(|(_, s)| **s == Seen::No).map(|(k, _)| *k).collect();
                v.sort_unstable();
                v.into_iter().take(n).map(|i| i.to_string()).collect()
            }
            IdList::Strings(m) => {
                let mut v: Vec<&String> = m.iter().filter(|(_, s)| **s == Seen::No).map(|(k, _)| k).collect();
                v.sort();
                v.into_iter().take(n).cloned().collect()
            }
        }
    }
}

/// The counts of one source, as stats.json reports them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SourceStats {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The stage inputs read (by their `inputs:` names) and their sizes in bytes.
    pub inputs: BTreeMap<String, u64>,
    pub rows_read: u64,
    pub rows_written: u64,
    pub dropped: BTreeMap<&'static str, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<ExcludeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marks: Option<MarkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anon_replaced: Option<u64>,
    /// Bytes of text written (prefixes included).
    pub text_bytes_written: u64,
    /// Notes written with an empty text (when `drop.empty` is off): a warning says so.
    #[serde(skip_serializing_if = "is_zero")]
    pub empty_written: u64,
    /// Rows written per category (the category as in the file; "" for none).
    pub categories_written: BTreeMap<String, u64>,
    /// Files of an i2b2 directory that are neither .txt nor .xml.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_skipped: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ExcludeStats {
    pub input: String,
    pub blake3: String,
    /// Distinct ids in the list.
    pub listed: u64,
    /// Listed ids whose rows the list dropped.
    pub matched: u64,
    /// Listed ids whose rows were read but dropped by an earlier filter (category, ISERROR).
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped_earlier: u64,
    /// Listed ids the source does not have (a warning says so).
    pub absent: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MarkStats {
    /// Every `[** … **]` mark found.
    pub marks: u64,
    /// Marks replaced by each tag.
    pub tags: BTreeMap<String, u64>,
    pub kept_date: u64,
    pub kept_numeric_span: u64,
    pub kept_month: u64,
    pub removed_empty: u64,
    /// Marks no rule knew (kept or tagged, per `marks.unknown`).
    pub unknown: u64,
}

/// What all sources share while the corpus is built.
pub struct Pipeline<'a> {
    pub drop: &'a DropParams,
    pub marks: &'a MarkTable,
    pub decontam: Option<(&'a NgramIndex, u32)>,
    pub pool: &'a rayon::ThreadPool,
    pub writer: CorpusWriter,
    pub out: OutBuffer,
    seen: HashSet<[u8; 16]>,
    /// For the decontamination report: (source, id) of dropped notes, and notes per set.
    pub contaminated_ids: Vec<String>,
    pub contaminated_per_set: Vec<u64>,
}

impl<'a> Pipeline<'a> {
    pub fn new(
        drop: &'a DropParams,
        marks: &'a MarkTable,
        decontam: Option<(&'a NgramIndex, u32)>,
        sets: usize,
        pool: &'a rayon::ThreadPool,
        writer: CorpusWriter,
    ) -> Self {
        Pipeline {
            drop,
            marks,
            decontam,
            pool,
            writer,
            out: OutBuffer::new(),
            seen: HashSet::new(),
            contaminated_ids: Vec::new(),
            contaminated_per_set: vec![0; sets],
        }
    }

    pub fn finish(mut self) -> Result<(), NotesError> {
        self.out.flush(&mut self.writer)?;
        self.writer.finish()
    }
}

/// One source being read.
pub struct SourceRun<'a> {
    pub common: Common<'a>,
    pub categories: Option<HashSet<String>>,
    /// The listed categories (as in `categories`) some row read had: a listed one no row has
    /// is a warning.
    pub categories_seen: HashSet<String>,
    pub exclude: Option<IdList>,
    pub stats: SourceStats,
    pub mark_counts: MarkCounts,
    /// Rows read so far from the current file (for row numbers in errors).
    pub file_rows: u64,
    /// The inputs that yielded no rows (a header and nothing else): a warning each.
    pub empty_inputs: Vec<String>,
}

impl<'a> SourceRun<'a> {
    pub fn new(common: Common<'a>, exclude: Option<IdList>, marks: &MarkTable) -> Self {
        let categories =
            common.categories.map(|c| c.iter().map(|s| s.trim().to_lowercase()).collect::<HashSet<_>>());
        let stats = SourceStats {
            name: common.name.clone(),
            kind: common.kind.to_string(),
            dropped: Reason::ALL.iter().map(|r| (r.name(), 0)).collect(),
            ..Default::default()
        };
        SourceRun {
            common,
            categories,
            categories_seen: HashSet::new(),
            exclude,
            stats,
            mark_counts: marks.counts(),
            file_rows: 0,
            empty_inputs: Vec::new(),
        }
    }

    /// Whether the source wants rows of `category` at all (to skip whole MIMIC-IV files).
    pub fn wants_category(&self, category: &str) -> bool {
        self.categories.as_ref().is_none_or(|c| c.contains(&category.trim().to_lowercase()))
    }
}

/// The category column of a batch: per row, one value for the whole batch, or none.
pub enum Category<'b> {
    Column(&'b StringArray),
    Const(&'b str),
    None,
}

impl Category<'_> {
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            Category::Column(c) => c.is_valid(i).then(|| c.value(i)),
            Category::Const(s) => Some(s),
            Category::None => None,
        }
    }
}

/// A batch of rows from one file.
pub struct Rows<'b> {
    pub file: &'b Path,
    pub id: Option<&'b StringArray>,
    pub category: Category<'b>,
    pub text: &'b StringArray,
    pub iserror: Option<&'b StringArray>,
    /// Compare ids as integers (MIMIC-III ROW_ID).
    pub int_ids: bool,
}

fn opt(a: Option<&StringArray>, i: usize) -> Option<&str> {
    a.and_then(|a| a.is_valid(i).then(|| a.value(i)))
}

struct RowOut<'t> {
    body: Cow<'t, str>,
    counts: Option<MarkCounts>,
    anon: u64,
    drop: Option<Reason>,
    hash: Option<[u8; 16]>,
    sets: u64,
}

/// Runs one batch through every step and queues the kept rows for writing.
pub fn process(p: &mut Pipeline<'_>, s: &mut SourceRun<'_>, rows: &Rows<'_>) -> Result<(), NotesError> {
    let n = rows.text.len();
    let first_row = s.file_rows;
    s.file_rows += n as u64;
    s.stats.rows_read += n as u64;

    // 1. Cheap, order-free checks, and ids.
    let mut pre: Vec<Option<Reason>> = Vec::with_capacity(n);
    let mut ids: Vec<Option<Cow<'_, str>>> = Vec::with_capacity(n);
    for i in 0..n {
        let id = match rows.id {
            Some(col) => opt(Some(col), i).map(Cow::Borrowed),
            None => Some(Cow::Owned((first_row + i as u64 + 1).to_string())),
        };
        let mut reason = None;
        if opt(rows.iserror, i).is_some_and(|e| e.trim() == "1") {
            reason = Some(Reason::IsError);
        }
        if let Some(cats) = &s.categories {
            // Noted for every row read (ISERROR ones too): "matched no row" must mean none.
            match rows.category.get(i).map(|c| c.trim().to_lowercase()).filter(|c| cats.contains(c)) {
                Some(c) => {
                    s.categories_seen.insert(c);
                }
                None if reason.is_none() => reason = Some(Reason::Category),
                None => {}
            }
        }
        if reason.is_some()
            && let Some(list) = &mut s.exclude
            && let Some(id) = id.as_deref()
        {
            list.seen_before(id);
        }
        if reason.is_none()
            && let Some(list) = &mut s.exclude
        {
            let hit = match list {
                IdList::Ints(m) => {
                    let raw = id.as_deref().unwrap_or("");
                    let v: i64 = raw.trim().parse().map_err(|_| {
                        NotesError::new(format!(
                            "{}: data row {}: the id is {}, not an integer",
                            rows.file.display(),
                            first_row + i as u64 + 1,
                            if raw.trim().is_empty() { "empty" } else { "something else" }
                        ))
                    })?;
                    m.get_mut(&v)
                }
                IdList::Strings(m) => id.as_deref().and_then(|k| m.get_mut(k.trim())),
            };
            if let Some(seen) = hit {
                *seen = Seen::Excluded;
                reason = Some(Reason::ExcludedId);
            }
        } else if rows.int_ids && reason.is_none() {
            // Without a list, MIMIC-III ROW_IDs are still checked to be integers.
            let raw = id.as_deref().unwrap_or("");
            if raw.trim().parse::<i64>().is_err() {
                return Err(NotesError::new(format!(
                    "{}: data row {}: ROW_ID is {}, not an integer",
                    rows.file.display(),
                    first_row + i as u64 + 1,
                    if raw.trim().is_empty() { "empty" } else { "something else" }
                )));
            }
        }
        pre.push(reason);
        ids.push(id);
    }

    // 2. The per-note work, in parallel.
    let c = &s.common;
    let deid = c.deid == DeidMode::Tags;
    let anon_on = c.anon == AnonMode::Tag;
    let prefix: &Template = c.prefix;
    let source = c.name.as_str();
    let marks = p.marks;
    let drop = p.drop;
    let decontam = p.decontam;
    let ids_ref = &ids;
    let pre_ref = &pre;
    let results: Vec<Result<Option<RowOut<'_>>, usize>> = p.pool.install(|| {
        (0..n)
            .into_par_iter()
            .with_min_len(16)
            .map(|i| {
                if pre_ref[i].is_some() {
                    return Ok(None);
                }
                let text = opt(Some(rows.text), i).unwrap_or("");
                let mut body: Cow<'_, str> = Cow::Borrowed(text);
                let mut counts = None;
                if deid {
                    let mut cnt = marks.counts();
                    let mut out = String::with_capacity(text.len());
                    match marks.convert(text, &mut out, &mut cnt) {
                        Ok(true) => body = Cow::Owned(out),
                        Ok(false) => {}
                        Err(u) => return Err(u.offset),
                    }
                    counts = Some(cnt);
                }
                let mut anon_n = 0;
                if anon_on && body.contains("___") {
                    let mut out = String::with_capacity(body.len() + 64);
                    anon_n = anon(&body, &mut out);
                    body = Cow::Owned(out);
                }
                let mut r = RowOut { body, counts, anon: anon_n, drop: None, hash: None, sets: 0 };
                if drop.empty && r.body.trim().is_empty() {
                    r.drop = Some(Reason::Empty);
                } else if drop.min_chars > 0 && (r.body.chars().count() as u64) < drop.min_chars {
                    r.drop = Some(Reason::TooShort);
                } else if let Some((ix, min)) = decontam {
                    let sh = ix.shared(&r.body);
                    if sh.grams >= min {
                        r.drop = Some(Reason::Contaminated);
                        r.sets = sh.sets;
                    }
                }
                if r.drop.is_none() && drop.duplicates {
                    let mut h = blake3::Hasher::new();
                    let mut pre_text = String::new();
                    prefix.render_into(
                        &mut pre_text,
                        source,
                        ids_ref[i].as_deref().unwrap_or(""),
                        rows.category.get(i).unwrap_or(""),
                    );
                    h.update(pre_text.as_bytes());
                    h.update(r.body.as_bytes());
                    let mut k = [0u8; 16];
                    k.copy_from_slice(&h.finalize().as_bytes()[..16]);
                    r.hash = Some(k);
                }
                Ok(Some(r))
            })
            .collect()
    });

    // 3. In order: errors, duplicates, counts, output.
    for (i, res) in results.into_iter().enumerate() {
        if let Some(r) = pre[i] {
            *s.stats.dropped.get_mut(r.name()).unwrap() += 1;
            continue;
        }
        let r = match res {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(offset) => {
                return Err(NotesError::new(format!(
                    "{}: data row {} (id {}): a de-identification mark at character {} matches no rule of the \
                     table (`marks.unknown: error`); add its label to `marks.table`, or set `marks.unknown` to \
                     `keep` or `tag:<TAG>`",
                    rows.file.display(),
                    first_row + i as u64 + 1,
                    ids[i].as_deref().unwrap_or("none"),
                    rows.text.value(i)[..offset].chars().count()
                )));
            }
        };
        if let Some(cnt) = &r.counts {
            s.mark_counts.add(cnt);
        }
        if anon_on {
            *s.stats.anon_replaced.get_or_insert(0) += r.anon;
        }
        let mut reason = r.drop;
        if reason.is_none()
            && let Some(h) = r.hash
            && !p.seen.insert(h)
        {
            reason = Some(Reason::Duplicate);
        }
        if let Some(reason) = reason {
            *s.stats.dropped.get_mut(reason.name()).unwrap() += 1;
            if reason == Reason::Contaminated {
                if p.contaminated_ids.len() < 1000 {
                    p.contaminated_ids.push(format!("{}:{}", source, ids[i].as_deref().unwrap_or("")));
                }
                for (k, n) in p.contaminated_per_set.iter_mut().enumerate() {
                    if r.sets & (1 << k) != 0 {
                        *n += 1;
                    }
                }
            }
            continue;
        }
        let id = ids[i].as_deref();
        let category = rows.category.get(i);
        let written = p.out.push(source, id, category, prefix, &r.body);
        s.stats.rows_written += 1;
        if r.body.trim().is_empty() {
            s.stats.empty_written += 1;
        }
        s.stats.text_bytes_written += written as u64;
        match s.stats.categories_written.get_mut(category.unwrap_or("")) {
            Some(n) => *n += 1,
            None => {
                s.stats.categories_written.insert(category.unwrap_or("").to_string(), 1);
            }
        }
        if p.out.is_full() {
            p.out.flush(&mut p.writer)?;
        }
    }
    Ok(())
}

/// Kept rows waiting to be written, flushed every 8,192 rows or 64 MB of text, whichever comes
/// first: the boundaries depend on the kept rows alone, so the Parquet bytes do too.
pub struct OutBuffer {
    source: StringBuilder,
    id: StringBuilder,
    category: StringBuilder,
    text: StringBuilder,
    rows: usize,
    bytes: usize,
}

const FLUSH_ROWS: usize = 8192;
const FLUSH_BYTES: usize = 64 << 20;

impl OutBuffer {
    fn new() -> Self {
        OutBuffer {
            source: StringBuilder::new(),
            id: StringBuilder::new(),
            category: StringBuilder::new(),
            text: StringBuilder::with_capacity(FLUSH_ROWS, FLUSH_BYTES / 4),
            rows: 0,
            bytes: 0,
        }
    }

    /// Appends a row; returns the bytes of its text.
    fn push(
        &mut self,
        source: &str,
        id: Option<&str>,
        category: Option<&str>,
        prefix: &Template,
        body: &str,
    ) -> usize {
        use std::fmt::Write;
        self.source.append_value(source);
        self.id.append_option(id);
        self.category.append_option(category);
        let before = self.text.values_slice().len();
        prefix.render_into(&mut self.text, source, id.unwrap_or(""), category.unwrap_or(""));
        let _ = self.text.write_str(body);
        self.text.append_value("");
        let n = self.text.values_slice().len() - before;
        self.rows += 1;
        self.bytes += n;
        n
    }

    fn is_full(&self) -> bool {
        self.rows >= FLUSH_ROWS || self.bytes >= FLUSH_BYTES
    }

    pub fn flush(&mut self, w: &mut CorpusWriter) -> Result<(), NotesError> {
        if self.rows == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.source.finish()),
            Arc::new(self.id.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.text.finish()),
        ];
        let batch = RecordBatch::try_new(schema(), cols)
            .map_err(|e| NotesError::new(format!("cannot build a batch of the corpus: {e}")))?;
        self.rows = 0;
        self.bytes = 0;
        w.write(batch)
    }
}

/// MarkCounts into the stats' shape.
pub fn mark_stats(c: &MarkCounts, table: &MarkTable) -> MarkStats {
    MarkStats {
        marks: c.total(),
        tags: c.per_tag(table),
        kept_date: c.kept_date,
        kept_numeric_span: c.kept_numeric_span,
        kept_month: c.kept_month,
        removed_empty: c.removed_empty,
        unknown: c.unknown,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
