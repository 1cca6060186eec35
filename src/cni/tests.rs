//! Manager-level tests with fake plugins: shell scripts in a tempdir that record their
//! environment and stdin and print canned results. No test here touches any network.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;
use crate::error_kind::ErrorKind;

/// A conf dir, two bin dirs, a cache dir and a log dir the fake plugins write to.
struct Fixture {
    dir: tempfile::TempDir,
}

const RESULT_A: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"0a:00:00:00:00:01"},{"name":"eth0","mac":"0a:00:00:00:00:02","sandbox":"/x"}],"ips":[{"address":"10.88.0.7/16","gateway":"10.88.0.1","interface":1}],"routes":[{"dst":"0.0.0.0/0"}]}"#;
const RESULT_B: &str = r#"{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"0a:00:00:00:00:01"},{"name":"eth0","mac":"0a:00:00:00:00:02","sandbox":"/x"}],"ips":[{"address":"fd88::7/64","interface":1},{"address":"10.88.0.7/16","gateway":"10.88.0.1","interface":1}],"routes":[{"dst":"0.0.0.0/0"}],"chained":"b"}"#;

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["net.d", "bin1", "bin2", "log"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        // Stands in for a pinned netns: DEL passes it only while it exists.
        std::fs::write(dir.path().join("netns"), b"").expect("netns file");
        Self { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn settings(&self) -> CniSettings {
        let config = crate::config::CniConfig {
            conf_dir: self.path("net.d"),
            bin_dirs: vec![self.path("bin1"), self.path("bin2")],
            plugin_timeout_secs: 20,
        };
        CniSettings::new(&config, self.path("state/cni/results"))
    }

    fn manager(&self) -> CniManager {
        CniManager::new(self.settings())
    }

    fn conf(&self, name: &str, text: &str) {
        std::fs::write(self.path("net.d").join(name), text).expect("write conf");
    }

    /// Installs `bin2/<name>`: records its call, env and stdin, then runs `body`.
    fn plugin(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let log = self.path("log");
        let script = format!(
            "#!/bin/sh\n\
             LOG='{log}'\n\
             echo \"{name} $CNI_COMMAND\" >> \"$LOG/calls\"\n\
             env | grep '^CNI_' | sort > \"$LOG/{name}.$CNI_COMMAND.env\"\n\
             cat > \"$LOG/{name}.$CNI_COMMAND.stdin\"\n\
             {body}\n",
            log = log.display()
        );
        let path = self.path("bin2").join(name);
        let temp = self.path("bin2").join(format!(".{name}.tmp"));
        std::fs::write(&temp, script).expect("write plugin");
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::rename(&temp, &path).expect("install plugin");
    }

    /// A plugin printing `result` on ADD and succeeding silently otherwise.
    fn ok_plugin(&self, name: &str, result: &str) {
        self.plugin(
            name,
            &format!("if [ \"$CNI_COMMAND\" = ADD ]; then printf '%s' '{result}'; fi"),
        );
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("log/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn clear_calls(&self) {
        let _ = std::fs::remove_file(self.path("log/calls"));
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let path = self.path(&format!("log/{plugin}.{command}.stdin"));
        let bytes = std::fs::read(&path).expect("recorded stdin");
        serde_json::from_slice(&bytes).expect("stdin is json")
    }

    fn env(&self, plugin: &str, command: &str) -> BTreeMap<String, String> {
        let path = self.path(&format!("log/{plugin}.{command}.env"));
        std::fs::read_to_string(&path)
            .expect("recorded env")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    fn pod(&self, id: &str) -> PodNetwork {
        PodNetwork {
            pod_id: id.to_owned(),
            name: "web".to_owned(),
            namespace: "shop".to_owned(),
            uid: "6f1c-uid".to_owned(),
            netns_path: self.path("netns"),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: String::new(),
            }],
            dns: Some(Dns {
                servers: vec!["10.96.0.10".to_owned()],
                searches: vec!["shop.svc.cluster.local".to_owned()],
                options: vec!["ndots:5".to_owned()],
            }),
            bandwidth: None,
            ip_ranges: Vec::new(),
        }
    }

    fn two_plugin_list(&self, version: &str) {
        self.conf(
            "10-net.conflist",
            &format!(
                r#"{{"cniVersion":"{version}","name":"podnet","plugins":[
                    {{"type":"plug-a","bridge":"cni0"}},
                    {{"type":"plug-b","capabilities":{{"portMappings":true,"dns":true,"bandwidth":true}}}}]}}"#
            ),
        );
    }
}

#[tokio::test]
async fn cni_status_names_what_is_missing_and_reloads_lazily() {
    let fx = Fixture::new();
    let manager = fx.manager();
    let err = manager.status().expect_err("no config yet");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    assert!(
        err.to_string().starts_with(&format!(
            "no network config found in {}",
            fx.path("net.d").display()
        )),
        "{err}"
    );

    // A new file is picked up without an explicit reload.
    fx.conf("05-broken.conf", "{");
    fx.two_plugin_list("1.0.0");
    let err = manager.status().expect_err("plugins missing");
    let expected = format!(
        "plugin plug-a not found in {}:{}",
        fx.path("bin1").display(),
        fx.path("bin2").display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
    assert!(matches!(err, CniError::PluginNotFound { ref network, .. } if network == "podnet"));

    fx.ok_plugin("plug-a", RESULT_A);
    let err = manager.status().expect_err("plug-b missing");
    assert!(err.to_string().contains("plugin plug-b not found"), "{err}");
    fx.ok_plugin("plug-b", RESULT_B);
    manager.status().expect("ready");
    let load = manager.reload();
    assert_eq!(load.skipped.len(), 1);
    assert!(load.skipped[0].path.ends_with("05-broken.conf"));

    // An in-place edit of the chosen file is seen too.
    fx.conf(
        "10-net.conflist",
        r#"{"cniVersion":"1.0.0","name":"renamed","plugins":[{"type":"plug-a"}]}"#,
    );
    assert_eq!(manager.network_config().expect("config").name, "renamed");
}

#[tokio::test]
async fn cni_setup_passes_env_stdin_capabilities_and_chains_prev_result() {
    let fx = Fixture::new();
    fx.two_plugin_list("1.0.0");
    fx.ok_plugin("plug-a", RESULT_A);
    fx.ok_plugin("plug-b", RESULT_B);
    let manager = fx.manager();
    let status = manager.setup(&fx.pod("pod1")).await.expect("setup");

    assert_eq!(fx.calls(), ["plug-a ADD", "plug-b ADD"]);
    let env = fx.env("plug-a", "ADD");
    let expected_env: BTreeMap<String, String> = [
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=pod1;K8S_POD_UID=6f1c-uid"
                .to_owned(),
        ),
        ("CNI_COMMAND", "ADD".to_owned()),
        ("CNI_CONTAINERID", "pod1".to_owned()),
        ("CNI_IFNAME", "eth0".to_owned()),
        ("CNI_NETNS", fx.path("netns").display().to_string()),
        (
            "CNI_PATH",
            format!(
                "{}:{}",
                fx.path("bin1").display(),
                fx.path("bin2").display()
            ),
        ),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    assert_eq!(env, expected_env);

    // No capabilities declared: no runtimeConfig; first plugin: no prevResult.
    assert_eq!(
        fx.stdin("plug-a", "ADD"),
        json!({"type": "plug-a", "bridge": "cni0", "name": "podnet", "cniVersion": "1.0.0"})
    );
    let b = fx.stdin("plug-b", "ADD");
    assert_eq!(b["name"], "podnet");
    assert_eq!(b["cniVersion"], "1.0.0");
    assert_eq!(
        b["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).expect("json")
    );
    // Declared portMappings, dns, bandwidth; the pod has no bandwidth, so it is absent.
    assert_eq!(
        b["runtimeConfig"],
        json!({
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
            "dns": {"servers": ["10.96.0.10"], "searches": ["shop.svc.cluster.local"],
                    "options": ["ndots:5"]},
        })
    );

    // The final result is the last plugin's; IPv4 is primary.
    assert_eq!(status.primary_ip, "10.88.0.7".parse().ok());
    assert_eq!(
        status.additional_ips,
        ["fd88::7".parse::<std::net::IpAddr>().expect("ip")]
    );
    assert_eq!(status.result_json["chained"], "b");
    assert_eq!(manager.pending_teardowns(), ["pod1"]);
}

#[tokio::test]
async fn cni_setup_parses_0_4_0_results_and_check_uses_prev_result() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"0.4.0","name":"old","type":"plug-a"}"#,
    );
    let result = r#"{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"version":"4","address":"192.168.1.9/24","gateway":"192.168.1.1","interface":0}],"dns":{}}"#;
    fx.ok_plugin("plug-a", result);
    let manager = fx.manager();
    let status = manager.setup(&fx.pod("pod1")).await.expect("setup");
    assert_eq!(status.primary_ip, "192.168.1.9".parse().ok());
    assert!(status.additional_ips.is_empty());

    manager.check("pod1").await.expect("check");
    let check = fx.stdin("plug-a", "CHECK");
    assert_eq!(
        check["prevResult"],
        serde_json::from_str::<Value>(result).expect("json")
    );
    assert_eq!(fx.env("plug-a", "CHECK")["CNI_COMMAND"], "CHECK");

    let err = manager.check("nope").await.expect_err("not attached");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn cni_check_is_skipped_before_0_4_0() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"0.3.1","name":"older","type":"plug-a"}"#,
    );
    fx.ok_plugin(
        "plug-a",
        r#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.1.1.2/24"}]}"#,
    );
    let manager = fx.manager();
    manager.setup(&fx.pod("pod1")).await.expect("setup");
    manager.check("pod1").await.expect("skipped check");
    assert_eq!(fx.calls(), ["plug-a ADD"]);
    // 0.3.x DEL gets no prevResult.
    manager.teardown("pod1").await.expect("teardown");
    assert!(fx.stdin("plug-a", "DEL").get("prevResult").is_none());
}

#[tokio::test]
async fn cni_plugin_error_json_and_stderr_are_in_the_error() {
    let fx = Fixture::new();
    fx.two_plugin_list("1.0.0");
    fx.ok_plugin("plug-a", RESULT_A);
    fx.plugin(
        "plug-b",
        r#"if [ "$CNI_COMMAND" = ADD ]; then
             echo 'panic: something broke' >&2
             printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no bridge named cni9"}'
             exit 3
           fi"#,
    );
    let manager = fx.manager();
    let err = manager
        .setup(&fx.pod("pod1"))
        .await
        .expect_err("plug-b fails");
    let CniError::PluginFailed {
        context,
        exit_code,
        signal,
        error,
        stderr,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(context.plugin, "plug-b");
    assert_eq!(context.network, "podnet");
    assert_eq!(context.command, CniCommand::Add);
    assert_eq!(context.container_id, "pod1");
    assert!(context.conf_path.ends_with("10-net.conflist"));
    assert_eq!(*exit_code, Some(3));
    assert_eq!(*signal, None);
    let reply = error.as_deref().expect("error json");
    assert_eq!(
        (reply.code, reply.msg.as_str(), reply.details.as_str()),
        (7, "invalid config", "no bridge named cni9")
    );
    assert_eq!(stderr, "panic: something broke");
    assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    let text = err.to_string();
    for part in [
        "plug-b ADD",
        "pod1",
        "podnet",
        "exited with code 3",
        "invalid config (code 7): no bridge named cni9",
        "stderr: panic: something broke",
    ] {
        assert!(text.contains(part), "{part:?} missing in {text}");
    }
}

#[tokio::test]
async fn cni_error_json_with_exit_zero_is_a_failure() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    fx.ok_plugin("plug-a", r#"{"code":11,"msg":"busy"}"#);
    let err = fx
        .manager()
        .setup(&fx.pod("pod1"))
        .await
        .expect_err("error json");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.plugin_reply().map(|reply| reply.code), Some(11));
}

#[tokio::test]
async fn cni_failed_add_midway_deletes_the_whole_list_in_reverse() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conflist",
        r#"{"cniVersion":"1.0.0","name":"three","plugins":[
            {"type":"plug-a"},{"type":"plug-b"},{"type":"plug-c"}]}"#,
    );
    fx.ok_plugin("plug-a", RESULT_A);
    fx.plugin(
        "plug-b",
        r#"if [ "$CNI_COMMAND" = ADD ]; then echo 'no addresses left' >&2; exit 1; fi"#,
    );
    fx.ok_plugin("plug-c", RESULT_B);
    let manager = fx.manager();
    let err = manager.setup(&fx.pod("pod1")).await.expect_err("b fails");
    assert_eq!(
        err.plugin_context().map(|c| c.plugin.as_str()),
        Some("plug-b")
    );
    assert!(err.to_string().contains("no addresses left"), "{err}");
    assert_eq!(
        fx.calls(),
        [
            "plug-a ADD",
            "plug-b ADD",
            "plug-c DEL",
            "plug-b DEL",
            "plug-a DEL"
        ]
    );
    // DEL gets the last result obtained (plug-a's) and the same pod parameters.
    assert_eq!(
        fx.stdin("plug-c", "DEL")["prevResult"],
        serde_json::from_str::<Value>(RESULT_A).expect("json")
    );
    assert_eq!(
        fx.env("plug-a", "DEL")["CNI_NETNS"],
        fx.path("netns").display().to_string()
    );
    assert!(manager.pending_teardowns().is_empty(), "rolled back");
}

#[tokio::test]
async fn cni_failed_rollback_keeps_the_pod_pending() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conflist",
        r#"{"cniVersion":"1.0.0","name":"two","plugins":[{"type":"plug-a"},{"type":"plug-b"}]}"#,
    );
    fx.plugin(
        "plug-a",
        &format!(
            r#"case "$CNI_COMMAND" in
                 ADD) printf '%s' '{RESULT_A}';;
                 DEL) [ -e '{flag}' ] || exit 1;;
               esac"#,
            flag = fx.path("del-ok").display()
        ),
    );
    fx.plugin("plug-b", r#"if [ "$CNI_COMMAND" = ADD ]; then exit 1; fi"#);
    let manager = fx.manager();
    manager.setup(&fx.pod("pod1")).await.expect_err("b fails");
    assert_eq!(manager.pending_teardowns(), ["pod1"]);
    manager
        .teardown("pod1")
        .await
        .expect_err("a's DEL still fails");
    assert_eq!(manager.pending_teardowns(), ["pod1"]);
    std::fs::write(fx.path("del-ok"), b"").expect("flag");
    manager.teardown("pod1").await.expect("DEL works now");
    assert!(manager.pending_teardowns().is_empty());
}

#[tokio::test]
async fn cni_timeout_kills_the_plugin_and_its_children() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"slow","type":"plug-a"}"#,
    );
    let pid_file = fx.path("sleep.pid");
    fx.plugin(
        "plug-a",
        &format!(
            r#"if [ "$CNI_COMMAND" = ADD ]; then sleep 30 & echo $! > '{}'; wait; fi"#,
            pid_file.display()
        ),
    );
    let mut settings = fx.settings();
    settings.plugin_timeout = Duration::from_millis(500);
    let manager = CniManager::new(settings);
    let started = Instant::now();
    let err = manager.setup(&fx.pod("pod1")).await.expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, CniError::Timeout { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::DeadlineExceeded);
    // The timed-out ADD was rolled back with DEL.
    assert_eq!(fx.calls(), ["plug-a ADD", "plug-a DEL"]);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(
        process_gone(pid, Duration::from_secs(5)),
        "the plugin's child {pid} survived"
    );
}

/// Whether `pid` has exited (gone, or a zombie awaiting its new parent) within `within`.
fn process_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let gone = match &state {
            None => true,
            Some(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        };
        if gone {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn cni_plugin_leaving_a_child_holding_stdout_does_not_stall() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    let pid_file = fx.path("helper.pid");
    fx.plugin(
        "plug-a",
        &format!(
            r#"if [ "$CNI_COMMAND" = ADD ]; then
                 sleep 20 & echo $! > '{}'
                 printf '%s' '{RESULT_A}'
               fi"#,
            pid_file.display()
        ),
    );
    let manager = fx.manager();
    let started = Instant::now();
    let status = manager.setup(&fx.pod("pod1")).await.expect("setup");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.primary_ip, "10.88.0.7".parse().ok());
    if let Some(pid) = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok())
        && let Some(pid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[tokio::test]
async fn cni_teardown_replays_the_cache_and_is_idempotent() {
    let fx = Fixture::new();
    fx.two_plugin_list("1.0.0");
    fx.ok_plugin("plug-a", RESULT_A);
    fx.ok_plugin("plug-b", RESULT_B);
    let manager = fx.manager();
    manager.setup(&fx.pod("pod1")).await.expect("setup");
    fx.clear_calls();

    // The netns is gone by teardown time: CNI_NETNS is passed empty.
    std::fs::remove_file(fx.path("netns")).expect("remove netns");
    manager.teardown("pod1").await.expect("teardown");
    assert_eq!(fx.calls(), ["plug-b DEL", "plug-a DEL"]);
    let final_result = serde_json::from_str::<Value>(RESULT_B).expect("json");
    assert_eq!(fx.stdin("plug-a", "DEL")["prevResult"], final_result);
    assert_eq!(fx.stdin("plug-b", "DEL")["prevResult"], final_result);
    assert_eq!(
        fx.stdin("plug-b", "DEL")["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    let env = fx.env("plug-b", "DEL");
    assert_eq!(env["CNI_NETNS"], "");
    assert_eq!(env["CNI_CONTAINERID"], "pod1");
    assert!(env["CNI_ARGS"].contains("K8S_POD_NAME=web"));
    assert!(manager.pending_teardowns().is_empty());

    fx.clear_calls();
    manager.teardown("pod1").await.expect("second teardown");
    manager
        .teardown("never-attached")
        .await
        .expect("unknown pod");
    assert!(fx.calls().is_empty());
    let err = manager.teardown("../etc").await.expect_err("bad id");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn cni_corrupt_record_falls_back_to_del_by_container_id() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    fx.ok_plugin("plug-a", RESULT_A);
    let manager = fx.manager();
    std::fs::create_dir_all(fx.path("state/cni/results")).expect("mkdir");
    std::fs::write(fx.path("state/cni/results/podx.json"), b"{\"trunc").expect("corrupt");
    assert_eq!(manager.pending_teardowns(), ["podx"]);
    manager
        .teardown("podx")
        .await
        .expect("best-effort teardown");
    assert_eq!(fx.calls(), ["plug-a DEL"]);
    let env = fx.env("plug-a", "DEL");
    assert_eq!(env["CNI_CONTAINERID"], "podx");
    assert_eq!(env["CNI_NETNS"], "");
    assert!(manager.pending_teardowns().is_empty());
}

#[tokio::test]
async fn cni_cache_survives_a_restart_and_a_removed_config() {
    let fx = Fixture::new();
    fx.two_plugin_list("1.0.0");
    fx.ok_plugin("plug-a", RESULT_A);
    fx.ok_plugin("plug-b", RESULT_B);
    let first = fx.manager();
    first.setup(&fx.pod("pod1")).await.expect("setup");
    first.setup(&fx.pod("pod2")).await.expect("setup");
    drop(first);

    std::fs::remove_file(fx.path("net.d/10-net.conflist")).expect("remove conf");
    fx.clear_calls();
    let second = fx.manager();
    assert!(second.status().is_err());
    assert_eq!(second.pending_teardowns(), ["pod1", "pod2"]);
    second.teardown("pod2").await.expect("teardown from cache");
    assert_eq!(fx.calls(), ["plug-b DEL", "plug-a DEL"]);
    assert_eq!(fx.stdin("plug-a", "DEL")["name"], "podnet");
    assert_eq!(second.pending_teardowns(), ["pod1"]);
}

#[tokio::test]
async fn cni_setup_again_tears_down_the_leftover_first() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    fx.ok_plugin("plug-a", RESULT_A);
    let manager = fx.manager();
    manager.setup(&fx.pod("pod1")).await.expect("setup");
    manager.setup(&fx.pod("pod1")).await.expect("setup again");
    assert_eq!(fx.calls(), ["plug-a ADD", "plug-a DEL", "plug-a ADD"]);
}

#[tokio::test]
async fn cni_parallel_pods_do_not_wait_for_each_other() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    fx.plugin(
        "plug-a",
        &format!(r#"if [ "$CNI_COMMAND" = ADD ]; then sleep 1; printf '%s' '{RESULT_A}'; fi"#),
    );
    let manager = fx.manager();
    let started = Instant::now();
    let pods: Vec<PodNetwork> = (0..4).map(|n| fx.pod(&format!("pod{n}"))).collect();
    let results = futures_util::future::join_all(pods.iter().map(|pod| manager.setup(pod))).await;
    for result in results {
        result.expect("setup");
    }
    assert!(
        started.elapsed() < Duration::from_millis(3500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cni_version_and_loopback() {
    let fx = Fixture::new();
    fx.plugin(
        "plug-a",
        r#"printf '%s' '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'"#,
    );
    let manager = fx.manager();
    let versions = manager.plugin_version("plug-a").await.expect("version");
    assert_eq!(versions.supported_versions, ["0.3.1", "0.4.0", "1.0.0"]);
    let env = fx.env("plug-a", "VERSION");
    assert!(!env.contains_key("CNI_CONTAINERID"), "{env:?}");
    assert_eq!(
        fx.stdin("plug-a", "VERSION"),
        json!({"cniVersion": "1.1.0"})
    );

    let err = manager
        .setup_loopback("pod1", Path::new("/run/netns/x"))
        .await
        .expect_err("no loopback plugin");
    assert!(matches!(err, CniError::PluginNotFound { .. }), "{err}");
    fx.ok_plugin(
        "loopback",
        r#"{"cniVersion":"0.3.1","interfaces":[{"name":"lo","sandbox":"/run/netns/x"}]}"#,
    );
    manager
        .setup_loopback("pod1", Path::new("/run/netns/x"))
        .await
        .expect("loopback");
    let env = fx.env("loopback", "ADD");
    assert_eq!(env["CNI_IFNAME"], "lo");
    assert_eq!(env["CNI_NETNS"], "/run/netns/x");
    assert_eq!(fx.stdin("loopback", "ADD")["type"], "loopback");
    assert!(manager.pending_teardowns().is_empty());
}

#[tokio::test]
async fn cni_status_verb_runs_only_for_1_1_0() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.1.0","name":"n","type":"plug-a"}"#,
    );
    fx.plugin(
        "plug-a",
        r#"if [ "$CNI_COMMAND" = STATUS ]; then printf '%s' '{"code":50,"msg":"no ipam"}'; exit 1; fi"#,
    );
    let manager = fx.manager();
    let err = manager.plugin_status().await.expect_err("not available");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(fx.stdin("plug-a", "STATUS")["name"], "n");
}

#[tokio::test]
async fn cni_spawn_failure_is_reported() {
    let fx = Fixture::new();
    fx.conf(
        "10-net.conf",
        r#"{"cniVersion":"1.0.0","name":"n","type":"plug-a"}"#,
    );
    // Executable bit set but not a runnable file.
    std::fs::write(fx.path("bin1/plug-a"), b"\x7fELF garbage").expect("write");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            fx.path("bin1/plug-a"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
    }
    let err = fx
        .manager()
        .setup(&fx.pod("pod1"))
        .await
        .expect_err("cannot exec");
    assert!(matches!(err, CniError::Spawn { .. }), "{err}");
}

/// Root only, skipped elsewhere: the real Debian plugins (bridge + host-local + portmap)
/// attach a pod netns. The plugins run through `nsenter` inside a throwaway "node" netns, so
/// the bridge, veth host ends and iptables rules never touch the host's network; IPAM state
/// goes to a tempdir.
#[tokio::test]
async fn cni_real_plugins_in_a_throwaway_netns() {
    let plugin_dir = Path::new("/usr/lib/cni");
    if !rustix::process::geteuid().is_root()
        || !plugin_dir.join("bridge").exists()
        || !Path::new("/usr/bin/nsenter").exists()
        || !Path::new("/usr/sbin/ip").exists()
    {
        eprintln!("skipping: needs root, /usr/lib/cni plugins, nsenter and ip");
        return;
    }
    let fx = Fixture::new();
    let node = TestNetns::create("node").expect("node netns");
    let pod_ns = TestNetns::create("pod").expect("pod netns");
    eprintln!(
        "test netns: {} {}",
        node.path().display(),
        pod_ns.path().display()
    );
    let n = std::process::id() % 10_000;
    fx.conf(
        "10-test.conflist",
        &format!(
            r#"{{"cniVersion":"1.0.0","name":"cnitest","plugins":[
                {{"type":"bridge","bridge":"cnitest{n}","isGateway":true,"ipMasq":true,
                  "ipam":{{"type":"host-local","dataDir":"{data}",
                          "ranges":[[{{"subnet":"10.123.0.0/24"}}]],
                          "routes":[{{"dst":"0.0.0.0/0"}}]}}}},
                {{"type":"portmap","capabilities":{{"portMappings":true}}}}]}}"#,
            data = fx.path("ipam").display()
        ),
    );
    let mut settings = fx.settings();
    settings.bin_dirs = vec![plugin_dir.to_owned()];
    settings.exec_prefix = vec![
        "/usr/bin/nsenter".into(),
        format!("--net={}", node.path().display()).into(),
        "--".into(),
    ];
    let manager = CniManager::new(settings);
    manager.status().expect("ready");
    let mut pod = fx.pod("realpod1");
    pod.netns_path = pod_ns.path().to_owned();
    let status = manager.setup(&pod).await.expect("real setup");
    let ip = status.primary_ip.expect("an address");
    assert!(ip.to_string().starts_with("10.123.0."), "{ip}");
    // Debian's portmap 1.1.1 CHECK also looks for an IPv6 DNAT chain of an IPv4-only pod and
    // fails; everything before it in the list (bridge, host-local) must pass.
    match manager.check("realpod1").await {
        Ok(()) => {}
        Err(err) => {
            let context = err.plugin_context().expect("a plugin failure");
            assert_eq!(context.plugin, "portmap", "{err}");
            assert!(err.to_string().contains("ipv6"), "{err}");
        }
    }
    let addrs = ip_in(pod_ns.name(), &["-4", "addr", "show", "eth0"]);
    assert!(addrs.contains(&ip.to_string()), "{addrs}");
    let links = ip_in(node.name(), &["link", "show", &format!("cnitest{n}")]);
    assert!(links.contains(&format!("cnitest{n}")), "{links}");

    manager
        .setup_loopback("realpod1", pod_ns.path())
        .await
        .expect("loopback");
    let lo = ip_in(pod_ns.name(), &["link", "show", "lo"]);
    assert!(lo.contains("UP"), "{lo}");

    manager.teardown("realpod1").await.expect("real teardown");
    let addrs = ip_in(pod_ns.name(), &["addr", "show"]);
    assert!(!addrs.contains("eth0"), "{addrs}");
    assert!(manager.pending_teardowns().is_empty());
}

/// `ip -n <ns> ...` output (empty on failure).
fn ip_in(netns: &str, args: &[&str]) -> String {
    std::process::Command::new("/usr/sbin/ip")
        .arg("-n")
        .arg(netns)
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// A named netns (`ip netns add carrack-cnitest-<pid>-<n>-<role>`), deleted on drop.
struct TestNetns {
    name: String,
    path: PathBuf,
}

impl TestNetns {
    fn create(role: &str) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("carrack-cnitest-{}-{n}-{role}", std::process::id());
        let status = std::process::Command::new("/usr/sbin/ip")
            .args(["netns", "add", &name])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "ip netns add {name}: {status}"
            )));
        }
        Ok(Self {
            path: PathBuf::from("/run/netns").join(&name),
            name,
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/usr/sbin/ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}
