//! The `vane-loadgen` binary: parse the command line, run, print the
//! summary (human on stderr, `--json` on stdout) and exit non-zero when
//! the run found problems or could not run.

use clap::Parser;
use vane_loadgen::{run, Cli};

fn main() {
    let cli = Cli::parse();
    match run(&cli.command) {
        Ok(report) => {
            eprint!("{}", report.human());
            if cli.command.opts().json {
                println!("{}", report.to_json());
            }
            std::process::exit(report.exit_code());
        }
        Err(e) => {
            eprintln!("vane-loadgen: {e}");
            std::process::exit(2);
        }
    }
}
