//! The network as the rest of the agent sees it: one state per wired link (no cable, cable without a
//! lease, connected with an address), kept by the live image's link lifecycle
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
}

impl Summary {
    /// The code shown beside a network that is not connected: `LAP-P06` (no network) or `LAP-P10`
    /// (cable without an address), as at pre-flight (`docs/lead-guide.md`).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Summary::None => Some("LAP-P06"),
            Summary::Cable { .. } => Some("LAP-P10"),
            Summary::NotWatched | Summary::Connected { .. } => None,
        }
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
        };
        Some(match self.code() {
            Some(code) => format!("{code} {text}"),
            None => text,
        })
    }
}

/// The best of the links: a connected one (the first by name), else one with a cable, else none.
pub fn summarize(links: &BTreeMap<String, LinkState>) -> Summary {
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

/// Forgets link `name` (the adapter was unplugged).
pub fn remove_link(name: &str) {
    let mut s = shared();
    if s.links.remove(name).is_some() {
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
        summarize(&s.links)
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

/// When a cable is in but the lease is not there yet, waits up to `timeout` for it (a switch port
/// with spanning tree forwards after ~30 s). Returns the summary then.
pub fn wait_for_lease_if_cable(timeout: Duration) -> Summary {
    if matches!(summary(), Summary::Cable { .. }) {
        wait_until(timeout, |links| !matches!(summarize(links), Summary::Cable { .. }));
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
