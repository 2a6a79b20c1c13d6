//! `check: [ast::File] -> ir::Program`.
//!
//! Resolves names across the project's files, orders the stages by their
//! inputs, and carries a schema ([`Frame`]) through every stage, reporting
//! every independent mistake as a [`CheckError`] (it does not stop at the
//! first). A stage whose input failed is skipped quietly, so one typo does not
//! cascade into a page of errors.

mod declare;
mod deploy;
mod error;
mod error_tables;
mod expr;
mod model;
mod rules;
mod source;
mod split;
mod tables;
mod transform;

pub use error::CheckError;
pub use expr::TExpr;

use crate::ast::{self, DeclKind, FileId, Ident, Lit, Span, ValueKind};
use crate::catalog::{self, ParamKind, TaskKind};
use crate::ir::{Program, Stage};
use crate::plan::{self, Literal, Op, ParamValue};
use crate::plugin_sig::{PluginError, PluginSignatures};
use crate::types::{Column, Frame, SplitInfo, Type};
use crate::{SourceMap, World};
use expr::{lit_value, ExprContext};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The lineage root of every split's partition column.
pub const PARTITION_ROOT: &str = "<partition>";

/// Checks a project. Returns the typed program (stages that checked) and every
/// error and warning found.
pub fn check(
    files: &[(FileId, ast::File)],
    sources: &SourceMap,
    world: &dyn World,
) -> (Program, Vec<CheckError>) {
    let mut c = Checker {
        sources,
        world,
        errors: vec![],
        plugins: BTreeMap::new(),
        program: Program::default(),
        frames: HashMap::new(),
        output_id: HashMap::new(),
        models: BTreeMap::new(),
        lineage_uses: vec![],
        defined_later: (BTreeMap::new(), 0),
        event_tables: BTreeMap::new(),
        right_upstream: BTreeMap::new(),
    };
    c.run(files);
    (c.program, c.errors)
}

struct PluginInfo {
    sigs: Option<PluginSignatures>,
}

/// What later declarations need to know about a checked model.
#[derive(Clone)]
struct ModelInfo {
    stage_id: String,
    span: Span,
    task: TaskKind,
    target: String,
    target_lineage: BTreeSet<String>,
    /// The model's input frame (for slices and drift columns).
    frame: Frame,
    /// The source columns the model's inputs are computed from.
    input_lineage: BTreeSet<String>,
    input_chain: Vec<String>,
}

/// A filter or check rule whose lineage is compared with the targets at the
/// end, to mark it training-only.
struct LineageUse {
    stage_id: String,
    index: usize,
    lineage: BTreeSet<String>,
}

pub(crate) struct Checker<'a> {
    sources: &'a SourceMap,
    world: &'a dyn World,
    errors: Vec<CheckError>,
    plugins: BTreeMap<String, PluginInfo>,
    program: Program,
    /// Output frame of each named stage, after its check; `None` when it failed.
    frames: HashMap<String, Option<Frame>>,
    /// The stage id downstream stages read for each name (the check when present).
    output_id: HashMap<String, String>,
    models: BTreeMap<String, ModelInfo>,
    lineage_uses: Vec<LineageUse>,
    /// While a `features` block is checked: the names its later lines define,
    /// so a reference to one is reported as out of order, not as unknown.
    /// In a `features` block: each feature's name with its position, and
    /// the position being checked (a name at a later position is "defined
    /// further down"). Built once per block, so a block checks in linear
    /// time.
    defined_later: (BTreeMap<String, usize>, usize),
    /// Stages whose rows are events a `history` reads (its EVENTS side and
    /// everything upstream of it), with that history's name.
    event_tables: BTreeMap<String, String>,
    /// For each join: its right side and every stage upstream of it.
    right_upstream: BTreeMap<String, BTreeSet<String>>,
}

/// A declaration that produces a named stage.
#[derive(Clone, Copy)]
enum Named<'a> {
    Source(&'a ast::Source),
    Split(&'a ast::Split),
    Transform(&'a ast::Transform),
    Features(&'a ast::Features),
    Join(&'a ast::Join),
    History(&'a ast::History),
    Model(&'a ast::Model),
}

impl<'a> Named<'a> {
    /// The stages it reads, the main (LEFT) one first.
    fn inputs(&self) -> Vec<&'a Ident> {
        match self {
            Named::Source(_) => vec![],
            Named::Split(s) => vec![&s.input],
            Named::Transform(t) => vec![&t.input],
            Named::Features(f) => vec![&f.input],
            Named::Join(j) => vec![&j.left, &j.right],
            Named::History(h) => vec![&h.left, &h.events],
            Named::Model(m) => vec![&m.input],
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Named::Source(_) => "source",
            Named::Split(_) => "split",
            Named::Transform(_) => "transform",
            Named::Features(_) => "features",
            Named::Join(_) => "join",
            Named::History(_) => "history",
            Named::Model(_) => "model",
        }
    }
}

fn value_text(v: &ast::Value) -> String {
    match &v.kind {
        ValueKind::Lit(Lit::Str(s)) => format!("\"{s}\""),
        ValueKind::Lit(Lit::Int(i)) => i.to_string(),
        ValueKind::Lit(Lit::Float(f)) => f.to_string(),
        ValueKind::Lit(Lit::Bool(b)) => b.to_string(),
        ValueKind::Lit(Lit::Null) => "null".into(),
        ValueKind::Lit(Lit::Quantity(v, u)) => format!("{v}{u}"),
        ValueKind::Name(n) => format!("`{n}`"),
        ValueKind::List(_) => "a list".into(),
        ValueKind::Call(n, _) => format!("`{}(...)`", n.name),
        ValueKind::Map(_) => "a map `{...}`".into(),
    }
}

fn lit_text(l: &Lit) -> String {
    match l {
        Lit::Str(s) => format!("\"{s}\""),
        Lit::Int(i) => i.to_string(),
        Lit::Float(f) => f.to_string(),
        Lit::Bool(b) => b.to_string(),
        Lit::Null => "null".into(),
        Lit::Quantity(v, u) => format!("{v}{u}"),
    }
}

/// A level as a column-name suffix: letters, digits and `_`.
pub fn level_suffix(level: &str) -> String {
    let s: String = level
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// The columns a transform step names.
fn step_columns(kind: &ast::StepKind) -> Vec<String> {
    use ast::StepKind as S;
    let names = |ids: &[Ident]| ids.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    match kind {
        S::Impute(c, _)
        | S::Encode(c, _, _)
        | S::Scale(c, _)
        | S::Clip(c, _)
        | S::Drop(c)
        | S::Keep(c) => names(c),
        S::Bucket(c, _, _) => vec![c.name.clone()],
        S::Rename(a, b) => vec![a.name.clone(), b.name.clone()],
        S::Filter(_) => vec![],
    }
}

/// Joins a path written in a file with that file's folder, normalised with `/`.
pub fn resolve_path(file_name: &str, path: &str) -> String {
    if path.starts_with('/') {
        return path.to_string();
    }
    let mut parts: Vec<&str> = match file_name.rfind('/') {
        Some(i) => file_name[..i]
            .split('/')
            .filter(|p| !p.is_empty())
            .collect(),
        None => vec![],
    };
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Source text with comments removed and whitespace collapsed: how a rule is
/// named in reports and in the canonical plan.
pub fn normalise_source(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut in_comment = false;
    for c in text.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
                out.push(' ');
            }
            continue;
        }
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '#' => in_comment = true,
            '"' => {
                in_string = true;
                out.push(c);
            }
            c if c.is_whitespace() => {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            }
            c => out.push(c),
        }
    }
    out.trim().to_string()
}

/// Whether a string parses as a value of a date or datetime type, in its
/// format (as the runtime will parse it).
pub(crate) fn parses_as(value: &str, ty: &Type) -> bool {
    match ty {
        Type::Date { format } => chrono::NaiveDate::parse_from_str(value, format).is_ok(),
        Type::Datetime { format } => {
            chrono::NaiveDateTime::parse_from_str(value, format).is_ok()
                || chrono::DateTime::parse_from_str(value, format).is_ok()
        }
        _ => true,
    }
}

/// Checks a chrono-style format string: returns the offending specifier.
fn bad_format_specifier(fmt: &str) -> Option<String> {
    const OK: &str = "YCymbBhdeaAwuUWGgVjDxFvHkIlPpMSfsTXrRtnzZc%+";
    if !fmt.contains('%') {
        return Some(String::new());
    }
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        // Optional flags and widths: %-d, %3f, %.3f, %:z
        let mut spec = String::from("%");
        while let Some(&n) = chars.peek() {
            if n == '-' || n == '_' || n == '0' || n == '.' || n == ':' || n.is_ascii_digit() {
                spec.push(n);
                chars.next();
            } else {
                break;
            }
        }
        match chars.next() {
            Some(s) if OK.contains(s) => {}
            Some(s) => {
                spec.push(s);
                return Some(spec);
            }
            None => return Some(spec),
        }
    }
    None
}

fn partition_names(frame: &Frame) -> Vec<String> {
    frame
        .split
        .as_ref()
        .and_then(|s| s.partitions.clone())
        .unwrap_or_default()
}

impl<'a> Checker<'a> {
    fn run(&mut self, files: &'a [(FileId, ast::File)]) {
        // ---- collect declarations
        let mut named: BTreeMap<String, (Named<'a>, Span, &'a Ident)> = BTreeMap::new();
        let mut checks: BTreeMap<String, (&'a ast::Check, Span)> = BTreeMap::new();
        let mut plugin_decls: Vec<(&'a ast::Plugin, Span)> = vec![];
        let mut evaluates = vec![];
        let mut deploys = vec![];
        let mut monitors = vec![];
        let mut all_decls: Vec<&'a ast::Decl> =
            files.iter().flat_map(|(_, f)| f.decls.iter()).collect();
        all_decls.sort_by_key(|d| (d.span.file, d.span.start));
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        let mut declare = |this: &mut Self, kind: &'static str, id: &Ident| -> bool {
            if let Some(first) = seen.get(&id.name) {
                this.errors.push(CheckError::DuplicateName {
                    kind,
                    name: id.name.clone(),
                    span: id.span,
                    first: *first,
                });
                false
            } else {
                seen.insert(id.name.clone(), id.span);
                true
            }
        };
        for d in &all_decls {
            match &d.kind {
                DeclKind::Source(_)
                | DeclKind::Split(_)
                | DeclKind::Transform(_)
                | DeclKind::Features(_)
                | DeclKind::Join(_)
                | DeclKind::History(_)
                | DeclKind::Model(_) => {
                    let (n, ident) = match &d.kind {
                        DeclKind::Source(x) => (Named::Source(x), &x.name),
                        DeclKind::Split(x) => (Named::Split(x), &x.name),
                        DeclKind::Transform(x) => (Named::Transform(x), &x.name),
                        DeclKind::Features(x) => (Named::Features(x), &x.name),
                        DeclKind::Join(x) => (Named::Join(x), &x.name),
                        DeclKind::History(x) => (Named::History(x), &x.name),
                        DeclKind::Model(x) => (Named::Model(x), &x.name),
                        _ => continue,
                    };
                    if declare(self, n.kind(), ident) {
                        named.insert(ident.name.clone(), (n, d.span, ident));
                    }
                }
                DeclKind::Plugin(p) => {
                    if declare(self, "plugin", &p.name) {
                        plugin_decls.push((p, d.span));
                    }
                }
                DeclKind::Check(c) => {
                    if let Some((_, first)) = checks.get(&c.stage.name) {
                        self.errors.push(CheckError::DuplicateCheck {
                            span: c.stage.span,
                            stage: c.stage.name.clone(),
                            first: *first,
                        });
                    } else {
                        checks.insert(c.stage.name.clone(), (c, c.stage.span));
                    }
                }
                DeclKind::Evaluate(e) => evaluates.push((e, d.span)),
                DeclKind::Deploy(dp) => deploys.push((dp, d.span)),
                DeclKind::Monitor(m) => monitors.push((m, d.span)),
            }
        }

        // ---- plugins: read their signatures through the world
        for (p, span) in &plugin_decls {
            self.check_plugin(p, *span);
        }

        // ---- unknown check targets
        for (name, (c, _)) in &checks {
            if !named.contains_key(name) {
                self.errors.push(CheckError::UnknownStage {
                    name: name.clone(),
                    span: c.stage.span,
                    available: named.keys().cloned().collect(),
                    wanted: "stage",
                });
            } else if matches!(named[name].0, Named::Model(_)) {
                self.errors.push(CheckError::UnknownStage {
                    name: name.clone(),
                    span: c.stage.span,
                    available: named
                        .iter()
                        .filter(|(_, v)| !matches!(v.0, Named::Model(_)))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    wanted: "data stage",
                });
            }
        }

        // ---- order stages by their inputs
        let mut nodes: Vec<(&str, Vec<&str>)> = Vec::with_capacity(named.len());
        let data_stages = |named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>| {
            named
                .iter()
                .filter(|(_, v)| !matches!(v.0, Named::Model(_)))
                .map(|(k, _)| k.clone())
                .collect::<Vec<_>>()
        };
        for (name, (decl, _, _)) in &named {
            let mut inputs = vec![];
            for input in decl.inputs() {
                let wanted = match named.get(&input.name) {
                    Some((Named::Model(_), _, _)) => "data stage",
                    Some(_) => {
                        inputs.push(input.name.as_str());
                        continue;
                    }
                    None => "stage",
                };
                self.errors.push(CheckError::UnknownStage {
                    name: input.name.clone(),
                    span: input.span,
                    available: data_stages(&named),
                    wanted,
                });
                self.frames.insert(name.clone(), None);
            }
            nodes.push((name.as_str(), inputs));
        }
        // Event tables: what each history's EVENTS side reads; and what each
        // join's right side reads.
        let upstream = |start: &str| -> BTreeSet<String> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start.to_string()];
            while let Some(n) = stack.pop() {
                if !seen.insert(n.clone()) {
                    continue;
                }
                if let Some((d, _, _)) = named.get(&n) {
                    stack.extend(d.inputs().iter().map(|i| i.name.clone()));
                }
            }
            seen
        };
        for (name, (decl, _, _)) in &named {
            match decl {
                Named::History(h) => {
                    for t in upstream(&h.events.name) {
                        self.event_tables.entry(t).or_insert_with(|| name.clone());
                    }
                }
                Named::Join(j) => {
                    self.right_upstream
                        .insert(name.clone(), upstream(&j.right.name));
                }
                _ => {}
            }
        }
        let left = crate::order::topological(&nodes, |name| {
            let (decl, span, ident) = named[name];
            if !self.frames.contains_key(name) {
                self.check_named(decl, span, ident, checks.get(name).map(|c| c.0));
            }
        });
        // Whatever is left is on a cycle (or downstream of one).
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for name in named.keys() {
            if !left.contains(name.as_str()) || reported.contains(name) {
                continue;
            }
            let mut path = vec![name.clone()];
            let mut cur = name.clone();
            // Follow an input that is itself stuck (on the cycle or behind it).
            let stuck_input = |cur: &str| {
                named.get(cur).and_then(|d| {
                    d.0.inputs()
                        .into_iter()
                        .find(|i| left.contains(i.name.as_str()))
                })
            };
            while let Some(input) = stuck_input(&cur) {
                if let Some(pos) = path.iter().position(|p| *p == input.name) {
                    let mut cycle: Vec<String> = path[pos..].to_vec();
                    if !cycle.iter().any(|c| reported.contains(c)) {
                        cycle.push(input.name.clone());
                        reported.extend(cycle.iter().cloned());
                        self.errors.push(CheckError::Cycle {
                            span: input.span,
                            cycle,
                        });
                    }
                    break;
                }
                path.push(input.name.clone());
                cur = input.name.clone();
            }
            reported.insert(name.clone());
            self.frames.insert(name.clone(), None);
        }

        // ---- evaluation, deployment, monitoring
        let mut evaluate_ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut gated: BTreeSet<String> = BTreeSet::new();
        for (e, span) in &evaluates {
            // Gated as written, even if the gates have errors of their own.
            if !e.gates.is_empty() || e.slices.iter().any(|s| !s.gates.is_empty()) {
                gated.insert(e.model.name.clone());
            }
            if let Some(id) = self.check_evaluate(e, *span, &named) {
                evaluate_ids
                    .entry(e.model.name.clone())
                    .or_default()
                    .push(id);
            }
        }
        let mut deploy_names: BTreeMap<String, Span> = BTreeMap::new();
        for (d, span) in &deploys {
            if let Some(first) = deploy_names.get(&d.name) {
                self.errors.push(CheckError::DuplicateDeploy {
                    span: d.name_span,
                    name: d.name.clone(),
                    first: *first,
                });
                continue;
            }
            deploy_names.insert(d.name.clone(), d.name_span);
            let gates = evaluate_ids.get(&d.model.name).cloned().unwrap_or_default();
            self.check_deploy(d, *span, &named, gates, gated.contains(&d.model.name));
        }
        for (m, span) in &monitors {
            self.check_monitor(m, *span, &named);
        }
        // A bundle carries its model's monitor rules, so they are part of
        // the deploy stage's definition (and key): editing a rule re-deploys.
        let monitor_ops: BTreeMap<String, plan::MonitorOp> = self
            .program
            .stages
            .iter()
            .filter_map(|s| match &s.op {
                Op::Monitor(m) => Some((m.model.clone(), m.clone())),
                _ => None,
            })
            .collect();
        for st in &mut self.program.stages {
            if let Op::Deploy(d) = &mut st.op {
                d.monitor = monitor_ops.get(&d.model).cloned();
            }
        }

        // ---- mark filters and rules that read a target as training-only
        let targets: BTreeSet<String> = self
            .models
            .values()
            .flat_map(|m| m.target_lineage.iter().cloned())
            .collect();
        for u in std::mem::take(&mut self.lineage_uses) {
            if u.lineage.is_disjoint(&targets) {
                continue;
            }
            if let Some(st) = self.program.stages.iter_mut().find(|s| s.id == u.stage_id) {
                match &mut st.op {
                    Op::Check(c) => {
                        if let Some(r) = c.rules.get_mut(u.index) {
                            r.reads_target = true;
                        }
                    }
                    Op::Transform(t) => {
                        if let Some(plan::StepOp::Filter { reads_target, .. }) =
                            t.steps.get_mut(u.index)
                        {
                            *reads_target = true;
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn file_name(&self, span: Span) -> &str {
        self.sources.name(span.file)
    }

    // ------------------------------------------------------------ plugins

    fn bad_value(&mut self, key: &str, span: Span, expected: &str, v: &ast::Value) {
        self.errors.push(CheckError::BadOptionValue {
            span,
            key: key.to_string(),
            expected: expected.to_string(),
            found: value_text(v),
        });
    }

    // ------------------------------------------------------------ stages

    fn check_named(
        &mut self,
        decl: Named<'a>,
        span: Span,
        ident: &Ident,
        check: Option<&'a ast::Check>,
    ) {
        let name = ident.name.clone();
        let mut input_frames: Vec<Frame> = vec![];
        for i in decl.inputs() {
            match self.frames.get(&i.name) {
                Some(Some(f)) => input_frames.push(f.clone()),
                _ => {
                    self.frames.insert(name, None);
                    return;
                }
            }
        }
        let input_ids: Vec<String> = decl
            .inputs()
            .iter()
            .filter_map(|i| self.output_id.get(&i.name).cloned())
            .collect();
        let mut frames = input_frames.into_iter();
        let input_frame = frames.next();
        let second = frames.next();
        let stage_id = format!("{}.{}", decl.kind(), name);
        let result: Option<(Op, Frame, BTreeSet<String>)> = match decl {
            Named::Source(s) => self.check_source(s),
            Named::Split(s) => input_frame.and_then(|f| self.check_split(s, f, &stage_id)),
            Named::Transform(t) => input_frame.and_then(|f| self.check_transform(t, f, &stage_id)),
            Named::Features(f) => input_frame.and_then(|fr| self.check_features(f, fr, &stage_id)),
            Named::Join(j) => input_frame
                .zip(second)
                .and_then(|(l, r)| self.check_join(j, l, r)),
            Named::History(h) => input_frame
                .zip(second)
                .and_then(|(l, r)| self.check_history(h, l, r)),
            Named::Model(m) => input_frame.and_then(|f| {
                self.event_table_joined(m, &f);
                self.check_model(m, f, span, &stage_id, &input_ids)
            }),
        };
        let Some((op, mut frame, plugins)) = result else {
            self.frames.insert(name, None);
            return;
        };
        frame.forget_broken_proofs();
        // A stage with errors still passes its (best-effort) frame on, so
        // independent mistakes downstream are reported too; the program is
        // not lowered when there are errors.
        self.program.stages.push(Stage {
            id: stage_id.clone(),
            name: name.clone(),
            inputs: input_ids,
            op,
            frame: frame.clone(),
            plugins: plugins.into_iter().collect(),
            span,
        });
        self.output_id.insert(name.clone(), stage_id.clone());
        let frame = match check {
            Some(c) => match self.check_check(c, frame, &stage_id) {
                Some(f) => f,
                None => {
                    self.frames.insert(name, None);
                    return;
                }
            },
            None => frame,
        };
        self.frames.insert(name, Some(frame));
    }

    fn error_count(&self) -> usize {
        self.errors
            .iter()
            .filter(|e| e.to_diagnostic().is_error())
            .count()
    }

    fn column<'f>(&mut self, id: &Ident, frame: &'f Frame) -> Option<&'f Column> {
        match frame.get(&id.name) {
            Some(c) if c.group_of.is_none() => Some(c),
            _ => {
                self.unknown_column(&id.name, id.span, frame);
                None
            }
        }
    }

    fn columns_exist(&mut self, ids: &[Ident], frame: &Frame) -> Option<Vec<String>> {
        let mut ok = true;
        for id in ids {
            if self.column(id, frame).is_none() {
                ok = false;
            }
        }
        ok.then(|| ids.iter().map(|i| i.name.clone()).collect())
    }
}

fn bytes(v: f64, unit: &str) -> Option<u64> {
    let mult: f64 = match unit {
        "B" => 1.0,
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    (v > 0.0).then_some((v * mult) as u64)
}

fn millis(v: f64, unit: &str) -> Option<f64> {
    let mult = match unit {
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some(v * mult)
}
