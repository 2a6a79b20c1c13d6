//! `lower: ir::Program -> Plan`.
//!
//! Orders the stages topologically (ties broken by id, so declaration order
//! does not matter), drops spans, and computes each stage's canonical form and
//! definition hash.

use crate::ir::Program;
use crate::plan::{Origin, Plan, Stage, PLAN_VERSION};
use crate::{SourceMap, ENGINE_VERSION};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Hex SHA-256 of a string.
pub fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn lower(program: &Program, sources: &SourceMap) -> Plan {
    let by_id: BTreeMap<&str, &crate::ir::Stage> =
        program.stages.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut stages: Vec<Stage> = Vec::with_capacity(program.stages.len());
    // One schema entry per distinct column, shared by every stage that
    // passes the column on unchanged (frames share their columns).
    let mut shared: std::collections::HashMap<
        *const crate::types::Column,
        std::sync::Arc<crate::types::ColumnSchema>,
    > = std::collections::HashMap::new();
    // Where each lowered stage is in `stages`, by id.
    let mut lowered_at: BTreeMap<&str, usize> = BTreeMap::new();
    let nodes: Vec<(&str, Vec<&str>)> = program
        .stages
        .iter()
        .map(|s| (s.id.as_str(), s.inputs.iter().map(String::as_str).collect()))
        .collect();
    crate::order::topological(&nodes, |id| {
        let s = by_id[id];
        let canonical = serde_json::to_string(&s.op).unwrap_or_default();
        let (line, column) = sources.line_col(s.span.file, s.span.start);
        let mut plugins = s.plugins.clone();
        plugins.sort();
        let schema: Vec<std::sync::Arc<crate::types::ColumnSchema>> = {
            // Columns passed on from the first input, position by
            // position, reuse its entries without a look-up.
            let from = s.inputs.first().and_then(|i| {
                let frame = &by_id.get(i.as_str())?.frame;
                let schema: &Vec<std::sync::Arc<crate::types::ColumnSchema>> =
                    &stages.get(*lowered_at.get(i.as_str())?)?.schema;
                Some((&frame.columns, schema))
            });
            s.frame
                .columns
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    match from.and_then(|(cols, sch)| {
                        let same = cols.get(k).is_some_and(|p| std::sync::Arc::ptr_eq(p, c));
                        same.then(|| sch.get(k).cloned()).flatten()
                    }) {
                        Some(same) => same,
                        None => shared
                            .entry(std::sync::Arc::as_ptr(c))
                            .or_insert_with(|| std::sync::Arc::new(c.to_schema()))
                            .clone(),
                    }
                })
                .collect()
        };
        lowered_at.insert(s.id.as_str(), stages.len());
        stages.push(Stage {
            id: s.id.clone(),
            name: s.name.clone(),
            inputs: s.inputs.clone(),
            op: s.op.clone(),
            schema,
            partition_column: s.frame.split.as_ref().map(|sp| sp.column.clone()),
            plugins,
            definition_hash: sha256_hex(&canonical),
            canonical,
            origin: Origin {
                file: sources.name(s.span.file).to_string(),
                line,
                column,
            },
        });
    });
    let mut plugins = program.plugins.clone();
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    Plan {
        version: PLAN_VERSION,
        engine: ENGINE_VERSION.to_string(),
        stages,
        plugins,
    }
}

impl Plan {
    /// A hash of every stage's definition and the wiring between them: equal
    /// for two pipelines that mean the same thing.
    pub fn fingerprint(&self) -> String {
        let mut s = String::new();
        for st in &self.stages {
            s.push_str(&st.id);
            s.push('\u{1f}');
            s.push_str(&st.inputs.join(","));
            s.push('\u{1f}');
            s.push_str(&st.definition_hash);
            s.push('\n');
        }
        for p in &self.plugins {
            s.push_str(&serde_json::to_string(p).unwrap_or_default());
            s.push('\n');
        }
        sha256_hex(&s)
    }
}
