//! Columns built value by value, for the sources read row by row (SQLite,
//! PostgreSQL's binary COPY): one builder per declared type, and the frame
//! with a lenient read's problem columns (`_parse_error`, `_parse_kind`), as
//! a CSV file's lenient read has them.

use super::source::{PARSE_ERROR, PARSE_KIND};
use super::ExecError;
use mlp_compiler::plan::SourceOp;
use mlp_compiler::types::Type;
use polars::prelude::*;

/// One declared column's values as read.
pub enum Values {
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Text(StringChunkedBuilder),
    /// Days since 1970-01-01.
    Date(Vec<Option<i32>>),
    /// Microseconds since 1970-01-01.
    Datetime(Vec<Option<i64>>),
}

impl Values {
    pub fn new(ty: &Type) -> Values {
        match ty {
            Type::Int => Values::Int(vec![]),
            Type::Float => Values::Float(vec![]),
            Type::Bool => Values::Bool(vec![]),
            Type::Str | Type::Category { .. } => {
                Values::Text(StringChunkedBuilder::new(PlSmallStr::EMPTY, 1024))
            }
            Type::Date { .. } => Values::Date(vec![]),
            Type::Datetime { .. } => Values::Datetime(vec![]),
        }
    }

    pub fn push_null(&mut self) {
        match self {
            Values::Int(v) => v.push(None),
            Values::Float(v) => v.push(None),
            Values::Bool(v) => v.push(None),
            Values::Text(v) => v.append_null(),
            Values::Date(v) => v.push(None),
            Values::Datetime(v) => v.push(None),
        }
    }

    fn into_column(self, name: &str) -> Result<Column, ExecError> {
        let name: PlSmallStr = name.into();
        Ok(match self {
            Values::Int(v) => Column::new(name, v),
            Values::Float(v) => Column::new(name, v),
            Values::Bool(v) => Column::new(name, v),
            Values::Text(v) => v.finish().with_name(name).into_column(),
            Values::Date(v) => Column::new(name, v)
                .cast(&DataType::Date)
                .map_err(ExecError::polars)?,
            Values::Datetime(v) => Column::new(name, v)
                .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                .map_err(ExecError::polars)?,
        })
    }
}

/// `"name"` quoted as one SQL identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether `text` may be a value of `ty` (one of its declared levels, when
/// it declares them).
pub fn level_ok(text: &str, ty: &Type) -> bool {
    ty.levels()
        .filter(|l| !l.is_empty())
        .is_none_or(|levels| levels.iter().any(|l| l == text))
}

/// Per row of a lenient read: its first problem and that problem's kind.
pub type Problems = Vec<Option<(String, &'static str)>>;

/// The frame of the declared columns, with the problem columns when the
/// read was lenient (`problems` given).
pub fn frame(
    op: &SourceOp,
    values: Vec<Values>,
    problems: Option<Problems>,
) -> Result<DataFrame, ExecError> {
    let mut columns = vec![];
    for (c, v) in op.columns.iter().zip(values) {
        columns.push(v.into_column(&c.name)?);
    }
    if let Some(problems) = problems {
        let (messages, kinds): (Vec<Option<String>>, Vec<Option<String>>) = problems
            .into_iter()
            .map(|p| match p {
                Some((m, k)) => (Some(m), Some(k.to_string())),
                None => (None, None),
            })
            .unzip();
        columns.push(Column::new(PARSE_ERROR.into(), messages));
        columns.push(Column::new(PARSE_KIND.into(), kinds));
    }
    DataFrame::new_infer_height(columns).map_err(ExecError::polars)
}
