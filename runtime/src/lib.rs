//! The mlp runtime: everything that touches the file system on behalf of the
//! pure compiler.
//!
//! - [`project`]: finds a project's `.mlp` files (walkdir) and implements the
//!   compiler's [`mlp_compiler::World`] (plugin signatures read from `.wasm`
//!   custom sections, without instantiating anything).
//! - [`sample`]: reads a sample of a CSV or NDJSON file for `mlp infer`.
//! - [`cli`]: the subcommands behind the `mlp` binary.
//!
//! **Architecture invariant:** the compiler never opens a file; every byte it
//! sees arrives through this crate.

pub mod cli;
pub mod project;
pub mod sample;
