//! `transform`: steps in order. Fitted steps (impute with a statistic,
//! encode without declared levels, scale, bucket) learn their parameters on
//! the `train` partition only and apply them to every row; the parameters are
//! stored with the stage output (`params.json`), for serving.

use super::expr::{Kind, Translator};
use super::{input, is_train, partition_column, Context, ExecError, Output};
use mlp_compiler::plan::{
    EncodeMethod, ImputeMethod, Literal, ScaleMethod, StepOp, TransformOp, UnknownLevel,
};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

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

/// Each column's median over the train rows (as polars' `median`: the
/// middle value, or between the two middle values by linear
/// interpolation; nulls left out; `None` without values), by selection
/// rather than a sort, the columns on every core.
fn train_medians(
    df: &DataFrame,
    part: &str,
    columns: &[String],
) -> Result<std::collections::HashMap<String, Option<f64>>, ExecError> {
    use rayon::prelude::*;
    // The train rows, read from each column
    // as it is, without a filtered copy of the frame.
    let train = super::train_flags(df, part)?;
    let medians: Vec<Option<f64>> = columns
        .par_iter()
        .map(|c| {
            let s = df.column(c)?.cast(&DataType::Float64)?;
            let ca = s.f64()?;
            let values = ca.iter().zip(&train).filter_map(|(v, &t)| v.filter(|_| t));
            Ok(median_of(values.collect()))
        })
        .collect::<PolarsResult<_>>()
        .map_err(ExecError::polars)?;
    Ok(columns.iter().cloned().zip(medians).collect())
}

/// The median of `v` as polars computes it (`quantile(0.5, Linear)`: NaN
/// sorts last; two middle values are interpolated half way, `lower +
/// 0.5 * (upper - lower)`, unless equal).
fn median_of(mut v: Vec<f64>) -> Option<f64> {
    let order = |a: &f64, b: &f64| {
        a.partial_cmp(b)
            .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
    };
    let n = v.len();
    if n == 0 {
        return None;
    }
    let float_idx = (n as f64 - 1.0) * 0.5;
    let idx = float_idx as usize;
    let (_, lower, rest) = v.select_nth_unstable_by(idx, order);
    let lower = *lower;
    if float_idx.ceil() as usize == idx {
        return Some(lower);
    }
    let upper = rest.iter().copied().min_by(order)?;
    Some(if lower == upper {
        lower
    } else {
        (float_idx - idx as f64) * (upper - lower) + lower
    })
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

/// What one step learned on the train rows (or `None` for steps that learn
/// nothing). Stored in `params.json`, one per step, and all serving needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "fitted", rename_all = "snake_case")]
pub enum Fitted {
    /// The fill value of each column (a JSON number, string or bool).
    Impute {
        values: BTreeMap<String, Value>,
    },
    /// The levels, in the order of the encoded columns.
    Encode {
        levels: Vec<String>,
    },
    /// Centre and scale of each column: `(x - centre) / scale`.
    Scale {
        values: BTreeMap<String, (f64, f64)>,
    },
    /// Inner bucket edges: the bucket is the number of edges below a value.
    Bucket {
        edges: Vec<f64>,
    },
    None,
}

/// Learns one step's parameters from the train rows of `df`.
pub fn fit(step: &StepOp, df: &DataFrame, part: Option<&str>) -> Result<Fitted, ExecError> {
    let need_part = || {
        part.map(str::to_string)
            .ok_or_else(|| ExecError::Internal("a fitted step on a stage without a split".into()))
    };
    Ok(match step {
        StepOp::Impute {
            columns,
            method,
            value,
        } => {
            let mut values = BTreeMap::new();
            match (method, value) {
                (ImputeMethod::Value, Some(v)) => {
                    for c in columns {
                        values.insert(c.clone(), super::any_to_json(&lit_any(v)));
                    }
                }
                (ImputeMethod::Value, None) => {
                    return Err(ExecError::Internal(
                        "`impute ... with` a value but no value in the plan".into(),
                    ))
                }
                (ImputeMethod::Mean | ImputeMethod::Median, _) => {
                    let p = need_part()?;
                    let stats = if *method == ImputeMethod::Median {
                        train_medians(df, &p, columns)?
                    } else {
                        train_stats(
                            df,
                            &p,
                            columns
                                .iter()
                                .map(|c| {
                                    (c.clone(), col(c.as_str()).cast(DataType::Float64).mean())
                                })
                                .collect(),
                        )?
                    };
                    for c in columns {
                        let v = stats.get(c).copied().flatten().ok_or_else(|| {
                            ExecError::Data(format!(
                                "cannot impute `{c}` with the {method}: it has no values in `train`"
                            ))
                        })?;
                        values.insert(c.clone(), json!(v));
                    }
                }
                (ImputeMethod::Mode, _) => {
                    // mode: the most frequent train value, the smallest on a tie.
                    let p = need_part()?;
                    for c in columns {
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
                            .map_err(ExecError::polars)?;
                        if matches!(v, AnyValue::Null) {
                            return Err(ExecError::Data(format!(
                                "cannot impute `{c}` with the mode: it has no values in `train`"
                            )));
                        }
                        values.insert(c.clone(), super::any_to_json(&v));
                    }
                }
            }
            Fitted::Impute { values }
        }
        StepOp::Encode { column, levels, .. } => Fitted::Encode {
            levels: match levels {
                Some(l) => l.clone(),
                None => train_levels(df, &need_part()?, column)?,
            },
        },
        StepOp::Scale { columns, method } => {
            let p = need_part()?;
            let x = |c: &str| col(c).cast(DataType::Float64);
            let mut wanted = vec![];
            for c in columns {
                let c = c.as_str();
                let (a, b) = match method {
                    ScaleMethod::Standard => (x(c).mean(), x(c).std(0)),
                    ScaleMethod::Minmax => (x(c).min(), x(c).max() - x(c).min()),
                    ScaleMethod::Robust => (
                        x(c).median(),
                        x(c).quantile(lit(0.75), QuantileMethod::Linear)
                            - x(c).quantile(lit(0.25), QuantileMethod::Linear),
                    ),
                };
                wanted.push((format!("{c}\u{1f}a"), a));
                wanted.push((format!("{c}\u{1f}b"), b));
            }
            let stats = train_stats(df, &p, wanted)?;
            let mut values = BTreeMap::new();
            for c in columns {
                let center = stats
                    .get(&format!("{c}\u{1f}a"))
                    .copied()
                    .flatten()
                    .ok_or_else(|| {
                        ExecError::Data(format!("cannot scale `{c}`: it has no values in `train`"))
                    })?;
                // A constant column scales by 1 rather than dividing by 0.
                let spread = stats
                    .get(&format!("{c}\u{1f}b"))
                    .copied()
                    .flatten()
                    .filter(|s| *s > 0.0)
                    .unwrap_or(1.0);
                values.insert(c.clone(), (center, spread));
            }
            Fitted::Scale { values }
        }
        StepOp::Bucket { column, quantiles } => {
            // The train values sorted once: every quantile is then a look-up
            // (linear interpolation, as polars' and numpy's), O(n log n).
            let p = need_part()?;
            let train = df
                .clone()
                .lazy()
                .filter(is_train(&p))
                .select([col(column.as_str()).cast(DataType::Float64)])
                .collect()
                .map_err(ExecError::polars)?;
            let mut v: Vec<f64> = train
                .column(column)
                .map_err(ExecError::polars)?
                .f64()
                .map_err(ExecError::polars)?
                .iter()
                .flatten()
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            // No more buckets than distinct train values.
            let distinct = 1 + v.windows(2).filter(|w| w[0] != w[1]).count();
            let n = (*quantiles as usize).min(distinct).max(1);
            let quantile = |q: f64| {
                let h = (v.len() - 1) as f64 * q;
                let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
                v[lo] + (h - lo as f64) * (v[hi] - v[lo])
            };
            let edges = if v.is_empty() {
                vec![]
            } else {
                (1..n).map(|i| quantile(i as f64 / n as f64)).collect()
            };
            Fitted::Bucket { edges }
        }
        _ => Fitted::None,
    })
}

fn json_lit(v: &Value, dt: &DataType) -> Expr {
    match v {
        Value::Bool(b) => lit(*b),
        Value::Number(n) if dt.is_integer() => match n.as_i64() {
            Some(i) => lit(i),
            None => lit(n.as_f64().unwrap_or(0.0)),
        },
        Value::Number(n) => lit(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => lit(s.as_str()),
        _ => lit(NULL),
    }
}

/// Applies one step with its fitted parameters. `serving`: filters that read
/// the target (training-only) are skipped.
pub fn apply(
    step: &StepOp,
    fitted: &Fitted,
    mut df: DataFrame,
    stage: &mlp_compiler::plan::Stage,
    part: Option<&str>,
    serving: bool,
    plugins: &crate::plugins::Plugins,
) -> Result<DataFrame, ExecError> {
    let rows = df.height();
    let collect = |lf: LazyFrame| super::collect_rows(lf, rows);
    Ok(match (step, fitted) {
        (StepOp::Impute { method, .. }, Fitted::Impute { values }) => {
            let mut exprs = vec![];
            for (c, v) in values {
                let dt = dtype_of(&df, c)?;
                let target = if matches!(method, ImputeMethod::Mean | ImputeMethod::Median) {
                    DataType::Float64
                } else {
                    dt
                };
                exprs.push(
                    col(c.as_str())
                        .cast(target.clone())
                        .fill_null(json_lit(v, &target).cast(target)),
                );
            }
            collect(df.lazy().with_columns(exprs))?
        }
        (
            StepOp::Encode {
                column,
                method,
                unknown,
                ..
            },
            Fitted::Encode { levels },
        ) => {
            let text = col(column.as_str()).cast(DataType::String);
            if *unknown == UnknownLevel::Error {
                let known = levels
                    .iter()
                    .map(|l| text.clone().eq(lit(l.as_str())))
                    .reduce(|a, b| a.or(b))
                    .unwrap_or(lit(false));
                let bad = collect(
                    df.clone()
                        .lazy()
                        .with_row_index("__row", Some(1))
                        .filter(text.clone().is_not_null().and(known.not()))
                        .select([col("__row"), col(column.as_str()).cast(DataType::String)])
                        .limit(1),
                )?;
                if bad.height() > 0 {
                    let rec = super::records(&bad, 1);
                    return Err(ExecError::Data(format!(
                        "`encode {column}` met a level not seen in training ({}) and `unknown = error`",
                        serde_json::to_string(&rec).unwrap_or_default()
                    )));
                }
            }
            let new: Vec<Expr> = if *method == EncodeMethod::Ordinal {
                // Unknown levels and nulls are -1.
                let mut ord = lit(-1i64);
                for (i, l) in levels.iter().enumerate().rev() {
                    ord = when(text.clone().eq(lit(l.as_str())).fill_null(lit(false)))
                        .then(lit(i as i64))
                        .otherwise(ord);
                }
                vec![ord.cast(DataType::Int64).alias(format!("{column}_ordinal"))]
            } else {
                let names = mlp_compiler::plan::names::onehot_columns(column, levels);
                // Learned levels are only known here: a one-hot column that
                // would replace a column of the frame is refused.
                if let Some(clash) = names.iter().find(|n| df.column(n).is_ok()) {
                    return Err(ExecError::Data(format!(
                        "`encode {column} with onehot` would add column `{clash}` (for a level learned in training), which already exists: rename that column before encoding"
                    )));
                }
                levels
                    .iter()
                    .zip(names)
                    .map(|(l, name)| {
                        text.clone()
                            .eq(lit(l.as_str()))
                            .fill_null(lit(false))
                            .cast(DataType::Float64)
                            .alias(name)
                    })
                    .collect()
            };
            // New columns go right after the original, as the checker laid
            // out the schema.
            let names: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|s| s.to_string())
                .collect();
            let pos = names
                .iter()
                .position(|n| n == column)
                .unwrap_or(names.len());
            let added = collect(df.clone().lazy().select(new))?;
            let mut cols: Vec<Column> = df.columns().to_vec();
            for (k, c) in added.columns().iter().cloned().enumerate() {
                cols.insert(pos + 1 + k, c);
            }
            DataFrame::new_infer_height(cols).map_err(ExecError::polars)?
        }
        (StepOp::Scale { .. }, Fitted::Scale { values }) => {
            let exprs: Vec<Expr> = values
                .iter()
                .map(|(c, (center, spread))| {
                    ((col(c.as_str()).cast(DataType::Float64) - lit(*center)) / lit(*spread))
                        .alias(c.as_str())
                })
                .collect();
            collect(df.lazy().with_columns(exprs))?
        }
        (StepOp::Clip { columns, lo, hi }, _) => {
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
            collect(df.lazy().with_columns(exprs))?
        }
        (StepOp::Bucket { column, .. }, Fitted::Bucket { edges }) => {
            // A value's bucket is the number of edges below it, found by
            // binary search over the sorted edges.
            let values = df
                .column(column)
                .and_then(|c| c.cast(&DataType::Float64))
                .map_err(ExecError::polars)?;
            let idx: Int64Chunked = values
                .f64()
                .map_err(ExecError::polars)?
                .iter()
                .map(|x| x.map(|x| edges.partition_point(|e| *e < x) as i64))
                .collect();
            let mut df = df;
            df.with_column(
                idx.into_series()
                    .with_name(column.as_str().into())
                    .into_column(),
            )
            .map_err(ExecError::polars)?;
            df
        }
        (StepOp::Drop { columns }, _) => df.drop_many(columns.iter().map(String::as_str)),
        (StepOp::Keep { columns }, _) => {
            // The named columns, the partition column, and the encoded
            // columns of a named encoded original.
            let keep: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|c| c.to_string())
                .filter(|c| {
                    columns.contains(c)
                        || Some(c.as_str()) == part
                        || columns
                            .iter()
                            .any(|k| c.starts_with(&format!("{k}_")) && is_encoded_of(stage, k, c))
                })
                .collect();
            df.select(keep.iter().map(String::as_str))
                .map_err(ExecError::polars)?
        }
        (StepOp::Rename { from, to }, _) => {
            df.rename(from, to.as_str().into())
                .map_err(ExecError::polars)?;
            df
        }
        (
            StepOp::Filter {
                reads_target: true, ..
            },
            _,
        ) if serving => df,
        (StepOp::Filter { expr, .. }, _) => {
            let names = frame_kinds_of(&df, stage);
            let types = |n: &str| names.get(n).cloned();
            let tr = Translator {
                types: &types,
                plugins,
            };
            let (e, _) = tr.expr(expr)?;
            collect(df.lazy().filter(e.fill_null(lit(false))))?
        }
        (step, fitted) => {
            return Err(ExecError::Internal(format!(
                "parameters {fitted:?} do not belong to step {step:?}"
            )))
        }
    })
}

/// Applies every step of a transform with stored parameters (serving).
pub fn apply_all(
    op: &TransformOp,
    params: &[Fitted],
    mut df: DataFrame,
    stage: &mlp_compiler::plan::Stage,
    serving: bool,
    plugins: &crate::plugins::Plugins,
) -> Result<DataFrame, ExecError> {
    if params.len() != op.steps.len() {
        return Err(ExecError::Internal(
            "stored parameters do not match the steps".into(),
        ));
    }
    let part = stage.partition_column.as_deref();
    for (step, fitted) in op.steps.iter().zip(params) {
        df = apply(step, fitted, df, stage, part, serving, plugins)?;
    }
    Ok(df)
}

/// Training: each step learns on the train rows of its own input, then
/// applies exactly as serving will.
pub fn run(op: &TransformOp, cx: &Context) -> Result<Output, ExecError> {
    let mut df = input(cx)?;
    let part = partition_column(cx);
    let mut params = vec![];
    let mut notes = vec![];
    for step in &op.steps {
        let fitted = fit(step, &df, part.as_deref())?;
        if let (StepOp::Bucket { column, quantiles }, Fitted::Bucket { edges }) = (step, &fitted) {
            if edges.len() + 1 < *quantiles as usize {
                notes.push(format!(
                    "warning: `bucket {column} into {quantiles} quantiles`: `train` has {} distinct values of `{column}`, so {} buckets",
                    edges.len() + 1,
                    edges.len() + 1
                ));
            }
        }
        df = apply(
            step,
            &fitted,
            df,
            cx.stage,
            part.as_deref(),
            false,
            cx.plugins,
        )?;
        params.push(fitted);
    }
    Ok(Output {
        frame: Some(df),
        json: vec![(
            "params".into(),
            json!({ "steps": serde_json::to_value(&params).map_err(|e| ExecError::Internal(e.to_string()))? }),
        )],
        notes,
        ..Output::default()
    })
}

/// Whether `name` is an encoded column of `original` in the stage's output
/// schema (listed by name, or as the one-hot group of `original`).
fn is_encoded_of(stage: &mlp_compiler::plan::Stage, original: &str, name: &str) -> bool {
    stage
        .schema
        .iter()
        .any(|c| c.name == name || c.group_of.as_deref() == Some(original))
}

/// The kind of every column of a frame, for expression translation.
pub fn frame_kinds(df: &DataFrame, cx: &Context) -> std::collections::HashMap<String, Kind> {
    frame_kinds_of(df, cx.stage)
}

pub fn frame_kinds_of(
    df: &DataFrame,
    stage: &mlp_compiler::plan::Stage,
) -> std::collections::HashMap<String, Kind> {
    df.schema()
        .iter()
        .map(|(n, dt)| (n.to_string(), kind_of_stage(dt, stage, n)))
        .collect()
}

/// The kind of a column for expression translation: from the stage's input
/// schema when the column is there, else from the polars type.
pub fn kind_of_stage(dt: &DataType, stage: &mlp_compiler::plan::Stage, name: &str) -> Kind {
    if let Some(c) = stage.schema.iter().find(|c| c.name == name) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The median by selection equals polars' `median` to the bit: odd and
    /// even counts, ties, negative zero, NaN and one value.
    #[test]
    fn the_median_by_selection_is_polars_median() {
        let cases: Vec<Vec<f64>> = vec![
            vec![3.0, 1.0, 2.0],
            vec![4.0, 1.0, 3.0, 2.0],
            vec![0.1, 0.7, 0.3, 0.2],
            vec![1e300, -1e300, 5.0, 7.0],
            vec![2.0, 2.0, 2.0, 9.0],
            vec![-0.0, 0.0, 1.0, -1.0],
            vec![f64::NAN, 1.0, 2.0, 3.0],
            vec![f64::NAN, 1.0, 2.0],
            vec![5.5],
            (0..1001)
                .map(|i| ((i * 7919) % 1013) as f64 / 3.0)
                .collect(),
            (0..1000)
                .map(|i| ((i * 7919) % 1013) as f64 / 7.0)
                .collect(),
        ];
        for v in cases {
            let theirs = Float64Chunked::from_vec("v".into(), v.clone()).median();
            let ours = median_of(v.clone());
            assert_eq!(ours.map(f64::to_bits), theirs.map(f64::to_bits), "{v:?}");
        }
        assert_eq!(median_of(vec![]), None);
    }
}
