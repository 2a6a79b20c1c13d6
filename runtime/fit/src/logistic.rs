//! Binary logistic regression by Newton's method, on scikit-learn's
//! objective: `½‖w‖² + C Σᵢ log(1 + exp(-sᵢ (xᵢ·w + b)))` with the intercept
//! `b` not penalised. The objective is strictly convex, so its minimum is
//! unique: Newton's steps (the Hessian solved by Cholesky, a backtracking
//! line search) reach it in a handful of iterations. scikit-learn's L-BFGS
//! stops near the same minimum (its `tol`); this stops at it.
//!
//! Each iteration is one pass over the rows, in blocks on every core: at a
//! candidate step it computes the decision values, the objective, and
//! (for when the line search takes the step, as it nearly always does)
//! the gradient and the Hessian there, so the next Newton step needs no
//! pass of its own. The blocks' sums are added in block order, so the fit
//! does not depend on the number of threads. The rows are read from the
//! inputs' columns (a design matrix in column order is read as it is;
//! another is copied into that order once).
//!
//! Past 200,000 rows, an evenly spread sample of 50,000 of them stands in
//! where exactness is not needed: its own minimum is the start, and its
//! Hessian (at each step's point) the step's; the passes over every row
//! then sum the objective and its exact gradient only, so the steps still
//! go to the whole objective's minimum and stop by its test (see
//! [`newton`]), at a third of the cost per pass.

use crate::FitError;
use ndarray::{Array1, Array2, Axis, Slice};
use rayon::prelude::*;

/// Rows per block.
const BLOCK: usize = 8_192;

/// The fitted weights and intercept (0 without one).
pub struct Logistic {
    pub weights: Array1<f64>,
    pub intercept: f64,
}

/// `log(1 + exp(z))` and `1 / (1 + exp(-z))` from one exponential,
/// without overflow.
fn softplus_sigmoid(z: f64) -> (f64, f64) {
    let e = (-z.abs()).exp();
    let softplus = z.max(0.0) + e.ln_1p();
    let sigmoid = if z >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    };
    (softplus, sigmoid)
}

/// The rows, the 0/1 targets and the rows' weights, in blocks.
struct Rows<'a> {
    /// Each input's values, one slice per column.
    columns: Vec<&'a [f64]>,
    /// The fit's rows among the columns' (row `k` of the fit is
    /// `columns[j][rows[k]]`); all of them, in order, when `None`.
    rows: Option<&'a [usize]>,
    y: &'a [f64],
    /// Each row's weight; 1 for every row when `None`.
    s: Option<&'a [f64]>,
    blocks: Vec<(usize, usize)>,
}

impl Rows<'_> {
    fn weight(&self, i: usize) -> f64 {
        self.s.map_or(1.0, |s| s[i])
    }

    /// Where the fit's row `k` is in the columns.
    fn at(&self, k: usize) -> usize {
        self.rows.map_or(k, |r| r[k])
    }

    /// The objective at `w`, `b`, with its gradient and Hessian there, over
    /// `m` = inputs (+ 1 intercept).
    fn pass(&self, c: f64, w: &Array1<f64>, b: f64, intercept: bool, hessian: bool) -> Point {
        let d = self.columns.len();
        let parts: Vec<Part> = self
            .blocks
            .par_iter()
            .map(|&(start, end)| self.block_pass(c, w, b, start, end, hessian))
            .collect();
        let m = d + usize::from(intercept);
        let mut g = Array1::<f64>::zeros(m);
        let mut h = Array2::<f64>::zeros((m, m));
        let mut total = Part::new(d);
        for part in &parts {
            total.add(part);
        }
        for j in 0..d {
            g[j] = c * total.gw[j] + w[j];
            for k in j..d {
                h[[j, k]] = total.hw[j * d + k];
                h[[k, j]] = total.hw[j * d + k];
            }
            h[[j, j]] += 1.0;
        }
        if intercept {
            g[d] = c * total.gb;
            for j in 0..d {
                h[[j, d]] = total.hb[j];
                h[[d, j]] = total.hb[j];
            }
            // Every row predicted with certainty leaves the intercept flat.
            h[[d, d]] = total.hbb.max(1e-12);
        }
        Point {
            f: 0.5 * w.dot(w) + c * total.loss,
            g,
            h: hessian.then_some(h),
        }
    }

    /// One block's sums for [`Rows::pass`]: the loss `Σ sᵢ (log(1 +
    /// exp(zᵢ)) - yᵢ zᵢ)`, `Σ rᵢ xᵢ`, `Σ rᵢ`, the upper triangle of `Σ cᵢ
    /// xᵢ xᵢᵀ`, `Σ cᵢ xᵢ` and `Σ cᵢ`, with `zᵢ = xᵢ·w + b`, `rᵢ = sᵢ (pᵢ -
    /// yᵢ)` and `cᵢ = C sᵢ pᵢ (1 - pᵢ)`. A tile of rows at a time: each
    /// input's values of the tile side by side (gathered once from the
    /// fit's rows, which the decision values and the sums then read where
    /// they are), the decision values summed a column at a time; then
    /// either the gradient's sums a column at a time, or (with the
    /// Hessian) rows taken [`GROUP`] at a time, so each cell of the
    /// triangle is loaded and stored once per group (a symmetric
    /// rank-`GROUP` update: half the work of the whole product, and no
    /// scaled copy of the rows), each group's rows copied side by side.
    fn block_pass(
        &self,
        c: f64,
        w: &Array1<f64>,
        b: f64,
        start: usize,
        end: usize,
        hessian: bool,
    ) -> Part {
        let d = self.columns.len();
        let mut part = Part::new(d);
        let mut z = vec![0.0; TILE];
        let mut r = vec![0.0; TILE];
        let mut cells = vec![0.0; GROUP * d];
        let mut gathered = vec![0.0; if self.rows.is_some() { TILE * d } else { 0 }];
        for first in (start..end).step_by(TILE) {
            let last = (first + TILE).min(end);
            let len = last - first;
            let tile: Vec<&[f64]> = match self.rows {
                None => self.columns.iter().map(|col| &col[first..last]).collect(),
                Some(rows) => {
                    for (col, out) in self.columns.iter().zip(gathered.chunks_exact_mut(TILE)) {
                        for (x, &i) in out.iter_mut().zip(&rows[first..last]) {
                            *x = col[i];
                        }
                    }
                    gathered.chunks_exact(TILE).map(|g| &g[..len]).collect()
                }
            };
            let z = &mut z[..len];
            // `b + Σⱼ wⱼ xⱼ`, a column at a time over the tile.
            z.fill(b);
            for (x, wj) in tile.iter().zip(w) {
                for (z, v) in z.iter_mut().zip(*x) {
                    *z += wj * v;
                }
            }
            if hessian {
                self.tile_system(c, z, first, &tile, &mut cells, &mut part);
                continue;
            }
            // The loss and the gradient only: each row's residual, then
            // `Σ rᵢ xᵢ` a column at a time.
            let r = &mut r[..len];
            for (k, (zk, rk)) in z.iter().zip(r.iter_mut()).enumerate() {
                let row = first + k;
                let (softplus, p) = softplus_sigmoid(*zk);
                let si = self.weight(row);
                part.loss += si * (softplus - self.y[row] * zk);
                *rk = si * (p - self.y[row]);
            }
            part.gb += sum4(r);
            for (gw, x) in part.gw.iter_mut().zip(&tile) {
                *gw += dot4(r, x);
            }
        }
        part
    }

    /// [`Rows::block_pass`]'s sums with the Hessian's, over the tile of
    /// rows from `start` whose decision values are `z` and inputs' values
    /// `tile`; `cells` holds a group's rows side by side.
    fn tile_system(
        &self,
        c: f64,
        z: &[f64],
        start: usize,
        tile: &[&[f64]],
        cells: &mut [f64],
        part: &mut Part,
    ) {
        let d = tile.len();
        let end = start + z.len();
        let mut i = start;
        while i < end {
            let n = GROUP.min(end - i);
            // The group's rows, residuals and curvatures (a short last
            // group is padded with zero-weight copies of its last row).
            let at: [usize; GROUP] = std::array::from_fn(|k| i - start + k.min(n - 1));
            for (j, x) in tile.iter().enumerate() {
                for (k, &a) in at.iter().enumerate() {
                    cells[k * d + j] = x[a];
                }
            }
            let x: [&[f64]; GROUP] = std::array::from_fn(|k| &cells[k * d..(k + 1) * d]);
            let (mut r, mut ci) = ([0.0; GROUP], [0.0; GROUP]);
            for k in 0..n {
                let row = i + k;
                let zk = z[row - start];
                let (softplus, p) = softplus_sigmoid(zk);
                let si = self.weight(row);
                part.loss += si * (softplus - self.y[row] * zk);
                r[k] = si * (p - self.y[row]);
                ci[k] = c * si * p * (1.0 - p);
            }
            part.gb += r.iter().sum::<f64>();
            part.hbb += ci.iter().sum::<f64>();
            for j in 0..d {
                let a: [f64; GROUP] = std::array::from_fn(|k| ci[k] * x[k][j]);
                part.gw[j] += (0..GROUP).map(|k| r[k] * x[k][j]).sum::<f64>();
                part.hb[j] += a.iter().sum::<f64>();
                let cells = &mut part.hw[j * d + j..(j + 1) * d];
                let [x0, x1, x2, x3] = [&x[0][j..], &x[1][j..], &x[2][j..], &x[3][j..]];
                for ((((h, v0), v1), v2), v3) in cells.iter_mut().zip(x0).zip(x1).zip(x2).zip(x3) {
                    *h += (a[0] * v0 + a[1] * v1) + (a[2] * v2 + a[3] * v3);
                }
            }
            i += n;
        }
    }
}

/// `Σ aᵢ bᵢ` as four interleaved sums added in a fixed order: the
/// additions do not wait on one another, and the result does not depend
/// on anything but the values.
fn dot4(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0; 4];
    for (x, y) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for l in 0..4 {
            s[l] += x[l] * y[l];
        }
    }
    let tail = n - n % 4;
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in a[tail..].iter().zip(&b[tail..]) {
        t += x * y;
    }
    t
}

/// `Σ aᵢ` as [`dot4`] sums.
fn sum4(a: &[f64]) -> f64 {
    let mut s = [0.0; 4];
    for x in a.chunks_exact(4) {
        for l in 0..4 {
            s[l] += x[l];
        }
    }
    let tail = a.len() - a.len() % 4;
    a[tail..]
        .iter()
        .fold((s[0] + s[1]) + (s[2] + s[3]), |t, x| t + x)
}

/// Rows per tile of [`Rows::block_pass`].
const TILE: usize = 1024;

/// The objective at a point, with its gradient and Hessian there.
struct Point {
    f: f64,
    g: Array1<f64>,
    /// When the pass summed it.
    h: Option<Array2<f64>>,
}

/// Rows per update in [`Rows::tile_system`].
const GROUP: usize = 4;

/// Sums over rows for [`Rows::pass`] (see [`Rows::block_pass`]).
struct Part {
    loss: f64,
    gw: Vec<f64>,
    gb: f64,
    /// `d × d`, row-major; only the upper triangle (`k >= j`) is summed.
    hw: Vec<f64>,
    hb: Vec<f64>,
    hbb: f64,
}

impl Part {
    fn new(d: usize) -> Part {
        Part {
            loss: 0.0,
            gw: vec![0.0; d],
            gb: 0.0,
            hw: vec![0.0; d * d],
            hb: vec![0.0; d],
            hbb: 0.0,
        }
    }

    fn add(&mut self, other: &Part) {
        let pairs = [
            (&mut self.gw, &other.gw),
            (&mut self.hw, &other.hw),
            (&mut self.hb, &other.hb),
        ];
        for (mine, theirs) in pairs {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        self.loss += other.loss;
        self.gb += other.gb;
        self.hbb += other.hbb;
    }
}

/// Solves the symmetric positive definite system `h δ = g`.
fn solve(h: Array2<f64>, g: &Array1<f64>) -> Result<Array1<f64>, FitError> {
    use linfa_linalg::cholesky::SolveC;
    let mut h = h;
    let rhs = g.clone().insert_axis(Axis(1));
    match h.solvec(&rhs) {
        Ok(d) => Ok(d.column(0).to_owned()),
        Err(e) => Err(FitError::Data(format!(
            "logistic regression did not fit: its Hessian could not be factored ({e})"
        ))),
    }
}

/// Fits `y` (0 or 1 per row) on `x`, each row's loss weighted by
/// `sample_weight` (scikit-learn's `sample_weight`; `class_weight` becomes
/// one weight per row).
pub fn fit(
    x: &Array2<f64>,
    y: &[f64],
    sample_weight: Option<&[f64]>,
    c: f64,
    intercept: bool,
    max_iter: usize,
) -> Result<Logistic, FitError> {
    let (n, d) = x.dim();
    // The transpose in row order is `x` in column order: borrowed when `x`
    // is laid out so, else copied once.
    let t = x.t();
    let xt = t.as_standard_layout();
    let cells = xt
        .as_slice()
        .ok_or_else(|| FitError::Internal("a design matrix not in column order".into()))?;
    let columns: Vec<&[f64]> = if n == 0 {
        vec![&[][..]; d]
    } else {
        cells.chunks_exact(n).collect()
    };
    fit_rows(
        &columns,
        None,
        y,
        sample_weight,
        c,
        intercept,
        max_iter,
        WARM_ROWS,
    )
}

/// As [`fit`], reading the rows `rows` of the inputs' columns (one slice
/// per input, every data row's values) instead of a design matrix: the
/// same sums in the same order as [`fit`] on the matrix of those rows.
pub fn fit_columns(
    columns: &[&[f64]],
    rows: &[usize],
    y: &[f64],
    sample_weight: Option<&[f64]>,
    c: f64,
    intercept: bool,
    max_iter: usize,
) -> Result<Logistic, FitError> {
    let height = columns.iter().map(|c| c.len()).min().unwrap_or(usize::MAX);
    if rows.iter().any(|&i| i >= height) {
        return Err(FitError::Internal(
            "a training row beyond the inputs' rows".into(),
        ));
    }
    fit_rows(
        columns,
        Some(rows),
        y,
        sample_weight,
        c,
        intercept,
        max_iter,
        WARM_ROWS,
    )
}

/// The fit of [`fit`] and [`fit_columns`]; with more than 4 ×
/// `warm_rows` rows, it starts from a sample's fit.
#[allow(clippy::too_many_arguments)]
fn fit_rows(
    columns: &[&[f64]],
    rows: Option<&[usize]>,
    y: &[f64],
    sample_weight: Option<&[f64]>,
    c: f64,
    intercept: bool,
    max_iter: usize,
    warm_rows: usize,
) -> Result<Logistic, FitError> {
    let (n, d) = (y.len(), columns.len());
    let fit_rows = rows.map_or_else(|| columns.first().map_or(n, |c| c.len()), <[usize]>::len);
    if fit_rows != n || sample_weight.is_some_and(|s| s.len() != n) {
        return Err(FitError::Internal(format!(
            "logistic regression given {fit_rows} rows, {n} targets and {} weights",
            sample_weight.map_or(n, <[f64]>::len)
        )));
    }
    let blocks = |n: usize| -> Vec<(usize, usize)> {
        (0..n.div_ceil(BLOCK))
            .map(|k| (k * BLOCK, ((k + 1) * BLOCK).min(n)))
            .collect()
    };
    let all = Rows {
        columns: columns.to_vec(),
        rows,
        y,
        s: sample_weight,
        blocks: blocks(n),
    };
    // Start from the intercept-only optimum (the weighted log-odds of the
    // positive class): fewer of Newton's first steps overshoot.
    let b = if intercept {
        let (pos, total) = (0..n).fold((0.0, 0.0), |(p, t), i| {
            let s = all.weight(i);
            (p + y[i] * s, t + s)
        });
        let share = (pos / total.max(f64::MIN_POSITIVE)).clamp(1e-12, 1.0 - 1e-12);
        (share / (1.0 - share)).ln()
    } else {
        0.0
    };
    let mut start = (Array1::<f64>::zeros(d), b);
    // Many rows: an evenly spread sample of them (its objective's C scaled
    // by the rows each stands for) gives the start, its minimum (to a
    // change of 1e-6 of its objective: the sample is further than that
    // from the whole), in a few passes at a fraction of the cost, and
    // then each step's Hessian: the
    // steps on every row use the whole objective and its exact gradient,
    // so they stop at its minimum by the same test, each a pass without
    // the Hessian's sums (see [`newton`]).
    let every = n / warm_rows.max(1);
    let picked: Vec<usize> = if every >= 4 {
        (0..n).step_by(every).collect()
    } else {
        vec![]
    };
    let sub_rows: Vec<usize> = picked.iter().map(|&k| all.at(k)).collect();
    let sub_y: Vec<f64> = picked.iter().map(|&k| y[k]).collect();
    let sub_s: Option<Vec<f64>> = sample_weight.map(|s| picked.iter().map(|&k| s[k]).collect());
    // The sample's values copied out, column by column: its passes then
    // read contiguous values, not every so many rows of the data.
    let sub_columns: Vec<Vec<f64>> = columns
        .iter()
        .map(|col| sub_rows.iter().map(|&i| col[i]).collect())
        .collect();
    let sample = Rows {
        columns: sub_columns.iter().map(Vec::as_slice).collect(),
        rows: None,
        y: &sub_y,
        s: sub_s.as_deref(),
        blocks: blocks(picked.len()),
    };
    let scaled = c * n as f64 / picked.len().max(1) as f64;
    let sampled = (!picked.is_empty()).then_some((&sample, scaled));
    if let Some((sample, scaled)) = sampled {
        // A sample that does not fit (steps not finite) only leaves the
        // start where it was.
        if let Ok(near) = newton(
            sample,
            scaled,
            start.clone(),
            intercept,
            max_iter,
            1e-6,
            None,
        ) {
            if near.1.is_finite() && near.0.iter().all(|v| v.is_finite()) {
                start = near;
            }
        }
    }
    let (weights, intercept) = newton(&all, c, start, intercept, max_iter, 1e-10, sampled)?;
    Ok(Logistic { weights, intercept })
}

/// Rows in the sample a large fit starts from (see [`fit_rows`]).
const WARM_ROWS: usize = 50_000;

/// Newton's method from `(w, b)` on `rows`' objective, until a step would
/// change the objective by at most `tol` of it (or `max_iter` steps).
/// With `sampled` (a sample of the rows and its scaled C), each step's
/// Hessian is the sample's, at the step's point, and the passes over
/// every row sum the objective and its gradient only: the gradient is
/// exact, so the steps still go to the minimum and stop by the same test,
/// each removing all but a small share of the distance left (the sample's
/// Hessian is close to the whole one). Should a step remove less than
/// three quarters of it, the remaining steps use the whole Hessian.
fn newton(
    rows: &Rows,
    c: f64,
    (mut w, mut b): (Array1<f64>, f64),
    intercept: bool,
    max_iter: usize,
    tol: f64,
    mut sampled: Option<(&Rows, f64)>,
) -> Result<(Array1<f64>, f64), FitError> {
    let d = w.len();
    let mut at = rows.pass(c, &w, b, intercept, sampled.is_none());
    let mut last_decrease = f64::INFINITY;
    for _ in 0..max_iter.max(1) {
        let h = match (at.h.take(), sampled) {
            (Some(h), _) => Some(h),
            (None, Some((sample, scaled))) => sample.pass(scaled, &w, b, intercept, true).h,
            (None, None) => rows.pass(c, &w, b, intercept, true).h,
        }
        .ok_or_else(|| FitError::Internal("a pass without the Hessian asked of it".into()))?;
        let delta = solve(h, &at.g)?;
        let decrease = at.g.dot(&delta);
        if !decrease.is_finite() {
            return Err(FitError::Data(
                "logistic regression did not fit: its steps are not finite numbers (inputs too large? scale them)".into(),
            ));
        }
        // The step would change the objective by less than `tol` of it
        // (1e-10 for the fit): the step is then exact to the square of
        // its size (or to a small share of it, with a sample's Hessian);
        // take it whole and stop (a line search and another iteration
        // would move the weights by less than rounding).
        // A sample's Hessian leaves a small share of the distance after a
        // step, not its square: such steps go on to a hundredth of `tol`
        // (cheap passes), so the fit stops as close to the minimum.
        let tol = if sampled.is_some() { tol * 1e-2 } else { tol };
        if decrease <= tol * at.f.abs().max(1.0) {
            w.zip_mut_with(&delta.slice_axis(Axis(0), Slice::from(..d)), |w, s| *w -= s);
            if intercept {
                b -= delta[d];
            }
            break;
        }
        if sampled.is_some() && decrease > 0.25 * last_decrease {
            sampled = None;
        }
        last_decrease = decrease;
        // Backtracking line search on the objective. A sample's step that
        // must be cut to a quarter is a sample that misjudges the rows
        // (one whose rows weigh nothing, say): the whole Hessian takes
        // over from the same point instead.
        let mut t = 1.0;
        let (mut w_next, mut b_next, mut next);
        loop {
            w_next = &w - &(delta.slice_axis(Axis(0), Slice::from(..d)).to_owned() * t);
            b_next = if intercept { b - t * delta[d] } else { 0.0 };
            next = rows.pass(c, &w_next, b_next, intercept, sampled.is_none());
            if next.f <= at.f - 1e-4 * t * decrease || t < 1e-12 {
                break;
            }
            if sampled.is_some() && t <= 0.25 {
                break;
            }
            t *= 0.5;
        }
        if sampled.is_some() && next.f > at.f - 1e-4 * t * decrease {
            sampled = None;
            continue;
        }
        let step = delta.iter().fold(0.0f64, |a, v| a.max((t * v).abs()));
        let scale = w_next.iter().fold(b_next.abs(), |a, v| a.max(v.abs()));
        w = w_next;
        b = b_next;
        let improved = at.f - next.f;
        at = next;
        if step <= 1e-12 * (1.0 + scale) || improved.abs() <= 1e-15 * at.f.abs().max(1.0) {
            break;
        }
    }
    Ok((w, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_ml::fitted::sigmoid;

    /// At the minimum the gradient vanishes: `w + C Xᵀ(p - y) = 0` and
    /// `Σ (p - y) = 0`.
    #[test]
    fn interleaved_sums_are_the_sums() {
        for n in 0..11 {
            let a: Vec<f64> = (0..n).map(|i| 1.0 + i as f64 * 0.5).collect();
            let b: Vec<f64> = (0..n).map(|i| 3.0 - i as f64).collect();
            let dot: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(dot4(&a, &b), dot, "{n} values");
            assert_eq!(sum4(&a), a.iter().sum::<f64>(), "{n} values");
        }
    }

    #[test]
    fn the_gradient_vanishes_at_the_fit() {
        let mut seed = 7u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 10_000) as f64 / 10_000.0
        };
        // Not a multiple of the rows per update: the last group is short.
        let n = 503;
        let x = Array2::from_shape_fn((n, 3), |_| next() * 4.0 - 2.0);
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let z = 1.5 * x[[i, 0]] - 2.0 * x[[i, 1]] + 0.3;
                f64::from(next() < sigmoid(z))
            })
            .collect();
        let fit = fit(&x, &y, None, 1.0, true, 100).expect("fits");
        let p: Vec<f64> = (0..n)
            .map(|i| sigmoid(x.row(i).dot(&fit.weights) + fit.intercept))
            .collect();
        for j in 0..3 {
            let g: f64 = fit.weights[j] + (0..n).map(|i| x[[i, j]] * (p[i] - y[i])).sum::<f64>();
            assert!(g.abs() < 1e-8, "gradient {j}: {g}");
        }
        let gb: f64 = (0..n).map(|i| p[i] - y[i]).sum();
        assert!(gb.abs() < 1e-8, "intercept gradient {gb}");
        assert!(fit.weights[0] > 0.5 && fit.weights[1] < -0.5);
    }

    /// Reading some rows of the inputs' columns is the same fit, to the
    /// bit, as reading a matrix of those rows (in either layout).
    #[test]
    fn a_fit_on_columns_equals_the_fit_on_the_rows_matrix() {
        let n = 2_000;
        let x = Array2::from_shape_fn((n, 4), |(i, j)| {
            ((i * 31 + j * 17) % 97) as f64 / 50.0 - 1.0
        });
        let rows: Vec<usize> = (0..n).filter(|i| i % 5 != 2).collect();
        let y: Vec<f64> = rows
            .iter()
            .map(|&i| f64::from((x[[i, 0]] - 0.7 * x[[i, 2]] + 0.1 * (i % 7) as f64) > 0.2))
            .collect();
        let s: Vec<f64> = rows.iter().map(|&i| 1.0 + (i % 3) as f64).collect();
        let picked = x.select(Axis(0), &rows);
        let by_rows = fit(&picked, &y, Some(&s), 0.5, true, 100).expect("fits");
        let mut by_column_order = Array2::zeros(ndarray::ShapeBuilder::f(picked.dim()));
        by_column_order.assign(&picked);
        assert!(!by_column_order.is_standard_layout());
        let by_layout = fit(&by_column_order, &y, Some(&s), 0.5, true, 100).expect("fits");
        let t = x.t().as_standard_layout().to_owned();
        let columns: Vec<&[f64]> = t.as_slice().unwrap().chunks_exact(n).collect();
        let by_columns = fit_columns(&columns, &rows, &y, Some(&s), 0.5, true, 100).expect("fits");
        for other in [&by_layout, &by_columns] {
            assert_eq!(other.intercept.to_bits(), by_rows.intercept.to_bits());
            for (a, b) in other.weights.iter().zip(&by_rows.weights) {
                assert_eq!(a.to_bits(), b.to_bits());
            }
        }
        // Rows beyond the columns, or targets that do not match the rows,
        // are refused.
        assert!(fit_columns(&columns, &[n], &[1.0], None, 1.0, true, 10).is_err());
        assert!(fit_columns(&columns, &rows, &y[1..], None, 1.0, true, 10).is_err());
    }

    /// Fits `y` on `x` (rows weighted by `s`) from the intercept-only
    /// start with whole Newton's steps, and from a sample of every 30th row
    /// (at most `max_iter` steps), and asserts both reach the same minimum
    /// (to 1e-9; each fit's own stopping test allows about that).
    fn assert_sample_start_reaches_the_minimum(
        x: &Array2<f64>,
        y: &[f64],
        s: Option<&[f64]>,
        max_iter: usize,
    ) {
        let n = x.nrows();
        let t = x.t().as_standard_layout().to_owned();
        let columns: Vec<&[f64]> = t.as_slice().unwrap().chunks_exact(n).collect();
        let cold = fit_rows(&columns, None, y, s, 2.0, true, 100, usize::MAX).expect("fits");
        let warm = fit_rows(&columns, None, y, s, 2.0, true, max_iter, 1_000).expect("fits");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs());
        assert!(
            close(cold.intercept, warm.intercept),
            "{} vs {}",
            cold.intercept,
            warm.intercept
        );
        for (a, b) in cold.weights.iter().zip(&warm.weights) {
            assert!(close(*a, *b), "{a} vs {b}");
        }
    }

    /// `n` rows of two inputs spread over [-1, 1) and a third from
    /// `third` (or like them), and labels of the first two with `noise`
    /// times a repeating offset.
    fn spread_rows(
        n: usize,
        third: Option<&dyn Fn(usize) -> f64>,
        noise: f64,
    ) -> (Array2<f64>, Vec<f64>) {
        let x = Array2::from_shape_fn((n, 3), |(i, j)| match (j, third) {
            (2, Some(f)) => f(i),
            _ => ((i * 7919 + j * 104_729) % 1_009) as f64 / 500.0 - 1.0,
        });
        let y = (0..n)
            .map(|i| {
                let z = x[[i, 0]] - 0.5 * x[[i, 1]] + noise * ((i % 11) as f64 - 5.0);
                f64::from(
                    z + if third.is_some() {
                        2.0 * x[[i, 2]]
                    } else {
                        0.0
                    } > 0.0,
                )
            })
            .collect();
        (x, y)
    }

    /// Starting from a sample's fit, and taking each step with the
    /// sample's Hessian, changes the path, not where it ends: the same
    /// minimum as whole Newton's steps from the intercept-only start (to
    /// 1e-9; each fit's own stopping test allows about that).
    #[test]
    fn a_fit_started_from_a_sample_reaches_the_same_minimum() {
        let (x, y) = spread_rows(30_000, None, 0.2);
        assert_sample_start_reaches_the_minimum(&x, &y, None, 100);
    }

    /// An input set only in rows the sample (every 30th row) never holds:
    /// the sample's Hessian knows nothing of it, so its steps make little
    /// progress there, and the whole Hessian takes over; the fit reaches
    /// the minimum in as few steps as whole Newton's.
    #[test]
    fn a_sample_blind_to_an_input_hands_over_to_the_whole_hessian() {
        let (x, y) = spread_rows(30_000, Some(&|i| f64::from(i % 30 == 7)), 0.1);
        assert_sample_start_reaches_the_minimum(&x, &y, None, 12);
    }

    /// A sample whose rows all weigh nothing knows nothing of the
    /// objective: its steps are cut short and the whole Hessian takes over
    /// at once, reaching the same minimum in a few steps.
    #[test]
    fn a_sample_of_weightless_rows_hands_over_to_the_whole_hessian() {
        let n = 30_000;
        let (x, y) = spread_rows(n, None, 0.1);
        // Every 30th row, the sample's, weighs 0.
        let s: Vec<f64> = (0..n)
            .map(|i| {
                if i % 30 == 0 {
                    0.0
                } else {
                    1.0 + (i % 3) as f64
                }
            })
            .collect();
        assert_sample_start_reaches_the_minimum(&x, &y, Some(&s), 12);
    }
}
