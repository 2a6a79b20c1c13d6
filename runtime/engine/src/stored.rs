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
    let codec = compression();
    let options = WriteOptions {
        compression: codec.map(Into::into),
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
                match codec {
                    Some(IpcCompression::LZ4) => encode_lz4(&batch, &mut message)?,
                    _ => encode_record_batch(&batch, &options, &mut message),
                }
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

/// Encodes a batch with each of its buffers LZ4-compressed on its own (the
/// IPC format's per-buffer compression), as frames without the block and
/// content checksums polars-arrow's writer turns on (XXH32 over every byte,
/// twice: a fifth of a run's CPU; the cache sums its files with XXH3). A
/// buffer whose first block LZ4 does not halve (floats of full precision,
/// or of a few decimals, say) is stored as it is, marked by the length -1
/// that Arrow readers take as uncompressed: LZ4 is slowest on such data
/// (a few hundred MB/s, where it packs zeros at GB/s), so compressing it
/// cost as much CPU as the rest for a sixth of the disk.
fn encode_lz4(
    batch: &polars_arrow::record_batch::RecordBatchT<Box<dyn Array>>,
    message: &mut polars_arrow::io::ipc::write::EncodedData,
) -> Result<(), ExecError> {
    use polars_arrow::io::ipc::format::ipc::Buffer;
    use polars_arrow::io::ipc::write::{
        commit_encoded_arrays, encode_array, Compression, WriteOptions,
    };
    let plain = WriteOptions { compression: None };
    let (mut nodes, mut buffers, mut variadic) = (vec![], vec![], vec![]);
    // One array's buffers at a time in `scratch` (reused: a batch's
    // encoding whole would be a fresh allocation as large as the batch,
    // each of its pages faulted in), each compressed into `body`. `body`
    // is reserved for every array stored as it is, at up to 16 bytes a
    // value (a text view) and a validity bit, so it rarely grows (long text
    // may); the pages it does not fill are never touched.
    let mut scratch = vec![];
    let mut body = Vec::with_capacity(
        batch
            .arrays()
            .iter()
            .map(|a| a.len() * 17 + 1024)
            .sum::<usize>(),
    );
    let mut offset = 0;
    let mut packed = vec![];
    for array in batch.arrays() {
        let (first, at) = (buffers.len(), offset);
        scratch.clear();
        encode_array(
            array,
            &plain,
            &mut variadic,
            &mut buffers,
            &mut scratch,
            &mut nodes,
            &mut offset,
        );
        for b in &buffers[first..] {
            let bytes = usize::try_from(b.offset - at)
                .ok()
                .zip(usize::try_from(b.length).ok())
                .and_then(|(at, len)| scratch.get(at..at + len))
                .ok_or_else(|| ExecError::Internal("an encoded buffer outside its array".into()))?;
            let start = body.len();
            lz4_buffer(bytes, &mut body).map_err(|e| {
                ExecError::Internal(format!("compressing a frame for the cache: {e}"))
            })?;
            let length = body.len() - start;
            // Each buffer starts on a 64-byte boundary, as polars-arrow's.
            body.resize(start + length.next_multiple_of(64), 0);
            packed.push(Buffer {
                offset: start as i64,
                length: length as i64,
            });
        }
    }
    message.arrow_data = body;
    let lz4 = WriteOptions {
        compression: Some(Compression::LZ4),
    };
    commit_encoded_arrays(batch.len(), &lz4, variadic, packed, nodes, None, message);
    Ok(())
}

/// Bytes of a buffer's first LZ4 block (the frame's block size), by which
/// [`lz4_buffer`] judges whether the rest is worth compressing.
const PROBE: usize = 64 * 1024;

/// Appends one buffer of a compressed IPC body: its length and an LZ4
/// frame of it, or -1 and its bytes when compressing does not halve it
/// (judged on its first block when it has more than one).
fn lz4_buffer(bytes: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
    use lz4::liblz4::BlockChecksum;
    use lz4::{ContentChecksum, EncoderBuilder};
    use std::io::Write;
    let worth = |packed: usize, plain: usize| packed <= plain / 2;
    let start = out.len();
    let raw = |out: &mut Vec<u8>| {
        out.truncate(start);
        out.extend_from_slice(&(-1i64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    if bytes.is_empty() {
        raw(out);
        return Ok(());
    }
    out.extend_from_slice(&(bytes.len() as i64).to_le_bytes());
    let mut frame = EncoderBuilder::new()
        .checksum(ContentChecksum::NoChecksum)
        .block_checksum(BlockChecksum::NoBlockChecksum)
        .build(&mut *out)?;
    let (head, rest) = bytes.split_at(PROBE.min(bytes.len()));
    frame.write_all(head)?;
    // A whole first block is compressed as it is written.
    if !rest.is_empty() && !worth(frame.writer().len() - start - 8, head.len()) {
        drop(frame);
        raw(out);
        return Ok(());
    }
    frame.write_all(rest)?;
    let (_, end) = frame.finish();
    end?;
    if !worth(out.len() - start - 8, bytes.len()) {
        raw(out);
    }
    Ok(())
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

    /// Full-precision floats in [1, 2), which LZ4 cannot shrink.
    fn noise(n: usize) -> Vec<f64> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                f64::from_bits((state >> 12) | 0x3ff0_0000_0000_0000)
            })
            .collect()
    }

    fn unpacked(buffer: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let (len, frame) = buffer.split_at(8);
        let len = i64::from_le_bytes(len.try_into().unwrap());
        if len == -1 {
            return frame.to_vec();
        }
        let mut out = vec![];
        lz4::Decoder::new(frame)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out.len() as i64, len);
        out
    }

    #[test]
    fn a_buffer_is_compressed_only_when_that_shrinks_it() {
        let floats: Vec<u8> = noise(50_000).iter().flat_map(|v| v.to_le_bytes()).collect();
        let steps: Vec<u8> = (0..50_000i64)
            .flat_map(|i| (i / 100).to_le_bytes())
            .collect();
        // Integers below 2^24: LZ4 shrinks them by about a third, not to
        // half, which is not worth its time.
        let small: Vec<u8> = noise(50_000)
            .iter()
            .flat_map(|v| (v.to_bits() & 0xff_ffff).to_le_bytes())
            .collect();
        let shrunk = lz4::block::compress(&small[..PROBE], None, false).unwrap();
        assert!(
            (PROBE / 2..PROBE * 3 / 4).contains(&shrunk.len()),
            "{}",
            shrunk.len()
        );
        for (bytes, packed) in [
            (&floats[..], false),
            (&floats[..1000], false),
            (&small[..], false),
            (&steps[..], true),
            (&steps[..1000], true),
            (&[][..], false),
        ] {
            let mut out = vec![];
            lz4_buffer(bytes, &mut out).unwrap();
            let len = i64::from_le_bytes(out[..8].try_into().unwrap());
            assert_eq!(len != -1, packed, "{} bytes", bytes.len());
            if packed {
                assert!(out.len() < bytes.len() / 2);
            } else {
                assert_eq!(out.len(), bytes.len() + 8);
            }
            assert_eq!(unpacked(&out), bytes);
        }
    }

    #[test]
    fn a_frame_of_compressed_and_stored_buffers_reads_back_bit_for_bit() {
        // Three batches (the last short): floats stored as they are beside
        // integers with nulls and text that compress.
        let n = 2 * BATCH_ROWS + 1_234;
        let df = df!(
            "noise" => noise(n),
            "steps" => (0..n).map(|i| (i % 7 != 0).then_some(i as i64 / 1000)).collect::<Vec<_>>(),
            "words" => (0..n).map(|i| ["train", "test", "a string longer than twelve bytes"][i % 3]).collect::<Vec<_>>(),
            "flags" => (0..n).map(|i| i % 3 == 0).collect::<Vec<_>>(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FRAME);
        let (size, _) = write_frame(&path, &mut df.clone()).unwrap();
        let back = IpcReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap();
        assert!(back.equals_missing(&df));
        let bits = |d: &DataFrame| -> Vec<u64> {
            d.column("noise")
                .unwrap()
                .f64()
                .unwrap()
                .into_no_null_iter()
                .map(f64::to_bits)
                .collect()
        };
        assert_eq!(bits(&back), bits(&df));
        // The floats whole, the rest a fraction of their size.
        assert!(size as usize > n * 8 && (size as usize) < n * 8 + n * 8 / 2);
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
