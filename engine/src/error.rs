//! Errors of the engine: [`PipelineError`] for a pipeline that is invalid before anything runs
//! (rendered by miette with the offending line underlined), [`EngineError`] for everything else.

use std::fmt;
use std::path::{Path, PathBuf};

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::spans::Span;

/// The longest line a report quotes.
const MAX_QUOTED_LINE: usize = 1000;

/// One problem with a pipeline file, located as precisely as the engine can.
#[derive(Clone, Debug)]
pub struct PipelineError {
    pub file: PathBuf,
    pub stage: Option<String>,
    pub message: String,
    pub help: Option<String>,
    /// 1-based line and column.
    pub line_col: Option<(usize, usize)>,
    label: Option<String>,
    span: Option<Span>,
    src: Option<NamedSource<String>>,
}

impl PipelineError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        PipelineError {
            file: file.to_path_buf(),
            stage: None,
            message: message.into(),
            help: None,
            line_col: None,
            label: None,
            span: None,
            src: None,
        }
    }

    /// Points the error at `span` of `src` (the pipeline's text).
    pub fn at(mut self, src: &str, span: Option<Span>) -> Self {
        if let Some(span) = span {
            let offset = span.offset.min(src.len());
            let before = &src[..offset];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            self.line_col = Some((line, col));
            // A report quotes the whole line: a line of a megabyte (a pasted note, a runaway key)
            // would flood the terminal, so such a line is pointed at by number only.
            let line_len = src[offset..].find('\n').unwrap_or(src.len() - offset)
                + before.rsplit('\n').next().map_or(0, str::len);
            if line_len <= MAX_QUOTED_LINE {
                self.span = Some(span);
            }
        }
        self.src = Some(NamedSource::new(self.file.display().to_string(), src.to_string()));
        self
    }

    /// Points the error at a 1-based line and column (from a parser that reports them).
    pub fn at_line_col(self, src: &str, line: usize, col: usize) -> Self {
        let mut offset = 0;
        for (i, l) in src.split_inclusive('\n').enumerate() {
            if i + 1 == line {
                offset += l.char_indices().nth(col.saturating_sub(1)).map_or(l.len(), |(b, _)| b);
                break;
            }
            offset += l.len();
        }
        let len = src[offset.min(src.len())..].find('\n').unwrap_or(src.len() - offset.min(src.len())).max(1);
        self.at(src, Some(Span { offset, len }))
    }

    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// `file:line:col: stage `x`: message`: the one-line form, for logs and tests.
    pub fn headline(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some((l, c)) = self.line_col {
            s.push_str(&format!(":{l}:{c}"));
        }
        s.push_str(": ");
        if let Some(stage) = &self.stage
            && !self.message.starts_with(&format!("stage `{stage}`"))
        {
            s.push_str(&format!("stage `{stage}`: "));
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.headline())
    }
}

impl std::error::Error for PipelineError {}

impl Diagnostic for PipelineError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.span.and(self.src.as_ref()).map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let label = self.label.clone().or_else(|| Some("here".into()));
        Some(Box::new(std::iter::once(LabeledSpan::new(label, span.offset, span.len))))
    }
}

/// Suggests the closest of `candidates` to `word`, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Everything that can stop a run, and the exit code it maps to (see [`EngineError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the pipeline is invalid ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<PipelineError>),
    #[error("{0}")]
    Usage(String),
    #[error(
        "the workspace {workspace} is in use by another camel process (PID {holder}); \
         wait for it, or pass --wait to queue behind it"
    )]
    Locked { workspace: PathBuf, holder: String },
    #[error("stage `{stage}` failed: {message}")]
    StageFailed { stage: String, message: String, log: Option<PathBuf> },
    #[error("{0} stages failed: {1}")]
    StagesFailed(usize, String),
    #[error("interrupted; finished stages are cached, rerun to continue")]
    Cancelled,
    /// `--detach`: the stage was submitted to Slurm (not an error; the scheduler reports it).
    #[error("stage `{stage}` was submitted as Slurm job {job_id}")]
    Detached { stage: String, job_id: String },
    #[error(transparent)]
    Cache(#[from] camel_cache::CacheError),
    #[error("failed to {context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::Io { context, source }
    }

    /// 2 for an invalid pipeline or command line, 130 for an interrupted run (as a shell reports
    /// SIGINT), 1 for anything else that went wrong while running.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Invalid(_) | EngineError::Usage(_) => 2,
            EngineError::Cancelled => 130,
            _ => 1,
        }
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a: 1\nbb: 2\n";
        let e = PipelineError::new(Path::new("p.yaml"), "bad").at(src, Some(Span { offset: 9, len: 1 }));
        assert_eq!(e.line_col, Some((2, 5)));
        assert_eq!(e.headline(), "p.yaml:2:5: bad");
        let e = PipelineError::new(Path::new("p.yaml"), "bad").at_line_col(src, 2, 5);
        assert_eq!(e.line_col, Some((2, 5)));
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("comand", ["command", "notes"]), Some("command"));
        assert_eq!(did_you_mean("zzzzzz", ["command", "notes"]), None);
    }
}
