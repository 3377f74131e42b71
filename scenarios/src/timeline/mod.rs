//! The timeline of a run: one self-contained HTML file (inline SVG, CSS and a small script; no
//! network at view time) drawn from a [`Report`].
//!
//! Owns: [`render`]. Input: the report's history (every operation's client, coordinator,
//! request, outcome and simulated times), its fault log ([`ringkv_sim::FaultEvent`]s as the
//! run applied them) and its violations (each with the operations it involves). Output: the
//! page: operations as bars per client (or, switched, per coordinating node) over simulated
//! time coloured by outcome; faults as shaded bands on the lanes of their targets (and
//! partitions as a backdrop behind the operations); each violation as a mark over the time
//! its operations span, linked to them; a latency-over-time plot and a latency histogram.
//!
//! Deterministic: the page is a function of the report alone (no clock, no randomness, no map
//! with a random order), so one scenario and seed give byte-identical files.
//!
//! Split: [`chart`] draws the lanes, [`plots`] the latency plot and histogram, [`page`] holds
//! the escaping, style sheet and script.

mod chart;
mod page;
mod plots;

use std::collections::BTreeSet;
use std::fmt::Write;

use ringkv_core::{Instant, NodeId};
use ringkv_sim::history::{OpOutcome, OpRecord, OpRequest};
use ringkv_sim::{FaultEventKind, Report};

pub use page::{escape, json_string};

/// Width of the lane labels on the left of every chart, in pixels.
const LABEL_WIDTH: f64 = 96.0;

/// Pixels per simulated second, and the bounds on the drawn width of the run.
const PIXELS_PER_SECOND: f64 = 100.0;
const PLOT_WIDTH_MIN: f64 = 900.0;
const PLOT_WIDTH_MAX: f64 = 8_000.0;

/// Longest request or outcome text kept per operation (the tooltip's).
const OP_TEXT_MAX: usize = 160;

/// Most operation links listed under one violation (all are highlighted when it is selected).
const VIOLATION_LINKS_MAX: usize = 40;

/// Maps simulated time to x.
#[derive(Debug, Clone, Copy)]
struct Scale {
    end_ns: u64,
    width: f64,
}

impl Scale {
    fn new(end: Instant) -> Self {
        let end_ns = end.as_nanos().max(1);
        let width = (end_ns as f64 / 1e9 * PIXELS_PER_SECOND).clamp(PLOT_WIDTH_MIN, PLOT_WIDTH_MAX);
        Scale { end_ns, width }
    }

    fn x(&self, at: Instant) -> f64 {
        LABEL_WIDTH + at.as_nanos().min(self.end_ns) as f64 / self.end_ns as f64 * self.width
    }

    fn end(&self) -> Instant {
        Instant::from_nanos(self.end_ns)
    }

    /// The whole drawing's width.
    fn total_width(&self) -> f64 {
        LABEL_WIDTH + self.width + 16.0
    }
}

/// How an operation ended, as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Ok,
    Fail,
    Unknown,
    Pending,
}

impl Class {
    const ALL: [Class; 4] = [Class::Ok, Class::Fail, Class::Unknown, Class::Pending];

    fn of(op: &OpRecord) -> Self {
        match op.outcome {
            OpOutcome::Ok { .. } | OpOutcome::Serial(_) => Class::Ok,
            OpOutcome::Failed(_) => Class::Fail,
            OpOutcome::Unknown(_) => Class::Unknown,
            OpOutcome::Pending => Class::Pending,
        }
    }

    fn css(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Fail => "fail",
            Class::Unknown => "unk",
            Class::Pending => "pend",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::Fail => "failed",
            Class::Unknown => "unknown",
            Class::Pending => "pending",
        }
    }
}

/// A violation as drawn: where its mark goes and which operations it links.
#[derive(Debug, Clone)]
struct Mark {
    checker: &'static str,
    message: String,
    /// Operations of the history it involves (indexes outside the history are dropped).
    ops: Vec<usize>,
    /// The time its operations span, or the end of the run when it names none.
    from: Instant,
    to: Instant,
    /// The scenario expects this checker to fire (`expect.tolerate`).
    expected: bool,
}

fn marks(report: &Report, tolerated: &[String], end: Instant) -> Vec<Mark> {
    report
        .violations
        .iter()
        .map(|violation| {
            let ops: Vec<usize> = violation
                .ops
                .iter()
                .copied()
                .filter(|op| *op < report.history.len())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let records = || ops.iter().filter_map(|op| report.history.get(*op));
            let from = records().map(|op| op.invoked_at).min().unwrap_or(end);
            let to = records().map(|op| op.completed_at.unwrap_or(end)).max().unwrap_or(end);
            Mark {
                checker: violation.checker,
                message: violation.message.clone(),
                ops,
                from,
                to,
                expected: tolerated.iter().any(|checker| checker == violation.checker),
            }
        })
        .collect()
}

/// Every node the run mentions: coordinators, fault targets, final members.
fn nodes(report: &Report) -> Vec<NodeId> {
    let mut nodes: BTreeSet<NodeId> = report.history.iter().map(|(_, op)| op.node).collect();
    nodes.extend(report.stats.final_members.iter().copied());
    for event in &report.faults {
        match &event.kind {
            FaultEventKind::Down { node, .. }
            | FaultEventKind::Up { node }
            | FaultEventKind::Clog { node, .. }
            | FaultEventKind::Unclog { node }
            | FaultEventKind::ClockJump { node, .. }
            | FaultEventKind::DiskFailing { node }
            | FaultEventKind::DiskReplaced { node }
            | FaultEventKind::Snapshot { node }
            | FaultEventKind::Restored { node, .. }
            | FaultEventKind::BitFlip { node }
            | FaultEventKind::Membership { node, .. } => {
                nodes.insert(*node);
            }
            FaultEventKind::Suspicion { observer, suspect, .. } => {
                nodes.insert(*observer);
                nodes.insert(*suspect);
            }
            FaultEventKind::Partition { .. }
            | FaultEventKind::PartitionHealed
            | FaultEventKind::PowerLoss
            | FaultEventKind::Heal => {}
        }
    }
    nodes.into_iter().collect()
}

fn show_bytes(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show_value(value: Option<&ringkv_core::Value>) -> String {
    value.map_or_else(|| "absent".to_string(), |value| format!("{:?}", show_bytes(value)))
}

/// What an operation asked for, in a line.
fn describe_request(request: &OpRequest) -> String {
    let text = match request {
        OpRequest::Read { keys, consistency } => match keys.as_slice() {
            [key] => format!("get {} @{consistency:?}", show_bytes(key)),
            keys => format!("mget {} keys from {} @{consistency:?}", keys.len(), first_key(keys)),
        },
        OpRequest::Write { writes, context_from, overwrite, consistency } => {
            let context = context_from.map(|read| format!(" (context of op {read})"));
            let context = context.unwrap_or_default();
            match writes.as_slice() {
                [(key, Some(value))] => format!(
                    "{} {} = {}{context} @{consistency:?}",
                    if *overwrite { "set" } else { "put" },
                    show_bytes(key),
                    show_value(Some(value))
                ),
                [(key, None)] => format!("delete {}{context} @{consistency:?}", show_bytes(key)),
                writes => format!("mset {} keys @{consistency:?}", writes.len()),
            }
        }
        OpRequest::Cas { key, op } => format!("serial {}: {op:?}", show_bytes(key)),
        OpRequest::Flush { keys } => format!("flushall ({} keys)", keys.len()),
    };
    page::shorten(&text, OP_TEXT_MAX)
}

fn first_key(keys: &[ringkv_core::Key]) -> String {
    keys.first().map(|key| show_bytes(key)).unwrap_or_default()
}

/// How an operation ended, in a line.
fn describe_outcome(outcome: &OpOutcome) -> String {
    let text = match outcome {
        OpOutcome::Pending => "pending: never completed".to_string(),
        OpOutcome::Ok { reads } if reads.is_empty() => "ok".to_string(),
        OpOutcome::Ok { reads } => {
            let values: Vec<String> = reads
                .iter()
                .map(|values| {
                    let shown: Vec<String> =
                        values.iter().map(|value| show_value(Some(value))).collect();
                    format!("[{}]", shown.join(", "))
                })
                .collect();
            format!("ok, read {}", values.join(" "))
        }
        OpOutcome::Serial(reply) => format!(
            "ok, applied={} previous={} current={}",
            reply.applied,
            show_value(reply.previous.as_ref()),
            show_value(reply.current.as_ref())
        ),
        OpOutcome::Failed(why) => format!("failed: {why}"),
        OpOutcome::Unknown(why) => format!("unknown: {why}"),
    };
    page::shorten(&text, OP_TEXT_MAX)
}

/// The operations as JSON for the script's tooltips: per op `[client (-1: final pass), node,
/// invoked µs, completed µs (-1: never), outcome, request]`.
fn ops_json(report: &Report) -> String {
    let mut out = String::from("[");
    for (index, op) in report.history.iter() {
        if index > 0 {
            out.push(',');
        }
        let client = if op.final_pass { -1 } else { op.client as i64 };
        let completed = op.completed_at.map_or(-1, |at| (at.as_nanos() / 1_000) as i64);
        let _ = write!(
            out,
            "\n[{client},{},{},{completed},{},{}]",
            op.node.0,
            op.invoked_at.as_nanos() / 1_000,
            json_string(&describe_outcome(&op.outcome)),
            json_string(&describe_request(&op.request))
        );
    }
    out.push_str("\n]");
    out
}

fn violations_json(marks: &[Mark]) -> String {
    let entries: Vec<String> = marks
        .iter()
        .map(|mark| {
            let ops: Vec<String> = mark.ops.iter().map(ToString::to_string).collect();
            format!("{{\"checker\":{},\"ops\":[{}]}}", json_string(mark.checker), ops.join(","))
        })
        .collect();
    format!("[{}]", entries.join(","))
}

/// The violations as an HTML list, each with links to its operations.
fn violations_list(out: &mut String, marks: &[Mark]) -> std::fmt::Result {
    if marks.is_empty() {
        return writeln!(out, "<p id=\"violations\">No violations: every checker passed.</p>");
    }
    writeln!(out, "<ol id=\"violations\">")?;
    for (index, mark) in marks.iter().enumerate() {
        let expected = if mark.expected { " class=\"expected\"" } else { "" };
        write!(
            out,
            "<li id=\"vl{index}\" data-viol=\"{index}\"{expected}><span class=\"checker\">[{}]{}\
             </span> {}<br>",
            escape(mark.checker),
            if mark.expected { " (expected by the scenario)" } else { "" },
            escape(&mark.message)
        )?;
        if mark.ops.is_empty() {
            write!(out, "<small>names no operation: it is about the final state</small>")?;
        }
        for op in mark.ops.iter().take(VIOLATION_LINKS_MAX) {
            write!(out, "<a class=\"oplink\" href=\"#o{op}\" data-op=\"{op}\">op {op}</a>")?;
        }
        if mark.ops.len() > VIOLATION_LINKS_MAX {
            write!(out, "<small>and {} more</small>", mark.ops.len() - VIOLATION_LINKS_MAX)?;
        }
        writeln!(out, "</li>")?;
    }
    writeln!(out, "</ol>")
}

/// Renders `report` as a self-contained HTML page titled `title`. Violations of the checkers
/// in `tolerated` (the scenario's `expect.tolerate`) are drawn grey, as expected.
pub fn render(title: &str, report: &Report, tolerated: &[String]) -> String {
    let mut out = String::new();
    write_page(&mut out, title, report, tolerated).expect("writing to a String cannot fail");
    out
}

fn write_page(
    out: &mut String,
    title: &str,
    report: &Report,
    tolerated: &[String],
) -> std::fmt::Result {
    let scale = Scale::new(Instant::ZERO + report.simulated_time);
    let marks = marks(report, tolerated, scale.end());
    let nodes = nodes(report);
    let o = report.outcomes;
    writeln!(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">")?;
    writeln!(out, "<title>{}</title>", escape(title))?;
    writeln!(out, "<script>\n{}</script>", page::ERROR_COUNTER)?;
    writeln!(out, "<style>{}</style>\n</head>\n<body>", page::STYLE)?;
    writeln!(out, "<div id=\"tip\"></div>\n<h1>{}</h1>", escape(title))?;
    writeln!(
        out,
        "<p class=\"summary\">seed {} · {:.3} simulated s · {} events · trace {:016x} · {} \
         operations ({} ok, {} failed, {} unknown, {} pending, plus {} final-pass reads) · {} \
         fault events · {} violations</p>",
        report.seed,
        report.simulated_time.as_nanos() as f64 / 1e9,
        report.events_processed,
        report.trace_hash,
        o.ok + o.failed + o.unknown + o.pending,
        o.ok,
        o.failed,
        o.unknown,
        o.pending,
        report.history.iter().filter(|(_, op)| op.final_pass).count(),
        report.faults.len(),
        marks.len()
    )?;
    write!(out, "<p class=\"legend\">")?;
    for class in Class::ALL {
        write!(out, "<span><i class=\"{}\"></i>{}</span>", class.css(), class.label())?;
    }
    let bands = [
        ("part", "partitioned"),
        ("down", "node down"),
        ("disk", "disk failing"),
        ("clog", "clogged"),
        ("susp", "wrong suspicion"),
    ];
    for (css, label) in bands {
        write!(out, "<span><i class=\"{css}\"></i>{label}</span>")?;
    }
    writeln!(out, "<span>▼ violation (click: highlight its operations)</span></p>")?;
    writeln!(out, "<h2>Violations</h2>")?;
    violations_list(out, &marks)?;
    writeln!(out, "<h2>Timeline</h2>")?;
    writeln!(
        out,
        "<p>Operations per <button class=\"view on\" data-view=\"client\">client</button>\
         <button class=\"view\" data-view=\"node\">coordinating node</button> \
         · hover for details</p>"
    )?;
    writeln!(out, "<div class=\"scroll\">")?;
    chart::faults(out, &scale, report, &nodes, &marks)?;
    chart::ops_by_client(out, &scale, report, &marks)?;
    chart::ops_by_node(out, &scale, report, &nodes, &marks)?;
    plots::latency_over_time(out, &scale, report)?;
    writeln!(out, "</div>")?;
    writeln!(out, "<h2>Latency histogram</h2>")?;
    plots::histogram(out, report)?;
    writeln!(
        out,
        "<script type=\"application/json\" id=\"ops-data\">{}</script>",
        ops_json(report)
    )?;
    writeln!(
        out,
        "<script type=\"application/json\" id=\"viol-data\">{}</script>",
        violations_json(&marks)
    )?;
    writeln!(out, "<script>{}</script>\n</body>\n</html>", page::SCRIPT)
}

#[cfg(test)]
mod tests;
