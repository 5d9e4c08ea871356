//! Fitting a node into a memory limit (a container's cgroup): which files hold the limit, how to
//! read them, and how a configuration shrinks to fit (Redis's `maxmemory`, the node process's
//! transfer buffers). Pure: the node process reads the files and logs what changed.

use crate::config::{ClusterConfig, CHUNK_SIZE_RANGE, REDIS_MAXMEMORY_MB_RANGE};

const MIB: u64 = 1 << 20;

/// The share of the limit Redis's `maxmemory` may take: the rest holds Redis's own overhead
/// (buffers, fragmentation, the fork of an AOF rewrite) and the node process.
const REDIS_SHARE_PERCENT: u64 = 50;
/// The share of the limit the node process's transfer buffers may take (each upload or download
/// holds up to two chunks of the largest size).
const TRANSFER_SHARE_PERCENT: u64 = 25;

/// The files that may hold the memory limit of the process whose `/proc/self/cgroup` is
/// `proc_cgroup`, most specific first: its own cgroup and each parent (cgroup v2, then v1's
/// `memory` controller), then the root of a namespaced view (what a container sees).
pub fn limit_files(proc_cgroup: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup", "memory.max")
        } else if controllers.split(',').any(|c| c == "memory") {
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
        } else {
            continue;
        };
        let mut dir = path.trim_end_matches('/').to_string();
        loop {
            out.push(format!("{base}{dir}/{file}"));
            match dir.rfind('/') {
                Some(i) => dir.truncate(i),
                None => break,
            }
        }
    }
    out.dedup();
    out
}

/// The limit a cgroup file states, in bytes; `None` for no limit (`max`, or v1's page-rounded
/// `i64::MAX`) or for text that is not a number.
pub fn parse_limit(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "max" {
        return None;
    }
    let bytes: u64 = text.parse().ok()?;
    // cgroup v1 writes "no limit" as i64::MAX rounded down to a page; anything above 1 PiB is
    // no limit in practice.
    (bytes < 1 << 50).then_some(bytes)
}

/// What [`fit`] changed, one line each, for the node's log.
pub type Changes = Vec<String>;

/// `config` shrunk to run within `limit_bytes`: Redis's `maxmemory` at most half the limit, and
/// at most as many concurrent uploads and downloads as fit in a quarter of it. Settings already
/// within the limit are left alone.
pub fn fit(config: &ClusterConfig, limit_bytes: u64) -> (ClusterConfig, Changes) {
    let mut out = config.clone();
    let mut changes = Vec::new();
    let redis_mb =
        (limit_bytes / MIB * REDIS_SHARE_PERCENT / 100).max(*REDIS_MAXMEMORY_MB_RANGE.start());
    if config.redis_maxmemory_mb > redis_mb {
        out.redis_maxmemory_mb = redis_mb;
        changes.push(format!(
            "redis_maxmemory_mb {} -> {redis_mb} (half of the {} MiB memory limit)",
            config.redis_maxmemory_mb,
            limit_bytes / MIB
        ));
    }
    let per_transfer = 2 * CHUNK_SIZE_RANGE.end();
    let transfers = u32::try_from(limit_bytes * TRANSFER_SHARE_PERCENT / 100 / per_transfer)
        .unwrap_or(u32::MAX)
        .max(2);
    let files = &config.files;
    if files
        .max_concurrent_uploads
        .saturating_add(files.max_concurrent_downloads)
        > transfers
    {
        // Uploads get a quarter (at least one), downloads the rest.
        let uploads = files.max_concurrent_uploads.min((transfers / 4).max(1));
        let downloads = files
            .max_concurrent_downloads
            .min(transfers - uploads)
            .max(1);
        changes.push(format!(
            "files.max_concurrent_uploads {} -> {uploads}, files.max_concurrent_downloads {} -> \
             {downloads} (their buffers within a quarter of the memory limit)",
            files.max_concurrent_uploads, files.max_concurrent_downloads
        ));
        out.files.max_concurrent_uploads = uploads;
        out.files.max_concurrent_downloads = downloads;
    }
    (out, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_files_walk_up_from_the_process_cgroup() {
        let v1 = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        assert_eq!(
            limit_files(v1),
            [
                "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/memory.max",
            ]
        );
        let v2 = "0::/system.slice/docker-1.scope\n";
        assert_eq!(
            limit_files(v2),
            [
                "/sys/fs/cgroup/system.slice/docker-1.scope/memory.max",
                "/sys/fs/cgroup/system.slice/memory.max",
                "/sys/fs/cgroup/memory.max",
            ]
        );
        assert!(limit_files("garbage").is_empty());
    }

    #[test]
    fn limits_are_read_and_no_limit_is_none() {
        assert_eq!(parse_limit("268435456\n"), Some(256 * MIB));
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712"), None);
        assert_eq!(parse_limit("lots"), None);
    }

    #[test]
    fn a_small_limit_shrinks_redis_and_transfers() {
        let config = crate::config::parse(
            "cluster_name: t\nnodes:\n  - { id: n1, redis_port: 1, http_port: 2, peer_port: 3 }\nquorum: { n: 1, w: 1, r: 1 }\n",
        )
        .expect("valid");
        assert_eq!(config.redis_maxmemory_mb, 256);
        let (fitted, changes) = fit(&config, 256 * MIB);
        assert_eq!(fitted.redis_maxmemory_mb, 128);
        // 64 MiB of buffers at 10 MiB per transfer: 6 transfers.
        assert_eq!(fitted.files.max_concurrent_uploads, 1);
        assert_eq!(fitted.files.max_concurrent_downloads, 5);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes[0].contains("256 MiB memory limit"), "{changes:?}");
        fitted.validate().expect("a fitted config is valid");
        // A generous limit changes nothing.
        let (same, none) = fit(&config, 64 * 1024 * MIB);
        assert_eq!(same, config);
        assert!(none.is_empty());
        // A tiny one keeps the floors.
        let (tiny, _) = fit(&config, 8 * MIB);
        assert_eq!(tiny.redis_maxmemory_mb, 16);
        assert_eq!(
            (
                tiny.files.max_concurrent_uploads,
                tiny.files.max_concurrent_downloads
            ),
            (1, 1)
        );
    }
}
