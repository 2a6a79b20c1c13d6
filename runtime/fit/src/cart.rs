//! `rows + classes -> tree nodes`: classification trees grown as
//! scikit-learn's `DecisionTreeClassifier` grows them (CART, best split,
//! depth first), and the two ensembles built on them: random forests
//! (bootstrap rows, a random subset of columns at every split, trees'
//! probabilities averaged) and AdaBoost (SAMME, weighted stumps).
//!
//! scikit-learn's rules, kept on purpose so that the same data grows the
//! same tree: values are compared as `f32`; a split's threshold is the
//! midpoint of two neighbouring values (`a/2 + b/2` in `f64`), and a row goes
//! left when its value is `<=` it; values closer than 1e-7 are not split
//! apart; a node is a leaf at `max_depth`, below `min_samples_split` rows or
//! twice `min_samples_leaf`, or when pure; among equal candidate splits the
//! first (lowest threshold, earliest column) wins. A leaf's probabilities
//! are the (weighted) class shares of the training rows in it.

use mlp_ml::fitted::{first_argmax, leaf_proba, TreeNode};
use ndarray::Array2;
use rand::Rng;

/// How a node's impurity is measured.
#[derive(Clone, Copy, PartialEq)]
pub enum Criterion {
    Gini,
    Entropy,
}

#[derive(Clone)]
pub struct Params {
    pub max_depth: Option<usize>,
    pub min_samples_split: usize,
    pub min_samples_leaf: usize,
    pub criterion: Criterion,
    /// Columns tried at each split (all when `None`).
    pub max_features: Option<usize>,
}

/// Values closer than this are not told apart (scikit-learn's
/// `FEATURE_THRESHOLD`).
const FEATURE_THRESHOLD: f32 = 1e-7;

fn impurity(counts: &[f64], total: f64, criterion: Criterion) -> f64 {
    if total <= 0.0 {
        return 0.0;
    }
    match criterion {
        Criterion::Gini => {
            1.0 - counts
                .iter()
                .map(|c| (c / total) * (c / total))
                .sum::<f64>()
        }
        Criterion::Entropy => -counts
            .iter()
            .filter(|c| **c > 0.0)
            .map(|c| (c / total) * (c / total).log2())
            .sum::<f64>(),
    }
}

struct Grower<'a, R: Rng> {
    x: Vec<Vec<f32>>,
    y: &'a [usize],
    w: &'a [f64],
    k: usize,
    p: &'a Params,
    rng: R,
    nodes: Vec<TreeNode>,
    /// Per column, the weighted impurity decrease of the splits on it.
    decrease: Vec<f64>,
}

/// Impurity decreases (or gains) as shares summing to 1 (all zeros when
/// the tree has no split), as scikit-learn normalises
/// `feature_importances_`.
pub(crate) fn shares(mut v: Vec<f64>) -> Vec<f64> {
    let total: f64 = v.iter().sum();
    if total > 0.0 {
        for x in &mut v {
            *x /= total;
        }
    }
    v
}

/// Grows one tree on the rows of `x` with classes `y` (`0..k`) and weights
/// `w` (rows of weight 0 are left out, as a bootstrap leaves them).
pub fn grow(
    x: &Array2<f64>,
    y: &[usize],
    w: &[f64],
    k: usize,
    p: &Params,
    rng: impl Rng,
) -> Vec<TreeNode> {
    grow_scored(x, y, w, k, p, rng).0
}

/// As [`grow`], with each column's share of the tree's impurity decrease
/// (scikit-learn's `feature_importances_`).
pub fn grow_scored(
    x: &Array2<f64>,
    y: &[usize],
    w: &[f64],
    k: usize,
    p: &Params,
    rng: impl Rng,
) -> (Vec<TreeNode>, Vec<f64>) {
    let columns: Vec<Vec<f32>> = (0..x.ncols())
        .map(|j| x.column(j).iter().map(|v| *v as f32).collect())
        .collect();
    let mut g = Grower {
        x: columns,
        y,
        w,
        k,
        p,
        rng,
        nodes: vec![],
        decrease: vec![0.0; x.ncols()],
    };
    let rows: Vec<usize> = (0..y.len()).filter(|i| w[*i] != 0.0).collect();
    g.node(rows, 0);
    (g.nodes, shares(g.decrease))
}

impl<R: Rng> Grower<'_, R> {
    fn counts(&self, rows: &[usize]) -> (Vec<f64>, f64) {
        let mut c = vec![0.0; self.k];
        let mut total = 0.0;
        for &i in rows {
            c[self.y[i]] += self.w[i];
            total += self.w[i];
        }
        (c, total)
    }

    fn leaf(&mut self, counts: &[f64], total: f64) -> usize {
        let at = self.nodes.len();
        let class = first_argmax(counts);
        self.nodes.push(TreeNode::Leaf {
            class,
            proba: counts.iter().map(|c| c / total).collect(),
        });
        at
    }

    /// Grows the node holding `rows`; returns its index.
    fn node(&mut self, rows: Vec<usize>, depth: usize) -> usize {
        let (counts, total) = self.counts(&rows);
        let n = rows.len();
        let p = self.p;
        let leaf = p.max_depth.is_some_and(|d| depth >= d)
            || n < p.min_samples_split
            || n < 2 * p.min_samples_leaf
            || impurity(&counts, total, p.criterion) <= f64::EPSILON;
        if leaf {
            return self.leaf(&counts, total);
        }
        let Some((feature, threshold)) = self.best_split(&rows) else {
            return self.leaf(&counts, total);
        };
        let (left, right): (Vec<usize>, Vec<usize>) = rows
            .iter()
            .partition(|&&i| (self.x[feature][i] as f64) <= threshold);
        let ((cl, wl), (cr, wr)) = (self.counts(&left), self.counts(&right));
        self.decrease[feature] += total * impurity(&counts, total, p.criterion)
            - wl * impurity(&cl, wl, p.criterion)
            - wr * impurity(&cr, wr, p.criterion);
        let at = self.nodes.len();
        self.nodes.push(TreeNode::Leaf {
            class: 0,
            proba: vec![],
        });
        let l = self.node(left, depth + 1);
        let r = self.node(right, depth + 1);
        self.nodes[at] = TreeNode::Split {
            feature,
            threshold,
            left: l,
            right: r,
            inclusive: true,
        };
        at
    }

    /// The best split of `rows`: the column and threshold that leave the
    /// least weighted impurity in the two children.
    fn best_split(&mut self, rows: &[usize]) -> Option<(usize, f64)> {
        let n_features = self.x.len();
        let mut order: Vec<usize> = (0..n_features).collect();
        let wanted = self
            .p
            .max_features
            .unwrap_or(n_features)
            .clamp(1, n_features);
        let mut best: Option<(f64, usize, f64)> = None;
        let mut tried = 0;
        let min_leaf = self.p.min_samples_leaf.max(1);
        let mut sorted: Vec<(f32, usize)> = Vec::with_capacity(rows.len());
        for f in 0..n_features {
            if tried >= wanted {
                break;
            }
            // A random column among those not yet visited (all of them in
            // order when every column is tried).
            if wanted < n_features {
                let pick = self.rng.gen_range(f..n_features);
                order.swap(f, pick);
            }
            let j = order[f];
            sorted.clear();
            sorted.extend(rows.iter().map(|&i| (self.x[j][i], i)));
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
                continue;
            };
            if last.0 <= first.0 + FEATURE_THRESHOLD {
                continue; // constant here: does not count as tried
            }
            tried += 1;
            let mut left = vec![0.0; self.k];
            let mut right = vec![0.0; self.k];
            let mut wl = 0.0;
            let mut wr = 0.0;
            for &(_, i) in &sorted {
                right[self.y[i]] += self.w[i];
                wr += self.w[i];
            }
            let m = sorted.len();
            for pos in 1..m {
                let (v_prev, i) = sorted[pos - 1];
                left[self.y[i]] += self.w[i];
                right[self.y[i]] -= self.w[i];
                wl += self.w[i];
                wr -= self.w[i];
                let v = sorted[pos].0;
                if v <= v_prev + FEATURE_THRESHOLD {
                    continue;
                }
                if pos < min_leaf || m - pos < min_leaf {
                    continue;
                }
                let score = -(wl * impurity(&left, wl, self.p.criterion)
                    + wr * impurity(&right, wr, self.p.criterion));
                if best.is_none_or(|b| score > b.0) {
                    let mut threshold = v_prev as f64 / 2.0 + v as f64 / 2.0;
                    if threshold == v as f64 || !threshold.is_finite() {
                        threshold = v_prev as f64;
                    }
                    best = Some((score, j, threshold));
                }
            }
        }
        best.map(|(_, j, t)| (j, t))
    }
}

/// A random forest: `n_trees` trees, each on a bootstrap sample of
/// `max_samples` times the rows and `max_features` columns tried per split.
/// A row's weight in a tree is its bootstrap count times its `base` weight
/// (its class weight, as scikit-learn's).
#[allow(clippy::too_many_arguments)]
pub fn forest(
    x: &Array2<f64>,
    y: &[usize],
    base: &[f64],
    k: usize,
    p: &Params,
    n_trees: usize,
    max_samples: f64,
    rng: &mut impl Rng,
) -> (Vec<Vec<TreeNode>>, Vec<f64>) {
    let n = y.len();
    let draws = ((max_samples * n as f64).round() as usize).clamp(1, n.max(1));
    let grown = (0..n_trees)
        .map(|_| {
            let mut w = vec![0.0; n];
            for _ in 0..draws {
                w[rng.gen_range(0..n)] += 1.0;
            }
            for (wi, b) in w.iter_mut().zip(base) {
                *wi *= b;
            }
            let seed: u64 = rng.gen();
            grow_scored(
                x,
                y,
                &w,
                k,
                p,
                <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
            )
        })
        .collect::<Vec<_>>();
    // The mean of the trees' shares (trees without a split left out), as
    // scikit-learn's forest.
    let mut mean = vec![0.0; x.ncols()];
    for (_, imp) in grown.iter().filter(|(_, imp)| imp.iter().any(|v| *v > 0.0)) {
        for (m, v) in mean.iter_mut().zip(imp) {
            *m += v;
        }
    }
    (grown.into_iter().map(|(t, _)| t).collect(), shares(mean))
}

/// AdaBoost as scikit-learn's SAMME: each round fits a tree on the weighted
/// rows, weighs it by `learning_rate · (ln((1 - err) / err) + ln(K - 1))`,
/// and raises the weight of the rows it got wrong. Returns the trees and
/// their weights (a perfect first tree stops with weight 1).
pub fn adaboost(
    x: &Array2<f64>,
    y: &[usize],
    k: usize,
    p: &Params,
    n_estimators: usize,
    learning_rate: f64,
    rng: &mut impl Rng,
) -> Vec<(Vec<TreeNode>, f64)> {
    let n = y.len();
    let mut w = vec![1.0 / n.max(1) as f64; n];
    let mut out = vec![];
    for round in 0..n_estimators {
        let seed: u64 = rng.gen();
        let tree = grow(
            x,
            y,
            &w,
            k,
            p,
            <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed),
        );
        let wrong: Vec<bool> = (0..n)
            .map(|i| {
                let proba = leaf_proba(&tree, x.row(i)).unwrap_or(&[]);
                let class = first_argmax(proba);
                class != y[i]
            })
            .collect();
        let total: f64 = w.iter().sum();
        let err: f64 = (0..n).filter(|i| wrong[*i]).map(|i| w[i]).sum::<f64>() / total;
        if err <= 0.0 {
            out.push((tree, 1.0));
            break;
        }
        if err >= 1.0 - 1.0 / k as f64 {
            // No better than chance: dropped, and boosting stops.
            break;
        }
        let alpha = learning_rate * (((1.0 - err) / err).ln() + ((k as f64) - 1.0).ln());
        out.push((tree, alpha));
        if round + 1 == n_estimators {
            break;
        }
        for i in 0..n {
            if wrong[i] && w[i] > 0.0 {
                w[i] = (w[i].ln() + alpha).exp();
            }
        }
        let sum: f64 = w.iter().sum();
        if sum <= 0.0 {
            break;
        }
        for v in &mut w {
            *v /= sum;
        }
    }
    out
}
