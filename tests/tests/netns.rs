//! Nodes on separate hosts: each node in its own network namespace with its own IP address (veth
//! pairs on a bridge), started exactly as docker-compose.yml starts a container (the environment
//! `docker-compose config` resolves, the image layout of deploy/layout.sh, names resolved like
//! Compose's service names), with the security rules of a real deployment (own keys, Redis
//! password, cluster secret). Quorum reads and writes, a file transfer, a Raft election, a member
//! change, then a real partition cut with `nft` drop rules: the minority answers NOQUORUM, the
//! majority keeps serving, and after the cut is removed nothing acknowledged is lost; then the
//! same partition injected through the failure-injection API, with the same outcome. Every
//! namespace, link and process it made is removed, also when it fails. Needs root, `ip`, `nft`
//! and `docker-compose` (./rc.sh test installs them); where namespaces cannot be created it says
//! so loudly and passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcluster_tests::nodes::descendants;
use rcluster_tests::{pseudo_random, repo_root, target_dir, wait_for, TempDir};
use sha2::{Digest, Sha256};

const ADMIN_KEY: &str = "netns-admin-key-0123456789";
const READ_KEY: &str = "netns-read-key-0123456789";
const REDIS_PASSWORD: &str = "netns-redis-password";
const SECRET: &str = "netns-cluster-secret-0123456789abcdef0123456789";
const LONG: Duration = Duration::from_secs(90);

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// The namespaces, the bridge and the processes of one run; dropping it removes them all.
struct Lab {
    tag: String,
    subnet: String,
    bridge: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    /// The node logs, printed when the test fails.
    logs: Vec<PathBuf>,
}

impl Lab {
    /// Makes the bridge (with the test's own address .254) or says why it cannot.
    fn new() -> Result<Lab, String> {
        let pid = std::process::id();
        let tag = format!("rc{}", pid % 100_000);
        let subnet = format!("10.{}.{}", 200 + pid % 50, (pid / 50) % 250);
        let probe = format!("{tag}probe");
        let made = Command::new("ip").args(["netns", "add", &probe]).output();
        match made {
            Ok(out) if out.status.success() => {
                let _ = Command::new("ip").args(["netns", "del", &probe]).output();
            }
            Ok(out) => return Err(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            Err(e) => return Err(format!("cannot run ip: {e}")),
        }
        let lab = Lab {
            bridge: format!("{tag}br"),
            tag,
            subnet,
            namespaces: Vec::new(),
            children: Vec::new(),
            logs: Vec::new(),
        };
        ip(&["link", "add", &lab.bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.254/24", lab.subnet),
            "dev",
            &lab.bridge,
        ]);
        ip(&["link", "set", &lab.bridge, "up"]);
        Ok(lab)
    }

    fn ns(&self, node: &str) -> String {
        format!("{}{node}", self.tag)
    }

    fn addr(&self, index: usize) -> String {
        format!("{}.{}", self.subnet, index + 1)
    }

    /// A namespace for `node` with address .index+1 on the bridge, and a hosts file that
    /// resolves `names` (what Compose's DNS does for service names).
    fn add_host(&mut self, node: &str, index: usize, names: &[&str]) {
        let ns = self.ns(node);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        let outside = format!("{}v{index}", self.tag);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["link", "set", &outside, "master", &self.bridge]);
        ip(&["link", "set", &outside, "up"]);
        let addr = format!("{}/24", self.addr(index));
        for args in [
            vec!["addr", "add", &addr, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", &ns, "ip"];
            full.extend(args);
            ip(&full);
        }
        let dir = PathBuf::from("/etc/netns").join(&ns);
        std::fs::create_dir_all(&dir).expect("/etc/netns");
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (i, name) in names.iter().enumerate() {
            hosts.push_str(&format!("{} {name}\n", self.addr(i)));
        }
        std::fs::write(dir.join("hosts"), hosts).expect("hosts");
    }

    /// Runs `program` inside `node`'s namespace with exactly `env` (and PATH).
    fn spawn(&mut self, node: &str, program: &Path, env: &BTreeMap<String, String>, log: &Path) {
        self.logs.push(log.to_path_buf());
        let log = std::fs::File::create(log).expect("log");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(node)])
            .arg(program)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        self.children.push(cmd.spawn().expect("spawn in namespace"));
    }

    /// Every process in `node`'s namespace, SIGKILLed (a host dying).
    fn kill_host(&self, node: &str) {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(node)])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill sends a signal; no memory is touched.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        wait_for(&format!("{node}'s processes gone"), LONG, || {
            let out = Command::new("ip")
                .args(["netns", "pids", &self.ns(node)])
                .output()
                .ok()?;
            out.stdout.iter().all(u8::is_ascii_whitespace).then_some(())
        });
    }

    /// `nft` in `node`'s namespace, reading `script`.
    fn nft(&self, node: &str, script: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("nft script");
        let out = child.wait_with_output().expect("nft output");
        assert!(
            out.status.success(),
            "nft failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in &self.logs {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(25)..].join("\n");
                eprintln!("--- {} (last lines) ---\n{tail}", log.display());
            }
        }
        for ns in self.namespaces.clone() {
            let out = Command::new("ip").args(["netns", "pids", &ns]).output();
            if let Ok(out) = out {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        // SAFETY: kill sends a signal; no memory is touched.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        for child in &mut self.children {
            for pid in descendants(child.id()) {
                // SAFETY: as above.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// The environment docker-compose.yml gives each node service, as `docker-compose config`
/// resolves it (with this test's secrets in the variables it requires).
fn compose_environment() -> BTreeMap<String, BTreeMap<String, String>> {
    let out = run(Command::new("docker-compose")
        .current_dir(repo_root())
        .args(["-f", "docker-compose.yml", "config"])
        .env("RCLUSTER_ADMIN_KEY", ADMIN_KEY)
        .env("RCLUSTER_READ_KEY", READ_KEY)
        .env("RCLUSTER_REDIS_PASSWORD", REDIS_PASSWORD));
    let doc: serde_norway::Value = serde_norway::from_slice(&out.stdout).expect("compose yaml");
    let services = doc["services"].as_mapping().expect("services");
    let mut nodes = BTreeMap::new();
    for (name, service) in services {
        let name = name.as_str().expect("service name").to_string();
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        if !env.contains_key("RCLUSTER_NODE_ID") {
            continue;
        }
        assert_eq!(
            service["hostname"].as_str(),
            Some(name.as_str()),
            "a node's hostname is its service name"
        );
        let env = env
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_norway::Value::String(s) => s.clone(),
                    serde_norway::Value::Null => String::new(),
                    other => serde_norway::to_string(other)
                        .expect("value")
                        .trim()
                        .to_string(),
                };
                (k.as_str().expect("key").to_string(), v)
            })
            .collect();
        nodes.insert(name, env);
    }
    nodes
}

fn curl(args: &[&str]) -> (u16, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split + 1..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    (status, body)
}

fn api(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
    let url = format!("http://{addr}:8080{path}");
    let auth = format!("Authorization: Bearer {ADMIN_KEY}");
    let mut args = vec!["-X", method, "-H", &auth, &url];
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let (status, bytes) = curl(&args);
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn redis_conn(addr: &str) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://:{REDIS_PASSWORD}@{addr}:6379/")).ok()?;
    client
        .get_connection_with_timeout(Duration::from_secs(3))
        .ok()
}

fn rc(addr: &str, args: &[&str]) -> Result<String, String> {
    let mut conn = redis_conn(addr).ok_or("no connection")?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(&mut conn) {
        Ok(redis::Value::Okay) => Ok("OK".into()),
        Ok(redis::Value::BulkString(b)) => Ok(String::from_utf8_lossy(&b).into()),
        Ok(redis::Value::SimpleString(s)) => Ok(s),
        Ok(redis::Value::Nil) => Ok("(nil)".into()),
        Ok(other) => Ok(format!("{other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A field of `INFO rcluster` on the node at `addr`.
fn info_field(addr: &str, field: &str) -> Option<String> {
    let mut conn = redis_conn(addr)?;
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut conn).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
}

fn leader_seen_by(addr: &str) -> Option<String> {
    let (status, view) = api(addr, "GET", "/api/cluster", None);
    (status == 200)
        .then(|| view["raft"]["leader"].as_str().map(str::to_string))
        .flatten()
}

#[test]
fn nodes_on_separate_hosts_replicate_elect_and_survive_a_real_partition() {
    // Made before the lab, so it is removed after the lab printed the logs it holds.
    let tmp = TempDir::new("netns");
    let mut lab = match Lab::new() {
        Ok(lab) => lab,
        Err(why) => {
            eprintln!(
                "SKIPPED nodes_on_separate_hosts...: network namespaces cannot be created here \
                 ({why}); this test needs root and iproute2"
            );
            return;
        }
    };
    for tool in ["nft", "docker-compose", "curl"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is missing: ./rc.sh test installs it (nftables, docker-compose, curl)"
        );
    }
    let services = compose_environment();
    let ids: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        ["n1", "n2", "n3"],
        "docker-compose.yml's node services"
    );
    let all_names = ["n1", "n2", "n3", "n4"];
    let bin = target_dir();
    let roots: Vec<PathBuf> = all_names.iter().map(|n| tmp.path().join(n)).collect();
    for (i, name) in all_names.iter().enumerate() {
        lab.add_host(name, i, &all_names);
        // The image's layout, with this build's binaries.
        run(Command::new("bash")
            .arg(repo_root().join("deploy/layout.sh"))
            .arg(&roots[i])
            .arg(&bin));
        let secret = roots[i].join("run/secrets/cluster_secret");
        std::fs::write(&secret, SECRET).expect("secret");
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod secret");
    }
    let entry = |i: usize| roots[i].join("usr/local/bin/rcluster-entrypoint");
    let start = |lab: &mut Lab, i: usize, env: &BTreeMap<String, String>| {
        let log = tmp.path().join(format!("{}.log", all_names[i]));
        lab.spawn(all_names[i], &entry(i), env, &log);
    };
    for (i, name) in ids.iter().enumerate() {
        start(&mut lab, i, &services[*name]);
    }
    let addrs: Vec<String> = (0..4).map(|i| lab.addr(i)).collect();
    let leader = wait_for("a leader seen by all three hosts", LONG, || {
        let seen: Vec<Option<String>> = addrs[..3].iter().map(|a| leader_seen_by(a)).collect();
        let first = seen[0].clone()?;
        seen.iter()
            .all(|s| s.as_deref() == Some(&first))
            .then_some(first)
    });

    // Security beyond loopback: the development key is refused, a wrong Redis password too.
    let dev = "Authorization: Bearer dev-admin-key-change-me";
    let url = format!("http://{}:8080/api/cluster", addrs[0]);
    assert_eq!(curl(&["-H", dev, &url]).0, 401, "development keys refused");
    assert!(redis::Client::open(format!("redis://{}:6379/", addrs[0]))
        .expect("url")
        .get_connection_with_timeout(Duration::from_secs(3))
        .and_then(|mut c| redis::cmd("RC.GET").arg("x").query::<redis::Value>(&mut c))
        .is_err());

    // Quorum writes and reads across hosts.
    for i in 0..20 {
        let key = format!("k{i}");
        let value = format!("v{i}");
        wait_for("a quorum write", LONG, || {
            rc(&addrs[i % 3], &["RC.SET", &key, &value]).ok()
        });
        assert_eq!(
            rc(&addrs[(i + 1) % 3], &["RC.GET", &key]).as_deref(),
            Ok(value.as_str())
        );
    }

    // A file crosses hosts: uploaded to n1, downloaded from n3, byte-identical.
    let data = pseudo_random(3 << 20, 7);
    let file = tmp.path().join("upload.bin");
    std::fs::write(&file, &data).expect("file");
    let auth = format!("Authorization: Bearer {ADMIN_KEY}");
    let upload = format!("@{}", file.display());
    let (status, body) = curl(&[
        "-H",
        &auth,
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &upload,
        &format!("http://{}:8080/api/files?name=upload.bin", addrs[0]),
    ]);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = serde_json::from_slice::<serde_json::Value>(&body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, got) = curl(&[
        "-H",
        &auth,
        &format!("http://{}:8080/api/files/{id}/content", addrs[2]),
    ]);
    assert_eq!(status, 200);
    assert_eq!(
        Sha256::digest(&got),
        Sha256::digest(&data),
        "file identical"
    );

    // A member change: n4 on a fourth host joins, then leaves.
    let mut n4_env = services["n3"].clone();
    n4_env.insert("RCLUSTER_NODE_ID".into(), "n4".into());
    n4_env.insert(
        "RCLUSTER_NODE_ARGS".into(),
        "--host n4 --redis-port 6379 --http-port 8080 --peer-port 7379".into(),
    );
    start(&mut lab, 3, &n4_env);
    wait_for("n4's API", LONG, || {
        (curl(&[&format!("http://{}:8080/api/health", addrs[3])]).0 == 200).then_some(())
    });
    let (status, answer) = api(
        &addrs[0],
        "POST",
        "/api/nodes",
        Some(r#"{"id":"n4","host":"n4","redis_port":6379,"http_port":8080,"peer_port":7379}"#),
    );
    assert_eq!(status, 200, "add n4: {answer}");
    let is_member = |addr: &str, id: &str| {
        let (_, nodes) = api(addr, "GET", "/api/nodes", None);
        nodes["nodes"]
            .as_array()
            .is_some_and(|ns| ns.iter().any(|n| n["id"] == id))
    };
    wait_for("n4 a member on n2", LONG, || {
        is_member(&addrs[1], "n4").then_some(())
    });
    let (status, answer) = api(&addrs[0], "DELETE", "/api/nodes/n4", None);
    assert_eq!(status, 200, "remove n4: {answer}");
    wait_for("n4 gone on n3", LONG, || {
        (!is_member(&addrs[2], "n4")).then_some(())
    });
    // The change is over once every node's module ended its transition (until then a write
    // needs its quorum among the old owners too, n4 among them).
    wait_for("every node's transition ended", LONG, || {
        addrs[..3]
            .iter()
            .all(|a| info_field(a, "rcluster_transition_open").as_deref() == Some("0"))
            .then_some(())
    });
    lab.kill_host("n4");
    for i in 0..20 {
        let key = format!("k{i}");
        assert_eq!(
            rc(&addrs[i % 3], &["RC.GET", &key]).as_deref(),
            Ok(format!("v{i}").as_str()),
            "after n4 came and went"
        );
    }

    // A Raft election across hosts: the leader's host dies, the other two elect a new leader.
    let li = ids
        .iter()
        .position(|n| *n == leader)
        .expect("leader is a node");
    lab.kill_host(&leader);
    let others: Vec<usize> = (0..3).filter(|i| *i != li).collect();
    let new_leader = wait_for("a new leader among the survivors", LONG, || {
        let a = leader_seen_by(&addrs[others[0]])?;
        let b = leader_seen_by(&addrs[others[1]])?;
        (a == b && a != leader).then_some(a)
    });
    start(&mut lab, li, &services[leader.as_str()]);
    wait_for("the old leader back, following", LONG, || {
        (leader_seen_by(&addrs[li])? == new_leader).then_some(())
    });

    // The restarted node replayed the member changes; let every module end its transition
    // before the cut (a transition still open when a member becomes unreachable keeps the old
    // owners, n4 among them, in every write's quorum until it times out: docs/decisions.md).
    wait_for(
        "every node's transition ended after the restart",
        LONG,
        || {
            addrs[..3]
                .iter()
                .all(|a| info_field(a, "rcluster_transition_open").as_deref() == Some("0"))
                .then_some(())
        },
    );

    // A real partition: nft drop rules cut n3's host from n1 and n2 (the test's own address,
    // .254, still reaches it, as a client on the same network would).
    let (a, b) = (&addrs[0], &addrs[1]);
    lab.nft(
        "n3",
        &format!(
            "table inet rcpart {{\n\
             chain input {{ type filter hook input priority 0; ip saddr {{ {a}, {b} }} drop; }}\n\
             chain output {{ type filter hook output priority 0; ip daddr {{ {a}, {b} }} drop; }}\n\
             }}\n"
        ),
    );
    let minority = wait_for("the minority answers NOQUORUM", LONG, || {
        match rc(&addrs[2], &["RC.SET", "cut-minority", "x"]) {
            Err(e) if e.contains("NOQUORUM") => Some(e),
            _ => None,
        }
    });
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..20 {
        let key = format!("during-cut-{i}");
        match rc(&addrs[i % 2], &["RC.SET", &key, "majority"]) {
            Ok(_) => acked.push(key),
            Err(e) => refused.push(format!("{key}: {e}")),
        }
    }
    let state: Vec<String> = addrs[..3]
        .iter()
        .map(|a| {
            format!(
                "{a}: epoch {:?} transition_open {:?}",
                info_field(a, "rcluster_topology_epoch"),
                info_field(a, "rcluster_transition_open")
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "the majority keeps serving writes: {refused:#?}; leader was {leader}, now \
         {new_leader}; {state:#?}"
    );
    wait_for("a leader on the majority side", LONG, || {
        let l = leader_seen_by(&addrs[0])?;
        (l != "n3" && leader_seen_by(&addrs[1]).as_deref() == Some(l.as_str())).then_some(())
    });
    lab.nft("n3", "delete table inet rcpart\n");
    // Healed: every acknowledged write is read back through every host, the minority included.
    for key in &acked {
        for addr in &addrs[..3] {
            wait_for(
                "an acknowledged write read back after healing",
                LONG,
                || (rc(addr, &["RC.GET", key]).ok()? == "majority").then_some(()),
            );
        }
    }
    for i in 0..20 {
        assert_eq!(
            rc(&addrs[2], &["RC.GET", &format!("k{i}")]).as_deref(),
            Ok(format!("v{i}").as_str())
        );
    }
    // The same partition injected (the failure-injection API) instead of cut by nft: the same
    // observable behaviour.
    let (status, fault) = api(
        &addrs[0],
        "POST",
        "/api/faults",
        Some(r#"{"kind":"partition","groups":[["n1","n2"],["n3"]],"ttl_ms":120000}"#),
    );
    assert_eq!(status, 201, "inject: {fault}");
    let injected_minority = wait_for("the injected minority answers NOQUORUM", LONG, || match rc(
        &addrs[2],
        &["RC.SET", "injected-minority", "x"],
    ) {
        Err(e) if e.contains("NOQUORUM") => Some(e),
        _ => None,
    });
    let mut injected_acked = Vec::new();
    for i in 0..20 {
        let key = format!("during-injected-{i}");
        match rc(&addrs[i % 2], &["RC.SET", &key, "majority"]) {
            Ok(_) => injected_acked.push(key),
            Err(e) => panic!("the majority keeps serving writes under the injected cut: {e}"),
        }
    }
    wait_for("a leader on the majority side (injected)", LONG, || {
        let l = leader_seen_by(&addrs[0])?;
        (l != "n3" && leader_seen_by(&addrs[1]).as_deref() == Some(l.as_str())).then_some(())
    });
    let (status, cleared) = api(&addrs[0], "DELETE", "/api/faults", None);
    assert_eq!(status, 200, "reset: {cleared}");
    for key in &injected_acked {
        for addr in &addrs[..3] {
            wait_for(
                "an acknowledged write read back after the injected cut",
                LONG,
                || (rc(addr, &["RC.GET", key]).ok()? == "majority").then_some(()),
            );
        }
    }
    eprintln!(
        "separate hosts: leader {leader} -> {new_leader}; the nft-cut minority said {minority:?}, \
         the injected one {injected_minority:?}; {} and {} writes acknowledged by the majority \
         during the two cuts, all read back on every host",
        acked.len(),
        injected_acked.len()
    );
}
