//! The kinds' params schemas (what `camel kinds KIND` prints and `camel schema` validates
//! with) say what the kinds do: every param has a meaning, and every numeric bound in a schema is
//! exactly where parsing or `Stage::validate` starts refusing values.

use std::path::Path;

use camel_engine::schema::{ParamDoc, param_docs};
use camel_engine::validate::ValidateContext;
use serde_json::{Value, json};

/// Params that make each kind parse (its required fields), over which one value is set.
fn base_params(kind: &str) -> Value {
    match kind {
        "command" => json!({"run": "true"}),
        "instructions" => json!({"provider": {"type": "extractive"}}),
        "judge" => json!({
            "provider": {"type": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
            "systems": [{"name": "a", "input": "a"}],
        }),
        "metrics" => json!({"systems": [{"name": "a", "input": "a"}], "reference": "a"}),
        "notes" => json!({
            "sources": [{"type": "mimic3", "notes": "n"}],
            "decontaminate": {"sets": [{"input": "e", "field": "f"}]},
        }),
        "synth" => json!({"notes": 1}),
        _ => json!({}),
    }
}

/// A bound of a param's schema: the value at it, and whether that value is allowed.
struct Bound {
    at: f64,
    inclusive: bool,
    /// Which way lies outside.
    below: bool,
}

fn bounds(schema: &Value, name: &str) -> (Vec<Bound>, bool) {
    let mut node = schema;
    for part in name.split('.') {
        let prop = &node["properties"][part];
        node = camel_engine::schema::strip_null(schema, prop).0;
    }
    let integer =
        node["type"] == "integer" || node["type"].as_array().is_some_and(|t| t.contains(&json!("integer")));
    let mut out = Vec::new();
    let num = |k: &str| node.get(k).and_then(Value::as_f64);
    if let Some(m) = num("minimum") {
        out.push(Bound { at: m, inclusive: true, below: true });
    }
    if let Some(m) = num("exclusiveMinimum") {
        out.push(Bound { at: m, inclusive: false, below: true });
    }
    if let Some(m) = num("maximum") {
        out.push(Bound { at: m, inclusive: true, below: false });
    }
    if let Some(m) = num("exclusiveMaximum") {
        out.push(Bound { at: m, inclusive: false, below: false });
    }
    (out, integer)
}

fn with_value(base: &Value, name: &str, v: Value) -> Value {
    let mut p = base.clone();
    let parts: Vec<&str> = name.split('.').collect();
    let mut node = &mut p;
    for part in &parts[..parts.len() - 1] {
        let m = node.as_object_mut().unwrap();
        node = m.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    node.as_object_mut().unwrap().insert(parts[parts.len() - 1].to_string(), v);
    p
}

/// Whether the kind refuses `params`, because of the param `name`: parsing fails, or validation
/// reports a problem at that param.
fn refused(entry: &camel_engine::KindEntry, params: &Value, name: &str) -> Result<bool, String> {
    let yaml: serde_yaml::Value = serde_yaml::to_value(params).unwrap();
    let bound = match entry.parse(yaml) {
        Ok(b) => b,
        Err(e) => {
            // A parse error elsewhere means the base params are wrong, not the bound.
            if e.path.join(".") == name {
                return Ok(true);
            }
            return Err(format!("{params} does not parse: {} at {:?}", e.message, e.path));
        }
    };
    let dir = Path::new("/nonexistent");
    let ctx = ValidateContext::for_test("s", dir, &[]);
    let mut path = vec!["params".to_string()];
    path.extend(name.split('.').map(str::to_string));
    Ok(match bound.validate(&ctx) {
        Ok(()) => false,
        Err(problems) => problems.iter().any(|p| p.at == path),
    })
}

/// Bounds a kind checks only when it runs (with exit code 1 rather than 2, which
/// tests/it/synth.rs pins), so not here.
const CHECKED_AT_RUN_TIME: &[&str] = &["synth.notes", "synth.bytes"];

#[test]
fn schema_bounds_are_where_validation_refuses() {
    let reg = camel_stages::registry();
    let mut checked = 0;
    let mut failures = Vec::new();
    for entry in reg.kinds() {
        let schema = entry.params_schema();
        let base = base_params(entry.kind);
        for ParamDoc { name, .. } in param_docs(&schema) {
            if CHECKED_AT_RUN_TIME.contains(&format!("{}.{name}", entry.kind).as_str()) {
                continue;
            }
            let (bs, integer) = bounds(&schema, &name);
            for b in bs {
                // Just inside and just outside the bound.
                let step = if integer { 1.0 } else { 1e-6 * b.at.abs().max(1.0) };
                let (inside, outside) = match (b.inclusive, b.below) {
                    (true, true) => (b.at, b.at - step),
                    (true, false) => (b.at, b.at + step),
                    (false, true) => (b.at + step, b.at),
                    (false, false) => (b.at - step, b.at),
                };
                let value = |x: f64| if integer { json!(x as i64) } else { json!(x) };
                for (x, want_refused) in [(inside, false), (outside, true)] {
                    checked += 1;
                    let params = with_value(&base, &name, value(x));
                    match refused(entry, &params, &name) {
                        Ok(r) if r == want_refused => {}
                        Ok(r) => failures.push(format!(
                            "{}.{name} = {x}: the schema says {}, the kind {}",
                            entry.kind,
                            if want_refused { "invalid" } else { "valid" },
                            if r { "refuses it" } else { "accepts it" }
                        )),
                        Err(e) => failures.push(format!("{}.{name}: {e}", entry.kind)),
                    }
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} bounds checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_param_of_every_kind_says_what_it_means() {
    let reg = camel_stages::registry();
    let mut missing = Vec::new();
    for entry in reg.kinds() {
        for d in param_docs(&entry.params_schema()).iter().filter(|d| !d.name.contains('.')) {
            if d.meaning.len() < 8 {
                missing.push(format!("{}.{}", entry.kind, d.name));
            }
        }
    }
    assert!(missing.is_empty(), "params without a doc comment: {}", missing.join(", "));
}

// `camel schema`: the committed copy, and a real validator over every shipped pipeline.

const SCHEMA_FILE: &str = "schema/pipeline.schema.json";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pipeline_schema() -> Value {
    let t = crate::common::TestContext::new();
    let r = t.camel(&["schema"]);
    r.assert_ok();
    serde_json::from_str(&r.stdout).expect("`camel schema` prints JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&pipeline_schema()).expect("the pipeline schema is a valid JSON Schema")
}

/// The schema's complaints about a pipeline written in YAML (empty: valid).
fn complaints(v: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let doc: Value = serde_yaml::from_str(yaml).expect("YAML");
    v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect()
}

#[test]
fn the_committed_schema_is_what_camel_schema_prints() {
    let t = crate::common::TestContext::new();
    let r = t.camel(&["schema"]);
    r.assert_ok();
    let committed = std::fs::read_to_string(root().join(SCHEMA_FILE)).unwrap_or_default();
    assert!(
        committed == r.stdout,
        "{SCHEMA_FILE} differs from `camel schema`; regenerate it with `./camel schema > {SCHEMA_FILE}`"
    );
}

#[test]
fn every_shipped_pipeline_is_valid_under_the_schema() {
    let v = validator();
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["pipelines", "examples"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    files.push(p);
                }
            }
        }
    }
    let mut docs: Vec<(String, String)> = files
        .iter()
        .map(|p| (p.strip_prefix(root()).unwrap().display().to_string(), std::fs::read_to_string(p).unwrap()))
        .filter(|(_, text)| crate::docs::is_pipeline(text))
        .collect();
    assert!(docs.len() >= 4, "{docs:?}");
    for file in crate::docs::doc_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let shown = file.file_name().unwrap().to_string_lossy().into_owned();
        for (line, block) in crate::docs::yaml_blocks(&text) {
            if crate::docs::is_pipeline(&block) {
                docs.push((format!("{shown}:{line}"), block));
            }
        }
    }
    let mut failures = Vec::new();
    for (name, text) in &docs {
        let c = complaints(&v, text);
        if !c.is_empty() {
            failures.push(format!("{name}:\n  {}", c.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pipelines fail the schema:\n{}",
        failures.len(),
        docs.len(),
        failures.join("\n")
    );
}

#[test]
fn the_schema_refuses_what_camel_refuses() {
    let v = validator();
    let stage = |s: &str| format!("name: p\nparams: {{lr: 0.001}}\nstages:\n  t:\n{s}");
    // Typed values may be references to pipeline params, and the kinds' params are checked.
    let ok = stage(
        "    kind: pretrain\n    inputs: {tokens: tok}\n    params: {lr: '${params.lr}', epochs: 2, distributed: {strategy: fsdp}}\n",
    );
    assert_eq!(complaints(&v, &ok), Vec::<String>::new());
    let ok = stage(
        "    kind: command\n    params: {run: 'true', outputs: {o: o.txt}}\n    executor: slurm\n    resources: {nodes: 2, time: '1:00:00'}\n",
    );
    assert_eq!(complaints(&v, &ok), Vec::<String>::new());
    // `time` in minutes and `mem` in megabytes as YAML numbers, which camel takes as sbatch does.
    let ok = stage(
        "    kind: command\n    params: {run: 'true', outputs: {o: o.txt}}\n    executor: slurm\n    resources: {time: 30, mem: 64000}\n",
    );
    assert_eq!(complaints(&v, &ok), Vec::<String>::new());
    for (what, bad) in [
        ("an unknown param", "    kind: pretrain\n    params: {lrr: 0.1}\n"),
        ("a string for a number", "    kind: pretrain\n    params: {lr: fast}\n"),
        ("a value out of range", "    kind: pretrain\n    params: {batch_size: 0}\n"),
        ("an unknown choice", "    kind: pretrain\n    params: {distributed: {strategy: zero}}\n"),
        ("an unknown kind", "    kind: pretrian\n"),
        ("a missing required param", "    kind: synth\n    params: {seed: 1}\n"),
        ("an unknown stage field", "    kind: command\n    params: {run: 'true'}\n    input: {}\n"),
        ("a reference that is not one", "    kind: pretrain\n    params: {lr: '${lr}'}\n"),
    ] {
        assert!(!complaints(&v, &stage(bad)).is_empty(), "the schema accepts {what}:\n{}", stage(bad));
    }
    let bad_top = "name: p\nstage: {}\n";
    assert!(!complaints(&v, bad_top).is_empty());
}
