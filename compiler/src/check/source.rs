//! `source` declarations and the column types they declare.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_source(
        &mut self,
        s: &ast::Source,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let format = s.format.name.as_str();
        let Some((_, valid_opts)) = catalog::FORMATS.iter().find(|(f, _)| *f == format) else {
            self.errors.push(CheckError::UnknownFormat {
                span: s.format.span,
                name: format.to_string(),
            });
            return None;
        };
        let mut options = BTreeMap::new();
        for o in &s.options {
            let key = o.key.name.as_str();
            if !valid_opts.contains(&key) {
                self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: key.to_string(),
                    context: match format {
                        "csv" => "a csv source",
                        "sqlite" => "a sqlite source",
                        "postgres" => "a postgres source",
                        "parquet" => "a parquet source",
                        "json" => "a json source",
                        _ => "this format (it takes no options)",
                    },
                    valid: valid_opts.iter().map(|v| v.to_string()).collect(),
                });
                continue;
            }
            let value = match (key, &o.value.kind) {
                ("delimiter" | "quote", ValueKind::Lit(Lit::Str(d))) if d.len() == 1 => {
                    Literal::Str(d.clone())
                }
                ("delimiter" | "quote", _) => {
                    self.bad_value(key, o.value.span, "a one-character string", &o.value);
                    continue;
                }
                ("table" | "query", ValueKind::Lit(Lit::Str(t))) if !t.trim().is_empty() => {
                    Literal::Str(t.clone())
                }
                ("table", _) => {
                    self.bad_value(
                        key,
                        o.value.span,
                        "a table name such as \"customers\"",
                        &o.value,
                    );
                    continue;
                }
                ("query", _) => {
                    self.bad_value(
                        key,
                        o.value.span,
                        "a SELECT statement as a string",
                        &o.value,
                    );
                    continue;
                }
                ("url", ValueKind::Call(f, args)) if f.name == "env" => match args.as_slice() {
                    [ast::Value {
                        kind: ValueKind::Lit(Lit::Str(var)),
                        ..
                    }] if !var.trim().is_empty() => {
                        options.insert("url_env".to_string(), Literal::Str(var.clone()));
                        continue;
                    }
                    _ => {
                        self.bad_value(key, o.value.span, "`env(\"VARIABLE\")`", &o.value);
                        continue;
                    }
                },
                ("url", ValueKind::Lit(Lit::Str(u))) => {
                    // `scheme://user:password@host`: a secret in the file.
                    let secret = u
                        .split_once("://")
                        .and_then(|(_, rest)| rest.split_once('@'))
                        .is_some_and(|(auth, _)| auth.contains(':'))
                        || u.contains("password=");
                    if secret {
                        self.errors.push(CheckError::SecretInSource {
                            span: o.value.span,
                            source: s.name.name.clone(),
                            remote: false,
                        });
                        continue;
                    }
                    Literal::Str(u.clone())
                }
                ("url", _) => {
                    self.bad_value(key, o.value.span, "`env(\"VARIABLE\")`", &o.value);
                    continue;
                }
                ("retries", ValueKind::Lit(Lit::Int(n))) if (0..=20).contains(n) => {
                    Literal::Int(*n)
                }
                ("refresh", ValueKind::Lit(Lit::Quantity(v, unit)))
                    if *v > 0.0 && millis(*v, unit).is_some() =>
                {
                    Literal::Int(millis(*v, unit).unwrap_or(0.0).round() as i64)
                }
                ("refresh", _) => {
                    self.bad_value(
                        key,
                        o.value.span,
                        "a duration such as `5m` or `1h`",
                        &o.value,
                    );
                    continue;
                }
                ("retries", _) => {
                    self.bad_value(key, o.value.span, "an integer from 0 to 20", &o.value);
                    continue;
                }
                ("header", ValueKind::Lit(Lit::Bool(b))) => Literal::Bool(*b),
                ("header", _) => {
                    self.bad_value(key, o.value.span, "`true` or `false`", &o.value);
                    continue;
                }
                ("skip_rows", ValueKind::Lit(Lit::Int(n))) if *n >= 0 => Literal::Int(*n),
                ("skip_rows", _) => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value);
                    continue;
                }
                ("null_values", ValueKind::List(items))
                    if items
                        .iter()
                        .all(|i| matches!(i.kind, ValueKind::Lit(Lit::Str(_)))) =>
                {
                    let strs: Vec<String> = items
                        .iter()
                        .filter_map(|i| match &i.kind {
                            ValueKind::Lit(Lit::Str(s)) => Some(s.clone()),
                            _ => None,
                        })
                        .collect();
                    Literal::Str(strs.join("\u{1f}"))
                }
                _ => {
                    self.bad_value(key, o.value.span, "a list of strings", &o.value);
                    continue;
                }
            };
            options.insert(key.to_string(), value);
        }
        if format == "postgres" {
            if !s.path.is_empty() {
                self.errors.push(CheckError::BadOptionValue {
                    span: s.path_span,
                    key: "path".into(),
                    expected:
                        "no path: a postgres source names a `table` or a `query`, and its `url`"
                            .into(),
                    found: format!("\"{}\"", s.path),
                });
            }
            if !s.options.iter().any(|o| o.key.name == "url") {
                self.errors.push(CheckError::BadOptionValue {
                    span: s.format.span,
                    key: "url".into(),
                    expected:
                        "`url = env(\"VARIABLE\")`, the variable holding the database's address"
                            .into(),
                    found: "none".into(),
                });
            }
        }
        if format == "sqlite" || format == "postgres" {
            let given: Vec<&str> = ["table", "query"]
                .into_iter()
                .filter(|k| s.options.iter().any(|o| o.key.name == *k))
                .collect();
            if given.len() != 1 {
                self.errors.push(CheckError::BadOptionValue {
                    span: s.format.span,
                    key: "table or query".into(),
                    expected: "exactly one of `table = \"NAME\"` or `query = \"SELECT ...\"`"
                        .into(),
                    found: if given.is_empty() {
                        "neither".into()
                    } else {
                        "both".into()
                    },
                });
            }
        }
        let remote = s.path.contains("://");
        if remote {
            self.check_remote_path(s, format);
        } else if format != "postgres" {
            for o in &s.options {
                if matches!(o.key.name.as_str(), "retries" | "refresh") {
                    self.errors.push(CheckError::UnknownOption {
                        span: o.key.span,
                        key: o.key.name.clone(),
                        context: "a local file's source (`retries` and `refresh` apply to remote `s3://`, `gs://`, `az://` and `https://` paths)",
                        valid: valid_opts
                            .iter()
                            .filter(|k| !matches!(**k, "retries" | "refresh"))
                            .map(|v| v.to_string())
                            .collect(),
                    });
                }
            }
        }
        if s.path.trim().is_empty() && format != "postgres" {
            self.errors.push(CheckError::BadOptionValue {
                span: s.path_span,
                key: "path".into(),
                expected: "a file path or glob".into(),
                found: "an empty string".into(),
            });
        }
        if s.columns.is_empty() {
            self.errors.push(CheckError::EmptySource {
                span: s.name.span,
                name: s.name.name.clone(),
            });
            return None;
        }
        let mut frame = Frame::default();
        let mut columns = vec![];
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        for c in &s.columns {
            if let Some(first) = seen.get(c.name.name.as_str()) {
                self.errors.push(CheckError::DuplicateColumn {
                    span: c.name.span,
                    name: c.name.name.clone(),
                    first: *first,
                });
                continue;
            }
            seen.insert(&c.name.name, c.name.span);
            let Some(ty) = self.check_type(&c.ty) else {
                continue;
            };
            columns.push(plan::SourceColumn {
                name: c.name.name.clone(),
                raw_name: c.raw_name.clone().filter(|r| *r != c.name.name),
                ty: ty.clone(),
                nullable: c.ty.nullable,
            });
            frame.push(Column {
                name: c.name.name.clone(),
                ty,
                nullable: c.ty.nullable,
                group_of: None,
                encoded: false,
                lineage: BTreeSet::from([format!("{}.{}", s.name.name, c.name.name)]),
                defined: c.name.span,
            });
        }
        let op = Op::Source(plan::SourceOp {
            format: plan::SourceFormat::parse(format)?,
            path: if format == "postgres" {
                String::new()
            } else if remote {
                s.path.clone()
            } else {
                resolve_path(self.file_name(s.name.span), &s.path)
            },
            options,
            columns,
        });
        Some((op, frame, BTreeSet::new()))
    }

    /// A remote path (`s3://bucket/key`, `https://host/file.csv`): a scheme
    /// the runtime reads, no credentials written into it, globs only where
    /// the store can list.
    fn check_remote_path(&mut self, s: &ast::Source, format: &str) {
        let Some((scheme, rest)) = s.path.split_once("://") else {
            return;
        };
        let bad = |this: &mut Self, expected: &str, found: String| {
            this.errors.push(CheckError::BadOptionValue {
                span: s.path_span,
                key: "path".into(),
                expected: expected.into(),
                found,
            });
        };
        if !matches!(format, "csv" | "parquet" | "json") {
            bad(
                self,
                "a local file path: a `sqlite` database is read from a file on this machine",
                format!("a `{scheme}://` address"),
            );
            return;
        }
        let scheme = scheme.to_ascii_lowercase();
        if !catalog::REMOTE_SCHEMES.contains(&scheme.as_str()) {
            bad(
                self,
                &format!(
                    "a local path, or an address starting with {}",
                    catalog::REMOTE_SCHEMES
                        .iter()
                        .map(|s| format!("`{s}://`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("a `{scheme}://` address"),
            );
            return;
        }
        let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = before_query.split('/').next().unwrap_or("");
        let secret_param = query.split('&').any(|kv| {
            let k = kv.split('=').next().unwrap_or("").to_ascii_lowercase();
            catalog::SECRET_URL_PARAMETERS.contains(&k.as_str())
        });
        if authority.contains('@') || secret_param {
            self.errors.push(CheckError::SecretInSource {
                span: s.path_span,
                source: s.name.name.clone(),
                remote: true,
            });
            return;
        }
        if !query.is_empty() || rest.contains('#') {
            bad(
                self,
                "an address without a query string or fragment (the object's path alone)",
                format!("`?{query}`"),
            );
            return;
        }
        let (host, key) = before_query.split_once('/').unwrap_or((before_query, ""));
        if host.is_empty()
            || key.is_empty()
            || key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            bad(
                self,
                &format!(
                    "`{scheme}://BUCKET-OR-HOST/path/to/file` (a file, or a glob of files; no empty, `.` or `..` parts)"
                ),
                format!("\"{}\"", s.path),
            );
            return;
        }
        let glob = key.contains(['*', '?', '[', '{']);
        if glob && matches!(scheme.as_str(), "http" | "https") {
            bad(
                self,
                "one file's address: an HTTP server cannot list files (use an object store's `s3://` path for a glob)",
                format!("the glob \"{}\"", s.path),
            );
        }
    }

    pub(super) fn check_type(&mut self, t: &ast::TypeExpr) -> Option<Type> {
        let bad = |this: &mut Self, message: String, help: &str| {
            this.errors.push(CheckError::BadType {
                span: t.span,
                message,
                help: help.to_string(),
            });
            None
        };
        if t.levels.is_some() && t.name != "category" {
            return bad(
                self,
                format!("only `category` takes levels, not `{}`", t.name),
                "write `category[\"a\", \"b\"]`, or drop the levels",
            );
        }
        if t.format.is_some() && !matches!(t.name.as_str(), "date" | "datetime") {
            return bad(
                self,
                format!("only `date` and `datetime` take a format, not `{}`", t.name),
                "write `date \"%Y-%m-%d\"`, or drop the format string",
            );
        }
        Some(match t.name.as_str() {
            "int" => Type::Int,
            "float" => Type::Float,
            "bool" => Type::Bool,
            "str" => Type::Str,
            "category" => {
                if let Some(levels) = &t.levels {
                    if levels.is_empty() {
                        self.errors.push(CheckError::BadLevels {
                            span: t.span,
                            message: "a category needs at least one level".into(),
                        });
                        return None;
                    }
                    let mut set = BTreeSet::new();
                    for l in levels {
                        if !set.insert(l) {
                            self.errors.push(CheckError::BadLevels {
                                span: t.span,
                                message: format!("level \"{l}\" is listed twice"),
                            });
                            return None;
                        }
                    }
                }
                Type::Category {
                    levels: t.levels.clone(),
                }
            }
            "date" | "datetime" => {
                let default = if t.name == "date" {
                    "%Y-%m-%d"
                } else {
                    "%Y-%m-%dT%H:%M:%S"
                };
                let format = t.format.clone().unwrap_or_else(|| default.to_string());
                if let Some(spec) = bad_format_specifier(&format) {
                    let message = if spec.is_empty() {
                        format!("date format \"{format}\" has no `%` field")
                    } else {
                        format!("date format \"{format}\" has an unknown field `{spec}`")
                    };
                    return bad(
                        self,
                        message,
                        "formats use strftime fields: `%Y` year, `%m` month, `%d` day, `%H:%M:%S` time, e.g. \"%Y-%m-%d\"",
                    );
                }
                // An offset (`%z`) would be read and then ignored: a time at
                // 10:00-05:00 would count as 10:00 UTC.
                if ["%z", "%:z", "%::z", "%:::z", "%#z", "%Z"]
                    .iter()
                    .any(|z| format.contains(z))
                {
                    return bad(
                        self,
                        format!("date format \"{format}\" reads a time zone offset, which mlp does not apply yet"),
                        "store the times in UTC (or one fixed zone) and leave the offset out of the format, e.g. \"%Y-%m-%dT%H:%M:%S\"; a literal `Z` is fine (\"%Y-%m-%dT%H:%M:%SZ\")",
                    );
                }
                if t.name == "date" {
                    Type::Date { format }
                } else {
                    Type::Datetime { format }
                }
            }
            _ => return None,
        })
    }
}
