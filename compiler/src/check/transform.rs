//! `transform` and `features` declarations: steps, fitted or not, and derived columns.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_transform(
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

    pub(super) fn step_columns(
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

    pub(super) fn check_step(
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
                    let levels = onehot_levels(&c.ty);
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

    pub(super) fn check_features(
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
}

/// The levels a one-hot encoding of a column of type `ty` gives a column
/// each (a category's declared levels, a bool's two); `None` when they are
/// known only from the data (one `COL_*` group).
pub(super) fn onehot_levels(ty: &Type) -> Option<Vec<String>> {
    match ty {
        Type::Category { levels } => levels.clone(),
        Type::Bool => Some(vec!["false".into(), "true".into()]),
        _ => None,
    }
}
