//! `mlp serve`: a bundle answers predictions over REST (axum on tokio).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/predict` | rows as JSON records (`[{..}]` or `{"rows": [{..}]}`) or columns (`{"columns": {"x": [..]}}`); predictions, class probabilities, the model version |
//! | `POST /invocations` | MLflow's scoring formats (`dataframe_split`, `dataframe_records`); `{"predictions": [..]}` |
//! | `GET /v1/schema`, `GET /openapi.json` | the request schema, from the bundle's compiled source schema |
//! | `GET /health` | the model and version being served |
//! | `GET /metrics` | Prometheus text: requests, errors by kind, latency histogram, rows predicted, drift gauges for the window |
//! | `GET /v1/monitor` | the window's drift report, latency percentiles and error rate (what `mlp monitor --server` reads) |
//!
//! The bundle is resolved from the registry by NAME[@alias]; a background
//! task re-resolves it every half second and swaps in a newly promoted (or
//! rolled back) version without a restart: a request in flight keeps the
//! version it started with. Bad input gets a 4xx with a JSON error naming the
//! column and the rule; the server keeps serving.

mod predict;
mod report;
mod request;

use predict::*;
use report::*;
use request::*;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mlp_compiler::plan::SourceColumn;
use mlp_compiler::types::Type;
use mlp_engine::bundle::{self, LocateError};
use mlp_engine::exec::{source, ExecError};
use mlp_engine::plugins::PluginHost;
use mlp_engine::predictor::Predictor;
use polars::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// What `mlp serve` needs to start.
pub struct ServeOptions {
    pub project: PathBuf,
    /// NAME, NAME@alias, NAME@version, or a bundle file.
    pub spec: String,
    pub host: String,
    pub port: u16,
    /// The largest request body accepted, in bytes.
    pub max_body: usize,
    /// How long a connection may take to send a request's headers, idle
    /// keep-alive connections included; then it is closed.
    pub header_timeout: Duration,
    /// Compiles the bundle's plugins.
    pub plugin_host: Arc<dyn PluginHost>,
}

/// The rows of the drift window when the `monitor` block declares none.
pub const DEFAULT_WINDOW: usize = 1000;
/// The fewest rows in the window for a drift threshold to apply.
pub const MIN_WINDOW_ROWS: usize = mlp_engine::monitor::MIN_ROWS;
/// How many latencies the percentiles are taken over.
const LATENCY_WINDOW: usize = 10_000;
/// Latency histogram buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A bundle ready to serve.
pub struct Loaded {
    pub name: String,
    pub version: String,
    /// The bundle, its plugins, its request and probability columns.
    pub predictor: Predictor,
    pub window: usize,
}

impl Loaded {
    fn load(
        path: &Path,
        version: String,
        host: &dyn PluginHost,
        cache: &Path,
        project: &Path,
    ) -> Result<Loaded, LocateError> {
        let predictor = Predictor::load(path, &version, host, Some(cache), project)?;
        let window = predictor
            .bundle
            .monitor
            .as_ref()
            .and_then(|m| m.window)
            .and_then(|w| usize::try_from(w).ok())
            .filter(|w| *w > 0)
            .unwrap_or(DEFAULT_WINDOW);
        Ok(Loaded {
            name: predictor.bundle.name.clone(),
            version,
            predictor,
            window,
        })
    }
}

/// Counters and the rolling windows.
#[derive(Default)]
struct Metrics {
    requests: BTreeMap<(String, u16), u64>,
    errors: BTreeMap<String, u64>,
    buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    rows: u64,
    latencies: VecDeque<f64>,
    /// The last requests' outcomes (true: an error), for the error rate.
    outcomes: VecDeque<bool>,
    /// The model's input rows of the last served requests.
    window: VecDeque<DataFrame>,
    window_rows: usize,
    window_version: String,
}

impl Metrics {
    fn observe(&mut self, endpoint: &str, status: u16, seconds: f64, error: Option<&str>) {
        *self
            .requests
            .entry((endpoint.to_string(), status))
            .or_default() += 1;
        if let Some(kind) = error {
            *self.errors.entry(kind.to_string()).or_default() += 1;
        }
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if seconds <= le {
                *b += 1;
            }
        }
        self.latency_count += 1;
        self.latency_sum += seconds;
        self.latencies.push_back(seconds);
        if self.latencies.len() > LATENCY_WINDOW {
            self.latencies.pop_front();
        }
        // Client mistakes (4xx) are not the service's errors.
        self.outcomes.push_back(status >= 500);
        if self.outcomes.len() > LATENCY_WINDOW {
            self.outcomes.pop_front();
        }
    }

    fn push_window(&mut self, version: &str, rows: DataFrame, limit: usize) {
        if self.window_version != version {
            self.window.clear();
            self.window_rows = 0;
            self.window_version = version.to_string();
        }
        self.window_rows += rows.height();
        self.window.push_back(rows);
        while let Some(front) = self.window.front() {
            if self.window_rows - front.height() >= limit {
                self.window_rows -= front.height();
                self.window.pop_front();
            } else {
                break;
            }
        }
    }

    fn window_frame(&self, limit: usize) -> Option<DataFrame> {
        let mut it = self.window.iter();
        let mut df = it.next()?.clone();
        for f in it {
            df.vstack_mut(f).ok()?;
        }
        let skip = df.height().saturating_sub(limit);
        Some(df.slice(skip as i64, limit))
    }

    fn percentile(&self, p: f64) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.latencies.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let k = ((p / 100.0) * v.len() as f64).ceil() as usize;
        Some(v[k.clamp(1, v.len()) - 1])
    }
}

struct AppState {
    current: RwLock<Arc<Loaded>>,
    metrics: Mutex<Metrics>,
    /// Why the registry cannot be followed right now (a damaged alias
    /// file, a damaged bundle): the version served is kept meanwhile.
    fault: Mutex<Option<String>>,
    /// Why the lookup state cannot be rebuilt right now (the state read
    /// before is kept meanwhile).
    lookup_fault: Mutex<Option<String>>,
    /// The last window report, reused for [`WINDOW_REPORT_TTL`].
    window_cache: Mutex<Option<CachedReport>>,
    /// Requests waiting for a prediction worker.
    jobs: std::sync::mpsc::Sender<Job>,
}

impl AppState {
    fn loaded(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// A client error: status, kind, message and where.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            extra: Map::new(),
        }
    }
    fn with(mut self, key: &str, v: impl Into<Value>) -> ApiError {
        self.extra.insert(key.into(), v.into());
        self
    }
    fn body(&self) -> Value {
        let mut e = Map::new();
        e.insert("kind".into(), self.kind.into());
        e.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.extra {
            e.insert(k.clone(), v.clone());
        }
        json!({ "error": e })
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// Where a spec's bundle is, as a message on failure (the server logs it,
/// or keeps serving what it has).
fn locate(project: &Path, spec: &str) -> Result<bundle::BundleLocation, String> {
    bundle::locate(project, spec).map_err(|e| match e.help() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    })
}

/// Builds the router around a loaded bundle (also used by the tests).
fn router(state: Arc<AppState>, max_body: usize) -> Router {
    let s1 = state.clone();
    let s2 = state.clone();
    let s3 = state.clone();
    let s4 = state.clone();
    let s5 = state.clone();
    let s6 = state.clone();
    let s7 = state;
    Router::new()
        .route(
            "/v1/predict",
            post(
                move |headers: axum::http::HeaderMap,
                      body: Result<Bytes, axum::extract::rejection::BytesRejection>| {
                    handle_predict(s1.clone(), headers, body, false)
                },
            ),
        )
        .route(
            "/invocations",
            post(
                move |headers: axum::http::HeaderMap,
                      body: Result<Bytes, axum::extract::rejection::BytesRejection>| {
                    handle_predict(s2.clone(), headers, body, true)
                },
            ),
        )
        .route(
            "/v1/schema",
            get(move || async move { json_response(StatusCode::OK, &schema_json(&s3.loaded())) }),
        )
        .route(
            "/openapi.json",
            get(move || async move { json_response(StatusCode::OK, &openapi(&s4.loaded())) }),
        )
        .route(
            "/health",
            get(move || async move {
                let l = s5.loaded();
                let fault = s5
                    .fault
                    .lock()
                    .ok()
                    .and_then(|f| f.clone())
                    .or_else(|| s5.lookup_fault.lock().ok().and_then(|f| f.clone()));
                let mut body = json!({
                    "status": if fault.is_some() { "degraded" } else { "ok" },
                    "model": l.name,
                    "version": l.version,
                });
                if let Some(f) = fault {
                    body["fault"] = f.into();
                }
                json_response(StatusCode::OK, &body)
            }),
        )
        .route(
            "/metrics",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics_text(&s6),
                )
            }),
        )
        .route(
            "/v1/monitor",
            get(move || async move { json_response(StatusCode::OK, &monitor_json(&s7)) }),
        )
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                json_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &ApiError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method_not_allowed",
                        format!(
                            "{} does not take {method} (its methods are in the Allow header); see GET /openapi.json",
                            mlp_engine::exec::truncate(uri.path(), 200)
                        ),
                    )
                    .body(),
                )
            },
        )
        .fallback(|| async {
            json_response(
                StatusCode::NOT_FOUND,
                &ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such route; see GET /openapi.json",
                )
                .body(),
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(())
}

/// A line on standard output; a closed pipe (a supervisor that stopped
/// reading) must not stop the server.
fn say(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Runs the server until SIGTERM or Ctrl-C; in-flight requests finish.
/// Why `mlp serve` could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bundle cannot be found, read or loaded.
    #[error(transparent)]
    Bundle(#[from] LocateError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot start {what}: {reason}")]
    Start { what: &'static str, reason: String },
}

impl ServeError {
    pub fn help(&self) -> Option<String> {
        match self {
            ServeError::Bundle(e) => e.help(),
            ServeError::Listen { .. } => Some(
                "is another server on that port? choose another with --port (0 picks a free one)"
                    .into(),
            ),
            ServeError::Start { .. } => None,
        }
    }
}

pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let cache = mlp_store::wasm_cache_dir(&opts.project);
    let at = bundle::locate(&opts.project, &opts.spec)?;
    let from_registry = at.from_registry;
    let loaded = Loaded::load(
        &at.path,
        at.version,
        opts.plugin_host.as_ref(),
        &cache,
        &opts.project,
    )?;
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let state = Arc::new(AppState {
        current: RwLock::new(Arc::new(loaded)),
        metrics: Mutex::new(Metrics::default()),
        fault: Mutex::new(None),
        lookup_fault: Mutex::new(None),
        window_cache: Mutex::new(None),
        jobs: tx,
    });
    // Predictions are CPU-bound: one worker per core, each gathering the
    // requests that queue while it works.
    let queue = Arc::new(Mutex::new(rx));
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    for i in 0..workers {
        let (st, q) = (state.clone(), queue.clone());
        std::thread::Builder::new()
            .name(format!("mlp-predict-{i}"))
            .spawn(move || worker(st, q))
            .map_err(|e| ServeError::Start {
                what: "a prediction worker",
                reason: e.to_string(),
            })?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Request frames are a few rows: polars works inline on these
        // threads (as on the prediction workers) rather than handing each
        // tiny operation to its thread pool and waiting.
        .on_thread_start(|| polars_async::executor::ALLOW_RAYON_THREADS.set(false))
        .build()
        .map_err(|e| ServeError::Start {
            what: "the server runtime",
            reason: e.to_string(),
        })?;
    rt.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| ServeError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        let local = listener.local_addr().map_err(|e| ServeError::Listen {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        {
            let l = state.loaded();
            say(&format!(
                "serving {} version {} on http://{local} (POST /v1/predict, POST /invocations, GET /openapi.json, GET /metrics)",
                l.name,
                &l.version[..l.version.len().min(12)]
            ));
        }
        {
            // Keep the lookup state fresh: rebuilt (and swapped whole) when a
            // table it was read from changes; on failure the state in use
            // is kept and the fault reported.
            let st = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(1000));
                loop {
                    tick.tick().await;
                    let st2 = st.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let loaded = st2.loaded();
                        let result = loaded.predictor.refresh_lookups();
                        let fault = match result {
                            Ok(true) => {
                                say("lookup state rebuilt: a table it reads changed (or a database's refresh was due)");
                                None
                            }
                            Ok(false) => None,
                            Err(e) => Some(format!("{e}; still serving the lookup state read before")),
                        };
                        if let Ok(mut f) = st2.lookup_fault.lock() {
                            if *f != fault {
                                if let Some(e) = &fault {
                                    let _ = writeln!(std::io::stderr(), "{e}");
                                }
                                *f = fault;
                            }
                        }
                    })
                    .await;
                }
            });
        }
        if from_registry {
            // Follow the alias: a promote or rollback swaps the bundle in.
            let st = state.clone();
            let (project, spec) = (opts.project.clone(), opts.spec.clone());
            let host = opts.plugin_host.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(500));
                loop {
                    tick.tick().await;
                    let current = st.loaded().version.clone();
                    let (project, spec, cache, st2, host) = (project.clone(), spec.clone(), cache.clone(), st.clone(), host.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        // A fault is reported (once, and on /health and
                        // /metrics) and the version served is kept.
                        let report = |fault: Option<String>| {
                            if let Ok(mut f) = st2.fault.lock() {
                                if *f != fault {
                                    if let Some(e) = &fault {
                                        let _ = writeln!(
                                            std::io::stderr(),
                                            "cannot follow `{spec}`: {e}; still serving {current}"
                                        );
                                    }
                                    *f = fault;
                                }
                            }
                        };
                        let at = match locate(&project, &spec) {
                            Ok(at) => at,
                            Err(e) => return report(Some(e)),
                        };
                        let version = at.version;
                        if version == current {
                            return report(None);
                        }
                        match Loaded::load(&at.path, version.clone(), host.as_ref(), &cache, &project) {
                            Ok(l) => {
                                if let Ok(mut g) = st2.current.write() {
                                    *g = Arc::new(l);
                                }
                                report(None);
                                say(&format!("now serving version {}", &version[..version.len().min(12)]));
                            }
                            Err(e) => report(Some(format!("cannot load version {version}: {e}"))),
                        }
                    })
                    .await;
                }
            });
        }
        // Connections are served one task each, by hyper directly: a client
        // that sends no request (or half a header) within the timeout is
        // disconnected, however many of them there are.
        let app = router(state, opts.max_body);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown_signal());
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(hyper_util::rt::TokioTimer::new())
                        .header_read_timeout(opts.header_timeout)
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                }
                _ = &mut shutdown => break,
            }
        }
        drop(listener);
        // Requests in flight finish (within a bound); idle connections close.
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(Duration::from_secs(30)) => {}
        }
        say("stopped");
        Ok::<(), ServeError>(())
    })
}
