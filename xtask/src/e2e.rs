//! The end-to-end run: the real live stick booted in QEMU against a simulated donated laptop.
//!
//! [`Scenario::prepare`] builds everything the way a workshop would: the collection server on
//! 127.0.0.1 with the stick's station key enrolled, a signed standard OS image, the stick image made by
//! `lapterop-image-builder live` (site config, station key, image key, OS image on its FAT partition),
//! and a laptop: an SMBIOS identity, a virtio disk and a 4Kn NVMe disk full of recognisable personal
//! files, an e1000e NIC on restricted user networking whose only way out is a `guestfwd` to the server.
//! [`Scenario::boot`] boots the stick under one firmware; the checks read the disks, the stick and the
//! server from the host.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use lapterop_certificate as cert;
use lapterop_osimage::install::plan;
use lapterop_osimage::reader::{Image, SeekSource};

use crate::stick::{Firmware, StickVm, FATAL};
use crate::vm::{self, Bus, DiskSpec, VmSpec};

const MIB: u64 = 1 << 20;
/// The guest's address for the collection server (forwarded to 127.0.0.1:PORT on the host).
const GUEST_SERVER: &str = "10.0.2.100";

/// A collection server of our own on 127.0.0.1, ended through its handle when dropped.
#[derive(Debug)]
pub struct Server {
    child: std::process::Child,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    pub data: PathBuf,
}

impl Server {
    /// `lapterop-server serve` on a free loopback port, with `station_pub` enrolled as `name` and a
    /// reviewer `lead` (password `demo-reviewer-password`).
    pub fn start(bin: &Path, work: &Path, station_pub: &Path, name: &str, port: Option<u16>) -> anyhow::Result<Server> {
        let data = work.join("server");
        let server = bin.join("lapterop-server");
        run_ok(
            Command::new(&server)
                .args(["stations", "add", "--data"])
                .arg(&data)
                .args(["--name", name, "--key"])
                .arg(station_pub),
        )?;
        let mut users = Command::new(&server)
            .args(["users", "add", "--data"])
            .arg(&data)
            .arg("lead")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .context("starting lapterop-server users add")?;
        if let Some(mut stdin) = users.stdin.take() {
            std::io::Write::write_all(&mut stdin, b"demo-reviewer-password\n")?;
        }
        ensure!(users.wait()?.success(), "lapterop-server users add failed");
        let port = match port {
            Some(p) => p,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        };
        let log = fs::File::create(work.join("server.log"))?;
        let child = Command::new(&server)
            .args(["serve", "--data"])
            .arg(&data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting lapterop-server serve")?;
        let s = Server { child, port, data };
        let started = Instant::now();
        while s.get("/healthz").is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not answer on 127.0.0.1:{port} (see {})",
                work.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(s)
    }

    /// Base URL on the host.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// GET a path; the body when the status is 200.
    pub fn get(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let mut resp = ureq::get(&format!("{}{path}", self.url()))
            .call()
            .with_context(|| format!("GET {path}"))?;
        let mut body = Vec::new();
        resp.body_mut().as_reader().take(64 * MIB).read_to_end(&mut body)?;
        Ok(body)
    }

    /// `GET path` signed with a station key (`lapterop_certificate::request`): the status and body,
    /// whatever the status.
    pub fn get_as_station(&self, path: &str, key: &cert::SigningKey) -> anyhow::Result<(u16, Vec<u8>)> {
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs(),
        )?;
        let mut resp = ureq::get(&format!("{}{path}", self.url()))
            .config()
            .http_status_as_error(false)
            .build()
            .header(
                cert::request::HEADER,
                cert::request::header_value(key, "GET", path, now),
            )
            .call()
            .with_context(|| format!("GET {path}"))?;
        let mut body = Vec::new();
        resp.body_mut().as_reader().take(64 * MIB).read_to_end(&mut body)?;
        Ok((resp.status().as_u16(), body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_ok(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A disk of the simulated laptop and the personal data on it.
#[derive(Debug, Clone)]
pub struct LaptopDisk {
    /// Bus and geometry.
    pub spec: DiskSpec,
    /// Backing file.
    pub file: PathBuf,
}

impl LaptopDisk {
    /// The donor's SD card left in the reader: not the laptop's, so the job must leave it alone.
    pub fn is_card(&self) -> bool {
        self.spec.bus == Bus::Sd
    }
}

/// The donor's recognisable strings: none may be found on any disk afterwards.
pub const PERSONAL: [&str; 3] = [
    "Bankafschrift van Jan Peeters, IBAN BE68 5390 0754 7034",
    "Medisch dossier Jan Peeters, rijksregisternummer 85.07.30-033.61",
    "wachtwoorden: gmail jan.peeters1985 / hunter2",
];

/// Fills a disk file with an ext4 filesystem of personal files (the whole disk, as on many donated
/// laptops' data disks), so the strings sit in real file data blocks.
fn personal_disk(work: &Path, name: &str, spec: DiskSpec) -> anyhow::Result<LaptopDisk> {
    let files = work.join(format!("{name}-files"));
    for (i, text) in PERSONAL.iter().enumerate() {
        let dir = files.join(format!("Documenten/map{i}"));
        fs::create_dir_all(&dir)?;
        for n in 0..40 {
            fs::write(dir.join(format!("bestand-{n}.txt")), format!("{text}\n").repeat(50))?;
        }
    }
    let file = work.join(format!("{name}.raw"));
    fs::File::create(&file)?.set_len(spec.size)?;
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&files)
            .arg(&file),
    )?;
    ensure!(count_personal(&file)? > 0, "the personal files did not reach {name}");
    Ok(LaptopDisk { spec, file })
}

/// How many times any personal string occurs in a file.
pub fn count_personal(file: &Path) -> anyhow::Result<usize> {
    let data = fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(PERSONAL
        .iter()
        .map(|p| data.windows(p.len()).filter(|w| *w == p.as_bytes()).count())
        .sum())
}

/// The standard OS image for the run: a 48 MiB GPT disk with one 32 MiB ext4 partition of known files,
/// packed and signed. Returns the image and the partition's bytes (the reference).
fn os_image(work: &Path, key: &cert::SigningKey) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let files = work.join("os-files");
    fs::create_dir_all(files.join("etc"))?;
    fs::create_dir_all(files.join("home/leerling"))?;
    fs::write(
        files.join("etc/os-release"),
        "NAME=\"Leuven pupil desktop\"\nVERSION=\"2026.11\"\n",
    )?;
    fs::write(
        files.join("home/leerling/welkom.txt"),
        "Welkom op je laptop! Iedereendigitaal@Leuven\n".repeat(100),
    )?;
    let blob: Vec<u8> = (0..(4u32 << 20))
        .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect();
    fs::write(files.join("usr-share-blob.bin"), &blob)?;
    let part = work.join("os-part.ext4");
    run_ok(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&files)
            .arg(&part)
            .arg("32M"),
    )?;
    let src = work.join("os-reference.raw");
    fs::File::create(&src)?.set_len(48 * MIB)?;
    run_ok(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+32M", "-t", "1:8300", "-c", "1:system"])
            .arg(&src),
    )?;
    let part_bytes = fs::read(&part)?;
    {
        use std::os::unix::fs::FileExt;
        fs::OpenOptions::new()
            .write(true)
            .open(&src)?
            .write_all_at(&part_bytes, MIB)?;
    }
    let image = work.join("pupil-desktop-2026.11.lapos");
    let mut opts = lapterop_osimage::pack::PackOptions::new("pupil-desktop", "2026.11");
    opts.level = 3;
    // Not shrunk (it is small already): the installer grows it to the laptop's disk, and the scenarios
    // check the grown filesystem against these files.
    opts.shrink_last = false;
    lapterop_osimage::pack::pack(&src, &image, key, &opts).context("packing the OS image")?;
    Ok((image, part_bytes))
}

/// Everything one scenario needs, made once.
#[derive(Debug)]
pub struct Scenario {
    /// Working directory (kept when `keep`).
    pub work: PathBuf,
    /// The server.
    pub server: Server,
    /// The stick image.
    pub stick: PathBuf,
    /// Station public key.
    pub station_pub: cert::VerifyingKey,
    /// The station key (the server gives a station its own certificates back).
    station_key: cert::SigningKey,
    /// The OS image and its key.
    pub os_image: PathBuf,
    image_pub: cert::VerifyingKey,
    reference_partition: Vec<u8>,
    /// Per-stage seconds, in order.
    pub stages: Vec<(String, f64)>,
    agent: PathBuf,
    bin: PathBuf,
}

/// Where the workspace's host binaries are (`cargo build` of server, cert and image builder).
pub fn host_binaries() -> anyhow::Result<PathBuf> {
    Ok(vm::build_debug(&["lapterop-server", "lapterop-image-builder"])?)
}

impl Scenario {
    /// Builds the agent, server, OS image and stick; starts the server (on `port`, else a free one).
    pub fn prepare(work: &Path, port: Option<u16>) -> anyhow::Result<Scenario> {
        let mut stages = Vec::new();
        let mut clock = Instant::now();
        let mut stage = |name: &str, stages: &mut Vec<(String, f64)>| {
            let secs = clock.elapsed().as_secs_f64();
            println!("e2e: stage {name}: {secs:.1} s");
            stages.push((name.to_owned(), secs));
            clock = Instant::now();
        };
        let agent = vm::build_static_agent()?;
        let bin = host_binaries()?;
        stage("build", &mut stages);

        let station = cert::keys::generate()?;
        let station_prefix = work.join("station");
        cert::keys::write_keypair(&station_prefix, &station)?;
        let image_key = cert::keys::generate()?;
        let image_prefix = work.join("image");
        cert::keys::write_keypair(&image_prefix, &image_key)?;
        let server = Server::start(&bin, work, &station_prefix.with_extension("pub"), "e2e-stick", port)?;
        stage("server", &mut stages);

        let (os_image, reference_partition) = os_image(work, &image_key)?;
        stage("os-image", &mut stages);

        let site = work.join("site.toml");
        fs::write(
            &site,
            format!(
                "[station]\norganisation = \"Iedereendigitaal@Leuven\"\nsite = \"QEMU workbench\"\nname = \"e2e-stick\"\n\n\
                 [server]\nurl = \"http://{GUEST_SERVER}\"\nkey = \"server.pub\"\n\n\
                 [wipe]\npattern = \"random\"\nverify = \"full\"\nmethod = \"auto\"\n\n\
                 [install]\nimage = \"images/{}\"\ntarget = \"largest\"\n\n\
                 [flow]\nmode = \"unattended\"\npower_off = true\n",
                os_image.file_name().and_then(|n| n.to_str()).unwrap_or_default()
            ),
        )?;
        let stick = work.join("stick.img");
        run_ok(
            Command::new(bin.join("lapterop-image-builder"))
                .arg("live")
                .arg("--agent")
                .arg(&agent)
                .arg("--out")
                .arg(&stick)
                .arg("--site")
                .arg(&site)
                .arg("--station-key")
                .arg(station_prefix.with_extension("key"))
                .arg("--image-key")
                .arg(image_prefix.with_extension("pub"))
                .arg("--os-image")
                .arg(&os_image)
                .args(["--zstd-level", "9", "--extra-cmdline", "console=ttyS0,115200"])
                .env("SOURCE_DATE_EPOCH", "1790000000"),
        )?;
        // The server's public key, copied onto the stick's FAT partition the way a lead would add it.
        stick_put(&stick, &server.data.join("server.pub"), "lapterop/server.pub")?;
        stage("stick", &mut stages);
        Ok(Scenario {
            work: work.to_owned(),
            server,
            stick,
            station_pub: station.verifying_key(),
            station_key: station.clone(),
            os_image,
            image_pub: image_key.verifying_key(),
            reference_partition,
            stages,
            agent,
            bin,
        })
    }

    /// A fresh simulated laptop: a 64 MiB virtio disk and a 96 MiB NVMe disk with 4096-byte sectors,
    /// both full of personal files, and the donor's 128 MiB SD card left in the reader (the largest
    /// disk, so that taking it for the laptop's would also make it the `largest` install target).
    pub fn laptop(&self, name: &str) -> anyhow::Result<Vec<LaptopDisk>> {
        let dir = self.work.join(name);
        fs::create_dir_all(&dir)?;
        Ok(vec![
            personal_disk(
                &dir,
                "virtio",
                DiskSpec {
                    bus: Bus::Virtio,
                    size: 64 * MIB,
                    sector: 512,
                },
            )?,
            personal_disk(
                &dir,
                "nvme",
                DiskSpec {
                    bus: Bus::Nvme,
                    size: 96 * MIB,
                    sector: 4096,
                },
            )?,
            personal_disk(
                &dir,
                "sd-card",
                DiskSpec {
                    bus: Bus::Sd,
                    size: 128 * MIB,
                    sector: 512,
                },
            )?,
        ])
    }

    /// A laptop with disks of these specs, each full of personal files (`disk0`, `disk1`, ...).
    pub fn laptop_with(&self, name: &str, specs: &[DiskSpec]) -> anyhow::Result<Vec<LaptopDisk>> {
        let dir = self.work.join(name);
        fs::create_dir_all(&dir)?;
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| personal_disk(&dir, &format!("disk{i}"), *spec))
            .collect()
    }

    /// Boots the stick on a laptop with these disks until QEMU exits (the agent powers off), a failure
    /// string appears, or `timeout`. Returns the serial console.
    pub fn boot(
        &self,
        firmware: Firmware,
        disks: &[LaptopDisk],
        network: bool,
        timeout: Duration,
    ) -> anyhow::Result<Boot> {
        let nic = if network { Nic::Wired } else { Nic::None };
        self.boot_with(firmware, disks, nic, timeout, &mut |_, _| Ok(()))
    }

    /// Starts QEMU on `stick` (this scenario's or a copy of it) on a laptop with these disks and NIC.
    pub fn start_vm(
        &self,
        stick: &Path,
        firmware: Firmware,
        disks: &[LaptopDisk],
        nic: Nic,
    ) -> anyhow::Result<StickVm> {
        let spec = VmSpec {
            disks: disks.iter().map(|d| d.spec).collect(),
            smbios: vec![
                "type=1,manufacturer=LENOVO,product=20HRCTO1WW,version=ThinkPad X1 Carbon 5th,serial=PF0XDEMO,sku=LENOVO_MT_20HR".to_owned(),
                "type=2,manufacturer=LENOVO,product=20HRCTO1WW,serial=L1HF7AB00XY".to_owned(),
                "type=3,manufacturer=LENOVO,serial=PF0XDEMO".to_owned(),
            ],
            nic: (nic == Nic::Wired).then(|| "e1000e".to_owned()),
            nic_later: nic == Nic::Later,
            guestfwd: vec![format!("tcp:{GUEST_SERVER}:80-tcp:127.0.0.1:{}", self.server.port)],
            memory_mib: 1024,
            ..VmSpec::default()
        };
        let files: Vec<PathBuf> = disks.iter().map(|d| d.file.clone()).collect();
        Ok(StickVm::start(stick, firmware, &spec, &files)?)
    }

    /// [`Scenario::boot`] with a choice of NIC, calling `during` with the VM and its console every
    /// quarter second (to plug a cable or an adapter in through QMP).
    pub fn boot_with(
        &self,
        firmware: Firmware,
        disks: &[LaptopDisk],
        nic: Nic,
        timeout: Duration,
        during: &mut dyn FnMut(&mut StickVm, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<Boot> {
        self.boot_stick_with(&self.stick, firmware, disks, nic, timeout, during)
    }

    /// [`Scenario::boot_with`] from `stick` (this scenario's or a copy of it).
    pub fn boot_stick_with(
        &self,
        stick: &Path,
        firmware: Firmware,
        disks: &[LaptopDisk],
        nic: Nic,
        timeout: Duration,
        during: &mut dyn FnMut(&mut StickVm, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<Boot> {
        let mut vm = self.start_vm(stick, firmware, disks, nic)?;
        let mut marks: Vec<(String, f64)> = Vec::new();
        let refused = loop {
            let text = vm.console();
            note_milestones(&text, vm.elapsed().as_secs_f64(), &mut marks);
            if let Some(bad) = FATAL.iter().find(|b| text.contains(**b)) {
                break Some((*bad).to_owned());
            }
            during(&mut vm, &text)?;
            // Powered off (QEMU exits with -no-reboot)?
            if vm.wait_exit(Duration::from_millis(250)).is_ok() {
                break None;
            }
            if vm.elapsed() > timeout {
                break Some(format!("no power-off within {} s", timeout.as_secs()));
            }
        };
        let console = vm.console();
        let seconds = vm.elapsed().as_secs_f64();
        // Lines that came just before the power-off.
        note_milestones(&console, seconds, &mut marks);
        fs::write(self.work.join(format!("console-{}.log", firmware.name())), &console)?;
        drop(vm);
        Ok(Boot {
            console,
            refused,
            marks,
            seconds,
        })
    }

    /// Reads a file from the stick's FAT partition (mtools, at the partition's 1 MiB offset).
    pub fn stick_file(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        stick_file_of(&self.stick, path)
    }

    /// Lists the stick's outbox.
    pub fn outbox(&self) -> anyhow::Result<Vec<String>> {
        let out = run_ok(
            Command::new("mdir")
                .args(["-b", "-i"])
                .arg(format!("{}@@1M", self.stick.display()))
                .arg("::lapterop/outbox"),
        )?;
        let mut names: Vec<String> = out
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_owned)
            .filter(|n| n.ends_with(".json"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The checks after a finished job on `disks`: no personal string on any disk, the OS image's data
    /// bit-exact on the largest disk, the certificate on the server and verified with the station key,
    /// the receipt on the stick verified with the server key, the donor page reachable. Returns the id.
    pub fn check_job(&self, console: &str, disks: &[LaptopDisk], expect_uploaded: bool) -> anyhow::Result<String> {
        for d in disks {
            let n = count_personal(&d.file)?;
            if d.is_card() {
                ensure!(n > 0, "the donor's SD card {} was written", d.file.display());
            } else {
                ensure!(n == 0, "{} personal strings are still on {}", n, d.file.display());
            }
        }
        let internal: Vec<&LaptopDisk> = disks.iter().filter(|d| !d.is_card()).collect();
        let done = console
            .lines()
            .find(|l| l.contains("LAPTEROP-JOB-DONE"))
            .context("the agent printed no LAPTEROP-JOB-DONE line")?;
        let id = done
            .split_whitespace()
            .find_map(|w| w.strip_prefix("certificate="))
            .context("no certificate id")?
            .to_owned();
        let want = if expect_uploaded {
            "upload=sent"
        } else {
            "upload=waiting"
        };
        ensure!(
            done.contains("outcome=erased ") && done.contains("install=installed") && done.contains(want),
            "job line: {done}"
        );
        // The OS image, at the layout the installer plans for this disk's size and sector size: its
        // ext4 (the image's last partition) grown to the whole partition, clean for e2fsck, with the
        // files of the reference intact. Block for block comparison would not hold: resize2fs rewrites
        // the superblock, group descriptors and bitmaps as it grows.
        let target = internal.iter().max_by_key(|d| d.spec.size).context("no disks")?;
        let image = Image::open(SeekSource(fs::File::open(&self.os_image)?), &self.image_pub)?;
        let layout = plan(image.manifest(), target.spec.size, target.spec.sector)?;
        let (first, last) = layout.partitions[0];
        let part_bytes = (last - first + 1) * layout.sector;
        let installed = self.installed_partition(&target.file, first * layout.sector, part_bytes)?;
        // The certificate: the stick's copy, verified with the station key.
        let bytes = self.stick_file(&format!("lapterop/outbox/{id}.json"))?;
        let c = cert::verify(&bytes, &self.station_pub).context("the certificate on the stick")?;
        ensure!(c.host.is_some(), "the certificate has no host section");
        // The grow is in the certificate as the filesystem's own superblock says it.
        let grow = c
            .install
            .as_ref()
            .and_then(|i| i.grow.as_ref())
            .context("the certificate's install has no grow record")?;
        ensure!(
            grow.grown
                && grow.filesystem == "ext4"
                && grow.partition == 1
                && grow.partition_bytes == part_bytes
                && grow.filesystem_bytes == installed
                && part_bytes - installed < 65_536
                && installed > 2 * self.reference_partition.len() as u64,
            "install.grow {grow:?}: the ext4 should fill the {part_bytes}-byte partition (e2fsck and dumpe2fs \
             say {installed} bytes; the image's is {} bytes)",
            self.reference_partition.len()
        );
        ensure!(
            c.disks.len() == internal.len(),
            "{} disks certified, {} internal disks attached",
            c.disks.len(),
            internal.len()
        );
        // The SD card is listed as not touched, as the donor's (external).
        if disks.iter().any(LaptopDisk::is_card) {
            ensure!(
                c.not_touched
                    .iter()
                    .any(|u| u.device == "mmcblk0" && u.reason == cert::UntouchedReason::External),
                "the SD card is not listed as not touched (external): {:?}",
                c.not_touched
            );
            ensure!(
                console.contains("LAP-P09"),
                "pre-flight did not point out the SD card (LAP-P09)"
            );
        }
        // The stick itself is seen and left alone, and says so.
        ensure!(
            c.not_touched
                .iter()
                .any(|u| u.reason == cert::UntouchedReason::BootStick),
            "the boot stick is not listed as not touched: {:?}",
            c.not_touched
        );
        if expect_uploaded {
            self.check_uploaded(&id, &bytes)?;
        }
        Ok(id)
    }

    /// Checks the installed ext4 at `[offset, offset + len)` of `disk` (a copy of it: e2fsprogs reads
    /// files, not offsets): `e2fsck -fn` finds it clean, and the reference's files read back the same
    /// through `debugfs`. Returns its size as `dumpe2fs` says (block count × block size).
    fn installed_partition(&self, disk: &Path, offset: u64, len: u64) -> anyhow::Result<u64> {
        use std::os::unix::fs::FileExt;
        let copy = self.work.join("installed-root.ext4");
        let mut bytes = vec![0u8; usize::try_from(len)?];
        fs::File::open(disk)?.read_exact_at(&mut bytes, offset)?;
        fs::write(&copy, &bytes)?;
        drop(bytes);
        run_ok(Command::new("e2fsck").args(["-f", "-n"]).arg(&copy)).context("e2fsck of the installed root")?;
        let head = run_ok(Command::new("dumpe2fs").arg("-h").arg(&copy))?;
        let field = |k: &str| -> anyhow::Result<u64> {
            head.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("dumpe2fs -h gave no {k}"))
        };
        let fs_bytes = field("Block count:")? * field("Block size:")?;
        for name in ["etc/os-release", "home/leerling/welkom.txt", "usr-share-blob.bin"] {
            let out = self.work.join("installed-file");
            let _ = fs::remove_file(&out);
            run_ok(
                Command::new("debugfs")
                    .args(["-R", &format!("dump /{name} {}", out.display())])
                    .arg(&copy),
            )?;
            ensure!(
                fs::read(&out)? == fs::read(self.work.join("os-files").join(name))?,
                "/{name} on the installed root differs from the reference"
            );
        }
        let _ = fs::remove_file(&copy);
        Ok(fs_bytes)
    }

    /// The server holds exactly this certificate, its receipt on the stick verifies with the server
    /// key, and the donor page answers with the laptop's serial.
    pub fn check_uploaded(&self, id: &str, bytes: &[u8]) -> anyhow::Result<String> {
        self.check_uploaded_from(&self.stick, id, bytes)
    }

    /// [`Scenario::check_uploaded`] with the receipt read from `stick` (a copy of the scenario's).
    pub fn check_uploaded_from(&self, stick: &Path, id: &str, bytes: &[u8]) -> anyhow::Result<String> {
        let (status, body) = self
            .server
            .get_as_station(&format!("/api/v1/certificates/{id}"), &self.station_key)?;
        ensure!(status == 200, "the server answered {status} for certificate {id}");
        let stored: serde_json::Value = serde_json::from_slice(&body)?;
        let on_server = serde_json::to_vec(&stored["certificate"])?;
        let c = cert::verify(&on_server, &self.station_pub).context("the certificate on the server")?;
        let local = cert::verify(bytes, &self.station_pub)?;
        ensure!(c == local, "the server's certificate differs from the stick's");
        let receipt_bytes = stick_file_of(stick, &format!("lapterop/outbox/{id}.receipt.json"))?;
        let server_key = cert::keys::read_public_key(&self.server.data.join("server.pub"))?;
        let receipt =
            cert::chain::verify_receipt(&receipt_bytes, &server_key).context("the receipt's server signature")?;
        let path = receipt
            .donor_url
            .strip_prefix(&self.server.url())
            .context("donor url on another host")?
            .to_owned();
        let page = String::from_utf8_lossy(&self.server.get(&path)?).into_owned();
        ensure!(
            page.contains("PF0XDEMO"),
            "the donor page does not show the laptop's serial"
        );
        Ok(receipt.donor_url)
    }

    /// Counts the server's log entries for the certificate `id` in the stick's outbox (exactly one:
    /// nothing duplicated). The public log names no ids: entries are found by the certificate's hash.
    pub fn log_count(&self, id: &str) -> anyhow::Result<usize> {
        self.log_count_from(&self.stick, id)
    }

    /// [`Scenario::log_count`] for a certificate in the outbox of `stick` (a copy of this
    /// scenario's stick).
    pub fn log_count_from(&self, stick: &Path, id: &str) -> anyhow::Result<usize> {
        let bytes = stick_file_of(stick, &format!("lapterop/outbox/{id}.json"))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        let hash = cert::document_blake3(&value)?;
        let log = String::from_utf8_lossy(&self.server.get("/api/v1/log?limit=10000")?).into_owned();
        ensure!(!log.contains(id), "the public log names certificate {id}");
        Ok(log.matches(&hash).count())
    }

    /// The host binaries used.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The static agent used.
    pub fn agent(&self) -> &Path {
        &self.agent
    }
}

/// Copies the host file `from` onto the FAT partition of the stick image `stick` (at 1 MiB) as
/// `path`, replacing what is there (mtools, as a lead would with the stick in a PC).
pub fn stick_put(stick: &Path, from: &Path, path: &str) -> anyhow::Result<()> {
    run_ok(
        Command::new("mcopy")
            .arg("-o")
            .arg("-i")
            .arg(format!("{}@@1M", stick.display()))
            .arg(from)
            .arg(format!("::{path}")),
    )
    .map(drop)
}

/// Reads a file from a stick image's FAT partition (mtools, at the partition's 1 MiB offset).
pub fn stick_file_of(stick: &Path, path: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("mtype")
        .arg("-i")
        .arg(format!("{}@@1M", stick.display()))
        .arg(format!("::{path}"))
        .output()
        .context("running mtype (Debian package mtools)")?;
    ensure!(
        out.status.success(),
        "{path} is not on the stick: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// Records the first time each milestone's console line was seen.
fn note_milestones(text: &str, now: f64, marks: &mut Vec<(String, f64)>) {
    for (mark, name) in [
        ("GNU GRUB", "grub"),
        ("Linux version", "kernel"),
        ("LAPTEROP-AGENT-READY", "agent ready"),
        ("LAPTEROP-UPLOAD-DONE", "outbox sent"),
        ("stage wipe", "wiped"),
        ("stage install", "installed"),
        ("LAPTEROP-JOB-DONE", "job done"),
    ] {
        if text.contains(mark) && !marks.iter().any(|(n, _)| n == name) {
            marks.push((name.to_owned(), now));
        }
    }
}

/// The laptop's network adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nic {
    /// None at all.
    None,
    /// An e1000e (QMP name `nic0`) on the restricted network.
    Wired,
    /// None at boot; the restricted network `net0` waits for a `device_add` (a USB adapter).
    Later,
}

/// One boot.
#[derive(Debug)]
pub struct Boot {
    /// The serial console.
    pub console: String,
    /// Why the boot was stopped (a failure string or the timeout); `None` when the guest powered off.
    pub refused: Option<String>,
    /// Seconds from QEMU start to each milestone seen.
    pub marks: Vec<(String, f64)>,
    /// Seconds from QEMU start to the end.
    pub seconds: f64,
}

impl Boot {
    /// The milestones in one line.
    pub fn timeline(&self) -> String {
        let mut parts: Vec<String> = self.marks.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
        parts.push(format!("end {:.1} s", self.seconds));
        parts.join(", ")
    }

    /// The last lines of the console, for error messages.
    pub fn tail(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The whole end-to-end run; prints per-stage timings. `port` fixes the server's port (the demo).
pub fn run(work: &Path, port: Option<u16>) -> anyhow::Result<Scenario> {
    let mut s = Scenario::prepare(work, port)?;
    let timeout = Duration::from_secs(600);

    // 1. SeaBIOS, network up: wipe, install, certificate uploaded.
    let disks = s.laptop("laptop-bios")?;
    let boot = s.boot(Firmware::Bios, &disks, true, timeout)?;
    println!("e2e: bios boot: {}", boot.timeline());
    if let Some(why) = &boot.refused {
        bail!("the BIOS boot failed ({why}):\n{}", boot.tail());
    }
    let first = s.check_job(&boot.console, &disks, true).with_context(|| boot.tail())?;
    ensure!(
        s.log_count(&first)? == 1,
        "the first certificate is not exactly once in the log"
    );
    s.stages
        .push(("boot bios (wipe, install, upload)".into(), boot.seconds));

    // 2. OVMF with Secure Boot and Microsoft keys, no network: the certificate waits in the outbox.
    let disks = s.laptop("laptop-uefi")?;
    let boot = s.boot(Firmware::UefiSecureBoot, &disks, false, timeout)?;
    println!("e2e: uefi secure boot: {}", boot.timeline());
    if let Some(why) = &boot.refused {
        bail!("the Secure Boot boot failed ({why}):\n{}", boot.tail());
    }
    ensure!(
        boot.console.contains("kernel lockdown: none [integrity]"),
        "the kernel is not in Secure Boot's lockdown mode [integrity]:\n{}",
        boot.tail()
    );
    let second = s.check_job(&boot.console, &disks, false).with_context(|| boot.tail())?;
    let (status, _) = s
        .server
        .get_as_station(&format!("/api/v1/certificates/{second}"), &s.station_key)?;
    ensure!(
        status == 404,
        "the offline certificate reached the server (answer {status})"
    );
    s.stages
        .push(("boot uefi-sb offline (wipe, install)".into(), boot.seconds));

    // 3. The stick in a laptop with network but no disk: the waiting certificate is sent first, then
    //    the job finds nothing to wipe and the laptop powers off. Nothing lost, nothing sent twice.
    let boot = s.boot(Firmware::Bios, &[], true, timeout)?;
    println!("e2e: second boot with network: {}", boot.timeline());
    if let Some(why) = &boot.refused {
        bail!("the upload boot failed ({why}):\n{}", boot.tail());
    }
    // Pre-flight stops the job with its code (the same check as on the volunteer's screen).
    ensure!(
        boot.console.contains("LAP-P08") && boot.console.contains("nothing was written"),
        "the diskless laptop did not report its missing disk:\n{}",
        boot.tail()
    );
    let bytes = s.stick_file(&format!("lapterop/outbox/{second}.json"))?;
    s.check_uploaded(&second, &bytes).with_context(|| boot.tail())?;
    for id in [&first, &second] {
        let n = s.log_count(id)?;
        ensure!(n == 1, "certificate {id} is {n} times in the server's log");
    }
    let outbox = s.outbox()?;
    ensure!(
        outbox.len() == 6,
        "the outbox should hold two certificates, two audits and two receipts: {outbox:?}"
    );
    s.stages.push(("boot bios, outbox sent".into(), boot.seconds));

    // 4. Secure Boot with keys that do not trust Microsoft's CA: the firmware refuses the shim.
    let boot = s.boot(Firmware::UefiSnakeoil, &[], false, Duration::from_secs(180))?;
    println!("e2e: untrusted keys: {}", boot.timeline());
    match boot.refused.as_deref() {
        Some("Access Denied" | "Security Violation") => {}
        other => bail!(
            "the stick booted under keys that do not trust it ({other:?}):\n{}",
            boot.tail()
        ),
    }
    s.stages
        .push(("boot uefi untrusted keys, refused".into(), boot.seconds));
    println!("e2e: stages:");
    for (name, secs) in &s.stages {
        println!("e2e:   {name:<40} {secs:>7.1} s");
    }
    Ok(s)
}

/// The demo: one donated laptop (BIOS boot, network up) wiped, reinstalled and certified from the stick;
/// prints the donor page and the review UI and keeps the server until Ctrl-C.
pub fn demo(port: u16) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("lapterop-demo-")
        .tempdir_in(vm::target_dir())?;
    println!("demo: building the agent, the server, the OS image and the live stick (a few minutes)");
    let s = Scenario::prepare(work.path(), Some(port))?;
    let disks = s.laptop("donated-laptop")?;
    for d in &disks {
        println!(
            "demo: donated disk {} ({:?}, {} MiB) holds {} copies of the donor's personal strings",
            d.file.display(),
            d.spec.bus,
            d.spec.size / MIB,
            count_personal(&d.file)?
        );
    }
    println!(
        "demo: booting the stick in QEMU (SeaBIOS, TCG); the serial console goes to {}",
        work.path().join("console-seabios.log").display()
    );
    let boot = s.boot(Firmware::Bios, &disks, true, Duration::from_secs(900))?;
    println!("demo: {}", boot.timeline());
    if let Some(why) = &boot.refused {
        bail!("the boot failed ({why}):\n{}", boot.tail());
    }
    for line in boot
        .console
        .lines()
        .filter(|l| l.starts_with("lapterop: ") || l.starts_with("LAPTEROP-"))
    {
        println!("  | {line}");
    }
    let id = s.check_job(&boot.console, &disks, true).with_context(|| boot.tail())?;
    for d in &disks {
        println!(
            "demo: after the wipe {} holds {} personal strings",
            d.file.display(),
            count_personal(&d.file)?
        );
    }
    let bytes = s.stick_file(&format!("lapterop/outbox/{id}.json"))?;
    let donor = s.check_uploaded(&id, &bytes)?;
    println!(
        "\nCertificate {id} is on the server, signed by the stick and countersigned by the server.\n\n\
         Donor page (Dutch and English, with the PDF and the files to verify offline):\n  {donor}\n\
         Review UI for workshop leads: {}/review  (user: lead, password: demo-reviewer-password)\n\n\
         The server keeps running until Ctrl-C.",
        s.server.url()
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, std::sync::Arc::clone(&stop))?;
    }
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("demo: stopping the server");
    drop(s);
    Ok(())
}
