//! The unattended front end: nobody at the screen, so every question answers itself (the operator
//! is the site's or the command line's) and every event is one `lapterop: ...` line on standard
//! output, where the live image's console and the test harnesses read it.

use std::io;

use lapterop_certificate::Person;

use super::{install_line, Audited, Event, Frontend, Go, People};
use crate::outbox::Sent;
use crate::preflight::Finding;
use crate::site::Site;
use crate::ui::confirm::Decision;
use crate::ui::PlanDisk;
use crate::wipe;

/// Answers every question with yes and prints every event.
#[derive(Debug)]
pub struct Unattended<'a> {
    site: &'a Site,
    operator: Person,
    bars: crate::ui::disk_bars::Ui,
}

impl<'a> Unattended<'a> {
    /// A front end for `site`, run by `operator`.
    pub fn new(site: &'a Site, operator: Person) -> Self {
        Self {
            site,
            operator,
            bars: crate::ui::disk_bars::Ui::new(),
        }
    }
}

impl Frontend for Unattended<'_> {
    fn people(&mut self) -> io::Result<Option<People>> {
        Ok(Some((self.operator.clone(), None)))
    }

    fn preflight(&mut self, _: &[Finding]) -> io::Result<Go> {
        Ok(Go::On)
    }

    fn audit(&mut self, _: &Audited) -> io::Result<Go> {
        Ok(Go::On)
    }

    fn confirm(&mut self, _: &[PlanDisk], _: usize) -> io::Result<Decision> {
        Ok(Decision::Confirmed)
    }

    fn event(&mut self, event: Event<'_>) {
        if let Some(line) = line(self.site, &event) {
            println!("{line}");
        }
    }

    fn disk_progress(&mut self, name: &str) -> Box<dyn wipe::Progress + Send> {
        Box::new(self.bars.disk(name))
    }
}

/// The console line of an event (`None` for events the console does not show).
pub fn line(site: &Site, event: &Event<'_>) -> Option<String> {
    Some(match event {
        Event::StageDone { stage, seconds } => format!("lapterop: stage {} {seconds:.1}s", stage.name()),
        Event::Audited { audited, .. } => {
            let s = &audited.host.system;
            format!(
                "lapterop: laptop {} {} serial {} (device id {})",
                s.vendor.as_deref().unwrap_or("?"),
                s.product.as_deref().unwrap_or("?"),
                s.serial.as_deref().unwrap_or("?"),
                audited.host.device_id
            )
        }
        Event::Refused { disk, why } => format!("lapterop: refusing {}: {why}", disk.name),
        Event::LeftAlone { disk } => format!("lapterop: leaving {} alone (the stick, USB or removable)", disk.name),
        Event::PlanNote { disk, note } => format!("lapterop: {disk}: {note}"),
        Event::PlanFallback { why } => format!("lapterop: {why}; using the automatic plan instead"),
        Event::Suspending { frozen, seconds } => format!(
            "lapterop: {frozen} disk(s) frozen by the BIOS; suspending to RAM for {seconds} s to lift it (the \
             laptop wakes by itself)"
        ),
        Event::Finding(f) => format!("lapterop: {} {}", f.code.as_str(), f.found(crate::i18n::Lang::En)),
        Event::Wiping(c) => format!(
            "lapterop: wiping {} ({} bytes, {:?}, model {}, serial {})",
            c.disk.name,
            c.capacity_bytes,
            c.disk.transport,
            c.disk.model.as_deref().unwrap_or("?"),
            c.disk.serial.as_deref().unwrap_or("?")
        ),
        Event::DiskOutcome(r) => format!("lapterop: {}: {}", r.device, wipe::outcome_words(&r.outcome)),
        Event::TrustIgnored { configured, trusted } => format!(
            "lapterop: NOTE install.trust = {:?} in site.toml is not read: the stick trusts only the image key \
             baked into it ({}); remove the line, and make the stick again with --image-key to change the key",
            configured.display().to_string(),
            trusted.display()
        ),
        Event::InstallStarting { location, target } => format!("lapterop: installing {location} onto {target}"),
        Event::InstallDone(record) => return install_line(site, *record),
        Event::CertificateStored { certificate, .. } => {
            format!("lapterop: certificate {} saved in the outbox", certificate.id)
        }
        Event::Sent { file, sent } => match sent {
            Sent::Uploaded => format!("lapterop: sent {file}"),
            Sent::AlreadyDone => return None,
            Sent::Failed(e) if e.retryable() => format!("lapterop: LAP-N01 {e}"),
            Sent::Failed(e) => format!("lapterop: LAP-N02 {e}"),
        },
        Event::WipeStarted | Event::WipeFinished | Event::UploadSending | Event::UploadDone(_) => return None,
    })
}
