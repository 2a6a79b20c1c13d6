//! Serving and monitoring end to end, through a real server on loopback:
//! `/v1/predict` and `/invocations` answer what `mlp predict` does; bad
//! requests get their 4xx and the server keeps serving; a promote while
//! serving switches versions with no failed request; SIGTERM stops it
//! cleanly. `mlp monitor` flags shifted features, and only those.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deployed_project, get, houses_csv, mlp, post, serve, text};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Request rows (no target) as JSON records, from a houses CSV.
fn records(csv: &str, n: usize) -> Vec<Value> {
    csv.lines()
        .skip(1)
        .take(n)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            json!({
                "id": f[0].parse::<i64>().unwrap(),
                "sold_at": f[1],
                "city": f[2],
                "sqft": f[3].parse::<f64>().unwrap(),
                "bedrooms": f[4].parse::<i64>().ok(),
            })
        })
        .collect()
}

#[test]
fn served_predictions_equal_mlp_predict_and_bad_requests_get_4xx() {
    let dir = deployed_project("serve", 600, 11);
    let csv = houses_csv(40, 77);
    let rows = records(&csv, 40);
    // The same rows through `mlp predict`.
    let req: String = std::iter::once("id,sold_at,city,sqft,bedrooms".to_string())
        .chain(csv.lines().skip(1).map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[..5].join(",")
        }))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("req.csv"), req).unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price",
            "--input",
            "req.csv",
            "--output",
            "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let header: Vec<&str> = out.lines().next().unwrap().split(',').collect();
    let k = header.iter().position(|h| *h == "prediction").unwrap();
    let batch: Vec<f64> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(k).unwrap().parse().unwrap())
        .collect();
    assert_eq!(batch.len(), 40);

    let s = serve(&dir, &["house-price", "--max-body", "100000"]);
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    // Records, in one request.
    let (status, v) = post(
        &format!("{}/v1/predict", s.url),
        &Value::Array(rows.clone()).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 40);
    for (p, b) in preds.iter().zip(&batch) {
        assert!(close(p.as_f64().unwrap(), *b), "{p} vs {b}");
    }
    assert_eq!(v["model"], "house-price");
    assert_eq!(v["version"].as_str().unwrap().len(), 64);
    // One row at a time, as columns.
    for (r, b) in rows.iter().zip(&batch).take(5) {
        let cols: serde_json::Map<String, Value> = r
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), json!([v])))
            .collect();
        let (status, v) = post(
            &format!("{}/v1/predict", s.url),
            &json!({ "columns": cols }).to_string(),
        );
        assert_eq!(status, 200, "{v}");
        assert!(close(v["predictions"][0].as_f64().unwrap(), *b));
    }
    // MLflow's formats.
    let names = ["id", "sold_at", "city", "sqft", "bedrooms"];
    let data: Vec<Value> = rows
        .iter()
        .map(|r| Value::Array(names.iter().map(|n| r[*n].clone()).collect()))
        .collect();
    let (status, v) = post(
        &format!("{}/invocations", s.url),
        &json!({"dataframe_split": {"columns": names, "data": data}}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    for (p, b) in v["predictions"].as_array().unwrap().iter().zip(&batch) {
        assert!(close(p.as_f64().unwrap(), *b));
    }
    let (status, v) = post(
        &format!("{}/invocations", s.url),
        &json!({"dataframe_records": rows}).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 40);

    // Bad requests: each its status and a JSON error naming what is wrong.
    let one = |f: &dyn Fn(&mut Value)| {
        let mut r = rows[0].clone();
        f(&mut r);
        Value::Array(vec![r]).to_string()
    };
    let cases: Vec<(String, u16, &str, &str)> = vec![
        (
            "{\"rows\": [".into(),
            400,
            "malformed_json",
            "not valid JSON",
        ),
        (
            "42".into(),
            400,
            "bad_shape",
            "must be a JSON object or array",
        ),
        ("[]".into(), 400, "no_rows", "no rows"),
        (
            one(&|r| {
                r.as_object_mut().unwrap().remove("sqft");
            }),
            422,
            "missing_column",
            "no column `sqft`",
        ),
        (
            one(&|r| r["sqft"] = json!("big")),
            422,
            "wrong_type",
            "column `sqft`: \"big\" is not a float",
        ),
        (
            one(&|r| r["sold_at"] = json!("15/03/2020")),
            422,
            "wrong_type",
            "column `sold_at`",
        ),
        (
            one(&|r| r["city"] = Value::Null),
            422,
            "null_value",
            "column `city`: null",
        ),
        (
            one(&|r| r["sqft"] = json!(50.0)),
            422,
            "check_failed",
            "range sqft 100..50000",
        ),
        (
            one(&|r| r["city"] = json!("Paris")),
            422,
            "check_failed",
            "values city in",
        ),
        (
            format!("[{}]", vec!["{\"id\": 1}"; 10_000].join(",")),
            413,
            "body_too_large",
            "",
        ),
    ];
    for (body, status, kind, words) in &cases {
        let (got, v) = post(&format!("{}/v1/predict", s.url), body);
        assert_eq!(got, *status, "{kind}: {v}");
        assert_eq!(v["error"]["kind"], *kind, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(words),
            "{kind}: {v}"
        );
    }
    let (status, v) = post(
        &format!("{}/invocations", s.url),
        &json!({"instances": []}).to_string(),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dataframe_split"));
    let (status, _) = get(&format!("{}/nowhere", s.url));
    assert_eq!(status, 404);
    // A route asked with another method says so in JSON, as every error.
    let (status, body) = get(&format!("{}/v1/predict", s.url));
    assert_eq!(status, 405, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["kind"], "method_not_allowed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/v1/predict does not take GET"),
        "{v}"
    );
    // Still serving.
    let (status, v) = post(
        &format!("{}/v1/predict", s.url),
        &Value::Array(rows[..1].to_vec()).to_string(),
    );
    assert_eq!(status, 200, "{v}");

    // Schema, OpenAPI, health, metrics.
    let (status, schema) = get(&format!("{}/v1/schema", s.url));
    assert_eq!(status, 200);
    let schema: Value = serde_json::from_str(&schema).unwrap();
    let cols: Vec<&str> = schema["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    // Exactly what the model reads: `id` is excluded and no check reads it.
    assert_eq!(cols, ["sold_at", "city", "sqft", "bedrooms"]);
    let (_, api) = get(&format!("{}/openapi.json", s.url));
    let api: Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["openapi"], "3.0.3");
    let row = &api["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"]["oneOf"][0]["items"];
    assert_eq!(row["properties"]["sqft"]["type"], "number");
    assert_eq!(row["properties"]["bedrooms"]["nullable"], true);
    let (_, health) = get(&format!("{}/health", s.url));
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let (_, metrics) = get(&format!("{}/metrics", s.url));
    for line in [
        "mlp_requests_total{endpoint=\"/v1/predict\",status=\"200\"}",
        "mlp_requests_total{endpoint=\"/invocations\",status=\"200\"} 2",
        "mlp_errors_total{kind=\"check_failed\"} 2",
        "mlp_errors_total{kind=\"body_too_large\"} 1",
        "mlp_request_duration_seconds_bucket{le=\"+Inf\"}",
        "mlp_rows_predicted_total 126",
        "mlp_feature_drift{feature=\"sqft\",stat=\"psi\"}",
        "mlp_feature_drift{feature=\"city\",stat=\"chi2_p\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[test]
fn a_promote_while_serving_switches_versions_without_a_failed_request() {
    let dir = deployed_project("promote", 500, 21);
    let registry = |dir: &Path| {
        let o = mlp(dir, &["models", "show", "house-price@production"]);
        assert!(o.status.success(), "{}", text(&o));
        text(&o)
    };
    let _ = registry(&dir);
    // A second version (other data), which the deploy makes `production`.
    std::fs::write(dir.join("houses.csv"), houses_csv(500, 22)).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let versions: Vec<String> = std::fs::read_dir(dir.join(".mlp/registry/house-price/versions"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(versions.len(), 2);
    let s = serve(&dir, &["house-price"]);
    let row = Value::Array(records(&houses_csv(1, 5), 1)).to_string();
    let (_, v) = post(&format!("{}/v1/predict", s.url), &row);
    let first = v["version"].as_str().unwrap().to_string();
    let other = versions.iter().find(|v| **v != first).unwrap().clone();
    // A client hammers the server while the alias moves.
    let url = format!("{}/v1/predict", s.url);
    let client = std::thread::spawn(move || {
        let mut seen = vec![];
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(4) {
            let (status, v) = post(&url, &row);
            assert_eq!(status, 200, "a request failed during the switch: {v}");
            seen.push(v["version"].as_str().unwrap().to_string());
        }
        seen
    });
    std::thread::sleep(Duration::from_millis(300));
    let o = mlp(
        &dir,
        &["models", "promote", "house-price", &other, "production"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let seen = client.join().unwrap();
    assert_eq!(seen.first().unwrap(), &first);
    assert_eq!(seen.last().unwrap(), &other, "the server did not switch");
    // Once switched, it stays switched (no request answered by the old one after).
    let at = seen.iter().position(|v| *v == other).unwrap();
    assert!(seen[at..].iter().all(|v| *v == other));
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = deployed_project("sigterm", 300, 31);
    let mut s = serve(&dir, &["house-price"]);
    let (status, _) = get(&format!("{}/health", s.url));
    assert_eq!(status, 200);
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// houses_csv with sqft scaled: the shift `mlp monitor` must find.
fn shifted(csv: &str, factor: f64) -> String {
    let mut out = String::new();
    for (i, l) in csv.lines().enumerate() {
        if i == 0 {
            out.push_str(l);
        } else {
            let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
            f[3] = format!("{:.1}", f[3].parse::<f64>().unwrap() * factor);
            out.push_str(&f.join(","));
        }
        out.push('\n');
    }
    out
}

#[test]
fn monitor_flags_the_shifted_feature_and_only_it() {
    let dir = deployed_project("monitor", 2000, 41);
    // At training time, the monitor stage checked its rules on the held-out
    // rows: nothing breached.
    let entry = common::cache_entry(&dir, "monitor.price").join("report.json");
    let held: Value = serde_json::from_str(&std::fs::read_to_string(entry).unwrap()).unwrap();
    let held = held["held_out_vs_train"].as_array().unwrap();
    let names: Vec<&str> = held.iter().map(|c| c["column"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["sqft", "city"]);
    assert!(held.iter().all(|c| c["drifting"] == false));
    // Same process, another seed: no drift.
    std::fs::write(dir.join("same.csv"), houses_csv(1500, 42)).unwrap();
    let o = mlp(
        &dir,
        &["monitor", "house-price", "--data", "same.csv", "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        r["columns"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["drifting"] == false),
        "{r}"
    );
    // Concept: the data carries the target, so the model is scored.
    let rmse = r["performance"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metric"] == "rmse")
        .unwrap();
    assert!(rmse["value"].as_f64().unwrap() > 0.0 && rmse["at_training"].as_f64().is_some());

    // sqft scaled by 1.4: sqft drifts, city does not.
    std::fs::write(dir.join("shifted.csv"), shifted(&houses_csv(1500, 43), 1.4)).unwrap();
    let o = mlp(
        &dir,
        &[
            "monitor",
            "house-price",
            "--data",
            "shifted.csv",
            "--json",
            "--html",
            "report.html",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let drifting: Vec<&str> = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifting"] == true)
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(drifting, vec!["sqft"], "{r}");
    let sqft = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["column"] == "sqft")
        .unwrap();
    let psi = sqft["stats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stat"] == "psi")
        .unwrap();
    assert_eq!(psi["rule"], "psi < 0.2");
    assert_eq!(psi["breached"], true);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("<h3>sqft</h3>") && html.contains("<svg"),
        "no histogram for sqft"
    );
    assert!(!html.contains("<h3>city</h3>"));
    // The terminal table says the same.
    let o = mlp(&dir, &["monitor", "house-price", "--data", "shifted.csv"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("breached: drift in sqft"), "{}", text(&o));
}

#[test]
fn the_pipeline_in_the_serving_docs_runs_serves_and_monitors() {
    let doc = std::fs::read_to_string(common::repo().join("docs/serving.md")).unwrap();
    let block = doc
        .split("```mlp\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let dir = std::env::temp_dir().join(format!("mlp-serve-docs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("p.mlp"), block).unwrap();
    std::fs::write(dir.join("data/houses.csv"), houses_csv(1500, 51)).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(dir.join("new.csv"), houses_csv(800, 52)).unwrap();
    let o = mlp(&dir, &["monitor", "house-price", "--data", "new.csv"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("rmse < 30000"), "{}", text(&o));
    let s = serve(&dir, &["house-price"]);
    let (status, v) = post(
        &format!("{}/v1/predict", s.url),
        &Value::Array(records(&houses_csv(3, 53), 3)).to_string(),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 3);
    let o = mlp(&dir, &["monitor", "--server", &s.url, "--json"]);
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<&str> = r["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        vec!["latency p99 < 20ms", "error_rate < 0.01"],
        "{r}"
    );
    assert_eq!(r["window"], 500);
}

#[test]
fn concurrent_requests_gathered_into_one_call_each_get_their_own_answer() {
    let dir = deployed_project("gathered", 500, 61);
    let s = serve(&dir, &["house-price"]);
    let csv = houses_csv(16, 62);
    let rows = records(&csv, 16);
    // Each request's expected answer, one at a time.
    let url = format!("{}/v1/predict", s.url);
    let expected: Vec<f64> = rows
        .iter()
        .map(|r| {
            let (status, v) = post(&url, &Value::Array(vec![r.clone()]).to_string());
            assert_eq!(status, 200, "{v}");
            v["predictions"][0].as_f64().unwrap()
        })
        .collect();
    // Then many at once, some failing a check on their second row (that
    // row is rejected, the first answered); the server gathers concurrent
    // requests into one prediction call.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (url, rows, expected) = (url.clone(), rows.clone(), expected.clone());
            std::thread::spawn(move || {
                for k in 0..30 {
                    let i = (t * 7 + k) % 16;
                    let j = (i + 3) % 16;
                    let bad = t % 3 == 0 && k % 2 == 0;
                    let mut second = rows[j].clone();
                    if bad {
                        second["sqft"] = json!(50.0);
                    }
                    let body = Value::Array(vec![rows[i].clone(), second]).to_string();
                    let (status, v) = post(&url, &body);
                    if bad {
                        // The failing row is rejected alone; the other is
                        // answered.
                        assert_eq!(status, 200, "{v}");
                        let p = v["predictions"].as_array().unwrap();
                        assert_eq!(p.len(), 2);
                        assert_eq!(p[0].as_f64().unwrap(), expected[i]);
                        assert!(p[1].is_null(), "{v}");
                        assert_eq!(v["rejected"][0]["row"], 2, "{v}");
                        assert_eq!(v["rejected"][0]["kind"], "check_failed", "{v}");
                        assert_eq!(v["rejected"].as_array().unwrap().len(), 1, "{v}");
                    } else {
                        assert_eq!(status, 200, "{v}");
                        let p = v["predictions"].as_array().unwrap();
                        assert_eq!(p.len(), 2);
                        assert_eq!(p[0].as_f64().unwrap(), expected[i]);
                        assert_eq!(p[1].as_f64().unwrap(), expected[j]);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
