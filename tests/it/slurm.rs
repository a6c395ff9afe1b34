//! Stages placed on Slurm, on a real one-node cluster (Debian's slurmctld/slurmd, started by
//! `scripts/slurm-cluster`): the same outputs and keys as local runs, reattach after `kill -9`,
//! `--detach`, Ctrl-C, requeue at the time limit and on preemption with the weights of an
//! uninterrupted run, failures that say what happened, a controller failing for a moment, and a
//! two-task DDP job equal to the local two-rank run.
//!
//! The cluster needs root to start; elsewhere these tests print why they skip and pass.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{Run, TestContext, project_root};
use crate::train::{token_dir, worker};

/// The cluster's `SLURM_CONF`, starting the cluster on first use; `None` (skip) where it cannot.
fn cluster() -> Option<&'static Path> {
    static CONF: OnceLock<Option<PathBuf>> = OnceLock::new();
    CONF.get_or_init(|| {
        let script = project_root().join("scripts/slurm-cluster");
        let out = Command::new(&script).arg("start").stderr(Stdio::inherit()).output();
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                let conf = text.trim().strip_prefix("export SLURM_CONF=").map(PathBuf::from);
                if conf.is_none() {
                    eprintln!("SKIP Slurm tests: scripts/slurm-cluster start printed {text:?}");
                }
                conf
            }
            _ => {
                eprintln!(
                    "SKIP Slurm tests: no Slurm cluster could be started here (it needs root and Debian's \
                     slurmctld, slurmd, slurm-client and munge); run `scripts/test` as root, or \
                     `sudo scripts/slurm-cluster start`"
                );
                None
            }
        }
    })
    .as_deref()
}

struct Slurm {
    t: TestContext,
    conf: PathBuf,
    /// A directory first on PATH: an `sbatch` that logs each call before the real one.
    bin: PathBuf,
}

const SBATCH_WRAPPER: &str = r#"#!/bin/bash
# Counts submissions; fails the first $FAIL_FIRST calls as a busy controller would.
dir=$(dirname "$0")
n=$(($(cat "$dir/sbatch.calls" 2>/dev/null || echo 0) + 1))
echo $n > "$dir/sbatch.calls"
# A slow controller: sbatch answers after $SBATCH_DELAY seconds.
sleep "${SBATCH_DELAY:-0}"
if [ "$n" -le "${FAIL_FIRST:-0}" ]; then
    echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec /usr/bin/sbatch "$@"
"#;

impl Slurm {
    fn new() -> Option<Slurm> {
        let conf = cluster()?.to_path_buf();
        let t = TestContext::new();
        let bin = t.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let w = t.write("bin/sbatch", SBATCH_WRAPPER);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(Slurm { t, conf, bin })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.t.command(args);
        let path = format!("{}:{}", self.bin.display(), std::env::var("PATH").unwrap_or_default());
        c.env("SLURM_CONF", &self.conf).env("PATH", path);
        c
    }

    fn camel(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run camel").into()
    }

    fn submissions(&self) -> usize {
        std::fs::read_to_string(self.bin.join("sbatch.calls")).map_or(0, |s| s.trim().parse().unwrap())
    }

    /// The job ids camel recorded for this workspace's Slurm stages.
    fn job_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for e in std::fs::read_dir(self.t.path(".camel/slurm")).into_iter().flatten().flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("submission.json")) {
                let v: serde_json::Value = serde_json::from_str(&s).unwrap();
                if let Some(id) = v["job_id"].as_str() {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }

    fn slurm_cmd(&self, program: &str, args: &[&str]) -> String {
        let o = Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// `squeue`'s state of job `id` (empty once Slurm forgot it).
    fn state(&self, id: &str) -> String {
        self.slurm_cmd("squeue", &["-h", "-t", "all", "-j", id, "-o", "%T"]).trim().to_string()
    }

    fn wait_for(&self, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while !f() {
            assert!(t0.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Every stage under `slurm`, or none: the same pipeline both ways.
fn on_slurm(yaml: &str, stages: &[&str], resources: &str) -> String {
    let mut out = yaml.replace("name: ", "slurm: {poll_interval: 0.5, retry_for: 60}\nname: ");
    for s in stages {
        out = out.replace(
            &format!("  {s}:\n"),
            &format!("  {s}:\n    executor: slurm\n    resources: {resources}\n"),
        );
    }
    out
}

const COMMANDS: &str = r#"
name: slurm-commands
stages:
  a:
    kind: command
    inputs: {data: data.txt}
    params:
      run: tr a-z A-Z < "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT"; sleep "$PAUSE"
      outputs: {out: a.txt}
      env: {PAUSE: "0"}
  b:
    kind: command
    inputs: {a: a.out}
    params:
      run: wc -c < "$CAMEL_IN_A" > "$CAMEL_OUT_OUT"
      outputs: {out: b.txt}
"#;

fn keys(t: &TestContext, pipeline: &str) -> Vec<(String, String)> {
    t.status(pipeline)
        .iter()
        .map(|s| (s["stage"].as_str().unwrap().to_string(), s["key"].as_str().unwrap_or("").to_string()))
        .collect()
}

#[test]
fn a_command_stage_on_slurm_gives_the_outputs_and_keys_of_a_local_run() {
    let Some(s) = Slurm::new() else { return };
    let local = TestContext::new();
    local.write("data.txt", "hello slurm\n");
    local.write("p.yaml", COMMANDS);
    local.camel(&["run", "p.yaml"]).assert_ok();

    s.t.write("data.txt", "hello slurm\n");
    // `time: 5` as a YAML number: sbatch's minutes, as a string would be.
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{time: 5, mem: 500}"));
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a", "b"]);
    assert!(r.stderr.contains("submitted as Slurm job"), "{}", r.stderr);
    assert_eq!(s.submissions(), 1);
    assert_eq!(s.t.read(".camel/out/a/a.txt"), "HELLO SLURM\n");
    assert_eq!(s.t.read(".camel/out/b/b.txt"), local.read(".camel/out/b/b.txt"));
    assert_eq!(keys(&s.t, "p.yaml"), keys(&local, "p.yaml"), "placement is not part of the key");
    // The batch script stays for the user to read, and status says where the stage runs.
    let st = s.camel(&["status", "p.yaml"]);
    assert!(st.stdout.contains("command (on slurm)"), "{}", st.stdout);
    let script = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    let job_sh = std::fs::read_to_string(script.join("job.sh")).unwrap();
    assert!(job_sh.contains("#SBATCH --time=5\n") && job_sh.contains("#SBATCH --mem=500\n"), "{job_sh}");
    // Cached now: nothing is submitted again.
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.cached(), ["a", "b"]);
    assert_eq!(s.submissions(), 1);
}

/// Starts `camel run` and returns it once its Slurm job is in the queue.
fn start_and_wait_for_job(s: &Slurm, args: &[&str]) -> (Child, String) {
    let child = s.command(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut id = String::new();
    s.wait_for("the job to be submitted", Duration::from_secs(60), || {
        id = s.job_ids().into_iter().next().unwrap_or_default();
        !id.is_empty()
    });
    (child, id)
}

#[test]
fn a_killed_camel_run_reattaches_to_its_job_instead_of_submitting_again() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "kill me\n");
    s.t.write("p.yaml", &on_slurm(&COMMANDS.replace("PAUSE: \"0\"", "PAUSE: \"4\""), &["a"], "{}"));
    let (mut child, id) = start_and_wait_for_job(&s, &["run", "p.yaml"]);
    child.kill().unwrap(); // SIGKILL: no chance to clean up or cancel
    child.wait().unwrap();
    let st = s.camel(&["status", "p.yaml"]);
    assert!(st.stdout.contains(&format!("Slurm job {id}")), "{}", st.stdout);

    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains(&format!("found Slurm job {id}")), "{}", r.stderr);
    assert_eq!(s.submissions(), 1, "the stage was submitted twice");
    assert_eq!(s.t.read(".camel/out/a/a.txt"), "KILL ME\n");
}

#[test]
fn detach_submits_and_a_later_run_commits_the_finished_job() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "later\n");
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{}"));
    let r = s.camel(&["run", "p.yaml", "--detach"]);
    r.assert_ok();
    assert!(r.stderr.contains("submitted as Slurm job"), "{}", r.stderr);
    assert!(r.stderr.contains("- b skipped"), "{}", r.stderr);
    let id = s.job_ids().pop().unwrap();
    s.wait_for("the job to finish", Duration::from_secs(120), || s.state(&id) == "COMPLETED");
    let st = s.camel(&["status", "p.yaml"]);
    assert!(st.stdout.contains("finished; `camel run` commits its outputs"), "{}", st.stdout);
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a", "b"]);
    assert_eq!(s.submissions(), 1);
    assert_eq!(s.t.read(".camel/out/a/a.txt"), "LATER\n");
}

/// `camel run` killed (SIGKILL, as a lost SSH session) while it commits the outputs of a job
/// that finished unwatched: the job's `out/` is still there, and the next run commits it
/// without submitting the stage again.
#[test]
fn a_run_killed_while_it_commits_a_finished_job_leaves_the_outputs_for_the_next_run() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", &format!("commit me {}\n", s.t.dir.path().display()));
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{}"));
    s.camel(&["run", "p.yaml", "--detach"]).assert_ok();
    let id = s.job_ids().pop().unwrap();
    s.wait_for("the job to finish", Duration::from_secs(120), || s.state(&id) == "COMPLETED");
    let dir = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    assert!(dir.join("out/a.txt").is_file());

    // Killed once the outputs are in the cache's staging area, before the commit.
    let r: Run =
        s.command(&["run", "p.yaml"]).env("CAMEL_SLURM_FAULT", "slurm-commit").output().unwrap().into();
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("committing its outputs"), "{}", r.stderr);
    assert!(dir.join("out/a.txt").is_file(), "the job's outputs went with the killed run");
    let st = s.camel(&["status", "p.yaml"]);
    assert!(st.stdout.contains("finished; `camel run` commits its outputs"), "{}", st.stdout);

    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(
        r.stderr.contains(&format!("Slurm job {id} submitted by an earlier run finished the stage")),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("were committed"), "{}", r.stderr);
    assert_eq!(r.ran(), ["a", "b"]);
    assert_eq!(s.submissions(), 1, "the stage was submitted again");
    assert!(s.t.read(".camel/out/a/a.txt").starts_with("COMMIT ME"));
    // Committed: the job's `out/` goes, and its record says so.
    assert!(!dir.join("out").exists());
    assert!(std::fs::read_to_string(dir.join("submission.json")).unwrap().contains("\"committed\""));
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(r.cached(), ["a", "b"]);
}

/// A job of a stage whose params changed after it was submitted keeps running: `camel run`
/// and `camel status` name it with the `scancel` that stops it, `camel gc` keeps its record
/// and scratch while it runs (so that going back to those params finds it instead of
/// submitting it twice), and removes them once it is over.
#[test]
fn a_job_left_by_a_param_change_is_named_and_kept_by_gc_while_it_runs() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", &format!("left {}\n", s.t.dir.path().display()));
    let slow = on_slurm(&COMMANDS.replace("PAUSE: \"0\"", "PAUSE: \"300\""), &["a"], "{}");
    let quick = on_slurm(&COMMANDS.replace("PAUSE: \"0\"", "PAUSE: \"1\""), &["a"], "{}");
    s.t.write("p.yaml", &slow);
    s.camel(&["run", "p.yaml", "--detach"]).assert_ok();
    let old = s.job_ids().pop().unwrap();
    let old_key = keys(&s.t, "p.yaml")[0].1.clone();
    let old_dir = s.t.path(&format!(".camel/slurm/{old_key}"));
    let old_scratch = s.t.path(&format!(".camel/scratch/{old_key}"));
    // Running the stage (a job that starts after the edit below fails at once: the stage changed).
    s.wait_for("the stage to start", Duration::from_secs(60), || {
        std::fs::read_to_string(old_dir.join("stage.log")).is_ok_and(|l| l.contains("camel exec-stage"))
    });

    // Another value of a param: another key, another job; the old one is named.
    s.t.write("p.yaml", &quick);
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(s.submissions(), 2);
    let named =
        format!("Slurm job {old} of an earlier run, for another key of this stage ({}", &old_key[..12]);
    assert!(r.stderr.contains(&named), "{}", r.stderr);
    assert!(r.stderr.contains(&format!("`scancel {old}` stops it")), "{}", r.stderr);
    let st = s.camel(&["status", "p.yaml"]);
    assert!(st.stdout.contains(&named) && st.stdout.contains(&format!("`scancel {old}`")), "{}", st.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&s.camel(&["status", "p.yaml", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["other_jobs"][0]["job_id"], old.as_str(), "{json:?}");

    // gc keeps the running job's directory and scratch, and says why.
    let g = s.camel(&["gc", "p.yaml", "--dry-run"]);
    g.assert_ok();
    assert!(g.stdout.contains(&format!("Slurm job {old} is still")), "{}", g.stdout);
    let g = s.camel(&["gc", "p.yaml"]);
    g.assert_ok();
    assert!(g.stdout.contains(&format!("Slurm job {old} is still")), "{}", g.stdout);
    assert!(g.stdout.contains(&format!("`scancel {old}` stops it")), "{}", g.stdout);
    assert!(old_dir.join("submission.json").is_file() && old_scratch.is_dir());

    // Where Slurm cannot be asked (a controller that is not there; no retries), it is kept too.
    let conf = std::fs::read_to_string(&s.conf).unwrap();
    let port = conf.lines().find_map(|l| l.strip_prefix("SlurmctldPort=")).unwrap();
    s.t.write("bad/slurm.conf", &conf.replace(&format!("SlurmctldPort={port}"), "SlurmctldPort=1"));
    s.t.write("p.yaml", &quick.replace("retry_for: 60", "retry_for: 0"));
    let g: Run =
        s.command(&["gc", "p.yaml"]).env("SLURM_CONF", s.t.path("bad/slurm.conf")).output().unwrap().into();
    g.assert_ok();
    assert!(g.stdout.contains("Slurm cannot be asked"), "{}", g.stdout);
    assert!(old_dir.join("submission.json").is_file());

    // Back to the old params: the old job is found, not submitted again.
    s.t.write("p.yaml", &slow);
    let r = s.camel(&["run", "p.yaml", "--detach"]);
    r.assert_ok();
    assert!(r.stderr.contains(&format!("found Slurm job {old}")), "{}", r.stderr);
    assert_eq!(s.submissions(), 2, "the stage was submitted twice");

    // Once it is over, gc removes what it kept.
    s.slurm_cmd("scancel", &[&old]);
    s.wait_for("the job to be cancelled", Duration::from_secs(30), || s.state(&old) == "CANCELLED");
    s.t.write("p.yaml", &quick);
    let g = s.camel(&["gc", "p.yaml"]);
    g.assert_ok();
    assert!(!g.stdout.contains("is still"), "{}", g.stdout);
    assert!(!old_dir.exists() && !old_scratch.exists());
}

#[test]
fn ctrl_c_cancels_the_job_it_waits_for() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "stop\n");
    s.t.write("p.yaml", &on_slurm(&COMMANDS.replace("PAUSE: \"0\"", "PAUSE: \"300\""), &["a"], "{}"));
    let (child, id) = start_and_wait_for_job(&s, &["run", "p.yaml"]);
    s.wait_for("the job to run", Duration::from_secs(60), || s.state(&id) == "RUNNING");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("cancelled Slurm job {id} (scancel)")), "{stderr}");
    s.wait_for("the job to be cancelled", Duration::from_secs(30), || s.state(&id) == "CANCELLED");
    assert!(!s.t.path(".camel/out/a").exists());
}

#[test]
fn failures_name_the_job_its_state_and_its_last_lines() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "x\n");
    let failing = COMMANDS.replace(
        r#"run: tr a-z A-Z < "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT"; sleep "$PAUSE""#,
        r#"run: echo "about to fail" >&2; exit 3"#,
    );
    s.t.write("p.yaml", &on_slurm(&failing, &["a"], "{}"));
    let r = s.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let id = s.job_ids().pop().unwrap();
    assert!(r.stderr.contains(&format!("Slurm job {id} ended FAILED")), "{}", r.stderr);
    assert!(r.stderr.contains("reason: NonZeroExitCode"), "Slurm's reason: {}", r.stderr);
    assert!(r.stderr.contains("exited with status 3"), "{}", r.stderr);
    // The last lines are the stage's own (what it wrote to stderr), not srun's.
    assert!(r.stderr.contains("stage.log:"), "{}", r.stderr);
    assert!(r.stderr.contains("about to fail"), "{}", r.stderr);
    assert!(r.stderr.contains("- b skipped"), "{}", r.stderr);
    assert!(!s.t.path(".camel/out/a").exists());

    // Over its memory: Slurm kills it, and camel says to raise `mem`. With more memory (the job
    // sees its own through SLURM_MEM_PER_NODE, not part of the stage's key, and then does not
    // linger), the next run submits the stage again instead of reattaching to the dead job.
    let hog = COMMANDS.replace(
        r#"run: tr a-z A-Z < "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT"; sleep "$PAUSE""#,
        r#"run: python3 -c "import os, time; b = bytearray(400 * 2**20); time.sleep(0 if int(os.environ['SLURM_MEM_PER_NODE']) > 500 else 30)"; echo fed > "$CAMEL_OUT_OUT""#,
    );
    s.t.write("p.yaml", &on_slurm(&hog, &["a"], "{mem: 100M}"));
    let r = s.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ended OUT_OF_MEMORY"), "{}", r.stderr);
    assert!(r.stderr.contains("raise `resources.mem`"), "{}", r.stderr);
    // How much it used: Slurm's own line, and the figure in the message.
    assert!(r.stderr.contains("exceeded memory limit ("), "{}", r.stderr);
    assert!(r.stderr.contains("; Slurm measured "), "{}", r.stderr);
    let before = s.submissions();
    let r = s.camel(&["run", "p.yaml", "--set", "a.resources.mem=1G"]);
    r.assert_ok();
    assert!(!r.stderr.contains("not submitting again"), "{}", r.stderr);
    assert!(r.stderr.contains("ended OUT_OF_MEMORY"), "says what became of the old job: {}", r.stderr);
    assert_eq!(s.submissions(), before + 1);
    assert_eq!(s.t.read(".camel/out/a/a.txt"), "fed\n");

    // More memory than the node has: sbatch refuses, and Slurm still keeps a FAILED job of the
    // submission's name. With a size that fits, the next run submits, ignoring that job.
    let big = COMMANDS.replace("hello", "big").replace("PAUSE: \"0\"", "PAUSE: \"1\"");
    s.t.write("p.yaml", &on_slurm(&big, &["a"], "{mem: 900G}"));
    let r = s.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("sbatch refused the job: Memory specification can not be satisfied"),
        "{}",
        r.stderr
    );
    let before = s.submissions();
    let r = s.camel(&["run", "p.yaml", "--set", "a.resources.mem=200M"]);
    r.assert_ok();
    assert_eq!(r.ran(), ["a", "b"]);
    assert_eq!(s.submissions(), before + 1);

    // A partition the cluster does not have: sbatch's own words, no retry (or, where `camel
    // run` checks its Slurm stages before it starts, that check's).
    s.t.write(
        "p.yaml",
        &on_slurm(&COMMANDS.replace("PAUSE: \"0\"", "PAUSE: \"2\""), &["a"], "{partition: nosuch}"),
    );
    let before = s.submissions();
    let r = s.camel(&["run", "p.yaml"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    if r.stderr.contains("sbatch refused the job") {
        assert!(r.stderr.contains("stage `a` failed: sbatch refused the job"), "{}", r.stderr);
        assert!(r.stderr.contains("nvalid partition"), "{}", r.stderr);
        assert_eq!(s.submissions(), before + 1);
    } else {
        assert!(r.stderr.contains("no partition `nosuch`"), "{}", r.stderr);
        assert_eq!(s.submissions(), before);
    }
}

/// A job that ended without finishing the stage (cancelled, failed), or whose outputs were
/// committed already (`--force`, an entry `camel verify` removed), is never waited for again:
/// the next run submits the stage anew and says what became of the old job.
#[test]
fn a_stage_whose_job_ended_is_submitted_again_by_the_next_run() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", &format!("again {}\n", s.t.dir.path().display()));
    // What the stage does depends on files its key does not see, so that one key can be cancelled,
    // fail, then succeed.
    let go = s.t.path("go");
    let ok = s.t.path("ok");
    let p = COMMANDS.replace(
        r#"run: tr a-z A-Z < "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT"; sleep "$PAUSE""#,
        &format!(
            r#"run: test -e '{}' || sleep 300; test -e '{}' || {{ echo "not ready yet" >&2; exit 3; }}; tr a-z A-Z < "$CAMEL_IN_DATA" > "$CAMEL_OUT_OUT""#,
            go.display(),
            ok.display()
        ),
    );
    s.t.write("p.yaml", &on_slurm(&p, &["a"], "{}"));
    let (child, first) = start_and_wait_for_job(&s, &["run", "p.yaml"]);
    s.wait_for("the job to run", Duration::from_secs(60), || s.state(&first) == "RUNNING");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    s.wait_for("the job to be cancelled", Duration::from_secs(30), || s.state(&first) == "CANCELLED");

    std::fs::write(&go, "").unwrap();
    let r = s.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("Slurm job {first} of an earlier run ended CANCELLED; submitting")),
        "no stale pending reason: {}",
        r.stderr
    );
    assert!(!r.stderr.contains("not submitting again"), "{}", r.stderr);
    assert_eq!(s.submissions(), 2);
    let second = s.job_ids().pop().unwrap();
    assert_ne!(second, first);
    assert!(r.stderr.contains(&format!("Slurm job {second} ended FAILED")), "{}", r.stderr);
    assert!(r.stderr.contains("not ready yet"), "the stage's own last lines: {}", r.stderr);

    std::fs::write(&ok, "").unwrap();
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains(&format!("Slurm job {second} of an earlier run ended FAILED")), "{}", r.stderr);
    assert_eq!(s.submissions(), 3);
    assert_eq!(r.ran(), ["a", "b"]);

    // --force: the completed job's outputs are committed; the stage runs again.
    let r = s.camel(&["run", "p.yaml", "--force", "a"]);
    r.assert_ok();
    assert_eq!(s.submissions(), 4);
    assert!(r.stderr.contains("submitted as Slurm job"), "{}", r.stderr);

    // An entry `camel verify` removed: the stage runs again too.
    let f = std::fs::canonicalize(s.t.path(".camel/out/a/a.txt")).unwrap();
    let mut perm = std::fs::metadata(&f).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&f, perm).unwrap();
    std::fs::write(&f, "CORRUPT\n").unwrap();
    let _ = s.camel(&["verify", "p.yaml"]);
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert_eq!(s.submissions(), 5);
    assert!(s.t.read(".camel/out/a/a.txt").starts_with("AGAIN"));
}

/// The default `signal_grace` (120 s) with `time: 1`: every attempt would be signalled at once.
/// Refused before anything is submitted, saying what to change.
#[test]
fn a_time_limit_shorter_than_the_default_signal_grace_is_refused() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "grace\n");
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{time: \"1\"}"));
    let r = s.camel(&["run", "p.yaml"]);
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("`signal_grace: 120` (the default)"), "{}", r.stderr);
    assert!(r.stderr.contains("set `signal_grace` to at most 29"), "{}", r.stderr);
    assert_eq!(s.submissions(), 0);
    // With a grace that fits, it runs.
    let r = s.camel(&["run", "p.yaml", "--set", "a.resources.signal_grace=10"]);
    r.assert_ok();
    assert_eq!(s.submissions(), 1);
}

/// `camel run` killed with `kill -9` while a slow sbatch runs: the record has no job id yet and
/// Slurm no job of its name. The next run waits for that sbatch's job instead of submitting a
/// second one.
#[test]
fn a_run_killed_during_a_slow_sbatch_does_not_make_the_next_run_submit_twice() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", &format!("in flight {}\n", s.t.dir.path().display()));
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{}"));
    let mut child = s
        .command(&["run", "p.yaml"])
        .env("SBATCH_DELAY", "6")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    s.wait_for("sbatch to be called", Duration::from_secs(60), || s.submissions() == 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let dir = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    let script = std::fs::read(dir.join("job.sh")).unwrap();
    assert!(s.job_ids().is_empty(), "no job id recorded yet");

    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    assert!(r.stderr.contains("may still be running"), "{}", r.stderr);
    assert!(r.stderr.contains("not submitting again"), "{}", r.stderr);
    assert_eq!(s.submissions(), 1, "the stage was submitted twice");
    assert_eq!(std::fs::read(dir.join("job.sh")).unwrap(), script, "job.sh was rewritten");
    assert_eq!(
        s.t.read(".camel/out/a/a.txt"),
        format!("IN FLIGHT {}\n", s.t.dir.path().display().to_string().to_uppercase())
    );
}

/// A workspace whose path has a space, a `#` and a `%`: sbatch takes the job's log path.
#[test]
fn a_workspace_path_with_spaces_works() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("my project #1 %j/data.txt", "spaced\n");
    s.t.write("my project #1 %j/p.yaml", &on_slurm(COMMANDS, &["a"], "{}"));
    let r = s.camel(&["run", "my project #1 %j/p.yaml"]);
    r.assert_ok();
    assert_eq!(s.t.read("my project #1 %j/.camel/out/a/a.txt"), "SPACED\n");
    let slurm = s.t.path("my project #1 %j/.camel/slurm");
    let dir = std::fs::read_dir(slurm).unwrap().next().unwrap().unwrap().path();
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .collect();
    assert_eq!(logs.len(), 1, "the job's log is in the job's directory");
}

fn preflight_jobs(s: &Slurm, conf: &Path) -> camel_engine::slurm::SlurmJobs {
    let mut settings = camel_engine::slurm::SlurmSettings::new();
    settings.retry_for = 0.0;
    let mut jobs = camel_engine::slurm::SlurmJobs::new(settings, Box::new(|_| {}));
    jobs.slurm = camel_engine::slurm::Slurm::new(Duration::from_secs(1), Duration::ZERO, Box::new(|_| {}))
        .env("SLURM_CONF", &conf.to_string_lossy())
        .env("PATH", &format!("{}:{}", s.bin.display(), std::env::var("PATH").unwrap_or_default()));
    jobs
}

/// Before a run starts anything, one `sinfo` checks the Slurm stages that will run: a partition
/// the cluster lacks, or no Slurm at all, is said at once, not after hours of local stages.
#[test]
fn the_slurm_stages_are_checked_before_anything_runs() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "early\n");
    let try_load = |resources: &str| {
        s.t.write("p.yaml", &on_slurm(COMMANDS, &["b"], resources));
        camel_engine::load(&s.t.path("p.yaml"), &[], &camel_stages::registry())
    };
    let load = |resources: &str| try_load(resources).unwrap();
    let jobs = preflight_jobs(&s, &s.conf);
    jobs.preflight(&load("{}"), |_| true).unwrap();
    jobs.preflight(&load("{partition: debug}"), |_| true).unwrap();
    let e = jobs.preflight(&load("{partition: debgu}"), |_| true).unwrap_err().to_string();
    assert!(e.contains("stage `b`: the cluster has no partition `debgu` (did you mean `debug`?"), "{e}");
    // Not selected (`--until a`): not checked.
    jobs.preflight(&load("{partition: debgu}"), |i| i == 0).unwrap();
    // Where the planner checks the merged resources itself, the pipeline does not load.
    let e = match try_load("{time: \"1\"}") {
        Ok(plan) => jobs.preflight(&plan, |_| true).unwrap_err().to_string(),
        Err(e) => format!("{e:?}"),
    };
    assert!(e.contains("signal_grace"), "{e}");

    // A controller that is not there (the cluster's config, another port).
    let conf = std::fs::read_to_string(&s.conf).unwrap();
    let port = conf.lines().find_map(|l| l.strip_prefix("SlurmctldPort=")).unwrap();
    s.t.write("bad/slurm.conf", &conf.replace(&format!("SlurmctldPort={port}"), "SlurmctldPort=1"));
    let nowhere = preflight_jobs(&s, &s.t.path("bad/slurm.conf"));
    let e = nowhere.preflight(&load("{}"), |_| true).unwrap_err().to_string();
    assert!(e.contains("Slurm does not answer from here"), "{e}");
    assert!(e.contains("--set b.executor=local"), "{e}");
    assert_eq!(s.submissions(), 0);
}

/// The same, end to end: `camel run` fails before the local stage upstream runs.
#[test]
fn camel_run_checks_its_slurm_stages_before_the_local_ones_run() {
    let Some(s) = Slurm::new() else { return };
    s.t.write("data.txt", "early\n");
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["b"], "{partition: nosuch}"));
    let r = s.camel(&["run", "p.yaml"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no partition `nosuch`"), "{}", r.stderr);
    assert!(r.ran().is_empty(), "{}", r.stderr);
    let r: Run = s
        .command(&["run", "p.yaml"])
        .env_remove("SLURM_CONF")
        .env("SLURM_CONF", s.t.path("nowhere"))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("Slurm does not answer from here"), "{}", r.stderr);
    assert_eq!(s.submissions(), 0);
}

#[test]
fn a_controller_that_fails_for_a_moment_is_retried_and_submits_once() {
    let Some(s) = Slurm::new() else { return };
    // Unique data, so that the stage's key (in its job name) is this test run's own.
    s.t.write("data.txt", &format!("retry {}\n", s.t.dir.path().display()));
    s.t.write("p.yaml", &on_slurm(COMMANDS, &["a"], "{}"));
    let r: Run = s.command(&["run", "p.yaml"]).env("FAIL_FIRST", "2").output().unwrap().into();
    r.assert_ok();
    assert!(r.stderr.contains("Socket timed out"), "the retries are visible: {}", r.stderr);
    assert_eq!(s.submissions(), 3, "two failures, then one real submission");
    assert_eq!(s.job_ids().len(), 1);
    let name = s.slurm_cmd("squeue", &["-h", "-t", "all", "-j", &s.job_ids()[0], "-o", "%j"]);
    let prefix = name.trim().rsplit_once('-').unwrap().0.to_string();
    let all = s.slurm_cmd("squeue", &["-h", "-t", "all", "-o", "%j"]);
    assert_eq!(all.lines().filter(|l| l.starts_with(&prefix)).count(), 1, "{all}");
}

// ---- training on Slurm -------------------------------------------------------------------

fn pretrain(hidden: usize, epochs: usize, extra: &str) -> String {
    format!(
        r#"
name: slurm-pretrain
stages:
  pretrain:
    kind: pretrain
    inputs: {{tokens: tokens}}
    params:
      config: {{vocab_size: 97, hidden_size: {hidden}, intermediate_size: {}, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}}
      epochs: {epochs}
      batch_size: 1
      lr: 3e-3
      checkpoint_every: 1000
      mask_ids: false
      device: cpu
      threads: 1
{extra}"#,
        hidden * 2
    )
}

fn weights(t: &TestContext) -> Vec<u8> {
    std::fs::read(t.path(".camel/out/pretrain/model/model.safetensors")).unwrap()
}

#[test]
fn pretraining_on_slurm_equals_the_local_run() {
    if worker().is_none() {
        return;
    }
    let Some(s) = Slurm::new() else { return };
    let p = pretrain(48, 1, "");
    let local = TestContext::new();
    token_dir(&local, "tokens", 16, 32, 97, None);
    local.write("p.yaml", &p);
    local.camel(&["run", "p.yaml"]).assert_ok();

    token_dir(&s.t, "tokens", 16, 32, 97, None);
    s.t.write("p.yaml", &on_slurm(&p, &["pretrain"], "{cpus_per_task: 1}"));
    s.camel(&["run", "p.yaml"]).assert_ok();
    assert!(weights(&s.t) == weights(&local), "Slurm's weights differ from the local run's");
    assert_eq!(keys(&s.t, "p.yaml"), keys(&local, "p.yaml"));
}

/// A training stage that needs longer than its 1-minute time limit: Slurm signals it before the
/// limit, it checkpoints and is requeued, and after its requeues it ends at the weights of an
/// uninterrupted run.
///
/// Slurm checks time limits every 30 s and sends the signal once `now + 30 s + grace` passes the
/// limit, so with `time: 1` and `signal_grace: 10` each attempt gets 20 to 50 s. The training is
/// sized (from a one-epoch measurement) to need about 130 s, so at least three attempts; the
/// uninterrupted reference runs beside the Slurm job.
#[test]
fn a_training_stage_outlives_its_time_limit_by_requeueing_from_checkpoints() {
    if worker().is_none() {
        return;
    }
    let Some(s) = Slurm::new() else { return };
    let probe = TestContext::new();
    token_dir(&probe, "tokens", 48, 64, 97, None);
    probe.write("p.yaml", &pretrain(160, 1, ""));
    probe.camel(&["run", "p.yaml"]).assert_ok();
    // Training speed without the process's start-up: the worker's summary line in the log.
    let log = probe.read(".camel/logs/pretrain.log");
    let summary: serde_json::Value = log
        .lines()
        .rev()
        .find_map(|l| l.find("{\"steps\"").and_then(|i| serde_json::from_str(&l[i..]).ok()))
        .unwrap_or_else(|| panic!("no summary line in the log:\n{log}"));
    let epoch = (48.0 * 64.0) / summary["tokens_per_s"].as_f64().unwrap();
    let epochs = (130.0 / epoch).ceil() as usize;
    let p = pretrain(160, epochs, "");

    token_dir(&s.t, "tokens", 48, 64, 97, None);
    s.t.write("p.yaml", &on_slurm(&p, &["pretrain"], "{time: \"1\", signal_grace: 10, max_requeues: 20}"));
    let slurm_run =
        s.command(&["run", "p.yaml"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let local = TestContext::new();
    token_dir(&local, "tokens", 48, 64, 97, None);
    local.write("p.yaml", &p);
    let t0 = Instant::now();
    local.camel(&["run", "p.yaml"]).assert_ok();
    let local_time = t0.elapsed();
    let out = slurm_run.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    let id = s.job_ids().pop().unwrap();
    let job_log = std::fs::read_to_string(dir.join(format!("slurm-{id}.out"))).unwrap();
    // About 130 s of training in attempts of about 40 s: at least one requeue even when the
    // probe ran under another load than this run (the whole suite on 2 cores made it 87 s once).
    let requeues = job_log.matches("requeueing").count();
    assert!(
        requeues >= 1,
        "expected a requeue ({epochs} epochs; the local run took {local_time:?}); job log:\n{job_log}"
    );
    assert_eq!(s.submissions(), 1, "requeued by Slurm, not submitted again");
    assert!(
        weights(&s.t) == weights(&local),
        "the requeued run's weights differ from the uninterrupted run's"
    );
}

/// A preemption, simulated as Slurm's own notice (SIGUSR1 to the job's steps) followed by a
/// requeue: the stage resumes from the checkpoint it saved.
#[test]
fn a_preempted_training_job_resumes_from_its_checkpoint() {
    if worker().is_none() {
        return;
    }
    let Some(s) = Slurm::new() else { return };
    let p = pretrain(96, 4, "");
    let local = TestContext::new();
    token_dir(&local, "tokens", 32, 64, 97, None);
    local.write("p.yaml", &p);
    local.camel(&["run", "p.yaml"]).assert_ok();

    token_dir(&s.t, "tokens", 32, 64, 97, None);
    s.t.write("p.yaml", &on_slurm(&p, &["pretrain"], "{}"));
    let (child, id) = start_and_wait_for_job(&s, &["run", "p.yaml"]);
    let dir = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    // Wait until training has made some steps, then preempt.
    s.wait_for("training progress", Duration::from_secs(120), || {
        std::fs::read_to_string(dir.join("progress.json"))
            .is_ok_and(|p| p.contains("\"pos\":") && !p.contains("\"pos\":0"))
    });
    s.slurm_cmd("scancel", &["--signal=USR1", &id]);
    s.wait_for("the stage to checkpoint", Duration::from_secs(60), || {
        std::fs::read_to_string(dir.join("stage.log")).is_ok_and(|l| l.contains("saved a checkpoint at step"))
    });
    s.slurm_cmd("scontrol", &["requeue", &id]);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("Slurm job {id} was requeued")), "the requeue is told: {stderr}");
    let log = std::fs::read_to_string(s.t.path(".camel/logs/pretrain.log")).unwrap();
    assert!(log.contains("resuming from the checkpoint at step"), "{log}");
    assert_eq!(s.submissions(), 1);
    assert!(
        weights(&s.t) == weights(&local),
        "the preempted run's weights differ from the uninterrupted run's"
    );
}

/// `tasks_per_node: 2` starts two ranks with srun; with `distributed: {strategy: ddp}` they train
/// together over Gloo, as the local two-rank run does.
#[test]
fn a_two_task_ddp_job_equals_the_local_two_rank_run() {
    if worker().is_none() {
        return;
    }
    let Some(s) = Slurm::new() else { return };
    let dist = "      distributed: {strategy: ddp, nproc_per_node: 2, timeout_s: 120}\n";
    let p = pretrain(48, 1, dist);
    let local = TestContext::new();
    token_dir(&local, "tokens", 16, 32, 97, None);
    local.write("p.yaml", &p);
    local.camel(&["run", "p.yaml"]).assert_ok();

    token_dir(&s.t, "tokens", 16, 32, 97, None);
    s.t.write("p.yaml", &on_slurm(&p, &["pretrain"], "{tasks_per_node: 2, cpus_per_task: 1}"));
    let r = s.camel(&["run", "p.yaml"]);
    r.assert_ok();
    let dir = std::fs::read_dir(s.t.path(".camel/slurm")).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_to_string(dir.join("job.sh")).unwrap().contains("--ntasks-per-node=2"));
    assert!(
        weights(&s.t) == weights(&local),
        "the two-task Slurm run's weights differ from the local two-rank run's"
    );
}
