//! The whole pipeline without root: fake ports (the audit and pre-flight read a recorded `/sys` and
//! `/proc` tree of a real QEMU guest, the "disks" are plain temporary files held open like claimed
//! devices, the clock is fixed, retries do not sleep) and a front end that records every event. The
//! wipe, read-back, certificate, signature and outbox are the real ones.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use lapterop_certificate::model::InstallStatus;
use lapterop_certificate::{keys, OutcomeStatus, Person};

use super::*;
use crate::disk::{Claimed, Disk, Refusal};
use crate::site::ExternalChoice;

const MIB: u64 = 1 << 20;

/// A disk as discovery would report it.
fn disk(name: &str, path: &Path, bytes: u64) -> Disk {
    Disk {
        model: Some(format!("Fake {name}")),
        serial: Some(format!("SN-{name}")),
        ..Disk::for_tests(name, path, bytes)
    }
}

struct FakePorts {
    root: PathBuf,
    files: Vec<(String, PathBuf, u64)>,
    /// The second disk is mounted and must be refused.
    one_refused: bool,
    slept: Mutex<Vec<Duration>>,
}

impl Ports for FakePorts {
    fn root(&self) -> &Path {
        &self.root
    }
    fn now(&self) -> i64 {
        1_795_000_000 // 2026-11-18, after the build floor
    }
    fn disk_summaries(&self) -> Option<Vec<crate::audit::DiskSummary>> {
        None
    }
    fn claim(&self, _only: &[String], _stick: Option<&str>, _external: ExternalChoice) -> anyhow::Result<Disks> {
        let mut disks = Disks {
            claimed: Vec::new(),
            refused: Vec::new(),
            left_alone: Vec::new(),
        };
        for (i, (name, path, bytes)) in self.files.iter().enumerate() {
            let d = disk(name, path, *bytes);
            if self.one_refused && i == 1 {
                let why = Refusal::Mounted {
                    device: name.clone(),
                    at: "/home".into(),
                };
                disks.refused.push((d, vec![why]));
                continue;
            }
            let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
            disks.claimed.push(Claimed {
                disk: d,
                file,
                capacity_bytes: *bytes,
                logical_sector_size: 512,
                physical_sector_size: 512,
            });
        }
        Ok(disks)
    }
    fn suspend_for(&self, _: u32) -> Result<Duration, crate::unfreeze::SuspendError> {
        Err(crate::unfreeze::SuspendError::NoWakeAlarm)
    }
    fn sleep(&self, pause: Duration) {
        self.slept.lock().unwrap().push(pause);
    }
}

/// Says yes to everything and keeps one short word per event.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
}

impl Frontend for Recorder {
    fn people(&mut self) -> io::Result<Option<People>> {
        Ok(Some((
            Person {
                name: "An Peeters".into(),
                role: None,
            },
            None,
        )))
    }
    fn preflight(&mut self, _: &[Finding]) -> io::Result<Go> {
        self.events.push("preflight?".into());
        Ok(Go::On)
    }
    fn audit(&mut self, _: &Audited) -> io::Result<Go> {
        self.events.push("audit?".into());
        Ok(Go::On)
    }
    fn confirm(&mut self, plan: &[PlanDisk], claimed: usize) -> io::Result<Decision> {
        self.events.push(format!("confirm {claimed} of {}?", plan.len()));
        Ok(Decision::Confirmed)
    }
    fn event(&mut self, e: Event<'_>) {
        let word = match e {
            Event::StageDone { stage, .. } => format!("stage {}", stage.name()),
            Event::Audited { .. } => "audited".into(),
            Event::Refused { disk, .. } => format!("refused {}", disk.name),
            Event::LeftAlone { disk } => format!("left {}", disk.name),
            Event::Finding(f) => format!("finding {}", f.code.as_str()),
            Event::Wiping(c) => format!("wiping {}", c.disk.name),
            Event::WipeStarted => "wipe started".into(),
            Event::WipeFinished => "wipe finished".into(),
            Event::DiskOutcome(r) => format!("{} {:?}", r.device, r.outcome.status),
            Event::InstallStarting { target, .. } => format!("installing onto {target}"),
            Event::InstallDone(r) => format!("install {:?}", r.map(|r| r.status)),
            Event::CertificateStored { .. } => "stored".into(),
            Event::UploadSending => "sending".into(),
            Event::Sent { sent, .. } => format!("sent {}", matches!(sent, Sent::Uploaded)),
            Event::UploadDone(u) => format!(
                "upload {}",
                u.map_or("none", |s| if matches!(s, Sent::Failed(_)) { "failed" } else { "ok" })
            ),
            other => format!("{other:?}"),
        };
        self.events.push(word);
    }
    fn disk_progress(&mut self, _: &str) -> Box<dyn wipe::Progress + Send> {
        Box::new(Silent)
    }
}

struct Silent;
impl wipe::Progress for Silent {
    fn phase(&self, _: &str, _: u64) {}
    fn update(&self, _: u64) {}
    fn finish(&self, _: &lapterop_certificate::DiskOutcome) {}
}

struct Bench {
    dir: tempfile::TempDir,
    ports: FakePorts,
    site: Site,
    station: cert::SigningKey,
}

use lapterop_certificate as cert;

/// A stick directory with a station key and `site` as its config, and two 8 MiB "disks".
fn bench(site: &str, one_refused: bool) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let stick = dir.path().join("stick");
    std::fs::create_dir_all(&stick).unwrap();
    let station = keys::fixture_key("pipeline test station");
    keys::write_keypair(&stick.join("station"), &station).unwrap();
    let files = ["vda", "vdb"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.img"));
            std::fs::write(&path, vec![0xA5u8; usize::try_from(8 * MIB).unwrap()]).unwrap();
            ((*name).to_owned(), path, 8 * MIB)
        })
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit/qemu/tree");
    Bench {
        site: Site::parse(site, &stick).unwrap(),
        ports: FakePorts {
            root,
            files,
            one_refused,
            slept: Mutex::new(Vec::new()),
        },
        station,
        dir,
    }
}

fn go(b: &Bench) -> (Ended, Vec<String>) {
    let stick = b.dir.path().join("stick");
    let stop = AtomicBool::new(false);
    let job = Job {
        site: &b.site,
        dir: &stick,
        stick_disk: None,
        only: &[],
        stop: &stop,
        image_key: &b.dir.path().join("no-image.pub"),
    };
    let mut ui = Recorder::default();
    let ended = run(&job, &b.ports, &mut ui).unwrap();
    (ended, ui.events)
}

fn done(ended: Ended) -> JobResult {
    match ended {
        Ended::Done(r) => *r,
        other => panic!("the job did not finish: {other:?}"),
    }
}

const PLAIN: &str = "[station]\nsite = \"bench\"\n\n[wipe]\npattern = \"zero\"\nmethod = \"overwrite\"\n";

#[test]
fn all_erased_goes_through_every_stage_in_order() {
    let b = bench(PLAIN, false);
    let (ended, events) = go(&b);
    let r = done(ended);
    let findings: Vec<&String> = events.iter().filter(|e| e.starts_with("finding")).collect();
    let rest: Vec<&str> = events
        .iter()
        .filter(|e| !e.starts_with("finding"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        rest,
        [
            "audited",
            "stage audit",
            "stage disks",
            "preflight?",
            "audit?",
            "confirm 2 of 2?",
            "wiping vda",
            "wiping vdb",
            "wipe started",
            "wipe finished",
            "vda Erased",
            "vdb Erased",
            "stage wipe",
            "stage install",
            "stored",
            "stage certificate",
            "upload none",
            "stage upload",
        ],
        "findings: {findings:?}"
    );
    let c = &r.certificate;
    assert_eq!(c.overall_outcome(), OutcomeStatus::Erased);
    assert_eq!(c.operator.name, "An Peeters");
    assert!(c.host.is_some(), "the audit of the recorded tree is the host section");
    assert!(c.install.is_none() && r.upload.is_none());
    // The files read back as the zero pattern; the stored certificate verifies with the station key.
    for (_, path, _) in &b.ports.files {
        assert!(std::fs::read(path).unwrap().iter().all(|&x| x == 0));
    }
    let stored = std::fs::read(&r.certificate_file).unwrap();
    assert_eq!(&cert::verify(&stored, &b.station.verifying_key()).unwrap(), c);
    assert_eq!(
        r.stages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [
            Stage::Audit,
            Stage::Disks,
            Stage::Wipe,
            Stage::Install,
            Stage::Certificate,
            Stage::Upload
        ]
    );
    assert_eq!(
        r.marker().split(' ').skip(2).collect::<Vec<_>>(),
        ["outcome=erased", "install=none", "upload=no-server"]
    );
}

#[test]
fn a_refused_disk_is_certified_not_erased_with_its_reason() {
    let b = bench(PLAIN, true);
    let (ended, events) = go(&b);
    let r = done(ended);
    assert!(events.contains(&"refused vdb".to_owned()), "{events:?}");
    assert!(events.contains(&"confirm 1 of 2?".to_owned()), "{events:?}");
    assert!(events.contains(&"vdb NotErased".to_owned()), "{events:?}");
    let c = &r.certificate;
    assert_eq!(c.overall_outcome(), OutcomeStatus::NotErased);
    let vdb = c.disks.iter().find(|d| d.device == "vdb").unwrap();
    assert!(
        vdb.outcome.reason.as_deref().unwrap().contains("/home"),
        "{:?}",
        vdb.outcome
    );
    assert_eq!(
        std::fs::read(&b.ports.files[1].1).unwrap()[0],
        0xA5,
        "the refused disk was written"
    );
}

#[test]
fn an_install_that_fails_is_in_the_certificate_and_the_disks_stay_erased() {
    let b = bench(
        &format!("{PLAIN}\n[install]\nimage = \"images/missing.osimg\"\n"),
        false,
    );
    let (ended, events) = go(&b);
    let r = done(ended);
    assert!(events.contains(&"install Some(Failed)".to_owned()), "{events:?}");
    let install = r.certificate.install.as_ref().unwrap();
    assert_eq!(install.status, InstallStatus::Failed);
    assert!(
        install.reason.as_deref().unwrap().contains("no-image.pub"),
        "{install:?}"
    );
    assert_eq!(r.certificate.overall_outcome(), OutcomeStatus::Erased);
    assert!(r.marker().contains("install=failed"));
}

#[test]
fn with_the_server_away_the_certificate_waits_in_the_outbox() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let b = bench(&format!("{PLAIN}\n[server]\nurl = \"http://{closed}\"\n"), false);
    let (ended, events) = go(&b);
    let r = done(ended);
    assert!(
        events.contains(&"sending".to_owned()) && events.contains(&"upload failed".to_owned()),
        "{events:?}"
    );
    assert!(r.marker().contains("upload=waiting"), "{}", r.marker());
    assert!(r.certificate_file.exists(), "the certificate is in the outbox");
    assert!(
        !b.ports.slept.lock().unwrap().is_empty(),
        "the retries waited through the port"
    );
}
