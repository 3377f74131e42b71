//! The latency plots: latency over simulated time (on the lanes' time scale, so it lines up
//! with them) and a histogram, both on a log scale of milliseconds, coloured by outcome.
//! Operations that never completed have no latency and are left out of both.

use std::fmt::Write;

use ringkv_sim::Report;

use super::{Class, Scale, LABEL_WIDTH};

/// Height of the latency-over-time plot's area.
const LATENCY_HEIGHT: f64 = 180.0;
/// Margins around it: above, and below for the labels.
const LATENCY_TOP: f64 = 16.0;
const LATENCY_BOTTOM: f64 = 8.0;
/// Histogram: buckets per decade of milliseconds, size of its area.
const BUCKETS_PER_DECADE: usize = 4;
const HISTOGRAM_WIDTH: f64 = 720.0;
const HISTOGRAM_HEIGHT: f64 = 200.0;
/// The shortest latency the scale goes down to: 1 µs. Shorter ones (a refused operation
/// completes at once) are drawn at the bottom of the scale, which starts at the decade of the
/// shortest latency above zero.
const LATENCY_MS_MIN: f64 = 0.001;

/// Every completed operation: (index, latency in ms, class).
fn latencies(report: &Report) -> Vec<(usize, f64, Class)> {
    report
        .history
        .iter()
        .filter_map(|(index, op)| {
            let done = op.completed_at?;
            let ms = done.saturating_since(op.invoked_at).as_nanos() as f64 / 1e6;
            Some((index, ms, Class::of(op)))
        })
        .collect()
}

/// The decades (powers of ten of ms) that cover every latency above zero.
fn decades(latencies: &[(usize, f64, Class)]) -> (i32, i32) {
    let positive = || latencies.iter().map(|(_, ms, _)| *ms).filter(|ms| *ms > 0.0);
    let low = positive().fold(f64::INFINITY, f64::min);
    let high = positive().fold(0.0, f64::max);
    if !low.is_finite() {
        return (0, 1);
    }
    let low = low.max(LATENCY_MS_MIN).log10().floor() as i32;
    let high = (high.log10().ceil() as i32).max(low + 1);
    (low, high)
}

/// `ms` on the scale from decade `low`: the log, shorter ones at the bottom.
fn log_ms(ms: f64, low: i32) -> f64 {
    ms.max(10f64.powi(low)).log10()
}

fn decade_label(decade: i32) -> String {
    let ms = 10f64.powi(decade);
    if ms >= 1.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{} ms", ms)
    }
}

/// Latency over simulated time: one point per operation at its invocation.
pub fn latency_over_time(out: &mut String, scale: &Scale, report: &Report) -> std::fmt::Result {
    let points = latencies(report);
    let (low, high) = decades(&points);
    let height = LATENCY_TOP + LATENCY_HEIGHT + LATENCY_BOTTOM;
    let bottom = LATENCY_TOP + LATENCY_HEIGHT;
    let y = |ms: f64| {
        bottom - (log_ms(ms, low) - f64::from(low)) / f64::from(high - low) * LATENCY_HEIGHT
    };
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"latency\" width=\"{w:.0}\" \
         height=\"{height:.0}\" viewBox=\"0 0 {w:.0} {height:.0}\">",
        w = scale.total_width()
    )?;
    writeln!(out, "<text class=\"lane\" x=\"4\" y=\"12\">latency (log)</text>")?;
    for decade in low..=high {
        let at = y(10f64.powi(decade));
        writeln!(
            out,
            "<line class=\"grid\" x1=\"{LABEL_WIDTH}\" y1=\"{at:.1}\" x2=\"{:.1}\" \
             y2=\"{at:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            scale.x(scale.end()),
            LABEL_WIDTH - 44.0,
            at + 3.0,
            decade_label(decade)
        )?;
    }
    for (index, ms, class) in &points {
        let Some(op) = report.history.get(*index) else { continue };
        writeln!(
            out,
            "<circle class=\"pt {}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\" data-op=\"{index}\"/>",
            class.css(),
            scale.x(op.invoked_at),
            y(*ms)
        )?;
    }
    writeln!(out, "</svg>")
}

/// A histogram of latencies, in log-spaced buckets, stacked by outcome.
pub fn histogram(out: &mut String, report: &Report) -> std::fmt::Result {
    let points = latencies(report);
    let (low, high) = decades(&points);
    let buckets_count = (high - low) as usize * BUCKETS_PER_DECADE;
    let mut counts = vec![[0usize; 4]; buckets_count];
    for (_, ms, class) in &points {
        let position = (log_ms(*ms, low) - f64::from(low)) * BUCKETS_PER_DECADE as f64;
        let bucket = (position.floor().max(0.0) as usize).min(buckets_count - 1);
        let slot = Class::ALL.iter().position(|candidate| candidate == class).unwrap_or(0);
        counts[bucket][slot] += 1;
    }
    let tallest = counts.iter().map(|bucket| bucket.iter().sum::<usize>()).max().unwrap_or(0);
    let tallest = tallest.max(1) as f64;
    let (left, top) = (56.0, 10.0);
    let width = left + HISTOGRAM_WIDTH + 48.0;
    let height = top + HISTOGRAM_HEIGHT + 24.0;
    let bucket_width = HISTOGRAM_WIDTH / buckets_count as f64;
    let bottom = top + HISTOGRAM_HEIGHT;
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"histogram\" width=\"{width:.0}\" \
         height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\">"
    )?;
    writeln!(
        out,
        "<line class=\"axis\" x1=\"{left}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\"/>\
         <text x=\"4\" y=\"{:.1}\">{} ops</text><text x=\"4\" y=\"{bottom}\">0</text>",
        left + HISTOGRAM_WIDTH,
        top + 8.0,
        tallest as usize
    )?;
    for decade in low..=high {
        let x = left + (decade - low) as f64 * BUCKETS_PER_DECADE as f64 * bucket_width;
        writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\">{}</text>",
            bottom + 14.0,
            decade_label(decade)
        )?;
    }
    for (bucket, bucket_counts) in counts.iter().enumerate() {
        let x = left + bucket as f64 * bucket_width;
        let from_ms = 10f64.powf(f64::from(low) + bucket as f64 / BUCKETS_PER_DECADE as f64);
        let to_ms = from_ms * 10f64.powf(1.0 / BUCKETS_PER_DECADE as f64);
        let mut stacked = 0.0;
        for (slot, count) in bucket_counts.iter().enumerate().filter(|(_, count)| **count > 0) {
            let class = Class::ALL[slot];
            let bar = *count as f64 / tallest * HISTOGRAM_HEIGHT;
            stacked += bar;
            writeln!(
                out,
                "<rect class=\"hist {}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar:.1}\" \
                 data-tip=\"{count} {} ops took {from_ms:.3} to {to_ms:.3} ms\"/>",
                class.css(),
                x + 1.0,
                bottom - stacked,
                (bucket_width - 2.0).max(1.0),
                class.label()
            )?;
        }
    }
    writeln!(out, "</svg>")
}
