//! The network as the rest of the agent sees it: one state per wired link (no cable, cable without a
//! lease, connected with an address) and per Wi-Fi link (joining a network, refused, connected), kept by the live image's link lifecycle
//! ([`crate::init::network`]) and read by the screens (every screen's footer, the progress, the result
//! screen), the pre-flight and the outbox courier, which sends waiting certificates as soon as a link
//! gets a lease.
//!
//! Outside the live image nobody watches the links ([`Summary::NotWatched`]) and the screens say
//! nothing about the network, as before.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::i18n::{Key, Lang};

/// One wired link's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No carrier: no cable, or nothing alive at its other end.
    NoCable,
    /// Carrier, and DHCP is asking for an address.
    Asking,
    /// An IPv4 address from DHCP.
    Connected {
        /// The address.
        address: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
}

/// One Wi-Fi link's state, once the supplicant runs on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WifiState {
    /// Looking for or associating with `ssid`; DHCP asks once associated.
    Joining {
        /// The network.
        ssid: String,
    },
    /// `ssid` refused the passphrase (or PSK) of the site config.
    WrongKey {
        /// The network.
        ssid: String,
    },
    /// Associated with `ssid` and leased.
    Connected {
        /// The network.
        ssid: String,
        /// The address.
        address: Ipv4Addr,
    },
}

/// The network in one word, for a screen line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Summary {
    /// Nobody watches the links (not the live image).
    NotWatched,
    /// No wired link has carrier (or there is no network adapter at all).
    None,
    /// A cable is in, but no address yet.
    Cable {
        /// The link.
        link: String,
    },
    /// Connected.
    Connected {
        /// The link.
        link: String,
        /// Its address.
        address: Ipv4Addr,
    },
    /// No wired lease; Wi-Fi is joining `ssid`.
    WifiJoining {
        /// The network.
        ssid: String,
    },
    /// No wired lease; `ssid` refused the key of the site config (and no other network joined).
    WifiWrongKey {
        /// The network.
        ssid: String,
    },
    /// Connected over Wi-Fi.
    WifiConnected {
        /// The network.
        ssid: String,
        /// The address.
        address: Ipv4Addr,
    },
}

impl Summary {
    /// The code shown beside a network that is not connected: `LAP-P06` (no network), `LAP-P10`
    /// (cable without an address), `LAP-P11` (the Wi-Fi refused the key) or `LAP-P12` (Wi-Fi
    /// joining), as at pre-flight (`docs/lead-guide.md`).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Summary::None => Some("LAP-P06"),
            Summary::Cable { .. } => Some("LAP-P10"),
            Summary::WifiWrongKey { .. } => Some("LAP-P11"),
            Summary::WifiJoining { .. } => Some("LAP-P12"),
            Summary::NotWatched | Summary::Connected { .. } | Summary::WifiConnected { .. } => None,
        }
    }

    /// What Wi-Fi is doing, for pre-flight.
    pub fn wifi_now(&self) -> WifiNow {
        match self {
            Summary::WifiJoining { ssid } => WifiNow::Joining(ssid.clone()),
            Summary::WifiWrongKey { ssid } => WifiNow::Refused(ssid.clone()),
            _ => WifiNow::Off,
        }
    }

    /// Whether a link has an address (wired or Wi-Fi): the outbox can be sent.
    pub fn online(&self) -> bool {
        matches!(self, Summary::Connected { .. } | Summary::WifiConnected { .. })
    }

    /// The screen line in `lang` (`None` when nobody watches the links).
    pub fn line(&self, lang: Lang) -> Option<String> {
        let text = match self {
            Summary::NotWatched => return None,
            Summary::None => lang.t(Key::NetNone).to_owned(),
            Summary::Cable { link } => lang.fill(Key::NetCable, &[("link", link)]),
            Summary::Connected { link, address } => {
                lang.fill(Key::NetConnected, &[("link", link), ("address", &address.to_string())])
            }
            Summary::WifiJoining { ssid } => lang.fill(Key::NetWifiJoining, &[("ssid", ssid)]),
            Summary::WifiWrongKey { ssid } => lang.fill(Key::NetWifiWrongKey, &[("ssid", ssid)]),
            Summary::WifiConnected { ssid, address } => lang.fill(
                Key::NetWifiConnected,
                &[("ssid", ssid), ("address", &address.to_string())],
            ),
        };
        Some(match self.code() {
            Some(code) => format!("{code} {text}"),
            None => text,
        })
    }
}

/// The best of the wired links: a connected one (the first by name), else one with a cable, else none.
pub fn summarize(links: &BTreeMap<String, LinkState>) -> Summary {
    summarize_with(links, &BTreeMap::new())
}

/// The best of all links: a wired lease, else a Wi-Fi lease, else a cable waiting for its lease, else
/// Wi-Fi joining, else a Wi-Fi key refused, else none.
pub fn summarize_with(links: &BTreeMap<String, LinkState>, wifi: &BTreeMap<String, WifiState>) -> Summary {
    let wired = summarize_wired(links);
    if matches!(wired, Summary::Connected { .. }) {
        return wired;
    }
    let find = |f: &dyn Fn(&WifiState) -> Option<Summary>| wifi.values().find_map(f);
    find(&|w| match w {
        WifiState::Connected { ssid, address } => Some(Summary::WifiConnected {
            ssid: ssid.clone(),
            address: *address,
        }),
        _ => None,
    })
    .or_else(|| matches!(wired, Summary::Cable { .. }).then(|| wired.clone()))
    .or_else(|| {
        find(&|w| match w {
            WifiState::Joining { ssid } => Some(Summary::WifiJoining { ssid: ssid.clone() }),
            _ => None,
        })
    })
    .or_else(|| {
        find(&|w| match w {
            WifiState::WrongKey { ssid } => Some(Summary::WifiWrongKey { ssid: ssid.clone() }),
            _ => None,
        })
    })
    .unwrap_or(wired)
}

fn summarize_wired(links: &BTreeMap<String, LinkState>) -> Summary {
    let connected = links.iter().find_map(|(name, s)| match s {
        LinkState::Connected { address, .. } => Some(Summary::Connected {
            link: name.clone(),
            address: *address,
        }),
        _ => None,
    });
    let cable = || {
        links
            .iter()
            .find(|(_, s)| **s == LinkState::Asking)
            .map(|(name, _)| Summary::Cable { link: name.clone() })
    };
    connected.or_else(cable).unwrap_or(Summary::None)
}

/// What is shared between the link lifecycle and its readers.
#[derive(Debug)]
struct Shared {
    watched: bool,
    links: BTreeMap<String, LinkState>,
    wifi: BTreeMap<String, WifiState>,
    /// Bumped on every change.
    generation: u64,
    /// Bumped every time a link gets a lease.
    leases: u64,
    /// Bumped every time the outbox courier sent something.
    deliveries: u64,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared {
    watched: false,
    links: BTreeMap::new(),
    wifi: BTreeMap::new(),
    generation: 0,
    leases: 0,
    deliveries: 0,
});
static CHANGED: Condvar = Condvar::new();

fn shared() -> MutexGuard<'static, Shared> {
    // A panicking writer leaves consistent data (every update is one assignment): keep reading it.
    SHARED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The link lifecycle runs: the screens show the network from now on.
pub fn start_watching() {
    let mut s = shared();
    s.watched = true;
    s.generation += 1;
    CHANGED.notify_all();
}

/// Records link `name`'s state; returns whether it changed.
pub fn set_link(name: &str, state: LinkState) -> bool {
    let mut s = shared();
    let before = s.links.insert(name.to_owned(), state);
    if before == Some(state) {
        return false;
    }
    if matches!(state, LinkState::Connected { .. }) {
        s.leases += 1;
    }
    s.generation += 1;
    CHANGED.notify_all();
    true
}

/// Records Wi-Fi link `name`'s state (`None`: the supplicant is not running on it); returns whether
/// it changed.
pub fn set_wifi(name: &str, state: Option<WifiState>) -> bool {
    let mut s = shared();
    let before = match &state {
        Some(st) => s.wifi.insert(name.to_owned(), st.clone()),
        None => s.wifi.remove(name),
    };
    if before == state {
        return false;
    }
    if matches!(state, Some(WifiState::Connected { .. })) {
        s.leases += 1;
    }
    s.generation += 1;
    CHANGED.notify_all();
    true
}

/// What Wi-Fi is doing while no link has a lease, for pre-flight.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WifiNow {
    /// Not joining anything: no `[[network.wifi]]`, no radio, or a link has a lease.
    #[default]
    Off,
    /// Joining the network (associating, or associated and asking DHCP): `LAP-P12`.
    Joining(String),
    /// The network refused the key and no other joined: `LAP-P11`.
    Refused(String),
}

/// What Wi-Fi is doing now ([`WifiNow`]), from the links' summary.
pub fn wifi_now() -> WifiNow {
    summary().wifi_now()
}

/// Forgets link `name` (the adapter was unplugged).
pub fn remove_link(name: &str) {
    let mut s = shared();
    if s.links.remove(name).is_some() | s.wifi.remove(name).is_some() {
        s.generation += 1;
        CHANGED.notify_all();
    }
}

/// The courier sent certificates: screens waiting for a receipt look again.
pub fn delivered() {
    let mut s = shared();
    s.deliveries += 1;
    s.generation += 1;
    CHANGED.notify_all();
}

/// The network now.
pub fn summary() -> Summary {
    let s = shared();
    if s.watched {
        summarize_with(&s.links, &s.wifi)
    } else {
        Summary::NotWatched
    }
}

/// Every link's state now, by name.
pub fn links() -> BTreeMap<String, LinkState> {
    shared().links.clone()
}

/// A counter that changes whenever anything here changes.
pub fn generation() -> u64 {
    shared().generation
}

/// How many leases were obtained so far this session.
pub fn leases() -> u64 {
    shared().leases
}

/// Waits up to `timeout` for [`generation`] to differ from `seen`; returns the generation then.
pub fn wait_change(seen: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut s = shared();
    while s.generation == seen {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s = CHANGED
            .wait_timeout(s, left)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
    s.generation
}

/// Waits until `done` holds for the links (or `timeout`); returns whether it held.
pub fn wait_until(timeout: Duration, done: impl Fn(&BTreeMap<String, LinkState>) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = {
            let s = shared();
            if done(&s.links) {
                return true;
            }
            s.generation
        };
        if Instant::now() >= deadline {
            return false;
        }
        wait_change(seen, deadline.saturating_duration_since(Instant::now()));
    }
}

/// Whether a lease may be seconds away: a cable is in, or Wi-Fi is joining (after a refused key too:
/// the supplicant goes on to the next configured network, and back to the refused one later).
fn lease_may_come(s: &Summary) -> bool {
    matches!(
        s,
        Summary::Cable { .. } | Summary::WifiJoining { .. } | Summary::WifiWrongKey { .. }
    )
}

/// When a cable is in (or Wi-Fi is joining) but the lease is not there yet, waits up to `timeout`
/// for it (a switch port with spanning tree forwards after ~30 s). Returns the summary then.
pub fn wait_for_lease_if_cable(timeout: Duration) -> Summary {
    if lease_may_come(&summary()) {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = generation();
            if !lease_may_come(&summary()) || Instant::now() >= deadline {
                break;
            }
            wait_change(seen, deadline.saturating_duration_since(Instant::now()));
        }
    }
    summary()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_link_is_shown() {
        let mut links = BTreeMap::new();
        assert_eq!(summarize(&links), Summary::None);
        links.insert("eth0".to_owned(), LinkState::NoCable);
        assert_eq!(summarize(&links), Summary::None);
        links.insert("eth1".to_owned(), LinkState::Asking);
        assert_eq!(summarize(&links), Summary::Cable { link: "eth1".into() });
        links.insert(
            "usb0".to_owned(),
            LinkState::Connected {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
            },
        );
        let s = summarize(&links);
        assert_eq!(
            s,
            Summary::Connected {
                link: "usb0".into(),
                address: Ipv4Addr::new(10, 0, 2, 15)
            }
        );
        assert_eq!(
            s.line(Lang::En).unwrap(),
            "Network: connected on usb0, address 10.0.2.15."
        );
        assert!(s.line(Lang::Nl).unwrap().contains("10.0.2.15"));
    }

    #[test]
    fn wifi_counts_only_without_a_wired_lease() {
        let mut links = BTreeMap::new();
        let mut wifi = BTreeMap::new();
        wifi.insert("wlan0".to_owned(), WifiState::WrongKey { ssid: "Bieb".into() });
        let s = summarize_with(&links, &wifi);
        assert_eq!(s, Summary::WifiWrongKey { ssid: "Bieb".into() });
        assert_eq!(
            s.line(Lang::En).unwrap(),
            "LAP-P11 Wi-Fi: Bieb refused the passphrase (check [[network.wifi]] in site.toml)."
        );
        assert!(!s.online());
        assert_eq!(s.wifi_now(), WifiNow::Refused("Bieb".into()));
        wifi.insert("wlan1".to_owned(), WifiState::Joining { ssid: "Lab".into() });
        let s = summarize_with(&links, &wifi);
        assert_eq!(s.line(Lang::En).unwrap(), "LAP-P12 Wi-Fi: joining Lab.");
        assert_eq!(s.wifi_now(), WifiNow::Joining("Lab".into()));
        links.insert("eth0".to_owned(), LinkState::Asking);
        let s = summarize_with(&links, &wifi);
        assert_eq!(s, Summary::Cable { link: "eth0".into() });
        assert_eq!(s.wifi_now(), WifiNow::Off, "a cable waiting for its lease comes first");
        wifi.insert(
            "wlan1".to_owned(),
            WifiState::Connected {
                ssid: "Lab".into(),
                address: Ipv4Addr::new(192, 168, 7, 20),
            },
        );
        let s = summarize_with(&links, &wifi);
        assert_eq!(s.line(Lang::En).unwrap(), "Wi-Fi: Lab, address 192.168.7.20.");
        assert!(s.online() && s.code().is_none());
        assert!(s.line(Lang::Nl).unwrap().contains("Lab"));
        links.insert(
            "eth0".to_owned(),
            LinkState::Connected {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
            },
        );
        assert!(
            matches!(summarize_with(&links, &wifi), Summary::Connected { .. }),
            "the wired lease is preferred"
        );
    }

    #[test]
    fn the_upload_waits_while_a_lease_may_come() {
        assert!(lease_may_come(&Summary::Cable { link: "eth0".into() }));
        assert!(lease_may_come(&Summary::WifiJoining { ssid: "Lab".into() }));
        // A refused key: the supplicant goes on to the next network.
        assert!(lease_may_come(&Summary::WifiWrongKey { ssid: "Bieb".into() }));
        assert!(!lease_may_come(&Summary::None));
        assert!(!lease_may_come(&Summary::NotWatched));
    }

    #[test]
    fn lines_carry_the_preflight_codes() {
        assert_eq!(
            Summary::None.line(Lang::En).unwrap(),
            "LAP-P06 Network: none (no cable, no network adapter)."
        );
        let cable = Summary::Cable { link: "eth0".into() };
        assert!(
            cable.line(Lang::En).unwrap().starts_with("LAP-P10 "),
            "{:?}",
            cable.line(Lang::En)
        );
        assert!(cable.line(Lang::Nl).unwrap().contains("eth0"));
        assert_eq!(Summary::NotWatched.line(Lang::En), None);
    }
}
