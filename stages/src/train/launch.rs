//! Starting the libtorch worker for a training stage: one process; `nproc_per_node` local ranks
//! (`distributed:` in the stage's params); or, when camel itself was started by a launcher
//! (`torchrun --no-python`, Slurm's `srun`), this process's one rank of a larger group.
//!
//! Ranks find each other through c10d's TCPStore at `MASTER_ADDR:MASTER_PORT`, the torchrun
//! variables every rank reads: `RANK`, `LOCAL_RANK`, `WORLD_SIZE`, `LOCAL_WORLD_SIZE`.
//!
//! Under an external launcher every rank runs `camel run` on the same pipeline and the same
//! (shared) workspace. Rank 0 is the leader: it runs the pipeline as usual, and each time a
//! distributed training stage starts it publishes the stage's job in
//! `<workspace>/dist/<run id>/jobs.jsonl`. Every other rank is a follower: instead of running
//! the pipeline it reads that file, runs its own rank of each published job, and leaves when the
//! leader writes that its run has ended. Only the leader writes stage outputs and cache entries.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::{Duration, Instant};

use camel_engine::{StageContext, StageError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::process::{ChildOptions, run_children};

/// The stage param `distributed:`, handed to the worker in its job as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedParams {
    /// Worker processes this `camel run` starts, one device each. Under an external launcher
    /// (torchrun, srun) the launcher starts the processes and this is not used.
    pub nproc_per_node: usize,
    /// `ddp` (replicated weights, all-reduced gradients) or `fsdp` (full shard per decoder layer).
    pub strategy: Strategy,
    /// `auto` (NCCL on CUDA devices, Gloo on CPUs), `nccl` or `gloo`.
    pub backend: String,
    /// A collective or the rendezvous waiting longer than this fails the job instead of hanging.
    pub timeout_s: u64,
}

impl Default for DistributedParams {
    fn default() -> Self {
        DistributedParams {
            nproc_per_node: 1,
            strategy: Strategy::Ddp,
            backend: "auto".into(),
            timeout_s: 1800,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Ddp,
    Fsdp,
}

impl DistributedParams {
    pub fn validate(&self) -> Result<(), StageError> {
        if self.nproc_per_node == 0 {
            return Err(StageError::msg("distributed.nproc_per_node must be at least 1"));
        }
        if !matches!(self.backend.as_str(), "auto" | "nccl" | "gloo") {
            return Err(StageError::msg(format!(
                "distributed.backend is {:?}: use auto, nccl or gloo",
                self.backend
            )));
        }
        if self.timeout_s == 0 {
            return Err(StageError::msg("distributed.timeout_s must be at least 1"));
        }
        Ok(())
    }
}

/// This process's place in a group started by an external launcher (torchrun, srun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRank {
    pub rank: usize,
    pub world_size: usize,
    /// Names this launch, so that followers read the right job list.
    pub run_id: String,
}

const RANK_VARS: [&str; 5] = ["RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

impl ExternalRank {
    /// `Some` when `WORLD_SIZE` and `RANK` are set (as torchrun sets them for every process it
    /// starts). The other variables must then be set too.
    pub fn from_env() -> Result<Option<ExternalRank>, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<ExternalRank>, String> {
        let (Some(rank), Some(world)) = (var("RANK"), var("WORLD_SIZE")) else { return Ok(None) };
        let parse = |name: &str, v: &str| {
            v.trim().parse::<usize>().map_err(|_| format!("{name}={v:?} is not a number"))
        };
        let (rank, world_size) = (parse("RANK", &rank)?, parse("WORLD_SIZE", &world)?);
        if rank >= world_size {
            return Err(format!("RANK={rank} is not below WORLD_SIZE={world_size}"));
        }
        let missing: Vec<&str> = RANK_VARS.iter().copied().filter(|k| var(k).is_none()).collect();
        if !missing.is_empty() {
            return Err(format!(
                "RANK and WORLD_SIZE are set (a distributed launch) but {} {} not: start camel with \
                 torchrun, or set all of {}",
                missing.join(", "),
                if missing.len() == 1 { "is" } else { "are" },
                RANK_VARS.join(", ")
            ));
        }
        let id = var("TORCHELASTIC_RUN_ID")
            .filter(|v| !v.is_empty() && v != "none")
            .or_else(|| var("SLURM_JOB_ID"))
            .unwrap_or_else(|| {
                format!(
                    "{}-{}",
                    var("MASTER_ADDR").unwrap_or_default(),
                    var("MASTER_PORT").unwrap_or_default()
                )
            });
        let run_id: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .collect();
        Ok(Some(ExternalRank { rank, world_size, run_id }))
    }

    pub fn is_leader(&self) -> bool {
        self.rank == 0
    }

    fn jobs_file(&self, workspace: &Path) -> PathBuf {
        workspace.join("dist").join(&self.run_id).join("jobs.jsonl")
    }
}

/// Runs the worker's `train JOB` for the stage: plainly, as `nproc_per_node` local ranks, or as
/// this process's rank of an external launch (then publishing the job to the followers).
pub fn run_training_job(
    ctx: &StageContext,
    worker: &Path,
    job_path: &Path,
    dist: Option<&DistributedParams>,
) -> Result<(), StageError> {
    let opts = ChildOptions { what: super::WORKER_NAME, error_prefix: Some("camel-torch-worker: error:") };
    let base = || {
        let mut cmd = Process::new(worker);
        cmd.arg("train").arg(job_path).current_dir(ctx.work_dir());
        cmd
    };
    let external = ExternalRank::from_env().map_err(StageError::msg)?;
    match (external, dist) {
        (Some(ext), _) => {
            if dist.is_none() {
                return Err(StageError::msg(format!(
                    "camel was started as rank {} of {} (RANK/WORLD_SIZE are set) but this stage has no \
                     `distributed:` param: add `distributed: {{strategy: ddp}}` (or fsdp) to it",
                    ext.rank, ext.world_size
                )));
            }
            // The job itself goes in the list: the follower may start its worker after this
            // stage has finished (then the job's scratch dir is gone, and it has nothing to do
            // but the rendezvous fails); its checkpoint paths are in the shared workspace.
            let job: serde_json::Value = std::fs::read(job_path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| StageError::msg(format!("cannot read back {}", job_path.display())))?;
            publish(ctx.workspace_dir(), &ext, &json!({"stage": ctx.stage(), "job": job}))?;
            ctx.log(&format!(
                "$ {} train {} (rank 0 of {}; followers run the other ranks)",
                worker.display(),
                job_path.display(),
                ext.world_size
            ));
            run_children(ctx, vec![base()], opts)
        }
        (None, Some(d)) => {
            let port = free_port().map_err(StageError::io("find a free port for the ranks' rendezvous"))?;
            let n = d.nproc_per_node;
            ctx.log(&format!(
                "$ {} train {} × {n} ranks ({:?}, rendezvous 127.0.0.1:{port})",
                worker.display(),
                job_path.display(),
                d.strategy
            ));
            let cmds = (0..n)
                .map(|rank| {
                    let mut cmd = base();
                    cmd.env("RANK", rank.to_string())
                        .env("LOCAL_RANK", rank.to_string())
                        .env("WORLD_SIZE", n.to_string())
                        .env("LOCAL_WORLD_SIZE", n.to_string())
                        .env("MASTER_ADDR", "127.0.0.1")
                        .env("MASTER_PORT", port.to_string());
                    cmd
                })
                .collect();
            run_children(ctx, cmds, opts)
        }
        (None, None) => {
            ctx.log(&format!("$ {} train {}", worker.display(), job_path.display()));
            let mut cmd = base();
            for k in RANK_VARS.iter().chain(&["LOCAL_WORLD_SIZE"]) {
                cmd.env_remove(k);
            }
            run_children(ctx, vec![cmd], opts)
        }
    }
}

/// A port the OS had free a moment ago (bound, read, released).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Appends one line to the leader's job list (created with a `start` line by [`lead`]).
fn publish(workspace: &Path, ext: &ExternalRank, line: &serde_json::Value) -> Result<(), StageError> {
    if !ext.is_leader() {
        return Err(StageError::msg(format!(
            "internal: rank {} tried to publish a job; only rank 0 runs the pipeline",
            ext.rank
        )));
    }
    let path = ext.jobs_file(workspace);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(StageError::io(format!("open the job list {}", path.display())))?;
    writeln!(f, "{line}")
        .and_then(|()| f.sync_all())
        .map_err(StageError::io(format!("write {}", path.display())))
}

/// Called by the leader (rank 0 of an external launch) before and after its run: a fresh job list
/// with a `start` line, and an `end` line with the run's outcome that tells followers to leave.
pub struct Leader {
    path: PathBuf,
}

impl Leader {
    pub fn start(workspace: &Path, ext: &ExternalRank) -> std::io::Result<Leader> {
        let path = ext.jobs_file(workspace);
        std::fs::create_dir_all(path.parent().expect("jobs file has a parent"))?;
        let tmp = path.with_extension("tmp");
        let nonce = format!("{}-{}", std::process::id(), now_ms());
        std::fs::write(&tmp, format!("{}\n", json!({"start": nonce, "world_size": ext.world_size})))?;
        std::fs::rename(&tmp, &path)?;
        Ok(Leader { path })
    }

    pub fn end(self, ok: bool) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.path) {
            let _ = writeln!(f, "{}", json!({"end": if ok { "ok" } else { "failed" }}));
            let _ = f.sync_all();
        }
    }
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// What a follower (rank > 0 of an external launch) does instead of running the pipeline: waits
/// for the leader's job list, runs its rank of each job in order, and returns when the leader
/// writes `end`. `wait_limit`: how long to wait for the leader to start or publish (it may
/// still be running upstream stages such as tokenization).
pub fn follow(
    workspace: &Path,
    ext: &ExternalRank,
    worker: &Path,
    wait_limit: Duration,
) -> Result<(), String> {
    let path = ext.jobs_file(workspace);
    // A list that had ended when this follower started is an earlier launch's: wait for the
    // leader to replace it (it writes a new list, with a new `start` nonce, when its run begins).
    let start_nonce = |lines: &[serde_json::Value]| {
        lines.first().and_then(|l| l.get("start")).and_then(|v| v.as_str()).map(str::to_string)
    };
    let initial = read_lines(&path);
    let stale = if initial.iter().any(|l| l.get("end").is_some()) { start_nonce(&initial) } else { None };
    let mut waited = Instant::now();
    let mut done = 0usize;
    let mut nonce: Option<String> = None;
    eprintln!(
        "camel: rank {} of {}: following rank 0's jobs in {}",
        ext.rank,
        ext.world_size,
        path.display()
    );
    loop {
        let lines = read_lines(&path);
        let current = start_nonce(&lines);
        let fresh = current.is_some() && current != stale;
        if fresh && current != nonce {
            nonce = current;
            done = 0;
        }
        if fresh {
            let jobs: Vec<&serde_json::Value> = lines.iter().filter(|l| l.get("job").is_some()).collect();
            if let Some(job) = jobs.get(done) {
                let stage = job["stage"].as_str().unwrap_or("?");
                let job_path = path.with_file_name(format!("rank{}-job{done}.json", ext.rank));
                std::fs::write(&job_path, job["job"].to_string())
                    .map_err(|e| format!("cannot write {}: {e}", job_path.display()))?;
                let job_path = job_path.display().to_string();
                eprintln!("camel: rank {}: running stage {stage} ({job_path})", ext.rank);
                let status = Process::new(worker)
                    .arg("train")
                    .arg(job_path)
                    .status()
                    .map_err(|e| format!("cannot start {}: {e}", worker.display()))?;
                if !status.success() {
                    return Err(format!("rank {}'s worker for stage {stage} failed ({status})", ext.rank));
                }
                done += 1;
                waited = Instant::now();
                continue;
            }
            if let Some(end) = lines.iter().find_map(|l| l.get("end")) {
                return if end == "ok" { Ok(()) } else { Err("rank 0's run failed; see its output".into()) };
            }
        }
        if waited.elapsed() > wait_limit {
            return Err(format!(
                "rank {} waited {} s for rank 0 to publish a job in {}: is rank 0 running the same \
                 pipeline with the same workspace (a filesystem shared by every node)?",
                ext.rank,
                wait_limit.as_secs(),
                path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let Ok(f) = std::fs::File::open(path) else { return Vec::new() };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .map_while(|l| serde_json::from_str(&l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn torchrun_environment_is_read_and_checked() {
        assert_eq!(ExternalRank::from_vars(vars(&[])).unwrap(), None);
        let full = [
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "node-a"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_RUN_ID", "job/7"),
        ];
        let r = ExternalRank::from_vars(vars(&full)).unwrap().unwrap();
        assert_eq!((r.rank, r.world_size, r.run_id.as_str(), r.is_leader()), (3, 4, "job_7", false));
        let no_id = &full[..5];
        assert_eq!(ExternalRank::from_vars(vars(no_id)).unwrap().unwrap().run_id, "node-a-29500");
        let err = ExternalRank::from_vars(vars(&[("RANK", "0"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(err.contains("LOCAL_RANK, MASTER_ADDR, MASTER_PORT are not"), "{err}");
        let err = ExternalRank::from_vars(vars(&[("RANK", "2"), ("WORLD_SIZE", "2")])).unwrap_err();
        assert!(err.contains("not below"), "{err}");
        assert!(ExternalRank::from_vars(vars(&[("RANK", "x"), ("WORLD_SIZE", "2")])).is_err());
    }

    #[test]
    fn distributed_params_parse_with_defaults() {
        let d: DistributedParams = serde_yaml::from_str("{nproc_per_node: 2, strategy: fsdp}").unwrap();
        assert_eq!(
            (d.nproc_per_node, d.strategy, d.backend.as_str(), d.timeout_s),
            (2, Strategy::Fsdp, "auto", 1800)
        );
        assert!(serde_yaml::from_str::<DistributedParams>("{strategy: zero3}").is_err());
        assert!(serde_yaml::from_str::<DistributedParams>("{nprocs: 2}").is_err());
        assert!(DistributedParams { nproc_per_node: 0, ..Default::default() }.validate().is_err());
        assert!(DistributedParams { backend: "mpi".into(), ..Default::default() }.validate().is_err());
    }
}
