//! Draws the lines written by `bench/run.sh` (`server=… scenario=… rps=… p99_ms=…`) as one SVG:
//! throughput (log scale) above, p99 latency (log scale) below, one group of bars per
//! scenario and one colour per server.
//!
//! usage: authd-bench-plot LINES OUT.svg

use std::{collections::BTreeMap, error::Error, fs};

use plotters::prelude::*;

/// Scenarios in the order they are drawn; others are skipped.
const SCENARIOS: [&str; 6] = [
    "me",
    "login",
    "register",
    "refresh",
    "mixed_me",
    "mixed_login",
];
const COLOURS: [RGBColor; 6] = [
    RGBColor(0x44, 0x72, 0xc4),
    RGBColor(0xed, 0x7d, 0x31),
    RGBColor(0x70, 0xad, 0x47),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xa5, 0x1c, 0x30),
    RGBColor(0x5b, 0x9b, 0xd5),
];

#[derive(Clone, Copy)]
struct Figure {
    rps: f64,
    p99_ms: f64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, lines, out] = &args[..] else {
        return Err("usage: authd-bench-plot LINES OUT.svg".into());
    };
    // server -> scenario -> figure, servers in order of first appearance
    let mut servers: Vec<String> = Vec::new();
    let mut figures: BTreeMap<(String, String), Figure> = BTreeMap::new();
    for line in fs::read_to_string(lines)?.lines() {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let (Some(server), Some(scenario), Some(rps), Some(p99)) = (
            fields.get("server"),
            fields.get("scenario"),
            fields.get("rps").and_then(|v| v.parse().ok()),
            fields.get("p99_ms").and_then(|v| v.parse().ok()),
        ) else {
            continue;
        };
        // The hello-world ceiling is measured several times in a run: one series, its best.
        let server = if server.starts_with("hello") {
            "hello-world"
        } else {
            server
        };
        if !servers.iter().any(|s| s == server) {
            servers.push(server.to_string());
        }
        let figure = Figure { rps, p99_ms: p99 };
        figures
            .entry((server.to_string(), scenario.to_string()))
            .and_modify(|kept| {
                if figure.rps > kept.rps {
                    *kept = figure;
                }
            })
            .or_insert(figure);
    }
    let scenarios: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|sc| {
            servers
                .iter()
                .any(|s| figures.contains_key(&(s.clone(), sc.to_string())))
        })
        .collect();
    if scenarios.is_empty() {
        return Err("no scenario lines found".into());
    }

    let root = SVGBackend::new(out, (1100, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    panel(
        &top,
        "throughput, req/s (log scale; higher is better)",
        &servers,
        &scenarios,
        &figures,
        |f| f.rps,
    )?;
    panel(
        &bottom,
        "p99 latency, ms (log scale; lower is better)",
        &servers,
        &scenarios,
        &figures,
        |f| f.p99_ms,
    )?;
    root.present()?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    servers: &[String],
    scenarios: &[&str],
    figures: &BTreeMap<(String, String), Figure>,
    value: impl Fn(&Figure) -> f64,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let values: Vec<f64> = figures.values().map(&value).filter(|v| *v > 0.0).collect();
    // A decade of headroom above the tallest bar keeps the legend clear of the bars.
    let max = values.iter().cloned().fold(1.0, f64::max) * 20.0;
    let min = values.iter().cloned().fold(max, f64::min).min(1.0) / 2.0;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..scenarios.len() as f64, (min..max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(scenarios.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 1e-6 && i < scenarios.len() {
                scenarios[i].to_string()
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    let width = 0.8 / servers.len() as f64;
    for (k, server) in servers.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let bars = scenarios.iter().enumerate().filter_map(|(i, sc)| {
            let figure = figures.get(&(server.clone(), sc.to_string()))?;
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Some(Rectangle::new(
                [(x0, min), (x0 + width * 0.9, value(figure).max(min))],
                colour.filled(),
            ))
        });
        let labels = scenarios.iter().enumerate().filter_map(|(i, sc)| {
            let figure = figures.get(&(server.clone(), sc.to_string()))?;
            let x0 = i as f64 + 0.1 + k as f64 * width;
            Some(Text::new(
                short(value(figure)),
                (x0, value(figure).max(min) * 1.15),
                ("sans-serif", 11),
            ))
        });
        chart.draw_series(labels)?;
        chart
            .draw_series(bars)?
            .label(server.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// A figure in at most four characters or so: 91k, 3.0k, 47, 0.61.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
