//! Helpers shared by the end-to-end tests: run the binary, read its output.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `mlp` in a folder, without colour.
pub fn mlp(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mlp")
}

/// Standard output then standard error.
pub fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The cache entry folder of a stage (after a run that stored it).
pub fn cache_entry(dir: &Path, stage: &str) -> PathBuf {
    for e in std::fs::read_dir(dir.join(".mlp/cache")).unwrap() {
        let p = e.unwrap().path();
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.join("entry.json")).unwrap()).unwrap();
        if meta["stage"] == stage {
            return p;
        }
    }
    panic!("no cache entry for {stage}");
}

/// Builds the plugin workspace (`plugins/`) for wasm32 once per test binary
/// and returns the folder holding the `.wasm` files.
pub fn built_plugins() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let o = Command::new(cargo)
                .args([
                    "build",
                    "--release",
                    "--locked",
                    "--target",
                    "wasm32-unknown-unknown",
                    "--manifest-path",
                ])
                .arg(repo().join("plugins/Cargo.toml"))
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .output()
                .expect("run cargo");
            assert!(
                o.status.success(),
                "building the plugins failed (is the target installed? `rustup target add wasm32-unknown-unknown`):\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            target.join("wasm32-unknown-unknown/release")
        })
        .clone()
}

/// Copies built plugins into `dir/plugins/`.
pub fn install_plugins(dir: &Path, names: &[&str]) {
    let built = built_plugins();
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    for n in names {
        std::fs::copy(
            built.join(format!("{n}.wasm")),
            dir.join(format!("plugins/{n}.wasm")),
        )
        .unwrap();
    }
}

/// A Parquet file mlp wrote (`mlp predict`, `mlp cache export`).
#[allow(dead_code)]
pub fn read_parquet(path: &Path) -> polars::prelude::DataFrame {
    use polars::prelude::SerReader;
    polars::prelude::ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// A stage's stored output frame (its inherited columns read from its
/// base entries).
pub fn cached_frame(dir: &Path, stage: &str) -> polars::prelude::DataFrame {
    let entry = cache_entry(dir, stage);
    let key = entry.file_name().unwrap().to_string_lossy().to_string();
    let store = mlp_store::store::Store::existing(dir).unwrap();
    mlp_engine::stored::read_output(&store, &key).unwrap()
}

/// Whether a stage has a cache entry.
pub fn has_cache_entry(dir: &Path, stage: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir.join(".mlp/cache")) else {
        return false;
    };
    rd.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("entry.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .is_some_and(|m| m["stage"] == stage)
    })
}

/// Deterministic house sales with an id (as in tests/run.rs).
/// A deterministic stream of numbers in [0, 1) from `state` (an LCG).
pub fn uniform(mut state: u64) -> impl FnMut() -> f64 {
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    }
}

pub fn houses_csv(rows: usize, seed: u64) -> String {
    let cities = ["Austin", "Boston", "Chicago", "Denver"];
    let mut next = uniform(
        seed.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407),
    );
    let mut out = String::from("id,sold_at,city,sqft,bedrooms,price\n");
    for i in 1..=rows {
        let c = (next() * 4.0) as usize % 4;
        let sqft = 600.0 + next() * 3000.0;
        let beds = if next() < 0.05 {
            String::new()
        } else {
            ((sqft / 700.0) as i64 + 1).to_string()
        };
        let month = 1 + (next() * 12.0) as i64 % 12;
        let price = 50000.0 + sqft * 150.0 + c as f64 * 20000.0 + next() * 20000.0;
        out.push_str(&format!(
            "{i},2020-{month:02}-15,{},{sqft:.1},{beds},{price:.2}\n",
            cities[c]
        ));
    }
    out
}

pub const DEPLOYED: &str = r#"
source houses = csv("houses.csv") {
    id       : int
    sold_at  : date
    city     : category
    sqft     : float
    bedrooms : int?
    price    : float
}
check houses {
    range sqft 100..50000
    values city in ["Austin", "Boston", "Chicago", "Denver"]
}
split data = houses { train = 0.8  test = 0.2  key = id }
transform prep = data {
    impute bedrooms with median
    encode city with onehot
    scale sqft with standard
}
features feats = prep {
    per_room  = sqft / (bedrooms + 1)
    month     = month(sold_at)
    city_mean = mean(sqft) over city
}
model price = ridge(feats) {
    target  = price
    exclude = id, sold_at
    alpha   = [0.1, 1.0]
    tune { cv = 3  metric = rmse }
}
evaluate price on test {
    metrics rmse, r2
    require r2 >= 0.5
}
deploy price as "house-price" { alias = "production" }
monitor price {
    drift sqft with psi < 0.2
    drift city with chi2 p > 0.01
}
"#;

pub fn deployed_project(name: &str, rows: usize, seed: u64) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-deployed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.mlp"), DEPLOYED).unwrap();
    std::fs::write(dir.join("houses.csv"), houses_csv(rows, seed)).unwrap();
    let o = mlp(&dir, &["run", "."]);
    assert!(o.status.success(), "{}", text(&o));
    dir
}

/// A running `mlp serve`; killed on drop.
pub struct Server {
    pub child: std::process::Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(dir: &Path, args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlp"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in: {line}"))
        .to_string();
    Server { child, url }
}

/// POSTs a body; (status, JSON answer).
pub fn post(url: &str, body: &str) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text)),
    )
}

pub fn get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

/// An empty project folder for a test, named after it (emptied first).
pub fn empty_project(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-project-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The bundle `NAME@production` points at, as JSON.
pub fn production_bundle(dir: &Path, name: &str) -> serde_json::Value {
    let reg = mlp_store::registry::Registry::open(&dir.join(".mlp"));
    let (n, version) = reg.resolve(name).unwrap();
    let bytes = std::fs::read(reg.bundle_path(&n, &version)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// `mlp run .` that succeeds; its output.
pub fn run_ok(dir: &Path) -> String {
    let o = mlp(dir, &["run", "."]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    t
}

/// `mlp ARGS` in `dir`, killed after `secs` seconds.
pub fn mlp_within(dir: &Path, secs: u32, args: &[&str]) -> Output {
    Command::new("timeout")
        .arg(secs.to_string())
        .arg(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// The first ```mlp block of a file under `docs/`.
pub fn docs_pipeline(doc: &str) -> String {
    let text = std::fs::read_to_string(repo().join("docs").join(doc)).unwrap();
    text.split("```mlp\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap_or_else(|| panic!("no mlp block in docs/{doc}"))
        .to_string()
}

/// Every file under a folder, as text (lossy).
pub fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in walkdir_files(dir) {
        out.push_str(&String::from_utf8_lossy(
            &std::fs::read(&e).unwrap_or_default(),
        ));
    }
    out
}

pub fn walkdir_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
