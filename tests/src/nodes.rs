//! A real local cluster started with `rcluster up` from a generated config on free ports: node
//! processes, their redis-servers, their HTTP APIs. Helpers to call the API, find the processes,
//! signal them, and stop everything checking that nothing is left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::{free_port, module_path, rcluster_bin, repo_root, wait_for, TempDir};

/// The dev keys of the default config (the generated config keeps the defaults).
pub const ADMIN_KEY: &str = "dev-admin-key-change-me";
pub const READ_KEY: &str = "dev-read-key-change-me";

pub struct NodeCluster {
    pub dir: TempDir,
    pub ids: Vec<String>,
    pub redis_ports: Vec<u16>,
    pub http_ports: Vec<u16>,
    pub peer_ports: Vec<u16>,
    pub up: Option<Child>,
    pub output: Option<mpsc::Receiver<String>>,
    /// Node processes started by the test itself ([`NodeCluster::restart_node`]).
    pub extra: Vec<Child>,
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Http {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Http {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl NodeCluster {
    /// Writes a config for `count` nodes (plus `extra_yaml` top-level settings) without starting.
    pub fn configure(tag: &str, count: usize, extra_yaml: &str) -> NodeCluster {
        let dir = TempDir::new(tag);
        let mut nodes = String::new();
        let mut c = NodeCluster {
            dir,
            ids: Vec::new(),
            redis_ports: Vec::new(),
            http_ports: Vec::new(),
            peer_ports: Vec::new(),
            up: None,
            output: None,
            extra: Vec::new(),
        };
        for i in 1..=count {
            let (r, h, p) = (free_port(), free_port(), free_port());
            c.ids.push(format!("n{i}"));
            c.redis_ports.push(r);
            c.http_ports.push(h);
            c.peer_ports.push(p);
            nodes.push_str(&format!(
                "  - {{ id: n{i}, redis_port: {r}, http_port: {h}, peer_port: {p} }}\n"
            ));
        }
        let quorum = if count < 3 {
            format!("quorum: {{n: {count}, w: 1, r: 1}}\n")
        } else {
            String::new()
        };
        let memory = if extra_yaml.contains("redis_maxmemory_mb") {
            ""
        } else {
            "redis_maxmemory_mb: 64\n"
        };
        let yaml = format!(
            "cluster_name: test\ndata_dir: data\nredis_conf: {}\n{memory}{quorum}{extra_yaml}\nnodes:\n{nodes}",
            repo_root().join("redis.conf").display()
        );
        std::fs::write(c.config_path(), yaml).expect("write config");
        c
    }

    /// Reserves ports for one more node (`n<count+1>`, not in the config: it joins later);
    /// returns its index.
    pub fn reserve_node(&mut self) -> usize {
        let i = self.ids.len();
        self.ids.push(format!("n{}", i + 1));
        self.redis_ports.push(free_port());
        self.http_ports.push(free_port());
        self.peer_ports.push(free_port());
        i
    }

    /// Configures and starts the cluster; returns once `rcluster up` says it is ready.
    pub fn start(tag: &str, count: usize, extra_yaml: &str) -> NodeCluster {
        let mut c = NodeCluster::configure(tag, count, extra_yaml);
        c.launch(&[]);
        c
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cluster.yaml")
    }

    /// Starts `rcluster up` (with `extra` arguments) and waits for "cluster ready".
    pub fn launch(&mut self, extra: &[&str]) {
        let mut child = Command::new(rcluster_bin())
            .arg("up")
            .arg("--config")
            .arg(self.config_path())
            .arg("--module")
            .arg(module_path())
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rcluster up");
        let (tx, rx) = mpsc::channel();
        let streams: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.contains("cluster ready") => break,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "rcluster up never became ready ({e}); output:\n{}",
                    seen.join("\n")
                ),
            }
        }
        self.up = Some(child);
        self.output = Some(rx);
    }

    /// An HTTP request to node `i`'s API.
    pub fn http(&self, i: usize, method: &str, path: &str, key: Option<&str>) -> Http {
        http(self.http_ports[i], method, path, key)
    }

    pub fn redis(&self, i: usize) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.redis_ports[i]))
            .expect("url")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("connect to a node's redis")
    }

    /// Node `i`'s redis-server pid, from its health endpoint.
    pub fn redis_pid(&self, i: usize) -> u32 {
        let pid = self.http(i, "GET", "/api/health", None).json()["redis_pid"].as_u64();
        u32::try_from(pid.expect("redis is running")).expect("pid fits")
    }

    /// Node `i`'s node-process pid: the `rcluster node` whose command line names this cluster's
    /// config and the node's id (started by `rcluster up` or by [`NodeCluster::restart_node`]).
    pub fn node_pid(&self, i: usize) -> u32 {
        self.find_node_pid(i).expect("node process found")
    }

    fn find_node_pid(&self, i: usize) -> Option<u32> {
        let config = self.config_path().display().to_string();
        let id = &self.ids[i];
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
                let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
                let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                let is_node = args.iter().any(|a| *a == b"node")
                    && args.contains(&config.as_bytes())
                    && args
                        .windows(2)
                        .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
                (is_node && alive(pid)).then_some(pid)
            })
    }

    /// SIGKILLs node `i`'s node process and its redis-server at once (a machine dying).
    pub fn kill_node(&mut self, i: usize) {
        let node = self.node_pid(i);
        let mut victims = descendants(node);
        victims.push(node);
        for pid in &victims {
            // SAFETY: kill(2) on processes of this test's cluster.
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
        wait_for(
            "the killed node to be gone",
            Duration::from_secs(10),
            || victims.iter().all(|p| !alive(*p)).then_some(()),
        );
    }

    /// Starts node `i` again on its own (a child of the test, stopped on drop) and waits until
    /// its API answers.
    pub fn restart_node(&mut self, i: usize) {
        let child = Command::new(rcluster_bin())
            .arg("node")
            .arg("--config")
            .arg(self.config_path())
            .args(["--id", &self.ids[i]])
            .arg("--module")
            .arg(module_path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rcluster node");
        self.extra.push(child);
        let port = self.http_ports[i];
        wait_for(
            "the restarted node to answer",
            Duration::from_secs(30),
            || http_try(port, "GET", "/api/health", None).filter(|h| h.status == 200),
        );
    }

    /// Collects the JSON events published on `cluster:events` of node `i`'s Redis (subscribed
    /// when this returns).
    pub fn subscribe_events(&self, i: usize) -> mpsc::Receiver<serde_json::Value> {
        let mut conn = self.redis(i);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pubsub = conn.as_pubsub();
            pubsub.subscribe("cluster:events").expect("subscribe");
            let _ = ready_tx.send(());
            while let Ok(msg) = pubsub.get_message() {
                let payload: String = msg.get_payload().unwrap_or_default();
                if let Ok(v) = serde_json::from_str(&payload) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("subscribed");
        rx
    }

    /// `/api/cluster` of node `i`, if it answers.
    pub fn cluster_view(&self, i: usize) -> Option<serde_json::Value> {
        let h = http_try(self.http_ports[i], "GET", "/api/cluster", Some(READ_KEY))?;
        serde_json::from_str(&h.body).ok()
    }

    /// The Raft leader that every node in `among` reports (the same one), once they agree.
    pub fn await_leader(&self, among: &[usize], timeout: Duration) -> String {
        wait_for("the nodes to agree on a Raft leader", timeout, || {
            let leaders: Vec<Option<String>> = among
                .iter()
                .map(|i| {
                    self.cluster_view(*i)?["raft"]["leader"]
                        .as_str()
                        .map(str::to_string)
                })
                .collect();
            let first = leaders.first()?.clone()?;
            leaders
                .iter()
                .all(|l| l.as_deref() == Some(first.as_str()))
                .then_some(first)
        })
    }

    /// A view of the cluster (`/api/nodes`) as node `i` sees it.
    pub fn nodes_seen_by(&self, i: usize) -> serde_json::Value {
        self.http(i, "GET", "/api/nodes", Some(READ_KEY)).json()
    }

    /// The state node `observer` reports for node `node`.
    pub fn state_seen(&self, observer: usize, node: usize) -> Option<String> {
        let view = http_try(
            self.http_ports[observer],
            "GET",
            "/api/nodes",
            Some(READ_KEY),
        )?;
        let json: serde_json::Value = serde_json::from_str(&view.body).ok()?;
        json["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == self.ids[node].as_str())
            .and_then(|n| n["state"].as_str())
            .map(str::to_string)
    }

    /// Waits until `observer` reports `node` in `state`.
    pub fn await_state(&self, observer: usize, node: usize, state: &str, timeout: Duration) {
        wait_for(
            &format!("{} to see {} {state}", self.ids[observer], self.ids[node]),
            timeout,
            || (self.state_seen(observer, node).as_deref() == Some(state)).then_some(()),
        );
    }

    /// Waits until every node sees every node alive (quorums of all nodes need all of them).
    pub fn await_all_alive(&self, timeout: Duration) {
        for observer in 0..self.ids.len() {
            for node in 0..self.ids.len() {
                self.await_state(observer, node, "alive", timeout);
            }
        }
    }

    /// `curl` (a real HTTP client, not ours) against node `i`'s API with `key`, sending `body`
    /// as JSON: (status, body); status 0 when curl got no answer.
    pub fn curl(
        &self,
        i: usize,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.http_ports[i]);
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "-X", method, "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {key}"))
            .args(["--max-time", "20"]);
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let out = cmd.arg(url).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Stops `rcluster up` with `signal` and checks that every process it started is gone.
    pub fn stop(&mut self, signal: i32) -> ExitStatus {
        let mut up = self.up.take().expect("running");
        let children = descendants(up.id());
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(up.id() as i32, signal) };
        let status = wait_for("rcluster up to exit", Duration::from_secs(60), || {
            up.try_wait().expect("wait")
        });
        let left: Vec<u32> = children.into_iter().filter(|p| alive(*p)).collect();
        assert!(left.is_empty(), "processes left behind: {left:?}");
        status
    }
}

impl Drop for NodeCluster {
    fn drop(&mut self) {
        // Nodes `rcluster node add` started leave a pid file in their data folder.
        for id in &self.ids {
            let pid_file = self.dir.path().join("data").join(id).join("node.pid");
            let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let mut pids = descendants(pid);
            pids.push(pid);
            for pid in pids {
                // SAFETY: kill(2) on processes this test's cluster started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        for mut child in self.extra.drain(..) {
            let mut pids = descendants(child.id());
            pids.push(child.id());
            for pid in pids {
                // SAFETY: kill(2) on processes this test started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            let _ = child.wait();
        }
        if let Some(mut up) = self.up.take() {
            let children = descendants(up.id());
            for pid in children.iter().chain(std::iter::once(&up.id())) {
                // SAFETY: kill(2) on processes this test started; continue stopped ones first.
                unsafe {
                    libc::kill(*pid as i32, libc::SIGCONT);
                    libc::kill(*pid as i32, libc::SIGKILL);
                }
            }
            let _ = up.wait();
        }
    }
}

/// Every process whose parent chain leads to `root`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name: state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid: u32 = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        parent_of.push((pid, ppid));
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Whether `pid` runs (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A plain HTTP/1.1 request on loopback; `None` when nothing answered.
pub fn http_try(port: u16, method: &str, path: &str, key: Option<&str>) -> Option<Http> {
    http_body(port, method, path, key, None)
}

/// Like [`http_try`], sending `json` as the body.
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    json: &str,
) -> Option<Http> {
    http_body(port, method, path, key, Some(json))
}

fn http_body(
    port: u16,
    method: &str,
    path: &str,
    key: Option<&str>,
    json: Option<&str>,
) -> Option<Http> {
    let mut s = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let body = json.unwrap_or_default();
    let len = match (method, json) {
        ("GET", None) => String::new(),
        (_, None) => "Content-Length: 0\r\n".to_string(),
        (_, Some(b)) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{len}Connection: close\r\n\r\n{body}"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some(Http {
        status,
        headers: head.to_string(),
        body: body.to_string(),
    })
}

/// Like [`http_try`], failing the test when nothing answers.
pub fn http(port: u16, method: &str, path: &str, key: Option<&str>) -> Http {
    http_try(port, method, path, key)
        .unwrap_or_else(|| panic!("nothing answered {method} {path} on port {port}"))
}

/// A raw HTTP request with a body and extra headers; returns status, head and body bytes.
pub fn http_raw(
    port: u16,
    method: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send");
    // The server may answer (and close) before the whole body is sent, e.g. with 413: the
    // answer is what counts.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&out[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, out[split + 4..].to_vec())
}

/// Waits (at most `within`) for an event of type `kind` (`node_state`, `redis_state`) about `node`
/// turning `to`, from [`NodeCluster::subscribe_events`]; returns it.
pub fn await_event(
    events: &mpsc::Receiver<serde_json::Value>,
    kind: &str,
    node: &str,
    to: &str,
    within: Duration,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let e = events
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} event saying {node} became {to}"));
        if e["type"] == kind && e["node"] == node && e["to"] == to {
            return e;
        }
    }
}

/// Uploads `body` as file `name` through node `node`; returns the file's metadata.
pub fn upload(cluster: &NodeCluster, node: usize, name: &str, body: &[u8]) -> serde_json::Value {
    let (status, _, reply) = http_raw(
        cluster.http_ports[node],
        "POST",
        &format!("/api/files?name={name}"),
        ADMIN_KEY,
        &[],
        body,
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&reply));
    serde_json::from_slice(&reply).expect("upload answer is JSON")
}

/// Downloads file `id` through node `node`, optionally a `Range`.
pub fn download(
    cluster: &NodeCluster,
    node: usize,
    id: &str,
    range: Option<&str>,
) -> (u16, String, Vec<u8>) {
    let headers: Vec<(&str, &str)> = range.map(|r| vec![("Range", r)]).unwrap_or_default();
    http_raw(
        cluster.http_ports[node],
        "GET",
        &format!("/api/files/{id}/content"),
        READ_KEY,
        &headers,
        b"",
    )
}

/// `text` as JSON, failing the test (showing the text) when it is not.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs the `rcluster` binary with `args` and returns (exit code, stdout, stderr).
pub fn rcluster(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(rcluster_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run rcluster");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
