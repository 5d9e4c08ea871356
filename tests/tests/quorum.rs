//! Quorum reads and writes on a real 3-node cluster (real `redis-server` processes with the
//! module, wired by a pushed topology): any node coordinates, one node down is tolerated, hints
//! reach a node when it returns, reads repair stale replicas, two nodes down or frozen give
//! `NOQUORUM` within the timeout, and concurrent writers converge.

use std::time::{Duration, Instant};

use rcluster_tests::{call, error_of, info_number, wait_for, Redis, TestCluster};
use redis::Value;

fn set(
    c: &mut redis::Connection,
    key: &str,
    value: &str,
    extra: &[&str],
) -> redis::RedisResult<Value> {
    let mut args: Vec<&[u8]> = vec![b"RC.SET", key.as_bytes(), value.as_bytes()];
    args.extend(extra.iter().map(|a| a.as_bytes()));
    call(c, &args)
}

fn get(c: &mut redis::Connection, key: &str, extra: &[&str]) -> redis::RedisResult<Value> {
    let mut args: Vec<&[u8]> = vec![b"RC.GET", key.as_bytes()];
    args.extend(extra.iter().map(|a| a.as_bytes()));
    call(c, &args)
}

/// Turns the main-thread fast path on in every node (the default; said here because the test
/// is about it).
fn fast_path_on(cluster: &TestCluster) {
    for i in 0..cluster.nodes.len() {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("rcluster.fast-path")
            .arg("yes")
            .query(&mut cluster.conn(i))
            .unwrap();
    }
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// What one replica holds: (value or None for tombstone/missing, version).
fn replica(c: &mut redis::Connection, key: &str) -> Option<(Option<Vec<u8>>, String)> {
    match call(c, &[b"RC.REPLICA.GET", key.as_bytes()]).unwrap() {
        Value::Nil => None,
        Value::Array(items) => {
            let value = match &items[0] {
                Value::BulkString(b) => Some(b.clone()),
                _ => None,
            };
            let version = match &items[1] {
                Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                other => panic!("{other:?}"),
            };
            Some((value, version))
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn info(c: &mut redis::Connection) -> String {
    redis::cmd("INFO").arg("rcluster").query(c).unwrap()
}

#[test]
fn write_through_one_node_read_through_another() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    let mut c3 = cluster.conn(2);
    assert_eq!(set(&mut c1, "greeting", "hello", &[]).unwrap(), Value::Okay);
    assert_eq!(get(&mut c3, "greeting", &[]).unwrap(), bulk("hello"));
    assert_eq!(get(&mut c3, "never-written", &[]).unwrap(), Value::Nil);
    // All three replicas end up with the value (W=2 answers before the third may have it).
    for i in 0..3 {
        let mut c = cluster.conn(i);
        wait_for(
            "every replica to hold the write",
            Duration::from_secs(5),
            || replica(&mut c, "greeting").filter(|(v, _)| v.as_deref() == Some(&b"hello"[..])),
        );
    }
    // A delete is a quorum tombstone.
    assert_eq!(
        call(&mut c3, &[b"RC.DEL", b"greeting"]).unwrap(),
        Value::Okay
    );
    assert_eq!(get(&mut c1, "greeting", &[]).unwrap(), Value::Nil);
    // The preference list is the same from every node.
    let locate = |c: &mut redis::Connection| match call(c, &[b"RC.LOCATE", b"greeting"]).unwrap() {
        Value::Array(rows) => rows
            .into_iter()
            .map(|r| match r {
                Value::Array(f) => match &f[0] {
                    Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
                    o => panic!("{o:?}"),
                },
                o => panic!("{o:?}"),
            })
            .collect::<Vec<_>>(),
        o => panic!("{o:?}"),
    };
    let from1 = locate(&mut c1);
    assert_eq!(from1, locate(&mut c3));
    assert_eq!(from1, cluster.preference("greeting"));
    // Each row's state in the words of /api/nodes: n1 itself, and peers that answered its
    // calls are alive (no node process pushes verdicts here: the connections say so; the first
    // write of a fresh cluster goes through them).
    let states = |c: &mut redis::Connection| match call(c, &[b"RC.LOCATE", b"greeting"]).unwrap() {
        Value::Array(rows) => rows
            .into_iter()
            .map(|r| match r {
                Value::Array(f) => format!("{:?} {:?}", f[0], f[2]),
                o => panic!("{o:?}"),
            })
            .collect::<Vec<_>>(),
        o => panic!("{o:?}"),
    };
    let expected: Vec<String> = from1
        .iter()
        .map(|id| {
            let state = if id == "n1" { "self" } else { "alive" };
            format!(
                "{:?} {:?}",
                Value::BulkString(id.as_bytes().to_vec()),
                Value::SimpleString(state.into())
            )
        })
        .collect();
    let mut last = Vec::new();
    let seen = (0..50).any(|_| {
        last = states(&mut c1);
        let done = last == expected;
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
        done
    });
    assert!(seen, "RC.LOCATE states {last:?}, expected {expected:?}");
}

#[test]
fn one_node_killed_then_back_gets_its_hints_without_any_read() {
    let mut cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    let mut c3 = cluster.conn(2);
    cluster.nodes[1].kill9();
    let keys: Vec<String> = (0..40).map(|i| format!("while-down-{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        let c = if i % 2 == 0 { &mut c1 } else { &mut c3 };
        assert_eq!(
            set(c, key, &format!("v{i}"), &["W", "2"]).unwrap(),
            Value::Okay,
            "{key}"
        );
    }
    for (i, key) in keys.iter().enumerate() {
        let c = if i % 2 == 0 { &mut c3 } else { &mut c1 };
        assert_eq!(
            get(c, key, &["R", "2"]).unwrap(),
            bulk(&format!("v{i}")),
            "{key}"
        );
    }
    // Each coordinator keeps its hint for n2 right after the failed call (after the client's OK).
    wait_for("a hint per write for n2", Duration::from_secs(5), || {
        let hints = info_number(&mut c1, "hints_stored") + info_number(&mut c3, "hints_stored");
        (hints >= 40).then_some(())
    });

    cluster.nodes[1].restart();
    let mut c2 = cluster.conn(1);
    // The restarted node restored its topology from its AOF, without a new push.
    let topo: String = redis::cmd("RC.CLUSTER.GET").query(&mut c2).unwrap();
    assert!(topo.contains("\"epoch\":1"), "{topo}");
    for (i, key) in keys.iter().enumerate() {
        let want = format!("v{i}").into_bytes();
        wait_for(
            &format!("hint for {key} delivered to n2"),
            Duration::from_secs(10),
            || replica(&mut c2, key).filter(|(v, _)| v.as_deref() == Some(&want[..])),
        );
    }
    wait_for(
        "every hint counted as replayed",
        Duration::from_secs(5),
        || {
            let replayed =
                info_number(&mut c1, "hints_replayed") + info_number(&mut c3, "hints_replayed");
            (replayed >= 40).then_some(())
        },
    );
    let n2 = info(&mut c2);
    assert!(
        n2.contains("rcluster_quorum_get:ok=0,"),
        "n2 served no quorum read: {n2}"
    );
}

#[test]
fn a_read_repairs_stale_and_missing_replicas() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c = (0..3).map(|i| cluster.conn(i)).collect::<Vec<_>>();
    set(&mut c[0], "r", "old", &["W", "3"]).unwrap();
    set(&mut c[0], "gone", "value", &["W", "3"]).unwrap();
    // Make n1 and n2 newer behind the quorum layer: n3 is stale. And n3 loses "gone" entirely.
    let (_, old_version) = replica(&mut c[2], "r").unwrap();
    let newer = (old_version.parse::<u64>().unwrap() + 1000).to_string();
    for conn in c.iter_mut().take(2) {
        call(
            conn,
            &[b"RC.REPLICA.PUT", b"r", b"new", newer.as_bytes(), b"n1"],
        )
        .unwrap();
    }
    let _: i64 = redis::cmd("DEL").arg("kv:gone").query(&mut c[2]).unwrap();
    let before = info_number(&mut c[0], "read_repairs");

    assert_eq!(get(&mut c[0], "r", &["R", "2"]).unwrap(), bulk("new"));
    assert_eq!(get(&mut c[0], "gone", &["R", "2"]).unwrap(), bulk("value"));
    let mut c3 = cluster.conn(2);
    wait_for(
        "n3 repaired to the newest version",
        Duration::from_secs(5),
        || {
            replica(&mut c3, "r")
                .filter(|(v, ver)| v.as_deref() == Some(&b"new"[..]) && *ver == newer)
        },
    );
    wait_for("n3 given the missing key", Duration::from_secs(5), || {
        replica(&mut c3, "gone").filter(|(v, _)| v.as_deref() == Some(&b"value"[..]))
    });
    // The counter moves when the coordinator sees the repair acknowledged, just after n3 has it.
    wait_for("both repairs counted", Duration::from_secs(5), || {
        (info_number(&mut c[0], "read_repairs") >= before + 2).then_some(())
    });
}

#[test]
fn two_nodes_down_is_noquorum_within_the_timeout() {
    let mut cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    set(&mut c1, "k", "v", &["W", "3"]).unwrap();
    cluster.nodes[1].kill9();
    cluster.nodes[2].kill9();
    let started = Instant::now();
    let (code, msg) = error_of(set(&mut c1, "k", "w", &["TIMEOUT", "500"]));
    assert_eq!(code, "NOQUORUM");
    // Who counted, who failed and why.
    assert!(msg.starts_with("needed 2 got 1 (ok: n1; failed: "), "{msg}");
    assert!(
        msg.contains("n2 connection refused") && msg.contains("n3 connection refused"),
        "{msg}"
    );
    let (code, msg) = error_of(get(&mut c1, "k", &["TIMEOUT", "500"]));
    assert_eq!(code, "NOQUORUM", "{msg}");
    // Refused connections answer at once, not at the deadline; how fast is a benchmark's
    // business, so the bound only rules out waiting (a hang would reach Redis's block timeout).
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // R=1 and W=1 still work on the survivor.
    assert_eq!(get(&mut c1, "k", &["R", "1"]).unwrap(), bulk("w"));
    assert_eq!(set(&mut c1, "k", "x", &["W", "1"]).unwrap(), Value::Okay);
    let noquorum = info(&mut c1);
    assert!(
        noquorum.contains("rcluster_quorum_set:ok=2,noquorum=1"),
        "{noquorum}"
    );
}

#[test]
fn frozen_peers_are_bounded_by_the_timeout() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    set(&mut c1, "f", "v", &["W", "3"]).unwrap();
    // One frozen peer: W=2 and R=2 still answer from the other two, long before a 30 s
    // deadline (waiting for the frozen peer would take the whole of it).
    cluster.signal(1, libc::SIGSTOP);
    let started = Instant::now();
    assert_eq!(
        set(&mut c1, "f", "one-frozen", &["TIMEOUT", "30000"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        get(&mut c1, "f", &["TIMEOUT", "30000"]).unwrap(),
        bulk("one-frozen")
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "waited for the frozen peer: {:?}",
        started.elapsed()
    );
    // Two frozen peers: NOQUORUM naming the timeouts, after the timeout and not much later.
    cluster.signal(2, libc::SIGSTOP);
    let started = Instant::now();
    let (code, msg) = error_of(set(&mut c1, "f", "two-frozen", &["TIMEOUT", "300"]));
    let took = started.elapsed();
    assert_eq!(code, "NOQUORUM", "{msg}");
    assert!(
        msg.contains("n2 timeout") && msg.contains("n3 timeout"),
        "{msg}"
    );
    // Not before the deadline; the upper bound only rules out a hang.
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(10),
        "took {took:?}"
    );
    let started = Instant::now();
    let (code, _) = error_of(get(&mut c1, "f", &["TIMEOUT", "300"]));
    assert_eq!(code, "NOQUORUM");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Redis itself never stopped answering other clients meanwhile.
    let pong: String = redis::cmd("PING").query(&mut c1).unwrap();
    assert_eq!(pong, "PONG");
    cluster.signal(1, libc::SIGCONT);
    cluster.signal(2, libc::SIGCONT);
    let mut c3 = cluster.conn(2);
    assert_eq!(
        get(&mut c3, "f", &["R", "3", "TIMEOUT", "2000"]).unwrap(),
        bulk("two-frozen")
    );
}

#[test]
fn requests_take_the_main_thread_path_and_hand_over_to_the_runtime_when_a_peer_freezes() {
    let cluster = TestCluster::start(3, |_| {});
    fast_path_on(&cluster);
    let mut c1 = cluster.conn(0);
    // The first write opens the connections (on the runtime) and goes the runtime's way.
    set(&mut c1, "warm", "up", &["W", "3"]).unwrap();
    wait_for("n1's fast connections", Duration::from_secs(5), || {
        (info_number(&mut c1, "fast_connections") == 2).then_some(())
    });
    let before = info_number(&mut c1, "fast_writes");
    for i in 0..200 {
        let w = if i % 2 == 0 { "3" } else { "2" };
        let key = format!("fast{i}");
        assert_eq!(
            set(&mut c1, &key, "v", &["W", w, "TIMEOUT", "30000"]).unwrap(),
            Value::Okay
        );
    }
    assert_eq!(
        call(
            &mut c1,
            &[b"RC.DEL", b"fast0", b"W", b"3", b"TIMEOUT", b"30000"]
        )
        .unwrap(),
        Value::Okay
    );
    assert_eq!(info_number(&mut c1, "fast_writes") - before, 201);
    assert_eq!(info_number(&mut c1, "fast_writes_handed_over"), 0);
    for node in 1..3 {
        let mut c = cluster.conn(node);
        wait_for("every copy written", Duration::from_secs(5), || {
            (1..200)
                .all(|i| replica(&mut c, &format!("fast{i}")).is_some_and(|(v, _)| v.is_some()))
                .then_some(())
        });
        assert_eq!(
            replica(&mut c, "fast0").map(|(v, _)| v),
            Some(None),
            "a tombstone"
        );
    }
    // Reads take the fast path too, and one that finds a copy missing has it repaired.
    let reads = info_number(&mut c1, "fast_reads");
    for i in 1..101 {
        let key = format!("fast{i}");
        assert_eq!(
            get(&mut c1, &key, &["R", "3", "TIMEOUT", "30000"]).unwrap(),
            bulk("v")
        );
    }
    assert_eq!(
        get(&mut c1, "fast0", &["R", "3", "TIMEOUT", "30000"]).unwrap(),
        Value::Nil
    );
    assert_eq!(info_number(&mut c1, "fast_reads") - reads, 101);
    let mut c3 = cluster.conn(2);
    let _: i64 = redis::cmd("DEL").arg("kv:fast1").query(&mut c3).unwrap();
    assert_eq!(replica(&mut c3, "fast1"), None);
    assert_eq!(
        get(&mut c1, "fast1", &["R", "2", "TIMEOUT", "30000"]).unwrap(),
        bulk("v")
    );
    wait_for("the missing copy repaired", Duration::from_secs(5), || {
        replica(&mut c3, "fast1").and_then(|(v, _)| v).map(|_| ())
    });
    assert_eq!(info_number(&mut c1, "fast_reads_handed_over"), 0);
    // n2 freezes: W=2 is answered by n3 before the deadline (no hand-over yet when the reply
    // comes); the write still pending on n2 is handed to the runtime at its deadline, which
    // keeps a hint, and n1 stops using the stalled connection.
    cluster.signal(1, libc::SIGSTOP);
    assert_eq!(
        set(&mut c1, "frozen", "kept", &["TIMEOUT", "3000"]).unwrap(),
        Value::Okay
    );
    assert_eq!(info_number(&mut c1, "fast_writes_handed_over"), 0);
    let (code, msg) = error_of(set(&mut c1, "frozen", "all", &["W", "3", "TIMEOUT", "300"]));
    assert_eq!(code, "NOQUORUM", "{msg}");
    assert!(msg.contains("n2 timeout"), "{msg}");
    wait_for(
        "the stalled connection closed",
        Duration::from_secs(5),
        || (info_number(&mut c1, "fast_connections") == 1).then_some(()),
    );
    assert!(info_number(&mut c1, "fast_writes_handed_over") >= 1);
    wait_for("a hint kept for n2", Duration::from_secs(10), || {
        (info_number(&mut c1, "hints_stored") >= 1).then_some(())
    });
    // A read with R=3 while n2 is frozen: NOQUORUM naming the timeout, not a hang.
    let started = Instant::now();
    let (code, msg) = error_of(get(&mut c1, "frozen", &["R", "3", "TIMEOUT", "300"]));
    assert_eq!(code, "NOQUORUM", "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    cluster.signal(1, libc::SIGCONT);
    // The hint reaches n2 without any read, and the fast path comes back.
    let mut c2 = cluster.conn(1);
    wait_for("the hint delivered to n2", Duration::from_secs(10), || {
        replica(&mut c2, "frozen")
            .and_then(|(v, _)| v)
            .filter(|v| v.as_slice() == b"all")
            .map(|_| ())
    });
    wait_for("the fast path back", Duration::from_secs(10), || {
        let _ = set(&mut c1, "again", "v", &["W", "3"]);
        (info_number(&mut c1, "fast_connections") == 2).then_some(())
    });
}

#[test]
fn a_later_write_through_a_node_whose_clock_is_behind_is_not_lost() {
    // Four nodes, N=3: a key whose preference list leaves out one node, `outside`, which never
    // sees the key's versions. The first write goes through a node whose clock runs 10 s ahead,
    // the second, later one through `outside`: its version is older, so the replicas answer
    // "stale". Counting that as an acknowledgement lost the second write; it must win.
    let cluster = TestCluster::start(4, |_| {});
    fast_path_on(&cluster);
    let key = (0..)
        .map(|i| format!("clock{i}"))
        .find(|k| !cluster.preference(k).contains(&"n4".to_string()))
        .unwrap();
    let first = cluster.index(&cluster.preference(&key)[0]);
    let outside = cluster.index("n4");
    let ahead_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 10_000;
    let mut c_first = cluster.conn(first);
    let _: Value = redis::cmd("RC.CLOCK")
        .arg("MERGE")
        .arg(ahead_ms << 16)
        .query(&mut c_first)
        .unwrap();
    let mut c_out = cluster.conn(outside);
    // Connections from n4 to every node first, so the second write takes the fast path.
    for i in 0..20 {
        set(&mut c_out, &format!("warm{i}"), "v", &["W", "3"]).unwrap();
    }
    wait_for("n4's fast connections", Duration::from_secs(5), || {
        (info_number(&mut c_out, "fast_connections") == 3).then_some(())
    });
    for round in 0..2 {
        let (one, two) = (format!("one{round}"), format!("two{round}"));
        assert_eq!(set(&mut c_first, &key, &one, &[]).unwrap(), Value::Okay);
        assert_eq!(set(&mut c_out, &key, &two, &[]).unwrap(), Value::Okay);
        for i in 0..4 {
            assert_eq!(
                get(&mut cluster.conn(i), &key, &["R", "3"]).unwrap(),
                bulk(&two),
                "read through n{}",
                i + 1
            );
        }
    }
    assert!(info_number(&mut c_out, "writes_reissued") >= 2);
    assert!(info_number(&mut c_out, "fast_writes_handed_over") >= 1);
}

#[test]
fn during_a_change_of_members_a_write_still_meets_readers_on_the_old_list() {
    // n1..n3 hold every key (N=3). The new topology swaps n3 for n4, and only n1 has installed
    // it yet. A write through n1 must still reach W of the old list: a read through n3, which
    // still uses the old one, then sees it even with n1 out of reach. (Without that, the write
    // went to n1 and n4 only, and the read answered nil.)
    let mut cluster = TestCluster::start(4, |t| t.members.retain(|m| m.id != "n4"));
    let mut next = cluster.topology.clone();
    next.epoch = 2;
    next.members.retain(|m| m.id != "n3");
    next.members.push(rcluster_domain::topology::Member {
        id: "n4".into(),
        host: "127.0.0.1".into(),
        redis_port: cluster.nodes[3].port,
    });
    let mut c1 = cluster.conn(0);
    let _: () = redis::cmd("RC.CLUSTER.SET")
        .arg(next.to_json())
        .query(&mut c1)
        .unwrap();
    // n2 is down for the write (its hint waits on n1), back for the read, and n1 is frozen
    // then, so the read gets its two answers from n3 and n2.
    cluster.nodes[1].kill9();
    assert_eq!(set(&mut c1, "moving", "new", &[]).unwrap(), Value::Okay);
    cluster.signal(0, libc::SIGSTOP);
    cluster.nodes[1].restart();
    let read = get(&mut cluster.conn(2), "moving", &["TIMEOUT", "500"]);
    cluster.signal(0, libc::SIGCONT);
    assert_eq!(read.unwrap(), bulk("new"));
    // n4, in the new list only, holds it too.
    assert!(replica(&mut cluster.conn(3), "moving").is_some_and(|(v, _)| v.is_some()));
}

#[test]
fn concurrent_writers_on_every_node_converge() {
    let cluster = TestCluster::start(3, |_| {});
    const KEYS: usize = 30;
    const ROUNDS: usize = 15;
    std::thread::scope(|s| {
        for writer in 0..3 {
            let mut c = cluster.conn(writer);
            s.spawn(move || {
                for round in 0..ROUNDS {
                    for k in 0..KEYS {
                        let reply = set(
                            &mut c,
                            &format!("hot{k}"),
                            &format!("w{writer}-r{round}"),
                            &[],
                        );
                        assert_eq!(reply.unwrap(), Value::Okay);
                    }
                }
            });
        }
    });
    let mut conns: Vec<_> = (0..3).map(|i| cluster.conn(i)).collect();
    for k in 0..KEYS {
        let key = format!("hot{k}");
        let converged = wait_for(
            &format!("{key} identical on every replica"),
            Duration::from_secs(10),
            || {
                // Reads through every node repair whatever lags behind.
                for c in conns.iter_mut() {
                    get(c, &key, &["R", "3"]).ok()?;
                }
                let held: Vec<_> = conns.iter_mut().map(|c| replica(c, &key)).collect();
                let first = held[0].clone()?;
                held.iter()
                    .all(|h| h.as_ref() == Some(&first))
                    .then_some(first)
            },
        );
        // The newest write won: each writer's last write has a newer version than all its
        // earlier ones (one coordinator's clock only moves forward), so the newest write of all
        // is some writer's last round.
        let (value, _) = converged;
        let value = String::from_utf8(value.unwrap_or_default()).unwrap();
        assert!(
            value.ends_with(&format!("-r{}", ROUNDS - 1)),
            "{key} converged to {value}, not a last-round write"
        );
        // And every node's quorum read returns that one value.
        let values: Vec<Value> = conns
            .iter_mut()
            .map(|c| get(c, &key, &[]).unwrap())
            .collect();
        assert!(values.iter().all(|v| *v == values[0]), "{key}: {values:?}");
    }
}

#[test]
fn sloppy_quorum_counts_a_substitute_and_its_hint_reaches_the_node() {
    // Four nodes, N=3: one preference node down, a W=3 write still succeeds via the fourth.
    let mut cluster = TestCluster::start(4, |t| t.quorum.w = 3);
    let key = "sloppy";
    let pref = cluster.preference(key);
    let down = cluster.index(&pref[1]);
    let coordinator = cluster.index(&pref[0]);
    let outsider = (0..4)
        .find(|i| !pref.contains(&cluster.topology.members[*i].id))
        .unwrap();
    cluster.nodes[down].kill9();
    let mut c = cluster.conn(coordinator);
    assert_eq!(set(&mut c, key, "v", &["W", "3"]).unwrap(), Value::Okay);
    let mut sub = cluster.conn(outsider);
    assert!(
        info_number(&mut sub, "hints_stored") >= 1,
        "the substitute holds the hint"
    );
    cluster.nodes[down].restart();
    let mut back = cluster.conn(down);
    wait_for(
        "the substitute's hint delivered",
        Duration::from_secs(10),
        || replica(&mut back, key).filter(|(v, _)| v.as_deref() == Some(&b"v"[..])),
    );
    wait_for(
        "the hint dropped once delivered",
        Duration::from_secs(5),
        || {
            let n: i64 = redis::cmd("EXISTS")
                .arg(format!("hint:{}", pref[1]))
                .query(&mut sub)
                .ok()?;
            (n == 0).then_some(())
        },
    );
}

#[test]
fn tombstones_are_purged_after_the_grace_period() {
    let cluster = TestCluster::start(3, |t| t.tombstone_grace_ms = 1_000);
    let mut c1 = cluster.conn(0);
    set(&mut c1, "temp", "v", &["W", "3"]).unwrap();
    call(&mut c1, &[b"RC.DEL", b"temp", b"W", b"3"]).unwrap();
    for i in 0..3 {
        let mut c = cluster.conn(i);
        wait_for("the tombstone purged", Duration::from_secs(10), || {
            let n: i64 = redis::cmd("EXISTS").arg("kv:temp").query(&mut c).ok()?;
            (n == 0).then_some(())
        });
    }
    assert_eq!(get(&mut c1, "temp", &[]).unwrap(), Value::Nil);
}

#[test]
fn bad_requests_are_refused_with_a_code() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c = cluster.conn(0);
    for (args, code, needle) in [
        (vec![&b"RC.SET"[..], b"k"], "ERR", "usage: RC.SET"),
        (
            vec![b"RC.SET", b"k", b"v", b"W", b"0"],
            "BADARG",
            "between 1 and N=3",
        ),
        (
            vec![b"RC.SET", b"k", b"v", b"W", b"4"],
            "BADARG",
            "between 1 and N=3",
        ),
        (
            vec![b"RC.GET", b"k", b"R", b"9"],
            "BADARG",
            "between 1 and N=3",
        ),
        (
            vec![b"RC.GET", b"k", b"W", b"2"],
            "BADARG",
            "unknown option 'W'",
        ),
        (
            vec![b"RC.SET", b"k", b"v", b"TIMEOUT", b"0"],
            "BADARG",
            "TIMEOUT",
        ),
        (vec![b"RC.SET", b"k", b"v", b"TIMEOUT"], "BADARG", "pairs"),
        (
            vec![b"RC.DEL", b"", b"W", b"2"],
            "BADARG",
            "key must not be empty",
        ),
        (vec![b"RC.CLUSTER.SET", b"{}"], "BADARG", "topology"),
    ] {
        let (got, msg) = error_of(call(&mut c, &args));
        assert_eq!(got, code, "{args:?}: {msg}");
        assert!(msg.contains(needle), "{args:?}: {msg}");
    }
    // Inside MULTI a quorum write cannot wait for peers: refused, nothing hangs.
    let (_, msg) = error_of(
        redis::pipe()
            .atomic()
            .cmd("RC.SET")
            .arg("m")
            .arg("v")
            .query::<Value>(&mut c),
    );
    assert!(msg.contains("cannot run inside MULTI"), "{msg}");
    // An older topology epoch is refused.
    let mut older = cluster.topology.clone();
    older.epoch = 0;
    let (code, msg) = error_of(call(
        &mut c,
        &[b"RC.CLUSTER.SET", older.to_json().as_bytes()],
    ));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("older"), "{msg}");
}

#[test]
fn without_a_topology_quorum_commands_say_not_ready() {
    let r = Redis::start(&["node-id", "n1"]);
    let mut c = r.conn();
    let (code, msg) = error_of(call(&mut c, &[b"RC.SET", b"k", b"v"]));
    assert_eq!(code, "NOTREADY");
    assert!(msg.contains("RC.CLUSTER.SET"), "{msg}");
}

#[test]
fn hints_with_binary_values_are_kept_and_dropped() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c = cluster.conn(0);
    let put = |c: &mut redis::Connection, version: &[u8]| {
        call(
            c,
            &[
                b"RC.HINT.PUT",
                b"n9",
                b"k",
                version,
                b"n1",
                b"0",
                b"\xff\x00\xfe",
            ],
        )
        .unwrap()
    };
    assert_eq!(put(&mut c, b"5"), Value::SimpleString("applied".into()));
    assert_eq!(put(&mut c, b"4"), Value::SimpleString("stale".into()));
    assert_eq!(
        call(&mut c, &[b"RC.HINT.DONE", b"n9", b"k", b"4", b"n1"]).unwrap(),
        Value::Int(0)
    );
    assert_eq!(
        call(&mut c, &[b"RC.HINT.DONE", b"n9", b"k", b"5", b"n1"]).unwrap(),
        Value::Int(1)
    );
    let left: i64 = redis::cmd("EXISTS").arg("hint:n9").query(&mut c).unwrap();
    assert_eq!(left, 0);
    assert_eq!(info_number(&mut c, "panics_caught"), 0);
}
