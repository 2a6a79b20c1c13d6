//! Predictions: requests gathered by workers into batches, predicted through the bundle, answered row by row.

use super::*;

/// Predictions (and probabilities) of the predicted frame.
pub(crate) fn predictions(
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
    let classes = &loaded.predictor.bundle.model.classes;
    if classes.is_empty() {
        return Ok((preds, None));
    }
    let mut cols = vec![];
    for name in &loaded.predictor.probability_columns {
        let s = good
            .column(name)
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
pub(crate) struct Answer {
    pub(crate) good: DataFrame,
    pub(crate) rejected: DataFrame,
}

/// One request waiting for a prediction worker.
pub(crate) struct Job {
    pub(crate) loaded: Arc<Loaded>,
    pub(crate) frame: DataFrame,
    pub(crate) reply: tokio::sync::oneshot::Sender<Result<Answer, ApiError>>,
}

/// The most rows the workers gather into one call.
pub(crate) const MAX_BATCH_ROWS: usize = 4096;

pub(crate) fn exec_error(e: ExecError) -> ApiError {
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
pub(crate) fn row_spans(jobs: &[Job]) -> Vec<(usize, usize)> {
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
pub(crate) fn split_by_row(
    df: &DataFrame,
    spans: &[(usize, usize)],
    renumber: bool,
) -> Result<Vec<DataFrame>, ApiError> {
    let internal = |e: PolarsError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let rows: Vec<usize> = df
        .column(mlp_compiler::plan::names::ROW)
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
            .column(mlp_compiler::plan::names::ROW)
            .and_then(|c| c.cast(&DataType::UInt64))
            .map_err(internal)?
            .u64()
            .map_err(internal)?
            .apply_values(|r| r - *start as u64);
        part.with_column(
            renumbered
                .into_series()
                .with_name(mlp_compiler::plan::names::ROW.into())
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
pub(crate) fn predict_group(state: &AppState, jobs: Vec<Job>) {
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
        .and_then(|df| loaded.predictor.predict_frame(df));
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
pub(crate) fn worker(state: Arc<AppState>, queue: Arc<Mutex<std::sync::mpsc::Receiver<Job>>>) {
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
pub(crate) async fn predict(
    state: &AppState,
    body: &[u8],
    kind: BodyKind,
    mlflow: bool,
) -> Result<Value, ApiError> {
    let loaded = state.loaded();
    let rows = match kind {
        BodyKind::Json => parse_body(body, mlflow)?,
        BodyKind::Csv => csv_rows(body, &loaded.predictor.request_columns)?,
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
                    "row": r[mlp_compiler::plan::names::ROW],
                    "kind": r[bundle::REJECTED_KIND],
                    "rules": r[mlp_compiler::plan::names::FAILED_RULES],
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

pub(crate) async fn handle_predict(
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
