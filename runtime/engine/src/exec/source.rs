//! `source`: read CSV, Parquet or NDJSON files and hold them to the declared
//! schema. A declared column missing from a file, a value that does not parse
//! as its type, or a null in a column declared without `?` stops the run
//! naming the file, the row and the column.

use super::expr::{dtype, Kind};
use super::{Context, ExecError, Output};
use mlp_compiler::plan::{Literal, SourceColumn, SourceFormat, SourceOp};
use mlp_compiler::types::Type;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// The files a source reads: its path or glob's files, the mirrored copies
/// of a remote path's objects (`remote.rs`), or, for a database that is not
/// a file (`postgres`), its rows fetched into one now.
pub fn files_of(root: &Path, op: &SourceOp, source: &str) -> Result<Vec<PathBuf>, ExecError> {
    match op.format {
        SourceFormat::Postgres => Ok(vec![super::postgres::fetch(op, root, source)?]),
        SourceFormat::Csv | SourceFormat::Parquet | SourceFormat::Json
            if super::remote::is_remote(&op.path) =>
        {
            super::remote::fetch(op, root, source)
        }
        SourceFormat::Csv | SourceFormat::Parquet | SourceFormat::Json | SourceFormat::Sqlite => {
            resolve(root, &op.path)
        }
    }
}

/// The files a source reads, in sorted order: the path itself, or every file
/// matching a glob (`data/*.csv`, `data/**/*.parquet`).
pub fn resolve(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, ExecError> {
    let is_glob = pattern.contains(['*', '?', '[', '{']);
    if !is_glob {
        let p = root.join(pattern);
        return if p.is_file() {
            Ok(vec![p])
        } else {
            Err(ExecError::Read {
                file: pattern.to_string(),
                reason: "no such file".into(),
            })
        };
    }
    // Walk from the longest folder prefix without glob characters.
    let parts: Vec<&str> = pattern.split('/').collect();
    let fixed: Vec<&str> = parts
        .iter()
        .take_while(|p| !p.contains(['*', '?', '[', '{']))
        .copied()
        .collect();
    let base = root.join(fixed.join("/"));
    let matcher = globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| ExecError::Read {
            file: pattern.to_string(),
            reason: format!("invalid glob: {e}"),
        })?
        .compile_matcher();
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&base)
        .sort_by_file_name()
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            e.path()
                .strip_prefix(root)
                .map(|rel| matcher.is_match(rel.to_string_lossy().replace('\\', "/")))
                .unwrap_or(false)
        })
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ExecError::NoFiles {
            pattern: pattern.to_string(),
        });
    }
    Ok(files)
}

fn display(root: &Path, p: &Path) -> String {
    if let Some(address) = super::remote::shown(root, p) {
        return address;
    }
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

pub fn run(op: &SourceOp, cx: &Context) -> Result<Output, ExecError> {
    let mut frames = Vec::with_capacity(cx.files.len());
    for (path, stat_before) in &cx.files {
        // A database's rows are named by their table (or query), not by
        // the file they were fetched into.
        let shown = match op.format {
            SourceFormat::Postgres => super::postgres::place(op, &cx.stage.name),
            _ => display(cx.root, path),
        };
        let df = read_file(op, path, &shown, cx.lenient)?;
        // The key was computed from the file as hashed; refuse to store an
        // output computed from a file that changed since.
        match mlp_store::fingerprint::Stat::of(path) {
            Ok(after) if after == *stat_before => {}
            _ => return Err(ExecError::ChangedDuringRun { file: shown }),
        }
        frames.push(df);
    }
    let mut it = frames.into_iter();
    let mut df = it
        .next()
        .ok_or_else(|| ExecError::Internal("a source without files".into()))?;
    for next in it {
        df.vstack_mut(&next).map_err(ExecError::polars)?;
    }
    // One chunk per column (the reader leaves one per piece it parsed),
    // the columns on every core.
    df.rechunk_mut_par();
    let mut notes = vec![];
    if op.format == SourceFormat::Postgres {
        if let Some((seconds, bytes)) = cx
            .files
            .first()
            .and_then(|(p, _)| super::postgres::fetch_timing(p))
        {
            let size = match bytes {
                b if b < 1_000 => format!("{b} bytes"),
                b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
                b => format!("{:.1} MB", b as f64 / 1e6),
            };
            notes.push(format!(
                "fetched while the run was planned: {size} in {seconds:.2}s, decoded as it arrived (not in this stage's seconds)"
            ));
        }
    }
    Ok(Output {
        frame: Some(df),
        notes,
        ..Output::default()
    })
}

/// Finds the first CSV record whose number of fields differs from the
/// header's (or the first row's): the reader would fail on it, or fill the
/// missing fields with nulls and report a misleading value further on.
/// Only called once reading has failed, so it may read the whole file.
fn csv_ragged_row(op: &SourceOp, path: &Path, shown: &str) -> Option<ExecError> {
    let o = CsvOptions::of(op);
    let mut rdr = o.records(path).ok()?;
    let (header, skip) = (o.header, o.skip_rows);
    let mut expected = None;
    let mut rec = csv::ByteRecord::new();
    let mut index = 0usize;
    loop {
        let start = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) | Err(_) => return None,
        }
        index += 1;
        if index <= skip || (rec.len() == 1 && rec[0].is_empty()) {
            continue;
        }
        match expected {
            None => expected = Some(rec.len()),
            Some(n) if rec.len() != n => {
                return Some(ExecError::RaggedRow {
                    file: shown.to_string(),
                    line: start,
                    found: rec.len(),
                    expected: n,
                    reference: if header {
                        "the header"
                    } else {
                        "the first row"
                    },
                    multiline: rdr.position().line() > start + 1,
                });
            }
            Some(_) => {}
        }
    }
}

/// A header that names a declared column twice: which one to read would be
/// a silent guess (the reader renames the second). Reads the header only.
fn csv_duplicate_header(op: &SourceOp, path: &Path, shown: &str) -> Result<(), ExecError> {
    let o = CsvOptions::of(op);
    if !o.header {
        return Ok(());
    }
    // An unreadable file is the reader's to report.
    let Ok(mut rdr) = o.records(path) else {
        return Ok(());
    };
    let mut rec = csv::ByteRecord::new();
    for _ in 0..=o.skip_rows {
        if !matches!(rdr.read_byte_record(&mut rec), Ok(true)) {
            return Ok(());
        }
    }
    let names: Vec<&[u8]> = rec
        .iter()
        .enumerate()
        .map(|(i, f)| match i {
            0 => f.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(f),
            _ => f,
        })
        .collect();
    for c in &op.columns {
        let name = raw(c).as_bytes();
        let mut at = names.iter().enumerate().filter(|(_, n)| **n == name);
        if let (Some((first, _)), Some((second, _))) = (at.next(), at.next()) {
            return Err(ExecError::DuplicateHeader {
                file: shown.to_string(),
                column: raw(c).to_string(),
                first: first + 1,
                second: second + 1,
            });
        }
    }
    Ok(())
}

/// Finds where a text file stops being UTF-8: a UTF-16 file (by its
/// byte-order mark, or the zero bytes between its characters), or the
/// first invalid sequence with its line. Only called once reading has
/// failed; reads the file in blocks.
pub fn not_utf8(path: &Path, shown: &str) -> Option<ExecError> {
    not_utf8_in_blocks(path, shown, 1 << 20)
}

fn not_utf8_in_blocks(path: &Path, shown: &str, block_len: usize) -> Option<ExecError> {
    use std::io::Read;
    // Never a pipe or a device, which could be read forever.
    mlp_store::fingerprint::regular(path).ok()?;
    let mut f = std::fs::File::open(path).ok()?;
    let mut block = vec![0u8; block_len];
    // Bytes of a sequence cut by the block's end, carried to the next.
    let mut carry: Vec<u8> = vec![];
    let (mut line, mut line_start, mut offset) = (1u64, 0u64, 0u64);
    let error = |line: u64, at: u64, found: String, utf16: bool| ExecError::NotUtf8 {
        file: shown.to_string(),
        line,
        column: at + 1,
        found,
        utf16,
    };
    let mut first = true;
    loop {
        let n = f.read(&mut block).ok()?;
        if first {
            first = false;
            let head = &block[..n];
            if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
                return Some(error(1, 0, "a UTF-16 byte-order mark".into(), true));
            }
            // ASCII text in UTF-16 has a zero byte beside every character.
            let zeros = head.iter().take(4096).filter(|b| **b == 0).count();
            if zeros * 4 > head.len().min(4096) {
                return Some(error(
                    1,
                    0,
                    "zero bytes between the characters".into(),
                    true,
                ));
            }
        }
        if n == 0 {
            // A sequence cut short by the end of the file.
            return (!carry.is_empty()).then(|| {
                let found = format!("byte 0x{:02X} at the end of the file", carry[0]);
                error(line, offset - line_start, found, false)
            });
        }
        let mut bytes = std::mem::take(&mut carry);
        bytes.extend_from_slice(&block[..n]);
        let (valid, bad) = match std::str::from_utf8(&bytes) {
            Ok(_) => (bytes.len(), None),
            Err(e) => (e.valid_up_to(), e.error_len()),
        };
        for (i, b) in bytes[..valid].iter().enumerate() {
            if *b == b'\n' {
                line += 1;
                line_start = offset + i as u64 + 1;
            }
        }
        match bad {
            Some(len) => {
                let found = bytes[valid..valid + len]
                    .iter()
                    .map(|b| format!("byte 0x{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let at = offset + valid as u64 - line_start;
                return Some(error(line, at, found, false));
            }
            None => {
                carry = bytes[valid..].to_vec();
                offset += valid as u64;
            }
        }
    }
}

fn read_error(file: &str, e: impl std::fmt::Display) -> ExecError {
    ExecError::Read {
        file: file.to_string(),
        reason: e.to_string(),
    }
}

/// The name a column has in the file (its `as "Header"`, else its own).
pub(crate) fn raw(c: &SourceColumn) -> &str {
    c.raw_name.as_deref().unwrap_or(&c.name)
}

/// The column in which a lenient read describes the values of a row that
/// broke the schema; the quarantining check sets those rows aside.
pub const PARSE_ERROR: &str = "_parse_error";

/// Beside [`PARSE_ERROR`], what kind of break it is: `unknown_level`,
/// `bad_value` or `null_value` (the first in the row).
pub const PARSE_KIND: &str = "_parse_kind";

/// Reads one file and returns the declared columns with their declared types.
/// `lenient` (the source feeds a quarantining check): rows that break the
/// schema are kept, described in [`PARSE_ERROR`], instead of stopping.
///
/// A CSV file is first read with the declared types (the fast path); if that
/// fails, or breaks the contract, it is read again as text so the error can
/// name the row, the column and the value.
fn read_file(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
) -> Result<DataFrame, ExecError> {
    match op.format {
        SourceFormat::Sqlite => return super::sqlite::read(op, path, shown, lenient),
        // The rows fetched in PostgreSQL's binary COPY format.
        SourceFormat::Postgres => return super::pgcopy::read(op, path, shown, lenient),
        SourceFormat::Csv | SourceFormat::Parquet | SourceFormat::Json => {}
    }
    if op.format == SourceFormat::Csv {
        csv_duplicate_header(op, path, shown)?;
        if let Some(df) = read_csv_typed(op, path, shown) {
            return if lenient { no_problems(df) } else { Ok(df) };
        }
    }
    read_diagnosed(op, path, shown, lenient, None)
}

/// A frame every row of which held to the schema, with a lenient read's
/// problem columns describing none.
pub fn no_problems(mut df: DataFrame) -> Result<DataFrame, ExecError> {
    for name in [PARSE_ERROR, PARSE_KIND] {
        df.with_column(Column::full_null(
            name.into(),
            df.height(),
            &DataType::String,
        ))
        .map_err(ExecError::polars)?;
    }
    Ok(df)
}

/// A `csv(...)` source's options.
struct CsvOptions<'a> {
    header: bool,
    delimiter: Option<u8>,
    quote: Option<u8>,
    skip_rows: usize,
    /// Markers read as null besides the empty field.
    null_values: Vec<&'a str>,
}

impl<'a> CsvOptions<'a> {
    fn of(op: &'a SourceOp) -> Self {
        let text = |k: &str| match op.options.get(k) {
            Some(Literal::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        CsvOptions {
            header: !matches!(op.options.get("header"), Some(Literal::Bool(false))),
            delimiter: text("delimiter").and_then(|d| d.bytes().next()),
            quote: text("quote").and_then(|q| q.bytes().next()),
            skip_rows: match op.options.get("skip_rows") {
                Some(Literal::Int(n)) => *n as usize,
                _ => 0,
            },
            null_values: text("null_values")
                .map(|n| n.split('\u{1f}').collect())
                .unwrap_or_default(),
        }
    }
}

impl CsvOptions<'_> {
    /// The file's records as the options split them, the header among
    /// them, each with however many fields it has (to find what broke).
    fn records(&self, path: &Path) -> csv::Result<csv::Reader<std::fs::File>> {
        let mut b = csv::ReaderBuilder::new();
        b.has_headers(false).flexible(true);
        if let Some(d) = self.delimiter {
            b.delimiter(d);
        }
        if let Some(q) = self.quote {
            b.quote(q);
        }
        b.from_path(path)
    }
}

fn csv_reader(op: &SourceOp, path: &Path, shown: &str) -> Result<LazyCsvReader, ExecError> {
    let pl_path = PlRefPath::try_from_path(path).map_err(|e| read_error(shown, e))?;
    let o = CsvOptions::of(op);
    let mut r = LazyCsvReader::new(pl_path)
        .with_infer_schema_length(Some(0))
        .with_has_header(o.header)
        .with_missing_is_null(true)
        .with_skip_rows(o.skip_rows);
    if let Some(d) = o.delimiter {
        r = r.with_separator(d);
    }
    if o.quote.is_some() {
        r = r.with_quote_char(o.quote);
    }
    let mut nulls: Vec<PlSmallStr> = vec!["".into()];
    nulls.extend(o.null_values.into_iter().map(PlSmallStr::from));
    // One null text (the empty field, most often) is compared to every
    // field as it is, not through a list.
    let nulls = match nulls.len() {
        1 => NullValues::AllColumnsSingle(nulls.swap_remove(0)),
        _ => NullValues::AllColumns(nulls),
    };
    Ok(r.with_null_values(Some(nulls)))
}

/// The fast path: the CSV reader parses numbers and bools itself; dates are
/// parsed from text. `None` when anything does not fit the contract.
fn read_csv_typed(op: &SourceOp, path: &Path, shown: &str) -> Option<DataFrame> {
    if matches!(op.options.get("header"), Some(Literal::Bool(false))) {
        return None;
    }
    let mut overwrite = Schema::default();
    for c in &op.columns {
        let dt = match &c.ty {
            Type::Int => DataType::Int64,
            Type::Float => DataType::Float64,
            Type::Bool => DataType::Boolean,
            _ => DataType::String,
        };
        overwrite.insert(raw(c).into(), dt);
    }
    let lf = csv_reader(op, path, shown)
        .ok()?
        .with_dtype_overwrite(Some(Arc::new(overwrite)))
        .finish()
        .ok()?;
    let exprs: Vec<Expr> = op
        .columns
        .iter()
        .map(|c| {
            let e = col(raw(c));
            match &c.ty {
                Type::Float => parse_expr(e, &DataType::Float64, &c.ty),
                t if checked_on_read(t) => parse_expr(e, &DataType::String, t),
                _ => e,
            }
            .alias(c.name.as_str())
        })
        .collect();
    // Dates that fail to parse, and values outside declared levels, become
    // nulls: count the text's nulls in the same pass (a scalar broadcast
    // beside the columns) and compare.
    let mut all = exprs;
    let mut counted = vec![];
    for c in &op.columns {
        if checked_on_read(&c.ty) {
            let name = format!("__raw_nulls_{}", c.name);
            all.push(col(raw(c)).null_count().alias(name.as_str()));
            counted.push((c.name.clone(), name));
        }
    }
    let mut df = lf.select(all).collect().ok()?;
    for (column, counter) in &counted {
        let before = df.column(counter).ok()?.get(0).ok()?.extract::<u64>()? as usize;
        if df.column(column).ok()?.null_count() != before {
            return None;
        }
    }
    if !counted.is_empty() {
        df = df.drop_many(counted.iter().map(|(_, n)| n.as_str()));
    }
    for c in &op.columns {
        if !c.nullable && df.column(&c.name).ok()?.null_count() > 0 {
            return None;
        }
    }
    Some(df)
}

/// Columns whose values the fast CSV path still has to check: dates
/// (parsed in their format), categories with declared levels, and floats
/// (finite only).
fn checked_on_read(ty: &Type) -> bool {
    matches!(ty, Type::Date { .. } | Type::Datetime { .. } | Type::Float)
        || ty.levels().is_some_and(|l| !l.is_empty())
}

/// The declared level closest to a value: the same letters in another case,
/// else the fewest edits (ties to the first declared).
pub fn nearest_level<'a>(value: &str, levels: &'a [String]) -> &'a str {
    let lower = value.trim().to_lowercase();
    if let Some(l) = levels.iter().find(|l| l.to_lowercase() == lower) {
        return l;
    }
    levels
        .iter()
        .min_by_key(|l| strsim::damerau_levenshtein(&lower, &l.to_lowercase()))
        .map(String::as_str)
        .unwrap_or("")
}

/// The format a file's extension names: `csv` (also without an extension),
/// `parquet`, or `json` (newline-delimited); `None` for any other.
pub fn format_of(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        None | Some("csv") => Some("csv"),
        Some("parquet" | "pq") => Some("parquet"),
        Some("json" | "ndjson" | "jsonl") => Some("json"),
        Some(_) => None,
    }
}

/// The file as a lazy frame in its format (CSV columns as text).
fn scan(op: &SourceOp, path: &Path, shown: &str) -> Result<LazyFrame, ExecError> {
    let pl_path = || PlRefPath::try_from_path(path).map_err(|e| read_error(shown, e));
    match op.format {
        SourceFormat::Csv => csv_reader(op, path, shown)?
            .finish()
            .map_err(|e| read_error(shown, e)),
        SourceFormat::Parquet => LazyFrame::scan_parquet(pl_path()?, ScanArgsParquet::default())
            .map_err(|e| read_error(shown, e)),
        // Read row by row (`sqlite.rs`) or fetched first (`postgres.rs`).
        SourceFormat::Sqlite | SourceFormat::Postgres => Err(read_error(
            shown,
            "a SQLite database is read as a table, not as a file of rows",
        )),
        SourceFormat::Json => match ndjson_prepare(path, shown)? {
            None => LazyJsonLineReader::new(pl_path()?)
                .with_infer_schema_length(None)
                .finish()
                .map_err(|e| read_error(shown, e)),
            // A byte-order mark or blank lines: read a cleaned copy.
            Some(clean) => JsonReader::new(std::io::Cursor::new(clean))
                .with_json_format(JsonFormat::JsonLines)
                .infer_schema_len(None)
                .finish()
                .map(DataFrame::lazy)
                .map_err(|e| read_error(shown, e)),
        },
    }
}

/// The column names a file holds (`None` without a header row, where
/// columns are matched by position).
pub fn file_columns(
    op: &SourceOp,
    path: &Path,
    shown: &str,
) -> Result<Option<Vec<String>>, ExecError> {
    if matches!(op.options.get("header"), Some(Literal::Bool(false))) {
        return Ok(None);
    }
    let schema = scan(op, path, shown)?
        .collect_schema()
        .map_err(|e| read_error(shown, e))?;
    Ok(Some(schema.iter_names().map(|n| n.to_string()).collect()))
}

/// The deepest nesting of arrays and objects an NDJSON value may have
/// (deeper ones would exhaust a reader's stack).
pub const MAX_JSON_DEPTH: usize = 64;

/// Checks an NDJSON file before polars reads it: a value nested deeper than
/// [`MAX_JSON_DEPTH`] is an error naming its line and column. Returns a
/// cleaned copy when the file has a byte-order mark or blank lines (which
/// the reader refuses and CSV accepts), `None` when it reads as it is.
fn ndjson_prepare(path: &Path, shown: &str) -> Result<Option<Vec<u8>>, ExecError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| read_error(shown, e))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut buf = vec![0u8; 1 << 20];
    let (mut line, mut column, mut depth) = (1usize, 0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    let mut line_has_text = false;
    let (mut bom, mut blank) = (false, false);
    let mut first = true;
    loop {
        let n = r.read(&mut buf).map_err(|e| read_error(shown, e))?;
        if n == 0 {
            break;
        }
        let mut chunk = &buf[..n];
        if first {
            first = false;
            if let Some(rest) = chunk.strip_prefix(b"\xEF\xBB\xBF") {
                bom = true;
                chunk = rest;
            }
        }
        for &b in chunk {
            column += 1;
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'\n' => {
                    blank |= !line_has_text;
                    line += 1;
                    column = 0;
                    line_has_text = false;
                    depth = 0;
                }
                b'"' => {
                    in_string = true;
                    line_has_text = true;
                }
                b'{' | b'[' => {
                    depth += 1;
                    line_has_text = true;
                    if depth > MAX_JSON_DEPTH {
                        return Err(ExecError::Data(format!(
                            "{shown}, line {line}, column {column}: a value nested more than {MAX_JSON_DEPTH} levels deep; flatten it, or leave the key out of the file"
                        )));
                    }
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    line_has_text = true;
                }
                b' ' | b'\t' | b'\r' => {}
                _ => line_has_text = true,
            }
        }
    }
    if !(bom || blank) {
        return Ok(None);
    }
    let text = std::fs::read(path).map_err(|e| read_error(shown, e))?;
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&text);
    let mut clean = Vec::with_capacity(text.len());
    for l in text.split(|b| *b == b'\n') {
        if l.iter().any(|b| !b.is_ascii_whitespace()) {
            clean.extend_from_slice(l);
            clean.push(b'\n');
        }
    }
    Ok(Some(clean))
}

/// Why an NDJSON file did not read, found line by line: a line that is not
/// JSON (with its column), a line that is not an object, or a key whose
/// values change kind (a string where earlier lines have numbers).
fn ndjson_problem(path: &Path, shown: &str) -> Option<ExecError> {
    use std::io::BufRead;
    let f = std::fs::File::open(path).ok()?;
    let mut kinds: std::collections::BTreeMap<String, (&'static str, usize)> = Default::default();
    let kind = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::Bool(_) => Some("a bool"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::String(_) => Some("a string"),
        serde_json::Value::Array(_) => Some("a list"),
        serde_json::Value::Object(_) => Some("an object"),
    };
    for (i, l) in std::io::BufReader::new(f).lines().enumerate() {
        let l = l.ok()?;
        let l = if i == 0 {
            l.strip_prefix('\u{feff}').unwrap_or(&l).to_string()
        } else {
            l
        };
        if l.trim().is_empty() {
            continue;
        }
        let at = |reason: String| {
            Some(ExecError::Data(format!(
                "{shown}, line {}: {reason}",
                i + 1
            )))
        };
        let v: serde_json::Value = match serde_json::from_str(&l) {
            Ok(v) => v,
            Err(e) => {
                let why = e.to_string();
                let why = why.split(" at line ").next().unwrap_or(&why).to_string();
                return at(format!("column {}: not JSON: {why}", e.column()));
            }
        };
        let serde_json::Value::Object(o) = v else {
            return at("not a JSON object (one object per line, keys as columns)".into());
        };
        for (k, v) in &o {
            let Some(now) = kind(v) else { continue };
            match kinds.get(k) {
                Some((before, first)) if *before != now => {
                    return at(format!(
                        "key `{k}` is {now} where line {first} has {before}"
                    ));
                }
                Some(_) => {}
                None => {
                    kinds.insert(k.clone(), (now, i + 1));
                }
            }
        }
    }
    None
}

/// The columns of a request file that `op` does not read, as the file holds
/// them (CSV as text), with `_row` (from 1) to join them back on. `None` when
/// there are none.
pub fn read_other_columns(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    taken: &[String],
    rows: Option<(usize, usize)>,
) -> Result<Option<DataFrame>, ExecError> {
    if matches!(op.options.get("header"), Some(Literal::Bool(false))) {
        return Ok(None);
    }
    let mut lf = scan(op, path, shown)?;
    let schema = lf.collect_schema().map_err(|e| read_error(shown, e))?;
    let read: Vec<&str> = op.columns.iter().map(raw).collect();
    let others: Vec<Expr> = schema
        .iter_names()
        .filter(|n| !read.contains(&n.as_str()) && !taken.iter().any(|t| t == n.as_str()))
        .map(|n| col(n.clone()))
        .collect();
    if others.is_empty() {
        return Ok(None);
    }
    let mut lf = lf.select(others);
    let first = match rows {
        Some((offset, len)) => {
            lf = lf.slice(offset as i64, len as IdxSize);
            offset + 1
        }
        None => 1,
    };
    lf.with_row_index(mlp_compiler::plan::names::ROW, Some(first as IdxSize))
        .collect()
        .map(Some)
        .map_err(|e| read_error(shown, e))
}

/// Reads a prediction request: leniently, so rows that break the schema
/// are described in [`PARSE_ERROR`] rather than stopping the batch.
pub fn read_request(op: &SourceOp, path: &Path, shown: &str) -> Result<DataFrame, ExecError> {
    read_checked(op, path, shown, true, None)
}

/// As [`read_request`], for `len` rows from row `offset` (0-based) of the
/// file: a batch of a request too large to hold at once. Rows are named as
/// in the file.
pub fn read_request_rows(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    offset: usize,
    len: usize,
) -> Result<DataFrame, ExecError> {
    read_checked(op, path, shown, true, Some((offset, len)))
}

/// The careful path: every column read as text (or as the file's own type),
/// converted, and every failure located.
fn read_checked(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
    rows: Option<(usize, usize)>,
) -> Result<DataFrame, ExecError> {
    if op.format == SourceFormat::Csv {
        csv_duplicate_header(op, path, shown)?;
    }
    read_diagnosed(op, path, shown, lenient, rows)
}

/// [`read_checked`] once a CSV's header is known to name each column once.
fn read_diagnosed(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
    rows: Option<(usize, usize)>,
) -> Result<DataFrame, ExecError> {
    // A CSV failure is often a file in another encoding, or a row with the
    // wrong number of fields: name it.
    read_and_convert(op, path, shown, lenient, rows).map_err(|e| match op.format {
        SourceFormat::Csv => not_utf8(path, shown)
            .or_else(|| csv_ragged_row(op, path, shown))
            .unwrap_or(e),
        SourceFormat::Json => not_utf8(path, shown)
            .or_else(|| {
                matches!(e, ExecError::Read { .. })
                    .then(|| ndjson_problem(path, shown))
                    .flatten()
            })
            .unwrap_or(e),
        SourceFormat::Parquet | SourceFormat::Sqlite | SourceFormat::Postgres => e,
    })
}

fn read_and_convert(
    op: &SourceOp,
    path: &Path,
    shown: &str,
    lenient: bool,
    rows: Option<(usize, usize)>,
) -> Result<DataFrame, ExecError> {
    let mut lf = scan(op, path, shown)?;
    // Without a header row, columns are matched by position.
    if matches!(op.options.get("header"), Some(Literal::Bool(false))) {
        let n = lf.collect_schema().map_err(|e| read_error(shown, e))?.len();
        if n < op.columns.len() {
            return Err(read_error(
                shown,
                format!(
                    "the file has {n} columns but {} are declared (without a header, columns are matched by position)",
                    op.columns.len()
                ),
            ));
        }
        let from: Vec<String> = (1..=op.columns.len())
            .map(|i| format!("column_{i}"))
            .collect();
        let to: Vec<String> = op.columns.iter().map(|c| raw(c).to_string()).collect();
        lf = lf.rename(from, to, true);
    }
    let schema = lf.collect_schema().map_err(|e| read_error(shown, e))?;
    // Every declared column must be in the file.
    for c in &op.columns {
        if schema.get(raw(c)).is_none() {
            return Err(ExecError::MissingColumn {
                file: shown.to_string(),
                column: raw(c).to_string(),
                available: schema.iter_names().map(|n| n.to_string()).collect(),
            });
        }
    }
    // Only the declared columns are read (and only the rows asked for).
    let mut lf = lf.select(op.columns.iter().map(|c| col(raw(c))).collect::<Vec<_>>());
    if let Some((offset, len)) = rows {
        lf = lf.slice(offset as i64, len as IdxSize);
    }
    let raw_df = lf.collect().map_err(|e| read_error(shown, e))?;
    // Text that should be floats is parsed with Rust's correctly rounded
    // parser (as the CSV reader's fast path parses), so a value reads the
    // same on every path: training, quarantine, prediction.
    let mut pre = raw_df.clone();
    let mut from_types: Vec<DataType> = vec![];
    for c in &op.columns {
        let from = schema.get(raw(c)).cloned().unwrap_or(DataType::String);
        if c.ty == Type::Float && from == DataType::String {
            let text = pre.column(raw(c)).map_err(ExecError::polars)?.clone();
            let parsed: Float64Chunked = text
                .str()
                .map_err(ExecError::polars)?
                .iter()
                .map(|v| v.and_then(|t| t.trim().parse::<f64>().ok()))
                .collect();
            pre.with_column(parsed.into_series().with_name(raw(c).into()).into_column())
                .map_err(ExecError::polars)?;
            from_types.push(DataType::Float64);
        } else {
            from_types.push(from);
        }
    }
    let exprs: Vec<Expr> = op
        .columns
        .iter()
        .zip(&from_types)
        .map(|(c, from)| parse_expr(col(raw(c)), from, &c.ty).alias(c.name.as_str()))
        .collect();
    let typed = pre
        .lazy()
        .select(exprs)
        .collect()
        .map_err(|e| read_error(shown, e))?;
    if lenient {
        return describe_errors(op, raw_df, typed, shown, rows.map_or(0, |r| r.0));
    }
    // Values that did not parse became nulls: find the first of each column.
    for c in &op.columns {
        let before = raw_df.column(raw(c)).map_err(ExecError::polars)?;
        let after = typed.column(&c.name).map_err(ExecError::polars)?;
        if after.null_count() > before.null_count() {
            let (row, value) = first_new_null(before, after);
            if let Some(levels) = c.ty.levels() {
                let found = value.trim_matches('"').to_string();
                return Err(ExecError::UnknownLevel {
                    file: shown.to_string(),
                    row,
                    column: raw(c).to_string(),
                    nearest: nearest_level(&found, levels).to_string(),
                    found,
                    levels: levels.into(),
                });
            }
            return Err(ExecError::BadValue {
                file: shown.to_string(),
                row,
                column: raw(c).to_string(),
                found: value,
                expected: match &c.ty {
                    Type::Date { format } | Type::Datetime { format } => {
                        format!("{} in the format \"{format}\"", c.ty)
                    }
                    Type::Float => "float (a finite number; a missing value is empty, in a column declared `float?`)".into(),
                    t => t.to_string(),
                },
            });
        }
        if !c.nullable && after.null_count() > 0 {
            let row = first_null(after);
            return Err(ExecError::UnexpectedNull {
                file: shown.to_string(),
                row,
                column: raw(c).to_string(),
            });
        }
    }
    Ok(typed)
}

/// Adds [`PARSE_ERROR`]: for each row, the values that did not parse and the
/// nulls in columns declared without `?` (null when the row is whole).
fn describe_errors(
    op: &SourceOp,
    raw_df: DataFrame,
    typed: DataFrame,
    shown: &str,
    row_offset: usize,
) -> Result<DataFrame, ExecError> {
    let mut joined = typed;
    let mut problems = vec![];
    let mut kinds = vec![];
    for (i, c) in op.columns.iter().enumerate() {
        let raw_name = format!("__raw{i}");
        let raw_col = raw_df
            .column(raw(c))
            .map_err(ExecError::polars)?
            .clone()
            .cast(&DataType::String)
            .map_err(ExecError::polars)?
            .with_name(raw_name.as_str().into());
        joined.with_column(raw_col).map_err(ExecError::polars)?;
        let parsed = col(c.name.as_str());
        let rawe = col(raw_name.as_str());
        let bad_value = rawe.clone().is_not_null().and(parsed.clone().is_null());
        let (what, kind) = match c.ty.levels() {
            Some(levels) => (
                format!(
                    "\" is not one of the declared levels {}",
                    levels
                        .iter()
                        .map(|l| format!("\"{l}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "unknown_level",
            ),
            None => (format!("\" is not a valid {}", c.ty), "bad_value"),
        };
        let none = || lit(NULL).cast(DataType::String);
        // Long values are cut short in the description.
        let shown_value = when(rawe.clone().str().len_chars().gt(lit(200u32)))
            .then(concat_str(
                [rawe.clone().str().slice(lit(0), lit(200)), lit("…")],
                "",
                false,
            ))
            .otherwise(rawe);
        let mut e = when(bad_value.clone())
            .then(concat_str(
                [
                    lit(format!("column `{}`: \"", raw(c))),
                    shown_value,
                    lit(what),
                ],
                "",
                false,
            ))
            .otherwise(none());
        let mut k = when(bad_value).then(lit(kind)).otherwise(none());
        if !c.nullable {
            let null = parsed.is_null().and(col(raw_name.as_str()).is_null());
            e = when(null.clone())
                .then(lit(format!(
                    "column `{}`: null in a column declared without `?`",
                    raw(c)
                )))
                .otherwise(e);
            k = when(null).then(lit("null_value")).otherwise(k);
        }
        problems.push(e);
        kinds.push(k);
    }
    let n = op.columns.len();
    let desc = concat_str(problems, "; ", true);
    let out = joined
        .lazy()
        .with_row_index("__row", Some((row_offset + 1) as IdxSize))
        .with_column(
            when(desc.clone().str().len_chars().gt(lit(0)))
                .then(concat_str(
                    [
                        lit(format!("{shown}, row ")),
                        col("__row").cast(DataType::String),
                        lit(": "),
                        desc,
                    ],
                    "",
                    false,
                ))
                .otherwise(lit(NULL).cast(DataType::String))
                .alias(PARSE_ERROR),
        )
        .with_column(coalesce(&kinds).alias(PARSE_KIND))
        .drop(by_name(
            (0..n)
                .map(|i| format!("__raw{i}"))
                .chain(["__row".to_string()]),
            true,
            false,
        ))
        .collect()
        .map_err(ExecError::polars)?;
    Ok(out)
}

/// 1-based row of the first value that was present before and null after.
fn first_new_null(before: &Column, after: &Column) -> (usize, String) {
    let b = before.is_null();
    let a = after.is_null();
    for i in 0..after.len() {
        if a.get(i) == Some(true) && b.get(i) == Some(false) {
            // A value is shown in a message, cut short if it is long.
            let v = before.get(i).map(|v| v.to_string()).unwrap_or_default();
            return (i + 1, super::truncate(&v, 200));
        }
    }
    (0, String::new())
}

fn first_null(c: &Column) -> usize {
    let n = c.is_null();
    (0..c.len())
        .find(|i| n.get(*i) == Some(true))
        .map(|i| i + 1)
        .unwrap_or(0)
}

/// Converts a raw column to its declared type; a value that does not convert
/// becomes null (and is reported by the caller).
pub fn parse_expr(e: Expr, from: &DataType, to: &Type) -> Expr {
    let target = dtype(to);
    let text = matches!(from, DataType::String);
    if *to == Type::Float {
        // Only finite numbers are floats: NaN and infinities are not values
        // a column can hold (a missing value is a null, declared with `?`).
        let f = if from.is_float() {
            e
        } else if text {
            e.str().strip_chars(lit(NULL)).cast(DataType::Float64)
        } else {
            e.cast(DataType::Float64)
        };
        return when(f.clone().is_finite())
            .then(f)
            .otherwise(lit(NULL).cast(DataType::Float64));
    }
    if from == &target && to.levels().is_none_or(<[String]>::is_empty) {
        return e;
    }
    match to {
        Type::Int => {
            if text {
                e.str().strip_chars(lit(NULL)).cast(DataType::Int64)
            } else if from.is_float() {
                // A float column read for an int: only whole numbers fit.
                let f = e.clone().cast(DataType::Float64);
                when(f.clone().eq(f.clone().floor()))
                    .then(f.cast(DataType::Int64))
                    .otherwise(lit(NULL).cast(DataType::Int64))
            } else {
                e.cast(DataType::Int64)
            }
        }
        Type::Float => {
            if text {
                e.str().strip_chars(lit(NULL)).cast(DataType::Float64)
            } else {
                e.cast(DataType::Float64)
            }
        }
        Type::Bool => {
            if text {
                let l = e.str().strip_chars(lit(NULL)).str().to_lowercase();
                when(l.clone().eq(lit("true")).or(l.clone().eq(lit("1"))))
                    .then(lit(true))
                    .when(l.clone().eq(lit("false")).or(l.eq(lit("0"))))
                    .then(lit(false))
                    .otherwise(lit(NULL).cast(DataType::Boolean))
            } else {
                e.cast(DataType::Boolean)
            }
        }
        Type::Category {
            levels: Some(levels),
        } if !levels.is_empty() => {
            // Declared levels are a contract: any other value is "not
            // parsed" (null), which the callers report or set aside.
            let s = e.cast(DataType::String);
            let declared = Series::new("levels".into(), levels.as_slice());
            when(s.clone().is_in(lit(declared).implode(true), false))
                .then(s)
                .otherwise(lit(NULL).cast(DataType::String))
        }
        Type::Str | Type::Category { .. } => e.cast(DataType::String),
        Type::Date { format } | Type::Datetime { format } => {
            if !text {
                return e.cast(target);
            }
            // Without polars' cache of converted values: looking each
            // value up costs more than parsing it (a million dates of a
            // few years: the source stage 0.46 s to 0.43 s).
            let opts = StrptimeOptions {
                format: Some(format.as_str().into()),
                strict: false,
                exact: true,
                cache: false,
            };
            match Kind::of(to) {
                Kind::Date(_) => e.str().to_date(opts),
                _ => e
                    .str()
                    .to_datetime(Some(TimeUnit::Microseconds), None, opts, lit("raise")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn utf16_and_a_sequence_cut_by_the_end_are_named() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let text: Vec<u8> = "a,b\n1,2\n"
            .encode_utf16()
            .flat_map(|u| u.to_le_bytes())
            .collect();
        std::io::Write::write_all(&mut f, &text).unwrap();
        assert!(matches!(
            not_utf8(f.path(), "t.csv"),
            Some(ExecError::NotUtf8 { utf16: true, .. })
        ));
        let mut with_bom = vec![0xFF, 0xFE];
        with_bom.extend_from_slice(&text);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, &with_bom).unwrap();
        let e = not_utf8(f.path(), "t.csv").unwrap();
        assert_eq!(
            e.to_string(),
            "t.csv, line 1, byte 1: not UTF-8 text (a UTF-16 byte-order mark)"
        );
        assert!(e.help().unwrap().contains("iconv -f utf-16"));
        let f = ndjson_file("a,b\nx,caf");
        std::io::Write::write_all(&mut f.as_file(), &[0xC3]).unwrap();
        assert_eq!(
            not_utf8(f.path(), "t.csv").unwrap().to_string(),
            "t.csv, line 2, byte 6: not UTF-8 text (byte 0xC3 at the end of the file)"
        );
    }

    fn ndjson_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Wherever a block ends (in a character's bytes, on a line's end),
        /// UTF-8 text passes and the first invalid byte is found with its
        /// line and byte in the line.
        #[test]
        fn the_first_invalid_byte_is_found_across_blocks(
            text in "[a-zé€😀,\n]{0,60}",
            at in 0usize..61,
            block in 1usize..16,
        ) {
            let f = ndjson_file(&text);
            prop_assert!(not_utf8_in_blocks(f.path(), "t.csv", block).is_none());
            // 0xFF (never in UTF-8) before the `at`-th character.
            let cut = text.char_indices().map(|(i, _)| i).nth(at).unwrap_or(text.len());
            let mut bytes = text.as_bytes()[..cut].to_vec();
            bytes.push(0xFF);
            bytes.extend_from_slice(&text.as_bytes()[cut..]);
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, &bytes).unwrap();
            let before = &text[..cut];
            let line = before.matches('\n').count() as u64 + 1;
            let column = (cut - before.rfind('\n').map_or(0, |i| i + 1)) as u64 + 1;
            match not_utf8_in_blocks(f.path(), "t.csv", block) {
                Some(ExecError::NotUtf8 { line: l, column: c, found, utf16: false, .. }) => {
                    prop_assert_eq!((l, c), (line, column));
                    prop_assert_eq!(found, "byte 0xFF");
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }


        /// Any nesting depth, any garbage around it: the pre-read check
        /// answers without overflowing, and refuses exactly the values
        /// nested past the limit, naming their line.
        #[test]
        fn ndjson_nesting_is_measured_safely(depth in 1usize..20_000, open in "[\\[{]", junk in "\\PC{0,40}", line in 1usize..4) {
            let close = if open == "[" { "]" } else { "}" };
            let value = format!("{}{}", open.repeat(depth), close.repeat(depth));
            let mut text = String::new();
            for _ in 1..line {
                text.push_str("{\"a\": 1}\n");
            }
            text.push_str(&format!("{{\"deep\": {value}, \"junk\": {junk:?}}}\n"));
            let f = ndjson_file(&text);
            match ndjson_prepare(f.path(), "f.ndjson") {
                Ok(_) => prop_assert!(depth < MAX_JSON_DEPTH, "{depth} passed"),
                Err(e) => {
                    prop_assert!(depth >= MAX_JSON_DEPTH, "{depth}: {e}");
                    let line_named = format!("f.ndjson, line {line},");
                    prop_assert!(e.to_string().contains(&line_named), "{e}");
                }
            }
            let _ = ndjson_problem(f.path(), "f.ndjson");
        }
    }
}
