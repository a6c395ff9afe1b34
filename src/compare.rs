//! `camel diff`: the engine's stage-by-stage comparison of two pipelines as a table, or JSON.

use std::fmt::Write as _;
use std::path::Path;

use camel_engine::{EngineError, StageComparison, Verdict};

pub fn diff(a: &Path, b: &Path, set_a: &[String], set_b: &[String], json: bool) -> Result<i32, EngineError> {
    let load = |p: &Path, set: &[String]| {
        let overrides = set
            .iter()
            .map(|s| camel_engine::Override::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(EngineError::Usage)?;
        camel_engine::load_for_status(p, &overrides, &camel_stages::registry())
    };
    let (pa, pb) = (load(a, set_a)?, load(b, set_b)?);
    let c = camel_engine::compare(&pa, &pb)?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&c).expect("a comparison serializes"));
    } else {
        let side = |p: &Path, set: &[String]| {
            let mut s = p.display().to_string();
            for o in set {
                s.push_str(&format!(" --set {o}"));
            }
            s
        };
        out!("A: {}\nB: {}\n\n{}", side(a, set_a), side(b, set_b), render(&c));
    }
    Ok(0)
}

/// One line per stage (its verdict and kind), then its reasons and its metrics: A, B and B − A.
pub fn render(c: &[StageComparison]) -> String {
    let w = c
        .iter()
        .map(|s| s.stage.len())
        .chain(c.iter().flat_map(|s| s.metrics.keys().map(|k| k.len() + 2)))
        .max()
        .unwrap_or(5);
    let mut out = String::new();
    if c.iter().any(|s| !s.metrics.is_empty()) {
        let _ = writeln!(out, "{:<w$}  {:>12}  {:>12}  {:>12}", "", "A", "B", "B - A");
    }
    for s in c {
        let verdict = match s.verdict {
            Verdict::Same => "same",
            Verdict::Differs => "differs",
            Verdict::OnlyA => "only in A",
            Verdict::OnlyB => "only in B",
        };
        let _ = writeln!(out, "{:<w$}  {verdict} ({})", s.stage, s.kind);
        for r in &s.reasons {
            let _ = writeln!(out, "    - {r}");
        }
        for (m, [x, y]) in &s.metrics {
            let num = |v: &Option<f64>| v.map_or("-".to_string(), fmt_num);
            let delta = match (x, y) {
                (Some(x), Some(y)) => format!("{:+.4}", y - x),
                _ => String::new(),
            };
            let _ = writeln!(out, "{:<w$}  {:>12}  {:>12}  {:>12}", format!("  {m}"), num(x), num(y), delta);
        }
    }
    out
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 { format!("{x:.0}") } else { format!("{x:.4}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_side_by_side_with_the_change() {
        let c = StageComparison {
            stage: "pretrain".into(),
            kind: "pretrain".into(),
            verdict: Verdict::Differs,
            reasons: vec!["param `lr` changed from 0.0002 to 0.001".into()],
            a: None,
            b: None,
            metrics: [
                ("final loss".to_string(), [Some(2.5), Some(2.25)]),
                ("steps".to_string(), [Some(30.0), None]),
            ]
            .into(),
        };
        let want = [
            "                         A             B         B - A",
            "pretrain      differs (pretrain)",
            "    - param `lr` changed from 0.0002 to 0.001",
            "  final loss        2.5000        2.2500       -0.2500",
            "  steps                 30             -              ",
        ];
        assert_eq!(render(&[c]), want.map(|l| format!("{l}\n")).concat());
    }
}
