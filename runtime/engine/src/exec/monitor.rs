//! `monitor` at training time: the declared drift rules checked on the
//! held-out rows against the train rows. Serving data is checked later by
//! `mlp monitor` and `mlp serve` (with the rules the bundle carries); here a
//! rule that already fails on rows drawn like the training rows is caught
//! before it pages anyone: the run warns and says which.

use super::{input, Context, ExecError, Output};
use crate::monitor::{column_report, DEFAULT_PSI};
use mlp_compiler::plan::{DriftOp, MonitorOp, Op};
use polars::prelude::*;
use serde_json::json;

pub fn run(op: &MonitorOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let part = cx
        .stage
        .partition_column
        .clone()
        .unwrap_or_else(|| mlp_compiler::plan::names::PARTITION.into());
    let target = cx
        .plan
        .stages
        .iter()
        .find_map(|s| match &s.op {
            Op::Model(m) if s.id == format!("model.{}", op.model) => Some(m.target.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let stats = super::deploy::training_stats(&df, &part, &[part.as_str(), target.as_str()])?;
    let held_out = df
        .lazy()
        .filter(col(part.as_str()).neq(lit("train")))
        .collect()
        .map_err(ExecError::polars)?;
    let default_rules = op.drift.is_empty();
    let mut columns: Vec<String> = op.drift.iter().map(|d| d.column.clone()).collect();
    columns.dedup();
    if default_rules {
        // One-hot columns are compared as their original category.
        let dummies: Vec<String> = cx
            .stage
            .schema
            .iter()
            .filter(|c| c.group_of.is_some())
            .map(|c| c.name.trim_end_matches('*').to_string())
            .collect();
        columns = stats
            .as_object()
            .map(|o| {
                o.keys()
                    .filter(|k| !dummies.iter().any(|d| k.starts_with(d.as_str())))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
    }
    let mut out = Output::default();
    let mut reports = vec![];
    let mut breached = vec![];
    for name in &columns {
        let (Some(s), Ok(current)) = (stats.get(name), held_out.column(name)) else {
            continue;
        };
        let rules: Vec<&DriftOp> = op.drift.iter().filter(|d| &d.column == name).collect();
        let r = column_report(name, s, current, &rules, default_rules)?;
        for st in r.stats.iter().filter(|s| s.rule.is_some()) {
            let shown = match st.p_value {
                Some(p) if st.rule.as_deref().is_some_and(|t| t.contains(" p ")) => {
                    format!("p {p:.4}")
                }
                _ => format!("{:.4}", st.value),
            };
            out.notes.push(format!(
                "`{name}` held-out vs train: {} {shown} ({}{})",
                st.stat,
                st.rule.as_deref().unwrap_or(""),
                if st.breached { ": breached" } else { ": ok" }
            ));
        }
        if r.drifting {
            breached.push(name.clone());
        }
        reports.push(r);
    }
    if !breached.is_empty() {
        out.notes.push(format!(
            "warning: the held-out rows already breach the drift rules of {} against the train rows; these rules would alert on data like the training data: revisit the thresholds",
            breached.join(", ")
        ));
    }
    if default_rules {
        out.notes.push(format!(
            "no `drift` rule declared: `mlp monitor` and the server use psi < {DEFAULT_PSI} for every feature"
        ));
    }
    out.json.push((
        "report".into(),
        json!({ "held_out_vs_train": serde_json::to_value(&reports).map_err(|e| ExecError::Internal(e.to_string()))? }),
    ));
    Ok(out)
}
