//! Models as numbers, with no data frame library and no training library:
//! a bundle's fitted model ([`fitted`]) predicts with this crate alone.
//!
//! - [`fitted`]: the fitted forms (linear, softmax, trees, forests, kernels,
//!   naive Bayes) and their row-by-row prediction.
//! - [`metrics`]: regression and classification metrics, as scikit-learn's.
//! - [`drift`]: the drift statistics (PSI, Jensen-Shannon, χ², KS,
//!   Wasserstein) and the binning they use.
//! - [`history`]: point-in-time aggregates over each key's events (the one
//!   implementation of `history` for training and serving).

pub mod drift;
pub mod fitted;
pub mod history;
pub mod metrics;
