//! Expressions: precedence climbing (pest's Pratt parser), postfix calls
//! and primaries.

use super::*;

impl Cx {
    /// A whole expression (a feature, a filter, an `expect` rule), no deeper
    /// than [`MAX_EXPR_DEPTH`].
    pub(super) fn top_expr(&self, p: P) -> Result<Expr, ParseError> {
        let e = self.visit_expr(p)?;
        if let Some(span) = too_deep(&e) {
            return Err(ParseError {
                span,
                message: format!("this expression nests more than {MAX_EXPR_DEPTH} levels deep"),
                expected: vec![],
                kind: ParseErrorKind::TooDeep,
                suggestion: None,
            });
        }
        Ok(e)
    }

    pub(super) fn visit_expr(&self, p: P) -> Result<Expr, ParseError> {
        let inner = match p.as_rule() {
            Rule::expr => p.into_inner().next(),
            _ => Some(p),
        };
        let Some(inner) = inner else {
            return Err(self.missing(Span::default()));
        };
        match inner.as_rule() {
            Rule::if_expr => {
                let span = self.span(&inner);
                let mut it = inner.into_inner();
                let c = self.visit_expr(self.next(&mut it, span)?)?;
                let t = self.visit_expr(self.next(&mut it, span)?)?;
                let e = self.visit_expr(self.next(&mut it, span)?)?;
                Ok(Expr {
                    kind: ExprKind::If(Box::new(c), Box::new(t), Box::new(e)),
                    span,
                })
            }
            _ => self.visit_op_expr(inner),
        }
    }

    pub(super) fn visit_op_expr(&self, p: P) -> Result<Expr, ParseError> {
        pratt()
            .map_primary(|primary| self.visit_postfix_expr(primary))
            .map_prefix(|op, rhs| {
                let rhs = rhs?;
                let un = if op.as_rule() == Rule::neg {
                    UnOp::Neg
                } else {
                    UnOp::Not
                };
                let span = self.span(&op).to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Unary(un, Box::new(rhs)),
                    span,
                })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let bin = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    Rule::div => BinOp::Div,
                    Rule::rem => BinOp::Rem,
                    Rule::pow => BinOp::Pow,
                    Rule::and => BinOp::And,
                    Rule::or => BinOp::Or,
                    Rule::in_op => BinOp::In,
                    Rule::lt => BinOp::Cmp(CmpOp::Lt),
                    Rule::le => BinOp::Cmp(CmpOp::Le),
                    Rule::gt => BinOp::Cmp(CmpOp::Gt),
                    Rule::ge => BinOp::Cmp(CmpOp::Ge),
                    Rule::eq => BinOp::Cmp(CmpOp::Eq),
                    _ => BinOp::Cmp(CmpOp::Ne),
                };
                let span = lhs.span.to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Binary(bin, Box::new(lhs), Box::new(rhs)),
                    span,
                })
            })
            .parse(p.into_inner())
    }

    pub(super) fn visit_postfix_expr(&self, p: P) -> Result<Expr, ParseError> {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let primary = self.visit_primary(self.next(&mut it, span)?)?;
        match it.next() {
            Some(over) => {
                let keys = over
                    .into_inner()
                    .next()
                    .map(|i| self.visit_idents(i))
                    .unwrap_or_default();
                Ok(Expr {
                    kind: ExprKind::Over(Box::new(primary), keys),
                    span,
                })
            }
            None => Ok(primary),
        }
    }

    pub(super) fn visit_args(
        &self,
        it: &mut pest::iterators::Pairs<Rule>,
    ) -> Result<Vec<Expr>, ParseError> {
        match it.next() {
            Some(args) => args.into_inner().map(|a| self.visit_expr(a)).collect(),
            None => Ok(vec![]),
        }
    }

    pub(super) fn visit_primary(&self, p: P) -> Result<Expr, ParseError> {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::expr | Rule::if_expr | Rule::op_expr => return self.visit_expr(p),
            Rule::expr_list => ExprKind::List(
                p.into_inner()
                    .map(|e| self.visit_expr(e))
                    .collect::<Result<_, _>>()?,
            ),
            Rule::plugin_call => {
                let mut it = p.into_inner();
                let plugin = self.next_ident(&mut it)?;
                let func = self.next_ident(&mut it)?;
                ExprKind::PluginCall(plugin, func, self.visit_args(&mut it)?)
            }
            Rule::call => {
                let mut it = p.into_inner();
                let func = self.next_ident(&mut it)?;
                ExprKind::Call(func, self.visit_args(&mut it)?)
            }
            Rule::column => ExprKind::Column(p.as_str().to_string()),
            _ => ExprKind::Lit(self.visit_literal(p)?),
        };
        Ok(Expr { kind, span })
    }

    // ------------------------------------------------------------ helpers
}
