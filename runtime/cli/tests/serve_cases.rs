//! The server's request/answer pairs: each file under `serve_cases/` is a
//! request (route, content type, body) sent to a server of the tests'
//! deployed house-price model; its answer (status and JSON, numbers to 4
//! decimals, the version left out) is a snapshot.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{deployed_project, serve};
use serde_json::Value;

fn rounded(v: Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            serde_json::Number::from_f64((f * 1e4).round() / 1e4)
                .map(Value::Number)
                .unwrap_or(Value::Null)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| k != "version")
                .map(|(k, v)| (k, rounded(v)))
                .collect(),
        ),
        other => other,
    }
}

#[test]
fn requests_get_their_recorded_answers() {
    let dir = deployed_project("serve-cases", 300, 71);
    let server = serve(&dir, &["house-price@production"]);
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/serve_cases");
    let mut files: Vec<_> = std::fs::read_dir(&cases)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the cases are missing");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for f in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        let body = match &case["raw"] {
            Value::String(s) => s.clone(),
            _ => case["body"].to_string(),
        };
        let url = format!("{}{}", server.url, case["route"].as_str().unwrap());
        let mut r = agent
            .post(&url)
            .header("content-type", case["content_type"].as_str().unwrap())
            .send(body.as_str())
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        let shown = serde_json::json!({"status": status, "answer": rounded(answer)});
        insta::assert_snapshot!(name, serde_json::to_string_pretty(&shown).unwrap());
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
