//! A disk's hidden tail during the wipe: the sectors between the capacity the kernel sees and the
//! drive's native capacity (an ATA Host Protected Area), opened for the wipe by the firmware layer
//! and reached through commands rather than the block device.
//!
//! [`WithTail`] joins the block device and the tail into one [`BlockDevice`] of the native capacity,
//! so the overwrite, the read-back, the sample plan and the error ranges cover the hidden sectors
//! exactly as they cover the rest.

use std::sync::Mutex;

use lapterop_certificate::Step;

use super::engine::BlockDevice;
pub use crate::hpa::HiddenTail;

/// The block device followed by its opened tail, as one device of the native capacity.
pub struct WithTail<'a> {
    head: &'a dyn BlockDevice,
    visible: u64,
    total: u64,
    tail: Mutex<Box<dyn HiddenTail>>,
}

impl std::fmt::Debug for WithTail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithTail")
            .field("visible", &self.visible)
            .field("total", &self.total)
            .finish()
    }
}

impl<'a> WithTail<'a> {
    /// Joins `head` (whose capacity must be where the tail begins) and an exposed `tail`.
    pub fn new(head: &'a dyn BlockDevice, tail: Box<dyn HiddenTail>) -> Self {
        Self {
            head,
            visible: tail.visible_bytes(),
            total: tail.native_bytes(),
            tail: Mutex::new(tail),
        }
    }

    /// Closes the tail again ([`HiddenTail::restore`]).
    pub fn restore(&self) -> Step {
        self.with_tail(|t| t.restore())
    }

    fn with_tail<T>(&self, f: impl FnOnce(&mut dyn HiddenTail) -> T) -> T {
        let mut t = self.tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(t.as_mut())
    }

    /// How many of `len` bytes at `offset` lie on the block device.
    fn head_part(&self, offset: u64, len: usize) -> usize {
        usize::try_from(self.visible.saturating_sub(offset)).map_or(len, |n| n.min(len))
    }
}

impl BlockDevice for WithTail<'_> {
    fn capacity(&self) -> u64 {
        self.total
    }
    fn sector_size(&self) -> u32 {
        self.head.sector_size()
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), u32> {
        let n = self.head_part(offset, buf.len());
        if n > 0 {
            self.head.write_at(&buf[..n], offset)?;
        }
        if n < buf.len() {
            self.with_tail(|t| t.write_at(&buf[n..], offset + n as u64))?;
        }
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), u32> {
        let n = self.head_part(offset, buf.len());
        if n > 0 {
            self.head.read_at(&mut buf[..n], offset)?;
        }
        if n < buf.len() {
            self.with_tail(|t| t.read_at(&mut buf[n..], offset + n as u64))?;
        }
        Ok(())
    }
    fn sync(&self) -> Result<(), u32> {
        self.head.sync()?;
        self.with_tail(|t| t.flush())
    }
}
