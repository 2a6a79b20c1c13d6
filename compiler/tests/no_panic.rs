//! No input makes the compiler panic: random text, and valid pipelines with
//! random edits (deleted, duplicated and swapped tokens, truncations).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixtures, FakeWorld};
use mlp_compiler::compile_str;
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    let mut c: Vec<String> = fixtures("ok").into_iter().map(|(_, t)| t).collect();
    c.extend(fixtures("err").into_iter().map(|(_, t)| t));
    c
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for ch in text.chars() {
        if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            cur.push(ch);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            out.push(ch.to_string());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Insert(usize, String),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let piece = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("(".to_string()),
        Just("\"".to_string()),
        Just("over".to_string()),
        Just("..".to_string()),
        Just("?".to_string()),
        Just("-".to_string()),
        Just("9999999999999999999999".to_string()),
        Just("1e999".to_string()),
        Just("é".to_string()),
        Just("\n".to_string()),
        "[a-z_]{1,8}",
    ];
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), piece).prop_map(|(a, p)| Edit::Insert(a, p)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut toks: Vec<String>, edits: &[Edit]) -> String {
    for e in edits {
        if toks.is_empty() {
            break;
        }
        let n = toks.len();
        match e {
            Edit::Delete(i) => {
                toks.remove(i % n);
            }
            Edit::Duplicate(i) => {
                let t = toks[i % n].clone();
                toks.insert(i % n, t);
            }
            Edit::Swap(a, b) => toks.swap(a % n, b % n),
            Edit::Insert(i, p) => toks.insert(i % (n + 1), p.clone()),
            Edit::Truncate(i) => toks.truncate(i % n),
        }
    }
    toks.concat()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_pipelines_never_panic(which in any::<usize>(), edits in prop::collection::vec(edit(), 1..6)) {
        let c = corpus();
        let text = apply(tokens(&c[which % c.len()]), &edits);
        let (sources, comp) = compile_str("fuzz.mlp", &text, &FakeWorld);
        // Rendering must not panic either (spans stay inside the text).
        for d in &comp.diagnostics {
            for l in &d.labels {
                prop_assert!(l.span.end <= text.len() && l.span.start <= l.span.end);
            }
            let _ = d.to_json(&sources);
        }
        let _ = common::render(&comp, &sources);
    }

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let (sources, comp) = compile_str("fuzz.mlp", &text, &FakeWorld);
        let _ = common::render(&comp, &sources);
    }
}

/// Deep shapes: long operator chains, nested parentheses, nested calls,
/// nested lists and `if`s, at any depth up to far past the limit. Each
/// compiles or is refused with E0010 at a span inside the text; none
/// overflows a stack (the test threads' stacks are 2 MiB).
fn deep(shape: usize, n: usize) -> String {
    let e = match shape % 5 {
        0 => vec!["x"; n].join(" + "),
        1 => format!("{}x{}", "(".repeat(n), ")".repeat(n)),
        2 => format!("{}x{}", "abs(".repeat(n), ")".repeat(n)),
        3 => format!("{}x{}", "-".repeat(n), ""),
        _ => format!("{}x{}", "if x > 0 then ".repeat(n), " else 1.0".repeat(n)),
    };
    format!("source d = csv(\"d.csv\") {{ x : float }}\nfeatures f = d {{ y = {e} }}\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn deep_expressions_compile_or_are_refused_by_code(shape in 0usize..5, n in 1usize..6000) {
        let text = deep(shape, n);
        // On the stack the `mlp` binary gives every thread (16 MiB, its
        // RUST_MIN_STACK): a debug build checking a 100-deep expression needs
        // more than a test thread's 2 MiB.
        let t = text.clone();
        let (codes, spans_ok) = std::thread::Builder::new()
            .stack_size(16 << 20)
            .spawn(move || {
                let (sources, comp) = compile_str("deep.mlp", &t, &FakeWorld);
                let codes: Vec<&'static str> = comp.diagnostics.iter().map(|d| d.code).collect();
                let spans_ok = comp
                    .diagnostics
                    .iter()
                    .all(|d| d.labels.iter().all(|l| l.span.end <= t.len()));
                let _ = common::render(&comp, &sources);
                (codes, spans_ok)
            })
            .expect("a thread")
            .join()
            .expect("the compiler does not panic");
        if n <= 90 {
            prop_assert!(!codes.contains(&"E0010"), "{shape} {n}: {codes:?}");
        }
        if n > 101 {
            prop_assert!(codes.contains(&"E0010"), "{shape} {n}: {codes:?}");
        }
        prop_assert!(spans_ok);
    }
}

/// A label past the 65,535th column of a line (a generated pipeline's one
/// long line) made the report renderer panic ("Formatting argument out of
/// range"); on a line that long every label is a note with its place.
#[test]
fn a_label_far_along_a_long_line_is_rendered_as_a_note() {
    let text = deep(0, 50_000);
    let t = text.clone();
    let out = std::thread::Builder::new()
        .stack_size(16 << 20)
        .spawn(move || {
            let (sources, comp) = compile_str("deep.mlp", &t, &FakeWorld);
            common::render(&comp, &sources)
        })
        .expect("a thread")
        .join()
        .expect("rendering does not panic");
    assert!(out.contains("E0010"), "{out}");
    assert!(out.contains("deep.mlp:2:"), "{out}");
    assert!(out.contains("too deep from here"), "{out}");
    // The line is not printed.
    assert!(out.len() < 2_000, "{}", out.len());
}
