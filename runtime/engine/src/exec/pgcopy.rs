//! Decoding PostgreSQL's binary COPY format (`exec/postgres.rs` fetches it)
//! straight into the declared columns, as a stream: the fetch feeds the
//! decoder each piece as it arrives (so the rows are decoded while the
//! server still sends), and a fetched file is decoded the same way.
//!
//! The fetch sends every column in a wire type its declared type reads:
//! `int2`/`int4`/`int8` for an `int`, `float4`/`float8` for a `float` (a
//! field's length says which), `bool`, `text`, `date`, `timestamp`.

use super::rows::{self, Push, Values};
use super::ExecError;
use mlp_compiler::plan::SourceOp;
use mlp_compiler::types::Type;
use mlp_store::fingerprint::Stat;
use polars::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Days and microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const EPOCH_DAYS: i64 = 10_957;
const EPOCH_US: i64 = 946_684_800_000_000;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

fn be16(b: &[u8]) -> i16 {
    i16::from_be_bytes([b[0], b[1]])
}

fn be32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> i64 {
    i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Decodes one value; `Err` with what it holds when it is not a value of the
/// declared type (a NaN, an infinite date, a level not declared).
#[inline]
fn push(values: &mut Values, b: &[u8], ty: &Type) -> Result<(), String> {
    let width = || format!("{} bytes", b.len());
    match values {
        Values::Int(v) => v.push(Some(match b.len() {
            8 => be64(b),
            4 => be32(b) as i64,
            2 => be16(b) as i64,
            _ => return Err(width()),
        })),
        Values::Float(v) => {
            let f = match b.len() {
                8 => f64::from_bits(be64(b) as u64),
                4 => f32::from_bits(be32(b) as u32) as f64,
                _ => return Err(width()),
            };
            if !f.is_finite() {
                return Err(f.to_string());
            }
            v.push(Some(f));
        }
        Values::Bool(v) => match b {
            [x] => v.push(Some(*x != 0)),
            _ => return Err(width()),
        },
        Values::Text(v) => {
            let t = std::str::from_utf8(b).map_err(|_| "text that is not UTF-8".to_string())?;
            if !rows::level_ok(t, ty) {
                return Err(format!("\"{}\"", super::truncate(t, 80)));
            }
            v.append_value(t);
        }
        Values::Date(v) => {
            if b.len() != 4 {
                return Err(width());
            }
            let d = be32(b);
            if d == i32::MAX || d == i32::MIN {
                return Err("an infinite date".into());
            }
            v.push(Some((d as i64 + EPOCH_DAYS) as i32));
        }
        Values::Datetime(v) => {
            if b.len() != 8 {
                return Err(width());
            }
            let t = be64(b);
            if t == i64::MAX || t == i64::MIN {
                return Err("an infinite timestamp".into());
            }
            v.push(Some(t + EPOCH_US));
        }
    }
    Ok(())
}

/// Decodes a COPY stream fed in pieces of any size, holding each value to
/// its column: a null where none is declared, a level not declared or a NaN
/// stops the read naming the row and column (or, when `lenient`, sets the
/// row aside with why, as for a CSV file). After the first such stop, what
/// is fed is ignored.
pub struct Decoder<'a> {
    op: &'a SourceOp,
    shown: String,
    lenient: bool,
    values: Vec<Values>,
    problems: rows::Problems,
    row: usize,
    header_read: bool,
    ended: bool,
    /// The start of a row (or of the header) cut at a piece's end.
    carry: Vec<u8>,
    failed: Option<ExecError>,
}

impl<'a> Decoder<'a> {
    /// A decoder whose columns have room for `rows` rows before they grow
    /// (room not filled costs address space, not memory: growing by doubling
    /// would hold up to three times the result while it copies).
    pub fn new(op: &'a SourceOp, shown: &str, lenient: bool, rows: usize) -> Decoder<'a> {
        Decoder {
            op,
            shown: shown.to_string(),
            lenient,
            values: op
                .columns
                .iter()
                .map(|c| Values::with_capacity(&c.ty, rows.max(1024)))
                .collect(),
            problems: vec![],
            row: 0,
            header_read: false,
            ended: false,
            carry: vec![],
            failed: None,
        }
    }

    fn damaged(&self, why: &str) -> ExecError {
        ExecError::Read {
            file: self.shown.clone(),
            reason: format!("the fetched rows are damaged ({why}); run again to fetch them anew"),
        }
    }

    /// Decodes every row `piece` completes; a row cut at its end waits for
    /// the next piece.
    pub fn feed(&mut self, piece: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        if self.ended {
            if !piece.is_empty() {
                self.failed = Some(self.damaged("bytes after the end of the rows"));
            }
            return;
        }
        if self.carry.is_empty() {
            let used = self.decode(piece);
            self.carry.extend_from_slice(&piece[used..]);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(piece);
            let used = self.decode(&joined);
            joined.drain(..used);
            self.carry = joined;
        }
    }

    /// Decodes the whole rows at the start of `data`; returns the bytes used.
    fn decode(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;
        if !self.header_read {
            // Signature, flags, then the header extension's length and bytes.
            if data.len() < SIGNATURE.len() + 8 {
                return 0;
            }
            if &data[..SIGNATURE.len()] != SIGNATURE {
                self.failed = Some(self.damaged("no COPY signature"));
                return data.len();
            }
            let ext = be32(&data[SIGNATURE.len() + 4..]).max(0) as usize;
            pos = SIGNATURE.len() + 8 + ext;
            if data.len() < pos {
                return 0;
            }
            self.header_read = true;
        }
        let width = self.op.columns.len();
        loop {
            let start = pos;
            if data.len() - pos < 2 {
                return start;
            }
            let count = be16(&data[pos..]);
            if count == -1 {
                self.ended = true;
                return pos + 2;
            }
            if count as usize != width {
                self.failed = Some(self.damaged("a row of another width"));
                return data.len();
            }
            // The whole row first, so a cut row is decoded once, whole.
            let mut end = pos + 2;
            for _ in 0..width {
                if data.len() - end < 4 {
                    return start;
                }
                let len = be32(&data[end..]);
                end += 4;
                if len > 0 {
                    if data.len() - end < len as usize {
                        return start;
                    }
                    end += len as usize;
                }
            }
            self.row(&data[pos + 2..end]);
            if self.failed.is_some() {
                return data.len();
            }
            pos = end;
        }
    }

    /// Decodes one whole row's fields.
    fn row(&mut self, mut fields: &[u8]) {
        self.row += 1;
        let row = self.row;
        let mut problem: Option<(String, &'static str)> = None;
        for (i, c) in self.op.columns.iter().enumerate() {
            let len = be32(fields);
            fields = &fields[4..];
            if len < 0 {
                self.values[i].push_null();
                if !c.nullable {
                    let raw = c.raw_name.as_deref().unwrap_or(&c.name);
                    if !self.lenient {
                        self.failed = Some(ExecError::UnexpectedNull {
                            file: self.shown.clone(),
                            row,
                            column: raw.to_string(),
                        });
                        return;
                    }
                    problem.get_or_insert((
                        format!("column `{raw}`: null in a column declared without `?`"),
                        "null_value",
                    ));
                }
                continue;
            }
            let (field, rest) = fields.split_at(len as usize);
            fields = rest;
            let Err(found) = push(&mut self.values[i], field, &c.ty) else {
                continue;
            };
            self.values[i].push_null();
            let raw = c.raw_name.as_deref().unwrap_or(&c.name).to_string();
            let levels = c.ty.levels().filter(|l| !l.is_empty());
            if !self.lenient {
                self.failed = Some(match levels {
                    Some(levels) => {
                        let found = found.trim_matches('"').to_string();
                        ExecError::UnknownLevel {
                            file: self.shown.clone(),
                            row,
                            column: raw,
                            nearest: super::source::nearest_level(&found, levels).to_string(),
                            found,
                            levels: levels.into(),
                        }
                    }
                    None => ExecError::BadValue {
                        file: self.shown.clone(),
                        row,
                        column: raw,
                        found,
                        expected: c.ty.to_string(),
                    },
                });
                return;
            }
            problem.get_or_insert(match levels {
                Some(_) => (
                    format!("column `{raw}`: {found} is not one of the declared levels"),
                    "unknown_level",
                ),
                None => (
                    format!("column `{raw}`: {found} is not a valid {}", c.ty),
                    "bad_value",
                ),
            });
        }
        if self.lenient {
            let shown = &self.shown;
            self.problems
                .push(problem.map(|(m, k)| (format!("{shown}, row {row}: {m}"), k)));
        }
    }

    /// The frame of the declared columns, once the stream has ended.
    pub fn finish(self) -> Result<DataFrame, ExecError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.ended {
            return Err(self.damaged(if self.header_read {
                "cut short"
            } else {
                "no COPY signature"
            }));
        }
        rows::frame(self.op, self.values, self.lenient.then_some(self.problems))
    }
}

/// Frames decoded while their rows were fetched, by fetched file, with the
/// file's stat when it was written: the source stage takes its frame from
/// here instead of decoding the file again.
static DECODED: Mutex<Vec<(PathBuf, Stat, DataFrame)>> = Mutex::new(Vec::new());

/// Keeps the frame decoded while `path` was fetched, for [`read`].
pub fn hand_over(path: &Path, frame: DataFrame) {
    let Ok(stat) = Stat::of(path) else { return };
    let mut decoded = DECODED.lock().unwrap_or_else(|e| e.into_inner());
    decoded.retain(|(p, _, _)| p != path);
    decoded.push((path.to_path_buf(), stat, frame));
}

/// Drops a frame kept for `path` (its stage is cached: nothing will read it).
pub fn release(path: &Path) {
    DECODED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(p, _, _)| p != path);
}

/// The frame kept for `path`, when the file is still the one it was decoded
/// from.
fn take_decoded(path: &Path) -> Option<DataFrame> {
    let mut decoded = DECODED.lock().unwrap_or_else(|e| e.into_inner());
    let i = decoded.iter().position(|(p, _, _)| p == path)?;
    let (_, stat, frame) = decoded.swap_remove(i);
    (Stat::of(path).ok()? == stat).then_some(frame)
}

/// The declared columns of a fetched file: the frame decoded while it was
/// fetched when there is one, or the file decoded as a stream.
pub fn read(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
) -> Result<DataFrame, ExecError> {
    if let Some(df) = take_decoded(path) {
        // Decoded strictly: every row held to the schema.
        return if lenient {
            super::source::no_problems(df)
        } else {
            Ok(df)
        };
    }
    let fail = |e: std::io::Error| ExecError::Read {
        file: shown.to_string(),
        reason: e.to_string(),
    };
    let mut file = std::fs::File::open(path).map_err(fail)?;
    let mut decoder = Decoder::new(op, shown, lenient, 0);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(fail)?;
        if n == 0 {
            break;
        }
        decoder.feed(&buf[..n]);
    }
    decoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlp_compiler::plan::{SourceColumn, SourceFormat};

    fn op(columns: &[(&str, Type, bool)]) -> SourceOp {
        SourceOp {
            format: SourceFormat::Postgres,
            path: String::new(),
            options: Default::default(),
            columns: columns
                .iter()
                .map(|(n, t, nullable)| SourceColumn {
                    name: n.to_string(),
                    raw_name: None,
                    ty: t.clone(),
                    nullable: *nullable,
                })
                .collect(),
        }
    }

    fn field(out: &mut Vec<u8>, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                out.extend((b.len() as i32).to_be_bytes());
                out.extend(b);
            }
            None => out.extend((-1i32).to_be_bytes()),
        }
    }

    /// A stream of `rows` rows: an int8, a float4 and a nullable text.
    fn stream(rows: i64) -> Vec<u8> {
        let mut s = SIGNATURE.to_vec();
        s.extend(0i32.to_be_bytes());
        s.extend(0i32.to_be_bytes());
        for i in 0..rows {
            s.extend(3i16.to_be_bytes());
            field(&mut s, Some(&i.to_be_bytes()));
            field(&mut s, Some(&(i as f32 / 2.0).to_be_bytes()));
            let text = format!("v{i}");
            field(&mut s, (i % 3 != 0).then_some(text.as_bytes()));
        }
        s.extend((-1i16).to_be_bytes());
        s
    }

    fn columns() -> SourceOp {
        op(&[
            ("a", Type::Int, false),
            ("b", Type::Float, false),
            ("c", Type::Str, true),
        ])
    }

    #[test]
    fn pieces_of_any_size_decode_to_the_same_frame() {
        let s = stream(50);
        let op = columns();
        let mut whole = Decoder::new(&op, "t", false, 0);
        whole.feed(&s);
        let whole = whole.finish().unwrap();
        assert_eq!(whole.height(), 50);
        assert_eq!(whole.column("c").unwrap().null_count(), 17);
        for size in [1, 2, 3, 7, 19, 64] {
            let mut d = Decoder::new(&op, "t", false, 0);
            for piece in s.chunks(size) {
                d.feed(piece);
            }
            assert!(
                d.finish().unwrap().equals_missing(&whole),
                "pieces of {size}"
            );
        }
        assert_eq!(whole.column("b").unwrap().f64().unwrap().get(9), Some(4.5));
    }

    #[test]
    fn a_result_larger_than_its_room_grows() {
        let rows = 5000;
        let s = stream(rows);
        let op = columns();
        for room in [0, 10, 4999, 5000, 100_000] {
            let mut d = Decoder::new(&op, "t", true, room);
            for piece in s.chunks(4096) {
                d.feed(piece);
            }
            let df = d.finish().unwrap();
            assert_eq!(df.height(), rows as usize);
            let a = df.column("a").unwrap().i64().unwrap();
            assert!((0..rows as usize).all(|i| a.get(i) == Some(i as i64)));
            let c = df.column("c").unwrap().str().unwrap();
            assert_eq!(
                c.get(rows as usize - 1),
                Some(format!("v{}", rows - 1).as_str())
            );
        }
    }

    #[test]
    fn a_cut_stream_or_a_trailing_byte_is_damaged() {
        let s = stream(5);
        let op = columns();
        let mut d = Decoder::new(&op, "t", false, 0);
        d.feed(&s[..s.len() - 1]);
        let e = d.finish().unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
        let mut d = Decoder::new(&op, "t", false, 0);
        d.feed(&s);
        d.feed(b"x");
        let e = d.finish().unwrap_err().to_string();
        assert!(e.contains("after the end"), "{e}");
    }

    #[test]
    fn a_null_in_a_required_column_names_the_row_or_is_set_aside() {
        let op = op(&[
            ("a", Type::Int, false),
            ("b", Type::Float, false),
            ("c", Type::Str, false),
        ]);
        let s = stream(5);
        let mut d = Decoder::new(&op, "t", false, 0);
        d.feed(&s);
        match d.finish() {
            Err(ExecError::UnexpectedNull { row, column, .. }) => {
                assert_eq!((row, column.as_str()), (1, "c"))
            }
            other => panic!("{other:?}"),
        }
        let mut d = Decoder::new(&op, "t", true, 0);
        d.feed(&s);
        let df = d.finish().unwrap();
        assert_eq!(df.height(), 5);
        assert_eq!(
            df.column(super::super::source::PARSE_KIND)
                .unwrap()
                .null_count(),
            3
        );
    }
}
