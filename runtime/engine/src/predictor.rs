//! `Predictor`: a bundle loaded to predict, the one way `mlp predict`, `mlp
//! monitor` and `mlp serve` load a model (verified against its version, its
//! plugins compiled) and the one type they predict through.

use crate::bundle::{self, Bundle, LocateError, Rejected};
use crate::exec::ExecError;
use crate::monitor::MonitorReport;
use crate::plugins::{PluginHost, Plugins};
use mlp_compiler::plan::SourceColumn;
use polars::prelude::DataFrame;
use std::path::Path;

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
}

impl Predictor {
    /// Loads the bundle at `path`, which must hash to `version`, compiling
    /// its plugins with `host` (modules cached under `cache`).
    pub fn load(
        path: &Path,
        version: &str,
        host: &dyn PluginHost,
        cache: Option<&Path>,
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
        Ok(Predictor {
            bundle,
            version,
            plugins,
            request_columns,
            probability_columns,
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
        )
    }

    /// Predicts a frame of request rows: the answered rows (with
    /// `prediction` and the probability columns), the rejected ones, and the
    /// model's input frame of the answered rows (for drift).
    pub fn predict_frame(
        &self,
        df: DataFrame,
    ) -> Result<(DataFrame, Rejected, DataFrame), ExecError> {
        bundle::predict_frame_features(&self.bundle, &self.plugins, df)
    }

    /// Predicts a file in batches of at most `rows` rows, handing each
    /// batch's answered rows, rejected rows and model inputs to `each`.
    pub fn predict_file_batches(
        &self,
        input: &Path,
        rows: usize,
        each: &mut dyn FnMut(DataFrame, DataFrame, DataFrame) -> Result<(), ExecError>,
    ) -> Result<(), ExecError> {
        bundle::predict_file_batches(&self.bundle, &self.plugins, input, rows, each)
    }

    /// The drift and performance report on a file of rows.
    pub fn monitor_file(&self, data: &Path) -> Result<MonitorReport, ExecError> {
        crate::monitor::file_report(&self.bundle, &self.version, &self.plugins, data)
    }

    /// The frame with its dates written in the source's declared formats.
    pub fn dates_as_declared(&self, df: DataFrame) -> Result<DataFrame, ExecError> {
        bundle::dates_as_declared(&self.bundle, df)
    }
}
