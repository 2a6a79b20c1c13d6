//! Models end to end: training matches scikit-learn, tuning records its
//! trials, gates stop a run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mlp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mlp")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

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
    for e in std::fs::read_dir(dir.join(".mlp/cache")).unwrap() {
        let p = e.unwrap().path();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("entry.json")).unwrap()).unwrap();
        if meta["stage"] == stage {
            return serde_json::from_str(&std::fs::read_to_string(p.join(file)).unwrap()).unwrap();
        }
    }
    panic!("no entry for {stage}");
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

fn check_against(dir: &Path, sk: &serde_json::Value) {
    for (stage, name) in [("model.ols", "ols"), ("model.ridge_m", "ridge")] {
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
    let report = entry_json(dir, "evaluate.logit.test", "report.json");
    let (a, b) = (
        report["metrics"]["accuracy"].as_f64().unwrap(),
        sk["logistic"]["accuracy"].as_f64().unwrap(),
    );
    assert!(
        (a - b).abs() <= 0.005,
        "logistic accuracy {a} vs scikit-learn {b}"
    );
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
