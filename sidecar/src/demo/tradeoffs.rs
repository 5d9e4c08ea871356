//! `trade-offs`: the same workload (writes and reads of a small key space through every node)
//! at W/R = 1/1, 2/2, 3/1 and 1/3 (the per-request `W`/`R` options), then a file at two chunk
//! sizes: throughput, p50/p99 latency, the Redis servers' CPU and memory for each; stale reads
//! judged by the checker (`POST /api/checks`, register workload, no faults) at each W/R set as
//! the cluster's quorum. A table on the terminal, the rows as JSON for the page. Low-resource
//! mode is not compared here: it is a start option of every node (see docs/scenarios.md).

use std::time::{Duration, Instant};

use rcluster_domain::config::NodeConfig;
use rcluster_domain::demo::{may_read_stale, trade_table, TradeRow};
use serde_json::{json, Value};

use super::cluster::{cpu_s, num, Cluster};
use super::{Ctx, Halt, Verdict};
use crate::client::percent_encode;

pub const STEPS: &[&str] = &[
    "the same workload at W/R 1/1, 2/2, 3/1 and 1/3",
    "stale reads at each W/R, judged by the checker's register workload",
    "a file at two chunk sizes",
    "the table",
];

/// Why low-resource mode is not part of the comparison.
const LOW_RESOURCE: &str = "not compared: --low-resource is a start option of every node \
    (rcluster up --low-resource); run this scenario on such a cluster and compare the tables";

/// CPU seconds and memory of every node's Redis.
async fn usage(c: &Cluster, nodes: &[NodeConfig]) -> (f64, u64) {
    let (mut cpu, mut mem) = (0.0, 0u64);
    for n in nodes {
        if let Ok(i) = c.info(n).await {
            cpu += cpu_s(&i);
            mem += num(&i, "used_memory") as u64;
        }
    }
    (cpu, mem)
}

/// Two clients writing (W `w`) and reading (R `r`) keys of `prefix` for `secs`.
async fn workload(
    ctx: &Ctx,
    nodes: &[NodeConfig],
    w: u8,
    r: u8,
    secs: f64,
) -> Result<TradeRow, Halt> {
    let c = ctx.cluster.clone();
    let (cpu0, _) = usage(&c, nodes).await;
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let prefix = format!("demo:{}:trade:{w}{r}", ctx.id());
    let clients: Vec<_> = (0..2usize)
        .map(|client| {
            let c = c.clone();
            let nodes = nodes.to_vec();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let (mut samples, mut errors, mut i) = (Vec::new(), 0u64, 0usize);
                while Instant::now() < until {
                    let node = &nodes[(client + i) % nodes.len()];
                    let key = format!("{prefix}:{}", i % 50);
                    let cmd = if i % 2 == 0 {
                        let mut c = redis::cmd("RC.SET");
                        c.arg(&key).arg(format!("v{i}")).arg("W").arg(w);
                        c
                    } else {
                        let mut c = redis::cmd("RC.GET");
                        c.arg(&key).arg("R").arg(r);
                        c
                    };
                    let t = Instant::now();
                    match c.redis::<redis::Value>(node, &cmd).await {
                        Ok(_) => samples.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                    i += 1;
                }
                (samples, errors)
            })
        })
        .collect();
    let (mut samples, mut errors) = (Vec::new(), 0);
    for h in clients {
        if let Ok((s, e)) = h.await {
            samples.extend(s);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    let (cpu1, mem) = usage(&c, nodes).await;
    let mut row = TradeRow::of(
        &format!("W/R {w}/{r}"),
        &samples,
        errors,
        elapsed.as_millis() as u64,
    );
    row.cpu_percent = (cpu1 - cpu0) * 100.0 / elapsed.as_secs_f64().max(0.001);
    row.memory_bytes = mem;
    Ok(row)
}

/// Stale reads the checker found with the cluster's quorum set to `n/w/r` (`None`: not
/// judged, or the checker could not run; the reason is said).
async fn checked(ctx: &Ctx, nodes: &[NodeConfig], n: u8, w: u8, r: u8) -> Option<u64> {
    let c = &ctx.cluster;
    let q = json!({"n": n, "w": w, "r": r});
    match c.ask(nodes, "PUT", "/api/cluster/quorum", Some(&q)).await {
        Ok(a) if a.status < 300 => {}
        Ok(a) => {
            ctx.say(&format!("  quorum {w}/{r}: {} {}", a.status, a.text.trim()))
                .await;
            return None;
        }
        Err(e) => {
            ctx.say(&format!("  quorum {w}/{r}: {e}")).await;
            return None;
        }
    }
    // The check runs on the quorum Raft applied: wait until every member has it.
    for _ in 0..50 {
        let mut applied = true;
        for m in nodes {
            let a = c.call(m, "GET", "/api/cluster", None).await;
            applied &= a.is_ok_and(|a| a.json["replicated_quorum"] == q);
        }
        if applied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = if ctx.short { 2 } else { 10 };
    let body = json!({"schedule": "none", "seconds": seconds, "workloads": ["register"]});
    let started = match c.ask(nodes, "POST", "/api/checks", Some(&body)).await {
        Ok(a) if a.status == 202 => a,
        Ok(a) => {
            ctx.say(&format!(
                "  the checker did not start: {} {}",
                a.status,
                a.text.trim()
            ))
            .await;
            return None;
        }
        Err(e) => {
            ctx.say(&format!("  the checker did not start: {e}")).await;
            return None;
        }
    };
    let id = started.json["id"].as_str()?.to_string();
    let owner = nodes.iter().find(|m| m.id == started.node)?.clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let path = format!("/api/checks/{}", percent_encode(&id));
        let Ok(a) = c.call(&owner, "GET", &path, None).await else {
            continue;
        };
        match a.json["state"].as_str() {
            Some("running") => continue,
            Some("passed") | Some("failed") => {
                let report = &a.json["report"];
                let stale = report["stale_reads"].as_array().map_or(0, Vec::len) as u64;
                let judged = report["stale_judged"].as_bool().unwrap_or(false);
                ctx.say(&format!(
                    "  W/R {w}/{r}: check {id} {}: {}",
                    a.json["state"].as_str().unwrap_or(""),
                    if judged {
                        format!("{stale} stale reads")
                    } else {
                        "stale reads not judged (R + W <= N: a read need not see the last write)"
                            .to_string()
                    }
                ))
                .await;
                return judged.then_some(stale);
            }
            other => {
                ctx.say(&format!(
                    "  W/R {w}/{r}: check {id} {}: {}",
                    other.unwrap_or("?"),
                    a.json["error"].as_str().unwrap_or("")
                ))
                .await;
                return None;
            }
        }
    }
    ctx.say(&format!("  W/R {w}/{r}: check {id} did not end in 180 s"))
        .await;
    None
}

/// Upload then download `size` bytes with chunks of `chunk` bytes: one row.
async fn file_row(ctx: &Ctx, nodes: &[NodeConfig], chunk: u64, size: usize) -> Result<Value, Halt> {
    let c = &ctx.cluster;
    let body = json!({ "chunk_size_bytes": chunk });
    // The same change may be asked again: a node busy with another change (409), a burst of
    // requests (429) or a leader change (5xx, every node) is waited out a few times.
    let mut attempt = 0;
    let a = loop {
        attempt += 1;
        let a = c
            .ask(nodes, "PUT", "/api/cluster/settings", Some(&body))
            .await;
        let again = match &a {
            Ok(a) => a.status == 409 || a.status == 429,
            Err(_) => true,
        };
        if !again || attempt == 5 {
            break a?;
        }
        ctx.pause(Duration::from_secs(1)).await?;
    };
    if a.status >= 300 {
        return Err(Halt::Error(format!(
            "chunk size {chunk}: {} {}",
            a.status,
            a.text.trim()
        )));
    }
    // The new size reaches every node's module with the next topology.
    ctx.pause(Duration::from_secs(1)).await?;
    let data: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
    let (cpu0, _) = usage(c, nodes).await;
    let t = Instant::now();
    let up = c
        .call_raw(
            &nodes[0],
            "POST",
            &format!("/api/files?name={}-{chunk}.bin", ctx.id()),
            Some(&data),
        )
        .await?;
    let up_ms = t.elapsed().as_secs_f64() * 1000.0;
    let id = up.json["id"].as_str().unwrap_or_default().to_string();
    let t = Instant::now();
    let down = c
        .call_raw(
            &nodes[nodes.len() - 1],
            "GET",
            &format!("/api/files/{}/content", percent_encode(&id)),
            None,
        )
        .await?;
    let down_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (cpu1, mem) = usage(c, nodes).await;
    let ok = down.status == 200 && down.body == data;
    let _ = c
        .call(
            &nodes[0],
            "DELETE",
            &format!("/api/files/{}", percent_encode(&id)),
            None,
        )
        .await;
    let mb = size as f64 / 1048576.0;
    let line = format!(
        "  chunk {:>5} KiB: {} chunks, upload {up_ms:.0} ms ({:.1} MiB/s), download {down_ms:.0} \
         ms ({:.1} MiB/s), cpu {:.1} s, memory {:.1} MiB{}",
        chunk >> 10,
        up.json["chunk_count"].as_u64().unwrap_or(0),
        mb * 1000.0 / up_ms.max(0.001),
        mb * 1000.0 / down_ms.max(0.001),
        cpu1 - cpu0,
        mem as f64 / 1048576.0,
        if ok { "" } else { " (DOWNLOAD DIFFERS)" }
    );
    ctx.say(&line).await;
    Ok(json!({
        "chunk_size_bytes": chunk, "file_bytes": size, "chunks": up.json["chunk_count"],
        "upload_ms": up_ms, "download_ms": down_ms,
        "upload_mib_per_s": mb * 1000.0 / up_ms.max(0.001),
        "download_mib_per_s": mb * 1000.0 / down_ms.max(0.001),
        "cpu_s": cpu1 - cpu0, "memory_bytes": mem, "intact": ok,
    }))
}

pub async fn run(ctx: &Ctx) -> Result<Verdict, Halt> {
    let c = &ctx.cluster;
    let members = c.members().await?;
    let cluster = c.ask(&members, "GET", "/api/cluster", None).await?;
    let quorum = cluster.json["quorum"].clone();
    let n = quorum["n"].as_u64().unwrap_or(3).min(255) as u8;
    let chunk_before = cluster.json["chunk_size_bytes"].as_u64().unwrap_or(1 << 20);
    let pairs: Vec<(u8, u8)> = [(1, 1), (2, 2), (3, 1), (1, 3)]
        .into_iter()
        .map(|(w, r)| (w.min(n), r.min(n)))
        .collect();
    let secs = if ctx.short { 1.0 } else { 5.0 };

    ctx.step(1).await?;
    let mut rows = Vec::new();
    for &(w, r) in &pairs {
        let row = workload(ctx, &members, w, r, secs).await?;
        ctx.say(&format!(
            "  W/R {w}/{r}: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            row.ops_per_s, row.p50_ms, row.p99_ms, row.errors
        ))
        .await;
        rows.push(row);
    }

    ctx.step(2).await?;
    let checker = c.ask(&members, "GET", "/api/checks", None).await;
    if !matches!(&checker, Ok(a) if a.status == 200) {
        ctx.say("  the checker (/api/checks) does not answer here: stale reads not judged")
            .await;
    }
    let judge = matches!(&checker, Ok(a) if a.status == 200);
    if judge {
        ctx.quorum(quorum.clone());
    }
    for (row, &(w, r)) in rows.iter_mut().zip(&pairs).filter(|_| judge) {
        row.stale_reads = checked(ctx, &members, n, w, r).await;
        if ctx.run.stopped() {
            return Err(Halt::Stopped);
        }
    }
    if judge {
        // The files below run at the cluster's own quorum (the restore says it again at the end).
        let _ = c
            .ask(&members, "PUT", "/api/cluster/quorum", Some(&quorum))
            .await;
    }

    ctx.step(3).await?;
    ctx.chunk_size(chunk_before);
    let size = if ctx.short { 8 << 20 } else { 12 << 20 };
    let mut files = Vec::new();
    for chunk in [1u64 << 20, 4 << 20] {
        files.push(file_row(ctx, &members, chunk, size).await?);
    }

    ctx.step(4).await?;
    ctx.say(&trade_table(&rows)).await;
    ctx.say(&format!("low-resource mode: {LOW_RESOURCE}")).await;
    let stale_where_overlap: u64 = rows
        .iter()
        .zip(&pairs)
        .filter(|(_, (w, r))| !may_read_stale(n, *w, *r))
        .filter_map(|(row, _)| row.stale_reads)
        .sum();
    let files_ok = files.iter().all(|f| f["intact"] == true);
    Ok(Verdict {
        passed: rows.iter().all(|r| r.ops > 0) && stale_where_overlap == 0 && files_ok,
        figures: json!({
            "n": n,
            "rows": rows,
            "files": files,
            "stale_reads_with_overlapping_quorums": stale_where_overlap,
            "low_resource": LOW_RESOURCE,
        }),
    })
}
