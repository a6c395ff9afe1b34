//! The one trait every stage kind implements, and the registry that maps kind names to kinds.
//!
//! A kind is a type implementing [`Stage`]: its params are a typed serde struct (unknown fields
//! rejected by `#[serde(deny_unknown_fields)]`), its outputs are declared from those params, and
//! `run` receives a [`StageContext`]. Registering it is one line:
//! `registry.register::<MyStage>()`. Nothing here depends on DuckDB, libtorch or HTTP clients:
//! those stay in the crates of the kinds that need them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::event::Partial;
use crate::event::{Event, EventSink};
pub use crate::validate::OutputKind;
use crate::validate::{Problem, ValidateContext};

/// A stage kind.
pub trait Stage: Send + Sync + 'static {
    /// The params of one stage of this kind, as written under `params:` in a pipeline. Their
    /// JSON Schema (doc comments as descriptions, ranges as `minimum`/`maximum`) is what
    /// `camel kinds` prints and `camel schema` validates pipelines with, so a param is documented
    /// where it is declared.
    type Params: DeserializeOwned + Serialize + schemars::JsonSchema + Send + Sync + 'static;

    /// The name used as `kind:` in pipelines.
    const KIND: &'static str;
    /// Bumped whenever the kind's outputs change meaning for the same params and inputs: it is
    /// part of the cache key, so every stage of the kind reruns after a bump.
    const VERSION: u32;
    /// One line for `camel kinds` and error messages.
    const SUMMARY: &'static str;
    /// Top-level params that never enter the cache key nor provenance (secrets, API keys), and the
    /// only ones where `${env:NAME}` may be used.
    const UNHASHED: &'static [&'static str] = &[];

    /// Which names `inputs:` may and must use.
    fn inputs(_params: &Self::Params) -> InputSpec {
        InputSpec::Any
    }

    /// For inputs whose names the params give (a notes source's `notes: export`): each such
    /// input with the dotted path of the param that names it (`sources.0.notes`), so that a
    /// name missing from `inputs:` is reported at that param rather than at the stage.
    fn input_params(_params: &Self::Params) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The outputs the stage writes, by name, relative to its output directory.
    fn outputs(params: &Self::Params) -> Vec<OutputSpec>;

    /// An exclusive stage runs alone even with `--jobs N` (it uses the whole machine).
    fn exclusive(_params: &Self::Params) -> bool {
        false
    }

    /// Checks that can be decided before anything runs (value ranges, endpoints, what the inputs
    /// are): the planner calls it for every stage with its parsed params and bound inputs, and
    /// each problem becomes a pipeline error at its line. See [`crate::validate`].
    fn validate(_params: &Self::Params, _ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        Ok(())
    }

    fn run(params: &Self::Params, ctx: &StageContext) -> Result<(), StageError>;

    /// What an unfinished run left in the scratch directory that the next run reuses (training
    /// checkpoints, answered rows), for `camel status` and the run's header. Each kind knows its
    /// own scratch layout, so the engine asks rather than looks.
    fn partial(_params: &Self::Params, _at: &PartialProbe) -> Option<Partial> {
        None
    }

    /// The headline numbers of a finished run, read from its committed outputs in `out_dir`
    /// (final training loss, ROUGE-L, mean judge score), for `camel diff`. Names are short and
    /// stable (`loss`, `base.rouge_l`).
    fn metrics(_params: &Self::Params, _out_dir: &Path) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }
}

/// Where [`Stage::partial`] looks: the scratch directory of the stage's current key and its
/// resolved inputs.
pub struct PartialProbe<'a> {
    pub scratch_dir: &'a Path,
    pub inputs: &'a BTreeMap<String, PathBuf>,
}

/// The input names a kind accepts.
#[derive(Clone, Debug)]
pub enum InputSpec {
    /// Any names (the `command` kind).
    Any,
    Named {
        required: Vec<String>,
        optional: Vec<String>,
    },
}

/// A declared output: `name` is what `STAGE.name` refers to; `path` is relative to the stage's
/// output directory (`.` for the directory itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub name: String,
    pub path: String,
    /// What the output is, so that an input needing a directory is not bound to a file.
    pub what: OutputKind,
}

impl OutputSpec {
    /// An output whose kind follows from its path: `.` and `NAME/` are directories, anything
    /// else is not declared (use [`OutputSpec::file`] or [`OutputSpec::dir`] when it is known).
    pub fn new(name: impl Into<String>, path: impl Into<String>) -> Self {
        let path = path.into();
        let what = if path == "." || path.ends_with('/') { OutputKind::Dir } else { OutputKind::Unknown };
        OutputSpec { name: name.into(), path, what }
    }

    /// A file output.
    pub fn file(name: impl Into<String>, path: impl Into<String>) -> Self {
        OutputSpec { what: OutputKind::File, ..OutputSpec::new(name, path) }
    }

    /// A directory output.
    pub fn dir(name: impl Into<String>, path: impl Into<String>) -> Self {
        OutputSpec { what: OutputKind::Dir, ..OutputSpec::new(name, path) }
    }
}

/// How a stage run can fail.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Message(String),
    #[error("failed to {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl StageError {
    pub fn msg(m: impl Into<String>) -> Self {
        StageError::Message(m.into())
    }

    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StageError {
        let context = context.into();
        move |source| StageError::Io { context, source }
    }
}

/// Everything a running stage may touch.
pub struct StageContext {
    pub(crate) stage: String,
    pub(crate) inputs: BTreeMap<String, PathBuf>,
    pub(crate) out_dir: PathBuf,
    pub(crate) scratch_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) workspace_dir: PathBuf,
    pub(crate) allowed_endpoints: Vec<String>,
    pub(crate) progress: Progress,
    pub(crate) cancel: Arc<AtomicBool>,
    pub(crate) log: Mutex<File>,
    pub(crate) log_path: PathBuf,
}

impl StageContext {
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// A warning for the user: written to the stage's log, and shown on the console with the
    /// run's summary (never note text).
    pub fn warn(&self, message: &str) {
        self.log(&format!("warning: {message}"));
        (self.progress.sink)(crate::event::Event::Warning {
            stage: Some(self.stage.clone()),
            message: message.to_string(),
        });
    }

    /// The path of input `name` (a file or directory; read-only for the stage).
    pub fn input(&self, name: &str) -> Result<&Path, StageError> {
        self.inputs
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| StageError::msg(format!("input `{name}` is not bound")))
    }

    pub fn inputs(&self) -> &BTreeMap<String, PathBuf> {
        &self.inputs
    }

    /// A fresh, empty directory: whatever is here when `run` returns Ok is committed.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// A directory keyed by the stage's cache key that survives kills and failures and is
    /// removed once the stage commits: checkpoints and request logs go here.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch_dir
    }

    /// The pipeline file's directory: relative paths in params are relative to it.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The workspace (`.camel/`): state shared by every stage and run lives below it, such as
    /// the LLM request log (`<workspace>/llm/`).
    pub fn workspace_dir(&self) -> &Path {
        &self.workspace_dir
    }

    /// The pipeline's `allowed_endpoints`: hosts besides loopback that may receive notes.
    pub fn allowed_endpoints(&self) -> &[String] {
        &self.allowed_endpoints
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Errors with [`StageError::Cancelled`] once the run is interrupted.
    pub fn check_cancelled(&self) -> Result<(), StageError> {
        if self.is_cancelled() { Err(StageError::Cancelled) } else { Ok(()) }
    }

    /// Appends a line to the stage's log file. Never write note text here.
    pub fn log(&self, line: &str) {
        let mut f = self.log.lock().unwrap();
        let _ = writeln!(f, "{line}");
    }

    /// The log file, for stages that hand it to a child process.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

/// Building a context outside a pipeline run.
impl StageContext {
    /// A context for running a stage in-process without a pipeline or workspace: what a stage
    /// crate's unit tests use to call [`Stage::run`] on temporary directories. It creates
    /// `out/`, `scratch/`, `workspace/` and the log `log.txt` under `root`; the work directory
    /// is `root`; there are no inputs and no allowed endpoints, events are dropped and the run
    /// is never cancelled. The `with_*` methods change each of these. The engine itself builds
    /// its contexts from the run's directories, not through this.
    pub fn for_test(stage: &str, root: &Path) -> std::io::Result<StageContext> {
        let out_dir = root.join("out");
        let scratch_dir = root.join("scratch");
        let workspace_dir = root.join("workspace");
        for d in [&out_dir, &scratch_dir, &workspace_dir] {
            std::fs::create_dir_all(d)?;
        }
        let log_path = root.join("log.txt");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        Ok(StageContext {
            stage: stage.to_string(),
            inputs: BTreeMap::new(),
            out_dir,
            scratch_dir,
            work_dir: root.to_path_buf(),
            workspace_dir,
            allowed_endpoints: Vec::new(),
            progress: Progress::new(stage, crate::event::silent()),
            cancel: Arc::new(AtomicBool::new(false)),
            log: Mutex::new(log),
            log_path,
        })
    }

    /// Binds input `name` to `path`.
    pub fn with_input(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.inputs.insert(name.into(), path.into());
        self
    }

    /// Sets the directory relative params are resolved against.
    pub fn with_work_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.work_dir = dir.into();
        self
    }

    /// Sets the hosts besides loopback that may receive notes.
    pub fn with_allowed_endpoints(mut self, hosts: Vec<String>) -> Self {
        self.allowed_endpoints = hosts;
        self
    }

    /// Sends the stage's progress events to `sink`.
    pub fn with_sink(mut self, sink: EventSink) -> Self {
        self.progress = Progress::new(&self.stage, sink);
        self
    }

    /// Shares `flag` as the cancel flag: setting it makes [`StageContext::is_cancelled`] true.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = flag;
        self
    }
}

/// Progress of one stage, throttled so that a stage may report per item without flooding the
/// renderer.
pub struct Progress {
    stage: String,
    sink: EventSink,
    pos: AtomicU64,
    total: Mutex<(Option<u64>, String)>,
    last: Mutex<Option<Instant>>,
}

const PROGRESS_EVERY: Duration = Duration::from_millis(100);

impl Progress {
    pub(crate) fn new(stage: &str, sink: EventSink) -> Self {
        Progress {
            stage: stage.to_string(),
            sink,
            pos: AtomicU64::new(0),
            total: Mutex::new((None, String::new())),
            last: Mutex::new(None),
        }
    }

    /// Sets the expected number of items and what they are called ("notes", "MB", ...).
    pub fn set_total(&self, total: Option<u64>, unit: &str) {
        *self.total.lock().unwrap() = (total, unit.to_string());
        self.emit(None, true);
    }

    pub fn inc(&self, n: u64) {
        self.pos.fetch_add(n, Ordering::Relaxed);
        self.emit(None, false);
    }

    pub fn set_position(&self, pos: u64) {
        self.pos.store(pos, Ordering::Relaxed);
        self.emit(None, false);
    }

    /// A short status message (never note text).
    pub fn message(&self, msg: &str) {
        self.emit(Some(msg.to_string()), true);
    }

    fn emit(&self, message: Option<String>, force: bool) {
        {
            let mut last = self.last.lock().unwrap();
            let now = Instant::now();
            if !force && last.is_some_and(|t| now.duration_since(t) < PROGRESS_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let (total, unit) = self.total.lock().unwrap().clone();
        (self.sink)(Event::Progress {
            stage: self.stage.clone(),
            pos: self.pos.load(Ordering::Relaxed),
            total,
            unit,
            message,
        });
    }
}

/// A kind with its params parsed: what the planner and the executor hold per stage.
pub trait BoundStage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    /// All params, normalized (defaults filled in), as JSON with sorted keys.
    fn params_json(&self) -> serde_json::Value;
    fn unhashed(&self) -> &'static [&'static str];
    fn inputs(&self) -> InputSpec;
    /// [`Stage::input_params`].
    fn input_params(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn outputs(&self) -> Vec<OutputSpec>;
    fn exclusive(&self) -> bool;
    fn validate(&self, ctx: &ValidateContext) -> Result<(), Vec<Problem>>;
    fn run(&self, ctx: &StageContext) -> Result<(), StageError>;

    /// [`Stage::partial`].
    fn partial(&self, _at: &PartialProbe) -> Option<Partial> {
        None
    }

    /// [`Stage::metrics`].
    fn metrics(&self, _out_dir: &Path) -> BTreeMap<String, f64> {
        BTreeMap::new()
    }

    /// The params that enter the cache key: [`BoundStage::params_json`] without the unhashed ones.
    fn hashed_params(&self) -> serde_json::Value {
        let mut v = self.params_json();
        if let serde_json::Value::Object(map) = &mut v {
            for f in self.unhashed() {
                map.remove(*f);
            }
        }
        v
    }
}

struct Bound<S: Stage>(S::Params);

impl<S: Stage> BoundStage for Bound<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn params_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).expect("stage params serialize to JSON")
    }
    fn unhashed(&self) -> &'static [&'static str] {
        S::UNHASHED
    }
    fn inputs(&self) -> InputSpec {
        S::inputs(&self.0)
    }
    fn input_params(&self) -> Vec<(String, String)> {
        S::input_params(&self.0)
    }
    fn outputs(&self) -> Vec<OutputSpec> {
        S::outputs(&self.0)
    }
    fn exclusive(&self) -> bool {
        S::exclusive(&self.0)
    }
    fn validate(&self, ctx: &ValidateContext) -> Result<(), Vec<Problem>> {
        S::validate(&self.0, ctx)
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        S::run(&self.0, ctx)
    }
    fn partial(&self, at: &PartialProbe) -> Option<Partial> {
        S::partial(&self.0, at)
    }
    fn metrics(&self, out_dir: &Path) -> BTreeMap<String, f64> {
        S::metrics(&self.0, out_dir)
    }
}

/// Why params did not parse, with the path of the offending field below `params`.
#[derive(Debug)]
pub struct ParamError {
    pub path: Vec<String>,
    pub message: String,
    /// For unknown fields: the field, and the ones the kind accepts.
    pub unknown_field: Option<(String, Vec<String>)>,
}

/// A registered kind, with its params not yet parsed.
pub struct KindEntry {
    pub kind: &'static str,
    pub version: u32,
    pub summary: &'static str,
    pub unhashed: &'static [&'static str],
    parse: fn(serde_yaml::Value) -> Result<Arc<dyn BoundStage>, ParamError>,
    schema: fn() -> serde_json::Value,
}

impl KindEntry {
    pub fn parse(&self, params: serde_yaml::Value) -> Result<Arc<dyn BoundStage>, ParamError> {
        (self.parse)(params)
    }

    /// The JSON Schema (draft 2020-12) of the kind's params, derived from its params struct.
    pub fn params_schema(&self) -> serde_json::Value {
        (self.schema)()
    }

    /// The names of the kind's params, learnt from the "unknown field" error that a probe
    /// field provokes (every kind's params deny unknown fields).
    pub fn param_names(&self) -> Vec<String> {
        let mut probe = serde_yaml::Mapping::new();
        probe.insert("\u{1}camel-probe".into(), serde_yaml::Value::Null);
        match self.parse(serde_yaml::Value::Mapping(probe)) {
            Err(ParamError { unknown_field: Some((_, expected)), .. }) => expected,
            _ => Vec::new(),
        }
    }
}

fn parse_params<S: Stage>(v: serde_yaml::Value) -> Result<Arc<dyn BoundStage>, ParamError> {
    let v = if v.is_null() { serde_yaml::Value::Mapping(Default::default()) } else { v };
    match serde_path_to_error::deserialize::<_, S::Params>(v) {
        Ok(p) => Ok(Arc::new(Bound::<S>(p))),
        Err(e) => {
            let path: Vec<String> = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let message = e.inner().to_string();
            let unknown_field = parse_unknown_field(&message);
            Err(ParamError { path, message, unknown_field })
        }
    }
}

fn params_schema<S: Stage>() -> serde_json::Value {
    schemars::schema_for!(S::Params).to_value()
}

/// serde's "unknown field `x`, expected one of `a`, `b`" carries the accepted names only in its
/// message.
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field.to_string(), expected))
}

/// The kinds a pipeline may use.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, KindEntry>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers a kind. Panics if its name is taken: two kinds of one name is a programming error.
    pub fn register<S: Stage>(&mut self) -> &mut Self {
        let entry = KindEntry {
            kind: S::KIND,
            version: S::VERSION,
            summary: S::SUMMARY,
            unhashed: S::UNHASHED,
            parse: parse_params::<S>,
            schema: params_schema::<S>,
        };
        assert!(self.kinds.insert(S::KIND, entry).is_none(), "stage kind `{}` registered twice", S::KIND);
        self
    }

    pub fn get(&self, kind: &str) -> Option<&KindEntry> {
        self.kinds.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &KindEntry> {
        self.kinds.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kind that copies input `src` to its output, upper-cased, reporting progress.
    struct Upper;

    #[derive(serde::Deserialize, Serialize, schemars::JsonSchema)]
    struct UpperParams {}

    impl Stage for Upper {
        type Params = UpperParams;
        const KIND: &'static str = "upper";
        const VERSION: u32 = 1;
        const SUMMARY: &'static str = "upper-cases a file";

        fn outputs(_: &UpperParams) -> Vec<OutputSpec> {
            vec![OutputSpec::new("out", "out.txt")]
        }

        fn run(_: &UpperParams, ctx: &StageContext) -> Result<(), StageError> {
            ctx.check_cancelled()?;
            let text = std::fs::read_to_string(ctx.input("src")?).map_err(StageError::io("read src"))?;
            ctx.progress().set_total(Some(1), "files");
            ctx.log("upper-casing");
            std::fs::write(ctx.out_dir().join("out.txt"), text.to_uppercase())
                .map_err(StageError::io("write out.txt"))?;
            ctx.progress().inc(1);
            Ok(())
        }
    }

    #[test]
    fn a_stage_runs_in_process_on_a_test_context() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("in.txt"), "abc").unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink: EventSink = {
            let events = events.clone();
            Arc::new(move |e| events.lock().unwrap().push(e))
        };
        let ctx = StageContext::for_test("u", d.path())
            .unwrap()
            .with_input("src", d.path().join("in.txt"))
            .with_sink(sink);
        Upper::run(&UpperParams {}, &ctx).unwrap();
        assert_eq!(std::fs::read_to_string(ctx.out_dir().join("out.txt")).unwrap(), "ABC");
        assert_eq!(std::fs::read_to_string(ctx.log_path()).unwrap(), "upper-casing\n");
        assert!(events.lock().unwrap().iter().any(|e| matches!(e, Event::Progress { total: Some(1), .. })));

        let cancel = Arc::new(AtomicBool::new(true));
        let ctx = StageContext::for_test("u", d.path())
            .unwrap()
            .with_input("src", d.path().join("in.txt"))
            .with_cancel(cancel);
        assert!(matches!(Upper::run(&UpperParams {}, &ctx), Err(StageError::Cancelled)));
    }

    #[test]
    fn unknown_field_message_is_parsed() {
        let (f, exp) =
            parse_unknown_field("unknown field `thread`, expected one of `threads`, `seed`").unwrap();
        assert_eq!(f, "thread");
        assert_eq!(exp, ["threads", "seed"]);
        let (f, exp) = parse_unknown_field("unknown field `x`, expected `y`").unwrap();
        assert_eq!((f.as_str(), exp), ("x", vec!["y".to_string()]));
        let (_, exp) = parse_unknown_field("unknown field `x`, there are no fields").unwrap();
        assert!(exp.is_empty());
    }
}
