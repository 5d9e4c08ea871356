//! `node-failure`: a node (the Raft leader) is killed under a steady load through the faults
//! API (`crash`, process `node`); the scenario follows its detection, the leader's
//! re-election, the writes kept as hints for it, its return when the fault's TTL ends, and the
//! hints delivered. Verdict: acknowledged writes lost (0), seconds of unavailability clients
//! saw, detection and failover times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rcluster_domain::config::NodeConfig;
use rcluster_domain::demo::{unavailable_ms, Attempt, Latency};
use serde_json::json;

use super::cluster::{lost, num, Load};
use super::{Ctx, Halt, Verdict};
use crate::api::NodeState;

pub const STEPS: &[&str] = &[
    "a steady load through every node",
    "the leader is killed (faults API: crash, process node)",
    "detection and the leader's re-election",
    "writes kept as hints for the dead node",
    "the node returns and its hints are delivered",
    "every acknowledged write read back",
];

/// Hints for `victim` the survivors still hold, and the hints they stored and replayed so far
/// (every node), from their `INFO`.
async fn hints(ctx: &Ctx, survivors: &[NodeConfig], victim: &str) -> (u64, u64, u64) {
    let (mut held, mut stored, mut replayed) = (0, 0, 0);
    for s in survivors {
        if let Ok(info) = ctx.cluster.info(s).await {
            held += hint_count(&info, victim);
            stored += num(&info, "rcluster_hints_stored") as u64;
            replayed += num(&info, "rcluster_hints_replayed") as u64;
        }
    }
    (held, stored, replayed)
}

/// The `count=` of `rcluster_hints_for_<victim>` in an `INFO` map.
fn hint_count(info: &HashMap<String, String>, victim: &str) -> u64 {
    info.get(&format!("rcluster_hints_for_{victim}"))
        .and_then(|v| v.split(',').find_map(|p| p.strip_prefix("count=")))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `victim`'s state as the first survivor that answers sees it.
async fn state_of(ctx: &Ctx, survivors: &[NodeConfig], victim: &str) -> Option<NodeState> {
    let a = ctx
        .cluster
        .ask(survivors, "GET", "/api/nodes", None)
        .await
        .ok()?;
    let view: crate::api::Nodes = serde_json::from_value(a.json).ok()?;
    view.nodes.iter().find(|n| n.id == victim)?.state
}

pub async fn run(ctx: &Ctx) -> Result<Verdict, Halt> {
    let c = &ctx.cluster;
    let members = c.members().await?;
    let leader = c.leader(&members).await;
    // The leader, unless this node runs the scenario (an HTTP run): then the last other node.
    let killable: Vec<&NodeConfig> = members
        .iter()
        .filter(|m| Some(&m.id) != c.protect.as_ref())
        .collect();
    let victim = killable
        .iter()
        .find(|m| Some(&m.id) == leader.as_ref())
        .or(killable.last())
        .map(|m| (*m).clone())
        .ok_or_else(|| "no node to kill".to_string())?;
    let survivors: Vec<NodeConfig> = members
        .iter()
        .filter(|m| m.id != victim.id)
        .cloned()
        .collect();
    let was_leader = leader.as_deref() == Some(victim.id.as_str());
    let ttl_ms: u64 = if ctx.short { 6_000 } else { 20_000 };

    ctx.step(1).await?;
    let prefix = format!("demo:{}:failure", ctx.id());
    let load = Load::start(
        c.clone(),
        members.clone(),
        2,
        &prefix,
        Duration::from_millis(20),
        ctx.t0(),
    );
    ctx.pause(Duration::from_secs(if ctx.short { 1 } else { 3 }))
        .await?;
    ctx.say(&format!(
        "2 clients write through {} in turn; leader: {}",
        members
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        leader.as_deref().unwrap_or("none")
    ))
    .await;
    let (_, stored_before, replayed_before) = hints(ctx, &survivors, &victim.id).await;

    ctx.step(2).await?;
    let fault =
        json!({"kind": "crash", "targets": [victim.id], "process": "node", "ttl_ms": ttl_ms});
    let a = c
        .ask(&survivors, "POST", "/api/faults", Some(&fault))
        .await?;
    if a.status != 201 {
        let _ = load.finish().await;
        return Err(Halt::Error(format!(
            "POST /api/faults through {}: {} {}",
            a.node,
            a.status,
            a.text.trim()
        )));
    }
    let killed = Instant::now();
    let killed_at_ms = ctx.at_ms();
    if let Some(id) = a.json["id"].as_str() {
        ctx.injected(id);
    }
    ctx.say(&format!(
        "fault {}: {} (the {}) killed; it comes back in {} s",
        a.json["id"].as_str().unwrap_or("?"),
        victim.id,
        if was_leader { "leader" } else { "last node" },
        ttl_ms / 1000
    ))
    .await;

    ctx.step(3).await?;
    let (mut suspect_ms, mut down_ms, mut failover_ms) = (None, None, None);
    let limit = Duration::from_millis(ttl_ms);
    while killed.elapsed() < limit && (down_ms.is_none() || (was_leader && failover_ms.is_none())) {
        let since = killed.elapsed().as_millis() as u64;
        match state_of(ctx, &survivors, &victim.id).await {
            Some(NodeState::Suspect) if suspect_ms.is_none() => {
                suspect_ms = Some(since);
                ctx.say(&format!("{} suspected after {since} ms", victim.id))
                    .await;
            }
            Some(NodeState::Down) if down_ms.is_none() => {
                down_ms = Some(since);
                ctx.say(&format!("{} declared down after {since} ms", victim.id))
                    .await;
            }
            _ => {}
        }
        if was_leader && failover_ms.is_none() {
            if let Some(l) = c.leader(&survivors).await.filter(|l| *l != victim.id) {
                failover_ms = Some(since);
                ctx.say(&format!("{l} elected leader after {since} ms"))
                    .await;
            }
        }
        ctx.pause(Duration::from_millis(100)).await?;
    }

    ctx.step(4).await?;
    let (held, stored, _) = hints(ctx, &survivors, &victim.id).await;
    let hints_stored = stored.saturating_sub(stored_before);
    ctx.say(&format!(
        "the survivors stored {hints_stored} hints since the kill and hold {held} for {} now \
         (writes acknowledged without it, handed over when it returns)",
        victim.id
    ))
    .await;

    ctx.step(5).await?;
    let mut back_ms = None;
    let deadline = Instant::now() + limit + Duration::from_secs(60);
    while Instant::now() < deadline {
        if state_of(ctx, &survivors, &victim.id).await == Some(NodeState::Alive) {
            back_ms = Some(killed.elapsed().as_millis() as u64);
            break;
        }
        ctx.pause(Duration::from_millis(200)).await?;
    }
    match back_ms {
        Some(ms) => {
            ctx.say(&format!("{} is alive again after {ms} ms", victim.id))
                .await
        }
        None => ctx.say(&format!("{} did not come back", victim.id)).await,
    }
    let mut delivered = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while back_ms.is_some() && Instant::now() < deadline {
        let (left, stored, replayed) = hints(ctx, &survivors, &victim.id).await;
        if left == 0 && replayed - replayed_before >= stored - stored_before {
            delivered = true;
            break;
        }
        ctx.pause(Duration::from_millis(250)).await?;
    }
    let (_, _, replayed) = hints(ctx, &survivors, &victim.id).await;
    let hints_delivered = replayed.saturating_sub(replayed_before);
    ctx.say(&if delivered {
        format!(
            "{hints_delivered} hints delivered; none left for {}",
            victim.id
        )
    } else {
        format!("hints for {} are still waiting", victim.id)
    })
    .await;
    let ops = load.finish().await;

    ctx.step(6).await?;
    let acked = ops.iter().filter(|o| o.error.is_none()).count() as u64;
    let failed: Vec<&super::cluster::Op> = ops.iter().filter(|o| o.error.is_some()).collect();
    if let Some(first) = failed.first() {
        ctx.say(&format!(
            "{} of {} writes failed, the first through {}: {}",
            failed.len(),
            ops.len(),
            first.node,
            first.error.clone().unwrap_or_default()
        ))
        .await;
    }
    let lost = lost(c, &members, &ops).await?;
    // A client is without an answer from its first failed write to its next acknowledged one
    // (it retries through another node at once); the union over the clients is what counts.
    let attempts: Vec<Attempt> = ops.iter().map(|o| o.attempt).collect();
    let unavailable = unavailable_ms(&attempts);
    let during: Vec<u64> = ops
        .iter()
        .filter(|o| o.error.is_none() && o.attempt.at_ms >= killed_at_ms)
        .map(|o| o.took_us)
        .collect();
    ctx.say(&format!(
        "{acked} acknowledged writes read back: {lost} lost; clients saw {:.1} s without an \
         answer",
        unavailable as f64 / 1000.0
    ))
    .await;
    Ok(Verdict {
        passed: lost == 0 && down_ms.is_some() && back_ms.is_some() && delivered,
        figures: json!({
            "victim": victim.id,
            "victim_was_leader": was_leader,
            "writes": ops.len(),
            "acknowledged": acked,
            "failed": failed.len(),
            "acknowledged_writes_lost": lost,
            "unavailable_s": unavailable as f64 / 1000.0,
            "suspected_after_ms": suspect_ms,
            "detection_ms": down_ms,
            "failover_ms": failover_ms,
            "hints_stored": hints_stored,
            "hints_delivered": hints_delivered,
            "every_hint_delivered": delivered,
            "back_after_ms": back_ms,
            "latency_after_kill": Latency::of(&during),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_counts_are_read_from_the_info_field() {
        let mut info = HashMap::new();
        info.insert(
            "rcluster_hints_for_n2".to_string(),
            "count=12,bytes=900,oldest_ms=40".to_string(),
        );
        assert_eq!(hint_count(&info, "n2"), 12);
        assert_eq!(hint_count(&info, "n3"), 0);
    }
}
