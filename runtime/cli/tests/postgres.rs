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

/// A TCP relay on loopback to the cluster that cuts its first connection
/// once `cut_after` bytes of the server's answer have passed (the result
/// stops arriving mid-stream), and relays later ones whole. Counts the
/// connections it took.
struct CuttingRelay {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl CuttingRelay {
    fn start(server_port: u16, cut_after: usize) -> CuttingRelay {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let n = counted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", server_port)) else {
                    return;
                };
                let (mut c_read, mut s_write) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(std::net::Shutdown::Both);
                });
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let limit = if n == 0 { cut_after } else { usize::MAX };
                    let mut passed = 0usize;
                    let mut buf = [0u8; 8192];
                    while let Ok(k) = s_read.read(&mut buf) {
                        if k == 0 {
                            break;
                        }
                        let k = k.min(limit - passed);
                        if c_write.write_all(&buf[..k]).is_err() {
                            break;
                        }
                        passed += k;
                        if passed >= limit {
                            break;
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                    let _ = s_read.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CuttingRelay { port, connections }
    }
}

/// Every PostgreSQL type a declared type reads, decoded as it streams (int2,
/// int4, int8, float4, float8, numeric, varchar, char(n), text, an enum,
/// bool, date, timestamp, timestamptz, nulls among them), through a
/// connection the relay cuts mid-result: the fetch is retried whole and the
/// values are the table's.
#[test]
fn a_result_cut_mid_stream_is_fetched_again_and_every_type_decodes() {
    let pg = Pg::start("wide");
    pg.sql(
        "CREATE TYPE tier AS ENUM ('basic', 'pro');
         CREATE TABLE wide (
             id bigint, small smallint, mid int, ratio real, score double precision,
             amount numeric(10, 2), tag varchar(20), pad char(4), note text, level tier,
             flag bool, day date, at timestamp, at_utc timestamptz);
         INSERT INTO wide
         SELECT i, (i % 100)::smallint, i * 3, i / 4.0, i / 8.0, i / 100.0,
                'tag_' || (i % 7), 'ab', CASE WHEN i % 5 = 0 THEN NULL ELSE 'note ' || i END,
                CASE WHEN i % 2 = 0 THEN 'pro' ELSE 'basic' END::tier,
                i % 3 = 0, date '2020-01-01' + i % 1000,
                timestamp '2020-01-01 00:00:00' + i * interval '1 second',
                timestamptz '2020-01-01 00:00:00+02' + i * interval '1 second'
         FROM generate_series(1, 20000) AS i;",
    );
    let relay = CuttingRelay::start(pg.port, 200_000);
    let dir = empty_project("pg-wide");
    std::fs::write(
        dir.join("p.mlp"),
        r#"source wide = postgres(table = "wide", url = env("SHOP_DB")) {
    id     : int
    small  : int
    mid    : int
    ratio  : float
    score  : float
    amount : float
    tag    : category
    pad    : str
    note   : str?
    level  : category["basic", "pro"]
    flag   : bool
    day    : date
    at     : datetime
    at_utc : datetime
}
"#,
    )
    .unwrap();
    let url = format!(
        "postgres://mlp:{PASSWORD}@127.0.0.1:{}/postgres",
        relay.port
    );
    let o = mlp_db(&dir, &url, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("source.wide (20000 rows"), "{}", text(&o));
    // The stage says where its time went: the fetch, while planning.
    assert!(
        text(&o).contains("fetched while the run was planned: ")
            && text(&o).contains("decoded as it arrived"),
        "{}",
        text(&o)
    );
    assert!(!all_text(&dir).contains(PASSWORD));
    assert!(
        relay.connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the first connection was cut, so the rows were fetched again"
    );
    let df = common::cached_frame(&dir, "source.wide");
    assert_eq!(df.height(), 20000);
    let row = |name: &str, i: usize| df.column(name).unwrap().get(i).unwrap().to_string();
    // Row 10 holds i = 10.
    let i = 9;
    assert_eq!(row("id", i), "10");
    assert_eq!(row("small", i), "10");
    assert_eq!(row("mid", i), "30");
    assert_eq!(row("ratio", i), "2.5");
    assert_eq!(row("score", i), "1.25");
    assert_eq!(row("amount", i), "0.1");
    assert_eq!(row("tag", i), "\"tag_3\"");
    assert_eq!(
        row("pad", i),
        "\"ab\"",
        "char(n) is read without its padding"
    );
    assert_eq!(row("note", i), "null");
    assert_eq!(row("note", i + 1), "\"note 11\"");
    assert_eq!(row("level", i), "\"pro\"");
    assert_eq!(row("flag", i), "false");
    assert_eq!(row("flag", i - 1), "true");
    assert_eq!(row("day", i), "2020-01-11");
    assert_eq!(row("at", i), "2020-01-01 00:00:10");
    assert_eq!(
        row("at_utc", i),
        "2019-12-31 22:00:10",
        "timestamptz in UTC"
    );
    // Unchanged: cached, and the rows were hashed as they arrived.
    let o = mlp_db(&dir, &pg.url(), &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("cached  source.wide"), "{}", text(&o));
    // Without retries, the cut is the error, named.
    let p = std::fs::read_to_string(dir.join("p.mlp")).unwrap();
    std::fs::write(
        dir.join("p.mlp"),
        p.replace(r#"env("SHOP_DB"))"#, r#"env("SHOP_DB"), retries = 0)"#),
    )
    .unwrap();
    let relay = CuttingRelay::start(pg.port, 200_000);
    let url = format!(
        "postgres://mlp:{PASSWORD}@127.0.0.1:{}/postgres",
        relay.port
    );
    let o = mlp_db(&dir, &url, &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("postgres table `wide`")
            && text(&o).contains("the result stopped arriving"),
        "{}",
        text(&o)
    );
    assert!(!text(&o).contains(PASSWORD));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A value the declaration refuses (a NaN, a level not declared, a null
/// where none is declared) stops the run naming the table and the row, not
/// the fetched file; under a quarantining check the rows are set aside.
#[test]
fn a_refused_value_is_named_by_its_table_and_row_or_set_aside() {
    let pg = Pg::start("refused");
    pg.sql(
        "CREATE TABLE n (id bigint, v float8, c text);
         INSERT INTO n VALUES (1, 1.5, 'a'), (2, 'NaN', 'b'), (3, 2.5, 'z'), (4, 3.0, NULL), (5, 4.0, 'b');",
    );
    let dir = empty_project("pg-refused");
    let source = r#"source n = postgres(table = "n", url = env("SHOP_DB")) {
    id : int
    v  : float
    c  : category["a", "b"]
}
"#;
    std::fs::write(dir.join("p.mlp"), source).unwrap();
    let o = mlp_db(&dir, &pg.url(), &["run", "."]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "postgres table `n` (source `n`), row 2, column `v`: NaN is not a valid float"
        ),
        "{}",
        text(&o)
    );
    std::fs::write(
        dir.join("p.mlp"),
        format!("{source}check n quarantine {{\n    not_null id\n}}\n"),
    )
    .unwrap();
    let o = mlp_db(&dir, &pg.url(), &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("quarantined 3 of 5 rows"), "{}", text(&o));
    let kept = common::cached_frame(&dir, "check.n");
    let ids: Vec<i64> = kept
        .column("id")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(ids, vec![1, 5]);
    let _ = std::fs::remove_dir_all(&dir);
}
