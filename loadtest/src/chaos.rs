//! The fault summary of `run-local.sh --only chaos`: one `server-publish --resume` run
//! per fault, each with a fault record written by the script (what was done, when it
//! started, when the faulty part was back). From a run's timeline and its
//! message-by-message accounting: what was lost, duplicated and reordered, what the
//! publishers were told, and how long deliveries and publishes stalled.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::report::{Report, Tick};

/// What the script did, as it wrote it down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// e.g. `nats-kill`.
    pub fault: String,
    /// What was done, for the table.
    pub what: String,
    /// When the fault began and when the part was back (restarted, resumed), Unix ms.
    pub start_ms: u64,
    pub end_ms: u64,
}

/// One row of the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub fault: String,
    pub what: String,
    pub subscribers: u64,
    pub published: u64,
    pub acked: u64,
    /// Publishes whose publisher was told they failed (error or timeout).
    pub refused: u64,
    pub publish_errors: std::collections::BTreeMap<String, u64>,
    /// Acknowledged publishes missing at a receiver (receiver × message).
    pub lost: u64,
    pub lost_exact: bool,
    pub duplicates: u64,
    pub reordered: u64,
    /// Deliveries of refused publishes.
    pub refused_delivered: u64,
    pub drops: u64,
    pub resumes: u64,
    pub recovered: u64,
    /// How long the faulty part was down (start to back).
    pub fault_ms: u64,
    /// The longest time without a new delivery, and without a new acknowledgement, from
    /// the fault on.
    pub delivery_stall_ms: u64,
    pub publish_stall_ms: u64,
    /// From the fault's start to the end of the later of the two stalls: service as
    /// before (0 when neither stalled for more than a second).
    pub recovery_ms: u64,
}

/// The longest interval without growth of `f` in ticks from `from_ms` on: (length, end).
fn longest_stall(ticks: &[Tick], from_ms: u64, f: impl Fn(&Tick) -> u64) -> (u64, u64) {
    let mut best = (0, 0);
    let mut last_change: Option<(u64, u64)> = None; // (time, value)
    for t in ticks {
        match last_change {
            None => last_change = Some((t.t_ms, f(t))),
            Some((since, v)) if f(t) > v => {
                // Only stalls that reach past the fault's start count.
                if t.t_ms >= from_ms && t.t_ms - since > best.0 {
                    best = (t.t_ms - since, t.t_ms);
                }
                last_change = Some((t.t_ms, f(t)));
            }
            Some(_) => {}
        }
    }
    best
}

pub fn outcome(r: &Report, f: &Fault) -> Outcome {
    let d = r.delivery.clone().unwrap_or_default();
    let res = r.resume.clone().unwrap_or_default();
    // Only while publishing went on: after it, nothing new is owed.
    let publishing_until =
        r.timeline.windows(2).filter(|w| w[1].sent > w[0].sent).map(|w| w[1].t_ms).max().unwrap_or(u64::MAX);
    let ticks: Vec<Tick> = r.timeline.iter().copied().filter(|t| t.t_ms <= publishing_until).collect();
    let (dstall, dend) = longest_stall(&ticks, f.start_ms, |t| t.delivered);
    let (pstall, pend) = longest_stall(&ticks, f.start_ms, |t| t.acked);
    let ends = [(dstall, dend), (pstall, pend)];
    let recovery_ms = ends
        .iter()
        .filter(|(len, _)| *len > 1000)
        .map(|(_, end)| end.saturating_sub(f.start_ms))
        .max()
        .unwrap_or(0);
    Outcome {
        fault: f.fault.clone(),
        what: f.what.clone(),
        subscribers: r.conns.connected,
        published: d.published,
        acked: d.acked,
        refused: d.published.saturating_sub(d.acked),
        publish_errors: d.publish_errors.clone(),
        lost: d.lost,
        lost_exact: d.lost_exact,
        duplicates: d.duplicates,
        reordered: d.reordered,
        refused_delivered: d.refused_delivered,
        drops: res.drops,
        resumes: res.resumes,
        recovered: res.recovered,
        fault_ms: f.end_ms.saturating_sub(f.start_ms),
        delivery_stall_ms: dstall,
        publish_stall_ms: pstall,
        recovery_ms,
    }
}

pub fn markdown(rows: &[Outcome]) -> String {
    let mut s = String::from(
        "| fault | down (s) | published | acked | refused | lost | dup | reordered | refused yet delivered | resumes (recovered) | delivery stall (s) | publish stall (s) | recovered after (s) |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for o in rows {
        s.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {}{} | {} | {} | {} | {} ({}) | {:.1} | {:.1} | {:.1} |\n",
            o.what,
            o.fault_ms as f64 / 1e3,
            o.published,
            o.acked,
            o.refused,
            o.lost,
            if o.lost_exact { "" } else { " (totals)" },
            o.duplicates,
            o.reordered,
            o.refused_delivered,
            o.resumes,
            o.recovered,
            o.delivery_stall_ms as f64 / 1e3,
            o.publish_stall_ms as f64 / 1e3,
            o.recovery_ms as f64 / 1e3,
        ));
    }
    s
}

/// Deliveries and acknowledgements per second around the fault, the fault shaded.
pub fn plot(path: &Path, r: &Report, f: &Fault) -> anyhow::Result<()> {
    let ticks = &r.timeline;
    anyhow::ensure!(ticks.len() >= 2, "no timeline in the run");
    let t0 = ticks[0].t_ms;
    let rate = |g: &dyn Fn(&Tick) -> u64| -> Vec<(f64, f64)> {
        ticks
            .windows(2)
            .map(|w| {
                let dt = (w[1].t_ms - w[0].t_ms).max(1) as f64 / 1e3;
                ((w[1].t_ms - t0) as f64 / 1e3, g(&w[1]).saturating_sub(g(&w[0])) as f64 / dt)
            })
            .collect()
    };
    let delivered = rate(&|t| t.delivered);
    let acked = rate(&|t| t.acked);
    let x_max = (ticks[ticks.len() - 1].t_ms - t0) as f64 / 1e3;
    let y_max = delivered.iter().chain(&acked).map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let root = SVGBackend::new(path, (960, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{} ({} subscribers)", f.what, r.conns.connected), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, (1f64..y_max).log_scale())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second (log)")
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let fs = f.start_ms.saturating_sub(t0) as f64 / 1e3;
    let fe = f.end_ms.saturating_sub(t0) as f64 / 1e3;
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(fs, 1.0), (fe.max(fs + 0.1), y_max)],
            RED.mix(0.15).filled(),
        )))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("fault")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], RED.mix(0.3).filled()));
    let blue = RGBColor(0x1f, 0x77, 0xb4);
    let green = RGBColor(0x2c, 0xa0, 0x2c);
    chart
        .draw_series(LineSeries::new(
            delivered.into_iter().map(|(x, y)| (x, y.max(1.0))),
            blue.stroke_width(2),
        ))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("deliveries/s")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(acked.into_iter().map(|(x, y)| (x, y.max(1.0))), green.stroke_width(2)))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .label("acknowledged publishes/s")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

/// `run.json:fault.json` pairs → rows, written as JSON and Markdown, one plot per fault.
pub fn summarize(
    cases: &[String],
    json: Option<&Path>,
    md: Option<&Path>,
    plots: Option<&Path>,
) -> anyhow::Result<String> {
    let mut rows = Vec::new();
    for c in cases {
        let (run, fault) =
            c.split_once(':').ok_or_else(|| anyhow::anyhow!("expected RUN.json:FAULT.json, got {c}"))?;
        let r: Report = serde_json::from_str(&std::fs::read_to_string(run)?)?;
        let f: Fault = serde_json::from_str(&std::fs::read_to_string(fault)?)?;
        if let Some(dir) = plots {
            let p: PathBuf = dir.join(format!("chaos-{}.svg", f.fault));
            if let Err(e) = plot(&p, &r, &f) {
                eprintln!("no plot for {}: {e}", f.fault);
            }
        }
        rows.push(outcome(&r, &f));
    }
    let table = markdown(&rows);
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)?;
    }
    if let Some(p) = md {
        std::fs::write(p, &table)?;
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(t_ms: u64, delivered: u64, acked: u64) -> Tick {
        Tick { t_ms, delivered, acked, sent: acked, connected: 1 }
    }

    #[test]
    fn finds_the_stall_that_follows_the_fault() {
        // Deliveries every 250 ms, then nothing from 1000 to 4000 (the fault at 1100).
        let ticks = [
            tick(0, 0, 0),
            tick(250, 10, 1),
            tick(500, 20, 2),
            tick(1000, 30, 3),
            tick(2000, 30, 3),
            tick(4000, 40, 4),
            tick(4250, 50, 5),
        ];
        assert_eq!(longest_stall(&ticks, 1100, |t| t.delivered), (3000, 4000));
        // A stall that ended before the fault does not count.
        assert_eq!(longest_stall(&ticks, 4200, |t| t.delivered), (250, 4250));
        let r = Report {
            timeline: ticks.to_vec(),
            delivery: Some(crate::report::Delivery { published: 7, acked: 5, ..Default::default() }),
            ..Default::default()
        };
        let f = Fault { fault: "x".into(), what: "x".into(), start_ms: 1100, end_ms: 2100 };
        let o = outcome(&r, &f);
        assert_eq!(o.recovery_ms, 2900);
        assert_eq!(o.refused, 2);
        assert_eq!(o.fault_ms, 1000);
        assert!(markdown(&[o]).contains("| x | 1.0 | 7 | 5 | 2 |"));
    }

    #[test]
    fn tells_lost_from_refused_message_by_message() {
        use crate::shard::{Seen, ShardResult};
        // Publisher 0 sent 0..5; 2 was refused (the publisher was told). Two receivers:
        // one got 0,1,2,4 (3 missing: lost), the other 0,1,3 and stopped (4 missing).
        let mut ps = crate::pubs::PubResult::default();
        ps.ledger.insert((0, 0), (5, vec![0, 1, 3, 4]));
        let res = ShardResult {
            room_receivers: vec![2],
            room_unique: vec![7],
            seen: vec![
                Seen { room: 0, publisher: 0, high: 5, holes: vec![3], subscribers: 1 },
                Seen { room: 0, publisher: 0, high: 4, holes: vec![2], subscribers: 1 },
            ],
            ..Default::default()
        };
        // Lost: 3 at the first, 4 at the second. The refused 2 reached the first.
        assert_eq!(crate::scenario::ledger_loss(&res, &ps), Some((2, 1)));
        // A receiver that saw nothing of the publisher misses all of it.
        let res = ShardResult { room_receivers: vec![3], room_unique: vec![7], ..res };
        assert_eq!(crate::scenario::ledger_loss(&res, &ps), Some((6, 1)));
    }
}
