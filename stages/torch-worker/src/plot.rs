//! The loss curve as a small self-contained SVG (no plotting dependency): loss per optimizer
//! step from `metrics.jsonl`.

use std::fmt::Write;

pub fn loss_svg(metrics_jsonl: &str) -> String {
    let points: Vec<(f64, f64)> = metrics_jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some((v["step"].as_f64()?, v["loss"].as_f64()?)))
        .collect();
    let (w, h, m) = (640.0, 360.0, 48.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>"
    );
    if points.is_empty() {
        s.push_str("<text x=\"20\" y=\"30\">no steps</text></svg>\n");
        return s;
    }
    let (x0, x1) = (points[0].0, points.last().map_or(1.0, |p| p.0).max(points[0].0 + 1.0));
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max).max(lo + 1e-9);
    let px = |x: f64| m + (x - x0) / (x1 - x0) * (w - 2.0 * m);
    let py = |y: f64| h - m - (y - lo) / (hi - lo) * (h - 2.0 * m);
    let _ = write!(
        s,
        "<line x1=\"{m}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/><line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{b}\" stroke=\"black\"/>",
        b = h - m,
        r = w - m
    );
    let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
    let _ = write!(
        s,
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>",
        path.join(" ")
    );
    let _ = write!(
        s,
        "<text x=\"{m}\" y=\"{t}\">loss {hi:.3}</text><text x=\"{m}\" y=\"{bl}\">{lo:.3}</text>\
         <text x=\"{r}\" y=\"{bl}\" text-anchor=\"end\">step {x1}</text><text x=\"{c}\" y=\"20\" text-anchor=\"middle\">training loss</text></svg>",
        t = m - 6.0,
        bl = h - m + 16.0,
        r = w - m,
        c = w / 2.0
    );
    s.push('\n');
    s
}
