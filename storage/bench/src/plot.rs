//! Plots of benchmark JSON lines: grouped bars of throughput per test for ringkv and its peers,
//! with ringkv's ratio over each group, and a second panel of the latency percentiles.
//!
//! Two producers are understood, one JSON object per line:
//! - bench/cluster.sh: `{"target", "test", "pipeline", "rps", "p50_ms", "p99_ms", "durability",
//!   "round"}`; a test is its name, its pipeline when above 1, and its durability mode when the
//!   input has more than one;
//! - ringkv-storage-bench `--json`: `{"workload", "engine", "ops_per_s", "p50_us", "p99_us",
//!   "values", "compression", ...}`; rows without a throughput (`space_after_full_compaction`)
//!   are skipped. When the input has more than one value kind and compression, a test is its
//!   workload followed by both (`fillrandom text lz4`); lines without them (older runs) are one
//!   configuration.
//!
//! Every `pNN_ms` or `pNN_us` field is a latency percentile. Where a test and series appear more
//! than once (bench/cluster.sh with `ROUNDS`), each figure is the median of its rounds.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{Map, Value};

/// Why a plot could not be made.
#[derive(Debug)]
pub enum PlotError {
    /// Line `line` (from 1) of the input is not a row either producer prints.
    Line {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The input holds no row with a throughput.
    NoRows,
    /// Drawing or writing the SVG failed.
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Line { line, message } => write!(f, "line {line}: {message}"),
            PlotError::NoRows => write!(f, "no benchmark rows with a throughput in the input"),
            PlotError::Draw(e) => write!(f, "drawing the plot: {e}"),
        }
    }
}

impl std::error::Error for PlotError {}

/// Benchmark results ready to draw: per test and series, the median of its rounds.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Test names, in first-seen order.
    pub tests: Vec<String>,
    /// Series (ringkv and its peers), ringkv first, the others in first-seen order.
    pub series: Vec<String>,
    /// Latency percentile names (`p50`, `p99`, ...), ascending.
    pub percentiles: Vec<String>,
    /// The unit of every latency: `ms` or `us`.
    pub unit: String,
    /// (test index, series index) -> every round of it.
    rounds: BTreeMap<(usize, usize), Vec<Round>>,
}

/// One round of a test on a series: ops/s and latencies by percentile name.
type Round = (f64, BTreeMap<String, f64>);

impl Dataset {
    /// The median ops/s of `test` on `series`, if measured.
    pub fn ops_per_s(&self, test: usize, series: usize) -> Option<f64> {
        median(self.rounds.get(&(test, series))?.iter().map(|(ops, _)| *ops))
    }

    /// The median latency percentile `p` of `test` on `series`, if measured and above zero
    /// (ringkv-storage-bench writes 0 where it does not time single operations, as in readseq).
    pub fn latency(&self, test: usize, series: usize, p: &str) -> Option<f64> {
        let rounds = self.rounds.get(&(test, series))?;
        median(rounds.iter().filter_map(|(_, lat)| lat.get(p).copied())).filter(|v| *v > 0.0)
    }

    /// "ringkv vs fjall": a title for the plot when the caller has none.
    pub fn default_title(&self) -> String {
        let (first, rest) = self.series.split_first().map_or(("", &[][..]), |(f, r)| (f, r));
        format!("{first} vs {}", rest.join(", "))
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One parsed row: test name parts, series, ops/s and latencies.
struct Row {
    test: String,
    pipeline: u64,
    durability: Option<String>,
    /// The storage bench's value kind and compression (`text lz4`), if the line has them.
    configuration: Option<String>,
    series: String,
    ops_per_s: f64,
    latencies: BTreeMap<String, f64>,
}

/// Parses JSON lines from bench/cluster.sh or ringkv-storage-bench `--json`; blank lines and
/// lines that do not start with `{` (such as cluster.sh's ratio table) are skipped.
pub fn parse(text: &str) -> Result<Dataset, PlotError> {
    let mut data = Dataset::default();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if !line.trim_start().starts_with('{') {
            continue;
        }
        let err = |message: String| PlotError::Line { line: line_no, message };
        let value: Value =
            serde_json::from_str(line).map_err(|e| err(format!("not a JSON object: {e}")))?;
        let obj = value.as_object().ok_or_else(|| err("not a JSON object".into()))?;
        let Some(row) = parse_row(obj).map_err(err)? else {
            continue;
        };
        for (name, unit) in row.latencies.keys().map(|k| k.split_at(k.len() - 3)) {
            let unit = &unit[1..];
            if data.unit.is_empty() {
                data.unit = unit.to_string();
            } else if data.unit != unit {
                return Err(err(format!("latency in {unit}, earlier lines in {}", data.unit)));
            }
            if !data.percentiles.iter().any(|p| p == name) {
                data.percentiles.push(name.to_string());
            }
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(PlotError::NoRows);
    }
    let modes: Vec<&Option<String>> = rows.iter().map(|r| &r.durability).collect();
    let several_modes = modes.iter().any(|m| *m != modes[0]);
    let configurations: Vec<&Option<String>> = rows.iter().map(|r| &r.configuration).collect();
    let several_configurations = configurations.iter().any(|c| *c != configurations[0]);
    let position = |names: &mut Vec<String>, name: String| {
        names.iter().position(|n| *n == name).unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        })
    };
    if rows.iter().any(|r| r.series == "ringkv") {
        data.series.push("ringkv".into());
    }
    for row in rows {
        let mut test = row.test;
        if row.pipeline > 1 {
            test = format!("{test} P{}", row.pipeline);
        }
        if let (true, Some(mode)) = (several_modes, &row.durability) {
            test = format!("{test} {mode}");
        }
        if let (true, Some(configuration)) = (several_configurations, &row.configuration) {
            test = format!("{test} {configuration}");
        }
        let t = position(&mut data.tests, test);
        let s = position(&mut data.series, row.series);
        let lat = row.latencies.into_iter().map(|(k, v)| (k[..k.len() - 3].to_string(), v));
        data.rounds.entry((t, s)).or_default().push((row.ops_per_s, lat.collect()));
    }
    data.percentiles.sort_by_key(|p| p[1..].parse::<f64>().map_or(u64::MAX, |v| (v * 1e3) as u64));
    Ok(data)
}

/// One row of either producer; `Ok(None)` for a row without a throughput.
fn parse_row(obj: &Map<String, Value>) -> Result<Option<Row>, String> {
    let text = |key: &str| match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("\"{key}\" is {other}, not a string")),
        None => Err(format!("no \"{key}\" field")),
    };
    let (test, series, ops) = if obj.contains_key("target") {
        (text("test")?, text("target")?, "rps")
    } else if obj.contains_key("workload") {
        (text("workload")?, text("engine")?, "ops_per_s")
    } else {
        return Err("neither a bench/cluster.sh row (\"target\", \"test\", \"rps\") nor a \
                    ringkv-storage-bench row (\"workload\", \"engine\", \"ops_per_s\")"
            .into());
    };
    let ops_per_s = match obj.get(ops) {
        Some(Value::Null) => return Ok(None),
        Some(v) => v.as_f64().ok_or_else(|| format!("\"{ops}\" is {v}, not a number"))?,
        None => return Err(format!("no \"{ops}\" field")),
    };
    let mut latencies = BTreeMap::new();
    for (key, v) in obj {
        let is_percentile = key.len() > 4
            && key.starts_with('p')
            && (key.ends_with("_ms") || key.ends_with("_us"))
            && key[1..key.len() - 3].parse::<f64>().is_ok();
        if let (true, Some(v)) = (is_percentile, v.as_f64()) {
            latencies.insert(key.clone(), v);
        }
    }
    Ok(Some(Row {
        test,
        pipeline: obj.get("pipeline").and_then(Value::as_u64).unwrap_or(1),
        durability: obj.get("durability").and_then(Value::as_str).map(str::to_string),
        configuration: match (obj.get("values"), obj.get("compression")) {
            (Some(Value::String(values)), Some(Value::String(compression))) => {
                Some(format!("{values} {compression}"))
            }
            _ => None,
        },
        series,
        ops_per_s,
        latencies,
    }))
}

/// Colours of the series, in order (then repeating).
const PALETTE: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// Series `s`'s colour, lightened towards white by `lighten` (0 to 1).
fn colour(s: usize, lighten: f64) -> RGBColor {
    let RGBColor(r, g, b) = PALETTE[s % PALETTE.len()];
    let mix = |c: u8| (f64::from(c) + (255.0 - f64::from(c)) * lighten).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// 12000 -> "12k": the y labels of a log axis spanning several decades.
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", v / 1e6),
        a if a >= 1e3 => format!("{}k", v / 1e3),
        _ => format!("{v}"),
    }
}

/// One bar to draw: test, position within its group, colour and height.
struct Bar {
    test: usize,
    slot: usize,
    colour: RGBColor,
    value: f64,
}

/// Draws `data` as an SVG document: throughput above, latency percentiles below.
pub fn render_svg(data: &Dataset, title: &str) -> Result<String, PlotError> {
    let (ns, np) = (data.series.len(), data.percentiles.len().max(1));
    // Wide enough that every latency bar of a group gets about 16 px and its label fits.
    let group_px = (ns * np * 16 + 40).max(110) as u32;
    // And wide enough for the title: about 9 px a character at its size.
    let title_px = title.chars().count() as u32 * 9 + 40;
    let size = ((120 + group_px * data.tests.len().max(1) as u32).max(title_px), 860);
    let mut svg = String::new();
    draw(data, title, size, &mut svg).map_err(|e| PlotError::Draw(e.to_string()))?;
    Ok(svg)
}

/// Parses `jsonl` and writes its plot to `out`.
pub fn write_svg(jsonl: &str, title: Option<&str>, out: &Path) -> Result<Dataset, PlotError> {
    let data = parse(jsonl)?;
    let svg = render_svg(&data, title.unwrap_or(&data.default_title()))?;
    std::fs::write(out, svg).map_err(|e| PlotError::Draw(format!("{}: {e}", out.display())))?;
    Ok(data)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(data: &Dataset, title: &str, size: (u32, u32), svg: &mut String) -> DrawResult {
    let root = SVGBackend::with_string(svg, size).into_drawing_area();
    root.fill(&WHITE)?;
    let (ns, np) = (data.series.len(), data.percentiles.len().max(1));
    let root = root.titled(title, ("sans-serif", 20))?;
    let (top, bottom) = root.split_vertically(size.1 / 2 - 20);
    let ours = data.series.iter().position(|s| s == "ringkv").unwrap_or(0);
    let peers: Vec<&str> =
        data.series.iter().enumerate().filter(|(s, _)| *s != ours).map(|(_, n)| &**n).collect();

    let mut bars = Vec::new();
    for t in 0..data.tests.len() {
        for s in 0..data.series.len() {
            if let Some(value) = data.ops_per_s(t, s) {
                bars.push(Bar { test: t, slot: s, colour: colour(s, 0.0), value });
            }
        }
    }
    let caption =
        format!("throughput, ops/s; over each test: {} / {}", data.series[ours], peers.join(", "));
    let ratios: Vec<String> = (0..data.tests.len())
        .map(|t| {
            let ratio = |p: usize| Some(data.ops_per_s(t, ours)? / data.ops_per_s(t, p)?);
            let peers = (0..data.series.len()).filter(|p| *p != ours);
            let labels: Vec<String> = peers.filter_map(ratio).map(|r| format!("{r:.2}x")).collect();
            labels.join(" ")
        })
        .collect();
    let names: Vec<String> = data.series.clone();
    panel(&top, data, &caption, "ops/s", &bars, ns, &names, &ratios)?;

    let mut bars = Vec::new();
    let mut names = Vec::new();
    for s in 0..data.series.len() {
        for (j, p) in data.percentiles.iter().enumerate() {
            // The lowest percentile palest, the highest in the series' full colour.
            let lighten = 0.6 * (np - 1 - j) as f64 / (np - 1).max(1) as f64;
            names.push(format!("{} {p}", data.series[s]));
            for t in 0..data.tests.len() {
                if let Some(value) = data.latency(t, s, p) {
                    bars.push(Bar { test: t, slot: s * np + j, colour: colour(s, lighten), value });
                }
            }
        }
    }
    let caption = format!("latency percentiles, {} (log scale)", data.unit);
    let unit = format!("latency, {}", data.unit);
    panel(&bottom, data, &caption, &unit, &bars, ns * np, &names, &[])?;
    root.present()?;
    Ok(())
}

/// One panel of grouped bars on a log axis: a group per test of `slots` bars, test names under
/// the groups, `above` over them, and a legend naming each slot (its colour is the slot's).
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    data: &Dataset,
    caption: &str,
    y_desc: &str,
    bars: &[Bar],
    slots: usize,
    names: &[String],
    above: &[String],
) -> DrawResult {
    let Some(max) = bars.iter().map(|b| b.value).max_by(f64::total_cmp) else {
        let style = ("sans-serif", 15).into_font().color(&BLACK);
        area.draw(&Text::new(format!("{caption}: none in the input"), (60, 40), style))?;
        return Ok(());
    };
    let min = bars.iter().map(|b| b.value).min_by(f64::total_cmp).unwrap_or(max);
    // Whole decades, the lowest below every bar (so each shows) and room for labels on top.
    let lo = 10f64.powf((min * 0.9).log10().floor());
    let hi = 10f64.powf((max * 4.0).log10().ceil());
    let n = data.tests.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..n, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| short(*v))
        .draw()?;
    let width = 0.8 / slots as f64;
    for (slot, name) in names.iter().enumerate() {
        let mine = bars.iter().filter(|b| b.slot == slot);
        let Some(fill) = bars.iter().find(|b| b.slot == slot).map(|b| b.colour) else {
            continue;
        };
        let rects = mine.map(|b| {
            let x = b.test as f64 + 0.1 + width * b.slot as f64;
            Rectangle::new([(x, lo), (x + width, b.value)], fill.filled())
        });
        chart
            .draw_series(rects)?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 5, y), 5, fill.filled()));
    }
    let centre = Pos::new(HPos::Center, VPos::Bottom);
    let label = ("sans-serif", 13).into_font().color(&BLACK).pos(centre);
    for (t, text) in above.iter().enumerate() {
        let top = bars.iter().filter(|b| b.test == t).map(|b| b.value).fold(lo, f64::max);
        chart.draw_series([Text::new(
            text.clone(),
            (t as f64 + 0.5, top * 1.15),
            label.clone(),
        )])?;
    }
    let name_style =
        ("sans-serif", 13).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
    let (x0, y0) = area.get_base_pixel();
    for (t, test) in data.tests.iter().enumerate() {
        // Test names in pixels under the axis: an f64 axis would put its ticks at round numbers.
        let (x, y) = chart.backend_coord(&(t as f64 + 0.5, lo));
        area.draw(&Text::new(test.clone(), (x - x0, y - y0 + 6), name_style.clone()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
#[path = "plot_tests.rs"]
mod tests;
