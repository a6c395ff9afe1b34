//! The params of `kind: notes`, as written under `params:` (see docs/notes.md).
//!
//! Everything that can be checked without reading a file is checked here, so that a mistake is
//! reported by `camel run`/`status` before anything runs (exit 2), at the param's path.

use std::num::NonZeroU32;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};

use crate::marks::{Spacing, UnknownPolicy};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotesParams {
    /// Where the notes come from; the corpus holds them in this order.
    #[serde(deserialize_with = "de_sources")]
    pub sources: Vec<Source>,
    /// How `deid: tags` converts MIMIC-III `[** … **]` marks.
    #[serde(default)]
    pub marks: MarksParams,
    /// Optional drops (CAMEL dropped nothing but the filter list).
    #[serde(default)]
    pub drop: DropParams,
    /// Drop notes that share word n-grams with evaluation sets.
    #[serde(default)]
    pub decontaminate: Option<Decontaminate>,
    /// How corpus.parquet is written.
    #[serde(default)]
    pub parquet: ParquetParams,
    /// DuckDB's worker threads (default: the machine's cores). Not hashed: it does not change the
    /// outputs.
    #[serde(default)]
    pub threads: Option<NonZeroU32>,
    /// DuckDB's memory limit (e.g. `2GB`); it spills to the stage's scratch directory beyond it.
    /// Not hashed.
    #[serde(default = "default_memory_limit", deserialize_with = "de_memory_limit")]
    pub memory_limit: String,
}

/// The params that never enter the cache key: they change speed and memory, not outputs.
pub const UNHASHED: &[&str] = &["threads", "memory_limit"];

fn default_memory_limit() -> String {
    "2GB".into()
}

fn de_memory_limit<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    let t = s.trim();
    let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim();
    let unit = t[digits.len()..].trim().to_ascii_uppercase();
    let ok = !digits.is_empty()
        && digits.parse::<f64>().is_ok_and(|v| v > 0.0)
        && ["", "B", "KB", "MB", "GB", "TB", "KIB", "MIB", "GIB", "TIB"].contains(&unit.as_str());
    if ok {
        Ok(t.to_string())
    } else {
        Err(serde::de::Error::custom(format!("`{s}` is not a memory size (e.g. 512MB, 2GB)")))
    }
}

fn de_sources<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Source>, D::Error> {
    let sources = Vec::<Source>::deserialize(d)?;
    if sources.is_empty() {
        return Err(serde::de::Error::custom("`sources` is empty: list at least one source"));
    }
    for (i, s) in sources.iter().enumerate() {
        if let Source::Mimic4(m) = s
            && m.discharge.is_none()
            && m.radiology.is_none()
        {
            return Err(serde::de::Error::custom(format!(
                "source {i} (mimic4) names neither `discharge` nor `radiology`"
            )));
        }
    }
    Ok(sources)
}

/// What kind of source this is (its fields below); every field naming a file names one of the
/// stage's `inputs:`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Source {
    Mimic3(Mimic3),
    Mimic4(Mimic4),
    I2b2(I2b2),
    Table(Table),
}

/// MIMIC-III `NOTEEVENTS.csv[.gz]`.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mimic3 {
    /// The input holding NOTEEVENTS.csv or NOTEEVENTS.csv.gz.
    pub notes: String,
    /// The `source` column's value and the source's name in stats.json (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Keep only notes of these categories (compared trimmed, any case): CATEGORY values
    /// (mimic3), `Discharge summary` and/or `Radiology` (mimic4), the `category` column's (table).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Rows with ISERROR=1: `keep` (CAMEL) or `drop`.
    #[serde(default)]
    pub iserror: IsError,
    /// Drop the notes whose id is listed in a file: ROW_ID (mimic3), note_id (mimic4), the path
    /// without extension or `DATA.PARAGRAPH` (i2b2), the `id` column or the row number (table).
    #[serde(default)]
    pub exclude: Option<Exclude>,
    /// Read at most this many rows (for quick runs).
    #[serde(default)]
    pub limit: Option<u64>,
    /// `[** … **]` marks: `keep` (CAMEL's pretraining text) or `tags`.
    #[serde(default)]
    pub deid: DeidMode,
    /// `___` → `[ANON]`: `keep` (default) or `tag`.
    #[serde(default)]
    pub anon: AnonMode,
    /// Prepended to each note: text with `{category}`, `{id}`, `{source}`; CAMEL's is the
    /// category and a newline.
    #[serde(default = "category_prefix")]
    pub prefix: Template,
}

/// MIMIC-IV-Note `discharge.csv[.gz]` and `radiology.csv[.gz]`: all discharge notes, then all
/// radiology reports.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mimic4 {
    /// The input holding discharge.csv or discharge.csv.gz (category `Discharge summary`).
    #[serde(default)]
    pub discharge: Option<String>,
    /// The input holding radiology.csv or radiology.csv.gz (category `Radiology`).
    #[serde(default)]
    pub radiology: Option<String>,
    /// The `source` column's value and the source's name in stats.json (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Keep only notes of these categories (compared trimmed, any case): CATEGORY values
    /// (mimic3), `Discharge summary` and/or `Radiology` (mimic4), the `category` column's (table).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Drop the notes whose id is listed in a file: ROW_ID (mimic3), note_id (mimic4), the path
    /// without extension or `DATA.PARAGRAPH` (i2b2), the `id` column or the row number (table).
    #[serde(default)]
    pub exclude: Option<Exclude>,
    /// Read at most this many rows (for quick runs).
    #[serde(default)]
    pub limit: Option<u64>,
    /// `[** … **]` marks: `keep` (CAMEL's pretraining text) or `tags`.
    #[serde(default)]
    pub deid: DeidMode,
    /// `___` → `[ANON]`: `keep` (default) or `tag`.
    #[serde(default)]
    pub anon: AnonMode,
    /// Prepended to each note: text with `{category}`, `{id}`, `{source}`; CAMEL's is the
    /// category and a newline.
    #[serde(default = "category_prefix")]
    pub prefix: Template,
}

/// i2b2/n2c2 notes: a directory of `.txt`/`.xml` files (sorted by path), or the SQuAD-shaped
/// JSON CAMEL read (`data[].paragraphs[].context`).
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct I2b2 {
    /// The input holding the notes: a directory of `.txt`/`.xml` files, or SQuAD-shaped JSON.
    pub notes: String,
    /// The `source` column's value and the source's name in stats.json (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// Drop the notes whose id is listed in a file: ROW_ID (mimic3), note_id (mimic4), the path
    /// without extension or `DATA.PARAGRAPH` (i2b2), the `id` column or the row number (table).
    #[serde(default)]
    pub exclude: Option<Exclude>,
    /// Read at most this many rows (for quick runs).
    #[serde(default)]
    pub limit: Option<u64>,
    /// `[** … **]` marks: `keep` (CAMEL's pretraining text) or `tags`.
    #[serde(default)]
    pub deid: DeidMode,
    /// `___` → `[ANON]`: `keep` (default) or `tag`.
    #[serde(default)]
    pub anon: AnonMode,
    /// Prepended to each note: text with `{category}`, `{id}`, `{source}`; CAMEL's is the
    /// category and a newline.
    #[serde(default)]
    pub prefix: Template,
}

/// Any table of notes: CSV, TSV, Parquet or JSON lines, with a column mapping.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The input holding the table.
    pub notes: String,
    /// The `source` column's value and the source's name in stats.json (default: the type).
    #[serde(default)]
    pub name: Option<String>,
    /// The file's format: `auto` goes by its name (.csv, .tsv, .parquet, .jsonl, optionally .gz).
    #[serde(default)]
    pub format: TableFormat,
    /// CSV only: the delimiter, one character (default `,`; `\t` for tsv).
    #[serde(default)]
    pub delimiter: Option<String>,
    /// The columns holding each note's text, and optionally its id and category.
    pub columns: Columns,
    /// Keep only notes of these categories (compared trimmed, any case): CATEGORY values
    /// (mimic3), `Discharge summary` and/or `Radiology` (mimic4), the `category` column's (table).
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Drop the notes whose id is listed in a file: ROW_ID (mimic3), note_id (mimic4), the path
    /// without extension or `DATA.PARAGRAPH` (i2b2), the `id` column or the row number (table).
    #[serde(default)]
    pub exclude: Option<Exclude>,
    /// Read at most this many rows (for quick runs).
    #[serde(default)]
    pub limit: Option<u64>,
    /// `[** … **]` marks: `keep` (CAMEL's pretraining text) or `tags`.
    #[serde(default)]
    pub deid: DeidMode,
    /// `___` → `[ANON]`: `keep` (default) or `tag`.
    #[serde(default)]
    pub anon: AnonMode,
    /// Prepended to each note: text with `{category}`, `{id}`, `{source}`; CAMEL's is the
    /// category and a newline.
    #[serde(default)]
    pub prefix: Template,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    /// The column of each note's text.
    pub text: String,
    /// The column of each note's id (default: the row number, from 1).
    #[serde(default)]
    pub id: Option<String>,
    /// The column of each note's category, for `categories` and `{category}`.
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// From the file name: .csv, .tsv/.tab, .parquet/.pq, .jsonl/.ndjson/.json (optionally .gz).
    #[default]
    Auto,
    Csv,
    Tsv,
    Parquet,
    Jsonl,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IsError {
    #[default]
    Keep,
    Drop,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeidMode {
    #[default]
    Keep,
    Tags,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AnonMode {
    #[default]
    Keep,
    Tag,
}

/// A list of ids to drop, one per line.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exclude {
    /// The input holding the list.
    pub ids: String,
    /// The list's expected blake3 (64 hex digits): another list is an error, not a silent change.
    #[serde(default, deserialize_with = "de_blake3")]
    pub blake3: Option<String>,
}

fn de_blake3<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = Option::<String>::deserialize(d)?;
    match s {
        Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(serde::de::Error::custom(format!("`{h}` is not a blake3 hash (64 hex digits)")))
        }
        other => Ok(other.map(|h| h.to_ascii_lowercase())),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MarksParams {
    /// Label → tag, tried before the built-in table, in the order written.
    #[serde(default)]
    pub table: IndexMap<String, String>,
    /// Whether CAMEL's built-in table follows `table` (default true).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// A mark no rule knows: `error` (CAMEL), `keep`, or `tag:<TAG>`.
    #[serde(default)]
    pub unknown: UnknownPolicy,
    /// `plain` replaces marks in place; `camel` joins the pieces with spaces as CAMEL did.
    #[serde(default)]
    pub spacing: Spacing,
}

fn yes() -> bool {
    true
}

impl Default for MarksParams {
    fn default() -> Self {
        MarksParams {
            table: IndexMap::new(),
            builtin: true,
            unknown: UnknownPolicy::default(),
            spacing: Spacing::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DropParams {
    /// Notes whose text (without the prefix) is empty or blank.
    #[serde(default)]
    pub empty: bool,
    /// Notes whose text has fewer characters than this (0: keep all).
    #[serde(default)]
    pub min_chars: u64,
    /// Notes whose full text (prefix included) is byte-identical to an earlier one.
    #[serde(default)]
    pub duplicates: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Decontaminate {
    /// Words per n-gram (13, as GPT-3's decontamination).
    #[serde(default = "thirteen")]
    pub ngram: NonZeroU32,
    /// A note is dropped when it shares at least this many distinct n-grams with the sets.
    #[serde(default = "one")]
    pub min_shared: NonZeroU32,
    /// The evaluation sets whose text is kept out of the corpus.
    pub sets: Vec<EvalSet>,
}

fn thirteen() -> NonZeroU32 {
    NonZeroU32::new(13).unwrap()
}

fn one() -> NonZeroU32 {
    NonZeroU32::MIN
}

/// An evaluation set: a JSON (array or lines), CSV or Parquet input and the field holding text.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvalSet {
    /// The input holding the set: JSON (an array or lines), CSV or Parquet.
    pub input: String,
    /// The field (or column) holding the text.
    pub field: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParquetParams {
    /// The codec of corpus.parquet's pages.
    #[serde(default)]
    pub compression: Compression,
    /// Rows per row group at most; a row group is also closed at `row_group_mb`.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: NonZeroU32,
    /// Megabytes per row group at most.
    #[serde(default = "default_row_group_mb")]
    pub row_group_mb: NonZeroU32,
}

impl Default for ParquetParams {
    fn default() -> Self {
        ParquetParams {
            compression: Compression::default(),
            row_group_rows: default_row_group_rows(),
            row_group_mb: default_row_group_mb(),
        }
    }
}

fn default_row_group_rows() -> NonZeroU32 {
    NonZeroU32::new(65_536).unwrap()
}

fn default_row_group_mb() -> NonZeroU32 {
    NonZeroU32::new(64).unwrap()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Zstd,
    Snappy,
    Lz4,
    None,
}

/// A prefix template: literal text with `{category}`, `{id}` and `{source}`; `{{` and `}}` write
/// braces.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Template {
    raw: String,
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Lit(String),
    Category,
    Id,
    Source,
}

fn category_prefix() -> Template {
    Template::try_from("{category}\n".to_string()).unwrap()
}

impl Template {
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn render_into(&self, out: &mut impl std::fmt::Write, source: &str, id: &str, category: &str) {
        for p in &self.pieces {
            let _ = out.write_str(match p {
                Piece::Lit(s) => s,
                Piece::Category => category,
                Piece::Id => id,
                Piece::Source => source,
            });
        }
    }
}

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(raw: String) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!(
                                    "prefix `{raw}`: `{{` is not closed (write `{{{{` for a brace)"
                                ));
                            }
                        }
                    }
                    let piece = match name.as_str() {
                        "category" => Piece::Category,
                        "id" => Piece::Id,
                        "source" => Piece::Source,
                        _ => {
                            return Err(format!(
                                "prefix `{raw}`: unknown placeholder `{{{name}}}` (use {{category}}, {{id}} or {{source}})"
                            ));
                        }
                    };
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(piece);
                }
                '}' => return Err(format!("prefix `{raw}`: lone `}}` (write `}}}}` for a brace)")),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Template { raw, pieces })
    }
}

impl Serialize for Template {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

/// Written as a string; its placeholders are checked when it is parsed.
impl schemars::JsonSchema for Template {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Template".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string"})
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Template::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What every source has, whatever its type.
pub struct Common<'a> {
    pub kind: &'static str,
    pub name: String,
    pub categories: Option<&'a [String]>,
    pub exclude: Option<&'a Exclude>,
    pub limit: Option<u64>,
    pub deid: DeidMode,
    pub anon: AnonMode,
    pub prefix: &'a Template,
}

impl Source {
    pub fn common(&self) -> Common<'_> {
        macro_rules! common {
            ($s:expr, $kind:literal, $cats:expr) => {
                Common {
                    kind: $kind,
                    name: $s.name.clone().unwrap_or_else(|| $kind.to_string()),
                    categories: $cats,
                    exclude: $s.exclude.as_ref(),
                    limit: $s.limit,
                    deid: $s.deid,
                    anon: $s.anon,
                    prefix: &$s.prefix,
                }
            };
        }
        match self {
            Source::Mimic3(s) => common!(s, "mimic3", s.categories.as_deref()),
            Source::Mimic4(s) => common!(s, "mimic4", s.categories.as_deref()),
            Source::I2b2(s) => common!(s, "i2b2", None),
            Source::Table(s) => common!(s, "table", s.categories.as_deref()),
        }
    }

    /// The inputs this source reads.
    pub fn inputs(&self) -> Vec<&str> {
        let mut v: Vec<&str> = match self {
            Source::Mimic3(s) => vec![&s.notes],
            Source::Mimic4(s) => s.discharge.iter().chain(&s.radiology).map(String::as_str).collect(),
            Source::I2b2(s) => vec![&s.notes],
            Source::Table(s) => vec![&s.notes],
        };
        if let Some(e) = self.common().exclude {
            v.push(e.ids.as_str());
        }
        v
    }
}

impl NotesParams {
    /// Each input name the params give, with the dotted path of the param that gives it
    /// (`sources.0.notes`, `sources.1.exclude.ids`, `decontaminate.sets.0.input`), in the order
    /// written.
    pub fn input_params(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for (i, s) in self.sources.iter().enumerate() {
            let mut at =
                |field: &str, input: &str| v.push((input.to_string(), format!("sources.{i}.{field}")));
            match s {
                Source::Mimic3(m) => at("notes", &m.notes),
                Source::Mimic4(m) => {
                    for (field, input) in [("discharge", &m.discharge), ("radiology", &m.radiology)] {
                        if let Some(input) = input {
                            at(field, input);
                        }
                    }
                }
                Source::I2b2(m) => at("notes", &m.notes),
                Source::Table(m) => at("notes", &m.notes),
            }
            if let Some(e) = s.common().exclude {
                at("exclude.ids", &e.ids);
            }
        }
        if let Some(d) = &self.decontaminate {
            for (j, set) in d.sets.iter().enumerate() {
                v.push((set.input.clone(), format!("decontaminate.sets.{j}.input")));
            }
        }
        v
    }

    /// Every input name the params refer to, sorted and distinct.
    pub fn input_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sources.iter().flat_map(|s| s.inputs()).map(str::to_string).collect();
        if let Some(d) = &self.decontaminate {
            v.extend(d.sets.iter().map(|s| s.input.clone()));
        }
        v.sort();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<NotesParams, String> {
        serde_yaml::from_str(y).map_err(|e| e.to_string())
    }

    #[test]
    fn minimal_params_get_camel_defaults() {
        let p = parse("sources: [{type: mimic3, notes: n}]").unwrap();
        let Source::Mimic3(m) = &p.sources[0] else { panic!() };
        assert_eq!(m.iserror, IsError::Keep);
        assert_eq!(m.deid, DeidMode::Keep);
        assert_eq!(m.anon, AnonMode::Keep);
        assert_eq!(m.prefix.pieces(), &[Piece::Category, Piece::Lit("\n".into())]);
        assert_eq!(p.marks.unknown, UnknownPolicy::Error);
        assert!(p.marks.builtin, "the built-in table is on by default");
        assert!(!p.drop.duplicates && !p.drop.empty && p.drop.min_chars == 0);
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["sources"][0]["type"], "mimic3");
        assert_eq!(v["sources"][0]["prefix"], "{category}\n");
        assert_eq!(v["marks"]["unknown"], "error");
        assert_eq!(p.input_names(), ["n"]);
    }

    #[test]
    fn inputs_are_collected_from_every_field() {
        let p = parse(
            r#"
sources:
  - {type: mimic3, notes: a, exclude: {ids: ids}}
  - {type: mimic4, discharge: d, radiology: r}
  - {type: table, notes: t, columns: {text: body}}
decontaminate: {sets: [{input: ev, field: input}]}
"#,
        )
        .unwrap();
        assert_eq!(p.input_names(), ["a", "d", "ev", "ids", "r", "t"]);
        let named = p.input_params();
        let at: Vec<(&str, &str)> = named.iter().map(|(i, a)| (i.as_str(), a.as_str())).collect();
        assert_eq!(
            at,
            [
                ("a", "sources.0.notes"),
                ("ids", "sources.0.exclude.ids"),
                ("d", "sources.1.discharge"),
                ("r", "sources.1.radiology"),
                ("t", "sources.2.notes"),
                ("ev", "decontaminate.sets.0.input"),
            ]
        );
    }

    #[test]
    fn mistakes_are_caught_while_parsing() {
        assert!(parse("sources: []").unwrap_err().contains("empty"));
        assert!(parse("sources: [{type: mimic4}]").unwrap_err().contains("neither"));
        assert!(parse("sources: [{type: mimic5, notes: n}]").unwrap_err().contains("unknown variant"));
        assert!(parse("sources: [{type: mimic3, notes: n, limt: 3}]").unwrap_err().contains("unknown field"));
        assert!(
            parse("sources: [{type: mimic3, notes: n, prefix: '{cat}'}]")
                .unwrap_err()
                .contains("placeholder")
        );
        assert!(
            parse("sources: [{type: mimic3, notes: n, exclude: {ids: x, blake3: abc}}]")
                .unwrap_err()
                .contains("blake3")
        );
        assert!(
            parse("sources: [{type: mimic3, notes: n}]\nmarks: {unknown: drop}")
                .unwrap_err()
                .contains("policy")
        );
        assert!(
            parse("sources: [{type: mimic3, notes: n}]\nmemory_limit: lots").unwrap_err().contains("memory")
        );
        assert!(parse("sources: [{type: mimic3, notes: n}]\ndecontaminate: {ngram: 0, sets: []}").is_err());
        let p = parse("sources: [{type: mimic3, notes: n}]\nmarks: {unknown: 'tag:[PHI]'}").unwrap();
        assert_eq!(p.marks.unknown, UnknownPolicy::Tag("[PHI]".into()));
    }

    #[test]
    fn templates() {
        let t = Template::try_from("{{{source}}} {id}: {category}\n".to_string()).unwrap();
        let mut s = String::new();
        t.render_into(&mut s, "mimic3", "7", "Radiology");
        assert_eq!(s, "{mimic3} 7: Radiology\n");
        assert!(Template::try_from("{category".to_string()).is_err());
        assert!(Template::try_from("a}b".to_string()).is_err());
        assert!(Template::default().is_empty());
    }
}
