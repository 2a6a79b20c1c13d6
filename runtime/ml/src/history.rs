//! Point-in-time aggregates over each key's events: the one implementation
//! training (`history` stages) and serving (lookup state) both call, so the
//! two agree bit for bit by construction.
//!
//! Events are grouped by key (a dense group id the caller assigns), each
//! group sorted by time (ties keep their input order). A query for group
//! `g` at time `t` with window `w` reads the events with `t - w <= time < t`:
//! two binary searches find them, and per-group running sums answer
//! `count`, `sum` and `mean` in O(1); `min`, `max` and `std` scan the
//! window, `last` scans back to its latest non-null value. Building costs
//! O(E log E) at worst (sorting each group by time); a query O(log E) plus
//! the window for the scanning aggregates.

use mlp_compiler::plan::HistoryAggregate;

/// Microseconds in a day (`days_since`).
pub const DAY_US: i64 = 86_400_000_000;

/// A group id that belongs to no group: an event left out (a null key or
/// time), or a row whose key has no events.
pub const NO_GROUP: u32 = u32::MAX;

/// One aggregated event-row value per event, as numbers (bools as 0 and 1;
/// a null, or a NaN, is NaN and skipped).
struct ValueColumn {
    /// In sorted order.
    values: Vec<f64>,
    /// Running sum of the non-null values within each group, inclusive.
    cum_sum: Vec<f64>,
    /// Running count of non-null values within each group, inclusive.
    cum_n: Vec<u32>,
}

/// Every event of every group, sorted for point-in-time queries.
pub struct EventIndex {
    /// Group `g`'s events are `starts[g]..starts[g + 1]`.
    starts: Vec<usize>,
    /// Event times (microseconds), ascending within each group.
    times: Vec<i64>,
    columns: Vec<ValueColumn>,
    /// Events left out: a null key or a null time.
    pub dropped: usize,
}

/// One aggregate to answer: which, of which value column, over which window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggSpec {
    pub agg: HistoryAggregate,
    /// The value column (none for `count` and `days_since`).
    pub column: Option<usize>,
    /// The window in microseconds (none: every earlier event).
    pub within_us: Option<i64>,
}

impl EventIndex {
    /// Builds the index. `groups[i]` and `times[i]` are event `i`'s group
    /// (below `n_groups`, or [`NO_GROUP`] to leave it out) and time;
    /// `columns[c][i]` its value in column `c` (NaN: null).
    pub fn build(
        groups: &[u32],
        n_groups: usize,
        times: &[i64],
        columns: &[Vec<f64>],
    ) -> EventIndex {
        // Counting sort by group (stable), then each group by time (stable).
        let mut counts = vec![0usize; n_groups + 1];
        let mut dropped = 0;
        for g in groups {
            if (*g as usize) < n_groups {
                counts[*g as usize + 1] += 1;
            } else {
                dropped += 1;
            }
        }
        for g in 0..n_groups {
            counts[g + 1] += counts[g];
        }
        let starts = counts.clone();
        let mut next = counts;
        let n = starts[n_groups];
        let mut order = vec![0u32; n];
        let mut sorted_times = vec![0i64; n];
        for (i, g) in groups.iter().enumerate() {
            if (*g as usize) < n_groups {
                let at = next[*g as usize];
                order[at] = i as u32;
                sorted_times[at] = times[i];
                next[*g as usize] += 1;
            }
        }
        for g in 0..n_groups {
            let (a, b) = (starts[g], starts[g + 1]);
            if sorted_times[a..b].windows(2).any(|w| w[0] > w[1]) {
                let mut pairs: Vec<(i64, u32)> = sorted_times[a..b]
                    .iter()
                    .copied()
                    .zip(order[a..b].iter().copied())
                    .collect();
                pairs.sort_by_key(|p| p.0);
                for (k, (t, i)) in pairs.into_iter().enumerate() {
                    sorted_times[a + k] = t;
                    order[a + k] = i;
                }
            }
        }
        let columns = columns
            .iter()
            .map(|col| {
                let values: Vec<f64> = order.iter().map(|i| col[*i as usize]).collect();
                let mut cum_sum = Vec::with_capacity(n);
                let mut cum_n = Vec::with_capacity(n);
                for g in 0..n_groups {
                    let (mut s, mut k) = (0.0f64, 0u32);
                    for v in &values[starts[g]..starts[g + 1]] {
                        if !v.is_nan() {
                            s += v;
                            k += 1;
                        }
                        cum_sum.push(s);
                        cum_n.push(k);
                    }
                }
                ValueColumn {
                    values,
                    cum_sum,
                    cum_n,
                }
            })
            .collect();
        EventIndex {
            starts,
            times: sorted_times,
            columns,
            dropped,
        }
    }

    /// Events indexed.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The events of `group` in the window before `at`: `lo..hi`.
    fn window(&self, group: u32, at: i64, within_us: Option<i64>) -> (usize, usize) {
        let g = group as usize;
        let (start, end) = (self.starts[g], self.starts[g + 1]);
        let times = &self.times[start..end];
        let hi = start + times.partition_point(|t| *t < at);
        let lo = match within_us {
            Some(w) => start + times[..hi - start].partition_point(|t| *t < at.saturating_sub(w)),
            None => start,
        };
        (lo, hi)
    }

    /// Running totals of a column over `lo..hi` (within one group starting
    /// at `start`).
    fn totals(c: &ValueColumn, start: usize, lo: usize, hi: usize) -> (f64, u32) {
        if hi == lo {
            return (0.0, 0);
        }
        let (s_hi, n_hi) = (c.cum_sum[hi - 1], c.cum_n[hi - 1]);
        if lo == start {
            (s_hi, n_hi)
        } else {
            (s_hi - c.cum_sum[lo - 1], n_hi - c.cum_n[lo - 1])
        }
    }

    /// The aggregate for a row of `group` ([`NO_GROUP`]: a key with no
    /// events) at time `at`. `count` and `sum` are never null (0 without
    /// events); the others are null without (non-null) events; `std`
    /// (sample, n - 1) needs two.
    pub fn query(&self, group: u32, at: i64, spec: &AggSpec) -> Option<f64> {
        if (group as usize) + 1 >= self.starts.len() {
            return match spec.agg {
                HistoryAggregate::Count | HistoryAggregate::Sum => Some(0.0),
                _ => None,
            };
        }
        let start = self.starts[group as usize];
        let (lo, hi) = self.window(group, at, spec.within_us);
        let column = spec.column.and_then(|c| self.columns.get(c));
        fn present(
            c: &ValueColumn,
            lo: usize,
            hi: usize,
        ) -> impl DoubleEndedIterator<Item = f64> + '_ {
            c.values[lo..hi].iter().copied().filter(|v| !v.is_nan())
        }
        match spec.agg {
            HistoryAggregate::Count => Some((hi - lo) as f64),
            HistoryAggregate::DaysSince => {
                (hi > lo).then(|| (at - self.times[hi - 1]).div_euclid(DAY_US) as f64)
            }
            HistoryAggregate::Sum => Some(column.map_or(0.0, |c| Self::totals(c, start, lo, hi).0)),
            HistoryAggregate::Mean => {
                let (s, n) = Self::totals(column?, start, lo, hi);
                (n > 0).then(|| s / n as f64)
            }
            HistoryAggregate::Std => {
                let c = column?;
                let (s, n) = Self::totals(c, start, lo, hi);
                if n < 2 {
                    return None;
                }
                let mean = s / n as f64;
                let ss: f64 = present(c, lo, hi).map(|v| (v - mean) * (v - mean)).sum();
                Some((ss / (n - 1) as f64).sqrt())
            }
            HistoryAggregate::Min => present(column?, lo, hi).reduce(f64::min),
            HistoryAggregate::Max => present(column?, lo, hi).reduce(f64::max),
            HistoryAggregate::Last => present(column?, lo, hi).next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(agg: HistoryAggregate, column: Option<usize>, within_us: Option<i64>) -> AggSpec {
        AggSpec {
            agg,
            column,
            within_us,
        }
    }

    /// The index of events given with options for nulls.
    fn build(
        groups: &[Option<u32>],
        n_groups: usize,
        times: &[Option<i64>],
        columns: &[Vec<Option<f64>>],
    ) -> EventIndex {
        let g: Vec<u32> = groups
            .iter()
            .zip(times)
            .map(|(g, t)| match (g, t) {
                (Some(g), Some(_)) => *g,
                _ => NO_GROUP,
            })
            .collect();
        let t: Vec<i64> = times.iter().map(|t| t.unwrap_or(0)).collect();
        let c: Vec<Vec<f64>> = columns
            .iter()
            .map(|c| c.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
            .collect();
        EventIndex::build(&g, n_groups, &t, &c)
    }

    /// A slow, obviously right reference: filter, then aggregate.
    fn reference(
        groups: &[Option<u32>],
        times: &[Option<i64>],
        values: &[Option<f64>],
        group: Option<u32>,
        at: i64,
        s: &AggSpec,
    ) -> Option<f64> {
        let mut ev: Vec<(i64, Option<f64>)> = (0..groups.len())
            .filter(|&i| group.is_some() && groups[i] == group)
            .filter_map(|i| times[i].map(|t| (t, values[i])))
            .filter(|(t, _)| *t < at && s.within_us.is_none_or(|w| *t >= at - w))
            .collect();
        ev.sort_by_key(|(t, _)| *t);
        let vals: Vec<f64> = ev.iter().filter_map(|(_, v)| *v).collect();
        let n = vals.len() as f64;
        match s.agg {
            HistoryAggregate::Count => Some(ev.len() as f64),
            HistoryAggregate::Sum => Some(vals.iter().sum()),
            HistoryAggregate::Mean => (n > 0.0).then(|| vals.iter().sum::<f64>() / n),
            HistoryAggregate::Std => (n > 1.0).then(|| {
                let m = vals.iter().sum::<f64>() / n;
                (vals.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0)).sqrt()
            }),
            HistoryAggregate::Min => vals.iter().copied().reduce(f64::min),
            HistoryAggregate::Max => vals.iter().copied().reduce(f64::max),
            HistoryAggregate::Last => ev.iter().rev().find_map(|(_, v)| *v),
            HistoryAggregate::DaysSince => ev.last().map(|(t, _)| ((at - t) / DAY_US) as f64),
        }
    }

    #[test]
    fn strictly_before_within_the_window() {
        let day = DAY_US;
        let groups = [Some(0), Some(0), Some(0), Some(1), None, Some(0)];
        let times = [
            Some(10 * day),
            Some(20 * day),
            Some(30 * day),
            Some(5 * day),
            Some(1),
            None,
        ];
        let values = vec![vec![
            Some(1.0),
            None,
            Some(4.0),
            Some(7.0),
            Some(9.0),
            Some(9.0),
        ]];
        let ix = build(&groups, 2, &times, &values);
        assert_eq!(ix.dropped, 2);
        let q = |g: Option<u32>, at, s| ix.query(g.unwrap_or(NO_GROUP), at, &s);
        use HistoryAggregate as A;
        // The event at 30 is not before 30: ties at T are excluded.
        assert_eq!(q(Some(0), 30 * day, spec(A::Count, None, None)), Some(2.0));
        assert_eq!(
            q(Some(0), 30 * day + 1, spec(A::Count, None, None)),
            Some(3.0)
        );
        assert_eq!(
            q(Some(0), 31 * day, spec(A::Sum, Some(0), Some(15 * day))),
            Some(4.0)
        );
        assert_eq!(
            q(Some(0), 31 * day, spec(A::Mean, Some(0), None)),
            Some(2.5)
        );
        assert_eq!(
            q(Some(0), 25 * day, spec(A::Last, Some(0), None)),
            Some(1.0)
        );
        assert_eq!(
            q(Some(0), 25 * day, spec(A::DaysSince, None, None)),
            Some(5.0)
        );
        // No events (before the first, or a key never seen).
        assert_eq!(q(Some(0), day, spec(A::Count, None, None)), Some(0.0));
        assert_eq!(q(Some(0), day, spec(A::Mean, Some(0), None)), None);
        assert_eq!(q(None, day, spec(A::Sum, Some(0), None)), Some(0.0));
        assert_eq!(q(Some(7), day, spec(A::Max, Some(0), None)), None);
    }

    /// Every aggregate agrees with the filter-then-aggregate reference on
    /// random events (ties, nulls, empty groups, windows).
    #[test]
    fn agrees_with_the_reference_on_random_events() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..200 {
            let n = next(40) as usize;
            let n_groups = 1 + next(5) as usize;
            let groups: Vec<Option<u32>> = (0..n)
                .map(|_| (next(10) > 0).then(|| next(n_groups as u64) as u32))
                .collect();
            let times: Vec<Option<i64>> = (0..n)
                .map(|_| (next(12) > 0).then(|| next(20) as i64 * DAY_US / 2))
                .collect();
            let values: Vec<Option<f64>> = (0..n)
                .map(|_| (next(5) > 0).then(|| next(100) as f64 / 4.0 - 5.0))
                .collect();
            let ix = build(&groups, n_groups, &times, std::slice::from_ref(&values));
            for agg in HistoryAggregate::ALL {
                for within in [None, Some(3 * DAY_US), Some(DAY_US / 2)] {
                    let s = spec(*agg, Some(0), within);
                    for g in 0..=n_groups as u32 {
                        let g = (g < n_groups as u32).then_some(g);
                        let at = next(24) as i64 * DAY_US / 2;
                        let got = ix.query(g.unwrap_or(NO_GROUP), at, &s);
                        let want = reference(&groups, &times, &values, g, at, &s);
                        let close = match (got, want) {
                            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                            (a, b) => a == b,
                        };
                        assert!(
                            close,
                            "{agg:?} {within:?} g={g:?} at={at}: {got:?} vs {want:?}"
                        );
                    }
                }
            }
        }
    }
}
