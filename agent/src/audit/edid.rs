//! Screens from `/sys/class/drm/*/edid`, decoded per VESA E-EDID 1.4 (base block only).
//!
//! Read from the 128-byte base block: the fixed header, the manufacturer id (three 5-bit letters,
//! bytes 8-9, big-endian), product code (10-11, little-endian), manufacture year (17, + 1990), maximum
//! image size in cm (21-22), the first detailed timing descriptor (54-71: pixel clock, active pixels,
//! image size in mm) as the preferred (native) mode, a display product name descriptor (tag 0xFC),
//! and the checksum (all 128 bytes sum to 0 mod 256). No crate decodes EDID without pulling in a
//! display stack, and this is 80 lines against the spec's tables.

use serde::{Deserialize, Serialize};

use super::tree::Tree;
use super::Gap;

const CLASS: &str = "sys/class/drm";
const HEADER: [u8; 8] = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];

/// One connected display.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Screen {
    /// DRM connector (`card0-eDP-1`).
    pub connector: String,
    /// Built into the laptop (eDP, LVDS or DSI connector).
    pub internal: bool,
    /// Three-letter PNP manufacturer id (`AUO`, `BOE`, `LGD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Product code, four hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_code: Option<String>,
    /// Name from the display product name descriptor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Year of manufacture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u32>,
    /// Image width in mm (preferred timing), or in cm * 10 when the timing gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width_mm: Option<u32>,
    /// Image height in mm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height_mm: Option<u32>,
    /// Diagonal in tenths of an inch (156 = 15.6").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagonal_tenth_inches: Option<u32>,
    /// Native horizontal resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_width: Option<u32>,
    /// Native vertical resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_height: Option<u32>,
}

impl Screen {
    /// `15.6" 1920x1080 AUO` style description.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.diagonal_tenth_inches {
            parts.push(format!("{}.{}\"", d / 10, d % 10));
        }
        if let (Some(w), Some(h)) = (self.native_width, self.native_height) {
            parts.push(format!("{w}x{h}"));
        }
        if let Some(m) = &self.manufacturer {
            parts.push(m.clone());
        }
        if parts.is_empty() {
            parts.push(self.connector.clone());
        }
        parts.join(" ")
    }
}

/// Whether a DRM connector name is a built-in panel.
pub fn is_internal(connector: &str) -> bool {
    ["-eDP-", "-LVDS-", "-DSI-"].iter().any(|k| connector.contains(k))
}

/// Reads every connector that has a non-empty EDID (an empty file means nothing is connected).
/// Returns the connector names the driver exposes (`card0-eDP-1`) and the screens found.
pub fn read(tree: &Tree, gaps: &mut Vec<Gap>) -> (Vec<String>, Vec<Screen>) {
    let Ok(names) = tree.list(CLASS) else {
        return (Vec::new(), Vec::new());
    };
    let connectors: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with("card") && n.contains('-'))
        .collect();
    let mut screens = Vec::new();
    for name in &connectors {
        let path = format!("{CLASS}/{name}/edid");
        if !tree.exists(&path) {
            continue;
        }
        let internal = is_internal(name);
        let bytes = match tree.read(&path) {
            Ok(bytes) => bytes,
            Err(err) => {
                gaps.push(Gap::new(format!("screen {name}"), format!("cannot read {path}: {err}")));
                continue;
            }
        };
        if bytes.is_empty() {
            // Nothing answers on this connector; for a built-in panel the policy says so.
            continue;
        }
        match parse(&bytes) {
            Ok((mut screen, problems)) => {
                screen.connector = name.clone();
                screen.internal = internal;
                for p in problems {
                    gaps.push(Gap::new(format!("screen {name}"), p));
                }
                screens.push(screen);
            }
            Err(err) => gaps.push(Gap::new(format!("screen {name}"), err)),
        }
    }
    (connectors, screens)
}

/// Decodes an EDID base block. `Err` when it is not an EDID at all; otherwise the fields that could be
/// read and a list of problems (bad checksum, no detailed timing).
pub fn parse(edid: &[u8]) -> Result<(Screen, Vec<String>), String> {
    if edid.len() < 128 {
        return Err(format!("EDID is {} bytes, the base block needs 128", edid.len()));
    }
    if edid[..8] != HEADER {
        return Err("EDID does not start with the fixed header 00 FF FF FF FF FF FF 00".to_string());
    }
    let mut problems = Vec::new();
    let sum = edid[..128].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    if sum != 0 {
        problems.push(format!(
            "EDID base block checksum is off by {sum:#04x}: values may be wrong"
        ));
    }
    let mut s = Screen::default();
    // Bytes 8-9: three letters, 5 bits each, 1 = 'A'.
    let id = u16::from_be_bytes([edid[8], edid[9]]);
    let letters: Option<String> = [10u16, 5, 0]
        .iter()
        .map(|shift| {
            let v = (id >> shift) & 0x1F;
            (1..=26)
                .contains(&v)
                .then(|| char::from(b'A' + u8::try_from(v - 1).unwrap_or(0)))
        })
        .collect();
    s.manufacturer = letters;
    s.product_code = Some(format!("{:04x}", u16::from_le_bytes([edid[10], edid[11]])));
    if (1..=0xFE).contains(&edid[17]) {
        s.year = Some(1990 + u32::from(edid[17]));
    }
    // Bytes 21-22: maximum image size in cm (0 = unknown or projector).
    let (cm_w, cm_h) = (u32::from(edid[21]), u32::from(edid[22]));
    // First detailed timing descriptor (bytes 54-71) is the preferred timing mode (EDID 1.4: always).
    let d = &edid[54..72];
    if u16::from_le_bytes([d[0], d[1]]) != 0 {
        let hi = |lo: u8, nib: u8| u32::from(lo) | (u32::from(nib) << 8);
        s.native_width = Some(hi(d[2], d[4] >> 4));
        s.native_height = Some(hi(d[5], d[7] >> 4));
        let (mm_w, mm_h) = (hi(d[12], d[14] >> 4), hi(d[13], d[14] & 0x0F));
        if mm_w > 0 && mm_h > 0 {
            s.width_mm = Some(mm_w);
            s.height_mm = Some(mm_h);
        }
    } else {
        problems.push("EDID has no preferred detailed timing: native resolution unknown".to_string());
    }
    if s.width_mm.is_none() && cm_w > 0 && cm_h > 0 {
        s.width_mm = Some(cm_w * 10);
        s.height_mm = Some(cm_h * 10);
    }
    if let (Some(w), Some(h)) = (s.width_mm, s.height_mm) {
        // Diagonal in 1/100 mm by integer square root, then tenths of an inch (25.4 mm), rounded.
        let d100 = isqrt((u64::from(w) * u64::from(w) + u64::from(h) * u64::from(h)) * 10_000);
        s.diagonal_tenth_inches = u32::try_from((d100 * 100 / 254 + 50) / 100).ok();
    }
    // Descriptors 2-4 (bytes 72, 90, 108): display descriptors start 00 00 00 <tag>.
    for at in [72usize, 90, 108] {
        let b = &edid[at..at + 18];
        if b[..3] == [0, 0, 0] && b[3] == 0xFC {
            let text: String = b[5..18]
                .iter()
                .take_while(|c| **c != 0x0A)
                .map(|c| char::from(*c))
                .collect();
            let text = text.trim();
            if !text.is_empty() {
                s.name = Some(text.to_string());
            }
        }
    }
    Ok((s, problems))
}

fn isqrt(n: u64) -> u64 {
    // Newton's method on integers; exact floor square root.
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isqrt_is_floor() {
        for n in [0u64, 1, 2, 3, 4, 15, 16, 17, 1_000_000, 999_999] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
    }

    #[test]
    fn rejects_short_and_headerless() {
        assert!(parse(&[0u8; 64]).is_err());
        assert!(parse(&[0u8; 128]).is_err());
    }
}
