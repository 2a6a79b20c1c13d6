//! Built for plugin ABI 2: the host (ABI 1) must refuse it at compile time,
//! naming both versions.
#![allow(unsafe_code)]

use mlp_plugin::{tag, Arg, Param};

const TEXT: &[u8] = b"{\"abi\":2,\"name\":\"twice\",\"params\":[{\"name\":\"x\",\"type\":\"float\",\"nullable\":false}],\"returns\":{\"type\":\"float\",\"nullable\":false}}\n";

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
    mlp_plugin::__call::<f64>("twice", rows, args, PARAMS, &[tag::FLOAT], |views, row| {
        <f64 as Arg>::get(&views[0], row) * 2.0
    })
}
