//! A volunteer at the laptop, emulated: the real stick booted in QEMU in the site's interactive mode,
//! and the flow driven on one of the laptop's two consoles, the way a person drives it:
//!
//! - [`Console::Serial`]: the stick's command line ends with `console=ttyS0,115200`, so `/dev/console`
//!   (what the agent, as PID 1, reads and writes) is the serial line; the harness reads the serial
//!   output and types answers on it.
//! - [`Console::Vga`]: the stick's own command line (`console=ttyS0 console=tty0`), so `/dev/console` is
//!   the VGA text console; keys go in through QMP `send-key` (the PS/2 keyboard) and the screen is read
//!   through QMP `screendump`, decoded cell by cell with the VGA BIOS's font ([`crate::qmp`]). Only what
//!   is on the 80x25 screen at that moment counts, as for a person.
//!
//! [`Volunteer`] waits for a text, types an answer, and keeps every screen it looked at (VGA: the
//! decoded text of each picture) for the failure message and the docs.

use lapterop_certificate::io::io_err;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapterop_agent::i18n::{Key, Lang};

use crate::qmp::VgaFont;
use crate::stick::StickVm;
use crate::vm::VmError;

/// Which of the laptop's consoles the volunteer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The serial line (`/dev/console` is `ttyS0`).
    Serial,
    /// The laptop's own screen and keyboard (`/dev/console` is `tty0` on the VGA text console).
    Vga,
}

impl Console {
    /// What the stick's kernel command line gets appended for this console.
    pub fn extra_cmdline(self) -> &'static str {
        match self {
            // The last console= is /dev/console.
            Console::Serial => "console=ttyS0,115200",
            Console::Vga => "",
        }
    }

    /// A short name for files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Console::Serial => "serial",
            Console::Vga => "vga",
        }
    }
}

/// The volunteer at one running stick VM.
#[derive(Debug)]
pub struct Volunteer<'a> {
    vm: &'a mut StickVm,
    console: Console,
    font: Option<VgaFont>,
    /// Serial: the console text before this offset was seen before the last answer.
    mark: usize,
    /// Every distinct screen looked at, in order (VGA), or the serial text at each wait.
    seen: Vec<String>,
    picture: PathBuf,
}

impl<'a> Volunteer<'a> {
    /// At `vm`'s `console`.
    pub fn new(vm: &'a mut StickVm, console: Console) -> Result<Volunteer<'a>, VmError> {
        let font = match console {
            Console::Vga => Some(VgaFont::system()?),
            Console::Serial => None,
        };
        let picture = vm.work_file("screen.ppm");
        Ok(Volunteer {
            vm,
            console,
            font,
            mark: 0,
            seen: Vec::new(),
            picture,
        })
    }

    /// What the volunteer sees now: the screen (VGA), or the serial output since the last answer.
    pub fn screen(&mut self) -> Result<String, VmError> {
        match (&self.console, &self.font) {
            (Console::Vga, Some(font)) => {
                let font = font.clone();
                let picture = self.picture.clone();
                self.vm.qmp()?.screen_text(&font, &picture)
            }
            _ => {
                let text = self.vm.console();
                Ok(text.get(self.mark..).unwrap_or_default().to_owned())
            }
        }
    }

    /// Waits until the screen shows every one of `needles`; returns that screen. Fails when QEMU exits
    /// or after `timeout`, with the last screen.
    pub fn wait_for(&mut self, needles: &[&str], timeout: Duration) -> Result<String, VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.screen()?;
            if self.seen.last() != Some(&text) {
                self.seen.push(text.clone());
            }
            if needles.iter().all(|n| text.contains(n)) {
                return Ok(text);
            }
            if let Some(status) = self.vm.exited()? {
                return Err(VmError::NoMarker {
                    status: format!("{status} while the volunteer waited for {needles:?}"),
                    tail: self.last_screen(),
                });
            }
            if Instant::now() > deadline {
                return Err(VmError::Timeout {
                    timeout,
                    tail: format!(
                        "(the {} console never showed {needles:?}; the screen:)\n{}",
                        self.console.name(),
                        self.last_screen()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(match self.console {
                Console::Vga => 700,
                Console::Serial => 100,
            }));
        }
    }

    /// Types `text` and Enter.
    pub fn answer(&mut self, text: &str) -> Result<(), VmError> {
        self.mark = self.vm.console().len();
        match self.console {
            Console::Serial => self.vm.send(&format!("{text}\n")),
            Console::Vga => self.vm.qmp()?.type_text(&format!("{text}\n")),
        }
    }

    /// From now on only what comes next counts as the screen (serial), as after an answer.
    pub fn mark_seen(&mut self) {
        self.mark = self.vm.console().len();
    }

    /// The VM (for QMP: a cable or an adapter plugged in while the volunteer waits).
    pub fn vm(&mut self) -> &mut StickVm {
        self.vm
    }

    /// The last screen seen (serial: its last 40 lines).
    pub fn last_screen(&self) -> String {
        let last = self.seen.last().cloned().unwrap_or_default();
        let lines: Vec<&str> = last.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Every screen seen, separated by a rule (for a file beside the test's output).
    pub fn transcript(&self) -> String {
        self.seen.join("\n-------- next screen --------\n")
    }

    /// Where the screen pictures go.
    pub fn picture_path(&self) -> &Path {
        &self.picture
    }
}

/// What a volunteer does at one laptop, from the name to the result screen.
#[derive(Debug, Clone)]
pub struct Script {
    /// The site's language at boot.
    pub lang: Lang,
    /// The site's confirmation word, or `None` for the serials' last four letters or digits.
    pub word: Option<String>,
    /// The disks to confirm, in the plan's order: (kernel name, serial number).
    pub disks: Vec<(String, String)>,
    /// Switch the language at the audit screen and back (`L`).
    pub switch_language: bool,
    /// Type a wrong confirmation once for every disk first.
    pub mistype: bool,
    /// How long one stage may take.
    pub stage: Duration,
    /// How long the wipe may take.
    pub wipe: Duration,
}

/// What must be typed to confirm a disk with `serial`: its last four letters or digits, in lower case
/// (the agent takes any case).
pub fn serial_token(serial: &str) -> String {
    let alnum: Vec<char> = serial.chars().filter(char::is_ascii_alphanumeric).collect();
    alnum[alnum.len().saturating_sub(4)..]
        .iter()
        .collect::<String>()
        .to_lowercase()
}

impl Volunteer<'_> {
    /// Drives the flow by `script` up to the result screen with its next-laptop question, and returns
    /// that screen. The texts waited for are the agent's own (its i18n table).
    pub fn run_flow(&mut self, script: &Script) -> Result<String, VmError> {
        let l = script.lang;
        let stage = script.stage;
        self.wait_for(&[l.t(Key::OperatorAsk)], stage)?;
        self.answer("Anna")?;
        // Pre-flight, then the audit.
        self.wait_for(&[l.t(Key::PressEnter)], stage)?;
        self.answer("")?;
        self.wait_for(&[l.t(Key::PressEnter)], stage)?;
        if script.switch_language {
            self.answer("L")?;
            self.wait_for(&[l.other().t(Key::PressEnter)], stage)?;
            self.answer("l")?;
            self.wait_for(&[l.t(Key::PressEnter)], stage)?;
        }
        self.answer("")?;
        let last = script.disks.len().saturating_sub(1);
        for (i, (disk, serial)) in script.disks.iter().enumerate() {
            let (ask, right, wrong) = match &script.word {
                Some(w) => (
                    l.fill(Key::ConfirmAskWord, &[("disk", disk), ("word", w)]),
                    w.clone(),
                    Key::ConfirmWrongWord,
                ),
                None => (
                    l.fill(Key::ConfirmAsk, &[("disk", disk), ("hint", serial)]),
                    serial_token(serial),
                    Key::ConfirmWrong,
                ),
            };
            // The question may wrap: its first words are on one line.
            let first_words: String = ask.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
            self.wait_for(&[&first_words], stage)?;
            if script.mistype {
                self.answer("nope")?;
                self.wait_for(&[l.t(wrong)], stage)?;
            }
            self.answer(&right)?;
            if i != last {
                // After the last disk the wipe starts at once, and a text console may have scrolled the
                // line away by the next look; before it, the next question is right below.
                self.wait_for(&[&l.fill(Key::ConfirmOk, &[("disk", disk)])], stage)?;
            }
        }
        let mut needles = vec![l.t(Key::ResultTitle).to_owned(), l.t(Key::NextMachine).to_owned()];
        if let Some((disk, _)) = script.disks.last() {
            needles.push(format!("{} {disk} ", l.t(Key::ResultDisk)));
        }
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        self.wait_for(&needles, script.wipe)
    }
}

/// A stick built for the volunteer tests: its image, and the station key's public half.
#[derive(Debug)]
pub struct FlowStick {
    /// The stick image (booted in place: the guest writes its outbox there).
    pub image: PathBuf,
    /// The public half of the station key on it.
    pub station_pub: lapterop_certificate::VerifyingKey,
}

/// A site config without server or OS image, wiping with zeros and reading every byte back, in
/// `language` (`nl`, `en`), with an optional confirmation word, in `mode` (`interactive`, `unattended`).
pub fn site_toml(language: &str, confirm_word: Option<&str>, mode: &str) -> String {
    let word = confirm_word
        .map(|w| format!("confirm_word = \"{w}\"\n"))
        .unwrap_or_default();
    format!(
        "[station]\norganisation = \"Iedereendigitaal@Leuven\"\nsite = \"QEMU workbench\"\nname = \"console-stick\"\n\n\
         [wipe]\npattern = \"zero\"\nverify = \"full\"\n\n\
         [ui]\nlanguage = \"{language}\"\n{word}\n\
         [flow]\nmode = \"{mode}\"\npower_off = true\n"
    )
}

/// Builds a stick in `dir` with `agent`, a fresh station key and `site` (the text of site.toml), for
/// `console`.
pub fn build_flow_stick(agent: &Path, dir: &Path, console: Console, site: &str) -> Result<FlowStick, VmError> {
    let io = io_err;
    let key = lapterop_certificate::keys::generate().map_err(|e| VmError::Stick(e.to_string()))?;
    let prefix = dir.join("station");
    lapterop_certificate::keys::write_keypair(&prefix, &key).map_err(|e| VmError::Stick(e.to_string()))?;
    let site_file = dir.join("site.toml");
    std::fs::write(&site_file, site).map_err(io("writing", &site_file))?;
    let image = dir.join("stick.img");
    let opts = crate::stick::StickOptions {
        extra_cmdline: console.extra_cmdline().into(),
        site: Some(site_file),
        station_key: Some(prefix.with_extension("key")),
        zstd_level: 3,
        ..crate::stick::StickOptions::default()
    };
    crate::stick::build_stick(agent, &image, &opts)?;
    Ok(FlowStick {
        image,
        station_pub: key.verifying_key(),
    })
}

/// One laptop's whole session on the serial console, boot to power-off, in seconds: `interactive` is
/// driven by a volunteer who answers at once (no reading time), `unattended` runs by itself. The laptop
/// has one 64 MiB virtio disk.
pub fn whole_laptop_seconds(stick: &FlowStick, interactive: bool, work: &Path) -> Result<f64, VmError> {
    let disk = crate::vm::DiskSpec {
        bus: crate::vm::Bus::Virtio,
        size: 64 << 20,
        sector: 512,
    };
    let spec = crate::vm::VmSpec {
        disks: vec![disk],
        nic: None,
        memory_mib: 768,
        ..crate::vm::VmSpec::default()
    };
    let files = crate::vm::create_disk_files(&spec, work)?;
    let stick_copy = work.join("stick.img");
    std::fs::copy(&stick.image, &stick_copy).map_err(io_err("copying", &stick.image))?;
    let mut vm = StickVm::start(&stick_copy, crate::stick::Firmware::Bios, &spec, &files)?;
    if interactive {
        let mut v = Volunteer::new(&mut vm, Console::Serial)?;
        let script = Script {
            lang: Lang::En,
            word: None,
            disks: vec![("vda".into(), "LAPTEROP-D0".into())],
            switch_language: false,
            mistype: false,
            stage: Duration::from_secs(240),
            wipe: Duration::from_secs(600),
        };
        v.run_flow(&script)?;
        v.answer("p")?;
    }
    let (status, took) = vm.wait_exit(Duration::from_secs(900))?;
    if !status.success() {
        return Err(VmError::NoMarker {
            status: status.to_string(),
            tail: vm.console(),
        });
    }
    if !vm.console().contains("LAPTEROP-JOB-DONE") {
        return Err(VmError::NoMarker {
            status: "the job did not finish".into(),
            tail: vm.console(),
        });
    }
    Ok(took.as_secs_f64())
}
