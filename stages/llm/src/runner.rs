//! What every LLM stage does around its own requests, written once: [`StageClient::open`] sets the
//! client up from the stage's context (the PHI guard from the pipeline's `allowed_endpoints`, the
//! workspace's shared request log, cancellation and log lines wired to the engine), and
//! [`StageClient::run`] sends a stage's work items through it in a bounded window, with progress,
//! cancellation and the client's log lines handled here.
//!
//! A stage supplies only what differs: how one item becomes requests and a result (a closure
//! returning a future). `instructions` asks per note, `judge` per row; both read their results
//! back in item order, so a run's outputs never depend on which request finished first.
//!
//! The runner also records, in the stage's scratch directory, how many items are done
//! ([`PROGRESS_FILE`]): their replies are in the shared request log, which a rerun reads instead
//! of asking again, so `camel status` and the rerun's header can say how far a killed run got
//! ([`partial`]) without rebuilding the stage's requests.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camel_engine::{Partial, StageContext, StageError};
use serde::{Deserialize, Serialize};

use crate::client::{Client, ClientStats, Limits};
use crate::guard::AllowedEndpoints;
use crate::log::RequestLog;
use crate::provider::Provider;

/// The file in a stage's scratch directory where [`StageClient::run`] records its items done.
pub const PROGRESS_FILE: &str = "llm-progress.json";

/// What [`PROGRESS_FILE`] holds.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Recorded {
    done: usize,
    total: usize,
    /// What an item is (`note`, `row`).
    unit: String,
}

/// How many items an unfinished run of an LLM stage got done (`12/40 notes done`), for
/// `Stage::partial`. A rerun asks only for what is not in the request log.
pub fn partial(scratch: &std::path::Path) -> Option<Partial> {
    let text = std::fs::read_to_string(scratch.join(PROGRESS_FILE)).ok()?;
    let r: Recorded = serde_json::from_str(&text).ok()?;
    (r.done > 0).then(|| Partial {
        state: format!("{}/{} {}s done", r.done, r.total, r.unit),
        resumes_from: "the request log".into(),
        position: Some(r.done as u64),
    })
}

/// Writes [`PROGRESS_FILE`] by a rename, so that a kill never leaves half of it. Best effort:
/// the record only informs `camel status`.
fn record(scratch: &std::path::Path, r: &Recorded) {
    let tmp = scratch.join(format!("{PROGRESS_FILE}.tmp"));
    let _ = std::fs::create_dir_all(scratch)
        .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(r).expect("a record serializes")))
        .and_then(|()| std::fs::rename(&tmp, scratch.join(PROGRESS_FILE)));
}

/// A stage's client and what connects it to the stage's context.
pub struct StageClient {
    client: Arc<Client>,
    /// Set from the engine's cancel flag by [`StageClient::run`]; the client checks it between
    /// retries and while waiting on rate limits.
    cancelled: Arc<AtomicBool>,
    /// The client's notices (retries, pauses), written to the stage log from the runner's thread:
    /// the client runs on tokio workers, which must not block on the log file's lock.
    lines: Arc<Mutex<Vec<String>>>,
}

impl StageClient {
    /// Makes the client a stage's requests go through: checks the provider's host against the
    /// pipeline's `allowed_endpoints` (the PHI guard refuses here, before the stage reads any
    /// note), opens `<workspace>/llm/requests.jsonl` (shared by stages and runs, so nothing is
    /// paid for twice) and logs `"{label}: {provider}; request log …"`. An empty `api_key` counts
    /// as none.
    pub fn open(
        ctx: &StageContext,
        label: &str,
        provider: Provider,
        api_key: Option<String>,
        limits: &Limits,
    ) -> Result<StageClient, StageError> {
        let allowed =
            AllowedEndpoints::parse(ctx.allowed_endpoints()).map_err(|e| StageError::msg(e.to_string()))?;
        let log_path = ctx.workspace_dir().join("llm").join("requests.jsonl");
        let log =
            RequestLog::open(&log_path).map_err(StageError::io(format!("open {}", log_path.display())))?;
        ctx.log(&format!(
            "{label}: {}; request log {} ({} responses{})",
            provider.describe(),
            log_path.display(),
            log.len(),
            if log.skipped_lines() > 0 {
                format!(", {} cut line(s) skipped", log.skipped_lines())
            } else {
                String::new()
            }
        ));
        let cancelled = Arc::new(AtomicBool::new(false));
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (c2, l2) = (cancelled.clone(), lines.clone());
        let client = Client::new(provider, api_key.filter(|k| !k.is_empty()), limits.clone(), log, &allowed)
            .map_err(|e| StageError::msg(e.to_string()))?
            .with_cancel(move || c2.load(Ordering::Relaxed))
            .with_notify(move |line| l2.lock().unwrap().push(line));
        Ok(StageClient { client: Arc::new(client), cancelled, lines })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn stats(&self) -> ClientStats {
        self.client.stats()
    }

    /// Runs `item(i, client)` for every `i` in `0..n` on a tokio runtime, a few times
    /// `limits.concurrency` items at once (the client's own permits bound the requests in flight;
    /// the window only bounds the memory of queued items). Every half second it writes the
    /// client's log lines, checks for cancellation and updates the progress message; the progress
    /// position is the number of items done. Results come back in item order. `unit` names an item
    /// in the error a panicked item causes ("note", "row").
    pub fn run<T, F, Fut>(
        &self,
        ctx: &StageContext,
        n: usize,
        unit: &str,
        mut item: F,
    ) -> Result<Vec<T>, StageError>
    where
        F: FnMut(usize, Arc<Client>) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(StageError::io("start the async runtime"))?;
        let window = self.client.limits().concurrency.saturating_mul(4).max(8);
        let mut results: Vec<Option<T>> = (0..n).map(|_| None).collect();
        let started = Instant::now();
        // At most every 200 ms (a file write per reply would slow a run of cached rows); the
        // half-second tick writes what a burst left unrecorded.
        let mut recorded: Option<(Instant, usize)> = None;
        let mut note_done = |done: usize, force: bool| {
            let due = match recorded {
                None => done > 0,
                Some((t, d)) => d != done && (force || t.elapsed() >= Duration::from_millis(200)),
            };
            if due {
                record(ctx.scratch_dir(), &Recorded { done, total: n, unit: unit.to_string() });
                recorded = Some((Instant::now(), done));
            }
        };
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            let (mut next, mut done) = (0usize, 0usize);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                while next < n && set.len() < window && !self.cancelled.load(Ordering::Relaxed) {
                    let i = next;
                    let fut = item(i, self.client.clone());
                    set.spawn(async move { (i, fut.await) });
                    next += 1;
                }
                if set.is_empty() {
                    break;
                }
                tokio::select! {
                    joined = set.join_next() => {
                        // A panicked item leaves its slot empty; it is reported below.
                        if let Some(Ok((i, r))) = joined {
                            results[i] = Some(r);
                            done += 1;
                            ctx.progress().set_position(done as u64);
                            note_done(done, done == n);
                        }
                    }
                    _ = tick.tick() => {
                        note_done(done, true);
                        self.flush_log(ctx);
                        if ctx.is_cancelled() {
                            self.cancelled.store(true, Ordering::Relaxed);
                        }
                        ctx.progress().message(&self.progress_message(started, done, n));
                    }
                }
            }
        });
        self.flush_log(ctx);
        if self.cancelled.load(Ordering::Relaxed) || ctx.is_cancelled() {
            return Err(StageError::Cancelled);
        }
        results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    StageError::msg(format!("a {unit}'s task panicked (a bug in camel; please report it)"))
                })
            })
            .collect()
    }

    /// Writes the client's pending notices to the stage log.
    fn flush_log(&self, ctx: &StageContext) {
        for l in self.lines.lock().unwrap().drain(..) {
            ctx.log(&l);
        }
    }

    fn progress_message(&self, started: Instant, done: usize, n: usize) -> String {
        let s = self.client.stats();
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let eta = if rate > 0.0 { (n - done) as f64 / rate } else { f64::NAN };
        format!(
            "{:.1} req/s · {:.0} tok/s · {} from log · {} retries · {} failed · ETA {}",
            s.requests_per_s(),
            s.tokens_per_s(),
            s.from_log,
            s.retries,
            s.failures,
            if eta.is_finite() { format!("{:.0}s", eta) } else { "?".into() }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_record_reads_back_as_partial_state() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(partial(d.path()), None);
        record(d.path(), &Recorded { done: 0, total: 40, unit: "row".into() });
        assert_eq!(partial(d.path()), None, "nothing done is nothing to resume");
        record(d.path(), &Recorded { done: 12, total: 40, unit: "row".into() });
        let p = partial(d.path()).unwrap();
        assert_eq!(
            (p.state.as_str(), p.resumes_from.as_str(), p.position),
            ("12/40 rows done", "the request log", Some(12))
        );
        std::fs::write(d.path().join(PROGRESS_FILE), "{\"done\": 3").unwrap();
        assert_eq!(partial(d.path()), None, "a damaged record is ignored");
    }
}
