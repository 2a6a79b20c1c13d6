//! `deploy`: once the model's gates have passed (the stage reads the
//! evaluate stages), gathers the inference slice into a [`Bundle`] and
//! registers it in `.mlp/registry/` under its content hash, moving the alias.

use super::features::OverTable;
use super::model::ModelFile;
use super::transform::Fitted;
use super::{Context, ExecError, Output};
use crate::bundle::{Bundle, OverJson, BUNDLE_FORMAT};
use mlp_compiler::plan::{DeployOp, Expr as PExpr, Op, Stage};
use mlp_store::registry::Registry;
use polars::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;

fn entry_file(cx: &Context, stage: &str, file: &str) -> Result<std::path::PathBuf, ExecError> {
    let key = cx
        .keys
        .get(stage)
        .ok_or_else(|| ExecError::Internal(format!("no key for `{stage}`")))?;
    cx.store
        .checked_path(key, file)
        .map_err(|e| ExecError::Internal(e.to_string()))
}

pub(super) fn read_json(
    cx: &Context,
    stage: &str,
    file: &str,
) -> Result<serde_json::Value, ExecError> {
    let computed = cx.input_json.get(stage).and_then(|docs| {
        docs.iter()
            .find(|(name, _)| file.strip_suffix(".json") == Some(name.as_str()))
    });
    if let Some((_, value)) = computed {
        return Ok(value.clone());
    }
    let p = entry_file(cx, stage, file)?;
    let bytes =
        std::fs::read(&p).map_err(|e| ExecError::Internal(format!("{}: {e}", p.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| ExecError::Internal(format!("{}: {e}", p.display())))
}

/// Statistics of the model's input columns on the train rows, for drift
/// monitoring: deciles, mean and standard deviation of numbers; level counts
/// of categories.
/// The most train values per numeric column a bundle keeps as the
/// reference sample for KS and Wasserstein.
pub const REFERENCE_SAMPLE: usize = 5000;

pub fn training_stats(
    df: &DataFrame,
    part: &str,
    skip: &[&str],
) -> Result<serde_json::Value, ExecError> {
    let train = super::train_rows(df, part)?;
    let mut out = serde_json::Map::new();
    for c in train.columns() {
        let name = c.name().to_string();
        if skip.contains(&name.as_str()) || name.starts_with("proba_") || name == "prediction" {
            continue;
        }
        let dt = c.dtype().clone();
        if dt.is_primitive_numeric() {
            let in_order = crate::monitor::finite_floats(c)?;
            // A deterministic sample of the train rows, in their order, for
            // the sample-based drift statistics (KS, Wasserstein).
            let step = in_order.len().div_ceil(REFERENCE_SAMPLE).max(1);
            let sample: Vec<f64> = in_order.iter().step_by(step).copied().collect();
            let mut v = in_order;
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                continue;
            }
            let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            let deciles: Vec<f64> = (0..=10).map(|i| q(i as f64 / 10.0)).collect();
            // The bins binned statistics (PSI, JS) use, with the train
            // rows' exact counts in them.
            let edges = mlp_ml::drift::decile_edges(&deciles);
            let bin_counts = mlp_ml::drift::bin_counts(&edges, v.iter().copied());
            out.insert(
                name,
                json!({
                    "kind": "numeric",
                    "count": v.len(),
                    "nulls": c.null_count(),
                    "mean": mean,
                    "std": std,
                    "deciles": deciles,
                    "edges": edges,
                    "bin_counts": bin_counts,
                    "sample": sample,
                }),
            );
        } else if matches!(dt, DataType::String | DataType::Boolean) {
            let s = c.cast(&DataType::String).map_err(ExecError::polars)?;
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            for v in s.str().map_err(ExecError::polars)?.iter().flatten() {
                *counts.entry(v.to_string()).or_default() += 1;
            }
            out.insert(
                name,
                json!({"kind": "categorical", "nulls": c.null_count(), "counts": counts}),
            );
        }
    }
    Ok(serde_json::Value::Object(out))
}

pub fn run(op: &DeployOp, cx: &Context) -> Result<Output, ExecError> {
    let model_id = format!("model.{}", op.model);
    let model: ModelFile = serde_json::from_value(read_json(cx, &model_id, "model.json")?)
        .map_err(|e| ExecError::Internal(e.to_string()))?;
    let mut stages = vec![];
    let mut params = BTreeMap::new();
    let mut over = BTreeMap::new();
    for id in &op.serving_stages {
        let st = cx
            .plan
            .stage(id)
            .ok_or_else(|| ExecError::Internal(format!("no stage `{id}`")))?;
        match &st.op {
            Op::Transform(_) => {
                let p = read_json(cx, id, "params.json")?;
                let steps: Vec<Fitted> = serde_json::from_value(p["steps"].clone())
                    .map_err(|e| ExecError::Internal(e.to_string()))?;
                params.insert(id.clone(), steps);
            }
            Op::Features(f) => {
                let mut tables = BTreeMap::new();
                let fallbacks = read_json(cx, id, "over.json").unwrap_or(json!({}));
                for feat in &f.features {
                    if let PExpr::Over { keys, .. } = &feat.expr {
                        let path = entry_file(cx, id, &format!("over_{}.arrow", feat.name))?;
                        let file = std::fs::File::open(&path)
                            .map_err(|e| ExecError::Internal(e.to_string()))?;
                        let table = IpcReader::new(file).finish().map_err(ExecError::polars)?;
                        let t = OverTable {
                            table,
                            fallback: fallbacks[&feat.name].as_f64().unwrap_or(0.0),
                        };
                        tables.insert(feat.name.clone(), OverJson::from_table(keys, &t)?);
                    }
                }
                over.insert(id.clone(), tables);
            }
            _ => {}
        }
        stages.push(st.clone());
    }
    // The stages that build the lookup state (read again, on the latest
    // data, when the bundle is loaded to predict).
    let mut lookup_stages = vec![];
    for id in &op.lookup_stages {
        let st = cx
            .plan
            .stage(id)
            .ok_or_else(|| ExecError::Internal(format!("no stage `{id}`")))?;
        let mut st = st.clone();
        st.origin = Default::default();
        lookup_stages.push(st);
    }
    // The plugins the serving stages call travel in the bundle.
    // The serving stages ran with these bytes in this run (or a cached
    // one keyed by them): they only need reading, not compiling.
    let mut plugins: Vec<crate::bundle::BundledPlugin> = vec![];
    for d in &cx.plan.plugins {
        if stages
            .iter()
            .chain(&lookup_stages)
            .any(|s: &Stage| s.plugins.contains(&d.name))
        {
            let bytes = crate::plugins::read_module(cx.root, d).map_err(ExecError::Plugin)?;
            plugins.push(crate::bundle::BundledPlugin::new(
                &d.name,
                &bytes,
                crate::plugins::Limits::from(d),
            ));
        }
    }
    let mut evaluations = vec![];
    for e in &op.gated_by {
        evaluations.push(read_json(cx, e, "report.json")?);
    }
    let frame = super::input(cx)?;
    let part = cx
        .stage
        .partition_column
        .clone()
        .unwrap_or_else(|| mlp_compiler::plan::names::PARTITION.into());
    let stats = training_stats(&frame, &part, &[part.as_str(), model.target.as_str()])?;
    // Everything below is a function of the deploy stage's key: the files
    // the serving sources read (their hashes are in the source keys), and
    // the definitions of the serving stages and of this one.
    let data: BTreeMap<String, String> = op
        .serving_stages
        .iter()
        .filter_map(|id| cx.data_hashes.get(id))
        .flat_map(|files| files.iter().map(|(p, h)| (p.clone(), h.clone())))
        .collect();
    let mut definitions = cx.stage.definition_hash.clone();
    for st in stages.iter().chain(&lookup_stages) {
        definitions.push_str(&st.definition_hash);
    }
    // Where a stage was written is not part of its key (a comment above it
    // moves it), so the bundle does not carry it.
    for st in &mut stages {
        st.origin = Default::default();
    }
    let bundle = Bundle {
        format: BUNDLE_FORMAT,
        plan_version: mlp_compiler::plan::PLAN_VERSION,
        name: op.name.clone(),
        model_name: op.model.clone(),
        engine: crate::run::engine_id().to_string(),
        stages,
        params,
        over,
        model,
        evaluations,
        training_stats: stats,
        plugins,
        monitor: op.monitor.clone(),
        request_columns: op.request_columns.clone(),
        lookup_stages,
        request_time: op.request_time.clone(),
        lineage: json!({
            "plan": mlp_store::fingerprint::sha256_hex(definitions.as_bytes()),
            "stage_keys": op.serving_stages.iter().map(|s| (s.clone(), cx.keys.get(s).cloned())).collect::<BTreeMap<_, _>>(),
            "data": data,
        }),
    };
    let bytes =
        serde_json::to_vec_pretty(&bundle).map_err(|e| ExecError::Internal(e.to_string()))?;
    let registry = Registry::open(&cx.store.root);
    let version = registry
        .register(&op.name, &bytes, op.alias.as_deref())
        .map_err(|e| ExecError::Internal(e.to_string()))?;
    let mut out = Output::default();
    out.notes.push(format!(
        "registered \"{}\" version {}{}",
        op.name,
        &version[..12],
        op.alias
            .as_ref()
            .map(|a| format!(" as @{a}"))
            .unwrap_or_default()
    ));
    out.json.push((
        "deploy".into(),
        json!({"name": op.name, "version": version, "alias": op.alias}),
    ));
    Ok(out)
}
