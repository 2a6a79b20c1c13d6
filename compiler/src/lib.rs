//! The `.mlp` compiler: source text in, a checked and serialisable [`Plan`] out.
//!
//! | stage   | function                 | input           | output            |
//! |---------|--------------------------|-----------------|-------------------|
//! | parse   | [`parse::parse`]         | `&str`          | [`ast::File`]     |
//! | check   | [`check::check`]         | `[ast::File]`   | [`ir::Program`]   |
//! | lower   | [`lower::lower`]         | [`ir::Program`] | [`Plan`]          |
//!
//! The compiler is pure: it never opens a file. Source text arrives in a
//! [`SourceMap`]; what must come from outside (plugin signatures) is asked of a
//! [`World`] the caller implements. It does not depend on polars, linfa or
//! wasmtime, so it builds and tests in seconds.

pub mod ast;
pub mod catalog;
pub mod check;
pub mod codes;
pub mod diagnostic;
pub mod graph;
pub mod infer;
pub mod ir;
pub mod lower;
pub mod order;
pub mod parse;
pub mod plan;
pub mod plugin_sig;
pub mod suggest;
pub mod types;
pub mod vocab;

pub use ast::{FileId, Span};
pub use diagnostic::{Diagnostic, Report, Severity};
pub use plan::Plan;
pub use plugin_sig::{PluginError, PluginSignatures};

/// The compiler's version; part of every cache key.
pub const ENGINE_VERSION: &str = concat!("mlp-compiler/", env!("CARGO_PKG_VERSION"));

/// One source file: its display name (relative to the project root, with `/`)
/// and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<usize>,
}

/// The files of a project, indexed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file. `name` is relative to the project root, with `/`.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>) -> FileId {
        // A byte-order mark is not text, and a lone carriage return ends a
        // line (old Mac files), as `\n` and `\r\n` do.
        let text: String = text.into();
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let text = if text.contains('\r') {
            text.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            text.to_string()
        };
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.files.push(SourceFile {
            name: name.into(),
            text,
            line_starts,
        });
        FileId(self.files.len() as u32 - 1)
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    pub fn name(&self, id: FileId) -> &str {
        self.files
            .get(id.0 as usize)
            .map(|f| f.name.as_str())
            .unwrap_or("<unknown>")
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files
            .get(id.0 as usize)
            .map(|f| f.text.as_str())
            .unwrap_or("")
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let Some(f) = self.files.get(id.0 as usize) else {
            return (0, 0);
        };
        let line = match f.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = f.line_starts[line];
        let end = offset.min(f.text.len());
        let col = f
            .text
            .get(start..end)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }
}

/// What the compiler asks of the outside world. The runtime implements it by
/// reading files; tests implement it with fixed answers.
pub trait World {
    /// The signatures a plugin module declares. `path` is relative to the
    /// project root (as written in the `plugin` declaration, resolved against
    /// the declaring file's folder).
    fn plugin_signatures(&self, path: &str) -> Result<PluginSignatures, PluginError>;
}

/// A world with no plugins: every plugin declaration reports its file missing.
pub struct NoPlugins;

impl World for NoPlugins {
    fn plugin_signatures(&self, path: &str) -> Result<PluginSignatures, PluginError> {
        Err(PluginError::NotFound {
            path: path.to_string(),
        })
    }
}

/// The result of compiling a project: the plan when there were no errors, and
/// every diagnostic (errors and warnings) in source order.
#[derive(Debug)]
pub struct Compilation {
    pub plan: Option<Plan>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Compilation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Parses, checks and lowers every file of a project.
pub fn compile(sources: &SourceMap, world: &dyn World) -> Compilation {
    let mut diagnostics = Vec::new();
    let mut files = Vec::new();
    for (id, f) in sources.files() {
        match parse::parse(id, &f.text) {
            Ok(ast) => files.push((id, ast)),
            Err(e) => diagnostics.push(e.to_diagnostic()),
        }
    }
    let parse_failed = !diagnostics.is_empty();
    if !parse_failed && files.iter().all(|(_, f)| f.decls.is_empty()) {
        if let Some((id, _)) = files.first() {
            diagnostics.push(
                check::CheckError::NoDeclarations {
                    span: ast::Span {
                        file: *id,
                        start: 0,
                        end: 0,
                    },
                    files: files.len(),
                }
                .to_diagnostic(),
            );
        }
    }
    let (program, check_errors) = check::check(&files, sources, world);
    diagnostics.extend(check_errors.into_iter().map(|e| e.to_diagnostic()));
    diagnostics.sort_by_key(|d| d.span().map(|s| (s.file, s.start)).unwrap_or_default());
    let plan = if parse_failed || diagnostics.iter().any(Diagnostic::is_error) {
        None
    } else {
        Some(lower::lower(&program, sources))
    };
    Compilation { plan, diagnostics }
}

/// Compiles a single source text (for tests and tools).
pub fn compile_str(name: &str, text: &str, world: &dyn World) -> (SourceMap, Compilation) {
    let mut sources = SourceMap::new();
    sources.add(name, text);
    let c = compile(&sources, world);
    (sources, c)
}
