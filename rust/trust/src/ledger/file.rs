//! The ledger's file: a magic line, then records `[len: u32 LE][check: 8 bytes][payload]`,
//! where `check` is the first 8 bytes of SHA-256 over the length and the payload. Appends are
//! fsynced. Beside it, `<ledger>.head` anchors the acknowledged length: the block count and the
//! last block's hash, rewritten in place and fsynced after each append, so a cut at a record
//! boundary is caught like a cut inside a record.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::hash::Hash32;

/// The first 16 bytes of a ledger file.
pub(crate) const MAGIC: &[u8; 16] = b"meshrl-ledger 1\n";
const HEAD_MAGIC: &[u8; 16] = b"meshrl-head 1\n\0\0";
/// The largest record accepted (a block with its proof is a few KiB).
pub(crate) const MAX_RECORD: usize = 16 << 20;
const FRAME: usize = 12;

fn check(len: u32, payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    h.update(payload);
    let d = h.finalize();
    let mut c = [0u8; 8];
    c.copy_from_slice(&d[..8]);
    c
}

/// The frame header of `payload`.
pub(crate) fn frame(payload: &[u8]) -> [u8; FRAME] {
    let len = payload.len() as u32;
    let mut f = [0u8; FRAME];
    f[..4].copy_from_slice(&len.to_le_bytes());
    f[4..].copy_from_slice(&check(len, payload));
    f
}

/// The records of a file up to the first defect.
pub(crate) struct Scan<'a> {
    /// (offset, payload) of each good record.
    pub records: Vec<(u64, &'a [u8])>,
    /// Where the good records end.
    pub good_len: u64,
    /// The first defect, if any, and whether it is the file's last record (which a killed
    /// append can leave behind).
    pub defect: Option<(String, bool)>,
}

/// Splits `bytes` (after the magic) into records, stopping at the first bad one.
pub(crate) fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut pos = MAGIC.len();
    let mut records = Vec::new();
    let mut defect = None;
    while pos < bytes.len() {
        let rest = bytes.len() - pos;
        if rest < FRAME {
            defect = Some((format!("{rest} bytes of an incomplete record header"), true));
            break;
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len > MAX_RECORD {
            defect = Some((
                format!("record length {len} at byte {pos} is implausible"),
                false,
            ));
            break;
        }
        if rest < FRAME + len {
            defect = Some((format!("incomplete record at byte {pos}"), true));
            break;
        }
        let payload = &bytes[pos + FRAME..pos + FRAME + len];
        if bytes[pos + 4..pos + FRAME] != check(len as u32, payload) {
            let last = pos + FRAME + len == bytes.len();
            defect = Some((
                format!("checksum mismatch in the record at byte {pos}"),
                last,
            ));
            break;
        }
        records.push((pos as u64, payload));
        pos += FRAME + len;
    }
    let good_len = records
        .last()
        .map_or(MAGIC.len() as u64, |(o, p)| o + (FRAME + p.len()) as u64);
    Scan {
        records,
        good_len,
        defect,
    }
}

/// The path of the head file beside `ledger`.
pub(crate) fn head_path(ledger: &Path) -> PathBuf {
    let mut s = ledger.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

/// The head anchor: how many blocks were acknowledged, and the last one's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub count: u64,
    pub hash: Hash32,
}

impl Head {
    pub fn encode(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..16].copy_from_slice(HEAD_MAGIC);
        b[16..24].copy_from_slice(&self.count.to_le_bytes());
        b[24..56].copy_from_slice(&self.hash.0);
        let c = Hash32::of(&b[..56]);
        b[56..].copy_from_slice(&c.0[..8]);
        b
    }

    /// `Ok(None)` when there is no head file; `Err` when it exists but is damaged.
    pub fn read(path: &Path) -> Result<Option<Head>, String> {
        let b = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if b.len() != 64 || &b[..16] != HEAD_MAGIC || Hash32::of(&b[..56]).0[..8] != b[56..] {
            return Err("the head file is damaged or edited".into());
        }
        Ok(Some(Head {
            count: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            hash: Hash32(b[24..56].try_into().expect("32 bytes")),
        }))
    }

    /// Overwrites the head file in place (one small write) and syncs it.
    pub fn write(&self, file: &File) -> std::io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&self.encode(), 0)?;
        }
        #[cfg(not(unix))]
        {
            use std::io::{Seek, SeekFrom};
            let mut f = file;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&self.encode())?;
        }
        file.sync_data()
    }
}

/// Writes `bytes` to `path` atomically: a temporary in the same folder, synced, renamed.
pub(crate) fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// Syncs the folder holding `path`, so a new or renamed file survives a crash.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)?.sync_all()?;
    }
    let _ = path;
    Ok(())
}
