//! Per-laptop identity on the installed system: `lapterop/machine.json` on its EFI system partition.
//!
//! The image is the same for every laptop; what makes one installed laptop itself (its certificate,
//! its serial and asset tag, the name it should carry on the school's network) is written by the agent
//! after the install, on the FAT ESP, where the image's own first-boot unit reads it (the lead guide
//! shows one that sets the hostname). The file is written with the `fatfs` crate through a loop device
//! of exactly the ESP, like the other partition work of the installer; `.` and `..` of the new
//! directory are then put back in slots 0 and 1 ([`lapterop_osimage::fatdirs`]: `fatfs` 0.3.6 puts
//! long names in front of them).
//!
//! The site's `[install] hostname` pattern names the machine. Placeholders: `{serial}` (the system
//! serial), `{asset}` (the asset tag), `{model}` (the product name), `{vendor}`, `{id}` (the first 8
//! characters of the certificate id). The result is made a valid hostname (RFC 1123 label): lower
//! case, anything but `a-z`, `0-9` and `-` becomes `-`, runs of `-` collapse, no `-` at either end, at
//! most 63 characters. An empty placeholder leaves nothing; an empty result falls back to
//! `lapterop-{id}`.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// The GPT type GUID of an EFI system partition.
pub const ESP_TYPE: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";

/// The placeholders a hostname pattern may use.
pub const PLACEHOLDERS: [&str; 5] = ["serial", "asset", "model", "vendor", "id"];

/// What is known about the laptop when its image is installed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// The certificate id of this job.
    pub certificate_id: String,
    /// The donor page, when the server has already answered (usually it has not at install time:
    /// the first-boot script can ask the server by `certificate_id`).
    pub donor_url: Option<String>,
    /// System serial number (SMBIOS type 1).
    pub serial: Option<String>,
    /// Asset tag (SMBIOS type 3), or the one the operator typed.
    pub asset_tag: Option<String>,
    /// Manufacturer.
    pub vendor: Option<String>,
    /// Product name.
    pub model: Option<String>,
}

/// `lapterop/machine.json` as written (schema `lapterop-machine/1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MachineFile<'a> {
    /// `lapterop-machine/1`.
    pub schema: &'static str,
    /// The machine the file describes.
    #[serde(flatten)]
    pub machine: &'a Machine,
    /// The site's hostname pattern applied.
    pub hostname: String,
    /// Image name and version installed.
    pub image: String,
    /// When the agent wrote it, RFC 3339 UTC.
    pub written_at: String,
}

/// Checks a hostname pattern's placeholders (for the site config): `Err` names the unknown one.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("install.hostname {pattern:?}: a `{{` without `}}`"))?;
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "install.hostname {pattern:?}: unknown placeholder {{{name}}}; use {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// The hostname `pattern` gives for `m`, sanitised to a valid hostname (see the module docs).
pub fn hostname(pattern: &str, m: &Machine) -> String {
    let id: String = m.certificate_id.chars().take(8).collect();
    let value = |name: &str| -> String {
        match name {
            "serial" => m.serial.clone(),
            "asset" => m.asset_tag.clone(),
            "model" => m.model.clone(),
            "vendor" => m.vendor.clone(),
            "id" => Some(id.clone()),
            _ => None,
        }
        .unwrap_or_default()
    };
    let mut raw = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        raw.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            rest = after;
            break;
        };
        raw.push_str(&value(&after[..close]));
        rest = &after[close + 1..];
    }
    raw.push_str(rest);
    let name = sanitise(&raw);
    if name.is_empty() {
        sanitise(&format!("lapterop-{id}"))
    } else {
        name
    }
}

/// A valid hostname label from any text.
fn sanitise(raw: &str) -> String {
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if c == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(c);
    }
    out.truncate(63);
    out.trim_end_matches('-').to_owned()
}

/// Writes `lapterop/machine.json` into the FAT filesystem on `esp` (a block device or file of exactly
/// the ESP), replacing an older one.
pub fn write_machine_json(esp: &Path, file: &MachineFile<'_>) -> Result<(), String> {
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(esp)
        .map_err(|e| format!("opening the installed ESP {}: {e}", esp.display()))?;
    let raw = dev
        .try_clone()
        .map_err(|e| format!("opening the installed ESP {}: {e}", esp.display()))?;
    let fs = fatfs::FileSystem::new(dev, fatfs::FsOptions::new())
        .map_err(|e| format!("reading the installed ESP's FAT: {e}"))?;
    let json = serde_json::to_vec_pretty(file).map_err(|e| format!("encoding machine.json: {e}"))?;
    {
        let root = fs.root_dir();
        if root.open_dir("lapterop").is_err() {
            root.create_dir("lapterop")
                .map_err(|e| format!("creating lapterop/ on the installed ESP: {e}"))?;
        }
        let dir = root
            .open_dir("lapterop")
            .map_err(|e| format!("opening lapterop/ on the installed ESP: {e}"))?;
        let mut f = dir
            .create_file("machine.json")
            .map_err(|e| format!("creating lapterop/machine.json on the installed ESP: {e}"))?;
        f.truncate()
            .map_err(|e| format!("emptying lapterop/machine.json: {e}"))?;
        f.write_all(&json)
            .and_then(|()| f.write_all(b"\n"))
            .and_then(|()| f.flush())
            .map_err(|e| format!("writing lapterop/machine.json on the installed ESP (is it full?): {e}"))?;
    }
    fs.unmount()
        .map_err(|e| format!("closing the installed ESP's FAT: {e}"))?;
    // `fatfs` 0.3.6 puts long names in front of `.` and `..` of the `lapterop/` it made; put them
    // where the FAT specification (and `fsck.vfat`, chkdsk) wants them.
    lapterop_osimage::fatdirs::fix_dot_entries(&raw, 0)
        .map(drop)
        .map_err(|e| format!("fixing lapterop/ on the installed ESP's FAT: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn laptop() -> Machine {
        Machine {
            certificate_id: "019abc12-3456-7def-8123-456789abcdef".into(),
            serial: Some("5CG 1234/XYZ".into()),
            asset_tag: Some("Leuven_0042".into()),
            model: Some("ThinkPad T480".into()),
            vendor: Some("LENOVO".into()),
            ..Machine::default()
        }
    }

    #[test]
    fn patterns_fill_placeholders_and_sanitise_to_a_hostname() {
        let m = laptop();
        assert_eq!(hostname("leuven-{serial}", &m), "leuven-5cg-1234-xyz");
        assert_eq!(hostname("{asset}", &m), "leuven-0042");
        assert_eq!(hostname("{vendor}-{model}", &m), "lenovo-thinkpad-t480");
        assert_eq!(hostname("pc-{id}", &m), "pc-019abc12");
        // An unknown serial leaves the prefix alone, without a dangling dash.
        let none = Machine {
            serial: None,
            ..laptop()
        };
        assert_eq!(hostname("leuven-{serial}", &none), "leuven");
        // Nothing usable at all: the certificate id names it.
        assert_eq!(hostname("{serial}", &none), "lapterop-019abc12");
        let long = Machine {
            serial: Some("x".repeat(100)),
            ..laptop()
        };
        assert_eq!(hostname("{serial}", &long).len(), 63);
        assert_eq!(hostname("Ünï  {asset}--", &m), "n-leuven-0042");
    }

    #[test]
    fn unknown_placeholders_are_refused_with_the_known_ones() {
        assert!(check_pattern("leuven-{serial}-{asset}").is_ok());
        let e = check_pattern("leuven-{serail}").unwrap_err();
        assert!(e.contains("{serail}") && e.contains("{serial}"), "{e}");
        assert!(check_pattern("leuven-{serial").is_err());
    }
}
