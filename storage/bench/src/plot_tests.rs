//! Tests of the plots, on lines captured from the two producers: bench/cluster.sh
//! (`REQUESTS=2000 ROUNDS=1 DURABILITY=interval`, with its ratio table) and
//! `ringkv-storage-bench --keys 2000 --scans 100 --json`.

use super::*;

const CLUSTER: &str = r#"{"target": "ringkv", "test": "SET", "pipeline": 1, "rps": 20833.33, "p50_ms": 1.447, "p99_ms": 10.367, "durability": "interval", "round": 1}
{"target": "ringkv", "test": "GET", "pipeline": 1, "rps": 42553.19, "p50_ms": 0.863, "p99_ms": 3.839, "durability": "interval", "round": 1}
{"target": "redis", "test": "SET", "pipeline": 1, "rps": 50000.0, "p50_ms": 0.647, "p99_ms": 1.511, "durability": "interval", "round": 1}
{"target": "redis", "test": "GET", "pipeline": 1, "rps": 47619.05, "p50_ms": 0.591, "p99_ms": 2.215, "durability": "interval", "round": 1}
{"target": "ringkv", "test": "SET", "pipeline": 16, "rps": 27777.78, "p50_ms": 27.807, "p99_ms": 30.703, "durability": "interval", "round": 1}
{"target": "ringkv", "test": "GET", "pipeline": 16, "rps": 105263.16, "p50_ms": 5.879, "p99_ms": 6.471, "durability": "interval", "round": 1}
{"target": "redis", "test": "SET", "pipeline": 16, "rps": 58823.53, "p50_ms": 9.903, "p99_ms": 11.047, "durability": "interval", "round": 1}
{"target": "redis", "test": "GET", "pipeline": 16, "rps": 499999.97, "p50_ms": 0.535, "p99_ms": 3.343, "durability": "interval", "round": 1}
{"target": "ringkv", "test": "INCR", "pipeline": 1, "rps": 9523.81, "p50_ms": 3.135, "p99_ms": 30.863, "durability": "interval", "round": 1}
{"target": "redis", "test": "INCR", "pipeline": 1, "rps": 55555.56, "p50_ms": 0.559, "p99_ms": 2.071, "durability": "interval", "round": 1}
{"target": "ringkv", "test": "CAS", "pipeline": 1, "rps": 13071.9, "p50_ms": 2.391, "p99_ms": 20.815, "durability": "interval", "round": 1}
{"target": "redis", "test": "CAS", "pipeline": 1, "rps": 45454.55, "p50_ms": 0.703, "p99_ms": 3.991, "durability": "interval", "round": 1}

durability test  pipeline   ringkv rps    redis rps   ratio       range  ringkv p50  ringkv p99  redis p99
interval   CAS          1        13072        45455    0.29           -      2.391ms     20.815ms     3.991ms
interval   GET          1        42553        47619    0.89           -      0.863ms      3.839ms     2.215ms
interval   GET         16       105263       500000    0.21           -      5.879ms      6.471ms     3.343ms
interval   INCR         1         9524        55556    0.17           -      3.135ms     30.863ms     2.071ms
interval   SET          1        20833        50000    0.42           -      1.447ms     10.367ms     1.511ms
interval   SET         16        27778        58824    0.47           -     27.807ms     30.703ms    11.047ms
"#;

const STORAGE: &str = r#"{"workload":"fillseq","engine":"ringkv","ops_per_s":281634.9,"p50_us":2.584,"p99_us":19.039,"bytes_on_disk":274432,"write_amp":1.130}
{"workload":"fillrandom","engine":"ringkv","ops_per_s":334965.5,"p50_us":2.464,"p99_us":5.448,"bytes_on_disk":274432,"write_amp":1.130}
{"workload":"overwrite","engine":"ringkv","ops_per_s":323504.2,"p50_us":2.574,"p99_us":14.582,"bytes_on_disk":536576,"write_amp":1.130}
{"workload":"readrandom","engine":"ringkv","ops_per_s":221454.8,"p50_us":3.576,"p99_us":29.324,"bytes_on_disk":245760,"write_amp":null}
{"workload":"readmissing","engine":"ringkv","ops_per_s":1424374.6,"p50_us":0.451,"p99_us":4.707,"bytes_on_disk":245760,"write_amp":null}
{"workload":"readseq","engine":"ringkv","ops_per_s":1387693.9,"p50_us":0.000,"p99_us":0.000,"bytes_on_disk":245760,"write_amp":null}
{"workload":"scan","engine":"ringkv","ops_per_s":12397.6,"p50_us":71.817,"p99_us":194.420,"bytes_on_disk":245760,"write_amp":null}
{"workload":"fillseq","engine":"fjall","ops_per_s":169485.9,"p50_us":4.537,"p99_us":38.918,"bytes_on_disk":360448,"write_amp":1.405}
{"workload":"fillrandom","engine":"fjall","ops_per_s":150100.1,"p50_us":5.238,"p99_us":38.227,"bytes_on_disk":360448,"write_amp":1.405}
{"workload":"overwrite","engine":"fjall","ops_per_s":133542.1,"p50_us":5.879,"p99_us":52.078,"bytes_on_disk":688128,"write_amp":1.405}
{"workload":"readrandom","engine":"fjall","ops_per_s":45574.6,"p50_us":11.407,"p99_us":249.452,"bytes_on_disk":925696,"write_amp":null}
{"workload":"readmissing","engine":"fjall","ops_per_s":530164.1,"p50_us":1.483,"p99_us":2.494,"bytes_on_disk":925696,"write_amp":null}
{"workload":"readseq","engine":"fjall","ops_per_s":530722.0,"p50_us":0.000,"p99_us":0.000,"bytes_on_disk":925696,"write_amp":null}
{"workload":"scan","engine":"fjall","ops_per_s":5220.3,"p50_us":166.559,"p99_us":426.847,"bytes_on_disk":925696,"write_amp":null}
{"workload":"space_after_full_compaction","engine":"ringkv","ops_per_s":null,"p50_us":null,"p99_us":null,"bytes_on_disk":245760,"write_amp":null,"space_amp":1.059}
{"workload":"space_after_full_compaction","engine":"fjall","ops_per_s":null,"p50_us":null,"p99_us":null,"bytes_on_disk":1159168,"write_amp":null,"space_amp":4.996}
"#;

/// `<rect` elements filled with `fill` ("#1F77B4"): bars only, since legend marks are circles and
/// backgrounds are white.
fn rects_filled(svg: &str, fill: &RGBColor) -> usize {
    let want = format!("fill=\"#{:02X}{:02X}{:02X}\"", fill.0, fill.1, fill.2);
    svg.split("<rect")
        .skip(1)
        .filter(|r| r.split("/>").next().is_some_and(|r| r.contains(&want)))
        .count()
}

/// True if `svg` has a text element reading `text` (plotters writes it on a line of its own).
fn has_text(svg: &str, text: &str) -> bool {
    svg.contains(&format!(">\n{text}\n</text>"))
}

#[test]
fn cluster_lines_plot_every_test_for_ringkv_and_redis() {
    let data = parse(CLUSTER).unwrap();
    assert_eq!(data.tests, ["SET", "GET", "SET P16", "GET P16", "INCR", "CAS"]);
    assert_eq!(data.series, ["ringkv", "redis"]);
    assert_eq!(
        (data.percentiles.clone(), data.unit.as_str()),
        (vec!["p50".into(), "p99".into()], "ms")
    );
    assert_eq!(data.ops_per_s(0, 1), Some(50000.0));
    let svg = render_svg(&data, "cluster").unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.trim_end().ends_with("</svg>"));
    for text in ["SET P16", "GET P16", "INCR", "CAS", "ringkv p99", "redis p50", "cluster"] {
        assert!(has_text(&svg, text), "no {text}");
    }
    // SET P1: 20833.33 / 50000 = 0.42x, as in the script's own table.
    assert!(has_text(&svg, "0.42x"));
    // Six tests: one throughput bar per series, one latency bar per series and percentile.
    assert_eq!(rects_filled(&svg, &colour(0, 0.0)), 6 + 6, "ringkv ops/s and p99");
    assert_eq!(rects_filled(&svg, &colour(1, 0.0)), 6 + 6, "redis ops/s and p99");
    assert_eq!(rects_filled(&svg, &colour(0, 0.6)), 6, "ringkv p50");
    assert_eq!(rects_filled(&svg, &colour(1, 0.6)), 6, "redis p50");
}

#[test]
fn storage_lines_plot_ringkv_and_fjall_without_the_space_rows() {
    let data = parse(STORAGE).unwrap();
    let tests =
        ["fillseq", "fillrandom", "overwrite", "readrandom", "readmissing", "readseq", "scan"];
    assert_eq!(data.tests, tests);
    assert_eq!(
        (data.series.clone(), data.unit.as_str()),
        (vec!["ringkv".into(), "fjall".into()], "us")
    );
    // readseq times the whole pass, not single reads: its zero percentiles draw no bar.
    assert_eq!(data.latency(5, 0, "p50"), None);
    let svg = render_svg(&data, &data.default_title()).unwrap();
    assert!(svg.starts_with("<svg") && has_text(&svg, "ringkv vs fjall"));
    for text in tests.iter().chain(&["ringkv p50", "fjall p99"]) {
        assert!(has_text(&svg, text), "no {text}");
    }
    assert!(!svg.contains("space_after_full_compaction"));
    assert_eq!(rects_filled(&svg, &colour(0, 0.0)), 7 + 6);
    assert_eq!(rects_filled(&svg, &colour(1, 0.6)), 6);
}

#[test]
fn rounds_are_reduced_to_their_median_and_modes_name_the_tests() {
    let row = |mode: &str, round: u32, rps: f64| {
        format!(
            r#"{{"target": "ringkv", "test": "GET", "pipeline": 1, "rps": {rps}, "p50_ms": 1.0, "p99_ms": 2.0, "durability": "{mode}", "round": {round}}}"#
        )
    };
    let lines = [
        row("fsync", 1, 10.0),
        row("fsync", 2, 30.0),
        row("fsync", 3, 20.0),
        row("interval", 1, 5.0),
    ];
    let data = parse(&lines.join("\n")).unwrap();
    assert_eq!(data.tests, ["GET fsync", "GET interval"]);
    assert_eq!((data.ops_per_s(0, 0), data.ops_per_s(1, 0)), (Some(20.0), Some(5.0)));
}

#[test]
fn malformed_input_names_its_line() {
    let broken = format!(
        "{}\n\n{{\"target\": \"ringkv\", \"test\": \"GET\",",
        CLUSTER.lines().next().unwrap()
    );
    let e = parse(&broken).unwrap_err().to_string();
    assert!(e.starts_with("line 3: not a JSON object"), "{e}");
    let e =
        parse("{\"workload\":\"scan\",\"engine\":\"fjall\",\"ops_per_s\":\"fast\"}").unwrap_err();
    assert_eq!(e.to_string(), "line 1: \"ops_per_s\" is \"fast\", not a number");
    let e = parse("{\"name\": 1}").unwrap_err().to_string();
    assert!(e.starts_with("line 1: neither a bench/cluster.sh row"), "{e}");
    let mixed = format!("{}\n{}", CLUSTER.lines().next().unwrap(), STORAGE.lines().next().unwrap());
    assert_eq!(
        parse(&mixed).unwrap_err().to_string(),
        "line 2: latency in us, earlier lines in ms"
    );
    assert!(matches!(parse("redis-benchmark: connection refused\n"), Err(PlotError::NoRows)));
}

#[test]
fn storage_lines_of_several_setups_name_each_test_by_its_values_and_compression() {
    let line = |engine: &str, values: &str, compression: &str, ops: f64| {
        format!(
            "{{\"workload\":\"fillrandom\",\"engine\":\"{engine}\",\"values\":\"{values}\",\"compression\":\"{compression}\",\"ops_per_s\":{ops},\"p50_us\":1.0,\"p99_us\":2.0,\"bytes_on_disk\":1,\"write_amp\":null}}\n"
        )
    };
    let text: String = [
        line("ringkv", "random", "none", 100.0),
        line("fjall", "random", "none", 50.0),
        line("ringkv", "text", "lz4", 300.0),
        line("fjall", "text", "lz4", 100.0),
    ]
    .concat();
    let data = parse(&text).unwrap();
    assert_eq!(data.tests, ["fillrandom random none", "fillrandom text lz4"]);
    assert_eq!(data.series, ["ringkv", "fjall"]);
    assert_eq!(data.ops_per_s(1, 0), Some(300.0));
    // One setup throughout: the names stay the bare workloads, as in older runs.
    let one =
        parse(&[line("ringkv", "text", "lz4", 1.0), line("fjall", "text", "lz4", 2.0)].concat())
            .unwrap();
    assert_eq!(one.tests, ["fillrandom"]);
}
