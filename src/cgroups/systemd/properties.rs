//! The properties a transient unit is started with: what it is, where it lives, what systemd
//! should account, and the limits it can express itself.
//!
//! systemd writes these limits into the unit's cgroup and re-applies them whenever it
//! reloads, so they must agree with what the cgroupfs writes afterwards put there (the
//! cgroupfs writes remain, as in runc, for values systemd has no property for and for
//! controllers systemd does not manage on v1).

use super::super::CgroupError;
use super::super::apply::{Limit, Plan};
use super::super::{Resources, shares_to_weight};
use super::unit::{ROOT_SLICE, Unit, UnitKind};

/// The CFS period systemd assumes for `CPUQuotaPerSecUSec`.
const DEFAULT_PERIOD_US: u64 = 100_000;
/// systemd keeps CPU quotas in whole 10 ms per second (1 %) steps; anything finer is
/// rounded up so the unit never allows less than asked.
const QUOTA_STEP_US: u64 = 10_000;
/// systemd's "infinity" for the numeric limits below.
const INFINITY: u64 = u64::MAX;

/// One property value, in the D-Bus type systemd expects for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `as`
    Strs(Vec<String>),
    /// `au`
    U32s(Vec<u32>),
}

/// What a unit is started for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    /// The unit.
    pub unit: &'a Unit,
    /// The limits to express as properties.
    pub resources: &'a Resources,
    /// The scope's first process (scopes only).
    pub pid: Option<u32>,
    /// Whether the host uses cgroup v2 (property names differ).
    pub v2: bool,
}

/// The `(name, value)` list for `StartTransientUnit`; `resources` are validated first.
pub(crate) fn build(request: Request<'_>) -> Result<Vec<(&'static str, Value)>, CgroupError> {
    let plan = Plan::new(request.resources)?;
    let unit = request.unit;
    let what = match unit.kind {
        UnitKind::Slice => "pod slice",
        UnitKind::Scope => "container scope",
    };
    let mut props = vec![
        (
            "Description",
            Value::Str(format!("carrack {what} {}", unit.name)),
        ),
        // Our units must not wait for, or be stopped with, the basic system targets: a pod
        // is torn down by carrack, not by a shutdown ordering.
        ("DefaultDependencies", Value::Bool(false)),
        ("CPUAccounting", Value::Bool(true)),
        ("MemoryAccounting", Value::Bool(true)),
        ("TasksAccounting", Value::Bool(true)),
    ];
    props.push(if request.v2 {
        ("IOAccounting", Value::Bool(true))
    } else {
        ("BlockIOAccounting", Value::Bool(true))
    });
    match unit.kind {
        UnitKind::Slice => {
            if unit.parent != ROOT_SLICE {
                props.push(("Wants", Value::Strs(vec![unit.parent.clone()])));
            }
        }
        UnitKind::Scope => {
            props.push(("Slice", Value::Str(unit.parent.clone())));
            // The container's cgroup is ours to write (limits, exec'd processes).
            props.push(("Delegate", Value::Bool(true)));
            let pid = request.pid.ok_or_else(|| CgroupError::Unsupported {
                path: unit.name.clone(),
                reason: "systemd starts a scope only with a process in it".to_owned(),
            })?;
            props.push(("PIDs", Value::U32s(vec![pid])));
        }
    }
    if let Some(shares) = plan.shares {
        props.push(if request.v2 {
            ("CPUWeight", Value::U64(shares_to_weight(shares)))
        } else {
            ("CPUShares", Value::U64(shares))
        });
    }
    if let Some(quota) = plan.quota {
        let period = plan.period.unwrap_or(DEFAULT_PERIOD_US);
        props.push((
            "CPUQuotaPerSecUSec",
            Value::U64(quota_per_sec(quota, period)),
        ));
    }
    if let Some(period) = plan.period.filter(|period| *period != DEFAULT_PERIOD_US) {
        props.push(("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    if let Some(memory) = plan.memory {
        let name = if request.v2 {
            "MemoryMax"
        } else {
            "MemoryLimit"
        };
        props.push((name, Value::U64(number(memory))));
    }
    if let Some(pids) = plan.pids {
        props.push(("TasksMax", Value::U64(number(pids))));
    }
    Ok(props)
}

/// A CFS quota per period as systemd's CPU time per second, rounded up to its 1 % steps.
fn quota_per_sec(quota: Limit, period_us: u64) -> u64 {
    match quota {
        Limit::Max => INFINITY,
        Limit::Value(quota) => {
            let per_sec = quota.saturating_mul(1_000_000) / period_us.max(1);
            per_sec
                .div_ceil(QUOTA_STEP_US)
                .saturating_mul(QUOTA_STEP_US)
        }
    }
}

fn number(limit: Limit) -> u64 {
    match limit {
        Limit::Max => INFINITY,
        Limit::Value(value) => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fixture::path;

    fn get<'a>(props: &'a [(&'static str, Value)], name: &str) -> Option<&'a Value> {
        props
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value)
    }

    fn limits() -> Resources {
        Resources {
            cpu_shares: Some(512),
            cpu_quota: Some(25_000),
            cpu_period: Some(100_000),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
            ..Resources::default()
        }
    }

    #[test]
    fn pod_slice_on_v1() {
        let unit = Unit::for_path(&path("/kubepods.slice/kubepods-pod1.slice")).expect("unit");
        let props = build(Request {
            unit: &unit,
            resources: &limits(),
            pid: None,
            v2: false,
        })
        .expect("props");
        assert_eq!(
            get(&props, "DefaultDependencies"),
            Some(&Value::Bool(false))
        );
        assert_eq!(
            get(&props, "Wants"),
            Some(&Value::Strs(vec!["kubepods.slice".to_owned()]))
        );
        assert_eq!(get(&props, "CPUShares"), Some(&Value::U64(512)));
        assert_eq!(
            get(&props, "CPUQuotaPerSecUSec"),
            Some(&Value::U64(250_000))
        );
        assert_eq!(get(&props, "MemoryLimit"), Some(&Value::U64(64 << 20)));
        assert_eq!(get(&props, "TasksMax"), Some(&Value::U64(100)));
        assert_eq!(get(&props, "BlockIOAccounting"), Some(&Value::Bool(true)));
        // Slices take no processes, no delegation, and no default period override.
        for absent in [
            "PIDs",
            "Delegate",
            "Slice",
            "CPUQuotaPeriodUSec",
            "MemoryMax",
        ] {
            assert_eq!(get(&props, absent), None, "{absent}");
        }
    }

    #[test]
    fn container_scope_on_v2() {
        let unit = Unit::for_path(&path(
            "/kubepods.slice/kubepods-pod1.slice/carrack-c1.scope",
        ))
        .expect("unit");
        let resources = Resources {
            cpu_quota: Some(-1),
            cpu_period: Some(50_000),
            memory_limit: Some(-1),
            ..limits()
        };
        let props = build(Request {
            unit: &unit,
            resources: &resources,
            pid: Some(4242),
            v2: true,
        })
        .expect("props");
        assert_eq!(
            get(&props, "Slice"),
            Some(&Value::Str("kubepods-pod1.slice".to_owned()))
        );
        assert_eq!(get(&props, "Delegate"), Some(&Value::Bool(true)));
        assert_eq!(get(&props, "PIDs"), Some(&Value::U32s(vec![4242])));
        assert_eq!(
            get(&props, "CPUWeight"),
            Some(&Value::U64(shares_to_weight(512)))
        );
        assert_eq!(
            get(&props, "CPUQuotaPerSecUSec"),
            Some(&Value::U64(u64::MAX))
        );
        assert_eq!(get(&props, "CPUQuotaPeriodUSec"), Some(&Value::U64(50_000)));
        assert_eq!(get(&props, "MemoryMax"), Some(&Value::U64(u64::MAX)));
        assert_eq!(get(&props, "IOAccounting"), Some(&Value::Bool(true)));
        assert_eq!(get(&props, "Wants"), None);
    }

    #[test]
    fn scope_without_process_and_bad_limits_are_refused() {
        let unit = Unit::for_path(&path("/a.slice/c.scope")).expect("unit");
        let resources = Resources::default();
        let err = build(Request {
            unit: &unit,
            resources: &resources,
            pid: None,
            v2: false,
        })
        .expect_err("no pid");
        assert!(err.to_string().contains("process"), "{err}");
        let bad = Resources {
            memory_limit: Some(-5),
            ..Resources::default()
        };
        let err = build(Request {
            unit: &unit,
            resources: &bad,
            pid: Some(1),
            v2: false,
        })
        .expect_err("bad limit");
        assert_eq!(err.kind(), crate::error_kind::ErrorKind::InvalidArgument);
    }

    #[test]
    fn quotas_round_up_to_whole_percent() {
        assert_eq!(quota_per_sec(Limit::Value(1_000), 100_000), 10_000);
        assert_eq!(quota_per_sec(Limit::Value(15_500), 100_000), 160_000);
        assert_eq!(quota_per_sec(Limit::Value(50_000), 50_000), 1_000_000);
    }
}
