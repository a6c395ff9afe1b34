//! Validation: a pipeline file becomes a [`Plan`] — every stage's kind resolved, params parsed,
//! inputs bound to files or upstream outputs, and a topological order — or a list of
//! [`PipelineError`]s, each pointing at its line. Nothing is written while planning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};
use serde_yaml::Value;

use crate::error::{EngineError, PipelineError, did_you_mean};
use crate::pipeline::{
    InterpError, Interpolator, Override, PIPELINE_FIELDS, RawPipeline, RawStage, STAGE_FIELDS,
    endpoint_problem, set_path,
};
use crate::slurm::settings::{RESOURCE_FIELDS, SETTINGS_FIELDS};
use crate::slurm::{Executor, Resources, SlurmSettings};
use crate::spans::SpanIndex;
use crate::stage::{BoundStage, InputSpec, KindEntry, ParamError, Registry};

/// A validated pipeline.
pub struct Plan {
    pub name: String,
    /// The pipeline file, as given on the command line.
    pub file: PathBuf,
    /// The file's directory, absolute: relative paths are resolved against it.
    pub dir: PathBuf,
    pub workspace: PathBuf,
    /// `allowed_endpoints` as written (validated): where stages may send notes besides loopback.
    pub allowed_endpoints: Vec<String>,
    /// The pipeline's `slurm:` section (defaults for stages placed on Slurm).
    pub slurm: SlurmSettings,
    /// The `--set` overrides the plan was made with, as written (a Slurm job reloads the
    /// pipeline with them).
    pub overrides: Vec<String>,
    /// Stages in file order.
    pub stages: Vec<PlannedStage>,
    /// Indices into `stages`, each after all its upstream stages (ties in file order).
    pub order: Vec<usize>,
}

pub struct PlannedStage {
    pub name: String,
    pub description: Option<String>,
    pub bound: Arc<dyn BoundStage>,
    pub inputs: BTreeMap<String, InputRef>,
    /// Upstream stages, by index, without repeats.
    pub deps: Vec<usize>,
    /// Environment variables the params reference that are not set.
    pub missing_env: Vec<String>,
    /// The same, as errors at the line that reads each: `camel run` reports those of the stages
    /// it would run before running any ([`unset_secrets`]).
    pub unset_env: Vec<PipelineError>,
    /// Input paths that do not exist, as messages; only a plan loaded with [`load_for_status`]
    /// has any (elsewhere they are errors).
    pub missing_inputs: Vec<String>,
    /// Where the stage runs (`executor:`), not part of its key.
    pub executor: Executor,
    /// For a Slurm stage: its `resources:` over the pipeline's `slurm:` defaults.
    pub resources: Resources,
}

#[derive(Clone, Debug)]
pub enum InputRef {
    /// A file or directory outside the workspace.
    Path { written: String, path: PathBuf },
    /// Output `output` of stage number `stage`.
    Stage { stage: usize, name: String, output: String },
}

impl InputRef {
    /// How the input was written, for messages.
    pub fn describe(&self) -> String {
        match self {
            InputRef::Path { written, .. } => written.clone(),
            InputRef::Stage { name, output, .. } => format!("{name}.{output}"),
        }
    }
}

impl Plan {
    pub fn index_of(&self, stage: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == stage)
    }

    /// The index of `stage`, or a usage error that suggests the closest name.
    pub fn require(&self, stage: &str) -> Result<usize, EngineError> {
        self.index_of(stage).ok_or_else(|| {
            let hint = did_you_mean(stage, self.stages.iter().map(|s| s.name.as_str()))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            EngineError::Usage(format!("no stage `{stage}` in {}{hint}", self.file.display()))
        })
    }

    /// `stage` and everything upstream of it.
    pub fn ancestors_and_self(&self, stage: usize) -> Vec<bool> {
        let mut keep = vec![false; self.stages.len()];
        let mut todo = vec![stage];
        while let Some(i) = todo.pop() {
            if !keep[i] {
                keep[i] = true;
                todo.extend(&self.stages[i].deps);
            }
        }
        keep
    }

    /// Stages that take an input from `stage`.
    pub fn dependents(&self, stage: usize) -> Vec<usize> {
        (0..self.stages.len()).filter(|&i| self.stages[i].deps.contains(&stage)).collect()
    }
}

/// Reads, parses and validates the pipeline at `file`.
pub fn load(file: &Path, overrides: &[Override], registry: &Registry) -> Result<Plan, EngineError> {
    load_with(file, overrides, registry, MissingInputs::Errors)
}

/// The stages a run selects (`camel run --until` / `--only`); `None` for every stage.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub until: Option<String>,
    pub only: Option<String>,
}

/// As [`load`] for a run of the stages `selection` names and what they need: an input path
/// that does not exist is an error only for those stages. The other stages, which the run
/// skips, record it in [`PlannedStage::missing_inputs`] as for `camel status`, so that
/// `--until notes` works before the data of later stages is there. A stage `selection` names
/// that the pipeline lacks selects nothing here (the run then says so).
pub fn load_for_run(
    file: &Path,
    overrides: &[Override],
    registry: &Registry,
    selection: &Selection,
) -> Result<Plan, EngineError> {
    let mode = if selection.until.is_none() && selection.only.is_none() {
        MissingInputs::Errors
    } else {
        MissingInputs::Selected(selection.clone())
    };
    load_with(file, overrides, registry, mode)
}

/// As [`load`], but an input path that does not exist is not an error: the stage records it in
/// [`PlannedStage::missing_inputs`], so that `camel status` can say what is missing before any
/// data is in place.
pub fn load_for_status(
    file: &Path,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Plan, EngineError> {
    load_with(file, overrides, registry, MissingInputs::Recorded)
}

/// What planning does with an input path that does not exist.
#[derive(Clone, Debug)]
enum MissingInputs {
    /// An error.
    Errors,
    /// Recorded in the stage's `missing_inputs` (`camel status`).
    Recorded,
    /// An error for the stages the selection runs, recorded for the others.
    Selected(Selection),
}

fn load_with(
    file: &Path,
    overrides: &[Override],
    registry: &Registry,
    missing_inputs: MissingInputs,
) -> Result<Plan, EngineError> {
    let cannot = |what: String| {
        EngineError::Invalid(vec![PipelineError::new(file, format!("cannot read the pipeline file: {what}"))])
    };
    let bytes = std::fs::read(file).map_err(|e| {
        cannot(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        })
    })?;
    let src = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        cannot(format!(
            "line {line} is not UTF-8 text (byte 0x{:02X}); save the file as UTF-8",
            bytes.get(at).copied().unwrap_or(0)
        ))
    })?;
    plan_from(file, &src, overrides, registry, missing_inputs)
}

/// Validates a pipeline given as text; `file` names it in messages and anchors relative paths.
pub fn plan_from_str(
    file: &Path,
    src: &str,
    overrides: &[Override],
    registry: &Registry,
) -> Result<Plan, EngineError> {
    plan_from(file, src, overrides, registry, MissingInputs::Errors)
}

fn plan_from(
    file: &Path,
    src: &str,
    overrides: &[Override],
    registry: &Registry,
    missing_inputs: MissingInputs,
) -> Result<Plan, EngineError> {
    // A byte-order mark (editors on Windows write one) is not part of the YAML.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let dir =
        std::path::absolute(file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))
            .map_err(EngineError::io("resolve the pipeline's directory"))?;
    let mut p = Planner {
        file,
        src,
        spans: SpanIndex::build(src),
        errors: Vec::new(),
        missing_inputs,
        deferred: Vec::new(),
    };
    let raw = p.parse()?;
    let plan = p.build(raw, dir, overrides, registry);
    if !p.errors.is_empty() {
        return Err(EngineError::Invalid(p.errors));
    }
    Ok(plan.expect("a plan exists when there are no errors"))
}

struct Planner<'a> {
    file: &'a Path,
    src: &'a str,
    spans: SpanIndex,
    errors: Vec<PipelineError>,
    missing_inputs: MissingInputs,
    /// With [`MissingInputs::Selected`]: each missing input's error, with the stage's name and
    /// where in `errors` it belongs, until the selection is known.
    deferred: Vec<(usize, String, PipelineError)>,
}

/// What planning one stage needs to know about the rest of the pipeline.
struct StageScope<'a> {
    /// The pipeline's params, overrides applied.
    params: &'a serde_yaml::Mapping,
    /// Every stage's name, in file order: an input `A.B` refers to a stage when `A` is here.
    names: Vec<String>,
    /// The pipeline file's directory.
    dir: &'a Path,
    /// From [`Planner::apply_overrides`].
    set_paths: &'a [(Vec<String>, String)],
    registry: &'a Registry,
    /// The pipeline's `slurm:` defaults.
    slurm: &'a SlurmSettings,
}

/// `; set it with --set params.NAME=PATH` when the input is written as `${params.NAME}`.
fn param_hint(written: &str) -> String {
    match written.trim().strip_prefix("${params.").and_then(|r| r.strip_suffix('}')) {
        Some(name) => format!("; set it with --set params.{name}=PATH"),
        None => String::new(),
    }
}

/// A dotted param path as written in YAML terms: `sources.0.notes` as `sources[0].notes`.
fn indexed(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.') {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// `a`, `b`, `c` in backticks.
fn list_names(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn path_of(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

impl Planner<'_> {
    fn error(&self, path: &[String], key: bool, message: impl Into<String>) -> PipelineError {
        PipelineError::new(self.file, message).at(self.src, self.spans.find(path, key))
    }

    /// Parses the YAML into a [`RawPipeline`]: an empty file, duplicate keys and the first
    /// serde error each become [`PipelineError`]s pointing at their line.
    #[allow(clippy::result_large_err)] // per-stage errors are collected, not propagated through `?`
    fn parse(&mut self) -> Result<RawPipeline, EngineError> {
        let only_comments = self.src.lines().all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
        if only_comments {
            return Err(EngineError::Invalid(vec![
                PipelineError::new(self.file, "the pipeline file is empty")
                    .help("a pipeline needs at least `name:` and `stages:`; see pipelines/demo.yaml"),
            ]));
        }
        // Duplicate keys first: serde would report some of them at the first occurrence, and
        // silently keep the last of others (stage names, inputs).
        let dups = self.duplicate_key_errors();
        if !dups.is_empty() {
            return Err(EngineError::Invalid(dups));
        }
        let de = serde_yaml::Deserializer::from_str(self.src);
        let parsed = match self.merged() {
            Some(Ok(value)) => serde_path_to_error::deserialize::<_, RawPipeline<Value>>(value),
            Some(Err(e)) => {
                return Err(EngineError::Invalid(vec![
                    PipelineError::new(self.file, format!("a YAML merge key (`<<`) cannot be applied: {e}"))
                        .help("`<<:` takes an alias of a mapping (`<<: *defaults`) or a list of them"),
                ]));
            }
            None => serde_path_to_error::deserialize::<_, RawPipeline<Value>>(de),
        };
        let doc = parsed.map_err(|e| {
            let path = e.path().iter().map(|s| s.to_string()).filter(|s| s != "?").collect();
            EngineError::Invalid(vec![self.deserialize_error(path, e.into_inner())])
        })?;
        // Each stage on its own: every stage's structural mistake is reported, not the first.
        doc.try_map_stages(|name, v| {
            serde_path_to_error::deserialize::<_, RawStage>(v).map_err(|e| {
                let mut path = vec!["stages".to_string(), name.to_string()];
                path.extend(e.path().iter().map(|s| s.to_string()).filter(|s| s != "?"));
                self.deserialize_error(path, e.into_inner())
            })
        })
        .map_err(EngineError::Invalid)
    }

    /// The document with its YAML merge keys (`<<: *defaults`) applied, when it has any (the
    /// explicitly written keys of a mapping win over merged ones); `None` without merge keys, and
    /// when the text does not parse (the typed parse then says where).
    fn merged(&self) -> Option<Result<Value, serde_yaml::Error>> {
        fn has_merge(v: &Value) -> bool {
            match v {
                Value::Mapping(m) => m.iter().any(|(k, v)| k.as_str() == Some("<<") || has_merge(v)),
                Value::Sequence(s) => s.iter().any(has_merge),
                Value::Tagged(t) => has_merge(&t.value),
                _ => false,
            }
        }
        if !self.src.contains("<<") {
            return None;
        }
        let mut value: Value = serde_yaml::from_str(self.src).ok()?;
        if !has_merge(&value) {
            return None;
        }
        Some(value.apply_merge().map(|()| value))
    }

    /// One error per duplicated key, outermost only (a duplicated stage hides the duplicates
    /// inside it).
    fn duplicate_key_errors(&self) -> Vec<PipelineError> {
        let all = self.spans.duplicates();
        all.iter()
            .filter(|d| !all.iter().any(|o| d.path.len() > o.path.len() && d.path.starts_with(&o.path)))
            .map(|d| {
                let (l, _) = line_col(self.src, d.first.offset);
                let what = match d.path.as_slice() {
                    [s, name] if s == "stages" => format!("stage `{name}` is defined twice"),
                    [s, _, section, rest @ ..] if s == "stages" && section == "params" => {
                        format!("param `{}` is given twice", rest.join("."))
                    }
                    [s, _, section, rest @ ..] if s == "stages" && section == "inputs" => {
                        format!("input `{}` is given twice", rest.join("."))
                    }
                    _ => format!("`{}` is given twice", d.path.join(".")),
                };
                let err = PipelineError::new(self.file, format!("{what} (first at line {l})"))
                    .at(self.src, Some(d.second))
                    .label("again here")
                    .help("YAML keys must be unique within a mapping: remove or rename one");
                match d.path.first().map(String::as_str) {
                    Some("stages") if d.path.len() >= 2 => err.stage(d.path[1].clone()),
                    _ => err,
                }
            })
            .collect()
    }

    /// The pipeline error for serde's first complaint, with serde_yaml's own decorations
    /// (path prefix, trailing position) turned into our headline, label and help.
    fn deserialize_error(&self, path: Vec<String>, inner: serde_yaml::Error) -> PipelineError {
        if inner.to_string().contains("more than one document") {
            // The `---` that starts a second document (a first one may open the file).
            let starts: Vec<usize> = (self.src.lines().enumerate())
                .filter(|(_, l)| *l == "---" || l.starts_with("--- "))
                .map(|(i, _)| i + 1)
                .collect();
            let content_before = |line: usize| {
                self.src
                    .lines()
                    .take(line - 1)
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l != "---")
            };
            let second = starts.into_iter().find(|&l| content_before(l));
            let err = PipelineError::new(self.file, "the file holds more than one YAML document").help(
                "a pipeline file is one document: remove the `---` line and what follows, or split the file",
            );
            return match second {
                Some(l) => err.at_line_col(self.src, l, 1),
                None => err,
            };
        }
        let (message, started_at) = undecorate(&inner.to_string(), &path);
        const DATA_ERRORS: &[&str] = &[
            "unknown field",
            "missing field",
            "invalid type",
            "invalid value",
            "invalid length",
            "duplicate",
            "unknown variant",
        ];
        let syntax = inner.location().is_some() && !DATA_ERRORS.iter().any(|d| message.starts_with(d));
        let mut err = PipelineError::new(
            self.file,
            if syntax { self.syntax_message(&message) } else { humanize(&message, &path) },
        );
        if let Some(help) = self.field_help(&message, &path) {
            err = err.help(help);
        } else if syntax {
            err = err.help(self.syntax_help(&message, inner.location().map(|l| (l.line(), l.column()))));
        }
        let last_line = self.src.lines().count();
        let at_key = message.starts_with("unknown field")
            || message.starts_with("duplicate field")
            || (message.starts_with("missing field") && !path.is_empty());
        let err = if at_key {
            err.at(self.src, self.spans.find(&path, true))
        } else if let Some(loc) = inner.location() {
            match started_at {
                // An error "at" the end of the file is better shown where the construct began.
                Some((l, c)) if loc.line() > last_line => err.at_line_col(self.src, l, c),
                _ => err.at_line_col(self.src, loc.line().min(last_line.max(1)), loc.column()),
            }
        } else if !path.is_empty() {
            err.at(self.src, self.spans.find(&path, false))
        } else {
            err
        };
        match path.first().map(String::as_str) {
            Some("stages") if path.len() >= 2 => err.stage(path[1].clone()),
            _ => err,
        }
    }

    /// A syntax error's message, its echoes capped; a line longer than YAML's 1,024-character
    /// limit on a plain key is named as the cause (yaml's own message blames what follows it).
    fn syntax_message(&self, message: &str) -> String {
        let message = crate::validate::cap_quoted(message);
        match self.src.lines().position(|l| l.len() > 1024 && l.contains(':')) {
            Some(i) => format!(
                "{message}; line {} is {} characters long, and YAML allows a plain key of at most 1024 \
                 (put a long value on its own line after `KEY: |`, or quote it)",
                i + 1,
                self.src.lines().nth(i).map_or(0, |l| l.chars().count())
            ),
            None => message,
        }
    }

    fn syntax_help(&self, message: &str, loc: Option<(usize, usize)>) -> String {
        let at_tab = loc.is_some_and(|(l, c)| {
            self.src.lines().nth(l.saturating_sub(1)).and_then(|line| line.chars().nth(c.saturating_sub(1)))
                == Some('\t')
        });
        if self.src.lines().any(|l| l.len() > 1024 && l.contains(':')) {
            "shorten the key to at most 1024 characters, or quote it".into()
        } else if at_tab || (message.contains("cannot start any token") && self.src.contains('\t')) {
            "YAML cannot be indented with tabs: use spaces".into()
        } else if message.contains("mapping values are not allowed") {
            "a `: ` inside an unquoted value starts a mapping: quote the whole value".into()
        } else {
            "the file is not valid YAML; check the indentation and brackets around this point".into()
        }
    }

    fn field_help(&self, message: &str, path: &[String]) -> Option<String> {
        let field = unknown_field_name(message)?;
        // The path ends with the unknown field itself.
        let parent = &path[..path.len().saturating_sub(1)];
        let fields = match parent {
            [] => PIPELINE_FIELDS,
            [s, _] if s == "stages" => STAGE_FIELDS,
            _ => return None,
        };
        Some(match did_you_mean(&field, fields.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("allowed here: {}", fields.join(", ")),
        })
    }

    /// Turns a parsed pipeline into a plan, recording every problem in `self.errors` (and
    /// returning `None` when there is any). The steps run in a fixed order so that errors are
    /// listed in the order a reader meets them: `--set` overrides, the pipeline's own fields,
    /// each stage in file order, references between stages, and last the cycle check.
    fn build(
        &mut self,
        mut raw: RawPipeline,
        dir: PathBuf,
        overrides: &[Override],
        registry: &Registry,
    ) -> Option<Plan> {
        let set_paths = self.apply_overrides(&mut raw, overrides);
        self.check_header(&raw);
        let workspace = self.resolve_workspace(&raw, &dir);
        let allowed_endpoints = self.check_allowed_endpoints(&raw);
        let slurm = self.check_slurm(&raw);

        let scope = StageScope {
            params: &raw.params,
            names: raw.stages.keys().cloned().collect(),
            dir: &dir,
            set_paths: &set_paths,
            registry,
            slurm: &slurm,
        };
        let stages: Vec<PlannedStage> =
            raw.stages.iter().filter_map(|(name, rs)| self.plan_stage(name, rs, &scope)).collect();
        self.keep_selected_missing_inputs(&stages, &scope.names);
        if !self.errors.is_empty() {
            return None;
        }
        self.check_output_refs(&stages);
        let order = self.order(&stages)?;
        if !self.errors.is_empty() {
            return None;
        }
        self.validate_stages(&stages, &dir, &allowed_endpoints, &set_paths, registry);
        if !self.errors.is_empty() {
            return None;
        }
        Some(Plan {
            name: raw.name,
            file: self.file.to_path_buf(),
            dir,
            workspace,
            allowed_endpoints,
            slurm,
            overrides: overrides.iter().map(|o| o.text.clone()).collect(),
            stages,
            order,
        })
    }

    /// Applies `--set` overrides to the parsed pipeline, so that their values are validated like
    /// written ones. Returns each stage override's path below `stages` with its text, so that a
    /// param error it caused points at the command line rather than the file.
    fn apply_overrides(
        &mut self,
        raw: &mut RawPipeline,
        overrides: &[Override],
    ) -> Vec<(Vec<String>, String)> {
        let set_paths = overrides
            .iter()
            .map(|o| {
                // A pipeline param's override is kept as `params.NAME…` (no stage path starts so).
                let mut p = if o.target[0] == "params" {
                    vec!["params".to_string()]
                } else {
                    vec!["stages".to_string(), o.target[0].clone(), "params".to_string()]
                };
                p.extend(o.target[1..].iter().cloned());
                (p, o.text.clone())
            })
            .collect();
        for o in overrides {
            if o.target[0] == "params" && !self.param_exists(&raw.params, &o.target[1]) {
                let known: Vec<String> = raw.params.keys().map(crate::pipeline::key_string).collect();
                let help = match did_you_mean(&o.target[1], known.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `params.{s}`?"),
                    None if known.is_empty() => "the pipeline has no `params:` section".to_string(),
                    None => format!("pipeline params: {}", known.join(", ")),
                };
                self.errors.push(
                    PipelineError::new(
                        self.file,
                        format!("`--set {}`: the pipeline has no param `{}`", o.text, o.target[1]),
                    )
                    .help(help),
                );
            } else if o.target[0] == "params" {
                let mut v = Value::Mapping(std::mem::take(&mut raw.params));
                set_path(&mut v, &o.target[1..], o.value.clone());
                raw.params = match v {
                    Value::Mapping(m) => m,
                    _ => unreachable!("set_path keeps a mapping at the root"),
                };
            } else if let Some(stage) = raw.stages.get_mut(&o.target[0]) {
                match o.target[1].as_str() {
                    "executor" if o.target.len() == 2 => stage.executor = Some(o.value.clone()),
                    "resources" => {
                        let r = stage.resources.get_or_insert(Value::Null);
                        set_path(r, &o.target[2..], o.value.clone());
                    }
                    _ => set_path(&mut stage.params, &o.target[1..], o.value.clone()),
                }
            } else if o.target[0] == "slurm" {
                let r = raw.slurm.get_or_insert(Value::Null);
                set_path(r, &o.target[1..], o.value.clone());
            } else {
                let hint = did_you_mean(&o.target[0], raw.stages.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| {
                        "the first part names a stage, or `params` for a pipeline param".into()
                    });
                self.errors.push(
                    PipelineError::new(self.file, format!("`--set {}`: no stage `{}`", o.text, o.target[0]))
                        .help(hint),
                );
            }
        }
        set_paths
    }

    /// Whether `--set params.NAME=…` sets something the pipeline has: a param of its `params:`,
    /// or one it refers to (`${params.NAME}`) without a default.
    fn param_exists(&self, params: &serde_yaml::Mapping, name: &str) -> bool {
        params.contains_key(name)
            || [format!("${{params.{name}}}"), format!("${{params.{name}.")]
                .iter()
                .any(|r| self.src.contains(r))
    }

    /// `name` must not be empty and there must be at least one stage.
    fn check_header(&mut self, raw: &RawPipeline) {
        if raw.name.trim().is_empty() {
            self.errors.push(self.error(&path_of(&["name"]), false, "`name` is empty"));
        }
        if raw.stages.is_empty() {
            self.errors.push(
                self.error(&path_of(&["stages"]), true, "the pipeline has no stages")
                    .help("add at least one stage under `stages:`"),
            );
        }
        self.check_param_values(&Value::Mapping(raw.params.clone()), &mut vec!["params".to_string()]);
    }

    /// A pipeline param's value is used as written: a `${env:…}` or `${params.…}` in it would
    /// reach the stages as literal text (and a secret's name would enter cache keys), so either is
    /// an error where it is written.
    fn check_param_values(&mut self, v: &Value, path: &mut Vec<String>) {
        match v {
            Value::String(t) => {
                let (what, help) = if t.contains("${env:") {
                    (
                        "`${env:…}` cannot be used in `params:`",
                        "pipeline params enter cache keys; write `${env:NAME}` directly in the stage's \
                         secret field (`api_key`, `secret_env`), which is never hashed",
                    )
                } else if t.contains("${params.") {
                    (
                        "a pipeline param cannot refer to another (`${params.…}`)",
                        "write the value out, or refer to both params from the stage",
                    )
                } else {
                    return;
                };
                self.errors.push(self.error(path, false, what).help(help));
            }
            Value::Mapping(m) => {
                for (k, v) in m {
                    path.push(crate::pipeline::key_string(k));
                    self.check_param_values(v, path);
                    path.pop();
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    self.check_param_values(v, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The workspace directory: `workspace:` (params interpolated) relative to the pipeline's
    /// directory, `.camel` beside the file by default or when the field is wrong.
    fn resolve_workspace(&mut self, raw: &RawPipeline, dir: &Path) -> PathBuf {
        let Some(w) = &raw.workspace else { return dir.join(".camel") };
        let mut interp = Interpolator { params: &raw.params, env_allowed: None, missing_env: vec![] };
        match interp.value(&Value::String(w.clone()), &mut vec![]) {
            Ok(Value::String(w)) => dir.join(w),
            Ok(_) => {
                self.errors.push(self.error(&path_of(&["workspace"]), false, "`workspace` must be a path"));
                dir.join(".camel")
            }
            Err(e) => {
                self.interp_error(&path_of(&["workspace"]), None, e);
                dir.join(".camel")
            }
        }
    }

    /// `allowed_endpoints` as written, each checked to be a host pattern.
    fn check_allowed_endpoints(&mut self, raw: &RawPipeline) -> Vec<String> {
        let allowed_endpoints = raw.allowed_endpoints.clone().unwrap_or_default();
        for (i, e) in allowed_endpoints.iter().enumerate() {
            if let Some(problem) = endpoint_problem(e) {
                self.errors
                    .push(self.error(&path_of(&["allowed_endpoints", &i.to_string()]), false, problem).help(
                    "list hosts that may receive notes: `host`, `host:port`, `*.domain` or `https://host`",
                ));
            }
        }
        allowed_endpoints
    }

    /// The pipeline's `slurm:` section: how camel talks to Slurm, and default resources.
    fn check_slurm(&mut self, raw: &RawPipeline) -> SlurmSettings {
        let mut settings = SlurmSettings::new();
        let Some(v) = &raw.slurm else { return settings };
        let base = path_of(&["slurm"]);
        let Some(map) = v.as_mapping() else {
            if !v.is_null() {
                self.errors.push(
                    self.error(&base, false, "`slurm` must be a mapping of defaults")
                        .help("e.g. `slurm: {partition: gpu, account: mylab, time: \"24:00:00\"}`"),
                );
            }
            return settings;
        };
        let mut rest = serde_yaml::Mapping::new();
        for (k, val) in map {
            let key = crate::pipeline::key_string(k);
            let at = |f: &str| path_of(&["slurm", f]);
            match key.as_str() {
                "poll_interval" | "retry_for" => match val.as_f64().filter(|x| x.is_finite() && *x >= 0.0) {
                    Some(x) if key == "poll_interval" && x > 0.0 => settings.poll_interval = x,
                    Some(x) if key == "retry_for" => settings.retry_for = x,
                    _ => self.errors.push(self.error(
                        &at(&key),
                        false,
                        format!("`slurm.{key}` must be a number of seconds above 0"),
                    )),
                },
                "camel" => match val.as_str() {
                    Some(c) if !c.trim().is_empty() => settings.camel = Some(c.to_string()),
                    _ => self.errors.push(self.error(
                        &at("camel"),
                        false,
                        "`slurm.camel` must be the path of camel on the compute nodes",
                    )),
                },
                _ => {
                    rest.insert(k.clone(), val.clone());
                }
            }
        }
        if let Some(r) = self.parse_resources(&base, None, &Value::Mapping(rest), SETTINGS_FIELDS) {
            settings.defaults = r;
        }
        settings
    }

    /// Parses and checks a `resources:` mapping (or the resource part of `slurm:`) at `base`.
    fn parse_resources(
        &mut self,
        base: &[String],
        stage: Option<&str>,
        v: &Value,
        more_fields: &[&str],
    ) -> Option<Resources> {
        let with_stage = |e: PipelineError| match stage {
            Some(s) => e.stage(s),
            None => e,
        };
        let r: Resources = match serde_path_to_error::deserialize(v.clone()) {
            Ok(r) => r,
            Err(e) => {
                let mut p = base.to_vec();
                p.extend(e.path().iter().map(|s| s.to_string()).filter(|s| s != "?"));
                let inner = e.into_inner().to_string();
                let err = match unknown_field_name(&inner) {
                    Some(field) => {
                        p.push(field.clone());
                        let mut known: Vec<&str> = RESOURCE_FIELDS.to_vec();
                        known.extend(more_fields);
                        let help = match did_you_mean(&field, known.iter().copied()) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("allowed here: {}", known.join(", ")),
                        };
                        self.error(&p, true, format!("unknown Slurm resource `{field}`")).help(help)
                    }
                    None => self.error(
                        &p,
                        false,
                        format!("{}: {}", p[base.len()..].join("."), humanize(&inner, &p)),
                    ),
                };
                self.errors.push(with_stage(err));
                return None;
            }
        };
        let problems = r.problems();
        for (field, message) in &problems {
            let mut p = base.to_vec();
            p.push(field.to_string());
            self.errors.push(with_stage(self.error(&p, false, message.clone())));
        }
        problems.is_empty().then_some(r)
    }

    /// A stage's `executor:` and `resources:` (over the pipeline's `slurm:` defaults).
    fn placement(
        &mut self,
        base: &[String],
        name: &str,
        rs: &RawStage,
        slurm: &SlurmSettings,
    ) -> (Executor, Resources) {
        let mut executor = Executor::Local;
        if let Some(v) = &rs.executor {
            let mut p = base.to_vec();
            p.push("executor".into());
            match v.as_str() {
                Some("local") => {}
                Some("slurm") => executor = Executor::Slurm,
                other => {
                    let written = other.map_or_else(|| format!("{v:?}"), str::to_string);
                    let help = match did_you_mean(&written, ["local", "slurm"]) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "a stage runs `local` (the default) or on `slurm`".to_string(),
                    };
                    self.errors.push(
                        self.error(&p, false, format!("unknown executor `{written}`")).stage(name).help(help),
                    );
                }
            }
        }
        let mut resources = slurm.defaults.clone();
        if let Some(v) = rs.resources.as_ref().filter(|v| !v.is_null()) {
            let mut p = base.to_vec();
            p.push("resources".into());
            if let Some(r) = self.parse_resources(&p, Some(name), v, &[]) {
                resources = r.over(&slurm.defaults);
            }
        }
        // What only the stage's values and the pipeline's defaults together decide (a time limit
        // too short for the signal grace).
        if executor == Executor::Slurm {
            for (field, msg) in resources.merged_problems() {
                let mut p = base.to_vec();
                p.extend(["resources".to_string(), field.to_string()]);
                self.errors.push(self.error(&p, false, msg).stage(name));
            }
        }
        (executor, resources)
    }

    /// Plans one stage: its name, kind, params, outputs and inputs. `None` when the stage cannot
    /// be planned at all (bad name, unknown kind, params that do not parse); a stage returned
    /// may still have recorded errors (outputs, inputs), which the caller checks.
    fn plan_stage(&mut self, name: &String, rs: &RawStage, scope: &StageScope) -> Option<PlannedStage> {
        let base = path_of(&["stages", name]);
        if !valid_stage_name(name) {
            self.errors
                .push(self.error(&base, true, format!("invalid stage name `{name}`")).stage(name).help(
                "stage names use letters, digits, `_` and `-` (no dots: `STAGE.OUTPUT` refers to outputs)",
            ));
            return None;
        }
        if name == "params" || name == "slurm" {
            self.errors.push(
                self.error(&base, true, format!("`{name}` cannot name a stage")).stage(name).help(format!(
                    "`--set {name}.…` sets the pipeline's `{name}:`, so a stage of that name could not be \
                     overridden: rename the stage"
                )),
            );
            return None;
        }
        if name.len() > crate::validate::MAX_STAGE_NAME {
            self.errors.push(
                self.error(&base, true, format!("the stage name is {} bytes long", name.len()))
                    .stage(format!("{}…", &name[..40]))
                    .help(format!(
                        "a stage's name becomes file names in the workspace (out/NAME, logs/NAME.log), \
                         so it may be at most {} bytes: shorten it",
                        crate::validate::MAX_STAGE_NAME
                    )),
            );
            return None;
        }
        let entry = self.resolve_kind(&base, name, rs, scope.registry)?;
        let (bound, missing_env) = self.bind_params(&base, name, rs, entry, scope)?;
        let unset_env = self.unset_env_errors(&base, name, rs, &missing_env);
        self.check_outputs(&base, name, bound.as_ref());
        let (inputs, missing_inputs) = self.bind_inputs(&base, name, rs, scope);
        let (executor, resources) = self.placement(&base, name, rs, scope.slurm);
        self.check_input_names(&base, name, rs, bound.as_ref());
        let mut deps: Vec<usize> = inputs
            .values()
            .filter_map(|i| match i {
                InputRef::Stage { stage, .. } => Some(*stage),
                _ => None,
            })
            .collect();
        deps.sort_unstable();
        deps.dedup();
        Some(PlannedStage {
            name: name.clone(),
            description: rs.description.clone(),
            bound,
            inputs,
            deps,
            missing_env,
            unset_env,
            missing_inputs,
            executor,
            resources,
        })
    }

    /// One error per unset `${env:NAME}`, at the param that reads it.
    fn unset_env_errors(
        &self,
        base: &[String],
        name: &str,
        rs: &RawStage,
        missing: &[String],
    ) -> Vec<PipelineError> {
        missing
            .iter()
            .map(|var| {
                let mut p = base.to_vec();
                p.push("params".into());
                p.extend(find_string(&rs.params, &format!("${{env:{var}}}")).unwrap_or_default());
                self.error(&p, false, format!("environment variable `{var}` is not set"))
                    .stage(name)
                    .label("read here")
                    .help(format!(
                        "the pipeline reads it with ${{env:{var}}}: export {var}=… before `camel run` \
                         (a secret is never stored, so every run that runs this stage needs it)"
                    ))
            })
            .collect()
    }

    /// Runs every kind's own checks ([`crate::Stage::validate`]) on its parsed params and bound
    /// inputs, each problem an error at the node it names.
    fn validate_stages(
        &mut self,
        stages: &[PlannedStage],
        dir: &Path,
        allowed_endpoints: &[String],
        set_paths: &[(Vec<String>, String)],
        registry: &Registry,
    ) {
        for s in stages {
            let inputs = s
                .inputs
                .iter()
                .map(|(k, v)| {
                    let info = match v {
                        InputRef::Path { path, .. } => crate::validate::InputInfo::Path(path.clone()),
                        InputRef::Stage { stage, name, output } => crate::validate::InputInfo::Output {
                            stage: name.clone(),
                            output: output.clone(),
                            what: stages[*stage]
                                .bound
                                .outputs()
                                .iter()
                                .find(|o| &o.name == output)
                                .map_or(crate::stage::OutputKind::Unknown, |o| o.what),
                        },
                    };
                    (k.clone(), info)
                })
                .collect();
            let ctx =
                crate::validate::ValidateContext { stage: &s.name, inputs, work_dir: dir, allowed_endpoints };
            // The ranges of the kind's schema (what `camel kinds` prints), then the kind's own
            // checks, whose message wins where both name the same param.
            let mut problems = registry.get(s.bound.kind()).map_or_else(Vec::new, |e| {
                crate::validate::schema_range_problems(&e.params_schema(), &s.bound.params_json())
            });
            if let Err(own) = s.bound.validate(&ctx) {
                problems.retain(|g| !own.iter().any(|o| o.at == g.at));
                problems.extend(own);
            }
            for pr in problems {
                let mut p = path_of(&["stages", &s.name]);
                p.extend(pr.at.iter().cloned());
                let from_set = last_set(set_paths, &p);
                let err = match from_set {
                    Some(text) => PipelineError::new(self.file, format!("`--set {text}`: {}", pr.message)),
                    None => self.error(&p, false, pr.message),
                };
                let err = err.stage(&s.name);
                self.errors.push(match pr.help {
                    Some(h) => err.help(h),
                    None => err,
                });
            }
        }
    }

    /// The registered kind of `kind:`, or an error that suggests the closest one.
    fn resolve_kind<'r>(
        &mut self,
        base: &[String],
        name: &str,
        rs: &RawStage,
        registry: &'r Registry,
    ) -> Option<&'r KindEntry> {
        if let Some(entry) = registry.get(&rs.kind) {
            return Some(entry);
        }
        let mut kp = base.to_vec();
        kp.push("kind".into());
        let known: Vec<&str> = registry.kinds().map(|k| k.kind).collect();
        let help = match did_you_mean(&rs.kind, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("known kinds: {}", known.join(", ")),
        };
        self.errors.push(
            self.error(&kp, false, format!("unknown stage kind `{}`", rs.kind))
                .stage(name)
                .label("unknown kind")
                .help(help),
        );
        None
    }

    /// Interpolates the stage's params and parses them as its kind's params. Returns the bound
    /// stage and the `${env:…}` variables that are not set.
    fn bind_params(
        &mut self,
        base: &[String],
        name: &str,
        rs: &RawStage,
        entry: &KindEntry,
        scope: &StageScope,
    ) -> Option<(Arc<dyn BoundStage>, Vec<String>)> {
        let mut ppath = base.to_vec();
        ppath.push("params".into());
        let mut interp =
            Interpolator { params: scope.params, env_allowed: Some(entry.unhashed), missing_env: vec![] };
        let params = match interp.value(&rs.params, &mut vec![]) {
            Ok(v) => v,
            Err(e) => {
                self.interp_error(&ppath, Some(name), e);
                return None;
            }
        };
        match entry.parse(params) {
            Ok(b) => Some((b, interp.missing_env)),
            Err(e) => {
                self.param_error(&ppath, name, rs, entry, scope.set_paths, e);
                None
            }
        }
    }

    /// Records why params did not parse: at the offending field, or at the `--set` that gave it.
    fn param_error(
        &mut self,
        ppath: &[String],
        name: &str,
        rs: &RawStage,
        entry: &KindEntry,
        set_paths: &[(Vec<String>, String)],
        e: ParamError,
    ) {
        let mut p = ppath.to_vec();
        p.extend(e.path.iter().cloned());
        // The `--set` that gave the value: of this param, or of the pipeline param it refers to.
        let from_set = last_set(set_paths, &p).or_else(|| {
            let written = e.path.iter().try_fold(&rs.params, |v, k| v.get(k.as_str()))?.as_str()?;
            let name = written.strip_prefix("${params.")?.strip_suffix('}')?;
            let mut pp = vec!["params".to_string()];
            pp.extend(name.split('.').map(str::to_string));
            last_set(set_paths, &pp)
        });
        let params_list = || {
            let names = entry.param_names();
            if names.is_empty() {
                String::new()
            } else {
                format!("`{}` takes: {}", rs.kind, names.join(", "))
            }
        };
        let (msg, help, key) = match &e.unknown_field {
            Some((field, expected)) => {
                p.push(field.clone());
                let help = match did_you_mean(field, expected.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if expected.is_empty() => format!("`{}` takes no params", rs.kind),
                    None => format!("`{}` takes: {}", rs.kind, expected.join(", ")),
                };
                (format!("unknown param `{field}` for kind `{}`", rs.kind), help, true)
            }
            None => match e.message.strip_prefix("missing field ") {
                Some(field) => {
                    let field = field.split(' ').next().unwrap_or(field);
                    let what = if e.path.is_empty() {
                        "param".to_string()
                    } else {
                        format!("field in `{}`:", e.path.join("."))
                    };
                    (format!("missing {what} {field} (kind `{}` requires it)", rs.kind), params_list(), true)
                }
                None => {
                    let shown = if e.path.is_empty() {
                        "params".into()
                    } else {
                        format!("param `{}`", e.path.join("."))
                    };
                    (format!("{shown}: {}", crate::validate::human_types(&e.message)), params_list(), false)
                }
            },
        };
        let help = match &from_set {
            Some(text) if e.message.contains("expected a string") => {
                let (target, value) = text.split_once('=').unwrap_or((text, ""));
                format!(
                    "`--set` reads VALUE as YAML; for text that looks like a number or bool, quote it: --set '{target}=\"{value}\"'"
                )
            }
            _ => help,
        };
        let err = match from_set {
            Some(text) => PipelineError::new(self.file, format!("`--set {text}`: {msg}")),
            None => self.error(&p, key, msg),
        };
        let err = err.stage(name);
        self.errors.push(if help.is_empty() { err } else { err.help(help) });
    }

    /// Declared outputs must stay inside the output directory and have distinct names.
    fn check_outputs(&mut self, base: &[String], name: &str, bound: &dyn BoundStage) {
        let mut op = base.to_vec();
        op.push("params".into());
        op.push("outputs".into());
        let mut seen_outputs = std::collections::BTreeSet::new();
        for o in bound.outputs() {
            if let Some(problem) = output_path_problem(&o.path) {
                self.errors.push(
                    self.error(&op, false, format!("output `{}`: {problem}", o.name))
                        .stage(name)
                        .help("outputs are paths relative to the stage's output directory, such as `result.csv` or `parts/`"),
                );
            }
            if !seen_outputs.insert(o.name.clone()) {
                self.errors.push(
                    self.error(&op, false, format!("output `{}` is declared twice", o.name)).stage(name),
                );
            }
        }
    }

    /// Binds each input: `STAGE.OUTPUT` when STAGE names a stage of this pipeline, else a path
    /// relative to the pipeline's directory. Returns the bound inputs and, for a plan loaded for
    /// `status`, the messages of inputs whose path does not exist yet.
    fn bind_inputs(
        &mut self,
        base: &[String],
        name: &str,
        rs: &RawStage,
        scope: &StageScope,
    ) -> (BTreeMap<String, InputRef>, Vec<String>) {
        let mut inputs = BTreeMap::new();
        let mut missing_inputs = Vec::new();
        for (iname, written) in &rs.inputs {
            let mut ip = base.to_vec();
            ip.push("inputs".into());
            ip.push(iname.clone());
            let mut interp = Interpolator { params: scope.params, env_allowed: None, missing_env: vec![] };
            let written = match interp.value(&Value::String(written.clone()), &mut vec![]) {
                Ok(Value::String(s)) => s,
                Ok(_) => {
                    self.errors
                        .push(self.error(&ip, false, "an input must be a path or STAGE.OUTPUT").stage(name));
                    continue;
                }
                Err(e) => {
                    self.interp_error(&ip, Some(name), e);
                    continue;
                }
            };
            let names = &scope.names;
            let as_ref = written.split_once('.').filter(|(s, o)| {
                names.iter().any(|n| n == s)
                    && !o.is_empty()
                    && !o.contains('/')
                    && !written.starts_with("./")
            });
            if let Some((s, o)) = as_ref {
                let idx = names.iter().position(|n| n == s).expect("checked above");
                inputs.insert(
                    iname.clone(),
                    InputRef::Stage { stage: idx, name: s.to_string(), output: o.to_string() },
                );
                continue;
            }
            let path = scope.dir.join(&written);
            if !path.exists() {
                if self.missing_input(&ip, name, iname, &written, &rs.inputs[iname], scope) {
                    continue;
                }
                let line = self.spans.find(&ip, false).map_or(0, |sp| line_col(self.src, sp.offset).0);
                missing_inputs.push(format!(
                    "input `{iname}`: {written} does not exist (line {line} of {}{})",
                    self.file.display(),
                    param_hint(&rs.inputs[iname])
                ));
            }
            if path.exists() && !path.is_file() && !path.is_dir() {
                self.errors.push(
                    self.error(&ip, false, format!("input `{iname}`: {written} is neither a file nor a directory"))
                        .stage(name)
                        .help("inputs are hashed into the cache key: a pipe, socket or device cannot be; copy its data to a file"),
                );
                continue;
            }
            inputs.insert(iname.clone(), InputRef::Path { written: written.clone(), path });
        }
        (inputs, missing_inputs)
    }

    /// An input path that does not exist: an error, except in a plan for `status`, where only a
    /// likely typo of `STAGE.OUTPUT` is (`sinth.notes` beside a stage `synth`), and in a plan for
    /// a run of selected stages, where it is deferred until the selection is known; returns
    /// whether it was an error now. A name whose part after the dot is a file extension
    /// (`tokenizer.json` beside a stage `tokenize`) is taken for a file. `raw_written` is the
    /// input as written, before interpolation (`${params.llama}`), for the `--set` hint.
    fn missing_input(
        &mut self,
        ip: &[String],
        name: &str,
        iname: &str,
        written: &str,
        raw_written: &str,
        scope: &StageScope,
    ) -> bool {
        const FILE_EXTENSIONS: &[&str] = &[
            "json",
            "jsonl",
            "txt",
            "csv",
            "tsv",
            "yaml",
            "yml",
            "parquet",
            "bin",
            "gz",
            "zip",
            "xml",
            "md",
            "model",
            "safetensors",
            "pt",
            "npy",
            "tar",
            "bz2",
            "xz",
            "zst",
            "arrow",
            "py",
            "sh",
            "html",
            "log",
        ];
        let names = &scope.names;
        let dir = scope.dir.display();
        let stage_typo = written.split_once('.').and_then(|(s, o)| {
            let looks_like_ref =
                !s.contains('/') && !o.contains('/') && valid_stage_name(s) && !o.contains('.');
            looks_like_ref
                .then(|| did_you_mean(s, names.iter().map(String::as_str)))
                .flatten()
                .map(|n| (s, o, n))
        });
        let typo_of_an_output = stage_typo.is_some_and(|(_, o, _)| !FILE_EXTENSIONS.contains(&o));
        if matches!(self.missing_inputs, MissingInputs::Recorded) && !typo_of_an_output {
            return false;
        }
        let from_cwd = Path::new(written).is_relative() && Path::new(written).exists();
        let set_hint = param_hint(raw_written);
        let help = if from_cwd {
            format!(
                "`{written}` exists in the current directory, but paths are relative to the pipeline \
                 file's directory ({dir}): give it from there, or as an absolute path"
            )
        } else if let Some((s, o, n)) = stage_typo {
            if typo_of_an_output {
                format!("there is no file `{written}` and no stage `{s}`; did you mean `{n}.{o}`?")
            } else {
                format!(
                    "there is no file `{written}` in {dir} and no stage `{s}`; if you meant an output of \
                     stage `{n}`, write `{n}.OUTPUT`"
                )
            }
        } else if written.starts_with('~') {
            format!("`~` is not expanded: write the path out in full (paths are relative to {dir})")
        } else if Path::new(written).is_absolute() {
            // The pipeline's directory plays no part; only the param that gives it may.
            set_hint.trim_start_matches("; ").to_string()
        } else {
            format!("paths are relative to the pipeline file's directory ({dir}){set_hint}")
        };
        let what =
            if scope.dir.join(written).is_symlink() { "is a broken symbolic link" } else { "does not exist" };
        let err = self
            .error(ip, false, format!("input `{iname}`: {written} {what}"))
            .stage(name)
            .label("not found");
        let err = if help.is_empty() { err } else { err.help(help) };
        if matches!(self.missing_inputs, MissingInputs::Selected(_)) && !typo_of_an_output {
            // An error only if the run selects the stage: known once every stage is planned.
            self.deferred.push((self.errors.len(), name.to_string(), err));
            return false;
        }
        self.errors.push(err);
        true
    }

    /// With [`MissingInputs::Selected`]: the deferred errors of missing inputs of the stages
    /// the selection runs join the others, where they would have been; the rest stay recorded
    /// in their stages' `missing_inputs` only. `stages` are those that could be planned, `names`
    /// every stage's in file order (what their `deps` index).
    fn keep_selected_missing_inputs(&mut self, stages: &[PlannedStage], names: &[String]) {
        let MissingInputs::Selected(sel) = &self.missing_inputs else { return };
        let deferred = std::mem::take(&mut self.deferred);
        if deferred.is_empty() {
            return;
        }
        let index = |n: &str| names.iter().position(|x| x == n);
        let deps = |i: usize| -> Vec<usize> {
            stages.iter().find(|s| s.name == names[i]).map_or_else(Vec::new, |s| s.deps.clone())
        };
        let upstream = |target: usize| {
            let mut keep = vec![false; names.len()];
            let mut todo = vec![target];
            while let Some(i) = todo.pop() {
                if !keep[i] {
                    keep[i] = true;
                    todo.extend(deps(i));
                }
            }
            keep
        };
        // As the run selects: `--until` a stage and what it needs; `--only` the stage and what
        // it takes from the cache (whose keys need their inputs too), within `--until`.
        let mut selected = vec![true; names.len()];
        for target in [&sel.until, &sel.only].into_iter().flatten() {
            let keep = match index(target) {
                Some(t) => upstream(t),
                None => vec![false; names.len()],
            };
            for (s, k) in selected.iter_mut().zip(keep) {
                *s &= k;
            }
        }
        for (at, stage, err) in deferred.into_iter().rev() {
            if index(&stage).is_some_and(|i| selected[i]) {
                self.errors.insert(at, err);
            }
        }
    }

    /// A kind with named inputs gets each required one and no others. An input whose name a
    /// param gives (a notes source's `notes: export`) and that `inputs:` lacks is reported at
    /// that param, with the closest input the stage has: the param is the likelier typo, and an
    /// input given under that closest name is then not reported again as unknown.
    fn check_input_names(&mut self, base: &[String], name: &str, rs: &RawStage, bound: &dyn BoundStage) {
        let InputSpec::Named { required, optional } = bound.inputs() else { return };
        let named_by = bound.input_params();
        let given: Vec<&str> = rs.inputs.keys().map(String::as_str).collect();
        let unused: Vec<&str> =
            given.iter().copied().filter(|g| !required.iter().chain(&optional).any(|r| r == g)).collect();
        let mut explained: Vec<&str> = Vec::new();
        let mut missing_by_param: Vec<&str> = Vec::new();
        for r in &required {
            if rs.inputs.contains_key(r) {
                continue;
            }
            let params: Vec<&str> =
                named_by.iter().filter(|(i, _)| i == r).map(|(_, p)| p.as_str()).collect();
            if params.is_empty() {
                self.errors.push(
                    self.error(base, true, format!("missing input `{r}` (kind `{}` requires it)", rs.kind))
                        .stage(name)
                        .help(format!("add `inputs: {{{r}: PATH or STAGE.OUTPUT}}`")),
                );
                continue;
            }
            missing_by_param.push(r);
            let near =
                did_you_mean(r, unused.iter().copied()).or_else(|| did_you_mean(r, given.iter().copied()));
            explained.extend(near);
            let help = match near {
                Some(n) => format!("did you mean `{n}`? (the stage's inputs: {})", list_names(&given)),
                None if given.is_empty() => format!("add `inputs: {{{r}: PATH or STAGE.OUTPUT}}`"),
                None => format!(
                    "add `inputs: {{{r}: PATH or STAGE.OUTPUT}}`, or name one of the stage's inputs: {}",
                    list_names(&given)
                ),
            };
            for param in params {
                let mut p = base.to_vec();
                p.push("params".into());
                p.extend(param.split('.').map(str::to_string));
                self.errors.push(
                    self.error(
                        &p,
                        false,
                        format!("`{}` names input `{r}`, which `inputs:` does not have", indexed(param)),
                    )
                    .stage(name)
                    .label("no such input")
                    .help(help.clone()),
                );
            }
        }
        for given in unused {
            if explained.contains(&given) {
                continue;
            }
            // Names that only a param's typo asked for are no suggestion for a correct input.
            let all: Vec<&str> = required
                .iter()
                .chain(&optional)
                .map(String::as_str)
                .filter(|r| !missing_by_param.contains(r))
                .collect();
            let mut ip = base.to_vec();
            ip.push("inputs".into());
            ip.push(given.to_string());
            let help = match did_you_mean(given, all.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None if !named_by.is_empty() && all.is_empty() => {
                    format!("no param of the stage names an input `{given}`")
                }
                None if !named_by.is_empty() => {
                    format!("no param of the stage names an input `{given}`; they name: {}", list_names(&all))
                }
                None if all.is_empty() => format!("`{}` takes no inputs", rs.kind),
                None => format!("`{}` takes inputs: {}", rs.kind, all.join(", ")),
            };
            self.errors.push(
                self.error(&ip, true, format!("unknown input `{given}` for kind `{}`", rs.kind))
                    .stage(name)
                    .help(help),
            );
        }
    }

    /// Every `STAGE.OUTPUT` must name a declared output.
    fn check_output_refs(&mut self, stages: &[PlannedStage]) {
        for s in stages {
            for (iname, input) in &s.inputs {
                let InputRef::Stage { stage, name, output } = input else { continue };
                let outs = stages[*stage].bound.outputs();
                if outs.iter().any(|o| &o.name == output) {
                    continue;
                }
                let names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
                let help = match did_you_mean(output, names.iter().copied()) {
                    Some(o) => format!("did you mean `{name}.{o}`?"),
                    None if names.is_empty() => format!("stage `{name}` declares no outputs"),
                    None => format!("stage `{name}` has outputs: {}", names.join(", ")),
                };
                self.errors.push(
                    self.error(
                        &path_of(&["stages", &s.name, "inputs", iname]),
                        false,
                        format!("input `{iname}`: stage `{name}` has no output `{output}`"),
                    )
                    .stage(&s.name)
                    .help(help),
                );
            }
        }
    }

    /// The run order, or a cycle error printed as its path (`a -> b -> a`).
    fn order(&mut self, stages: &[PlannedStage]) -> Option<Vec<usize>> {
        match topo_order(stages) {
            Ok(o) => Some(o),
            Err(cycle) => {
                let names: Vec<&str> = cycle.iter().map(|&i| stages[i].name.as_str()).collect();
                let first = &stages[cycle[0]].name;
                self.errors.push(
                    self.error(
                        &path_of(&["stages", first, "inputs"]),
                        true,
                        format!("cycle: {}", names.join(" -> ")),
                    )
                    .stage(first)
                    .help("a stage cannot depend, directly or through others, on its own outputs"),
                );
                None
            }
        }
    }

    fn interp_error(&mut self, base: &[String], stage: Option<&str>, e: InterpError) {
        let mut p = base.to_vec();
        p.extend(e.path);
        let mut err = self.error(&p, false, e.message);
        if let Some(s) = stage {
            err = err.stage(s);
        }
        if let Some(h) = e.help {
            err = err.help(h);
        }
        self.errors.push(err);
    }
}

/// The text of the last `--set` whose path is a prefix of `path` (the last one given wins).
fn last_set(set_paths: &[(Vec<String>, String)], path: &[String]) -> Option<String> {
    set_paths.iter().rev().find(|(sp, _)| path.starts_with(sp)).map(|(_, t)| t.clone())
}

/// Why an output path would escape or misuse the stage's output directory, if it would.
fn output_path_problem(path: &str) -> Option<String> {
    let p = Path::new(path);
    if path.trim().is_empty() {
        return Some("the path is empty (use `.` for the whole output directory)".into());
    }
    if p.is_absolute() {
        return Some(format!("`{path}` is absolute"));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Some(format!("`{path}` leaves the output directory"));
    }
    None
}

/// The path below `v` of the first string that contains `needle`.
fn find_string(v: &Value, needle: &str) -> Option<Vec<String>> {
    match v {
        Value::String(s) if s.contains(needle) => Some(Vec::new()),
        Value::Mapping(m) => m.iter().find_map(|(k, v)| {
            let mut p = find_string(v, needle)?;
            p.insert(0, k.as_str().map_or_else(|| "?".to_string(), str::to_string));
            Some(p)
        }),
        Value::Sequence(items) => items.iter().enumerate().find_map(|(i, v)| {
            let mut p = find_string(v, needle)?;
            p.insert(0, i.to_string());
            Some(p)
        }),
        Value::Tagged(t) => find_string(&t.value, needle),
        _ => None,
    }
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    (before.matches('\n').count() + 1, before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1)
}

/// serde_yaml's message without its decorations: the path prefix (the headline already shows
/// it) and the trailing " at line L column C[, while parsing X at line L2 column C2]", whose
/// second half becomes "(in X that starts at line L2, column C2)". Also returns (L2, C2).
fn undecorate(message: &str, path: &[String]) -> (String, Option<(usize, usize)>) {
    let mut message = message.to_string();
    for k in (1..=path.len()).rev() {
        if let Some(rest) = message.strip_prefix(&format!("{}: ", path[..k].join("."))) {
            message = rest.to_string();
            break;
        }
    }
    let mut started_at = None;
    if let Some(i) = message.find(" at line ") {
        let tail = message[i..].to_string();
        message.truncate(i);
        if let Some(j) = tail.find(", while parsing ") {
            let what = &tail[j + ", while parsing ".len()..];
            if let Some(k) = what.find(" at line ") {
                started_at = parse_line_col(&what[k + " at line ".len()..]);
                let (l, c) = started_at.unwrap_or((0, 0));
                message.push_str(&format!(" (in {} that starts at line {l}, column {c})", &what[..k]));
            }
        }
    }
    (message, started_at)
}

/// "12 column 5..." -> (12, 5)
fn parse_line_col(s: &str) -> Option<(usize, usize)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Rewrites serde's messages where a pipeline author would not recognise them.
fn humanize(message: &str, path: &[String]) -> String {
    let message = &crate::validate::human_types(message);
    let at = if path.is_empty() { String::new() } else { format!("`{}`: ", path.join(".")) };
    if let Some(field) = message.strip_prefix("missing field ") {
        return match path {
            [] => format!("the pipeline is missing the field {field}"),
            [s, name] if s == "stages" => format!("stage `{name}` is missing the field {field}"),
            _ => format!("`{}` is missing the field {field}", path.join(".")),
        };
    }
    if let Some(n) = message
        .strip_prefix("invalid type: integer `")
        .and_then(|r| r.split_once("` as u128"))
        .map(|(n, _)| n)
    {
        return format!("{at}the number {n} is too large (numbers must fit in 64 bits)");
    }
    if message.starts_with("invalid type") && path.len() == 2 && path[0] == "stages" {
        return format!(
            "stage `{}` must be a mapping with `kind:` and its params ({})",
            path[1],
            message.split(", expected").next().unwrap_or(message)
        );
    }
    if message.starts_with("invalid type") && path.last().is_some_and(|p| p == "params") {
        return format!(
            "`{at_path}` must be a mapping of NAME: VALUE ({})",
            message.split(", expected").next().unwrap_or(message),
            at_path = path.join(".")
        );
    }
    if message.starts_with("unknown field") {
        return message.split(", expected").next().unwrap_or(message).to_string();
    }
    if message.contains("EOF while parsing") {
        return "the pipeline file ends unexpectedly".into();
    }
    if message.starts_with("invalid type") {
        return format!("{at}{message}");
    }
    format!("{at}{message}").replace("`: ", "`: ")
}

/// Kahn's algorithm, taking ready stages in file order; on a cycle, returns one cycle's path
/// (first stage repeated at the end).
fn topo_order(stages: &[PlannedStage]) -> Result<Vec<usize>, Vec<usize>> {
    let mut g: DiGraph<usize, ()> = DiGraph::new();
    let nodes: Vec<NodeIndex> = (0..stages.len()).map(|i| g.add_node(i)).collect();
    for (i, s) in stages.iter().enumerate() {
        for &d in &s.deps {
            g.add_edge(nodes[d], nodes[i], ());
        }
    }
    let mut indeg: Vec<usize> =
        nodes.iter().map(|&n| g.neighbors_directed(n, petgraph::Incoming).count()).collect();
    let mut done = vec![false; stages.len()];
    let mut order = Vec::with_capacity(stages.len());
    while let Some(i) = (0..stages.len()).find(|&i| !done[i] && indeg[i] == 0) {
        done[i] = true;
        order.push(i);
        for n in g.neighbors_directed(nodes[i], petgraph::Outgoing) {
            indeg[g[n]] -= 1;
        }
    }
    if order.len() == stages.len() {
        return Ok(order);
    }
    // Walk upstream from a stage left over until a stage repeats: that loop is a cycle.
    let start = (0..stages.len()).find(|&i| !done[i]).expect("some stage is left");
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next =
            *stages[cur].deps.iter().find(|&&d| !done[d]).expect("a stage in a cycle has a pending dep");
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(next);
        cur = next;
    }
}

/// The `${env:NAME}` variables that are not set, as errors, for the stages `selected` says will
/// run: a secret is needed only by a stage that runs, so `--until` an earlier stage works
/// without it. Checked before anything runs or is locked.
pub fn unset_secrets(plan: &Plan, selected: impl Fn(usize) -> bool) -> Vec<PipelineError> {
    plan.stages
        .iter()
        .enumerate()
        .filter(|(i, _)| selected(*i))
        .flat_map(|(_, s)| s.unset_env.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Bench;

    fn errors(t: &Bench, yaml: &str) -> Vec<PipelineError> {
        match t.plan(yaml) {
            Err(EngineError::Invalid(errs)) => errs,
            Err(e) => panic!("expected pipeline errors, got {e:?}"),
            Ok(_) => panic!("expected pipeline errors, the pipeline planned"),
        }
    }

    #[test]
    fn binds_inputs_and_orders_stages_after_their_inputs() {
        let t = Bench::new();
        std::fs::write(t.path("notes.txt"), "n").unwrap();
        let plan = t
            .plan(
                "
name: p
stages:
  late:
    kind: fake
    inputs: {x: early.out, y: early.out, file: notes.txt}
  early:
    kind: fake
  alone:
    kind: fake
",
            )
            .unwrap();
        let names: Vec<&str> = plan.order.iter().map(|&i| plan.stages[i].name.as_str()).collect();
        assert_eq!(names, ["early", "late", "alone"]);
        let late = &plan.stages[plan.require("late").unwrap()];
        assert_eq!(late.deps, [plan.require("early").unwrap()], "one dep however many inputs use it");
        assert!(matches!(&late.inputs["file"], InputRef::Path { path, .. } if *path == t.path("notes.txt")));
        assert_eq!(late.inputs["x"].describe(), "early.out");
        assert_eq!(plan.workspace, t.path(".camel"));
        assert_eq!(plan.dependents(plan.require("early").unwrap()), [plan.require("late").unwrap()]);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_yaml() {
        let t = Bench::new();
        let yaml = "name: p\nstages:\n  a: {kind: fake, params: {text: x}}\n";
        let plain = t.plan(yaml).unwrap();
        let bom = t.plan(&format!("\u{feff}{yaml}")).unwrap();
        assert_eq!(bom.name, "p");
        assert_eq!(bom.stages.len(), 1);
        assert_eq!(bom.stages[0].bound.params_json(), plain.stages[0].bound.params_json());
    }

    #[test]
    fn a_file_that_is_not_utf8_names_the_line() {
        let t = Bench::new();
        let f = t.path("latin1.yaml");
        std::fs::write(&f, b"name: x\nstages:\n  s: {kind: fake, params: {text: caf\xe9}}\n").unwrap();
        match load(&f, &[], &crate::testkit::registry()) {
            Err(EngineError::Invalid(errs)) => {
                assert_eq!(
                    errs[0].message,
                    "cannot read the pipeline file: line 3 is not UTF-8 text (byte 0xE9); save the file as UTF-8"
                );
            }
            Err(e) => panic!("expected an invalid pipeline, got {e:?}"),
            Ok(_) => panic!("the pipeline planned"),
        }
    }

    #[test]
    fn merge_keys_are_applied_and_written_keys_win() {
        let t = Bench::new();
        let plan = t
            .plan(
                "
name: p
params:
  common: &common {text: shared, note: from-merge}
stages:
  a:
    kind: fake
    params:
      <<: *common
      note: own
",
            )
            .unwrap();
        let params = plan.stages[0].bound.params_json();
        assert_eq!(params["text"], "shared");
        assert_eq!(params["note"], "own");
    }

    #[test]
    fn a_cycle_is_printed_as_its_path() {
        let t = Bench::new();
        let errs = errors(
            &t,
            "
name: p
stages:
  a: {kind: fake, inputs: {x: c.out}}
  b: {kind: fake, inputs: {x: a.out}}
  c: {kind: fake, inputs: {x: b.out}}
  d: {kind: fake}
",
        );
        assert_eq!(errs.len(), 1);
        // Each arrow is an output feeding an input: b feeds c, c feeds a, a feeds b.
        assert_eq!(errs[0].message, "cycle: b -> c -> a -> b");
        assert_eq!(errs[0].stage.as_deref(), Some("b"));
        // At b's `inputs:` key.
        assert_eq!(errs[0].line_col, Some((5, 19)));
    }

    #[test]
    fn a_stage_reading_its_own_output_is_a_cycle() {
        let t = Bench::new();
        let errs = errors(&t, "name: p\nstages:\n  a: {kind: fake, inputs: {x: a.out}}\n");
        assert_eq!(errs[0].message, "cycle: a -> a");
    }

    #[test]
    fn every_stage_problem_is_reported_in_file_order() {
        let t = Bench::new();
        let errs = errors(
            &t,
            "
name: p
stages:
  a: {kind: faek}
  b: {kind: fake, params: {txt: x}}
  c: {kind: fake, inputs: {x: data/nowhere.txt}}
  d: {kind: fake, inputs: {x: b.nope}}
",
        );
        let got: Vec<(&str, Option<&str>)> =
            errs.iter().map(|e| (e.message.as_str(), e.help.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("unknown stage kind `faek`", Some("did you mean `fake`?")),
                ("unknown param `txt` for kind `fake`", Some("did you mean `text`?")),
                (
                    "input `x`: data/nowhere.txt does not exist",
                    Some(
                        format!(
                            "paths are relative to the pipeline file's directory ({})",
                            t.dir.path().display()
                        )
                        .as_str()
                    )
                ),
            ]
        );
        // `b.nope` is checked only once every stage is planned; alone it is reported.
        let errs =
            errors(&t, "name: p\nstages:\n  b: {kind: fake}\n  d: {kind: fake, inputs: {x: b.nope}}\n");
        assert_eq!(errs[0].message, "input `x`: stage `b` has no output `nope`");
        assert_eq!(errs[0].help.as_deref(), Some("stage `b` has outputs: out"));
    }

    #[test]
    fn overrides_are_validated_like_written_params() {
        let t = Bench::new();
        let yaml = "name: p\nstages:\n  a: {kind: fake}\n";
        let set = |s: &str| Override::parse(s).unwrap();
        let plan =
            plan_from_str(&t.path("p.yaml"), yaml, &[set("a.text=hi")], &crate::testkit::registry()).unwrap();
        assert_eq!(plan.stages[0].bound.params_json()["text"], "hi");
        let err =
            |o: &str| match plan_from_str(&t.path("p.yaml"), yaml, &[set(o)], &crate::testkit::registry()) {
                Err(EngineError::Invalid(e)) => e[0].message.clone(),
                _ => panic!("`{o}` should not plan"),
            };
        assert_eq!(err("b.text=hi"), "`--set b.text=hi`: no stage `b`");
        assert_eq!(
            err("a.fail=maybe"),
            "`--set a.fail=maybe`: param `fail`: invalid type: string \"maybe\", expected a boolean"
        );
    }

    /// `--until`/`--only`: a missing input file stops the run only when the stage runs, or
    /// gives an `--only` stage its cached inputs; an absolute path gets no "relative to" hint,
    /// and one given by a param gets the `--set` that sets it.
    #[test]
    fn a_run_of_selected_stages_needs_only_their_inputs() {
        let t = Bench::new();
        std::fs::write(t.path("data.txt"), "a").unwrap();
        let yaml = "name: p\nparams: {model: /nowhere/model}\nstages:\n  a: {kind: fake, inputs: {x: data.txt}}\n  \
                    b: {kind: fake, inputs: {x: a.out, y: missing.txt}}\n  \
                    c: {kind: fake, inputs: {x: b.out, m: '${params.model}'}}\n";
        std::fs::write(t.path("p.yaml"), yaml).unwrap();
        let reg = crate::testkit::registry();
        let sel = |until: Option<&str>, only: Option<&str>| Selection {
            until: until.map(str::to_string),
            only: only.map(str::to_string),
        };
        let messages = |s: Selection| match load_for_run(&t.path("p.yaml"), &[], &reg, &s) {
            Ok(_) => Vec::new(),
            Err(EngineError::Invalid(errs)) => {
                errs.iter().map(|e| format!("{} | {}", e.message, e.help.as_deref().unwrap_or(""))).collect()
            }
            Err(e) => panic!("{e:?}"),
        };
        let plan = load_for_run(&t.path("p.yaml"), &[], &reg, &sel(Some("a"), None)).unwrap();
        assert_eq!(plan.stages[1].missing_inputs.len(), 1, "recorded for status");
        let dir = t.dir.path().display();
        let b_missing = format!(
            "input `y`: missing.txt does not exist | paths are relative to the pipeline file's directory ({dir})"
        );
        let c_missing =
            "input `m`: /nowhere/model does not exist | set it with --set params.model=PATH".to_string();
        assert_eq!(messages(sel(Some("b"), None)), std::slice::from_ref(&b_missing));
        // `--only c` takes b from the cache, whose key needs b's inputs.
        assert_eq!(messages(sel(None, Some("c"))), [b_missing.clone(), c_missing.clone()]);
        assert_eq!(messages(sel(Some("b"), Some("a"))), Vec::<String>::new());
        assert_eq!(messages(sel(None, None)), [b_missing, c_missing]);
        // A stage the pipeline lacks selects nothing: the run names it.
        assert_eq!(messages(sel(Some("zz"), None)), Vec::<String>::new());
    }

    #[test]
    fn a_missing_input_is_recorded_for_status() {
        let t = Bench::new();
        let yaml = "name: p\nparams: {notes: data.csv}\nstages:\n  a: {kind: fake, inputs: {x: '${params.notes}'}}\n";
        std::fs::write(t.path("p.yaml"), yaml).unwrap();
        let plan = load_for_status(&t.path("p.yaml"), &[], &crate::testkit::registry()).unwrap();
        assert_eq!(
            plan.stages[0].missing_inputs,
            [format!(
                "input `x`: data.csv does not exist (line 4 of {}; set it with --set params.notes=PATH)",
                t.path("p.yaml").display()
            )]
        );
        assert!(load(&t.path("p.yaml"), &[], &crate::testkit::registry()).is_err());
    }
}
