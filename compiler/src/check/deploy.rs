//! `evaluate`, `deploy` and `monitor` declarations: metrics, gates, slices, the inference slice and monitor rules.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_evaluate(
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

    pub(super) fn check_deploy(
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
        // The serving slice: the stages a request row goes through, from
        // the model back along each stage's first (LEFT) input; the other
        // upstream stages (the right and events sides of joins and
        // histories) build the lookup state.
        let mut left_path: BTreeSet<String> = BTreeSet::new();
        let mut at = m.input_chain.first().cloned();
        while let Some(id) = at {
            at = self
                .program
                .stages
                .iter()
                .find(|s| s.id == id)
                .and_then(|s| s.inputs.first().cloned());
            left_path.insert(id);
        }
        let in_plan_order = |keep: &dyn Fn(&String) -> bool| -> Vec<String> {
            self.program
                .stages
                .iter()
                .map(|s| &s.id)
                .filter(|id| keep(id) && !id.starts_with("split."))
                .cloned()
                .collect()
        };
        let mut serving_stages = in_plan_order(&|id| left_path.contains(id));
        serving_stages.push(m.stage_id.clone());
        // The sides the request path looks up: each join's right side and
        // each history's events, with what they are computed from (even
        // when the request path reads the same stages: a history of a
        // table's own earlier rows).
        let sides: Vec<String> = self
            .program
            .stages
            .iter()
            .filter(|s| left_path.contains(&s.id) && matches!(s.op, Op::Join(_) | Op::History(_)))
            .filter_map(|s| s.inputs.get(1).cloned())
            .collect();
        let mut looked_up: BTreeSet<String> = self.upstream_of(&sides).into_iter().collect();
        looked_up.extend(sides);
        let lookup_stages = in_plan_order(&|id| looked_up.contains(id));
        // A history's `at`, when it is a source column as is, defaults to
        // the time of the request.
        let mut request_time: Vec<String> = vec![];
        for st in self
            .program
            .stages
            .iter()
            .filter(|s| left_path.contains(&s.id))
        {
            if let Op::History(h) = &st.op {
                if let Some(c) = st.frame.get(&h.at) {
                    if let [root] = c.lineage.iter().collect::<Vec<_>>()[..] {
                        if root.rsplit_once('.').is_some_and(|(_, col)| col == h.at) {
                            request_time.push(h.at.clone());
                        }
                    }
                }
            }
        }
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
                            let mut c = c.clone();
                            c.nullable |= request_time.contains(&c.name);
                            request_columns.push(c);
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
                lookup_stages,
                request_time,
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

    pub(super) fn check_monitor(
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
