//! How training stages start their worker processes (stages/torch/src/launch.rs), with a stand-in
//! worker (`$CAMEL_TORCH_WORKER`, a Python script that records its environment) so that the
//! launcher is tested on its own: `nproc_per_node` local ranks with one rendezvous, the first
//! failing rank stopping the others and naming the error, and a torchrun-style launch where rank 0
//! runs the pipeline and the other ranks follow its jobs. The real distributed training is
//! tested in stages/torch-worker/tests/.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::TestContext;

const FAKE_WORKER: &str = r#"#!/usr/bin/env python3
import json, os, sys, time
assert sys.argv[1] == "train", sys.argv
job_path = sys.argv[2]
job = json.load(open(job_path))
rank = int(os.environ.get("RANK", "0"))
names = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]
rec = {k: os.environ.get(k) for k in names}
rec.update(job=job, distributed=job["params"].get("distributed"))
with open(os.environ["FAKE_WORKER_LOG"], "a") as f:
    f.write(json.dumps(rec) + "\n")
fail = os.environ.get("FAKE_FAIL_RANK")
if fail == str(rank):
    time.sleep(0.3)
    print(f"camel-torch-worker: error: [rank {rank}] all_reduce timed out", file=sys.stderr, flush=True)
    sys.exit(1)
if fail is not None:
    time.sleep(120)  # a peer blocked in a collective: the launcher must stop it
if rank == 0:
    out = job["out_dir"]
    os.makedirs(out + "/model", exist_ok=True)
    open(out + "/model/config.json", "w").write("{}")
    open(out + "/metrics.jsonl", "w").write('{"step": 1}\n')
    open(out + "/loss.svg", "w").write("<svg/>")
    print("camel-progress: 1/1 steps", flush=True)
"#;

fn pipeline(distributed: &str) -> String {
    format!(
        r#"
name: launch-test
stages:
  pretrain:
    kind: pretrain
    inputs: {{tokens: tokens}}
    params:
      config: {{vocab_size: 97, hidden_size: 48, intermediate_size: 96, num_hidden_layers: 2,
               num_attention_heads: 4, num_key_value_heads: 2}}
      device: cpu
{distributed}
"#
    )
}

struct Setup {
    t: TestContext,
    worker: PathBuf,
    log: PathBuf,
}

fn setup(distributed: &str) -> Setup {
    let t = TestContext::new();
    let worker = t.write("fake-worker", FAKE_WORKER);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();
    t.write("tokens/meta.json", "{}");
    t.write("p.yaml", &pipeline(distributed));
    let log = t.path("ranks.jsonl");
    Setup { t, worker, log }
}

impl Setup {
    fn run(&self, envs: &[(&str, &str)]) -> Command {
        let mut c = self.t.command(&["run", "p.yaml"]);
        c.env("CAMEL_TORCH_WORKER", &self.worker).env("FAKE_WORKER_LOG", &self.log);
        for k in ["RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            c.env_remove(k);
        }
        c.envs(envs.iter().copied());
        c
    }

    fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn nproc_per_node_starts_that_many_ranks_with_one_rendezvous() {
    let s = setup("      distributed: {nproc_per_node: 2, strategy: fsdp}");
    let out = s.run(&[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut recs = s.records();
    recs.sort_by_key(|r| r["RANK"].as_str().unwrap().to_string());
    assert_eq!(recs.len(), 2, "{recs:?}");
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["RANK"], i.to_string());
        assert_eq!(r["LOCAL_RANK"], i.to_string());
        assert_eq!(r["WORLD_SIZE"], "2");
        assert_eq!(r["MASTER_ADDR"], "127.0.0.1");
        assert_eq!(r["MASTER_PORT"], recs[0]["MASTER_PORT"]);
        assert_eq!(r["distributed"]["strategy"], "fsdp");
        assert_eq!(r["distributed"]["nproc_per_node"], 2);
    }
    assert_eq!(s.t.cache_entries(), 1);
    // Cached: no worker starts again.
    assert!(s.run(&[]).output().unwrap().status.success());
    assert_eq!(s.records().len(), 2);
}

#[test]
fn without_distributed_one_worker_runs_with_no_rank_variables() {
    let s = setup("");
    // Stray variables in camel's environment do not reach a plain run's worker... unless they
    // describe a launch: RANK + WORLD_SIZE make camel a rank of one, which needs `distributed:`.
    let out = s.run(&[("MASTER_PORT", "1")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recs = s.records();
    assert_eq!(recs.len(), 1);
    assert!(recs[0]["RANK"].is_null() && recs[0]["MASTER_PORT"].is_null(), "{recs:?}");
    assert!(recs[0]["distributed"].is_null());
}

#[test]
fn the_first_failing_rank_stops_the_others_and_names_the_error() {
    let s = setup("      distributed: {nproc_per_node: 2, strategy: ddp}");
    let t0 = Instant::now();
    let out = s.run(&[("FAKE_FAIL_RANK", "1")]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(t0.elapsed() < Duration::from_secs(60), "rank 0 was not stopped: {:?}", t0.elapsed());
    assert!(stderr.contains("rank 1 exited with status 1"), "{stderr}");
    assert!(stderr.contains("[rank 1] all_reduce timed out"), "{stderr}");
    assert_eq!(s.t.cache_entries(), 0);
    // The rerun (here: the fault gone) finishes.
    let out = s.run(&[]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(s.t.cache_entries(), 1);
}

#[test]
fn under_torchrun_rank_0_runs_the_pipeline_and_the_other_ranks_follow_its_jobs() {
    let s = setup("      distributed: {strategy: fsdp}");
    let env = |rank: &'static str| {
        [
            ("RANK", rank),
            ("LOCAL_RANK", rank),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "29431"),
            ("TORCHELASTIC_RUN_ID", "launch-test"),
        ]
    };
    let follower = s.run(&env("1")).stderr(std::process::Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let leader = s.run(&env("0")).output().unwrap();
    assert!(leader.status.success(), "{}", String::from_utf8_lossy(&leader.stderr));
    let follower = follower.wait_with_output().unwrap();
    assert!(follower.status.success(), "{}", String::from_utf8_lossy(&follower.stderr));
    let mut recs = s.records();
    recs.sort_by_key(|r| r["RANK"].as_str().unwrap().to_string());
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!((recs[0]["RANK"].as_str(), recs[1]["RANK"].as_str()), (Some("0"), Some("1")));
    assert_eq!(recs[0]["job"], recs[1]["job"], "both ranks run the same job (rank 1 from its copy)");
    assert_eq!(recs[1]["MASTER_PORT"], "29431", "the launcher's rendezvous is kept");
    assert_eq!(s.t.cache_entries(), 1, "only rank 0 writes the cache");

    // A launch whose training stage has no `distributed:` is refused, on rank 0.
    let s = setup("");
    let out = s.run(&env("0")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no `distributed:` param"));
    // Rank variables without the rendezvous address are a usage error (exit 2).
    let out = s.run(&[("RANK", "0"), ("WORLD_SIZE", "2")]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}
