//! Remote file sources: `csv`, `parquet` and `json` read from an object
//! store (`s3://`, `gs://`, `az://`, globs listed) or an HTTP server
//! (`https://`), through the `object_store` crate (signed requests,
//! credentials from the standard environment variables, retries with
//! exponential backoff and jitter on connection errors, 5xx, 429 and
//! timeouts, a body dropped mid-transfer resumed by a range request).
//!
//! Each object is mirrored into `.mlp/fetched/<source>/objects/<scheme>/
//! <host>/<key>` when the run (or `mlp plan`) plans its keys, and the mirror
//! is then the source's file: its content hash is the key, as for a local
//! file. What it costs to know an object did not change: one listing (a
//! glob) or one `HEAD` request per object; an object whose ETag (or version
//! id) is the one mirrored is not downloaded again. An HTTP server that
//! sends no ETag is trusted on `Last-Modified` and `Content-Length`; one that
//! sends neither is downloaded on every run and compared by content.
//! `manifest.json` beside the mirror records, per object, the version seen
//! and how the last fetch knew (what `mlp plan` says).

use super::ExecError;
use futures_util::StreamExt;
use mlp_compiler::plan::{Literal, SourceOp};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Whether a source path is a remote address (`scheme://...`).
pub fn is_remote(path: &str) -> bool {
    path.contains("://")
}

/// A remote address split: `scheme://host/key` (the key may be a glob).
#[derive(Debug, Clone)]
struct Address {
    scheme: String,
    host: String,
    key: String,
}

impl Address {
    fn parse(url: &str) -> Result<Address, ExecError> {
        let bad = |why: &str| ExecError::Read {
            file: url.to_string(),
            reason: why.to_string(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("not an address"))?;
        let (host, key) = rest
            .split_once('/')
            .ok_or_else(|| bad("no object key after the bucket or host"))?;
        if host.is_empty() || key.is_empty() {
            return Err(bad("expected scheme://BUCKET-OR-HOST/path/to/file"));
        }
        if key
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad(
                "an object key with an empty, `.` or `..` part cannot be mirrored",
            ));
        }
        Ok(Address {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_string(),
            key: key.to_string(),
        })
    }

    fn url_of(&self, key: &str) -> String {
        format!("{}://{}/{key}", self.scheme, self.host)
    }

    fn is_glob(&self) -> bool {
        self.key.contains(['*', '[', '{'])
    }

    fn is_http(&self) -> bool {
        matches!(self.scheme.as_str(), "http" | "https")
    }
}

/// What the mirror holds of one object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    e_tag: Option<String>,
    version: Option<String>,
    size: u64,
    /// Unix seconds; 0 when the server sent none.
    last_modified: i64,
    /// How the last fetch knew the object (said by `mlp plan`).
    how: String,
    /// Whether the last fetch downloaded it.
    downloaded: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    /// Keyed by the object's address.
    objects: BTreeMap<String, Entry>,
}

fn mirror_dir(root: &Path, source: &str) -> PathBuf {
    root.join(".mlp").join("fetched").join(source)
}

/// The object's address shown for a mirrored file (errors name the object,
/// not the mirror), or `None` for any other file.
pub fn shown(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root.join(".mlp").join("fetched")).ok()?;
    let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
    let _source = parts.next()?;
    if parts.next()? != "objects" {
        return None;
    }
    let scheme = parts.next()?;
    let host = parts.next()?;
    let key: Vec<String> = parts.collect();
    (!key.is_empty()).then(|| format!("{scheme}://{host}/{}", key.join("/")))
}

/// Per object of a remote source, how the last fetch knew it: for `mlp
/// plan` ("ETag unchanged", "downloaded: ETag changed").
pub fn last_fetch(root: &Path, source: &str) -> Vec<(String, String, bool)> {
    let path = mirror_dir(root, source).join("manifest.json");
    let Some(m) = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok())
    else {
        return vec![];
    };
    m.objects
        .into_iter()
        .map(|(url, e)| (url, e.how, e.downloaded))
        .collect()
}

fn option_int(op: &SourceOp, key: &str) -> Option<i64> {
    match op.options.get(key) {
        Some(Literal::Int(n)) => Some(*n),
        _ => None,
    }
}

/// The credentials the environment holds, to scrub from any message.
fn secrets() -> Vec<String> {
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AZURE_STORAGE_ACCOUNT_KEY",
        "AZURE_STORAGE_ACCESS_KEY",
        "AZURE_STORAGE_SAS_KEY",
        "AZURE_CLIENT_SECRET",
        "GOOGLE_SERVICE_ACCOUNT_KEY",
    ]
    .iter()
    .filter_map(|v| std::env::var(v).ok())
    .filter(|s| s.len() >= 4)
    .collect()
}

fn scrub(text: &str) -> String {
    let mut out = text.to_string();
    for s in secrets() {
        out = out.replace(&s, "<secret>");
    }
    out
}

/// Why a request failed, in words a user acts on, and whether retrying
/// could help (it was retried already by the client when it could).
fn reason(e: &object_store::Error, address: &Address, retries: usize) -> String {
    use object_store::Error as E;
    let store = match address.scheme.as_str() {
        "s3" => "the S3 store",
        "gs" => "Google Cloud Storage",
        "http" | "https" => "the server",
        _ => "Azure storage",
    };
    let creds = match address.scheme.as_str() {
        "s3" => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL for an S3-compatible server)",
        "gs" => "GOOGLE_SERVICE_ACCOUNT (a service account key file)",
        "http" | "https" => "the server's access rules",
        _ => "AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY",
    };
    let full = e.to_string();
    // The HTTP status and the store's own code and message, when the client
    // reports them as text (a listing's errors do).
    let status: Option<u16> = full
        .split("status code: ")
        .nth(1)
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok());
    let tag = |name: &str| {
        full.split(&format!("<{name}>"))
            .nth(1)
            .and_then(|r| r.split(&format!("</{name}>")).next())
            .map(str::to_string)
    };
    let server_says = match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => format!(": {c}: {m}"),
        (Some(c), None) => format!(": {c}"),
        _ => String::new(),
    };
    let text = match e {
        _ if matches!(status, Some(401 | 403)) => format!(
            "{store} refused the request ({}{server_says}): check {creds}",
            status.unwrap_or(403)
        ),
        _ if status == Some(404) => format!(
            "{store} has no such {} (404{server_says}): check the address",
            if address.is_http() {
                "file"
            } else {
                "bucket or object"
            }
        ),
        E::NotFound { .. } => format!(
            "{store} has no such object (404): check the {} and the path",
            if address.is_http() { "host" } else { "bucket" }
        ),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            format!("{store} refused the credentials (403/401): check {creds}")
        }
        E::Precondition { .. } => {
            "the object changed while it was being fetched (its ETag moved): run again".into()
        }
        other => {
            // The deepest cause says what happened ("Connection refused").
            let mut s = other.to_string();
            let mut cause = std::error::Error::source(other);
            let mut deepest = None;
            while let Some(c) = cause {
                deepest = Some(c.to_string());
                cause = c.source();
            }
            if let Some(d) = deepest.filter(|d| !s.contains(d.as_str())) {
                s = format!("{s}: {d}");
            }
            if s.contains("retries") || s.contains("retry") {
                format!("{s} (gave up after {retries} retries with backoff; `retries = N` on the source allows more)")
            } else {
                s
            }
        }
    };
    scrub(&text)
}

/// The client for an address: credentials and endpoint from the standard
/// environment variables of its store.
fn open(address: &Address, retries: usize) -> Result<Arc<dyn ObjectStore>, ExecError> {
    let retry = RetryConfig {
        max_retries: retries,
        retry_timeout: Duration::from_secs(120),
        ..RetryConfig::default()
    };
    // `http://` only where the user wrote it (an endpoint or the address).
    let endpoint_http = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .any(|e| e.starts_with("http://"));
    let options = ClientOptions::new()
        .with_allow_http(endpoint_http || address.scheme == "http")
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(300));
    let url = address.url_of("");
    let fail = |e: object_store::Error| ExecError::Read {
        file: url.clone(),
        reason: format!("cannot open the store: {}", scrub(&e.to_string())),
    };
    let store: Arc<dyn ObjectStore> = match address.scheme.as_str() {
        "s3" => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&address.host)
                .with_retry(retry)
                .with_client_options(options);
            // AWS_ENDPOINT_URL is the standard name (the SDKs read it).
            if let Ok(e) = std::env::var("AWS_ENDPOINT_URL") {
                b = b.with_endpoint(e);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_ok() {
                if let Ok(r) = std::env::var("AWS_DEFAULT_REGION") {
                    b = b.with_region(r);
                }
            }
            Arc::new(b.build().map_err(fail)?)
        }
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&address.host)
                .with_retry(retry)
                .with_client_options(options)
                .build()
                .map_err(fail)?,
        ),
        "az" | "abfs" | "abfss" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(format!("{}://{}", address.scheme, address.host))
                .with_retry(retry)
                .with_client_options(options)
                .build()
                .map_err(fail)?,
        ),
        "http" | "https" => Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(format!("{}://{}", address.scheme, address.host))
                .with_retry(retry)
                .with_client_options(options)
                .build()
                .map_err(fail)?,
        ),
        other => {
            return Err(ExecError::Read {
                file: url,
                reason: format!("`{other}://` addresses are not read"),
            })
        }
    };
    Ok(store)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExecError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ExecError::Internal(format!("no async runtime for remote sources: {e}")))
}

/// The objects an address names: the one object, or every object a glob
/// matches (listed from the longest prefix without glob characters), in
/// key order.
async fn objects(
    store: &dyn ObjectStore,
    address: &Address,
    retries: usize,
) -> Result<Vec<ObjectMeta>, ExecError> {
    let url = address.url_of(&address.key);
    let fail = |e: object_store::Error| ExecError::Read {
        file: url.clone(),
        reason: reason(&e, address, retries),
    };
    if !address.is_glob() {
        let location = ObjectPath::parse(&address.key).map_err(|e| ExecError::Read {
            file: url.clone(),
            reason: e.to_string(),
        })?;
        return Ok(vec![store.head(&location).await.map_err(fail)?]);
    }
    let fixed: Vec<&str> = address
        .key
        .split('/')
        .take_while(|p| !p.contains(['*', '[', '{']))
        .collect();
    let prefix = ObjectPath::parse(fixed.join("/")).map_err(|e| ExecError::Read {
        file: url.clone(),
        reason: e.to_string(),
    })?;
    let matcher = globset::GlobBuilder::new(&address.key)
        .literal_separator(true)
        .build()
        .map_err(|e| ExecError::Read {
            file: url.clone(),
            reason: format!("invalid glob: {e}"),
        })?
        .compile_matcher();
    let mut listed = store.list(Some(&prefix));
    let mut out = vec![];
    while let Some(meta) = listed.next().await {
        let meta = meta.map_err(fail)?;
        if matcher.is_match(meta.location.as_ref()) {
            out.push(meta);
        }
    }
    out.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    if out.is_empty() {
        return Err(ExecError::NoFiles { pattern: url });
    }
    Ok(out)
}

/// Whether the mirrored entry is the object now, and how that is known.
fn unchanged(prev: &Entry, meta: &ObjectMeta) -> Option<&'static str> {
    let modified = meta.last_modified.timestamp();
    if let Some(tag) = &meta.e_tag {
        return (prev.e_tag.as_ref() == Some(tag) && prev.version == meta.version)
            .then_some("ETag unchanged");
    }
    if meta.version.is_some() {
        return (prev.version == meta.version).then_some("version unchanged");
    }
    (modified != 0 && prev.last_modified == modified && prev.size == meta.size)
        .then_some("Last-Modified and size unchanged")
}

/// Downloads one object into `local` (through a temporary file beside it,
/// renamed when whole), pinned to the version listed: an object replaced
/// mid-fetch fails rather than mixing two versions.
async fn download(
    store: &dyn ObjectStore,
    meta: &ObjectMeta,
    local: &Path,
    address: &Address,
    retries: usize,
) -> Result<(), ExecError> {
    let url = address.url_of(meta.location.as_ref());
    let io = |e: std::io::Error| ExecError::Read {
        file: url.clone(),
        reason: format!("cannot write the fetched copy: {e}"),
    };
    let dir = local
        .parent()
        .ok_or_else(|| ExecError::Internal("no folder to fetch into".into()))?;
    std::fs::create_dir_all(dir).map_err(io)?;
    let options = object_store::GetOptions {
        if_match: meta.e_tag.clone(),
        version: meta.version.clone(),
        ..Default::default()
    };
    let got = store
        .get_opts(&meta.location, options)
        .await
        .map_err(|e| ExecError::Read {
            file: url.clone(),
            reason: reason(&e, address, retries),
        })?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    let mut stream = got.into_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ExecError::Read {
            file: url.clone(),
            reason: format!(
                "the transfer broke off after {written} of {} bytes: {}",
                meta.size,
                reason(&e, address, retries)
            ),
        })?;
        written += chunk.len() as u64;
        tmp.write_all(&chunk).map_err(io)?;
    }
    if written != meta.size {
        return Err(ExecError::Read {
            file: url,
            reason: format!(
                "received {written} bytes where the server announced {}: the object changed or the transfer was cut; run again",
                meta.size
            ),
        });
    }
    tmp.as_file().sync_all().ok();
    tmp.persist(local).map_err(|e| io(e.error))?;
    Ok(())
}

/// Mirrors a remote source's objects under `.mlp/fetched/<source>/` and
/// returns the mirrored files, in key order. Only objects whose version
/// moved are downloaded; objects no longer matched are removed.
pub fn fetch(op: &SourceOp, root: &Path, source: &str) -> Result<Vec<PathBuf>, ExecError> {
    let address = Address::parse(&op.path)?;
    let retries = option_int(op, "retries").unwrap_or(3).max(0) as usize;
    let dir = mirror_dir(root, source);
    let manifest_path = dir.join("manifest.json");
    let previous: Manifest = std::fs::read(&manifest_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let local_of = |key: &str| {
        let mut p = dir
            .join("objects")
            .join(&address.scheme)
            .join(&address.host);
        for part in key.split('/') {
            p.push(part);
        }
        p
    };
    let rt = runtime()?;
    let (listed, entries) = rt.block_on(async {
        let store = open(&address, retries)?;
        let listed = objects(store.as_ref(), &address, retries).await?;
        // Download what changed, a few objects at a time.
        let work = listed.iter().map(|meta| {
            let store = store.clone();
            let address = address.clone();
            let url = address.url_of(meta.location.as_ref());
            let local = local_of(meta.location.as_ref());
            let prev = previous.objects.get(&url).cloned();
            async move {
                let have = std::fs::metadata(&local).map(|m| m.len()).ok();
                let known = prev
                    .as_ref()
                    .filter(|_| have == Some(meta.size))
                    .and_then(|p| unchanged(p, meta));
                let (how, downloaded) = match known {
                    Some(how) => (how.to_string(), false),
                    None => {
                        download(store.as_ref(), meta, &local, &address, retries).await?;
                        let why = match (&prev, &meta.e_tag) {
                            (None, _) => "first fetch".to_string(),
                            (Some(_), _) if have.is_none() => {
                                "the fetched copy was missing".into()
                            }
                            (Some(p), Some(tag)) => format!(
                                "ETag changed ({} -> {tag})",
                                p.e_tag.as_deref().unwrap_or("none")
                            ),
                            (Some(_), None) if meta.last_modified.timestamp() != 0 => {
                                "Last-Modified or size changed".into()
                            }
                            (Some(_), None) => {
                                "the server sends no ETag or Last-Modified: fetched again, compared by content".into()
                            }
                        };
                        (format!("downloaded: {why}"), true)
                    }
                };
                Ok::<_, ExecError>((
                    url,
                    Entry {
                        e_tag: meta.e_tag.clone(),
                        version: meta.version.clone(),
                        size: meta.size,
                        last_modified: meta.last_modified.timestamp(),
                        how,
                        downloaded,
                    },
                ))
            }
        });
        let entries: Vec<(String, Entry)> = futures_util::stream::iter(work)
            .buffered(4)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok::<_, ExecError>((listed, entries))
    })?;
    // Objects no longer matched leave the mirror.
    for url in previous.objects.keys() {
        if !entries.iter().any(|(u, _)| u == url) {
            if let Some(key) = url.strip_prefix(&address.url_of("")) {
                std::fs::remove_file(local_of(key)).ok();
            }
        }
    }
    let manifest = Manifest {
        objects: entries.into_iter().collect(),
    };
    let bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| ExecError::Internal(format!("manifest: {e}")))?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| ExecError::Read {
        file: manifest_path.display().to_string(),
        reason: e.to_string(),
    })?;
    tmp.write_all(&bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| ExecError::Read {
            file: manifest_path.display().to_string(),
            reason: e.to_string(),
        })?;
    tmp.persist(&manifest_path).map_err(|e| ExecError::Read {
        file: manifest_path.display().to_string(),
        reason: e.error.to_string(),
    })?;
    Ok(listed
        .iter()
        .map(|m| local_of(m.location.as_ref()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrored_files_are_shown_by_their_address() {
        let root = Path::new("/p");
        let local = root.join(".mlp/fetched/orders/objects/s3/lake/orders/2024/a.parquet");
        assert_eq!(
            shown(root, &local).as_deref(),
            Some("s3://lake/orders/2024/a.parquet")
        );
        assert_eq!(shown(root, &root.join(".mlp/fetched/orders.pgcopy")), None);
        assert_eq!(shown(root, &root.join("data/orders.csv")), None);
    }

    #[test]
    fn keys_that_would_leave_the_mirror_are_refused() {
        assert!(Address::parse("s3://lake/../etc/passwd").is_err());
        assert!(Address::parse("s3://lake/a//b.csv").is_err());
        assert!(Address::parse("s3://lake").is_err());
        let a = Address::parse("S3://lake/orders/*.parquet").unwrap();
        assert!(a.is_glob());
        assert_eq!(a.url_of("orders/x.parquet"), "s3://lake/orders/x.parquet");
    }

    #[test]
    fn an_unchanged_object_is_known_by_its_etag_then_its_date_and_size() {
        let meta = |tag: Option<&str>, modified: i64, size: u64| ObjectMeta {
            location: ObjectPath::from("a.csv"),
            last_modified: chrono::DateTime::from_timestamp(modified, 0).unwrap_or_default(),
            size,
            e_tag: tag.map(String::from),
            version: None,
        };
        let entry = |tag: Option<&str>, modified: i64, size: u64| Entry {
            e_tag: tag.map(String::from),
            version: None,
            size,
            last_modified: modified,
            how: String::new(),
            downloaded: true,
        };
        assert_eq!(
            unchanged(&entry(Some("\"a\""), 5, 10), &meta(Some("\"a\""), 9, 10)),
            Some("ETag unchanged")
        );
        assert_eq!(
            unchanged(&entry(Some("\"a\""), 5, 10), &meta(Some("\"b\""), 5, 10)),
            None
        );
        assert_eq!(
            unchanged(&entry(None, 5, 10), &meta(None, 5, 10)),
            Some("Last-Modified and size unchanged")
        );
        assert_eq!(unchanged(&entry(None, 5, 10), &meta(None, 5, 11)), None);
        // Neither: always fetched again (then compared by content).
        assert_eq!(unchanged(&entry(None, 0, 10), &meta(None, 0, 10)), None);
    }
}
