//! `resources`: memory, CPU, clients and operations per node (each Redis's `INFO`) while the
//! load rises, then one node brought near its memory limit (its Redis's `maxmemory` lowered
//! with `CONFIG SET`, put back at the end): what the store answers when full, that nothing
//! acknowledged is lost, and that writes succeed again once space is freed.

use std::time::{Duration, Instant};

use rcluster_domain::config::NodeConfig;
use serde_json::{json, Value};

use super::cluster::{cpu_s, lost, num, Load, Op};
use super::{Ctx, Halt, Verdict};

pub const STEPS: &[&str] = &[
    "memory, CPU, clients and operations per node at rest",
    "the load rises: 1, then 4 clients",
    "one node nears its memory limit",
    "what the store answers when that node is full",
    "nothing acknowledged was lost",
    "space is freed, and writes succeed again",
];

/// One line per node: memory, CPU used since `cpu_before`, clients, ops/s; the CPU seconds.
async fn sample(ctx: &Ctx, nodes: &[NodeConfig], cpu_before: &[f64], secs: f64) -> Vec<Value> {
    let mut rows = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let Ok(info) = ctx.cluster.info(n).await else {
            ctx.say(&format!("  {:<8} (no answer)", n.id)).await;
            continue;
        };
        // No earlier sample: no CPU figure.
        let cpu_pct = cpu_before
            .get(i)
            .map(|b| (cpu_s(&info) - b) * 100.0 / secs.max(0.001));
        let cpu_text = cpu_pct.map_or_else(|| "     -".to_string(), |p| format!("{p:>5.1}%"));
        let mem = num(&info, "used_memory");
        let max = num(&info, "maxmemory");
        let line = format!(
            "  {:<8} memory {:>7.1} MiB of {:>6.0} MiB  cpu {cpu_text}  clients {:>3}  {:>6.0} ops/s",
            n.id,
            mem / 1048576.0,
            max / 1048576.0,
            num(&info, "connected_clients"),
            num(&info, "instantaneous_ops_per_sec")
        );
        ctx.say(&line).await;
        rows.push(json!({
            "node": n.id, "used_memory_bytes": mem as u64, "maxmemory_bytes": max as u64,
            "cpu_percent": cpu_pct.map(|p| (p * 10.0).round() / 10.0),
            "clients": num(&info, "connected_clients") as u64,
            "ops_per_s": num(&info, "instantaneous_ops_per_sec") as u64,
        }));
    }
    rows
}

async fn cpu_all(ctx: &Ctx, nodes: &[NodeConfig]) -> Vec<f64> {
    let mut out = Vec::new();
    for n in nodes {
        out.push(ctx.cluster.info(n).await.map(|i| cpu_s(&i)).unwrap_or(0.0));
    }
    out
}

/// Runs `clients` writers for `secs` and shows the nodes meanwhile.
async fn load_for(
    ctx: &Ctx,
    nodes: &[NodeConfig],
    clients: usize,
    secs: u64,
) -> Result<(Vec<Op>, Vec<Value>), Halt> {
    let cpu = cpu_all(ctx, nodes).await;
    let start = Instant::now();
    let load = Load::start(
        ctx.cluster.clone(),
        nodes.to_vec(),
        clients,
        &format!("demo:{}:res:c{clients}", ctx.id()),
        Duration::ZERO,
        ctx.t0(),
    );
    let waited = ctx.pause(Duration::from_secs(secs)).await;
    let rows = sample(ctx, nodes, &cpu, start.elapsed().as_secs_f64()).await;
    let ops = load.finish().await;
    waited?;
    Ok((ops, rows))
}

pub async fn run(ctx: &Ctx) -> Result<Verdict, Halt> {
    let c = &ctx.cluster;
    let members = c.members().await?;
    let secs = if ctx.short { 1 } else { 5 };

    ctx.step(1).await?;
    let cpu = cpu_all(ctx, &members).await;
    ctx.pause(Duration::from_millis(500)).await?;
    let rest = sample(ctx, &members, &cpu, 0.5).await;

    ctx.step(2).await?;
    ctx.say("1 client:").await;
    let (mut acked, one) = load_for(ctx, &members, 1, secs).await?;
    ctx.say("4 clients:").await;
    let (more, four) = load_for(ctx, &members, 4, secs).await?;
    acked.extend(more);

    ctx.step(3).await?;
    let full = members[members.len() - 1].clone();
    let config: Vec<String> = c
        .redis(&full, redis::cmd("CONFIG").arg("GET").arg("maxmemory"))
        .await?;
    let before = config.get(1).cloned().unwrap_or_else(|| "0".into());
    let used = num(&c.info(&full).await?, "used_memory") as u64;
    let headroom: u64 = if ctx.short { 1 << 20 } else { 8 << 20 };
    ctx.maxmemory(&full, Some(&before));
    c.set_maxmemory(&full, &(used + headroom).to_string())
        .await?;
    ctx.say(&format!(
        "{}'s maxmemory lowered from {before} to {} bytes ({} MiB above what it uses)",
        full.id,
        used + headroom,
        headroom >> 20
    ))
    .await;

    ctx.step(4).await?;
    let value = "x".repeat(32 << 10);
    let n = members.len().min(3).to_string();
    let mut refusal = None;
    let mut written = 0u64;
    let prefix = format!("demo:{}:res:full", ctx.id());
    for i in 0..((headroom / (32 << 10)) * 4 + 64) {
        let key = format!("{prefix}:{i}");
        let r: Result<String, String> = c
            .redis(
                &full,
                redis::cmd("RC.SET").arg(&key).arg(&value).arg("W").arg(&n),
            )
            .await;
        match r {
            Ok(_) => {
                written += 1;
                acked.push(Op::written(key, value.clone()));
            }
            Err(e) => {
                refusal = Some(e);
                break;
            }
        }
    }
    let clear = refusal.as_deref().is_some_and(|e| {
        let e = e.to_ascii_lowercase();
        e.contains("oom") || e.contains("memory")
    });
    ctx.say(&match &refusal {
        Some(e) => format!(
            "after {written} writes of 32 KiB through {} (W {n}), it answers: {e}",
            full.id
        ),
        None => format!("{written} writes of 32 KiB and {} was never full", full.id),
    })
    .await;
    let after_full = sample(ctx, &members, &[], 1.0).await;

    ctx.step(5).await?;
    let readers: Vec<NodeConfig> = members
        .iter()
        .filter(|m| m.id != full.id)
        .cloned()
        .collect();
    let lost = lost(c, &readers, &acked).await?;
    ctx.say(&format!(
        "{} acknowledged writes read back through the other nodes: {lost} lost",
        acked.iter().filter(|o| o.error.is_none()).count()
    ))
    .await;

    ctx.step(6).await?;
    c.set_maxmemory(&full, &before).await?;
    ctx.maxmemory(&full, None);
    ctx.say(&format!("{}'s maxmemory is back to {before}", full.id))
        .await;
    let again: Result<String, String> = c
        .redis(
            &full,
            redis::cmd("RC.SET")
                .arg(format!("{prefix}:after"))
                .arg(&value)
                .arg("W")
                .arg(&n),
        )
        .await;
    let recovered = again.is_ok();
    ctx.say(&format!(
        "a write through {} now: {}",
        full.id,
        match &again {
            Ok(a) => a.clone(),
            Err(e) => e.clone(),
        }
    ))
    .await;
    Ok(Verdict {
        passed: clear && lost == 0 && recovered,
        figures: json!({
            "at_rest": rest,
            "one_client": one,
            "four_clients": four,
            "when_full": after_full,
            "full_node": full.id,
            "writes_before_full": written,
            "answer_when_full": refusal,
            "clear_error": clear,
            "acknowledged_writes_lost": lost,
            "recovered": recovered,
        }),
    })
}
