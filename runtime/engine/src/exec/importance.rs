//! Feature importances of a model on the evaluated partition.
//!
//! Permutation importance, as scikit-learn's `permutation_importance`
//! defines it: for each model input, the score on the evaluated rows minus
//! the score with that input's values shuffled among the rows, averaged over
//! [`REPEATS`] shuffles (and their standard deviation). A one-hot group the
//! plan names as such (`city_*`) is one input, shuffled as a block (a row
//! keeps a valid encoding); columns the plan lists one by one (a category
//! with declared levels) are each an input. The score
//! is the evaluation's first metric, oriented so that a larger importance
//! means the model leans on the input more (for `rmse`, the shuffled error
//! minus the true one). Shuffles are seeded (the same report every run);
//! they are not numpy's, so the figures are scikit-learn's definition, not
//! its random draws. At most [`MAX_ROWS`] rows are used (a seeded sample).
//!
//! The model's own importance, where it has one: the coefficients of a
//! linear model (for a binary classifier, of the positive class), or each
//! input's share of a boosted model's split gains.

use super::model::{class_indices, design, Prediction};
use super::ExecError;
use mlp_compiler::plan::{Metric, ModelOp, Task};
use mlp_ml::fitted::{decide, Fitted, ModelFile};
use mlp_ml::metrics::{higher_is_better, metric_decided, Truth};
use ndarray::{Array1, Array2, Axis};
use polars::prelude::*;
use serde_json::json;

/// Shuffles per input (scikit-learn's default `n_repeats`).
pub const REPEATS: usize = 5;
/// The most rows importances are computed on.
pub const MAX_ROWS: usize = 10_000;
const SEED: u64 = 42;

/// A seeded permutation of `0..n`.
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    permutation_head(n, seed, n)
}

/// The first `k` places of [`permutation`]`(n, seed)`: `0..n` ordered by
/// each one's seeded hash (ties by place, as a stable sort leaves them),
/// the `k` first found without ordering the rest.
fn permutation_head(n: usize, seed: u64, k: usize) -> Vec<usize> {
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .map(|i| {
            (
                xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed),
                i,
            )
        })
        .collect();
    let k = k.min(n);
    if k < n {
        keyed.select_nth_unstable(k);
        keyed.truncate(k);
    }
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// The model's inputs as the pipeline names them, each with its columns of
/// the design matrix (a one-hot group `city_*` holds its encoded columns).
fn inputs(op: &ModelOp, model: &ModelFile) -> Vec<(String, Vec<usize>)> {
    let mut out = vec![];
    for f in &op.features {
        let cols: Vec<usize> = match f.strip_suffix('*') {
            Some(prefix) => model
                .features
                .iter()
                .enumerate()
                .filter(|(_, n)| n.starts_with(prefix) && !op.features.contains(n))
                .map(|(j, _)| j)
                .collect(),
            None => model
                .features
                .iter()
                .position(|n| n == f)
                .into_iter()
                .collect(),
        };
        if !cols.is_empty() {
            out.push((f.clone(), cols));
        }
    }
    out
}

fn score(model: &ModelFile, metric: Metric, x: &Array2<f64>, truth: &Truth0) -> f64 {
    score_of(model, metric, model.predict(x), truth)
}

fn score_of(model: &ModelFile, metric: Metric, pred: Prediction, truth: &Truth0) -> f64 {
    match (&pred, truth) {
        (Prediction::Probabilities(p), Truth0::Classes(y)) => {
            let d = decide(p, model.threshold());
            metric_decided(metric, &pred, Truth::Classes(y.view()), Some(&d))
        }
        (_, Truth0::Values(y)) => metric_decided(metric, &pred, Truth::Values(y.view()), None),
        (_, Truth0::Classes(y)) => metric_decided(metric, &pred, Truth::Classes(y.view()), None),
    }
}

enum Truth0 {
    Values(Array1<f64>),
    Classes(Array1<usize>),
}

/// The importances of `model` on the rows `evaluated` of `frame` (the
/// evaluated partition's, in order), scored by `metric`, as the report's
/// `feature_importance` object. Only the sampled rows' inputs and target
/// are read.
pub fn importances(
    op: &ModelOp,
    model: &ModelFile,
    frame: &DataFrame,
    evaluated: &[IdxSize],
    metric: Metric,
) -> Result<serde_json::Value, ExecError> {
    // All the rows, in order, or a seeded sample of them.
    let keep: Vec<IdxSize> = if evaluated.len() > MAX_ROWS {
        permutation_head(evaluated.len(), SEED, MAX_ROWS)
            .into_iter()
            .map(|i| evaluated[i])
            .collect()
    } else {
        evaluated.to_vec()
    };
    let mut read: Vec<&str> = model.features.iter().map(String::as_str).collect();
    read.push(op.target.as_str());
    read.retain(|c| frame.column(c).is_ok());
    let rows = frame
        .select(read)
        .and_then(|f| f.take(&IdxCa::from_vec("i".into(), keep)))
        .map_err(ExecError::polars)?;
    let x = design(&rows, model)?;
    let truth = match op.task {
        Task::Regression => {
            let s = rows
                .column(&op.target)
                .and_then(|c| c.cast(&DataType::Float64))
                .map_err(ExecError::polars)?;
            Truth0::Values(
                s.f64()
                    .map_err(ExecError::polars)?
                    .iter()
                    .map(|v| v.unwrap_or(f64::NAN))
                    .collect(),
            )
        }
        Task::Classification => Truth0::Classes(class_indices(
            rows.column(&op.target).map_err(ExecError::polars)?,
            &model.classes,
        )?),
    };
    let sign = if higher_is_better(metric) { 1.0 } else { -1.0 };
    let baseline = score(model, metric, &x, &truth);
    // A boosted model re-walks only the trees that split on the shuffled
    // input (the same predictions, to the bit).
    let cache = model.tree_values(&x);
    let n = x.nrows();
    // The same shuffles of the rows for every input.
    let orders: Vec<Vec<usize>> = (0..REPEATS)
        .map(|r| permutation(n, SEED.wrapping_add(1 + r as u64)))
        .collect();
    // Every (input, shuffle) scored on its own, on every core; the drops
    // are gathered in order.
    let inputs = inputs(op, model);
    let jobs: Vec<(usize, usize)> = (0..inputs.len())
        .flat_map(|i| (0..REPEATS).map(move |r| (i, r)))
        .collect();
    let drops: Vec<f64> = {
        use rayon::prelude::*;
        jobs.par_iter()
            .map(|&(input, r)| {
                let cols = &inputs[input].1;
                let mut xp = x.clone();
                for &j in cols {
                    let shuffled: Array1<f64> = orders[r].iter().map(|&i| x[[i, j]]).collect();
                    xp.index_axis_mut(Axis(1), j).assign(&shuffled);
                }
                let shuffled = match &cache {
                    Some(c) => score_of(model, metric, model.predict_changed(c, &xp, cols), &truth),
                    None => score(model, metric, &xp, &truth),
                };
                sign * (baseline - shuffled)
            })
            .collect()
    };
    let mut perm_inputs = vec![];
    for ((name, _), drops) in inputs.into_iter().zip(drops.chunks(REPEATS)) {
        let drops = drops.to_vec();
        let mean = drops.iter().sum::<f64>() / drops.len() as f64;
        let std =
            (drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / drops.len() as f64).sqrt();
        perm_inputs.push((name, mean, std, drops));
    }
    perm_inputs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let own = match &model.fitted {
        Fitted::Linear { weights, .. } => Some((
            "coefficient",
            model
                .features
                .iter()
                .zip(weights)
                .map(|(f, w)| json!({"feature": f, "value": super::evaluate::finite(*w)}))
                .collect::<Vec<_>>(),
        )),
        Fitted::Softmax { weights, .. } if model.classes.len() == 2 => Some((
            "coefficient",
            model
                .features
                .iter()
                .zip(weights)
                .map(|(f, w)| {
                    json!({"feature": f, "value": super::evaluate::finite(w.get(1).copied().unwrap_or(f64::NAN))})
                })
                .collect::<Vec<_>>(),
        )),
        // Gradient boosting: each input's share of the loss its splits
        // removed (LightGBM's "gain" importance).
        Fitted::Boosted { gains, .. } if gains.len() == model.features.len() => Some((
            "gain",
            model
                .features
                .iter()
                .zip(gains)
                .map(|(f, g)| json!({"feature": f, "value": super::evaluate::finite(*g)}))
                .collect::<Vec<_>>(),
        )),
        // Trees and random forests: each input's share of the impurity
        // decrease (scikit-learn's `feature_importances_`).
        Fitted::Tree { importances, .. } | Fitted::Forest { importances, .. }
            if importances.len() == model.features.len() =>
        {
            Some((
                "impurity",
                model
                    .features
                    .iter()
                    .zip(importances)
                    .map(|(f, v)| json!({"feature": f, "value": super::evaluate::finite(*v)}))
                    .collect::<Vec<_>>(),
            ))
        }
        _ => None,
    };
    Ok(json!({
        "permutation": {
            "metric": metric.as_str(),
            "baseline": super::evaluate::finite(baseline),
            "repeats": REPEATS,
            "seed": SEED,
            "rows": n,
            "inputs": perm_inputs.iter().map(|(name, mean, std, drops)| json!({
                "feature": name,
                "importance_mean": super::evaluate::finite(*mean),
                "importance_std": super::evaluate::finite(*std),
                "importances": drops.iter().map(|d| super::evaluate::finite(*d)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        },
        "model": own.map(|(kind, values)| json!({"kind": kind, "values": values})),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head of the permutation, found without ordering the rest, is
    /// the head of the places stably sorted by their seeded hashes (the
    /// sample of rows importances use).
    #[test]
    fn a_permutations_head_is_its_first_places() {
        for (n, k) in [(0, 5), (7, 7), (7, 20), (1_000, 1), (50_000, MAX_ROWS)] {
            let mut whole: Vec<usize> = (0..n).collect();
            whole.sort_by_cached_key(|i| {
                xxhash_rust::xxh3::xxh3_64_with_seed(&(*i as u64).to_le_bytes(), SEED)
            });
            assert_eq!(permutation_head(n, SEED, k), whole[..k.min(n)], "{n} {k}");
            assert_eq!(permutation(n, SEED), whole);
        }
    }
}
