//! Lookup state: a `join`'s right side indexed by key, a `history`'s events
//! indexed by key and time. Training builds one from the stage's second
//! input and applies it to the whole left frame; serving builds it once
//! from the latest data of the same sources and applies it to each request.
//! Both go through [`JoinState::apply`] and [`HistoryState::apply`], so a
//! row gets the same values in both.

use crate::exec::expr::Translator;
use crate::exec::transform::frame_kinds_of;
use crate::exec::ExecError;
use crate::plugins::Plugins;
use mlp_compiler::plan::{HistoryAggregate, HistoryOp, JoinHow, JoinOp, Stage};
use mlp_compiler::types::Type;
use mlp_ml::history::{AggSpec, EventIndex};
use polars::prelude::*;
use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One part of a key: ints, bools and dates as integers, text as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Part {
    Int(i64),
    Text(Box<str>),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Part::Int(i) => write!(f, "{i}"),
            Part::Text(s) => write!(f, "\"{s}\""),
        }
    }
}

/// A key column, read once.
enum KeyColumn {
    Int(Vec<Option<i64>>),
    Text(StringChunked),
}

impl KeyColumn {
    fn read(df: &DataFrame, name: &str) -> Result<KeyColumn, ExecError> {
        let c = df
            .column(name)
            .map_err(|_| ExecError::Data(format!("key column `{name}` is missing")))?;
        Ok(match c.dtype() {
            DataType::String => KeyColumn::Text(c.str().map_err(ExecError::polars)?.clone()),
            DataType::Null => KeyColumn::Int(vec![None; c.len()]),
            _ => {
                let phys = c.to_physical_repr();
                let ints = phys.cast(&DataType::Int64).map_err(ExecError::polars)?;
                KeyColumn::Int(ints.i64().map_err(ExecError::polars)?.iter().collect())
            }
        })
    }
    fn part(&self, row: usize) -> Option<Part> {
        match self {
            KeyColumn::Int(v) => v[row].map(Part::Int),
            KeyColumn::Text(s) => s.get(row).map(|s| Part::Text(s.into())),
        }
    }
}

/// A row's key: one integer (the common case, no allocation) or parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Parts(Box<[Part]>),
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Int(i) => write!(f, "{i}"),
            Key::Parts(p) => {
                let parts: Vec<String> = p.iter().map(|p| p.to_string()).collect();
                write!(f, "({})", parts.join(", "))
            }
        }
    }
}

/// The keys of a frame's rows (`None`: a null in one of the key columns).
fn keys_of(df: &DataFrame, names: &[String]) -> Result<Vec<Option<Key>>, ExecError> {
    let cols: Vec<KeyColumn> = names
        .iter()
        .map(|n| KeyColumn::read(df, n))
        .collect::<Result<_, _>>()?;
    Ok((0..df.height())
        .map(|row| match cols.as_slice() {
            [KeyColumn::Int(v)] => v[row].map(Key::Int),
            _ => cols
                .iter()
                .map(|c| c.part(row))
                .collect::<Option<Vec<Part>>>()
                .map(|p| Key::Parts(p.into())),
        })
        .collect())
}

/// Time columns as microseconds since the epoch (a date is its midnight).
fn micros(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, ExecError> {
    let c = df
        .column(name)
        .map_err(|_| ExecError::Data(format!("time column `{name}` is missing")))?;
    let us = match c.dtype() {
        DataType::Datetime(TimeUnit::Microseconds, _) => c.clone(),
        DataType::Datetime(..) | DataType::Date => c
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
            .map_err(ExecError::polars)?,
        DataType::Null => return Ok(vec![None; c.len()]),
        other => {
            return Err(ExecError::Data(format!(
                "time column `{name}` is {other}, not a date or datetime"
            )))
        }
    };
    let phys = us.to_physical_repr();
    Ok(phys
        .i64()
        .map_err(ExecError::polars)?
        .iter()
        .collect::<Vec<_>>())
}

/// A join's right side, indexed by key.
pub struct JoinState {
    op: JoinOp,
    index: Map<Key, IdxSize>,
    /// The right side's added columns, rows in its order.
    right: DataFrame,
}

impl JoinState {
    /// Indexes `right` by the join's keys. Keys must be unique (the
    /// compiler proved it from a check; this verifies the data read): a
    /// duplicate is an error naming the first duplicated key values.
    pub fn build(op: &JoinOp, right: &DataFrame, side: &str) -> Result<JoinState, ExecError> {
        let keys = keys_of(right, &op.keys)?;
        let mut index: Map<Key, IdxSize> = Map::default();
        index.reserve(keys.len());
        let mut duplicated: Vec<String> = vec![];
        let mut n_dup = 0usize;
        for (row, k) in keys.into_iter().enumerate() {
            let Some(k) = k else { continue };
            if index.contains_key(&k) {
                n_dup += 1;
                if duplicated.len() < 5 {
                    duplicated.push(k.to_string());
                }
                continue;
            }
            index.insert(k, row as IdxSize);
        }
        if n_dup > 0 {
            return Err(ExecError::Data(format!(
                "`{side}` has {n_dup} row{} whose {} another row has too ({}): a join reads one row per key",
                if n_dup == 1 { "" } else { "s" },
                op.keys.join(", "),
                duplicated.join(", ")
            )));
        }
        let right = right
            .select(op.columns.iter().map(String::as_str))
            .map_err(ExecError::polars)?;
        Ok(JoinState {
            op: op.clone(),
            index,
            right,
        })
    }

    /// Rows indexed.
    pub fn rows(&self) -> usize {
        self.right.height()
    }

    /// The left frame with the right side's columns (null where no key
    /// matched; for `inner`, those rows are dropped). Returns the frame and
    /// how many left rows matched no right row.
    pub fn apply(&self, left: DataFrame) -> Result<(DataFrame, usize), ExecError> {
        let (out, unmatched) = self.apply_rows(left)?;
        if self.op.how == JoinHow::Inner && !unmatched.is_empty() {
            let mut keep = vec![true; out.height()];
            for r in &unmatched {
                keep[*r] = false;
            }
            let mask: BooleanChunked = keep.into_iter().map(Some).collect();
            let out = out.filter(&mask).map_err(ExecError::polars)?;
            return Ok((out, unmatched.len()));
        }
        Ok((out, unmatched.len()))
    }

    /// Whether rows without a match are dropped (`inner`).
    pub fn is_inner(&self) -> bool {
        self.op.how == JoinHow::Inner
    }

    /// Every left row with the right side's columns (null where no key
    /// matched), and the positions of the rows that matched none.
    pub fn apply_rows(&self, left: DataFrame) -> Result<(DataFrame, Vec<usize>), ExecError> {
        let keys = keys_of(&left, &self.op.keys)?;
        let rows: IdxCa = keys
            .iter()
            .map(|k| k.as_ref().and_then(|k| self.index.get(k).copied()))
            .collect();
        let unmatched: Vec<usize> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_none())
            .map(|(i, _)| i)
            .collect();
        let taken = self.right.take(&rows).map_err(ExecError::polars)?;
        let mut out = left;
        for c in taken.columns() {
            out.with_column(c.clone()).map_err(ExecError::polars)?;
        }
        Ok((out, unmatched))
    }
}

/// A history's events, indexed by key and time, with each aggregate's
/// event-row values.
pub struct HistoryState {
    op: HistoryOp,
    groups: Map<Key, u32>,
    index: EventIndex,
    specs: Vec<AggSpec>,
}

impl HistoryState {
    /// Indexes `events`: evaluates each aggregate's expression on every
    /// event row, groups the rows by key and sorts each group by time.
    /// Events with a null key or time are left out (`dropped`).
    pub fn build(
        op: &HistoryOp,
        events: &DataFrame,
        stage: &Stage,
        plugins: &Plugins,
    ) -> Result<HistoryState, ExecError> {
        let keys = keys_of(events, &op.keys)?;
        let mut groups: Map<Key, u32> = Map::default();
        let group_of: Vec<Option<u32>> = keys
            .into_iter()
            .map(|k| {
                k.map(|k| {
                    let next = groups.len() as u32;
                    *groups.entry(k).or_insert(next)
                })
            })
            .collect();
        let times = micros(events, &op.by)?;
        // One value column per aggregate that reads one.
        let kinds = frame_kinds_of(events, stage);
        let types = |n: &str| kinds.get(n).cloned();
        let translator = Translator {
            types: &types,
            plugins,
        };
        let mut exprs = vec![];
        let mut specs = vec![];
        for a in &op.aggregates {
            let column = match &a.arg {
                Some(arg) => {
                    let (e, _) = translator.expr(arg)?;
                    exprs.push(
                        e.cast(DataType::Float64)
                            .alias(format!("__v{}", exprs.len())),
                    );
                    Some(exprs.len() - 1)
                }
                None => None,
            };
            specs.push(AggSpec {
                agg: a.agg,
                column,
                within_us: a.within_us,
            });
        }
        let values = if exprs.is_empty() {
            vec![]
        } else {
            let df =
                crate::exec::collect_rows(events.clone().lazy().select(exprs), events.height())?;
            df.columns()
                .iter()
                .map(|c| {
                    c.f64()
                        .map(|v| v.iter().collect::<Vec<Option<f64>>>())
                        .map_err(ExecError::polars)
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let index = EventIndex::build(&group_of, groups.len(), &times, &values);
        Ok(HistoryState {
            op: op.clone(),
            groups,
            index,
            specs,
        })
    }

    /// Events indexed, and events left out (a null key or time).
    pub fn rows(&self) -> (usize, usize) {
        (self.index.len(), self.index.dropped)
    }

    /// The left frame with one column per aggregate. A row whose `at` is
    /// null is computed at `now` (serving: the time of the request).
    pub fn apply(&self, left: DataFrame, now: Option<i64>) -> Result<DataFrame, ExecError> {
        let keys = keys_of(&left, &self.op.keys)?;
        let at = micros(&left, &self.op.at)?;
        let groups: Vec<Option<u32>> = keys
            .iter()
            .map(|k| k.as_ref().and_then(|k| self.groups.get(k).copied()))
            .collect();
        let mut out = left;
        for (a, spec) in self.op.aggregates.iter().zip(&self.specs) {
            let values: Vec<Option<f64>> = groups
                .iter()
                .zip(&at)
                .map(|(g, t)| match t.or(now) {
                    Some(t) => self.index.query(*g, t, spec),
                    None => match a.agg {
                        HistoryAggregate::Count | HistoryAggregate::Sum => Some(0.0),
                        _ => None,
                    },
                })
                .collect();
            let name: PlSmallStr = a.name.as_str().into();
            let column = match a.ty {
                Type::Int => Column::new(
                    name,
                    values
                        .iter()
                        .map(|v| v.map(|v| v as i64))
                        .collect::<Vec<Option<i64>>>(),
                ),
                Type::Bool => Column::new(
                    name,
                    values
                        .iter()
                        .map(|v| v.map(|v| v != 0.0))
                        .collect::<Vec<Option<bool>>>(),
                ),
                _ => Column::new(name, values),
            };
            out.with_column(column).map_err(ExecError::polars)?;
        }
        Ok(out)
    }
}

/// Serving's lookup state: every join's right side and every history's
/// events of a bundle's request path, built from the latest data of the
/// sources they read, by running the bundle's lookup stages (sources,
/// checks, transforms, features, joins) as a training run would.
pub struct Lookups {
    pub joins: std::collections::BTreeMap<String, JoinState>,
    pub histories: std::collections::BTreeMap<String, HistoryState>,
    /// Per join or history stage: the name of the side it reads.
    pub tables: std::collections::BTreeMap<String, String>,
    /// The files read, with their stat when read (to see a change).
    files: Vec<(std::path::PathBuf, mlp_store::fingerprint::Stat)>,
    /// The source patterns read (a glob may match a new file).
    patterns: Vec<String>,
    pub built: std::time::SystemTime,
}

/// Why lookup state could not be built: the side and the stage error.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the lookup state of `{table}` for serving: {error}")]
pub struct LookupError {
    pub table: String,
    #[source]
    pub error: Box<ExecError>,
}

impl LookupError {
    pub fn help(&self) -> Option<String> {
        Some(match self.error.help() {
            Some(h) => format!("{h}; serving reads the latest data of the tables its joins and histories look up"),
            None => "serving reads the latest data of the tables its joins and histories look up: fix the source, or the data".into(),
        })
    }
}

impl Lookups {
    /// Runs `lookup` (the stages that build the sides, in plan order) on the
    /// data under `root`, and indexes the side of each join and history of
    /// `serving`.
    pub fn build(
        root: &std::path::Path,
        lookup: &[Stage],
        serving: &[Stage],
        plugins: &Plugins,
    ) -> Result<Lookups, LookupError> {
        use mlp_compiler::plan::Op;
        let plan = mlp_compiler::Plan {
            version: mlp_compiler::plan::PLAN_VERSION,
            engine: String::new(),
            stages: lookup.to_vec(),
            plugins: vec![],
        };
        // Deploy is the only stage that writes to the store; none runs here.
        let store = mlp_store::store::Store {
            root: root.join(".mlp"),
        };
        let keys = HashMap::new();
        let hashes = std::collections::BTreeMap::new();
        let mut frames: HashMap<String, DataFrame> = HashMap::new();
        let mut files = vec![];
        let mut patterns = vec![];
        for st in lookup {
            let fail = |error: ExecError| LookupError {
                table: st.name.clone(),
                error: Box::new(error),
            };
            let mut stage_files = vec![];
            if let Op::Source(src) = &st.op {
                patterns.push(src.path.clone());
                for p in crate::exec::source::resolve(root, &src.path).map_err(fail)? {
                    let stat = mlp_store::fingerprint::Stat::of(&p).map_err(|e| {
                        fail(ExecError::Read {
                            file: p.display().to_string(),
                            reason: e.to_string(),
                        })
                    })?;
                    stage_files.push((p, stat));
                }
                files.extend(stage_files.iter().cloned());
            }
            let inputs = st
                .inputs
                .iter()
                .map(|i| {
                    frames
                        .get(i)
                        .cloned()
                        .ok_or_else(|| fail(ExecError::Internal(format!("no frame for `{i}`"))))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let cx = crate::exec::Context {
                root,
                plan: &plan,
                stage: st,
                inputs,
                files: stage_files,
                lenient: crate::run::quarantined_by_check(&plan, &st.id),
                store: &store,
                keys: &keys,
                data_hashes: &hashes,
                plugins,
            };
            let out = crate::exec::run_stage(cx).map_err(fail)?;
            if let Some(df) = out.frame {
                frames.insert(st.id.clone(), df);
            }
        }
        let mut lookups = Lookups {
            joins: Default::default(),
            histories: Default::default(),
            tables: Default::default(),
            files,
            patterns,
            built: std::time::SystemTime::now(),
        };
        for st in serving {
            let (Some(side_id), true) = (
                st.inputs.get(1),
                matches!(st.op, Op::Join(_) | Op::History(_)),
            ) else {
                continue;
            };
            let table = lookup
                .iter()
                .find(|s| &s.id == side_id)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| side_id.clone());
            let fail = |error: ExecError| LookupError {
                table: table.clone(),
                error: Box::new(error),
            };
            let side = frames
                .get(side_id)
                .ok_or_else(|| fail(ExecError::Internal(format!("no frame for `{side_id}`"))))?;
            match &st.op {
                Op::Join(op) => {
                    let state = JoinState::build(op, side, &table).map_err(fail)?;
                    lookups.joins.insert(st.id.clone(), state);
                }
                Op::History(op) => {
                    let state = HistoryState::build(op, side, st, plugins).map_err(fail)?;
                    lookups.histories.insert(st.id.clone(), state);
                }
                _ => {}
            }
            lookups.tables.insert(st.id.clone(), table);
        }
        Ok(lookups)
    }

    /// Whether a file read changed (or a glob now matches other files).
    pub fn changed(&self, root: &std::path::Path) -> bool {
        let mut now = vec![];
        for p in &self.patterns {
            match crate::exec::source::resolve(root, p) {
                Ok(files) => now.extend(files),
                Err(_) => return true,
            }
        }
        now.len() != self.files.len()
            || now.iter().zip(&self.files).any(|(p, (was, stat))| {
                p != was || mlp_store::fingerprint::Stat::of(p).ok().as_ref() != Some(stat)
            })
    }

    /// Each looked-up table: its name, rows indexed, and the stage.
    pub fn sizes(&self) -> Vec<(String, usize)> {
        let mut out = vec![];
        for (id, j) in &self.joins {
            out.push((self.tables.get(id).cloned().unwrap_or_default(), j.rows()));
        }
        for (id, h) in &self.histories {
            out.push((self.tables.get(id).cloned().unwrap_or_default(), h.rows().0));
        }
        out
    }
}
