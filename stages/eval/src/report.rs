//! `kind: report` — one Markdown report per run from a `judge` stage's `judgments.json` and/or a
//! `metrics` stage's `metrics.json`, plus a bar chart (SVG, drawn with plotters).
//!
//! Judge scores: per system, the mean over the rows the judge scored (`unparsed` and `failed`
//! rows are left out for every system alike, so the comparison stays paired), with a percentile
//! bootstrap interval: `bootstrap` resamples of those rows with replacement, seeded by `seed`
//! (recorded), quantiles by linear interpolation (numpy's default). The ratio of each system's
//! mean to the `reference` system's is CAMEL's headline figure ("96 % of GPT-3.5"), with its own
//! interval from the same resamples. Then the means per task type, and the offline metrics.
//!
//! Outputs: `report.md`, `report.json` (the same numbers), `chart.svg`.

use std::collections::BTreeMap;
use std::path::Path;

use camel_engine::validate::{collect, in_range};
use camel_engine::{InputSpec, OutputSpec, Problem, Stage, StageContext, StageError, ValidateContext};
use camel_rng::SplitMix64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The system the others are compared with (CAMEL: `gpt-3.5`).
    #[serde(default)]
    pub reference: Option<String>,
    /// Bootstrap resamples of the rows behind each confidence interval.
    #[serde(default = "default_bootstrap")]
    #[schemars(range(min = 1))]
    pub bootstrap: usize,
    /// Coverage of the bootstrap (percentile) confidence intervals.
    #[serde(default = "default_confidence")]
    #[schemars(extend("exclusiveMinimum" = 0, "exclusiveMaximum" = 1))]
    pub confidence: f64,
    /// Seeds the bootstrap resampling.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The report's heading.
    #[serde(default = "default_title")]
    pub title: String,
    /// A paragraph under the title saying what the numbers can and cannot show (the demo's: a tiny
    /// model on synthetic notes). Left out of the JSON when absent, so reports without it keep
    /// their cache keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
}

fn default_bootstrap() -> usize {
    10_000
}
fn default_confidence() -> f64 {
    0.95
}
fn default_seed() -> u64 {
    42
}
fn default_title() -> String {
    "Evaluation".into()
}

pub struct Report;

impl Stage for Report {
    type Params = ReportParams;
    const KIND: &'static str = "report";
    /// 2: a warning under the metrics table for each system (or reference) whose answers are
    /// empty in at least half of the rows (the counts of a version 2 `metrics.json`).
    const VERSION: u32 = 2;
    const SUMMARY: &'static str = "Markdown report and bar chart: judge means with bootstrap intervals, ratio to a reference, per task type, offline metrics";

    fn inputs(_: &ReportParams) -> InputSpec {
        InputSpec::Named { required: vec![], optional: vec!["judgments".into(), "metrics".into()] }
    }

    fn outputs(_: &ReportParams) -> Vec<OutputSpec> {
        vec![
            OutputSpec::new("report", "report.md"),
            OutputSpec::new("json", "report.json"),
            OutputSpec::new("chart", "chart.svg"),
        ]
    }

    fn validate(p: &ReportParams, _: &ValidateContext) -> Result<(), Vec<Problem>> {
        collect([
            in_range("bootstrap", p.bootstrap, 1, None, "resamples"),
            (!(p.confidence > 0.0 && p.confidence < 1.0)).then(|| {
                Problem::param(
                    "confidence",
                    format!("`confidence` is {}; it must be above 0 and below 1 (e.g. 0.95)", p.confidence),
                )
            }),
        ])
    }

    fn run(p: &ReportParams, ctx: &StageContext) -> Result<(), StageError> {
        if !(p.confidence > 0.0 && p.confidence < 1.0) || p.bootstrap == 0 {
            return Err(StageError::msg("`confidence` must be in (0, 1) and `bootstrap` at least 1"));
        }
        let judgments = ctx.inputs().get("judgments");
        let metrics = ctx.inputs().get("metrics");
        if judgments.is_none() && metrics.is_none() {
            return Err(StageError::msg(
                "bind `judgments` (a judge stage's judgments.json) and/or `metrics` (a metrics stage's metrics.json)",
            ));
        }
        let mut md = format!("# {}\n\n", p.title);
        if let Some(c) = &p.caveat {
            md.push_str(&format!("> **What this can and cannot show.** {}\n\n", c.trim()));
        }
        let mut out = json!({"seed": p.seed, "bootstrap": p.bootstrap, "confidence": p.confidence});
        let mut bars: Vec<Bar> = Vec::new();
        let mut chart_title = String::new();
        if let Some(path) = judgments {
            let j = read_judgments(path)?;
            let summary = judge_summary(&j, p)?;
            md.push_str(&judge_markdown(&summary, p));
            bars = summary
                .systems
                .iter()
                .map(|s| Bar { label: s.name.clone(), value: s.mean, ci: Some(s.ci) })
                .collect();
            chart_title = format!("Mean judge score (1-10), {:.0} % bootstrap CI", p.confidence * 100.0);
            out["judge"] = summary.to_json();
        }
        if let Some(path) = metrics {
            let m = read_json(path)?;
            md.push_str(&metrics_markdown(&m, path)?);
            if bars.is_empty() {
                for (name, s) in m["systems"].as_object().into_iter().flatten() {
                    let v = s["overall"]["rouge_l"].as_f64().unwrap_or(0.0);
                    bars.push(Bar { label: name.clone(), value: v, ci: None });
                }
                chart_title = format!("ROUGE-L F against `{}`", m["reference"].as_str().unwrap_or("?"));
            }
            out["metrics"] = m;
        }
        md.push_str("\n![chart](chart.svg)\n");
        crate::write_text(&ctx.out_dir().join("report.md"), &md)?;
        crate::write_json(&ctx.out_dir().join("report.json"), &out)?;
        crate::write_text(&ctx.out_dir().join("chart.svg"), &bar_chart(&chart_title, &bars)?)?;
        Ok(())
    }
}

fn read_json(path: &Path) -> Result<Value, StageError> {
    let text = std::fs::read_to_string(path).map_err(StageError::io(format!("read {}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| StageError::msg(format!("{}: not JSON ({e})", path.display())))
}

/// A judged row: task type and, when scored, the score per system.
struct JudgedRow {
    task: String,
    scores: Option<BTreeMap<String, f64>>,
}

struct Judgments {
    systems: Vec<String>,
    rows: Vec<JudgedRow>,
}

fn read_judgments(path: &Path) -> Result<Judgments, StageError> {
    let v = read_json(path)?;
    let bad = || {
        StageError::msg(format!(
            "{}: not a judge stage's judgments.json (a list of rows with `scores` and `status`)",
            path.display()
        ))
    };
    let items = v.as_array().ok_or_else(bad)?;
    let mut systems: Vec<String> = Vec::new();
    let mut rows = Vec::new();
    for item in items {
        let scores = item["scores"].as_object().ok_or_else(bad)?;
        for k in scores.keys() {
            if !systems.contains(k) {
                systems.push(k.clone());
            }
        }
        let task = item["type"].as_str().unwrap_or("unknown").to_string();
        let scored = item["status"].as_str() == Some("scored");
        let scores = if scored {
            Some(
                scores
                    .iter()
                    .map(|(k, v)| v.as_f64().map(|x| (k.clone(), x)))
                    .collect::<Option<_>>()
                    .ok_or_else(bad)?,
            )
        } else {
            None
        };
        rows.push(JudgedRow { task, scores });
    }
    Ok(Judgments { systems, rows })
}

struct SystemSummary {
    name: String,
    mean: f64,
    ci: (f64, f64),
    ratio: Option<(f64, (f64, f64))>,
}

struct JudgeSummary {
    rows: usize,
    scored: usize,
    reference: Option<String>,
    systems: Vec<SystemSummary>,
    /// Task type → (rows, mean per system).
    by_type: BTreeMap<String, (usize, Vec<f64>)>,
}

impl JudgeSummary {
    fn to_json(&self) -> Value {
        json!({
            "rows": self.rows,
            "scored": self.scored,
            "reference": self.reference,
            "systems": self.systems.iter().map(|s| json!({
                "name": s.name, "mean": s.mean, "ci": [s.ci.0, s.ci.1],
                "ratio": s.ratio.map(|(r, (lo, hi))| json!({"value": r, "ci": [lo, hi]})),
            })).collect::<Vec<_>>(),
            "by_type": self.by_type.iter().map(|(t, (n, means))| (t.clone(), json!({
                "rows": n,
                "means": self.systems.iter().zip(means).map(|(s, m)| (s.name.clone(), json!(m))).collect::<serde_json::Map<_, _>>(),
            }))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// numpy's default percentile: linear interpolation between the closest ranks.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

fn judge_summary(j: &Judgments, p: &ReportParams) -> Result<JudgeSummary, StageError> {
    if let Some(r) = &p.reference
        && !j.systems.contains(r)
    {
        return Err(StageError::msg(format!(
            "`reference: {r}` is not a judged system ({}): name one of them",
            j.systems.join(", ")
        )));
    }
    let scored: Vec<&BTreeMap<String, f64>> = j.rows.iter().filter_map(|r| r.scores.as_ref()).collect();
    if scored.is_empty() {
        return Err(StageError::msg("the judge scored no row: nothing to report"));
    }
    let k = j.systems.len();
    // scores[s][i]: system s on scored row i.
    let scores: Vec<Vec<f64>> = j.systems.iter().map(|s| scored.iter().map(|r| r[s]).collect()).collect();
    let means: Vec<f64> = scores.iter().map(|v| mean(v.iter().copied())).collect();
    let ref_idx = p.reference.as_ref().and_then(|r| j.systems.iter().position(|s| s == r));
    let n = scored.len();
    let mut rng = SplitMix64::new(p.seed);
    let mut boot_means: Vec<Vec<f64>> = vec![Vec::with_capacity(p.bootstrap); k];
    let mut boot_ratios: Vec<Vec<f64>> = vec![Vec::with_capacity(p.bootstrap); k];
    let mut sums = vec![0.0; k];
    for _ in 0..p.bootstrap {
        sums.iter_mut().for_each(|s| *s = 0.0);
        for _ in 0..n {
            let i = rng.below_rejection(n as u64) as usize;
            for s in 0..k {
                sums[s] += scores[s][i];
            }
        }
        for s in 0..k {
            boot_means[s].push(sums[s] / n as f64);
            if let Some(r) = ref_idx {
                boot_ratios[s].push(sums[s] / sums[r]);
            }
        }
    }
    let lo_q = (1.0 - p.confidence) / 2.0;
    let interval = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (quantile(v, lo_q), quantile(v, 1.0 - lo_q))
    };
    let mut systems = Vec::with_capacity(k);
    for s in 0..k {
        let ci = interval(&mut boot_means[s]);
        let ratio = ref_idx.map(|r| (means[s] / means[r], interval(&mut boot_ratios[s])));
        systems.push(SystemSummary { name: j.systems[s].clone(), mean: means[s], ci, ratio });
    }
    let mut by_type: BTreeMap<String, (usize, Vec<f64>)> = BTreeMap::new();
    let mut types: BTreeMap<&str, Vec<&BTreeMap<String, f64>>> = BTreeMap::new();
    for r in &j.rows {
        if let Some(s) = &r.scores {
            types.entry(&r.task).or_default().push(s);
        }
    }
    for (t, rows) in types {
        let m = j.systems.iter().map(|s| mean(rows.iter().map(|r| r[s]))).collect();
        by_type.insert(t.to_string(), (rows.len(), m));
    }
    Ok(JudgeSummary { rows: j.rows.len(), scored: n, reference: p.reference.clone(), systems, by_type })
}

fn judge_markdown(s: &JudgeSummary, p: &ReportParams) -> String {
    let pct = p.confidence * 100.0;
    let mut md = format!(
        "## Judge scores\n\n{} of {} rows scored (unparsed and failed rows are left out for every system). \
         Intervals: {pct:.0} % percentile bootstrap, {} resamples, seed {}.\n\n",
        s.scored, s.rows, p.bootstrap, p.seed
    );
    match &s.reference {
        Some(r) => {
            md.push_str(&format!(
                "| system | mean (1-10) | {pct:.0} % CI | relative to {r} | {pct:.0} % CI |\n"
            ));
            md.push_str("|---|---:|---:|---:|---:|\n");
        }
        None => {
            md.push_str(&format!("| system | mean (1-10) | {pct:.0} % CI |\n|---|---:|---:|\n"));
        }
    }
    for x in &s.systems {
        md.push_str(&format!("| {} | {:.2} | {:.2}–{:.2} |", x.name, x.mean, x.ci.0, x.ci.1));
        if let Some((r, (lo, hi))) = x.ratio {
            md.push_str(&format!(" {:.1} % | {:.1}–{:.1} % |", r * 100.0, lo * 100.0, hi * 100.0));
        }
        md.push('\n');
    }
    md.push_str("\n### By task type\n\n| task type | rows |");
    for x in &s.systems {
        md.push_str(&format!(" {} |", x.name));
    }
    md.push_str("\n|---|---:|");
    md.push_str(&"---:|".repeat(s.systems.len()));
    md.push('\n');
    for (t, (n, means)) in &s.by_type {
        md.push_str(&format!("| {t} | {n} |"));
        for m in means {
            md.push_str(&format!(" {m:.2} |"));
        }
        md.push('\n');
    }
    md.push('\n');
    md
}

fn metrics_markdown(m: &Value, path: &Path) -> Result<String, StageError> {
    let systems = m["systems"].as_object().ok_or_else(|| {
        StageError::msg(format!("{}: not a metrics stage's metrics.json (no `systems`)", path.display()))
    })?;
    let reference = m["reference"].as_str().unwrap_or("?");
    let f = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.4}"));
    let b = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.2}"));
    let mut md = format!(
        "## Offline metrics against `{reference}`\n\n{} rows. ROUGE-L: F-measure (rouge-score); BLEU: sacrebleu corpus \
         BLEU (0-100), and the mean of sentence BLEU; token F1: SQuAD's.\n\n\
         | system | ROUGE-L | BLEU | sentence BLEU | token F1 |\n|---|---:|---:|---:|---:|\n",
        m["rows"]
    );
    for (name, s) in systems {
        let o = &s["overall"];
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            f(&o["rouge_l"]),
            b(&o["bleu"]),
            b(&o["sentence_bleu"]),
            f(&o["token_f1"])
        ));
    }
    // Systems scored on mostly empty answers (metrics.json of version 2 counts them).
    let rows = m["rows"].as_u64().unwrap_or(0);
    let mostly = |b: &Value| b.as_u64().filter(|&b| b > 0 && 2 * b >= rows);
    let mut empty: Vec<String> = Vec::new();
    if let Some(b) = mostly(&m["reference_empty_answers"]) {
        empty.push(format!(
            "the reference `{reference}`: {} answers empty",
            crate::data::blank_count(b as usize, rows as usize)
        ));
    }
    for (name, s) in systems {
        if let Some(b) = mostly(&s["empty_answers"]) {
            empty.push(format!(
                "`{name}`: {} answers empty",
                crate::data::blank_count(b as usize, rows as usize)
            ));
        }
    }
    if !empty.is_empty() {
        md.push_str(&format!(
            "\n**Warning: empty answers.** {}. Those scores are of empty answers, which usually means a wrong \
             `input` or `column` in the metrics stage's `systems`.\n",
            empty.join("; ")
        ));
    }
    md.push_str("\n### ROUGE-L by task type\n\n| task type | rows |");
    for name in systems.keys() {
        md.push_str(&format!(" {name} |"));
    }
    md.push_str("\n|---|---:|");
    md.push_str(&"---:|".repeat(systems.len()));
    md.push('\n');
    let mut types: BTreeMap<String, u64> = BTreeMap::new();
    for s in systems.values() {
        for (t, v) in s["by_type"].as_object().into_iter().flatten() {
            types.insert(t.clone(), v["rows"].as_u64().unwrap_or(0));
        }
    }
    for (t, n) in types {
        md.push_str(&format!("| {t} | {n} |"));
        for s in systems.values() {
            md.push_str(&format!(" {} |", f(&s["by_type"][&t]["rouge_l"])));
        }
        md.push('\n');
    }
    Ok(md)
}

struct Bar {
    label: String,
    value: f64,
    ci: Option<(f64, f64)>,
}

/// A vertical bar chart with optional interval whiskers, as SVG text. plotters' SVG backend writes
/// text as `<text>` elements and, without its `ttf` feature, estimates text sizes itself: no
/// system font is read.
fn bar_chart(title: &str, bars: &[Bar]) -> Result<String, StageError> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let err = |e: &dyn std::fmt::Display| StageError::msg(format!("failed to draw the chart: {e}"));
    let top = bars.iter().map(|b| b.ci.map_or(b.value, |c| c.1).max(b.value)).fold(0.0f64, f64::max);
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    // One segment per bar: an integer range 0..k has k + 1 points, the segmented coordinate one
    // segment per point plus `Last`. (A single bar keeps an empty second segment.)
    let last = bars.len().saturating_sub(1).max(1);
    let decimals = (1.0 - y_max.log10().floor()).max(0.0) as usize;
    let mut svg = String::new();
    {
        let width = (160 + 110 * bars.len().max(1)) as u32;
        let root = SVGBackend::with_string(&mut svg, (width, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d((0..last).into_segmented(), 0.0..y_max)
            .map_err(|e| err(&e))?;
        let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(bars.len().max(1))
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|y| format!("{y:.decimals$}"))
            .draw()
            .map_err(|e| err(&e))?;
        let colour = RGBColor(76, 114, 176);
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let mut r = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (if i + 1 > last { SegmentValue::Last } else { SegmentValue::Exact(i + 1) }, b.value),
                    ],
                    colour.filled(),
                );
                r.set_margin(0, 0, 18, 18);
                r
            }))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                b.ci.map(|(lo, hi)| {
                    PathElement::new(
                        vec![(SegmentValue::CenterOf(i), lo), (SegmentValue::CenterOf(i), hi)],
                        BLACK.stroke_width(2),
                    )
                })
            }))
            .map_err(|e| err(&e))?;
        // Caps, 12 px wide, at both ends of each whisker.
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| b.ci.map(|c| (i, c))).flat_map(
                |(i, (lo, hi))| {
                    [lo, hi].map(|y| {
                        EmptyElement::at((SegmentValue::CenterOf(i), y))
                            + PathElement::new(vec![(-6, 0), (6, 0)], BLACK.stroke_width(2))
                    })
                },
            ))
            .map_err(|e| err(&e))?;
        // Each value above its bar and its whisker, never struck through by it.
        chart
            .draw_series(bars.iter().enumerate().map(|(i, b)| {
                let style =
                    ("sans-serif", 12).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Bottom));
                let top = b.ci.map_or(b.value, |c| c.1.max(b.value));
                EmptyElement::at((SegmentValue::CenterOf(i), top))
                    + Text::new(format!("{:.2}", b.value), (0, -4), style)
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert!((quantile(&v, 0.975) - 3.925).abs() < 1e-12);
    }

    #[test]
    fn charts_of_one_to_five_bars_draw() {
        for n in 1..=5 {
            let bars: Vec<Bar> =
                (0..n).map(|i| Bar { label: format!("s{i}"), value: 0.1 * i as f64, ci: None }).collect();
            let svg = bar_chart("t", &bars).unwrap();
            assert_eq!(svg.matches("<rect").count(), 1 + n, "{svg}");
        }
    }

    #[test]
    fn the_chart_is_an_svg_with_labels() {
        let svg = bar_chart(
            "t",
            &[
                Bar { label: "camel".into(), value: 7.0, ci: Some((6.5, 7.5)) },
                Bar { label: "gpt-3.5".into(), value: 8.0, ci: None },
            ],
        )
        .unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("\ncamel\n</text>") && svg.contains("\ngpt-3.5\n</text>"),
            "{svg}"
        );
        // The whisker (7 ± 0.5, with caps) ends below the value's label: the label's baseline
        // y is above (smaller than) every whisker point's.
        if let Ok(path) = std::env::var("CAMEL_TEST_CHART_OUT") {
            std::fs::write(path, &svg).unwrap();
        }
        let label_y = text_y(&svg, "7.00");
        let whisker_top = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains("stroke-width=\"2\""))
            .flat_map(|l| l.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split(' '))
            .filter_map(|p| p.split(',').nth(1)?.parse::<f64>().ok())
            .fold(f64::INFINITY, f64::min);
        assert!(
            whisker_top.is_finite() && label_y < whisker_top,
            "label at {label_y}, whisker up to {whisker_top}: {svg}"
        );
    }

    /// The y of the `<text>` element whose content is `content`.
    fn text_y(svg: &str, content: &str) -> f64 {
        let i = svg.find(&format!("\n{content}\n</text>")).unwrap();
        let start = svg[..i].rfind("<text").unwrap();
        let y = svg[start..i].split(" y=\"").nth(1).unwrap().split('"').next().unwrap();
        y.parse().unwrap()
    }

    #[test]
    fn a_caveat_keeps_the_params_hash_when_absent() {
        let p: ReportParams = serde_yaml::from_str("title: t").unwrap();
        let v = serde_json::to_value(&p).unwrap();
        assert!(v.get("caveat").is_none(), "{v}");
        let p: ReportParams = serde_yaml::from_str("{title: t, caveat: tiny}").unwrap();
        assert_eq!(p.caveat.as_deref(), Some("tiny"));
    }

    #[test]
    fn summary_maps_means_ratios_and_types() {
        let row = |t: &str, a: f64, b: f64| JudgedRow {
            task: t.into(),
            scores: Some([("a".to_string(), a), ("b".to_string(), b)].into()),
        };
        let j = Judgments {
            systems: vec!["a".into(), "b".into()],
            rows: vec![row("x", 4.0, 8.0), row("y", 6.0, 8.0), JudgedRow { task: "x".into(), scores: None }],
        };
        let p = ReportParams {
            reference: Some("b".into()),
            bootstrap: 200,
            confidence: 0.95,
            seed: 1,
            title: "t".into(),
            caveat: None,
        };
        let s = judge_summary(&j, &p).unwrap();
        assert_eq!((s.rows, s.scored), (3, 2));
        assert_eq!(s.systems[0].mean, 5.0);
        assert_eq!(s.systems[0].ratio.unwrap().0, 5.0 / 8.0);
        let (lo, hi) = s.systems[0].ci;
        assert!((4.0..=5.0).contains(&lo) && (5.0..=6.0).contains(&hi));
        assert_eq!(s.by_type["x"], (1, vec![4.0, 8.0]));
    }
}
