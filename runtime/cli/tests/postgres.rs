//! PostgreSQL sources against a real server: a throwaway cluster the test
//! starts on a free loopback port (the machine's PostgreSQL server
//! binaries, run as the `postgres` user when the tests run as root) and
//! stops when it is dropped, even on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{all_text, empty_project, repo, text};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASSWORD: &str = "pl4nted-s3cret-Xq9";

/// A running cluster; stopped and removed on drop.
struct Pg {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn server_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .expect("PostgreSQL's server binaries (Debian package postgresql; .ci/run installs it)")
}

impl Pg {
    fn start(name: &str) -> Pg {
        let as_postgres = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
            .unwrap()
            .trim()
            == "0";
        let dir = std::env::temp_dir().join(format!("mlp-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), PASSWORD).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Pg {
            dir,
            bin: server_bin(),
            port,
            as_postgres,
        };
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap();
        }
        let data = pg.dir.join("data");
        let o = pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "scram-sha-256",
                "-U",
                "mlp",
                "--pwfile",
                pg.dir.join("pw").to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "initdb: {}", text(&o));
        pg.up();
        pg
    }

    fn run(&self, tool: &str, args: &[&str]) -> std::process::Output {
        let bin = self.bin.join(tool);
        if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(bin)
                .args(args)
                .output()
                .unwrap()
        } else {
            Command::new(bin).args(args).output().unwrap()
        }
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let o = self.run(
            "pg_ctl",
            &[
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.dir.join("log").to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(o.status.success(), "pg_ctl start: {}", text(&o));
    }

    fn down(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.dir.join("data").to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    fn url(&self) -> String {
        format!("postgres://mlp:{PASSWORD}@127.0.0.1:{}/postgres", self.port)
    }

    fn sql(&self, statements: &str) {
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).unwrap();
        c.batch_execute(statements).unwrap();
    }

    /// Loads a CSV file (with a header) into a table.
    fn load(&self, table: &str, csv: &Path) {
        use std::io::Write;
        let mut c = postgres::Client::connect(&self.url(), postgres::NoTls).unwrap();
        let mut w = c
            .copy_in(&format!(
                "COPY {table} FROM STDIN WITH (FORMAT csv, HEADER true)"
            ))
            .unwrap();
        w.write_all(&std::fs::read(csv).unwrap()).unwrap();
        w.finish().unwrap();
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `mlp` with the database's address in `SHOP_DB`.
fn mlp_db(dir: &Path, url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("SHOP_DB", url)
        .output()
        .unwrap()
}

/// The shop example with its customers in PostgreSQL.
fn shop(pg: &Pg, name: &str) -> PathBuf {
    let dir = empty_project(name);
    let from = repo().join("examples/shop");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    for f in ["orders.csv", "labels.csv"] {
        std::fs::copy(from.join("data").join(f), dir.join("data").join(f)).unwrap();
    }
    pg.sql(
        "DROP TABLE IF EXISTS customers;
         CREATE TABLE customers (customer_id bigint PRIMARY KEY, signup_on date, plan text, country text, age int);",
    );
    pg.load("customers", &from.join("data/customers.csv"));
    let pipeline = std::fs::read_to_string(from.join("shop.mlp"))
        .unwrap()
        .replace(
            r#"source customers = csv("data/customers.csv") {"#,
            r#"source customers = postgres(table = "customers", url = env("SHOP_DB")) {"#,
        );
    std::fs::write(dir.join("shop.mlp"), pipeline).unwrap();
    dir
}

/// Trains, re-runs from the cache while the table is unchanged, re-runs the
/// source when a row changes, predicts looking customers up in the
/// database; the password is in no file `.mlp/` holds and no output.
#[test]
fn a_postgres_table_feeds_training_and_serving_and_keeps_its_secret() {
    let pg = Pg::start("shop");
    let dir = shop(&pg, "pg-shop");
    let url = pg.url();
    let mut outputs = String::new();
    let o = mlp_db(&dir, &url, &["run", "."]);
    outputs.push_str(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source.customers (500 rows"),
        "{}",
        text(&o)
    );
    let o = mlp_db(&dir, &url, &["run", "."]);
    outputs.push_str(&text(&o));
    assert!(text(&o).contains("0 ran, 14 cached"), "{}", text(&o));
    // The same customers from the CSV file train the same model: the same
    // prediction, to the last digit.
    std::fs::write(
        dir.join("req.csv"),
        "customer_id,as_of\n1,2024-03-01\n7,2025-01-01\n",
    )
    .unwrap();
    let predicted = |d: &Path| {
        let o = mlp_db(
            d,
            &url,
            &[
                "predict", "churn", "--input", "req.csv", "--output", "out.csv",
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        std::fs::read_to_string(d.join("out.csv")).unwrap()
    };
    let from_pg = predicted(&dir);
    let csv = empty_project("pg-shop-csv");
    let from = repo().join("examples/shop");
    std::fs::create_dir_all(csv.join("data")).unwrap();
    for f in ["customers.csv", "orders.csv", "labels.csv"] {
        std::fs::copy(from.join("data").join(f), csv.join("data").join(f)).unwrap();
    }
    std::fs::copy(from.join("shop.mlp"), csv.join("shop.mlp")).unwrap();
    std::fs::copy(dir.join("req.csv"), csv.join("req.csv")).unwrap();
    assert!(mlp_db(&csv, &url, &["run", "."]).status.success());
    assert_eq!(from_pg, predicted(&csv));
    let _ = std::fs::remove_dir_all(&csv);
    let o = mlp_db(&dir, &url, &["plan", "."]);
    assert!(text(&o).contains("queried: the same rows"), "{}", text(&o));
    pg.sql("UPDATE customers SET age = 44 WHERE customer_id = 3;");
    let o = mlp_db(&dir, &url, &["plan", "."]);
    outputs.push_str(&text(&o));
    let t = text(&o);
    let line = |id: &str| t.lines().find(|l| l.contains(id)).unwrap_or("").to_string();
    assert!(line("source.customers").contains("will run"), "{t}");
    assert!(t.contains("queried: the rows changed"), "{t}");
    assert!(line("source.orders").contains("cached"), "{t}");
    std::fs::write(dir.join("req.csv"), "customer_id,as_of\n1,2024-03-01\n").unwrap();
    let o = mlp_db(
        &dir,
        &url,
        &[
            "predict", "churn", "--input", "req.csv", "--output", "out.csv",
        ],
    );
    outputs.push_str(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    // A query instead of a table.
    let p = dir.join("shop.mlp");
    let pipeline = std::fs::read_to_string(&p).unwrap();
    std::fs::write(
        &p,
        pipeline.replace(
            r#"postgres(table = "customers","#,
            r#"postgres(query = "SELECT * FROM customers WHERE customer_id <= 400","#,
        ),
    )
    .unwrap();
    let o = mlp_db(&dir, &url, &["run", "."]);
    outputs.push_str(&text(&o));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source.customers (400 rows"),
        "{}",
        text(&o)
    );
    assert!(!outputs.contains(PASSWORD), "the password in an output");
    assert!(
        !all_text(&dir.join(".mlp")).contains(PASSWORD),
        "the password in a file under .mlp/"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Permanent failures stop the run at once naming the source and the
/// server's reason; transient ones are retried (a server that comes up
/// while the run waits is read).
#[test]
fn postgres_failures_are_named_and_transient_ones_retried() {
    let pg = Pg::start("failures");
    let dir = shop(&pg, "pg-failures");
    let fails = |url: &str, needles: &[&str], absent: &[&str]| {
        let o = mlp_db(&dir, url, &["run", "."]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        for n in needles {
            assert!(t.contains(n), "{n}: {t}");
        }
        for n in absent {
            assert!(!t.contains(n), "{n}: {t}");
        }
    };
    let wrong = format!("postgres://mlp:not-it@127.0.0.1:{}/postgres", pg.port);
    fails(
        &wrong,
        &["password authentication failed", "28P01"],
        &["attempts", "not-it"],
    );
    pg.sql("ALTER TABLE customers ALTER COLUMN age TYPE numeric;");
    fails(
        &pg.url(),
        &["column `age` is numeric", "cannot be read as int"],
        &[PASSWORD],
    );
    pg.sql(
        "ALTER TABLE customers ALTER COLUMN age TYPE int; ALTER TABLE customers RENAME TO people;",
    );
    fails(
        &pg.url(),
        &["relation \"customers\" does not exist", "42P01"],
        &["attempts"],
    );
    pg.sql("ALTER TABLE people RENAME TO customers;");
    // The server down: retried, then named.
    pg.down();
    fails(
        &pg.url(),
        &["error connecting to server", "after 4 attempts"],
        &[PASSWORD],
    );
    // A server that comes up while the run retries: read.
    let started = std::thread::scope(|s| {
        let up = s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(150));
            pg.up();
        });
        let o = mlp_db(&dir, &pg.url(), &["run", "."]);
        up.join().unwrap();
        o
    });
    assert!(started.status.success(), "{}", text(&started));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `refresh = 1s`: a server re-reads the table it looks customers up in,
/// and swaps the new state in.
#[test]
fn serving_re_reads_a_postgres_table_every_refresh() {
    let pg = Pg::start("refresh");
    let dir = shop(&pg, "pg-refresh");
    let p = dir.join("shop.mlp");
    let pipeline = std::fs::read_to_string(&p).unwrap().replace(
        r#"url = env("SHOP_DB")) {"#,
        r#"url = env("SHOP_DB"), refresh = 1s) {"#,
    );
    std::fs::write(&p, pipeline).unwrap();
    let o = mlp_db(&dir, &pg.url(), &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(["serve", "churn", "--port", "0"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("SHOP_DB", pg.url())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let server = common::Server {
        url: {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.split_whitespace()
                .find(|w| w.starts_with("http://"))
                .unwrap_or_else(|| panic!("no address in: {line}"))
                .to_string()
        },
        child,
    };
    let rows = || {
        let (_, m) = common::get(&format!("{}/metrics", server.url));
        m.lines()
            .find(|l| l.starts_with("mlp_lookup_rows{table=\"customers\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(rows(), Some(500.0));
    pg.sql("INSERT INTO customers VALUES (501, '2024-01-01', 'pro', 'US', 30);");
    let waited = std::time::Instant::now();
    while rows() != Some(501.0) {
        assert!(waited.elapsed().as_secs() < 20, "not refreshed");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `mlp infer env:SHOP_DB --table customers` prints a block that names the
/// variable (never the address), checks and reads the table.
#[test]
fn infer_reads_a_postgres_table() {
    let pg = Pg::start("infer");
    let dir = shop(&pg, "pg-infer");
    let o = mlp_db(
        &dir,
        &pg.url(),
        &["infer", "env:SHOP_DB", "--table", "customers"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let block = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(!text(&o).contains(PASSWORD));
    assert!(
        block.contains(
            r#"source customers = postgres(table = "customers", url = env("SHOP_DB")) {"#
        ) && block.contains("age         : int?"),
        "{block}"
    );
    std::fs::remove_file(dir.join("shop.mlp")).unwrap();
    std::fs::write(dir.join("p.mlp"), &block).unwrap();
    let o = mlp_db(&dir, &pg.url(), &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("source.customers (500 rows"),
        "{}",
        text(&o)
    );
    let o = mlp_db(
        &dir,
        &pg.url(),
        &["infer", "env:SHOP_DB", "--table", "nope"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("42P01") && !text(&o).contains(PASSWORD),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
