//! The link lifecycle of the live image, for the whole session: every wired link is brought up; when
//! its carrier comes (rtnetlink `IFF_LOWER_UP` / operstate up, [`super::netlink`]) busybox `udhcpc`
//! asks for a lease; a round without an answer is tried again after a growing pause (2 s, doubling,
//! at most 30 s; no limit on rounds while the session runs: a switch port with spanning tree forwards
//! only after ~30 s); once leased, `udhcpc` stays and renews the lease at T1 (RFC 2131 §4.4.5, its
//! RENEWING state); a link that loses carrier has its `udhcpc` stopped and its address removed, so
//! no lease state outlives the cable. The states go to [`crate::network`] for the screens and the
//! outbox courier, and as one line per change to the console (unattended) or the kernel log
//! (interactive, where the screens show it).
//!
//! [`Lifecycle`] is the pure state machine (netlink messages, `udhcpc` exits and the clock in,
//! actions out); [`start`] is the thread that runs it against the kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::netlink::{self, Message, RouteSocket};
use crate::network::LinkState;

/// The first pause after a DHCP round without an answer; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_FIRST: Duration = Duration::from_secs(2);
/// The longest pause between DHCP rounds.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The pause after `failures` rounds without a lease (1 → 2 s, 2 → 4 s, ... at most 30 s).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

/// What the lifecycle asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Set `IFF_UP` on the link with this index.
    BringUp(u32),
    /// Start `udhcpc` on the link.
    StartDhcp(String),
    /// Stop the link's `udhcpc` and remove its addresses.
    StopDhcp(String),
    /// Publish the link's state.
    State(String, LinkState),
    /// The link is gone.
    Forget(String),
    /// One line for the console.
    Say(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dhcp {
    Idle,
    Running,
    Waiting(Instant),
}

#[derive(Debug)]
struct Wired {
    name: String,
    asked_up: bool,
    carrier: Option<bool>,
    address: Option<(Ipv4Addr, u8)>,
    dhcp: Dhcp,
    failures: u32,
}

impl Wired {
    fn state(&self) -> LinkState {
        match (self.address, self.carrier) {
            (Some((address, prefix)), _) => LinkState::Connected { address, prefix },
            (None, Some(true)) => LinkState::Asking,
            (None, _) => LinkState::NoCable,
        }
    }
}

/// The state machine of every wired link.
#[derive(Debug, Default)]
pub struct Lifecycle {
    links: BTreeMap<u32, Wired>,
}

impl Lifecycle {
    /// A new machine, no links known.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reacts to one rtnetlink message; `wired` says whether a link name is a wired hardware link
    /// (not loopback, not Wi-Fi, not virtual).
    pub fn on_message(&mut self, msg: &Message, wired: &dyn Fn(&str) -> bool) -> Vec<Action> {
        let mut out = Vec::new();
        match msg {
            Message::NewLink(l) => {
                let w = match self.links.entry(l.index) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let Some(name) = l.name.clone().filter(|n| wired(n)) else {
                            return out;
                        };
                        e.insert(Wired {
                            name,
                            asked_up: false,
                            carrier: None,
                            address: None,
                            dhcp: Dhcp::Idle,
                            failures: 0,
                        })
                    }
                };
                if !l.up() {
                    // Carrier means nothing on a link that is down: bring it up, look again then.
                    if !w.asked_up {
                        w.asked_up = true;
                        out.push(Action::BringUp(l.index));
                        out.push(Action::State(w.name.clone(), w.state()));
                    }
                    return out;
                }
                let carrier = l.carrier();
                if w.carrier == Some(carrier) {
                    return out;
                }
                let w_had_carrier = w.carrier == Some(true);
                w.carrier = Some(carrier);
                if carrier {
                    w.failures = 0;
                    if w.dhcp != Dhcp::Running {
                        w.dhcp = Dhcp::Running;
                        out.push(Action::StartDhcp(w.name.clone()));
                    }
                    out.push(Action::Say(format!(
                        "{}: cable in, asking for an address (DHCP)",
                        w.name
                    )));
                } else {
                    if w.dhcp == Dhcp::Running {
                        out.push(Action::StopDhcp(w.name.clone()));
                    }
                    w.dhcp = Dhcp::Idle;
                    w.address = None;
                    out.push(Action::Say(if w_had_carrier {
                        format!("{}: cable out, lease dropped", w.name)
                    } else {
                        format!("{}: no cable", w.name)
                    }));
                }
                out.push(Action::State(w.name.clone(), w.state()));
            }
            Message::DelLink(l) => {
                if let Some(w) = self.links.remove(&l.index) {
                    if w.dhcp == Dhcp::Running {
                        out.push(Action::StopDhcp(w.name.clone()));
                    }
                    out.push(Action::Say(format!("{}: adapter removed", w.name)));
                    out.push(Action::Forget(w.name));
                }
            }
            Message::NewAddr(a) => {
                if let Some(w) = self.links.get_mut(&a.index) {
                    if w.address != Some((a.address, a.prefix)) {
                        w.address = Some((a.address, a.prefix));
                        out.push(Action::Say(format!(
                            "{}: connected, address {}/{}",
                            w.name, a.address, a.prefix
                        )));
                        out.push(Action::State(w.name.clone(), w.state()));
                    }
                }
            }
            Message::DelAddr(a) => {
                if let Some(w) = self.links.get_mut(&a.index) {
                    if w.address.is_some_and(|(ip, _)| ip == a.address) {
                        w.address = None;
                        out.push(Action::Say(format!("{}: address {} removed", w.name, a.address)));
                        out.push(Action::State(w.name.clone(), w.state()));
                    }
                }
            }
            Message::Done | Message::Ack { .. } => {}
        }
        out
    }

    /// `udhcpc` on `name` ended (with `-n` it ends when a round got no lease): try again after the
    /// backoff while the cable is in.
    pub fn on_dhcp_exit(&mut self, name: &str, now: Instant) -> Vec<Action> {
        let Some(w) = self.links.values_mut().find(|w| w.name == name) else {
            return Vec::new();
        };
        if w.dhcp != Dhcp::Running {
            return Vec::new();
        }
        if w.carrier != Some(true) {
            w.dhcp = Dhcp::Idle;
            return Vec::new();
        }
        w.failures = w.failures.saturating_add(1);
        let pause = backoff(w.failures);
        w.dhcp = Dhcp::Waiting(now + pause);
        vec![Action::Say(format!(
            "{}: no DHCP answer (round {}), asking again in {} s",
            w.name,
            w.failures,
            pause.as_secs()
        ))]
    }

    /// Starts the DHCP rounds whose pause is over.
    pub fn on_tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for w in self.links.values_mut() {
            if let Dhcp::Waiting(at) = w.dhcp {
                if now >= at {
                    w.dhcp = Dhcp::Running;
                    out.push(Action::StartDhcp(w.name.clone()));
                }
            }
        }
        out
    }
}

/// Whether `name` in `/sys/class/net` is a wired hardware link: it has a device (not `lo`, bridges,
/// tunnels) and is not Wi-Fi.
pub fn is_wired(name: &str) -> bool {
    let dir = Path::new("/sys/class/net").join(name);
    dir.join("device").exists() && !dir.join("wireless").exists() && !dir.join("phy80211").exists()
}

/// Where each link's `udhcpc` writes what it says (for the rescue shell).
const DHCP_LOGS: &str = "/run/lapterop";
/// busybox's example DHCP script, as the live image ships it.
const DHCP_SCRIPT: &str = "/etc/udhcpc.script";

/// When set, the lifecycle's lines go to the kernel log instead of the console (the interactive flow
/// shows the network on its screens; stray lines would break them up).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Sends the lifecycle's lines to the kernel log (`true`) or the console.
pub fn quiet_console(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

fn say(line: &str) {
    announce(&format!("lapterop: network: {line}"));
}

/// One line of the session's device and network events: on the console, or in the kernel log while
/// the interactive flow owns the screen ([`quiet_console`]).
pub fn announce(line: &str) {
    if QUIET.load(Ordering::Relaxed) {
        // Level 6 (info): kept in the kernel log, not printed on a `quiet` console.
        if std::fs::write("/dev/kmsg", format!("<6>{line}\n")).is_err() {
            println!("{line}");
        }
    } else {
        println!("{line}");
    }
}

fn start_udhcpc(name: &str) -> std::io::Result<Child> {
    let _ = std::fs::create_dir_all(DHCP_LOGS);
    let log = std::fs::File::create(Path::new(DHCP_LOGS).join(format!("dhcp-{name}.log")))?;
    // -f: stay in the foreground (this thread watches it); -n: end after a round without a lease (this
    // thread pauses, then starts the next round); no -q: once leased it stays and renews.
    Command::new("/sbin/udhcpc")
        .args(["-f", "-n", "-i", name, "-t", "3", "-T", "2", "-s", DHCP_SCRIPT, "-V"])
        .arg(format!("lapterop-live/{}", env!("CARGO_PKG_VERSION")))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
}

/// Stops `child` and runs the script's `deconfig`, which removes the link's IPv4 addresses.
fn stop_udhcpc(name: &str, child: Option<Child>) {
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = Command::new(DHCP_SCRIPT)
        .arg("deconfig")
        .env("interface", name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts the lifecycle thread (for the rest of the session). Errors when the routing socket cannot
/// be opened; the screens then say nothing about the network.
pub fn start() -> std::io::Result<()> {
    let sock = RouteSocket::open().map_err(std::io::Error::from)?;
    crate::network::start_watching();
    std::thread::Builder::new()
        .name("network".into())
        .spawn(move || run(&sock))?;
    Ok(())
}

fn run(sock: &RouteSocket) {
    let mut lc = Lifecycle::new();
    let mut children: BTreeMap<String, Child> = BTreeMap::new();
    let mut seq = 1u32;
    // The links there are, then their addresses: one dump at a time (the kernel refuses a second one
    // while the first runs).
    for request in [netlink::dump_links(seq), netlink::dump_ipv4_addresses(seq + 1)] {
        seq += 1;
        if let Err(e) = sock.send(&request) {
            say(&format!("asking the kernel for its links: {e}"));
        }
        let started = Instant::now();
        'dump: while started.elapsed() < Duration::from_secs(5) {
            for m in sock.recv(Duration::from_millis(500)).unwrap_or_default() {
                if m == Message::Done {
                    break 'dump;
                }
                apply(&lc.on_message(&m, &is_wired), sock, &mut seq, &mut children);
            }
        }
    }
    loop {
        match sock.recv(Duration::from_millis(250)) {
            Ok(msgs) => {
                for m in msgs {
                    apply(&lc.on_message(&m, &is_wired), sock, &mut seq, &mut children);
                }
            }
            Err(e) => {
                // ENOBUFS: events were lost (a burst); ask again for the whole picture.
                say(&format!("reading link events: {e}; asking for the links again"));
                seq += 1;
                let _ = sock.send(&netlink::dump_links(seq));
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let now = Instant::now();
        let ended: Vec<String> = children
            .iter_mut()
            .filter_map(|(n, c)| c.try_wait().ok().flatten().map(|_| n.clone()))
            .collect();
        for name in ended {
            children.remove(&name);
            apply(&lc.on_dhcp_exit(&name, now), sock, &mut seq, &mut children);
        }
        apply(&lc.on_tick(now), sock, &mut seq, &mut children);
    }
}

fn apply(actions: &[Action], sock: &RouteSocket, seq: &mut u32, children: &mut BTreeMap<String, Child>) {
    for a in actions {
        match a {
            Action::BringUp(index) => {
                *seq += 1;
                if let Err(e) = sock.send(&netlink::set_up(*index, *seq)) {
                    say(&format!("bringing link {index} up: {e}"));
                }
            }
            Action::StartDhcp(name) => match start_udhcpc(name) {
                Ok(child) => {
                    if let Some(old) = children.insert(name.clone(), child) {
                        stop_udhcpc(name, Some(old));
                    }
                }
                Err(e) => say(&format!("{name}: udhcpc cannot start: {e}")),
            },
            Action::StopDhcp(name) => stop_udhcpc(name, children.remove(name)),
            Action::State(name, state) => {
                crate::network::set_link(name, *state);
            }
            Action::Forget(name) => crate::network::remove_link(name),
            Action::Say(line) => say(line),
        }
    }
}

/// Waits until the links have settled after boot, at most `max`: every wired link connected, or none
/// still asking once drivers had a few seconds to report carrier. The pre-flight then sees the
/// network as it is rather than halfway through DHCP.
pub fn settle(max: Duration) {
    let started = Instant::now();
    let (mut seen, mut quiet_since) = (crate::network::generation(), Instant::now());
    loop {
        let links = crate::network::links();
        let asking = links.values().any(|s| *s == LinkState::Asking);
        let all_connected = !links.is_empty() && links.values().all(|s| matches!(s, LinkState::Connected { .. }));
        // Quiet: nothing changed for 3 s (an e1000e reports carrier a second or two after it is up).
        let quiet = quiet_since.elapsed() >= Duration::from_secs(3);
        let waited = started.elapsed();
        if all_connected || (!asking && quiet && waited >= Duration::from_secs(4)) || waited >= max {
            return;
        }
        let now = crate::network::wait_change(seen, Duration::from_millis(250));
        if now != seen {
            (seen, quiet_since) = (now, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::netlink::{Addr, Link, IFF_LOWER_UP, IFF_UP};

    fn link(index: u32, name: &str, flags: u32) -> Message {
        Message::NewLink(Link {
            index,
            name: Some(name.into()),
            flags,
            operstate: None,
        })
    }

    fn wired(name: &str) -> bool {
        name.starts_with("eth") || name.starts_with("usb")
    }

    fn states(actions: &[Action]) -> Vec<LinkState> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::State(_, s) => Some(*s),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_link_is_brought_up_and_dhcp_starts_only_with_carrier() {
        let mut lc = Lifecycle::new();
        assert!(
            lc.on_message(&link(1, "lo", 0x49), &wired).is_empty(),
            "loopback ignored"
        );
        let a = lc.on_message(&link(2, "eth0", 0x1002), &wired);
        assert_eq!(a[0], Action::BringUp(2));
        assert_eq!(states(&a), [LinkState::NoCable]);
        assert!(!a.iter().any(|a| matches!(a, Action::StartDhcp(_))));
        // Down again (before our request took effect): not brought up twice.
        assert!(lc.on_message(&link(2, "eth0", 0x1002), &wired).is_empty());
        // Up without carrier (the cable is out): said once.
        let a = lc.on_message(&link(2, "eth0", 0x1003), &wired);
        assert_eq!(a[0], Action::Say("eth0: no cable".into()));
        assert!(lc.on_message(&link(2, "eth0", 0x1003), &wired).is_empty());
        let a = lc.on_message(&link(2, "eth0", 0x1003 | IFF_LOWER_UP), &wired);
        assert!(a.contains(&Action::StartDhcp("eth0".into())), "{a:?}");
        assert_eq!(states(&a), [LinkState::Asking]);
        // The same state again starts nothing twice.
        assert!(lc
            .on_message(&link(2, "eth0", 0x1003 | IFF_LOWER_UP), &wired)
            .is_empty());
        let a = lc.on_message(
            &Message::NewAddr(Addr {
                index: 2,
                prefix: 24,
                address: Ipv4Addr::new(10, 0, 2, 15),
            }),
            &wired,
        );
        assert_eq!(
            states(&a),
            [LinkState::Connected {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24
            }]
        );
    }

    #[test]
    fn losing_carrier_drops_the_lease_and_stops_dhcp() {
        let mut lc = Lifecycle::new();
        lc.on_message(&link(3, "usb0", IFF_UP | IFF_LOWER_UP), &wired);
        lc.on_message(
            &Message::NewAddr(Addr {
                index: 3,
                prefix: 24,
                address: Ipv4Addr::new(10, 0, 2, 15),
            }),
            &wired,
        );
        let a = lc.on_message(&link(3, "usb0", IFF_UP), &wired);
        assert!(a.contains(&Action::StopDhcp("usb0".into())), "{a:?}");
        assert_eq!(states(&a), [LinkState::NoCable]);
        // Plugged in again: a fresh DHCP.
        let a = lc.on_message(&link(3, "usb0", IFF_UP | IFF_LOWER_UP), &wired);
        assert!(a.contains(&Action::StartDhcp("usb0".into())));
        assert_eq!(states(&a), [LinkState::Asking]);
        // The adapter pulled out.
        let a = lc.on_message(
            &Message::DelLink(Link {
                index: 3,
                name: Some("usb0".into()),
                flags: 0,
                operstate: None,
            }),
            &wired,
        );
        assert!(a.contains(&Action::StopDhcp("usb0".into())) && a.contains(&Action::Forget("usb0".into())));
    }

    #[test]
    fn rounds_without_an_answer_back_off_without_limit() {
        assert_eq!(
            (1..=7).map(|n| backoff(n).as_secs()).collect::<Vec<_>>(),
            [2, 4, 8, 16, 30, 30, 30]
        );
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
        let mut lc = Lifecycle::new();
        lc.on_message(&link(2, "eth0", IFF_UP | IFF_LOWER_UP), &wired);
        let t0 = Instant::now();
        let mut now = t0;
        for round in 1..=40u32 {
            let a = lc.on_dhcp_exit("eth0", now);
            assert!(
                matches!(&a[..], [Action::Say(l)] if l.contains("asking again")),
                "{a:?}"
            );
            assert!(lc.on_tick(now + backoff(round) - Duration::from_millis(1)).is_empty());
            now += backoff(round);
            assert_eq!(lc.on_tick(now), [Action::StartDhcp("eth0".into())]);
        }
        // Cable out during a pause: no more rounds until it is back.
        lc.on_dhcp_exit("eth0", now);
        lc.on_message(&link(2, "eth0", IFF_UP), &wired);
        assert!(lc.on_tick(now + BACKOFF_MAX).is_empty());
        let a = lc.on_message(&link(2, "eth0", IFF_UP | IFF_LOWER_UP), &wired);
        assert!(a.contains(&Action::StartDhcp("eth0".into())));
    }
}
