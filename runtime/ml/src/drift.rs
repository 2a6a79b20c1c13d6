//! Drift statistics: a reference distribution (the training rows, as a
//! bundle stores them) against a current one (new data, or the server's
//! window of served rows).
//!
//! Each function is the textbook or scipy definition, checked against scipy
//! on fixed inputs (`tests/fixtures/drift/`, made by
//! `bench/drift_reference.py`):
//!
//! | statistic | definition | scipy |
//! |---|---|---|
//! | `psi` | Σ (a − e) · ln(a / e) over bins, proportions floored at 1e-4 | (textbook) |
//! | `ks` | sup |F₁ − F₂|, p-value exact (two-sided) | `ks_2samp(method="exact")` |
//! | `wasserstein` | ∫ |F₁ − F₂| | `wasserstein_distance` |
//! | `js` | Jensen-Shannon distance, base 2, over bins | `jensenshannon(p, q, base=2)` |
//! | `chi2` | chi-squared test of homogeneity of two count vectors | `chi2_contingency(correction=False)` |

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// The floor for a bin's proportion in PSI (an empty bin would be infinite).
pub const PSI_FLOOR: f64 = 1e-4;

/// Proportions of counts.
pub fn proportions(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// Population stability index of `actual` against `expected`, both counts
/// (or proportions) over the same bins.
pub fn psi(expected: &[f64], actual: &[f64]) -> f64 {
    let (e, a) = (proportions(expected), proportions(actual));
    e.iter()
        .zip(&a)
        .map(|(e, a)| {
            let (e, a) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors over
/// the same bins.
pub fn js_distance(p: &[f64], q: &[f64]) -> f64 {
    let (p, q) = (proportions(p), proportions(q));
    let kl = |x: &[f64], m: &[f64]| -> f64 {
        x.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, m)| x * (x / m).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
    ((kl(&p, &m) + kl(&q, &m)) / 2.0).max(0.0).sqrt()
}

/// Chi-squared test of homogeneity of two count vectors over the same
/// categories (a 2×k contingency table; categories empty in both are
/// dropped). Returns (statistic, p-value, degrees of freedom).
pub fn chi2(reference: &[f64], current: &[f64]) -> (f64, f64, usize) {
    let cols: Vec<(f64, f64)> = reference
        .iter()
        .zip(current)
        .map(|(a, b)| (*a, *b))
        .filter(|(a, b)| a + b > 0.0)
        .collect();
    let (r1, r2): (f64, f64) = cols
        .iter()
        .fold((0.0, 0.0), |(x, y), (a, b)| (x + a, y + b));
    let n = r1 + r2;
    if cols.len() < 2 || r1 == 0.0 || r2 == 0.0 {
        return (0.0, 1.0, cols.len().saturating_sub(1));
    }
    let mut stat = 0.0;
    for (a, b) in &cols {
        let c = a + b;
        let (ea, eb) = (r1 * c / n, r2 * c / n);
        stat += (a - ea).powi(2) / ea + (b - eb).powi(2) / eb;
    }
    let dof = cols.len() - 1;
    let p = ChiSquared::new(dof as f64)
        .map(|d| d.sf(stat))
        .unwrap_or(f64::NAN);
    (stat, p, dof)
}

/// The two-sample Kolmogorov-Smirnov test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ks {
    pub statistic: f64,
    pub p_value: f64,
}

/// Sorted copy without NaNs.
fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Two-sided two-sample KS test with the exact p-value (the probability,
/// under the null, that a random merge of the samples reaches a distance at
/// least the one observed), as scipy's `ks_2samp(method="exact")`.
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Ks {
    let (a, b) = (sorted(a), sorted(b));
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return Ks {
            statistic: f64::NAN,
            p_value: f64::NAN,
        };
    }
    // D as an integer: max |i·n2 − j·n1| over the merged order, evaluated
    // after each run of equal values.
    let (mut i, mut j) = (0usize, 0usize);
    let mut dmax: u64 = 0;
    while i < n1 || j < n2 {
        let x = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.min(*y),
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        while i < n1 && a[i] <= x {
            i += 1;
        }
        while j < n2 && b[j] <= x {
            j += 1;
        }
        let d = (i as u64 * n2 as u64).abs_diff(j as u64 * n1 as u64);
        dmax = dmax.max(d);
    }
    let statistic = dmax as f64 / (n1 as f64 * n2 as f64);
    Ks {
        statistic,
        p_value: ks_exact_p(n1 as u64, n2 as u64, dmax),
    }
}

/// P(max |x·n − y·m| ≥ d) over uniformly random monotone lattice paths from
/// (0, 0) to (m, n), computed as 1 − P(staying strictly inside the band).
/// The path counts are kept normalised by the binomial coefficient, so the
/// recurrence stays in [0, 1]: P(x, y) = x/(x+y)·P(x−1, y) + y/(x+y)·P(x, y−1).
fn ks_exact_p(m: u64, n: u64, d: u64) -> f64 {
    if d == 0 {
        return 1.0;
    }
    // Work in units of g: |x·n/g − y·m/g| < d/g.
    let g = gcd(m, n);
    let (mg, ng, h) = (m / g, n / g, d / g);
    let inside = |x: u64, y: u64| (x * ng).abs_diff(y * mg) < h;
    let cols = n as usize + 1;
    let mut prev = vec![0.0f64; cols];
    let mut cur = vec![0.0f64; cols];
    // x = 0: P(0, y) = 1 while inside.
    for y in 0..cols {
        prev[y] = if inside(0, y as u64) && (y == 0 || prev[y - 1] > 0.0) {
            1.0
        } else {
            0.0
        };
    }
    for x in 1..=m {
        // Only y within the band can be inside: |x·ng − y·mg| < h.
        let lo = (x * ng).saturating_sub(h) / mg;
        let hi = ((x * ng + h) / mg + 1).min(n);
        cur[..cols].fill(0.0);
        for y in lo..=hi {
            if !inside(x, y) {
                continue;
            }
            let yu = y as usize;
            let left = prev[yu];
            let down = if y > 0 { cur[yu - 1] } else { 0.0 };
            let (xf, yf) = (x as f64, y as f64);
            cur[yu] = (xf * left + yf * down) / (xf + yf);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (1.0 - prev[n as usize]).clamp(0.0, 1.0)
}

/// First Wasserstein distance between two samples: ∫ |F₁(x) − F₂(x)| dx.
pub fn wasserstein(a: &[f64], b: &[f64]) -> f64 {
    let (a, b) = (sorted(a), sorted(b));
    if a.is_empty() || b.is_empty() {
        return f64::NAN;
    }
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut total = 0.0;
    for w in all.windows(2) {
        let x = w[0];
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        total += (i as f64 / n1 - j as f64 / n2).abs() * (w[1] - w[0]);
    }
    total
}

/// Counts of `values` in the bins cut at `edges` (sorted, strictly
/// increasing): (−∞, e₀], (e₀, e₁], …, (eₖ, ∞).
pub fn bin_counts(edges: &[f64], values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() + 1];
    for v in values.filter(|v| !v.is_nan()) {
        let k = edges.partition_point(|e| *e < v);
        counts[k] += 1.0;
    }
    counts
}

/// Bin edges from a column's deciles: the interior deciles, deduplicated.
pub fn decile_edges(deciles: &[f64]) -> Vec<f64> {
    let mut e: Vec<f64> = deciles
        .iter()
        .skip(1)
        .take(deciles.len().saturating_sub(2))
        .copied()
        .collect();
    e.dedup();
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_samples_do_not_drift() {
        let a: Vec<f64> = (0..100).map(f64::from).collect();
        let k = ks_2samp(&a, &a);
        assert_eq!(k.statistic, 0.0);
        assert_eq!(k.p_value, 1.0);
        assert_eq!(wasserstein(&a, &a), 0.0);
        assert_eq!(psi(&[10.0, 20.0], &[1.0, 2.0]), 0.0);
        assert_eq!(js_distance(&[1.0, 1.0], &[2.0, 2.0]), 0.0);
    }

    #[test]
    fn disjoint_samples_drift_completely() {
        let a: Vec<f64> = (0..20).map(f64::from).collect();
        let b: Vec<f64> = (100..120).map(f64::from).collect();
        let k = ks_2samp(&a, &b);
        assert_eq!(k.statistic, 1.0);
        // Only 2 of C(40, 20) paths reach distance 1.
        assert!(k.p_value < 1e-10 && k.p_value > 0.0, "{}", k.p_value);
        assert!((wasserstein(&a, &b) - 100.0).abs() < 1e-12);
        assert!((js_distance(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
