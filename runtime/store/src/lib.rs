//! What mlp keeps on disk, with no data library: the content-addressed
//! cache of stage outputs ([`store`]), the file fingerprints its keys are
//! made of ([`fingerprint`]), and the model registry ([`registry`]).
//!
//! **Invariant:** every write is atomic (a temporary file renamed into
//! place) and every read is verified (checksums, hashes, strict parsing), so
//! an interrupted or concurrent writer never leaves a half-written entry or
//! version that a reader would trust.

pub mod fingerprint;
pub mod registry;
pub mod store;

use std::path::{Path, PathBuf};

/// The folder compiled Wasm modules are cached in, under a project's `.mlp`.
pub fn wasm_cache_dir(root: &Path) -> PathBuf {
    root.join(".mlp").join("wasm")
}
