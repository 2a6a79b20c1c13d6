//! `bundle: trained stages -> one deployable file`, and
//! `predict: bundle + rows -> predictions`.
//!
//! A bundle holds the inference slice of the plan (the source's schema, the
//! row-level checks, the transforms with their fitted parameters, the
//! features with their `over` tables, the model as numbers), the training
//! statistics of the model's inputs (for monitoring), the evaluation reports,
//! and the lineage. Predicting runs the same `apply` code as training did, so
//! a row gets the same prediction in both.

use crate::exec::features::{self, OverTable};
use crate::exec::model::{self, ModelFile, Prediction};
use crate::exec::transform::{self, Fitted};
use crate::exec::{check, source, ExecError};
use crate::lookup::Lookups;
use crate::plugins::{Plugin, Plugins};
use mlp_compiler::plan::{Op, SourceColumn, SourceOp, Stage};
use mlp_store::registry::{Registry, RegistryError};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const BUNDLE_FORMAT: u32 = 1;

/// An `over` table as stored in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverJson {
    pub keys: Vec<String>,
    /// One array per key column (values as text), then the values.
    pub key_values: Vec<Vec<Option<String>>>,
    pub values: Vec<Option<f64>>,
    pub fallback: f64,
}

impl OverJson {
    pub fn from_table(keys: &[String], t: &OverTable) -> Result<OverJson, ExecError> {
        let mut key_values = vec![];
        for k in keys {
            let s = t
                .table
                .column(k)
                .map_err(ExecError::polars)?
                .cast(&DataType::String)
                .map_err(ExecError::polars)?;
            key_values.push(
                s.str()
                    .map_err(ExecError::polars)?
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect(),
            );
        }
        let v = t.table.column(features::VALUE).map_err(ExecError::polars)?;
        let values = v.f64().map_err(ExecError::polars)?.iter().collect();
        Ok(OverJson {
            keys: keys.to_vec(),
            key_values,
            values,
            fallback: t.fallback,
        })
    }

    pub fn to_table(&self) -> Result<OverTable, ExecError> {
        let mut cols: Vec<Column> = self
            .keys
            .iter()
            .zip(&self.key_values)
            .map(|(k, v)| Column::new(k.as_str().into(), v.clone()))
            .collect();
        cols.push(Column::new(features::VALUE.into(), self.values.clone()));
        Ok(OverTable {
            table: DataFrame::new_infer_height(cols).map_err(ExecError::polars)?,
            fallback: self.fallback,
        })
    }
}

fn plan_v1() -> u32 {
    1
}

/// The versions a bundle file declares, read before the rest so that a
/// bundle of another version is refused by name rather than by a field
/// it lacks.
#[derive(Deserialize)]
struct BundleHeader {
    format: Option<u32>,
    #[serde(default = "plan_v1")]
    plan_version: u32,
}

/// Why a bundle file cannot be used. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    #[error("`{path}` is damaged: registered as version {claimed}, its bytes now hash to {found}; restore it, or deploy again with `mlp run`")]
    Damaged {
        path: String,
        claimed: String,
        found: String,
    },
    #[error("`{path}` is a bundle of format {found}; this mlp reads format {expected}: deploy it again with this mlp (`mlp run`)")]
    Format {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("`{path}` was written with plan version {found}, newer than this mlp's ({ours}): serve it with the mlp that deployed it, or deploy it again with this one (`mlp run`)")]
    NewerPlan { path: String, found: u32, ours: u32 },
    #[error("`{path}` is not an mlp bundle: {reason}")]
    NotABundle { path: String, reason: String },
}

/// Refuses a bundle whose format this mlp does not read, or whose plan is
/// newer than this mlp's (an older plan reads: plan versions only add).
fn check_versions(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.disable_recursion_limit();
    let Ok(h) = BundleHeader::deserialize(&mut de) else {
        // Not even an object with these fields: the full read says why.
        return Ok(());
    };
    let ours = mlp_compiler::plan::PLAN_VERSION;
    let path = path.display().to_string();
    match h.format {
        Some(found) if found != BUNDLE_FORMAT => Err(BundleError::Format {
            path,
            found,
            expected: BUNDLE_FORMAT,
        }),
        _ if h.plan_version > ours => Err(BundleError::NewerPlan {
            path,
            found: h.plan_version,
            ours,
        }),
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub format: u32,
    /// The version of the plan its stages are written in (bundles from
    /// before it was recorded: 1).
    #[serde(default = "plan_v1")]
    pub plan_version: u32,
    pub name: String,
    pub model_name: String,
    pub engine: String,
    /// The serving stages in order (source, checks, transforms, features,
    /// model), as the plan defines them.
    pub stages: Vec<Stage>,
    /// Fitted parameters of each transform stage, by stage id.
    pub params: BTreeMap<String, Vec<Fitted>>,
    /// `over` tables of each features stage: stage id -> feature -> table.
    pub over: BTreeMap<String, BTreeMap<String, OverJson>>,
    pub model: ModelFile,
    /// The evaluation reports the deploy was gated on.
    pub evaluations: Vec<serde_json::Value>,
    /// Per input column of the model, statistics of the train rows.
    pub training_stats: serde_json::Value,
    pub lineage: serde_json::Value,
    /// The pipeline's `monitor` declaration for this model, if any: what
    /// `mlp monitor` and the server check against `training_stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<mlp_compiler::plan::MonitorOp>,
    /// The Wasm plugins the serving stages call, bytes included, so a
    /// bundle serves alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<BundledPlugin>,
    /// The columns a request must carry: exactly those the inference slice
    /// reads (empty in bundles from before: every source column but the
    /// target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_columns: Vec<SourceColumn>,
    /// The stages that build serving's lookup state (the right sides of
    /// joins and the events of histories), run on the latest data when the
    /// bundle is loaded to predict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookup_stages: Vec<Stage>,
    /// Request columns that default to the time of the request (a
    /// history's `at`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_time: Vec<String>,
}

impl Bundle {
    /// Reads a bundle file. Its bytes must hash to `version` when one is
    /// known (a registered version, or a file named `<sha256>.json`): a
    /// bundle changed after it was registered is refused, naming both
    /// hashes. Returns the bundle and its version.
    pub fn read(path: &Path, version: Option<&str>) -> Result<(Bundle, String), BundleError> {
        let bytes = std::fs::read(path).map_err(|e| BundleError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string());
        let claimed = version
            .map(str::to_string)
            .or_else(|| stem.filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())));
        let found = mlp_store::registry::version_of(&bytes);
        if let Some(v) = &claimed {
            if *v != found {
                return Err(BundleError::Damaged {
                    path: path.display().to_string(),
                    claimed: v.clone(),
                    found,
                });
            }
        }
        // Expressions nest as deep as the compiler allows (MAX_EXPR_DEPTH),
        // which may be deeper than serde_json's default limit of 128.
        check_versions(path, &bytes)?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        de.disable_recursion_limit();
        let b = Bundle::deserialize(&mut de)
            .and_then(|b| de.end().map(|_| b))
            .map_err(|e| BundleError::NotABundle {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok((b, found))
    }

    /// The serving source's declared columns.
    pub fn source_columns(&self) -> Vec<SourceColumn> {
        self.stages
            .iter()
            .find_map(|s| match &s.op {
                Op::Source(op) => Some(op.columns.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The columns a request carries: the model inputs' source columns and
    /// those of the row-level checks that apply at serving.
    pub fn request_columns(&self) -> Vec<SourceColumn> {
        if !self.request_columns.is_empty() {
            return self.request_columns.clone();
        }
        self.source_columns()
            .into_iter()
            .filter(|c| c.name != self.model.target)
            .collect()
    }
}

/// A plugin as a bundle carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundledPlugin {
    pub name: String,
    pub sha256: String,
    pub limits: crate::plugins::Limits,
    /// The module's bytes, base64.
    pub wasm: String,
}

impl BundledPlugin {
    pub fn new(name: &str, bytes: &[u8], limits: crate::plugins::Limits) -> BundledPlugin {
        use base64::Engine as _;
        BundledPlugin {
            name: name.to_string(),
            sha256: mlp_store::fingerprint::sha256_hex(bytes),
            limits,
            wasm: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Loads a bundle's plugins (compiled modules are cached under `cache`).
pub fn load_plugins(
    b: &Bundle,
    host: &dyn crate::plugins::PluginHost,
    cache: Option<&Path>,
) -> Result<Plugins, ExecError> {
    use base64::Engine as _;
    let mut out = Plugins::none();
    for p in &b.plugins {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&p.wasm)
            .map_err(|e| ExecError::Internal(format!("plugin `{}` in the bundle: {e}", p.name)))?;
        let sha = mlp_store::fingerprint::sha256_hex(&bytes);
        if sha != p.sha256 {
            return Err(ExecError::Internal(format!(
                "plugin `{}` in the bundle is damaged (SHA-256 {sha}, recorded {})",
                p.name, p.sha256
            )));
        }
        out.insert(
            Plugin::load(host, &p.name, &bytes, p.limits.clone(), cache)
                .map_err(ExecError::Plugin)?,
        );
    }
    Ok(out)
}

/// The frame with its date and datetime columns as text in the formats the
/// bundle's source declares (for CSV and NDJSON outputs, so a value reads
/// back as it was written).
pub fn dates_as_declared(b: &Bundle, df: DataFrame) -> Result<DataFrame, ExecError> {
    let Some(src) = b.stages.iter().find_map(|s| match &s.op {
        Op::Source(op) => Some(op),
        _ => None,
    }) else {
        return Ok(df);
    };
    let exprs: Vec<Expr> = src
        .columns
        .iter()
        .filter_map(|c| match &c.ty {
            mlp_compiler::types::Type::Date { format }
            | mlp_compiler::types::Type::Datetime { format } => {
                let dt = df.column(&c.name).ok()?.dtype().clone();
                matches!(dt, DataType::Date | DataType::Datetime(..)).then(|| {
                    col(c.name.as_str())
                        .dt()
                        .to_string(format)
                        .alias(c.name.as_str())
                })
            }
            _ => None,
        })
        .collect();
    if exprs.is_empty() {
        return Ok(df);
    }
    df.lazy()
        .with_columns(exprs)
        .collect()
        .map_err(ExecError::polars)
}

/// The column of a rejected row that says why in one word:
/// `unknown_level`, `bad_value`, `null_value` (a schema break) or
/// [`REJECTED_BY_CHECK`].
pub const REJECTED_KIND: &str = "_kind";
/// The kind of a row that failed a row-level check.
pub const REJECTED_BY_CHECK: &str = "check_failed";
/// The kind of a row whose features or prediction are not finite.
pub const REJECTED_NON_FINITE: &str = "non_finite";

/// Rows that could not be predicted, with why.
pub struct Rejected {
    pub frame: DataFrame,
}

/// The rows a batch of a prediction file holds: memory stays bounded by
/// it, whatever the file's size.
pub const PREDICT_BATCH_ROWS: usize = 1_000_000;

/// [`PREDICT_BATCH_ROWS`], or `MLP_PREDICT_BATCH_ROWS` when set (to trade
/// memory for speed).
pub fn predict_batch_rows() -> usize {
    std::env::var("MLP_PREDICT_BATCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(PREDICT_BATCH_ROWS)
}

/// Predicts a file `batch` rows at a time, handing each batch's predicted
/// rows, rejected rows and model-input frame to `each` (rows are numbered as
/// in the file: `_row` runs on across batches). Always at least one batch,
/// which may be empty.
pub fn predict_file_batches(
    b: &Bundle,
    plugins: &Plugins,
    lookups: Option<&Lookups>,
    input: &Path,
    batch: usize,
    each: &mut dyn FnMut(DataFrame, DataFrame, DataFrame) -> Result<(), ExecError>,
) -> Result<(), ExecError> {
    let src = b
        .stages
        .iter()
        .find_map(|s| match &s.op {
            Op::Source(op) => Some(op.clone()),
            _ => None,
        })
        .ok_or_else(|| ExecError::Internal("a bundle without a source".into()))?;
    // The request: the columns the inference slice reads. A nullable one
    // the file lacks is all nulls (as a serve request may leave it out).
    let format = source::format_of(input)
        .and_then(mlp_compiler::plan::SourceFormat::parse)
        .unwrap_or(mlp_compiler::plan::SourceFormat::Csv);
    let mut request = SourceOp {
        format,
        path: input.to_string_lossy().to_string(),
        options: if format == src.format {
            src.options.clone()
        } else {
            Default::default()
        },
        columns: b.request_columns(),
    };
    let shown = input.to_string_lossy().to_string();
    let present = source::file_columns(&request, input, &shown)?;
    if let Some(present) = &present {
        request
            .columns
            .retain(|c| !c.nullable || present.iter().any(|p| p == source::raw(c)));
    }
    let batch = batch.max(1);
    let mut offset = 0usize;
    loop {
        let rows = (batch != usize::MAX).then_some((offset, batch));
        let df = match rows {
            Some((o, n)) => source::read_request_rows(&request, input, &shown, o, n)?,
            None => source::read_request(&request, input, &shown)?,
        };
        let height = df.height();
        if height == 0 && offset > 0 {
            return Ok(());
        }
        let (good, rejected, features) = predict_frame_features(b, plugins, lookups, df)?;
        // Rows as numbered in the file.
        let renumber = |df: DataFrame| -> Result<DataFrame, ExecError> {
            if offset == 0 || df.column(mlp_compiler::plan::names::ROW).is_err() {
                return Ok(df);
            }
            df.lazy()
                .with_column(col(mlp_compiler::plan::names::ROW) + lit(offset as IdxSize))
                .collect()
                .map_err(ExecError::polars)
        };
        let (good, rejected) = (renumber(good)?, renumber(rejected.frame)?);
        // Input columns the model does not read (an id to join on, the
        // actual target) are carried through beside the predictions.
        let mut taken: Vec<String> = good
            .get_column_names()
            .iter()
            .chain(rejected.get_column_names().iter())
            .map(|n| n.to_string())
            .collect();
        taken.push(mlp_compiler::plan::names::FAILED_RULES.into());
        let others = source::read_other_columns(&request, input, &shown, &taken, rows)?;
        let beside_others = |df: DataFrame| match &others {
            Some(o) => beside_by_row(df.lazy(), o),
            None => Ok(df),
        };
        let (good, rejected) = match &present {
            // Rejected rows are read again whole, as the file holds them.
            Some(file) => (
                in_file_order(beside_others(good)?, file, &request)?,
                in_file_order(
                    as_in_the_file(rejected, &request, input, &shown, rows)?,
                    file,
                    &request,
                )?,
            ),
            None => (beside_others(good)?, beside_others(rejected)?),
        };
        each(good, rejected, features)?;
        if rows.is_none() || height < batch {
            return Ok(());
        }
        offset += height;
    }
}

/// Rejected rows with every column of the file as the file holds them (a
/// CSV's as its text), so a value the source could not read (a date in
/// another format, a level not declared) is shown as it was, not as the
/// null it parsed to. A column the request reads keeps its declared name.
fn as_in_the_file(
    rejected: DataFrame,
    request: &SourceOp,
    input: &Path,
    shown: &str,
    rows: Option<(usize, usize)>,
) -> Result<DataFrame, ExecError> {
    if rejected.height() == 0 {
        return Ok(rejected);
    }
    let every = SourceOp {
        columns: vec![],
        ..request.clone()
    };
    let Some(raw) = source::read_other_columns(&every, input, shown, &[], rows)? else {
        return Ok(rejected);
    };
    // The file's names, a read column's under its declared name.
    let renamed: Vec<(String, String)> = raw
        .get_column_names()
        .iter()
        .map(|n| (n.to_string(), declared_name(request, n).to_string()))
        .filter(|(from, to)| from != to)
        .collect();
    // A file column named as a read column is declared (`name` beside a
    // `Name` read as `name`) gives way to it, as in the predicted rows.
    let shadowed: Vec<&str> = renamed
        .iter()
        .map(|(_, to)| to.as_str())
        .filter(|to| raw.column(to).is_ok() && !renamed.iter().any(|(from, _)| from == to))
        .collect();
    let raw = raw
        .drop_many(shadowed.iter().copied())
        .lazy()
        .rename(
            renamed.iter().map(|(from, _)| from.as_str()),
            renamed.iter().map(|(_, to)| to.as_str()),
            true,
        )
        .collect()
        .map_err(ExecError::polars)?;
    let from_file: Vec<String> = raw
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .filter(|n| n != mlp_compiler::plan::names::ROW)
        .collect();
    let own: Vec<Expr> = rejected
        .get_column_names()
        .iter()
        .filter(|n| !from_file.iter().any(|f| f == n.as_str()))
        .map(|n| col(n.as_str()))
        .collect();
    beside_by_row(rejected.lazy().select(own), &raw)
}

/// The name a file's column has in the request: its declared name if the
/// request reads it, else the file's.
fn declared_name<'a>(request: &'a SourceOp, file_column: &'a str) -> &'a str {
    request
        .columns
        .iter()
        .find(|c| source::raw(c) == file_column)
        .map_or(file_column, |c| c.name.as_str())
}

/// `rows` with the columns of `file` (read from the same file, with `_row`)
/// beside each row, in the file's row order.
fn beside_by_row(rows: LazyFrame, file: &DataFrame) -> Result<DataFrame, ExecError> {
    rows.join(
        file.clone().lazy(),
        [col(mlp_compiler::plan::names::ROW)],
        [col(mlp_compiler::plan::names::ROW)],
        JoinArgs::new(JoinType::Left),
    )
    .sort(
        [mlp_compiler::plan::names::ROW],
        SortMultipleOptions::default(),
    )
    .collect()
    .map_err(ExecError::polars)
}

/// An output's columns in the order the input file holds them: `_row`, the
/// file's columns (one the request reads under its declared name), then
/// what predicting added (`prediction` and `proba_<class>`; a rejected
/// row's `_failed_rules` and `_kind`), so an output reads as its input with
/// the predictions beside it.
fn in_file_order(
    df: DataFrame,
    file: &[String],
    request: &SourceOp,
) -> Result<DataFrame, ExecError> {
    let have: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut order: Vec<String> = vec![];
    let mut take = |name: &str| {
        if have.iter().any(|h| h == name) && !order.iter().any(|o| o == name) {
            order.push(name.to_string());
        }
    };
    take(mlp_compiler::plan::names::ROW);
    for f in file {
        take(declared_name(request, f));
    }
    for h in &have {
        take(h);
    }
    df.select(order).map_err(ExecError::polars)
}

/// Microseconds since the epoch, now (UTC).
fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn no_lookup_state(st: &Stage) -> ExecError {
    ExecError::Internal(format!(
        "no lookup state for `{}`: load the bundle with its project (`--project`) so serving can read the tables it looks up",
        st.id
    ))
}

/// Predicts the rows of a frame with the request columns (and, optionally,
/// a `_parse_error` column from a lenient read).
pub fn predict_frame(
    b: &Bundle,
    plugins: &Plugins,
    lookups: Option<&Lookups>,
    df: DataFrame,
) -> Result<(DataFrame, Rejected), ExecError> {
    predict_frame_features(b, plugins, lookups, df).map(|(good, rejected, _)| (good, rejected))
}

/// As [`predict_frame`], plus the model's input frame of the predicted rows
/// (after the transforms and features: what the training statistics
/// describe, for drift).
pub fn predict_frame_features(
    b: &Bundle,
    plugins: &Plugins,
    lookups: Option<&Lookups>,
    df: DataFrame,
) -> Result<(DataFrame, Rejected, DataFrame), ExecError> {
    predict_frame_inner(b, plugins, lookups, df).map_err(|e| match plugins.take_failure() {
        Some(f) => ExecError::Plugin(f),
        None => e,
    })
}

fn predict_frame_inner(
    b: &Bundle,
    plugins: &Plugins,
    lookups: Option<&Lookups>,
    mut df: DataFrame,
) -> Result<(DataFrame, Rejected, DataFrame), ExecError> {
    // Source columns the request does not carry (the slice does not need
    // them, or they are nullable and left out) are nulls of their type, so
    // every step runs; the model never reads one the request had to carry.
    let mut filled: Vec<String> = vec![];
    for c in b.source_columns() {
        if c.name != b.model.target && df.column(&c.name).is_err() {
            filled.push(c.name.clone());
            let nulls = Column::full_null(
                c.name.as_str().into(),
                df.height(),
                &crate::exec::expr::dtype(&c.ty),
            );
            df.with_column(nulls).map_err(ExecError::polars)?;
        }
    }
    // A history's `at` the request leaves out (or null) is now.
    if !b.request_time.is_empty() {
        let now = now_micros();
        let mut fills = vec![];
        for name in &b.request_time {
            let Ok(c) = df.column(name) else { continue };
            let value = match c.dtype() {
                DataType::Date => {
                    lit(now.div_euclid(mlp_ml::history::DAY_US) as i32).cast(DataType::Date)
                }
                dt => lit(now)
                    .cast(DataType::Datetime(TimeUnit::Microseconds, None))
                    .cast(dt.clone()),
            };
            fills.push(col(name.as_str()).fill_null(value));
            filled.retain(|f| f != name);
        }
        let height = df.height();
        df = crate::exec::collect_rows(df.lazy().with_columns(fills), height)?;
    }
    // Row-level checks that do not read the target, and schema breaks.
    let mut masks: Vec<(String, Expr)> = vec![];
    if df.column(source::PARSE_ERROR).is_ok() {
        masks.push(("".into(), col(source::PARSE_ERROR).is_not_null()));
    }
    for st in &b.stages {
        if let Op::Check(c) = &st.op {
            for r in &c.rules {
                if r.row_level && !r.reads_target {
                    if let Some(m) = check::failing_for(&r.rule, st)? {
                        masks.push((r.text.clone(), m));
                    }
                }
            }
        }
    }
    // The columns added for the checks, dropped again after.
    let lenient = df.column(source::PARSE_ERROR).is_ok();
    let mut helper_columns: Vec<&str> = vec!["__bad"];
    if lenient {
        helper_columns.push(source::PARSE_ERROR);
    }
    if df.column(source::PARSE_KIND).is_ok() {
        helper_columns.push(source::PARSE_KIND);
    }
    // Why a rejected row is rejected: its schema break's kind, else a
    // failed check.
    let kind = if df.column(source::PARSE_KIND).is_ok() {
        when(col(source::PARSE_ERROR).is_not_null())
            .then(col(source::PARSE_KIND))
            .otherwise(lit(REJECTED_BY_CHECK))
    } else {
        lit(REJECTED_BY_CHECK)
    };
    let rows = df.height();
    let collect = |lf: LazyFrame| crate::exec::collect_rows(lf, rows);
    let any = masks
        .iter()
        .map(|(_, m)| m.clone())
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(false));
    let reasons: Vec<Expr> = masks
        .iter()
        .map(|(text, m)| {
            let why = if text.is_empty() {
                col(source::PARSE_ERROR)
            } else {
                lit(text.as_str())
            };
            when(m.clone())
                .then(why)
                .otherwise(lit(NULL).cast(DataType::String))
        })
        .collect();
    let marked = collect(
        df.lazy()
            .with_row_index(mlp_compiler::plan::names::ROW, Some(1))
            .with_column(any.fill_null(lit(false)).alias("__bad")),
    )?;
    let bad = marked
        .column("__bad")
        .and_then(|c| c.bool().map(|b| b.sum().unwrap_or(0)))
        .map_err(ExecError::polars)?;
    let without_helpers = |df: &DataFrame| df.drop_many(helper_columns.iter().copied());
    // Every row passed (the usual case): no query to split them.
    let (good, rejected) = if bad == 0 {
        let mut none = without_helpers(&marked.head(Some(0)));
        if !reasons.is_empty() {
            for name in [mlp_compiler::plan::names::FAILED_RULES, REJECTED_KIND] {
                none.with_column(Column::new_empty(name.into(), &DataType::String))
                    .map_err(ExecError::polars)?;
            }
        }
        (without_helpers(&marked), none)
    } else {
        let rejected = collect(
            marked
                .clone()
                .lazy()
                .filter(col("__bad"))
                .with_columns([
                    concat_str(reasons, "; ", true).alias(mlp_compiler::plan::names::FAILED_RULES),
                    kind.alias(REJECTED_KIND),
                ])
                .drop(by_name(helper_columns.clone(), true, false)),
        )?;
        let good = collect(marked.lazy().filter(col("__bad").not()).drop(by_name(
            helper_columns.clone(),
            true,
            false,
        )))?;
        (good, rejected)
    };
    // The answer shows what the request carried, not the filled nulls.
    let mut out = good.drop_many(filled.iter().map(String::as_str));
    let rejected = rejected.drop_many(filled.iter().map(String::as_str));
    let mut df = good
        .drop(mlp_compiler::plan::names::ROW)
        .map_err(ExecError::polars)?;
    // The same steps as training, with the stored parameters.
    let mut lookup_bad: Vec<(usize, String)> = vec![];
    for st in &b.stages {
        match &st.op {
            Op::Join(_) => {
                let state = lookups
                    .and_then(|l| l.joins.get(&st.id))
                    .ok_or_else(|| no_lookup_state(st))?;
                let (joined, unmatched) = state.apply_rows(df)?;
                df = joined;
                if state.is_inner() {
                    let side = lookups
                        .and_then(|l| l.tables.get(&st.id))
                        .cloned()
                        .unwrap_or_default();
                    for r in unmatched {
                        lookup_bad.push((r, format!("no `{side}` row has this row's key (`join {}` keeps matched rows only)", st.name)));
                    }
                }
            }
            Op::History(_) => {
                let state = lookups
                    .and_then(|l| l.histories.get(&st.id))
                    .ok_or_else(|| no_lookup_state(st))?;
                df = state.apply(df, Some(now_micros()))?;
            }
            Op::Transform(op) => {
                let params = b.params.get(&st.id).cloned().unwrap_or_default();
                df = transform::apply_all(op, &params, df, st, true, plugins)?;
            }
            Op::Features(op) => {
                let mut tables = BTreeMap::new();
                if let Some(t) = b.over.get(&st.id) {
                    for (f, j) in t {
                        tables.insert(f.clone(), j.to_table()?);
                    }
                }
                df = features::compute(op, df, st, &mut tables, None, plugins)?;
            }
            _ => {}
        }
    }
    let (x, bad_inputs) = model::design_rows(&df, &b.model)?;
    // A row whose features came out NaN or infinite (a zero divisor, an
    // overflow) or missing is rejected alone, with the column and value.
    let mut bad: Vec<(usize, String)> = bad_inputs
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            b.as_ref().map(|(c, v)| {
                (
                    i,
                    match v {
                        Some(v) => format!("feature `{c}` is {v} (not a finite number)"),
                        None => format!("feature `{c}` is missing"),
                    },
                )
            })
        })
        .collect();
    let prediction = b.model.predict(&x);
    // A prediction that overflowed is no answer either.
    match &prediction {
        Prediction::Values(v) => {
            for (i, p) in v.iter().enumerate() {
                if !p.is_finite() && bad_inputs[i].is_none() {
                    bad.push((i, format!("the prediction is {p} (not a finite number)")));
                }
            }
        }
        Prediction::Probabilities(p) => {
            for (i, r) in p.rows().into_iter().enumerate() {
                if r.iter().any(|v| !v.is_finite()) && bad_inputs[i].is_none() {
                    bad.push((i, "a class probability is not a finite number".into()));
                }
            }
        }
    }
    for (r, why) in lookup_bad {
        if !bad.iter().any(|(b, _)| *b == r) {
            bad.push((r, why));
        }
    }
    bad.sort();

    match prediction {
        Prediction::Values(v) => {
            out.with_column(Column::new("prediction".into(), v.to_vec()))
                .map_err(ExecError::polars)?;
        }
        Prediction::Probabilities(p) => {
            for column in model::class_columns(&p, &b.model.classes, b.model.threshold())? {
                out.with_column(column).map_err(ExecError::polars)?;
            }
        }
    }
    if bad.is_empty() {
        return Ok((out, Rejected { frame: rejected }, df));
    }
    // Move the non-finite rows from the answer to the rejected rows.
    let keep: Vec<bool> = {
        let mut k = vec![true; out.height()];
        for (i, _) in &bad {
            k[*i] = false;
        }
        k
    };
    let keep_mask = BooleanChunked::from_slice("keep".into(), &keep);
    let drop_mask = !&keep_mask;
    let base: Vec<String> = rejected
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .filter(|c| c != mlp_compiler::plan::names::FAILED_RULES && c != REJECTED_KIND)
        .collect();
    let mut moved = out
        .filter(&drop_mask)
        .map_err(ExecError::polars)?
        .select(base.iter().map(String::as_str))
        .map_err(ExecError::polars)?;
    moved
        .with_column(Column::new(
            mlp_compiler::plan::names::FAILED_RULES.into(),
            bad.iter().map(|(_, why)| why.as_str()).collect::<Vec<_>>(),
        ))
        .map_err(ExecError::polars)?;
    moved
        .with_column(Column::new(
            REJECTED_KIND.into(),
            vec![REJECTED_NON_FINITE; bad.len()],
        ))
        .map_err(ExecError::polars)?;
    let rejected = if rejected.height() == 0 {
        moved
    } else {
        let rejected = rejected
            .select(moved.get_column_names().iter().map(|c| c.as_str()))
            .map_err(ExecError::polars)?;
        rejected
            .vstack(&moved)
            .map_err(ExecError::polars)?
            .sort(
                [mlp_compiler::plan::names::ROW],
                SortMultipleOptions::default(),
            )
            .map_err(ExecError::polars)?
    };
    let out = out.filter(&keep_mask).map_err(ExecError::polars)?;
    let df = df.filter(&keep_mask).map_err(ExecError::polars)?;
    Ok((out, Rejected { frame: rejected }, df))
}

/// Why a bundle could not be found or read.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("no model registry under `{0}`")]
    NoRegistry(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A bundle file that cannot be read, or fails its verification.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// Its plugins cannot be loaded.
    #[error(transparent)]
    Load(ExecError),
    /// The tables its joins and histories look up cannot be read.
    #[error(transparent)]
    Lookup(#[from] crate::lookup::LookupError),
}

impl LocateError {
    pub fn help(&self) -> Option<String> {
        match self {
            LocateError::NoRegistry(_) => Some(
                "deploy a model with `mlp run` first, or pass the project with --project".into(),
            ),
            LocateError::Registry(e) => e.help(),
            LocateError::Bundle(_) => None,
            LocateError::Load(e) => e.help(),
            LocateError::Lookup(e) => e.help(),
        }
    }
}

/// The registry of the project at `project` (a folder, or a file in it).
pub fn registry_at(project: &Path) -> Result<Registry, LocateError> {
    let root = if project.is_dir() {
        project.to_path_buf()
    } else {
        project
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into())
    };
    let state = root.join(".mlp");
    if !state.join("registry").is_dir() {
        return Err(LocateError::NoRegistry(root.display().to_string()));
    }
    Ok(Registry::open(&state))
}

/// Where a spec's bundle is.
pub struct BundleLocation {
    pub path: std::path::PathBuf,
    /// The version: its SHA-256 (the registry names bundles by it).
    pub version: String,
    /// Resolved through the registry (so an alias can move), rather than a
    /// bundle file named directly.
    pub from_registry: bool,
}

/// Finds the bundle of NAME, NAME@alias, NAME@version, or a bundle file
/// (whose version is its bytes' hash, checked against its name when that
/// is a hash).
pub fn locate(project: &Path, spec: &str) -> Result<BundleLocation, LocateError> {
    let bundle_file = Path::new(spec);
    if bundle_file.is_file() {
        let (_, version) = Bundle::read(bundle_file, None).map_err(LocateError::Bundle)?;
        return Ok(BundleLocation {
            path: bundle_file.to_path_buf(),
            version,
            from_registry: false,
        });
    }
    let reg = registry_at(project)?;
    let (name, version) = reg.resolve(spec)?;
    Ok(BundleLocation {
        path: reg.bundle_path(&name, &version),
        version,
        from_registry: true,
    })
}
