//! `camel gc`, `camel verify` and `camel show`: looking after a workspace's cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use camel_cache::EntryState;
use serde::Serialize;

use crate::error::EngineError;
use crate::exec::status;
use crate::plan::Plan;
use crate::provenance::{PROVENANCE_FILE, Provenance};
use crate::workspace::Workspace;

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub workspace: PathBuf,
    pub kept: usize,
    /// Keys removed (or that would be, with `dry_run`).
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub scratch_removed: usize,
}

/// Removes every entry of the plans' workspaces that none of the plans reaches. A stage whose
/// key cannot be computed yet (an upstream is not cached) keeps the entry of its last run, since
/// an unchanged upstream output would make it reachable again.
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
        let _lock = ws.lock(false, |_| {})?;
        let mut keep = BTreeSet::new();
        for plan in plans {
            for s in status(plan)? {
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
        // yet committed): kept for the keys the pipelines still resolve to.
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
