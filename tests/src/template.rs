//! Reads `infra/template.yaml`, the one definition of the table and the routes: the local
//! stack builds both from it, so local and deployed cannot drift apart.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_path_buf()
}

pub struct Template {
    resources: serde_json::Map<String, Value>,
    document: Value,
}

/// An HTTP route of the HTTP API, and the binary that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: String,
    pub path: String,
    pub binary: String,
}

/// A Lambda function of the template.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    pub binary: String,
    pub properties: Value,
}

impl Template {
    pub fn load() -> anyhow::Result<Self> {
        Self::from_file(&project_root().join("infra/template.yaml"))
    }

    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        // Intrinsic tags (`!Ref x`) come through as one-key maps (`{"!Ref": "x"}`).
        let yaml: serde_norway::Value = serde_norway::from_str(&text).context("parsing the SAM template")?;
        let json = serde_json::to_value(yaml).context("converting the SAM template")?;
        let resources =
            json.get("Resources").and_then(Value::as_object).context("the template has no Resources")?.clone();
        Ok(Self { resources, document: json })
    }

    /// The whole template, as JSON.
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// Every resource, by logical id. Intrinsics read as one-key maps: `{"!Ref": "Table"}`.
    pub fn resources(&self) -> &serde_json::Map<String, Value> {
        &self.resources
    }

    pub fn functions(&self) -> Vec<FunctionSpec> {
        self.resources
            .iter()
            .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
            .map(|(logical_id, resource)| FunctionSpec {
                logical_id: logical_id.clone(),
                binary: resource["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap_or_default().to_owned(),
                properties: resource["Properties"].clone(),
            })
            .collect()
    }

    pub fn http_routes(&self) -> Vec<RouteSpec> {
        self.functions()
            .iter()
            .flat_map(|function| {
                let events = function.properties["Events"].as_object().cloned().unwrap_or_default();
                let binary = function.binary.clone();
                events.into_values().filter(|event| event["Type"] == "HttpApi").map(move |event| RouteSpec {
                    method: event["Properties"]["Method"].as_str().unwrap_or_default().to_ascii_uppercase(),
                    path: event["Properties"]["Path"].as_str().unwrap_or_default().to_owned(),
                    binary: binary.clone(),
                })
            })
            .collect()
    }

    /// The properties of the one DynamoDB table.
    pub fn table_properties(&self) -> anyhow::Result<&Value> {
        let tables: Vec<&Value> =
            self.resources.values().filter(|resource| resource["Type"] == "AWS::DynamoDB::Table").collect();
        match tables.as_slice() {
            [table] => Ok(&table["Properties"]),
            other => bail!("expected one AWS::DynamoDB::Table, found {}", other.len()),
        }
    }
}
