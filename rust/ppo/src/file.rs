//! The frame of every file the trainer writes (weights, checkpoints): a magic line naming the
//! format and its version, a JSON header line, a checksum line, then a binary payload. The
//! checksum (FNV-1a 64) covers the magic, the header and the payload, so an edited header is
//! caught like a flipped payload byte. Writes are atomic: a temporary file in the same folder,
//! synced, then renamed; temporaries a killed writer left behind are removed by the next write.

use std::io::Write;
use std::path::Path;

use meshrl_format::{fnv1a64, FNV_OFFSET};
use serde::{de::DeserializeOwned, Serialize};

use crate::PpoError;

fn checksum(magic: &str, json: &[u8], payload: &[u8]) -> u64 {
    let h = fnv1a64(FNV_OFFSET, magic.as_bytes());
    let h = fnv1a64(h, b"\n");
    let h = fnv1a64(h, json);
    let h = fnv1a64(h, b"\n");
    fnv1a64(h, payload)
}

/// Writes `header` and `payload` under `magic` to `path` atomically.
pub fn write_framed<H: Serialize>(
    path: &Path,
    magic: &str,
    header: &H,
    payload: &[u8],
) -> Result<(), PpoError> {
    let json = serde_json::to_vec(header).map_err(|e| PpoError::input("header", e.to_string()))?;
    let sum = checksum(magic, &json, payload);
    let mut bytes = Vec::with_capacity(json.len() + payload.len() + 64);
    bytes.extend_from_slice(magic.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(format!("\nfnv1a64:{sum:016x}\n").as_bytes());
    bytes.extend_from_slice(payload);
    atomic_write(path, &bytes).map_err(|e| PpoError::io(path, e))
}

/// Reads a file written by [`write_framed`] with the same `magic` (`what` names the kind of file in
/// errors); every defect is a [`PpoError::Corrupt`] naming it.
pub fn read_framed<H: DeserializeOwned>(
    path: &Path,
    magic: &str,
    what: &str,
) -> Result<(H, Vec<u8>), PpoError> {
    let bytes = std::fs::read(path).map_err(|e| PpoError::io(path, e))?;
    let bad = |why: String| PpoError::corrupt(path, why);
    let mut parts = bytes.splitn(4, |&b| b == b'\n');
    let first = parts.next().unwrap_or_default();
    if first != magic.as_bytes() {
        let family = magic.rsplit_once(' ').map_or(magic, |(f, _)| f);
        return Err(bad(if first.starts_with(family.as_bytes()) {
            format!(
                "`{}` is another version of the format; this meshrl reads `{magic}` (save it again \
                 with the meshrl that wrote it, or retrain)",
                String::from_utf8_lossy(first)
            )
        } else {
            format!("not a meshrl {what} (bad magic line)")
        }));
    }
    let json = parts.next().ok_or_else(|| bad("truncated: no header".into()))?;
    let sum_line = parts.next().ok_or_else(|| bad("truncated: no checksum".into()))?;
    let payload = parts.next().ok_or_else(|| bad("truncated: no payload".into()))?;
    let expected = std::str::from_utf8(sum_line)
        .ok()
        .and_then(|s| s.strip_prefix("fnv1a64:"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| bad("bad checksum line".into()))?;
    if checksum(magic, json, payload) != expected {
        return Err(bad(
            "checksum mismatch: the header or the payload was changed or damaged".into(),
        ));
    }
    let header = serde_json::from_slice(json).map_err(|e| bad(format!("bad header: {e}")))?;
    Ok((header, payload.to_vec()))
}

/// Little-endian `f32`s as bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Bytes as little-endian `f32`s (the length must be a multiple of 4).
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, synced, then
/// renamed over `path`. A crash never leaves a half-written file; on error nothing is left.
/// Temporaries of `path` whose writer process is gone are removed first.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    remove_stale_temporaries(path, &name);
    // Unique per process and call, so concurrent writers never share a temporary file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    result
}

/// Removes `.NAME.tmp-PID-N` beside `path` when process PID no longer runs (or, where
/// processes cannot be checked, when the file is over a day old).
fn remove_stale_temporaries(path: &Path, name: &str) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let gone = if Path::new("/proc/self").exists() {
            !Path::new(&format!("/proc/{pid}")).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 86_400)
        };
        if gone {
            std::fs::remove_file(entry.path()).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edit_is_caught_and_stale_temporaries_are_removed() {
        let dir = std::env::temp_dir().join(format!("meshrl-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.bin");
        // A temporary from a process that no longer exists (pid 4294967295 cannot run).
        let stale = dir.join(".x.bin.tmp-4294967295-0");
        std::fs::write(&stale, b"half").unwrap();
        write_framed(&path, "meshrl-test 1", &vec![1u32, 2], &[9, 8, 7]).unwrap();
        assert!(!stale.exists(), "stale temporary left behind");
        let (h, p): (Vec<u32>, Vec<u8>) = read_framed(&path, "meshrl-test 1", "test file").unwrap();
        assert_eq!((h, p), (vec![1, 2], vec![9, 8, 7]));
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x01;
            std::fs::write(&path, &b).unwrap();
            let e = read_framed::<Vec<u32>>(&path, "meshrl-test 1", "test file");
            assert!(matches!(e, Err(PpoError::Corrupt { .. })), "byte {i}: {e:?}");
        }
        for cut in [0, 5, good.len() - 1] {
            std::fs::write(&path, &good[..cut]).unwrap();
            assert!(read_framed::<Vec<u32>>(&path, "meshrl-test 1", "test file").is_err());
        }
        let e = read_framed::<Vec<u32>>(&path, "meshrl-test 2", "test file").unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
