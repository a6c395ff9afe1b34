//! The documentation's pipelines run: every ```yaml block in README.md and docs/*.md that is a
//! whole pipeline (a top-level `name:` and `stages:`) must pass `camel status` (which validates
//! it completely and tolerates input files that are not there), and the small self-contained
//! ones (only `command`/`synth` stages, no inputs, no secrets) must pass `camel run` too. A doc
//! that drifts from the engine (a renamed output, a param that no longer exists) fails here.

use std::path::{Path, PathBuf};

use crate::common::TestContext;

pub(crate) fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The ```yaml blocks of `text` with the line each starts on.
pub(crate) fn yaml_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut cur {
            None if line.trim_start().starts_with("```yaml") => cur = Some((i + 2, String::new())),
            Some(_) if line.trim_start().starts_with("```") => out.extend(cur.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

pub(crate) fn is_pipeline(block: &str) -> bool {
    block.lines().any(|l| l.starts_with("name:")) && block.lines().any(|l| l.starts_with("stages:"))
}

/// Only stages that need nothing from outside the block.
fn is_self_contained(block: &str) -> bool {
    let kinds_ok = block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("kind:"))
        .all(|k| matches!(k.split('#').next().unwrap_or("").trim(), "command" | "synth"));
    kinds_ok && !block.contains("inputs:") && !block.contains("${env:")
}

#[test]
fn every_pipeline_in_the_docs_is_valid() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.file_name().unwrap().to_string_lossy().into_owned();
        for (line, block) in yaml_blocks(&text).into_iter().filter(|(_, b)| is_pipeline(b)) {
            checked += 1;
            let t = TestContext::new();
            t.write("doc.yaml", &block);
            let r = t.camel(&["status", "doc.yaml"]);
            if r.code != 0 {
                failures.push(format!("{shown}:{line}: `camel status` exited {}:\n{}", r.code, r.stderr));
                continue;
            }
            if is_self_contained(&block) {
                let r = t.camel(&["run", "doc.yaml"]);
                if r.code != 0 {
                    failures.push(format!("{shown}:{line}: `camel run` exited {}:\n{}", r.code, r.stderr));
                }
            }
        }
    }
    assert!(checked >= 1, "no pipeline found in the docs");
    assert!(
        failures.is_empty(),
        "{} of {checked} doc pipelines fail:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
pub(crate) fn yaml_blocks_are_found_with_their_lines() {
    let text = "# t\n\n```yaml\nname: x\nstages: {}\n```\n\n```sh\nls\n```\n";
    assert_eq!(yaml_blocks(text), [(4, "name: x\nstages: {}\n".to_string())]);
    assert!(is_pipeline("name: x\nstages:\n  a: {kind: command}\n"));
    assert!(!is_pipeline("  name: x\n  kind: pretrain\n"));
}

/// The examples of `camel --help` and `camel run --help` name pipelines, stages and params that
/// exist: each `camel run FILE ARGS` line is checked with `camel status FILE` (its `--set`s
/// applied), and every stage it names (`--force`, `--until`, `--only`) is a stage of FILE.
#[test]
fn help_examples_run_on_the_shipped_pipelines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = TestContext::new();
    let mut checked = 0;
    for help in [&["--help"][..], &["run", "--help"]] {
        let r = t.camel(help);
        assert_eq!(r.code, 0, "{}", r.stderr);
        for line in r.stdout.lines().filter_map(|l| l.trim().strip_prefix("camel run ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let file = root.join(words[0]).display().to_string();
            let mut args = vec!["status", file.as_str(), "--json"];
            let mut stages = Vec::new();
            for pair in words[1..].windows(2) {
                match pair[0] {
                    "--set" => args.extend(["--set", pair[1]]),
                    "--force" | "--until" | "--only" => stages.push(pair[1]),
                    _ => {}
                }
            }
            let r = t.camel(&args);
            assert_eq!(r.code, 0, "`camel run {line}`: {}", r.stderr);
            let status: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
            for s in stages {
                assert!(
                    status.iter().any(|v| v["stage"] == s),
                    "`camel run {line}`: no stage `{s}` in {file}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} examples found in the help");
}
