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
//! **Wi-Fi** (`[[network.wifi]]` in the site config, [`crate::wifi`]) is used only while no wired
//! link has a lease: a wireless link (coldplugged or hotplugged) gets `wpa_supplicant` with the
//! configured networks, the first the most preferred; once the supplicant reports the association
//! (`CTRL-EVENT-CONNECTED`) the same `udhcpc` rounds as on a cable ask for a lease. A network that
//! refuses the key (`CTRL-EVENT-SSID-TEMP-DISABLED ... reason=WRONG_KEY`) is shown as `LAP-P11` while
//! the supplicant goes on to the next one. When a wired link gets its lease, Wi-Fi is brought down
//! (supplicant stopped, address removed), so there is one default route and it is the cable's; when
//! the cable goes, Wi-Fi starts again.
//!
//! [`Lifecycle`] is the pure state machine (netlink messages, supplicant events, `udhcpc` exits and
//! the clock in, actions out); [`start`] is the thread that runs it against the kernel.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use super::netlink::{self, Message, RouteSocket};
use crate::network::{LinkState, WifiState};
use crate::wifi::{Event, WifiNetwork};

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
    /// Start `wpa_supplicant` on the wireless link.
    StartSupplicant(String),
    /// Stop the link's `wpa_supplicant`.
    StopSupplicant(String),
    /// Publish the wireless link's state (`None`: Wi-Fi is off on it).
    Wifi(String, Option<WifiState>),
}

/// What a link is, for the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A wired hardware link.
    Wired,
    /// A Wi-Fi link.
    Wireless,
    /// Loopback, virtual links: left alone.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dhcp {
    Idle,
    Running,
    Waiting(Instant),
}

/// A fresh start of the DHCP rounds on link `name` (its carrier came, or its radio associated).
fn begin_dhcp(name: &str, dhcp: &mut Dhcp, failures: &mut u32, out: &mut Vec<Action>) {
    *failures = 0;
    if *dhcp != Dhcp::Running {
        *dhcp = Dhcp::Running;
        out.push(Action::StartDhcp(name.to_owned()));
    }
}

#[derive(Debug)]
struct Wired {
    name: String,
    asked_up: bool,
    carrier: Option<bool>,
    address: Option<(Ipv4Addr, u8)>,
    dhcp: Dhcp,
    failures: u32,
    /// Wi-Fi: the supplicant runs, the network it tries or joined, whether it is associated, and the
    /// last network that refused the key.
    wifi: Option<Radio>,
}

#[derive(Debug, Default)]
struct Radio {
    supplicant: bool,
    ssid: Option<String>,
    associated: bool,
    refused: Option<String>,
}

impl Radio {
    fn state(&self, address: Option<(Ipv4Addr, u8)>) -> Option<WifiState> {
        if !self.supplicant {
            return None;
        }
        let ssid = self.ssid.clone().unwrap_or_default();
        Some(match (address, &self.refused) {
            (Some((address, _)), _) if self.associated => WifiState::Connected { ssid, address },
            (_, Some(r)) if !self.associated => WifiState::WrongKey { ssid: r.clone() },
            _ => WifiState::Joining { ssid },
        })
    }
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

/// The state machine of every wired and wireless link.
#[derive(Debug, Default)]
pub struct Lifecycle {
    links: BTreeMap<u32, Wired>,
    /// The configured Wi-Fi networks' names, the most preferred first (none: Wi-Fi is not used).
    wifi: Vec<String>,
}

impl Lifecycle {
    /// A new machine, no links known, no Wi-Fi.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new machine that joins these Wi-Fi networks (by SSID, the most preferred first) when no wired
    /// link has a lease.
    pub fn with_wifi(ssids: Vec<String>) -> Self {
        Lifecycle {
            links: BTreeMap::new(),
            wifi: ssids,
        }
    }

    /// Reacts to one rtnetlink message; `wired` says whether a link name is a wired hardware link
    /// (not loopback, not Wi-Fi, not virtual). Wireless links are ignored.
    pub fn on_message(&mut self, msg: &Message, wired: &dyn Fn(&str) -> bool) -> Vec<Action> {
        self.on_link_message(msg, &|n| if wired(n) { Kind::Wired } else { Kind::Other })
    }

    /// Reacts to one rtnetlink message; `kind` tells what a link name is.
    pub fn on_link_message(&mut self, msg: &Message, kind: &dyn Fn(&str) -> Kind) -> Vec<Action> {
        let mut out = self.on_link_message_inner(msg, kind);
        out.extend(self.wifi_policy());
        out
    }

    fn on_link_message_inner(&mut self, msg: &Message, kind: &dyn Fn(&str) -> Kind) -> Vec<Action> {
        let mut out = Vec::new();
        let use_wifi = !self.wifi.is_empty();
        match msg {
            Message::NewLink(l) => {
                let w = match self.links.entry(l.index) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        let Some((name, k)) = l.name.clone().map(|n| {
                            let k = kind(&n);
                            (n, k)
                        }) else {
                            return out;
                        };
                        let wifi = match k {
                            Kind::Wired => None,
                            Kind::Wireless if use_wifi => Some(Radio::default()),
                            Kind::Wireless | Kind::Other => return out,
                        };
                        e.insert(Wired {
                            name,
                            asked_up: false,
                            carrier: None,
                            address: None,
                            dhcp: Dhcp::Idle,
                            failures: 0,
                            wifi,
                        })
                    }
                };
                if let Some(radio) = &mut w.wifi {
                    // A radio is brought up once; its carrier follows the association, which the
                    // supplicant's events report (DHCP starts on those, not on carrier).
                    if !l.up() && !w.asked_up {
                        w.asked_up = true;
                        out.push(Action::BringUp(l.index));
                    }
                    if l.up() {
                        radio.ssid.get_or_insert_with(|| self.wifi[0].clone());
                        w.carrier = Some(l.carrier());
                    }
                    return out;
                }
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
                    begin_dhcp(&w.name, &mut w.dhcp, &mut w.failures, &mut out);
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
                    if w.wifi.as_ref().is_some_and(|r| r.supplicant) {
                        out.push(Action::StopSupplicant(w.name.clone()));
                    }
                    out.push(Action::Say(format!("{}: adapter removed", w.name)));
                    out.push(Action::Forget(w.name));
                }
            }
            Message::NewAddr(a) => {
                if let Some(w) = self.links.get_mut(&a.index) {
                    if w.address != Some((a.address, a.prefix)) {
                        w.address = Some((a.address, a.prefix));
                        match &w.wifi {
                            Some(radio) => {
                                out.push(Action::Say(format!(
                                    "{}: Wi-Fi {}, address {}/{}",
                                    w.name,
                                    radio.ssid.as_deref().unwrap_or(""),
                                    a.address,
                                    a.prefix
                                )));
                                out.push(Action::Wifi(w.name.clone(), radio.state(w.address)));
                            }
                            None => {
                                out.push(Action::Say(format!(
                                    "{}: connected, address {}/{}",
                                    w.name, a.address, a.prefix
                                )));
                                out.push(Action::State(w.name.clone(), w.state()));
                            }
                        }
                    }
                }
            }
            Message::DelAddr(a) => {
                if let Some(w) = self.links.get_mut(&a.index) {
                    if w.address.is_some_and(|(ip, _)| ip == a.address) {
                        w.address = None;
                        out.push(Action::Say(format!("{}: address {} removed", w.name, a.address)));
                        out.push(match &w.wifi {
                            Some(radio) => Action::Wifi(w.name.clone(), radio.state(None)),
                            None => Action::State(w.name.clone(), w.state()),
                        });
                    }
                }
            }
            Message::Done | Message::Ack { .. } => {}
        }
        out
    }

    /// Wi-Fi is on while no wired link has a lease and off (supplicant stopped, lease dropped) while
    /// one has.
    fn wifi_policy(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let wired_lease = self.links.values().any(|w| w.wifi.is_none() && w.address.is_some());
        for w in self.links.values_mut() {
            let Some(radio) = &mut w.wifi else { continue };
            if !wired_lease && !radio.supplicant && w.carrier.is_some() {
                radio.supplicant = true;
                radio.associated = false;
                out.push(Action::StartSupplicant(w.name.clone()));
                out.push(Action::Say(format!(
                    "{}: no wired network, joining Wi-Fi {}",
                    w.name,
                    self.wifi.join(", ")
                )));
                out.push(Action::Wifi(w.name.clone(), radio.state(None)));
            } else if wired_lease && radio.supplicant {
                radio.supplicant = false;
                radio.associated = false;
                radio.refused = None;
                if w.dhcp != Dhcp::Idle {
                    w.dhcp = Dhcp::Idle;
                    out.push(Action::StopDhcp(w.name.clone()));
                }
                w.address = None;
                out.push(Action::StopSupplicant(w.name.clone()));
                out.push(Action::Say(format!("{}: wired network connected, Wi-Fi off", w.name)));
                out.push(Action::Wifi(w.name.clone(), None));
            }
        }
        out
    }

    /// One event of the supplicant on wireless link `name`.
    pub fn on_wifi_event(&mut self, name: &str, event: &Event) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(w) = self.links.values_mut().find(|w| w.name == name) else {
            return out;
        };
        let Some(radio) = w.wifi.as_mut().filter(|r| r.supplicant) else {
            return out;
        };
        match event {
            Event::Trying(ssid) => radio.ssid = Some(ssid.clone()),
            Event::Connected(_) => {
                radio.associated = true;
                radio.refused = None;
                begin_dhcp(&w.name, &mut w.dhcp, &mut w.failures, &mut out);
                out.push(Action::Say(format!(
                    "{}: joined Wi-Fi {}, asking for an address (DHCP)",
                    w.name,
                    radio.ssid.as_deref().unwrap_or("")
                )));
            }
            Event::Disconnected => {
                if !radio.associated {
                    return out;
                }
                radio.associated = false;
                if w.dhcp != Dhcp::Idle {
                    w.dhcp = Dhcp::Idle;
                    out.push(Action::StopDhcp(w.name.clone()));
                }
                w.address = None;
                out.push(Action::Say(format!(
                    "{}: Wi-Fi {} lost, joining again",
                    w.name,
                    radio.ssid.as_deref().unwrap_or("")
                )));
            }
            Event::WrongKey(ssid) => {
                radio.refused = Some(ssid.clone());
                out.push(Action::Say(format!(
                    "LAP-P11 {}: Wi-Fi {ssid} refused the passphrase of site.toml",
                    w.name
                )));
            }
        }
        out.push(Action::Wifi(w.name.clone(), radio.state(w.address)));
        out
    }

    /// `udhcpc` on `name` ended (with `-n` it ends when a round got no lease): try again after the
    /// backoff while the cable is in (or the radio associated).
    pub fn on_dhcp_exit(&mut self, name: &str, now: Instant) -> Vec<Action> {
        let Some(w) = self.links.values_mut().find(|w| w.name == name) else {
            return Vec::new();
        };
        if w.dhcp != Dhcp::Running {
            return Vec::new();
        }
        let linked = match &w.wifi {
            Some(radio) => radio.associated,
            None => w.carrier == Some(true),
        };
        if !linked {
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

/// What `name` in `/sys/class/net` is: Wi-Fi (a `wireless` or `phy80211` entry), a wired hardware
/// link (a device, not Wi-Fi) or something else (`lo`, bridges, tunnels).
pub fn kind_of(name: &str) -> Kind {
    let dir = Path::new("/sys/class/net").join(name);
    if dir.join("wireless").exists() || dir.join("phy80211").exists() {
        Kind::Wireless
    } else if dir.join("device").exists() {
        Kind::Wired
    } else {
        Kind::Other
    }
}

/// Debian's `wpa_supplicant`, as the live image ships it.
const SUPPLICANT: &str = "/sbin/wpa_supplicant";
/// Its configuration, written by [`start`] from the site config (tmpfs, mode 0600: it holds the keys).
const SUPPLICANT_CONF: &str = "/run/lapterop/wpa_supplicant.conf";
/// Its control interface directory.
const SUPPLICANT_CTRL: &str = "/run/lapterop/wpa";

fn write_supplicant_config(networks: &[WifiNetwork]) -> std::io::Result<()> {
    write_supplicant_config_to(Path::new(SUPPLICANT_CONF), networks)
}

/// Writes the supplicant's config (it holds the keys) to `path`, readable by root only: created with
/// mode 0600, and an older file of another mode is replaced, not reused.
fn write_supplicant_config_to(path: &Path, networks: &[WifiNetwork]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(crate::wifi::supplicant_config(networks, SUPPLICANT_CTRL).as_bytes())
}

/// Starts `wpa_supplicant` on `name` in the foreground; a thread sends each line it prints (its
/// events, `wlan0: CTRL-EVENT-CONNECTED ...`) to `events` and into `/run/lapterop/wifi-NAME.log`.
fn start_supplicant(name: &str, events: &Sender<(String, String)>) -> std::io::Result<Child> {
    use std::io::{BufRead as _, Write as _};
    let mut child = Command::new(SUPPLICANT)
        .args(["-D", "nl80211", "-i", name, "-c", SUPPLICANT_CONF])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let Some(stdout) = child.stdout.take() else {
        return Ok(child);
    };
    let (name, events) = (name.to_owned(), events.clone());
    let mut log = std::fs::File::create(Path::new(DHCP_LOGS).join(format!("wifi-{name}.log"))).ok();
    std::thread::Builder::new().name(format!("wpa-{name}")).spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            if events.send((name.clone(), line)).is_err() {
                break;
            }
        }
    })?;
    Ok(child)
}

/// Starts the lifecycle thread (for the rest of the session), joining `wifi` when no wired link has
/// a lease. Errors when the routing socket cannot be opened; the screens then say nothing about the
/// network.
pub fn start(wifi: Vec<WifiNetwork>) -> std::io::Result<()> {
    let sock = RouteSocket::open().map_err(std::io::Error::from)?;
    crate::network::start_watching();
    let mut wifi = wifi;
    if !wifi.is_empty() {
        if !Path::new(SUPPLICANT).exists() {
            say("Wi-Fi networks are configured but this stick has no wpa_supplicant; Wi-Fi is not used");
            wifi.clear();
        } else if let Err(e) = write_supplicant_config(&wifi) {
            say(&format!("writing {SUPPLICANT_CONF}: {e}; Wi-Fi is not used"));
            wifi.clear();
        }
    }
    let ssids = wifi.into_iter().map(|w| w.ssid).collect();
    std::thread::Builder::new()
        .name("network".into())
        .spawn(move || run(&sock, ssids))?;
    Ok(())
}

/// The running children: `udhcpc` and `wpa_supplicant` per link, and where supplicant lines arrive.
struct Shell<'a> {
    sock: &'a RouteSocket,
    seq: u32,
    dhcp: BTreeMap<String, Child>,
    supplicants: BTreeMap<String, Child>,
    events: Sender<(String, String)>,
}

fn run(sock: &RouteSocket, ssids: Vec<String>) {
    let mut lc = Lifecycle::with_wifi(ssids);
    let (events, lines) = std::sync::mpsc::channel();
    let mut sh = Shell {
        sock,
        seq: 1,
        dhcp: BTreeMap::new(),
        supplicants: BTreeMap::new(),
        events,
    };
    // The links there are, then their addresses: one dump at a time (the kernel refuses a second one
    // while the first runs).
    for request in [netlink::dump_links(sh.seq), netlink::dump_ipv4_addresses(sh.seq + 1)] {
        sh.seq += 1;
        if let Err(e) = sock.send(&request) {
            say(&format!("asking the kernel for its links: {e}"));
        }
        let started = Instant::now();
        'dump: while started.elapsed() < Duration::from_secs(5) {
            for m in sock.recv(Duration::from_millis(500)).unwrap_or_default() {
                if m == Message::Done {
                    break 'dump;
                }
                apply(&lc.on_link_message(&m, &kind_of), &mut sh);
            }
        }
    }
    loop {
        match sock.recv(Duration::from_millis(250)) {
            Ok(msgs) => {
                for m in msgs {
                    apply(&lc.on_link_message(&m, &kind_of), &mut sh);
                }
            }
            Err(e) => {
                // ENOBUFS: events were lost (a burst); ask again for the whole picture.
                say(&format!("reading link events: {e}; asking for the links again"));
                sh.seq += 1;
                let _ = sock.send(&netlink::dump_links(sh.seq));
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        while let Ok((name, line)) = lines.try_recv() {
            // The supplicant prefixes its events with the interface: `wlan0: CTRL-EVENT-...`.
            let text = line.strip_prefix(&format!("{name}: ")).unwrap_or(&line);
            if let Some(event) = crate::wifi::parse_event(text) {
                apply(&lc.on_wifi_event(&name, &event), &mut sh);
            }
        }
        let now = Instant::now();
        let ended: Vec<String> = sh
            .dhcp
            .iter_mut()
            .filter_map(|(n, c)| c.try_wait().ok().flatten().map(|_| n.clone()))
            .collect();
        for name in ended {
            sh.dhcp.remove(&name);
            apply(&lc.on_dhcp_exit(&name, now), &mut sh);
        }
        apply(&lc.on_tick(now), &mut sh);
    }
}

fn apply(actions: &[Action], sh: &mut Shell<'_>) {
    for a in actions {
        match a {
            Action::BringUp(index) => {
                sh.seq += 1;
                if let Err(e) = sh.sock.send(&netlink::set_up(*index, sh.seq)) {
                    say(&format!("bringing link {index} up: {e}"));
                }
            }
            Action::StartDhcp(name) => match start_udhcpc(name) {
                Ok(child) => {
                    if let Some(old) = sh.dhcp.insert(name.clone(), child) {
                        stop_udhcpc(name, Some(old));
                    }
                }
                Err(e) => say(&format!("{name}: udhcpc cannot start: {e}")),
            },
            Action::StopDhcp(name) => stop_udhcpc(name, sh.dhcp.remove(name)),
            Action::StartSupplicant(name) => match start_supplicant(name, &sh.events) {
                Ok(child) => {
                    if let Some(mut old) = sh.supplicants.insert(name.clone(), child) {
                        let _ = old.kill();
                        let _ = old.wait();
                    }
                }
                Err(e) => say(&format!("{name}: wpa_supplicant cannot start: {e}")),
            },
            Action::StopSupplicant(name) => {
                if let Some(mut child) = sh.supplicants.remove(name) {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Action::State(name, state) => {
                crate::network::set_link(name, *state);
            }
            Action::Wifi(name, state) => {
                crate::network::set_wifi(name, state.clone());
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

    fn kind(name: &str) -> Kind {
        if name.starts_with("wlan") {
            Kind::Wireless
        } else if wired(name) {
            Kind::Wired
        } else {
            Kind::Other
        }
    }

    fn wifi_states(actions: &[Action]) -> Vec<Option<WifiState>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Wifi(_, s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    fn addr(index: u32, a: [u8; 4]) -> Message {
        Message::NewAddr(Addr {
            index,
            prefix: 24,
            address: Ipv4Addr::from(a),
        })
    }

    #[test]
    fn wifi_joins_the_networks_in_order_and_reports_a_refused_key() {
        let mut lc = Lifecycle::with_wifi(vec!["wrong".into(), "lapterop-test".into()]);
        // The radio appears (coldplug or hotplug), down: brought up, nothing started yet.
        let a = lc.on_link_message(&link(4, "wlan1", 0x1002), &kind);
        assert_eq!(a, [Action::BringUp(4)]);
        // Up, no carrier (not associated), no wired lease: the supplicant starts.
        let a = lc.on_link_message(&link(4, "wlan1", IFF_UP), &kind);
        assert!(a.contains(&Action::StartSupplicant("wlan1".into())), "{a:?}");
        assert_eq!(wifi_states(&a), [Some(WifiState::Joining { ssid: "wrong".into() })]);
        // Carrier changes of a radio start no DHCP by themselves.
        assert!(lc.on_link_message(&link(4, "wlan1", IFF_UP), &kind).is_empty());
        let a = lc.on_wifi_event("wlan1", &Event::Trying("wrong".into()));
        assert_eq!(wifi_states(&a), [Some(WifiState::Joining { ssid: "wrong".into() })]);
        let a = lc.on_wifi_event("wlan1", &Event::WrongKey("wrong".into()));
        assert_eq!(wifi_states(&a), [Some(WifiState::WrongKey { ssid: "wrong".into() })]);
        assert!(matches!(&a[0], Action::Say(l) if l.starts_with("LAP-P11 ")), "{a:?}");
        // The supplicant goes on to the next network: the refusal stays shown until one joins.
        let a = lc.on_wifi_event("wlan1", &Event::Trying("lapterop-test".into()));
        assert_eq!(wifi_states(&a), [Some(WifiState::WrongKey { ssid: "wrong".into() })]);
        let a = lc.on_wifi_event("wlan1", &Event::Connected(String::new()));
        assert!(a.contains(&Action::StartDhcp("wlan1".into())), "{a:?}");
        assert_eq!(
            wifi_states(&a),
            [Some(WifiState::Joining {
                ssid: "lapterop-test".into()
            })]
        );
        let a = lc.on_link_message(&addr(4, [192, 168, 7, 20]), &kind);
        assert_eq!(
            wifi_states(&a),
            [Some(WifiState::Connected {
                ssid: "lapterop-test".into(),
                address: Ipv4Addr::new(192, 168, 7, 20)
            })]
        );
        // A round of udhcpc without an answer while associated backs off like on a cable.
        let mut lc2 = Lifecycle::with_wifi(vec!["x".into()]);
        lc2.on_link_message(&link(1, "wlan0", IFF_UP), &kind);
        lc2.on_wifi_event("wlan0", &Event::Connected(String::new()));
        let a = lc2.on_dhcp_exit("wlan0", Instant::now());
        assert!(
            matches!(&a[..], [Action::Say(l)] if l.contains("asking again")),
            "{a:?}"
        );
        // Lost association: DHCP stops, joining again.
        let a = lc.on_wifi_event("wlan1", &Event::Disconnected);
        assert!(a.contains(&Action::StopDhcp("wlan1".into())), "{a:?}");
        assert_eq!(
            wifi_states(&a),
            [Some(WifiState::Joining {
                ssid: "lapterop-test".into()
            })]
        );
    }

    #[test]
    fn a_wired_lease_turns_wifi_off_and_losing_it_turns_wifi_on() {
        let mut lc = Lifecycle::with_wifi(vec!["lab".into()]);
        lc.on_link_message(&link(4, "wlan0", IFF_UP), &kind);
        lc.on_wifi_event("wlan0", &Event::Connected(String::new()));
        lc.on_link_message(&addr(4, [192, 168, 7, 20]), &kind);
        lc.on_link_message(&link(2, "eth0", IFF_UP | IFF_LOWER_UP), &kind);
        let a = lc.on_link_message(&addr(2, [10, 0, 2, 15]), &kind);
        for want in [
            Action::StopDhcp("wlan0".into()),
            Action::StopSupplicant("wlan0".into()),
            Action::Wifi("wlan0".into(), None),
        ] {
            assert!(a.contains(&want), "{want:?} in {a:?}");
        }
        // Events of the stopped supplicant change nothing.
        assert!(lc.on_wifi_event("wlan0", &Event::Connected(String::new())).is_empty());
        // The cable goes: Wi-Fi again.
        let a = lc.on_link_message(&link(2, "eth0", IFF_UP), &kind);
        assert!(a.contains(&Action::StartSupplicant("wlan0".into())), "{a:?}");
    }

    #[test]
    fn a_renewed_lease_keeps_dhcp_running_and_changes_nothing() {
        // udhcpc (no -q) stays after the lease and renews it at half the lease time; busybox's
        // simple.script then runs `ip addr add` with the same address, which the kernel refuses
        // (EEXIST) without an RTM_NEWADDR, and replaces the default route (route messages are not
        // address messages). A repeated RTM_NEWADDR for the same address (the kernel may announce it
        // again) must not restart DHCP, stop the supplicant or redraw the state.
        let mut lc = Lifecycle::with_wifi(vec!["lab".into()]);
        lc.on_link_message(&link(4, "wlan0", IFF_UP), &kind);
        lc.on_wifi_event("wlan0", &Event::Connected(String::new()));
        let first = lc.on_link_message(&addr(4, [192, 168, 77, 100]), &kind);
        assert_eq!(wifi_states(&first).len(), 1, "{first:?}");
        assert!(lc.on_link_message(&addr(4, [192, 168, 77, 100]), &kind).is_empty());
        // udhcpc is still the one running: no exit, so no new round and no backoff.
        assert!(lc.on_tick(Instant::now() + Duration::from_secs(3600)).is_empty());
        // The same on a cable.
        let mut lc = Lifecycle::new();
        lc.on_message(&link(2, "eth0", IFF_UP | IFF_LOWER_UP), &wired);
        let first = lc.on_message(&addr(2, [10, 0, 2, 15]), &wired);
        assert_eq!(states(&first).len(), 1, "{first:?}");
        assert!(lc.on_message(&addr(2, [10, 0, 2, 15]), &wired).is_empty());
        assert!(lc.on_tick(Instant::now() + Duration::from_secs(3600)).is_empty());
        // A renewal that hands out another address: the screen follows it.
        let moved = lc.on_message(&addr(2, [10, 0, 2, 16]), &wired);
        assert_eq!(
            states(&moved),
            [LinkState::Connected {
                address: Ipv4Addr::new(10, 0, 2, 16),
                prefix: 24
            }]
        );
    }

    #[test]
    fn the_supplicant_config_is_root_only_and_on_the_live_tmpfs() {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        // /run is the live image's tmpfs: the keys never reach the stick or a disk.
        assert!(SUPPLICANT_CONF.starts_with("/run/"), "{SUPPLICANT_CONF}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lapterop/wpa_supplicant.conf");
        // A file left with a wider mode is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .unwrap();
        let net = WifiNetwork::check(1, "Lab", Some("werkplaats-2026"), None).unwrap();
        write_supplicant_config_to(&path, &[net]).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psk="), "{text}");
    }

    #[test]
    fn without_configured_networks_radios_are_left_alone() {
        let mut lc = Lifecycle::new();
        assert!(lc.on_link_message(&link(4, "wlan0", 0x1002), &kind).is_empty());
        assert!(lc.on_link_message(&link(4, "wlan0", IFF_UP), &kind).is_empty());
        assert!(lc.on_wifi_event("wlan0", &Event::Connected(String::new())).is_empty());
    }
}
