//! `scaling`: a fourth node joins under load and leaves again. The temporary node is started
//! and admitted by `rcluster node add` and removed by `rcluster node remove` (this executable,
//! run as a child whose progress lines are narrated), so starting a local node has one home.
//! Verdict: the share of replica copies the new node took against the ideal 1/(n+1), nothing
//! lost, client latency during the move.

use std::process::Stdio;
use std::time::Duration;

use rcluster_domain::demo::{Latency, Moved};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::cluster::{lost, Load, Op};
use super::{Ctx, Halt, Verdict};

pub const STEPS: &[&str] = &[
    "keys written, and the load per node before",
    "a fourth node joins under load: ranges move to it",
    "what moved, against the ideal 1/(n+1)",
    "the node leaves again: its ranges move back",
    "every acknowledged write read back",
];

/// Runs `rcluster node <args...>` against the scenario's cluster, narrating its lines.
async fn node_command(ctx: &Ctx, args: &[&str]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("node")
        .args(args)
        .arg("--config")
        .arg(&ctx.cluster.config_path)
        .args(["--timeout-s", "300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(k) = ctx.cluster.key() {
        cmd.args(["--api-key", k]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run rcluster node {}: {e}", args.join(" ")))?;
    let mut lines = Vec::new();
    if let Some(err) = child.stderr.take() {
        let mut r = BufReader::new(err).lines();
        while let Ok(Some(line)) = r.next_line().await {
            ctx.say(&format!("  rcluster node {}: {line}", args[0]))
                .await;
            lines.push(line);
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("rcluster node {}: {e}", args.join(" ")))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "rcluster node {} failed ({status}): {}",
            args.join(" "),
            lines.last().cloned().unwrap_or_default()
        ))
    }
}

/// Has the temporary node `id` leave and stop (also the restore of a stopped run).
pub async fn remove_node(ctx: &Ctx, id: &str) -> Result<(), String> {
    node_command(ctx, &["remove", id]).await
}

/// Keys and load per member, one line each, and the copies in all.
async fn per_node(ctx: &Ctx) -> Result<(Vec<(String, u64)>, u64), Halt> {
    // The counts travel in heartbeats: two intervals make them current.
    let beat = ctx.cluster.config.intervals.heartbeat_ms;
    ctx.pause(Duration::from_millis(2 * beat)).await?;
    let view = ctx.cluster.view().await?;
    let mut rows = Vec::new();
    for n in &view.nodes {
        let node = super::cluster::node_of(n);
        let ops = ctx
            .cluster
            .info(&node)
            .await
            .map(|i| super::cluster::num(&i, "instantaneous_ops_per_sec"))
            .unwrap_or(0.0);
        let keys = n.kv_keys.unwrap_or(0).max(0) as u64;
        ctx.say(&format!("  {:<8} {keys:>7} copies {ops:>7.0} ops/s", n.id))
            .await;
        rows.push((n.id.clone(), keys));
    }
    let total = rows.iter().map(|(_, k)| k).sum();
    Ok((rows, total))
}

pub async fn run(ctx: &Ctx) -> Result<Verdict, Halt> {
    let c = &ctx.cluster;
    let members = c.members().await?;
    let n_before = members.len();
    let temp = format!("demo{}", ctx.at_ms() % 1000);

    ctx.step(1).await?;
    let keys = if ctx.short { 300 } else { 3000 };
    let prefix = format!("demo:{}:scaling", ctx.id());
    for i in 0..keys {
        let m = &members[i % n_before];
        let _: String = c
            .redis(
                m,
                redis::cmd("RC.SET")
                    .arg(format!("{prefix}:k{i}"))
                    .arg(format!("v{i}")),
            )
            .await?;
    }
    ctx.say(&format!("{keys} keys written; per node:")).await;
    let (_, before) = per_node(ctx).await?;

    ctx.step(2).await?;
    let load = Load::start(
        c.clone(),
        members.clone(),
        2,
        &format!("{prefix}:load"),
        Duration::from_millis(20),
        ctx.t0(),
    );
    let join_at = ctx.at_ms();
    ctx.temp_node(Some(&temp));
    if let Err(e) = node_command(ctx, &["add", &temp]).await {
        let _ = load.finish().await;
        return Err(Halt::Error(e));
    }
    let joined_ms = ctx.at_ms() - join_at;
    ctx.say(&format!(
        "{temp} joined and the data moved in {:.1} s",
        joined_ms as f64 / 1000.0
    ))
    .await;

    ctx.step(3).await?;
    ctx.say("copies per node after the join:").await;
    let (rows, total) = per_node(ctx).await?;
    let took = rows
        .iter()
        .find(|(id, _)| *id == temp)
        .map_or(0, |(_, k)| *k);
    let moved = Moved::of(took, total, n_before);
    ctx.say(&format!(
        "{temp} holds {took} of {total} copies: {:.1}% (ideal 1/{} = {:.1}%){}",
        moved.fraction * 100.0,
        n_before + 1,
        moved.ideal * 100.0,
        if moved.near_ideal {
            ""
        } else {
            ": far from the ideal"
        }
    ))
    .await;

    ctx.step(4).await?;
    let leave_at = ctx.at_ms();
    let left = remove_node(ctx, &temp).await;
    if left.is_ok() {
        ctx.temp_node(None);
    }
    let ops = load.finish().await;
    left?;
    ctx.say(&format!(
        "{temp} left in {:.1} s; copies per node:",
        (ctx.at_ms() - leave_at) as f64 / 1000.0
    ))
    .await;
    let (_, after) = per_node(ctx).await?;

    ctx.step(5).await?;
    let moving: Vec<u64> = ops
        .iter()
        .filter(|o| o.error.is_none() && o.attempt.at_ms >= join_at)
        .map(|o| o.took_us)
        .collect();
    let latency = Latency::of(&moving);
    let mut all = ops.clone();
    all.extend((0..keys).map(|i| Op::written(format!("{prefix}:k{i}"), format!("v{i}"))));
    let lost = lost(c, &members, &all).await?;
    let failed = ops.iter().filter(|o| o.error.is_some()).count();
    ctx.say(&format!(
        "{} acknowledged writes read back: {lost} lost; {failed} writes failed during the \
         move; latency while moving p50 {:.2} ms, p99 {:.2} ms",
        all.len() - failed,
        latency.p50_us as f64 / 1000.0,
        latency.p99_us as f64 / 1000.0
    ))
    .await;
    Ok(Verdict {
        passed: lost == 0 && moved.near_ideal,
        figures: json!({
            "temporary_node": temp,
            "members_before": n_before,
            "copies_before": before,
            "copies_after_leave": after,
            "moved": moved,
            "join_and_move_ms": joined_ms,
            "acknowledged_writes_lost": lost,
            "writes_failed_during_move": failed,
            "latency_during_move": latency,
        }),
    })
}
