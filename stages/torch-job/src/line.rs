//! The lines a child process writes for camel to read: progress on stdout, the error on stderr.
//!
//! Any child a stage runs may write `camel-progress: DONE[/TOTAL] [UNIT] [MESSAGE]` on stdout
//! (a `command` stage's script as much as the torch worker); camel moves the stage's progress bar
//! and keeps the line out of the log. The worker's last words on failure are a stderr line
//! starting with [`ERROR_PREFIX`]; camel quotes it (and what follows it) in the stage's error.

use std::fmt;

/// Starts a progress line on stdout.
pub const PROGRESS_PREFIX: &str = "camel-progress:";

/// Starts the worker's error message on stderr.
pub const ERROR_PREFIX: &str = "camel-torch-worker: error:";

/// The stderr line that reports the worker's failure.
pub fn error_line(message: impl fmt::Display) -> String {
    format!("{ERROR_PREFIX} {message}")
}

/// One progress line: a position, an optional total and unit, and the rest of the line as the
/// bar's message (e.g. `12/300 steps loss 2.31 · 5400 tok/s`).
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub pos: u64,
    pub total: Option<u64>,
    /// What is counted; `items` when the line names nothing.
    pub unit: String,
    pub message: Option<String>,
}

impl Progress {
    /// Whether `line` is meant as a progress line (well-formed or not: either way it is not log).
    pub fn is_progress_line(line: &str) -> bool {
        line.starts_with(PROGRESS_PREFIX)
    }

    /// The progress a line reports; `None` for other lines and for malformed progress lines.
    pub fn parse(line: &str) -> Option<Progress> {
        let spec = line.strip_prefix(PROGRESS_PREFIX)?.trim();
        let mut parts = spec.splitn(3, char::is_whitespace);
        let frac = parts.next()?;
        let unit = parts.next().unwrap_or("items").to_string();
        let message = parts.next().map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
        let (pos, total) = match frac.split_once('/') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()),
            None => (frac.parse().ok()?, None),
        };
        Some(Progress { pos, total, unit, message })
    }
}

/// The line itself, without a newline.
impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PROGRESS_PREFIX} {}", self.pos)?;
        if let Some(t) = self.total {
            write!(f, "/{t}")?;
        }
        write!(f, " {}", self.unit)?;
        if let Some(m) = &self.message {
            write!(f, " {m}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_round_trip_and_match_what_the_worker_wrote() {
        let step = Progress {
            pos: 12,
            total: Some(300),
            unit: "steps".into(),
            message: Some(format!("loss {:.4} · {:.0} tok/s", 2.31, 5400.2)),
        };
        // The line `camel-torch-worker train` printed before this crate existed.
        let literal = "camel-progress: 12/300 steps loss 2.3100 · 5400 tok/s";
        assert_eq!(step.to_string(), literal);
        assert_eq!(Progress::parse(literal), Some(step));
        let rows = Progress {
            pos: 3,
            total: Some(8),
            unit: "rows".into(),
            message: Some("0.50 rows/s · 12 tok/s".into()),
        };
        assert_eq!(rows.to_string(), "camel-progress: 3/8 rows 0.50 rows/s · 12 tok/s");
        assert_eq!(Progress::parse(&rows.to_string()), Some(rows));
        // As `command` scripts write them: no total, no unit, no message.
        let bare = Progress::parse("camel-progress: 5").unwrap();
        assert_eq!((bare.pos, bare.total, bare.unit.as_str(), bare.message), (5, None, "items", None));
        assert_eq!(Progress::parse("camel-progress: 1/1 steps").unwrap().message, None);
        assert_eq!(Progress::parse("camel-progress: x/3"), None);
        assert!(Progress::is_progress_line("camel-progress: x/3"));
        assert_eq!(Progress::parse("step 3"), None);
    }

    #[test]
    fn the_error_line_starts_with_the_prefix() {
        assert_eq!(error_line("no such file"), "camel-torch-worker: error: no such file");
    }
}
