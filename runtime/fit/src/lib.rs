//! `design matrix + target -> fitted model`: fitting on ndarray (linfa for
//! linear, logistic and kernel models, [`cart`] for trees) and tuning by
//! K-fold cross-validation. The result is an [`mlp_ml::fitted::ModelFile`]
//! of plain numbers; nothing here knows about data frames.
//!
//! | algorithm | fitting |
//! |---|---|
//! | `linear_regression`, `ridge` | normal equations, `(XᵀX + αI) w = Xᵀy` on centred data, solved by Cholesky (linfa-linalg): scikit-learn's `Ridge` objective exactly |
//! | `lasso`, `elastic_net` | linfa-elasticnet (coordinate descent), scikit-learn's objective and parameters |
//! | `logistic_regression` | two classes: [`logistic`], Newton's method on scikit-learn's objective (with row weights); more: linfa-logistic (L-BFGS, multinomial); scikit-learn's `C` is linfa's `1/alpha` |
//! | `decision_tree`, `random_forest`, `adaboost` | [`cart`]: scikit-learn's CART, bootstrap forests, SAMME |
//! | `svm` | linfa-svm (SMO), stored as support vectors |
//! | `naive_bayes` | Gaussian, in closed form |
//! | `gradient_boosting` | [`gbdt`]: scikit-learn's histogram gradient boosting (squared error, absolute error, huber, log loss) |

pub mod cart;
pub mod gbdt;
pub mod logistic;

use mlp_compiler::plan::{Algorithm, ModelOp, ParamValue};
use mlp_ml::fitted::{svm_decision, Fitted, ForestTree, Kernel, ModelFile};
use ndarray::{Array1, Array2, Axis};
use serde_json::json;
use std::collections::BTreeMap;

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The data cannot be fitted (too few rows, a singular problem, a
    /// solver that failed): the message names the fix.
    #[error("{0}")]
    Data(String),
    /// The algorithm cannot learn this kind of target.
    #[error("{0}")]
    Unsupported(String),
    /// A fitted form that does not decide as its library did: a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A fitted model, the parameters chosen and one record per combination
/// tried (empty without tuning).
pub struct Trained {
    pub model: ModelFile,
    pub best: BTreeMap<String, ParamValue>,
    pub trials: Vec<serde_json::Value>,
    /// The training rows' raw scores as the fit left them, when the
    /// algorithm keeps them (gradient boosting): equal to predicting those
    /// rows (`ModelFile::predict_scores`), without the pass.
    pub scores: Option<Array2<f64>>,
}

/// Fits `base`'s algorithm on `x` and `y` (tuned by cross-validation when
/// the op has a search space), with `base`'s names and classes.
/// `sample`: each row's weight (`sample_weight`), when the op has one.
pub fn train(
    op: &ModelOp,
    x: &Array2<f64>,
    y: &Target,
    sample: Option<&[f64]>,
    base: ModelFile,
) -> Result<Trained, FitError> {
    let mk = |params: BTreeMap<String, ParamValue>, fitted: Fitted| ModelFile {
        params,
        fitted,
        ..base.clone()
    };
    // Tuning: K-fold cross-validation on train, folds by a seeded shuffle.
    let mut trials = vec![];
    let best = match &op.tune {
        Some(t) if !op.search.is_empty() => {
            let n = x.nrows();
            if n < t.cv as usize {
                return Err(FitError::Data(format!(
                    "`tune {{ cv = {} }}` needs at least {} rows in `train` (one per fold), and `train` has {n}; lower `cv` or give `train` more rows",
                    t.cv, t.cv
                )));
            }
            let k = (t.cv as usize).max(2);
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|i| {
                xxhash_rust::xxh3::xxh3_64_with_seed(&(*i as u64).to_le_bytes(), t.seed)
            });
            let fold_of: Vec<usize> = {
                let mut f = vec![0; n];
                for (rank, i) in order.iter().enumerate() {
                    f[*i] = rank * k / n.max(1);
                }
                f
            };
            let mut best: Option<(f64, BTreeMap<String, ParamValue>)> = None;
            // Each fold's held-out rows, selected once for every combination.
            let held_out: Vec<Vec<usize>> = (0..k)
                .map(|f| (0..n).filter(|i| fold_of[*i] == f).collect())
                .collect();
            let te_x: Vec<Array2<f64>> = held_out.iter().map(|te| x.select(Axis(0), te)).collect();
            let te_y: Vec<Target> = held_out.iter().map(|te| y.select(te)).collect();
            // Linear least squares: each fold's sufficient statistics once,
            // so a fit on the other folds is a small solve, not a pass over
            // the rows.
            let stats: Option<Vec<Gram>> = match (&y, op.algorithm) {
                (Target::Values(yv), Algorithm::Ridge | Algorithm::LinearRegression) => Some(
                    held_out
                        .iter()
                        .zip(&te_x)
                        .map(|(te, xf)| Gram::of(xf, &te.iter().map(|i| yv[*i]).collect()))
                        .collect(),
                ),
                _ => None,
            };
            for combo in combinations(op) {
                let mut scores = vec![];
                for fold in 0..k {
                    let fitted = match &stats {
                        Some(g) => {
                            let rest = Gram::sum(
                                g.iter()
                                    .enumerate()
                                    .filter(|(i, _)| *i != fold)
                                    .map(|(_, g)| g),
                            );
                            let alpha = if op.algorithm == Algorithm::Ridge {
                                param_f64(&combo, "alpha", 1.0)
                            } else {
                                0.0
                            };
                            rest.solve(alpha, param_bool(&combo, "fit_intercept", true))?
                        }
                        None => {
                            let tr: Vec<usize> = (0..n).filter(|i| fold_of[*i] != fold).collect();
                            let w: Option<Vec<f64>> =
                                sample.map(|w| tr.iter().map(|i| w[*i]).collect());
                            fit(
                                op.algorithm,
                                &combo,
                                &x.select(Axis(0), &tr),
                                &y.select(&tr),
                                &base,
                                w.as_deref(),
                                None,
                            )?
                        }
                    };
                    let m = mk(combo.clone(), fitted);
                    scores.push(cv_score(t.metric, &m, &te_x[fold], &te_y[fold]));
                }
                let mean = scores.iter().sum::<f64>() / scores.len() as f64;
                let comparable = if mlp_ml::metrics::higher_is_better(t.metric) {
                    mean
                } else {
                    -mean
                };
                trials.push(json!({"params": combo, "fold_scores": scores, "mean": mean}));
                if best.as_ref().is_none_or(|(b, _)| comparable > *b) {
                    best = Some((comparable, combo));
                }
            }
            best.map(|(_, c)| c).unwrap_or_else(|| op.params.clone())
        }
        _ => {
            let mut p = op.params.clone();
            for (k, v) in &op.search {
                if let Some(first) = v.first() {
                    p.insert(k.clone(), first.clone());
                }
            }
            p
        }
    };
    let mut scores = vec![];
    let fitted = fit(op.algorithm, &best, x, y, &base, sample, Some(&mut scores))?;
    let scores = scores_matrix(&fitted, x.nrows(), scores);
    Ok(Trained {
        model: mk(best.clone(), fitted),
        best,
        trials,
        scores,
    })
}

/// Reads a fitted linfa SVM as numbers, and checks on training rows that the
/// numbers decide exactly as linfa does (never silently different).
fn svm_numbers<T>(
    model: &linfa_svm::Svm<f64, T>,
    x: &Array2<f64>,
    kind: Kernel,
    gamma: f64,
    degree: f64,
    classify: bool,
) -> Result<Fitted, FitError> {
    let (support, coef) = if kind == Kernel::Linear {
        let p = x.ncols();
        let w: Vec<f64> = (0..p)
            .map(|j| {
                let mut e = Array1::<f64>::zeros(p);
                e[j] = 1.0;
                model.weighted_sum(&e)
            })
            .collect();
        (vec![w], vec![1.0])
    } else {
        let keep: Vec<usize> = (0..model.alpha.len())
            .filter(|i| model.alpha[*i].abs() > 100.0 * f64::EPSILON)
            .collect();
        (
            keep.iter().map(|i| x.row(*i).to_vec()).collect(),
            keep.iter().map(|i| model.alpha[*i]).collect(),
        )
    };
    for r in x.rows().into_iter().take(64) {
        let ours = svm_decision(kind, gamma, degree, &support, &coef, model.rho, r);
        let theirs = model.weighted_sum(&r) - model.rho;
        if (ours - theirs).abs() > 1e-8 * theirs.abs().max(1.0) {
            return Err(FitError::Internal(format!(
                "the SVM's stored form decides differently from linfa's ({ours} vs {theirs})"
            )));
        }
    }
    Ok(Fitted::Kernel {
        kernel: kind,
        gamma,
        degree,
        support,
        coef,
        rho: model.rho,
        classify,
    })
}

/// A tree's growing rules from the model's parameters (`max_depth` by
/// default `depth`; `max_features` columns tried per split).
fn tree_params(
    params: &BTreeMap<String, ParamValue>,
    depth: Option<usize>,
    max_features: Option<usize>,
) -> cart::Params {
    cart::Params {
        max_depth: match params.get("max_depth") {
            Some(ParamValue::Int(d)) => Some((*d).max(1) as usize),
            _ => depth,
        },
        min_samples_split: (param_f64(params, "min_samples_split", 2.0) as usize).max(2),
        min_samples_leaf: (param_f64(params, "min_samples_leaf", 1.0) as usize).max(1),
        criterion: match params.get("criterion") {
            Some(ParamValue::Str(c)) if c == "entropy" => cart::Criterion::Entropy,
            _ => cart::Criterion::Gini,
        },
        max_features,
    }
}

fn param_f64(op: &BTreeMap<String, ParamValue>, name: &str, default: f64) -> f64 {
    match op.get(name) {
        Some(ParamValue::Float(f)) => *f,
        Some(ParamValue::Int(i)) => *i as f64,
        _ => default,
    }
}

fn param_bool(op: &BTreeMap<String, ParamValue>, name: &str, default: bool) -> bool {
    match op.get(name) {
        Some(ParamValue::Bool(b)) => *b,
        _ => default,
    }
}

/// Each row's weight from `class_weight`, as scikit-learn's: `balanced` is
/// `rows / (classes × rows of the class)` over the rows fitted, each row
/// counted by its weight in `sample` when given (as scikit-learn's
/// `LogisticRegression` counts them); a map weighs the classes it names
/// (by label), the others 1. `None` without `class_weight`.
fn class_row_weights(
    params: &BTreeMap<String, ParamValue>,
    y: &Array1<usize>,
    k: usize,
    classes: &[String],
    sample: Option<&[f64]>,
) -> Result<Option<Vec<f64>>, FitError> {
    let per_class: Vec<f64> = match params.get("class_weight") {
        None => return Ok(None),
        Some(ParamValue::Str(s)) if s == "balanced" => {
            // Each class's rows and their total weight (each row weighing
            // its `sample_weight`, as scikit-learn counts them).
            let mut counts = vec![0usize; k];
            let mut weighed = vec![0.0; k];
            for (i, c) in y.iter().enumerate() {
                counts[*c] += 1;
                weighed[*c] += sample.map_or(1.0, |s| s[i]);
            }
            let total: f64 = weighed.iter().sum();
            // scikit-learn weighs the classes present in y.
            let present = counts.iter().filter(|n| **n > 0).count().max(1);
            weighed
                .iter()
                .map(|w| {
                    // A class absent, or whose rows all weigh 0: its rows
                    // count for nothing whatever this is.
                    if *w > 0.0 {
                        total / (present as f64 * w)
                    } else {
                        1.0
                    }
                })
                .collect()
        }
        Some(ParamValue::Map(m)) => {
            if let Some(unknown) = m.keys().find(|c| !classes.contains(c)) {
                return Err(FitError::Data(format!(
                    "`class_weight` names the class \"{unknown}\", which the target does not have in train (its classes: {})",
                    classes.join(", ")
                )));
            }
            classes
                .iter()
                .map(|c| m.get(c).copied().unwrap_or(1.0))
                .collect()
        }
        Some(other) => {
            return Err(FitError::Unsupported(format!(
                "`class_weight` must be `balanced` or a map of class to weight, not {other:?}"
            )))
        }
    };
    Ok(Some(y.iter().map(|c| per_class[*c]).collect()))
}

/// Each training row's weight from `class_weight` and `sample_weight`
/// (both given: multiplied, as scikit-learn does); `None` when every row
/// weighs 1.
fn row_weights(
    params: &BTreeMap<String, ParamValue>,
    y: &Target,
    base: &ModelFile,
    sample: Option<&[f64]>,
) -> Result<Option<Vec<f64>>, FitError> {
    let class_weights = match y {
        Target::Classes(y, k) => {
            // scikit-learn's logistic regression counts a balanced class's
            // rows by their sample weights; its trees, forests and gradient
            // boosting count rows.
            let counted_by = sample.filter(|_| base.algorithm == Algorithm::LogisticRegression);
            class_row_weights(params, y, *k, &base.classes, counted_by)?
        }
        Target::Values(_) => None,
    };
    Ok(match (class_weights, sample) {
        (c, None) => c,
        (None, Some(s)) => Some(s.to_vec()),
        (Some(c), Some(s)) => Some(c.iter().zip(s).map(|(a, b)| a * b).collect()),
    })
}

/// Fits `base`'s algorithm straight from the inputs' columns (one slice of
/// every data row's values per input; `rows`: the training rows among
/// them), without a design matrix, where the algorithm reads columns and
/// nothing is tuned: binary logistic regression (predicted from the
/// columns too: `ModelFile::predict_columns`) and gradient boosting (which
/// bins each input from its column, and keeps its training rows' scores
/// as [`train`] does). `None` otherwise (then [`train`] on a design
/// matrix). The same fit as [`train`] on the matrix of those rows, to the
/// bit.
pub fn train_columns(
    op: &ModelOp,
    columns: &[&[f64]],
    rows: &[usize],
    y: &Target,
    sample: Option<&[f64]>,
    base: ModelFile,
) -> Result<Option<Trained>, FitError> {
    if !op.search.is_empty() {
        return Ok(None);
    }
    let params = op.params.clone();
    let (fitted, scores) = match (op.algorithm, y) {
        (Algorithm::LogisticRegression, Target::Classes(classes, 2)) => {
            let weights = row_weights(&params, y, &base, sample)?;
            let lr = LogisticSettings::of(&params);
            let ones: Vec<f64> = classes.iter().map(|c| f64::from(*c == 1)).collect();
            let fit = logistic::fit_columns(
                columns,
                rows,
                &ones,
                weights.as_deref(),
                1.0 / lr.alpha,
                lr.intercept,
                lr.max_iter as usize,
            )?;
            (logistic_fitted(&fit), None)
        }
        (Algorithm::GradientBoosting, target) => {
            let weights = row_weights(&params, y, &base, sample)?;
            let p = gbdt_params(&params, target, &base, rows.len())?;
            let inputs = gbdt::Inputs::Columns { columns, rows };
            let mut scores = vec![];
            let fitted = fit_gbdt(inputs, target, weights.as_deref(), &p, Some(&mut scores))?;
            let scores = scores_matrix(&fitted, rows.len(), scores);
            (fitted, scores)
        }
        _ => return Ok(None),
    };
    Ok(Some(Trained {
        model: ModelFile {
            params: params.clone(),
            fitted,
            ..base
        },
        best: params,
        trials: vec![],
        scores,
    }))
}

/// Gradient boosting on `inputs` for the target's values or classes.
fn fit_gbdt(
    inputs: gbdt::Inputs,
    target: &Target,
    weights: Option<&[f64]>,
    p: &gbdt::Params,
    scores: Option<&mut Vec<f64>>,
) -> Result<Fitted, FitError> {
    match target {
        Target::Values(v) => {
            let v = v.to_vec();
            gbdt::fit_inputs(inputs, gbdt::Y::Values(&v), weights, p, scores)
        }
        Target::Classes(c, k) => {
            let c = c.to_vec();
            gbdt::fit_inputs(inputs, gbdt::Y::Classes(&c, *k), weights, p, scores)
        }
    }
}

/// The training rows' raw scores a fit left (`rows` rows, one column per
/// output), as [`Trained::scores`]; `None` when it left none.
fn scores_matrix(fitted: &Fitted, rows: usize, scores: Vec<f64>) -> Option<Array2<f64>> {
    let outputs = match fitted {
        Fitted::Boosted { outputs, .. } => (*outputs).max(1),
        _ => 1,
    };
    (!scores.is_empty())
        .then(|| Array2::from_shape_vec((rows, outputs), scores).ok())
        .flatten()
}

/// A binary logistic fit as a softmax model: softmax(z, 0) = sigmoid(z),
/// so the positive class (the second) carries the weights, the other
/// zeros.
fn logistic_fitted(fit: &logistic::Logistic) -> Fitted {
    Fitted::Softmax {
        weights: fit.weights.iter().map(|w| vec![0.0, *w]).collect(),
        intercepts: vec![0.0, fit.intercept],
    }
}

/// Gradient boosting's parameters from the model's (`n`: the rows it fits
/// on, which decide early stopping's default).
fn gbdt_params(
    params: &BTreeMap<String, ParamValue>,
    target: &Target,
    base: &ModelFile,
    n: usize,
) -> Result<gbdt::Params, FitError> {
    let int =
        |name: &str, default: u32| param_f64(params, name, f64::from(default)).max(0.0) as usize;
    let loss = match (params.get("loss"), target) {
            (Some(ParamValue::Str(l)), Target::Values(_)) if l == "absolute_error" => {
                gbdt::Loss::AbsoluteError
            }
            (Some(ParamValue::Str(l)), Target::Values(_)) if l == "huber" => gbdt::Loss::Huber {
                alpha: param_f64(params, "alpha", 0.9),
                delta: 0.0,
            },
            (Some(ParamValue::Str(l)), Target::Values(_)) if l != "squared_error" => {
                return Err(FitError::Unsupported(format!(
                    "gradient_boosting's loss `{l}` is for classes; a regression uses squared_error, absolute_error or huber"
                )))
            }
            (Some(ParamValue::Str(l)), Target::Classes(..)) if l != "log_loss" => {
                return Err(FitError::Unsupported(format!(
                    "gradient_boosting's loss `{l}` is for values; a classification uses log_loss"
                )))
            }
            (_, Target::Values(_)) => gbdt::Loss::SquaredError,
            (_, Target::Classes(..)) => gbdt::Loss::LogLoss,
        };
    let early_stopping = match params.get("early_stopping") {
        Some(ParamValue::Str(s)) if s == "true" => true,
        Some(ParamValue::Str(s)) if s == "false" => false,
        _ => n > 10_000,
    };
    Ok(gbdt::Params {
        loss,
        learning_rate: param_f64(params, "learning_rate", 0.1),
        max_iter: int("max_iter", 100).max(1),
        max_leaf_nodes: Some(int("max_leaf_nodes", 31).max(2)),
        max_depth: match params.get("max_depth") {
            Some(ParamValue::Int(d)) => Some((*d).max(1) as usize),
            _ => None,
        },
        min_samples_leaf: int("min_samples_leaf", 20).max(1),
        l2: param_f64(params, "l2_regularization", 0.0),
        max_bins: int("max_bins", 255).clamp(2, 255),
        early_stopping,
        validation_fraction: param_f64(params, "validation_fraction", 0.1),
        n_iter_no_change: int("n_iter_no_change", 10).max(1),
        tol: param_f64(params, "tol", 1e-7),
        seed: param_f64(params, "seed", 42.0) as u64,
        // Per input, its number of levels when it is a category
        // (its values are level codes).
        levels: if base.categories.is_empty() {
            vec![]
        } else {
            base.features
                .iter()
                .map(|f| base.categories.get(f).map(Vec::len))
                .collect()
        },
    })
}

/// Fits one parameter combination.
fn fit(
    algorithm: Algorithm,
    params: &BTreeMap<String, ParamValue>,
    x: &Array2<f64>,
    y: &Target,
    base: &ModelFile,
    sample: Option<&[f64]>,
    scores: Option<&mut Vec<f64>>,
) -> Result<Fitted, FitError> {
    let row_weights = row_weights(params, y, base, sample)?;
    match (algorithm, y) {
        (Algorithm::LinearRegression | Algorithm::Ridge, Target::Values(y)) => {
            let alpha = if algorithm == Algorithm::Ridge {
                param_f64(params, "alpha", 1.0)
            } else {
                0.0
            };
            fit_ridge(x, y, alpha, param_bool(params, "fit_intercept", true))
        }
        (Algorithm::Lasso | Algorithm::ElasticNet, Target::Values(y)) => {
            // Coordinate descent with scikit-learn's objective:
            // (1/2n)·||y - Xw||² + alpha·l1_ratio·||w||₁ + alpha·(1-l1_ratio)/2·||w||².
            use linfa::prelude::*;
            let l1 = if algorithm == Algorithm::Lasso {
                1.0
            } else {
                param_f64(params, "l1_ratio", 0.5)
            };
            // The intercept as scikit-learn fits it: centre X and y, fit
            // without one, then b = mean(y) - mean(X)·w (linfa's own
            // intercept centres y only, which changes the solution).
            let intercept = param_bool(params, "fit_intercept", true);
            let (xm, ym) = if intercept {
                (
                    x.mean_axis(Axis(0))
                        .unwrap_or_else(|| Array1::zeros(x.ncols())),
                    y.mean().unwrap_or(0.0),
                )
            } else {
                (Array1::zeros(x.ncols()), 0.0)
            };
            let ds = linfa::Dataset::new(x - &xm, y - ym);
            let model = linfa_elasticnet::ElasticNet::params()
                .penalty(param_f64(params, "alpha", 1.0))
                .l1_ratio(l1)
                .with_intercept(false)
                .max_iterations(param_f64(params, "max_iter", 1000.0) as u32)
                .tolerance(param_f64(params, "tol", 1e-4))
                .fit(&ds)
                .map_err(|e| FitError::Data(format!("{algorithm} did not fit: {e}")))?;
            let w = model.hyperplane().to_owned();
            Ok(Fitted::Linear {
                intercept: ym - xm.dot(&w),
                weights: w.to_vec(),
            })
        }
        (Algorithm::DecisionTree, Target::Classes(y, k)) => {
            use rand::SeedableRng;
            let y: Vec<usize> = y.to_vec();
            let p = tree_params(params, None, None);
            let rng = rand::rngs::StdRng::seed_from_u64(0);
            let w = row_weights.unwrap_or_else(|| vec![1.0; y.len()]);
            let (nodes, importances) = cart::grow_scored(x, &y, &w, *k, &p, rng);
            Ok(Fitted::Tree {
                nodes,
                classes: *k,
                importances,
            })
        }
        (Algorithm::Svm, target) => {
            use linfa::prelude::*;
            let c = param_f64(params, "c", 1.0);
            let gamma = param_f64(params, "gamma", 1.0);
            let degree = param_f64(params, "degree", 3.0);
            let kind = match params.get("kernel") {
                Some(ParamValue::Str(k)) => Kernel::parse(k).ok_or_else(|| {
                    FitError::Unsupported(format!(
                        "svm has no kernel `{k}`; use linear, polynomial or rbf"
                    ))
                })?,
                _ => Kernel::Rbf,
            };
            macro_rules! with_kernel {
                ($p:expr) => {
                    match kind {
                        Kernel::Linear => $p.linear_kernel(),
                        Kernel::Polynomial => $p.polynomial_kernel(1.0, degree),
                        Kernel::Rbf => $p.gaussian_kernel(1.0 / gamma),
                    }
                };
            }
            match target {
                Target::Values(y) => {
                    let ds = linfa::Dataset::new(x.clone(), y.clone());
                    let p = linfa_svm::Svm::<f64, f64>::params()
                        .c_svr(c, Some(param_f64(params, "epsilon", 0.1)));
                    let model = with_kernel!(p)
                        .fit(&ds)
                        .map_err(|e| FitError::Data(format!("svm did not fit: {e}")))?;
                    svm_numbers(&model, x, kind, gamma, degree, false)
                }
                Target::Classes(y, 2) => {
                    let yb: Array1<bool> = y.mapv(|v| v == 1);
                    let ds = linfa::Dataset::new(x.clone(), yb);
                    let p = linfa_svm::Svm::<f64, bool>::params().pos_neg_weights(c, c);
                    let model = with_kernel!(p)
                        .fit(&ds)
                        .map_err(|e| FitError::Data(format!("svm did not fit: {e}")))?;
                    svm_numbers(&model, x, kind, gamma, degree, true)
                }
                Target::Classes(_, k) => Err(FitError::Data(format!(
                    "svm classifies two classes; the target has {k} in `train` (use logistic_regression or a tree)"
                ))),
            }
        }
        (Algorithm::GaussianNb, Target::Classes(y, k)) => {
            // As scikit-learn's GaussianNB: per-class means and (population)
            // variances, each variance plus var_smoothing times the largest
            // column variance. Computed here, not by linfa-bayes, whose
            // fitted statistics are private: a bundle must hold the numbers.
            let n = x.nrows() as f64;
            let col_var = |xs: &Array2<f64>, j: usize| {
                let c = xs.column(j);
                let m = c.mean().unwrap_or(0.0);
                c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (c.len().max(1) as f64)
            };
            let max_var = (0..x.ncols()).map(|j| col_var(x, j)).fold(0.0, f64::max);
            let eps = param_f64(params, "var_smoothing", 1e-9) * max_var;
            let mut priors = vec![];
            let mut means = vec![];
            let mut variances = vec![];
            for c in 0..*k {
                let rows: Vec<usize> = (0..y.len()).filter(|i| y[*i] == c).collect();
                let xc = x.select(Axis(0), &rows);
                priors.push(rows.len() as f64 / n.max(1.0));
                means.push(
                    (0..x.ncols())
                        .map(|j| xc.column(j).mean().unwrap_or(0.0))
                        .collect(),
                );
                variances.push(
                    (0..x.ncols())
                        .map(|j| (col_var(&xc, j) + eps).max(f64::MIN_POSITIVE))
                        .collect(),
                );
            }
            Ok(Fitted::GaussianNb {
                priors,
                means,
                variances,
            })
        }
        (Algorithm::RandomForest | Algorithm::Adaboost, Target::Classes(y, k)) => {
            use rand::SeedableRng;
            let seed = param_f64(params, "seed", 42.0) as u64;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let y: Vec<usize> = y.to_vec();
            let n_trees = (param_f64(params, "n_estimators", 100.0) as usize).max(1);
            let all: Vec<usize> = (0..x.ncols()).collect();
            let mut importances = vec![];
            let trees: Vec<ForestTree> = if algorithm == Algorithm::RandomForest {
                // As scikit-learn's: a fraction of the columns tried at
                // each split (at least one).
                let frac = param_f64(params, "max_features", 1.0);
                let max_features = ((frac * x.ncols() as f64) as usize).clamp(1, x.ncols());
                let p = tree_params(params, None, Some(max_features));
                let max_samples = param_f64(params, "max_samples", 1.0);
                let base = row_weights.unwrap_or_else(|| vec![1.0; y.len()]);
                let (grown, shares) =
                    cart::forest(x, &y, &base, *k, &p, n_trees, max_samples, &mut rng);
                importances = shares;
                grown
                    .into_iter()
                    .map(|nodes| ForestTree {
                        nodes,
                        columns: all.clone(),
                        weight: 1.0,
                    })
                    .collect()
            } else {
                let p = tree_params(params, Some(1), None);
                let rate = param_f64(params, "learning_rate", 1.0);
                cart::adaboost(x, &y, *k, &p, n_trees, rate, &mut rng)
                    .into_iter()
                    .map(|(nodes, weight)| ForestTree {
                        nodes,
                        columns: all.clone(),
                        weight,
                    })
                    .collect()
            };
            if trees.is_empty() {
                return Err(FitError::Data(format!(
                    "{algorithm} did not fit: its first tree was no better than chance on `train`"
                )));
            }
            Ok(Fitted::Forest {
                trees,
                classes: *k,
                importances,
            })
        }
        (Algorithm::LogisticRegression, Target::Classes(y, 2)) => {
            // Binary: the sigmoid model, unpenalised intercept, as
            // scikit-learn's, fitted by Newton's method (`logistic.rs`).
            let lr = LogisticSettings::of(params);
            let ones: Vec<f64> = y.iter().map(|c| f64::from(*c == 1)).collect();
            let fit = logistic::fit(
                x,
                &ones,
                row_weights.as_deref(),
                1.0 / lr.alpha,
                lr.intercept,
                lr.max_iter as usize,
            )?;
            Ok(logistic_fitted(&fit))
        }
        (Algorithm::LogisticRegression, Target::Classes(_, k)) if row_weights.is_some() => {
            Err(FitError::Unsupported(format!(
                "`class_weight` and `sample_weight` with logistic regression are supported for two classes; the target has {k}: use decision_tree, random_forest or gradient_boosting, which weigh any number of classes"
            )))
        }
        (Algorithm::LogisticRegression, Target::Classes(y, k)) => {
            use linfa::prelude::*;
            let lr = LogisticSettings::of(params);
            let ds = linfa::Dataset::new(x.clone(), y.clone());
            let model = linfa_logistic::MultiLogisticRegression::default()
                .alpha(lr.alpha)
                .max_iterations(lr.max_iter)
                .gradient_tolerance(lr.tol)
                .with_intercept(lr.intercept)
                .fit(&ds)
                .map_err(|e| FitError::Data(format!("logistic regression did not fit: {e}")))?;
            // linfa orders classes as it met them; re-order to ours.
            let classes = model.classes().to_vec();
            let w = model.params();
            let b = model.intercept();
            let p = x.ncols();
            let mut weights = vec![vec![0.0; *k]; p];
            let mut intercepts = vec![f64::NEG_INFINITY; *k];
            for (col, class) in classes.iter().enumerate() {
                for (i, row) in weights.iter_mut().enumerate() {
                    row[*class] = w[[i, col]];
                }
                intercepts[*class] = b[col];
            }
            Ok(Fitted::Softmax {
                weights,
                intercepts,
            })
        }
        (Algorithm::GradientBoosting, target) => {
            let p = gbdt_params(params, target, base, x.nrows())?;
            fit_gbdt(gbdt::Inputs::Matrix(x), target, row_weights.as_deref(), &p, scores)
        }
        // A classifier given values, or a regressor given classes: the
        // checker refuses these (E0709); named here so that a new algorithm
        // does not compile until its arms exist.
        (
            Algorithm::LinearRegression
            | Algorithm::Ridge
            | Algorithm::Lasso
            | Algorithm::ElasticNet,
            Target::Classes(..),
        )
        | (
            Algorithm::LogisticRegression
            | Algorithm::DecisionTree
            | Algorithm::RandomForest
            | Algorithm::Adaboost
            | Algorithm::GaussianNb,
            Target::Values(_),
        ) => Err(FitError::Unsupported(format!(
            "`{algorithm}` cannot learn this target"
        ))),
    }
}

/// Ridge (and OLS with `alpha = 0`) as scikit-learn's `Ridge`: minimises
/// `||y - Xw - b||² + alpha·||w||²`, the intercept unpenalised.
fn fit_ridge(
    x: &Array2<f64>,
    y: &Array1<f64>,
    alpha: f64,
    intercept: bool,
) -> Result<Fitted, FitError> {
    let (xm, ym) = if intercept {
        (
            x.mean_axis(Axis(0))
                .unwrap_or_else(|| Array1::zeros(x.ncols())),
            y.mean().unwrap_or(0.0),
        )
    } else {
        (Array1::zeros(x.ncols()), 0.0)
    };
    let xc = x - &xm;
    let yc = y - ym;
    let mut a = xc.t().dot(&xc);
    for i in 0..a.nrows() {
        a[[i, i]] += alpha;
    }
    let b = xc.t().dot(&yc);
    let w = solve_normal(a, b)?;
    let b0 = ym - xm.dot(&w);
    Ok(Fitted::Linear {
        weights: w.to_vec(),
        intercept: b0,
    })
}

/// Logistic regression's parameters, in linfa's terms (`alpha` is 1/C).
struct LogisticSettings {
    alpha: f64,
    max_iter: u64,
    tol: f64,
    intercept: bool,
}

impl LogisticSettings {
    fn of(params: &BTreeMap<String, ParamValue>) -> Self {
        LogisticSettings {
            alpha: 1.0 / param_f64(params, "c", 1.0),
            max_iter: (param_f64(params, "max_iter", 100.0) as u64).max(1),
            tol: param_f64(params, "tol", 1e-4),
            intercept: param_bool(params, "fit_intercept", true),
        }
    }
}

/// Solves the normal equations `A w = b` (`A` symmetric, positive
/// semi-definite). A well-conditioned `A` is solved by Cholesky; a singular
/// or nearly singular one (a constant input, one-hot columns beside an
/// intercept, a copy of another column) gets the minimum-norm least-squares
/// solution, as scikit-learn's `lstsq` gives, instead of failing or
/// returning huge cancelling weights.
fn solve_normal(mut a: Array2<f64>, b: Array1<f64>) -> Result<Array1<f64>, FitError> {
    use linfa_linalg::cholesky::SolveC;
    use linfa_linalg::eigh::Eigh;
    let p = a.nrows();
    if p == 0 {
        return Ok(Array1::zeros(0));
    }
    let (vals, vecs) = a
        .eigh()
        .map_err(|e| FitError::Data(format!("the normal equations could not be solved ({e})")))?;
    let largest = vals.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
    let tol = largest * 1e-10;
    let smallest = vals.iter().fold(f64::INFINITY, |m, v| m.min(*v));
    if smallest > tol {
        if let Ok(w) = a.solvec(&b.clone().insert_axis(Axis(1))) {
            return Ok(w.column(0).to_owned());
        }
    }
    let mut w = Array1::zeros(p);
    for (i, &l) in vals.iter().enumerate() {
        if l > tol {
            let v = vecs.column(i);
            w.scaled_add(v.dot(&b) / l, &v);
        }
    }
    Ok(w)
}

/// Sufficient statistics of least squares over some rows.
struct Gram {
    n: f64,
    sx: Array1<f64>,
    sy: f64,
    xtx: Array2<f64>,
    xty: Array1<f64>,
}

impl Gram {
    fn of(x: &Array2<f64>, y: &Array1<f64>) -> Gram {
        Gram {
            n: x.nrows() as f64,
            sx: x.sum_axis(Axis(0)),
            sy: y.sum(),
            xtx: x.t().dot(x),
            xty: x.t().dot(y),
        }
    }

    fn sum<'a>(mut it: impl Iterator<Item = &'a Gram>) -> Gram {
        let first = it.next().map(|g| Gram {
            n: g.n,
            sx: g.sx.clone(),
            sy: g.sy,
            xtx: g.xtx.clone(),
            xty: g.xty.clone(),
        });
        let mut acc = first.unwrap_or(Gram {
            n: 0.0,
            sx: Array1::zeros(0),
            sy: 0.0,
            xtx: Array2::zeros((0, 0)),
            xty: Array1::zeros(0),
        });
        for g in it {
            acc.n += g.n;
            acc.sx += &g.sx;
            acc.sy += g.sy;
            acc.xtx += &g.xtx;
            acc.xty += &g.xty;
        }
        acc
    }

    /// Ridge on these rows: the same solution as [`fit_ridge`], from sums.
    fn solve(&self, alpha: f64, intercept: bool) -> Result<Fitted, FitError> {
        let p = self.sx.len();
        let (xm, ym) = if intercept && self.n > 0.0 {
            (&self.sx / self.n, self.sy / self.n)
        } else {
            (Array1::zeros(p), 0.0)
        };
        let mut a = self.xtx.clone();
        let mut b = self.xty.clone();
        if intercept {
            for i in 0..p {
                for j in 0..p {
                    a[[i, j]] -= self.n * xm[i] * xm[j];
                }
                b[i] -= self.n * xm[i] * ym;
            }
        }
        for i in 0..p {
            a[[i, i]] += alpha;
        }
        let w = solve_normal(a, b)?;
        Ok(Fitted::Linear {
            intercept: ym - xm.dot(&w),
            weights: w.to_vec(),
        })
    }
}

/// What a model learns: values, or class indices.
pub enum Target {
    Values(Array1<f64>),
    /// Class indices and the number of classes.
    Classes(Array1<usize>, usize),
}

impl Target {
    pub fn select(&self, rows: &[usize]) -> Target {
        match self {
            Target::Values(v) => Target::Values(rows.iter().map(|i| v[*i]).collect()),
            Target::Classes(v, k) => Target::Classes(rows.iter().map(|i| v[*i]).collect(), *k),
        }
    }
}

/// A metric of a model on held-out rows.
fn cv_score(
    metric: mlp_compiler::plan::Metric,
    model: &ModelFile,
    x: &Array2<f64>,
    y: &Target,
) -> f64 {
    let pred = model.predict(x);
    let decided = match &pred {
        mlp_ml::fitted::Prediction::Probabilities(p) if model.threshold().is_some() => {
            Some(mlp_ml::fitted::decide(p, model.threshold()))
        }
        _ => None,
    };
    mlp_ml::metrics::metric_decided(metric, &pred, y_view(y), decided.as_deref())
}

fn y_view(y: &Target) -> mlp_ml::metrics::Truth<'_> {
    match y {
        Target::Values(v) => mlp_ml::metrics::Truth::Values(v.view()),
        Target::Classes(v, _) => mlp_ml::metrics::Truth::Classes(v.view()),
    }
}

/// The classes of a classification model: declared, or the sorted distinct
/// Every combination of the search space (grid), or `trials` of them drawn
/// with the seed (random).
fn combinations(op: &ModelOp) -> Vec<BTreeMap<String, ParamValue>> {
    let mut combos: Vec<BTreeMap<String, ParamValue>> = vec![op.params.clone()];
    for (name, values) in &op.search {
        let mut next = vec![];
        for c in &combos {
            for v in values {
                let mut c = c.clone();
                c.insert(name.clone(), v.clone());
                next.push(c);
            }
        }
        combos = next;
    }
    if let Some(t) = &op.tune {
        if t.search == mlp_compiler::plan::SearchKind::Random {
            let n = t.trials.unwrap_or(10).max(1) as usize;
            // A seeded shuffle, then the first n.
            combos.sort_by_key(|c| {
                xxhash_rust::xxh3::xxh3_64_with_seed(
                    serde_json::to_string(c).unwrap_or_default().as_bytes(),
                    t.seed,
                )
            });
            combos.truncate(n);
        }
    }
    combos
}
