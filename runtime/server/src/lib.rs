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

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use mlp_compiler::plan::SourceColumn;
use mlp_compiler::types::Type;
use mlp_engine::bundle::{self, Bundle};
use mlp_engine::exec::{source, ExecError};
use mlp_engine::plugins::{PluginHost, Plugins};
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
    pub bundle: Bundle,
    pub plugins: Plugins,
    /// The request columns (those the inference slice reads).
    pub columns: Vec<SourceColumn>,
    pub window: usize,
}

impl Loaded {
    fn load(
        path: &Path,
        version: String,
        host: &dyn PluginHost,
        cache: &Path,
    ) -> Result<Loaded, String> {
        let (bundle, _) = Bundle::read(path, Some(&version))?;
        let plugins =
            bundle::load_plugins(&bundle, host, Some(cache)).map_err(|e| e.to_string())?;
        let columns = bundle.request_columns();
        let window = bundle
            .monitor
            .as_ref()
            .and_then(|m| m.window)
            .and_then(|w| usize::try_from(w).ok())
            .filter(|w| *w > 0)
            .unwrap_or(DEFAULT_WINDOW);
        Ok(Loaded {
            name: bundle.name.clone(),
            version,
            bundle,
            plugins,
            columns,
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

/// How the request's rows arrived.
enum Rows {
    Records(Vec<Value>),
    Columns(Map<String, Value>),
    /// MLflow's `dataframe_split`: column names and rows of values.
    Split(Vec<String>, Vec<Value>),
}

fn parse_body(body: &[u8], mlflow: bool) -> Result<Rows, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
        .with("line", e.line())
        .with("column", e.column())
    })?;
    let shape_help = if mlflow {
        "send {\"dataframe_split\": {\"columns\": [...], \"data\": [[...]]}} or {\"dataframe_records\": [{...}]}"
    } else {
        "send [{\"column\": value, ...}], {\"rows\": [{...}]} or {\"columns\": {\"column\": [values]}}"
    };
    let bad_shape = |what: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_shape",
            format!("{what}; {shape_help}"),
        )
    };
    match v {
        Value::Array(rows) if !mlflow => Ok(Rows::Records(rows)),
        Value::Object(mut o) => {
            if let Some(Value::Array(rows)) = o.remove("dataframe_records") {
                return Ok(Rows::Records(rows));
            }
            if let Some(split) = o.remove("dataframe_split") {
                let cols: Vec<String> = split["columns"]
                    .as_array()
                    .ok_or_else(|| bad_shape("`dataframe_split` has no `columns` list"))?
                    .iter()
                    .map(|c| c.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad_shape("`dataframe_split.columns` must be strings"))?;
                let data = split["data"]
                    .as_array()
                    .cloned()
                    .ok_or_else(|| bad_shape("`dataframe_split` has no `data` list"))?;
                return Ok(Rows::Split(cols, data));
            }
            if !mlflow {
                if let Some(Value::Array(rows)) = o.remove("rows") {
                    return Ok(Rows::Records(rows));
                }
                if let Some(Value::Object(cols)) = o.remove("columns") {
                    return Ok(Rows::Columns(cols));
                }
            }
            Err(bad_shape("the body has none of the accepted keys"))
        }
        _ => Err(bad_shape("the body must be a JSON object or array")),
    }
}

/// The values of one column of the request, row by row.
fn column_values<'a>(
    rows: &'a Rows,
    name: &str,
    n: usize,
) -> Result<Vec<Option<&'a Value>>, ApiError> {
    Ok(match rows {
        Rows::Records(rs) => rs.iter().map(|r| r.get(name)).collect(),
        Rows::Columns(cols) => match cols.get(name) {
            None => vec![None; n],
            Some(Value::Array(vs)) => {
                if vs.len() != n {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_shape",
                        format!(
                            "column `{name}` has {} values where other columns have {n}",
                            vs.len()
                        ),
                    )
                    .with("column", name));
                }
                vs.iter().map(Some).collect()
            }
            Some(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!("column `{name}` must be a list of values"),
                )
                .with("column", name))
            }
        },
        Rows::Split(names, data) => match names.iter().position(|c| c == name) {
            None => vec![None; n],
            Some(k) => data.iter().map(|r| r.get(k)).collect(),
        },
    })
}

fn row_count(rows: &Rows) -> Result<usize, ApiError> {
    match rows {
        Rows::Records(r) => {
            if let Some(i) = r.iter().position(|v| !v.is_object()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!("row {} is not a JSON object", i + 1),
                )
                .with("row", i + 1));
            }
            Ok(r.len())
        }
        Rows::Columns(c) => {
            if let Some((name, _)) = c.iter().find(|(_, v)| !v.is_array()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!(
                        "column `{}` must be a list of values, one per row (`{{\"columns\": {{\"{}\": [...]}}}}`)",
                        mlp_engine::exec::truncate(name, 60),
                        mlp_engine::exec::truncate(name, 60)
                    ),
                )
                .with("column", name.clone()));
            }
            Ok(c.values()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .max()
                .unwrap_or(0))
        }
        Rows::Split(_, d) => {
            if let Some(i) = d.iter().position(|v| !v.is_array()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!("`dataframe_split.data` row {} is not a list", i + 1),
                )
                .with("row", i + 1));
            }
            Ok(d.len())
        }
    }
}

fn type_word(t: &Type) -> String {
    match t {
        Type::Date { format } | Type::Datetime { format } => {
            format!("{t} as a string in the format \"{format}\"")
        }
        Type::Category { levels: Some(l) } => format!("category (one of {})", l.join(", ")),
        other => other.to_string(),
    }
}

fn shown(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}...",
            &s[..s.char_indices().nth(37).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

/// One request column's values converted by `convert`: a null (or an absent
/// value) where the column allows it, else the error of `null`; a value
/// `convert` refuses is the error of `bad` (row numbers 1-based).
fn convert_column<'a, T>(
    values: &[Option<&'a Value>],
    null: &dyn Fn(usize) -> Result<(), ApiError>,
    bad: &dyn Fn(usize, &Value) -> ApiError,
    convert: impl Fn(&'a Value) -> Option<T>,
) -> Result<Vec<Option<T>>, ApiError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            None | Some(Value::Null) => null(i + 1).map(|_| None),
            Some(v) => convert(v).map(Some).ok_or_else(|| bad(i + 1, v)),
        })
        .collect()
}

/// The request rows as a frame of the source's types; every value checked.
fn request_frame(loaded: &Loaded, rows: &Rows) -> Result<DataFrame, ApiError> {
    let n = row_count(rows)?;
    if n == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_rows",
            "the request has no rows",
        ));
    }
    let mut cols: Vec<Column> = vec![];
    // Per row, the first value that rejects the row alone (an unknown level).
    let mut problems: Vec<Option<String>> = vec![None; n];
    for c in &loaded.columns {
        let values = column_values(rows, &c.name, n)?;
        if values.iter().all(Option::is_none) && !c.nullable {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_column",
                format!(
                    "the request has no column `{}` ({})",
                    c.name,
                    type_word(&c.ty)
                ),
            )
            .with("column", c.name.clone())
            .with("expected", type_word(&c.ty)));
        }
        let bad = |row: usize, v: &Value| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "wrong_type",
                format!(
                    "row {row}, column `{}`: {} is not {} {}",
                    c.name,
                    shown(v),
                    if c.ty == Type::Int { "an" } else { "a" },
                    type_word(&c.ty)
                ),
            )
            .with("column", c.name.clone())
            .with("row", row)
            .with("expected", type_word(&c.ty))
        };
        let null_check = |row: usize| -> Result<(), ApiError> {
            if c.nullable {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "null_value",
                    format!(
                        "row {row}, column `{}`: null in a column declared without `?`",
                        c.name
                    ),
                )
                .with("column", c.name.clone())
                .with("row", row))
            }
        };
        let name: PlSmallStr = c.name.as_str().into();
        let col = match &c.ty {
            Type::Float => Column::new(
                name,
                convert_column(&values, &null_check, &bad, Value::as_f64)?,
            ),
            Type::Int => Column::new(
                name,
                convert_column(&values, &null_check, &bad, |v| {
                    v.as_i64().or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                            .map(|f| f as i64)
                    })
                })?,
            ),
            Type::Bool => Column::new(
                name,
                convert_column(&values, &null_check, &bad, Value::as_bool)?,
            ),
            Type::Str | Type::Category { .. } => {
                let text = convert_column(&values, &null_check, &bad, Value::as_str)?;
                // A value outside declared levels rejects its row alone.
                if let Some(levels) = c.ty.levels().filter(|l| !l.is_empty()) {
                    for (i, v) in text.iter().enumerate() {
                        let Some(v) = v else { continue };
                        if problems[i].is_none() && !levels.iter().any(|l| l == v) {
                            problems[i] = Some(format!(
                                "column `{}`: \"{}\" is not one of the declared levels {} (nearest: \"{}\")",
                                c.name,
                                mlp_engine::exec::truncate(v, 80),
                                levels
                                    .iter()
                                    .map(|l| format!("\"{l}\""))
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                mlp_engine::exec::source::nearest_level(v, levels)
                            ));
                        }
                    }
                }
                Column::new(name, text)
            }
            Type::Date { format } => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                let days = convert_column(&values, &null_check, &bad, |v| {
                    let d = chrono::NaiveDate::parse_from_str(v.as_str()?.trim(), format).ok()?;
                    Some((d - epoch).num_days() as i32)
                })?;
                Int32Chunked::new(name, days)
                    .into_date()
                    .into_series()
                    .into_column()
            }
            Type::Datetime { format } => {
                let micros = convert_column(&values, &null_check, &bad, |v| {
                    let s = v.as_str()?.trim();
                    let t = chrono::NaiveDateTime::parse_from_str(s, format)
                        .or_else(|_| {
                            chrono::NaiveDate::parse_from_str(s, format)
                                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default())
                        })
                        .ok()?;
                    Some(t.and_utc().timestamp_micros())
                })?;
                Int64Chunked::new(name, micros)
                    .into_datetime(TimeUnit::Microseconds, None)
                    .into_series()
                    .into_column()
            }
        };
        cols.push(col);
    }
    if problems.iter().any(Option::is_some) {
        let kinds: Vec<Option<&str>> = problems
            .iter()
            .map(|p| p.as_ref().map(|_| "unknown_level"))
            .collect();
        cols.push(Column::new(source::PARSE_ERROR.into(), problems));
        cols.push(Column::new(source::PARSE_KIND.into(), kinds));
    }
    DataFrame::new(n, cols)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Predictions (and probabilities) of the predicted frame.
fn predictions(
    loaded: &Loaded,
    good: &DataFrame,
) -> Result<(Vec<Value>, Option<Vec<Value>>), ApiError> {
    let internal = |e: PolarsError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let p = good.column("prediction").map_err(internal)?;
    let preds: Vec<Value> = (0..p.len())
        .map(|i| {
            p.get(i)
                .map(|v| mlp_engine::exec::any_to_json(&v))
                .unwrap_or(Value::Null)
        })
        .collect();
    let classes = &loaded.bundle.model.classes;
    if classes.is_empty() {
        return Ok((preds, None));
    }
    let mut cols = vec![];
    for c in classes {
        let name = mlp_compiler::plan::names::proba_column(c);
        let s = good
            .column(&name)
            .and_then(|s| s.cast(&DataType::Float64))
            .map_err(internal)?;
        cols.push(s.f64().map_err(internal)?.clone());
    }
    let probs = (0..good.height())
        .map(|i| {
            let mut o = Map::new();
            for (c, s) in classes.iter().zip(&cols) {
                o.insert(c.clone(), s.get(i).map(Value::from).unwrap_or(Value::Null));
            }
            Value::Object(o)
        })
        .collect();
    Ok((preds, Some(probs)))
}

/// A request's rows, predicted: the rows that passed the checks (with
/// `prediction`, `proba_*`) and the rows that did not (with `_row`, 1-based
/// in the request, and `_failed_rules`).
struct Answer {
    good: DataFrame,
    rejected: DataFrame,
}

/// One request waiting for a prediction worker.
struct Job {
    loaded: Arc<Loaded>,
    frame: DataFrame,
    reply: tokio::sync::oneshot::Sender<Result<Answer, ApiError>>,
}

/// The most rows the workers gather into one call.
const MAX_BATCH_ROWS: usize = 4096;

fn exec_error(e: ExecError) -> ApiError {
    match e {
        ExecError::Plugin(f) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "plugin_failed",
            f.to_string(),
        )
        .with("plugin", f.plugin.clone())
        .with("function", f.func.clone()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            other.to_string(),
        ),
    }
}

/// Where each request's rows start in a gathered frame, and how many.
fn row_spans(jobs: &[Job]) -> Vec<(usize, usize)> {
    let mut at = 0;
    jobs.iter()
        .map(|j| {
            let span = (at, j.frame.height());
            at += j.frame.height();
            span
        })
        .collect()
}

/// Splits a frame with `_row` (1-based over the gathered rows, ascending)
/// into one slice per request; with `renumber`, `_row` becomes 1-based in
/// each request.
fn split_by_row(
    df: &DataFrame,
    spans: &[(usize, usize)],
    renumber: bool,
) -> Result<Vec<DataFrame>, ApiError> {
    let internal = |e: PolarsError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let rows: Vec<usize> = df
        .column("_row")
        .and_then(|c| c.cast(&DataType::UInt64))
        .map_err(internal)?
        .u64()
        .map_err(internal)?
        .iter()
        .map(|v| v.unwrap_or(0) as usize)
        .collect();
    let mut out = vec![];
    let mut i = 0;
    for (start, len) in spans {
        let from = i;
        while i < rows.len() && rows[i] <= start + len {
            i += 1;
        }
        let mut part = df.slice(from as i64, i - from);
        if !renumber || *start == 0 || part.height() == 0 {
            out.push(part);
            continue;
        }
        let renumbered = part
            .column("_row")
            .and_then(|c| c.cast(&DataType::UInt64))
            .map_err(internal)?
            .u64()
            .map_err(internal)?
            .apply_values(|r| r - *start as u64);
        part.with_column(
            renumbered
                .into_series()
                .with_name("_row".into())
                .into_column(),
        )
        .map_err(internal)?;
        out.push(part);
    }
    Ok(out)
}

/// Predicts a group of requests for the same version in one call, then
/// hands each its rows. If the call fails, each request is predicted alone,
/// so a failure is answered to the request that caused it.
fn predict_group(state: &AppState, jobs: Vec<Job>) {
    let loaded = jobs[0].loaded.clone();
    let spans = row_spans(&jobs);
    let gathered = if jobs.len() == 1 {
        Ok(jobs[0].frame.clone())
    } else {
        let mut it = jobs.iter();
        let mut df = it.next().map(|j| j.frame.clone()).unwrap_or_default();
        let mut ok = Ok(());
        for j in it {
            if let Err(e) = df.vstack_mut(&j.frame) {
                ok = Err(e);
                break;
            }
        }
        ok.map(|_| df)
    };
    let result = gathered
        .map_err(ExecError::polars)
        .and_then(|df| bundle::predict_frame_features(&loaded.bundle, &loaded.plugins, df));
    match result {
        Ok((good, rejected, features)) => {
            // A request reads `_row` only from its rejected rows.
            let goods = split_by_row(&good, &spans, false);
            let rejects = split_by_row(&rejected.frame, &spans, true);
            if let Ok(mut m) = state.metrics.lock() {
                m.rows += good.height() as u64;
                m.push_window(&loaded.version, features, loaded.window);
            }
            match (goods, rejects) {
                (Ok(g), Ok(r)) => {
                    for ((job, good), rejected) in jobs.into_iter().zip(g).zip(r) {
                        let _ = job.reply.send(Ok(Answer { good, rejected }));
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    for job in jobs {
                        let _ =
                            job.reply
                                .send(Err(ApiError::new(e.status, e.kind, e.message.clone())));
                    }
                }
            }
        }
        Err(e) if jobs.len() == 1 => {
            if let Some(job) = jobs.into_iter().next() {
                let _ = job.reply.send(Err(exec_error(e)));
            }
        }
        Err(_) => {
            for job in jobs {
                predict_group(state, vec![job]);
            }
        }
    }
}

/// A prediction worker: takes the first waiting request and every other one
/// already queued (up to [`MAX_BATCH_ROWS`] rows), predicts them together.
/// Under load, requests gather while a call runs; alone, a request is
/// predicted at once (no waiting for company).
fn worker(state: Arc<AppState>, queue: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>) {
    polars_async::executor::ALLOW_RAYON_THREADS.set(false);
    loop {
        let mut jobs = vec![];
        {
            let Ok(rx) = queue.lock() else {
                return;
            };
            let Ok(first) = rx.recv() else {
                return;
            };
            let mut rows = first.frame.height();
            jobs.push(first);
            while rows < MAX_BATCH_ROWS {
                match rx.try_recv() {
                    Ok(j) => {
                        rows += j.frame.height();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
        }
        // Requests for different versions (an alias moved) go separately.
        while !jobs.is_empty() {
            let first = jobs[0].loaded.clone();
            let (same, rest): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|j| Arc::ptr_eq(&j.loaded, &first));
            // A bug that panics inside a prediction answers the requests it
            // held (their reply channels close: 500, `kind: internal`) and
            // this worker carries on with the next ones.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                predict_group(&state, same)
            }));
            if caught.is_err() {
                let _ = writeln!(
                    std::io::stderr(),
                    "a prediction failed unexpectedly (the requests it held were answered 500); still serving"
                );
            }
            jobs = rest;
        }
    }
}

/// One prediction request from body to JSON answer.
async fn predict(
    state: &AppState,
    body: &[u8],
    kind: BodyKind,
    mlflow: bool,
) -> Result<Value, ApiError> {
    let loaded = state.loaded();
    let rows = match kind {
        BodyKind::Json => parse_body(body, mlflow)?,
        BodyKind::Csv => csv_rows(body, &loaded.columns)?,
    };
    let frame = request_frame(&loaded, &rows)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job = Job {
        loaded: loaded.clone(),
        frame,
        reply,
    };
    if state.jobs.send(job).is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping",
        ));
    }
    let Answer { good, rejected } = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the prediction failed unexpectedly (an error in mlp, not in the request); the server carries on",
        )
    })??;
    // Rows rejected alone (a failed row-level check, an unknown level):
    // the others are answered; a request none of whose rows passes is
    // refused whole.
    let failures: Vec<Value> = if rejected.height() > 0 {
        mlp_engine::exec::records(&rejected, usize::MAX)
            .into_iter()
            .map(|r| {
                json!({
                    "row": r["_row"],
                    "kind": r[bundle::REJECTED_KIND],
                    "rules": r["_failed_rules"],
                })
            })
            .collect()
    } else {
        vec![]
    };
    if good.height() == 0 {
        let first = failures.first().cloned().unwrap_or(Value::Null);
        let kind = match first["kind"].as_str() {
            Some("unknown_level") => "unknown_level",
            Some("non_finite") => "non_finite",
            _ => "check_failed",
        };
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            kind,
            format!(
                "{} of the request's rows fail{} the model's checks (row {}: {})",
                rejected.height(),
                if rejected.height() == 1 { "s" } else { "" },
                first["row"],
                first["rules"].as_str().unwrap_or("")
            ),
        )
        .with(
            "rows",
            Value::Array(failures.into_iter().take(100).collect()),
        ));
    }
    let (mut preds, mut probs) = predictions(&loaded, &good)?;
    if !failures.is_empty() {
        // One answer per request row, in order: null where a row was
        // rejected (its reason is in `rejected`).
        let total = good.height() + failures.len();
        let rejected_rows: std::collections::HashSet<u64> =
            failures.iter().filter_map(|f| f["row"].as_u64()).collect();
        let mut p_it = preds.into_iter();
        let mut q_it = probs.map(|p| p.into_iter());
        let mut all_p = Vec::with_capacity(total);
        let mut all_q = Vec::with_capacity(total);
        for row in 1..=total as u64 {
            if rejected_rows.contains(&row) {
                all_p.push(Value::Null);
                all_q.push(Value::Null);
            } else {
                all_p.push(p_it.next().unwrap_or(Value::Null));
                if let Some(q) = q_it.as_mut() {
                    all_q.push(q.next().unwrap_or(Value::Null));
                }
            }
        }
        preds = all_p;
        probs = q_it.map(|_| all_q);
    }
    let rejected_json = (!failures.is_empty()).then(|| Value::Array(failures));
    Ok(if mlflow {
        let mut o = json!({ "predictions": preds });
        if let Some(r) = rejected_json {
            o["rejected"] = r;
        }
        o
    } else {
        let mut o = json!({
            "model": loaded.name,
            "version": loaded.version,
            "predictions": preds,
        });
        if let Some(p) = probs {
            o["probabilities"] = Value::Array(p);
        }
        if let Some(r) = rejected_json {
            o["rejected"] = r;
        }
        o
    })
}

/// How a request body is written, from its `Content-Type`.
#[derive(Clone, Copy, PartialEq)]
enum BodyKind {
    Json,
    Csv,
}

/// JSON when the type says so, or says nothing useful (no header, `*/*`,
/// curl's default form type); CSV for `text/csv` (MLflow's scoring
/// protocol); anything else is refused with the types accepted.
fn body_kind(headers: &axum::http::HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    match essence {
        "" | "*/*" | "application/json" | "application/x-www-form-urlencoded" | "text/json" => {
            Ok(BodyKind::Json)
        }
        "text/csv" | "application/csv" => Ok(BodyKind::Csv),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "cannot read a `{}` body: send application/json or text/csv",
                mlp_engine::exec::truncate(other, 60)
            ),
        )),
    }
}

/// A CSV body (a header row, then one row per record) as records, each
/// cell typed by its column's declared type where it parses (a cell that
/// does not is kept as text, so the usual `wrong_type` names it); an empty
/// cell is null.
fn csv_rows(body: &[u8], columns: &[SourceColumn]) -> Result<Rows, ApiError> {
    let bad = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_csv",
            format!("the body is not valid CSV: {e}"),
        )
    };
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut rdr = csv::ReaderBuilder::new().from_reader(body);
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(&e))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let types: Vec<Option<&Type>> = header
        .iter()
        .map(|h| columns.iter().find(|c| &c.name == h).map(|c| &c.ty))
        .collect();
    let mut records = vec![];
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(&e).with("row", i + 1))?;
        let mut o = Map::new();
        for ((name, ty), cell) in header.iter().zip(&types).zip(rec.iter()) {
            let t = cell.trim();
            let v = if t.is_empty() {
                Value::Null
            } else {
                match ty {
                    Some(Type::Int) => t
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(t)),
                    Some(Type::Float) => t
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::from(t)),
                    Some(Type::Bool) => match t.to_ascii_lowercase().as_str() {
                        "true" | "1" => Value::Bool(true),
                        "false" | "0" => Value::Bool(false),
                        _ => Value::from(t),
                    },
                    _ => Value::from(cell),
                }
            };
            o.insert(name.clone(), v);
        }
        records.push(Value::Object(o));
    }
    Ok(Rows::Records(records))
}

async fn handle_predict(
    state: Arc<AppState>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    mlflow: bool,
) -> Response {
    let started = Instant::now();
    let endpoint = if mlflow {
        "/invocations"
    } else {
        "/v1/predict"
    };
    let result = match body {
        Err(e) => Err(ApiError::new(
            e.status(),
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "body_too_large"
            } else {
                "bad_body"
            },
            e.body_text(),
        )),
        Ok(bytes) => match body_kind(&headers) {
            Ok(kind) => predict(&state, &bytes, kind, mlflow).await,
            Err(e) => Err(e),
        },
    };
    let (status, body, kind) = match result {
        Ok(v) => (StatusCode::OK, v, None),
        Err(e) => (e.status, e.body(), Some(e.kind)),
    };
    if let Ok(mut m) = state.metrics.lock() {
        m.observe(
            endpoint,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
            kind,
        );
    }
    json_response(status, &body)
}

fn schema_json(loaded: &Loaded) -> Value {
    let cols: Vec<Value> = loaded
        .columns
        .iter()
        .map(|c| {
            let mut o = json!({ "name": c.name, "type": c.ty.to_string(), "nullable": c.nullable });
            match &c.ty {
                Type::Category { levels: Some(l) } => o["levels"] = json!(l),
                Type::Date { format } | Type::Datetime { format } => o["format"] = json!(format),
                _ => {}
            }
            o
        })
        .collect();
    json!({
        "model": loaded.name,
        "version": loaded.version,
        "target": loaded.bundle.model.target,
        "task": if loaded.bundle.model.classes.is_empty() { "regression" } else { "classification" },
        "classes": loaded.bundle.model.classes,
        // Where each class's probability is: the key in `probabilities`
        // here, the column `mlp predict` writes.
        "probability_columns": loaded
            .bundle
            .model
            .classes
            .iter()
            .map(|c| json!({"class": c, "column": mlp_compiler::plan::names::proba_column(c)}))
            .collect::<Vec<_>>(),
        "columns": cols,
    })
}

fn openapi(loaded: &Loaded) -> Value {
    let mut props = Map::new();
    let mut required = vec![];
    for c in &loaded.columns {
        let mut s = match &c.ty {
            Type::Int => json!({"type": "integer", "format": "int64"}),
            Type::Float => json!({"type": "number", "format": "double"}),
            Type::Bool => json!({"type": "boolean"}),
            Type::Str => json!({"type": "string"}),
            Type::Category { levels } => match levels {
                Some(l) => json!({"type": "string", "enum": l}),
                None => json!({"type": "string"}),
            },
            Type::Date { format } => {
                json!({"type": "string", "description": format!("a date in the format {format}")})
            }
            Type::Datetime { format } => {
                json!({"type": "string", "description": format!("a datetime in the format {format}")})
            }
        };
        if c.nullable {
            s["nullable"] = json!(true);
        } else {
            required.push(c.name.clone());
        }
        props.insert(c.name.clone(), s);
    }
    let row = json!({"type": "object", "properties": props, "required": required});
    let prediction = if loaded.bundle.model.classes.is_empty() {
        json!({"type": "number"})
    } else {
        json!({"type": "string", "enum": loaded.bundle.model.classes})
    };
    let error = json!({"type": "object", "properties": {"error": {"type": "object", "properties": {
        "kind": {"type": "string"}, "message": {"type": "string"}, "column": {"type": "string"}, "row": {"type": "integer"}}}}});
    let err_responses = json!({
        "400": {"description": "malformed request", "content": {"application/json": {"schema": error}}},
        "413": {"description": "body too large", "content": {"application/json": {"schema": error}}},
        "422": {"description": "a value of the wrong type, a missing column, or a row failing a check", "content": {"application/json": {"schema": error}}}
    });
    let mut predict_responses = json!({"200": {"description": "predictions", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"model": {"type": "string"}, "version": {"type": "string"},
        "predictions": {"type": "array", "items": prediction},
        "probabilities": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}}}}}}}});
    let mut inv_responses = json!({"200": {"description": "predictions (MLflow's format)", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"predictions": {"type": "array", "items": prediction}}}}}}});
    for (k, v) in err_responses.as_object().into_iter().flatten() {
        predict_responses[k] = v.clone();
        inv_responses[k] = v.clone();
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": format!("mlp model {}", loaded.name), "version": loaded.version},
        "paths": {
            "/v1/predict": {"post": {"summary": "Predict rows", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "oneOf": [
                    {"type": "array", "items": row},
                    {"type": "object", "properties": {"rows": {"type": "array", "items": row}}, "required": ["rows"]},
                    {"type": "object", "properties": {"columns": {"type": "object"}}, "required": ["columns"]}
                ]}}}}, "responses": predict_responses}},
            "/invocations": {"post": {"summary": "Predict rows (MLflow scoring protocol)", "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "oneOf": [
                    {"type": "object", "properties": {"dataframe_split": {"type": "object", "properties": {
                        "columns": {"type": "array", "items": {"type": "string"}}, "data": {"type": "array", "items": {"type": "array"}}}}}, "required": ["dataframe_split"]},
                    {"type": "object", "properties": {"dataframe_records": {"type": "array", "items": row}}, "required": ["dataframe_records"]}
                ]}}}}, "responses": inv_responses}},
            "/v1/schema": {"get": {"summary": "The request schema", "responses": {"200": {"description": "columns"}}}},
            "/health": {"get": {"summary": "Liveness and the version served", "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/v1/monitor": {"get": {"summary": "Drift of the window of served rows, latency, error rate", "responses": {"200": {"description": "report"}}}}
        }
    })
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// How long a window's drift report is reused: scrapes more often than
/// this cost no more than one computation per interval, so they cannot
/// slow the predictions down.
const WINDOW_REPORT_TTL: Duration = Duration::from_secs(1);

/// A computed window report, with when and for which version.
type CachedReport = (
    Instant,
    String,
    Vec<mlp_engine::monitor::ColumnReport>,
    usize,
);

fn window_report(state: &AppState) -> (Arc<Loaded>, Vec<mlp_engine::monitor::ColumnReport>, usize) {
    let loaded = state.loaded();
    if let Ok(cache) = state.window_cache.lock() {
        if let Some((at, version, drift, rows)) = cache.as_ref() {
            if *version == loaded.version && at.elapsed() < WINDOW_REPORT_TTL {
                return (loaded, drift.clone(), *rows);
            }
        }
    }
    let (loaded, drift, rows) = compute_window_report(state, loaded);
    if let Ok(mut cache) = state.window_cache.lock() {
        *cache = Some((Instant::now(), loaded.version.clone(), drift.clone(), rows));
    }
    (loaded, drift, rows)
}

fn compute_window_report(
    state: &AppState,
    loaded: Arc<Loaded>,
) -> (Arc<Loaded>, Vec<mlp_engine::monitor::ColumnReport>, usize) {
    let frame = state.metrics.lock().ok().and_then(|m| {
        (m.window_version == loaded.version)
            .then(|| m.window_frame(loaded.window))
            .flatten()
    });
    let rows = frame.as_ref().map_or(0, DataFrame::height);
    let mut drift = frame
        .and_then(|f| mlp_engine::monitor::drift_report(&loaded.bundle, &f).ok())
        .unwrap_or_default();
    // A handful of rows drifts by chance: thresholds apply from
    // MIN_WINDOW_ROWS on (the statistics are reported regardless).
    mlp_engine::monitor::hold_below_minimum(&mut drift, &mut [], rows);
    (loaded, drift, rows)
}

fn metrics_text(state: &AppState) -> String {
    let (loaded, drift, window_rows) = window_report(state);
    let fault = state.fault.lock().ok().and_then(|f| f.clone()).is_some();
    let Ok(m) = state.metrics.lock() else {
        return String::new();
    };
    let mut out = String::new();
    out.push_str("# HELP mlp_registry_fault 1 while the registry cannot be followed (the version served is kept).\n# TYPE mlp_registry_fault gauge\n");
    out.push_str(&format!("mlp_registry_fault {}\n", u8::from(fault)));
    out.push_str("# HELP mlp_model_info The model being served.\n# TYPE mlp_model_info gauge\n");
    out.push_str(&format!(
        "mlp_model_info{{model=\"{}\",version=\"{}\"}} 1\n",
        escape_label(&loaded.name),
        escape_label(&loaded.version)
    ));
    out.push_str("# HELP mlp_requests_total Prediction requests by endpoint and status.\n# TYPE mlp_requests_total counter\n");
    for ((e, s), n) in &m.requests {
        out.push_str(&format!(
            "mlp_requests_total{{endpoint=\"{e}\",status=\"{s}\"}} {n}\n"
        ));
    }
    out.push_str(
        "# HELP mlp_errors_total Failed requests by kind.\n# TYPE mlp_errors_total counter\n",
    );
    for (k, n) in &m.errors {
        out.push_str(&format!("mlp_errors_total{{kind=\"{k}\"}} {n}\n"));
    }
    out.push_str("# HELP mlp_request_duration_seconds Time to answer a prediction request.\n# TYPE mlp_request_duration_seconds histogram\n");
    for (b, le) in m.buckets.iter().zip(BUCKETS) {
        out.push_str(&format!(
            "mlp_request_duration_seconds_bucket{{le=\"{le}\"}} {b}\n"
        ));
    }
    out.push_str(&format!(
        "mlp_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\nmlp_request_duration_seconds_sum {}\nmlp_request_duration_seconds_count {}\n",
        m.latency_count, m.latency_sum, m.latency_count
    ));
    out.push_str("# HELP mlp_rows_predicted_total Rows predicted.\n# TYPE mlp_rows_predicted_total counter\n");
    out.push_str(&format!("mlp_rows_predicted_total {}\n", m.rows));
    out.push_str("# HELP mlp_drift_window_rows Served rows in the drift window.\n# TYPE mlp_drift_window_rows gauge\n");
    out.push_str(&format!("mlp_drift_window_rows {window_rows}\n"));
    out.push_str("# HELP mlp_feature_drift Drift of each feature over the window of served rows against the training rows.\n# TYPE mlp_feature_drift gauge\n");
    for c in &drift {
        for s in &c.stats {
            if s.value.is_finite() {
                out.push_str(&format!(
                    "mlp_feature_drift{{feature=\"{}\",stat=\"{}\"}} {}\n",
                    escape_label(&c.column),
                    s.stat,
                    s.value
                ));
            }
            if let Some(p) = s.p_value.filter(|p| p.is_finite()) {
                out.push_str(&format!(
                    "mlp_feature_drift{{feature=\"{}\",stat=\"{}_p\"}} {p}\n",
                    escape_label(&c.column),
                    s.stat
                ));
            }
        }
    }
    out.push_str("# HELP mlp_feature_drifting Whether a feature breaches a drift threshold over the window (1) or not (0).\n# TYPE mlp_feature_drifting gauge\n");
    for c in &drift {
        out.push_str(&format!(
            "mlp_feature_drifting{{feature=\"{}\"}} {}\n",
            escape_label(&c.column),
            u8::from(c.drifting)
        ));
    }
    out
}

fn monitor_json(state: &AppState) -> Value {
    let (loaded, drift, window_rows) = window_report(state);
    let Ok(m) = state.metrics.lock() else {
        return json!({});
    };
    let errors = m.outcomes.iter().filter(|e| **e).count();
    let mut report = mlp_engine::monitor::ServingReport {
        model: loaded.name.clone(),
        version: loaded.version.clone(),
        window_rows,
        window: loaded.window,
        requests: m.latency_count as usize,
        latency_ms: [50.0, 90.0, 95.0, 99.0]
            .into_iter()
            .map(|p| (format!("p{p}"), m.percentile(p).map(|s| s * 1000.0)))
            .collect(),
        error_rate: if m.outcomes.is_empty() {
            0.0
        } else {
            errors as f64 / m.outcomes.len() as f64
        },
        drift,
        monitor: loaded.bundle.monitor.clone(),
        rules: vec![],
        breached: false,
    };
    drop(m);
    report.judge();
    serde_json::to_value(&report).unwrap_or_else(|_| json!({}))
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
                let fault = s5.fault.lock().ok().and_then(|f| f.clone());
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
pub fn serve(opts: ServeOptions) -> Result<(), String> {
    let cache = mlp_store::wasm_cache_dir(&opts.project);
    let at = locate(&opts.project, &opts.spec)?;
    let from_registry = at.from_registry;
    let loaded = Loaded::load(&at.path, at.version, opts.plugin_host.as_ref(), &cache)?;
    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let state = Arc::new(AppState {
        current: RwLock::new(Arc::new(loaded)),
        metrics: Mutex::new(Metrics::default()),
        fault: Mutex::new(None),
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
            .map_err(|e| format!("cannot start a prediction worker: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Request frames are a few rows: polars works inline on these
        // threads (as on the prediction workers) rather than handing each
        // tiny operation to its thread pool and waiting.
        .on_thread_start(|| polars_async::executor::ALLOW_RAYON_THREADS.set(false))
        .build()
        .map_err(|e| format!("cannot start the server runtime: {e}"))?;
    rt.block_on(async move {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local = listener.local_addr().map_err(|e| e.to_string())?;
        {
            let l = state.loaded();
            say(&format!(
                "serving {} version {} on http://{local} (POST /v1/predict, POST /invocations, GET /openapi.json, GET /metrics)",
                l.name,
                &l.version[..l.version.len().min(12)]
            ));
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
                        match Loaded::load(&at.path, version.clone(), host.as_ref(), &cache) {
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
        Ok::<(), String>(())
    })
}
