//! Regression tests, one per thing that broke (named after it), from trying
//! the tool as a new user would on data it had never seen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    cached_frame, deployed_project, empty_project as project, mlp, mlp_within, production_bundle,
    run_ok, text, DEPLOYED,
};
use mlp_engine::bundle::Bundle;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `mlp run` that fails (exit 1); its output.
fn run_fails(dir: &Path) -> String {
    let o = mlp(dir, &["run", "."]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    t
}

/// Every field a bundle carries must be part of the deploy stage's key: an
/// edit that changes the field must re-deploy. The destructuring below has
/// no `..`, so a field added to `Bundle` does not compile here until it is
/// given an edit that changes it (or a reason it cannot change on its own).
#[test]
fn every_bundled_field_is_part_of_the_deploy_key() {
    let dir = deployed_project("bundle-key", 300, 7);
    let edits = |b: &Bundle| -> Vec<(&'static str, &'static str, &'static str)> {
        let Bundle {
            format: _,       // with the engine version, which is in every key
            plan_version: _, // likewise
            engine: _,       // in every key
            name: _,         // the deploy stage's id: a new name is a new stage
            model_name: _,   // the model stage's id, likewise
            stages: _,       // definitions of the serving stages
            params: _,       // transform stages' fitted parameters
            over: _,         // features stages' `over` tables
            model: _,        // the model stage's output
            evaluations: _,  // the evaluate stages' reports
            training_stats: _,
            lineage: _,
            monitor: _,
            plugins: _, // bytes in the serving stages' keys (runtime/tests/plugins.rs)
            request_columns: _, // from the deploy stage's definition
            request_time: _, // likewise
            lookup_stages: _, // upstream of the model: in its key (tests/tables.rs)
        } = b;
        vec![
            (
                "monitor",
                "drift sqft with psi < 0.2",
                "drift sqft with psi < 0.3",
            ),
            ("evaluations", "require r2 >= 0.5", "require r2 >= 0.4"),
            (
                "params",
                "scale sqft with standard",
                "scale sqft with minmax",
            ),
            ("over", "mean(sqft) over city", "median(sqft) over city"),
            (
                "stages",
                "month     = month(sold_at)",
                "month     = day(sold_at)",
            ),
            ("model", "alpha   = [0.1, 1.0]", "alpha   = [0.2, 2.0]"),
            ("lineage", "range sqft 100..50000", "range sqft 50..50000"),
        ]
    };
    let first: Bundle = serde_json::from_value(production_bundle(&dir, "house-price")).unwrap();
    let mut pipeline = DEPLOYED.to_string();
    for (field, from, to) in edits(&first) {
        let before = production_bundle(&dir, "house-price");
        assert!(pipeline.contains(from), "{from}");
        pipeline = pipeline.replace(from, to);
        std::fs::write(dir.join("p.mlp"), &pipeline).unwrap();
        let o = mlp(&dir, &["run", ".", "--json"]);
        assert!(o.status.success(), "{field}: {}", text(&o));
        let after = production_bundle(&dir, "house-price");
        assert_ne!(
            before[field], after[field],
            "editing `{from}` to `{to}` left the bundle's `{field}` as it was"
        );
    }
    // The rule the monitor reports against is the edited one.
    let b = production_bundle(&dir, "house-price");
    assert_eq!(
        b["monitor"]["drift"][0]["threshold"], 0.3,
        "{}",
        b["monitor"]
    );
    // A no-op run leaves the registry alone.
    let t = run_ok(&dir);
    assert!(!t.contains("registered"), "{t}");
}

/// Flights: an airport (declared levels), a delay, whether it was late.
fn flights_csv(rows: usize, odd: &[(usize, &str)]) -> String {
    let airports = ["EWR", "JFK"];
    let mut s = String::from("id,origin,delay,late\n");
    for i in 1..=rows {
        let origin = odd
            .iter()
            .find(|(r, _)| *r == i)
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| airports[i % 2].to_string());
        let delay = ((i * 37) % 90) as f64 - 10.0 + (i % 2) as f64 * 15.0;
        let late = if delay > 30.0 { "yes" } else { "no" };
        s.push_str(&format!("{i},{origin},{delay:.1},{late}\n"));
    }
    s
}

const FLIGHTS: &str = r#"
source flights = csv("flights.csv") {
    id     : int
    origin : category["EWR", "JFK"]
    delay  : float
    late   : category["no", "yes"]
}
CHECK
split data = flights { train = 0.75  test = 0.25  key = id }
transform prep = data { encode origin with onehot }
model late = logistic_regression(prep) {
    target  = late
    exclude = id
}
evaluate late on test {
    metrics accuracy
    require accuracy >= 0.5
}
deploy late as "late"
"#;

#[test]
fn a_value_outside_declared_levels_fails_the_source() {
    let dir = project("levels-source");
    std::fs::write(dir.join("p.mlp"), FLIGHTS.replace("CHECK", "")).unwrap();
    std::fs::write(
        dir.join("flights.csv"),
        flights_csv(200, &[(17, "lga"), (40, "LGA")]),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains(
            "flights.csv, row 17, column `origin`: \"lga\" is not one of the declared levels"
        ),
        "{t}"
    );
    assert!(
        t.contains("nearest: \"EWR\"") || t.contains("nearest: \"JFK\""),
        "{t}"
    );
    assert!(t.contains("\"EWR\", \"JFK\""), "{t}");

    // With a quarantining check, those rows are set aside, and counted.
    std::fs::write(
        dir.join("p.mlp"),
        FLIGHTS.replace("CHECK", "check flights quarantine { not_null delay }"),
    )
    .unwrap();
    let t = run_ok(&dir);
    assert!(
        t.contains("quarantined 2 of 200 rows: the source's declared schema (2 rows)"),
        "{t}"
    );
    let kept = cached_frame(&dir, "check.flights");
    assert_eq!(kept.height(), 198);
    // The reader's helper columns do not travel downstream.
    assert!(kept.column("_parse_kind").is_err() && kept.column("_parse_error").is_err());
    let q = mlp(&dir, &["quarantine", "show", "flights"]);
    let shown = text(&q);
    assert!(q.status.success(), "{shown}");
    assert!(shown.contains("2 rows quarantined"), "{shown}");
    assert!(
        shown.contains("\"lga\" is not one of the declared levels"),
        "{shown}"
    );
    let q = mlp(&dir, &["quarantine", "export", "--output", "set-aside.csv"]);
    assert!(q.status.success(), "{}", text(&q));
    let exported = std::fs::read_to_string(dir.join("set-aside.csv")).unwrap();
    assert_eq!(exported.lines().count(), 3, "{exported}");
    assert!(exported.lines().next().unwrap().contains("_failed_rules"));
    assert!(!exported.contains("_parse_kind"), "{exported}");
    // An export to a folder that does not exist says so.
    let q = mlp(&dir, &["quarantine", "export", "--output", "nowhere/x.csv"]);
    assert!(
        text(&q).contains("the folder `nowhere` does not exist"),
        "{}",
        text(&q)
    );

    // At predict, the row with an unknown level is rejected alone.
    std::fs::write(
        dir.join("req.csv"),
        "id,origin,delay\n1,EWR,5.0\n2,lga,50.0\n3,JFK,70.0\n",
    )
    .unwrap();
    let o = mlp(
        &dir,
        &[
            "predict", "late", "--input", "req.csv", "--output", "out.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    let rejected = std::fs::read_to_string(dir.join("out.rejected.csv")).unwrap();
    assert!(rejected.contains("unknown_level"), "{rejected}");
    assert!(
        rejected.contains("\"\"lga\"\" is not one of the declared levels")
            || rejected.contains("lga"),
        "{rejected}"
    );
    assert_eq!(rejected.lines().count(), 2, "{rejected}");

    // At serve, likewise: the others are answered.
    let s = common::serve(&dir, &["late"]);
    let (status, v) = common::post(
        &format!("{}/v1/predict", s.url),
        r#"[{"id": 1, "origin": "EWR", "delay": 5.0}, {"id": 2, "origin": "lga", "delay": 50.0}, {"id": 3, "origin": "JFK", "delay": 70.0}]"#,
    );
    assert_eq!(status, 200, "{v}");
    let preds = v["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3, "{v}");
    assert!(
        preds[0].is_string() && preds[1].is_null() && preds[2].is_string(),
        "{v}"
    );
    assert_eq!(v["rejected"][0]["row"], 2, "{v}");
    assert_eq!(v["rejected"][0]["kind"], "unknown_level", "{v}");
    let (status, v) = common::post(
        &format!("{}/v1/predict", s.url),
        r#"[{"id": 2, "origin": "crew", "delay": 50.0}]"#,
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "unknown_level", "{v}");
}

#[test]
fn frame_rules_judge_the_rows_that_survive_quarantine() {
    let dir = project("quarantine-rows");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  x : float  y : float }
check d quarantine {
    range x 5..
    rows >= 300
}
"#,
    )
    .unwrap();
    let mut csv = String::from("id,x,y\n");
    for i in 0..400 {
        csv.push_str(&format!("{i},{},{}\n", (i % 10) as f64, i as f64));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    // 200 rows have x < 5: 200 survive, fewer than 300.
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("rows >= 300 (was 200 after quarantine)"), "{t}");
}

#[test]
fn a_time_split_never_puts_one_timestamp_on_both_sides() {
    let dir = project("time-split-ties");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { t : date "%Y-%m-%d"  x : float }
split s = d { train = 0.7  test = 0.3  order = t }
"#,
    )
    .unwrap();
    // Ten days, 13 rows each: the 70% boundary falls inside day 7.
    let mut csv = String::from("t,x\n");
    for i in 0..130 {
        csv.push_str(&format!("2024-01-{:02},{i}\n", 1 + (i * 7) % 10));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    run_ok(&dir);
    let df = cached_frame(&dir, "split.s");
    let t = df
        .column("t")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    let p = df
        .column("partition")
        .unwrap()
        .cast(&polars::prelude::DataType::String)
        .unwrap();
    let mut side: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for i in 0..df.height() {
        side.entry(t.get(i).unwrap().to_string())
            .or_default()
            .insert(p.get(i).unwrap().to_string());
    }
    for (day, parts) in &side {
        assert_eq!(parts.len(), 1, "{day} is in {parts:?}");
    }
    // And the latest days are the test rows.
    assert!(side["\"2024-01-10\""].contains("\"test\""), "{side:?}");
    assert!(side["\"2024-01-01\""].contains("\"train\""), "{side:?}");
}

#[test]
fn a_split_by_column_deploys_and_monitors() {
    let dir = project("split-column");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  part : category["train", "test"]  x : float  y : float }
split s = d { column = part }
model m = ridge(s) { target = y  exclude = id }
evaluate m on test { metrics rmse  require rmse < 100 }
deploy m as "m"
monitor m { drift x with psi < 5 }
"#,
    )
    .unwrap();
    let mut csv = String::from("id,part,x,y\n");
    for i in 0..200 {
        let part = if i % 4 == 0 { "test" } else { "train" };
        csv.push_str(&format!("{i},{part},{},{}\n", i % 17, 2 * (i % 17) + i % 3));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    run_ok(&dir);
    let b = production_bundle(&dir, "m");
    assert!(
        b["training_stats"]["x"]["count"].as_u64().unwrap() == 150,
        "{}",
        b["training_stats"]
    );
}

#[test]
fn learned_levels_whose_onehot_names_clash_get_unique_names() {
    let dir = project("onehot-clash");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  g : category  x : float  y : float }
split s = d { train = 0.8  test = 0.2  key = id }
transform t = s { encode g with onehot }
model m = ridge(t) { target = y  exclude = id }
evaluate m on test { metrics rmse  require rmse < 100 }
deploy m as "m"
"#,
    )
    .unwrap();
    let mut csv = String::from("id,g,x,y\n");
    for i in 0..200 {
        let g = ["a-b", "a b", "c"][i % 3];
        csv.push_str(&format!("{i},{g},{},{}\n", i % 7, i % 7 + i % 3));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    run_ok(&dir);
    let df = cached_frame(&dir, "transform.t");
    for c in ["g_a_b", "g_a_b_2", "g_c"] {
        assert!(
            df.column(c).is_ok(),
            "{c} missing: {:?}",
            df.get_column_names()
        );
    }
    // The bundle predicts with the same names.
    std::fs::write(dir.join("req.csv"), "id,g,x\n1,a b,3\n2,a-b,3\n").unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn aliases_follow_the_registry_name_rule() {
    let dir = deployed_project("alias-names", 300, 5);
    let (_, version) = mlp_store::registry::Registry::open(&dir.join(".mlp"))
        .resolve("house-price")
        .unwrap();
    for bad in ["bad alias!", "a@b", "../../x", "", "beef", "a\nb"] {
        let o = mlp(&dir, &["models", "promote", "house-price", &version, bad]);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", text(&o));
        assert!(
            text(&o).contains("cannot be an alias"),
            "{bad:?}: {}",
            text(&o)
        );
    }
    assert!(!dir.join(".mlp/registry/x").exists());
    let aliases =
        std::fs::read_to_string(dir.join(".mlp/registry/house-price/aliases.json")).unwrap();
    assert!(
        !aliases.contains("beef") && !aliases.contains("bad"),
        "{aliases}"
    );
    let o = mlp(
        &dir,
        &["models", "promote", "house-price", &version, "staging"],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn monitor_on_a_handful_of_rows_judges_no_rule() {
    let dir = deployed_project("monitor-few", 300, 9);
    let csv = common::houses_csv(2, 99);
    // Shifted far from training: would breach on enough rows.
    let shifted: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
                f[3] = "40000.0".into();
                f.join(",")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("new.csv"), shifted).unwrap();
    let o = mlp(&dir, &["monitor", "house-price", "--data", "new.csv"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("too few rows to judge drift: 2 compared, rules apply from 50"),
        "{t}"
    );
}

#[test]
fn predict_never_overwrites_its_input_and_writes_dates_as_declared() {
    let dir = project("predict-files");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { t : datetime "%Y-%m-%dT%H:%M:%SZ"  x : float  y : category["1. < HS Grad", "2. HS Grad"] }
split s = d { train = 0.8  test = 0.2  order = t }
features f = s { h = hour(t) }
model m = logistic_regression(f) { target = y  exclude = t }
evaluate m on test { metrics accuracy  require accuracy >= 0.3 }
deploy m as "m"
"#,
    )
    .unwrap();
    let mut csv = String::from("t,x,y\n");
    for i in 0..200 {
        let y = if (i * 7) % 10 < 5 {
            "1. < HS Grad"
        } else {
            "2. HS Grad"
        };
        csv.push_str(&format!(
            "2013-11-{:02}T{:02}:00:00Z,{},{y}\n",
            1 + i % 28,
            i % 24,
            (i * 7) % 10
        ));
    }
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    run_ok(&dir);
    std::fs::write(dir.join("req.csv"), "t,x\n2013-11-19T09:00:00Z,3\n").unwrap();
    let before = std::fs::read(dir.join("req.csv")).unwrap();
    for out in ["req.csv", "./req.csv"] {
        let o = mlp(
            &dir,
            &["predict", "m", "--input", "req.csv", "--output", out],
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("is the input file"), "{}", text(&o));
    }
    // The previous run's rejected file as input, written to where its
    // rejected rows would go.
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "req.csv"],
    );
    assert_eq!(o.status.code(), Some(2));
    std::fs::copy(dir.join("req.csv"), dir.join("out.rejected.csv")).unwrap();
    let o = mlp(
        &dir,
        &[
            "predict",
            "m",
            "--input",
            "out.rejected.csv",
            "--output",
            "out.csv",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read(dir.join("req.csv")).unwrap(), before);
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "pred.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("pred.csv")).unwrap();
    assert!(out.contains("2013-11-19T09:00:00Z"), "{out}");
    // Probability columns keep their class labels, and the server's
    // schema says which column is which class's.
    assert!(
        out.lines().next().unwrap().contains("proba_1. < HS Grad"),
        "{out}"
    );
    let s = common::serve(&dir, &["m"]);
    let (_, schema) = common::get(&format!("{}/v1/schema", s.url));
    let schema: Value = serde_json::from_str(&schema).unwrap();
    assert_eq!(
        schema["probability_columns"][0],
        serde_json::json!({"class": "1. < HS Grad", "column": "proba_1. < HS Grad"}),
        "{schema}"
    );
}

#[test]
fn invocations_read_csv_and_refuse_other_types_by_name() {
    let dir = deployed_project("invocations-csv", 300, 13);
    let s = common::serve(&dir, &["house-price"]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let send = |ct: &str, body: &str| {
        let mut r = agent
            .post(&format!("{}/invocations", s.url))
            .header("content-type", ct)
            .send(body)
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        (status, v)
    };
    let (status, v) = send(
        "text/csv",
        "id,sold_at,city,sqft,bedrooms\n1,2020-03-15,Austin,1500.0,3\n2,2020-04-15,Boston,900,\n",
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 2, "{v}");
    // The same rows as JSON get the same answers.
    let (_, j) = send(
        "application/json",
        r#"{"dataframe_records": [{"id": 1, "sold_at": "2020-03-15", "city": "Austin", "sqft": 1500.0, "bedrooms": 3}, {"id": 2, "sold_at": "2020-04-15", "city": "Boston", "sqft": 900, "bedrooms": null}]}"#,
    );
    assert_eq!(v["predictions"], j["predictions"]);
    let (status, v) = send(
        "text/csv",
        "id,sold_at,city,sqft,bedrooms\n1,2020-03-15,Austin,big,3\n",
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "wrong_type", "{v}");
    let (status, v) = send("application/xml", "<rows/>");
    assert_eq!(status, 415, "{v}");
    assert_eq!(v["error"]["kind"], "unsupported_media_type", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("text/csv"),
        "{v}"
    );
}

#[test]
fn a_request_needs_exactly_the_columns_the_model_reads() {
    let dir = project("request-schema");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source h = csv("h.csv") {
    id        : int
    part      : category["train", "test"]
    sqft      : float
    beds      : int?
    note      : str
    sold_fast : bool
    price     : float
}
check h { range sqft 100.. }
split s = h { column = part }
transform t = s {
    impute beds with median
    drop note
}
model m = ridge(t) {
    target  = price
    exclude = id, sold_fast
}
evaluate m on test { metrics rmse  require rmse < 1000000 }
deploy m as "m"
"#,
    )
    .unwrap();
    let mut csv = String::from("id,part,sqft,beds,note,sold_fast,price\n");
    for i in 0..120 {
        let part = if i % 5 == 0 { "test" } else { "train" };
        let beds = if i % 7 == 0 {
            String::new()
        } else {
            (1 + i % 4).to_string()
        };
        csv.push_str(&format!(
            "{i},{part},{},{beds},n{i},{},{}\n",
            500 + i * 10,
            i % 2 == 0,
            1000 + i * 30 + (i % 4) * 100
        ));
    }
    std::fs::write(dir.join("h.csv"), csv).unwrap();
    run_ok(&dir);
    // The bundle, the server's schema and OpenAPI: sqft and beds only.
    let b = production_bundle(&dir, "m");
    let names: Vec<&str> = b["request_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sqft", "beds"]);
    let s = common::serve(&dir, &["m"]);
    let (_, schema) = common::get(&format!("{}/v1/schema", s.url));
    let schema: Value = serde_json::from_str(&schema).unwrap();
    let cols: Vec<&str> = schema["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["sqft", "beds"]);
    // A nullable column may be left out, at serve and at predict alike.
    let (status, served) = common::post(&format!("{}/v1/predict", s.url), r#"[{"sqft": 1500}]"#);
    assert_eq!(status, 200, "{served}");
    std::fs::write(dir.join("req.csv"), "sqft\n1500\n").unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let predicted: f64 = out
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        predicted,
        served["predictions"][0].as_f64().unwrap(),
        "{out}"
    );
    // Other columns are carried through as the file holds them.
    std::fs::write(
        dir.join("req.csv"),
        "id,sqft,beds,sold_fast\n7,1500,3,true\n",
    )
    .unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert!(out.lines().next().unwrap().contains("id"), "{out}");
    assert!(
        out.lines().nth(1).unwrap().contains(",7") || out.lines().nth(1).unwrap().starts_with("7"),
        "{out}"
    );
}

#[test]
fn infer_proposes_only_what_its_sample_parses_and_the_block_runs() {
    let dir = project("infer");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut csv = String::from("when,day,code,origin,temp\n");
    for i in 0..300 {
        csv.push_str(&format!(
            "2013-01-{:02}T{:02}:00:00Z,{:02}/{:02}/2020,{:03},{},{}.5\n",
            1 + i % 28,
            i % 24,
            1 + i % 12,
            1 + i % 28,
            i % 50,
            ["EWR", "JFK", "LGA"][i % 3],
            i % 30
        ));
    }
    std::fs::write(dir.join("data/w.csv"), csv).unwrap();
    // A sample of the first 100 rows of 300: no levels declared from it.
    let o = mlp(&dir, &["infer", "data/w.csv", "--rows", "100"]);
    let block = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(block.contains("csv(\"data/w.csv\")"), "{block}");
    assert!(
        block.contains("when   : datetime \"%Y-%m-%dT%H:%M:%SZ\""),
        "{block}"
    );
    assert!(block.contains("day    : date \"%m/%d/%Y\""), "{block}");
    assert!(block.contains("code   : str"), "{block}");
    assert!(block.contains("origin : category\n"), "{block}");
    // The whole file: levels declared.
    let o = mlp(&dir, &["infer", "data/w.csv"]);
    let whole = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        whole.contains("category[\"EWR\", \"JFK\", \"LGA\"]"),
        "{whole}"
    );
    // Both blocks read the file as they declare it.
    for b in [&block, &whole] {
        std::fs::write(dir.join("p.mlp"), b).unwrap();
        run_ok(&dir);
    }
    // From another folder, the path is relative to the pipeline's.
    std::fs::create_dir_all(dir.join("pipelines")).unwrap();
    let o = mlp(&dir, &["infer", "data/w.csv", "--for", "pipelines"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("csv(\"../data/w.csv\")"));
}

/// Two registered versions of `house-price` (alpha 1 then 2), newest last.
fn two_versions(name: &str) -> (PathBuf, String, String) {
    let dir = deployed_project(name, 300, 21);
    let reg = mlp_store::registry::Registry::open(&dir.join(".mlp"));
    let (_, first) = reg.resolve("house-price").unwrap();
    let pipeline = DEPLOYED.replace("alpha   = [0.1, 1.0]", "alpha   = 2.0");
    std::fs::write(dir.join("p.mlp"), pipeline).unwrap();
    run_ok(&dir);
    let (_, second) = reg.resolve("house-price").unwrap();
    assert_ne!(first, second);
    (dir, first, second)
}

#[test]
fn concurrent_alias_moves_lose_nothing_and_every_line_parses() {
    let (dir, first, second) = two_versions("registry-race");
    let exe = env!("CARGO_BIN_EXE_mlp");
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (dir, first, second) = (dir.clone(), first.clone(), second.clone());
            std::thread::spawn(move || {
                for k in 0..6 {
                    let args: Vec<String> = match (w + k) % 3 {
                        0 => vec![
                            "promote".into(),
                            "house-price".into(),
                            first.clone(),
                            "staging".into(),
                        ],
                        1 => vec![
                            "promote".into(),
                            "house-price".into(),
                            second.clone(),
                            "staging".into(),
                        ],
                        _ => vec!["rollback".into(), "house-price".into(), "staging".into()],
                    };
                    let _ = std::process::Command::new(exe)
                        .arg("models")
                        .args(&args)
                        .current_dir(&dir)
                        .output()
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let root = dir.join(".mlp/registry/house-price");
    // Every line of every log is one whole record.
    for log in ["history.jsonl", "registered.jsonl"] {
        let text = std::fs::read_to_string(root.join(log)).unwrap();
        for (i, line) in text.lines().enumerate() {
            assert!(
                serde_json::from_str::<Value>(line).is_ok(),
                "{log}, line {}: {line}",
                i + 1
            );
        }
    }
    // No move is lost: each alias's moves form one chain, the last of which
    // is where the alias points.
    let history = std::fs::read_to_string(root.join("history.jsonl")).unwrap();
    let aliases: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("aliases.json")).unwrap()).unwrap();
    for alias in ["staging", "production"] {
        let moves: Vec<Value> = history
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|m| m["alias"] == alias)
            .collect();
        for pair in moves.windows(2) {
            assert_eq!(
                pair[1]["from"], pair[0]["to"],
                "a lost move of @{alias}: {pair:?}"
            );
        }
        assert_eq!(aliases[alias], moves.last().unwrap()["to"], "@{alias}");
    }
    // Every version's bytes match its name; no stray folder.
    let reg = mlp_store::registry::Registry::open(&dir.join(".mlp"));
    for (v, _) in reg.versions("house-price").unwrap() {
        reg.read_verified("house-price", &v).unwrap();
    }
    assert!(!dir.join(".mlp/.mlp").exists());
}

#[test]
fn a_damaged_registry_is_an_error_everywhere_and_never_overwritten() {
    let (dir, _first, second) = two_versions("registry-damage");
    let aliases = dir.join(".mlp/registry/house-price/aliases.json");
    let good = std::fs::read(&aliases).unwrap();
    let s = common::serve(&dir, &["house-price"]);
    std::fs::write(&aliases, b"{\"production\": ").unwrap();
    for args in [
        vec![
            "models",
            "promote",
            "house-price",
            &second[..12],
            "production",
        ],
        vec!["models", "rollback", "house-price", "production"],
        vec!["models", "list"],
        vec!["models", "show", "house-price"],
        vec![
            "predict",
            "house-price",
            "--input",
            "houses.csv",
            "--output",
            "out.csv",
        ],
    ] {
        let o = mlp(&dir, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("aliases.json"), "{args:?}: {}", text(&o));
    }
    assert_eq!(std::fs::read(&aliases).unwrap(), b"{\"production\": ");
    // The server keeps its version and says why on /health and /metrics.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (_, health) = common::get(&format!("{}/health", s.url));
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["version"], second, "{health}");
    let (_, metrics) = common::get(&format!("{}/metrics", s.url));
    assert!(metrics.contains("mlp_registry_fault 1"), "{metrics}");
    std::fs::write(&aliases, &good).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (_, health) = common::get(&format!("{}/health", s.url));
    assert!(health.contains("\"status\":\"ok\""), "{health}");

    // A changed byte in a bundle is refused, naming both hashes.
    let bundle = dir.join(format!(".mlp/registry/house-price/versions/{second}.json"));
    let original = std::fs::read(&bundle).unwrap();
    let text_b = String::from_utf8(original.clone()).unwrap();
    let at = text_b.find("\"intercept\": ").unwrap() + 14;
    let mut damaged = original.clone();
    damaged[at] = if damaged[at] == b'1' { b'2' } else { b'1' };
    std::fs::write(&bundle, &damaged).unwrap();
    for args in [
        vec![
            "predict",
            "house-price",
            "--input",
            "houses.csv",
            "--output",
            "out.csv",
        ],
        vec!["models", "show", "house-price"],
        vec!["monitor", "house-price", "--data", "houses.csv"],
    ] {
        let o = mlp(&dir, &args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(
            t.contains(&second) && t.contains("damaged"),
            "{args:?}: {t}"
        );
    }
    // The next run puts the version back, as a deleted registry.
    let o = mlp(&dir, &["plan", "."]);
    assert!(
        text(&o).contains("in the registry is damaged"),
        "{}",
        text(&o)
    );
    run_ok(&dir);
    assert_eq!(std::fs::read(&bundle).unwrap(), original);
    std::fs::remove_dir_all(dir.join(".mlp/registry")).unwrap();
    let t = run_ok(&dir);
    assert!(t.contains("registered \"house-price\""), "{t}");
    let o = mlp(
        &dir,
        &[
            "predict",
            "house-price",
            "--input",
            "houses.csv",
            "--output",
            "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_non_finite_feature_rejects_its_row_alone() {
    let dir = project("non-finite");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  a : float  b : float  y : float }
split s = d { train = 0.8  test = 0.2  key = id }
features f = s { ratio = a / b }
model m = ridge(f) { target = y  exclude = id }
evaluate m on test { metrics rmse  require rmse < 1000 }
deploy m as "m"
"#,
    )
    .unwrap();
    let mut csv = String::from("id,a,b,y\n");
    for i in 0..200 {
        csv.push_str(&format!("{i},{},{},{}\n", i % 9, 1 + i % 5, i % 9 + i % 5));
    }
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    run_ok(&dir);
    // b = 0 makes `ratio` infinite; NaN with a = 0 too.
    std::fs::write(dir.join("req.csv"), "a,b\n1,2\n3,0\n0,0\n4,1\n").unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    let rejected = std::fs::read_to_string(dir.join("out.rejected.csv")).unwrap();
    assert_eq!(rejected.lines().count(), 3, "{rejected}");
    assert!(
        rejected.contains("non_finite") && rejected.contains("feature `ratio` is inf"),
        "{rejected}"
    );
    assert!(rejected.contains("feature `ratio` is NaN"), "{rejected}");
    // The server answers the others.
    let s = common::serve(&dir, &["m"]);
    let (status, v) = common::post(
        &format!("{}/v1/predict", s.url),
        r#"[{"a": 1, "b": 2}, {"a": 3, "b": 0}]"#,
    );
    assert_eq!(status, 200, "{v}");
    assert!(
        v["predictions"][0].is_number() && v["predictions"][1].is_null(),
        "{v}"
    );
    assert_eq!(v["rejected"][0]["kind"], "non_finite", "{v}");
    let (status, v) = common::post(&format!("{}/v1/predict", s.url), r#"[{"a": 3, "b": 0}]"#);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "non_finite", "{v}");

    // In training, a non-finite value where a float is declared is a bad
    // value, named with its row.
    csv.push_str("200,inf,1,3\n");
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("d.csv, row 201, column `a`: \"inf\" is not a valid float"),
        "{t}"
    );
}

#[test]
fn a_file_in_another_encoding_is_named_with_its_line_and_the_fix() {
    let dir = project("encodings");
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv") { id : int  city : category }"#,
    )
    .unwrap();
    // Latin-1, as a spreadsheet exports it: "Zürich" on the third line.
    let mut latin = b"id,city\n1,Bern\n2,Z".to_vec();
    latin.extend_from_slice(&[0xFC]);
    latin.extend_from_slice(b"rich\n");
    std::fs::write(dir.join("d.csv"), &latin).unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("d.csv, line 3, byte 4: not UTF-8 text (byte 0xFC)"),
        "{t}"
    );
    assert!(t.contains("iconv -f latin1 -t utf-8"), "{t}");
    // `mlp infer` says the same.
    let o = mlp(&dir, &["infer", "d.csv"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("line 3, byte 4: not UTF-8 text (byte 0xFC)")
            && text(&o).contains("iconv -f latin1"),
        "{}",
        text(&o)
    );
    // UTF-16, as some tools write "Unicode text".
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend(
        "id,city\n1,Bern\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes()),
    );
    std::fs::write(dir.join("d.csv"), &utf16).unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("d.csv, line 1, byte 1: not UTF-8 text (a UTF-16 byte-order mark)"),
        "{t}"
    );
    assert!(t.contains("iconv -f utf-16 -t utf-8"), "{t}");
    // The same for NDJSON.
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = json("d.ndjson") { id : int  city : category }"#,
    )
    .unwrap();
    let mut latin = b"{\"id\": 1, \"city\": \"Bern\"}\n{\"id\": 2, \"city\": \"Z".to_vec();
    latin.extend_from_slice(&[0xFC]);
    latin.extend_from_slice(b"rich\"}\n");
    std::fs::write(dir.join("d.ndjson"), &latin).unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("d.ndjson, line 2, byte 21: not UTF-8 text (byte 0xFC)"),
        "{t}"
    );
    // UTF-8 with a byte-order mark and Windows line ends reads.
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv") { id : int  city : category }"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("d.csv"),
        "\u{feff}id,city\r\n1,Bern\r\n2,Zürich\r\n",
    )
    .unwrap();
    run_ok(&dir);
    let f = cached_frame(&dir, "source.d");
    assert_eq!(
        f.column("city").unwrap().str().unwrap().get(1),
        Some("Zürich")
    );
}

#[test]
fn a_header_naming_a_column_twice_or_another_separator_is_named() {
    let dir = project("headers");
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv") { a : float  b : int }"#,
    )
    .unwrap();
    // Which `a` to read would be a guess.
    std::fs::write(dir.join("d.csv"), "a,b,a\n1.5,2,3.5\n").unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("d.csv: the header names `a` twice (fields 1 and 3)"),
        "{t}"
    );
    assert!(t.contains("rename one of them"), "{t}");
    // A column nobody reads may repeat.
    std::fs::write(dir.join("d.csv"), "a,x,b,x\n1.5,0,2,0\n").unwrap();
    run_ok(&dir);
    // A semicolon-separated file: the fix is named.
    std::fs::write(dir.join("d.csv"), "a;b\n1.5;2\n").unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("the file looks semicolon-separated; add `delimiter = \";\"`"),
        "{t}"
    );
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv", delimiter = ";") { a : float  b : int }"#,
    )
    .unwrap();
    run_ok(&dir);
    std::fs::write(dir.join("d.csv"), "a\tb\n1.5\t2\n").unwrap();
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv") { a : float  b : int }"#,
    )
    .unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("the file looks tab-separated; add `delimiter = \"\\t\"`"),
        "{t}"
    );
}

#[test]
fn predicted_and_rejected_rows_keep_the_files_columns_under_declared_names() {
    let dir = project("raw-names");
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = csv("d.csv") { x : float as "X Value"  y : float }
split s = d { train = 0.8  test = 0.2  seed = 3 }
model m = ridge(s) { target = y }
deploy m as "m"
"#,
    )
    .unwrap();
    let mut csv = String::from("X Value,y\n");
    for i in 0..200 {
        csv.push_str(&format!("{i},{}\n", 2 * i + 1));
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    run_ok(&dir);
    // A file column named as the read column is declared (`x`), beside it.
    std::fs::write(dir.join("req.csv"), "id,x,X Value\na,9,1.5\nb,9,lots\n").unwrap();
    let o = mlp(
        &dir,
        &["predict", "m", "--input", "req.csv", "--output", "out.csv"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert!(out.starts_with("_row,id,x,prediction\n1,a,1.5,"), "{out}");
    let rejected = std::fs::read_to_string(dir.join("out.rejected.csv")).unwrap();
    assert!(
        rejected.starts_with("_row,id,x,_failed_rules,_kind\n2,b,lots,"),
        "{rejected}"
    );
}

#[test]
fn ndjson_reads_like_csv_and_says_where_it_breaks() {
    let dir = project("ndjson");
    std::fs::write(
        dir.join("p.mlp"),
        r#"source d = json("d.ndjson") { id : int  x : float  tag : str? }"#,
    )
    .unwrap();
    // A byte-order mark and blank lines, as CSV accepts them.
    std::fs::write(
        dir.join("d.ndjson"),
        "\u{feff}{\"id\": 1, \"x\": 1.5, \"tag\": \"a\"}\n\n{\"id\": 2, \"x\": 2.5}\n   \n{\"id\": 3, \"x\": 3.5, \"tag\": \"c\"}\n",
    )
    .unwrap();
    run_ok(&dir);
    assert_eq!(cached_frame(&dir, "source.d").height(), 3);
    // A value nested too deep, even in a key nobody reads.
    let deep = format!(
        "{{\"id\": 1, \"x\": 1.0}}\n{{\"id\": 2, \"x\": 2.0, \"junk\": {}1{}}}\n",
        "[".repeat(3000),
        "]".repeat(3000)
    );
    std::fs::write(dir.join("d.ndjson"), deep).unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("d.ndjson, line 2, column 92: a value nested more than 64 levels deep"),
        "{t}"
    );
    // A key whose values change kind: the row and column are named.
    std::fs::write(
        dir.join("d.ndjson"),
        "{\"id\": 1, \"x\": 1.0, \"tag\": \"a\"}\n{\"id\": 2, \"x\": \"lots\"}\n",
    )
    .unwrap();
    let t = run_fails(&dir);
    assert!(
        t.contains("row 2, column `x`: \"lots\" is not a valid float"),
        "{t}"
    );
    // A line that is not JSON.
    std::fs::write(
        dir.join("d.ndjson"),
        "{\"id\": 1, \"x\": 1.0}\n{\"id\": 2, \"x\": }\n",
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(
        t.contains("d.ndjson, line 2: column 16: not JSON: expected value"),
        "{t}"
    );
}

#[test]
fn devices_and_pipes_are_refused_not_read_forever() {
    let dir = project("special-files");
    std::fs::write(
        dir.join("p.mlp"),
        "plugin z = \"/dev/zero\"\nsource d = csv(\"d.csv\") { x : float }\nfeatures f = d { y = z.f(x) }\n",
    )
    .unwrap();
    std::fs::write(dir.join("d.csv"), "x\n1\n").unwrap();
    let o = mlp_within(&dir, 30, &["check", "."]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("not a regular file"), "{t}");
    let fifo = dir.join("rows.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let o = mlp_within(&dir, 30, &["infer", "rows.csv"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("not a regular file"), "{t}");
}

#[test]
fn messages_name_rows_as_in_the_file_and_cut_long_values() {
    let dir = project("messages");
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source d = csv("d.csv") { id : int  part : category["train", "test"]  a : float  b : float  y : float }
split s = d { column = part }
features f = s { r = a / b }
model m = ridge(f) { target = y  exclude = id }
"#,
    )
    .unwrap();
    let mut csv = String::from("id,part,a,b,y\n");
    for i in 1..=20 {
        let part = if [3, 7, 11].contains(&i) {
            "test"
        } else {
            "train"
        };
        let b = if i == 16 { 0 } else { 1 + i % 3 };
        csv.push_str(&format!("{i},{part},{},{b},{}\n", i % 5 + 1, i % 7));
    }
    std::fs::write(dir.join("d.csv"), &csv).unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    // Data row 16 is the 13th train row: the message says 16.
    assert!(
        t.contains("model input `r` has a missing or infinite value at row 16 of the data"),
        "{t}"
    );

    // A 10 MB value is not echoed whole.
    let huge = "9".repeat(10 << 20) + "x";
    std::fs::write(
        dir.join("d.csv"),
        format!("id,part,a,b,y\n1,train,{huge},1,1\n"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.len() < 10_000, "{} bytes of message", t.len());
    assert!(t.contains("column `a`"), "{}", &t[..t.len().min(2000)]);

    // `mlp monitor --html` given a folder, and a `columns` request of scalars.
    let dir = deployed_project("messages-serve", 300, 3);
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    std::fs::write(dir.join("new.csv"), common::houses_csv(60, 4)).unwrap();
    let o = mlp(
        &dir,
        &[
            "monitor",
            "house-price",
            "--data",
            "new.csv",
            "--html",
            "reports",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("--html `reports` is a folder"),
        "{}",
        text(&o)
    );
    let s = common::serve(&dir, &["house-price"]);
    let (status, v) = common::post(
        &format!("{}/v1/predict", s.url),
        r#"{"columns": {"sqft": 5}}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("column `sqft` must be a list"),
        "{v}"
    );
}

/// `unique` on one column first looks for repeats without the window
/// count: keys that strictly rise or fall, or as many distinct values as
/// rows (nulls aside), pass; a text key or an unsorted int key that
/// repeats still fails with its rows counted.
#[test]
fn unique_keys_without_repeats_pass_and_repeats_fail() {
    let dir = project("unique-fast");
    let check = |csv: &str, ty: &str| -> std::process::Output {
        std::fs::write(dir.join("d.csv"), csv).unwrap();
        std::fs::write(
            dir.join("p.mlp"),
            format!(
                "source d = csv(\"d.csv\") {{\n  k : {ty}\n  x : int\n}}\ncheck d {{ unique k }}\n"
            ),
        )
        .unwrap();
        mlp(&dir, &["run", "."])
    };
    for (csv, ty) in [
        ("k,x\n1,0\n2,0\n5,0\n", "int"),
        ("k,x\n9,0\n4,0\n-3,0\n", "int"),
        ("k,x\n3,0\n,0\n1,0\n2,0\n,0\n", "int?"),
        ("k,x\nb,0\na,0\nc,0\n", "str"),
        ("k,x\n2024-01-02,0\n2024-01-01,0\n2024-01-03,0\n", "date"),
    ] {
        let o = check(csv, ty);
        assert!(o.status.success(), "{csv}: {}", text(&o));
    }
    for (csv, ty) in [
        ("k,x\n1,0\n2,0\n1,0\n", "int"),
        ("k,x\n1,0\n2,0\n2,0\n", "int"),
        ("k,x\nb,0\na,0\nb,0\n", "str"),
        ("k,x\n1.5,0\n2.5,0\n1.5,0\n", "float"),
    ] {
        let o = check(csv, ty);
        assert!(!o.status.success(), "{csv}: {}", text(&o));
        assert!(
            text(&o).contains("unique k (2 rows)"),
            "{csv}: {}",
            text(&o)
        );
    }
}

/// `unique` found no duplicate at all (a count over a literal was 1 in
/// every group): a duplicated key fails the check, naming both rows; a
/// null key duplicates nothing. `unique` is a rule on the whole frame, so
/// a quarantining check still stops on it, saying how many rows.
#[test]
fn unique_finds_duplicated_keys() {
    let dir = project("unique-duplicates");
    std::fs::write(dir.join("d.csv"), "id,x\n1,2\n1,3\n2,4\n,5\n,6\n").unwrap();
    let pipeline = |quarantine: &str| {
        format!("source d = csv(\"d.csv\") {{\n  id : int?\n  x : int\n}}\ncheck d {quarantine} {{ unique id }}\n")
    };
    std::fs::write(dir.join("p.mlp"), pipeline("")).unwrap();
    let t = run_fails(&dir);
    assert!(t.contains("unique id (2 rows)"), "{t}");
    assert!(
        t.contains(r#"{"row":1,"id":1}"#) && t.contains(r#"{"row":2,"id":1}"#),
        "{t}"
    );
    std::fs::write(dir.join("p.mlp"), pipeline("quarantine")).unwrap();
    let t = run_fails(&dir);
    assert!(t.contains("unique id (2 rows after quarantine)"), "{t}");
}
