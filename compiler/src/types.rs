//! Column types and schemas: what the checker carries through every stage.
//!
//! [`Type`] and [`ColumnSchema`] are part of the serialisable plan; [`Column`]
//! is the checker's richer view (spans, lineage) and never leaves the compiler.

use crate::ast::Span;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A column's value type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Type {
    Int,
    Float,
    Bool,
    Str,
    Category {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        levels: Option<Vec<String>>,
    },
    Date {
        format: String,
    },
    Datetime {
        format: String,
    },
}

impl Type {
    pub fn is_numeric(&self) -> bool {
        matches!(self, Type::Int | Type::Float)
    }
    /// Numeric or bool: what a model can read.
    pub fn is_model_input(&self) -> bool {
        matches!(self, Type::Int | Type::Float | Type::Bool)
    }
    pub fn is_textual(&self) -> bool {
        matches!(self, Type::Str | Type::Category { .. })
    }
    pub fn is_temporal(&self) -> bool {
        matches!(self, Type::Date { .. } | Type::Datetime { .. })
    }
    /// Types that make discrete groups (for slices, `over` keys, stratification).
    pub fn is_discrete(&self) -> bool {
        matches!(
            self,
            Type::Int | Type::Bool | Type::Str | Type::Category { .. } | Type::Date { .. }
        )
    }
    pub fn levels(&self) -> Option<&[String]> {
        match self {
            Type::Category { levels: Some(l) } => Some(l),
            _ => None,
        }
    }
    /// The short name used in messages: `int`, `category`, `date`.
    pub fn name(&self) -> &'static str {
        match self {
            Type::Int => "int",
            Type::Float => "float",
            Type::Bool => "bool",
            Type::Str => "str",
            Type::Category { .. } => "category",
            Type::Date { .. } => "date",
            Type::Datetime { .. } => "datetime",
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One column of a stage's output, as the plan records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSchema {
    pub name: String,
    #[serde(flatten)]
    pub ty: Type,
    pub nullable: bool,
    /// For a one-hot group whose levels are not known before the data is read
    /// (`city_*`), the encoded column it comes from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub group_of: Option<String>,
    /// The original of an encoded column: kept for slices, checks and
    /// monitoring, never read by a model.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub encoded: bool,
}

/// The checker's view of a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: Type,
    pub nullable: bool,
    pub group_of: Option<String>,
    pub encoded: bool,
    /// Root columns this one is computed from, as `source.column` (and
    /// `split.<partition>` for the partition column).
    pub lineage: BTreeSet<String>,
    /// Where the column got its current definition.
    pub defined: Span,
}

impl Column {
    pub fn to_schema(&self) -> ColumnSchema {
        ColumnSchema {
            name: self.name.clone(),
            ty: self.ty.clone(),
            nullable: self.nullable,
            group_of: self.group_of.clone(),
            encoded: self.encoded,
        }
    }
}

/// An ordered set of columns, with what is known about the split upstream.
///
/// Columns are shared (`Arc`) between the frames of successive stages: a
/// stage that adds one column to a frame of thousands copies pointers, not
/// columns, so a long chain of stages checks in linear memory. A column is
/// copied only when a stage changes it (`get_mut`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub columns: Vec<std::sync::Arc<Column>>,
    /// Set once a split is upstream: every fitted step may learn from `train`.
    pub split: Option<SplitInfo>,
    /// Columns whose definition failed to check: references to them are not
    /// reported again downstream.
    pub poisoned: BTreeSet<String>,
    /// Columns a step removed, with how (`renamed to `b` in `transform.t``),
    /// so a later reference to one says where it went.
    pub gone: BTreeMap<String, String>,
    /// Column sets a non-`warn` `unique` check proved unique, with each
    /// column's definition (a redefined column no longer is).
    pub unique: Vec<Vec<(String, Span)>>,
    /// Stages whose rows reached this frame through a join's right side:
    /// stage name -> (the join, its right side's span).
    pub joined_from: BTreeMap<String, (String, Span)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitInfo {
    pub stage: String,
    pub column: String,
    /// The partitions' names, when known before the data is read.
    pub partitions: Option<Vec<String>>,
    pub span: Span,
}

impl Frame {
    // Names are unique in a frame; lookups go from the end, where the
    // columns a stage just added (and the next one reads) are.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map(|c| &**c)
    }
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Column> {
        self.columns
            .iter_mut()
            .rev()
            .find(|c| c.name == name)
            .map(std::sync::Arc::make_mut)
    }
    /// Appends a column.
    pub fn push(&mut self, col: Column) {
        self.columns.push(std::sync::Arc::new(col));
    }
    /// Inserts a column at a position.
    pub fn insert(&mut self, at: usize, col: Column) {
        self.columns.insert(at, std::sync::Arc::new(col));
    }
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().rposition(|c| c.name == name)
    }
    /// Column names, for "available columns" help.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
    /// Adds a column, or replaces the one with the same name in place.
    pub fn upsert(&mut self, col: Column) {
        self.gone.remove(&col.name);
        match self.position(&col.name) {
            Some(i) => self.columns[i] = std::sync::Arc::new(col),
            None => self.columns.push(std::sync::Arc::new(col)),
        }
    }
    /// Whether a `unique` check proved the rows unique on `keys` (or on a
    /// subset of them), with the columns as they were then.
    pub fn proved_unique(&self, keys: &[String]) -> bool {
        self.unique.iter().any(|set| {
            set.iter()
                .all(|(n, d)| keys.contains(n) && self.get(n).is_some_and(|c| c.defined == *d))
        })
    }
    /// Drops the uniqueness proofs a stage broke (a column removed or redefined).
    pub fn forget_broken_proofs(&mut self) {
        let unique = std::mem::take(&mut self.unique);
        self.unique = unique
            .into_iter()
            .filter(|set| {
                set.iter()
                    .all(|(n, d)| self.get(n).is_some_and(|c| c.defined == *d))
            })
            .collect();
    }
    pub fn schema(&self) -> Vec<ColumnSchema> {
        self.columns.iter().map(|c| c.to_schema()).collect()
    }
}
