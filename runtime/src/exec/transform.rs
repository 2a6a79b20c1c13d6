//! `transform`: steps in order. Fitted steps (impute with a statistic,
//! encode without declared levels, scale, bucket) learn their parameters on
//! the `train` partition only and apply them to every row; the parameters are
//! stored with the stage output (`params.json`), for serving.

use super::expr::{Kind, Translator};
use super::{input, is_train, partition_column, Context, ExecError, Output};
use mlp_compiler::check::level_suffix;
use mlp_compiler::plan::{Literal, StepOp, TransformOp};
use polars::prelude::*;
use serde_json::{json, Value};

/// A single number computed over the train rows.
fn train_stat(df: &DataFrame, part: &str, e: Expr) -> Result<Option<f64>, ExecError> {
    let out = df
        .clone()
        .lazy()
        .filter(is_train(part))
        .select([e.cast(DataType::Float64).alias("v")])
        .collect()
        .map_err(ExecError::polars)?;
    let v = out
        .column("v")
        .map_err(ExecError::polars)?
        .get(0)
        .map_err(ExecError::polars)?;
    Ok(match v {
        AnyValue::Float64(f) if f.is_finite() => Some(f),
        _ => None,
    })
}

/// Several numbers over the train rows, in one pass.
fn train_stats(
    df: &DataFrame,
    part: &str,
    exprs: Vec<(String, Expr)>,
) -> Result<std::collections::HashMap<String, Option<f64>>, ExecError> {
    let names: Vec<String> = exprs.iter().map(|(n, _)| n.clone()).collect();
    let out = df
        .clone()
        .lazy()
        .filter(is_train(part))
        .select(
            exprs
                .into_iter()
                .map(|(n, e)| e.cast(DataType::Float64).alias(n.as_str()))
                .collect::<Vec<_>>(),
        )
        .collect()
        .map_err(ExecError::polars)?;
    let mut m = std::collections::HashMap::new();
    for n in names {
        let v = out
            .column(&n)
            .map_err(ExecError::polars)?
            .get(0)
            .map_err(ExecError::polars)?;
        m.insert(
            n,
            match v {
                AnyValue::Float64(f) if f.is_finite() => Some(f),
                _ => None,
            },
        );
    }
    Ok(m)
}

fn dtype_of(df: &DataFrame, c: &str) -> Result<DataType, ExecError> {
    Ok(df.column(c).map_err(ExecError::polars)?.dtype().clone())
}

/// The distinct non-null values of a column on the train rows, sorted.
fn train_levels(df: &DataFrame, part: &str, c: &str) -> Result<Vec<String>, ExecError> {
    let out = df
        .clone()
        .lazy()
        .filter(is_train(part).and(col(c).is_not_null()))
        .select([col(c)
            .cast(DataType::String)
            .unique()
            .sort(SortOptions::default())
            .alias("v")])
        .collect()
        .map_err(ExecError::polars)?;
    let s = out.column("v").map_err(ExecError::polars)?;
    Ok(s.str()
        .map_err(ExecError::polars)?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect())
}

pub fn run(op: &TransformOp, cx: &Context) -> Result<Output, ExecError> {
    let mut df = input(cx)?;
    let part = partition_column(cx);
    let need_part = || {
        part.clone()
            .ok_or_else(|| ExecError::Internal("a fitted step on a stage without a split".into()))
    };
    let mut params: Vec<Value> = vec![];
    for step in &op.steps {
        match step {
            StepOp::Impute {
                columns,
                method,
                value,
            } => {
                let mut fitted = serde_json::Map::new();
                let mut exprs = vec![];
                let stats = if method == "mean" || method == "median" {
                    let p = need_part()?;
                    train_stats(
                        &df,
                        &p,
                        columns
                            .iter()
                            .map(|c| {
                                let x = col(c.as_str()).cast(DataType::Float64);
                                (
                                    c.clone(),
                                    if method == "mean" {
                                        x.mean()
                                    } else {
                                        x.median()
                                    },
                                )
                            })
                            .collect(),
                    )?
                } else {
                    Default::default()
                };
                for c in columns {
                    let dt = dtype_of(&df, c)?;
                    let fill: Expr = match (method.as_str(), value) {
                        ("value", Some(v)) => {
                            fitted.insert(c.clone(), super::any_to_json(&lit_any(v)));
                            super::expr::literal(v).cast(dt.clone())
                        }
                        ("mean" | "median", _) => {
                            let v = stats.get(c).copied().flatten().ok_or_else(|| {
                                ExecError::Data(format!(
                                    "cannot impute `{c}` with the {method}: it has no values in `train`"
                                ))
                            })?;
                            fitted.insert(c.clone(), json!(v));
                            lit(v)
                        }
                        _ => {
                            // mode: the most frequent train value, the
                            // smallest on a tie.
                            let p = need_part()?;
                            let m = df
                                .clone()
                                .lazy()
                                .filter(is_train(&p).and(col(c.as_str()).is_not_null()))
                                .select([col(c.as_str())
                                    .mode(false)
                                    .sort(SortOptions::default())
                                    .first()
                                    .alias("v")])
                                .collect()
                                .map_err(ExecError::polars)?;
                            let v = m
                                .column("v")
                                .map_err(ExecError::polars)?
                                .get(0)
                                .map_err(ExecError::polars)?
                                .into_static();
                            if matches!(v, AnyValue::Null) {
                                return Err(ExecError::Data(format!(
                                    "cannot impute `{c}` with the mode: it has no values in `train`"
                                )));
                            }
                            fitted.insert(c.clone(), super::any_to_json(&v));
                            lit(Scalar::new(dt.clone(), v))
                        }
                    };
                    let target = if method == "mean" || method == "median" {
                        DataType::Float64
                    } else {
                        dt
                    };
                    exprs.push(
                        col(c.as_str())
                            .cast(target.clone())
                            .fill_null(fill.cast(target)),
                    );
                }
                df = df
                    .lazy()
                    .with_columns(exprs)
                    .collect()
                    .map_err(ExecError::polars)?;
                params.push(json!({"step": "impute", "method": method, "values": fitted}));
            }
            StepOp::Encode {
                column,
                method,
                levels,
                unknown,
                ..
            } => {
                let levels = match levels {
                    Some(l) => l.clone(),
                    None => train_levels(&df, &need_part()?, column)?,
                };
                let text = col(column.as_str()).cast(DataType::String);
                if unknown == "error" {
                    let known = levels
                        .iter()
                        .map(|l| text.clone().eq(lit(l.as_str())))
                        .reduce(|a, b| a.or(b))
                        .unwrap_or(lit(false));
                    let bad = df
                        .clone()
                        .lazy()
                        .with_row_index("__row", Some(1))
                        .filter(text.clone().is_not_null().and(known.not()))
                        .select([col("__row"), col(column.as_str()).cast(DataType::String)])
                        .limit(1)
                        .collect()
                        .map_err(ExecError::polars)?;
                    if bad.height() > 0 {
                        let rec = super::records(&bad, 1);
                        return Err(ExecError::Data(format!(
                            "`encode {column}` met a level not seen in training ({}) and `unknown = error`",
                            serde_json::to_string(&rec).unwrap_or_default()
                        )));
                    }
                }
                let new: Vec<Expr> = if method == "ordinal" {
                    // Unknown levels and nulls are -1.
                    let mut ord = lit(-1i64);
                    for (i, l) in levels.iter().enumerate().rev() {
                        ord = when(text.clone().eq(lit(l.as_str())).fill_null(lit(false)))
                            .then(lit(i as i64))
                            .otherwise(ord);
                    }
                    vec![ord.cast(DataType::Int64).alias(format!("{column}_ordinal"))]
                } else {
                    levels
                        .iter()
                        .map(|l| {
                            text.clone()
                                .eq(lit(l.as_str()))
                                .fill_null(lit(false))
                                .cast(DataType::Float64)
                                .alias(format!("{column}_{}", level_suffix(l)))
                        })
                        .collect()
                };
                // New columns go right after the original, as the checker
                // laid out the schema.
                let names: Vec<String> = df
                    .get_column_names()
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let pos = names
                    .iter()
                    .position(|n| n == column)
                    .unwrap_or(names.len());
                let added = df
                    .clone()
                    .lazy()
                    .select(new)
                    .collect()
                    .map_err(ExecError::polars)?;
                let mut cols: Vec<Column> = df.columns().to_vec();
                let extra: Vec<Column> = added.columns().to_vec();
                for (k, c) in extra.into_iter().enumerate() {
                    cols.insert(pos + 1 + k, c);
                }
                df = DataFrame::new_infer_height(cols).map_err(ExecError::polars)?;
                params.push(json!({"step": "encode", "column": column, "method": method, "levels": levels, "unknown": unknown}));
            }
            StepOp::Scale { columns, method } => {
                let p = need_part()?;
                let mut fitted = serde_json::Map::new();
                let mut exprs = vec![];
                let x = |c: &str| col(c).cast(DataType::Float64);
                let mut wanted = vec![];
                for c in columns {
                    let c = c.as_str();
                    match method.as_str() {
                        "standard" => {
                            wanted.push((format!("{c}\u{1f}a"), x(c).mean()));
                            wanted.push((format!("{c}\u{1f}b"), x(c).std(0)));
                        }
                        "minmax" => {
                            wanted.push((format!("{c}\u{1f}a"), x(c).min()));
                            wanted.push((format!("{c}\u{1f}b"), x(c).max() - x(c).min()));
                        }
                        _ => {
                            wanted.push((format!("{c}\u{1f}a"), x(c).median()));
                            wanted.push((
                                format!("{c}\u{1f}b"),
                                x(c).quantile(lit(0.75), QuantileMethod::Linear)
                                    - x(c).quantile(lit(0.25), QuantileMethod::Linear),
                            ));
                        }
                    }
                }
                let stats = train_stats(&df, &p, wanted)?;
                for c in columns {
                    let center = stats.get(&format!("{c}\u{1f}a")).copied().flatten();
                    let spread = stats.get(&format!("{c}\u{1f}b")).copied().flatten();
                    let center = center.ok_or_else(|| {
                        ExecError::Data(format!("cannot scale `{c}`: it has no values in `train`"))
                    })?;
                    // A constant column scales by 1 rather than dividing by 0.
                    let spread = spread.filter(|s| *s > 0.0).unwrap_or(1.0);
                    fitted.insert(c.clone(), json!({"center": center, "scale": spread}));
                    exprs.push(((x(c) - lit(center)) / lit(spread)).alias(c.as_str()));
                }
                df = df
                    .lazy()
                    .with_columns(exprs)
                    .collect()
                    .map_err(ExecError::polars)?;
                params.push(json!({"step": "scale", "method": method, "values": fitted}));
            }
            StepOp::Clip { columns, lo, hi } => {
                let mut exprs = vec![];
                for c in columns {
                    let dt = dtype_of(&df, c)?;
                    let int = dt == DataType::Int64
                        && lo.is_none_or(|v| v.fract() == 0.0)
                        && hi.is_none_or(|v| v.fract() == 0.0);
                    let bound = |v: f64| if int { lit(v as i64) } else { lit(v) };
                    let mut e = if int {
                        col(c.as_str())
                    } else {
                        col(c.as_str()).cast(DataType::Float64)
                    };
                    if let Some(l) = lo {
                        e = e.clip_min(bound(*l));
                    }
                    if let Some(h) = hi {
                        e = e.clip_max(bound(*h));
                    }
                    exprs.push(e.alias(c.as_str()));
                }
                df = df
                    .lazy()
                    .with_columns(exprs)
                    .collect()
                    .map_err(ExecError::polars)?;
            }
            StepOp::Bucket { column, quantiles } => {
                let p = need_part()?;
                let x = || col(column.as_str()).cast(DataType::Float64);
                let mut edges = vec![];
                for i in 1..*quantiles {
                    let q = i as f64 / *quantiles as f64;
                    if let Some(e) =
                        train_stat(&df, &p, x().quantile(lit(q), QuantileMethod::Linear))?
                    {
                        edges.push(e);
                    }
                }
                let idx = edges
                    .iter()
                    .map(|e| x().gt(lit(*e)).cast(DataType::Int64))
                    .reduce(|a, b| a + b)
                    .unwrap_or(lit(0i64));
                let idx = when(x().is_null())
                    .then(lit(NULL).cast(DataType::Int64))
                    .otherwise(idx);
                df = df
                    .lazy()
                    .with_column(idx.alias(column.as_str()))
                    .collect()
                    .map_err(ExecError::polars)?;
                params.push(json!({"step": "bucket", "column": column, "edges": edges}));
            }
            StepOp::Drop { columns } => {
                df = df.drop_many(columns.iter().map(String::as_str));
            }
            StepOp::Keep { columns } => {
                // The named columns, the partition column, and the encoded
                // columns of a named encoded original.
                let keep: Vec<String> = df
                    .get_column_names()
                    .iter()
                    .map(|c| c.to_string())
                    .filter(|c| {
                        columns.contains(c)
                            || Some(c) == part.as_ref()
                            || columns
                                .iter()
                                .any(|k| c.starts_with(&format!("{k}_")) && is_encoded_of(cx, k, c))
                    })
                    .collect();
                df = df
                    .select(keep.iter().map(String::as_str))
                    .map_err(ExecError::polars)?;
            }
            StepOp::Rename { from, to } => {
                df.rename(from, to.as_str().into())
                    .map_err(ExecError::polars)?;
            }
            StepOp::Filter { expr, .. } => {
                let names = frame_kinds(&df, cx);
                let types = |n: &str| names.get(n).cloned();
                let tr = Translator { types: &types };
                let (e, _) = tr.expr(expr)?;
                df = df
                    .lazy()
                    .filter(e.fill_null(lit(false)))
                    .collect()
                    .map_err(ExecError::polars)?;
            }
        }
    }
    Ok(Output {
        frame: Some(df),
        json: vec![("params".into(), json!({ "steps": params }))],
        ..Output::default()
    })
}

/// Whether `name` is an encoded column of `original` in the stage's output
/// schema (listed by name, or as the one-hot group of `original`).
fn is_encoded_of(cx: &Context, original: &str, name: &str) -> bool {
    cx.stage
        .schema
        .iter()
        .any(|c| c.name == name || c.group_of.as_deref() == Some(original))
}

/// The kind of every column of a frame, for expression translation.
pub fn frame_kinds(df: &DataFrame, cx: &Context) -> std::collections::HashMap<String, Kind> {
    df.schema()
        .iter()
        .map(|(n, dt)| (n.to_string(), kind_of_dtype(dt, cx, n)))
        .collect()
}

/// The kind of a column for expression translation: from the stage's input
/// schema when the column is there, else from the polars type.
pub fn kind_of_dtype(dt: &DataType, cx: &Context, name: &str) -> Kind {
    if let Some(c) = cx.stage.schema.iter().find(|c| c.name == name) {
        return Kind::of(&c.ty);
    }
    match dt {
        DataType::Int64 | DataType::Int32 => Kind::Int,
        DataType::Float64 | DataType::Float32 => Kind::Float,
        DataType::Boolean => Kind::Bool,
        DataType::Date => Kind::Date("%Y-%m-%d".into()),
        DataType::Datetime(..) => Kind::Datetime("%Y-%m-%dT%H:%M:%S".into()),
        _ => Kind::Str,
    }
}

fn lit_any(v: &Literal) -> AnyValue<'static> {
    match v {
        Literal::Null(()) => AnyValue::Null,
        Literal::Bool(b) => AnyValue::Boolean(*b),
        Literal::Int(i) => AnyValue::Int64(*i),
        Literal::Float(f) => AnyValue::Float64(*f),
        Literal::Str(s) => AnyValue::StringOwned(s.as_str().into()),
    }
}
