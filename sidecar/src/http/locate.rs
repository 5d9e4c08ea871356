//! `GET /api/ring`: the hash ring's tokens, for drawing it, or a previewed ring (a member
//! joining or leaving, other virtual nodes) with the stretches that would move;
//! `GET /api/ring/files/{id}`: each chunk of a file with its preference list and the nodes that
//! hold it; `GET /api/locate/{key}`: a key's
//! preference list (`RC.LOCATE` on this node's module) and, for each preference node, what its
//! Redis holds for the key (`RC.REPLICA.GET`: version, origin, tombstone, length). Read key.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::Json;
use futures_util::future::join_all;
use rcluster_domain::config::NodeConfig;
use rcluster_domain::hlc::Timestamp;
use rcluster_domain::keys::chunk_ring_key;
use rcluster_domain::rc::chunk::{ChunkList, ListRow};
use rcluster_domain::rc::kv::{Locate, LocateRow};
use rcluster_domain::rc::replica::{HeldReply, ReplicaGet};
use rcluster_domain::ring::{hash64, moved_ranges, moved_share, Ring};

use crate::api::{
    ChunkPlacement, ErrorCode, FilePlacement, HeldCopy, Located, MovedRange, ReplicaCopy,
    RingChange, RingQuery, RingToken, RingView,
};
use crate::http::auth::Caller;
use crate::http::error::ApiError;
use crate::http::input::QueryIn;
use crate::http::kv::{check_key, timeout};
use crate::http::openapi::{BadRequest, ControlLayers, FileId, Key, NotFound, ReadKey, Storage};
use crate::node::files::{member_conn, read_meta};
use crate::node::local::contract_value;
use crate::node::local::rc;
use crate::node::view::Shared;

/// How long one replica may take to say what it holds.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// A place on the ring as a fraction of the hash space.
fn fraction(token: u64) -> f64 {
    token as f64 / 18_446_744_073_709_551_616.0
}

/// The members' ids and the virtual nodes and N in force on this node.
fn current(s: &Shared) -> (Vec<String>, u32, u8) {
    let (vnodes, n) = s
        .raft
        .get()
        .map_or((s.config.vnodes, s.config.quorum.n), |r| {
            let meta = r.meta();
            (meta.vnodes, meta.quorum.n)
        });
    let ids = s.members().into_iter().map(|m| m.id).collect();
    (ids, vnodes, n)
}

fn bad_ring(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, format!("no such ring: {e}"))
}

/// The ring's tokens, or a previewed ring and what would move
#[utoipa::path(
    get,
    path = "/api/ring",
    operation_id = "ring",
    tag = "control",
    description = "Read key. Every token of the ring this node places keys with. With `with`, \
        `without` or `vnodes`, the ring after that change instead, and `change`: the share and \
        the stretches of the hash space whose N replicas would differ (what redistribution \
        moves).",
    params(RingQuery),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "Every node's virtual nodes in ring order.", body = RingView),
        BadRequest,
        ReadKey,
        ControlLayers,
    )
)]
pub async fn ring(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    QueryIn(q): QueryIn<RingQuery>,
) -> Result<Json<RingView>, ApiError> {
    let (mut ids, vnodes, n) = current(&s);
    let now = Ring::new(&ids, vnodes).map_err(bad_ring)?;
    let preview = q.with.is_some() || q.without.is_some() || q.vnodes.is_some();
    if let Some(id) = &q.with {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    if let Some(id) = &q.without {
        ids.retain(|m| m != id);
    }
    let ring = Ring::new(&ids, q.vnodes.unwrap_or(vnodes)).map_err(bad_ring)?;
    let change = preview.then(|| {
        let ranges = moved_ranges(&now, &ring, usize::from(n));
        RingChange {
            moving_share: moved_share(&ranges),
            moving: ranges
                .iter()
                .map(|&(after, up_to)| MovedRange {
                    after: fraction(after),
                    up_to: fraction(up_to),
                })
                .collect(),
        }
    });
    Ok(Json(RingView {
        observer: s.me.id.clone(),
        vnodes: ring.vnodes(),
        n,
        nodes: ring.nodes().to_vec(),
        tokens: ring
            .tokens()
            .map(|(token, node)| RingToken {
                node: node.to_string(),
                at: fraction(token),
            })
            .collect(),
        change,
    }))
}

/// At most this many chunks of a file are placed in one answer.
const MAX_CHUNKS_SHOWN: u64 = 4096;

/// `RC.LOCATE` of `key` on this node's module: the preference list's rows.
async fn locate_rows(s: &Shared, key: &[u8]) -> Result<Vec<LocateRow>, ApiError> {
    let reply: redis::Value = s.local.query(&rc(&Locate { key }), timeout(s)).await?;
    let value = contract_value(reply);
    LocateRow::decode(&value).ok_or_else(|| {
        ApiError::new(
            ErrorCode::StorageFailed,
            format!("unexpected RC.LOCATE reply {value:?}"),
        )
    })
}

/// The chunk indexes of file `id` that member `n`'s Redis holds (`None`: it did not answer).
async fn chunks_held(s: &Shared, n: &NodeConfig, id: &str) -> Option<Vec<u32>> {
    let asked = async {
        let mut conn = member_conn(s, n).await?;
        let reply: redis::Value = rc(&ChunkList { file_id: id })
            .query_async(&mut conn)
            .await
            .ok()?;
        let rows = ListRow::decode(&contract_value(reply))?;
        Some(rows.into_iter().map(|r| r.index).collect())
    };
    tokio::time::timeout(REPLICA_TIMEOUT, asked)
        .await
        .ok()
        .flatten()
}

/// Where a file's chunks live
#[utoipa::path(
    get,
    path = "/api/ring/files/{id}",
    operation_id = "filePlacement",
    tag = "files",
    description = "Read key. Each chunk's place on the ring and preference list (RC.LOCATE of \
        `<file-id>:<index>`), and which nodes hold it (RC.CHUNK.LIST on every member).",
    params(FileId),
    security(("bearerAuth" = []), ("apiKeyHeader" = [])),
    responses(
        (status = 200, description = "The file's chunks.", body = FilePlacement),
        NotFound,
        ReadKey,
        Storage,
    )
)]
pub async fn file_placement(
    State(s): State<Arc<Shared>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FilePlacement>, ApiError> {
    let meta = read_meta(&s, &id)
        .await
        .map_err(|e| ApiError::new(ErrorCode::StorageFailed, e.to_string()))?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no file '{id}'")))?;
    let shown = u32::try_from(meta.chunk_count.min(MAX_CHUNKS_SHOWN)).unwrap_or(0);
    let members = s.members();
    let held = join_all(members.iter().map(|n| chunks_held(&s, n, &id))).await;
    let mut unreachable = Vec::new();
    let mut holders: Vec<Vec<String>> = vec![Vec::new(); shown as usize];
    for (n, held) in members.iter().zip(held) {
        let Some(indexes) = held else {
            unreachable.push(n.id.clone());
            continue;
        };
        for index in indexes {
            if let Some(h) = holders.get_mut(index as usize) {
                h.push(n.id.clone());
            }
        }
    }
    let rows = join_all((0..shown).map(|i| {
        let key = chunk_ring_key(&id, i);
        let s = &s;
        async move { locate_rows(s, &key).await }
    }))
    .await;
    let mut chunks = Vec::with_capacity(rows.len());
    for (i, (rows, held_on)) in rows.into_iter().zip(holders).enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        chunks.push(ChunkPlacement {
            index,
            at: fraction(hash64(&chunk_ring_key(&id, index))),
            preference: rows?.into_iter().map(|r| r.node).collect(),
            held_on,
        });
    }
    Ok(Json(FilePlacement {
        id: meta.id,
        name: meta.name,
        size: meta.size,
        chunk_count: meta.chunk_count,
        chunks,
        unreachable,
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
    let rows = locate_rows(&s, key.as_bytes()).await?;
    let copies = rows.into_iter().map(|row| copy_of(&s, &key, row));
    let replicas = join_all(copies).await;
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
