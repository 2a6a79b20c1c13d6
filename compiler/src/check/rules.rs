//! `check` declarations: row-level and frame-level rules, `expect`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_check(
        &mut self,
        c: &ast::Check,
        mut frame: Frame,
        input: &str,
    ) -> Option<Frame> {
        let stage_id = format!("check.{}", c.stage.name);
        let mut rules = vec![];
        let mut narrowed_nonnull: Vec<String> = vec![];
        let mut proved_unique: Vec<Vec<String>> = vec![];
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
                    if !r.warn {
                        proved_unique.push(cols.clone());
                    }
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
        for set in proved_unique {
            let set: Option<Vec<(String, Span)>> = set
                .iter()
                .map(|n| frame.get(n).map(|c| (n.clone(), c.defined)))
                .collect();
            frame.unique.extend(set);
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

    pub(super) fn check_range(
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
}
