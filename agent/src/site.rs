//! The site config: `lapterop/site.toml` on the stick's data partition (`docs/lead-guide.md`).
//!
//! One TOML file a lead edits (from Windows too). Each table belongs to one part of the agent:
//! `[station]` signs, `[server]` receives, `[wipe]` and `[install]` say what the job does, `[flow]` how
//! it runs, `[ui]` and `[refurbishment]` are read by the screens and the audit policy, `[network]` by the live
//! image's link lifecycle (Wi-Fi). An unknown table
//! or key, or a value out of range, is refused with one line naming it: a typo must never silently
//! weaken a wipe. The file is parsed here once, into [`Site`]; no other module reads it.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Deserialize;

use crate::firmware::Method;
use crate::wipe::{PatternChoice, VerifyChoice};

/// Where the live image carries the trusted OS image key: the image builder bakes `--image-key` into
/// the initramfs here. `run` and `flow` read it unless `--image-key` names another file.
pub const BAKED_IMAGE_KEY: &str = "/etc/lapterop/image.pub";

/// The whole site config, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    /// Who signs.
    pub station: Station,
    /// Where certificates go; `None` keeps them in the outbox.
    pub server: Option<Server>,
    /// How disks are wiped.
    pub wipe: Wipe,
    /// The standard OS image, if one is installed after the wipe.
    pub install: Option<Install>,
    /// How the job runs.
    pub flow: Flow,
    /// The screens.
    pub ui: crate::ui::UiConfig,
    /// The audit policy.
    pub policy: crate::audit::policy::Policy,
    /// The networks the live image may join.
    pub network: Network,
}

/// `[network]`: wired links always use DHCP; these are the Wi-Fi networks, tried when no wired link
/// has a lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Network {
    /// `[[network.wifi]]`, the most preferred first.
    pub wifi: Vec<crate::wifi::WifiNetwork>,
}

/// `[station]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Station {
    /// Organisation running the workshop.
    pub organisation: String,
    /// The workshop site.
    pub site: String,
    /// The stick's or bench's name, if any.
    pub name: Option<String>,
    /// The station's secret key file.
    pub key: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Base URL of the collection server.
    pub url: String,
    /// The server's public key (checks receipts), if given.
    pub key: Option<PathBuf>,
}

/// `[wipe]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wipe {
    /// Overwrite pattern.
    pub pattern: PatternChoice,
    /// Number of passes.
    pub passes: u32,
    /// Read-back.
    pub verify: VerifyChoice,
    /// Firmware erase method.
    pub method: Method,
    /// ATA Security Erase allowed.
    pub allow_security_erase: bool,
    /// What to do with an ATA Host Protected Area.
    pub hidden_areas: HiddenAreasChoice,
    /// What to do when a drive's firmware erase is frozen by the BIOS.
    pub unfreeze: UnfreezeChoice,
    /// What to do with SD cards in the reader and USB disks other than the stick.
    pub external: ExternalChoice,
    /// Whether SSDs are discarded after the verified overwrite.
    pub discard: crate::wipe::DiscardChoice,
    /// What follows a verified firmware purge.
    pub after_purge: crate::wipe::AfterPurge,
    /// A locked self-encrypting (Opal) drive may be reset with the PSID typed from its label.
    pub opal_psid_revert: bool,
}

/// `[wipe] external`: SD cards in the card reader and USB disks other than the boot stick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExternalChoice {
    /// Leave them alone: they are the donor's, and the certificate lists them as not touched.
    Leave,
    /// Wipe them with the laptop's disks (never the install target).
    Wipe,
}

/// `[wipe] hidden_areas`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HiddenAreasChoice {
    /// Open an HPA for the wipe with a volatile SET MAX and close it afterwards.
    Expose,
    /// Leave it as it is (recorded; the disk is then at best erased with exceptions).
    Leave,
}

/// `[wipe] unfreeze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UnfreezeChoice {
    /// Fall back to the overwrite and say why.
    Never,
    /// Suspend to RAM with an RTC wake alarm (the drive's power cycle lifts the freeze), then check
    /// again. Only for laptop models known to wake by themselves.
    Suspend,
}

/// `[install]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    /// The image: a file (relative to the stick's `lapterop/` directory) or an `http(s)://` URL.
    pub image: String,
    /// `install.trust` as the config gave it: no longer read. The image key is the one baked into the
    /// live image ([`BAKED_IMAGE_KEY`]); a key file on the stick's FAT partition can be changed from any
    /// PC, so it is never trusted. Kept to tell the lead the line does nothing.
    pub ignored_trust: Option<PathBuf>,
    /// Which erased disk receives it.
    pub target: TargetChoice,
    /// The hostname pattern written into the installed system's `lapterop/machine.json`
    /// (placeholders in [`crate::install::identity`]; default `lapterop-{serial}`).
    pub hostname: String,
}

/// Which disk the OS image goes onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetChoice {
    /// A solid-state disk before a spinning one, then the largest (ties: the first by name).
    Auto,
    /// The largest disk.
    Largest,
    /// The first disk by kernel name.
    First,
}

/// `[flow]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// `interactive` (the volunteer's screens) or `unattended`.
    pub mode: Mode,
    /// Switch the laptop off when an unattended job ends (else wait at a shell for the lead).
    pub power_off: bool,
}

/// How the job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Screens, confirmation, operator name.
    Interactive,
    /// No questions: every internal disk is wiped (for benches of identical machines and for tests).
    Unattended,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    station: RawStation,
    server: Option<RawServer>,
    #[serde(default)]
    wipe: RawWipe,
    install: Option<RawInstall>,
    #[serde(default)]
    flow: RawFlow,
    #[serde(default)]
    ui: crate::ui::UiConfig,
    #[serde(default)]
    refurbishment: crate::audit::policy::Policy,
    lead: Option<RawLead>,
    #[serde(default)]
    network: RawNetwork,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    #[serde(default)]
    wifi: Vec<RawWifi>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWifi {
    ssid: String,
    passphrase: Option<String>,
    psk: Option<String>,
}

/// `[lead]`: read by the image builder, which bakes the hash into the initramfs; checked here so that
/// a typo is found at the laptop too.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLead {
    password_hash: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    organisation: Option<String>,
    site: Option<String>,
    name: Option<String>,
    key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    url: String,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWipe {
    pattern: Option<String>,
    passes: Option<u32>,
    verify: Option<String>,
    method: Option<String>,
    allow_security_erase: Option<bool>,
    hidden_areas: Option<String>,
    unfreeze: Option<String>,
    external: Option<String>,
    discard: Option<String>,
    after_purge: Option<String>,
    opal_psid_revert: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstall {
    image: String,
    trust: Option<PathBuf>,
    target: Option<String>,
    hostname: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlow {
    mode: Option<String>,
    power_off: Option<bool>,
}

/// Why a site config cannot be used. The message is one line that names the key and what to write.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The file exists but cannot be read.
    #[error("reading {path}: {source}")]
    Read {
        /// `site.toml`.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A table, key or value is wrong.
    #[error("{}{problem}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Invalid {
        /// The file, when it came from one.
        path: Option<PathBuf>,
        /// What is wrong, naming the key.
        problem: String,
    },
}

impl SiteError {
    fn invalid(problem: impl Into<String>) -> SiteError {
        SiteError::Invalid {
            path: None,
            problem: problem.into(),
        }
    }
}

/// Parses one of the agent's choice words (`random`, `full`, `auto`...), naming the key when wrong.
fn choice<T: ValueEnum>(key: &str, value: Option<&str>, default: T) -> Result<T, SiteError> {
    let Some(v) = value else {
        return Ok(default);
    };
    T::from_str(v, true).map_err(|_| {
        let allowed: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|x| x.to_possible_value().map(|p| p.get_name().to_owned()))
            .collect();
        SiteError::invalid(format!("{key} = {v:?}: use one of {}", allowed.join(", ")))
    })
}

impl Site {
    /// Parses and checks a site config. Relative paths are resolved against `base` (the stick's
    /// `lapterop/` directory). One line saying what is wrong.
    pub fn parse(text: &str, base: &Path) -> Result<Site, SiteError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let table = e.span().and_then(|span| table_at(text, span.start));
            let problem = one_line(e.message());
            SiteError::invalid(match table {
                Some(t) => format!("[{t}]: {problem}"),
                None => problem,
            })
        })?;
        raw.ui.validate().map_err(SiteError::invalid)?;
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let passes = raw.wipe.passes.unwrap_or(1);
        if !(1..=16).contains(&passes) {
            return Err(SiteError::invalid(format!("wipe.passes = {passes}: use 1 to 16")));
        }
        let verify = choice("wipe.verify", raw.wipe.verify.as_deref(), VerifyChoice::Full)?;
        if verify == VerifyChoice::None {
            return Err(SiteError::invalid(
                "wipe.verify = \"none\": a site must verify (full or sample); without a read-back no disk \
                        can be certified erased",
            ));
        }
        if let Some(lead) = &raw.lead {
            lapterop_certificate::lead_password::LeadHash::parse(&lead.password_hash)
                .map_err(|e| SiteError::invalid(format!("lead.password_hash: {e}")))?;
        }
        let server = match raw.server {
            Some(s) => {
                let url = s.url.trim_end_matches('/').to_owned();
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(SiteError::invalid(format!(
                        "server.url = {:?}: use an http:// or https:// address",
                        s.url
                    )));
                }
                Some(Server {
                    url,
                    key: s.key.map(at),
                })
            }
            None => None,
        };
        let wifi = raw
            .network
            .wifi
            .iter()
            .enumerate()
            .map(|(i, w)| {
                crate::wifi::WifiNetwork::check(i + 1, &w.ssid, w.passphrase.as_deref(), w.psk.as_deref())
                    .map_err(SiteError::invalid)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let install = match raw.install {
            Some(i) => Some(Install {
                image: i.image,
                ignored_trust: i.trust,
                target: choice("install.target", i.target.as_deref(), TargetChoice::Auto)?,
                hostname: {
                    let h = i.hostname.unwrap_or_else(|| "lapterop-{serial}".into());
                    crate::install::identity::check_pattern(&h).map_err(SiteError::invalid)?;
                    h
                },
            }),
            None => None,
        };
        Ok(Site {
            station: Station {
                organisation: raw.station.organisation.unwrap_or_else(|| "Lapterop workshop".into()),
                site: raw.station.site.unwrap_or_else(|| "unspecified site".into()),
                name: raw.station.name,
                key: at(raw.station.key.unwrap_or_else(|| PathBuf::from("station.key"))),
            },
            server,
            wipe: Wipe {
                pattern: choice("wipe.pattern", raw.wipe.pattern.as_deref(), PatternChoice::Random)?,
                passes,
                verify,
                method: choice("wipe.method", raw.wipe.method.as_deref(), Method::Auto)?,
                allow_security_erase: raw.wipe.allow_security_erase.unwrap_or(false),
                hidden_areas: choice(
                    "wipe.hidden_areas",
                    raw.wipe.hidden_areas.as_deref(),
                    HiddenAreasChoice::Expose,
                )?,
                unfreeze: choice("wipe.unfreeze", raw.wipe.unfreeze.as_deref(), UnfreezeChoice::Never)?,
                external: choice("wipe.external", raw.wipe.external.as_deref(), ExternalChoice::Leave)?,
                discard: choice(
                    "wipe.discard",
                    raw.wipe.discard.as_deref(),
                    crate::wipe::DiscardChoice::Ssd,
                )?,
                after_purge: choice(
                    "wipe.after_purge",
                    raw.wipe.after_purge.as_deref(),
                    crate::wipe::AfterPurge::Overwrite,
                )?,
                opal_psid_revert: raw.wipe.opal_psid_revert.unwrap_or(false),
            },
            install,
            flow: Flow {
                mode: choice("flow.mode", raw.flow.mode.as_deref(), Mode::Interactive)?,
                power_off: raw.flow.power_off.unwrap_or(true),
            },
            ui: raw.ui,
            policy: raw.refurbishment,
            network: Network { wifi },
        })
    }

    /// Reads `site.toml` from the stick's `lapterop/` directory; a missing file gives the defaults.
    pub fn load(dir: &Path) -> Result<Site, SiteError> {
        let path = dir.join("site.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(SiteError::Read { path, source }),
        };
        Site::parse(&text, dir).map_err(|e| match e {
            SiteError::Invalid { problem, .. } => SiteError::Invalid {
                path: Some(path),
                problem,
            },
            other => other,
        })
    }

    /// Where the image lives: an URL as it is, a file relative to `base`.
    pub fn image_location(install: &Install, base: &Path) -> String {
        if install.image.starts_with("http://") || install.image.starts_with("https://") {
            install.image.clone()
        } else {
            let p = Path::new(&install.image);
            if p.is_absolute() {
                install.image.clone()
            } else {
                base.join(p).display().to_string()
            }
        }
    }
}

/// The name of the table whose header comes last before byte `offset` of `text` (`None` before the
/// first header).
fn table_at(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    before.lines().rev().find_map(|line| {
        let l = line.trim();
        let name = l.strip_prefix('[')?.split(']').next()?.trim_matches(['[', ' ']);
        (!name.is_empty()).then(|| name.to_owned())
    })
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::policy::Policy;

    const FULL: &str = r#"
[station]
organisation = "Iedereendigitaal@Leuven"
site = "Tweebronnen"
name = "stick-07"

[server]
url = "http://10.0.2.100:8080/"
key = "server.pub"

[wipe]
pattern = "zero"
verify = "sample"
method = "overwrite"

[install]
image = "images/pupil.lapos"
target = "largest"
hostname = "leuven-{asset}"

[flow]
mode = "unattended"
power_off = false

[ui]
language = "en"

[refurbishment]
min_ram_mib = 4096
"#;

    #[test]
    fn a_full_config_resolves_paths_against_the_stick() {
        let s = Site::parse(FULL, Path::new("/stick/lapterop")).unwrap();
        assert_eq!(s.station.organisation, "Iedereendigitaal@Leuven");
        assert_eq!(s.station.key, Path::new("/stick/lapterop/station.key"));
        let server = s.server.as_ref().unwrap();
        assert_eq!(server.url, "http://10.0.2.100:8080");
        assert_eq!(server.key.as_deref(), Some(Path::new("/stick/lapterop/server.pub")));
        assert_eq!(
            (s.wipe.pattern, s.wipe.verify, s.wipe.method),
            (PatternChoice::Zero, VerifyChoice::Sample, Method::Overwrite)
        );
        let install = s.install.as_ref().unwrap();
        assert_eq!(install.ignored_trust, None);
        assert_eq!(install.target, TargetChoice::Largest);
        assert_eq!(install.hostname, "leuven-{asset}");
        let bad = FULL.replace("leuven-{asset}", "leuven-{assettag}");
        let e = Site::parse(&bad, Path::new("/stick/lapterop")).unwrap_err().to_string();
        assert!(e.contains("{assettag}") && e.contains("{asset}"), "{e}");
        assert_eq!(
            Site::image_location(install, Path::new("/stick/lapterop")),
            "/stick/lapterop/images/pupil.lapos"
        );
        assert_eq!(s.flow.mode, Mode::Unattended);
        assert!(!s.flow.power_off);
        assert_eq!(s.policy.min_ram_mib, 4096);
        assert_eq!(s.policy.max_parts, Policy::default().max_parts);
        assert_eq!(s.ui.language, lapterop_words::Lang::En);
    }

    #[test]
    fn the_screen_settings_come_from_the_ui_table() {
        let text = "[refurbishment]\nmin_ram_mib = 4096\n\n[ui]\nlanguage = \"en\"\nunattended_countdown_secs = 10\n\
                    keymap = \"be-latin1\"\n";
        let ui = Site::parse(text, Path::new("/x")).unwrap().ui;
        assert_eq!(ui.unattended_countdown_secs, Some(10));
        assert_eq!(ui.battery_min_percent, 30);
        assert_eq!(ui.keymap.as_deref(), Some("be-latin1"));
        assert_eq!(
            Site::parse("", Path::new("/x")).unwrap().ui,
            crate::ui::UiConfig::default()
        );
        assert_eq!(Site::parse("", Path::new("/x")).unwrap().policy, Policy::default());
    }

    #[test]
    fn an_empty_config_is_the_interactive_default_without_server_or_install() {
        let s = Site::parse("", Path::new("/x")).unwrap();
        assert_eq!(s.flow.mode, Mode::Interactive);
        assert!(s.server.is_none() && s.install.is_none());
        assert_eq!(s.wipe.verify, VerifyChoice::Full);
        assert_eq!(s.wipe.method, Method::Auto);
        assert_eq!(s.wipe.hidden_areas, HiddenAreasChoice::Expose);
        assert_eq!(
            s.wipe.unfreeze,
            UnfreezeChoice::Never,
            "suspending needs the site's permission"
        );
        assert_eq!(
            s.wipe.external,
            ExternalChoice::Leave,
            "the donor's cards are left alone by default"
        );
        assert!(
            !s.wipe.opal_psid_revert,
            "a PSID Revert destroys everything: only where the site allows it"
        );
        let s = Site::parse("[wipe]\nopal_psid_revert = true\n", Path::new("/x")).unwrap();
        assert!(s.wipe.opal_psid_revert);
        let s = Site::parse("[wipe]\nexternal = \"wipe\"\n", Path::new("/x")).unwrap();
        assert_eq!(s.wipe.external, ExternalChoice::Wipe);
        let s = Site::parse(
            "[wipe]\nhidden_areas = \"leave\"\nunfreeze = \"suspend\"\n",
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(
            (s.wipe.hidden_areas, s.wipe.unfreeze),
            (HiddenAreasChoice::Leave, UnfreezeChoice::Suspend)
        );
    }

    #[test]
    fn several_wifi_networks_are_kept_in_order() {
        let text =
            "[[network.wifi]]\nssid = \"Bieb\"\npassphrase = \"boeken-2026\"\n\n[[network.wifi]]\nssid = \"IEEE\"\n\
                    psk = \"F42C6FC52DF0EBEF9EBB4B90B38A5F902E83FE1B135A70E23AED762E9710A12E\"\n";
        let s = Site::parse(text, Path::new("/x")).unwrap();
        let names: Vec<&str> = s.network.wifi.iter().map(|w| w.ssid.as_str()).collect();
        assert_eq!(names, ["Bieb", "IEEE"]);
        assert_eq!(s.network.wifi[1].psk(), crate::wifi::derive_psk("password", b"IEEE"));
        assert_eq!(
            s.network.wifi[0].key,
            crate::wifi::WifiKey::Passphrase("boeken-2026".into())
        );
        assert!(Site::parse("", Path::new("/x")).unwrap().network.wifi.is_empty());
    }

    #[test]
    fn typos_and_weak_settings_are_refused_with_the_key_named() {
        for (text, needle) in [
            ("[wipe]\npatern = \"zero\"\n", "patern"),
            ("[wipes]\n", "wipes"),
            ("[wipe]\nverify = \"none\"\n", "wipe.verify"),
            ("[wipe]\npattern = \"ones\"\n", "random"),
            ("[wipe]\npasses = 0\n", "wipe.passes"),
            ("[server]\nurl = \"ftp://x\"\n", "server.url"),
            ("[flow]\nmode = \"fast\"\n", "unattended"),
            ("[wipe]\nunfreeze = \"always\"\n", "wipe.unfreeze"),
            ("[wipe]\nhidden_areas = \"remove\"\n", "wipe.hidden_areas"),
            ("[wipe]\nexternal = \"all\"\n", "wipe.external"),
            ("[ui]\nlanguage = \"fr\"\n", "ui"),
            ("[refurbishment]\nmin_ram_mb = 1\n", "min_ram_mb"),
            ("[lead]\npassword_hash = \"lapterop\"\n", "lead.password_hash"),
            ("[lead]\npassword = \"lapterop\"\n", "password"),
            ("[network]\nwifi = \"x\"\n", "[network]"),
            ("[network]\nwired = true\n", "unknown field `wired`"),
            ("[[network.wifi]]\nssid = \"lab\"\n", "network.wifi #1 (lab): give its passphrase"),
            ("[[network.wifi]]\nssid = \"lab\"\npassphrase = \"password\"\n[[network.wifi]]\nssid = \"b\"\npassphrase = \"short\"\n", "network.wifi #2 (b): the passphrase has 5 characters"),
            ("[[network.wifi]]\nssid = \"lab\"\npassword = \"password\"\n", "unknown field `password`"),
            ("[ui]\nlanguge = \"en\"\n", "[ui]: unknown field `languge`"),
            ("[ui]\nconfirm_word = \"q\"\n", "ui.confirm_word"),
            ("[ui]\nkeymap = \"../be\"\n", "ui.keymap"),
            ("[ui]\nbattery_min_percent = 101\n", "ui.battery_min_percent"),
            (
                "[station]\nsite = \"x\"\n[refurbishment]\nmin_ram_mb = 1\n",
                "[refurbishment]",
            ),
        ] {
            let e = Site::parse(text, Path::new("/x")).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
