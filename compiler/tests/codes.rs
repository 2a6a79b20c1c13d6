//! Every diagnostic code has its doc (`docs/codes/CODE.md`) and its fixture,
//! and every doc's example still reports its code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{expected_codes, fixtures, FakeWorld};
use mlp_compiler::codes::{explain, CODES};
use mlp_compiler::compile_str;
use std::collections::BTreeSet;

#[test]
fn every_code_has_a_doc_with_its_sections() {
    for (code, doc) in CODES {
        assert!(doc.starts_with(&format!("# {code}: ")), "{code}: doc title");
        for section in [
            "## Why it is reported",
            "## Example",
            "## How to fix",
            "```mlp",
        ] {
            assert!(doc.contains(section), "{code}: doc lacks `{section}`");
        }
    }
    assert!(explain("e0201").is_some(), "explain is case-insensitive");
    assert!(explain("E9999").is_none());
}

#[test]
fn every_code_has_a_fixture_and_every_fixture_a_code() {
    let fixture_codes: BTreeSet<String> = fixtures("err")
        .iter()
        .flat_map(|(_, text)| expected_codes(text))
        .collect();
    let codes: BTreeSet<String> = CODES.iter().map(|(c, _)| c.to_string()).collect();
    let missing: Vec<_> = codes.difference(&fixture_codes).collect();
    assert!(missing.is_empty(), "codes without a fixture: {missing:?}");
    let undocumented: Vec<_> = fixture_codes.difference(&codes).collect();
    assert!(
        undocumented.is_empty(),
        "codes without a doc: {undocumented:?}"
    );
}

#[test]
fn every_doc_example_reports_its_code() {
    for (code, doc) in CODES {
        let start = doc.find("```mlp\n").expect("an example") + "```mlp\n".len();
        let end = start + doc[start..].find("```").expect("closed example");
        let example = &doc[start..end];
        let (_, c) = compile_str("example.mlp", example, &FakeWorld);
        assert!(
            c.diagnostics.iter().any(|d| d.code == *code),
            "{code}: the doc's example does not report it (found {:?})",
            c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>()
        );
    }
}

/// `docs/codes/README.md` is the table's docs index, generated: set
/// `MLP_UPDATE_DOCS=1` to rewrite it after adding a code.
#[test]
fn the_docs_index_is_generated_from_the_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/codes/README.md");
    let want = mlp_compiler::codes::docs_index();
    if std::env::var_os("MLP_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        have, want,
        "docs/codes/README.md is out of date: run the tests with MLP_UPDATE_DOCS=1"
    );
}
