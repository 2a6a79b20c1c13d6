//! A trained model as plain numbers ([`Fitted`]: coefficients, intercepts,
//! tree nodes, support vectors) and its prediction. Nothing here fits a
//! model: this crate has no training library, so predicting from a bundle
//! never needs one.

use mlp_compiler::plan::{Algorithm, ParamValue, Task};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
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
        /// Per input, its share of the impurity decrease of the splits on
        /// it (scikit-learn's `feature_importances_`; empty in bundles made
        /// before it was recorded).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        importances: Vec<f64>,
    },
    /// Weighted votes of trees (random forest: equal weights, each tree on a
    /// subset of the columns; AdaBoost: SAMME weights, every column).
    Forest {
        trees: Vec<ForestTree>,
        classes: usize,
        /// A random forest's trees' impurity importances, averaged (as
        /// scikit-learn's); empty for AdaBoost and older bundles.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        importances: Vec<f64>,
    },
    /// A support vector machine: `d(x) = Σ coef_i · K(support_i, x) - rho`;
    /// regression predicts `d`, binary classification the positive (second)
    /// class when `d >= 0`, with probability `sigmoid(d)`.
    Kernel {
        kernel: Kernel,
        gamma: f64,
        degree: f64,
        support: Vec<Vec<f64>>,
        coef: Vec<f64>,
        rho: f64,
        classify: bool,
    },
    /// Gradient-boosted trees: per output, its baseline plus the values of
    /// its trees (tree `t` is output `t % outputs`), summed in order; one
    /// output is a value (regression) or the log-odds of the second class,
    /// more are the classes' softmax scores.
    Boosted {
        baseline: Vec<f64>,
        trees: Vec<Vec<BoostNode>>,
        outputs: usize,
        /// Per input, the share of the training loss its splits removed
        /// (the gains of every split on it, over the total; empty in
        /// bundles made before it was recorded).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        gains: Vec<f64>,
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

/// An SVM's kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kernel {
    Linear,
    Polynomial,
    Rbf,
}

impl Kernel {
    /// The kernel a model's `kernel` parameter names.
    pub fn parse(s: &str) -> Option<Kernel> {
        match s {
            "linear" => Some(Kernel::Linear),
            "polynomial" => Some(Kernel::Polynomial),
            "rbf" => Some(Kernel::Rbf),
            _ => None,
        }
    }
}

/// The kernel of an SVM, as linfa-kernel defines it (rbf: `exp(-γ·|a-b|²)`,
/// polynomial: `(a·b + 1)^degree`).
fn kernel(kind: Kernel, gamma: f64, degree: f64, a: &[f64], b: ndarray::ArrayView1<f64>) -> f64 {
    match kind {
        Kernel::Linear => a.iter().zip(b.iter()).map(|(x, y)| x * y).sum(),
        Kernel::Polynomial => {
            (a.iter().zip(b.iter()).map(|(x, y)| x * y).sum::<f64>() + 1.0).powf(degree)
        }
        Kernel::Rbf => {
            let d: f64 = a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum();
            (-d * gamma).exp()
        }
    }
}

pub fn svm_decision(
    kind: Kernel,
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

/// Turns each row of scores into probabilities (softmax, stable).
/// Rows per piece of [`linear_scores`].
const LINEAR_ROWS: usize = 4096;

/// Each row's `b[c] + Σⱼ xⱼ w[c][j]` (summed from the intercept in column
/// order: a row's score does not depend on its batch), row-major, one
/// column per class; softmax-normalised per row when `softmax`. Pieces of
/// rows on every core.
fn linear_scores(x: &Array2<f64>, w: &[&[f64]], b: &[f64], softmax: bool) -> Vec<f64> {
    use rayon::prelude::*;
    let (n, d) = x.dim();
    let k = b.len();
    // A model whose weights do not match its inputs is a damaged bundle or
    // a bug: never a silently shorter sum.
    assert!(
        w.len() == k && w.iter().all(|wc| wc.len() == d),
        "a linear model with weights for {:?} inputs predicting {d}",
        w.iter().map(|wc| wc.len()).collect::<Vec<_>>()
    );
    let mut z = vec![0.0; n * k];
    if k == 0 {
        return z;
    }
    if n > 0 && d > 0 && !x.is_standard_layout() {
        if let Some(cells) = x.t().as_slice() {
            // Column after column: the same sums, read a column at a time.
            let columns: Vec<&[f64]> = cells.chunks_exact(n).collect();
            return linear_scores_columns(&columns, n, w, b, softmax);
        }
    }
    let x = x.as_standard_layout();
    let cells = x.as_slice().unwrap_or(&[]);
    if cells.len() != n * d {
        return z;
    }
    if d == 0 {
        // No inputs: every row is the intercepts.
        for zi in z.chunks_exact_mut(k) {
            zi.copy_from_slice(b);
            if softmax {
                softmax_row(ndarray::ArrayViewMut1::from(zi));
            }
        }
        return z;
    }
    z.par_chunks_mut(LINEAR_ROWS * k)
        .zip(cells.par_chunks(LINEAR_ROWS * d))
        .for_each(|(out, rows)| {
            for (zi, row) in out.chunks_exact_mut(k).zip(rows.chunks_exact(d)) {
                for ((o, wc), bc) in zi.iter_mut().zip(w).zip(b) {
                    let mut acc = *bc;
                    for (v, wj) in row.iter().zip(wc.iter()) {
                        acc += v * wj;
                    }
                    *o = acc;
                }
                if softmax {
                    softmax_row(ndarray::ArrayViewMut1::from(zi));
                }
            }
        });
    z
}

/// [`linear_scores`] of the inputs' columns (one slice of `n` values per
/// input): each row's sum from the intercept in column order, as for a
/// row-major matrix (the same bits), taken a column at a time over a
/// piece of rows.
fn linear_scores_columns(
    columns: &[&[f64]],
    n: usize,
    w: &[&[f64]],
    b: &[f64],
    softmax: bool,
) -> Vec<f64> {
    use rayon::prelude::*;
    let (d, k) = (columns.len(), b.len());
    assert!(
        w.len() == k && w.iter().all(|wc| wc.len() == d) && columns.iter().all(|c| c.len() == n),
        "a linear model with weights for {:?} inputs predicting {d} columns",
        w.iter().map(|wc| wc.len()).collect::<Vec<_>>()
    );
    let mut z = vec![0.0; n * k];
    if k == 0 {
        return z;
    }
    z.par_chunks_mut(LINEAR_ROWS * k)
        .enumerate()
        .for_each(|(piece, out)| {
            let first = piece * LINEAR_ROWS;
            let len = out.len() / k;
            let mut acc = vec![0.0; len];
            for (c, (wc, bc)) in w.iter().zip(b).enumerate() {
                acc.fill(*bc);
                for (col, wj) in columns.iter().zip(wc.iter()) {
                    for (a, v) in acc.iter_mut().zip(&col[first..first + len]) {
                        *a += v * wj;
                    }
                }
                for (o, a) in out.iter_mut().skip(c).step_by(k).zip(&acc) {
                    *o = *a;
                }
            }
            if softmax {
                for zi in out.chunks_exact_mut(k) {
                    softmax_row(ndarray::ArrayViewMut1::from(zi));
                }
            }
        });
    z
}

/// A softmax model's probabilities for `n` rows from `scores(weights by
/// class, intercepts)` (row-major, one per class; the weights are stored
/// one per input, each per class).
fn softmax_prediction(
    weights: &[Vec<f64>],
    intercepts: &[f64],
    n: usize,
    scores: impl FnOnce(&[&[f64]], &[f64]) -> Vec<f64>,
) -> Prediction {
    let k = intercepts.len();
    let by_class: Vec<Vec<f64>> = (0..k)
        .map(|c| weights.iter().map(|w| w[c]).collect())
        .collect();
    let by_class: Vec<&[f64]> = by_class.iter().map(Vec::as_slice).collect();
    let z = scores(&by_class, intercepts);
    Prediction::Probabilities(
        Array2::from_shape_vec((n, k), z).unwrap_or_else(|_| Array2::zeros((n, k))),
    )
}

/// A row of scores as probabilities (the largest subtracted first).
fn softmax_row(mut row: ndarray::ArrayViewMut1<f64>) {
    let m = row.fold(f64::NEG_INFINITY, |a, b| a.max(*b));
    row.mapv_inplace(|v| (v - m).exp());
    let s = row.sum();
    row.mapv_inplace(|v| v / s);
}

fn softmax_rows(z: &mut Array2<f64>) {
    for row in z.rows_mut() {
        softmax_row(row);
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
    let Some(TreeNode::Leaf { class, proba }) = leaf_of(nodes, columns, r).map(|l| &nodes[l])
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

/// A node of a boosted tree: a row goes left when its value is at most the
/// threshold, or when it is missing (NaN) and `missing_left`. A split on a
/// category input (its values are level codes, see
/// [`ModelFile::categories`]) sends left the codes in `categories` instead,
/// and the threshold is unused; a code it does not list goes right.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BoostNode {
    Split {
        feature: usize,
        threshold: f64,
        missing_left: bool,
        left: usize,
        right: usize,
        /// The level codes going left (ascending), on a category input.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        categories: Option<Vec<u32>>,
    },
    Leaf {
        value: f64,
    },
}

/// `1 / (1 + e^-z)`, stable for large `|z|`.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// A boosted tree's node packed for prediction. A leaf holds its value in
/// `threshold` and is its own child on both sides, so walking a block of
/// rows level by level (every row one step per level, as many levels as
/// the tree is deep) leaves each row at its leaf without a branch on the
/// row's way. A split on categories holds the index of its set of codes
/// (in [`PackedTree::sets`]) in `threshold`.
#[derive(Clone, Copy)]
struct Packed {
    threshold: f64,
    feature: u32,
    /// `[right, left]`: indexed by whether the row goes left.
    children: [u32; 2],
    missing_left: bool,
    categorical: bool,
    leaf: bool,
}

/// The level codes a categorical split sends left, as bits (codes are
/// below 256: an input has at most `max_bins` levels).
type CodeSet = [u64; 4];

/// Whether `v` (a level code, or NaN for a missing value) is in `set`; a
/// value that is no code (negative, fractional, too large: only in a
/// damaged input) is not.
fn in_set(set: &CodeSet, v: f64) -> bool {
    let c = v as usize;
    v >= 0.0 && c < 256 && c as f64 == v && (set[c >> 6] >> (c & 63)) & 1 == 1
}

/// A categorical split's codes as a set (codes of 256 and over left out:
/// no input has them).
fn code_set(codes: &[u32]) -> CodeSet {
    let mut set = [0u64; 4];
    for &c in codes {
        if c < 256 {
            set[(c >> 6) as usize] |= 1 << (c & 63);
        }
    }
    set
}

/// A boosted tree packed for prediction, with its depth.
struct PackedTree {
    nodes: Vec<Packed>,
    /// The categorical splits' sets of codes going left.
    sets: Vec<CodeSet>,
    /// Levels from the root to the deepest leaf.
    depth: usize,
}

/// Rows walked together through a tree.
const WALK_BLOCK: usize = 256;

/// Levels every row of a block is walked through; below them, only the
/// rows not yet at a leaf are (best-first trees are unbalanced: most rows
/// reach a leaf well above the deepest one).
const FULL_LEVELS: usize = 5;

/// A walking thread's buffers: a block's rows, each row's node, the rows
/// still walking, and the walked trees' values (tree by tree).
#[derive(Default)]
struct WalkScratch {
    block: Vec<f64>,
    at: Vec<u32>,
    active: Vec<u32>,
    walked: Vec<f64>,
}

impl PackedTree {
    fn of(nodes: &[BoostNode]) -> PackedTree {
        let leaf = |at: usize, value: f64| Packed {
            threshold: value,
            feature: 0,
            children: [at as u32; 2],
            missing_left: false,
            categorical: false,
            leaf: true,
        };
        let mut sets = vec![];
        let packed: Vec<Packed> = nodes
            .iter()
            .enumerate()
            .map(|(at, n)| match n {
                BoostNode::Split {
                    feature,
                    threshold,
                    missing_left,
                    left,
                    right,
                    categories,
                } if *left < nodes.len() && *right < nodes.len() => Packed {
                    threshold: match categories {
                        Some(codes) => {
                            sets.push(code_set(codes));
                            (sets.len() - 1) as f64
                        }
                        None => *threshold,
                    },
                    feature: u32::try_from(*feature).unwrap_or(u32::MAX),
                    children: [*right as u32, *left as u32],
                    missing_left: *missing_left,
                    categorical: categories.is_some(),
                    leaf: false,
                },
                // A child out of range (a damaged file) reads as a zero
                // leaf, as `boost_value` does.
                BoostNode::Split { .. } => leaf(at, 0.0),
                BoostNode::Leaf { value } => leaf(at, *value),
            })
            .collect();
        // The deepest leaf's level (a node met twice, only in a damaged
        // file, is not followed again: the walk ends).
        let mut depth = 0;
        let mut seen = vec![false; packed.len()];
        let mut stack = vec![(0usize, 0usize)];
        while let Some((at, level)) = stack.pop() {
            let Some(n) = packed.get(at) else { continue };
            if std::mem::replace(&mut seen[at], true) {
                continue;
            }
            if n.children == [at as u32; 2] {
                depth = depth.max(level);
            } else {
                stack.push((n.children[0] as usize, level + 1));
                stack.push((n.children[1] as usize, level + 1));
            }
        }
        PackedTree {
            nodes: packed,
            sets,
            depth,
        }
    }

    /// The tree's value for the `rows` rows of `w.block` (row-major, `d`
    /// values per row), into `out` (one per row): every row, or with
    /// `only` the rows `w.active` lists (the list left as it was, the other
    /// rows' places in `out` as they were).
    fn values(&self, w: &mut WalkScratch, rows: usize, d: usize, out: &mut [f64], only: bool) {
        let listed = only.then(|| w.active.clone());
        w.at.clear();
        w.at.resize(rows, 0);
        if !self.nodes.is_empty() {
            if self.sets.is_empty() {
                self.walk::<false>(w, d, only);
            } else {
                self.walk::<true>(w, d, only);
            }
        }
        // A tree without nodes is worth 0 to every row.
        let value = |a: u32| self.nodes.get(a as usize).map_or(0.0, |n| n.threshold);
        match listed {
            Some(listed) => {
                for &r in &listed {
                    out[r as usize] = value(w.at[r as usize]);
                }
                // The list as given (the walk shortened it).
                w.active = listed;
            }
            None => {
                for (o, a) in out.iter_mut().zip(&w.at) {
                    *o = value(*a);
                }
            }
        }
    }

    /// The columns a row's path from the root to its leaf splits on, as
    /// bits (column `j` as bit `min(j, 63)`).
    fn path_columns(&self, row: &[f64]) -> u64 {
        let mut bits = 0u64;
        let mut at = 0u32;
        // At most as many steps as the tree is deep (a damaged file's
        // cycle ends there too).
        for _ in 0..self.depth {
            let n = &self.nodes[at as usize];
            if n.leaf {
                break;
            }
            bits |= 1 << (n.feature as usize).min(63);
            at = if self.sets.is_empty() {
                self.step::<false>(row, row.len(), 0, at)
            } else {
                self.step::<true>(row, row.len(), 0, at)
            };
        }
        bits
    }

    /// Row `r`'s next node from node `a`.
    #[inline(always)]
    fn step<const CATEGORIES: bool>(&self, block: &[f64], d: usize, r: usize, a: u32) -> u32 {
        let n = &self.nodes[a as usize];
        let f = n.feature as usize;
        // A column the rows do not have reads as missing.
        let v = if f < d { block[r * d + f] } else { f64::NAN };
        let go_left = if CATEGORIES && n.categorical {
            let set = &self.sets[n.threshold as usize];
            (v.is_nan() & n.missing_left) | in_set(set, v)
        } else {
            (v <= n.threshold) | (v.is_nan() & n.missing_left)
        };
        n.children[usize::from(go_left)]
    }

    /// Moves each row of `block` from the root to its leaf (`at[r]`), or,
    /// with `only`, the rows `w.active` lists (the others stay at the
    /// root); `CATEGORIES` when the tree has categorical splits.
    fn walk<const CATEGORIES: bool>(&self, w: &mut WalkScratch, d: usize, only: bool) {
        let WalkScratch {
            block, at, active, ..
        } = w;
        let full = if only { 0 } else { self.depth.min(FULL_LEVELS) };
        for _ in 0..full {
            for (r, a) in at.iter_mut().enumerate() {
                *a = self.step::<CATEGORIES>(block, d, r, *a);
            }
        }
        if self.depth == full {
            return;
        }
        if !only {
            active.clear();
            active.extend(
                (0..at.len() as u32).filter(|r| !self.nodes[at[*r as usize] as usize].leaf),
            );
        }
        for _ in full..self.depth {
            if active.is_empty() {
                break;
            }
            // Each row one step; the ones reaching a leaf leave the list.
            let mut keep = 0;
            for k in 0..active.len() {
                let r = active[k];
                let next = self.step::<CATEGORIES>(block, d, r as usize, at[r as usize]);
                at[r as usize] = next;
                active[keep] = r;
                keep += usize::from(!self.nodes[next as usize].leaf);
            }
            active.truncate(keep);
        }
    }
}

/// The rows `first..first + rows` of `x`, contiguous.
fn block_of(x: &Array2<f64>, first: usize, rows: usize, block: &mut Vec<f64>) {
    block.clear();
    for i in first..first + rows {
        block.extend(x.row(i).iter().copied());
    }
}

/// A tree's values for [`boosted_scores`]: walked, or kept from an
/// earlier walk (row `i`'s in `values[i]`, one tree's values for every
/// row).
enum TreeWalk<'a> {
    Walk(PackedTree),
    Kept {
        values: &'a [f64],
    },
    /// Kept, but walked again for the rows whose paths split on one of
    /// the `changed` columns (bits, as [`TreeValues::paths`] has them).
    Partly {
        packed: PackedTree,
        values: &'a [f64],
        paths: &'a [u64],
        changed: u64,
    },
}

/// Every row's raw scores (`k` per row, row-major), from the baselines and
/// the trees: each row's sum in tree order, so the same bits whatever the
/// batch. Rows go in blocks; within a block, the walked trees first, tree
/// by tree and level by level (a tree's nodes stay in cache across the
/// block), then the sums: tree by tree over the block's rows (each row's
/// additions in tree order, the rows' chains of additions side by side),
/// from the walked values or the kept ones.
///
/// `kept_scores`, when every tree is kept or partly walked: each row's
/// scores before the change (`k` per row). A row no re-walk moved to
/// another leaf value keeps them (the same sum of the same values).
fn boosted_scores(
    x: &Array2<f64>,
    baseline: &[f64],
    trees: &[TreeWalk],
    k: usize,
    kept_scores: Option<&[f64]>,
) -> Vec<f64> {
    use rayon::prelude::*;
    let d = x.ncols();
    let walked = trees
        .iter()
        .filter(|t| !matches!(t, TreeWalk::Kept { .. }))
        .count();
    let mut flat = vec![0.0; x.nrows() * k];
    flat.par_chunks_mut(WALK_BLOCK * k)
        .enumerate()
        .for_each_init(WalkScratch::default, |w, (b, out)| {
            let first = b * WALK_BLOCK;
            let rows = out.len() / k;
            block_of(x, first, rows, &mut w.block);
            let mut values = std::mem::take(&mut w.walked);
            values.clear();
            values.resize(walked * rows, 0.0);
            // Rows whose sum must be taken again.
            let mut dirty = vec![kept_scores.is_none(); rows];
            let mut chunks = values.chunks_mut(rows.max(1));
            for tree in trees {
                match tree {
                    TreeWalk::Walk(packed) => {
                        if let Some(out) = chunks.next() {
                            packed.values(w, rows, d, out, false);
                        }
                    }
                    TreeWalk::Partly {
                        packed,
                        values,
                        paths,
                        changed,
                    } => {
                        if let Some(out) = chunks.next() {
                            let (kept, paths) =
                                (&values[first..first + rows], &paths[first..first + rows]);
                            out.copy_from_slice(kept);
                            w.active.clear();
                            w.active.extend(
                                (0..rows as u32).filter(|r| paths[*r as usize] & changed != 0),
                            );
                            if !w.active.is_empty() {
                                packed.values(w, rows, d, out, true);
                                for &r in &w.active {
                                    let r = r as usize;
                                    dirty[r] |= out[r].to_bits() != kept[r].to_bits();
                                }
                            }
                        }
                    }
                    TreeWalk::Kept { .. } => {}
                }
            }
            // Each row's scores: kept, or the baselines then every tree's
            // value in tree order.
            let mut summed: Vec<usize> = Vec::with_capacity(rows);
            for (r, zi) in out.chunks_mut(k).enumerate() {
                match (dirty[r], kept_scores) {
                    (false, Some(kept)) => {
                        zi.copy_from_slice(&kept[(first + r) * k..(first + r + 1) * k])
                    }
                    _ => {
                        for (z, b) in zi.iter_mut().zip(baseline) {
                            *z = *b;
                        }
                        summed.push(r);
                    }
                }
            }
            let mut wi = 0;
            for (t, tree) in trees.iter().enumerate() {
                let tree_values = match tree {
                    TreeWalk::Walk(_) | TreeWalk::Partly { .. } => {
                        wi += 1;
                        &values[(wi - 1) * rows..wi * rows]
                    }
                    TreeWalk::Kept { values } => &values[first..first + rows],
                };
                let c = t % k;
                for &r in &summed {
                    out[r * k + c] += tree_values[r];
                }
            }
            w.walked = values;
        });
    flat
}

/// A boosted model's trees' values on a set of rows, kept to re-score rows
/// whose inputs change in a few columns (permutation importance): a tree
/// that does not split on a changed column gives each row the same value.
pub struct TreeValues {
    /// The rows.
    rows: usize,
    /// `values[t * rows + i]`: tree `t`'s value for row `i` (a tree's
    /// values together).
    values: Vec<f64>,
    /// Each row's raw scores (as predicting gives them).
    scores: Vec<f64>,
    /// `paths[t * rows + i]`: the columns row `i`'s path through tree `t`
    /// splits on (column `j` as bit `min(j, 63)`): a row whose path splits
    /// on none of the changed columns reaches the same leaf.
    paths: Vec<u64>,
    /// Per tree, the columns it splits on.
    uses: Vec<Vec<bool>>,
}

/// A boosted tree's value for a row.
pub fn boost_value(nodes: &[BoostNode], row: ndarray::ArrayView1<f64>) -> f64 {
    let mut at = 0;
    loop {
        match nodes.get(at) {
            Some(BoostNode::Leaf { value }) => return *value,
            Some(BoostNode::Split {
                feature,
                threshold,
                missing_left,
                left,
                right,
                categories,
            }) => {
                let v = row.get(*feature).copied().unwrap_or(f64::NAN);
                let go_left = if v.is_nan() {
                    *missing_left
                } else if let Some(codes) = categories {
                    in_set(&code_set(codes), v)
                } else {
                    v <= *threshold
                };
                at = if go_left { *left } else { *right };
            }
            None => return 0.0,
        }
    }
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

/// What `model.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    pub algorithm: Algorithm,
    pub task: Task,
    pub target: String,
    /// The input columns, groups expanded, in the order of the weights.
    pub features: Vec<String>,
    /// The inputs taken as categories (gradient boosting's native
    /// categorical splits), each with its levels: a value's code is its
    /// level's place in the list, and a value not listed (or missing) is a
    /// missing value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, Vec<String>>,
    /// Class labels (classification), in the order of the probabilities.
    pub classes: Vec<String>,
    pub params: BTreeMap<String, ParamValue>,
    pub fitted: Fitted,
}

impl ModelFile {
    /// The decision threshold of a binary classifier, when one is set.
    pub fn threshold(&self) -> Option<f64> {
        match self.params.get("threshold") {
            Some(ParamValue::Float(t)) if self.classes.len() == 2 => Some(*t),
            _ => None,
        }
    }

    /// A boosted model's trees' values on `x` (`None` for other models).
    pub fn tree_values(&self, x: &Array2<f64>) -> Option<TreeValues> {
        let Fitted::Boosted {
            trees,
            baseline,
            outputs,
            ..
        } = &self.fitted
        else {
            return None;
        };
        let d = x.ncols();
        let k = (*outputs).max(1);
        // One output per tree, from zero: each tree's own value per row, in
        // one walk of the rows.
        let packed: Vec<PackedTree> = trees.iter().map(|t| PackedTree::of(t)).collect();
        let n = x.nrows();
        let paths: Vec<u64> = {
            use rayon::prelude::*;
            let mut paths = vec![0u64; n * trees.len()];
            paths
                .par_chunks_mut(n.max(1))
                .zip(&packed)
                .for_each(|(out, t)| {
                    for (o, row) in out.iter_mut().zip(x.rows()) {
                        *o = match row.as_slice() {
                            Some(row) => t.path_columns(row),
                            None => t.path_columns(&row.to_vec()),
                        };
                    }
                });
            paths
        };
        let walks: Vec<TreeWalk> = packed.into_iter().map(TreeWalk::Walk).collect();
        let stride = trees.len().max(1);
        let by_row = boosted_scores(x, &vec![0.0; trees.len()], &walks, stride, None);
        // A tree's values together.
        let mut values = vec![0.0; n * trees.len()];
        for (t, out) in values.chunks_mut(n.max(1)).enumerate() {
            for (i, o) in out.iter_mut().enumerate() {
                *o = by_row[i * stride + t];
            }
        }
        drop(by_row);
        // Each row's scores: its baselines and tree values summed in tree
        // order, as predicting sums them.
        let mut scores = vec![0.0; n * k];
        for zi in scores.chunks_mut(k) {
            for (z, b) in zi.iter_mut().zip(baseline) {
                *z = *b;
            }
        }
        for (t, tree) in values.chunks(n.max(1)).enumerate() {
            let c = t % k;
            for (i, v) in tree.iter().enumerate() {
                scores[i * k + c] += v;
            }
        }
        let uses = trees
            .iter()
            .map(|t| {
                let mut u = vec![false; d];
                for n in t {
                    if let BoostNode::Split { feature, .. } = n {
                        if let Some(x) = u.get_mut(*feature) {
                            *x = true;
                        }
                    }
                }
                u
            })
            .collect();
        Some(TreeValues {
            rows: n,
            values,
            scores,
            paths,
            uses,
        })
    }

    /// The predictions of `x`, whose rows are those `cache` was computed on
    /// with only the columns `changed` altered: the trees that split on none
    /// of them are not walked again. Equal to [`ModelFile::predict`] to the
    /// bit (the same values, summed in the same order).
    pub fn predict_changed(
        &self,
        cache: &TreeValues,
        x: &Array2<f64>,
        changed: &[usize],
    ) -> Prediction {
        let Fitted::Boosted {
            baseline,
            trees,
            outputs,
            ..
        } = &self.fitted
        else {
            return self.predict(x);
        };
        let k = (*outputs).max(1);
        let n = x.nrows();
        let bits = changed.iter().fold(0u64, |b, j| b | 1 << (*j).min(63));
        // A cache of other rows (not these) is of no use.
        let fits = cache.rows == n
            && cache.values.len() == n * trees.len()
            && cache.paths.len() == cache.values.len();
        let walks: Vec<TreeWalk> = trees
            .iter()
            .zip(&cache.uses)
            .enumerate()
            .map(|(t, (nodes, u))| {
                let tree = t * n..(t + 1) * n;
                if !fits {
                    TreeWalk::Walk(PackedTree::of(nodes))
                } else if changed.iter().any(|j| u.get(*j).copied().unwrap_or(true)) {
                    TreeWalk::Partly {
                        packed: PackedTree::of(nodes),
                        values: &cache.values[tree.clone()],
                        paths: &cache.paths[tree],
                        changed: bits,
                    }
                } else {
                    TreeWalk::Kept {
                        values: &cache.values[tree],
                    }
                }
            })
            .collect();
        let kept = (cache.scores.len() == x.nrows() * k
            && !walks.iter().any(|w| matches!(w, TreeWalk::Walk(_))))
        .then_some(&cache.scores[..]);
        let flat = boosted_scores(x, baseline, &walks, k, kept);
        let z = Array2::from_shape_vec((x.nrows(), k), flat)
            .unwrap_or_else(|_| Array2::zeros((x.nrows(), k)));
        self.predict_scores(z)
    }

    /// A boosted model's predictions from raw scores (one column per
    /// output: the baseline plus every tree's value, in tree order), as
    /// [`ModelFile::predict`] turns them into values or probabilities.
    pub fn predict_scores(&self, mut z: Array2<f64>) -> Prediction {
        let n = z.nrows();
        match self.task {
            Task::Regression => Prediction::Values(z.column(0).to_owned()),
            Task::Classification if z.ncols() == 1 => {
                let mut p = Array2::<f64>::zeros((n, 2));
                for i in 0..n {
                    let s = sigmoid(z[[i, 0]]);
                    p[[i, 0]] = 1.0 - s;
                    p[[i, 1]] = s;
                }
                Prediction::Probabilities(p)
            }
            Task::Classification => {
                softmax_rows(&mut z);
                Prediction::Probabilities(z)
            }
        }
    }

    /// [`ModelFile::predict`] of every row of the inputs' columns (one
    /// slice of `n` values per input, in the model's order), without a
    /// design matrix: the same bits. `None` for a model that reads rows
    /// (anything but a linear or softmax model).
    pub fn predict_columns(&self, columns: &[&[f64]], n: usize) -> Option<Prediction> {
        match &self.fitted {
            Fitted::Linear { weights, intercept } => Some(Prediction::Values(
                linear_scores_columns(columns, n, &[weights.as_slice()], &[*intercept], false)
                    .into(),
            )),
            Fitted::Softmax {
                weights,
                intercepts,
            } => Some(softmax_prediction(weights, intercepts, n, |w, b| {
                linear_scores_columns(columns, n, w, b, true)
            })),
            _ => None,
        }
    }

    /// Predictions for a design matrix: values, or class probabilities.
    /// Each row is computed on its own, summing in a fixed order, so a row
    /// gets bit-for-bit the same prediction whatever batch it arrives in
    /// (training, `mlp predict`, the server).
    pub fn predict(&self, x: &Array2<f64>) -> Prediction {
        match &self.fitted {
            Fitted::Linear { weights, intercept } => Prediction::Values(
                linear_scores(x, &[weights.as_slice()], &[*intercept], false).into(),
            ),
            Fitted::Softmax {
                weights,
                intercepts,
            } => softmax_prediction(weights, intercepts, x.nrows(), |w, b| {
                linear_scores(x, w, b, true)
            }),
            Fitted::Boosted {
                baseline,
                trees,
                outputs,
                ..
            } => {
                let k = (*outputs).max(1);
                let walks: Vec<TreeWalk> = trees
                    .iter()
                    .map(|t| TreeWalk::Walk(PackedTree::of(t)))
                    .collect();
                let flat = boosted_scores(x, baseline, &walks, k, None);
                let z = Array2::from_shape_vec((x.nrows(), k), flat)
                    .unwrap_or_else(|_| Array2::zeros((x.nrows(), k)));
                self.predict_scores(z)
            }
            Fitted::Tree { nodes, classes, .. } => {
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
                    .map(|r| svm_decision(*kernel, *gamma, *degree, support, coef, *rho, r))
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
            Fitted::Forest { trees, classes, .. } if self.algorithm == Algorithm::Adaboost => {
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
                            let c = first_argmax(&vote);
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
            Fitted::Forest { trees, classes, .. } => {
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

/// The class predicted for each row of probabilities: the most probable
/// (the first of equal ones), or, for two classes with a `threshold`, the
/// positive (last) class when its probability is at least the threshold.
pub fn decide(p: &Array2<f64>, threshold: Option<f64>) -> Vec<usize> {
    match threshold {
        Some(t) if p.ncols() == 2 => p.column(1).iter().map(|v| usize::from(*v >= t)).collect(),
        _ => p
            .rows()
            .into_iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold(
                        (0, f64::NEG_INFINITY),
                        |a, (i, v)| if *v > a.1 { (i, *v) } else { a },
                    )
                    .0
            })
            .collect(),
    }
}

/// A value as the tree compares it.
pub fn as_f32(v: f64) -> f64 {
    v as f32 as f64
}

/// The position of the largest value (the first of equal ones), as
/// numpy's `argmax`: how a class is picked from probabilities or votes.
pub fn first_argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(
            (0, f64::MIN),
            |b, (j, v)| if *v > b.1 { (j, *v) } else { b },
        )
        .0
}

/// The leaf a row reaches in a tree (`columns` maps its feature indices,
/// for a tree grown on some of the columns). A split grown here sends a row
/// left when its value, as `f32`, is `<=` the threshold; one of an earlier
/// bundle's trees (not `inclusive`) when it is `<`.
pub fn leaf_of(
    nodes: &[TreeNode],
    columns: Option<&[usize]>,
    r: ndarray::ArrayView1<f64>,
) -> Option<usize> {
    let mut at = 0;
    for _ in 0..=nodes.len() {
        match nodes.get(at)? {
            TreeNode::Split {
                feature,
                threshold,
                left,
                right,
                inclusive,
            } => {
                let col = match columns {
                    Some(c) => *c.get(*feature)?,
                    None => *feature,
                };
                let v = *r.get(col)?;
                let goes_left = if *inclusive {
                    as_f32(v) <= *threshold
                } else {
                    v < *threshold
                };
                at = if goes_left { *left } else { *right };
            }
            TreeNode::Leaf { .. } => return Some(at),
        }
    }
    None
}

/// The class shares a tree gives a row (its leaf's).
pub fn leaf_proba<'a>(nodes: &'a [TreeNode], r: ndarray::ArrayView1<f64>) -> Option<&'a [f64]> {
    match nodes.get(leaf_of(nodes, None, r)?)? {
        TreeNode::Leaf { proba, .. } => Some(proba),
        TreeNode::Split { .. } => None,
    }
}
