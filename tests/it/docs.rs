//! The documentation's pipelines run: every ```yaml block in README.md and docs/*.md that is a
//! whole pipeline (a top-level `name:` and `stages:`) must pass `camel status` (which validates
//! it completely and tolerates input files that are not there), and the small self-contained
//! ones (only `command`/`synth` stages, no inputs, no secrets) must pass `camel run` too. A doc
//! that drifts from the engine (a renamed output, a param that no longer exists) fails here.

use std::path::{Path, PathBuf};

use crate::common::{TestContext, copy_dir};

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

/// The examples of every other subcommand's `--help` work on a copy of the shipped pipelines:
/// read-only commands (`status`, `dag`, `diff`, `kinds`, `schema`) are run as written and must
/// exit 0; `show`, `verify` and `gc` (which need a workspace) have their pipelines planned with
/// `status` and the stage they name checked; a `generate` example's model path under the demo's
/// workspace names a stage of the demo and its output.
#[test]
fn every_subcommands_help_examples_work() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = TestContext::new();
    for f in ["demo.yaml", "full.yaml"] {
        t.write(&format!("pipelines/{f}"), &std::fs::read_to_string(root.join("pipelines").join(f)).unwrap());
    }
    copy_dir(&root.join("examples"), &t.path("examples"));
    let stages_of = |file: &str| -> Vec<String> {
        let r = t.camel(&["status", file, "--json"]);
        assert_eq!(r.code, 0, "status {file}: {}", r.stderr);
        let v: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
        v.iter().map(|s| s["stage"].as_str().unwrap().to_string()).collect()
    };
    let mut checked = 0;
    for sub in ["status", "dag", "diff", "show", "gc", "verify", "kinds", "schema", "generate"] {
        let help = t.camel(&[sub, "--help"]);
        assert_eq!(help.code, 0, "{sub} --help: {}", help.stderr);
        let prefix = format!("camel {sub} ");
        let examples: Vec<&str> = help
            .stdout
            .lines()
            .map(str::trim)
            .filter_map(|l| if l == format!("camel {sub}") { Some("") } else { l.strip_prefix(&prefix) })
            .collect();
        for line in examples {
            // Shell words: the examples quote with single quotes only.
            let words: Vec<String> = line
                .split('\'')
                .enumerate()
                .flat_map(|(i, part)| {
                    if i % 2 == 1 {
                        vec![part.to_string()]
                    } else {
                        part.split_whitespace().map(String::from).collect()
                    }
                })
                .take_while(|w| w != ">")
                .collect();
            let files: Vec<String> = words
                .iter()
                .flat_map(|w| match w.strip_suffix("*.yaml") {
                    Some(dir) => ["demo.yaml", "full.yaml"].iter().map(|f| format!("{dir}{f}")).collect(),
                    None if w.ends_with(".yaml") => vec![w.clone()],
                    None => vec![],
                })
                .collect();
            match sub {
                "show" => {
                    assert!(
                        stages_of(&files[0]).contains(&words[1]),
                        "`camel show {line}`: no stage `{}`",
                        words[1]
                    );
                }
                "gc" | "verify" => {
                    for f in &files {
                        stages_of(f);
                    }
                }
                "generate" => {
                    let Some(rest) = words[0].strip_prefix("pipelines/.camel/out/") else { continue };
                    let stage = rest.split('/').next().unwrap();
                    assert!(
                        stages_of("pipelines/demo.yaml").iter().any(|s| s == stage),
                        "`camel generate {line}`"
                    );
                }
                _ => {
                    let mut args = vec![sub];
                    args.extend(words.iter().map(String::as_str));
                    let r = t.camel(&args);
                    assert_eq!(r.code, 0, "`camel {sub} {line}`: {}", r.stderr);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} examples found in the subcommands' help");
}
