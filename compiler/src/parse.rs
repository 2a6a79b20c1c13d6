//! `parse: &str -> ast::File`.
//!
//! The pest grammar lives in `grammar/mlp.pest`; pest's `Rule` and `Pair` never
//! leave this module. Each grammar rule has one `visit_<rule>` function that
//! turns its pairs into our own AST with our own spans. Syntax errors become
//! [`ParseError`] with the expected tokens in words a user understands.

mod expr;
mod syntax_error;

use crate::ast::*;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::sync::OnceLock;
use syntax_error::*;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/mlp.pest"]
struct MlpParser;

type P<'i> = Pair<'i, Rule>;

/// A syntax error: where, what was found, what would have been accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub span: Span,
    pub message: String,
    /// What the parser would have accepted there, in words.
    pub expected: Vec<String>,
    pub kind: ParseErrorKind,
    /// "did you mean `float`?" for a misspelt keyword.
    pub suggestion: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The text does not follow the grammar (E0001).
    Syntax,
    /// A literal that follows the grammar but cannot be represented (E0002).
    BadLiteral,
    /// An expression nested deeper than [`MAX_EXPR_DEPTH`] (E0010).
    TooDeep,
}

/// The deepest an expression may nest: operators chained (`a + b + c` is two
/// levels), parentheses, calls and lists. Deeper ones would exhaust a stack
/// somewhere between here and a served prediction.
pub const MAX_EXPR_DEPTH: usize = 100;

/// The span of the first subexpression deeper than [`MAX_EXPR_DEPTH`], if
/// any (walked with an explicit stack, so any depth is measured safely).
fn too_deep(e: &Expr) -> Option<Span> {
    let mut stack: Vec<(&Expr, usize)> = vec![(e, 1)];
    while let Some((e, d)) = stack.pop() {
        if d > MAX_EXPR_DEPTH {
            return Some(e.span);
        }
        match &e.kind {
            ExprKind::Lit(_) | ExprKind::Column(_) => {}
            ExprKind::List(xs) | ExprKind::Call(_, xs) | ExprKind::PluginCall(_, _, xs) => {
                stack.extend(xs.iter().map(|x| (x, d + 1)))
            }
            ExprKind::Unary(_, x) | ExprKind::Over(x, _) => stack.push((x, d + 1)),
            ExprKind::Binary(_, a, b) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
            }
            ExprKind::If(a, b, c) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
                stack.push((c, d + 1));
            }
        }
    }
    None
}

/// Refuses, before pest's recursive descent meets it, text that nests past
/// [`MAX_EXPR_DEPTH`]: brackets, `if`s whose `else` branch is still open,
/// and runs of prefix operators (`- - x`, `not not x`), counted together. A
/// lexical pass (strings and comments skipped), so no input can exhaust the
/// parser's stack; what it lets through is measured exactly on the tree.
fn nesting_too_deep(file: FileId, text: &str) -> Option<ParseError> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut ifs: Vec<usize> = vec![];
    let mut prefix_run = 0usize;
    // Whether the last significant token ends an operand (so a `-` after it
    // is binary).
    let mut after_operand = false;
    let too_deep = |at: usize| ParseError {
        span: Span::new(file, at, at + 1),
        message: format!("this expression nests more than {MAX_EXPR_DEPTH} levels deep"),
        expected: vec![],
        kind: ParseErrorKind::TooDeep,
        suggestion: None,
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                after_operand = true;
                prefix_run = 0;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if c.is_ascii_alphanumeric() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.') {
                i += 1;
            }
            let word = &text[start..i];
            // `name =` (not `==`) starts a new statement at this depth.
            let mut k = i;
            while k < b.len() && matches!(b[k], b' ' | b'\t') {
                k += 1;
            }
            let assigns = b.get(k) == Some(&b'=') && b.get(k + 1) != Some(&b'=');
            match word {
                "if" => {
                    ifs.push(depth);
                    after_operand = false;
                }
                "then" | "else" | "and" | "or" | "in" => after_operand = false,
                // A rule or step starts a new expression.
                "expect" | "filter" => {
                    ifs.retain(|d| *d < depth);
                    after_operand = false;
                    prefix_run = 0;
                }
                "not" => {
                    prefix_run += 1;
                    after_operand = false;
                }
                _ => {
                    if assigns {
                        ifs.retain(|d| *d < depth);
                    }
                    after_operand = true;
                    prefix_run = 0;
                }
            }
            if depth + ifs.len() + prefix_run > MAX_EXPR_DEPTH {
                return Some(too_deep(start));
            }
            continue;
        }
        match c {
            b'(' | b'[' => {
                depth += 1;
                after_operand = false;
            }
            b')' | b']' => {
                ifs.retain(|d| *d < depth);
                depth = depth.saturating_sub(1);
                after_operand = true;
                prefix_run = 0;
            }
            b'{' | b'}' => {
                ifs.clear();
                depth = 0;
                after_operand = false;
                prefix_run = 0;
            }
            b',' => {
                ifs.retain(|d| *d < depth);
                after_operand = false;
            }
            b'-' if !after_operand => prefix_run += 1,
            _ => {
                if !c.is_ascii_digit() {
                    after_operand = false;
                }
            }
        }
        if depth + ifs.len() + prefix_run > MAX_EXPR_DEPTH {
            return Some(too_deep(i));
        }
        i += 1;
    }
    None
}

/// Parses one source file.
pub fn parse(file: FileId, text: &str) -> Result<File, ParseError> {
    // Error detail (the furthest position reached and the tokens expected
    // there) costs time on every parse, so it is only turned on to explain a
    // failure.
    // The switch is process-wide, so detailed parses take turns.
    static DETAIL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(e) = nesting_too_deep(file, text) {
        return Err(e);
    }
    let mut pairs = match MlpParser::parse(Rule::file, text) {
        Ok(p) => p,
        Err(_) => {
            let guard = DETAIL.lock().unwrap_or_else(|e| e.into_inner());
            pest::set_error_detail(true);
            let detailed = MlpParser::parse(Rule::file, text);
            pest::set_error_detail(false);
            drop(guard);
            return Err(match detailed {
                Err(e) => syntax_error(file, text, e),
                Ok(_) => ParseError {
                    span: Span::new(file, 0, 0),
                    message: "the parser disagreed with itself".into(),
                    expected: vec![],
                    kind: ParseErrorKind::Syntax,
                    suggestion: None,
                },
            });
        }
    };
    let root = pairs.next().ok_or_else(|| ParseError {
        span: Span::new(file, 0, 0),
        message: "empty parse".into(),
        expected: vec![],
        kind: ParseErrorKind::Syntax,
        suggestion: None,
    })?;
    let cx = Cx { file };
    cx.visit_file(root)
}

struct Cx {
    file: FileId,
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::or, Assoc::Left))
            .op(Op::infix(Rule::and, Assoc::Left))
            .op(Op::prefix(Rule::not))
            .op(Op::infix(Rule::eq, Assoc::Left)
                | Op::infix(Rule::ne, Assoc::Left)
                | Op::infix(Rule::lt, Assoc::Left)
                | Op::infix(Rule::le, Assoc::Left)
                | Op::infix(Rule::gt, Assoc::Left)
                | Op::infix(Rule::ge, Assoc::Left)
                | Op::infix(Rule::in_op, Assoc::Left))
            .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
            .op(Op::infix(Rule::mul, Assoc::Left)
                | Op::infix(Rule::div, Assoc::Left)
                | Op::infix(Rule::rem, Assoc::Left))
            .op(Op::prefix(Rule::neg))
            .op(Op::infix(Rule::pow, Assoc::Right))
    })
}

impl Cx {
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        Span::new(self.file, s.start(), s.end())
    }

    /// The span from the pair's start to the end of its last token, without
    /// trailing whitespace or comments that a repetition may have consumed.
    fn tight_span(&self, p: &P) -> Span {
        let start = p.as_span().start();
        let mut last = p.clone();
        while let Some(child) = last.clone().into_inner().last() {
            last = child;
        }
        let last_end = last.as_span().end().max(start);
        // After the last token pair only literal tokens and trivia remain
        // (strings are pairs), so a plain scan finds the last real character.
        let own_end = p.as_span().end();
        let tail = p.as_span().get_input().get(last_end..own_end).unwrap_or("");
        let mut end = last_end;
        let mut in_comment = false;
        for (i, c) in tail.char_indices() {
            if in_comment {
                in_comment = c != '\n';
            } else if c == '#' {
                in_comment = true;
            } else if !c.is_whitespace() {
                end = last_end + i + c.len_utf8();
            }
        }
        Span::new(self.file, start, end)
    }

    fn bad_literal(&self, p: &P, message: String) -> ParseError {
        ParseError {
            span: self.span(p),
            message,
            expected: vec![],
            kind: ParseErrorKind::BadLiteral,
            suggestion: None,
        }
    }

    fn visit_file(&self, p: P) -> Result<File, ParseError> {
        let mut decls = Vec::new();
        for d in p.into_inner() {
            let span = self.span(&d);
            let kind = match d.as_rule() {
                Rule::source_decl => DeclKind::Source(self.visit_source_decl(d)?),
                Rule::check_decl => DeclKind::Check(self.visit_check_decl(d)?),
                Rule::split_decl => DeclKind::Split(self.visit_split_decl(d)?),
                Rule::transform_decl => DeclKind::Transform(self.visit_transform_decl(d)?),
                Rule::features_decl => DeclKind::Features(self.visit_features_decl(d)?),
                Rule::join_decl => DeclKind::Join(self.visit_join_decl(d)?),
                Rule::history_decl => DeclKind::History(self.visit_history_decl(d)?),
                Rule::plugin_decl => DeclKind::Plugin(self.visit_plugin_decl(d)?),
                Rule::model_decl => DeclKind::Model(self.visit_model_decl(d)?),
                Rule::evaluate_decl => DeclKind::Evaluate(self.visit_evaluate_decl(d)?),
                Rule::deploy_decl => DeclKind::Deploy(self.visit_deploy_decl(d)?),
                Rule::monitor_decl => DeclKind::Monitor(self.visit_monitor_decl(d)?),
                _ => continue, // EOI
            };
            decls.push(Decl { kind, span });
        }
        Ok(File { decls })
    }

    // ------------------------------------------------------------ lexical

    fn visit_ident(&self, p: P) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn visit_idents(&self, p: P) -> Vec<Ident> {
        p.into_inner().map(|i| self.visit_ident(i)).collect()
    }

    fn visit_string(&self, p: P) -> Result<String, ParseError> {
        let inner = p
            .clone()
            .into_inner()
            .next()
            .map(|i| i.as_str())
            .unwrap_or("");
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some(other) => {
                    // Unknown escapes are kept verbatim, so regexes like "\d" work.
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        }
        Ok(out)
    }

    fn visit_int_lit(&self, p: P) -> Result<i64, ParseError> {
        p.as_str().parse::<i64>().map_err(|_| {
            self.bad_literal(
                &p,
                format!("integer `{}` does not fit in 64 bits", p.as_str()),
            )
        })
    }

    fn visit_float_lit(&self, p: P) -> Result<f64, ParseError> {
        let v = p
            .as_str()
            .parse::<f64>()
            .map_err(|_| self.bad_literal(&p, format!("`{}` is not a number", p.as_str())))?;
        if !v.is_finite() {
            return Err(self.bad_literal(&p, format!("number `{}` is out of range", p.as_str())));
        }
        Ok(v)
    }

    fn visit_number(&self, p: P) -> Result<f64, ParseError> {
        match p.as_rule() {
            Rule::int_lit => Ok(self.visit_int_lit(p)? as f64),
            _ => self.visit_float_lit(p),
        }
    }

    fn visit_quantity(&self, p: P) -> Result<Lit, ParseError> {
        let text = p.as_str();
        let split = text
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (num, unit) = text.split_at(split);
        let v = num
            .parse::<f64>()
            .map_err(|_| self.bad_literal(&p, format!("`{text}` is not a quantity")))?;
        Ok(Lit::Quantity(v, unit.to_string()))
    }

    /// A `literal` pair or one of its alternatives.
    fn visit_literal(&self, p: P) -> Result<Lit, ParseError> {
        let p = if p.as_rule() == Rule::literal {
            match p.into_inner().next() {
                Some(inner) => inner,
                None => return Ok(Lit::Null),
            }
        } else {
            p
        };
        Ok(match p.as_rule() {
            Rule::int_lit => Lit::Int(self.visit_int_lit(p)?),
            Rule::float_lit => Lit::Float(self.visit_float_lit(p)?),
            Rule::quantity => self.visit_quantity(p)?,
            Rule::string => Lit::Str(self.visit_string(p)?),
            Rule::bool_lit => Lit::Bool(p.as_str() == "true"),
            _ => Lit::Null,
        })
    }

    fn visit_value(&self, p: P) -> Result<Value, ParseError> {
        let span = self.span(&p);
        let inner = p.into_inner().next();
        let kind = match inner {
            None => ValueKind::Lit(Lit::Null),
            Some(i) => match i.as_rule() {
                Rule::list => ValueKind::List(
                    i.into_inner()
                        .map(|v| self.visit_value(v))
                        .collect::<Result<_, _>>()?,
                ),
                Rule::literal => ValueKind::Lit(self.visit_literal(i)?),
                Rule::map => {
                    let mut entries = vec![];
                    for e in i.into_inner() {
                        let mut it = e.into_inner();
                        let (Some(k), Some(v)) = (it.next(), it.next()) else {
                            return Err(self.bad_literal_at(span, "a map entry without a value"));
                        };
                        let key = match k.as_rule() {
                            Rule::string => self.visit_string(k)?,
                            _ => k.as_str().to_string(),
                        };
                        entries.push((key, self.visit_value(v)?));
                    }
                    ValueKind::Map(entries)
                }
                Rule::call_value => {
                    let mut it = i.into_inner();
                    let name = match it.next() {
                        Some(n) => self.visit_ident(n),
                        None => return Err(self.bad_literal_at(span, "empty call")),
                    };
                    let args = it.map(|v| self.visit_value(v)).collect::<Result<_, _>>()?;
                    ValueKind::Call(name, args)
                }
                _ => ValueKind::Name(i.as_str().to_string()),
            },
        };
        Ok(Value { kind, span })
    }

    fn bad_literal_at(&self, span: Span, message: &str) -> ParseError {
        ParseError {
            span,
            message: message.into(),
            expected: vec![],
            kind: ParseErrorKind::BadLiteral,
            suggestion: None,
        }
    }

    fn visit_option(&self, p: P) -> Result<Opt, ParseError> {
        let mut it = p.into_inner();
        let (Some(k), Some(v)) = (it.next(), it.next()) else {
            return Err(self.bad_literal_at(Span::default(), "malformed option"));
        };
        Ok(Opt {
            key: self.visit_ident(k),
            value: self.visit_value(v)?,
        })
    }

    fn visit_cmp_op(&self, p: P) -> CmpOp {
        match p.as_str() {
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            ">=" => CmpOp::Ge,
            "==" => CmpOp::Eq,
            _ => CmpOp::Ne,
        }
    }

    fn visit_range(&self, p: P) -> Result<RangeLit, ParseError> {
        let span = self.span(&p);
        let text = p.as_str();
        let dots = text.find("..").unwrap_or(0) + span.start;
        let mut lo = None;
        let mut hi = None;
        for l in p.into_inner() {
            let s = self.span(&l);
            let lit = self.visit_literal(l)?;
            if s.start < dots {
                lo = Some((lit, s));
            } else {
                hi = Some((lit, s));
            }
        }
        Ok(RangeLit { lo, hi, span })
    }

    // ------------------------------------------------------------ source

    fn visit_source_decl(&self, p: P) -> Result<Source, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let fmt = it.next().ok_or_else(|| self.missing(name.span))?;
        let mut fit = fmt.into_inner();
        let format = self.next_ident(&mut fit)?;
        // A database source names no file: its options come first.
        let mut fit = fit.peekable();
        let (path, path_span) = match fit.peek() {
            Some(p) if p.as_rule() == Rule::string => {
                let path_pair = fit.next().ok_or_else(|| self.missing(format.span))?;
                let span = self.span(&path_pair);
                (self.visit_string(path_pair)?, span)
            }
            _ => (String::new(), format.span),
        };
        let options = fit
            .map(|o| self.visit_option(o))
            .collect::<Result<_, _>>()?;
        let columns = it
            .map(|c| self.visit_column_decl(c))
            .collect::<Result<_, _>>()?;
        Ok(Source {
            name,
            format,
            path,
            path_span,
            options,
            columns,
        })
    }

    fn visit_column_decl(&self, p: P) -> Result<ColumnDecl, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let ty_pair = it.next().ok_or_else(|| self.missing(name.span))?;
        let ty = self.visit_type_expr(ty_pair)?;
        let raw_name = match it.next() {
            Some(s) => Some(self.visit_string(s)?),
            None => None,
        };
        Ok(ColumnDecl { name, ty, raw_name })
    }

    fn visit_type_expr(&self, p: P) -> Result<TypeExpr, ParseError> {
        let span = self.span(&p);
        let mut ty = TypeExpr {
            name: String::new(),
            levels: None,
            format: None,
            nullable: false,
            span,
        };
        for part in p.into_inner() {
            match part.as_rule() {
                Rule::type_name => ty.name = part.as_str().to_string(),
                Rule::levels => {
                    ty.levels = Some(
                        part.into_inner()
                            .map(|s| self.visit_string(s))
                            .collect::<Result<_, _>>()?,
                    )
                }
                Rule::string => ty.format = Some(self.visit_string(part)?),
                Rule::nullable => ty.nullable = true,
                _ => {}
            }
        }
        Ok(ty)
    }

    // ------------------------------------------------------------ check

    fn visit_check_decl(&self, p: P) -> Result<Check, ParseError> {
        let mut it = p.into_inner().peekable();
        let stage = self.next_ident(&mut it)?;
        let mut quarantine = false;
        let mut rules = Vec::new();
        for r in it {
            match r.as_rule() {
                Rule::quarantine => quarantine = true,
                _ => rules.push(self.visit_rule(r)?),
            }
        }
        Ok(Check {
            stage,
            quarantine,
            rules,
        })
    }

    fn visit_rule(&self, p: P) -> Result<Rule_, ParseError> {
        let span = self.tight_span(&p);
        let mut warn = false;
        let mut kind = None;
        for part in p.into_inner() {
            if part.as_rule() == Rule::warn {
                warn = true;
                continue;
            }
            kind = Some(self.visit_rule_body(part)?);
        }
        let kind = kind.ok_or_else(|| self.missing(span))?;
        Ok(Rule_ { warn, kind, span })
    }

    fn visit_rule_body(&self, p: P) -> Result<RuleKind, ParseError> {
        let rule = p.as_rule();
        let span = self.span(&p);
        let mut it = p.into_inner();
        Ok(match rule {
            Rule::not_null_rule => RuleKind::NotNull(self.visit_idents(self.next(&mut it, span)?)),
            Rule::unique_rule => RuleKind::Unique(self.visit_idents(self.next(&mut it, span)?)),
            Rule::range_rule => {
                let col = self.next_ident(&mut it)?;
                RuleKind::Range(col, self.visit_range(self.next(&mut it, span)?)?)
            }
            Rule::values_rule => {
                let col = self.next_ident(&mut it)?;
                let list = self.next(&mut it, span)?;
                let values = list
                    .into_inner()
                    .map(|v| self.visit_value(v))
                    .collect::<Result<_, _>>()?;
                RuleKind::Values(col, values)
            }
            Rule::matches_rule => {
                let col = self.next_ident(&mut it)?;
                let s = self.next(&mut it, span)?;
                let s_span = self.span(&s);
                RuleKind::Matches(col, self.visit_string(s)?, s_span)
            }
            Rule::rows_rule => {
                let op = self.visit_cmp_op(self.next(&mut it, span)?);
                RuleKind::Rows(op, self.visit_int_lit(self.next(&mut it, span)?)?)
            }
            Rule::null_rate_rule => {
                let col = self.next_ident(&mut it)?;
                let op = self.visit_cmp_op(self.next(&mut it, span)?);
                RuleKind::NullRate(col, op, self.visit_number(self.next(&mut it, span)?)?)
            }
            _ => RuleKind::Expect(self.top_expr(self.next(&mut it, span)?)?),
        })
    }

    // ------------------------------------------------------------ split

    fn visit_split_decl(&self, p: P) -> Result<Split, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let input = self.next_ident(&mut it)?;
        let options = it.map(|o| self.visit_option(o)).collect::<Result<_, _>>()?;
        Ok(Split {
            name,
            input,
            options,
        })
    }

    // ------------------------------------------------------------ transform

    fn visit_transform_decl(&self, p: P) -> Result<Transform, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let input = self.next_ident(&mut it)?;
        let steps = it.map(|s| self.visit_step(s)).collect::<Result<_, _>>()?;
        Ok(Transform { name, input, steps })
    }

    fn visit_step(&self, p: P) -> Result<Step, ParseError> {
        let span = self.tight_span(&p);
        let rule = p.as_rule();
        let mut it = p.into_inner();
        let kind = match rule {
            Rule::impute_step => {
                let cols = self.visit_idents(self.next(&mut it, span)?);
                let with = self.next(&mut it, span)?;
                let with = if with.as_rule() == Rule::literal {
                    let s = self.span(&with);
                    ImputeWith::Lit(self.visit_literal(with)?, s)
                } else {
                    ImputeWith::Method(self.visit_ident(with))
                };
                StepKind::Impute(cols, with)
            }
            Rule::encode_step => {
                let cols = self.visit_idents(self.next(&mut it, span)?);
                let method = self.next_ident(&mut it)?;
                let unknown = it.next().map(|u| self.visit_ident(u));
                StepKind::Encode(cols, method, unknown)
            }
            Rule::scale_step => {
                let cols = self.visit_idents(self.next(&mut it, span)?);
                StepKind::Scale(cols, self.next_ident(&mut it)?)
            }
            Rule::clip_step => {
                let cols = self.visit_idents(self.next(&mut it, span)?);
                StepKind::Clip(cols, self.visit_range(self.next(&mut it, span)?)?)
            }
            Rule::bucket_step => {
                let col = self.next_ident(&mut it)?;
                let n = self.next(&mut it, span)?;
                let n_span = self.span(&n);
                StepKind::Bucket(col, self.visit_int_lit(n)?, n_span)
            }
            Rule::drop_step => StepKind::Drop(self.visit_idents(self.next(&mut it, span)?)),
            Rule::keep_step => StepKind::Keep(self.visit_idents(self.next(&mut it, span)?)),
            Rule::rename_step => {
                let a = self.next_ident(&mut it)?;
                StepKind::Rename(a, self.next_ident(&mut it)?)
            }
            _ => StepKind::Filter(self.top_expr(self.next(&mut it, span)?)?),
        };
        Ok(Step { kind, span })
    }

    // ------------------------------------------------------------ features

    fn visit_features_decl(&self, p: P) -> Result<Features, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let input = self.next_ident(&mut it)?;
        let features = it
            .map(|f| {
                let span = self.span(&f);
                let mut fi = f.into_inner();
                let name = self.next_ident(&mut fi)?;
                let expr = self.top_expr(self.next(&mut fi, span)?)?;
                Ok(Feature { name, expr })
            })
            .collect::<Result<_, _>>()?;
        Ok(Features {
            name,
            input,
            features,
        })
    }

    // ------------------------------------------------------------ join / history

    fn visit_join_decl(&self, p: P) -> Result<Join, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let left = self.next_ident(&mut it)?;
        let right = self.next_ident(&mut it)?;
        let keys = self.visit_idents(self.next(&mut it, right.span)?);
        let options = it.map(|o| self.visit_option(o)).collect::<Result<_, _>>()?;
        Ok(Join {
            name,
            left,
            right,
            keys,
            options,
        })
    }

    fn visit_history_decl(&self, p: P) -> Result<History, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let left = self.next_ident(&mut it)?;
        let events = self.next_ident(&mut it)?;
        let keys = self.visit_idents(self.next(&mut it, events.span)?);
        let at = self.next_ident(&mut it)?;
        let by = self.next_ident(&mut it)?;
        let items = it
            .map(|item| {
                let span = self.span(&item);
                let mut ii = item.into_inner();
                let name = self.next_ident(&mut ii)?;
                let expr = self.top_expr(self.next(&mut ii, span)?)?;
                let within = match ii.next() {
                    Some(w) => {
                        let q = self.next(&mut w.into_inner(), span)?;
                        let qspan = self.span(&q);
                        Some((self.visit_literal(q)?, qspan))
                    }
                    None => None,
                };
                Ok(HistoryItem {
                    name,
                    expr,
                    within,
                    span,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(History {
            name,
            left,
            events,
            keys,
            at,
            by,
            items,
        })
    }

    // ------------------------------------------------------------ plugin

    fn visit_plugin_decl(&self, p: P) -> Result<Plugin, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let path_pair = self.next(&mut it, name.span)?;
        let path_span = self.span(&path_pair);
        let path = self.visit_string(path_pair)?;
        let options = it.map(|o| self.visit_option(o)).collect::<Result<_, _>>()?;
        Ok(Plugin {
            name,
            path,
            path_span,
            options,
        })
    }

    // ------------------------------------------------------------ model

    fn visit_model_decl(&self, p: P) -> Result<Model, ParseError> {
        let mut it = p.into_inner();
        let name = self.next_ident(&mut it)?;
        let algorithm = self.next_ident(&mut it)?;
        let input = self.next_ident(&mut it)?;
        let mut model = Model {
            name,
            algorithm,
            input,
            features: None,
            exclude: vec![],
            params: vec![],
            tune: None,
        };
        for item in it {
            match item.as_rule() {
                Rule::model_cols => {
                    let mut ci = item.into_inner();
                    let key = ci
                        .next()
                        .map(|k| k.as_str().to_string())
                        .unwrap_or_default();
                    let cols = ci.next().map(|c| self.visit_idents(c)).unwrap_or_default();
                    if key == "features" {
                        model.features.get_or_insert_with(Vec::new).extend(cols);
                    } else {
                        model.exclude.extend(cols);
                    }
                }
                Rule::tune_block => {
                    let span = self.span(&item);
                    let options = item
                        .into_inner()
                        .map(|o| self.visit_option(o))
                        .collect::<Result<_, _>>()?;
                    model.tune = Some(Tune { options, span });
                }
                _ => model.params.push(self.visit_option(item)?),
            }
        }
        Ok(model)
    }

    // ------------------------------------------------------------ evaluate

    fn visit_evaluate_decl(&self, p: P) -> Result<Evaluate, ParseError> {
        let mut it = p.into_inner();
        let model = self.next_ident(&mut it)?;
        let partition = self.next_ident(&mut it)?;
        let mut ev = Evaluate {
            model,
            partition,
            metrics: vec![],
            gates: vec![],
            slices: vec![],
        };
        for item in it {
            match item.as_rule() {
                Rule::metrics_item => {
                    for names in item.into_inner() {
                        ev.metrics
                            .extend(names.into_inner().map(|n| self.visit_ident(n)));
                    }
                }
                Rule::require_item => ev.gates.push(self.visit_require_item(item)?),
                _ => {
                    let span = self.span(&item);
                    let mut si = item.into_inner();
                    let column = self.next_ident(&mut si)?;
                    let gates = si
                        .map(|g| self.visit_require_item(g))
                        .collect::<Result<_, _>>()?;
                    let _ = span;
                    ev.slices.push(Slice { column, gates });
                }
            }
        }
        Ok(ev)
    }

    fn visit_require_item(&self, p: P) -> Result<Gate, ParseError> {
        let span = self.tight_span(&p);
        let mut it = p.into_inner();
        let gm = self.next(&mut it, span)?;
        let mut names: Vec<Ident> = gm.into_inner().map(|n| self.visit_ident(n)).collect();
        let (aggregate, metric) = match names.len() {
            2 => {
                let m = names.pop();
                (names.pop(), m)
            }
            _ => (None, names.pop()),
        };
        let metric = metric.ok_or_else(|| self.missing(span))?;
        let op = self.visit_cmp_op(self.next(&mut it, span)?);
        let t = self.next(&mut it, span)?;
        let threshold_span = self.span(&t);
        let threshold = self.visit_number(t)?;
        Ok(Gate {
            aggregate,
            metric,
            op,
            threshold,
            threshold_span,
            span,
        })
    }

    // ------------------------------------------------------------ deploy / monitor

    fn visit_deploy_decl(&self, p: P) -> Result<Deploy, ParseError> {
        let mut it = p.into_inner();
        let model = self.next_ident(&mut it)?;
        let s = self.next(&mut it, model.span)?;
        let name_span = self.span(&s);
        let name = self.visit_string(s)?;
        let options = it.map(|o| self.visit_option(o)).collect::<Result<_, _>>()?;
        Ok(Deploy {
            model,
            name,
            name_span,
            options,
        })
    }

    fn visit_monitor_decl(&self, p: P) -> Result<Monitor, ParseError> {
        let mut it = p.into_inner();
        let model = self.next_ident(&mut it)?;
        let items = it
            .map(|i| self.visit_monitor_item(i))
            .collect::<Result<_, _>>()?;
        Ok(Monitor { model, items })
    }

    fn visit_monitor_item(&self, p: P) -> Result<MonitorItem, ParseError> {
        let span = self.tight_span(&p);
        let rule = p.as_rule();
        if rule == Rule::option {
            return Ok(MonitorItem {
                kind: MonitorKind::Option(self.visit_option(p)?),
                span,
            });
        }
        let mut it = p.into_inner();
        let kind = match rule {
            Rule::drift_item => {
                let columns = self.visit_idents(self.next(&mut it, span)?);
                let stat = self.next_ident(&mut it)?;
                let mut next = self.next(&mut it, span)?;
                let mut p_value = false;
                if next.as_rule() == Rule::p_value {
                    p_value = true;
                    next = self.next(&mut it, span)?;
                }
                let op = self.visit_cmp_op(next);
                let t = self.next(&mut it, span)?;
                let threshold_span = self.span(&t);
                MonitorKind::Drift {
                    columns,
                    stat,
                    p_value,
                    op,
                    threshold: self.visit_number(t)?,
                    threshold_span,
                }
            }
            Rule::performance_item => {
                let metric = self.next_ident(&mut it)?;
                let op = self.visit_cmp_op(self.next(&mut it, span)?);
                let t = self.next(&mut it, span)?;
                let threshold_span = self.span(&t);
                MonitorKind::Performance {
                    metric,
                    op,
                    threshold: self.visit_number(t)?,
                    threshold_span,
                }
            }
            Rule::latency_item => {
                let percentile = self.next_ident(&mut it)?;
                let op = self.visit_cmp_op(self.next(&mut it, span)?);
                let v = self.next(&mut it, span)?;
                let value_span = self.span(&v);
                MonitorKind::Latency {
                    percentile,
                    op,
                    value: self.visit_quantity(v)?,
                    value_span,
                }
            }
            _ => {
                let op = self.visit_cmp_op(self.next(&mut it, span)?);
                let t = self.next(&mut it, span)?;
                let threshold_span = self.span(&t);
                MonitorKind::ErrorRate {
                    op,
                    threshold: self.visit_number(t)?,
                    threshold_span,
                }
            }
        };
        Ok(MonitorItem { kind, span })
    }

    // ------------------------------------------------------------ expressions

    fn missing(&self, span: Span) -> ParseError {
        ParseError {
            span,
            message: "incomplete declaration".into(),
            expected: vec![],
            kind: ParseErrorKind::Syntax,
            suggestion: None,
        }
    }

    fn next<'i>(
        &self,
        it: &mut impl Iterator<Item = P<'i>>,
        span: Span,
    ) -> Result<P<'i>, ParseError> {
        it.next().ok_or_else(|| self.missing(span))
    }

    fn next_ident<'i>(&self, it: &mut impl Iterator<Item = P<'i>>) -> Result<Ident, ParseError> {
        it.next()
            .map(|p| self.visit_ident(p))
            .ok_or_else(|| self.missing(Span::new(self.file, 0, 0)))
    }
}

type Rule_ = crate::ast::Rule;
