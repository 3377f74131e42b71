//! `ringkv-bench-plot`: draws the JSON lines of bench/cluster.sh or `ringkv-storage-bench --json`
//! as an SVG of throughput (with ringkv's ratio to each peer) and latency percentiles per test.
//!
//!   ringkv-bench-plot results.jsonl -o results.svg
//!   ringkv-storage-bench --json | ringkv-bench-plot -o storage.svg

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Plot bench/cluster.sh or ringkv-storage-bench --json output as an SVG")]
struct Args {
    /// JSON lines to read (standard input when absent or `-`).
    input: Option<PathBuf>,
    /// The SVG file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// The plot's title (default: "ringkv vs <peers>").
    #[arg(long)]
    title: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let text = match args.input.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
        }
        None => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).map(|_| s).map_err(|e| format!("stdin: {e}"))
        }
    };
    let name = args.input.as_ref().map_or_else(|| "stdin".into(), |p| p.display().to_string());
    let result = text.and_then(|text| {
        ringkv_storage_bench::plot::write_svg(&text, args.title.as_deref(), &args.output)
            .map_err(|e| format!("{name}: {e}"))
    });
    match result {
        Ok(data) => {
            eprintln!(
                "wrote {} ({} tests, series {})",
                args.output.display(),
                data.tests.len(),
                data.series.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringkv-bench-plot: {e}");
            ExitCode::FAILURE
        }
    }
}
