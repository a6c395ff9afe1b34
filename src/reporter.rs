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
    rows: Vec<Row>,
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
                rows: Vec::new(),
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
        let w = rows.iter().map(|r| r.stage.len()).max().unwrap_or(5).max(5);
        let mut out = String::new();
        out.push_str(&format!("\n{:<w$}  {:<8}  {:>9}  {:>10}\n", "stage", "result", "time", "output"));
        for r in rows {
            out.push_str(&format!(
                "{:<w$}  {:<8}  {:>9}  {:>10}\n",
                r.stage,
                r.result,
                format!("{:.2}s", r.elapsed.as_secs_f64()),
                if r.bytes > 0 { human_bytes(r.bytes) } else { "-".into() }
            ));
        }
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
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
                    bar.set_style(
                        ProgressStyle::with_template(&format!(
                            "  {{prefix}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} {{per_sec}} eta {{eta}} {{msg}}"
                        ))
                        .expect("valid template")
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
                    let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                    let msg = message.map(|m| format!(" {m}")).unwrap_or_default();
                    line(multi, format!("  {stage}: {pos}{of} {unit}{msg}"));
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
                        log.as_ref().map(|l| format!("\n  log: {}", l.display())).unwrap_or_default()
                    ),
                ),
                Outcome::Skipped => ("skipped", format!("- {stage} skipped")),
                Outcome::Submitted(job) => (
                    "submitted",
                    format!(
                        "↗ {stage} submitted as Slurm job {job}; `camel run` again picks it up when it is done"
                    ),
                ),
            };
            line(multi, text);
            st.rows.push(Row { stage, result: result.into(), elapsed, bytes: output_bytes });
        }
        Event::Warning { stage, message } => {
            let s = stage.map(|s| format!("{s}: ")).unwrap_or_default();
            line(multi, format!("warning: {s}{message}"));
        }
        Event::Info { message } => line(multi, format!("camel: {message}")),
    }
}
