//! Fixture tests: every `tests/fixtures/err/*.mlp` reports exactly the codes
//! its header names, rendered as snapshotted; every `tests/fixtures/ok/*.mlp`
//! compiles, with a snapshot of its plan's stages and schemas.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{expected_codes, fixtures, render, FakeWorld};
use mlp_compiler::compile_str;
use std::collections::BTreeSet;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("../../tests/snapshots");
    s.set_prepend_module_to_snapshot(false);
    s
}

#[test]
fn err_fixtures_report_their_codes() {
    let mut failures = vec![];
    for (name, text) in fixtures("err") {
        let expected: BTreeSet<String> = expected_codes(&text).into_iter().collect();
        assert!(!expected.is_empty(), "{name}: no `# expect:` header");
        let (sources, c) = compile_str(&format!("{name}.mlp"), &text, &FakeWorld);
        let found: BTreeSet<String> = c.diagnostics.iter().map(|d| d.code.to_string()).collect();
        if found != expected {
            failures.push(format!(
                "{name}: expected {expected:?}, found {found:?}\n{}",
                render(&c, &sources)
            ));
            continue;
        }
        // Every diagnostic points somewhere and says how to fix it.
        for d in &c.diagnostics {
            if d.span().is_none() || d.help.is_none() {
                failures.push(format!("{name}: {} lacks a span or a help line", d.code));
            }
        }
        settings().bind(|| insta::assert_snapshot!(format!("err__{name}"), render(&c, &sources)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn ok_fixtures_compile() {
    for (name, text) in fixtures("ok") {
        let (sources, c) = compile_str(&format!("{name}.mlp"), &text, &FakeWorld);
        let errors: Vec<_> = c.diagnostics.iter().filter(|d| d.is_error()).collect();
        assert!(errors.is_empty(), "{name}:\n{}", render(&c, &sources));
        let plan = c.plan.expect("a plan");
        let mut out = String::new();
        for s in &plan.stages {
            out.push_str(&format!("{} <- [{}]\n", s.id, s.inputs.join(", ")));
            for col in &s.schema {
                out.push_str(&format!(
                    "    {}: {}{}{}{}\n",
                    col.name,
                    serde_json::to_string(&col.ty).unwrap(),
                    if col.nullable { " nullable" } else { "" },
                    if col.encoded { " encoded" } else { "" },
                    col.group_of
                        .as_ref()
                        .map(|g| format!(" group of {g}"))
                        .unwrap_or_default()
                ));
            }
            if let mlp_compiler::plan::Op::Model(m) = &s.op {
                out.push_str(&format!(
                    "    => {} {:?} features {:?}\n",
                    m.algorithm, m.task, m.features
                ));
            }
        }
        settings().bind(|| insta::assert_snapshot!(format!("ok__{name}"), out));
    }
}
