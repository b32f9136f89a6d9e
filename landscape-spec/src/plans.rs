//! The plan catalogue a host supplies (like Codesphere's plan list).
//!
//! ```
//! let cat = landscape_spec::PlanCatalogue::from_json(r#"[
//!   {"id": 8, "title": "Micro", "cpu": 0.5, "memory": 1073741824, "disk": 10737418240, "maxReplicas": 3},
//!   {"id": 101, "title": "Boost", "cpu": 2, "memory": 4294967296, "disk": 21474836480, "onDemand": true, "deprecated": true}
//! ]"#).unwrap();
//! assert_eq!(cat.get(8).unwrap().max_replicas, 3);
//! assert!(cat.get(101).unwrap().deprecated);
//! ```

use serde::{Deserialize, Serialize};

/// One plan: the resources an instance of a service may use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanInfo {
    /// The id services refer to (`plan: 8`).
    pub id: u64,
    /// Display name.
    #[serde(default)]
    pub title: String,
    /// CPU in cores (0.5 = half a core).
    pub cpu: f64,
    /// Memory limit in bytes.
    pub memory: u64,
    /// Disk in bytes.
    #[serde(default)]
    pub disk: u64,
    /// Whether the plan is billed only while running (off-when-unused).
    #[serde(default)]
    pub on_demand: bool,
    /// Most replicas a service on this plan may have.
    #[serde(default = "default_max_replicas")]
    pub max_replicas: u32,
    /// Whether new services should no longer use it.
    #[serde(default)]
    pub deprecated: bool,
}

fn default_max_replicas() -> u32 {
    u32::MAX
}

/// The plans a host offers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanCatalogue {
    /// The plans, in the order given.
    pub plans: Vec<PlanInfo>,
}

/// A catalogue that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("plan catalogue: {0} (expected a JSON array of {{id, title, cpu, memory, disk, onDemand, maxReplicas, deprecated}})")]
pub struct PlanCatalogueError(#[from] serde_json::Error);

impl PlanCatalogue {
    /// Reads a JSON array of plans (also accepts `{"plans": [...]}`).
    pub fn from_json(s: &str) -> Result<PlanCatalogue, PlanCatalogueError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<PlanInfo>),
            Wrapped { plans: Vec<PlanInfo> },
        }
        let plans = match serde_json::from_str::<Form>(s) {
            Ok(Form::List(p)) | Ok(Form::Wrapped { plans: p }) => p,
            // Re-run the plain form to get a precise error with line and column.
            Err(_) => serde_json::from_str::<Vec<PlanInfo>>(s)?,
        };
        Ok(PlanCatalogue { plans })
    }

    /// The plan with this id.
    pub fn get(&self, id: u64) -> Option<&PlanInfo> {
        self.plans.iter().find(|p| p.id == id)
    }

    /// All ids, for "expected one of" messages.
    pub fn ids(&self) -> Vec<u64> {
        self.plans.iter().map(|p| p.id).collect()
    }
}
