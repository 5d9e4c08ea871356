//! Data redistribution when the member list changes (real Redis servers with the module): after a
//! fourth node joins the topology, and after a node leaves it, every register and chunk ends up
//! on exactly its N preference nodes among the members, and nothing is lost, checked key by key;
//! a write that lands on an old owner after its pass is moved by the convergence pass; the
//! `rebalance_*` progress fields of `INFO rcluster` end at 100 %.

use std::time::Duration;

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::{call, error_of, info_number, pseudo_random, wait_for, TestCluster};
use redis::Value;

const KEYS: usize = 400;
const CHUNKS: u32 = 12;

/// The id of Redis server `i` (n1, n2, ...), whatever the topology holds.
fn id(i: usize) -> String {
    format!("n{}", i + 1)
}

/// What node `i` holds for register `key`, if a value.
fn holds(cluster: &TestCluster, i: usize, key: &str) -> Option<Vec<u8>> {
    let mut c = cluster.conn(i);
    match call(&mut c, &[b"RC.REPLICA.GET", key.as_bytes()]).ok()? {
        Value::Array(items) => match &items[0] {
            Value::BulkString(b) => Some(b.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether node `i` holds chunk `index` of `file`.
fn holds_chunk(cluster: &TestCluster, i: usize, file: &str, index: u32) -> bool {
    let mut c = cluster.conn(i);
    let n: i64 = redis::cmd("EXISTS")
        .arg(format!("chunk:{file}:{index}"))
        .query(&mut c)
        .unwrap_or(0);
    n == 1
}

/// Every key and chunk is on exactly its preference nodes among `members`, with the right value.
fn placed_exactly(cluster: &TestCluster, members: &[usize]) -> bool {
    for k in 0..KEYS {
        let key = format!("key{k}");
        let owners = cluster.preference(&key);
        for &i in members {
            let want = owners.contains(&id(i));
            let got = holds(cluster, i, &key);
            if want != got.is_some() || got.is_some_and(|v| v != format!("value{k}").into_bytes()) {
                return false;
            }
        }
    }
    for index in 0..CHUNKS {
        let owners = cluster.preference(&format!("file1:{index}"));
        for &i in members {
            if owners.contains(&id(i)) != holds_chunk(cluster, i, "file1", index) {
                return false;
            }
        }
    }
    true
}

/// Anti-entropy every 200 ms (10 min by default) on every node.
fn audit_every_200_ms(cluster: &TestCluster) {
    for i in 0..cluster.nodes.len() {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("rcluster.anti-entropy-interval-ms")
            .arg(200)
            .query(&mut cluster.conn(i))
            .unwrap();
    }
}

/// How often node `i` ran command `name` (`INFO commandstats`; 0 when never).
fn command_calls(cluster: &TestCluster, i: usize, name: &str) -> i64 {
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut cluster.conn(i))
        .expect("INFO commandstats");
    let prefix = format!("cmdstat_{}:calls=", name.to_lowercase());
    stats
        .lines()
        .find_map(|l| l.to_lowercase().strip_prefix(&prefix).map(str::to_string))
        .and_then(|l| l.split(',').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The cluster's topology (the first three of four servers) with n4 added, at epoch 2.
fn with_fourth_member(cluster: &TestCluster) -> rcluster_domain::topology::Topology {
    let mut t = cluster.topology.clone();
    t.members.push(rcluster_domain::topology::Member {
        id: "n4".into(),
        host: "127.0.0.1".into(),
        redis_port: cluster.nodes[3].port,
    });
    t.epoch = 2;
    t
}

fn push_all(cluster: &TestCluster, nodes: &[usize]) {
    for &i in nodes {
        cluster.push(i);
    }
}

/// Every node in `nodes` has no pass running and its last pass examined all its items.
fn passes_finished(cluster: &TestCluster, nodes: &[usize]) -> bool {
    nodes.iter().all(|&i| {
        let mut c = cluster.conn(i);
        info_number(&mut c, "rebalance_in_progress") == 0
            && info_number(&mut c, "rebalance_percent") == 100
            && info_number(&mut c, "rebalance_pass_done")
                == info_number(&mut c, "rebalance_pass_items")
    })
}

/// The sum of an `INFO rcluster` field over `nodes`.
fn total(cluster: &TestCluster, nodes: &[usize], field: &str) -> i64 {
    nodes
        .iter()
        .map(|&i| info_number(&mut cluster.conn(i), field))
        .sum()
}

#[test]
fn data_moves_to_a_new_node_and_away_from_a_leaving_one() {
    // Four Redis servers; the topology starts with the first three.
    let mut cluster = TestCluster::start(4, |t| t.members.truncate(3));
    let mut c1 = cluster.conn(0);
    for k in 0..KEYS {
        let reply = call(
            &mut c1,
            &[
                b"RC.SET",
                format!("key{k}").as_bytes(),
                format!("value{k}").as_bytes(),
                b"W",
                b"3",
            ],
        );
        assert_eq!(reply.unwrap(), Value::Okay);
    }
    for index in 0..CHUNKS {
        let data = pseudo_random(100_000, u64::from(index));
        let (i, sha) = (index.to_string(), sha256_hex(&data));
        let args: [&[u8]; 7] = [
            b"RC.CHUNK.SET",
            b"file1",
            i.as_bytes(),
            sha.as_bytes(),
            &data,
            b"W",
            b"3",
        ];
        assert_eq!(call(&mut c1, &args).unwrap(), Value::Okay);
    }
    assert!(placed_exactly(&cluster, &[0, 1, 2]));

    // n4 joins: the full topology (epoch 2) on every node.
    let full = with_fourth_member(&cluster);
    cluster.topology = full.clone();
    // A key n1 does not own under the new ring: written below onto the old owners after n1's
    // pass, as a coordinator still using the old topology would.
    let late = (0..)
        .map(|k| format!("late{k}"))
        .find(|key| !cluster.preference(key).contains(&id(0)))
        .expect("some key n1 does not own");
    push_all(&cluster, &[0, 1, 2, 3]);
    wait_for("n1's first pass", Duration::from_secs(30), || {
        (info_number(&mut c1, "rebalance_passes") >= 1).then_some(())
    });
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let args: [&[u8]; 5] = [
            b"RC.REPLICA.PUT",
            late.as_bytes(),
            b"late value",
            b"7",
            b"n9",
        ];
        call(&mut c, &args).unwrap();
    }
    wait_for(
        "every key and chunk on exactly its preference nodes after the join",
        Duration::from_secs(60),
        || placed_exactly(&cluster, &[0, 1, 2, 3]).then_some(()),
    );
    // The convergence pass: the late write reached its new owner and left n1.
    wait_for("the late write moved", Duration::from_secs(30), || {
        let owners = cluster.preference(&late);
        (0..4)
            .all(|i| {
                let want = owners.contains(&id(i)).then(|| b"late value".to_vec());
                holds(&cluster, i, &late) == want
            })
            .then_some(())
    });
    // n1 dropped it in a second pass (which may still be finishing when the copy is gone).
    wait_for("n1's second pass", Duration::from_secs(30), || {
        (info_number(&mut c1, "rebalance_passes") >= 2).then_some(())
    });
    wait_for("every pass finished", Duration::from_secs(30), || {
        passes_finished(&cluster, &[0, 1, 2, 3]).then_some(())
    });
    let all = [0, 1, 2, 3];
    assert!(total(&cluster, &all, "rebalance_keys_moved") > 0);
    assert!(total(&cluster, &all, "rebalance_bytes_moved") > 0);
    assert!(total(&cluster, &all, "rebalance_keys_dropped") > 0);
    assert!(total(&cluster, &all, "rebalance_pass_items") > 0);
    // Passes stop once one finds nothing to do: no pass starts for longer than the pause
    // after a pass that changed something.
    wait_for("the passes to stop", Duration::from_secs(30), || {
        let passes = total(&cluster, &all, "rebalance_passes");
        std::thread::sleep(Duration::from_millis(2_000));
        (total(&cluster, &all, "rebalance_passes") == passes && passes_finished(&cluster, &all))
            .then_some(())
    });

    // n2 leaves: the topology without it (epoch 3), pushed to every node including n2, which
    // hands its data over before dropping it.
    let mut without = full;
    without.members.retain(|m| m.id != "n2");
    without.epoch = 3;
    cluster.topology = without;
    push_all(&cluster, &[0, 1, 2, 3]);
    wait_for(
        "every key and chunk on exactly its preference nodes after the leave",
        Duration::from_secs(60),
        || placed_exactly(&cluster, &[0, 2, 3]).then_some(()),
    );
    wait_for("the leaving node emptied", Duration::from_secs(30), || {
        let mut c = cluster.conn(1);
        let kv: Vec<String> = redis::cmd("KEYS").arg("kv:key*").query(&mut c).ok()?;
        let chunks: Vec<String> = redis::cmd("KEYS").arg("chunk:*").query(&mut c).ok()?;
        (kv.is_empty() && chunks.is_empty()).then_some(())
    });
    wait_for(
        "every pass finished after the leave",
        Duration::from_secs(30),
        || passes_finished(&cluster, &[0, 1, 2, 3]).then_some(()),
    );
    // Quorum reads through the remaining nodes see every value.
    let mut c4 = cluster.conn(3);
    for k in 0..KEYS {
        let got = call(&mut c4, &[b"RC.GET", format!("key{k}").as_bytes()]).unwrap();
        assert_eq!(
            got,
            Value::BulkString(format!("value{k}").into_bytes()),
            "key{k}"
        );
    }
}

#[test]
fn after_a_restart_copies_a_node_holds_but_does_not_own_go_to_their_owners() {
    // Four nodes, N=3: every key has one node that does not own it.
    let mut cluster = TestCluster::start(4, |_| {});
    let (x, xid) = (3, id(3));
    let mut c1 = cluster.conn(0);
    for k in 0..40 {
        let (key, value) = (format!("key{k}"), format!("value{k}"));
        let args: [&[u8]; 5] = [b"RC.SET", key.as_bytes(), value.as_bytes(), b"W", b"3"];
        assert_eq!(call(&mut c1, &args).unwrap(), Value::Okay);
    }
    // What a redistribution cut short by a restart leaves on n4: copies it does not own, which
    // their owners lack (registers, and a chunk).
    let strays: Vec<String> = (0..)
        .map(|k| format!("stray{k}"))
        .filter(|key| !cluster.preference(key).contains(&xid))
        .take(10)
        .collect();
    let mut cx = cluster.conn(x);
    for key in &strays {
        let args: [&[u8]; 5] = [
            b"RC.REPLICA.PUT",
            key.as_bytes(),
            b"stray value",
            b"7",
            b"n9",
        ];
        call(&mut cx, &args).unwrap();
    }
    let index = (0u32..)
        .find(|i| !cluster.preference(&format!("file2:{i}")).contains(&xid))
        .expect("a chunk n4 does not own");
    let data = pseudo_random(50_000, 9);
    let (i, sha) = (index.to_string(), sha256_hex(&data));
    let args: [&[u8]; 5] = [
        b"RC.CHUNK.PUT",
        b"file2",
        i.as_bytes(),
        sha.as_bytes(),
        &data,
    ];
    assert_eq!(call(&mut cx, &args).unwrap(), Value::Okay);

    // n4's Redis restarts: its topology comes back from its own data, no pass is pending, and
    // the node process pushes the topology again.
    cluster.nodes[x].restart();
    cluster.push(x);
    let moved = |key: &str, want: &[u8]| {
        let owners = cluster.preference(key);
        (0..4)
            .all(|i| holds(&cluster, i, key).as_deref() == owners.contains(&id(i)).then_some(want))
    };
    wait_for(
        "the stray copies on their owners and gone from n4",
        Duration::from_secs(30),
        || {
            let chunk_placed = (0..4).all(|i| {
                holds_chunk(&cluster, i, "file2", index)
                    == cluster
                        .preference(&format!("file2:{index}"))
                        .contains(&id(i))
            });
            (strays.iter().all(|k| moved(k, b"stray value")) && chunk_placed).then_some(())
        },
    );
    // The chunk reached its owners intact.
    let mut c2 = cluster.conn(0);
    let fetched = call(&mut c2, &[b"RC.CHUNK.FETCH", b"file2", i.as_bytes()]).unwrap();
    assert_eq!(fetched, Value::BulkString(data));
    // Nothing else moved or went: every register is still on exactly its owners.
    for k in 0..40 {
        let key = format!("key{k}");
        assert!(moved(&key, format!("value{k}").as_bytes()), "{key}");
    }
    let mut cx = cluster.conn(x);
    assert_eq!(
        info_number(&mut cx, "rebalance_keys_dropped"),
        strays.len() as i64 + 1
    );
    wait_for("n4's sweep finished", Duration::from_secs(30), || {
        passes_finished(&cluster, &[x]).then_some(())
    });
}

#[test]
fn anti_entropy_refills_a_replica_that_lost_its_data_without_any_read() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    for k in 0..60 {
        let (key, value) = (format!("key{k}"), format!("value{k}"));
        let args: [&[u8]; 5] = [b"RC.SET", key.as_bytes(), value.as_bytes(), b"W", b"3"];
        assert_eq!(call(&mut c1, &args).unwrap(), Value::Okay);
    }
    let chunks: Vec<Vec<u8>> = (0..3).map(|i| pseudo_random(40_000, 100 + i)).collect();
    for (index, data) in chunks.iter().enumerate() {
        let (i, sha) = (index.to_string(), sha256_hex(data));
        let args: [&[u8]; 7] = [
            b"RC.CHUNK.SET",
            b"file3",
            i.as_bytes(),
            sha.as_bytes(),
            data,
            b"W",
            b"3",
        ];
        assert_eq!(call(&mut c1, &args).unwrap(), Value::Okay);
    }
    // n2 loses everything it stored (a wiped disk); no hint covers that.
    let mut c2 = cluster.conn(1);
    let _: () = redis::cmd("FLUSHALL").query(&mut c2).unwrap();
    assert_eq!(holds(&cluster, 1, "key0"), None);
    audit_every_200_ms(&cluster);
    wait_for(
        "n2 to hold every register and chunk again",
        Duration::from_secs(30),
        || {
            let registers = (0..60).all(|k| {
                holds(&cluster, 1, &format!("key{k}")) == Some(format!("value{k}").into_bytes())
            });
            let stored = (0..3).all(|index| {
                let got = call(
                    &mut cluster.conn(1),
                    &[b"RC.CHUNK.GET", b"file3", index.to_string().as_bytes()],
                );
                got.ok() == Some(Value::BulkString(chunks[index].clone()))
            });
            (registers && stored).then_some(())
        },
    );
    // Refilled by the audits (this test never reads through the coordinators).
    assert!(total(&cluster, &[0, 1, 2], "anti_entropy_passes") >= 1);
    let info: String = redis::cmd("INFO")
        .arg("rcluster")
        .query(&mut cluster.conn(0))
        .unwrap();
    assert!(
        info.contains("rcluster_rebalance_pass_kind:anti-entropy"),
        "{info}"
    );
    assert!(total(&cluster, &[0, 1, 2], "anti_entropy_repairs") >= 63);
    assert!(command_calls(&cluster, 0, "RC.SET") >= 60);
    for i in 0..3 {
        assert_eq!(
            command_calls(&cluster, i, "RC.GET"),
            0,
            "node {i} served a read"
        );
    }
}

#[test]
fn a_transition_ends_when_the_node_process_says_every_member_installed_the_change() {
    let mut cluster = TestCluster::start(4, |t| t.members.truncate(3));
    let mut c1 = cluster.conn(0);
    assert_eq!(info_number(&mut c1, "topology_epoch"), 1);
    assert_eq!(info_number(&mut c1, "transition_open"), 0);
    cluster.topology = with_fourth_member(&cluster);
    cluster.push(0);
    assert_eq!(info_number(&mut c1, "transition_open"), 1);
    // Malformed, or another epoch: refused or nothing to end.
    let (code, msg) = error_of(call(&mut c1, &[b"RC.CLUSTER.SETTLED", b"two"]));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("epoch"), "{msg}");
    let (code, msg) = error_of(call(&mut c1, &[b"RC.CLUSTER.SETTLED"]));
    assert_eq!(code, "ERR");
    assert!(msg.contains("usage: RC.CLUSTER.SETTLED <epoch>"), "{msg}");
    assert_eq!(
        call(&mut c1, &[b"RC.CLUSTER.SETTLED", b"1"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(info_number(&mut c1, "transition_open"), 1);
    // The installed epoch: the previous placement goes after one request timeout (1 s here).
    assert_eq!(
        call(&mut c1, &[b"RC.CLUSTER.SETTLED", b"2"]).unwrap(),
        Value::Int(1)
    );
    wait_for("the transition to end", Duration::from_secs(10), || {
        (info_number(&mut c1, "transition_open") == 0).then_some(())
    });
    assert_eq!(
        call(&mut c1, &[b"RC.CLUSTER.SETTLED", b"2"]).unwrap(),
        Value::Int(0)
    );
}

#[test]
fn an_audit_sends_a_large_value_only_where_its_version_is_missing() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    let value = |k: usize| pseudo_random(5_000, 200 + k as u64);
    for k in 0..8 {
        let key = format!("big{k}");
        let args: [&[u8]; 5] = [b"RC.SET", key.as_bytes(), &value(k), b"W", b"3"];
        assert_eq!(call(&mut c1, &args).unwrap(), Value::Okay);
    }
    let puts = |i: usize| command_calls(&cluster, i, "RC.REPLICA.PUT");
    let before: Vec<i64> = (0..3).map(puts).collect();
    // The writes reached every replica through RC.REPLICA.PUT (n1 stored its own copy directly).
    assert_eq!(before[1..], [8, 8]);
    let passes = |i: usize| info_number(&mut cluster.conn(i), "anti_entropy_passes");
    audit_every_200_ms(&cluster);
    wait_for("two audits on every node", Duration::from_secs(30), || {
        (0..3).all(|i| passes(i) >= 2).then_some(())
    });
    // Every replica holds every value: the audits asked and sent nothing.
    let after: Vec<i64> = (0..3).map(puts).collect();
    assert_eq!(after, before, "RC.REPLICA.PUT calls per node");
    // A replica that lost them gets them back.
    let _: () = redis::cmd("FLUSHALL").query(&mut cluster.conn(1)).unwrap();
    wait_for(
        "n2 to hold every value again",
        Duration::from_secs(30),
        || {
            (0..8)
                .all(|k| holds(&cluster, 1, &format!("big{k}")) == Some(value(k)))
                .then_some(())
        },
    );
}

#[test]
fn an_audit_goes_at_a_steady_pace() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    let mut pipe = redis::pipe();
    for k in 0..1_000 {
        pipe.cmd("RC.SET").arg(format!("key{k}")).arg("v").ignore();
    }
    let _: () = pipe.query(&mut c1).unwrap();
    audit_every_200_ms(&cluster);
    wait_for("an audit", Duration::from_secs(30), || {
        (info_number(&mut c1, "anti_entropy_passes") >= 1).then_some(())
    });
    // No more audits; the one running ends.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("rcluster.anti-entropy-interval-ms")
        .arg(0)
        .query(&mut c1)
        .unwrap();
    wait_for("the last audit to end", Duration::from_secs(30), || {
        (info_number(&mut c1, "rebalance_in_progress") == 0).then_some(())
    });
    // Its 1,000 registers: the last starts 999 half-milliseconds after the first (2,000 a
    // second), however fast the machine.
    let took = info_number(&mut c1, "rebalance_last_pass_ms");
    assert!(took >= 499, "an audit of 1,000 registers took {took} ms");
}
