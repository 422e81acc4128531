//! The network a workshop really has (issue 19), on the real live stick in QEMU, against the real
//! collection server on 127.0.0.1 (the guest's only way out: restricted user networking with one
//! `guestfwd` to it). One scenario (server, OS image, stick) and two laptops, one boot each:
//!
//! - **a USB adapter plugged in a minute into the wipe**: a laptop with no network adapter at all,
//!   booted unattended, its disk throttled (QMP `block_set_io_throttle`) so that the wipe lasts well
//!   past a minute on any host; 60 s into the wipe (and before its end, checked) the test plugs a
//!   `usb-net` adapter into the xHCI controller the stick is on (QMP `device_add`). Its driver must
//!   load (hotplug), DHCP must get a lease, and the
//!   certificate must reach the server in the same session (`upload=sent`, the server's copy verified,
//!   the receipt on the stick).
//! - **a cable plugged in at the result screen**: a laptop whose e1000e cable is out from power-on
//!   (QMP `set_link nic0 off`), driven by a volunteer on the serial console through the interactive
//!   flow. Pre-flight and every screen say there is no network; the certificate waits; then the
//!   cable goes in (`set_link nic0 on`) and, with no key pressed, the result screen shows the network
//!   connected and the donor page's QR code, and the server has the certificate. The seconds from
//!   the cable in to the QR code on the screen are printed (docs/benchmarks.md).
//! - **Wi-Fi and no cable**: a laptop with no network adapter but a Wi-Fi radio, unattended. In the
//!   guest, `mac80211_hwsim` makes two radios; a test-only access point (`hostapd`, WPA2-PSK, and
//!   busybox `udhcpd`, in a network namespace of their own on the first radio, [`xtask::wifi`])
//!   serves two networks. The site config lists first a network whose passphrase it has wrong, then
//!   one it has right. The agent must say `LAP-P11` for the first, join the second over the air, get a
//!   lease and show the SSID with the address; the access point's namespace routes nowhere, so the
//!   certificate stays in the outbox (`upload=waiting`) and the server never sees it. udhcpd's
//!   60-second lease must be renewed by the agent's DHCP client while the session runs. The seconds
//!   from the supplicant's start to the association and to the lease are printed
//!   (docs/benchmarks.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use lapterop_agent::i18n::{Key, Lang};
use serde_json::json;
use xtask::console::{Console, Script, Volunteer};
use xtask::e2e::{Nic, Scenario};
use xtask::stick::Firmware;
use xtask::vm::{Bus, DiskSpec};

const MIB: u64 = 1 << 20;

fn tools_or_skip() -> bool {
    if !xtask::vm_tools_or_skip() {
        return false;
    }
    let missing: Vec<&str> = [
        ("/usr/bin/mtype", "mtools"),
        ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
        ("/usr/sbin/sgdisk", "gdisk"),
        ("/usr/bin/grub-mkimage", "grub-common"),
    ]
    .iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, package)| *package)
    .collect();
    if missing.is_empty() {
        return true;
    }
    xtask::skip(
        "the network acceptance test",
        &format!("needs Debian packages {}", missing.join(", ")),
    );
    false
}

/// The id in the console's `LAPTEROP-JOB-DONE` line.
fn job_line(console: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains("LAPTEROP-JOB-DONE"))
        .map(str::to_owned)
}

/// How far into the wipe the USB adapter is plugged in.
const PLUG_INTO_THE_WIPE: Duration = Duration::from_secs(60);
/// The laptop disk's bandwidth, set through QMP `block_set_io_throttle` as the VM starts: the wipe of
/// its 256 MiB (written, then read back in full) lasts at least 85 s on any host, well past the plug.
const LAPTOP_DISK_BPS: u64 = 6 * MIB;

/// A USB network adapter plugged in a minute into the wipe.
fn usb_adapter_during_the_wipe(s: &Scenario) -> Result<(), String> {
    let disks = s
        .laptop_with(
            "laptop-usb",
            &[DiskSpec {
                bus: Bus::Virtio,
                size: 256 * MIB,
                sector: 512,
            }],
        )
        .map_err(|e| e.to_string())?;
    let mut throttled = false;
    let mut wiping: Option<(Instant, usize)> = None;
    let mut plugged: Option<(Instant, String)> = None;
    let mut leased: Option<Duration> = None;
    let boot = s
        .boot_with(
            Firmware::Bios,
            &disks,
            Nic::Later,
            Duration::from_secs(900),
            &mut |vm, text| {
                if !throttled {
                    vm.qmp()?.execute(
                        "block_set_io_throttle",
                        json!({"device": "disk0", "bps": LAPTOP_DISK_BPS, "bps_rd": 0, "bps_wr": 0,
                               "iops": 0, "iops_rd": 0, "iops_wr": 0}),
                    )?;
                    throttled = true;
                }
                match (&wiping, &plugged) {
                    (None, _) => {
                        if let Some(at) = text.find("lapterop: wiping ") {
                            wiping = Some((Instant::now(), at));
                        }
                    }
                    (Some((since, _)), None) if since.elapsed() >= PLUG_INTO_THE_WIPE => {
                        vm.qmp()?.execute(
                            "device_add",
                            json!({"driver": "usb-net", "netdev": "net0", "bus": "xhci.0", "id": "usbnic"}),
                        )?;
                        plugged = Some((Instant::now(), text.to_owned()));
                    }
                    (_, Some((at, before)))
                        if leased.is_none()
                            && text[before.len().min(text.len())..].contains(": connected, address ") =>
                    {
                        leased = Some(at.elapsed());
                    }
                    _ => {}
                }
                Ok(())
            },
        )
        .map_err(|e| format!("{e:#}"))?;
    let tail = boot.tail();
    if let Some(why) = &boot.refused {
        return Err(format!("the boot failed ({why}):\n{tail}"));
    }
    let Some((_, before)) = plugged else {
        return Err(format!(
            "the wipe never started, or the session ended within {} s of its start:\n{tail}",
            PLUG_INTO_THE_WIPE.as_secs()
        ));
    };
    // The console at the plug, from the wipe's start: no disk outcome yet.
    let wipe_start = wiping.map_or(0, |(_, at)| at);
    if before[wipe_start..].contains("ERASED") {
        return Err(format!(
            "the wipe ended before the adapter was plugged in, {} s into it (the disk's throttle did not hold):\n{tail}",
            PLUG_INTO_THE_WIPE.as_secs()
        ));
    }
    // Booted with no adapter: no network until the plug.
    if !before.contains("LAP-P06") || before.contains(": connected, address ") {
        return Err(format!(
            "before the adapter the laptop should have had no network (LAP-P06):\n{before}"
        ));
    }
    let after = &boot.console[before.len()..];
    let hotplug = after
        .lines()
        .find(|l| l.starts_with("lapterop: hotplug: ") && (l.contains("cdc_ether") || l.contains("rndis_host")))
        .ok_or_else(|| format!("no USB network driver loaded after the plug:\n{tail}"))?;
    println!("network: {hotplug}");
    let connected = after
        .lines()
        .find(|l| l.contains(": connected, address 10.0.2."))
        .ok_or_else(|| format!("the adapter got no DHCP lease:\n{tail}"))?;
    println!("network: {connected}");
    let id = s
        .check_job(&boot.console, &disks, true)
        .map_err(|e| format!("{e:#}\n{tail}"))?;
    let n = s.log_count(&id).map_err(|e| e.to_string())?;
    if n != 1 {
        return Err(format!("certificate {id} is {n} times in the server's log"));
    }
    let wipe = first_line(&boot.console, "lapterop: stage wipe ").unwrap_or("lapterop: stage wipe ?");
    println!(
        "network: usb-net plugged in {} s into the wipe ({}) -> lease after {}; {}",
        PLUG_INTO_THE_WIPE.as_secs(),
        wipe.trim_start_matches("lapterop: "),
        leased.map_or("?".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        job_line(&boot.console).unwrap_or_default()
    );
    Ok(())
}

/// A copy of the scenario's stick, `stick-NAME.img`, whose site config is the scenario's changed by
/// `edit`.
fn stick_with_site(
    s: &Scenario,
    name: &str,
    edit: impl FnOnce(String) -> String,
) -> anyhow::Result<std::path::PathBuf> {
    let stick = s.work.join(format!("stick-{name}.img"));
    std::fs::copy(&s.stick, &stick)?;
    let file = s.work.join(format!("site-{name}.toml"));
    std::fs::write(&file, edit(std::fs::read_to_string(s.work.join("site.toml"))?))?;
    xtask::e2e::stick_put(&stick, &file, "lapterop/site.toml")?;
    Ok(stick)
}

/// The stick's site config in interactive mode, in English (a copy of the scenario's stick).
fn interactive_stick(s: &Scenario) -> std::path::PathBuf {
    stick_with_site(s, "interactive", |site| {
        site.replace("mode = \"unattended\"", "mode = \"interactive\"") + "\n[ui]\nlanguage = \"en\"\n"
    })
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// A cable plugged in while the volunteer looks at the result screen.
fn cable_at_the_result_screen(s: &Scenario) -> Result<(), String> {
    let stick = interactive_stick(s);
    let disks = s
        .laptop_with(
            "laptop-cable",
            &[DiskSpec {
                bus: Bus::Virtio,
                size: 64 * MIB,
                sector: 512,
            }],
        )
        .map_err(|e| e.to_string())?;
    let mut vm = s
        .start_vm(&stick, Firmware::Bios, &disks, Nic::Wired)
        .map_err(|e| format!("{e:#}"))?;
    // The cable is out from power-on: the kernel is seconds away, SeaBIOS has not even run.
    vm.qmp()
        .and_then(|q| q.execute("set_link", json!({"name": "nic0", "up": false})))
        .map_err(|e| e.to_string())?;
    let l = Lang::En;
    let mut v = Volunteer::new(&mut vm, Console::Serial).map_err(|e| e.to_string())?;
    let outcome = (|| -> Result<f64, String> {
        let script = Script {
            lang: l,
            word: None,
            disks: vec![("vda".into(), "LAPTEROP-D0".into())],
            switch_language: false,
            mistype: false,
            stage: Duration::from_secs(240),
            wipe: Duration::from_secs(600),
        };
        let result = v.run_flow(&script).map_err(|e| e.to_string())?;
        let none = l.t(Key::NetNone);
        // LAP-N01: the certificate waits on the stick (its text may wrap).
        if !result.contains(&format!("LAP-P06 {none}")) || !result.contains("LAP-N01 ") {
            return Err(format!(
                "the result screen should say there is no network and the certificate waits:\n{result}"
            ));
        }
        if result.contains(l.t(Key::QrCaption)) {
            return Err(format!("a donor page without a network:\n{result}"));
        }
        // The cable goes in; nobody touches the keyboard.
        let cable_in = Instant::now();
        v.mark_seen();
        set_cable(&mut v, true)?;
        // The whole redrawn screen: the serial line brings it in pieces, and the network line comes
        // after the QR code.
        let screen = v
            .wait_for(
                &[l.t(Key::QrCaption), l.t(Key::UploadDone), "Network: connected on "],
                Duration::from_secs(180),
            )
            .map_err(|e| e.to_string())?;
        let seconds = cable_in.elapsed().as_secs_f64();
        if !screen.contains("Network: connected on ") {
            return Err(format!(
                "the redrawn result screen does not show the network:\n{screen}"
            ));
        }
        v.answer("p").map_err(|e| e.to_string())?;
        Ok(seconds)
    })();
    let transcript = v.transcript();
    drop(v);
    let console = vm.console();
    std::fs::write(s.work.join("transcript-cable.txt"), &transcript).unwrap();
    std::fs::write(s.work.join("console-cable.log"), &console).unwrap();
    let seconds = outcome.map_err(|e| format!("{e}\n(transcript and console in {})", s.work.display()))?;
    vm.wait_exit(Duration::from_secs(120))
        .map_err(|e| format!("no power-off after P: {e}"))?;
    // Nothing reached the server before the cable; the certificate on it now is the stick's.
    let boot_lines = console.split("LAPTEROP-AGENT-READY").next().unwrap_or_default();
    if !boot_lines.contains("lapterop: network: eth0: no cable") {
        return Err(format!("the boot did not see the cable out:\n{boot_lines}"));
    }
    let id = job_line(&console)
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("certificate="))
                .map(str::to_owned)
        })
        .ok_or("no LAPTEROP-JOB-DONE line")?;
    if !job_line(&console).unwrap_or_default().contains("upload=waiting") {
        return Err("the job's own upload should have found no network".into());
    }
    let bytes =
        xtask::e2e::stick_file_of(&stick, &format!("lapterop/outbox/{id}.json")).map_err(|e| format!("{e:#}"))?;
    s.check_uploaded_from(&stick, &id, &bytes)
        .map_err(|e| format!("{e:#}"))?;
    println!(
        "network: cable plugged in at the result screen -> certificate sent and QR code on the screen after \
         {seconds:.1} s"
    );
    Ok(())
}

/// The scenario's stick with Wi-Fi networks in its site config and the test's access point.
fn wifi_stick(s: &Scenario) -> Result<std::path::PathBuf, String> {
    let stick =
        stick_with_site(s, "wifi", |site| site + &xtask::wifi::site_networks()).map_err(|e| format!("{e:#}"))?;
    xtask::wifi::add_access_point(&stick, &s.work).map_err(|e| format!("{e:#}"))?;
    Ok(stick)
}

/// The first console line containing `what`.
fn first_line<'a>(console: &'a str, what: &str) -> Option<&'a str> {
    console.lines().find(|l| l.contains(what))
}

/// A laptop with Wi-Fi only: the wrong passphrase is refused, the right network gives a lease.
fn wifi_without_a_cable(s: &Scenario) -> Result<(), String> {
    use xtask::wifi::{PREFIX, SSID, SUBNET, WRONG_SSID};
    let stick = wifi_stick(s)?;
    let disks = s
        .laptop_with(
            "laptop-wifi",
            &[DiskSpec {
                bus: Bus::Virtio,
                size: 64 * MIB,
                sector: 512,
            }],
        )
        .map_err(|e| e.to_string())?;
    // When each milestone first showed on the console (seconds since QEMU started).
    let mut seen: Vec<(&str, f64)> = Vec::new();
    let (joined, leased) = (
        format!(": joined Wi-Fi {SSID},"),
        format!(": Wi-Fi {SSID}, address {SUBNET}."),
    );
    let marks: [(&str, &str); 4] = [
        ("supplicant", ": no wired network, joining Wi-Fi "),
        ("refused", "LAP-P11 "),
        ("associated", &joined),
        ("lease", &leased),
    ];
    let boot = s
        .boot_stick_with(
            &stick,
            Firmware::Bios,
            &disks,
            Nic::None,
            Duration::from_secs(900),
            &mut |vm, text| {
                for (name, line) in marks {
                    if !seen.iter().any(|(n, _)| *n == name) && text.contains(line) {
                        seen.push((name, vm.elapsed().as_secs_f64()));
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| format!("{e:#}"))?;
    let console = &boot.console;
    std::fs::write(s.work.join("console-wifi.log"), console).unwrap();
    let tail = boot.tail();
    if let Some(why) = &boot.refused {
        return Err(format!("the boot failed ({why}):\n{tail}"));
    }
    let ap = first_line(console, &format!("{PREFIX} access point on "))
        .ok_or_else(|| format!("the test's access point did not start:\n{tail}"))?;
    println!("network: {ap}");
    if !console.contains(&format!("{PREFIX} hostapd: wlan0: AP-ENABLED")) {
        return Err(format!("hostapd did not enable the access point:\n{tail}"));
    }
    // The refused key: the lifecycle's line and the network state both name the network.
    let refused = first_line(
        console,
        &format!("LAP-P11 wlan1: Wi-Fi {WRONG_SSID} refused the passphrase"),
    )
    .ok_or_else(|| format!("no LAP-P11 for {WRONG_SSID}, whose passphrase the site has wrong:\n{tail}"))?;
    println!("network: {refused}");
    // Joined over the air: hostapd saw the agent's radio (hwsim's second address) complete the
    // 4-way handshake on the right network.
    if !console.contains(&format!("{PREFIX} hostapd: wlan0: AP-STA-CONNECTED ")) {
        return Err(format!("hostapd saw no station connect on {SSID}:\n{tail}"));
    }
    // hostapd's side of the refused key (a wrong MIC in message 2 of the 4-way handshake).
    if let Some(l) = first_line(console, "AP-STA-POSSIBLE-PSK-MISMATCH") {
        println!("network: {l}");
    }
    let leased = first_line(console, &format!("wlan1: Wi-Fi {SSID}, address {SUBNET}."))
        .ok_or_else(|| format!("no lease on {SSID}:\n{tail}"))?;
    println!("network: {leased}");
    // The lease came from the test's udhcpd, and was renewed: a second ACK without a second offer.
    // busybox's own lines: `udhcpd: sending OFFER to 192.168.77.100`.
    let count = |what: &str| {
        console
            .lines()
            .filter(|l| l.starts_with(PREFIX) && l.contains(&format!("sending {what} to {SUBNET}.")))
            .count()
    };
    let (acks, offers) = (count("ACK"), count("OFFER"));
    let lease_at = seen.iter().find(|(n, _)| *n == "lease").map(|(_, t)| *t);
    let session_after_lease = lease_at.map(|t| boot.seconds - t).unwrap_or_default();
    if offers == 0 || acks == 0 {
        return Err(format!("udhcpd offered or acknowledged nothing:\n{tail}"));
    }
    let renewal_due = f64::from(xtask::wifi::LEASE_SECONDS) * 0.75;
    if session_after_lease >= renewal_due && acks < offers + 1 {
        return Err(format!(
            "the session ran {session_after_lease:.0} s after the lease, past udhcpc's renewal at half of the \
             {} s lease, but udhcpd sent {acks} ACK for {offers} OFFER (no renewal):\n{tail}",
            xtask::wifi::LEASE_SECONDS
        ));
    }
    // No cable, and the access point routes nowhere: the certificate waits in the outbox.
    let id = job_line(console)
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("certificate="))
                .map(str::to_owned)
        })
        .ok_or_else(|| format!("no LAPTEROP-JOB-DONE line:\n{tail}"))?;
    let job = job_line(console).unwrap_or_default();
    if !job.contains("outcome=erased ") || !job.contains("upload=waiting") {
        return Err(format!("job line: {job}"));
    }
    let bytes =
        xtask::e2e::stick_file_of(&stick, &format!("lapterop/outbox/{id}.json")).map_err(|e| format!("{e:#}"))?;
    lapterop_certificate::verify(&bytes, &s.station_pub).map_err(|e| format!("the certificate in the outbox: {e}"))?;
    let n = s.log_count_from(&stick, &id).map_err(|e| e.to_string())?;
    if n != 0 {
        return Err(format!(
            "certificate {id} reached the server ({n} times) with no route to it"
        ));
    }
    let at = |name: &str| seen.iter().find(|(n, _)| *n == name).map(|(_, t)| *t);
    let since = |a: &str, b: &str| match (at(a), at(b)) {
        (Some(a), Some(b)) => format!("{:.1} s", b - a),
        _ => "?".into(),
    };
    println!(
        "network: Wi-Fi only -> LAP-P11 for {WRONG_SSID} {} after the supplicant started, joined {SSID} after {}, \
         lease after {} (association to lease {}); {acks} ACK for {offers} OFFER ({session_after_lease:.0} s of \
         session after the lease); boot {:.0} s; {job}",
        since("supplicant", "refused"),
        since("supplicant", "associated"),
        since("supplicant", "lease"),
        since("associated", "lease"),
        boot.seconds
    );
    Ok(())
}

fn set_cable(v: &mut Volunteer<'_>, up: bool) -> Result<(), String> {
    v.vm()
        .qmp()
        .and_then(|q| q.execute("set_link", json!({"name": "nic0", "up": up})))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn a_late_usb_adapter_and_a_late_cable_get_a_lease_and_the_certificate_is_sent_in_the_same_session() {
    if !tools_or_skip() {
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("lapterop-network-test-")
        .tempdir_in(xtask::vm::target_dir())
        .unwrap();
    let s = Scenario::prepare(work.path(), None).unwrap_or_else(|e| panic!("{e:#}"));
    // All phases share the scenario (one agent, server and stick build). `LAPTEROP_NETWORK_PHASES=wifi`
    // (a comma-separated list of usb, cable, wifi) runs only some, when working on one.
    let phases = std::env::var("LAPTEROP_NETWORK_PHASES").unwrap_or_else(|_| "usb,cable,wifi".into());
    let wanted = |p: &str| phases.split(',').any(|w| w.trim() == p);
    let mut failures: Vec<String> = Vec::new();
    type Phase = fn(&Scenario) -> Result<(), String>;
    let runs: [(&str, Phase); 3] = [
        ("usb", usb_adapter_during_the_wipe),
        ("cable", cable_at_the_result_screen),
        ("wifi", wifi_without_a_cable),
    ];
    for (name, run) in runs {
        if wanted(name) {
            let started = Instant::now();
            failures.extend(run(&s).err());
            println!("network: phase {name} took {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    if !failures.is_empty() {
        let kept = work.keep();
        panic!("{}\n(work kept in {})", failures.join("\n\n"), kept.display());
    }
}
