//! Diagnostics: the one shape every stage's error takes before it is shown.
//!
//! Stages keep their own error enums ([`crate::parse::ParseError`],
//! [`crate::check::CheckError`]) with the data needed for suggestions; each
//! converts into a [`Diagnostic`] here. Rendering is not done here: the
//! [`Report`] type implements `miette::Diagnostic` and the binary chooses the
//! handler (graphical, or JSON via [`Diagnostic::to_json`]).

use crate::ast::{FileId, Span};
use crate::SourceMap;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
    pub primary: bool,
}

/// A problem found in the source, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: Severity::Error,
            message: message.into(),
            labels: vec![],
            help: None,
        }
    }
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }
    pub fn primary(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
            primary: true,
        });
        self
    }
    pub fn secondary(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            text: text.into(),
            primary: false,
        });
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }

    /// The span of the primary label.
    pub fn span(&self) -> Option<Span> {
        self.labels
            .iter()
            .find(|l| l.primary)
            .or(self.labels.first())
            .map(|l| l.span)
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The machine-readable form used by `mlp check --json`.
    pub fn to_json(&self, sources: &SourceMap) -> JsonDiagnostic {
        let (file, line, column, end_line, end_column) = match self.span() {
            Some(s) => {
                let (l, c) = sources.line_col(s.file, s.start);
                let (el, ec) = sources.line_col(s.file, s.end);
                (sources.name(s.file).to_string(), l, c, el, ec)
            }
            None => (String::new(), 0, 0, 0, 0),
        };
        JsonDiagnostic {
            code: self.code,
            severity: self.severity,
            message: self.message.clone(),
            file,
            line,
            column,
            end_line,
            end_column,
            label: self
                .labels
                .iter()
                .find(|l| l.primary)
                .map(|l| l.text.clone()),
            help: self.help.clone(),
        }
    }
}

/// One diagnostic as JSON: positions are 1-based lines and columns.
#[derive(Debug, Clone, Serialize)]
pub struct JsonDiagnostic {
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub label: Option<String>,
    pub help: Option<String>,
}

/// A diagnostic bound to its source text, so miette can render it.
///
/// Labels in other files than the primary one are turned into notes, since a
/// miette report shows one source.
#[derive(Debug)]
pub struct Report {
    diagnostic: Diagnostic,
    source: miette::NamedSource<String>,
    file: FileId,
    extra: Vec<String>,
}

impl Report {
    pub fn new(diagnostic: Diagnostic, sources: &SourceMap) -> Self {
        let file = diagnostic.span().map(|s| s.file).unwrap_or_default();
        let mut extra = Vec::new();
        // A label far along a very long line (a generated pipeline's) cannot
        // be drawn under it: every label becomes a note with its place.
        let text = sources.text(file);
        let long = diagnostic
            .labels
            .iter()
            .any(|l| l.span.file == file && column_at(text, l.span.end) > MAX_DRAWN_COLUMN);
        let mut diagnostic = diagnostic;
        for l in &diagnostic.labels {
            if l.span.file != file || long {
                let (line, col) = sources.line_col(l.span.file, l.span.start);
                extra.push(format!(
                    "{}:{line}:{col}: {}",
                    sources.name(l.span.file),
                    l.text
                ));
            }
        }
        if long {
            diagnostic.labels.clear();
        }
        let source = miette::NamedSource::new(sources.name(file), sources.text(file).to_string());
        Report {
            diagnostic,
            source,
            file,
            extra,
        }
    }
}

/// The furthest along its line (in bytes) a label is drawn; past it,
/// labels are notes naming their line and column (the renderer cannot pad
/// past 65,535 columns, and a label drawn thousands of columns along is
/// off every screen).
const MAX_DRAWN_COLUMN: usize = 1000;

/// How far byte `at` is from the start of its line.
fn column_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    let start = text.as_bytes()[..at]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    at - start
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        let mut parts: Vec<String> = self.extra.clone();
        if let Some(h) = &self.diagnostic.help {
            parts.push(h.clone());
        }
        if parts.is_empty() {
            None
        } else {
            Some(Box::new(parts.join("\n")))
        }
    }
    fn url<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        None
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let file = self.file;
        Some(Box::new(
            self.diagnostic
                .labels
                .iter()
                .filter(move |l| l.span.file == file)
                .map(|l| {
                    let len = l.span.end.saturating_sub(l.span.start);
                    let text = if l.text.is_empty() {
                        None
                    } else {
                        Some(l.text.clone())
                    };
                    if l.primary {
                        miette::LabeledSpan::new_primary_with_span(text, (l.span.start, len))
                    } else {
                        miette::LabeledSpan::new_with_span(text, (l.span.start, len))
                    }
                }),
        ))
    }
}
