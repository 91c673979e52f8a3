//! Small SVG charts: no chart library, so the dashboard stays small.

use leptos::prelude::*;

/// One line of a chart: (x, y) points with x inside the chart's range.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: &'static str,
    /// CSS class of the line (`s0`, `s1`, … pick the colour).
    pub class: &'static str,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 600.0;
const H: f64 = 150.0;

fn polyline(points: &[(f64, f64)], x0: f64, x1: f64, ymax: f64) -> String {
    let span = (x1 - x0).max(f64::EPSILON);
    let mut out = String::with_capacity(points.len() * 14);
    for (x, y) in points {
        let px = (x - x0) / span * W;
        let py = H - (y / ymax).clamp(0.0, 1.0) * H;
        out.push_str(&format!("{px:.1},{py:.1} "));
    }
    out
}

/// A "nice" axis top at or above `v`: 1, 2 or 5 times a power of ten.
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

/// A line chart with a legend showing each line's newest value. `fixed_max` pins the y axis
/// (100 for percentages); otherwise it follows the data.
#[component]
pub fn LineChart(
    title: &'static str,
    #[prop(into)] series: Signal<Vec<Series>>,
    #[prop(into)] x_range: Signal<(f64, f64)>,
    #[prop(optional)] fixed_max: Option<f64>,
    format: fn(f64) -> String,
    /// Names the chart for tests and styles.
    test_id: &'static str,
) -> impl IntoView {
    let ymax = move || {
        fixed_max.unwrap_or_else(|| {
            nice_max(series.with(|s| {
                s.iter()
                    .flat_map(|s| s.points.iter().map(|p| p.1))
                    .fold(0.0, f64::max)
            }))
        })
    };
    view! {
        <figure class="chart" data-test=test_id>
            <figcaption>
                <span class="chart-title">{title}</span>
                <span class="legend">
                    {move || series.get().into_iter().map(|s| {
                        let last = s.points.last().map(|p| format(p.1)).unwrap_or_else(|| "–".into());
                        view! { <span class=format!("key {}", s.class)><i></i>{s.label}" "<b>{last}</b></span> }
                    }).collect_view()}
                </span>
            </figcaption>
            <div class="chart-body">
                <span class="axis top">{move || format(ymax())}</span>
                <span class="axis bottom">{format(0.0)}</span>
                <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=title>
                    <line x1="0" y1=H / 2.0 x2=W y2=H / 2.0 class="gridline"/>
                    {move || {
                        let (x0, x1) = x_range.get();
                        let m = ymax();
                        series.get().into_iter().map(|s| view! {
                            <polyline class=format!("line {}", s.class) points=polyline(&s.points, x0, x1, m) vector-effect="non-scaling-stroke"/>
                        }).collect_view()
                    }}
                </svg>
            </div>
        </figure>
    }
}

/// A tiny line without axes (the dashboard's per-host CPU).
#[component]
pub fn Sparkline(#[prop(into)] values: Signal<Vec<f64>>, slots: usize, max: f64) -> impl IntoView {
    let points = move || {
        values.with(|v| {
            let start = slots.saturating_sub(v.len()) as f64;
            let pts: Vec<(f64, f64)> = v
                .iter()
                .enumerate()
                .map(|(i, y)| (start + i as f64, *y))
                .collect();
            polyline(&pts, 0.0, (slots.max(2) - 1) as f64, max)
        })
    };
    view! {
        <svg class="spark" viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" data-test="sparkline">
            <polyline class="line s0" points=points vector-effect="non-scaling-stroke"/>
        </svg>
    }
}

/// A percentage; small ones keep a decimal (an axis of 0.5 % must not read 0 %).
pub fn fmt_pct(v: f64) -> String {
    if v != 0.0 && v.abs() < 10.0 {
        format!("{v:.1} %")
    } else {
        format!("{v:.0} %")
    }
}

pub fn fmt_bytes(v: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = v.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v >= 100.0 {
        format!("{v:.0} {}", units[i])
    } else {
        format!("{v:.1} {}", units[i])
    }
}

pub fn fmt_rate(v: f64) -> String {
    format!("{}/s", fmt_bytes(v))
}

pub fn fmt_load(v: f64) -> String {
    format!("{v:.2}")
}
