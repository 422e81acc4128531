//! `lapterop-agent flow`: the volunteer's screens on this terminal.

use crate::flow::{run, Ending, Flow, FlowEnd};
use crate::job;
use crate::ui::input::Keys;
use crate::ui::Style;
use std::io::{self};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Arguments of `lapterop-agent flow`.
#[derive(Debug, clap::Args)]
pub struct FlowArgs {
    /// The stick, the disks and the image key.
    #[command(flatten)]
    pub on: crate::cli::run::StickArgs,
}

/// `lapterop-agent flow`: the volunteer's screens on this terminal, once. Exit codes as `run` (0 erased,
/// installed and sent; 1 a lead must look; 3 only the upload waits), and 2 when nothing was done
/// (cancelled, stopped at pre-flight, bad config).
pub fn cli(args: &FlowArgs) -> ExitCode {
    let site = match args.on.site() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lapterop-agent flow: {e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    // The first Ctrl-C stops a running wipe (its disks are certified not erased) or cancels at the next
    // question; a second one ends the program at once.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&stop));
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let flow = Flow {
        job: args.on.job(&site, &stop),
        remember: None,
    };
    let mut keys = Keys::stdin();
    let mut out = io::stdout();
    match run(&flow, &mut keys, &mut out, Style::detect()) {
        Ok(FlowEnd {
            ending: Ending::Done(r),
            ..
        }) => job::code_of(&r),
        Ok(_) => ExitCode::from(2),
        Err(e) => {
            eprintln!("lapterop-agent flow: the screen failed: {e}");
            ExitCode::from(2)
        }
    }
}
