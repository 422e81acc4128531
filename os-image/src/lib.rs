//! The Lapterop standard OS image, in one place for both sides: the image builder packs images
//! with it and the agent installs them with it.
//!
//! - [`format`]: the container (header, signed manifest, zstd frames) and every manifest rule;
//!   `docs/os-image-format.md` is its specification.
//! - [`reader`]: opening an image checks header, signature and manifest before anything is usable;
//!   frames come through the small [`reader::ChunkSource`] trait (a file here, HTTP in the agent).
//! - [`alloc`]: free blocks from ext4 block bitmaps, the FAT32 FAT and NTFS's `$Bitmap`;
//!   conservative on any doubt.
//! - [`fatdirs`]: `.` and `..` put back where the FAT specification wants them after `fatfs` made a
//!   directory (image builder and agent both write FAT with `fatfs`).
//! - [`resize`]: the last filesystem shrunk on a copy at pack time, grown after install.
//! - [`pack`]: a captured GPT disk image to a signed image file.
//! - [`install`]: a verified image onto a [`install::Target`] (a file here, an `O_DIRECT` block
//!   device in the agent), partition table last, read-back on by default.

pub mod alloc;
pub mod fatdirs;
pub mod format;
pub mod install;
pub mod pack;
pub mod reader;
pub mod resize;

pub use format::{Extent, ExtentKind, ExtentRef, Manifest};
pub use install::{install, FileTarget, InstallError, InstallOptions, InstallReport, Progress, Target};
pub use pack::{pack, pack_file, pack_stream, PackError, PackOptions, PackProgress, PackSummary};
pub use reader::{inspect, ChunkSource, Image, ReadError, SeekSource};
