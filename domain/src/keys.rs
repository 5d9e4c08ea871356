//! Where things live inside each Redis: the key patterns and hash fields of the data layout, so
//! that a person browsing a node in Redis Insight sees what it holds.

/// Hash fields of a versioned register `kv:<key>`.
pub mod kv_field {
    pub const VALUE: &str = "value";
    pub const VERSION: &str = "version";
    pub const ORIGIN: &str = "origin";
    pub const TOMBSTONE: &str = "tombstone";
}

/// Hash fields of a chunk `chunk:<file-id>:<index>`.
pub mod chunk_field {
    pub const SHA256: &str = "sha256";
    pub const LENGTH: &str = "length";
    pub const DATA: &str = "data";
    /// CRC-32C of the data (hex), checked on every read; absent on chunks stored by builds
    /// before it, which are checked against `sha256` instead.
    pub const CRC32C: &str = "crc32c";
}

pub const KV_PREFIX: &[u8] = b"kv:";
pub const CHUNK_PREFIX: &[u8] = b"chunk:";
pub const HINT_PREFIX: &[u8] = b"hint:";

/// `kv:<key>`: the versioned register of a user key.
pub fn kv_key(user_key: &[u8]) -> Vec<u8> {
    [KV_PREFIX, user_key].concat()
}

/// `chunk:<file-id>:<index>`: one chunk of a file.
pub fn chunk_key(file_id: &str, index: u32) -> String {
    format!("chunk:{file_id}:{index}")
}

/// `<file-id>:<index>`: where chunk `index` of a file sits on the ring (the key its preference
/// list is computed from, as `RC.LOCATE` takes it).
pub fn chunk_ring_key(file_id: &str, index: u32) -> Vec<u8> {
    format!("{file_id}:{index}").into_bytes()
}

/// `file:<file-id>:chunks`: the set of chunk indexes of a file held on this node.
pub fn file_chunks_key(file_id: &str) -> String {
    format!("file:{file_id}:chunks")
}

/// `file:<file-id>:metadata`: the file's metadata hash.
pub fn file_metadata_key(file_id: &str) -> String {
    format!("file:{file_id}:metadata")
}

/// What kind of our records a Redis key name is, for counting what a node holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind<'a> {
    Kv,
    Chunk,
    /// `hint:<node>`: writes held for that node.
    Hint(&'a [u8]),
    Other,
}

pub fn classify(key: &[u8]) -> RecordKind<'_> {
    if key.starts_with(KV_PREFIX) {
        RecordKind::Kv
    } else if key.starts_with(CHUNK_PREFIX) {
        RecordKind::Chunk
    } else if let Some(node) = key.strip_prefix(HINT_PREFIX) {
        RecordKind::Hint(node)
    } else {
        RecordKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(kv_key(b"greeting"), b"kv:greeting".to_vec());
        assert_eq!(chunk_key("f1", 3), "chunk:f1:3");
        assert_eq!(file_chunks_key("f1"), "file:f1:chunks");
        assert_eq!(file_metadata_key("f1"), "file:f1:metadata");
        assert_eq!(classify(b"kv:x"), RecordKind::Kv);
        assert_eq!(classify(b"chunk:f:0"), RecordKind::Chunk);
        assert_eq!(classify(b"file:f:chunks"), RecordKind::Other);
        assert_eq!(classify(b"hint:n2"), RecordKind::Hint(b"n2"));
    }
}
