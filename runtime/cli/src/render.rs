//! Renders reports for a terminal and as HTML pages: what the engine
//! computes, shown.

use mlp_engine::exec::{FailureReport, GateResult};
use mlp_engine::monitor::{Histogram, MonitorReport};

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

/// The check report as a table: each rule, failing rows, and the first
/// failing rows (row numbers and the values of the rule's columns).
pub fn check_table(doc: &serde_json::Value) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(["rule", "failing rows", "result", "first failing rows"]);
    for r in doc["rules"].as_array().into_iter().flatten() {
        let failing = r["failing_rows"].as_u64().unwrap_or(0);
        let result = match (failing, r["warn"].as_bool().unwrap_or(false)) {
            (0, _) => "pass",
            (_, true) => "warn",
            _ => "FAIL",
        };
        let examples: Vec<String> = r["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .take(3)
            .map(|e| e.to_string())
            .collect();
        let count = match r["value"].as_f64() {
            Some(v) if r["row_level"] == false => {
                format!("- (value {})", (v * 1e4).round() / 1e4)
            }
            _ => failing.to_string(),
        };
        t.add_row([
            r["rule"].as_str().unwrap_or("").to_string(),
            count,
            result.to_string(),
            examples.join(" "),
        ]);
    }
    t.to_string()
}

/// The gates of an evaluation as a table: each gate, its value, pass or
/// fail (empty without gates).
pub fn gate_table(gates: &[GateResult]) -> String {
    if gates.is_empty() {
        return String::new();
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(["gate", "value", "result"]);
    for g in gates {
        t.add_row([
            g.gate.clone(),
            g.value
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "undefined".into()),
            if g.passed { "pass" } else { "FAIL" }.to_string(),
        ]);
    }
    t.to_string()
}

/// The gates an evaluate stage's report holds: the overall gates, then each
/// slice's.
pub fn report_gates(details: &serde_json::Value) -> Vec<GateResult> {
    let report = &details["report"];
    let parse = |v: &serde_json::Value| -> Vec<GateResult> {
        serde_json::from_value(v.clone()).unwrap_or_default()
    };
    let mut out = parse(&report["gates"]);
    for s in report["slices"].as_array().into_iter().flatten() {
        out.extend(parse(&s["gates"]));
    }
    out
}

/// The table of a failed stage's report.
pub fn failure_table(f: &FailureReport) -> String {
    match f {
        FailureReport::Checks { report } => check_table(report),
        FailureReport::Gates { gates } => gate_table(gates),
    }
}
