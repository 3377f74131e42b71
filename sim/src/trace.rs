//! The run's trace: a hash over every event, and on request a readable log.
//!
//! Owns: an XXH3 streaming hasher and, when asked, the log lines. Input: one record per event
//! processed (time, node, a kind code and a detail word), plus the line's text when logging.
//! Output: the trace hash (always) and the lines (when logging; at most `lines_max`).
//!
//! Two runs of the same seed and code must produce the same hash; a different hash means the
//! run is not deterministic (or the code changed). The hash covers the binary record, never
//! the text, so logging does not change it.

use ringkv_core::Instant;
use xxhash_rust::xxh3::Xxh3;

/// The trace of one run.
pub struct Trace {
    hasher: Xxh3,
    lines: Option<Vec<String>>,
    lines_max: usize,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace").field("hash", &self.hash()).finish_non_exhaustive()
    }
}

impl Trace {
    /// A trace that logs text when `log` is set, keeping at most `lines_max` lines.
    pub fn new(log: bool, lines_max: usize) -> Self {
        Trace { hasher: Xxh3::new(), lines: log.then(Vec::new), lines_max }
    }

    /// Whether lines are being logged (so callers can skip formatting).
    pub fn is_logging(&self) -> bool {
        self.lines.as_ref().is_some_and(|lines| lines.len() < self.lines_max)
    }

    /// Records an event: its binary form goes into the hash; `text` is called only when logging.
    pub fn record(
        &mut self,
        at: Instant,
        node: Option<usize>,
        code: u8,
        detail: u64,
        text: impl FnOnce() -> String,
    ) {
        let mut record = [0u8; 21];
        record[..8].copy_from_slice(&at.as_nanos().to_le_bytes());
        let node = node.map_or(u32::MAX, |node| node as u32);
        record[8..12].copy_from_slice(&node.to_le_bytes());
        record[12] = code;
        record[13..].copy_from_slice(&detail.to_le_bytes());
        self.hasher.update(&record);
        if self.is_logging() {
            let who = match node {
                u32::MAX => "sim".to_string(),
                node => format!("n{}", node + 1),
            };
            let line = format!("{at} {who} {}", text());
            if let Some(lines) = self.lines.as_mut() {
                lines.push(line);
            }
        }
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    /// The logged lines.
    pub fn into_lines(self) -> Vec<String> {
        self.lines.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_field_and_ignores_logging() {
        let hash = |node: Option<usize>, detail: u64, log: bool| {
            let mut trace = Trace::new(log, 10);
            trace.record(Instant::from_nanos(5), node, 1, detail, || "event".to_string());
            trace.hash()
        };
        assert_eq!(hash(Some(1), 2, false), hash(Some(1), 2, true));
        assert_ne!(hash(Some(1), 2, false), hash(Some(2), 2, false));
        assert_ne!(hash(Some(1), 2, false), hash(Some(1), 3, false));
        assert_ne!(hash(None, 2, false), hash(Some(1), 2, false));
    }

    #[test]
    fn the_log_keeps_at_most_lines_max_lines() {
        let mut trace = Trace::new(true, 2);
        for step in 0..5 {
            trace.record(Instant::from_nanos(step), Some(0), 0, step, || format!("step {step}"));
        }
        let lines = trace.into_lines();
        assert_eq!(lines, vec!["0.000000s n1 step 0", "0.000000s n1 step 1"]);
    }
}
