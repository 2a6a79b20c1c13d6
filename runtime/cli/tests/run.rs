//! `mlp run`, `mlp plan` and the stage cache, end to end through the binary on
//! real files in temporary projects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{cache_entry, mlp, repo, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    dir
}

/// Deterministic house sales, like bench/gen_houses.py, without Python.
fn houses_csv(rows: usize, seed: u64) -> String {
    let cities = ["Austin", "Boston", "Chicago", "Denver"];
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) as f64 / (1u64 << 31) as f64
    };
    let mut out = String::from("id,sold_at,city,sqft,bedrooms,year_built,price\n");
    for i in 1..=rows {
        let city = cities[(next() * 4.0) as usize % 4];
        let sqft = 600.0 + next() * 3000.0;
        let beds = if next() < 0.03 {
            String::new()
        } else {
            ((sqft / 700.0) as i64 + 1).to_string()
        };
        let year = 1900 + (next() * 120.0) as i64;
        let month = 1 + (next() * 12.0) as i64 % 12;
        let day = 1 + (next() * 28.0) as i64 % 28;
        let price = 50000.0 + sqft * 150.0 + next() * 20000.0;
        out.push_str(&format!(
            "{i},2020-{month:02}-{day:02},{city},{sqft:.1},{beds},{year},{price:.2}\n"
        ));
    }
    out
}

const PIPELINE: &str = r#"
source houses = csv("data/houses.csv") {
    id         : int
    sold_at    : date "%Y-%m-%d"
    city       : category
    sqft       : float
    bedrooms   : int?
    year_built : int
    price      : float
}

check houses {
    unique id
    not_null id, sqft, price
    range sqft 100..50000
    values city in ["Austin", "Boston", "Chicago", "Denver"]
    rows >= 100
    warn null_rate bedrooms <= 0.01
}

split data = houses { train = 0.8  test = 0.2  seed = 42  key = id }

transform prep = data {
    impute bedrooms with median
    encode city with onehot
    scale sqft with standard
}

features feats = prep {
    age       = year(sold_at) - year_built
    per_room  = sqft / (bedrooms + 1)
    city_mean = mean(price) over city
    weekend   = day_of_week(sold_at) >= 6
}
"#;

fn project(name: &str, rows: usize) -> PathBuf {
    let dir = tempdir(name);
    std::fs::write(dir.join("houses.mlp"), PIPELINE).unwrap();
    std::fs::write(dir.join("data/houses.csv"), houses_csv(rows, 7)).unwrap();
    dir
}

/// One stage's object in `mlp run --json`'s summary.
fn stage_of<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no stage {id} in {v}"))
}

fn statuses(v: &serde_json::Value) -> Vec<(String, String)> {
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn status_of<'a>(v: &'a [(String, String)], id: &str) -> &'a str {
    v.iter()
        .find(|(i, _)| i == id)
        .map(|(_, s)| s.as_str())
        .unwrap_or("absent")
}

fn run_json(dir: &Path) -> Vec<(String, String)> {
    let o = mlp(dir, &["run", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    statuses(&json(&o))
}

fn plan_reasons(dir: &Path, id: &str) -> Vec<serde_json::Value> {
    let o = mlp(dir, &["plan", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .map(|s| s["reasons"].as_array().unwrap().clone())
        .unwrap_or_default()
}

#[test]
fn a_second_run_with_no_change_runs_nothing() {
    let dir = project("noop", 500);
    let first = run_json(&dir);
    assert!(first.iter().all(|(_, s)| s == "ran"), "{first:?}");
    assert_eq!(first.len(), 5);
    let second = run_json(&dir);
    assert!(second.iter().all(|(_, s)| s == "cached"), "{second:?}");
    let reasons = plan_reasons(&dir, "features.feats");
    assert_eq!(reasons, vec![serde_json::json!({"reason": "cached"})]);
}

#[test]
fn comments_reformatting_and_touching_data_run_nothing() {
    let dir = project("cosmetic", 300);
    run_json(&dir);
    // Comments and layout.
    let reformatted = PIPELINE
        .replace("check houses {", "# the data contract\ncheck houses\n{")
        .replace("    ", "\t")
        .replace(
            "seed = 42  key = id }",
            "seed = 42\n   key = id # stable\n}",
        );
    std::fs::write(dir.join("houses.mlp"), reformatted).unwrap();
    let after = run_json(&dir);
    assert!(after.iter().all(|(_, s)| s == "cached"), "{after:?}");
    // A touched file with the same bytes.
    let data = dir.join("data/houses.csv");
    let bytes = std::fs::read(&data).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&data, &bytes).unwrap();
    let after = run_json(&dir);
    assert!(after.iter().all(|(_, s)| s == "cached"), "{after:?}");
}

#[test]
fn editing_one_feature_reruns_that_stage_only() {
    let dir = project("feature-edit", 300);
    run_json(&dir);
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace("sqft / (bedrooms + 1)", "sqft / (bedrooms + 2)"),
    )
    .unwrap();
    let reasons = plan_reasons(&dir, "features.feats");
    assert_eq!(reasons[0]["reason"], "definition_changed", "{reasons:?}");
    assert_eq!(reasons[0]["file"], "houses.mlp");
    let decl_line = PIPELINE
        .lines()
        .position(|l| l.starts_with("features feats"))
        .unwrap()
        + 1;
    assert_eq!(reasons[0]["line"], decl_line);
    let after = run_json(&dir);
    for id in [
        "source.houses",
        "check.houses",
        "split.data",
        "transform.prep",
    ] {
        assert_eq!(status_of(&after, id), "cached", "{id}: {after:?}");
    }
    assert_eq!(status_of(&after, "features.feats"), "ran");
}

#[test]
fn changing_one_byte_of_data_reruns_everything_downstream() {
    let dir = project("data-edit", 300);
    run_json(&dir);
    let data = dir.join("data/houses.csv");
    let mut s = std::fs::read_to_string(&data).unwrap();
    // Change one digit of a price, keeping the size.
    let pos = s.rfind('.').unwrap() - 1;
    let old = s.as_bytes()[pos];
    let new = if old == b'1' { "2" } else { "1" };
    s.replace_range(pos..pos + 1, new);
    std::fs::write(&data, s).unwrap();
    let reasons = plan_reasons(&dir, "source.houses");
    assert_eq!(reasons[0]["reason"], "file_changed", "{reasons:?}");
    assert_eq!(reasons[0]["file"], "data/houses.csv");
    assert_ne!(reasons[0]["old"], reasons[0]["new"]);
    let up = plan_reasons(&dir, "split.data");
    assert_eq!(up[0]["reason"], "upstream", "{up:?}");
    assert_eq!(up[0]["stage"], "check.houses");
    let after = run_json(&dir);
    assert!(after.iter().all(|(_, s)| s == "ran"), "{after:?}");
}

#[test]
fn a_bad_value_stops_the_run_naming_file_row_and_column() {
    let dir = project("bad-value", 200);
    let data = dir.join("data/houses.csv");
    let s = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = s.lines().map(String::from).collect();
    // Row 5 gets a date that is not a date.
    let mut cells: Vec<String> = lines[5].split(',').map(String::from).collect();
    cells[1] = "not-a-date".into();
    lines[5] = cells.join(",");
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("data/houses.csv, row 5, column `sold_at`: \"not-a-date\" is not a valid date in the format \"%Y-%m-%d\""),
        "{t}"
    );
    // Nothing downstream ran, nothing of the failed stage was cached.
    let o = mlp(&dir, &["cache", "status", "."]);
    assert!(text(&o).contains("0 entries"), "{}", text(&o));
}

#[test]
fn a_row_with_too_many_or_too_few_fields_is_named_by_its_line() {
    let dir = project("ragged", 50);
    let data = dir.join("data/houses.csv");
    let clean = std::fs::read_to_string(&data).unwrap();
    let lines: Vec<&str> = clean.lines().collect();
    let header_fields = lines[0].split(',').count();
    let cases = [
        // An extra field on line 4 (the header is line 1).
        (
            3,
            format!("{},extra", lines[3]),
            header_fields + 1,
            "must be quoted",
        ),
        // A field missing on line 4.
        (
            3,
            lines[3].rsplit_once(',').unwrap().0.to_string(),
            header_fields - 1,
            "must be quoted",
        ),
        // A quote opened on line 4 and never closed.
        (3, lines[3].replacen(',', ",\"", 1), 2, "close the quote"),
    ];
    for (i, line, found, help) in cases {
        let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        edited[i] = line;
        std::fs::write(&data, edited.join("\n") + "\n").unwrap();
        let o = mlp(&dir, &["run", "."]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let t = text(&o);
        assert!(
            t.contains(&format!(
                "data/houses.csv, line 4: {found} fields where the header has {header_fields}"
            )),
            "{t}"
        );
        assert!(t.contains(help), "{t}");
    }
}

#[test]
fn a_missing_column_names_the_columns_in_the_file() {
    let dir = project("missing-col", 50);
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace(
            "    sqft       : float\n",
            "    sqft       : float\n    garage     : bool\n",
        ),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("column `garage` is declared but not in the data"),
        "{t}"
    );
    assert!(t.contains("`sqft`"), "{t}");
}

fn dirty_houses(dir: &Path, rows: usize) {
    let o = Command::new("python3")
        .arg(repo().join("bench/gen_houses.py"))
        .arg(rows.to_string())
        .arg(dir.join("data/houses.csv"))
        .arg("--dirty")
        .output()
        .expect("python3 runs bench/gen_houses.py");
    assert!(o.status.success(), "{}", text(&o));
}

const DIRTY_PIPELINE: &str = r#"
source houses = csv("data/houses.csv") {
    id         : int
    sold_at    : date "%Y-%m-%d"
    city       : category
    sqft       : float
    bedrooms   : int?
    year_built : int?
    price      : float
}
check houses QUARANTINE {
    unique id
    range sqft 100..50000
    values city in ["Austin", "Boston", "Chicago", "Denver", "Miami", "Portland", "Seattle", "Tucson"]
}
split data = houses { train = 0.8  test = 0.2  key = id }
"#;

#[test]
fn dirty_data_stops_without_quarantine_and_is_set_aside_with_it() {
    let dir = tempdir("dirty");
    dirty_houses(&dir, 5000);
    let total = std::fs::read_to_string(dir.join("data/houses.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    // Without quarantine: the first bad value stops the run, with row and column.
    std::fs::write(dir.join("p.mlp"), DIRTY_PIPELINE.replace(" QUARANTINE", "")).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(", column `sold_at`: \"not-a-date\" is not a valid date"),
        "{}",
        text(&o)
    );

    // With quarantine: the bad rows are counted and saved, no good row is lost.
    std::fs::write(
        dir.join("p.mlp"),
        DIRTY_PIPELINE.replace("QUARANTINE", "quarantine"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    let check = stage_of(&v, "check.houses");
    let kept = check["rows"].as_u64().unwrap() as usize;
    let note = check["notes"][0].as_str().unwrap();
    let quarantined: usize = note
        .strip_prefix("quarantined ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{note}"));
    assert!(quarantined > 0 && quarantined < total / 20, "{note}");
    assert_eq!(
        kept + quarantined,
        total,
        "every row is kept or quarantined"
    );
    // The quarantine output holds the bad rows with the rule each failed.
    let csv = std::fs::read_to_string(dir.join("data/houses.csv")).unwrap();
    let bad_in_file = csv
        .lines()
        .skip(1)
        .filter(|l| {
            l.contains("not-a-date")
                || l.contains("Atlantis")
                || l.split(',').nth(4).is_some_and(|s| s.starts_with('-'))
        })
        .count();
    assert_eq!(quarantined, bad_in_file);
    // The run says where the set-aside rows are, and they are there.
    let where_note = check["notes"][1].as_str().unwrap();
    let path = where_note
        .split(": ")
        .nth(1)
        .and_then(|r| r.strip_suffix(" (Arrow IPC)"))
        .unwrap_or_else(|| panic!("{where_note}"));
    assert!(path.ends_with("quarantine.arrow"), "{where_note}");
    let size = std::fs::metadata(dir.join(path)).unwrap().len();
    assert!(size > 0, "{where_note}");
}

#[test]
fn a_failing_check_stops_with_a_report() {
    let dir = project("check-fails", 300);
    // Runs the pipeline with the `range sqft` rule replaced.
    let run_with = |rule: &str| {
        std::fs::write(
            dir.join("houses.mlp"),
            PIPELINE.replace("range sqft 100..50000", rule),
        )
        .unwrap();
        let o = mlp(&dir, &["run", "."]);
        (o.status.code(), text(&o))
    };
    let (code, t) = run_with("range sqft 100..1000");
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("checks on `houses` failed: range sqft 100..1000 ("),
        "{t}"
    );
    assert!(t.contains("FAIL"), "{t}");
    assert!(t.contains("{\"row\":"), "{t}");
    assert!(t.contains("warn null_rate bedrooms <= 0.01"), "{t}");

    // A frame-level rule reports its measure, not a count of rows.
    let (code, t) = run_with("rows >= 1000000");
    assert_eq!(code, Some(1), "{t}");
    assert!(
        t.contains("checks on `houses` failed: rows >= 1000000 (was 300)"),
        "{t}"
    );

    // As a warning it lets the run go on, and says so once.
    let (code, t) = run_with("warn rows >= 1000000");
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("warning: rows >= 1000000 (was 300)"), "{t}");
}

#[test]
fn fitted_parameters_come_from_train_only() {
    let dir = project("fitted", 400);
    run_json(&dir);
    // The scale step's mean is the train rows' mean: recompute it from the
    // split output and compare with the stored parameters.
    let o = mlp(&dir, &["cache", "status", "."]);
    assert!(o.status.success());
    let cache = dir.join(".mlp/cache");
    let mut params = None;
    for e in std::fs::read_dir(&cache).unwrap() {
        let p = e.unwrap().path().join("params.json");
        if p.exists() {
            params = Some(std::fs::read_to_string(p).unwrap());
        }
    }
    let params: serde_json::Value = serde_json::from_str(&params.expect("params.json")).unwrap();
    let scale = &params["steps"][2];
    assert_eq!(scale["fitted"], "scale");
    let center = scale["values"]["sqft"][0].as_f64().unwrap();
    // Recompute: train rows are those the key hash puts in train; the
    // run's split output holds the assignment.
    let csv = houses_csv(400, 7);
    let all_mean: f64 = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<f64>().unwrap())
        .sum::<f64>()
        / 400.0;
    assert!(
        (center - all_mean).abs() > 1e-9,
        "the mean of all rows was used"
    );
    assert!((center - all_mean).abs() < 200.0);
}

#[test]
fn examples_run() {
    for ex in ["houses", "penguins", "weather", "cars"] {
        let dir = tempdir(&format!("example-{ex}"));
        let src = repo().join("examples").join(ex);
        for e in walk(&src) {
            let rel = e.strip_prefix(&src).unwrap();
            let to = dir.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&e, &to).unwrap();
        }
        let o = mlp(&dir, &["run", ".", "--json"]);
        let st = statuses(&json(&o));
        assert!(o.status.success(), "{ex}: {}", text(&o));
        assert!(
            st.iter().all(|(_, s)| s == "ran" || s == "skipped"),
            "{ex}: {st:?}"
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_runs_at_once_do_not_corrupt_the_cache() {
    let dir = project("concurrent", 2000);
    let exe = env!("CARGO_BIN_EXE_mlp");
    let a = Command::new(exe)
        .args(["run", ".", "--json"])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let b = Command::new(exe)
        .args(["run", ".", "--json"])
        .current_dir(&dir)
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success());
    let after = run_json(&dir);
    assert!(after.iter().all(|(_, s)| s == "cached"), "{after:?}");
}

#[test]
fn a_killed_run_leaves_a_cache_the_next_run_can_trust() {
    let dir = project("killed", 200_000);
    let exe = env!("CARGO_BIN_EXE_mlp");
    // Kill at several points of the run; each time, the next run finishes
    // and its outputs equal those of an uninterrupted run.
    for delay_ms in [30u64, 100, 200, 350] {
        let _ = std::fs::remove_dir_all(dir.join(".mlp"));
        let mut child = Command::new(exe)
            .args(["run", "."])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let o = mlp(&dir, &["run", ".", "--json"]);
        assert!(
            o.status.success(),
            "after a kill at {delay_ms} ms: {}",
            text(&o)
        );
    }
    let clean = project("killed-clean", 200_000);
    run_json(&clean);
    // Each entry's output frame, read as a run reads it (through its base
    // entries).
    let entries = |d: &Path| -> Vec<(String, Option<polars::prelude::DataFrame>)> {
        let store = mlp_store::store::Store::existing(d).unwrap();
        let (good, bad) = store.entries();
        assert!(bad.is_empty(), "incomplete entries: {bad:?}");
        let mut v: Vec<_> = good
            .into_iter()
            .map(|(meta, _)| {
                let frame = meta
                    .has_frame()
                    .then(|| mlp_engine::stored::read_output(&store, &meta.key).unwrap());
                (meta.key, frame)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (a, b) = (entries(&dir), entries(&clean));
    assert_eq!(
        a.iter().map(|e| &e.0).collect::<Vec<_>>(),
        b.iter().map(|e| &e.0).collect::<Vec<_>>(),
        "the same stage keys"
    );
    for (x, y) in a.iter().zip(&b) {
        let same = match (&x.1, &y.1) {
            (Some(p), Some(q)) => p.equals_missing(q),
            (None, None) => true,
            _ => false,
        };
        assert!(
            same,
            "stage output {} differs from an uninterrupted run",
            x.0
        );
    }
}

#[test]
fn parquet_json_and_globs_are_read_in_sorted_order() {
    use polars::prelude::*;
    let dir = tempdir("formats");
    std::fs::create_dir_all(dir.join("data/parts")).unwrap();
    // Two Parquet parts, written out of order.
    for (name, ids) in [("b.parquet", [3i64, 4]), ("a.parquet", [1i64, 2])] {
        let mut df = df!(
            "id" => ids,
            "when" => ["2021-01-02", "2021-03-04"],
            "x" => [1.5f64, 2.5],
        )
        .unwrap();
        let f = std::fs::File::create(dir.join("data/parts").join(name)).unwrap();
        ParquetWriter::new(f).finish(&mut df).unwrap();
    }
    std::fs::write(
        dir.join("data/events.ndjson"),
        "{\"Id\": 1, \"Kind\": \"a\", \"V\": 2}\n{\"Id\": 2, \"Kind\": \"b\", \"V\": null}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source parts = parquet("data/parts/*.parquet") {
    id   : int
    when : date
    x    : float
}
source events = json("data/events.ndjson") {
    id   : int   as "Id"
    kind : category as "Kind"
    v    : float? as "V"
}
"#,
    )
    .unwrap();
    let o = mlp(&dir, &["run", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v = json(&o);
    let rows = |id: &str| stage_of(&v, id)["rows"].as_u64().unwrap();
    assert_eq!(rows("source.parts"), 4);
    assert_eq!(rows("source.events"), 2);
    // The parts were read a.parquet first: ids in order.
    let entry = cache_entry(&dir, "source.parts");
    let df = IpcReader::new(std::fs::File::open(entry.join("frame.arrow")).unwrap())
        .finish()
        .unwrap();
    let ids: Vec<i64> = df
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .iter()
        .flatten()
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    assert_eq!(df.column("when").unwrap().dtype(), &DataType::Date);

    // A new file matching the glob re-runs the source, and `plan` says why.
    std::fs::copy(
        dir.join("data/parts/a.parquet"),
        dir.join("data/parts/c.parquet"),
    )
    .unwrap();
    let o = mlp(&dir, &["plan", ".", "--json"]);
    let plan = json(&o);
    let parts = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "source.parts")
        .unwrap();
    assert_eq!(parts["reasons"][0]["reason"], "files_changed", "{parts}");
    assert_eq!(parts["reasons"][0]["added"][0], "data/parts/c.parquet");

    // `mlp infer` reads Parquet too.
    let o = mlp(&dir, &["infer", "data/parts/a.parquet"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("id   : int"), "{}", text(&o));
}

#[test]
fn cache_status_and_gc() {
    let dir = project("gc", 200);
    run_json(&dir);
    let o = mlp(&dir, &["cache", "status", "."]);
    assert!(text(&o).contains("5 entries"), "{}", text(&o));
    // An edit leaves the old features entry unused by the last run.
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace("bedrooms + 1", "bedrooms + 3"),
    )
    .unwrap();
    run_json(&dir);
    let o = mlp(&dir, &["cache", "status", "."]);
    assert!(text(&o).contains("6 entries"), "{}", text(&o));
    assert!(
        text(&o).contains("(1 not used by the last run)"),
        "{}",
        text(&o)
    );
    // A half-written entry (a crash before its rename) is removed too.
    std::fs::create_dir_all(dir.join(".mlp/cache/deadbeef")).unwrap();
    let o = mlp(&dir, &["cache", "gc", "."]);
    assert!(text(&o).contains("removed 2 entries"), "{}", text(&o));
    let after = run_json(&dir);
    assert!(after.iter().all(|(_, s)| s == "cached"), "{after:?}");
    let o = mlp(&dir, &["cache", "gc", ".", "--all"]);
    assert!(text(&o).contains("removed 5 entries"), "{}", text(&o));
}

#[test]
fn watch_reruns_after_an_edit() {
    let dir = project("watch", 200);
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(["run", ".", "--watch"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
                if l.contains(needle) {
                    return true;
                }
            }
        }
        false
    };
    assert!(wait_for("watching"), "the first run finishes and watches");
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace("bedrooms + 1", "bedrooms + 5"),
    )
    .unwrap();
    let rerun = wait_for("ran     features.feats");
    let _ = child.kill();
    let _ = child.wait();
    assert!(rerun, "an edit re-runs the edited stage");
}

#[test]
fn csv_options_delimiter_nulls_and_no_header() {
    let dir = tempdir("csv-options");
    std::fs::write(dir.join("data/a.csv"), "1;x;NA\n2;y;3.5\n").unwrap();
    std::fs::write(
        dir.join("p.mlp"),
        r#"
source a = csv("data/a.csv", delimiter = ";", header = false, null_values = ["NA"]) {
    id   : int
    name : str
    v    : float?
}
"#,
    )
    .unwrap();
    let o = mlp(&dir, &["run", ".", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        statuses(&json(&o)),
        vec![("source.a".to_string(), "ran".to_string())]
    );
}

#[test]
fn a_damaged_cache_entry_is_caught_and_removed_by_gc() {
    let dir = project("damaged", 300);
    run_json(&dir);
    // Flip one byte of the source's stored frame, keeping its size.
    let entry = cache_entry(&dir, "source.houses");
    let frame = entry.join("frame.arrow");
    let mut bytes = std::fs::read(&frame).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&frame, bytes).unwrap();
    // A stage that must read it fails with a clear error, and caches nothing.
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace("rows >= 100", "rows >= 101"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("does not match its checksum"),
        "{}",
        text(&o)
    );
    // gc removes the damaged entry; the next run recomputes it.
    let o = mlp(&dir, &["cache", "gc", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let after = run_json(&dir);
    assert_eq!(status_of(&after, "source.houses"), "ran", "{after:?}");
    assert_eq!(status_of(&after, "check.houses"), "ran", "{after:?}");
}

#[test]
fn a_stage_stores_only_the_columns_it_made_and_runs_again_without_its_base() {
    let dir = project("delta", 300);
    run_json(&dir);
    let store = mlp_store::store::Store::existing(&dir).unwrap();
    let meta = |stage: &str| {
        let entry = cache_entry(&dir, stage);
        store
            .lookup(&entry.file_name().unwrap().to_string_lossy())
            .unwrap()
    };
    let (source, check, split) = (
        meta("source.houses"),
        meta("check.houses"),
        meta("split.data"),
    );
    // The source's frame is whole; the check passes every column through
    // (no frame file of its own); the split's file holds its partition column.
    assert!(source.base.is_none() && source.files.iter().any(|f| f == "frame.arrow"));
    let base = check.base.as_ref().unwrap();
    assert_eq!(base.key, source.key);
    assert_eq!(base.inherited, base.columns);
    assert!(!check.files.iter().any(|f| f == "frame.arrow"));
    let base = split.base.as_ref().unwrap();
    assert_eq!(base.key, check.key);
    let own: Vec<&String> = base
        .columns
        .iter()
        .filter(|c| !base.inherited.contains(c))
        .collect();
    assert_eq!(own, ["partition"]);
    // Read back, the split's frame is the source's columns and its partition.
    let frame = common::cached_frame(&dir, "split.data");
    let names: Vec<String> = frame
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "id",
            "sold_at",
            "city",
            "sqft",
            "bedrooms",
            "year_built",
            "price",
            "partition"
        ]
    );
    assert!(frame
        .drop("partition")
        .unwrap()
        .equals_missing(&common::cached_frame(&dir, "source.houses")));
    let features = common::cached_frame(&dir, "features.feats");
    // `mlp cache export` writes a stage's whole frame, by id or by name.
    let o = mlp(
        &dir,
        &["cache", "export", "split.data", "--output", "split.parquet"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("wrote 300 rows of `split.data`"),
        "{}",
        text(&o)
    );
    let exported = common::read_parquet(&dir.join("split.parquet"));
    assert!(exported.equals_missing(&frame), "{exported:?}");
    let o = mlp(&dir, &["cache", "export", "feats", "--output", "f.csv"]);
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(dir.join("f.csv")).unwrap();
    assert!(csv.starts_with("id,sold_at,city,"), "{csv}");
    assert!(csv.lines().next().unwrap().ends_with("weekend"), "{csv}");
    assert_eq!(csv.lines().count(), 301);
    let o = mlp(&dir, &["cache", "export", "split.dta", "--output", "x.csv"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("no stage `split.dta` in this pipeline: did you mean `split.data`?"),
        "{}",
        text(&o)
    );
    assert!(!dir.join("x.csv").exists());
    // gc keeps the entries a kept entry reads columns from.
    let o = mlp(&dir, &["cache", "gc", "."]);
    assert!(text(&o).contains("removed 0 entries"), "{}", text(&o));
    assert!(run_json(&dir).iter().all(|(_, s)| s == "cached"));
    // Without the source's entry the stages that read its columns are not
    // cached: they run again, to the same frames.
    std::fs::remove_dir_all(cache_entry(&dir, "source.houses")).unwrap();
    let after = run_json(&dir);
    for id in [
        "source.houses",
        "check.houses",
        "split.data",
        "transform.prep",
        "features.feats",
    ] {
        assert_eq!(status_of(&after, id), "ran", "{after:?}");
    }
    assert!(common::cached_frame(&dir, "features.feats").equals_missing(&features));
    // An entry.json that no longer says where its columns are (damaged by
    // hand): the stage reading it fails naming the entry and the fix, and
    // `mlp cache gc` removes it with the entries reading from it.
    let entry = cache_entry(&dir, "split.data").join("entry.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
    let inherited = meta["base"]["inherited"].as_array_mut().unwrap();
    inherited.retain(|c| c != "price");
    std::fs::write(&entry, serde_json::to_vec(&meta).unwrap()).unwrap();
    std::fs::write(
        dir.join("houses.mlp"),
        PIPELINE.replace("day_of_week(sold_at) >= 6", "day_of_week(sold_at) >= 5"),
    )
    .unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is damaged") && text(&o).contains("mlp cache gc"),
        "{}",
        text(&o)
    );
    let o = mlp(&dir, &["cache", "gc", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("removed 0 entries"), "{}", text(&o));
    let after = run_json(&dir);
    assert_eq!(status_of(&after, "split.data"), "ran", "{after:?}");
    assert_eq!(status_of(&after, "features.feats"), "ran", "{after:?}");
}

#[test]
fn a_panic_inside_a_stage_fails_it_instead_of_hanging_the_run() {
    let dir = project("panic", 300);
    let o = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_mlp"))
        .args(["run", ".", "--json"])
        .current_dir(&dir)
        .env("MLP_DEBUG_PANIC_IN", "split.data")
        .output()
        .unwrap();
    // Ends (timeout's 124 would be a hang), failed, naming the stage.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    let split = stage_of(&v, "split.data");
    assert_eq!(split["status"], "failed", "{v}");
    let error = split["error"].as_str().unwrap();
    assert!(
        error.contains("internal error") && error.contains("a panic injected into split.data"),
        "{error}"
    );
    let after = statuses(&v);
    assert_eq!(status_of(&after, "check.houses"), "ran", "{after:?}");
    assert_eq!(status_of(&after, "transform.prep"), "blocked", "{after:?}");
    // Nothing half-made was cached: the next run runs the split and the rest.
    let after = run_json(&dir);
    assert_eq!(status_of(&after, "check.houses"), "cached", "{after:?}");
    assert_eq!(status_of(&after, "split.data"), "ran", "{after:?}");
    assert_eq!(status_of(&after, "features.feats"), "ran", "{after:?}");
}
