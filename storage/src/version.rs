//! The shape of the tree: which tables are in which level, sorted for reads, and the choice of
//! the next compaction.
//!
//! Level 0 holds flushed tables (and, in size-tiered mode, every sorted run), newest first by
//! largest sequence number; their sequence ranges are disjoint, so the first table that has a
//! key holds its newest version. Levels 1 and up hold tables with disjoint user-key ranges sorted
//! by smallest key, and no user key is split across two tables of one level; a key's versions in
//! a level are newer than its versions in any deeper level.

use std::sync::Arc;

use crate::manifest::{FileMeta, ManifestState};

/// How tables are merged over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionStyle {
    /// LevelDB/RocksDB leveled compaction: low space and read amplification.
    Leveled,
    /// Size-tiered: sorted runs of similar size are merged together; lower write amplification.
    SizeTiered,
}

/// Compaction knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// Leveled or size-tiered.
    pub style: CompactionStyle,
    /// Number of levels (leveled).
    pub levels_count: usize,
    /// Level-0 tables that trigger a compaction into level 1 (leveled).
    pub level0_files_trigger: usize,
    /// Level-0 tables (runs, size-tiered) at which writes stall until compaction catches up.
    pub level0_files_stall: usize,
    /// Target size of level 1 (leveled).
    pub level1_bytes_max: u64,
    /// Each level is this many times larger than the one above (leveled).
    pub level_bytes_multiplier: u64,
    /// Output tables are cut at about this size (leveled).
    pub table_file_bytes_max: u64,
    /// Runs of similar size that trigger a merge (size-tiered).
    pub tiered_runs_trigger: usize,
    /// Most runs merged at once (size-tiered).
    pub tiered_runs_max: usize,
    /// Runs are "similar" when within this factor of each other (size-tiered).
    pub tiered_size_ratio: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            style: CompactionStyle::Leveled,
            levels_count: 7,
            level0_files_trigger: 4,
            level0_files_stall: 24,
            level1_bytes_max: 64 << 20,
            level_bytes_multiplier: 10,
            table_file_bytes_max: 8 << 20,
            tiered_runs_trigger: 4,
            tiered_runs_max: 16,
            tiered_size_ratio: 4,
        }
    }
}

/// Tables per level, sorted for reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Version {
    pub levels: Vec<Vec<Arc<FileMeta>>>,
}

impl Version {
    pub fn from_state(state: &ManifestState) -> Version {
        let mut levels: Vec<Vec<Arc<FileMeta>>> =
            state.levels.iter().map(|l| l.values().cloned().collect()).collect();
        if let Some(l0) = levels.first_mut() {
            l0.sort_by(|a, b| b.max_seq.cmp(&a.max_seq).then(b.number.cmp(&a.number)));
        }
        for l in levels.iter_mut().skip(1) {
            l.sort_by(|a, b| a.smallest_user().cmp(b.smallest_user()));
        }
        Version { levels }
    }

    pub fn level_bytes(&self, level: usize) -> u64 {
        self.levels[level].iter().map(|f| f.size_bytes).sum()
    }

    pub fn files_count(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// The table in sorted level `level >= 1` that may hold `user`.
    pub fn find_in_level(&self, level: usize, user: &[u8]) -> Option<&Arc<FileMeta>> {
        let files = &self.levels[level];
        let i = files.partition_point(|f| f.largest_user() < user);
        files.get(i).filter(|f| f.smallest_user() <= user)
    }

    /// Tables of `level` whose key range meets [lo, hi].
    pub fn overlapping(&self, level: usize, lo: &[u8], hi: &[u8]) -> Vec<Arc<FileMeta>> {
        self.levels[level].iter().filter(|f| f.overlaps(lo, hi)).cloned().collect()
    }

    /// True if no level deeper than `level` has a table meeting [lo, hi].
    pub fn is_bottommost(&self, level: usize, lo: &[u8], hi: &[u8]) -> bool {
        self.levels.iter().skip(level + 1).all(|l| l.iter().all(|f| !f.overlaps(lo, hi)))
    }
}

/// A compaction chosen by [`pick`].
#[derive(Debug, Clone)]
pub(crate) struct Pick {
    /// (level, table) inputs.
    pub inputs: Vec<(usize, Arc<FileMeta>)>,
    pub output_level: usize,
    /// Tombstones and expired entries may be dropped: nothing older can be below.
    pub bottommost: bool,
    /// Outputs are cut at the table size limit (false in size-tiered mode: one run, one file).
    pub split_outputs: bool,
    /// A single input moves down a level without being rewritten.
    pub trivial_move: bool,
}

/// Chooses the next compaction, if any is due. `cursor` is the per-level round-robin position.
pub(crate) fn pick(v: &Version, opts: &CompactionOptions, cursor: &mut [Vec<u8>]) -> Option<Pick> {
    match opts.style {
        CompactionStyle::Leveled => pick_leveled(v, opts, cursor),
        CompactionStyle::SizeTiered => pick_tiered(v, opts),
    }
}

/// Chooses a compaction of every table into one (the deepest non-empty level, at least 1).
pub(crate) fn pick_full(v: &Version, opts: &CompactionOptions) -> Option<Pick> {
    let inputs: Vec<(usize, Arc<FileMeta>)> = v
        .levels
        .iter()
        .enumerate()
        .flat_map(|(l, files)| files.iter().map(move |f| (l, f.clone())))
        .collect();
    let single_run = match opts.style {
        CompactionStyle::Leveled => inputs.iter().all(|(l, _)| *l == opts.levels_count - 1),
        CompactionStyle::SizeTiered => inputs.len() <= 1,
    };
    if inputs.is_empty() || single_run {
        return None;
    }
    let output_level = match opts.style {
        CompactionStyle::Leveled => opts.levels_count - 1,
        CompactionStyle::SizeTiered => 0,
    };
    Some(Pick {
        inputs,
        output_level,
        bottommost: true,
        split_outputs: opts.style == CompactionStyle::Leveled,
        trivial_move: false,
    })
}

fn level_target(opts: &CompactionOptions, level: usize) -> u64 {
    let mut t = opts.level1_bytes_max;
    for _ in 1..level {
        t = t.saturating_mul(opts.level_bytes_multiplier);
    }
    t
}

fn pick_leveled(v: &Version, opts: &CompactionOptions, cursor: &mut [Vec<u8>]) -> Option<Pick> {
    let last = opts.levels_count - 1;
    // Score each level: L0 by table count, deeper levels by size over target.
    let mut best: Option<(f64, usize)> = None;
    let l0 = v.levels[0].len() as f64 / opts.level0_files_trigger.max(1) as f64;
    if l0 >= 1.0 {
        best = Some((l0, 0));
    }
    for level in 1..last {
        let score = v.level_bytes(level) as f64 / level_target(opts, level) as f64;
        if score >= 1.0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, level));
        }
    }
    let (_, level) = best?;
    let mut inputs: Vec<(usize, Arc<FileMeta>)> = if level == 0 {
        v.levels[0].iter().map(|f| (0, f.clone())).collect()
    } else {
        // Round-robin over the level's key space, so every key range gets its turn.
        let files = &v.levels[level];
        let i = files.partition_point(|f| f.smallest_user() <= &cursor[level][..]);
        let f = files.get(i).or_else(|| files.first())?;
        cursor[level] = f.largest_user().to_vec();
        vec![(level, f.clone())]
    };
    let lo = inputs.iter().map(|(_, f)| f.smallest_user()).min()?.to_vec();
    let hi = inputs.iter().map(|(_, f)| f.largest_user()).max()?.to_vec();
    let output_level = level + 1;
    let below = v.overlapping(output_level, &lo, &hi);
    let trivial_move = inputs.len() == 1 && below.is_empty();
    inputs.extend(below.into_iter().map(|f| (output_level, f)));
    // The output range may widen with the next level's tables; check against the widest.
    let lo2 = inputs.iter().map(|(_, f)| f.smallest_user()).min()?.to_vec();
    let hi2 = inputs.iter().map(|(_, f)| f.largest_user()).max()?.to_vec();
    Some(Pick {
        bottommost: v.is_bottommost(output_level, &lo2, &hi2),
        inputs,
        output_level,
        split_outputs: true,
        trivial_move,
    })
}

fn pick_tiered(v: &Version, opts: &CompactionOptions) -> Option<Pick> {
    // Runs are level-0 tables, newest first. Merge the first window of contiguous runs whose
    // sizes are within the ratio of each other: contiguity keeps the sequence ranges disjoint.
    let runs = &v.levels[0];
    let trigger = opts.tiered_runs_trigger.max(2);
    for start in 0..runs.len() {
        let (mut lo, mut hi) = (runs[start].size_bytes.max(1), runs[start].size_bytes.max(1));
        let mut end = start + 1;
        while end < runs.len() && end - start < opts.tiered_runs_max {
            let s = runs[end].size_bytes.max(1);
            let (nlo, nhi) = (lo.min(s), hi.max(s));
            if nhi > nlo.saturating_mul(opts.tiered_size_ratio) {
                break;
            }
            (lo, hi) = (nlo, nhi);
            end += 1;
        }
        if end - start >= trigger {
            return Some(tiered_pick(runs, start, end));
        }
    }
    // Too many runs of too different sizes: merge the newest ones anyway, so the run count (and
    // with it read amplification and write stalls) stays bounded.
    if runs.len() > opts.level0_files_stall / 2 {
        let end = runs.len().min(opts.tiered_runs_max.max(2));
        return Some(tiered_pick(runs, 0, end));
    }
    None
}

fn tiered_pick(runs: &[Arc<FileMeta>], start: usize, end: usize) -> Pick {
    Pick {
        inputs: runs[start..end].iter().map(|f| (0, f.clone())).collect(),
        output_level: 0,
        bottommost: end == runs.len(),
        split_outputs: false,
        trivial_move: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{internal_key, Kind};
    use bytes::Bytes;

    fn meta(number: u64, lo: &str, hi: &str, size: u64, seq: u64) -> FileMeta {
        FileMeta {
            number,
            size_bytes: size,
            smallest: Bytes::from(internal_key(lo.as_bytes(), seq, Kind::Put)),
            largest: Bytes::from(internal_key(hi.as_bytes(), seq, Kind::Put)),
            entries: 1,
            min_seq: seq,
            max_seq: seq,
        }
    }

    fn version(files: &[(usize, FileMeta)]) -> Version {
        let mut st = ManifestState::new(7);
        for (l, f) in files {
            st.levels[*l].insert(f.number, Arc::new(f.clone()));
        }
        Version::from_state(&st)
    }

    #[test]
    fn level0_is_newest_first_and_triggers_a_compaction_with_overlapping_level1() {
        let v = version(&[
            (0, meta(1, "a", "c", 10, 1)),
            (0, meta(2, "b", "d", 10, 4)),
            (0, meta(3, "a", "b", 10, 2)),
            (0, meta(4, "c", "e", 10, 3)),
            (1, meta(5, "a", "b", 10, 0)),
            (1, meta(6, "x", "z", 10, 0)),
        ]);
        assert_eq!(v.levels[0][0].number, 2);
        let opts = CompactionOptions::default();
        let mut cursor = vec![Vec::new(); 7];
        let p = pick(&v, &opts, &mut cursor).unwrap();
        assert_eq!(p.output_level, 1);
        let nums: Vec<u64> = p.inputs.iter().map(|(_, f)| f.number).collect();
        assert_eq!(nums, vec![2, 4, 3, 1, 5]);
        assert!(p.bottommost);
        assert!(!p.trivial_move);
    }

    #[test]
    fn find_in_level_uses_key_ranges() {
        let v = version(&[(1, meta(5, "a", "c", 10, 0)), (1, meta(6, "m", "p", 10, 0))]);
        assert_eq!(v.find_in_level(1, b"b").map(|f| f.number), Some(5));
        assert_eq!(v.find_in_level(1, b"d").map(|f| f.number), None);
        assert_eq!(v.find_in_level(1, b"p").map(|f| f.number), Some(6));
        assert!(!v.is_bottommost(0, b"a", b"b"));
        assert!(v.is_bottommost(1, b"a", b"b"));
    }

    #[test]
    fn tiered_merges_dissimilar_runs_once_there_are_too_many() {
        let opts = CompactionOptions {
            style: CompactionStyle::SizeTiered,
            level0_files_stall: 8,
            ..CompactionOptions::default()
        };
        // Every run is 10x the next: never three similar ones in a row.
        let files: Vec<(usize, FileMeta)> = (0..5u32)
            .map(|i| (0, meta(u64::from(i) + 1, "a", "z", 10u64.pow(6 - i), u64::from(i) + 1)))
            .collect();
        let mut cursor = vec![Vec::new(); 7];
        let p = pick(&version(&files), &opts, &mut cursor).unwrap();
        assert_eq!(p.inputs.len(), 5, "all runs merged");
        assert!(p.bottommost);
        assert!(pick(&version(&files[..4]), &opts, &mut cursor).is_none());
    }

    #[test]
    fn tiered_merges_contiguous_similar_runs_only() {
        let opts = CompactionOptions {
            style: CompactionStyle::SizeTiered,
            ..CompactionOptions::default()
        };
        let v = version(&[
            (0, meta(1, "a", "z", 1000, 1)),
            (0, meta(2, "a", "z", 10, 2)),
            (0, meta(3, "a", "z", 12, 3)),
            (0, meta(4, "a", "z", 11, 4)),
        ]);
        let mut cursor = vec![Vec::new(); 7];
        assert!(pick(&v, &opts, &mut cursor).is_none(), "only three similar runs");
        let v = version(&[
            (0, meta(1, "a", "z", 1000, 1)),
            (0, meta(2, "a", "z", 10, 2)),
            (0, meta(3, "a", "z", 12, 3)),
            (0, meta(4, "a", "z", 11, 4)),
            (0, meta(5, "a", "z", 9, 5)),
        ]);
        let p = pick(&v, &opts, &mut cursor).unwrap();
        let nums: Vec<u64> = p.inputs.iter().map(|(_, f)| f.number).collect();
        assert_eq!(nums, vec![5, 4, 3, 2]);
        assert!(!p.bottommost, "the oldest run is not merged");
    }
}
