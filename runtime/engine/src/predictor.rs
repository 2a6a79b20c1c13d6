//! `Predictor`: a bundle loaded to predict, the one way `mlp predict`, `mlp
//! monitor` and `mlp serve` load a model (verified against its version, its
//! plugins compiled, its lookup state built) and the one type they predict
//! through.

use crate::bundle::{self, Bundle, LocateError, Rejected};
use crate::exec::ExecError;
use crate::lookup::{LookupError, Lookups};
use crate::monitor::MonitorReport;
use crate::plugins::{PluginHost, Plugins};
use mlp_compiler::plan::SourceColumn;
use polars::prelude::DataFrame;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A bundle ready to predict.
pub struct Predictor {
    pub bundle: Bundle,
    /// The bundle's version (the SHA-256 of its bytes).
    pub version: String,
    pub plugins: Plugins,
    /// The columns a request must carry (those the inference slice reads).
    pub request_columns: Vec<SourceColumn>,
    /// `proba_<class>` per class, in the model's class order (none for a
    /// regression).
    pub probability_columns: Vec<String>,
    /// The project whose data the lookup state is read from.
    root: PathBuf,
    /// The lookup state of the bundle's joins and histories (none when it
    /// has neither), swapped whole when the tables change.
    lookups: RwLock<Option<Arc<Lookups>>>,
}

/// One looked-up table, for `/metrics`.
pub struct LookupTable {
    pub name: String,
    pub rows: usize,
    pub age_seconds: f64,
}

impl Predictor {
    /// Loads the bundle at `path`, which must hash to `version`, compiling
    /// its plugins with `host` (modules cached under `cache`) and building
    /// its lookup state from the data of the project at `root`.
    pub fn load(
        path: &Path,
        version: &str,
        host: &dyn PluginHost,
        cache: Option<&Path>,
        root: &Path,
    ) -> Result<Predictor, LocateError> {
        let (bundle, version) = Bundle::read(path, Some(version))?;
        let plugins = bundle::load_plugins(&bundle, host, cache).map_err(LocateError::Load)?;
        let request_columns = bundle.request_columns();
        let probability_columns = bundle
            .model
            .classes
            .iter()
            .map(|c| mlp_compiler::plan::names::proba_column(c))
            .collect();
        let lookups = if bundle.lookup_stages.is_empty() {
            None
        } else {
            Some(Arc::new(Lookups::build(
                root,
                &bundle.lookup_stages,
                &bundle.stages,
                &plugins,
            )?))
        };
        Ok(Predictor {
            bundle,
            version,
            plugins,
            request_columns,
            probability_columns,
            root: root.to_path_buf(),
            lookups: RwLock::new(lookups),
        })
    }

    /// NAME, NAME@alias, NAME@version or a bundle file, from the project's
    /// registry (compiled modules cached in the project's `.mlp/wasm`).
    pub fn resolve(
        project: &Path,
        spec: &str,
        host: &dyn PluginHost,
    ) -> Result<Predictor, LocateError> {
        let at = bundle::locate(project, spec)?;
        Predictor::load(
            &at.path,
            &at.version,
            host,
            Some(&mlp_store::wasm_cache_dir(project)),
            project,
        )
    }

    /// The lookup state now.
    pub fn lookups(&self) -> Option<Arc<Lookups>> {
        match self.lookups.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Rebuilds the lookup state when a table it was read from changed,
    /// and swaps it in whole. Returns whether it did; on failure the state
    /// in use is kept.
    pub fn refresh_lookups(&self) -> Result<bool, LookupError> {
        let Some(current) = self.lookups() else {
            return Ok(false);
        };
        if !current.changed(&self.root) {
            return Ok(false);
        }
        let fresh = Lookups::build(
            &self.root,
            &self.bundle.lookup_stages,
            &self.bundle.stages,
            &self.plugins,
        )?;
        if let Ok(mut g) = self.lookups.write() {
            *g = Some(Arc::new(fresh));
        }
        Ok(true)
    }

    /// Each looked-up table's rows and age.
    pub fn lookup_tables(&self) -> Vec<LookupTable> {
        let Some(l) = self.lookups() else {
            return vec![];
        };
        let age = l.built.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
        l.sizes()
            .into_iter()
            .map(|(name, rows)| LookupTable {
                name,
                rows,
                age_seconds: age,
            })
            .collect()
    }

    /// Predicts a frame of request rows: the answered rows (with
    /// `prediction` and the probability columns), the rejected ones, and the
    /// model's input frame of the answered rows (for drift).
    pub fn predict_frame(
        &self,
        df: DataFrame,
    ) -> Result<(DataFrame, Rejected, DataFrame), ExecError> {
        let lookups = self.lookups();
        bundle::predict_frame_features(&self.bundle, &self.plugins, lookups.as_deref(), df)
    }

    /// Predicts a file in batches of at most `rows` rows, handing each
    /// batch's answered rows, rejected rows and model inputs to `each`.
    pub fn predict_file_batches(
        &self,
        input: &Path,
        rows: usize,
        each: &mut dyn FnMut(DataFrame, DataFrame, DataFrame) -> Result<(), ExecError>,
    ) -> Result<(), ExecError> {
        let lookups = self.lookups();
        bundle::predict_file_batches(
            &self.bundle,
            &self.plugins,
            lookups.as_deref(),
            input,
            rows,
            each,
        )
    }

    /// The drift and performance report on a file of rows.
    pub fn monitor_file(&self, data: &Path) -> Result<MonitorReport, ExecError> {
        let lookups = self.lookups();
        crate::monitor::file_report(
            &self.bundle,
            &self.version,
            &self.plugins,
            lookups.as_deref(),
            data,
        )
    }

    /// The frame with its dates written in the source's declared formats.
    pub fn dates_as_declared(&self, df: DataFrame) -> Result<DataFrame, ExecError> {
        bundle::dates_as_declared(&self.bundle, df)
    }
}
