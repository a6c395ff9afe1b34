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

use super::ctl::{CtlError, JobState, Slurm};
use super::files::{EXIT_RESUMABLE, JobProgress, JobResult, ResultOutcome, StageSpec};
use super::settings::{Resources, SlurmSettings};
use crate::key::CacheKey;
use crate::stage::Progress;

/// `submission.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Submission {
    pub stage: String,
    pub token: String,
    pub job_name: String,
    /// `None` between writing the record and sbatch's answer.
    pub job_id: Option<String>,
    pub submitted: String,
    /// How many times camel submitted the stage again after a job ended at its time limit, a
    /// node failure or a preemption without requeue.
    #[serde(default)]
    pub resubmits: u32,
}

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

    /// The last `n` lines of the job's log, for a failure message.
    pub fn log_tail(&self, id: &str, n: usize) -> String {
        let text = fs::read_to_string(self.job_log(id)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
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
    /// resubmitted, cancelled).
    pub fn run(
        &self,
        job: &StageJob,
        detach: bool,
        cancel: &AtomicBool,
        progress: &Progress,
        info: &dyn Fn(String),
    ) -> Result<Waited, JobError> {
        let jd = JobDir::new(job.workspace, job.key);
        fs::create_dir_all(&jd.dir).map_err(io("create", &jd.dir))?;
        let mut record = jd.read_record();
        let mut id = match &record {
            Some(rec) => self.reattach(&jd, rec, info)?,
            None => None,
        };
        // Recorded, Slurm knows no such job, but the job left its result: it finished while
        // nobody watched and Slurm has forgotten it since. Judge that result first.
        let mut orphan_result = record.is_some() && id.is_none() && jd.read_result().is_some();
        if record.is_some() && id.is_none() && !orphan_result {
            // Recorded but never got through sbatch (camel was killed before it answered, and
            // no job of that name exists): submit now.
            record = None;
        }
        loop {
            let current = match id.take() {
                Some(i) => i,
                None if orphan_result => {
                    orphan_result = false;
                    String::new()
                }
                None => {
                    let resubmits = record.as_ref().map_or(0, |r| r.resubmits);
                    let (rec, new_id) = self.submit(&jd, job, resubmits)?;
                    info(format!("submitted as Slurm job {new_id} (script {})", jd.script().display()));
                    record = Some(rec);
                    new_id
                }
            };
            let end = if current.is_empty() {
                None
            } else {
                if detach && self.slurm.states()?.get(&current).is_some_and(JobState::is_active) {
                    return Ok(Waited::Detached(current));
                }
                self.wait(&jd, &current, cancel, progress, info)?
            };
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

    /// The job of an existing record: by its id, else by its name (camel was killed while
    /// sbatch ran). `None` when Slurm knows neither.
    fn reattach(
        &self,
        jd: &JobDir,
        rec: &Submission,
        info: &dyn Fn(String),
    ) -> Result<Option<String>, JobError> {
        let id = match &rec.job_id {
            Some(id) => Some(id.clone()),
            None => {
                let found = self.slurm.find_by_name(&rec.job_name)?;
                if let Some(id) = found.first() {
                    let mut r = rec.clone();
                    r.job_id = Some(id.clone());
                    camel_cache::write_json_atomic(&jd.record(), &r)
                        .map_err(|e| JobError::Failed(e.to_string()))?;
                }
                found.into_iter().next()
            }
        };
        if let Some(id) = &id {
            let st = self.slurm.states()?;
            let state = st.get(id).map_or("finished".to_string(), |s| s.state.to_lowercase());
            info(format!("found Slurm job {id} submitted by an earlier run ({state}); not submitting again"));
        }
        Ok(id)
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
        let script = batch_script(jd, job, &job_name, &camel);
        camel_cache::write_atomic(&jd.script(), script.as_bytes())
            .map_err(|e| JobError::Failed(e.to_string()))?;
        let mut rec = Submission {
            stage: job.stage.to_string(),
            token,
            job_name: job_name.clone(),
            job_id: None,
            submitted: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            resubmits,
        };
        camel_cache::write_json_atomic(&jd.record(), &rec).map_err(|e| JobError::Failed(e.to_string()))?;
        let script_path = jd.script();
        let script_arg = script_path.to_string_lossy();
        let out = self
            .slurm
            .call("sbatch", &["--parsable", &script_arg], || {
                self.slurm.find_by_name(&job_name).ok().and_then(|v| v.into_iter().next())
            })
            .map_err(|e| match e {
                CtlError::Refused { message, .. } => JobError::Failed(format!(
                    "sbatch refused the job: {}",
                    message.trim().trim_start_matches("sbatch: error: ")
                )),
                e => e.into(),
            })?;
        let id = out.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(JobError::Failed(format!("sbatch answered {:?}, not a job id", out.trim())));
        }
        rec.job_id = Some(id.clone());
        camel_cache::write_json_atomic(&jd.record(), &rec).map_err(|e| JobError::Failed(e.to_string()))?;
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
            let shown = match state.state.as_str() {
                "PENDING" if !matches!(state.reason.as_str(), "" | "None") => {
                    format!("Slurm job {id} pending ({})", state.reason)
                }
                "PENDING" => format!("Slurm job {id} pending"),
                s => format!("Slurm job {id} {}", s.to_lowercase()),
            };
            if let Ok(bytes) = fs::read(jd.progress())
                && let Ok(p) = serde_json::from_slice::<JobProgress>(&bytes)
                && last_progress.as_ref() != Some(&p)
            {
                progress.set_total(p.total, &p.unit);
                progress.set_position(p.pos);
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
        let mut state = end.map_or("UNKNOWN".to_string(), |s| s.state.clone());
        // Without cgroups, Slurm kills a step over its memory by polling and the job ends
        // FAILED; its log says why.
        if state != "OUT_OF_MEMORY" && !id.is_empty() && {
            let tail = jd.log_tail(id, 40).to_ascii_lowercase();
            tail.contains("exceeded job memory limit")
                || tail.contains("oom-kill")
                || tail.contains("out of memory")
        } {
            state = "OUT_OF_MEMORY".into();
        }
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
        if let Some(code) = end.and_then(|e| e.exit_code.as_deref()).filter(|c| *c != "0:0") {
            msg.push_str(&format!(" (exit code {code})"));
        }
        if (retryable || interrupted) && used >= res.max_requeues() {
            msg.push_str(&format!(
                " after {used} requeue{} (max_requeues: {}); raise `time` or `max_requeues`",
                if used == 1 { "" } else { "s" },
                res.max_requeues()
            ));
        }
        if state == "OUT_OF_MEMORY" {
            msg.push_str(&format!(
                "; the job used more memory than it asked for (mem: {}): raise `resources.mem`",
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
        if !id.is_empty() {
            let tail = jd.log_tail(id, 12);
            if !tail.is_empty() {
                msg.push_str(&format!("\nlast lines of {}:\n{tail}", jd.job_log(id).display()));
            }
        }
        Verdict::Fail(msg)
    }

    /// Where the job of a stage whose key is `key` stands, for `camel status`; `None` when camel
    /// never submitted it.
    pub fn info(&self, workspace: &Path, key: &str) -> Option<JobInfo> {
        let jd = JobDir::new(workspace, key);
        let rec = jd.read_record()?;
        let finished_ok = jd.read_result().is_some_and(|r| r.outcome == ResultOutcome::Ok);
        let id =
            rec.job_id.clone().or_else(|| self.slurm.find_by_name(&rec.job_name).ok()?.into_iter().next());
        let st = id.as_ref().and_then(|i| match self.slurm.states() {
            Ok(s) => s.get(i).cloned(),
            Err(_) => None,
        });
        let st = st.or_else(|| id.as_ref().and_then(|i| self.slurm.final_state(i)));
        Some(JobInfo {
            job_id: id,
            state: st.as_ref().map_or("UNKNOWN".into(), |s| s.state.clone()),
            reason: st.as_ref().filter(|s| s.state == "PENDING").map(|s| s.reason.clone()),
            finished_ok,
            dir: jd.dir,
        })
    }
}

enum Verdict {
    Done,
    Resubmit(String),
    Fail(String),
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

/// The batch script: sbatch options from the resources, one `srun` task per rank running
/// `camel exec-stage`, and the requeue of an interrupted (resumable) stage.
pub fn batch_script(jd: &JobDir, job: &StageJob, job_name: &str, camel: &Path) -> String {
    let r = job.resources;
    let mut s = String::from("#!/bin/bash\n");
    let mut opt = |o: String| s.push_str(&format!("#SBATCH {o}\n"));
    opt(format!("--job-name={job_name}"));
    opt(format!("--output={}", jd.dir.join("slurm-%j.out").display()));
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
    s
}
