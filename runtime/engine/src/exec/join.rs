//! `join`: the left frame (first input) with the right side's columns (the
//! second input), many to one on the keys, through the same
//! [`JoinState`](crate::lookup::JoinState) serving uses.

use super::{Context, ExecError, Output};
use crate::lookup::JoinState;
use mlp_compiler::plan::{JoinHow, JoinOp};

/// The user's name for a stage id (`check.customers` -> `customers`).
pub(super) fn side_name(cx: &Context, at: usize) -> String {
    cx.stage
        .inputs
        .get(at)
        .and_then(|id| cx.plan.stage(id))
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

pub fn run(op: &JoinOp, cx: &Context) -> Result<Output, ExecError> {
    let (Some(left), Some(right)) = (cx.inputs.first(), cx.inputs.get(1)) else {
        return Err(ExecError::Internal(format!(
            "join `{}` needs two inputs",
            cx.stage.name
        )));
    };
    let side = side_name(cx, 1);
    let state = JoinState::build(op, right, &side)?;
    let (frame, unmatched) = state.apply(left.clone())?;
    let mut out = Output::default();
    if unmatched > 0 {
        out.notes.push(match op.how {
            JoinHow::Inner => format!(
                "dropped {unmatched} of {} rows with no `{side}` row (inner join)",
                left.height()
            ),
            JoinHow::Left => format!(
                "{unmatched} of {} rows found no `{side}` row (its columns are null there)",
                left.height()
            ),
        });
    }
    out.frame = Some(frame);
    Ok(out)
}
