//! `loss.svg`, the training curve a person looks at first: the loss per optimizer step from
//! `metrics.jsonl` with ticked, labelled axes, the held-out loss where the run evaluated one, and
//! the learning rate in a second panel (the schedule explains most bends in the loss).
//!
//! Drawn with plotters' SVG backend, which writes text as `<text>` elements and, without its
//! `ttf` feature, estimates text sizes itself: no system font is read. The loss axis spans the
//! data with a margin of a tenth of the larger of its range and of its top value, so a flat,
//! noisy run looks flat rather than filling the panel with noise.

use std::ops::Range;

use plotters::prelude::*;

/// The scalars the chart reads from one line of `metrics.jsonl`.
struct Point {
    step: u64,
    loss: Option<f64>,
    lr: Option<f64>,
    eval_loss: Option<f64>,
}

fn points(metrics_jsonl: &str) -> Vec<Point> {
    metrics_jsonl
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some(Point {
                step: v["step"].as_u64()?,
                loss: v["loss"].as_f64().filter(|x| x.is_finite()),
                lr: v["lr"].as_f64().filter(|x| x.is_finite()),
                eval_loss: v["eval_loss"].as_f64().filter(|x| x.is_finite()),
            })
        })
        .collect()
}

/// The loss panel's y range: the data, padded by a tenth of max(range, top value), not below 0.
fn loss_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = 0.1 * (hi - lo).max(hi.abs()).max(1e-6);
    (lo - pad).max(0.0)..hi + pad
}

/// Tick labels with as many decimals as the axis's span needs (3 significant digits of it).
fn decimals(span: f64) -> usize {
    (2.0 - span.abs().max(1e-12).log10().floor()).clamp(0.0, 8.0) as usize
}

/// The chart for `metrics.jsonl`'s text, as SVG text.
pub fn loss_svg(metrics_jsonl: &str) -> String {
    let pts = points(metrics_jsonl);
    let mut svg = String::new();
    if let Err(e) = draw(&pts, &mut svg) {
        // A chart is a convenience: a drawing error never fails a training run.
        svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"80\"><text x=\"20\" y=\"30\">\
             failed to draw the loss chart: {}</text></svg>\n",
            e.to_string().replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    svg
}

/// A polyline through `points` (plotters' `LineSeries` needs a feature the workspace leaves off).
fn line(points: &[(u64, f64)], colour: RGBColor) -> std::iter::Once<PathElement<(u64, f64)>> {
    std::iter::once(PathElement::new(points.to_vec(), colour.stroke_width(2)))
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(pts: &[Point], svg: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(svg, (720, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let train: Vec<(u64, f64)> = pts.iter().filter_map(|p| Some((p.step, p.loss?))).collect();
    if train.is_empty() {
        root.draw(&Text::new("no steps", (20, 30), ("sans-serif", 14).into_font()))?;
        root.present()?;
        return Ok(());
    }
    let eval: Vec<(u64, f64)> = pts.iter().filter_map(|p| Some((p.step, p.eval_loss?))).collect();
    let lr: Vec<(u64, f64)> = pts.iter().filter_map(|p| Some((p.step, p.lr?))).collect();
    let first = train.iter().chain(&eval).map(|p| p.0).min().unwrap_or(1);
    let last = train.iter().chain(&eval).map(|p| p.0).max().unwrap_or(1);
    // From the step before the first, so that a one-step run still has an x span.
    let xs = first.saturating_sub(1)..last.max(first.saturating_sub(1) + 1);
    let ys = loss_range(train.iter().chain(&eval).map(|p| p.1));
    let loss_decimals = decimals(ys.end - ys.start);

    let (top, bottom) = root.split_vertically(360);
    let title = if eval.is_empty() { "training loss" } else { "training and held-out loss" };
    let mut chart = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(xs.clone(), ys)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .y_label_formatter(&|y| format!("{y:.loss_decimals$}"))
        .draw()?;
    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    chart
        .draw_series(line(&train, blue))?
        .label("training loss")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    if !eval.is_empty() {
        chart
            .draw_series(line(&eval, orange))?
            .label("held-out loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2)));
        chart.draw_series(eval.iter().map(|&p| Circle::new(p, 3, orange.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;

    let lr_top = lr.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let lr_top = if lr_top > 0.0 { lr_top * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(&bottom)
        .caption("learning rate", ("sans-serif", 14))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(xs, 0.0..lr_top)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("learning rate")
        .y_labels(4)
        .y_label_formatter(&|y| if *y == 0.0 { "0".into() } else { format!("{y:.1e}") })
        .draw()?;
    chart.draw_series(line(&lr, RGBColor(44, 160, 44)))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim().to_string()))
            .collect()
    }

    #[test]
    fn the_chart_has_labelled_ticked_axes_and_a_learning_rate_panel() {
        let lines: Vec<String> = (1..=20)
            .map(|s| {
                let loss = 6.0 - 0.2 * s as f64;
                let lr = 1e-3 * (s as f64 / 20.0);
                format!(r#"{{"step":{s},"loss":{loss},"lr":{lr},"grad_norm":1.0}}"#)
            })
            .collect();
        let svg = loss_svg(&lines.join("\n"));
        let t = texts(&svg);
        for want in ["training loss", "step", "loss", "learning rate"] {
            assert!(t.iter().any(|x| x == want), "no {want:?} in {t:?}");
        }
        // Ticks on both axes: step numbers, and loss values inside the data's range.
        assert!(t.iter().any(|x| x == "10"), "{t:?}");
        let loss_ticks: Vec<f64> =
            t.iter().filter_map(|x| x.parse::<f64>().ok()).filter(|&v| v > 2.0).collect();
        assert!(loss_ticks.iter().any(|&v| v > 2.0 && v < 6.0), "{t:?}");
        assert!(t.iter().any(|x| x.ends_with("e-4") || x.ends_with("e-3")), "{t:?}");
        assert!(!t.iter().any(|x| x == "held-out loss"), "no eval, no eval legend");
    }

    #[test]
    fn held_out_loss_is_drawn_when_there_is_one() {
        let text = "{\"step\":1,\"loss\":3.0,\"lr\":0.001}\n\
                    {\"step\":2,\"loss\":2.5,\"lr\":0.001,\"eval_loss\":2.8,\"eval_perplexity\":16.4}\n";
        let svg = loss_svg(text);
        assert!(texts(&svg).iter().any(|x| x == "held-out loss"));
        assert!(svg.contains("<circle"), "the eval points are marked");
    }

    #[test]
    fn a_flat_run_is_drawn_flat_and_an_empty_one_says_so() {
        // 2.0 ± 0.01: the axis spans about 1.8..2.2, so the noise is a small part of the panel.
        let r = loss_range([1.99, 2.01, 2.0].into_iter());
        assert!(r.start <= 1.8 && r.end >= 2.2, "{r:?}");
        let r = loss_range([3.0, 1.0].into_iter());
        assert!((r.start - 0.7).abs() < 1e-9 && (r.end - 3.3).abs() < 1e-9, "{r:?}");
        assert!(texts(&loss_svg("")).iter().any(|x| x == "no steps"));
        assert!(texts(&loss_svg("not json\n")).iter().any(|x| x == "no steps"));
    }
}
