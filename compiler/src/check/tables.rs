//! `join` and `history` declarations: keys, uniqueness proofs, point-in-time
//! aggregates, and the rule that events reach a model only through `history`.

use super::*;
use crate::plan::{HistoryAggregate, JoinHow};

/// What a key's type is compared as (`None`: not usable as a key).
fn key_kind(t: &Type) -> Option<&'static str> {
    match t {
        Type::Int => Some("int"),
        Type::Str | Type::Category { .. } => Some("text"),
        Type::Bool => Some("bool"),
        Type::Date { .. } => Some("date"),
        Type::Float | Type::Datetime { .. } => None,
    }
}

/// Microseconds in one unit of a window.
fn window_unit_us(unit: &str) -> Option<f64> {
    Some(match unit {
        "d" => 86_400e6,
        "h" => 3_600e6,
        "m" => 60e6,
        "s" => 1e6,
        "ms" => 1e3,
        _ => return None,
    })
}

impl<'a> Checker<'a> {
    /// The keys of a join or history: present on both sides, of matching
    /// types. Returns the lineage of LEFT's key columns (what a request
    /// must carry to look the right side up).
    fn check_keys(
        &mut self,
        keys: &[Ident],
        left: &Frame,
        right: &Frame,
    ) -> Option<BTreeSet<String>> {
        let mut ok = true;
        let mut lineage = BTreeSet::new();
        for k in keys {
            let l = self.column(k, left).cloned();
            let r = self.column(k, right).cloned();
            let (Some(l), Some(r)) = (l, r) else {
                ok = false;
                continue;
            };
            let (lk, rk) = (key_kind(&l.ty), key_kind(&r.ty));
            if lk.is_none() || rk.is_none() || lk != rk {
                let says = |t: &Type, k: Option<&str>| match k {
                    Some(_) => t.to_string(),
                    None => format!("{t} (not a key type)"),
                };
                self.errors.push(CheckError::KeyTypes {
                    span: k.span,
                    key: k.name.clone(),
                    left: says(&l.ty, lk),
                    right: says(&r.ty, rk),
                });
                ok = false;
            }
            lineage.extend(l.lineage.iter().cloned());
        }
        ok.then_some(lineage)
    }

    /// A side read whole (RIGHT, EVENTS) must not be downstream of the split.
    fn side_before_split(&mut self, side: &'static str, id: &Ident, frame: &Frame) -> bool {
        match &frame.split {
            Some(sp) => {
                self.errors.push(CheckError::SideAfterSplit {
                    span: id.span,
                    side,
                    name: id.name.clone(),
                    split: sp.stage.trim_start_matches("split.").to_string(),
                });
                false
            }
            None => true,
        }
    }

    pub(super) fn check_join(
        &mut self,
        j: &ast::Join,
        left: Frame,
        right: Frame,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let before = self.error_count();
        let mut how = JoinHow::Left;
        for o in &j.options {
            match (o.key.name.as_str(), &o.value.kind) {
                ("how", ValueKind::Name(n)) if JoinHow::parse(n).is_some() => {
                    how = JoinHow::parse(n).unwrap_or(JoinHow::Left)
                }
                ("how", _) => self.bad_value("how", o.value.span, "`left` or `inner`", &o.value),
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: o.key.name.clone(),
                    context: "`join`",
                    valid: catalog::JOIN_OPTIONS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                }),
            }
        }
        self.side_before_split("right", &j.right, &right);
        let lineage = self.check_keys(&j.keys, &left, &right);
        let keys: Vec<String> = j.keys.iter().map(|k| k.name.clone()).collect();
        if lineage.is_some() && !right.proved_unique(&keys) {
            self.errors.push(CheckError::JoinNotUnique {
                span: j.right.span,
                right: j.right.name.clone(),
                keys: keys.clone(),
            });
        }
        let lineage = lineage.unwrap_or_default();
        let mut out = left;
        let mut columns = vec![];
        for c in &right.columns {
            if keys.contains(&c.name) {
                continue;
            }
            if let Some(l) = out.get(&c.name) {
                self.errors.push(CheckError::BothSides {
                    span: j.right.span,
                    column: c.name.clone(),
                    left: l.defined,
                    right: Some(c.defined),
                    in_block: false,
                });
                continue;
            }
            let mut col = (**c).clone();
            // Looked up by LEFT's keys: a request carries those, not these.
            col.lineage = lineage.clone();
            col.nullable |= how == JoinHow::Left;
            columns.push(col.name.clone());
            out.push(col);
        }
        out.poisoned.extend(right.poisoned.iter().cloned());
        for (t, via) in right.joined_from {
            out.joined_from.entry(t).or_insert(via);
        }
        for t in self
            .right_upstream
            .get(&j.name.name)
            .cloned()
            .unwrap_or_default()
        {
            out.joined_from
                .entry(t)
                .or_insert_with(|| (j.name.name.clone(), j.right.span));
        }
        if self.error_count() != before {
            return None;
        }
        Some((
            Op::Join(plan::JoinOp { keys, how, columns }),
            out,
            BTreeSet::new(),
        ))
    }

    pub(super) fn check_history(
        &mut self,
        h: &ast::History,
        left: Frame,
        events: Frame,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let before = self.error_count();
        self.side_before_split("events", &h.events, &events);
        let key_lineage = self.check_keys(&h.keys, &left, &events);
        let at = self.column(&h.at, &left).cloned();
        if let Some(at) = &at {
            let problem = if !at.ty.is_temporal() {
                Some(format!(
                    "`{}` is {}, not a date or datetime",
                    at.name, at.ty
                ))
            } else if at.nullable {
                Some(format!("`{}` may be null", at.name))
            } else {
                None
            };
            if let Some(problem) = problem {
                self.errors.push(CheckError::HistoryTime {
                    span: h.at.span,
                    which: "at",
                    column: at.name.clone(),
                    side: h.left.name.clone(),
                    problem,
                });
            }
        }
        if let Some(by) = self.column(&h.by, &events).cloned() {
            if !by.ty.is_temporal() {
                self.errors.push(CheckError::HistoryTime {
                    span: h.by.span,
                    which: "by",
                    column: by.name.clone(),
                    side: h.events.name.clone(),
                    problem: format!("`{}` is {}, not a date or datetime", by.name, by.ty),
                });
            }
        }
        let mut lineage = key_lineage.unwrap_or_default();
        if let Some(at) = &at {
            lineage.extend(at.lineage.iter().cloned());
        }
        let mut out = left;
        let mut aggregates = vec![];
        let mut plugins = BTreeSet::new();
        let mut named_here: BTreeMap<String, Span> = BTreeMap::new();
        for item in &h.items {
            if let Some(l) = out.get(&item.name.name) {
                self.errors.push(CheckError::BothSides {
                    span: item.name.span,
                    column: item.name.name.clone(),
                    left: l.defined,
                    right: None,
                    in_block: false,
                });
                continue;
            }
            if let Some(first) = named_here.get(&item.name.name) {
                self.errors.push(CheckError::BothSides {
                    span: item.name.span,
                    column: item.name.name.clone(),
                    left: *first,
                    right: None,
                    in_block: true,
                });
                continue;
            }
            named_here.insert(item.name.name.clone(), item.name.span);
            let within_us = match &item.within {
                None => None,
                Some((lit, span)) => match lit {
                    Lit::Quantity(v, unit) if *v > 0.0 && window_unit_us(unit).is_some() => {
                        Some((v * window_unit_us(unit).unwrap_or(0.0)).round() as i64)
                    }
                    other => {
                        self.errors.push(CheckError::BadWindow {
                            span: *span,
                            found: lit_text(other),
                        });
                        continue;
                    }
                },
            };
            let Some((agg, arg)) = self.history_aggregate(item, h, &events) else {
                continue;
            };
            let (ty, nullable) = match (agg, arg.as_ref().and_then(|a| a.ty.clone())) {
                (HistoryAggregate::Count, _) => (Type::Int, false),
                (HistoryAggregate::Sum, Some(Type::Float)) => (Type::Float, false),
                (HistoryAggregate::Sum, _) => (Type::Int, false),
                (HistoryAggregate::Mean | HistoryAggregate::Std, _) => (Type::Float, true),
                (HistoryAggregate::DaysSince, _) => (Type::Int, true),
                (_, Some(t)) => (t, true),
                (_, None) => (Type::Float, true),
            };
            if let Some(a) = &arg {
                plugins.extend(a.plugins.iter().cloned());
            }
            out.push(Column {
                name: item.name.name.clone(),
                ty: ty.clone(),
                nullable,
                group_of: None,
                encoded: false,
                lineage: lineage.clone(),
                defined: item.span,
            });
            aggregates.push(plan::HistoryAggOp {
                name: item.name.name.clone(),
                agg,
                arg: arg.map(|a| a.expr),
                within_us,
                ty,
                nullable,
            });
        }
        if self.error_count() != before {
            return None;
        }
        Some((
            Op::History(plan::HistoryOp {
                keys: h.keys.iter().map(|k| k.name.clone()).collect(),
                at: h.at.name.clone(),
                by: h.by.name.clone(),
                aggregates,
            }),
            out,
            plugins,
        ))
    }

    /// One line of a history block: which aggregate, of what event-row
    /// expression.
    fn history_aggregate(
        &mut self,
        item: &ast::HistoryItem,
        h: &ast::History,
        events: &Frame,
    ) -> Option<(HistoryAggregate, Option<TExpr>)> {
        let ast::ExprKind::Call(f, args) = &item.expr.kind else {
            self.errors.push(CheckError::HistoryAggregate {
                span: item.expr.span,
                message: "a history line aggregates the events: this is not an aggregate".into(),
                help: format!(
                    "write `{} = AGG(EXPR) within DURATION` with AGG one of {}; compute other values from the result in a later `features` block",
                    item.name.name,
                    catalog::HISTORY_AGGREGATES.join(", ")
                ),
            });
            return None;
        };
        let Some(agg) = HistoryAggregate::parse(&f.name) else {
            let known: Vec<String> = catalog::HISTORY_AGGREGATES
                .iter()
                .map(|s| s.to_string())
                .collect();
            let hint = crate::suggest::did_you_mean(&f.name, known.iter().map(String::as_str));
            self.errors.push(CheckError::HistoryAggregate {
                span: f.span,
                message: format!("`{}` is not a history aggregate", f.name),
                help: format!(
                    "{}history aggregates: {}",
                    hint.map(|h| format!("{h} ")).unwrap_or_default(),
                    known.join(", ")
                ),
            });
            return None;
        };
        match agg {
            HistoryAggregate::Count => {
                if !args.is_empty() {
                    self.errors.push(CheckError::HistoryAggregate {
                        span: item.expr.span,
                        message: "`count()` counts the events and takes no argument".into(),
                        help: "to count the events where a condition holds, write `sum(CONDITION)`, for example `sum(channel == \"app\")`".into(),
                    });
                    return None;
                }
                Some((agg, None))
            }
            HistoryAggregate::DaysSince => {
                let is_max_by = matches!(args.as_slice(), [a] if matches!(&a.kind,
                    ast::ExprKind::Call(m, inner) if m.name == "max"
                        && matches!(inner.as_slice(), [c] if matches!(&c.kind, ast::ExprKind::Column(n) if *n == h.by.name))));
                if !is_max_by {
                    self.errors.push(CheckError::HistoryAggregate {
                        span: item.expr.span,
                        message: format!(
                            "`days_since` takes the latest event time, `max({})`",
                            h.by.name
                        ),
                        help: format!(
                            "write `days_since(max({}))`: whole days from the latest event before `{}` to `{}`",
                            h.by.name, h.at.name, h.at.name
                        ),
                    });
                    return None;
                }
                Some((agg, None))
            }
            _ => {
                let [arg] = args.as_slice() else {
                    self.errors.push(CheckError::HistoryAggregate {
                        span: item.expr.span,
                        message: format!("`{}` takes one argument, {} given", f.name, args.len()),
                        help: format!(
                            "write `{}(EXPR)` with EXPR an expression of `{}`'s columns",
                            f.name, h.events.name
                        ),
                    });
                    return None;
                };
                let t = self.check_expr(arg, events, ExprContext::Feature)?;
                if t.fitted {
                    self.errors.push(CheckError::HistoryAggregate {
                        span: arg.span,
                        message: "`over` inside a history aggregate".into(),
                        help: "an event expression reads one event's columns; aggregate them with the history block itself".into(),
                    });
                    return None;
                }
                match &t.ty {
                    Some(ty) if ty.is_model_input() => Some((agg, Some(t))),
                    other => {
                        let found = other
                            .as_ref()
                            .map_or("always null".to_string(), |t| t.to_string());
                        self.errors.push(CheckError::HistoryAggregate {
                            span: arg.span,
                            message: format!(
                                "`{}` aggregates numbers, and this is {found}",
                                f.name
                            ),
                            help: "aggregate a number or a bool (a bool counts as 0 or 1), for example `mean(channel == \"app\")` for a share of events".into(),
                        });
                        None
                    }
                }
            }
        }
    }

    /// A model whose rows came through a join whose right side reads an
    /// event table: the events were read without a time bound.
    pub(super) fn event_table_joined(&mut self, m: &ast::Model, frame: &Frame) {
        let mut reported = BTreeSet::new();
        for (table, (join, span)) in &frame.joined_from {
            let Some(history) = self.event_tables.get(table) else {
                continue;
            };
            if !reported.insert(join.clone()) {
                continue;
            }
            self.errors.push(CheckError::EventTableJoined {
                span: *span,
                table: table.clone(),
                history: history.clone(),
                join: join.clone(),
                model: m.name.name.clone(),
            });
        }
    }
}
