//! `pipelines/demo.yaml`, the README's first command, runs end to end from a copy of the project's
//! demo files, is fully cached on a second run, and gives identical bytes when run again from
//! scratch.

use std::path::Path;

use crate::common::{TestContext, copy_dir, snapshot_outputs};

/// A temporary project holding the demo pipeline and the example files it reads.
fn demo_project() -> TestContext {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let t = TestContext::new();
    std::fs::create_dir_all(t.path("pipelines")).unwrap();
    std::fs::copy(root.join("pipelines/demo.yaml"), t.path("pipelines/demo.yaml")).unwrap();
    copy_dir(&root.join("examples/demo"), &t.path("examples/demo"));
    t
}

#[test]
fn the_demo_runs_end_to_end_and_reruns_from_the_cache() {
    let t = demo_project();
    let first = t.camel(&["run", "pipelines/demo.yaml"]);
    first.assert_ok();
    let stages: Vec<String> =
        t.status("pipelines/demo.yaml").iter().map(|s| s["stage"].as_str().unwrap().to_string()).collect();
    let mut ran = first.ran();
    ran.sort();
    let mut all = stages.clone();
    all.sort();
    assert_eq!(ran, all, "every demo stage runs on a fresh workspace");

    let second = t.camel(&["run", "pipelines/demo.yaml"]);
    second.assert_ok();
    assert!(second.ran().is_empty(), "a rerun is all cached:\n{}", second.stderr);

    // From scratch again: the same bytes (every stage is deterministic).
    let before = snapshot_outputs(&t.path("pipelines/.camel"));
    std::fs::remove_dir_all(t.path("pipelines/.camel")).unwrap();
    t.camel(&["run", "pipelines/demo.yaml"]).assert_ok();
    let after = snapshot_outputs(&t.path("pipelines/.camel"));
    assert_eq!(before.len(), after.len());
    for ((a, x), (b, y)) in before.iter().zip(&after) {
        assert_eq!(a, b);
        if a.ends_with("metrics.jsonl") {
            assert_eq!(without_timings(x), without_timings(y), "{a} differs between two runs from scratch");
        } else {
            assert!(x == y, "{a} differs between two runs from scratch");
        }
    }
}

/// A training log's records without their wall-clock throughput, the one thing in the demo's
/// outputs that depends on the machine's speed.
fn without_timings(jsonl: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(jsonl)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().retain(|k, _| !k.ends_with("_per_s"));
            v
        })
        .collect()
}
