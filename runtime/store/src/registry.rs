//! The model registry in `.mlp/registry/`: deployable bundles by version
//! (their content hash), aliases, and an append-only alias history.
//!
//! ```text
//! .mlp/registry/<name>/
//!   versions/<sha256>.json   one bundle per version, written once
//!   aliases.json             alias -> version, rewritten atomically
//!   history.jsonl            every alias move, appended
//!   registered.jsonl         every registration, appended (newest last)
//! ```

use crate::store::write_atomic;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no model named `{name}` in the registry")]
    UnknownModel { name: String, known: Vec<String> },
    #[error("model `{name}` has no version or alias `{what}`")]
    UnknownVersion {
        name: String,
        what: String,
        known: Vec<String>,
    },
    #[error("`{what}` matches several versions of `{name}`; give more of the hash")]
    Ambiguous { name: String, what: String },
    #[error("alias `{alias}` of `{name}` has no earlier version to roll back to")]
    NoHistory { name: String, alias: String },
    #[error("`{name}` cannot be {what}: it needs {rule}")]
    BadName {
        name: String,
        what: &'static str,
        rule: &'static str,
    },
    #[error("{file}, line {line}: {reason}")]
    Damaged {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("version {version} of `{name}` is damaged: its bytes hash to {found}")]
    HashMismatch {
        name: String,
        version: String,
        found: String,
    },
    #[error("registry: {0}")]
    Io(String),
}

/// Refuses a model name or alias outside the one rule for registry names
/// (the compiler applies the same to `deploy`).
pub fn check_name(name: &str, alias: bool) -> Result<(), RegistryError> {
    match mlp_compiler::plan::names::registry_name_problem(name, alias) {
        None => Ok(()),
        Some(rule) => Err(RegistryError::BadName {
            name: name.escape_debug().to_string(),
            what: if alias { "an alias" } else { "a model name" },
            rule,
        }),
    }
}

impl RegistryError {
    pub fn help(&self) -> Option<String> {
        match self {
            RegistryError::UnknownModel { known, .. } => Some(if known.is_empty() {
                "deploy a model with `deploy MODEL as \"NAME\"` and `mlp run`".into()
            } else {
                format!("models: {}", known.join(", "))
            }),
            RegistryError::UnknownVersion { known, .. } => {
                Some(format!("versions and aliases: {}", known.join(", ")))
            }
            RegistryError::Damaged { .. } => Some(
                "the registry file was edited or damaged; restore it (from a backup or version control) or fix the line: nothing is written to the registry until then".into(),
            ),
            RegistryError::HashMismatch { .. } => Some(
                "the bundle no longer matches the version it was registered as; restore it, or deploy again with `mlp run`".into(),
            ),
            _ => None,
        }
    }
}

/// One alias move, as the history records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AliasMove {
    pub unix: u64,
    pub alias: String,
    pub from: Option<String>,
    pub to: String,
    pub action: String,
}

pub struct Registry {
    pub root: PathBuf,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Io(e.to_string())
}

/// The content hash of a bundle: its version.
pub fn version_of(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Registry {
    pub fn open(state_dir: &Path) -> Registry {
        Registry {
            root: state_dir.join("registry"),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Holds the registry's write lock (a `flock` on `registry/.lock`)
    /// until dropped: writes (register, promote, rollback) from any number
    /// of processes happen one at a time, each reading what the last wrote.
    fn lock(&self) -> Result<std::fs::File, RegistryError> {
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(".lock"))
            .map_err(io)?;
        f.lock().map_err(io)?;
        Ok(f)
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.path().join("versions").is_dir())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// The lines of a JSON-lines file, each parsed; a line that does not
    /// parse is an error naming the file and the line, never skipped.
    fn json_lines<T: serde::de::DeserializeOwned>(
        &self,
        path: &Path,
    ) -> Result<Vec<T>, RegistryError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(io(format!("{}: {e}", path.display()))),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| RegistryError::Damaged {
                    file: path.display().to_string(),
                    line: i + 1,
                    reason: format!("not a registry record: {e}"),
                })
            })
            .collect()
    }

    /// Every version with when it was last registered, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<(String, u64)>, RegistryError> {
        let on_disk: Vec<String> = std::fs::read_dir(self.dir(name).join("versions"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_suffix(".json")
                            .map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        // Registration order from the log; versions missing from it (an
        // older registry) come first.
        #[derive(Deserialize)]
        struct Registered {
            version: String,
            #[serde(default)]
            unix: u64,
        }
        let mut last: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        let log: Vec<Registered> = self.json_lines(&self.dir(name).join("registered.jsonl"))?;
        for (i, r) in log.into_iter().enumerate() {
            last.insert(r.version, (i + 1, r.unix));
        }
        let mut v: Vec<(usize, String, u64)> = on_disk
            .into_iter()
            .map(|ver| {
                let (order, unix) = last.get(&ver).copied().unwrap_or((0, 0));
                (order, ver, unix)
            })
            .collect();
        v.sort();
        Ok(v.into_iter().map(|(_, ver, unix)| (ver, unix)).collect())
    }

    /// The aliases of a model; a file that does not parse is an error (it
    /// is never read as empty, so never overwritten as if it were).
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, String>, RegistryError> {
        let path = self.dir(name).join("aliases.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| RegistryError::Damaged {
                file: path.display().to_string(),
                line: e.line(),
                reason: format!("not an alias table: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io(format!("{}: {e}", path.display()))),
        }
    }

    pub fn history(&self, name: &str) -> Result<Vec<AliasMove>, RegistryError> {
        self.json_lines(&self.dir(name).join("history.jsonl"))
    }

    /// Appends one whole line to a log (one write of line and newline, under
    /// the registry lock).
    fn append_line(&self, path: &Path, line: &str) -> Result<(), RegistryError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        f.write_all(&bytes).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Stores a bundle (once per version) and points `alias` at it.
    pub fn register(
        &self,
        name: &str,
        bytes: &[u8],
        alias: Option<&str>,
    ) -> Result<String, RegistryError> {
        check_name(name, false)?;
        if let Some(a) = alias {
            check_name(a, true)?;
        }
        let _lock = self.lock()?;
        // Refuse to write into a damaged registry.
        self.versions(name)?;
        self.aliases(name)?;
        self.history(name)?;
        let version = version_of(bytes);
        let versions = self.dir(name).join("versions");
        std::fs::create_dir_all(&versions).map_err(io)?;
        let path = versions.join(format!("{version}.json"));
        // A version already there is rewritten if its bytes are not its own.
        if self.read_verified(name, &version).is_err() {
            write_atomic(&path, bytes).map_err(io)?;
        }
        // The order of registration (the newest is the default version);
        // file times are too coarse to tell two deploys in one second apart.
        let line = serde_json::json!({"unix": now(), "version": version}).to_string();
        self.append_line(&self.dir(name).join("registered.jsonl"), &line)?;
        if let Some(a) = alias {
            self.set_alias(name, a, &version, "deploy")?;
        }
        Ok(version)
    }

    /// Moves an alias; the caller holds the lock.
    fn set_alias(
        &self,
        name: &str,
        alias: &str,
        version: &str,
        action: &str,
    ) -> Result<(), RegistryError> {
        let mut aliases = self.aliases(name)?;
        self.history(name)?;
        let from = aliases.get(alias).cloned();
        if from.as_deref() == Some(version) {
            return Ok(());
        }
        // The history line first: a crash between the two leaves a history
        // that says more, never less.
        let line = serde_json::to_string(&AliasMove {
            unix: now(),
            alias: alias.to_string(),
            from: from.clone(),
            to: version.to_string(),
            action: action.to_string(),
        })
        .map_err(io)?;
        self.append_line(&self.dir(name).join("history.jsonl"), &line)?;
        aliases.insert(alias.to_string(), version.to_string());
        write_atomic(
            &self.dir(name).join("aliases.json"),
            &serde_json::to_vec_pretty(&aliases).map_err(io)?,
        )
        .map_err(io)
    }

    /// Resolves `name`, `name@alias` or `name@version-prefix` to a version.
    pub fn resolve(&self, spec: &str) -> Result<(String, String), RegistryError> {
        let (name, what) = match spec.split_once('@') {
            Some((n, w)) => (n, Some(w)),
            None => (spec, None),
        };
        check_name(name, false)?;
        if !self.names().iter().any(|n| n == name) {
            return Err(RegistryError::UnknownModel {
                name: name.to_string(),
                known: self.names(),
            });
        }
        let aliases = self.aliases(name)?;
        let versions = self.versions(name)?;
        let what = match what {
            Some(w) => w.to_string(),
            // No alias given: `production` if set, else the newest version.
            None => match aliases.get("production") {
                Some(_) => "production".into(),
                None => versions.last().map(|v| v.0.clone()).unwrap_or_default(),
            },
        };
        if let Some(v) = aliases.get(&what) {
            return Ok((name.to_string(), v.clone()));
        }
        let matches: Vec<&String> = versions
            .iter()
            .map(|(v, _)| v)
            .filter(|v| v.starts_with(&what) && !what.is_empty())
            .collect();
        match matches.as_slice() {
            [one] => Ok((name.to_string(), (*one).clone())),
            [] => Err(RegistryError::UnknownVersion {
                name: name.to_string(),
                what,
                known: aliases
                    .keys()
                    .cloned()
                    .chain(versions.iter().map(|(v, _)| v.chars().take(12).collect()))
                    .collect(),
            }),
            _ => Err(RegistryError::Ambiguous {
                name: name.to_string(),
                what,
            }),
        }
    }

    pub fn bundle_path(&self, name: &str, version: &str) -> PathBuf {
        self.dir(name)
            .join("versions")
            .join(format!("{version}.json"))
    }

    /// A version's bundle bytes, verified against the version (their
    /// SHA-256): a changed byte is refused, naming both hashes.
    pub fn read_verified(&self, name: &str, version: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.bundle_path(name, version);
        let bytes = std::fs::read(&path).map_err(|e| io(format!("{}: {e}", path.display())))?;
        verify(name, version, &bytes)?;
        Ok(bytes)
    }

    /// Points an alias at a version (a prefix of its hash is enough).
    pub fn promote(&self, name: &str, version: &str, alias: &str) -> Result<String, RegistryError> {
        check_name(alias, true)?;
        let _lock = self.lock()?;
        let (_, v) = self.resolve(&format!("{name}@{version}"))?;
        self.read_verified(name, &v)?;
        self.set_alias(name, alias, &v, "promote")?;
        Ok(v)
    }

    /// Moves an alias back to the version it pointed at before its last move.
    pub fn rollback(&self, name: &str, alias: &str) -> Result<String, RegistryError> {
        check_name(alias, true)?;
        let _lock = self.lock()?;
        let current = self.aliases(name)?.get(alias).cloned();
        let previous = self
            .history(name)?
            .into_iter()
            .rev()
            .filter(|m| m.alias == alias)
            .find(|m| Some(&m.to) == current.as_ref())
            .and_then(|m| m.from);
        let Some(prev) = previous else {
            return Err(RegistryError::NoHistory {
                name: name.to_string(),
                alias: alias.to_string(),
            });
        };
        self.set_alias(name, alias, &prev, "rollback")?;
        Ok(prev)
    }
}

/// Checks bundle bytes against the version they claim (their SHA-256).
pub fn verify(name: &str, version: &str, bytes: &[u8]) -> Result<(), RegistryError> {
    let found = version_of(bytes);
    if found != version {
        return Err(RegistryError::HashMismatch {
            name: name.to_string(),
            version: version.to_string(),
            found,
        });
    }
    Ok(())
}
