//! Launching a training job's ranks: one process; `nproc_per_node` local ranks
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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use camel_engine::process::StageHost;
use camel_engine::{StageContext, StageError};
use camel_torch_job::follow::RunEnd;
use camel_torch_job::{DistParams, Job, JobListLine};

use crate::worker::{RANK_VARS, Ranks, Subcommand, Terminal, Worker};

/// This process's place in a group started by an external launcher (torchrun, srun).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRank {
    pub rank: usize,
    pub world_size: usize,
    /// Names this launch, so that followers read the right job list.
    pub run_id: String,
}

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
    worker: &Worker,
    job: &Job,
    job_path: &Path,
    dist: Option<&DistParams>,
) -> Result<(), StageError> {
    let external = ExternalRank::from_env().map_err(StageError::msg)?;
    let ranks = match (external, dist) {
        (Some(ext), None) => {
            return Err(StageError::msg(format!(
                "camel was started as rank {} of {} (RANK/WORLD_SIZE are set) but this stage has no \
                 `distributed:` param: add `distributed: {{strategy: ddp}}` (or fsdp) to it",
                ext.rank, ext.world_size
            )));
        }
        (Some(ext), Some(_)) => {
            // The job itself goes in the list: the follower may start its worker after this
            // stage has finished (then the job's scratch dir is gone, and it has nothing to do
            // but the rendezvous fails); its checkpoint paths are in the shared workspace.
            publish(
                ctx.workspace_dir(),
                &ext,
                &JobListLine::Job { stage: ctx.stage().to_string(), job: Box::new(job.clone()) },
            )?;
            ctx.log(&format!(
                "$ {} train {} (rank 0 of {}; followers run the other ranks)",
                worker.path().display(),
                job_path.display(),
                ext.world_size
            ));
            Ranks::Inherit
        }
        (None, Some(d)) => {
            let ranks = Ranks::local(d.nproc_per_node)?;
            if let Ranks::Local { n, port } = ranks {
                ctx.log(&format!(
                    "$ {} train {} × {n} ranks ({:?}, rendezvous 127.0.0.1:{port})",
                    worker.path().display(),
                    job_path.display(),
                    d.strategy
                ));
            }
            ranks
        }
        (None, None) => {
            ctx.log(&format!("$ {} train {}", worker.path().display(), job_path.display()));
            Ranks::Single
        }
    };
    let host = crate::partial::RecordTotal::new(StageHost::new(ctx)?, ctx.scratch_dir());
    worker.run(&host, Subcommand::Train, job_path, ranks, Some(ctx.work_dir()))
}

/// Appends one line to the leader's job list (created with a `start` line by [`Leader::start`]).
fn publish(workspace: &Path, ext: &ExternalRank, line: &JobListLine) -> Result<(), StageError> {
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
    writeln!(f, "{}", camel_torch_job::to_json_line(line))
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
        let start = JobListLine::Start {
            start: format!("{}-{}", std::process::id(), now_ms()),
            world_size: ext.world_size,
        };
        let line = format!("{}\n", camel_torch_job::to_json_line(&start));
        camel_cache::write_atomic(&path, line.as_bytes()).map_err(std::io::Error::other)?;
        Ok(Leader { path })
    }

    pub fn end(self, ok: bool) {
        let end = JobListLine::End { end: if ok { RunEnd::Ok } else { RunEnd::Failed } };
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&self.path) {
            let _ = writeln!(f, "{}", camel_torch_job::to_json_line(&end));
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
    worker: &Worker,
    wait_limit: Duration,
) -> Result<(), String> {
    let path = ext.jobs_file(workspace);
    // A list that had ended when this follower started is an earlier launch's: wait for the
    // leader to replace it (it writes a new list, with a new `start` nonce, when its run begins).
    let start_nonce = |lines: &[JobListLine]| match lines.first() {
        Some(JobListLine::Start { start, .. }) => Some(start.clone()),
        _ => None,
    };
    let ended = |lines: &[JobListLine]| {
        lines.iter().find_map(|l| match l {
            JobListLine::End { end } => Some(*end),
            _ => None,
        })
    };
    let initial = read_lines(&path);
    let stale = if ended(&initial).is_some() { start_nonce(&initial) } else { None };
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
            let mut jobs = lines.iter().filter_map(|l| match l {
                JobListLine::Job { stage, job } => Some((stage, job)),
                _ => None,
            });
            if let Some((stage, job)) = jobs.nth(done) {
                let job_path = path.with_file_name(format!("rank{}-job{done}.json", ext.rank));
                std::fs::write(&job_path, camel_torch_job::to_json_line(job))
                    .map_err(|e| format!("cannot write {}: {e}", job_path.display()))?;
                eprintln!("camel: rank {}: running stage {stage} ({})", ext.rank, job_path.display());
                worker
                    .run(&Terminal::passthrough(), Subcommand::Train, &job_path, Ranks::Inherit, None)
                    .map_err(|e| format!("rank {}'s worker for stage {stage} failed: {e}", ext.rank))?;
                done += 1;
                waited = Instant::now();
                continue;
            }
            if let Some(end) = ended(&lines) {
                return match end {
                    RunEnd::Ok => Ok(()),
                    RunEnd::Failed => Err("rank 0's run failed; see its output".into()),
                };
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

/// The complete lines of the job list, up to the first that does not parse (the leader may be
/// writing it).
fn read_lines(path: &Path) -> Vec<JobListLine> {
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
}
