//! `GET /api/ring`: the hash ring's tokens, for drawing it; `GET /api/locate/{key}`: a key's
//! preference list (`RC.LOCATE` on this node's module) and, for each preference node, what its
//! Redis holds for the key (`RC.REPLICA.GET`: version, origin, tombstone, length). Read key.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use rcluster_domain::hlc::Timestamp;
use rcluster_domain::rc::kv::{Locate, LocateRow};
use rcluster_domain::rc::replica::{HeldReply, ReplicaGet};
use rcluster_domain::rc::reply::Value;
use rcluster_domain::ring::{hash64, Ring};

use crate::api::{ErrorCode, HeldCopy, Located, ReplicaCopy, RingToken, RingView};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::kv::{check_key, timeout};
use crate::http::openapi::{ControlLayers, Key, ReadKey, Storage};
use crate::node::files::member_conn;
use crate::node::local::rc;
use crate::node::view::Shared;

/// How long one replica may take to say what it holds.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// A place on the ring as a fraction of the hash space.
fn fraction(token: u64) -> f64 {
    token as f64 / 18_446_744_073_709_551_616.0
}

/// A reply of the `redis` crate as the contract's decoders read it.
fn contract_value(v: redis::Value) -> Value {
    match v {
        redis::Value::Nil => Value::Nil,
        redis::Value::Int(i) => Value::Int(i),
        redis::Value::BulkString(b) => Value::Bulk(b),
        redis::Value::SimpleString(s) => Value::Status(s),
        redis::Value::Okay => Value::Status("OK".into()),
        redis::Value::Array(items) => Value::Array(items.into_iter().map(contract_value).collect()),
        other => Value::Status(format!("{other:?}")),
    }
}

/// The ring's tokens
#[utoipa::path(
    get,
    path = "/api/ring",
    operation_id = "ring",
    tag = "control",
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Every node's virtual nodes in ring order.", body = RingView),
        crate::http::openapi::InternalError,
        ReadKey,
        ControlLayers,
    )
)]
pub async fn ring(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
) -> Result<Json<RingView>, ApiError> {
    let (vnodes, n) = s
        .raft
        .get()
        .map_or((s.config.vnodes, s.config.quorum.n), |r| {
            let meta = r.meta();
            (meta.vnodes, meta.quorum.n)
        });
    let ids: Vec<String> = s.members().into_iter().map(|m| m.id).collect();
    let ring = Ring::new(&ids, vnodes)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("no ring: {e}")))?;
    Ok(Json(RingView {
        observer: s.me.id.clone(),
        vnodes,
        n,
        nodes: ring.nodes().to_vec(),
        tokens: ring
            .tokens()
            .map(|(token, node)| RingToken {
                node: node.to_string(),
                at: fraction(token),
            })
            .collect(),
    }))
}

/// What `row`'s node holds for `key`.
async fn copy_of(s: &Shared, key: &str, row: LocateRow) -> ReplicaCopy {
    let mut copy = ReplicaCopy {
        node: row.node,
        address: row.address,
        state: row.state.to_string(),
        held: None,
        error: None,
    };
    let asked = async {
        let member = s
            .member(&copy.node)
            .ok_or_else(|| "not a member".to_string())?;
        let mut conn = member_conn(s, &member)
            .await
            .ok_or_else(|| "its Redis does not answer".to_string())?;
        let reply: redis::Value = rc(&ReplicaGet {
            key: key.as_bytes(),
        })
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        let value = contract_value(reply);
        HeldReply::decode(&value).ok_or_else(|| format!("unexpected reply {value:?}"))
    };
    match tokio::time::timeout(REPLICA_TIMEOUT, asked).await {
        Ok(Ok(held)) => {
            copy.held = held.map(|h| HeldCopy {
                version: h.version.ts,
                physical_ms: Timestamp(h.version.ts).physical_ms(),
                logical: Timestamp(h.version.ts).logical(),
                origin: h.version.node,
                tombstone: h.tombstone,
                bytes: h.value.len() as u64,
            });
        }
        Ok(Err(e)) => copy.error = Some(e),
        Err(_) => copy.error = Some(format!("no answer in {REPLICA_TIMEOUT:?}")),
    }
    copy
}

/// A key's preference list and each replica's copy
#[utoipa::path(
    get,
    path = "/api/locate/{key}",
    operation_id = "locate",
    tag = "kv",
    description = "Read key. The rows of RC.LOCATE on this node, then each preference node's \
        copy as its Redis holds it (asked directly, not through a quorum).",
    params(Key),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The preference list in order.", body = Located),
        ReadKey,
        Storage,
    )
)]
pub async fn locate(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Located>, ApiError> {
    check_key(&key)?;
    let reply: redis::Value = s
        .local
        .query(
            &rc(&Locate {
                key: key.as_bytes(),
            }),
            timeout(&s),
        )
        .await?;
    let value = contract_value(reply);
    let rows = LocateRow::decode(&value).ok_or_else(|| {
        ApiError::new(
            ErrorCode::StorageFailed,
            format!("unexpected RC.LOCATE reply {value:?}"),
        )
    })?;
    let copies = rows.into_iter().map(|row| copy_of(&s, &key, row));
    let replicas = futures_util::future::join_all(copies).await;
    Ok(Json(Located {
        at: fraction(hash64(key.as_bytes())),
        key,
        observer: s.me.id.clone(),
        replicas,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_cover_the_hash_space() {
        assert_eq!(fraction(0), 0.0);
        assert!(fraction(u64::MAX) <= 1.0 && fraction(u64::MAX) > 0.999);
        assert!((fraction(1 << 63) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn replies_convert_for_the_contract() {
        let reply = redis::Value::Array(vec![
            redis::Value::BulkString(b"v".to_vec()),
            redis::Value::Int(7),
            redis::Value::BulkString(b"n1".to_vec()),
            redis::Value::Int(0),
        ]);
        let held = HeldReply::decode(&contract_value(reply)).unwrap().unwrap();
        assert_eq!(held.version.ts, 7);
        assert_eq!(held.version.node, "n1");
        assert!(!held.tombstone);
        assert_eq!(held.value, b"v");
        assert_eq!(
            HeldReply::decode(&contract_value(redis::Value::Nil)),
            Some(None)
        );
    }
}
