//! Request bodies to frames: JSON records or columns, MLflow's formats, CSV; each value checked against the request schema.

use super::*;

/// How the request's rows arrived.
pub(crate) enum Rows {
    Records(Vec<Value>),
    Columns(Map<String, Value>),
    /// MLflow's `dataframe_split`: column names and rows of values.
    Split(Vec<String>, Vec<Value>),
}

pub(crate) fn parse_body(body: &[u8], mlflow: bool) -> Result<Rows, ApiError> {
    // A byte-order mark, as some clients write one (RFC 8259 lets a
    // reader ignore it), is not part of the JSON.
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
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
pub(crate) fn column_values<'a>(
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

pub(crate) fn row_count(rows: &Rows) -> Result<usize, ApiError> {
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
        Rows::Split(names, d) => {
            if let Some(i) = d.iter().position(|v| !v.is_array()) {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!("`dataframe_split.data` row {} is not a list", i + 1),
                )
                .with("row", i + 1));
            }
            // A row of another length than `columns` cannot be matched to
            // them (a short row is not a row of nulls at its end).
            if let Some((i, len)) = d
                .iter()
                .filter_map(Value::as_array)
                .map(Vec::len)
                .enumerate()
                .find(|(_, len)| *len != names.len())
            {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_shape",
                    format!(
                        "`dataframe_split.data` row {} has {len} values where `columns` names {}; give every row one value per column (null for a missing one)",
                        i + 1,
                        names.len()
                    ),
                )
                .with("row", i + 1));
            }
            Ok(d.len())
        }
    }
}

pub(crate) fn type_word(t: &Type) -> String {
    match t {
        Type::Date { format } | Type::Datetime { format } => {
            format!("{t} as a string in the format \"{format}\"")
        }
        Type::Category { levels: Some(l) } => format!("category (one of {})", l.join(", ")),
        other => other.to_string(),
    }
}

pub(crate) fn shown(v: &Value) -> String {
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
pub(crate) fn convert_column<'a, T>(
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
pub(crate) fn request_frame(loaded: &Loaded, rows: &Rows) -> Result<DataFrame, ApiError> {
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
    for c in &loaded.predictor.request_columns {
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

/// How a request body is written, from its `Content-Type`.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum BodyKind {
    Json,
    Csv,
}

/// JSON when the type says so, or says nothing useful (no header, `*/*`,
/// curl's default form type); CSV for `text/csv` (MLflow's scoring
/// protocol); anything else is refused with the types accepted.
pub(crate) fn body_kind(headers: &axum::http::HeaderMap) -> Result<BodyKind, ApiError> {
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
pub(crate) fn csv_rows(body: &[u8], columns: &[SourceColumn]) -> Result<Rows, ApiError> {
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
