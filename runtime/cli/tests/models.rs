//! Models end to end: training matches scikit-learn, tuning records its
//! trials, gates stop a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cache_entry, deployed_project, houses_csv, mlp, repo, text};

use std::path::{Path, PathBuf};
use std::process::Command;

fn copy_dir(from: &Path, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    dir
}

/// A JSON file of a stage's cache entry.
fn entry_json(dir: &Path, stage: &str, file: &str) -> serde_json::Value {
    let p = cache_entry(dir, stage).join(file);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

fn check_against(dir: &Path, sk: &serde_json::Value) {
    for (stage, name) in [
        ("model.ols", "ols"),
        ("model.ridge_m", "ridge"),
        ("model.lasso_m", "lasso"),
        ("model.enet", "enet"),
    ] {
        let m = entry_json(dir, stage, "model.json");
        let w = m["fitted"]["weights"].as_array().unwrap();
        let coef = sk[name]["coef"].as_array().unwrap();
        for (a, b) in w.iter().zip(coef) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!(
                close(a, b, 1e-6),
                "{name}: coefficient {a} vs scikit-learn {b}"
            );
        }
        let (a, b) = (
            m["fitted"]["intercept"].as_f64().unwrap(),
            sk[name]["intercept"].as_f64().unwrap(),
        );
        assert!(close(a, b, 1e-6), "{name}: intercept {a} vs {b}");
        let model = stage.trim_start_matches("model.");
        let report = entry_json(dir, &format!("evaluate.{model}.test"), "report.json");
        let (a, b) = (
            report["metrics"]["rmse"].as_f64().unwrap(),
            sk[name]["rmse"].as_f64().unwrap(),
        );
        assert!(close(a, b, 1e-6), "{name}: rmse {a} vs {b}");
    }
    // Tree probabilities are the class shares of the training rows in a
    // leaf (a forest averages them; AdaBoost is SAMME), as scikit-learn's.
    for name in ["tree", "forest", "boost"] {
        let report = entry_json(dir, &format!("evaluate.{name}.test"), "report.json");
        for metric in ["log_loss", "roc_auc"] {
            let (a, b) = (
                report["metrics"][metric].as_f64().unwrap(),
                sk[name][metric].as_f64().unwrap(),
            );
            assert!(
                close(a, b, 0.02),
                "{name}: {metric} {a} vs scikit-learn {b}"
            );
        }
    }
    // The single tree is the same tree as scikit-learn's: the same
    // probabilities, row by row (with `class_weight = balanced` too: the
    // leaves' weighted class shares).
    for (stage, name) in [
        ("model.tree", "tree"),
        ("model.tree_balanced", "tree_balanced"),
        ("model.tree_sw", "tree_sw"),
    ] {
        let frame = common::cached_frame(dir, stage);
        let part = frame.column("part").unwrap().str().unwrap().clone();
        let proba = frame.column("proba_yes").unwrap().f64().unwrap().clone();
        let ours: Vec<f64> = part
            .iter()
            .zip(proba.iter())
            .filter(|(p, _)| *p == Some("test"))
            .map(|(_, v)| v.unwrap())
            .collect();
        let theirs: Vec<f64> = sk[name]["proba_yes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!(
                (a - b).abs() <= 1e-9,
                "{name}, test row {i}: P(yes) {a} vs {b}"
            );
        }
        // The same tree has the same impurity importances.
        let m = entry_json(dir, stage, "model.json");
        let ours = m["fitted"]["importances"].as_array().unwrap();
        let theirs = sk[name]["importances"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter().zip(theirs) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            assert!((a - b).abs() <= 1e-9, "{name}: importance {a} vs {b}");
        }
    }
    let report = entry_json(dir, "evaluate.logit.test", "report.json");
    let (a, b) = (
        report["metrics"]["accuracy"].as_f64().unwrap(),
        sk["logistic"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() <= 0.005,
        "logistic accuracy {a} vs scikit-learn {b}"
    );
    // The binary logistic regression is solved to the minimum of
    // scikit-learn's objective: the same coefficients (the positive class
    // carries the weights).
    // Gradient boosting grows scikit-learn's HistGradientBoosting trees:
    // test metrics within 1% (not equal: scikit-learn sums gradients in
    // float32, which moves near-tie splits), accuracy within two rows.
    let gbr = entry_json(dir, "evaluate.gbr.test", "report.json");
    for metric in ["rmse", "r2"] {
        let (a, b) = (
            gbr["metrics"][metric].as_f64().unwrap(),
            sk["gbr"][metric].as_f64().unwrap(),
        );
        assert!(close(a, b, 0.01), "gradient_boosting: {metric} {a} vs {b}");
    }
    let gbc = entry_json(dir, "evaluate.gbc.test", "report.json");
    for metric in ["log_loss", "roc_auc"] {
        let (a, b) = (
            gbc["metrics"][metric].as_f64().unwrap(),
            sk["gbc"][metric].as_f64().unwrap(),
        );
        assert!(close(a, b, 0.01), "gradient_boosting: {metric} {a} vs {b}");
    }
    // Weighted by `class_weight = balanced` as scikit-learn's sample
    // weights; by a column (`sample_weight`, with balanced classes too).
    for (evaluate, name, metrics) in [
        (
            "evaluate.gbc_balanced.test",
            "gbc_balanced",
            ["log_loss", "roc_auc"],
        ),
        ("evaluate.gbc_sw.test", "gbc_sw", ["log_loss", "roc_auc"]),
        ("evaluate.gbr_sw.test", "gbr_sw", ["rmse", "r2"]),
        ("evaluate.gbr_l1.test", "gbr_l1", ["mae", "r2"]),
        ("evaluate.gbr_l1_sw.test", "gbr_l1_sw", ["mae", "r2"]),
        // A category input split by its levels (`categorical_features`).
        ("evaluate.gbr_cat.test", "gbr_cat", ["rmse", "r2"]),
        ("evaluate.gbc_cat.test", "gbc_cat", ["log_loss", "roc_auc"]),
    ] {
        let report = entry_json(dir, evaluate, "report.json");
        for metric in metrics {
            let (a, b) = (
                report["metrics"][metric].as_f64().unwrap(),
                sk[name][metric].as_f64().unwrap(),
            );
            assert!(close(a, b, 0.01), "{name}: {metric} {a} vs {b}");
        }
    }
    // Huber's loss has no histogram version in scikit-learn: compared with
    // `GradientBoostingRegressor(loss="huber", max_leaf_nodes=31)`, whose
    // trees split on exact values by Friedman's criterion, within 5%.
    for (evaluate, name) in [
        ("evaluate.gbr_huber.test", "gbr_huber"),
        ("evaluate.gbr_huber_sw.test", "gbr_huber_sw"),
    ] {
        let report = entry_json(dir, evaluate, "report.json");
        for metric in ["rmse", "mae"] {
            let (a, b) = (
                report["metrics"][metric].as_f64().unwrap(),
                sk[name][metric].as_f64().unwrap(),
            );
            assert!(close(a, b, 0.05), "{name}: {metric} {a} vs {b}");
        }
    }
    let rows = gbc["rows"].as_f64().unwrap();
    let (a, b) = (
        gbc["metrics"]["accuracy"].as_f64().unwrap(),
        sk["gbc"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() * rows <= 2.0 + 1e-9,
        "gradient_boosting: accuracy {a} vs {b}"
    );
    // Permutation importance is scikit-learn's definition: the same figures
    // up to the shuffles drawn (ours are seeded, not numpy's), so each mean
    // within four standard errors of scikit-learn's, in the same order.
    for (evaluate, name) in [
        ("evaluate.ols.test", "ols"),
        ("evaluate.logit.test", "logistic"),
    ] {
        let report = entry_json(dir, evaluate, "report.json");
        let ours = report["feature_importance"]["permutation"]["inputs"]
            .as_array()
            .unwrap()
            .clone();
        let theirs = &sk[name]["permutation"];
        let order = |v: Vec<(String, f64)>| {
            let mut v = v;
            v.sort_by(|a, b| b.1.total_cmp(&a.1));
            v.into_iter().map(|(f, _)| f).collect::<Vec<_>>()
        };
        let mut ours_means = vec![];
        let mut theirs_means = vec![];
        for (j, f) in ["x1", "x2", "x3"].iter().enumerate() {
            let o = ours.iter().find(|i| i["feature"] == *f).unwrap();
            let (a, sa) = (
                o["importance_mean"].as_f64().unwrap(),
                o["importance_std"].as_f64().unwrap(),
            );
            let (b, sb) = (
                theirs["mean"][j].as_f64().unwrap(),
                theirs["std"][j].as_f64().unwrap(),
            );
            let se = ((sa * sa + sb * sb) / 5.0).sqrt();
            assert!(
                (a - b).abs() <= 4.0 * se + 1e-3,
                "{name}: permutation importance of {f}: {a} ± {sa} vs scikit-learn {b} ± {sb}"
            );
            ours_means.push((f.to_string(), a));
            theirs_means.push((f.to_string(), b));
        }
        assert_eq!(order(ours_means), order(theirs_means), "{name}");
    }
    // Weighted by `class_weight` (a map, or balanced), the same objective
    // with each row's loss weighted: the same coefficients again.
    for (stage, name) in [
        ("model.logit", "logistic"),
        ("model.logit_weighted", "logistic_weighted"),
        ("model.logit_balanced", "logistic_balanced"),
        ("model.logit_sw", "logistic_sw"),
        ("model.logit_balanced_sw", "logistic_balanced_sw"),
    ] {
        let m = entry_json(dir, stage, "model.json");
        let w: Vec<f64> = m["fitted"]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[1].as_f64().unwrap())
            .collect();
        let coef = sk[name]["coef"].as_array().unwrap();
        assert_eq!(w.len(), coef.len());
        for (a, b) in w.iter().zip(coef) {
            let b = b.as_f64().unwrap();
            assert!(
                close(*a, b, 1e-4),
                "{name}: coefficient {a} vs scikit-learn {b}"
            );
        }
        let (a, b) = (
            m["fitted"]["intercepts"][1].as_f64().unwrap(),
            sk[name]["intercept"].as_f64().unwrap(),
        );
        assert!(close(a, b, 1e-4), "{name}: intercept {a} vs {b}");
    }
}

#[test]
fn linear_models_match_scikit_learn() {
    let fixture = repo().join("tests/fixtures/fidelity");
    let dir = copy_dir(&fixture, "fidelity");
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    // Against the recorded figures (the test runs without Python)...
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("sklearn.json")).unwrap())
            .unwrap();
    check_against(&dir, &recorded);
    // ...and against scikit-learn itself when it is installed.
    let live = Command::new("python3")
        .arg(repo().join("bench/fidelity_sklearn.py"))
        .arg(fixture.join("data.csv"))
        .output();
    match live {
        Ok(o) if o.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            check_against(&dir, &v);
        }
        _ => eprintln!("scikit-learn not available: compared with the recorded figures only"),
    }
}

#[test]
fn tuning_records_every_trial_and_picks_the_best() {
    let dir = copy_dir(&repo().join("examples/cars"), "tuning");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(
        repo().join("examples/cars/data/cars.ndjson"),
        dir.join("data/cars.ndjson"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let trials = entry_json(&dir, "model.mpg_model", "trials.json");
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 3, "alpha = [0.01, 0.1, 1.0]");
    for t in trials {
        assert_eq!(t["fold_scores"].as_array().unwrap().len(), 5, "cv = 5");
    }
    // rmse: the smallest mean wins.
    let best = trials
        .iter()
        .min_by(|a, b| {
            a["mean"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["mean"].as_f64().unwrap())
        })
        .unwrap();
    let model = entry_json(&dir, "model.mpg_model", "model.json");
    assert_eq!(model["params"]["alpha"], best["params"]["alpha"]);
    // The run record keeps the trials too.
    let mut runs: Vec<PathBuf> = std::fs::read_dir(dir.join(".mlp/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.last().unwrap()).unwrap()).unwrap();
    let stage = record["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "model.mpg_model")
        .unwrap();
    assert_eq!(stage["details"]["trials"].as_array().unwrap().len(), 3);
}

#[test]
fn a_failing_gate_stops_the_run_and_nothing_is_deployed() {
    let fixture = repo().join("tests/fixtures/fidelity");
    let dir = copy_dir(&fixture, "gates");
    let p = std::fs::read_to_string(dir.join("pipeline.mlp")).unwrap();
    std::fs::write(
        dir.join("pipeline.mlp"),
        p.replace(
            "evaluate ridge_m on test { metrics rmse }",
            "evaluate ridge_m on test {\n  metrics rmse\n  require r2 >= 0.999\n}\ndeploy ridge_m as \"ridge\"",
        ),
    )
    .unwrap();
    let o = mlp(&dir, &["run", ".", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stage = |id: &str| {
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap()
    };
    let ev = stage("evaluate.ridge_m.test");
    assert_eq!(ev["status"], "failed");
    let err = ev["error"].as_str().unwrap();
    assert!(
        err.contains("failed its gates: r2 >= 0.999 (was 0."),
        "{err}"
    );
    assert_ne!(stage("deploy.ridge")["status"], "ran");
}

#[test]
fn predict_reproduces_the_evaluation_predictions_bit_for_bit() {
    use polars::prelude::*;
    let dir = deployed_project("serve-equality", 800, 3);
    // The model stage's predictions and partitions, by id.
    let frame = common::cached_frame(&dir, "model.price");
    // `mlp cache export` by the model's name (its evaluation, named after
    // it, has no frame) writes the same frame.
    let o = mlp(&dir, &["cache", "export", "price", "--output", "m.parquet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(common::read_parquet(&dir.join("m.parquet")).equals_missing(&frame));
    let test = frame
        .lazy()
        .filter(col("partition").eq(lit("test")))
        .select([col("id"), col("prediction")])
        .collect()
        .unwrap();
    let ids: Vec<i64> = test
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let expected: Vec<f64> = test
        .column("prediction")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert!(ids.len() > 100);
    // The test rows as a request file (the target column left in: ignored).
    let csv = std::fs::read_to_string(dir.join("houses.csv")).unwrap();
    let mut req = String::from(csv.lines().next().unwrap());
    req.push('\n');
    for l in csv.lines().skip(1) {
        let id: i64 = l.split(',').next().unwrap().parse().unwrap();
        if ids.contains(&id) {
            req.push_str(l);
            req.push('\n');
        }
    }
    std::fs::write(dir.join("request.csv"), req).unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price",
            "--input",
            "request.csv",
            "--output",
            "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = CsvReadOptions::default()
        .try_into_reader_with_file_path(Some(dir.join("out.csv")))
        .unwrap()
        .finish()
        .unwrap();
    let got_ids: Vec<i64> = out
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    let got: Vec<f64> = out
        .column("prediction")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(got_ids, ids);
    for (a, b) in got.iter().zip(&expected) {
        assert_eq!(a.to_bits(), b.to_bits(), "served {a} vs evaluated {b}");
    }
}

#[test]
fn predict_reports_rows_failing_the_checks_and_drops_none_silently() {
    let dir = deployed_project("rejects", 400, 5);
    std::fs::write(
        dir.join("req.csv"),
        "id,sold_at,city,sqft,bedrooms\n1,2020-01-15,Austin,1200,2\n2,2020-02-15,Atlantis,900,1\n3,2020-03-15,Boston,-5,2\n4,not-a-date,Denver,1000,3\n",
    )
    .unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price@production",
            "--input",
            "req.csv",
            "--output",
            "out.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("3 rows failed the model's row-level checks"),
        "{}",
        text(&o)
    );
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    let rejected = std::fs::read_to_string(dir.join("out.rejected.csv")).unwrap();
    assert!(rejected.contains("values city in"), "{rejected}");
    assert!(rejected.contains("range sqft 100..50000"), "{rejected}");
    assert!(rejected.contains("is not a valid date"), "{rejected}");
}

#[test]
fn promote_and_rollback_move_aliases_and_keep_history() {
    let dir = deployed_project("registry", 300, 1);
    let v1 = {
        let o = mlp(&dir, &["models", "show", "house-price@production"]);
        assert!(o.status.success(), "{}", text(&o));
        let t = text(&o);
        assert!(t.contains("algorithm:  ridge (regression)"), "{t}");
        // Permutation importances, most important first: price is mostly
        // square feet in these houses.
        let importance = t.lines().find(|l| l.starts_with("importance:")).unwrap();
        assert!(
            importance.starts_with("importance: (permutation, rmse on test) sqft "),
            "{t}"
        );
        // Then the model's own: ridge's coefficients.
        assert!(
            t.lines()
                .any(|l| l.starts_with("            (coefficient) ") && l.contains(" sqft ")),
            "{t}"
        );
        let metrics = t.lines().find(|l| l.starts_with("metrics:")).unwrap();
        // Scores read like the run's: four decimals.
        assert!(
            metrics.split_whitespace().all(|w| !w.contains('.')
                || w.trim_end_matches([',', ';'])
                    .split('.')
                    .nth(1)
                    .unwrap()
                    .len()
                    == 4),
            "{metrics}"
        );
        t.lines()
            .find(|l| l.starts_with("version:"))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    // New data: a new version becomes production.
    std::fs::write(dir.join("houses.csv"), houses_csv(320, 2)).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let show = |spec: &str| {
        let o = mlp(&dir, &["models", "show", spec]);
        text(&o)
    };
    let v2_line = show("house-price@production");
    assert!(!v2_line.contains(&v1), "a new version is production");
    // Rollback moves production back to v1 in one step.
    let o = mlp(&dir, &["models", "rollback", "house-price", "production"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(show("house-price@production").contains(&format!("version:    {v1}")));
    // Promote by a hash prefix; an unknown version is a clear error.
    let o = mlp(
        &dir,
        &["models", "promote", "house-price", &v1[..10], "staging"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = mlp(
        &dir,
        &["models", "promote", "house-price", "deadbeef", "staging"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("has no version or alias `deadbeef`"),
        "{}",
        text(&o)
    );
    // The history keeps every move.
    let history =
        std::fs::read_to_string(dir.join(".mlp/registry/house-price/history.jsonl")).unwrap();
    let actions: Vec<&str> = history
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            match v["action"].as_str().unwrap() {
                "deploy" => "deploy",
                "rollback" => "rollback",
                _ => "promote",
            }
        })
        .collect();
    assert_eq!(actions, ["deploy", "deploy", "rollback", "promote"]);
    let o = mlp(&dir, &["models", "list"]);
    assert!(text(&o).contains("house-price"), "{}", text(&o));
    // The bundle carries what monitoring compares against.
    let bundle: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            dir.join(".mlp/registry/house-price/versions")
                .join(format!("{v1}.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(bundle["monitor"]["drift"][0]["stat"], "psi");
    assert_eq!(bundle["training_stats"]["sqft"]["kind"], "numeric");
    assert_eq!(bundle["training_stats"]["city"]["kind"], "categorical");
}

#[test]
fn unseen_levels_at_serving_encode_as_zeros_or_fail_when_asked() {
    let dir = std::env::temp_dir().join(format!("mlp-models-unseen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("id,color,x,y\n");
    for i in 0..200 {
        let color = ["red", "blue"][i % 2];
        csv.push_str(&format!(
            "{i},{color},{},{}\n",
            i % 17,
            (i % 17) as f64 * 2.0 + (i % 2) as f64
        ));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    let pipeline = |unknown: &str| {
        format!(
            r#"
source d = csv("d.csv") {{
    id    : int
    color : category
    x     : float
    y     : float
}}
split s = d {{ train = 0.8  test = 0.2  key = id }}
transform prep = s {{
    encode color with onehot {unknown}
}}
model m = ridge(prep) {{
    target  = y
    exclude = id
    alpha   = 0.1
}}
evaluate m on test {{ require r2 >= 0.9 }}
deploy m as "m"
"#
        )
    };
    std::fs::write(dir.join("req.csv"), "id,color,x\n1,green,3\n2,red,4\n").unwrap();
    // Default: an unseen level encodes as all zeros.
    std::fs::write(dir.join("p.mlp"), pipeline("")).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join("out.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
    // `unknown = error`: the batch fails naming the level.
    std::fs::write(dir.join("p.mlp"), pipeline("unknown = error")).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out2.csv"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("green"), "{}", text(&o));
    assert!(text(&o).contains("not seen in training"), "{}", text(&o));
}

#[test]
fn predict_reads_and_writes_parquet_and_ndjson() {
    let dir = deployed_project("formats", 300, 9);
    std::fs::write(
        dir.join("req.ndjson"),
        "{\"id\": 1, \"sold_at\": \"2020-01-15\", \"city\": \"Austin\", \"sqft\": 1200.5, \"bedrooms\": 2}\n{\"id\": 2, \"sold_at\": \"2020-02-15\", \"city\": \"Denver\", \"sqft\": 900, \"bedrooms\": null}\n",
    )
    .unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price",
            "--input",
            "req.ndjson",
            "--output",
            "out.parquet",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price",
            "--input",
            "out.parquet",
            "--output",
            "again.ndjson",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("again.ndjson"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["prediction"].as_f64().unwrap() > 0.0);
}

#[test]
fn predict_refuses_an_unknown_format_or_folder_before_writing_anything() {
    let dir = deployed_project("bad-output", 200, 4);
    std::fs::write(
        dir.join("req.csv"),
        "id,sold_at,city,sqft,bedrooms\n1,2020-01-15,Austin,1200.5,2\n",
    )
    .unwrap();
    let predict = |input: &str, output: &str| {
        mlp(
            &dir,
            &[
                "predict",
                "house-price",
                "--input",
                input,
                "--output",
                output,
            ],
        )
    };
    let o = predict("req.csv", "out.xlsx");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("cannot read or write `.xlsx` files; use .csv, .parquet or .ndjson"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("out.xlsx").exists());
    // A folder no file can be made in (even by root) is said before any
    // work, without a temporary file's name.
    #[cfg(target_os = "linux")]
    {
        let o = predict("req.csv", "/proc/out.csv");
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("/proc/out.csv: cannot write a file in the folder `/proc`"),
            "{}",
            text(&o)
        );
        assert!(!text(&o).contains(".mlp-output-"), "{}", text(&o));
    }
    std::fs::create_dir_all(dir.join("rows")).unwrap();
    let o = predict("rows", "out.csv");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`rows` is a folder, not a file"),
        "{}",
        text(&o)
    );
    let o = predict("req.csv", "missing/out.csv");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("the folder `missing` does not exist"),
        "{}",
        text(&o)
    );
    // Columns the model does not read are carried through, rejected rows too.
    std::fs::write(
        dir.join("req2.csv"),
        "customer,id,sold_at,city,sqft,bedrooms,price\nc-1,1,2020-01-15,Austin,1200.5,2,300000\nc-2,2,not-a-date,Austin,900,1,250000\n",
    )
    .unwrap();
    let o = predict("req2.csv", "out2.csv");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out2.csv")).unwrap();
    // The input's columns in its order, the prediction after them.
    assert_eq!(
        out.lines().next().unwrap(),
        "_row,customer,id,sold_at,city,sqft,bedrooms,price,prediction",
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap().starts_with("1,") && out.contains("c-1"),
        "{out}"
    );
    let rejected = std::fs::read_to_string(dir.join("out2.rejected.csv")).unwrap();
    assert_eq!(
        rejected.lines().next().unwrap(),
        "_row,customer,id,sold_at,city,sqft,bedrooms,price,_failed_rules,_kind",
        "{rejected}"
    );
    assert!(rejected.contains("c-2"), "{rejected}");
    // The date that did not parse is shown as the file holds it.
    assert!(
        rejected
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("2,c-2,2,not-a-date,Austin,900,1,250000,"),
        "{rejected}"
    );
    assert!(!rejected.contains("c-1"), "{rejected}");
    // Predicting into the same output again with no rejected row removes
    // the earlier rejected file, which would describe rows it did not reject.
    let o = predict("req.csv", "out2.csv");
    assert!(o.status.success(), "{}", text(&o));
    assert!(!dir.join("out2.rejected.csv").exists());
    assert!(
        text(&o).contains("no row was rejected (the earlier out2.rejected.csv is removed)"),
        "{}",
        text(&o)
    );
    // Nothing but the request and the project's own files is left behind.
    let o = predict("req.csv", "out.csv");
    assert!(o.status.success(), "{}", text(&o));
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(".mlp-output-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    #[cfg(unix)]
    {
        // Created like any file (0o666 less the umask), not private as a
        // temporary file is.
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        std::fs::write(dir.join("plain.txt"), "x").unwrap();
        assert_eq!(mode(&dir.join("out.csv")), mode(&dir.join("plain.txt")));
    }
}

/// A fresh project of one data file and one pipeline.
fn small_project(name: &str, csv: &str, pipeline: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-models-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    std::fs::write(dir.join("p.mlp"), pipeline).unwrap();
    dir
}

/// Runs a project that must fail (exit 1); its output.
fn run_fails(dir: &Path) -> String {
    let o = mlp(dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    text(&o)
}

#[test]
fn tuning_with_more_folds_than_training_rows_fails_and_says_so() {
    let dir = small_project(
        "tiny-cv",
        "a,b\n1,2.0\n2,4.1\n3,5.9\n4,8.2\n",
        r#"source x = csv("d.csv") { a : int  b : float }
split s = x { train = 0.5  test = 0.5  seed = 1 }
model m = ridge(s) {
    target = b
    alpha  = [0.1, 1.0]
    tune { cv = 5  metric = rmse }
}
"#,
    );
    let t = run_fails(&dir);
    assert!(
        t.contains("`tune { cv = 5 }` needs at least 5 rows in `train`"),
        "{t}"
    );
    assert!(t.contains("lower `cv`"), "{t}");
}

#[test]
fn a_category_of_more_levels_than_bins_fails_and_names_it() {
    let rows: String = (0..400)
        .map(|i| format!("{i},c{},{}.5\n", i % 40, i % 7))
        .collect();
    let dir = small_project(
        "many-levels",
        &format!("a,c,y\n{rows}"),
        r#"source x = csv("d.csv") { a : int  c : category  y : float }
split s = x { train = 0.8  test = 0.2  seed = 1 }
model m = gradient_boosting(s) {
    target   = y
    exclude  = a
    max_bins = 16
}
"#,
    );
    let t = run_fails(&dir);
    assert!(
        t.contains("category input `c` has 40 levels in `train`")
            && t.contains("max_bins = 16")
            && t.contains("encode c with onehot"),
        "{t}"
    );
}

#[test]
fn a_classifier_whose_train_holds_one_class_fails_and_names_it() {
    let rows: String = (0..20).map(|i| format!("{i},true\n")).collect();
    let dir = small_project(
        "one-class",
        &format!("a,b\n{rows}"),
        r#"source x = csv("d.csv") { a : int  b : bool }
split s = x { train = 0.5  test = 0.5  seed = 1 }
model m = logistic_regression(s) { target = b }
"#,
    );
    let t = run_fails(&dir);
    assert!(
        t.contains("target `b` has one class only (\"true\") in `train`"),
        "{t}"
    );
}

#[test]
fn a_binary_metric_on_a_target_found_to_be_multiclass_fails_and_says_so() {
    let rows: String = (0..60)
        .map(|i| format!("{i},{}\n", ["a", "b", "c"][i % 3]))
        .collect();
    // `y` declares no levels, so only the data says it has three classes.
    let dir = small_project(
        "auc",
        &format!("x,y\n{rows}"),
        r#"source d = csv("d.csv") { x : int  y : category }
split s = d { train = 0.7  test = 0.3  seed = 1 }
model m = decision_tree(s) { target = y }
evaluate m on test { metrics accuracy, roc_auc }
"#,
    );
    let t = run_fails(&dir);
    assert!(
        t.contains(
            "`roc_auc` is defined for two classes, and target `y` has 3 in `train` (a, b, c)"
        ),
        "{t}"
    );
}

#[test]
fn evaluating_a_partition_the_data_lacks_lists_the_ones_it_has() {
    let rows: String = (0..40)
        .map(|i| {
            let part = if i % 4 == 0 { "test" } else { "train" };
            format!("{i},{}.5,{part}\n", i * 2)
        })
        .collect();
    // With `column = part` the partitions are known only from the data.
    let dir = small_project(
        "no-part",
        &format!("x,y,part\n{rows}"),
        r#"source d = csv("d.csv") { x : int  y : float  part : category }
split s = d { column = part }
model m = ridge(s) { target = y }
evaluate m on tset { metrics rmse }
"#,
    );
    let t = run_fails(&dir);
    assert!(
        t.contains("partition `tset` has no rows to score; the split's partitions with rows: `test`, `train` (did you mean `test`?)"),
        "{t}"
    );
    // The split reports the partitions it found.
    assert!(t.contains("test: 10, train: 30"), "{t}");
}

#[test]
fn linear_regression_beside_a_full_one_hot_gets_the_minimum_norm_solution() {
    // One-hot columns of every level sum to 1, a copy of the intercept: the
    // normal equations are singular. scikit-learn's `lstsq` gives the
    // minimum-norm solution; so must we (it used to be an error).
    let rows: String = (0..40)
        .map(|i| {
            let (k, shift) = if i % 2 == 0 { ("a", 1.0) } else { ("b", -1.0) };
            let x = i as f64 / 4.0;
            format!("{x},{k},{}\n", 2.0 + 3.0 * x + shift)
        })
        .collect();
    let dir = small_project(
        "min-norm",
        &format!("x,k,y\n{rows}"),
        r#"source d = csv("d.csv") { x : float  k : category["a", "b"]  y : float }
split s = d { train = 0.75  test = 0.25  seed = 3 }
transform t = s { encode k with onehot }
model m = linear_regression(t) { target = y }
"#,
    );
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let m = entry_json(&dir, "model.m", "model.json");
    let features: Vec<&str> = m["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    let w: Vec<f64> = m["fitted"]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let weight = |name: &str| w[features.iter().position(|f| *f == name).unwrap()];
    assert!(close(weight("x"), 3.0, 1e-9), "{features:?} {w:?}");
    assert!(close(weight("k_a"), 1.0, 1e-9), "{features:?} {w:?}");
    assert!(close(weight("k_b"), -1.0, 1e-9), "{features:?} {w:?}");
    let b0 = m["fitted"]["intercept"].as_f64().unwrap();
    assert!(close(b0, 2.0, 1e-9), "{b0}");
}

/// How many rows a model stage's output predicts `true`.
fn predicted_true(dir: &Path, stage: &str) -> usize {
    common::cached_frame(dir, stage)
        .column("prediction")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .filter(|l| *l == Some("true"))
        .count()
}

/// Rows of a binary target that is true about a quarter of the time.
fn imbalanced_csv(rows: usize) -> String {
    let mut next = common::uniform(12345u64);
    let mut out = String::from("id,a,b\n");
    for i in 0..rows {
        let a = next() * 4.0 - 2.0;
        let p = 1.0 / (1.0 + (-(1.5 * a - 1.5)).exp());
        out.push_str(&format!("{i},{a:.4},{}\n", next() < p));
    }
    out
}

const THRESHOLD_PIPELINE: &str = r#"source x = csv("d.csv") { id : int  a : float  b : bool }
split s = x { train = 0.7  test = 0.3  seed = 1  key = id }
model m = logistic_regression(s) {
    target = b
    exclude = id
    THRESHOLD
}
evaluate m on test { metrics accuracy, precision, recall, roc_auc }
deploy m as "m" { alias = "production" }
"#;

#[test]
fn a_binary_threshold_decides_predictions_metrics_and_serving() {
    let csv = imbalanced_csv(600);
    let at = |name: &str, threshold: &str| {
        let dir = small_project(
            name,
            &csv,
            &THRESHOLD_PIPELINE.replace("THRESHOLD", threshold),
        );
        let o = mlp(&dir, &["run", "."]);
        assert!(o.status.success(), "{}", text(&o));
        dir
    };
    let low = at("threshold-low", "threshold = 0.3");
    let plain = at("threshold-none", "");

    // Training's predictions: positive exactly when P(true) >= 0.3.
    let df = common::cached_frame(&low, "model.m");
    let proba = df.column("proba_true").unwrap().f64().unwrap().clone();
    let pred = df
        .column("prediction")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    let pred = pred.str().unwrap();
    let mut positives = 0;
    for (p, l) in proba.iter().zip(pred.iter()) {
        let (p, l) = (p.unwrap(), l.unwrap());
        assert_eq!(l == "true", p >= 0.3, "P(true) = {p} predicted {l}");
        positives += usize::from(l == "true");
    }
    let plain_positives = predicted_true(&plain, "model.m");
    assert!(
        positives > plain_positives,
        "{positives} vs {plain_positives}"
    );

    // The evaluation counts the thresholded decisions: more recall, the
    // same ranking (roc_auc does not move).
    let metrics = |d: &Path| common::production_bundle(d, "m")["evaluations"][0]["metrics"].clone();
    let (ml, mp) = (metrics(&low), metrics(&plain));
    assert!(
        ml["recall"].as_f64().unwrap() > mp["recall"].as_f64().unwrap(),
        "{ml} vs {mp}"
    );
    assert_eq!(ml["roc_auc"], mp["roc_auc"]);

    // Batch prediction from the bundle decides as training did.
    let req: String = csv
        .lines()
        .map(|l| l.rsplit_once(',').map(|(a, _)| a).unwrap_or(l).to_string() + "\n")
        .collect();
    std::fs::write(low.join("req.csv"), req).unwrap();
    let o = mlp(
        &low,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(low.join("out.csv")).unwrap();
    let served: Vec<bool> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').any(|f| f == "true"))
        .collect();
    let trained: Vec<bool> = pred.iter().map(|l| l == Some("true")).collect();
    assert_eq!(served, trained);

    // Tuned: the threshold is one more parameter of the search.
    let tuned = at(
        "threshold-tuned",
        "threshold = [0.2, 0.5]\n    tune { cv = 3  metric = f1 }",
    );
    let b = common::production_bundle(&tuned, "m");
    let t = b["model"]["params"]["threshold"].clone();
    assert!(
        t == serde_json::json!(0.2) || t == serde_json::json!(0.5),
        "{b}"
    );
    for d in [low, plain, tuned] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// The ```mlp block of `docs/models.md` that starts with `starts`.
fn models_doc_block(starts: &str) -> String {
    let text = std::fs::read_to_string(repo().join("docs/models.md")).unwrap();
    text.split("```mlp\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.starts_with(starts))
        .unwrap_or_else(|| panic!("no mlp block starting {starts:?} in docs/models.md"))
        .to_string()
}

#[test]
fn class_weights_from_the_docs_train_and_raise_the_rare_class() {
    // Rare fraud: about one row in ten.
    let mut next = common::uniform(99u64);
    let mut csv = String::from("id,amount,age,fraud\n");
    for i in 0..800 {
        let amount = next() * 10.0;
        let age = 18.0 + next() * 60.0;
        let p = 1.0 / (1.0 + (-(0.6 * amount - 0.02 * age - 4.0)).exp());
        csv.push_str(&format!("{i},{amount:.3},{age:.1},{}\n", next() < p));
    }
    let pipeline = models_doc_block("source claims")
        + "evaluate fraud_lr on test { metrics recall, precision }\n";
    let dir = small_project(
        "class-weight-docs",
        &csv,
        &pipeline.replace("data/claims.csv", "d.csv"),
    );
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    // Balanced weights predict the rare class more often than its share.
    let predicted = predicted_true(&dir, "model.fraud_lr");
    let actual = csv.lines().filter(|l| l.ends_with(",true")).count();
    assert!(predicted > actual, "{predicted} predicted, {actual} true");
    // The forest's search tried both weightings.
    let trials = entry_json(&dir, "model.fraud_rf", "trials.json");
    let text = trials.to_string();
    assert!(text.contains("balanced") && text.contains("10.0"), "{text}");

    // Multiclass logistic regression cannot weigh rows yet: it says so.
    let mc = small_project(
        "class-weight-multiclass",
        "id,x,c\n1,0.1,a\n2,0.5,b\n3,0.9,c\n4,0.2,a\n5,0.6,b\n6,0.8,c\n7,0.3,a\n8,0.4,b\n9,0.7,c\n10,0.15,a\n",
        r#"source d = csv("d.csv") { id : int  x : float  c : category }
split s = d { train = 0.8  test = 0.2  seed = 1  key = id }
model m = logistic_regression(s) { target = c  exclude = id  class_weight = balanced }
"#,
    );
    let t = run_fails(&mc);
    assert!(
        t.contains("`class_weight` and `sample_weight` with logistic regression"),
        "{t}"
    );
    for d in [dir, mc] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn gradient_boosting_takes_missing_inputs_and_predicts_as_trained() {
    let dir = small_project(
        "gbdt-missing",
        &houses_csv(1500, 11),
        r#"source houses = csv("d.csv") {
    id       : int
    sold_at  : date
    city     : category
    sqft     : float
    bedrooms : int?
    price    : float
}
split data = houses { train = 0.8  test = 0.2  key = id }
transform prep = data { encode city with onehot }
model price = gradient_boosting(prep) {
    target   = price
    exclude  = id, sold_at
    max_iter = 60
}
evaluate price on test {
    metrics rmse, r2
    require r2 >= 0.8
}
deploy price as "gb" { alias = "production" }
"#,
    );
    // `bedrooms` is nullable and not imputed: gradient boosting splits
    // its missing values itself.
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let trained = common::cached_frame(&dir, "model.price");
    let nulls = trained.column("bedrooms").unwrap().null_count();
    assert!(nulls > 0, "the data has missing bedrooms");
    // Its own importance: the inputs' shares of the split gains, summing to
    // 1, the price's driver (sqft) first.
    let report = entry_json(&dir, "evaluate.price.test", "report.json");
    let own = &report["feature_importance"]["model"];
    assert_eq!(own["kind"], "gain", "{own}");
    let values = own["values"].as_array().unwrap();
    let total: f64 = values.iter().map(|v| v["value"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-9, "{own}");
    let top = values
        .iter()
        .max_by(|a, b| {
            a["value"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["value"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(top["feature"], "sqft", "{own}");
    // Batch prediction from the bundle gives training's predictions, to the
    // bit, rows with a missing input included.
    let o = mlp(
        &dir,
        &[
            "predict",
            "gb",
            "--input",
            "d.csv",
            "--output",
            "out.parquet",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let served = bits_by_id(
        &common::read_parquet(&dir.join("out.parquet")),
        "prediction",
    );
    let by_id = bits_by_id(&trained, "prediction");
    assert_eq!(served.len(), by_id.len());
    for (id, bits) in &served {
        assert_eq!(by_id[id], *bits, "row id {id}");
    }
    // A model that cannot take missing values still needs the impute.
    let p = std::fs::read_to_string(dir.join("p.mlp"))
        .unwrap()
        .replace("gradient_boosting(prep)", "ridge(prep)")
        .replace("    max_iter = 60\n", "");
    std::fs::write(dir.join("p.mlp"), p).unwrap();
    let o = mlp(&dir, &["check", "."]);
    assert!(
        !o.status.success() && text(&o).contains("E0705"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Binary logistic regression fits and predicts its training run from the
/// inputs' columns (no design matrix): each row's probabilities equal, to
/// the bit, what `mlp predict` gives for the row, and the other rows'
/// (the test partition) too.
#[test]
fn logistic_regression_training_probabilities_equal_its_predictions_to_the_bit() {
    // The houses with a bool target: dearer than most.
    let csv: String = houses_csv(1500, 11)
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => format!("{l},big\n"),
            _ => {
                let price: f64 = l.rsplit(',').next().unwrap().parse().unwrap();
                format!("{l},{}\n", price > 300_000.0)
            }
        })
        .collect();
    let dir = small_project(
        "logistic-columns",
        &csv,
        r#"source houses = csv("d.csv") {
    id       : int
    sold_at  : date
    city     : category
    sqft     : float
    bedrooms : int?
    price    : float
    big      : bool
}
split data = houses { train = 0.7  test = 0.3  key = id }
transform prep = data {
    impute bedrooms with median
    encode city with onehot
    scale sqft, bedrooms with standard
}
model m = logistic_regression(prep) {
    target       = big
    exclude      = id, sold_at, price
    class_weight = balanced
}
evaluate m on test { metrics accuracy, roc_auc }
deploy m as "big-houses" { alias = "production" }
"#,
    );
    let classes = probabilities_trained_and_predicted_agree(&dir, "model.m", "big-houses", 1500);
    assert_eq!(classes, ["proba_false", "proba_true"]);
    std::fs::remove_dir_all(dir).ok();
}

/// A float column's values as bits, by `id`.
fn bits_by_id(
    df: &polars::prelude::DataFrame,
    column: &str,
) -> std::collections::HashMap<i64, u64> {
    let ids = df
        .column("id")
        .unwrap()
        .cast(&polars::prelude::DataType::Int64)
        .unwrap();
    ids.i64()
        .unwrap()
        .iter()
        .zip(df.column(column).unwrap().f64().unwrap().iter())
        .map(|(i, p)| (i.unwrap(), p.unwrap().to_bits()))
        .collect()
}

/// The training rows' predictions come from the scores the fit left
/// (validation rows of early stopping included), not from predicting them
/// again: they must be exactly what predicting them gives, for every class.
#[test]
fn gradient_boosting_training_scores_equal_its_predictions_to_the_bit() {
    let dir = small_project(
        "gbdt-scores",
        &houses_csv(1200, 5),
        r#"source houses = csv("d.csv") {
    id       : int
    sold_at  : date
    city     : category
    sqft     : float
    bedrooms : int?
    price    : float
}
split data = houses { train = 0.8  test = 0.2  key = id }
model city = gradient_boosting(data) {
    target              = city
    exclude             = id, sold_at
    max_iter            = 25
    early_stopping      = true
    validation_fraction = 0.25
    n_iter_no_change    = 50
}
evaluate city on test { metrics accuracy }
deploy city as "cities" { alias = "production" }
"#,
    );
    let classes = probabilities_trained_and_predicted_agree(&dir, "model.city", "cities", 1200);
    assert_eq!(classes.len(), 4, "{classes:?}");
    std::fs::remove_dir_all(dir).ok();
}

/// Runs the project in `dir`, predicts its `d.csv` through `deployment`
/// with `mlp predict`, and asserts that every probability column of the
/// model stage's output (its `rows` rows) equals the prediction's, bit for
/// bit, row by row (`id`). Returns those columns' names.
fn probabilities_trained_and_predicted_agree(
    dir: &Path,
    model_stage: &str,
    deployment: &str,
    rows: usize,
) -> Vec<String> {
    let o = mlp(dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let trained = common::cached_frame(dir, model_stage);
    let o = mlp(
        dir,
        &[
            "predict",
            deployment,
            "--input",
            "d.csv",
            "--output",
            "out.parquet",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = common::read_parquet(&dir.join("out.parquet"));
    let classes: Vec<String> = trained
        .get_column_names()
        .iter()
        .filter(|c| c.starts_with("proba_"))
        .map(|c| c.to_string())
        .collect();
    for c in &classes {
        let (ours, served) = (bits_by_id(&trained, c), bits_by_id(&out, c));
        assert_eq!(ours.len(), rows);
        assert_eq!(ours, served, "{c}");
    }
    classes
}

/// `sample_weight = COL`: a row of weight 0 counts as no row (the logistic
/// fit equals the fit without those rows), the column is not an input (the
/// deployed model predicts rows without it), and a negative weight is named
/// with its row.
#[test]
fn sample_weight_weighs_rows_and_is_not_an_input() {
    let mut csv = String::from("id,x,z,weight,y\n");
    let mut without = csv.clone();
    let mut s = 7u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    for i in 0..400 {
        let (x, z) = (next(), next());
        let y = if x + 0.5 * z + 0.3 * next() > 0.9 {
            "yes"
        } else {
            "no"
        };
        let weight = if i % 5 == 0 { 0.0 } else { 1.0 };
        let line = format!("{i},{x:.5},{z:.5},{weight},{y}\n");
        csv.push_str(&line);
        if weight > 0.0 {
            without.push_str(&line);
        }
    }
    let pipeline = |weighted: bool| {
        format!(
            r#"source d = csv("d.csv") {{
    id     : int
    x      : float
    z      : float
    weight : float
    y      : category["no", "yes"]
}}
split s = d {{ train = 0.8  test = 0.2  key = id }}
model m = logistic_regression(s) {{
    target   = y
    exclude  = id
    max_iter = 1000
{}}}
deploy m as "weighed" {{ alias = "production" }}
"#,
            if weighted {
                "    sample_weight = weight\n"
            } else {
                "    exclude = weight\n"
            }
        )
    };
    let weighted = small_project("sw-weighted", &csv, &pipeline(true));
    let dropped = small_project(
        "sw-dropped",
        &without,
        &pipeline(false)
            .replace(
                "    exclude  = id\n    max_iter",
                "    exclude  = id, weight\n    max_iter",
            )
            .replace("    exclude = weight\n", ""),
    );
    for dir in [&weighted, &dropped] {
        let o = mlp(dir, &["run", "."]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let coef = |dir: &Path| -> Vec<f64> {
        let m = entry_json(dir, "model.m", "model.json");
        assert_eq!(m["features"], serde_json::json!(["x", "z"]), "{m}");
        let mut v: Vec<f64> = m["fitted"]["weights"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[1].as_f64().unwrap())
            .collect();
        v.push(m["fitted"]["intercepts"][1].as_f64().unwrap());
        v
    };
    let (a, b) = (coef(&weighted), coef(&dropped));
    for (x, y) in a.iter().zip(&b) {
        assert!(close(*x, *y, 1e-6), "weight 0 is no row: {a:?} vs {b:?}");
    }
    // Predicting needs no weight column.
    std::fs::write(weighted.join("new.csv"), "id,x,z\n1,0.2,0.4\n2,0.9,0.8\n").unwrap();
    let o = mlp(
        &weighted,
        &[
            "predict", "weighed", "--input", "new.csv", "--output", "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read_to_string(weighted.join("out.csv"))
        .unwrap()
        .contains("proba_yes"));
    // A negative weight: named, with its row.
    let bad = csv.replacen("\n3,", "\nX", 1);
    let bad = {
        let mut lines: Vec<String> = bad.lines().map(str::to_string).collect();
        let row = lines.iter().position(|l| l.starts_with('X')).unwrap();
        let mut fields: Vec<String> = lines[row][1..].split(',').map(str::to_string).collect();
        fields[2] = "-1.5".into();
        lines[row] = format!("3,{}", fields.join(","));
        lines.join("\n") + "\n"
    };
    std::fs::write(weighted.join("d.csv"), bad).unwrap();
    let t = run_fails(&weighted);
    assert!(
        t.contains("`sample_weight = weight` is -1.5 at row 4 of the data"),
        "{t}"
    );
    for d in [weighted, dropped] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// The sample-weight example of `docs/models.md` runs.
#[test]
fn the_sample_weight_example_in_the_docs_runs() {
    let mut next = common::uniform(5u64);
    let mut csv = String::from("id,minutes,pages,recency,buyer\n");
    for i in 0..600 {
        let (minutes, pages) = (next() * 30.0, 1.0 + next() * 20.0);
        let recency = 0.2 + next() * 2.0;
        let p = 1.0 / (1.0 + (-(0.15 * minutes + 0.1 * pages - 4.0)).exp());
        csv.push_str(&format!(
            "{i},{minutes:.2},{pages:.1},{recency:.2},{}\n",
            next() < p
        ));
    }
    let pipeline = models_doc_block("source visits").replace("data/visits.csv", "d.csv");
    let dir = small_project("sample-weight-docs", &csv, &pipeline);
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let m = entry_json(&dir, "model.buys", "model.json");
    assert_eq!(
        m["features"],
        serde_json::json!(["minutes", "pages"]),
        "{m}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The categories example of `docs/models.md`: `city` reaches
/// gradient boosting as it is (no encoding), its splits are on sets of
/// levels, the levels are in the bundle, and `mlp predict` gives training's
/// predictions to the bit; an unseen level predicts as a missing one.
#[test]
fn gradient_boosting_splits_a_category_as_it_is_and_predicts_as_trained() {
    let pipeline = models_doc_block("source sales").replace("data/sales.csv", "d.csv");
    let dir = small_project("gbdt-category", &houses_csv(1500, 13), &pipeline);
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let m = entry_json(&dir, "model.price", "model.json");
    assert_eq!(
        m["categories"],
        serde_json::json!({"city": ["Austin", "Boston", "Chicago", "Denver"]}),
        "{}",
        m["categories"]
    );
    let city = m["features"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f == "city")
        .unwrap();
    let category_splits = m["fitted"]["trees"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t.as_array().unwrap())
        .filter(|n| n["feature"] == city && n["categories"].is_array())
        .count();
    assert!(category_splits > 0, "no split on the city's levels");
    // Huber's `alpha` is no parameter of a squared-error model.
    assert!(m["params"].get("alpha").is_none(), "{}", m["params"]);
    // Batch prediction from the bundle: training's bits; a new city and a
    // missing one are both a missing value.
    let trained = common::cached_frame(&dir, "model.price");
    let csv = std::fs::read_to_string(dir.join("d.csv")).unwrap();
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    // The first row again, its city a new one, then missing.
    for (id, city) in [("900001", "Paris"), ("900002", "")] {
        let mut f: Vec<String> = lines[1].split(',').map(str::to_string).collect();
        f[0] = id.into();
        f[2] = city.into();
        lines.push(f.join(","));
    }
    std::fs::write(dir.join("in.csv"), lines.join("\n") + "\n").unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "gb-city",
            "--input",
            "in.csv",
            "--output",
            "out.parquet",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let by_id = bits_by_id(&trained, "prediction");
    let mut new_rows = vec![];
    for (id, bits) in bits_by_id(
        &common::read_parquet(&dir.join("out.parquet")),
        "prediction",
    ) {
        match by_id.get(&id) {
            Some(trained) => assert_eq!(*trained, bits, "row id {id}"),
            None => new_rows.push((id, bits)),
        }
    }
    new_rows.sort();
    assert_eq!(new_rows.len(), 2, "{new_rows:?}");
    assert_eq!(
        new_rows[0].1, new_rows[1].1,
        "an unseen city predicts as a missing one: {new_rows:?}"
    );
    // The server codes the levels as training did: a known city's row
    // gets training's prediction, a new city's the missing city's.
    let first: Vec<&str> = lines[1].split(',').collect();
    let row = |city: &str| {
        format!(
            r#"{{"id": {}, "sold_at": "{}", "city": {city}, "sqft": {}, "bedrooms": {}}}"#,
            first[0],
            first[1],
            first[3],
            if first[4].is_empty() {
                "null"
            } else {
                first[4]
            }
        )
    };
    let server = common::serve(&dir, &["gb-city@production"]);
    let body = format!(
        "[{}, {}, {}]",
        row(&format!("\"{}\"", first[2])),
        row("\"Paris\""),
        row("null")
    );
    let (status, v) = common::post(&format!("{}/v1/predict", server.url), &body);
    assert_eq!(status, 200, "{v}");
    let p: Vec<f64> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let id: i64 = first[0].parse().unwrap();
    assert_eq!(p[0].to_bits(), by_id[&id], "{v}");
    assert_eq!(p[1].to_bits(), p[2].to_bits(), "{v}");
    assert_eq!(p[1].to_bits(), new_rows[0].1, "{v}");
    drop(server);
    // Another algorithm still needs the encoding, and says where.
    let p = std::fs::read_to_string(dir.join("p.mlp"))
        .unwrap()
        .replace("gradient_boosting(data)", "ridge(data)")
        .replace("    max_iter = 60\n", "");
    std::fs::write(dir.join("p.mlp"), p).unwrap();
    let o = mlp(&dir, &["check", "."]);
    assert!(
        !o.status.success() && text(&o).contains("E0704") && text(&o).contains("gradient_boosting"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(dir).ok();
}

/// The absolute-error example of `docs/models.md` runs, and a trip of an
/// outlying duration moves its median-fitted model less than a squared-error
/// one: the absolute-error model's MAE is the lower.
#[test]
fn the_absolute_error_example_in_the_docs_runs_and_resists_outliers() {
    let mut next = common::uniform(11u64);
    let mut csv = String::from("id,distance,hour,minutes\n");
    for i in 0..1500 {
        let distance = 1.0 + next() * 20.0;
        let hour = (next() * 24.0) as i64;
        let mut minutes = 5.0 + 3.0 * distance + next() * 4.0;
        if i % 25 == 0 {
            minutes += 400.0;
        }
        csv.push_str(&format!("{i},{distance:.2},{hour},{minutes:.1}\n"));
    }
    let pipeline = models_doc_block("source trips").replace("data/trips.csv", "d.csv");
    let l1 = small_project("l1-docs", &csv, &pipeline);
    let l2 = small_project(
        "l2-docs",
        &csv,
        &pipeline.replace("    loss   = absolute_error\n", ""),
    );
    let huber = small_project(
        "huber-docs",
        &csv,
        &pipeline.replace("    loss   = absolute_error\n", "    loss   = huber\n"),
    );
    let mut mae = vec![];
    for dir in [&l1, &l2, &huber] {
        let o = mlp(dir, &["run", "."]);
        assert!(o.status.success(), "{}", text(&o));
        let report = entry_json(dir, "evaluate.duration.test", "report.json");
        mae.push(report["metrics"]["mae"].as_f64().unwrap());
    }
    assert!(
        mae[0] < mae[1],
        "absolute error {} vs squared error {}",
        mae[0],
        mae[1]
    );
    // Huber's loss is linear above its 90% quantile: the outliers pull it
    // less than squared error.
    assert!(
        mae[2] < mae[1],
        "huber {} vs squared error {}",
        mae[2],
        mae[1]
    );
    for d in [l1, l2, huber] {
        std::fs::remove_dir_all(d).ok();
    }
}
