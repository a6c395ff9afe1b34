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
