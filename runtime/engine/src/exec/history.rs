//! `history`: point-in-time aggregates of each left row's earlier events,
//! through the same [`HistoryState`](crate::lookup::HistoryState) serving
//! uses.

use super::{Context, ExecError, Output};
use crate::lookup::HistoryState;
use mlp_compiler::plan::HistoryOp;

pub fn run(op: &HistoryOp, cx: &Context) -> Result<Output, ExecError> {
    let (Some(left), Some(events)) = (cx.inputs.first(), cx.inputs.get(1)) else {
        return Err(ExecError::Internal(format!(
            "history `{}` needs two inputs",
            cx.stage.name
        )));
    };
    let state = HistoryState::build(op, events, cx.stage, cx.plugins)?;
    let frame = state.apply(left.clone(), None)?;
    let mut out = Output::default();
    let (indexed, dropped) = state.rows();
    if dropped > 0 {
        out.notes.push(format!(
            "{dropped} of {} events of `{}` have a null key or time and count for no row",
            indexed + dropped,
            super::join::side_name(cx, 1)
        ));
    }
    out.frame = Some(frame);
    Ok(out)
}
