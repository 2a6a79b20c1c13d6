//! `plan` and `run`: stage keys, what is cached and why a stage will run, and
//! the executor that runs what is not cached (independent stages in
//! parallel), stores each output atomically and records the run.

use crate::exec::{self, ExecError};
use mlp_compiler::plan::{Op, Plan, Stage};
use mlp_store::fingerprint::{stage_key, FileHashes, Stat};
use mlp_store::store::{EntryMeta, Store, StoreError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Instant;

/// The engine's id: part of every key, so a new mlp never trusts an older
/// one's outputs. Derived from the crate version, the plan version and the
/// bundle format (plus `OUTPUTS`), never written by hand.
pub fn engine_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        format!(
            "mlp-engine/{}+plan-v{}+bundle-v{}+outputs-v{OUTPUTS}",
            env!("CARGO_PKG_VERSION"),
            mlp_compiler::plan::PLAN_VERSION,
            crate::bundle::BUNDLE_FORMAT,
        )
    })
}

/// The version of what the operators compute from the same plan (bump it
/// when an operator's output changes without a plan change: a fixed bug,
/// another algorithm). Part of [`engine_id`].
pub const OUTPUTS: u32 = 10;

/// Why a stage will run (or not).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Its output is in the cache.
    Cached,
    /// A database source fetched to know: the same rows, so cached.
    CachedQueried,
    /// A remote file source whose objects are known unchanged (how: "ETag
    /// unchanged", or fetched again with the same content).
    CachedRemote { how: String },
    /// A remote object fetched because it changed (how it was known).
    Fetched { object: String, how: String },
    /// No earlier run recorded this stage.
    New,
    /// The definition changed.
    DefinitionChanged { file: String, line: usize },
    /// A file it reads changed.
    FileChanged {
        file: String,
        old: Option<String>,
        new: String,
    },
    /// A file was added to or removed from a glob.
    FilesChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// An upstream stage will run.
    Upstream { stage: String },
    /// Another mlp engine (another version of it) made the cached outputs.
    Engine { was: String, now: String },
    /// Same inputs as before, but the entry is gone (removed by `gc`).
    Missing,
    /// A file or plugin it reads cannot be read (the error says which).
    Blocked { why: String },
    /// A stage it reads cannot run (that stage's error says why).
    InputBlocked { input: String },
    /// A deploy whose registered version is gone or damaged.
    Unregistered { why: String },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |h: &str| h.chars().take(12).collect::<String>();
        match self {
            Reason::Cached => write!(f, "cached"),
            Reason::CachedQueried => write!(f, "cached (queried: the same rows, by content hash)"),
            Reason::CachedRemote { how } => write!(f, "cached ({how})"),
            Reason::Fetched { object, how } => write!(f, "{object}: {how}"),
            Reason::New => write!(f, "new stage (never run)"),
            Reason::DefinitionChanged { file, line } => {
                write!(f, "definition changed ({file}:{line})")
            }
            // A database's rows, fetched to know (`exec/postgres.rs`).
            Reason::FileChanged { file, old, new } if file.starts_with(".mlp/fetched/") => {
                match old {
                    Some(o) => write!(
                        f,
                        "queried: the rows changed (content {} -> {})",
                        short(o),
                        short(new)
                    ),
                    None => write!(f, "queried: first fetch (content {})", short(new)),
                }
            }
            Reason::FileChanged { file, old, new } => match old {
                Some(o) => write!(f, "file {file} changed ({} -> {})", short(o), short(new)),
                None => write!(f, "file {file} is new ({})", short(new)),
            },
            Reason::FilesChanged { added, removed } => write!(
                f,
                "files matched changed (added: {}; removed: {})",
                if added.is_empty() {
                    "none".into()
                } else {
                    added.join(", ")
                },
                if removed.is_empty() {
                    "none".into()
                } else {
                    removed.join(", ")
                }
            ),
            Reason::Upstream { stage } => write!(f, "upstream `{stage}` will run"),
            Reason::Engine { was, now } => {
                write!(f, "the mlp engine changed ({was} before, {now} now)")
            }
            Reason::Missing => write!(f, "output no longer in the cache"),
            Reason::Blocked { why } => write!(f, "blocked: {why}"),
            Reason::InputBlocked { input } => write!(f, "blocked: input `{input}` cannot run"),
            Reason::Unregistered { why } => write!(f, "{why}: registering it again"),
        }
    }
}

/// One stage's place in a plan.
#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    pub id: String,
    pub kind: String,
    pub key: Option<String>,
    pub cached: bool,
    pub runnable: bool,
    pub reasons: Vec<Reason>,
    #[serde(skip)]
    pub files: Vec<(PathBuf, String, Stat)>,
    /// The plugins the stage calls: (path, SHA-256).
    #[serde(skip)]
    pub plugins: Vec<(String, String)>,
}

/// A stage as a run record keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub id: String,
    pub key: Option<String>,
    pub definition_hash: String,
    pub inputs: Vec<String>,
    pub input_keys: Vec<Option<String>>,
    pub files: BTreeMap<String, String>,
    pub status: String,
    pub rows: Option<usize>,
    pub seconds: f64,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub engine: String,
    pub started_unix: u64,
    pub seconds: f64,
    pub ok: bool,
    pub stages: Vec<StageRecord>,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The newest run record of a project.
pub fn last_record(store: &Store) -> Option<RunRecord> {
    let dir = store.root.join("runs");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    names.sort();
    names.iter().rev().find_map(|p| {
        std::fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    })
}

/// Computes every stage's key and whether it is cached, with the reasons.
pub fn plan_stages(
    plan: &Plan,
    root: &Path,
    store: Option<&Store>,
    hashes: &mut FileHashes,
) -> Vec<StagePlan> {
    let previous: HashMap<String, StageRecord> = store
        .and_then(last_record)
        .map(|r| {
            let engine_same = r.engine == engine_id();
            r.stages
                .into_iter()
                .map(|s| (s.id.clone(), s))
                .filter(|_| engine_same)
                .collect()
        })
        .unwrap_or_default();
    let engine_changed = store
        .and_then(last_record)
        .filter(|r| r.engine != engine_id())
        .map(|r| r.engine);
    let mut out: Vec<StagePlan> = vec![];
    let mut keys: HashMap<String, Option<String>> = HashMap::new();
    let mut will_run: HashMap<String, bool> = HashMap::new();
    for st in &plan.stages {
        let mut reasons = vec![];
        let mut files = vec![];
        let mut key_ok = true;
        let mut runnable = true;
        if let Op::Source(src) = &st.op {
            match exec::source::files_of(root, src, &st.name) {
                Ok(paths) => {
                    for p in paths {
                        let name = rel(root, &p);
                        // A database's rows were hashed as they arrived.
                        let known = match src.format {
                            mlp_compiler::plan::SourceFormat::Postgres => {
                                exec::postgres::known_hash(&p)
                            }
                            _ => None,
                        };
                        match known.map_or_else(|| hashes.hash(&name, &p), Ok) {
                            Ok((sha, stat)) => files.push((p, sha, stat)),
                            Err(e) => {
                                key_ok = false;
                                reasons.push(Reason::Blocked {
                                    why: format!("cannot read {name}: {e}"),
                                });
                            }
                        }
                    }
                }
                Err(e) => {
                    key_ok = false;
                    runnable = false;
                    reasons.push(Reason::Blocked {
                        why: match src.format {
                            _ if exec::remote::is_remote(&src.path) => e.to_string(),
                            mlp_compiler::plan::SourceFormat::Postgres => e.to_string(),
                            _ => format!("{e} (paths are relative to the .mlp file)"),
                        },
                    });
                }
            }
        }
        let input_keys: Vec<Option<String>> = st
            .inputs
            .iter()
            .map(|i| keys.get(i).cloned().flatten())
            .collect();
        if input_keys.iter().any(Option::is_none) {
            key_ok = false;
        }
        for i in &st.inputs {
            if keys.get(i).cloned().flatten().is_none()
                && !reasons
                    .iter()
                    .any(|r| matches!(r, Reason::Blocked { .. } | Reason::InputBlocked { .. }))
            {
                reasons.push(Reason::InputBlocked { input: i.clone() });
                runnable = false;
            }
        }
        let file_hashes: Vec<(String, String)> = files
            .iter()
            .map(|(p, sha, _)| (rel(root, p), sha.clone()))
            .collect();
        // The bytes of every plugin the stage calls join its key.
        let mut plugin_hashes: Vec<(String, String)> = vec![];
        for name in &st.plugins {
            let Some(d) = plan.plugins.iter().find(|d| &d.name == name) else {
                continue;
            };
            match hashes.hash(&d.path, &root.join(&d.path)) {
                Ok((sha, _)) => plugin_hashes.push((d.path.clone(), sha)),
                Err(e) => {
                    key_ok = false;
                    runnable = false;
                    reasons.push(Reason::Blocked {
                        why: format!("cannot read plugin `{name}` ({}): {e}", d.path),
                    });
                }
            }
        }
        // A lenient read (for a quarantining check) keeps rows a strict one
        // rejects: it is another output, so another key.
        let canonical = if quarantined_by_check(plan, &st.id) {
            format!("{}\n+lenient", st.canonical)
        } else {
            st.canonical.clone()
        };
        let key = key_ok.then(|| {
            stage_key(
                engine_id(),
                &canonical,
                &input_keys.iter().flatten().cloned().collect::<Vec<_>>(),
                &file_hashes,
                &plugin_hashes,
            )
        });
        let mut cached = runnable
            && key
                .as_ref()
                .is_some_and(|k| store.is_some_and(|s| s.lookup(k).is_some()));
        // A deploy's output is its registry entry: cached only while the
        // registered version is there, whole.
        let mut unregistered = None;
        if let (true, Op::Deploy(_), Some(s), Some(k)) = (cached, &st.op, store, &key) {
            if let Err(why) = deploy_registered(s, k) {
                cached = false;
                unregistered = Some(why);
            }
        }
        // How a remote source's objects were known (`exec/remote.rs`).
        let remote_fetch = match &st.op {
            Op::Source(s) if exec::remote::is_remote(&s.path) => {
                Some(exec::remote::last_fetch(root, &st.name))
            }
            _ => None,
        };
        if cached {
            let queried = matches!(&st.op, Op::Source(s) if s.format == mlp_compiler::plan::SourceFormat::Postgres);
            if queried {
                // Nothing will read the rows decoded while they were fetched.
                for (p, _, _) in &files {
                    exec::pgcopy::release(p);
                }
            }
            reasons.push(if queried {
                Reason::CachedQueried
            } else if let Some(fetched) = &remote_fetch {
                Reason::CachedRemote {
                    how: remote_summary(fetched),
                }
            } else {
                Reason::Cached
            });
        } else if let Some(why) = unregistered {
            reasons.push(Reason::Unregistered { why });
        } else if runnable && key.is_some() {
            match previous.get(&st.id) {
                None if engine_changed.is_some() => reasons.push(Reason::Engine {
                    was: engine_changed.clone().unwrap_or_default(),
                    now: engine_id().to_string(),
                }),
                None => reasons.push(Reason::New),
                Some(prev) => {
                    if prev.definition_hash != st.definition_hash {
                        reasons.push(Reason::DefinitionChanged {
                            file: st.origin.file.clone(),
                            line: st.origin.line,
                        });
                    }
                    let now: BTreeMap<String, String> =
                        file_hashes.iter().chain(&plugin_hashes).cloned().collect();
                    let added: Vec<String> = now
                        .keys()
                        .filter(|k| !prev.files.contains_key(*k))
                        .cloned()
                        .collect();
                    let removed: Vec<String> = prev
                        .files
                        .keys()
                        .filter(|k| !now.contains_key(*k))
                        .cloned()
                        .collect();
                    // A remote source's mirror files are named by the
                    // objects' addresses.
                    let show = |f: &String| {
                        exec::remote::shown(root, &root.join(f)).unwrap_or_else(|| f.clone())
                    };
                    if !prev.files.is_empty() && (!added.is_empty() || !removed.is_empty()) {
                        reasons.push(Reason::FilesChanged {
                            added: added.iter().map(show).collect(),
                            removed: removed.iter().map(show).collect(),
                        });
                    }
                    for (f, sha) in &now {
                        if let (Some(fetched), Some(object)) =
                            (&remote_fetch, exec::remote::shown(root, &root.join(f)))
                        {
                            let changed = prev.files.get(f).is_some_and(|old| old != sha);
                            if changed {
                                let how = fetched
                                    .iter()
                                    .find(|(u, _, _)| *u == object)
                                    .map(|(_, how, _)| how.clone())
                                    .unwrap_or_else(|| "the content changed".into());
                                reasons.push(Reason::Fetched { object, how });
                            }
                            continue;
                        }
                        if let Some(old) = prev.files.get(f) {
                            if old != sha {
                                reasons.push(Reason::FileChanged {
                                    file: f.clone(),
                                    old: Some(old.clone()),
                                    new: sha.clone(),
                                });
                            }
                        } else if prev.files.is_empty() {
                            reasons.push(Reason::FileChanged {
                                file: f.clone(),
                                old: None,
                                new: sha.clone(),
                            });
                        }
                    }
                    for (i, k) in st.inputs.iter().zip(&input_keys) {
                        let prev_key = prev
                            .inputs
                            .iter()
                            .position(|p| p == i)
                            .and_then(|j| prev.input_keys.get(j).cloned().flatten());
                        if will_run.get(i).copied().unwrap_or(false)
                            || prev_key.as_ref() != k.as_ref()
                        {
                            reasons.push(Reason::Upstream { stage: i.clone() });
                        }
                    }
                    if reasons.is_empty() {
                        reasons.push(Reason::Missing);
                    }
                }
            }
        }
        will_run.insert(st.id.clone(), runnable && !cached);
        keys.insert(st.id.clone(), if runnable { key.clone() } else { None });
        out.push(StagePlan {
            id: st.id.clone(),
            kind: st.op.kind().to_string(),
            key,
            cached,
            runnable,
            reasons,
            files,
            plugins: plugin_hashes,
        });
    }
    out
}

/// How a remote source's objects were known unchanged, in a few words.
fn remote_summary(fetched: &[(String, String, bool)]) -> String {
    let mut hows: Vec<&str> = fetched
        .iter()
        .map(|(_, how, downloaded)| {
            if *downloaded {
                "fetched again, same content hash"
            } else {
                how.as_str()
            }
        })
        .collect();
    hows.sort_unstable();
    hows.dedup();
    match fetched.len() {
        0 => "no objects recorded".into(),
        1 => hows.join("; "),
        n => format!("{n} objects: {}", hows.join("; ")),
    }
}

/// How a stage ended in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Its output was in the cache.
    Cached,
    /// Started, not finished (never in a finished run's results).
    Running,
    Ran,
    Failed,
    /// It could not start: an input failed, or a file it reads cannot be
    /// read.
    Blocked,
}

impl std::fmt::Display for StageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StageStatus::Cached => "cached",
            StageStatus::Running => "running",
            StageStatus::Ran => "ran",
            StageStatus::Failed => "failed",
            StageStatus::Blocked => "blocked",
        })
    }
}

/// How one stage ended in a run.
#[derive(Debug, Clone, Serialize)]
pub struct StageResult {
    pub id: String,
    pub status: StageStatus,
    /// Blocked only because a stage it reads failed (whose error says why).
    #[serde(skip)]
    pub blocked_by_input: bool,
    pub rows: Option<usize>,
    /// In-memory size of the output frame, when the stage ran.
    pub bytes: Option<usize>,
    /// What the run record keeps of the stage's reports: tuning trials,
    /// evaluation and check reports, the deployed version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    pub seconds: f64,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub help: Option<String>,
    /// A failed stage's report (failed checks, failed gates), as data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Box<crate::exec::FailureReport>>,
}

impl StageResult {
    /// A stage with a status and nothing else to report yet.
    fn new(id: &str, status: StageStatus) -> Self {
        StageResult {
            id: id.to_string(),
            status,
            blocked_by_input: false,
            rows: None,
            bytes: None,
            details: None,
            seconds: 0.0,
            notes: vec![],
            error: None,
            help: None,
            failure: None,
        }
    }
}

/// Events for a progress display.
pub enum Progress {
    Started(String),
    Finished(Box<StageResult>),
}

/// Whether the version a cached deploy registered is in the registry,
/// whole; why not otherwise.
fn deploy_registered(store: &Store, key: &str) -> Result<(), String> {
    let path = store
        .checked_path(key, "deploy.json")
        .map_err(|e| e.to_string())?;
    let v: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("{} cannot be read", path.display()))?;
    let (Some(name), Some(version)) = (v["name"].as_str(), v["version"].as_str()) else {
        return Err(format!("{} names no version", path.display()));
    };
    let reg = mlp_store::registry::Registry::open(&store.root);
    match reg.read_verified(name, version) {
        Ok(_) => Ok(()),
        Err(mlp_store::registry::RegistryError::HashMismatch { .. }) => Err(format!(
            "version {} of \"{name}\" in the registry is damaged",
            &version[..version.len().min(12)]
        )),
        Err(_) => Err(format!(
            "version {} of \"{name}\" is not in the registry",
            &version[..version.len().min(12)]
        )),
    }
}

/// The output frame of a cached stage.
pub fn cached_frame(store: &Store, key: &str) -> Result<DataFrame, ExecError> {
    crate::stored::read_output(store, key)
}

/// A stage's output computed in this run, shared with the stages that read
/// it: they do not read it back from the cache, nor wait for it to be
/// stored.
struct Computed {
    frame: Option<DataFrame>,
    /// Its JSON documents (`model`, `report`, ...).
    json: Arc<exec::JsonOutputs>,
}

/// The outputs computed in this run, by key.
type Produced = std::sync::Mutex<HashMap<String, Computed>>;

/// What every stage of a run may read about the others.
struct Shared<'a> {
    /// Compiles the plugins stages call.
    host: &'a dyn crate::plugins::PluginHost,
    keys: HashMap<String, String>,
    /// Per stage that reads files: path -> SHA-256.
    data_hashes: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
}

/// Computes one stage's output (inputs from memory when this run produced
/// them, else from the cache); returns it with the input frames by key.
#[allow(clippy::too_many_arguments)]
fn compute_one(
    plan: &Plan,
    shared: &Shared,
    st: &Stage,
    sp: &StagePlan,
    root: &Path,
    store: &Store,
    input_keys: &[String],
    lenient: bool,
    produced: &Produced,
) -> Result<(exec::Output, Vec<(String, DataFrame)>), ExecError> {
    // A fail point for the tests of what a bug's panic inside a stage does
    // (debug builds only).
    #[cfg(debug_assertions)]
    if std::env::var("MLP_DEBUG_PANIC_IN").as_deref() == Ok(st.id.as_str()) {
        std::panic::panic_any(format!("a panic injected into {}", st.id));
    }
    let input_json = match produced.lock() {
        Ok(m) => st
            .inputs
            .iter()
            .filter_map(|id| {
                let computed = m.get(shared.keys.get(id)?)?;
                Some((id.clone(), Arc::clone(&computed.json)))
            })
            .collect(),
        Err(_) => HashMap::new(),
    };
    let mut inputs = vec![];
    for k in input_keys {
        let in_memory = produced
            .lock()
            .ok()
            .and_then(|m| m.get(k).and_then(|c| c.frame.clone()));
        match in_memory {
            Some(df) => inputs.push((k.clone(), df)),
            // Inputs without a frame (an evaluate report) are not frames.
            None => {
                if store.lookup(k).is_some_and(|m| m.has_frame()) {
                    inputs.push((k.clone(), cached_frame(store, k)?));
                }
            }
        }
    }
    let plugins = crate::plugins::Plugins::load(shared.host, root, &plan.plugins, &st.plugins)
        .map_err(ExecError::Plugin)?;
    // The bytes hashed into the key are the bytes that run.
    for p in plugins.iter() {
        let d = plan.plugins.iter().find(|d| d.name == p.name);
        let planned = d.and_then(|d| sp.plugins.iter().find(|(path, _)| *path == d.path));
        if let Some((path, sha)) = planned {
            if *sha != p.sha256 {
                return Err(ExecError::ChangedDuringRun { file: path.clone() });
            }
        }
    }
    let cx = exec::Context {
        root,
        plan,
        stage: st,
        inputs: inputs.iter().map(|(_, df)| df.clone()).collect(),
        files: sp
            .files
            .iter()
            .map(|(p, _, s)| (p.clone(), s.clone()))
            .collect(),
        lenient,
        store,
        keys: &shared.keys,
        data_hashes: &shared.data_hashes,
        plugins: &plugins,
        input_json,
    };
    Ok((exec::run_stage(cx)?, inputs))
}

/// Stores one stage's output as a cache entry (written aside, renamed
/// whole): of its frame, the columns that are not its inputs' unchanged.
fn commit_one(
    st: &Stage,
    key: &str,
    store: &Store,
    output: exec::Output,
    inputs: &[(String, DataFrame)],
    seconds: f64,
) -> Result<EntryMeta, ExecError> {
    let store_err = |e: StoreError| ExecError::Internal(e.to_string());
    let mut pending = store.begin(key).map_err(store_err)?;
    let mut rows = None;
    if let Some(df) = output.frame {
        rows = Some(df.height());
        crate::stored::write_output(store, &mut pending, df, inputs)?;
    }
    for (name, mut df) in output.frames {
        let file = format!("{name}.arrow");
        let (size, sum) = crate::stored::write_frame(&pending.path(&file), &mut df)?;
        pending.add(&file, size, sum);
    }
    for (name, value) in &output.json {
        pending
            .write_json(&format!("{name}.json"), value)
            .map_err(store_err)?;
    }
    store
        .commit(pending, key, &st.id, rows, seconds)
        .map_err(store_err)
}

/// What a worker tells the scheduler.
enum Event {
    /// The stage's output is computed (and shared in memory): dependents may
    /// start while it is written to the cache.
    Computed(StageResult),
    /// The output is in the cache (or failed to get there).
    Committed { id: String, error: Option<String> },
}

/// Whether a quarantining check reads this stage directly.
pub fn quarantined_by_check(plan: &Plan, id: &str) -> bool {
    plan.stages.iter().any(|s| {
        matches!(&s.op, Op::Check(c) if c.quarantine) && s.inputs.len() == 1 && s.inputs[0] == id
    })
}

/// Runs every stage that is not cached; stages whose inputs are ready run in
/// parallel (up to `jobs` at once).
pub fn run_plan(
    plan: &Plan,
    root: &Path,
    store: &Store,
    stages: &[StagePlan],
    jobs: usize,
    host: &dyn crate::plugins::PluginHost,
    progress: &(dyn Fn(Progress) + Sync),
) -> Vec<StageResult> {
    let by_id: HashMap<&str, (&Stage, &StagePlan)> = plan
        .stages
        .iter()
        .zip(stages)
        .map(|(s, p)| (s.id.as_str(), (s, p)))
        .collect();
    let mut results: HashMap<String, StageResult> = HashMap::new();
    let mut done: HashMap<String, bool> = HashMap::new(); // id -> succeeded
    let mut running = 0usize;
    let (tx, rx) = mpsc::channel::<Event>();
    let mut committing = 0usize;
    let mut pending_commit: std::collections::HashSet<String> = Default::default();
    let produced: Produced = Default::default();
    let produced = &produced;
    let shared = Shared {
        host,
        keys: stages
            .iter()
            .filter_map(|s| s.key.clone().map(|k| (s.id.clone(), k)))
            .collect(),
        data_hashes: stages
            .iter()
            .filter(|s| !s.files.is_empty())
            .map(|s| {
                let files = s
                    .files
                    .iter()
                    .map(|(p, sha, _)| (rel(root, p), sha.clone()))
                    .collect();
                (s.id.clone(), files)
            })
            .collect(),
    };
    let shared = &shared;
    std::thread::scope(|scope| {
        loop {
            // Start every stage whose inputs are done.
            for (st, sp) in plan.stages.iter().zip(stages) {
                if done.contains_key(&st.id) || results.contains_key(&st.id) {
                    continue;
                }
                if running >= jobs.max(1) {
                    break;
                }
                let inputs_done = st.inputs.iter().all(|i| done.contains_key(i));
                if !inputs_done {
                    continue;
                }
                // A deploy reads its upstream stages' stored outputs: they
                // must be in the cache, not only computed.
                if let Op::Deploy(d) = &st.op {
                    let stored = d
                        .serving_stages
                        .iter()
                        .chain(&d.gated_by)
                        .all(|i| !pending_commit.contains(i));
                    if !stored {
                        continue;
                    }
                }
                let inputs_ok = st
                    .inputs
                    .iter()
                    .all(|i| done.get(i).copied().unwrap_or(false));
                if sp.cached {
                    let rows = sp
                        .key
                        .as_ref()
                        .and_then(|k| store.lookup(k))
                        .and_then(|m| m.rows);
                    let r = StageResult {
                        rows,
                        ..StageResult::new(&st.id, StageStatus::Cached)
                    };
                    progress(Progress::Finished(Box::new(r.clone())));
                    done.insert(st.id.clone(), true);
                    results.insert(st.id.clone(), r);
                    continue;
                }
                if !sp.runnable || !inputs_ok || sp.key.is_none() {
                    let why = sp.reasons.iter().find_map(|r| match r {
                        Reason::Blocked { why } => Some(why.clone()),
                        Reason::InputBlocked { input } => {
                            Some(format!("input `{input}` cannot run"))
                        }
                        _ => None,
                    });
                    // Blocked by an input's failure only: says nothing new.
                    let by_input = sp
                        .reasons
                        .iter()
                        .all(|r| !matches!(r, Reason::Blocked { .. }));
                    let r = StageResult {
                        error: why,
                        blocked_by_input: by_input,
                        ..StageResult::new(&st.id, StageStatus::Blocked)
                    };
                    progress(Progress::Finished(Box::new(r.clone())));
                    done.insert(st.id.clone(), false);
                    results.insert(st.id.clone(), r);
                    continue;
                }
                let input_keys: Vec<String> = st
                    .inputs
                    .iter()
                    .filter_map(|i| by_id.get(i.as_str()).and_then(|(_, p)| p.key.clone()))
                    .collect();
                running += 1;
                progress(Progress::Started(st.id.clone()));
                // Mark as started so it is not started twice.
                results.insert(
                    st.id.clone(),
                    StageResult::new(&st.id, StageStatus::Running),
                );
                let tx = tx.clone();
                let lenient = quarantined_by_check(plan, &st.id);
                scope.spawn(move || {
                    // A panic (a bug) fails the stage instead of leaving the
                    // scheduler waiting for an event that never comes.
                    let computed = std::sync::atomic::AtomicBool::new(false);
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let t = Instant::now();
                        let key = sp.key.clone().unwrap_or_default();
                        match compute_one(
                            plan,
                            shared,
                            st,
                            sp,
                            root,
                            store,
                            &input_keys,
                            lenient,
                            produced,
                        ) {
                            Ok((mut output, inputs)) => {
                                let seconds = t.elapsed().as_secs_f64();
                                let rows = output.frame.as_ref().map(DataFrame::height);
                                let bytes = output.frame.as_ref().map(DataFrame::estimated_size);
                                if let Ok(mut m) = produced.lock() {
                                    m.insert(
                                        key.clone(),
                                        Computed {
                                            frame: output.frame.clone(),
                                            json: Arc::new(output.json.clone()),
                                        },
                                    );
                                }
                                let mut notes = std::mem::take(&mut output.notes);
                                if output.frames.iter().any(|(n, _)| n == "quarantine") {
                                    let file = store.entry_dir(&key).join("quarantine.arrow");
                                    notes.push(format!(
                                        "the rows set aside, with `_row` and `_failed_rules`: {} (Arrow IPC)",
                                        std::env::current_dir()
                                            .map(|cwd| rel(&cwd, &file))
                                            .unwrap_or_else(|_| file.display().to_string())
                                    ));
                                    notes.push(format!(
                                        "read them with `mlp quarantine show {}`, write them out with `mlp quarantine export {} --output FILE`",
                                        st.name, st.name
                                    ));
                                }
                                let details = {
                                    let kept: serde_json::Map<String, serde_json::Value> = output
                                        .json
                                        .iter()
                                        .filter(|(n, _)| {
                                            matches!(n.as_str(), "trials" | "report" | "deploy")
                                        })
                                        .map(|(n, v)| (n.clone(), v.clone()))
                                        .collect();
                                    (!kept.is_empty()).then_some(serde_json::Value::Object(kept))
                                };
                                computed.store(true, std::sync::atomic::Ordering::SeqCst);
                                let _ = tx.send(Event::Computed(StageResult {
                                    blocked_by_input: false,
                                    failure: None,
                                    id: st.id.clone(),
                                    status: StageStatus::Ran,
                                    rows,
                                    bytes,
                                    details,
                                    seconds,
                                    notes,
                                    error: None,
                                    help: None,
                                }));
                                let error = commit_one(st, &key, store, output, &inputs, seconds)
                                    .err()
                                    .map(|e| format!("its output could not be cached: {e}"));
                                let _ = tx.send(Event::Committed {
                                    id: st.id.clone(),
                                    error,
                                });
                            }
                            Err(e) => {
                                let _ = tx.send(Event::Computed(StageResult {
                                    blocked_by_input: false,
                                    seconds: t.elapsed().as_secs_f64(),
                                    help: e.help(),
                                    failure: e.report().map(Box::new),
                                    error: Some(e.to_string()),
                                    ..StageResult::new(&st.id, StageStatus::Failed)
                                }));
                            }
                        }
                    }));
                    if let Err(panic) = ran {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        let error = format!(
                            "mlp stopped on an internal error in this stage (a bug: please report it with the pipeline and data if you can): {why}"
                        );
                        let _ = tx.send(if computed.load(std::sync::atomic::Ordering::SeqCst) {
                            Event::Committed {
                                id: st.id.clone(),
                                error: Some(error),
                            }
                        } else {
                            Event::Computed(StageResult {
                                error: Some(error),
                                ..StageResult::new(&st.id, StageStatus::Failed)
                            })
                        });
                    }
                });
            }
            if running == 0 && committing == 0 {
                let all = plan.stages.iter().all(|s| done.contains_key(&s.id));
                if all {
                    break;
                }
                // Nothing running and nothing startable: the rest is blocked.
                let startable = plan.stages.iter().any(|st| {
                    !done.contains_key(&st.id) && st.inputs.iter().all(|i| done.contains_key(i))
                });
                if !startable {
                    break;
                }
                continue;
            }
            let Ok(event) = rx.recv() else { break };
            let r = match event {
                Event::Committed { id, error } => {
                    committing -= 1;
                    pending_commit.remove(&id);
                    if let (Some(e), Some(r)) = (error, results.get_mut(&id)) {
                        r.status = StageStatus::Failed;
                        r.error = Some(e);
                        progress(Progress::Finished(Box::new(r.clone())));
                    }
                    continue;
                }
                Event::Computed(r) => r,
            };
            running -= 1;
            if r.status == StageStatus::Ran {
                committing += 1;
                pending_commit.insert(r.id.clone());
            }
            // Outputs no stage still to start will read are dropped.
            if let Ok(mut m) = produced.lock() {
                m.retain(|k, _| {
                    plan.stages.iter().zip(stages).any(|(s, p)| {
                        !done.contains_key(&s.id)
                            && s.id != r.id
                            && s.inputs.iter().any(|i| {
                                by_id.get(i.as_str()).and_then(|(_, ip)| ip.key.as_deref())
                                    == Some(k.as_str())
                            })
                            && p.runnable
                    })
                });
            }
            progress(Progress::Finished(Box::new(r.clone())));
            done.insert(r.id.clone(), r.status == StageStatus::Ran);
            results.insert(r.id.clone(), r);
        }
    });
    plan.stages
        .iter()
        .filter_map(|s| results.remove(&s.id))
        .collect()
}

/// Writes the run record.
pub fn record_run(
    store: &Store,
    plan: &Plan,
    stages: &[StagePlan],
    results: &[StageResult],
    root: &Path,
    started_unix: u64,
    seconds: f64,
) -> RunRecord {
    let keys: HashMap<&str, Option<String>> = stages
        .iter()
        .map(|s| (s.id.as_str(), s.key.clone()))
        .collect();
    let id = run_id();
    let rec = RunRecord {
        id: id.clone(),
        engine: engine_id().to_string(),
        started_unix,
        seconds,
        ok: results
            .iter()
            .all(|r| !matches!(r.status, StageStatus::Failed | StageStatus::Blocked)),
        stages: plan
            .stages
            .iter()
            .zip(stages)
            .map(|(st, sp)| {
                let r = results.iter().find(|r| r.id == st.id);
                StageRecord {
                    id: st.id.clone(),
                    key: sp.key.clone(),
                    definition_hash: st.definition_hash.clone(),
                    inputs: st.inputs.clone(),
                    input_keys: st
                        .inputs
                        .iter()
                        .map(|i| keys.get(i.as_str()).cloned().flatten())
                        .collect(),
                    files: sp
                        .files
                        .iter()
                        .map(|(p, sha, _)| (rel(root, p), sha.clone()))
                        .chain(sp.plugins.iter().cloned())
                        .collect(),
                    status: r
                        .map(|r| r.status.to_string())
                        .unwrap_or_else(|| "not run".into()),
                    rows: r.and_then(|r| r.rows),
                    seconds: r.map(|r| r.seconds).unwrap_or(0.0),
                    notes: r.map(|r| r.notes.clone()).unwrap_or_default(),
                    error: r.and_then(|r| r.error.clone()),
                    details: r.and_then(|r| r.details.clone()),
                }
            })
            .collect(),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&rec) {
        let _ = mlp_store::store::write_atomic(
            &store.root.join("runs").join(format!("{id}.json")),
            &bytes,
        );
    }
    rec
}

/// A sortable run id: UTC time to the microsecond, and the process id.
fn run_id() -> String {
    let now = chrono::Utc::now();
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        std::process::id()
    )
}
