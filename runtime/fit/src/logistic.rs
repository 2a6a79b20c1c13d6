//! Binary logistic regression by Newton's method, on scikit-learn's
//! objective: `½‖w‖² + C Σᵢ log(1 + exp(-sᵢ (xᵢ·w + b)))` with the intercept
//! `b` not penalised. The objective is strictly convex, so its minimum is
//! unique: Newton's steps (the Hessian solved by Cholesky, a backtracking
//! line search) reach it in a handful of iterations, each one pass over the
//! rows in blocks (memory stays bounded whatever the rows). scikit-learn's
//! L-BFGS stops near the same minimum (its `tol`); this stops at it.

use crate::FitError;
use mlp_ml::fitted::sigmoid;
use ndarray::{Array1, Array2, ArrayView2, Axis, Slice};

/// Rows per block when accumulating the Hessian.
const BLOCK: usize = 65_536;

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

/// The decision values `x·w + b`.
fn decisions(x: &ArrayView2<f64>, w: &Array1<f64>, b: f64) -> Array1<f64> {
    let mut z = x.dot(w);
    z += b;
    z
}

/// The objective at `(w, b)`, each row's loss weighted by `s`.
fn objective(
    x: &ArrayView2<f64>,
    y: &[f64],
    s: &Array1<f64>,
    c: f64,
    w: &Array1<f64>,
    b: f64,
) -> f64 {
    let z = decisions(x, w, b);
    let loss: f64 = z
        .iter()
        .zip(y)
        .zip(s)
        .map(|((z, y), s)| s * (softplus(*z) - y * z))
        .sum();
    0.5 * w.dot(w) + c * loss
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
    let s: Array1<f64> = match sample_weight {
        Some(sw) => Array1::from(sw.to_vec()),
        None => Array1::ones(n),
    };
    let m = d + usize::from(intercept);
    let view = x.view();
    let mut w = Array1::<f64>::zeros(d);
    // Start from the intercept-only optimum (the weighted log-odds of the
    // positive class): fewer of Newton's first steps overshoot.
    let mut b = if intercept {
        let (pos, total) = y
            .iter()
            .zip(&s)
            .fold((0.0, 0.0), |(p, t), (y, s)| (p + y * s, t + s));
        let share = (pos / total.max(f64::MIN_POSITIVE)).clamp(1e-12, 1.0 - 1e-12);
        (share / (1.0 - share)).ln()
    } else {
        0.0
    };
    let mut f = objective(&view, y, &s, c, &w, b);
    for _ in 0..max_iter.max(1) {
        let z = decisions(&view, &w, b);
        let p: Array1<f64> = z.mapv(sigmoid);
        let r: Array1<f64> = p
            .iter()
            .zip(y)
            .zip(&s)
            .map(|((p, y), s)| s * (p - y))
            .collect();
        // Gradient.
        let mut g = Array1::<f64>::zeros(m);
        {
            let gw = x.t().dot(&r) * c + &w;
            g.slice_axis_mut(Axis(0), Slice::from(..d)).assign(&gw);
            if intercept {
                g[d] = c * r.sum();
            }
        }
        // Hessian, in blocks of rows.
        let curv: Array1<f64> = p
            .iter()
            .zip(&s)
            .map(|(p, s)| c * s * p * (1.0 - p))
            .collect();
        // The blocks' products in parallel, added in block order (the same
        // sums as one pass).
        use rayon::prelude::*;
        let parts: Vec<(Array2<f64>, Array1<f64>)> = (0..n.div_ceil(BLOCK))
            .into_par_iter()
            .map(|k| {
                let (start, end) = (k * BLOCK, ((k + 1) * BLOCK).min(n));
                let xb = x.slice_axis(Axis(0), Slice::from(start..end));
                let cb = curv.slice_axis(Axis(0), Slice::from(start..end));
                let scaled = &xb * &cb.view().insert_axis(Axis(1));
                (xb.t().dot(&scaled), scaled.sum_axis(Axis(0)))
            })
            .collect();
        let mut hw = Array2::<f64>::zeros((d, d));
        let mut hb = Array1::<f64>::zeros(d);
        for (pw, pb) in &parts {
            hw += pw;
            hb += pb;
        }
        let mut h = Array2::<f64>::zeros((m, m));
        for i in 0..d {
            for j in 0..d {
                h[[i, j]] = hw[[i, j]];
            }
            h[[i, i]] += 1.0;
        }
        if intercept {
            for j in 0..d {
                h[[j, d]] = hb[j];
                h[[d, j]] = hb[j];
            }
            // Every row predicted with certainty leaves the intercept flat.
            h[[d, d]] = curv.sum().max(1e-12);
        }
        let delta = solve(h, &g)?;
        let decrease = g.dot(&delta);
        if !decrease.is_finite() {
            return Err(FitError::Data(
                "logistic regression did not fit: its steps are not finite numbers (inputs too large? scale them)".into(),
            ));
        }
        // Backtracking line search on the objective.
        let mut t = 1.0;
        let (mut w_next, mut b_next, mut f_next);
        loop {
            w_next = &w - &(delta.slice_axis(Axis(0), Slice::from(..d)).to_owned() * t);
            b_next = if intercept { b - t * delta[d] } else { 0.0 };
            f_next = objective(&view, y, &s, c, &w_next, b_next);
            if f_next <= f - 1e-4 * t * decrease || t < 1e-12 {
                break;
            }
            t *= 0.5;
        }
        let step = delta.iter().fold(0.0f64, |a, v| a.max((t * v).abs()));
        let scale = w_next.iter().fold(b_next.abs(), |a, v| a.max(v.abs()));
        w = w_next;
        b = b_next;
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
        let n = 500;
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
