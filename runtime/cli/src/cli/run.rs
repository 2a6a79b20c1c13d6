//! `mlp run`, `mlp plan`, the cache and the quarantine.

use super::*;

use mlp_engine::run::{self, Progress, StagePlan, StageResult, StageStatus};
use mlp_store::fingerprint::FileHashes;
use mlp_store::store::Store;

/// Compiles a project, or prints its diagnostics and fails.
pub(crate) fn compiled(
    path: &Path,
    color: Color,
) -> Result<(Project, mlp_compiler::Plan), CliError> {
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

pub(crate) fn plan_table(stages: &[StagePlan]) -> String {
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

pub(crate) fn result_table(results: &[StageResult]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(["stage", "status", "rows", "seconds"]);
    for r in results {
        t.add_row([
            r.id.clone(),
            r.status.to_string(),
            r.rows.map(|n| n.to_string()).unwrap_or_default(),
            if matches!(r.status, StageStatus::Ran | StageStatus::Failed) {
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

pub(crate) fn run_once(path: &Path, opts: &RunOptions, color: Color) -> Result<ExitCode, CliError> {
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
            let line = match r.status {
                StageStatus::Ran => match r.rows {
                    Some(rows) => format!("  ran     {} ({rows} rows, {:.2}s)", r.id, r.seconds),
                    None => format!("  ran     {} ({:.2}s)", r.id, r.seconds),
                },
                StageStatus::Cached => format!("  cached  {}", r.id),
                StageStatus::Failed => format!("  FAILED  {}", r.id),
                StageStatus::Blocked => format!("  blocked {}", r.id),
                StageStatus::Running => format!("  running {}", r.id),
            };
            let mut lines = vec![line];
            lines.extend(r.notes.iter().map(|n| format!("          {n}")));
            // An evaluation's gates, as a table under its metrics.
            if let Some(d) = &r.details {
                let table = crate::render::gate_table(&crate::render::report_gates(d));
                lines.extend(table.lines().map(|l| format!("          {l}")));
            }
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
        .filter(|r| matches!(r.status, StageStatus::Failed | StageStatus::Blocked))
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
            if f.status == StageStatus::Blocked && (f.blocked_by_input || f.error.is_none()) {
                continue;
            }
            eprintln!(
                "\nerror in `{}`: {}",
                f.id,
                f.error.clone().unwrap_or_default()
            );
            if let Some(report) = &f.failure {
                eprintln!("{}", crate::render::failure_table(report));
            }
            if let Some(h) = &f.help {
                eprintln!("  help: {h}");
            }
        }
        eprintln!("\n{}", result_table(&results));
        let ran = results
            .iter()
            .filter(|r| r.status == StageStatus::Ran)
            .count();
        let cached = results
            .iter()
            .filter(|r| r.status == StageStatus::Cached)
            .count();
        eprintln!(
            "{}: {ran} ran, {cached} cached, {} failed or blocked, in {seconds:.2}s (run {})",
            if failed.is_empty() { "done" } else { "failed" },
            failed.len(),
            record.id
        );
    }
    Ok(
        if failed.is_empty() && results.iter().all(|r| r.status != StageStatus::Blocked) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}

/// Re-runs whenever a `.mlp` file, a data file or a plugin under the project
/// changes (the state folder excepted).
pub(crate) fn watch(path: &Path, opts: &RunOptions, color: Color) -> Result<ExitCode, CliError> {
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
pub(crate) fn quarantined(
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
    let (store, stages) = current_entries(&project.root, &plan)?;
    let mut out = vec![];
    for st in chosen {
        let key = cached_key(&stages, st, &format!("check `{}`", st.name))?;
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

/// The cache and every stage's plan for the pipeline and data as they are
/// now (what `mlp run` stored for them is what the keys point at).
fn current_entries(
    root: &Path,
    plan: &mlp_compiler::Plan,
) -> Result<(Store, Vec<StagePlan>), CliError> {
    let Some(store) = Store::existing(root) else {
        return Err(CliError::Output(
            "nothing has run yet: run `mlp run` first".into(),
        ));
    };
    let mut hashes = FileHashes::load(&store.root);
    let stages = run::plan_stages(plan, root, Some(&store), &mut hashes);
    Ok((store, stages))
}

/// The key of a stage's cache entry for the current pipeline and data;
/// `what` names the stage in the error when it has not run on them.
fn cached_key(
    stages: &[StagePlan],
    st: &mlp_compiler::plan::Stage,
    what: &str,
) -> Result<String, CliError> {
    stages
        .iter()
        .find(|p| p.id == st.id)
        .filter(|p| p.cached)
        .and_then(|p| p.key.clone())
        .ok_or_else(|| {
            CliError::Output(format!(
                "{what} has not run on the current data and pipeline: run `mlp run` first"
            ))
        })
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
        let mut cols: Vec<String> = vec![
            mlp_compiler::plan::names::ROW.into(),
            mlp_compiler::plan::names::FAILED_RULES.into(),
        ];
        cols.extend(
            df.get_column_names()
                .iter()
                .map(|c| c.to_string())
                .filter(|c| {
                    c != mlp_compiler::plan::names::ROW
                        && c != mlp_compiler::plan::names::FAILED_RULES
                }),
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

/// `mlp cache export STAGE --output FILE`: a stage's output frame as the
/// cache holds it for the current pipeline and data (its inherited columns
/// read through its base entries).
pub fn cache_export(
    path: &Path,
    stage: &str,
    output: &Path,
    color: Color,
) -> Result<ExitCode, CliError> {
    FrameSink::new(output)?;
    let (project, plan) = compiled(path, color)?;
    let found: Vec<&mlp_compiler::plan::Stage> = match plan.stages.iter().find(|s| s.id == stage) {
        Some(s) => vec![s],
        // By name, among the stages that make frames (an evaluation is
        // named after its model).
        None => plan
            .stages
            .iter()
            .filter(|s| s.name == stage)
            .filter(|s| {
                !matches!(
                    s.op,
                    mlp_compiler::plan::Op::Evaluate(_)
                        | mlp_compiler::plan::Op::Deploy(_)
                        | mlp_compiler::plan::Op::Monitor(_)
                )
            })
            .collect(),
    };
    let st = match found.as_slice() {
        [one] => *one,
        [] => {
            let ids: Vec<String> = plan.stages.iter().map(|s| s.id.clone()).collect();
            let near = mlp_compiler::suggest::did_you_mean(stage, ids.iter().map(String::as_str));
            return Err(CliError::Output(format!(
                "no stage `{stage}` in this pipeline{} (its stages: {})",
                near.map(|n| format!(": {n}")).unwrap_or_default(),
                mlp_compiler::suggest::list(&ids, 12)
            )));
        }
        many => {
            let ids: Vec<String> = many.iter().map(|s| s.id.clone()).collect();
            return Err(CliError::Output(format!(
                "several stages are named `{stage}`: name one by its id ({})",
                ids.join(", ")
            )));
        }
    };
    let (store, stages) = current_entries(&project.root, &plan)?;
    let key = cached_key(&stages, st, &format!("stage `{}`", st.id))?;
    if !store.lookup(&key).is_some_and(|m| m.has_frame()) {
        return Err(CliError::Output(format!(
            "stage `{}` has no output frame (an evaluation's report is in `mlp run --json`, a deploy's bundle in `mlp models show`)",
            st.id
        )));
    }
    let mut df = run::cached_frame(&store, &key).map_err(|e| CliError::Output(e.to_string()))?;
    write_frame_file(&mut df, output)?;
    write_stdout(&format!(
        "wrote {} of `{}` to {}\n",
        count_rows(df.height()),
        st.id,
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
    // Unused entries go, and so do damaged ones (checksum mismatch) with
    // the entries whose frames read columns from them; an entry kept keeps
    // its base entries.
    let bases: std::collections::HashMap<&str, &str> = entries
        .iter()
        .filter_map(|(m, _)| Some((m.key.as_str(), m.base.as_ref()?.key.as_str())))
        .collect();
    // Sound: every file matches its checksum, and a frame's columns are
    // where its entry says.
    let sound: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|(m, _)| {
            store.verify(&m.key)
                && (!m.has_frame() || mlp_engine::stored::check_output(&store, &m.key).is_ok())
        })
        .map(|(m, _)| m.key.as_str())
        .collect();
    let chain = |key: &str| -> Vec<String> {
        let mut keys = vec![key.to_string()];
        while let Some(b) = bases.get(keys[keys.len() - 1].as_str()) {
            if keys.len() > mlp_store::store::MAX_BASE_DEPTH {
                break;
            }
            keys.push(b.to_string());
        }
        keys
    };
    let mut keep: std::collections::HashSet<String> = Default::default();
    for (m, _) in &entries {
        let keys = chain(&m.key);
        if live.contains(&m.key) && keys.iter().all(|k| sound.contains(k.as_str())) {
            keep.extend(keys);
        }
    }
    let mut freed = 0u64;
    let mut removed = 0usize;
    for (m, size) in &entries {
        let keep = keep.contains(&m.key);
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

pub(crate) fn project_root(path: &Path) -> Result<std::path::PathBuf, CliError> {
    let p = Project::load(path)?;
    Ok(p.root)
}

pub(crate) fn human_bytes(n: u64) -> String {
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
