//! `graph: Plan -> String`: the stage DAG as Graphviz DOT or Mermaid.

use crate::plan::{Op, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

fn label(op: &Op, name: &str) -> String {
    match op {
        Op::Source(s) => format!("source {name}\\n{}(\\\"{}\\\")", s.format, s.path),
        Op::Model(m) => format!("model {name}\\n{}", m.algorithm),
        Op::Evaluate(e) => format!("evaluate {name}\\non {}", e.partition),
        Op::Deploy(d) => format!("deploy \\\"{}\\\"", d.name),
        Op::Join(j) => format!("join {name}\\non {}", j.keys.join(", ")),
        Op::History(h) => format!(
            "history {name}\\non {} at {} by {}",
            h.keys.join(", "),
            h.at,
            h.by
        ),
        other => format!("{} {name}", other.kind()),
    }
}

fn shape(op: &Op) -> &'static str {
    match op {
        Op::Source(_) => "cylinder",
        Op::Check(_) => "diamond",
        Op::Model(_) => "box3d",
        Op::Evaluate(_) | Op::Monitor(_) => "note",
        Op::Deploy(_) => "component",
        _ => "box",
    }
}

/// The label of a stage's `k`th input edge when it is a looked-up side
/// (a join's right side, a history's events).
fn side(op: &Op, k: usize) -> Option<&'static str> {
    match (op, k) {
        (Op::Join(_), 1) => Some("right"),
        (Op::History(_), 1) => Some("events"),
        _ => None,
    }
}

fn mermaid_id(id: &str) -> String {
    id.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Renders the plan's stages and their inputs.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            out.push_str("digraph pipeline {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
            for s in &plan.stages {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\", shape={}];\n",
                    s.id,
                    label(&s.op, &s.name),
                    shape(&s.op)
                ));
            }
            for s in &plan.stages {
                for (k, i) in s.inputs.iter().enumerate() {
                    match side(&s.op, k) {
                        Some(l) => out.push_str(&format!(
                            "  \"{i}\" -> \"{}\" [label=\"{l}\", style=dashed];\n",
                            s.id
                        )),
                        None => out.push_str(&format!("  \"{i}\" -> \"{}\";\n", s.id)),
                    }
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for s in &plan.stages {
                let text = label(&s.op, &s.name)
                    .replace("\\n", "<br/>")
                    .replace("\\\"", "#quot;");
                let (open, close) = match s.op {
                    Op::Source(_) => ("[(", ")]"),
                    Op::Check(_) => ("{{", "}}"),
                    Op::Model(_) => ("[[", "]]"),
                    _ => ("[", "]"),
                };
                out.push_str(&format!("  {}{open}\"{text}\"{close}\n", mermaid_id(&s.id)));
            }
            for s in &plan.stages {
                for (k, i) in s.inputs.iter().enumerate() {
                    let arrow = match side(&s.op, k) {
                        Some(l) => format!("-.->|{l}|"),
                        None => "-->".to_string(),
                    };
                    out.push_str(&format!(
                        "  {} {arrow} {}\n",
                        mermaid_id(i),
                        mermaid_id(&s.id)
                    ));
                }
            }
        }
    }
    out
}
