//! Binary logistic regression by Newton's method, on scikit-learn's
//! objective: `½‖w‖² + C Σᵢ log(1 + exp(-sᵢ (xᵢ·w + b)))` with the intercept
//! `b` not penalised. The objective is strictly convex, so its minimum is
//! unique: Newton's steps (the Hessian solved by Cholesky, a backtracking
//! line search) reach it in a handful of iterations. scikit-learn's L-BFGS
//! stops near the same minimum (its `tol`); this stops at it.
//!
//! Each iteration is two passes over the rows, in blocks on every core: one
//! computes the gradient and the Hessian together from the decision values
//! the last objective left, the other the objective (and the decision
//! values) at a candidate step. The blocks' sums are added in block order,
//! so the fit does not depend on the number of threads; each thread reuses
//! one scaled copy of a block, so memory stays bounded whatever the rows.

use crate::FitError;
use mlp_ml::fitted::sigmoid;
use ndarray::{Array1, Array2, ArrayView2, Axis, Slice};
use rayon::prelude::*;

/// Rows per block.
const BLOCK: usize = 32_768;

/// The fitted weights and intercept (0 without one).
pub struct Logistic {
    pub weights: Array1<f64>,
    pub intercept: f64,
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// The rows, the 0/1 targets and the rows' weights, in blocks.
struct Rows<'a> {
    x: ArrayView2<'a, f64>,
    /// `x`'s cells, row after row.
    cells: &'a [f64],
    y: &'a [f64],
    /// Each row's weight; 1 for every row when `None`.
    s: Option<&'a [f64]>,
    blocks: Vec<(usize, usize)>,
}

impl Rows<'_> {
    fn weight(&self, i: usize) -> f64 {
        self.s.map_or(1.0, |s| s[i])
    }

    /// Fills `z` with `x·w + b` and returns the objective there.
    fn objective(&self, c: f64, w: &Array1<f64>, b: f64, z: &mut [f64]) -> f64 {
        let mut pieces: Vec<(usize, &mut [f64])> = vec![];
        let mut rest = z;
        for &(start, end) in &self.blocks {
            let (head, tail) = rest.split_at_mut(end - start);
            pieces.push((start, head));
            rest = tail;
        }
        let losses: Vec<f64> = pieces
            .into_par_iter()
            .map(|(start, zb)| {
                let end = start + zb.len();
                let xb = self.x.slice_axis(Axis(0), Slice::from(start..end));
                let mut out = ndarray::ArrayViewMut1::from(&mut *zb);
                ndarray::linalg::general_mat_vec_mul(1.0, &xb, w, 0.0, &mut out);
                let mut loss = 0.0;
                for (k, z) in zb.iter_mut().enumerate() {
                    *z += b;
                    let i = start + k;
                    loss += self.weight(i) * (softplus(*z) - self.y[i] * *z);
                }
                loss
            })
            .collect();
        0.5 * w.dot(w) + c * losses.iter().sum::<f64>()
    }

    /// The gradient and the Hessian at the decision values `z` (the weights
    /// `w` for the penalty's part), over `m` = inputs (+ 1 intercept).
    fn newton_system(
        &self,
        c: f64,
        w: &Array1<f64>,
        z: &[f64],
        intercept: bool,
    ) -> (Array1<f64>, Array2<f64>) {
        let d = self.x.ncols();
        let parts: Vec<Part> = self
            .blocks
            .par_iter()
            .map(|&(start, end)| self.block_system(c, z, start, end))
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
        (g, h)
    }

    /// One block's sums for [`Rows::newton_system`]: `Σ rᵢ xᵢ`, `Σ rᵢ`,
    /// the upper triangle of `Σ cᵢ xᵢ xᵢᵀ`, `Σ cᵢ xᵢ` and `Σ cᵢ`, with
    /// `rᵢ = sᵢ (pᵢ - yᵢ)` and `cᵢ = C sᵢ pᵢ (1 - pᵢ)`. Rows are taken
    /// [`GROUP`] at a time, so each cell of the triangle is loaded and
    /// stored once per group (a symmetric rank-`GROUP` update: half the
    /// work of the whole product, and no scaled copy of the rows).
    fn block_system(&self, c: f64, z: &[f64], start: usize, end: usize) -> Part {
        let d = self.x.ncols();
        let mut part = Part::new(d);
        let mut i = start;
        while i < end {
            let n = GROUP.min(end - i);
            // The group's rows, residuals and curvatures (a short last
            // group is padded with zero-weight copies of its first row).
            let mut x: [&[f64]; GROUP] = [&[]; GROUP];
            let (mut r, mut ci) = ([0.0; GROUP], [0.0; GROUP]);
            for k in 0..GROUP {
                let row = i + k.min(n - 1);
                x[k] = &self.cells[row * d..(row + 1) * d];
                if k < n {
                    let p = sigmoid(z[row]);
                    let si = self.weight(row);
                    r[k] = si * (p - self.y[row]);
                    ci[k] = c * si * p * (1.0 - p);
                }
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
        part
    }
}

/// Rows per update in [`Rows::block_system`].
const GROUP: usize = 4;

/// Sums over rows for Newton's system (see [`Rows::block_system`]).
struct Part {
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
    let x = x.as_standard_layout();
    let rows = Rows {
        x: x.view(),
        cells: x
            .as_slice()
            .ok_or_else(|| FitError::Data("a design matrix not in row order".into()))?,
        y,
        s: sample_weight,
        blocks: (0..n.div_ceil(BLOCK))
            .map(|k| (k * BLOCK, ((k + 1) * BLOCK).min(n)))
            .collect(),
    };
    let mut w = Array1::<f64>::zeros(d);
    // Start from the intercept-only optimum (the weighted log-odds of the
    // positive class): fewer of Newton's first steps overshoot.
    let mut b = if intercept {
        let (pos, total) = (0..n).fold((0.0, 0.0), |(p, t), i| {
            let s = rows.weight(i);
            (p + y[i] * s, t + s)
        });
        let share = (pos / total.max(f64::MIN_POSITIVE)).clamp(1e-12, 1.0 - 1e-12);
        (share / (1.0 - share)).ln()
    } else {
        0.0
    };
    // The decision values at the current weights, and at a candidate step.
    let mut z = vec![0.0; n];
    let mut z_next = vec![0.0; n];
    let mut f = rows.objective(c, &w, b, &mut z);
    for _ in 0..max_iter.max(1) {
        let (g, h) = rows.newton_system(c, &w, &z, intercept);
        let delta = solve(h, &g)?;
        let decrease = g.dot(&delta);
        if !decrease.is_finite() {
            return Err(FitError::Data(
                "logistic regression did not fit: its steps are not finite numbers (inputs too large? scale them)".into(),
            ));
        }
        // The step would change the objective by less than 1e-10 of it:
        // Newton's step is then exact to the square of its size; take it
        // whole and stop (a line search and another iteration would move
        // the weights by less than rounding).
        if decrease <= 1e-10 * f.abs().max(1.0) {
            w.zip_mut_with(&delta.slice_axis(Axis(0), Slice::from(..d)), |w, s| *w -= s);
            if intercept {
                b -= delta[d];
            }
            break;
        }
        // Backtracking line search on the objective.
        let mut t = 1.0;
        let (mut w_next, mut b_next, mut f_next);
        loop {
            w_next = &w - &(delta.slice_axis(Axis(0), Slice::from(..d)).to_owned() * t);
            b_next = if intercept { b - t * delta[d] } else { 0.0 };
            f_next = rows.objective(c, &w_next, b_next, &mut z_next);
            if f_next <= f - 1e-4 * t * decrease || t < 1e-12 {
                break;
            }
            t *= 0.5;
        }
        let step = delta.iter().fold(0.0f64, |a, v| a.max((t * v).abs()));
        let scale = w_next.iter().fold(b_next.abs(), |a, v| a.max(v.abs()));
        w = w_next;
        b = b_next;
        std::mem::swap(&mut z, &mut z_next);
        let improved = f - f_next;
        f = f_next;
        if step <= 1e-12 * (1.0 + scale) || improved.abs() <= 1e-15 * f.abs().max(1.0) {
            break;
        }
    }
    Ok(Logistic {
        weights: w,
        intercept: b,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At the minimum the gradient vanishes: `w + C Xᵀ(p - y) = 0` and
    /// `Σ (p - y) = 0`.
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
}
