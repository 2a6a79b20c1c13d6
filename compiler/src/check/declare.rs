//! `plugin` declarations: a module's signatures and its limits.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_plugin(&mut self, p: &ast::Plugin, span: Span) {
        let path = resolve_path(self.file_name(p.name.span), &p.path);
        let sigs = match self.world.plugin_signatures(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                let err = match e {
                    PluginError::NotFound { .. } | PluginError::Unreadable { .. } => {
                        CheckError::PluginUnavailable {
                            span: p.path_span,
                            path: p.path.clone(),
                            reason: match e {
                                PluginError::NotFound { .. } => "no such file".into(),
                                other => other.to_string(),
                            },
                        }
                    }
                    PluginError::NoSignatures | PluginError::Malformed { .. } => {
                        CheckError::PluginSignatures {
                            span: p.path_span,
                            path: p.path.clone(),
                            reason: e.to_string(),
                        }
                    }
                    PluginError::Abi { found, supported } => CheckError::PluginAbi {
                        span: p.path_span,
                        path: p.path.clone(),
                        found,
                        supported,
                    },
                };
                self.errors.push(err);
                None
            }
        };
        let mut decl = plan::PluginDecl {
            name: p.name.name.clone(),
            path,
            memory_bytes: 64 << 20,
            fuel: 1_000_000,
            timeout_ms: 10_000,
        };
        for o in &p.options {
            match o.key.name.as_str() {
                "memory" => match &o.value.kind {
                    ValueKind::Lit(Lit::Quantity(v, u)) if bytes(*v, u).is_some() => {
                        decl.memory_bytes = bytes(*v, u).unwrap_or(decl.memory_bytes)
                    }
                    _ => {
                        self.bad_value(&o.key.name, o.value.span, "a size such as `64MB`", &o.value)
                    }
                },
                "timeout" => match &o.value.kind {
                    ValueKind::Lit(Lit::Quantity(v, u)) if millis(*v, u).is_some() => {
                        decl.timeout_ms = millis(*v, u).unwrap_or(0.0) as u64
                    }
                    _ => self.bad_value(
                        &o.key.name,
                        o.value.span,
                        "a duration such as `5s`",
                        &o.value,
                    ),
                },
                "fuel" => match &o.value.kind {
                    ValueKind::Lit(Lit::Int(n)) if *n > 0 => decl.fuel = *n as u64,
                    _ => self.bad_value(&o.key.name, o.value.span, "a positive integer", &o.value),
                },
                _ => self.errors.push(CheckError::UnknownOption {
                    span: o.key.span,
                    key: o.key.name.clone(),
                    context: "a plugin",
                    valid: vec!["memory".into(), "fuel".into(), "timeout".into()],
                }),
            }
        }
        let _ = span;
        self.plugins
            .insert(p.name.name.clone(), PluginInfo { sigs });
        self.program.plugins.push(decl);
    }
}
