//! The checker's errors: data (spans and the candidates for suggestions),
//! turned into [`Diagnostic`]s by [`CheckError::to_diagnostic`].
//!
//! Codes are banded by stage: E00xx project and names, E01xx sources, E02xx
//! columns and expressions, E03xx checks, E04xx split, E05xx transforms,
//! E06xx plugins, E07xx models, E08xx evaluation, deployment and monitoring,
//! E09xx joins and histories (rendered in `error_tables.rs`).
//! W-codes are warnings. Every code has a doc in `docs/codes/` and a fixture in
//! `tests/fixtures/err/`.

use crate::ast::Span;
use crate::diagnostic::Diagnostic;
use crate::suggest::{did_you_mean, list};

#[derive(Debug, Clone, PartialEq)]
pub enum CheckError {
    DuplicateName {
        kind: &'static str,
        name: String,
        span: Span,
        first: Span,
    },
    UnknownStage {
        name: String,
        span: Span,
        available: Vec<String>,
        wanted: &'static str,
    },
    Cycle {
        span: Span,
        cycle: Vec<String>,
    },
    NoDeclarations {
        span: Span,
        files: usize,
    },
    UnknownOption {
        span: Span,
        key: String,
        context: &'static str,
        valid: Vec<String>,
    },
    BadOptionValue {
        span: Span,
        key: String,
        expected: String,
        found: String,
    },
    UnknownFormat {
        span: Span,
        name: String,
    },
    DuplicateColumn {
        span: Span,
        name: String,
        first: Span,
    },
    BadType {
        span: Span,
        message: String,
        help: String,
    },
    EmptySource {
        span: Span,
        name: String,
    },
    BadLevels {
        span: Span,
        message: String,
    },
    UnknownColumn {
        span: Span,
        name: String,
        available: Vec<String>,
        hint: Option<String>,
    },
    OperandTypes {
        span: Span,
        op: String,
        left: String,
        right: String,
        help: Option<String>,
    },
    UnknownFunction {
        span: Span,
        name: String,
        candidates: Vec<String>,
    },
    Arity {
        span: Span,
        func: String,
        expected: String,
        found: usize,
    },
    ArgumentType {
        span: Span,
        func: String,
        position: usize,
        expected: String,
        found: String,
    },
    Incompatible {
        span: Span,
        context: String,
        a: String,
        b: String,
    },
    ColumnExists {
        span: Span,
        name: String,
    },
    UnknownLevel {
        span: Span,
        value: String,
        column: String,
        levels: Vec<String>,
    },
    AggregateWithoutOver {
        span: Span,
        func: String,
    },
    NotBoolean {
        span: Span,
        context: &'static str,
        found: String,
    },
    BadOver {
        span: Span,
        message: String,
        help: String,
    },
    /// A string compared with a date or datetime column that does not parse
    /// in the column's format.
    DateLiteral {
        span: Span,
        value: String,
        column: String,
        format: String,
    },
    RuleType {
        span: Span,
        rule: &'static str,
        column: String,
        found: String,
        expected: &'static str,
    },
    BadRegex {
        span: Span,
        error: String,
    },
    RateRange {
        span: Span,
        value: f64,
    },
    DuplicateCheck {
        span: Span,
        stage: String,
        first: Span,
    },
    EmptyRange {
        span: Span,
        lo: String,
        hi: String,
    },
    NoTrain {
        span: Span,
        found: Vec<String>,
    },
    RatioSum {
        span: Span,
        sum: f64,
    },
    SplitConflict {
        span: Span,
        a: String,
        b: String,
    },
    SplitColumnType {
        span: Span,
        option: String,
        column: String,
        found: String,
        expected: &'static str,
    },
    PartitionColumnClash {
        span: Span,
    },
    SecondSplit {
        span: Span,
        first: Span,
        first_name: String,
    },
    StepType {
        span: Span,
        step: &'static str,
        column: String,
        found: String,
        expected: &'static str,
        defined: Span,
    },
    FittedBeforeSplit {
        span: Span,
        what: String,
        stage: String,
    },
    ImputeValueType {
        span: Span,
        column: String,
        found: String,
        value: String,
    },
    EncodedCollision {
        span: Span,
        name: String,
    },
    UnknownMethod {
        span: Span,
        step: &'static str,
        name: String,
        valid: &'static [&'static str],
    },
    PartitionColumnEdit {
        span: Span,
        column: String,
        action: &'static str,
    },
    BucketCount {
        span: Span,
        n: i64,
    },
    PluginUnavailable {
        span: Span,
        path: String,
        reason: String,
    },
    UnknownPluginFunction {
        span: Span,
        plugin: String,
        func: String,
        available: Vec<String>,
    },
    PluginArity {
        span: Span,
        plugin: String,
        func: String,
        expected: usize,
        found: usize,
        signature: String,
    },
    PluginArgType {
        span: Span,
        plugin: String,
        func: String,
        param: String,
        expected: String,
        found: String,
        signature: String,
    },
    PluginSignatures {
        span: Span,
        path: String,
        reason: String,
    },
    PluginAbi {
        span: Span,
        path: String,
        found: u32,
        supported: u32,
    },
    UnknownPlugin {
        span: Span,
        name: String,
        available: Vec<String>,
    },
    UnknownAlgorithm {
        span: Span,
        name: String,
        known: Vec<String>,
    },
    UnknownParam {
        span: Span,
        algorithm: String,
        name: String,
        valid: Vec<String>,
    },
    ParamValue {
        span: Span,
        algorithm: String,
        name: String,
        expected: String,
        found: String,
    },
    NonNumericInput {
        span: Span,
        column: String,
        found: String,
        defined: Span,
        model: String,
        /// The model's algorithm splits `category` inputs natively.
        categories_native: bool,
    },
    NullableInput {
        span: Span,
        column: String,
        defined: Span,
        model: String,
        is_target: bool,
    },
    TargetAsFeature {
        span: Span,
        target: String,
    },
    Leakage {
        span: Span,
        feature: String,
        target: String,
        defined: Span,
        /// What `exclude` names to leave the feature out: an encoded
        /// column's original (not its `col_*` group or one level's column).
        exclude: String,
    },
    TaskUnknown {
        span: Span,
        target: String,
        found: String,
    },
    TaskUnsupported {
        span: Span,
        algorithm: String,
        task: String,
        supported: Vec<String>,
    },
    ModelBeforeSplit {
        span: Span,
        model: String,
    },
    SearchWithoutTune {
        span: Span,
        param: String,
    },
    ReadsPartition {
        span: Span,
        column: String,
        defined: Span,
    },
    MissingTarget {
        span: Span,
        model: String,
    },
    NoInputs {
        span: Span,
        model: String,
    },
    TooManyLevels {
        span: Span,
        column: String,
        levels: usize,
        max_bins: i64,
        defined: Span,
        model: String,
    },
    MetricTask {
        span: Span,
        metric: String,
        task: String,
        valid: Vec<String>,
    },
    ThresholdRange {
        span: Span,
        metric: String,
        value: f64,
        range: String,
    },
    UnknownPartition {
        span: Span,
        name: String,
        partitions: Vec<String>,
    },
    SliceColumn {
        span: Span,
        column: String,
        found: String,
    },
    UnknownMetric {
        span: Span,
        name: String,
        valid: Vec<String>,
    },
    DriftStat {
        span: Span,
        message: String,
        help: String,
    },
    DuplicateDeploy {
        span: Span,
        name: String,
        first: Span,
    },
    UnknownAggregate {
        span: Span,
        name: String,
    },
    BadLatency {
        span: Span,
        message: String,
    },
    UngatedDeploy {
        span: Span,
        model: String,
    },
    DerivedTarget {
        span: Span,
        model: String,
        target: String,
        /// The source columns the target is computed from.
        from: Vec<String>,
    },
    TuneWithoutSearch {
        span: Span,
        /// A search space over one of the algorithm's parameters, for the help.
        example: Option<String>,
    },
    /// A password written into a source's address.
    SecretInSource {
        span: Span,
        source: String,
        /// A remote file's address (else a database's).
        remote: bool,
    },
    /// A join's RIGHT side is not proved unique on the keys.
    JoinNotUnique {
        span: Span,
        right: String,
        keys: Vec<String>,
    },
    /// A join or history key of different (or unusable) types on the two sides.
    KeyTypes {
        span: Span,
        key: String,
        left: String,
        right: String,
    },
    /// A column (not a key) on both sides of a join, or a history aggregate
    /// named like a LEFT column.
    BothSides {
        span: Span,
        column: String,
        left: Span,
        right: Option<Span>,
        /// `left` is an earlier aggregate of the same block.
        in_block: bool,
    },
    /// `at` is not a date/datetime of LEFT, `by` not one of EVENTS, or `at`
    /// may be null.
    HistoryTime {
        span: Span,
        which: &'static str,
        column: String,
        side: String,
        problem: String,
    },
    /// A window that is not a positive duration.
    BadWindow {
        span: Span,
        found: String,
    },
    /// A history aggregate that is unknown or does not fit its argument.
    HistoryAggregate {
        span: Span,
        message: String,
        help: String,
    },
    /// RIGHT or EVENTS downstream of the split.
    SideAfterSplit {
        span: Span,
        side: &'static str,
        name: String,
        split: String,
    },
    /// An event table (read by a `history`) brought into a model's rows by
    /// a `join`.
    EventTableJoined {
        span: Span,
        table: String,
        history: String,
        join: String,
        model: String,
    },
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn available_help(name: &str, available: &[String], what: &str) -> String {
    match did_you_mean(name, names(available)) {
        Some(d) => format!("{d} {what}: {}", list(available, 12)),
        None => format!("{what}: {}", list(available, 12)),
    }
}

impl CheckError {
    /// The stable code of this error.
    /// The error's code, from the one table of codes (`crate::codes`).
    pub fn code(&self) -> &'static str {
        crate::codes::check_code(self)
    }

    /// The error as a renderable diagnostic.
    pub fn to_diagnostic(&self) -> Diagnostic {
        use CheckError::*;
        let code = self.code();
        let e = |m: String| Diagnostic::error(code, m);
        match self {
            DuplicateName {
                kind,
                name,
                span,
                first,
            } => e(format!("`{name}` is declared twice"))
                .primary(*span, format!("second {kind} named `{name}`"))
                .secondary(*first, "first declared here")
                .help("names are unique across the project's files; rename one of them"),
            UnknownStage {
                name,
                span,
                available,
                wanted,
            } => e(format!("no {wanted} named `{name}`"))
                .primary(*span, format!("unknown {wanted}"))
                .help(available_help(name, available, &format!("{wanted}s declared"))),
            NoDeclarations { span, files } => e(format!(
                "the pipeline declares nothing ({files} file{} read, no `source`, `model` or other declaration in {})",
                if *files == 1 { "" } else { "s" },
                if *files == 1 { "it" } else { "them" }
            ))
            .primary(*span, "nothing declared from here on")
            .help("a pipeline starts with `source NAME = csv(\"data.csv\") { ... }`; a file whose lines end in a lone carriage return reads as one line, so save it with ordinary line endings"),
            Cycle { span, cycle } => e(format!(
                "stages depend on each other in a cycle: {}",
                cycle.join(" -> ")
            ))
            .primary(*span, "this input closes the cycle")
            .help("a stage's input must be declared upstream of it; break the cycle by reading from an earlier stage"),
            UnknownOption {
                span,
                key,
                context,
                valid,
            } => e(format!("unknown option `{key}` in {context}"))
                .primary(*span, "unknown option")
                .help(available_help(key, valid, "valid options")),
            BadOptionValue {
                span,
                key,
                expected,
                found,
            } => match expected.strip_prefix("left out: ") {
                // An option that does not apply here: say to remove it.
                Some(why) => e(format!("`{key}` does not apply to {found}"))
                    .primary(*span, "remove this")
                    .help(format!("remove `{key}`: {why}")),
                None => e(format!("`{key}` must be {expected}, found {found}"))
                    .primary(*span, format!("expected {expected}"))
                    .help(format!("write {expected} here; `docs/language.md` lists every option")),
            },
            UnknownFormat { span, name } => e(format!("unknown source format `{name}`"))
                .primary(*span, "unknown format")
                .help(format!(
                    "{}formats: `csv`, `parquet`, `json` (newline-delimited)",
                    did_you_mean(name, ["csv", "parquet", "json"])
                        .map(|d| format!("{d} "))
                        .unwrap_or_default()
                )),
            DuplicateColumn { span, name, first } => {
                e(format!("column `{name}` is declared twice"))
                    .primary(*span, "declared again here")
                    .secondary(*first, "first declared here")
                    .help("a source's columns must have distinct names; use `as \"Header\"` to map another header")
            }
            BadType {
                span,
                message,
                help,
            } => e(message.clone())
                .primary(*span, "invalid type")
                .help(help.clone()),
            EmptySource { span, name } => e(format!("source `{name}` declares no columns"))
                .primary(*span, "no columns")
                .help("declare the columns the pipeline reads (the schema is a contract); `mlp infer FILE` prints a starting point"),
            BadLevels { span, message } => e(message.clone())
                .primary(*span, "invalid levels")
                .help("list each level once, for example `category[\"a\", \"b\"]`"),
            UnknownColumn {
                span,
                name,
                available,
                hint,
            } => {
                let mut help = available_help(name, available, "available columns");
                if let Some(h) = hint {
                    help = format!("{h}\n{help}");
                }
                e(format!("unknown column `{name}`"))
                    .primary(*span, "not a column at this point")
                    .help(help)
            }
            OperandTypes {
                span,
                op,
                left,
                right,
                help,
            } => {
                let m = if right.is_empty() {
                    format!("`{op}` cannot be applied to {left}")
                } else {
                    format!("`{op}` cannot be applied to {left} and {right}")
                };
                e(m).primary(*span, "mismatched types").help_opt(help.clone())
            }
            UnknownFunction {
                span,
                name,
                candidates,
            } => e(format!("unknown function `{name}`"))
                .primary(*span, "unknown function")
                .help(match did_you_mean(name, names(candidates)) {
                    Some(d) => d,
                    None => "see `docs/language.md` for the expression library".into(),
                }),
            Arity {
                span,
                func,
                expected,
                found,
            } => e(format!(
                "`{func}` takes {expected} argument{}, found {found}",
                if expected == "1" { "" } else { "s" }
            ))
            .primary(*span, "wrong number of arguments")
            .help(format!("`{func}` takes {expected}; `docs/language.md` lists every function with its arguments")),
            ArgumentType {
                span,
                func,
                position,
                expected,
                found,
            } => e(format!(
                "argument {position} of `{func}` must be {expected}, found {found}"
            ))
            .primary(*span, format!("this is {found}"))
            .help(format!("pass {expected}; convert with `float(...)`, `int(...)` or `str(...)` where that makes sense")),
            Incompatible {
                span,
                context,
                a,
                b,
            } => e(format!("{context} have incompatible types {a} and {b}"))
                .primary(*span, "incompatible types")
                .help("convert one side with `float(...)`, `int(...)` or `str(...)`"),
            ColumnExists { span, name } => e(format!("column `{name}` already exists"))
                .primary(*span, "already a column")
                .help("choose another name, or `drop` the existing column first"),
            UnknownLevel {
                span,
                value,
                column,
                levels,
            } => e(format!("`{value}` is not a level of `{column}`"))
                .primary(*span, "never equal to any row")
                .help(available_help(value, levels, "levels")),
            AggregateWithoutOver { span, func } => e(format!(
                "`{func}` aggregates over rows, so it cannot be computed from one request row"
            ))
            .primary(*span, "aggregate without `over`")
            .help(format!(
                "make it a fitted lookup table with `{func}(...) over KEY`; for a global statistic use a transform step (`scale`, `impute`)"
            )),
            NotBoolean {
                span,
                context,
                found,
            } => e(format!("{context} must be a bool, found {found}"))
                .primary(*span, format!("this is {found}"))
                .help("compare it, for example `x > 0`, or test it with `is_null(x)`"),
            BadOver {
                span,
                message,
                help,
            } => e(message.clone())
                .primary(*span, "invalid `over`")
                .help(help.clone()),
            DateLiteral {
                span,
                value,
                column,
                format,
            } => e(format!(
                "\"{value}\" is not a date in the format of `{column}` (\"{format}\")"
            ))
            .primary(*span, "does not parse")
            .help(format!(
                "write it as the column's values are written (format \"{format}\"); a value that does not parse would compare as null and the rule or feature would test nothing"
            )),
            RuleType {
                span,
                rule,
                column,
                found,
                expected,
            } => e(format!(
                "`{rule}` needs {expected}, but `{column}` is {found}"
            ))
            .primary(*span, format!("`{column}` is {found}"))
            .help(format!("apply `{rule}` to {expected}, or check a feature derived from `{column}` instead")),
            BadRegex { span, error } => e("invalid regular expression".into())
                .primary(*span, "does not compile")
                .help(error.clone()),
            RateRange { span, value } => e(format!("a rate must be between 0 and 1, found {value}"))
                .primary(*span, "out of range")
                .help("`null_rate` is a share of rows: 0.05 means 5%"),
            DuplicateCheck { span, stage, first } => {
                e(format!("stage `{stage}` has two `check` blocks"))
                    .primary(*span, "second check")
                    .secondary(*first, "first check")
                    .help("merge the rules into one `check` block")
            }
            EmptyRange { span, lo, hi } => e(format!("the range {lo}..{hi} is empty"))
                .primary(*span, "low end above high end")
                .help("write the low end first: `LO..HI`; either end may be left open"),
            NoTrain { span, found } => e("a split needs a `train` partition".into())
                .primary(*span, "no `train` partition")
                .help(if found.is_empty() {
                    "add one, for example `train = 0.8  test = 0.2`; fitted steps and models learn from `train` only".to_string()
                } else {
                    format!(
                        "partitions declared: {}; `train` is the one fitted steps and models learn from",
                        list(found, 8)
                    )
                }),
            RatioSum { span, sum } => e(format!(
                "partition ratios add up to {}, not 1",
                crate::catalog::fmt_num((sum * 1e9).round() / 1e9)
            ))
            .primary(*span, "ratios must sum to 1")
            .help("adjust the ratios, for example `train = 0.8  test = 0.2`"),
            SplitConflict { span, a, b } => e(format!("`{a}` and `{b}` cannot be used together"))
                .primary(*span, "conflicting option")
                .help(format!(
                    "choose one way to assign rows: `{a}` or `{b}`"
                )),
            SplitColumnType {
                span,
                option,
                column,
                found,
                expected,
            } => e(format!(
                "`{option}` needs {expected}, but `{column}` is {found}"
            ))
            .primary(*span, format!("`{column}` is {found}"))
            .help(format!("`{option}` takes {expected}")),
            PartitionColumnClash { span } => e(
                "the split adds a column named `partition`, but the input already has one".into(),
            )
            .primary(*span, "would overwrite `partition`")
            .help("rename the input column (`rename partition -> ...`), or use `column = partition` if it already names each row's partition"),
            SecondSplit {
                span,
                first,
                first_name,
            } => e(format!(
                "this input is already split by `{first_name}`"
            ))
            .primary(*span, "second split")
            .secondary(*first, "first split")
            .help("a pipeline splits once; declare further partitions (`valid = 0.1`) in the first split"),
            StepType {
                span,
                step,
                column,
                found,
                expected,
                defined,
            } => e(format!(
                "`{step}` needs {expected}, but `{column}` is {found}"
            ))
            .primary(*span, format!("`{column}` is {found}"))
            .secondary(*defined, format!("`{column}` defined here"))
            .help(match *step {
                "encode" => "encode category, str, bool or int columns; bucket a float first (`bucket COL into N quantiles`)".to_string(),
                _ => format!("convert it first (for example a feature `{column}_n = float(...)`), or leave it out of this step"),
            }),
            FittedBeforeSplit { span, what, stage } => e(format!(
                "{what} learns from the data, but `{stage}` is not downstream of a split"
            ))
            .primary(*span, "fitted step before the split")
            .help("fitted steps learn on `train` only; move the `split` before this stage so test rows do not leak into the fitted parameters"),
            ImputeValueType {
                span,
                column,
                found,
                value,
            } => e(format!("cannot fill {found} column `{column}` with {value}"))
                .primary(*span, "wrong type for this column")
                .help("use a literal of the column's type"),
            EncodedCollision { span, name } => e(format!(
                "encoding would create column `{name}`, which already exists"
            ))
            .primary(*span, "name clash")
            .help(format!(
                "rename (`rename {name} -> ...`) or drop (`drop {name}`) the existing column before encoding"
            )),
            UnknownMethod {
                span,
                step,
                name,
                valid,
            } => e(format!("unknown `{step}` method `{name}`"))
                .primary(*span, "unknown method")
                .help(format!(
                    "{}methods: {}",
                    did_you_mean(name, valid.iter().copied())
                        .map(|d| format!("{d} "))
                        .unwrap_or_default(),
                    valid.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
                )),
            PartitionColumnEdit {
                span,
                column,
                action,
            } => e(format!("cannot {action} the partition column `{column}`"))
                .primary(*span, "the split's partition column")
                .help("every stage after the split needs it to tell `train` from the other partitions"),
            BucketCount { span, n } => e(format!("`bucket` needs at least 2 quantiles, found {n}"))
                .primary(*span, "too few buckets")
                .help("use 2 or more, for example `bucket income into 4 quantiles`"),
            PluginUnavailable { span, path, reason } => {
                e(format!("cannot load plugin `{path}`: {reason}"))
                    .primary(*span, "plugin not loaded")
                    .help("build it (`mlp plugin build DIR`) or fix the path; paths are relative to the .mlp file")
            }
            UnknownPluginFunction {
                span,
                plugin,
                func,
                available,
            } => e(format!("plugin `{plugin}` has no function `{func}`"))
                .primary(*span, "unknown function")
                .help(available_help(func, available, &format!("`{plugin}` exports"))),
            PluginArity {
                span,
                plugin,
                func,
                expected,
                found,
                signature,
            } => e(format!(
                "`{plugin}.{func}` takes {expected} argument{}, found {found}",
                if *expected == 1 { "" } else { "s" }
            ))
            .primary(*span, "wrong number of arguments")
            .help(format!("signature: {signature}")),
            PluginArgType {
                span,
                plugin,
                func,
                param,
                expected,
                found,
                signature,
            } => e(format!(
                "argument `{param}` of `{plugin}.{func}` must be {expected}, found {found}"
            ))
            .primary(*span, format!("this is {found}"))
            .help(format!("signature: {signature}")),
            PluginSignatures { span, path, reason } => {
                e(format!("plugin `{path}` has no usable signatures: {reason}"))
                    .primary(*span, "signatures missing or malformed")
                    .help("build the plugin with the mlp-plugin SDK, whose `mlp_plugin::export!` macro writes the signatures into the module (`mlp plugin build`)")
            }
            PluginAbi {
                span,
                path,
                found,
                supported,
            } => e(format!(
                "plugin `{path}` was built for plugin ABI {found}, but this mlp supports ABI {supported}"
            ))
            .primary(*span, "unsupported ABI")
            .help("rebuild the plugin against the SDK version that matches this mlp, or upgrade mlp"),
            UnknownPlugin {
                span,
                name,
                available,
            } => e(format!("no plugin named `{name}`"))
                .primary(*span, "unknown plugin")
                .help(if available.is_empty() {
                    format!("declare it: `plugin {name} = \"path/to/{name}.wasm\"`")
                } else {
                    available_help(name, available, "plugins declared")
                }),
            UnknownAlgorithm { span, name, known } => e(format!("unknown algorithm `{name}`"))
                .primary(*span, "unknown algorithm")
                .help(available_help(name, known, "algorithms")),
            UnknownParam {
                span,
                algorithm,
                name,
                valid,
            } => e(format!("`{algorithm}` has no parameter `{name}`"))
                .primary(*span, "unknown parameter")
                .help(available_help(name, valid, "its parameters")),
            ParamValue {
                span,
                algorithm,
                name,
                expected,
                found,
            } => e(format!(
                "`{name}` of `{algorithm}` must be {expected}, found {found}"
            ))
            .primary(*span, "out of range")
            .help(format!("use {expected}; `mlp explain E0703` lists every algorithm's parameters")),
            NonNumericInput {
                span,
                column,
                found,
                defined,
                model,
                categories_native,
            } => e(format!(
                "model `{model}` would read `{column}`, which is {found}"
            ))
            .primary(*span, format!("`{column}` ({found}) reaches the model here"))
            .secondary(*defined, format!("`{column}` defined here"))
            .help(if *categories_native && found == "str" {
                format!(
                    "declare `{column}` as a `category` where it is defined (`{column} : category`): this model splits a category by its levels as it is; or encode it in a transform (`encode {column} with onehot`), or `exclude = {column}`"
                )
            } else if found.starts_with("category") {
                format!(
                    "models read numbers and bools: encode it in a transform (`encode {column} with onehot`), derive a number from it in features, or `exclude = {column}`; `gradient_boosting` takes a category as it is"
                )
            } else {
                format!(
                    "models read numbers and bools: encode it in a transform (`encode {column} with onehot`), derive a number from it in features, or `exclude = {column}`"
                )
            }),
            NullableInput {
                span,
                column,
                defined,
                model,
                is_target,
            } => {
                let d = e(format!(
                    "{} `{column}` of model `{model}` may be null",
                    if *is_target { "target" } else { "input" }
                ))
                .primary(*span, format!("`{column}` may be null here"))
                .secondary(*defined, format!("`{column}` gets its nulls here"));
                if *is_target {
                    d.help(format!(
                        "drop rows without a target: `filter not is_null({column})` in a transform, or `check ... quarantine {{ not_null {column} }}`"
                    ))
                } else {
                    d.help(format!(
                        "impute it in a transform (`impute {column} with median`), or use `coalesce({column}, 0)` in the feature"
                    ))
                }
            }
            TargetAsFeature { span, target } => {
                e(format!("the target `{target}` is also listed as a feature"))
                    .primary(*span, "target used as input")
                    .help("remove it from `features`: a model that reads its own target learns nothing it can use at serving")
            }
            Leakage {
                span,
                feature,
                target,
                defined,
                exclude,
            } => e(format!(
                "feature `{feature}` is computed from the target `{target}` (target leakage)"
            ))
            .primary(*span, format!("`{feature}` reaches the model here"))
            .secondary(*defined, format!("`{feature}` reads `{target}` here"))
            .help(format!(
                "the target is absent at serving and a feature derived from it inflates test scores; remove it, or `exclude = {exclude}`"
            )),
            TaskUnknown {
                span,
                target,
                found,
            } => e(format!(
                "cannot tell whether predicting `{target}` ({found}) is regression or classification"
            ))
            .primary(*span, "ambiguous task")
            .help("say which: `task = regression` or `task = classification`"),
            TaskUnsupported {
                span,
                algorithm,
                task,
                supported,
            } => e(format!("`{algorithm}` does not support {task}"))
                .primary(*span, format!("not a {task} algorithm"))
                .help(format!(
                    "algorithms for {task}: {}",
                    list(supported, 12)
                )),
            ModelBeforeSplit { span, model } => e(format!(
                "model `{model}` reads a stage that is not downstream of a split"
            ))
            .primary(*span, "no `train` partition upstream")
            .help("declare a `split` upstream (for example `split data = SOURCE { train = 0.8  test = 0.2  seed = 42 }`); models learn on `train` only"),
            SearchWithoutTune { span, param } => e(format!(
                "`{param}` is a search space, but the model has no `tune` block"
            ))
            .primary(*span, "a list of values")
            .help("add `tune { cv = 5  metric = ... }`, or give a single value"),
            ReadsPartition {
                span,
                column,
                defined,
            } => e(format!("`{column}` is computed from the split's partition column"))
                .primary(*span, "reaches the model here")
                .secondary(*defined, "reads the partition here")
                .help("the partition is not known at serving; exclude it"),
            MissingTarget { span, model } => e(format!("model `{model}` has no `target`"))
                .primary(*span, "no target")
                .help("add `target = COLUMN`"),
            NoInputs { span, model } => e(format!("model `{model}` has no input columns"))
                .primary(*span, "nothing to learn from")
                .help("check `features` and `exclude`"),
            TooManyLevels {
                span,
                column,
                levels,
                max_bins,
                defined,
                model,
            } => e(format!(
                "model `{model}` would split `{column}` by its {levels} declared levels, more than `max_bins = {max_bins}`"
            ))
            .primary(*span, format!("`{column}` ({levels} levels) reaches the model here"))
            .secondary(*defined, format!("`{column}` declared here"))
            .help(if *levels <= 255 {
                format!(
                    "each level is a bin of its own: raise `max_bins` to at least {levels}, or encode `{column}` in a transform (`encode {column} with onehot`), or `exclude = {column}`"
                )
            } else {
                format!(
                    "gradient_boosting splits at most 255 levels natively: encode `{column}` in a transform (`encode {column} with onehot`), derive fewer groups from it in features, or `exclude = {column}`"
                )
            }),
            MetricTask {
                span,
                metric,
                task,
                valid,
            } => e(format!("metric `{metric}` does not fit {task}"))
                .primary(*span, format!("not a {task} metric"))
                .help(format!("metrics for {task}: {}", list(valid, 12))),
            ThresholdRange {
                span,
                metric,
                value,
                range,
            } => e(format!(
                "threshold {} is outside the range of `{metric}` ({range})",
                crate::catalog::fmt_num(*value)
            ))
            .primary(*span, "can never be met as intended")
            .help(format!("`{metric}` takes values in {range}; a share is written 0.8, not 80")),
            UnknownPartition {
                span,
                name,
                partitions,
            } => e(format!("the split has no partition `{name}`"))
                .primary(*span, "unknown partition")
                .help(available_help(name, partitions, "partitions")),
            SliceColumn {
                span,
                column,
                found,
            } => e(format!(
                "cannot slice by `{column}`: it is {found}, which does not form groups"
            ))
            .primary(*span, "not a grouping column")
            .help(format!("slice by a category, str, bool or int column; bucket `{column}` into quantiles in a transform first")),
            UnknownMetric { span, name, valid } => e(format!("unknown metric `{name}`"))
                .primary(*span, "unknown metric")
                .help(available_help(name, valid, "metrics")),
            DriftStat {
                span,
                message,
                help,
            } => e(message.clone())
                .primary(*span, "unsuitable drift statistic")
                .help(help.clone()),
            DuplicateDeploy { span, name, first } => {
                e(format!("two deployments are named \"{name}\""))
                    .primary(*span, "second deployment")
                    .secondary(*first, "first deployment")
                    .help("each deployment name is one entry in the model registry; choose another name")
            }
            UnknownAggregate { span, name } => e(format!("unknown slice aggregate `{name}`"))
                .primary(*span, "unknown aggregate")
                .help("slice gates use `gap(M)` (worst minus best), `ratio(M)` (min over max), `min(M)` or `max(M)`"),
            BadLatency { span, message } => e(message.clone())
                .primary(*span, "invalid latency gate")
                .help("write `latency p99 < 20ms` (a percentile p1..p99 or p999, and a duration in ms or s)"),
            DerivedTarget {
                span,
                model,
                target,
                from,
            } => e(format!(
                "model `{model}` cannot be deployed: its target `{target}` is computed from {}, not read from a source",
                from.iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .primary(*span, "deployed here")
            .help(format!(
                "a request would have to carry {} to compute the target it predicts; deploy a model whose `target` is a source column (for a skewed target, compare `r2` of both in `evaluate`), and keep `{target}` for models you train and evaluate only",
                from.iter()
                    .map(|f| format!("`{}`", f.rsplit_once('.').map_or(f.as_str(), |(_, c)| c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            UngatedDeploy { span, model } => Diagnostic::warning(
                code,
                format!("model `{model}` is deployed without any `require` gate"),
            )
            .primary(*span, "deployed whatever its scores")
            .help(format!(
                "add `evaluate {model} on test {{ require ... }}` so a worse model never ships"
            )),
            TuneWithoutSearch { span, example } => Diagnostic::warning(
                code,
                "`tune` has nothing to search: no parameter is a list".to_string(),
            )
            .primary(*span, "tunes nothing")
            .help(match example {
                Some(x) => format!("give a parameter a list of values, for example `{x}`"),
                None => "give a parameter a list of values, or remove `tune`".to_string(),
            }),
            SecretInSource { span, source, remote: false } => e(format!(
                "the address of source `{source}` holds a password"
            ))
            .primary(*span, "a secret written into the pipeline")
            .help("a pipeline is shared, cached and committed: read the address from the environment, `url = env(\"SHOP_DB\")`, and set the variable where the pipeline runs"),
            SecretInSource { span, source, remote: true } => e(format!(
                "the address of source `{source}` holds a credential"
            ))
            .primary(*span, "a secret written into the pipeline (a user and password, or a signed URL's key)")
            .help("a pipeline is shared, cached and committed: write the object's plain address and set the credentials in the environment where the pipeline runs (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://, GOOGLE_SERVICE_ACCOUNT for gs://, AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY for az://)"),
            JoinNotUnique { .. }
            | KeyTypes { .. }
            | BothSides { .. }
            | HistoryTime { .. }
            | BadWindow { .. }
            | HistoryAggregate { .. }
            | SideAfterSplit { .. }
            | EventTableJoined { .. } => self.table_diagnostic(code),
        }
    }
}

impl crate::parse::ParseError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        use crate::parse::ParseErrorKind;
        match self.kind {
            ParseErrorKind::Syntax => {
                let label = if self.expected.is_empty() {
                    "unexpected here".to_string()
                } else {
                    format!("expected {}", self.expected.join(" or "))
                };
                Diagnostic::error(crate::codes::parse_code(self.kind), format!("syntax error: {}", self.message))
                    .primary(self.span, label)
                    .help(match &self.suggestion {
                        Some(s) => s.clone(),
                        None => "see `docs/language.md` for the form of each declaration".into(),
                    })
            }
            ParseErrorKind::BadLiteral => Diagnostic::error(crate::codes::parse_code(self.kind), self.message.clone())
                .primary(self.span, "invalid literal")
                .help("integers are 64-bit (up to 9223372036854775807); numbers must be finite"),
            ParseErrorKind::TooDeep => Diagnostic::error(crate::codes::parse_code(self.kind), self.message.clone())
                .primary(self.span, "too deep from here")
                .help("split it into several features, each naming a part (`part1 = a + b + c`, then `total = part1 + part2`)"),
        }
    }
}
