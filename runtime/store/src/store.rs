//! The state folder `.mlp/` beside a project: the content-addressed stage
//! cache, the file-hash records, run records and the run lock.
//!
//! Layout:
//!
//! ```text
//! .mlp/
//!   lock                  held (flock) by the one `mlp run` writing here
//!   cache/<key>/          one entry per stage output, named by its key
//!     entry.json          what the entry holds (written last, inside tmp/)
//!     frame.arrow         the stage's output frame (Arrow IPC): its own
//!                         columns only when entry.json names a base
//!     ...                 fitted parameters, reports, quarantined rows
//!   tmp/                  entries being written; renamed into cache/ whole
//!   files.json            (path, size, mtime, ctime, inode) -> SHA-256
//!   runs/<run-id>.json    one record per run
//! ```
//!
//! **Invariant:** an entry appears in `cache/` only by an atomic rename of a
//! complete folder, so a crash never leaves a half-written entry that a later
//! run trusts; an entry without a readable `entry.json` is ignored and
//! removed by `gc`.
//!
//! A stage that passes some of its input's columns through unchanged (a
//! split adds its partition column, a model its predictions) stores only
//! the columns it made; its `entry.json` names the input's entry as its
//! `base` and the columns read from there ([`FrameBase`]). An entry whose
//! base is not in the cache is not complete: the stage runs again.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why the state folder could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use the state folder `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache entry `{0}` is corrupt")]
    Corrupt(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a cache entry holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EntryMeta {
    pub key: String,
    pub stage: String,
    /// Rows of the output frame, when the stage has one.
    pub rows: Option<usize>,
    /// File names inside the entry folder.
    pub files: Vec<String>,
    /// Each file's size and XXH3-64 (hex), checked before it is trusted.
    #[serde(default)]
    pub sums: BTreeMap<String, (u64, String)>,
    /// Seconds the stage took when it ran.
    pub seconds: f64,
    pub created_unix: u64,
    /// Where the columns of the output frame that are not in `frame.arrow`
    /// are: the entry of the input they came from unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<FrameBase>,
}

impl EntryMeta {
    /// Whether the entry holds an output frame (whole, or partly in its
    /// base).
    pub fn has_frame(&self) -> bool {
        self.base.is_some() || self.files.iter().any(|f| f == "frame.arrow")
    }
}

/// The output frame of an entry as its own columns plus columns of another
/// entry's frame, the same rows in the same order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FrameBase {
    /// The entry holding the inherited columns (itself possibly with a base).
    pub key: String,
    /// Every column of the output frame, in order.
    pub columns: Vec<String>,
    /// The columns read from the base entry; the others are in this entry's
    /// `frame.arrow`.
    pub inherited: Vec<String>,
}

/// The longest chain of bases an entry may have: longer (or a loop) is a
/// damaged cache.
pub const MAX_BASE_DEPTH: usize = 256;

/// The `.mlp/` folder of a project.
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

/// An entry being written: files go into a private folder, then
/// [`Store::commit`] renames it into the cache in one step.
pub struct PendingEntry {
    pub dir: PathBuf,
    files: Vec<String>,
    sums: BTreeMap<String, (u64, String)>,
    base: Option<FrameBase>,
}

impl PendingEntry {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    /// Records a file written into the entry folder, with its size and
    /// checksum.
    pub fn add(&mut self, name: &str, size: u64, sum: String) {
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_string());
        }
        self.sums.insert(name.to_string(), (size, sum));
    }
    /// Records that the output frame's other columns are another entry's.
    pub fn set_base(&mut self, base: FrameBase) {
        self.base = Some(base);
    }
    /// Writes and records a JSON file.
    pub fn write_json<T: Serialize>(&mut self, name: &str, value: &T) -> Result<(), StoreError> {
        let path = self.path(name);
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
        let mut f = File::create(&path).map_err(io(&path))?;
        f.write_all(&bytes).map_err(io(&path))?;
        self.add(name, bytes.len() as u64, checksum(&bytes));
        Ok(())
    }
}

/// The exclusive lock of one run; released on drop.
pub struct RunLock {
    _file: File,
}

impl Store {
    /// Opens (creating) the state folder `ROOT/.mlp`.
    pub fn open(project_root: &Path) -> Result<Store, StoreError> {
        let root = project_root.join(".mlp");
        for sub in ["cache", "tmp", "runs"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(io(&p))?;
        }
        Ok(Store { root })
    }

    /// Opens the state folder only if it exists (for read-only commands).
    pub fn existing(project_root: &Path) -> Option<Store> {
        let root = project_root.join(".mlp");
        root.join("cache").is_dir().then_some(Store { root })
    }

    /// Takes the run lock, waiting for another run in the same project to
    /// finish. `on_wait` is called once if the lock is held by someone else.
    pub fn lock(&self, on_wait: impl FnOnce()) -> Result<RunLock, StoreError> {
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(io(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        Ok(RunLock { _file: file })
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join("cache").join(key)
    }

    /// The entry for a key, if it is complete (with its chain of bases).
    pub fn lookup(&self, key: &str) -> Option<EntryMeta> {
        let meta = self.lookup_one(key)?;
        self.bases(&meta).1.then_some(meta)
    }

    /// How many bases an entry's frame reads through, as far as they are in
    /// the cache (0 for a whole frame or no entry).
    pub fn chain_depth(&self, key: &str) -> usize {
        self.lookup_one(key).map_or(0, |m| self.bases(&m).0)
    }

    /// How many of an entry's bases are in the cache, following its chain,
    /// and whether all are (a chain longer than [`MAX_BASE_DEPTH`], or a
    /// loop, is not).
    fn bases(&self, meta: &EntryMeta) -> (usize, bool) {
        let mut depth = 0;
        let mut base = meta.base.clone();
        while let Some(b) = base {
            if depth == MAX_BASE_DEPTH || b.key == meta.key {
                return (depth, false);
            }
            let Some(next) = self.lookup_one(&b.key) else {
                return (depth, false);
            };
            depth += 1;
            base = next.base;
        }
        (depth, true)
    }

    /// One entry, if its own files are whole.
    fn lookup_one(&self, key: &str) -> Option<EntryMeta> {
        let dir = self.entry_dir(key);
        let bytes = fs::read(dir.join("entry.json")).ok()?;
        let meta: EntryMeta = serde_json::from_slice(&bytes).ok()?;
        // Every file is there with the size it was written with (a crash
        // or power loss before the data reached the disk shows as a short or
        // empty file); contents are checked when a file is read.
        let whole = meta.files.iter().all(|f| {
            let size = fs::metadata(dir.join(f)).map(|m| m.len()).ok();
            match meta.sums.get(f) {
                Some((expected, _)) => size == Some(*expected),
                None => size.is_some(),
            }
        });
        if meta.key != key || !whole {
            return None;
        }
        Some(meta)
    }

    /// The path of a file of an entry, after checking its checksum.
    pub fn checked_path(&self, key: &str, name: &str) -> Result<PathBuf, StoreError> {
        let path = self.entry_dir(key).join(name);
        let meta = self
            .lookup(key)
            .ok_or_else(|| StoreError::Corrupt(format!("{key}/{name}")))?;
        if let Some(expected) = meta.sums.get(name) {
            let found = file_checksum(&path).map_err(io(&path))?;
            if found != *expected {
                return Err(StoreError::Corrupt(format!(
                    "{key}/{name} does not match its checksum: run `mlp cache gc` to remove damaged entries"
                )));
            }
        }
        Ok(path)
    }

    /// Starts writing an entry.
    pub fn begin(&self, key: &str) -> Result<PendingEntry, StoreError> {
        let nonce = format!(
            "{key}.{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let dir = self.root.join("tmp").join(nonce);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(PendingEntry {
            dir,
            files: vec![],
            sums: BTreeMap::new(),
            base: None,
        })
    }

    /// Completes an entry: writes `entry.json`, then renames the folder into
    /// the cache. If another run committed the same key first, its entry is
    /// kept (same key, same content) and this one is discarded.
    pub fn commit(
        &self,
        mut pending: PendingEntry,
        key: &str,
        stage: &str,
        rows: Option<usize>,
        seconds: f64,
    ) -> Result<EntryMeta, StoreError> {
        let sums = pending.sums.clone();
        let meta = EntryMeta {
            key: key.to_string(),
            stage: stage.to_string(),
            rows,
            files: pending.files.clone(),
            sums,
            seconds,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            base: pending.base.clone(),
        };
        pending.write_json("entry.json", &meta)?;
        let target = self.entry_dir(key);
        if self.lookup(key).is_some() {
            let _ = fs::remove_dir_all(&pending.dir);
            return Ok(meta);
        }
        if target.exists() {
            // An incomplete entry (from a crash before this design, or a
            // removed file): replace it.
            let _ = fs::remove_dir_all(&target);
        }
        fs::rename(&pending.dir, &target).map_err(io(&target))?;
        if let Ok(d) = File::open(target.parent().unwrap_or(&target)) {
            let _ = d.sync_all();
        }
        Ok(meta)
    }

    /// Whether every file of an entry matches its checksum (reads them all).
    pub fn verify(&self, key: &str) -> bool {
        let Some(meta) = self.lookup(key) else {
            return false;
        };
        meta.files.iter().all(|f| match meta.sums.get(f) {
            Some(expected) => {
                file_checksum(&self.entry_dir(key).join(f)).ok().as_ref() == Some(expected)
            }
            None => true,
        })
    }

    /// Every complete entry, and the folders that are not (for `gc`).
    pub fn entries(&self) -> (Vec<(EntryMeta, u64)>, Vec<PathBuf>) {
        let mut good = vec![];
        let mut bad = vec![];
        let Ok(rd) = fs::read_dir(self.root.join("cache")) else {
            return (good, bad);
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            match self.lookup(&name) {
                Some(meta) => {
                    let size = dir_size(&e.path());
                    good.push((meta, size));
                }
                None => bad.push(e.path()),
            }
        }
        good.sort_by(|a, b| a.0.stage.cmp(&b.0.stage).then(a.0.key.cmp(&b.0.key)));
        (good, bad)
    }

    /// Removes leftovers of interrupted writes.
    pub fn clean_tmp(&self) {
        if let Ok(rd) = fs::read_dir(self.root.join("tmp")) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// XXH3-64 of bytes, hex: fast enough to check every read.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Size and XXH3-64 of a file, streamed.
pub fn file_checksum(path: &Path) -> std::io::Result<(u64, String)> {
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:016x}", h.digest())))
}

/// A writer that keeps the size and XXH3-64 of what passes through it.
pub struct SummingWriter<W> {
    inner: W,
    hasher: xxhash_rust::xxh3::Xxh3,
    size: u64,
}

impl<W: Write> SummingWriter<W> {
    pub fn new(inner: W) -> Self {
        SummingWriter {
            inner,
            hasher: xxhash_rust::xxh3::Xxh3::new(),
            size: 0,
        }
    }
    /// The writer back, with the size and checksum written.
    pub fn finish(self) -> (W, u64, String) {
        (
            self.inner,
            self.size,
            format!("{:016x}", self.hasher.digest()),
        )
    }
}

impl<W: Write> Write for SummingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Writes a file that is only a memo (`files.json`): a temporary file in
/// the same folder renamed over the target, not synced. After a crash it
/// holds the old bytes, the new ones, or none that parse, each of which
/// its reader takes as what it knows (nothing, at worst), so waiting for
/// the disk is not worth it: on a run's critical path before any stage,
/// the sync cost up to 40 ms (a journal flush).
pub fn write_replace(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace(path, bytes, false)
}

/// Writes a file atomically: a temporary file in the same folder, synced,
/// then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    replace(path, bytes, true)
}

/// A temporary file in `path`'s folder with `bytes` (synced when `sync`),
/// renamed over `path`.
fn replace(path: &Path, bytes: &[u8], sync: bool) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    if sync {
        tmp.as_file().sync_all().map_err(io(path))?;
    }
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
