//! The checks a stage kind makes before anything runs.
//!
//! Much of what can go wrong with a stage is decidable from the pipeline file and the files it
//! names: a value out of range, an endpoint the PHI guard will refuse, an input bound to a file
//! where a directory is needed, a column that is not in a table's header. Found at run time,
//! such a mistake costs every upstream stage's run first (and exits 1); found here, it is a
//! pipeline error at its line (exit 2) and nothing runs. Each kind declares its own checks in
//! [`crate::Stage::validate`], next to its params; this module holds what those checks get to
//! see ([`ValidateContext`]), what they return ([`Problem`]), and the helpers they share.
//!
//! The checks stay cheap: params, the pipeline's `allowed_endpoints`, what each upstream output
//! is, and, for input files that already exist, their metadata or a header line.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use crate::error::PipelineError;
use crate::plan::Plan;
use crate::stage::OutputKind;

/// The longest stage name: a stage's name becomes file names in the workspace (`out/NAME`,
/// `logs/NAME.log`, `state/NAME.json`, `.NAME.PID` while its link is replaced), and most
/// filesystems allow 255 bytes per name; 200 leaves room for those affixes.
pub const MAX_STAGE_NAME: usize = 200;

/// What an input of the stage being validated is bound to.
#[derive(Clone, Debug)]
pub enum InputInfo {
    /// A path outside the workspace. It may not exist yet (a plan for `camel status`).
    Path(PathBuf),
    /// Output `output` of stage `stage`, which is `what`.
    Output { stage: String, output: String, what: OutputKind },
}

/// What [`crate::Stage::validate`] may look at.
pub struct ValidateContext<'a> {
    pub(crate) stage: &'a str,
    pub(crate) inputs: BTreeMap<String, InputInfo>,
    pub(crate) work_dir: &'a Path,
    pub(crate) allowed_endpoints: &'a [String],
}

impl<'a> ValidateContext<'a> {
    /// A context for a kind's unit tests: inputs are added with [`ValidateContext::with_input`].
    pub fn for_test(stage: &'a str, work_dir: &'a Path, allowed_endpoints: &'a [String]) -> Self {
        ValidateContext { stage, inputs: BTreeMap::new(), work_dir, allowed_endpoints }
    }

    pub fn with_input(mut self, name: impl Into<String>, input: InputInfo) -> Self {
        self.inputs.insert(name.into(), input);
        self
    }

    pub fn stage(&self) -> &str {
        self.stage
    }

    pub fn input(&self, name: &str) -> Option<&InputInfo> {
        self.inputs.get(name)
    }

    /// The path of input `name` when it is a file or directory that exists now (an upstream
    /// output does not exist before its stage runs).
    pub fn existing_path(&self, name: &str) -> Option<&Path> {
        match self.inputs.get(name)? {
            InputInfo::Path(p) if p.exists() => Some(p),
            _ => None,
        }
    }

    /// The pipeline file's directory: relative paths in params are relative to it.
    pub fn work_dir(&self) -> &Path {
        self.work_dir
    }

    /// The pipeline's `allowed_endpoints`.
    pub fn allowed_endpoints(&self) -> &[String] {
        self.allowed_endpoints
    }

    /// What input `name` is, when it can be known before running: an upstream output's
    /// declared kind, or an existing path's.
    pub fn input_kind(&self, name: &str) -> Option<OutputKind> {
        match self.inputs.get(name)? {
            InputInfo::Output { what, .. } => Some(*what),
            InputInfo::Path(p) if p.is_dir() => Some(OutputKind::Dir),
            InputInfo::Path(p) if p.exists() => Some(OutputKind::File),
            InputInfo::Path(_) => None,
        }
    }

    /// A problem when input `name` is known to be a file although the stage needs a directory;
    /// `what` says which directory ("the token dataset directory").
    pub fn expect_dir(&self, name: &str, what: &str, help: &str) -> Option<Problem> {
        (self.input_kind(name) == Some(OutputKind::File)).then(|| {
            Problem::input(name, format!("{} is a file, but `{name}` must be {what}", self.describe(name)))
                .help(help)
        })
    }

    /// A problem when input `name` is known to be a directory although the stage needs a file.
    pub fn expect_file(&self, name: &str, what: &str, help: &str) -> Option<Problem> {
        (self.input_kind(name) == Some(OutputKind::Dir)).then(|| {
            Problem::input(
                name,
                format!("{} is a directory, but `{name}` must be {what}", self.describe(name)),
            )
            .help(help)
        })
    }

    /// How input `name` is bound, for messages: `tokenize.tokens (tokens.bin)`, or its path.
    fn describe(&self, name: &str) -> String {
        match self.inputs.get(name) {
            Some(InputInfo::Output { stage, output, .. }) => format!("`{stage}.{output}`"),
            Some(InputInfo::Path(p)) => format!("`{}`", p.display()),
            None => format!("`{name}`"),
        }
    }
}

/// One thing a kind's validation found wrong. `at` is the path of the offending node below the
/// stage (`["params", "distributed", "nproc_per_node"]`, `["inputs", "tokens"]`), so that the
/// error points at its line; the engine adds the file, the stage and the rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Vec<String>,
    pub message: String,
    pub help: Option<String>,
}

impl Problem {
    /// A problem with the param at dotted path `param` (`distributed.nproc_per_node`).
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        let mut at = vec!["params".to_string()];
        at.extend(param.split('.').filter(|s| !s.is_empty()).map(str::to_string));
        Problem { at, message: message.into(), help: None }
    }

    /// A problem with input `name`.
    pub fn input(name: &str, message: impl Into<String>) -> Self {
        Problem { at: vec!["inputs".into(), name.into()], message: message.into(), help: None }
    }

    /// A problem with the stage as a whole.
    pub fn stage(message: impl Into<String>) -> Self {
        Problem { at: Vec::new(), message: message.into(), help: None }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A problem when `value` of param `param` is outside `min..=max`; `unit` names what is counted
/// ("a whole number", "seconds"), `note` adds context ("CAMEL used 2048").
pub fn in_range<T: PartialOrd + Display>(
    param: &str,
    value: T,
    min: T,
    max: Option<T>,
    note: &str,
) -> Option<Problem> {
    let below = value < min;
    let above = max.as_ref().is_some_and(|m| value > *m);
    if !below && !above {
        return None;
    }
    let range = match &max {
        Some(m) => format!("from {min} to {m}"),
        None => format!("at least {min}"),
    };
    let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
    Some(Problem::param(param, format!("`{param}` is {value}; it must be {range}{note}")))
}

/// Collects the `Some`s of `checks` into the result [`crate::Stage::validate`] returns.
pub fn collect(checks: impl IntoIterator<Item = Option<Problem>>) -> Result<(), Vec<Problem>> {
    let problems: Vec<Problem> = checks.into_iter().flatten().collect();
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// The closest of `candidates` to `word`, compared without case and `_`/`-`/space (a column
/// `NOTE_TXT` for `NOTE_TEXT`, `note text` for `NOTE_TEXT`); `None` when nothing is close.
pub fn nearest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let norm =
        |s: &str| s.chars().filter(|c| !matches!(c, '_' | '-' | ' ')).collect::<String>().to_lowercase();
    let w = norm(word);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &norm(c)), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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
