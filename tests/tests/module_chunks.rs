//! File chunks against a real `redis-server --loadmodule`: SHA-256 (or a sender's CRC-32C)
//! checked on write, CRC-32C (SHA-256 for copies without one) on every read, corruption behind
//! the module's back reported as `CHECKSUM`, list and delete.

use rcluster_domain::checksum::{crc32c_hex, sha256_hex};
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

fn hget(c: &mut redis::Connection, key: &str, field: &str) -> Option<String> {
    redis::cmd("HGET").arg(key).arg(field).query(c).unwrap()
}

#[test]
fn a_put_records_the_crc32c_and_a_put_with_one_is_checked_against_it() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let data = b"transferred bytes";
    let (sha, crc) = (sha256_hex(data), crc32c_hex(data));
    // Without CRC32C the SHA-256 is checked and the CRC-32C computed and kept.
    put(&mut c, "fc", 0, &sha, data).unwrap();
    assert_eq!(hget(&mut c, "chunk:fc:0", "crc32c").as_deref(), Some(&*crc));
    let with_crc = |c: &mut redis::Connection, index: &str, crc: &[u8]| {
        call(
            c,
            &[
                b"RC.CHUNK.PUT",
                b"fc",
                index.as_bytes(),
                sha.as_bytes(),
                data,
                b"crc32c",
                crc,
            ],
        )
    };
    assert_eq!(
        with_crc(&mut c, "1", crc.to_uppercase().as_bytes()).unwrap(),
        Value::Okay
    );
    assert_eq!(
        get(&mut c, "fc", 1).unwrap(),
        Value::BulkString(data.to_vec())
    );
    // Bytes damaged on the way: refused, nothing stored.
    let (code, msg) = error_of(with_crc(&mut c, "2", b"00000000"));
    assert_eq!(code, "CHECKSUM");
    assert!(
        msg.contains("chunk:fc:2") && msg.contains("crc32c") && msg.contains("nothing was stored"),
        "{msg}"
    );
    assert_eq!(get(&mut c, "fc", 2).unwrap(), Value::Nil);
    // Malformed: a clear BADARG naming the problem.
    let (code, msg) = error_of(with_crc(&mut c, "3", b"xyz"));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("crc32c must be 8 hex characters"), "{msg}");
    let (code, msg) = error_of(call(
        &mut c,
        &[
            b"RC.CHUNK.PUT",
            b"fc",
            b"4",
            sha.as_bytes(),
            data,
            b"MD5",
            b"x",
        ],
    ));
    assert_eq!(code, "BADARG");
    assert!(msg.contains("expected CRC32C"), "{msg}");
    assert_eq!(get(&mut c, "fc", 3).unwrap(), Value::Nil);
    assert_eq!(get(&mut c, "fc", 4).unwrap(), Value::Nil);
}

#[test]
fn a_copy_without_a_crc32c_is_checked_against_its_sha256_and_a_damaged_crc_is_corruption() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let data = b"kept by an older build";
    // A copy as builds before the CRC-32C stored it.
    let _: () = redis::cmd("HSET")
        .arg("chunk:fo:0")
        .arg("sha256")
        .arg(sha256_hex(data))
        .arg("length")
        .arg(data.len())
        .arg("data")
        .arg(&data[..])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        get(&mut c, "fo", 0).unwrap(),
        Value::BulkString(data.to_vec())
    );
    let _: () = redis::cmd("HSET")
        .arg("chunk:fo:0")
        .arg("data")
        .arg("kept by an older buil!")
        .query(&mut c)
        .unwrap();
    let (code, msg) = error_of(get(&mut c, "fo", 0));
    assert_eq!(code, "CHECKSUM");
    assert!(msg.contains("stored sha256"), "{msg}");
    // A current copy whose CRC-32C field was overwritten is reported, not served.
    put(&mut c, "fo", 1, &sha256_hex(data), data).unwrap();
    let _: () = redis::cmd("HSET")
        .arg("chunk:fo:1")
        .arg("crc32c")
        .arg("12345678")
        .query(&mut c)
        .unwrap();
    let (code, msg) = error_of(get(&mut c, "fo", 1));
    assert_eq!(code, "CHECKSUM");
    assert!(msg.contains("stored crc32c 12345678"), "{msg}");
}
