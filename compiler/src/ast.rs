//! The syntax tree: what `parse` gives and `check` takes.
//!
//! Every node carries our own [`Span`] (file and byte range); nothing from the
//! parser generator appears here, so the parser can be replaced without touching
//! the checker or the tests that snapshot this tree.

use serde::Serialize;

/// Identifies one source file of a project (an index into [`crate::SourceMap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
pub struct Span {
    pub file: FileId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span { file, start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// A name with where it was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// One parsed `.mlp` file.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct File {
    pub decls: Vec<Decl>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decl {
    pub kind: DeclKind,
    /// The whole declaration.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum DeclKind {
    Source(Source),
    Check(Check),
    Split(Split),
    Transform(Transform),
    Features(Features),
    Join(Join),
    History(History),
    Plugin(Plugin),
    Model(Model),
    Evaluate(Evaluate),
    Deploy(Deploy),
    Monitor(Monitor),
}

/// A literal value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    /// A number with a unit: `20ms`, `64MB`.
    Quantity(f64, String),
}

/// The right-hand side of `key = value` options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ValueKind {
    Lit(Lit),
    Name(String),
    List(Vec<Value>),
    Call(Ident, Vec<Value>),
    /// `{"yes": 3.0, no: 1}`: keys (strings, names or bools, as text) and
    /// values.
    Map(Vec<(String, Value)>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

/// `key = value`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Opt {
    pub key: Ident,
    pub value: Value,
}

// ---------------------------------------------------------------- source

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Source {
    pub name: Ident,
    pub format: Ident,
    pub path: String,
    pub path_span: Span,
    pub options: Vec<Opt>,
    pub columns: Vec<ColumnDecl>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    /// `as "Raw Header"`: the name in the file, when it differs.
    pub raw_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeExpr {
    pub name: String,
    pub levels: Option<Vec<String>>,
    pub format: Option<String>,
    pub nullable: bool,
    pub span: Span,
}

// ---------------------------------------------------------------- check

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub stage: Ident,
    pub quarantine: bool,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub warn: bool,
    pub kind: RuleKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RuleKind {
    NotNull(Vec<Ident>),
    Unique(Vec<Ident>),
    Range(Ident, RangeLit),
    Values(Ident, Vec<Value>),
    Matches(Ident, String, Span),
    Rows(CmpOp, i64),
    NullRate(Ident, CmpOp, f64),
    Expect(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeLit {
    pub lo: Option<(Lit, Span)>,
    pub hi: Option<(Lit, Span)>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

// ---------------------------------------------------------------- split

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub name: Ident,
    pub input: Ident,
    pub options: Vec<Opt>,
}

// ---------------------------------------------------------------- transform

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transform {
    pub name: Ident,
    pub input: Ident,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StepKind {
    /// `impute COLS with mean|median|mode|<literal>`
    Impute(Vec<Ident>, ImputeWith),
    /// `encode COLS with METHOD [unknown = POLICY]`
    Encode(Vec<Ident>, Ident, Option<Ident>),
    /// `scale COLS with METHOD`
    Scale(Vec<Ident>, Ident),
    Clip(Vec<Ident>, RangeLit),
    Bucket(Ident, i64, Span),
    Drop(Vec<Ident>),
    Keep(Vec<Ident>),
    Rename(Ident, Ident),
    Filter(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ImputeWith {
    Method(Ident),
    Lit(Lit, Span),
}

// ---------------------------------------------------------------- features

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Features {
    pub name: Ident,
    pub input: Ident,
    pub features: Vec<Feature>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feature {
    pub name: Ident,
    pub expr: Expr,
}

// ---------------------------------------------------------------- join / history

/// `join NAME = LEFT with RIGHT on KEYS [{ how = left | inner }]`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Join {
    pub name: Ident,
    pub left: Ident,
    pub right: Ident,
    pub keys: Vec<Ident>,
    pub options: Vec<Opt>,
}

/// `history NAME = LEFT with EVENTS on KEYS at T by TE { COL = AGG(EXPR) [within D] ... }`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub name: Ident,
    pub left: Ident,
    pub events: Ident,
    pub keys: Vec<Ident>,
    pub at: Ident,
    pub by: Ident,
    pub items: Vec<HistoryItem>,
}

/// `COL = AGG(EXPR) [within DURATION]`
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryItem {
    pub name: Ident,
    pub expr: Expr,
    /// The window as written (`30d`) and where.
    pub within: Option<(Lit, Span)>,
    pub span: Span,
}

// ---------------------------------------------------------------- plugin

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plugin {
    pub name: Ident,
    pub path: String,
    pub path_span: Span,
    pub options: Vec<Opt>,
}

// ---------------------------------------------------------------- model

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub name: Ident,
    pub algorithm: Ident,
    pub input: Ident,
    pub features: Option<Vec<Ident>>,
    pub exclude: Vec<Ident>,
    pub params: Vec<Opt>,
    pub tune: Option<Tune>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tune {
    pub options: Vec<Opt>,
    pub span: Span,
}

// ---------------------------------------------------------------- evaluate

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluate {
    pub model: Ident,
    pub partition: Ident,
    pub metrics: Vec<Ident>,
    pub gates: Vec<Gate>,
    pub slices: Vec<Slice>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gate {
    /// `gap`, `ratio`, `min`, `max` inside a slice; `None` for a plain metric.
    pub aggregate: Option<Ident>,
    pub metric: Ident,
    pub op: CmpOp,
    pub threshold: f64,
    pub threshold_span: Span,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slice {
    pub column: Ident,
    pub gates: Vec<Gate>,
}

// ---------------------------------------------------------------- deploy / monitor

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deploy {
    pub model: Ident,
    pub name: String,
    pub name_span: Span,
    pub options: Vec<Opt>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Monitor {
    pub model: Ident,
    pub items: Vec<MonitorItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorItem {
    pub kind: MonitorKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum MonitorKind {
    /// `drift COLS with STAT [p] OP X`
    Drift {
        columns: Vec<Ident>,
        stat: Ident,
        p_value: bool,
        op: CmpOp,
        threshold: f64,
        threshold_span: Span,
    },
    /// `performance METRIC OP X`
    Performance {
        metric: Ident,
        op: CmpOp,
        threshold: f64,
        threshold_span: Span,
    },
    /// `latency pNN OP DURATION`
    Latency {
        percentile: Ident,
        op: CmpOp,
        value: Lit,
        value_span: Span,
    },
    /// `error_rate OP X`
    ErrorRate {
        op: CmpOp,
        threshold: f64,
        threshold_span: Span,
    },
    Option(Opt),
}

// ---------------------------------------------------------------- expressions

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Cmp(CmpOp),
    And,
    Or,
    In,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Pow => "**",
            BinOp::Cmp(c) => c.as_str(),
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::In => "in",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Lit(Lit),
    Column(String),
    List(Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    If(Box<Expr>, Box<Expr>, Box<Expr>),
    Call(Ident, Vec<Expr>),
    PluginCall(Ident, Ident, Vec<Expr>),
    /// `AGG(COL) over KEYS`
    Over(Box<Expr>, Vec<Ident>),
}
