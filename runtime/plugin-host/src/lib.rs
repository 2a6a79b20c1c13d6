//! `plugin call -> column`: runs Wasm feature plugins on wasmtime, as the
//! engine's [`PluginHost`].
//!
//! The ABI (version [`PLUGIN_ABI_VERSION`], written down in
//! `docs/plugins.md`, implemented on the guest side by `plugins/sdk`): the
//! host allocates one block per batch with the guest's `mlp_alloc`, writes a
//! 24-byte descriptor per argument and the typed buffers (values plus one
//! validity byte per row), calls `mlp_call_NAME(rows, descs)` and copies the
//! result out of the descriptor it returns. Every batch runs in a fresh
//! instance, so nothing a guest keeps survives a batch.
//!
//! The sandbox: the only import is `mlp.panic`, which carries a panic's
//! message out before the guest traps; memory is capped by a
//! [`wasmtime::ResourceLimiter`], CPU by fuel (per row, deterministic), wall
//! time by epoch interruption (a ticker thread). NaNs are canonicalised and
//! threads and relaxed SIMD are off, so a batch's result depends only on its
//! input. Compiled modules are cached on disk by wasmtime's cache (keyed by
//! the module's hash and the engine's configuration).

use mlp_compiler::plugin_sig::{FunctionSig, PluginSignatures, PluginType};
use mlp_engine::plugins::{FailureKind, Guest, Limits, PluginFailure, PluginHost};
use polars::prelude::*;

use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use wasmtime::{
    Cache, CacheConfig, Caller, Config, Engine, Instance, InstanceAllocationStrategy, InstancePre,
    Linker, Memory, Module, PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc,
};

/// How often the epoch ticks: the resolution of `timeout`.
const TICK: Duration = Duration::from_millis(10);
/// The most input plus output bytes one batch carries.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Fuel for the work around the rows (allocation, setup).
const BASE_FUEL: u64 = 10_000_000;
/// The size of a column descriptor.
const DESC: usize = 24;
/// Instances that may exist at once (the pooling allocator's slots); a
/// batch waits for a free one.
const SLOTS: usize = 16;
/// Linear memory a slot keeps mapped between batches, reset with `memset`
/// instead of being unmapped and faulted in again.
const KEEP_RESIDENT: usize = 64 << 20;

/// Counts the instances alive, so the pool is never exhausted.
struct Slots {
    used: Mutex<usize>,
    freed: std::sync::Condvar,
}

static SLOT_COUNT: Slots = Slots {
    used: Mutex::new(0),
    freed: std::sync::Condvar::new(),
};

/// A slot of the pool, held for one batch.
struct Slot;

impl Slot {
    fn take() -> Slot {
        let mut used = match SLOT_COUNT.used.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        while *used >= SLOTS {
            used = match SLOT_COUNT.freed.wait(used) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
        *used += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut used = match SLOT_COUNT.used.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *used = used.saturating_sub(1);
        SLOT_COUNT.freed.notify_one();
    }
}

/// The process's engine: one configuration, one compiled-module cache, one
/// epoch ticker.
fn engine(cache_dir: Option<&Path>) -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let build = |pooling: bool| -> Result<Engine, String> {
                let mut config = Config::new();
                config
                    .consume_fuel(true)
                    .epoch_interruption(true)
                    .cranelift_nan_canonicalization(true)
                    .wasm_relaxed_simd(false)
                    .max_wasm_stack(1 << 20);
                // Instances come from a pool of slots whose memory stays
                // mapped: a fresh instance per batch without the page
                // faults of fresh memory. A batch's state is still reset:
                // the slot's memory is zeroed (memset) before reuse.
                if pooling {
                    let mut pool = PoolingAllocationConfig::default();
                    pool.total_core_instances(SLOTS as u32)
                        .total_memories(SLOTS as u32)
                        .total_tables(SLOTS as u32)
                        .max_memory_size(4 << 30)
                        .linear_memory_keep_resident(KEEP_RESIDENT)
                        .table_keep_resident(1 << 16);
                    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
                }
                if let Some(dir) = cache_dir {
                    let mut cc = CacheConfig::new();
                    // wasmtime wants an absolute folder.
                    cc.with_directory(
                        std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
                    );
                    // A cache that cannot be set up only costs compile time.
                    if let Ok(cache) = Cache::new(cc) {
                        config.cache(Some(cache));
                    }
                }
                Engine::new(&config).map_err(|e| e.to_string())
            };
            // The pool reserves address space up front (some 100 GB of it,
            // virtual); where that is refused (a `ulimit -v`), instances are
            // allocated one by one instead: slower, the same results.
            let engine = build(true).or_else(|_| build(false))?;
            let ticker = engine.weak();
            std::thread::Builder::new()
                .name("mlp-plugin-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    match ticker.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => return,
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(engine)
        })
        .as_ref()
        .map_err(|e| format!("cannot start the Wasm engine: {e}"))
}

/// Per-store state: the limiter and what the guest told us before trapping.
struct GuestState {
    memory_cap: usize,
    denied: Option<usize>,
    panic: Option<(String, i64)>,
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.denied = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The wasmtime plugin host: compiles modules with one process-wide engine
/// (a compiled-module cache on disk, an epoch ticker) and runs each batch in
/// a fresh, limited instance.
pub struct Wasmtime;

impl PluginHost for Wasmtime {
    fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        signatures: &PluginSignatures,
        limits: &Limits,
        cache: Option<&Path>,
    ) -> Result<Box<dyn Guest>, PluginFailure> {
        Ok(Box::new(WasmPlugin::load(
            name,
            bytes,
            signatures,
            limits.clone(),
            cache,
        )?))
    }
}

/// A module compiled and linked, ready to instantiate.
struct WasmPlugin {
    name: String,
    limits: Limits,
    pre: InstancePre<GuestState>,
}

impl WasmPlugin {
    /// Compiles (or loads from the cache) and links a module.
    fn load(
        name: &str,
        bytes: &[u8],
        signatures: &PluginSignatures,
        limits: Limits,
        cache: Option<&Path>,
    ) -> Result<WasmPlugin, PluginFailure> {
        let fail = |m: String| PluginFailure {
            plugin: name.to_string(),
            func: String::new(),
            kind: FailureKind::Load(m),
            row: None,
        };
        let engine = engine(cache).map_err(&fail)?;
        let module = Module::new(engine, bytes).map_err(|e| fail(format!("{e:#}")))?;
        for import in module.imports() {
            if (import.module(), import.name()) != ("mlp", "panic") {
                return Err(fail(format!(
                    "the module imports `{}.{}`, which the sandbox does not provide (no file system, clock, randomness, network or environment)",
                    import.module(),
                    import.name()
                )));
            }
        }
        for export in ["memory", "mlp_alloc"] {
            if module.get_export(export).is_none() {
                return Err(fail(format!(
                    "the module lacks the export `{export}`; it was not built with the mlp-plugin SDK"
                )));
            }
        }
        for f in &signatures.functions {
            if module.get_export(&format!("mlp_call_{}", f.name)).is_none() {
                return Err(fail(format!(
                    "the signatures declare `{}` but the module lacks the export `mlp_call_{}`",
                    f.name, f.name
                )));
            }
        }
        let mut linker: Linker<GuestState> = Linker::new(engine);
        linker
            .func_wrap(
                "mlp",
                "panic",
                |mut caller: Caller<'_, GuestState>, ptr: u32, len: u32, row: i64| {
                    let msg = match caller.get_export("memory").and_then(|e| e.into_memory()) {
                        Some(mem) => {
                            let data = mem.data(&caller);
                            let (a, b) = (ptr as usize, ptr as usize + len as usize);
                            data.get(a..b)
                                .map(|s| String::from_utf8_lossy(s).into_owned())
                                .unwrap_or_else(|| "a panic whose message is out of bounds".into())
                        }
                        None => "a panic (the module exports no memory)".into(),
                    };
                    caller.data_mut().panic = Some((msg, row));
                },
            )
            .map_err(|e| fail(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| fail(format!("{e:#}")))?;
        Ok(WasmPlugin {
            name: name.to_string(),
            limits,
            pre,
        })
    }
}

impl Guest for WasmPlugin {
    /// Batches run in parallel, each in a fresh instance.
    fn call(
        &self,
        signatures: &PluginSignatures,
        func: &str,
        args: &[Series],
        len: usize,
    ) -> Result<Series, PluginFailure> {
        let fail = |kind: FailureKind, row: Option<usize>| PluginFailure {
            plugin: self.name.clone(),
            func: func.to_string(),
            kind,
            row,
        };
        let sig = signatures.function(func).ok_or_else(|| {
            fail(
                FailureKind::Load(format!("the module declares no function `{func}`")),
                None,
            )
        })?;
        if args.len() != sig.params.len() {
            return Err(fail(
                FailureKind::Load(format!(
                    "`{func}` takes {} arguments, called with {}",
                    sig.params.len(),
                    args.len()
                )),
                None,
            ));
        }
        let cols = args
            .iter()
            .zip(&sig.params)
            .map(|(s, p)| ArgColumn::new(s, p.ty, len))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|m| fail(FailureKind::BadResult(m), None))?;
        if len == 0 {
            return Ok(OutColumn::default().into_series(sig, func));
        }
        let per_row: usize = cols
            .iter()
            .filter(|c| c.len() == len)
            .map(|c| c.bytes_per_row(len))
            .sum::<usize>()
            + out_bytes_per_row(sig.returns.ty)
            + 1;
        let budget = MAX_BATCH_BYTES.min(self.limits.memory_bytes as usize / 4);
        let rows_per_batch = (budget / per_row).clamp(1, 1 << 20);
        let batches: Vec<(usize, usize)> = (0..len)
            .step_by(rows_per_batch)
            .map(|s| (s, (s + rows_per_batch).min(len)))
            .collect();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(batches.len());
        let results: Vec<Mutex<Option<Result<OutColumn, PluginFailure>>>> =
            batches.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| loop {
                    if failed.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(a, b)) = batches.get(i) else {
                        return;
                    };
                    let r = self
                        .batch(sig, &cols, a, b)
                        .map_err(|(kind, row)| fail(kind, row.map(|r| a + r)));
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                });
            }
        });
        let mut out = OutColumn::default();
        let mut first_err: Option<PluginFailure> = None;
        for r in results {
            match r.into_inner().ok().flatten() {
                Some(Ok(part)) => out.append(part),
                // The earliest failing batch is the one to report.
                Some(Err(e)) if first_err.is_none() => first_err = Some(e),
                Some(Err(_)) => {}
                None => {}
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(out.into_series(sig, func))
    }
}

impl WasmPlugin {
    /// One batch, rows `a..b`, in a fresh instance. The row of an error is
    /// relative to `a`.
    fn batch(
        &self,
        sig: &FunctionSig,
        cols: &[ArgColumn],
        a: usize,
        b: usize,
    ) -> Result<OutColumn, (FailureKind, Option<usize>)> {
        let rows = b - a;
        let engine = self.pre.module().engine();
        // Declared before the store, so it is released after the store
        // (and its instance) is gone.
        let _slot = Slot::take();
        let mut store = Store::new(
            engine,
            GuestState {
                memory_cap: self.limits.memory_bytes as usize,
                denied: None,
                panic: None,
            },
        );
        store.limiter(|g| g as &mut dyn ResourceLimiter);
        let fuel = self
            .limits
            .fuel
            .saturating_mul(rows as u64)
            .saturating_add(BASE_FUEL);
        let _ = store.set_fuel(fuel);
        let ticks = self
            .limits
            .timeout_ms
            .div_ceil(TICK.as_millis() as u64)
            .max(1);
        store.set_epoch_deadline(ticks);

        let instance = match self.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(self.classify(&mut store, None, e)),
        };
        let load = |m: &str| (FailureKind::Load(m.to_string()), None);
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| load("the module exports no memory"))?;
        let alloc: TypedFunc<u32, u32> = instance
            .get_typed_func(&mut store, "mlp_alloc")
            .map_err(|e| load(&format!("`mlp_alloc` has the wrong type: {e}")))?;
        let call: TypedFunc<(u32, u32), u32> = instance
            .get_typed_func(&mut store, &format!("mlp_call_{}", sig.name))
            .map_err(|e| load(&format!("`mlp_call_{}` has the wrong type: {e}", sig.name)))?;

        // Lay the batch out: descriptors first, then each buffer 8-aligned.
        let mut size = DESC * cols.len();
        let mut layout = vec![];
        for c in cols {
            let (ca, cb) = c.range(a, b);
            let l = c.layout(ca, cb, &mut size);
            layout.push(l);
        }
        let base = match alloc.call(&mut store, size as u32) {
            Ok(0) => {
                return Err((
                    FailureKind::Memory {
                        limit: self.limits.memory_bytes,
                    },
                    None,
                ))
            }
            Ok(p) => p as usize,
            Err(e) => return Err(self.classify(&mut store, Some(&instance), e)),
        };
        {
            let mem = memory.data_mut(&mut store);
            if base + size > mem.len() {
                return Err(load("`mlp_alloc` returned memory out of bounds"));
            }
            for (k, (c, l)) in cols.iter().zip(&layout).enumerate() {
                let (ca, cb) = c.range(a, b);
                c.write(mem, base, l, ca, cb);
                let desc = l.desc(base);
                mem[base + k * DESC..base + (k + 1) * DESC].copy_from_slice(&desc);
            }
        }
        let ptr = match call.call(&mut store, (rows as u32, base as u32)) {
            Ok(p) => p as usize,
            Err(e) => return Err(self.classify(&mut store, Some(&instance), e)),
        };
        read_result(&memory, &store, ptr, sig, rows).map_err(|m| (FailureKind::BadResult(m), None))
    }

    /// Turns a wasmtime error into what the user needs to know.
    fn classify(
        &self,
        store: &mut Store<GuestState>,
        instance: Option<&Instance>,
        e: wasmtime::Error,
    ) -> (FailureKind, Option<usize>) {
        if let Some((msg, row)) = store.data_mut().panic.take() {
            return (FailureKind::Panic(msg), row_of(row));
        }
        let row = instance.and_then(|i| guest_row(store, i));
        if store.data().denied.is_some() {
            return (
                FailureKind::Memory {
                    limit: self.limits.memory_bytes,
                },
                row,
            );
        }
        let kind = match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => FailureKind::Fuel {
                per_row: self.limits.fuel,
            },
            Some(Trap::Interrupt) => FailureKind::Timeout {
                millis: self.limits.timeout_ms,
            },
            Some(Trap::StackOverflow) => FailureKind::StackOverflow,
            Some(t) => FailureKind::Trap(t.to_string().trim_start_matches("wasm trap: ").into()),
            None => FailureKind::Trap(format!("{e:#}")),
        };
        (kind, row)
    }
}

fn row_of(r: i64) -> Option<usize> {
    usize::try_from(r).ok()
}

/// Asks the guest which row it was on when it stopped (SDK modules export
/// `mlp_row`), with a little fuel and time of its own.
fn guest_row(store: &mut Store<GuestState>, instance: &Instance) -> Option<usize> {
    let f: TypedFunc<(), i64> = instance.get_typed_func(&mut *store, "mlp_row").ok()?;
    store.set_fuel(100_000).ok()?;
    store.set_epoch_deadline(10);
    f.call(&mut *store, ()).ok().and_then(row_of)
}

fn out_bytes_per_row(t: PluginType) -> usize {
    match t {
        PluginType::Float | PluginType::Int => 8,
        PluginType::Bool => 1,
        PluginType::Str => 20,
    }
}

fn tag(t: PluginType) -> u32 {
    match t {
        PluginType::Float => 1,
        PluginType::Int => 2,
        PluginType::Bool => 3,
        PluginType::Str => 4,
    }
}

/// An argument, converted once to the type the function takes.
enum ArgColumn {
    Float(Float64Chunked),
    Int(Int64Chunked),
    Bool(BooleanChunked),
    Str(StringChunked),
}

/// Where one argument's buffers go, relative to the batch's base.
struct Layout {
    tag: u32,
    /// The rows written: the batch's, or 1 for a constant.
    rows: u32,
    values: usize,
    values_len: usize,
    validity: Option<usize>,
    offsets: Option<usize>,
}

impl Layout {
    fn desc(&self, base: usize) -> [u8; DESC] {
        let words = [
            self.tag,
            self.rows,
            (base + self.values) as u32,
            self.validity.map_or(0, |v| (base + v) as u32),
            self.offsets.map_or(0, |o| (base + o) as u32),
            self.values_len as u32,
        ];
        let mut out = [0u8; DESC];
        for (dst, w) in out.chunks_exact_mut(4).zip(words) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        out
    }
}

fn align8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl ArgColumn {
    fn new(s: &Series, ty: PluginType, len: usize) -> Result<ArgColumn, String> {
        // A one-row argument (a literal) stays one row: the ABI passes it
        // once per batch as a constant.
        if s.len() != len && s.len() != 1 {
            return Err(format!("an argument has {} rows, expected {len}", s.len()));
        }
        let cast = |dt: &DataType| s.cast(dt).map_err(|e| e.to_string());
        Ok(match ty {
            PluginType::Float => ArgColumn::Float(
                cast(&DataType::Float64)?
                    .f64()
                    .map_err(|e| e.to_string())?
                    .rechunk()
                    .into_owned(),
            ),
            PluginType::Int => ArgColumn::Int(
                cast(&DataType::Int64)?
                    .i64()
                    .map_err(|e| e.to_string())?
                    .rechunk()
                    .into_owned(),
            ),
            PluginType::Bool => ArgColumn::Bool(
                cast(&DataType::Boolean)?
                    .bool()
                    .map_err(|e| e.to_string())?
                    .rechunk()
                    .into_owned(),
            ),
            PluginType::Str => ArgColumn::Str(
                cast(&DataType::String)?
                    .str()
                    .map_err(|e| e.to_string())?
                    .rechunk()
                    .into_owned(),
            ),
        })
    }

    fn bytes_per_row(&self, len: usize) -> usize {
        match self {
            ArgColumn::Float(_) | ArgColumn::Int(_) => 9,
            ArgColumn::Bool(_) => 2,
            ArgColumn::Str(s) => {
                let total: usize = s.iter().map(|v| v.map_or(0, str::len)).sum();
                total / len.max(1) + 6
            }
        }
    }

    fn has_nulls(&self, a: usize, b: usize) -> bool {
        let n = match self {
            ArgColumn::Float(c) => c.slice(a as i64, b - a).null_count(),
            ArgColumn::Int(c) => c.slice(a as i64, b - a).null_count(),
            ArgColumn::Bool(c) => c.slice(a as i64, b - a).null_count(),
            ArgColumn::Str(c) => c.slice(a as i64, b - a).null_count(),
        };
        n > 0
    }

    fn len(&self) -> usize {
        match self {
            ArgColumn::Float(c) => c.len(),
            ArgColumn::Int(c) => c.len(),
            ArgColumn::Bool(c) => c.len(),
            ArgColumn::Str(c) => c.len(),
        }
    }

    /// The rows of this argument a batch `a..b` passes: those, or the one
    /// row of a constant.
    fn range(&self, a: usize, b: usize) -> (usize, usize) {
        if self.len() == 1 {
            (0, 1)
        } else {
            (a, b)
        }
    }

    /// Reserves this argument's buffers from `*size` on.
    fn layout(&self, a: usize, b: usize, size: &mut usize) -> Layout {
        let rows = b - a;
        let mut take = |n: usize| {
            let at = align8(*size);
            *size = at + n;
            at
        };
        let (tag, values_len) = match self {
            ArgColumn::Float(_) => (1, rows * 8),
            ArgColumn::Int(_) => (2, rows * 8),
            ArgColumn::Bool(_) => (3, rows),
            ArgColumn::Str(c) => (
                4,
                c.slice(a as i64, rows)
                    .iter()
                    .map(|v| v.map_or(0, str::len))
                    .sum(),
            ),
        };
        let values = take(values_len);
        let validity = self.has_nulls(a, b).then(|| take(rows));
        let offsets = matches!(self, ArgColumn::Str(_)).then(|| take((rows + 1) * 4));
        Layout {
            tag,
            rows: rows as u32,
            values,
            values_len,
            validity,
            offsets,
        }
    }

    /// Copies rows `a..b` into guest memory at `base + layout`.
    fn write(&self, mem: &mut [u8], base: usize, l: &Layout, a: usize, b: usize) {
        let rows = b - a;
        let values = &mut mem[base + l.values..base + l.values + l.values_len];
        let mut valid = vec![1u8; if l.validity.is_some() { rows } else { 0 }];
        match self {
            ArgColumn::Float(c) => write_8(
                values,
                &c.slice(a as i64, rows),
                &mut valid,
                f64::to_le_bytes,
            ),
            ArgColumn::Int(c) => write_8(
                values,
                &c.slice(a as i64, rows),
                &mut valid,
                i64::to_le_bytes,
            ),
            ArgColumn::Bool(c) => {
                for (i, (dst, v)) in values
                    .iter_mut()
                    .zip(c.slice(a as i64, rows).iter())
                    .enumerate()
                {
                    *dst = v.unwrap_or(false) as u8;
                    if v.is_none() {
                        valid[i] = 0;
                    }
                }
            }
            ArgColumn::Str(c) => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0u32);
                let mut at = 0usize;
                for (i, v) in c.slice(a as i64, rows).iter().enumerate() {
                    match v {
                        Some(s) => {
                            values[at..at + s.len()].copy_from_slice(s.as_bytes());
                            at += s.len();
                        }
                        None => valid[i] = 0,
                    }
                    offsets.push(at as u32);
                }
                if let Some(o) = l.offsets {
                    let dst = &mut mem[base + o..base + o + (rows + 1) * 4];
                    for (d, v) in dst.chunks_exact_mut(4).zip(offsets) {
                        d.copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
        }
        if let Some(v) = l.validity {
            mem[base + v..base + v + rows].copy_from_slice(&valid);
        }
    }
}

/// Writes an 8-byte numeric column (nulls as zeros, marked in `valid`).
fn write_8<T: PolarsNumericType>(
    values: &mut [u8],
    part: &ChunkedArray<T>,
    valid: &mut [u8],
    bytes: impl Fn(T::Native) -> [u8; 8],
) {
    if let Ok(xs) = part.cont_slice() {
        for (dst, x) in values.chunks_exact_mut(8).zip(xs) {
            dst.copy_from_slice(&bytes(*x));
        }
        return;
    }
    for (i, (dst, v)) in values.chunks_exact_mut(8).zip(part.iter()).enumerate() {
        match v {
            Some(x) => dst.copy_from_slice(&bytes(x)),
            None => {
                dst.fill(0);
                valid[i] = 0;
            }
        }
    }
}

/// Reads an 8-byte numeric result column.
fn read_8<N>(v: &[u8], from: impl Fn([u8; 8]) -> N) -> Vec<N> {
    v.chunks_exact(8)
        .map(|b| {
            let mut w = [0u8; 8];
            w.copy_from_slice(b);
            from(w)
        })
        .collect()
}

/// A result column as read back, before it becomes a series: the values of
/// its type (nulls hold a placeholder) and, once a null is seen, validity.
#[derive(Default)]
struct OutColumn {
    rows: usize,
    floats: Vec<f64>,
    ints: Vec<i64>,
    bools: Vec<bool>,
    strs: Vec<Option<String>>,
    /// `None` while every row holds a value.
    valid: Option<Vec<bool>>,
}

impl OutColumn {
    fn append(&mut self, other: OutColumn) {
        match (&mut self.valid, other.valid) {
            (None, None) => {}
            (Some(v), None) => v.resize(v.len() + other.rows, true),
            (mine, Some(theirs)) => {
                let v = mine.get_or_insert_with(|| vec![true; self.rows]);
                v.extend(theirs);
            }
        }
        self.rows += other.rows;
        self.floats.extend(other.floats);
        self.ints.extend(other.ints);
        self.bools.extend(other.bools);
        self.strs.extend(other.strs);
    }

    fn into_series(self, sig: &FunctionSig, func: &str) -> Series {
        let name: PlSmallStr = func.into();
        let valid = self.valid;
        match sig.returns.ty {
            PluginType::Float => match valid {
                None => Float64Chunked::from_vec(name, self.floats).into_series(),
                Some(v) => Float64Chunked::from_iter_options(
                    name,
                    self.floats
                        .into_iter()
                        .zip(v)
                        .map(|(x, ok)| ok.then_some(x)),
                )
                .into_series(),
            },
            PluginType::Int => match valid {
                None => Int64Chunked::from_vec(name, self.ints).into_series(),
                Some(v) => Int64Chunked::from_iter_options(
                    name,
                    self.ints.into_iter().zip(v).map(|(x, ok)| ok.then_some(x)),
                )
                .into_series(),
            },
            PluginType::Bool => match valid {
                None => BooleanChunked::from_slice(name, &self.bools).into_series(),
                Some(v) => BooleanChunked::from_iter_options(
                    name,
                    self.bools.into_iter().zip(v).map(|(x, ok)| ok.then_some(x)),
                )
                .into_series(),
            },
            PluginType::Str => Series::new(name, self.strs),
        }
    }
}

fn word(mem: &[u8], at: usize) -> Result<u32, String> {
    mem.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("a pointer ({at:#x}) outside its memory"))
}

fn region(mem: &[u8], at: u32, len: usize) -> Result<&[u8], String> {
    let a = at as usize;
    mem.get(a..a + len)
        .ok_or_else(|| format!("a buffer ({a:#x}, {len} bytes) outside its memory"))
}

/// Reads the result descriptor at `ptr` and checks it against the signature.
fn read_result(
    memory: &Memory,
    store: &Store<GuestState>,
    ptr: usize,
    sig: &FunctionSig,
    rows: usize,
) -> Result<OutColumn, String> {
    let mem = memory.data(store);
    let w = |k: usize| word(mem, ptr + 4 * k);
    let (t, n, values, validity, offsets, len) = (w(0)?, w(1)?, w(2)?, w(3)?, w(4)?, w(5)?);
    let expected = tag(sig.returns.ty);
    if t != expected {
        let found = match t {
            1 => "float",
            2 => "int",
            3 => "bool",
            4 => "str",
            _ => "unknown",
        };
        return Err(format!(
            "{found} values where its signature declares {}",
            sig.returns.ty.name()
        ));
    }
    if n as usize != rows {
        return Err(format!("{n} values for a batch of {rows} rows"));
    }
    let valid: Option<&[u8]> = if validity == 0 {
        None
    } else {
        Some(region(mem, validity, rows)?)
    };
    let is_valid = |i: usize| valid.is_none_or(|v| v[i] != 0);
    let mut out = OutColumn {
        rows,
        valid: valid
            .filter(|v| v.contains(&0))
            .map(|v| v.iter().map(|b| *b != 0).collect()),
        ..OutColumn::default()
    };
    match sig.returns.ty {
        PluginType::Float => {
            out.floats = read_8(region(mem, values, rows * 8)?, f64::from_le_bytes)
        }
        PluginType::Int => out.ints = read_8(region(mem, values, rows * 8)?, i64::from_le_bytes),
        PluginType::Bool => {
            out.bools = region(mem, values, rows)?.iter().map(|b| *b != 0).collect()
        }
        PluginType::Str => {
            let bytes = region(mem, values, len as usize)?;
            let offs = region(mem, offsets, (rows + 1) * 4)?;
            let offs: Vec<usize> = offs
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .collect();
            out.strs.reserve(rows);
            for i in 0..rows {
                if !is_valid(i) {
                    out.strs.push(None);
                    continue;
                }
                let (a, b) = (offs[i], offs[i + 1]);
                let s = bytes
                    .get(a..b)
                    .ok_or_else(|| format!("string offsets out of order at row {}", i + 1))?;
                let s = std::str::from_utf8(s)
                    .map_err(|_| format!("a string that is not UTF-8 at row {}", i + 1))?;
                out.strs.push(Some(s.to_string()));
            }
        }
    }
    Ok(out)
}
