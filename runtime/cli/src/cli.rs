//! The subcommands: each takes parsed arguments, prints, and returns the exit
//! code (0 ok, 1 the pipeline has errors, 2 the command could not run).

mod models;
mod run;

pub use models::*;
pub use run::*;

use mlp_compiler::graph::{self, GraphFormat};
use mlp_compiler::{codes, infer, Compilation, Report, SourceMap};
use mlp_engine::project::{Project, ProjectError};
use mlp_engine::sample::{read_sample, SampleError};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl Color {
    fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        }
    }
}

/// A command that could not run (as opposed to a pipeline with errors).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Sample(#[from] SampleError),
    #[error("unknown code `{0}`")]
    UnknownCode(String),
    #[error("the pipeline does not check: fix the errors above and try again")]
    DoesNotCheck,
    #[error("{0}")]
    Output(String),
    #[error("{0}")]
    Registry(String, Option<String>),
}

impl CliError {
    pub fn help(&self) -> Option<String> {
        match self {
            CliError::Project(e) => e.help(),
            CliError::Sample(e) => e.help(),
            CliError::Registry(_, help) => help.clone(),
            CliError::UnknownCode(_) => Some(format!(
                "codes look like E0201; known codes: {}",
                codes::in_order()
                    .iter()
                    .map(|(c, _)| *c)
                    .collect::<Vec<_>>()
                    .join(" ")
            )),
            _ => None,
        }
    }
}

/// Renders diagnostics as miette reports (without colour when `color` is off).
pub fn render_diagnostics(c: &Compilation, sources: &SourceMap, color: bool) -> String {
    let theme = if color {
        miette::GraphicalTheme::unicode()
    } else {
        miette::GraphicalTheme::unicode_nocolor()
    };
    let handler = miette::GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for d in &c.diagnostics {
        let report = Report::new(d.clone(), sources);
        let _ = handler.render_report(&mut out, &report);
        out.push('\n');
    }
    out
}

fn summary(c: &Compilation) -> String {
    let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = c.diagnostics.len() - errors;
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => String::new(),
        (0, w) => plural(w, "warning"),
        (e, 0) => plural(e, "error"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

fn write_stdout(s: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .or_else(|e| {
            // A closed pipe (`mlp ... | head`) is not an error.
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(CliError::Output(format!("cannot write output: {e}")))
            }
        })
}

/// `mlp check [PATH] [--json] [--plan]`.
pub fn check(path: &Path, json: bool, emit_plan: bool, color: Color) -> Result<ExitCode, CliError> {
    let project = Project::load(path)?;
    let c = project.compile();
    if json {
        let diags: Vec<_> = c
            .diagnostics
            .iter()
            .map(|d| d.to_json(&project.sources))
            .collect();
        let out = serde_json::json!({
            "ok": !c.has_errors(),
            "files": project.sources.files().map(|(_, f)| f.name.clone()).collect::<Vec<_>>(),
            "stages": c.plan.as_ref().map(|p| p.stages.len()).unwrap_or(0),
            "diagnostics": diags,
        });
        write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        ))?;
    } else {
        let rendered = render_diagnostics(&c, &project.sources, color.enabled());
        eprint!("{rendered}");
        match &c.plan {
            Some(plan) if emit_plan => {
                write_stdout(&format!(
                    "{}\n",
                    serde_json::to_string_pretty(plan).unwrap_or_default()
                ))?;
            }
            Some(plan) => {
                let files = project.sources.files().count();
                let extra = summary(&c);
                eprintln!(
                    "ok: {} stage{} in {} file{}{}",
                    plan.stages.len(),
                    if plan.stages.len() == 1 { "" } else { "s" },
                    files,
                    if files == 1 { "" } else { "s" },
                    if extra.is_empty() {
                        String::new()
                    } else {
                        format!(" ({extra})")
                    }
                );
            }
            None => eprintln!("failed: {}", summary(&c)),
        }
    }
    Ok(if c.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `mlp explain CODE`.
pub fn explain(code: &str) -> Result<ExitCode, CliError> {
    let doc = codes::explain(code).ok_or_else(|| CliError::UnknownCode(code.to_string()))?;
    write_stdout(doc)?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp graph [PATH] --format dot|mermaid`.
pub fn graph(path: &Path, format: GraphFormat, color: Color) -> Result<ExitCode, CliError> {
    let project = Project::load(path)?;
    let c = project.compile();
    let Some(plan) = &c.plan else {
        eprint!(
            "{}",
            render_diagnostics(&c, &project.sources, color.enabled())
        );
        return Err(CliError::DoesNotCheck);
    };
    write_stdout(&graph::render(plan, format))?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp infer FILE`.
/// `path` as seen from the folder `base` (`../data/x.csv` when it is not
/// below it); as given when either cannot be resolved.
fn relative_to(base: &Path, path: &Path) -> String {
    let (Ok(b), Ok(p)) = (base.canonicalize(), path.canonicalize()) else {
        return path.to_string_lossy().replace('\\', "/");
    };
    let bc: Vec<_> = b.components().collect();
    let pc: Vec<_> = p.components().collect();
    let common = bc.iter().zip(&pc).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); bc.len() - common];
    parts.extend(
        pc[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().to_string()),
    );
    parts.join("/")
}

/// `mlp infer env:VAR --table T` (or an address, `?table=T` accepted).
fn infer_postgres(
    spec: &str,
    var: Option<&str>,
    name: Option<&str>,
    rows: usize,
    table: Option<&str>,
) -> Result<ExitCode, CliError> {
    let (url, var) = match var {
        Some(v) => match std::env::var(v) {
            Ok(u) if !u.trim().is_empty() => (u, v.to_string()),
            _ => {
                return Err(CliError::Output(format!(
                    "the environment variable `{v}` is not set (it holds the database's address)"
                )))
            }
        },
        None => (spec.to_string(), "DATABASE_URL".to_string()),
    };
    let (url, from_query) = match url.split_once("?table=") {
        Some((u, t)) => (u.to_string(), Some(t.to_string())),
        None => (url, None),
    };
    let Some(table) = table.map(str::to_string).or(from_query) else {
        return Err(CliError::Output(
            "name the table: `--table customers` (or `?table=customers` after the address)".into(),
        ));
    };
    let sample = mlp_engine::sample::read_postgres_sample(&url, &table, rows.max(1))?;
    let name = name
        .map(str::to_string)
        .unwrap_or_else(|| table.rsplit('.').next().unwrap_or(&table).to_string());
    let more = format!(
        "table = \"{}\", url = env(\"{var}\")",
        table.replace('"', "\\\"")
    );
    let block = infer::source_block_with(&name, "postgres", "", &more, &sample)
        .replace("postgres(\"\", ", "postgres(")
        .replace(" rows of ;", &format!(" rows of postgres table `{table}`;"));
    write_stdout(&block)?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp infer s3://bucket/key.parquet` (or `https://...`): the object is
/// fetched into a temporary folder (credentials from the environment, as
/// for a run) and sampled there; the block names its address.
fn infer_remote(url: &str, name: Option<&str>, rows: usize) -> Result<ExitCode, CliError> {
    let format = if url.ends_with(".parquet") || url.ends_with(".pq") {
        "parquet"
    } else if url.ends_with(".json") || url.ends_with(".ndjson") || url.ends_with(".jsonl") {
        "json"
    } else {
        "csv"
    };
    let op = mlp_compiler::plan::SourceOp {
        format: mlp_compiler::plan::SourceFormat::parse(format)
            .ok_or_else(|| CliError::Output(format!("no source format `{format}`")))?,
        path: url.to_string(),
        options: Default::default(),
        columns: vec![],
    };
    let tmp = tempfile::tempdir().map_err(|e| CliError::Output(e.to_string()))?;
    let files = mlp_engine::exec::remote::fetch(&op, tmp.path(), "infer")
        .map_err(|e| CliError::Output(e.to_string()))?;
    let first = files
        .first()
        .ok_or_else(|| CliError::Output(format!("no object matches `{url}`")))?;
    let (sample, format) = read_sample(first, rows.max(1))?;
    let key = url.rsplit('/').next().unwrap_or("data");
    let name = name.map(str::to_string).unwrap_or_else(|| {
        key.split('.')
            .next()
            .filter(|s| !s.is_empty() && !s.contains(['*', '[', '{']))
            .unwrap_or("data")
            .to_string()
    });
    write_stdout(&infer::source_block_with(&name, format, url, "", &sample))?;
    Ok(ExitCode::SUCCESS)
}

pub fn infer(
    file: &Path,
    name: Option<&str>,
    rows: usize,
    for_pipeline: &Path,
    table: Option<&str>,
) -> Result<ExitCode, CliError> {
    // A PostgreSQL table: `env:VARIABLE` (the address in the environment)
    // or an address; the block names a variable either way.
    let spec = file.to_string_lossy().to_string();
    let pg_var = spec.strip_prefix("env:").map(str::to_string);
    if pg_var.is_some() || spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return infer_postgres(&spec, pg_var.as_deref(), name, rows, table);
    }
    if mlp_engine::exec::remote::is_remote(&spec) {
        return infer_remote(&spec, name, rows);
    }
    let sqlite = table.is_some() || mlp_engine::sample::is_sqlite(file);
    let (sample, format) = if sqlite {
        (
            mlp_engine::sample::read_sqlite_sample(file, table, rows.max(1))?,
            "sqlite",
        )
    } else {
        read_sample(file, rows.max(1))?
    };
    let name = name.map(str::to_string).unwrap_or_else(|| match table {
        Some(t) => t.to_string(),
        None => file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into()),
    });
    // Paths in a pipeline are relative to its file's folder.
    let base = if for_pipeline.is_file() {
        for_pipeline.parent().unwrap_or(Path::new("."))
    } else {
        for_pipeline
    };
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    let shown = relative_to(base, file);
    let more = table
        .map(|t| format!("table = \"{}\"", t.replace('"', "\\\"")))
        .unwrap_or_default();
    write_stdout(&infer::source_block_with(
        &name, format, &shown, &more, &sample,
    ))?;
    Ok(ExitCode::SUCCESS)
}
