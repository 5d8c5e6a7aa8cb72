//! PNG plot of evaluation summaries: delivery ratio and mean latency per policy, grouped by
//! scenario, with 95 % intervals.

use std::path::Path;

use meshrl_eval::stats::Summary;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Places a TrueType font may be; `MESHRL_FONT` first.
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

fn load_font() -> Result<(), String> {
    let candidates: Vec<String> = std::env::var("MESHRL_FONT")
        .into_iter()
        .chain(FONT_PATHS.iter().map(|s| s.to_string()))
        .collect();
    for path in &candidates {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable TrueType font"));
        }
    }
    Err(
        "PNG plots need a TrueType font: install fonts-dejavu-core or point MESHRL_FONT at a .ttf"
            .into(),
    )
}

pub fn write_png(path: &Path, summaries: &[Summary]) -> Result<(), String> {
    load_font()?;
    let mut scenarios: Vec<&str> = Vec::new();
    let mut policies: Vec<&str> = Vec::new();
    for s in summaries {
        if !scenarios.contains(&s.scenario.as_str()) {
            scenarios.push(&s.scenario);
        }
        if !policies.contains(&s.policy.as_str()) {
            policies.push(&s.policy);
        }
    }
    let width = (240 * scenarios.len() as u32).max(640) + 200;
    let root = BitMapBackend::new(path, (width, 800)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(400);
    let groups = scenarios.len() as f64;
    let bar = 0.8 / policies.len().max(1) as f64;
    let max_latency = summaries
        .iter()
        .map(|s| s.latency_mean_ci.high)
        .filter(|x| x.is_finite())
        .fold(1.0, f64::max);
    for (area, title, y_max, metric) in [
        (&top, "delivery ratio (95% CI)", 1.3, 0usize),
        (
            &bottom,
            "mean end-to-end latency of delivered packets, ms (95% CI)",
            max_latency * 1.1,
            1usize,
        ),
    ] {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(10)
            .margin_right(190)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..groups, 0.0..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(scenarios.len() * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.26 {
                    scenarios.get(i).map(|s| s.to_string()).unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(|e| err(&e))?;
        for (p, policy) in policies.iter().enumerate() {
            let color = Palette99::pick(p).to_rgba();
            let mut first = true;
            for s in summaries.iter().filter(|s| s.policy == *policy) {
                let g = scenarios.iter().position(|x| *x == s.scenario).unwrap_or(0) as f64;
                let x0 = g + 0.1 + p as f64 * bar;
                let (value, ci) = if metric == 0 {
                    (s.delivery_ratio, s.delivery_ci)
                } else {
                    (s.latency_mean_ms, s.latency_mean_ci)
                };
                if !value.is_finite() {
                    continue;
                }
                let series = chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + bar * 0.9, value)],
                        color.filled(),
                    )))
                    .map_err(|e| err(&e))?;
                if first && metric == 0 {
                    series.label(*policy).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                    });
                }
                first = false;
                let xm = x0 + bar * 0.45;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(xm, ci.low), (xm, ci.high)],
                        BLACK,
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        if metric == 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .margin(5)
                .legend_area_size(15)
                .border_style(BLACK)
                .background_style(WHITE.mix(0.9))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
