//! `split` declarations: ratios, keys, stratification, time order, by column.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_split(
        &mut self,
        s: &ast::Split,
        mut frame: Frame,
        stage_id: &str,
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        if let Some(first) = &frame.split {
            self.errors.push(CheckError::SecondSplit {
                span: s.name.span,
                first: first.span,
                first_name: first.stage.clone(),
            });
            return None;
        }
        let _ = stage_id;
        let mut partitions: Vec<(String, f64, Span)> = vec![];
        let mut seed: u64 = 42;
        let mut cols: BTreeMap<&str, (&Ident, Span)> = BTreeMap::new();
        const COL_OPTS: [&str; 4] = ["key", "stratify", "order", "column"];
        for o in &s.options {
            let key = o.key.name.as_str();
            match (&o.value.kind, key) {
                (ValueKind::Lit(Lit::Int(n)), "seed") if *n >= 0 => seed = *n as u64,
                (_, "seed") => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value)
                }
                (ValueKind::Name(_), k) if COL_OPTS.contains(&k) => {
                    cols.insert(k, (&o.key, o.value.span));
                }
                (_, k) if COL_OPTS.contains(&k) => {
                    self.bad_value(key, o.value.span, "a column name", &o.value)
                }
                (ValueKind::Lit(Lit::Float(_) | Lit::Int(_)), _) => {
                    let v = match o.value.kind {
                        ValueKind::Lit(Lit::Float(f)) => f,
                        ValueKind::Lit(Lit::Int(i)) => i as f64,
                        _ => 0.0,
                    };
                    if let Some((_, _, first)) = partitions.iter().find(|p| p.0 == key) {
                        self.errors.push(CheckError::DuplicateName {
                            kind: "partition",
                            name: key.to_string(),
                            span: o.key.span,
                            first: *first,
                        });
                        continue;
                    }
                    if !(v > 0.0 && v <= 1.0) {
                        self.bad_value(
                            key,
                            o.value.span,
                            "a share of rows greater than 0 and at most 1",
                            &o.value,
                        );
                        continue;
                    }
                    partitions.push((key.to_string(), v, o.key.span));
                }
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: key.to_string(),
                    context: "a split",
                    valid: vec![
                        "train".into(),
                        "test".into(),
                        "valid".into(),
                        "seed".into(),
                        "key".into(),
                        "stratify".into(),
                        "order".into(),
                        "column".into(),
                    ],
                }),
            }
        }
        // The columns the options name.
        let col_value = |o: &str| -> Option<String> {
            s.options
                .iter()
                .find(|x| x.key.name == o)
                .and_then(|x| match &x.value.kind {
                    ValueKind::Name(n) => Some(n.clone()),
                    _ => None,
                })
        };
        for (a, b) in [("key", "order"), ("key", "stratify"), ("stratify", "order")] {
            if cols.contains_key(a) && cols.contains_key(b) {
                self.errors.push(CheckError::SplitConflict {
                    span: cols[b].0.span,
                    a: a.into(),
                    b: b.into(),
                });
            }
        }
        for (opt, (_, vspan)) in &cols {
            let Some(colname) = col_value(opt) else {
                continue;
            };
            let Some(c) = frame.get(&colname).filter(|c| c.group_of.is_none()) else {
                self.unknown_column(&colname, *vspan, &frame);
                continue;
            };
            let (ok, expected) = match *opt {
                "key" | "stratify" => (
                    c.ty.is_discrete(),
                    "a category, str, bool, int or date column",
                ),
                "order" => (
                    c.ty.is_numeric() || c.ty.is_temporal(),
                    "a number, date or datetime column",
                ),
                _ => (c.ty.is_textual(), "a category or str column"),
            };
            if !ok {
                self.errors.push(CheckError::SplitColumnType {
                    span: *vspan,
                    option: opt.to_string(),
                    column: colname.clone(),
                    found: c.ty.to_string(),
                    expected,
                });
            }
        }
        let (method, partition_column, names) = if let Some(colname) = col_value("column") {
            if let Some((name, _, span)) = partitions.first() {
                self.errors.push(CheckError::SplitConflict {
                    span: *span,
                    a: "column".into(),
                    b: name.clone(),
                });
                return None;
            }
            let levels = frame
                .get(&colname)
                .and_then(|c| c.ty.levels().map(|l| l.to_vec()));
            if let Some(l) = &levels {
                if !l.iter().any(|x| x == "train") {
                    self.errors.push(CheckError::NoTrain {
                        span: cols["column"].1,
                        found: l.clone(),
                    });
                    return None;
                }
            }
            (
                plan::SplitMethod::Column {
                    column: colname.clone(),
                },
                colname,
                levels,
            )
        } else {
            if !partitions.iter().any(|p| p.0 == "train") {
                self.errors.push(CheckError::NoTrain {
                    span: s.name.span,
                    found: partitions.iter().map(|p| p.0.clone()).collect(),
                });
                return None;
            }
            let sum: f64 = partitions.iter().map(|p| p.1).sum();
            if (sum - 1.0).abs() > 1e-6 {
                let span = partitions
                    .first()
                    .map(|p| p.2)
                    .unwrap_or(s.name.span)
                    .to(partitions.last().map(|p| p.2).unwrap_or(s.name.span));
                self.errors.push(CheckError::RatioSum { span, sum });
                return None;
            }
            if frame.get(crate::plan::names::PARTITION).is_some() {
                self.errors
                    .push(CheckError::PartitionColumnClash { span: s.name.span });
                return None;
            }
            (
                plan::SplitMethod::Ratios {
                    partitions: partitions.iter().map(|p| (p.0.clone(), p.1)).collect(),
                    seed,
                    key: col_value("key"),
                    stratify: col_value("stratify"),
                    order: col_value("order"),
                },
                crate::plan::names::PARTITION.to_string(),
                Some(partitions.iter().map(|p| p.0.clone()).collect::<Vec<_>>()),
            )
        };
        match frame.get_mut(&partition_column) {
            Some(c) => {
                c.lineage.insert(PARTITION_ROOT.into());
                c.defined = s.name.span;
            }
            None => frame.push(Column {
                name: partition_column.clone(),
                ty: Type::Category {
                    levels: names.clone(),
                },
                nullable: false,
                group_of: None,
                encoded: false,
                lineage: BTreeSet::from([PARTITION_ROOT.to_string()]),
                defined: s.name.span,
            }),
        }
        frame.split = Some(SplitInfo {
            stage: s.name.name.clone(),
            column: partition_column.clone(),
            partitions: names,
            span: s.name.span,
        });
        let op = Op::Split(plan::SplitOp {
            partition_column,
            method,
        });
        Some((op, frame, BTreeSet::new()))
    }
}
