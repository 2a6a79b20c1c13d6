//! Helpers shared by the end-to-end tests: run the binary, read its output.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `mlp` in a folder, without colour.
pub fn mlp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mlp")
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The cache entry folder of a stage (after a run that stored it).
pub fn cache_entry(dir: &Path, stage: &str) -> PathBuf {
    for e in std::fs::read_dir(dir.join(".mlp/cache")).unwrap() {
        let p = e.unwrap().path();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("entry.json")).unwrap()).unwrap();
        if meta["stage"] == stage {
            return p;
        }
    }
    panic!("no cache entry for {stage}");
}
