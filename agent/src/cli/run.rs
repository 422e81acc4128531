//! `lapterop-agent run`: the whole job without questions, on the disks of this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use lapterop_certificate::Person;

use crate::job::console::Unattended;
use crate::job::{run, Ended, Job, JobResult, System};
use crate::site::Site;

/// Where a job on this machine runs from: the stick directory, the disks, the trusted image key
/// (shared by `run` and `flow`).
#[derive(Debug, clap::Args)]
pub struct StickArgs {
    /// The stick's `lapterop/` directory (site.toml, station.key, images/, outbox/, logs/).
    #[arg(long, value_name = "DIR")]
    pub stick: PathBuf,
    /// Only these disks instead of every internal one (repeatable; loop devices allowed, for tests).
    #[arg(long, value_name = "DEVICE")]
    pub only: Vec<String>,
    /// The trusted OS image key's public half (default: the one baked into the live image). A key file on
    /// the stick is never trusted.
    #[arg(long, value_name = "FILE", default_value = crate::site::BAKED_IMAGE_KEY)]
    pub image_key: PathBuf,
}

impl StickArgs {
    /// The site config on the stick, or the line that says why not.
    pub fn site(&self) -> Result<Site, crate::site::SiteError> {
        Site::load(&self.stick)
    }

    /// The job these arguments describe.
    pub fn job<'a>(&'a self, site: &'a Site, stop: &'a AtomicBool) -> Job<'a> {
        Job {
            site,
            dir: &self.stick,
            stick_disk: None,
            only: &self.only,
            stop,
            image_key: &self.image_key,
        }
    }
}

/// `lapterop-agent run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The stick, the disks and the image key.
    #[command(flatten)]
    pub on: StickArgs,
    /// Run even if the site config asks for the interactive flow, without asking anything.
    #[arg(long)]
    pub unattended: bool,
    /// Name of the person running it (default: the site's ui.operator, else "unattended").
    #[arg(long)]
    pub operator: Option<String>,
}

/// `lapterop-agent run`: exit 0 erased (and installed and sent when configured), 1 something needs a
/// lead (a disk not erased, install failed, server refused), 2 nothing was done, 3 only the upload waits.
pub fn cli(args: &RunArgs) -> ExitCode {
    let site = match args.on.site() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lapterop-agent run: {e}");
            return ExitCode::from(2);
        }
    };
    if site.flow.mode != crate::site::Mode::Unattended && !args.unattended {
        eprintln!(
            "lapterop-agent run: the site config asks for the interactive flow; pass --unattended to wipe every \
             internal disk without asking"
        );
        return ExitCode::from(2);
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&stop));
    }
    let operator = Person {
        name: args
            .operator
            .clone()
            .or_else(|| site.ui.operator.clone())
            .unwrap_or_else(|| "unattended".into()),
        role: None,
    };
    let job = args.on.job(&site, &stop);
    match run(&job, &System, &mut Unattended::new(&site, operator)) {
        Ok(Ended::Done(r)) => exit_code(&r),
        Ok(ended) => {
            eprintln!("lapterop-agent run: {}", crate::job::stopped_line(&ended));
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("lapterop-agent run: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints the job's marker line and donor page, and gives its exit code (see [`cli`]).
pub fn exit_code(r: &JobResult) -> ExitCode {
    println!("{}", r.marker());
    if let Some(url) = &r.donor_url {
        println!("lapterop: donor page {url}");
    }
    crate::job::code_of(r)
}
