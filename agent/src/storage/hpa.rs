//! Wiping an ATA Host Protected Area: a volatile SET MAX ADDRESS EXT to the native maximum, READ and
//! WRITE DMA EXT through ATA pass-through for the sectors the kernel does not know about, and a
//! volatile SET MAX back to the old size afterwards.
//!
//! The kernel keeps the capacity it read at boot (libata answers READ CAPACITY from its own copy of
//! IDENTIFY), so the exposed sectors are reached with commands, not through the block device; nothing
//! is rescanned and the device node stays the same. Both SET MAX commands are volatile: a power cycle
//! brings the HPA back whatever happens, so a crash in between cannot change the drive for good.
//!
//! Refused, with the reason in the certificate (the HPA is then left in place and the disk is at best
//! `erased-with-exceptions`): drives with Accessible Max Address Configuration (changing it is
//! permanent), drives whose logical sector is not 512 bytes, and paths where a pass-through read of
//! the last visible sectors does not return what the block device returns (a bridge that garbles
//! addresses must not be trusted with writes past the end).

use lapterop_certificate::{self as cert, Capability, FirmwareEvidence, Step, StepKind, StepOutcome};

use crate::command::ata::{self, Identify};
use crate::command::AtaOutcome;
use crate::firmware::AtaDrive;

/// Sectors past the kernel's capacity that can be opened for the wipe and closed again.
pub trait HiddenTail: Send {
    /// Opens the area. The step is `completed` only when the drive now answers up to
    /// [`HiddenTail::native_bytes`]; otherwise it says why, and nothing else is done to the area.
    fn expose(&mut self) -> Step;
    /// Where the tail begins: the capacity the kernel sees, in bytes.
    fn visible_bytes(&self) -> u64;
    /// Where it ends: the native capacity, in bytes.
    fn native_bytes(&self) -> u64;
    /// Writes all of `buf` at `offset` bytes from the start of the disk (`offset >= visible_bytes`).
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), u32>;
    /// Fills all of `buf` from `offset` bytes from the start of the disk.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), u32>;
    /// Makes written data durable (the drive's write cache to its media).
    fn flush(&mut self) -> Result<(), u32>;
    /// Puts the old visible size back. Called after every expose that completed, whatever happened
    /// in between (errors, interruption).
    fn restore(&mut self) -> Step;
}

/// errno for a command that failed on the drive.
const EIO: u32 = 5;
/// Sectors compared through both paths before anything is written past the end.
pub const CHECK_SECTORS: u16 = 8;

/// Whether READ DMA EXT through pass-through returns `last_visible`, what the block device returned
/// for the last [`CHECK_SECTORS`] of the `visible` sectors. A path that garbles addresses (some
/// bridges) must not be trusted with writes past the visible end.
pub fn check_path(drive: &mut dyn AtaDrive, visible: u64, last_visible: &[u8]) -> Result<(), String> {
    if visible < u64::from(CHECK_SECTORS) || last_visible.len() != usize::from(CHECK_SECTORS) * 512 {
        return Err("the disk is too small to check the pass-through path".into());
    }
    let mut check = vec![0u8; last_visible.len()];
    let lba = visible - u64::from(CHECK_SECTORS);
    match drive.run(&ata::read_dma_ext(lba, CHECK_SECTORS), &mut check) {
        Ok(AtaOutcome::Ok(_)) if check == last_visible => Ok(()),
        Ok(AtaOutcome::Ok(_)) => Err(format!(
            "READ DMA EXT of sectors {lba}-{} through pass-through returned other bytes than the block \
             device: this path cannot be trusted with writes past the visible end",
            visible - 1
        )),
        other => Err(format!("READ DMA EXT through pass-through: {}", describe(&other))),
    }
}

/// The HPA of one ATA drive, ready to be opened for the wipe.
#[derive(Debug)]
pub struct AtaTail<D> {
    drive: D,
    id: Identify,
    visible: u64,
    native: u64,
    chunk: u16,
}

impl<D: AtaDrive + Send> AtaTail<D> {
    /// Prepares the HPA of `drive` (`visible` and `native` sectors from IDENTIFY and READ NATIVE MAX).
    /// `last_visible` is what the block device returned for the last [`CHECK_SECTORS`] visible sectors;
    /// the same sectors read through pass-through must be identical. `chunk` limits one command's
    /// transfer (the queue's `max_hw_sectors_kb`). Returns the reason when the area cannot be opened.
    pub fn prepare(
        mut drive: D,
        id: Identify,
        native: u64,
        last_visible: &[u8],
        chunk_sectors: u16,
    ) -> Result<Self, String> {
        let visible = id.user_sectors;
        if id.amac_supported {
            return Err(
                "the drive uses Accessible Max Address Configuration: exposing the area would change \
                        the drive for good, so it was left in place"
                    .into(),
            );
        }
        if id.logical_sector_size != 512 {
            return Err(format!(
                "the drive's logical sector is {} bytes; hidden areas are only opened on 512-byte drives",
                id.logical_sector_size
            ));
        }
        if native <= visible {
            return Err("no hidden sectors".into());
        }
        check_path(&mut drive, visible, last_visible)?;
        Ok(Self {
            drive,
            id,
            visible,
            native,
            chunk: chunk_sectors.clamp(1, ata::MAX_DMA_SECTORS),
        })
    }

    /// Sets the maximum to `sectors` (volatile) and checks IDENTIFY reports exactly that.
    fn set_max_checked(&mut self, sectors: u64) -> Result<(), String> {
        crate::drive::set_max_volatile(&mut self.drive, &self.id, sectors)?;
        let mut data = [0u8; 512];
        match self.drive.run(&ata::identify(), &mut data) {
            Ok(AtaOutcome::Ok(_)) => {}
            other => return Err(format!("IDENTIFY DEVICE after SET MAX: {}", describe(&other))),
        }
        let now = ata::parse_identify(&data).user_sectors;
        if now == sectors {
            Ok(())
        } else {
            Err(format!(
                "the drive accepted SET MAX ADDRESS EXT to {sectors} sectors but reports {now}"
            ))
        }
    }

    fn step(&self, kind: StepKind, started: String, result: Result<(), String>, sectors: u64) -> Step {
        let failed = result.is_err();
        Step {
            kind,
            capability: Capability::Supported,
            outcome: if failed {
                StepOutcome::Failed
            } else {
                StepOutcome::Completed
            },
            reason: result.err(),
            started_at: Some(started),
            finished_at: Some(cert::now_utc()),
            pass: None,
            pattern: None,
            bytes: (self.native - self.visible) * 512,
            error_ranges: Vec::new(),
            firmware: Some(FirmwareEvidence {
                command: format!(
                    "ata 37h SET MAX ADDRESS EXT (volatile) max_lba={}; {}",
                    sectors - 1,
                    ata::set_max_address_ext(sectors - 1, true).cdb_hex()
                ),
                status: if failed { "failed" } else { "ok" }.into(),
                polls: 0,
                final_state: Some(format!("visible sectors {sectors}")),
            }),
        }
    }

    /// Runs `make(lba, sectors)` over the byte range `offset..offset+len`, one chunk per command.
    fn transfer(
        &mut self,
        offset: u64,
        len: usize,
        mut each: impl FnMut(&mut D, u64, u16, std::ops::Range<usize>) -> Result<(), u32>,
    ) -> Result<(), u32> {
        const EINVAL: u32 = 22;
        if offset % 512 != 0 || len % 512 != 0 || offset < self.visible * 512 {
            return Err(EINVAL);
        }
        let first = offset / 512;
        let sectors = (len / 512) as u64;
        if first + sectors > self.native {
            return Err(EINVAL);
        }
        let mut done = 0u64;
        while done < sectors {
            let n = u16::try_from((sectors - done).min(u64::from(self.chunk))).unwrap_or(self.chunk);
            let start = usize::try_from(done * 512).map_err(|_| EINVAL)?;
            each(&mut self.drive, first + done, n, start..start + usize::from(n) * 512)?;
            done += u64::from(n);
        }
        Ok(())
    }
}

fn describe(r: &std::io::Result<AtaOutcome>) -> String {
    match r {
        Ok(o) => format!("{o:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok_or_eio(r: std::io::Result<AtaOutcome>) -> Result<(), u32> {
    match r {
        Ok(AtaOutcome::Ok(_)) => Ok(()),
        Ok(_) => Err(EIO),
        Err(e) => Err(crate::sys::io_errno(&e)),
    }
}

impl<D: AtaDrive + Send> HiddenTail for AtaTail<D> {
    fn expose(&mut self) -> Step {
        let started = cert::now_utc();
        let r = self.set_max_checked(self.native);
        if r.is_err() {
            // The drive may have taken the new maximum before IDENTIFY disagreed: put the old one back.
            let _ = crate::drive::set_max_volatile(&mut self.drive, &self.id, self.visible);
        }
        self.step(StepKind::HpaExpose, started, r, self.native)
    }
    fn visible_bytes(&self) -> u64 {
        self.visible * 512
    }
    fn native_bytes(&self) -> u64 {
        self.native * 512
    }
    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<(), u32> {
        self.transfer(offset, buf.len(), |d, lba, n, range| {
            let mut chunk = buf[range].to_vec();
            ok_or_eio(d.run(&ata::write_dma_ext(lba, n), &mut chunk))
        })
    }
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
        self.transfer(offset, buf.len(), |d, lba, n, range| {
            ok_or_eio(d.run(&ata::read_dma_ext(lba, n), &mut buf[range]))
        })
    }
    fn flush(&mut self) -> Result<(), u32> {
        ok_or_eio(self.drive.run(&ata::flush_cache_ext(), &mut []))
    }
    fn restore(&mut self) -> Step {
        let started = cert::now_utc();
        let visible = self.visible;
        let r = self.set_max_checked(visible).map_err(|e| {
            format!("{e}; the setting is volatile, so the drive shows its old size again once it is powered off")
        });
        self.step(StepKind::HpaRestore, started, r, visible)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::command::ata::Returned;
    use crate::wipe::engine::BlockDevice;

    /// A 512-byte-sector ATA drive held in memory, with a real maximum address: sectors past the
    /// current maximum answer ID NOT FOUND, SET MAX must follow READ NATIVE MAX (ACS-3) and must be
    /// volatile (a test fails on any permanent change).
    #[derive(Debug)]
    pub(crate) struct MemDrive {
        pub media: Arc<Mutex<Vec<u8>>>,
        pub native: u64,
        pub max: Arc<Mutex<u64>>,
        pub amac: bool,
        pub refuse_set_max: bool,
        pub refuse_shrink: bool,
        pub bad_read: BTreeSet<u64>,
        pub sent: Arc<Mutex<Vec<&'static str>>>,
    }

    impl MemDrive {
        /// `native` sectors, of which `visible` are visible; every byte 0xA5 (the donor's data).
        pub(crate) fn new(visible: u64, native: u64) -> Self {
            Self {
                media: Arc::new(Mutex::new(vec![0xA5; usize::try_from(native * 512).unwrap()])),
                native,
                max: Arc::new(Mutex::new(visible)),
                amac: false,
                refuse_set_max: false,
                refuse_shrink: false,
                bad_read: BTreeSet::new(),
                sent: Arc::default(),
            }
        }

        pub(crate) fn identify(&self) -> Identify {
            ata::parse_identify(&self.identify_block())
        }

        fn identify_block(&self) -> [u8; 512] {
            let mut d = [0u8; 512];
            let mut put = |n: usize, v: u16| d[2 * n..2 * n + 2].copy_from_slice(&v.to_le_bytes());
            put(82, 1 << 10);
            put(83, 1 << 10);
            put(86, 1 << 10);
            let max = *self.max.lock().unwrap();
            for i in 0..4 {
                put(100 + i, u16::try_from((max >> (16 * i)) & 0xffff).unwrap());
            }
            put(119, u16::from(self.amac) << 8);
            d
        }

        /// The kernel's view: the first `visible` sectors as a block device.
        pub(crate) fn head(&self, visible: u64) -> MemHead {
            MemHead {
                media: Arc::clone(&self.media),
                len: visible * 512,
            }
        }

        /// The last 8 visible sectors as the block device returns them.
        pub(crate) fn last_visible(&self, visible: u64) -> Vec<u8> {
            let m = self.media.lock().unwrap();
            let end = usize::try_from(visible * 512).unwrap();
            m[end - 4096..end].to_vec()
        }
    }

    fn lba_of(cdb: &[u8; 16]) -> u64 {
        [cdb[8], cdb[10], cdb[12], cdb[7], cdb[9], cdb[11]]
            .iter()
            .enumerate()
            .fold(0, |acc, (i, b)| acc | u64::from(*b) << (8 * i))
    }

    fn error(error: u8) -> AtaOutcome {
        let r = Returned {
            error,
            status: 0x51,
            ..Default::default()
        };
        if error == 0x04 {
            AtaOutcome::Aborted(r)
        } else {
            AtaOutcome::Failed(r)
        }
    }

    impl AtaDrive for MemDrive {
        fn run(&mut self, cmd: &ata::AtaCommand, data: &mut [u8]) -> std::io::Result<AtaOutcome> {
            let previous = self.sent.lock().unwrap().last().copied();
            self.sent.lock().unwrap().push(cmd.name);
            let ok = |lba| {
                Ok(AtaOutcome::Ok(Some(Returned {
                    status: 0x50,
                    lba,
                    ..Default::default()
                })))
            };
            let lba = lba_of(&cmd.cdb);
            let count = u64::from(u16::from_be_bytes([cmd.cdb[5], cmd.cdb[6]]));
            let max = *self.max.lock().unwrap();
            match cmd.cdb[14] {
                0xec => {
                    data.copy_from_slice(&self.identify_block());
                    Ok(AtaOutcome::Ok(None))
                }
                0x27 => ok(self.native - 1),
                0x37 => {
                    assert_eq!(cmd.cdb[6] & 1, 0, "SET MAX must be volatile");
                    let want = lba + 1;
                    if previous != Some("READ NATIVE MAX ADDRESS EXT")
                        || self.refuse_set_max
                        || want > self.native
                        || (self.refuse_shrink && want < max)
                    {
                        return Ok(error(0x04));
                    }
                    *self.max.lock().unwrap() = want;
                    ok(lba)
                }
                0x25 | 0x35 => {
                    assert_eq!(data.len() as u64, count * 512, "{}: buffer and COUNT agree", cmd.name);
                    if count == 0 || lba + count > max {
                        return Ok(error(0x10)); // IDNF: past the maximum address
                    }
                    let at = usize::try_from(lba * 512).unwrap();
                    let mut m = self.media.lock().unwrap();
                    if cmd.cdb[14] == 0x35 {
                        m[at..at + data.len()].copy_from_slice(data);
                    } else if self.bad_read.range(lba..lba + count).next().is_some() {
                        return Ok(error(0x40)); // UNC
                    } else {
                        data.copy_from_slice(&m[at..at + data.len()]);
                    }
                    Ok(AtaOutcome::Ok(None))
                }
                0xea => Ok(AtaOutcome::Ok(None)),
                _ => Ok(error(0x04)),
            }
        }
    }

    /// The visible sectors of a [`MemDrive`] as the kernel's block device.
    #[derive(Debug)]
    pub(crate) struct MemHead {
        media: Arc<Mutex<Vec<u8>>>,
        len: u64,
    }

    impl BlockDevice for MemHead {
        fn capacity(&self) -> u64 {
            self.len
        }
        fn sector_size(&self) -> u32 {
            512
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32> {
            assert!(
                offset + buf.len() as u64 <= self.len,
                "the kernel never writes past its capacity"
            );
            let at = usize::try_from(offset).unwrap();
            self.media.lock().unwrap()[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
            assert!(offset + buf.len() as u64 <= self.len);
            let at = usize::try_from(offset).unwrap();
            buf.copy_from_slice(&self.media.lock().unwrap()[at..at + buf.len()]);
            Ok(())
        }
        fn sync(&self) -> Result<(), u32> {
            Ok(())
        }
    }

    /// A drive with 2048 visible and 2560 native sectors, prepared for the wipe.
    pub(crate) fn tail_of(d: MemDrive, visible: u64) -> Result<AtaTail<MemDrive>, String> {
        let id = d.identify();
        let last = d.last_visible(visible);
        let native = d.native;
        AtaTail::prepare(d, id, native, &last, 128)
    }

    #[test]
    fn expose_and_restore_set_max_volatile_and_check_identify() {
        let d = MemDrive::new(2048, 2560);
        let (max, sent) = (Arc::clone(&d.max), Arc::clone(&d.sent));
        let mut t = tail_of(d, 2048).unwrap();
        assert_eq!(*sent.lock().unwrap(), ["READ DMA EXT"], "only a read before the expose");
        let s = t.expose();
        assert_eq!(
            (s.kind, s.outcome),
            (StepKind::HpaExpose, StepOutcome::Completed),
            "{s:?}"
        );
        assert_eq!(s.bytes, 512 * 512);
        assert!(s.firmware.as_ref().unwrap().command.contains("max_lba=2559"));
        assert_eq!(*max.lock().unwrap(), 2560);
        // Chunks of 128 sectors, across the whole tail, then read back.
        let buf = vec![7u8; 512 * 300];
        t.write_at(&buf, 2100 * 512).unwrap();
        let mut back = vec![0u8; 512 * 300];
        t.read_at(&mut back, 2100 * 512).unwrap();
        assert_eq!(back, buf);
        assert_eq!(
            t.read_at(&mut back, 2000 * 512),
            Err(22),
            "the tail starts at the visible end"
        );
        assert_eq!(t.read_at(&mut back, 2400 * 512), Err(22), "and ends at the native end");
        let s = t.restore();
        assert_eq!(
            (s.kind, s.outcome),
            (StepKind::HpaRestore, StepOutcome::Completed),
            "{s:?}"
        );
        assert_eq!(*max.lock().unwrap(), 2048);
        let sent = sent.lock().unwrap();
        let set_max: Vec<_> = sent
            .iter()
            .enumerate()
            .filter(|(_, n)| **n == "SET MAX ADDRESS EXT")
            .collect();
        assert_eq!(set_max.len(), 2);
        for (i, _) in set_max {
            assert_eq!(sent[i - 1], "READ NATIVE MAX ADDRESS EXT");
            assert_eq!(sent[i + 1], "IDENTIFY DEVICE", "every SET MAX is checked");
        }
    }

    #[test]
    fn drives_that_cannot_be_opened_safely_are_refused_before_any_change() {
        let mut d = MemDrive::new(2048, 2560);
        d.amac = true;
        let err = tail_of(d, 2048).unwrap_err();
        assert!(err.contains("Accessible Max Address"), "{err}");

        // A bridge whose pass-through reads land elsewhere than the block device's.
        let d = MemDrive::new(2048, 2560);
        d.media.lock().unwrap()[2040 * 512] = 0;
        let id = d.identify();
        let mut last = d.last_visible(2048);
        last[0] = 0xA5;
        let sent = Arc::clone(&d.sent);
        let err = AtaTail::prepare(d, id, 2560, &last, 128).unwrap_err();
        assert!(err.contains("cannot be trusted"), "{err}");
        assert!(!sent.lock().unwrap().contains(&"SET MAX ADDRESS EXT"));

        let mut d = MemDrive::new(2048, 2560);
        d.bad_read.insert(2047);
        let err = tail_of(d, 2048).unwrap_err();
        assert!(err.contains("READ DMA EXT"), "{err}");
    }

    #[test]
    fn a_refused_set_max_fails_the_expose_and_changes_nothing() {
        let mut d = MemDrive::new(2048, 2560);
        d.refuse_set_max = true;
        let max = Arc::clone(&d.max);
        let mut t = tail_of(d, 2048).unwrap();
        let s = t.expose();
        assert_eq!(s.outcome, StepOutcome::Failed);
        assert!(s.reason.as_deref().unwrap().contains("SET MAX ADDRESS EXT"), "{s:?}");
        assert_eq!(*max.lock().unwrap(), 2048);
    }
}
