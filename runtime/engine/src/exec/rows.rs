//! Columns built value by value, for the sources read row by row (SQLite,
//! PostgreSQL's binary COPY): one builder per declared type, and the frame
//! with a lenient read's problem columns (`_parse_error`, `_parse_kind`), as
//! a CSV file's lenient read has them.

use super::source::{PARSE_ERROR, PARSE_KIND};
use super::ExecError;
use mlp_compiler::plan::SourceOp;
use mlp_compiler::types::Type;
use polars::prelude::*;

/// One declared column's values as read, in typed builders (a value and a
/// validity bit each, not an `Option` per value).
pub enum Values {
    Int(Nullable<Int64Type>),
    Float(Nullable<Float64Type>),
    Bool(BooleanChunkedBuilder),
    Text(StringChunkedBuilder),
    /// Days since 1970-01-01.
    Date(Nullable<Int32Type>),
    /// Microseconds since 1970-01-01.
    Datetime(Nullable<Int64Type>),
}

/// A builder of numbers, some missing.
pub struct Nullable<T: PolarsNumericType>(PrimitiveChunkedBuilder<T>);

impl<T: PolarsNumericType> Nullable<T> {
    fn new(capacity: usize) -> Self {
        Nullable(PrimitiveChunkedBuilder::new(PlSmallStr::EMPTY, capacity))
    }

    #[inline]
    pub fn push(&mut self, v: Option<T::Native>) {
        self.0.append_option(v)
    }
}

/// Pushes a present value (`Values::Bool` beside the numbers).
pub trait Push<V> {
    fn push(&mut self, v: Option<V>);
}

impl Push<bool> for BooleanChunkedBuilder {
    #[inline]
    fn push(&mut self, v: Option<bool>) {
        self.append_option(v)
    }
}

impl Values {
    pub fn new(ty: &Type) -> Values {
        Values::with_capacity(ty, 1024)
    }

    /// Builders with room for `n` values.
    pub fn with_capacity(ty: &Type, n: usize) -> Values {
        match ty {
            Type::Int => Values::Int(Nullable::new(n)),
            Type::Float => Values::Float(Nullable::new(n)),
            Type::Bool => Values::Bool(BooleanChunkedBuilder::new(PlSmallStr::EMPTY, n)),
            Type::Str | Type::Category { .. } => {
                Values::Text(StringChunkedBuilder::new(PlSmallStr::EMPTY, n))
            }
            Type::Date { .. } => Values::Date(Nullable::new(n)),
            Type::Datetime { .. } => Values::Datetime(Nullable::new(n)),
        }
    }

    pub fn push_null(&mut self) {
        match self {
            Values::Int(v) => v.push(None),
            Values::Float(v) => v.push(None),
            Values::Bool(v) => v.append_null(),
            Values::Text(v) => v.append_null(),
            Values::Date(v) => v.push(None),
            Values::Datetime(v) => v.push(None),
        }
    }

    fn into_column(self, name: &str) -> Column {
        let name: PlSmallStr = name.into();
        match self {
            Values::Int(v) => v.0.finish().with_name(name).into_column(),
            Values::Float(v) => v.0.finish().with_name(name).into_column(),
            Values::Bool(v) => v.finish().with_name(name).into_column(),
            Values::Text(v) => v.finish().with_name(name).into_column(),
            Values::Date(v) => v.0.finish().with_name(name).into_date().into_column(),
            Values::Datetime(v) => {
                v.0.finish()
                    .with_name(name)
                    .into_datetime(TimeUnit::Microseconds, None)
                    .into_column()
            }
        }
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
    let mut columns: Vec<Column> = op
        .columns
        .iter()
        .zip(values)
        .map(|(c, v)| v.into_column(&c.name))
        .collect();
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
