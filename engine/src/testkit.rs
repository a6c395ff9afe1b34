//! Fake stage kinds and helpers for the engine's own unit tests: the planner and the scheduler
//! are tested in-process on temporary directories, without the real kinds (which live in other
//! crates and need DuckDB, libtorch or a network).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::EngineError;
use crate::event::{Event, EventSink, Outcome};
use crate::exec::{RunOptions, run};
use crate::plan::{Plan, plan_from_str};
use crate::stage::{OutputSpec, Partial, PartialProbe, Registry, Stage, StageContext, StageError};

/// Writes `text` followed by every input's content (in input-name order) to output `out`, and
/// appends `start NAME` / `end NAME` lines to `runs.log` in the pipeline's directory, so that a
/// test can see what ran and in what order. `note` changes the cache key but not the output. A
/// file `fail-NAME` beside the pipeline makes stage NAME fail as `fail` does, without changing its
/// key. A failing stage leaves `step` = 3 in its scratch dir, which [`Stage::partial`] reports; a
/// cancelled one stops after its sleep.
pub struct Fake;

#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FakeParams {
    pub text: String,
    pub note: String,
    pub fail: bool,
    pub exclusive: bool,
    /// How long the stage takes, so that overlaps between stages are visible.
    pub sleep_ms: u64,
}

impl Stage for Fake {
    type Params = FakeParams;
    const KIND: &'static str = "fake";
    const VERSION: u32 = 1;
    const SUMMARY: &'static str = "a stage for the engine's tests";

    fn outputs(_: &FakeParams) -> Vec<OutputSpec> {
        vec![OutputSpec::new("out", "out.txt")]
    }

    fn exclusive(p: &FakeParams) -> bool {
        p.exclusive
    }

    fn run(p: &FakeParams, ctx: &StageContext) -> Result<(), StageError> {
        record(ctx.work_dir(), &format!("start {}", ctx.stage()));
        std::thread::sleep(std::time::Duration::from_millis(p.sleep_ms));
        let result = if ctx.is_cancelled() {
            Err(StageError::Cancelled)
        } else if p.fail || ctx.work_dir().join(format!("fail-{}", ctx.stage())).exists() {
            std::fs::write(ctx.scratch_dir().join("step"), "3").map_err(StageError::io("write step"))?;
            Err(StageError::msg("told to fail"))
        } else {
            let mut out = p.text.clone();
            for path in ctx.inputs().values() {
                out.push_str(&std::fs::read_to_string(path).map_err(StageError::io("read an input"))?);
            }
            std::fs::write(ctx.out_dir().join("out.txt"), out).map_err(StageError::io("write out.txt"))
        };
        record(ctx.work_dir(), &format!("end {}", ctx.stage()));
        result
    }

    /// `chars`: the length of the output.
    fn metrics(_: &FakeParams, out_dir: &Path) -> std::collections::BTreeMap<String, f64> {
        let n = std::fs::read_to_string(out_dir.join("out.txt")).map_or(0, |t| t.len());
        [("chars".to_string(), n as f64)].into()
    }

    fn partial(_: &FakeParams, at: &PartialProbe) -> Option<Partial> {
        let step: u64 = std::fs::read_to_string(at.scratch_dir.join("step")).ok()?.trim().parse().ok()?;
        Some(Partial {
            state: format!("checkpoint at step {step}/10"),
            resumes_from: format!("step {step}"),
            position: Some(step),
        })
    }
}

static RECORD_LOCK: Mutex<()> = Mutex::new(());

fn record(dir: &Path, line: &str) {
    use std::io::Write;
    let _guard = RECORD_LOCK.lock().unwrap();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("runs.log")).unwrap();
    writeln!(f, "{line}").unwrap();
}

/// A registry holding the fake kinds.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Fake>();
    r
}

/// A pipeline in a temporary directory, run with the fake kinds.
pub struct Bench {
    pub dir: tempfile::TempDir,
}

/// What one run reported.
pub struct RunReport {
    pub result: Result<(), EngineError>,
    /// Each stage that finished (ran, cached, failed or skipped), in the order it did.
    pub finished: Vec<(String, Outcome)>,
    /// The `stages` count of `RunStarted`.
    pub selected: Option<usize>,
    /// Every event, in order.
    pub events: Vec<Event>,
}

impl RunReport {
    /// The stages that finished with `outcome`, sorted.
    pub fn with(&self, outcome: &Outcome) -> Vec<&str> {
        let mut v: Vec<&str> =
            self.finished.iter().filter(|(_, o)| o == outcome).map(|(s, _)| s.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// Stages that failed, sorted.
    pub fn failed(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .finished
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Failed(_)))
            .map(|(s, _)| s.as_str())
            .collect();
        v.sort_unstable();
        v
    }
}

impl Bench {
    pub fn new() -> Bench {
        Bench { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Plans `yaml` as `p.yaml` of the bench's directory.
    pub fn plan(&self, yaml: &str) -> Result<Plan, EngineError> {
        plan_from_str(&self.path("p.yaml"), yaml, &[], &registry())
    }

    /// Runs `yaml` with `opts` (`jobs` 0 means 1), collecting what happened.
    pub fn run(&self, yaml: &str, opts: RunOptions) -> RunReport {
        self.run_with_cancel(yaml, opts, Arc::new(std::sync::atomic::AtomicBool::new(false)))
    }

    /// As [`Bench::run`], with a cancel flag the test may set while the run goes on.
    pub fn run_with_cancel(
        &self,
        yaml: &str,
        opts: RunOptions,
        cancel: Arc<std::sync::atomic::AtomicBool>,
    ) -> RunReport {
        let plan = self.plan(yaml).unwrap_or_else(|e| panic!("the pipeline plans: {e:?}"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink: EventSink = {
            let events = events.clone();
            Arc::new(move |e| events.lock().unwrap().push(e))
        };
        let result = run(&plan, &opts, sink, cancel);
        let events = events.lock().unwrap();
        let finished = events
            .iter()
            .filter_map(|e| match e {
                Event::StageFinished { stage, outcome, .. } => Some((stage.clone(), outcome.clone())),
                _ => None,
            })
            .collect();
        let selected = events.iter().find_map(|e| match e {
            Event::RunStarted { stages, .. } => Some(*stages),
            _ => None,
        });
        RunReport { result, finished, selected, events: events.clone() }
    }

    /// The lines of `runs.log` so far, and empties it.
    pub fn take_runs(&self) -> Vec<String> {
        let p = self.path("runs.log");
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let _ = std::fs::remove_file(&p);
        text.lines().map(str::to_string).collect()
    }

    /// The current content of stage `stage`'s output `out`.
    pub fn output(&self, stage: &str) -> String {
        std::fs::read_to_string(self.path(&format!(".camel/out/{stage}/out.txt"))).unwrap()
    }
}
