//! The typed IR: what `check` gives and `lower` takes.
//!
//! Each stage's operator is already resolved to the plan's operator types, with
//! its output [`Frame`] (columns with types, nullability, lineage and the spans
//! that defined them) and the declaration's span. `lower` orders the stages,
//! drops the spans and computes canonical forms.

use crate::ast::Span;
use crate::plan::{Op, PluginDecl};
use crate::types::Frame;

#[derive(Debug, Clone, Default)]
pub struct Program {
    pub stages: Vec<Stage>,
    pub plugins: Vec<PluginDecl>,
}

#[derive(Debug, Clone)]
pub struct Stage {
    pub id: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub op: Op,
    pub frame: Frame,
    pub plugins: Vec<String>,
    pub span: Span,
}
