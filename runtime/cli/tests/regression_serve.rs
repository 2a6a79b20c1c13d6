//! Regression tests of the server, batches and versions, one per thing
//! that broke (named after it); the rest are in `regression.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    cached_frame, deployed_project, empty_project as project, mlp, mlp_within, production_bundle,
    run_ok, text, DEPLOYED,
};
use serde_json::Value;

/// A bundle of another format, or written with a newer plan, is refused
/// naming both versions (not as a field it lacks); a cache made by another
/// engine is recomputed, and `mlp plan` says which engines.
#[test]
fn versions_are_checked_on_load_and_named() {
    let dir = deployed_project("versions", 300, 61);
    let mut b = production_bundle(&dir, "house-price");
    assert_eq!(b["plan_version"], mlp_compiler::plan::PLAN_VERSION);
    let data = dir.join("houses.csv");
    let data = data.to_str().unwrap();
    let future = dir.join("future.json");
    let out = dir.join("out.csv");
    // `mlp predict` with `b` as a bundle file: it must fail; its output.
    let refused = |b: &Value| {
        std::fs::write(&future, serde_json::to_vec(b).unwrap()).unwrap();
        let args = [
            "predict",
            future.to_str().unwrap(),
            "--input",
            data,
            "--output",
            out.to_str().unwrap(),
        ];
        let o = mlp(&dir, &args);
        let t = text(&o);
        assert!(!o.status.success(), "{t}");
        t
    };
    b["format"] = 2.into();
    b.as_object_mut().unwrap().remove("model");
    let t = refused(&b);
    assert!(t.contains("format 2") && t.contains("format 1"), "{t}");
    b["format"] = 1.into();
    b["plan_version"] = 99.into();
    let t = refused(&b);
    let ours = format!("({})", mlp_compiler::plan::PLAN_VERSION);
    assert!(t.contains("plan version 99") && t.contains(&ours), "{t}");
    // Outputs of another engine (whose keys this one never computes) and
    // its run record: every stage recomputes, and the reason names both.
    for e in std::fs::read_dir(dir.join(".mlp/cache")).unwrap() {
        std::fs::remove_dir_all(e.unwrap().path()).unwrap();
    }
    let runs = dir.join(".mlp/runs");
    for e in std::fs::read_dir(&runs).unwrap() {
        let p = e.unwrap().path();
        let s = std::fs::read_to_string(&p).unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        let engine = v["engine"].as_str().unwrap().to_string();
        std::fs::write(&p, s.replace(&engine, "mlp-engine/0.0.1+plan-v1")).unwrap();
    }
    let o = mlp(&dir, &["plan", "."]);
    let t = text(&o);
    assert!(
        t.contains("mlp-engine/0.0.1+plan-v1 before")
            && t.contains(&format!("+plan-v{}+", mlp_compiler::plan::PLAN_VERSION)),
        "{t}"
    );
}

#[test]
fn the_server_closes_idle_and_half_sent_connections() {
    use std::io::{Read, Write};
    let dir = deployed_project("idle-connections", 300, 17);
    let s = common::serve(&dir, &["house-price", "--header-timeout", "1"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let started = std::time::Instant::now();
    // One that sends nothing, one that sends half a header.
    let mut idle = std::net::TcpStream::connect(&addr).unwrap();
    let mut half = std::net::TcpStream::connect(&addr).unwrap();
    half.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-")
        .unwrap();
    for conn in [&mut idle, &mut half] {
        conn.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0u8; 1024];
        // Closed by the server: end of stream (possibly after a 408 answer).
        loop {
            match conn.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("still open after {:?}: {e}", started.elapsed()),
            }
        }
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    // Still serving.
    let (status, _) = common::get(&format!("{}/health", s.url));
    assert_eq!(status, 200);
}

#[test]
fn predict_and_monitor_in_batches_equal_one_batch() {
    let dir = deployed_project("batches", 400, 31);
    // Rows that fail the checks, spread over the batches, and an extra
    // column to carry through.
    let csv = common::houses_csv(1000, 32);
    let req: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
            if i > 0 && i % 97 == 0 {
                f[3] = "50.0".into();
            }
            f.join(",")
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("req.csv"), req).unwrap();
    let run = |batch: &str, out: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args([
                "predict",
                "house-price",
                "--input",
                "req.csv",
                "--output",
                out,
            ])
            .env("MLP_PREDICT_BATCH_ROWS", batch)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    };
    for ext in ["csv", "ndjson"] {
        run("1000000", &format!("one.{ext}"));
        run("64", &format!("many.{ext}"));
        for kind in ["", ".rejected"] {
            let stem = |s: &str| format!("{s}{kind}.{ext}");
            let (a, b) = (
                std::fs::read_to_string(dir.join(stem("one"))).unwrap(),
                std::fs::read_to_string(dir.join(stem("many"))).unwrap(),
            );
            assert_eq!(a, b, "{}", stem("many"));
        }
    }
    let rejected = std::fs::read_to_string(dir.join("many.rejected.csv")).unwrap();
    assert_eq!(rejected.lines().count(), 1 + 10, "{rejected}");
    assert!(
        rejected.lines().nth(10).unwrap().starts_with("970,"),
        "{rejected}"
    );
    run("64", "many.parquet");
    // The monitor report is the same in batches.
    let monitor = |batch: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(["monitor", "house-price", "--data", "req.csv", "--json"])
            .env("MLP_PREDICT_BATCH_ROWS", batch)
            .current_dir(&dir)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(monitor("1000000"), monitor("64"));
}

#[test]
fn monitor_server_gives_up_on_a_server_that_never_answers() {
    let dir = project("silent-server");
    // Accepts connections, reads, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut kept = vec![];
        for s in listener.incoming().take(2).flatten() {
            kept.push(s);
        }
        std::thread::sleep(std::time::Duration::from_secs(8));
    });
    let started = std::time::Instant::now();
    let o = mlp_within(&dir, 30, &["monitor", "--server", &url, "--timeout", "1"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("--timeout"), "{t}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    drop(held);
}

#[test]
fn metrics_print_with_four_decimals_each() {
    let dir = deployed_project("decimals", 300, 41);
    std::fs::write(
        dir.join("p.mlp"),
        DEPLOYED.replace("metrics rmse, r2", "metrics rmse, r2, mae"),
    )
    .unwrap();
    let t = run_ok(&dir);
    let line = t
        .lines()
        .find(|l| l.trim_start().starts_with("rmse "))
        .unwrap_or_else(|| panic!("{t}"));
    for part in line.trim().split(", ") {
        let value = part.rsplit(' ').next().unwrap();
        let decimals = value.split('.').nth(1).map_or(0, str::len);
        assert_eq!(decimals, 4, "{line}");
    }
}

#[test]
fn a_panic_inside_a_prediction_answers_500_and_the_server_carries_on() {
    let dir = deployed_project("worker-panic", 300, 51);
    // A bundle whose model lost its weights but one: predicting it panics
    // (an index out of bounds), as a bug in mlp would.
    let mut b = production_bundle(&dir, "house-price");
    b["model"]["fitted"]["weights"] = serde_json::json!([1.0]);
    std::fs::write(dir.join("broken.json"), serde_json::to_vec(&b).unwrap()).unwrap();
    let s = common::serve(&dir, &["broken.json"]);
    let row =
        r#"[{"id": 1, "sold_at": "2020-03-15", "city": "Austin", "sqft": 1500.0, "bedrooms": 3}]"#;
    // More requests than prediction workers: none hangs, each is answered.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    for _ in 0..6 {
        let mut r = agent
            .post(&format!("{}/v1/predict", s.url))
            .header("content-type", "application/json")
            .send(row)
            .expect("answered, not hung");
        assert_eq!(r.status().as_u16(), 500);
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        assert_eq!(v["error"]["kind"], "internal", "{v}");
    }
    let (status, _) = common::get(&format!("{}/health", s.url));
    assert_eq!(status, 200);
}

#[test]
fn plugin_new_writes_a_valid_manifest_for_any_sdk_path() {
    let dir = project("plugin-sdk-path");
    let sdk = dir.join("sdk \"quoted\" \\ path");
    std::fs::create_dir_all(sdk.join("src")).unwrap();
    let from = common::repo().join("plugins/sdk");
    // The SDK as a crate of its own (the real one inherits from its
    // workspace).
    std::fs::write(
        sdk.join("Cargo.toml"),
        "[package]\nname = \"mlp-plugin\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    for e in std::fs::read_dir(from.join("src")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, sdk.join("src").join(p.file_name().unwrap())).unwrap();
    }
    let o = mlp(
        &dir,
        &["plugin", "new", "quoted", "--sdk", sdk.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let meta = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(dir.join("quoted/Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
}

#[test]
fn bucket_into_more_quantiles_than_values_is_bounded_and_quick() {
    let dir = project("bucket");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  x : float  y : float }
split s = d { train = 0.8  test = 0.2  key = id }
transform t = s { bucket x into 10000 quantiles }
"#,
    )
    .unwrap();
    let mut csv = String::from("id,x,y\n");
    for i in 0..311 {
        csv.push_str(&format!("{i},{},{}\n", (i * 37) % 101, i));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    let o = mlp_within(&dir, 60, &["run", "."]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("warning: `bucket x into 10000 quantiles`: `train` has"),
        "{t}"
    );
    let df = cached_frame(&dir, "transform.t");
    let max = df
        .column("x")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .max()
        .unwrap();
    assert!((1..=101).contains(&max), "{max}");
}

#[test]
fn the_deepest_expression_that_checks_also_runs_deploys_and_loads() {
    let dir = project("deep");
    // 99 terms, 99 nested calls: just under the compiler's limit.
    let sum = vec!["x"; 99].join(" + ");
    let calls = format!("{}x{}", "abs(".repeat(98), ")".repeat(98));
    std::fs::write(
        dir.join("p.mlp"),
        format!(
            "source d = csv(\"d.csv\") {{ id : int  x : float  y : float }}\n\
             split s = d {{ train = 0.8  test = 0.2  key = id }}\n\
             features f = s {{\n  t = {sum}\n  u = {calls}\n}}\n\
             model m = ridge(f) {{ target = y  exclude = id }}\n\
             evaluate m on test {{ metrics rmse  require rmse < 1000 }}\n\
             deploy m as \"m\"\n"
        ),
    )
    .unwrap();
    let mut csv = String::from("id,x,y\n");
    for i in 0..100 {
        csv.push_str(&format!("{i},{},{}\n", i % 7, i % 5));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    run_ok(&dir);
    std::fs::write(dir.join("r.csv"), "x\n2\n").unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "r.csv", "--output", "o.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = common::serve(&dir, &["m"]);
    let (status, v) = common::post(&format!("{}/v1/predict", s.url), r#"[{"x": 2}]"#);
    assert_eq!(status, 200, "{v}");
    // One more term is refused where it is written.
    let o = mlp(&dir, &["check", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let deeper = std::fs::read_to_string(dir.join("p.mlp"))
        .unwrap()
        .replace(&sum, &vec!["x"; 110].join(" + "));
    std::fs::write(dir.join("p.mlp"), deeper).unwrap();
    let o = mlp(&dir, &["check", "."]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("E0010"), "{}", text(&o));
}
