//! The default seccomp filter: everything is allowed except a deny list of system calls
//! that a service never needs and that widen the kernel attack surface (kernel keyrings,
//! BPF, perf, module loading, kexec, mounting and namespace games, clock changes...).
//! Denied calls fail with `EPERM`.

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

/// `AUDIT_ARCH_*` of the running architecture.
fn audit_arch() -> Result<u32, String> {
    if cfg!(target_arch = "x86_64") {
        Ok(62 | 0x8000_0000 | 0x4000_0000) // AUDIT_ARCH_X86_64
    } else if cfg!(target_arch = "aarch64") {
        Ok(183 | 0x8000_0000 | 0x4000_0000) // AUDIT_ARCH_AARCH64
    } else {
        Err("seccomp filter: unsupported architecture".into())
    }
}

// Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
/// Offsets in `struct seccomp_data`: nr, arch, `args[0]` (low half on little-endian).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LO: u32 = 16;
/// x32 system calls on x86_64 have this bit set; the filter refuses them all.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn stmt(code: u16, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(
    code: u16,
    k: u32,
    from: usize,
    jt: usize,
    jf: usize,
) -> Result<seccompiler::sock_filter, String> {
    let off = |to: usize| {
        to.checked_sub(from + 1)
            .and_then(|d| u8::try_from(d).ok())
            .ok_or_else(|| "seccomp filter: jump out of range".to_string())
    };
    Ok(seccompiler::sock_filter {
        code,
        jt: off(jt)?,
        jf: off(jf)?,
        k,
    })
}

/// Builds the default filter as one classic BPF program (one program to attach, and a
/// short one: the kernel emulates every filter for each system call number when it is
/// installed, to cache the always-allowed ones):
///
/// * another architecture: kill the process; x32 system calls: `ENOSYS`;
/// * `clone3`: `ENOSYS` (its flags live in memory a filter cannot read; the C library
///   then falls back to `clone`);
/// * `clone` with any flag of [`DENIED_CLONE_FLAGS`]: `EPERM`;
/// * every call of [`DENIED`]: `EPERM`;
/// * everything else: allowed.
fn build() -> Result<seccompiler::BpfProgram, String> {
    let arch = audit_arch()?;
    let denied: Vec<u32> = DENIED
        .iter()
        .filter_map(|n| number(n))
        .filter_map(|n| u32::try_from(n).ok())
        .collect();
    let clone_mask = DENIED_CLONE_FLAGS
        .iter()
        .try_fold(0u32, |m, f| u32::try_from(*f).map(|f| m | f))
        .map_err(|_| "seccomp filter: clone flag above 32 bits".to_string())?;
    let x32 = cfg!(target_arch = "x86_64");
    // Layout: header (4), [x32 check], clone3, clone, denied..., allow,
    //         clone check (2), allow, eperm, enosys.
    let header = 4;
    let checks = usize::from(x32) + 2 + denied.len();
    let allow_main = header + checks;
    let clone_check = allow_main + 1;
    let allow = clone_check + 2;
    let eperm = allow + 1;
    let enosys = eperm + 1;
    let mut p = Vec::with_capacity(enosys + 1);
    p.push(stmt(BPF_LD_W_ABS, OFF_ARCH));
    p.push(jump(BPF_JMP_JEQ_K, arch, 1, 3, 2)?);
    p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    p.push(stmt(BPF_LD_W_ABS, OFF_NR));
    if x32 {
        let i = p.len();
        p.push(jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, i, enosys, i + 1)?);
    }
    let nr =
        |n: i64| u32::try_from(n).map_err(|_| "seccomp filter: bad syscall number".to_string());
    let i = p.len();
    p.push(jump(
        BPF_JMP_JEQ_K,
        nr(libc::SYS_clone3)?,
        i,
        enosys,
        i + 1,
    )?);
    let i = p.len();
    p.push(jump(
        BPF_JMP_JEQ_K,
        nr(libc::SYS_clone)?,
        i,
        clone_check,
        i + 1,
    )?);
    for n in denied {
        let i = p.len();
        p.push(jump(BPF_JMP_JEQ_K, n, i, eperm, i + 1)?);
    }
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_LD_W_ABS, OFF_ARG0_LO));
    let i = p.len();
    p.push(jump(BPF_JMP_JSET_K, clone_mask, i, eperm, allow)?);
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
    debug_assert_eq!(p.len(), enosys + 1);
    Ok(p)
}

/// The default filter, built once per process (instances install the same program).
pub fn default_program() -> Result<&'static seccompiler::BpfProgram, String> {
    static PROGRAM: std::sync::OnceLock<Result<seccompiler::BpfProgram, String>> =
        std::sync::OnceLock::new();
    PROGRAM.get_or_init(build).as_ref().map_err(Clone::clone)
}

/// The default filters for the running architecture (one program, see
/// [`default_program`]): the deny list (`EPERM`), `clone` with namespace flags (`EPERM`),
/// and `clone3` (`ENOSYS`, whose flags live in memory a filter cannot read; the C library
/// then falls back to `clone`).
pub fn default_filters() -> Result<Vec<seccompiler::BpfProgram>, String> {
    default_program().map(|p| vec![p.clone()])
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_denied_call_has_a_number_and_the_filter_compiles() {
        for n in super::DENIED {
            assert!(super::number(n).is_some(), "{n}");
        }
        let progs = super::default_filters().unwrap();
        assert_eq!(progs.len(), 1);
        assert!(progs[0].len() > super::DENIED.len());
        assert!(progs[0].len() < 64, "short enough to install quickly");
    }

    /// A classic-BPF interpreter for the opcodes the filter uses.
    fn run(prog: &[seccompiler::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let ins = &prog[pc];
            let k = ins.k;
            let jump = |cond: bool| pc + 1 + usize::from(if cond { ins.jt } else { ins.jf });
            pc = match ins.code {
                super::BPF_LD_W_ABS => {
                    let o = k as usize;
                    acc = u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
                    pc + 1
                }
                super::BPF_JMP_JEQ_K => jump(acc == k),
                super::BPF_JMP_JGE_K => jump(acc >= k),
                super::BPF_JMP_JSET_K => jump(acc & k != 0),
                super::BPF_RET_K => return k,
                other => panic!("unexpected opcode {other:#x}"),
            };
        }
    }

    #[test]
    fn the_filter_denies_what_it_says_and_allows_the_rest() {
        let prog = super::default_program().unwrap();
        let arch = super::audit_arch().unwrap();
        let nr = |n: i64| u32::try_from(n).unwrap();
        let eperm = super::RET_ERRNO | libc::EPERM as u32;
        let enosys = super::RET_ERRNO | libc::ENOSYS as u32;
        for name in super::DENIED {
            let n = super::number(name).unwrap();
            assert_eq!(run(prog, nr(n), arch, 0), eperm, "{name}");
        }
        for n in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_execve,
            libc::SYS_openat,
        ] {
            assert_eq!(run(prog, nr(n), arch, 0), super::RET_ALLOW, "{n}");
        }
        assert_eq!(run(prog, nr(libc::SYS_clone3), arch, 0), enosys);
        // A thread (CLONE_VM|CLONE_THREAD|...) and a fork are fine; any namespace is not.
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD) as u64;
        assert_eq!(
            run(prog, nr(libc::SYS_clone), arch, thread),
            super::RET_ALLOW
        );
        assert_eq!(
            run(prog, nr(libc::SYS_clone), arch, libc::SIGCHLD as u64),
            super::RET_ALLOW
        );
        for f in super::DENIED_CLONE_FLAGS {
            let flags = f | libc::SIGCHLD as u64;
            assert_eq!(run(prog, nr(libc::SYS_clone), arch, flags), eperm, "{f:#x}");
        }
        assert_eq!(
            run(prog, nr(libc::SYS_read), arch ^ 1, 0),
            super::RET_KILL_PROCESS,
            "another architecture"
        );
        if cfg!(target_arch = "x86_64") {
            let x32_read = super::X32_SYSCALL_BIT | nr(libc::SYS_read);
            assert_eq!(run(prog, x32_read, arch, 0), enosys, "x32");
        }
    }
}
