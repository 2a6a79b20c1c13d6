//! The plan's vocabulary: every word the compiler writes into a plan and the
//! runtime acts on (operators, aggregates, methods, statistics, metrics,
//! functions), as closed enums.
//!
//! Each enum serialises as the word the language uses (`"<="`, `"mean"`,
//! `"day_of_week"`), so plans, cache keys and bundles read as before; each
//! `match` on one in the runtime is exhaustive, so a word added here fails
//! to compile wherever it is not yet handled.

/// Declares a vocabulary enum: its variants, the word each is written as,
/// `ALL`, `as_str`, `parse` and `Display`.
macro_rules! vocabulary {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }

        impl $name {
            /// Every word, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The word as the language writes it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }

            /// The word, if it is one of this vocabulary's.
            #[allow(clippy::should_implement_trait)]
            pub fn parse(s: &str) -> Option<$name> {
                match s {
                    $($s => Some($name::$var),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// A comparison: every rule, gate and threshold.
    CmpOp { Lt = "<", Le = "<=", Gt = ">", Ge = ">=", Eq = "==", Ne = "!=" }
}

impl CmpOp {
    /// `value OP threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            CmpOp::Lt => value < threshold,
            CmpOp::Le => value <= threshold,
            CmpOp::Gt => value > threshold,
            CmpOp::Ge => value >= threshold,
            CmpOp::Eq => value == threshold,
            CmpOp::Ne => value != threshold,
        }
    }
}

vocabulary! {
    /// A binary operator of an expression.
    BinaryOp {
        Add = "+", Sub = "-", Mul = "*", Div = "/", Rem = "%", Pow = "**",
        Lt = "<", Le = "<=", Gt = ">", Ge = ">=", Eq = "==", Ne = "!=",
        And = "and", Or = "or", In = "in",
    }
}

vocabulary! {
    /// A unary operator of an expression.
    UnaryOp { Neg = "-", Not = "not" }
}

vocabulary! {
    /// An aggregate of `AGG(COL) over KEYS`.
    Aggregate {
        Mean = "mean", Median = "median", Sum = "sum", Count = "count",
        Min = "min", Max = "max", Std = "std",
    }
}

vocabulary! {
    /// An aggregate of a `history` block, over each row's earlier events.
    HistoryAggregate {
        Count = "count", Sum = "sum", Mean = "mean", Min = "min", Max = "max",
        Std = "std", Last = "last", DaysSince = "days_since",
    }
}

vocabulary! {
    /// Which LEFT rows a `join` keeps.
    JoinHow { Left = "left", Inner = "inner" }
}

vocabulary! {
    /// How a gate combines a metric over a slice's groups.
    SliceAggregate { Gap = "gap", Ratio = "ratio", Min = "min", Max = "max" }
}

vocabulary! {
    /// How `impute` fills a missing value.
    ImputeMethod { Mean = "mean", Median = "median", Mode = "mode", Value = "value" }
}

vocabulary! {
    /// How `encode` turns a category into numbers.
    EncodeMethod { Onehot = "onehot", Ordinal = "ordinal" }
}

vocabulary! {
    /// What `encode` does with a level it did not learn.
    UnknownLevel { Zeros = "zeros", Error = "error", MinusOne = "minus_one" }
}

vocabulary! {
    /// How `scale` rescales a column.
    ScaleMethod { Standard = "standard", Minmax = "minmax", Robust = "robust" }
}

vocabulary! {
    /// A drift statistic.
    DriftStat {
        Psi = "psi", Ks = "ks", Wasserstein = "wasserstein", Js = "js", Chi2 = "chi2",
    }
}

vocabulary! {
    /// How `tune` draws parameter combinations.
    SearchKind { Grid = "grid", Random = "random" }
}

vocabulary! {
    /// An evaluation metric.
    Metric {
        Rmse = "rmse", Mae = "mae", R2 = "r2", Mape = "mape",
        Accuracy = "accuracy", Precision = "precision", Recall = "recall", F1 = "f1",
        RocAuc = "roc_auc", LogLoss = "log_loss", SelectionRate = "selection_rate",
    }
}

vocabulary! {
    /// A learning algorithm.
    Algorithm {
        LinearRegression = "linear_regression", Ridge = "ridge", Lasso = "lasso",
        ElasticNet = "elastic_net", LogisticRegression = "logistic_regression",
        DecisionTree = "decision_tree", RandomForest = "random_forest", Adaboost = "adaboost",
        GaussianNb = "gaussian_nb", Svm = "svm", GradientBoosting = "gradient_boosting",
    }
}

vocabulary! {
    /// A source file format.
    SourceFormat {
        Csv = "csv", Parquet = "parquet", Json = "json", Sqlite = "sqlite", Postgres = "postgres",
    }
}

vocabulary! {
    /// A function of the expression language (outside `over`).
    Function {
        Coalesce = "coalesce", IsNull = "is_null",
        Float = "float", Int = "int", Str = "str", Bool = "bool",
        Ln = "ln", Log10 = "log10", Exp = "exp", Sqrt = "sqrt", Abs = "abs",
        Round = "round", Floor = "floor", Ceil = "ceil",
        Min = "min", Max = "max", Clip = "clip",
        Year = "year", Month = "month", Day = "day", DayOfWeek = "day_of_week",
        DayOfYear = "day_of_year", Hour = "hour", DaysBetween = "days_between",
        Lower = "lower", Upper = "upper", Len = "len",
        Contains = "contains", StartsWith = "starts_with", EndsWith = "ends_with",
    }
}

impl From<crate::ast::CmpOp> for CmpOp {
    fn from(c: crate::ast::CmpOp) -> CmpOp {
        use crate::ast::CmpOp as A;
        match c {
            A::Lt => CmpOp::Lt,
            A::Le => CmpOp::Le,
            A::Gt => CmpOp::Gt,
            A::Ge => CmpOp::Ge,
            A::Eq => CmpOp::Eq,
            A::Ne => CmpOp::Ne,
        }
    }
}

impl From<crate::ast::BinOp> for BinaryOp {
    fn from(b: crate::ast::BinOp) -> BinaryOp {
        use crate::ast::BinOp as A;
        match b {
            A::Add => BinaryOp::Add,
            A::Sub => BinaryOp::Sub,
            A::Mul => BinaryOp::Mul,
            A::Div => BinaryOp::Div,
            A::Rem => BinaryOp::Rem,
            A::Pow => BinaryOp::Pow,
            A::Cmp(c) => match CmpOp::from(c) {
                CmpOp::Lt => BinaryOp::Lt,
                CmpOp::Le => BinaryOp::Le,
                CmpOp::Gt => BinaryOp::Gt,
                CmpOp::Ge => BinaryOp::Ge,
                CmpOp::Eq => BinaryOp::Eq,
                CmpOp::Ne => BinaryOp::Ne,
            },
            A::And => BinaryOp::And,
            A::Or => BinaryOp::Or,
            A::In => BinaryOp::In,
        }
    }
}

impl From<crate::ast::UnOp> for UnaryOp {
    fn from(u: crate::ast::UnOp) -> UnaryOp {
        match u {
            crate::ast::UnOp::Neg => UnaryOp::Neg,
            crate::ast::UnOp::Not => UnaryOp::Not,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog;

    /// The catalog (what the checker accepts) and the vocabulary (what the
    /// runtime handles) name the same words.
    #[test]
    fn the_catalog_and_the_vocabulary_agree() {
        let words = |all: &[&str]| {
            let mut v: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        let of = |v: Vec<&'static str>| words(&v);
        assert_eq!(
            words(&catalog::FUNCTIONS.iter().map(|f| f.0).collect::<Vec<_>>()),
            of(Function::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(catalog::AGGREGATES),
            of(Aggregate::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(catalog::HISTORY_AGGREGATES),
            of(HistoryAggregate::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(catalog::SLICE_AGGREGATES),
            of(SliceAggregate::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(&catalog::METRICS.iter().map(|m| m.name).collect::<Vec<_>>()),
            of(Metric::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(&catalog::DRIFT_STATS.iter().map(|m| m.0).collect::<Vec<_>>()),
            of(DriftStat::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(
                &catalog::ALGORITHMS
                    .iter()
                    .map(|a| a.name)
                    .collect::<Vec<_>>()
            ),
            of(Algorithm::ALL.iter().map(|f| f.as_str()).collect())
        );
        assert_eq!(
            words(&catalog::FORMATS.iter().map(|m| m.0).collect::<Vec<_>>()),
            of(SourceFormat::ALL.iter().map(|f| f.as_str()).collect())
        );
        for w in ["<", "<=", ">", ">=", "==", "!="] {
            assert_eq!(CmpOp::parse(w).map(|c| c.as_str()), Some(w));
            assert_eq!(BinaryOp::parse(w).map(|c| c.as_str()), Some(w));
        }
        assert_eq!(
            serde_json::to_string(&Function::DayOfWeek).ok().as_deref(),
            Some("\"day_of_week\"")
        );
    }
}
