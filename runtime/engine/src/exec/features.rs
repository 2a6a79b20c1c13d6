//! `features`: each line adds or replaces a column, in order.
//!
//! `AGG(x) over KEYS` is a lookup table fitted on `train`: the aggregate of
//! `x` over the train rows of each key, joined to every row by its keys; a
//! key with no train rows gets the aggregate over all of `train` (`count`:
//! zero). Training and serving use the same join ([`apply_over`]) on the same
//! stored table (`over_<feature>.arrow`, with the fallback in
//! `over.json`), so a row gets the same value in both.

use super::expr::{dtype, Translator};
use super::transform::frame_kinds_of;
use super::{input, is_train, partition_column, Context, ExecError, Output};
use crate::plugins::Plugins;
use mlp_compiler::plan::{Aggregate, Expr as PExpr, FeaturesOp, Stage};
use polars::prelude::*;
use std::collections::BTreeMap;

/// The value column of an `over` table.
pub const VALUE: &str = "__over_value";

fn aggregate(agg: Aggregate, e: Expr) -> Expr {
    match agg {
        Aggregate::Mean => e.mean(),
        Aggregate::Median => e.median(),
        Aggregate::Sum => e.sum(),
        Aggregate::Count => e.count(),
        Aggregate::Min => e.min(),
        Aggregate::Max => e.max(),
        Aggregate::Std => e.std(1),
    }
}

/// A fitted `over` table and its fallback for unseen keys.
pub struct OverTable {
    pub table: DataFrame,
    pub fallback: f64,
}

/// Fits the lookup table of `agg(arg) over keys` on the train rows.
pub fn fit_over(
    agg: Aggregate,
    arg: &PExpr,
    keys: &[String],
    df: &DataFrame,
    part: &str,
    stage: &Stage,
    plugins: &Plugins,
) -> Result<OverTable, ExecError> {
    let kinds = frame_kinds_of(df, stage);
    let types = |n: &str| kinds.get(n).cloned();
    let (x, _) = Translator {
        types: &types,
        plugins,
    }
    .expr(arg)?;
    let x = if agg == Aggregate::Count {
        x
    } else {
        x.cast(DataType::Float64)
    };
    let keyed: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    let train = df.clone().lazy().filter(is_train(part));
    let table = train
        .clone()
        .group_by_stable(keyed)
        .agg([aggregate(agg, x.clone())
            .cast(DataType::Float64)
            .alias(VALUE)])
        .sort(
            keys.iter().map(String::as_str).collect::<Vec<_>>(),
            SortMultipleOptions::default(),
        )
        .collect()
        .map_err(ExecError::polars)?;
    let fallback = if agg == Aggregate::Count {
        0.0
    } else {
        let g = train
            .select([aggregate(agg, x).cast(DataType::Float64).alias(VALUE)])
            .collect()
            .map_err(ExecError::polars)?;
        match g
            .column(VALUE)
            .map_err(ExecError::polars)?
            .get(0)
            .map_err(ExecError::polars)?
        {
            AnyValue::Float64(v) if v.is_finite() => v,
            _ => 0.0,
        }
    };
    Ok(OverTable { table, fallback })
}

/// The feature's values for every row of `df`: the table joined by the keys,
/// the fallback where a key is unseen.
pub fn apply_over(keys: &[String], t: &OverTable, df: &DataFrame) -> Result<Series, ExecError> {
    let keyed: Vec<Expr> = keys.iter().map(|k| col(k.as_str())).collect();
    // The table's key columns take the frame's types (a table read back from
    // a bundle may hold them differently).
    let mut casts = vec![];
    for k in keys {
        let dt = df.column(k).map_err(ExecError::polars)?.dtype().clone();
        casts.push(col(k.as_str()).cast(dt));
    }
    let table = t.table.clone().lazy().with_columns(casts);
    let out = df
        .clone()
        .lazy()
        .select(keyed.clone())
        .with_row_index("__row", None)
        .join(table, keyed.clone(), keyed, JoinArgs::new(JoinType::Left))
        .sort(["__row"], SortMultipleOptions::default())
        .select([col(VALUE).fill_null(lit(t.fallback))])
        .collect()
        .map_err(ExecError::polars)?;
    Ok(out
        .column(VALUE)
        .map_err(ExecError::polars)?
        .as_materialized_series()
        .clone())
}

/// Computes every feature on `df`; `tables` holds the fitted `over` tables
/// (serving), or is filled by fitting them on the train rows (training).
pub fn compute(
    op: &FeaturesOp,
    mut df: DataFrame,
    stage: &Stage,
    tables: &mut BTreeMap<String, OverTable>,
    fit_part: Option<&str>,
    plugins: &Plugins,
) -> Result<DataFrame, ExecError> {
    for f in &op.features {
        let value: Expr = match &f.expr {
            PExpr::Over { agg, arg, keys } => {
                if !tables.contains_key(&f.name) {
                    let part = fit_part.ok_or_else(|| {
                        ExecError::Internal(format!("no fitted table for `{}`", f.name))
                    })?;
                    let t = fit_over(*agg, arg, keys, &df, part, stage, plugins)?;
                    tables.insert(f.name.clone(), t);
                }
                let t = &tables[&f.name];
                let values = apply_over(keys, t, &df)?;
                lit(values)
            }
            other => {
                let kinds = frame_kinds_of(&df, stage);
                let types = |n: &str| kinds.get(n).cloned();
                Translator {
                    types: &types,
                    plugins,
                }
                .expr(other)?
                .0
            }
        };
        let rows = df.height();
        df = super::collect_rows(
            df.lazy()
                .with_column(value.cast(dtype(&f.ty)).alias(f.name.as_str())),
            rows,
        )?;
    }
    Ok(df)
}

pub fn run(op: &FeaturesOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let part = partition_column(cx);
    let mut tables = BTreeMap::new();
    let df = compute(op, df, cx.stage, &mut tables, part.as_deref(), cx.plugins)?;
    let mut out = Output {
        frame: Some(df),
        ..Output::default()
    };
    let mut fallbacks = serde_json::Map::new();
    for (name, t) in tables {
        out.notes.push(format!(
            "`{name}`: {} groups fitted on train",
            t.table.height()
        ));
        fallbacks.insert(name.clone(), serde_json::json!(t.fallback));
        out.frames.push((format!("over_{name}"), t.table));
    }
    if !fallbacks.is_empty() {
        out.json
            .push(("over".into(), serde_json::Value::Object(fallbacks)));
    }
    Ok(out)
}
