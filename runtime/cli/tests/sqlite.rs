//! SQLite sources: a table or a query of a database file, held to the
//! declared columns, cached by the file's bytes, looked up at serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{empty_project, mlp, repo, text};
use std::path::Path;

/// The shop's customers in `data/shop.db` (ages missing as NULL), the
/// orders and labels as CSV files, and the shop pipeline reading the
/// customers from the database.
fn shop_with_sqlite(name: &str) -> std::path::PathBuf {
    let dir = empty_project(name);
    let from = repo().join("examples/shop");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in ["orders.csv", "labels.csv"] {
        std::fs::copy(from.join("data").join(f), dir.join("data").join(f)).unwrap();
    }
    let db = rusqlite::Connection::open(dir.join("data/shop.db")).unwrap();
    db.execute_batch(
        "create table customers (customer_id integer primary key, signup_on text, plan text, country text, age integer);",
    )
    .unwrap();
    let csv = std::fs::read_to_string(from.join("data/customers.csv")).unwrap();
    let mut insert = db
        .prepare("insert into customers values (?1, ?2, ?3, ?4, ?5)")
        .unwrap();
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let age: Option<i64> = f[4].parse().ok();
        insert
            .execute(rusqlite::params![
                f[0].parse::<i64>().unwrap(),
                f[1],
                f[2],
                f[3],
                age
            ])
            .unwrap();
    }
    let pipeline = std::fs::read_to_string(from.join("shop.mlp"))
        .unwrap()
        .replace(
            r#"source customers = csv("data/customers.csv") {"#,
            r#"source customers = sqlite("data/shop.db", table = "customers") {"#,
        );
    assert!(pipeline.contains("sqlite("));
    std::fs::write(dir.join("shop.mlp"), pipeline).unwrap();
    dir
}

fn sql(dir: &Path, statement: &str) {
    rusqlite::Connection::open(dir.join("data/shop.db"))
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

/// The shop pipeline with its customers in SQLite trains, re-runs from the
/// cache while the database is unchanged, re-reads it when it changes, and
/// `mlp predict` looks the customers up in it.
#[test]
fn a_sqlite_table_feeds_training_caching_and_serving() {
    let dir = shop_with_sqlite("sqlite-shop");
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source.customers (500 rows"),
        "{}",
        text(&o)
    );
    let o = mlp(&dir, &["run", "."]);
    assert!(text(&o).contains("0 ran, 14 cached"), "{}", text(&o));
    std::fs::write(dir.join("req.csv"), "customer_id,as_of\n1,2024-03-01\n").unwrap();
    let o = mlp(
        &dir,
        &[
            "predict", "churn", "--input", "req.csv", "--output", "out.csv",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // A row added to the database: the source and what depends on it
    // re-run; the orders' history does not.
    sql(
        &dir,
        "insert into customers values (501, '2024-01-01', 'pro', 'US', 30);",
    );
    let o = mlp(&dir, &["plan", "."]);
    let t = text(&o);
    let line = |id: &str| t.lines().find(|l| l.contains(id)).unwrap_or("").to_string();
    assert!(line("source.customers").contains("will run"), "{t}");
    assert!(line("source.orders").contains("cached"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The declared columns are the contract: a missing column, a value of
/// another type, a missing table and a broken query each stop the run
/// naming the database, the table or query, and the fix; under a
/// quarantining check, rows with bad values are set aside instead.
#[test]
fn a_sqlite_source_is_held_to_its_declared_columns() {
    let dir = empty_project("sqlite-contract");
    let db = dir.join("d.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "create table t (id integer, x real, d text);
         insert into t values (1, 2.5, '2024-01-01'), (2, 3.0, '2024-01-02'), (3, 'n/a', '2024-01-03');",
    )
    .unwrap();
    drop(conn);
    let write = |source: &str, check: &str| {
        std::fs::write(
            dir.join("p.mlp"),
            format!("{source} {{\n  id : int\n  x : float\n  d : date \"%Y-%m-%d\"\n}}\n{check}\n"),
        )
        .unwrap();
    };
    let fails = |needles: &[&str]| {
        let o = mlp(&dir, &["run", "."]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        for n in needles {
            assert!(t.contains(n), "{n}: {t}");
        }
    };
    write(r#"source s = sqlite("d.db", table = "t")"#, "");
    fails(&[
        "d.db, table `t`, row 3, column `x`",
        "TEXT \"n/a\"",
        "float",
    ]);
    write(r#"source s = sqlite("d.db", table = "missing")"#, "");
    fails(&["no such table: missing"]);
    write(
        r#"source s = sqlite("d.db", query = "select id, x, d from t where")"#,
        "",
    );
    fails(&["d.db, query", "syntax error"]);
    write(
        r#"source s = sqlite("d.db", query = "select id, x from t")"#,
        "",
    );
    fails(&["column `d` is declared but not in the data", "`id`, `x`"]);
    // Quarantined: the row that breaks the schema is set aside with why.
    write(
        r#"source s = sqlite("d.db", table = "t")"#,
        "check s quarantine { range x 0.. }",
    );
    let o = mlp(&dir, &["run", "."]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("quarantined 1 of 3 rows"), "{t}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pipeline in `docs/sources.md` runs on a database the test writes.
#[test]
fn the_pipeline_in_the_sources_docs_runs() {
    let block = common::docs_pipeline("sources.md");
    let dir = shop_with_sqlite("sqlite-docs");
    std::fs::remove_file(dir.join("shop.mlp")).unwrap();
    std::fs::write(dir.join("docs.mlp"), block).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mlp infer DB --table T` prints a source block that checks and reads
/// the table; without a table it names the tables there are.
#[test]
fn infer_reads_a_sqlite_table() {
    let dir = shop_with_sqlite("sqlite-infer");
    let o = mlp(&dir, &["infer", "data/shop.db"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("tables: customers"), "{}", text(&o));
    let o = mlp(&dir, &["infer", "data/shop.db", "--table", "customers"]);
    assert!(o.status.success(), "{}", text(&o));
    let block = String::from_utf8(o.stdout).unwrap();
    assert!(
        block.contains(r#"source customers = sqlite("data/shop.db", table = "customers") {"#)
            && block.contains("age         : int?"),
        "{block}"
    );
    std::fs::remove_file(dir.join("shop.mlp")).unwrap();
    std::fs::write(dir.join("p.mlp"), &block).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source.customers (500 rows"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
