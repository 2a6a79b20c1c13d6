//! Remote file sources against real servers on loopback: an S3-compatible
//! server (moto's server mode, from PyPI; it checks every request's
//! signature against the access keys it issued) and an HTTP file server
//! written here (ETags, Last-Modified, range requests, failures on demand).
//! Each test starts its own servers and stops them on drop, even on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{all_text, empty_project, houses_csv, text, walkdir_files as walkdir, DEPLOYED};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------- S3 (moto)

/// The Python that has moto: `MLP_TEST_PYTHON`, or the virtual environment
/// `.ci/run` makes (`~/.cache/mlp-py`).
fn python() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("MLP_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/mlp-py/bin/python")))
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import moto, boto3"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "no Python with moto: .ci/run makes ~/.cache/mlp-py (python3 -m venv ~/.cache/mlp-py && ~/.cache/mlp-py/bin/pip install 'moto[server]'), or set MLP_TEST_PYTHON"
    );
}

/// Setup and uploads, with boto3 (a client independent of ours).
const S3_HELPER: &str = r#"
import sys, json, boto3
from botocore.config import Config
endpoint, cmd = sys.argv[1], sys.argv[2]
cfg = Config(retries={"max_attempts": 1})
if cmd == "setup":
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap", config=cfg)
    iam.create_user(UserName="mlp")
    arn = iam.create_policy(PolicyName="s3", PolicyDocument=json.dumps({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.attach_user_policy(UserName="mlp", PolicyArn=arn)
    k = iam.create_access_key(UserName="mlp")["AccessKey"]
    print(k["AccessKeyId"], k["SecretAccessKey"])
else:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id=sys.argv[3], aws_secret_access_key=sys.argv[4], config=cfg)
    if cmd == "bucket":
        s3.create_bucket(Bucket=sys.argv[5])
    elif cmd == "put":
        s3.put_object(Bucket=sys.argv[5], Key=sys.argv[6], Body=open(sys.argv[7], "rb").read())
    elif cmd == "delete":
        s3.delete_object(Bucket=sys.argv[5], Key=sys.argv[6])
"#;

/// A moto server enforcing signatures (after the four unsigned requests
/// that create the access key); killed on drop.
struct S3 {
    child: Child,
    python: PathBuf,
    endpoint: String,
    key_id: String,
    secret: String,
    helper: PathBuf,
}

impl S3 {
    fn start(name: &str) -> S3 {
        let python = python();
        let port = free_port();
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "4")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let helper = std::env::temp_dir().join(format!("mlp-s3-{name}-{}.py", std::process::id()));
        std::fs::write(&helper, S3_HELPER).unwrap();
        let mut s3 = S3 {
            child,
            python,
            endpoint: format!("http://127.0.0.1:{port}"),
            key_id: String::new(),
            secret: String::new(),
            helper,
        };
        wait_for_port(port, "moto");
        let o = s3.helper(&["setup"]);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let mut words = out.split_whitespace();
        s3.key_id = words.next().expect("an access key id").to_string();
        s3.secret = words.next().expect("a secret key").to_string();
        s3
    }

    fn helper(&self, args: &[&str]) -> Output {
        let o = Command::new(&self.python)
            .arg(&self.helper)
            .arg(&self.endpoint)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "s3 helper {args:?}: {}", text(&o));
        o
    }

    fn signed(&self, args: &[&str]) {
        let mut all = vec![args[0], self.key_id.as_str(), self.secret.as_str()];
        all.extend(&args[1..]);
        self.helper(&all);
    }

    fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let f = self
            .helper
            .with_extension(format!("{}.body", key.replace('/', "_")));
        std::fs::write(&f, body).unwrap();
        self.signed(&["put", bucket, key, f.to_str().unwrap()]);
        std::fs::remove_file(f).ok();
    }

    /// `mlp` with this server's endpoint and credentials in the standard
    /// variables (the secret may be replaced to test a refusal).
    fn mlp(&self, dir: &Path, secret: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_mlp"))
            .args(args)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_file(&self.helper).ok();
    }
}

/// The houses pipeline reading its rows from `path`.
fn houses_pipeline(path: &str) -> String {
    DEPLOYED.replace(r#"csv("houses.csv")"#, &format!(r#"csv("{path}")"#))
}

/// The houses rows split in two CSV files with one header each.
fn houses_parts(rows: usize, seed: u64) -> (String, String) {
    let all = houses_csv(rows, seed);
    let mut lines = all.lines();
    let header = lines.next().unwrap().to_string();
    let body: Vec<&str> = lines.collect();
    let (a, b) = body.split_at(body.len() / 2);
    (
        format!("{header}\n{}\n", a.join("\n")),
        format!("{header}\n{}\n", b.join("\n")),
    )
}

fn plan_line<'a>(plan: &'a str, stage: &str) -> &'a str {
    plan.lines()
        .find(|l| l.contains(stage))
        .unwrap_or_else(|| panic!("no `{stage}` in the plan:\n{plan}"))
}

#[test]
fn an_s3_glob_trains_reruns_only_on_change_and_keeps_its_secret() {
    let s3 = S3::start("glob");
    s3.signed(&["bucket", "lake"]);
    let (a, b) = houses_parts(400, 7);
    s3.put("lake", "houses/part-1.csv", a.as_bytes());
    s3.put("lake", "houses/part-2.csv", b.as_bytes());
    s3.put("lake", "other/unrelated.csv", b"x\n1\n");

    // The same rows read locally: the model must be the same.
    let local = empty_project("s3-local");
    std::fs::write(local.join("houses.csv"), houses_csv(400, 7)).unwrap();
    std::fs::write(local.join("p.mlp"), DEPLOYED).unwrap();
    let o = s3.mlp(&local, &s3.secret, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));

    let dir = empty_project("s3-glob");
    std::fs::write(dir.join("p.mlp"), houses_pipeline("s3://lake/houses/*.csv")).unwrap();
    let o = s3.mlp(&dir, &s3.secret, &["run", "."]);
    let first = text(&o);
    assert!(o.status.success(), "{first}");

    // The same data gives the same model: the evaluation reports agree.
    let model = |d: &Path| {
        let b = common::production_bundle(d, "house-price");
        b["model"].clone()
    };
    assert_eq!(model(&dir), model(&local));

    // Unchanged objects: nothing downloaded, nothing re-runs.
    let o = s3.mlp(&dir, &s3.secret, &["plan", "."]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    assert!(
        plan_line(&plan, "source.houses").contains("ETag unchanged"),
        "{plan}"
    );
    assert!(plan.contains("0 of 9 stages will run"), "{plan}");

    // One part rewritten: downloaded again, and the pipeline re-runs.
    let (_, b2) = houses_parts(400, 8);
    s3.put("lake", "houses/part-2.csv", b2.as_bytes());
    let o = s3.mlp(&dir, &s3.secret, &["plan", "."]);
    let plan = text(&o);
    assert!(
        plan_line(&plan, "source.houses").contains("s3://lake/houses/part-2.csv")
            && plan_line(&plan, "source.houses").contains("ETag changed"),
        "{plan}"
    );
    // A new part joins the glob; a removed one leaves the mirror.
    s3.put("lake", "houses/part-3.csv", a.as_bytes());
    s3.signed(&["delete", "lake", "houses/part-1.csv"]);
    let o = s3.mlp(&dir, &s3.secret, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let mirrored: Vec<String> = walkdir(&dir.join(".mlp/fetched/houses/objects"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    assert!(mirrored.contains(&"part-3.csv".to_string()), "{mirrored:?}");
    assert!(
        !mirrored.contains(&"part-1.csv".to_string()),
        "{mirrored:?}"
    );

    // The secret is nowhere: not in the store, not in any output.
    let stored = all_text(&dir.join(".mlp"));
    assert!(
        !stored.contains(&s3.secret),
        "the secret key is under .mlp/"
    );
    assert!(!first.contains(&s3.secret));

    // A wrong secret: refused at once, naming the variables to check.
    let again = empty_project("s3-wrong-key");
    std::fs::write(
        again.join("p.mlp"),
        houses_pipeline("s3://lake/houses/*.csv"),
    )
    .unwrap();
    let start = Instant::now();
    let o = s3.mlp(&again, "not-the-secret", &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("s3://lake/houses/"), "{t}");
    assert!(t.contains("AWS_SECRET_ACCESS_KEY"), "{t}");
    assert!(!t.contains(&s3.secret), "{t}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "a refusal is not retried"
    );

    // A missing object: 404, named.
    std::fs::write(
        again.join("p.mlp"),
        houses_pipeline("s3://lake/houses/nope.csv"),
    )
    .unwrap();
    let o = s3.mlp(&again, &s3.secret, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(
        t.contains("s3://lake/houses/nope.csv") && t.contains("404"),
        "{t}"
    );
    // A glob that matches nothing.
    std::fs::write(again.join("p.mlp"), houses_pipeline("s3://lake/none/*.csv")).unwrap();
    let o = s3.mlp(&again, &s3.secret, &["run", "."]);
    let t = text(&o);
    assert!(
        !o.status.success() && t.contains("s3://lake/none/*.csv"),
        "{t}"
    );

    for d in [dir, local, again] {
        std::fs::remove_dir_all(d).ok();
    }
}

#[test]
fn infer_reads_an_s3_parquet_object() {
    use polars::prelude::*;
    let s3 = S3::start("infer");
    s3.signed(&["bucket", "lake"]);
    let mut df = df!(
        "customer_id" => [1i64, 2, 3],
        "plan" => ["pro", "free", "pro"],
        "age" => [Some(31i64), None, Some(45)],
    )
    .unwrap();
    let mut bytes = vec![];
    ParquetWriter::new(&mut bytes).finish(&mut df).unwrap();
    s3.put("lake", "shop/customers.parquet", &bytes);
    let dir = empty_project("s3-infer");
    let o = s3.mlp(
        &dir,
        &s3.secret,
        &["infer", "s3://lake/shop/customers.parquet"],
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains(r#"parquet("s3://lake/shop/customers.parquet")"#),
        "{t}"
    );
    assert!(t.contains("customer_id") && t.contains("age"), "{t}");
    assert!(!t.contains(&s3.secret));
    std::fs::remove_dir_all(dir).ok();
}

// ------------------------------------------------------------------- HTTP

#[derive(Default)]
struct HttpState {
    files: HashMap<String, Vec<u8>>,
    etag: bool,
    last_modified: bool,
    /// Answer 503 to this many coming requests.
    fail_next: usize,
    /// Cut the next whole-file GET halfway through its body.
    cut_next_get: bool,
    /// Each request: "METHOD path [range]".
    log: Vec<String>,
    /// Bumped by each change of a file (the ETag and Last-Modified).
    version: u32,
}

/// A file server on loopback; stopped on drop.
struct Http {
    port: u16,
    state: Arc<Mutex<HttpState>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Http {
    fn start() -> Http {
        Http::start_on(free_port(), Duration::ZERO, HttpState::default())
    }

    /// Starts listening after `delay` (connections are refused until then).
    fn start_on(port: u16, delay: Duration, state: HttpState) -> Http {
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            ready_tx.send(()).ok();
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let st = st.clone();
                    std::thread::spawn(move || serve_one(c, &st));
                }
            }
        });
        if delay.is_zero() {
            ready_rx.recv().unwrap();
        }
        Http {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    fn set(&self, path: &str, body: &[u8]) {
        let mut s = self.state.lock().unwrap();
        s.files.insert(path.to_string(), body.to_vec());
        s.version += 1;
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(mut c: TcpStream, state: &Mutex<HttpState>) {
    c.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut first = String::new();
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = v
                .trim()
                .strip_prefix("bytes=")
                .map(|r| r.trim().to_string());
        }
    }
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts
        .next()
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string();
    let mut s = state.lock().unwrap();
    s.log.push(format!(
        "{method} {path}{}",
        range.as_ref().map(|r| format!(" {r}")).unwrap_or_default()
    ));
    let mut head = String::new();
    if s.fail_next > 0 {
        s.fail_next -= 1;
        let _ = c.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        );
        return;
    }
    let Some(body) = s.files.get(&path).cloned() else {
        let _ = c.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        );
        return;
    };
    if s.etag {
        head.push_str(&format!("ETag: \"v{}-{}\"\r\n", s.version, body.len()));
    }
    if s.last_modified {
        head.push_str(&format!(
            "Last-Modified: Wed, 21 Oct 2015 07:{:02}:{:02} GMT\r\n",
            s.version / 60 % 60,
            s.version % 60
        ));
    }
    let (status, slice) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((a, b)) => {
            let a: usize = a.parse().unwrap_or(0);
            let b: usize = b.parse().map(|b: usize| b + 1).unwrap_or(body.len());
            head.push_str(&format!(
                "Content-Range: bytes {a}-{}/{}\r\n",
                b - 1,
                body.len()
            ));
            ("206 Partial Content", body[a..b.min(body.len())].to_vec())
        }
        None => ("200 OK", body.clone()),
    };
    let cut = method == "GET" && range.is_none() && std::mem::take(&mut s.cut_next_get);
    drop(s);
    let _ = c.write_all(
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{head}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            slice.len()
        )
        .as_bytes(),
    );
    if method == "GET" {
        if cut {
            let _ = c.write_all(&slice[..slice.len() / 2]);
            let _ = c.flush();
            let _ = c.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = c.write_all(&slice);
    }
    // Drain what the client may still send before closing.
    let mut sink = [0u8; 64];
    let _ = c.set_read_timeout(Some(Duration::from_millis(10)));
    let _ = reader.get_mut().read(&mut sink);
}

#[test]
fn an_http_file_is_fetched_once_per_etag_and_resumed_when_cut() {
    let http = Http::start();
    {
        let mut s = http.state.lock().unwrap();
        s.etag = true;
        s.last_modified = true;
        // The first download is cut halfway: resumed by a range request.
        s.cut_next_get = true;
        // And the first request is answered 503: retried.
        s.fail_next = 1;
    }
    let rows = houses_csv(300, 3);
    http.set("data/houses.csv", rows.as_bytes());
    let dir = empty_project("http-etag");
    std::fs::write(
        dir.join("p.mlp"),
        houses_pipeline(&http.url("data/houses.csv")),
    )
    .unwrap();
    let o = common::mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}\n{:?}", text(&o), http.log());
    let log = http.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("GET data/houses.csv ") && l.contains('-')),
        "the cut transfer was resumed with a range request: {log:?}"
    );
    let mirrored = walkdir(&dir.join(".mlp/fetched/houses/objects"));
    assert_eq!(mirrored.len(), 1);
    assert_eq!(std::fs::read(&mirrored[0]).unwrap(), rows.as_bytes());

    // Unchanged: one HEAD, no GET, nothing re-runs.
    let before = http.log().len();
    let o = common::mlp(&dir, &["plan", "."]);
    let plan = text(&o);
    assert!(
        plan_line(&plan, "source.houses").contains("ETag unchanged"),
        "{plan}"
    );
    let since: Vec<String> = http.log()[before..].to_vec();
    assert!(since.iter().all(|l| l.starts_with("HEAD")), "{since:?}");

    // Changed: fetched and re-run.
    http.set("data/houses.csv", houses_csv(300, 4).as_bytes());
    let o = common::mlp(&dir, &["plan", "."]);
    let plan = text(&o);
    assert!(
        plan_line(&plan, "source.houses").contains("ETag changed"),
        "{plan}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_http_server_without_etag_is_trusted_on_date_and_size_or_compared_by_content() {
    let http = Http::start();
    http.state.lock().unwrap().last_modified = true;
    http.set("h.csv", houses_csv(200, 5).as_bytes());
    let dir = empty_project("http-dates");
    std::fs::write(dir.join("p.mlp"), houses_pipeline(&http.url("h.csv"))).unwrap();
    let o = common::mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    let o = common::mlp(&dir, &["plan", "."]);
    let plan = text(&o);
    assert!(
        plan_line(&plan, "source.houses").contains("Last-Modified and size unchanged"),
        "{plan}"
    );

    // Neither header: fetched again each time, and the content hash decides.
    http.state.lock().unwrap().last_modified = false;
    let o = common::mlp(&dir, &["plan", "."]);
    let plan = text(&o);
    assert!(o.status.success(), "{plan}");
    let line = plan_line(&plan, "source.houses");
    assert!(
        line.contains("cached") && line.contains("same content"),
        "{plan}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn http_failures_are_retried_or_named() {
    // A server that refuses connections, then listens: retried, then read.
    let port = free_port();
    let mut state = HttpState {
        etag: true,
        ..Default::default()
    };
    state
        .files
        .insert("h.csv".into(), houses_csv(200, 6).into_bytes());
    let late = Http::start_on(port, Duration::from_millis(700), state);
    let dir = empty_project("http-failures");
    let pipeline = |url: &str, retries: u32| {
        houses_pipeline(url).replace(
            &format!(r#"csv("{url}")"#),
            &format!(r#"csv("{url}", retries = {retries})"#),
        )
    };
    std::fs::write(dir.join("p.mlp"), pipeline(&late.url("h.csv"), 8)).unwrap();
    let o = common::mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    drop(late);

    // 503 twice, then the file: read with `retries = 3`.
    let http = Http::start();
    http.state.lock().unwrap().fail_next = 2;
    http.set("h.csv", houses_csv(200, 6).as_bytes());
    let dir2 = empty_project("http-503");
    std::fs::write(dir2.join("p.mlp"), pipeline(&http.url("h.csv"), 3)).unwrap();
    let o = common::mlp(&dir2, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));

    // 503 every time: gives up after the retries, saying so.
    http.state.lock().unwrap().fail_next = 1000;
    let dir3 = empty_project("http-503-always");
    std::fs::write(dir3.join("p.mlp"), pipeline(&http.url("h.csv"), 2)).unwrap();
    let before = http.log().len();
    let o = common::mlp(&dir3, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains(&http.url("h.csv")) && t.contains("503"), "{t}");
    assert!(t.contains("retries"), "{t}");
    assert_eq!(http.log().len() - before, 3, "one request and two retries");

    // 404: permanent, not retried.
    http.state.lock().unwrap().fail_next = 0;
    std::fs::write(dir3.join("p.mlp"), pipeline(&http.url("missing.csv"), 3)).unwrap();
    let before = http.log().len();
    let o = common::mlp(&dir3, &["run", "."]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("missing.csv") && t.contains("404"), "{t}");
    assert_eq!(http.log().len() - before, 1, "a 404 is not retried");
    for d in [dir, dir2, dir3] {
        std::fs::remove_dir_all(d).ok();
    }
}
