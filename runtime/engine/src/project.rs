//! `load: Path -> Project`: a project's `.mlp` files, and the [`World`] the
//! compiler asks for plugin signatures.
//!
//! A path is one `.mlp` file or a directory: every `*.mlp` below it, in sorted
//! order, skipping hidden folders and the `.mlp/` state folder. File names in
//! diagnostics are relative to the project root.

use mlp_compiler::plugin_sig::SIGNATURE_SECTION;
use mlp_compiler::{compile, Compilation, PluginError, PluginSignatures, SourceMap, World};
use std::path::{Path, PathBuf};
use walkdir::WalkDir;

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("`{0}` does not exist")]
    Missing(PathBuf),
    #[error("no .mlp files under `{0}`")]
    Empty(PathBuf),
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}` is not valid UTF-8 text: line {line}, byte {column} is 0x{byte:02X}")]
    NotText {
        path: PathBuf,
        line: usize,
        /// 1-based byte in the line.
        column: usize,
        byte: u8,
    },
}

impl ProjectError {
    pub fn help(&self) -> Option<String> {
        match self {
            ProjectError::Missing(_) => Some("pass a .mlp file or a folder that holds them".into()),
            ProjectError::Empty(_) => Some("pipelines are files ending in `.mlp`".into()),
            ProjectError::NotText { .. } => Some(
                "save the file as UTF-8 (an editor's encoding setting, or `iconv -f latin1 -t utf-8`)"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// A loaded project: its root folder and its sources.
pub struct Project {
    pub root: PathBuf,
    pub sources: SourceMap,
}

impl Project {
    /// Loads a `.mlp` file or every `.mlp` file under a directory.
    pub fn load(path: &Path) -> Result<Project, ProjectError> {
        if !path.exists() {
            return Err(ProjectError::Missing(path.to_path_buf()));
        }
        let (root, files) = if path.is_dir() {
            let mut files = vec![];
            let walker = WalkDir::new(path)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0
                        || !e.file_name().to_string_lossy().starts_with('.')
                            && e.file_name() != "target"
                });
            for entry in walker {
                let entry = entry.map_err(|e| ProjectError::Io {
                    path: path.to_path_buf(),
                    source: e.into(),
                })?;
                if entry.file_type().is_file()
                    && entry.path().extension().is_some_and(|x| x == "mlp")
                {
                    files.push(entry.path().to_path_buf());
                }
            }
            (path.to_path_buf(), files)
        } else {
            let root = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            (root, vec![path.to_path_buf()])
        };
        if files.is_empty() {
            return Err(ProjectError::Empty(path.to_path_buf()));
        }
        let mut sources = SourceMap::new();
        for f in files {
            let bytes = mlp_store::fingerprint::read_regular(
                &f,
                mlp_store::fingerprint::MAX_PIPELINE_BYTES,
            )
            .map_err(|source| ProjectError::Io {
                path: f.clone(),
                source,
            })?;
            let text = String::from_utf8(bytes).map_err(|e| {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let before = &bytes[..at];
                let line_start = before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1);
                ProjectError::NotText {
                    path: f.clone(),
                    line: before.iter().filter(|b| **b == b'\n').count() + 1,
                    column: at - line_start + 1,
                    byte: bytes.get(at).copied().unwrap_or(0),
                }
            })?;
            let rel = f
                .strip_prefix(&root)
                .unwrap_or(&f)
                .to_string_lossy()
                .replace('\\', "/");
            sources.add(rel, text);
        }
        Ok(Project { root, sources })
    }

    /// Compiles the project against the file system.
    pub fn compile(&self) -> Compilation {
        let world = FsWorld {
            root: self.root.clone(),
        };
        compile(&self.sources, &world)
    }
}

/// The compiler's view of the file system.
pub struct FsWorld {
    pub root: PathBuf,
}

impl World for FsWorld {
    fn plugin_signatures(&self, path: &str) -> Result<PluginSignatures, PluginError> {
        let full = self.root.join(path);
        let bytes = match mlp_store::fingerprint::read_regular(
            &full,
            mlp_store::fingerprint::MAX_PLUGIN_BYTES,
        ) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PluginError::NotFound {
                    path: path.to_string(),
                })
            }
            Err(e) => {
                return Err(PluginError::Unreadable {
                    path: path.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        read_signatures(&bytes)
    }
}

/// Reads the `mlp:signatures` custom section of a Wasm module.
pub fn read_signatures(module: &[u8]) -> Result<PluginSignatures, PluginError> {
    let mut found: Option<Vec<u8>> = None;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| PluginError::Malformed {
            reason: format!("not a WebAssembly module: {e}"),
        })?;
        if let wasmparser::Payload::CustomSection(c) = payload {
            if c.name() == SIGNATURE_SECTION {
                found
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(c.data());
            }
        }
    }
    match found {
        Some(data) => PluginSignatures::from_section(&data),
        None => Err(PluginError::NoSignatures),
    }
}
