//! The one table of diagnostic codes: each code, the error it is reported
//! for, and its documentation (`docs/codes/CODE.md`). It generates
//! `CheckError::code`, the parse errors' codes, `mlp explain`'s index
//! ([`CODES`]) and the docs index (`docs/codes/README.md`, checked by a
//! test). A test fails when a code lacks its doc or fixture.

use crate::check::CheckError;
use crate::parse::ParseErrorKind;

macro_rules! codes {
    (
        parse { $($pcode:literal => $pkind:ident),* $(,)? }
        check { $($code:literal => $variant:ident),* $(,)? }
    ) => {
        /// `(code, Markdown doc)` for every code the compiler can report.
        pub const CODES: &[(&str, &str)] = &[
            $(($pcode, include_str!(concat!("../../docs/codes/", $pcode, ".md"))),)*
            $(($code, include_str!(concat!("../../docs/codes/", $code, ".md"))),)*
        ];

        /// The code of a check error.
        pub fn check_code(e: &CheckError) -> &'static str {
            match e {
                $(CheckError::$variant { .. } => $code,)*
            }
        }

        /// The code of a parse error.
        pub fn parse_code(k: ParseErrorKind) -> &'static str {
            match k {
                $(ParseErrorKind::$pkind => $pcode,)*
            }
        }
    };
}

codes! {
    parse {
        "E0001" => Syntax,
        "E0002" => BadLiteral,
        "E0010" => TooDeep,
    }
    check {
        "E0003" => DuplicateName,
        "E0004" => UnknownStage,
        "E0005" => Cycle,
        "E0007" => UnknownOption,
        "E0008" => BadOptionValue,
        "E0009" => NoDeclarations,
        "E0101" => UnknownFormat,
        "E0102" => DuplicateColumn,
        "E0103" => BadType,
        "E0105" => EmptySource,
        "E0106" => BadLevels,
        "E0107" => SecretInSource,
        "E0201" => UnknownColumn,
        "E0202" => OperandTypes,
        "E0203" => UnknownFunction,
        "E0204" => Arity,
        "E0205" => ArgumentType,
        "E0206" => Incompatible,
        "E0207" => ColumnExists,
        "E0208" => UnknownLevel,
        "E0209" => AggregateWithoutOver,
        "E0210" => NotBoolean,
        "E0211" => BadOver,
        "E0212" => DateLiteral,
        "E0301" => RuleType,
        "E0302" => BadRegex,
        "E0303" => RateRange,
        "E0304" => DuplicateCheck,
        "E0305" => EmptyRange,
        "E0401" => NoTrain,
        "E0402" => RatioSum,
        "E0403" => SplitConflict,
        "E0404" => SplitColumnType,
        "E0405" => PartitionColumnClash,
        "E0406" => SecondSplit,
        "E0501" => StepType,
        "E0502" => FittedBeforeSplit,
        "E0503" => ImputeValueType,
        "E0504" => EncodedCollision,
        "E0505" => UnknownMethod,
        "E0506" => PartitionColumnEdit,
        "E0507" => BucketCount,
        "E0601" => PluginUnavailable,
        "E0602" => UnknownPluginFunction,
        "E0603" => PluginArity,
        "E0604" => PluginArgType,
        "E0605" => PluginSignatures,
        "E0606" => PluginAbi,
        "E0607" => UnknownPlugin,
        "E0701" => UnknownAlgorithm,
        "E0702" => UnknownParam,
        "E0703" => ParamValue,
        "E0704" => NonNumericInput,
        "E0705" => NullableInput,
        "E0706" => TargetAsFeature,
        "E0707" => Leakage,
        "E0708" => TaskUnknown,
        "E0709" => TaskUnsupported,
        "E0710" => ModelBeforeSplit,
        "E0711" => SearchWithoutTune,
        "W0712" => TuneWithoutSearch,
        "E0713" => ReadsPartition,
        "E0714" => MissingTarget,
        "E0715" => NoInputs,
        "E0716" => TooManyLevels,
        "W0801" => UngatedDeploy,
        "E0802" => MetricTask,
        "E0803" => ThresholdRange,
        "E0804" => UnknownPartition,
        "E0805" => SliceColumn,
        "E0806" => UnknownMetric,
        "E0807" => DriftStat,
        "E0808" => DuplicateDeploy,
        "E0809" => UnknownAggregate,
        "E0810" => BadLatency,
        "E0811" => DerivedTarget,
        "E0901" => JoinNotUnique,
        "E0902" => KeyTypes,
        "E0903" => BothSides,
        "E0904" => HistoryTime,
        "E0905" => BadWindow,
        "E0906" => HistoryAggregate,
        "E0907" => SideAfterSplit,
        "E0908" => EventTableJoined,
    }
}

/// The documentation of a code (case-insensitive), or `None`.
pub fn explain(code: &str) -> Option<&'static str> {
    let code = code.trim().to_ascii_uppercase();
    CODES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}

/// Every `(code, doc)` in code order (E0001, E0002, E0003, ... E0010, ...,
/// W0712 beside E0712).
pub fn in_order() -> Vec<(&'static str, &'static str)> {
    let mut codes = CODES.to_vec();
    codes.sort_by_key(|(c, _)| (c[1..].to_string(), c.to_string()));
    codes
}

/// The docs index, `docs/codes/README.md`: every code with its title.
pub fn docs_index() -> String {
    let mut out = String::from(
        "# Diagnostic codes\n\nEvery code `mlp check` reports, with a page on why it is reported and how to fix it (`mlp explain CODE` prints the page). Generated from the table in `compiler/src/codes.rs`.\n\n| code | what |\n|---|---|\n",
    );
    for (code, doc) in in_order() {
        let title = doc
            .lines()
            .next()
            .and_then(|l| l.split_once(": "))
            .map(|(_, t)| t.trim())
            .unwrap_or("");
        out.push_str(&format!("| [{code}]({code}.md) | {title} |\n"));
    }
    out
}
