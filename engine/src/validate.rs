//! The checks a stage kind makes before anything runs.
//!
//! Much of what can go wrong with a stage is decidable from the pipeline file and the files it
//! names: a value out of range, an endpoint the PHI guard will refuse, an input bound to a file
//! where a directory is needed, a column that is not in a table's header. Found at run time,
//! such a mistake costs every upstream stage's run first (and exits 1); found here, it is a
//! pipeline error at its line (exit 2) and nothing runs. Each kind declares its own checks in
//! [`crate::Stage::validate`], next to its params; this module holds what those checks get to
//! see ([`ValidateContext`]), what they return ([`Problem`]), and the helpers they share.
//!
//! The checks stay cheap: params, the pipeline's `allowed_endpoints`, what each upstream output
//! is, and, for input files that already exist, their metadata or a header line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The longest stage name: a stage's name becomes file names in the workspace (`out/NAME`,
/// `logs/NAME.log`, `state/NAME.json`, `.NAME.PID` while its link is replaced), and most
/// filesystems allow 255 bytes per name; 200 leaves room for those affixes.
pub const MAX_STAGE_NAME: usize = 200;

/// What an input of the stage being validated is bound to.
#[derive(Clone, Debug)]
pub enum InputInfo {
    /// A path outside the workspace. It may not exist yet (a plan for `camel status`).
    Path(PathBuf),
    /// Output `output` of stage `stage`, which is `what`.
    Output { stage: String, output: String, what: OutputKind },
}

/// What [`crate::Stage::validate`] may look at.
pub struct ValidateContext<'a> {
    pub(crate) stage: &'a str,
    pub(crate) inputs: BTreeMap<String, InputInfo>,
    pub(crate) work_dir: &'a Path,
    pub(crate) allowed_endpoints: &'a [String],
}

impl<'a> ValidateContext<'a> {
    /// A context for a kind's unit tests: inputs are added with [`ValidateContext::with_input`].
    pub fn for_test(stage: &'a str, work_dir: &'a Path, allowed_endpoints: &'a [String]) -> Self {
        ValidateContext { stage, inputs: BTreeMap::new(), work_dir, allowed_endpoints }
    }

    pub fn with_input(mut self, name: impl Into<String>, input: InputInfo) -> Self {
        self.inputs.insert(name.into(), input);
        self
    }

    pub fn stage(&self) -> &str {
        self.stage
    }

    pub fn input(&self, name: &str) -> Option<&InputInfo> {
        self.inputs.get(name)
    }

    /// The names of the inputs the stage is given, sorted.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.keys().map(String::as_str)
    }

    /// The path of input `name` when it is a file or directory that exists now (an upstream
    /// output does not exist before its stage runs).
    pub fn existing_path(&self, name: &str) -> Option<&Path> {
        match self.inputs.get(name)? {
            InputInfo::Path(p) if p.exists() => Some(p),
            _ => None,
        }
    }

    /// The pipeline file's directory: relative paths in params are relative to it.
    pub fn work_dir(&self) -> &Path {
        self.work_dir
    }

    /// The pipeline's `allowed_endpoints`.
    pub fn allowed_endpoints(&self) -> &[String] {
        self.allowed_endpoints
    }

    /// What input `name` is, when it can be known before running: an upstream output's
    /// declared kind, or an existing path's.
    pub fn input_kind(&self, name: &str) -> Option<OutputKind> {
        match self.inputs.get(name)? {
            InputInfo::Output { what, .. } => Some(*what),
            InputInfo::Path(p) if p.is_dir() => Some(OutputKind::Dir),
            InputInfo::Path(p) if p.exists() => Some(OutputKind::File),
            InputInfo::Path(_) => None,
        }
    }

    /// A problem when input `name` is known to be a file although the stage needs a directory;
    /// `what` says which directory ("the token dataset directory").
    pub fn expect_dir(&self, name: &str, what: &str, help: &str) -> Option<Problem> {
        (self.input_kind(name) == Some(OutputKind::File)).then(|| {
            Problem::input(name, format!("{} is a file, but `{name}` must be {what}", self.describe(name)))
                .help(help)
        })
    }

    /// A problem when input `name` is known to be a directory although the stage needs a file.
    pub fn expect_file(&self, name: &str, what: &str, help: &str) -> Option<Problem> {
        (self.input_kind(name) == Some(OutputKind::Dir)).then(|| {
            Problem::input(
                name,
                format!("{} is a directory, but `{name}` must be {what}", self.describe(name)),
            )
            .help(help)
        })
    }

    /// How input `name` is bound, for messages: `tokenize.tokens (tokens.bin)`, or its path.
    fn describe(&self, name: &str) -> String {
        match self.inputs.get(name) {
            Some(InputInfo::Output { stage, output, .. }) => format!("`{stage}.{output}`"),
            Some(InputInfo::Path(p)) => format!("`{}`", p.display()),
            None => format!("`{name}`"),
        }
    }
}

/// One thing a kind's validation found wrong. `at` is the path of the offending node below the
/// stage (`["params", "distributed", "nproc_per_node"]`, `["inputs", "tokens"]`), so that the
/// error points at its line; the engine adds the file, the stage and the rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    /// A problem with the param at dotted path `param` (`distributed.nproc_per_node`).
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        let mut at = vec!["params".to_string()];
        at.extend(param.split('.').filter(|s| !s.is_empty()).map(str::to_string));
        Problem { at, message: message.into(), help: None }
    }

    /// A problem with input `name`.
    pub fn input(name: &str, message: impl Into<String>) -> Self {
        Problem { at: vec!["inputs".into(), name.into()], message: message.into(), help: None }
    }

    /// A problem with the stage as a whole.
    pub fn stage(message: impl Into<String>) -> Self {
        Problem { at: Vec::new(), message: message.into(), help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A problem when `value` of param `param` is outside `min..=max`; `unit` names what is counted
/// ("a whole number", "seconds"), `note` adds context ("CAMEL used 2048").
pub fn in_range<T: PartialOrd + Display>(
    param: &str,
    value: T,
    min: T,
    max: Option<T>,
    note: &str,
) -> Option<Problem> {
    let below = value < min;
    let above = max.as_ref().is_some_and(|m| value > *m);
    if !below && !above {
        return None;
    }
    let range = match &max {
        Some(m) => format!("from {min} to {m}"),
        None => format!("at least {min}"),
    };
    let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
    Some(Problem::param(param, format!("`{param}` is {value}; it must be {range}{note}")))
}

/// The numeric params outside the ranges the kind's params schema declares (its `range`
/// attributes: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`), found by walking
/// `params` (the parsed params as JSON) beside `schema` (its JSON Schema, `$ref`s into `$defs`
/// followed). `camel kinds` prints these ranges, so every kind gets them checked before anything
/// runs, whether or not its own validation repeats them.
pub fn schema_range_problems(schema: &serde_json::Value, params: &serde_json::Value) -> Vec<Problem> {
    let mut out = Vec::new();
    walk_ranges(schema, schema, params, &mut Vec::new(), &mut out);
    out
}

fn walk_ranges(
    root: &serde_json::Value,
    node: &serde_json::Value,
    value: &serde_json::Value,
    path: &mut Vec<String>,
    out: &mut Vec<Problem>,
) {
    use serde_json::Value as J;
    let node = match node.get("$ref").and_then(J::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => match root.get("$defs").and_then(|d| d.get(name)) {
            Some(n) => n,
            None => return,
        },
        None => node,
    };
    for branch in ["anyOf", "oneOf", "allOf"] {
        if let Some(J::Array(alts)) = node.get(branch) {
            for alt in alts {
                walk_ranges(root, alt, value, path, out);
            }
        }
    }
    match value {
        J::Number(n) => {
            let Some(v) = n.as_f64() else { return };
            let bound = |k: &str| node.get(k).and_then(J::as_f64);
            let broken = [
                (bound("minimum"), "at least", v < bound("minimum").unwrap_or(f64::NEG_INFINITY)),
                (bound("maximum"), "at most", v > bound("maximum").unwrap_or(f64::INFINITY)),
                (
                    bound("exclusiveMinimum"),
                    "greater than",
                    v <= bound("exclusiveMinimum").unwrap_or(f64::NEG_INFINITY),
                ),
                (
                    bound("exclusiveMaximum"),
                    "less than",
                    v >= bound("exclusiveMaximum").unwrap_or(f64::INFINITY),
                ),
            ];
            if let Some((Some(b), what, _)) = broken.into_iter().find(|(b, _, bad)| b.is_some() && *bad) {
                let name = path.join(".");
                out.push(Problem::param(&name, format!("`{name}` is {n}; it must be {what} {b}")));
            }
        }
        J::Object(map) => {
            let Some(J::Object(props)) = node.get("properties") else { return };
            for (k, v) in map {
                if let Some(sub) = props.get(k) {
                    path.push(k.clone());
                    walk_ranges(root, sub, v, path, out);
                    path.pop();
                }
            }
        }
        J::Array(items) => {
            let Some(sub) = node.get("items") else { return };
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                walk_ranges(root, sub, v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Collects the `Some`s of `checks` into the result [`crate::Stage::validate`] returns.
pub fn collect(checks: impl IntoIterator<Item = Option<Problem>>) -> Result<(), Vec<Problem>> {
    let problems: Vec<Problem> = checks.into_iter().flatten().collect();
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The closest of `candidates` to `word`, compared without case and `_`/`-`/space (a column
/// `NOTE_TXT` for `NOTE_TEXT`, `note text` for `NOTE_TEXT`); `None` when nothing is close.
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let norm =
        |s: &str| s.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).collect::<String>().to_lowercase();
    let w = norm(word);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &norm(c)), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Whether an output is a file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    File,
    Dir,
    /// Not declared (a `command` stage's output other than `.` or `DIR/`).
    Unknown,
}

/// serde's type names in human words: "expected u64" says "expected a whole number ≥ 0", with
/// the range of the integer type; "expected struct RawPipeline" says what a pipeline file is.
pub fn human_types(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u32", "expected a whole number from 0 to 4294967295"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected usize", "expected a whole number ≥ 0"),
        ("expected i32", "expected a whole number from -2147483648 to 2147483647"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        (
            "expected struct RawPipeline",
            "expected a mapping: a pipeline file has `name:` and `stages:` (each stage a mapping \
             with `kind:`, `inputs:` and `params:`), as in pipelines/demo.yaml",
        ),
    ];
    let mut out = message.to_string();
    for (from, to) in WORDS {
        // Whole words only: `expected u64` must not rewrite `expected u640`.
        if let Some(i) = out.find(from) {
            let end = i + from.len();
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(i..end, to);
            }
        }
    }
    if let Some(i) = out.find("expected struct ") {
        let end = out[i + 16..].find(|c: char| !c.is_ascii_alphanumeric()).map_or(out.len(), |e| i + 16 + e);
        out.replace_range(i..end, "expected a mapping of fields");
    }
    cap_quoted(&out)
}

/// The longest echoed value kept in a message; serde quotes whole values (a 1 MB key, a note
/// pasted by mistake), which must not flood the terminal.
pub const MAX_ECHO: usize = 200;

/// `message` with every quoted value (between `"` or backticks) longer than [`MAX_ECHO`]
/// characters cut there, followed by "… (N characters)".
pub fn cap_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(4 * MAX_ECHO));
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' && c != '`' {
            continue;
        }
        let mut inner = String::new();
        let mut closed = false;
        for d in chars.by_ref() {
            if d == c {
                closed = true;
                break;
            }
            inner.push(d);
        }
        let n = inner.chars().count();
        if n > MAX_ECHO {
            out.extend(inner.chars().take(MAX_ECHO));
            out.push_str(&format!("… ({n} characters)"));
        } else {
            out.push_str(&inner);
        }
        if closed {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_read_as_words() {
        assert_eq!(
            human_types("invalid type: string \"x\", expected u64"),
            "invalid type: string \"x\", expected a whole number ≥ 0"
        );
        assert_eq!(human_types("invalid type: map, expected f64"), "invalid type: map, expected a number");
        assert!(
            human_types("invalid type: sequence, expected struct RawPipeline")
                .contains("expected a mapping: a pipeline file has `name:`")
        );
        assert_eq!(
            human_types("invalid type: string, expected struct DistParams"),
            "invalid type: string, expected a mapping of fields"
        );
        assert_eq!(human_types("expected a boolean"), "expected a boolean");
    }

    #[test]
    fn long_echoes_are_cut() {
        let long = "k".repeat(5000);
        let m = cap_quoted(&format!("invalid type: string \"{long}\", expected u64"));
        assert!(m.len() < 300, "{m}");
        assert!(m.contains("… (5000 characters)\", expected u64"), "{m}");
        assert_eq!(cap_quoted("a `short` one"), "a `short` one");
    }

    #[test]
    fn the_nearest_column_ignores_case_and_separators() {
        assert_eq!(nearest("NOTE_TXT", ["ROW_ID", "NOTE_TEXT"]), Some("NOTE_TEXT"));
        assert_eq!(nearest("note text", ["ROW_ID", "NOTE_TEXT"]), Some("NOTE_TEXT"));
        assert_eq!(nearest("zzzz", ["ROW_ID", "NOTE_TEXT"]), None);
    }

    #[test]
    fn schema_ranges_are_checked_through_refs_options_and_lists() {
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "notes": {"type": "integer", "minimum": 1},
                "bytes": {"type": ["integer", "null"], "minimum": 1},
                "lr": {"type": "number", "exclusiveMinimum": 0.0},
                "dist": {"anyOf": [{"$ref": "#/$defs/Dist"}, {"type": "null"}]},
                "sizes": {"type": "array", "items": {"type": "integer", "maximum": 8}}
            },
            "$defs": {"Dist": {"type": "object", "properties": {"nproc": {"type": "integer", "minimum": 1}}}}
        });
        let ok =
            serde_json::json!({"notes": 1, "bytes": null, "lr": 0.1, "dist": {"nproc": 2}, "sizes": [8]});
        assert_eq!(schema_range_problems(&schema, &ok), vec![]);
        let bad =
            serde_json::json!({"notes": 0, "bytes": 0, "lr": 0.0, "dist": {"nproc": 0}, "sizes": [1, 9]});
        let msgs: Vec<String> = schema_range_problems(&schema, &bad).into_iter().map(|p| p.message).collect();
        assert_eq!(
            msgs,
            [
                "`bytes` is 0; it must be at least 1",
                "`dist.nproc` is 0; it must be at least 1",
                "`lr` is 0.0; it must be greater than 0",
                "`notes` is 0; it must be at least 1",
                "`sizes.1` is 9; it must be at most 8",
            ]
        );
    }

    #[test]
    fn ranges_name_the_param_and_the_bounds() {
        let p = in_range("block_size", 0u64, 1, Some(10), "").unwrap();
        assert_eq!(p.at, ["params", "block_size"]);
        assert_eq!(p.message, "`block_size` is 0; it must be from 1 to 10");
        assert!(in_range("x", 5u64, 1, None, "").is_none());
    }
}
