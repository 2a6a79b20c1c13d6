//! Gradient-boosted trees on histograms, as scikit-learn's
//! `HistGradientBoostingRegressor`/`Classifier` grow them:
//!
//! - Each column is binned once: up to `max_bins` bins with thresholds at
//!   midpoints of distinct values (or at quantiles when there are more
//!   distinct values than bins); a missing value (NaN) has a bin of its own.
//!   A value goes to the first bin whose threshold it does not exceed, so a
//!   split "bins <= b" is the comparison `x <= threshold[b]` on the raw
//!   value, which is what the stored tree predicts with.
//! - Every iteration fits one tree per output (one for regression and binary
//!   targets, one per class otherwise) to the loss's gradients and
//!   hessians: squared error (hessian 1), binary log loss (sigmoid) or
//!   multinomial log loss (softmax). Trees grow best-first: the leaf whose
//!   best split gains most is split next, until `max_leaf_nodes` leaves, no
//!   split gains, or `max_depth`; a split keeps `min_samples_leaf` rows on
//!   each side; the gain is `G_L²/(H_L+λ) + G_R²/(H_R+λ) - G²/(H+λ)` with
//!   `λ = l2_regularization`, and the missing values go to the side that
//!   gains more. A leaf's value is `-learning_rate · G/(H+λ)`.
//! - A child's histogram is its parent's minus its sibling's (the smaller
//!   child is counted); histograms are built column by column in parallel.
//! - Early stopping holds out `validation_fraction` of the rows (stratified
//!   for classes, seeded) and stops when the validation loss has not
//!   improved by more than `tol` for `n_iter_no_change` iterations.
//!
//! The fitted model is plain numbers: baselines and trees of
//! `(feature, threshold, missing_left)` splits with leaf values.

use crate::FitError;
use mlp_ml::fitted::{BoostNode, Fitted};
use ndarray::Array2;
use rayon::prelude::*;

/// What is minimised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    SquaredError,
    /// `|y - raw|`: sign gradients, unit hessians, and each leaf's value
    /// the median of its rows' residuals (scikit-learn's line search for a
    /// loss without a second derivative).
    AbsoluteError,
    /// Binary (one output) or multinomial log loss.
    LogLoss,
    /// Huber's loss as scikit-learn's `GradientBoostingRegressor(loss =
    /// "huber")`: squared below `delta`, linear above, `delta` the `alpha`
    /// quantile of the absolute residuals before each tree; trees grown on
    /// the clipped residuals (unit hessians), each leaf's value its rows'
    /// median residual plus the mean of their clipped deviations from it.
    /// `delta` is set by the fit.
    Huber {
        alpha: f64,
        delta: f64,
    },
}

#[derive(Debug, Clone)]
pub struct Params {
    pub loss: Loss,
    pub learning_rate: f64,
    pub max_iter: usize,
    pub max_leaf_nodes: Option<usize>,
    pub max_depth: Option<usize>,
    pub min_samples_leaf: usize,
    pub l2: f64,
    pub max_bins: usize,
    pub early_stopping: bool,
    pub validation_fraction: f64,
    pub n_iter_no_change: usize,
    pub tol: f64,
    pub seed: u64,
    /// Per column, its number of levels when it is a category input (its
    /// values level codes `0..levels`, NaN for missing), `None` for a
    /// number; empty when every column is a number.
    pub levels: Vec<Option<usize>>,
}

/// The least hessian (count, for constant hessians) a category needs in a
/// node to take part in its split; it also smooths each category's ratio
/// of sums (scikit-learn's `MIN_CAT_SUPPORT`, LightGBM's `cat_smooth`).
const MIN_CAT_SUPPORT: f64 = 10.0;

/// Bins (a category input's levels, its missing bin) as bits: bins are
/// below 256.
type BinSet = [u64; 4];

fn set_has(set: &BinSet, bin: usize) -> bool {
    bin < 256 && (set[bin >> 6] >> (bin & 63)) & 1 == 1
}

/// The least hessian a child may hold (scikit-learn's
/// `min_hessian_to_split`).
const MIN_HESSIAN: f64 = 1e-3;
/// Rows sampled to place the bin thresholds (as scikit-learn's 2e5).
const BIN_SAMPLE: usize = 200_000;

/// Per column: thresholds, and each row's bin (values in
/// `0..=thresholds.len()`, missing values in [`Binned::missing`]).
struct Binned {
    thresholds: Vec<Vec<f64>>,
    /// Column-major bins.
    bins: Vec<Vec<u8>>,
    /// Bins per column: `thresholds.len() + 1` for values, then missing.
    n_bins: Vec<usize>,
    /// Per column, whether it is a category input (each level its own bin:
    /// bin `c` for code `c`).
    categorical: Vec<bool>,
    /// Per column, whether any training row is missing.
    has_missing: Vec<bool>,
    /// For histograms, each row's bins together (a node's histogram reads
    /// one place per row, not one per column); empty for bins only
    /// predicted through.
    rows: RowBins,
}

/// The bins as histograms read them. A column whose most frequent bin holds
/// most rows (a one-hot or a flag column) is sparse: a histogram derives
/// its frequent bin from the node's totals (LightGBM's sparse features), so
/// only its other bins are counted. Sparse columns that are never off
/// their frequent bin in the same row (the columns of one one-hot
/// encoding) share one byte of a row, a bundle (LightGBM's exclusive
/// feature bundling, without conflicts): one count per row for the bundle,
/// not one per column; the rest are listed per row where they are off
/// their frequent bin.
#[derive(Default)]
struct RowBins {
    /// Each row's record, row-major, [`stride`](Self::stride) bytes: the
    /// dense columns' bins, then each bundle's code (0 when each of its
    /// columns is at its frequent bin), padding, and in its last 4 bytes
    /// the row's place (little-endian), so that a partition moves a row
    /// and its bins as one record.
    by_row: Vec<u8>,
    /// Bytes per record: its `slot_at.len()` bytes and the place, rounded
    /// up to whole 8-byte words (a record moves in word copies).
    stride: usize,
    /// Per column, when its bin is in a byte of the row (dense or
    /// bundled): that byte's place in the row and, per value of the byte,
    /// the column's bin (a bundle's codes of other columns leave it at its
    /// frequent bin).
    in_row: Vec<Option<(usize, Vec<u8>)>>,
    /// The dense columns.
    dense: Vec<usize>,
    /// Per byte of a row, where its values start in a histogram pass's
    /// sums (the flat histogram, then each bundle's codes).
    slot_at: Vec<usize>,
    /// The width of a pass's sums.
    sums_width: usize,
    /// The bundled bins: (place in a pass's sums, flat histogram place).
    bundled: Vec<(usize, usize)>,
    /// The sparse columns (bundled or listed) and their most frequent bin.
    sparse: Vec<(usize, usize)>,
    /// Row `i`'s listed entries are `entries[starts[i]..starts[i + 1]]`:
    /// flat histogram places (its listed columns' other bins).
    starts: Vec<u32>,
    entries: Vec<u16>,
}

/// A column is sparse when its most frequent bin holds at least this share
/// of the rows.
const SPARSE_SHARE: f64 = 0.6;

/// What a row's list of sparse entries costs beyond its entries, in counts
/// (a loop whose length changes from row to row mispredicts its end:
/// measured on the houses columns, about four counts' time).
const LIST_COST: f64 = 4.0;

/// How sparse columns are laid out (tests force each one).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    /// Bundles where they cost fewer counts than the lists.
    Auto,
    /// Every sparse column listed per row.
    #[cfg(test)]
    Listed,
    /// Every sparse column in a bundle.
    #[cfg(test)]
    Bundled,
}

impl Binned {
    /// Where each column's bins start in a flat histogram, and its width.
    fn offsets(&self) -> (Vec<usize>, usize) {
        let mut at = 0;
        let offsets = self
            .n_bins
            .iter()
            .map(|n| {
                let o = at;
                at += n + 1;
                o
            })
            .collect();
        (offsets, at)
    }
}

impl Binned {
    fn missing(&self, j: usize) -> usize {
        self.n_bins[j]
    }
}

fn seeded_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    // Each row's hash once (a stable sort: the order `sort_by_key` gives).
    order.sort_by_cached_key(|i| {
        xxhash_rust::xxh3::xxh3_64_with_seed(&(*i as u64).to_le_bytes(), seed)
    });
    order
}

/// The first `k` rows of [`seeded_order`] (`k < n`), ascending: the rows
/// of the `k` least (hash, place) keys, found without sorting the rest.
fn seeded_head(n: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut keyed: Vec<(u64, usize)> = (0..n)
        .into_par_iter()
        .map(|i| {
            (
                xxhash_rust::xxh3::xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed),
                i,
            )
        })
        .collect();
    keyed.select_nth_unstable(k);
    let mut head: Vec<usize> = keyed[..k].iter().map(|&(_, i)| i).collect();
    head.sort_unstable();
    head
}

/// Bin thresholds of one column's values (NaN left out).
#[cfg(test)]
fn thresholds_of(values: &[f64], max_bins: usize) -> Vec<f64> {
    thresholds_weighted(values, None, max_bins)
}

/// As [`thresholds_of`], the values weighted (scikit-learn's binning with
/// `sample_weight`): rows of weight 0 left out, and the quantiles its
/// `_weighted_percentile(..., average=True)`.
fn thresholds_weighted(values: &[f64], weights: Option<&[f64]>, max_bins: usize) -> Vec<f64> {
    let mut pairs: Vec<(f64, f64)> = match weights {
        Some(w) => values
            .iter()
            .zip(w)
            .filter(|(x, w)| !x.is_nan() && **w != 0.0)
            .map(|(x, w)| (*x, *w))
            .collect(),
        None => values
            .iter()
            .filter(|x| !x.is_nan())
            .map(|x| (*x, 1.0))
            .collect(),
    };
    if weights.is_some() {
        // Equal values keep their order (their weights' cumulative sums).
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    } else {
        // Every weight is 1: the order among equal values does not matter.
        pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    }
    let v: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let mut distinct = v.clone();
    distinct.dedup();
    if distinct.len() <= max_bins {
        return distinct.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
    }
    if weights.is_some() {
        let mut cdf = Vec::with_capacity(pairs.len());
        let mut cum = 0.0;
        for p in &pairs {
            cum += p.1;
            cdf.push(cum);
        }
        let total = cum;
        let last = v.len() - 1;
        let step = 100.0 / max_bins as f64;
        let mut out: Vec<f64> = (1..max_bins)
            .map(|i| {
                let q = i as f64 * step;
                let rank = q / 100.0 * total;
                let at = cdf.partition_point(|c| *c < rank).min(last);
                if cdf[at] - rank > f64::EPSILON {
                    v[at]
                } else {
                    (v[at] + v[(at + 1).min(last)]) / 2.0
                }
            })
            .collect();
        out.sort_by(f64::total_cmp);
        out.dedup();
        return out;
    }
    // Quantiles at max_bins - 1 inner points, as scikit-learn places them
    // (numpy's `averaged_inverted_cdf`: the value at rank ceil(n·q) - 1, or
    // the mean of two neighbours when n·q is whole), deduplicated.
    let n = v.len();
    let mut out: Vec<f64> = (1..max_bins)
        .map(|q| {
            let num = n * q;
            let g = num / max_bins;
            if !num.is_multiple_of(max_bins) {
                v[g.min(n - 1)]
            } else {
                (v[g.saturating_sub(1)] + v[g.min(n - 1)]) / 2.0
            }
        })
        .collect();
    out.dedup();
    out
}

fn bin_of(t: &[f64], x: f64, missing: usize) -> u8 {
    if x.is_nan() {
        return missing as u8;
    }
    // The first threshold x does not exceed: x <= t[b].
    t.partition_point(|th| *th < x) as u8
}

/// Rows binned at a time by one thread.
const BIN_ROWS: usize = 1 << 16;

/// What a fit reads its inputs from: a design matrix, or the inputs'
/// columns (one slice of every data row's values per input) and the rows
/// of them to fit on, in order. Either gives the same bins, so the same
/// fit.
#[derive(Clone, Copy)]
pub enum Inputs<'a> {
    Matrix(&'a Array2<f64>),
    Columns {
        columns: &'a [&'a [f64]],
        rows: &'a [usize],
    },
}

impl Inputs<'_> {
    fn nrows(&self) -> usize {
        match self {
            Inputs::Matrix(x) => x.nrows(),
            Inputs::Columns { rows, .. } => rows.len(),
        }
    }

    fn ncols(&self) -> usize {
        match self {
            Inputs::Matrix(x) => x.ncols(),
            Inputs::Columns { columns, .. } => columns.len(),
        }
    }

    /// Row `i` (of the fit's rows), input `j`.
    fn get(&self, i: usize, j: usize) -> f64 {
        match self {
            Inputs::Matrix(x) => x[[i, j]],
            Inputs::Columns { columns, rows } => columns[j][rows[i]],
        }
    }
}

fn bin(
    x: Inputs,
    weights: Option<&[f64]>,
    max_bins: usize,
    levels: &[Option<usize>],
    seed: u64,
) -> Binned {
    let (n, d) = (x.nrows(), x.ncols());
    let level_count = |j: usize| levels.get(j).copied().flatten();
    // The rows the thresholds are placed from (a seeded sample of large
    // data), ascending, read row by row: each row's values at once, not a
    // pass over the matrix per column.
    let sample: Option<Vec<usize>> = (n > BIN_SAMPLE).then(|| seeded_head(n, BIN_SAMPLE, seed));
    let m = sample.as_ref().map_or(n, Vec::len);
    let row_at = |k: usize| sample.as_ref().map_or(k, |s| s[k]);
    let mut sampled: Vec<Vec<f64>> = vec![Vec::with_capacity(m); d];
    match x {
        Inputs::Matrix(x) => {
            for k in 0..m {
                for (col, v) in sampled.iter_mut().zip(x.row(row_at(k))) {
                    col.push(*v);
                }
            }
        }
        Inputs::Columns { columns, rows } => {
            for (out, col) in sampled.iter_mut().zip(columns) {
                out.extend((0..m).map(|k| col[rows[row_at(k)]]));
            }
        }
    }
    let w_sampled: Option<Vec<f64>> = weights.map(|w| (0..m).map(|k| w[row_at(k)]).collect());
    let thresholds: Vec<Vec<f64>> = (0..d)
        .into_par_iter()
        .map(|j| match level_count(j) {
            // A category: code c in bin c (thresholds between codes).
            Some(l) => (1..l).map(|c| c as f64 - 0.5).collect(),
            None => thresholds_weighted(&sampled[j], w_sampled.as_deref(), max_bins),
        })
        .collect();
    drop(sampled);
    let n_bins: Vec<usize> = thresholds.iter().map(|t| t.len() + 1).collect();
    let bins: Vec<Vec<u8>> = match x {
        // Every row's bins, in parallel pieces of rows (each row read
        // once), then each column's pieces joined.
        Inputs::Matrix(x) => {
            let pieces: Vec<Vec<Vec<u8>>> = (0..n.div_ceil(BIN_ROWS))
                .into_par_iter()
                .map(|piece| {
                    let rows = piece * BIN_ROWS..((piece + 1) * BIN_ROWS).min(n);
                    let mut out: Vec<Vec<u8>> = vec![Vec::with_capacity(rows.len()); d];
                    for i in rows {
                        for (j, (col, v)) in out.iter_mut().zip(x.row(i)).enumerate() {
                            col.push(bin_of(&thresholds[j], *v, n_bins[j]));
                        }
                    }
                    out
                })
                .collect();
            (0..d)
                .map(|j| {
                    let mut col = Vec::with_capacity(n);
                    for p in &pieces {
                        col.extend_from_slice(&p[j]);
                    }
                    col
                })
                .collect()
        }
        // Each input's bins from its column, the columns on every core.
        Inputs::Columns { columns, rows } => columns
            .par_iter()
            .zip(thresholds.par_iter().zip(&n_bins))
            .map(|(col, (t, &nb))| rows.iter().map(|&i| bin_of(t, col[i], nb)).collect())
            .collect(),
    };
    let mut b = Binned {
        thresholds,
        bins,
        n_bins,
        categorical: (0..d).map(|j| level_count(j).is_some()).collect(),
        has_missing: vec![],
        rows: RowBins::default(),
    };
    b.has_missing = (0..d)
        .map(|j| b.bins[j].iter().any(|v| usize::from(*v) == b.n_bins[j]))
        .collect();
    b.rows = row_bins(&b, n, SPARSE_SHARE, Layout::Auto);
    b
}

/// The histograms' layout of the bins of `n` rows (see [`RowBins`]): a
/// column whose most frequent bin holds `sparse_share` of the rows is
/// sparse.
fn row_bins(b: &Binned, n: usize, sparse_share: f64, layout: Layout) -> RowBins {
    let (offsets, width) = b.offsets();
    let mut out = RowBins::default();
    // Per sparse column, its share of rows off the frequent bin.
    let mut off_share = vec![];
    for (j, col) in b.bins.iter().enumerate() {
        let mut counts = vec![0usize; b.n_bins[j] + 1];
        for &v in col {
            counts[v as usize] += 1;
        }
        let (top, count) = counts
            .iter()
            .enumerate()
            .max_by_key(|(v, c)| (**c, std::cmp::Reverse(*v)))
            .map_or((0, 0), |(v, c)| (v, *c));
        // Flat places are u16: a histogram wider than that stays dense.
        if width <= usize::from(u16::MAX) + 1 && count as f64 >= sparse_share * n as f64 && n > 0 {
            out.sparse.push((j, top));
            off_share.push(1.0 - count as f64 / n as f64);
        } else {
            out.dense.push(j);
            out.slot_at.push(offsets[j]);
        }
    }
    // Bundles, first fit: a column joins the first bundle none of whose
    // columns is off its frequent bin in a row where this one is, and
    // whose codes (a byte's) have room for this one's other bins. A bundle
    // costs a count on every row, the lists their entries plus the loop:
    // past `affordable` bundles the columns are listed (and bundling stops
    // there, so many overlapping columns are not each checked against
    // many bundles).
    let affordable = off_share.iter().sum::<f64>() + LIST_COST;
    // Per bundle: its columns (places in `sparse`), the rows where one of
    // them is off its frequent bin (a bit per row), and its codes.
    let mut bundles: Vec<(Vec<usize>, Vec<u64>, usize)> = vec![];
    let taken_at = |taken: &[u64], i: usize| taken[i / 64] >> (i % 64) & 1 == 1;
    for (k, &(j, top)) in out.sparse.iter().enumerate() {
        if layout == Layout::Auto && bundles.len() as f64 > affordable {
            break;
        }
        let off: Vec<usize> = (0..n).filter(|&i| b.bins[j][i] as usize != top).collect();
        let codes = b.n_bins[j];
        let fits = bundles.iter().position(|(_, taken, used)| {
            used + codes <= usize::from(u8::MAX) && off.iter().all(|&i| !taken_at(taken, i))
        });
        let at = fits.unwrap_or_else(|| {
            bundles.push((vec![], vec![0; n.div_ceil(64)], 0));
            bundles.len() - 1
        });
        let (members, taken, used) = &mut bundles[at];
        members.push(k);
        for &i in &off {
            taken[i / 64] |= 1 << (i % 64);
        }
        *used += codes;
    }
    let bundle = match layout {
        #[cfg(test)]
        Layout::Listed => false,
        #[cfg(test)]
        Layout::Bundled => true,
        Layout::Auto => !out.sparse.is_empty() && bundles.len() as f64 <= affordable,
    };
    let slots = out.dense.len() + if bundle { bundles.len() } else { 0 };
    out.stride = (slots + PLACE).next_multiple_of(WORD);
    let slots = out.stride;
    out.by_row = vec![0u8; n * slots];
    for (i, record) in out.by_row.chunks_exact_mut(slots).enumerate() {
        record[slots - PLACE..].copy_from_slice(&(i as u32).to_le_bytes());
    }
    out.in_row = vec![None; b.bins.len()];
    for (k, &j) in out.dense.iter().enumerate() {
        for (i, v) in b.bins[j].iter().enumerate() {
            out.by_row[i * slots + k] = *v;
        }
        out.in_row[j] = Some((k, (0..=u8::MAX).collect()));
    }
    out.sums_width = width;
    if bundle {
        for (s, (members, _, used)) in bundles.iter().enumerate() {
            let slot = out.dense.len() + s;
            // Code 0: every member at its frequent bin (not counted: the
            // frequent bins follow from the totals).
            let first = out.sums_width;
            out.slot_at.push(first);
            out.sums_width += used + 1;
            let mut code = 1;
            for &k in members {
                let (j, top) = out.sparse[k];
                let mut code_of = vec![0u8; b.n_bins[j] + 1];
                let mut bin_of_code = vec![top as u8; usize::from(u8::MAX) + 1];
                for (v, c) in code_of.iter_mut().enumerate() {
                    if v != top {
                        *c = code as u8;
                        bin_of_code[code] = v as u8;
                        out.bundled.push((first + code, offsets[j] + v));
                        code += 1;
                    }
                }
                out.in_row[j] = Some((slot, bin_of_code));
                for (i, v) in b.bins[j].iter().enumerate() {
                    let c = code_of[*v as usize];
                    if c != 0 {
                        out.by_row[i * slots + slot] = c;
                    }
                }
            }
        }
    } else if !out.sparse.is_empty() {
        out.starts.reserve(n + 1);
        out.starts.push(0);
        for i in 0..n {
            for &(j, top) in &out.sparse {
                let v = b.bins[j][i] as usize;
                if v != top {
                    out.entries.push((offsets[j] + v) as u16);
                }
            }
            out.starts.push(out.entries.len() as u32);
        }
    }
    out
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

/// Per column, per bin (the missing bin last).
type Hist = Vec<Vec<Bin>>;

/// Rows per piece of a histogram pass: pieces are summed on their own (in
/// parallel) and then in order, so the sums do not depend on the threads.
const HIST_ROWS: usize = 1 << 14;

/// Bytes of a record that hold the row's place.
const PLACE: usize = 4;

/// The place of the row whose record is `record`.
fn place_of(record: &[u8]) -> u32 {
    let mut bytes = [0; PLACE];
    bytes.copy_from_slice(&record[record.len() - PLACE..]);
    u32::from_le_bytes(bytes)
}

/// A node's rows: each one's record ([`RowBins::stride`] bytes: its bins
/// and its place, ascending) and in the same order its gradient and
/// hessian.
#[derive(Clone, Copy)]
struct NodeRows<'a> {
    by_row: &'a [u8],
    gh: &'a [[f64; 2]],
}

impl<'a> NodeRows<'a> {
    /// The rows of `range`.
    fn slice(&self, range: std::ops::Range<usize>, stride: usize) -> NodeRows<'a> {
        NodeRows {
            by_row: &self.by_row[range.start * stride..range.end * stride],
            gh: &self.gh[range],
        }
    }

    fn len(&self) -> usize {
        self.gh.len()
    }
}

/// The histogram of a node's rows, read in order: one place per row for
/// all the columns. Without `hess`, every hessian is 1 (squared error
/// without weights: each bin's hessian is its count, as scikit-learn's
/// `hessians_are_constant`).
fn histogram(b: &Binned, node: NodeRows, hess: bool) -> Hist {
    let d = b.n_bins.len();
    let (offsets, width) = b.offsets();
    let rb = &b.rows;
    let sums_width = rb.sums_width;
    // Each piece's flat sums and its rows' totals (for the sparse columns'
    // frequent bins).
    let pieces: Vec<(PieceSums, Bin)> = (0..node.len().div_ceil(HIST_ROWS))
        .into_par_iter()
        .map(|piece| {
            let at = piece * HIST_ROWS..node.len().min((piece + 1) * HIST_ROWS);
            let mut sums = PieceSums {
                gh: vec![[0.0; 2]; sums_width],
                n: vec![0; if hess { sums_width } else { 0 }],
            };
            let piece = node.slice(at, rb.stride);
            let total = if hess {
                add_rows::<true>(rb, piece, &mut sums)
            } else {
                add_rows::<false>(rb, piece, &mut sums)
            };
            (sums, total)
        })
        .collect();
    let mut pieces = pieces.into_iter();
    let (mut sums, mut total) = pieces.next().unwrap_or_else(|| {
        (
            PieceSums {
                gh: vec![[0.0; 2]; sums_width],
                n: vec![0; if hess { sums_width } else { 0 }],
            },
            Bin::default(),
        )
    });
    for (piece, t) in pieces {
        for (e, p) in sums.gh.iter_mut().zip(piece.gh) {
            e[0] += p[0];
            e[1] += p[1];
        }
        for (e, p) in sums.n.iter_mut().zip(piece.n) {
            *e += p;
        }
        total.g += t.g;
        total.h += t.h;
        total.n += t.n;
    }
    let bin_at = |at: usize| {
        let e = sums.gh[at];
        Bin {
            g: e[0],
            h: e[1],
            // Without hessians, a sum of ones: exactly the count.
            n: sums.n.get(at).copied().unwrap_or(e[1] as u32),
        }
    };
    let mut flat: Vec<Bin> = (0..width).map(bin_at).collect();
    for &(at, place) in &rb.bundled {
        flat[place] = bin_at(at);
    }
    // A sparse column's frequent bin: the node's rows less its other bins.
    for &(j, top) in &rb.sparse {
        let (o, bins) = (offsets[j], b.n_bins[j] + 1);
        let mut rest = Bin::default();
        for (v, e) in flat[o..o + bins].iter().enumerate() {
            if v != top {
                rest.g += e.g;
                rest.h += e.h;
                rest.n += e.n;
            }
        }
        flat[o + top] = Bin {
            g: total.g - rest.g,
            h: total.h - rest.h,
            n: total.n - rest.n,
        };
    }
    (0..d)
        .map(|j| flat[offsets[j]..offsets[j] + b.n_bins[j] + 1].to_vec())
        .collect()
}

/// A piece's sums per flat bin: gradients and hessians side by side (one
/// 16-byte add per row and column), and counts only with hessians
/// (without, every hessian is 1 and the hessians' sum is the count).
struct PieceSums {
    gh: Vec<[f64; 2]>,
    n: Vec<u32>,
}

/// Bytes of a row moved at once.
const WORD: usize = 8;

/// Adds a piece of a node's rows to `sums` (hessians of 1 without
/// `HESS`); returns their totals.
fn add_rows<const HESS: bool>(rb: &RowBins, piece: NodeRows, sums: &mut PieceSums) -> Bin {
    let dd = rb.slot_at.len();
    let listed = !rb.starts.is_empty();
    let mut total = Bin::default();
    let (gh, n) = (&mut sums.gh[..], &mut sums.n[..]);
    for (row, &[gi, hi]) in piece.by_row.chunks_exact(rb.stride).zip(piece.gh) {
        let hi = if HESS { hi } else { 1.0 };
        for (v, o) in row[..dd].iter().zip(&rb.slot_at) {
            let at = o + *v as usize;
            let e = &mut gh[at];
            *e = [e[0] + gi, e[1] + hi];
            if HESS {
                n[at] += 1;
            }
        }
        if listed {
            let i = place_of(row) as usize;
            for &at in &rb.entries[rb.starts[i] as usize..rb.starts[i + 1] as usize] {
                let at = at as usize;
                let e = &mut gh[at];
                *e = [e[0] + gi, e[1] + hi];
                if HESS {
                    n[at] += 1;
                }
            }
        }
        total.g += gi;
        total.h += hi;
        total.n += 1;
    }
    total
}

fn subtract(parent: &Hist, child: &Hist) -> Hist {
    parent
        .iter()
        .zip(child)
        .map(|(p, c)| {
            p.iter()
                .zip(c)
                .map(|(p, c)| Bin {
                    g: p.g - c.g,
                    h: p.h - c.h,
                    n: p.n - c.n,
                })
                .collect()
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    missing_left: bool,
    /// The left child's sums of gradients and hessians (the right's are
    /// the node's less these), from the histogram scan.
    gl: f64,
    hl: f64,
    /// On a category input: the bins going left (with the missing bin
    /// when missing values go left); `bin` is unused.
    left: Option<BinSet>,
}

/// A node's loss at its best value, as scikit-learn computes it (value
/// `-g / (h + l2)`, loss `g · value`): the same operations, so that gains
/// equal in exact arithmetic (frequent with the ±1 gradients of absolute
/// error) compare as they do there.
fn node_loss(g: f64, h: f64, l2: f64) -> f64 {
    let value = -g / (h + l2);
    g * value
}

/// The best split of a node from its histogram.
fn best_split(hist: &Hist, b: &Binned, p: &Params, g: f64, h: f64, n: u32) -> Option<Split> {
    let parent = node_loss(g, h, p.l2);
    let min_leaf = p.min_samples_leaf as u32;
    let candidates: Vec<Option<Split>> = (0..hist.len())
        .into_par_iter()
        .map(|j| {
            let col = &hist[j];
            if b.categorical[j] {
                return best_category_split(col, b, j, p, parent, (g, h, n));
            }
            let miss = col[b.missing(j)];
            let mut best: Option<Split> = None;
            // Missing values to the right (scan left to right), then to the
            // left: both directions, as scikit-learn tries.
            for missing_left in [false, true] {
                if missing_left && miss.n == 0 {
                    break;
                }
                let (mut gl, mut hl, mut nl) = if missing_left {
                    (miss.g, miss.h, miss.n)
                } else {
                    (0.0, 0.0, 0)
                };
                // Splits after bins 0 ..= n_bins - 2 (the last value bin
                // cannot send anything right, but with missing values to the
                // right it can).
                let last = if missing_left || miss.n == 0 {
                    b.n_bins[j].saturating_sub(1)
                } else {
                    b.n_bins[j]
                };
                for (bin, e) in col.iter().enumerate().take(last) {
                    gl += e.g;
                    hl += e.h;
                    nl += e.n;
                    let nr = n - nl;
                    if nl < min_leaf {
                        continue;
                    }
                    if nr < min_leaf {
                        break;
                    }
                    let (gr, hr) = (g - gl, h - hl);
                    if hl < MIN_HESSIAN || hr < MIN_HESSIAN {
                        continue;
                    }
                    let gain = parent - node_loss(gl, hl, p.l2) - node_loss(gr, hr, p.l2);
                    if gain > 0.0 && best.is_none_or(|s| gain > s.gain) {
                        best = Some(Split {
                            gain,
                            feature: j,
                            bin,
                            gl,
                            hl,
                            // Without missing values in training, a missing
                            // value at prediction goes with the larger side
                            // (scikit-learn's rule; with missing values
                            // elsewhere but none here, it goes right).
                            missing_left: if b.has_missing[j] {
                                missing_left
                            } else {
                                nl > nr
                            },
                            left: None,
                        });
                    }
                }
            }
            best
        })
        .collect();
    candidates
        .into_iter()
        .flatten()
        .fold(None, |acc: Option<Split>, s| match acc {
            Some(a) if a.gain >= s.gain => Some(a),
            _ => Some(s),
        })
}

/// The best split of a node on category input `j` (scikit-learn's and
/// LightGBM's): the levels with enough support (missing values as one
/// more), ordered by their smoothed ratio `G / (H + MIN_CAT_SUPPORT)`, are
/// scanned as if ordered, from each end up to the middle; the levels
/// without support go right. `node` is the node's sums and row count.
fn best_category_split(
    col: &[Bin],
    b: &Binned,
    j: usize,
    p: &Params,
    parent: f64,
    node: (f64, f64, u32),
) -> Option<Split> {
    let (g, h, n) = node;
    let min_leaf = p.min_samples_leaf as u32;
    let support_factor = if h > 0.0 { f64::from(n) / h } else { 0.0 };
    let miss_bin = b.missing(j);
    let mut used: Vec<(f64, usize)> = (0..=miss_bin)
        .filter(|&bin| col[bin].n > 0 && col[bin].h * support_factor >= MIN_CAT_SUPPORT)
        .map(|bin| (col[bin].g / (col[bin].h + MIN_CAT_SUPPORT), bin))
        .collect();
    if used.len() <= 1 {
        return None;
    }
    // Ties in bin order (stable), whatever the sort.
    used.sort_by(|a, c| a.0.total_cmp(&c.0));
    let k = used.len();
    let mut best: Option<(f64, f64, f64, u32, Vec<usize>)> = None;
    for forward in [true, false] {
        let middle = if forward {
            k.div_ceil(2)
        } else {
            k.div_ceil(2) - 1
        };
        let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0u32);
        for i in 0..middle {
            let at = if forward { i } else { k - 1 - i };
            let e = col[used[at].1];
            gl += e.g;
            hl += e.h;
            nl += e.n;
            let nr = n - nl;
            let (gr, hr) = (g - gl, h - hl);
            if nl < min_leaf || hl < MIN_HESSIAN {
                continue;
            }
            if nr < min_leaf || hr < MIN_HESSIAN {
                break;
            }
            let gain = parent - node_loss(gl, hl, p.l2) - node_loss(gr, hr, p.l2);
            if gain > 0.0 && best.as_ref().is_none_or(|b| gain > b.0) {
                let bins = if forward {
                    used[..=at].iter().map(|u| u.1).collect()
                } else {
                    used[at..].iter().map(|u| u.1).collect()
                };
                best = Some((gain, gl, hl, nl, bins));
            }
        }
    }
    let (gain, gl, hl, nl, bins) = best?;
    let mut set = [0u64; 4];
    for bin in bins {
        set[bin >> 6] |= 1 << (bin & 63);
    }
    Some(Split {
        gain,
        feature: j,
        bin: 0,
        missing_left: if !b.has_missing[j] {
            // No missing value in training: one at prediction (or an unseen
            // level) goes with the larger side.
            nl > n - nl
        } else {
            set_has(&set, miss_bin)
        },
        gl,
        hl,
        left: Some(set),
    })
}

struct Leaf {
    /// Its rows: `start..end` of where they lie.
    lies: Lies,
    start: usize,
    end: usize,
    hist: Hist,
    g: f64,
    h: f64,
    depth: usize,
    split: Option<Split>,
    /// Its index in the tree's nodes.
    node: usize,
}

impl Leaf {
    fn len(&self) -> usize {
        self.end - self.start
    }
}

/// A leaf of a grown tree: its rows (`start..end` of where they lie), its
/// value, its index in the tree's nodes and its histogram.
struct Grown {
    lies: Lies,
    start: usize,
    end: usize,
    value: f64,
    node: usize,
    hist: Hist,
}

/// scikit-learn's median of `values` weighted by `weights`: numpy's median
/// (the mean of the two middle values) without weights, its
/// `_weighted_percentile` (the first value whose cumulative weight reaches
/// half the total) with them.
/// Huber's loss with its transition point at the current scores: the
/// `alpha` quantile of the training rows' absolute residuals (scikit-learn's
/// `_weighted_percentile`, unit weights without sample weights); any other
/// loss as it is.
fn huber_delta(loss: Loss, y: &Y, raw: &[Vec<f64>], w: &[f64]) -> Loss {
    let (Loss::Huber { alpha, .. }, Y::Values(v), Some(raw)) = (loss, y, raw.first()) else {
        return loss;
    };
    let mut abs: Vec<(f64, f64)> = raw
        .iter()
        .zip(v.iter())
        .zip(w)
        .map(|((r, y), w)| ((y - r).abs(), *w))
        .collect();
    Loss::Huber {
        alpha,
        delta: weighted_quantile(&mut abs, alpha),
    }
}

/// The `q` quantile of weighted values (scikit-learn's
/// `_weighted_percentile`, numpy's "inverted_cdf"): the least value whose
/// cumulative weight reaches `q` of the total.
fn weighted_quantile(values: &mut [(f64, f64)], q: f64) -> f64 {
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = values.iter().map(|v| v.1).sum();
    let mut rank = q * total;
    if rank == 0.0 && total > 0.0 {
        // numpy's nextafter: the first value of positive weight.
        rank = f64::MIN_POSITIVE;
    }
    let mut cum = 0.0;
    for (v, w) in values.iter() {
        cum += w;
        if cum >= rank {
            return *v;
        }
    }
    values.last().map_or(0.0, |v| v.0)
}

/// The median: weighted, the "inverted_cdf" 0.5 quantile (scikit-learn's
/// `_weighted_percentile`); unweighted, numpy's `percentile` (the mean of
/// the two middle values of an even count).
fn weighted_median(values: &mut [(f64, f64)], weighted: bool) -> f64 {
    if weighted {
        return weighted_quantile(values, 0.5);
    }
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2].0,
        _ => (values[n / 2 - 1].0 + values[n / 2].0) / 2.0,
    }
}

/// Where a node's rows and their data lie: the training rows in order
/// (the root's), or one of the two [`Moved`] buffers (a node's children
/// are partitioned into the buffer its rows do not lie in).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Lies {
    Training,
    Moved(usize),
}

/// Rows in a tree's order: each one's record and in the same order its
/// gradient and hessian.
#[derive(Default)]
struct Moved {
    by_row: Vec<u8>,
    gh: Vec<[f64; 2]>,
}

/// Buffers a fit reuses from tree to tree (so a tree allocates no memory
/// in proportion to the rows): the training rows' gradients and hessians,
/// and two buffers a partition moves a node's rows into (their records,
/// gradients and hessians), so that every node's rows are one ascending
/// range of one buffer and its histogram reads its rows' data in order.
/// (Read where each row lies, a deep node's rows are scattered over the
/// training rows: a cache miss or two a row, which the histogram's work
/// per row keeps from overlapping. A partition reads and writes in order:
/// two stores a row.)
struct Buffers {
    gh: Vec<[f64; 2]>,
    moved: [Moved; 2],
}

impl Buffers {
    /// Buffers for `m` training rows of `stride` bytes of record each.
    fn new(m: usize, stride: usize) -> Buffers {
        let moved = || Moved {
            by_row: vec![0; m * stride],
            gh: vec![[0.0; 2]; m],
        };
        Buffers {
            gh: vec![[0.0; 2]; m],
            moved: [moved(), moved()],
        }
    }

    /// The rows of `range` of where they lie.
    fn node<'a>(
        &'a self,
        b: &'a Binned,
        lies: Lies,
        range: std::ops::Range<usize>,
    ) -> NodeRows<'a> {
        let whole = match lies {
            Lies::Training => training(b, &self.gh),
            Lies::Moved(k) => self.moved[k].rows(),
        };
        whole.slice(range, b.rows.stride)
    }

    /// Partitions the rows of `range` of where they lie (`n_left` of them
    /// going left) into the same range of the other buffer: the rows going
    /// left in order at its start, the others in order after them. Returns
    /// where they now lie. `go_left` sees a row's record.
    fn partition<F: Fn(&[u8]) -> bool + Sync>(
        &mut self,
        b: &Binned,
        from: Lies,
        range: std::ops::Range<usize>,
        n_left: usize,
        go_left: &F,
    ) -> Lies {
        let stride = b.rows.stride;
        let to = match from {
            Lies::Moved(0) => 1,
            _ => 0,
        };
        let [first, second] = &mut self.moved;
        let (dst, other) = if to == 0 {
            (first, &*second)
        } else {
            (second, &*first)
        };
        let src = match from {
            Lies::Training => training(b, &self.gh),
            Lies::Moved(_) => other.rows(),
        }
        .slice(range.clone(), stride);
        let dst = MovedMut {
            by_row: &mut dst.by_row[range.start * stride..range.end * stride],
            gh: &mut dst.gh[range],
        };
        match stride / WORD {
            1 => move_rows::<1, F>(src, dst, n_left, stride, go_left),
            2 => move_rows::<2, F>(src, dst, n_left, stride, go_left),
            3 => move_rows::<3, F>(src, dst, n_left, stride, go_left),
            4 => move_rows::<4, F>(src, dst, n_left, stride, go_left),
            _ => move_rows::<0, F>(src, dst, n_left, stride, go_left),
        }
        Lies::Moved(to)
    }
}

/// The training rows in order: their records and `gh`, their gradients
/// and hessians.
fn training<'a>(b: &'a Binned, gh: &'a [[f64; 2]]) -> NodeRows<'a> {
    NodeRows {
        by_row: &b.rows.by_row,
        gh,
    }
}

impl Moved {
    /// Every row of the buffer.
    fn rows(&self) -> NodeRows<'_> {
        NodeRows {
            by_row: &self.by_row,
            gh: &self.gh,
        }
    }
}

/// The places of a node's rows, from their records.
fn places(node: NodeRows<'_>, stride: usize) -> impl ExactSizeIterator<Item = u32> + '_ {
    node.by_row.chunks_exact(stride).map(place_of)
}

/// A range of a [`Moved`] buffer, written by a partition.
struct MovedMut<'a> {
    by_row: &'a mut [u8],
    gh: &'a mut [[f64; 2]],
}

impl<'a> MovedMut<'a> {
    /// Writes a row's record (`s` bytes) and its gradient and hessian at
    /// place `at`.
    #[inline(always)]
    fn put(&mut self, at: usize, s: usize, record: &[u8], gh: [f64; 2]) {
        self.by_row[at * s..(at + 1) * s].copy_from_slice(record);
        self.gh[at] = gh;
    }

    /// The first `k` rows, and the rest.
    fn split_at(self, k: usize, stride: usize) -> (MovedMut<'a>, MovedMut<'a>) {
        let (by_row, by_row_rest) = self.by_row.split_at_mut(k * stride);
        let (gh, gh_rest) = self.gh.split_at_mut(k);
        (
            MovedMut { by_row, gh },
            MovedMut {
                by_row: by_row_rest,
                gh: gh_rest,
            },
        )
    }
}

/// Rows per piece of a partition moved on its own: a node of more rows is
/// moved in parallel pieces (each piece's rows going left counted first,
/// so that each knows where its rows go).
const MOVE_ROWS: usize = 1 << 15;

/// Moves the rows of `src` to `dst`, those going left (`n_left` of them)
/// in order at its start, the others in order after them; `go_left` sees
/// a row's record. `W` is a record's words when known (0: `stride`'s), so
/// that moving it is a few word copies.
fn move_rows<const W: usize, F: Fn(&[u8]) -> bool + Sync>(
    src: NodeRows,
    dst: MovedMut,
    n_left: usize,
    stride: usize,
    go_left: &F,
) {
    let s = if W == 0 { stride } else { W * WORD };
    let len = src.len();
    if len <= MOVE_ROWS {
        return move_piece::<W, F>(src, dst, n_left, stride, go_left);
    }
    // Each piece's rows going left, then each piece's places: its left
    // rows after the earlier pieces' left rows, its right rows after
    // theirs.
    let pieces: Vec<std::ops::Range<usize>> = (0..len.div_ceil(MOVE_ROWS))
        .map(|p| p * MOVE_ROWS..len.min((p + 1) * MOVE_ROWS))
        .collect();
    let lefts: Vec<usize> = pieces
        .par_iter()
        .map(|r| {
            let piece = src.slice(r.clone(), s);
            piece
                .by_row
                .chunks_exact(s)
                .filter(|row| go_left(row))
                .count()
        })
        .collect();
    let (mut left, mut right) = dst.split_at(n_left, s);
    let mut work = Vec::with_capacity(pieces.len());
    for (r, &l) in pieces.into_iter().zip(&lefts) {
        let (left_here, left_rest) = left.split_at(l, s);
        let (right_here, right_rest) = right.split_at(r.len() - l, s);
        (left, right) = (left_rest, right_rest);
        work.push((src.slice(r, s), left_here, right_here));
    }
    work.into_par_iter()
        .for_each(|(src, left, right)| move_sides::<W, F>(src, left, right, stride, go_left));
}

/// Moves the rows of `src` to `left` and `right` by their side, in order.
/// Without branches on the side: each row is written to both sides' next
/// places (the other side's write is overwritten by that side's next row
/// or falls past its end), and the side it goes to moves on.
fn move_sides<const W: usize, F: Fn(&[u8]) -> bool>(
    src: NodeRows,
    mut left: MovedMut,
    mut right: MovedMut,
    stride: usize,
    go_left: &F,
) {
    let s = if W == 0 { stride } else { W * WORD };
    let (mut l, mut r) = (0, 0);
    for (record, &gh) in src.by_row.chunks_exact(s).zip(src.gh) {
        let goes = go_left(record);
        if l < left.gh.len() {
            left.put(l, s, record, gh);
        }
        if r < right.gh.len() {
            right.put(r, s, record, gh);
        }
        l += usize::from(goes);
        r += usize::from(!goes);
    }
    debug_assert_eq!((l, r), (left.gh.len(), right.gh.len()));
}

/// Moves the rows of `src` to `dst`, those going left (`n_left` of them)
/// in order at its start, the others in order after them. One pass
/// without branches: each row is written where its side is at (chosen,
/// not branched on: the sides are as good as random).
fn move_piece<const W: usize, F: Fn(&[u8]) -> bool>(
    src: NodeRows,
    mut dst: MovedMut,
    n_left: usize,
    stride: usize,
    go_left: &F,
) {
    let s = if W == 0 { stride } else { W * WORD };
    let (mut left_at, mut right_at) = (0, n_left);
    for (record, &gh) in src.by_row.chunks_exact(s).zip(src.gh) {
        let left = go_left(record);
        let at = if left { left_at } else { right_at };
        dst.put(at, s, record, gh);
        left_at += usize::from(left);
        right_at += usize::from(!left);
    }
    debug_assert_eq!((left_at, right_at), (n_left, src.len()));
}

/// Grows one tree on the gradients and hessians of the `m` training rows,
/// in `buf.gh` (`constant_h` when every hessian is 1). Its
/// root's histogram is counted unless given. Returns its nodes, per leaf
/// its rows' range of where they lie, its value (added to the raw
/// predictions) and its histogram, and the root's histogram.
fn grow(
    b: &Binned,
    buf: &mut Buffers,
    gains: &mut [f64],
    constant_h: bool,
    p: &Params,
    root_hist: Option<Hist>,
) -> (Vec<BoostNode>, Vec<Grown>, Hist) {
    let m = buf.gh.len();
    let hess = !constant_h;
    let hist = root_hist.unwrap_or_else(|| histogram(b, buf.node(b, Lies::Training, 0..m), hess));
    let root_hist = hist.clone();
    let (sg, sh) = buf
        .gh
        .iter()
        .fold((0.0, 0.0), |(a, c), [gi, hi]| (a + gi, c + hi));
    let mut nodes = vec![BoostNode::Leaf { value: 0.0 }];
    let mut root = Leaf {
        split: None,
        lies: Lies::Training,
        start: 0,
        end: m,
        hist,
        g: sg,
        h: sh,
        depth: 0,
        node: 0,
    };
    let splittable =
        |l: &Leaf| p.max_depth.is_none_or(|d| l.depth < d) && l.len() >= 2 * p.min_samples_leaf;
    if splittable(&root) {
        root.split = best_split(&root.hist, b, p, root.g, root.h, root.len() as u32);
    }
    let mut open = vec![root];
    let mut done: Vec<Leaf> = vec![];
    let max_leaves = p.max_leaf_nodes.unwrap_or(usize::MAX);
    loop {
        if open.len() + done.len() >= max_leaves {
            break;
        }
        // The open leaf with the best split.
        let Some(at) = open
            .iter()
            .enumerate()
            .filter(|(_, l)| l.split.is_some())
            .max_by(|a, c| {
                let ga = a.1.split.map_or(f64::MIN, |s| s.gain);
                let gc = c.1.split.map_or(f64::MIN, |s| s.gain);
                ga.total_cmp(&gc).then(c.0.cmp(&a.0))
            })
            .map(|(i, _)| i)
        else {
            break;
        };
        let leaf = open.swap_remove(at);
        let Some(s) = leaf.split else {
            done.push(leaf);
            continue;
        };
        let miss = b.missing(s.feature);
        // Whether a bin goes left: a category's set holds it (with the
        // missing bin when missing values go left); else a missing bin is
        // above every split bin.
        let goes_left = |v: usize| match &s.left {
            Some(set) => set_has(set, v),
            None => (v <= s.bin) | ((v == miss) & s.missing_left),
        };
        // The rows going left, counted by the node's histogram.
        let n_left: usize = leaf.hist[s.feature]
            .iter()
            .enumerate()
            .filter(|(v, _)| goes_left(*v))
            .map(|(_, e)| e.n as usize)
            .sum();
        let (range, from) = (leaf.start..leaf.end, leaf.lies);
        let lies = match &b.rows.in_row[s.feature] {
            // The column's bin is in a byte of the row: each value of
            // that byte's side, looked up.
            Some((place, bin_of)) => {
                let mut left = [false; 256];
                for (l, &v) in left.iter_mut().zip(bin_of) {
                    *l = goes_left(usize::from(v));
                }
                let place = *place;
                buf.partition(b, from, range, n_left, &move |record: &[u8]| {
                    left[usize::from(record[place])]
                })
            }
            // A listed column: its bins where each row lies.
            None => {
                let col = b.bins[s.feature].as_slice();
                buf.partition(b, from, range, n_left, &|record: &[u8]| {
                    goes_left(usize::from(col[place_of(record) as usize]))
                })
            }
        };
        let mid = leaf.start + n_left;
        let (small, large_is_left) = if n_left <= leaf.end - mid {
            (leaf.start..mid, false)
        } else {
            (mid..leaf.end, true)
        };
        let small_hist = histogram(b, buf.node(b, lies, small), hess);
        let large_hist = subtract(&leaf.hist, &small_hist);
        let (lh, rh) = if large_is_left {
            (large_hist, small_hist)
        } else {
            (small_hist, large_hist)
        };
        // The children's sums from the split's scan, as scikit-learn's
        // `split_info` carries them (no pass over the rows).
        let (lg, lhs) = (s.gl, s.hl);
        let (rg, rhs) = (leaf.g - s.gl, leaf.h - s.hl);
        let ln = nodes.len();
        nodes.push(BoostNode::Leaf { value: 0.0 });
        nodes.push(BoostNode::Leaf { value: 0.0 });
        let threshold = match s.left {
            Some(_) => 0.0,
            None => b.thresholds[s.feature]
                .get(s.bin)
                .copied()
                .unwrap_or(f64::MAX),
        };
        gains[s.feature] += s.gain;
        nodes[leaf.node] = BoostNode::Split {
            feature: s.feature,
            threshold,
            missing_left: s.missing_left,
            left: ln,
            right: ln + 1,
            // A category's codes are its bins (the missing bin left out).
            categories: s.left.map(|set| {
                (0..miss as u32)
                    .filter(|c| set_has(&set, *c as usize))
                    .collect()
            }),
        };
        for (start, end, hist, gg, hh, node) in [
            (leaf.start, mid, lh, lg, lhs, ln),
            (mid, leaf.end, rh, rg, rhs, ln + 1),
        ] {
            let mut child = Leaf {
                lies,
                start,
                end,
                hist,
                g: gg,
                h: hh,
                depth: leaf.depth + 1,
                split: None,
                node,
            };
            if splittable(&child) {
                child.split = best_split(&child.hist, b, p, child.g, child.h, child.len() as u32);
            }
            open.push(child);
        }
    }
    done.extend(open);
    let mut values = vec![];
    for l in done {
        let value = -p.learning_rate * l.g / (l.h + p.l2);
        nodes[l.node] = BoostNode::Leaf { value };
        values.push(Grown {
            lies: l.lies,
            start: l.start,
            end: l.end,
            value,
            node: l.node,
            hist: l.hist,
        });
    }
    (nodes, values, root_hist)
}

/// The root histogram of the next tree under squared error, from this
/// tree's: each row's gradient `w·(raw - y)` moves by `w` times its leaf's
/// value, so each bin's gradient sum moves by every leaf's value times the
/// leaf's hessian sum in that bin (its weights, or its count); hessians and
/// counts stay. No pass over the rows.
fn next_root_hist(mut root: Hist, leaves: &[Grown]) -> Hist {
    for (j, col) in root.iter_mut().enumerate() {
        for (v, e) in col.iter_mut().enumerate() {
            for leaf in leaves {
                e.g += leaf.value * leaf.hist[j][v].h;
            }
        }
    }
    root
}

/// Under squared error, a root histogram is counted from the rows again
/// every this many trees (in between, it is [`next_root_hist`]'s, whose
/// rounding would otherwise drift).
const ROOT_RECOUNT: usize = 8;

/// The tree's value for a row of binned values (validation rows).
fn predict_binned(nodes: &[BoostNode], b: &Binned, i: usize) -> f64 {
    let mut at = 0;
    loop {
        match &nodes[at] {
            BoostNode::Leaf { value } => return *value,
            BoostNode::Split {
                feature,
                threshold,
                missing_left,
                left,
                right,
                categories,
            } => {
                let v = b.bins[*feature][i] as usize;
                let go_left = if v == b.missing(*feature) {
                    *missing_left
                } else if let Some(codes) = categories {
                    codes.contains(&(v as u32))
                } else {
                    // A bin's values are at most its threshold (the last
                    // bin's exceed every threshold): bin <= split bin
                    // <=> x <= threshold.
                    match b.thresholds[*feature].get(v) {
                        Some(t) => t <= threshold,
                        None => *threshold == f64::MAX,
                    }
                };
                at = if go_left { *left } else { *right };
            }
        }
    }
}

/// The target: values, or class indices with the number of classes.
pub enum Y<'a> {
    Values(&'a [f64]),
    Classes(&'a [usize], usize),
}

/// Adds (or, with `add` false, writes) each leaf's value to its rows'
/// places in `into`. In parallel pieces of `into` (rows by index): a leaf's
/// rows are ascending, so each piece finds its part of every leaf by
/// binary search and writes only its own rows.
fn leaf_values(b: &Binned, leaves: &[Grown], buf: &Buffers, into: &mut [f64], add: bool) {
    into.par_chunks_mut(ROW_PIECE)
        .enumerate()
        .for_each(|(piece, out)| {
            let (lo, hi) = (
                (piece * ROW_PIECE) as u32,
                (piece * ROW_PIECE + out.len()) as u32,
            );
            for leaf in leaves {
                let stride = b.rows.stride;
                let mine = buf.node(b, leaf.lies, leaf.start..leaf.end);
                let place = |k: usize| place_of(&mine.by_row[k * stride..(k + 1) * stride]);
                let from = partition_point(mine.len(), |k| place(k) < lo);
                let to = partition_point(mine.len(), |k| place(k) < hi);
                for i in places(mine.slice(from..to, stride), stride) {
                    let at = (i - lo) as usize;
                    if add {
                        out[at] += leaf.value;
                    } else {
                        out[at] = leaf.value;
                    }
                }
            }
        });
}

/// The first of `0..n` at which `before` is false (`before` true on a
/// prefix), as `slice::partition_point`.
fn partition_point(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// [`mlp_ml::fitted::sigmoid`]'s value to the bit, without its branch on the sign (both of
/// its arms computed from one exponential, then one chosen): the signs of
/// the scores are as good as random, and a mispredicted branch per row
/// costs more than a division.
fn sigmoid_select(z: f64) -> f64 {
    let e = (-z.abs()).exp();
    let positive = 1.0 / (1.0 + e);
    let negative = e / (1.0 + e);
    if z >= 0.0 {
        positive
    } else {
        negative
    }
}

/// Rows per parallel piece of per-row work (gradients, leaf values).
const ROW_PIECE: usize = 1 << 15;

/// Gradients and hessians of output `k` at the raw predictions, every
/// training row (in parallel pieces, the loss matched once per piece so
/// each piece is a plain loop).
fn gradients(loss: Loss, y: &Y, raw: &[Vec<f64>], k: usize, gh: &mut [[f64; 2]]) {
    let outputs = raw.len();
    gh.par_chunks_mut(ROW_PIECE)
        .enumerate()
        .for_each(|(piece, gh)| {
            let first = piece * ROW_PIECE;
            let rows = first..first + gh.len();
            match (loss, y) {
                (Loss::SquaredError, Y::Values(v)) => {
                    for ((e, r), v) in gh.iter_mut().zip(&raw[0][rows.clone()]).zip(&v[rows]) {
                        *e = [r - v, 1.0];
                    }
                }
                (Loss::AbsoluteError, Y::Values(v)) => {
                    for ((e, r), v) in gh.iter_mut().zip(&raw[0][rows.clone()]).zip(&v[rows]) {
                        *e = [if r > v { 1.0 } else { -1.0 }, 1.0];
                    }
                }
                (Loss::Huber { delta, .. }, Y::Values(v)) => {
                    for ((e, r), v) in gh.iter_mut().zip(&raw[0][rows.clone()]).zip(&v[rows]) {
                        *e = [(r - v).clamp(-delta, delta), 1.0];
                    }
                }
                (Loss::LogLoss, Y::Classes(c, _)) if outputs == 1 => {
                    for ((e, r), c) in gh.iter_mut().zip(&raw[0][rows.clone()]).zip(&c[rows]) {
                        let p = sigmoid_select(*r);
                        *e = [p - f64::from(*c == 1), (p * (1.0 - p)).max(1e-16)];
                    }
                }
                (Loss::LogLoss, Y::Classes(c, _)) => {
                    for (j, [gi, hi]) in gh.iter_mut().enumerate() {
                        let i = first + j;
                        let m = (0..outputs).fold(f64::NEG_INFINITY, |a, o| a.max(raw[o][i]));
                        let z: f64 = (0..outputs).map(|o| (raw[o][i] - m).exp()).sum();
                        let p = (raw[k][i] - m).exp() / z;
                        *gi = p - f64::from(c[i] == k);
                        *hi = (p * (1.0 - p)).max(1e-16);
                    }
                }
                _ => {}
            }
        });
}

/// The mean loss of rows at the raw predictions (early stopping).
fn loss_of(loss: Loss, y: &Y, raw: &[Vec<f64>], rows: &[usize]) -> f64 {
    let outputs = raw.len();
    let total: f64 = rows
        .iter()
        .map(|&i| match (loss, y) {
            (Loss::SquaredError, Y::Values(v)) => 0.5 * (raw[0][i] - v[i]).powi(2),
            (Loss::AbsoluteError, Y::Values(v)) => (raw[0][i] - v[i]).abs(),
            (Loss::Huber { delta, .. }, Y::Values(v)) => {
                let r = (raw[0][i] - v[i]).abs();
                if r <= delta {
                    0.5 * r * r
                } else {
                    delta * (r - 0.5 * delta)
                }
            }
            (Loss::LogLoss, Y::Classes(c, _)) if outputs == 1 => {
                let z = raw[0][i];
                let yi = f64::from(c[i] == 1);
                // log(1 + exp(z)) - y z
                (if z > 0.0 {
                    z + (-z).exp().ln_1p()
                } else {
                    z.exp().ln_1p()
                }) - yi * z
            }
            (Loss::LogLoss, Y::Classes(c, _)) => {
                let m = (0..outputs).fold(f64::NEG_INFINITY, |a, j| a.max(raw[j][i]));
                let z: f64 = (0..outputs).map(|j| (raw[j][i] - m).exp()).sum();
                -(raw[c[i]][i] - m - z.ln())
            }
            _ => 0.0,
        })
        .sum();
    total / rows.len().max(1) as f64
}

/// Fits the boosted trees; `weights` (per row, from `class_weight`) scale
/// each row's gradient and hessian and its share of the baseline, as
/// scikit-learn's `sample_weight`.
/// `raw_out`, when given, receives every row's raw scores (`outputs` per
/// row, row-major, in `x`'s order) as the fit left them: the same sums, in
/// the same order, as predicting the row with the fitted trees, so the
/// training rows need not be predicted again.
pub fn fit(
    x: &Array2<f64>,
    y: Y,
    weights: Option<&[f64]>,
    p: &Params,
    raw_out: Option<&mut Vec<f64>>,
) -> Result<Fitted, FitError> {
    fit_inputs(Inputs::Matrix(x), y, weights, p, raw_out)
}

/// [`fit`] on [`Inputs`]: a design matrix, or the inputs' columns and the
/// training rows' places in them (no matrix built); the same fit.
pub fn fit_inputs(
    x: Inputs,
    y: Y,
    weights: Option<&[f64]>,
    p: &Params,
    raw_out: Option<&mut Vec<f64>>,
) -> Result<Fitted, FitError> {
    if let Inputs::Columns { columns, rows } = x {
        let height = columns.iter().map(|c| c.len()).min().unwrap_or(usize::MAX);
        if rows.iter().any(|&i| i >= height) {
            return Err(FitError::Internal(
                "a training row beyond the inputs' rows".into(),
            ));
        }
    }
    let n = x.nrows();
    if n == 0 {
        return Err(FitError::Data("no rows to fit gradient_boosting on".into()));
    }
    let outputs = match &y {
        Y::Values(_) => 1,
        Y::Classes(_, k) if *k <= 2 => 1,
        Y::Classes(_, k) => *k,
    };
    // Hold out a validation share for early stopping (classes stratified).
    let (train, valid): (Vec<usize>, Vec<usize>) =
        if p.early_stopping && p.validation_fraction > 0.0 {
            let order = seeded_order(n, p.seed);
            let mut valid = vec![];
            match &y {
                Y::Classes(c, k) => {
                    for class in 0..*k {
                        let members: Vec<usize> =
                            order.iter().copied().filter(|i| c[*i] == class).collect();
                        let take = (members.len() as f64 * p.validation_fraction).round() as usize;
                        valid.extend(members.into_iter().take(take));
                    }
                }
                Y::Values(_) => {
                    let take = (n as f64 * p.validation_fraction).round() as usize;
                    valid.extend(order.into_iter().take(take));
                }
            }
            valid.sort_unstable();
            let mut is_valid = vec![false; n];
            for &i in &valid {
                is_valid[i] = true;
            }
            ((0..n).filter(|i| !is_valid[*i]).collect(), valid)
        } else {
            ((0..n).collect(), vec![])
        };
    if train.is_empty() {
        return Err(FitError::Data(
            "no rows left to fit gradient_boosting on after the validation share".into(),
        ));
    }
    for (j, l) in p.levels.iter().enumerate() {
        if let Some(l) = l.filter(|l| *l > p.max_bins) {
            return Err(FitError::Data(format!(
                "input {} is a category of {l} levels, and gradient_boosting splits at most max_bins = {} levels natively",
                j + 1,
                p.max_bins
            )));
        }
    }
    let binned = if valid.is_empty() {
        bin(x, weights, p.max_bins, &p.levels, p.seed)
    } else {
        let w: Option<Vec<f64>> = weights.map(|w| train.iter().map(|&i| w[i]).collect());
        match x {
            Inputs::Matrix(x) => bin(
                Inputs::Matrix(&x.select(ndarray::Axis(0), &train)),
                w.as_deref(),
                p.max_bins,
                &p.levels,
                p.seed,
            ),
            Inputs::Columns { columns, rows } => {
                let kept: Vec<usize> = train.iter().map(|&i| rows[i]).collect();
                bin(
                    Inputs::Columns {
                        columns,
                        rows: &kept,
                    },
                    w.as_deref(),
                    p.max_bins,
                    &p.levels,
                    p.seed,
                )
            }
        }
    };
    // Validation rows binned with the training thresholds.
    let valid_binned = Binned {
        bins: (0..x.ncols())
            .map(|j| {
                valid
                    .iter()
                    .map(|&i| bin_of(&binned.thresholds[j], x.get(i, j), binned.missing(j)))
                    .collect()
            })
            .collect(),
        thresholds: binned.thresholds.clone(),
        n_bins: binned.n_bins.clone(),
        categorical: binned.categorical.clone(),
        has_missing: binned.has_missing.clone(),
        rows: RowBins::default(),
    };
    // Targets indexed by training / validation position.
    let pick_f = |v: &[f64], at: &[usize]| at.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let pick_c = |c: &[usize], at: &[usize]| at.iter().map(|&i| c[i]).collect::<Vec<usize>>();
    let (vt, vv, ct, cv, k) = match &y {
        Y::Values(v) => (pick_f(v, &train), pick_f(v, &valid), vec![], vec![], 0),
        Y::Classes(c, k) => (vec![], vec![], pick_c(c, &train), pick_c(c, &valid), *k),
    };
    let (y_train, y_valid) = match &y {
        Y::Values(_) => (Y::Values(&vt), Y::Values(&vv)),
        Y::Classes(..) => (Y::Classes(&ct, k), Y::Classes(&cv, k)),
    };
    let m = train.len();
    // Baselines: the mean; the log-odds; the log of the class priors.
    let w_train: Vec<f64> = match weights {
        Some(w) => train.iter().map(|&i| w[i]).collect(),
        None => vec![1.0; m],
    };
    let total_w: f64 = w_train.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let baseline: Vec<f64> = match &y_train {
        Y::Values(v) if matches!(p.loss, Loss::AbsoluteError | Loss::Huber { .. }) => {
            let mut pairs: Vec<(f64, f64)> =
                v.iter().copied().zip(w_train.iter().copied()).collect();
            vec![weighted_median(&mut pairs, weights.is_some())]
        }
        Y::Values(v) => vec![v.iter().zip(&w_train).map(|(v, w)| v * w).sum::<f64>() / total_w],
        Y::Classes(c, k) => {
            let mut counts = vec![0.0; *k];
            for (&ci, w) in c.iter().zip(&w_train) {
                counts[ci] += w;
            }
            let eps = f64::EPSILON;
            if outputs == 1 {
                let p1 = (counts.get(1).copied().unwrap_or(0.0) / total_w).clamp(eps, 1.0 - eps);
                vec![(p1 / (1.0 - p1)).ln()]
            } else {
                counts
                    .iter()
                    .map(|c| (c / total_w).clamp(eps, 1.0 - eps).ln())
                    .collect()
            }
        }
    };
    let mut raw: Vec<Vec<f64>> = baseline.iter().map(|b| vec![*b; m]).collect();
    let mut raw_valid: Vec<Vec<f64>> = baseline.iter().map(|b| vec![*b; valid.len()]).collect();
    let valid_rows: Vec<usize> = (0..valid.len()).collect();
    // Each output's tree values per row, added to the scores once every
    // output's tree is grown (with one output they go straight in).
    let mut adds = vec![vec![0.0; if outputs > 1 { m } else { 0 }]; outputs];
    let mut gains = vec![0.0; x.ncols()];
    let mut buf = Buffers::new(m, binned.rows.stride);
    let mut trees: Vec<Vec<BoostNode>> = vec![];
    let mut scores: Vec<f64> = vec![];
    if !valid.is_empty() {
        let loss = huber_delta(p.loss, &y_train, &raw, &w_train);
        scores.push(-loss_of(loss, &y_valid, &raw_valid, &valid_rows));
    }
    // Squared error without weights: every hessian is 1.
    let constant_h = matches!(
        p.loss,
        Loss::SquaredError | Loss::AbsoluteError | Loss::Huber { .. }
    ) && weights.is_none();
    let mut loss = p.loss;
    // Squared error with one output: each root histogram but every
    // ROOT_RECOUNT-th follows from the last tree's.
    let follow_root = p.loss == Loss::SquaredError && outputs == 1;
    let mut next_root: Option<Hist> = None;
    for iteration in 0..p.max_iter {
        loss = huber_delta(loss, &y_train, &raw, &w_train);
        // Every output's gradients at the same raw predictions.
        let mut grown = vec![];
        for (k, add) in adds.iter_mut().enumerate() {
            gradients(loss, &y_train, &raw, k, &mut buf.gh);
            if weights.is_some() {
                for ([gi, hi], w) in buf.gh.iter_mut().zip(&w_train) {
                    *gi *= w;
                    *hi *= w;
                }
            }
            let root = next_root
                .take()
                .filter(|_| follow_root && iteration % ROOT_RECOUNT != 0);
            let (mut nodes, mut values, root) =
                grow(&binned, &mut buf, &mut gains, constant_h, p, root);
            if follow_root {
                next_root = Some(next_root_hist(root, &values));
            }
            // Losses without a second derivative: each leaf's value is
            // scikit-learn's line search on its rows' residuals at the
            // current scores, shrunk by the learning rate (the l2 penalty
            // does not enter).
            if let (Loss::AbsoluteError | Loss::Huber { .. }, Y::Values(v)) = (loss, &y_train) {
                for leaf in &mut values {
                    let rows = buf.node(&binned, leaf.lies, leaf.start..leaf.end);
                    let mut residuals: Vec<(f64, f64)> = places(rows, binned.rows.stride)
                        .map(|i| (v[i as usize] - raw[0][i as usize], w_train[i as usize]))
                        .collect();
                    let step = match loss {
                        // Huber: the median residual (its weighted
                        // percentile, unit weights by default) plus the
                        // weighted mean of the deviations from it clipped
                        // at delta.
                        Loss::Huber { delta, .. } => {
                            let median = weighted_median(&mut residuals, true);
                            let (sum, total) =
                                residuals.iter().fold((0.0, 0.0), |(s, t), (r, w)| {
                                    (s + w * (r - median).clamp(-delta, delta), t + w)
                                });
                            median + if total > 0.0 { sum / total } else { 0.0 }
                        }
                        // Absolute error: the (weighted) median.
                        _ => weighted_median(&mut residuals, weights.is_some()),
                    };
                    leaf.value = p.learning_rate * step;
                    nodes[leaf.node] = BoostNode::Leaf { value: leaf.value };
                }
            }
            // The leaves' rows are ranges of this tree's row order: note
            // each row's value before the next tree reorders them (added
            // once every output's tree is grown, at the same scores).
            // With one output nothing else reads these scores: the values
            // go straight in.
            let into = if outputs == 1 { &mut raw[0] } else { add };
            leaf_values(&binned, &values, &buf, into, outputs == 1);
            grown.push(nodes);
        }
        for (k, nodes) in grown.into_iter().enumerate() {
            if outputs > 1 {
                for (r, a) in raw[k].iter_mut().zip(&adds[k]) {
                    *r += a;
                }
            }
            for (vi, r) in raw_valid[k].iter_mut().enumerate() {
                *r += predict_binned(&nodes, &valid_binned, vi);
            }
            trees.push(nodes);
        }
        if !valid.is_empty() {
            scores.push(-loss_of(loss, &y_valid, &raw_valid, &valid_rows));
            let w = p.n_iter_no_change;
            if scores.len() > w {
                let reference = scores[scores.len() - w - 1];
                if scores[scores.len() - w..]
                    .iter()
                    .all(|s| *s <= reference + p.tol)
                {
                    break;
                }
            }
        }
    }
    if let Some(out) = raw_out {
        out.clear();
        out.resize(n * outputs, 0.0);
        for (k, (r, rv)) in raw.iter().zip(&raw_valid).enumerate() {
            for (t, &i) in train.iter().enumerate() {
                out[i * outputs + k] = r[t];
            }
            for (v, &i) in valid.iter().enumerate() {
                out[i * outputs + k] = rv[v];
            }
        }
    }
    Ok(Fitted::Boosted {
        baseline,
        trees,
        outputs,
        gains: crate::cart::shares(gains),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_ml::fitted::sigmoid;

    /// Small trees without early stopping.
    fn params(loss: Loss, learning_rate: f64, max_iter: usize, leaves: usize) -> Params {
        Params {
            loss,
            learning_rate,
            max_iter,
            max_leaf_nodes: Some(leaves),
            max_depth: None,
            min_samples_leaf: 5,
            l2: 0.0,
            max_bins: 255,
            early_stopping: false,
            validation_fraction: 0.1,
            n_iter_no_change: 10,
            tol: 1e-7,
            seed: 1,
            levels: vec![],
        }
    }

    /// Fitting from the inputs' columns and the training rows' places is
    /// the fit on the matrix of those rows, to the bit (with a validation
    /// share held out, and missing values): the same trees, the same
    /// training scores.
    #[test]
    fn a_fit_on_columns_equals_the_fit_on_the_rows_matrix() {
        let n = 3_000;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| {
            if (i + j) % 97 == 0 {
                f64::NAN
            } else {
                ((i * 7919 + j * 104_729) % 1000) as f64 / 100.0
            }
        });
        let rows: Vec<usize> = (0..n).filter(|i| i % 4 != 1).collect();
        let c: Vec<usize> = rows
            .iter()
            .map(|&i| usize::from(x[[i, 0]].is_nan() || x[[i, 0]] + 0.5 * x[[i, 1]] > 6.0))
            .collect();
        let mut p = params(Loss::LogLoss, 0.1, 15, 7);
        p.early_stopping = true;
        p.n_iter_no_change = 100;
        let picked = x.select(ndarray::Axis(0), &rows);
        let mut by_matrix_scores = vec![];
        let by_matrix = fit(
            &picked,
            Y::Classes(&c, 2),
            None,
            &p,
            Some(&mut by_matrix_scores),
        )
        .expect("fits");
        let t = x.t().as_standard_layout().to_owned();
        let columns: Vec<&[f64]> = t.as_slice().unwrap().chunks_exact(n).collect();
        let mut by_columns_scores = vec![];
        let by_columns = fit_inputs(
            Inputs::Columns {
                columns: &columns,
                rows: &rows,
            },
            Y::Classes(&c, 2),
            None,
            &p,
            Some(&mut by_columns_scores),
        )
        .expect("fits");
        assert_eq!(
            serde_json::to_string(&by_matrix).unwrap(),
            serde_json::to_string(&by_columns).unwrap()
        );
        let bits = |v: &[f64]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&by_matrix_scores), bits(&by_columns_scores));
        assert!(!by_matrix_scores.is_empty());
        // A training row beyond the columns is refused, not read.
        let beyond = fit_inputs(
            Inputs::Columns {
                columns: &columns,
                rows: &[0, n],
            },
            Y::Classes(&[0, 1], 2),
            None,
            &p,
            None,
        );
        assert!(beyond.is_err());
    }

    /// Re-scoring rows with a shuffled column (permutation importance)
    /// re-walks only the trees that split on it, and gives the bits a full
    /// prediction gives, for every class.
    #[test]
    fn predicting_changed_columns_equals_predicting_the_rows() {
        use mlp_ml::fitted::{ModelFile, Prediction};
        let n = 600;
        let x = Array2::from_shape_fn((n, 4), |(i, j)| {
            ((i * 7919 + j * 104_729) % 1000) as f64 / 100.0
        });
        let classes: Vec<usize> = (0..n)
            .map(|i| ((x[[i, 0]] + 0.5 * x[[i, 2]]) as usize) % 3)
            .collect();
        let p = params(Loss::LogLoss, 0.1, 20, 8);
        let fitted = fit(&x, Y::Classes(&classes, 3), None, &p, None).expect("fits");
        let model = ModelFile {
            algorithm: mlp_compiler::plan::Algorithm::GradientBoosting,
            task: mlp_compiler::plan::Task::Classification,
            target: "y".into(),
            features: (0..4).map(|j| format!("x{j}")).collect(),
            categories: Default::default(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            params: Default::default(),
            fitted,
        };
        let cache = model.tree_values(&x).expect("boosted");
        let same_bits = |xp: &Array2<f64>, changed: &[usize], what: &str| {
            let (Prediction::Probabilities(a), Prediction::Probabilities(b)) = (
                model.predict(xp),
                model.predict_changed(&cache, xp, changed),
            ) else {
                panic!("probabilities");
            };
            assert!(
                a.iter()
                    .zip(b.iter())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what} of {changed:?}"
            );
        };
        for changed in [vec![0], vec![1], vec![2, 3]] {
            let mut xp = x.clone();
            for &j in &changed {
                for i in 0..n {
                    xp[[i, j]] = x[[(i * 37 + 11) % n, j]];
                }
            }
            same_bits(&xp, &changed, "every row");
        }
        // A few rows changed: the others keep their scores, the changed
        // ones are summed again; still the bits of predicting.
        for changed in [vec![0], vec![2]] {
            let mut xp = x.clone();
            for i in (0..n).step_by(17) {
                for &j in &changed {
                    xp[[i, j]] = x[[(i * 7 + 3) % n, j]];
                }
            }
            same_bits(&xp, &changed, "a few rows");
        }
    }

    /// `n` rows of a numeric column, a one-hot triple (never two at 1), a
    /// flag mostly missing, and a flag that is 1 with the triple's first.
    fn sparse_inputs(n: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, 6), |(i, j)| {
            let k = (i * 7919) % 1000;
            match j {
                0 => k as f64 / 3.0,
                1 => f64::from(k < 100),
                2 => f64::from((100..250).contains(&k)),
                3 => f64::from((250..300).contains(&k)),
                4 if k % 5 == 0 => 1.0,
                4 => f64::NAN,
                _ => f64::from(k % 10 == 3),
            }
        })
    }

    #[test]
    fn sparse_columns_give_the_dense_histogram() {
        let n = 40_000;
        let x = sparse_inputs(n);
        let b = bin(Inputs::Matrix(&x), None, 255, &[], 1);
        assert_eq!(b.rows.dense, vec![0], "one dense column");
        assert_eq!(b.rows.sparse.len(), 5, "five sparse columns");
        // Two bundles: the triple, and the two flags (never both off
        // their frequent bin in a row; the last is 1 beside the triple's
        // first). Two counts a row, against lists of 0.5 entries a row
        // and the loop's cost.
        assert!(b.rows.starts.is_empty(), "bundled");
        assert_eq!(b.rows.slot_at.len(), 1 + 2, "two bundles");
        let dense = laid_out(&b, 2.0, Layout::Auto);
        let listed = laid_out(&b, SPARSE_SHARE, Layout::Listed);
        assert!(!listed.rows.starts.is_empty());
        let (g, h) = node_gradients(n);
        // A node's rows (every third), with and without hessians.
        let rows: Vec<u32> = (0..n as u32).filter(|i| i % 3 != 1).collect();
        for hess in [Some(&h[..]), None] {
            let a = rows_histogram(&b, &rows, &g, hess);
            // Bundled and listed: the same sums in the same order.
            same_hist_bits(&a, &rows_histogram(&listed, &rows, &g, hess));
            same_sums(&a, &rows_histogram(&dense, &rows, &g, hess));
        }
    }

    /// Without inputs every row is in the root: the fit is the baseline.
    #[test]
    fn a_fit_without_inputs_is_its_baseline() {
        let x = Array2::<f64>::zeros((50, 0));
        let y: Vec<f64> = (0..50).map(f64::from).collect();
        let p = params(Loss::SquaredError, 0.1, 3, 4);
        let mut raw = vec![];
        fit_inputs(Inputs::Matrix(&x), Y::Values(&y), None, &p, Some(&mut raw)).expect("fits");
        assert!(raw.iter().all(|r| (r - 24.5).abs() < 1e-12), "{raw:?}");
    }

    /// The sample's rows are the head of the seeded order, found without
    /// sorting every row.
    #[test]
    fn the_seeded_head_is_the_seeded_orders_head() {
        for (n, k) in [(10, 3), (1_000, 999), (5_000, 1_234)] {
            let mut want: Vec<usize> = seeded_order(n, 7).into_iter().take(k).collect();
            want.sort_unstable();
            assert_eq!(seeded_head(n, k, 7), want, "{k} of {n}");
        }
    }

    /// A partition moves each row with its data, the rows going left in
    /// order first: on a node large enough to be moved in parallel pieces
    /// and on a small one, by a dense, a bundled and a listed column, from
    /// the training rows and from a moved buffer into the other.
    #[test]
    fn a_partition_moves_each_row_with_its_data() {
        let n = 3 * MOVE_ROWS + 1_234;
        let x = sparse_inputs(n);
        let b = bin(Inputs::Matrix(&x), None, 255, &[], 1);
        let listed = laid_out(&b, SPARSE_SHARE, Layout::Listed);
        // Where a column's bin is in a row's bytes, it decodes to its bin.
        let stride = b.rows.stride;
        for (j, decode) in b.rows.in_row.iter().enumerate() {
            let (place, bin_of) = decode.as_ref().expect("dense or bundled");
            for i in 0..n {
                assert_eq!(
                    bin_of[usize::from(b.rows.by_row[i * stride + place])],
                    b.bins[j][i]
                );
            }
        }
        assert!(listed.rows.in_row[1].is_none(), "listed");
        let (g, h) = node_gradients(n);
        for (b, column) in [(&b, 0), (&b, 2), (&listed, 1)] {
            let mut buf = Buffers::new(n, b.rows.stride);
            for (e, (g, h)) in buf.gh.iter_mut().zip(g.iter().zip(&h)) {
                *e = [*g, *h];
            }
            let goes = |i: u32| b.bins[column][i as usize] == 0;
            let check =
                |buf: &Buffers, lies: Lies, range: std::ops::Range<usize>, before: &[u32]| {
                    let want: Vec<u32> = before
                        .iter()
                        .copied()
                        .filter(|&i| goes(i))
                        .chain(before.iter().copied().filter(|&i| !goes(i)))
                        .collect();
                    let node = buf.node(b, lies, range);
                    let stride = b.rows.stride;
                    assert_eq!(places(node, stride).collect::<Vec<u32>>(), want);
                    for (k, &i) in want.iter().enumerate() {
                        let i = i as usize;
                        assert_eq!(
                            &node.by_row[k * stride..(k + 1) * stride],
                            &b.rows.by_row[i * stride..(i + 1) * stride]
                        );
                        assert_eq!(node.gh[k], [g[i], h[i]]);
                    }
                };
            let count = |rows: &[u32]| rows.iter().filter(|&&i| goes(i)).count();
            let go_left = |record: &[u8]| goes(place_of(record));
            // The root, in parallel pieces.
            let all: Vec<u32> = (0..n as u32).collect();
            let lies = buf.partition(b, Lies::Training, 0..n, count(&all), &go_left);
            assert_eq!(lies, Lies::Moved(0));
            check(&buf, lies, 0..n, &all);
            // A small node of moved rows (their order since the last
            // partition), into the other buffer.
            let range = 1_000..3_000;
            let before: Vec<u32> = places(buf.node(b, lies, range.clone()), stride).collect();
            let lies = buf.partition(b, lies, range.clone(), count(&before), &go_left);
            assert_eq!(lies, Lies::Moved(1));
            check(&buf, lies, range, &before);
        }
    }

    /// Many flags off their frequent bin in the same rows: a bundle each
    /// costs more than listing them, so they are listed; bundled anyway,
    /// the histogram is the same to the bit.
    #[test]
    fn sparse_columns_that_overlap_are_listed() {
        let n = 20_000;
        let x = Array2::from_shape_fn((n, 12), |(i, j)| f64::from((i * 7919) % 1000 < 300 + 8 * j));
        let b = bin(Inputs::Matrix(&x), None, 255, &[], 1);
        assert_eq!(b.rows.sparse.len(), 12);
        assert!(!b.rows.starts.is_empty(), "listed");
        let bundled = laid_out(&b, SPARSE_SHARE, Layout::Bundled);
        assert!(bundled.rows.starts.is_empty() && bundled.rows.slot_at.len() > 1);
        let (g, h) = node_gradients(n);
        let rows: Vec<u32> = (0..n as u32).filter(|i| i % 4 != 1).collect();
        for hess in [Some(&h[..]), None] {
            same_hist_bits(
                &rows_histogram(&b, &rows, &g, hess),
                &rows_histogram(&bundled, &rows, &g, hess),
            );
        }
    }

    /// The histogram of the rows `rows` (ascending), their data gathered
    /// as a partition leaves it.
    fn rows_histogram(b: &Binned, rows: &[u32], g: &[f64], h: Option<&[f64]>) -> Hist {
        let stride = b.rows.stride;
        let by_row: Vec<u8> = rows
            .iter()
            .flat_map(|&i| &b.rows.by_row[i as usize * stride..(i as usize + 1) * stride])
            .copied()
            .collect();
        let gh: Vec<[f64; 2]> = rows
            .iter()
            .map(|&i| [g[i as usize], h.map_or(1.0, |h| h[i as usize])])
            .collect();
        histogram(
            b,
            NodeRows {
                by_row: &by_row,
                gh: &gh,
            },
            h.is_some(),
        )
    }

    /// `b`'s bins in another histogram layout.
    fn laid_out(b: &Binned, sparse_share: f64, layout: Layout) -> Binned {
        Binned {
            thresholds: b.thresholds.clone(),
            bins: b.bins.clone(),
            n_bins: b.n_bins.clone(),
            categorical: b.categorical.clone(),
            has_missing: b.has_missing.clone(),
            rows: row_bins(b, b.bins[0].len(), sparse_share, layout),
        }
    }

    /// Gradients and hessians of `n` rows, for histograms.
    fn node_gradients(n: usize) -> (Vec<f64>, Vec<f64>) {
        (
            (0..n).map(|i| ((i * 31) % 97) as f64 / 9.0 - 5.0).collect(),
            (0..n).map(|i| 0.5 + ((i * 13) % 7) as f64 / 7.0).collect(),
        )
    }

    /// Histograms equal in counts, sums within rounding.
    fn same_sums(a: &Hist, c: &Hist) {
        for (ca, cc) in a.iter().zip(c) {
            for (ea, ec) in ca.iter().zip(cc) {
                assert_eq!(ea.n, ec.n);
                assert!(
                    (ea.g - ec.g).abs() <= 1e-9 * (1.0 + ec.g.abs()),
                    "{} {}",
                    ea.g,
                    ec.g
                );
                assert!(
                    (ea.h - ec.h).abs() <= 1e-9 * (1.0 + ec.h.abs()),
                    "{} {}",
                    ea.h,
                    ec.h
                );
            }
        }
    }

    /// Histograms equal to the bit.
    fn same_hist_bits(a: &Hist, c: &Hist) {
        for (ca, cc) in a.iter().zip(c) {
            for (ea, ec) in ca.iter().zip(cc) {
                assert_eq!(
                    (ea.g.to_bits(), ea.h.to_bits(), ea.n),
                    (ec.g.to_bits(), ec.h.to_bits(), ec.n)
                );
            }
        }
    }

    #[test]
    fn huber_quantiles_are_numpy_inverted_cdf() {
        // numpy.percentile(1..=10, 90, method="inverted_cdf") is 9; at 95,
        // 10; weights shift the rank.
        let mut v: Vec<(f64, f64)> = (1..=10).map(|i| (f64::from(i), 1.0)).collect();
        assert_eq!(weighted_quantile(&mut v, 0.9), 9.0);
        assert_eq!(weighted_quantile(&mut v, 0.95), 10.0);
        v[9].1 = 10.0;
        assert_eq!(weighted_quantile(&mut v, 0.5), 10.0);
    }

    #[test]
    fn a_bin_holds_the_values_its_threshold_bounds() {
        let values: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f64 / 7.0)
            .collect();
        let t = thresholds_of(&values, 16);
        assert!(t.len() <= 15 && t.windows(2).all(|w| w[0] < w[1]));
        let missing = t.len() + 1;
        for &x in &values {
            let b = bin_of(&t, x, missing) as usize;
            // bin <= k  <=>  x <= t[k], for every k.
            for (k, th) in t.iter().enumerate() {
                assert_eq!(b <= k, x <= *th, "x {x} bin {b} threshold {k} = {th}");
            }
        }
        assert_eq!(bin_of(&t, f64::NAN, missing) as usize, missing);
        // Few distinct values: thresholds at their midpoints.
        assert_eq!(
            thresholds_of(&[1.0, 3.0, 3.0, 5.0, f64::NAN], 255),
            vec![2.0, 4.0]
        );
    }

    #[test]
    fn boosting_learns_a_step_and_sends_missing_values_their_way() {
        // y = 10 where x > 0.5, else 0; missing x has y = 5.
        let n = 400;
        let x = Array2::from_shape_fn((n, 1), |(i, _)| {
            if i % 10 == 0 {
                f64::NAN
            } else {
                i as f64 / n as f64
            }
        });
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let v = x[[i, 0]];
                if v.is_nan() {
                    5.0
                } else if v > 0.5 {
                    10.0
                } else {
                    0.0
                }
            })
            .collect();
        let p = params(Loss::SquaredError, 0.5, 50, 4);
        let Fitted::Boosted {
            baseline, trees, ..
        } = fit(&x, Y::Values(&y), None, &p, None).expect("fits")
        else {
            panic!("not boosted");
        };
        for (probe, want) in [(0.2, 0.0), (0.8, 10.0), (f64::NAN, 5.0)] {
            let row = ndarray::arr1(&[probe]);
            let got = baseline[0]
                + trees
                    .iter()
                    .map(|t| mlp_ml::fitted::boost_value(t, row.view()))
                    .sum::<f64>();
            assert!((got - want).abs() < 1e-3, "x = {probe}: {got} vs {want}");
        }
    }

    /// A category input splits by its levels, in any grouping: levels 0, 3
    /// and 5 against 1, 2 and 4 is one split (no threshold on the codes
    /// makes it); missing values (and an unseen level, read as missing)
    /// go their way; the packed walk, the scalar walk and the binned walk
    /// agree.
    #[test]
    fn a_category_splits_by_its_levels() {
        let n = 600;
        let code = |i: usize| {
            if i.is_multiple_of(7) {
                f64::NAN
            } else {
                (i % 6) as f64
            }
        };
        let x = Array2::from_shape_fn((n, 2), |(i, j)| if j == 0 { code(i) } else { 0.0 });
        let y: Vec<f64> = (0..n)
            .map(|i| match code(i) {
                c if c.is_nan() => 4.0,
                c if [0.0, 3.0, 5.0].contains(&c) => 10.0,
                _ => -10.0,
            })
            .collect();
        let mut p = params(Loss::SquaredError, 1.0, 1, 3);
        p.levels = vec![Some(6), None];
        let fitted = fit(&x, Y::Values(&y), None, &p, None).expect("fits");
        let Fitted::Boosted {
            baseline, trees, ..
        } = &fitted
        else {
            panic!("not boosted");
        };
        let BoostNode::Split {
            categories: Some(codes),
            ..
        } = &trees[0][0]
        else {
            panic!("the root is not a categorical split: {:?}", trees[0][0]);
        };
        assert!(
            codes == &[0, 3, 5] || codes == &[1, 2, 4],
            "the levels are grouped by their target: {codes:?}"
        );
        let model = mlp_ml::fitted::ModelFile {
            algorithm: mlp_compiler::plan::Algorithm::GradientBoosting,
            task: mlp_compiler::plan::Task::Regression,
            target: "y".into(),
            features: vec!["c".into(), "z".into()],
            categories: [("c".to_string(), (0..6).map(|c| c.to_string()).collect())].into(),
            classes: vec![],
            params: Default::default(),
            fitted: fitted.clone(),
        };
        let probes = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, f64::NAN];
        let px = Array2::from_shape_fn(
            (probes.len(), 2),
            |(i, j)| if j == 0 { probes[i] } else { 0.0 },
        );
        let mlp_ml::fitted::Prediction::Values(packed) = model.predict(&px) else {
            panic!("values");
        };
        for (i, probe) in probes.iter().enumerate() {
            let scalar = baseline[0] + mlp_ml::fitted::boost_value(&trees[0], px.row(i));
            assert_eq!(scalar.to_bits(), packed[i].to_bits(), "code {probe}");
            let want = if probe.is_nan() {
                // Missing rows are a seventh of the data: with the larger
                // group or the smaller, they go where their mean is nearer.
                None
            } else if [0.0, 3.0, 5.0].contains(probe) {
                Some(10.0)
            } else {
                Some(-10.0)
            };
            if let Some(want) = want {
                assert!(
                    (scalar - want).abs() < 1.5,
                    "code {probe}: {scalar} vs about {want}"
                );
            }
        }
        // Binned validation rows walk the same way.
        let b = bin(Inputs::Matrix(&x), None, 255, &p.levels, 1);
        for i in 0..n {
            let raw = baseline[0] + mlp_ml::fitted::boost_value(&trees[0], x.row(i));
            let binned = baseline[0] + predict_binned(&trees[0], &b, i);
            assert_eq!(raw.to_bits(), binned.to_bits(), "row {i}");
        }
    }

    #[test]
    fn a_category_of_more_levels_than_bins_is_refused() {
        let x = Array2::from_shape_fn((50, 1), |(i, _)| (i % 20) as f64);
        let y: Vec<f64> = (0..50).map(|i| i as f64).collect();
        let mut p = params(Loss::SquaredError, 0.1, 2, 3);
        p.levels = vec![Some(20)];
        p.max_bins = 10;
        let err = fit(&x, Y::Values(&y), None, &p, None).expect_err("refused");
        assert!(err.to_string().contains("20 levels"), "{err}");
    }

    /// Under squared error the next root histogram follows from the last
    /// tree's leaves: the same sums (to rounding) as counting the rows
    /// again at the new scores, with and without weights.
    #[test]
    fn a_followed_root_histogram_equals_a_counted_one() {
        let n = 3000;
        let x = Array2::from_shape_fn((n, 3), |(i, j)| match j {
            0 => (i % 97) as f64,
            1 => ((i * 7) % 13) as f64,
            _ => f64::from(u8::from(i % 5 == 0)),
        });
        let y: Vec<f64> = (0..n)
            .map(|i| x[[i, 0]] * 0.3 + x[[i, 1]] - 2.0 * x[[i, 2]])
            .collect();
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
        let p = params(Loss::SquaredError, 0.3, 1, 8);
        let b = bin(Inputs::Matrix(&x), None, 255, &[], 1);
        for weights in [None, Some(&w[..])] {
            let mut raw = vec![y.iter().sum::<f64>() / n as f64; n];
            let gradients_at = |raw: &[f64]| {
                let g: Vec<f64> = (0..n)
                    .map(|i| (raw[i] - y[i]) * weights.map_or(1.0, |w| w[i]))
                    .collect();
                let h: Vec<f64> = (0..n).map(|i| weights.map_or(1.0, |w| w[i])).collect();
                (g, h)
            };
            let mut buf = Buffers::new(n, b.rows.stride);
            let mut gains = vec![0.0; 3];
            let mut followed = None;
            for _ in 0..4 {
                let (g, h) = gradients_at(&raw);
                let all: Vec<u32> = (0..n as u32).collect();
                let counted = rows_histogram(&b, &all, &g, weights.map(|_| &h[..]));
                for (e, (g, h)) in buf.gh.iter_mut().zip(g.iter().zip(&h)) {
                    *e = [*g, *h];
                }
                if let Some(f) = followed.take() {
                    let f: Hist = f;
                    for (fc, cc) in f.iter().zip(&counted) {
                        for (a, c) in fc.iter().zip(cc) {
                            assert!(
                                (a.g - c.g).abs() <= 1e-9 * (1.0 + c.g.abs()),
                                "{} vs {}",
                                a.g,
                                c.g
                            );
                            assert_eq!((a.h, a.n), (c.h, c.n));
                        }
                    }
                }
                let constant_h = weights.is_none();
                let (_, leaves, root) = grow(&b, &mut buf, &mut gains, constant_h, &p, None);
                for leaf in &leaves {
                    let rows = buf.node(&b, leaf.lies, leaf.start..leaf.end);
                    for i in places(rows, b.rows.stride) {
                        raw[i as usize] += leaf.value;
                    }
                }
                followed = Some(next_root_hist(root, &leaves));
            }
        }
    }

    #[test]
    fn the_branchless_sigmoid_is_the_sigmoid_to_the_bit() {
        let mut z = -40.0;
        while z <= 40.0 {
            for v in [z, -z, z * 1e-3, z * 1e3] {
                assert_eq!(sigmoid_select(v).to_bits(), sigmoid(v).to_bits(), "z = {v}");
            }
            z += 0.0137;
        }
        for v in [
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            745.0,
            -745.0,
            1e308,
            -1e308,
        ] {
            assert_eq!(sigmoid_select(v).to_bits(), sigmoid(v).to_bits(), "z = {v}");
        }
    }
}
