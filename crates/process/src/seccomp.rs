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
//! - on x86-64, the x32 ABI (system call numbers with bit 30 set) and any
//!   other architecture: a process that switches ABI is killed.
//!
//! The filter is built once per process from the architecture's system
//! call numbers; on an architecture without a table here there is no filter
//! and the sandbox says so in its description.

/// `seccomp_data` offsets.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARG0_OFFSET: u32 = 16;

// Classic BPF opcodes (class | size/op | mode/source).
const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_JMP: u16 = 0x05;
const BPF_K: u16 = 0x00;
const BPF_LD_W_ABS: u16 = BPF_LD | BPF_W | BPF_ABS;
const BPF_JEQ_K: u16 = BPF_JMP | 0x10 | BPF_K;
const BPF_JGE_K: u16 = BPF_JMP | 0x30 | BPF_K;
const BPF_JSET_K: u16 = BPF_JMP | 0x40 | BPF_K;
const BPF_RET_K: u16 = 0x06 | BPF_K;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;

/// `AUDIT_ARCH_*` of the architecture this binary was built for.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_003e);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xc000_00b7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// Namespace flags `clone` may not carry.
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;

/// System calls that fail with `EPERM`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn denied_eperm() -> Vec<libc::c_long> {
    let mut v = vec![
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
    v.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS__sysctl,
    ]);
    v
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

#[derive(Clone, Copy)]
struct Insn {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The filter as the bytes of a `sock_filter` array, or None on an
/// architecture without a system call table here.
pub(crate) fn program() -> Option<Vec<u8>> {
    let arch = AUDIT_ARCH?;
    let eperm = denied_eperm();
    let enosys = denied_enosys();
    // Layout:
    //   0  ld arch
    //   1  jeq ARCH ? 3 : 2
    //   2  ret KILL
    //   3  ld nr
    //   4  (x86-64) jge 0x40000000 ? EPERM : next
    //      jeq clone ? (check flags) : next
    //      jeq nr_i ? EPERM : next            for each EPERM nr
    //      jeq nr_j ? ENOSYS : next           for each ENOSYS nr
    //      ret ALLOW
    //   clone flags: ld arg0; jset FLAGS ? EPERM : ALLOW
    //   EPERM:  ret ERRNO|EPERM
    //   ENOSYS: ret ERRNO|ENOSYS
    let mut body: Vec<Insn> = vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        Insn {
            code: BPF_JEQ_K,
            jt: 1,
            jf: 0,
            k: arch,
        },
        stmt(BPF_RET_K, SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
    ];
    // Jumps to the shared tails are patched once their positions are known.
    enum Target {
        Eperm,
        Enosys,
        CloneCheck,
    }
    let mut pending: Vec<(usize, Target)> = Vec::new();
    if cfg!(target_arch = "x86_64") {
        pending.push((body.len(), Target::Eperm));
        body.push(stmt(BPF_JGE_K, 0x4000_0000));
    }
    pending.push((body.len(), Target::CloneCheck));
    body.push(stmt(BPF_JEQ_K, u32::try_from(libc::SYS_clone).ok()?));
    for nr in eperm {
        pending.push((body.len(), Target::Eperm));
        body.push(stmt(BPF_JEQ_K, u32::try_from(nr).ok()?));
    }
    for nr in enosys {
        pending.push((body.len(), Target::Enosys));
        body.push(stmt(BPF_JEQ_K, u32::try_from(nr).ok()?));
    }
    body.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    let clone_check = body.len();
    body.push(stmt(BPF_LD_W_ABS, ARG0_OFFSET_LOW));
    let clone_jset = body.len();
    body.push(stmt(BPF_JSET_K, CLONE_NAMESPACE_FLAGS));
    body.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    let eperm_at = body.len();
    body.push(stmt(
        BPF_RET_K,
        SECCOMP_RET_ERRNO | libc::EPERM as u32 & 0xffff,
    ));
    let enosys_at = body.len();
    body.push(stmt(
        BPF_RET_K,
        SECCOMP_RET_ERRNO | libc::ENOSYS as u32 & 0xffff,
    ));
    let offset = |from: usize, to: usize| u8::try_from(to - from - 1).ok();
    body[clone_jset].jt = offset(clone_jset, eperm_at)?;
    for (at, target) in pending {
        let to = match target {
            Target::Eperm => eperm_at,
            Target::Enosys => enosys_at,
            Target::CloneCheck => clone_check,
        };
        body[at].jt = offset(at, to)?;
    }
    // The program is written into a pipe by the forked child, which must
    // never block: keep it well under the pipe's atomic write size.
    if body.len() * 8 > 4096 {
        return None;
    }
    let mut bytes = Vec::with_capacity(body.len() * 8);
    for i in body {
        bytes.extend_from_slice(&i.code.to_ne_bytes());
        bytes.push(i.jt);
        bytes.push(i.jf);
        bytes.extend_from_slice(&i.k.to_ne_bytes());
    }
    Some(bytes)
}

/// The low 32 bits of the first argument (the `seccomp_data` args are
/// 64-bit, in the machine's byte order).
#[cfg(target_endian = "little")]
const ARG0_OFFSET_LOW: u32 = ARG0_OFFSET;
#[cfg(target_endian = "big")]
const ARG0_OFFSET_LOW: u32 = ARG0_OFFSET + 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Vec<Insn> {
        bytes
            .chunks_exact(8)
            .map(|c| Insn {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect()
    }

    /// A tiny classic-BPF interpreter for the instructions the filter uses.
    fn run(prog: &[Insn], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[16..24].copy_from_slice(&arg0.to_ne_bytes());
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                BPF_LD_W_ABS => {
                    let o = i.k as usize;
                    acc = u32::from_ne_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
                }
                BPF_RET_K => return i.k,
                BPF_JEQ_K | BPF_JGE_K | BPF_JSET_K => {
                    let taken = match i.code {
                        BPF_JEQ_K => acc == i.k,
                        BPF_JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn filter_denies_the_listed_calls_and_allows_the_rest() {
        let prog = decode(&program().expect("a filter for this architecture"));
        let arch = AUDIT_ARCH.expect("arch");
        let nr = |n: libc::c_long| u32::try_from(n).expect("nr");
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        for n in denied_eperm() {
            assert_eq!(run(&prog, arch, nr(n), 0), eperm, "syscall {n}");
        }
        for n in denied_enosys() {
            assert_eq!(run(&prog, arch, nr(n), 0), enosys, "syscall {n}");
        }
        for n in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_mmap,
            libc::SYS_execve,
            libc::SYS_futex,
            libc::SYS_socket,
            libc::SYS_exit_group,
        ] {
            assert_eq!(run(&prog, arch, nr(n), 0), SECCOMP_RET_ALLOW, "syscall {n}");
        }
        // fork and threads are clone without namespace flags.
        let thread_flags = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        let clone = nr(libc::SYS_clone);
        assert_eq!(run(&prog, arch, clone, thread_flags), SECCOMP_RET_ALLOW);
        assert_eq!(
            run(&prog, arch, clone, libc::SIGCHLD as u64),
            SECCOMP_RET_ALLOW
        );
        for flag in [libc::CLONE_NEWUSER, libc::CLONE_NEWNS, libc::CLONE_NEWNET] {
            assert_eq!(run(&prog, arch, clone, flag as u64), eperm, "{flag:#x}");
        }
        // Another architecture's calling convention kills the process.
        assert_eq!(
            run(&prog, 0x4000_0003, nr(libc::SYS_read), 0),
            SECCOMP_RET_KILL_PROCESS
        );
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&prog, arch, 0x4000_0000 | 1, 0), eperm, "x32 write");
    }
}
