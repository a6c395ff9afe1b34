//! Snapshots of what the CLI prints: `status`, `dag`, and the run summary.

use crate::common::TestContext;

const PIPE: &str = r#"
name: snap
params: {greeting: hello}
stages:
  make:
    kind: command
    inputs: {seed: seed.txt}
    params:
      run: echo "$G" > "$CAMEL_OUT_OUT"; cat "$CAMEL_IN_SEED" >> "$CAMEL_OUT_OUT"
      outputs: {out: greeting.txt}
      env: {G: "${params.greeting}"}
  shout:
    kind: command
    inputs: {text: make.out}
    params:
      run: tr a-z A-Z < "$CAMEL_IN_TEXT" > "$CAMEL_OUT_LOUD"
      outputs: {loud: loud.txt}
"#;

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"\b[0-9a-f]{12}\b", "[KEY]"), (r"\d+\.\d\ds", "[T]s")]
}

#[test]
fn status_text_after_an_edit() {
    let t = TestContext::new();
    t.write("p.yaml", PIPE);
    t.write("seed.txt", "42\n");
    let before = t.camel(&["status", "p.yaml"]);
    t.camel(&["run", "p.yaml"]).assert_ok();
    let r = t.camel(&["status", "p.yaml", "--set", "params.greeting=bonjour"]);
    r.assert_ok();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("status_before_any_run", before.stdout);
        insta::assert_snapshot!("status_after_param_edit", r.stdout);
    });
}

#[test]
fn dag_formats() {
    let t = TestContext::new();
    t.write("p.yaml", PIPE);
    t.write("seed.txt", "42\n");
    let text = t.camel(&["dag", "p.yaml"]);
    let mermaid = t.camel(&["dag", "p.yaml", "--format", "mermaid"]);
    insta::assert_snapshot!("dag_text", text.stdout);
    insta::assert_snapshot!("dag_mermaid", mermaid.stdout);
}

#[test]
fn run_output_when_not_a_terminal() {
    let t = TestContext::new();
    t.write("p.yaml", PIPE);
    t.write("seed.txt", "42\n");
    let first = t.camel(&["run", "p.yaml"]);
    first.assert_ok();
    let second = t.camel(&["run", "p.yaml"]);
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("run_first", first.stderr);
        insta::assert_snapshot!("run_second", second.stderr);
    });
}

/// Linking libtorch costs every process ~0.2 s and 120 MB before `main`: the CLI must not.
#[test]
fn the_camel_binary_does_not_link_libtorch() {
    let Ok(out) = std::process::Command::new("readelf").args(["-d", crate::common::camel_bin()]).output()
    else {
        println!("skipped: readelf is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NEEDED"), "readelf printed no dynamic section:\n{text}");
    assert!(!text.contains("libtorch"), "camel links libtorch:\n{text}");
}

/// Removing one entry of a list param names that entry, in `status`, `status --json` and `run`.
#[test]
fn a_changed_list_entry_is_named_precisely() {
    let t = TestContext::new();
    let pipe = |outs: &str| {
        format!(
            "name: lists\nstages:\n  many:\n    kind: command\n    params:\n      run: for f in a.txt b.txt; do echo $f > \"$CAMEL_OUT/$f\"; done\n      outputs: [{outs}]\n"
        )
    };
    t.write("p.yaml", &pipe("a.txt, b.txt"));
    t.camel(&["run", "p.yaml"]).assert_ok();
    t.write("p.yaml", &pipe("a.txt"));
    let want = r#"param `outputs`: removed "b.txt""#;
    let (state, reasons) = t.state_of("p.yaml", "many");
    assert_eq!((state.as_str(), reasons), ("stale", vec![want.to_string()]));
    let status = t.camel(&["status", "p.yaml"]);
    assert!(status.stdout.contains(&format!("- {want}")), "{}", status.stdout);
    let run = t.camel(&["run", "p.yaml"]);
    run.assert_ok();
    assert!(run.stderr.contains(&format!("runs: {want}")), "{}", run.stderr);
}

const FAILING: &str = r#"
name: kg
stages:
  bad:
    kind: command
    params: {run: exit 3, outputs: {out: o.txt}}
  after:
    kind: command
    inputs: {x: bad.out}
    params: {run: cp "$CAMEL_IN_X" "$CAMEL_OUT/o.txt", outputs: {out: o.txt}}
  later:
    kind: command
    inputs: {x: after.out}
    params: {run: cp "$CAMEL_IN_X" "$CAMEL_OUT/o.txt", outputs: {out: o.txt}}
  other:
    kind: command
    params: {run: echo ok > "$CAMEL_OUT/o.txt", outputs: {out: o.txt}}
"#;

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let t = TestContext::new();
    t.write("p.yaml", FAILING);
    let stop = t.camel(&["run", "p.yaml"]);
    assert_eq!(stop.code, 1);
    assert!(stop.ran().is_empty(), "without --keep-going nothing runs after `bad`: {}", stop.stderr);

    let r = t.camel(&["run", "p.yaml", "--keep-going"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.ran(), ["other"]);
    assert!(r.stderr.contains("\nfailed: bad\nskipped because `bad` failed: after, later\n"), "{}", r.stderr);
    assert_eq!(t.state_of("p.yaml", "other").0, "cached");
}

/// Ctrl-C while a stage runs: the stage is `interrupted` (not FAILED) and camel exits with 130.
#[test]
fn an_interrupt_is_reported_as_interrupted_with_exit_130() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        "name: slow\nstages:\n  slow:\n    kind: command\n    params: {run: sleep 30, outputs: {out: o.txt}}\n",
    );
    let child = t.command(&["run", "p.yaml"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // The stage has started once its log exists.
    let log = t.path(".camel/logs/slow.log");
    let t0 = std::time::Instant::now();
    while !log.exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: kill(2) on the child's pid, which has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let r: crate::common::Run = child.wait_with_output().unwrap().into();
    assert!(t0.elapsed() < std::time::Duration::from_secs(25), "the stage was not stopped");
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(r.stderr.contains("slow interrupted after"), "{}", r.stderr);
    assert!(!r.stderr.contains("FAILED"), "{}", r.stderr);
    assert!(r.stderr.lines().any(|l| l.starts_with("slow") && l.contains("interrupted")), "{}", r.stderr);
}

#[test]
fn diff_compares_two_set_variants() {
    let t = TestContext::new();
    t.write("p.yaml", PIPE);
    t.write("seed.txt", "42\n");
    t.camel(&["run", "p.yaml"]).assert_ok();
    let r = t.camel(&["diff", "p.yaml", "--set-b", "params.greeting=bonjour"]);
    r.assert_ok();
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("diff_set_variant", r.stdout);
    });
    let r = t.camel(&["diff", "p.yaml", "p.yaml", "--set-b", "params.greeting=bonjour", "--json"]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v[0]["stage"], "make");
    assert_eq!(v[0]["verdict"], "differs");
    assert_eq!(v[0]["reasons"][0], r#"param `env.G` changed from "hello" to "bonjour""#);
    assert_eq!(v[0]["a"]["state"], "cached");
    assert_eq!(v[1]["verdict"], "differs");
    let same = t.camel(&["diff", "p.yaml", "p.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&same.stdout).unwrap();
    assert!(v.as_array().unwrap().iter().all(|s| s["verdict"] == "same"), "{v}");
}

#[test]
fn kinds_describe_inputs_outputs_and_params() {
    let t = TestContext::new();
    let r = t.camel(&["kinds", "pretrain"]);
    r.assert_ok();
    assert!(
        r.stdout.contains("inputs: tokens (required), model (optional), eval (optional)\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("outputs: model (model), metrics (metrics.jsonl), loss_curve (loss.svg)\n"),
        "{}",
        r.stdout
    );
    let lr = r.stdout.lines().find(|l| l.trim_start().starts_with("lr ")).expect("an lr line");
    // name, type, default, valid range, meaning (from the params' doc comments).
    let cols: Vec<&str> = lr.split_whitespace().collect();
    assert_eq!(cols[..5], ["lr", "number", "0.00002", "≥", "0"], "{lr}");
    assert!(lr.contains("Peak learning rate (linear warmup, then cosine decay"), "{lr}");
    let steps =
        r.stdout.lines().find(|l| l.trim_start().starts_with("max_steps ")).expect("a max_steps line");
    assert_eq!(
        steps.split_whitespace().take(5).collect::<Vec<_>>(),
        ["max_steps", "integer", "unset", "≥", "1"]
    );
    let beta =
        r.stdout.lines().find(|l| l.trim_start().starts_with("adam_beta2 ")).expect("an adam_beta2 line");
    assert!(beta.contains(" 0 ≤ x < 1 "), "{beta}");
    // The fields of a struct param, and a choice's values.
    assert!(
        r.stdout.lines().any(|l| l.split_whitespace().take(3).eq(["distributed.strategy", "ddp", "|"])),
        "{}",
        r.stdout
    );
    // Inside a list of tagged sources, and a provider's variants: each field with its type,
    // default and meaning, a variant's own marked.
    let r = t.camel(&["kinds", "notes"]);
    r.assert_ok();
    let line = |out: &str, name: &str| -> String {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no `{name}` line:\n{out}"))
            .to_string()
    };
    assert!(
        line(&r.stdout, "sources[].type").split_whitespace().take(9).eq([
            "sources[].type",
            "mimic3",
            "|",
            "mimic4",
            "|",
            "i2b2",
            "|",
            "table",
            "required"
        ]),
        "{}",
        r.stdout
    );
    assert!(
        line(&r.stdout, "sources[].delimiter").contains("(type: table) CSV only: the delimiter"),
        "{}",
        r.stdout
    );
    assert!(line(&r.stdout, "sources[].columns.text").contains("required"), "{}", r.stdout);
    assert!(
        line(&r.stdout, "decontaminate.sets[].input").contains("The input holding the set"),
        "{}",
        r.stdout
    );
    let r = t.camel(&["kinds", "judge"]);
    r.assert_ok();
    let v = line(&r.stdout, "provider.api_version");
    assert!(v.contains("\"2024-06-01\"") && v.contains("(type: azure)"), "{v}");
    assert!(line(&r.stdout, "systems[].column").contains("\"output\""), "{}", r.stdout);
    // `command` needs `run`: no defaults to show, but what is missing is said.
    let r = t.camel(&["kinds", "command"]);
    r.assert_ok();
    assert!(r.stdout.contains("`run` has no default"), "{}", r.stdout);
}

/// `--until`/`--only` a stage: the input files and secrets of the stages the run skips may be
/// missing (building the corpus while the model weights are still being requested); those of
/// the stages it runs, or takes from the cache, may not. `status` names a missing secret.
#[test]
fn until_and_only_need_only_the_inputs_of_what_they_run() {
    let t = TestContext::new();
    t.write("seed.txt", "x\n");
    t.write(
        "p.yaml",
        r#"
name: partial-data
params: {model: /nonexistent/camel-test/model}
stages:
  a:
    kind: command
    inputs: {seed: seed.txt}
    params: {run: cat "$CAMEL_IN_SEED" > "$CAMEL_OUT_OUT", outputs: {out: a.txt}}
  b:
    kind: command
    inputs: {x: a.out}
    params: {run: cat "$CAMEL_IN_X" > "$CAMEL_OUT_OUT", outputs: {out: b.txt}}
  c:
    kind: command
    inputs: {x: b.out, model: "${params.model}"}
    params:
      run: cat "$CAMEL_IN_X" > "$CAMEL_OUT_OUT"
      outputs: {out: c.txt}
      secret_env: {TOKEN: "${env:CAMEL_TEST_UNSET_TOKEN}"}
"#,
    );
    let run = |args: &[&str]| -> crate::common::Run {
        t.command(args).env_remove("CAMEL_TEST_UNSET_TOKEN").output().unwrap().into()
    };
    let r = run(&["run", "p.yaml", "--until", "b"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a", "b"]);
    run(&["run", "p.yaml", "--only", "b", "--force", "b"]).assert_ok();
    for args in
        [&["run", "p.yaml", "--until", "c"][..], &["run", "p.yaml", "--only", "c"], &["run", "p.yaml"]]
    {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("/nonexistent/camel-test/model does not exist"), "{args:?}: {}", r.stderr);
        // An absolute path is not relative to anything; the param that gives it is named.
        assert!(!r.stderr.contains("paths are relative"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("set it with --set params.model=PATH"), "{args:?}: {}", r.stderr);
    }
    let r = run(&["status", "p.yaml"]);
    r.assert_ok();
    assert!(r.stdout.contains("environment variable `CAMEL_TEST_UNSET_TOKEN` is not set"), "{}", r.stdout);
}

/// `show` of a stage that has not run is not a mistake on the command line (exit 1, not 2); an
/// unknown stage is. A command the shell cannot find fails with what status 127 means, pointing
/// at the log (the command's own output is not shown: it may quote notes).
#[test]
fn show_before_a_run_and_a_missing_command_say_what_is_wrong() {
    let t = TestContext::new();
    t.write("seed.txt", "x\n");
    t.write("p.yaml", PIPE);
    let r = t.camel(&["show", "p.yaml", "make"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("stage `make` has no outputs"), "{}", r.stderr);
    let r = t.camel(&["show", "p.yaml", "mkae"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    t.write(
        "q.yaml",
        "name: q\nstages:\n  s:\n    kind: command\n    params: {run: 'camel-test-no-such-command-9 ZZSECRET', outputs: {o: o.txt}}\n",
    );
    let r = t.camel(&["run", "q.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("(127: the shell found no such command or file; the log's last lines say which)"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("ZZSECRET"), "{}", r.stderr);
}
