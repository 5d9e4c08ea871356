//! Time: every `ntp_interval_ms` the node asks its SNTP servers (UDP, each bounded by
//! `ntp_timeout_ms`), keeps the answer with the shortest round trip, exposes the offset as the
//! node's drift, warns above `max_drift_ms`, and feeds the correction into its module's hybrid
//! clock (`rcluster.clock-offset-ms`). With no answer the clock runs uncorrected (its logical
//! part keeps it monotonic) and the status says so.

use std::sync::Arc;
use std::time::Duration;

use rcluster_domain::sntp::{self, Sample, SntpError};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::node::view::{unix_ms, Shared, TimeStatus};

/// Why a server gave no sample.
#[derive(Debug, thiserror::Error)]
pub enum NtpError {
    #[error("{server}: {source}")]
    Io {
        server: String,
        source: std::io::Error,
    },
    #[error("{server}: {source}")]
    Reply { server: String, source: SntpError },
    #[error("{server}: no answer within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
}

/// Asks one server; the sample or why there is none.
pub async fn query(server: &str, timeout: Duration) -> Result<Sample, NtpError> {
    let io = |source| NtpError::Io {
        server: server.to_string(),
        source,
    };
    let reply = |source| NtpError::Reply {
        server: server.to_string(),
        source,
    };
    let attempt = async {
        let socket = UdpSocket::bind(("0.0.0.0", 0)).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        let sent = unix_ms();
        let request = sntp::request(sent);
        socket.send(&request).await.map_err(io)?;
        let mut buf = [0u8; 512];
        let len = socket.recv(&mut buf).await.map_err(io)?;
        let received = unix_ms();
        let parsed = sntp::parse_reply(&buf[..len]).map_err(reply)?;
        sntp::measure(sent, &parsed, received, sntp::unix_ms_to_ntp(sent)).map_err(reply)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(NtpError::Timeout {
                server: server.to_string(),
                timeout,
            })
        })
}

/// One round over every server: the best sample (shortest round trip) or the errors.
pub async fn round(servers: &[String], timeout: Duration) -> TimeStatus {
    if servers.is_empty() {
        return TimeStatus {
            source: "not configured".into(),
            checked_unix_ms: Some(unix_ms()),
            ..TimeStatus::default()
        };
    }
    let mut best: Option<(String, Sample)> = None;
    let mut errors = Vec::new();
    for server in servers {
        match query(server, timeout).await {
            Ok(s)
                if best
                    .as_ref()
                    .is_none_or(|(_, b)| s.round_trip_ms < b.round_trip_ms) =>
            {
                best = Some((server.clone(), s));
            }
            Ok(_) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    match best {
        Some((server, s)) => TimeStatus {
            source: "ntp".into(),
            offset_ms: Some(s.offset_ms),
            round_trip_ms: Some(s.round_trip_ms),
            server: Some(server),
            checked_unix_ms: Some(unix_ms()),
            error: None,
        },
        None => TimeStatus {
            source: "unavailable".into(),
            checked_unix_ms: Some(unix_ms()),
            error: Some(format!(
                "no NTP server answered ({}); the hybrid clock runs on its logical part",
                errors.join("; ")
            )),
            ..TimeStatus::default()
        },
    }
}

pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let cfg = shared.config.time.clone();
    let mut ticker = tokio::time::interval(Duration::from_millis(cfg.ntp_interval_ms));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let status = round(&cfg.ntp_servers, Duration::from_millis(cfg.ntp_timeout_ms)).await;
        let offset = status.offset_ms.unwrap_or(0);
        if let Some(e) = &status.error {
            tracing::warn!(node = %shared.me.id, "{e}");
        }
        if offset.unsigned_abs() > cfg.max_drift_ms && status.offset_ms.is_some() {
            tracing::warn!(
                node = %shared.me.id,
                "clock is {offset} ms off NTP time (limit {} ms); the hybrid clock is corrected",
                cfg.max_drift_ms
            );
        }
        shared.metrics.time_drift.set(offset as f64 / 1000.0);
        shared
            .metrics
            .ntp_available
            .set(i64::from(status.source == "ntp"));
        // Feed the correction into the module's clock (0 when no server answered).
        let mut set = redis::cmd("CONFIG");
        set.arg("SET").arg("rcluster.clock-offset-ms").arg(offset);
        if let Err(e) = shared.local.query::<()>(&set, Duration::from_secs(1)).await {
            tracing::warn!(node = %shared.me.id, "could not set the module's clock offset: {e}");
        }
        shared.set_time(status);
    }
}
