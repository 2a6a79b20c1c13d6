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
use crate::drift;
use crate::exec::ExecError;
use mlp_compiler::plan::{DriftOp, GateOp, Op};
use polars::prelude::*;
use serde::Serialize;
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

#[derive(Debug, Clone, Serialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub bins: Vec<String>,
    /// Shares of the training rows per bin.
    pub reference: Vec<f64>,
    /// Shares of the current rows per bin.
    pub current: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ColumnReport {
    pub column: String,
    pub kind: String,
    pub rows: usize,
    pub stats: Vec<StatResult>,
    pub drifting: bool,
    pub histogram: Histogram,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerformanceResult {
    pub metric: String,
    pub value: f64,
    /// The value on the evaluation the deploy was gated on.
    pub at_training: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub breached: bool,
}

#[derive(Debug, Clone, Serialize)]
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

fn fmt_num(x: f64) -> String {
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
        stat: "psi".into(),
        p_value: false,
        op: "<".into(),
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
        match results.iter_mut().find(|s| s.stat == r.stat) {
            Some(s) => {
                let v = if r.p_value {
                    s.p_value.unwrap_or(f64::NAN)
                } else {
                    s.value
                };
                s.breached = v.is_finite() && !crate::exec::compare(v, &r.op, r.threshold);
                s.rule = Some(text);
                drifting |= s.breached;
            }
            None => results.push(StatResult {
                stat: r.stat.clone(),
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
    let mut names: Vec<String> = rules.iter().map(|r| r.metric.clone()).collect();
    for k in at_training.keys() {
        if !names.contains(k) {
            names.push(k.clone());
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
                at_training: at_training.get(&metric).copied(),
                rule: rule.map(|r| format!("{} {} {}", r.metric, r.op, fmt_num(r.threshold))),
                breached: rule.is_some_and(|r| {
                    value.is_finite() && !crate::exec::compare(value, &r.op, r.threshold)
                }),
                metric,
                value,
            }
        })
        .collect())
}

/// Renders a report as a terminal table.
pub fn render_table(r: &MonitorReport) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(vec![
        "feature",
        "kind",
        "statistic",
        "value",
        "p-value",
        "rule",
        "result",
    ]);
    for c in &r.columns {
        for (i, s) in c.stats.iter().enumerate() {
            t.add_row(vec![
                if i == 0 {
                    c.column.clone()
                } else {
                    String::new()
                },
                if i == 0 {
                    c.kind.clone()
                } else {
                    String::new()
                },
                s.stat.clone(),
                if s.value.is_finite() {
                    format!("{:.4}", s.value)
                } else {
                    "-".into()
                },
                s.p_value.map(|p| format!("{p:.4}")).unwrap_or_default(),
                s.rule.clone().unwrap_or_default(),
                match (&s.rule, s.breached) {
                    (None, _) => String::new(),
                    (Some(_), true) => "DRIFT".into(),
                    (Some(_), false) => "ok".into(),
                },
            ]);
        }
    }
    let mut out = format!(
        "model {} version {}: {} rows compared with the training rows ({} rejected by the checks); thresholds: {}\n{t}\n",
        r.model,
        &r.version[..r.version.len().min(12)],
        r.rows,
        r.rejected,
        r.thresholds
    );
    if !r.performance.is_empty() {
        let mut p = comfy_table::Table::new();
        p.load_preset(comfy_table::presets::NOTHING);
        p.set_header(vec!["metric", "now", "at training", "rule", "result"]);
        for m in &r.performance {
            p.add_row(vec![
                m.metric.clone(),
                format!("{:.4}", m.value),
                m.at_training.map(|v| format!("{v:.4}")).unwrap_or_default(),
                m.rule.clone().unwrap_or_default(),
                match (&m.rule, m.breached) {
                    (None, _) => String::new(),
                    (Some(_), true) => "BREACHED".into(),
                    (Some(_), false) => "ok".into(),
                },
            ]);
        }
        out.push_str(&format!(
            "performance on the rows that carry the target:\n{p}\n"
        ));
    }
    let drifting: Vec<&str> = r
        .columns
        .iter()
        .filter(|c| c.drifting)
        .map(|c| c.column.as_str())
        .collect();
    if let Some(note) = &r.note {
        out.push_str(&format!("{note}\n"));
    }
    if r.breached {
        out.push_str(&format!(
            "breached: {}\n",
            if drifting.is_empty() {
                "performance".to_string()
            } else {
                format!("drift in {}", drifting.join(", "))
            }
        ));
    } else {
        out.push_str("no threshold breached\n");
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A histogram as an inline SVG: training and current shares per bin.
fn svg(h: &Histogram) -> String {
    let (w, ht, pad) = (640.0, 220.0, 30.0);
    let n = h.bins.len().max(1) as f64;
    let max = h
        .reference
        .iter()
        .chain(&h.current)
        .fold(0.0f64, |a, b| a.max(*b))
        .max(1e-9);
    let bw = (w - 2.0 * pad) / n;
    let mut out = format!(
        "<svg width=\"{w}\" height=\"{}\" role=\"img\"><title>training vs current</title>",
        ht + 60.0
    );
    for (i, bin) in h.bins.iter().enumerate() {
        let x = pad + i as f64 * bw;
        for (k, (v, colour)) in [(h.reference[i], "#8aa4c8"), (h.current[i], "#e07b39")]
            .iter()
            .enumerate()
        {
            let bh = v / max * (ht - pad);
            out.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{colour}\"><title>{}: {:.1}%</title></rect>",
                x + 2.0 + k as f64 * (bw - 4.0) / 2.0,
                ht - bh,
                (bw - 4.0) / 2.0,
                esc(bin),
                v * 100.0
            ));
        }
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" transform=\"rotate(-35 {:.1} {:.1})\">{}</text>",
            x + bw / 2.0,
            ht + 14.0,
            x + bw / 2.0,
            ht + 14.0,
            esc(bin)
        ));
    }
    out.push_str("</svg>");
    out
}

/// Renders a report as a self-contained HTML page, with a histogram per
/// drifting feature.
pub fn render_html(r: &MonitorReport) -> String {
    let mut rows = String::new();
    for c in &r.columns {
        for s in &c.stats {
            rows.push_str(&format!(
                "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                if s.breached { "drift" } else { "" },
                esc(&c.column),
                esc(&s.stat),
                if s.value.is_finite() { format!("{:.4}", s.value) } else { "-".into() },
                s.p_value.map(|p| format!("{p:.4}")).unwrap_or_default(),
                esc(s.rule.as_deref().unwrap_or("")),
                if s.breached { "DRIFT" } else if s.rule.is_some() { "ok" } else { "" },
            ));
        }
    }
    let mut charts = String::new();
    for c in r.columns.iter().filter(|c| c.drifting) {
        charts.push_str(&format!(
            "<h3>{}</h3><p class=\"legend\"><span class=\"ref\">■</span> training &nbsp; <span class=\"cur\">■</span> current</p>{}\n",
            esc(&c.column),
            svg(&c.histogram)
        ));
    }
    if charts.is_empty() {
        charts = "<p>No feature drifts.</p>".into();
    }
    let mut perf = String::new();
    for m in &r.performance {
        perf.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            if m.breached { "drift" } else { "" },
            esc(&m.metric),
            m.value,
            m.at_training.map(|v| format!("{v:.4}")).unwrap_or_default(),
            esc(m.rule.as_deref().unwrap_or("")),
            if m.breached {
                "BREACHED"
            } else if m.rule.is_some() {
                "ok"
            } else {
                ""
            },
        ));
    }
    let perf = if perf.is_empty() {
        String::new()
    } else {
        format!("<h2>Performance</h2><table><tr><th>metric</th><th>now</th><th>at training</th><th>rule</th><th>result</th></tr>{perf}</table>")
    };
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mlp monitor: {model}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5rem; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }}
tr.drift td {{ background: #fde8e1; font-weight: 600; }}
.ref {{ color: #8aa4c8; }} .cur {{ color: #e07b39; }}
</style></head><body>
<h1>Drift report: {model}</h1>
<p>Version <code>{version}</code>. {rows} rows compared with the training rows ({rejected} rejected by the checks). Thresholds: {thresholds}. <strong>{verdict}</strong></p>
<h2>Features</h2>
<table><tr><th>feature</th><th>statistic</th><th>value</th><th>p-value</th><th>rule</th><th>result</th></tr>
{rows_html}</table>
{perf}
<h2>Drifting features</h2>
{charts}
</body></html>
"#,
        model = esc(&r.model),
        version = esc(&r.version),
        rows = r.rows,
        rejected = r.rejected,
        thresholds = esc(&r.thresholds),
        verdict = if r.breached {
            "A threshold is breached."
        } else {
            "No threshold breached."
        },
        rows_html = rows,
    )
}
