//! The language's fixed vocabularies: algorithms and their parameters,
//! metrics and their ranges, drift statistics, source formats and options.
//!
//! These tables are the single place to add an algorithm or a metric; the
//! checker, the docs test and `mlp explain` all read them.

/// What an algorithm can learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Regression,
    Binary,
    Multiclass,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Regression => "regression",
            TaskKind::Binary => "binary classification",
            TaskKind::Multiclass => "multiclass classification",
        }
    }
}

/// The type and valid range of a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamKind {
    /// A float in a range; `open` ends exclude the bound.
    Float {
        min: f64,
        max: f64,
        min_open: bool,
        max_open: bool,
    },
    Int {
        min: i64,
        max: i64,
    },
    Bool,
    Choice(&'static [&'static str]),
    /// `balanced`, or a map of class to a positive weight.
    ClassWeight,
    /// A numeric column of the model's input, by name.
    Column,
}

impl ParamKind {
    /// "a float > 0", "an integer from 1 to 1000", "one of `gini`, `entropy`".
    pub fn describe(&self) -> String {
        match *self {
            ParamKind::Float {
                min,
                max,
                min_open,
                max_open,
            } => {
                let lo = if min == f64::NEG_INFINITY {
                    None
                } else {
                    Some(format!(
                        "{} {}",
                        if min_open { ">" } else { ">=" },
                        fmt_num(min)
                    ))
                };
                let hi = if max == f64::INFINITY {
                    None
                } else {
                    Some(format!(
                        "{} {}",
                        if max_open { "<" } else { "<=" },
                        fmt_num(max)
                    ))
                };
                match (lo, hi) {
                    (Some(l), Some(h)) => format!("a number {l} and {h}"),
                    (Some(l), None) => format!("a number {l}"),
                    (None, Some(h)) => format!("a number {h}"),
                    (None, None) => "a number".into(),
                }
            }
            ParamKind::Int { min, max } if max == i64::MAX => format!("an integer >= {min}"),
            ParamKind::Int { min, max } => format!("an integer from {min} to {max}"),
            ParamKind::Bool => "`true` or `false`".into(),
            ParamKind::ClassWeight => {
                "`balanced`, or a map of class to a weight > 0 such as `{\"yes\": 3.0, \"no\": 1.0}`".into()
            }
            ParamKind::Column => "the name of a numeric column of the model's input".into(),
            ParamKind::Choice(c) => format!(
                "one of {}",
                c.iter()
                    .map(|x| format!("`{x}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub kind: ParamKind,
    /// The default, as written in a `.mlp` file; `None` means "unset" (for
    /// example no depth limit).
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct AlgorithmSpec {
    pub name: &'static str,
    pub tasks: &'static [TaskKind],
    pub params: &'static [ParamSpec],
    pub doc: &'static str,
}

const POS: ParamKind = ParamKind::Float {
    min: 0.0,
    max: f64::INFINITY,
    min_open: true,
    max_open: false,
};
const NON_NEG: ParamKind = ParamKind::Float {
    min: 0.0,
    max: f64::INFINITY,
    min_open: false,
    max_open: false,
};
const UNIT: ParamKind = ParamKind::Float {
    min: 0.0,
    max: 1.0,
    min_open: false,
    max_open: false,
};
const UNIT_OPEN_LO: ParamKind = ParamKind::Float {
    min: 0.0,
    max: 1.0,
    min_open: true,
    max_open: false,
};
const ITER: ParamKind = ParamKind::Int {
    min: 1,
    max: 1_000_000,
};
const DEPTH: ParamKind = ParamKind::Int { min: 1, max: 1000 };
const SEED: ParamKind = ParamKind::Int {
    min: 0,
    max: i64::MAX,
};

const FIT_INTERCEPT: ParamSpec = ParamSpec {
    name: "fit_intercept",
    kind: ParamKind::Bool,
    default: Some("true"),
    doc: "learn an intercept term",
};
const MAX_ITER: ParamSpec = ParamSpec {
    name: "max_iter",
    kind: ITER,
    default: Some("1000"),
    doc: "iteration limit of the solver",
};
const TOL: ParamSpec = ParamSpec {
    name: "tol",
    kind: POS,
    default: Some("0.0001"),
    doc: "stopping tolerance of the solver",
};
const MAX_DEPTH: ParamSpec = ParamSpec {
    name: "max_depth",
    kind: DEPTH,
    default: None,
    doc: "the deepest a tree may grow (unset: no limit)",
};
const MIN_SAMPLES_LEAF: ParamSpec = ParamSpec {
    name: "min_samples_leaf",
    kind: ParamKind::Int {
        min: 1,
        max: i64::MAX,
    },
    default: Some("1"),
    doc: "the fewest training rows in a leaf",
};
const MIN_SAMPLES_SPLIT: ParamSpec = ParamSpec {
    name: "min_samples_split",
    kind: ParamKind::Int {
        min: 2,
        max: i64::MAX,
    },
    default: Some("2"),
    doc: "the fewest training rows a node needs to be split",
};
const CRITERION: ParamSpec = ParamSpec {
    name: "criterion",
    kind: ParamKind::Choice(&["gini", "entropy"]),
    default: Some("gini"),
    doc: "the split quality measure",
};
const SEED_PARAM: ParamSpec = ParamSpec {
    name: "seed",
    kind: SEED,
    default: Some("42"),
    doc: "random seed (results are reproducible for a given seed)",
};
const N_ESTIMATORS: ParamSpec = ParamSpec {
    name: "n_estimators",
    kind: ParamKind::Int {
        min: 1,
        max: 10_000,
    },
    default: Some("100"),
    doc: "the number of trees",
};

/// Weights of the classes in the fit, as scikit-learn's `class_weight`:
/// `balanced` weighs each class by `rows / (classes × rows of the class)`
/// (computed on the rows fitted), a map weighs the classes it names (the
/// others 1).
pub const CLASS_WEIGHT: ParamSpec = ParamSpec {
    name: "class_weight",
    kind: ParamKind::ClassWeight,
    default: None,
    doc: "weights of the classes in the fit, as scikit-learn's: `balanced` (rows / (classes × rows of the class)) or `{\"yes\": 3.0}` (unnamed classes 1)",
};

/// Each training row's weight from a column of the model's input, as
/// scikit-learn's `sample_weight` (multiplied by `class_weight`'s when both
/// are given); the column is then not an input.
pub const SAMPLE_WEIGHT: ParamSpec = ParamSpec {
    name: "sample_weight",
    kind: ParamKind::Column,
    default: None,
    doc: "a numeric column whose values weigh each training row in the fit, as scikit-learn's `sample_weight` (not an input; weights >= 0)",
};

/// Algorithms that take a missing (null) input natively: a nullable
/// numeric input needs no `impute` for them (E0705 does not apply).
pub fn accepts_missing(algorithm: &str) -> bool {
    algorithm == "gradient_boosting"
}

/// Algorithms that split a `category` input by its levels natively: such an
/// input needs no encoding for them (E0704 does not apply).
pub fn accepts_categories(algorithm: &str) -> bool {
    algorithm == "gradient_boosting"
}

/// The decision threshold of a binary classifier (every algorithm that
/// gives probabilities): the positive class is predicted when its
/// probability is at least this.
pub const THRESHOLD: ParamSpec = ParamSpec {
    name: "threshold",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1.0,
        min_open: true,
        max_open: true,
    },
    default: None,
    doc: "binary classification: predict the positive class (the last: `true`) when its probability is at least this (unset: the most probable class, as 0.5)",
};

use TaskKind::*;

/// Every algorithm a `model` may name.
pub const ALGORITHMS: &[AlgorithmSpec] = &[
    AlgorithmSpec {
        name: "linear_regression",
        tasks: &[Regression],
        params: &[FIT_INTERCEPT],
        doc: "ordinary least squares",
    },
    AlgorithmSpec {
        name: "ridge",
        tasks: &[Regression],
        params: &[
            ParamSpec {
                name: "alpha",
                kind: NON_NEG,
                default: Some("1.0"),
                doc: "L2 penalty, as scikit-learn's Ridge: minimises ||y - Xw||² + alpha·||w||²",
            },
            FIT_INTERCEPT,
        ],
        doc: "least squares with an L2 penalty",
    },
    AlgorithmSpec {
        name: "lasso",
        tasks: &[Regression],
        params: &[
            ParamSpec {
                name: "alpha",
                kind: POS,
                default: Some("1.0"),
                doc: "L1 penalty, as scikit-learn's Lasso: (1/2n)·||y - Xw||² + alpha·||w||₁",
            },
            MAX_ITER,
            TOL,
            FIT_INTERCEPT,
        ],
        doc: "least squares with an L1 penalty",
    },
    AlgorithmSpec {
        name: "elastic_net",
        tasks: &[Regression],
        params: &[
            ParamSpec {
                name: "alpha",
                kind: POS,
                default: Some("1.0"),
                doc: "overall penalty strength, as scikit-learn's ElasticNet",
            },
            ParamSpec {
                name: "l1_ratio",
                kind: UNIT,
                default: Some("0.5"),
                doc: "the L1 share of the penalty (0: ridge, 1: lasso)",
            },
            MAX_ITER,
            TOL,
            FIT_INTERCEPT,
        ],
        doc: "least squares with mixed L1 and L2 penalties",
    },
    AlgorithmSpec {
        name: "logistic_regression",
        tasks: &[Binary, Multiclass],
        params: &[
            ParamSpec {
                name: "c",
                kind: POS,
                default: Some("1.0"),
                doc: "inverse regularisation strength, as scikit-learn's C",
            },
            ParamSpec {
                name: "max_iter",
                kind: ITER,
                default: Some("100"),
                doc: "iteration limit of the solver",
            },
            TOL,
            FIT_INTERCEPT,
            CLASS_WEIGHT,
            SAMPLE_WEIGHT,
        ],
        doc: "logistic regression (binary or multinomial)",
    },
    AlgorithmSpec {
        name: "decision_tree",
        tasks: &[Binary, Multiclass],
        params: &[
            MAX_DEPTH,
            MIN_SAMPLES_SPLIT,
            MIN_SAMPLES_LEAF,
            CRITERION,
            CLASS_WEIGHT,
            SAMPLE_WEIGHT,
        ],
        doc: "a CART decision tree",
    },
    AlgorithmSpec {
        name: "random_forest",
        tasks: &[Binary, Multiclass],
        params: &[
            N_ESTIMATORS,
            MAX_DEPTH,
            MIN_SAMPLES_LEAF,
            ParamSpec {
                name: "max_features",
                kind: UNIT_OPEN_LO,
                default: Some("1.0"),
                doc: "the share of features each tree sees",
            },
            ParamSpec {
                name: "max_samples",
                kind: UNIT_OPEN_LO,
                default: Some("1.0"),
                doc: "the share of training rows each tree is fitted on (bootstrap)",
            },
            SEED_PARAM,
            CLASS_WEIGHT,
            SAMPLE_WEIGHT,
        ],
        doc: "bagged decision trees",
    },
    AlgorithmSpec {
        name: "adaboost",
        tasks: &[Binary, Multiclass],
        params: &[
            ParamSpec {
                name: "n_estimators",
                kind: ParamKind::Int {
                    min: 1,
                    max: 10_000,
                },
                default: Some("50"),
                doc: "the number of boosting rounds",
            },
            ParamSpec {
                name: "learning_rate",
                kind: POS,
                default: Some("1.0"),
                doc: "shrinks each round's weight",
            },
            ParamSpec {
                name: "max_depth",
                kind: DEPTH,
                default: Some("1"),
                doc: "depth of each weak learner (1: stumps)",
            },
            SEED_PARAM,
        ],
        doc: "AdaBoost over shallow trees",
    },
    AlgorithmSpec {
        name: "gradient_boosting",
        tasks: &[Regression, Binary, Multiclass],
        params: &[
            ParamSpec {
                name: "loss",
                kind: ParamKind::Choice(&["squared_error", "absolute_error", "huber", "log_loss"]),
                default: None,
                doc: "squared_error (the default), absolute_error or huber for regression, log_loss for classification",
            },
            ParamSpec {
                name: "alpha",
                kind: UNIT_OPEN_LO,
                default: Some("0.9"),
                doc: "with loss = huber: the quantile of the absolute residuals where the loss turns from squared to linear",
            },
            ParamSpec {
                name: "learning_rate",
                kind: POS,
                default: Some("0.1"),
                doc: "the shrinkage of each tree's values",
            },
            ParamSpec {
                name: "max_iter",
                kind: ITER,
                default: Some("100"),
                doc: "boosting iterations (trees per output)",
            },
            ParamSpec {
                name: "max_leaf_nodes",
                kind: ParamKind::Int {
                    min: 2,
                    max: 65_536,
                },
                default: Some("31"),
                doc: "the most leaves of a tree (grown best-first)",
            },
            MAX_DEPTH,
            ParamSpec {
                name: "min_samples_leaf",
                kind: ParamKind::Int {
                    min: 1,
                    max: i64::MAX,
                },
                default: Some("20"),
                doc: "the fewest training rows in a leaf",
            },
            ParamSpec {
                name: "l2_regularization",
                kind: NON_NEG,
                default: Some("0.0"),
                doc: "the L2 penalty on leaf values",
            },
            ParamSpec {
                name: "max_bins",
                kind: ParamKind::Int { min: 2, max: 255 },
                default: Some("255"),
                doc: "bins per input (a missing value has one more of its own)",
            },
            ParamSpec {
                name: "early_stopping",
                kind: ParamKind::Choice(&["auto", "true", "false"]),
                default: Some("auto"),
                doc: "stop when the validation loss stops improving (auto: with more than 10,000 rows)",
            },
            ParamSpec {
                name: "validation_fraction",
                kind: UNIT_OPEN_LO,
                default: Some("0.1"),
                doc: "the share of train held out for early stopping",
            },
            ParamSpec {
                name: "n_iter_no_change",
                kind: ParamKind::Int { min: 1, max: 10_000 },
                default: Some("10"),
                doc: "iterations without improvement before stopping",
            },
            ParamSpec {
                name: "tol",
                kind: NON_NEG,
                default: Some("0.0000001"),
                doc: "the least improvement of the validation loss that counts",
            },
            SEED_PARAM,
            CLASS_WEIGHT,
            SAMPLE_WEIGHT,
        ],
        doc: "histogram gradient-boosted trees (scikit-learn's HistGradientBoosting*)",
    },
    AlgorithmSpec {
        name: "gaussian_nb",
        tasks: &[Binary, Multiclass],
        params: &[ParamSpec {
            name: "var_smoothing",
            kind: NON_NEG,
            default: Some("1e-9"),
            doc: "share of the largest variance added for stability, as scikit-learn's",
        }],
        doc: "Gaussian naive Bayes",
    },
    AlgorithmSpec {
        name: "svm",
        tasks: &[Binary, Regression],
        params: &[
            ParamSpec {
                name: "c",
                kind: POS,
                default: Some("1.0"),
                doc: "penalty on margin violations, as scikit-learn's C",
            },
            ParamSpec {
                name: "kernel",
                kind: ParamKind::Choice(&["linear", "rbf", "polynomial"]),
                default: Some("rbf"),
                doc: "the kernel",
            },
            ParamSpec {
                name: "gamma",
                kind: POS,
                default: Some("1.0"),
                doc: "rbf and polynomial kernel coefficient",
            },
            ParamSpec {
                name: "degree",
                kind: ParamKind::Int { min: 1, max: 10 },
                default: Some("3"),
                doc: "polynomial kernel degree",
            },
            ParamSpec {
                name: "epsilon",
                kind: NON_NEG,
                default: Some("0.1"),
                doc: "width of the insensitive tube (regression)",
            },
        ],
        doc: "support vector machine (binary classification or regression)",
    },
];

pub fn algorithm(name: &str) -> Option<&'static AlgorithmSpec> {
    ALGORITHMS.iter().find(|a| a.name == name)
}

/// A metric's valid values and what it needs.
#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    pub name: &'static str,
    pub regression: bool,
    pub lo: f64,
    pub hi: f64,
    /// Larger is better (accuracy) or smaller (rmse).
    pub higher_is_better: bool,
    pub binary_only: bool,
}

const fn metric(
    name: &'static str,
    regression: bool,
    lo: f64,
    hi: f64,
    higher_is_better: bool,
) -> MetricSpec {
    MetricSpec {
        name,
        regression,
        lo,
        hi,
        higher_is_better,
        binary_only: false,
    }
}

pub const METRICS: &[MetricSpec] = &[
    metric("rmse", true, 0.0, f64::INFINITY, false),
    metric("mae", true, 0.0, f64::INFINITY, false),
    metric("r2", true, f64::NEG_INFINITY, 1.0, true),
    metric("mape", true, 0.0, f64::INFINITY, false),
    metric("accuracy", false, 0.0, 1.0, true),
    metric("precision", false, 0.0, 1.0, true),
    metric("recall", false, 0.0, 1.0, true),
    metric("f1", false, 0.0, 1.0, true),
    MetricSpec {
        binary_only: true,
        ..metric("roc_auc", false, 0.0, 1.0, true)
    },
    metric("log_loss", false, 0.0, f64::INFINITY, false),
    metric("selection_rate", false, 0.0, 1.0, true),
];

pub fn metric_spec(name: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|m| m.name == name)
}

/// Aggregates over a slice's groups.
pub const SLICE_AGGREGATES: &[&str] = &["gap", "ratio", "min", "max"];

/// Drift statistics: (name, for numeric columns, for categorical columns,
/// has a p-value, statistic upper bound).
pub const DRIFT_STATS: &[(&str, bool, bool, bool, f64)] = &[
    ("psi", true, true, false, f64::INFINITY),
    ("ks", true, false, true, 1.0),
    ("wasserstein", true, false, false, f64::INFINITY),
    ("js", true, true, false, 1.0),
    ("chi2", false, true, true, f64::INFINITY),
];

/// Source formats and the options each accepts.
pub const FORMATS: &[(&str, &[&str])] = &[
    (
        "csv",
        &[
            "delimiter",
            "header",
            "null_values",
            "quote",
            "refresh",
            "retries",
            "skip_rows",
        ],
    ),
    ("parquet", &["refresh", "retries"]),
    ("json", &["refresh", "retries"]),
    ("sqlite", &["query", "table"]),
    ("postgres", &["query", "refresh", "retries", "table", "url"]),
];

/// The schemes of a remote file source's path (object stores and HTTP).
pub const REMOTE_SCHEMES: &[&str] = &["s3", "gs", "az", "abfs", "abfss", "http", "https"];

/// URL query parameters that carry a credential (signed URLs, SAS tokens,
/// API keys): written into a pipeline, they are a secret leaked.
pub const SECRET_URL_PARAMETERS: &[&str] = &[
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
    "x-goog-signature",
    "x-goog-credential",
    "sig",
    "signature",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "password",
    "secret",
];

/// Expression functions (outside `over`): name, arity range.
pub const FUNCTIONS: &[(&str, usize, usize)] = &[
    ("coalesce", 2, usize::MAX),
    ("is_null", 1, 1),
    ("float", 1, 1),
    ("int", 1, 1),
    ("str", 1, 1),
    ("bool", 1, 1),
    ("ln", 1, 1),
    ("log10", 1, 1),
    ("exp", 1, 1),
    ("sqrt", 1, 1),
    ("abs", 1, 1),
    ("round", 1, 2),
    ("floor", 1, 1),
    ("ceil", 1, 1),
    ("min", 2, usize::MAX),
    ("max", 2, usize::MAX),
    ("clip", 3, 3),
    ("year", 1, 1),
    ("month", 1, 1),
    ("day", 1, 1),
    ("day_of_week", 1, 1),
    ("day_of_year", 1, 1),
    ("hour", 1, 1),
    ("days_between", 2, 2),
    ("lower", 1, 1),
    ("upper", 1, 1),
    ("len", 1, 1),
    ("contains", 2, 2),
    ("starts_with", 2, 2),
    ("ends_with", 2, 2),
];

/// Aggregates of a `history` block (`days_since` takes `max(TE)`).
pub const HISTORY_AGGREGATES: &[&str] = &[
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "std",
    "last",
    "days_since",
];

/// Options of a `join`.
pub const JOIN_OPTIONS: &[&str] = &["how"];

/// Aggregates usable as `AGG(COL) over KEYS`.
pub const AGGREGATES: &[&str] = &["mean", "median", "sum", "count", "min", "max", "std"];
