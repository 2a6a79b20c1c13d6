//! `check`: every rule over the frame, with a report (rule, column, failing
//! rows, the first few of them). A failing rule stops the run; `warn` rules
//! report and continue; with `quarantine`, rows failing a row-level rule are
//! set aside into `quarantine.arrow` (kept and counted) and the run goes on.

use super::expr::{literal, Kind, Translator};
use super::{input, records, Context, ExecError, Output};
use mlp_compiler::plan::{CheckOp, CheckRule, RuleOp};
use polars::prelude::*;
use serde_json::json;

/// Example rows shown per failing rule.
pub const EXAMPLES: usize = 5;

fn kinds(stage: &mlp_compiler::plan::Stage) -> impl Fn(&str) -> Option<Kind> + '_ {
    move |name: &str| {
        stage
            .schema
            .iter()
            .find(|c| c.name == name)
            .map(|c| Kind::of(&c.ty))
    }
}

/// The expression that is true for rows failing a row-level rule.
fn failing(rule: &RuleOp, cx: &Context) -> Result<Option<Expr>, ExecError> {
    failing_for(rule, cx.stage)
}

/// The expression that is true for rows failing a row-level rule of a check
/// stage (`None` for frame-level rules).
pub fn failing_for(
    rule: &RuleOp,
    stage: &mlp_compiler::plan::Stage,
) -> Result<Option<Expr>, ExecError> {
    let types = kinds(stage);
    let none = crate::plugins::Plugins::none();
    let tr = Translator {
        types: &types,
        plugins: &none,
    };
    Ok(Some(match rule {
        RuleOp::NotNull { columns } => columns
            .iter()
            .map(|c| col(c.as_str()).is_null())
            .reduce(|a, b| a.or(b))
            .unwrap_or(lit(false)),
        RuleOp::Range { column, lo, hi } => {
            let kind = types(column).unwrap_or(Kind::Float);
            let bound = |l: &mlp_compiler::plan::Literal| match (l, &kind) {
                (mlp_compiler::plan::Literal::Str(s), Kind::Date(_) | Kind::Datetime(_)) => {
                    super::expr::temporal_literal(s, &kind)
                }
                (l, _) => literal(l),
            };
            let c = || {
                if kind == Kind::Int {
                    col(column.as_str()).cast(DataType::Float64)
                } else {
                    col(column.as_str())
                }
            };
            let mut e = lit(false);
            if let Some(lo) = lo {
                e = e.or(c().lt(bound(lo)));
            }
            if let Some(hi) = hi {
                e = e.or(c().gt(bound(hi)));
            }
            e.fill_null(lit(false))
        }
        RuleOp::Values { column, values } => {
            let c = col(column.as_str());
            let any = values
                .iter()
                .map(|v| c.clone().eq(literal(v)))
                .reduce(|a, b| a.or(b))
                .unwrap_or(lit(false));
            c.is_not_null().and(any.not())
        }
        RuleOp::Matches { column, pattern } => {
            let c = col(column.as_str());
            c.clone()
                .is_not_null()
                .and(c.str().contains(lit(pattern.as_str()), true).not())
        }
        RuleOp::Expect { expr } => {
            // A rule that evaluates to null (a null input) does not fail:
            // nulls are the business of `not_null`.
            let (e, _) = tr.expr(expr)?;
            e.not().fill_null(lit(false))
        }
        RuleOp::Unique { columns } => {
            // A row shares its key with another row (a row with a null in
            // its key is a duplicate of none, as in SQL).
            let keys: Vec<Expr> = columns.iter().map(|c| col(c.as_str())).collect();
            let has_key = keys
                .iter()
                .map(|k| k.clone().is_not_null())
                .reduce(|a, b| a.and(b))
                .unwrap_or(lit(true));
            len()
                .over(keys)
                .map_err(ExecError::polars)?
                .gt(lit(1))
                .and(has_key)
        }
        RuleOp::Rows { .. } | RuleOp::NullRate { .. } => return Ok(None),
    }))
}

/// Whether no value of `column` repeats (nulls aside: a row with a null key
/// is a duplicate of none): so when its values strictly increase, or
/// decrease, as row numbers and timestamps often do (one pass), else when
/// its distinct values are as many as its rows. `false` when a key
/// repeats, or may (a float key); then the rule's window expression
/// counts and shows them.
fn no_key_repeats(df: &DataFrame, column: &str) -> Result<bool, ExecError> {
    let s = df
        .column(column)
        .map_err(ExecError::polars)?
        .as_materialized_series()
        .clone();
    let nulls = s.null_count();
    if nulls == 0 && (s.dtype().is_integer() || s.dtype().is_temporal()) {
        let ints = s
            .to_physical_repr()
            .cast(&DataType::Int64)
            .map_err(ExecError::polars)?;
        let ints = ints.i64().map_err(ExecError::polars)?.rechunk();
        if let Ok(v) = ints.cont_slice() {
            let rising = v.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]));
            let falling = v.windows(2).fold(true, |ok, w| ok & (w[0] > w[1]));
            if rising || falling {
                return Ok(true);
            }
        }
    }
    // Exact types only (a float's equal values, 0 and -0 or NaNs, are the
    // window's business); `n_unique` counts a null as one more value.
    let exact = s.dtype().is_integer()
        || s.dtype().is_temporal()
        || matches!(s.dtype(), DataType::String | DataType::Boolean);
    if !exact {
        return Ok(false);
    }
    let distinct = s.n_unique().map_err(ExecError::polars)?;
    Ok(distinct == s.len() - nulls + usize::from(nulls > 0))
}

fn rule_columns(rule: &RuleOp) -> Vec<String> {
    match rule {
        RuleOp::NotNull { columns } | RuleOp::Unique { columns } => columns.clone(),
        RuleOp::Range { column, .. }
        | RuleOp::Values { column, .. }
        | RuleOp::Matches { column, .. }
        | RuleOp::NullRate { column, .. } => vec![column.clone()],
        RuleOp::Rows { .. } | RuleOp::Expect { .. } => vec![],
    }
}

pub fn run(op: &CheckOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let height = df.height();
    let mut report = vec![];
    let mut out = Output::default();
    let mut stop: Vec<String> = vec![];
    // Row masks of the row-level rules that quarantine (non-warn) applies to.
    let mut quarantine_masks: Vec<(usize, Expr)> = vec![];
    let with_index = df
        .clone()
        .lazy()
        .with_row_index("__row", Some(1))
        .collect()
        .map_err(ExecError::polars)?;
    // Every row-level rule's failing count in one pass over the frame (a
    // one-column `unique` whose keys are seen not to repeat, without it).
    let mut count_exprs = vec![];
    let mut none_repeat = vec![false; op.rules.len()];
    for (i, rule) in op.rules.iter().enumerate() {
        if let RuleOp::Unique { columns } = &rule.rule {
            if let [column] = columns.as_slice() {
                none_repeat[i] = no_key_repeats(&df, column)?;
                if none_repeat[i] {
                    continue;
                }
            }
        }
        if let Some(m) = failing(&rule.rule, cx)? {
            count_exprs.push(m.cast(DataType::UInt32).sum().alias(format!("r{i}")));
        }
    }
    let counts = if count_exprs.is_empty() {
        DataFrame::empty()
    } else {
        df.clone()
            .lazy()
            .select(count_exprs)
            .collect()
            .map_err(ExecError::polars)?
    };
    let count_of = |i: usize| -> Option<usize> {
        if none_repeat[i] {
            return Some(0);
        }
        counts
            .column(&format!("r{i}"))
            .ok()
            .and_then(|c| c.get(0).ok())
            .and_then(|v| v.extract::<u64>())
            .map(|v| v as usize)
    };
    // With quarantine, frame-level rules (`rows >= N`, `null_rate`) judge
    // the rows that survive the row-level rules: they run after the split.
    let deferred = |rule: &CheckRule| op.quarantine && !rule.row_level;
    let mut entries: Vec<Option<serde_json::Value>> = vec![None; op.rules.len()];
    let mut set_aside: Vec<String> = vec![];
    for (i, rule) in op.rules.iter().enumerate() {
        if deferred(rule) {
            continue;
        }
        let entry = evaluate(rule, &with_index, height, cx, count_of(i))?;
        let failed = entry.failing_rows > 0;
        if failed {
            let what = match entry.value {
                // A frame-level measure (`rows`, `null_rate`): its value.
                Some(v) if !rule.row_level => {
                    format!("{} (was {})", rule.text, (v * 1e4).round() / 1e4)
                }
                _ if entry.failing_rows == 1 => format!("{} (1 row)", rule.text),
                _ => format!("{} ({} rows)", rule.text, entry.failing_rows),
            };
            if rule.warn {
                let what = what.strip_prefix("warn ").unwrap_or(&what);
                out.notes.push(format!("warning: {what}"));
            } else if op.quarantine && rule.row_level {
                if let Some(m) = failing(&rule.rule, cx)? {
                    quarantine_masks.push((i, m));
                    set_aside.push(what);
                }
            } else {
                stop.push(what);
            }
        }
        entries[i] = Some(entry.json(rule));
    }
    // Rows a lenient source could not hold to its schema.
    if df.column(super::source::PARSE_ERROR).is_ok() {
        let bad = df
            .column(super::source::PARSE_ERROR)
            .map_err(ExecError::polars)?
            .is_not_null()
            .sum()
            .unwrap_or(0) as usize;
        report.insert(
            0,
            json!({
                "rule": "the source's declared schema",
                "columns": [],
                "warn": false,
                "row_level": true,
                "failing_rows": bad,
                "passed": bad == 0,
                "examples": records(
                    &df.clone()
                        .lazy()
                        .filter(col(super::source::PARSE_ERROR).is_not_null())
                        .select([col(super::source::PARSE_ERROR)])
                        .collect()
                        .map_err(ExecError::polars)?,
                    EXAMPLES
                ),
            }),
        );
        quarantine_masks.push((usize::MAX, col(super::source::PARSE_ERROR).is_not_null()));
        if bad > 0 {
            set_aside.insert(
                0,
                format!(
                    "the source's declared schema ({bad} row{})",
                    if bad == 1 { "" } else { "s" }
                ),
            );
        }
    }
    let mut quarantined = 0;
    let frame = if quarantine_masks.is_empty() {
        df
    } else {
        let any = quarantine_masks
            .iter()
            .map(|(_, m)| m.clone())
            .reduce(|a, b| a.or(b))
            .unwrap_or(lit(false));
        // Name the rules each quarantined row failed.
        let reasons: Vec<Expr> = quarantine_masks
            .iter()
            .map(|(i, m)| {
                let why = match op.rules.get(*i) {
                    Some(r) => lit(r.text.as_str()),
                    None => col(super::source::PARSE_ERROR),
                };
                when(m.clone())
                    .then(why)
                    .otherwise(lit(NULL).cast(DataType::String))
            })
            .collect();
        let marked = with_index
            .lazy()
            .with_column(any.alias("__failed"))
            .collect()
            .map_err(ExecError::polars)?;
        let bad = marked
            .clone()
            .lazy()
            .filter(col("__failed"))
            .with_column(
                concat_str(reasons, "; ", true).alias(mlp_compiler::plan::names::FAILED_RULES),
            )
            .rename(["__row"], [mlp_compiler::plan::names::ROW], true)
            .drop(by_name(
                [
                    "__failed",
                    super::source::PARSE_ERROR,
                    super::source::PARSE_KIND,
                ],
                true,
                false,
            ))
            .collect()
            .map_err(ExecError::polars)?;
        let good = marked
            .lazy()
            .filter(col("__failed").not())
            .drop(by_name(
                [
                    "__failed",
                    "__row",
                    super::source::PARSE_ERROR,
                    super::source::PARSE_KIND,
                ],
                true,
                false,
            ))
            .collect()
            .map_err(ExecError::polars)?;
        quarantined = bad.height();
        out.notes.push(format!(
            "quarantined {quarantined} of {height} rows: {}",
            set_aside.join(", ")
        ));
        out.frames.push(("quarantine".into(), bad));
        good
    };
    // The deferred frame-level rules, on the rows that passed.
    if op.rules.iter().any(deferred) {
        let kept = frame
            .clone()
            .lazy()
            .with_row_index("__row", Some(1))
            .collect()
            .map_err(ExecError::polars)?;
        for (i, rule) in op.rules.iter().enumerate() {
            if !deferred(rule) {
                continue;
            }
            let entry = evaluate(rule, &kept, kept.height(), cx, None)?;
            if entry.failing_rows > 0 {
                let what = match entry.value {
                    Some(v) => format!(
                        "{} (was {} after quarantine)",
                        rule.text,
                        (v * 1e4).round() / 1e4
                    ),
                    None => format!(
                        "{} ({} rows after quarantine)",
                        rule.text, entry.failing_rows
                    ),
                };
                if rule.warn {
                    let what = what.strip_prefix("warn ").unwrap_or(&what);
                    out.notes.push(format!("warning: {what}"));
                } else {
                    stop.push(what);
                }
            }
            entries[i] = Some(entry.json(rule));
        }
    }
    report.extend(entries.into_iter().flatten());
    let doc = json!({
        "stage": cx.stage.name,
        "rows": height,
        "passed_rows": frame.height(),
        "quarantined_rows": quarantined,
        "rules": report,
    });
    if !stop.is_empty() {
        return Err(ExecError::ChecksFailed {
            stage: cx.stage.name.clone(),
            summary: stop.join("; "),
            report: Box::new(doc),
        });
    }
    out.json.push(("report".into(), doc));
    out.frame = Some(frame);
    Ok(out)
}

struct RuleResult {
    failing_rows: usize,
    value: Option<f64>,
    examples: Vec<serde_json::Value>,
}

impl RuleResult {
    fn json(&self, rule: &CheckRule) -> serde_json::Value {
        json!({
            "rule": rule.text,
            "columns": rule_columns(&rule.rule),
            "warn": rule.warn,
            "row_level": rule.row_level,
            "failing_rows": self.failing_rows,
            "value": self.value,
            "passed": self.failing_rows == 0,
            "examples": self.examples,
        })
    }
}

fn evaluate(
    rule: &CheckRule,
    df: &DataFrame,
    height: usize,
    cx: &Context,
    count: Option<usize>,
) -> Result<RuleResult, ExecError> {
    match &rule.rule {
        RuleOp::Rows { op, n } => {
            let ok = super::compare(height as f64, *op, *n as f64);
            Ok(RuleResult {
                failing_rows: usize::from(!ok),
                value: Some(height as f64),
                examples: vec![],
            })
        }
        RuleOp::NullRate { column, op, rate } => {
            let nulls = df.column(column).map_err(ExecError::polars)?.null_count();
            let r = if height == 0 {
                0.0
            } else {
                nulls as f64 / height as f64
            };
            Ok(RuleResult {
                failing_rows: usize::from(!super::compare(r, *op, *rate)),
                value: Some(r),
                examples: vec![],
            })
        }
        other => {
            let Some(mask) = failing(other, cx)? else {
                return Ok(RuleResult {
                    failing_rows: 0,
                    value: None,
                    examples: vec![],
                });
            };
            if count == Some(0) {
                return Ok(RuleResult {
                    failing_rows: 0,
                    value: None,
                    examples: vec![],
                });
            }
            let mut cols: Vec<Expr> = vec![col("__row").alias("row")];
            cols.extend(rule_columns(other).iter().map(|c| col(c.as_str())));
            // Only the first few failing rows are collected.
            let shown = df
                .clone()
                .lazy()
                .filter(mask)
                .select(cols)
                .limit(EXAMPLES as IdxSize)
                .collect()
                .map_err(ExecError::polars)?;
            Ok(RuleResult {
                failing_rows: count.unwrap_or(shown.height()),
                value: None,
                examples: records(&shown, EXAMPLES),
            })
        }
    }
}
