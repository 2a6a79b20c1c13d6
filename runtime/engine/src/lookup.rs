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

use mlp_ml::history::NO_GROUP;

/// Rows at least this many are answered in parallel.
const PARALLEL_ROWS: usize = 16_384;

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
    Int(Int64Chunked),
    Text(StringChunked),
}

impl KeyColumn {
    fn read(df: &DataFrame, name: &str) -> Result<KeyColumn, ExecError> {
        let c = df
            .column(name)
            .map_err(|_| ExecError::Data(format!("key column `{name}` is missing")))?;
        Ok(match c.dtype() {
            DataType::String => KeyColumn::Text(c.str().map_err(ExecError::polars)?.clone()),
            _ => {
                let phys = c.to_physical_repr();
                let ints = phys.cast(&DataType::Int64).map_err(ExecError::polars)?;
                KeyColumn::Int(ints.i64().map_err(ExecError::polars)?.clone())
            }
        })
    }
    fn part(&self, row: usize) -> Option<Part> {
        match self {
            KeyColumn::Int(v) => v.get(row).map(Part::Int),
            KeyColumn::Text(s) => s.get(row).map(|s| Part::Text(s.into())),
        }
    }
}

/// Keys to dense ids (first seen first): one integer key (the common case,
/// hashed as is) or parts.
enum KeyIndex {
    /// Integer keys in a narrow range (ids 1..n, the common case): the id
    /// of key `k` is `ids[k - min]`, no hashing.
    Dense {
        min: i64,
        ids: Vec<u32>,
        len: usize,
    },
    Int(Map<i64, u32>),
    Parts(Map<Box<[Part]>, u32>),
}

/// The range of a single integer key column, when it is narrow enough to
/// index by position (at most 4 slots per row, or 65,536).
fn dense_range(df: &DataFrame, names: &[String]) -> Option<(i64, usize)> {
    let [name] = names else { return None };
    let c = df.column(name).ok()?;
    if c.dtype() == &DataType::String {
        return None;
    }
    let phys = c.to_physical_repr();
    let ints = phys.cast(&DataType::Int64).ok()?;
    let ca = ints.i64().ok()?;
    let (min, max) = (ca.min()?, ca.max()?);
    let span = (max as i128 - min as i128 + 1) as u128;
    let limit = (4 * df.height()).max(1 << 16) as u128;
    (span <= limit).then_some((min, span as usize))
}

/// A row's key as read.
enum RowKey {
    Int(i64),
    Parts(Box<[Part]>),
}

/// Calls `f(row, key)` for each row of a frame (`None`: a null in a key).
fn for_each_key(
    df: &DataFrame,
    names: &[String],
    mut f: impl FnMut(usize, Option<RowKey>),
) -> Result<(), ExecError> {
    let cols: Vec<KeyColumn> = names
        .iter()
        .map(|n| KeyColumn::read(df, n))
        .collect::<Result<_, _>>()?;
    match cols.as_slice() {
        [KeyColumn::Int(ca)] => {
            let mut row = 0;
            for arr in ca.downcast_iter() {
                match arr.validity() {
                    None => {
                        for v in arr.values().iter() {
                            f(row, Some(RowKey::Int(*v)));
                            row += 1;
                        }
                    }
                    Some(_) => {
                        for v in arr.iter() {
                            f(row, v.map(|v| RowKey::Int(*v)));
                            row += 1;
                        }
                    }
                }
            }
        }
        _ => {
            for row in 0..df.height() {
                let key = cols
                    .iter()
                    .map(|c| c.part(row))
                    .collect::<Option<Vec<Part>>>()
                    .map(|p| RowKey::Parts(p.into_boxed_slice()));
                f(row, key);
            }
        }
    }
    Ok(())
}

fn key_text(parts: &[Part]) -> String {
    match parts {
        [p] => p.to_string(),
        _ => format!(
            "({})",
            parts
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl KeyIndex {
    /// Gives each distinct key of the frame's rows a dense id; returns each
    /// row's id ([`NO_GROUP`] for a null key) and, when `repeats`, the rows
    /// whose key an earlier row has.
    fn assign(
        df: &DataFrame,
        names: &[String],
        repeats: bool,
    ) -> Result<(KeyIndex, Vec<u32>, Vec<usize>), ExecError> {
        let n = df.height();
        let mut ids = vec![NO_GROUP; n];
        let mut repeated = vec![];
        if let Some((min, span)) = dense_range(df, names) {
            let mut slots = vec![NO_GROUP; span];
            let mut len = 0u32;
            for_each_key(df, names, |row, k| {
                let Some(RowKey::Int(k)) = k else { return };
                let slot = &mut slots[(k - min) as usize];
                if *slot == NO_GROUP {
                    *slot = len;
                    len += 1;
                } else if repeats {
                    repeated.push(row);
                }
                ids[row] = *slot;
            })?;
            let index = KeyIndex::Dense {
                min,
                ids: slots,
                len: len as usize,
            };
            return Ok((index, ids, repeated));
        }
        let single_int = names.len() == 1
            && df
                .column(&names[0])
                .is_ok_and(|c| c.dtype() != &DataType::String);
        let mut ints: Map<i64, u32> = Map::default();
        let mut parts_map: Map<Box<[Part]>, u32> = Map::default();
        if single_int {
            ints.reserve(n / 4);
        }
        for_each_key(df, names, |row, k| {
            let (id, next) = match k {
                None => return,
                Some(RowKey::Int(k)) => {
                    let next = ints.len() as u32;
                    (*ints.entry(k).or_insert(next), next)
                }
                Some(RowKey::Parts(k)) => {
                    let next = parts_map.len() as u32;
                    (*parts_map.entry(k).or_insert(next), next)
                }
            };
            if id != next && repeats {
                repeated.push(row);
            }
            ids[row] = id;
        })?;
        let index = if single_int {
            KeyIndex::Int(ints)
        } else {
            KeyIndex::Parts(parts_map)
        };
        Ok((index, ids, repeated))
    }

    fn len(&self) -> usize {
        match self {
            KeyIndex::Dense { len, .. } => *len,
            KeyIndex::Int(m) => m.len(),
            KeyIndex::Parts(m) => m.len(),
        }
    }

    /// Each row's id ([`NO_GROUP`]: a null key, or one not indexed).
    fn lookup(&self, df: &DataFrame, names: &[String]) -> Result<Vec<u32>, ExecError> {
        let mut ids = vec![NO_GROUP; df.height()];
        let dense = |min: &i64, slots: &Vec<u32>, k: i64| {
            k.checked_sub(*min)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| slots.get(i).copied())
        };
        for_each_key(df, names, |row, k| {
            ids[row] = match (self, k) {
                (KeyIndex::Dense { min, ids, .. }, Some(RowKey::Int(k))) => dense(min, ids, k),
                (KeyIndex::Dense { min, ids, .. }, Some(RowKey::Parts(k))) => match &k[..] {
                    [Part::Int(k)] => dense(min, ids, *k),
                    _ => None,
                },
                (KeyIndex::Int(m), Some(RowKey::Int(k))) => m.get(&k).copied(),
                (KeyIndex::Parts(m), Some(RowKey::Int(k))) => m.get(&[Part::Int(k)][..]).copied(),
                (KeyIndex::Parts(m), Some(RowKey::Parts(k))) => m.get(&k).copied(),
                (KeyIndex::Int(m), Some(RowKey::Parts(k))) => match &k[..] {
                    [Part::Int(k)] => m.get(k).copied(),
                    _ => None,
                },
                (_, None) => None,
            }
            .unwrap_or(NO_GROUP)
        })?;
        Ok(ids)
    }
}

/// Time columns as microseconds since the epoch (a date is its midnight);
/// a null is `None`.
fn micros(df: &DataFrame, name: &str) -> Result<Vec<Option<i64>>, ExecError> {
    let c = df
        .column(name)
        .map_err(|_| ExecError::Data(format!("time column `{name}` is missing")))?;
    let (us, scale) = match c.dtype() {
        DataType::Datetime(TimeUnit::Microseconds, _) => (c.clone(), 1),
        DataType::Date => (c.clone(), mlp_ml::history::DAY_US),
        DataType::Datetime(..) | DataType::Null => (
            c.cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                .map_err(ExecError::polars)?,
            1,
        ),
        other => {
            return Err(ExecError::Data(format!(
                "time column `{name}` is {other}, not a date or datetime"
            )))
        }
    };
    let phys = us
        .to_physical_repr()
        .cast(&DataType::Int64)
        .map_err(ExecError::polars)?;
    let ca = phys.i64().map_err(ExecError::polars)?;
    Ok(match ca.cont_slice() {
        Ok(v) => v.iter().map(|t| Some(t * scale)).collect(),
        Err(_) => ca.iter().map(|t| t.map(|t| t * scale)).collect(),
    })
}

/// A column of answers (`None`: null) of the aggregate's type.
fn answers_column(name: &str, ty: &Type, values: Vec<Option<f64>>) -> Column {
    let name: PlSmallStr = name.into();
    let all = values.iter().all(Option::is_some);
    match ty {
        Type::Int if all => {
            Int64Chunked::from_vec(name, values.iter().flatten().map(|v| *v as i64).collect())
                .into_column()
        }
        Type::Int => {
            Int64Chunked::from_iter_options(name, values.into_iter().map(|v| v.map(|v| v as i64)))
                .into_column()
        }
        Type::Bool => Column::new(
            name,
            values
                .iter()
                .map(|v| v.map(|v| v != 0.0))
                .collect::<Vec<Option<bool>>>(),
        ),
        _ if all => {
            Float64Chunked::from_vec(name, values.into_iter().flatten().collect()).into_column()
        }
        _ => Float64Chunked::from_iter_options(name, values.into_iter()).into_column(),
    }
}

/// A join's right side, indexed by key.
pub struct JoinState {
    op: JoinOp,
    keys: KeyIndex,
    /// The right row of each key id.
    rows: Vec<IdxSize>,
    /// The right side's added columns, rows in its order.
    right: DataFrame,
}

impl JoinState {
    /// Indexes `right` by the join's keys. Keys must be unique (the
    /// compiler proved it from a check; this verifies the data read): a
    /// duplicate is an error naming the first duplicated key values.
    pub fn build(op: &JoinOp, right: &DataFrame, side: &str) -> Result<JoinState, ExecError> {
        let (keys, ids, repeated) = KeyIndex::assign(right, &op.keys, true)?;
        if !repeated.is_empty() {
            let cols: Vec<KeyColumn> = op
                .keys
                .iter()
                .map(|n| KeyColumn::read(right, n))
                .collect::<Result<_, _>>()?;
            let shown: Vec<String> = repeated
                .iter()
                .take(5)
                .map(|r| {
                    let parts: Vec<Part> = cols.iter().filter_map(|c| c.part(*r)).collect();
                    key_text(&parts)
                })
                .collect();
            let n = repeated.len();
            return Err(ExecError::Data(format!(
                "`{side}` has {n} row{} whose {} another row has too ({}): a join reads one row per key",
                if n == 1 { "" } else { "s" },
                op.keys.join(", "),
                shown.join(", ")
            )));
        }
        let mut rows = vec![0 as IdxSize; keys.len()];
        for (row, id) in ids.iter().enumerate() {
            if *id != NO_GROUP {
                rows[*id as usize] = row as IdxSize;
            }
        }
        let right = right
            .select(op.columns.iter().map(String::as_str))
            .map_err(ExecError::polars)?;
        Ok(JoinState {
            op: op.clone(),
            keys,
            rows,
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
        let ids = self.keys.lookup(&left, &self.op.keys)?;
        let mut unmatched = vec![];
        let rows: IdxCa = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                if *id == NO_GROUP {
                    unmatched.push(i);
                    None
                } else {
                    Some(self.rows[*id as usize])
                }
            })
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
    groups: KeyIndex,
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
        let (groups, mut group_of, _) = KeyIndex::assign(events, &op.keys, false)?;
        let times = micros(events, &op.by)?;
        let mut time_values = Vec::with_capacity(times.len());
        for (row, t) in times.into_iter().enumerate() {
            match t {
                Some(t) => time_values.push(t),
                None => {
                    time_values.push(0);
                    group_of[row] = NO_GROUP;
                }
            }
        }
        // One value column per distinct expression an aggregate reads.
        let kinds = frame_kinds_of(events, stage);
        let types = |n: &str| kinds.get(n).cloned();
        let translator = Translator {
            types: &types,
            plugins,
        };
        let mut exprs = vec![];
        let mut seen: Vec<&mlp_compiler::plan::Expr> = vec![];
        let mut specs = vec![];
        for a in &op.aggregates {
            let column = match &a.arg {
                Some(arg) => match seen.iter().position(|s| *s == arg) {
                    Some(k) => Some(k),
                    None => {
                        let (e, _) = translator.expr(arg)?;
                        exprs.push(
                            e.cast(DataType::Float64)
                                .alias(format!("__v{}", exprs.len())),
                        );
                        seen.push(arg);
                        Some(exprs.len() - 1)
                    }
                },
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
                    let ca = c.f64().map_err(ExecError::polars)?;
                    Ok(match ca.cont_slice() {
                        Ok(s) => s.to_vec(),
                        Err(_) => ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect(),
                    })
                })
                .collect::<Result<Vec<Vec<f64>>, ExecError>>()?
        };
        let index = EventIndex::build(&group_of, groups.len(), &time_values, &values);
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
        use rayon::prelude::*;
        let groups = self.groups.lookup(&left, &self.op.keys)?;
        let mut at = micros(&left, &self.op.at)?;
        if now.is_some() {
            for t in at.iter_mut().filter(|t| t.is_none()) {
                *t = now;
            }
        }
        let mut out = left;
        let answer = |row: usize, spec: &AggSpec| match at[row] {
            Some(t) => self.index.query(groups[row], t, spec),
            None => match spec.agg {
                HistoryAggregate::Count | HistoryAggregate::Sum => Some(0.0),
                _ => None,
            },
        };
        let n = groups.len();
        for (a, spec) in self.op.aggregates.iter().zip(&self.specs) {
            let values: Vec<Option<f64>> = if n >= PARALLEL_ROWS {
                (0..n).into_par_iter().map(|r| answer(r, spec)).collect()
            } else {
                (0..n).map(|r| answer(r, spec)).collect()
            };
            let column = answers_column(&a.name, &a.ty, values);
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
    /// The shortest `refresh` of the databases and remote objects read
    /// (re-read after it).
    refresh: Option<std::time::Duration>,
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
        let mut refresh = None;
        for st in lookup {
            let fail = |error: ExecError| LookupError {
                table: st.name.clone(),
                error: Box::new(error),
            };
            let mut stage_files = vec![];
            if let Op::Source(src) = &st.op {
                // A database's rows (or a remote object) are read when the
                // state is built (no file to watch: refreshed with the
                // bundle, or every `refresh`).
                // A remote object is re-checked (its ETag) every `refresh`.
                let watched = src.format != mlp_compiler::plan::SourceFormat::Postgres
                    && !crate::exec::remote::is_remote(&src.path);
                if watched {
                    patterns.push(src.path.clone());
                } else if let Some(mlp_compiler::plan::Literal::Int(ms)) =
                    src.options.get("refresh")
                {
                    let every = std::time::Duration::from_millis((*ms).max(1) as u64);
                    refresh = Some(refresh.map_or(every, |r: std::time::Duration| r.min(every)));
                }
                for p in crate::exec::source::files_of(root, src, &st.name).map_err(fail)? {
                    let stat = mlp_store::fingerprint::Stat::of(&p).map_err(|e| {
                        fail(ExecError::Read {
                            file: p.display().to_string(),
                            reason: e.to_string(),
                        })
                    })?;
                    stage_files.push((p, stat));
                }
                if watched {
                    files.extend(stage_files.iter().cloned());
                }
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
                input_json: Default::default(),
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
            refresh,
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

    /// Whether a file read changed (or a glob now matches other files), or
    /// a database's `refresh` is due.
    pub fn changed(&self, root: &std::path::Path) -> bool {
        if let Some(every) = self.refresh {
            if self.built.elapsed().is_ok_and(|age| age >= every) {
                return true;
            }
        }
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
