//! Latency percentile plots (SVG only: no fonts or system libraries needed).
//! The x axis is spread as −log10(1 − q), so 90%, 99%, 99.9% and 99.99% are equidistant.

use std::path::Path;

use plotters::prelude::*;

use crate::report::Report;
use crate::stats::Pcts;

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn x_of(q: f64) -> f64 {
    -(1.0 - q).max(1e-4).log10()
}

/// Draws one line per series: (label, distribution in µs).
pub fn percentiles(path: &Path, title: &str, series: &[(String, &Pcts)]) -> anyhow::Result<()> {
    let vals: Vec<f64> =
        series.iter().flat_map(|(_, p)| p.points.iter().map(|&(_, v)| v as f64 / 1000.0)).collect();
    anyhow::ensure!(!vals.is_empty(), "nothing to plot: no latency samples");
    let lo = vals.iter().copied().fold(f64::MAX, f64::min).max(0.001) * 0.8;
    let hi = vals.iter().copied().fold(0.0, f64::max).max(lo * 10.0) * 1.25;
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..4.0f64, (lo..hi).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "0%".into(),
            1 => "90%".into(),
            2 => "99%".into(),
            3 => "99.9%".into(),
            4 => "99.99%".into(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| if *y >= 10.0 { format!("{y:.0}") } else { format!("{y:.2}") })
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for (i, (label, p)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = p
            .points
            .iter()
            .filter(|(q, _)| *q < 1.0)
            .map(|&(q, v)| (x_of(q), (v as f64 / 1000.0).max(lo)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(format!("{label}: p50 {:.2} ms, p99 {:.2} ms", p.p50 as f64 / 1e3, p.p99 as f64 / 1e3))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// The distribution a report is mostly about, and its name.
pub fn main_latency(r: &Report) -> Option<(&'static str, &Pcts)> {
    if let Some(d) = r.delivery.as_ref().filter(|d| d.latency_us.count > 0) {
        return Some(("delivery latency", &d.latency_us));
    }
    if let Some(v) = &r.revocation {
        return Some(("revocation latency", &v.latency_us));
    }
    if let Some(c) = &r.churn {
        return Some(("handshake latency under churn", &c.latency_us));
    }
    r.handshake.as_ref().map(|h| ("handshake latency", &h.latency_us))
}

/// Plots the main latency of several reports of one scenario side by side.
pub fn reports(path: &Path, reports: &[Report]) -> anyhow::Result<()> {
    let mut series = Vec::new();
    let mut what = "latency";
    for r in reports {
        if let Some((w, p)) = main_latency(r) {
            what = w;
            series.push((r.target.clone(), p));
        }
    }
    let scenario = reports.first().map(|r| r.label.as_str()).unwrap_or("run");
    percentiles(path, &format!("{scenario}: {what}"), &series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Pcts, new_hist};

    #[test]
    fn draws_an_svg() -> anyhow::Result<()> {
        let mut h = new_hist();
        for v in 1..10_000u64 {
            h.record(v * 7)?;
        }
        let p = Pcts::of(&h);
        let dir = std::env::temp_dir().join(format!("loadtest-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let f = dir.join("p.svg");
        percentiles(&f, "test", &[("a".into(), &p), ("b".into(), &p)])?;
        let s = std::fs::read_to_string(&f)?;
        assert!(s.starts_with("<svg") && s.contains("99.9%"), "{}", &s[..200.min(s.len())]);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
