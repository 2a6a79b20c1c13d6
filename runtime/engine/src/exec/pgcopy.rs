//! Decoding PostgreSQL's binary COPY format (`exec/postgres.rs` fetches it)
//! straight into the declared columns. The fetch casts every value to one
//! wire type per declared type: `int8`, `float8`, `bool`, `text`, `date`,
//! `timestamp`.

use super::rows::{self, Values};
use super::ExecError;
use mlp_compiler::plan::SourceOp;
use mlp_compiler::types::Type;
use polars::prelude::*;
use std::path::Path;

/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i64 = 10_957;
const EPOCH_US: i64 = 946_684_800_000_000;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Decodes one value in its wire type; `Err` with what it holds when it is
/// not a value of the declared type (a NaN, an infinite date, a level not
/// declared).
fn push(values: &mut Values, b: &[u8], ty: &Type) -> Result<(), String> {
    let eight = |b: &[u8]| -> Result<[u8; 8], String> {
        b.try_into().map_err(|_| format!("{} bytes", b.len()))
    };
    match values {
        Values::Int(v) => v.push(Some(i64::from_be_bytes(eight(b)?))),
        Values::Float(v) => {
            let f = f64::from_be_bytes(eight(b)?);
            if !f.is_finite() {
                return Err(f.to_string());
            }
            v.push(Some(f));
        }
        Values::Bool(v) => v.push(Some(b.first().is_some_and(|x| *x != 0))),
        Values::Text(v) => {
            let t = std::str::from_utf8(b).map_err(|_| "text that is not UTF-8".to_string())?;
            if !rows::level_ok(t, ty) {
                return Err(format!("\"{}\"", super::truncate(t, 80)));
            }
            v.append_value(t);
        }
        Values::Date(v) => {
            let d: [u8; 4] = b.try_into().map_err(|_| format!("{} bytes", b.len()))?;
            let d = i32::from_be_bytes(d);
            if d == i32::MAX || d == i32::MIN {
                return Err("an infinite date".into());
            }
            v.push(Some((d as i64 + EPOCH_DAYS) as i32));
        }
        Values::Datetime(v) => {
            let t = i64::from_be_bytes(eight(b)?);
            if t == i64::MAX || t == i64::MIN {
                return Err("an infinite timestamp".into());
            }
            v.push(Some(t + EPOCH_US));
        }
    }
    Ok(())
}

/// The next `n` bytes of a stream, into a buffer reused for every field.
struct Fields<'a, R> {
    input: &'a mut R,
    buf: Vec<u8>,
}

impl<R: std::io::Read> Fields<'_, R> {
    fn take(&mut self, n: usize) -> std::io::Result<&[u8]> {
        self.buf.resize(n, 0);
        self.input.read_exact(&mut self.buf)?;
        Ok(&self.buf)
    }
}

/// Decodes a fetched file into the declared columns, holding each value to
/// its column: a null where none is declared, a level not declared or a NaN
/// stops the read naming the row and column (or, when `lenient`, sets the
/// row aside with why, as for a CSV file).
pub fn read(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
) -> Result<DataFrame, ExecError> {
    // Streamed: the file is not held in memory beside the frame.
    let file = std::fs::File::open(path).map_err(|e| ExecError::Read {
        file: shown.to_string(),
        reason: e.to_string(),
    })?;
    let mut input = std::io::BufReader::with_capacity(1 << 20, file);
    let damaged = |why: &str| ExecError::Read {
        file: shown.to_string(),
        reason: format!("the fetched rows are damaged ({why}); run again to fetch them anew"),
    };
    let mut reader = Fields {
        input: &mut input,
        buf: vec![],
    };
    macro_rules! take {
        ($n:expr) => {
            reader.take($n).map_err(|_| damaged("cut short"))?
        };
    }
    let int = |b: &[u8]| -> i64 {
        match b.len() {
            2 => i16::from_be_bytes([b[0], b[1]]) as i64,
            _ => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64,
        }
    };
    if take!(SIGNATURE.len()) != SIGNATURE {
        return Err(damaged("no COPY signature"));
    }
    take!(4);
    let ext = int(take!(4));
    take!(ext.max(0) as usize);
    let mut values: Vec<Values> = op.columns.iter().map(|c| Values::new(&c.ty)).collect();
    let mut problems: rows::Problems = vec![];
    let mut row = 0usize;
    loop {
        let count = int(take!(2));
        if count == -1 {
            break;
        }
        if count as usize != op.columns.len() {
            return Err(damaged("a row of another width"));
        }
        row += 1;
        let mut problem: Option<(String, &'static str)> = None;
        for (i, c) in op.columns.iter().enumerate() {
            let len = int(take!(4));
            let raw = c.raw_name.clone().unwrap_or_else(|| c.name.clone());
            if len < 0 {
                values[i].push_null();
                if !c.nullable {
                    if !lenient {
                        return Err(ExecError::UnexpectedNull {
                            file: shown.to_string(),
                            row,
                            column: raw,
                        });
                    }
                    problem.get_or_insert((
                        format!("column `{raw}`: null in a column declared without `?`"),
                        "null_value",
                    ));
                }
                continue;
            }
            let field = take!(len as usize);
            let Err(found) = push(&mut values[i], field, &c.ty) else {
                continue;
            };
            values[i].push_null();
            let levels = c.ty.levels().filter(|l| !l.is_empty());
            if !lenient {
                return Err(match levels {
                    Some(levels) => {
                        let found = found.trim_matches('"').to_string();
                        ExecError::UnknownLevel {
                            file: shown.to_string(),
                            row,
                            column: raw,
                            nearest: super::source::nearest_level(&found, levels).to_string(),
                            found,
                            levels: levels.into(),
                        }
                    }
                    None => ExecError::BadValue {
                        file: shown.to_string(),
                        row,
                        column: raw,
                        found,
                        expected: c.ty.to_string(),
                    },
                });
            }
            problem.get_or_insert(match levels {
                Some(_) => (
                    format!("column `{raw}`: {found} is not one of the declared levels"),
                    "unknown_level",
                ),
                None => (
                    format!("column `{raw}`: {found} is not a valid {}", c.ty),
                    "bad_value",
                ),
            });
        }
        if lenient {
            problems.push(problem.map(|(m, k)| (format!("{shown}, row {row}: {m}"), k)));
        }
    }
    rows::frame(op, values, lenient.then_some(problems))
}
