//! Bounded work and memory in the module: the held counts are recounted in steps after a
//! reload and come out right; a 5 MiB `RC.CHUNK.SET ... *` (hashed off Redis's main thread)
//! still answers its digest and stores the chunk everywhere, its AOF included; a hint past
//! `max_hint_bytes_per_node` is refused and counted, and never fails a client's write; the hints
//! held for a node that left are dropped when a topology without it is installed. How long the
//! main thread stalls is measured by bench/main_thread_stall.sh, not here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcluster_domain::checksum::{crc32c_hex, sha256_hex};
use rcluster_domain::hint::{encode, stored_bytes};
use rcluster_domain::hlc::Timestamp;
use rcluster_domain::version::Version;
use rcluster_tests::{call, error_of, info_number, pseudo_random, wait_for, Redis, TestCluster};
use redis::Value;

fn info(c: &mut redis::Connection) -> String {
    redis::cmd("INFO").arg("rcluster").query(c).unwrap()
}

/// The `hints_for_<node>` field of `INFO rcluster`, if present.
fn hints_for(c: &mut redis::Connection, node: &str) -> Option<String> {
    info(c)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("rcluster_hints_for_{node}:")))
        .map(|v| v.trim().to_string())
}

fn exists(c: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(c).unwrap() == 1
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn put_hint(c: &mut redis::Connection, node: &str, key: &str, ts: u64, value: &[u8]) -> Value {
    let answer = call(
        c,
        &[
            b"RC.HINT.PUT",
            node.as_bytes(),
            key.as_bytes(),
            ts.to_string().as_bytes(),
            b"n1",
            b"0",
            value,
        ],
    );
    answer.unwrap_or_else(|e| panic!("RC.HINT.PUT {node} {key}: {e}"))
}

/// Bytes a hint of `value` at `ts` (origin n1) takes for `key`.
fn hint_bytes(key: &str, ts: u64, value: &[u8]) -> u64 {
    stored_bytes(
        key.as_bytes(),
        encode(&Version::new(ts, "n1"), false, value).len(),
    )
}

#[test]
fn the_held_counts_are_recounted_in_steps_after_a_reload_of_50000_keys() {
    let r = Redis::start_with(&["--enable-debug-command", "yes"], &[]);
    let mut c = r.conn();
    // The recount after start-up is over before anything is written.
    wait_for("the first recount", Duration::from_secs(30), || {
        (info_number(&mut c, "recount_in_progress") == 0).then_some(())
    });
    const KEYS: usize = 50_000;
    for batch in 0..KEYS / 1_000 {
        let mut pipe = redis::pipe();
        for i in batch * 1_000..(batch + 1) * 1_000 {
            pipe.cmd("RC.REPLICA.PUT")
                .arg(format!("k{i}"))
                .arg("v")
                .arg(1_000 + i)
                .arg("n1")
                .ignore();
        }
        pipe.query::<()>(&mut c).unwrap();
    }
    for i in 0..5 {
        let data = pseudo_random(1_000, i);
        let idx = i.to_string();
        call(
            &mut c,
            &[
                b"RC.CHUNK.PUT",
                b"f",
                idx.as_bytes(),
                sha256_hex(&data).as_bytes(),
                &data,
            ],
        )
        .unwrap();
    }
    // Hints written a minute ago (by their versions), for a node outside any topology.
    let ts = Timestamp::new(now_ms() - 60_000, 0).0;
    let mut hint_total = 0;
    for i in 0..100 {
        let key = format!("h{i}");
        put_hint(&mut c, "n9", &key, ts + i, b"held");
        if i != 0 {
            hint_total += hint_bytes(&key, ts + i, b"held");
        }
    }
    assert_eq!(info_number(&mut c, "kv_keys"), KEYS as i64);
    // Changed behind the module's back: only a recount sees it.
    for batch in 0..10 {
        let mut del = redis::cmd("DEL");
        for i in batch * 100..(batch + 1) * 100 {
            del.arg(format!("kv:k{i}"));
        }
        del.query::<i64>(&mut c).unwrap();
    }
    let _: i64 = redis::cmd("DEL").arg("chunk:f:4").query(&mut c).unwrap();
    let _: i64 = redis::cmd("HDEL")
        .arg("hint:n9")
        .arg("h0")
        .query(&mut c)
        .unwrap();
    assert_eq!(info_number(&mut c, "kv_keys"), KEYS as i64);
    let steps = info_number(&mut c, "recount_steps");

    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    // Asked for by the load itself: shown at once, the previous counts meanwhile.
    assert_eq!(info_number(&mut c, "recount_in_progress"), 1);
    wait_for(
        "the recount after the reload",
        Duration::from_secs(60),
        || (info_number(&mut c, "recount_in_progress") == 0).then_some(()),
    );
    assert_eq!(info_number(&mut c, "kv_keys"), KEYS as i64 - 1_000);
    assert_eq!(info_number(&mut c, "chunks"), 4);
    assert_eq!(info_number(&mut c, "chunk_bytes"), 4_000);
    let held = hints_for(&mut c, "n9").expect("hints_for_n9 in INFO");
    assert!(
        held.starts_with(&format!("count=99,bytes={hint_total},oldest_ms=")),
        "{held}"
    );
    let oldest: u64 = held.rsplit('=').next().unwrap().parse().unwrap();
    assert!(oldest >= 60_000, "{held}");
    // 50,000 keys are more than one step of at most a millisecond.
    let taken = info_number(&mut c, "recount_steps") - steps;
    assert!(taken >= 2, "the recount took {taken} step(s)");
    assert_eq!(info_number(&mut c, "panics_caught"), 0);
}

#[test]
fn a_5_mib_chunk_set_with_a_star_digest_answers_its_digest_and_stores_it_everywhere() {
    let mut cluster = TestCluster::start(3, |_| {});
    let data = pseudo_random(5 << 20, 7);
    let digest = sha256_hex(&data);
    let mut c1 = cluster.conn(0);
    let answer = call(
        &mut c1,
        &[b"RC.CHUNK.SET", b"big", b"0", b"*", &data, b"W", b"3"],
    );
    assert_eq!(
        answer.unwrap(),
        Value::BulkString(digest.clone().into_bytes())
    );
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let (sha, crc, len): (String, String, i64) = redis::cmd("HMGET")
            .arg("chunk:big:0")
            .arg("sha256")
            .arg("crc32c")
            .arg("length")
            .query(&mut c)
            .unwrap();
        assert_eq!((sha.as_str(), len), (digest.as_str(), 5 << 20), "node {i}");
        assert_eq!(crc, crc32c_hex(&data), "node {i}");
        assert_eq!(info_number(&mut c, "chunk_bytes"), 5 << 20, "node {i}");
    }
    // A wrong digest stores nothing anywhere.
    let (code, msg) = error_of(call(
        &mut c1,
        &[
            b"RC.CHUNK.SET",
            b"big",
            b"1",
            sha256_hex(b"x").as_bytes(),
            &data,
        ],
    ));
    assert_eq!(code, "CHECKSUM", "{msg}");
    for i in 0..3 {
        assert!(!exists(&mut cluster.conn(i), "chunk:big:1"), "node {i}");
    }
    // Inside MULTI the client cannot wait: hashed on the spot, with this node's copy as W=1.
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("RC.CHUNK.SET")
        .arg("big")
        .arg(2)
        .arg("*")
        .arg(&data[..1 << 20])
        .arg("W")
        .arg(1);
    let (in_multi,): (String,) = pipe.query(&mut c1).unwrap();
    assert_eq!(in_multi, sha256_hex(&data[..1 << 20]));
    // The copy stored under Redis's lock reached the AOF: a restarted node still has it.
    drop(c1);
    cluster.nodes[0].restart();
    let mut c1 = cluster.conn(0);
    let stored: String = redis::cmd("HGET")
        .arg("chunk:big:0")
        .arg("sha256")
        .query(&mut c1)
        .unwrap();
    assert_eq!(stored, digest);
    wait_for(
        "the recount after the restart",
        Duration::from_secs(30),
        || (info_number(&mut c1, "recount_in_progress") == 0).then_some(()),
    );
    assert_eq!(info_number(&mut c1, "chunk_bytes"), (5 << 20) + (1 << 20));
    assert_eq!(info_number(&mut c1, "panics_caught"), 0);
}

#[test]
fn a_hint_past_the_cap_is_refused_and_counted_and_the_write_still_succeeds() {
    let mut cluster = TestCluster::start(3, |t| t.max_hint_bytes_per_node = 4096);
    // n2 is down, so nothing is replayed to it.
    cluster.nodes[1].kill9();
    let mut c1 = cluster.conn(0);
    let value = vec![b'x'; 1000];
    let mut held = 0;
    for i in 0..4 {
        let key = format!("k{i}");
        assert_eq!(
            put_hint(&mut c1, "n2", &key, 1000 + i, &value),
            Value::SimpleString("applied".into())
        );
        held += hint_bytes(&key, 1000 + i, &value);
    }
    assert!(held <= 4096 && held + hint_bytes("k4", 1004, &value) > 4096);
    let (code, msg) = error_of(call(
        &mut c1,
        &[b"RC.HINT.PUT", b"n2", b"k4", b"1004", b"n1", b"0", &value],
    ));
    assert_eq!(code, "TOOLARGE", "{msg}");
    assert!(msg.contains("max_hint_bytes_per_node 4096"), "{msg}");
    assert_eq!(info_number(&mut c1, "hints_refused"), 1);
    let hlen: i64 = redis::cmd("HLEN").arg("hint:n2").query(&mut c1).unwrap();
    assert_eq!(hlen, 4);
    // Replacing a held hint with one of the same size fits: only the difference counts.
    assert_eq!(
        put_hint(&mut c1, "n2", "k0", 2000, &value),
        Value::SimpleString("applied".into())
    );
    let backlog = hints_for(&mut c1, "n2").expect("hints_for_n2");
    assert!(
        backlog.starts_with(&format!("count=4,bytes={held},")),
        "{backlog}"
    );
    // Client writes through n1 while n2 is down: the hints for n2 no longer fit, and every
    // write still succeeds on n1 and n3.
    for i in 0..10 {
        let key = format!("w{i}");
        let answer = call(&mut c1, &[b"RC.SET", key.as_bytes(), &value, b"W", b"2"]);
        assert_eq!(answer.unwrap(), Value::Okay, "{key}");
    }
    wait_for("the refused hints counted", Duration::from_secs(10), || {
        (info_number(&mut c1, "hints_refused") >= 11).then_some(())
    });
    let hlen: i64 = redis::cmd("HLEN").arg("hint:n2").query(&mut c1).unwrap();
    assert_eq!(hlen, 4);
    assert_eq!(info_number(&mut c1, "panics_caught"), 0);
}

#[test]
fn hints_for_a_member_that_left_are_dropped_when_the_topology_without_it_is_installed() {
    let mut cluster = TestCluster::start(3, |_| {});
    cluster.nodes[2].kill9();
    let mut c1 = cluster.conn(0);
    for i in 0..3 {
        let key = format!("k{i}");
        assert_eq!(
            put_hint(&mut c1, "n3", &key, 1000 + i, b"v"),
            Value::SimpleString("applied".into())
        );
    }
    assert!(hints_for(&mut c1, "n3").is_some_and(|h| h.starts_with("count=3,")));
    // Hints for n2, still a member, stay.
    put_hint(&mut c1, "n2", "kept", 1000, b"v");
    let mut without = cluster.topology.clone();
    without.epoch = 2;
    without.members.retain(|m| m.id != "n3");
    without.quorum = rcluster_domain::config::Quorum { n: 2, w: 1, r: 1 };
    let _: () = redis::cmd("RC.CLUSTER.SET")
        .arg(without.to_json())
        .query(&mut c1)
        .unwrap();
    assert!(!exists(&mut c1, "hint:n3"));
    assert_eq!(hints_for(&mut c1, "n3"), None);
    assert_eq!(info_number(&mut c1, "hints_dropped"), 3);
    assert!(exists(&mut c1, "hint:n2") || info_number(&mut c1, "hints_replayed") >= 1);
    // Dropped in the AOF too: a restart does not bring them back.
    drop(c1);
    cluster.nodes[0].restart();
    let mut c1 = cluster.conn(0);
    assert!(!exists(&mut c1, "hint:n3"));
    wait_for(
        "the recount after the restart",
        Duration::from_secs(30),
        || (info_number(&mut c1, "recount_in_progress") == 0).then_some(()),
    );
    assert_eq!(hints_for(&mut c1, "n3"), None);
    assert_eq!(info_number(&mut c1, "panics_caught"), 0);
}
