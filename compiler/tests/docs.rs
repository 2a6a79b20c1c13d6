//! Docs are tested: every ```mlp block in `docs/*.md`, `README.md` and
//! `ARCHITECTURE.md` is a complete pipeline that checks without errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{render, FakeWorld};
use mlp_compiler::compile_str;
use std::path::Path;

fn mlp_blocks(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in text.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```mlp") => cur = Some(String::new()),
            (Some(_), "```") => out.push(cur.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_mlp_block_in_the_docs_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut blocks = 0;
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (i, b) in mlp_blocks(&text).into_iter().enumerate() {
            let name = format!("{}#{}", f.file_name().unwrap().to_string_lossy(), i + 1);
            let (sources, c) = compile_str(&name, &b, &FakeWorld);
            assert!(!c.has_errors(), "{name}:\n{b}\n{}", render(&c, &sources));
            blocks += 1;
        }
    }
    assert!(blocks >= 2, "found only {blocks} mlp blocks in the docs");
}
