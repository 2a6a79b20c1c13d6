//! `evaluate`: metrics of a model on one partition, `require` gates, and
//! fairness slices (`gap`, `ratio`, `min`, `max` of a metric over the groups
//! of a column). A failed gate fails the stage (and so the run), with the
//! gate report; nothing downstream (deploy) runs.
//!
//! Classification metrics follow scikit-learn: `precision`, `recall` and `f1`
//! are of the positive class (the last class: `true` for a bool target) for
//! a binary target and macro-averaged otherwise; `roc_auc` is binary only;
//! `selection_rate` is the share of rows predicted positive.

use super::model::{class_indices, classes_of, Prediction};
use super::{input, Context, ExecError, Output};
use mlp_compiler::plan::{EvaluateOp, GateOp, Metric, ModelOp, Op, SliceAggregate, Task};
use mlp_ml::metrics::{metric_decided, Truth};
use ndarray::{Array1, Array2};
use polars::prelude::*;
use serde_json::json;

fn passes(value: f64, gate: &GateOp) -> bool {
    !value.is_nan() && super::compare(value, gate.op, gate.threshold)
}

fn model_op<'a>(cx: &'a Context) -> Result<&'a ModelOp, ExecError> {
    let id = cx
        .stage
        .inputs
        .first()
        .ok_or_else(|| ExecError::Internal("evaluate without a model".into()))?;
    match cx.plan.stage(id).map(|s| &s.op) {
        Some(Op::Model(m)) => Ok(m),
        _ => Err(ExecError::Internal(format!("`{id}` is not a model"))),
    }
}

/// Predictions and truth of a frame of scored rows.
fn scored(
    df: &DataFrame,
    m: &ModelOp,
    classes: &[String],
) -> Result<(Prediction, Truth0), ExecError> {
    Ok(match m.task {
        Task::Regression => {
            let col = |n: &str| -> Result<Array1<f64>, ExecError> {
                let s = df
                    .column(n)
                    .map_err(ExecError::polars)?
                    .cast(&DataType::Float64)
                    .map_err(ExecError::polars)?;
                Ok(s.f64()
                    .map_err(ExecError::polars)?
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect())
            };
            (
                Prediction::Values(col("prediction")?),
                Truth0::Values(col(&m.target)?),
            )
        }
        Task::Classification => {
            let mut p = Array2::<f64>::zeros((df.height(), classes.len()));
            for (j, c) in classes.iter().enumerate() {
                let s = df
                    .column(&mlp_compiler::plan::names::proba_column(c))
                    .map_err(ExecError::polars)?
                    .cast(&DataType::Float64)
                    .map_err(ExecError::polars)?;
                for (i, v) in s.f64().map_err(ExecError::polars)?.iter().enumerate() {
                    p[[i, j]] = v.unwrap_or(0.0);
                }
            }
            let y = class_indices(df.column(&m.target).map_err(ExecError::polars)?, classes)?;
            // The classes the model decided (a binary `threshold` decides
            // other than the most probable class).
            let decided =
                class_indices(df.column("prediction").map_err(ExecError::polars)?, classes)?;
            (
                Prediction::Probabilities(p),
                Truth0::Classes(y, decided.to_vec()),
            )
        }
    })
}

enum Truth0 {
    Values(Array1<f64>),
    /// The true classes, and the classes the model decided.
    Classes(Array1<usize>, Vec<usize>),
}

impl Truth0 {
    fn view(&self) -> Truth<'_> {
        match self {
            Truth0::Values(v) => Truth::Values(v.view()),
            Truth0::Classes(v, _) => Truth::Classes(v.view()),
        }
    }
}

pub fn metrics_of(
    df: &DataFrame,
    m: &ModelOp,
    classes: &[String],
    names: &[Metric],
) -> Result<Vec<(Metric, f64)>, ExecError> {
    let (pred, truth) = scored(df, m, classes)?;
    let decided = match &truth {
        Truth0::Classes(_, d) => Some(d.as_slice()),
        Truth0::Values(_) => None,
    };
    Ok(names
        .iter()
        .map(|n| (*n, metric_decided(*n, &pred, truth.view(), decided)))
        .collect())
}

pub(super) fn finite(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

pub fn run(op: &EvaluateOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let m = model_op(cx)?;
    let part = cx
        .stage
        .partition_column
        .clone()
        .ok_or_else(|| ExecError::Internal("evaluate without a split".into()))?;
    let classes = match m.task {
        Task::Regression => vec![],
        // The classes of the training rows (only the target and the
        // partition read: not the whole frame filtered).
        Task::Classification => {
            let read = df
                .select([m.target.as_str(), part.as_str()])
                .map_err(ExecError::polars)?;
            classes_of(m, &super::train_rows(&read, &part)?)?
        }
    };
    let model_id = cx
        .stage
        .inputs
        .first()
        .ok_or_else(|| ExecError::Internal("evaluate without a model".into()))?;
    let fitted: mlp_ml::fitted::ModelFile =
        serde_json::from_value(super::deploy::read_json(cx, model_id, "model.json")?)
            .map_err(|e| ExecError::Internal(format!("model.json: {e}")))?;
    // The evaluated rows' places, and those rows of the columns scored and
    // sliced, not of the whole frame (importances read their sample's
    // inputs themselves).
    let evaluated: Vec<IdxSize> = super::partition_mask(&df, &part, &op.partition)?
        .iter()
        .enumerate()
        .filter(|(_, at)| *at == Some(true))
        .map(|(i, _)| i as IdxSize)
        .collect();
    let mut read: Vec<String> = vec![m.target.clone(), part.clone(), "prediction".into()];
    read.extend(
        classes
            .iter()
            .map(|c| mlp_compiler::plan::names::proba_column(c)),
    );
    read.extend(op.slices.iter().map(|s| s.column.clone()));
    let mut seen = std::collections::HashSet::new();
    read.retain(|c| df.column(c).is_ok() && seen.insert(c.clone()));
    let rows = df
        .select(read)
        .and_then(|f| f.take(&IdxCa::from_vec("i".into(), evaluated.clone())))
        .map_err(ExecError::polars)?;
    if rows.height() == 0 {
        let present = super::model::distinct_text(&df, &part)?;
        let near =
            mlp_compiler::suggest::did_you_mean(&op.partition, present.iter().map(String::as_str));
        return Err(ExecError::Data(format!(
            "partition `{}` has no rows to score; the split's partitions with rows: {}{}",
            op.partition,
            present
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", "),
            near.map(|n| format!(" ({n})")).unwrap_or_default()
        )));
    }
    // Every metric named anywhere.
    let mut names: Vec<Metric> = op.metrics.clone();
    for g in op
        .gates
        .iter()
        .chain(op.slices.iter().flat_map(|s| s.gates.iter()))
    {
        if !names.contains(&g.metric) {
            names.push(g.metric);
        }
    }
    // The compiler rejects a binary-only metric on a multiclass target when
    // the classes are declared; otherwise they are known only now.
    if m.task == Task::Classification && classes.len() != 2 {
        for n in &names {
            if mlp_compiler::catalog::metric_spec(n.as_str()).is_some_and(|s| s.binary_only) {
                return Err(ExecError::Data(format!(
                    "`{n}` is defined for two classes, and target `{}` has {} in `train` ({}); score it with `f1`, `accuracy` or `log_loss` instead",
                    m.target,
                    classes.len(),
                    classes.join(", ")
                )));
            }
        }
    }
    let overall = metrics_of(&rows, m, &classes, &names)?;
    let value = |n: Metric| {
        overall
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| *v)
            .unwrap_or(f64::NAN)
    };
    let mut gate_report = vec![];
    let mut failed = vec![];
    // (gate, value, passed) for the readable table.
    let mut rows_for_table: Vec<(String, f64, bool)> = vec![];
    for g in &op.gates {
        let v = value(g.metric);
        let ok = passes(v, g);
        if !ok {
            failed.push(format!(
                "{} {} {} (was {})",
                g.metric,
                g.op,
                g.threshold,
                fmt(v)
            ));
        }
        rows_for_table.push((format!("{} {} {}", g.metric, g.op, g.threshold), v, ok));
        gate_report.push(json!({"gate": format!("{} {} {}", g.metric, g.op, g.threshold), "value": finite(v), "passed": ok}));
    }
    let mut slices = vec![];
    for s in &op.slices {
        let levels = super::model::distinct_text(&rows, &s.column)?;
        let slice_metrics: Vec<Metric> = s.gates.iter().map(|g| g.metric).collect();
        let mut per_group = vec![];
        for l in &levels {
            let sub = rows
                .clone()
                .lazy()
                .filter(
                    col(s.column.as_str())
                        .cast(DataType::String)
                        .eq(lit(l.as_str())),
                )
                .collect()
                .map_err(ExecError::polars)?;
            let ms = metrics_of(&sub, m, &classes, &slice_metrics)?;
            per_group.push((l.clone(), sub.height(), ms));
        }
        let mut gates = vec![];
        for g in &s.gates {
            let vals: Vec<f64> = per_group
                .iter()
                .filter_map(|(_, _, ms)| ms.iter().find(|(k, _)| *k == g.metric).map(|(_, v)| *v))
                .filter(|v| !v.is_nan())
                .collect();
            let (lo, hi) = vals
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |a, v| {
                    (a.0.min(*v), a.1.max(*v))
                });
            let agg = g.aggregate.unwrap_or(SliceAggregate::Min);
            let v = if vals.is_empty() {
                f64::NAN
            } else {
                match agg {
                    SliceAggregate::Gap => hi - lo,
                    SliceAggregate::Ratio => {
                        if hi == 0.0 {
                            f64::NAN
                        } else {
                            lo / hi
                        }
                    }
                    SliceAggregate::Max => hi,
                    SliceAggregate::Min => lo,
                }
            };
            let ok = passes(v, g);
            let text = format!(
                "{agg}({}) {} {} by {}",
                g.metric, g.op, g.threshold, s.column
            );
            if !ok {
                failed.push(format!("{text} (was {})", fmt(v)));
            }
            rows_for_table.push((text.clone(), v, ok));
            gates.push(json!({"gate": text, "value": finite(v), "passed": ok}));
        }
        slices.push(json!({
            "column": s.column,
            "groups": per_group.iter().map(|(l, n, ms)| json!({
                "group": l,
                "rows": n,
                "metrics": ms.iter().map(|(k, v)| (k.to_string(), finite(*v))).collect::<serde_json::Map<_, _>>(),
            })).collect::<Vec<_>>(),
            "gates": gates,
        }));
    }
    let mut confusion = serde_json::Value::Null;
    if m.task == Task::Classification {
        let (pred, truth) = scored(&rows, m, &classes)?;
        if let (Prediction::Probabilities(_), Truth0::Classes(y, hat)) = (pred, truth) {
            let k = classes.len();
            let mut cm = vec![vec![0usize; k]; k];
            for (t, h) in y.iter().zip(hat) {
                cm[*t][h] += 1;
            }
            confusion = json!({"classes": classes, "rows_true_columns_predicted": cm});
        }
    }
    // Feature importances (`importance.rs`), scored by the first metric.
    let scoring = names.first().copied().unwrap_or(match m.task {
        Task::Regression => Metric::R2,
        Task::Classification => Metric::Accuracy,
    });
    let importance = super::importance::importances(m, &fitted, &df, &evaluated, scoring)?;
    let report = json!({
        "model": op.model,
        "partition": op.partition,
        "rows": rows.height(),
        "feature_importance": importance,
        "metrics": overall.iter().map(|(k, v)| (k.to_string(), finite(*v))).collect::<serde_json::Map<_, _>>(),
        "gates": gate_report,
        "slices": slices,
        "confusion_matrix": confusion,
        "passed": failed.is_empty(),
    });
    let mut out = Output::default();
    out.notes.push(
        overall
            .iter()
            .map(|(k, v)| format!("{k} {}", fmt(*v)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    if !failed.is_empty() {
        return Err(ExecError::GatesFailed {
            model: op.model.clone(),
            summary: failed.join("; "),
            gates: rows_for_table
                .into_iter()
                .map(|(gate, v, passed)| super::GateResult {
                    gate,
                    value: (!v.is_nan()).then_some(v),
                    passed,
                })
                .collect(),
        });
    }
    out.json.push(("report".into(), report));
    Ok(out)
}

/// A metric as the console shows it: four decimals for every metric, so
/// the values on one line read alike (`rmse 1116.2000, mae 719.5675`).
fn fmt(v: f64) -> String {
    if v.is_nan() {
        "undefined".into()
    } else {
        format!("{v:.4}")
    }
}
