//! Syntax errors a person can act on: what was expected, in words, and
//! hints for the usual slips (a misplaced keyword, an unclosed block).

use super::*;

/// The words a user sees for a grammar rule in "expected ..." messages.
pub(super) fn rule_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::source_decl
        | Rule::check_decl
        | Rule::split_decl
        | Rule::transform_decl
        | Rule::features_decl
        | Rule::join_decl
        | Rule::history_decl
        | Rule::plugin_decl
        | Rule::model_decl
        | Rule::evaluate_decl
        | Rule::deploy_decl
        | Rule::monitor_decl => {
            "a declaration (`source`, `check`, `split`, `transform`, `features`, `join`, `history`, `plugin`, `model`, `evaluate`, `deploy` or `monitor`)"
        }
        Rule::ident | Rule::name | Rule::idents | Rule::column => "a name",
        Rule::int_lit => "an integer",
        Rule::float_lit | Rule::number => "a number",
        Rule::quantity => "a number with a unit (like `20ms`, `30d` or `64MB`)",
        Rule::string => "a quoted string",
        Rule::bool_lit => "`true` or `false`",
        Rule::null_lit => "`null`",
        Rule::literal => "a literal value",
        Rule::list => "a list `[...]`",
        Rule::value | Rule::call_value => "a value",
        Rule::range => "a range `LO..HI`",
        Rule::cmp_op => "a comparison (`<`, `<=`, `>`, `>=`, `==`, `!=`)",
        Rule::format_call => "a format such as `csv(\"path\")`",
        Rule::option => "an option `name = value`",
        Rule::column_decl => "a column declaration `name : type`",
        Rule::type_expr | Rule::type_name => {
            "a type (`int`, `float`, `bool`, `str`, `category`, `date`, `datetime`)"
        }
        Rule::levels => "a list of levels",
        Rule::nullable => "`?`",
        Rule::quarantine => "`quarantine`",
        Rule::check_rule | Rule::warn => {
            "a check rule (`not_null`, `unique`, `range`, `values`, `matches`, `rows`, `null_rate`, `expect`)"
        }
        Rule::not_null_rule
        | Rule::unique_rule
        | Rule::range_rule
        | Rule::values_rule
        | Rule::matches_rule
        | Rule::rows_rule
        | Rule::null_rate_rule
        | Rule::expect_rule => {
            "a check rule (`not_null`, `unique`, `range`, `values`, `matches`, `rows`, `null_rate`, `expect`)"
        }
        Rule::impute_step
        | Rule::encode_step
        | Rule::scale_step
        | Rule::clip_step
        | Rule::bucket_step
        | Rule::drop_step
        | Rule::keep_step
        | Rule::rename_step
        | Rule::filter_step => {
            "a transform step (`impute`, `encode`, `scale`, `clip`, `bucket`, `drop`, `keep`, `rename`, `filter`)"
        }
        Rule::feature => "a feature `name = expression`",
        Rule::history_item => "an aggregate `name = AGG(EXPR) [within DURATION]`",
        Rule::within => "`within DURATION` (like `within 30d`)",
        Rule::model_cols | Rule::cols_key => "`features = ...` or `exclude = ...`",
        Rule::tune_block => "a `tune { ... }` block",
        Rule::metrics_item | Rule::require_item | Rule::slice_item => {
            "`metrics`, `require` or `slice`"
        }
        Rule::metric_names | Rule::gate_metric => "a metric name",
        Rule::drift_item | Rule::performance_item | Rule::latency_item | Rule::error_rate_item => {
            "`drift`, `performance`, `latency`, `error_rate` or an option"
        }
        Rule::p_value => "`p`",
        Rule::expr
        | Rule::if_expr
        | Rule::op_expr
        | Rule::postfix_expr
        | Rule::expr_list
        | Rule::plugin_call
        | Rule::call
        | Rule::args => "an expression",
        Rule::neg | Rule::not => "an expression",
        Rule::over => "`over`",
        Rule::pow
        | Rule::add
        | Rule::sub
        | Rule::mul
        | Rule::div
        | Rule::rem
        | Rule::le
        | Rule::ge
        | Rule::eq
        | Rule::ne
        | Rule::lt
        | Rule::gt
        | Rule::and
        | Rule::or
        | Rule::in_op => "an operator",
        _ => return None,
    })
}

/// A keyword written inside a block that belongs in its header.
pub(super) fn misplaced_keyword(word: &str) -> Option<String> {
    match word {
        "quarantine" => Some(
            "`quarantine` goes in the header of the check: `check NAME quarantine { ... }`".into(),
        ),
        _ => None,
    }
}

/// The keywords that open a top-level declaration.
const DECLARATION_KEYWORDS: &[&str] = &[
    "source",
    "check",
    "split",
    "transform",
    "features",
    "join",
    "history",
    "plugin",
    "model",
    "evaluate",
    "deploy",
    "monitor",
];

/// When the error's line starts a new declaration while a `{` before it is
/// still open, the likely mistake is a missing `}`: says which `{`.
pub(super) fn unclosed_block(text: &str, pos: usize) -> Option<String> {
    let at_end = text[pos.min(text.len())..].trim().is_empty();
    let line_start = if at_end {
        text.len()
    } else {
        text[..pos.min(text.len())].rfind('\n').map_or(0, |i| i + 1)
    };
    let first_word: String = text[line_start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    // `split s = ...` starts a declaration; `model = ...` in a `features`
    // block is a feature named `model`.
    let after = text[line_start..].trim_start()[first_word.len()..].trim_start();
    let names_something = after
        .chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_');
    if !at_end && (!DECLARATION_KEYWORDS.contains(&first_word.as_str()) || !names_something) {
        return None;
    }
    // Braces before the line, outside strings and comments.
    let mut open: Vec<usize> = vec![];
    let mut chars = text[..line_start].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '{' => open.push(i),
            '}' => {
                open.pop();
            }
            _ => {}
        }
    }
    let brace = *open.last()?;
    let line = text[..brace].matches('\n').count() + 1;
    Some(if at_end {
        format!("the `{{` on line {line} is never closed: add `}}` at the end of the block")
    } else {
        format!("the `{{` on line {line} is never closed: add `}}` before this `{first_word}`")
    })
}

pub(super) fn syntax_error(file: FileId, text: &str, e: pest::error::Error<Rule>) -> ParseError {
    use pest::error::{ErrorVariant, InputLocation};
    let mut pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let push = |expected: &mut Vec<String>, w: String| {
        if !expected.contains(&w) {
            expected.push(w);
        }
    };
    // With error detail on, pest knows the furthest position reached and the
    // literal tokens and rules it would have accepted there.
    let mut keywords: Vec<String> = Vec::new();
    if let Some(attempts) = e.parse_attempts() {
        if attempts.max_position >= pos {
            pos = attempts.max_position;
            let mut rule_found = false;
            for stack in attempts.call_stacks() {
                if let Some(r) = stack.deepest.get_rule() {
                    if let Some(w) = rule_words(*r) {
                        push(&mut expected, w.to_string());
                        rule_found = true;
                    }
                }
            }
            // Literal tokens (`ParsingToken` is not exported, but its Display
            // shows the literal as written).
            for t in attempts.expected_tokens() {
                let token = t.to_string();
                let literal = !token.trim().is_empty()
                    && token != "#"
                    && !token.contains("..")
                    && token != "_"
                    && token != "BUILTIN_RULE";
                if !literal {
                    continue;
                }
                if token.chars().all(|c| c.is_ascii_alphabetic() || c == '_') {
                    keywords.push(token.clone());
                    // A rule already lists this keyword in words.
                    let quoted = format!("`{token}`");
                    if rule_found && expected.iter().any(|w| w.contains(&quoted)) {
                        continue;
                    }
                }
                push(&mut expected, format!("`{token}`"));
            }
            if expected.is_empty() {
                for stack in attempts.call_stacks() {
                    if let Some(w) = stack.parent.and_then(rule_words) {
                        push(&mut expected, w.to_string());
                    }
                }
            }
        }
    }
    if expected.is_empty() {
        if let ErrorVariant::ParsingError { positives, .. } = &e.variant {
            for r in positives {
                if let Some(w) = rule_words(*r) {
                    push(&mut expected, w.to_string());
                }
            }
        }
    }
    // "a declaration" is only worth saying when nothing more precise is.
    if expected.len() > 1 {
        let decl = rule_words(Rule::source_decl).unwrap_or_default();
        expected.retain(|w| w != decl);
    }
    // Enough for every declaration keyword (10) or transform step (9).
    expected.truncate(12);
    // The offending token: from the error position to the end of the word.
    let rest = &text[pos.min(text.len())..];
    let tok_len = if rest.is_empty() {
        0
    } else {
        let first = rest.chars().next().map(|c| c.len_utf8()).unwrap_or(1);
        let word: usize = rest
            .char_indices()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
            .map(|(_, c)| c.len_utf8())
            .sum();
        word.max(first)
    };
    let found = if rest.is_empty() {
        "the end of the file".to_string()
    } else {
        format!("`{}`", &rest[..tok_len])
    };
    let message = match expected.len() {
        0 => format!("unexpected {found}"),
        1 => format!("expected {}, found {found}", expected[0]),
        _ => {
            let (last, init) = expected.split_last().unwrap_or((&expected[0], &[]));
            format!("expected {} or {last}, found {found}", init.join(", "))
        }
    };
    let found_word = &rest[..tok_len];
    let suggestion = unclosed_block(text, pos)
        .or_else(|| misplaced_keyword(found_word))
        .or_else(|| {
            if found_word.chars().all(|c| c.is_alphanumeric() || c == '_') && found_word.len() > 1 {
                crate::suggest::did_you_mean(found_word, keywords.iter().map(String::as_str))
            } else {
                None
            }
        });
    ParseError {
        span: Span::new(file, pos, pos + tok_len),
        message,
        expected,
        kind: ParseErrorKind::Syntax,
        suggestion,
    }
}
