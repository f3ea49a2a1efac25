//! Output files: the latency histogram as HdrHistogram percentile text
//! (`--hdr-out`, loadable by HdrHistogram's plotter), the per-second
//! timeline as CSV (`--csv`), and an SVG with the latency distribution and
//! the throughput timeline (`--plot`), drawn by hand.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use hdrhistogram::Histogram;

use crate::report::{Report, Second};

/// The `.hgrm` percentile distribution, values in milliseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 {
                format!("{:>14.2}", 1.0 / (1.0 - q))
            } else {
                format!("{:>14}", "")
            };
            let _ = writeln!(
                o,
                "{:>12.3} {:>14.12} {:>10} {}",
                v.value_iterated_to() as f64 / 1000.0,
                q,
                h.count_between(0, v.value_iterated_to()),
                inv
            );
        }
    }
    let _ = writeln!(
        o,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        o,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        o,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        h.distinct_values()
    );
    o
}

pub fn write_hgrm(path: &Path, h: &Histogram<u64>) -> io::Result<()> {
    std::fs::write(path, hgrm(h))
}

pub fn csv(timeline: &[Second]) -> String {
    let mut o = String::from(
        "t_s,phase,open,sent_per_s,received_per_s,acked_per_s,p50_us,p99_us,max_us,errors,cpu_percent\n",
    );
    for s in timeline {
        let _ = writeln!(
            o,
            "{},{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.phase.replace(' ', "_"),
            s.open,
            s.sent_per_s,
            s.received_per_s,
            s.acked_per_s,
            s.p50_us,
            s.p99_us,
            s.max_us,
            s.errors,
            s.cpu_percent
        );
    }
    o
}

pub fn write_csv(path: &Path, timeline: &[Second]) -> io::Result<()> {
    std::fs::write(path, csv(timeline))
}

const W: f64 = 1150.0;
const H: f64 = 420.0;
const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 300.0;
const TOP: f64 = 60.0;

/// Chooses a "nice" axis maximum at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn axes(o: &mut String, x0: f64, title: &str, xlabel: &str, ylabel: &str) {
    let _ = writeln!(
        o,
        r##"<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="#fafafa" stroke="#888"/>"##
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="15">{}</text>"##,
        x0 + PANEL_W / 2.0,
        TOP - 12.0,
        esc(title)
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="12">{}</text>"##,
        x0 + PANEL_W / 2.0,
        TOP + PANEL_H + 38.0,
        esc(xlabel)
    );
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" text-anchor="middle" font-size="12" transform="rotate(-90 {} {})">{}</text>"##,
        x0 - 48.0,
        TOP + PANEL_H / 2.0,
        x0 - 48.0,
        TOP + PANEL_H / 2.0,
        esc(ylabel)
    );
}

fn y_ticks(o: &mut String, x0: f64, max: f64, fmt: impl Fn(f64) -> String) {
    for k in 0..=5 {
        let v = max * k as f64 / 5.0;
        let y = TOP + PANEL_H - PANEL_H * k as f64 / 5.0;
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
            x0 + PANEL_W,
            x0 - 4.0,
            y + 4.0,
            fmt(v)
        );
    }
}

fn polyline(o: &mut String, pts: &[(f64, f64)], color: &str, dash: &str) {
    if pts.is_empty() {
        return;
    }
    let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
    let _ = writeln!(
        o,
        r##"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}" points="{}"/>"##,
        d.join(" ")
    );
}

/// The plot: latency by percentile (log "nines" axis) and msgs/s over time.
pub fn svg(report: &Report, h: &Histogram<u64>) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">"##
    );
    let _ = writeln!(o, r##"<rect width="{W}" height="{H}" fill="white"/>"##);
    let _ = writeln!(
        o,
        r##"<text x="{}" y="22" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"##,
        W / 2.0,
        esc(&format!(
            "vane-loadgen {} against {} (MQTT {}, QoS {})",
            report.scenario, report.broker, report.mqtt, report.publish.qos
        ))
    );

    // Latency by percentile: x = log10(1/(1-q)), up to 99.999%.
    let x0 = 80.0;
    axes(
        &mut o,
        x0,
        "End-to-end latency by percentile",
        "percentile",
        "latency (ms)",
    );
    let max_nines = 5.0;
    let ymax = nice_max(h.max() as f64 / 1000.0);
    y_ticks(&mut o, x0, ymax, |v| format!("{v:.2}"));
    for (n, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let x = x0 + PANEL_W * n as f64 / max_nines;
        let _ = writeln!(
            o,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{label}</text>"##,
            TOP + PANEL_H + 16.0
        );
    }
    if !h.is_empty() {
        let mut pts = Vec::new();
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to().min(1.0 - 1e-5);
            let nines = (1.0 / (1.0 - q)).log10().min(max_nines);
            let ms = v.value_iterated_to() as f64 / 1000.0;
            pts.push((
                x0 + PANEL_W * nines / max_nines,
                TOP + PANEL_H - PANEL_H * ms / ymax,
            ));
        }
        polyline(&mut o, &pts, "#c0392b", "none");
    } else {
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="13">no deliveries measured</text>"##,
            x0 + PANEL_W / 2.0,
            TOP + PANEL_H / 2.0
        );
    }

    // Throughput timeline.
    let x1 = 80.0 + PANEL_W + 100.0;
    axes(&mut o, x1, "Throughput", "seconds", "messages / s");
    let tl = &report.timeline;
    let tmax = tl.last().map(|s| s.t).unwrap_or(1.0).max(1.0);
    let rmax = nice_max(
        tl.iter()
            .map(|s| s.sent_per_s.max(s.received_per_s) as f64)
            .fold(0.0, f64::max),
    );
    y_ticks(&mut o, x1, rmax, |v| format!("{v:.0}"));
    for k in 0..=4 {
        let t = tmax * k as f64 / 4.0;
        let _ = writeln!(
            o,
            r##"<text x="{:.1}" y="{}" text-anchor="middle" font-size="11">{t:.1}</text>"##,
            x1 + PANEL_W * k as f64 / 4.0,
            TOP + PANEL_H + 16.0
        );
    }
    let series = |f: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        tl.iter()
            .map(|s| {
                (
                    x1 + PANEL_W * s.t / tmax,
                    TOP + PANEL_H - PANEL_H * f(s) as f64 / rmax,
                )
            })
            .collect()
    };
    polyline(&mut o, &series(|s| s.received_per_s), "#27ae60", "none");
    polyline(&mut o, &series(|s| s.sent_per_s), "#2980b9", "6 4");
    let _ = writeln!(
        o,
        r##"<text x="{}" y="{}" font-size="12" fill="#2980b9">sent/s</text><text x="{}" y="{}" font-size="12" fill="#27ae60">received/s</text>"##,
        x1 + 10.0,
        TOP + 16.0,
        x1 + 70.0,
        TOP + 16.0
    );
    let _ = writeln!(o, "</svg>");
    o
}

pub fn write_svg(path: &Path, report: &Report, h: &Histogram<u64>) -> io::Result<()> {
    std::fs::write(path, svg(report, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    fn second(t: f64) -> Second {
        Second {
            t,
            phase: "running",
            open: 2,
            sent_per_s: 100,
            received_per_s: 99,
            acked_per_s: 0,
            p50_us: 10,
            p99_us: 20,
            max_us: 30,
            errors: 0,
            cpu_percent: 5.0,
        }
    }

    #[test]
    fn hgrm_lists_percentiles() {
        let mut h = new_hist();
        for v in 1..=1000 {
            h.record(v).unwrap();
        }
        let text = hgrm(&h);
        assert!(text.contains("Percentile"));
        assert!(text.contains("Total count    =         1000"));
        assert!(text.lines().count() > 10);
    }

    #[test]
    fn csv_has_a_row_per_second() {
        let text = csv(&[second(1.0), second(2.0)]);
        assert_eq!(text.lines().count(), 3);
        assert!(text
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("1,running,2,100,99"));
    }

    #[test]
    fn nice_axis() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(3.0), 5.0);
        assert_eq!(nice_max(1200.0), 2000.0);
    }
}
