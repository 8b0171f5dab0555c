//! The chart people read at a glance: last-recipient p99 latency against delivered
//! messages per second, one line per system, from the bench's JSON results.

use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ChartArgs {
    /// The bench results (bench/results/latest.json).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the SVG.
    #[arg(long)]
    pub output: PathBuf,
}

pub fn run(args: ChartArgs) -> Result<String, String> {
    let text = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for row in doc["results"].as_array().into_iter().flatten() {
        // The stepped fan-out runs only; the big room is a scenario of its own.
        if row["scenario"] != "fanout" || row["rooms"].as_u64() == Some(1) {
            continue;
        }
        let (Some(system), Some(rate), Some(p99)) = (
            row["system"].as_str(),
            row["deliveries_per_s"].as_f64(),
            row["p99_ms"].as_f64(),
        ) else {
            continue;
        };
        if rate > 0.0 && p99 > 0.0 {
            lines
                .entry(system.to_owned())
                .or_default()
                .push((rate, p99));
        }
    }
    if lines.is_empty() {
        return Err("no fan-out results to draw".into());
    }
    for points in lines.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let max_rate = lines.values().flatten().map(|p| p.0).fold(1.0, f64::max);
    let max_p99 = lines.values().flatten().map(|p| p.1).fold(1.0, f64::max);
    let root = SVGBackend::new(&args.output, (900, 520)).into_drawing_area();
    let draw = |e: DrawingAreaErrorKind<_>| format!("drawing failed: {e:?}");
    root.fill(&WHITE).map_err(draw)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fan-out: p99 latency to the last recipient vs delivered messages/s",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate * 1.05, (0.1..max_p99 * 1.5).log_scale())
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("delivered messages per second")
        .y_desc("p99 latency, ms (log)")
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()
        .map_err(draw)?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (system, points)) in lines.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(draw)?
            .label(system.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(draw)?;
    }
    // The line the targets are read against.
    chart
        .draw_series(LineSeries::new(
            [(0.0, 5.0), (max_rate * 1.05, 5.0)],
            BLACK.mix(0.4).stroke_width(1),
        ))
        .map_err(draw)?
        .label("p99 = 5 ms")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(draw)?;
    root.present().map_err(draw)?;
    Ok(format!("wrote {}", args.output.display()))
}
