//! The timeline of a planted bug's run, opened in a real browser: headless Chromium loads the
//! page from disk, its script runs (and, with `#selftest`, selects the first violation), and
//! the DOM it dumps must show no script error, every violation link resolved to an operation's
//! bar, the selection lit, and the violation's mark.
//!
//! Gated, so that `cargo test --workspace` stays usable without a browser: it runs only when
//! `RINGKV_BROWSER_TESTS=1` (`.ci/run` sets it and installs Debian's `chromium`), and needs the
//! `planted-bugs` feature:
//! `RINGKV_BROWSER_TESTS=1 cargo test -p ringkv-scenarios --features planted-bugs --test
//! timeline_browser`. With the variable set, a missing browser or feature fails the test.
//! `RINGKV_CHROMIUM` names another browser binary than `/usr/bin/chromium`.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringkv_core::planted::{arm, PlantedBug, COMPILED_IN};
use ringkv_scenarios::library::library_dir;
use ringkv_scenarios::scenario::Scenario;
use ringkv_scenarios::{run_seed, timeline};

/// How long the browser may take to load and dump the page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs headless Chromium on `page` (with `fragment`) and returns the DOM it dumps.
fn dump_dom(browser: &Path, page: &Path, profile: &Path) -> String {
    let url = format!("file://{}#selftest", page.display());
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", browser.display()));
    // The DOM is read on a thread so that a full pipe cannot stall the browser while the
    // deadline is watched here.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut dom = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut dom).map(|_| dom)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            panic!("{} did not dump {url} within {BROWSER_TIMEOUT:?}", browser.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = reader.join().unwrap().unwrap();
    assert!(status.success(), "{} exited with {status} on {url}", browser.display());
    dom
}

/// The value of `name` on the dumped `<body>` tag.
fn body_attribute<'a>(dom: &'a str, name: &str) -> Option<&'a str> {
    let start = dom.find("<body")?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let key = format!(" {name}=\"");
    let from = tag.find(&key)? + key.len();
    Some(&tag[from..from + tag[from..].find('"')?])
}

#[test]
fn a_planted_bugs_timeline_loads_in_chromium_without_errors_and_marks_the_violation() {
    if std::env::var_os("RINGKV_BROWSER_TESTS").is_none_or(|value| value != "1") {
        eprintln!(
            "skipped: set RINGKV_BROWSER_TESTS=1 (CI does) to open the timeline in chromium; \
             needs --features planted-bugs"
        );
        return;
    }
    // A build without the feature cannot arm the bug, so the run would have nothing to show.
    if !COMPILED_IN {
        panic!(
            "RINGKV_BROWSER_TESTS=1 but the planted bugs are not compiled in: run with \
             `--features planted-bugs`"
        );
    }
    let browser = std::env::var_os("RINGKV_CHROMIUM")
        .map_or(PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        browser.exists(),
        "RINGKV_BROWSER_TESTS=1 but there is no browser at {}: install Debian's chromium \
         (`apt-get install chromium`, as .ci/run does) or set RINGKV_CHROMIUM",
        browser.display()
    );

    // A Paxos bug that serial-cas-partition seed 0 catches (scenarios/tests/planted_paxos.rs).
    let scenario = Scenario::load(&library_dir().join("serial-cas-partition.ron")).unwrap();
    assert!(arm(Some(PlantedBug::PaxosAcceptIgnoresPromise)));
    let report = run_seed(&scenario, 0, false);
    arm(None);
    let linked: usize = report.violations.iter().map(|violation| violation.ops.len()).sum();
    assert!(
        report
            .violations
            .iter()
            .any(|violation| violation.checker == "linearizable" && !violation.ops.is_empty()),
        "the armed run fails the linearizability checker, naming its window: {:?}",
        report.violations
    );
    let html = timeline::render("serial-cas-partition seed 0 (planted)", &report, &[]);

    let dir = std::env::temp_dir().join(format!("ringkv-timeline-{}", std::process::id()));
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let page = dir.join("timeline.html");
    std::fs::write(&page, &html).unwrap();
    let dom = dump_dom(&browser, &page, &profile);
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(body_attribute(&dom, "data-ready"), Some("1"), "the script ran to its end");
    assert_eq!(body_attribute(&dom, "data-errors"), Some("0"), "no script error");
    assert_eq!(body_attribute(&dom, "data-missing"), Some("0"), "every link has its bar");
    assert_eq!(body_attribute(&dom, "data-linked"), Some(linked.to_string().as_str()));
    let lit: usize = body_attribute(&dom, "data-highlighted").unwrap().parse().unwrap();
    let first = report.violations[0].ops.len();
    assert!(first > 0, "the first violation names operations: {:?}", report.violations[0]);
    assert!(
        lit >= 3 * first,
        "selecting violation 0 lights each of its {first} ops in both views and the plot: {lit}"
    );
    assert!(dom.contains("id=\"vm0\""), "the first violation's mark is in the page");
    assert!(dom.contains("class=\"viol-mark"), "drawn as a mark");
    let op = report.violations[0].ops[0];
    assert!(dom.contains(&format!("href=\"#o{op}\"")), "linked to its first operation");
    assert!(dom.contains(" hl\""), "the selected operations are highlighted");
}
