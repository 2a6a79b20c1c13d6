//! The mlp engine, on polars: everything between a compiled plan and its
//! results.
//!
//! - [`project`]: finds a project's `.mlp` files (walkdir) and implements the
//!   compiler's [`mlp_compiler::World`] (plugin signatures read from `.wasm`
//!   custom sections, without instantiating anything).
//! - [`sample`]: reads a sample of a CSV or NDJSON file for `mlp infer`.
//! - [`run`]: stage keys, `mlp plan`'s reasons, and the executor behind
//!   `mlp run`; [`exec`] has one module per plan operator; [`stored`]
//!   writes and reads the frames in the cache.
//! - [`bundle`]: the deployable bundle and prediction from it, the one path
//!   `mlp predict`, `mlp monitor` and `mlp serve` share.
//! - [`predictor`]: a bundle loaded to predict, the one type `mlp predict`,
//!   `mlp monitor` and `mlp serve` predict through.
//! - [`lookup`]: a join's right side and a history's events indexed by key:
//!   the one code path training and serving compute joins and histories by.
//! - [`monitor`]: the drift and performance report of a bundle on new data.
//! - [`plugins`]: the seam to a plugin host (the engine links no Wasm
//!   runtime).
//!
//! **Invariants:** the compiler never opens a file; every byte it sees
//! arrives through this crate. Models are fitted by `mlp-fit` and predicted
//! by `mlp-ml`; the cache and registry are `mlp-store`'s.

pub mod bundle;
pub mod exec;
pub mod lookup;
pub mod monitor;
pub mod plugins;
pub mod predictor;
pub mod project;
pub mod run;
pub mod sample;
pub mod stored;
