//! Shared test helpers: a fake plugin world and diagnostic rendering.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use mlp_compiler::plugin_sig::{FunctionSig, PluginParam, PluginReturn, PluginType};
use mlp_compiler::{Compilation, PluginError, PluginSignatures, Report, SourceMap, World};

/// Plugins known to the fixtures, by file name:
/// - `geo.wasm`: `coastal(city: str) -> bool`, `region(city: str?) -> str?`
/// - `math.wasm`: `haversine(lat1, lon1, lat2, lon2: float) -> float`,
///   `box_cox(x, lambda: float) -> float?`
///   (both as `plugins/geo` and `plugins/math` declare them)
/// - `nosig.wasm`: a module without signatures
/// - `future.wasm`: a module built for plugin ABI 2
/// - anything else: not found
pub struct FakeWorld;

fn p(name: &str, ty: PluginType, nullable: bool) -> PluginParam {
    PluginParam {
        name: name.into(),
        ty,
        nullable,
    }
}

impl World for FakeWorld {
    fn plugin_signatures(&self, path: &str) -> Result<PluginSignatures, PluginError> {
        let file = path.rsplit('/').next().unwrap_or(path);
        match file {
            "geo.wasm" => Ok(PluginSignatures {
                abi: 1,
                functions: vec![
                    FunctionSig {
                        name: "coastal".into(),
                        params: vec![p("city", PluginType::Str, false)],
                        returns: PluginReturn {
                            ty: PluginType::Bool,
                            nullable: false,
                        },
                    },
                    FunctionSig {
                        name: "region".into(),
                        params: vec![p("city", PluginType::Str, true)],
                        returns: PluginReturn {
                            ty: PluginType::Str,
                            nullable: true,
                        },
                    },
                ],
            }),
            "math.wasm" => Ok(PluginSignatures {
                abi: 1,
                functions: vec![
                    FunctionSig {
                        name: "box_cox".into(),
                        params: vec![
                            p("x", PluginType::Float, false),
                            p("lambda", PluginType::Float, false),
                        ],
                        returns: PluginReturn {
                            ty: PluginType::Float,
                            nullable: true,
                        },
                    },
                    FunctionSig {
                        name: "haversine".into(),
                        params: ["lat1", "lon1", "lat2", "lon2"]
                            .iter()
                            .map(|n| p(n, PluginType::Float, false))
                            .collect(),
                        returns: PluginReturn {
                            ty: PluginType::Float,
                            nullable: false,
                        },
                    },
                ],
            }),
            "nosig.wasm" => Err(PluginError::NoSignatures),
            "future.wasm" => PluginSignatures::from_section(
                br#"{"abi":2,"name":"f","params":[],"returns":{"type":"float","nullable":false}}"#,
            ),
            _ => Err(PluginError::NotFound {
                path: path.to_string(),
            }),
        }
    }
}

/// Every diagnostic rendered without colour at a fixed width.
pub fn render(c: &Compilation, sources: &SourceMap) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(100);
    let mut out = String::new();
    for d in &c.diagnostics {
        let report = Report::new(d.clone(), sources);
        handler
            .render_report(&mut out, &report)
            .expect("render to a String");
        out.push('\n');
    }
    out
}

/// The codes a fixture expects, from its `# expect: E0201, E0705` header.
pub fn expected_codes(text: &str) -> Vec<String> {
    // A fixture may start with a byte-order mark (the compiler skips it).
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("# expect:"))
        .flat_map(|l| l.split(',').map(|c| c.trim().to_string()))
        .filter(|c| !c.is_empty())
        .collect()
}

pub fn fixtures(dir: &str) -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(dir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&root)
        .expect("fixture folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "mlp"))
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}
