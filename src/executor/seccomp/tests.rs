//! The compiled programs are run here by a small classic-BPF interpreter over hand-made
//! `seccomp_data`, and their verdicts combined as the kernel does, so the profile semantics
//! are tested without installing anything.

use serde_json::json;

use super::*;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;

fn audit_arch() -> u32 {
    #[cfg(target_arch = "x86_64")]
    return 0xc000_003e;
    #[cfg(target_arch = "aarch64")]
    return 0xc000_00b7;
}

/// `struct seccomp_data` for a call of `nr` with `args`, as the kernel lays it out.
fn seccomp_data(arch: u32, nr: i64, args: [u64; 6]) -> [u8; 64] {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&(nr as i32).to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (at, arg) in args.iter().enumerate() {
        data[16 + 8 * at..24 + 8 * at].copy_from_slice(&arg.to_le_bytes());
    }
    data
}

/// Runs one program: the instructions seccompiler emits are loads, AND, jumps and returns.
fn run(program: &[seccompiler::sock_filter], data: &[u8; 64]) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let ins = program.get(pc).expect("program counter inside the program");
        pc += 1;
        let k = ins.k;
        let jump = |taken: bool| usize::from(if taken { ins.jt } else { ins.jf });
        match ins.code {
            0x20 => {
                let at = k as usize;
                acc = u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"));
            }
            0x54 => acc &= k,
            0x05 => pc += k as usize,
            0x15 => pc += jump(acc == k),
            0x25 => pc += jump(acc > k),
            0x35 => pc += jump(acc >= k),
            0x45 => pc += jump(acc & k != 0),
            0x06 => return k,
            code => panic!("unexpected BPF instruction {code:#x}"),
        }
    }
}

/// The kernel's verdict over a stack of programs: the newest program runs first and a later
/// one replaces the verdict only with a strictly more restrictive action.
fn verdict(plan: &SeccompPlan, nr: i64, args: [u64; 6]) -> u32 {
    verdict_for_arch(plan, audit_arch(), nr, args)
}

fn verdict_for_arch(plan: &SeccompPlan, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
    let data = seccomp_data(arch, nr, args);
    let action = |ret: u32| (ret & 0xffff_0000) as i32;
    plan.programs
        .iter()
        .rev()
        .map(|program| run(program, &data))
        .fold(RET_ALLOW, |kept, ret| {
            if action(ret) < action(kept) {
                ret
            } else {
                kept
            }
        })
}

fn profile(value: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(value).expect("valid OCI seccomp profile")
}

fn nr(name: &str) -> i64 {
    syscall_number(name).expect(name)
}

#[test]
fn names_resolve_to_the_native_numbers() {
    assert_eq!(syscall_number("read"), Some(libc::SYS_read));
    assert_eq!(syscall_number("sethostname"), Some(libc::SYS_sethostname));
    assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(syscall_number("execve"), Some(libc::SYS_execve));
    assert_eq!(
        syscall_number("mount_setattr"),
        Some(libc::SYS_mount_setattr)
    );
    assert_eq!(syscall_number("fchmodat2"), Some(libc::SYS_fchmodat2));
    assert_eq!(syscall_number("no_such_call"), None);
    let sorted = SYSCALLS.windows(2).all(|pair| pair[0].0 < pair[1].0);
    assert!(sorted, "the table must stay sorted for binary search");
}

#[test]
fn an_allow_by_default_profile_blocks_only_its_rules() {
    let plan = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname", "setdomainname"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .expect("compiles");
    assert_eq!(plan.programs.len(), 1);
    assert_eq!(
        verdict(&plan, nr("sethostname"), [0; 6]),
        RET_ERRNO | libc::EPERM as u32
    );
    assert_eq!(verdict(&plan, nr("read"), [0; 6]), RET_ALLOW);
}

#[test]
fn a_deny_by_default_profile_honours_conditions_and_errnos() {
    let plan = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "syscalls": [
            {"names": ["read", "write", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    })))
    .expect("compiles");
    let eperm = RET_ERRNO | libc::EPERM as u32;
    assert_eq!(verdict(&plan, nr("read"), [0; 6]), RET_ALLOW);
    assert_eq!(verdict(&plan, nr("mount"), [0; 6]), eperm);
    assert_eq!(verdict(&plan, nr("personality"), [0; 6]), RET_ALLOW);
    assert_eq!(verdict(&plan, nr("personality"), [8, 0, 0, 0, 0, 0]), eperm);
    let sigchld = libc::SIGCHLD as u64;
    assert_eq!(
        verdict(&plan, nr("clone"), [sigchld, 0, 0, 0, 0, 0]),
        RET_ALLOW
    );
    let newns = libc::CLONE_NEWNS as u64 | sigchld;
    assert_eq!(verdict(&plan, nr("clone"), [newns, 0, 0, 0, 0, 0]), eperm);
    assert_eq!(
        verdict(&plan, nr("clone3"), [0; 6]),
        RET_ERRNO | libc::ENOSYS as u32
    );
    // The upper half of a 64-bit argument counts.
    assert_eq!(
        verdict(&plan, nr("personality"), [1 << 32, 0, 0, 0, 0, 0]),
        eperm
    );
}

#[test]
fn calls_from_another_architecture_kill_the_process() {
    let plan = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["sethostname"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .expect("compiles");
    let i386 = 0x4000_0003;
    assert_eq!(verdict_for_arch(&plan, i386, 3, [0; 6]), RET_KILL_PROCESS);
}

#[test]
fn an_empty_allow_profile_installs_nothing() {
    let plan = compile(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"}))).expect("compiles");
    assert!(plan.programs.is_empty());
}

#[test]
fn flags_are_passed_on() {
    let plan = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    })))
    .expect("compiles");
    assert_eq!(
        plan.flags,
        libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
    assert_eq!(plan.programs.len(), 1);
}

#[test]
fn unsupported_and_invalid_profiles_are_refused_clearly() {
    let notify = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]
    })))
    .expect_err("notify is refused");
    assert!(
        matches!(notify, ExecutorError::Unsupported { .. }),
        "{notify}"
    );
    let bad_index = compile(&profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    })))
    .expect_err("index 6 is refused");
    assert_eq!(
        bad_index.to_string(),
        "invalid spec: linux.seccomp.syscalls[0].args: argument index 6 (system calls have 6)"
    );
}
