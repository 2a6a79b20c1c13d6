//! `check: [ast::File] -> ir::Program`.
//!
//! Resolves names across the project's files, orders the stages by their
//! inputs, and carries a schema ([`Frame`]) through every stage, reporting
//! every independent mistake as a [`CheckError`] (it does not stop at the
//! first). A stage whose input failed is skipped quietly, so one typo does not
//! cascade into a page of errors.

mod error;
mod expr;

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
}

/// A declaration that produces a named stage.
#[derive(Clone, Copy)]
enum Named<'a> {
    Source(&'a ast::Source),
    Split(&'a ast::Split),
    Transform(&'a ast::Transform),
    Features(&'a ast::Features),
    Model(&'a ast::Model),
}

impl<'a> Named<'a> {
    fn input(&self) -> Option<&'a Ident> {
        match self {
            Named::Source(_) => None,
            Named::Split(s) => Some(&s.input),
            Named::Transform(t) => Some(&t.input),
            Named::Features(f) => Some(&f.input),
            Named::Model(m) => Some(&m.input),
        }
    }
    fn kind(&self) -> &'static str {
        match self {
            Named::Source(_) => "source",
            Named::Split(_) => "split",
            Named::Transform(_) => "transform",
            Named::Features(_) => "features",
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
                | DeclKind::Model(_) => {
                    let (n, ident) = match &d.kind {
                        DeclKind::Source(x) => (Named::Source(x), &x.name),
                        DeclKind::Split(x) => (Named::Split(x), &x.name),
                        DeclKind::Transform(x) => (Named::Transform(x), &x.name),
                        DeclKind::Features(x) => (Named::Features(x), &x.name),
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

        // ---- order stages by their inputs (Kahn, ties by name)
        let mut indegree: BTreeMap<&str, usize> = BTreeMap::new();
        let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, (decl, _, _)) in &named {
            let mut deg = 0;
            if let Some(input) = decl.input() {
                if let Some((dep, _, _)) = named.get(&input.name) {
                    if matches!(dep, Named::Model(_)) {
                        self.errors.push(CheckError::UnknownStage {
                            name: input.name.clone(),
                            span: input.span,
                            available: named
                                .iter()
                                .filter(|(_, v)| !matches!(v.0, Named::Model(_)))
                                .map(|(k, _)| k.clone())
                                .collect(),
                            wanted: "data stage",
                        });
                        self.frames.insert(name.clone(), None);
                    } else {
                        deg = 1;
                        dependents
                            .entry(input.name.as_str())
                            .or_default()
                            .push(name.as_str());
                    }
                } else {
                    self.errors.push(CheckError::UnknownStage {
                        name: input.name.clone(),
                        span: input.span,
                        available: named
                            .iter()
                            .filter(|(_, v)| !matches!(v.0, Named::Model(_)))
                            .map(|(k, _)| k.clone())
                            .collect(),
                        wanted: "stage",
                    });
                    self.frames.insert(name.clone(), None);
                }
            }
            indegree.insert(name.as_str(), deg);
        }
        let mut ready: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut done: BTreeSet<&str> = BTreeSet::new();
        while let Some(name) = ready.pop_first() {
            done.insert(name);
            let (decl, span, ident) = named[name];
            if !self.frames.contains_key(name) {
                self.check_named(decl, span, ident, checks.get(name).map(|c| c.0));
            }
            for dep in dependents.get(name).cloned().unwrap_or_default() {
                if let Some(d) = indegree.get_mut(dep) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert(dep);
                    }
                }
            }
        }
        // Whatever is left is on a cycle (or downstream of one).
        let mut reported: BTreeSet<String> = BTreeSet::new();
        for name in named.keys() {
            if done.contains(name.as_str()) || reported.contains(name) {
                continue;
            }
            let mut path = vec![name.clone()];
            let mut cur = name.clone();
            while let Some(input) = named.get(&cur).and_then(|d| d.0.input()) {
                if let Some(pos) = path.iter().position(|p| *p == input.name) {
                    let mut cycle: Vec<String> = path[pos..].to_vec();
                    if !cycle.iter().any(|c| reported.contains(c)) {
                        cycle.push(input.name.clone());
                        let closing = named
                            .get(&cur)
                            .and_then(|d| d.0.input())
                            .map(|i| i.span)
                            .unwrap_or_default();
                        reported.extend(cycle.iter().cloned());
                        self.errors.push(CheckError::Cycle {
                            span: closing,
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

    fn check_plugin(&mut self, p: &ast::Plugin, span: Span) {
        let path = resolve_path(self.file_name(p.name.span), &p.path);
        let sigs = match self.world.plugin_signatures(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                let err = match e {
                    PluginError::NotFound { .. } | PluginError::Unreadable { .. } => {
                        CheckError::PluginUnavailable {
                            span: p.path_span,
                            path: p.path.clone(),
                            reason: match e {
                                PluginError::NotFound { .. } => "no such file".into(),
                                other => other.to_string(),
                            },
                        }
                    }
                    PluginError::NoSignatures | PluginError::Malformed { .. } => {
                        CheckError::PluginSignatures {
                            span: p.path_span,
                            path: p.path.clone(),
                            reason: e.to_string(),
                        }
                    }
                    PluginError::Abi { found, supported } => CheckError::PluginAbi {
                        span: p.path_span,
                        path: p.path.clone(),
                        found,
                        supported,
                    },
                };
                self.errors.push(err);
                None
            }
        };
        let mut decl = plan::PluginDecl {
            name: p.name.name.clone(),
            path,
            memory_bytes: 64 << 20,
            fuel: 1_000_000,
            timeout_ms: 10_000,
        };
        for o in &p.options {
            match o.key.name.as_str() {
                "memory" => match &o.value.kind {
                    ValueKind::Lit(Lit::Quantity(v, u)) if bytes(*v, u).is_some() => {
                        decl.memory_bytes = bytes(*v, u).unwrap_or(decl.memory_bytes)
                    }
                    _ => {
                        self.bad_value(&o.key.name, o.value.span, "a size such as `64MB`", &o.value)
                    }
                },
                "timeout" => match &o.value.kind {
                    ValueKind::Lit(Lit::Quantity(v, u)) if millis(*v, u).is_some() => {
                        decl.timeout_ms = millis(*v, u).unwrap_or(0.0) as u64
                    }
                    _ => self.bad_value(
                        &o.key.name,
                        o.value.span,
                        "a duration such as `5s`",
                        &o.value,
                    ),
                },
                "fuel" => match &o.value.kind {
                    ValueKind::Lit(Lit::Int(n)) if *n > 0 => decl.fuel = *n as u64,
                    _ => self.bad_value(&o.key.name, o.value.span, "a positive integer", &o.value),
                },
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: o.key.name.clone(),
                    context: "a plugin",
                    valid: vec!["memory".into(), "fuel".into(), "timeout".into()],
                }),
            }
        }
        let _ = span;
        self.plugins
            .insert(p.name.name.clone(), PluginInfo { sigs });
        self.program.plugins.push(decl);
    }

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
        let input_frame = match decl.input() {
            Some(i) => match self.frames.get(&i.name) {
                Some(Some(f)) => Some(f.clone()),
                _ => {
                    self.frames.insert(name, None);
                    return;
                }
            },
            None => None,
        };
        let input_ids: Vec<String> = decl
            .input()
            .and_then(|i| self.output_id.get(&i.name).cloned())
            .into_iter()
            .collect();
        let errors_before = self.error_count();
        let stage_id = format!("{}.{}", decl.kind(), name);
        let result: Option<(Op, Frame, BTreeSet<String>)> = match decl {
            Named::Source(s) => self.check_source(s),
            Named::Split(s) => input_frame.and_then(|f| self.check_split(s, f, &stage_id)),
            Named::Transform(t) => input_frame.and_then(|f| self.check_transform(t, f, &stage_id)),
            Named::Features(f) => input_frame.and_then(|fr| self.check_features(f, fr, &stage_id)),
            Named::Model(m) => {
                input_frame.and_then(|f| self.check_model(m, f, span, &stage_id, &input_ids))
            }
        };
        let Some((op, frame, plugins)) = result else {
            self.frames.insert(name, None);
            return;
        };
        // A stage with errors still passes its (best-effort) frame on, so
        // independent mistakes downstream are reported too; the program is
        // not lowered when there are errors.
        let _ = errors_before;
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

    fn check_source(&mut self, s: &ast::Source) -> Option<(Op, Frame, BTreeSet<String>)> {
        let format = s.format.name.as_str();
        let Some((_, valid_opts)) = catalog::FORMATS.iter().find(|(f, _)| *f == format) else {
            self.errors.push(CheckError::UnknownFormat {
                span: s.format.span,
                name: format.to_string(),
            });
            return None;
        };
        let mut options = BTreeMap::new();
        for o in &s.options {
            let key = o.key.name.as_str();
            if !valid_opts.contains(&key) {
                self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: key.to_string(),
                    context: if valid_opts.is_empty() {
                        "this format (it takes no options)"
                    } else {
                        "a csv source"
                    },
                    valid: valid_opts.iter().map(|v| v.to_string()).collect(),
                });
                continue;
            }
            let value = match (key, &o.value.kind) {
                ("delimiter" | "quote", ValueKind::Lit(Lit::Str(d))) if d.len() == 1 => {
                    Literal::Str(d.clone())
                }
                ("delimiter" | "quote", _) => {
                    self.bad_value(key, o.value.span, "a one-character string", &o.value);
                    continue;
                }
                ("header", ValueKind::Lit(Lit::Bool(b))) => Literal::Bool(*b),
                ("header", _) => {
                    self.bad_value(key, o.value.span, "`true` or `false`", &o.value);
                    continue;
                }
                ("skip_rows", ValueKind::Lit(Lit::Int(n))) if *n >= 0 => Literal::Int(*n),
                ("skip_rows", _) => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value);
                    continue;
                }
                ("null_values", ValueKind::List(items))
                    if items
                        .iter()
                        .all(|i| matches!(i.kind, ValueKind::Lit(Lit::Str(_)))) =>
                {
                    let strs: Vec<String> = items
                        .iter()
                        .filter_map(|i| match &i.kind {
                            ValueKind::Lit(Lit::Str(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    Literal::Str(strs.join("\u{1f}"))
                }
                _ => {
                    self.bad_value(key, o.value.span, "a list of strings", &o.value);
                    continue;
                }
            };
            options.insert(key.to_string(), value);
        }
        if s.path.trim().is_empty() {
            self.errors.push(CheckError::BadOptionValue {
                span: s.path_span,
                key: "path".into(),
                expected: "a file path or glob".into(),
                found: "an empty string".into(),
            });
        }
        if s.columns.is_empty() {
            self.errors.push(CheckError::EmptySource {
                span: s.name.span,
                name: s.name.name.clone(),
            });
            return None;
        }
        let mut frame = Frame::default();
        let mut columns = vec![];
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for c in &s.columns {
            if let Some(first) = seen.get(c.name.name.as_str()) {
                self.errors.push(CheckError::DuplicateColumn {
                    span: c.name.span,
                    name: c.name.name.clone(),
                    first: *first,
                });
                continue;
            }
            seen.insert(&c.name.name, c.name.span);
            let Some(ty) = self.check_type(&c.ty) else {
                continue;
            };
            columns.push(plan::SourceColumn {
                name: c.name.name.clone(),
                raw_name: c.raw_name.clone().filter(|r| *r != c.name.name),
                ty: ty.clone(),
                nullable: c.ty.nullable,
            });
            frame.push(Column {
                name: c.name.name.clone(),
                ty,
                nullable: c.ty.nullable,
                group_of: None,
                encoded: false,
                lineage: BTreeSet::from([format!("{}.{}", s.name.name, c.name.name)]),
                defined: c.name.span,
            });
        }
        let op = Op::Source(plan::SourceOp {
            format: plan::SourceFormat::parse(format)?,
            path: resolve_path(self.file_name(s.name.span), &s.path),
            options,
            columns,
        });
        Some((op, frame, BTreeSet::new()))
    }

    fn check_type(&mut self, t: &ast::TypeExpr) -> Option<Type> {
        let bad = |this: &mut Self, message: String, help: &str| {
            this.errors.push(CheckError::BadType {
                span: t.span,
                message,
                help: help.to_string(),
            });
            None
        };
        if t.levels.is_some() && t.name != "category" {
            return bad(
                self,
                format!("only `category` takes levels, not `{}`", t.name),
                "write `category[\"a\", \"b\"]`, or drop the levels",
            );
        }
        if t.format.is_some() && !matches!(t.name.as_str(), "date" | "datetime") {
            return bad(
                self,
                format!("only `date` and `datetime` take a format, not `{}`", t.name),
                "write `date \"%Y-%m-%d\"`, or drop the format string",
            );
        }
        Some(match t.name.as_str() {
            "int" => Type::Int,
            "float" => Type::Float,
            "bool" => Type::Bool,
            "str" => Type::Str,
            "category" => {
                if let Some(levels) = &t.levels {
                    if levels.is_empty() {
                        self.errors.push(CheckError::BadLevels {
                            span: t.span,
                            message: "a category needs at least one level".into(),
                        });
                        return None;
                    }
                    let mut set = BTreeSet::new();
                    for l in levels {
                        if !set.insert(l) {
                            self.errors.push(CheckError::BadLevels {
                                span: t.span,
                                message: format!("level \"{l}\" is listed twice"),
                            });
                            return None;
                        }
                    }
                }
                Type::Category {
                    levels: t.levels.clone(),
                }
            }
            "date" | "datetime" => {
                let default = if t.name == "date" {
                    "%Y-%m-%d"
                } else {
                    "%Y-%m-%dT%H:%M:%S"
                };
                let format = t.format.clone().unwrap_or_else(|| default.to_string());
                if let Some(spec) = bad_format_specifier(&format) {
                    let message = if spec.is_empty() {
                        format!("date format \"{format}\" has no `%` field")
                    } else {
                        format!("date format \"{format}\" has an unknown field `{spec}`")
                    };
                    return bad(
                        self,
                        message,
                        "formats use strftime fields: `%Y` year, `%m` month, `%d` day, `%H:%M:%S` time, e.g. \"%Y-%m-%d\"",
                    );
                }
                if t.name == "date" {
                    Type::Date { format }
                } else {
                    Type::Datetime { format }
                }
            }
            _ => return None,
        })
    }

    // ------------------------------------------------------------ check

    fn check_check(&mut self, c: &ast::Check, mut frame: Frame, input: &str) -> Option<Frame> {
        let stage_id = format!("check.{}", c.stage.name);
        let mut rules = vec![];
        let mut narrowed_nonnull: Vec<String> = vec![];
        let mut narrowed_levels: Vec<(String, Vec<String>)> = vec![];
        for (index, r) in c.rules.iter().enumerate() {
            let mut lineage = BTreeSet::new();
            let mut col_lineage = |f: &Frame, n: &str| {
                if let Some(col) = f.get(n) {
                    lineage.extend(col.lineage.iter().cloned());
                }
            };
            let (rule, row_level) = match &r.kind {
                ast::RuleKind::NotNull(cols) => {
                    let Some(cols) = self.columns_exist(cols, &frame) else {
                        continue;
                    };
                    for n in &cols {
                        col_lineage(&frame, n);
                    }
                    if !r.warn {
                        narrowed_nonnull.extend(cols.iter().cloned());
                    }
                    (plan::RuleOp::NotNull { columns: cols }, true)
                }
                ast::RuleKind::Unique(cols) => {
                    let Some(cols) = self.columns_exist(cols, &frame) else {
                        continue;
                    };
                    (plan::RuleOp::Unique { columns: cols }, false)
                }
                ast::RuleKind::Range(col, range) => {
                    let Some(c) = self.column(col, &frame) else {
                        continue;
                    };
                    col_lineage(&frame, &col.name);
                    let numeric = c.ty.is_numeric();
                    if !numeric && !c.ty.is_temporal() {
                        self.errors.push(CheckError::RuleType {
                            span: col.span,
                            rule: "range",
                            column: col.name.clone(),
                            found: c.ty.to_string(),
                            expected: "a number, date or datetime column",
                        });
                        continue;
                    }
                    let Some((lo, hi)) = self.check_range(range, numeric) else {
                        continue;
                    };
                    let mut dates_ok = true;
                    for (lit, span) in [&range.lo, &range.hi].into_iter().flatten() {
                        if let (Lit::Str(v), Type::Date { format } | Type::Datetime { format }) =
                            (lit, &c.ty)
                        {
                            if !parses_as(v, &c.ty) {
                                self.errors.push(CheckError::DateLiteral {
                                    span: *span,
                                    value: v.clone(),
                                    column: col.name.clone(),
                                    format: format.clone(),
                                });
                                dates_ok = false;
                            }
                        }
                    }
                    if !dates_ok {
                        continue;
                    }
                    (
                        plan::RuleOp::Range {
                            column: col.name.clone(),
                            lo,
                            hi,
                        },
                        true,
                    )
                }
                ast::RuleKind::Values(col, values) => {
                    let Some(c) = self.column(col, &frame) else {
                        continue;
                    };
                    col_lineage(&frame, &col.name);
                    let mut lits = vec![];
                    for v in values {
                        let ok = match (&v.kind, &c.ty) {
                            (ValueKind::Lit(Lit::Str(s)), Type::Category { levels }) => {
                                if let Some(levels) = levels {
                                    if !levels.contains(s) {
                                        self.errors.push(CheckError::UnknownLevel {
                                            span: v.span,
                                            value: s.clone(),
                                            column: col.name.clone(),
                                            levels: levels.clone(),
                                        });
                                    }
                                }
                                true
                            }
                            (ValueKind::Lit(Lit::Str(_)), Type::Str)
                            | (ValueKind::Lit(Lit::Int(_)), Type::Int)
                            | (ValueKind::Lit(Lit::Bool(_)), Type::Bool) => true,
                            _ => false,
                        };
                        if !ok {
                            self.errors.push(CheckError::RuleType {
                                span: v.span,
                                rule: "values",
                                column: col.name.clone(),
                                found: c.ty.to_string(),
                                expected: "values of the column's type",
                            });
                            continue;
                        }
                        if let ValueKind::Lit(l) = &v.kind {
                            lits.push(lit_value(l));
                        }
                    }
                    if !r.warn && matches!(c.ty, Type::Category { levels: None }) {
                        let levels: Vec<String> = lits
                            .iter()
                            .filter_map(|l| match l {
                                Literal::Str(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect();
                        narrowed_levels.push((col.name.clone(), levels));
                    }
                    (
                        plan::RuleOp::Values {
                            column: col.name.clone(),
                            values: lits,
                        },
                        true,
                    )
                }
                ast::RuleKind::Matches(col, pattern, pspan) => {
                    let Some(c) = self.column(col, &frame) else {
                        continue;
                    };
                    col_lineage(&frame, &col.name);
                    if !c.ty.is_textual() {
                        self.errors.push(CheckError::RuleType {
                            span: col.span,
                            rule: "matches",
                            column: col.name.clone(),
                            found: c.ty.to_string(),
                            expected: "a str or category column",
                        });
                        continue;
                    }
                    if let Err(e) = regex_syntax::Parser::new().parse(pattern) {
                        self.errors.push(CheckError::BadRegex {
                            span: *pspan,
                            error: e
                                .to_string()
                                .lines()
                                .last()
                                .unwrap_or("")
                                .trim()
                                .to_string(),
                        });
                        continue;
                    }
                    (
                        plan::RuleOp::Matches {
                            column: col.name.clone(),
                            pattern: pattern.clone(),
                        },
                        true,
                    )
                }
                ast::RuleKind::Rows(op, n) => {
                    if *n < 0 {
                        self.errors.push(CheckError::BadOptionValue {
                            span: r.span,
                            key: "rows".into(),
                            expected: "a count of at least 0".into(),
                            found: n.to_string(),
                        });
                        continue;
                    }
                    (
                        plan::RuleOp::Rows {
                            op: (*op).into(),
                            n: *n,
                        },
                        false,
                    )
                }
                ast::RuleKind::NullRate(col, op, rate) => {
                    if self.column(col, &frame).is_none() {
                        continue;
                    }
                    if !(0.0..=1.0).contains(rate) {
                        self.errors.push(CheckError::RateRange {
                            span: r.span,
                            value: *rate,
                        });
                        continue;
                    }
                    (
                        plan::RuleOp::NullRate {
                            column: col.name.clone(),
                            op: (*op).into(),
                            rate: *rate,
                        },
                        false,
                    )
                }
                ast::RuleKind::Expect(e) => {
                    let Some(t) = self.check_expr(e, &frame, ExprContext::Expect) else {
                        continue;
                    };
                    if t.ty != Some(Type::Bool) {
                        self.errors.push(CheckError::NotBoolean {
                            span: e.span,
                            context: "`expect`",
                            found: t.ty.map(|t| t.to_string()).unwrap_or("null".into()),
                        });
                        continue;
                    }
                    lineage.extend(t.lineage.iter().cloned());
                    (plan::RuleOp::Expect { expr: t.expr }, true)
                }
            };
            self.lineage_uses.push(LineageUse {
                stage_id: stage_id.clone(),
                index,
                lineage,
            });
            rules.push(plan::CheckRule {
                warn: r.warn,
                row_level,
                reads_target: false,
                text: normalise_source(&self.sources.text(r.span.file)[r.span.start..r.span.end]),
                rule,
            });
        }
        // What a passing (or quarantining) check proves about the rows after it.
        for n in narrowed_nonnull {
            if let Some(c) = frame.get_mut(&n) {
                c.nullable = false;
            }
        }
        for (n, levels) in narrowed_levels {
            if let Some(c) = frame.get_mut(&n) {
                c.ty = Type::Category {
                    levels: Some(levels),
                };
            }
        }
        self.program.stages.push(Stage {
            id: stage_id.clone(),
            name: c.stage.name.clone(),
            inputs: vec![input.to_string()],
            op: Op::Check(plan::CheckOp {
                quarantine: c.quarantine,
                rules,
            }),
            frame: frame.clone(),
            plugins: vec![],
            span: c.stage.span,
        });
        self.output_id.insert(c.stage.name.clone(), stage_id);
        Some(frame)
    }

    fn check_range(
        &mut self,
        range: &ast::RangeLit,
        numeric: bool,
    ) -> Option<(Option<Literal>, Option<Literal>)> {
        let mut out = [None, None];
        let mut nums = [None, None];
        for (i, end) in [&range.lo, &range.hi].into_iter().enumerate() {
            let Some((lit, span)) = end else { continue };
            let ok = match lit {
                Lit::Int(v) => {
                    nums[i] = Some(*v as f64);
                    numeric
                }
                Lit::Float(v) => {
                    nums[i] = Some(*v);
                    numeric
                }
                Lit::Str(_) => !numeric,
                _ => false,
            };
            if !ok {
                self.errors.push(CheckError::BadOptionValue {
                    span: *span,
                    key: "range".into(),
                    expected: if numeric {
                        "a number".into()
                    } else {
                        "a date string such as \"2020-01-01\"".into()
                    },
                    found: lit_text(lit),
                });
                return None;
            }
            out[i] = Some(lit_value(lit));
        }
        if let (Some(lo), Some(hi)) = (nums[0], nums[1]) {
            if lo > hi {
                self.errors.push(CheckError::EmptyRange {
                    span: range.span,
                    lo: catalog::fmt_num(lo),
                    hi: catalog::fmt_num(hi),
                });
                return None;
            }
        }
        if let (Some(Literal::Str(lo)), Some(Literal::Str(hi))) = (&out[0], &out[1]) {
            if lo > hi {
                self.errors.push(CheckError::EmptyRange {
                    span: range.span,
                    lo: lo.clone(),
                    hi: hi.clone(),
                });
                return None;
            }
        }
        let [lo, hi] = out;
        Some((lo, hi))
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

    // ------------------------------------------------------------ split

    fn check_split(
        &mut self,
        s: &ast::Split,
        mut frame: Frame,
        stage_id: &str,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        if let Some(first) = &frame.split {
            self.errors.push(CheckError::SecondSplit {
                span: s.name.span,
                first: first.span,
                first_name: first.stage.clone(),
            });
            return None;
        }
        let _ = stage_id;
        let mut partitions: Vec<(String, f64, Span)> = vec![];
        let mut seed: u64 = 42;
        let mut cols: BTreeMap<&str, (&Ident, Span)> = BTreeMap::new();
        const COL_OPTS: [&str; 4] = ["key", "stratify", "order", "column"];
        for o in &s.options {
            let key = o.key.name.as_str();
            match (&o.value.kind, key) {
                (ValueKind::Lit(Lit::Int(n)), "seed") if *n >= 0 => seed = *n as u64,
                (_, "seed") => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value)
                }
                (ValueKind::Name(_), k) if COL_OPTS.contains(&k) => {
                    cols.insert(k, (&o.key, o.value.span));
                }
                (_, k) if COL_OPTS.contains(&k) => {
                    self.bad_value(key, o.value.span, "a column name", &o.value)
                }
                (ValueKind::Lit(Lit::Float(_) | Lit::Int(_)), _) => {
                    let v = match o.value.kind {
                        ValueKind::Lit(Lit::Float(f)) => f,
                        ValueKind::Lit(Lit::Int(i)) => i as f64,
                        _ => 0.0,
                    };
                    if let Some((_, _, first)) = partitions.iter().find(|p| p.0 == key) {
                        self.errors.push(CheckError::DuplicateName {
                            kind: "partition",
                            name: key.to_string(),
                            span: o.key.span,
                            first: *first,
                        });
                        continue;
                    }
                    if !(v > 0.0 && v <= 1.0) {
                        self.bad_value(
                            key,
                            o.value.span,
                            "a share of rows greater than 0 and at most 1",
                            &o.value,
                        );
                        continue;
                    }
                    partitions.push((key.to_string(), v, o.key.span));
                }
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: key.to_string(),
                    context: "a split",
                    valid: vec![
                        "train".into(),
                        "test".into(),
                        "valid".into(),
                        "seed".into(),
                        "key".into(),
                        "stratify".into(),
                        "order".into(),
                        "column".into(),
                    ],
                }),
            }
        }
        // The columns the options name.
        let col_value = |o: &str| -> Option<String> {
            s.options
                .iter()
                .find(|x| x.key.name == o)
                .and_then(|x| match &x.value.kind {
                    ValueKind::Name(n) => Some(n.clone()),
                    _ => None,
                })
        };
        for (a, b) in [("key", "order"), ("key", "stratify"), ("stratify", "order")] {
            if cols.contains_key(a) && cols.contains_key(b) {
                self.errors.push(CheckError::SplitConflict {
                    span: cols[b].0.span,
                    a: a.into(),
                    b: b.into(),
                });
            }
        }
        for (opt, (_, vspan)) in &cols {
            let Some(colname) = col_value(opt) else {
                continue;
            };
            let Some(c) = frame.get(&colname).filter(|c| c.group_of.is_none()) else {
                self.unknown_column(&colname, *vspan, &frame);
                continue;
            };
            let (ok, expected) = match *opt {
                "key" | "stratify" => (
                    c.ty.is_discrete(),
                    "a category, str, bool, int or date column",
                ),
                "order" => (
                    c.ty.is_numeric() || c.ty.is_temporal(),
                    "a number, date or datetime column",
                ),
                _ => (c.ty.is_textual(), "a category or str column"),
            };
            if !ok {
                self.errors.push(CheckError::SplitColumnType {
                    span: *vspan,
                    option: opt.to_string(),
                    column: colname.clone(),
                    found: c.ty.to_string(),
                    expected,
                });
            }
        }
        let (method, partition_column, names) = if let Some(colname) = col_value("column") {
            if let Some((name, _, span)) = partitions.first() {
                self.errors.push(CheckError::SplitConflict {
                    span: *span,
                    a: "column".into(),
                    b: name.clone(),
                });
                return None;
            }
            let levels = frame
                .get(&colname)
                .and_then(|c| c.ty.levels().map(|l| l.to_vec()));
            if let Some(l) = &levels {
                if !l.iter().any(|x| x == "train") {
                    self.errors.push(CheckError::NoTrain {
                        span: cols["column"].1,
                        found: l.clone(),
                    });
                    return None;
                }
            }
            (
                plan::SplitMethod::Column {
                    column: colname.clone(),
                },
                colname,
                levels,
            )
        } else {
            if !partitions.iter().any(|p| p.0 == "train") {
                self.errors.push(CheckError::NoTrain {
                    span: s.name.span,
                    found: partitions.iter().map(|p| p.0.clone()).collect(),
                });
                return None;
            }
            let sum: f64 = partitions.iter().map(|p| p.1).sum();
            if (sum - 1.0).abs() > 1e-6 {
                let span = partitions
                    .first()
                    .map(|p| p.2)
                    .unwrap_or(s.name.span)
                    .to(partitions.last().map(|p| p.2).unwrap_or(s.name.span));
                self.errors.push(CheckError::RatioSum { span, sum });
                return None;
            }
            if frame.get("partition").is_some() {
                self.errors
                    .push(CheckError::PartitionColumnClash { span: s.name.span });
                return None;
            }
            (
                plan::SplitMethod::Ratios {
                    partitions: partitions.iter().map(|p| (p.0.clone(), p.1)).collect(),
                    seed,
                    key: col_value("key"),
                    stratify: col_value("stratify"),
                    order: col_value("order"),
                },
                "partition".to_string(),
                Some(partitions.iter().map(|p| p.0.clone()).collect::<Vec<_>>()),
            )
        };
        match frame.get_mut(&partition_column) {
            Some(c) => {
                c.lineage.insert(PARTITION_ROOT.into());
                c.defined = s.name.span;
            }
            None => frame.push(Column {
                name: partition_column.clone(),
                ty: Type::Category {
                    levels: names.clone(),
                },
                nullable: false,
                group_of: None,
                encoded: false,
                lineage: BTreeSet::from([PARTITION_ROOT.to_string()]),
                defined: s.name.span,
            }),
        }
        frame.split = Some(SplitInfo {
            stage: s.name.name.clone(),
            column: partition_column.clone(),
            partitions: names,
            span: s.name.span,
        });
        let op = Op::Split(plan::SplitOp {
            partition_column,
            method,
        });
        Some((op, frame, BTreeSet::new()))
    }

    // ------------------------------------------------------------ transform

    fn check_transform(
        &mut self,
        t: &ast::Transform,
        mut frame: Frame,
        stage_id: &str,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let mut steps = vec![];
        let mut plugins = BTreeSet::new();
        let partition = frame.split.as_ref().map(|s| s.column.clone());
        for (index, step) in t.steps.iter().enumerate() {
            let before = self.error_count();
            let ops = self.check_step(
                step,
                &mut frame,
                partition.as_deref(),
                &mut plugins,
                stage_id,
                steps.len(),
            );
            let _ = index;
            if ops.is_none() {
                // Later references to the step's columns (and to the columns
                // a misspelt name probably meant) are not reported again: the
                // step's own error says what is wrong.
                let names = step_columns(&step.kind);
                let existing = frame.names();
                for n in &names {
                    if frame.get(n).is_none() {
                        let near =
                            crate::suggest::near_misses(n, existing.iter().map(String::as_str));
                        frame.poisoned.extend(near);
                    }
                }
                frame.poisoned.extend(names);
            }
            for op in ops.into_iter().flatten() {
                if op.is_fitted() && frame.split.is_none() {
                    let what = match &op {
                        plan::StepOp::Impute { method, .. } => {
                            format!("`impute ... with {method}`")
                        }
                        plan::StepOp::Encode { method, .. } => {
                            format!("`encode ... with {method}` (levels not declared)")
                        }
                        plan::StepOp::Scale { method, .. } => format!("`scale ... with {method}`"),
                        _ => "`bucket`".to_string(),
                    };
                    self.errors.push(CheckError::FittedBeforeSplit {
                        span: step.span,
                        what,
                        stage: t.name.name.clone(),
                    });
                }
                if self.error_count() == before {
                    steps.push(op);
                }
            }
        }
        Some((Op::Transform(plan::TransformOp { steps }), frame, plugins))
    }

    fn step_columns(
        &mut self,
        ids: &[Ident],
        frame: &Frame,
        step: &'static str,
        expected: &'static str,
        ok: impl Fn(&Type) -> bool,
    ) -> Option<Vec<String>> {
        let mut good = true;
        for id in ids {
            let Some(c) = self.column(id, frame) else {
                good = false;
                continue;
            };
            if !ok(&c.ty) {
                self.errors.push(CheckError::StepType {
                    span: id.span,
                    step,
                    column: id.name.clone(),
                    found: c.ty.to_string(),
                    expected,
                    defined: c.defined,
                });
                good = false;
            }
        }
        good.then(|| ids.iter().map(|i| i.name.clone()).collect())
    }

    fn check_step(
        &mut self,
        step: &ast::Step,
        frame: &mut Frame,
        partition: Option<&str>,
        plugins: &mut BTreeSet<String>,
        stage_id: &str,
        index: usize,
    ) -> Option<Vec<plan::StepOp>> {
        use ast::StepKind as S;
        let protect = |this: &mut Self, ids: &[&Ident], action: &'static str| -> bool {
            for id in ids {
                if Some(id.name.as_str()) == partition {
                    this.errors.push(CheckError::PartitionColumnEdit {
                        span: id.span,
                        column: id.name.clone(),
                        action,
                    });
                    return false;
                }
            }
            true
        };
        let single = match &step.kind {
            S::Impute(cols, with) => {
                let (method, value) = match with {
                    ast::ImputeWith::Method(m) => {
                        const M: &[&str] = &["mean", "median", "mode"];
                        if !M.contains(&m.name.as_str()) {
                            self.errors.push(CheckError::UnknownMethod {
                                span: m.span,
                                step: "impute",
                                name: m.name.clone(),
                                valid: &["mean", "median", "mode", "a literal such as 0"],
                            });
                            return None;
                        }
                        (m.name.clone(), None)
                    }
                    ast::ImputeWith::Lit(l, _) => ("value".to_string(), Some(l.clone())),
                };
                let numeric_only = method == "mean" || method == "median";
                let names = if numeric_only {
                    self.step_columns(cols, frame, "impute", "a number column", Type::is_numeric)?
                } else {
                    self.step_columns(cols, frame, "impute", "a column", |_| true)?
                };
                if !protect(self, &cols.iter().collect::<Vec<_>>(), "impute") {
                    return None;
                }
                for n in &names {
                    let Some(c) = frame.get_mut(n) else { continue };
                    if let (Some(l), ast::ImputeWith::Lit(_, lspan)) = (&value, with) {
                        let fits = matches!(
                            (l, &c.ty),
                            (Lit::Int(_), Type::Int | Type::Float)
                                | (Lit::Float(_), Type::Float)
                                | (Lit::Bool(_), Type::Bool)
                                | (Lit::Str(_), Type::Str | Type::Category { .. })
                        );
                        if !fits {
                            let found = c.ty.to_string();
                            self.errors.push(CheckError::ImputeValueType {
                                span: *lspan,
                                column: n.clone(),
                                found,
                                value: lit_text(l),
                            });
                            return None;
                        }
                        if let (Lit::Str(s), Type::Category { levels: Some(lv) }) = (l, &c.ty) {
                            if !lv.contains(s) {
                                let mut lv = lv.clone();
                                lv.push(s.clone());
                                c.ty = Type::Category { levels: Some(lv) };
                            }
                        }
                    }
                    if numeric_only && c.ty == Type::Int {
                        c.ty = Type::Float;
                    }
                    c.nullable = false;
                    c.defined = step.span;
                }
                Some(plan::StepOp::Impute {
                    columns: names,
                    method: plan::ImputeMethod::parse(&method)?,
                    value: value.as_ref().map(lit_value),
                })
            }
            S::Encode(cols, method, unknown) => {
                let m = method.name.as_str();
                if m != "onehot" && m != "ordinal" {
                    self.errors.push(CheckError::UnknownMethod {
                        span: method.span,
                        step: "encode",
                        name: m.to_string(),
                        valid: &["onehot", "ordinal"],
                    });
                    return None;
                }
                let unknown = match unknown.as_ref().map(|u| u.name.as_str()) {
                    None | Some("ignore") => {
                        if m == "onehot" {
                            "zeros"
                        } else {
                            "minus_one"
                        }
                    }
                    Some("error") => "error",
                    Some("zeros") if m == "onehot" => "zeros",
                    Some("minus_one") if m == "ordinal" => "minus_one",
                    Some(other) => {
                        let span = unknown.as_ref().map(|u| u.span).unwrap_or(step.span);
                        self.errors.push(CheckError::BadOptionValue {
                            span,
                            key: "unknown".into(),
                            expected: if m == "onehot" {
                                "`zeros` or `error`".into()
                            } else {
                                "`minus_one` or `error`".into()
                            },
                            found: format!("`{other}`"),
                        });
                        return None;
                    }
                };
                let names = self.step_columns(
                    cols,
                    frame,
                    "encode",
                    "a category, str, bool or int column",
                    |t| {
                        matches!(
                            t,
                            Type::Category { .. } | Type::Str | Type::Bool | Type::Int
                        )
                    },
                )?;
                if !protect(self, &cols.iter().collect::<Vec<_>>(), "encode") {
                    return None;
                }
                let mut ops = vec![];
                for (n, id) in names.iter().zip(cols) {
                    let Some(c) = frame.get(n).cloned() else {
                        continue;
                    };
                    let levels: Option<Vec<String>> = match &c.ty {
                        Type::Category { levels } => levels.clone(),
                        Type::Bool => Some(vec!["false".into(), "true".into()]),
                        _ => None,
                    };
                    let new_cols: Vec<Column> = if m == "ordinal" {
                        vec![Column {
                            name: format!("{n}_ordinal"),
                            ty: Type::Int,
                            nullable: false,
                            group_of: None,
                            encoded: false,
                            lineage: c.lineage.clone(),
                            defined: step.span,
                        }]
                    } else if let Some(levels) = &levels {
                        plan::names::onehot_columns(n, levels)
                            .into_iter()
                            .map(|name| Column {
                                name,
                                ty: Type::Float,
                                nullable: false,
                                group_of: None,
                                encoded: false,
                                lineage: c.lineage.clone(),
                                defined: step.span,
                            })
                            .collect()
                    } else {
                        vec![Column {
                            name: format!("{n}_*"),
                            ty: Type::Float,
                            nullable: false,
                            group_of: Some(n.clone()),
                            encoded: false,
                            lineage: c.lineage.clone(),
                            defined: step.span,
                        }]
                    };
                    let mut seen = BTreeSet::new();
                    for nc in &new_cols {
                        if frame.get(&nc.name).is_some() || !seen.insert(nc.name.clone()) {
                            self.errors.push(CheckError::EncodedCollision {
                                span: id.span,
                                name: nc.name.clone(),
                            });
                            return None;
                        }
                    }
                    let outputs = if m == "ordinal" || levels.is_some() {
                        Some(new_cols.iter().map(|c| c.name.clone()).collect())
                    } else {
                        None
                    };
                    let pos = frame.position(n).unwrap_or(frame.columns.len());
                    if let Some(orig) = frame.get_mut(n) {
                        orig.encoded = true;
                    }
                    for (k, nc) in new_cols.into_iter().enumerate() {
                        frame.insert(pos + 1 + k, nc);
                    }
                    ops.push(plan::StepOp::Encode {
                        column: n.clone(),
                        method: plan::EncodeMethod::parse(m)?,
                        levels,
                        outputs,
                        unknown: plan::UnknownLevel::parse(unknown)?,
                    });
                }
                // One step per column: a multi-column encode is lowered to
                // consecutive single-column steps.
                return Some(ops);
            }
            S::Scale(cols, method) => {
                const M: &[&str] = &["standard", "minmax", "robust"];
                if !M.contains(&method.name.as_str()) {
                    self.errors.push(CheckError::UnknownMethod {
                        span: method.span,
                        step: "scale",
                        name: method.name.clone(),
                        valid: M,
                    });
                    return None;
                }
                let names =
                    self.step_columns(cols, frame, "scale", "a number column", Type::is_numeric)?;
                if !protect(self, &cols.iter().collect::<Vec<_>>(), "scale") {
                    return None;
                }
                for n in &names {
                    if let Some(c) = frame.get_mut(n) {
                        c.ty = Type::Float;
                        c.defined = step.span;
                    }
                }
                Some(plan::StepOp::Scale {
                    columns: names,
                    method: plan::ScaleMethod::parse(&method.name)?,
                })
            }
            S::Clip(cols, range) => {
                let names =
                    self.step_columns(cols, frame, "clip", "a number column", Type::is_numeric)?;
                let (lo, hi) = self.check_range(range, true)?;
                let num = |l: Option<Literal>| match l {
                    Some(Literal::Int(i)) => Some(i as f64),
                    Some(Literal::Float(f)) => Some(f),
                    _ => None,
                };
                let (lo, hi) = (num(lo), num(hi));
                if lo.is_none() && hi.is_none() {
                    self.errors.push(CheckError::BadOptionValue {
                        span: range.span,
                        key: "clip".into(),
                        expected: "a range with at least one end, such as `0..100`".into(),
                        found: "`..`".into(),
                    });
                    return None;
                }
                for n in &names {
                    if let Some(c) = frame.get_mut(n) {
                        if c.ty == Type::Int
                            && (lo.is_some_and(|v| v.fract() != 0.0)
                                || hi.is_some_and(|v| v.fract() != 0.0))
                        {
                            c.ty = Type::Float;
                        }
                        c.defined = step.span;
                    }
                }
                Some(plan::StepOp::Clip {
                    columns: names,
                    lo,
                    hi,
                })
            }
            S::Bucket(col, n, nspan) => {
                let names = self.step_columns(
                    std::slice::from_ref(col),
                    frame,
                    "bucket",
                    "a number column",
                    Type::is_numeric,
                )?;
                if *n < 2 {
                    self.errors.push(CheckError::BucketCount {
                        span: *nspan,
                        n: *n,
                    });
                    return None;
                }
                if !protect(self, &[col], "bucket") {
                    return None;
                }
                if let Some(c) = frame.get_mut(&names[0]) {
                    c.ty = Type::Int;
                    c.defined = step.span;
                }
                Some(plan::StepOp::Bucket {
                    column: col.name.clone(),
                    quantiles: *n,
                })
            }
            S::Drop(cols) => {
                let names = self.columns_exist(cols, frame)?;
                if !protect(self, &cols.iter().collect::<Vec<_>>(), "drop") {
                    return None;
                }
                frame.columns.retain(|c| !names.contains(&c.name));
                for n in &names {
                    frame.gone.insert(
                        n.clone(),
                        format!("dropped by a `drop` step in `{stage_id}`"),
                    );
                }
                Some(plan::StepOp::Drop { columns: names })
            }
            S::Keep(cols) => {
                let names = self.columns_exist(cols, frame)?;
                let before = frame.names();
                frame.columns.retain(|c| {
                    names.contains(&c.name)
                        || Some(c.name.as_str()) == partition
                        || c.group_of.as_ref().is_some_and(|g| names.contains(g))
                });
                for n in before {
                    if frame.get(&n).is_none() {
                        frame
                            .gone
                            .insert(n, format!("left out by a `keep` step in `{stage_id}`"));
                    }
                }
                Some(plan::StepOp::Keep { columns: names })
            }
            S::Rename(a, b) => {
                self.column(a, frame)?;
                if !protect(self, &[a], "rename") {
                    return None;
                }
                if frame.get(&b.name).is_some() {
                    self.errors.push(CheckError::ColumnExists {
                        span: b.span,
                        name: b.name.clone(),
                    });
                    return None;
                }
                if let Some(c) = frame.get_mut(&a.name) {
                    c.name = b.name.clone();
                }
                frame.gone.remove(&b.name);
                frame.gone.insert(
                    a.name.clone(),
                    format!("renamed to `{}` in `{stage_id}`", b.name),
                );
                Some(plan::StepOp::Rename {
                    from: a.name.clone(),
                    to: b.name.clone(),
                })
            }
            S::Filter(e) => {
                let t = self.check_expr(e, frame, ExprContext::Filter)?;
                if t.ty != Some(Type::Bool) {
                    self.errors.push(CheckError::NotBoolean {
                        span: e.span,
                        context: "`filter`",
                        found: t.ty.map(|t| t.to_string()).unwrap_or("null".into()),
                    });
                    return None;
                }
                plugins.extend(t.plugins.iter().cloned());
                for n in &t.proves_not_null {
                    if let Some(c) = frame.get_mut(n) {
                        c.nullable = false;
                    }
                }
                self.lineage_uses.push(LineageUse {
                    stage_id: stage_id.to_string(),
                    index,
                    lineage: t.lineage.clone(),
                });
                Some(plan::StepOp::Filter {
                    expr: t.expr,
                    reads_target: false,
                })
            }
        };
        single.map(|o| vec![o])
    }

    // ------------------------------------------------------------ features

    fn check_features(
        &mut self,
        f: &ast::Features,
        mut frame: Frame,
        _stage_id: &str,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let mut out = vec![];
        let mut plugins = BTreeSet::new();
        let partition = frame.split.as_ref().map(|s| s.column.clone());
        let mut positions: BTreeMap<String, usize> = BTreeMap::new();
        for (i, feat) in f.features.iter().enumerate() {
            positions.entry(feat.name.name.clone()).or_insert(i);
        }
        self.defined_later = (positions, 0);
        for (i, feat) in f.features.iter().enumerate() {
            self.defined_later.1 = i;
            let checked = self.check_expr(&feat.expr, &frame, ExprContext::Feature);
            let Some(t) = checked else {
                frame.poisoned.insert(feat.name.name.clone());
                continue;
            };
            if Some(&feat.name.name) == partition.as_ref() {
                self.errors.push(CheckError::PartitionColumnEdit {
                    span: feat.name.span,
                    column: feat.name.name.clone(),
                    action: "replace",
                });
                continue;
            }
            if t.fitted && frame.split.is_none() {
                self.errors.push(CheckError::FittedBeforeSplit {
                    span: feat.expr.span,
                    what: format!("feature `{}` (an `over` lookup table)", feat.name.name),
                    stage: f.name.name.clone(),
                });
                continue;
            }
            let Some(ty) = t.ty.clone() else {
                self.errors.push(CheckError::NotBoolean {
                    span: feat.expr.span,
                    context: "a feature",
                    found: "always null".into(),
                });
                continue;
            };
            plugins.extend(t.plugins.iter().cloned());
            frame.upsert(Column {
                name: feat.name.name.clone(),
                ty: ty.clone(),
                nullable: t.nullable,
                group_of: None,
                encoded: false,
                lineage: t.lineage.clone(),
                defined: feat.expr.span,
            });
            out.push(plan::FeatureOp {
                name: feat.name.name.clone(),
                expr: t.expr,
                ty,
                nullable: t.nullable,
            });
        }
        self.defined_later = (BTreeMap::new(), 0);
        Some((
            Op::Features(plan::FeaturesOp { features: out }),
            frame,
            plugins,
        ))
    }

    // ------------------------------------------------------------ model

    fn check_model(
        &mut self,
        m: &ast::Model,
        frame: Frame,
        span: Span,
        stage_id: &str,
        input_ids: &[String],
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let model = m.name.name.as_str();
        let algo = catalog::algorithm(&m.algorithm.name);
        if algo.is_none() {
            self.errors.push(CheckError::UnknownAlgorithm {
                span: m.algorithm.span,
                name: m.algorithm.name.clone(),
                known: catalog::ALGORITHMS
                    .iter()
                    .map(|a| a.name.to_string())
                    .collect(),
            });
        }
        if frame.split.is_none() {
            self.errors.push(CheckError::ModelBeforeSplit {
                span: m.input.span,
                model: model.to_string(),
            });
        }
        // target and task
        let target_opt = m.params.iter().find(|o| o.key.name == "target");
        let task_opt = m.params.iter().find(|o| o.key.name == "task");
        let mut target: Option<(String, Column, Span)> = None;
        match target_opt {
            None => self.errors.push(CheckError::MissingTarget {
                span: m.name.span,
                model: model.to_string(),
            }),
            Some(o) => match &o.value.kind {
                ValueKind::Name(n) => match frame.get(n).filter(|c| c.group_of.is_none()) {
                    Some(c) => target = Some((n.clone(), c.clone(), o.value.span)),
                    None => self.unknown_column(n, o.value.span, &frame),
                },
                _ => self.bad_value("target", o.value.span, "a column name", &o.value),
            },
        }
        let mut task: Option<TaskKind> = None;
        if let Some((tname, tcol, tspan)) = &target {
            let declared = match task_opt.map(|o| &o.value.kind) {
                None => None,
                Some(ValueKind::Name(n)) if n == "regression" => Some(true),
                Some(ValueKind::Name(n)) if n == "classification" => Some(false),
                Some(_) => {
                    if let Some(o) = task_opt {
                        self.bad_value(
                            "task",
                            o.value.span,
                            "`regression` or `classification`",
                            &o.value,
                        );
                    }
                    None
                }
            };
            let classes = |c: &Column| -> TaskKind {
                match &c.ty {
                    Type::Bool => TaskKind::Binary,
                    Type::Category { levels: Some(l) } if l.len() <= 2 => TaskKind::Binary,
                    Type::Category { levels: Some(_) } => TaskKind::Multiclass,
                    // The class count is unknown before the data is read:
                    // check as binary (the most permissive), the runtime
                    // checks again.
                    _ => TaskKind::Binary,
                }
            };
            task = match (&tcol.ty, declared) {
                (Type::Float, None | Some(true)) => Some(TaskKind::Regression),
                (Type::Int, Some(true)) => Some(TaskKind::Regression),
                (Type::Int, Some(false)) => Some(TaskKind::Binary),
                // An algorithm of one kind of task settles it (`ridge`
                // regresses, `logistic_regression` classifies).
                (Type::Int, None) if algo.is_some_and(|a| a.tasks == [TaskKind::Regression]) => {
                    Some(TaskKind::Regression)
                }
                (Type::Int, None)
                    if algo.is_some_and(|a| !a.tasks.contains(&TaskKind::Regression)) =>
                {
                    Some(TaskKind::Binary)
                }
                (Type::Int, None) => {
                    self.errors.push(CheckError::TaskUnknown {
                        span: *tspan,
                        target: tname.clone(),
                        found: "int".into(),
                    });
                    None
                }
                (Type::Bool | Type::Str | Type::Category { .. }, None | Some(false)) => {
                    Some(classes(tcol))
                }
                (t, Some(reg)) if !t.is_temporal() => {
                    if let Some(o) = task_opt {
                        self.errors.push(CheckError::BadOptionValue {
                            span: o.value.span,
                            key: "task".into(),
                            expected: if reg {
                                "`classification` for a target of this type".into()
                            } else {
                                "`regression` for a float target".into()
                            },
                            found: format!(
                                "`{}` with a {} target",
                                if reg { "regression" } else { "classification" },
                                t
                            ),
                        });
                    }
                    None
                }
                (t, _) => {
                    self.errors.push(CheckError::TaskUnknown {
                        span: *tspan,
                        target: tname.clone(),
                        found: t.to_string(),
                    });
                    None
                }
            };
            if tcol.nullable {
                self.errors.push(CheckError::NullableInput {
                    span: *tspan,
                    column: tname.clone(),
                    defined: tcol.defined,
                    model: model.to_string(),
                    is_target: true,
                });
            }
        }
        if let (Some(a), Some(t)) = (algo, task) {
            let fits = a.tasks.contains(&t);
            if !fits {
                self.errors.push(CheckError::TaskUnsupported {
                    span: m.algorithm.span,
                    algorithm: a.name.to_string(),
                    task: t.name().to_string(),
                    supported: catalog::ALGORITHMS
                        .iter()
                        .filter(|x| x.tasks.contains(&t))
                        .map(|x| x.name.to_string())
                        .collect(),
                });
            }
        }

        // parameters
        let mut params = BTreeMap::new();
        let mut search = BTreeMap::new();
        if let Some(a) = algo {
            for o in &m.params {
                let key = o.key.name.as_str();
                if key == "target" || key == "task" {
                    continue;
                }
                let Some(spec) = a.params.iter().find(|p| p.name == key) else {
                    self.errors.push(CheckError::UnknownParam {
                        span: o.key.span,
                        algorithm: a.name.to_string(),
                        name: key.to_string(),
                        valid: a.params.iter().map(|p| p.name.to_string()).collect(),
                    });
                    continue;
                };
                match &o.value.kind {
                    ValueKind::List(items) => {
                        if m.tune.is_none() {
                            self.errors.push(CheckError::SearchWithoutTune {
                                span: o.value.span,
                                param: key.to_string(),
                            });
                            continue;
                        }
                        if items.is_empty() {
                            self.bad_value(key, o.value.span, "a non-empty list", &o.value);
                            continue;
                        }
                        let vals: Vec<ParamValue> = items
                            .iter()
                            .filter_map(|v| self.param_value(a.name, spec, v))
                            .collect();
                        if vals.len() == items.len() {
                            search.insert(key.to_string(), vals);
                        }
                    }
                    _ => {
                        if let Some(v) = self.param_value(a.name, spec, &o.value) {
                            params.insert(key.to_string(), v);
                        }
                    }
                }
            }
            for spec in a.params {
                if params.contains_key(spec.name) || search.contains_key(spec.name) {
                    continue;
                }
                if let Some(d) = spec.default {
                    let v = match spec.kind {
                        ParamKind::Float { .. } => d.parse().ok().map(ParamValue::Float),
                        ParamKind::Int { .. } => d.parse().ok().map(ParamValue::Int),
                        ParamKind::Bool => Some(ParamValue::Bool(d == "true")),
                        ParamKind::Choice(_) => Some(ParamValue::Str(d.to_string())),
                    };
                    if let Some(v) = v {
                        params.insert(spec.name.to_string(), v);
                    }
                }
            }
        }

        // tune
        let mut tune = None;
        if let (Some(tb), Some(t)) = (&m.tune, task) {
            let example = algo.and_then(tune_example).filter(|_| search.is_empty());
            tune = self.check_tune(tb, t, search.is_empty(), example);
        }

        // inputs
        let target_name = target.as_ref().map(|t| t.0.clone());
        let target_lineage = target
            .as_ref()
            .map(|t| t.1.lineage.clone())
            .unwrap_or_default();
        let partition = frame.split.as_ref().map(|s| s.column.clone());
        for x in &m.exclude {
            if frame.get(&x.name).is_none() {
                self.unknown_column(&x.name, x.span, &frame);
            }
        }
        let excluded: BTreeSet<&str> = m.exclude.iter().map(|x| x.name.as_str()).collect();
        let mut inputs: Vec<(Column, Span)> = vec![];
        match &m.features {
            Some(list) => {
                for id in list {
                    if Some(&id.name) == target_name.as_ref() {
                        self.errors.push(CheckError::TargetAsFeature {
                            span: id.span,
                            target: id.name.clone(),
                        });
                        continue;
                    }
                    match frame.get(&id.name) {
                        // Naming an encoded original means its encoded columns.
                        Some(c) if c.encoded => {
                            for e in frame.columns.iter().filter(|e| {
                                e.group_of.as_deref() == Some(&id.name)
                                    || (e.name.starts_with(&format!("{}_", id.name))
                                        && e.defined != c.defined
                                        && e.lineage == c.lineage
                                        && !e.encoded)
                            }) {
                                inputs.push(((**e).clone(), id.span));
                            }
                        }
                        Some(c) => inputs.push((c.clone(), id.span)),
                        None => self.unknown_column(&id.name, id.span, &frame),
                    }
                }
            }
            None => {
                for c in &frame.columns {
                    if Some(&c.name) == target_name.as_ref()
                        || Some(&c.name) == partition.as_ref()
                        || excluded.contains(c.name.as_str())
                        || c.encoded
                        || c.group_of.as_deref().is_some_and(|g| excluded.contains(g))
                    {
                        continue;
                    }
                    inputs.push(((**c).clone(), m.input.span));
                }
            }
        }
        if inputs.is_empty() && target.is_some() {
            self.errors.push(CheckError::NoInputs {
                span: m.name.span,
                model: model.to_string(),
            });
        }
        // Lineage of the columns whose definition failed: a nullable input
        // computed from one is most likely the same mistake.
        let poisoned_roots: BTreeSet<String> = frame
            .columns
            .iter()
            .filter(|c| frame.poisoned.contains(&c.name))
            .flat_map(|c| c.lineage.iter().cloned())
            .collect();
        for (c, use_span) in &inputs {
            let label_span = if m.features.is_some() {
                *use_span
            } else {
                m.input.span
            };
            if frame.poisoned.contains(&c.name) {
                continue;
            }
            if c.lineage.contains(PARTITION_ROOT) {
                self.errors.push(CheckError::ReadsPartition {
                    span: label_span,
                    column: c.name.clone(),
                    defined: c.defined,
                });
                continue;
            }
            if !target_lineage.is_empty() && !c.lineage.is_disjoint(&target_lineage) {
                self.errors.push(CheckError::Leakage {
                    span: label_span,
                    feature: c.name.clone(),
                    target: target_name.clone().unwrap_or_default(),
                    defined: c.defined,
                });
                continue;
            }
            if !c.ty.is_model_input() {
                self.errors.push(CheckError::NonNumericInput {
                    span: label_span,
                    column: c.name.clone(),
                    found: c.ty.to_string(),
                    defined: c.defined,
                    model: model.to_string(),
                });
                continue;
            }
            if c.nullable && c.lineage.is_disjoint(&poisoned_roots) {
                self.errors.push(CheckError::NullableInput {
                    span: label_span,
                    column: c.name.clone(),
                    defined: c.defined,
                    model: model.to_string(),
                    is_target: false,
                });
            }
        }
        let (Some(a), Some(task), Some((tname, tcol, _))) = (algo, task, target) else {
            return None;
        };
        let classes = match &tcol.ty {
            Type::Category { levels: Some(l) } => Some(l.clone()),
            Type::Bool => Some(vec!["false".into(), "true".into()]),
            _ => None,
        };
        let op = Op::Model(plan::ModelOp {
            algorithm: a.name.to_string(),
            task: if task == TaskKind::Regression {
                plan::Task::Regression
            } else {
                plan::Task::Classification
            },
            target: tname.clone(),
            classes,
            features: inputs.iter().map(|(c, _)| c.name.clone()).collect(),
            params,
            search,
            tune,
        });
        let mut chain = input_ids.to_vec();
        chain.extend(self.upstream_of(input_ids));
        self.models.insert(
            model.to_string(),
            ModelInfo {
                stage_id: stage_id.to_string(),
                span,
                task,
                target: tname,
                target_lineage: tcol.lineage.clone(),
                frame: frame.clone(),
                input_lineage: inputs
                    .iter()
                    .flat_map(|(c, _)| c.lineage.iter().cloned())
                    .collect(),
                input_chain: chain,
            },
        );
        Some((op, frame, BTreeSet::new()))
    }

    /// Every stage upstream of the given ones (transitively).
    fn upstream_of(&self, ids: &[String]) -> Vec<String> {
        let mut out = vec![];
        let mut stack: Vec<String> = ids.to_vec();
        while let Some(id) = stack.pop() {
            if let Some(st) = self.program.stages.iter().find(|s| s.id == id) {
                for i in &st.inputs {
                    if !out.contains(i) {
                        out.push(i.clone());
                        stack.push(i.clone());
                    }
                }
            }
        }
        out
    }

    fn param_value(
        &mut self,
        algorithm: &str,
        spec: &catalog::ParamSpec,
        v: &ast::Value,
    ) -> Option<ParamValue> {
        let found = value_text(v);
        let out = match (spec.kind, &v.kind) {
            (
                ParamKind::Float {
                    min,
                    max,
                    min_open,
                    max_open,
                },
                ValueKind::Lit(Lit::Float(_) | Lit::Int(_)),
            ) => {
                let x = match v.kind {
                    ValueKind::Lit(Lit::Float(f)) => f,
                    ValueKind::Lit(Lit::Int(i)) => i as f64,
                    _ => 0.0,
                };
                let ok = (if min_open { x > min } else { x >= min })
                    && (if max_open { x < max } else { x <= max });
                ok.then_some(ParamValue::Float(x))
            }
            (ParamKind::Int { min, max }, ValueKind::Lit(Lit::Int(i))) => {
                (*i >= min && *i <= max).then_some(ParamValue::Int(*i))
            }
            (ParamKind::Bool, ValueKind::Lit(Lit::Bool(b))) => Some(ParamValue::Bool(*b)),
            (ParamKind::Choice(c), ValueKind::Name(n)) => {
                c.contains(&n.as_str()).then(|| ParamValue::Str(n.clone()))
            }
            (ParamKind::Choice(c), ValueKind::Lit(Lit::Str(n))) => {
                c.contains(&n.as_str()).then(|| ParamValue::Str(n.clone()))
            }
            _ => None,
        };
        if out.is_none() {
            self.errors.push(CheckError::ParamValue {
                span: v.span,
                algorithm: algorithm.to_string(),
                name: spec.name.to_string(),
                expected: spec.kind.describe(),
                found,
            });
        }
        out
    }

    fn check_tune(
        &mut self,
        tb: &ast::Tune,
        task: TaskKind,
        no_search: bool,
        example: Option<String>,
    ) -> Option<plan::TuneOp> {
        let mut tune = plan::TuneOp {
            cv: 5,
            metric: if task == TaskKind::Regression {
                plan::Metric::Rmse
            } else {
                plan::Metric::Accuracy
            },
            search: plan::SearchKind::Grid,
            trials: None,
            seed: 42,
        };
        let mut ok = true;
        for o in &tb.options {
            let key = o.key.name.as_str();
            match (key, &o.value.kind) {
                ("cv", ValueKind::Lit(Lit::Int(k))) if (2..=100).contains(k) => tune.cv = *k,
                ("cv", _) => {
                    self.bad_value(key, o.value.span, "an integer from 2 to 100", &o.value);
                    ok = false;
                }
                ("seed", ValueKind::Lit(Lit::Int(s))) if *s >= 0 => tune.seed = *s as u64,
                ("seed", _) => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value);
                    ok = false;
                }
                ("metric", ValueKind::Name(n)) => {
                    let ident = Ident {
                        name: n.clone(),
                        span: o.value.span,
                    };
                    let known = self.check_metric(&ident, task);
                    match plan::Metric::parse(n).filter(|_| known) {
                        Some(m) => tune.metric = m,
                        None => ok = false,
                    }
                }
                ("metric", _) => {
                    self.bad_value(key, o.value.span, "a metric name", &o.value);
                    ok = false;
                }
                ("search", ValueKind::Name(n)) if n == "grid" => {
                    tune.search = plan::SearchKind::Grid
                }
                ("search", ValueKind::Call(n, args))
                    if n.name == "random"
                        && args.len() == 1
                        && matches!(args[0].kind, ValueKind::Lit(Lit::Int(k)) if k >= 1) =>
                {
                    tune.search = plan::SearchKind::Random;
                    if let ValueKind::Lit(Lit::Int(k)) = args[0].kind {
                        tune.trials = Some(k);
                    }
                }
                ("search", _) => {
                    self.bad_value(
                        key,
                        o.value.span,
                        "`grid` or `random(N)` with N >= 1",
                        &o.value,
                    );
                    ok = false;
                }
                _ => {
                    self.errors.push(CheckError::UnknownOption {
                        span: o.key.span,
                        key: key.to_string(),
                        context: "`tune`",
                        valid: vec!["cv".into(), "metric".into(), "search".into(), "seed".into()],
                    });
                    ok = false;
                }
            }
        }
        if no_search {
            self.errors.push(CheckError::TuneWithoutSearch {
                span: tb.span,
                example,
            });
        }
        ok.then_some(tune)
    }

    /// Reports an unknown metric or one that does not fit the task.
    fn check_metric(&mut self, m: &Ident, task: TaskKind) -> bool {
        let regression = task == TaskKind::Regression;
        let Some(spec) = catalog::metric_spec(&m.name) else {
            self.errors.push(CheckError::UnknownMetric {
                span: m.span,
                name: m.name.clone(),
                valid: catalog::METRICS
                    .iter()
                    .filter(|x| x.regression == regression)
                    .map(|x| x.name.to_string())
                    .collect(),
            });
            return false;
        };
        let fits = spec.regression == regression;
        let binary_mismatch = spec.binary_only && task == TaskKind::Multiclass;
        if !fits || binary_mismatch {
            let task_name = if binary_mismatch {
                "multiclass classification"
            } else if regression {
                "regression"
            } else {
                "classification"
            };
            self.errors.push(CheckError::MetricTask {
                span: m.span,
                metric: m.name.clone(),
                task: task_name.into(),
                valid: catalog::METRICS
                    .iter()
                    .filter(|x| x.regression == regression && !(binary_mismatch && x.binary_only))
                    .map(|x| x.name.to_string())
                    .collect(),
            });
            return false;
        }
        true
    }

    // ------------------------------------------------------------ evaluate

    fn model_for(
        &mut self,
        id: &Ident,
        named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>,
    ) -> Option<ModelInfo> {
        if let Some(m) = self.models.get(&id.name) {
            return Some(m.clone());
        }
        if !matches!(named.get(&id.name), Some((Named::Model(_), _, _))) {
            self.errors.push(CheckError::UnknownStage {
                name: id.name.clone(),
                span: id.span,
                available: named
                    .iter()
                    .filter(|(_, v)| matches!(v.0, Named::Model(_)))
                    .map(|(k, _)| k.clone())
                    .collect(),
                wanted: "model",
            });
        }
        // A declared model that failed to check was reported already.
        None
    }

    fn gate_range(
        &mut self,
        g: &ast::Gate,
        task: TaskKind,
        in_slice: bool,
    ) -> Option<plan::GateOp> {
        if !self.check_metric(&g.metric, task) {
            return None;
        }
        let spec = catalog::metric_spec(&g.metric.name)?;
        let (lo, hi) = match g.aggregate.as_ref().map(|a| a.name.as_str()) {
            None | Some("min") | Some("max") => (spec.lo, spec.hi),
            Some("gap") => (0.0, spec.hi - spec.lo),
            Some("ratio") => (0.0, 1.0),
            Some(other) => {
                self.errors.push(CheckError::UnknownAggregate {
                    span: g.aggregate.as_ref().map(|a| a.span).unwrap_or(g.span),
                    name: other.to_string(),
                });
                return None;
            }
        };
        if g.aggregate.is_some() && !in_slice {
            self.errors.push(CheckError::UnknownAggregate {
                span: g.aggregate.as_ref().map(|a| a.span).unwrap_or(g.span),
                name: g
                    .aggregate
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_default(),
            });
            return None;
        }
        if g.threshold < lo || g.threshold > hi {
            let fmt = |x: f64| {
                if x.is_infinite() {
                    if x > 0.0 {
                        "∞".to_string()
                    } else {
                        "-∞".to_string()
                    }
                } else {
                    catalog::fmt_num(x)
                }
            };
            self.errors.push(CheckError::ThresholdRange {
                span: g.threshold_span,
                metric: match &g.aggregate {
                    Some(a) => format!("{}({})", a.name, g.metric.name),
                    None => g.metric.name.clone(),
                },
                value: g.threshold,
                range: format!("[{}, {}]", fmt(lo), fmt(hi)),
            });
            return None;
        }
        Some(plan::GateOp {
            aggregate: match &g.aggregate {
                Some(a) => Some(plan::SliceAggregate::parse(&a.name)?),
                None => None,
            },
            metric: plan::Metric::parse(&g.metric.name)?,
            op: g.op.into(),
            threshold: g.threshold,
        })
    }

    fn check_evaluate(
        &mut self,
        e: &ast::Evaluate,
        span: Span,
        named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>,
    ) -> Option<String> {
        let m = self.model_for(&e.model, named)?;
        let before = self.error_count();
        let partitions = partition_names(&m.frame);
        if !partitions.is_empty() && !partitions.contains(&e.partition.name) {
            self.errors.push(CheckError::UnknownPartition {
                span: e.partition.span,
                name: e.partition.name.clone(),
                partitions: partitions.clone(),
            });
        }
        let mut metrics = vec![];
        for mt in &e.metrics {
            // An unknown metric is reported by `check_metric`.
            if self.check_metric(mt, m.task) {
                metrics.extend(plan::Metric::parse(&mt.name));
            }
        }
        let mut gates = vec![];
        for g in &e.gates {
            if let Some(op) = self.gate_range(g, m.task, false) {
                gates.push(op);
            }
        }
        let mut slices = vec![];
        for s in &e.slices {
            match m.frame.get(&s.column.name) {
                None => self.unknown_column(&s.column.name, s.column.span, &m.frame.clone()),
                Some(c) if !c.ty.is_discrete() || c.group_of.is_some() => {
                    self.errors.push(CheckError::SliceColumn {
                        span: s.column.span,
                        column: s.column.name.clone(),
                        found: c.ty.to_string(),
                    })
                }
                Some(_) => {}
            }
            let mut sg = vec![];
            for g in &s.gates {
                if let Some(op) = self.gate_range(g, m.task, true) {
                    sg.push(op);
                }
            }
            slices.push(plan::SliceOp {
                column: s.column.name.clone(),
                gates: sg,
            });
        }
        if self.error_count() != before {
            return None;
        }
        let id = format!("evaluate.{}.{}", e.model.name, e.partition.name);
        let frame = m.frame.clone();
        self.program.stages.push(Stage {
            id: id.clone(),
            name: e.model.name.clone(),
            inputs: vec![m.stage_id.clone()],
            op: Op::Evaluate(plan::EvaluateOp {
                model: e.model.name.clone(),
                partition: e.partition.name.clone(),
                metrics,
                gates,
                slices,
            }),
            frame,
            plugins: vec![],
            span,
        });
        Some(id)
    }

    fn check_deploy(
        &mut self,
        d: &ast::Deploy,
        span: Span,
        named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>,
        gated_by: Vec<String>,
        has_gates: bool,
    ) {
        let Some(m) = self.model_for(&d.model, named) else {
            return;
        };
        let before = self.error_count();
        if plan::names::registry_name_problem(&d.name, false).is_some() {
            self.errors.push(CheckError::BadOptionValue {
                span: d.name_span,
                key: "deployment name".into(),
                expected: "letters, digits, `-`, `_` or `.`, starting with a letter or digit"
                    .into(),
                found: format!("\"{}\"", d.name),
            });
        }
        let mut alias = None;
        for o in &d.options {
            match (o.key.name.as_str(), &o.value.kind) {
                ("alias", ValueKind::Lit(Lit::Str(a)))
                    if plan::names::registry_name_problem(a, true).is_none() =>
                {
                    alias = Some(a.clone())
                }
                ("alias", _) => self.bad_value(
                    "alias",
                    o.value.span,
                    "a name such as \"production\" (letters, digits, `-`, `_` or `.`, not only hex digits)",
                    &o.value,
                ),
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: o.key.name.clone(),
                    context: "`deploy`",
                    valid: vec!["alias".into()],
                }),
            }
        }
        // The target must arrive as it is in a source: a target computed in
        // `features` or a transform would need the raw value at serving.
        let raw_target = m.target_lineage.len() == 1
            && m.target_lineage
                .iter()
                .all(|root| root.rsplit_once('.').is_some_and(|(_, c)| c == m.target));
        if !raw_target && !m.target_lineage.is_empty() {
            self.errors.push(CheckError::DerivedTarget {
                span: d.model.span,
                model: d.model.name.clone(),
                target: m.target.clone(),
                from: m.target_lineage.iter().cloned().collect(),
            });
        }
        if !has_gates {
            self.errors.push(CheckError::UngatedDeploy {
                span: d.model.span,
                model: d.model.name.clone(),
            });
        }
        if self.error_count() != before {
            return;
        }
        // The serving slice: the model's upstream stages, sources first.
        let mut chain: Vec<String> = m.input_chain.clone();
        chain.reverse();
        chain.push(m.stage_id.clone());
        let serving_stages: Vec<String> = chain
            .into_iter()
            .filter(|id| !id.starts_with("split."))
            .collect();
        // The request columns: exactly the source columns the inference
        // slice reads: those the model's inputs are computed from, and those
        // of the row-level checks and filters that apply at serving (the
        // ones that read no model's target); never the target's own.
        let targets: BTreeSet<String> = self
            .models
            .values()
            .flat_map(|m| m.target_lineage.iter().cloned())
            .collect();
        let mut needed: BTreeSet<String> = m.input_lineage.clone();
        for u in &self.lineage_uses {
            if !serving_stages.contains(&u.stage_id) || !u.lineage.is_disjoint(&targets) {
                continue;
            }
            let applies = self
                .program
                .stages
                .iter()
                .find(|s| s.id == u.stage_id)
                .is_some_and(|s| match &s.op {
                    Op::Check(c) => c.rules.get(u.index).is_some_and(|r| r.row_level),
                    _ => true,
                });
            if applies {
                needed.extend(u.lineage.iter().cloned());
            }
        }
        let mut request_columns = vec![];
        for id in &serving_stages {
            if let Some(st) = self.program.stages.iter().find(|s| &s.id == id) {
                if let Op::Source(src) = &st.op {
                    for c in &src.columns {
                        let root = format!("{}.{}", st.name, c.name);
                        if needed.contains(&root) && !m.target_lineage.contains(&root) {
                            request_columns.push(c.clone());
                        }
                    }
                }
            }
        }
        let _ = &m.target;
        let _ = m.span;
        self.program.stages.push(Stage {
            id: format!("deploy.{}", d.name),
            name: d.name.clone(),
            inputs: std::iter::once(m.stage_id.clone())
                .chain(gated_by.iter().cloned())
                .collect(),
            op: Op::Deploy(plan::DeployOp {
                model: d.model.name.clone(),
                name: d.name.clone(),
                alias,
                serving_stages,
                request_columns,
                gated_by,
                monitor: None,
            }),
            frame: Frame {
                split: m.frame.split.clone(),
                ..Frame::default()
            },
            plugins: vec![],
            span,
        });
    }

    fn check_monitor(
        &mut self,
        mon: &ast::Monitor,
        span: Span,
        named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>,
    ) {
        let Some(m) = self.model_for(&mon.model, named) else {
            return;
        };
        let before = self.error_count();
        let mut op = plan::MonitorOp {
            model: mon.model.name.clone(),
            drift: vec![],
            performance: vec![],
            latency: vec![],
            error_rate: None,
            window: None,
        };
        for item in &mon.items {
            match &item.kind {
                ast::MonitorKind::Drift {
                    columns,
                    stat,
                    p_value,
                    op: cmp,
                    threshold,
                    threshold_span,
                } => {
                    let Some(&(sname, numeric_ok, cat_ok, has_p, stat_max)) =
                        catalog::DRIFT_STATS.iter().find(|s| s.0 == stat.name)
                    else {
                        self.errors.push(CheckError::DriftStat {
                            span: stat.span,
                            message: format!("unknown drift statistic `{}`", stat.name),
                            help: format!(
                                "{}statistics: `psi`, `ks`, `wasserstein`, `js`, `chi2`",
                                crate::suggest::did_you_mean(
                                    &stat.name,
                                    catalog::DRIFT_STATS.iter().map(|s| s.0)
                                )
                                .map(|d| format!("{d} "))
                                .unwrap_or_default()
                            ),
                        });
                        continue;
                    };
                    if *p_value && !has_p {
                        self.errors.push(CheckError::DriftStat {
                            span: stat.span,
                            message: format!("`{sname}` has no p-value"),
                            help: "p-values come with `ks` and `chi2`; threshold the statistic itself: `psi < 0.2`".into(),
                        });
                        continue;
                    }
                    let max = if *p_value { 1.0 } else { stat_max };
                    if *threshold < 0.0 || *threshold > max {
                        self.errors.push(CheckError::ThresholdRange {
                            span: *threshold_span,
                            metric: if *p_value {
                                format!("{sname} p-value")
                            } else {
                                sname.to_string()
                            },
                            value: *threshold,
                            range: if max.is_infinite() {
                                "[0, ∞]".into()
                            } else {
                                "[0, 1]".into()
                            },
                        });
                        continue;
                    }
                    for c in columns {
                        let Some(col) = m.frame.get(&c.name).filter(|c| c.group_of.is_none())
                        else {
                            self.unknown_column(&c.name, c.span, &m.frame.clone());
                            continue;
                        };
                        let numeric = col.ty.is_numeric();
                        let categorical = col.ty.is_textual() || col.ty == Type::Bool;
                        let ok = (numeric && numeric_ok) || (categorical && cat_ok);
                        if !ok {
                            self.errors.push(CheckError::DriftStat {
                                span: c.span,
                                message: format!(
                                    "`{sname}` cannot compare `{}`, which is {}",
                                    c.name, col.ty
                                ),
                                help: if categorical {
                                    "for categories use `chi2`, `psi` or `js`".into()
                                } else if numeric {
                                    "for numbers use `psi`, `ks`, `wasserstein` or `js`".into()
                                } else {
                                    "drift is measured on numbers and categories; derive one from this column".into()
                                },
                            });
                            continue;
                        }
                        let Some(stat) = plan::DriftStat::parse(sname) else {
                            continue;
                        };
                        op.drift.push(plan::DriftOp {
                            column: c.name.clone(),
                            stat,
                            p_value: *p_value,
                            op: (*cmp).into(),
                            threshold: *threshold,
                        });
                    }
                }
                ast::MonitorKind::Performance {
                    metric,
                    op: cmp,
                    threshold,
                    threshold_span,
                } => {
                    let g = ast::Gate {
                        aggregate: None,
                        metric: metric.clone(),
                        op: *cmp,
                        threshold: *threshold,
                        threshold_span: *threshold_span,
                        span: item.span,
                    };
                    if let Some(g) = self.gate_range(&g, m.task, false) {
                        op.performance.push(g);
                    }
                }
                ast::MonitorKind::Latency {
                    percentile,
                    op: cmp,
                    value,
                    value_span,
                } => {
                    let pct = percentile
                        .name
                        .strip_prefix('p')
                        .and_then(|d| d.parse::<u32>().ok())
                        .and_then(|n| match n {
                            1..=99 => Some(n as f64),
                            999 => Some(99.9),
                            _ => None,
                        });
                    let Some(pct) = pct else {
                        self.errors.push(CheckError::BadLatency {
                            span: percentile.span,
                            message: format!("`{}` is not a percentile", percentile.name),
                        });
                        continue;
                    };
                    let ms = match value {
                        Lit::Quantity(v, u) => millis(*v, u),
                        _ => None,
                    };
                    let Some(ms) = ms.filter(|m| *m > 0.0) else {
                        self.errors.push(CheckError::BadLatency {
                            span: *value_span,
                            message: format!("`{}` is not a positive duration", lit_text(value)),
                        });
                        continue;
                    };
                    op.latency.push(plan::LatencyOp {
                        percentile: pct,
                        op: (*cmp).into(),
                        millis: ms,
                    });
                }
                ast::MonitorKind::ErrorRate {
                    op: cmp,
                    threshold,
                    threshold_span,
                } => {
                    if !(0.0..=1.0).contains(threshold) {
                        self.errors.push(CheckError::RateRange {
                            span: *threshold_span,
                            value: *threshold,
                        });
                        continue;
                    }
                    op.error_rate = Some(plan::ThresholdOp {
                        op: (*cmp).into(),
                        threshold: *threshold,
                    });
                }
                ast::MonitorKind::Option(o) => match (o.key.name.as_str(), &o.value.kind) {
                    ("window", ValueKind::Lit(Lit::Int(n))) if *n >= 1 => op.window = Some(*n),
                    ("window", _) => self.bad_value(
                        "window",
                        o.value.span,
                        "a positive number of rows",
                        &o.value,
                    ),
                    _ => self.errors.push(CheckError::UnknownOption {
                        span: o.key.span,
                        key: o.key.name.clone(),
                        context: "`monitor`",
                        valid: vec!["window".into()],
                    }),
                },
            }
        }
        if self.error_count() != before {
            return;
        }
        self.program.stages.push(Stage {
            id: format!("monitor.{}", mon.model.name),
            name: mon.model.name.clone(),
            inputs: vec![m.stage_id.clone()],
            op: Op::Monitor(op),
            // Only the split: the stage reads the model's frame by partition.
            frame: Frame {
                split: m.frame.split.clone(),
                ..Frame::default()
            },
            plugins: vec![],
            span,
        });
    }
}

/// A search space for a `tune` help line: the algorithm's first numeric
/// parameter, around its default and inside its range
/// (`alpha = [0.1, 1.0, 10.0]`).
fn tune_example(a: &catalog::AlgorithmSpec) -> Option<String> {
    a.params.iter().find_map(|p| match p.kind {
        ParamKind::Float { min, max, .. } => {
            let d: f64 = p.default?.parse().ok()?;
            let vals = [d / 10.0, d, d * 10.0];
            (d > 0.0 && vals[0] > min && vals[2] <= max)
                .then(|| format!("{} = [{:?}, {:?}, {:?}]", p.name, vals[0], vals[1], vals[2]))
        }
        ParamKind::Int { min, max } => {
            let d: i64 = p.default.and_then(|d| d.parse().ok()).unwrap_or(min.max(4));
            let vals = [d, d.saturating_mul(2), d.saturating_mul(4)];
            (d >= 1 && vals[0] >= min && vals[2] <= max)
                .then(|| format!("{} = [{}, {}, {}]", p.name, vals[0], vals[1], vals[2]))
        }
        _ => None,
    })
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
