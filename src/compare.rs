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
            // A count (steps, tokens) is a whole number on both sides and is shown as one; any
            // other metric with four decimals on both sides (a 0 beside 0.0079 reads 0.0000).
            let whole = [x, y].into_iter().flatten().all(|v| v.fract() == 0.0 && v.abs() < 1e12);
            let num = |v: &Option<f64>| match v {
                None => "-".to_string(),
                Some(v) if whole => format!("{v:.0}"),
                Some(v) => format!("{v:.4}"),
            };
            let delta = match (x, y) {
                (Some(x), Some(y)) if whole => format!("{:+.0}", y - x),
                (Some(x), Some(y)) => format!("{:+.4}", y - x),
                _ => String::new(),
            };
            let _ = writeln!(out, "{:<w$}  {:>12}  {:>12}  {:>12}", format!("  {m}"), num(x), num(y), delta);
        }
    }
    out
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
                ("rouge_l".to_string(), [Some(0.0), Some(0.0079)]),
                ("steps".to_string(), [Some(30.0), None]),
                ("tokens".to_string(), [Some(150.0), Some(104.0)]),
            ]
            .into(),
        };
        let want = [
            "                         A             B         B - A",
            "pretrain      differs (pretrain)",
            "    - param `lr` changed from 0.0002 to 0.001",
            "  final loss        2.5000        2.2500       -0.2500",
            "  rouge_l           0.0000        0.0079       +0.0079",
            "  steps                 30             -              ",
            "  tokens               150           104           -46",
        ];
        assert_eq!(render(&[c]), want.map(|l| format!("{l}\n")).concat());
    }
}
