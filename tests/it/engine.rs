//! Cache, resume and scheduling behaviour of `camel run` over `command` stages.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::common::{TestContext, snapshot_outputs};

/// a <- data.txt; b <- a; c <- other.txt; d <- b, c
const DIAMOND: &str = r#"
name: diamond
params: {n: 3}
stages:
  a:
    kind: command
    inputs: {data: data.txt}
    params:
      run: cat "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT"; echo "$N" >> "$CAMEL_OUT_OUT"
      outputs: {out: a.txt}
      env: {N: "${params.n}"}
  b:
    kind: command
    inputs: {x: a.out}
    params:
      run: tr a-z A-Z < "$CAMEL_IN_X" > "$CAMEL_OUT_OUT"; echo "$MODE" >> "$CAMEL_OUT_OUT"
      outputs: {out: b.txt}
      env: {MODE: upper}
  c:
    kind: command
    inputs: {other: other.txt}
    params:
      run: wc -c < "$CAMEL_IN_OTHER" > "$CAMEL_OUT_OUT"
      outputs: {out: c.txt}
  d:
    kind: command
    inputs: {b: b.out, c: c.out}
    params:
      run: cat "$CAMEL_IN_B" "$CAMEL_IN_C" > "$CAMEL_OUT_OUT"
      outputs: {out: d.txt}
"#;

fn diamond() -> TestContext {
    let t = TestContext::new();
    t.write("p.yaml", DIAMOND);
    t.write("data.txt", "hello\n");
    t.write("other.txt", "12345\n");
    t
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn first_run_runs_everything_and_second_run_is_all_cached() {
    let t = diamond();
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(sorted(r.ran()), ["a", "b", "c", "d"]);
    assert_eq!(t.read(".camel/out/d/d.txt"), "HELLO\n3\nupper\n6\n");

    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.ran().is_empty(), "{}", r.stderr);
    assert_eq!(sorted(r.cached()), ["a", "b", "c", "d"]);
    assert!(t.status("p.yaml").iter().all(|s| s["state"] == "cached"));
}

#[test]
fn a_param_change_reruns_that_stage_and_its_dependents_only_and_status_says_why() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    t.write("p.yaml", &DIAMOND.replace("MODE: upper", "MODE: lower"));

    let (state, reasons) = t.state_of("p.yaml", "b");
    assert_eq!(state, "stale");
    assert_eq!(reasons, [r#"param `env.MODE` changed from "upper" to "lower""#]);
    let (state, reasons) = t.state_of("p.yaml", "d");
    assert_eq!(state, "stale");
    assert_eq!(reasons, ["upstream `b` is not cached"]);
    assert_eq!(t.state_of("p.yaml", "a").0, "cached");

    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(sorted(r.ran()), ["b", "d"]);

    // A pipeline param reaches the stages that use it, and `--set` works like an edit.
    let r = t.camel(&["run", "p.yaml", "--set", "params.n=4"]);
    r.assert_ok();
    assert_eq!(sorted(r.ran()), ["a", "b", "d"]);
    assert_eq!(t.read(".camel/out/d/d.txt"), "HELLO\n4\nlower\n6\n");
}

#[test]
fn an_input_change_reruns_its_dependents_and_a_touch_reruns_nothing() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();

    // Same bytes, new mtime: hashed again, same key.
    let later = SystemTime::now() + Duration::from_secs(5);
    fs::File::options().write(true).open(t.path("data.txt")).unwrap().set_modified(later).unwrap();
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.ran().is_empty(), "touch reran {:?}", r.ran());

    t.write("other.txt", "1234567890\n");
    let (_, reasons) = t.state_of("p.yaml", "c");
    assert_eq!(reasons.len(), 1);
    assert!(reasons[0].starts_with("input `other` (other.txt) content changed"), "{reasons:?}");
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(sorted(r.ran()), ["c", "d"]);
    assert_eq!(t.read(".camel/out/d/d.txt"), "HELLO\n3\nupper\n11\n");
}

#[test]
fn early_cutoff_keeps_dependents_cached_when_outputs_do_not_change() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    // A different command with byte-identical output.
    t.write("p.yaml", &DIAMOND.replace(r#"run: cat "$CAMEL_IN_DATA""#, r#"run: true; cat "$CAMEL_IN_DATA""#));
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a"]);
    assert_eq!(sorted(r.cached()), ["b", "c", "d"]);
}

#[test]
fn force_until_and_only() {
    let t = diamond();
    let r = t.camel(&["run", "p.yaml", "--until", "b"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a", "b"]);
    let r = t.camel(&["run", "p.yaml", "--only", "d"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("stage `c` is not cached"), "{}", r.stderr);
    t.camel(&["run", "p.yaml", "--until", "c"]).assert_ok();
    let r = t.camel(&["run", "p.yaml", "--only", "d"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["d"]);
    let r = t.camel(&["run", "p.yaml", "--force", "b"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["b"], "identical output: d stays cached");
    // Its entry was there: --force is the whole reason.
    assert!(
        r.stderr.contains("runs: forced (--force)") && !r.stderr.contains("cache entry missing"),
        "{}",
        r.stderr
    );
    let r = t.camel(&["run", "p.yaml", "--until", "nope"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no stage `nope`"));
}

#[test]
fn a_failing_stage_exits_1_names_its_log_and_leaves_no_entry() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: fail
stages:
  ok:
    kind: command
    params: {run: echo fine > "$CAMEL_OUT_OUT", outputs: {out: o.txt}}
  bad:
    kind: command
    inputs: {x: ok.out}
    params: {run: echo partial > "$CAMEL_OUT_OUT"; echo boom >&2; exit 3, outputs: {out: o.txt}}
  after:
    kind: command
    inputs: {x: bad.out}
    params: {run: cp "$CAMEL_IN_X" "$CAMEL_OUT_OUT", outputs: {out: o.txt}}
  lazy:
    kind: command
    params: {run: "true", outputs: {out: never.txt}}
"#,
    );
    let r = t.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("stage `bad` failed: the command exited with status 3"), "{}", r.stderr);
    assert!(r.stderr.contains("log: ") && r.stderr.contains("logs/bad.log"), "{}", r.stderr);
    assert!(r.stderr.contains("- after skipped"), "{}", r.stderr);
    assert!(t.read(".camel/logs/bad.log").contains("boom"));
    assert!(!t.path(".camel/out/bad").exists());
    assert_eq!(fs::read_dir(t.path(".camel/cache")).unwrap().count(), 1, "only `ok` is cached");
    let r = t.camel(&["run", "p.yaml", "--only", "lazy"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("did not write its declared output `out`"), "{}", r.stderr);
    // The log the failure points to says why, also when the stage itself wrote nothing.
    let log = t.read(".camel/logs/lazy.log");
    assert!(
        log.contains("camel: the stage failed: ") && log.contains("did not write its declared output"),
        "{log}"
    );
}

#[test]
fn scratch_survives_a_failure_and_is_removed_on_commit() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: resume
stages:
  s:
    kind: command
    params:
      run: |
        if [ -f "$CAMEL_SCRATCH/checkpoint" ]; then echo resumed > "$CAMEL_OUT_OUT"
        else echo step1 > "$CAMEL_SCRATCH/checkpoint"; exit 7; fi
      outputs: {out: o.txt}
"#,
    );
    assert_eq!(t.camel(&["run", "p.yaml"]).code, 1);
    t.camel(&["run", "p.yaml"]).assert_ok();
    assert_eq!(t.read(".camel/out/s/o.txt"), "resumed\n");
    assert_eq!(fs::read_dir(t.path(".camel/scratch")).unwrap().count(), 0);
}

#[test]
fn kill_9_at_any_moment_then_rerun_gives_the_outputs_of_an_uninterrupted_run() {
    let pipeline = r#"
name: killme
stages:
  slow:
    kind: command
    inputs: {data: data.txt}
    params:
      run: for i in $(seq 1 15); do echo "line $i $(cat "$CAMEL_IN_DATA")" >> "$CAMEL_OUT_OUT"; sleep 0.02; done
      outputs: {out: slow.txt}
  dir:
    kind: command
    inputs: {x: slow.out}
    params:
      run: mkdir -p "$CAMEL_OUT/parts"; split -l 4 "$CAMEL_IN_X" "$CAMEL_OUT/parts/p"; sleep 0.1
      outputs: {parts: parts}
  last:
    kind: command
    inputs: {parts: dir.parts}
    params:
      run: cat "$CAMEL_IN_PARTS"/* | sort -r > "$CAMEL_OUT_OUT"
      outputs: {out: last.txt}
"#;
    let reference = TestContext::new();
    reference.write("p.yaml", pipeline);
    reference.write("data.txt", "x\n");
    reference.camel(&["run", "p.yaml"]).assert_ok();
    let expected = snapshot_outputs(&reference.path(".camel"));
    assert_eq!(expected.len(), 6);

    for delay_ms in [0u64, 30, 120, 250, 380, 520] {
        let t = TestContext::new();
        t.write("p.yaml", pipeline);
        t.write("data.txt", "x\n");
        let mut child =
            t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let r = t.camel(&["run", "p.yaml"]);
        r.assert_ok();
        assert_eq!(snapshot_outputs(&t.path(".camel")), expected, "after a kill at {delay_ms} ms");
        assert_eq!(fs::read_dir(t.path(".camel/tmp")).map(|d| d.count()).unwrap_or(0), 0);
        let v = t.camel(&["verify", "p.yaml"]);
        v.assert_ok();
        assert!(!v.stdout.contains("CORRUPT"));
    }
}

#[test]
fn a_corrupted_cache_file_is_detected_and_rebuilt() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    let file = fs::canonicalize(t.path(".camel/out/b/b.txt")).unwrap();
    let mut perm = fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&file, perm).unwrap();
    fs::write(&file, "HELLO\n9\nupper\n").unwrap();

    assert_eq!(t.state_of("p.yaml", "b").0, "stale");
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains("is corrupt"), "{}", r.stderr);
    assert_eq!(r.ran(), ["b"], "the rebuilt output is identical, so d stays cached");
    assert_eq!(t.read(".camel/out/b/b.txt"), "HELLO\n3\nupper\n");

    // Corruption that keeps size and mtime escapes the cheap check but not `camel verify`.
    let file = fs::canonicalize(t.path(".camel/out/a/a.txt")).unwrap();
    let mtime = fs::metadata(&file).unwrap().modified().unwrap();
    let mut perm = fs::metadata(&file).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o644);
    fs::set_permissions(&file, perm).unwrap();
    fs::write(&file, "jello\n3\n").unwrap();
    fs::File::options().write(true).open(&file).unwrap().set_modified(mtime).unwrap();
    let v = t.camel(&["verify", "p.yaml"]);
    assert_eq!(v.code, 1);
    assert!(v.stdout.contains("a: CORRUPT"), "{}", v.stdout);
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a"]);
    assert_eq!(t.read(".camel/out/a/a.txt"), "hello\n3\n");
}

#[test]
fn concurrent_runs_fail_fast_or_wait_and_never_corrupt() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: busy
stages:
  s:
    kind: command
    params: {run: sleep 0.6; echo done > "$CAMEL_OUT_OUT", outputs: {out: o.txt}}
"#,
    );
    let first = t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let second = t.camel(&["run", "p.yaml"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains(&format!("in use by another camel process (PID {})", first.id())),
        "{}",
        second.stderr
    );
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());

    t.camel(&["run", "p.yaml", "--force", "s"]).assert_ok();
    let a = t.command(&["run", "p.yaml", "--force", "s", "--wait"]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let b = t.camel(&["run", "p.yaml", "--force", "s", "--wait"]);
    b.assert_ok();
    assert!(a.wait_with_output().unwrap().status.success());
    let v = t.camel(&["verify", "p.yaml"]);
    v.assert_ok();
    assert_eq!(v.stdout.trim(), "s: ok");
}

#[test]
fn independent_stages_run_in_parallel_with_jobs() {
    let t = TestContext::new();
    let sync = t.path("sync");
    fs::create_dir_all(&sync).unwrap();
    // Each stage waits (up to 10 s) for the other to have started: only possible in parallel.
    let stage = |me: &str, other: &str| {
        format!(
            r#"
  {me}:
    kind: command
    params:
      run: touch "$SYNC/{me}"; for i in $(seq 200); do [ -f "$SYNC/{other}" ] && break; sleep 0.05; done; [ -f "$SYNC/{other}" ]; echo {me} > "$CAMEL_OUT_OUT"
      outputs: {{out: o.txt}}
      env: {{SYNC: "{}"}}"#,
            sync.display()
        )
    };
    t.write("p.yaml", &format!("name: par\nstages:{}{}\n", stage("x", "y"), stage("y", "x")));
    let r = t.camel(&["run", "p.yaml", "--jobs", "2"]);
    r.assert_ok();
    assert_eq!(sorted(r.ran()), ["x", "y"]);
}

#[test]
fn secrets_stay_out_of_keys_provenance_and_state() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: secret
stages:
  s:
    kind: command
    params:
      run: '[ -n "$TOKEN" ] && echo used > "$CAMEL_OUT_OUT"'
      outputs: {out: o.txt}
      secret_env: {TOKEN: "${env:CAMEL_TEST_TOKEN}"}
"#,
    );
    let r = t.command(&["run", "p.yaml"]).env("CAMEL_TEST_TOKEN", "sk-very-secret-1").output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r: crate::common::Run =
        t.command(&["run", "p.yaml"]).env("CAMEL_TEST_TOKEN", "sk-other-2").output().unwrap().into();
    r.assert_ok();
    assert!(r.ran().is_empty(), "a new secret must not rerun anything");
    let mut stack = vec![t.path(".camel")];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() && !e.is_symlink() {
                stack.push(e);
            } else if e.is_file() {
                let bytes = fs::read(&e).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains("sk-very-secret"),
                    "secret in {}",
                    e.display()
                );
            }
        }
    }
    // Without the variable the stage cannot run, and says why before anything runs (issue 16:
    // an invalid pipeline, exit 2, rather than a stage failure).
    let r: crate::common::Run =
        t.command(&["run", "p.yaml", "--force", "s"]).env_remove("CAMEL_TEST_TOKEN").output().unwrap().into();
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("environment variable `CAMEL_TEST_TOKEN` is not set"), "{}", r.stderr);
}

#[test]
fn gc_removes_what_no_pipeline_reaches() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    t.camel(&["run", "p.yaml", "--set", "b.env.MODE=x"]).assert_ok();
    assert_eq!(fs::read_dir(t.path(".camel/cache")).unwrap().count(), 6);
    let r = t.camel(&["gc", "p.yaml", "--dry-run"]);
    r.assert_ok();
    assert!(r.stdout.contains("would remove 2"), "{}", r.stdout);
    assert_eq!(fs::read_dir(t.path(".camel/cache")).unwrap().count(), 6);
    t.camel(&["gc", "p.yaml"]).assert_ok();
    assert_eq!(fs::read_dir(t.path(".camel/cache")).unwrap().count(), 4);
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.ran().is_empty());
}

#[test]
fn show_and_dag_describe_the_pipeline() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    let r = t.camel(&["show", "p.yaml", "d", "--json"]);
    r.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["provenance"]["stage"], "d");
    assert_eq!(v["provenance"]["inputs"]["b"]["from"], "b.out");
    assert_eq!(v["outputs"][0]["size"], 16);
    let dag = t.camel(&["dag", "p.yaml", "--format", "mermaid"]);
    dag.assert_ok();
    assert!(dag.stdout.contains("b -->|out → b| d"), "{}", dag.stdout);
    let dot = t.camel(&["dag", "p.yaml", "--format", "dot"]);
    assert!(dot.stdout.starts_with("digraph"), "{}", dot.stdout);
}

#[test]
fn ctrl_c_stops_the_running_command_and_commits_nothing() {
    let t = TestContext::new();
    t.write(
        "p.yaml",
        r#"
name: interrupt
stages:
  long:
    kind: command
    params: {run: echo started > "$CAMEL_SCRATCH/mark"; sleep 30; echo x > "$CAMEL_OUT_OUT", outputs: {out: o.txt}}
"#,
    );
    let child = t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until the command has started.
    wait_for_scratch_file(&t, "mark", 200);
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(10), "the 30 s command was not stopped");
    // 130, as a shell reports SIGINT (issue 17; it was 1).
    assert_eq!(out.status.code(), Some(130));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!t.path(".camel/out/long").exists());
    assert_eq!(fs::read_dir(t.path(".camel/cache")).map(|d| d.count()).unwrap_or(0), 0);
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn gone(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Fails with `why` unless process `pid` is gone; a stray one is killed first.
fn assert_gone(pid: i32, why: &str) {
    let left = !gone(pid);
    if left {
        // SAFETY: the test's own stray process.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(!left, "{why}");
}

/// Waits (`tries` × 25 ms at most) until a stage's scratch dir holds `name`: its command started.
fn wait_for_scratch_file(t: &TestContext, name: &str, tries: usize) {
    let scratch = t.path(".camel/scratch");
    for _ in 0..tries {
        let started = fs::read_dir(&scratch)
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| e.map(|e| e.path().join(name).exists()).unwrap_or(false));
        if started {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits up to `secs` for `file` to hold a pid.
fn pid_in(file: &std::path::Path, secs: u64) -> i32 {
    for _ in 0..secs * 40 {
        if let Some(pid) = fs::read_to_string(file).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("no pid in {}", file.display());
}

#[test]
fn what_a_command_started_dies_with_camel_even_after_kill_9() {
    let t = TestContext::new();
    let pid_file = t.path("bg.pid");
    t.write(
        "p.yaml",
        &format!(
            r#"
name: orphans
stages:
  long:
    kind: command
    params: {{run: 'sleep 300 & echo $! > "{}"; wait', outputs: {{out: o.txt}}}}
"#,
            pid_file.display()
        ),
    );
    let mut child =
        t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let bg = pid_in(&pid_file, 20);
    assert!(!gone(bg));
    child.kill().unwrap();
    child.wait().unwrap();
    let t0 = std::time::Instant::now();
    while !gone(bg) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_gone(bg, "the command's background process outlived a kill -9 of camel");
}

#[test]
fn a_command_ends_when_its_script_does_and_what_it_left_running_is_stopped() {
    let t = TestContext::new();
    let pid_file = t.path("bg.pid");
    t.write(
        "p.yaml",
        &format!(
            r#"
name: daemon
stages:
  start:
    kind: command
    params: {{run: 'sleep 300 & echo $! > "{}"; echo ok > "$CAMEL_OUT_OUT"', outputs: {{out: o.txt}}}}
"#,
            pid_file.display()
        ),
    );
    let t0 = std::time::Instant::now();
    t.camel(&["run", "p.yaml"]).assert_ok();
    assert!(t0.elapsed() < Duration::from_secs(20), "camel waited for the background process");
    let bg = pid_in(&pid_file, 1);
    assert_gone(bg, "the stage's background process outlived it");
}

#[test]
fn an_input_edited_while_its_stage_runs_is_not_cached_under_the_old_content() {
    let t = TestContext::new();
    t.write("data.txt", "version A\n");
    t.write(
        "p.yaml",
        r#"
name: edit
stages:
  copy:
    kind: command
    inputs: {data: data.txt}
    params: {run: 'touch "$CAMEL_SCRATCH/started"; sleep 2; cp "$CAMEL_IN_DATA" "$CAMEL_OUT_OUT"', outputs: {out: o.txt}}
"#,
    );
    let child = t.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_scratch_file(&t, "started", 400);
    t.write("data.txt", "version B\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("input `data` (data.txt) changed while the stage ran"), "{stderr}");
    assert_eq!(
        fs::read_dir(t.path(".camel/cache")).map(|d| d.count()).unwrap_or(0),
        0,
        "an entry was committed"
    );
    // Back to A: it runs (nothing cached under A's key), and gives A.
    t.write("data.txt", "version A\n");
    t.camel(&["run", "p.yaml"]).assert_ok();
    assert_eq!(t.read(".camel/out/copy/o.txt"), "version A\n");
}

#[test]
fn a_directory_input_holding_the_workspace_is_hashed_without_it() {
    let t = TestContext::new();
    t.write("src/a.txt", "a\n");
    t.write(
        "p.yaml",
        r#"
name: dot
stages:
  build:
    kind: command
    inputs: {src: .}
    params: {run: 'ls "$CAMEL_IN_SRC/src" > "$CAMEL_OUT_OUT"', outputs: {out: o.txt}}
"#,
    );
    t.camel(&["run", "p.yaml"]).assert_ok();
    let again = t.camel(&["run", "p.yaml"]);
    again.assert_ok();
    assert!(again.stderr.contains("cached") || again.stdout.contains("cached"), "{}", again.stderr);
    let status = t.camel(&["status", "p.yaml"]);
    assert!(status.stdout.contains("cached"), "{}", status.stdout);
    // An edit outside the workspace still counts.
    t.write("src/a.txt", "b\n");
    let status = t.camel(&["status", "p.yaml"]);
    assert!(status.stdout.contains("stale"), "{}", status.stdout);
}

/// The stat cache is only an accelerator: failing to save it (a full disk; here its path is
/// taken by a directory) is a warning, not a failed run.
#[test]
fn a_stat_cache_that_cannot_be_saved_does_not_fail_the_run() {
    let t = diamond();
    t.camel(&["run", "p.yaml"]).assert_ok();
    // An input old enough to be remembered (a file younger than 2 s is not), so that the next
    // run has something to save.
    let touched =
        std::process::Command::new("touch").args(["-d", "1 hour ago"]).arg(t.path("other.txt")).status();
    assert!(touched.unwrap().success());
    let path = t.path(".camel/state/statcache.json");
    let _ = fs::remove_file(&path);
    fs::create_dir_all(path.join("blocker")).unwrap();
    let r = t.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains("the stat cache was not saved"), "{}", r.stderr);
}
