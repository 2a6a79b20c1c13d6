//! What the server reports about itself: the request schema, OpenAPI, Prometheus metrics and the monitor answer.

use super::*;

pub(crate) fn schema_json(loaded: &Loaded) -> Value {
    let cols: Vec<Value> = loaded
        .predictor
        .request_columns
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
        "target": loaded.predictor.bundle.model.target,
        "task": if loaded.predictor.bundle.model.classes.is_empty() { "regression" } else { "classification" },
        "classes": loaded.predictor.bundle.model.classes,
        // Where each class's probability is: the key in `probabilities`
        // here, the column `mlp predict` writes.
        "probability_columns": loaded
            .predictor
            .bundle
            .model
            .classes
            .iter()
            .zip(&loaded.predictor.probability_columns)
            .map(|(c, column)| json!({"class": c, "column": column}))
            .collect::<Vec<_>>(),
        "columns": cols,
    })
}

pub(crate) fn openapi(loaded: &Loaded) -> Value {
    let mut props = Map::new();
    let mut required = vec![];
    for c in &loaded.predictor.request_columns {
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
    let prediction = if loaded.predictor.bundle.model.classes.is_empty() {
        json!({"type": "number"})
    } else {
        json!({"type": "string", "enum": loaded.predictor.bundle.model.classes})
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

pub(crate) fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// How long a window's drift report is reused: scrapes more often than
/// this cost no more than one computation per interval, so they cannot
/// slow the predictions down.
pub(crate) const WINDOW_REPORT_TTL: Duration = Duration::from_secs(1);

/// A computed window report, with when and for which version.
pub(crate) type CachedReport = (
    Instant,
    String,
    Vec<mlp_engine::monitor::ColumnReport>,
    usize,
);

pub(crate) fn window_report(
    state: &AppState,
) -> (Arc<Loaded>, Vec<mlp_engine::monitor::ColumnReport>, usize) {
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

pub(crate) fn compute_window_report(
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
        .and_then(|f| mlp_engine::monitor::drift_report(&loaded.predictor.bundle, &f).ok())
        .unwrap_or_default();
    // A handful of rows drifts by chance: thresholds apply from
    // MIN_WINDOW_ROWS on (the statistics are reported regardless).
    mlp_engine::monitor::hold_below_minimum(&mut drift, &mut [], rows);
    (loaded, drift, rows)
}

pub(crate) fn metrics_text(state: &AppState) -> String {
    let (loaded, drift, window_rows) = window_report(state);
    let fault = state.fault.lock().ok().and_then(|f| f.clone()).is_some();
    let Ok(m) = state.metrics.lock() else {
        return String::new();
    };
    let mut out = String::new();
    out.push_str("# HELP mlp_registry_fault 1 while the registry cannot be followed (the version served is kept).\n# TYPE mlp_registry_fault gauge\n");
    out.push_str(&format!("mlp_registry_fault {}\n", u8::from(fault)));
    let lookup_fault = state
        .lookup_fault
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .is_some();
    out.push_str("# HELP mlp_lookup_fault 1 while the lookup state cannot be rebuilt from its tables (the state read before is kept).\n# TYPE mlp_lookup_fault gauge\n");
    out.push_str(&format!("mlp_lookup_fault {}\n", u8::from(lookup_fault)));
    out.push_str("# HELP mlp_model_info The model being served.\n# TYPE mlp_model_info gauge\n");
    out.push_str(&format!(
        "mlp_model_info{{model=\"{}\",version=\"{}\"}} 1\n",
        escape_label(&loaded.name),
        escape_label(&loaded.version)
    ));
    let tables = loaded.predictor.lookup_tables();
    if !tables.is_empty() {
        out.push_str("# HELP mlp_lookup_rows Rows of each table serving looks up (a join's right side, a history's events).\n# TYPE mlp_lookup_rows gauge\n");
        for t in &tables {
            out.push_str(&format!(
                "mlp_lookup_rows{{table=\"{}\"}} {}\n",
                escape_label(&t.name),
                t.rows
            ));
        }
        out.push_str("# HELP mlp_lookup_age_seconds Seconds since each looked-up table was read.\n# TYPE mlp_lookup_age_seconds gauge\n");
        for t in &tables {
            out.push_str(&format!(
                "mlp_lookup_age_seconds{{table=\"{}\"}} {:.3}\n",
                escape_label(&t.name),
                t.age_seconds
            ));
        }
    }
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

pub(crate) fn monitor_json(state: &AppState) -> Value {
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
        monitor: loaded.predictor.bundle.monitor.clone(),
        rules: vec![],
        breached: false,
    };
    drop(m);
    report.judge();
    serde_json::to_value(&report).unwrap_or_else(|_| json!({}))
}
