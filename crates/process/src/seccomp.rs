//! The seccomp filter every sandboxed worker runs under.
//!
//! A classic-BPF program, handed to bubblewrap (`--seccomp FD`), which
//! installs it right before it executes the function's interpreter. It is a
//! deny list in the spirit of the default profiles of container engines:
//! everything a Python, Node or ordinary native program needs stays
//! allowed, while the system calls that only serve to reach kernel surface
//! a function has no business with fail with `EPERM` (or `ENOSYS` where
//! libraries fall back on that):
//!
//! - mounting and namespaces: `mount`, `umount2`, `pivot_root`, `chroot`,
//!   the new mount API (`fsopen`, `fsmount`, `move_mount`, ...), `unshare`,
//!   `setns`, and `clone` with any namespace flag (`clone3` gets `ENOSYS`
//!   so that the C library falls back on `clone`, whose flags a filter can
//!   read);
//! - looking into other processes: `ptrace`, `process_vm_readv/writev`,
//!   `kcmp`, `pidfd_getfd`;
//! - kernel modules, kexec, reboot, swap, accounting, quotas, the clock
//!   and the kernel log;
//! - large attack surfaces: `bpf`, `perf_event_open`, `userfaultfd`,
//!   `io_uring_*` (`ENOSYS`: libuv falls back on its thread pool), the
//!   kernel keyring, `open_by_handle_at`, `fanotify_init`, port I/O;
//! - on x86-64, every call of the x32 ABI (system call numbers with bit 30
//!   set) fails with `EPERM`, as none of them could be matched by number;
//! - a system call made with another architecture's calling convention
//!   (32-bit x86 on x86-64, say) kills the process.
//!
//! # How the program is built
//!
//! The rules are [`seccompiler`] filters (the compiler Firecracker uses).
//! A seccompiler filter has a single action for the calls it matches and
//! one for the rest, so the program is a chain of them, first match wins:
//!
//! ```text
//!   arch check            another architecture: KILL_PROCESS (seccompiler's)
//!   x32 guard (x86-64)    nr >= 0x40000000: ERRNO(EPERM)     (written here)
//!   EPERM filter          the listed calls, clone with a namespace flag
//!   ENOSYS filter         clone3, io_uring_*
//!   ALLOW
//! ```
//!
//! Each filter is compiled on its own; its leading architecture check is
//! dropped after the first one, and every `ret ALLOW` of a filter other
//! than the last (its "no rule matched") becomes a jump to the start of the
//! next one. The x32 guard is the one part written by hand: seccompiler
//! matches system calls by exact number, and a deny list must also refuse
//! the numbers with the x32 bit, which would otherwise slip past every
//! rule (an allow list, as Firecracker's are, refuses them by default).
//!
//! The filter is built once per process from the architecture's system
//! call numbers; on an architecture without a table here there is no filter
//! and the sandbox says so in its description.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch, sock_filter,
};
use std::collections::BTreeMap;

// The classic-BPF instructions written here (`linux/bpf_common.h`): the
// x32 guard and the jumps that chain the filters.
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_K: u16 = 0x00;
const BPF_RET: u16 = 0x06;

/// System call numbers of the x32 ABI have this bit set (`__X32_SYSCALL_BIT`).
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Most bytes the program may have: the forked child writes it into a pipe
/// in one go, which must never block, and a pipe of an unprivileged user
/// over its pipe quota holds only one page.
const MAX_PROGRAM_BYTES: usize = 4096;

/// The architecture this binary was built for, as seccompiler names it.
#[cfg(target_arch = "x86_64")]
const TARGET_ARCH: Option<TargetArch> = Some(TargetArch::x86_64);
#[cfg(target_arch = "aarch64")]
const TARGET_ARCH: Option<TargetArch> = Some(TargetArch::aarch64);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const TARGET_ARCH: Option<TargetArch> = None;

/// Namespace flags `clone` may not carry.
const CLONE_NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWCGROUP,
];

/// System calls that fail with `EPERM`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied_eperm() -> Vec<libc::c_long> {
    let common = vec![
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_syslog,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_lookup_dcookie,
        libc::SYS_vhangup,
    ];
    #[cfg(target_arch = "x86_64")]
    let common = [
        common,
        vec![
            libc::SYS_iopl,
            libc::SYS_ioperm,
            libc::SYS_uselib,
            libc::SYS__sysctl,
        ],
    ]
    .concat();
    common
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn denied_eperm() -> Vec<libc::c_long> {
    Vec::new()
}

/// System calls that fail with `ENOSYS`, so that callers fall back.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied_enosys() -> Vec<libc::c_long> {
    vec![
        libc::SYS_clone3,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ]
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn denied_enosys() -> Vec<libc::c_long> {
    Vec::new()
}

/// `clone` is matched when any namespace flag is set in its first argument
/// (the flags, on both architectures): one rule per flag, as a rule's
/// conditions must all hold while any of a call's rules may. Only the low
/// 32 bits are compared, where every namespace flag is.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn clone_with_namespace_flags() -> Result<(i64, Vec<SeccompRule>), seccompiler::BackendError> {
    let rules = CLONE_NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = u64::from(flag.unsigned_abs());
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])
        })
        .collect::<Result<_, _>>()?;
    Ok((libc::SYS_clone, rules))
}

/// The filters of the chain, in order, each with the action for the calls
/// it matches; a call that none matches is allowed.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filters(arch: TargetArch) -> Result<Vec<SeccompFilter>, seccompiler::BackendError> {
    let unconditional = |calls: Vec<libc::c_long>| {
        calls
            .into_iter()
            .map(|nr| (nr, Vec::new()))
            .collect::<BTreeMap<i64, Vec<SeccompRule>>>()
    };
    let mut eperm = unconditional(denied_eperm());
    let (clone, rules) = clone_with_namespace_flags()?;
    eperm.insert(clone, rules);
    let errno = |e: libc::c_int| SeccompAction::Errno(e.unsigned_abs());
    Ok(vec![
        SeccompFilter::new(eperm, SeccompAction::Allow, errno(libc::EPERM), arch)?,
        SeccompFilter::new(
            unconditional(denied_enosys()),
            SeccompAction::Allow,
            errno(libc::ENOSYS),
            arch,
        )?,
    ])
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn filters(_arch: TargetArch) -> Result<Vec<SeccompFilter>, seccompiler::BackendError> {
    Ok(Vec::new())
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn ret(action: SeccompAction) -> sock_filter {
    stmt(BPF_RET | BPF_K, u32::from(action))
}

/// The instructions that refuse the x32 ABI's calls, placed right after the
/// architecture check.
#[cfg(target_arch = "x86_64")]
fn x32_guard() -> Vec<sock_filter> {
    const BPF_LD: u16 = 0x00;
    const BPF_W: u16 = 0x00;
    const BPF_ABS: u16 = 0x20;
    const BPF_JGE: u16 = 0x30;
    /// `seccomp_data.nr`.
    const NR_OFFSET: u32 = 0;
    vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, NR_OFFSET),
        sock_filter {
            code: BPF_JMP | BPF_JGE | BPF_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        ret(SeccompAction::Errno(libc::EPERM.unsigned_abs())),
    ]
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_guard() -> Vec<sock_filter> {
    Vec::new()
}

/// Chains `filters` into one program (see the module docs).
fn chain(arch: TargetArch, filters: Vec<SeccompFilter>) -> Result<Vec<sock_filter>, String> {
    let compile = |f: SeccompFilter| {
        BpfProgram::try_from(f).map_err(|e| format!("compile a seccomp filter: {e}"))
    };
    let allow = ret(SeccompAction::Allow);
    // seccompiler's architecture check: the program of a filter without
    // rules, but for its final `ret ALLOW`.
    let empty = SeccompFilter::new(
        BTreeMap::new(),
        SeccompAction::Allow,
        SeccompAction::KillProcess,
        arch,
    )
    .map_err(|e| format!("compile a seccomp filter: {e}"))?;
    let mut arch_check = compile(empty)?;
    if arch_check.pop() != Some(allow.clone()) {
        return Err("seccompiler's empty filter does not end in ALLOW".into());
    }
    let mut program = arch_check.clone();
    program.extend(x32_guard());
    let count = filters.len();
    for (i, filter) in filters.into_iter().enumerate() {
        let compiled = compile(filter)?;
        let Some(body) = compiled.strip_prefix(arch_check.as_slice()) else {
            return Err("a seccompiler filter does not start with its architecture check".into());
        };
        let mut body = body.to_vec();
        if i + 1 < count {
            let len = body.len();
            for (at, insn) in body.iter_mut().enumerate() {
                if *insn == allow {
                    // Lands on the first instruction after this filter.
                    let skip = u32::try_from(len - at - 1).map_err(|e| e.to_string())?;
                    *insn = stmt(BPF_JMP | BPF_JA, skip);
                }
            }
        }
        program.extend(body);
    }
    if program.last() != Some(&allow) {
        program.push(allow);
    }
    Ok(program)
}

/// The program for `arch`.
fn build(arch: TargetArch) -> Result<Vec<u8>, String> {
    let filters = filters(arch).map_err(|e| format!("build the seccomp rules: {e}"))?;
    let program = chain(arch, filters)?;
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for i in program {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    if bytes.len() > MAX_PROGRAM_BYTES {
        return Err(format!(
            "the seccomp program has {} bytes, more than the {MAX_PROGRAM_BYTES} a pipe surely holds",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// The filter as the bytes of a `sock_filter` array, or None on an
/// architecture without a system call table here (or, logged as an error,
/// if it cannot be built).
pub(crate) fn program() -> Option<Vec<u8>> {
    match build(TARGET_ARCH?) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::error!(error = %e, "no seccomp filter for process functions");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RET_ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const RET_KILL_PROCESS: u32 = libc::SECCOMP_RET_KILL_PROCESS;

    fn decode(bytes: &[u8]) -> Vec<sock_filter> {
        bytes
            .chunks_exact(8)
            .map(|c| sock_filter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }

    /// Checks what the kernel checks of a classic-BPF seccomp program: every
    /// jump lands inside it, loads read inside `seccomp_data`, and it cannot
    /// run off its end.
    fn check_well_formed(prog: &[sock_filter]) {
        assert!(
            !prog.is_empty() && prog.len() <= 4096,
            "{} insns",
            prog.len()
        );
        for (pc, i) in prog.iter().enumerate() {
            let after = |skip: usize| {
                assert!(pc + 1 + skip < prog.len(), "insn {pc} jumps out: {i:?}");
            };
            match i.code {
                0x20 => assert!(i.k % 4 == 0 && i.k < 64, "insn {pc}: {i:?}"),
                0x54 | 0x06 => {}
                0x05 => after(i.k as usize),
                0x15 | 0x25 | 0x35 | 0x45 => {
                    after(usize::from(i.jt));
                    after(usize::from(i.jf));
                }
                other => panic!("insn {pc}: unexpected opcode {other:#x}"),
            }
        }
        assert_eq!(prog.last().map(|i| i.code), Some(0x06), "ends in a return");
    }

    /// A tiny classic-BPF interpreter for the instructions seccomp filters
    /// use.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                // ld [k]
                0x20 => {
                    let o = i.k as usize;
                    acc = u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                // and #k
                0x54 => acc &= i.k,
                // ja k
                0x05 => pc += i.k as usize,
                // ret #k
                0x06 => return i.k,
                // jeq, jgt, jge, jset #k
                0x15 | 0x25 | 0x35 | 0x45 => {
                    let taken = match i.code {
                        0x15 => acc == i.k,
                        0x25 => acc > i.k,
                        0x35 => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    const AUDIT_ARCH: u32 = 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    const AUDIT_ARCH: u32 = 0xc000_00b7;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn filter_denies_the_listed_calls_and_allows_the_rest() {
        let bytes = program().expect("a filter for this architecture");
        assert!(bytes.len() <= MAX_PROGRAM_BYTES, "{} bytes", bytes.len());
        let prog = decode(&bytes);
        check_well_formed(&prog);
        let arch = AUDIT_ARCH;
        let nr = |n: libc::c_long| u32::try_from(n).expect("nr");
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for n in denied_eperm() {
            assert_eq!(run(&prog, arch, nr(n), 0), eperm, "syscall {n}");
        }
        for n in denied_enosys() {
            assert_eq!(run(&prog, arch, nr(n), 0), enosys, "syscall {n}");
        }
        // Every other call is allowed, whatever its first argument.
        let denied: Vec<libc::c_long> = denied_eperm()
            .into_iter()
            .chain(denied_enosys())
            .chain([libc::SYS_clone])
            .collect();
        for n in (0..1024).filter(|n| !denied.contains(n)) {
            for arg0 in [0, u64::MAX] {
                assert_eq!(run(&prog, arch, nr(n), arg0), RET_ALLOW, "syscall {n}");
            }
        }
        // fork and threads are clone without namespace flags.
        let thread_flags = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let clone = nr(libc::SYS_clone);
        assert_eq!(run(&prog, arch, clone, thread_flags), RET_ALLOW);
        assert_eq!(run(&prog, arch, clone, libc::SIGCHLD as u64), RET_ALLOW);
        assert_eq!(run(&prog, arch, clone, 0xffff_ffff << 32), RET_ALLOW);
        for flag in CLONE_NAMESPACE_FLAGS {
            let flag = u64::from(flag.unsigned_abs());
            assert_eq!(run(&prog, arch, clone, flag), eperm, "{flag:#x}");
            let with_fork = flag | libc::SIGCHLD as u64 | thread_flags;
            assert_eq!(run(&prog, arch, clone, with_fork), eperm, "{flag:#x}");
        }
        // Another architecture's calling convention kills the process.
        for other in [0x4000_0003, 0xc000_003e ^ 0xc000_00b7 ^ arch] {
            assert_eq!(
                run(&prog, other, nr(libc::SYS_read), 0),
                RET_KILL_PROCESS,
                "{other:#x}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        for n in [1, 39, 165, 435, 0x3fff_ffff] {
            assert_eq!(run(&prog, arch, X32_SYSCALL_BIT | n, 0), eperm, "x32 {n}");
        }
    }

    /// The chain lets a call through a filter only when no rule of that
    /// filter matched it, and then asks the next one.
    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn chained_filters_decide_in_order() {
        let arch = TARGET_ARCH.expect("arch");
        let filter = |nrs: &[i64], action: SeccompAction| {
            let rules = nrs.iter().map(|&n| (n, Vec::new())).collect();
            SeccompFilter::new(rules, SeccompAction::Allow, action, arch).expect("filter")
        };
        let prog = chain(
            arch,
            vec![
                filter(&[1, 5], SeccompAction::Errno(1)),
                filter(&[2, 5], SeccompAction::Errno(2)),
                filter(&[3], SeccompAction::Errno(3)),
            ],
        )
        .expect("chain");
        check_well_formed(&prog);
        let errno = |e: u32| libc::SECCOMP_RET_ERRNO | e;
        for (nr, want) in [
            (1, errno(1)),
            (2, errno(2)),
            (3, errno(3)),
            (5, errno(1)),
            (4, RET_ALLOW),
            (0, RET_ALLOW),
        ] {
            assert_eq!(run(&prog, AUDIT_ARCH, nr, 0), want, "syscall {nr}");
        }
    }
}
