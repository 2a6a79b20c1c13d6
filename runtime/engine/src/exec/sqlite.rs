//! `sqlite("file.db", table = "..." | query = "...")`: a table or a query's
//! result of a SQLite database file, held to the declared columns as a CSV
//! file is. SQLite is dynamically typed, so every value is checked: a value
//! that cannot be read as its column's declared type stops the run naming
//! the database, the table (or query), the row, the column and both types,
//! or is set aside with its row under a quarantining check. The file is
//! opened read-only; its bytes are the stage's key, as for any file.

use super::rows::{self, ident, Push, Values};
use super::ExecError;
use mlp_compiler::plan::{Literal, SourceColumn, SourceOp};
use mlp_compiler::types::Type;
use polars::prelude::*;
use rusqlite::types::ValueRef;
use std::path::Path;

fn option<'a>(op: &'a SourceOp, key: &str) -> Option<&'a str> {
    match op.options.get(key) {
        Some(Literal::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// How a value of SQLite's storage classes reads.
fn storage(v: &ValueRef) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

fn shown_value(v: &ValueRef) -> String {
    match v {
        ValueRef::Null => "null".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => format!("\"{}\"", super::truncate(&String::from_utf8_lossy(t), 80)),
        ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

/// Reads one value as the declared type; `Err` when it cannot be.
fn push(values: &mut Values, v: &ValueRef, ty: &Type) -> Result<(), ()> {
    let text = |v: &ValueRef| match v {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().map(str::to_string),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        _ => None,
    };
    fn utf8(t: &[u8]) -> Option<&str> {
        std::str::from_utf8(t).ok().map(str::trim)
    }
    match (values, v) {
        (Values::Int(out), ValueRef::Integer(i)) => out.push(Some(*i)),
        (Values::Int(out), ValueRef::Real(f)) if f.is_finite() && f.fract() == 0.0 => {
            out.push(Some(*f as i64))
        }
        (Values::Int(out), ValueRef::Text(t)) => {
            out.push(Some(utf8(t).and_then(|t| t.parse().ok()).ok_or(())?))
        }
        (Values::Float(out), ValueRef::Integer(i)) => out.push(Some(*i as f64)),
        (Values::Float(out), ValueRef::Real(f)) if f.is_finite() => out.push(Some(*f)),
        (Values::Float(out), ValueRef::Text(t)) => {
            let f = utf8(t)
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|f| f.is_finite());
            out.push(Some(f.ok_or(())?));
        }
        (Values::Bool(out), ValueRef::Integer(i)) if *i == 0 || *i == 1 => out.push(Some(*i == 1)),
        (Values::Bool(out), ValueRef::Text(t)) => {
            let b = match utf8(t).map(str::to_ascii_lowercase).as_deref() {
                Some("true" | "t" | "1") => true,
                Some("false" | "f" | "0") => false,
                _ => return Err(()),
            };
            out.push(Some(b));
        }
        (Values::Text(out), v) => {
            let t = text(v).ok_or(())?;
            if !rows::level_ok(&t, ty) {
                return Err(());
            }
            out.append_value(&t);
        }
        (Values::Date(out), ValueRef::Text(t)) => {
            let Type::Date { format } = ty else {
                return Err(());
            };
            let d = utf8(t)
                .and_then(|t| chrono::NaiveDate::parse_from_str(t, format).ok())
                .ok_or(())?;
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).ok_or(())?;
            out.push(Some((d - epoch).num_days() as i32));
        }
        (Values::Datetime(out), ValueRef::Text(t)) => {
            let Type::Datetime { format } = ty else {
                return Err(());
            };
            let d = utf8(t)
                .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, format).ok())
                .ok_or(())?;
            out.push(Some(d.and_utc().timestamp_micros()));
        }
        _ => return Err(()),
    }
    Ok(())
}

/// What a declared type expects, for messages.
fn expected(c: &SourceColumn) -> String {
    match &c.ty {
        Type::Date { format } | Type::Datetime { format } => {
            format!("{} (TEXT in the format \"{format}\")", c.ty)
        }
        Type::Int => "int (an INTEGER, or TEXT of one)".into(),
        Type::Float => "float (a finite INTEGER or REAL, or TEXT of one)".into(),
        Type::Bool => "bool (0 or 1, or TEXT true/false)".into(),
        t => t.to_string(),
    }
}

/// Reads the declared columns of the source's table or query.
pub fn read(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
) -> Result<DataFrame, ExecError> {
    let read_error = |reason: String| ExecError::Read {
        file: shown.to_string(),
        reason,
    };
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| read_error(format!("not a SQLite database it can open: {e}")))?;
    let (from, place) = match (option(op, "table"), option(op, "query")) {
        (Some(t), _) => (ident(t), format!("{shown}, table `{t}`")),
        (None, Some(q)) => (
            format!("({})", q.trim().trim_end_matches(';')),
            format!("{shown}, query"),
        ),
        (None, None) => {
            return Err(ExecError::Internal(
                "a sqlite source without a table or a query".into(),
            ))
        }
    };
    let raw = |c: &SourceColumn| c.raw_name.clone().unwrap_or_else(|| c.name.clone());
    // Every declared column must be there.
    let available: Vec<String> = conn
        .prepare(&format!("SELECT * FROM {from} LIMIT 0"))
        .map_err(|e| ExecError::Read {
            file: place.clone(),
            reason: e.to_string(),
        })?
        .column_names()
        .map(str::to_string)
        .collect();
    for c in &op.columns {
        if !available.contains(&raw(c)) {
            return Err(ExecError::MissingColumn {
                file: place.clone(),
                column: raw(c),
                available,
            });
        }
    }
    let list: Vec<String> = op.columns.iter().map(|c| ident(&raw(c))).collect();
    let mut stmt = conn
        .prepare(&format!("SELECT {} FROM {from}", list.join(", ")))
        .map_err(|e| ExecError::Read {
            file: place.clone(),
            reason: e.to_string(),
        })?;
    let mut values: Vec<Values> = op.columns.iter().map(|c| Values::new(&c.ty)).collect();
    let mut problems: rows::Problems = vec![];
    let mut rows = stmt.query([]).map_err(|e| ExecError::Read {
        file: place.clone(),
        reason: e.to_string(),
    })?;
    let mut row_no = 0usize;
    while let Some(row) = rows.next().map_err(|e| ExecError::Read {
        file: place.clone(),
        reason: e.to_string(),
    })? {
        row_no += 1;
        let mut problem: Option<(String, &'static str)> = None;
        for (i, c) in op.columns.iter().enumerate() {
            let v = row.get_ref(i).map_err(|e| ExecError::Read {
                file: place.clone(),
                reason: e.to_string(),
            })?;
            if matches!(v, ValueRef::Null) {
                values[i].push_null();
                if !c.nullable {
                    if !lenient {
                        return Err(ExecError::UnexpectedNull {
                            file: place.clone(),
                            row: row_no,
                            column: raw(c),
                        });
                    }
                    problem.get_or_insert((
                        format!("column `{}`: null in a column declared without `?`", raw(c)),
                        "null_value",
                    ));
                }
                continue;
            }
            if push(&mut values[i], &v, &c.ty).is_ok() {
                continue;
            }
            values[i].push_null();
            let found = format!("{} {}", storage(&v), shown_value(&v));
            if lenient {
                let kind = if c.ty.levels().is_some() {
                    "unknown_level"
                } else {
                    "bad_value"
                };
                problem.get_or_insert((
                    format!(
                        "column `{}`: {found} is not a valid {}",
                        raw(c),
                        expected(c)
                    ),
                    kind,
                ));
                continue;
            }
            if let (Some(levels), ValueRef::Text(t)) = (c.ty.levels(), &v) {
                let found = String::from_utf8_lossy(t).to_string();
                return Err(ExecError::UnknownLevel {
                    file: place.clone(),
                    row: row_no,
                    column: raw(c),
                    nearest: super::source::nearest_level(&found, levels).to_string(),
                    found,
                    levels: levels.into(),
                });
            }
            return Err(ExecError::BadValue {
                file: place.clone(),
                row: row_no,
                column: raw(c),
                found,
                expected: expected(c),
            });
        }
        problems.push(problem.map(|(m, k)| (format!("{place}, row {row_no}: {m}"), k)));
    }
    rows::frame(op, values, lenient.then_some(problems))
}
