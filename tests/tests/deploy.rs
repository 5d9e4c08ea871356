//! The deployment files agree with each other and with the node: the Kubernetes ConfigMap's
//! cluster.yaml and the Compose image's config/docker/cluster.yaml both load with the node's own
//! loader and differ only in names; the StatefulSet's pod names, ports, environment and mounts
//! give each pod the configuration the namespace test (tests/tests/netns.rs) runs; the
//! entrypoint refuses placeholder secrets; and tests/deploy/validate.sh (docker-compose config,
//! kubernetes-validate) passes.

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
