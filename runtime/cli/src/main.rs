//! The `mlp` command line: argument parsing and output, nothing else.
//!
//! Each subcommand reads what it needs through `mlp_engine::project` and the
//! pure compiler, and renders the result for a terminal or as JSON.

use clap::{Parser, Subcommand, ValueEnum};
use mlp_compiler::graph::GraphFormat;
mod cli;
mod render;
mod scaffold;
use std::path::PathBuf;
use std::process::ExitCode;

// polars allocates and frees large buffers at a high rate; mimalloc returns
// memory to the system sooner and is faster at it than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mlp",
    version,
    about = "Compile and run declarative machine-learning pipelines",
    long_about = None
)]
struct Cli {
    /// Colour output: auto, always, never.
    #[arg(long, global = true, default_value = "auto")]
    color: cli::Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a pipeline: report every mistake before any data is read.
    Check {
        /// A .mlp file, or a directory whose .mlp files form one project.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print diagnostics as JSON (one object with a `diagnostics` array).
        #[arg(long)]
        json: bool,
        /// Print the compiled plan as JSON when the pipeline checks.
        #[arg(long, conflicts_with = "json")]
        plan: bool,
    },
    /// Explain a diagnostic code, for example `mlp explain E0201`.
    Explain { code: String },
    /// Print the pipeline's stage graph.
    Graph {
        /// A .mlp file, or a directory whose .mlp files form one project.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// `dot` (Graphviz) or `mermaid`.
        #[arg(long, value_enum, default_value = "dot")]
        format: Format,
    },
    /// Show every stage: cached or to run, and why.
    Plan {
        /// A .mlp file, or a directory whose .mlp files form one project.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the pipeline, recomputing only the stages whose inputs changed.
    Run {
        /// A .mlp file, or a directory whose .mlp files form one project.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Print the run summary as JSON.
        #[arg(long)]
        json: bool,
        /// Re-run whenever a pipeline, data or plugin file changes.
        #[arg(long)]
        watch: bool,
        /// How many independent stages may run at once (at least 1).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: u16,
    },
    /// The model registry: list, show, promote, rollback.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        /// The project whose registry to use.
        #[arg(long, global = true, default_value = ".")]
        project: PathBuf,
    },
    /// Predict a file of rows with a registered model (or a bundle file).
    Predict {
        /// NAME, NAME@alias, NAME@version, or a bundle file.
        model: String,
        /// The rows to predict: .csv, .parquet or .ndjson, with the source's columns (the target may be absent).
        #[arg(long)]
        input: PathBuf,
        /// Where to write the predictions (format by extension); rows that fail the checks go to OUTPUT's stem + `.rejected`.
        #[arg(long)]
        output: PathBuf,
        /// The project whose `.mlp/registry` holds the model.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Serve a registered model (or a bundle file) over REST.
    Serve {
        /// NAME, NAME@alias, NAME@version, or a bundle file. An alias is
        /// followed: a promote or rollback is picked up without a restart.
        model: String,
        /// The port to listen on.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The largest request body accepted, in bytes.
        #[arg(long, default_value_t = 16 << 20)]
        max_body: usize,
        /// Seconds a connection may take to send a request's headers (an
        /// idle keep-alive connection included) before it is closed.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        header_timeout: u64,
        /// The project whose `.mlp/registry` holds the model.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Compare new data (or a server's window) with a model's training statistics
    ///
    /// Drift per feature, and the model's metrics when the data carries the
    /// target. Exit 1 when a threshold is breached.
    Monitor {
        /// NAME, NAME@alias, NAME@version, or a bundle file (with --data).
        model: Option<String>,
        /// The new rows: .csv, .parquet or .ndjson, with the source's columns.
        #[arg(long, required_unless_present = "server", conflicts_with = "server")]
        data: Option<PathBuf>,
        /// Instead of a file: ask a running `mlp serve` (http://HOST:PORT)
        /// for its window's drift, latency and error rate, and check the
        /// monitor block's `latency` and `error_rate` rules.
        #[arg(long)]
        server: Option<String>,
        /// With --server: seconds to wait for the server to connect and
        /// answer before giving up.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write an HTML report (a histogram per drifting feature).
        #[arg(long)]
        html: Option<PathBuf>,
        /// The project whose `.mlp/registry` holds the model.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// Write Wasm feature plugins: scaffold a crate, build it.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Read the rows a quarantining check set aside, with the rules they failed.
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
    },
    /// Inspect or clean the stage cache in `.mlp/`.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Print a `source` block inferred from a sample of a CSV, NDJSON or Parquet file.
    Infer {
        /// A .csv, .ndjson or .parquet file; a SQLite database with
        /// --table; or a PostgreSQL table: `env:VARIABLE` (the address in
        /// that variable) or an address, with --table.
        file: PathBuf,
        /// The source's name (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
        /// How many rows to sample (levels of categories are declared only
        /// when the sample holds the whole file).
        #[arg(long, default_value_t = 10_000)]
        rows: usize,
        /// The folder (or .mlp file) the block is for: the path is printed
        /// relative to it, as pipelines name their files.
        #[arg(long = "for", value_name = "PIPELINE", default_value = ".")]
        for_pipeline: PathBuf,
        /// A table of a SQLite database (FILE is then the database: .db,
        /// .sqlite, .sqlite3).
        #[arg(long)]
        table: Option<String>,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Every registered model with its versions and aliases.
    List,
    /// One version: NAME, NAME@alias or NAME@version.
    Show { model: String },
    /// Point an alias at a version.
    Promote {
        name: String,
        version: String,
        alias: String,
    },
    /// Move an alias back to the version it pointed at before.
    Rollback { name: String, alias: String },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Create a plugin crate NAME/ that builds as it is.
    New {
        /// The crate's name (lowercase, `_` or `-`).
        name: String,
        /// The mlp-plugin SDK crate (default: the one this mlp was built with).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32 and copy NAME.wasm into its folder.
    Build {
        /// The plugin crate's folder.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Print the quarantined rows (every quarantining check, or STAGE's).
    Show {
        /// A check's name (`houses` or `check.houses`); all when omitted.
        stage: Option<String>,
        /// The project folder (or one of its .mlp files).
        #[arg(long, default_value = ".")]
        path: PathBuf,
        /// How many rows to print per check.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Write a check's quarantined rows to a file (.csv, .parquet or .ndjson).
    Export {
        /// A check's name; may be omitted when only one check quarantines.
        stage: Option<String>,
        /// Where to write the rows (format by extension).
        #[arg(long)]
        output: PathBuf,
        /// The project folder (or one of its .mlp files).
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
    /// List the cache entries and their sizes.
    Status {
        /// The project folder (or one of its .mlp files).
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Write a stage's output frame, as the last run computed it, to a
    /// file (.csv, .parquet or .ndjson).
    Export {
        /// The stage: its id (`split.data`) or its name when only one
        /// stage has it.
        stage: String,
        /// Where to write the rows (format by extension).
        #[arg(long)]
        output: PathBuf,
        /// The project folder (or one of its .mlp files).
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
    /// Remove entries the last run did not use (all entries with --all).
    Gc {
        /// The project folder (or one of its .mlp files).
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Remove every entry, including the last run's.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Dot,
    Mermaid,
}

/// The stack of every thread this process starts (stage runners, polars'
/// pool, the server's workers): expressions as deep as the compiler allows
/// (`MAX_EXPR_DEPTH`) are walked recursively by polars and by us, and 2 MiB,
/// Rust's default, is not enough for them in every build.
const THREAD_STACK: &str = "16777216";

fn main() -> ExitCode {
    // Read by std when a thread is spawned without an explicit size; set
    // before any thread exists (a caller's own setting wins).
    if std::env::var_os("RUST_MIN_STACK").is_none() {
        std::env::set_var("RUST_MIN_STACK", THREAD_STACK);
    }
    let args = Cli::parse();
    let result = match args.command {
        Command::Check { path, json, plan } => cli::check(&path, json, plan, args.color),
        Command::Explain { code } => cli::explain(&code),
        Command::Graph { path, format } => cli::graph(
            &path,
            match format {
                Format::Dot => GraphFormat::Dot,
                Format::Mermaid => GraphFormat::Mermaid,
            },
            args.color,
        ),
        Command::Infer {
            file,
            name,
            rows,
            for_pipeline,
            table,
        } => cli::infer(
            &file,
            name.as_deref(),
            rows,
            &for_pipeline,
            table.as_deref(),
        ),
        Command::Plan { path, json } => cli::plan(&path, json, args.color),
        Command::Run {
            path,
            json,
            watch,
            jobs,
        } => cli::run(
            &path,
            &cli::RunOptions {
                json,
                watch,
                jobs: jobs.into(),
            },
            args.color,
        ),
        Command::Models { command, project } => match command {
            ModelsCommand::List => cli::models_list(&project),
            ModelsCommand::Show { model } => cli::models_show(&project, &model),
            ModelsCommand::Promote {
                name,
                version,
                alias,
            } => cli::models_promote(&project, &name, &version, &alias),
            ModelsCommand::Rollback { name, alias } => {
                cli::models_rollback(&project, &name, &alias)
            }
        },
        Command::Predict {
            model,
            input,
            output,
            project,
        } => cli::predict(&project, &model, &input, &output),
        Command::Serve {
            model,
            port,
            host,
            max_body,
            header_timeout,
            project,
        } => cli::serve(&project, &model, &host, port, max_body, header_timeout),
        Command::Monitor {
            model,
            data,
            server,
            timeout,
            json,
            html,
            project,
        } => match (server, data, model) {
            (Some(url), _, _) => cli::monitor_server(&url, json, timeout),
            (None, Some(data), Some(model)) => {
                cli::monitor(&project, &model, &data, json, html.as_deref())
            }
            _ => Err(cli::CliError::Registry(
                "name the model to monitor".into(),
                Some("mlp monitor NAME[@alias] --data FILE, or mlp monitor --server URL".into()),
            )),
        },
        Command::Plugin { command } => match command {
            PluginCommand::New { name, sdk } => scaffold::new(&name, sdk.as_deref()),
            PluginCommand::Build { dir } => scaffold::build(&dir),
        },
        Command::Quarantine { command } => match command {
            QuarantineCommand::Show { stage, path, limit } => {
                cli::quarantine_show(&path, stage.as_deref(), limit, args.color)
            }
            QuarantineCommand::Export {
                stage,
                output,
                path,
            } => cli::quarantine_export(&path, stage.as_deref(), &output, args.color),
        },
        Command::Cache { command } => match command {
            CacheCommand::Status { path } => cli::cache_status(&path),
            CacheCommand::Gc { path, all } => cli::cache_gc(&path, all),
            CacheCommand::Export {
                stage,
                output,
                path,
            } => cli::cache_export(&path, &stage, &output, args.color),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(help) = e.help() {
                eprintln!("  help: {help}");
            }
            ExitCode::from(2)
        }
    }
}
