//! The Redis Insight user: a node started with `insight.password` creates a read-only ACL user
//! on its Redis. With it, reads of the store's keys, `INFO` and the read-only `RC.*` commands
//! succeed; writes, `FLUSHALL`, `CONFIG SET` and the internal commands are refused with NOPERM.
//! Without a password there is no such user. And `config/redisinsight/databases.json` lists one
//! database per node of `config/cluster.yaml`, with that user.

use std::time::Duration;

use rcluster_tests::nodes::NodeCluster;
use rcluster_tests::repo_root;
use redis::Value;

const PASSWORD: &str = "insight-test-pass";

fn as_user(port: u16, user: &str, password: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(format!("redis://{user}:{password}@127.0.0.1:{port}/"))?
        .get_connection_with_timeout(Duration::from_secs(5))
}

fn run(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
}

#[test]
fn the_insight_user_reads_and_cannot_write() {
    let cluster = NodeCluster::start(
        "insight",
        1,
        &format!("insight:\n  user: browse\n  password: {PASSWORD}\n"),
    );
    let port = cluster.redis_ports[0];
    let mut admin = cluster.redis(0);
    assert_eq!(
        run(&mut admin, &["RC.SET", "seen", "hello"]).unwrap(),
        Value::Okay
    );
    let mut c = as_user(port, "browse", PASSWORD).expect("the insight user logs in");
    // Reads: the store's own keys, INFO, and the reading RC commands.
    let Value::Array(fields) = run(&mut c, &["HGETALL", "kv:seen"]).unwrap() else {
        panic!("kv:seen is a hash")
    };
    assert!(!fields.is_empty());
    assert!(matches!(
        run(&mut c, &["SCAN", "0"]).unwrap(),
        Value::Array(_)
    ));
    assert!(matches!(
        run(&mut c, &["TYPE", "kv:seen"]).unwrap(),
        Value::SimpleString(_)
    ));
    let info: String = redis::cmd("INFO").arg("rcluster").query(&mut c).unwrap();
    assert!(info.contains("rcluster_node_id:n1"), "{info}");
    assert_eq!(
        run(&mut c, &["RC.GET", "seen"]).unwrap(),
        Value::BulkString(b"hello".to_vec())
    );
    assert!(matches!(
        run(&mut c, &["RC.LOCATE", "seen"]).unwrap(),
        Value::Array(_)
    ));
    assert!(matches!(
        run(&mut c, &["RC.REPLICA.GET", "seen"]).unwrap(),
        Value::Array(_)
    ));
    assert!(matches!(
        run(&mut c, &["RC.TRACE", "LIST"]).unwrap(),
        Value::Array(_)
    ));
    assert!(run(&mut c, &["RC.CLUSTER.GET"]).is_ok());
    assert_eq!(
        run(&mut c, &["PING"]).unwrap(),
        Value::SimpleString("PONG".into())
    );
    // Writes, dangerous and internal commands: NOPERM, and nothing changed.
    for args in [
        &["SET", "x", "1"][..],
        &["HSET", "kv:seen", "value", "evil"],
        &["DEL", "kv:seen"],
        &["RC.SET", "seen", "evil"],
        &["RC.DEL", "seen"],
        &["FLUSHALL"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["CONFIG", "GET", "requirepass"],
        &["KEYS", "*"],
        &["RC.REPLICA.PUT", "seen", "evil", "99999999999999", "n1"],
        &["RC.REPLICA.DEL", "seen", "99999999999999", "n1"],
        &["RC.HINT.PUT", "n1", "seen", "1", "n1", "0", "evil"],
        &["RC.CHUNK.PUT", "f", "0", "00", "x"],
        &["RC.CLUSTER.SET", "{}"],
        &["RC.META", "SET", "node:x", "y"],
        &["RC.CLOCK"],
        &["ACL", "SETUSER", "browse", "+@all"],
    ] {
        let e = run(&mut c, args).expect_err(&format!("{args:?} must be refused"));
        assert_eq!(e.code(), Some("NOPERM"), "{args:?}: {e}");
    }
    assert_eq!(
        run(&mut admin, &["RC.GET", "seen"]).unwrap(),
        Value::BulkString(b"hello".to_vec())
    );
    // A wrong password is refused.
    assert!(as_user(port, "browse", "not-the-password").is_err());
}

#[test]
fn without_a_password_there_is_no_insight_user() {
    let cluster = NodeCluster::start("insight-off", 1, "");
    let port = cluster.redis_ports[0];
    let mut admin = cluster.redis(0);
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    assert!(!users.iter().any(|u| u == "insight"), "{users:?}");
    assert!(as_user(port, "insight", "anything-at-all").is_err());
}

#[test]
fn the_redis_insight_file_lists_every_node_of_the_config() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("config/cluster.yaml")).unwrap();
    let config = rcluster_domain::config::parse(&text).unwrap();
    let file = std::fs::read_to_string(root.join("config/redisinsight/databases.json")).unwrap();
    let dbs: serde_json::Value = serde_json::from_str(&file).expect("JSON Redis Insight imports");
    let dbs = dbs.as_array().expect("an array of databases");
    assert_eq!(dbs.len(), config.nodes.len());
    for (db, node) in dbs.iter().zip(&config.nodes) {
        assert_eq!(db["host"], node.host.as_str());
        assert_eq!(db["port"].as_u64(), Some(u64::from(node.redis_port)));
        assert_eq!(db["username"], config.insight.user.as_str());
        assert_eq!(db["connectionType"], "STANDALONE");
        assert!(db["name"].as_str().unwrap().contains(&node.id), "{db}");
        assert!(
            db.get("password").is_none(),
            "no password in a file in the repository"
        );
    }
}
