//! Whole specs built from requests, images and pods the way kubelet and critest send them.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};
use serde_json::{Value, json};

use super::*;
use crate::error_kind::ErrorKind;
use crate::image_service::manifest::ContainerDefaults;
use crate::store::{NamespaceModes, ObjectMetadata, PodState};

/// A pod with its own network, IPC and UTS namespaces, like `RunPodSandbox` leaves it.
fn pod() -> PodRecord {
    PodRecord {
        id: "pod1".to_owned(),
        name_key: "p_ns_uid_0".to_owned(),
        metadata: ObjectMetadata::default(),
        state: PodState::Ready,
        created_at_ns: 0,
        labels: Default::default(),
        annotations: Default::default(),
        runtime_handler: String::new(),
        hostname: "pod-host".to_owned(),
        log_directory: String::new(),
        dns: None,
        port_mappings: Vec::new(),
        namespaces: NamespaceModes::default(),
        sysctls: [("kernel.shm_rmid_forced".to_owned(), "1".to_owned())].into(),
        privileged: false,
        cgroup_parent: String::new(),
        cgroup_path: "/kubepods/pod1".to_owned(),
        cgroup_created: Vec::new(),
        pod_dir: "/state/pods/pod1".to_owned(),
        netns_path: Some("/state/pods/pod1/netns".to_owned()),
        ipcns_path: Some("/state/pods/pod1/ipcns".to_owned()),
        utsns_path: Some("/state/pods/pod1/utsns".to_owned()),
        userns_path: None,
        shm_path: Some("/state/pods/pod1/shm".to_owned()),
        ip: None,
        additional_ips: Vec::new(),
        network_attached: true,
        pid_init: 0,
        pidns_path: None,
        creating: false,
    }
}

/// A host-network, host-IPC pod.
fn host_pod() -> PodRecord {
    PodRecord {
        namespaces: NamespaceModes {
            network: NamespaceMode::Node,
            ipc: NamespaceMode::Node,
            ..NamespaceModes::default()
        },
        netns_path: None,
        ipcns_path: None,
        utsns_path: None,
        userns_path: None,
        shm_path: None,
        hostname: String::new(),
        ..pod()
    }
}

/// busybox: `Cmd ["sh"]`, a PATH, no user.
fn busybox() -> ImageConfig {
    ImageConfig {
        config: Some(ContainerDefaults {
            env: Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ]),
            cmd: Some(vec!["sh".to_owned()]),
            ..ContainerDefaults::default()
        }),
        ..ImageConfig::default()
    }
}

fn files() -> PasswdFiles {
    PasswdFiles {
        passwd: Some(
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/home:/bin/false\n\
             default-user:x:1000:1000::/home/default-user:/bin/sh\n"
                .to_owned(),
        ),
        group: Some(
            "root:x:0:\n\
             nogroup:x:65534:\n\
             default-user:x:1000:\n\
             group-defined-in-image:x:50000:default-user\n"
                .to_owned(),
        ),
    }
}

fn host() -> HostInfo {
    HostInfo {
        bounding_caps: ALL_CAPABILITIES,
        cgroup_path: "/kubepods/pod1/c1".to_owned(),
        devices: vec![DeviceInfo {
            path: PathBuf::from("/dev/fuse"),
            kind: DeviceKind::Char,
            major: 10,
            minor: 229,
            file_mode: 0o666,
            uid: 0,
            gid: 0,
        }],
        hostname: "node-1".to_owned(),
        min_oom_score_adj: -1000,
        host_shm: Some(PathBuf::from("/dev/shm")),
    }
}

fn top() -> ContainerSpecInput {
    ContainerSpecInput {
        command: vec!["top".to_owned()],
        ..ContainerSpecInput::default()
    }
}

fn build(input: &ContainerSpecInput) -> Result<Spec, SpecError> {
    build_spec(input, &busybox(), &pod(), &files(), &host())
}

fn json_of(spec: &Spec) -> Value {
    serde_json::to_value(spec).expect("spec serializes")
}

fn destinations(spec: &Spec) -> Vec<String> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().display().to_string())
        .collect()
}

fn mount_at<'a>(spec: &'a Spec, destination: &str) -> &'a Mount {
    spec.mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new(destination))
        .unwrap_or_else(|| panic!("no mount at {destination}"))
}

fn options(mount: &Mount) -> Vec<String> {
    mount.options().clone().unwrap_or_default()
}

fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|linux| linux.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .map(|ns| (ns.typ(), ns.path().clone()))
        .collect()
}

#[test]
fn a_plain_container_gets_a_complete_spec_and_nothing_else() {
    let spec = build(&top()).expect("spec");
    let json = json_of(&spec);
    let mut keys: Vec<&String> = json.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["linux", "mounts", "ociVersion", "process", "root"]);
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["root"], json!({"path": "rootfs", "readonly": false}));

    let process = &json["process"];
    assert_eq!(process["args"], json!(["top"]));
    assert_eq!(
        process["env"],
        json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=pod-host"
        ])
    );
    assert_eq!(process["cwd"], "/");
    assert_eq!(process["terminal"], false);
    assert_eq!(
        process["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(process["noNewPrivileges"], false);
    assert_eq!(process["oomScoreAdj"], 0);
    assert!(process.get("rlimits").is_none(), "no rlimits by default");
    assert!(process.get("apparmorProfile").is_none());
    let caps = &process["capabilities"];
    assert_eq!(caps["bounding"].as_array().map(Vec::len), Some(14));
    let sorted = |value: &Value| {
        let mut names: Vec<String> = value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        names.sort();
        names
    };
    assert_eq!(sorted(&caps["effective"]), sorted(&caps["bounding"]));
    assert_eq!(sorted(&caps["permitted"]), sorted(&caps["bounding"]));
    assert!(caps.get("ambient").is_none() && caps.get("inheritable").is_none());

    let linux = &json["linux"];
    assert_eq!(linux["cgroupsPath"], "/kubepods/pod1/c1");
    assert!(
        linux.get("sysctl").is_none(),
        "pod sysctls are not repeated"
    );
    assert!(
        linux.get("seccomp").is_none(),
        "unset seccomp is unconfined"
    );
    assert!(linux.get("rootfsPropagation").is_none());
    assert!(linux.get("devices").is_none());
    assert_eq!(linux["maskedPaths"], json!(DEFAULT_MASKED_PATHS));
    assert_eq!(linux["readonlyPaths"], json!(DEFAULT_READONLY_PATHS));
    assert_eq!(
        linux["resources"]["devices"][0],
        json!({"allow": false, "type": "a", "access": "rwm"})
    );
    assert!(
        json.get("hostname").is_none(),
        "the pod's UTS namespace has the hostname"
    );

    assert_eq!(
        namespaces(&spec),
        [
            (LinuxNamespaceType::Pid, None),
            (
                LinuxNamespaceType::Network,
                Some("/state/pods/pod1/netns".into())
            ),
            (
                LinuxNamespaceType::Ipc,
                Some("/state/pods/pod1/ipcns".into())
            ),
            (
                LinuxNamespaceType::Uts,
                Some("/state/pods/pod1/utsns".into())
            ),
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Cgroup, None),
        ]
    );
    assert_eq!(
        destinations(&spec),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hostname",
            "/etc/resolv.conf",
        ]
    );
    let shm = mount_at(&spec, "/dev/shm");
    assert_eq!(shm.typ().as_deref(), Some("bind"));
    assert_eq!(
        shm.source().as_deref(),
        Some(Path::new("/state/pods/pod1/shm"))
    );
    assert_eq!(
        options(mount_at(&spec, "/sys")).last().map(String::as_str),
        Some("ro")
    );
    assert_eq!(
        options(mount_at(&spec, "/sys/fs/cgroup")),
        ["nosuid", "noexec", "nodev", "relatime", "ro"]
    );
    assert_eq!(
        options(mount_at(&spec, "/dev/pts")),
        [
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5"
        ]
    );
    let hostname = mount_at(&spec, "/etc/hostname");
    assert_eq!(
        hostname.source().as_deref(),
        Some(Path::new("/state/pods/pod1/hostname"))
    );
    assert_eq!(options(hostname), ["rbind", "rprivate", "rw"]);

    // What the executor reads back.
    let back: Spec = serde_json::from_value(json).expect("parses back");
    assert_eq!(back, spec);
}

#[test]
fn image_defaults_and_request_combine() {
    let image = ImageConfig {
        config: Some(ContainerDefaults {
            user: Some("default-user".to_owned()),
            env: Some(vec!["PATH=/bin".to_owned(), "MODE=image".to_owned()]),
            entrypoint: Some(vec!["/entry".to_owned()]),
            cmd: Some(vec!["serve".to_owned()]),
            working_dir: Some("/srv".to_owned()),
            ..ContainerDefaults::default()
        }),
        ..ImageConfig::default()
    };
    let input = ContainerSpecInput {
        args: vec!["--debug".to_owned()],
        envs: vec![("MODE".to_owned(), "request".to_owned())],
        tty: true,
        ..ContainerSpecInput::default()
    };
    let spec = build_spec(&input, &image, &pod(), &files(), &host()).expect("spec");
    let process = spec.process().as_ref().expect("process");
    assert_eq!(
        process.args().as_deref(),
        Some(&["/entry".to_owned(), "--debug".to_owned()][..])
    );
    assert_eq!(
        process.env().as_deref(),
        Some(
            &[
                "PATH=/bin".to_owned(),
                "HOSTNAME=pod-host".to_owned(),
                "TERM=xterm".to_owned(),
                "MODE=request".to_owned()
            ][..]
        )
    );
    assert_eq!(process.cwd(), Path::new("/srv"));
    assert_eq!(process.terminal(), Some(true));
    let user = process.user();
    assert_eq!((user.uid(), user.gid()), (1000, 1000));
    assert_eq!(user.additional_gids().as_deref(), Some(&[1000, 50000][..]));

    let nothing = ImageConfig::default();
    let err = build_spec(
        &ContainerSpecInput::default(),
        &nothing,
        &pod(),
        &files(),
        &host(),
    )
    .expect_err("no command");
    assert!(matches!(err, SpecError::NoCommand));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn critest_user_and_group_cases() {
    let user_of = |security: SecurityContext| {
        let input = ContainerSpecInput { security, ..top() };
        build(&input).map(|spec| {
            let user = spec.process().as_ref().expect("process").user().clone();
            (
                user.uid(),
                user.gid(),
                user.additional_gids().clone().unwrap_or_default(),
            )
        })
    };
    // RunAsUser 1001 (not in passwd): gid 0.
    let run_as_user = SecurityContext {
        run_as_user: Some(1001),
        ..SecurityContext::default()
    };
    assert_eq!(
        user_of(run_as_user.clone()).expect("uid"),
        (1001, 0, vec![0])
    );
    // RunAsGroup with RunAsUser: `id -u`:`id -g` = 1001:1002.
    let with_group = SecurityContext {
        run_as_group: Some(1002),
        ..run_as_user
    };
    assert_eq!(
        user_of(with_group).expect("uid:gid"),
        (1001, 1002, vec![1002])
    );
    // RunAsUserName nobody.
    let by_name = SecurityContext {
        run_as_username: "nobody".to_owned(),
        ..SecurityContext::default()
    };
    assert_eq!(user_of(by_name).expect("name"), (65534, 65534, vec![65534]));
    // RunAsGroup alone fails the create.
    let group_alone = SecurityContext {
        run_as_group: Some(1002),
        ..SecurityContext::default()
    };
    let err = user_of(group_alone).expect_err("group without user");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // SupplementalGroups [1234, 5678] both present.
    let supplemental = SecurityContext {
        supplemental_groups: vec![1234, 5678],
        ..SecurityContext::default()
    };
    assert_eq!(user_of(supplemental).expect("groups").2, [0, 1234, 5678]);
    // SupplementalGroupsPolicy with the predefined-group image (USER 1000).
    let image = ImageConfig {
        config: Some(ContainerDefaults {
            user: Some("1000".to_owned()),
            cmd: Some(vec!["sh".to_owned()]),
            ..ContainerDefaults::default()
        }),
        ..ImageConfig::default()
    };
    for (policy, expected) in [
        (SupplementalGroupsPolicy::Merge, vec![1000, 1234, 50000]),
        (SupplementalGroupsPolicy::Strict, vec![1000, 1234]),
    ] {
        let input = ContainerSpecInput {
            security: SecurityContext {
                supplemental_groups: vec![1234],
                supplemental_groups_policy: policy,
                ..SecurityContext::default()
            },
            ..top()
        };
        let spec = build_spec(&input, &image, &pod(), &files(), &host()).expect("spec");
        let user = spec.process().as_ref().expect("process").user().clone();
        assert_eq!((user.uid(), user.gid()), (1000, 1000));
        assert_eq!(
            user.additional_gids().clone().unwrap_or_default(),
            expected,
            "{policy:?}"
        );
    }
}

#[test]
fn namespace_modes() {
    // Host network and IPC: neither listed; the UTS namespace follows the network one.
    let mut input = top();
    input.security.namespaces = NamespaceOptions {
        network: NamespaceMode::Node,
        ipc: NamespaceMode::Node,
        pid: NamespaceMode::Node,
        pid_namespace_path: None,
        user: None,
    };
    let spec = build_spec(&input, &busybox(), &host_pod(), &files(), &host()).expect("spec");
    assert_eq!(
        namespaces(&spec),
        [
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Cgroup, None)
        ]
    );
    let shm = mount_at(&spec, "/dev/shm");
    assert_eq!(
        shm.source().as_deref(),
        Some(Path::new("/dev/shm")),
        "the node's /dev/shm"
    );
    let hosts = mount_at(&spec, "/etc/hosts");
    assert_eq!(
        hosts.source().as_deref(),
        Some(Path::new("/state/pods/pod1/hosts"))
    );
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .unwrap_or_default();
    assert!(env.contains(&"HOSTNAME=node-1".to_owned()), "{env:?}");
    // Without a node /dev/shm to share, a private tmpfs.
    let no_shm = HostInfo {
        host_shm: None,
        ..host()
    };
    let spec = build_spec(&input, &busybox(), &host_pod(), &files(), &no_shm).expect("spec");
    assert_eq!(mount_at(&spec, "/dev/shm").typ().as_deref(), Some("tmpfs"));

    // PID modes.
    let pid_of = |mode, path: Option<&str>| {
        let mut input = top();
        input.security.namespaces.pid = mode;
        input.security.namespaces.pid_namespace_path = path.map(PathBuf::from);
        build(&input).map(|spec| {
            namespaces(&spec)
                .into_iter()
                .find(|(typ, _)| *typ == LinuxNamespaceType::Pid)
        })
    };
    assert_eq!(
        pid_of(NamespaceMode::Container, None).expect("new"),
        Some((LinuxNamespaceType::Pid, None))
    );
    assert_eq!(
        pid_of(NamespaceMode::Pod, None).expect("new"),
        Some((LinuxNamespaceType::Pid, None))
    );
    assert_eq!(
        pid_of(NamespaceMode::Pod, Some("/proc/42/ns/pid")).expect("pod's"),
        Some((LinuxNamespaceType::Pid, Some("/proc/42/ns/pid".into())))
    );
    assert_eq!(
        pid_of(NamespaceMode::Target, Some("/proc/7/ns/pid")).expect("target"),
        Some((LinuxNamespaceType::Pid, Some("/proc/7/ns/pid".into())))
    );
    assert_eq!(pid_of(NamespaceMode::Node, None).expect("host"), None);
    assert!(matches!(
        pid_of(NamespaceMode::Target, None),
        Err(SpecError::Invalid { .. })
    ));

    // A pod without the pin the container wants to join.
    let pinless = PodRecord {
        netns_path: None,
        ..pod()
    };
    let err = build_spec(&top(), &busybox(), &pinless, &files(), &host()).expect_err("no netns");
    assert!(matches!(
        err,
        SpecError::PodNamespaceMissing {
            namespace: "network",
            ..
        }
    ));
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let shmless = PodRecord {
        shm_path: None,
        ..pod()
    };
    let err = build_spec(&top(), &busybox(), &shmless, &files(), &host()).expect_err("no shm");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
}

fn cri_mount(
    container: &str,
    host: &str,
    readonly: bool,
    propagation: MountPropagation,
) -> MountRequest {
    MountRequest {
        container_path: container.to_owned(),
        host_path: host.to_owned(),
        readonly,
        propagation,
        ..MountRequest::default()
    }
}

#[test]
fn cri_mounts_come_last_sorted_by_depth_with_their_options() {
    let mut input = top();
    input.mounts = vec![
        cri_mount("/data/sub", "/host/sub", true, MountPropagation::Private),
        cri_mount(
            "/data",
            "/host/data",
            false,
            MountPropagation::HostToContainer,
        ),
        cri_mount(
            "/etc/hosts",
            "/var/lib/kubelet/pods/x/etc-hosts",
            false,
            MountPropagation::Private,
        ),
        cri_mount(
            "/shared/",
            "/host/shared",
            false,
            MountPropagation::Bidirectional,
        ),
    ];
    let spec = build(&input).expect("spec");
    let all = destinations(&spec);
    assert_eq!(
        all.get(9..).expect("cri mounts"),
        ["/data", "/shared", "/data/sub", "/etc/hosts"]
    );
    assert_eq!(options(mount_at(&spec, "/data")), ["rbind", "rslave", "rw"]);
    assert_eq!(
        options(mount_at(&spec, "/shared")),
        ["rbind", "rshared", "rw"]
    );
    assert_eq!(
        options(mount_at(&spec, "/data/sub")),
        ["rbind", "rprivate", "ro"]
    );
    let data = mount_at(&spec, "/data");
    assert_eq!(data.typ().as_deref(), Some("bind"));
    assert_eq!(data.source().as_deref(), Some(Path::new("/host/data")));
    assert_eq!(
        spec.linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().clone())
            .as_deref(),
        Some("rshared"),
        "a bidirectional mount needs a shared rootfs"
    );

    // Host-to-container alone: rslave.
    input.mounts = vec![cri_mount(
        "/data",
        "/host/data",
        false,
        MountPropagation::HostToContainer,
    )];
    let spec = build(&input).expect("spec");
    assert_eq!(
        spec.linux()
            .as_ref()
            .and_then(|l| l.rootfs_propagation().clone())
            .as_deref(),
        Some("rslave")
    );
}

#[test]
fn cri_mounts_replace_standard_ones() {
    // kubelet's /etc/hosts replaces the pod's (host network), and its resolv.conf the pod's.
    let mut input = top();
    input.security.namespaces.network = NamespaceMode::Node;
    input.security.namespaces.ipc = NamespaceMode::Node;
    input.mounts = vec![
        cri_mount(
            "/etc/hosts",
            "/kubelet/etc-hosts",
            false,
            MountPropagation::Private,
        ),
        cri_mount(
            "/etc//resolv.conf",
            "/kubelet/resolv",
            true,
            MountPropagation::Private,
        ),
    ];
    let spec = build_spec(&input, &busybox(), &host_pod(), &files(), &host()).expect("spec");
    let all = destinations(&spec);
    assert_eq!(all.iter().filter(|d| *d == "/etc/hosts").count(), 1);
    assert_eq!(all.iter().filter(|d| *d == "/etc/resolv.conf").count(), 1);
    assert_eq!(
        mount_at(&spec, "/etc/hosts").source().as_deref(),
        Some(Path::new("/kubelet/etc-hosts"))
    );

    // A CRI /dev replaces /dev and everything the defaults put below it.
    input.mounts = vec![cri_mount(
        "/dev",
        "/host/dev",
        false,
        MountPropagation::Private,
    )];
    let spec = build_spec(&input, &busybox(), &host_pod(), &files(), &host()).expect("spec");
    let all = destinations(&spec);
    assert!(!all.iter().any(|d| d.starts_with("/dev/")), "{all:?}");
    assert_eq!(all.iter().filter(|d| *d == "/dev").count(), 1);
}

#[test]
fn recursive_read_only_and_bad_mounts() {
    let mut input = top();
    let mut rro = cri_mount("/ro", "/host/ro", true, MountPropagation::Private);
    rro.recursive_read_only = true;
    input.mounts = vec![rro.clone()];
    let spec = build(&input).expect("spec");
    assert_eq!(
        options(mount_at(&spec, "/ro")),
        ["rbind", "rprivate", "ro", "rro"]
    );

    let refused = |mount: MountRequest| {
        let input = ContainerSpecInput {
            mounts: vec![mount],
            ..top()
        };
        build(&input).expect_err("refused")
    };
    let writable = MountRequest {
        readonly: false,
        ..rro.clone()
    };
    assert!(refused(writable).to_string().contains("needs readonly"));
    let slave = MountRequest {
        propagation: MountPropagation::HostToContainer,
        ..rro
    };
    assert!(
        refused(slave)
            .to_string()
            .contains("needs private propagation")
    );
    let relative = cri_mount("data", "/host", false, MountPropagation::Private);
    assert!(matches!(refused(relative), SpecError::RelativePath { .. }));
    let relative_host = cri_mount("/data", "host", false, MountPropagation::Private);
    assert!(matches!(
        refused(relative_host),
        SpecError::RelativePath { .. }
    ));
    let root = cri_mount("/../", "/host", false, MountPropagation::Private);
    assert!(matches!(refused(root), SpecError::Invalid { .. }));
    let image_volume = MountRequest {
        image: Some("registry.example/data:1".to_owned()),
        ..cri_mount("/data", "", false, MountPropagation::Private)
    };
    let err = refused(image_volume);
    assert_eq!(err.kind(), ErrorKind::Unimplemented);
}

#[test]
fn readonly_rootfs_also_makes_the_pod_files_read_only() {
    let mut input = top();
    input.security.readonly_rootfs = true;
    let spec = build(&input).expect("spec");
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
    for file in ["/etc/hostname", "/etc/resolv.conf"] {
        assert_eq!(
            options(mount_at(&spec, file)),
            ["rbind", "rprivate", "ro"],
            "{file}"
        );
    }
    assert_eq!(
        options(mount_at(&spec, "/dev/shm")),
        ["rbind", "rprivate", "rw"]
    );
}

#[test]
fn masked_and_readonly_paths() {
    let masks = |security: SecurityContext, pod: PodRecord| {
        let input = ContainerSpecInput { security, ..top() };
        build_spec(&input, &busybox(), &pod, &files(), &host()).map(|spec| {
            let linux = spec.linux().clone().expect("linux");
            (
                linux.masked_paths().clone().unwrap_or_default(),
                linux.readonly_paths().clone().unwrap_or_default(),
            )
        })
    };
    let own = SecurityContext {
        masked_paths: Some(vec!["/bin/ls".to_owned()]),
        readonly_paths: Some(vec!["/tmp".to_owned()]),
        ..SecurityContext::default()
    };
    assert_eq!(
        masks(own, pod()).expect("own lists"),
        (vec!["/bin/ls".to_owned()], vec!["/tmp".to_owned()])
    );
    let unmasked = SecurityContext {
        masked_paths: Some(Vec::new()),
        readonly_paths: Some(Vec::new()),
        ..SecurityContext::default()
    };
    assert_eq!(
        masks(unmasked, pod()).expect("unmasked"),
        (Vec::new(), Vec::new())
    );
    let privileged = SecurityContext {
        privileged: true,
        masked_paths: Some(vec!["/bin/ls".to_owned()]),
        ..SecurityContext::default()
    };
    let privileged_pod = PodRecord {
        privileged: true,
        ..pod()
    };
    assert_eq!(
        masks(privileged, privileged_pod).expect("privileged"),
        (Vec::new(), Vec::new())
    );
    let relative = SecurityContext {
        readonly_paths: Some(vec!["proc/sys".to_owned()]),
        ..SecurityContext::default()
    };
    assert!(matches!(
        masks(relative, pod()),
        Err(SpecError::RelativePath { .. })
    ));
}

#[test]
fn privileged_containers() {
    let privileged = |pod: PodRecord, host: &HostInfo| {
        let input = ContainerSpecInput {
            security: SecurityContext {
                privileged: true,
                seccomp: SeccompProfile::Localhost("/nonexistent/profile.json".into()),
                capabilities: CapabilityChanges {
                    drop: vec!["ALL".to_owned()],
                    ..CapabilityChanges::default()
                },
                ..SecurityContext::default()
            },
            ..top()
        };
        build_spec(&input, &busybox(), &pod, &files(), host)
    };
    let err = privileged(pod(), &host()).expect_err("pod not privileged");
    assert!(matches!(err, SpecError::PrivilegedNotAllowed { .. }));
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);

    let privileged_pod = PodRecord {
        privileged: true,
        ..pod()
    };
    // The host lacks CAP_SYS_RESOURCE (24): the container must not ask for it.
    let limited = HostInfo {
        bounding_caps: ALL_CAPABILITIES & !(1 << 24),
        ..host()
    };
    let spec = privileged(privileged_pod, &limited).expect("privileged spec");
    let json = json_of(&spec);
    let bounding = json["process"]["capabilities"]["bounding"]
        .as_array()
        .expect("caps")
        .len();
    assert_eq!(bounding, 40, "all 41 but CAP_SYS_RESOURCE");
    assert!(
        !json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps")
            .contains(&json!("CAP_SYS_RESOURCE"))
    );
    let linux = &json["linux"];
    assert!(
        linux.get("seccomp").is_none(),
        "the profile is ignored (not even read)"
    );
    assert_eq!(linux["maskedPaths"], json!([]));
    assert_eq!(linux["readonlyPaths"], json!([]));
    assert_eq!(
        linux["devices"],
        json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0}])
    );
    assert_eq!(
        linux["resources"]["devices"],
        json!([{"allow": true, "type": "a", "access": "rwm"}])
    );
    assert_eq!(
        options(mount_at(&spec, "/sys")).last().map(String::as_str),
        Some("rw")
    );
    assert_eq!(
        options(mount_at(&spec, "/sys/fs/cgroup"))
            .last()
            .map(String::as_str),
        Some("rw")
    );
}

#[test]
fn seccomp_selection() {
    let seccomp_of = |profile: SeccompProfile, add: &[&str]| {
        let input = ContainerSpecInput {
            security: SecurityContext {
                seccomp: profile,
                capabilities: CapabilityChanges {
                    add: add.iter().map(|s| (*s).to_owned()).collect(),
                    ..CapabilityChanges::default()
                },
                ..SecurityContext::default()
            },
            ..top()
        };
        build(&input).map(|spec| spec.linux().as_ref().and_then(|l| l.seccomp().clone()))
    };
    assert_eq!(
        seccomp_of(SeccompProfile::Unconfined, &[]).expect("none"),
        None
    );
    let default = seccomp_of(SeccompProfile::RuntimeDefault, &[])
        .expect("default")
        .expect("some");
    let mentions = |profile: &oci_spec::runtime::LinuxSeccomp, name: &str| {
        profile
            .syscalls()
            .iter()
            .flatten()
            .any(|rule| rule.names().iter().any(|n| n == name))
    };
    assert!(
        !mentions(&default, "sethostname"),
        "blocked without CAP_SYS_ADMIN"
    );
    let admin = seccomp_of(SeccompProfile::RuntimeDefault, &["SYS_ADMIN"])
        .expect("default")
        .expect("some");
    assert!(
        mentions(&admin, "sethostname"),
        "critest: sethostname with SYS_ADMIN"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("block-chmod.json");
    std::fs::write(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .expect("write");
    let local = seccomp_of(SeccompProfile::Localhost(path), &[])
        .expect("local")
        .expect("some");
    assert!(mentions(&local, "chmod"));
    let err = seccomp_of(SeccompProfile::Localhost(dir.path().join("nope.json")), &[])
        .expect_err("missing profile");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn capabilities_in_the_spec() {
    let caps_of = |add: &[&str], drop: &[&str]| {
        let input = ContainerSpecInput {
            security: SecurityContext {
                capabilities: CapabilityChanges {
                    add: add.iter().map(|s| (*s).to_owned()).collect(),
                    drop: drop.iter().map(|s| (*s).to_owned()).collect(),
                    ..CapabilityChanges::default()
                },
                ..SecurityContext::default()
            },
            ..top()
        };
        build(&input).map(|spec| {
            let mut caps: Vec<String> = json_of(&spec)["process"]["capabilities"]["effective"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            caps.sort();
            caps
        })
    };
    let added = caps_of(&["NET_ADMIN"], &["NET_RAW"]).expect("caps");
    assert!(added.contains(&"CAP_NET_ADMIN".to_owned()));
    assert!(!added.contains(&"CAP_NET_RAW".to_owned()));
    assert_eq!(added.len(), 14);
    assert_eq!(caps_of(&[], &["ALL"]).expect("none"), Vec::<String>::new());
    assert_eq!(caps_of(&["ALL"], &[]).expect("all").len(), 41);
    assert_eq!(
        caps_of(&["CAP_CHOWN"], &["ALL"]).expect("one"),
        ["CAP_CHOWN"]
    );
    let err = caps_of(&["CAP_TELEPORT"], &[]).expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn resources_devices_and_oom_score_adj() {
    let input = ContainerSpecInput {
        resources: Resources {
            memory_limit: Some(15 * 1024 * 1024),
            cpu_shares: Some(1024),
            ..Resources::default()
        },
        devices: vec![DeviceRequest {
            container_path: "/dev/fuse".to_owned(),
            host_path: "/dev/fuse".to_owned(),
            permissions: "rwm".to_owned(),
        }],
        oom_score_adj: -997,
        ..top()
    };
    let floor = HostInfo {
        min_oom_score_adj: -999,
        ..host()
    };
    let spec = build_spec(&input, &busybox(), &pod(), &files(), &floor).expect("spec");
    let json = json_of(&spec);
    assert_eq!(json["process"]["oomScoreAdj"], -997);
    assert_eq!(
        json["linux"]["resources"]["memory"]["limit"],
        15 * 1024 * 1024
    );
    assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 1024);
    assert_eq!(json["linux"]["devices"][0]["path"], "/dev/fuse");
    let rules = json["linux"]["resources"]["devices"]
        .as_array()
        .expect("rules");
    assert_eq!(
        rules.last(),
        Some(&json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}))
    );
    let no_resource = HostInfo {
        min_oom_score_adj: 0,
        ..host()
    };
    let spec = build_spec(&input, &busybox(), &pod(), &files(), &no_resource).expect("spec");
    assert_eq!(
        spec.process().as_ref().and_then(|p| p.oom_score_adj()),
        Some(0)
    );
}

/// A pod with its own user namespace (container root = host 100000).
fn userns_pod() -> PodRecord {
    let range = crate::store::IdMapping {
        container_id: 0,
        host_id: 100_000,
        length: 65_536,
    };
    let mut pod = pod();
    pod.namespaces.user = Some(UserNamespaceMappings {
        uid: range,
        gid: range,
    });
    pod.userns_path = Some("/state/pods/pod1/userns".to_owned());
    pod
}

#[test]
fn a_user_namespace_pod_s_containers_join_its_user_namespace_with_its_maps() {
    let pod = userns_pod();
    let mut input = top();
    input.mounts = vec![MountRequest {
        id_mappings: pod.namespaces.user,
        ..cri_mount("/data", "/host/data", false, MountPropagation::Private)
    }];
    let spec = build_spec(&input, &busybox(), &pod, &files(), &host()).expect("spec");
    let linux = spec.linux().as_ref().expect("linux");
    let first = &linux.namespaces().as_ref().expect("namespaces")[0];
    assert_eq!(first.typ(), LinuxNamespaceType::User);
    assert_eq!(
        first.path().as_deref(),
        Some(Path::new("/state/pods/pod1/userns"))
    );
    let maps = linux.uid_mappings().as_ref().expect("uid maps");
    assert_eq!(
        (maps[0].container_id(), maps[0].host_id(), maps[0].size()),
        (0, 100_000, 65_536)
    );
    assert!(linux.gid_mappings().is_some());
    let data = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new("/data"))
        .expect("data mount");
    assert!(data.uid_mappings().is_some() && data.gid_mappings().is_some());

    // Other mappings, for the container or a mount, are refused.
    let other = UserNamespaceMappings {
        uid: crate::store::IdMapping {
            container_id: 0,
            host_id: 5,
            length: 1,
        },
        gid: crate::store::IdMapping {
            container_id: 0,
            host_id: 5,
            length: 1,
        },
    };
    let mut own = top();
    own.security.namespaces.user = Some(other);
    let err = build_spec(&own, &busybox(), &pod, &files(), &host()).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    let mut odd_mount = top();
    odd_mount.mounts = vec![MountRequest {
        id_mappings: Some(other),
        ..cri_mount("/data", "/host/data", false, MountPropagation::Private)
    }];
    let err = build_spec(&odd_mount, &busybox(), &pod, &files(), &host()).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unimplemented);
    let mut privileged = top();
    privileged.security.privileged = true;
    let mut privileged_pod = pod.clone();
    privileged_pod.privileged = true;
    let err = build_spec(&privileged, &busybox(), &privileged_pod, &files(), &host())
        .expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    // No user namespace in the pod: an idmapped mount cannot be made either.
    let err =
        build_spec(&odd_mount, &busybox(), &self::pod(), &files(), &host()).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Unimplemented);
}
