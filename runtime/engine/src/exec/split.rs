//! `split`: assign each row to a partition, in a column the later stages
//! carry.
//!
//! - by ratio, from a seeded hash of the row's position (stable under
//!   appending rows);
//! - `key`: from a seeded hash of the key's value, so a row's partition never
//!   changes as rows are added or reordered;
//! - `stratify`: within each class, rows ordered by the seeded hash and cut at
//!   the ratios, so every partition keeps the class shares;
//! - `order`: the latest rows (by the column) go to the last partition;
//!   rows with equal values land in the same partition;
//! - `column`: the data names each row's partition.

use super::{input, Context, ExecError, Output};
use mlp_compiler::plan::{SplitMethod, SplitOp};
use polars::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// A number in [0, 1) from a seeded 64-bit hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The partition for a position in [0, 1) given cumulative ratios.
fn pick(u: f64, parts: &[(String, f64)]) -> usize {
    let mut acc = 0.0;
    for (i, (_, r)) in parts.iter().enumerate() {
        acc += r;
        if u < acc {
            return i;
        }
    }
    parts.len() - 1
}

fn values_as_text(df: &DataFrame, column: &str) -> Result<Vec<Option<String>>, ExecError> {
    let s = df
        .column(column)
        .map_err(ExecError::polars)?
        .cast(&DataType::String)
        .map_err(ExecError::polars)?;
    let ca = s.str().map_err(ExecError::polars)?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

pub fn run(op: &SplitOp, cx: &Context) -> Result<Output, ExecError> {
    let df = input(cx)?;
    let n = df.height();
    let mut out = Output::default();
    let assigned: Vec<usize>;
    let names: Vec<String>;
    match &op.method {
        SplitMethod::Column { column } => {
            let s = df.column(column).map_err(ExecError::polars)?;
            let train = s
                .as_materialized_series()
                .equal(&Series::new("t".into(), ["train"]))
                .map_err(ExecError::polars)?
                .sum()
                .unwrap_or(0);
            if train == 0 {
                return Err(ExecError::Data(format!(
                    "column `{column}` names no row `train`: a split needs training rows"
                )));
            }
            let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
            for v in values_as_text(&df, column)? {
                *counts
                    .entry(v.unwrap_or_else(|| "(null: in no partition)".into()))
                    .or_default() += 1;
            }
            out.notes.push(
                counts
                    .iter()
                    .map(|(n, c)| format!("{n}: {c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            return Ok(Output {
                frame: Some(df),
                ..out
            });
        }
        SplitMethod::Ratios {
            partitions,
            seed,
            key,
            stratify,
            order,
        } => {
            names = partitions.iter().map(|p| p.0.clone()).collect();
            if let Some(key) = key {
                let vals = values_as_text(&df, key)?;
                assigned = vals
                    .iter()
                    .map(|v| {
                        let h = match v {
                            Some(s) => xxh3_64_with_seed(s.as_bytes(), *seed),
                            None => xxh3_64_with_seed(b"\0null", *seed),
                        };
                        pick(unit(h), partitions)
                    })
                    .collect();
            } else if let Some(order) = order {
                // Rank rows by the column (nulls first, ties by position).
                // Rows with the same value share the rank of the first of
                // them, so a tie never straddles a partition boundary.
                let sorted = df
                    .clone()
                    .lazy()
                    .with_row_index("__pos", None)
                    .sort_by_exprs(
                        [col(order.as_str()), col("__pos")],
                        SortMultipleOptions::default().with_nulls_last(false),
                    )
                    .select([col("__pos"), col(order.as_str()).alias("__order")])
                    .collect()
                    .map_err(ExecError::polars)?;
                let pos = sorted
                    .column("__pos")
                    .map_err(ExecError::polars)?
                    .idx()
                    .map_err(ExecError::polars)?
                    .clone();
                let values = sorted.column("__order").map_err(ExecError::polars)?;
                let mut a = vec![0usize; n];
                let mut group_start = 0usize;
                for (rank, p) in pos.iter().enumerate() {
                    if rank > 0 {
                        let (prev, this) = (
                            values.get(rank - 1).map_err(ExecError::polars)?,
                            values.get(rank).map_err(ExecError::polars)?,
                        );
                        if prev != this {
                            group_start = rank;
                        }
                    }
                    if let Some(p) = p {
                        let u = (group_start as f64 + 0.5) / n.max(1) as f64;
                        a[p as usize] = pick(u, partitions);
                    }
                }
                assigned = a;
            } else if let Some(strat) = stratify {
                let vals = values_as_text(&df, strat)?;
                let mut groups: std::collections::BTreeMap<Option<String>, Vec<usize>> =
                    Default::default();
                for (i, v) in vals.into_iter().enumerate() {
                    groups.entry(v).or_default().push(i);
                }
                let mut a = vec![0usize; n];
                for (_, mut rows) in groups {
                    rows.sort_by_key(|i| xxh3_64_with_seed(&(*i as u64).to_le_bytes(), *seed));
                    let m = rows.len();
                    for (rank, i) in rows.into_iter().enumerate() {
                        let u = (rank as f64 + 0.5) / m as f64;
                        a[i] = pick(u, partitions);
                    }
                }
                assigned = a;
            } else {
                assigned = (0..n)
                    .map(|i| {
                        pick(
                            unit(xxh3_64_with_seed(&(i as u64).to_le_bytes(), *seed)),
                            partitions,
                        )
                    })
                    .collect();
            }
        }
    }
    let labels: Vec<&str> = assigned.iter().map(|i| names[*i].as_str()).collect();
    let mut counts: Vec<usize> = vec![0; names.len()];
    for i in &assigned {
        counts[*i] += 1;
    }
    if !names
        .iter()
        .zip(&counts)
        .any(|(n, c)| n == "train" && *c > 0)
    {
        return Err(ExecError::Data(format!(
            "the split put no row in `train` ({n} rows in all); a split needs training rows"
        )));
    }
    out.notes.push(
        names
            .iter()
            .zip(&counts)
            .map(|(n, c)| format!("{n}: {c}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let mut df = df;
    df.with_column(Column::new(op.partition_column.as_str().into(), labels))
        .map_err(ExecError::polars)?;
    out.frame = Some(df);
    Ok(out)
}
