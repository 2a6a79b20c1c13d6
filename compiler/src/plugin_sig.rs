//! Plugin signatures: what a Wasm plugin declares about its functions.
//!
//! The SDK writes a JSON document into the module's `mlp:signatures` custom
//! section; [`PluginSignatures::from_section`] reads it (no instantiation). The
//! compiler only sees signatures through [`crate::World`], so tests can supply
//! them without any `.wasm` file.

use serde::{Deserialize, Serialize};

/// The plugin ABI version this host speaks. A module that declares a newer one
/// is rejected at compile time (E0606).
pub const PLUGIN_ABI_VERSION: u32 = 1;

/// The name of the custom section holding the signatures.
pub const SIGNATURE_SECTION: &str = "mlp:signatures";

/// A value type at the plugin boundary. A `category` argument arrives as `str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginType {
    Float,
    Int,
    Bool,
    Str,
}

impl PluginType {
    pub fn name(self) -> &'static str {
        match self {
            PluginType::Float => "float",
            PluginType::Int => "int",
            PluginType::Bool => "bool",
            PluginType::Str => "str",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginParam {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: PluginType,
    /// Whether the function accepts nulls in this argument.
    #[serde(default)]
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginReturn {
    #[serde(rename = "type")]
    pub ty: PluginType,
    #[serde(default)]
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSig {
    pub name: String,
    pub params: Vec<PluginParam>,
    pub returns: PluginReturn,
}

/// Everything a module declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSignatures {
    pub abi: u32,
    pub functions: Vec<FunctionSig>,
}

impl PluginSignatures {
    /// Reads the custom section's payload: one JSON object per function,
    /// one after another (the linker concatenates the entries the SDK writes
    /// for each function), each carrying the ABI version it was written for:
    ///
    /// ```json
    /// {"abi":1,"name":"coastal","params":[{"name":"city","type":"str","nullable":false}],"returns":{"type":"bool","nullable":false}}
    /// ```
    pub fn from_section(bytes: &[u8]) -> Result<Self, PluginError> {
        #[derive(Deserialize)]
        struct Head {
            abi: u32,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[allow(dead_code)]
            abi: u32,
            #[serde(flatten)]
            sig: FunctionSig,
        }
        let malformed = |e: serde_json::Error| PluginError::Malformed {
            reason: e.to_string(),
        };
        // The ABI first: a newer ABI may have changed the entries' shape.
        let mut abi = None;
        for head in serde_json::Deserializer::from_slice(bytes).into_iter::<Head>() {
            let found = head.map_err(malformed)?.abi;
            if found > PLUGIN_ABI_VERSION || found == 0 {
                return Err(PluginError::Abi {
                    found,
                    supported: PLUGIN_ABI_VERSION,
                });
            }
            abi = Some(abi.map_or(found, |a: u32| a.max(found)));
        }
        let Some(abi) = abi else {
            return Err(PluginError::Malformed {
                reason: "the section declares no functions".into(),
            });
        };
        let mut functions: Vec<FunctionSig> = vec![];
        for entry in serde_json::Deserializer::from_slice(bytes).into_iter::<Entry>() {
            let sig = entry.map_err(malformed)?.sig;
            if functions.iter().any(|f| f.name == sig.name) {
                return Err(PluginError::Malformed {
                    reason: format!("function `{}` is declared twice", sig.name),
                });
            }
            functions.push(sig);
        }
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(PluginSignatures { abi, functions })
    }

    pub fn function(&self, name: &str) -> Option<&FunctionSig> {
        self.functions.iter().find(|f| f.name == name)
    }
}

/// Why a plugin's signatures could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("plugin file `{path}` not found")]
    NotFound { path: String },
    #[error("cannot read plugin file `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the module has no `mlp:signatures` section")]
    NoSignatures,
    #[error("the module's signatures are malformed: {reason}")]
    Malformed { reason: String },
    #[error("the module speaks plugin ABI {found}; this mlp speaks ABI {supported}")]
    Abi { found: u32, supported: u32 },
}
