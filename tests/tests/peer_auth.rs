//! Peers prove membership (real node processes): forged, replayed, stale and strangers' Raft
//! frames and heartbeats are refused and counted in `/metrics`, and change nothing: the leader
//! keeps its term, a killed node stays down; a 16 MiB length prefix allocates nothing and closes
//! the connection; a same-term AppendEntries from a member (sealed with the right key) is refused
//! by the Raft core instead of stopping Raft on the leader.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcluster_domain::peer_auth::{seal, Channel, Header, PeerKey};
use rcluster_raft::{Message, MessageBody};
use rcluster_tests::nodes::{http_json, NodeCluster, ADMIN_KEY};
use rcluster_tests::wait_for;

const WRONG_SECRET: &str = "not-this-clusters-secret-0123456789abcdef";

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_millis()).expect("fits")
}

/// The secret every node of the cluster generated into (and read from) its data folder.
fn key(cluster: &NodeCluster) -> PeerKey {
    let path = cluster.dir.path().join("data").join("cluster.secret");
    let text = std::fs::read_to_string(&path).expect("the nodes wrote the cluster secret");
    PeerKey::from_secret(&text).expect("a valid secret")
}

fn header(channel: Channel, from: &str, to: &str, timestamp_ms: u64, seq: u64) -> Header {
    Header {
        channel,
        from: from.into(),
        to: to.into(),
        timestamp_ms,
        seq,
    }
}

/// A sequence number above anything a node that started before now has used.
fn fresh_seq() -> u64 {
    now_ms() * 1000 + 999
}

/// The Raft leader's id and index once every node agrees, and a follower's index.
fn leader_and_follower(cluster: &NodeCluster) -> (String, usize, usize) {
    let leader = cluster.await_leader(&[0, 1, 2], Duration::from_secs(15));
    let l = cluster
        .ids
        .iter()
        .position(|id| *id == leader)
        .expect("a node");
    (leader, l, (l + 1) % 3)
}

/// An empty AppendEntries: what a leader of `term` sends as its heartbeat.
fn heartbeat_of_a_leader(from: &str, to: &str, term: u64) -> Message {
    Message {
        from: from.into(),
        to: to.into(),
        term,
        body: MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![],
            leader_commit: 0,
        },
    }
}

/// The Raft wire envelope around `message`, as a node sends it (before sealing).
fn envelope(cluster: &NodeCluster, from: usize, message: &Message) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "host": "127.0.0.1",
        "port": cluster.peer_ports[from],
        "message": message,
    }))
    .expect("json")
}

/// Sends one length-prefixed frame on a new connection to node `to`'s peer port.
fn send_frame(cluster: &NodeCluster, to: usize, frame: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", cluster.peer_ports[to])).expect("connect");
    let len = u32::try_from(frame.len()).expect("fits").to_be_bytes();
    s.write_all(&len).expect("write");
    s.write_all(frame).expect("write");
    // Wait until the node is done with it (it closes a connection that sent a refused frame).
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let _ = s.read(&mut [0u8; 1]);
}

/// `rcluster_peer_messages_refused_total{reason}` on node `i` (0 while it has no such series).
fn refused(cluster: &NodeCluster, i: usize, reason: &str) -> u64 {
    metric(
        cluster,
        i,
        &format!("rcluster_peer_messages_refused_total{{reason=\"{reason}\","),
    )
    .unwrap_or(0)
}

fn metric(cluster: &NodeCluster, i: usize, prefix: &str) -> Option<u64> {
    let text = cluster.http(i, "GET", "/metrics", None).body;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

fn await_refused(cluster: &NodeCluster, i: usize, reason: &str, above: u64) {
    wait_for(
        &format!("a refused message counted as {reason} (above {above})"),
        Duration::from_secs(10),
        || (refused(cluster, i, reason) > above).then_some(()),
    );
}

/// (leader, term) as node `i` reports them.
fn raft_of(cluster: &NodeCluster, i: usize) -> (String, u64) {
    let view = cluster.cluster_view(i).expect("the node answers");
    let leader = view["raft"]["leader"].as_str().unwrap_or("").to_string();
    (leader, view["raft"]["term"].as_u64().expect("term"))
}

fn set_quorum(cluster: &NodeCluster, via: usize, w: u8) -> serde_json::Value {
    let body = format!(r#"{{"n":3,"w":{w},"r":1}}"#);
    http_json(
        cluster.http_ports[via],
        "PUT",
        "/api/cluster/quorum",
        Some(ADMIN_KEY),
        &body,
    )
    .expect("the node answers")
    .json()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn forged_replayed_and_strangers_raft_frames_are_refused_and_the_leader_keeps_leading() {
    let cluster = NodeCluster::start("peers-raft", 3, "");
    let (leader, l, f) = leader_and_follower(&cluster);
    let (_, term) = raft_of(&cluster, l);
    let key = key(&cluster);
    let wrong = PeerKey::from_secret(WRONG_SECRET).expect("valid");
    // Each node says where its secret comes from, never what it is.
    let secret =
        std::fs::read_to_string(cluster.dir.path().join("data/cluster.secret")).expect("secret");
    for id in &cluster.ids {
        let log =
            std::fs::read_to_string(cluster.dir.path().join("data").join(id).join("node.log"))
                .expect("node.log");
        assert!(
            log.contains("peer messages are authenticated with the cluster secret in"),
            "{log}"
        );
        assert!(!log.contains(secret.trim()), "{id} logged the secret");
    }
    // An AppendEntries of a far higher term, as if from the follower: taken, it would make the
    // leader step down and follow it.
    let coup = heartbeat_of_a_leader(&cluster.ids[f], &leader, term + 100);
    let payload = envelope(&cluster, f, &coup);
    let (from, to) = (cluster.ids[f].as_str(), leader.as_str());
    let now = now_ms();
    let raft = Channel::Raft;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // Plain JSON, as the port took before messages were sealed.
        ("malformed", payload.clone()),
        (
            "bad_mac",
            seal(&wrong, &header(raft, from, to, now, fresh_seq()), &payload),
        ),
        // The right key and a number the follower used long ago: a replay.
        (
            "replayed",
            seal(&key, &header(raft, from, to, now, 1), &payload),
        ),
        (
            "stale",
            seal(
                &key,
                &header(raft, from, to, now - 600_000, fresh_seq()),
                &payload,
            ),
        ),
        (
            "future",
            seal(
                &key,
                &header(raft, from, to, now + 600_000, fresh_seq()),
                &payload,
            ),
        ),
        (
            "wrong_recipient",
            seal(&key, &header(raft, from, from, now, fresh_seq()), &payload),
        ),
        (
            "not_member",
            seal(&key, &header(raft, "ghost", to, now, fresh_seq()), &payload),
        ),
    ];
    let before: Vec<u64> = cases
        .iter()
        .map(|(reason, _)| refused(&cluster, l, reason))
        .collect();
    for (_, frame) in &cases {
        send_frame(&cluster, l, frame);
    }
    // Nothing moved: the same leader in the same term, on every node.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..3 {
        assert_eq!(raft_of(&cluster, i), (leader.clone(), term), "node {i}");
    }
    // And each was counted under its reason.
    for ((reason, _), before) in cases.iter().zip(before) {
        await_refused(&cluster, l, reason, before);
    }

    // A stranger declares a 16 MiB frame and starts sending it: refused on the length alone, the
    // connection is closed, and the node's memory does not grow with it.
    let pid = cluster.node_pid(l);
    let rss_before = vm_rss_kib(pid);
    let too_large = refused(&cluster, l, "too_large");
    let mut s = TcpStream::connect(("127.0.0.1", cluster.peer_ports[l])).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(&(16u32 << 20).to_be_bytes()).expect("write");
    let junk = vec![0x5a_u8; 1 << 20];
    for _ in 0..8 {
        if s.write_all(&junk).is_err() {
            break;
        }
    }
    // Closed at once (well before the 5 s a new connection has for its first frame).
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    match s.read(&mut [0u8; 1]) {
        Ok(0) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("the node kept the connection open: {other:?}"),
    }
    let rss_after = vm_rss_kib(pid);
    assert!(
        rss_after < rss_before + 4 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    await_refused(&cluster, l, "too_large", too_large);
    // The node keeps working: a metadata change commits through it.
    let answer = set_quorum(&cluster, l, 1);
    assert!(answer["committed_index"].as_u64().is_some(), "{answer}");
    assert_eq!(raft_of(&cluster, l), (leader, term));
}

#[test]
fn a_same_term_append_entries_from_a_member_is_refused_and_raft_goes_on() {
    let mut cluster = NodeCluster::start("peers-second-leader", 3, "");
    let (leader, l, f) = leader_and_follower(&cluster);
    // The follower's process dies, so its sequence numbers are free to use: its identity is
    // what a member gone bad (or a bug) would send with, with the right key.
    cluster.kill_node(f);
    let (_, term) = raft_of(&cluster, l);
    let claim = heartbeat_of_a_leader(&cluster.ids[f], &leader, term);
    let before = refused(&cluster, l, "raft_invalid");
    let sealed = seal(
        &key(&cluster),
        &header(
            Channel::Raft,
            &cluster.ids[f],
            &leader,
            now_ms(),
            fresh_seq(),
        ),
        &envelope(&cluster, f, &claim),
    );
    send_frame(&cluster, l, &sealed);
    await_refused(&cluster, l, "raft_invalid", before);
    // Raft still runs on the leader: a change commits, in the same term, with no driver restart.
    let answer = set_quorum(&cluster, l, 1);
    assert!(answer["committed_index"].as_u64().is_some(), "{answer}");
    assert_eq!(raft_of(&cluster, l), (leader, term));
    assert_eq!(
        metric(&cluster, l, "rcluster_raft_driver_restarts_total{"),
        Some(0)
    );
}

#[test]
fn forged_and_replayed_heartbeats_do_not_keep_a_dead_node_alive() {
    let mut cluster =
        NodeCluster::start("peers-heartbeats", 3, "intervals:\n  heartbeat_ms: 300\n");
    let key = key(&cluster);
    let wrong = PeerKey::from_secret(WRONG_SECRET).expect("valid");
    cluster.kill_node(2);
    cluster.await_state(0, 2, "down", Duration::from_secs(20));
    let before: Vec<(&str, u64)> = ["malformed", "bad_mac", "replayed", "stale", "not_member"]
        .into_iter()
        .map(|r| (r, refused(&cluster, 0, r)))
        .collect();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let target = ("127.0.0.1", cluster.peer_ports[0]);
    let ping = |from: &str| {
        serde_json::to_vec(&serde_json::json!({
            "kind": "ping", "cluster": "test", "from": from, "seq": 1, "sent_us": 0,
            "summary": null,
        }))
        .expect("json")
    };
    let hb = Channel::Heartbeat;
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        let now = now_ms();
        for datagram in [
            // Plain JSON, as heartbeats were before.
            ping("n3"),
            seal(
                &wrong,
                &header(hb, "n3", "n1", now, fresh_seq()),
                &ping("n3"),
            ),
            // The right key and an old number: a replayed heartbeat.
            seal(&key, &header(hb, "n3", "n1", now, 1), &ping("n3")),
            seal(
                &key,
                &header(hb, "n3", "n1", now - 600_000, fresh_seq()),
                &ping("n3"),
            ),
        ] {
            socket.send_to(&datagram, target).expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            cluster.state_seen(0, 2).as_deref(),
            Some("down"),
            "forged pings brought n3 back"
        );
    }
    // Pongs from made-up senders add no metric series for them.
    let pong = |from: &str| {
        serde_json::to_vec(&serde_json::json!({
            "kind": "pong", "cluster": "test", "from": from, "seq": 1, "sent_us": 0,
            "summary": null,
        }))
        .expect("json")
    };
    socket.send_to(&pong("ghost-a"), target).expect("send");
    let sealed = seal(
        &key,
        &header(hb, "ghost-b", "n1", now_ms(), fresh_seq()),
        &pong("ghost-b"),
    );
    socket.send_to(&sealed, target).expect("send");
    for (reason, count) in before {
        await_refused(&cluster, 0, reason, count);
    }
    let text = cluster.http(0, "GET", "/metrics", None).body;
    assert!(!text.contains("ghost"), "{text}");
    assert_eq!(cluster.state_seen(0, 2).as_deref(), Some("down"));
}
