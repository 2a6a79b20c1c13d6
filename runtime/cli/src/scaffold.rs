//! `mlp plugin new NAME` and `mlp plugin build [DIR]`: a plugin crate from
//! nothing to a checked `.wasm` file.

use crate::cli::CliError;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The wasm target plugins are built for: no WASI, so no imports beyond the
/// one the SDK declares.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// Where the SDK crate is: `--sdk`, then `MLP_PLUGIN_SDK`, then the copy in
/// the source tree this mlp was built from.
fn sdk_path(sdk: Option<&Path>) -> Result<PathBuf, CliError> {
    let candidates: Vec<PathBuf> = match sdk {
        Some(p) => vec![p.to_path_buf()],
        None => std::env::var_os("MLP_PLUGIN_SDK")
            .map(PathBuf::from)
            .into_iter()
            .chain([Path::new(env!("CARGO_MANIFEST_DIR")).join("../../plugins/sdk")])
            .collect(),
    };
    for c in &candidates {
        if c.join("Cargo.toml").is_file() {
            return std::fs::canonicalize(c).map_err(|e| CliError::Output(e.to_string()));
        }
    }
    Err(CliError::Registry(
        format!(
            "cannot find the mlp-plugin SDK (looked in {})",
            candidates
                .iter()
                .map(|c| format!("`{}`", c.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some("pass `--sdk PATH` (the `plugins/sdk` folder of the mlp repository), or set MLP_PLUGIN_SDK".into()),
    ))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `mlp plugin new NAME [--sdk PATH]`.
pub fn new(name: &str, sdk: Option<&Path>) -> Result<ExitCode, CliError> {
    if !valid_name(name) {
        return Err(CliError::Registry(
            format!("`{name}` is not a valid plugin name"),
            Some(
                "use lowercase letters, digits, `_` and `-`, starting with a letter: `my_features`"
                    .into(),
            ),
        ));
    }
    let dir = Path::new(name);
    if dir.exists() {
        return Err(CliError::Registry(
            format!("`{}` already exists", dir.display()),
            Some("choose another name, or remove the folder first".into()),
        ));
    }
    let sdk = sdk_path(sdk)?;
    // A TOML basic string: quotes and backslashes escaped, so any path
    // writes a valid Cargo.toml.
    let sdk_text = sdk
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    if sdk_text.chars().any(char::is_control) {
        return Err(CliError::Output(format!(
            "the SDK path {:?} holds a control character; move the SDK to a plain path",
            sdk.display().to_string()
        )));
    }
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the .wasm module; rlib: so `cargo test` can test the functions natively.
crate-type = ["cdylib", "rlib"]

[dependencies]
mlp-plugin = {{ path = "{sdk_text}" }}

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"

# A plugin is its own workspace, even inside another project's folder.
[workspace]
"#
    );
    let lib = r#"//! Feature functions for mlp pipelines.
//!
//! Build with `mlp plugin build`, then declare the module in a pipeline:
//!
//! ```text
//! plugin mine = "path/to/NAME.wasm"
//! features f = data {
//!     doubled = mine.double(price)
//! }
//! ```
//!
//! Functions take and return `f64`, `i64`, `bool` and `&str` (`String` or
//! `&str` as results); `Option<T>` makes an argument or a result nullable.
//! A panic becomes an error naming the function and the row.

mlp_plugin::export! {
    /// Twice its input.
    pub fn double(x: f64) -> f64 {
        2.0 * x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles() {
        assert_eq!(double(1.5), 3.0);
    }
}
"#
    .replace("NAME", &name.replace('-', "_"));
    let write = |p: PathBuf, text: &str| {
        std::fs::write(&p, text)
            .map_err(|e| CliError::Output(format!("cannot write `{}`: {e}", p.display())))
    };
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| CliError::Output(format!("cannot create `{}`: {e}", dir.display())))?;
    write(dir.join("Cargo.toml"), &cargo)?;
    write(dir.join("src/lib.rs"), &lib)?;
    write(dir.join(".gitignore"), "/target\n")?;
    println!("created plugin `{name}` in {}/", dir.display());
    println!("  build it:  mlp plugin build {}", dir.display());
    println!(
        "  test it:   cargo test --manifest-path {}/Cargo.toml",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `mlp plugin build [DIR]`: builds for wasm32, copies `NAME.wasm` into DIR,
/// and prints the signatures the module declares.
pub fn build(dir: &Path) -> Result<ExitCode, CliError> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(CliError::Registry(
            format!("`{}` has no Cargo.toml", dir.display()),
            Some("point at a plugin crate (made with `mlp plugin new NAME`)".into()),
        ));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| CliError::Output(format!("cannot run cargo: {e}")))?;
    if !meta.status.success() {
        return Err(CliError::Output(format!(
            "cargo cannot read `{}`:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&meta.stderr)
        )));
    }
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout)
        .map_err(|e| CliError::Output(format!("cargo metadata: {e}")))?;
    let target_dir = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"));
    let manifest_abs = std::fs::canonicalize(&manifest).unwrap_or(manifest.clone());
    let lib = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["manifest_path"]
                .as_str()
                .is_some_and(|m| Path::new(m) == manifest_abs)
        })
        .and_then(|p| {
            p["targets"].as_array().into_iter().flatten().find(|t| {
                t["crate_types"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c == "cdylib"))
            })
        })
        .and_then(|t| t["name"].as_str())
        .map(|n| n.replace('-', "_"))
        .ok_or_else(|| {
            CliError::Registry(
                format!("`{}` has no cdylib library", manifest.display()),
                Some("add `[lib] crate-type = [\"cdylib\", \"rlib\"]` to Cargo.toml".into()),
            )
        })?;
    eprintln!("building {lib} for {TARGET} ...");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(&manifest)
        .status()
        .map_err(|e| CliError::Output(format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(CliError::Registry(
            "the plugin did not build (cargo's messages are above)".into(),
            Some(format!(
                "if cargo says the target may not be installed: `rustup target add {TARGET}`"
            )),
        ));
    }
    let built = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{lib}.wasm"));
    let bytes = std::fs::read(&built)
        .map_err(|e| CliError::Output(format!("cannot read `{}`: {e}", built.display())))?;
    let sigs = mlp_engine::project::read_signatures(&bytes).map_err(|e| {
        CliError::Registry(
            format!("`{}` built, but {e}", built.display()),
            Some("export functions with `mlp_plugin::export! { ... }`".into()),
        )
    })?;
    let out = dir.join(format!("{lib}.wasm"));
    std::fs::write(&out, &bytes)
        .map_err(|e| CliError::Output(format!("cannot write `{}`: {e}", out.display())))?;
    println!(
        "built {} ({} KB, plugin ABI {}): {} function{}",
        out.display(),
        bytes.len().div_ceil(1024),
        sigs.abi,
        sigs.functions.len(),
        if sigs.functions.len() == 1 { "" } else { "s" }
    );
    for f in &sigs.functions {
        let params: Vec<String> = f
            .params
            .iter()
            .map(|p| {
                format!(
                    "{}: {}{}",
                    p.name,
                    p.ty.name(),
                    if p.nullable { "?" } else { "" }
                )
            })
            .collect();
        println!(
            "  {}({}) -> {}{}",
            f.name,
            params.join(", "),
            f.returns.ty.name(),
            if f.returns.nullable { "?" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
