//! The lanes: the fault chart (time axis, violation marks, cluster-wide faults, one lane per
//! node) and the operations, one lane per client or per coordinating node.
//!
//! Each is its own `<svg>` of the same width and time scale, stacked in one scrolling box, so
//! that they line up and the operations can switch view without redrawing the faults.

use std::collections::BTreeMap;
use std::fmt::Write;

use ringkv_core::{Instant, NodeId};
use ringkv_sim::network::PartitionShape;
use ringkv_sim::{node_id, FaultEventKind, Report};

use super::{escape, Class, Mark, Scale, LABEL_WIDTH};

/// Height of the time axis at the top of the fault chart.
const AXIS_HEIGHT: f64 = 22.0;
/// Height of the row of violation marks.
const VIOLATION_ROW: f64 = 26.0;
/// Height of a fault lane.
const FAULT_ROW: f64 = 16.0;
/// Height of a client's lane and of its bars.
const CLIENT_ROW: f64 = 12.0;
const CLIENT_BAR: f64 = 8.0;
/// A node lane packs concurrent operations into at most this many rows of this pitch.
const NODE_SUBROWS_MAX: usize = 12;
const NODE_SUBROW: f64 = 5.0;
/// Narrowest bar drawn, so that a sub-millisecond operation is still visible.
const BAR_WIDTH_MIN: f64 = 1.0;

/// Where a fault is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    Cluster,
    Node(NodeId),
}

/// A fault that lasts: `css` is its class (`part`, `down`, `disk`, `clog`, `susp`).
#[derive(Debug, Clone)]
struct Band {
    lane: Lane,
    from: Instant,
    to: Instant,
    css: &'static str,
    label: String,
}

/// A fault at an instant: `css` is its class (`clock`, `flip`, `power`, `member`).
#[derive(Debug, Clone)]
struct Tick {
    lane: Lane,
    at: Instant,
    css: &'static str,
    label: String,
}

fn node_list(indexes: &[usize]) -> String {
    let names: Vec<String> = indexes.iter().map(|index| node_id(*index).to_string()).collect();
    names.join(" ")
}

/// A partition's description and the nodes it cuts off.
fn partition_targets(shape: &PartitionShape) -> (String, Vec<NodeId>) {
    match shape {
        PartitionShape::Split { side } => (
            format!("partition: {} | the rest", node_list(side)),
            side.iter().map(|index| node_id(*index)).collect(),
        ),
        PartitionShape::Bridge { side, bridge } => (
            format!("partition: {} | the rest, bridged by {}", node_list(side), node_id(*bridge)),
            side.iter().chain([bridge]).map(|index| node_id(*index)).collect(),
        ),
        PartitionShape::OneWay { from } => (
            format!("one-way partition: {}'s messages to the others are lost", node_id(*from)),
            vec![node_id(*from)],
        ),
    }
}

/// The fault log folded into bands (from a fault to its end) and ticks.
fn shapes(report: &Report, end: Instant) -> (Vec<Band>, Vec<Tick>) {
    let mut bands = Vec::new();
    let mut ticks = Vec::new();
    let mut partition: Option<(Instant, PartitionShape)> = None;
    let mut down: BTreeMap<NodeId, (Instant, &'static str)> = BTreeMap::new();
    let mut disk: BTreeMap<NodeId, Instant> = BTreeMap::new();
    let mut clogs: BTreeMap<NodeId, (Instant, Option<Instant>)> = BTreeMap::new();
    let mut clock_net: BTreeMap<NodeId, i64> = BTreeMap::new();
    let close_partition = |bands: &mut Vec<Band>, open: Option<(Instant, PartitionShape)>, to| {
        let Some((from, shape)) = open else { return };
        let (label, targets) = partition_targets(&shape);
        for lane in [Lane::Cluster].into_iter().chain(targets.into_iter().map(Lane::Node)) {
            bands.push(Band { lane, from, to, css: "part", label: label.clone() });
        }
    };
    let clog_band = |node: NodeId, from: Instant, to: Instant| Band {
        lane: Lane::Node(node),
        from,
        to,
        css: "clog",
        label: format!("{node} clogged: its messages are held"),
    };
    for event in &report.faults {
        let at = event.at;
        // Clogs that ran out by themselves end where they ran out.
        let expired: Vec<NodeId> = clogs
            .iter()
            .filter(|(_, (_, until))| until.is_some_and(|until| until <= at))
            .map(|(node, _)| *node)
            .collect();
        for node in expired {
            if let Some((from, Some(until))) = clogs.remove(&node) {
                bands.push(clog_band(node, from, until));
            }
        }
        match &event.kind {
            FaultEventKind::Partition { shape } => {
                close_partition(&mut bands, partition.take(), at);
                partition = Some((at, shape.clone()));
            }
            FaultEventKind::PartitionHealed => close_partition(&mut bands, partition.take(), at),
            FaultEventKind::Down { node, cause } => {
                down.entry(*node).or_insert((at, cause));
            }
            FaultEventKind::Up { node } => {
                if let Some((from, cause)) = down.remove(node) {
                    let label = format!("{node} down ({cause}), restarted at {at}");
                    bands.push(Band { lane: Lane::Node(*node), from, to: at, css: "down", label });
                }
            }
            FaultEventKind::Clog { node, until } => {
                let entry = clogs.entry(*node).or_insert((at, *until));
                // A second clog extends the first; one without an end keeps it open.
                entry.1 = entry.1.zip(*until).map(|(old, new)| old.max(new));
            }
            FaultEventKind::Unclog { node } => {
                if let Some((from, _)) = clogs.remove(node) {
                    bands.push(clog_band(*node, from, at));
                }
            }
            FaultEventKind::ClockJump { node, delta_ms } => {
                let net = clock_net.entry(*node).or_default();
                *net += delta_ms;
                let label = format!("{node}'s wall clock jumps {delta_ms:+} ms ({net:+} ms net)");
                ticks.push(Tick { lane: Lane::Node(*node), at, css: "clock", label });
            }
            FaultEventKind::DiskFailing { node } => {
                disk.entry(*node).or_insert(at);
            }
            FaultEventKind::DiskReplaced { node } => {
                if let Some(from) = disk.remove(node) {
                    let label = format!("{node}'s disk fails every sync until replaced at {at}");
                    bands.push(Band { lane: Lane::Node(*node), from, to: at, css: "disk", label });
                }
            }
            FaultEventKind::Snapshot { node } => {
                let label = format!("a snapshot of {node}'s store is taken");
                ticks.push(Tick { lane: Lane::Node(*node), at, css: "clock", label });
            }
            FaultEventKind::Restored { node, taken_at } => {
                let label = format!("{node} restarts on its snapshot taken at {taken_at}");
                ticks.push(Tick { lane: Lane::Node(*node), at, css: "flip", label });
            }
            FaultEventKind::BitFlip { node } => {
                let label = format!("a bit flipped at rest on {node}'s disk");
                ticks.push(Tick { lane: Lane::Node(*node), at, css: "flip", label });
            }
            FaultEventKind::Suspicion { observer, suspect, until } => {
                let label = format!("{observer} wrongly suspects {suspect} until {until}");
                let lane = Lane::Node(*observer);
                bands.push(Band { lane, from: at, to: (*until).min(end), css: "susp", label });
            }
            FaultEventKind::PowerLoss => {
                let label = "power loss: every running node crashed".to_string();
                ticks.push(Tick { lane: Lane::Cluster, at, css: "power", label });
            }
            FaultEventKind::Membership { node, change } => {
                let label = format!("{change} {node}");
                for lane in [Lane::Cluster, Lane::Node(*node)] {
                    ticks.push(Tick { lane, at, css: "member", label: label.clone() });
                }
            }
            FaultEventKind::Heal => {
                close_partition(&mut bands, partition.take(), at);
                for (node, (from, _)) in std::mem::take(&mut clogs) {
                    bands.push(clog_band(node, from, at));
                }
            }
        }
    }
    close_partition(&mut bands, partition.take(), end);
    for (node, (from, until)) in clogs {
        bands.push(clog_band(node, from, until.map_or(end, |until| until.min(end))));
    }
    for (node, (from, cause)) in down {
        let label = format!("{node} down ({cause}) to the end");
        bands.push(Band { lane: Lane::Node(node), from, to: end, css: "down", label });
    }
    for (node, from) in disk {
        let label = format!("{node}'s disk fails every sync to the end");
        bands.push(Band { lane: Lane::Node(node), from, to: end, css: "disk", label });
    }
    (bands, ticks)
}

/// The phase boundaries: the heal, and the final read pass.
fn phases(report: &Report) -> Vec<(Instant, &'static str)> {
    let mut phases: Vec<(Instant, &'static str)> = report
        .faults
        .iter()
        .filter(|event| event.kind == FaultEventKind::Heal)
        .map(|event| (event.at, "heal"))
        .collect();
    let final_pass = report.history.iter().filter(|(_, op)| op.final_pass);
    if let Some(at) = final_pass.map(|(_, op)| op.invoked_at).min() {
        phases.push((at, "final pass"));
    }
    phases
}

/// A round step for the axis, so that ticks stand at least 80 px apart.
fn axis_step_ns(scale: &Scale) -> u64 {
    const STEPS_MS: [u64; 12] =
        [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000];
    let ns_per_px = scale.end_ns as f64 / scale.width;
    STEPS_MS
        .iter()
        .map(|ms| ms * 1_000_000)
        .find(|step| *step as f64 / ns_per_px >= 80.0)
        .unwrap_or(60_000_000_000)
}

/// Vertical grid lines (and, with `labels`, the time under them) over `top..bottom`.
fn grid(out: &mut String, scale: &Scale, top: f64, bottom: f64, labels: bool) -> std::fmt::Result {
    let step = axis_step_ns(scale);
    let mut at = 0;
    while at <= scale.end_ns {
        let x = scale.x(Instant::from_nanos(at));
        writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\"/>"
        )?;
        if labels {
            let seconds = at as f64 / 1e9;
            writeln!(out, "<text x=\"{:.1}\" y=\"14\">{seconds:.2} s</text>", x + 2.0)?;
        }
        at += step;
    }
    Ok(())
}

fn phase_lines(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    top: f64,
    bottom: f64,
    labels: bool,
) -> std::fmt::Result {
    for (at, label) in phases(report) {
        let x = scale.x(at);
        writeln!(
            out,
            "<line class=\"phase\" x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{bottom:.1}\" data-tip=\"{} at {at}\"/>",
            escape(label)
        )?;
        if labels {
            writeln!(out, "<text x=\"{:.1}\" y=\"{:.1}\">{label}</text>", x + 3.0, top + 10.0)?;
        }
    }
    Ok(())
}

fn svg_open(out: &mut String, scale: &Scale, height: f64, attributes: &str) -> std::fmt::Result {
    writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {w:.0} {height:.0}\"{attributes}>",
        w = scale.total_width()
    )
}

fn lane_label(out: &mut String, y: f64, text: &str) -> std::fmt::Result {
    writeln!(out, "<text class=\"lane\" x=\"4\" y=\"{:.1}\">{}</text>", y, escape(text))
}

/// The fault chart: axis, violation marks, the cluster lane and one lane per node.
pub fn faults(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    nodes: &[NodeId],
    marks: &[Mark],
) -> std::fmt::Result {
    let (bands, ticks) = shapes(report, scale.end());
    let mut lanes: Vec<(Lane, String)> = vec![(Lane::Cluster, "cluster".to_string())];
    lanes.extend(nodes.iter().map(|node| (Lane::Node(*node), node.to_string())));
    let lanes_top = AXIS_HEIGHT + VIOLATION_ROW;
    let height = lanes_top + lanes.len() as f64 * FAULT_ROW + 4.0;
    svg_open(out, scale, height, " id=\"faults\"")?;
    grid(out, scale, 0.0, height, true)?;
    writeln!(out, "<line class=\"axis\" x1=\"{LABEL_WIDTH}\" y1=\"{AXIS_HEIGHT}\" x2=\"{:.1}\" y2=\"{AXIS_HEIGHT}\"/>", scale.x(scale.end()))?;
    lane_label(out, AXIS_HEIGHT + 16.0, "violations")?;
    for (row, (_, label)) in lanes.iter().enumerate() {
        lane_label(out, lanes_top + row as f64 * FAULT_ROW + 12.0, label)?;
    }
    let row_of =
        |lane: Lane| lanes.iter().position(|(candidate, _)| *candidate == lane).unwrap_or(0);
    for band in &bands {
        let y = lanes_top + row_of(band.lane) as f64 * FAULT_ROW + 2.0;
        let x = scale.x(band.from);
        let width = (scale.x(band.to) - x).max(BAR_WIDTH_MIN);
        let tip = format!("{} ({} to {})", band.label, band.from, band.to);
        writeln!(
            out,
            "<rect class=\"band {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\" data-tip=\"{}\"/>",
            band.css,
            FAULT_ROW - 4.0,
            escape(&tip)
        )?;
    }
    for tick in &ticks {
        let y = lanes_top + row_of(tick.lane) as f64 * FAULT_ROW;
        let x = scale.x(tick.at);
        writeln!(
            out,
            "<line class=\"tick {}\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" data-tip=\"{}\"/>",
            tick.css,
            y + 1.0,
            y + FAULT_ROW - 1.0,
            escape(&format!("{} at {}", tick.label, tick.at))
        )?;
    }
    phase_lines(out, scale, report, AXIS_HEIGHT, height, true)?;
    for (index, mark) in marks.iter().enumerate() {
        // Marks at one instant are staggered so that each stays clickable.
        let y = AXIS_HEIGHT + 3.0 + (index % 3) as f64 * 6.0;
        let (from, to) = (scale.x(mark.from), scale.x(mark.to));
        let expected = if mark.expected { " expected" } else { "" };
        let tip = format!(
            "violation {index} [{}]: {} ({} ops, {} to {}; click to highlight them)",
            mark.checker,
            super::page::shorten(&mark.message, 400),
            mark.ops.len(),
            mark.from,
            mark.to
        );
        writeln!(
            out,
            "<g class=\"viol\" id=\"vm{index}\" data-viol=\"{index}\" data-tip=\"{}\">\
             <line x1=\"{from:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d50000\" stroke-width=\"2\"/>\
             <path class=\"viol-mark{expected}\" d=\"M{:.1} {y:.1} h12 l-6 10 z\"/></g>",
            escape(&tip),
            y + 12.0,
            to.max(from + 1.0),
            y + 12.0,
            from - 6.0
        )?;
    }
    writeln!(out, "</svg>")
}

/// Translucent bands behind the operations: partitions, and the window of each violation.
fn backdrops(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    marks: &[Mark],
    height: f64,
) -> std::fmt::Result {
    let (bands, _) = shapes(report, scale.end());
    for band in bands.iter().filter(|band| band.lane == Lane::Cluster && band.css == "part") {
        let x = scale.x(band.from);
        let width = (scale.x(band.to) - x).max(BAR_WIDTH_MIN);
        writeln!(out, "<rect class=\"backdrop part\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{height:.1}\"/>")?;
    }
    for (index, mark) in marks.iter().enumerate().filter(|(_, mark)| !mark.ops.is_empty()) {
        let x = scale.x(mark.from);
        let width = (scale.x(mark.to) - x).max(2.0);
        writeln!(
            out,
            "<rect class=\"backdrop viol\" x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{height:.1}\" data-viol=\"{index}\"/>"
        )?;
    }
    Ok(())
}

/// One operation's bar; `id` only in the client view, so each op has one element to scroll to.
fn bar(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    index: usize,
    y: f64,
    height: f64,
    with_id: bool,
) -> std::fmt::Result {
    let Some(op) = report.history.get(index) else { return Ok(()) };
    let x = scale.x(op.invoked_at);
    let width = (scale.x(op.completed_at.unwrap_or(scale.end())) - x).max(BAR_WIDTH_MIN);
    let id = if with_id { format!(" id=\"o{index}\"") } else { String::new() };
    writeln!(
        out,
        "<rect{id} class=\"op {}\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\" data-op=\"{index}\"/>",
        Class::of(op).css()
    )
}

/// The operations, one lane per client (the final read pass last).
pub fn ops_by_client(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    marks: &[Mark],
) -> std::fmt::Result {
    // Lane per client; the final pass's pseudo-client is drawn as its own lane.
    let mut lanes: BTreeMap<(bool, usize), Vec<usize>> = BTreeMap::new();
    for (index, op) in report.history.iter() {
        lanes.entry((op.final_pass, op.client)).or_default().push(index);
    }
    let height = lanes.len().max(1) as f64 * CLIENT_ROW + 4.0;
    svg_open(out, scale, height, " class=\"ops\" data-view=\"client\"")?;
    grid(out, scale, 0.0, height, false)?;
    backdrops(out, scale, report, marks, height)?;
    phase_lines(out, scale, report, 0.0, height, false)?;
    for (row, ((final_pass, client), ops)) in lanes.iter().enumerate() {
        let top = row as f64 * CLIENT_ROW + 2.0;
        let label = if *final_pass { "final pass".to_string() } else { format!("client {client}") };
        lane_label(out, top + 9.0, &label)?;
        for index in ops {
            bar(out, scale, report, *index, top + 1.0, CLIENT_BAR, true)?;
        }
    }
    writeln!(out, "</svg>")
}

/// The operations, one lane per coordinating node; concurrent ones are packed into rows.
pub fn ops_by_node(
    out: &mut String,
    scale: &Scale,
    report: &Report,
    nodes: &[NodeId],
    marks: &[Mark],
) -> std::fmt::Result {
    let end = scale.end();
    // Per node, each op's row: the first row free at its invocation, or the one that frees
    // up first when every row is taken.
    let mut rows: BTreeMap<NodeId, Vec<(usize, usize)>> = BTreeMap::new();
    let mut rows_count: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut row_ends: BTreeMap<NodeId, Vec<Instant>> = BTreeMap::new();
    for (index, op) in report.history.iter() {
        let ends = row_ends.entry(op.node).or_default();
        let done = op.completed_at.unwrap_or(end);
        let row = match ends.iter().position(|free_at| *free_at <= op.invoked_at) {
            Some(row) => row,
            None if ends.len() < NODE_SUBROWS_MAX => {
                ends.push(Instant::ZERO);
                ends.len() - 1
            }
            None => (0..ends.len()).min_by_key(|row| ends[*row]).unwrap_or(0),
        };
        ends[row] = ends[row].max(done);
        rows.entry(op.node).or_default().push((index, row));
        let count = rows_count.entry(op.node).or_default();
        *count = (*count).max(row + 1);
    }
    let lane_height = |node: &NodeId| {
        rows_count.get(node).copied().unwrap_or(1).max(2) as f64 * NODE_SUBROW + 4.0
    };
    let height: f64 = nodes.iter().map(lane_height).sum::<f64>() + 4.0;
    svg_open(out, scale, height, " class=\"ops\" data-view=\"node\" style=\"display:none\"")?;
    grid(out, scale, 0.0, height, false)?;
    backdrops(out, scale, report, marks, height)?;
    phase_lines(out, scale, report, 0.0, height, false)?;
    let mut top = 2.0;
    for node in nodes {
        lane_label(out, top + 9.0, &node.to_string())?;
        writeln!(
            out,
            "<line class=\"grid\" x1=\"0\" y1=\"{:.1}\" x2=\"{:.0}\" y2=\"{:.1}\"/>",
            top + lane_height(node) - 2.0,
            scale.total_width(),
            top + lane_height(node) - 2.0
        )?;
        for (index, row) in rows.get(node).into_iter().flatten() {
            bar(
                out,
                scale,
                report,
                *index,
                top + *row as f64 * NODE_SUBROW,
                NODE_SUBROW - 1.0,
                false,
            )?;
        }
        top += lane_height(node);
    }
    writeln!(out, "</svg>")
}
