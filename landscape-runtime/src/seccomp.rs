//! The default seccomp filter: everything is allowed except a deny list of system calls
//! that a service never needs and that widen the kernel attack surface (kernel keyrings,
//! BPF, perf, module loading, kexec, mounting and namespace games, clock changes...).
//! Denied calls fail with `EPERM`.

use std::collections::BTreeMap;

/// System calls denied by the default filter.
pub const DENIED: &[&str] = &[
    "add_key",
    "request_key",
    "keyctl",
    "bpf",
    "perf_event_open",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "userfaultfd",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "syslog",
    "mount",
    "umount2",
    "pivot_root",
    "unshare",
    "setns",
    "fsopen",
    "fsmount",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "quotactl",
    "lookup_dcookie",
    "vhangup",
];

fn number(name: &str) -> Option<i64> {
    Some(match name {
        "add_key" => libc::SYS_add_key,
        "request_key" => libc::SYS_request_key,
        "keyctl" => libc::SYS_keyctl,
        "bpf" => libc::SYS_bpf,
        "perf_event_open" => libc::SYS_perf_event_open,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "userfaultfd" => libc::SYS_userfaultfd,
        "acct" => libc::SYS_acct,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "settimeofday" => libc::SYS_settimeofday,
        "clock_settime" => libc::SYS_clock_settime,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "adjtimex" => libc::SYS_adjtimex,
        "syslog" => libc::SYS_syslog,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "fsopen" => libc::SYS_fsopen,
        "fsmount" => libc::SYS_fsmount,
        "move_mount" => libc::SYS_move_mount,
        "open_tree" => libc::SYS_open_tree,
        "mount_setattr" => libc::SYS_mount_setattr,
        "quotactl" => libc::SYS_quotactl,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "vhangup" => libc::SYS_vhangup,
        _ => return None,
    })
}

/// Namespace flags a `clone` inside an instance may not use (no nested containers, no
/// new user namespaces: a large kernel attack surface).
pub const DENIED_CLONE_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> Result<seccompiler::TargetArch, String> {
    if cfg!(target_arch = "x86_64") {
        Ok(seccompiler::TargetArch::x86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(seccompiler::TargetArch::aarch64)
    } else {
        Err("seccomp filter: unsupported architecture".into())
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>>,
    action: seccompiler::SeccompAction,
) -> Result<seccompiler::BpfProgram, String> {
    let filter =
        seccompiler::SeccompFilter::new(rules, seccompiler::SeccompAction::Allow, action, arch()?)
            .map_err(|e| format!("seccomp filter: {e}"))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))
}

/// Compiles the default filters for the running architecture: the deny list (`EPERM`),
/// `clone` with namespace flags (`EPERM`), and `clone3` (`ENOSYS`, whose flags live in
/// memory a filter cannot read; the C library then falls back to `clone`).
pub fn default_filters() -> Result<Vec<seccompiler::BpfProgram>, String> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED
        .iter()
        .filter_map(|n| number(n))
        .map(|n| (n, Vec::new()))
        .collect();
    let clone_rules = DENIED_CLONE_FLAGS
        .iter()
        .map(|flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(*flag),
                *flag,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| format!("seccomp rule: {e}"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let deny = compile(rules, seccompiler::SeccompAction::Errno(libc::EPERM as u32))?;
    let clone3 = compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    Ok(vec![deny, clone3])
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_denied_call_has_a_number_and_the_filter_compiles() {
        for n in super::DENIED {
            assert!(super::number(n).is_some(), "{n}");
        }
        let progs = super::default_filters().unwrap();
        assert_eq!(progs.len(), 2);
        assert!(progs[0].len() > super::DENIED.len() + super::DENIED_CLONE_FLAGS.len());
    }
}
