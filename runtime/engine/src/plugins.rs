//! The plugin seam: what the engine needs of a plugin host, and the
//! plugins a stage calls.
//!
//! The engine never links a Wasm runtime. A [`PluginHost`] (the
//! `mlp-plugin-host` crate, on wasmtime) compiles a module's bytes into a
//! [`Guest`]; the engine wraps it in a [`Plugin`] with the module's name,
//! hash, limits and signatures (read from its custom section here, without
//! instantiating anything), and calls it from polars expressions.

use mlp_compiler::plan::PluginDecl;
use mlp_compiler::plugin_sig::{PluginSignatures, PluginType, PLUGIN_ABI_VERSION};
use polars::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A compiled plugin module, ready to run: what a [`PluginHost`] makes.
pub trait Guest: Send + Sync {
    /// Calls `func` on columns of `len` rows (a column of one row is a
    /// constant, broadcast), with the module's declared signatures.
    fn call(
        &self,
        signatures: &PluginSignatures,
        func: &str,
        args: &[Series],
        len: usize,
    ) -> Result<Series, PluginFailure>;
}

/// Compiles plugin modules: the engine's only way to run one.
pub trait PluginHost: Send + Sync {
    /// Compiles (or loads from a cache under `cache`) and links a module
    /// that exports `signatures`, to run under `limits`.
    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        signatures: &PluginSignatures,
        limits: &Limits,
        cache: Option<&Path>,
    ) -> Result<Box<dyn Guest>, PluginFailure>;
}

/// A host for plans and bundles without plugins: any module fails to load.
pub struct NoHost;

impl PluginHost for NoHost {
    fn compile(
        &self,
        name: &str,
        _: &[u8],
        _: &PluginSignatures,
        _: &Limits,
        _: Option<&Path>,
    ) -> Result<Box<dyn Guest>, PluginFailure> {
        Err(PluginFailure {
            plugin: name.to_string(),
            func: String::new(),
            kind: FailureKind::Load("this program runs no plugins".into()),
            row: None,
        })
    }
}

/// A loaded plugin: its module compiled by a host, with what the engine
/// knows of it.
pub struct Plugin {
    pub name: String,
    pub sha256: String,
    pub limits: Limits,
    pub signatures: PluginSignatures,
    guest: Box<dyn Guest>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Plugin {
    /// Reads a module's signatures and has `host` compile it.
    pub fn load(
        host: &dyn PluginHost,
        name: &str,
        bytes: &[u8],
        limits: Limits,
        cache: Option<&Path>,
    ) -> Result<Plugin, PluginFailure> {
        let signatures = crate::project::read_signatures(bytes).map_err(|e| PluginFailure {
            plugin: name.to_string(),
            func: String::new(),
            kind: FailureKind::Load(e.to_string()),
            row: None,
        })?;
        let guest = host.compile(name, bytes, &signatures, &limits, cache)?;
        Ok(Plugin {
            name: name.to_string(),
            sha256: mlp_store::fingerprint::sha256_hex(bytes),
            limits,
            signatures,
            guest,
        })
    }

    /// Calls `func` on columns of `len` rows.
    pub fn call(&self, func: &str, args: &[Series], len: usize) -> Result<Series, PluginFailure> {
        self.guest.call(&self.signatures, func, args, len)
    }
}

/// The limits one plugin runs under.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory_bytes: u64,
    /// Instructions per row, on average over a batch.
    pub fuel: u64,
    /// Wall-clock time for one batch.
    pub timeout_ms: u64,
}

impl From<&PluginDecl> for Limits {
    fn from(d: &PluginDecl) -> Limits {
        Limits {
            memory_bytes: d.memory_bytes,
            fuel: d.fuel,
            timeout_ms: d.timeout_ms,
        }
    }
}

/// What went wrong inside a plugin call.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureKind {
    Panic(String),
    Fuel {
        per_row: u64,
    },
    Memory {
        limit: u64,
    },
    Timeout {
        millis: u64,
    },
    StackOverflow,
    Trap(String),
    /// The result breaks the ABI or the declared signature.
    BadResult(String),
    /// The module cannot be instantiated or lacks an export.
    Load(String),
}

/// A failed plugin call: which plugin, which function, what and where.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFailure {
    pub plugin: String,
    pub func: String,
    pub kind: FailureKind,
    /// The row (0-based, in the column the stage passed) where known.
    pub row: Option<usize>,
}

impl std::fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = match self.row {
            Some(r) => format!(" at row {}", r + 1),
            None => String::new(),
        };
        let (p, func) = (&self.plugin, &self.func);
        match &self.kind {
            FailureKind::Panic(m) => write!(f, "plugin `{p}` function `{func}` panicked{at}: {m}"),
            FailureKind::Fuel { per_row } => write!(
                f,
                "plugin `{p}` function `{func}` ran out of fuel{at} (limit: {per_row} instructions per row)"
            ),
            FailureKind::Memory { limit } => write!(
                f,
                "plugin `{p}` function `{func}` ran out of memory{at} (limit: {})",
                human_bytes(*limit)
            ),
            FailureKind::Timeout { millis } => write!(
                f,
                "plugin `{p}` function `{func}` timed out{at} (limit: {} per batch)",
                human_millis(*millis)
            ),
            FailureKind::StackOverflow => {
                write!(f, "plugin `{p}` function `{func}` overflowed its stack{at}")
            }
            FailureKind::Trap(m) => write!(f, "plugin `{p}` function `{func}` trapped{at}: {m}"),
            FailureKind::BadResult(m) => {
                write!(f, "plugin `{p}` function `{func}` returned a bad result: {m}")
            }
            FailureKind::Load(m) => write!(f, "plugin `{p}` cannot be loaded: {m}"),
        }
    }
}

impl PluginFailure {
    pub fn help(&self) -> String {
        let p = &self.plugin;
        match &self.kind {
            FailureKind::Panic(_) | FailureKind::Trap(_) | FailureKind::StackOverflow => format!(
                "this is a bug in the plugin (or an input it does not handle); nothing was cached from the call. Fix it and rebuild `{p}`"
            ),
            FailureKind::Fuel { .. } => format!(
                "the function may loop forever on this input; if it is only slow, raise the limit: `plugin {p} = \"...\" {{ fuel = N }}`"
            ),
            FailureKind::Memory { .. } => format!(
                "the function may allocate without bound; if it needs more, raise the limit: `plugin {p} = \"...\" {{ memory = 256MB }}`"
            ),
            FailureKind::Timeout { .. } => format!(
                "the function may loop forever on this input; if it is only slow, raise the limit: `plugin {p} = \"...\" {{ timeout = 60s }}`"
            ),
            FailureKind::BadResult(_) => format!(
                "the module's code does not match its signatures; rebuild `{p}` with the mlp-plugin SDK (ABI {PLUGIN_ABI_VERSION})"
            ),
            FailureKind::Load(_) => "build plugins for wasm32-unknown-unknown with the mlp-plugin SDK (`mlp plugin build`); the sandbox provides no other imports".to_string(),
        }
    }
}

fn human_bytes(b: u64) -> String {
    if b >= 1_000_000 && b.is_multiple_of(1_000_000) {
        format!("{} MB", b / 1_000_000)
    } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} bytes")
    }
}

fn human_millis(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The bytes of a declared plugin's module.
pub fn read_module(root: &Path, d: &PluginDecl) -> Result<Vec<u8>, PluginFailure> {
    mlp_store::fingerprint::read_regular(
        &root.join(&d.path),
        mlp_store::fingerprint::MAX_PLUGIN_BYTES,
    )
    .map_err(|e| PluginFailure {
        plugin: d.name.clone(),
        func: String::new(),
        kind: FailureKind::Load(format!("cannot read `{}`: {e}", d.path)),
        row: None,
    })
}

/// The plugins a stage may call, by declared name.
#[derive(Default, Clone)]
pub struct Plugins {
    map: BTreeMap<String, Arc<Plugin>>,
    /// The first failure of a call made inside a polars expression, which
    /// can only report a string; the stage reports this instead.
    failure: Arc<Mutex<Option<PluginFailure>>>,
}

impl Plugins {
    pub fn none() -> Plugins {
        Plugins::default()
    }

    pub fn insert(&mut self, p: Plugin) {
        self.map.insert(p.name.clone(), Arc::new(p));
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.map.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.map.values()
    }

    /// Loads the plugins `names` of a project's plan from disk.
    pub fn load(
        host: &dyn PluginHost,
        root: &Path,
        decls: &[PluginDecl],
        names: &[String],
    ) -> Result<Plugins, PluginFailure> {
        let mut out = Plugins::none();
        for name in names {
            let Some(d) = decls.iter().find(|d| &d.name == name) else {
                continue;
            };
            let bytes = read_module(root, d)?;
            out.insert(Plugin::load(
                host,
                name,
                &bytes,
                Limits::from(d),
                Some(&mlp_store::wasm_cache_dir(root)),
            )?);
        }
        Ok(out)
    }

    /// The polars expression calling `plugin.func(args)`.
    pub fn expr(&self, plugin: &str, func: &str, args: Vec<Expr>) -> Result<Expr, String> {
        let p = self
            .map
            .get(plugin)
            .cloned()
            .ok_or_else(|| format!("plugin `{plugin}` is not loaded for this stage"))?;
        let sig = p
            .signatures
            .function(func)
            .ok_or_else(|| format!("plugin `{plugin}` has no function `{func}`"))?;
        let dt = match sig.returns.ty {
            PluginType::Float => DataType::Float64,
            PluginType::Int => DataType::Int64,
            PluginType::Bool => DataType::Boolean,
            PluginType::Str => DataType::String,
        };
        let func = func.to_string();
        let slot = self.failure.clone();
        let out_name: PlSmallStr = func.as_str().into();
        let out_dt = dt.clone();
        let args = if args.is_empty() { vec![lit(0)] } else { args };
        let takes_none = sig.params.is_empty();
        Ok(map_multiple(
            move |cols: &mut [Column]| {
                let len = cols.iter().map(|c| c.len()).max().unwrap_or(0);
                let series: Vec<Series> = if takes_none {
                    vec![]
                } else {
                    cols.iter()
                        .map(|c| c.as_materialized_series().clone())
                        .collect()
                };
                match p.call(&func, &series, len) {
                    Ok(s) => Ok(s.into_column()),
                    Err(e) => {
                        let msg = e.to_string();
                        if let Ok(mut f) = slot.lock() {
                            if f.is_none() {
                                *f = Some(e);
                            }
                        }
                        Err(PolarsError::ComputeError(msg.into()))
                    }
                }
            },
            args,
            move |_: &Schema, _: &[Field]| Ok(Field::new(out_name.clone(), out_dt.clone())),
        ))
    }

    /// The failure a plugin call recorded, if any.
    pub fn take_failure(&self) -> Option<PluginFailure> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}
