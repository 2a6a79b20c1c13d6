//! Declares `twice(x: float) -> float` but its code returns ints: the host
//! must notice the result's type instead of reading the bits as floats.
#![allow(unsafe_code)]

use mlp_plugin::{tag, Arg, Param};

const TEXT: &[u8] = b"{\"abi\":1,\"name\":\"twice\",\"params\":[{\"name\":\"x\",\"type\":\"float\",\"nullable\":false}],\"returns\":{\"type\":\"float\",\"nullable\":false}}\n";

#[used]
#[link_section = "mlp:signatures"]
static SIGNATURE: [u8; TEXT.len()] = mlp_plugin::__bytes(TEXT);

const PARAMS: &[Param] = &[Param {
    name: "x",
    ty: "float",
    nullable: false,
}];

#[export_name = "mlp_call_twice"]
extern "C" fn call(rows: u32, args: u32) -> u32 {
    mlp_plugin::__call::<i64>("twice", rows, args, PARAMS, &[tag::FLOAT], |views, row| {
        (<f64 as Arg>::get(&views[0], row) * 2.0) as i64
    })
}

/// Declares `short(x: float) -> float` and answers one value fewer than
/// the rows it was given: the host must refuse the result.
const SHORT: &[u8] = b"{\"abi\":1,\"name\":\"short\",\"params\":[{\"name\":\"x\",\"type\":\"float\",\"nullable\":false}],\"returns\":{\"type\":\"float\",\"nullable\":false}}\n";

#[used]
#[link_section = "mlp:signatures"]
static SHORT_SIGNATURE: [u8; SHORT.len()] = mlp_plugin::__bytes(SHORT);

#[export_name = "mlp_call_short"]
extern "C" fn call_short(rows: u32, _args: u32) -> u32 {
    let n = rows.saturating_sub(1) as usize;
    let values: &'static mut [f64] = Box::leak(vec![1.0f64; n.max(1)].into_boxed_slice());
    let desc = Box::leak(Box::new(mlp_plugin::Desc {
        tag: tag::FLOAT,
        rows: n as u32,
        values: values.as_ptr() as usize as u32,
        validity: 0,
        offsets: 0,
        len: 0,
    }));
    desc as *const mlp_plugin::Desc as usize as u32
}
