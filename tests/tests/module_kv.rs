//! Versioned registers against a real `redis-server --loadmodule`: put-if-newer, tombstones,
//! the node-id tie-break, limits and bad input (each refused with its code, nothing changed).

use rcluster_tests::{call, error_of, Redis};
use redis::Value;

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Nil => "nil".into(),
        other => format!("{other:?}"),
    }
}

/// A reply flattened to text: `["applied", "100", "n1"]`.
fn words(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        other => vec![text(&other)],
    }
}

fn put(
    c: &mut redis::Connection,
    key: &str,
    value: &str,
    version: u64,
    origin: &str,
) -> Vec<String> {
    words(
        call(
            c,
            &[
                b"RC.REPLICA.PUT",
                key.as_bytes(),
                value.as_bytes(),
                version.to_string().as_bytes(),
                origin.as_bytes(),
            ],
        )
        .unwrap(),
    )
}

fn get(c: &mut redis::Connection, key: &str) -> Vec<String> {
    words(call(c, &[b"RC.REPLICA.GET", key.as_bytes()]).unwrap())
}

#[test]
fn newer_version_wins_and_older_is_refused() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    assert_eq!(put(&mut c, "k", "v1", 100, "n1"), ["applied", "100", "n1"]);
    assert_eq!(put(&mut c, "k", "v2", 101, "n2"), ["applied", "101", "n2"]);
    assert_eq!(put(&mut c, "k", "old", 100, "n3"), ["stale", "101", "n2"]);
    assert_eq!(
        put(&mut c, "k", "v2", 101, "n2"),
        ["duplicate", "101", "n2"]
    );
    assert_eq!(get(&mut c, "k"), ["v2", "101", "n2", "0"]);
    assert_eq!(get(&mut c, "missing"), ["nil"]);
    // The layout is readable with plain Redis commands.
    let fields: Vec<String> = redis::cmd("HGETALL").arg("kv:k").query(&mut c).unwrap();
    assert_eq!(
        fields,
        [
            "value",
            "v2",
            "version",
            "101",
            "origin",
            "n2",
            "tombstone",
            "0"
        ]
    );
}

#[test]
fn equal_times_are_broken_by_node_id() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    assert_eq!(put(&mut c, "t", "from-n2", 500, "n2")[0], "applied");
    assert_eq!(put(&mut c, "t", "from-n1", 500, "n1")[0], "stale");
    assert_eq!(put(&mut c, "t", "from-n3", 500, "n3")[0], "applied");
    assert_eq!(get(&mut c, "t"), ["from-n3", "500", "n3", "0"]);
}

#[test]
fn delete_writes_a_versioned_tombstone() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    put(&mut c, "d", "v", 10, "n1");
    let del = words(call(&mut c, &[b"RC.REPLICA.DEL", b"d", b"20", b"n1"]).unwrap());
    assert_eq!(del, ["applied", "20", "n1"]);
    assert_eq!(get(&mut c, "d"), ["nil", "20", "n1", "1"]);
    // A late, older write does not bring the value back.
    assert_eq!(put(&mut c, "d", "zombie", 15, "n2")[0], "stale");
    // An older delete does not remove a newer value.
    put(&mut c, "d", "again", 30, "n1");
    assert_eq!(
        words(call(&mut c, &[b"RC.REPLICA.DEL", b"d", b"25", b"n9"]).unwrap())[0],
        "stale"
    );
    assert_eq!(get(&mut c, "d"), ["again", "30", "n1", "0"]);
    // Deleting a key never written still records the tombstone.
    assert_eq!(
        words(call(&mut c, &[b"RC.REPLICA.DEL", b"never", b"5", b"n1"]).unwrap())[0],
        "applied"
    );
    assert_eq!(get(&mut c, "never"), ["nil", "5", "n1", "1"]);
}

#[test]
fn bad_input_gets_a_coded_error_and_changes_nothing() {
    let r = Redis::start(&["max-key-bytes", "16", "max-value-bytes", "32"]);
    let mut c = r.conn();
    put(&mut c, "keep", "safe", 7, "n1");
    let cases: Vec<(Vec<&[u8]>, &str, &str)> = vec![
        (
            vec![b"RC.REPLICA.PUT", b"keep"],
            "ERR",
            "wrong number of arguments",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"keep", b"x", b"8", b"n1", b"extra"],
            "ERR",
            "usage: RC.REPLICA.PUT",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"keep", b"x", b"abc", b"n1"],
            "BADARG",
            "version must be",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"keep", b"x", b"-8", b"n1"],
            "BADARG",
            "version must be",
        ),
        (
            vec![
                b"RC.REPLICA.PUT",
                b"keep",
                b"x",
                b"99999999999999999999",
                b"n1",
            ],
            "BADARG",
            "version",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"keep", b"x", b"8", b"N 1"],
            "BADARG",
            "node id",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"", b"x", b"8", b"n1"],
            "BADARG",
            "key must not be empty",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"\xff\xfe", b"x", b"8", b"n1"],
            "BADARG",
            "UTF-8",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"k_is_much_too_long", b"x", b"8", b"n1"],
            "TOOLARGE",
            "rcluster.max-key-bytes",
        ),
        (
            vec![b"RC.REPLICA.PUT", b"keep", &[b'v'; 33], b"8", b"n1"],
            "TOOLARGE",
            "rcluster.max-value-bytes",
        ),
        (vec![b"RC.REPLICA.GET"], "ERR", "usage: RC.REPLICA.GET"),
        (
            vec![b"RC.REPLICA.DEL", b"keep", b"x", b"n1"],
            "BADARG",
            "version",
        ),
    ];
    for (args, code, needle) in cases {
        let (got_code, msg) = error_of(call(&mut c, &args));
        assert_eq!(got_code, code, "{args:?} -> {msg}");
        assert!(
            msg.contains(needle),
            "{args:?}: '{msg}' should mention '{needle}'"
        );
    }
    assert_eq!(get(&mut c, "keep"), ["safe", "7", "n1", "0"]);
}

#[test]
fn key_of_another_type_is_wrongtype_and_untouched() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let _: () = redis::cmd("SET")
        .arg("kv:s")
        .arg("plain")
        .query(&mut c)
        .unwrap();
    let (code, msg) = error_of(call(&mut c, &[b"RC.REPLICA.PUT", b"s", b"v", b"1", b"n1"]));
    assert_eq!(code, "WRONGTYPE");
    assert!(msg.contains("kv:s holds a string"), "{msg}");
    let (code, _) = error_of(call(&mut c, &[b"RC.REPLICA.GET", b"s"]));
    assert_eq!(code, "WRONGTYPE");
    let still: String = redis::cmd("GET").arg("kv:s").query(&mut c).unwrap();
    assert_eq!(still, "plain");
}

#[test]
fn record_damaged_behind_the_module_is_reported_corrupt() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    put(&mut c, "x", "v", 9, "n1");
    let _: () = redis::cmd("HSET")
        .arg("kv:x")
        .arg("version")
        .arg("nine")
        .query(&mut c)
        .unwrap();
    let (code, msg) = error_of(call(&mut c, &[b"RC.REPLICA.GET", b"x"]));
    assert_eq!(code, "CORRUPT");
    assert!(msg.contains("kv:x") && msg.contains("version"), "{msg}");
    let (code, _) = error_of(call(&mut c, &[b"RC.REPLICA.PUT", b"x", b"w", b"10", b"n1"]));
    assert_eq!(code, "CORRUPT");
}

#[test]
fn binary_values_round_trip() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let value: Vec<u8> = (0..=255u8).collect();
    call(&mut c, &[b"RC.REPLICA.PUT", b"bin", &value, b"1", b"n1"]).unwrap();
    match call(&mut c, &[b"RC.REPLICA.GET", b"bin"]).unwrap() {
        Value::Array(items) => assert_eq!(items[0], Value::BulkString(value)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn clock_is_monotonic_and_merges() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let now = |c: &mut redis::Connection| -> u64 {
        words(call(c, &[b"RC.CLOCK"]).unwrap())[0].parse().unwrap()
    };
    let mut last = now(&mut c);
    for _ in 0..200 {
        let t = now(&mut c);
        assert!(t > last);
        last = t;
    }
    // A remote timestamp 10 s ahead is merged: the clock moves past it.
    let ahead = last + (10_000 << 16);
    let merged = words(
        call(
            &mut c,
            &[b"RC.CLOCK", b"MERGE", ahead.to_string().as_bytes()],
        )
        .unwrap(),
    );
    assert!(merged[0].parse::<u64>().unwrap() > ahead);
    assert!(now(&mut c) > ahead);
    // One a day ahead is refused.
    let far = last + (86_400_000u64 << 16);
    let (code, msg) = error_of(call(
        &mut c,
        &[b"RC.CLOCK", b"MERGE", far.to_string().as_bytes()],
    ));
    assert_eq!(code, "CLOCKSKEW", "{msg}");
    let (code, _) = error_of(call(&mut c, &[b"RC.CLOCK", b"BOGUS"]));
    assert_eq!(code, "BADARG");
}

#[test]
fn info_section_counts_keys_and_commands() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    put(&mut c, "a", "1", 1, "n1");
    put(&mut c, "b", "1", 1, "n1");
    let _ = call(&mut c, &[b"RC.REPLICA.PUT", b"a"]);
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    assert!(info.contains("# rcluster"), "{info}");
    assert!(info.contains("rcluster_module_version:0.1.0"), "{info}");
    assert!(info.contains("rcluster_kv_keys:2"), "{info}");
    assert!(
        info.contains("rcluster_cmd_rc_replica_put:calls=3,errors=1"),
        "{info}"
    );
}

#[test]
fn keys_with_nul_bytes_are_stored_like_any_other() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let reply = words(call(&mut c, &[b"RC.REPLICA.PUT", b"k\x00nul", b"v", b"1", b"n1"]).unwrap());
    assert_eq!(reply, ["applied", "1", "n1"]);
    assert_eq!(
        words(call(&mut c, &[b"RC.REPLICA.GET", b"k\x00nul"]).unwrap()),
        ["v", "1", "n1", "0"]
    );
    assert_eq!(
        words(call(&mut c, &[b"RC.REPLICA.GET", b"k"]).unwrap()),
        ["nil"]
    );
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    assert!(info.contains("rcluster_panics_caught:0"), "{info}");
}

#[test]
fn a_full_node_refuses_writes_with_oom_and_keeps_its_data() {
    let r = Redis::start_with(&["--maxmemory", "3mb"], &[]);
    let mut c = r.conn();
    put(&mut c, "first", "kept", 1, "n1");
    let value = vec![b'x'; 64 * 1024];
    let mut written = 0u32;
    let oom = loop {
        let key = format!("fill{written}");
        match call(
            &mut c,
            &[b"RC.REPLICA.PUT", key.as_bytes(), &value, b"1", b"n1"],
        ) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(
            written < 1_000,
            "3 MB never filled up: is maxmemory ignored?"
        );
    };
    assert_eq!(oom.code(), Some("OOM"), "{oom}");
    assert!(written > 0);
    // The node process's metadata still goes in through RC.META (Raft state, status hashes),
    // and only that: other keys and other commands are refused, plain SET stays refused.
    assert_eq!(
        call(&mut c, &[b"RC.META", b"SET", b"node:n1:raft", b"state"]).unwrap(),
        redis::Value::Okay
    );
    assert_eq!(
        call(
            &mut c,
            &[b"RC.META", b"HSET", b"node:n1:status", b"state", b"alive"]
        )
        .unwrap(),
        redis::Value::Int(1)
    );
    assert_eq!(
        call(&mut c, &[b"RC.META", b"RPUSH", b"node:n1:log", b"a", b"b"]).unwrap(),
        redis::Value::Int(2)
    );
    let raft: String = redis::cmd("GET").arg("node:n1:raft").query(&mut c).unwrap();
    assert_eq!(raft, "state");
    for (args, code, what) in [
        (
            vec![&b"RC.META"[..], b"SET", b"kv:x", b"y"],
            "BADARG",
            "only cluster:* and node:*",
        ),
        (
            vec![&b"RC.META"[..], b"FLUSHALL", b"node:x"],
            "BADARG",
            "not 'FLUSHALL'",
        ),
        (
            vec![&b"RC.META"[..], b"SET"],
            "ERR",
            "wrong number of arguments",
        ),
        (vec![&b"SET"[..], b"node:n1:other", b"y"], "OOM", ""),
    ] {
        let e = call(&mut c, &args).unwrap_err();
        assert_eq!(e.code(), Some(code), "{e}");
        assert!(e.to_string().contains(what), "{e}");
    }
    // Nothing was evicted: every acknowledged write is still readable.
    assert_eq!(get(&mut c, "first"), ["kept", "1", "n1", "0"]);
    for i in 0..written {
        assert_eq!(
            get(&mut c, &format!("fill{i}"))[1],
            "1",
            "fill{i} was evicted"
        );
    }
}

#[test]
fn info_names_every_field_once() {
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let text: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("rcluster_")) {
        let name = line.split(':').next().unwrap_or_default();
        assert!(
            seen.insert(name.to_string()),
            "{name} appears twice:\n{text}"
        );
    }
    assert!(seen.contains("rcluster_topology_epoch"), "{text}");
}

/// The module registers exactly the contract's table: every row under its name with its flags,
/// and no other `RC.*` command.
#[test]
fn the_registered_commands_are_the_contract_table() {
    use rcluster_domain::rc::COMMANDS;
    let r = Redis::start(&[]);
    let mut c = r.conn();
    let listed = call(
        &mut c,
        &[b"COMMAND", b"LIST", b"FILTERBY", b"MODULE", b"rcluster"],
    )
    .expect("COMMAND LIST");
    let mut registered: Vec<String> = words(listed)
        .iter()
        .map(|n| n.to_ascii_uppercase())
        .collect();
    registered.sort();
    let mut table: Vec<String> = COMMANDS.iter().map(|s| s.name.to_string()).collect();
    table.sort();
    assert_eq!(registered, table);
    for spec in &COMMANDS {
        let info =
            call(&mut c, &[b"COMMAND", b"INFO", spec.name.as_bytes()]).expect("COMMAND INFO");
        let Value::Array(rows) = info else {
            panic!("COMMAND INFO {} replied {info:?}", spec.name)
        };
        let Some(Value::Array(fields)) = rows.first() else {
            panic!("COMMAND INFO {} has no row", spec.name)
        };
        let flags = fields.get(2).map(|f| words(f.clone())).unwrap_or_default();
        // COMMAND INFO spells deny-oom as denyoom.
        for flag in spec.flags.split_whitespace() {
            let shown = flag.replace('-', "");
            assert!(
                flags.contains(&shown),
                "{}: {flags:?} lacks {shown}",
                spec.name
            );
        }
    }
}
