//! The one topological order of the compiler: the checker visits stages in
//! it (so a stage is checked after its input) and lowering writes the plan
//! in it (so a plan lists a stage after its inputs).

use std::collections::{BTreeMap, BTreeSet};

/// Visits `nodes` (name, the names it reads) in topological order, the
/// smallest name first among those ready (Kahn's algorithm), so the order
/// depends only on the graph. An input that is not a node is ignored.
/// Returns the nodes never visited: those on a cycle or downstream of one.
pub fn topological<'a>(
    nodes: &[(&'a str, Vec<&'a str>)],
    mut visit: impl FnMut(&'a str),
) -> BTreeSet<&'a str> {
    let known: BTreeSet<&str> = nodes.iter().map(|(n, _)| *n).collect();
    let mut indegree: BTreeMap<&'a str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&'a str, Vec<&'a str>> = BTreeMap::new();
    for (name, inputs) in nodes {
        let mut deg = 0;
        for i in inputs.iter().filter(|i| known.contains(*i)) {
            deg += 1;
            dependents.entry(*i).or_default().push(*name);
        }
        indegree.insert(*name, deg);
    }
    let mut ready: BTreeSet<&'a str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut left: BTreeSet<&'a str> = known;
    while let Some(name) = ready.pop_first() {
        left.remove(name);
        visit(name);
        for d in dependents.get(name).map(Vec::as_slice).unwrap_or_default() {
            if let Some(n) = indegree.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(d);
                }
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::topological;

    #[test]
    fn inputs_first_smallest_name_first_cycles_left() {
        let nodes = vec![
            ("c", vec!["a"]),
            ("b", vec![]),
            ("a", vec!["missing"]),
            ("x", vec!["y"]),
            ("y", vec!["x"]),
            ("z", vec!["x"]),
        ];
        let mut seen = vec![];
        let left = topological(&nodes, |n| seen.push(n));
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(left.into_iter().collect::<Vec<_>>(), ["x", "y", "z"]);
    }
}
