//! `ringkv-sim`: list, run, replay and shrink simulation scenarios.
//!
//! `run` spreads seeds over worker threads with a progress bar on stderr (hidden when stderr is
//! not a terminal), prints a summary table (or `--json`), one replay command per failing seed,
//! and exits 1 on any violation the scenarios do not expect.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ringkv_core::planted::{arm, PlantedBug};
use ringkv_scenarios::hunt::hunt;
use ringkv_scenarios::library::{library_dir, load, resolve};
use ringkv_scenarios::shrink::shrink;
use ringkv_scenarios::{output, run_seed, sweep, timeline, Scenario};

// A run allocates and frees small objects on every simulated event (versioned objects, their
// encodings, messages, history entries); under glibc's malloc its arenas were about a fifth of
// the main job's samples (perf, 2026-12-08), mimalloc's thread-local free lists far less. The
// allocator does not touch the traces: nothing in a run depends on addresses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seeds per scenario of `run` when `--seeds` is not given: the whole library then takes about
/// three minutes in release on two cores (see the README).
const DEFAULT_SEEDS_COUNT: u64 = 60;

#[derive(Debug, Parser)]
#[command(name = "ringkv-sim", about = "Run ringkv's simulation scenarios over many seeds")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Lists the scenarios of a folder (default: the built-in library).
    List {
        /// A scenario folder or file.
        path: Option<PathBuf>,
    },
    /// Runs scenarios over a range of seeds.
    Run {
        /// A scenario file, a folder of them, or a name in the built-in library.
        path: String,
        /// Seeds as A..B (B excluded) or a count N (0..N).
        #[arg(long)]
        seeds: Option<String>,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Prints the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replays one seed of a scenario and prints its report (and event log with --trace).
    Replay {
        /// A scenario file or a name in the built-in library.
        scenario: String,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Prints the readable event log.
        #[arg(long)]
        trace: bool,
        /// Only log lines about this node (`3` or `n3`).
        #[arg(long)]
        node: Option<String>,
        /// Only log lines that mention this key (`key00007`, or its number `7`).
        #[arg(long)]
        key: Option<String>,
        /// Arms this planted bug for the run (needs `--features planted-bugs`).
        #[arg(long)]
        planted: Option<String>,
        /// Writes the run's timeline to this file: one self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Arms each planted bug in turn (build with `--features planted-bugs`) and reports which
    /// checker caught it, after how many runs and seconds.
    Hunt {
        /// Scenario file, folder or library name to hunt with (default: the whole library).
        path: Option<String>,
        /// Seeds to try per scenario, as A..B or a count.
        #[arg(long, default_value = "0..10")]
        seeds: String,
        /// Most seconds per bug.
        #[arg(long, default_value_t = 90.0)]
        seconds_max: f64,
        /// Worker threads (default: every core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Hunt only these planted bugs (comma-separated names; default: all of them).
        #[arg(long, value_delimiter = ',')]
        bug: Vec<String>,
    },
    /// Cuts a failing seed's scenario down and writes it as a regression file.
    Shrink {
        /// A scenario file or a name in the built-in library.
        scenario: String,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Where to write the regression file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Arms this planted bug for every run (needs `--features planted-bugs`).
        #[arg(long)]
        planted: Option<String>,
        /// Writes the shrunk run's timeline to this file: one self-contained HTML page.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::List { path } => list(&path.unwrap_or_else(library_dir)),
        Command::Run { path, seeds, jobs, json } => run(&path, seeds.as_deref(), jobs, json),
        Command::Replay { scenario, seed, trace, node, key, planted, html } => {
            arm_planted(planted.as_deref()).and_then(|()| {
                let filters = LogFilters { trace, node: node.as_deref(), key: key.as_deref() };
                let html = html.as_deref().map(|path| (path, planted.as_deref()));
                replay(&scenario, seed, &filters, html)
            })
        }
        Command::Shrink { scenario, seed, out, planted, html } => arm_planted(planted.as_deref())
            .and_then(|()| {
                shrink_command(&scenario, seed, out, planted.as_deref(), html.as_deref())
            }),
        Command::Hunt { path, seeds, seconds_max, jobs, bug } => {
            hunt_command(path.as_deref(), &seeds, seconds_max, jobs, &bug)
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn list(path: &Path) -> Result<ExitCode, String> {
    let scenarios = load(path).map_err(|error| error.to_string())?;
    let mut stdout = std::io::stdout().lock();
    for (_, scenario) in &scenarios {
        let disk = format!("{:?}", scenario.disk);
        let written = writeln!(
            stdout,
            "{:<28} {:>2} nodes N={} {:?} {:<3} {}",
            scenario.name,
            scenario.cluster.nodes,
            scenario.keyspace.replicas,
            scenario.keyspace.conflict,
            disk,
            scenario.description.lines().next().unwrap_or("")
        );
        // A closed pipe (`| head`) ends the listing quietly.
        if written.is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_seeds(seeds: Option<&str>) -> Result<std::ops::Range<u64>, String> {
    let Some(text) = seeds else {
        return Ok(0..DEFAULT_SEEDS_COUNT);
    };
    let bad = || format!("--seeds {text:?}: expected A..B or a count");
    match text.split_once("..") {
        Some((from, to)) => {
            let from: u64 = from.trim().parse().map_err(|_| bad())?;
            let to: u64 = to.trim().parse().map_err(|_| bad())?;
            if to <= from {
                return Err(bad());
            }
            Ok(from..to)
        }
        None => Ok(0..text.trim().parse().map_err(|_| bad())?),
    }
}

fn run(
    path: &str,
    seeds: Option<&str>,
    jobs: Option<usize>,
    json: bool,
) -> Result<ExitCode, String> {
    let seeds = parse_seeds(seeds)?;
    let loaded = load(&resolve(path)).map_err(|error| error.to_string())?;
    let paths: Vec<String> = loaded.iter().map(|(path, _)| path.display().to_string()).collect();
    let scenarios: Vec<Scenario> = loaded.into_iter().map(|(_, scenario)| scenario).collect();
    let jobs = jobs.unwrap_or_else(cores);
    let total = scenarios.len() as u64 * (seeds.end - seeds.start);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {per_sec}, eta {eta} {msg}",
    )
    .map_err(|error| error.to_string())?;
    bar.set_style(style.progress_chars("=> "));
    let started = Instant::now();
    let mut violations = 0u64;
    let summaries = sweep(&scenarios, seeds.clone(), jobs, |index, outcome| {
        if !outcome.is_ok() {
            violations += 1;
            bar.println(format!(
                "FAILED {} seed {}: {}",
                scenarios[index].name,
                outcome.seed,
                outcome.violations.first().map_or("", |(checker, _)| checker.as_str())
            ));
        }
        bar.set_message(format!("{violations} failing seeds"));
        bar.inc(1);
    });
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let replays = output::replay_commands(&summaries, &paths);
    if json {
        let range = format!("{}..{}", seeds.start, seeds.end);
        println!("{}", output::json(&summaries, &range, jobs, elapsed));
        replays.iter().for_each(|line| eprintln!("{line}"));
    } else {
        print!("{}", output::table(&summaries));
        println!(
            "{} seeds of {} scenarios in {elapsed:.1} s on {jobs} threads",
            total,
            scenarios.len()
        );
        replays.iter().for_each(|line| println!("{line}"));
    }
    Ok(if replays.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Arms the planted bug named `name` on this (the main) thread, where replay and shrink run.
/// The planted bug named `name` (kebab case).
fn planted_bug(name: &str) -> Result<PlantedBug, String> {
    let names: Vec<&str> = PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
    PlantedBug::ALL
        .into_iter()
        .find(|bug| bug.name() == name)
        .ok_or_else(|| format!("no planted bug {name:?} (known: {})", names.join(", ")))
}

fn arm_planted(name: Option<&str>) -> Result<(), String> {
    let Some(name) = name else { return Ok(()) };
    let bug = planted_bug(name)?;
    if !arm(Some(bug)) {
        return Err("built without planted bugs: add `--features planted-bugs`".to_string());
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1)
}

fn hunt_command(
    path: Option<&str>,
    seeds: &str,
    seconds_max: f64,
    jobs: Option<usize>,
    bug_names: &[String],
) -> Result<ExitCode, String> {
    if !ringkv_core::planted::COMPILED_IN {
        return Err("built without planted bugs: add `--features planted-bugs`".to_string());
    }
    let bugs: Vec<PlantedBug> = if bug_names.is_empty() {
        PlantedBug::ALL.to_vec()
    } else {
        bug_names.iter().map(|name| planted_bug(name)).collect::<Result<_, _>>()?
    };
    let seeds = parse_seeds(Some(seeds))?;
    let folder = path.map_or_else(library_dir, resolve);
    let scenarios: Vec<Scenario> = load(&folder)
        .map_err(|error| error.to_string())?
        .into_iter()
        .map(|(_, scenario)| scenario)
        .collect();
    let started = Instant::now();
    let results =
        hunt(&bugs, &scenarios, seeds, jobs.unwrap_or_else(cores), seconds_max, |result| {
            eprintln!(
                "{}: {}",
                result.bug.name(),
                if result.caught.is_some() { "caught" } else { "missed" }
            );
        });
    println!("{:<28} {:>6} {:>6} {:>8}  caught by", "planted bug", "caught", "runs", "seconds");
    let mut missed = 0;
    for result in &results {
        let by = match &result.caught {
            Some((scenario, seed, checkers)) => {
                format!("{} ({scenario} seed {seed})", checkers.join(", "))
            }
            None => {
                missed += 1;
                format!("- (lww lost writes counted: {})", result.lww_lost_writes)
            }
        };
        println!(
            "{:<28} {:>6} {:>6} {:>8.1}  {by}",
            result.bug.name(),
            if result.caught.is_some() { "yes" } else { "NO" },
            result.runs,
            result.seconds
        );
    }
    println!(
        "{} of {} planted bugs caught in {:.1} s",
        results.len() - missed,
        results.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if missed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn load_one(name_or_path: &str) -> Result<Scenario, String> {
    let path = resolve(name_or_path);
    Scenario::load(&path).map_err(|error| error.to_string())
}

/// What `replay` prints of the event log.
struct LogFilters<'a> {
    /// Print the log.
    trace: bool,
    /// Only lines about this node.
    node: Option<&'a str>,
    /// Only lines that mention this key.
    key: Option<&'a str>,
}

/// Writes `report`'s timeline to `path`, titled with the scenario, seed and planted bug.
fn write_timeline(
    path: &Path,
    scenario: &Scenario,
    report: &ringkv_sim::Report,
    planted: Option<&str>,
) -> Result<(), String> {
    let planted = planted.map(|name| format!(", planted bug {name}")).unwrap_or_default();
    let title = format!("{} seed {}{planted}", scenario.name, report.seed);
    let html = timeline::render(&title, report, &scenario.expect.tolerate);
    std::fs::write(path, &html).map_err(|error| format!("{}: {error}", path.display()))?;
    println!("timeline: {} ({} bytes)", path.display(), html.len());
    Ok(())
}

fn replay(
    name_or_path: &str,
    seed: u64,
    filters: &LogFilters<'_>,
    html: Option<(&Path, Option<&str>)>,
) -> Result<ExitCode, String> {
    let scenario = load_one(name_or_path)?;
    let (trace, node, key) = (filters.trace, filters.node, filters.key);
    let logging = trace || node.is_some() || key.is_some();
    let report = run_seed(&scenario, seed, logging);
    let node = node.map(|node| format!(" n{} ", node.trim_start_matches('n')));
    let key = key.map(|key| match key.parse::<usize>() {
        Ok(index) => format!("key{index:05}"),
        Err(_) => key.to_string(),
    });
    let mut stdout = std::io::stdout().lock();
    for line in &report.trace {
        let padded = format!("{line} ");
        let node_ok = node.as_ref().is_none_or(|node| padded.contains(node.as_str()));
        let key_ok = key.as_ref().is_none_or(|key| line.contains(key.as_str()));
        // A closed pipe (`| head`) ends the listing quietly.
        if node_ok && key_ok && writeln!(stdout, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    drop(stdout);
    print!("{report}");
    let outcome = ringkv_scenarios::SeedOutcome::from_report(&scenario, &report, 0.0);
    for (checker, message) in &outcome.tolerated {
        println!("  expected [{checker}] {message}");
    }
    if scenario.expect.count_lww_lost_writes {
        println!("  lww lost writes: {}", outcome.lww_lost_writes);
    }
    if let Some((path, planted)) = html {
        write_timeline(path, &scenario, &report, planted)?;
    }
    Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn shrink_command(
    name_or_path: &str,
    seed: u64,
    out: Option<PathBuf>,
    planted: Option<&str>,
    html: Option<&Path>,
) -> Result<ExitCode, String> {
    let scenario = load_one(name_or_path)?;
    let Some(shrunk) = shrink(&scenario, seed, |step| eprintln!("kept: {step}")) else {
        println!("{} seed {seed} passes: nothing to shrink", scenario.name);
        return Ok(ExitCode::SUCCESS);
    };
    let dir = out.unwrap_or_else(|| library_dir().join("regressions"));
    std::fs::create_dir_all(&dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let path = dir.join(format!("{}.ron", shrunk.scenario.name));
    let flag = planted.map(|name| format!(" --planted {name}")).unwrap_or_default();
    let header = format!(
        "Shrunk by `ringkv-sim shrink {name_or_path} --seed {seed}{flag}` in {} runs.\n\
         Fails: {}\nKept steps: {}\nReplay: ringkv-sim replay {} --seed {seed}{flag}",
        shrunk.runs,
        shrunk.checkers.join(", "),
        shrunk.steps.join("; "),
        path.display()
    );
    std::fs::write(&path, shrunk.scenario.to_ron(&header))
        .map_err(|error| format!("{}: {error}", path.display()))?;
    println!("{}", path.display());
    if let Some(html) = html {
        // The shrunk scenario replays the failing run; it is run once more to draw it.
        let report = run_seed(&shrunk.scenario, seed, false);
        write_timeline(html, &shrunk.scenario, &report, planted)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_as_a_range_or_a_count_and_bad_ones_are_refused() {
        assert_eq!(parse_seeds(Some("5..9")), Ok(5..9));
        assert_eq!(parse_seeds(Some("12")), Ok(0..12));
        assert_eq!(parse_seeds(None), Ok(0..DEFAULT_SEEDS_COUNT));
        assert!(parse_seeds(Some("9..5")).is_err());
        assert!(parse_seeds(Some("x")).is_err());
    }
}
