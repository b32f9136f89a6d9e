//! Plans (from the host's catalogue) become cgroup limits.

use crate::Limits;
use landscape_spec::PlanInfo;

/// Processes/threads granted per GiB of plan memory (plans carry no pids figure).
pub const PIDS_PER_GIB: u64 = 512;
/// The smallest pids limit a plan yields.
pub const MIN_PIDS: u64 = 256;

impl Limits {
    /// The limits of `plan`: its memory, its CPU cores as a CFS quota, and a pids limit
    /// of [`PIDS_PER_GIB`] per GiB of memory (at least [`MIN_PIDS`]).
    pub fn from_plan(plan: &PlanInfo) -> Limits {
        let gib = plan.memory.div_ceil(1 << 30);
        Limits {
            memory_bytes: (plan.memory > 0).then_some(plan.memory),
            cpu_cores: (plan.cpu > 0.0).then_some(plan.cpu),
            pids: Some((gib * PIDS_PER_GIB).max(MIN_PIDS)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn plan_becomes_limits() {
        let cat = landscape_spec::PlanCatalogue::from_json(
            r#"[{"id": 8, "title": "Micro", "cpu": 0.5, "memory": 2147483648, "disk": 0}]"#,
        )
        .unwrap();
        let l = Limits::from_plan(cat.get(8).unwrap());
        assert_eq!(l.memory_bytes, Some(2 << 30));
        assert_eq!(l.cpu_cores, Some(0.5));
        assert_eq!(l.pids, Some(1024));
    }
}
