//! The plan: the compiler's only serialisable output, and the runtime's input.
//!
//! A [`Plan`] is a DAG of [`Stage`]s in a deterministic topological order. Each
//! stage carries its operator ([`Op`]), its inputs (stage ids), its output
//! schema, and a canonical form (`canonical`, `definition_hash`) from which the
//! runtime computes cache keys. The canonical form holds no spans, comments or
//! stage names, so formatting, comments and declaration order never change it.
//!
//! The plan is versioned ([`PLAN_VERSION`]): a change to these types that
//! alters their JSON is a new version.

use crate::types::{ColumnSchema, Type};
pub use crate::vocab::{
    Aggregate, Algorithm, BinaryOp, CmpOp, DriftStat, EncodeMethod, Function, HistoryAggregate,
    ImputeMethod, JoinHow, Metric, ScaleMethod, SearchKind, SliceAggregate, SourceFormat, UnaryOp,
    UnknownLevel,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bumped whenever the JSON shape of the plan changes.
pub const PLAN_VERSION: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    /// The compiler that produced it (part of every cache key).
    pub engine: String,
    pub stages: Vec<Stage>,
    pub plugins: Vec<PluginDecl>,
}

impl Plan {
    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

/// Where a declaration was written (1-based), for `mlp plan` to say which
/// definition changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `source.houses`, `check.houses`, `split.data`, `transform.prep`,
    /// `features.feats`, `model.price_model`, `evaluate.price_model.test`,
    /// `deploy.house-price`, `monitor.price_model`.
    pub id: String,
    /// The name the user gave (the model's name for evaluate/monitor).
    pub name: String,
    pub inputs: Vec<String>,
    pub op: Op,
    /// The stage's output columns. Shared (`Arc`) between stages that pass
    /// a column on unchanged, so a plan of many stages over many columns is
    /// not quadratic in memory (JSON holds each stage's list in full).
    #[serde(with = "shared_schema")]
    pub schema: Vec<std::sync::Arc<ColumnSchema>>,
    /// The split's partition column, for stages downstream of a split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_column: Option<String>,
    /// Plugins whose functions this stage calls (their bytes join the key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<String>,
    /// The operator as canonical JSON.
    pub canonical: String,
    /// SHA-256 of `canonical`, hex.
    pub definition_hash: String,
    pub origin: Origin,
}

/// One stage's operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    Source(SourceOp),
    Check(CheckOp),
    Split(SplitOp),
    Transform(TransformOp),
    Features(FeaturesOp),
    Join(JoinOp),
    History(HistoryOp),
    Model(ModelOp),
    Evaluate(EvaluateOp),
    Deploy(DeployOp),
    Monitor(MonitorOp),
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Check(_) => "check",
            Op::Split(_) => "split",
            Op::Transform(_) => "transform",
            Op::Features(_) => "features",
            Op::Join(_) => "join",
            Op::History(_) => "history",
            Op::Model(_) => "model",
            Op::Evaluate(_) => "evaluate",
            Op::Deploy(_) => "deploy",
            Op::Monitor(_) => "monitor",
        }
    }
}

// ---------------------------------------------------------------- literals

/// A literal value in the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    Null(()),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

// ---------------------------------------------------------------- source

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceOp {
    /// `csv`, `parquet` or `json` (newline-delimited).
    pub format: SourceFormat,
    /// Relative to the project root; may be a glob.
    pub path: String,
    pub options: BTreeMap<String, Literal>,
    pub columns: Vec<SourceColumn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceColumn {
    pub name: String,
    /// The header in the file, when it differs from `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_name: Option<String>,
    #[serde(flatten)]
    pub ty: Type,
    pub nullable: bool,
}

// ---------------------------------------------------------------- check

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOp {
    pub quarantine: bool,
    pub rules: Vec<CheckRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRule {
    pub warn: bool,
    /// Decided per row (applied at serving too), as opposed to over the whole
    /// frame (`unique`, `rows`, `null_rate`).
    pub row_level: bool,
    /// Reads a model's target: applies to training data only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reads_target: bool,
    /// The rule as written, normalised (for reports).
    pub text: String,
    pub rule: RuleOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RuleOp {
    NotNull {
        columns: Vec<String>,
    },
    Unique {
        columns: Vec<String>,
    },
    Range {
        column: String,
        lo: Option<Literal>,
        hi: Option<Literal>,
    },
    Values {
        column: String,
        values: Vec<Literal>,
    },
    Matches {
        column: String,
        pattern: String,
    },
    Rows {
        op: CmpOp,
        n: i64,
    },
    NullRate {
        column: String,
        op: CmpOp,
        rate: f64,
    },
    Expect {
        expr: Expr,
    },
}

// ---------------------------------------------------------------- split

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitOp {
    /// The column that names each row's partition.
    pub partition_column: String,
    pub method: SplitMethod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SplitMethod {
    /// Random (or key-hashed, or time-ordered) assignment by ratio.
    Ratios {
        /// In declaration order; `order` assigns the latest rows to the last.
        partitions: Vec<(String, f64)>,
        seed: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stratify: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order: Option<String>,
    },
    /// The data is already split: `column` names each row's partition.
    Column { column: String },
}

// ---------------------------------------------------------------- transform

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformOp {
    pub steps: Vec<StepOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepOp {
    /// `with` is `mean`, `median`, `mode`, or a literal.
    Impute {
        columns: Vec<String>,
        method: ImputeMethod,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Literal>,
    },
    Encode {
        column: String,
        method: EncodeMethod,
        /// Known before the data is read (declared, or proven by a check).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        levels: Option<Vec<String>>,
        /// The columns it adds (one per level, or the `_ordinal` column);
        /// `None` for a one-hot group learned from `train`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outputs: Option<Vec<String>>,
        /// `zeros` (default for onehot), `error`, or `minus_one` (ordinal).
        unknown: UnknownLevel,
    },
    Scale {
        columns: Vec<String>,
        method: ScaleMethod,
    },
    Clip {
        columns: Vec<String>,
        lo: Option<f64>,
        hi: Option<f64>,
    },
    Bucket {
        column: String,
        quantiles: i64,
    },
    Drop {
        columns: Vec<String>,
    },
    Keep {
        columns: Vec<String>,
    },
    Rename {
        from: String,
        to: String,
    },
    Filter {
        expr: Expr,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reads_target: bool,
    },
}

impl StepOp {
    /// Whether the step learns parameters from `train`.
    pub fn is_fitted(&self) -> bool {
        match self {
            StepOp::Impute { method, .. } => *method != ImputeMethod::Value,
            StepOp::Encode { levels, .. } => levels.is_none(),
            StepOp::Scale { .. } | StepOp::Bucket { .. } => true,
            _ => false,
        }
    }
}

// ---------------------------------------------------------------- features

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeaturesOp {
    pub features: Vec<FeatureOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureOp {
    pub name: String,
    pub expr: Expr,
    #[serde(flatten)]
    pub ty: Type,
    pub nullable: bool,
}

/// A typed expression. Functions are named as in the language reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
pub enum Expr {
    Lit {
        value: Literal,
    },
    Col {
        name: String,
    },
    List {
        items: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        arg: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        #[serde(rename = "else")]
        otherwise: Box<Expr>,
    },
    Call {
        func: Function,
        args: Vec<Expr>,
    },
    Plugin {
        plugin: String,
        func: String,
        args: Vec<Expr>,
    },
    /// A lookup table fitted on `train`: `agg(arg) over keys`.
    Over {
        agg: Aggregate,
        arg: Box<Expr>,
        keys: Vec<String>,
    },
}

// ---------------------------------------------------------------- join / history

/// `join`: LEFT (the stage's first input) with RIGHT (its second), many to
/// one on `keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinOp {
    pub keys: Vec<String>,
    pub how: JoinHow,
    /// RIGHT's columns the join adds (all but the keys), in order.
    pub columns: Vec<String>,
}

/// `history`: for each LEFT row (the first input), aggregates of the EVENTS
/// rows (the second) with the same `keys` and `by < at` (strictly before),
/// and `by >= at - within` when a window is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryOp {
    pub keys: Vec<String>,
    /// LEFT's date or datetime column: the moment each row predicts.
    pub at: String,
    /// EVENTS' date or datetime column: when each event happened.
    pub by: String,
    pub aggregates: Vec<HistoryAggOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryAggOp {
    pub name: String,
    pub agg: HistoryAggregate,
    /// The event-row expression aggregated (none for `count()` and
    /// `days_since(max(by))`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg: Option<Expr>,
    /// The window, in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within_us: Option<i64>,
    #[serde(flatten)]
    pub ty: Type,
    pub nullable: bool,
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Regression,
    Classification,
}

/// A parameter value (a search space is a list of these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Per class, a number (`class_weight = {"yes": 3.0}`).
    Map(BTreeMap<String, f64>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelOp {
    pub algorithm: Algorithm,
    pub task: Task,
    pub target: String,
    /// The classes, when the target's levels are known before the data is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// Input columns in order; a one-hot group appears as `city_*`.
    pub features: Vec<String>,
    /// Every parameter, defaults filled in (fixed values).
    pub params: BTreeMap<String, ParamValue>,
    /// Parameters given as lists: the search space.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub search: BTreeMap<String, Vec<ParamValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tune: Option<TuneOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneOp {
    pub cv: i64,
    pub metric: Metric,
    /// `grid`, or `random` with `trials`.
    pub search: SearchKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<i64>,
    pub seed: u64,
}

// ---------------------------------------------------------------- evaluate

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateOp {
    pub model: String,
    pub partition: String,
    pub metrics: Vec<Metric>,
    pub gates: Vec<GateOp>,
    pub slices: Vec<SliceOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateOp {
    /// `gap`, `ratio`, `min`, `max` for slice gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<SliceAggregate>,
    pub metric: Metric,
    pub op: CmpOp,
    pub threshold: f64,
}

/// `OP threshold` on a quantity named by its context (`error_rate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdOp {
    pub op: CmpOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceOp {
    pub column: String,
    pub gates: Vec<GateOp>,
}

// ---------------------------------------------------------------- deploy / monitor

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployOp {
    pub model: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The stages a request row goes through, in order (the inference slice).
    pub serving_stages: Vec<String>,
    /// The stages that build serving's lookup state (the RIGHT and EVENTS
    /// sides of the slice's joins and histories), in plan order: run on the
    /// latest data when a server or a batch prediction starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lookup_stages: Vec<String>,
    /// Request columns that are a history's `at`: a request may leave them
    /// out (or null), and they are then the time of the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_time: Vec<String>,
    /// The columns a request must carry: the sources' columns the model's
    /// features are computed from.
    pub request_columns: Vec<SourceColumn>,
    /// The evaluate stages whose gates must pass first.
    pub gated_by: Vec<String>,
    /// The model's `monitor` declaration, which the bundle carries (here so
    /// that it is part of the deploy stage's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorOp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorOp {
    pub model: String,
    pub drift: Vec<DriftOp>,
    pub performance: Vec<GateOp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency: Vec<LatencyOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_rate: Option<ThresholdOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftOp {
    pub column: String,
    pub stat: DriftStat,
    /// The threshold is on the test's p-value rather than its statistic.
    pub p_value: bool,
    pub op: CmpOp,
    pub threshold: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyOp {
    pub percentile: f64,
    pub op: CmpOp,
    pub millis: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginDecl {
    pub name: String,
    /// Relative to the project root.
    pub path: String,
    pub memory_bytes: u64,
    pub fuel: u64,
    pub timeout_ms: u64,
}

/// Names the compiler and the runtime must agree on.
pub mod names {
    use std::collections::BTreeSet;

    /// The column a split adds, naming each row's partition.
    pub const PARTITION: &str = "partition";
    /// A row's 1-based position in its input (rejected and quarantined rows,
    /// served requests split back by row).
    pub const ROW: &str = "_row";
    /// The rules a rejected or quarantined row failed.
    pub const FAILED_RULES: &str = "_failed_rules";

    /// The one-hot columns of `column`'s levels, in level order:
    /// `{column}_{level}` with every character but ASCII letters and digits
    /// as `_`; a name already taken by an earlier level gets `_2`, `_3`, ...
    /// (`a-b` and `a b` become `g_a_b` and `g_a_b_2`).
    pub fn onehot_columns(column: &str, levels: &[String]) -> Vec<String> {
        let mut taken = BTreeSet::new();
        levels
            .iter()
            .map(|l| {
                let base = format!("{column}_{}", crate::check::level_suffix(l));
                let mut name = base.clone();
                let mut k = 2;
                while taken.contains(&name) {
                    name = format!("{base}_{k}");
                    k += 1;
                }
                taken.insert(name.clone());
                name
            })
            .collect()
    }

    /// Why `name` cannot name a registered model or an alias, if it
    /// cannot: 1 to 64 ASCII letters, digits, `-`, `_` or `.`, starting with
    /// a letter or digit. An alias also needs a character that is not a hex
    /// digit, so it can never be read as a version hash (or its prefix).
    pub fn registry_name_problem(name: &str, alias: bool) -> Option<&'static str> {
        if name.is_empty() || name.len() > 64 {
            return Some("1 to 64 characters");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Some("letters, digits, `-`, `_` or `.` only");
        }
        if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Some("starting with a letter or digit");
        }
        if alias && name.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some("a character other than 0-9 and a-f (it would read as a version hash)");
        }
        None
    }

    /// The column of a class's probability: `proba_` and the label as it
    /// is (`proba_1. < HS Grad`), so it stays recognisable and unique.
    pub fn proba_column(class: &str) -> String {
        format!("proba_{class}")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn registry_names() {
            use super::registry_name_problem as p;
            assert_eq!(p("house-price", false), None);
            assert_eq!(p("production", true), None);
            for bad in ["", "../../x", "a@b", "bad alias!", "a\nb", ".x"] {
                assert!(p(bad, true).is_some(), "{bad:?}");
            }
            assert!(p("beef12", true).is_some());
            assert_eq!(p("beef12", false), None);
        }

        #[test]
        fn onehot_columns_are_unique() {
            let levels: Vec<String> = ["a-b", "a b", "a_b_2", "c"].map(String::from).to_vec();
            assert_eq!(
                super::onehot_columns("g", &levels),
                ["g_a_b", "g_a_b_2", "g_a_b_2_2", "g_c"]
            );
        }
    }
}

/// (De)serialises a stage's shared schema as a plain list of columns.
mod shared_schema {
    use super::ColumnSchema;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::sync::Arc;

    pub fn serialize<S: Serializer>(v: &[Arc<ColumnSchema>], s: S) -> Result<S::Ok, S::Error> {
        let plain: Vec<&ColumnSchema> = v.iter().map(|c| &**c).collect();
        plain.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Arc<ColumnSchema>>, D::Error> {
        Ok(Vec::<ColumnSchema>::deserialize(d)?
            .into_iter()
            .map(Arc::new)
            .collect())
    }
}
