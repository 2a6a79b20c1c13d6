//! `model`: fit on the `train` rows, tune by K-fold cross-validation, and
//! predict every row.
//!
//! A fitted model is stored as plain numbers ([`Fitted`]: coefficients,
//! intercepts, classes) in `model.json`, so predicting needs neither the
//! training library nor the training data. The output frame is the input
//! with `prediction` (and `proba_<class>` columns for classifiers) added.
//!
//! | algorithm | fitting |
//! |---|---|
//! | `linear_regression`, `ridge` | normal equations, `(XᵀX + αI) w = Xᵀy` on centred data, solved by Cholesky (linfa-linalg): scikit-learn's `Ridge` objective exactly |
//! | `lasso`, `elastic_net` | linfa-elasticnet (coordinate descent), scikit-learn's objective and parameters |
//! | `logistic_regression` | linfa-logistic (L-BFGS); sigmoid for two classes, multinomial for more; scikit-learn's `C` is linfa's `1/alpha` |
//!
//! Other algorithms type-check but are not trained by this build yet.

use super::{input, partition_column, Context, ExecError, Output};
use mlp_compiler::plan::{ModelOp, ParamValue, Task};
use ndarray::{Array1, Array2, Axis};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// A trained model, as numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fitted {
    /// `y = x·w + b`
    Linear { weights: Vec<f64>, intercept: f64 },
    /// `p = softmax(x·W + b)`, one column of `W` per class.
    Softmax {
        weights: Vec<Vec<f64>>,
        intercepts: Vec<f64>,
    },
    /// A decision tree: node 0 is the root; a row goes left when
    /// `x[feature] < threshold`. Leaves hold a class index.
    Tree {
        nodes: Vec<TreeNode>,
        classes: usize,
    },
    /// Weighted votes of trees (random forest: equal weights, each tree on a
    /// subset of the columns; AdaBoost: SAMME weights, every column).
    Forest {
        trees: Vec<ForestTree>,
        classes: usize,
    },
    /// A support vector machine: `d(x) = Σ coef_i · K(support_i, x) - rho`;
    /// regression predicts `d`, binary classification the positive (second)
    /// class when `d >= 0`, with probability `sigmoid(d)`.
    Kernel {
        kernel: String,
        gamma: f64,
        degree: f64,
        support: Vec<Vec<f64>>,
        coef: Vec<f64>,
        rho: f64,
        classify: bool,
    },
    /// Gaussian naive Bayes: per class, its prior and each column's mean and
    /// variance.
    GaussianNb {
        priors: Vec<f64>,
        means: Vec<Vec<f64>>,
        variances: Vec<Vec<f64>>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForestTree {
    pub nodes: Vec<TreeNode>,
    /// The columns the tree reads, in the order of its feature indices.
    pub columns: Vec<usize>,
    pub weight: f64,
}

/// The kernel of an SVM, as linfa-kernel defines it (rbf: `exp(-γ·|a-b|²)`,
/// polynomial: `(a·b + 1)^degree`).
fn kernel(kind: &str, gamma: f64, degree: f64, a: &[f64], b: ndarray::ArrayView1<f64>) -> f64 {
    match kind {
        "linear" => a.iter().zip(b.iter()).map(|(x, y)| x * y).sum(),
        "polynomial" => {
            (a.iter().zip(b.iter()).map(|(x, y)| x * y).sum::<f64>() + 1.0).powf(degree)
        }
        _ => {
            let d: f64 = a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum();
            (-d * gamma).exp()
        }
    }
}

fn svm_decision(
    kind: &str,
    gamma: f64,
    degree: f64,
    support: &[Vec<f64>],
    coef: &[f64],
    rho: f64,
    r: ndarray::ArrayView1<f64>,
) -> f64 {
    let mut acc = 0.0;
    for (sv, c) in support.iter().zip(coef) {
        acc += kernel(kind, gamma, degree, sv, r) * c;
    }
    acc - rho
}

/// Reads a fitted linfa SVM as numbers, and checks on training rows that the
/// numbers decide exactly as linfa does (never silently different).
fn svm_numbers<T>(
    model: &linfa_svm::Svm<f64, T>,
    x: &Array2<f64>,
    kind: &str,
    gamma: f64,
    degree: f64,
    classify: bool,
) -> Result<Fitted, ExecError> {
    let (support, coef) = if kind == "linear" {
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
            return Err(ExecError::Internal(format!(
                "the SVM's stored form decides differently from linfa's ({ours} vs {theirs})"
            )));
        }
    }
    Ok(Fitted::Kernel {
        kernel: kind.to_string(),
        gamma,
        degree,
        support,
        coef,
        rho: model.rho,
        classify,
    })
}

/// Turns each row of scores into probabilities (softmax, stable).
fn softmax_rows(z: &mut Array2<f64>) {
    for mut row in z.rows_mut() {
        let m = row.fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        row.mapv_inplace(|v| (v - m).exp());
        let s = row.sum();
        row.mapv_inplace(|v| v / s);
    }
}

/// A tree's class probabilities for a row, as scikit-learn defines them:
/// the class shares of the training rows in the row's leaf (a tree stored
/// without them: its leaf's class, with certainty).
fn tree_proba(
    nodes: &[TreeNode],
    columns: Option<&[usize]>,
    r: ndarray::ArrayView1<f64>,
    classes: usize,
    out: &mut [f64],
    weight: f64,
) -> bool {
    let Some(TreeNode::Leaf { class, proba }) =
        super::cart::leaf_of(nodes, columns, r).map(|l| &nodes[l])
    else {
        return false;
    };
    if proba.len() == classes {
        for (o, p) in out.iter_mut().zip(proba) {
            *o += weight * p;
        }
    } else if *class < classes {
        out[*class] += weight;
    } else {
        return false;
    }
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TreeNode {
    Split {
        feature: usize,
        threshold: f64,
        left: usize,
        right: usize,
        /// scikit-learn's rule (trees grown by `cart`): left when the value,
        /// as `f32`, is `<=` the threshold. Otherwise left when `<` (trees
        /// of earlier bundles).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        inclusive: bool,
    },
    Leaf {
        class: usize,
        /// The class shares of the training rows in this leaf.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        proba: Vec<f64>,
    },
}

/// A tree's growing rules from the model's parameters (`max_depth` by
/// default `depth`; `max_features` columns tried per split).
fn tree_params(
    params: &BTreeMap<String, ParamValue>,
    depth: Option<usize>,
    max_features: Option<usize>,
) -> super::cart::Params {
    super::cart::Params {
        max_depth: match params.get("max_depth") {
            Some(ParamValue::Int(d)) => Some((*d).max(1) as usize),
            _ => depth,
        },
        min_samples_split: (param_f64(params, "min_samples_split", 2.0) as usize).max(2),
        min_samples_leaf: (param_f64(params, "min_samples_leaf", 1.0) as usize).max(1),
        criterion: match params.get("criterion") {
            Some(ParamValue::Str(c)) if c == "entropy" => super::cart::Criterion::Entropy,
            _ => super::cart::Criterion::Gini,
        },
        max_features,
    }
}

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub algorithm: String,
    pub task: Task,
    pub target: String,
    /// The input columns, groups expanded, in the order of the weights.
    pub features: Vec<String>,
    /// Class labels (classification), in the order of the probabilities.
    pub classes: Vec<String>,
    pub params: BTreeMap<String, ParamValue>,
    pub fitted: Fitted,
}

impl ModelFile {
    /// Predictions for a design matrix: values, or class probabilities.
    ///
    /// Each row is computed on its own, summing in a fixed order, so a row
    /// gets bit-for-bit the same prediction whatever batch it arrives in
    /// (training, `mlp predict`, the server).
    pub fn predict(&self, x: &Array2<f64>) -> Prediction {
        let dot = |row: ndarray::ArrayView1<f64>, w: &dyn Fn(usize) -> f64, b: f64| {
            let mut acc = b;
            for (j, v) in row.iter().enumerate() {
                acc += v * w(j);
            }
            acc
        };
        match &self.fitted {
            Fitted::Linear { weights, intercept } => Prediction::Values(
                x.rows()
                    .into_iter()
                    .map(|r| dot(r, &|j| weights[j], *intercept))
                    .collect(),
            ),
            Fitted::Softmax {
                weights,
                intercepts,
            } => {
                let k = intercepts.len();
                let mut z = Array2::<f64>::zeros((x.nrows(), k));
                for (i, r) in x.rows().into_iter().enumerate() {
                    for c in 0..k {
                        z[[i, c]] = dot(r, &|j| weights[j][c], intercepts[c]);
                    }
                }
                softmax_rows(&mut z);
                Prediction::Probabilities(z)
            }
            Fitted::Tree { nodes, classes } => {
                let mut z = Array2::<f64>::zeros((x.nrows(), *classes));
                for (i, r) in x.rows().into_iter().enumerate() {
                    if let Some(row) = z.row_mut(i).as_slice_mut() {
                        tree_proba(nodes, None, r, *classes, row, 1.0);
                    }
                }
                Prediction::Probabilities(z)
            }
            Fitted::GaussianNb {
                priors,
                means,
                variances,
            } => {
                let k = priors.len();
                let mut z = Array2::<f64>::zeros((x.nrows(), k));
                for (i, r) in x.rows().into_iter().enumerate() {
                    for c in 0..k {
                        let mut ll = priors[c].max(f64::MIN_POSITIVE).ln();
                        for (j, v) in r.iter().enumerate() {
                            let var = variances[c][j];
                            let d = v - means[c][j];
                            ll -= 0.5 * ((2.0 * std::f64::consts::PI * var).ln() + d * d / var);
                        }
                        z[[i, c]] = ll;
                    }
                }
                softmax_rows(&mut z);
                Prediction::Probabilities(z)
            }
            Fitted::Kernel {
                kernel,
                gamma,
                degree,
                support,
                coef,
                rho,
                classify,
            } => {
                let d: Vec<f64> = x
                    .rows()
                    .into_iter()
                    .map(|r| svm_decision(kernel, *gamma, *degree, support, coef, *rho, r))
                    .collect();
                if *classify {
                    let mut z = Array2::<f64>::zeros((x.nrows(), 2));
                    for (i, v) in d.iter().enumerate() {
                        let p = 1.0 / (1.0 + (-v).exp());
                        z[[i, 1]] = p;
                        z[[i, 0]] = 1.0 - p;
                    }
                    Prediction::Probabilities(z)
                } else {
                    Prediction::Values(Array1::from(d))
                }
            }
            Fitted::Forest { trees, classes } if self.algorithm == "adaboost" => {
                // scikit-learn's SAMME: each tree adds its weight to the
                // class it predicts and takes w/(K-1) from the others; the
                // scores, over the total weight and over K-1, go through a
                // softmax.
                let k = *classes;
                let spread = (k.max(2) - 1) as f64;
                let total: f64 = trees.iter().map(|t| t.weight).sum();
                let mut z = Array2::<f64>::zeros((x.nrows(), k));
                for (i, r) in x.rows().into_iter().enumerate() {
                    for t in trees {
                        let mut vote = vec![0.0; k];
                        if tree_proba(&t.nodes, Some(&t.columns), r, k, &mut vote, 1.0) {
                            let c = super::cart::first_argmax(&vote);
                            for j in 0..k {
                                z[[i, j]] += if j == c { t.weight } else { -t.weight / spread };
                            }
                        }
                    }
                    if total > 0.0 {
                        z.row_mut(i).mapv_inplace(|v| v / total / spread);
                    }
                }
                softmax_rows(&mut z);
                Prediction::Probabilities(z)
            }
            Fitted::Forest { trees, classes } => {
                // A forest averages its trees' probabilities.
                let mut z = Array2::<f64>::zeros((x.nrows(), *classes));
                for (i, r) in x.rows().into_iter().enumerate() {
                    let mut total = 0.0;
                    if let Some(row) = z.row_mut(i).as_slice_mut() {
                        for t in trees {
                            if tree_proba(&t.nodes, Some(&t.columns), r, *classes, row, t.weight) {
                                total += t.weight;
                            }
                        }
                    }
                    if total > 0.0 {
                        z.row_mut(i).mapv_inplace(|v| v / total);
                    }
                }
                Prediction::Probabilities(z)
            }
        }
    }
}

pub enum Prediction {
    Values(Array1<f64>),
    Probabilities(Array2<f64>),
}

/// The model's input columns in the frame, one-hot groups (`city_*`)
/// expanded to the columns the fitted encoding produced.
pub fn feature_columns(df: &DataFrame, op: &ModelOp) -> Vec<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = vec![];
    for f in &op.features {
        if let Some(prefix) = f.strip_suffix('*') {
            out.extend(
                names
                    .iter()
                    .filter(|n| n.starts_with(prefix) && !op.features.contains(n))
                    .cloned(),
            );
        } else {
            out.push(f.clone());
        }
    }
    out
}

/// The most probable class of each row.
pub fn labels_of(p: &Array2<f64>, classes: &[String]) -> Vec<String> {
    p.rows()
        .into_iter()
        .map(|r| {
            let (best, _) = r
                .iter()
                .enumerate()
                .fold(
                    (0, f64::NEG_INFINITY),
                    |a, (i, v)| if *v > a.1 { (i, *v) } else { a },
                );
            classes.get(best).cloned().unwrap_or_default()
        })
        .collect()
}

/// Per row, its first input that is missing (`None`) or not finite, by
/// column.
pub type BadInputs = Vec<Option<(String, Option<f64>)>>;

/// What `fill_design` does with a missing or non-finite input: (row,
/// column, value).
type OnBadInput<'a> = dyn FnMut(usize, &str, Option<f64>) -> Result<(), ExecError> + 'a;

/// The model's design matrix: one column per input, in order. A missing or
/// non-finite value is handed to `on_bad(row, column, value)`, which either
/// records it (its cell stays 0) or fails. Whole finite columns are copied.
fn fill_design(
    df: &DataFrame,
    columns: &[String],
    on_bad: &mut OnBadInput,
) -> Result<Array2<f64>, ExecError> {
    let mut x = Array2::<f64>::zeros((df.height(), columns.len()));
    for (j, c) in columns.iter().enumerate() {
        let s = df
            .column(c)
            .map_err(ExecError::polars)?
            .cast(&DataType::Float64)
            .map_err(ExecError::polars)?;
        let ca = s.f64().map_err(ExecError::polars)?.rechunk();
        // The common case (no nulls, one chunk, every value finite): a
        // straight copy.
        if let Ok(values) = ca.cont_slice() {
            if values.iter().all(|v| v.is_finite()) {
                x.column_mut(j).assign(&ndarray::ArrayView1::from(values));
                continue;
            }
        }
        for (i, v) in ca.iter().enumerate() {
            match v {
                Some(v) if v.is_finite() => x[[i, j]] = v,
                other => on_bad(i, c, other)?,
            }
        }
    }
    Ok(x)
}

/// As [`design`], for prediction: a row with a missing or non-finite input
/// does not fail the batch; it is reported (the first such column and its
/// value) and its row of the matrix is left at zero, for the caller to
/// reject.
pub fn design_rows(
    df: &DataFrame,
    columns: &[String],
) -> Result<(Array2<f64>, BadInputs), ExecError> {
    let mut bad: BadInputs = vec![None; df.height()];
    let x = fill_design(df, columns, &mut |i, c, v| {
        if bad[i].is_none() {
            bad[i] = Some((c.to_string(), v));
        }
        Ok(())
    })?;
    Ok((x, bad))
}

/// The design matrix of the given rows (row-major, one column per input);
/// a missing or non-finite value fails, naming its column and row.
pub fn design(df: &DataFrame, columns: &[String]) -> Result<Array2<f64>, ExecError> {
    design_in(df, columns, &|i| i + 1)
}

/// As [`design`]; an error names a row as `row_of(index)` numbers it (the
/// row of the whole input, not of the partition).
pub fn design_in(
    df: &DataFrame,
    columns: &[String],
    row_of: &dyn Fn(usize) -> usize,
) -> Result<Array2<f64>, ExecError> {
    fill_design(df, columns, &mut |i, c, _| {
        Err(ExecError::Data(format!(
            "model input `{c}` has a missing or infinite value at row {} of the data; impute it, or filter the row",
            row_of(i)
        )))
    })
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

/// Fits one parameter combination.
fn fit(
    algorithm: &str,
    params: &BTreeMap<String, ParamValue>,
    x: &Array2<f64>,
    y: &Target,
) -> Result<Fitted, ExecError> {
    match (algorithm, y) {
        ("linear_regression" | "ridge", Target::Values(y)) => {
            let alpha = if algorithm == "ridge" {
                param_f64(params, "alpha", 1.0)
            } else {
                0.0
            };
            fit_ridge(x, y, alpha, param_bool(params, "fit_intercept", true))
        }
        ("lasso" | "elastic_net", Target::Values(y)) => {
            // Coordinate descent with scikit-learn's objective:
            // (1/2n)·||y - Xw||² + alpha·l1_ratio·||w||₁ + alpha·(1-l1_ratio)/2·||w||².
            use linfa::prelude::*;
            let l1 = if algorithm == "lasso" {
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
                .map_err(|e| ExecError::Data(format!("{algorithm} did not fit: {e}")))?;
            let w = model.hyperplane().to_owned();
            Ok(Fitted::Linear {
                intercept: ym - xm.dot(&w),
                weights: w.to_vec(),
            })
        }
        ("decision_tree", Target::Classes(y, k)) => {
            use rand::SeedableRng;
            let y: Vec<usize> = y.to_vec();
            let p = tree_params(params, None, None);
            let rng = rand::rngs::StdRng::seed_from_u64(0);
            let nodes = super::cart::grow(x, &y, &vec![1.0; y.len()], *k, &p, rng);
            Ok(Fitted::Tree { nodes, classes: *k })
        }
        ("svm", target) => {
            use linfa::prelude::*;
            let c = param_f64(params, "c", 1.0);
            let gamma = param_f64(params, "gamma", 1.0);
            let degree = param_f64(params, "degree", 3.0);
            let kind = match params.get("kernel") {
                Some(ParamValue::Str(k)) => k.clone(),
                _ => "rbf".into(),
            };
            macro_rules! with_kernel {
                ($p:expr) => {
                    match kind.as_str() {
                        "linear" => $p.linear_kernel(),
                        "polynomial" => $p.polynomial_kernel(1.0, degree),
                        _ => $p.gaussian_kernel(1.0 / gamma),
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
                        .map_err(|e| ExecError::Data(format!("svm did not fit: {e}")))?;
                    svm_numbers(&model, x, &kind, gamma, degree, false)
                }
                Target::Classes(y, 2) => {
                    let yb: Array1<bool> = y.mapv(|v| v == 1);
                    let ds = linfa::Dataset::new(x.clone(), yb);
                    let p = linfa_svm::Svm::<f64, bool>::params().pos_neg_weights(c, c);
                    let model = with_kernel!(p)
                        .fit(&ds)
                        .map_err(|e| ExecError::Data(format!("svm did not fit: {e}")))?;
                    svm_numbers(&model, x, &kind, gamma, degree, true)
                }
                Target::Classes(_, k) => Err(ExecError::Data(format!(
                    "svm classifies two classes; the target has {k} in `train` (use logistic_regression or a tree)"
                ))),
            }
        }
        ("gaussian_nb", Target::Classes(y, k)) => {
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
        ("random_forest" | "adaboost", Target::Classes(y, k)) => {
            use rand::SeedableRng;
            let seed = param_f64(params, "seed", 42.0) as u64;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let y: Vec<usize> = y.to_vec();
            let n_trees = (param_f64(params, "n_estimators", 100.0) as usize).max(1);
            let all: Vec<usize> = (0..x.ncols()).collect();
            let trees: Vec<ForestTree> = if algorithm == "random_forest" {
                // As scikit-learn's: a fraction of the columns tried at
                // each split (at least one).
                let frac = param_f64(params, "max_features", 1.0);
                let max_features = ((frac * x.ncols() as f64) as usize).clamp(1, x.ncols());
                let p = tree_params(params, None, Some(max_features));
                let max_samples = param_f64(params, "max_samples", 1.0);
                super::cart::forest(x, &y, *k, &p, n_trees, max_samples, &mut rng)
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
                super::cart::adaboost(x, &y, *k, &p, n_trees, rate, &mut rng)
                    .into_iter()
                    .map(|(nodes, weight)| ForestTree {
                        nodes,
                        columns: all.clone(),
                        weight,
                    })
                    .collect()
            };
            if trees.is_empty() {
                return Err(ExecError::Data(format!(
                    "{algorithm} did not fit: its first tree was no better than chance on `train`"
                )));
            }
            Ok(Fitted::Forest { trees, classes: *k })
        }
        ("logistic_regression", Target::Classes(y, 2)) => {
            // Binary: the sigmoid model, unpenalised intercept, as
            // scikit-learn's (linfa's alpha is 1/C).
            use linfa::prelude::*;
            let lr = LogisticSettings::of(params);
            let ds = linfa::Dataset::new(x.clone(), y.clone());
            let model = linfa_logistic::LogisticRegression::default()
                .alpha(lr.alpha)
                .max_iterations(lr.max_iter)
                .gradient_tolerance(lr.tol)
                .with_intercept(lr.intercept)
                .fit(&ds)
                .map_err(|e| ExecError::Data(format!("logistic regression did not fit: {e}")))?;
            let pos = model.labels().pos.class;
            let w = model.params();
            let p = x.ncols();
            // softmax(z, 0) = sigmoid(z): the positive class carries the
            // weights, the other zeros.
            let mut weights = vec![vec![0.0; 2]; p];
            for (i, row) in weights.iter_mut().enumerate() {
                row[pos] = w[i];
            }
            let mut intercepts = vec![0.0; 2];
            intercepts[pos] = model.intercept();
            Ok(Fitted::Softmax {
                weights,
                intercepts,
            })
        }
        ("logistic_regression", Target::Classes(y, k)) => {
            use linfa::prelude::*;
            let lr = LogisticSettings::of(params);
            let ds = linfa::Dataset::new(x.clone(), y.clone());
            let model = linfa_logistic::MultiLogisticRegression::default()
                .alpha(lr.alpha)
                .max_iterations(lr.max_iter)
                .gradient_tolerance(lr.tol)
                .with_intercept(lr.intercept)
                .fit(&ds)
                .map_err(|e| ExecError::Data(format!("logistic regression did not fit: {e}")))?;
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
        (a, _) => Err(ExecError::Unsupported(format!(
            "`{a}` cannot learn this target"
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
) -> Result<Fitted, ExecError> {
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
fn solve_normal(mut a: Array2<f64>, b: Array1<f64>) -> Result<Array1<f64>, ExecError> {
    use linfa_linalg::cholesky::SolveC;
    use linfa_linalg::eigh::Eigh;
    let p = a.nrows();
    if p == 0 {
        return Ok(Array1::zeros(0));
    }
    let (vals, vecs) = a
        .eigh()
        .map_err(|e| ExecError::Data(format!("the normal equations could not be solved ({e})")))?;
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
    fn solve(&self, alpha: f64, intercept: bool) -> Result<Fitted, ExecError> {
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

enum Target {
    Values(Array1<f64>),
    /// Class indices and the number of classes.
    Classes(Array1<usize>, usize),
}

impl Target {
    fn select(&self, rows: &[usize]) -> Target {
        match self {
            Target::Values(v) => Target::Values(rows.iter().map(|i| v[*i]).collect()),
            Target::Classes(v, k) => Target::Classes(rows.iter().map(|i| v[*i]).collect(), *k),
        }
    }
}

/// The target of the given rows, and the class labels.
fn target(df: &DataFrame, op: &ModelOp, classes: &[String]) -> Result<Target, ExecError> {
    let c = df.column(&op.target).map_err(ExecError::polars)?;
    match op.task {
        Task::Regression => {
            let s = c.cast(&DataType::Float64).map_err(ExecError::polars)?;
            let v: Vec<f64> = s
                .f64()
                .map_err(ExecError::polars)?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect();
            Ok(Target::Values(Array1::from(v)))
        }
        Task::Classification => {
            let s = c.cast(&DataType::String).map_err(ExecError::polars)?;
            let mut idx = Vec::with_capacity(df.height());
            for (i, v) in s.str().map_err(ExecError::polars)?.iter().enumerate() {
                let v = v.ok_or_else(|| {
                    ExecError::Data(format!("target `{}` is null at row {}", op.target, i + 1))
                })?;
                let k = classes.iter().position(|c| c == v).ok_or_else(|| {
                    ExecError::Data(format!(
                        "target `{}` has the value \"{v}\" at row {}, which is not a training class",
                        op.target,
                        i + 1
                    ))
                })?;
                idx.push(k);
            }
            Ok(Target::Classes(Array1::from(idx), classes.len()))
        }
    }
}

/// A metric of a model on held-out rows.
fn cv_score(metric: &str, model: &ModelFile, x: &Array2<f64>, y: &Target) -> f64 {
    let pred = model.predict(x);
    super::evaluate::metric(metric, &pred, y_view(y))
}

fn y_view(y: &Target) -> super::evaluate::Truth<'_> {
    match y {
        Target::Values(v) => super::evaluate::Truth::Values(v.view()),
        Target::Classes(v, _) => super::evaluate::Truth::Classes(v.view()),
    }
}

/// The classes of a classification model: declared, or the sorted distinct
/// target values of the train rows.
pub fn classes_of(op: &ModelOp, train: &DataFrame) -> Result<Vec<String>, ExecError> {
    match &op.classes {
        Some(c) => Ok(c.clone()),
        None => distinct_text(train, &op.target),
    }
}

/// The sorted distinct non-null values of a column, as text.
pub fn distinct_text(df: &DataFrame, column: &str) -> Result<Vec<String>, ExecError> {
    let s = df
        .column(column)
        .map_err(ExecError::polars)?
        .cast(&DataType::String)
        .map_err(ExecError::polars)?;
    let mut v: Vec<String> = s
        .str()
        .map_err(ExecError::polars)?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Class indices of a column of labels.
pub fn class_indices(c: &Column, classes: &[String]) -> Result<Array1<usize>, ExecError> {
    let s = c.cast(&DataType::String).map_err(ExecError::polars)?;
    let mut idx = Vec::with_capacity(c.len());
    for (i, v) in s.str().map_err(ExecError::polars)?.iter().enumerate() {
        let v =
            v.ok_or_else(|| ExecError::Data(format!("`{}` is null at row {}", c.name(), i + 1)))?;
        let k = classes.iter().position(|c| c == v).ok_or_else(|| {
            ExecError::Data(format!(
                "`{}` has the value \"{v}\" at row {}, which is not a training class",
                c.name(),
                i + 1
            ))
        })?;
        idx.push(k);
    }
    Ok(Array1::from(idx))
}

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
        if t.search == "random" {
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

pub fn run(op: &ModelOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let part = partition_column(cx)
        .ok_or_else(|| ExecError::Internal("a model on a stage without a split".into()))?;
    let train = super::train_rows(&df, &part)?;
    if train.height() == 0 {
        return Err(ExecError::Data("no rows in `train` to fit on".into()));
    }
    // Where each train row is in the whole input, for messages.
    let train_at: Vec<usize> = df
        .column(&part)
        .and_then(|c| c.cast(&DataType::String))
        .map_err(ExecError::polars)?
        .str()
        .map_err(ExecError::polars)?
        .iter()
        .enumerate()
        .filter(|(_, p)| *p == Some("train"))
        .map(|(i, _)| i + 1)
        .collect();
    let features = feature_columns(&df, op);
    let classes: Vec<String> = match op.task {
        Task::Regression => vec![],
        Task::Classification => classes_of(op, &train)?,
    };
    if op.task == Task::Classification {
        let present = distinct_text(&train, &op.target)?;
        if classes.len() < 2 || present.len() < 2 {
            return Err(ExecError::Data(format!(
                "target `{}` has {} in `train`; a classifier needs rows of at least two classes (check the data, the filters upstream, or the split)",
                op.target,
                match present.as_slice() {
                    [] => "no values".to_string(),
                    [one] => format!("one class only (\"{one}\")"),
                    _ => format!("{} classes", present.len()),
                }
            )));
        }
    }
    let x = design_in(&train, &features, &|i| {
        train_at.get(i).copied().unwrap_or(i + 1)
    })?;
    let y = target(&train, op, &classes)?;
    let mk = |params: BTreeMap<String, ParamValue>, fitted: Fitted| ModelFile {
        algorithm: op.algorithm.clone(),
        task: op.task.clone(),
        target: op.target.clone(),
        features: features.clone(),
        classes: classes.clone(),
        params,
        fitted,
    };
    // Tuning: K-fold cross-validation on train, folds by a seeded shuffle.
    let mut trials = vec![];
    let best = match &op.tune {
        Some(t) if !op.search.is_empty() => {
            let n = x.nrows();
            if n < t.cv as usize {
                return Err(ExecError::Data(format!(
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
            let stats: Option<Vec<Gram>> = match (&y, op.algorithm.as_str()) {
                (Target::Values(yv), "ridge" | "linear_regression") => Some(
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
                            let alpha = if op.algorithm == "ridge" {
                                param_f64(&combo, "alpha", 1.0)
                            } else {
                                0.0
                            };
                            rest.solve(alpha, param_bool(&combo, "fit_intercept", true))?
                        }
                        None => {
                            let tr: Vec<usize> = (0..n).filter(|i| fold_of[*i] != fold).collect();
                            fit(
                                &op.algorithm,
                                &combo,
                                &x.select(Axis(0), &tr),
                                &y.select(&tr),
                            )?
                        }
                    };
                    let m = mk(combo.clone(), fitted);
                    scores.push(cv_score(&t.metric, &m, &te_x[fold], &te_y[fold]));
                }
                let mean = scores.iter().sum::<f64>() / scores.len() as f64;
                let comparable = if super::evaluate::higher_is_better(&t.metric) {
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
    let fitted = fit(&op.algorithm, &best, &x, &y)?;
    let model = mk(best.clone(), fitted);
    // Predict every row.
    let all = design(&df, &features)?;
    let mut out_df = df.clone();
    match model.predict(&all) {
        Prediction::Values(v) => {
            out_df
                .with_column(Column::new("prediction".into(), v.to_vec()))
                .map_err(ExecError::polars)?;
        }
        Prediction::Probabilities(p) => {
            let labels = labels_of(&p, &classes);
            out_df
                .with_column(Column::new("prediction".into(), labels))
                .map_err(ExecError::polars)?;
            for (j, c) in classes.iter().enumerate() {
                out_df
                    .with_column(Column::new(
                        mlp_compiler::plan::names::proba_column(c).into(),
                        p.column(j).to_vec(),
                    ))
                    .map_err(ExecError::polars)?;
            }
        }
    }
    let mut out = Output {
        frame: Some(out_df),
        ..Output::default()
    };
    if !trials.is_empty() {
        out.notes.push(format!(
            "tuned {} combinations by {}-fold cross-validation; chose {}",
            trials.len(),
            op.tune.as_ref().map(|t| t.cv).unwrap_or(0),
            serde_json::to_string(&best).unwrap_or_default()
        ));
    }
    out.json.push((
        "model".into(),
        serde_json::to_value(&model).map_err(|e| ExecError::Internal(e.to_string()))?,
    ));
    out.json.push(("trials".into(), json!(trials)));
    Ok(out)
}
