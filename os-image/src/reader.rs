//! Opening an image: header, manifest, signature and every manifest rule are checked before an
//! [`Image`] exists; frames are then fetched one by one, decoded and hashed.

use std::io::{self, Read, Seek, SeekFrom};

use ed25519_dalek::VerifyingKey;
use lapterop_certificate::keys::{self, SignatureError};
use lapterop_certificate::model::SignatureBlock;

use crate::format::{self, Extent, ExtentKind, ExtentRef, Header, HeaderError, Manifest, ManifestError, HEADER_LEN};

/// Where image bytes come from: a file now, HTTP with range requests in the agent.
pub trait ChunkSource: Send {
    /// Fills `buf` with the bytes at `offset` of the image file.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Total length of the image file, when the source knows it.
    fn total_len(&mut self) -> io::Result<Option<u64>>;
    /// An independent handle for fetching a frame again after it failed its hash (a new HTTP
    /// request, a reopened file); `None` when the source cannot re-fetch. Used by the installer's
    /// decoder threads, a bounded number of times per chunk.
    fn refetcher(&self) -> Option<Box<dyn ChunkSource>> {
        None
    }
}

impl ChunkSource for Box<dyn ChunkSource> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
    fn total_len(&mut self) -> io::Result<Option<u64>> {
        (**self).total_len()
    }
    fn refetcher(&self) -> Option<Box<dyn ChunkSource>> {
        (**self).refetcher()
    }
}

/// A [`ChunkSource`] over anything seekable (a file, a cursor).
#[derive(Debug)]
pub struct SeekSource<R>(pub R);

impl<R: Read + Seek + Send> ChunkSource for SeekSource<R> {
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.seek(SeekFrom::Start(offset))?;
        self.0.read_exact(buf)
    }

    fn total_len(&mut self) -> io::Result<Option<u64>> {
        Ok(Some(self.0.seek(SeekFrom::End(0))?))
    }
}

/// Why an image was refused or a chunk failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The source could not be read.
    #[error("reading the image {what}: {source}")]
    Io {
        /// What was being read.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The header is wrong.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The file is shorter than its header says.
    #[error("the image file is truncated: {actual} bytes, the header announces {expected}; copy it again")]
    Truncated {
        /// Announced length.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The signature block is not JSON of the right shape.
    #[error("the image signature block is malformed: {0}")]
    SignatureBlock(String),
    /// The signature does not verify with the trusted key.
    #[error("the image manifest signature does not verify with the trusted key: {0}; refusing the image")]
    Signature(#[from] SignatureError),
    /// The manifest is not valid JSON of the manifest schema.
    #[error("the image manifest cannot be parsed: {0}")]
    ManifestJson(String),
    /// A manifest rule does not hold.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The root hash in the manifest is not the hash of the manifest.
    #[error("the image manifest root hash is {found}, its content hashes to {computed}")]
    Root {
        /// In the manifest.
        found: String,
        /// Computed.
        computed: String,
    },
    /// A frame could not be fetched.
    #[error("fetching {extent}: {source}")]
    Fetch {
        /// The extent.
        extent: ExtentRef,
        /// The cause.
        source: io::Error,
    },
    /// A frame does not decode to the extent's length.
    #[error("decoding {extent}: {reason}; the image is damaged")]
    Decode {
        /// The extent.
        extent: ExtentRef,
        /// What went wrong.
        reason: String,
    },
    /// A frame decodes but its blake3 differs.
    #[error("{extent} does not match its blake3 (expected {expected}, got {actual}); the image is damaged")]
    Hash {
        /// The extent.
        extent: ExtentRef,
        /// From the manifest.
        expected: String,
        /// Computed.
        actual: String,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ReadError {
    move |source| ReadError::Io { what, source }
}

/// A verified image: its signature and manifest checked, frames not yet read.
#[derive(Debug)]
pub struct Image<S> {
    source: S,
    header: Header,
    manifest: Manifest,
    signer_key_id: String,
}

/// Parses and checks everything before the frames. `file_len` is the source's length if known.
pub fn open_bytes(
    head: &[u8],
    trusted: &VerifyingKey,
    file_len: Option<u64>,
) -> Result<(Header, Manifest, String), ReadError> {
    let header = Header::decode(head)?;
    if let Some(actual) = file_len {
        if actual < header.file_len() {
            return Err(ReadError::Truncated {
                expected: header.file_len(),
                actual,
            });
        }
    }
    let m_end = HEADER_LEN as u64 + header.manifest_len;
    let to = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let (Some(manifest_bytes), Some(sig_bytes)) = (
        head.get(HEADER_LEN..to(m_end)),
        head.get(to(m_end)..to(header.data_offset())),
    ) else {
        return Err(ReadError::Truncated {
            expected: header.file_len(),
            actual: head.len() as u64,
        });
    };
    let block: SignatureBlock =
        serde_json::from_slice(sig_bytes).map_err(|e| ReadError::SignatureBlock(e.to_string()))?;
    let mut signed = format::SIGNING_PREFIX.to_vec();
    signed.extend_from_slice(manifest_bytes);
    keys::verify_bytes(trusted, &signed, &block)?;
    let value: serde_json::Value =
        serde_json::from_slice(manifest_bytes).map_err(|e| ReadError::ManifestJson(e.to_string()))?;
    let computed = format::root_hash(&value)?;
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| ReadError::ManifestJson(e.to_string()))?;
    if manifest.root != computed {
        return Err(ReadError::Root {
            found: manifest.root,
            computed,
        });
    }
    manifest.check_version(header.data_len, header.version)?;
    Ok((header, manifest, block.key_id))
}

impl<S: ChunkSource> Image<S> {
    /// Reads the header, manifest and signature from `source` and checks them all against `trusted`.
    pub fn open(mut source: S, trusted: &VerifyingKey) -> Result<Image<S>, ReadError> {
        let file_len = source.total_len().map_err(io_err("length"))?;
        let mut head = vec![0u8; HEADER_LEN];
        if file_len.is_some_and(|l| l < HEADER_LEN as u64) {
            return Err(HeaderError::Short.into());
        }
        source.read_exact_at(0, &mut head).map_err(io_err("header"))?;
        let header = Header::decode(&head)?;
        if let Some(actual) = file_len {
            if actual < header.data_offset() {
                return Err(ReadError::Truncated {
                    expected: header.file_len(),
                    actual,
                });
            }
        }
        head.resize(usize::try_from(header.data_offset()).unwrap_or(usize::MAX), 0);
        source
            .read_exact_at(HEADER_LEN as u64, &mut head[HEADER_LEN..])
            .map_err(io_err("manifest"))?;
        let (header, manifest, signer_key_id) = open_bytes(&head, trusted, file_len)?;
        Ok(Image {
            source,
            header,
            manifest,
            signer_key_id,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Key id of the key that signed the manifest.
    pub fn signer_key_id(&self) -> &str {
        &self.signer_key_id
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Fetches the compressed frame of a data extent.
    pub fn fetch_frame(&mut self, extent: &ExtentRef, e: &Extent) -> Result<Vec<u8>, ReadError> {
        let (Some(off), Some(len)) = (e.frame_offset, e.frame_length) else {
            return Err(ReadError::Decode {
                extent: extent.clone(),
                reason: "not a data extent".into(),
            });
        };
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.source
            .read_exact_at(self.header.data_offset() + off, &mut buf)
            .map_err(|source| ReadError::Fetch {
                extent: extent.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// Fetches, decodes and hash-checks one data extent.
    pub fn read_extent(&mut self, extent: &ExtentRef, e: &Extent) -> Result<Vec<u8>, ReadError> {
        let frame = self.fetch_frame(extent, e)?;
        decode_frame(extent, e, &frame)
    }

    /// Decodes and hash-checks every frame; returns the number of frames and uncompressed bytes.
    pub fn verify(&mut self) -> Result<VerifySummary, ReadError> {
        let extents: Vec<(ExtentRef, Extent)> = self.manifest.data_extents().map(|(r, e)| (r, e.clone())).collect();
        let mut summary = VerifySummary::default();
        for (r, e) in &extents {
            let bytes = self.read_extent(r, e)?;
            summary.frames += 1;
            summary.bytes += bytes.len() as u64;
        }
        Ok(summary)
    }

    /// An independent handle on the source for re-fetching frames, if it offers one.
    pub fn refetcher(&self) -> Option<Box<dyn ChunkSource>> {
        self.source.refetcher()
    }

    /// Gives the source back.
    pub fn into_source(self) -> S {
        self.source
    }
}

/// Result of [`Image::verify`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifySummary {
    /// Frames decoded and hashed.
    pub frames: u64,
    /// Uncompressed bytes.
    pub bytes: u64,
}

/// Decodes one frame and checks its length and blake3 against the extent.
pub fn decode_frame(extent: &ExtentRef, e: &Extent, frame: &[u8]) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    let mut decoder = Decoder::new().map_err(|err| ReadError::Decode {
        extent: extent.clone(),
        reason: err.to_string(),
    })?;
    decoder.decode(extent, e, frame, &mut out)?;
    Ok(out)
}

/// A reusable zstd decoder (one per thread), so chunks are decoded without fresh allocations.
pub struct Decoder(zstd::bulk::Decompressor<'static>);

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Decoder {
    /// A new decoder context.
    pub fn new() -> io::Result<Decoder> {
        zstd::bulk::Decompressor::new().map(Decoder)
    }

    /// Decodes `frame` into `out` (replacing its contents) and checks length and blake3.
    pub fn decode(&mut self, extent: &ExtentRef, e: &Extent, frame: &[u8], out: &mut Vec<u8>) -> Result<(), ReadError> {
        let cap = usize::try_from(e.length).unwrap_or(usize::MAX);
        out.clear();
        out.reserve(cap);
        let n = self
            .0
            .decompress_to_buffer(frame, out)
            .map_err(|err| ReadError::Decode {
                extent: extent.clone(),
                reason: err.to_string(),
            })?;
        if n != cap || out.len() != cap {
            return Err(ReadError::Decode {
                extent: extent.clone(),
                reason: format!("{n} bytes decoded, {cap} expected"),
            });
        }
        let actual = blake3::hash(out);
        let expected = e.blake3.as_deref().unwrap_or_default();
        if actual.to_hex().as_str() != expected {
            return Err(ReadError::Hash {
                extent: extent.clone(),
                expected: expected.to_owned(),
                actual: actual.to_hex().to_string(),
            });
        }
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    // Display only; precision loss above 2^53 bytes is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let v = bytes as f64 / 1_048_576.0;
    format!("{v:.1} MiB")
}

/// A human summary of a verified manifest.
pub fn inspect(manifest: &Manifest, signer_key_id: &str) -> String {
    let i = &manifest.image;
    let mut out = format!(
        "image      {} {}\nroot hash  {}\nsigned by  {}\ncreated    {} by {}\narch       {}\nmin target {} ({} bytes)\n",
        i.name,
        i.version,
        manifest.root,
        signer_key_id,
        i.created,
        i.builder,
        i.arch,
        mib(i.min_disk_bytes),
        i.min_disk_bytes
    );
    out.push_str(&format!(
        "content    data {}, zero {}, skip {}\n",
        mib(manifest.bytes_of(ExtentKind::Data)),
        mib(manifest.bytes_of(ExtentKind::Zero)),
        mib(manifest.bytes_of(ExtentKind::Skip))
    ));
    for (n, p) in manifest.partitions.iter().enumerate() {
        let count = |k: ExtentKind| p.extents.iter().filter(|e| e.kind == k).count();
        out.push_str(&format!(
            "partition {} {:?} {:?}{} {}{}{} type {} sectors {:?}: {} data, {} zero, {} skip extents\n",
            n + 1,
            p.label,
            p.filesystem,
            p.fs_block_size.map_or(String::new(), |b| format!(" ({b}-byte blocks)")),
            mib(p.size_bytes),
            match p.fs_bytes {
                Some(f) if f < p.size_bytes => format!(", {} past the filesystem", mib(p.size_bytes - f)),
                _ => String::new(),
            },
            if p.grow { " (grows, filesystem too)" } else { "" },
            p.type_guid,
            p.sector_sizes,
            count(ExtentKind::Data),
            count(ExtentKind::Zero),
            count(ExtentKind::Skip)
        ));
    }
    out
}
