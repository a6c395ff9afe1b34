//! Renders the engine's events: a progress bar per running stage on a terminal, plain lines
//! otherwise, and a summary table at the end. The only place indicatif is used.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camel_engine::{Event, EventSink, Outcome, Plan};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::render::human_bytes;

struct Row {
    stage: String,
    result: String,
    elapsed: Duration,
    bytes: u64,
}

struct State {
    bars: HashMap<String, ProgressBar>,
    last_plain: HashMap<String, Instant>,
    /// When each running stage started, for the elapsed time of its plain progress lines.
    started: HashMap<String, Instant>,
    rows: Vec<Row>,
    /// Where each resumed stage's progress starts: its ETA is measured from there.
    resumed_at: HashMap<String, u64>,
    /// Stages skipped because these upstream stages failed.
    blocked: Vec<(String, Vec<String>)>,
    /// Every warning of the run, repeated under the summary so that none scrolls away.
    warnings: Vec<String>,
}

pub struct Reporter {
    multi: Option<MultiProgress>,
    state: Arc<Mutex<State>>,
    order: Vec<String>,
}

/// In plain mode, a running stage's progress is printed at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl Reporter {
    pub fn new(plan: &Plan) -> Reporter {
        let tty = std::io::stderr().is_terminal();
        Reporter {
            multi: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            state: Arc::new(Mutex::new(State {
                bars: HashMap::new(),
                last_plain: HashMap::new(),
                started: HashMap::new(),
                rows: Vec::new(),
                resumed_at: HashMap::new(),
                blocked: Vec::new(),
                warnings: Vec::new(),
            })),
            order: plan.order.iter().map(|&i| plan.stages[i].name.clone()).collect(),
        }
    }

    pub fn sink(&self) -> EventSink {
        let multi = self.multi.clone();
        let state = self.state.clone();
        Arc::new(move |ev| handle(&multi, &state, ev))
    }

    /// Prints the summary table.
    pub fn finish(self) {
        let st = self.state.lock().unwrap();
        for b in st.bars.values() {
            b.finish_and_clear();
        }
        if st.rows.is_empty() {
            return;
        }
        let mut rows: Vec<&Row> = st.rows.iter().collect();
        rows.sort_by_key(|r| self.order.iter().position(|s| *s == r.stage));
        let mut out = summary_table(&rows);
        out.push_str(&failure_summary(&st.rows, &st.blocked));
        if !st.warnings.is_empty() {
            out.push_str(&format!(
                "\n{} warning{}:\n",
                st.warnings.len(),
                if st.warnings.len() == 1 { "" } else { "s" }
            ));
            for w in &st.warnings {
                out.push_str(&format!("  {w}\n"));
            }
        }
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    }
}

/// One line per stage: its result, time and output size.
fn summary_table(rows: &[&Row]) -> String {
    let w = rows.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
    // As wide as the longest result (`interrupted`, `submitted`), so that the columns line up.
    let rw = rows.iter().map(|r| r.result.len()).max().unwrap_or(8).max(8);
    let mut out = format!("\n{:<w$}  {:<rw$}  {:>9}  {:>10}\n", "stage", "result", "time", "output");
    for r in rows {
        out.push_str(&format!(
            "{:<w$}  {:<rw$}  {:>9}  {:>10}\n",
            r.stage,
            r.result,
            format!("{:.2}s", r.elapsed.as_secs_f64()),
            if r.bytes > 0 { human_bytes(r.bytes) } else { "-".into() }
        ));
    }
    out
}

/// What failed, and what was skipped because of it (`--keep-going` runs the rest).
fn failure_summary(rows: &[Row], blocked: &[(String, Vec<String>)]) -> String {
    let failed: Vec<&str> = rows.iter().filter(|r| r.result == "FAILED").map(|r| r.stage.as_str()).collect();
    if failed.is_empty() {
        return String::new();
    }
    let mut out = format!("\nfailed: {}\n", failed.join(", "));
    // Grouped by the failures they wait on, in the order the first of each group was skipped.
    let mut groups: Vec<(&[String], Vec<&str>)> = Vec::new();
    for (stage, because) in blocked {
        match groups.iter_mut().find(|(b, _)| *b == because.as_slice()) {
            Some((_, stages)) => stages.push(stage),
            None => groups.push((because, vec![stage])),
        }
    }
    for (because, stages) in groups {
        let names: Vec<String> = because.iter().map(|b| format!("`{b}`")).collect();
        out.push_str(&format!("skipped because {} failed: {}\n", names.join(", "), stages.join(", ")));
    }
    out
}

/// The remaining time at the rate measured since `base` (elapsed seconds, position): the first
/// position a stage reported at or after where it resumed. A resumed stage's first report jumps
/// to its checkpoint in no time, which would otherwise make it look many times faster.
fn eta_since(base: (f64, u64), now: (f64, u64), len: u64) -> Option<Duration> {
    let (dt, dp) = (now.0 - base.0, now.1.checked_sub(base.1)?);
    if dp == 0 || dt <= 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(len.saturating_sub(now.1) as f64 * dt / dp as f64))
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The bar's `{eta}`: [`eta_since`] from the first position at or after `from`.
fn eta_key(from: u64) -> impl Fn(&indicatif::ProgressState, &mut dyn std::fmt::Write) + Clone {
    let base: Arc<Mutex<Option<(f64, u64)>>> = Arc::new(Mutex::new(None));
    move |state, w| {
        let now = (state.elapsed().as_secs_f64(), state.pos());
        let mut b = base.lock().unwrap();
        if b.is_none() && now.1 >= from {
            *b = Some(now);
        }
        let eta = b.and_then(|b| eta_since(b, now, state.len()?));
        let _ = w.write_str(&eta.map_or("?".to_string(), human_duration));
    }
}

/// A rate for the bar: whole numbers from 100 a second, else three significant digits
/// (`445/s`, `12.5/s`, `0.550/s`), where indicatif's `{per_sec}` prints four decimals.
fn human_rate(per_sec: f64) -> String {
    match per_sec {
        r if !r.is_finite() || r <= 0.0 => "0/s".to_string(),
        r if r >= 100.0 => format!("{r:.0}/s"),
        r if r >= 10.0 => format!("{r:.1}/s"),
        r if r >= 1.0 => format!("{r:.2}/s"),
        r => format!("{r:.3}/s"),
    }
}

fn line(multi: &Option<MultiProgress>, text: String) {
    match multi {
        Some(m) => {
            let _ = m.println(text);
        }
        None => {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }
}

fn handle(multi: &Option<MultiProgress>, state: &Mutex<State>, ev: Event) {
    let mut st = state.lock().unwrap();
    match ev {
        Event::RunStarted { pipeline, stages } => {
            line(
                multi,
                format!("camel: pipeline `{pipeline}`, {stages} stage{}", if stages == 1 { "" } else { "s" }),
            );
        }
        Event::StageStarted { stage, key, reasons } => {
            line(multi, format!("▶ {stage} [{}] runs: {}", &key[..12], reasons.join("; ")));
            st.started.insert(stage.clone(), Instant::now());
            if let Some(m) = multi {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} {wide_msg} {elapsed}")
                        .expect("valid template"),
                );
                bar.set_prefix(stage.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                st.bars.insert(stage, bar);
            }
        }
        Event::Progress { stage, pos, total, unit, message } => {
            if let Some(bar) = st.bars.get(&stage) {
                if let Some(t) = total
                    && bar.length() != Some(t)
                {
                    bar.set_length(t);
                    let from = st.resumed_at.get(&stage).copied().unwrap_or(0);
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "  {{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{rate}} eta {{eta}} {{msg}}"
                        ))
                        .expect("valid template")
                        .with_key("eta", eta_key(from))
                        .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&human_rate(s.per_sec()));
                        })
                        .progress_chars("=> "),
                    );
                }
                bar.set_position(pos);
                if let Some(m) = message {
                    bar.set_message(m);
                }
            } else if multi.is_none() {
                let now = Instant::now();
                let due =
                    st.last_plain.get(&stage).is_none_or(|t| now.duration_since(*t) >= PLAIN_PROGRESS_EVERY);
                if due {
                    st.last_plain.insert(stage.clone(), now);
                    // A count without a total or a unit (a Slurm job waiting in the queue) says
                    // nothing: only the message then, and the stage's time so far, as on a terminal.
                    let count = match total {
                        Some(t) => format!(" {pos}/{t} {unit}"),
                        None if unit.is_empty() => String::new(),
                        None => format!(" {pos} {unit}"),
                    };
                    let msg = message.map(|m| format!(" {m}")).unwrap_or_default();
                    let elapsed = st
                        .started
                        .get(&stage)
                        .map(|t| format!(" [{}]", human_duration(now.duration_since(*t))))
                        .unwrap_or_default();
                    line(multi, format!("  {stage}:{}{msg}{elapsed}", count.trim_end()));
                }
            }
        }
        Event::StageFinished { stage, outcome, elapsed, output_bytes, log } => {
            if let Some(bar) = st.bars.remove(&stage) {
                bar.finish_and_clear();
            }
            let (result, text) = match &outcome {
                Outcome::Ran => ("ran", format!("✓ {stage} done in {:.2}s", elapsed.as_secs_f64())),
                Outcome::Cached => ("cached", format!("· {stage} cached")),
                Outcome::Failed(m) => (
                    "FAILED",
                    format!(
                        "✗ {stage} failed: {m}{}",
                        log.as_ref()
                            .map(|l| match crate::render::failure_hint(m) {
                                Some(h) => format!("\n  log: {} ({h})", l.display()),
                                None => format!("\n  log: {}", l.display()),
                            })
                            .unwrap_or_default()
                    ),
                ),
                Outcome::Skipped => ("skipped", format!("- {stage} skipped")),
                Outcome::Submitted(job) => (
                    "submitted",
                    format!(
                        "↗ {stage} submitted as Slurm job {job}; `camel run` again picks it up when it is done"
                    ),
                ),
                Outcome::Interrupted => {
                    ("interrupted", format!("⏸ {stage} interrupted after {:.2}s", elapsed.as_secs_f64()))
                }
            };
            line(multi, text);
            st.rows.push(Row { stage, result: result.into(), elapsed, bytes: output_bytes });
        }
        Event::StageResumes { stage, partial } => {
            line(multi, format!("  {stage} resumes from {} ({})", partial.resumes_from, partial.state));
            if let Some(p) = partial.position {
                st.resumed_at.insert(stage, p);
            }
        }
        Event::StageBlocked { stage, failed } => st.blocked.push((stage, failed)),
        Event::Warning { stage, message } => {
            let s = stage.map(|s| format!("{s}: ")).unwrap_or_default();
            line(multi, format!("warning: {s}{message}"));
            st.warnings.push(format!("{s}{message}"));
        }
        Event::Info { message } => line(multi, format!("camel: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_uses_the_rate_since_the_resume() {
        // Resumed at step 30 of 330, reported 2 s after the start (loading the checkpoint);
        // 10 steps later took 20 s: 290 steps to go at 2 s each.
        let eta = eta_since((2.0, 30), (22.0, 40), 330).unwrap();
        assert_eq!(eta.as_secs(), 580);
        assert_eq!(human_duration(eta), "9m 40s");
        assert_eq!(eta_since((2.0, 30), (2.0, 30), 330), None, "no rate yet");
        assert_eq!(human_duration(Duration::from_secs(7300)), "2h 01m");
    }

    #[test]
    fn summary_columns_line_up_whatever_the_result() {
        let row = |s: &str, r: &str, ms: u64, bytes: u64| Row {
            stage: s.into(),
            result: r.into(),
            elapsed: Duration::from_millis(ms),
            bytes,
        };
        let rows = [row("notes", "ran", 20, 1536), row("pretrain", "interrupted", 7100, 0)];
        let table = summary_table(&rows.iter().collect::<Vec<_>>());
        assert_eq!(
            table,
            "\nstage     result            time      output\n\
             notes     ran              0.02s     1.5 KiB\n\
             pretrain  interrupted      7.10s           -\n"
        );
    }

    #[test]
    fn rates_read_as_numbers() {
        assert_eq!(human_rate(445.3529), "445/s");
        assert_eq!(human_rate(12.54), "12.5/s");
        assert_eq!(human_rate(3.256), "3.26/s");
        assert_eq!(human_rate(0.5504), "0.550/s");
        assert_eq!(human_rate(0.0), "0/s");
    }

    #[test]
    fn the_summary_lists_failures_and_what_they_held_back() {
        let row =
            |s: &str, r: &str| Row { stage: s.into(), result: r.into(), elapsed: Duration::ZERO, bytes: 0 };
        let rows = [row("a", "FAILED"), row("b", "skipped"), row("c", "skipped"), row("d", "ran")];
        let blocked = [("b".to_string(), vec!["a".to_string()]), ("c".to_string(), vec!["a".to_string()])];
        assert_eq!(failure_summary(&rows, &blocked), "\nfailed: a\nskipped because `a` failed: b, c\n");
        assert_eq!(failure_summary(&rows[3..], &[]), "");
    }
}
