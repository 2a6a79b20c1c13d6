//! `plan::Expr -> polars Expr`: the expression library on polars.
//!
//! The compiler has typed every expression; what is tracked here is only
//! what the translation needs (dates for literal comparisons, strings for
//! `+`). `over` is translated by the caller (features), since it needs the
//! partition column.

use super::ExecError;
use mlp_compiler::plan::{BinaryOp, Expr as PExpr, Function, Literal, UnaryOp};
use mlp_compiler::types::Type;
use polars::prelude::*;

/// A coarse type, enough to pick the right polars operation.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Int,
    Float,
    Bool,
    Str,
    Date(String),
    Datetime(String),
    Null,
}

impl Kind {
    pub fn of(t: &Type) -> Kind {
        match t {
            Type::Int => Kind::Int,
            Type::Float => Kind::Float,
            Type::Bool => Kind::Bool,
            Type::Str | Type::Category { .. } => Kind::Str,
            Type::Date { format } => Kind::Date(format.clone()),
            Type::Datetime { format } => Kind::Datetime(format.clone()),
        }
    }
    fn numeric(&self) -> bool {
        matches!(self, Kind::Int | Kind::Float)
    }
}

/// The polars data type a column of this mlp type is held in.
pub fn dtype(t: &Type) -> DataType {
    match t {
        Type::Int => DataType::Int64,
        Type::Float => DataType::Float64,
        Type::Bool => DataType::Boolean,
        Type::Str | Type::Category { .. } => DataType::String,
        Type::Date { .. } => DataType::Date,
        Type::Datetime { .. } => DataType::Datetime(TimeUnit::Microseconds, None),
    }
}

pub fn literal(l: &Literal) -> Expr {
    match l {
        Literal::Null(()) => lit(NULL),
        Literal::Bool(b) => lit(*b),
        Literal::Int(i) => lit(*i),
        Literal::Float(f) => lit(*f),
        Literal::Str(s) => lit(s.as_str()),
    }
}

/// Parses a string literal as a date or datetime in the given format.
pub fn temporal_literal(s: &str, kind: &Kind) -> Expr {
    let opts = |f: &str| StrptimeOptions {
        format: Some(f.into()),
        strict: false,
        exact: true,
        cache: false,
    };
    match kind {
        Kind::Date(f) => lit(s).str().to_date(opts(f)),
        Kind::Datetime(f) => {
            lit(s)
                .str()
                .to_datetime(Some(TimeUnit::Microseconds), None, opts(f), lit("raise"))
        }
        _ => lit(s),
    }
}

/// Translates expressions against a schema of known column types.
pub struct Translator<'a> {
    pub types: &'a dyn Fn(&str) -> Option<Kind>,
    /// The plugins calls may go to.
    pub plugins: &'a crate::plugins::Plugins,
}

impl Translator<'_> {
    pub fn expr(&self, e: &PExpr) -> Result<(Expr, Kind), ExecError> {
        Ok(match e {
            PExpr::Lit { value } => (
                literal(value),
                match value {
                    Literal::Null(()) => Kind::Null,
                    Literal::Bool(_) => Kind::Bool,
                    Literal::Int(_) => Kind::Int,
                    Literal::Float(_) => Kind::Float,
                    Literal::Str(_) => Kind::Str,
                },
            ),
            PExpr::Col { name } => {
                let k = (self.types)(name).ok_or_else(|| {
                    ExecError::Internal(format!("column `{name}` missing at run time"))
                })?;
                (col(name.as_str()), k)
            }
            PExpr::List { items } => {
                // Only used on the right of `in`, handled there.
                let first = items.first().map(|i| self.expr(i)).transpose()?;
                match first {
                    Some(f) => f,
                    None => (lit(NULL), Kind::Null),
                }
            }
            PExpr::Unary { op, arg } => {
                let (a, k) = self.expr(arg)?;
                match op {
                    UnaryOp::Not => (a.not(), Kind::Bool),
                    UnaryOp::Neg => (lit(0) - a, k),
                }
            }
            PExpr::Binary { op, left, right } => self.binary(*op, left, right)?,
            PExpr::If {
                cond,
                then,
                otherwise,
            } => {
                let (c, _) = self.expr(cond)?;
                let (t, tk) = self.expr(then)?;
                let (o, ok) = self.expr(otherwise)?;
                let kind = unify(&tk, &ok);
                let (t, o) = align(t, &tk, o, &ok, &kind);
                (when(c).then(t).otherwise(o), kind)
            }
            PExpr::Call { func, args } => self.call(*func, args)?,
            PExpr::Plugin { plugin, func, args } => {
                let args = args
                    .iter()
                    .map(|a| self.expr(a).map(|(e, _)| e))
                    .collect::<Result<Vec<_>, _>>()?;
                let e = self
                    .plugins
                    .expr(plugin, func, args)
                    .map_err(ExecError::Internal)?;
                let kind = self
                    .plugins
                    .get(plugin)
                    .and_then(|p| p.signatures.function(func))
                    .map(|f| match f.returns.ty {
                        mlp_compiler::plugin_sig::PluginType::Float => Kind::Float,
                        mlp_compiler::plugin_sig::PluginType::Int => Kind::Int,
                        mlp_compiler::plugin_sig::PluginType::Bool => Kind::Bool,
                        mlp_compiler::plugin_sig::PluginType::Str => Kind::Str,
                    })
                    .unwrap_or(Kind::Null);
                (e, kind)
            }
            PExpr::Over { .. } => {
                return Err(ExecError::Internal(
                    "`over` must be translated by the features stage".into(),
                ))
            }
        })
    }

    fn binary(&self, op: BinaryOp, left: &PExpr, right: &PExpr) -> Result<(Expr, Kind), ExecError> {
        if op == BinaryOp::In {
            let (l, _) = self.expr(left)?;
            let PExpr::List { items } = right else {
                return Err(ExecError::Internal("`in` without a list".into()));
            };
            let mut acc: Option<Expr> = None;
            for it in items {
                let (r, _) = self.expr(it)?;
                let eq = l.clone().eq(r);
                acc = Some(match acc {
                    Some(a) => a.or(eq),
                    None => eq,
                });
            }
            // `x in []` is false; a null x gives null, as `==` does.
            let e = acc.unwrap_or_else(|| lit(false));
            return Ok((e, Kind::Bool));
        }
        let (mut l, lk) = self.expr(left)?;
        let (mut r, rk) = self.expr(right)?;
        // A date compared with a string literal: parse the literal.
        if let (
            Kind::Date(_) | Kind::Datetime(_),
            PExpr::Lit {
                value: Literal::Str(s),
            },
        ) = (&lk, right)
        {
            r = temporal_literal(s, &lk);
        }
        if let (
            PExpr::Lit {
                value: Literal::Str(s),
            },
            Kind::Date(_) | Kind::Datetime(_),
        ) = (left, &rk)
        {
            l = temporal_literal(s, &rk);
        }
        let num = |e: Expr, k: &Kind| {
            if *k == Kind::Int {
                e.cast(DataType::Float64)
            } else {
                e
            }
        };
        Ok(match op {
            BinaryOp::Add if lk == Kind::Str && rk == Kind::Str => {
                (concat_str([l, r], "", false), Kind::Str)
            }
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Rem => {
                let kind = if lk == Kind::Int && rk == Kind::Int {
                    Kind::Int
                } else {
                    Kind::Float
                };
                let (l, r) = if kind == Kind::Float {
                    (num(l, &lk), num(r, &rk))
                } else {
                    (l, r)
                };
                let e = match op {
                    BinaryOp::Add => l + r,
                    BinaryOp::Sub => l - r,
                    BinaryOp::Mul => l * r,
                    _ => l % r,
                };
                (e, kind)
            }
            BinaryOp::Div => (
                l.cast(DataType::Float64) / r.cast(DataType::Float64),
                Kind::Float,
            ),
            BinaryOp::Pow => (
                l.cast(DataType::Float64).pow(r.cast(DataType::Float64)),
                Kind::Float,
            ),
            BinaryOp::And => (l.and(r), Kind::Bool),
            BinaryOp::Or => (l.or(r), Kind::Bool),
            // Handled above, before its right side is compiled.
            BinaryOp::In => {
                return Err(ExecError::Internal("`in` without a list".into()));
            }
            cmp @ (BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Eq
            | BinaryOp::Ne) => {
                let (l, r) = if lk.numeric() && rk.numeric() && lk != rk {
                    (num(l, &lk), num(r, &rk))
                } else {
                    (l, r)
                };
                let e = match cmp {
                    BinaryOp::Lt => l.lt(r),
                    BinaryOp::Le => l.lt_eq(r),
                    BinaryOp::Gt => l.gt(r),
                    BinaryOp::Ge => l.gt_eq(r),
                    BinaryOp::Eq => l.eq(r),
                    _ => l.neq(r),
                };
                (e, Kind::Bool)
            }
        })
    }

    fn call(&self, func: Function, args: &[PExpr]) -> Result<(Expr, Kind), ExecError> {
        let mut xs = Vec::with_capacity(args.len());
        for a in args {
            xs.push(self.expr(a)?);
        }
        let arg = |i: usize| xs[i].0.clone();
        let kind = |i: usize| xs[i].1.clone();
        let float = |i: usize| xs[i].0.clone().cast(DataType::Float64);
        let str_lit = |i: usize| match &args[i] {
            PExpr::Lit {
                value: Literal::Str(s),
            } => lit(s.as_str()),
            _ => xs[i].0.clone(),
        };
        Ok(match func {
            Function::Coalesce => {
                let mut k = Kind::Null;
                for (_, xk) in &xs {
                    k = unify(&k, xk);
                }
                let es: Vec<Expr> = xs
                    .iter()
                    .map(|(e, xk)| cast_to(e.clone(), xk, &k))
                    .collect();
                (coalesce(&es), k)
            }
            Function::IsNull => (arg(0).is_null(), Kind::Bool),
            Function::Float => (
                if kind(0) == Kind::Str {
                    arg(0).str().strip_chars(lit(NULL)).cast(DataType::Float64)
                } else {
                    arg(0).cast(DataType::Float64)
                },
                Kind::Float,
            ),
            Function::Int => (
                match kind(0) {
                    Kind::Str => arg(0)
                        .str()
                        .strip_chars(lit(NULL))
                        .cast(DataType::Float64)
                        .cast(DataType::Int64),
                    Kind::Float => arg(0).floor().cast(DataType::Int64),
                    _ => arg(0).cast(DataType::Int64),
                },
                Kind::Int,
            ),
            Function::Bool => (arg(0).cast(DataType::Boolean), Kind::Bool),
            Function::Str => (arg(0).cast(DataType::String), Kind::Str),
            Function::Ln => (float(0).log(lit(std::f64::consts::E)), Kind::Float),
            Function::Log10 => (float(0).log(lit(10.0)), Kind::Float),
            Function::Exp => (float(0).exp(), Kind::Float),
            Function::Sqrt => (float(0).sqrt(), Kind::Float),
            Function::Floor => (float(0).floor(), Kind::Float),
            Function::Ceil => (float(0).ceil(), Kind::Float),
            Function::Round => {
                let digits = match args.get(1) {
                    Some(PExpr::Lit {
                        value: Literal::Int(d),
                    }) => (*d).clamp(0, 15) as u32,
                    _ => 0,
                };
                (
                    float(0).round(digits, RoundMode::HalfAwayFromZero),
                    Kind::Float,
                )
            }
            Function::Abs => (arg(0).abs(), kind(0)),
            Function::Min | Function::Max => {
                let k = if xs.iter().all(|(_, k)| *k == Kind::Int) {
                    Kind::Int
                } else {
                    Kind::Float
                };
                let es: Vec<Expr> = xs
                    .iter()
                    .map(|(e, xk)| cast_to(e.clone(), xk, &k))
                    .collect();
                let e = if func == Function::Min {
                    polars::lazy::dsl::min_horizontal(es)
                } else {
                    polars::lazy::dsl::max_horizontal(es)
                }
                .map_err(ExecError::polars)?;
                (e, k)
            }
            Function::Clip => {
                let k = if xs.iter().all(|(_, k)| *k == Kind::Int) {
                    Kind::Int
                } else {
                    Kind::Float
                };
                let c = |i: usize| cast_to(arg(i), &kind(i), &k);
                (c(0).clip(c(1), c(2)), k)
            }
            Function::Year => (arg(0).dt().year().cast(DataType::Int64), Kind::Int),
            Function::Month => (arg(0).dt().month().cast(DataType::Int64), Kind::Int),
            Function::Day => (arg(0).dt().day().cast(DataType::Int64), Kind::Int),
            Function::DayOfWeek => (arg(0).dt().weekday().cast(DataType::Int64), Kind::Int),
            Function::DayOfYear => (arg(0).dt().ordinal_day().cast(DataType::Int64), Kind::Int),
            Function::Hour => (arg(0).dt().hour().cast(DataType::Int64), Kind::Int),
            Function::DaysBetween => {
                let to_dt = |i: usize| match kind(i) {
                    Kind::Date(_) => arg(i).cast(DataType::Datetime(TimeUnit::Microseconds, None)),
                    _ => arg(i),
                };
                (
                    (to_dt(1) - to_dt(0))
                        .dt()
                        .total_days(false)
                        .cast(DataType::Int64),
                    Kind::Int,
                )
            }
            Function::Lower => (arg(0).str().to_lowercase(), Kind::Str),
            Function::Upper => (arg(0).str().to_uppercase(), Kind::Str),
            Function::Len => (arg(0).str().len_chars().cast(DataType::Int64), Kind::Int),
            Function::Contains => (arg(0).str().contains_literal(str_lit(1)), Kind::Bool),
            Function::StartsWith => (arg(0).str().starts_with(str_lit(1)), Kind::Bool),
            Function::EndsWith => (arg(0).str().ends_with(str_lit(1)), Kind::Bool),
        })
    }
}

fn unify(a: &Kind, b: &Kind) -> Kind {
    match (a, b) {
        (Kind::Null, x) | (x, Kind::Null) => x.clone(),
        (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => Kind::Float,
        (x, _) => x.clone(),
    }
}

fn cast_to(e: Expr, from: &Kind, to: &Kind) -> Expr {
    match (from, to) {
        (Kind::Int, Kind::Float) | (Kind::Null, Kind::Float) => e.cast(DataType::Float64),
        (Kind::Null, Kind::Int) => e.cast(DataType::Int64),
        (Kind::Null, Kind::Str) => e.cast(DataType::String),
        (Kind::Null, Kind::Bool) => e.cast(DataType::Boolean),
        _ => e,
    }
}

fn align(t: Expr, tk: &Kind, o: Expr, ok: &Kind, to: &Kind) -> (Expr, Expr) {
    (cast_to(t, tk, to), cast_to(o, ok, to))
}
