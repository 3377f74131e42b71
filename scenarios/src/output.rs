//! Printing sweep results: a table for people, one JSON object for scripts, replay commands.
//!
//! Owns: [`table`], [`json`] and [`replay_commands`]. The JSON is written by hand (the workspace
//! has no JSON crate); every string goes through [`json_string`].

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::sweep::Summary;

/// The summary table, one row per scenario and a total row.
pub fn table(summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:>6} {:>10} {:>12} {:>10} {:>8}  violations by checker",
        "scenario", "seeds", "ops", "events", "events/s", "wall s"
    );
    let mut total = Summary { name: "TOTAL".to_string(), ..Summary::default() };
    for summary in summaries {
        row(&mut out, summary);
        total.seeds += summary.seeds;
        total.ops += summary.ops;
        total.events += summary.events;
        total.wall_seconds += summary.wall_seconds;
        total.sim_seconds += summary.sim_seconds;
        for (checker, count) in &summary.violations {
            *total.violations.entry(checker.clone()).or_default() += count;
        }
    }
    row(&mut out, &total);
    out
}

fn row(out: &mut String, summary: &Summary) {
    let mut notes = counts(&summary.violations);
    if notes.is_empty() {
        notes = "-".to_string();
    }
    if !summary.tolerated.is_empty() {
        let _ = write!(notes, " (expected: {})", counts(&summary.tolerated));
    }
    if summary.lww_lost_writes > 0 {
        let _ = write!(notes, " (lww lost writes: {})", summary.lww_lost_writes);
    }
    let _ = writeln!(
        out,
        "{:<28} {:>6} {:>10} {:>12} {:>10.0} {:>8.1}  {notes}",
        summary.name,
        summary.seeds,
        summary.ops,
        summary.events,
        summary.events_per_s(),
        summary.wall_seconds,
    );
}

fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter().map(|(checker, count)| format!("{checker}: {count}")).collect::<Vec<_>>().join(", ")
}

/// One replay command per failing seed.
pub fn replay_commands(summaries: &[Summary], paths: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for (summary, path) in summaries.iter().zip(paths) {
        for (seed, checkers) in &summary.failed_seeds {
            lines.push(format!(
                "FAILED {} seed {seed} [{}]: ringkv-sim replay {path} --seed {seed}",
                summary.name,
                checkers.join(", ")
            ));
        }
    }
    lines
}

/// The whole sweep as one JSON object.
pub fn json(summaries: &[Summary], seeds: &str, jobs: usize, elapsed_seconds: f64) -> String {
    let scenarios: Vec<String> = summaries
        .iter()
        .map(|summary| {
            let failed: Vec<String> =
                summary.failed_seeds.iter().map(|(seed, _)| seed.to_string()).collect();
            format!(
                "{{\"name\":{},\"seeds\":{},\"ops\":{},\"events\":{},\"events_per_s\":{:.1},\
                 \"sim_seconds\":{:.3},\"wall_seconds\":{:.3},\"violations\":{},\
                 \"tolerated\":{},\"lww_lost_writes\":{},\"failed_seeds\":[{}]}}",
                json_string(&summary.name),
                summary.seeds,
                summary.ops,
                summary.events,
                summary.events_per_s(),
                summary.sim_seconds,
                summary.wall_seconds,
                json_counts(&summary.violations),
                json_counts(&summary.tolerated),
                summary.lww_lost_writes,
                failed.join(","),
            )
        })
        .collect();
    format!(
        "{{\"seeds\":{},\"jobs\":{jobs},\"elapsed_seconds\":{elapsed_seconds:.3},\"scenarios\":[{}]}}",
        json_string(seeds),
        scenarios.join(",")
    )
}

fn json_counts(map: &BTreeMap<String, u64>) -> String {
    let fields: Vec<String> =
        map.iter().map(|(key, count)| format!("{}:{count}", json_string(key))).collect();
    format!("{{{}}}", fields.join(","))
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary {
        let mut summary = Summary {
            name: "a\"b".to_string(),
            seeds: 2,
            ops: 10,
            events: 1_000,
            sim_seconds: 3.0,
            wall_seconds: 0.5,
            ..Summary::default()
        };
        summary.violations.insert("lost-writes".to_string(), 1);
        summary.failed_seeds.push((7, vec!["lost-writes".to_string()]));
        summary
    }

    #[test]
    fn the_json_carries_every_required_field_and_escapes_names() {
        let text = json(&[summary()], "0..2", 2, 1.5);
        for field in [
            "\"name\":\"a\\\"b\"",
            "\"seeds\":2",
            "\"ops\":10",
            "\"events\":1000",
            "\"events_per_s\":2000.0",
            "\"sim_seconds\":3.000",
            "\"wall_seconds\":0.500",
            "\"violations\":{\"lost-writes\":1}",
            "\"failed_seeds\":[7]",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn the_table_has_a_row_per_scenario_and_a_total_and_replays_name_the_seed() {
        let text = table(&[summary(), summary()]);
        assert_eq!(text.lines().count(), 4);
        assert!(text.lines().last().unwrap().contains("lost-writes: 2"), "{text}");
        let lines = replay_commands(&[summary()], &["x.ron".to_string()]);
        assert_eq!(
            lines,
            vec!["FAILED a\"b seed 7 [lost-writes]: ringkv-sim replay x.ron --seed 7"]
        );
    }
}
