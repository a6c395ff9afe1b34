//! `camel gc`, `camel verify` and `camel show`: looking after a workspace's cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use camel_cache::EntryState;
use serde::Serialize;

use crate::error::EngineError;
use crate::exec::{status, status_with};
use crate::plan::Plan;
use crate::provenance::{PROVENANCE_FILE, Provenance};
use crate::slurm::SlurmJobs;
use crate::slurm::job::{IN_FLIGHT, JobDir};
use crate::workspace::Workspace;

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub workspace: PathBuf,
    pub kept: usize,
    /// Keys removed (or that would be, with `dry_run`).
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub scratch_removed: usize,
    /// Slurm job directories (and the scratch of their keys) that no pipeline uses but that are
    /// kept: their job may still be running.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_jobs: Vec<KeptJob>,
}

/// A Slurm job directory `camel gc` keeps although no pipeline uses its key.
#[derive(Debug, Serialize)]
pub struct KeptJob {
    pub key: String,
    pub stage: String,
    pub job_id: Option<String>,
    /// Slurm's state (`PENDING`, `RUNNING`, …), or `UNKNOWN` when Slurm could not be asked.
    pub state: String,
    /// Why, and what to do, for the user.
    pub message: String,
}

/// Removes every entry of the plans' workspaces that none of the plans reaches. A stage whose
/// key cannot be computed yet (an upstream is not cached) keeps the entry of its last run, since
/// an unchanged upstream output would make it reachable again.
///
/// The job directory of a Slurm stage (its submission record) and the scratch of its key are
/// kept, whatever the key, while the job may still run (Slurm lists it as pending, running, …,
/// or cannot be asked): without its record, the next `camel run` of that key would submit a
/// second job writing the same `out/` and checkpoints.
///
/// `dry_run` writes nothing: no lock is taken, and a workspace that does not exist is not made.
pub fn gc(plans: &[Plan], dry_run: bool) -> Result<Vec<GcReport>, EngineError> {
    let mut by_ws: Vec<(PathBuf, Vec<&Plan>)> = Vec::new();
    for p in plans {
        match by_ws.iter_mut().find(|(w, _)| *w == p.workspace) {
            Some((_, v)) => v.push(p),
            None => by_ws.push((p.workspace.clone(), vec![p])),
        }
    }
    let mut reports = Vec::new();
    for (root, plans) in by_ws {
        let ws = Workspace::new(&root);
        if dry_run && !root.exists() {
            reports.push(GcReport { workspace: root.clone(), ..Default::default() });
            continue;
        }
        let _lock = if dry_run { None } else { Some(ws.lock(false, |_| {})?) };
        let mut keep = BTreeSet::new();
        for plan in &plans {
            for s in status_with(plan, !dry_run)? {
                match s.key {
                    Some(k) => keep.insert(k),
                    None => ws.read_record(&s.stage).map(|r| keep.insert(r.key)).unwrap_or(false),
                };
            }
        }
        let store = ws.store();
        let mut report = GcReport { workspace: root.clone(), ..Default::default() };
        for key in store.keys()? {
            if keep.contains(&key) {
                report.kept += 1;
                continue;
            }
            if let EntryState::Valid(m) = store.check(&key) {
                report.freed_bytes += m.total_size();
            }
            if !dry_run {
                store.remove(&key)?;
            }
            report.removed.push(key);
        }
        // Per-key scratch, and the job directories of Slurm stages (script, logs, outputs not
        // yet committed): kept for the keys the pipelines still resolve to, and for the keys of
        // jobs that may still run.
        let unused: Vec<String> = fs::read_dir(root.join("slurm"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|k| !keep.contains(k))
            .collect();
        report.kept_jobs = live_jobs(&plans[0].slurm, &root, &unused);
        for j in &report.kept_jobs {
            keep.insert(j.key.clone());
        }
        for area in ["scratch", "slurm"] {
            let Ok(rd) = fs::read_dir(root.join(area)) else { continue };
            for e in rd.flatten() {
                let key = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&key) {
                    if !dry_run {
                        fs::remove_dir_all(e.path())
                            .map_err(EngineError::io(format!("remove {}", e.path().display())))?;
                    }
                    report.scratch_removed += 1;
                }
            }
        }
        if !dry_run {
            store.clean_tmp()?;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The job directories among `keys` (of `<root>/slurm/`) whose job may still run. Slurm is asked
/// (one `squeue`) only when a directory has a record of a job that is not known to be over; when
/// it cannot be asked, those are all kept.
fn live_jobs(settings: &crate::slurm::SlurmSettings, root: &Path, keys: &[String]) -> Vec<KeptJob> {
    let mut open = Vec::new();
    for key in keys {
        let jd = JobDir::new(root, key);
        let Some(rec) = jd.read_record() else { continue };
        // Refused by sbatch, or its outputs committed: no job is coming or running.
        if rec.refused.is_some() || rec.committed.is_some() {
            continue;
        }
        open.push((key.clone(), rec));
    }
    if open.is_empty() {
        return Vec::new();
    }
    let mut settings = settings.clone();
    settings.retry_for = settings.retry_for.min(30.0);
    let jobs = SlurmJobs::new(settings, Box::new(|_| {}));
    let short = |k: &str| k[..12.min(k.len())].to_string();
    let states = match jobs.slurm.states() {
        Ok(s) => s,
        Err(e) => {
            return open
                .into_iter()
                .map(|(key, rec)| {
                    let job = rec.job_id.as_ref().map_or("its job".to_string(), |i| format!("Slurm job {i}"));
                    KeptJob {
                        message: format!(
                            "kept the job directory and scratch of stage `{}` (key {}): Slurm cannot be \
                             asked whether {job} still runs ({e}); run `camel gc` again where Slurm answers",
                            rec.stage,
                            short(&key)
                        ),
                        key,
                        stage: rec.stage,
                        job_id: rec.job_id,
                        state: "UNKNOWN".into(),
                    }
                })
                .collect();
        }
    };
    let mut kept = Vec::new();
    for (key, rec) in open {
        let (state, message) = match &rec.job_id {
            Some(id) => match states.get(id).filter(|s| s.is_active()) {
                Some(s) => (
                    s.state.clone(),
                    format!(
                        "kept the job directory and scratch of stage `{}` (key {}): Slurm job {id} is still \
                         {}; `scancel {id}` stops it, and a later `camel gc` removes them",
                        rec.stage,
                        short(&key),
                        s.state
                    ),
                ),
                None => continue,
            },
            None => {
                // The run that submitted it was killed before sbatch answered.
                let found = jobs.slurm.find_by_name(&rec.job_name);
                let age = humantime::parse_rfc3339(&rec.submitted)
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                match found {
                    Ok(v) => match v.into_iter().find(|j| j.is_active()) {
                        Some(j) => (
                            j.state.clone(),
                            format!(
                                "kept the job directory and scratch of stage `{}` (key {}): Slurm job {} is \
                                 still {}; `scancel {}` stops it, and a later `camel gc` removes them",
                                rec.stage,
                                short(&key),
                                j.id,
                                j.state,
                                j.id
                            ),
                        ),
                        None if age.is_some_and(|a| a < IN_FLIGHT) => (
                            "UNKNOWN".into(),
                            format!(
                                "kept the job directory and scratch of stage `{}` (key {}): its sbatch started \
                                 {} s ago and may still submit the job",
                                rec.stage,
                                short(&key),
                                age.unwrap_or_default().as_secs()
                            ),
                        ),
                        None => continue,
                    },
                    Err(e) => (
                        "UNKNOWN".into(),
                        format!(
                            "kept the job directory and scratch of stage `{}` (key {}): Slurm cannot be asked \
                             whether its job still runs ({e}); run `camel gc` again where Slurm answers",
                            rec.stage,
                            short(&key)
                        ),
                    ),
                }
            }
        };
        let job_id = rec.job_id.clone();
        kept.push(KeptJob { key, stage: rec.stage, job_id, state, message });
    }
    kept
}

#[derive(Debug, Serialize)]
pub struct VerifyEntry {
    pub stage: String,
    pub key: Option<String>,
    /// `ok`, `missing`, `unknown` (upstream not cached) or `corrupt`.
    pub result: String,
    pub problem: Option<String>,
}

/// Hashes every file of the plan's current entries again. A corrupt entry is removed so that
/// the next run rebuilds it.
pub fn verify(plan: &Plan) -> Result<Vec<VerifyEntry>, EngineError> {
    let ws = Workspace::new(&plan.workspace);
    let _lock = ws.lock(false, |_| {})?;
    let store = ws.store();
    let mut out = Vec::new();
    for s in status(plan)? {
        let (result, problem) = match &s.key {
            None => ("unknown".to_string(), s.reasons.first().cloned()),
            Some(k) => match store.verify(k) {
                EntryState::Valid(_) => ("ok".into(), None),
                EntryState::Missing => ("missing".into(), None),
                EntryState::Corrupt(why) => {
                    store.remove(k)?;
                    ("corrupt".into(), Some(why))
                }
            },
        };
        out.push(VerifyEntry { stage: s.stage, key: s.key, result, problem });
    }
    Ok(out)
}

#[derive(Debug, Serialize)]
pub struct ShowOutput {
    pub name: String,
    pub path: PathBuf,
    pub kind: String,
    pub size: u64,
    pub hash: String,
}

#[derive(Debug, Serialize)]
pub struct ShowReport {
    pub stage: String,
    pub key: String,
    pub entry: PathBuf,
    pub outputs: Vec<ShowOutput>,
    /// provenance.json as JSON, as it is in the file (`null` without one): what `--json` prints.
    /// Kept as a value for callers written against it; [`ShowReport::record`] is the typed form.
    pub provenance: serde_json::Value,
    /// provenance.json, typed; `None` when the entry has none or it does not parse.
    #[serde(skip)]
    pub record: Option<Provenance>,
    pub log: PathBuf,
}

/// What produced a stage's current outputs, and where they are.
pub fn show(plan: &Plan, stage: &str) -> Result<ShowReport, EngineError> {
    plan.require(stage)?;
    let st = status(plan)?.into_iter().find(|s| s.stage == stage).expect("the stage exists");
    let ws = Workspace::new(&plan.workspace);
    let store = ws.store();
    // The current key if cached; otherwise the entry of the last successful run, if it survives.
    let key = match (&st.key, st.state) {
        (Some(k), crate::exec::StageState::Cached) => k.clone(),
        _ => match ws.read_record(stage) {
            Some(r) if matches!(store.check(&r.key), EntryState::Valid(_)) => r.key,
            _ => {
                return Err(EngineError::Usage(format!(
                    "stage `{stage}` has no outputs in {} yet; run the pipeline first",
                    plan.workspace.display()
                )));
            }
        },
    };
    let EntryState::Valid(m) = store.check(&key) else {
        return Err(EngineError::Usage(format!(
            "the entry of stage `{stage}` is not valid; run `camel verify`"
        )));
    };
    let entry = store.entry_dir(&key);
    let record = Provenance::read(&entry);
    // The value comes from the file rather than from `record`, so that `--json` still shows an
    // entry's provenance that the struct cannot read (written by a later camel, say).
    let provenance = fs::read(entry.join(PROVENANCE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let outputs = m
        .outputs
        .iter()
        .map(|(name, o)| ShowOutput {
            name: name.clone(),
            path: if o.path == "." { entry.join("out") } else { entry.join("out").join(&o.path) },
            kind: format!("{:?}", o.kind).to_lowercase(),
            size: o.size,
            hash: o.hash.to_hex(),
        })
        .collect();
    Ok(ShowReport {
        stage: stage.into(),
        key: key.clone(),
        log: entry.join("log.txt"),
        entry,
        outputs,
        provenance,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::RunOptions;
    use crate::testkit::Bench;

    const ONE: &str = "
name: one
stages:
  a:
    kind: fake
    params: {text: A}
";

    fn tree(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir(dir);
        v.sort();
        v
    }

    fn walkdir(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            out.push(p.display().to_string());
            if p.is_dir() && !p.is_symlink() {
                out.extend(walkdir(&p));
            }
        }
        out
    }

    #[test]
    fn a_dry_run_writes_nothing() {
        let t = Bench::new();
        let plan = t.plan(ONE).unwrap();
        // A pipeline that never ran: no workspace is made, no lock file.
        let r = gc(std::slice::from_ref(&plan), true).unwrap();
        assert_eq!((r[0].kept, r[0].removed.len()), (0, 0));
        assert!(!plan.workspace.exists(), "a dry run made {}", plan.workspace.display());

        // One that ran, with an entry no longer used: listed, not removed; nothing changes.
        t.run(ONE, RunOptions::default()).result.unwrap();
        let edited = ONE.replace("text: A", "text: A2");
        let before = tree(&plan.workspace);
        let lock = fs::read(plan.workspace.join("lock")).unwrap();
        let r = gc(&[t.plan(&edited).unwrap()], true).unwrap();
        assert_eq!(r[0].removed.len(), 1);
        assert_eq!(tree(&plan.workspace), before);
        assert_eq!(fs::read(plan.workspace.join("lock")).unwrap(), lock);
        let r = gc(&[t.plan(&edited).unwrap()], false).unwrap();
        assert_eq!(r[0].removed.len(), 1);
        assert!(store_is_empty(&plan));
    }

    fn store_is_empty(plan: &Plan) -> bool {
        Workspace::new(&plan.workspace).store().keys().unwrap().is_empty()
    }

    /// A job directory of an unused key whose job is known to be over (its outputs committed, or
    /// refused by sbatch) goes without asking Slurm.
    #[test]
    fn job_directories_of_jobs_known_to_be_over_go() {
        let t = Bench::new();
        let plan = t.plan(ONE).unwrap();
        t.run(ONE, RunOptions::default()).result.unwrap();
        for (key, extra) in [("k1", r#""committed": "2026-01-01T00:00:00Z""#), ("k2", r#""refused": "no""#)] {
            let dir = plan.workspace.join("slurm").join(key);
            fs::create_dir_all(&dir).unwrap();
            fs::write(
                dir.join("submission.json"),
                format!(
                    r#"{{"stage": "a", "token": "t", "job_name": "camel-a-{key}", "job_id": "1",
                        "submitted": "2026-01-01T00:00:00Z", {extra}}}"#
                ),
            )
            .unwrap();
            fs::create_dir_all(plan.workspace.join("scratch").join(key)).unwrap();
        }
        let r = gc(std::slice::from_ref(&plan), false).unwrap();
        assert!(r[0].kept_jobs.is_empty(), "{:?}", r[0].kept_jobs);
        assert_eq!(r[0].scratch_removed, 4);
        assert!(!plan.workspace.join("slurm/k1").exists() && !plan.workspace.join("scratch/k2").exists());
    }
}
