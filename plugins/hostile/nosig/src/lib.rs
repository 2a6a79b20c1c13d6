//! A module with an export but no `mlp:signatures` section.
#![allow(unsafe_code)]

#[no_mangle]
pub extern "C" fn mlp_call_twice(rows: u32, _args: u32) -> u32 {
    rows * 2
}
