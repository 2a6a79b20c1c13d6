//! `execute: Plan -> stage outputs`, one module per plan operator.
//!
//! | operator  | module         | output in the cache entry                      |
//! |-----------|----------------|------------------------------------------------|
//! | source    | `source.rs`    | `frame.arrow`                                  |
//! | check     | `check.rs`     | `frame.arrow`, `report.json`, `quarantine.arrow` |
//! | split     | `split.rs`     | `frame.arrow` (with the partition column)      |
//! | transform | `transform.rs` | `frame.arrow`, `params.json` (fitted on train) |
//! | features  | `features.rs`  | `frame.arrow`, `over_<feature>.arrow` tables   |
//! | join      | `join.rs`      | `frame.arrow` (left rows with right columns)   |
//! | history   | `history.rs`   | `frame.arrow` (left rows with aggregates)      |
//!
//! | model     | `model.rs`     | `frame.arrow` (with predictions), `model.json`, `trials.json` |
//! | evaluate  | `evaluate.rs`  | `report.json` (metrics, gates, slices, confusion matrix) |
//!
//! | deploy    | `deploy.rs`    | `deploy.json` (the bundle goes to the registry) |
//!
//! | monitor   | `monitor.rs`   | `report.json` (the drift rules on the held-out rows against train) |

pub mod check;
pub mod deploy;
pub mod evaluate;
pub mod expr;
pub mod features;
pub mod history;
pub mod importance;
pub mod join;
pub mod model;
pub mod monitor;
pub mod pgcopy;
pub mod postgres;
pub mod remote;
pub mod rows;
pub mod source;
pub mod split;
pub mod sqlite;
pub mod transform;

use mlp_compiler::plan::{Op, Stage};
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The separator a header read as one column holds: its name and how a
/// pipeline writes it.
fn separator_in(header: &str) -> Option<(&'static str, &'static str)> {
    [
        (';', "semicolon", ";"),
        ('\t', "tab", "\\t"),
        ('|', "pipe", "|"),
    ]
    .into_iter()
    .find(|(c, _, _)| header.contains(*c))
    .map(|(_, name, written)| (name, written))
}

/// Why a stage failed. Every variant names the place and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: column `{column}` is declared but not in the data")]
    MissingColumn {
        file: String,
        column: String,
        available: Vec<String>,
    },
    #[error("{file}, row {row}, column `{column}`: {found} is not a valid {expected}")]
    BadValue {
        file: String,
        row: usize,
        column: String,
        found: String,
        expected: String,
    },
    #[error("{file}, row {row}, column `{column}`: \"{found}\" is not one of the declared levels (nearest: \"{nearest}\")")]
    UnknownLevel {
        file: String,
        row: usize,
        column: String,
        found: String,
        nearest: String,
        levels: Box<[String]>,
    },
    #[error("{file}, row {row}, column `{column}`: null in a column declared without `?`")]
    UnexpectedNull {
        file: String,
        row: usize,
        column: String,
    },
    #[error("{file}: the header names `{column}` twice (fields {first} and {second})")]
    DuplicateHeader {
        file: String,
        column: String,
        first: usize,
        second: usize,
    },
    #[error("{file}, line {line}, byte {column}: not UTF-8 text ({found})")]
    NotUtf8 {
        file: String,
        line: u64,
        /// 1-based byte in the line.
        column: u64,
        /// What was found: the bytes, or "a UTF-16 byte-order mark".
        found: String,
        /// The file looks like UTF-16 (a byte-order mark, or zero bytes
        /// between the characters).
        utf16: bool,
    },
    #[error("{file}, line {line}: {found} fields where {reference} has {expected}")]
    RaggedRow {
        file: String,
        line: u64,
        found: usize,
        expected: usize,
        /// "the header" or "the first row".
        reference: &'static str,
        /// The record spans several lines: a quote is likely left open.
        multiline: bool,
    },
    #[error("no file matches `{pattern}`")]
    NoFiles { pattern: String },
    #[error("`{file}` changed while it was being read")]
    ChangedDuringRun { file: String },
    #[error("checks on `{stage}` failed: {summary}")]
    ChecksFailed {
        stage: String,
        summary: String,
        /// The check report: every rule, its failing rows and examples.
        report: Box<serde_json::Value>,
    },
    #[error("model `{model}` failed its gates: {summary}")]
    GatesFailed {
        model: String,
        summary: String,
        /// Every gate with its value and verdict.
        gates: Vec<GateResult>,
    },
    #[error("{0}")]
    Plugin(crate::plugins::PluginFailure),
    #[error("{0}")]
    Data(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<mlp_fit::FitError> for ExecError {
    fn from(e: mlp_fit::FitError) -> ExecError {
        match e {
            mlp_fit::FitError::Data(m) => ExecError::Data(m),
            mlp_fit::FitError::Unsupported(m) => ExecError::Unsupported(m),
            mlp_fit::FitError::Internal(m) => ExecError::Internal(m),
        }
    }
}

/// One gate's verdict: the gate as written, its value (none when
/// undefined) and whether it passed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GateResult {
    pub gate: String,
    pub value: Option<f64>,
    pub passed: bool,
}

/// The report a failed stage leaves for the user (rendered by the binary).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReport {
    /// The check report of a stage whose checks failed.
    Checks { report: serde_json::Value },
    /// The gates of a model that failed them.
    Gates { gates: Vec<GateResult> },
}

impl ExecError {
    pub fn polars(e: PolarsError) -> ExecError {
        ExecError::Data(e.to_string())
    }

    /// The report to show beside the message, for a failure that has one.
    pub fn report(&self) -> Option<FailureReport> {
        match self {
            ExecError::ChecksFailed { report, .. } => Some(FailureReport::Checks {
                report: (**report).clone(),
            }),
            ExecError::GatesFailed { gates, .. } => Some(FailureReport::Gates {
                gates: gates.clone(),
            }),
            _ => None,
        }
    }
    pub fn help(&self) -> Option<String> {
        match self {
            // One column whose name holds another separator: the file is
            // not comma-separated.
            ExecError::MissingColumn { available, .. }
                if let [one] = available.as_slice()
                    && let Some((name, written)) = separator_in(one) =>
            {
                Some(format!(
                    "the header reads as one column: the file looks {name}-separated; add `delimiter = \"{written}\"` to the source's options"
                ))
            }
            ExecError::MissingColumn {
                column, available, ..
            } => Some(format!(
                "columns in the file: {}; map another header with `{column} : TYPE as \"Header\"`",
                available
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ExecError::BadValue { .. } => Some(
                "fix the value, declare the column with another type, or add a `check ... quarantine` to set bad rows aside".into(),
            ),
            ExecError::UnknownLevel { column, levels, .. } => Some(format!(
                "`{column}` is declared with the levels {}; fix the value, add the level to the declaration, or add a `check ... quarantine` to set such rows aside",
                levels
                    .iter()
                    .map(|l| format!("\"{l}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ExecError::UnexpectedNull { .. } => {
                Some("declare the column nullable (`TYPE?`) and impute it, or fix the data".into())
            }
            ExecError::DuplicateHeader { column, .. } => Some(format!(
                "which `{column}` the source should read is ambiguous: rename one of them in the file"
            )),
            ExecError::NotUtf8 { utf16: true, .. } => Some(
                "the file is UTF-16 text; convert it to UTF-8, for example `iconv -f utf-16 -t utf-8 in.csv > out.csv`".into(),
            ),
            ExecError::NotUtf8 { .. } => Some(
                "the file is not UTF-8 text (often Latin-1 or Windows-1252 from a spreadsheet); convert it, for example `iconv -f latin1 -t utf-8 in.csv > out.csv`".into(),
            ),
            ExecError::RaggedRow { multiline: true, .. } => Some(
                "a quoted field that opens on this line runs over the next lines: close the quote (a quote inside a quoted field is written `\"\"`)".into(),
            ),
            ExecError::RaggedRow { .. } => Some(
                "fix the row; a value containing the delimiter must be quoted, and a file with another delimiter needs the `delimiter` option".into(),
            ),
            ExecError::Read { reason, .. } if reason.contains("utf-8") || reason.contains("UTF-8") => Some(
                "the file is not UTF-8 text; convert it, for example `iconv -f latin1 -t utf-8 in.csv > out.csv`".into(),
            ),
            ExecError::ChangedDuringRun { .. } => {
                Some("nothing was cached from it; run again once the file is written".into())
            }
            ExecError::Plugin(f) => Some(f.help()),
            ExecError::GatesFailed { .. } => Some(
                "the model is not deployed; improve it (features, parameters, data) or revisit the gate".into(),
            ),
            ExecError::ChecksFailed { .. } => Some(
                "the report lists each failing rule with example rows; `warn` a rule to let it pass, or `quarantine` to set failing rows aside".into(),
            ),
            _ => None,
        }
    }
}

/// What a stage produced.
#[derive(Default)]
pub struct Output {
    pub frame: Option<DataFrame>,
    /// Extra frames to store (`quarantine`, `over_*` tables).
    pub frames: Vec<(String, DataFrame)>,
    /// JSON documents to store (`params`, `report`).
    pub json: JsonOutputs,
    /// Lines to show the user (warnings, quarantine counts).
    pub notes: Vec<String>,
}

/// A stage's JSON documents, by name (`model` is stored as `model.json`).
pub type JsonOutputs = Vec<(String, serde_json::Value)>;

/// Everything a stage may read.
pub struct Context<'a> {
    pub root: &'a Path,
    pub plan: &'a mlp_compiler::Plan,
    pub stage: &'a Stage,
    /// The frames of the stage's inputs, in order.
    pub inputs: Vec<DataFrame>,
    /// The files the stage reads, with the stat taken when they were hashed.
    pub files: Vec<(PathBuf, mlp_store::fingerprint::Stat)>,
    /// A source read by a quarantining check keeps rows that break its
    /// schema (described in `_parse_error`) for the check to set aside.
    pub lenient: bool,
    /// The cache, and every stage's key (for stages that read other stages'
    /// stored outputs: deploy).
    pub store: &'a mlp_store::store::Store,
    pub keys: &'a std::collections::HashMap<String, String>,
    /// The files each file-reading stage of the run read: stage id -> path
    /// -> SHA-256.
    pub data_hashes:
        &'a std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    /// The plugins the stage calls, loaded.
    pub plugins: &'a crate::plugins::Plugins,
    /// The JSON outputs of input stages computed in this run, by stage id
    /// (read before the cache, which may still be storing them).
    pub input_json: std::collections::HashMap<String, std::sync::Arc<JsonOutputs>>,
}

/// Runs one stage. A plugin failure inside a polars expression surfaces as
/// a polars error; the failure the plugin recorded replaces it.
pub fn run_stage(cx: Context) -> Result<Output, ExecError> {
    let plugins = cx.plugins;
    run_op(cx).map_err(|e| match plugins.take_failure() {
        Some(f) => ExecError::Plugin(f),
        None => e,
    })
}

fn run_op(cx: Context) -> Result<Output, ExecError> {
    match &cx.stage.op {
        Op::Source(op) => source::run(op, &cx),
        Op::Check(op) => check::run(op, &cx),
        Op::Split(op) => split::run(op, &cx),
        Op::Transform(op) => transform::run(op, &cx),
        Op::Features(op) => features::run(op, &cx),
        Op::Join(op) => join::run(op, &cx),
        Op::History(op) => history::run(op, &cx),
        Op::Model(op) => model::run(op, &cx),
        Op::Evaluate(op) => evaluate::run(op, &cx),
        Op::Deploy(op) => deploy::run(op, &cx),
        Op::Monitor(op) => monitor::run(op, &cx),
    }
}

/// `value OP threshold` for the comparison operators of the language
/// (`<`, `<=`, `>`, `>=`, `==`, `!=`): every rule, gate and threshold.
pub fn compare(value: f64, op: mlp_compiler::plan::CmpOp, threshold: f64) -> bool {
    op.holds(value, threshold)
}

/// The rows of the `train` partition.
pub fn train_rows(df: &DataFrame, part: &str) -> Result<DataFrame, ExecError> {
    df.clone()
        .lazy()
        .filter(is_train(part))
        .collect()
        .map_err(ExecError::polars)
}

/// Frames of at most this many rows skip polars' query optimiser.
pub const SMALL_FRAME: usize = 4096;

/// Collects a lazy frame over `rows` rows. A small frame (a served request)
/// skips the query optimiser, whose planning would cost more than the work;
/// the result is the same.
pub fn collect_rows(lf: LazyFrame, rows: usize) -> Result<DataFrame, ExecError> {
    let lf = if rows <= SMALL_FRAME {
        lf.without_optimizations()
    } else {
        lf
    };
    lf.collect().map_err(ExecError::polars)
}

/// The single input frame of a stage.
pub fn input(cx: &Context) -> Result<DataFrame, ExecError> {
    cx.inputs
        .first()
        .cloned()
        .ok_or_else(|| ExecError::Internal(format!("stage `{}` has no input", cx.stage.id)))
}

/// The rows of the `train` partition, as a filter expression.
pub fn is_train(partition_column: &str) -> Expr {
    col(partition_column).eq(lit("train"))
}

/// The rows of partition `partition` of `df`, as a mask (null where the
/// partition column is).
pub fn partition_mask(
    df: &DataFrame,
    partition_column: &str,
    partition: &str,
) -> Result<BooleanChunked, ExecError> {
    Ok(df
        .column(partition_column)
        .and_then(|c| c.cast(&DataType::String))
        .map_err(ExecError::polars)?
        .str()
        .map_err(ExecError::polars)?
        .equal(partition))
}

/// The rows of the `train` partition of `df`, as a mask (the test of
/// [`is_train`], on the column at once).
pub fn train_mask(df: &DataFrame, partition_column: &str) -> Result<BooleanChunked, ExecError> {
    partition_mask(df, partition_column, "train")
}

/// Whether each row of `df` is a `train` row ([`train_mask`], a null
/// partition not).
pub fn train_flags(df: &DataFrame, partition_column: &str) -> Result<Vec<bool>, ExecError> {
    Ok(mask_flags(&train_mask(df, partition_column)?))
}

/// A mask as one flag per row (null as not set).
pub fn mask_flags(mask: &BooleanChunked) -> Vec<bool> {
    mask.iter().map(|t| t == Some(true)).collect()
}

/// The split's partition column, for a stage downstream of a split.
pub fn partition_column(cx: &Context) -> Option<String> {
    partition_of(cx.stage)
}

pub fn partition_of(stage: &Stage) -> Option<String> {
    stage.partition_column.clone()
}

/// A value for a message: at most `max` characters, then "…".
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Renders up to `n` rows of a frame as JSON records.
pub fn records(df: &DataFrame, n: usize) -> Vec<serde_json::Value> {
    let head = df.head(Some(n));
    let mut out = vec![];
    for i in 0..head.height() {
        let mut obj = serde_json::Map::new();
        for c in head.columns() {
            let v = c
                .get(i)
                .map(|v| any_to_json(&v))
                .unwrap_or(serde_json::Value::Null);
            obj.insert(c.name().to_string(), v);
        }
        out.push(serde_json::Value::Object(obj));
    }
    out
}

pub fn any_to_json(v: &AnyValue) -> serde_json::Value {
    match v {
        AnyValue::Null => serde_json::Value::Null,
        AnyValue::Boolean(b) => (*b).into(),
        AnyValue::Int64(i) => (*i).into(),
        AnyValue::Int32(i) => (*i).into(),
        AnyValue::UInt32(i) => (*i).into(),
        AnyValue::UInt64(i) => (*i).into(),
        AnyValue::Float64(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        AnyValue::Float32(f) => serde_json::Number::from_f64(*f as f64)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        AnyValue::String(s) => (*s).into(),
        AnyValue::StringOwned(s) => s.as_str().into(),
        other => other.to_string().trim_matches('"').into(),
    }
}
