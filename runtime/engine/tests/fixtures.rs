//! Runtime fixtures, run through the library (not the binary): each folder
//! under `tests/fixtures/` holds `pipeline.mlp` and its data. A snapshot
//! records, per stage, its status, its output's schema and first rows, and
//! its report (numbers to 4 decimals). A second test fails when a catalog
//! function, aggregate, algorithm, metric or drift statistic is exercised by
//! no fixture: a word added to the language needs a fixture that runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use mlp_compiler::plan::{Expr, Op, Plan, RuleOp, StepOp};
use mlp_engine::plugins::NoHost;
use mlp_engine::project::Project;
use mlp_engine::run;
use mlp_store::fingerprint::FileHashes;
use mlp_store::store::Store;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pipeline.mlp").is_file())
        .collect();
    dirs.sort();
    dirs
}

fn compile(dir: &Path) -> (Project, Plan) {
    let project = Project::load(dir).unwrap();
    let c = project.compile();
    let plan = c.plan.expect("the fixture checks");
    (project, plan)
}

/// Numbers to 4 decimals, so a snapshot does not hang on the last bits.
fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            serde_json::Number::from_f64((f * 1e4).round() / 1e4)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, rounded(v))).collect()),
        other => other,
    }
}

/// Runs a fixture in a copy of its folder; the text of its snapshot.
fn run_fixture(dir: &Path) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let work =
        std::env::temp_dir().join(format!("mlp-engine-fixture-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, work.join(p.file_name().unwrap())).unwrap();
    }
    let (project, plan) = compile(&work);
    let store = Store::open(&project.root).unwrap();
    let mut hashes = FileHashes::load(&store.root);
    let stages = run::plan_stages(&plan, &project.root, Some(&store), &mut hashes);
    let results = run::run_plan(&plan, &project.root, &store, &stages, 1, &NoHost, &|_| {});
    let mut out = String::new();
    for (st, sp) in plan.stages.iter().zip(&stages) {
        let r = results.iter().find(|r| r.id == st.id).unwrap();
        out.push_str(&format!("== {} ({})\n", st.id, r.status));
        if let Some(e) = &r.error {
            out.push_str(&format!("error: {e}\n"));
        }
        let Some(key) = &sp.key else { continue };
        let Some(meta) = store.lookup(key) else {
            continue;
        };
        if meta.has_frame() {
            let df = run::cached_frame(&store, key).unwrap();
            let schema: Vec<String> = df
                .columns()
                .iter()
                .map(|c| format!("{}: {}", c.name(), c.dtype()))
                .collect();
            out.push_str(&format!(
                "rows: {}\nschema: {}\n",
                df.height(),
                schema.join(", ")
            ));
            for rec in mlp_engine::exec::records(&df, 2) {
                out.push_str(&format!("{}\n", rounded(rec)));
            }
        }
        if meta.files.iter().any(|f| f == "report.json") {
            let path = store.checked_path(key, "report.json").unwrap();
            let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
            out.push_str(&format!("report: {}\n", rounded(v)));
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    out
}

#[test]
fn fixtures_run_as_snapshotted() {
    for dir in fixtures() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let text = run_fixture(&dir);
        assert!(!text.contains("(failed)"), "{name}: {text}");
        insta::assert_snapshot!(name, text);
    }
}

/// The words a plan uses.
#[derive(Default)]
struct Used {
    functions: BTreeSet<String>,
    aggregates: BTreeSet<String>,
    history: BTreeSet<String>,
    algorithms: BTreeSet<String>,
    metrics: BTreeSet<String>,
    drift: BTreeSet<String>,
}

fn walk(e: &Expr, u: &mut Used) {
    match e {
        Expr::Lit { .. } | Expr::Col { .. } => {}
        Expr::List { items } => items.iter().for_each(|i| walk(i, u)),
        Expr::Unary { arg, .. } => walk(arg, u),
        Expr::Binary { left, right, .. } => {
            walk(left, u);
            walk(right, u);
        }
        Expr::If {
            cond,
            then,
            otherwise,
        } => {
            walk(cond, u);
            walk(then, u);
            walk(otherwise, u);
        }
        Expr::Call { func, args } => {
            u.functions.insert(func.to_string());
            args.iter().for_each(|a| walk(a, u));
        }
        Expr::Plugin { args, .. } => args.iter().for_each(|a| walk(a, u)),
        Expr::Over { agg, arg, .. } => {
            u.aggregates.insert(agg.to_string());
            walk(arg, u);
        }
    }
}

fn used(plan: &Plan, u: &mut Used) {
    for st in &plan.stages {
        match &st.op {
            Op::Features(f) => f.features.iter().for_each(|f| walk(&f.expr, u)),
            Op::Check(c) => {
                for r in &c.rules {
                    if let RuleOp::Expect { expr } = &r.rule {
                        walk(expr, u);
                    }
                }
            }
            Op::Transform(t) => {
                for s in &t.steps {
                    if let StepOp::Filter { expr, .. } = s {
                        walk(expr, u);
                    }
                }
            }
            Op::Model(m) => {
                u.algorithms.insert(m.algorithm.to_string());
                if let Some(t) = &m.tune {
                    u.metrics.insert(t.metric.to_string());
                }
            }
            Op::Evaluate(e) => {
                u.metrics.extend(e.metrics.iter().map(|m| m.to_string()));
                for g in e.gates.iter().chain(e.slices.iter().flat_map(|s| &s.gates)) {
                    u.metrics.insert(g.metric.to_string());
                }
            }
            Op::Monitor(m) => {
                u.drift.extend(m.drift.iter().map(|d| d.stat.to_string()));
            }
            Op::History(h) => {
                for a in &h.aggregates {
                    u.history.insert(a.agg.to_string());
                    if let Some(e) = &a.arg {
                        walk(e, u);
                    }
                }
            }
            Op::Source(_) | Op::Split(_) | Op::Join(_) | Op::Deploy(_) => {}
        }
    }
}

#[test]
fn every_catalog_word_is_exercised_by_a_fixture() {
    use mlp_compiler::catalog;
    let mut u = Used::default();
    for dir in fixtures() {
        let (_, plan) = compile(&dir);
        used(&plan, &mut u);
    }
    let missing = |kind: &str, all: Vec<&str>, seen: &BTreeSet<String>| {
        let gaps: Vec<&str> = all.into_iter().filter(|w| !seen.contains(*w)).collect();
        assert!(
            gaps.is_empty(),
            "no runtime fixture exercises the {kind} {gaps:?}: add them to a pipeline under runtime/engine/tests/fixtures/"
        );
    };
    missing(
        "functions",
        catalog::FUNCTIONS.iter().map(|f| f.0).collect(),
        &u.functions,
    );
    missing("aggregates", catalog::AGGREGATES.to_vec(), &u.aggregates);
    missing(
        "history aggregates",
        catalog::HISTORY_AGGREGATES.to_vec(),
        &u.history,
    );
    missing(
        "algorithms",
        catalog::ALGORITHMS.iter().map(|a| a.name).collect(),
        &u.algorithms,
    );
    missing(
        "metrics",
        catalog::METRICS.iter().map(|m| m.name).collect(),
        &u.metrics,
    );
    missing(
        "drift statistics",
        catalog::DRIFT_STATS.iter().map(|d| d.0).collect(),
        &u.drift,
    );
}
