//! `model`: fit on the `train` rows, tune by K-fold cross-validation, and
//! predict every row.
//!
//! This module turns frames into numbers (the design matrix, the target)
//! and back (prediction columns); `mlp-fit` fits and tunes, and the fitted
//! model is stored as plain numbers (`mlp_ml::fitted::Fitted`) in
//! `model.json`, so predicting needs neither the training library nor the
//! training data. The output frame is the input with `prediction` (and
//! `proba_<class>` columns for classifiers) added.

use super::{input, partition_column, Context, ExecError, Output};
use mlp_compiler::plan::{ModelOp, ParamValue, Task};
pub use mlp_fit::Target;
use mlp_fit::Trained;
pub use mlp_ml::fitted::{decide, Fitted, ModelFile, Prediction};
use ndarray::{Array1, Array2};
use polars::prelude::*;
use serde_json::json;

/// The model's input columns in the frame, one-hot groups (`city_*`)
/// expanded to the columns the fitted encoding produced.
pub fn feature_columns(df: &DataFrame, op: &ModelOp) -> Vec<String> {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut out = vec![];
    for f in &op.features {
        if let Some(prefix) = f.strip_suffix('*') {
            out.extend(
                names
                    .iter()
                    .filter(|n| n.starts_with(prefix) && !op.features.contains(n))
                    .cloned(),
            );
        } else {
            out.push(f.clone());
        }
    }
    out
}

/// Per row, its first input that is missing (`None`) or not finite, by
/// column.
pub type BadInputs = Vec<Option<(String, Option<f64>)>>;

/// What `fill_design` does with a missing or non-finite input: (row,
/// column, value).
pub type OnBadInput<'a> = dyn FnMut(usize, &str, Option<f64>) -> Result<(), ExecError> + 'a;

/// Rows of the design matrix filled at a time by one thread (a block's
/// rows stay in cache while its columns are written across them).
const FILL_ROWS: usize = 1024;

/// A category input's values as level codes (its level's place in
/// `levels`); a missing value, or a level not in the list (one the model
/// never saw), is NaN: a missing value, as scikit-learn reads an unknown
/// category.
fn level_codes(column: &Column, levels: &[String]) -> Result<Float64Chunked, ExecError> {
    let code: std::collections::HashMap<&str, f64> = levels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as f64))
        .collect();
    let s = column.cast(&DataType::String).map_err(ExecError::polars)?;
    let codes: Vec<f64> = s
        .str()
        .map_err(ExecError::polars)?
        .iter()
        .map(|v| v.and_then(|v| code.get(v).copied()).unwrap_or(f64::NAN))
        .collect();
    Ok(Float64Chunked::from_vec(column.name().clone(), codes))
}

/// One model input's values for every row of the data, as one slice:
/// the column itself when every value is there and finite (the common
/// case: no copy), else a copy with NaN for a missing value the algorithm
/// splits itself and 0 for one `on_bad` recorded.
pub enum InputColumn {
    Whole(Float64Chunked),
    Filled(Vec<f64>),
}

impl InputColumn {
    pub fn values(&self) -> &[f64] {
        match self {
            // Rechunked without nulls when it was found whole.
            InputColumn::Whole(ca) => ca.cont_slice().unwrap_or(&[]),
            InputColumn::Filled(v) => v,
        }
    }
}

/// The model's inputs, one [`InputColumn`] each, in order (a category
/// input as its level codes). A missing or non-finite value (of any row
/// of the data, column by column) is NaN for an algorithm that splits
/// missing values itself, else handed to `on_bad(row, column, value)`,
/// which either records it (its cell stays 0) or fails.
pub fn input_columns(
    df: &DataFrame,
    model: &ModelFile,
    on_bad: &mut OnBadInput,
) -> Result<Vec<InputColumn>, ExecError> {
    use rayon::prelude::*;
    let columns = &model.features;
    let missing_ok = mlp_compiler::catalog::accepts_missing(model.algorithm.as_str());
    let mut chunked = Vec::with_capacity(columns.len());
    for c in columns {
        let column = df.column(c).map_err(ExecError::polars)?;
        if let Some(levels) = model.categories.get(c) {
            chunked.push(level_codes(column, levels)?);
            continue;
        }
        let s = column.cast(&DataType::Float64).map_err(ExecError::polars)?;
        chunked.push(s.f64().map_err(ExecError::polars)?.rechunk().into_owned());
    }
    // Which columns are whole and finite, on every core (branch-free over
    // pieces: at memory speed).
    let whole: Vec<bool> = chunked
        .par_iter()
        .map(|ca| {
            ca.cont_slice().is_ok_and(|v| {
                v.chunks(1024)
                    .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite()))
            })
        })
        .collect();
    let mut values = Vec::with_capacity(columns.len());
    for ((ca, c), whole) in chunked.into_iter().zip(columns).zip(whole) {
        if whole {
            values.push(InputColumn::Whole(ca));
            continue;
        }
        let mut out = Vec::with_capacity(ca.len());
        for (i, v) in ca.iter().enumerate() {
            out.push(match v {
                Some(v) if v.is_finite() => v,
                // An algorithm that splits missing values itself (NaN).
                None if missing_ok => f64::NAN,
                Some(v) if missing_ok && v.is_nan() => f64::NAN,
                other => {
                    on_bad(i, c, other)?;
                    0.0
                }
            });
        }
        values.push(InputColumn::Filled(out));
    }
    Ok(values)
}

/// The model's design matrix of every data row, row-major: one column per
/// input, in order ([`input_columns`], whose `on_bad` this takes).
fn fill_design(
    df: &DataFrame,
    model: &ModelFile,
    on_bad: &mut OnBadInput,
) -> Result<Array2<f64>, ExecError> {
    let inputs = input_columns(df, model, on_bad)?;
    let values: Vec<&[f64]> = inputs.iter().map(InputColumn::values).collect();
    design_matrices(&values, df.height(), &[None])?
        .pop()
        .ok_or_else(|| ExecError::Internal("a design matrix expected".into()))
}

/// Row-major design matrices of the inputs' columns (`height` values
/// each), one per selection of rows (every row for `None`).
fn design_matrices(
    values: &[&[f64]],
    height: usize,
    selections: &[Option<&[usize]>],
) -> Result<Vec<Array2<f64>>, ExecError> {
    use rayon::prelude::*;
    selections
        .iter()
        .map(|rows| {
            let n = rows.map_or(height, <[usize]>::len);
            let d = values.len();
            let mut x = Array2::<f64>::zeros((n, d));
            if d > 0 {
                let out = x.as_slice_mut().ok_or_else(|| {
                    ExecError::Internal("a design matrix not in row order".into())
                })?;
                out.par_chunks_mut(FILL_ROWS * d)
                    .enumerate()
                    .for_each(|(block, out)| {
                        let first = block * FILL_ROWS;
                        let len = out.len() / d;
                        // Column by column: the block's cells of column j
                        // are every d-th cell from the j-th.
                        for (j, col) in values.iter().enumerate() {
                            let cells = out.iter_mut().skip(j).step_by(d);
                            match rows {
                                None => {
                                    for (o, v) in cells.zip(&col[first..first + len]) {
                                        *o = *v;
                                    }
                                }
                                Some(r) => {
                                    for (o, &i) in cells.zip(&r[first..first + len]) {
                                        *o = col[i];
                                    }
                                }
                            }
                        }
                    });
            }
            Ok(x)
        })
        .collect()
}

/// As [`design`], for prediction: a row with a missing or non-finite input
/// does not fail the batch; it is reported (the first such column and its
/// value) and its row of the matrix is left at zero, for the caller to
/// reject.
pub fn design_rows(
    df: &DataFrame,
    model: &ModelFile,
) -> Result<(Array2<f64>, BadInputs), ExecError> {
    let mut bad: BadInputs = vec![None; df.height()];
    let x = fill_design(df, model, &mut |i, c, v| {
        if bad[i].is_none() {
            bad[i] = Some((c.to_string(), v));
        }
        Ok(())
    })?;
    Ok((x, bad))
}

/// The design matrix of the given rows (row-major, one column per input);
/// a missing or non-finite value fails, naming its column and row.
pub fn design(df: &DataFrame, model: &ModelFile) -> Result<Array2<f64>, ExecError> {
    fill_design(df, model, &mut |i, c, _| Err(bad_input(i, c)))
}

/// Model input `column` missing or infinite at data row `row` (from 0).
fn bad_input(row: usize, column: &str) -> ExecError {
    ExecError::Data(format!(
        "model input `{column}` has a missing or infinite value at row {} of the data; impute it, or filter the row",
        row + 1
    ))
}

/// The inputs an algorithm takes as categories (text columns: the checker
/// lets a `category` reach only an algorithm that splits categories), each
/// with its levels: the distinct values of the training rows, sorted (as
/// scikit-learn's `OrdinalEncoder` finds them). More levels than the
/// model's `max_bins` fail, naming the column.
fn categories_of(
    df: &DataFrame,
    op: &ModelOp,
    features: &[String],
    train_idx: &[usize],
) -> Result<std::collections::BTreeMap<String, Vec<String>>, ExecError> {
    let mut out = std::collections::BTreeMap::new();
    if !mlp_compiler::catalog::accepts_categories(op.algorithm.as_str()) {
        return Ok(out);
    }
    let max_bins = match op.params.get("max_bins") {
        Some(ParamValue::Int(b)) => (*b).clamp(2, 255) as usize,
        _ => 255,
    };
    // The training rows, taken once the first text input needs them.
    let mut idx = None;
    for f in features {
        let column = df.column(f).map_err(ExecError::polars)?;
        if !matches!(column.dtype(), DataType::String) {
            continue;
        }
        let idx = idx.get_or_insert_with(|| {
            IdxCa::from_vec(
                "i".into(),
                train_idx.iter().map(|&i| i as IdxSize).collect(),
            )
        });
        let levels = distinct_of(&column.take(idx).map_err(ExecError::polars)?)?;
        if levels.len() > max_bins {
            return Err(ExecError::Data(format!(
                "category input `{f}` has {} levels in `train`, and {} splits at most max_bins = {max_bins} levels natively: encode it in a transform (`encode {f} with onehot` or `with ordinal`), group its rare levels, or exclude it",
                levels.len(),
                op.algorithm.as_str()
            )));
        }
        out.insert(f.clone(), levels);
    }
    Ok(out)
}

/// The target of the given rows, and the class labels.
/// The training rows' weights from the `sample_weight` column: finite and
/// at least 0, and not all 0 (a message names the row otherwise).
fn sample_weights(
    train: &DataFrame,
    op: &ModelOp,
    row_of: &dyn Fn(usize) -> usize,
) -> Result<Option<Vec<f64>>, ExecError> {
    let Some(ParamValue::Str(column)) = op.params.get("sample_weight") else {
        return Ok(None);
    };
    let s = train
        .column(column)
        .and_then(|c| c.cast(&DataType::Float64))
        .map_err(ExecError::polars)?;
    let mut out = Vec::with_capacity(train.height());
    for (i, v) in s.f64().map_err(ExecError::polars)?.iter().enumerate() {
        match v {
            Some(w) if w.is_finite() && w >= 0.0 => out.push(w),
            other => {
                return Err(ExecError::Data(format!(
                    "`sample_weight = {column}` is {} at row {} of the data; weights are numbers >= 0 (filter the row, or fix the value)",
                    match other {
                        None => "missing".to_string(),
                        Some(w) => w.to_string(),
                    },
                    row_of(i)
                )))
            }
        }
    }
    if out.iter().all(|w| *w == 0.0) {
        return Err(ExecError::Data(format!(
            "`sample_weight = {column}` is 0 on every training row: nothing would be fitted"
        )));
    }
    Ok(Some(out))
}

fn target(df: &DataFrame, op: &ModelOp, classes: &[String]) -> Result<Target, ExecError> {
    let c = df.column(&op.target).map_err(ExecError::polars)?;
    match op.task {
        Task::Regression => {
            let s = c.cast(&DataType::Float64).map_err(ExecError::polars)?;
            let v: Vec<f64> = s
                .f64()
                .map_err(ExecError::polars)?
                .iter()
                .map(|v| v.unwrap_or(f64::NAN))
                .collect();
            Ok(Target::Values(Array1::from(v)))
        }
        Task::Classification => {
            let idx = class_codes(c, classes, &format!("target `{}`", op.target))?;
            Ok(Target::Classes(Array1::from(idx), classes.len()))
        }
    }
}

/// target values of the train rows.
pub fn classes_of(op: &ModelOp, train: &DataFrame) -> Result<Vec<String>, ExecError> {
    match &op.classes {
        Some(c) => Ok(c.clone()),
        None => distinct_text(train, &op.target),
    }
}

/// The sorted distinct non-null values of a column, as text.
pub fn distinct_text(df: &DataFrame, column: &str) -> Result<Vec<String>, ExecError> {
    distinct_of(df.column(column).map_err(ExecError::polars)?)
}

/// The sorted distinct non-null values of a column, as text.
fn distinct_of(column: &Column) -> Result<Vec<String>, ExecError> {
    // The distinct values first, then as text (not a string per row).
    let distinct = column
        .unique()
        .and_then(|u| u.cast(&DataType::String))
        .map_err(ExecError::polars)?;
    let mut v: Vec<String> = distinct
        .str()
        .map_err(ExecError::polars)?
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// Class indices of a column of labels.
pub fn class_indices(c: &Column, classes: &[String]) -> Result<Array1<usize>, ExecError> {
    Ok(Array1::from(class_codes(
        c,
        classes,
        &format!("`{}`", c.name()),
    )?))
}

/// Each row's class: its value's place in `classes` (a value as text, as
/// the classes are; a bool column is read as bools, "false" and "true").
/// A null, or a value not among the classes, fails naming `what` and the
/// row.
fn class_codes(c: &Column, classes: &[String], what: &str) -> Result<Vec<usize>, ExecError> {
    let null = |i: usize| ExecError::Data(format!("{what} is null at row {}", i + 1));
    let unknown = |i: usize, v: &str| {
        ExecError::Data(format!(
            "{what} has the value \"{v}\" at row {}, which is not a training class",
            i + 1
        ))
    };
    let place = |v: &str| classes.iter().position(|c| c == v);
    if let Ok(b) = c.bool() {
        let (f, t) = (place("false"), place("true"));
        let mut idx = Vec::with_capacity(c.len());
        for (i, v) in b.iter().enumerate() {
            let v = v.ok_or_else(|| null(i))?;
            let text = if v { "true" } else { "false" };
            idx.push(if v { t } else { f }.ok_or_else(|| unknown(i, text))?);
        }
        return Ok(idx);
    }
    let s = c.cast(&DataType::String).map_err(ExecError::polars)?;
    let mut idx = Vec::with_capacity(c.len());
    for (i, v) in s.str().map_err(ExecError::polars)?.iter().enumerate() {
        let v = v.ok_or_else(|| null(i))?;
        idx.push(place(v).ok_or_else(|| unknown(i, v))?);
    }
    Ok(idx)
}

/// The predictions of the rows marked in `first` (in order) and of the
/// others, put back in the frame's row order.
fn merge_rows(
    first: Prediction,
    rest: Prediction,
    is_first: &[bool],
) -> Result<Prediction, ExecError> {
    let (mut a, mut b) = (0usize, 0usize);
    let mismatch = || ExecError::Internal("the fit's scores do not match the training rows".into());
    let n_first = is_first.iter().filter(|t| **t).count();
    let rows = |p: &Prediction| match p {
        Prediction::Values(v) => v.len(),
        Prediction::Probabilities(p) => p.nrows(),
    };
    if rows(&first) != n_first || rows(&rest) != is_first.len() - n_first {
        return Err(mismatch());
    }
    match (first, rest) {
        (Prediction::Values(f), Prediction::Values(r)) => {
            let mut out = Vec::with_capacity(is_first.len());
            for &t in is_first {
                let v = if t { f.get(a) } else { r.get(b) };
                out.push(*v.ok_or_else(mismatch)?);
                if t {
                    a += 1
                } else {
                    b += 1
                }
            }
            Ok(Prediction::Values(out.into()))
        }
        (Prediction::Probabilities(f), Prediction::Probabilities(r)) => {
            let k = f.ncols();
            if r.ncols() != k && r.nrows() > 0 {
                return Err(mismatch());
            }
            let (f, r) = (f.as_standard_layout(), r.as_standard_layout());
            let (Some(f), Some(r)) = (f.as_slice(), r.as_slice()) else {
                return Err(mismatch());
            };
            let mut out = Vec::with_capacity(is_first.len() * k);
            for &t in is_first {
                let row = if t {
                    a += 1;
                    f.get((a - 1) * k..a * k)
                } else {
                    b += 1;
                    r.get((b - 1) * k..b * k)
                };
                out.extend_from_slice(row.ok_or_else(mismatch)?);
            }
            ndarray::Array2::from_shape_vec((is_first.len(), k), out)
                .map(Prediction::Probabilities)
                .map_err(|_| mismatch())
        }
        _ => Err(mismatch()),
    }
}

/// A classifier's columns for rows of class probabilities: `prediction`,
/// each row's class ([`decide`]) as its label, gathered from the labels (a
/// row's text is a copy of its label's 16-byte view, the labels' bytes
/// shared, not a string built per row: with the class decision, 17-24 ms
/// for a million rows where building the strings took 37-43 ms), then
/// each class's `proba_<class>`.
pub fn class_columns(
    p: &Array2<f64>,
    classes: &[String],
    threshold: Option<f64>,
) -> Result<Vec<Column>, ExecError> {
    let labels = Series::new("prediction".into(), classes);
    let rows: Vec<IdxSize> = decide(p, threshold)
        .into_iter()
        .map(|c| IdxSize::try_from(c).unwrap_or(IdxSize::MAX))
        .collect();
    let prediction = labels
        .take(&IdxCa::from_vec("rows".into(), rows))
        .map_err(|e| ExecError::Internal(format!("a predicted class without a label: {e}")))?;
    let mut columns = vec![prediction.into_column()];
    for (j, c) in classes.iter().enumerate() {
        columns.push(Column::new(
            mlp_compiler::plan::names::proba_column(c).into(),
            p.column(j).to_vec(),
        ));
    }
    Ok(columns)
}

pub fn run(op: &ModelOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let part = partition_column(cx)
        .ok_or_else(|| ExecError::Internal("a model on a stage without a split".into()))?;
    // The training rows of the columns read from them (the target, the
    // split, the weights: distinct columns, the checker makes sure), not of
    // the whole frame.
    let mut read = vec![op.target.clone(), part.clone()];
    if let Some(ParamValue::Str(w)) = op.params.get("sample_weight") {
        read.push(w.clone());
    }
    // Which rows of the input are training rows.
    let mask = super::train_mask(&df, &part)?;
    let is_train = super::mask_flags(&mask);
    let train = df
        .select(read)
        .and_then(|d| d.filter(&mask))
        .map_err(ExecError::polars)?;
    if train.height() == 0 {
        return Err(ExecError::Data("no rows in `train` to fit on".into()));
    }
    let train_idx: Vec<usize> = (0..is_train.len()).filter(|i| is_train[*i]).collect();
    let features = feature_columns(&df, op);
    let classes: Vec<String> = match op.task {
        Task::Regression => vec![],
        Task::Classification => classes_of(op, &train)?,
    };
    if op.task == Task::Classification {
        let present = distinct_text(&train, &op.target)?;
        if classes.len() < 2 || present.len() < 2 {
            return Err(ExecError::Data(format!(
                "target `{}` has {} in `train`; a classifier needs rows of at least two classes (check the data, the filters upstream, or the split)",
                op.target,
                match present.as_slice() {
                    [] => "no values".to_string(),
                    [one] => format!("one class only (\"{one}\")"),
                    _ => format!("{} classes", present.len()),
                }
            )));
        }
    }
    let base = ModelFile {
        algorithm: op.algorithm,
        task: op.task.clone(),
        target: op.target.clone(),
        categories: categories_of(&df, op, &features, &train_idx)?,
        features,
        classes: classes.clone(),
        params: op.params.clone(),
        fitted: Fitted::Linear {
            weights: vec![],
            intercept: 0.0,
        },
    };
    // The training rows' inputs and the other rows', in one pass (a missing
    // or infinite input of any row is named by its row of the data).
    let inputs = input_columns(&df, &base, &mut |i, c, _| Err(bad_input(i, c)))?;
    let values: Vec<&[f64]> = inputs.iter().map(InputColumn::values).collect();
    let y = target(&train, op, &classes)?;
    let sample = sample_weights(&train, op, &|i| train_idx.get(i).map_or(i + 1, |r| r + 1))?;
    // An algorithm that reads columns fits from them without a design
    // matrix (`mlp_fit::train_columns`), and predicts every row from them
    // (a linear model) or keeps its training rows' scores (gradient
    // boosting: only the other rows get a matrix); the others get the
    // training rows' matrix and the other rows'.
    let rest_idx: Vec<usize> = (0..is_train.len()).filter(|i| !is_train[*i]).collect();
    let (trained, predicted) =
        match mlp_fit::train_columns(op, &values, &train_idx, &y, sample.as_deref(), base.clone())?
        {
            Some(mut trained) => {
                let model = &trained.model;
                let predicted = match trained.scores.take() {
                    // The training rows' predictions from the scores the fit
                    // left (the same bits as predicting them); the other
                    // rows' matrix predicted.
                    Some(z) => {
                        let rest = design_matrices(&values, df.height(), &[Some(&rest_idx)])?
                            .pop()
                            .ok_or_else(|| {
                                ExecError::Internal("a design matrix expected".into())
                            })?;
                        merge_rows(model.predict_scores(z), model.predict(&rest), &is_train)?
                    }
                    None => model.predict_columns(&values, df.height()).ok_or_else(|| {
                        ExecError::Internal("a column fit that predicts rows".into())
                    })?,
                };
                (trained, predicted)
            }
            None => {
                let [x, rest]: [Array2<f64>; 2] =
                    design_matrices(&values, df.height(), &[Some(&train_idx), Some(&rest_idx)])?
                        .try_into()
                        .map_err(|_| ExecError::Internal("two design matrices expected".into()))?;
                let mut trained = mlp_fit::train(op, &x, &y, sample.as_deref(), base)?;
                let model = &trained.model;
                let predicted = match trained.scores.take() {
                    // The training rows' predictions from the scores the fit
                    // left (the same bits as predicting them); the other
                    // rows predicted.
                    Some(z) => {
                        merge_rows(model.predict_scores(z), model.predict(&rest), &is_train)?
                    }
                    None => merge_rows(model.predict(&x), model.predict(&rest), &is_train)?,
                };
                (trained, predicted)
            }
        };
    drop(inputs);
    let Trained {
        model,
        best,
        trials,
        ..
    } = trained;
    let mut out_df = df.clone();
    match predicted {
        Prediction::Values(v) => {
            out_df
                .with_column(Column::new("prediction".into(), v.to_vec()))
                .map_err(ExecError::polars)?;
        }
        Prediction::Probabilities(p) => {
            if model.params.contains_key("threshold") && classes.len() != 2 {
                return Err(ExecError::Data(format!(
                    "`threshold` is for a binary target, and `{}` has {} classes in train ({}): remove it, or declare the target as a bool",
                    op.target,
                    classes.len(),
                    classes.join(", ")
                )));
            }
            for column in class_columns(&p, &classes, model.threshold())? {
                out_df.with_column(column).map_err(ExecError::polars)?;
            }
        }
    }
    let mut out = Output {
        frame: Some(out_df),
        ..Output::default()
    };
    if !trials.is_empty() {
        out.notes.push(format!(
            "tuned {} combinations by {}-fold cross-validation; chose {}",
            trials.len(),
            op.tune.as_ref().map(|t| t.cv).unwrap_or(0),
            serde_json::to_string(&best).unwrap_or_default()
        ));
    }
    out.json.push((
        "model".into(),
        serde_json::to_value(&model).map_err(|e| ExecError::Internal(e.to_string()))?,
    ));
    out.json.push(("trials".into(), json!(trials)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row's label, short (inline) and long (in the labels' bytes),
    /// by the most probable class or by the threshold, as text; then each
    /// class's probabilities.
    #[test]
    fn the_prediction_column_holds_each_rows_label() {
        let classes = vec![
            "no".to_string(),
            "a label longer than twelve bytes".to_string(),
        ];
        let p = ndarray::arr2(&[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]);
        let column = |threshold| -> Vec<Option<String>> {
            let columns = class_columns(&p, &classes, threshold).unwrap();
            let names: Vec<&str> = columns.iter().map(|c| c.name().as_str()).collect();
            assert_eq!(
                names,
                [
                    "prediction",
                    "proba_no",
                    "proba_a label longer than twelve bytes"
                ]
            );
            assert_eq!(
                columns[2].f64().unwrap().to_vec(),
                [Some(0.1), Some(0.8), Some(0.4), Some(0.5)]
            );
            let c = &columns[0];
            assert_eq!(c.dtype(), &DataType::String);
            c.str()
                .unwrap()
                .iter()
                .map(|v| v.map(str::to_string))
                .collect()
        };
        let (no, long) = (Some(classes[0].clone()), Some(classes[1].clone()));
        assert_eq!(
            column(None),
            [no.clone(), long.clone(), no.clone(), no.clone()]
        );
        assert_eq!(column(Some(0.3)), [no, long.clone(), long.clone(), long]);
        assert!(class_columns(&p, &classes[..1], None).is_err());
    }
}
