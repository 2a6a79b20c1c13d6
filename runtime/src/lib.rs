//! The mlp runtime: everything that touches the file system on behalf of the
//! pure compiler.
//!
//! - [`project`]: finds a project's `.mlp` files (walkdir) and implements the
//!   compiler's [`mlp_compiler::World`] (plugin signatures read from `.wasm`
//!   custom sections, without instantiating anything).
//! - [`sample`]: reads a sample of a CSV or NDJSON file for `mlp infer`.
//! - [`run`]: stage keys, `mlp plan`'s reasons, and the executor behind
//!   `mlp run`; [`exec`] has one module per plan operator on polars.
//! - [`store`] and [`fingerprint`]: the content-addressed cache in `.mlp/`
//!   and the file hashes keys are made of.
//! - [`plugin`]: Wasm feature plugins on wasmtime (sandbox, batching, the
//!   ABI's host side).
//! - [`cli`]: the subcommands behind the `mlp` binary.
//!
//! **Architecture invariant:** the compiler never opens a file; every byte it
//! sees arrives through this crate.

pub mod bundle;
pub mod cli;
pub mod drift;
pub mod exec;
pub mod fingerprint;
pub mod monitor;
pub mod plugin;
pub mod project;
pub mod registry;
pub mod run;
pub mod sample;
pub mod scaffold;
pub mod serve;
pub mod store;
