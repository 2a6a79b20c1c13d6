//! `model` declarations: algorithms, parameters, search spaces and `tune`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_model(
        &mut self,
        m: &ast::Model,
        frame: Frame,
        span: Span,
        stage_id: &str,
        input_ids: &[String],
    ) -> Option<(Op, Frame, BTreeSet<String>)> {
        let model = m.name.name.as_str();
        let algo = catalog::algorithm(&m.algorithm.name);
        if algo.is_none() {
            self.errors.push(CheckError::UnknownAlgorithm {
                span: m.algorithm.span,
                name: m.algorithm.name.clone(),
                known: catalog::ALGORITHMS
                    .iter()
                    .map(|a| a.name.to_string())
                    .collect(),
            });
        }
        if frame.split.is_none() {
            self.errors.push(CheckError::ModelBeforeSplit {
                span: m.input.span,
                model: model.to_string(),
            });
        }
        // target and task
        let target_opt = m.params.iter().find(|o| o.key.name == "target");
        let task_opt = m.params.iter().find(|o| o.key.name == "task");
        let mut target: Option<(String, Column, Span)> = None;
        match target_opt {
            None => self.errors.push(CheckError::MissingTarget {
                span: m.name.span,
                model: model.to_string(),
            }),
            Some(o) => match &o.value.kind {
                ValueKind::Name(n) => match frame.get(n).filter(|c| c.group_of.is_none()) {
                    Some(c) => target = Some((n.clone(), c.clone(), o.value.span)),
                    None => self.unknown_column(n, o.value.span, &frame),
                },
                _ => self.bad_value("target", o.value.span, "a column name", &o.value),
            },
        }
        let mut task: Option<TaskKind> = None;
        if let Some((tname, tcol, tspan)) = &target {
            let declared = match task_opt.map(|o| &o.value.kind) {
                None => None,
                Some(ValueKind::Name(n)) if n == "regression" => Some(true),
                Some(ValueKind::Name(n)) if n == "classification" => Some(false),
                Some(_) => {
                    if let Some(o) = task_opt {
                        self.bad_value(
                            "task",
                            o.value.span,
                            "`regression` or `classification`",
                            &o.value,
                        );
                    }
                    None
                }
            };
            let classes = |c: &Column| -> TaskKind {
                match &c.ty {
                    Type::Bool => TaskKind::Binary,
                    Type::Category { levels: Some(l) } if l.len() <= 2 => TaskKind::Binary,
                    Type::Category { levels: Some(_) } => TaskKind::Multiclass,
                    // The class count is unknown before the data is read:
                    // check as binary (the most permissive), the runtime
                    // checks again.
                    _ => TaskKind::Binary,
                }
            };
            task = match (&tcol.ty, declared) {
                (Type::Float, None | Some(true)) => Some(TaskKind::Regression),
                (Type::Int, Some(true)) => Some(TaskKind::Regression),
                (Type::Int, Some(false)) => Some(TaskKind::Binary),
                // An algorithm of one kind of task settles it (`ridge`
                // regresses, `logistic_regression` classifies).
                (Type::Int, None) if algo.is_some_and(|a| a.tasks == [TaskKind::Regression]) => {
                    Some(TaskKind::Regression)
                }
                (Type::Int, None)
                    if algo.is_some_and(|a| !a.tasks.contains(&TaskKind::Regression)) =>
                {
                    Some(TaskKind::Binary)
                }
                (Type::Int, None) => {
                    self.errors.push(CheckError::TaskUnknown {
                        span: *tspan,
                        target: tname.clone(),
                        found: "int".into(),
                    });
                    None
                }
                (Type::Bool | Type::Str | Type::Category { .. }, None | Some(false)) => {
                    Some(classes(tcol))
                }
                (t, Some(reg)) if !t.is_temporal() => {
                    if let Some(o) = task_opt {
                        self.errors.push(CheckError::BadOptionValue {
                            span: o.value.span,
                            key: "task".into(),
                            expected: if reg {
                                "`classification` for a target of this type".into()
                            } else {
                                "`regression` for a float target".into()
                            },
                            found: format!(
                                "`{}` with a {} target",
                                if reg { "regression" } else { "classification" },
                                t
                            ),
                        });
                    }
                    None
                }
                (t, _) => {
                    self.errors.push(CheckError::TaskUnknown {
                        span: *tspan,
                        target: tname.clone(),
                        found: t.to_string(),
                    });
                    None
                }
            };
            if tcol.nullable {
                self.errors.push(CheckError::NullableInput {
                    span: *tspan,
                    column: tname.clone(),
                    defined: tcol.defined,
                    model: model.to_string(),
                    is_target: true,
                });
            }
        }
        if let (Some(a), Some(t)) = (algo, task) {
            let fits = a.tasks.contains(&t);
            if !fits {
                self.errors.push(CheckError::TaskUnsupported {
                    span: m.algorithm.span,
                    algorithm: a.name.to_string(),
                    task: t.name().to_string(),
                    supported: catalog::ALGORITHMS
                        .iter()
                        .filter(|x| x.tasks.contains(&t))
                        .map(|x| x.name.to_string())
                        .collect(),
                });
            }
        }

        // parameters
        let mut params = BTreeMap::new();
        let mut search = BTreeMap::new();
        if let Some(a) = algo {
            for o in &m.params {
                let key = o.key.name.as_str();
                if key == "target" || key == "task" {
                    continue;
                }
                // The decision threshold of a binary classifier: any
                // algorithm that gives probabilities.
                let threshold_spec = (key == "threshold").then_some(&catalog::THRESHOLD);
                if threshold_spec.is_some() && task.is_some_and(|t| t != TaskKind::Binary) {
                    self.errors.push(CheckError::BadOptionValue {
                        span: o.key.span,
                        key: "threshold".into(),
                        expected: "left out: a decision threshold is for a binary target (a bool, or a category of two levels); with more classes the most probable one is predicted".into(),
                        found: format!(
                            "a {} model",
                            task.map(|t| t.name()).unwrap_or("regression")
                        ),
                    });
                    continue;
                }
                // Class weights weigh classes: a regression has none.
                if key == "class_weight" && task == Some(TaskKind::Regression) {
                    self.errors.push(CheckError::BadOptionValue {
                        span: o.key.span,
                        key: "class_weight".into(),
                        expected: "left out: class weights are for a classification target".into(),
                        found: "a regression model".into(),
                    });
                    continue;
                }
                let Some(spec) = threshold_spec.or_else(|| a.params.iter().find(|p| p.name == key))
                else {
                    self.errors.push(CheckError::UnknownParam {
                        span: o.key.span,
                        algorithm: a.name.to_string(),
                        name: key.to_string(),
                        valid: a.params.iter().map(|p| p.name.to_string()).collect(),
                    });
                    continue;
                };
                match &o.value.kind {
                    ValueKind::List(_) if spec.kind == ParamKind::Column => {
                        self.bad_value(
                            key,
                            o.value.span,
                            "one column (weights are not tuned)",
                            &o.value,
                        );
                    }
                    ValueKind::List(items) => {
                        if m.tune.is_none() {
                            self.errors.push(CheckError::SearchWithoutTune {
                                span: o.value.span,
                                param: key.to_string(),
                            });
                            continue;
                        }
                        if items.is_empty() {
                            self.bad_value(key, o.value.span, "a non-empty list", &o.value);
                            continue;
                        }
                        let vals: Vec<ParamValue> = items
                            .iter()
                            .filter_map(|v| self.param_value(a.name, spec, v))
                            .collect();
                        if vals.len() == items.len() {
                            search.insert(key.to_string(), vals);
                        }
                    }
                    _ => {
                        if let Some(v) = self.param_value(a.name, spec, &o.value) {
                            params.insert(key.to_string(), v);
                        }
                    }
                }
            }
            for spec in a.params {
                if params.contains_key(spec.name) || search.contains_key(spec.name) {
                    continue;
                }
                if let Some(d) = spec.default {
                    let v = match spec.kind {
                        ParamKind::Float { .. } => d.parse().ok().map(ParamValue::Float),
                        ParamKind::Int { .. } => d.parse().ok().map(ParamValue::Int),
                        ParamKind::Bool => Some(ParamValue::Bool(d == "true")),
                        ParamKind::Choice(_) | ParamKind::ClassWeight | ParamKind::Column => {
                            Some(ParamValue::Str(d.to_string()))
                        }
                    };
                    if let Some(v) = v {
                        params.insert(spec.name.to_string(), v);
                    }
                }
            }
        }

        // A loss is for values or for classes.
        if let (Some(ParamValue::Str(l)), Some(t), Some(o)) = (
            params.get("loss"),
            task,
            m.params.iter().find(|o| o.key.name == "loss"),
        ) {
            let regression = t == TaskKind::Regression;
            let fits = if regression {
                l == "squared_error" || l == "absolute_error" || l == "huber"
            } else {
                l == "log_loss"
            };
            if !fits {
                self.errors.push(CheckError::BadOptionValue {
                    span: o.value.span,
                    key: "loss".into(),
                    expected: if regression {
                        "`squared_error`, `absolute_error` or `huber` (a loss for values)".into()
                    } else {
                        "`log_loss` (the loss for classes), or left out".into()
                    },
                    found: format!("`{l}` for a {} model", t.name()),
                });
            }
        }

        // `alpha` is huber's: with another loss it would be ignored.
        if m.algorithm.name == "gradient_boosting" {
            if let Some(o) = m.params.iter().find(|o| o.key.name == "alpha") {
                let loss = params.get("loss");
                if !matches!(loss, Some(ParamValue::Str(l)) if l == "huber") {
                    self.errors.push(CheckError::BadOptionValue {
                        span: o.key.span,
                        key: "alpha".into(),
                        expected: "left out: it is huber's quantile, read with `loss = huber` only (or add `loss = huber`)".into(),
                        found: match loss {
                            Some(ParamValue::Str(l)) => format!("`loss = {l}`"),
                            _ => "the default loss, squared_error".into(),
                        },
                    });
                }
            }
            // Nor is its default a parameter of another loss (the plan and
            // `mlp models show` list what the fit reads).
            if !matches!(params.get("loss"), Some(ParamValue::Str(l)) if l == "huber") {
                params.remove("alpha");
            }
        }

        // class_weight names classes of the target (when they are known
        // before the data is read).
        let known_classes: Option<Vec<String>> =
            target.as_ref().and_then(|(_, c, _)| match &c.ty {
                Type::Bool => Some(vec!["false".to_string(), "true".to_string()]),
                Type::Category { levels: Some(l) } => Some(l.clone()),
                _ => None,
            });
        if let (Some(classes), Some(o)) = (
            &known_classes,
            m.params.iter().find(|o| o.key.name == "class_weight"),
        ) {
            let maps = params
                .get("class_weight")
                .into_iter()
                .chain(search.get("class_weight").into_iter().flatten());
            let unknown: Vec<String> = maps
                .filter_map(|v| match v {
                    ParamValue::Map(m) => Some(m.keys().cloned().collect::<Vec<_>>()),
                    _ => None,
                })
                .flatten()
                .filter(|k| !classes.contains(k))
                .collect();
            if let Some(k) = unknown.first() {
                self.errors.push(CheckError::BadOptionValue {
                    span: o.value.span,
                    key: "class_weight".into(),
                    expected: format!(
                        "weights of the target's classes ({})",
                        classes
                            .iter()
                            .map(|c| format!("\"{c}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    found: format!("the class \"{k}\", which the target does not have"),
                });
            }
        }

        // tune
        let mut tune = None;
        if let (Some(tb), Some(t)) = (&m.tune, task) {
            let example = algo.and_then(tune_example).filter(|_| search.is_empty());
            tune = self.check_tune(tb, t, search.is_empty(), example);
        }

        // inputs
        let target_name = target.as_ref().map(|t| t.0.clone());
        let target_lineage = target
            .as_ref()
            .map(|t| t.1.lineage.clone())
            .unwrap_or_default();
        let partition = frame.split.as_ref().map(|s| s.column.clone());
        for x in &m.exclude {
            if frame.get(&x.name).is_none() {
                self.unknown_column(&x.name, x.span, &frame);
            }
        }
        // The weight column: a numeric column of the input, never missing,
        // and not an input itself.
        let weight_column = match params.get("sample_weight") {
            Some(ParamValue::Str(w)) => Some(w.clone()),
            _ => None,
        };
        if let (Some(w), Some(o)) = (
            &weight_column,
            m.params.iter().find(|o| o.key.name == "sample_weight"),
        ) {
            let span = o.value.span;
            let bad = |expected: &str, found: String| CheckError::BadOptionValue {
                span,
                key: "sample_weight".into(),
                expected: expected.into(),
                found,
            };
            match frame.get(w) {
                None => self.unknown_column(w, span, &frame),
                Some(_) if Some(w) == target.as_ref().map(|t| &t.0) => self.errors.push(bad(
                    "a column other than the target",
                    format!("the target `{w}`"),
                )),
                Some(_) if Some(w) == frame.split.as_ref().map(|s| &s.column) => self.errors.push(
                    bad("a numeric column of the data", format!("the split's `{w}`")),
                ),
                Some(c) if !matches!(c.ty, Type::Int | Type::Float) => self.errors.push(bad(
                    "a numeric column (int or float)",
                    format!("`{w}`, a {}", c.ty),
                )),
                Some(c) if c.nullable => self.errors.push(bad(
                    "a column without missing values (impute it, or filter the rows)",
                    format!("`{w}`, which may be missing"),
                )),
                Some(_) => {}
            }
            if let Some(list) = &m.features {
                if let Some(id) = list.iter().find(|id| &id.name == w) {
                    self.errors.push(CheckError::BadOptionValue {
                        span: id.span,
                        key: "features".into(),
                        expected: format!(
                            "the model's inputs, without its weights (`sample_weight = {w}`)"
                        ),
                        found: format!("`{w}`, the weight column"),
                    });
                }
            }
        }
        let mut excluded: BTreeSet<&str> = m.exclude.iter().map(|x| x.name.as_str()).collect();
        if let Some(w) = &weight_column {
            excluded.insert(w.as_str());
        }
        let mut inputs: Vec<(Column, Span)> = vec![];
        match &m.features {
            Some(list) => {
                for id in list {
                    if Some(&id.name) == target_name.as_ref() {
                        self.errors.push(CheckError::TargetAsFeature {
                            span: id.span,
                            target: id.name.clone(),
                        });
                        continue;
                    }
                    match frame.get(&id.name) {
                        // Naming an encoded original means its encoded columns.
                        Some(c) if c.encoded => {
                            for e in frame.columns.iter().filter(|e| encoding_of(e, c)) {
                                inputs.push(((**e).clone(), id.span));
                            }
                        }
                        Some(c) => inputs.push((c.clone(), id.span)),
                        None => self.unknown_column(&id.name, id.span, &frame),
                    }
                }
            }
            None => {
                // Excluding an encoded original excludes its encoded columns.
                let excluded_originals: Vec<&Column> = frame
                    .columns
                    .iter()
                    .filter(|c| c.encoded && excluded.contains(c.name.as_str()))
                    .map(|c| &**c)
                    .collect();
                for c in &frame.columns {
                    if Some(&c.name) == target_name.as_ref()
                        || Some(&c.name) == partition.as_ref()
                        || excluded.contains(c.name.as_str())
                        || c.encoded
                        || c.group_of.as_deref().is_some_and(|g| excluded.contains(g))
                        || excluded_originals.iter().any(|o| encoding_of(c, o))
                    {
                        continue;
                    }
                    inputs.push(((**c).clone(), m.input.span));
                }
            }
        }
        if inputs.is_empty() && target.is_some() {
            self.errors.push(CheckError::NoInputs {
                span: m.name.span,
                model: model.to_string(),
            });
        }
        // Lineage of the columns whose definition failed: a nullable input
        // computed from one is most likely the same mistake.
        let poisoned_roots: BTreeSet<String> = frame
            .columns
            .iter()
            .filter(|c| frame.poisoned.contains(&c.name))
            .flat_map(|c| c.lineage.iter().cloned())
            .collect();
        for (c, use_span) in &inputs {
            let label_span = if m.features.is_some() {
                *use_span
            } else {
                m.input.span
            };
            if frame.poisoned.contains(&c.name) {
                continue;
            }
            if c.lineage.contains(PARTITION_ROOT) {
                self.errors.push(CheckError::ReadsPartition {
                    span: label_span,
                    column: c.name.clone(),
                    defined: c.defined,
                });
                continue;
            }
            if !target_lineage.is_empty() && !c.lineage.is_disjoint(&target_lineage) {
                self.errors.push(CheckError::Leakage {
                    span: label_span,
                    feature: c.name.clone(),
                    target: target_name.clone().unwrap_or_default(),
                    defined: c.defined,
                    // An encoded column is left out by its original's name.
                    exclude: frame
                        .columns
                        .iter()
                        .find(|o| o.encoded && encoding_of(c, o))
                        .map(|o| o.name.clone())
                        .or_else(|| c.group_of.clone())
                        .unwrap_or_else(|| c.name.clone()),
                });
                continue;
            }
            let native_category = matches!(c.ty, Type::Category { .. })
                && catalog::accepts_categories(&m.algorithm.name);
            // Each declared level of a category split natively is a bin of
            // its own: more than `max_bins` (any value tuned) cannot fit.
            if let (true, Type::Category { levels: Some(l) }) = (native_category, &c.ty) {
                let bins = params
                    .get("max_bins")
                    .into_iter()
                    .chain(search.get("max_bins").into_iter().flatten())
                    .filter_map(|v| match v {
                        ParamValue::Int(i) => Some(*i),
                        _ => None,
                    })
                    .min();
                if let Some(max_bins) = bins.filter(|b| (l.len() as i64) > *b) {
                    self.errors.push(CheckError::TooManyLevels {
                        span: label_span,
                        column: c.name.clone(),
                        levels: l.len(),
                        max_bins,
                        defined: c.defined,
                        model: model.to_string(),
                    });
                    continue;
                }
            }
            if !c.ty.is_model_input() && !native_category {
                self.errors.push(CheckError::NonNumericInput {
                    span: label_span,
                    column: c.name.clone(),
                    found: c.ty.to_string(),
                    defined: c.defined,
                    model: model.to_string(),
                    categories_native: catalog::accepts_categories(&m.algorithm.name),
                });
                continue;
            }
            if c.nullable
                && c.lineage.is_disjoint(&poisoned_roots)
                && !catalog::accepts_missing(&m.algorithm.name)
            {
                self.errors.push(CheckError::NullableInput {
                    span: label_span,
                    column: c.name.clone(),
                    defined: c.defined,
                    model: model.to_string(),
                    is_target: false,
                });
            }
        }
        let (Some(a), Some(task), Some((tname, tcol, _))) = (algo, task, target) else {
            return None;
        };
        let classes = match &tcol.ty {
            Type::Category { levels: Some(l) } => Some(l.clone()),
            Type::Bool => Some(vec!["false".into(), "true".into()]),
            _ => None,
        };
        let op = Op::Model(plan::ModelOp {
            algorithm: plan::Algorithm::parse(a.name)?,
            task: if task == TaskKind::Regression {
                plan::Task::Regression
            } else {
                plan::Task::Classification
            },
            target: tname.clone(),
            classes,
            features: inputs.iter().map(|(c, _)| c.name.clone()).collect(),
            params,
            search,
            tune,
        });
        let mut chain = input_ids.to_vec();
        chain.extend(self.upstream_of(input_ids));
        self.models.insert(
            model.to_string(),
            ModelInfo {
                stage_id: stage_id.to_string(),
                span,
                task,
                target: tname,
                target_lineage: tcol.lineage.clone(),
                frame: frame.clone(),
                input_lineage: inputs
                    .iter()
                    .flat_map(|(c, _)| c.lineage.iter().cloned())
                    .collect(),
                input_chain: chain,
            },
        );
        Some((op, frame, BTreeSet::new()))
    }

    /// Every stage upstream of the given ones (transitively).
    pub(super) fn upstream_of(&self, ids: &[String]) -> Vec<String> {
        let mut out = vec![];
        let mut stack: Vec<String> = ids.to_vec();
        while let Some(id) = stack.pop() {
            if let Some(st) = self.program.stages.iter().find(|s| s.id == id) {
                for i in &st.inputs {
                    if !out.contains(i) {
                        out.push(i.clone());
                        stack.push(i.clone());
                    }
                }
            }
        }
        out
    }

    pub(super) fn param_value(
        &mut self,
        algorithm: &str,
        spec: &catalog::ParamSpec,
        v: &ast::Value,
    ) -> Option<ParamValue> {
        let found = value_text(v);
        let out = match (spec.kind, &v.kind) {
            (
                ParamKind::Float {
                    min,
                    max,
                    min_open,
                    max_open,
                },
                ValueKind::Lit(Lit::Float(_) | Lit::Int(_)),
            ) => {
                let x = match v.kind {
                    ValueKind::Lit(Lit::Float(f)) => f,
                    ValueKind::Lit(Lit::Int(i)) => i as f64,
                    _ => 0.0,
                };
                let ok = (if min_open { x > min } else { x >= min })
                    && (if max_open { x < max } else { x <= max });
                ok.then_some(ParamValue::Float(x))
            }
            (ParamKind::Int { min, max }, ValueKind::Lit(Lit::Int(i))) => {
                (*i >= min && *i <= max).then_some(ParamValue::Int(*i))
            }
            (ParamKind::Bool, ValueKind::Lit(Lit::Bool(b))) => Some(ParamValue::Bool(*b)),
            (ParamKind::Choice(c), ValueKind::Name(n)) => {
                c.contains(&n.as_str()).then(|| ParamValue::Str(n.clone()))
            }
            (ParamKind::Choice(c), ValueKind::Lit(Lit::Str(n))) => {
                c.contains(&n.as_str()).then(|| ParamValue::Str(n.clone()))
            }
            (ParamKind::Choice(c), ValueKind::Lit(Lit::Bool(b))) => {
                let b = b.to_string();
                c.contains(&b.as_str()).then_some(ParamValue::Str(b))
            }
            (ParamKind::Column, ValueKind::Name(n)) => Some(ParamValue::Str(n.clone())),
            (ParamKind::ClassWeight, ValueKind::Name(n)) if n == "balanced" => {
                Some(ParamValue::Str(n.clone()))
            }
            (ParamKind::ClassWeight, ValueKind::Map(entries)) if !entries.is_empty() => {
                let mut m = BTreeMap::new();
                let mut ok = true;
                for (k, v) in entries {
                    match v.kind {
                        ValueKind::Lit(Lit::Float(x)) if x > 0.0 && x.is_finite() => {
                            ok &= m.insert(k.clone(), x).is_none();
                        }
                        ValueKind::Lit(Lit::Int(i)) if i > 0 => {
                            ok &= m.insert(k.clone(), i as f64).is_none();
                        }
                        _ => ok = false,
                    }
                }
                ok.then_some(ParamValue::Map(m))
            }
            _ => None,
        };
        if out.is_none() {
            self.errors.push(CheckError::ParamValue {
                span: v.span,
                algorithm: algorithm.to_string(),
                name: spec.name.to_string(),
                expected: spec.kind.describe(),
                found,
            });
        }
        out
    }

    pub(super) fn check_tune(
        &mut self,
        tb: &ast::Tune,
        task: TaskKind,
        no_search: bool,
        example: Option<String>,
    ) -> Option<plan::TuneOp> {
        let mut tune = plan::TuneOp {
            cv: 5,
            metric: if task == TaskKind::Regression {
                plan::Metric::Rmse
            } else {
                plan::Metric::Accuracy
            },
            search: plan::SearchKind::Grid,
            trials: None,
            seed: 42,
        };
        let mut ok = true;
        for o in &tb.options {
            let key = o.key.name.as_str();
            match (key, &o.value.kind) {
                ("cv", ValueKind::Lit(Lit::Int(k))) if (2..=100).contains(k) => tune.cv = *k,
                ("cv", _) => {
                    self.bad_value(key, o.value.span, "an integer from 2 to 100", &o.value);
                    ok = false;
                }
                ("seed", ValueKind::Lit(Lit::Int(s))) if *s >= 0 => tune.seed = *s as u64,
                ("seed", _) => {
                    self.bad_value(key, o.value.span, "a non-negative integer", &o.value);
                    ok = false;
                }
                ("metric", ValueKind::Name(n)) => {
                    let ident = Ident {
                        name: n.clone(),
                        span: o.value.span,
                    };
                    let known = self.check_metric(&ident, task);
                    match plan::Metric::parse(n).filter(|_| known) {
                        Some(m) => tune.metric = m,
                        None => ok = false,
                    }
                }
                ("metric", _) => {
                    self.bad_value(key, o.value.span, "a metric name", &o.value);
                    ok = false;
                }
                ("search", ValueKind::Name(n)) if n == "grid" => {
                    tune.search = plan::SearchKind::Grid
                }
                ("search", ValueKind::Call(n, args))
                    if n.name == "random"
                        && args.len() == 1
                        && matches!(args[0].kind, ValueKind::Lit(Lit::Int(k)) if k >= 1) =>
                {
                    tune.search = plan::SearchKind::Random;
                    if let ValueKind::Lit(Lit::Int(k)) = args[0].kind {
                        tune.trials = Some(k);
                    }
                }
                ("search", _) => {
                    self.bad_value(
                        key,
                        o.value.span,
                        "`grid` or `random(N)` with N >= 1",
                        &o.value,
                    );
                    ok = false;
                }
                _ => {
                    self.errors.push(CheckError::UnknownOption {
                        span: o.key.span,
                        key: key.to_string(),
                        context: "`tune`",
                        valid: vec!["cv".into(), "metric".into(), "search".into(), "seed".into()],
                    });
                    ok = false;
                }
            }
        }
        if no_search {
            self.errors.push(CheckError::TuneWithoutSearch {
                span: tb.span,
                example,
            });
        }
        ok.then_some(tune)
    }

    /// Reports an unknown metric or one that does not fit the task.
    pub(super) fn check_metric(&mut self, m: &Ident, task: TaskKind) -> bool {
        let regression = task == TaskKind::Regression;
        let Some(spec) = catalog::metric_spec(&m.name) else {
            self.errors.push(CheckError::UnknownMetric {
                span: m.span,
                name: m.name.clone(),
                valid: catalog::METRICS
                    .iter()
                    .filter(|x| x.regression == regression)
                    .map(|x| x.name.to_string())
                    .collect(),
            });
            return false;
        };
        let fits = spec.regression == regression;
        let binary_mismatch = spec.binary_only && task == TaskKind::Multiclass;
        if !fits || binary_mismatch {
            let task_name = if binary_mismatch {
                "multiclass classification"
            } else if regression {
                "regression"
            } else {
                "classification"
            };
            self.errors.push(CheckError::MetricTask {
                span: m.span,
                metric: m.name.clone(),
                task: task_name.into(),
                valid: catalog::METRICS
                    .iter()
                    .filter(|x| x.regression == regression && !(binary_mismatch && x.binary_only))
                    .map(|x| x.name.to_string())
                    .collect(),
            });
            return false;
        }
        true
    }

    // ------------------------------------------------------------ evaluate

    pub(super) fn model_for(
        &mut self,
        id: &Ident,
        named: &BTreeMap<String, (Named<'a>, Span, &'a Ident)>,
    ) -> Option<ModelInfo> {
        if let Some(m) = self.models.get(&id.name) {
            return Some(m.clone());
        }
        if !matches!(named.get(&id.name), Some((Named::Model(_), _, _))) {
            self.errors.push(CheckError::UnknownStage {
                name: id.name.clone(),
                span: id.span,
                available: named
                    .iter()
                    .filter(|(_, v)| matches!(v.0, Named::Model(_)))
                    .map(|(k, _)| k.clone())
                    .collect(),
                wanted: "model",
            });
        }
        // A declared model that failed to check was reported already.
        None
    }

    pub(super) fn gate_range(
        &mut self,
        g: &ast::Gate,
        task: TaskKind,
        in_slice: bool,
    ) -> Option<plan::GateOp> {
        if !self.check_metric(&g.metric, task) {
            return None;
        }
        let spec = catalog::metric_spec(&g.metric.name)?;
        let (lo, hi) = match g.aggregate.as_ref().map(|a| a.name.as_str()) {
            None | Some("min") | Some("max") => (spec.lo, spec.hi),
            Some("gap") => (0.0, spec.hi - spec.lo),
            Some("ratio") => (0.0, 1.0),
            Some(other) => {
                self.errors.push(CheckError::UnknownAggregate {
                    span: g.aggregate.as_ref().map(|a| a.span).unwrap_or(g.span),
                    name: other.to_string(),
                });
                return None;
            }
        };
        if g.aggregate.is_some() && !in_slice {
            self.errors.push(CheckError::UnknownAggregate {
                span: g.aggregate.as_ref().map(|a| a.span).unwrap_or(g.span),
                name: g
                    .aggregate
                    .as_ref()
                    .map(|a| a.name.clone())
                    .unwrap_or_default(),
            });
            return None;
        }
        if g.threshold < lo || g.threshold > hi {
            let fmt = |x: f64| {
                if x.is_infinite() {
                    if x > 0.0 {
                        "∞".to_string()
                    } else {
                        "-∞".to_string()
                    }
                } else {
                    catalog::fmt_num(x)
                }
            };
            self.errors.push(CheckError::ThresholdRange {
                span: g.threshold_span,
                metric: match &g.aggregate {
                    Some(a) => format!("{}({})", a.name, g.metric.name),
                    None => g.metric.name.clone(),
                },
                value: g.threshold,
                range: format!("[{}, {}]", fmt(lo), fmt(hi)),
            });
            return None;
        }
        Some(plan::GateOp {
            aggregate: match &g.aggregate {
                Some(a) => Some(plan::SliceAggregate::parse(&a.name)?),
                None => None,
            },
            metric: plan::Metric::parse(&g.metric.name)?,
            op: g.op.into(),
            threshold: g.threshold,
        })
    }
}

/// A search space for a `tune` help line: the algorithm's first numeric
/// parameter, around its default and inside its range
/// (`alpha = [0.1, 1.0, 10.0]`).
pub(super) fn tune_example(a: &catalog::AlgorithmSpec) -> Option<String> {
    a.params.iter().find_map(|p| match p.kind {
        ParamKind::Float { min, max, .. } => {
            let d: f64 = p.default?.parse().ok()?;
            let vals = [d / 10.0, d, d * 10.0];
            (d > 0.0 && vals[0] > min && vals[2] <= max)
                .then(|| format!("{} = [{:?}, {:?}, {:?}]", p.name, vals[0], vals[1], vals[2]))
        }
        ParamKind::Int { min, max } => {
            let d: i64 = p.default.and_then(|d| d.parse().ok()).unwrap_or(min.max(4));
            let vals = [d, d.saturating_mul(2), d.saturating_mul(4)];
            (d >= 1 && vals[0] >= min && vals[2] <= max)
                .then(|| format!("{} = [{}, {}, {}]", p.name, vals[0], vals[1], vals[2]))
        }
        _ => None,
    })
}

/// Whether `e` is one of the columns the encoded original `original` was
/// encoded into: its one-hot group (`original_*`), one of its declared
/// levels' one-hot columns, or its ordinal column (each defined by the
/// encoding, with the original's lineage); not a feature that only reads
/// it under a similar name.
fn encoding_of(e: &Column, original: &Column) -> bool {
    if e.group_of.as_deref() == Some(&original.name) {
        return true;
    }
    if e.encoded || e.defined == original.defined || e.lineage != original.lineage {
        return false;
    }
    e.name == format!("{}_ordinal", original.name)
        || super::transform::onehot_levels(&original.ty)
            .is_some_and(|l| plan::names::onehot_columns(&original.name, &l).contains(&e.name))
}
