//! The registry's models, `mlp predict`, `mlp monitor` and `mlp serve`.

use super::*;
use mlp_engine::predictor::Predictor;
use mlp_store::store::Store;

use mlp_engine::bundle::{self, Bundle};
use mlp_store::registry::{Registry, RegistryError};

impl From<bundle::LocateError> for CliError {
    fn from(e: bundle::LocateError) -> Self {
        let help = e.help();
        CliError::Registry(e.to_string(), help)
    }
}

impl From<RegistryError> for CliError {
    fn from(e: RegistryError) -> Self {
        let help = e.help();
        CliError::Registry(e.to_string(), help)
    }
}

pub(crate) fn registry_at(project: &Path) -> Result<Registry, CliError> {
    Ok(bundle::registry_at(project)?)
}

/// The project's run lock, so an alias move waits for a running `mlp run`
/// (which may be deploying) rather than interleave with it.
pub(crate) fn project_lock(reg: &Registry) -> Result<mlp_store::store::RunLock, CliError> {
    let state = reg.root.parent().unwrap_or(Path::new("."));
    let store = Store::existing(state.parent().unwrap_or(Path::new(".")))
        .ok_or_else(|| CliError::Output(format!("no project state in `{}`", state.display())))?;
    store
        .lock(|| eprintln!("waiting for a running `mlp run`..."))
        .map_err(|e| CliError::Output(e.to_string()))
}

/// `mlp models list`.
pub fn models_list(project: &Path) -> Result<ExitCode, CliError> {
    let reg = registry_at(project)?;
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["model", "versions", "aliases"]);
    for name in reg.names() {
        let aliases = reg
            .aliases(&name)?
            .iter()
            .map(|(a, v)| format!("@{a} -> {}", &v[..12.min(v.len())]))
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row([
            name.clone(),
            reg.versions(&name)?.len().to_string(),
            aliases,
        ]);
    }
    write_stdout(&format!("{t}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp models show NAME[@alias|@version]`.
pub fn models_show(project: &Path, spec: &str) -> Result<ExitCode, CliError> {
    let reg = registry_at(project)?;
    let (name, version) = reg.resolve(spec)?;
    let (b, _) = Bundle::read(&reg.bundle_path(&name, &version), Some(&version))
        .map_err(bundle::LocateError::from)?;
    let history = reg.history(&name)?;
    let aliases: Vec<String> = reg
        .aliases(&name)?
        .into_iter()
        .filter(|(_, v)| *v == version)
        .map(|(a, _)| format!("@{a}"))
        .collect();
    let metrics: Vec<String> = b
        .evaluations
        .iter()
        .map(|e| {
            format!(
                "{}: {}",
                e["partition"].as_str().unwrap_or(""),
                e["metrics"]
                    .as_object()
                    .map(|m| m
                        .iter()
                        .map(|(k, v)| match v.as_f64() {
                            Some(x) => format!("{k} {x:.4}"),
                            None => format!("{k} undefined"),
                        })
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            )
        })
        .collect();
    // The first evaluation's permutation importances, most important first.
    let importance: Vec<String> = b
        .evaluations
        .first()
        .and_then(|e| {
            let p = &e["feature_importance"]["permutation"];
            let inputs = p["inputs"].as_array()?;
            Some(
                std::iter::once(format!(
                    "(permutation, {} on {})",
                    p["metric"].as_str().unwrap_or("?"),
                    e["partition"].as_str().unwrap_or("?")
                ))
                .chain(inputs.iter().map(|i| {
                    format!(
                        "{} {}",
                        i["feature"].as_str().unwrap_or(""),
                        i["importance_mean"]
                            .as_f64()
                            .map(|v| format!("{v:.4}"))
                            .unwrap_or_else(|| "undefined".into())
                    )
                }))
                .collect(),
            )
        })
        .unwrap_or_default();
    // The model's own importance: gains and impurity shares largest first;
    // coefficients in the inputs' order (their sizes depend on the inputs'
    // units).
    let own: Option<String> = b.evaluations.first().and_then(|e| {
        let m = &e["feature_importance"]["model"];
        let kind = m["kind"].as_str()?;
        let mut values: Vec<(String, f64)> = m["values"]
            .as_array()?
            .iter()
            .map(|v| {
                (
                    v["feature"].as_str().unwrap_or("").to_string(),
                    v["value"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        if kind != "coefficient" {
            values.sort_by(|a, b| b.1.total_cmp(&a.1));
        }
        Some(format!(
            "\n            ({kind}) {}",
            values
                .iter()
                .map(|(f, v)| format!("{f} {v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    });
    write_stdout(&format!(
        "model:      {name}\nversion:    {version}\naliases:    {}\nalgorithm:  {} ({})\ntarget:     {}\nfeatures:   {}\nparameters: {}\nmetrics:    {}\nimportance: {}{}\nlineage:    plan {}\nhistory:\n{}\n",
        if aliases.is_empty() { "(none)".into() } else { aliases.join(" ") },
        b.model.algorithm,
        format!("{:?}", b.model.task).to_lowercase(),
        b.model.target,
        b.model.features.join(", "),
        serde_json::to_string(&b.model.params).unwrap_or_default(),
        if metrics.is_empty() { "(not evaluated)".into() } else { metrics.join("; ") },
        if importance.is_empty() {
            "(not evaluated)".into()
        } else {
            format!("{} {}", importance[0], importance[1..].join(", "))
        },
        own.unwrap_or_default(),
        b.lineage["plan"].as_str().unwrap_or(""),
        history
            .iter()
            .map(|m| format!(
                "  {} @{} {} -> {}",
                m.action,
                m.alias,
                m.from.as_deref().map(|f| &f[..12.min(f.len())]).unwrap_or("(none)"),
                &m.to[..12.min(m.to.len())]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp models promote NAME VERSION ALIAS`.
pub fn models_promote(
    project: &Path,
    name: &str,
    version: &str,
    alias: &str,
) -> Result<ExitCode, CliError> {
    let reg = registry_at(project)?;
    let _run = project_lock(&reg)?;
    let v = reg.promote(name, version, alias)?;
    write_stdout(&format!("@{alias} of {name} -> {v}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp models rollback NAME ALIAS`.
pub fn models_rollback(project: &Path, name: &str, alias: &str) -> Result<ExitCode, CliError> {
    let reg = registry_at(project)?;
    let _run = project_lock(&reg)?;
    let v = reg.rollback(name, alias)?;
    write_stdout(&format!("@{alias} of {name} rolled back to {v}\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// The format a file's extension names: `csv` (also without an extension),
/// `parquet`, or `json` (newline-delimited).
pub(crate) fn frame_format(path: &Path) -> Result<&'static str, CliError> {
    mlp_engine::exec::source::format_of(path).ok_or_else(|| {
        CliError::Output(format!(
            "{}: cannot read or write `.{}` files; use .csv, .parquet or .ndjson",
            path.display(),
            path.extension().unwrap_or_default().to_string_lossy()
        ))
    })
}

/// Writes a frame in the format its extension names, through a temporary
/// file renamed into place: a failed write leaves no partial file.
pub(crate) fn write_frame_file(
    df: &mut polars::prelude::DataFrame,
    path: &Path,
) -> Result<(), CliError> {
    let mut sink = FrameSink::new(path)?;
    sink.write(df)?;
    sink.finish()
}

/// A file written one frame at a time (CSV, NDJSON or Parquet, by its
/// extension) through a temporary file renamed into place by `finish`:
/// nothing is left behind if a batch fails, and a sink never finished
/// leaves no file.
pub(crate) struct FrameSink {
    path: std::path::PathBuf,
    format: &'static str,
    tmp: tempfile::NamedTempFile,
    parquet: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    rows: usize,
}

impl FrameSink {
    /// A sink for `path`: its format known and its folder there, or an
    /// error before any work is done.
    pub(crate) fn new(path: &Path) -> Result<FrameSink, CliError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(CliError::Output(format!(
                "{}: the folder `{}` does not exist; create it first",
                path.display(),
                dir.display()
            )));
        }
        let format = frame_format(path)?;
        // The file is written beside its destination and renamed into place:
        // a folder it cannot be written in is said now, before any work.
        let mut builder = tempfile::Builder::new();
        builder.prefix(".mlp-output-");
        // As `File::create` would: 0o666 less the umask (a temporary file is
        // otherwise private to its owner).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder.tempfile_in(dir).map_err(|e| {
            // The OS's words, without the temporary file's name.
            let why = e
                .raw_os_error()
                .map(|code| std::io::Error::from_raw_os_error(code).to_string())
                .unwrap_or_else(|| e.kind().to_string());
            CliError::Output(format!(
                "{}: cannot write a file in the folder `{}`: {why}",
                path.display(),
                dir.display()
            ))
        })?;
        Ok(FrameSink {
            path: path.to_path_buf(),
            format,
            tmp,
            parquet: None,
            rows: 0,
        })
    }

    fn write(&mut self, df: &mut polars::prelude::DataFrame) -> Result<(), CliError> {
        use polars::prelude::*;
        let failed =
            |e: &dyn std::fmt::Display| CliError::Output(format!("{}: {e}", self.path.display()));
        if self.format == "parquet" && self.parquet.is_none() {
            let file = self.tmp.reopen().map_err(|e| failed(&e))?;
            self.parquet = Some(
                ParquetWriter::new(file)
                    .batched(df.schema())
                    .map_err(|e| failed(&e))?,
            );
        }
        let first = self.rows == 0;
        let tmp = &mut self.tmp;
        match self.format {
            "parquet" => {
                if let Some(w) = self.parquet.as_mut() {
                    w.write_batch(df).map_err(|e| failed(&e))?;
                }
            }
            "json" => JsonWriter::new(tmp.as_file_mut())
                .with_json_format(JsonFormat::JsonLines)
                .finish(df)
                .map_err(|e| failed(&e))?,
            _ => CsvWriter::new(tmp.as_file_mut())
                .include_header(first)
                .finish(df)
                .map_err(|e| failed(&e))?,
        }
        self.rows += df.height().max(1);
        Ok(())
    }

    fn finish(mut self) -> Result<(), CliError> {
        let failed =
            |e: &dyn std::fmt::Display| CliError::Output(format!("{}: {e}", self.path.display()));
        if let Some(w) = self.parquet.take() {
            w.finish().map_err(|e| failed(&e))?;
        }
        // Nothing written, nothing persisted (the temporary file goes).
        if self.rows > 0 {
            self.tmp.persist(&self.path).map_err(|e| failed(&e.error))?;
        }
        Ok(())
    }
}

/// Whether two paths name the same file (an existing `b` with the same
/// device and inode as `a`, or the same canonical path).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return ma.dev() == mb.dev() && ma.ino() == mb.ino();
        }
    }
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// The bundle of `spec`, for a command reading `input`: the model is found
/// first (an unknown name is the first thing to say), then the input is
/// checked (it exists, in a format mlp reads), all before the bundle's
/// plugins are compiled (`load_predictor`).
fn locate_for(
    project: &Path,
    spec: &str,
    input: &Path,
) -> Result<bundle::BundleLocation, CliError> {
    let at = bundle::locate(project, spec)?;
    if !input.is_file() {
        let what = match std::fs::metadata(input) {
            Err(_) => "does not exist",
            Ok(m) if m.is_dir() => "is a folder, not a file: name one file of rows",
            Ok(_) => "is not a regular file (a device or a pipe)",
        };
        return Err(CliError::Output(format!("`{}` {what}", input.display())));
    }
    frame_format(input)?;
    Ok(at)
}

/// The located bundle, loaded with its plugins compiled (modules cached in
/// the project's `.mlp/wasm`).
fn load_predictor(project: &Path, at: &bundle::BundleLocation) -> Result<Predictor, CliError> {
    Ok(Predictor::load(
        &at.path,
        &at.version,
        &mlp_plugin_host::Wasmtime,
        Some(&mlp_store::wasm_cache_dir(project)),
        project,
    )?)
}

/// `mlp predict NAME[@alias|@version] --input FILE --output FILE`.
pub fn predict(
    project: &Path,
    spec: &str,
    input: &Path,
    output: &Path,
) -> Result<ExitCode, CliError> {
    let at = locate_for(project, spec, input)?;
    // The output's format and folder are checked before any work.
    FrameSink::new(output)?;
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let ext = output
        .extension()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "csv".into());
    let rej_path = output.with_file_name(format!("{stem}.rejected.{ext}"));
    // Neither output may be the input: it would be overwritten.
    for (what, out) in [("--output", output), ("the rejected rows' file", &rej_path)] {
        if same_file(input, out) {
            return Err(CliError::Output(format!(
                "{what} `{}` is the input file `{}`: predicting would overwrite it; write elsewhere",
                out.display(),
                input.display()
            )));
        }
    }
    let p = load_predictor(project, &at)?;
    let exec_err = |e: mlp_engine::exec::ExecError| CliError::Registry(e.to_string(), e.help());
    // Text outputs write dates and datetimes back in their declared formats.
    let text_out = frame_format(output)? != "parquet";
    // The file is predicted in batches, each written as it comes, so memory
    // stays bounded whatever the input's size.
    let mut good_sink = FrameSink::new(output)?;
    let mut rejected_sink = FrameSink::new(&rej_path)?;
    let (mut predicted, mut rejected_rows) = (0usize, 0usize);
    let mut sink_error: Option<CliError> = None;
    p.predict_file_batches(
        input,
        bundle::predict_batch_rows(),
        &mut |good, rejected, _| {
            let dated = |df| {
                if text_out {
                    p.dates_as_declared(df)
                } else {
                    Ok(df)
                }
            };
            let (mut good, mut rejected) = (dated(good)?, dated(rejected)?);
            predicted += good.height();
            rejected_rows += rejected.height();
            let written = good_sink.write(&mut good).and_then(|_| {
                if rejected.height() > 0 {
                    rejected_sink.write(&mut rejected)
                } else {
                    Ok(())
                }
            });
            written.map_err(|e| {
                let msg = e.to_string();
                sink_error = Some(e);
                mlp_engine::exec::ExecError::Data(msg)
            })
        },
    )
    .map_err(|e| sink_error.take().unwrap_or_else(|| exec_err(e)))?;
    good_sink.finish()?;
    if rejected_rows > 0 {
        rejected_sink.finish()?;
        eprintln!(
            "predicted {} into {}; {} failed the model's row-level checks and {} written, with the rule each failed, to {}",
            count_rows(predicted),
            output.display(),
            count_rows(rejected_rows),
            if rejected_rows == 1 { "was" } else { "were" },
            rej_path.display()
        );
        return Ok(ExitCode::from(1));
    }
    // A rejected file an earlier prediction into the same output left would
    // describe rows this one did not reject: it goes, as the output itself
    // was replaced.
    let stale = rej_path.is_file() && std::fs::remove_file(&rej_path).is_ok();
    eprintln!(
        "predicted {} into {}{}",
        count_rows(predicted),
        output.display(),
        if stale {
            format!(
                "; no row was rejected (the earlier {} is removed)",
                rej_path.display()
            )
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// "1 row", "2 rows".
pub(crate) fn count_rows(n: usize) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// `mlp monitor NAME[@alias] --data FILE [--json] [--html FILE]`.
pub fn monitor(
    project: &Path,
    spec: &str,
    data: &Path,
    json: bool,
    html: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let at = locate_for(project, spec, data)?;
    if let Some(h) = html.filter(|h| h.is_dir()) {
        return Err(CliError::Output(format!(
            "--html `{}` is a folder; give the report a file name, such as `{}`",
            h.display(),
            h.join("report.html").display()
        )));
    }
    let p = load_predictor(project, &at)?;
    let exec_err = |e: mlp_engine::exec::ExecError| CliError::Registry(e.to_string(), e.help());
    let report = p.monitor_file(data).map_err(exec_err)?;
    if let Some(path) = html {
        let page = crate::render::render_html(&report);
        mlp_store::store::write_atomic(path, page.as_bytes())
            .map_err(|e| CliError::Output(format!("cannot write `{}`: {e}", path.display())))?;
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Output(e.to_string()))?
        );
    } else {
        print!("{}", crate::render::render_table(&report));
        if let Some(path) = html {
            println!("report written to {}", path.display());
        }
    }
    Ok(if report.breached {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `mlp serve NAME[@alias|@version] [--port P]`.
pub fn serve(
    project: &Path,
    spec: &str,
    host: &str,
    port: u16,
    max_body: usize,
    header_timeout_secs: u64,
) -> Result<ExitCode, CliError> {
    mlp_server::serve(mlp_server::ServeOptions {
        plugin_host: std::sync::Arc::new(mlp_plugin_host::Wasmtime),
        project: project.to_path_buf(),
        spec: spec.to_string(),
        host: host.to_string(),
        port,
        max_body,
        header_timeout: std::time::Duration::from_secs(header_timeout_secs),
    })
    .map_err(|e| {
        let help = e.help();
        CliError::Registry(e.to_string(), help)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp monitor --server URL`: the window of a running server, with the
/// monitor block's `latency` and `error_rate` rules.
pub fn monitor_server(url: &str, json: bool, timeout_secs: u64) -> Result<ExitCode, CliError> {
    let endpoint = format!("{}/v1/monitor", url.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(timeout_secs)))
        .build()
        .into();
    let body: mlp_engine::monitor::ServingReport = agent
        .get(&endpoint)
        .call()
        .map_err(|e| {
            CliError::Registry(
                format!("cannot reach `{endpoint}`: {e}"),
                Some(format!(
                    "is `mlp serve` running there and answering within {timeout_secs} s (`--timeout`)? the URL looks like http://127.0.0.1:8080"
                )),
            )
        })?
        .body_mut()
        .read_json()
        .map_err(|e| {
            CliError::Output(format!("`{endpoint}` did not answer a monitor report: {e}"))
        })?;
    let drifting: Vec<&str> = body
        .drift
        .iter()
        .filter(|c| c.drifting)
        .map(|c| c.column.as_str())
        .collect();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).map_err(|e| CliError::Output(e.to_string()))?
        );
    } else {
        println!(
            "server {url}: model {} version {}, {}, window of {}",
            body.model,
            &body.version[..body.version.len().min(12)],
            mlp_engine::monitor::requests_text(body.requests),
            count_rows(body.window_rows),
        );
        let ms = |k: &str| {
            body.latency_ms
                .get(k)
                .copied()
                .flatten()
                .map(|v| format!("{v:.2} ms"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "latency p50 {}, p95 {}, p99 {}; error rate {:.4}",
            ms("p50"),
            ms("p95"),
            ms("p99"),
            body.error_rate
        );
        for r in &body.rules {
            println!(
                "  {:<32} {:>10}  {}",
                r.rule,
                r.value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "-".into()),
                if r.breached {
                    "BREACHED".to_string()
                } else if let Some(n) = &r.note {
                    n.clone()
                } else {
                    "ok".to_string()
                }
            );
        }
        if drifting.is_empty() {
            println!("no feature drifts over the window");
        } else {
            println!("drifting over the window: {}", drifting.join(", "));
        }
    }
    Ok(if body.breached {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
