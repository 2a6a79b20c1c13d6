//! How the E09xx errors (joins and histories) read.

use super::error::CheckError;
use crate::diagnostic::Diagnostic;

impl CheckError {
    pub(super) fn table_diagnostic(&self, code: &'static str) -> Diagnostic {
        use CheckError::*;
        let e = |m: String| Diagnostic::error(code, m);
        match self {
            JoinNotUnique { span, right, keys } => {
                let keys = keys.join(", ");
                e(format!(
                    "this join may duplicate rows: nothing proves `{right}` has one row per {keys}"
                ))
                .primary(*span, format!("not proved unique on {keys}"))
                .help(format!(
                    "a join is many-to-one; add the check that proves it, `check {right} {{ unique {keys} }}` (the run then verifies it on the data)"
                ))
            }
            KeyTypes {
                span,
                key,
                left,
                right,
            } => e(format!(
                "key `{key}` is {left} on the left and {right} on the right"
            ))
            .primary(*span, "keys of different types")
            .help("keys must have the same type on both sides (int with int; str or category with str or category; date with date); convert one side in a `features` block, for example `key = int(key)`"),
            BothSides {
                span,
                column,
                left,
                right,
                in_block,
            } => {
                let d = e(format!("`{column}` would be a column twice"))
                    .primary(*span, "here");
                let d = match right {
                    Some(r) => d
                        .secondary(*left, "on the left")
                        .secondary(*r, "and on the right"),
                    None if *in_block => d.secondary(*left, "first defined here"),
                    None => d.secondary(*left, "already a column of the left side"),
                };
                d.help(format!(
                    "rename one side's column first (`rename {column} -> ...` in a transform), or drop it"
                ))
            }
            HistoryTime {
                span,
                which,
                column,
                side,
                problem,
            } => e(format!("`{which} {column}`: {problem}"))
                .primary(*span, format!("not a time of `{side}`"))
                .help(match *which {
                    "at" => format!("`at` names the moment each row of `{side}` predicts: a date or datetime column without nulls (declare it without `?`, or add `check {side} {{ not_null {column} }}`)"),
                    _ => format!("`by` names when each event of `{side}` happened: a date or datetime column"),
                }),
            BadWindow { span, found } => e(format!("`within {found}` is not a window"))
                .primary(*span, "a positive duration is expected")
                .help("write a positive number with a unit: `d` (days), `h`, `m` (minutes) or `s`, for example `within 30d`"),
            HistoryAggregate {
                span,
                message,
                help,
            } => e(message.clone()).primary(*span, "here").help(help.clone()),
            SideAfterSplit {
                span,
                side,
                name,
                split,
            } => e(format!(
                "the {side} side `{name}` is downstream of the split `{split}`"
            ))
            .primary(*span, "split rows read as a table")
            .help(format!(
                "a {side} side is read whole, at training and at serving; give it the stage before `{split}` (split the rows the model learns from, not the tables they look up)"
            )),
            EventTableJoined {
                span,
                table,
                history,
                join,
                model,
            } => e(format!(
                "model `{model}` reads `{table}`, an event table, through `join {join}`: its features could see events after the moment predicted"
            ))
            .primary(*span, format!("`{table}` is the events of `history {history}`"))
            .help(format!(
                "read events only through a `history` block, which aggregates each row's events strictly before its time (`history ... with {table} ... at T by TE {{ ... }}`)"
            )),
            other => e(format!("{other:?}")),
        }
    }
}
