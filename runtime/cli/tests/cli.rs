//! The `mlp` binary end to end, as a user runs it: exit codes, output on
//! stdout and stderr, real files in temporary folders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mlp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mlp"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mlp")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A fresh folder under the target directory.
fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlp-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
fn every_example_checks() {
    let examples = repo().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&examples).expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        let o = mlp(&["check", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", dir.display(), stderr(&o));
        assert!(stderr(&o).contains("ok:"), "{}", stderr(&o));
        seen += 1;
    }
    assert!(
        seen >= 4,
        "expected the four example pipelines, found {seen}"
    );
}

#[test]
fn errors_exit_1_with_codes_spans_and_help() {
    let dir = tempdir("errors");
    let file = dir.join("bad.mlp");
    std::fs::write(
        &file,
        r#"source houses = csv("h.csv") {
    id    : int
    sqft  : float
    price : float
}
split data = houses { train = 0.8  test = 0.2 }
features f = data {
    per_room = sqtf / 2
    leak     = price * 2
}
model m = ridge(f) { target = price }
"#,
    )
    .unwrap();
    let o = mlp(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("E0201"), "{err}");
    assert!(err.contains("did you mean `sqft`?"), "{err}");
    assert!(err.contains("E0707"), "{err}");
    assert!(err.contains("bad.mlp:8:16"), "{err}");
    assert!(err.contains("failed: 2 errors"), "{err}");

    let o = mlp(&["check", file.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["ok"], false);
    let diags = v["diagnostics"].as_array().expect("array");
    assert_eq!(diags.len(), 2);
    assert_eq!(diags[0]["code"], "E0201");
    assert_eq!(diags[0]["file"], "bad.mlp");
    assert_eq!(diags[0]["line"], 8);
    assert_eq!(diags[0]["column"], 16);
    assert!(diags[0]["help"].as_str().unwrap().contains("sqft"));
    assert_eq!(diags[1]["code"], "E0707");
}

#[test]
fn a_project_folder_is_one_namespace() {
    let dir = tempdir("project");
    std::fs::create_dir_all(dir.join("stages")).unwrap();
    std::fs::create_dir_all(dir.join(".mlp")).unwrap();
    std::fs::write(
        dir.join("sources.mlp"),
        "source s = csv(\"data/s.csv\") {\n  x : float\n  y : float\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("stages/model.mlp"),
        "split d = s { train = 0.5  test = 0.5 }\nmodel m = ridge(d) { target = y }\n",
    )
    .unwrap();
    // Hidden folders and the state folder are not part of the project.
    std::fs::write(dir.join(".mlp/ignored.mlp"), "this is not mlp").unwrap();
    let o = mlp(&["check", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("3 stages in 2 files"), "{}", stderr(&o));

    // Errors name the file they are in, relative to the project.
    std::fs::write(
        dir.join("stages/model.mlp"),
        "split d = s { train = 0.5  test = 0.5 }\nmodel m = ridge(d) { target = z }\n",
    )
    .unwrap();
    let o = mlp(&["check", dir.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["diagnostics"][0]["file"], "stages/model.mlp");
    assert_eq!(v["diagnostics"][0]["code"], "E0201");
}

#[test]
fn bad_paths_and_files_are_clear_errors() {
    let o = mlp(&["check", "/nonexistent/pipeline.mlp"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));

    let dir = tempdir("empty");
    let o = mlp(&["check", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no .mlp files"), "{}", stderr(&o));

    let file = dir.join("binary.mlp");
    std::fs::write(&file, [0xff, 0xfe, 0x00, 0x81]).unwrap();
    let o = mlp(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is not valid UTF-8 text: line 1, byte 1 is 0xFF"),
        "{}",
        stderr(&o)
    );
    // Latin-1 in a comment: the place is named.
    std::fs::write(
        &file,
        b"source d = csv(\"d.csv\") { x : float }\n# caf\xe9\n",
    )
    .unwrap();
    let o = mlp(&["check", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("line 2, byte 6 is 0xE9")
            && stderr(&o).contains("save the file as UTF-8"),
        "{}",
        stderr(&o)
    );

    // Zero workers would never run anything.
    let o = mlp(&["run", "--jobs", "0", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid value '0' for '--jobs"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn explain_prints_the_doc_of_a_code() {
    let o = mlp(&["explain", "E0707"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("# E0707: target leakage"), "{out}");
    assert!(out.contains("## How to fix"));
    let o = mlp(&["explain", "e0201"]);
    assert!(o.status.success());
    let o = mlp(&["explain", "E9999"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown code"), "{}", stderr(&o));
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let houses = repo().join("examples/houses");
    let o = mlp(&["graph", houses.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph pipeline {"), "{dot}");
    assert!(
        dot.contains("\"split.data\" -> \"transform.prep\";"),
        "{dot}"
    );
    assert!(dot.contains("\"check.houses\" -> \"split.data\";"), "{dot}");
    let o = mlp(&["graph", houses.to_str().unwrap(), "--format", "mermaid"]);
    assert!(o.status.success());
    let m = stdout(&o);
    assert!(m.starts_with("flowchart LR"), "{m}");
    assert!(m.contains("features_feats --> model_price_model"), "{m}");

    // A pipeline with errors has no graph.
    let dir = tempdir("graph");
    std::fs::write(dir.join("p.mlp"), "split d = nothing { train = 1.0 }\n").unwrap();
    let o = mlp(&["graph", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("E0004"), "{}", stderr(&o));
}

#[test]
fn infer_prints_a_source_block_that_checks() {
    let dir = tempdir("infer");
    for (file, expect) in [
        (
            "examples/penguins/data/penguins.csv",
            vec![
                "null_values = [\"NA\"]",
                "species           : category[\"Adelie\", \"Chinstrap\", \"Gentoo\"]",
                "year              : int",
            ],
        ),
        (
            "examples/cars/data/cars.ndjson",
            vec![
                "miles_per_gallon : float? as \"Miles_per_Gallon\"",
                "year             : date \"%Y-%m-%d\" as \"Year\"",
            ],
        ),
        (
            "examples/weather/data/seattle-weather.csv",
            vec!["date          : date \"%Y/%m/%d\"", "precipitation : float"],
        ),
    ] {
        let path = repo().join(file);
        let o = mlp(&["infer", path.to_str().unwrap()]);
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        let block = stdout(&o);
        for e in expect {
            assert!(block.contains(e), "{file}: missing `{e}` in\n{block}");
        }
        // What infer prints is a valid pipeline on its own.
        let out = dir.join("inferred.mlp");
        std::fs::write(&out, &block).unwrap();
        let o = mlp(&["check", out.to_str().unwrap()]);
        assert!(o.status.success(), "{file}:\n{block}\n{}", stderr(&o));
    }
    let o = mlp(&["infer", "/nonexistent.csv"]);
    assert_eq!(o.status.code(), Some(2));
    let o = mlp(&["infer", dir.join("x.xlsx").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unsupported file type"),
        "{}",
        stderr(&o)
    );
}

/// A minimal Wasm module: the header and one custom section.
fn wasm_with_section(name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = vec![];
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.push(0);
    leb(body.len(), &mut m);
    m.extend(body);
    m
}

#[test]
fn plugin_signatures_are_read_from_the_module_without_running_it() {
    let dir = tempdir("plugins");
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    // One JSON object per function, as the SDK writes them.
    let sig = br#"{"abi": 1, "name": "coastal", "params": [{"name": "city", "type": "str"}], "returns": {"type": "bool"}}
        {"abi": 1, "name": "region", "params": [{"name": "city", "type": "str", "nullable": true}], "returns": {"type": "str", "nullable": true}}"#;
    std::fs::write(
        dir.join("plugins/geo.wasm"),
        wasm_with_section("mlp:signatures", sig),
    )
    .unwrap();
    std::fs::write(
        dir.join("plugins/nosig.wasm"),
        wasm_with_section("name", b"\0"),
    )
    .unwrap();
    std::fs::write(
        dir.join("plugins/future.wasm"),
        wasm_with_section(
            "mlp:signatures",
            br#"{"abi": 9, "name": "f", "params": [], "returns": {"type": "float"}}"#,
        ),
    )
    .unwrap();
    std::fs::write(dir.join("plugins/junk.wasm"), b"not wasm at all").unwrap();
    let base = "source s = csv(\"s.csv\") {\n  city : str\n  y : float\n}\nsplit d = s { train = 0.5  test = 0.5 }\n";
    let cases = [
        (
            "plugin geo = \"plugins/geo.wasm\"\nfeatures f = d {\n  c = geo.coastal(city)\n}\n",
            None,
        ),
        (
            "plugin geo = \"plugins/geo.wasm\"\nfeatures f = d {\n  c = geo.coastal(y)\n}\n",
            Some("E0604"),
        ),
        (
            "plugin geo = \"plugins/geo.wasm\"\nfeatures f = d {\n  c = geo.inland(city)\n}\n",
            Some("E0602"),
        ),
        ("plugin raw = \"plugins/nosig.wasm\"\n", Some("E0605")),
        ("plugin raw = \"plugins/junk.wasm\"\n", Some("E0605")),
        ("plugin raw = \"plugins/future.wasm\"\n", Some("E0606")),
        ("plugin raw = \"plugins/absent.wasm\"\n", Some("E0601")),
    ];
    for (tail, code) in cases {
        let file = dir.join("p.mlp");
        std::fs::write(&file, format!("{base}{tail}")).unwrap();
        let o = mlp(&["check", file.to_str().unwrap()]);
        match code {
            None => assert!(o.status.success(), "{tail}: {}", stderr(&o)),
            Some(c) => {
                assert_eq!(o.status.code(), Some(1), "{tail}");
                assert!(
                    stderr(&o).contains(c),
                    "{tail}: expected {c}: {}",
                    stderr(&o)
                );
            }
        }
    }
}

#[test]
fn check_plan_prints_the_versioned_plan() {
    let houses = repo().join("examples/houses");
    let o = mlp(&["check", houses.to_str().unwrap(), "--plan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("plan json");
    assert_eq!(v["version"], mlp_compiler::plan::PLAN_VERSION);
    let ids: Vec<&str> = v["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "source.houses",
            "check.houses",
            "split.data",
            "transform.prep",
            "features.feats",
            "model.price_model",
            "evaluate.price_model.test",
            "deploy.house-price",
            "monitor.price_model"
        ]
    );
    let src = &v["stages"][0];
    assert_eq!(src["op"]["path"], "data/houses.csv");
    assert_eq!(src["definition_hash"].as_str().unwrap().len(), 64);
    assert_eq!(src["origin"]["file"], "houses.mlp");
}
