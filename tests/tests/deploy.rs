//! The deployment files agree with each other and with the node: the Kubernetes ConfigMap's
//! cluster.yaml and the Compose image's config/docker/cluster.yaml both load with the node's own
//! loader and differ only in names; the StatefulSet's pod names, ports, environment and mounts
//! give each pod the configuration the namespace test (tests/tests/netns.rs) runs; the
//! entrypoint refuses placeholder secrets; and tests/deploy/validate.sh (docker-compose config,
//! kubernetes-validate) passes; and a node in a memory-limited cgroup fits Redis into it.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use rcluster_domain::config::{expand_vars, parse, ClusterConfig};
use rcluster_tests::{repo_root, target_dir, TempDir};
use serde_norway::Value;

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(path)).expect(path);
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml document"))
        .collect()
}

fn load(text: &str) -> ClusterConfig {
    let secret = |name: &str| Some(format!("{}-0123456789abcdef", name.to_lowercase()));
    parse(&expand_vars(text, secret).expect("variables")).expect("a valid config")
}

fn env_names(container: &Value) -> BTreeSet<String> {
    container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("name").to_string())
        .collect()
}

#[test]
fn kubernetes_pods_get_the_configuration_the_compose_containers_get() {
    let compose = load(
        &std::fs::read_to_string(repo_root().join("config/docker/cluster.yaml")).expect("docker"),
    );
    let map = &yaml_docs("deploy/k8s/configmap.yaml")[0];
    let k8s = load(map["data"]["cluster.yaml"].as_str().expect("cluster.yaml"));
    let set = &yaml_docs("deploy/k8s/statefulset.yaml")[0];
    let spec = &set["spec"];
    let name = set["metadata"]["name"].as_str().expect("name");
    let service = spec["serviceName"].as_str().expect("serviceName");
    let replicas = spec["replicas"].as_u64().expect("replicas") as usize;

    // Same settings but the names.
    let strip = |c: &ClusterConfig| {
        let mut c = c.clone();
        c.cluster_name.clear();
        c.nodes.clear();
        c
    };
    assert_eq!(strip(&k8s), strip(&compose));
    assert_eq!(k8s.nodes.len(), replicas);

    // Pod i is node `<name>-i`, reached as `<name>-i.<service>` (the headless Service), on the
    // container's ports, like the Compose services on theirs.
    let container = &spec["template"]["spec"]["containers"][0];
    let port = |wanted: &str| {
        container["ports"]
            .as_sequence()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == wanted)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("container port {wanted}")) as u16
    };
    for (i, node) in k8s.nodes.iter().enumerate() {
        assert_eq!(node.id, format!("{name}-{i}"));
        assert_eq!(node.host, format!("{}.{service}", node.id));
        assert_eq!(
            (node.redis_port, node.http_port, node.peer_port),
            (port("redis"), port("http"), port("peer-tcp"))
        );
        assert_eq!(port("peer-udp"), node.peer_port, "heartbeats are UDP");
        let c = &compose.nodes[i];
        assert_eq!(
            (c.redis_port, c.http_port, c.peer_port),
            (node.redis_port, node.http_port, node.peer_port)
        );
    }
    let services = yaml_docs("deploy/k8s/services.yaml");
    let headless = services
        .iter()
        .find(|s| s["metadata"]["name"] == service)
        .expect("the headless Service the StatefulSet names");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));

    // The environment the entrypoint reads: the Compose services' names, and the pod's name as
    // the node id.
    let names = env_names(container);
    for wanted in [
        "RCLUSTER_NODE_ID",
        "RCLUSTER_ADMIN_KEY",
        "RCLUSTER_READ_KEY",
        "RCLUSTER_REDIS_PASSWORD",
        "RCLUSTER_NODE_ARGS",
    ] {
        assert!(names.contains(wanted), "the pod lacks {wanted}");
    }
    let id = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "RCLUSTER_NODE_ID")
        .expect("id");
    assert_eq!(
        id["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.name")
    );
    let compose_text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    for name in &names {
        if name != "RCLUSTER_JOIN_HOST_SUFFIX" {
            assert!(
                compose_text.contains(name.as_str()),
                "{name} not in compose"
            );
        }
    }

    // Mounts where the image's layout expects them: the config at /etc/rcluster/cluster.yaml
    // (data_dir ../../data is then /data), the cluster secret at /run/secrets/cluster_secret.
    let mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_sequence()
        .expect("mounts")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["mountPath"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let config_dir = Path::new("/etc/rcluster");
    for (name, path) in [
        ("config", "/etc/rcluster/cluster.yaml".to_string()),
        ("data", normalize(&config_dir.join(&k8s.data_dir))),
        ("secrets", "/run/secrets".to_string()),
    ] {
        assert!(
            mounts.contains(&(name.to_string(), path.clone())),
            "{name} at {path} in {mounts:?}"
        );
    }
    let secret_file = k8s.peers.secret_file.as_deref().expect("secret_file");
    assert_eq!(
        normalize(&config_dir.join(secret_file)),
        "/run/secrets/cluster_secret"
    );
}

/// `path` with `..` resolved lexically.
fn normalize(path: &Path) -> String {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().to_string()),
            _ => {}
        }
    }
    format!("/{}", out.join("/"))
}

#[test]
fn compose_monitoring_files_are_the_generated_and_shipped_ones() {
    // Prometheus inside Compose scrapes what `rcluster prometheus-config` makes of the image's
    // config.
    let out = Command::new(rcluster_tests::rcluster_bin())
        .args(["prometheus-config", "--config"])
        .arg(repo_root().join("config/docker/cluster.yaml"))
        .env("RCLUSTER_ADMIN_KEY", "compose-admin-key-0123456789")
        .env("RCLUSTER_READ_KEY", "compose-read-key-0123456789")
        .env("RCLUSTER_REDIS_PASSWORD", "compose-redis-password")
        .output()
        .expect("prometheus-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read(repo_root().join("config/docker/prometheus.yml")).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&committed),
        "config/docker/prometheus.yml is stale: regenerate it with rcluster prometheus-config"
    );
    // Grafana inside Compose: the shipped data source but for the address of Prometheus.
    let shipped = &yaml_docs("config/grafana/provisioning/datasources/rcluster.yml")[0];
    let compose = &yaml_docs("config/docker/grafana-datasources/prometheus.yml")[0];
    let mut expected = shipped.clone();
    expected["datasources"][0]["url"] = Value::from("http://prometheus:9090");
    assert_eq!(compose, &expected);
    // The dashboards are mounted where the shipped provider looks for them.
    let provider = &yaml_docs("config/grafana/provisioning/dashboards/rcluster.yml")[0];
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    let compose_text = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    assert!(
        compose_text.contains(&format!("./config/grafana/dashboards:{path}:ro")),
        "docker-compose.yml mounts the dashboards at {path}"
    );
}

#[test]
fn the_entrypoint_refuses_placeholder_and_missing_secrets() {
    let tmp = TempDir::new("entrypoint");
    let root = tmp.path().join("root");
    let layout = Command::new("bash")
        .arg(repo_root().join("deploy/layout.sh"))
        .arg(&root)
        .arg(target_dir())
        .status()
        .expect("layout");
    assert!(layout.success());
    let entry = root.join("usr/local/bin/rcluster-entrypoint");
    let run = |envs: &[(&str, &str)]| {
        let out = Command::new(&entry)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(envs.iter().copied())
            .output()
            .expect("entrypoint");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("RCLUSTER_NODE_ID"), "{err}");
    let (code, err) = run(&[("RCLUSTER_NODE_ID", "n1")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cluster secret"), "{err}");
    let secret = root.join("run/secrets/cluster_secret");
    std::fs::write(
        &secret,
        "REPLACE_ME-cluster-secret-of-32-or-more-characters",
    )
    .unwrap();
    let (code, err) = run(&[("RCLUSTER_NODE_ID", "n1")]);
    assert_eq!(code, Some(2));
    assert!(err.contains("placeholder"), "{err}");
    std::fs::write(&secret, "a-real-cluster-secret-0123456789abcdef").unwrap();
    let (code, err) = run(&[
        ("RCLUSTER_NODE_ID", "n1"),
        ("RCLUSTER_ADMIN_KEY", "REPLACE_ME-admin-key"),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("RCLUSTER_ADMIN_KEY is still the placeholder"),
        "{err}"
    );
    // Past the entrypoint's checks, the node names the variable the config needs.
    let (code, err) = run(&[("RCLUSTER_NODE_ID", "n1")]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("RCLUSTER_ADMIN_KEY") && err.contains("not set"),
        "{err}"
    );
}

#[test]
fn compose_and_kubernetes_files_validate_with_the_real_tools() {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/deploy/validate.sh"))
        .output()
        .expect("validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("kubernetes-validate: deploy/k8s/*.yaml are valid"));
}

/// This process's memory cgroup folder to make a child in, and the name of its limit file: the
/// first of the files the node itself reads the limit from (`memory_fit::limit_files`) whose
/// folder is there.
fn own_memory_cgroup() -> Result<(std::path::PathBuf, String), String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    rcluster_domain::memory_fit::limit_files(&own)
        .iter()
        .map(Path::new)
        .find(|f| f.exists() || f.with_file_name("cgroup.procs").exists())
        .and_then(|f| {
            Some((
                f.parent()?.to_path_buf(),
                f.file_name()?.to_str()?.to_owned(),
            ))
        })
        .ok_or_else(|| "no writable memory cgroup".into())
}

/// A child memory cgroup with a limit, removed on drop.
struct Cgroup(std::path::PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Starts a one-node cluster whose config asks `redis_maxmemory_mb` inside `cgroup` (the node
/// enters it before it starts, as a container's process does); returns Redis's `maxmemory` and
/// the node's log.
fn maxmemory_in(cgroup: &Path, asked_mb: u64) -> (String, String) {
    let cluster = rcluster_tests::nodes::NodeCluster::configure(
        "cgroup",
        1,
        &format!("redis_maxmemory_mb: {asked_mb}\n"),
    );
    let log_path = cluster.dir.path().join("node.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec \"$0\" node --config \"$1\" --id n1",
            cgroup.display()
        ))
        .arg(rcluster_tests::rcluster_bin())
        .arg(cluster.config_path())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("node");
    let port = cluster.redis_ports[0];
    let maxmemory = rcluster_tests::wait_for(
        "the node's Redis",
        std::time::Duration::from_secs(60),
        || {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
            let mut conn = client.get_connection().ok()?;
            let pair: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory")
                .query(&mut conn)
                .ok()?;
            pair.get(1).cloned()
        },
    );
    // The node (the shell exec'd into it) and its Redis.
    let redis = rcluster_tests::nodes::descendants(child.id());
    let _ = child.kill();
    for pid in redis {
        // SAFETY: kill sends a signal; no memory is touched.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    let _ = child.wait();
    (
        maxmemory,
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}

#[test]
fn a_node_in_a_memory_limited_cgroup_fits_redis_into_it() {
    let (parent, limit_file) = match own_memory_cgroup() {
        Ok(found) => found,
        Err(why) => {
            eprintln!("SKIPPED a_node_in_a_memory_limited_cgroup...: {why}");
            return;
        }
    };
    let dir = parent.join(format!("rcluster-test-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&dir) {
        eprintln!(
            "SKIPPED a_node_in_a_memory_limited_cgroup...: cannot make {}: {e}",
            dir.display()
        );
        return;
    }
    let cgroup = Cgroup(dir);
    // 200 MB (the kernel rounds to pages): 190 MiB, so Redis may take 95 MiB.
    std::fs::write(cgroup.0.join(&limit_file), "200000000").expect("set the limit");
    let (maxmemory, log) = maxmemory_in(&cgroup.0, 512);
    assert_eq!(maxmemory, (95u64 << 20).to_string(), "{log}");
    assert!(
        log.contains("memory limit 190 MiB: redis_maxmemory_mb 512 -> 95"),
        "{log}"
    );
    // What already fits stays as configured.
    let (maxmemory, log) = maxmemory_in(&cgroup.0, 64);
    assert_eq!(maxmemory, (64u64 << 20).to_string(), "{log}");
}
