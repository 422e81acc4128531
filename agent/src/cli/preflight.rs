//! `lapterop-agent preflight`: the checks before a job, on this machine.

use crate::i18n::Lang;
use crate::preflight::{blocked, check, Input};
use crate::ui::PlanDisk;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `lapterop-agent preflight`.
#[derive(Debug, clap::Args)]
pub struct PreflightArgs {
    /// Root holding `sys/` and `proc/` (a recorded tree in tests).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// JSON file with the disks (a list of `PlanDisk`) from the disk layer; none when absent.
    #[arg(long)]
    pub disks: Option<PathBuf>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Language of the screen: nl or en.
    #[arg(long, default_value = "nl")]
    pub lang: String,
    /// Battery level below which an unplugged laptop stops the job, percent.
    #[arg(long, default_value_t = 30)]
    pub battery_min: u32,
    /// Clock to check instead of the system clock, Unix seconds (tests).
    #[arg(long)]
    pub now: Option<i64>,
}

/// Runs pre-flight and prints the screen (or JSON). Exit 0 nothing stops the job, 1 something does,
/// 2 usage error.
pub fn cli(args: &PreflightArgs) -> ExitCode {
    let Some(lang) = Lang::parse(&args.lang) else {
        eprintln!(
            "lapterop-agent preflight: unknown language {:?}; use nl or en",
            args.lang
        );
        return ExitCode::from(2);
    };
    let disks: Vec<PlanDisk> = match &args.disks {
        None => Vec::new(),
        Some(path) => match fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(disks) => disks,
            Err(e) => {
                eprintln!("lapterop-agent preflight: reading disks from {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    let now = args.now.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    });
    let findings = check(&Input {
        root: &args.root,
        disks: &disks,
        now,
        battery_min_percent: args.battery_min,
        wifi: crate::network::wifi_now(),
    });
    if args.json {
        let rows: Vec<serde_json::Value> = findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "code": f.code.as_str(),
                    "severity": f.code.severity(),
                    "found": f.found(lang),
                    "what_to_do": f.what_to_do(lang),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        print!(
            "{}",
            crate::ui::screens::preflight(lang, crate::ui::Style::detect(), &findings)
        );
    }
    if blocked(&findings) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
