//! The subcommands: each takes parsed arguments, prints, and returns the exit
//! code (0 ok, 1 the pipeline has errors, 2 the command could not run).

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
                codes::CODES
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

pub fn infer(
    file: &Path,
    name: Option<&str>,
    rows: usize,
    for_pipeline: &Path,
) -> Result<ExitCode, CliError> {
    let (sample, format) = read_sample(file, rows.max(1))?;
    let name = name.map(str::to_string).unwrap_or_else(|| {
        file.file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into())
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
    write_stdout(&infer::source_block(&name, format, &shown, &sample))?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------- run, plan, cache

use mlp_engine::run::{self, Progress, StagePlan, StageResult};
use mlp_store::fingerprint::FileHashes;
use mlp_store::store::Store;

/// Compiles a project, or prints its diagnostics and fails.
fn compiled(path: &Path, color: Color) -> Result<(Project, mlp_compiler::Plan), CliError> {
    let project = Project::load(path)?;
    let c = project.compile();
    let rendered = render_diagnostics(&c, &project.sources, color.enabled());
    match c.plan {
        Some(plan) => {
            eprint!("{rendered}");
            Ok((project, plan))
        }
        None => {
            eprint!("{rendered}");
            Err(CliError::DoesNotCheck)
        }
    }
}

fn plan_table(stages: &[StagePlan]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    if !std::io::stdout().is_terminal() {
        t.set_width(110);
    }
    t.set_header(["stage", "state", "why"]);
    for s in stages {
        let state = if s.cached {
            "cached"
        } else if s.runnable && s.key.is_some() {
            "will run"
        } else {
            "blocked"
        };
        let why: Vec<String> = s
            .reasons
            .iter()
            .filter(|r| !matches!(r, run::Reason::Cached))
            .map(|r| r.to_string())
            .collect();
        t.add_row([s.id.clone(), state.to_string(), why.join("; ")]);
    }
    t.to_string()
}

/// `mlp plan [PATH] [--json]`.
pub fn plan(path: &Path, json: bool, color: Color) -> Result<ExitCode, CliError> {
    let (project, plan) = compiled(path, color)?;
    let store = Store::existing(&project.root);
    let mut hashes = match &store {
        Some(s) => FileHashes::load(&s.root),
        None => FileHashes::default(),
    };
    let stages = run::plan_stages(&plan, &project.root, store.as_ref(), &mut hashes);
    if let Some(_s) = &store {
        hashes.save();
    }
    if json {
        write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&serde_json::json!({ "stages": stages }))
                .unwrap_or_default()
        ))?;
    } else {
        let n = stages
            .iter()
            .filter(|s| !s.cached && s.runnable && s.key.is_some())
            .count();
        write_stdout(&format!(
            "{}\n{} of {} stages will run\n",
            plan_table(&stages),
            n,
            stages.len()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn result_table(results: &[StageResult]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["stage", "status", "rows", "seconds"]);
    for r in results {
        t.add_row([
            r.id.clone(),
            r.status.clone(),
            r.rows.map(|n| n.to_string()).unwrap_or_default(),
            if r.status == "ran" || r.status == "failed" {
                format!("{:.2}", r.seconds)
            } else {
                String::new()
            },
        ]);
    }
    t.to_string()
}

/// Options of `mlp run`.
pub struct RunOptions {
    pub json: bool,
    pub watch: bool,
    pub jobs: usize,
}

/// `mlp run [PATH] [--json] [--watch]`.
pub fn run(path: &Path, opts: &RunOptions, color: Color) -> Result<ExitCode, CliError> {
    if !opts.watch {
        return run_once(path, opts, color);
    }
    watch(path, opts, color)
}

fn run_once(path: &Path, opts: &RunOptions, color: Color) -> Result<ExitCode, CliError> {
    let (project, plan) = compiled(path, color)?;
    let store = Store::open(&project.root).map_err(|e| CliError::Output(e.to_string()))?;
    let _lock = store
        .lock(|| eprintln!("waiting for another `mlp run` in this project to finish..."))
        .map_err(|e| CliError::Output(e.to_string()))?;
    store.clean_tmp();
    let started = std::time::Instant::now();
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut hashes = FileHashes::load(&store.root);
    let stages = run::plan_stages(&plan, &project.root, Some(&store), &mut hashes);
    hashes.save();
    let interactive = !opts.json && std::io::stderr().is_terminal();
    let bars = indicatif::MultiProgress::new();
    if !interactive {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let spinners: std::sync::Mutex<std::collections::HashMap<String, indicatif::ProgressBar>> =
        Default::default();
    let quiet = opts.json;
    let progress = |p: Progress| match p {
        Progress::Started(id) => {
            let pb = bars.add(indicatif::ProgressBar::new_spinner());
            pb.set_message(format!("running {id}"));
            pb.enable_steady_tick(std::time::Duration::from_millis(120));
            if let Ok(mut m) = spinners.lock() {
                m.insert(id, pb);
            }
        }
        Progress::Finished(r) => {
            if let Ok(mut m) = spinners.lock() {
                if let Some(pb) = m.remove(&r.id) {
                    pb.finish_and_clear();
                }
            }
            if quiet {
                return;
            }
            let line = match r.status.as_str() {
                "ran" => match r.rows {
                    Some(rows) => format!("  ran     {} ({rows} rows, {:.2}s)", r.id, r.seconds),
                    None => format!("  ran     {} ({:.2}s)", r.id, r.seconds),
                },
                "cached" => format!("  cached  {}", r.id),
                "failed" => format!("  FAILED  {}", r.id),
                other => format!("  {other:<7} {}", r.id),
            };
            let mut lines = vec![line];
            lines.extend(r.notes.iter().map(|n| format!("          {n}")));
            for l in lines {
                if interactive {
                    let _ = bars.println(l);
                } else {
                    eprintln!("{l}");
                }
            }
        }
    };
    let jobs = opts.jobs.max(1);
    let results = run::run_plan(
        &plan,
        &project.root,
        &store,
        &stages,
        jobs,
        &mlp_plugin_host::Wasmtime,
        &progress,
    );
    let seconds = started.elapsed().as_secs_f64();
    let record = run::record_run(
        &store,
        &plan,
        &stages,
        &results,
        &project.root,
        started_unix,
        seconds,
    );
    let failed: Vec<&StageResult> = results
        .iter()
        .filter(|r| r.status == "failed" || r.status == "blocked")
        .collect();
    if opts.json {
        let out = serde_json::json!({
            "run": record.id,
            "ok": failed.is_empty(),
            "seconds": seconds,
            "stages": results,
        });
        write_stdout(&format!(
            "{}\n",
            serde_json::to_string_pretty(&out).unwrap_or_default()
        ))?;
    } else {
        for f in &failed {
            // A stage blocked only by its input's failure says nothing new.
            if f.status == "blocked" && f.error.as_deref().is_none_or(|e| e.contains("cannot run"))
            {
                continue;
            }
            eprintln!(
                "\nerror in `{}`: {}",
                f.id,
                f.error.clone().unwrap_or_default()
            );
            if let Some(h) = &f.help {
                eprintln!("  help: {h}");
            }
        }
        eprintln!("\n{}", result_table(&results));
        let ran = results.iter().filter(|r| r.status == "ran").count();
        let cached = results.iter().filter(|r| r.status == "cached").count();
        eprintln!(
            "{}: {ran} ran, {cached} cached, {} failed or blocked, in {seconds:.2}s (run {})",
            if failed.is_empty() { "done" } else { "failed" },
            failed.len(),
            record.id
        );
    }
    Ok(
        if failed.is_empty() && results.iter().all(|r| r.status != "blocked") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// Re-runs whenever a `.mlp` file, a data file or a plugin under the project
/// changes (the state folder excepted).
fn watch(path: &Path, opts: &RunOptions, color: Color) -> Result<ExitCode, CliError> {
    use notify::{RecursiveMode, Watcher};
    let root = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ".".into())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            let relevant = ev.paths.iter().any(|p| {
                !p.components()
                    .any(|c| c.as_os_str() == ".mlp" || c.as_os_str() == "target")
            });
            if relevant && !matches!(ev.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    })
    .map_err(|e| CliError::Output(format!("cannot watch files: {e}")))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| CliError::Output(format!("cannot watch {}: {e}", root.display())))?;
    loop {
        let _ = match run_once(path, opts, color) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
        eprintln!("watching {} for changes (Ctrl-C to stop)", root.display());
        if rx.recv().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
        // Let a burst of writes settle, then drain it.
        std::thread::sleep(std::time::Duration::from_millis(300));
        while rx.try_recv().is_ok() {}
    }
}

/// `mlp cache status [PATH]`.
pub fn cache_status(path: &Path) -> Result<ExitCode, CliError> {
    let root = project_root(path)?;
    let Some(store) = Store::existing(&root) else {
        write_stdout("no cache yet: run `mlp run` first\n")?;
        return Ok(ExitCode::SUCCESS);
    };
    let (entries, bad) = store.entries();
    let live: std::collections::HashSet<String> = run::last_record(&store)
        .map(|r| r.stages.into_iter().filter_map(|s| s.key).collect())
        .unwrap_or_default();
    let total: u64 = entries.iter().map(|(_, s)| s).sum();
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["stage", "key", "rows", "size", "in last run"]);
    for (m, size) in &entries {
        t.add_row([
            m.stage.clone(),
            m.key.chars().take(12).collect(),
            m.rows.map(|r| r.to_string()).unwrap_or_default(),
            human_bytes(*size),
            if live.contains(&m.key) {
                "yes".into()
            } else {
                "no".to_string()
            },
        ]);
    }
    write_stdout(&format!(
        "{t}\n{} entries, {} ({} not used by the last run); {} incomplete\n",
        entries.len(),
        human_bytes(total),
        entries
            .iter()
            .filter(|(m, _)| !live.contains(&m.key))
            .count(),
        bad.len()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// The quarantined rows of the current pipeline's quarantining checks (or
/// of the one named), from the cache entries its plan keys point at.
fn quarantined(
    path: &Path,
    stage: Option<&str>,
    color: Color,
) -> Result<Vec<(String, polars::prelude::DataFrame)>, CliError> {
    use polars::prelude::SerReader;
    let (project, plan) = compiled(path, color)?;
    let checks: Vec<&mlp_compiler::plan::Stage> = plan
        .stages
        .iter()
        .filter(|s| matches!(&s.op, mlp_compiler::plan::Op::Check(c) if c.quarantine))
        .collect();
    let chosen: Vec<&mlp_compiler::plan::Stage> = match stage {
        None => checks,
        Some(name) => {
            let wanted = name.strip_prefix("check.").unwrap_or(name);
            let found: Vec<_> = checks
                .iter()
                .copied()
                .filter(|s| s.name == wanted)
                .collect();
            if found.is_empty() {
                let names: Vec<String> = checks.iter().map(|s| s.name.clone()).collect();
                return Err(CliError::Output(format!(
                    "no quarantining check `{wanted}` in this pipeline (quarantining checks: {})",
                    mlp_compiler::suggest::list(&names, 10)
                )));
            }
            found
        }
    };
    if chosen.is_empty() {
        return Err(CliError::Output(
            "this pipeline has no quarantining check (`check NAME quarantine { ... }`)".into(),
        ));
    }
    let Some(store) = Store::existing(&project.root) else {
        return Err(CliError::Output(
            "nothing has run yet: run `mlp run` first".into(),
        ));
    };
    let mut hashes = FileHashes::load(&store.root);
    let stages = run::plan_stages(&plan, &project.root, Some(&store), &mut hashes);
    let mut out = vec![];
    for st in chosen {
        let sp = stages.iter().find(|p| p.id == st.id);
        let Some(key) = sp.filter(|p| p.cached).and_then(|p| p.key.clone()) else {
            return Err(CliError::Output(format!(
                "check `{}` has not run on the current data and pipeline: run `mlp run` first",
                st.name
            )));
        };
        let file = store.entry_dir(&key).join("quarantine.arrow");
        let df = if file.is_file() {
            let f = std::fs::File::open(&file)
                .map_err(|e| CliError::Output(format!("{}: {e}", file.display())))?;
            polars::prelude::IpcReader::new(f)
                .finish()
                .map_err(|e| CliError::Output(format!("{}: {e}", file.display())))?
        } else {
            polars::prelude::DataFrame::empty()
        };
        out.push((st.name.clone(), df));
    }
    Ok(out)
}

/// `mlp quarantine show [STAGE] [--limit N]`.
pub fn quarantine_show(
    path: &Path,
    stage: Option<&str>,
    limit: usize,
    color: Color,
) -> Result<ExitCode, CliError> {
    let mut text = String::new();
    for (name, df) in quarantined(path, stage, color)? {
        if df.height() == 0 {
            text.push_str(&format!(
                "check `{name}`: no row quarantined

"
            ));
            continue;
        }
        // Why first: the row and the rules it failed, then its values.
        let mut cols: Vec<String> = vec!["_row".into(), "_failed_rules".into()];
        cols.extend(
            df.get_column_names()
                .iter()
                .map(|c| c.to_string())
                .filter(|c| c != "_row" && c != "_failed_rules"),
        );
        let shown = df
            .select(cols.iter().map(String::as_str))
            .map_err(|e| CliError::Output(e.to_string()))?
            .head(Some(limit));
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
        t.set_header(
            cols.iter()
                .map(|c| c.trim_start_matches('_').replace('_', " ")),
        );
        for r in mlp_engine::exec::records(&shown, limit) {
            t.add_row(cols.iter().map(|c| match &r[c.as_str()] {
                serde_json::Value::String(s) => mlp_engine::exec::truncate(s, 200),
                serde_json::Value::Null => String::new(),
                v => v.to_string(),
            }));
        }
        text.push_str(&format!(
            "check `{name}`: {} quarantined
{t}
{}
",
            count_rows(df.height()),
            if df.height() > limit {
                format!(
                    "(first {limit}; `mlp quarantine export {name} --output FILE` writes them all)
"
                )
            } else {
                String::new()
            }
        ));
    }
    write_stdout(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp quarantine export [STAGE] --output FILE`.
pub fn quarantine_export(
    path: &Path,
    stage: Option<&str>,
    output: &Path,
    color: Color,
) -> Result<ExitCode, CliError> {
    FrameSink::new(output)?;
    let mut all = quarantined(path, stage, color)?;
    if all.len() > 1 {
        let names: Vec<String> = all.iter().map(|(n, _)| n.clone()).collect();
        return Err(CliError::Output(format!(
            "several checks quarantine ({}): name one",
            mlp_compiler::suggest::list(&names, 10)
        )));
    }
    let Some((name, mut df)) = all.pop() else {
        return Ok(ExitCode::SUCCESS);
    };
    write_frame_file(&mut df, output)?;
    write_stdout(&format!(
        "wrote {} quarantined by `{name}` to {}
",
        count_rows(df.height()),
        output.display()
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// `mlp cache gc [PATH] [--all]`: removes entries the last run did not use
/// (or every entry), damaged and incomplete entries, and leftovers of
/// interrupted writes.
pub fn cache_gc(path: &Path, all: bool) -> Result<ExitCode, CliError> {
    let root = project_root(path)?;
    let Some(store) = Store::existing(&root) else {
        write_stdout("no cache yet\n")?;
        return Ok(ExitCode::SUCCESS);
    };
    let _lock = store
        .lock(|| eprintln!("waiting for a running `mlp run` to finish..."))
        .map_err(|e| CliError::Output(e.to_string()))?;
    store.clean_tmp();
    let (entries, bad) = store.entries();
    let live: std::collections::HashSet<String> = if all {
        Default::default()
    } else {
        run::last_record(&store)
            .map(|r| r.stages.into_iter().filter_map(|s| s.key).collect())
            .unwrap_or_default()
    };
    let mut freed = 0u64;
    let mut removed = 0usize;
    for (m, size) in entries {
        // Unused entries go, and so do damaged ones (checksum mismatch).
        let keep = live.contains(&m.key) && store.verify(&m.key);
        if !keep && std::fs::remove_dir_all(store.entry_dir(&m.key)).is_ok() {
            freed += size;
            removed += 1;
        }
    }
    for b in bad {
        freed += mlp_store::store::dir_size(&b);
        if std::fs::remove_dir_all(&b).is_ok() {
            removed += 1;
        }
    }
    write_stdout(&format!(
        "removed {removed} entries, freed {}\n",
        human_bytes(freed)
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn project_root(path: &Path) -> Result<std::path::PathBuf, CliError> {
    let p = Project::load(path)?;
    Ok(p.root)
}

fn human_bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

// ---------------------------------------------------------------- models, predict

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

fn registry_at(project: &Path) -> Result<Registry, CliError> {
    Ok(bundle::registry_at(project)?)
}

/// The project's run lock, so an alias move waits for a running `mlp run`
/// (which may be deploying) rather than interleave with it.
fn project_lock(reg: &Registry) -> Result<mlp_store::store::RunLock, CliError> {
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
        .map_err(|e| CliError::Registry(e, None))?;
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
    write_stdout(&format!(
        "model:      {name}\nversion:    {version}\naliases:    {}\nalgorithm:  {} ({})\ntarget:     {}\nfeatures:   {}\nparameters: {}\nmetrics:    {}\nlineage:    plan {}\nhistory:\n{}\n",
        if aliases.is_empty() { "(none)".into() } else { aliases.join(" ") },
        b.model.algorithm,
        format!("{:?}", b.model.task).to_lowercase(),
        b.model.target,
        b.model.features.join(", "),
        serde_json::to_string(&b.model.params).unwrap_or_default(),
        if metrics.is_empty() { "(not evaluated)".into() } else { metrics.join("; ") },
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
fn frame_format(path: &Path) -> Result<&'static str, CliError> {
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
fn write_frame_file(df: &mut polars::prelude::DataFrame, path: &Path) -> Result<(), CliError> {
    let mut sink = FrameSink::new(path)?;
    sink.write(df)?;
    sink.finish()
}

/// A file written one frame at a time (CSV, NDJSON or Parquet, by its
/// extension) through a temporary file renamed into place by `finish`:
/// nothing is left behind if a batch fails, and a sink never finished
/// leaves no file.
struct FrameSink {
    path: std::path::PathBuf,
    format: &'static str,
    tmp: Option<tempfile::NamedTempFile>,
    parquet: Option<polars::io::parquet::write::BatchedWriter<std::fs::File>>,
    rows: usize,
}

impl FrameSink {
    /// A sink for `path`: its format known and its folder there, or an
    /// error before any work is done.
    fn new(path: &Path) -> Result<FrameSink, CliError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(CliError::Output(format!(
                    "{}: the folder `{}` does not exist; create it first",
                    path.display(),
                    dir.display()
                )));
            }
        }
        Ok(FrameSink {
            path: path.to_path_buf(),
            format: frame_format(path)?,
            tmp: None,
            parquet: None,
            rows: 0,
        })
    }

    fn write(&mut self, df: &mut polars::prelude::DataFrame) -> Result<(), CliError> {
        use polars::prelude::*;
        let failed =
            |e: &dyn std::fmt::Display| CliError::Output(format!("{}: {e}", self.path.display()));
        if self.tmp.is_none() {
            let dir = match self.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let mut builder = tempfile::Builder::new();
            builder.prefix(".mlp-output-");
            // As `File::create` would: 0o666 less the umask (a temporary
            // file is otherwise private to its owner).
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                builder.permissions(std::fs::Permissions::from_mode(0o666));
            }
            let tmp = builder.tempfile_in(dir).map_err(|e| failed(&e))?;
            if self.format == "parquet" {
                let file = tmp.reopen().map_err(|e| failed(&e))?;
                self.parquet = Some(
                    ParquetWriter::new(file)
                        .batched(df.schema())
                        .map_err(|e| failed(&e))?,
                );
            }
            self.tmp = Some(tmp);
        }
        let first = self.rows == 0;
        let Some(tmp) = self.tmp.as_mut() else {
            return Ok(());
        };
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
        if let Some(tmp) = self.tmp.take() {
            tmp.persist(&self.path).map_err(|e| failed(&e.error))?;
        }
        Ok(())
    }
}

/// Whether two paths name the same file (an existing `b` with the same
/// device and inode as `a`, or the same canonical path).
fn same_file(a: &Path, b: &Path) -> bool {
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

/// `mlp predict NAME[@alias|@version] --input FILE --output FILE`.
pub fn predict(
    project: &Path,
    spec: &str,
    input: &Path,
    output: &Path,
) -> Result<ExitCode, CliError> {
    let (b, _) = resolve_bundle(project, spec)?;
    if !input.is_file() {
        return Err(CliError::Output(format!(
            "`{}` does not exist",
            input.display()
        )));
    }
    // Both formats, and the output's folder, are checked before any work.
    frame_format(input)?;
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
    let exec_err = |e: mlp_engine::exec::ExecError| CliError::Registry(e.to_string(), e.help());
    let plugins = bundle::load_plugins(
        &b,
        &mlp_plugin_host::Wasmtime,
        Some(&mlp_store::wasm_cache_dir(project)),
    )
    .map_err(exec_err)?;
    // Text outputs write dates and datetimes back in their declared formats.
    let text_out = frame_format(output)? != "parquet";
    // The file is predicted in batches, each written as it comes, so memory
    // stays bounded whatever the input's size.
    let mut good_sink = FrameSink::new(output)?;
    let mut rejected_sink = FrameSink::new(&rej_path)?;
    let (mut predicted, mut rejected_rows) = (0usize, 0usize);
    let mut sink_error: Option<CliError> = None;
    bundle::predict_file_batches(
        &b,
        &plugins,
        input,
        bundle::predict_batch_rows(),
        &mut |good, rejected, _| {
            let dated = |df| {
                if text_out {
                    bundle::dates_as_declared(&b, df)
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
    eprintln!(
        "predicted {} into {}",
        count_rows(predicted),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// "1 row", "2 rows".
fn count_rows(n: usize) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

/// A bundle by spec, with its version, verified against it.
pub fn resolve_bundle(project: &Path, spec: &str) -> Result<(Bundle, String), CliError> {
    Ok(bundle::resolve(project, spec)?)
}

/// `mlp monitor NAME[@alias] --data FILE [--json] [--html FILE]`.
pub fn monitor(
    project: &Path,
    spec: &str,
    data: &Path,
    json: bool,
    html: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let (b, version) = resolve_bundle(project, spec)?;
    if !data.is_file() {
        return Err(CliError::Output(format!(
            "`{}` does not exist",
            data.display()
        )));
    }
    frame_format(data)?;
    if let Some(h) = html.filter(|h| h.is_dir()) {
        return Err(CliError::Output(format!(
            "--html `{}` is a folder; give the report a file name, such as `{}`",
            h.display(),
            h.join("report.html").display()
        )));
    }
    let exec_err = |e: mlp_engine::exec::ExecError| CliError::Registry(e.to_string(), e.help());
    let plugins = bundle::load_plugins(
        &b,
        &mlp_plugin_host::Wasmtime,
        Some(&mlp_store::wasm_cache_dir(project)),
    )
    .map_err(exec_err)?;
    let report =
        mlp_engine::monitor::file_report(&b, &version, &plugins, data).map_err(exec_err)?;
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
    .map_err(|e| CliError::Registry(e, None))?;
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
            "server {url}: model {} version {}, {} requests, window of {} rows",
            body.model,
            &body.version[..body.version.len().min(12)],
            body.requests,
            body.window_rows,
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
