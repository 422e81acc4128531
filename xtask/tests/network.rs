//! The network a workshop really has (issue 19), on the real live stick in QEMU, against the real
//! collection server on 127.0.0.1 (the guest's only way out: restricted user networking with one
//! `guestfwd` to it). One scenario (server, OS image, stick) and two laptops, one boot each:
//!
//! - **a USB adapter plugged in during the wipe**: a laptop with no network adapter at all, booted
//!   unattended; once the wipe runs the test plugs a `usb-net` adapter into the xHCI controller the
//!   stick is on (QMP `device_add`). Its driver must load (hotplug), DHCP must get a lease, and the
//!   certificate must reach the server in the same session (`upload=sent`, the server's copy verified,
//!   the receipt on the stick).
//! - **a cable plugged in at the result screen**: a laptop whose e1000e cable is out from power-on
//!   (QMP `set_link nic0 off`), driven by a volunteer on the serial console through the interactive
//!   flow. Pre-flight and every screen say there is no network; the certificate waits; then the
//!   cable goes in (`set_link nic0 on`) and, with no key pressed, the result screen shows the network
//!   connected and the donor page's QR code, and the server has the certificate. The seconds from
//!   the cable in to the QR code on the screen are printed (docs/benchmarks.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
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

/// A USB network adapter plugged in while the wipe runs.
fn usb_adapter_during_the_wipe(s: &Scenario) -> Result<(), String> {
    // One 384 MiB disk: its wipe (random, read back in full) outlasts the adapter's enumeration and DHCP.
    let disks = s
        .laptop_with(
            "laptop-usb",
            &[DiskSpec {
                bus: Bus::Virtio,
                size: 384 * MIB,
                sector: 512,
            }],
        )
        .map_err(|e| e.to_string())?;
    let mut plugged: Option<(Instant, String)> = None;
    let mut leased: Option<Duration> = None;
    let boot = s
        .boot_with(
            Firmware::Bios,
            &disks,
            Nic::Later,
            Duration::from_secs(900),
            &mut |vm, text| {
                match &plugged {
                    None if text.contains("lapterop: wiping ") => {
                        vm.qmp()?.execute(
                            "device_add",
                            json!({"driver": "usb-net", "netdev": "net0", "bus": "xhci.0", "id": "usbnic"}),
                        )?;
                        plugged = Some((Instant::now(), text.to_owned()));
                    }
                    Some((at, before))
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
        return Err(format!("the wipe never started:\n{tail}"));
    };
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
    println!(
        "network: usb-net plugged in during the wipe -> lease after {}; {}",
        leased.map_or("?".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        job_line(&boot.console).unwrap_or_default()
    );
    Ok(())
}

/// The stick's site config in interactive mode, in English (a copy of the scenario's stick).
fn interactive_stick(s: &Scenario) -> std::path::PathBuf {
    let stick = s.work.join("stick-interactive.img");
    std::fs::copy(&s.stick, &stick).unwrap();
    let site = std::fs::read_to_string(s.work.join("site.toml")).unwrap();
    let site = site.replace("mode = \"unattended\"", "mode = \"interactive\"") + "\n[ui]\nlanguage = \"en\"\n";
    let file = s.work.join("site-interactive.toml");
    std::fs::write(&file, site).unwrap();
    let out = Command::new("mcopy")
        .arg("-o")
        .arg("-i")
        .arg(format!("{}@@1M", stick.display()))
        .arg(&file)
        .arg("::lapterop/site.toml")
        .output()
        .unwrap();
    assert!(out.status.success(), "mcopy: {}", String::from_utf8_lossy(&out.stderr));
    stick
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
        let screen = v
            .wait_for(&[l.t(Key::QrCaption), l.t(Key::UploadDone)], Duration::from_secs(180))
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
    let failures: Vec<String> = [
        usb_adapter_during_the_wipe(&s).err(),
        cable_at_the_result_screen(&s).err(),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !failures.is_empty() {
        let kept = work.keep();
        panic!("{}\n(work kept in {})", failures.join("\n\n"), kept.display());
    }
}
