//! Durability: every acknowledged module write reaches the AOF, so a Redis killed with SIGKILL
//! and restarted from its AOF still has all of it (and its counters are recounted).

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::{call, Redis};
use redis::Value;

#[test]
fn sigkill_and_restart_keeps_every_acknowledged_write() {
    let mut r = Redis::start(&[]);
    let mut c = r.conn();
    const KEYS: u32 = 2_000;
    for i in 0..KEYS {
        let reply = call(
            &mut c,
            &[
                b"RC.REPLICA.PUT",
                format!("k{i}").as_bytes(),
                format!("v{i}").as_bytes(),
                b"10",
                b"n1",
            ],
        )
        .unwrap();
        assert!(matches!(reply, Value::Array(_)));
    }
    // Overwrites, deletes and chunks must survive too.
    call(&mut c, &[b"RC.REPLICA.PUT", b"k0", b"newer", b"11", b"n2"]).unwrap();
    call(&mut c, &[b"RC.REPLICA.DEL", b"k1", b"12", b"n1"]).unwrap();
    let chunk = vec![42u8; 300_000];
    call(
        &mut c,
        &[
            b"RC.CHUNK.PUT",
            b"file",
            b"0",
            sha256_hex(&chunk).as_bytes(),
            &chunk,
        ],
    )
    .unwrap();
    drop(c);

    r.kill9();
    assert!(!r.alive());
    r.restart();
    let mut c = r.conn();

    let get =
        |c: &mut redis::Connection, k: &str| call(c, &[b"RC.REPLICA.GET", k.as_bytes()]).unwrap();
    assert_eq!(
        get(&mut c, "k0"),
        Value::Array(vec![
            Value::BulkString(b"newer".to_vec()),
            Value::BulkString(b"11".to_vec()),
            Value::BulkString(b"n2".to_vec()),
            Value::Int(0)
        ])
    );
    assert_eq!(
        get(&mut c, "k1"),
        Value::Array(vec![
            Value::Nil,
            Value::BulkString(b"12".to_vec()),
            Value::BulkString(b"n1".to_vec()),
            Value::Int(1)
        ])
    );
    for i in 2..KEYS {
        match get(&mut c, &format!("k{i}")) {
            Value::Array(items) => {
                assert_eq!(items[0], Value::BulkString(format!("v{i}").into_bytes()))
            }
            other => panic!("k{i} lost after restart: {other:?}"),
        }
    }
    assert_eq!(
        call(&mut c, &[b"RC.CHUNK.GET", b"file", b"0"]).unwrap(),
        Value::BulkString(chunk)
    );
    // Counters are recounted from the loaded data (the recount runs on the next server tick).
    rcluster_tests::wait_for(
        "INFO to show the recounted keys",
        std::time::Duration::from_secs(5),
        || {
            let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).ok()?;
            (info.contains(&format!("rcluster_kv_keys:{KEYS}\r"))
                && info.contains("rcluster_chunks:1\r"))
            .then_some(())
        },
    );
}
