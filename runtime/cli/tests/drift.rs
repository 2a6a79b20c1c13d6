//! Drift statistics equal scipy's on fixed inputs
//! (`tests/fixtures/drift/reference.json`, made by
//! `bench/drift_reference.py`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use mlp_ml::drift;

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(name: &str, what: &str, got: f64, want: f64, rel: f64) {
    let ok = (got - want).abs() <= rel * want.abs().max(1e-300) || (got - want).abs() < 1e-15;
    assert!(ok, "{name} {what}: mlp {got:e}, scipy {want:e}");
}

fn reference() -> serde_json::Value {
    let p = common::repo().join("tests/fixtures/drift/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn ks_and_wasserstein_equal_scipy() {
    let r = reference();
    for s in r["samples"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let (a, b) = (floats(&s["a"]), floats(&s["b"]));
        let ks = drift::ks_2samp(&a, &b);
        close(
            name,
            "KS statistic",
            ks.statistic,
            s["ks_statistic"].as_f64().unwrap(),
            1e-12,
        );
        close(
            name,
            "KS p-value",
            ks.p_value,
            s["ks_p_value"].as_f64().unwrap(),
            1e-9,
        );
        close(
            name,
            "Wasserstein",
            drift::wasserstein(&a, &b),
            s["wasserstein"].as_f64().unwrap(),
            1e-9,
        );
    }
}

#[test]
fn psi_js_and_chi2_equal_the_reference() {
    let r = reference();
    for s in r["binned"].as_array().unwrap() {
        let name = s["name"].as_str().unwrap();
        let (e, a) = (floats(&s["expected"]), floats(&s["actual"]));
        close(
            name,
            "PSI",
            drift::psi(&e, &a),
            s["psi"].as_f64().unwrap(),
            1e-12,
        );
        close(
            name,
            "JS",
            drift::js_distance(&e, &a),
            s["js"].as_f64().unwrap(),
            1e-12,
        );
        let (stat, p, dof) = drift::chi2(&e, &a);
        close(
            name,
            "chi2",
            stat,
            s["chi2_statistic"].as_f64().unwrap(),
            1e-12,
        );
        close(name, "chi2 p", p, s["chi2_p_value"].as_f64().unwrap(), 1e-8);
        assert_eq!(dof as u64, s["chi2_dof"].as_u64().unwrap(), "{name}");
    }
}
