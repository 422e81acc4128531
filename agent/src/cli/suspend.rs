//! `lapterop-agent suspend`: try the suspend-and-wake that lifts a freeze lock.

use crate::unfreeze::{PowerFiles, Sleep};

/// `lapterop-agent suspend --wake-after N`: tries the suspend and RTC wake on this laptop.
pub fn suspend_command(seconds: u32) -> std::process::ExitCode {
    let files = PowerFiles::system();
    match files.check() {
        Ok(s) => println!(
            "lapterop: suspending to RAM ({}) for {seconds} s; the RTC alarm wakes the laptop",
            match s {
                Sleep::Deep => "deep, ACPI S3",
                Sleep::Idle => "suspend-to-idle only",
            }
        ),
        Err(e) => {
            eprintln!("lapterop-agent suspend: {e}; this laptop cannot unfreeze its disks this way");
            return std::process::ExitCode::from(2);
        }
    }
    match files.suspend_for(seconds) {
        Ok(away) => {
            println!(
                "lapterop: resumed after {:.1} s; this model wakes by itself, so [wipe] unfreeze = \"suspend\" is safe",
                away.as_secs_f64()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lapterop-agent suspend: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
