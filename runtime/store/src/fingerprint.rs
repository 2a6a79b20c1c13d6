//! `fingerprint: files -> SHA-256`, and stage keys.
//!
//! A file's hash may be reused from `.mlp/files.json` when its (size, mtime,
//! ctime, inode, device) are unchanged, but never when the record was taken
//! within [`RACY_SECONDS`] of the file's last change: a write in the same
//! timestamp tick could otherwise slip through with an unchanged mtime (git
//! calls such entries "racily clean"). ctime cannot be set back by `touch`,
//! so a content change always moves it.

use crate::store::write_replace;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A stat record younger than this (relative to the file's change time) is
/// not trusted.
pub const RACY_SECONDS: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub inode: u64,
    pub dev: u64,
}

impl Stat {
    pub fn of(path: &Path) -> std::io::Result<Stat> {
        let m = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Stat {
                size: m.len(),
                mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
                ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
                inode: m.ino(),
                dev: m.dev(),
            })
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0);
            Ok(Stat {
                size: m.len(),
                mtime_ns,
                ctime_ns: mtime_ns,
                inode: 0,
                dev: 0,
            })
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    stat: Stat,
    sha256: String,
    /// When the hash was taken (ns since the epoch).
    hashed_at_ns: i128,
}

/// The file-hash records of a project.
#[derive(Debug, Default)]
pub struct FileHashes {
    path: Option<PathBuf>,
    records: BTreeMap<String, Record>,
    dirty: bool,
    /// How many files were hashed (not reused) since loading.
    pub hashed: usize,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Refuses anything but a regular file (a device such as `/dev/zero`, a
/// FIFO, a folder): reading one could block or never end.
pub fn regular(path: &Path) -> std::io::Result<std::fs::Metadata> {
    let m = std::fs::metadata(path)?;
    if !m.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (a device, a pipe or a folder)",
        ));
    }
    Ok(m)
}

/// A regular file's bytes, refused past `max` bytes.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let m = regular(path)?;
    if m.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes, more than the {max} read for it", m.len()),
        ));
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("more than the {max} bytes read for it"),
        ));
    }
    Ok(out)
}

/// The most bytes read for a plugin module (Wasm modules are far smaller).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;
/// The most bytes read for a `.mlp` file.
pub const MAX_PIPELINE_BYTES: u64 = 16 << 20;

/// SHA-256 of a file's bytes, hex.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    regular(path)?;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileHashes {
    pub fn load(state_dir: &Path) -> FileHashes {
        let path = state_dir.join("files.json");
        let records = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FileHashes {
            path: Some(path),
            records,
            dirty: false,
            hashed: 0,
        }
    }

    /// A hash recorded for the file, without hashing (for `mlp plan`).
    pub fn recorded(&self, key: &str) -> Option<&str> {
        self.records.get(key).map(|r| r.sha256.as_str())
    }

    /// The file's content hash and its stat at the time of hashing.
    pub fn hash(&mut self, key: &str, path: &Path) -> std::io::Result<(String, Stat)> {
        let stat = Stat::of(path)?;
        if let Some(r) = self.records.get(key) {
            let settled = r.hashed_at_ns - stat.mtime_ns.max(stat.ctime_ns)
                > RACY_SECONDS as i128 * 1_000_000_000;
            if r.stat == stat && settled {
                return Ok((r.sha256.clone(), stat));
            }
        }
        let hashed_at_ns = now_ns();
        let sha = hash_file(path)?;
        // The file changed while it was being hashed: hash it again.
        let after = Stat::of(path)?;
        if after != stat {
            return self.hash(key, path);
        }
        self.hashed += 1;
        self.records.insert(
            key.to_string(),
            Record {
                stat: stat.clone(),
                sha256: sha.clone(),
                hashed_at_ns,
            },
        );
        self.dirty = true;
        Ok((sha, stat))
    }

    pub fn save(&mut self) {
        if !self.dirty {
            return;
        }
        if let (Some(path), Ok(bytes)) = (&self.path, serde_json::to_vec(&self.records)) {
            if write_replace(path, &bytes).is_ok() {
                self.dirty = false;
            }
        }
    }
}

/// The key of a stage: SHA-256 over the engine version, the stage's
/// canonical definition, its inputs' keys, the hashes of the files it reads
/// and of the plugins it calls.
pub fn stage_key(
    engine: &str,
    canonical: &str,
    input_keys: &[String],
    files: &[(String, String)],
    plugins: &[(String, String)],
) -> String {
    let mut h = Sha256::new();
    let mut field = |tag: &str, value: &str| {
        h.update(tag.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value.as_bytes());
    };
    field("engine", engine);
    field("definition", canonical);
    for k in input_keys {
        field("input", k);
    }
    for (p, sha) in files {
        field("file", p);
        field("sha256", sha);
    }
    for (p, sha) in plugins {
        field("plugin", p);
        field("sha256", sha);
    }
    hex(&h.finalize())
}

/// SHA-256 of bytes in memory, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_records_are_saved_and_a_damaged_file_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.csv");
        std::fs::write(&data, "a,b\n1,2\n").unwrap();
        let sha = sha256_hex(b"a,b\n1,2\n");
        let mut hashes = FileHashes::load(dir.path());
        assert_eq!(hashes.hash("data.csv", &data).unwrap().0, sha);
        assert_eq!(hashes.hashed, 1);
        hashes.save();
        let again = FileHashes::load(dir.path());
        assert_eq!(again.recorded("data.csv"), Some(sha.as_str()));
        // What a crash can leave of the unsynced memo: nothing, or part of
        // it. Either reads as no records, and the file is hashed again.
        let saved = std::fs::read(dir.path().join("files.json")).unwrap();
        for damaged in [&saved[..0], &saved[..saved.len() / 2], &[0u8; 64][..]] {
            std::fs::write(dir.path().join("files.json"), damaged).unwrap();
            let mut hashes = FileHashes::load(dir.path());
            assert_eq!(hashes.recorded("data.csv"), None);
            assert_eq!(hashes.hash("data.csv", &data).unwrap().0, sha);
            assert_eq!(hashes.hashed, 1);
        }
    }
}
