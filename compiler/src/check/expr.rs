//! Typing expressions against a frame: `ast::Expr -> TExpr` (a plan
//! expression with its type, nullability, lineage and the plugins it calls).

use super::{CheckError, Checker};
use crate::ast::{self, BinOp, CmpOp, ExprKind, Lit, Span, UnOp};
use crate::catalog;
use crate::plan::{self, Literal};
use crate::plugin_sig::PluginType;
use crate::types::{Frame, Type};
use std::collections::BTreeSet;

/// A typed expression. `ty == None` is the type of the `null` literal.
#[derive(Debug, Clone)]
pub struct TExpr {
    pub expr: plan::Expr,
    pub ty: Option<Type>,
    pub nullable: bool,
    pub lineage: BTreeSet<String>,
    /// Contains an `over` lookup table (fitted on train).
    pub fitted: bool,
    pub plugins: BTreeSet<String>,
    /// Columns proven non-null when this (boolean) expression is true.
    pub proves_not_null: Vec<String>,
    pub span: Span,
}

/// Where an expression appears: decides whether `over` is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExprContext {
    Feature,
    Filter,
    Expect,
}

pub fn lit_value(l: &Lit) -> Literal {
    match l {
        Lit::Int(i) => Literal::Int(*i),
        Lit::Float(f) => Literal::Float(*f),
        Lit::Str(s) => Literal::Str(s.clone()),
        Lit::Bool(b) => Literal::Bool(*b),
        Lit::Null => Literal::Null(()),
        Lit::Quantity(v, u) => Literal::Str(format!("{v}{u}")),
    }
}

fn ty_name(t: &Option<Type>) -> String {
    match t {
        Some(t) => t.name().to_string(),
        None => "null".to_string(),
    }
}

/// The common type of two branches or arguments, if any.
pub fn unify(a: &Option<Type>, b: &Option<Type>) -> Option<Option<Type>> {
    match (a, b) {
        (None, x) | (x, None) => Some(x.clone()),
        (Some(x), Some(y)) if x == y => Some(Some(x.clone())),
        (Some(Type::Int), Some(Type::Float)) | (Some(Type::Float), Some(Type::Int)) => {
            Some(Some(Type::Float))
        }
        (Some(x), Some(y)) if x.is_textual() && y.is_textual() => Some(Some(Type::Str)),
        (Some(Type::Date { format }), Some(Type::Date { .. })) => Some(Some(Type::Date {
            format: format.clone(),
        })),
        (Some(Type::Datetime { format }), Some(Type::Datetime { .. })) => {
            Some(Some(Type::Datetime {
                format: format.clone(),
            }))
        }
        _ => None,
    }
}

impl Checker<'_> {
    pub(super) fn check_expr(
        &mut self,
        e: &ast::Expr,
        frame: &Frame,
        cx: ExprContext,
    ) -> Option<TExpr> {
        let mk = |expr: plan::Expr, ty: Option<Type>, nullable: bool| TExpr {
            expr,
            ty,
            nullable,
            lineage: BTreeSet::new(),
            fitted: false,
            plugins: BTreeSet::new(),
            proves_not_null: vec![],
            span: e.span,
        };
        match &e.kind {
            ExprKind::Lit(l) => {
                let ty = match l {
                    Lit::Int(_) => Some(Type::Int),
                    Lit::Float(_) => Some(Type::Float),
                    Lit::Str(_) => Some(Type::Str),
                    Lit::Bool(_) => Some(Type::Bool),
                    Lit::Null => None,
                    Lit::Quantity(..) => {
                        self.errors.push(CheckError::OperandTypes {
                            span: e.span,
                            op: "expression".into(),
                            left: "a quantity with a unit".into(),
                            right: String::new(),
                            help: Some(
                                "units are for limits and latencies; write a plain number".into(),
                            ),
                        });
                        return None;
                    }
                };
                let nullable = matches!(l, Lit::Null);
                Some(mk(
                    plan::Expr::Lit {
                        value: lit_value(l),
                    },
                    ty,
                    nullable,
                ))
            }
            ExprKind::Column(name) => {
                let Some(col) = frame.get(name) else {
                    self.unknown_column(name, e.span, frame);
                    return None;
                };
                if col.group_of.is_some() {
                    self.errors.push(CheckError::UnknownColumn {
                        span: e.span,
                        name: name.clone(),
                        available: frame.names(),
                        hint: Some(format!("`{name}` is a one-hot group whose columns are known only after fitting; a model can read the group as a whole")),
                    });
                    return None;
                }
                let mut t = mk(
                    plan::Expr::Col { name: name.clone() },
                    Some(col.ty.clone()),
                    col.nullable,
                );
                t.lineage = col.lineage.clone();
                Some(t)
            }
            ExprKind::List(items) => {
                let mut out = Vec::new();
                let mut ty: Option<Type> = None;
                let mut lineage = BTreeSet::new();
                let mut ok = true;
                for it in items {
                    let Some(t) = self.check_expr(it, frame, cx) else {
                        ok = false;
                        continue;
                    };
                    match unify(&ty, &t.ty) {
                        Some(u) => ty = u,
                        None => {
                            self.errors.push(CheckError::Incompatible {
                                span: it.span,
                                context: "list items".into(),
                                a: ty_name(&ty),
                                b: ty_name(&t.ty),
                            });
                            ok = false;
                        }
                    }
                    lineage.extend(t.lineage.iter().cloned());
                    out.push(t.expr);
                }
                if !ok {
                    return None;
                }
                let mut t = mk(plan::Expr::List { items: out }, ty, false);
                t.lineage = lineage;
                Some(t)
            }
            ExprKind::Unary(op, arg) => {
                let a = self.check_expr(arg, frame, cx)?;
                let (ok, ty, name) = match op {
                    UnOp::Neg => (
                        matches!(a.ty, Some(Type::Int | Type::Float)),
                        a.ty.clone(),
                        "-",
                    ),
                    UnOp::Not => (matches!(a.ty, Some(Type::Bool)), Some(Type::Bool), "not"),
                };
                if !ok {
                    self.errors.push(CheckError::OperandTypes {
                        span: e.span,
                        op: name.into(),
                        left: ty_name(&a.ty),
                        right: String::new(),
                        help: None,
                    });
                    return None;
                }
                // `not is_null(x)` proves x is present.
                let mut proves = vec![];
                if let (UnOp::Not, plan::Expr::Call { func, args }) = (op, &a.expr) {
                    if *func == plan::Function::IsNull {
                        if let Some(plan::Expr::Col { name }) = args.first() {
                            proves.push(name.clone());
                        }
                    }
                }
                Some(TExpr {
                    expr: plan::Expr::Unary {
                        op: (*op).into(),
                        arg: Box::new(a.expr),
                    },
                    ty,
                    nullable: a.nullable,
                    lineage: a.lineage,
                    fitted: a.fitted,
                    plugins: a.plugins,
                    proves_not_null: proves,
                    span: e.span,
                })
            }
            ExprKind::Binary(op, l, r) => {
                let lt = self.check_expr(l, frame, cx);
                let rt = self.check_expr(r, frame, cx);
                let (lt, rt) = (lt?, rt?);
                self.check_binary(*op, lt, rt, e.span, frame)
            }
            ExprKind::If(c, t, f) => {
                let ct = self.check_expr(c, frame, cx);
                let tt = self.check_expr(t, frame, cx);
                let ft = self.check_expr(f, frame, cx);
                let (ct, tt, ft) = (ct?, tt?, ft?);
                if ct.ty != Some(Type::Bool) {
                    self.errors.push(CheckError::NotBoolean {
                        span: c.span,
                        context: "the condition of `if`",
                        found: ty_name(&ct.ty),
                    });
                    return None;
                }
                let Some(ty) = unify(&tt.ty, &ft.ty) else {
                    self.errors.push(CheckError::Incompatible {
                        span: e.span,
                        context: "the branches of `if`".into(),
                        a: ty_name(&tt.ty),
                        b: ty_name(&ft.ty),
                    });
                    return None;
                };
                let nullable = tt.nullable || ft.nullable || ct.nullable;
                Some(combine(
                    plan::Expr::If {
                        cond: Box::new(ct.expr.clone()),
                        then: Box::new(tt.expr.clone()),
                        otherwise: Box::new(ft.expr.clone()),
                    },
                    ty,
                    nullable,
                    [&ct, &tt, &ft],
                    e.span,
                ))
            }
            ExprKind::Call(func, args) => self.check_call(func, args, frame, cx, e.span),
            ExprKind::PluginCall(plugin, func, args) => {
                self.check_plugin_call(plugin, func, args, frame, cx, e.span)
            }
            ExprKind::Over(inner, keys) => self.check_over(inner, keys, frame, cx, e.span),
        }
    }

    /// Types every argument (reporting each bad one), or `None` if any failed.
    fn check_args(
        &mut self,
        args: &[ast::Expr],
        frame: &Frame,
        cx: ExprContext,
    ) -> Option<Vec<TExpr>> {
        let typed: Vec<Option<TExpr>> =
            args.iter().map(|a| self.check_expr(a, frame, cx)).collect();
        typed.into_iter().collect()
    }

    pub(super) fn unknown_column(&mut self, name: &str, span: Span, frame: &Frame) {
        if frame.poisoned.contains(name) {
            return;
        }
        let mut hint = None;
        // Unknown here (so not in the frame), defined by a later feature.
        if self
            .defined_later
            .0
            .get(name)
            .is_some_and(|at| *at > self.defined_later.1)
        {
            hint = Some(format!(
                "`{name}` is defined further down this `features` block; features are computed in order, so move this line below the definition of `{name}`"
            ));
        }
        if let (None, Some(how)) = (&hint, frame.gone.get(name)) {
            hint = Some(format!("`{name}` was {how}"));
        }
        // A one-hot column of a group whose levels are unknown.
        for c in &frame.columns {
            if let Some(of) = &c.group_of {
                if name.starts_with(&format!("{of}_")) {
                    hint = Some(format!(
                        "`{of}` was one-hot encoded without declared levels, so its columns are only known after fitting; declare the levels (`{of} : category[\"...\"]`) or a `values {of} in [...]` check"
                    ));
                }
            }
        }
        self.errors.push(CheckError::UnknownColumn {
            span,
            name: name.to_string(),
            available: frame
                .columns
                .iter()
                .filter(|c| c.group_of.is_none())
                .map(|c| c.name.clone())
                .collect(),
            hint,
        });
    }

    fn check_binary(
        &mut self,
        op: BinOp,
        lt: TExpr,
        rt: TExpr,
        span: Span,
        frame: &Frame,
    ) -> Option<TExpr> {
        let numeric = |t: &Option<Type>| matches!(t, Some(Type::Int | Type::Float) | None);
        let bad = |this: &mut Self, help: Option<String>| {
            this.errors.push(CheckError::OperandTypes {
                span,
                op: op.as_str().into(),
                left: ty_name(&lt.ty),
                right: ty_name(&rt.ty),
                help,
            });
            None
        };
        let ty = match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Rem => {
                if op == BinOp::Add && lt.ty == Some(Type::Str) && rt.ty == Some(Type::Str) {
                    Some(Type::Str)
                } else if numeric(&lt.ty) && numeric(&rt.ty) {
                    match (&lt.ty, &rt.ty) {
                        (Some(Type::Int), Some(Type::Int)) => Some(Type::Int),
                        _ => Some(Type::Float),
                    }
                } else {
                    let help = if lt.ty.as_ref().is_some_and(Type::is_temporal)
                        || rt.ty.as_ref().is_some_and(Type::is_temporal)
                    {
                        Some("for dates use `days_between(a, b)`, `year(d)`, `month(d)`...".into())
                    } else if lt.ty.as_ref().is_some_and(Type::is_textual)
                        || rt.ty.as_ref().is_some_and(Type::is_textual)
                    {
                        Some("arithmetic needs numbers; encode categories in a transform, or convert with `float(...)`".into())
                    } else if lt.ty == Some(Type::Bool) || rt.ty == Some(Type::Bool) {
                        Some("convert the bool with `int(...)` or `float(...)`".into())
                    } else {
                        None
                    };
                    return bad(self, help);
                }
            }
            BinOp::Div | BinOp::Pow => {
                if numeric(&lt.ty) && numeric(&rt.ty) {
                    Some(Type::Float)
                } else {
                    return bad(self, None);
                }
            }
            BinOp::And | BinOp::Or => {
                let b = |t: &Option<Type>| matches!(t, Some(Type::Bool) | None);
                if b(&lt.ty) && b(&rt.ty) {
                    Some(Type::Bool)
                } else {
                    return bad(
                        self,
                        Some("`and`/`or` combine conditions such as `x > 0`".into()),
                    );
                }
            }
            BinOp::Cmp(c) => {
                let ok = match (&lt.ty, &rt.ty) {
                    (None, _) | (_, None) => {
                        return bad(
                            self,
                            Some(
                                "a comparison with null is never true; test with `is_null(x)`"
                                    .into(),
                            ),
                        )
                    }
                    (Some(a), Some(b)) if a.is_numeric() && b.is_numeric() => true,
                    (Some(a), Some(b)) if a.is_textual() && b.is_textual() => {
                        self.check_levels(&lt, &rt, frame);
                        self.check_levels(&rt, &lt, frame);
                        true
                    }
                    (Some(Type::Bool), Some(Type::Bool)) => matches!(c, CmpOp::Eq | CmpOp::Ne),
                    (Some(a), Some(b)) if a.is_temporal() && b.is_temporal() => true,
                    // A date against a string literal in its own format.
                    (Some(a), Some(Type::Str)) | (Some(Type::Str), Some(a)) if a.is_temporal() => {
                        let literal = match (&lt.expr, &rt.expr) {
                            (plan::Expr::Lit { value }, _) | (_, plan::Expr::Lit { value }) => {
                                Some(value)
                            }
                            _ => None,
                        };
                        if let Some(plan::Literal::Str(v)) = literal {
                            if !super::parses_as(v, a) {
                                let column = match (&lt.expr, &rt.expr) {
                                    (plan::Expr::Col { name }, _)
                                    | (_, plan::Expr::Col { name }) => name.clone(),
                                    _ => "the date".into(),
                                };
                                let format = match a {
                                    Type::Date { format } | Type::Datetime { format } => {
                                        format.clone()
                                    }
                                    _ => String::new(),
                                };
                                self.errors.push(CheckError::DateLiteral {
                                    span,
                                    value: v.clone(),
                                    column,
                                    format,
                                });
                                return None;
                            }
                        }
                        literal.is_some()
                    }
                    _ => false,
                };
                if !ok {
                    return bad(self, None);
                }
                Some(Type::Bool)
            }
            BinOp::In => {
                let plan::Expr::List { items } = &rt.expr else {
                    return bad(
                        self,
                        Some("`in` takes a list: `x in [\"a\", \"b\"]`".into()),
                    );
                };
                let ok = match (&lt.ty, &rt.ty) {
                    (_, None) => true,
                    (Some(a), Some(b)) => unify(&Some(a.clone()), &Some(b.clone())).is_some(),
                    _ => false,
                };
                if !ok {
                    return bad(self, None);
                }
                let _ = items;
                self.check_levels(&lt, &rt, frame);
                Some(Type::Bool)
            }
        };
        let nullable = lt.nullable || rt.nullable;
        let mut proves = vec![];
        if op == BinOp::And {
            proves.extend(lt.proves_not_null.iter().cloned());
            proves.extend(rt.proves_not_null.iter().cloned());
        }
        let mut t = combine(
            plan::Expr::Binary {
                op: op.into(),
                left: Box::new(lt.expr.clone()),
                right: Box::new(rt.expr.clone()),
            },
            ty,
            nullable,
            [&lt, &rt],
            span,
        );
        t.proves_not_null = proves;
        Some(t)
    }

    /// A category column compared with string literals: each literal must be
    /// one of its levels, when they are known.
    fn check_levels(&mut self, col: &TExpr, other: &TExpr, frame: &Frame) {
        let plan::Expr::Col { name } = &col.expr else {
            return;
        };
        let Some(levels) = frame.get(name).and_then(|c| c.ty.levels()) else {
            return;
        };
        let lits: Vec<(&str, Span)> = match &other.expr {
            plan::Expr::Lit {
                value: Literal::Str(s),
            } => vec![(s.as_str(), other.span)],
            plan::Expr::List { items } => items
                .iter()
                .filter_map(|i| match i {
                    plan::Expr::Lit {
                        value: Literal::Str(s),
                    } => Some((s.as_str(), other.span)),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        for (v, span) in lits {
            if !levels.iter().any(|l| l == v) {
                self.errors.push(CheckError::UnknownLevel {
                    span,
                    value: v.to_string(),
                    column: name.clone(),
                    levels: levels.to_vec(),
                });
            }
        }
    }

    fn check_call(
        &mut self,
        func: &ast::Ident,
        args: &[ast::Expr],
        frame: &Frame,
        cx: ExprContext,
        span: Span,
    ) -> Option<TExpr> {
        let name = func.name.as_str();
        let Some(&(_, min, max)) = catalog::FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            if catalog::AGGREGATES.contains(&name) {
                self.errors.push(CheckError::AggregateWithoutOver {
                    span,
                    func: name.to_string(),
                });
                return None;
            }
            let mut candidates: Vec<String> =
                catalog::FUNCTIONS.iter().map(|f| f.0.to_string()).collect();
            candidates.extend(catalog::AGGREGATES.iter().map(|s| s.to_string()));
            self.errors.push(CheckError::UnknownFunction {
                span: func.span,
                name: name.to_string(),
                candidates,
            });
            return None;
        };
        // `min(x)` / `max(x)` with one argument is the aggregate.
        if (name == "min" || name == "max") && args.len() == 1 {
            self.errors.push(CheckError::AggregateWithoutOver {
                span,
                func: name.to_string(),
            });
            return None;
        }
        if args.len() < min || args.len() > max {
            let expected = if min == max {
                min.to_string()
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            self.errors.push(CheckError::Arity {
                span,
                func: name.to_string(),
                expected,
                found: args.len(),
            });
            return None;
        }
        let typed = self.check_args(args, frame, cx)?;
        let arg_err = |this: &mut Self, i: usize, expected: &str| {
            this.errors.push(CheckError::ArgumentType {
                span: typed[i].span,
                func: name.to_string(),
                position: i + 1,
                expected: expected.to_string(),
                found: ty_name(&typed[i].ty),
            });
            None
        };
        let t0 = typed[0].ty.clone();
        let any_nullable = typed.iter().any(|t| t.nullable);
        let is_num = |t: &Option<Type>| matches!(t, Some(Type::Int | Type::Float));
        let is_text = |t: &Option<Type>| t.as_ref().is_some_and(Type::is_textual);
        let is_str_lit = |t: &TExpr| {
            matches!(
                t.expr,
                plan::Expr::Lit {
                    value: Literal::Str(_)
                }
            )
        };
        let (ty, nullable): (Option<Type>, bool) = match name {
            "coalesce" => {
                let mut ty = None;
                for (i, t) in typed.iter().enumerate() {
                    match unify(&ty, &t.ty) {
                        Some(u) => ty = u,
                        None => {
                            return arg_err(self, i, &format!("{} like the others", ty_name(&ty)))
                        }
                    }
                }
                (ty, typed.iter().all(|t| t.nullable))
            }
            "is_null" => (Some(Type::Bool), false),
            "float" => {
                if !matches!(t0, Some(Type::Int | Type::Float | Type::Bool | Type::Str)) {
                    return arg_err(self, 0, "a number, bool or str");
                }
                (Some(Type::Float), any_nullable || t0 == Some(Type::Str))
            }
            "int" => {
                if !matches!(t0, Some(Type::Int | Type::Float | Type::Bool | Type::Str)) {
                    return arg_err(self, 0, "a number, bool or str");
                }
                (Some(Type::Int), any_nullable || t0 == Some(Type::Str))
            }
            "bool" => {
                if !matches!(t0, Some(Type::Int | Type::Float | Type::Bool)) {
                    return arg_err(self, 0, "a number or bool");
                }
                (Some(Type::Bool), any_nullable)
            }
            "str" => (Some(Type::Str), any_nullable),
            "ln" | "log10" | "exp" | "sqrt" | "floor" | "ceil" | "round" => {
                if !is_num(&t0) {
                    return arg_err(self, 0, "a number");
                }
                if name == "round" && typed.len() == 2 && typed[1].ty != Some(Type::Int) {
                    return arg_err(self, 1, "an int (the number of decimals)");
                }
                (Some(Type::Float), any_nullable)
            }
            "abs" => {
                if !is_num(&t0) {
                    return arg_err(self, 0, "a number");
                }
                (t0, any_nullable)
            }
            "min" | "max" | "clip" => {
                let mut ty = None;
                for (i, t) in typed.iter().enumerate() {
                    if !is_num(&t.ty) {
                        return arg_err(self, i, "a number");
                    }
                    ty = unify(&ty, &t.ty).unwrap_or(Some(Type::Float));
                }
                (ty, any_nullable)
            }
            "year" | "month" | "day" | "day_of_week" | "day_of_year" => {
                if !t0.as_ref().is_some_and(Type::is_temporal) {
                    return arg_err(self, 0, "a date or datetime");
                }
                (Some(Type::Int), any_nullable)
            }
            "hour" => {
                if !matches!(t0, Some(Type::Datetime { .. })) {
                    return arg_err(self, 0, "a datetime");
                }
                (Some(Type::Int), any_nullable)
            }
            "days_between" => {
                for (i, t) in typed.iter().enumerate().take(2) {
                    if !t.ty.as_ref().is_some_and(Type::is_temporal) {
                        return arg_err(self, i, "a date or datetime");
                    }
                }
                (Some(Type::Int), any_nullable)
            }
            "lower" | "upper" => {
                if !is_text(&t0) {
                    return arg_err(self, 0, "a str or category");
                }
                (Some(Type::Str), any_nullable)
            }
            "len" => {
                if !is_text(&t0) {
                    return arg_err(self, 0, "a str or category");
                }
                (Some(Type::Int), any_nullable)
            }
            "contains" | "starts_with" | "ends_with" => {
                if !is_text(&t0) {
                    return arg_err(self, 0, "a str or category");
                }
                if !is_str_lit(&typed[1]) {
                    return arg_err(self, 1, "a string literal");
                }
                (Some(Type::Bool), any_nullable)
            }
            _ => (t0, any_nullable),
        };
        let Some(func) = plan::Function::parse(name) else {
            // The catalog and the vocabulary agree (a test says so): an
            // unknown function was reported above.
            return None;
        };
        let mut t = TExpr {
            expr: plan::Expr::Call {
                func,
                args: typed.iter().map(|t| t.expr.clone()).collect(),
            },
            ty,
            nullable,
            lineage: BTreeSet::new(),
            fitted: false,
            plugins: BTreeSet::new(),
            proves_not_null: vec![],
            span,
        };
        for a in &typed {
            t.lineage.extend(a.lineage.iter().cloned());
            t.fitted |= a.fitted;
            t.plugins.extend(a.plugins.iter().cloned());
        }
        Some(t)
    }

    fn check_over(
        &mut self,
        inner: &ast::Expr,
        keys: &[ast::Ident],
        frame: &Frame,
        cx: ExprContext,
        span: Span,
    ) -> Option<TExpr> {
        if cx != ExprContext::Feature {
            self.errors.push(CheckError::BadOver {
                span,
                message: "`over` lookup tables are only allowed in features".into(),
                help: "compute the aggregate as a feature, then refer to it here".into(),
            });
            return None;
        }
        let ExprKind::Call(func, args) = &inner.kind else {
            self.errors.push(CheckError::BadOver {
                span,
                message: "`over` follows an aggregate call".into(),
                help: format!(
                    "write `AGG(column) over KEYS` with AGG one of {}",
                    catalog::AGGREGATES.join(", ")
                ),
            });
            return None;
        };
        let agg = func.name.as_str();
        if !catalog::AGGREGATES.contains(&agg) {
            self.errors.push(CheckError::BadOver {
                span: func.span,
                message: format!("`{agg}` is not an aggregate"),
                help: format!("aggregates: {}", catalog::AGGREGATES.join(", ")),
            });
            return None;
        }
        if args.len() != 1 {
            self.errors.push(CheckError::Arity {
                span: inner.span,
                func: agg.to_string(),
                expected: "1".into(),
                found: args.len(),
            });
            return None;
        }
        let arg = self.check_expr(&args[0], frame, cx)?;
        if arg.fitted {
            self.errors.push(CheckError::BadOver {
                span: args[0].span,
                message: "aggregates cannot be nested".into(),
                help: "compute the inner aggregate as its own feature first".into(),
            });
            return None;
        }
        if agg != "count" && !matches!(arg.ty, Some(Type::Int | Type::Float | Type::Bool)) {
            self.errors.push(CheckError::ArgumentType {
                span: args[0].span,
                func: agg.to_string(),
                position: 1,
                expected: "a number".into(),
                found: ty_name(&arg.ty),
            });
            return None;
        }
        let mut lineage = arg.lineage.clone();
        let mut key_names = Vec::new();
        let mut ok = true;
        for k in keys {
            match frame.get(&k.name) {
                None => {
                    self.unknown_column(&k.name, k.span, frame);
                    ok = false;
                }
                Some(c) if c.group_of.is_some() || !c.ty.is_discrete() => {
                    self.errors.push(CheckError::BadOver {
                        span: k.span,
                        message: format!(
                            "cannot group by `{}`: it is {}, which does not form groups",
                            k.name, c.ty
                        ),
                        help: "group by a category, str, bool, int or date column; bucket a float in a transform first".into(),
                    });
                    ok = false;
                }
                Some(c) => {
                    lineage.extend(c.lineage.iter().cloned());
                    key_names.push(k.name.clone());
                }
            }
        }
        if !ok {
            return None;
        }
        let ty = if agg == "count" {
            Type::Int
        } else {
            Type::Float
        };
        Some(TExpr {
            expr: plan::Expr::Over {
                agg: plan::Aggregate::parse(agg)?,
                arg: Box::new(arg.expr),
                keys: key_names,
            },
            ty: Some(ty),
            // Unseen keys at serving fall back to the train-wide aggregate.
            nullable: false,
            lineage,
            fitted: true,
            plugins: arg.plugins,
            proves_not_null: vec![],
            span,
        })
    }

    fn check_plugin_call(
        &mut self,
        plugin: &ast::Ident,
        func: &ast::Ident,
        args: &[ast::Expr],
        frame: &Frame,
        cx: ExprContext,
        span: Span,
    ) -> Option<TExpr> {
        let Some(info) = self.plugins.get(&plugin.name) else {
            self.errors.push(CheckError::UnknownPlugin {
                span: plugin.span,
                name: plugin.name.clone(),
                available: self.plugins.keys().cloned().collect(),
            });
            return None;
        };
        // The plugin itself failed to load: already reported at its declaration.
        let sigs = info.sigs.clone()?;
        let Some(sig) = sigs.function(&func.name).cloned() else {
            self.errors.push(CheckError::UnknownPluginFunction {
                span: func.span,
                plugin: plugin.name.clone(),
                func: func.name.clone(),
                available: sigs.functions.iter().map(|f| f.name.clone()).collect(),
            });
            return None;
        };
        let signature = format!(
            "{}.{}({}) -> {}{}",
            plugin.name,
            sig.name,
            sig.params
                .iter()
                .map(|p| format!(
                    "{}: {}{}",
                    p.name,
                    p.ty.name(),
                    if p.nullable { "?" } else { "" }
                ))
                .collect::<Vec<_>>()
                .join(", "),
            sig.returns.ty.name(),
            if sig.returns.nullable { "?" } else { "" }
        );
        if args.len() != sig.params.len() {
            self.errors.push(CheckError::PluginArity {
                span,
                plugin: plugin.name.clone(),
                func: func.name.clone(),
                expected: sig.params.len(),
                found: args.len(),
                signature,
            });
            return None;
        }
        let typed = self.check_args(args, frame, cx)?;
        let mut failed = false;
        let mut nullable = false;
        for (t, p) in typed.iter().zip(&sig.params) {
            let fits = match (&t.ty, p.ty) {
                (None, _) => p.nullable,
                (Some(Type::Float), PluginType::Float)
                | (Some(Type::Int), PluginType::Int | PluginType::Float)
                | (Some(Type::Bool), PluginType::Bool)
                | (Some(Type::Str | Type::Category { .. }), PluginType::Str) => true,
                _ => false,
            };
            if !fits {
                self.errors.push(CheckError::PluginArgType {
                    span: t.span,
                    plugin: plugin.name.clone(),
                    func: func.name.clone(),
                    param: p.name.clone(),
                    expected: p.ty.name().to_string(),
                    found: ty_name(&t.ty),
                    signature: signature.clone(),
                });
                failed = true;
            }
            // A null passed where the function does not take nulls gives null.
            if t.nullable && !p.nullable {
                nullable = true;
            }
        }
        if failed {
            return None;
        }
        let ty = match sig.returns.ty {
            PluginType::Float => Type::Float,
            PluginType::Int => Type::Int,
            PluginType::Bool => Type::Bool,
            PluginType::Str => Type::Str,
        };
        let mut t = TExpr {
            expr: plan::Expr::Plugin {
                plugin: plugin.name.clone(),
                func: func.name.clone(),
                args: typed.iter().map(|t| t.expr.clone()).collect(),
            },
            ty: Some(ty),
            nullable: nullable || sig.returns.nullable,
            lineage: BTreeSet::new(),
            fitted: false,
            plugins: BTreeSet::from([plugin.name.clone()]),
            proves_not_null: vec![],
            span,
        };
        for a in &typed {
            t.lineage.extend(a.lineage.iter().cloned());
            t.fitted |= a.fitted;
            t.plugins.extend(a.plugins.iter().cloned());
        }
        Some(t)
    }
}

fn combine<const N: usize>(
    expr: plan::Expr,
    ty: Option<Type>,
    nullable: bool,
    parts: [&TExpr; N],
    span: Span,
) -> TExpr {
    let mut t = TExpr {
        expr,
        ty,
        nullable,
        lineage: BTreeSet::new(),
        fitted: false,
        plugins: BTreeSet::new(),
        proves_not_null: vec![],
        span,
    };
    for p in parts {
        t.lineage.extend(p.lineage.iter().cloned());
        t.fitted |= p.fitted;
        t.plugins.extend(p.plugins.iter().cloned());
    }
    t
}
