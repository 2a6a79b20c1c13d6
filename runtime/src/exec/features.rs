//! `features`: each line adds or replaces a column, in order.
//!
//! `AGG(x) over KEYS` is a lookup table fitted on `train`: the aggregate of
//! `x` over the train rows of each key, joined to every row by its keys; a
//! key with no train rows gets the aggregate over all of `train`. The tables
//! are stored with the stage output (`over_<feature>.arrow`) for serving.

use super::expr::{dtype, Translator};
use super::transform::frame_kinds;
use super::{input, is_train, partition_column, Context, ExecError, Output};
use mlp_compiler::plan::{Expr as PExpr, FeaturesOp};
use polars::prelude::*;

fn aggregate(agg: &str, e: Expr) -> Expr {
    match agg {
        "mean" => e.mean(),
        "median" => e.median(),
        "sum" => e.sum(),
        "count" => e.count(),
        "min" => e.min(),
        "max" => e.max(),
        _ => e.std(1),
    }
}

pub fn run(op: &FeaturesOp, cx: &Context) -> Result<Output, ExecError> {
    let mut df = input(cx)?;
    let mut out = Output::default();
    for f in &op.features {
        let kinds = frame_kinds(&df, cx);
        let types = |n: &str| kinds.get(n).cloned();
        let tr = Translator { types: &types };
        let value = match &f.expr {
            PExpr::Over { agg, arg, keys } => {
                let part = partition_column(cx).ok_or_else(|| {
                    ExecError::Internal("`over` on a stage without a split".into())
                })?;
                let (x, _) = tr.expr(arg)?;
                let x = if agg == "count" {
                    x
                } else {
                    x.cast(DataType::Float64)
                };
                let keyed: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
                // The lookup table, from the train rows only.
                let table = df
                    .clone()
                    .lazy()
                    .filter(is_train(&part))
                    .group_by_stable(keyed.clone())
                    .agg([aggregate(agg, x.clone()).alias("value")])
                    .sort(
                        keys.iter().map(String::as_str).collect::<Vec<_>>(),
                        SortMultipleOptions::default(),
                    )
                    .collect()
                    .map_err(ExecError::polars)?;
                let global = df
                    .clone()
                    .lazy()
                    .filter(is_train(&part))
                    .select([aggregate(agg, x.clone())
                        .cast(DataType::Float64)
                        .alias("value")])
                    .collect()
                    .map_err(ExecError::polars)?;
                let global = match global
                    .column("value")
                    .map_err(ExecError::polars)?
                    .get(0)
                    .map_err(ExecError::polars)?
                {
                    AnyValue::Float64(v) => v,
                    _ => 0.0,
                };
                out.frames.push((format!("over_{}", f.name), table));
                // The same values, computed in place: the aggregate of the
                // train rows' values within each key, for every row.
                let masked = when(is_train(&part)).then(x).otherwise(lit(NULL));
                let windowed = aggregate(agg, masked)
                    .over(keyed)
                    .map_err(ExecError::polars)?;
                let filled = if agg == "count" {
                    // A key without train rows counts zero.
                    windowed.cast(DataType::Int64)
                } else {
                    windowed.cast(DataType::Float64).fill_null(lit(global))
                };
                out.notes.push(format!(
                    "`{}`: {} groups fitted on train",
                    f.name,
                    out.frames.last().map(|(_, t)| t.height()).unwrap_or(0)
                ));
                filled
            }
            other => tr.expr(other)?.0,
        };
        df = df
            .lazy()
            .with_column(value.cast(dtype(&f.ty)).alias(f.name.as_str()))
            .collect()
            .map_err(ExecError::polars)?;
    }
    out.frame = Some(df);
    Ok(out)
}
