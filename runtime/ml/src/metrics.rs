//! Metrics of predictions against the truth, as scikit-learn defines them.
//!
//! Classification metrics follow scikit-learn: `precision`, `recall` and `f1`
//! are of the positive class (the last class: `true` for a bool target) for
//! a binary target and macro-averaged otherwise; `roc_auc` is binary only;
//! `selection_rate` is the share of rows predicted positive.

use crate::fitted::Prediction;
use mlp_compiler::plan::Metric;
use ndarray::{Array1, ArrayView1};

/// The true values of the scored rows.
pub enum Truth<'a> {
    Values(ArrayView1<'a, f64>),
    Classes(ArrayView1<'a, usize>),
}

pub fn higher_is_better(metric: Metric) -> bool {
    mlp_compiler::catalog::metric_spec(metric.as_str()).is_some_and(|m| m.higher_is_better)
}

/// Area under the ROC curve of scores for the positive class (ties share).
fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let sum_pos: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// One metric. NaN when undefined (for example `roc_auc` with one class).
/// A metric, classes decided as the most probable (see [`metric_decided`]).
pub fn metric(name: Metric, pred: &Prediction, truth: Truth) -> f64 {
    metric_decided(name, pred, truth, None)
}

/// A metric, with the class decided for each row when the model decides
/// other than by the most probable class (a binary `threshold`): accuracy,
/// precision, recall, f1 and the selection rate count these decisions;
/// `roc_auc` and `log_loss` read the probabilities.
pub fn metric_decided(
    name: Metric,
    pred: &Prediction,
    truth: Truth,
    decided: Option<&[usize]>,
) -> f64 {
    match (pred, truth) {
        (Prediction::Values(p), Truth::Values(y)) => {
            let n = y.len().max(1) as f64;
            let err: Array1<f64> = p - &y;
            match name {
                Metric::Accuracy
                | Metric::Precision
                | Metric::Recall
                | Metric::F1
                | Metric::RocAuc
                | Metric::LogLoss
                | Metric::SelectionRate => f64::NAN,
                Metric::Rmse => (err.mapv(|e| e * e).sum() / n).sqrt(),
                Metric::Mae => err.mapv(f64::abs).sum() / n,
                Metric::Mape => {
                    err.iter()
                        .zip(y.iter())
                        .map(|(e, t)| e.abs() / t.abs().max(f64::EPSILON))
                        .sum::<f64>()
                        / n
                }
                Metric::R2 => {
                    let mean = y.mean().unwrap_or(0.0);
                    let ss_tot: f64 = y.iter().map(|t| (t - mean).powi(2)).sum();
                    let ss_res: f64 = err.mapv(|e| e * e).sum();
                    if ss_tot == 0.0 {
                        f64::NAN
                    } else {
                        1.0 - ss_res / ss_tot
                    }
                }
            }
        }
        (Prediction::Probabilities(p), Truth::Classes(y)) => {
            let k = p.ncols();
            let n = y.len();
            let hat = match decided {
                Some(d) if d.len() == n => d.to_vec(),
                _ => crate::fitted::decide(p, None),
            };
            let pos = k - 1;
            let per_class = |c: usize| {
                let tp = (0..n).filter(|i| hat[*i] == c && y[*i] == c).count() as f64;
                let fp = (0..n).filter(|i| hat[*i] == c && y[*i] != c).count() as f64;
                let fnn = (0..n).filter(|i| hat[*i] != c && y[*i] == c).count() as f64;
                let precision = if tp + fp == 0.0 { 0.0 } else { tp / (tp + fp) };
                let recall = if tp + fnn == 0.0 {
                    0.0
                } else {
                    tp / (tp + fnn)
                };
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                (precision, recall, f1)
            };
            let averaged = |f: &dyn Fn((f64, f64, f64)) -> f64| {
                if k == 2 {
                    f(per_class(pos))
                } else {
                    (0..k).map(|c| f(per_class(c))).sum::<f64>() / k as f64
                }
            };
            match name {
                Metric::Accuracy => {
                    (0..n).filter(|i| hat[*i] == y[*i]).count() as f64 / n.max(1) as f64
                }
                Metric::Precision => averaged(&|m| m.0),
                Metric::Recall => averaged(&|m| m.1),
                Metric::F1 => averaged(&|m| m.2),
                Metric::SelectionRate => {
                    (0..n).filter(|i| hat[*i] == pos).count() as f64 / n.max(1) as f64
                }
                Metric::LogLoss => {
                    (0..n)
                        .map(|i| -p[[i, y[i]]].clamp(f64::EPSILON, 1.0 - f64::EPSILON).ln())
                        .sum::<f64>()
                        / n.max(1) as f64
                }
                Metric::RocAuc if k == 2 => {
                    let scores: Vec<f64> = (0..n).map(|i| p[[i, pos]]).collect();
                    let positive: Vec<bool> = (0..n).map(|i| y[i] == pos).collect();
                    roc_auc(&scores, &positive)
                }
                // ROC AUC of more than two classes, and the regression
                // metrics, are undefined here (the checker refuses them).
                Metric::RocAuc | Metric::Rmse | Metric::Mae | Metric::Mape | Metric::R2 => f64::NAN,
            }
        }
        // Values against classes (or the reverse): undefined.
        (Prediction::Values(_), Truth::Classes(_))
        | (Prediction::Probabilities(_), Truth::Values(_)) => f64::NAN,
    }
}
