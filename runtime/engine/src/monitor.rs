//! `monitor: bundle + rows -> drift report`: what `mlp monitor` prints and
//! what the server's `/metrics` gauges show for its window of served rows.
//!
//! The rows are compared with the training statistics stored in the bundle,
//! on the model's input frame (after the transforms and features, as the
//! statistics were taken), per feature; an encoded column is compared as its
//! original category. Every feature gets the default statistics of its kind
//! (numeric: PSI, KS, Wasserstein, JS; categorical: PSI, chi-squared, JS);
//! the thresholds are the `monitor` block's `drift` rules, or, when it
//! declares none, `psi < 0.2` for every feature.

use crate::bundle::Bundle;
use crate::exec::ExecError;
use mlp_compiler::plan::{CmpOp, DriftOp, DriftStat, GateOp, Metric, Op};
use mlp_ml::drift;
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The most current rows the sample-based statistics (KS, Wasserstein)
/// read; beyond it, an evenly spaced sample.
pub const CURRENT_SAMPLE: usize = 10_000;

/// The fewest rows on which a drift or performance rule is judged: a
/// handful of rows drifts by chance. Below it the statistics are reported,
/// no rule is breached, and the report says why.
pub const MIN_ROWS: usize = 50;

/// Holds every rule of a report on fewer than [`MIN_ROWS`] rows; the note
/// to show, if it did.
pub fn hold_below_minimum(
    columns: &mut [ColumnReport],
    performance: &mut [PerformanceResult],
    rows: usize,
) -> Option<String> {
    if rows >= MIN_ROWS {
        return None;
    }
    for c in columns.iter_mut() {
        c.drifting = false;
        for s in &mut c.stats {
            s.breached = false;
        }
    }
    for p in performance.iter_mut() {
        p.breached = false;
    }
    Some(format!(
        "too few rows to judge drift: {rows} compared, rules apply from {MIN_ROWS}"
    ))
}

/// The threshold used for every feature when the `monitor` block declares
/// no `drift` rule.
pub const DEFAULT_PSI: f64 = 0.2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatResult {
    pub stat: String,
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// The rule checked on this statistic (`psi < 0.2`, `chi2 p > 0.01`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub breached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Histogram {
    pub bins: Vec<String>,
    /// Shares of the training rows per bin.
    pub reference: Vec<f64>,
    /// Shares of the current rows per bin.
    pub current: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColumnReport {
    pub column: String,
    pub kind: String,
    pub rows: usize,
    pub stats: Vec<StatResult>,
    pub drifting: bool,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerformanceResult {
    pub metric: String,
    pub value: f64,
    /// The value on the evaluation the deploy was gated on.
    pub at_training: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub breached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorReport {
    pub model: String,
    pub version: String,
    pub rows: usize,
    pub rejected: usize,
    /// `declared` (the monitor block's rules) or `default` (psi < 0.2).
    pub thresholds: String,
    pub columns: Vec<ColumnReport>,
    pub performance: Vec<PerformanceResult>,
    pub breached: bool,
    /// Why no rule was judged (too few rows), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A number for a report: as written, or to 4 decimals when long.
pub fn fmt_num(x: f64) -> String {
    let s = format!("{x}");
    if s.len() > 10 {
        format!("{x:.4}")
    } else {
        s
    }
}

/// The features the report covers: the model's inputs (one-hot columns as
/// their original), then any other declared column.
pub fn monitored_columns(b: &Bundle) -> Vec<String> {
    let groups: Vec<(String, String)> = b
        .stages
        .iter()
        .flat_map(|s| &s.schema)
        .filter_map(|c| {
            let orig = c.group_of.clone()?;
            Some((c.name.trim_end_matches('*').to_string(), orig))
        })
        .collect();
    let mut out: Vec<String> = vec![];
    let mut push = |n: String| {
        if !out.contains(&n) {
            out.push(n);
        }
    };
    for f in &b.model.features {
        match groups
            .iter()
            .find(|(prefix, _)| f.starts_with(prefix.as_str()))
        {
            Some((_, orig)) => push(orig.clone()),
            None => push(f.clone()),
        }
    }
    if let Some(m) = &b.monitor {
        for d in &m.drift {
            push(d.column.clone());
        }
    }
    out
}

/// A numeric column's values as floats, nulls and NaNs left out, in order.
pub fn finite_floats(c: &Column) -> Result<Vec<f64>, ExecError> {
    let s = c.cast(&DataType::Float64).map_err(ExecError::polars)?;
    Ok(s.f64()
        .map_err(ExecError::polars)?
        .iter()
        .flatten()
        .filter(|x| !x.is_nan())
        .collect())
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// An evenly spaced sample of at most `max` values.
fn thin(v: Vec<f64>, max: usize) -> Vec<f64> {
    if v.len() <= max {
        return v;
    }
    let step = v.len().div_ceil(max);
    v.into_iter().step_by(step).collect()
}

/// The drift of one column of `current` against its training statistics.
pub fn column_report(
    name: &str,
    stats: &Value,
    current: &Column,
    rules: &[&DriftOp],
    default_rules: bool,
) -> Result<ColumnReport, ExecError> {
    let mut results: Vec<StatResult> = vec![];
    let mut add = |stat: &str, value: f64, p: Option<f64>| {
        results.push(StatResult {
            stat: stat.into(),
            value,
            p_value: p,
            rule: None,
            breached: false,
        })
    };
    let kind = stats["kind"].as_str().unwrap_or("numeric").to_string();
    let rows = current.len() - current.null_count();
    let histogram;
    if kind == "numeric" {
        let values = finite_floats(current)?;
        let edges = if stats["edges"].is_array() {
            floats(&stats["edges"])
        } else {
            drift::decile_edges(&floats(&stats["deciles"]))
        };
        let expected = if stats["bin_counts"].is_array() {
            floats(&stats["bin_counts"])
        } else {
            vec![1.0; edges.len() + 1]
        };
        let actual = drift::bin_counts(&edges, values.iter().copied());
        add("psi", drift::psi(&expected, &actual), None);
        let sample = floats(&stats["sample"]);
        if !sample.is_empty() && !values.is_empty() {
            let cur = thin(values.clone(), CURRENT_SAMPLE);
            let ks = drift::ks_2samp(&sample, &cur);
            add("ks", ks.statistic, Some(ks.p_value));
            add("wasserstein", drift::wasserstein(&sample, &cur), None);
        }
        add("js", drift::js_distance(&expected, &actual), None);
        let mut bins = vec![];
        for k in 0..=edges.len() {
            bins.push(match (k.checked_sub(1).map(|i| edges[i]), edges.get(k)) {
                (None, Some(hi)) => format!("≤ {}", fmt_num(*hi)),
                (Some(lo), Some(hi)) => format!("{} – {}", fmt_num(lo), fmt_num(*hi)),
                (Some(lo), None) => format!("> {}", fmt_num(lo)),
                (None, None) => "all".into(),
            });
        }
        histogram = Histogram {
            bins,
            reference: drift::proportions(&expected),
            current: drift::proportions(&actual),
        };
    } else {
        let s = current.cast(&DataType::String).map_err(ExecError::polars)?;
        let mut counts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        if let Some(obj) = stats["counts"].as_object() {
            for (k, v) in obj {
                counts.entry(k.clone()).or_default().0 = v.as_f64().unwrap_or(0.0);
            }
        }
        for v in s.str().map_err(ExecError::polars)?.iter().flatten() {
            counts.entry(v.to_string()).or_default().1 += 1.0;
        }
        let (expected, actual): (Vec<f64>, Vec<f64>) = counts.values().copied().unzip();
        add("psi", drift::psi(&expected, &actual), None);
        let (stat, p, _) = drift::chi2(&expected, &actual);
        add("chi2", stat, Some(p));
        add("js", drift::js_distance(&expected, &actual), None);
        histogram = Histogram {
            bins: counts.keys().cloned().collect(),
            reference: drift::proportions(&expected),
            current: drift::proportions(&actual),
        };
    }
    // The thresholds.
    let mut drifting = false;
    let default_rule = DriftOp {
        column: name.to_string(),
        stat: DriftStat::Psi,
        p_value: false,
        op: CmpOp::Lt,
        threshold: DEFAULT_PSI,
    };
    let rules: Vec<&DriftOp> = if default_rules {
        vec![&default_rule]
    } else {
        rules.to_vec()
    };
    for r in rules {
        let text = format!(
            "{}{} {} {}",
            r.stat,
            if r.p_value { " p" } else { "" },
            r.op,
            fmt_num(r.threshold)
        );
        match results.iter_mut().find(|s| s.stat == r.stat.as_str()) {
            Some(s) => {
                let v = if r.p_value {
                    s.p_value.unwrap_or(f64::NAN)
                } else {
                    s.value
                };
                s.breached = v.is_finite() && !crate::exec::compare(v, r.op, r.threshold);
                s.rule = Some(text);
                drifting |= s.breached;
            }
            None => results.push(StatResult {
                stat: r.stat.to_string(),
                value: f64::NAN,
                p_value: None,
                rule: Some(format!("{text} (not computable for a {kind} column)")),
                breached: false,
            }),
        }
    }
    Ok(ColumnReport {
        column: name.to_string(),
        kind,
        rows,
        stats: results,
        drifting,
        histogram,
    })
}

/// Drift of every monitored column of `features` (the model's input frame).
pub fn drift_report(b: &Bundle, features: &DataFrame) -> Result<Vec<ColumnReport>, ExecError> {
    let declared: Vec<DriftOp> = b
        .monitor
        .as_ref()
        .map(|m| m.drift.clone())
        .unwrap_or_default();
    let default_rules = declared.is_empty();
    let mut out = vec![];
    for name in monitored_columns(b) {
        let stats = &b.training_stats[&name];
        if stats.is_null() {
            continue;
        }
        let Ok(current) = features.column(&name) else {
            continue;
        };
        let rules: Vec<&DriftOp> = declared.iter().filter(|d| d.column == name).collect();
        out.push(column_report(&name, stats, current, &rules, default_rules)?);
    }
    Ok(out)
}

/// The model's metrics on rows that carry the target (`predicted` holds the
/// predictions and the target), with the `performance` rules.
pub fn performance(b: &Bundle, predicted: &DataFrame) -> Result<Vec<PerformanceResult>, ExecError> {
    let Some(model_op) = b.stages.iter().find_map(|s| match &s.op {
        Op::Model(m) => Some(m.clone()),
        _ => None,
    }) else {
        return Ok(vec![]);
    };
    if predicted.column(&model_op.target).is_err() || predicted.height() == 0 {
        return Ok(vec![]);
    }
    let rules: Vec<GateOp> = b
        .monitor
        .as_ref()
        .map(|m| m.performance.clone())
        .unwrap_or_default();
    let at_training: BTreeMap<String, f64> = b
        .evaluations
        .first()
        .and_then(|e| e["metrics"].as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut names: Vec<Metric> = rules.iter().map(|r| r.metric).collect();
    for k in at_training.keys().filter_map(|k| Metric::parse(k)) {
        if !names.contains(&k) {
            names.push(k);
        }
    }
    // Rows whose target is null cannot be scored.
    let scored = predicted
        .clone()
        .lazy()
        .filter(col(model_op.target.as_str()).is_not_null())
        .collect()
        .map_err(ExecError::polars)?;
    let values = crate::exec::evaluate::metrics_of(&scored, &model_op, &b.model.classes, &names)?;
    Ok(values
        .into_iter()
        .map(|(metric, value)| {
            let rule = rules.iter().find(|r| r.metric == metric);
            PerformanceResult {
                at_training: at_training.get(metric.as_str()).copied(),
                rule: rule.map(|r| format!("{} {} {}", r.metric, r.op, fmt_num(r.threshold))),
                breached: rule.is_some_and(|r| {
                    value.is_finite() && !crate::exec::compare(value, r.op, r.threshold)
                }),
                metric: metric.to_string(),
                value,
            }
        })
        .collect())
}

/// The drift and performance report of a bundle on a file of labelled or
/// unlabelled rows, predicted in batches (`mlp monitor`).
pub fn file_report(
    b: &Bundle,
    version: &str,
    plugins: &crate::plugins::Plugins,
    lookups: Option<&crate::lookup::Lookups>,
    data: &std::path::Path,
) -> Result<MonitorReport, ExecError> {
    // In batches: of each, only the model's inputs (for drift) and the
    // target with the predictions (for performance) are kept.
    let keep: Vec<String> = std::iter::once(b.model.target.clone())
        .chain(["prediction".to_string()])
        .chain(
            b.model
                .classes
                .iter()
                .map(|c| mlp_compiler::plan::names::proba_column(c)),
        )
        .collect();
    let mut goods: Vec<DataFrame> = vec![];
    let mut feature_parts: Vec<DataFrame> = vec![];
    let mut rejected_rows = 0usize;
    crate::bundle::predict_file_batches(
        b,
        plugins,
        lookups,
        data,
        crate::bundle::predict_batch_rows(),
        &mut |good, rejected, features| {
            rejected_rows += rejected.height();
            let kept: Vec<&str> = keep
                .iter()
                .map(String::as_str)
                .filter(|c| good.column(c).is_ok())
                .collect();
            goods.push(good.select(kept).map_err(ExecError::polars)?);
            feature_parts.push(features);
            Ok(())
        },
    )?;
    let stack = |parts: Vec<DataFrame>| {
        let mut it = parts.into_iter();
        let mut all = it.next().unwrap_or_default();
        for p in it {
            all.vstack_mut(&p).map_err(ExecError::polars)?;
        }
        Ok::<_, ExecError>(all)
    };
    let (good, features) = (stack(goods)?, stack(feature_parts)?);
    let mut columns = drift_report(b, &features)?;
    let mut performance = performance(b, &good)?;
    let note = hold_below_minimum(&mut columns, &mut performance, good.height());
    let declared = b.monitor.as_ref().is_some_and(|m| !m.drift.is_empty());
    let breached = columns.iter().any(|c| c.drifting) || performance.iter().any(|p| p.breached);
    Ok(MonitorReport {
        model: b.name.clone(),
        version: version.to_string(),
        rows: good.height(),
        rejected: rejected_rows,
        thresholds: if declared {
            "declared in the monitor block".into()
        } else {
            format!("default (psi < {DEFAULT_PSI} for every feature)")
        },
        columns,
        performance,
        breached,
        note,
    })
}

/// A served model's rule (latency percentile, error rate) judged on the
/// server's counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServingRule {
    pub rule: String,
    pub value: Option<f64>,
    pub breached: bool,
    /// Why the rule was not judged (too few requests), if so.
    pub note: Option<String>,
}

/// What `GET /v1/monitor` answers and `mlp monitor --server` reads: the
/// window of served rows' drift, the latency percentiles and error rate,
/// and the monitor block's rules judged on them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServingReport {
    pub model: String,
    pub version: String,
    pub window_rows: usize,
    pub window: usize,
    pub requests: usize,
    /// `p50`, `p90`, `p95`, `p99`, in milliseconds (none before a request).
    pub latency_ms: BTreeMap<String, Option<f64>>,
    pub error_rate: f64,
    pub drift: Vec<ColumnReport>,
    pub monitor: Option<mlp_compiler::plan::MonitorOp>,
    pub rules: Vec<ServingRule>,
    pub breached: bool,
}

impl ServingReport {
    /// Judges the monitor block's latency and error-rate rules and the
    /// window's drift: sets `rules` and `breached`.
    pub fn judge(&mut self) {
        let mut rules = vec![];
        let requests = self.requests;
        if let Some(m) = &self.monitor {
            for l in &m.latency {
                let key = format!("p{}", l.percentile);
                let value = self.latency_ms.get(&key).copied().flatten();
                // A percentile is judged once it is more than the slowest
                // request: p99 needs 100 requests, and never fewer than
                // MIN_ROWS.
                let needed =
                    MIN_ROWS.max((100.0 / (100.0 - l.percentile).max(1e-9)).ceil() as usize);
                let judged = requests >= needed;
                let ok = !judged || value.is_none_or(|v| crate::exec::compare(v, l.op, l.millis));
                rules.push(ServingRule {
                    rule: format!("latency {key} {} {}ms", l.op, l.millis),
                    value,
                    breached: !ok,
                    note: (!judged).then(|| {
                        format!(
                            "not judged: {}, the rule needs {needed}",
                            requests_text(requests)
                        )
                    }),
                });
            }
            if let Some(g) = &m.error_rate {
                let v = self.error_rate;
                let judged = requests >= MIN_ROWS;
                let ok = !judged || crate::exec::compare(v, g.op, g.threshold);
                rules.push(ServingRule {
                    rule: format!("error_rate {} {}", g.op, g.threshold),
                    value: Some(v),
                    breached: !ok,
                    note: (!judged).then(|| {
                        format!(
                            "not judged: {}, the rule needs {MIN_ROWS}",
                            requests_text(requests)
                        )
                    }),
                });
            }
        }
        self.breached = rules.iter().any(|r| r.breached) || self.drift.iter().any(|c| c.drifting);
        self.rules = rules;
    }
}

/// "1 request", "2 requests".
pub fn requests_text(n: usize) -> String {
    if n == 1 {
        "1 request".into()
    } else {
        format!("{n} requests")
    }
}
