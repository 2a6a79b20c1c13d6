//! The plan's canonical form: unchanged by comments, formatting, declaration
//! order and file layout; changed by any edit that changes meaning.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::FakeWorld;
use mlp_compiler::{compile, compile_str, Plan, SourceMap};

const PIPELINE: &str = r#"
# houses: predict the price
source houses = csv("data/houses.csv") {
    id       : int
    sold_at  : date "%Y-%m-%d"
    city     : category
    sqft     : float
    bedrooms : int?
    price    : float
}
check houses {
    unique id
    values city in ["Austin", "Boston"]
}
split data = houses { train = 0.8  test = 0.2  seed = 42  key = id }
transform prep = data {
    impute bedrooms with median
    encode city with onehot
    scale sqft with standard
}
features feats = prep {
    age      = 2024 - year(sold_at)
    per_room = sqft / (bedrooms + 1)
}
model price_model = ridge(feats) {
    target  = price
    exclude = id, sold_at
    alpha   = [0.1, 1.0]
    tune { cv = 3  metric = rmse }
}
evaluate price_model on test {
    metrics rmse, r2
    require r2 >= 0.5
}
deploy price_model as "house-price" { alias = "production" }
"#;

fn plan(text: &str) -> Plan {
    let (_, c) = compile_str("p.mlp", text, &FakeWorld);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    c.plan.expect("plan")
}

fn canon(p: &Plan) -> Vec<(String, Vec<String>, String)> {
    p.stages
        .iter()
        .map(|s| (s.id.clone(), s.inputs.clone(), s.canonical.clone()))
        .collect()
}

/// Splits the pipeline into its declarations (each starts at column 0).
fn decls(text: &str) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('}') {
            out.push(String::new());
        }
        if let Some(last) = out.last_mut() {
            last.push_str(line);
            last.push('\n');
        }
    }
    out
}

#[test]
fn comments_whitespace_and_order_do_not_change_the_plan() {
    let base = plan(PIPELINE);
    // Reformatted: everything on as few lines as possible, odd indentation.
    let squashed = PIPELINE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n\t   ");
    // Recommented: comments everywhere.
    let commented = PIPELINE
        .lines()
        .map(|l| format!("{l}   # a comment"))
        .collect::<Vec<_>>()
        .join("\n# another comment\n");
    // Reordered: declarations in reverse order.
    let mut d = decls(PIPELINE);
    d.reverse();
    let reordered = d.join("\n");
    for variant in [squashed, commented, reordered] {
        let p = plan(&variant);
        assert_eq!(canon(&base), canon(&p), "variant:\n{variant}");
        assert_eq!(base.fingerprint(), p.fingerprint());
    }
}

#[test]
fn splitting_across_files_does_not_change_the_plan() {
    let base = plan(PIPELINE);
    let d = decls(PIPELINE);
    let mut sources = SourceMap::new();
    for (i, chunk) in d.chunks(3).enumerate() {
        sources.add(format!("part{i}.mlp"), chunk.join("\n"));
    }
    let c = compile(&sources, &FakeWorld);
    assert!(!c.has_errors(), "{:?}", c.diagnostics);
    assert_eq!(canon(&base), canon(&c.plan.expect("plan")));
}

#[test]
fn semantic_edits_change_exactly_the_edited_stage() {
    let base = plan(PIPELINE);
    let edits = [
        (
            "age      = 2024 - year(sold_at)",
            "age      = 2025 - year(sold_at)",
            "features.feats",
        ),
        ("seed = 42", "seed = 7", "split.data"),
        (
            "scale sqft with standard",
            "scale sqft with robust",
            "transform.prep",
        ),
        (
            "alpha   = [0.1, 1.0]",
            "alpha   = [0.1, 10.0]",
            "model.price_model",
        ),
        (
            "require r2 >= 0.5",
            "require r2 >= 0.6",
            "evaluate.price_model.test",
        ),
        ("unique id", "unique id, sqft", "check.houses"),
        ("data/houses.csv", "data/houses2.csv", "source.houses"),
    ];
    for (from, to, stage) in edits {
        assert!(PIPELINE.contains(from), "{from}");
        let edited = plan(&PIPELINE.replace(from, to));
        assert_ne!(base.fingerprint(), edited.fingerprint(), "{from} -> {to}");
        let changed: Vec<&str> = base
            .stages
            .iter()
            .zip(&edited.stages)
            .filter(|(a, b)| a.definition_hash != b.definition_hash)
            .map(|(a, _)| a.id.as_str())
            .collect();
        assert_eq!(changed, vec![stage], "{from} -> {to}");
    }
}

#[test]
fn the_plan_round_trips_through_json() {
    let p = plan(PIPELINE);
    let json = serde_json::to_string(&p).expect("serialise");
    let back: Plan = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(p, back);
    assert_eq!(p.version, mlp_compiler::plan::PLAN_VERSION);
}
