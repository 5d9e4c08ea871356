//! File chunks against a real `redis-server --loadmodule`: SHA-256 checked on write and on every
//! read, corruption behind the module's back reported as `CHECKSUM`, list and delete.

use rcluster_domain::checksum::sha256_hex;
use rcluster_tests::{call, error_of, Redis};
use redis::Value;

fn put(
    c: &mut redis::Connection,
    file: &str,
    index: u32,
    sha: &str,
    data: &[u8],
) -> redis::RedisResult<Value> {
    call(
        c,
        &[
            b"RC.CHUNK.PUT",
            file.as_bytes(),
            index.to_string().as_bytes(),
            sha.as_bytes(),
            data,
        ],
    )
}

fn get(c: &mut redis::Connection, file: &str, index: u32) -> redis::RedisResult<Value> {
    call(
        c,
        &[
            b"RC.CHUNK.GET",
            file.as_bytes(),
            index.to_string().as_bytes(),
        ],
    )
}

#[test]
fn chunk_with_wrong_sha_is_refused_and_nothing_stored() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let (code, msg) = error_of(put(&mut c, "f1", 0, &sha256_hex(b"other"), b"data"));
    assert_eq!(code, "CHECKSUM");
    assert!(
        msg.contains("chunk:f1:0") && msg.contains("nothing was stored"),
        "{msg}"
    );
    assert_eq!(get(&mut c, "f1", 0).unwrap(), Value::Nil);
    let exists: i64 = redis::cmd("EXISTS")
        .arg("chunk:f1:0")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0);
}

#[test]
fn stored_chunk_reads_back_and_is_listed() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(
        put(&mut c, "f2", 0, &sha256_hex(&data), &data).unwrap(),
        Value::Okay
    );
    // Upper-case hex is accepted and stored lower-case.
    let upper = sha256_hex(b"tail").to_uppercase();
    assert_eq!(put(&mut c, "f2", 1, &upper, b"tail").unwrap(), Value::Okay);
    assert_eq!(
        get(&mut c, "f2", 0).unwrap(),
        Value::BulkString(data.clone())
    );
    let list = call(&mut c, &[b"RC.CHUNK.LIST", b"f2"]).unwrap();
    assert_eq!(
        list,
        Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(100_000),
                Value::BulkString(sha256_hex(&data).into_bytes())
            ]),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(4),
                Value::BulkString(sha256_hex(b"tail").into_bytes())
            ]),
        ])
    );
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    assert!(
        info.contains("rcluster_chunks:2") && info.contains("rcluster_chunk_bytes:100004"),
        "{info}"
    );
}

#[test]
fn corruption_behind_the_modules_back_is_reported_not_returned() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    put(&mut c, "f3", 5, &sha256_hex(b"precious"), b"precious").unwrap();
    let _: () = redis::cmd("HSET")
        .arg("chunk:f3:5")
        .arg("data")
        .arg("tampered")
        .query(&mut c)
        .unwrap();
    let (code, msg) = error_of(get(&mut c, "f3", 5));
    assert_eq!(code, "CHECKSUM");
    assert!(msg.contains("chunk:f3:5 is corrupt"), "{msg}");
    assert!(!msg.contains("tampered"), "bad bytes must not leak: {msg}");
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    assert!(info.contains("rcluster_checksum_failures:1"), "{info}");
    // A fresh put with the right data repairs it.
    put(&mut c, "f3", 5, &sha256_hex(b"precious"), b"precious").unwrap();
    assert_eq!(
        get(&mut c, "f3", 5).unwrap(),
        Value::BulkString(b"precious".to_vec())
    );
    // A chunk missing its data field is CORRUPT, not a crash.
    let _: () = redis::cmd("HDEL")
        .arg("chunk:f3:5")
        .arg("data")
        .query(&mut c)
        .unwrap();
    assert_eq!(error_of(get(&mut c, "f3", 5)).0, "CORRUPT");
}

#[test]
fn delete_one_or_all_chunks() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    for i in 0..4u32 {
        let data = format!("part{i}");
        put(
            &mut c,
            "f4",
            i,
            &sha256_hex(data.as_bytes()),
            data.as_bytes(),
        )
        .unwrap();
    }
    assert_eq!(
        call(&mut c, &[b"RC.CHUNK.DEL", b"f4", b"2"]).unwrap(),
        Value::Int(1)
    );
    assert_eq!(get(&mut c, "f4", 2).unwrap(), Value::Nil);
    assert_eq!(
        call(&mut c, &[b"RC.CHUNK.DEL", b"f4"]).unwrap(),
        Value::Int(3)
    );
    assert_eq!(
        call(&mut c, &[b"RC.CHUNK.LIST", b"f4"]).unwrap(),
        Value::Array(vec![])
    );
    let keys: Vec<String> = redis::cmd("KEYS").arg("*f4*").query(&mut c).unwrap();
    assert!(keys.is_empty(), "left behind: {keys:?}");
}

#[test]
fn chunk_limits_and_bad_ids() {
    let r = Redis::start(&["max-chunk-bytes", "1024"]);
    let mut c = r.conn();
    let big = vec![7u8; 1025];
    let (code, msg) = error_of(put(&mut c, "f5", 0, &sha256_hex(&big), &big));
    assert_eq!(code, "TOOLARGE");
    assert!(msg.contains("rcluster.max-chunk-bytes"), "{msg}");
    let (code, msg) = error_of(put(&mut c, "../etc", 0, &sha256_hex(b"x"), b"x"));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("file id"), "{msg}");
    let (code, _) = error_of(call(
        &mut c,
        &[
            b"RC.CHUNK.PUT",
            b"f5",
            b"-1",
            sha256_hex(b"x").as_bytes(),
            b"x",
        ],
    ));
    assert_eq!(code, "BADARG");
    let (code, msg) = error_of(call(
        &mut c,
        &[b"RC.CHUNK.PUT", b"f5", b"0", b"nothex", b"x"],
    ));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("sha256"), "{msg}");
    let _: () = redis::cmd("SET")
        .arg("file:f6:chunks")
        .arg("oops")
        .query(&mut c)
        .unwrap();
    let (code, _) = error_of(put(&mut c, "f6", 0, &sha256_hex(b"x"), b"x"));
    assert_eq!(code, "WRONGTYPE");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("chunk:f6:0")
        .query(&mut c)
        .unwrap();
    assert_eq!(exists, 0, "a refused put stores nothing");
}

#[test]
fn chunk_indexes_are_canonical_numbers() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let sha = sha256_hex(b"abc");
    for index in [&b"007"[..], b"7", b"00"] {
        call(
            &mut c,
            &[b"RC.CHUNK.PUT", b"f7", index, sha.as_bytes(), b"abc"],
        )
        .unwrap();
    }
    let list = call(&mut c, &[b"RC.CHUNK.LIST", b"f7"]).unwrap();
    let Value::Array(rows) = list else {
        panic!("{list:?}")
    };
    assert_eq!(
        rows.len(),
        2,
        "index 7 and 007 are the same chunk: {rows:?}"
    );
    assert_eq!(
        call(&mut c, &[b"RC.CHUNK.DEL", b"f7"]).unwrap(),
        Value::Int(2)
    );
    let left: i64 = redis::cmd("EXISTS")
        .arg("file:f7:chunks")
        .query(&mut c)
        .unwrap();
    assert_eq!(left, 0);
}
