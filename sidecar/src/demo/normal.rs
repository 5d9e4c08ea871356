//! `normal`: writes and reads through different nodes with their traces (who acknowledged,
//! when the quorum was met), a file uploaded and downloaded with its chunks' placement, and
//! the read repair of a replica made stale on purpose. Verdict: every read saw the latest
//! acknowledged write.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Ctx, Halt, Verdict};
use crate::client::percent_encode;

pub const STEPS: &[&str] = &[
    "writes and reads through different nodes, traced",
    "a file uploaded, its chunks' placement, downloaded and checked",
    "a replica made stale on purpose, and the read that repairs it",
];

/// The trace `id` from `node`'s API, as one line per event that matters.
async fn trace_lines(ctx: &Ctx, node: &rcluster_domain::config::NodeConfig, id: &str) -> String {
    let path = format!("/api/traces/{}", percent_encode(id));
    for _ in 0..20 {
        if let Ok(a) = ctx.cluster.call(node, "GET", &path, None).await {
            if a.status == 200 {
                return describe(&a.json);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    format!("    (trace {id} not kept)")
}

/// A trace's acknowledgements, answers, quorum and repairs, one per line.
fn describe(t: &Value) -> String {
    let mut out = Vec::new();
    for e in t["events"].as_array().into_iter().flatten() {
        let what = e["what"].as_str().unwrap_or("");
        let node = e["node"].as_str().unwrap_or("");
        let at = e["at_us"].as_u64().unwrap_or(0);
        let line = match what {
            "ack" => format!("acknowledged by {node}"),
            "answer" => format!(
                "answer from {node} (version {})",
                e["version"].as_str().unwrap_or("none")
            ),
            "stale" => format!(
                "STALE answer from {node} (version {})",
                e["version"].as_str().unwrap_or("none")
            ),
            "quorum" => format!(
                "quorum met ({}/{}) on {node}",
                e["got"].as_u64().unwrap_or(0),
                e["needed"].as_u64().unwrap_or(0)
            ),
            "repair" => format!("read repair sent to {node}"),
            "repair_ack" => format!("read repair acknowledged by {node}"),
            "hint" => format!("hint kept for {}", e["hint_for"].as_str().unwrap_or(node)),
            _ => continue,
        };
        out.push(format!("    +{at:>6} µs  {line}"));
    }
    out.join("\n")
}

pub async fn run(ctx: &Ctx) -> Result<Verdict, Halt> {
    let c = &ctx.cluster;
    let members = c.members().await?;
    let run = ctx.id();
    ctx.step(1).await?;
    let rounds = if ctx.short { 3 } else { 9 };
    let (mut reads, mut latest) = (0u64, 0u64);
    for i in 0..rounds {
        let writer = &members[i % members.len()];
        let reader = &members[(i + 1) % members.len()];
        let key = format!("demo:{run}:normal:{i}");
        let value = format!("value-{i}");
        let wid = format!("{run}-w{i}");
        let mut set = redis::cmd("RC.SET");
        set.arg(&key).arg(&value).arg("TRACE").arg(&wid);
        let _: String = c.redis(writer, &set).await?;
        ctx.say(&format!(
            "RC.SET {key} through {} (trace {wid}):\n{}",
            writer.id,
            trace_lines(ctx, writer, &wid).await
        ))
        .await;
        let rid = format!("{run}-r{i}");
        let mut get = redis::cmd("RC.GET");
        get.arg(&key).arg("TRACE").arg(&rid);
        let got: Option<String> = c.redis(reader, &get).await?;
        reads += 1;
        let ok = got.as_deref() == Some(value.as_str());
        latest += u64::from(ok);
        ctx.say(&format!(
            "RC.GET {key} through {}: {:?} ({}) (trace {rid}):\n{}",
            reader.id,
            got.unwrap_or_default(),
            if ok {
                "the latest write"
            } else {
                "NOT the latest write"
            },
            trace_lines(ctx, reader, &rid).await
        ))
        .await;
    }

    ctx.step(2).await?;
    let cluster_view = c.ask(&members, "GET", "/api/cluster", None).await?;
    let chunk = cluster_view.json["chunk_size_bytes"]
        .as_u64()
        .unwrap_or(1 << 20);
    // Two and a half chunks (at most 4 MiB in short mode).
    let size = (chunk * 5 / 2).min(if ctx.short { 4 << 20 } else { 64 << 20 }) as usize;
    let body: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let sha = hex::encode(Sha256::digest(&body));
    let name = format!("{run}.bin");
    let up = c
        .call_raw(
            &members[0],
            "POST",
            &format!("/api/files?name={}", percent_encode(&name)),
            Some(&body),
        )
        .await?;
    if up.status != 201 && up.status != 200 {
        return Err(Halt::Error(format!(
            "upload through {}: {} {}",
            up.node, up.status, up.text
        )));
    }
    let file_id = up.json["id"].as_str().unwrap_or_default().to_string();
    let chunks = up.json["chunk_count"].as_u64().unwrap_or(0);
    ctx.say(&format!(
        "uploaded {name} ({size} bytes) through {}: file {file_id}, {chunks} chunks of at most \
         {chunk} bytes",
        members[0].id
    ))
    .await;
    let mut placement = Vec::new();
    for i in 0..chunks {
        let key = rcluster_domain::keys::chunk_key(&file_id, i as u32);
        let mut holders = Vec::new();
        for m in &members {
            if c.redis::<i64>(m, redis::cmd("EXISTS").arg(&key)).await? == 1 {
                holders.push(m.id.clone());
            }
        }
        ctx.say(&format!("chunk {i} is held by {}", holders.join(", ")))
            .await;
        placement.push(json!({"chunk": i, "nodes": holders}));
    }
    let reader = &members[members.len() - 1];
    let down = c
        .call_raw(
            reader,
            "GET",
            &format!("/api/files/{}/content", percent_encode(&file_id)),
            None,
        )
        .await?;
    let file_ok = down.status == 200 && hex::encode(Sha256::digest(&down.body)) == sha;
    ctx.say(&format!(
        "downloaded through {}: {} (SHA-256 {sha})",
        reader.id,
        if file_ok {
            "the same bytes"
        } else {
            "DIFFERENT bytes"
        }
    ))
    .await;
    let _ = c
        .call(
            &members[0],
            "DELETE",
            &format!("/api/files/{}", percent_encode(&file_id)),
            None,
        )
        .await;

    ctx.step(3).await?;
    let key = format!("demo:{run}:normal:stale");
    let n = members.len().min(3).to_string();
    let _: String = c
        .redis(
            &members[0],
            redis::cmd("RC.SET").arg(&key).arg("old").arg("W").arg(&n),
        )
        .await?;
    let rows: Vec<Vec<String>> = c
        .redis(&members[0], redis::cmd("RC.LOCATE").arg(&key))
        .await?;
    let prefs: Vec<String> = rows.iter().filter_map(|r| r.first().cloned()).collect();
    let by_id = |id: &str| members.iter().find(|m| m.id == id).cloned();
    let (Some(stale), Some(first)) = (
        prefs.last().and_then(|id| by_id(id)),
        prefs.first().and_then(|id| by_id(id)),
    ) else {
        return Err(Halt::Error(format!("RC.LOCATE {key}: {rows:?}")));
    };
    let held: Vec<Value> = c
        .redis::<Vec<redis::Value>>(&stale, redis::cmd("RC.REPLICA.GET").arg(&key))
        .await?
        .into_iter()
        .map(|v| match v {
            redis::Value::BulkString(b) => Value::String(String::from_utf8_lossy(&b).into()),
            other => Value::String(format!("{other:?}")),
        })
        .collect();
    let old: u64 = held
        .get(1)
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("RC.REPLICA.GET {key} on {}: {held:?}", stale.id))?;
    let newer = (old + 1000).to_string();
    for id in prefs.iter().filter(|id| **id != stale.id) {
        if let Some(m) = by_id(id) {
            let mut put = redis::cmd("RC.REPLICA.PUT");
            put.arg(&key).arg("new").arg(&newer).arg(&first.id);
            c.redis::<redis::Value>(&m, &put).await?;
        }
    }
    ctx.say(&format!(
        "{key}: every replica but {} now holds \"new\" (version {newer}), written behind the \
         quorum layer; {} still holds \"old\" (version {old})",
        stale.id, stale.id
    ))
    .await;
    let rid = format!("{run}-repair");
    let mut get = redis::cmd("RC.GET");
    get.arg(&key).arg("R").arg(&n).arg("TRACE").arg(&rid);
    let got: Option<String> = c.redis(&first, &get).await?;
    reads += 1;
    let fresh = got.as_deref() == Some("new");
    latest += u64::from(fresh);
    ctx.say(&format!(
        "RC.GET {key} R {n} through {}: {:?} (trace {rid}):\n{}",
        first.id,
        got.unwrap_or_default(),
        trace_lines(ctx, &first, &rid).await
    ))
    .await;
    let mut repaired = false;
    for _ in 0..50 {
        let v: Vec<redis::Value> = c
            .redis(&stale, redis::cmd("RC.REPLICA.GET").arg(&key))
            .await?;
        if matches!(v.first(), Some(redis::Value::BulkString(b)) if b == b"new") {
            repaired = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ctx.say(&format!(
        "{}'s replica after the read: {}",
        stale.id,
        if repaired {
            "\"new\": repaired"
        } else {
            "still stale"
        }
    ))
    .await;
    Ok(Verdict {
        passed: reads == latest && file_ok && repaired,
        figures: json!({
            "reads": reads,
            "reads_saw_latest_write": latest,
            "file_intact": file_ok,
            "chunk_placement": placement,
            "stale_replica_repaired": repaired,
        }),
    })
}
