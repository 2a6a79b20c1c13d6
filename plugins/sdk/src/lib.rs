//! Write mlp feature plugins as plain Rust functions.
//!
//! ```ignore
//! mlp_plugin::export! {
//!     /// Whether a city lies on a sea coast.
//!     fn coastal(city: &str) -> bool {
//!         ["Boston", "Miami", "Seattle"].contains(&city)
//!     }
//! }
//! ```
//!
//! [`export!`] keeps each function as it is written and adds, for each one:
//! its signature to the module's `mlp:signatures` custom section (so
//! `mlp check` types calls without running the module), and an exported
//! entry point `mlp_call_NAME` that runs the function over a batch of rows.
//! Memory, null handling and panic messages are the SDK's business, not the
//! author's.
//!
//! Types at the boundary: `f64` (`float`), `i64` (`int`), `bool`, `&str`
//! (`str`; arguments only) and `String` or `&str` (results). `Option<T>` of
//! any of them makes it nullable: an argument of type `T` never sees a null
//! (the row's result is null without a call), an argument of type
//! `Option<T>` does, and a result of type `Option<T>` may be null.
//!
//! # The ABI (version [`ABI_VERSION`])
//!
//! Written down in `docs/plugins.md`; in short: the host calls
//! `mlp_alloc(bytes) -> ptr` once per batch, writes one [`Desc`] per argument
//! and the argument buffers into that space, then calls
//! `mlp_call_NAME(rows, descs) -> ptr` and reads the result [`Desc`] at `ptr`.
//! Every batch runs in a fresh instance. A panic reaches the host through the
//! one import, `mlp.panic(msg_ptr, msg_len, row)`, before the module traps.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::atomic::{AtomicI64, Ordering};

/// The plugin ABI this SDK writes. The host refuses modules whose
/// signatures declare an ABI newer than its own.
pub const ABI_VERSION: u32 = 1;

/// Type tags of a [`Desc`].
pub mod tag {
    pub const FLOAT: u32 = 1;
    pub const INT: u32 = 2;
    pub const BOOL: u32 = 3;
    pub const STR: u32 = 4;
}

/// A column at the boundary: six little-endian `u32` words in linear memory.
///
/// - `values`: `rows` × `f64` (float), `i64` (int), `u8` 0/1 (bool), or the
///   UTF-8 bytes of every string one after another (str; `len` bytes);
/// - `validity`: `rows` bytes, 1 for a value and 0 for a null; 0 (no
///   pointer) when every row holds a value;
/// - an argument of one row in a batch of several is a constant: its value
///   applies to every row (how literals travel);
/// - `offsets`: str only, `rows + 1` × `u32`, row `i` is
///   `values[offsets[i]..offsets[i + 1]]`.
///
/// Float and int buffers are 8-byte aligned.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub tag: u32,
    pub rows: u32,
    pub values: u32,
    pub validity: u32,
    pub offsets: u32,
    pub len: u32,
}

/// One argument column, read in place from linear memory.
pub struct View {
    tag: u32,
    rows: usize,
    /// A column of one row given for a batch of several: a constant.
    constant: bool,
    validity: Option<&'static [u8]>,
    floats: &'static [f64],
    ints: &'static [i64],
    bools: &'static [u8],
    offsets: &'static [u32],
    bytes: &'static [u8],
}

/// # Safety
/// `ptr` is 0 or points at `n` readable, aligned, initialised `T`s that stay
/// untouched for the rest of the call.
unsafe fn slice<T>(ptr: u32, n: usize) -> &'static [T] {
    if ptr == 0 || n == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr as usize as *const T, n)
    }
}

impl View {
    /// # Safety
    /// `d` was written by the host following the ABI: its pointers address
    /// buffers of the sizes the ABI gives, inside this module's memory.
    unsafe fn from_desc(d: &Desc) -> View {
        let n = d.rows as usize;
        let mut v = View {
            tag: d.tag,
            rows: n,
            constant: false,
            validity: if d.validity == 0 {
                None
            } else {
                Some(slice(d.validity, n))
            },
            floats: &[],
            ints: &[],
            bools: &[],
            offsets: &[],
            bytes: &[],
        };
        match d.tag {
            tag::FLOAT => v.floats = slice(d.values, n),
            tag::INT => v.ints = slice(d.values, n),
            tag::BOOL => v.bools = slice(d.values, n),
            tag::STR => {
                v.offsets = slice(d.offsets, n + 1);
                v.bytes = slice(d.values, d.len as usize);
            }
            _ => {}
        }
        v
    }

    /// The index of `row` in this column's buffers (0 for a constant).
    #[inline]
    pub fn at(&self, row: usize) -> usize {
        if self.constant {
            0
        } else {
            row
        }
    }

    /// Whether `row` holds a null.
    pub fn is_null(&self, row: usize) -> bool {
        matches!(self.validity, Some(v) if v[self.at(row)] == 0)
    }
}

/// A type at the boundary.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot cross the plugin boundary",
    note = "plugin functions take and return `f64`, `i64`, `bool`, `&str` (or `String` as a result), or an `Option` of one of them"
)]
pub trait Type {
    /// The tag of [`Desc::tag`].
    const TAG: u32;
    /// The type's name in signatures: `float`, `int`, `bool`, `str`.
    const NAME: &'static str;
    /// Whether a null can pass.
    const NULLABLE: bool;
}

/// A type a function can take.
pub trait Arg: Type + Sized {
    /// The value of `row` (the caller has checked it is not null unless
    /// `Self` is an `Option`).
    fn get(view: &View, row: usize) -> Self;
}

/// A type a function can return.
pub trait Ret: Type {
    fn put(self, out: &mut Out);
}

macro_rules! scalar {
    ($t:ty, $tag:expr, $name:literal, $field:ident, $get:expr, $push:ident) => {
        impl Type for $t {
            const TAG: u32 = $tag;
            const NAME: &'static str = $name;
            const NULLABLE: bool = false;
        }
        impl Arg for $t {
            #[inline]
            fn get(view: &View, row: usize) -> Self {
                #[allow(clippy::redundant_closure_call)]
                ($get)(view.$field[view.at(row)])
            }
        }
        impl Ret for $t {
            #[inline]
            fn put(self, out: &mut Out) {
                out.$push(self)
            }
        }
    };
}

scalar!(f64, tag::FLOAT, "float", floats, |x: f64| x, push_float);
scalar!(i64, tag::INT, "int", ints, |x: i64| x, push_int);
scalar!(bool, tag::BOOL, "bool", bools, |x: u8| x != 0, push_bool);

impl Type for &str {
    const TAG: u32 = tag::STR;
    const NAME: &'static str = "str";
    const NULLABLE: bool = false;
}

impl Arg for &'static str {
    #[inline]
    fn get(view: &View, row: usize) -> Self {
        let i = view.at(row);
        let (a, b) = (view.offsets[i] as usize, view.offsets[i + 1] as usize);
        // The host validated the column as UTF-8 when it built it.
        std::str::from_utf8(&view.bytes[a..b]).unwrap_or_else(|_| {
            panic!("row {row} is not valid UTF-8 (host bug)");
        })
    }
}

impl Ret for &str {
    #[inline]
    fn put(self, out: &mut Out) {
        out.push_str(self)
    }
}

impl Type for String {
    const TAG: u32 = tag::STR;
    const NAME: &'static str = "str";
    const NULLABLE: bool = false;
}

impl Ret for String {
    #[inline]
    fn put(self, out: &mut Out) {
        out.push_str(&self)
    }
}

impl<T: Type> Type for Option<T> {
    const TAG: u32 = T::TAG;
    const NAME: &'static str = T::NAME;
    const NULLABLE: bool = true;
}

impl<T: Arg> Arg for Option<T> {
    #[inline]
    fn get(view: &View, row: usize) -> Self {
        if view.is_null(row) {
            None
        } else {
            Some(T::get(view, row))
        }
    }
}

impl<T: Ret> Ret for Option<T> {
    #[inline]
    fn put(self, out: &mut Out) {
        match self {
            Some(v) => v.put(out),
            None => out.push_null(),
        }
    }
}

/// The result column being built.
pub struct Out {
    tag: u32,
    validity: Vec<u8>,
    any_null: bool,
    floats: Vec<f64>,
    ints: Vec<i64>,
    bools: Vec<u8>,
    offsets: Vec<u32>,
    bytes: Vec<u8>,
    desc: Box<Desc>,
}

impl Out {
    fn new(tag: u32, rows: usize) -> Out {
        let mut out = Out {
            tag,
            validity: Vec::new(),
            any_null: false,
            floats: vec![],
            ints: vec![],
            bools: vec![],
            offsets: vec![],
            bytes: vec![],
            desc: Box::default(),
        };
        match tag {
            tag::FLOAT => out.floats.reserve(rows),
            tag::INT => out.ints.reserve(rows),
            tag::BOOL => out.bools.reserve(rows),
            _ => {
                out.offsets.reserve(rows + 1);
                out.offsets.push(0);
            }
        }
        out
    }
    // Validity is written only once a null has been seen: until then every
    // row holds a value and the descriptor says so with a 0 pointer.
    #[inline]
    fn valid(&mut self) {
        if self.any_null {
            self.validity.push(1);
        }
    }
    fn push_float(&mut self, x: f64) {
        self.floats.push(x);
        self.valid();
    }
    fn push_int(&mut self, x: i64) {
        self.ints.push(x);
        self.valid();
    }
    fn push_bool(&mut self, x: bool) {
        self.bools.push(x as u8);
        self.valid();
    }
    fn push_str(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes());
        self.offsets.push(self.bytes.len() as u32);
        self.valid();
    }
    fn len(&self) -> usize {
        match self.tag {
            tag::FLOAT => self.floats.len(),
            tag::INT => self.ints.len(),
            tag::BOOL => self.bools.len(),
            _ => self.offsets.len() - 1,
        }
    }
    fn push_null(&mut self) {
        if !self.any_null {
            self.validity = vec![1; self.len()];
            self.any_null = true;
        }
        match self.tag {
            tag::FLOAT => self.floats.push(0.0),
            tag::INT => self.ints.push(0),
            tag::BOOL => self.bools.push(0),
            _ => self.offsets.push(self.bytes.len() as u32),
        }
        self.validity.push(0);
    }
    fn finish(&mut self) -> u32 {
        let addr = |p: *const u8| p as usize as u32;
        let values = match self.tag {
            tag::FLOAT => addr(self.floats.as_ptr().cast()),
            tag::INT => addr(self.ints.as_ptr().cast()),
            tag::BOOL => addr(self.bools.as_ptr()),
            _ => addr(self.bytes.as_ptr()),
        };
        *self.desc = Desc {
            tag: self.tag,
            rows: self.len() as u32,
            values,
            validity: if self.any_null {
                addr(self.validity.as_ptr())
            } else {
                0
            },
            offsets: if self.tag == tag::STR {
                addr(self.offsets.as_ptr().cast())
            } else {
                0
            },
            len: self.bytes.len() as u32,
        };
        addr((&*self.desc as *const Desc).cast())
    }
}

thread_local! {
    /// The last result, kept alive until the host has read it.
    static LAST: RefCell<Option<Out>> = const { RefCell::new(None) };
}

/// The row being computed, for panic messages (-1 outside a row).
static ROW: AtomicI64 = AtomicI64::new(-1);

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "mlp")]
extern "C" {
    #[link_name = "panic"]
    fn mlp_host_panic(msg: u32, len: u32, row: i64);
}

fn report_panic(msg: &str, row: i64) {
    #[cfg(target_arch = "wasm32")]
    // SAFETY: the host reads `len` bytes at `msg`, which this frame keeps alive.
    unsafe {
        mlp_host_panic(msg.as_ptr() as usize as u32, msg.len() as u32, row)
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("plugin panicked at row {row}: {msg}");
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let what = info.payload_as_str().unwrap_or("a panic without a message");
            let msg = match info.location() {
                Some(l) => format!("{what} (at {}:{}:{})", l.file(), l.line(), l.column()),
                None => what.to_string(),
            };
            report_panic(&msg, ROW.load(Ordering::Relaxed));
        }))
    });
}

/// Allocates `size` bytes, 8-aligned, for the host to write a batch into.
/// Returns 0 when the memory limit leaves no room.
#[no_mangle]
pub extern "C" fn mlp_alloc(size: u32) -> u32 {
    let Ok(layout) = std::alloc::Layout::from_size_align(size.max(8) as usize, 8) else {
        return 0;
    };
    // SAFETY: the layout has a non-zero size. The host never frees: every
    // batch runs in a fresh instance.
    unsafe { std::alloc::alloc(layout) as usize as u32 }
}

/// The row (within the batch) being computed, or -1: the host asks after a
/// trap to say where a limit was hit.
#[no_mangle]
pub extern "C" fn mlp_row() -> i64 {
    ROW.load(Ordering::Relaxed)
}

#[doc(hidden)]
pub struct Param {
    pub name: &'static str,
    pub ty: &'static str,
    pub nullable: bool,
}

const fn emit(buf: &mut [u8], mut at: usize, s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if at < buf.len() {
            buf[at] = b[i];
        }
        at += 1;
        i += 1;
    }
    at
}

const fn emit_bool(buf: &mut [u8], at: usize, b: bool) -> usize {
    emit(buf, at, if b { "true" } else { "false" })
}

/// Writes one function's signature entry; returns its length (it writes
/// only what fits, so a zero-length buffer measures).
const fn write_signature(
    buf: &mut [u8],
    name: &str,
    params: &[Param],
    ret: &str,
    ret_nullable: bool,
) -> usize {
    let mut at = emit(buf, 0, "{\"abi\":1,\"name\":\"");
    at = emit(buf, at, name);
    at = emit(buf, at, "\",\"params\":[");
    let mut i = 0;
    while i < params.len() {
        if i > 0 {
            at = emit(buf, at, ",");
        }
        at = emit(buf, at, "{\"name\":\"");
        at = emit(buf, at, params[i].name);
        at = emit(buf, at, "\",\"type\":\"");
        at = emit(buf, at, params[i].ty);
        at = emit(buf, at, "\",\"nullable\":");
        at = emit_bool(buf, at, params[i].nullable);
        at = emit(buf, at, "}");
        i += 1;
    }
    at = emit(buf, at, "],\"returns\":{\"type\":\"");
    at = emit(buf, at, ret);
    at = emit(buf, at, "\",\"nullable\":");
    at = emit_bool(buf, at, ret_nullable);
    emit(buf, at, "}}\n")
}

#[doc(hidden)]
pub const fn __signature_len(name: &str, params: &[Param], ret: &str, ret_nullable: bool) -> usize {
    write_signature(&mut [], name, params, ret, ret_nullable)
}

#[doc(hidden)]
pub const fn __signature<const N: usize>(
    name: &str,
    params: &[Param],
    ret: &str,
    ret_nullable: bool,
) -> [u8; N] {
    let mut buf = [0u8; N];
    write_signature(&mut buf, name, params, ret, ret_nullable);
    buf
}

/// A byte string as an array, for a signature section written by hand (the
/// test suite's hostile plugins declare what their code does not do).
#[doc(hidden)]
pub const fn __bytes<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    let mut i = 0;
    while i < N {
        a[i] = s[i];
        i += 1;
    }
    a
}

/// Runs `f` over a batch: the body of every `mlp_call_NAME` export.
#[doc(hidden)]
pub fn __call<R: Ret>(
    func: &str,
    rows: u32,
    args: u32,
    params: &[Param],
    tags: &[u32],
    f: impl Fn(&[View], usize) -> R,
) -> u32 {
    install_panic_hook();
    let n = rows as usize;
    let mut views: Vec<View> = (0..tags.len())
        .map(|k| {
            // SAFETY: the host wrote `tags.len()` descriptors at `args`.
            unsafe {
                let d = &*((args as usize + k * std::mem::size_of::<Desc>()) as *const Desc);
                View::from_desc(d)
            }
        })
        .collect();
    for (k, v) in views.iter_mut().enumerate() {
        // A one-row column in a larger batch is a constant (a literal).
        v.constant = v.rows == 1 && n > 1;
        if v.tag != tags[k] {
            panic!(
                "`{func}` argument `{}` arrived with type tag {} but the code takes {}: the module's signatures do not match its code",
                params[k].name, v.tag, params[k].ty
            );
        }
        if v.rows != n && !v.constant {
            panic!(
                "`{func}` argument `{}` has {} rows in a batch of {n}",
                params[k].name, v.rows
            );
        }
    }
    let mut out = Out::new(R::TAG, n);
    let strict: Vec<&View> = views
        .iter()
        .zip(params)
        .filter(|(v, p)| !p.nullable && v.validity.is_some())
        .map(|(v, _)| v)
        .collect();
    for row in 0..n {
        ROW.store(row as i64, Ordering::Relaxed);
        if strict.iter().any(|v| v.is_null(row)) {
            out.push_null();
            continue;
        }
        f(&views, row).put(&mut out);
    }
    ROW.store(-1, Ordering::Relaxed);
    let ptr = out.finish();
    LAST.with(|last| *last.borrow_mut() = Some(out));
    ptr
}

#[doc(hidden)]
pub fn __missing_argument(func: &str) -> ! {
    panic!("`{func}` was called with fewer arguments than it takes")
}

/// Exports plain Rust functions as plugin functions (see the crate docs).
#[macro_export]
macro_rules! export {
    ($(
        $(#[$meta:meta])*
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block
    )*) => {
        $(
            $(#[$meta])*
            $vis fn $name($($arg: $ty),*) -> $ret $body

            const _: () = {
                const PARAMS: &[$crate::Param] = &[$($crate::Param {
                    name: stringify!($arg),
                    ty: <$ty as $crate::Type>::NAME,
                    nullable: <$ty as $crate::Type>::NULLABLE,
                }),*];
                const LEN: usize = $crate::__signature_len(
                    stringify!($name),
                    PARAMS,
                    <$ret as $crate::Type>::NAME,
                    <$ret as $crate::Type>::NULLABLE,
                );
                #[used]
                #[link_section = "mlp:signatures"]
                static SIGNATURE: [u8; LEN] = $crate::__signature::<LEN>(
                    stringify!($name),
                    PARAMS,
                    <$ret as $crate::Type>::NAME,
                    <$ret as $crate::Type>::NULLABLE,
                );

                #[export_name = concat!("mlp_call_", stringify!($name))]
                extern "C" fn call(rows: u32, args: u32) -> u32 {
                    $crate::__call::<$ret>(
                        stringify!($name),
                        rows,
                        args,
                        PARAMS,
                        &[$(<$ty as $crate::Type>::TAG),*],
                        |views, row| {
                            #[allow(unused_mut, unused_variables)]
                            let mut it = views.iter();
                            $(
                                let $arg: $ty = match it.next() {
                                    Some(v) => <$ty as $crate::Arg>::get(v, row),
                                    None => $crate::__missing_argument(stringify!($name)),
                                };
                            )*
                            $name($($arg),*)
                        },
                    )
                }
            };
        )*
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_entries_are_json_lines() {
        let params = [
            Param {
                name: "a",
                ty: "float",
                nullable: false,
            },
            Param {
                name: "b",
                ty: "str",
                nullable: true,
            },
        ];
        const N: usize = 200;
        let len = __signature_len("f", &params, "int", true);
        let buf: [u8; N] = __signature("f", &params, "int", true);
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        assert_eq!(
            text,
            "{\"abi\":1,\"name\":\"f\",\"params\":[{\"name\":\"a\",\"type\":\"float\",\"nullable\":false},{\"name\":\"b\",\"type\":\"str\",\"nullable\":true}],\"returns\":{\"type\":\"int\",\"nullable\":true}}\n"
        );
    }

    #[test]
    fn nulls_in_strict_arguments_give_null_rows() {
        let mut out = Out::new(tag::FLOAT, 2);
        Some(1.5f64).put(&mut out);
        None::<f64>.put(&mut out);
        out.finish();
        assert_eq!(out.validity, vec![1, 0]);
        assert!(out.any_null);
        assert_eq!(out.floats.len(), 2);
    }
}
