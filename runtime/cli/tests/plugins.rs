//! Wasm plugins end to end: the example plugins run inside a pipeline and
//! agree with the same code run natively; hostile plugins fail with clear
//! errors, never crash or hang the host, and leave nothing in the cache; a
//! changed plugin re-runs exactly the stages that call it; bundles carry
//! their plugins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cached_frame, has_cache_entry, install_plugins, mlp, text};
use std::path::{Path, PathBuf};

const CITIES: [&str; 8] = [
    "Boston", "Denver", "Miami", "Seattle", "Tucson", "Atlantis", "new york", "Chicago",
];

/// Rows with a city (some null), coordinates, a positive size and a target.
fn shops_csv(rows: usize) -> String {
    let mut s = String::from("id,city,lat,lon,size,sales\n");
    let mut x: u64 = 7;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..rows {
        let city = if i % 17 == 5 {
            ""
        } else {
            CITIES[(next() * CITIES.len() as f64) as usize % CITIES.len()]
        };
        let lat = 25.0 + 23.0 * next();
        let lon = -122.0 + 52.0 * next();
        let size = 10.0 + 990.0 * next();
        let sales = 100.0 + 0.4 * size + 50.0 * next();
        s.push_str(&format!(
            "{i},{city},{lat:.5},{lon:.5},{size:.3},{sales:.2}\n"
        ));
    }
    s
}

const SOURCE: &str = r#"source shops = csv("data/shops.csv") {
    id    : int
    city  : str?
    lat   : float
    lon   : float
    size  : float
    sales : float
}
split data = shops { train = 0.8  test = 0.2  key = id }
"#;

fn project(name: &str, pipeline: &str, plugins: &[&str]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-plugins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/shops.csv"), shops_csv(600)).unwrap();
    std::fs::write(dir.join("p.mlp"), format!("{SOURCE}{pipeline}")).unwrap();
    install_plugins(&dir, plugins);
    dir
}

fn run_ok(dir: &Path) -> String {
    let o = mlp(dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    text(&o)
}

fn run_fails(dir: &Path) -> String {
    let o = mlp(dir, &["run", "."]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected a clean failure:\n{}",
        text(&o)
    );
    text(&o)
}

#[test]
fn example_plugins_run_in_a_pipeline_and_equal_the_native_computation() {
    let dir = project(
        "examples",
        r#"
plugin geo  = "plugins/geo.wasm"
plugin math = "plugins/math.wasm" { memory = 32MB  fuel = 5000  timeout = 5s }
features f = data {
    coastal  = geo.coastal(city)
    region   = geo.region(city)
    km       = math.haversine(lat, lon, 40.7128, -74.006)
    bc       = math.box_cox(size, 0.5)
    bc_plain = (sqrt(size) - 1.0) / 0.5
    constant = math.haversine(0.0, 0.0, 1.0, 1.0)
}
"#,
        &["geo", "math"],
    );
    run_ok(&dir);
    let df = cached_frame(&dir, "features.f");
    assert_eq!(df.height(), 600);
    // A call of literals only is one value, for every row.
    let constant = df.column("constant").unwrap().f64().unwrap().clone();
    let native = math::haversine(0.0, 0.0, 1.0, 1.0);
    assert!(constant
        .iter()
        .all(|v| v.is_some_and(|v| (v - native).abs() <= 1e-9 * native)));
    let city = df.column("city").unwrap().str().unwrap().clone();
    let coastal = df.column("coastal").unwrap().bool().unwrap().clone();
    let region = df.column("region").unwrap().str().unwrap().clone();
    let (lat, lon) = (
        df.column("lat").unwrap().f64().unwrap().clone(),
        df.column("lon").unwrap().f64().unwrap().clone(),
    );
    let km = df.column("km").unwrap().f64().unwrap().clone();
    let bc = df.column("bc").unwrap().f64().unwrap().clone();
    let bc_plain = df.column("bc_plain").unwrap().f64().unwrap().clone();
    let mut nulls = 0;
    for i in 0..df.height() {
        match city.get(i) {
            // A null city: `coastal` takes no nulls, so its row is null;
            // `region` takes them and says null too.
            None => {
                nulls += 1;
                assert_eq!(coastal.get(i), None);
                assert_eq!(region.get(i), None);
            }
            Some(c) => {
                assert_eq!(coastal.get(i), Some(geo::coastal(c)), "row {i}: {c}");
                assert_eq!(region.get(i), geo::region(Some(c)), "row {i}: {c}");
            }
        }
        let native = math::haversine(lat.get(i).unwrap(), lon.get(i).unwrap(), 40.7128, -74.006);
        let got = km.get(i).unwrap();
        assert!(
            (got - native).abs() <= 1e-9 * native.abs(),
            "row {i}: {got} vs {native}"
        );
        let (a, b) = (bc.get(i).unwrap(), bc_plain.get(i).unwrap());
        assert!((a - b).abs() <= 1e-12 * b.abs(), "row {i}: {a} vs {b}");
    }
    assert!(nulls > 0, "the data has null cities");
    assert!(coastal.iter().flatten().any(|c| c));
}

#[test]
fn the_language_example_runs_as_written() {
    // LANGUAGE.md's pipeline, verbatim, on gen_houses-shaped data with its
    // `geo` plugin built from this repository.
    let dir = std::env::temp_dir().join(format!("mlp-plugins-language-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let spec =
        std::fs::read_to_string(common::repo().join("tests/fixtures/ok/language_example.mlp"))
            .unwrap();
    std::fs::write(dir.join("houses.mlp"), &spec).unwrap();
    let mut csv = String::from(
        "id,sold_at,city,condition,sqft,lot_sqft,bedrooms,year_built,has_garage,price,sold_fast\n",
    );
    let cities = ["Austin", "Boston", "Chicago", "Denver"];
    for i in 0..1500u32 {
        let city = cities[(i as usize * 7 + i as usize / 3) % 4];
        let sqft = 800.0 + ((i * 37) % 2200) as f64;
        let coastal = if city == "Boston" { 60000.0 } else { 0.0 };
        let price = 50000.0 + 150.0 * sqft + coastal + ((i * 13) % 97) as f64 * 100.0;
        csv.push_str(&format!(
            "{i},2024-{:02}-{:02},{city},good,{sqft},{},{},{},{},{price},{}\n",
            i % 12 + 1,
            i % 28 + 1,
            sqft * 3.0,
            2 + i % 4,
            1950 + i % 70,
            i % 2 == 0,
            i % 3 == 0
        ));
    }
    std::fs::write(dir.join("data/houses.csv"), csv).unwrap();
    install_plugins(&dir, &["geo"]);
    let o = mlp(&dir, &["run", "."]);
    let out = text(&o);
    assert!(out.contains("ran     features.feats"), "{out}");
    let df = cached_frame(&dir, "features.feats");
    let city = df.column("city").unwrap().str().unwrap().clone();
    let coastal = df.column("coastal").unwrap().bool().unwrap().clone();
    for i in 0..df.height() {
        assert_eq!(coastal.get(i), Some(city.get(i) == Some("Boston")));
    }
}

#[test]
fn hostile_plugins_fail_clearly_and_leave_nothing_cached() {
    let cases: [(&str, &str, &str, &[&str]); 6] = [
        (
            "spin",
            "{ fuel = 100000 }",
            "spin.spin(lat)",
            &["plugin `spin` function `spin` ran out of fuel at row 1 (limit: 100000 instructions per row)", "fuel = N"],
        ),
        (
            "spin",
            "{ fuel = 1000000000000  timeout = 1s }",
            "spin.spin(lat)",
            &["plugin `spin` function `spin` timed out at row 1 (limit: 1s per batch)", "timeout = 60s"],
        ),
        (
            "bomb",
            "{ memory = 16MB }",
            "bomb.bomb(lat)",
            &["plugin `bomb` function `bomb` ran out of memory at row 1 (limit: 16 MB)", "memory = 256MB"],
        ),
        (
            "panics",
            "",
            "panics.checked_sqrt(lat - 30.0)",
            &["plugin `panics` function `checked_sqrt` panicked at row ", ": cannot take the square root of -", "hostile/panics/src/lib.rs"],
        ),
        (
            "liar",
            "",
            "liar.twice(lat)",
            &["plugin `liar` function `twice` returned a bad result: int values where its signature declares float", "rebuild `liar`"],
        ),
        (
            "liar",
            "",
            "liar.short(lat)",
            &["plugin `liar` function `short` returned a bad result: 599 values for a batch of 600 rows"],
        ),
    ];
    for (i, (plugin, limits, call, expected)) in cases.iter().enumerate() {
        let dir = project(
            &format!("hostile-{i}"),
            &format!(
                "plugin {plugin} = \"plugins/{plugin}.wasm\" {limits}\nfeatures f = data {{\n    x = {call}\n}}\n"
            ),
            &[plugin],
        );
        let started = std::time::Instant::now();
        let out = run_fails(&dir);
        for e in *expected {
            assert!(out.contains(e), "{plugin}: expected `{e}` in:\n{out}");
        }
        assert!(
            !out.contains("panicked at runtime/"),
            "the host panicked:\n{out}"
        );
        assert!(started.elapsed().as_secs() < 60, "{plugin} took too long");
        assert!(
            !has_cache_entry(&dir, "features.f"),
            "{plugin} left an entry"
        );
        assert!(
            has_cache_entry(&dir, "split.data"),
            "upstream stages are kept"
        );
    }
    // The panicking plugin names the first failing row: the first with
    // lat < 30.
    let dir = project(
        "hostile-row",
        "plugin panics = \"plugins/panics.wasm\"\nfeatures f = data {\n    x = panics.checked_sqrt(lat - 30.0)\n}\n",
        &["panics"],
    );
    let csv = shops_csv(600);
    let first_bad = csv
        .lines()
        .skip(1)
        .position(|l| l.split(',').nth(2).unwrap().parse::<f64>().unwrap() < 30.0)
        .unwrap();
    let out = run_fails(&dir);
    assert!(
        out.contains(&format!("panicked at row {}:", first_bad + 1)),
        "row {}:\n{out}",
        first_bad + 1
    );
}

#[test]
fn modules_without_signatures_or_for_a_newer_abi_are_refused_by_check() {
    for (plugin, code, words) in [
        ("nosig", "E0605", "has no usable signatures"),
        (
            "future",
            "E0606",
            "was built for plugin ABI 2, but this mlp supports ABI 1",
        ),
    ] {
        let dir = project(
            &format!("check-{plugin}"),
            &format!(
                "plugin {plugin} = \"plugins/{plugin}.wasm\"\nfeatures f = data {{\n    x = {plugin}.twice(lat)\n}}\n"
            ),
            &[plugin],
        );
        let o = mlp(&dir, &["check", "."]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let out = text(&o);
        assert!(
            out.contains(code) && out.contains(words),
            "{plugin}:\n{out}"
        );
        // Nothing ran.
        assert!(!dir.join(".mlp/cache").exists() || !has_cache_entry(&dir, "source.shops"));
    }
}

/// The stages `mlp plan --json` says will run.
fn will_run(dir: &Path) -> Vec<String> {
    let o = mlp(dir, &["plan", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["cached"] == false)
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_changed_plugin_reruns_exactly_the_stages_that_call_it() {
    let dir = project(
        "rerun",
        r#"
plugin geo  = "plugins/geo.wasm"
plugin math = "plugins/math.wasm"
features a = data {
    coastal = geo.coastal(city)
}
features b = data {
    km = math.haversine(lat, lon, 0.0, 0.0)
}
"#,
        &["geo", "math"],
    );
    run_ok(&dir);
    assert!(will_run(&dir).is_empty());
    // A rebuilt module: same functions, other bytes (a custom section
    // appended, as a changed build would differ).
    let path = dir.join("plugins/geo.wasm");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 6, 5, b'b', b'u', b'i', b'l', b'd']);
    std::fs::write(&path, bytes).unwrap();
    assert_eq!(will_run(&dir), vec!["features.a".to_string()]);
    let o = mlp(&dir, &["plan", "."]);
    assert!(text(&o).contains("plugins/geo.wasm"), "{}", text(&o));
    let out = run_ok(&dir);
    assert!(out.contains("ran     features.a"), "{out}");
    assert!(out.contains("cached  features.b"), "{out}");
}

#[test]
fn a_bundle_carries_its_plugins_and_predicts_without_the_files() {
    let dir = project(
        "bundle",
        r#"
plugin geo  = "plugins/geo.wasm"
plugin math = "plugins/math.wasm"
features f = data {
    coastal = coalesce(geo.coastal(city), false)
    km      = math.haversine(lat, lon, 40.7128, -74.006)
}
transform prep = f {
    drop city, id
}
model m = ridge(prep) {
    target = sales
    alpha  = 1.0
}
evaluate m on test {
    metrics rmse
    require rmse < 1000
}
deploy m as "shops"
"#,
        &["geo", "math"],
    );
    run_ok(&dir);
    std::fs::remove_dir_all(dir.join("plugins")).unwrap();
    std::fs::write(
        dir.join("req.csv"),
        "id,city,lat,lon,size\n1,Boston,42.36,-71.06,100\n2,Denver,39.74,-104.99,100\n",
    )
    .unwrap();
    let o = mlp(
        &dir,
        &[
            "predict", "shops", "--input", "req.csv", "--output", "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let preds: Vec<f64> = out
        .lines()
        .skip(1)
        .map(|l| {
            let header: Vec<&str> = out.lines().next().unwrap().split(',').collect();
            let k = header.iter().position(|h| *h == "prediction").unwrap();
            l.split(',').nth(k).unwrap().parse().unwrap()
        })
        .collect();
    assert_eq!(preds.len(), 2);
    // Same size, different coast and distance: the plugin features reached
    // the model.
    assert_ne!(preds[0], preds[1]);
    // The server runs the bundle's plugins the same way.
    let s = common::serve(&dir, &["shops"]);
    let (status, v) = common::post(
        &format!("{}/v1/predict", s.url),
        r#"{"columns": {"id": [1, 2], "city": ["Boston", "Denver"], "lat": [42.36, 39.74], "lon": [-71.06, -104.99], "size": [100.0, 100.0]}}"#,
    );
    assert_eq!(status, 200, "{v}");
    let served: Vec<f64> = v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    for (a, b) in served.iter().zip(&preds) {
        assert!((a - b).abs() <= 1e-9 * b.abs(), "served {a}, predicted {b}");
    }
}

#[test]
fn plugin_new_scaffolds_a_crate_that_builds_and_checks() {
    let dir = std::env::temp_dir().join(format!("mlp-plugins-new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let o = mlp(&dir, &["plugin", "new", "my_feats"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(dir.join("my_feats/Cargo.toml").is_file());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(["plugin", "build", "my_feats"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("my_feats.wasm"), "{out}");
    assert!(out.contains("double(x: float) -> float"), "{out}");
    let wasm = dir.join("my_feats/my_feats.wasm");
    assert!(wasm.is_file());
    let sigs = mlp_engine::project::read_signatures(&std::fs::read(&wasm).unwrap()).unwrap();
    assert!(sigs.function("double").is_some());
    // A second `new` does not overwrite.
    let o = mlp(&dir, &["plugin", "new", "my_feats"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
}

#[test]
fn the_pipeline_in_the_plugin_docs_runs() {
    let doc = std::fs::read_to_string(common::repo().join("docs/plugins.md")).unwrap();
    let block = doc
        .split("```mlp\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    let dir = project("docs", "", &["geo", "math"]);
    std::fs::write(dir.join("p.mlp"), block).unwrap();
    run_ok(&dir);
    let df = cached_frame(&dir, "features.f");
    for c in ["coastal", "region", "km", "size_bc"] {
        assert!(df.column(c).is_ok(), "{c} missing");
    }
    assert_eq!(df.column("coastal").unwrap().null_count(), 0);
}
