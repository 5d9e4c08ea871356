//! Quorum chunk commands on a real 3-node cluster: `RC.CHUNK.SET` stores on W replicas,
//! `RC.CHUNK.FETCH` returns verified bytes from any node, reads past a corrupt or missing copy
//! and repairs it, and never returns bad bytes.

use std::time::Duration;

use rcluster_domain::checksum::{crc32c_hex, sha256_hex};
use rcluster_tests::{call, error_of, info_number, wait_for, TestCluster};
use redis::Value;

fn set(
    c: &mut redis::Connection,
    file: &str,
    index: u32,
    data: &[u8],
    extra: &[&str],
) -> redis::RedisResult<Value> {
    let (i, sha) = (index.to_string(), sha256_hex(data));
    let mut args: Vec<&[u8]> = vec![
        b"RC.CHUNK.SET",
        file.as_bytes(),
        i.as_bytes(),
        sha.as_bytes(),
        data,
    ];
    args.extend(extra.iter().map(|a| a.as_bytes()));
    call(c, &args)
}

fn fetch(c: &mut redis::Connection, file: &str, index: u32) -> redis::RedisResult<Value> {
    call(
        c,
        &[
            b"RC.CHUNK.FETCH",
            file.as_bytes(),
            index.to_string().as_bytes(),
        ],
    )
}

#[test]
fn a_chunk_written_on_one_node_is_fetched_verified_from_every_node() {
    let cluster = TestCluster::start(3, |_| {});
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let mut c1 = cluster.conn(0);
    assert_eq!(
        set(&mut c1, "f1", 0, &data, &["W", "3"]).unwrap(),
        Value::Okay
    );
    for i in 0..3 {
        let mut c = cluster.conn(i);
        assert_eq!(
            fetch(&mut c, "f1", 0).unwrap(),
            Value::BulkString(data.clone())
        );
    }
    assert_eq!(fetch(&mut c1, "f1", 9).unwrap(), Value::Nil);
    // A wrong digest stores nothing anywhere.
    let (code, _) = error_of(call(
        &mut c1,
        &[
            b"RC.CHUNK.SET",
            b"f1",
            b"1",
            sha256_hex(b"x").as_bytes(),
            b"y",
        ],
    ));
    assert_eq!(code, "CHECKSUM");
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let n: i64 = redis::cmd("EXISTS")
            .arg("chunk:f1:1")
            .query(&mut c)
            .unwrap();
        assert_eq!(n, 0);
    }
}

#[test]
fn a_corrupt_or_missing_copy_is_read_around_and_repaired() {
    let cluster = TestCluster::start(3, |_| {});
    let data = b"the precious bytes".to_vec();
    let mut c1 = cluster.conn(0);
    set(&mut c1, "f2", 0, &data, &["W", "3"]).unwrap();
    let mut c2 = cluster.conn(1);
    let mut c3 = cluster.conn(2);
    let _: () = redis::cmd("HSET")
        .arg("chunk:f2:0")
        .arg("data")
        .arg("tampered")
        .query(&mut c2)
        .unwrap();
    let _: i64 = redis::cmd("DEL").arg("chunk:f2:0").query(&mut c3).unwrap();
    // Through the node with the corrupt copy, and through the one without a copy: good bytes.
    assert_eq!(
        fetch(&mut c2, "f2", 0).unwrap(),
        Value::BulkString(data.clone())
    );
    assert_eq!(
        fetch(&mut c3, "f2", 0).unwrap(),
        Value::BulkString(data.clone())
    );
    for c in [&mut c2, &mut c3] {
        wait_for("the copy repaired", Duration::from_secs(5), || {
            (call(c, &[b"RC.CHUNK.GET", b"f2", b"0"]).ok()? == Value::BulkString(data.clone()))
                .then_some(())
        });
    }
    wait_for("repairs counted", Duration::from_secs(5), || {
        (info_number(&mut c2, "chunk_repairs") + info_number(&mut c3, "chunk_repairs") >= 2)
            .then_some(())
    });
}

#[test]
fn with_no_intact_copy_the_fetch_fails_and_never_returns_bad_bytes() {
    let cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    set(&mut c1, "f3", 0, b"original", &["W", "3"]).unwrap();
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let _: () = redis::cmd("HSET")
            .arg("chunk:f3:0")
            .arg("data")
            .arg("garbage")
            .query(&mut c)
            .unwrap();
    }
    let (code, msg) = error_of(fetch(&mut c1, "f3", 0));
    assert_eq!(code, "CHECKSUM");
    assert!(msg.contains("no intact replica"), "{msg}");
    assert!(!msg.contains("garbage"), "{msg}");
}

#[test]
fn chunk_writes_need_w_replicas() {
    let mut cluster = TestCluster::start(3, |_| {});
    let mut c1 = cluster.conn(0);
    cluster.nodes[1].kill9();
    assert_eq!(
        set(&mut c1, "f4", 0, b"ok", &["W", "2"]).unwrap(),
        Value::Okay
    );
    assert_eq!(
        fetch(&mut c1, "f4", 0).unwrap(),
        Value::BulkString(b"ok".to_vec())
    );
    cluster.nodes[2].kill9();
    let (code, msg) = error_of(set(&mut c1, "f4", 1, b"no", &["W", "2", "TIMEOUT", "500"]));
    assert_eq!(code, "NOQUORUM", "{msg}");
    let (code, _) = error_of(call(&mut c1, &[b"RC.CHUNK.FETCH", b"f4", b"0", b"R", b"2"]));
    assert_eq!(code, "BADARG");
}

#[test]
fn a_fetch_with_the_recorded_digest_serves_only_bytes_that_match_it() {
    let cluster = TestCluster::start(3, |_| {});
    let data = b"recorded at upload".to_vec();
    let (good, other) = (sha256_hex(&data), sha256_hex(b"something else"));
    let mut c1 = cluster.conn(0);
    assert_eq!(
        set(&mut c1, "f5", 0, &data, &["W", "3"]).unwrap(),
        Value::Okay
    );
    let failures_before = info_number(&mut c1, "checksum_failures");
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let got = call(
            &mut c,
            &[b"RC.CHUNK.FETCH", b"f5", b"0", b"SHA256", good.as_bytes()],
        );
        assert_eq!(got.unwrap(), Value::BulkString(data.clone()));
        // Every copy is intact but none is the one the caller recorded: no bytes come back,
        // whether this node holds a copy (N=3: every node does) or asks the others.
        let (code, msg) = error_of(call(
            &mut c,
            &[b"RC.CHUNK.FETCH", b"f5", b"0", b"SHA256", other.as_bytes()],
        ));
        assert_eq!(code, "CHECKSUM", "{msg}");
        assert!(msg.contains(&other), "{msg}");
    }
    assert!(info_number(&mut c1, "checksum_failures") > failures_before);
    for (args, what) in [
        (vec![&b"SHA256"[..]], "SHA256 needs a value"),
        (vec![&b"SHA256"[..], b"xyz"], "sha256 must be 64 hex"),
    ] {
        let mut full: Vec<&[u8]> = vec![b"RC.CHUNK.FETCH", b"f5", b"0"];
        full.extend(args);
        let (code, msg) = error_of(call(&mut c1, &full));
        assert_eq!(code, "BADARG", "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
    // The stored copies are untouched by the refused fetches.
    assert_eq!(
        fetch(&mut c1, "f5", 0).unwrap(),
        Value::BulkString(data.clone())
    );
}

#[test]
fn a_chunk_set_with_a_star_digest_is_hashed_by_the_module_and_answers_the_digest() {
    let cluster = TestCluster::start(3, |_| {});
    let data: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut c1 = cluster.conn(0);
    let answer = call(
        &mut c1,
        &[b"RC.CHUNK.SET", b"f6", b"0", b"*", &data, b"W", b"3"],
    );
    assert_eq!(
        answer.unwrap(),
        Value::BulkString(sha256_hex(&data).into_bytes())
    );
    for i in 0..3 {
        let mut c = cluster.conn(i);
        let stored: String = redis::cmd("HGET")
            .arg("chunk:f6:0")
            .arg("sha256")
            .query(&mut c)
            .unwrap();
        assert_eq!(stored, sha256_hex(&data), "node {i}");
        // Every copy carries the CRC-32C its reads are checked with.
        let crc: String = redis::cmd("HGET")
            .arg("chunk:f6:0")
            .arg("crc32c")
            .query(&mut c)
            .unwrap();
        assert_eq!(crc, crc32c_hex(&data), "node {i}");
        assert_eq!(
            fetch(&mut c, "f6", 0).unwrap(),
            Value::BulkString(data.clone())
        );
    }
    // Only the quorum command computes: a replica-level put needs the digest.
    let (code, msg) = error_of(call(&mut c1, &[b"RC.CHUNK.PUT", b"f6", b"1", b"*", b"x"]));
    assert_eq!(code, "BADARG", "{msg}");
}
