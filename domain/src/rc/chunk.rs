//! File chunks, each stored with its SHA-256 and CRC-32C and checked:
//!
//! `RC.CHUNK.PUT file-id index sha256 data [CRC32C crc]` stores the chunk on one Redis if `data`
//! hashes to `sha256` (or, when the sender computed it from the same checked bytes, matches
//! `crc`), else stores nothing and replies `CHECKSUM`; `RC.CHUNK.GET file-id index` returns the
//! data after re-checking it (`CHECKSUM` naming the key when the stored bytes changed), or nil;
//! `RC.CHUNK.LIST file-id` returns `[[index, length, sha256], ...]` ([`ListRow`]);
//! `RC.CHUNK.DEL file-id [index]` deletes one chunk or all of them and returns how many went.
//! The quorum level: `RC.CHUNK.SET file-id index sha256|* data [W n] [TIMEOUT ms]` puts the chunk
//! on W of its N replicas (answers `OK`, or the digest it computed for `*`);
//! `RC.CHUNK.FETCH file-id index [SHA256 hex] [TIMEOUT ms]` returns it from the first intact one.

use std::borrow::Cow;
use std::ops::Deref;

use crate::codes::CodedError;
use crate::quorum::{parse_options, Options};
use crate::validate;

use super::kv::{QuorumOptions, MAX_OPTION_ARGS};
use super::reply::{Build, Read};
use super::{ascii, Command, Decimal, Limits, Request};

/// `file-id index`.
fn ids(file_id: &[u8], index: &[u8]) -> Result<(), CodedError> {
    validate::file_id(file_id)?;
    validate::chunk_index(index)?;
    Ok(())
}

/// The index of an argument already checked by [`ids`].
fn index_of(arg: &[u8]) -> u32 {
    validate::chunk_index(arg).unwrap_or_default()
}

/// A chunk's size: at most `max-chunk-bytes`.
pub fn check_chunk_size(data: &[u8], limits: &Limits) -> Result<(), CodedError> {
    validate::check_size(
        "chunk",
        data.len(),
        limits.max_chunk_bytes,
        "rcluster.max-chunk-bytes",
    )
}

/// `RC.CHUNK.PUT file-id index sha256 data [CRC32C crc]`. Parsing checks the arguments' form and
/// size; whether the data matches its checksum is the handler's check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkPut<'a> {
    pub file_id: &'a str,
    pub index: u32,
    /// Lowercase hex.
    pub sha256: Cow<'a, str>,
    pub data: &'a [u8],
    /// The CRC-32C the sender computed from bytes it had checked (lowercase hex).
    pub crc32c: Option<Cow<'a, str>>,
}

impl<'a> ChunkPut<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<ChunkPut<'a>, CodedError> {
        Command::ChunkPut.check_arity(args.len())?;
        let crc32c = match &args[5..] {
            [] => None,
            [flag, crc] if flag.eq_ignore_ascii_case(b"CRC32C") => {
                Some(Cow::Owned(validate::crc32c(crc)?))
            }
            _ => {
                return Err(
                    Command::ChunkPut.usage_error("expected CRC32C <crc32c-hex> after the data")
                )
            }
        };
        ids(&args[1], &args[2])?;
        let sha256 = validate::sha256(&args[3])?;
        check_chunk_size(&args[4], limits)?;
        Ok(ChunkPut {
            file_id: ascii(&args[1]),
            index: index_of(&args[2]),
            sha256: Cow::Owned(sha256),
            data: &args[4],
            crc32c,
        })
    }
}

impl Request for ChunkPut<'_> {
    fn command(&self) -> Command {
        Command::ChunkPut
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
        f(Decimal::new(u64::from(self.index)).as_bytes());
        f(self.sha256.as_bytes());
        f(self.data);
        if let Some(crc) = &self.crc32c {
            f(b"CRC32C");
            f(crc.as_bytes());
        }
    }
}

/// `RC.CHUNK.GET file-id index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkGet<'a> {
    pub file_id: &'a str,
    pub index: u32,
}

impl<'a> ChunkGet<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<ChunkGet<'a>, CodedError> {
        Command::ChunkGet.check_arity(args.len())?;
        ids(&args[1], &args[2])?;
        Ok(ChunkGet {
            file_id: ascii(&args[1]),
            index: index_of(&args[2]),
        })
    }
}

impl Request for ChunkGet<'_> {
    fn command(&self) -> Command {
        Command::ChunkGet
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
        f(Decimal::new(u64::from(self.index)).as_bytes());
    }
}

/// A chunk's bytes (`RC.CHUNK.GET`, `RC.CHUNK.FETCH`): `Some(None)` when not held, `None` when
/// the reply is neither bytes nor nil.
pub fn chunk_data<'a>(reply: impl Read<'a>) -> Option<Option<&'a [u8]>> {
    if reply.is_nil() {
        return Some(None);
    }
    reply.bulk().map(Some)
}

/// `RC.CHUNK.LIST file-id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkList<'a> {
    pub file_id: &'a str,
}

impl<'a> ChunkList<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<ChunkList<'a>, CodedError> {
        Command::ChunkList.check_arity(args.len())?;
        validate::file_id(&args[1])?;
        Ok(ChunkList {
            file_id: ascii(&args[1]),
        })
    }
}

impl Request for ChunkList<'_> {
    fn command(&self) -> Command {
        Command::ChunkList
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
    }
}

/// One row of an `RC.CHUNK.LIST` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    pub index: u32,
    /// The stored length, -1 when unreadable.
    pub length: i64,
    /// Empty when unreadable.
    pub sha256: String,
}

impl ListRow {
    pub fn encode<B: Build>(rows: Vec<ListRow>) -> B::Out {
        B::array(
            rows.into_iter()
                .map(|r| {
                    B::array(vec![
                        B::int(i64::from(r.index)),
                        B::int(r.length),
                        B::bulk(r.sha256.into_bytes()),
                    ])
                })
                .collect(),
        )
    }

    pub fn decode<'a>(reply: impl Read<'a>) -> Option<Vec<ListRow>> {
        (0..reply.array_len()?)
            .map(|i| {
                let mut cols = reply.item(i)?.items_of(3)?;
                Some(ListRow {
                    index: u32::try_from(cols.next()?.int()?).ok()?,
                    length: cols.next()?.int()?,
                    sha256: String::from_utf8(cols.next()?.bulk()?.to_vec()).ok()?,
                })
            })
            .collect()
    }
}

/// `RC.CHUNK.DEL file-id [index]`; replies how many chunks went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDel<'a> {
    pub file_id: &'a str,
    /// `None`: every chunk of the file.
    pub index: Option<u32>,
}

impl<'a> ChunkDel<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<ChunkDel<'a>, CodedError> {
        Command::ChunkDel.check_arity(args.len())?;
        validate::file_id(&args[1])?;
        let index = match args.get(2) {
            Some(i) => Some(validate::chunk_index(i)?),
            None => None,
        };
        Ok(ChunkDel {
            file_id: ascii(&args[1]),
            index,
        })
    }
}

impl Request for ChunkDel<'_> {
    fn command(&self) -> Command {
        Command::ChunkDel
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
        if let Some(i) = self.index {
            f(Decimal::new(u64::from(i)).as_bytes());
        }
    }
}

/// `RC.CHUNK.SET file-id index sha256|* data [W n] [TIMEOUT ms]`. Parsing checks the form and
/// size; the handler checks the data against the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkSet<'a> {
    pub file_id: &'a str,
    pub index: u32,
    /// `None` (`*`): the coordinator hashes the data and answers the digest.
    pub sha256: Option<Cow<'a, str>>,
    pub data: &'a [u8],
    pub options: QuorumOptions<'a>,
}

impl<'a> ChunkSet<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(
        args: &'a [A],
        limits: &Limits,
    ) -> Result<ChunkSet<'a>, CodedError> {
        Command::ChunkSet.check_arity(args.len())?;
        ids(&args[1], &args[2])?;
        let sha256 = if &*args[3] == b"*" {
            None
        } else {
            Some(Cow::Owned(validate::sha256(&args[3])?))
        };
        check_chunk_size(&args[4], limits)?;
        Ok(ChunkSet {
            file_id: ascii(&args[1]),
            index: index_of(&args[2]),
            sha256,
            data: &args[4],
            options: QuorumOptions::raw(&args[5..]),
        })
    }
}

impl Request for ChunkSet<'_> {
    fn command(&self) -> Command {
        Command::ChunkSet
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
        f(Decimal::new(u64::from(self.index)).as_bytes());
        f(self.sha256.as_deref().unwrap_or("*").as_bytes());
        f(self.data);
        self.options.each_arg("W", f);
    }
}

/// `RC.CHUNK.FETCH`'s options: `SHA256 hex` and `TIMEOUT ms`. As received they stay raw until
/// the cluster is known to be ready (it answers `NOTREADY` before judging them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOptions<'a> {
    Raw(QuorumOptions<'a>),
    Typed {
        sha256: Option<Cow<'a, str>>,
        timeout_ms: Option<u64>,
    },
}

impl FetchOptions<'_> {
    /// The expected digest (lowercase) and the TIMEOUT; `n` is the cluster's replica count.
    pub fn check(&self, n: u8) -> Result<(Option<String>, Options), CodedError> {
        match self {
            FetchOptions::Typed { sha256, timeout_ms } => Ok((
                sha256.as_ref().map(|s| s.to_string()),
                Options {
                    count: None,
                    timeout_ms: *timeout_ms,
                },
            )),
            FetchOptions::Raw(QuorumOptions::Typed(o)) => Ok((None, *o)),
            FetchOptions::Raw(QuorumOptions::Raw { args, len, .. }) => {
                let mut raw: [&[u8]; MAX_OPTION_ARGS] = *args;
                let mut len = *len;
                let mut expected = None;
                if let Some(at) = raw[..len]
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(b"SHA256"))
                {
                    let Some(hex) = raw[..len].get(at + 1) else {
                        return Err(Command::ChunkFetch.usage_error("SHA256 needs a value"));
                    };
                    expected = Some(validate::sha256(hex)?);
                    raw.copy_within(at + 2..len, at);
                    len -= 2;
                }
                // Chunks are immutable and verified: one intact copy is the answer, so no R.
                Ok((expected, parse_options(&raw[..len], None, n)?))
            }
        }
    }
}

/// `RC.CHUNK.FETCH file-id index [SHA256 hex] [TIMEOUT ms]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkFetch<'a> {
    pub file_id: &'a str,
    pub index: u32,
    pub options: FetchOptions<'a>,
}

impl<'a> ChunkFetch<'a> {
    pub fn parse<A: Deref<Target = [u8]>>(args: &'a [A]) -> Result<ChunkFetch<'a>, CodedError> {
        Command::ChunkFetch.check_arity(args.len())?;
        ids(&args[1], &args[2])?;
        Ok(ChunkFetch {
            file_id: ascii(&args[1]),
            index: index_of(&args[2]),
            options: FetchOptions::Raw(QuorumOptions::raw(&args[3..])),
        })
    }
}

impl Request for ChunkFetch<'_> {
    fn command(&self) -> Command {
        Command::ChunkFetch
    }
    fn each_arg(&self, f: &mut dyn FnMut(&[u8])) {
        f(self.file_id.as_bytes());
        f(Decimal::new(u64::from(self.index)).as_bytes());
        match &self.options {
            FetchOptions::Raw(o) => o.each_arg("R", f),
            FetchOptions::Typed { sha256, timeout_ms } => {
                if let Some(sha) = sha256 {
                    f(b"SHA256");
                    f(sha.as_bytes());
                }
                if let Some(ms) = timeout_ms {
                    f(b"TIMEOUT");
                    f(Decimal::new(*ms).as_bytes());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rc::reply::Value;
    use crate::rc::testing::{args, error, LIMITS};

    const SHA: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn put_get_list_del_round_trip() {
        for crc in [None, Some(Cow::Borrowed("0a1b2c3d"))] {
            let put = ChunkPut {
                file_id: "f-1",
                index: 7,
                sha256: Cow::Borrowed(SHA),
                data: b"\0bytes",
                crc32c: crc,
            };
            assert_eq!(ChunkPut::parse(&put.encode(), &LIMITS).unwrap(), put);
        }
        let get = ChunkGet {
            file_id: "f",
            index: 1_048_575,
        };
        assert_eq!(ChunkGet::parse(&get.encode()).unwrap(), get);
        let list = ChunkList { file_id: "f" };
        assert_eq!(ChunkList::parse(&list.encode()).unwrap(), list);
        for index in [None, Some(3)] {
            let del = ChunkDel {
                file_id: "f",
                index,
            };
            assert_eq!(ChunkDel::parse(&del.encode()).unwrap(), del);
        }
    }

    #[test]
    fn put_errors_keep_their_order_and_wording() {
        // The CRC32C flag is judged first, then the ids, the digest and the size.
        assert_eq!(
            error(ChunkPut::parse(
                &args(&[b"RC.CHUNK.PUT", b"a:b", b"1", b"x", b"d", b"CRC", b"00"]),
                &LIMITS
            )),
            "BADARG expected CRC32C <crc32c-hex> after the data; usage: RC.CHUNK.PUT <file-id> <index> <sha256-hex> <data> [CRC32C <crc32c-hex>]"
        );
        assert!(error(ChunkPut::parse(
            &args(&[b"RC.CHUNK.PUT", b"a:b", b"1", b"x", b"d"]),
            &LIMITS
        ))
        .starts_with("BADARG file id 'a:b' is invalid"));
        assert!(error(ChunkPut::parse(
            &args(&[b"RC.CHUNK.PUT", b"f", b"1048576", b"x", b"d"]),
            &LIMITS
        ))
        .contains("chunk index 1048576 is out of range"));
        assert!(error(ChunkPut::parse(
            &args(&[b"RC.CHUNK.PUT", b"f", b"1", b"x", b"d"]),
            &LIMITS
        ))
        .starts_with("BADARG sha256 must be 64 hex characters"));
        assert!(error(ChunkPut::parse(
            &args(&[b"RC.CHUNK.PUT", b"f", b"1", SHA.as_bytes(), &[0; 33]]),
            &LIMITS
        ))
        .starts_with("TOOLARGE chunk is 33 bytes"));
        let upper = SHA.to_ascii_uppercase();
        let wire = args(&[
            b"RC.CHUNK.PUT",
            b"f",
            b"007",
            upper.as_bytes(),
            b"d",
            b"crc32c",
            b"0A1B2C3D",
        ]);
        let p = ChunkPut::parse(&wire, &LIMITS).unwrap();
        assert_eq!(
            (p.index, &*p.sha256, p.crc32c.as_deref()),
            (7, SHA, Some("0a1b2c3d"))
        );
    }

    #[test]
    fn set_and_fetch_round_trip_and_check_options_later() {
        let set = ChunkSet {
            file_id: "f",
            index: 2,
            sha256: None,
            data: b"data",
            options: QuorumOptions::Typed(Options {
                count: Some(2),
                timeout_ms: None,
            }),
        };
        let wire = set.encode();
        assert_eq!(
            wire,
            args(&[b"RC.CHUNK.SET", b"f", b"2", b"*", b"data", b"W", b"2"])
        );
        let p = ChunkSet::parse(&wire, &LIMITS).unwrap();
        assert_eq!(
            (p.file_id, p.index, p.sha256.clone(), p.data),
            ("f", 2, None, &b"data"[..])
        );
        assert_eq!(p.options.check(Some("W"), 3).unwrap().count, Some(2));

        let fetch = ChunkFetch {
            file_id: "f",
            index: 2,
            options: FetchOptions::Typed {
                sha256: Some(Cow::Borrowed(SHA)),
                timeout_ms: Some(500),
            },
        };
        let wire = fetch.encode();
        let p = ChunkFetch::parse(&wire).unwrap();
        assert_eq!(p.options.check(3).unwrap(), fetch.options.check(3).unwrap());
        assert_eq!(
            error(ChunkFetch::parse(&args(&[b"RC.CHUNK.FETCH", b"f", b"1", b"TIMEOUT", b"5", b"sha256"]))
                .unwrap()
                .options
                .check(3)),
            "BADARG SHA256 needs a value; usage: RC.CHUNK.FETCH <file-id> <index> [SHA256 <sha256-hex>] [TIMEOUT <ms>]"
        );
        assert_eq!(
            error(
                ChunkFetch::parse(&args(&[b"RC.CHUNK.FETCH", b"f", b"1", b"W", b"1"]))
                    .unwrap()
                    .options
                    .check(3)
            ),
            "BADARG unknown option 'W'; expected TIMEOUT"
        );
    }

    #[test]
    fn chunk_replies() {
        let rows = vec![
            ListRow {
                index: 0,
                length: 5,
                sha256: SHA.into(),
            },
            ListRow {
                index: 3,
                length: -1,
                sha256: String::new(),
            },
        ];
        let v = ListRow::encode::<Value>(rows.clone());
        assert_eq!(ListRow::decode(&v), Some(rows));
        assert_eq!(chunk_data(&Value::Nil), Some(None));
        assert_eq!(
            chunk_data(&Value::Bulk(b"x".to_vec())),
            Some(Some(&b"x"[..]))
        );
        assert_eq!(chunk_data(&Value::Int(1)), None);
    }
}
