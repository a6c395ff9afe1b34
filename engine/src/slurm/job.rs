//! One Slurm stage's job, from `camel run`'s side: its directory in the workspace, the batch
//! script, the submission record that lets a later `camel run` find the job again, the wait, and
//! the verdict.
//!
//! ```text
//! <workspace>/slurm/<key>/
//!   job.sh          the batch script (kept for the user to read)
//!   spec.json       what `camel exec-stage` runs (see exec_stage.rs)
//!   submission.json token, job name and job id: written before sbatch is called, then with the id
//!   out/            the stage's outputs, written by the job, committed by camel run
//!   result.json     written by the job when the stage ends: ok, failed or interrupted
//!   progress.json   the stage's latest progress, for camel run's display
//!   stage.log       the stage's own log (every attempt appended)
//!   slurm-<id>.out  the job's stdout and stderr
//! ```
//!
//! Never twice: the record is written before `sbatch` runs, and the job's name carries the
//! record's token, so a `camel run` killed while `sbatch` ran finds the job by name. Never
//! orphaned: a `camel run` that finds a record waits for that job (or takes its finished output)
//! instead of submitting another, and Ctrl-C cancels the job it waits for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::ctl::{CALL_TIMEOUT, CtlError, JobState, Slurm};
use super::files::{EXIT_RESUMABLE, JobProgress, JobResult, ResultOutcome, StageSpec};
use super::settings::Executor;
use super::settings::{Resources, SlurmSettings};
use crate::error::EngineError;
use crate::key::CacheKey;
use crate::plan::Plan;
use crate::stage::Progress;

/// `submission.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submission {
    pub stage: String,
    pub token: String,
    pub job_name: String,
    /// `None` between writing the record and sbatch's answer.
    pub job_id: Option<String>,
    /// When the latest sbatch try started (RFC 3339). A record without a job id whose sbatch
    /// started less than [`IN_FLIGHT`] ago may still get its job: a later run waits for it.
    pub submitted: String,
    /// How many times camel submitted the stage again after a job ended at its time limit, a
    /// node failure or a preemption without requeue.
    #[serde(default)]
    pub resubmits: u32,
    /// sbatch's definite no (or why it could not be run): no job is coming for this record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// When `camel run` committed the job's outputs into the cache (RFC 3339); `out/` is removed
    /// only after this is written. `None` for a record written before camel said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<String>,
}

/// How long after its start an sbatch whose answer nobody saw (its `camel run` was killed) may
/// still submit the job: a call is killed after [`CALL_TIMEOUT`], and a killed camel's sbatch
/// runs on for as long as it takes; a margin for a slow controller.
pub const IN_FLIGHT: Duration = Duration::from_secs(CALL_TIMEOUT.as_secs() + 15);

/// The files of one stage's job.
#[derive(Clone, Debug)]
pub struct JobDir {
    pub dir: PathBuf,
}

impl JobDir {
    pub fn new(workspace: &Path, key: &str) -> JobDir {
        JobDir { dir: workspace.join("slurm").join(key) }
    }
    pub fn script(&self) -> PathBuf {
        self.dir.join("job.sh")
    }
    pub fn spec(&self) -> PathBuf {
        self.dir.join("spec.json")
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("submission.json")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }
    pub fn result(&self) -> PathBuf {
        self.dir.join("result.json")
    }
    pub fn progress(&self) -> PathBuf {
        self.dir.join("progress.json")
    }
    pub fn stage_log(&self) -> PathBuf {
        self.dir.join("stage.log")
    }
    pub fn job_log(&self, id: &str) -> PathBuf {
        self.dir.join(format!("slurm-{id}.out"))
    }

    pub fn read_record(&self) -> Option<Submission> {
        serde_json::from_slice(&fs::read(self.record()).ok()?).ok()
    }
    pub fn read_result(&self) -> Option<JobResult> {
        serde_json::from_slice(&fs::read(self.result()).ok()?).ok()
    }

    /// Puts the finished job's outputs into `target` (the cache's staging directory, empty) as
    /// hard links (copies where the filesystem has none), leaving `out/` as it is: until the
    /// commit is durable, `out/` is what a later `camel run` commits if this one is killed (a
    /// lost SSH session while a 13 GB checkpoint is hashed). Symlinks are recreated, so that the
    /// commit refuses them as it would a local stage's.
    pub fn link_outputs(&self, target: &Path) -> Result<(), String> {
        link_tree(&self.out(), target).map_err(|e| {
            format!(
                "cannot put {}'s files into the cache's staging area {}: {e}",
                self.out().display(),
                target.display()
            )
        })
    }

    /// Called once the job's outputs are committed: records it in `submission.json`, then
    /// removes `out/` (the cache entry holds the files now). Nothing here is needed for the
    /// entry: failures are ignored (a leftover `out/` is removed by the next submission or by
    /// `camel gc`).
    pub fn mark_committed(&self) {
        if let Some(mut rec) = self.read_record() {
            rec.committed = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
            let _ = camel_cache::write_json_atomic(&self.record(), &rec);
        }
        let _ = fs::remove_dir_all(self.out());
    }

    /// The last `n` lines of the job's log, for a failure message.
    pub fn log_tail(&self, id: &str, n: usize) -> String {
        tail(&fs::read_to_string(self.job_log(id)).unwrap_or_default(), n)
    }

    /// The job's final state as camel reports it: Slurm's (`UNKNOWN` when Slurm forgot the
    /// job), except that a job killed over its memory is `OUT_OF_MEMORY` whatever Slurm says:
    /// without cgroups, Slurm kills a step over its memory by polling and the job ends FAILED;
    /// its log says why.
    pub fn final_state(&self, id: &str, end: Option<&JobState>) -> String {
        let state = end.map_or("UNKNOWN".to_string(), |s| s.state.clone());
        if state != "OUT_OF_MEMORY" && !id.is_empty() && {
            let tail = self.log_tail(id, 40).to_ascii_lowercase();
            tail.contains("exceeded job memory limit")
                || tail.contains("oom-kill")
                || tail.contains("out of memory")
        } {
            return "OUT_OF_MEMORY".into();
        }
        state
    }

    /// The lines a failure message ends with: the last lines of the stage's own log (what the
    /// stage said, as for a local stage), and Slurm's own errors from the job's log (a step
    /// killed over its memory, a time limit, a node failure); only the job's log when the stage
    /// never started (srun could not start camel).
    pub fn failure_lines(&self, id: &str) -> String {
        let mut out = String::new();
        let stage = tail(&fs::read_to_string(self.stage_log()).unwrap_or_default(), 12);
        if !stage.is_empty() {
            out.push_str(&format!("\nlast lines of {}:\n{stage}", self.stage_log().display()));
        }
        if id.is_empty() {
            return out;
        }
        let job_log = fs::read_to_string(self.job_log(id)).unwrap_or_default();
        if stage.is_empty() {
            let t = tail(&job_log, 12);
            if !t.is_empty() {
                out.push_str(&format!("\nlast lines of {}:\n{t}", self.job_log(id).display()));
            }
            return out;
        }
        let mut slurm: Vec<&str> = Vec::new();
        for l in job_log.lines().map(str::trim) {
            // Each step of a job over its memory says so again: once is enough.
            if (l.starts_with("slurmstepd") || l.starts_with("srun:"))
                && !l.contains("Terminating StepId")
                && !slurm.contains(&l)
            {
                slurm.push(l);
            }
        }
        let mut shown = slurm[slurm.len().saturating_sub(4)..].to_vec();
        // The line that says how much memory the step used stays, however many lines came after.
        if let Some(m) = slurm.iter().rev().find(|l| memory_used(l).is_some())
            && !shown.contains(m)
        {
            shown.insert(0, m);
        }
        if !shown.is_empty() {
            out.push_str(&format!(
                "\nSlurm's messages in {}:\n{}",
                self.job_log(id).display(),
                shown.join("\n")
            ));
        }
        out
    }

    /// What Slurm last measured of a step killed over its memory, from the job's log:
    /// `(used, limit)` in bytes.
    pub fn memory_used(&self, id: &str) -> Option<(u64, u64)> {
        let log = fs::read_to_string(self.job_log(id)).ok()?;
        log.lines().rev().find_map(memory_used)
    }
}

/// What a Slurm stage's run came to.
#[derive(Debug)]
pub enum Waited {
    /// The job finished the stage: its outputs are in this directory, ready to commit.
    Done(PathBuf),
    /// `--detach`: the job is in the queue; a later `camel run` picks it up.
    Detached(String),
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Failed(String),
}

impl From<CtlError> for JobError {
    fn from(e: CtlError) -> Self {
        JobError::Failed(e.to_string())
    }
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> JobError {
    let m = format!("{what} {}", path.display());
    move |e| JobError::Failed(format!("failed to {m}: {e}"))
}

/// Everything camel run knows of the stage it submits.
pub struct StageJob<'a> {
    pub stage: &'a str,
    pub key: &'a str,
    pub cache_key: &'a CacheKey,
    pub resources: &'a Resources,
    pub inputs: &'a BTreeMap<String, PathBuf>,
    pub scratch: &'a Path,
    pub pipeline: &'a Path,
    pub overrides: &'a [String],
    pub workspace: &'a Path,
    /// Called each time a job is submitted for the stage (not when an earlier run's job is
    /// found): what the new job resumes from is said then, and only then.
    pub on_submit: Option<&'a dyn Fn()>,
}

/// A job of a stage under another key than the stage's current one (its params or inputs
/// changed after the job was submitted) that Slurm still lists as active: no run waits for it,
/// and its outputs are only taken if the stage comes back to that key.
#[derive(Clone, Debug, Serialize)]
pub struct OtherJob {
    /// The key the job runs the stage for.
    pub key: String,
    pub job_id: String,
    pub state: String,
    /// The pending reason, when pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl OtherJob {
    /// `Slurm job 23 of an earlier run, for another key of this stage (0e417cc79099: other params
    /// or inputs), is still PENDING (Priority)`.
    pub fn describe(&self) -> String {
        let reason = self.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        format!(
            "Slurm job {} of an earlier run, for another key of this stage ({}: other params or inputs), is \
             still {}{reason}",
            self.job_id,
            &self.key[..12.min(self.key.len())],
            self.state
        )
    }
}

/// Where a Slurm stage stands, for `camel status`.
#[derive(Clone, Debug, Serialize)]
pub struct JobInfo {
    pub job_id: Option<String>,
    /// Slurm's state, or `UNKNOWN` when Slurm no longer knows the job.
    pub state: String,
    /// The pending reason, when pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The job finished the stage and the next `camel run` commits its outputs.
    pub finished_ok: bool,
    pub dir: PathBuf,
}

/// The Slurm side of one run: one client (one `squeue` per poll for everybody) and the settings.
pub struct SlurmJobs {
    pub slurm: Slurm,
    pub settings: SlurmSettings,
}

impl SlurmJobs {
    pub fn new(settings: SlurmSettings, on_retry: Box<dyn Fn(&str) + Send + Sync>) -> SlurmJobs {
        let slurm = Slurm::new(
            Duration::from_secs_f64(settings.poll_interval.max(0.05)),
            Duration::from_secs_f64(settings.retry_for.max(0.0)),
            on_retry,
        );
        SlurmJobs { slurm, settings }
    }

    /// Submits the stage's job, or finds the one a previous `camel run` submitted, and waits for
    /// it (unless `detach`). `info` receives lines for the user (submitted, reattached,
    /// resubmitted, cancelled). As [`SlurmJobs::run_forced`] without `--force`.
    pub fn run(
        &self,
        job: &StageJob,
        detach: bool,
        cancel: &AtomicBool,
        progress: &Progress,
        info: &dyn Fn(String),
    ) -> Result<Waited, JobError> {
        self.run_forced(job, false, detach, cancel, progress, info)
    }

    /// [`SlurmJobs::run`], for a stage run with `--force` when `force`: a job of an earlier run
    /// that is still pending or running is waited for (never submitted twice), but the outputs
    /// of one that finished are not taken.
    pub fn run_forced(
        &self,
        job: &StageJob,
        force: bool,
        detach: bool,
        cancel: &AtomicBool,
        progress: &Progress,
        info: &dyn Fn(String),
    ) -> Result<Waited, JobError> {
        let jd = JobDir::new(job.workspace, job.key);
        fs::create_dir_all(&jd.dir).map_err(io("create", &jd.dir))?;
        let (mut record, mut id) = match self.earlier(&jd, force, cancel, info)? {
            Earlier::Live(rec, id) => (Some(rec), Some(id)),
            Earlier::Finished => return Ok(Waited::Done(jd.out())),
            Earlier::None => (None, None),
        };
        let mut told_others = false;
        loop {
            let current = match id.take() {
                Some(i) => i,
                None => {
                    if let Some((_, problem)) = job.resources.merged_problems().into_iter().next() {
                        return Err(JobError::Failed(problem));
                    }
                    let resubmits = record.as_ref().map_or(0, |r| r.resubmits);
                    let (rec, new_id) = self.submit(&jd, job, resubmits)?;
                    info(format!("submitted as Slurm job {new_id} (script {})", jd.script().display()));
                    if let Some(f) = job.on_submit {
                        f();
                    }
                    record = Some(rec);
                    new_id
                }
            };
            if !told_others {
                told_others = true;
                for o in self.other_active_jobs(job.workspace, job.stage, job.key) {
                    info(format!(
                        "{}; this run does not wait for it, and its outputs are only taken if the stage \
                         comes back to that key: `scancel {}` stops it",
                        o.describe(),
                        o.job_id
                    ));
                }
            }
            if detach && self.slurm.states()?.get(&current).is_some_and(JobState::is_active) {
                return Ok(Waited::Detached(current));
            }
            let end = self.wait(&jd, &current, cancel, progress, info)?;
            match self.verdict(&jd, &current, end.as_ref(), job.resources, record.as_ref()) {
                Verdict::Done => return Ok(Waited::Done(jd.out())),
                Verdict::Fail(msg) => return Err(JobError::Failed(msg)),
                Verdict::Resubmit(why) => {
                    let rec = record.as_mut().expect("a job that ran has a record");
                    rec.resubmits += 1;
                    info(format!(
                        "{why}; submitting the stage again ({} of {})",
                        rec.resubmits,
                        job.resources.max_requeues()
                    ));
                    camel_cache::write_json_atomic(&jd.record(), rec)
                        .map_err(|e| JobError::Failed(e.to_string()))?;
                    // `id` is None now: the next round submits, keeping `resubmits`.
                }
            }
        }
    }

    /// What an earlier run's submission record (if any) leaves this run to do. Only a job that
    /// may still run is waited for, and only a job that finished the stage with its outputs
    /// still uncommitted is taken (not with `force`). A job that ended any other way (failed,
    /// cancelled, out of memory or time, refused by sbatch), or whose outputs were committed
    /// already, was reported by the run that watched it (or is now, by `info`): the stage is
    /// submitted again.
    fn earlier(
        &self,
        jd: &JobDir,
        force: bool,
        cancel: &AtomicBool,
        info: &dyn Fn(String),
    ) -> Result<Earlier, JobError> {
        let Some(mut rec) = jd.read_record() else { return Ok(Earlier::None) };
        if rec.refused.is_some() {
            return Ok(Earlier::None);
        }
        let mut ended = None;
        if rec.job_id.is_none() {
            match self.find_in_flight(jd, &rec, cancel, info)? {
                Some(j) if j.is_active() => {
                    rec.job_id = Some(j.id.clone());
                    camel_cache::write_json_atomic(&jd.record(), &rec)
                        .map_err(|e| JobError::Failed(e.to_string()))?;
                }
                // The submission's job, already over: not one to wait for, but it can be named.
                other => ended = other,
            }
        }
        let id = rec.job_id.clone().or_else(|| ended.as_ref().map(|j| j.id.clone()));
        let state = match &id {
            Some(i) => match self.slurm.states()?.get(i) {
                Some(s) if s.is_active() => Some(s.clone()),
                // squeue lists recently ended jobs too; scontrol has the exit code and reason.
                Some(s) => Some(self.slurm.final_state(i).unwrap_or_else(|| s.clone())),
                None => self.slurm.final_state(i),
            },
            None => None,
        };
        if let (Some(id), Some(st)) = (&id, &state)
            && st.is_active()
        {
            info(format!(
                "found Slurm job {id} submitted by an earlier run ({}); not submitting again",
                st.state.to_lowercase()
            ));
            return Ok(Earlier::Live(rec, id.clone()));
        }
        let ok = jd.read_result().is_some_and(|r| r.outcome == ResultOutcome::Ok);
        let job = id.as_ref().map_or("the Slurm job".to_string(), |i| format!("Slurm job {i}"));
        if ok && jd.out().is_dir() && !force {
            info(format!("{job} submitted by an earlier run finished the stage; committing its outputs"));
            return Ok(Earlier::Finished);
        }
        let why = if ok && force {
            format!("--force: not taking the outputs of {job} of an earlier run")
        } else if ok && rec.committed.is_some() {
            // Only reached when the stage is not cached: the entry went since (`camel verify`
            // found it corrupt, `camel gc` with other params, a removed workspace cache).
            format!(
                "{job} of an earlier run finished and its outputs were committed ({}), but that cache \
                 entry is gone since",
                rec.committed.as_deref().unwrap_or_default()
            )
        } else if ok {
            format!(
                "{job} of an earlier run finished the stage, but its outputs are no longer in {} and \
                 not in the cache",
                jd.out().display()
            )
        } else if let Some(st) = &state {
            let reason = st.end_reason().map(|r| format!(" ({r})")).unwrap_or_default();
            let ended = jd.final_state(id.as_deref().unwrap_or_default(), Some(st));
            format!("{job} of an earlier run ended {ended}{reason}")
        } else if id.is_some() {
            format!("{job} of an earlier run is over (Slurm no longer knows it) and left no outputs")
        } else {
            // Recorded, but sbatch never answered and no job of its name appeared.
            return Ok(Earlier::None);
        };
        info(format!("{why}; submitting the stage again"));
        Ok(Earlier::None)
    }

    /// The job of a record without a job id: the `camel run` that wrote it was killed before
    /// sbatch answered, or sbatch kept failing. While that sbatch may still be running (its last
    /// try started less than [`IN_FLIGHT`] ago), waits for its job to appear rather than
    /// submitting another. `None` when no job of the submission's name turns up.
    fn find_in_flight(
        &self,
        jd: &JobDir,
        rec: &Submission,
        cancel: &AtomicBool,
        info: &dyn Fn(String),
    ) -> Result<Option<JobState>, JobError> {
        let started = humantime::parse_rfc3339(&rec.submitted).ok();
        let mut told = false;
        loop {
            let mut jobs = self.slurm.find_by_name(&rec.job_name)?;
            // A live one first; an ended one is this submission's too (its sbatch got through).
            jobs.sort_by_key(|j| !j.is_active());
            if let Some(j) = jobs.into_iter().next() {
                return Ok(Some(j));
            }
            let age = started.and_then(|t| SystemTime::now().duration_since(t).ok());
            let Some(age) = age.filter(|a| *a < IN_FLIGHT) else { return Ok(None) };
            if jd.read_result().is_some() {
                return Ok(None);
            }
            if !told {
                info(format!(
                    "an earlier run's sbatch for this stage started {} s ago and may still be running: \
                     waiting up to {} s for its job instead of submitting another",
                    age.as_secs(),
                    (IN_FLIGHT - age).as_secs()
                ));
                told = true;
            }
            let until = Instant::now() + self.slurm.poll_interval().max(Duration::from_millis(500));
            while Instant::now() < until {
                if cancel.load(Ordering::Relaxed) {
                    return Err(JobError::Cancelled);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Writes the spec, the script and the record, then calls sbatch. A transient sbatch
    /// failure is retried, but only after checking that the job did not get in after all.
    fn submit(&self, jd: &JobDir, job: &StageJob, resubmits: u32) -> Result<(Submission, String), JobError> {
        for p in [jd.result(), jd.progress()] {
            let _ = fs::remove_file(p);
        }
        let out = jd.out();
        if out.exists() {
            fs::remove_dir_all(&out).map_err(io("clear", &out))?;
        }
        let token = token();
        let short: String = job.stage.chars().take(40).collect();
        let job_name = format!("camel-{short}-{}-{token}", &job.key[..12]);
        let spec = StageSpec {
            format: StageSpec::FORMAT,
            pipeline: std::path::absolute(job.pipeline).map_err(io("resolve", job.pipeline))?,
            overrides: job.overrides.to_vec(),
            stage: job.stage.to_string(),
            key: job.key.to_string(),
            kind: job.cache_key.kind.clone(),
            version: job.cache_key.version,
            params: job.cache_key.params.clone(),
            inputs: job.inputs.clone(),
            out_dir: out.clone(),
            scratch_dir: job.scratch.to_path_buf(),
            log: jd.stage_log(),
            result: jd.result(),
            progress: jd.progress(),
        };
        camel_cache::write_json_atomic(&jd.spec(), &spec).map_err(|e| JobError::Failed(e.to_string()))?;
        let camel = match &self.settings.camel {
            Some(c) => PathBuf::from(c),
            None => std::env::current_exe()
                .map_err(|e| JobError::Failed(format!("cannot find camel's own path: {e}")))?,
        };
        let script = batch_script(jd, job, &job_name, &camel).map_err(JobError::Failed)?;
        camel_cache::write_atomic(&jd.script(), script.as_bytes())
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let now = || humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut rec = Submission {
            stage: job.stage.to_string(),
            token,
            job_name: job_name.clone(),
            job_id: None,
            submitted: now(),
            resubmits,
            refused: None,
            committed: None,
        };
        let write = |rec: &Submission| {
            camel_cache::write_json_atomic(&jd.record(), rec).map_err(|e| JobError::Failed(e.to_string()))
        };
        write(&rec)?;
        let script_path = jd.script();
        let script_arg = script_path.to_string_lossy();
        let answer = self.slurm.call("sbatch", &["--parsable", &script_arg], || {
            // The failed call may have got through after all (any job of this name is this
            // submission's); if not, the next try starts now, for a later run's in-flight wait.
            let found = self.slurm.find_by_name(&job_name).ok().and_then(|v| v.into_iter().next());
            if found.is_none() {
                rec.submitted = now();
                let _ = write(&rec);
            }
            found.map(|j| j.id)
        });
        let refused = |rec: &mut Submission, message: String| {
            rec.refused = Some(message.clone());
            let _ = write(rec);
            JobError::Failed(message)
        };
        let out = match answer {
            Ok(out) => out,
            Err(CtlError::Refused { message, .. }) => {
                let m = message
                    .lines()
                    .map(|l| l.trim().trim_start_matches("sbatch: error: "))
                    .collect::<Vec<_>>();
                return Err(refused(&mut rec, format!("sbatch refused the job: {}", m.join("; "))));
            }
            Err(CtlError::Start { cmd, source }) => {
                let e = CtlError::Start { cmd, source };
                return Err(refused(&mut rec, e.to_string()));
            }
            // The last try may still get through: a later run waits for it (see find_in_flight).
            Err(e) => return Err(e.into()),
        };
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(refused(&mut rec, format!("sbatch answered {:?}, not a job id", out.trim())));
        }
        rec.job_id = Some(id.clone());
        write(&rec)?;
        self.slurm.refresh();
        Ok((rec, id))
    }

    /// Waits until job `id` leaves the queue for good; its final state where Slurm still knows
    /// it. Ctrl-C cancels the job.
    fn wait(
        &self,
        jd: &JobDir,
        id: &str,
        cancel: &AtomicBool,
        progress: &Progress,
        info: &dyn Fn(String),
    ) -> Result<Option<JobState>, JobError> {
        let mut last_shown = String::new();
        let mut shown_at = Instant::now();
        let mut last_progress = None;
        let mut requeues = Requeues::default();
        loop {
            if cancel.load(Ordering::Relaxed) {
                match self.slurm.cancel(id) {
                    Ok(()) => info(format!("cancelled Slurm job {id} (scancel)")),
                    Err(e) => {
                        info(format!("could not cancel Slurm job {id}: {e}; cancel it with `scancel {id}`"))
                    }
                }
                return Err(JobError::Cancelled);
            }
            let states = self.slurm.states()?;
            let state = match states.get(id) {
                Some(s) => s.clone(),
                None => return Ok(self.slurm.final_state(id)),
            };
            if !state.is_active() {
                // squeue's view has no exit code; scontrol's has.
                return Ok(Some(self.slurm.final_state(id).unwrap_or(state)));
            }
            if let Some(line) = requeues.observe(jd, id, &state) {
                info(line);
            }
            let attempt = match requeues.attempt() {
                1 => String::new(),
                n => format!(", attempt {n}"),
            };
            let shown = match (state.state.as_str(), state.reason()) {
                ("PENDING", Some(r)) => format!("Slurm job {id} pending ({r}{attempt})"),
                ("PENDING", None) if attempt.is_empty() => format!("Slurm job {id} pending"),
                ("PENDING", None) => format!("Slurm job {id} pending ({})", &attempt[2..]),
                (s, _) if attempt.is_empty() => format!("Slurm job {id} {}", s.to_lowercase()),
                (s, _) => format!("Slurm job {id} {} ({})", s.to_lowercase(), &attempt[2..]),
            };
            if let Ok(bytes) = fs::read(jd.progress())
                && let Ok(p) = serde_json::from_slice::<JobProgress>(&bytes)
                && last_progress.as_ref() != Some(&p)
            {
                // The position first: setting the total reports at once, with the position it has.
                progress.set_position(p.pos);
                progress.set_total(p.total, &p.unit);
                last_progress = Some(p);
            }
            if shown != last_shown || shown_at.elapsed() > Duration::from_secs(30) {
                let detail = last_progress.as_ref().and_then(|p| p.message.clone());
                progress.message(&match detail {
                    Some(d) if state.state == "RUNNING" => format!("{shown} · {d}"),
                    _ => shown.clone(),
                });
                last_shown = shown;
                shown_at = Instant::now();
            }
            // Short sleeps keep Ctrl-C prompt; `states` asks Slurm once per poll interval.
            std::thread::sleep(self.slurm.poll_interval().min(Duration::from_millis(200)));
        }
    }

    fn verdict(
        &self,
        jd: &JobDir,
        id: &str,
        end: Option<&JobState>,
        res: &Resources,
        record: Option<&Submission>,
    ) -> Verdict {
        let result = jd.read_result();
        let state = jd.final_state(id, end);
        if let Some(r) = &result
            && r.outcome == ResultOutcome::Ok
            && jd.out().is_dir()
        {
            return Verdict::Done;
        }
        let restarts = result.as_ref().map_or(0, |r| r.restarts);
        let used = restarts + record.map_or(0, |r| r.resubmits);
        let interrupted = result.as_ref().is_some_and(|r| r.outcome == ResultOutcome::Interrupted);
        let retryable = matches!(state.as_str(), "TIMEOUT" | "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL");
        let what =
            if id.is_empty() { "the stage's Slurm job".to_string() } else { format!("Slurm job {id}") };
        if (retryable || interrupted) && used < res.max_requeues() {
            return Verdict::Resubmit(format!("{what} ended {state}"));
        }
        let mut msg = format!("{what} ended {state}");
        let mut detail = Vec::new();
        if let Some(code) = end.and_then(|e| e.exit_code.as_deref()).filter(|c| *c != "0:0") {
            detail.push(format!("exit code {code}"));
        }
        if let Some(reason) = end.and_then(JobState::end_reason) {
            detail.push(format!("reason: {reason}"));
        }
        if !detail.is_empty() {
            msg.push_str(&format!(" ({})", detail.join("; ")));
        }
        if (retryable || interrupted) && used >= res.max_requeues() {
            msg.push_str(&format!(
                " after {used} requeue{} (max_requeues: {}); raise `time` or `max_requeues`",
                if used == 1 { "" } else { "s" },
                res.max_requeues()
            ));
        }
        if state == "OUT_OF_MEMORY" {
            let used = match jd.memory_used(id) {
                Some((used, limit)) => {
                    format!("; Slurm measured {} against a limit of {}", mib(used), mib(limit))
                }
                None => String::new(),
            };
            msg.push_str(&format!(
                "; the job used more memory than it asked for (mem: {}{used}): raise `resources.mem`",
                res.mem.as_deref().unwrap_or("the partition's default")
            ));
        }
        match &result {
            Some(r) if r.outcome == ResultOutcome::Failed => {
                msg.push_str(&format!(": {}", r.message.as_deref().unwrap_or("the stage failed")));
            }
            Some(_) => {}
            None if end.is_none() => msg.push_str(
                " (Slurm no longer knows the job and it left no result: it was killed, or ran out of memory or time)",
            ),
            None => {}
        }
        msg.push_str(&jd.failure_lines(id));
        Verdict::Fail(msg)
    }

    /// Checks, before any stage runs, that the Slurm stages among those `will_run` can be
    /// submitted from here: their merged resources make sense, Slurm's client answers (one
    /// `sinfo`, retried through a busy controller for `retry_for`), and the partitions they name
    /// exist (or the cluster has a default one). Without it, a missing partition or a machine
    /// without Slurm is found when the first Slurm stage is submitted, after the local stages
    /// upstream of it ran, for hours perhaps. Every problem is listed, each with its stage.
    pub fn preflight(&self, plan: &Plan, will_run: impl Fn(usize) -> bool) -> Result<(), EngineError> {
        let stages: Vec<(&str, &Resources)> = (0..plan.stages.len())
            .filter(|&i| plan.stages[i].executor == Executor::Slurm && will_run(i))
            .map(|i| (plan.stages[i].name.as_str(), &plan.stages[i].resources))
            .collect();
        if stages.is_empty() {
            return Ok(());
        }
        let mut problems: Vec<String> = stages
            .iter()
            .flat_map(|(name, r)| {
                r.merged_problems().into_iter().map(move |(_, m)| format!("stage `{name}`: {m}"))
            })
            .collect();
        match self.slurm.partitions() {
            Err(e) => {
                let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
                let why = match &e {
                    CtlError::Start { .. } => "Slurm's client is not installed here".to_string(),
                    _ => "Slurm does not answer from here".to_string(),
                };
                problems.push(format!(
                    "{why} ({e}), and stage{} {} run{} on Slurm (`executor: slurm`): run camel on the \
                     cluster's login node (with SLURM_CONF set if the cluster needs it), or run {} here \
                     with `--set {}.executor=local`",
                    if names.len() == 1 { "" } else { "s" },
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
                    if names.len() == 1 { "s" } else { "" },
                    if names.len() == 1 { "it" } else { "them" },
                    names[0],
                ));
            }
            Ok(parts) => {
                let known = if parts.names.is_empty() { "none".to_string() } else { parts.names.join(", ") };
                for (name, r) in &stages {
                    match &r.partition {
                        Some(p) => {
                            // sbatch takes a comma-separated list; each must exist.
                            for one in p.split(',').filter(|x| !x.is_empty()) {
                                if !parts.names.iter().any(|n| n == one) {
                                    let help = match crate::error::did_you_mean(
                                        one,
                                        parts.names.iter().map(String::as_str),
                                    ) {
                                        Some(s) => format!("did you mean `{s}`? "),
                                        None => String::new(),
                                    };
                                    problems.push(format!(
                                        "stage `{name}`: the cluster has no partition `{one}` ({help}its partitions: {known}); \
                                         set `resources.partition` or `slurm.partition`"
                                    ));
                                }
                            }
                        }
                        None if parts.default.is_none() => problems.push(format!(
                            "stage `{name}` names no partition and the cluster has no default one (its \
                             partitions: {known}): set `slurm.partition`"
                        )),
                        None => {}
                    }
                }
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(EngineError::Usage(format!(
            "the pipeline's Slurm stages cannot be submitted from here:\n  - {}",
            problems.join("\n  - ")
        )))
    }

    /// The jobs of `stage` under other keys than `key` that Slurm still lists as active (see
    /// [`OtherJob`]), from the workspace's submission records; by job id. Empty when Slurm does
    /// not answer: this is for telling the user, never for deciding.
    pub fn other_active_jobs(&self, workspace: &Path, stage: &str, key: &str) -> Vec<OtherJob> {
        let Ok(rd) = fs::read_dir(workspace.join("slurm")) else { return Vec::new() };
        let records: Vec<(String, Submission)> = rd
            .flatten()
            .filter_map(|e| {
                let k = e.file_name().to_string_lossy().into_owned();
                let rec = JobDir::new(workspace, &k).read_record()?;
                (k != key && rec.stage == stage && rec.refused.is_none()).then_some((k, rec))
            })
            .collect();
        if records.is_empty() {
            return Vec::new();
        }
        let Ok(states) = self.slurm.states() else { return Vec::new() };
        let mut out: Vec<OtherJob> = records
            .into_iter()
            .filter_map(|(k, rec)| {
                let st = match &rec.job_id {
                    Some(id) => states.get(id).cloned(),
                    // Its run was killed before sbatch answered: a job of its name, if any.
                    None => {
                        self.slurm.find_by_name(&rec.job_name).ok()?.into_iter().find(JobState::is_active)
                    }
                }
                .filter(JobState::is_active)?;
                Some(OtherJob {
                    key: k,
                    job_id: st.id.clone(),
                    reason: st.reason().filter(|_| st.state == "PENDING").map(str::to_string),
                    state: st.state,
                })
            })
            .collect();
        out.sort_by_key(|o| (o.job_id.len(), o.job_id.clone()));
        out
    }

    /// Where the job of a stage whose key is `key` stands, for `camel status`; `None` when camel
    /// never submitted it.
    pub fn info(&self, workspace: &Path, key: &str) -> Option<JobInfo> {
        let jd = JobDir::new(workspace, key);
        let rec = jd.read_record().filter(|r| r.refused.is_none())?;
        let finished_ok =
            jd.read_result().is_some_and(|r| r.outcome == ResultOutcome::Ok) && jd.out().is_dir();
        let id = rec.job_id.clone().or_else(|| {
            let mut jobs = self.slurm.find_by_name(&rec.job_name).ok()?;
            jobs.sort_by_key(|j| !j.is_active());
            jobs.into_iter().next().map(|j| j.id)
        });
        let st = id.as_ref().and_then(|i| match self.slurm.states() {
            Ok(s) => s.get(i).cloned(),
            Err(_) => None,
        });
        let st = st.or_else(|| id.as_ref().and_then(|i| self.slurm.final_state(i)));
        Some(JobInfo {
            job_id: id,
            state: st.as_ref().map_or("UNKNOWN".into(), |s| s.state.clone()),
            reason: st.as_ref().filter(|s| s.state == "PENDING").and_then(|s| s.reason().map(str::to_string)),
            finished_ok,
            dir: jd.dir,
        })
    }
}

/// The requeues of the job a run waits for, as it sees them: a job seen running and then
/// pending again, or a new attempt's first line in the job's log (a requeue quicker than a poll).
/// Requeues before this run started waiting are counted, not told.
#[derive(Default)]
struct Requeues {
    /// Requeues told (or found at the start), and the attempt the job is on.
    known: u32,
    /// Times the job was seen running, then pending (or requeued) again.
    seen: u32,
    running: bool,
    /// Requeues found in the job's log; `None` until it was first read.
    logged: Option<u32>,
    /// The job's own requeues after an interruption (the batch script's line), from its log,
    /// and how many of them were told.
    interrupted: u32,
    interrupted_told: u32,
    read_at: Option<Instant>,
}

impl Requeues {
    fn attempt(&self) -> u32 {
        self.known + 1
    }

    /// Takes one poll's state; a line for the user when the job was requeued since the last one.
    fn observe(&mut self, jd: &JobDir, id: &str, state: &JobState) -> Option<String> {
        match state.state.as_str() {
            "RUNNING" => self.running = true,
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SPECIAL_EXIT" if self.running => {
                self.running = false;
                self.seen += 1;
                // Read the log now: the batch script's line says whether the job requeued itself.
                self.read_at = None;
            }
            _ => {}
        }
        // The log, at most once a second: attempts are few and the file is small.
        let first = self.logged.is_none();
        if self.read_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            self.read_at = Some(Instant::now());
            let log = fs::read_to_string(jd.job_log(id)).unwrap_or_default();
            let attempts = log.matches(&format!("camel: Slurm job {id} (attempt ")).count() as u32;
            self.logged = Some(attempts.saturating_sub(1));
            self.interrupted =
                log.matches("camel: interrupted (time limit near or preempted); requeueing").count() as u32;
        }
        let logged = self.logged.unwrap_or(0);
        if first {
            // A job found running again after requeues of its own: counted, not told.
            self.known = logged;
            self.interrupted_told = self.interrupted;
            self.seen = 0;
            return None;
        }
        let now = logged.max(self.known + self.seen.min(1));
        if now <= self.known {
            return None;
        }
        self.known = now;
        self.seen = 0;
        let why = if self.interrupted > self.interrupted_told {
            self.interrupted_told = self.interrupted;
            "it checkpointed and requeued itself: its time limit was near, or it was preempted"
        } else {
            "by Slurm: preempted, a node failure, or `scontrol requeue`"
        };
        Some(format!("Slurm job {id} was requeued ({why}); attempt {} of the job", now + 1))
    }
}

/// What an earlier run's submission leaves to this one.
enum Earlier {
    /// Nothing to wait for or take: submit.
    None,
    /// A job that may still run: wait for it.
    Live(Submission, String),
    /// A job that finished the stage while nobody watched: its outputs are in `out/`.
    Finished,
}

enum Verdict {
    Done,
    Resubmit(String),
    Fail(String),
}

/// Recreates the tree under `from` in the existing directory `to`: directories made, files hard
/// linked (copied where linking fails: another filesystem, or none of links), symlinks recreated.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(from)? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            fs::create_dir(&dst)?;
            link_tree(&src, &dst)?;
        } else if meta.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if fs::hard_link(&src, &dst).is_err() {
            fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// A test hook: with `CAMEL_SLURM_FAULT=<point>` in its environment, `camel run` kills itself
/// (SIGKILL, as a lost SSH session or `kill -9` would) when it reaches `point`. The Slurm tests
/// use it to stop a run at a precise moment of a commit.
pub(crate) fn fault_point(point: &str) {
    if std::env::var_os("CAMEL_SLURM_FAULT").is_some_and(|v| v == point) {
        // SAFETY: signalling this process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// `(used, limit)` from slurmstepd's `StepId=9.0 exceeded memory limit (418148352 > 157286400),
/// being killed`.
fn memory_used(line: &str) -> Option<(u64, u64)> {
    let rest = &line[line.find("exceeded memory limit (")? + "exceeded memory limit (".len()..];
    let (used, rest) = rest.split_once(" > ")?;
    let limit = rest.split(')').next()?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

/// Bytes as MiB (GiB from 10 GiB up), as a person reads a memory figure.
fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m >= 10240.0 { format!("{:.1} GiB", m / 1024.0) } else { format!("{m:.0} MiB") }
}

/// The last `n` lines of `text` that are not blank.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A short random token naming one submission.
fn token() -> String {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let h = camel_cache::hash_bytes(format!("{nanos}-{}", std::process::id()).as_bytes()).to_hex();
    h[..8].to_string()
}

/// Quotes `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `path` as the value of an `#SBATCH --output=` line: in double quotes (sbatch reads an
/// `#SBATCH` line's words as a shell would: a space would end the value and an unquoted `#`
/// start a comment), `"` escaped, and `%` doubled (Slurm expands `%j` and friends in the
/// name; `%%` is a `%`). A backslash cannot be written: Slurm's file name patterns take `\`
/// to mean "expand nothing" and drop it.
fn sbatch_output_path(dir: &Path) -> Result<String, String> {
    let d = dir.to_string_lossy();
    if d.contains(['\\', '\n']) || d.contains(char::REPLACEMENT_CHARACTER) {
        return Err(format!(
            "Slurm cannot write the job's log under {}: its path contains a backslash, a line break or \
             bytes that are not UTF-8; move the workspace (`workspace:` in the pipeline) to a plainer path",
            dir.display()
        ));
    }
    Ok(format!("\"{}/slurm-%j.out\"", d.replace('%', "%%").replace('"', "\\\"")))
}

/// The batch script: sbatch options from the resources, one `srun` task per rank running
/// `camel exec-stage`, and the requeue of an interrupted (resumable) stage.
pub fn batch_script(jd: &JobDir, job: &StageJob, job_name: &str, camel: &Path) -> Result<String, String> {
    let r = job.resources;
    let output = sbatch_output_path(&jd.dir)?;
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |o: String| s.push_str(&format!("#SBATCH {o}\n"));
    opt(format!("--job-name={job_name}"));
    opt(format!("--output={output}"));
    opt("--open-mode=append".into());
    opt("--requeue".into());
    opt(format!("--signal=USR1@{}", r.signal_grace()));
    opt(format!("--nodes={}", r.nodes()));
    opt(format!("--ntasks-per-node={}", r.tasks_per_node()));
    if let Some(g) = r.gpus_per_node.filter(|&g| g > 0) {
        opt(format!("--gpus-per-node={g}"));
    }
    if let Some(c) = r.cpus_per_task {
        opt(format!("--cpus-per-task={c}"));
    }
    for (flag, v) in [
        ("mem", &r.mem),
        ("time", &r.time),
        ("partition", &r.partition),
        ("account", &r.account),
        ("qos", &r.qos),
        ("constraint", &r.constraint),
    ] {
        if let Some(v) = v {
            opt(format!("--{flag}={v}"));
        }
    }
    for extra in r.sbatch.iter().flatten() {
        opt(extra.clone());
    }
    let tasks = r.tasks();
    let ranks = if tasks > 1 {
        // One task per rank; the torchrun variables every rank reads, from Slurm's.
        "export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS \
         LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE; "
    } else {
        ""
    };
    s.push_str(&format!(
        r#"#
# Written by camel for stage `{stage}` (cache key {key}).
# It runs the stage on the shared workspace and writes its outputs to
#   {out}
# which `camel run` commits. Resubmitting it by hand is safe: the stage resumes from its scratch.
set -u
restarts=${{SLURM_RESTART_COUNT:-0}}
echo "camel: Slurm job $SLURM_JOB_ID (attempt $((restarts + 1))) on $SLURM_JOB_NODELIST at $(date -Is)"
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export TORCHELASTIC_RUN_ID="slurm-$SLURM_JOB_ID-$restarts"
export CAMEL_SLURM_RESTARTS=$restarts
srun --ntasks={tasks} bash -c '{ranks}exec "$0" "$@"' {camel} exec-stage {spec}
rc=$?
if [ "$rc" -eq {resumable} ]; then
    if [ "$restarts" -lt {max} ]; then
        echo "camel: interrupted (time limit near or preempted); requeueing ($((restarts + 1)) of {max})"
        for try in 1 2 3 4 5; do
            scontrol requeue "$SLURM_JOB_ID" && sleep 300
            sleep $((try * 5))
        done
    fi
    echo "camel: interrupted and max_requeues ({max}) reached"
fi
exit "$rc"
"#,
        stage = job.stage,
        key = job.key,
        out = jd.out().display(),
        camel = sh_quote(&camel.to_string_lossy()),
        spec = sh_quote(&jd.spec().to_string_lossy()),
        resumable = EXIT_RESUMABLE,
        max = r.max_requeues(),
    ));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_path_is_quoted_for_sbatch() {
        let p = sbatch_output_path(Path::new("/w/my project #1/%j \"x\"")).unwrap();
        assert_eq!(p, r#""/w/my project #1/%%j \"x\"/slurm-%j.out""#);
        let e = sbatch_output_path(Path::new("/w/back\\slash")).unwrap_err();
        assert!(e.contains("backslash"), "{e}");
    }

    #[test]
    fn failure_lines_come_from_the_stage_log_and_slurms_errors() {
        let t = tempfile::tempdir().unwrap();
        let jd = JobDir { dir: t.path().to_path_buf() };
        fs::write(jd.job_log("9"), "camel: Slurm job 9\nsrun: error: vm: task 0: Exited with exit code 1\n")
            .unwrap();
        // The stage never started: the job's log is all there is.
        assert!(jd.failure_lines("9").contains("last lines of"), "{}", jd.failure_lines("9"));
        fs::write(jd.stage_log(), "camel exec-stage: stage `a`\nfailed: about to fail\n").unwrap();
        let l = jd.failure_lines("9");
        assert!(l.contains("stage.log:\ncamel exec-stage: stage `a`\nfailed: about to fail"), "{l}");
        assert!(l.contains("Slurm's messages in") && l.contains("srun: error"), "{l}");
        assert!(!l.contains("camel: Slurm job 9"), "{l}");
    }

    /// Slurm's line with what the step used stays, however many lines follow it; repeated lines
    /// are shown once.
    #[test]
    fn an_out_of_memory_failure_keeps_how_much_the_job_used() {
        let t = tempfile::tempdir().unwrap();
        let jd = JobDir { dir: t.path().to_path_buf() };
        fs::write(jd.stage_log(), "camel exec-stage: stage `a`\n").unwrap();
        fs::write(
            jd.job_log("9"),
            "camel: Slurm job 9 (attempt 1) on vm\n\
             slurmstepd-vm: error: StepId=9.0 exceeded memory limit (418148352 > 157286400), being killed\n\
             slurmstepd-vm: error: Exceeded job memory limit\n\
             srun: Job step aborted: Waiting up to 7 seconds for job step to finish.\n\
             slurmstepd-vm: error: Exceeded job memory limit\n\
             srun: error: vm: task 0: Killed\n\
             srun: error: one more line\n",
        )
        .unwrap();
        let l = jd.failure_lines("9");
        assert!(l.contains("StepId=9.0 exceeded memory limit (418148352 > 157286400)"), "{l}");
        assert_eq!(l.matches("Exceeded job memory limit").count(), 1, "{l}");
        assert!(l.contains("one more line"), "{l}");
        assert_eq!(jd.memory_used("9"), Some((418148352, 157286400)));
        assert_eq!(mib(418148352), "399 MiB");
        assert_eq!(mib(64 << 30), "64.0 GiB");
        assert_eq!(jd.final_state("9", None), "OUT_OF_MEMORY");
    }

    /// A requeue is told once, whether the run saw the job pending again or only the next
    /// attempt's line in the job's log; requeues before the run started watching are not told.
    #[test]
    fn requeues_are_told_once_each() {
        let t = tempfile::tempdir().unwrap();
        let jd = JobDir { dir: t.path().to_path_buf() };
        let st =
            |s: &str| JobState { id: "5".into(), state: s.into(), reason: String::new(), exit_code: None };
        let attempt = |n: u32, extra: &str| {
            let mut f = fs::OpenOptions::new().create(true).append(true).open(jd.job_log("5")).unwrap();
            std::io::Write::write_all(
                &mut f,
                format!("{extra}camel: Slurm job 5 (attempt {n}) on vm\n").as_bytes(),
            )
            .unwrap();
        };
        let mut r = Requeues::default();
        let poll = |r: &mut Requeues, s: &str| {
            r.read_at = None;
            r.observe(&jd, "5", &st(s))
        };
        assert_eq!(poll(&mut r, "PENDING"), None);
        attempt(1, "");
        assert_eq!(poll(&mut r, "RUNNING"), None);
        // Seen pending again: requeued by Slurm (no line of the batch script's).
        let m = poll(&mut r, "PENDING").unwrap();
        assert!(
            m.contains("Slurm job 5 was requeued (by Slurm") && m.contains("attempt 2 of the job"),
            "{m}"
        );
        assert_eq!(r.attempt(), 2);
        attempt(2, "");
        assert_eq!(poll(&mut r, "RUNNING"), None, "the same requeue, from the log");
        // A requeue between two polls: only the log says so.
        attempt(3, "camel: interrupted (time limit near or preempted); requeueing (1 of 3)\n");
        let m = poll(&mut r, "RUNNING").unwrap();
        assert!(m.contains("checkpointed and requeued itself") && m.contains("attempt 3"), "{m}");
        assert_eq!(poll(&mut r, "RUNNING"), None);

        // A run that reattaches to a job on its third attempt counts those, without a word.
        let mut late = Requeues::default();
        assert_eq!(poll(&mut late, "RUNNING"), None);
        assert_eq!(late.attempt(), 3);
    }

    /// The job's outputs go into staging as links and stay in `out/` until the commit is
    /// recorded.
    #[test]
    fn outputs_are_linked_into_staging_and_removed_only_once_committed() {
        let t = tempfile::tempdir().unwrap();
        let jd = JobDir { dir: t.path().join("job") };
        fs::create_dir_all(jd.out().join("model")).unwrap();
        fs::write(jd.out().join("model/w.bin"), "weights").unwrap();
        fs::write(jd.out().join("top.txt"), "top").unwrap();
        std::os::unix::fs::symlink("top.txt", jd.out().join("link")).unwrap();
        let rec = Submission {
            stage: "a".into(),
            token: "t".into(),
            job_name: "camel-a".into(),
            job_id: Some("7".into()),
            submitted: "2026-01-01T00:00:00Z".into(),
            resubmits: 0,
            refused: None,
            committed: None,
        };
        camel_cache::write_json_atomic(&jd.record(), &rec).unwrap();
        let staging = t.path().join("staging");
        fs::create_dir(&staging).unwrap();
        jd.link_outputs(&staging).unwrap();
        assert_eq!(fs::read_to_string(staging.join("model/w.bin")).unwrap(), "weights");
        assert_eq!(fs::read_link(staging.join("link")).unwrap(), Path::new("top.txt"));
        use std::os::unix::fs::MetadataExt;
        let (a, b) = (
            fs::metadata(jd.out().join("model/w.bin")).unwrap(),
            fs::metadata(staging.join("model/w.bin")).unwrap(),
        );
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()), "a hard link, not a copy");
        assert!(jd.out().join("model/w.bin").is_file(), "out/ stays until the commit");
        jd.mark_committed();
        assert!(!jd.out().exists());
        assert!(jd.read_record().unwrap().committed.is_some());
        assert_eq!(fs::read_to_string(staging.join("model/w.bin")).unwrap(), "weights");
    }
}
