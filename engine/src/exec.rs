//! Running a plan: resolve each stage's key from its inputs' content, reuse a valid cache entry
//! or run the stage into a staging directory and commit it, in dependency order, `--jobs` at a
//! time. Also `status`, which resolves keys the same way without running anything.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Instant, SystemTime};

use camel_cache::{EntryState, Hasher, OutputRecord, StatCache, Store};
use serde::Serialize;

use crate::error::{EngineError, error_chain};
use crate::event::{Event, EventSink, Outcome};
use crate::key::{CacheKey, diff};
use crate::plan::{InputRef, Plan};
use crate::provenance::{PROVENANCE_FILE, Provenance, ProvenanceInput, ProvenancePipeline};
use crate::slurm::job::{JobDir, JobError, OtherJob, StageJob, Waited};
use crate::slurm::{Executor, JobInfo, SlurmJobs};
use crate::stage::{Partial, PartialProbe, Progress, StageContext, StageError};
use crate::workspace::{StageRecord, Workspace, pid_alive};

/// What `camel run` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stages to rerun even if cached.
    pub force: Vec<String>,
    /// Run this stage and what it needs, nothing downstream.
    pub until: Option<String>,
    /// Run only this stage; its inputs must be cached.
    pub only: Option<String>,
    /// Stages run at once (at least 1).
    pub jobs: usize,
    /// Wait for the workspace lock instead of failing.
    pub wait: bool,
    /// Submit the Slurm stages that are ready and return instead of waiting for their jobs.
    pub detach: bool,
    /// After a failure, go on with the stages that do not depend on it (`make -k`).
    pub keep_going: bool,
}

/// A resolved stage that is available: its key and its outputs.
#[derive(Clone, Debug)]
pub struct Done {
    pub key: String,
    pub outputs: BTreeMap<String, OutputRecord>,
}

struct Resolved {
    cache_key: CacheKey,
    digest: String,
    paths: BTreeMap<String, PathBuf>,
    sources: BTreeMap<String, String>,
}

/// Shared by the scheduler's threads.
struct Ctx<'a> {
    plan: &'a Plan,
    ws: Workspace,
    store: Store,
    stat_cache: StatCache,
    sink: EventSink,
    cancel: Arc<AtomicBool>,
    /// The Slurm client, when a stage of the plan runs there.
    slurm: Option<SlurmJobs>,
    detach: bool,
}

impl Ctx<'_> {
    fn resolve(&self, i: usize, done: &[Option<Done>]) -> Result<Resolved, EngineError> {
        let stage = &self.plan.stages[i];
        let hasher = Hasher::new(Some(&self.stat_cache)).skipping(&self.plan.workspace);
        let mut hashes = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let mut sources = BTreeMap::new();
        for (name, input) in &stage.inputs {
            sources.insert(name.clone(), input.describe());
            match input {
                InputRef::Path { written, path } => {
                    let h = hasher.hash_path(path).map_err(|e| EngineError::StageFailed {
                        stage: stage.name.clone(),
                        message: format!("input `{name}` ({written}): {e}"),
                        log: None,
                    })?;
                    hashes.insert(name.clone(), h.hash);
                    paths.insert(name.clone(), path.clone());
                }
                InputRef::Stage { stage: up, output, .. } => {
                    let d = done[*up].as_ref().expect("upstream resolved before its dependents");
                    let rec = &d.outputs[output];
                    hashes.insert(name.clone(), rec.hash);
                    let base = self.store.out_dir(&d.key);
                    paths.insert(name.clone(), if rec.path == "." { base } else { base.join(&rec.path) });
                }
            }
        }
        let b = &stage.bound;
        let cache_key = CacheKey::new(b.kind(), b.version(), b.hashed_params(), hashes);
        let digest = cache_key.digest();
        Ok(Resolved { cache_key, digest, paths, sources })
    }

    fn reasons(&self, stage: &str, r: &Resolved) -> Vec<String> {
        match self.ws.read_record(stage) {
            None if last_run_failed(&self.ws.log_path(stage)) => vec![format!(
                "never finished: the last run failed (its log: {})",
                self.ws.log_path(stage).display()
            )],
            None => vec!["never run".into()],
            Some(rec) => {
                let d = diff(&rec.cache_key, &r.cache_key, &r.sources);
                if d.is_empty() { vec!["cache entry missing".into()] } else { d }
            }
        }
    }

    /// What an unfinished run of stage `i` left for its current key, as its kind reads it.
    fn partial(&self, i: usize, r: &Resolved) -> Option<Partial> {
        let scratch = self.ws.scratch_dir(&r.digest);
        if !scratch.is_dir() {
            return None;
        }
        self.plan.stages[i].bound.partial(&PartialProbe { scratch_dir: &scratch, inputs: &r.paths })
    }

    fn remember(&self, stage: &str, r: &Resolved) -> Result<(), EngineError> {
        let rec =
            StageRecord { key: r.digest.clone(), cache_key: r.cache_key.clone(), sources: r.sources.clone() };
        self.ws.write_record(stage, &rec)?;
        self.ws.link_output(stage, &r.digest)
    }

    /// Resolves, then reuses or runs stage `i`.
    fn process(&self, i: usize, done: &[Option<Done>], mode: Mode, force: bool) -> Result<Done, EngineError> {
        let stage = &self.plan.stages[i];
        let name = &stage.name;
        let t0 = Instant::now();
        let r = self.resolve(i, done)?;
        if !force {
            match self.store.check(&r.digest) {
                EntryState::Valid(m) => {
                    self.remember(name, &r)?;
                    (self.sink)(Event::StageFinished {
                        stage: name.clone(),
                        outcome: Outcome::Cached,
                        elapsed: t0.elapsed(),
                        output_bytes: m.total_size(),
                        log: None,
                    });
                    return Ok(Done { key: r.digest, outputs: m.outputs });
                }
                EntryState::Corrupt(why) => {
                    (self.sink)(Event::Warning {
                        stage: Some(name.clone()),
                        message: format!(
                            "cache entry {} is corrupt ({why}); it will be rebuilt",
                            &r.digest[..12]
                        ),
                    });
                    self.store.remove(&r.digest)?;
                }
                EntryState::Missing => {}
            }
        }
        if mode == Mode::CacheOnly {
            return Err(EngineError::Usage(format!(
                "stage `{name}` is not cached, and --only runs one stage on cached inputs; \
                 use --until instead to also run what it needs"
            )));
        }
        if let Some(var) = stage.missing_env.first() {
            return Err(EngineError::StageFailed {
                stage: name.clone(),
                message: format!(
                    "environment variable `{var}` is not set (the pipeline reads it with ${{env:{var}}})"
                ),
                log: None,
            });
        }
        // A forced stage whose entry is there: --force is the whole reason.
        let mut reasons = if force { vec!["forced (--force)".to_string()] } else { Vec::new() };
        if !force || !matches!(self.store.check(&r.digest), EntryState::Valid(_)) {
            reasons.extend(self.reasons(name, &r));
        }
        let partial = self.partial(i, &r);
        if partial.is_some() {
            unfinished(&mut reasons);
        }
        (self.sink)(Event::StageStarted { stage: name.clone(), key: r.digest.clone(), reasons });
        // A Slurm stage says what it resumes from when a job is submitted for it: one that an
        // earlier run submitted just goes on (execute_on_slurm).
        if let Some(partial) = partial
            && !(stage.executor == Executor::Slurm && self.slurm.is_some())
        {
            (self.sink)(Event::StageResumes { stage: name.clone(), partial });
        }
        self.execute(i, &r, force, t0)
    }

    fn execute(&self, i: usize, r: &Resolved, replace: bool, t0: Instant) -> Result<Done, EngineError> {
        let stage = &self.plan.stages[i];
        let name = &stage.name;
        let staging = self.store.stage(&r.digest)?;
        let scratch = self.ws.scratch_dir(&r.digest);
        fs::create_dir_all(&scratch).map_err(EngineError::io(format!("create {}", scratch.display())))?;
        let (log, log_path) = self.open_log(name)?;
        let started = SystemTime::now();
        if let (Executor::Slurm, Some(jobs)) = (stage.executor, &self.slurm) {
            return self.execute_on_slurm(i, r, replace, t0, jobs, staging, &scratch, log, log_path, started);
        }
        let ctx = StageContext {
            stage: name.clone(),
            inputs: r.paths.clone(),
            out_dir: staging.out_dir(),
            scratch_dir: scratch.clone(),
            work_dir: self.plan.dir.clone(),
            workspace_dir: self.plan.workspace.clone(),
            allowed_endpoints: self.plan.allowed_endpoints.clone(),
            progress: Progress::new(name, self.sink.clone()),
            cancel: self.cancel.clone(),
            log: Mutex::new(log),
            log_path: log_path.clone(),
        };
        let result = catch_unwind(AssertUnwindSafe(|| stage.bound.run(&ctx))).unwrap_or_else(|_| {
            Err(StageError::msg("the stage panicked (a bug in camel; please report it)"))
        });
        drop(ctx);
        let fail = |message: String| {
            log_failure(&log_path, &message);
            EngineError::StageFailed { stage: name.clone(), message, log: Some(log_path.clone()) }
        };
        if let Err(e) = result {
            staging.discard()?;
            return Err(match e {
                StageError::Cancelled => EngineError::Cancelled,
                e => fail(error_chain(&e)),
            });
        }
        self.commit(i, r, replace, t0, staging, &scratch, log_path, started)
    }

    /// The first of stage `i`'s file inputs whose content is no longer what its key was made of
    /// (edited while the stage ran), as a message; `None` when all are unchanged. Unchanged files
    /// are not read again: the stat cache knows them.
    fn changed_input(&self, i: usize, r: &Resolved) -> Option<String> {
        let hasher = Hasher::new(Some(&self.stat_cache)).skipping(&self.plan.workspace);
        for (name, input) in &self.plan.stages[i].inputs {
            let InputRef::Path { written, path } = input else { continue };
            let Some(was) = r.cache_key.inputs.get(name) else { continue };
            let now = match hasher.hash_path(path) {
                Ok(h) => h.hash,
                Err(e) => {
                    return Some(format!(
                        "input `{name}` ({written}) cannot be read since the stage started: {e}"
                    ));
                }
            };
            if &now != was {
                return Some(format!(
                    "input `{name}` ({written}) changed while the stage ran ({} -> {}): its outputs, made from \
                     either content, were not committed; run again to use the new content",
                    was.short(),
                    now.short()
                ));
            }
        }
        None
    }

    /// Hashes and commits the outputs in `staging`, and records the stage's success.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &self,
        i: usize,
        r: &Resolved,
        replace: bool,
        t0: Instant,
        staging: camel_cache::Staging,
        scratch: &std::path::Path,
        log_path: PathBuf,
        started: SystemTime,
    ) -> Result<Done, EngineError> {
        let stage = &self.plan.stages[i];
        let name = &stage.name;
        let fail = |message: String| {
            log_failure(&log_path, &message);
            EngineError::StageFailed { stage: name.clone(), message, log: Some(log_path.clone()) }
        };
        // An entry holds only what its key's inputs produce: one edited mid-run is refused.
        if let Some(message) = self.changed_input(i, r) {
            staging.discard()?;
            return Err(fail(message));
        }
        let outputs: Vec<(String, String)> =
            stage.bound.outputs().into_iter().map(|o| (o.name, o.path)).collect();
        let provenance = self.provenance(i, r, started).to_bytes();
        let log_bytes = fs::read(&log_path).unwrap_or_default();
        let manifest = match staging.commit(
            &self.store,
            &outputs,
            &[(PROVENANCE_FILE, &provenance), ("log.txt", &log_bytes)],
            replace,
        ) {
            Ok(m) => m,
            Err(camel_cache::CacheError::OutputMissing { name: out, .. }) => {
                return Err(fail(format!(
                    "the stage finished but did not write its declared output `{out}`"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let _ = fs::remove_dir_all(scratch);
        self.remember(name, r)?;
        (self.sink)(Event::StageFinished {
            stage: name.clone(),
            outcome: Outcome::Ran,
            elapsed: t0.elapsed(),
            output_bytes: manifest.total_size(),
            log: Some(log_path),
        });
        Ok(Done { key: r.digest.clone(), outputs: manifest.outputs })
    }

    /// Runs stage `i` as a Slurm job (or waits for the one an earlier run submitted), then
    /// commits the outputs the job wrote, as for a local stage.
    #[allow(clippy::too_many_arguments)]
    fn execute_on_slurm(
        &self,
        i: usize,
        r: &Resolved,
        replace: bool,
        t0: Instant,
        jobs: &SlurmJobs,
        staging: camel_cache::Staging,
        scratch: &std::path::Path,
        log: fs::File,
        log_path: PathBuf,
        started: SystemTime,
    ) -> Result<Done, EngineError> {
        let stage = &self.plan.stages[i];
        let name = &stage.name;
        let log = Mutex::new(log);
        let say = |line: String| {
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "camel: {line}");
            }
            (self.sink)(Event::Info { message: format!("{name}: {line}") });
        };
        let progress = Progress::new(name, self.sink.clone());
        let resumes = || {
            if let Some(partial) = self.partial(i, r) {
                (self.sink)(Event::StageResumes { stage: name.clone(), partial });
            }
        };
        let job = StageJob {
            stage: name,
            key: &r.digest,
            cache_key: &r.cache_key,
            resources: &stage.resources,
            inputs: &r.paths,
            scratch,
            pipeline: &self.plan.file,
            overrides: &self.plan.overrides,
            workspace: &self.plan.workspace,
            on_submit: Some(&resumes),
        };
        let waited = jobs.run_forced(&job, replace, self.detach, &self.cancel, &progress, &say);
        let jd = JobDir::new(&self.plan.workspace, &r.digest);
        // The job's own log of the stage goes into the stage log, as a local stage's would.
        if let Ok(text) = fs::read(jd.stage_log())
            && let Ok(mut f) = log.lock()
        {
            let _ = f.write_all(&text);
        }
        match waited {
            Ok(Waited::Done(out)) => {
                // The job's `out/` stays until the commit is durable: a run killed while it hashes
                // the outputs leaves them for the next run to commit (hard links, so no copy).
                let mut staging = staging;
                staging.own_links();
                if let Err(m) = jd.link_outputs(&staging.out_dir()) {
                    staging.discard()?;
                    return Err(EngineError::StageFailed {
                        stage: name.clone(),
                        message: m,
                        log: Some(log_path),
                    });
                }
                crate::slurm::job::fault_point("slurm-commit");
                match self.commit(i, r, replace, t0, staging, scratch, log_path, started) {
                    Ok(done) => {
                        jd.mark_committed();
                        Ok(done)
                    }
                    Err(EngineError::StageFailed { stage, message, log }) => Err(EngineError::StageFailed {
                        stage,
                        message: format!(
                            "{message} (the job's outputs stay in {}; `camel run --force {name}` runs the \
                             stage again)",
                            out.display()
                        ),
                        log,
                    }),
                    Err(e) => Err(e),
                }
            }
            Ok(Waited::Detached(id)) => {
                staging.discard()?;
                Err(EngineError::Detached { stage: name.clone(), job_id: id })
            }
            Err(e) => {
                staging.discard()?;
                Err(match e {
                    JobError::Cancelled => EngineError::Cancelled,
                    JobError::Failed(message) => {
                        log_failure(&log_path, &message);
                        EngineError::StageFailed { stage: name.clone(), message, log: Some(log_path) }
                    }
                })
            }
        }
    }

    /// The stage's log for this run, emptied, and its path.
    fn open_log(&self, stage: &str) -> Result<(fs::File, PathBuf), EngineError> {
        let log_path = self.ws.log_path(stage);
        if let Some(p) = log_path.parent() {
            fs::create_dir_all(p).map_err(EngineError::io(format!("create {}", p.display())))?;
        }
        // Truncated once, then written in append mode: stages hand the same file to child
        // processes (which append through their own handles), and a non-append handle here would
        // write over their lines at its own stale offset.
        fs::File::create(&log_path).map_err(EngineError::io(format!("create {}", log_path.display())))?;
        let log = fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(EngineError::io(format!("open {}", log_path.display())))?;
        Ok((log, log_path))
    }

    /// What produced the entry stage `i` is about to commit, for its provenance.json.
    fn provenance(&self, i: usize, r: &Resolved, started: SystemTime) -> Provenance {
        let stage = &self.plan.stages[i];
        let inputs = r
            .cache_key
            .inputs
            .iter()
            .map(|(k, h)| (k.clone(), ProvenanceInput { from: r.sources[k].clone(), hash: h.to_hex() }))
            .collect();
        Provenance {
            camel_version: env!("CARGO_PKG_VERSION").into(),
            finished: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            inputs,
            key: r.digest.clone(),
            kind: stage.bound.kind().into(),
            params: r.cache_key.params.clone(),
            pipeline: ProvenancePipeline {
                file: std::path::absolute(&self.plan.file).unwrap_or_default(),
                name: self.plan.name.clone(),
            },
            stage: stage.name.clone(),
            started: humantime::format_rfc3339_seconds(started).to_string(),
            version: stage.bound.version(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Run,
    CacheOnly,
    Skip,
}

#[derive(Debug)]
enum Node {
    Pending,
    Running,
    Done,
    Failed,
    /// Submitted to Slurm with `--detach`: not done, not failed; dependents wait for a later run.
    Detached,
}

/// Runs the plan. Returns when every selected stage is done, or after a failure once the stages
/// already running have finished (their outputs are kept).
pub fn run(
    plan: &Plan,
    opts: &RunOptions,
    sink: EventSink,
    cancel: Arc<AtomicBool>,
) -> Result<(), EngineError> {
    let mode = select(plan, opts)?;
    let unset = crate::plan::unset_secrets(plan, |i| mode[i] != Mode::Skip);
    if !unset.is_empty() {
        return Err(EngineError::Invalid(unset));
    }
    let mut force = vec![false; plan.stages.len()];
    for f in &opts.force {
        force[plan.require(f)?] = true;
    }

    let ws = Workspace::new(&plan.workspace);
    let lock = ws.lock(opts.wait, |holder| {
        sink(Event::Info { message: format!("waiting for the workspace lock held by PID {holder}") })
    })?;
    if let Some(pid) = &lock.stale_holder
        && !pid_alive(pid)
    {
        sink(Event::Info {
            message: format!("took over the workspace lock left by PID {pid}, which is gone"),
        });
    }
    let store = ws.store();
    store.clean_tmp()?;
    ws.clean_link_leftovers();
    let ctx = Ctx {
        plan,
        stat_cache: StatCache::load(&ws.stat_cache_path()),
        ws: ws.clone(),
        store,
        sink: sink.clone(),
        cancel: cancel.clone(),
        slurm: slurm_jobs(plan, &sink, true),
        detach: opts.detach,
    };
    // Stages that will run on Slurm: the cluster, their partitions and time limits are checked
    // now, before any local stage spends hours (cached ones need no cluster).
    if let Some(jobs) = &ctx.slurm {
        let on_slurm = |i: usize| mode[i] == Mode::Run && plan.stages[i].executor == Executor::Slurm;
        if (0..plan.stages.len()).any(on_slurm) {
            let cached: Vec<bool> = match status(plan) {
                Ok(st) => st.iter().map(|s| s.state == StageState::Cached).collect(),
                Err(_) => vec![false; plan.stages.len()],
            };
            jobs.preflight(plan, |i| on_slurm(i) && (force[i] || !cached[i]))?;
        }
    }
    sink(Event::RunStarted {
        pipeline: plan.name.clone(),
        stages: mode.iter().filter(|m| **m != Mode::Skip).count(),
    });

    let (nodes, mut errors) = schedule(&ctx, &mode, &force, opts.jobs.max(1), opts.keep_going);
    for &i in &plan.order {
        if matches!(nodes[i], Node::Pending) && mode[i] != Mode::Skip {
            let failed = failed_upstream(plan, &nodes, i);
            if !failed.is_empty() {
                sink(Event::StageBlocked { stage: plan.stages[i].name.clone(), failed });
            }
            sink(Event::StageFinished {
                stage: plan.stages[i].name.clone(),
                outcome: Outcome::Skipped,
                elapsed: Default::default(),
                output_bytes: 0,
                log: None,
            });
        }
    }
    // Only an accelerator (docs/caching.md): a full disk here must not fail a run whose stages
    // all succeeded, nor hide the failure of one that did not.
    if let Err(e) = ctx.stat_cache.save(&ws.stat_cache_path()) {
        sink(Event::Warning {
            stage: None,
            message: format!("the stat cache was not saved ({e}); the next run hashes its inputs again"),
        });
    }
    drop(lock);
    if cancel.load(Ordering::Relaxed) && errors.iter().all(|(_, e)| matches!(e, EngineError::Cancelled)) {
        return Err(EngineError::Cancelled);
    }
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.pop().expect("one error").1),
        k => Err(EngineError::StagesFailed(
            k,
            errors.iter().map(|(s, _)| format!("`{s}`")).collect::<Vec<_>>().join(", "),
        )),
    }
}

/// A Slurm client for the run, when any of the plan's stages is placed on Slurm. A controller
/// that needs retries is reported as a warning.
fn slurm_jobs(plan: &Plan, sink: &EventSink, retry: bool) -> Option<SlurmJobs> {
    if !plan.stages.iter().any(|s| s.executor == Executor::Slurm) {
        return None;
    }
    let sink = sink.clone();
    let mut settings = plan.slurm.clone();
    if !retry {
        settings.retry_for = 0.0;
    }
    Some(SlurmJobs::new(
        settings,
        Box::new(move |m: &str| sink(Event::Warning { stage: None, message: m.to_string() })),
    ))
}

/// What each stage does in this run: `--until` skips what the stage does not need; `--only`
/// runs the one stage and takes what it needs from the cache.
fn select(plan: &Plan, opts: &RunOptions) -> Result<Vec<Mode>, EngineError> {
    let n = plan.stages.len();
    let mut mode = vec![Mode::Run; n];
    if let Some(u) = &opts.until {
        let keep = plan.ancestors_and_self(plan.require(u)?);
        for i in 0..n {
            if !keep[i] {
                mode[i] = Mode::Skip;
            }
        }
    }
    if let Some(o) = &opts.only {
        let t = plan.require(o)?;
        let keep = plan.ancestors_and_self(t);
        for i in 0..n {
            mode[i] = if i == t {
                Mode::Run
            } else if keep[i] && mode[i] != Mode::Skip {
                Mode::CacheOnly
            } else {
                Mode::Skip
            };
        }
    }
    Ok(mode)
}

/// A stage that left resumable state did run, without finishing: "never run" would mislead.
fn unfinished(reasons: &mut [String]) {
    for r in reasons.iter_mut().filter(|r| *r == "never run") {
        *r = "never finished".into();
    }
}

/// The failed stages upstream of stage `i` (directly or through others), in plan order.
fn failed_upstream(plan: &Plan, nodes: &[Node], i: usize) -> Vec<String> {
    let above = plan.ancestors_and_self(i);
    plan.order
        .iter()
        .filter(|&&j| j != i && above[j] && matches!(nodes[j], Node::Failed))
        .map(|&j| plan.stages[j].name.clone())
        .collect()
}

/// The scheduler: starts each selected stage once its upstream stages are done, in plan order,
/// up to `jobs` at a time, an exclusive stage alone. After the first failure (or a cancel) it
/// starts nothing more and waits for the running stages; with `keep_going`, a failure only
/// holds back the stages downstream of it. Returns every stage's final state and the errors by
/// stage name, in the order they happened.
fn schedule(
    ctx: &Ctx,
    mode: &[Mode],
    force: &[bool],
    jobs: usize,
    keep_going: bool,
) -> (Vec<Node>, Vec<(String, EngineError)>) {
    let plan = ctx.plan;
    let n = plan.stages.len();
    let mut nodes: Vec<Node> = (0..n).map(|_| Node::Pending).collect();
    let mut done: Vec<Option<Done>> = vec![None; n];
    let mut errors: Vec<(String, EngineError)> = Vec::new();
    // Stages that run here count against `jobs` (and an exclusive one runs alone); a Slurm
    // stage only waits for its job, so independent ones are in the queue at the same time.
    let mut running = 0usize;
    let mut remote_running = 0usize;
    let mut exclusive_running = false;
    let remote = |i: usize| ctx.slurm.is_some() && plan.stages[i].executor == Executor::Slurm;
    let (tx, rx) = mpsc::channel::<(usize, Result<Done, EngineError>, std::time::Duration)>();

    std::thread::scope(|scope| {
        loop {
            let stop = (!errors.is_empty() && !keep_going) || ctx.cancel.load(Ordering::Relaxed);
            loop {
                if stop {
                    break;
                }
                let local_slot = running < jobs && !exclusive_running;
                let next = plan.order.iter().copied().find(|&i| {
                    matches!(nodes[i], Node::Pending)
                        && mode[i] != Mode::Skip
                        && plan.stages[i].deps.iter().all(|&d| matches!(nodes[d], Node::Done))
                        && (local_slot || remote(i))
                });
                let Some(i) = next else { break };
                let excl = !remote(i) && plan.stages[i].bound.exclusive();
                if excl && running > 0 {
                    break;
                }
                nodes[i] = Node::Running;
                if remote(i) {
                    remote_running += 1;
                } else {
                    running += 1;
                    exclusive_running = excl;
                }
                let snapshot = done.clone();
                let tx = tx.clone();
                let m = mode[i];
                let f = force[i];
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let r = ctx.process(i, &snapshot, m, f);
                    let _ = tx.send((i, r, t0.elapsed()));
                });
            }
            if running + remote_running == 0 {
                break;
            }
            let (i, r, elapsed) = rx.recv().expect("a running stage reports back");
            if remote(i) {
                remote_running -= 1;
            } else {
                running -= 1;
                exclusive_running = false;
            }
            match r {
                Ok(d) => {
                    done[i] = Some(d);
                    nodes[i] = Node::Done;
                }
                Err(EngineError::Detached { stage, job_id }) => {
                    nodes[i] = Node::Detached;
                    (ctx.sink)(Event::StageFinished {
                        stage,
                        outcome: Outcome::Submitted(job_id),
                        elapsed: Default::default(),
                        output_bytes: 0,
                        log: None,
                    });
                }
                Err(e) => {
                    nodes[i] = Node::Failed;
                    let (outcome, log) = match &e {
                        EngineError::Cancelled => (Outcome::Interrupted, None),
                        EngineError::StageFailed { message, log, .. } => {
                            (Outcome::Failed(message.clone()), log.clone())
                        }
                        e => (Outcome::Failed(e.to_string()), None),
                    };
                    (ctx.sink)(Event::StageFinished {
                        stage: plan.stages[i].name.clone(),
                        outcome,
                        elapsed,
                        output_bytes: 0,
                        log,
                    });
                    errors.push((plan.stages[i].name.clone(), e));
                }
            }
        }
    });
    (nodes, errors)
}

/// The state of a stage as `camel status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StageState {
    /// A valid entry exists for the stage's current key.
    Cached,
    /// The stage ran before, but its current key has no valid entry (reasons say why).
    Stale,
    /// The stage has never produced outputs in this workspace.
    Missing,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageStatus {
    pub stage: String,
    pub kind: String,
    pub state: StageState,
    /// `None` while an upstream stage is not cached: the key depends on its outputs.
    pub key: Option<String>,
    pub reasons: Vec<String>,
    /// The full key struct, where known.
    pub cache_key: Option<CacheKey>,
    pub output_bytes: Option<u64>,
    /// `local` or `slurm`.
    pub executor: String,
    /// A Slurm stage's job that has not been committed yet: id, state, pending reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobInfo>,
    /// Jobs of the stage under earlier keys (its params or inputs changed since they were
    /// submitted) that Slurm still lists as active: nothing waits for them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_jobs: Vec<OtherJob>,
    /// What an unfinished run left for the current key that the next run resumes from.
    pub partial: Option<Partial>,
}

/// Resolves every stage's key without running anything. Takes no lock: entries appear
/// atomically, so a concurrent run can only make the answer slightly out of date.
pub fn status(plan: &Plan) -> Result<Vec<StageStatus>, EngineError> {
    status_with(plan, true)
}

/// [`status`]; with `save` false it leaves the stat cache's file as it is (`camel gc --dry-run`
/// writes nothing).
pub(crate) fn status_with(plan: &Plan, save: bool) -> Result<Vec<StageStatus>, EngineError> {
    let ws = Workspace::new(&plan.workspace);
    let sink = crate::event::silent();
    let ctx = Ctx {
        plan,
        stat_cache: StatCache::load(&ws.stat_cache_path()),
        store: ws.store(),
        ws: ws.clone(),
        // `status` answers at once: no retries of a busy controller.
        slurm: slurm_jobs(plan, &sink, false),
        sink,
        cancel: Arc::new(AtomicBool::new(false)),
        detach: false,
    };
    let mut done: Vec<Option<Done>> = vec![None; plan.stages.len()];
    let mut out: Vec<Option<StageStatus>> = vec![None; plan.stages.len()];
    for &i in &plan.order {
        out[i] = Some(ctx.status_of(i, &mut done));
    }
    if save {
        let _ = ctx.stat_cache.save(&ws.stat_cache_path());
    }
    Ok(out.into_iter().map(|s| s.expect("every stage has a status")).collect())
}

impl Ctx<'_> {
    /// The status of stage `i`, its upstream stages' in `done`; records the stage there when it
    /// is cached, so that its dependents' keys can be resolved.
    fn status_of(&self, i: usize, done: &mut [Option<Done>]) -> StageStatus {
        let s = &self.plan.stages[i];
        let seen =
            if self.ws.read_record(&s.name).is_some() { StageState::Stale } else { StageState::Missing };
        let unknown = |reasons: Vec<String>| StageStatus {
            stage: s.name.clone(),
            kind: s.bound.kind().into(),
            state: seen,
            key: None,
            reasons,
            cache_key: None,
            output_bytes: None,
            executor: s.executor.as_str().into(),
            job: None,
            other_jobs: Vec::new(),
            partial: None,
        };
        if !s.missing_inputs.is_empty() {
            return unknown(s.missing_inputs.clone());
        }
        let blocked: Vec<String> = s
            .deps
            .iter()
            .filter(|&&d| done[d].is_none())
            .map(|&d| format!("upstream `{}` is not cached", self.plan.stages[d].name))
            .collect();
        if !blocked.is_empty() {
            return unknown(blocked);
        }
        let r = match self.resolve(i, done) {
            Ok(r) => r,
            Err(e) => return unknown(vec![e.to_string()]),
        };
        let (state, reasons, bytes) = match self.store.check(&r.digest) {
            EntryState::Valid(m) => {
                let bytes = m.total_size();
                done[i] = Some(Done { key: r.digest.clone(), outputs: m.outputs });
                (StageState::Cached, Vec::new(), Some(bytes))
            }
            EntryState::Corrupt(why) => {
                (StageState::Stale, vec![format!("cache entry is corrupt: {why}")], None)
            }
            EntryState::Missing => (seen, self.reasons(&s.name, &r), None),
        };
        let job = match (&self.slurm, state) {
            (Some(jobs), StageState::Stale | StageState::Missing) => {
                jobs.info(&self.plan.workspace, &r.digest)
            }
            _ => None,
        };
        let other_jobs = match &self.slurm {
            Some(jobs) => jobs.other_active_jobs(&self.plan.workspace, &s.name, &r.digest),
            None => Vec::new(),
        };
        let partial = if state == StageState::Cached { None } else { self.partial(i, &r) };
        let mut reasons = reasons;
        if partial.is_some() {
            unfinished(&mut reasons);
        }
        StageStatus {
            stage: s.name.clone(),
            kind: s.bound.kind().into(),
            state,
            key: Some(r.digest.clone()),
            reasons,
            cache_key: Some(r.cache_key),
            output_bytes: bytes,
            executor: s.executor.as_str().into(),
            job,
            other_jobs,
            partial,
        }
    }
}

/// The entries the plan's stages currently resolve to (for gc and verify), by stage.
pub fn current_entries(plan: &Plan) -> Result<Vec<(String, Option<String>)>, EngineError> {
    Ok(status(plan)?.into_iter().map(|s| (s.stage, s.key)).collect())
}

/// Ends a failed stage's log with the error the run printed, so that the log it points to says
/// why (a stage that fails before writing anything would leave it empty). Stage errors never
/// quote note text.
/// The line that ends the log of a stage that failed ([`log_failure`]).
const FAILED_LINE: &str = "camel: the stage failed: ";

fn log_failure(log_path: &std::path::Path, message: &str) {
    if let Ok(mut f) = fs::OpenOptions::new().append(true).create(true).open(log_path) {
        let _ = writeln!(f, "{FAILED_LINE}{message}");
    }
}

/// Whether the stage's log says its last run failed: a line of [`log_failure`]'s near its end
/// (a run truncates the log when the stage starts, so one that was interrupted, or is running
/// now, has none). Only the log's last 64 KiB are read.
fn last_run_failed(log_path: &std::path::Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(log_path) else { return false };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut tail = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024))).is_err() || f.read_to_end(&mut tail).is_err() {
        return false;
    }
    String::from_utf8_lossy(&tail).lines().any(|l| l.starts_with(FAILED_LINE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Bench;

    /// a -> b -> c, and d on its own.
    const CHAIN: &str = "
name: chain
stages:
  a:
    kind: fake
    params: {text: A}
  b:
    kind: fake
    inputs: {x: a.out}
    params: {text: B}
  c:
    kind: fake
    inputs: {x: b.out}
    params: {text: C}
  d:
    kind: fake
    params: {text: D}
";

    fn opts() -> RunOptions {
        RunOptions { jobs: 1, ..Default::default() }
    }

    #[test]
    fn runs_in_order_then_everything_is_cached() {
        let t = Bench::new();
        let r = t.run(CHAIN, opts());
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Ran), ["a", "b", "c", "d"]);
        assert_eq!(t.output("c"), "CBA");
        let starts: Vec<String> = t.take_runs().into_iter().filter(|l| l.starts_with("start")).collect();
        assert_eq!(starts, ["start a", "start b", "start c", "start d"]);

        let r = t.run(CHAIN, opts());
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Cached), ["a", "b", "c", "d"]);
        assert!(t.take_runs().is_empty());
    }

    #[test]
    fn until_runs_a_stage_and_what_it_needs() {
        let t = Bench::new();
        let r = t.run(CHAIN, RunOptions { until: Some("b".into()), ..opts() });
        r.result.as_ref().unwrap();
        assert_eq!(r.selected, Some(2));
        // Stages outside the selection are not reported at all, not even as skipped.
        assert_eq!(r.with(&Outcome::Ran), ["a", "b"]);
        assert_eq!(r.finished.len(), 2);
    }

    #[test]
    fn only_runs_one_stage_on_cached_inputs() {
        let t = Bench::new();
        let r = t.run(CHAIN, RunOptions { only: Some("b".into()), ..opts() });
        match r.result {
            Err(EngineError::Usage(m)) => assert!(m.contains("stage `a` is not cached"), "{m}"),
            other => panic!("expected a usage error, got {other:?}"),
        }
        assert!(t.take_runs().is_empty());

        t.run(CHAIN, opts()).result.unwrap();
        t.take_runs();
        let edited = CHAIN.replace("text: B", "text: B2");
        let r = t.run(&edited, RunOptions { only: Some("b".into()), ..opts() });
        r.result.as_ref().unwrap();
        assert_eq!(r.selected, Some(2));
        assert_eq!(r.with(&Outcome::Ran), ["b"]);
        assert_eq!(r.with(&Outcome::Cached), ["a"]);
        assert_eq!(t.take_runs(), ["start b", "end b"]);
        assert_eq!(t.output("b"), "B2A");
    }

    #[test]
    fn force_reruns_a_cached_stage() {
        let t = Bench::new();
        t.run(CHAIN, opts()).result.unwrap();
        t.take_runs();
        let r = t.run(CHAIN, RunOptions { force: vec!["d".into()], ..opts() });
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Ran), ["d"]);
        assert_eq!(r.with(&Outcome::Cached), ["a", "b", "c"]);
    }

    #[test]
    fn early_cutoff_keeps_dependents_cached() {
        let t = Bench::new();
        t.run(CHAIN, opts()).result.unwrap();
        t.take_runs();
        // `note` changes a's key but not its output: b's inputs hash the same, so b and c keep
        // their entries.
        let edited = CHAIN.replace("text: A}", "text: A, note: again}");
        let r = t.run(&edited, opts());
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Ran), ["a"]);
        assert_eq!(r.with(&Outcome::Cached), ["b", "c", "d"]);
        // Whereas a change of a's output reruns everything downstream of it.
        let edited = CHAIN.replace("text: A}", "text: A2}");
        let r = t.run(&edited, opts());
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Ran), ["a", "b", "c"]);
        assert_eq!(t.output("c"), "CBA2");
    }

    #[test]
    fn a_failure_skips_dependents_and_keeps_what_ran_beside_it() {
        let t = Bench::new();
        let failing = CHAIN.replace("text: A}", "text: A, fail: true}");
        // With two jobs, a and d start together (b waits for a); d finishes and is kept.
        let r = t.run(&failing, RunOptions { jobs: 2, ..Default::default() });
        match &r.result {
            Err(EngineError::StageFailed { stage, message, .. }) => {
                assert_eq!((stage.as_str(), message.as_str()), ("a", "told to fail"));
            }
            other => panic!("expected a's failure, got {other:?}"),
        }
        assert_eq!(r.failed(), ["a"]);
        assert_eq!(r.with(&Outcome::Ran), ["d"]);
        assert_eq!(r.with(&Outcome::Skipped), ["b", "c"]);
        let runs = t.take_runs();
        assert!(!runs.iter().any(|l| l.ends_with(" b") || l.ends_with(" c")), "{runs:?}");

        let r = t.run(CHAIN, opts());
        r.result.as_ref().unwrap();
        assert_eq!(r.with(&Outcome::Cached), ["d"]);
        assert_eq!(r.with(&Outcome::Ran), ["a", "b", "c"]);
    }

    #[test]
    fn keep_going_runs_what_does_not_depend_on_a_failure() {
        let t = Bench::new();
        // a fails at once; d (independent) must still run although it comes later in plan order
        // and only one job runs at a time.
        let failing = CHAIN.replace("text: A}", "text: A, fail: true}");
        let r = t.run(&failing, RunOptions { keep_going: true, ..opts() });
        assert!(matches!(&r.result, Err(EngineError::StageFailed { stage, .. }) if stage == "a"));
        assert_eq!(r.failed(), ["a"]);
        assert_eq!(r.with(&Outcome::Ran), ["d"]);
        assert_eq!(r.with(&Outcome::Skipped), ["b", "c"]);
        let blocked: Vec<(String, Vec<String>)> = r
            .events
            .iter()
            .filter_map(|e| match e {
                Event::StageBlocked { stage, failed } => Some((stage.clone(), failed.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(blocked, [("b".into(), vec!["a".into()]), ("c".into(), vec!["a".into()])]);

        // Without it, the first failure stops the run: d is skipped, and not because of a.
        t.take_runs();
        let r = t.run(&failing, opts());
        assert_eq!(r.with(&Outcome::Skipped), ["b", "c", "d"]);
        assert!(!r.events.iter().any(|e| matches!(e, Event::StageBlocked { stage, .. } if stage == "d")));
    }

    #[test]
    fn an_interrupted_stage_is_reported_as_interrupted() {
        let t = Bench::new();
        let yaml = "name: p\nstages:\n  a: {kind: fake, params: {text: A, sleep_ms: 300}}\n  b: {kind: fake, inputs: {x: a.out}}\n";
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            c.store(true, Ordering::SeqCst);
        });
        let r = t.run_with_cancel(yaml, opts(), cancel);
        stopper.join().unwrap();
        assert!(matches!(r.result, Err(EngineError::Cancelled)), "{:?}", r.result);
        assert_eq!(r.result.as_ref().unwrap_err().exit_code(), 130);
        assert_eq!(r.with(&Outcome::Interrupted), ["a"]);
        assert_eq!(r.with(&Outcome::Skipped), ["b"]);
        let elapsed = r.events.iter().find_map(|e| match e {
            Event::StageFinished { stage, elapsed, .. } if stage == "a" => Some(*elapsed),
            _ => None,
        });
        assert!(elapsed.unwrap() >= std::time::Duration::from_millis(250), "{elapsed:?}");
    }

    #[test]
    fn resumable_scratch_state_shows_in_status_and_when_the_stage_starts() {
        let t = Bench::new();
        std::fs::write(t.path("fail-d"), "").unwrap();
        assert!(t.run(CHAIN, opts()).result.is_err());
        std::fs::remove_file(t.path("fail-d")).unwrap();
        let plan = t.plan(CHAIN).unwrap();
        let st = status(&plan).unwrap();
        let d = st.iter().find(|s| s.stage == "d").unwrap();
        assert_eq!(d.state, StageState::Missing);
        assert!(d.reasons[0].starts_with("never finished: the last run failed"), "{:?}", d.reasons);
        let p = d.partial.as_ref().expect("d left a checkpoint");
        assert_eq!(
            (p.state.as_str(), p.resumes_from.as_str(), p.position),
            ("checkpoint at step 3/10", "step 3", Some(3))
        );
        assert!(st.iter().filter(|s| s.stage != "d").all(|s| s.partial.is_none()));
        let json = serde_json::to_value(d).unwrap();
        assert_eq!(json["partial"]["state"], "checkpoint at step 3/10");

        // The rerun says where it resumes, right after it starts.
        let r = t.run(CHAIN, opts());
        r.result.as_ref().unwrap();
        let i = r
            .events
            .iter()
            .position(|e| matches!(e, Event::StageStarted { stage, .. } if stage == "d"))
            .unwrap();
        assert!(
            matches!(&r.events[i + 1], Event::StageResumes { stage, partial } if stage == "d" && partial.resumes_from == "step 3"),
            "{:?}",
            r.events[i + 1]
        );
    }

    #[test]
    fn two_failures_are_reported_together() {
        let t = Bench::new();
        let failing =
            CHAIN.replace("text: A}", "text: A, fail: true}").replace("text: D}", "text: D, fail: true}");
        let r = t.run(&failing, RunOptions { jobs: 2, ..Default::default() });
        match &r.result {
            Err(EngineError::StagesFailed(2, names)) => {
                assert!(names.contains("`a`") && names.contains("`d`"))
            }
            other => panic!("expected two failures, got {other:?}"),
        }
    }

    #[test]
    fn an_exclusive_stage_runs_alone() {
        let t = Bench::new();
        let yaml = "
name: excl
stages:
  a: {kind: fake, params: {text: A, sleep_ms: 150}}
  c: {kind: fake, params: {text: C, sleep_ms: 150}}
  b: {kind: fake, params: {text: B, exclusive: true, sleep_ms: 50}}
  d: {kind: fake, params: {text: D}}
";
        t.run(yaml, RunOptions { jobs: 4, ..Default::default() }).result.unwrap();
        let runs = t.take_runs();
        // a and c overlap (jobs allow it), ...
        let mut first = runs[..2].to_vec();
        first.sort();
        assert_eq!(first, ["start a", "start c"], "{runs:?}");
        // ... b waits for both and nothing starts while it runs.
        let b = runs.iter().position(|l| l == "start b").unwrap();
        assert_eq!(runs[b + 1], "end b", "{runs:?}");
        let running_before_b = runs[..b].iter().filter(|l| l.starts_with("start")).count()
            - runs[..b].iter().filter(|l| l.starts_with("end")).count();
        assert_eq!(running_before_b, 0, "{runs:?}");
        assert_eq!(&runs[b + 2..], ["start d", "end d"], "{runs:?}");
    }

    #[test]
    fn status_explains_without_running() {
        let t = Bench::new();
        let plan = t.plan(CHAIN).unwrap();
        let st = status(&plan).unwrap();
        let by_name = |n: &str| st.iter().find(|s| s.stage == n).unwrap();
        assert_eq!(by_name("a").state, StageState::Missing);
        assert_eq!(by_name("a").reasons, ["never run"]);
        assert_eq!(by_name("b").key, None);
        assert_eq!(by_name("b").reasons, ["upstream `a` is not cached"]);
        assert!(t.take_runs().is_empty());

        t.run(CHAIN, opts()).result.unwrap();
        let plan = t.plan(&CHAIN.replace("text: C}", "text: C2}")).unwrap();
        let st = status(&plan).unwrap();
        let by_name = |n: &str| st.iter().find(|s| s.stage == n).unwrap();
        assert_eq!(by_name("b").state, StageState::Cached);
        assert_eq!(by_name("c").state, StageState::Stale);
        assert!(by_name("c").reasons.iter().any(|r| r.contains("text")), "{:?}", by_name("c").reasons);
    }

    #[test]
    fn status_says_when_the_last_run_of_a_never_finished_stage_failed() {
        let t = Bench::new();
        let failing = CHAIN.replace("text: D}", "text: D, fail: true}");
        assert!(t.run(&failing, opts()).result.is_err());
        let st = status(&t.plan(&failing).unwrap()).unwrap();
        let d = st.iter().find(|s| s.stage == "d").unwrap();
        assert_eq!(d.state, StageState::Missing);
        assert!(
            d.reasons[0].starts_with("never finished: the last run failed (its log: "),
            "{:?}",
            d.reasons
        );
        assert!(d.reasons[0].ends_with("d.log)"), "{:?}", d.reasons);
        let a = st.iter().find(|s| s.stage == "a").unwrap();
        assert_eq!(a.state, StageState::Cached);
    }
}
