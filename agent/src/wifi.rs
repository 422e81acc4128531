//! Wi-Fi for the live image: the `[[network.wifi]]` networks of the site config, checked; the
//! WPA2-Personal PSK derived from a passphrase (IEEE 802.11i-2004 Annex H.4); the `wpa_supplicant`
//! configuration the live image's init writes for them; and the supplicant's control-interface events
//! the link lifecycle ([`crate::init::network`]) turns into screen states.
//!
//! Everything here is pure (text and bytes in, values out); starting the supplicant and reading its
//! socket is the init's job.

use std::fmt;

use pbkdf2::pbkdf2_hmac;
use sha1::Sha1;

/// The smallest and largest passphrase, in ASCII characters (IEEE 802.11i-2004 H.4.1).
pub const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 8..=63;
/// The largest SSID, in bytes (IEEE 802.11-2020 9.4.2.2).
pub const SSID_MAX: usize = 32;

/// The key of one network.
#[derive(Clone, PartialEq, Eq)]
pub enum WifiKey {
    /// The passphrase as the lead wrote it: WPA2-Personal (through its PSK) and WPA3-Personal (SAE,
    /// which needs the passphrase itself).
    Passphrase(String),
    /// The derived 256-bit PSK: WPA2-Personal only (SAE cannot use it), the passphrase is not on the
    /// stick.
    Psk([u8; 32]),
}

impl fmt::Debug for WifiKey {
    // The key is a secret: never in a log or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WifiKey::Passphrase(_) => f.write_str("Passphrase(..)"),
            WifiKey::Psk(_) => f.write_str("Psk(..)"),
        }
    }
}

/// One configured network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WifiNetwork {
    /// Its name, 1 to 32 bytes.
    pub ssid: String,
    /// Its key.
    pub key: WifiKey,
}

impl WifiNetwork {
    /// Checks one `[[network.wifi]]` entry (number `n`, from 1, for the message): the SSID, and exactly
    /// one of `passphrase` (8 to 63 printable ASCII characters) or `psk` (64 hex digits).
    pub fn check(n: usize, ssid: &str, passphrase: Option<&str>, psk: Option<&str>) -> Result<WifiNetwork, String> {
        let at = format!("network.wifi #{n}");
        if ssid.is_empty() || ssid.len() > SSID_MAX {
            return Err(format!(
                "{at}: ssid {ssid:?} is {} bytes: an SSID has 1 to {SSID_MAX} bytes",
                ssid.len()
            ));
        }
        if ssid.chars().any(char::is_control) {
            return Err(format!(
                "{at}: ssid {ssid:?} holds a control character: write the name as the laptop shows it"
            ));
        }
        let key = match (passphrase, psk) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{at} ({ssid}): give passphrase or psk, not both (psk is the passphrase derived, `wpa_passphrase SSID`)"
                ))
            }
            (None, None) => return Err(format!("{at} ({ssid}): give its passphrase, or its psk (64 hex digits)")),
            (Some(p), None) => {
                let len = p.chars().count();
                if !PASSPHRASE_LEN.contains(&len) {
                    return Err(format!(
                        "{at} ({ssid}): the passphrase has {len} characters: WPA-Personal needs 8 to 63"
                    ));
                }
                if !p.chars().all(|c| (' '..='~').contains(&c)) {
                    return Err(format!(
                        "{at} ({ssid}): the passphrase holds a character that is not printable ASCII: WPA-Personal \
                         passphrases are ASCII (give the psk instead)"
                    ));
                }
                WifiKey::Passphrase(p.to_owned())
            }
            (None, Some(h)) => {
                let bytes = hex::decode(h).ok().and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or_else(|| {
                    format!("{at} ({ssid}): psk must be 64 hex digits (`wpa_passphrase SSID` derives it)")
                })?;
                WifiKey::Psk(bytes)
            }
        };
        Ok(WifiNetwork {
            ssid: ssid.to_owned(),
            key,
        })
    }

    /// The 256-bit PSK WPA2-Personal uses.
    pub fn psk(&self) -> [u8; 32] {
        match &self.key {
            WifiKey::Passphrase(p) => derive_psk(p, self.ssid.as_bytes()),
            WifiKey::Psk(k) => *k,
        }
    }
}

/// The PSK of a passphrase for an SSID: PBKDF2-HMAC-SHA1(passphrase, ssid, 4096, 32 bytes) (IEEE
/// 802.11i-2004 H.4.1).
pub fn derive_psk(passphrase: &str, ssid: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2_hmac::<Sha1>(passphrase.as_bytes(), ssid, 4096, &mut out);
    out
}

/// The `wpa_supplicant.conf` for `networks`, the first the most preferred. `ctrl_dir` is the control
/// interface directory the init reads events from. The SSID is written in hex and the PSK as its 64
/// hex digits, so no name or passphrase needs quoting; the passphrase itself appears only as
/// `sae_password` (WPA3-Personal needs it).
pub fn supplicant_config(networks: &[WifiNetwork], ctrl_dir: &str) -> String {
    let mut out = format!("ctrl_interface={ctrl_dir}\nupdate_config=0\nap_scan=1\n");
    for (i, n) in networks.iter().enumerate() {
        // wpa_supplicant tries higher priorities first.
        let priority = networks.len() - i;
        out.push_str(&format!(
            "network={{\n\tssid={}\n\tscan_ssid=1\n\tpriority={priority}\n\tpsk={}\n",
            hex::encode(n.ssid.as_bytes()),
            hex::encode(n.psk())
        ));
        match &n.key {
            WifiKey::Passphrase(p) => {
                // The last quote ends the string (wpa_supplicant's config parser): a quote inside is kept.
                out.push_str(&format!(
                    "\tsae_password=\"{p}\"\n\tkey_mgmt=WPA-PSK WPA-PSK-SHA256 SAE\n\tieee80211w=1\n"
                ));
            }
            WifiKey::Psk(_) => out.push_str("\tkey_mgmt=WPA-PSK WPA-PSK-SHA256\n\tieee80211w=1\n"),
        }
        out.push_str("}\n");
    }
    out
}

/// What the supplicant's control interface said, as far as the screens care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Trying to join `ssid`.
    Trying(String),
    /// Associated and keyed (`CTRL-EVENT-CONNECTED`): DHCP can start.
    Connected(String),
    /// The link to the network is gone.
    Disconnected,
    /// `ssid` refused the key: the passphrase or PSK is wrong.
    WrongKey(String),
}

/// Parses one control-interface line (`<3>CTRL-EVENT-...`); `None` for the lines that do not matter.
pub fn parse_event(line: &str) -> Option<Event> {
    let line = line.trim_end();
    // Unsolicited events start with their level, `<N>`.
    let text = match line.strip_prefix('<').and_then(|l| l.split_once('>')) {
        Some((_, rest)) => rest,
        None => line,
    };
    if let Some(rest) = text.strip_prefix("CTRL-EVENT-SSID-TEMP-DISABLED ") {
        if field(rest, "reason").as_deref() == Some("WRONG_KEY") {
            return Some(Event::WrongKey(field(rest, "ssid")?));
        }
        return None;
    }
    if let Some(rest) = text.strip_prefix("Trying to associate with ") {
        // `Trying to associate with 02:00:00:00:00:00 (SSID='lapterop-test' freq=2412 MHz)`
        let ssid = rest.split_once("SSID='")?.1.rsplit_once("' freq=")?.0;
        return Some(Event::Trying(ssid.to_owned()));
    }
    if let Some(rest) = text.strip_prefix("CTRL-EVENT-CONNECTED ") {
        // `CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:00:00 completed [id=0 id_str=]`: the SSID
        // is not in this line; the caller knows it from `Trying`.
        let _ = rest;
        return Some(Event::Connected(String::new()));
    }
    if text.starts_with("CTRL-EVENT-DISCONNECTED ") {
        return Some(Event::Disconnected);
    }
    None
}

/// A `key=value` or `key="value"` field of an event line.
fn field(text: &str, key: &str) -> Option<String> {
    let start = text.find(&format!("{key}="))? + key.len() + 1;
    let rest = &text[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        // wpa_supplicant writes the SSID with `wpa_ssid_txt`, quotes inside it escaped.
        let end = quoted.rfind('"')?;
        let raw = &quoted[..end];
        let raw = raw.split("\" ").next().unwrap_or(raw);
        return Some(unescape(raw));
    }
    Some(rest.split_whitespace().next().unwrap_or("").to_owned())
}

/// Undoes `wpa_ssid_txt`/`printf_encode` escaping: `\\`, `\"`, `\xNN`.
fn unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
                c @ (b'\\' | b'"') => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_psk_is_the_ieee_802_11i_test_vector() {
        // IEEE 802.11i-2004 H.4.2, test case 1: passphrase "password", SSID "IEEE".
        assert_eq!(
            hex::encode(derive_psk("password", b"IEEE")),
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
        // H.4.2 test case 2: "ThisIsAPassword", SSID "ThisIsASSID".
        assert_eq!(
            hex::encode(derive_psk("ThisIsAPassword", b"ThisIsASSID")),
            "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"
        );
        let n = WifiNetwork::check(1, "IEEE", Some("password"), None).unwrap();
        let p = WifiNetwork::check(1, "IEEE", None, Some(&hex::encode(n.psk()))).unwrap();
        assert_eq!(n.psk(), p.psk(), "the psk form gives the same key");
    }

    #[test]
    fn bad_networks_are_refused_in_one_line_naming_the_entry() {
        for (ssid, pass, psk, needle) in [
            ("", Some("password"), None, "1 to 32 bytes"),
            (&"x".repeat(33)[..], Some("password"), None, "1 to 32 bytes"),
            (
                "lab",
                Some("short"),
                None,
                "has 5 characters: WPA-Personal needs 8 to 63",
            ),
            ("lab", Some(&"p".repeat(64)[..]), None, "needs 8 to 63"),
            ("lab", Some("pässwört1"), None, "printable ASCII"),
            ("lab", None, None, "give its passphrase"),
            ("lab", Some("password"), Some("00"), "not both"),
            ("lab", None, Some("abc"), "64 hex digits"),
            ("lab", None, Some(&"g".repeat(64)[..]), "64 hex digits"),
            ("a\nb", Some("password"), None, "control character"),
        ] {
            let e = WifiNetwork::check(2, ssid, pass, psk).unwrap_err();
            assert!(e.contains(needle) && e.starts_with("network.wifi #2"), "{ssid:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
        // 32 bytes of UTF-8 is fine, the limit is bytes.
        assert!(WifiNetwork::check(1, &"é".repeat(16), Some("password"), None).is_ok());
        assert!(WifiNetwork::check(1, &"é".repeat(17), Some("password"), None).is_err());
        assert!(WifiNetwork::check(1, "lab", Some(&"p".repeat(63)), None).is_ok());
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        let n = WifiNetwork::check(1, "lab", Some("s3cret-passphrase"), None).unwrap();
        let text = format!("{n:?}");
        assert!(
            !text.contains("s3cret") && !text.contains(&hex::encode(n.psk())),
            "{text}"
        );
    }

    #[test]
    fn the_supplicant_config_lists_the_networks_in_order_without_the_psk_form_passphrase() {
        let a = WifiNetwork::check(1, "Work \"shop\"", Some("correct horse"), None).unwrap();
        let b = WifiNetwork::check(2, "IEEE", None, Some(&hex::encode(derive_psk("password", b"IEEE")))).unwrap();
        let c = supplicant_config(&[a.clone(), b], "/run/lapterop/wpa");
        assert!(c.starts_with("ctrl_interface=/run/lapterop/wpa\n"), "{c}");
        let blocks: Vec<&str> = c.split("network={").skip(1).collect();
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].contains(&format!("ssid={}\n", hex::encode("Work \"shop\""))));
        assert!(blocks[0].contains("priority=2") && blocks[1].contains("priority=1"));
        assert!(blocks[0].contains(&format!("psk={}\n", hex::encode(a.psk()))));
        assert!(blocks[0].contains("sae_password=\"correct horse\"") && blocks[0].contains("SAE"));
        assert!(blocks[1].contains("psk=f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e\n"));
        assert!(
            !blocks[1].contains("SAE") && !blocks[1].contains("sae_password"),
            "a PSK cannot do SAE"
        );
    }

    #[test]
    fn supplicant_events_are_read() {
        // Lines as wpa_supplicant 2.10 writes them (events.c, wpa_supplicant.c).
        assert_eq!(
            parse_event("<3>CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"lapterop-wrong\" auth_failures=1 duration=10 reason=WRONG_KEY"),
            Some(Event::WrongKey("lapterop-wrong".into()))
        );
        assert_eq!(
            parse_event("<3>CTRL-EVENT-SSID-TEMP-DISABLED id=0 ssid=\"a \\\"b\\\"\" auth_failures=1 duration=10 reason=WRONG_KEY"),
            Some(Event::WrongKey("a \"b\"".into()))
        );
        assert_eq!(
            parse_event(
                "<3>CTRL-EVENT-SSID-TEMP-DISABLED id=1 ssid=\"x\" auth_failures=2 duration=20 reason=CONN_FAILED"
            ),
            None
        );
        assert_eq!(
            parse_event("<3>Trying to associate with 02:00:00:00:01:00 (SSID='lapterop-test' freq=2412 MHz)"),
            Some(Event::Trying("lapterop-test".into()))
        );
        assert_eq!(
            parse_event("<3>CTRL-EVENT-CONNECTED - Connection to 02:00:00:00:01:00 completed [id=1 id_str=]"),
            Some(Event::Connected(String::new()))
        );
        assert_eq!(
            parse_event("<3>CTRL-EVENT-DISCONNECTED bssid=02:00:00:00:01:00 reason=3 locally_generated=1"),
            Some(Event::Disconnected)
        );
        assert_eq!(parse_event("<3>CTRL-EVENT-SCAN-STARTED "), None);
    }
}
