//! Near-miss names for "did you mean" help.

/// The candidates closest to `name`, best first (at most three).
pub fn near_misses<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let lname = name.to_lowercase();
    let mut scored: Vec<(f64, &str)> = candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            let lc = c.to_lowercase();
            let mut s = strsim::jaro_winkler(&lname, &lc);
            if lc == lname {
                s = 1.0;
            } else if strsim::damerau_levenshtein(&lname, &lc) <= 1 {
                s = s.max(0.9);
            }
            (s, c)
        })
        .filter(|(s, _)| *s >= 0.8)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored
        .into_iter()
        .take(3)
        .map(|(_, c)| c.to_string())
        .collect()
}

/// "did you mean `x`?" (or `x` or `y`), or `None`.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let near = near_misses(name, candidates);
    match near.as_slice() {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        [init @ .., last] => Some(format!(
            "did you mean {} or `{last}`?",
            init.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `a`, `b`, `c` (at most `max`, then "and N more").
pub fn list(names: &[String], max: usize) -> String {
    let shown: Vec<String> = names.iter().take(max).map(|n| format!("`{n}`")).collect();
    let mut s = shown.join(", ");
    if names.len() > max {
        s.push_str(&format!(" and {} more", names.len() - max));
    }
    if s.is_empty() {
        s.push_str("(none)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos() {
        assert_eq!(near_misses("sqtf", ["sqft", "price", "city"]), vec!["sqft"]);
        assert_eq!(near_misses("prise", ["sqft", "price"]), vec!["price"]);
        assert!(near_misses("zzz", ["sqft", "price"]).is_empty());
        assert_eq!(
            did_you_mean("bedroom", ["bedrooms", "sqft"]).as_deref(),
            Some("did you mean `bedrooms`?")
        );
    }
}
