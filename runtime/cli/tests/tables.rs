//! Joins and histories end to end: training and serving compute the same
//! values (bit for bit, on random tables with ties at `at`, empty histories,
//! keys absent on the right and nulls), serving builds its lookup state
//! from the latest data and refreshes it, and bad tables end in clear
//! errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cached_frame, empty_project, get, mlp, post, repo, serve, text};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// A small xorshift generator: the tests need no crate for randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self, m: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % m
    }
}

const PIPELINE: &str = r#"
source customers = csv("customers.csv") {
    customer_id : int
    segment     : category["a", "b", "c"]
    score       : float
}
check customers { unique customer_id }

source events = csv("events.csv") {
    customer_id : int?
    at          : datetime "%Y-%m-%dT%H:%M:%S"
    amount      : float?
    channel     : category["web", "app", "store"]
}

source labels = csv("labels.csv") {
    id          : int
    customer_id : int
    as_of       : date "%Y-%m-%d"
    y           : float
}

join examples = labels with customers on customer_id

history hist = examples with events on customer_id at as_of by at {
    n        = count()
    n3       = count() within 3d
    s        = sum(amount) within 20d
    m        = mean(amount) within 30d
    lo       = min(amount)
    hi       = max(amount) within 10d
    sd       = std(amount)
    last_amt = last(amount)
    quiet    = days_since(max(at))
    app      = mean(channel == "app") within 15d
    apps     = sum(channel == "app")
}

split data = hist { train = 0.7  test = 0.3  seed = 5 }

transform prep = data {
    impute score, m, lo, hi, sd, last_amt, quiet, app with median
    encode segment with onehot
}

model m = linear_regression(prep) {
    target  = y
    exclude = id, as_of
}

evaluate m on test {
    metrics rmse
    require rmse < 1000000
}

deploy m as "m"
"#;

/// Random customers, events and labels in `dir`.
fn random_tables(dir: &Path, seed: u64) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut customers = String::from("customer_id,segment,score\n");
    for id in 1..=40u64 {
        if id % 7 == 0 {
            continue; // keys absent on the right
        }
        let seg = ["a", "b", "c"][r.next(3) as usize];
        customers.push_str(&format!("{id},{seg},{}\n", r.next(1000) as f64 / 100.0));
    }
    let mut events = String::from("customer_id,at,amount,channel\n");
    for _ in 0..400 {
        let key = if r.next(20) == 0 {
            String::new() // a null key
        } else {
            (1 + r.next(45)).to_string()
        };
        // Midnight often: ties with the labels' dates.
        let hour = [0, 0, 6, 12][r.next(4) as usize];
        let day = r.next(60);
        let amount = if r.next(10) == 0 {
            String::new()
        } else {
            format!("{}", r.next(20000) as f64 / 100.0)
        };
        let channel = ["web", "app", "store"][r.next(3) as usize];
        events.push_str(&format!(
            "{key},{}T{hour:02}:00:00,{amount},{channel}\n",
            date(day)
        ));
    }
    let mut labels = String::from("id,customer_id,as_of,y\n");
    for id in 1..=300u64 {
        let key = 1 + r.next(50); // some never seen anywhere
        labels.push_str(&format!(
            "{id},{key},{},{}\n",
            date(r.next(75)),
            r.next(10000) as f64 / 100.0
        ));
    }
    std::fs::write(dir.join("customers.csv"), customers).unwrap();
    std::fs::write(dir.join("events.csv"), events).unwrap();
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
}

/// 2024-01-01 plus `days`, as text.
fn date(days: u64) -> String {
    let d = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(days);
    d.format("%Y-%m-%d").to_string()
}

/// `mlp predict` output: id -> prediction.
fn predicted(dir: &Path, input: &str) -> BTreeMap<i64, f64> {
    let o = mlp(
        dir,
        &["predict", "m", "--input", input, "--output", "out.csv"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (i, p) = (
        header.iter().position(|h| *h == "id").unwrap(),
        header.iter().position(|h| *h == "prediction").unwrap(),
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[i].parse().unwrap(), f[p].parse().unwrap())
        })
        .collect()
}

/// Every aggregate, computed by the training run and by `mlp predict` on
/// the same rows, gives the same prediction to the last bit: on random
/// tables with ties at `at`, empty histories, keys absent on the right,
/// null keys and null amounts.
#[test]
fn training_and_serving_agree_bit_for_bit_on_random_tables() {
    for seed in [1u64, 2, 3] {
        let dir = empty_project(&format!("tables-agree-{seed}"));
        random_tables(&dir, seed);
        std::fs::write(dir.join("p.mlp"), PIPELINE).unwrap();
        let o = mlp(&dir, &["run", "."]);
        assert!(o.status.success(), "{}", text(&o));
        // The run says what it left out.
        assert!(
            text(&o).contains("have a null key or time and count for no row"),
            "{}",
            text(&o)
        );
        let trained = cached_frame(&dir, "model.m");
        let ids = trained.column("id").unwrap().i64().unwrap().clone();
        let preds = trained.column("prediction").unwrap().f64().unwrap().clone();
        let served = predicted(&dir, "labels.csv");
        assert_eq!(served.len(), ids.len(), "every row answered");
        for (id, p) in ids.iter().zip(preds.iter()) {
            let (id, p) = (id.unwrap(), p.unwrap());
            assert_eq!(
                served[&id].to_bits(),
                p.to_bits(),
                "seed {seed}, row {id}: served {} trained {p}",
                served[&id]
            );
        }
        // The same rows one at a time through the server.
        let s = serve(&dir, &["m"]);
        let labels = std::fs::read_to_string(dir.join("labels.csv")).unwrap();
        for l in labels.lines().skip(1).take(25) {
            let f: Vec<&str> = l.split(',').collect();
            let body = format!(
                r#"[{{"id": {}, "customer_id": {}, "as_of": "{}"}}]"#,
                f[0], f[1], f[2]
            );
            let (status, v) = post(&format!("{}/v1/predict", s.url), &body);
            assert_eq!(status, 200, "{v}");
            let got = v["predictions"][0].as_f64().unwrap();
            let id: i64 = f[0].parse().unwrap();
            assert_eq!(got.to_bits(), served[&id].to_bits(), "row {id}: {v}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Copies `examples/shop` (pipeline and data) to a fresh folder.
fn shop(name: &str) -> std::path::PathBuf {
    let dir = empty_project(name);
    let from = repo().join("examples/shop");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(from.join("shop.mlp"), dir.join("shop.mlp")).unwrap();
    for f in ["customers.csv", "orders.csv", "labels.csv"] {
        std::fs::copy(from.join("data").join(f), dir.join("data").join(f)).unwrap();
    }
    dir
}

fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `mlp serve` builds the lookup state from the latest data, reports it on
/// `/metrics`, rebuilds it when a table changes, keeps the last good state
/// when the new data breaks a check, and refuses to start when a table
/// cannot be read.
#[test]
fn serving_looks_up_the_latest_tables_and_refreshes_them() {
    let dir = shop("tables-serve");
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    // Monitored on labelled rows: drift of the history features and the
    // model's accuracy, through the same lookups.
    let o = mlp(
        &dir,
        &["monitor", "churn", "--data", "data/labels.csv", "--json"],
    );
    let report: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(report["rows"].as_u64().unwrap_or(0) > 2000, "{}", text(&o));
    assert!(text(&o).contains("orders_30d"), "{}", text(&o));
    let s = serve(&dir, &["churn"]);
    let url = format!("{}/v1/predict", s.url);
    // `as_of` may be left out: it is then the time of the request.
    let (status, v) = post(
        &url,
        r#"[{"customer_id": 1, "as_of": "2024-03-01"}, {"customer_id": 2}, {"customer_id": 99999, "as_of": "2025-01-01"}]"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["predictions"].as_array().unwrap().len(), 3, "{v}");
    // A request without the key is refused, naming it.
    let (status, v) = post(&url, r#"[{"as_of": "2024-03-01"}]"#);
    assert_eq!(status, 422, "{v}");
    assert!(v.to_string().contains("customer_id"), "{v}");
    let (_, m) = get(&format!("{}/metrics", s.url));
    assert_eq!(
        metric(&m, "mlp_lookup_rows{table=\"customers\"}"),
        Some(500.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "mlp_lookup_rows{table=\"orders\"}"),
        Some(5144.0),
        "{m}"
    );
    // A new customer: the state is rebuilt and swapped in.
    let customers = dir.join("data/customers.csv");
    let original = std::fs::read_to_string(&customers).unwrap();
    std::fs::write(&customers, format!("{original}501,2024-01-01,pro,US,30\n")).unwrap();
    let waited = std::time::Instant::now();
    loop {
        let (_, m) = get(&format!("{}/metrics", s.url));
        if metric(&m, "mlp_lookup_rows{table=\"customers\"}") == Some(501.0) {
            break;
        }
        assert!(waited.elapsed().as_secs() < 20, "not refreshed: {m}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A duplicated customer breaks `unique customer_id`: the server keeps
    // the state it has and says why.
    std::fs::write(&customers, format!("{original}1,2024-01-01,pro,US,30\n")).unwrap();
    let waited = std::time::Instant::now();
    loop {
        let (_, h) = get(&format!("{}/health", s.url));
        if h.contains("degraded") {
            assert!(h.contains("customers"), "{h}");
            break;
        }
        assert!(waited.elapsed().as_secs() < 20, "no fault reported: {h}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, _) = post(&url, r#"[{"customer_id": 1, "as_of": "2024-03-01"}]"#);
    assert_eq!(status, 200);
    let (_, m) = get(&format!("{}/metrics", s.url));
    assert_eq!(metric(&m, "mlp_lookup_fault"), Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "mlp_lookup_rows{table=\"customers\"}"),
        Some(501.0),
        "{m}"
    );
    drop(s);
    // A table that cannot be read stops the server at start, naming it.
    std::fs::write(&customers, &original).unwrap();
    std::fs::remove_file(dir.join("data/orders.csv")).unwrap();
    let o = common::mlp_within(&dir, 20, &["serve", "churn", "--port", "0"]);
    assert!(!o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("lookup state of `orders`") && t.contains("orders.csv"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Duplicate right keys, null keys and times, a time in another format: a
/// clear error or a documented result.
#[test]
fn bad_tables_end_in_clear_errors() {
    let dir = shop("tables-bad");
    let customers = dir.join("data/customers.csv");
    let original = std::fs::read_to_string(&customers).unwrap();
    // A duplicated key fails the check that proves the join, naming it.
    std::fs::write(&customers, format!("{original}7,2024-01-01,pro,US,30\n")).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("check.customers") && t.contains("unique customer_id"),
        "{t}"
    );
    std::fs::write(&customers, &original).unwrap();
    // A time in another format: the orders' check quarantines, so the row
    // is set aside with its schema break; without the check the run stops
    // naming the file, the row and the column.
    let orders = dir.join("data/orders.csv");
    let good = std::fs::read_to_string(&orders).unwrap();
    std::fs::write(
        &orders,
        format!("{good}99999,123,2024/01/02 10:00,5.0,web\n"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("quarantined 1 of 5145 rows"),
        "{}",
        text(&o)
    );
    let p = dir.join("shop.mlp");
    let pipeline = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        pipeline.replace("check orders quarantine { range amount 0.. }", ""),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("orders.csv") && t.contains("ordered_at") && t.contains("5145"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An edit to the events' side re-runs the history and what follows, not
/// the join; `mlp plan` says why, and `mlp graph` draws both inputs.
#[test]
fn tables_are_cached_like_every_stage() {
    let dir = shop("tables-cache");
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let orders = dir.join("data/orders.csv");
    let good = std::fs::read_to_string(&orders).unwrap();
    std::fs::write(
        &orders,
        format!("{good}99999,1,2024-01-02T10:00:00,5.0,web\n"),
    )
    .unwrap();
    let o = mlp(&dir, &["plan", "."]);
    let t = text(&o);
    let line = |id: &str| t.lines().find(|l| l.contains(id)).unwrap_or("").to_string();
    assert!(line("join.examples").contains("cached"), "{t}");
    assert!(line("history.activity").contains("will run"), "{t}");
    assert!(line("source.orders").contains("orders.csv"), "{t}");
    let o = mlp(&dir, &["graph", "."]);
    let g = text(&o);
    assert!(
        g.contains("\"join.examples\" -> \"history.activity\"")
            && g.contains("\"check.orders\" -> \"history.activity\""),
        "{g}"
    );
    let v: Value = serde_json::from_slice(&mlp(&dir, &["run", ".", "--json"]).stdout).unwrap();
    let ran: Vec<String> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "ran")
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ran.contains(&"history.activity".to_string()), "{ran:?}");
    assert!(!ran.contains(&"join.examples".to_string()), "{ran:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pipeline in `docs/tables.md` runs on the example's data, and its
/// model predicts rows that leave `as_of` out.
#[test]
fn the_pipeline_in_the_tables_docs_runs_and_predicts() {
    let block = common::docs_pipeline("tables.md");
    let dir = shop("tables-docs");
    std::fs::remove_file(dir.join("shop.mlp")).unwrap();
    std::fs::write(dir.join("docs.mlp"), block).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    std::fs::write(dir.join("req.csv"), "customer_id,as_of\n1,2024-03-01\n2,\n").unwrap();
    let o = mlp(
        &dir,
        &[
            "predict", "churn", "--input", "req.csv", "--output", "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A history of a table's own earlier rows (each order, with the same
/// customer's orders before it): the events side is also the request path's
/// source, and serving reads it as lookup state all the same; predictions
/// equal training's.
#[test]
fn a_history_of_a_tables_own_rows_serves_as_trained() {
    let dir = empty_project("tables-self-history");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(
        repo().join("examples/shop/data/orders.csv"),
        dir.join("data/orders.csv"),
    )
    .unwrap();
    std::fs::write(
        dir.join("p.mlp"),
        r#"source orders = csv("data/orders.csv") {
    order_id    : int
    customer_id : int
    ordered_at  : datetime "%Y-%m-%dT%H:%M:%S"
    amount      : float
    channel     : category["web", "app", "store"]
}
history prior = orders with orders on customer_id at ordered_at by ordered_at {
    n_before  = count() within 90d
    spend_90d = sum(amount) within 90d
}
split data = prior { train = 0.8  test = 0.2  order = ordered_at }
model m = linear_regression(data) {
    target   = amount
    features = n_before, spend_90d
}
evaluate m on test {
    metrics rmse
    require rmse < 1000000
}
deploy m as "m"
"#,
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let trained = cached_frame(&dir, "model.m");
    let ids = trained.column("order_id").unwrap().i64().unwrap().clone();
    let preds = trained.column("prediction").unwrap().f64().unwrap().clone();
    let o = mlp(
        &dir,
        &[
            "predict",
            "m",
            "--input",
            "data/orders.csv",
            "--output",
            "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = std::fs::read_to_string(dir.join("out.csv")).unwrap();
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let (i, p) = (
        header.iter().position(|h| *h == "order_id").unwrap(),
        header.iter().position(|h| *h == "prediction").unwrap(),
    );
    let served: BTreeMap<i64, f64> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[i].parse().unwrap(), f[p].parse().unwrap())
        })
        .collect();
    assert_eq!(served.len(), ids.len());
    for (id, p) in ids.iter().zip(preds.iter()) {
        let (id, p) = (id.unwrap(), p.unwrap());
        assert_eq!(served[&id].to_bits(), p.to_bits(), "order {id}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
