//! `infer: Sample -> String`: a `source` block guessed from a sample of rows.
//!
//! The caller reads the sample (CSV text cells or typed JSON values); this
//! module only decides types, so it stays pure and testable.

/// One cell of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    /// Text as found in a CSV file (or a JSON string).
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleColumn {
    pub name: String,
    pub cells: Vec<Cell>,
}

/// What the caller read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub columns: Vec<SampleColumn>,
    /// The total rows read (the sample may be a prefix of the file).
    pub rows: usize,
    /// Text cells the reader took for nulls (`NA`, `null`): they become the
    /// source's `null_values` option.
    pub null_markers: Vec<String>,
    /// The sample holds every row of the file (levels may then be declared).
    pub complete: bool,
}

/// Text that a CSV reader should take for a null.
pub const NULL_MARKERS: &[&str] = &["NA", "N/A", "null", "NULL", "None", "nan", "NaN"];

/// An inferred column type, as written in a `.mlp` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub name: String,
    pub raw_name: Option<String>,
    pub ty: String,
    pub nullable: bool,
}

const CATEGORY_MAX_LEVELS: usize = 30;
const LEVELS_LISTED_MAX: usize = 12;

fn is_int(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_float(s: &str) -> bool {
    let t = s.trim();
    !t.is_empty()
        && t.parse::<f64>().is_ok()
        && t.bytes().any(|b| b.is_ascii_digit())
        && !t.eq_ignore_ascii_case("nan")
        && !t.to_ascii_lowercase().contains("inf")
}

fn is_bool(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().as_str(), "true" | "false")
}

/// The date layouts `mlp infer` recognises, most common first. A column
/// gets the first one that parses every sampled value (so `01/31/2020` is
/// `%m/%d/%Y`, and `31/01/2020` falls to `%d/%m/%Y`).
const DATE_FORMATS: &[&str] = &[
    "%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y%m%d",
];

/// Datetime layouts: ISO with `T` or a space, with fractional seconds, with
/// a `Z` or an offset (`+01:00`), and the US and European day-first ones.
const DATETIME_FORMATS: &[&str] = &[
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S%:z",
    "%Y-%m-%d %H:%M:%S%:z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%:z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
];

/// The first layout that parses every value (`None` if none does): a date,
/// or a datetime.
fn temporal_format(texts: &[&str]) -> Option<(&'static str, &'static str)> {
    // Bare digits are numbers or codes, not dates (`%Y%m%d` needs 8).
    if texts.iter().any(|t| t.trim().len() < 6) {
        return None;
    }
    let all = |f: &str, date: bool| {
        texts.iter().all(|t| {
            let t = t.trim();
            if date {
                chrono::NaiveDate::parse_from_str(t, f).is_ok()
            } else {
                chrono::NaiveDateTime::parse_from_str(t, f).is_ok()
                    || chrono::DateTime::parse_from_str(t, f).is_ok()
            }
        })
    };
    if let Some(f) = DATE_FORMATS
        .iter()
        .find(|f| (**f != "%Y%m%d" || texts.iter().all(|t| t.trim().len() == 8)) && all(f, true))
    {
        return Some(("date", f));
    }
    DATETIME_FORMATS
        .iter()
        .find(|f| all(f, false))
        .map(|f| ("datetime", *f))
}

/// A number written with leading zeros (`007`, `0123`): a code, kept as
/// text so the zeros survive.
fn zero_padded(s: &str) -> bool {
    let t = s.trim().trim_start_matches(['-', '+']);
    t.len() > 1 && t.starts_with('0') && t.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
}

/// A name usable as an identifier: lower snake case.
pub fn identifier(raw: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in raw.chars() {
        if c.is_ascii_alphanumeric() {
            if c.is_ascii_uppercase() && prev_lower {
                out.push('_');
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            out.push(c.to_ascii_lowercase());
        } else {
            if !out.ends_with('_') && !out.is_empty() {
                out.push('_');
            }
            prev_lower = false;
        }
    }
    let mut out = out.trim_end_matches('_').to_string();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'c');
        if out.len() > 1 {
            out.insert(1, '_');
        }
    }
    const KEYWORDS: &[&str] = &[
        "if", "then", "else", "and", "or", "not", "over", "true", "false", "null", "in",
    ];
    if KEYWORDS.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// Infers each column's type.
pub fn infer_columns(sample: &Sample) -> Vec<Inferred> {
    let mut used = std::collections::BTreeSet::new();
    sample
        .columns
        .iter()
        .map(|c| {
            let mut name = identifier(&c.name);
            while !used.insert(name.clone()) {
                name.push('_');
            }
            let raw_name = (name != c.name).then(|| c.name.clone());
            let (ty, nullable) = infer_type(&c.cells, sample.complete);
            Inferred {
                name,
                raw_name,
                ty,
                nullable,
            }
        })
        .collect()
}

fn infer_type(cells: &[Cell], complete: bool) -> (String, bool) {
    let mut nullable = false;
    let mut texts: Vec<&str> = vec![];
    let (mut ints, mut floats, mut bools, mut strs) = (0, 0, 0, 0);
    for c in cells {
        match c {
            Cell::Null => nullable = true,
            Cell::Text(t) if t.trim().is_empty() => nullable = true,
            Cell::Text(t) => {
                texts.push(t);
                strs += 1;
            }
            Cell::Int(_) => ints += 1,
            Cell::Float(_) => floats += 1,
            Cell::Bool(_) => bools += 1,
        }
    }
    let present = ints + floats + bools + strs;
    if present == 0 {
        return ("str".into(), true);
    }
    if strs == 0 {
        // Typed JSON values.
        let ty = if bools == present {
            "bool"
        } else if ints == present {
            "int"
        } else if bools == 0 {
            "float"
        } else {
            "str"
        };
        return (ty.into(), nullable);
    }
    if ints + floats + bools > 0 {
        // Mixed typed values and strings.
        return ("str".into(), nullable);
    }
    let codes = texts.iter().any(|t| zero_padded(t));
    if !codes && texts.iter().all(|t| is_int(t.trim())) {
        return ("int".into(), nullable);
    }
    if !codes && texts.iter().all(|t| is_float(t)) {
        return ("float".into(), nullable);
    }
    if texts.iter().all(|t| is_bool(t.trim())) {
        return ("bool".into(), nullable);
    }
    if let Some((kind, f)) = temporal_format(&texts) {
        return (format!("{kind} \"{f}\""), nullable);
    }
    let mut distinct: Vec<&str> = texts.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() <= CATEGORY_MAX_LEVELS && distinct.len() * 2 <= texts.len().max(2) {
        // Declared levels are a contract: only from a sample of the whole
        // column.
        if complete && distinct.len() <= LEVELS_LISTED_MAX {
            let levels: Vec<String> = distinct
                .iter()
                .map(|l| format!("\"{}\"", l.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect();
            return (format!("category[{}]", levels.join(", ")), nullable);
        }
        return ("category".into(), nullable);
    }
    ("str".into(), nullable)
}

/// Prints a `source` block for the sample.
pub fn source_block(name: &str, format: &str, path: &str, sample: &Sample) -> String {
    source_block_with(name, format, path, "", sample)
}

/// As [`source_block`], with more options after the path (`table =
/// "customers"` for a database), written as given.
pub fn source_block_with(
    name: &str,
    format: &str,
    path: &str,
    more: &str,
    sample: &Sample,
) -> String {
    let cols = infer_columns(sample);
    let width = cols.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = format!(
        "# inferred by `mlp infer` from {} rows of {path}{}; review the types before use\n",
        sample.rows,
        if sample.complete {
            ""
        } else {
            " (the first ones: categories' levels are left out, declare them to make them a contract)"
        }
    );
    let options = if format == "csv" && !sample.null_markers.is_empty() {
        let markers: Vec<String> = sample
            .null_markers
            .iter()
            .map(|m| format!("\"{m}\""))
            .collect();
        format!(", null_values = [{}]", markers.join(", "))
    } else {
        String::new()
    };
    let more = if more.is_empty() {
        String::new()
    } else {
        format!(", {more}")
    };
    out.push_str(&format!(
        "source {} = {format}(\"{path}\"{options}{more}) {{\n",
        identifier(name)
    ));
    for c in &cols {
        out.push_str(&format!(
            "    {:width$} : {}{}",
            c.name,
            c.ty,
            if c.nullable { "?" } else { "" },
            width = width
        ));
        if let Some(raw) = &c.raw_name {
            out.push_str(&format!(" as \"{}\"", raw.replace('"', "\\\"")));
        }
        out.push('\n');
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, cells: &[&str]) -> SampleColumn {
        SampleColumn {
            name: name.into(),
            cells: cells
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        Cell::Null
                    } else {
                        Cell::Text(c.to_string())
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn infers_csv_types() {
        let s = Sample {
            rows: 4,
            complete: true,
            null_markers: vec![],
            columns: vec![
                col("id", &["1", "2", "3", "4"]),
                col("Body Mass", &["1.5", "", "2", "3e2"]),
                col(
                    "sold_at",
                    &["2020-01-01", "2020-02-01", "2020-03-01", "2020-04-01"],
                ),
                col("city", &["A", "B", "A", "A"]),
                col("ok", &["true", "false", "true", "TRUE"]),
                col("name", &["x", "y", "z", "w"]),
            ],
        };
        let c = infer_columns(&s);
        let tys: Vec<(&str, &str, bool)> = c
            .iter()
            .map(|c| (c.name.as_str(), c.ty.as_str(), c.nullable))
            .collect();
        assert_eq!(
            tys,
            vec![
                ("id", "int", false),
                ("body_mass", "float", true),
                ("sold_at", "date \"%Y-%m-%d\"", false),
                ("city", "category[\"A\", \"B\"]", false),
                ("ok", "bool", false),
                ("name", "str", false),
            ]
        );
        assert_eq!(c[1].raw_name.as_deref(), Some("Body Mass"));
    }

    #[test]
    fn infers_only_formats_that_parse_every_value() {
        let s = Sample {
            rows: 3,
            complete: false,
            null_markers: vec![],
            columns: vec![
                col(
                    "z",
                    &[
                        "2013-01-01T06:00:00Z",
                        "2013-01-01T07:00:00Z",
                        "2013-01-02T00:00:00Z",
                    ],
                ),
                col(
                    "off",
                    &["2013-01-01T06:00:00+01:00", "2013-01-01T07:00:00-05:00", ""],
                ),
                col("us", &["01/31/2020", "12/01/2020", "02/29/2020"]),
                col("eu", &["31.01.2020", "01.12.2020", "29.02.2020"]),
                col("dm", &["31/01/2020", "13/12/2020", "01/02/2020"]),
                col("code", &["007", "120", "042"]),
                col("g", &["a", "b", "a", "b"]),
            ],
        };
        let tys: Vec<String> = infer_columns(&s).into_iter().map(|c| c.ty).collect();
        assert_eq!(
            tys,
            [
                "datetime \"%Y-%m-%dT%H:%M:%SZ\"",
                "datetime \"%Y-%m-%dT%H:%M:%S%:z\"",
                "date \"%m/%d/%Y\"",
                "date \"%d.%m.%Y\"",
                "date \"%d/%m/%Y\"",
                "str",
                // A partial sample does not declare levels.
                "category",
            ]
        );
    }

    #[test]
    fn identifiers_are_valid() {
        assert_eq!(identifier("Miles_per_Gallon"), "miles_per_gallon");
        assert_eq!(identifier("Weight_in_lbs"), "weight_in_lbs");
        assert_eq!(identifier("2nd"), "c_2nd");
        assert_eq!(identifier("in"), "in_");
        assert_eq!(identifier("bodyMass"), "body_mass");
    }
}
