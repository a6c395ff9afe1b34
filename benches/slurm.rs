//! `cargo bench --workspace --bench slurm`: what running a stage on Slurm costs over running it
//! locally, on a real cluster (`scripts/slurm-cluster start` as root; `SLURM_CONF` from it).
//!
//! Three timings of the same one-command stage, each from a fresh workspace, median of N:
//! 1. `camel run` with the stage local;
//! 2. the scheduler's own latency: the same command as a bare `sbatch` job, polled with `squeue`
//!    every 100 ms until it has completed (what any tool pays to run something on Slurm);
//! 3. `camel run` with the stage on Slurm (submission, polling, reading the result, commit).
//!
//! camel's overhead is (3) − (2) − (1)'s non-stage part; the goal is under 2 s. The poll interval
//! used is printed: camel's default is 10 s, which this bench lowers to 0.2 s so that the figure
//! measures camel, not the interval (the overhead grows by up to one interval with the default).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PIPELINE: &str = r#"
name: bench-slurm
slurm: {poll_interval: 0.2}
stages:
  a:
    kind: command
    params:
      run: echo done > "$CAMEL_OUT_OUT"
      outputs: {out: a.txt}
"#;

fn main() {
    let Some(conf) = std::env::var_os("SLURM_CONF") else {
        println!("skipped: set SLURM_CONF (`eval $(sudo scripts/slurm-cluster start)` prints it)");
        return;
    };
    let n: usize = std::env::var("CAMEL_BENCH_RUNS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let camel = env!("CARGO_BIN_EXE_camel");
    let run = |yaml: &str| -> Duration {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.yaml"), yaml).unwrap();
        let t0 = Instant::now();
        let out = Command::new(camel)
            .args(["run", "p.yaml"])
            .current_dir(dir.path())
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        t0.elapsed()
    };
    let bare = || -> Duration {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("job.sh");
        std::fs::write(&script, "#!/bin/bash\nsrun bash -c 'echo done > out.txt'\n").unwrap();
        let t0 = Instant::now();
        let id = sbatch(&script, dir.path(), &conf);
        loop {
            let o = Command::new("squeue")
                .args(["-h", "-t", "all", "-j", &id, "-o", "%T"])
                .env("SLURM_CONF", &conf)
                .output()
                .unwrap();
            if String::from_utf8_lossy(&o.stdout).trim() == "COMPLETED" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        t0.elapsed()
    };
    let slurm_yaml = PIPELINE.replace("    kind: command", "    kind: command\n    executor: slurm");
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let local = median((0..n).map(|_| run(PIPELINE)).collect());
    let sched = median((0..n).map(|_| bare()).collect());
    let slurm = median((0..n).map(|_| run(&slurm_yaml)).collect());
    let overhead = slurm.as_secs_f64() - sched.as_secs_f64() - local.as_secs_f64();
    println!("local camel run:          {:.2} s (median of {n})", local.as_secs_f64());
    println!("bare sbatch + squeue:     {:.2} s (the scheduler's own latency)", sched.as_secs_f64());
    println!("camel run on Slurm:       {:.2} s (poll interval 0.2 s)", slurm.as_secs_f64());
    println!(
        "camel's Slurm overhead:   {overhead:.2} s over scheduler latency + local run; ratio to the 2 s goal {:.2} (goal <= 1.00)",
        overhead / 2.0
    );
}

fn sbatch(script: &Path, dir: &Path, conf: &std::ffi::OsStr) -> String {
    let o = Command::new("sbatch")
        .args(["--parsable", "-o", "/dev/null"])
        .arg(script)
        .current_dir(dir)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().split(';').next().unwrap().to_string()
}
