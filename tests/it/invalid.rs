//! Malformed pipelines: every file in `tests/pipelines/invalid/` must be rejected by `camel run`
//! and `camel status` with exit code 2 and the messages it asks for, before anything is written.
//!
//! A case is one YAML file, `NN-short-name.yaml`, whose first lines are comments:
//!
//! - `# expect: TEXT` (at least one): TEXT appears in camel's stderr. Lines that miette wraps are
//!   joined first, and the report's quotes of the pipeline's own lines are left out (they would
//!   contain these very comments). Where the error has a place, expect `NN-short-name.yaml:L:C`.
//! - `# args: ARGS`: more arguments (split on whitespace) for both commands, after the file.
//! - `# todo: TEXT`: TEXT should appear but does not yet, a known shortcoming of the engine's
//!   message. The case fails once TEXT does appear, so that the line becomes an `# expect:`.
//! - `# run-only: WHY`: only `camel run` rejects the file; `camel status` reports the problem as
//!   a stage's reason instead (missing input files, so that status works before data is there).
//! - `# with-file: NAME: LINE`: the case's directory also holds file NAME with LINE (and a
//!   newline) in it, for checks that read an input's first line (a table's header).
//! - `# known-bug: WHY`: the engine does not reject the file as it should yet. The case's
//!   failures are printed instead of failing the test, and the test fails once the case passes,
//!   so that the line is removed.
//!
//! Other comments are free, but a lower-case `# word:` is taken for a directive and must be one.
//!
//! A case that needs a valid input names its own file (`inputs: {x: NN-short-name.yaml}`): each
//! runs alone in a fresh temporary directory holding only its file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::{Run, TestContext};

const DIRECTIVES: &[&str] = &["expect", "args", "todo", "known-bug", "run-only", "with-file"];

struct Case {
    file: String,
    src: String,
    expects: Vec<String>,
    todos: Vec<String>,
    args: Vec<String>,
    known_bug: Option<String>,
    run_only: bool,
    /// Other files of the case's directory: (name, content).
    files: Vec<(String, String)>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pipelines/invalid")
}

/// Every case, sorted by file name; panics on a misnamed file or a malformed header.
fn cases() -> Vec<Case> {
    let dir = cases_dir();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut numbers = BTreeSet::new();
    files
        .into_iter()
        .map(|file| {
            assert!(valid_case_name(&file), "{file}: case files are named NN-short-name.yaml");
            assert!(numbers.insert(file[..2].to_string()), "{file}: another case has number {}", &file[..2]);
            let src = std::fs::read_to_string(dir.join(&file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
            parse_case(file, src)
        })
        .collect()
}

fn valid_case_name(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".yaml") else { return false };
    let b = stem.as_bytes();
    b.len() > 3
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b'-'
        && stem[3..].bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn parse_case(file: String, src: String) -> Case {
    let mut case = Case {
        file,
        src: String::new(),
        expects: vec![],
        todos: vec![],
        args: vec![],
        known_bug: None,
        run_only: false,
        files: vec![],
    };
    for line in src.lines().take_while(|l| l.starts_with('#')) {
        let Some((word, value)) = line.trim_start_matches('#').trim_start().split_once(':') else { continue };
        let value = value.trim().to_string();
        match word {
            "expect" => case.expects.push(value),
            "todo" => case.todos.push(value),
            "args" => case.args = value.split_whitespace().map(str::to_string).collect(),
            "known-bug" => case.known_bug = Some(value),
            "run-only" => case.run_only = true,
            "with-file" => {
                let (name, line) = value
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("{}: `# with-file: NAME: LINE`", case.file));
                case.files.push((name.to_string(), format!("{line}\n")));
            }
            w if w.bytes().all(|c| c.is_ascii_lowercase() || c == b'-') => {
                panic!("{}: unknown directive `# {w}:` (known: {})", case.file, DIRECTIVES.join(", "))
            }
            _ => {}
        }
    }
    assert!(!case.expects.is_empty(), "{}: a case needs at least one `# expect:` line", case.file);
    assert!(
        case.expects.iter().chain(&case.todos).all(|e| !e.is_empty()),
        "{}: an empty `# expect:` or `# todo:` matches anything",
        case.file
    );
    case.src = src;
    case
}

/// camel's stderr as a reader takes it in: miette's wrapped lines joined again, and without the
/// lines of the pipeline file that a report quotes (`  12 │ …`).
fn searchable(stderr: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in stderr.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let digits = trimmed.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && trimmed[digits..].starts_with(" │") {
            continue;
        }
        // The headline wraps as `  │ …`, help text as eight spaces and the rest.
        let continued = match trimmed.strip_prefix("│ ") {
            Some(rest) if indent > 0 => Some(rest),
            _ if indent >= 8 && !trimmed.starts_with(['·', '│', '╭', '╰', '├']) => Some(trimmed),
            _ => None,
        };
        match (continued, lines.last_mut()) {
            (Some(rest), Some(prev)) => {
                prev.push(' ');
                prev.push_str(rest);
            }
            _ => lines.push(line.to_string()),
        }
    }
    lines.join("\n")
}

/// Every path below `dir`, relative to it, directories included.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What a case's run found wrong (each with the command's stderr), and notes on its `# todo:`s.
struct Outcome {
    failures: Vec<String>,
    todo_notes: Vec<String>,
}

fn check(case: &Case) -> Outcome {
    let ctx = TestContext::new();
    ctx.write(&case.file, &case.src);
    for (name, content) in &case.files {
        ctx.write(name, content);
    }
    let before = listing(ctx.dir.path());
    let mut out = Outcome { failures: vec![], todo_notes: vec![] };
    let commands: &[&str] = if case.run_only { &["run"] } else { &["run", "status"] };
    for &command in commands {
        let mut args = vec![command, case.file.as_str()];
        args.extend(case.args.iter().map(String::as_str));
        let shown = format!("camel {}", args.join(" "));
        let r: Run = ctx.camel(&args);
        let text = searchable(&r.stderr);
        let mut problems = Vec::new();
        if r.code != 2 {
            problems.push(format!("exit code {} (expected 2)", r.code));
        }
        for e in &case.expects {
            if !text.contains(e.as_str()) {
                problems.push(format!("missing `# expect: {e}`"));
            }
        }
        for t in &case.todos {
            if text.contains(t.as_str()) {
                problems.push(format!("`# todo: {t}` now holds: make it an `# expect:`"));
            } else if command == "run" {
                out.todo_notes.push(format!("{}: todo: {t}", case.file));
            }
        }
        if ctx.path(".camel").exists() {
            problems.push("a .camel workspace was created".into());
        }
        let after = listing(ctx.dir.path());
        if after != before {
            let show = |a: &BTreeSet<PathBuf>, b: &BTreeSet<PathBuf>| {
                let d: Vec<String> = a.difference(b).map(|p| p.display().to_string()).collect();
                let more = d.len().saturating_sub(8);
                let mut s = d.into_iter().take(8).collect::<Vec<_>>().join(", ");
                if more > 0 {
                    s.push_str(&format!(" and {more} more"));
                }
                s
            };
            problems.push(format!(
                "the directory changed: new [{}], removed [{}]",
                show(&after, &before),
                show(&before, &after)
            ));
        }
        if !problems.is_empty() {
            out.failures.push(format!(
                "{}: `{shown}`:\n    - {}\n  --- stderr ---\n{}  --- stdout ---\n{}",
                case.file,
                problems.join("\n    - "),
                r.stderr,
                r.stdout
            ));
        }
    }
    out
}

#[test]
fn malformed_pipelines_are_rejected_before_anything_is_written() {
    let cases = cases();
    assert!(cases.len() >= 20, "only {} cases in {}", cases.len(), cases_dir().display());
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    for case in &cases {
        let out = check(case);
        notes.extend(out.todo_notes);
        match (&case.known_bug, out.failures.is_empty()) {
            (None, _) => failures.extend(out.failures),
            (Some(why), false) => notes.push(format!("{}: known bug: {why}", case.file)),
            (Some(_), true) => failures.push(format!(
                "{}: passes although it is marked `# known-bug:`: remove that line",
                case.file
            )),
        }
    }
    if !notes.is_empty() {
        eprintln!("known shortcomings ({}):\n  {}", notes.len(), notes.join("\n  "));
    }
    assert!(
        failures.is_empty(),
        "{} of {} invalid-pipeline checks failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// A file with nothing in it cannot carry `# expect:` lines.
#[test]
fn an_empty_file_is_rejected() {
    for content in ["", "\n\n  \n"] {
        let ctx = TestContext::new();
        ctx.write("empty.yaml", content);
        for command in ["run", "status"] {
            let r = ctx.camel(&[command, "empty.yaml"]);
            assert_eq!(r.code, 2, "{command} {content:?}:\n{}", r.stderr);
            assert!(
                r.stderr.contains("empty.yaml: the pipeline file is empty"),
                "{content:?}:\n{}",
                r.stderr
            );
            assert!(r.stderr.contains("a pipeline needs at least `name:` and `stages:`"), "{}", r.stderr);
        }
        assert_eq!(listing(ctx.dir.path()), BTreeSet::from([PathBuf::from("empty.yaml")]));
    }
}

#[test]
fn the_searchable_text_joins_wrapped_lines_and_drops_quoted_source() {
    let stderr = "  × p.yaml:2:5: stage `a`: a long\n  │ message\n   ╭─[p.yaml:2:5]\n 1 │ # expect: \
                  nothing\n 12 │ x: 1\n   ·    ┬\n   ·    ╰── here\n   ╰────\n  help: use them\n        \
                  only here\n\ncamel: done\n";
    assert_eq!(
        searchable(stderr),
        "  × p.yaml:2:5: stage `a`: a long message\n   ╭─[p.yaml:2:5]\n   ·    ┬\n   ·    ╰── here\n   \
         ╰────\n  help: use them only here\n\ncamel: done"
    );
}

/// camel's full report on the case in `file`.
fn rendered(file: &str) -> String {
    let case = cases().into_iter().find(|c| c.file == file).unwrap_or_else(|| panic!("no case {file}"));
    let ctx = TestContext::new();
    ctx.write(&case.file, &case.src);
    for (name, content) in &case.files {
        ctx.write(name, content);
    }
    let r = ctx.camel(&["run", &case.file]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    r.stderr
}

macro_rules! assert_report_snapshot {
    ($name:literal, $stderr:expr) => {
        insta::with_settings!({filters => vec![(r"/tmp/\S+?/", "[TMP]/")]}, {
            insta::assert_snapshot!($name, $stderr);
        })
    };
}

#[test]
fn report_of_an_unknown_kind() {
    assert_report_snapshot!("unknown_kind", rendered("09-unknown-kind.yaml"));
}

#[test]
fn report_of_an_unknown_param() {
    assert_report_snapshot!("unknown_param", rendered("10-unknown-param.yaml"));
}

#[test]
fn report_of_a_cycle() {
    assert_report_snapshot!("cycle", rendered("17-cycle.yaml"));
}
