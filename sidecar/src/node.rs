//! `rcluster node`: one node. Starts its redis-server with the module and the node's settings,
//! waits until it answers, serves the node's HTTP endpoint, and on SIGTERM or Ctrl-C stops Redis
//! (which flushes its AOF) before exiting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};

use rcluster_domain::config::NodeConfig;
use rcluster_domain::topology::{internal_user_directive, Topology};

use crate::web::{router, NodeState};
use crate::{paths, probe, supervise, CliError};

/// How long Redis may take to start answering PING (loading a large AOF takes a while).
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Redis may take to shut down cleanly before it is killed.
const REDIS_STOP_GRACE: Duration = Duration::from_secs(15);

/// The topology comes from the config file for now (Raft-managed epochs come later).
const TOPOLOGY_EPOCH: u64 = 1;

/// Loads the cluster topology into this node's module, so its quorum commands can route.
async fn push_topology(node: &NodeConfig, topology: &Topology) -> Result<(), CliError> {
    let fail = |e: redis::RedisError| {
        CliError::failed(format!(
            "cannot load the topology into the module of {}: {e}",
            node.id
        ))
    };
    let client =
        redis::Client::open(format!("redis://{}:{}/", node.host, node.redis_port)).map_err(fail)?;
    let push = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("RC.CLUSTER.SET")
            .arg(topology.to_json())
            .query_async::<()>(&mut conn)
            .await
    };
    match tokio::time::timeout(Duration::from_secs(10), push).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(CliError::failed(format!(
            "loading the topology into {} timed out",
            node.id
        ))),
    }
}

pub async fn run(
    config_path: PathBuf,
    id: String,
    low_resource: bool,
    module: Option<PathBuf>,
) -> Result<(), CliError> {
    let loaded = paths::load(&config_path, low_resource)?;
    let node = loaded.config.node(&id).cloned().ok_or_else(|| {
        CliError::input(format!(
            "node '{id}' is not in {} (nodes: {})",
            config_path.display(),
            loaded
                .config
                .nodes
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    let module = paths::module(module)?;
    let dir = loaded.data_dir.join(&node.id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| CliError::failed(format!("cannot create {}: {e}", dir.display())))?;

    let http = tokio::net::TcpListener::bind((node.host.as_str(), node.http_port))
        .await
        .map_err(|e| {
            CliError::failed(format!(
                "cannot listen on {}:{} (http_port of {}): {e}",
                node.host, node.http_port, node.id
            ))
        })?;

    let redis_log = dir.join("redis.log");
    let cfg = &loaded.config;
    let mut cmd = supervise::command("redis-server", &redis_log)?;
    cmd.arg(&loaded.redis_conf)
        .args(["--port", &node.redis_port.to_string()])
        .args(["--bind", &node.host])
        .arg("--dir")
        .arg(&dir)
        .args(["--maxmemory", &format!("{}mb", cfg.redis_maxmemory_mb)])
        .arg("--loadmodule")
        .arg(&module)
        .args(["node-id", &node.id])
        .args(["max-key-bytes", &cfg.limits.max_key_bytes.to_string()])
        .args(["max-value-bytes", &cfg.limits.max_value_bytes.to_string()])
        .args(["max-chunk-bytes", &cfg.chunk_size_bytes.to_string()])
        .args(["internal-password", &cfg.internal_password])
        .arg("--user")
        .args(internal_user_directive(&cfg.internal_password));
    let mut redis = cmd.spawn().map_err(|e| {
        CliError::failed(format!(
            "cannot start redis-server (is it installed? ./rc.sh installs it): {e}"
        ))
    })?;

    let deadline = Instant::now() + REDIS_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = redis.try_wait() {
            return Err(CliError::failed(format!(
                "redis-server of {} exited during start-up ({status}); last lines of {}:\n{}",
                node.id,
                redis_log.display(),
                supervise::log_tail(&redis_log, 15)
            )));
        }
        if probe::redis_ping(&node.host, node.redis_port, Duration::from_millis(500)).await {
            break;
        }
        if Instant::now() > deadline {
            supervise::stop(&mut redis, REDIS_STOP_GRACE).await;
            return Err(CliError::failed(format!(
                "redis-server of {} did not answer within {REDIS_START_TIMEOUT:?}; see {}",
                node.id,
                redis_log.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "node {}: redis-server pid {} on {}:{}",
        node.id,
        redis.id().unwrap_or(0),
        node.host,
        node.redis_port
    );
    if let Err(e) = push_topology(&node, &Topology::from_config(cfg, TOPOLOGY_EPOCH)).await {
        supervise::stop(&mut redis, REDIS_STOP_GRACE).await;
        return Err(e);
    }

    let state = Arc::new(NodeState {
        config: loaded.config.clone(),
        node: node.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(http, router(state.clone()))
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    println!("node {}: http on {}:{}", node.id, node.host, node.http_port);

    let mut term = signal(SignalKind::terminate())
        .map_err(|e| CliError::failed(format!("cannot watch SIGTERM: {e}")))?;
    let mut redis_exited = None;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        status = redis.wait() => { redis_exited = Some(status); }
    }
    if let Some(status) = &redis_exited {
        // Supervision with restarts comes with the failure detector; until then the node stops.
        eprintln!(
            "node {}: redis-server exited unexpectedly ({status:?}); stopping the node. Last lines of {}:\n{}",
            node.id,
            redis_log.display(),
            supervise::log_tail(&redis_log, 10)
        );
    } else {
        supervise::stop(&mut redis, REDIS_STOP_GRACE).await;
    }
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    if redis_exited.is_some() {
        return Err(CliError::failed(format!(
            "redis-server of {} died",
            node.id
        )));
    }
    println!("node {}: stopped", node.id);
    Ok(())
}
