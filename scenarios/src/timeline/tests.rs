//! The page's elements, on a hand-made report and on a real run.

use bytes::Bytes;
use ringkv_core::{Consistency, Duration, Instant, NodeId};
use ringkv_sim::history::{History, OpOutcome, OpRequest};
use ringkv_sim::network::PartitionShape;
use ringkv_sim::report::{OutcomeCounts, RunStats};
use ringkv_sim::{FaultEvent, FaultEventKind, FaultPlan, Report, Violation};

use super::render;
use crate::library::library_dir;
use crate::scenario::Scenario;
use crate::sweep::run_seed;

fn at(millis: u64) -> Instant {
    Instant::from_nanos(millis * 1_000_000)
}

fn read(key: &str) -> OpRequest {
    OpRequest::Read {
        keys: vec![Bytes::copy_from_slice(key.as_bytes())],
        consistency: Consistency::Quorum,
    }
}

/// Six operations over two clients and two nodes, one of each outcome plus a final-pass read;
/// a partition, a crash, a clock jump and a failing disk; a violation naming ops 1 and 3 and
/// one naming none.
fn report() -> Report {
    let mut history = History::new();
    let spans = [
        (
            0,
            NodeId(1),
            10,
            Some(20),
            OpOutcome::Ok { reads: vec![vec![Bytes::from_static(b"v<1>")]] },
        ),
        (1, NodeId(2), 15, Some(40), OpOutcome::Failed("unavailable".into())),
        (0, NodeId(1), 30, Some(90), OpOutcome::Unknown("timeout".into())),
        (1, NodeId(2), 50, Some(60), OpOutcome::Ok { reads: vec![vec![]] }),
        (1, NodeId(1), 70, None, OpOutcome::Pending),
    ];
    for (client, node, from, to, outcome) in spans {
        let op = history.invoke(client, node, read("key<&>\"1\""), at(from), false);
        if let Some(to) = to {
            history.complete(op, at(to), outcome);
        }
    }
    let last = history.invoke(2, NodeId(2), read("key00001"), at(95), true);
    history.complete(last, at(97), OpOutcome::Ok { reads: vec![vec![]] });
    let event = |millis, kind| FaultEvent { at: at(millis), kind };
    let faults = vec![
        event(5, FaultEventKind::Partition { shape: PartitionShape::Split { side: vec![1] } }),
        event(25, FaultEventKind::Down { node: NodeId(1), cause: "crash" }),
        event(35, FaultEventKind::PartitionHealed),
        event(45, FaultEventKind::Up { node: NodeId(1) }),
        event(50, FaultEventKind::ClockJump { node: NodeId(2), delta_ms: -300 }),
        event(55, FaultEventKind::DiskFailing { node: NodeId(2) }),
        event(80, FaultEventKind::Heal),
        event(80, FaultEventKind::DiskReplaced { node: NodeId(2) }),
    ];
    Report {
        seed: 7,
        plan: FaultPlan::default(),
        outcomes: OutcomeCounts { ok: 2, failed: 1, unknown: 1, pending: 1 },
        events_processed: 100,
        simulated_time: Duration::from_millis(100),
        violations: vec![
            Violation::new("linearizable", "serial key <x>: ops 1 & 3 disagree".into())
                .with_ops([3, 1, 99]),
            Violation::new("convergence", "replicas differ".into()),
        ],
        trace_hash: 0xabc,
        trace: Vec::new(),
        stats: RunStats::default(),
        history,
        faults,
    }
}

fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[test]
fn the_page_holds_a_bar_per_op_the_fault_bands_and_linked_violation_marks() {
    let report = report();
    let html = render("demo <seed 7>", &report, &["convergence".to_string()]);
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    // One bar with an id per op in the client view, one more per op in the node view.
    assert_eq!(count(&html, "<rect id=\"o"), report.history.len());
    assert_eq!(count(&html, "class=\"op "), 2 * report.history.len());
    for (class, ops) in [("ok", 3), ("fail", 1), ("unk", 1), ("pend", 1)] {
        assert_eq!(count(&html, &format!("class=\"op {class}\"")), 2 * ops, "{class}");
    }
    // A lane per client, the final pass, and one per node in both the fault and node views.
    for lane in ["client 0", "client 1", "final pass", ">cluster<", ">n1<", ">n2<"] {
        assert!(html.contains(lane), "{lane}");
    }
    // The partition on the cluster lane and on its target (slot 1 is n2), with a backdrop
    // behind each operation view; the crash from 25 to 45 ms; the failing disk; the jump.
    assert_eq!(count(&html, "class=\"band part\""), 2);
    assert!(html.contains("partition: n2 | the rest"));
    assert_eq!(count(&html, "class=\"backdrop part\""), 2);
    assert_eq!(count(&html, "class=\"band down\""), 1);
    assert!(html.contains("n1 down (crash), restarted at 0.045000s"));
    assert_eq!(count(&html, "class=\"band disk\""), 1);
    assert_eq!(count(&html, "class=\"tick clock\""), 1);
    assert!(html.contains("jumps -300 ms"));
    assert_eq!(count(&html, "class=\"phase\""), 2 * 3, "heal and final pass, in three charts");
    // Each violation has a mark; the first links ops 1 and 3 (99 is not in the history).
    assert_eq!(count(&html, "class=\"viol\" id=\"vm"), 2);
    assert!(html.contains("id=\"vm0\" data-viol=\"0\""));
    assert!(html.contains("class=\"viol-mark expected\""), "convergence is tolerated here");
    assert!(html.contains("<a class=\"oplink\" href=\"#o1\" data-op=\"1\">op 1</a>"));
    assert!(html.contains("<a class=\"oplink\" href=\"#o3\" data-op=\"3\">op 3</a>"));
    assert!(!html.contains("href=\"#o99\""));
    assert!(html.contains("{\"checker\":\"linearizable\",\"ops\":[1,3]}"));
    assert_eq!(count(&html, "class=\"backdrop viol\""), 2, "the first's window, per view");
    // Text is escaped: the title, the messages, the keys in the data.
    assert!(html.contains("<h1>demo &lt;seed 7&gt;</h1>"));
    assert!(html.contains("serial key &lt;x&gt;: ops 1 &amp; 3 disagree"));
    assert!(html.contains("key\\u003c\\u0026\\u003e\\\"1\\\""));
    assert!(!html.contains("<x>") && !html.contains("v<1>"));
    // The plots: a point per completed op, and a histogram.
    assert_eq!(count(&html, "<circle class=\"pt "), report.history.len() - 1);
    assert!(count(&html, "<rect class=\"hist ") >= 1);
    // Nothing is fetched: the only addresses are the SVG namespace's.
    assert_eq!(count(&html, "http"), count(&html, "xmlns=\"http://www.w3.org/2000/svg\""));
}

#[test]
fn a_page_without_violations_or_faults_says_so() {
    let mut report = report();
    report.violations.clear();
    report.faults.clear();
    let html = render("quiet", &report, &[]);
    assert!(html.contains("No violations"));
    assert_eq!(count(&html, "class=\"viol\""), 0);
    assert_eq!(count(&html, "class=\"band "), 0);
    assert_eq!(count(&html, "<rect id=\"o"), report.history.len());
}

#[test]
fn a_run_renders_byte_identically_every_time() {
    let scenario =
        Scenario::load(&library_dir().join("serial-cas-partition.ron")).expect("library scenario");
    let first = run_seed(&scenario, 0, false);
    let second = run_seed(&scenario, 0, false);
    let tolerated = &scenario.expect.tolerate;
    let html = render("serial-cas-partition seed 0", &first, tolerated);
    assert_eq!(html, render("serial-cas-partition seed 0", &second, tolerated));
    assert_eq!(count(&html, "<rect id=\"o"), first.history.len());
    assert!(first
        .faults
        .iter()
        .any(|event| matches!(event.kind, FaultEventKind::Partition { .. })));
    assert!(count(&html, "class=\"band part\"") > 0);
}
