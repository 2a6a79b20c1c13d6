//! `read_sample: Path -> infer::Sample`: the first rows of a CSV or NDJSON
//! file, for `mlp infer`.

use mlp_compiler::infer::{Cell, Sample, SampleColumn, NULL_MARKERS};
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot read `{path}`: {reason}")]
    Io { path: String, reason: String },
    #[error("`{path}` line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("unsupported file type `{0}`")]
    Format(String),
    #[error("`{0}` has no rows")]
    Empty(String),
    #[error("{0}")]
    NotUtf8(Box<crate::exec::ExecError>),
}

impl SampleError {
    pub fn help(&self) -> Option<String> {
        match self {
            SampleError::Format(_) => {
                Some("`mlp infer` reads .csv, .tsv, .json/.ndjson/.jsonl and .parquet files".into())
            }
            SampleError::NotUtf8(e) => e.help(),
            _ => None,
        }
    }
}

/// The format keyword for a file, from its extension.
pub fn format_of(path: &Path) -> Option<&'static str> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("csv") | Some("tsv") | Some("txt") => Some("csv"),
        Some("json") | Some("ndjson") | Some("jsonl") => Some("json"),
        Some("parquet") | Some("pq") => Some("parquet"),
        _ => None,
    }
}

/// Whether a file is a SQLite database (by its extension).
pub fn is_sqlite(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "db" | "sqlite" | "sqlite3"))
}

/// Reads up to `max_rows` rows of a SQLite table. Without a table (or with
/// one the database lacks), the error names the tables it has.
pub fn read_sqlite_sample(
    path: &Path,
    table: Option<&str>,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    use rusqlite::types::ValueRef;
    let shown = path.display().to_string();
    let fail = |reason: String| SampleError::Io {
        path: shown.clone(),
        reason,
    };
    mlp_store::fingerprint::regular(path).map_err(|e| fail(e.to_string()))?;
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| fail(format!("not a SQLite database it can open: {e}")))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .map_err(|e| fail(format!("not a SQLite database it can read: {e}")))?;
    let table = match table {
        Some(t) if tables.iter().any(|n| n == t) => t,
        other => {
            return Err(fail(format!(
                "{}; name one with --table (tables: {})",
                match other {
                    Some(t) => format!("no table `{t}`"),
                    None => "a database holds tables".into(),
                },
                if tables.is_empty() {
                    "none".to_string()
                } else {
                    tables.join(", ")
                }
            )))
        }
    };
    let mut stmt = conn
        .prepare(&format!(
            "SELECT * FROM \"{}\" LIMIT {}",
            table.replace('"', "\"\""),
            max_rows + 1
        ))
        .map_err(|e| fail(e.to_string()))?;
    let mut columns: Vec<SampleColumn> = stmt
        .column_names()
        .map(|n| SampleColumn {
            name: n.to_string(),
            cells: vec![],
        })
        .collect();
    let mut rows = stmt.query([]).map_err(|e| fail(e.to_string()))?;
    let mut n = 0;
    let mut complete = true;
    while let Some(row) = rows.next().map_err(|e| fail(e.to_string()))? {
        if n == max_rows {
            complete = false;
            break;
        }
        n += 1;
        for (i, c) in columns.iter_mut().enumerate() {
            c.cells
                .push(match row.get_ref(i).map_err(|e| fail(e.to_string()))? {
                    ValueRef::Null => Cell::Null,
                    ValueRef::Integer(v) => Cell::Int(v),
                    ValueRef::Real(v) => Cell::Float(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Cell::Text(String::from_utf8_lossy(t).to_string())
                    }
                });
        }
    }
    if n == 0 {
        return Err(SampleError::Empty(format!("{shown}, table `{table}`")));
    }
    Ok(Sample {
        columns,
        rows: n,
        null_markers: vec![],
        complete,
    })
}

/// Reads up to `max_rows` rows of a PostgreSQL table at `url` (an address
/// the caller took from the environment). Errors are scrubbed of it.
pub fn read_postgres_sample(
    url: &str,
    table: &str,
    max_rows: usize,
) -> Result<Sample, SampleError> {
    use postgres::types::Type as T;
    let shown = format!("postgres table `{table}`");
    let pg_fail = |e: postgres::Error| SampleError::Io {
        path: shown.clone(),
        reason: crate::exec::postgres::reason(&e, url),
    };
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(pg_fail)?;
    let quoted = crate::exec::postgres::table_name(table);
    let stmt = client
        .prepare(&format!("SELECT * FROM {quoted} LIMIT 0"))
        .map_err(pg_fail)?;
    let mut select = vec![];
    let mut kinds = vec![];
    for c in stmt.columns() {
        let col = crate::exec::rows::ident(c.name());
        let t = c.type_();
        let (expr, kind) = if [T::INT2, T::INT4, T::INT8].contains(t) {
            (format!("{col}::int8"), 'i')
        } else if [T::FLOAT4, T::FLOAT8, T::NUMERIC].contains(t) {
            (format!("{col}::float8"), 'f')
        } else if *t == T::BOOL {
            (col, 'b')
        } else if *t == T::DATE {
            (format!("to_char({col}, 'YYYY-MM-DD')"), 't')
        } else if *t == T::TIMESTAMP {
            (format!("to_char({col}, 'YYYY-MM-DD\"T\"HH24:MI:SS')"), 't')
        } else if *t == T::TIMESTAMPTZ {
            (
                format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS')"),
                't',
            )
        } else {
            (format!("{col}::text"), 't')
        };
        select.push(expr);
        kinds.push(kind);
    }
    let rows = client
        .query(
            &format!(
                "SELECT {} FROM {quoted} LIMIT {}",
                select.join(", "),
                max_rows + 1
            ),
            &[],
        )
        .map_err(pg_fail)?;
    let mut columns: Vec<SampleColumn> = stmt
        .columns()
        .iter()
        .map(|c| SampleColumn {
            name: c.name().to_string(),
            cells: vec![],
        })
        .collect();
    let complete = rows.len() <= max_rows;
    for row in rows.iter().take(max_rows) {
        for (i, c) in columns.iter_mut().enumerate() {
            let cell = match kinds[i] {
                'i' => row.get::<_, Option<i64>>(i).map(Cell::Int),
                'f' => row.get::<_, Option<f64>>(i).map(Cell::Float),
                'b' => row.get::<_, Option<bool>>(i).map(Cell::Bool),
                _ => row.get::<_, Option<String>>(i).map(Cell::Text),
            };
            c.cells.push(cell.unwrap_or(Cell::Null));
        }
    }
    let n = rows.len().min(max_rows);
    if n == 0 {
        return Err(SampleError::Empty(shown));
    }
    Ok(Sample {
        columns,
        rows: n,
        null_markers: vec![],
        complete,
    })
}

/// Reads up to `max_rows` rows. A text file that does not read because it
/// is not UTF-8 is named as such, with its first bad byte.
pub fn read_sample(path: &Path, max_rows: usize) -> Result<(Sample, &'static str), SampleError> {
    read_sample_of(path, max_rows).map_err(|e| match (&e, format_of(path)) {
        (SampleError::Parse { .. } | SampleError::Io { .. }, Some("csv" | "json")) => {
            crate::exec::source::not_utf8(path, &path.display().to_string())
                .map_or(e, |n| SampleError::NotUtf8(Box::new(n)))
        }
        _ => e,
    })
}

fn read_sample_of(path: &Path, max_rows: usize) -> Result<(Sample, &'static str), SampleError> {
    let shown = path.display().to_string();
    let format = format_of(path).ok_or_else(|| {
        SampleError::Format(
            path.extension()
                .map(|e| e.to_string_lossy().to_string())
                .unwrap_or_default(),
        )
    })?;
    let io = |e: std::io::Error| SampleError::Io {
        path: shown.clone(),
        reason: e.to_string(),
    };
    mlp_store::fingerprint::regular(path).map_err(io)?;
    let sample = match format {
        "csv" => {
            let delimiter = if path.extension().is_some_and(|e| e == "tsv") {
                b'\t'
            } else {
                b','
            };
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(delimiter)
                .flexible(false)
                .from_path(path)
                .map_err(|e| SampleError::Io {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            let headers = rdr
                .headers()
                .map_err(|e| SampleError::Parse {
                    path: shown.clone(),
                    line: 1,
                    reason: e.to_string(),
                })?
                .clone();
            let mut columns: Vec<SampleColumn> = headers
                .iter()
                .map(|h| SampleColumn {
                    name: h.to_string(),
                    cells: vec![],
                })
                .collect();
            let mut rows = 0;
            let mut null_markers: Vec<String> = vec![];
            let mut records = rdr.records();
            for (i, rec) in records.by_ref().take(max_rows).enumerate() {
                let rec = rec.map_err(|e| SampleError::Parse {
                    path: shown.clone(),
                    line: i + 2,
                    reason: e.to_string(),
                })?;
                for (c, v) in columns.iter_mut().zip(rec.iter()) {
                    c.cells.push(if v.is_empty() {
                        Cell::Null
                    } else if NULL_MARKERS.contains(&v) {
                        if !null_markers.iter().any(|m| m == v) {
                            null_markers.push(v.to_string());
                        }
                        Cell::Null
                    } else {
                        Cell::Text(v.to_string())
                    });
                }
                rows += 1;
            }
            Sample {
                columns,
                rows,
                null_markers,
                complete: records.next().is_none(),
            }
        }
        "json" => {
            let f = std::fs::File::open(path).map_err(io)?;
            let mut columns: Vec<SampleColumn> = vec![];
            let mut rows = 0;
            let mut complete = true;
            for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
                let line = line.map_err(io)?;
                let line = if i == 0 {
                    line.strip_prefix('\u{feff}').unwrap_or(&line).to_string()
                } else {
                    line
                };
                if line.trim().is_empty() {
                    continue;
                }
                if rows >= max_rows {
                    complete = false;
                    break;
                }
                let v: serde_json::Value =
                    serde_json::from_str(&line).map_err(|e| SampleError::Parse {
                        path: shown.clone(),
                        line: i + 1,
                        reason: e.to_string(),
                    })?;
                let serde_json::Value::Object(obj) = v else {
                    return Err(SampleError::Parse {
                        path: shown.clone(),
                        line: i + 1,
                        reason: "expected one JSON object per line".into(),
                    });
                };
                for (k, v) in &obj {
                    if !columns.iter().any(|c| &c.name == k) {
                        columns.push(SampleColumn {
                            name: k.clone(),
                            cells: vec![Cell::Null; rows],
                        });
                    }
                    let _ = v;
                }
                for c in columns.iter_mut() {
                    c.cells.push(match obj.get(&c.name) {
                        None | Some(serde_json::Value::Null) => Cell::Null,
                        Some(serde_json::Value::Bool(b)) => Cell::Bool(*b),
                        Some(serde_json::Value::Number(n)) => match n.as_i64() {
                            Some(i) => Cell::Int(i),
                            None => Cell::Float(n.as_f64().unwrap_or(f64::NAN)),
                        },
                        Some(serde_json::Value::String(s)) => Cell::Text(s.clone()),
                        Some(other) => Cell::Text(other.to_string()),
                    });
                }
                rows += 1;
            }
            Sample {
                columns,
                rows,
                null_markers: vec![],
                complete,
            }
        }
        "parquet" => read_parquet(path, &shown, max_rows)?,
        other => return Err(SampleError::Format(other.to_string())),
    };
    if sample.rows == 0 {
        return Err(SampleError::Empty(shown));
    }
    Ok((sample, format))
}

/// The first rows of a Parquet file as cells (dates as ISO text, so the
/// inference names their format).
fn read_parquet(path: &Path, shown: &str, max_rows: usize) -> Result<Sample, SampleError> {
    use polars::prelude::*;
    let err = |e: PolarsError| SampleError::Parse {
        path: shown.to_string(),
        line: 0,
        reason: e.to_string(),
    };
    let p = PlRefPath::try_from_path(path).map_err(err)?;
    let df = LazyFrame::scan_parquet(p, ScanArgsParquet::default())
        .map_err(err)?
        .limit(max_rows as IdxSize)
        .collect()
        .map_err(err)?;
    let mut columns = vec![];
    for c in df.columns() {
        let dt = c.dtype().clone();
        let mut cells = Vec::with_capacity(c.len());
        for i in 0..c.len() {
            let v = c.get(i).map_err(err)?;
            cells.push(match v {
                AnyValue::Null => Cell::Null,
                AnyValue::Boolean(b) => Cell::Bool(b),
                AnyValue::Int8(x) => Cell::Int(x as i64),
                AnyValue::Int16(x) => Cell::Int(x as i64),
                AnyValue::Int32(x) => Cell::Int(x as i64),
                AnyValue::Int64(x) => Cell::Int(x),
                AnyValue::UInt8(x) => Cell::Int(x as i64),
                AnyValue::UInt16(x) => Cell::Int(x as i64),
                AnyValue::UInt32(x) => Cell::Int(x as i64),
                AnyValue::UInt64(x) => Cell::Int(x as i64),
                AnyValue::Float32(x) => Cell::Float(x as f64),
                AnyValue::Float64(x) => Cell::Float(x),
                AnyValue::String(s) => Cell::Text(s.to_string()),
                AnyValue::StringOwned(s) => Cell::Text(s.to_string()),
                other => {
                    let text = other.to_string().trim_matches('"').replace(' ', "T");
                    // Datetimes print with fractional seconds; keep whole ones.
                    let text = match (&dt, text.find('.')) {
                        (DataType::Datetime(..), Some(dot)) => text[..dot].to_string(),
                        _ => text,
                    };
                    Cell::Text(text)
                }
            });
        }
        columns.push(SampleColumn {
            name: c.name().to_string(),
            cells,
        });
    }
    Ok(Sample {
        rows: df.height(),
        complete: df.height() < max_rows,
        columns,
        null_markers: vec![],
    })
}
