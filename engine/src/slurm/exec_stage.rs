//! The job's side: `camel exec-stage SPEC` runs one stage of a pipeline, exactly as a local run
//! would, into the directory `camel run` commits from.
//!
//! The spec names the pipeline file and `--set` overrides rather than carrying the params, so
//! that secrets (`${env:…}`) are read from the job's environment and never written to disk; the
//! stage's kind, version and hashed params in the spec are compared with the reloaded ones, so
//! that a pipeline edited while the job waited in the queue fails loudly instead of producing
//! outputs for the wrong key.
//!
//! SIGUSR1 (sent by Slurm `signal_grace` seconds before the time limit, or by a preemption) is
//! recorded; the torch worker, which receives it too, saves a checkpoint and stops. A stage that
//! ends with an error after SIGUSR1 exits with [`EXIT_RESUMABLE`], which the batch script turns
//! into a requeue; the next attempt resumes from the scratch directory.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::files::{EXIT_RESUMABLE, JobProgress, JobResult, ResultOutcome, StageSpec};
use crate::event::Event;
use crate::plan::Plan;
use crate::stage::{Progress, StageContext, StageError};

static USR1: AtomicBool = AtomicBool::new(false);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1.store(true, Ordering::SeqCst);
}

/// Records SIGUSR1 instead of dying of it (its default action). Call early in every process of
/// the job (followers too).
pub fn catch_usr1() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGUSR1, on_usr1 as *const () as libc::sighandler_t);
    }
}

/// Whether this process received SIGUSR1.
pub fn usr1_received() -> bool {
    USR1.load(Ordering::SeqCst)
}

/// Runs the spec's stage of `plan` (loaded from the spec's pipeline and overrides). Writes
/// `result.json` and returns the process's exit status: 0 done, [`EXIT_RESUMABLE`] interrupted,
/// 1 failed.
pub fn exec_stage(plan: &Plan, spec: &StageSpec, cancel: Arc<AtomicBool>) -> i32 {
    let restarts = std::env::var("CAMEL_SLURM_RESTARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let job_id = std::env::var("SLURM_JOB_ID").ok();
    let finish = |outcome: ResultOutcome, message: Option<String>| {
        let r = JobResult { outcome, message, job_id: job_id.clone(), restarts };
        if let Err(e) = camel_cache::write_json_atomic(&spec.result, &r) {
            eprintln!("camel exec-stage: cannot write {}: {e}", spec.result.display());
            return 1;
        }
        match outcome {
            ResultOutcome::Ok => 0,
            ResultOutcome::Interrupted => EXIT_RESUMABLE,
            ResultOutcome::Failed => 1,
        }
    };
    let Some(i) = plan.index_of(&spec.stage) else {
        return finish(
            ResultOutcome::Failed,
            Some(format!("the pipeline has no stage `{}` any more", spec.stage)),
        );
    };
    let stage = &plan.stages[i];
    let b = &stage.bound;
    if b.kind() != spec.kind || b.version() != spec.version || b.hashed_params() != spec.params {
        return finish(
            ResultOutcome::Failed,
            Some(format!(
                "the pipeline's stage `{}` changed after the job was submitted (kind, version or params \
                 differ from what camel run planned); run `camel run` again to submit the current one",
                spec.stage
            )),
        );
    }
    if let Some(var) = stage.missing_env.first() {
        return finish(
            ResultOutcome::Failed,
            Some(format!(
                "environment variable `{var}` is not set in the job (the pipeline reads ${{env:{var}}})"
            )),
        );
    }
    // A previous attempt's partial outputs go; what may be resumed lives in scratch.
    if spec.out_dir.exists()
        && let Err(e) = fs::remove_dir_all(&spec.out_dir)
    {
        return finish(ResultOutcome::Failed, Some(format!("cannot clear {}: {e}", spec.out_dir.display())));
    }
    for d in [&spec.out_dir, &spec.scratch_dir] {
        if let Err(e) = fs::create_dir_all(d) {
            return finish(ResultOutcome::Failed, Some(format!("cannot create {}: {e}", d.display())));
        }
    }
    let log = match fs::OpenOptions::new().create(true).append(true).open(&spec.log) {
        Ok(f) => f,
        Err(e) => {
            return finish(ResultOutcome::Failed, Some(format!("cannot open {}: {e}", spec.log.display())));
        }
    };
    let ctx = StageContext {
        stage: spec.stage.clone(),
        inputs: spec.inputs.clone(),
        out_dir: spec.out_dir.clone(),
        scratch_dir: spec.scratch_dir.clone(),
        work_dir: plan.dir.clone(),
        workspace_dir: plan.workspace.clone(),
        allowed_endpoints: plan.allowed_endpoints.clone(),
        progress: Progress::new(&spec.stage, progress_writer(spec.progress.clone())),
        cancel,
        log: Mutex::new(log),
        log_path: spec.log.clone(),
    };
    ctx.log(&format!(
        "camel exec-stage: stage `{}` (key {}) in Slurm job {} (attempt {})",
        spec.stage,
        &spec.key[..12.min(spec.key.len())],
        job_id.as_deref().unwrap_or("?"),
        restarts + 1
    ));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.run(&ctx)))
        .unwrap_or_else(|_| Err(StageError::msg("the stage panicked (a bug in camel; please report it)")));
    match result {
        Ok(()) => finish(ResultOutcome::Ok, None),
        Err(e) if usr1_received() => {
            ctx.log(&format!("interrupted by SIGUSR1 (time limit near, or preempted): {e}"));
            finish(ResultOutcome::Interrupted, Some(crate::error::error_chain(&e)))
        }
        Err(e) => {
            let m = crate::error::error_chain(&e);
            ctx.log(&format!("failed: {m}"));
            finish(ResultOutcome::Failed, Some(m))
        }
    }
}

/// A progress sink that keeps `progress.json` up to date (at most once a second, and on every
/// message), for `camel run` on the login node to show.
fn progress_writer(path: PathBuf) -> crate::event::EventSink {
    let state: Mutex<(Option<Instant>, Option<String>)> = Mutex::new((None, None));
    Arc::new(move |e: Event| {
        let Event::Progress { pos, total, unit, message, .. } = e else { return };
        let mut s = state.lock().expect("progress state");
        let fresh = message.is_some();
        if message.is_some() {
            s.1 = message;
        }
        if !fresh && s.0.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        s.0 = Some(Instant::now());
        let p = JobProgress { pos, total, unit, message: s.1.clone() };
        let _ = camel_cache::write_json_atomic(&path, &p);
    })
}
