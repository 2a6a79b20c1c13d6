//! Frames in the cache: a stage's output frame is written as Arrow IPC
//! record batches, LZ4-compressed on every core, and only the columns the
//! stage made are written when the rest are its input's columns unchanged
//! (the entry names that input's entry as its base: `mlp_store::store::FrameBase`).
//!
//! A split adds one column to its input, a model its predictions: writing
//! the whole frame again at every stage was most of a run's disk traffic
//! and a third of its CPU. Columns are inherited only when they are the
//! same data (the same buffers, not equal values), so a frame read back is
//! the frame the stage computed, bit for bit.

use crate::exec::ExecError;
use mlp_store::store::{FrameBase, PendingEntry, Store, MAX_BASE_DEPTH};
use polars::prelude::*;
use polars_arrow::array::{
    Array, BinaryViewArray, BooleanArray, NullArray, PrimitiveArray, Utf8ViewArray,
};
use polars_arrow::bitmap::Bitmap;
use std::path::Path;
use std::sync::Arc;

/// The name of an entry's output frame file.
pub const FRAME: &str = "frame.arrow";

/// The output frame of a cached stage, its inherited columns read from its
/// base entries.
pub fn read_output(store: &Store, key: &str) -> Result<DataFrame, ExecError> {
    read_columns(store, key, None, 0)
}

/// Whether an entry's frame can be read whole: every column it lists is in
/// its own file or, through its chain of bases, in theirs (schemas only; no
/// data is read). A damaged `entry.json` shows here, for `mlp cache gc`.
pub fn check_output(store: &Store, key: &str) -> Result<(), ExecError> {
    fn holds(
        store: &Store,
        key: &str,
        want: Option<&[String]>,
        depth: usize,
    ) -> Result<(), String> {
        let meta = store
            .lookup(key)
            .ok_or_else(|| format!("`{key}` is not in the cache (or not whole)"))?;
        if depth > MAX_BASE_DEPTH {
            return Err("its chain of base entries is too long".into());
        }
        let schema = || -> Result<Vec<String>, String> {
            let path = store.entry_dir(key).join(FRAME);
            let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let schema = IpcReader::new(f).schema().map_err(|e| e.to_string())?;
            Ok(schema.iter_names().map(|n| n.to_string()).collect())
        };
        let (base, want) = match (&meta.base, want) {
            (None, None) => return schema().map(|_| ()),
            (None, Some(w)) => {
                let have = schema()?;
                return match w.iter().find(|c| !have.contains(c)) {
                    Some(c) => Err(format!("`{key}` has no column `{c}`")),
                    None => Ok(()),
                };
            }
            (Some(b), w) => (b, w.map_or(b.columns.clone(), <[String]>::to_vec)),
        };
        let (inherited, own): (Vec<String>, Vec<String>) =
            want.into_iter().partition(|c| base.inherited.contains(c));
        if !own.is_empty() {
            let have = if meta.files.iter().any(|f| f == FRAME) {
                schema()?
            } else {
                vec![]
            };
            if let Some(c) = own.iter().find(|c| !have.contains(c)) {
                return Err(format!("`{key}` has no column `{c}`"));
            }
        }
        if inherited.is_empty() {
            Ok(())
        } else {
            holds(store, &base.key, Some(&inherited), depth + 1)
        }
    }
    holds(store, key, None, 0).map_err(|why| damaged(key, why))
}

/// A cache entry that cannot be read as it says, with the fix.
fn damaged(key: &str, why: impl std::fmt::Display) -> ExecError {
    ExecError::Internal(format!(
        "cache entry `{key}` is damaged ({why}): run `mlp cache gc` to remove damaged entries, then run again"
    ))
}

/// The columns `want` (every column when `None`) of an entry's output
/// frame, in that order.
fn read_columns(
    store: &Store,
    key: &str,
    want: Option<&[String]>,
    depth: usize,
) -> Result<DataFrame, ExecError> {
    let corrupt = |why: String| damaged(key, why);
    if depth > MAX_BASE_DEPTH {
        return Err(corrupt("its chain of base entries is too long".into()));
    }
    let meta = store
        .lookup(key)
        .ok_or_else(|| corrupt("it is not in the cache (or not whole)".into()))?;
    let Some(base) = meta.base else {
        return read_file(store, key, FRAME, want);
    };
    let want: Vec<String> = match want {
        Some(w) => w.to_vec(),
        None => base.columns.clone(),
    };
    let (inherited, own): (Vec<String>, Vec<String>) = want
        .iter()
        .cloned()
        .partition(|c| base.inherited.contains(c));
    if let Some(c) = own.iter().find(|c| !base.columns.contains(c)) {
        return Err(corrupt(format!("it has no column `{c}`")));
    }
    // Only the files holding wanted columns are read.
    let parts = match (inherited.is_empty(), own.is_empty()) {
        (false, true) => read_columns(store, &base.key, Some(&inherited), depth + 1)?,
        (true, false) => read_file(store, key, FRAME, Some(&own))?,
        (true, true) => DataFrame::empty(),
        (false, false) => read_columns(store, &base.key, Some(&inherited), depth + 1)?
            .hstack(read_file(store, key, FRAME, Some(&own))?.columns())
            .map_err(|e| corrupt(format!("its columns do not line up with its base's: {e}")))?,
    };
    let df = parts
        .select(want.iter().cloned())
        .map_err(ExecError::polars)?;
    if let Some(rows) = meta.rows {
        if df.height() != rows && df.width() > 0 {
            return Err(corrupt(format!(
                "{} rows where it recorded {rows}",
                df.height()
            )));
        }
    }
    Ok(df)
}

/// An Arrow IPC file of an entry (checksum checked), whole or the columns
/// `want` in that order.
pub(crate) fn read_file(
    store: &Store,
    key: &str,
    name: &str,
    want: Option<&[String]>,
) -> Result<DataFrame, ExecError> {
    let path = store
        .checked_path(key, name)
        .map_err(|e| ExecError::Internal(e.to_string()))?;
    let f = std::fs::File::open(&path)
        .map_err(|e| ExecError::Internal(format!("{}: {e}", path.display())))?;
    // In one piece, as the stage that wrote it held it: polars' sums over
    // several chunks round differently, and a stage's output must not
    // depend on whether its input came from memory or the cache.
    let df = IpcReader::new(f)
        .with_columns(want.map(<[String]>::to_vec))
        .finish()
        .map_err(|e| damaged(key, e))?;
    match want {
        Some(w) => df.select(w.iter().cloned()).map_err(|e| damaged(key, e)),
        None => Ok(df),
    }
}

/// The longest chain of bases a new entry starts on: past it, a frame is
/// written whole again, so reading one (and finding it in the cache) never
/// walks more than this many entries, however long the pipeline.
const CHAIN: usize = 16;

/// Writes a stage's output frame into its pending entry: the columns that
/// are not one of the input frames' columns unchanged, and the input's
/// entry as the base for the others (the input sharing the most columns).
pub(crate) fn write_output(
    store: &Store,
    pending: &mut PendingEntry,
    df: DataFrame,
    inputs: &[(String, DataFrame)],
) -> Result<(), ExecError> {
    let best = inputs
        .iter()
        .filter(|(key, input)| input.height() == df.height() && store.chain_depth(key) < CHAIN)
        .map(|(key, input)| (key, inherited_columns(&df, input)))
        .max_by_key(|(_, cols)| cols.len())
        .filter(|(_, cols)| !cols.is_empty());
    let Some((key, inherited)) = best else {
        let mut df = df;
        let (size, sum) = write_frame(&pending.path(FRAME), &mut df)?;
        pending.add(FRAME, size, sum);
        return Ok(());
    };
    let columns: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let own: Vec<String> = columns
        .iter()
        .filter(|c| !inherited.contains(c))
        .cloned()
        .collect();
    if !own.is_empty() {
        let mut mine = df.select(own).map_err(ExecError::polars)?;
        let (size, sum) = write_frame(&pending.path(FRAME), &mut mine)?;
        pending.add(FRAME, size, sum);
    }
    pending.set_base(FrameBase {
        key: key.clone(),
        columns,
        inherited,
    });
    Ok(())
}

/// The columns of `df` that are a column of `input` under the same name,
/// the same data: the same type and the same buffers.
fn inherited_columns(df: &DataFrame, input: &DataFrame) -> Vec<String> {
    df.columns()
        .iter()
        .filter(|c| {
            input
                .column(c.name())
                .is_ok_and(|i| same_data(c.as_series(), i.as_series()))
        })
        .map(|c| c.name().to_string())
        .collect()
}

/// Whether two columns hold the very same arrays (not equal values: equal
/// floats can differ in their bits, as 0.0 and -0.0 do).
fn same_data(a: Option<&Series>, b: Option<&Series>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return false;
    };
    a.dtype() == b.dtype()
        && a.len() == b.len()
        && a.chunks().len() == b.chunks().len()
        && a.chunks()
            .iter()
            .zip(b.chunks())
            .all(|(x, y)| same_array(x.as_ref(), y.as_ref()))
}

/// Whether two arrays are views of the same buffers over the same range.
fn same_array(a: &dyn Array, b: &dyn Array) -> bool {
    if a.len() != b.len() || a.dtype() != b.dtype() {
        return false;
    }
    let (a, b) = (a.as_any(), b.as_any());
    macro_rules! primitive {
        ($($t:ty),*) => {
            $(
                if let (Some(x), Some(y)) = (
                    a.downcast_ref::<PrimitiveArray<$t>>(),
                    b.downcast_ref::<PrimitiveArray<$t>>(),
                ) {
                    return same_slice(x.values(), y.values())
                        && same_validity(x.validity(), y.validity());
                }
            )*
        };
    }
    primitive!(i8, i16, i32, i64, i128, u8, u16, u32, u64, f32, f64);
    if let (Some(x), Some(y)) = (
        a.downcast_ref::<BooleanArray>(),
        b.downcast_ref::<BooleanArray>(),
    ) {
        return same_bitmap(x.values(), y.values()) && same_validity(x.validity(), y.validity());
    }
    macro_rules! view {
        ($($t:ty),*) => {
            $(
                if let (Some(x), Some(y)) = (a.downcast_ref::<$t>(), b.downcast_ref::<$t>()) {
                    return same_slice(x.views(), y.views())
                        && same_slice(x.data_buffers(), y.data_buffers())
                        && same_validity(x.validity(), y.validity());
                }
            )*
        };
    }
    view!(Utf8ViewArray, BinaryViewArray);
    // Every value null: the length says it all.
    a.downcast_ref::<NullArray>().is_some() && b.downcast_ref::<NullArray>().is_some()
}

fn same_slice<T>(a: &[T], b: &[T]) -> bool {
    std::ptr::eq(a, b)
}

fn same_bitmap(a: &Bitmap, b: &Bitmap) -> bool {
    let (x, xo, xl) = a.as_slice();
    let (y, yo, yl) = b.as_slice();
    std::ptr::eq(x, y) && xo == yo && xl == yl
}

fn same_validity(a: Option<&Bitmap>, b: Option<&Bitmap>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_bitmap(a, b),
        _ => false,
    }
}

/// The cache's compression: LZ4 (a third of the disk and steadier run times
/// than none, whose writes stall on page-cache writeback), or what
/// `MLP_CACHE_COMPRESSION=none|lz4|zstd` says.
fn compression() -> Option<IpcCompression> {
    match std::env::var("MLP_CACHE_COMPRESSION").as_deref() {
        Ok("none") => None,
        Ok("zstd") => Some(IpcCompression::ZSTD(Default::default())),
        _ => Some(IpcCompression::LZ4),
    }
}

/// Rows per record batch of a cached frame: batches are compressed on
/// every core, and the writer holds a few batches, not the whole frame.
const BATCH_ROWS: usize = 1 << 17;

/// Writes a frame as Arrow IPC; returns its size and checksum.
pub(crate) fn write_frame(path: &Path, df: &mut DataFrame) -> Result<(u64, String), ExecError> {
    let f = std::fs::File::create(path)
        .map_err(|e| ExecError::Internal(format!("{}: {e}", path.display())))?;
    let mut w = mlp_store::store::SummingWriter::new(std::io::BufWriter::new(f));
    // Not synced: an entry is renamed into place whole, and the sizes and
    // checksums in its entry.json catch data a power failure lost.
    write_batches(&mut w, df)?;
    let (buf, size, sum) = w.finish();
    buf.into_inner()
        .map_err(|e| ExecError::Internal(e.to_string()))?;
    Ok((size, sum))
}

/// The frame as an Arrow IPC file of record batches of [`BATCH_ROWS`]
/// rows (the last one shorter), so the file's bytes depend only on the
/// data, whatever the frame's chunks. The batches are encoded (and
/// compressed) a wave at a time on every core and written in order.
fn write_batches<W: std::io::Write>(w: &mut W, df: &mut DataFrame) -> Result<(), ExecError> {
    use polars_arrow::datatypes::ArrowDataType;
    use polars_arrow::io::ipc::write::{
        encode_record_batch, EncodedData, FileWriter, WriteOptions,
    };
    use rayon::prelude::*;
    let compat = CompatLevel::newest();
    let schema = df.schema().to_arrow(compat);
    let dictionaries = schema
        .iter_values()
        .any(|f| matches!(f.dtype().to_storage(), ArrowDataType::Dictionary(..)));
    let n = df.height();
    if dictionaries || n == 0 || df.width() == 0 {
        // polars' writer (dictionaries are written once, before the rows).
        df.rechunk_mut();
        return IpcWriter::new(w)
            .with_compression(compression())
            .finish(df)
            .map_err(ExecError::polars);
    }
    let options = WriteOptions {
        compression: compression().map(Into::into),
    };
    let mut writer =
        FileWriter::try_new(w, Arc::new(schema), None, options).map_err(ExecError::polars)?;
    let starts: Vec<usize> = (0..n).step_by(BATCH_ROWS).collect();
    let df = &*df;
    for wave in starts.chunks(rayon::current_num_threads().max(1)) {
        let encoded: Vec<Result<EncodedData, ExecError>> = wave
            .par_iter()
            .map(|&start| {
                let mut part = df.slice(start as i64, BATCH_ROWS.min(n - start));
                part.rechunk_mut();
                let batch = part.iter_chunks(compat, false).next().ok_or_else(|| {
                    ExecError::Internal("a slice of a frame without a batch".into())
                })?;
                let mut message = EncodedData::default();
                encode_record_batch(&batch, &options, &mut message);
                Ok(message)
            })
            .collect();
        for message in encoded {
            writer
                .write_encoded(&[], &message?)
                .map_err(ExecError::polars)?;
        }
    }
    writer.finish().map_err(ExecError::polars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> DataFrame {
        df!(
            "x" => [1.0f64, -0.0, 2.5],
            "n" => [Some(1i64), None, Some(3)],
            "s" => ["a", "bb", "a string longer than twelve bytes"],
            "b" => [true, false, true],
        )
        .unwrap()
    }

    #[test]
    fn a_column_is_inherited_only_when_it_is_the_same_data() {
        let input = frame();
        let mut out = input.clone();
        out.with_column(Column::new("y".into(), [1i32, 2, 3]))
            .unwrap();
        // Equal values, other buffers: not inherited.
        out.with_column(Column::new("x".into(), [1.0f64, -0.0, 2.5]))
            .unwrap();
        let cols = inherited_columns(&out, &input);
        assert_eq!(cols, ["n", "s", "b"]);
        // A slice of the same buffers is other data.
        let head = input.head(Some(2));
        let input_head = input.slice(0, 2);
        assert_eq!(inherited_columns(&head, &input_head).len(), 4);
        assert!(inherited_columns(&input.slice(1, 2), &input.slice(0, 2)).is_empty());
        // A cast keeps no buffer of the input's.
        let cast = input
            .clone()
            .lazy()
            .with_column(col("n").cast(DataType::Float64))
            .collect()
            .unwrap();
        assert!(!inherited_columns(&cast, &input).contains(&"n".to_string()));
    }

    #[test]
    fn a_frame_written_on_a_base_reads_back_whole_and_in_order() {
        let dir = std::env::temp_dir().join(format!("mlp-stored-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let input = frame();
        let mut p = store.begin("base").unwrap();
        write_output(&store, &mut p, input.clone(), &[]).unwrap();
        store.commit(p, "base", "source.s", Some(3), 0.0).unwrap();
        // A stage that reorders, adds a column and replaces one.
        let mut out = input.select(["s", "x", "b", "n"]).unwrap();
        out.with_column(Column::new("x".into(), [0.0f64, 0.0, 1.0]))
            .unwrap();
        out.with_column(Column::new("p".into(), ["train", "test", "train"]))
            .unwrap();
        let mut p = store.begin("next").unwrap();
        write_output(
            &store,
            &mut p,
            out.clone(),
            &[("base".into(), input.clone())],
        )
        .unwrap();
        let meta = store.commit(p, "next", "split.s", Some(3), 0.0).unwrap();
        let base = meta.base.clone().unwrap();
        assert_eq!(base.key, "base");
        assert_eq!(base.inherited, ["s", "b", "n"]);
        assert!(read_output(&store, "next").unwrap().equals_missing(&out));
        let own = read_file(&store, "next", FRAME, None).unwrap();
        assert_eq!(own.get_column_names(), ["x", "p"]);
        // Only its own columns, or only inherited ones.
        let some = read_columns(&store, "next", Some(&["p".into(), "x".into()]), 0).unwrap();
        assert!(some.equals_missing(&out.select(["p", "x"]).unwrap()));
        let some = read_columns(&store, "next", Some(&["n".into()]), 0).unwrap();
        assert!(some.equals_missing(&out.select(["n"]).unwrap()));
        // A stage passing every column through writes no frame file.
        let mut p = store.begin("same").unwrap();
        write_output(&store, &mut p, out.clone(), &[("next".into(), out.clone())]).unwrap();
        let meta = store.commit(p, "same", "check.c", Some(3), 0.0).unwrap();
        assert!(meta.has_frame() && !meta.files.iter().any(|f| f == FRAME));
        assert!(read_output(&store, "same").unwrap().equals_missing(&out));
        assert_eq!(store.chain_depth("same"), 2);
        // A long chain starts again with a whole frame.
        let mut last = "same".to_string();
        let mut whole = 0;
        for k in 0..CHAIN {
            let key = format!("link{k}");
            let mut p = store.begin(&key).unwrap();
            write_output(&store, &mut p, out.clone(), &[(last.clone(), out.clone())]).unwrap();
            let meta = store.commit(p, &key, "check.c", Some(3), 0.0).unwrap();
            assert!(store.chain_depth(&key) <= CHAIN);
            if meta.base.is_none() {
                whole += 1;
                assert!(meta.files.iter().any(|f| f == FRAME));
            }
            assert!(read_output(&store, &key).unwrap().equals_missing(&out));
            last = key;
        }
        assert_eq!(
            whole, 1,
            "one whole frame in {CHAIN} links after a chain of 2"
        );
        // Without its base an entry is not in the cache.
        std::fs::remove_dir_all(store.entry_dir("base")).unwrap();
        assert!(store.lookup("next").is_none());
        assert!(store.lookup("same").is_none());
        assert!(read_output(&store, "same").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
