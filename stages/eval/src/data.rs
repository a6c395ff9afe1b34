//! Answer sets: the systems a pipeline compares, each a column of a file bound as an input.
//!
//! Two file shapes are read, by what the JSON is:
//! - a list of records (`answers.json` of the `answer` stage, Alpaca-style files): column
//!   `output` unless the system names another field;
//! - an object of columns, each an object from row number to value (pandas' `DataFrame.to_json()`,
//!   the shape of CAMEL's `mtsamples_results.json`: `type`, `instruction`, `input`, `gpt-3.5`,
//!   `alpaca`, `clinical-alpaca`, …); rows in numeric order of their keys.
//!
//! Every set must have the same rows: where two files both carry `instruction` (and `input`), they
//! must agree row by row. A row's task type is the `type` column of the first file that has one,
//! normalised ([`task_type`]); `unknown` where none has.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use camel_engine::{StageContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One system: a name for tables and a column of an input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemSpec {
    /// The name in outputs and reports (`camel`, `gpt-3.5`, …).
    pub name: String,
    /// The input (a name under `inputs:`) holding its answers.
    pub input: String,
    /// The column or field; default `output` (an `answer` stage's `answers.json`).
    #[serde(default = "default_column")]
    pub column: String,
}

fn default_column() -> String {
    "output".into()
}

/// A loaded file: columns of optional strings, all of one length.
#[derive(Debug)]
pub struct Table {
    pub path: PathBuf,
    pub rows: usize,
    pub columns: BTreeMap<String, Vec<Option<String>>>,
}

fn bad(path: &Path, m: impl std::fmt::Display) -> StageError {
    StageError::msg(format!("{}: {m}", path.display()))
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Table {
    pub fn load(path: &Path) -> Result<Table, StageError> {
        let text =
            std::fs::read_to_string(path).map_err(StageError::io(format!("read {}", path.display())))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(path, format!("not JSON ({e})")))?;
        let mut columns: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        let rows;
        match v {
            Value::Array(items) => {
                rows = items.len();
                for (i, item) in items.iter().enumerate() {
                    let Value::Object(o) = item else {
                        return Err(bad(
                            path,
                            format!("row {i} is not an object (expected a list of records)"),
                        ));
                    };
                    for (k, v) in o {
                        columns.entry(k.clone()).or_insert_with(|| vec![None; rows])[i] = text_of(v);
                    }
                }
            }
            Value::Object(cols) => {
                let mut n = None;
                for (name, col) in cols {
                    let Value::Object(cells) = col else {
                        return Err(bad(
                            path,
                            format!(
                                "column `{name}` is not an object of rows (expected pandas' to_json() shape)"
                            ),
                        ));
                    };
                    let mut cells: Vec<(u64, Option<String>)> = cells
                        .iter()
                        .map(|(k, v)| {
                            k.parse::<u64>().map(|k| (k, text_of(v))).map_err(|_| {
                                bad(path, format!("column `{name}` has a row key {k:?} that is not a number"))
                            })
                        })
                        .collect::<Result<_, _>>()?;
                    cells.sort_by_key(|(k, _)| *k);
                    if *n.get_or_insert(cells.len()) != cells.len() {
                        return Err(bad(path, format!("column `{name}` has a different number of rows")));
                    }
                    columns.insert(name, cells.into_iter().map(|(_, v)| v).collect());
                }
                rows = n.unwrap_or(0);
            }
            _ => return Err(bad(path, "expected a JSON list of records or an object of columns")),
        }
        if rows == 0 {
            return Err(bad(path, "holds no rows"));
        }
        Ok(Table { path: path.to_path_buf(), rows, columns })
    }

    pub fn column(&self, name: &str) -> Result<&[Option<String>], StageError> {
        self.columns.get(name).map(Vec::as_slice).ok_or_else(|| {
            let have: Vec<&str> = self.columns.keys().map(String::as_str).collect();
            bad(
                &self.path,
                format!(
                    "has no column `{name}`; it has {}: set the system's `column` to one of them",
                    have.join(", ")
                ),
            )
        })
    }
}

/// The systems' answers aligned by row, with each row's instruction, input and task type.
#[derive(Debug)]
pub struct Aligned {
    pub rows: usize,
    pub instruction: Vec<String>,
    pub input: Vec<String>,
    pub types: Vec<String>,
    /// In the order the params list them.
    pub systems: Vec<(String, Vec<String>)>,
}

impl Aligned {
    pub fn system(&self, name: &str) -> Option<&[String]> {
        self.systems.iter().find(|(n, _)| n == name).map(|(_, a)| a.as_slice())
    }

    pub fn names(&self) -> Vec<String> {
        self.systems.iter().map(|(n, _)| n.clone()).collect()
    }
}

/// The distinct inputs `systems` read, in order: the kind's required inputs.
pub fn input_names(systems: &[SystemSpec]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for s in systems {
        if !v.contains(&s.input) {
            v.push(s.input.clone());
        }
    }
    v
}

/// Checks names: at least `min` systems, no name twice, `reference` (if any) among them.
pub fn check_systems(systems: &[SystemSpec], min: usize, reference: Option<&str>) -> Result<(), StageError> {
    if systems.len() < min {
        return Err(StageError::msg(format!("`systems` must list at least {min} system(s)")));
    }
    for (i, s) in systems.iter().enumerate() {
        if s.name.trim().is_empty() {
            return Err(StageError::msg(format!("`systems[{i}].name` is empty")));
        }
        if systems[..i].iter().any(|o| o.name == s.name) {
            return Err(StageError::msg(format!("`systems`: the name `{}` is used twice", s.name)));
        }
    }
    if let Some(r) = reference
        && !systems.iter().any(|s| s.name == r)
    {
        let names: Vec<&str> = systems.iter().map(|s| s.name.as_str()).collect();
        return Err(StageError::msg(format!(
            "`reference: {r}` is not one of the systems ({}): name one of them",
            names.join(", ")
        )));
    }
    Ok(())
}

/// Loads every system's answers (`limit`: the first rows only) and aligns them.
pub fn load(
    systems: &[SystemSpec],
    inputs: &BTreeMap<String, PathBuf>,
    limit: Option<usize>,
) -> Result<Aligned, StageError> {
    let mut tables: Vec<(String, Table)> = Vec::new();
    for name in input_names(systems) {
        let path =
            inputs.get(&name).ok_or_else(|| StageError::msg(format!("input `{name}` is not bound")))?;
        tables.push((name, Table::load(path)?));
    }
    let table = |input: &str| &tables.iter().find(|(n, _)| n == input).expect("loaded above").1;
    let rows = tables.iter().map(|(_, t)| t.rows).min().unwrap_or(0).min(limit.unwrap_or(usize::MAX));
    for (_, t) in &tables {
        if t.rows < rows || (limit.is_none() && t.rows != rows) {
            let (first, other) = (&tables[0].1, t);
            return Err(StageError::msg(format!(
                "{} has {} rows but {} has {}: the answer sets must be of the same instructions",
                first.path.display(),
                first.rows,
                other.path.display(),
                other.rows
            )));
        }
    }
    // Row context from the first table that has it; others must agree.
    let context = |col: &str| -> Result<Option<Vec<String>>, StageError> {
        let mut found: Option<(&Path, Vec<String>)> = None;
        for (_, t) in &tables {
            let Some(c) = t.columns.get(col) else { continue };
            let c: Vec<String> = c[..rows].iter().map(|v| v.clone().unwrap_or_default()).collect();
            match &found {
                None => found = Some((&t.path, c)),
                Some((p, f)) => {
                    if col != "type"
                        && let Some(i) = (0..rows).find(|&i| f[i].trim() != c[i].trim())
                    {
                        return Err(StageError::msg(format!(
                            "row {i}'s `{col}` differs between {} and {}: the answer sets must answer the same \
                             instructions in the same order",
                            p.display(),
                            t.path.display()
                        )));
                    }
                }
            }
        }
        Ok(found.map(|(_, c)| c))
    };
    let instruction = context("instruction")?.unwrap_or_else(|| vec![String::new(); rows]);
    let input = context("input")?.unwrap_or_else(|| vec![String::new(); rows]);
    let types = match context("type")? {
        Some(t) => t.iter().map(|t| task_type(t)).collect(),
        None => vec!["unknown".to_string(); rows],
    };
    let mut out = Vec::new();
    for s in systems {
        let col = table(&s.input).column(&s.column)?;
        out.push((s.name.clone(), col[..rows].iter().map(|v| v.clone().unwrap_or_default()).collect()));
    }
    Ok(Aligned { rows, instruction, input, types, systems: out })
}

/// Per system (in `al.systems` order), its answers that are empty or white space only (a null
/// cell reads as empty).
pub fn blank_answers(al: &Aligned) -> Vec<usize> {
    al.systems.iter().map(|(_, a)| a.iter().filter(|s| s.trim().is_empty()).count()).collect()
}

/// Logs how many answers of each system are blank, and warns (stage log and terminal) for each
/// system with blank answers in at least half of the rows: nearly always a wrong `input` or
/// `column` (the published `clinical_alpaca(ft)` column is empty), whose scores would be those
/// of empty answers. Returns [`blank_answers`].
pub fn warn_blank(ctx: &StageContext, al: &Aligned, specs: &[SystemSpec]) -> Vec<usize> {
    let blank = blank_answers(al);
    let counts: Vec<String> = al.systems.iter().zip(&blank).map(|((n, _), b)| format!("{n} {b}")).collect();
    ctx.log(&format!("empty answers of {} rows: {}", al.rows, counts.join(", ")));
    for (((name, _), &b), spec) in al.systems.iter().zip(&blank).zip(specs) {
        if b > 0 && 2 * b >= al.rows {
            ctx.warn(&format!(
                "system `{name}`: {} answers are empty (column `{}` of input `{}`); its scores are those of \
                 empty answers. Check the system's `input` and `column`",
                blank_count(b, al.rows),
                spec.column,
                spec.input
            ));
        }
    }
    blank
}

/// `all 12` or `7 of 12`.
pub fn blank_count(blank: usize, rows: usize) -> String {
    if blank == rows { format!("all {rows}") } else { format!("{blank} of {rows}") }
}

/// A task type as a grouping key: lower case, `-`/`_` as spaces, single spaces, `questioning` as
/// `question` (mtsamples_results.json spells one type several ways: `Yes/No Question`,
/// `Yes/no question`, `Yes/No Questioning`). Empty: `unknown`.
pub fn task_type(t: &str) -> String {
    let s = t.to_lowercase().replace(['-', '_'], " ");
    let words: Vec<&str> =
        s.split_whitespace().map(|w| if w == "questioning" { "question" } else { w }).collect();
    if words.is_empty() { "unknown".into() } else { words.join(" ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_file_shapes_load_and_align() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("answers.json");
        std::fs::write(&a, r#"[{"instruction": "i0", "input": "n0", "output": "a0"}, {"instruction": "i1", "output": "a1"}]"#)
            .unwrap();
        let r = dir.path().join("results.json");
        std::fs::write(
            &r,
            r#"{"type": {"1": "Yes/No Questioning", "0": "Named-Entity recognition"},
                "instruction": {"0": "i0", "1": "i1 "}, "gpt-3.5": {"0": "g0", "1": null}}"#,
        )
        .unwrap();
        let inputs: BTreeMap<String, PathBuf> =
            [("camel".into(), a.clone()), ("results".into(), r.clone())].into();
        let systems = vec![
            SystemSpec { name: "camel".into(), input: "camel".into(), column: "output".into() },
            SystemSpec { name: "gpt".into(), input: "results".into(), column: "gpt-3.5".into() },
        ];
        let al = load(&systems, &inputs, None).unwrap();
        assert_eq!(al.rows, 2);
        assert_eq!(al.types, ["named entity recognition", "yes/no question"]);
        assert_eq!(al.system("gpt").unwrap(), ["g0", ""]);
        assert_eq!(al.input, ["n0", ""]);

        let missing = vec![SystemSpec { name: "x".into(), input: "results".into(), column: "alpaca".into() }];
        let e = load(&missing, &inputs, None).unwrap_err().to_string();
        assert!(e.contains("results.json: has no column `alpaca`; it has gpt-3.5, instruction, type"), "{e}");

        std::fs::write(
            &r,
            r#"{"instruction": {"0": "i0", "1": "other"}, "gpt-3.5": {"0": "g0", "1": "g1"}}"#,
        )
        .unwrap();
        let e = load(&systems, &inputs, None).unwrap_err().to_string();
        assert!(e.contains("row 1's `instruction` differs"), "{e}");
        assert!(
            check_systems(&systems, 2, Some("gpt-4"))
                .unwrap_err()
                .to_string()
                .contains("not one of the systems")
        );
    }
}
