//! `postgres(table = "..." | query = "...", url = env("VAR"))`: a table or
//! a query's result, fetched with `COPY ... TO STDOUT` into
//! `.mlp/fetched/<source>.pgcopy` (binary COPY) before the run plans its
//! keys. The fetched file is then the source's file: its bytes are the key
//! (an unchanged table re-runs nothing), and the source stage decodes it
//! straight into columns (the query casts each value to one wire type per
//! declared type: no text to format or parse).
//!
//! The declared columns are the contract: before fetching, the result's
//! columns and their PostgreSQL types are compared with the declaration (a
//! missing column, or `numeric` declared `int`, stops the run naming the
//! table, the column and both types). The address comes from the
//! environment and is never written anywhere: errors are scrubbed of it.
//! Transient failures (the server refusing or dropping the connection,
//! `57P01`, class `08`) are retried with exponential backoff and jitter,
//! `retries` times (3 by default); others fail at once.

use super::rows::ident;
use super::ExecError;
use mlp_compiler::plan::{Literal, SourceColumn, SourceOp};
use mlp_compiler::types::Type;
use mlp_store::fingerprint::Stat;
use std::path::{Path, PathBuf};

fn option<'a>(op: &'a SourceOp, key: &str) -> Option<&'a str> {
    match op.options.get(key) {
        Some(Literal::Str(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// A table's name quoted, `schema.table` part by part.
pub(crate) fn table_name(name: &str) -> String {
    name.split('.').map(ident).collect::<Vec<_>>().join(".")
}

/// Where a source's rows are fetched to, under the project.
pub fn fetched_path(root: &Path, source: &str) -> PathBuf {
    root.join(".mlp")
        .join("fetched")
        .join(format!("{source}.pgcopy"))
}

/// The address, from the environment (or written, without a secret).
fn address(op: &SourceOp, shown: &str) -> Result<(String, Option<String>), ExecError> {
    if let Some(var) = option(op, "url_env") {
        return match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => Ok((url, Some(var.to_string()))),
            _ => Err(ExecError::Read {
                file: shown.to_string(),
                reason: format!(
                    "the environment variable `{var}` is not set (it holds the database's address, e.g. postgres://user:password@host:5432/db)"
                ),
            }),
        };
    }
    option(op, "url")
        .map(|u| (u.to_string(), None))
        .ok_or_else(|| ExecError::Internal("a postgres source without an address".into()))
}

/// An error's text with the address and its password taken out.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "<the address>");
    if let Some(password) = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(auth, _)| auth.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty())
    {
        out = out.replace(password, "***");
    }
    out
}

/// A failure as the user reads it: the server's message and code, or the
/// client's with its cause; without the address or its password.
pub fn reason(e: &postgres::Error, url: &str) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    };
    scrub(&text, url)
}

/// Whether a failure may pass if tried again: the connection refused,
/// reset or timed out, the server shutting down (`57P01`), a connection
/// exception (class `08`).
fn transient(e: &postgres::Error) -> bool {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code == "57P01" || code == "57P03" || code.starts_with("08");
    }
    e.is_closed()
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some()
        || e.to_string().contains("error connecting")
}

/// What the declared type reads from a PostgreSQL type (`None`: it cannot):
/// the column itself when its binary form is one the decoder reads
/// (`exec/pgcopy.rs`), or a cast to one.
fn select_expr(c: &SourceColumn, pg: &postgres::types::Type, column: &str) -> Option<String> {
    use postgres::types::Type as T;
    let col = ident(column);
    let is = |ts: &[T]| ts.contains(pg);
    let text_like = is(&[T::BPCHAR, T::NAME]) || pg.name() == "citext";
    let enum_like = matches!(pg.kind(), postgres::types::Kind::Enum(_));
    Some(match &c.ty {
        Type::Int if is(&[T::INT2, T::INT4, T::INT8]) => col,
        Type::Float if is(&[T::FLOAT4, T::FLOAT8]) => col,
        Type::Float if is(&[T::INT2, T::INT4, T::INT8, T::NUMERIC]) => format!("{col}::float8"),
        Type::Bool if is(&[T::BOOL]) => col,
        Type::Str | Type::Category { .. } if is(&[T::TEXT, T::VARCHAR]) => col,
        // `char(n)` as text drops its padding; names, enums and UUIDs are
        // sent as text.
        Type::Str | Type::Category { .. } if text_like || enum_like || is(&[T::UUID]) => {
            format!("{col}::text")
        }
        Type::Date { .. } if is(&[T::DATE]) => col,
        Type::Datetime { .. } if is(&[T::TIMESTAMP]) => col,
        Type::Datetime { .. } if is(&[T::TIMESTAMPTZ]) => format!("({col} AT TIME ZONE 'UTC')"),
        _ => return None,
    })
}

/// What this process fetched, by file: the file's stat when it was
/// written, its content hash (taken as the rows arrived, so the planner
/// need not read the file again) and the seconds the fetch took (the source
/// stage says so: its own seconds do not include them).
struct Fetched {
    path: PathBuf,
    stat: Stat,
    sha: String,
    seconds: f64,
}

static FETCHED: std::sync::Mutex<Vec<Fetched>> = std::sync::Mutex::new(Vec::new());

/// This process's record of the fetch that wrote `path`, while the file is
/// unchanged.
fn fetched<T>(path: &Path, read: impl FnOnce(&Fetched) -> T) -> Option<T> {
    let fetched = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    let f = fetched.iter().find(|f| f.path == path)?;
    (Stat::of(path).ok()? == f.stat).then(|| read(f))
}

/// The SHA-256 of a file this process fetched, while it is unchanged.
pub fn known_hash(path: &Path) -> Option<(String, Stat)> {
    fetched(path, |f| (f.sha.clone(), f.stat.clone()))
}

/// The seconds and bytes of the fetch that wrote `path` in this process.
pub fn fetch_timing(path: &Path) -> Option<(f64, u64)> {
    fetched(path, |f| (f.seconds, f.stat.size))
}

fn remember(path: &Path, sha: String, seconds: f64) {
    let Ok(stat) = Stat::of(path) else { return };
    let mut fetched = FETCHED.lock().unwrap_or_else(|e| e.into_inner());
    fetched.retain(|f| f.path != path);
    fetched.push(Fetched {
        path: path.to_path_buf(),
        stat,
        sha,
        seconds,
    });
}

/// How messages name a PostgreSQL source: its table, or its query.
pub fn place(op: &SourceOp, source: &str) -> String {
    match option(op, "table") {
        Some(t) => format!("postgres table `{t}` (source `{source}`)"),
        None => format!("postgres query of source `{source}`"),
    }
}

/// Fetches the source's rows into [`fetched_path`], checking the declared
/// columns first. `retries` transient failures are retried.
pub fn fetch(op: &SourceOp, root: &Path, source: &str) -> Result<PathBuf, ExecError> {
    let (from, place) = match (option(op, "table"), option(op, "query")) {
        (Some(t), _) => (
            table_name(t),
            format!("postgres table `{t}` (source `{source}`)"),
        ),
        (None, Some(q)) => (
            format!("({})", q.trim().trim_end_matches(';')),
            format!("postgres query of source `{source}`"),
        ),
        (None, None) => {
            return Err(ExecError::Internal(
                "a postgres source without a table or a query".into(),
            ))
        }
    };
    let (url, _) = address(op, &place)?;
    let retries = match op.options.get("retries") {
        Some(Literal::Int(n)) => *n as u32,
        _ => 3,
    };
    let fail = |e: postgres::Error| ExecError::Read {
        file: place.clone(),
        reason: reason(&e, &url),
    };
    let mut attempt = 0u32;
    loop {
        let outcome = fetch_once(op, root, source, &from, &place, &url);
        let retry = match &outcome {
            Err(Failure::Postgres(e)) => transient(e),
            Err(Failure::Dropped(_)) => true,
            _ => false,
        };
        if retry && attempt < retries {
            // 200 ms, 400 ms, 800 ms, ... with up to half again of jitter.
            let base = 200u64 << attempt.min(8);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as u64)
                .unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_millis(
                base + nanos % (base / 2 + 1),
            ));
            attempt += 1;
            continue;
        }
        let tries = if attempt > 0 {
            format!(" (after {} attempts)", attempt + 1)
        } else {
            String::new()
        };
        return match outcome {
            Ok(p) => Ok(p),
            Err(Failure::Postgres(e)) => {
                let mut err = fail(e);
                if let ExecError::Read { reason, .. } = &mut err {
                    reason.push_str(&tries);
                }
                Err(err)
            }
            Err(Failure::Dropped(why)) => Err(ExecError::Read {
                file: place.clone(),
                reason: format!("the result stopped arriving: {}{tries}", scrub(&why, &url)),
            }),
            Err(Failure::Other(e)) => Err(e),
        };
    }
}

enum Failure {
    Postgres(postgres::Error),
    /// The connection dropped while the rows arrived.
    Dropped(String),
    Other(ExecError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Postgres(e)
    }
}

fn fetch_once(
    op: &SourceOp,
    root: &Path,
    source: &str,
    from: &str,
    place: &str,
    url: &str,
) -> Result<PathBuf, Failure> {
    // One connection driven on this thread: the rows arrive as a stream of
    // pieces, decoded and hashed on a second thread as they come.
    let started = std::time::Instant::now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(ExecError::Internal(e.to_string())))?;
    let (path, sha) = rt.block_on(fetch_streamed(op, root, source, from, place, url))?;
    remember(&path, sha, started.elapsed().as_secs_f64());
    Ok(path)
}

async fn fetch_streamed(
    op: &SourceOp,
    root: &Path,
    source: &str,
    from: &str,
    place: &str,
    url: &str,
) -> Result<(PathBuf, String), Failure> {
    use futures_util::StreamExt;
    use sha2::Digest;
    use std::io::Write;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    // The result's columns and types, without reading a row.
    let stmt = client
        .prepare(&format!("SELECT * FROM {from} AS t LIMIT 0"))
        .await?;
    let available: Vec<(String, postgres::types::Type)> = stmt
        .columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect();
    let mut select = vec![];
    for c in &op.columns {
        let raw = c.raw_name.clone().unwrap_or_else(|| c.name.clone());
        let Some((_, pg)) = available.iter().find(|(n, _)| *n == raw) else {
            return Err(Failure::Other(ExecError::MissingColumn {
                file: place.to_string(),
                column: raw,
                available: available.iter().map(|(n, _)| n.clone()).collect(),
            }));
        };
        let Some(expr) = select_expr(c, pg, &raw) else {
            return Err(Failure::Other(ExecError::Read {
                file: place.to_string(),
                reason: format!(
                    "column `{raw}` is {} in the database and cannot be read as {}; declare it as the database's type allows, or convert it in a `query` (for example `SELECT {raw}::bigint AS {raw}` or `{raw}::text`)",
                    pg.name(),
                    c.ty
                ),
            }));
        };
        select.push(format!("{expr} AS {}", ident(&c.name)));
    }
    let path = fetched_path(root, source);
    let io = |file: &Path, e: std::io::Error| {
        Failure::Other(ExecError::Read {
            file: file.display().to_string(),
            reason: e.to_string(),
        })
    };
    let dir = path
        .parent()
        .ok_or_else(|| Failure::Other(ExecError::Internal("no folder to fetch into".into())))?;
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let partial = path.with_extension("pgcopy.partial");
    let file = std::fs::File::create(&partial).map_err(|e| io(&partial, e))?;
    let copy = format!(
        "COPY (SELECT {} FROM {from} AS t) TO STDOUT WITH (FORMAT binary)",
        select.join(", ")
    );
    // The planner's estimate of the rows, for the decoder's room.
    let estimate = client
        .simple_query(&format!(
            "EXPLAIN (FORMAT JSON) SELECT {} FROM {from} AS t",
            select.join(", ")
        ))
        .await
        .ok()
        .and_then(|messages| {
            messages.into_iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
        })
        .and_then(|plan| serde_json::from_str::<serde_json::Value>(&plan).ok())
        .and_then(|plan| plan[0]["Plan"]["Plan Rows"].as_f64())
        .unwrap_or(0.0);
    // A quarter more than the estimate, within reason.
    let room = (estimate * 1.25).clamp(0.0, (1u64 << 31) as f64) as usize;
    let stream = client.copy_out(copy.as_str()).await?;
    let mut stream = std::pin::pin!(stream);
    // Pieces of about a mebibyte go to a thread that hashes them, writes
    // them to the file and decodes them; a few wait at most.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let worker = {
        let op = op.clone();
        let place = place.to_string();
        std::thread::spawn(move || -> std::io::Result<(String, Option<polars::prelude::DataFrame>, std::fs::File)> {
            let mut sha = sha2::Sha256::new();
            let mut file = file;
            let mut decoder = super::pgcopy::Decoder::new(&op, &place, false, room);
            for piece in rx {
                sha.update(&piece);
                file.write_all(&piece)?;
                decoder.feed(&piece);
            }
            // A value the schema refuses: the stage decodes the file itself
            // (leniently, or to name the row).
            let frame = decoder.finish().ok();
            Ok((
                mlp_store::fingerprint::hex(&sha.finalize()),
                frame,
                file,
            ))
        })
    };
    let mut piece: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut received: Result<(), Failure> = Ok(());
    while let Some(bytes) = stream.next().await {
        match bytes {
            Ok(bytes) => {
                piece.extend_from_slice(&bytes);
                if piece.len() >= 1 << 20 {
                    let full = std::mem::replace(&mut piece, Vec::with_capacity(1 << 20));
                    if tx.send(full).is_err() {
                        // The worker stopped (it could not write): its error
                        // is below.
                        break;
                    }
                }
            }
            // A connection dropped mid-result.
            Err(e) => {
                received = Err(Failure::Dropped(match std::error::Error::source(&e) {
                    Some(cause) => format!("{e}: {cause}"),
                    None => e.to_string(),
                }));
                break;
            }
        }
    }
    if received.is_ok() && !piece.is_empty() {
        tx.send(piece).ok();
    }
    drop(tx);
    drop(client);
    connection.abort();
    let worked = worker
        .join()
        .map_err(|_| Failure::Other(ExecError::Internal("the fetch's decoder panicked".into())))?;
    received?;
    let (sha, frame, file) = worked.map_err(|e| io(&partial, e))?;
    drop(file);
    std::fs::rename(&partial, &path).map_err(|e| io(&path, e))?;
    match frame {
        Some(frame) => super::pgcopy::hand_over(&path, frame),
        None => super::pgcopy::release(&path),
    }
    Ok((path, sha))
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_lose_the_address_and_its_password() {
        let url = "postgres://shop:hunter2@db:5432/shop";
        let text = format!("cannot connect to {url}: bad password hunter2");
        let s = super::scrub(&text, url);
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<the address>"), "{s}");
    }
}
