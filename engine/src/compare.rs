//! `camel diff`: two pipelines, or one pipeline under two sets of `--set` overrides, compared
//! stage by stage (matched by name) with the same reasons `camel status` gives, and the headline
//! metrics of each side's cached outputs side by side (what `dvc params diff` and `dvc metrics
//! diff` show together). Nothing runs and nothing is written.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::EngineError;
use crate::exec::{StageState, StageStatus, status};
use crate::key::{CacheKey, diff};
use crate::plan::{InputRef, Plan};
use crate::workspace::Workspace;

/// How a stage compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Both sides resolve to the same cache key: the same outputs.
    Same,
    /// The keys differ (`reasons` says how), or one side's key is not known yet.
    Differs,
    OnlyA,
    OnlyB,
}

/// One side of a compared stage.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub state: StageState,
    /// `None` while an upstream stage is not cached on that side.
    pub key: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct StageComparison {
    pub stage: String,
    pub kind: String,
    pub verdict: Verdict,
    /// Why B's key differs from A's, in `camel status`'s words.
    pub reasons: Vec<String>,
    pub a: Option<Side>,
    pub b: Option<Side>,
    /// Each metric the stage's kind reports, for A and B (`None` where that side has no cached
    /// outputs or no such metric).
    pub metrics: BTreeMap<String, [Option<f64>; 2]>,
}

/// Compares `a` with `b`: the stages of `a` in its run order, then those only `b` has.
pub fn compare(a: &Plan, b: &Plan) -> Result<Vec<StageComparison>, EngineError> {
    let (sa, sb) = (status(a)?, status(b)?);
    let find = |st: &'_ [StageStatus], name: &str| st.iter().position(|s| s.stage == name);
    let mut names: Vec<&str> = a.order.iter().map(|&i| a.stages[i].name.as_str()).collect();
    names.extend(b.order.iter().map(|&i| b.stages[i].name.as_str()).filter(|n| a.index_of(n).is_none()));
    let mut out: Vec<StageComparison> = Vec::new();
    for name in names {
        let (ia, ib) = (find(&sa, name), find(&sb, name));
        let side = |st: &StageStatus| Side { state: st.state, key: st.key.clone() };
        let metrics_of = |plan: &Plan, st: Option<&StageStatus>| -> BTreeMap<String, f64> {
            match st {
                Some(s) if s.state == StageState::Cached => {
                    let key = s.key.as_deref().expect("a cached stage has a key");
                    let out_dir = Workspace::new(&plan.workspace).store().out_dir(key);
                    plan.stages[plan.index_of(name).expect("a planned stage")].bound.metrics(&out_dir)
                }
                _ => BTreeMap::new(),
            }
        };
        let (ma, mb) = (metrics_of(a, ia.map(|i| &sa[i])), metrics_of(b, ib.map(|i| &sb[i])));
        let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
        let metrics =
            keys.into_iter().map(|k| (k.clone(), [ma.get(k).copied(), mb.get(k).copied()])).collect();
        let (verdict, reasons, kind) = match (ia, ib) {
            (Some(i), Some(j)) => {
                let (x, y) = (&sa[i], &sb[j]);
                let (v, r) = stage_reasons(a, b, name, x, y, &out);
                (v, r, y.kind.clone())
            }
            (Some(i), None) => (Verdict::OnlyA, vec!["only in A".into()], sa[i].kind.clone()),
            (None, Some(j)) => (Verdict::OnlyB, vec!["only in B".into()], sb[j].kind.clone()),
            (None, None) => unreachable!("the name comes from one of the plans"),
        };
        out.push(StageComparison {
            stage: name.to_string(),
            kind,
            verdict,
            reasons,
            a: ia.map(|i| side(&sa[i])),
            b: ib.map(|j| side(&sb[j])),
            metrics,
        });
    }
    Ok(out)
}

/// Why stage `name` differs between the plans. With both keys known, the key structs are diffed;
/// otherwise (an input file is missing, or an upstream is not cached, so its hash is unknown) the
/// params are, and the reasons say which inputs could not be compared. A stage whose params and
/// inputs are the same on both sides (the same files, and upstream stages that are the `same`,
/// among those compared so far, `done`) is the `same` even where its key cannot be computed yet:
/// once it can, it is the same on both sides.
fn stage_reasons(
    a: &Plan,
    b: &Plan,
    name: &str,
    x: &StageStatus,
    y: &StageStatus,
    done: &[StageComparison],
) -> (Verdict, Vec<String>) {
    let sources = |plan: &Plan| -> BTreeMap<String, String> {
        let st = &plan.stages[plan.index_of(name).expect("a planned stage")];
        st.inputs.iter().map(|(k, v)| (k.clone(), v.describe())).collect()
    };
    if let (Some(ka), Some(kb)) = (&x.cache_key, &y.cache_key) {
        if x.key == y.key {
            return (Verdict::Same, Vec::new());
        }
        return (Verdict::Differs, diff(ka, kb, &sources(b)));
    }
    let bare = |plan: &Plan| {
        let s = &plan.stages[plan.index_of(name).expect("a planned stage")];
        CacheKey::new(s.bound.kind(), s.bound.version(), s.bound.hashed_params(), BTreeMap::new())
    };
    let mut reasons = diff(&bare(a), &bare(b), &BTreeMap::new());
    let (sa, sb) = (sources(a), sources(b));
    for (input, from) in &sb {
        match sa.get(input) {
            Some(f) if f != from => reasons.push(format!("input `{input}` comes from {from} (was {f})")),
            None => reasons.push(format!("input `{input}` ({from}) added")),
            _ => {}
        }
    }
    for input in sa.keys().filter(|k| !sb.contains_key(*k)) {
        reasons.push(format!("input `{input}` removed"));
    }
    if reasons.is_empty() && same_inputs(a, b, name, done) {
        return (
            Verdict::Same,
            vec![
                "the same params and inputs; the inputs' content is not known yet (`camel status` says why)"
                    .into(),
            ],
        );
    }
    match (x.key.is_none(), y.key.is_none()) {
        (true, true) if x.reasons == y.reasons => {
            reasons.push(format!("inputs not comparable in A and B: {}", x.reasons.join("; ")))
        }
        _ => {
            for (side, st) in [("A", x), ("B", y)] {
                if st.key.is_none() {
                    reasons.push(format!("inputs not comparable: {} in {side}", st.reasons.join("; ")));
                }
            }
        }
    }
    (Verdict::Differs, reasons)
}

/// Whether stage `name` reads the same inputs in both plans: the same files (resolved, so that
/// two pipelines in different directories are told apart) and the same outputs of upstream
/// stages that compared the `same`.
fn same_inputs(a: &Plan, b: &Plan, name: &str, done: &[StageComparison]) -> bool {
    fn inputs<'p>(plan: &'p Plan, name: &str) -> &'p BTreeMap<String, InputRef> {
        &plan.stages[plan.index_of(name).expect("a planned stage")].inputs
    }
    let (ia, ib) = (inputs(a, name), inputs(b, name));
    ia.len() == ib.len()
        && ia.iter().all(|(k, x)| match (x, ib.get(k)) {
            (InputRef::Path { path: p, .. }, Some(InputRef::Path { path: q, .. })) => p == q,
            (
                InputRef::Stage { name: s, output: o, .. },
                Some(InputRef::Stage { name: t, output: u, .. }),
            ) => s == t && o == u && done.iter().any(|c| c.stage == *s && c.verdict == Verdict::Same),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::RunOptions;
    use crate::testkit::Bench;

    const P: &str = "
name: p
stages:
  a: {kind: fake, params: {text: A}}
  b: {kind: fake, inputs: {x: a.out}, params: {text: B}}
  c: {kind: fake, params: {text: C}}
";

    #[test]
    fn stages_are_compared_with_status_reasons_and_metrics_side_by_side() {
        let t = Bench::new();
        let edited = P
            .replace("text: A}", "text: AA}")
            .replace("  c: {kind: fake, params: {text: C}}\n", "  e: {kind: fake}\n");
        t.run(P, RunOptions::default()).result.unwrap();
        let c = compare(&t.plan(P).unwrap(), &t.plan(&edited).unwrap()).unwrap();
        let by = |n: &str| c.iter().find(|s| s.stage == n).unwrap();
        let names: Vec<&str> = c.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "e"]);
        assert_eq!(by("a").verdict, Verdict::Differs);
        assert_eq!(by("a").reasons, [r#"param `text` changed from "A" to "AA""#]);
        // A's side is cached, B's is not yet: one number each.
        assert_eq!(by("a").metrics["chars"], [Some(1.0), None]);
        // b's params are the same, but its input in B is not known until a runs there.
        assert_eq!(by("b").verdict, Verdict::Differs);
        assert_eq!(by("b").reasons, ["inputs not comparable: upstream `a` is not cached in B"]);
        assert_eq!((by("c").verdict, by("e").verdict), (Verdict::OnlyA, Verdict::OnlyB));

        // Once B has run too, b's input hash differs and both sides have metrics.
        t.run(&edited, RunOptions::default()).result.unwrap();
        let c = compare(&t.plan(P).unwrap(), &t.plan(&edited).unwrap()).unwrap();
        let by = |n: &str| c.iter().find(|s| s.stage == n).unwrap();
        assert_eq!(by("a").metrics["chars"], [Some(1.0), Some(2.0)]);
        assert_eq!(by("b").reasons.len(), 1);
        assert!(by("b").reasons[0].starts_with("input `x` (a.out) content changed"), "{:?}", by("b").reasons);
        assert_eq!(by("b").metrics["chars"], [Some(2.0), Some(3.0)]);

        let same = compare(&t.plan(P).unwrap(), &t.plan(P).unwrap()).unwrap();
        assert!(same.iter().all(|s| s.verdict == Verdict::Same && s.reasons.is_empty()));
    }

    /// Inputs that cannot be hashed yet (a file not there, an upstream never run) on both sides
    /// do not make a stage differ: the same params and inputs are the `same`, and where the
    /// params differ the shared reason is said once.
    #[test]
    fn stages_whose_inputs_are_unknown_on_both_sides_compare_by_what_is_known() {
        let t = Bench::new();
        let p = "name: p\nparams: {seed: s1}\nstages:\n  a: {kind: fake, inputs: {x: data/none.txt}}\n  \
                 b: {kind: fake, inputs: {x: a.out}}\n  c: {kind: fake, inputs: {x: b.out}, params: {text: '${params.seed}'}}\n";
        std::fs::write(t.path("p.yaml"), p).unwrap();
        let plan = |set: &[&str]| {
            let o: Vec<crate::Override> = set.iter().map(|s| crate::Override::parse(s).unwrap()).collect();
            crate::plan::load_for_status(&t.path("p.yaml"), &o, &crate::testkit::registry()).unwrap()
        };
        let c = compare(&plan(&[]), &plan(&["params.seed=s2"])).unwrap();
        let by = |n: &str| c.iter().find(|s| s.stage == n).unwrap();
        assert_eq!((by("a").verdict, by("b").verdict), (Verdict::Same, Verdict::Same));
        assert_eq!(by("c").verdict, Verdict::Differs);
        assert_eq!(
            by("c").reasons,
            [
                r#"param `text` changed from "s1" to "s2""#,
                "inputs not comparable in A and B: upstream `b` is not cached"
            ]
        );
    }
}
