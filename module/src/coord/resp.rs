//! Replies read off a peer connection by the main-thread fast path: a RESP2 reply parser over a
//! byte buffer that may hold a partial reply (pure; no I/O).

use redis::Value;

/// One reply: a value, or an error reply's text (code first).
#[derive(Debug, PartialEq)]
pub enum Reply {
    Value(Value),
    Error(String),
}

/// Nesting deeper than this is not a reply our commands give.
const MAX_DEPTH: usize = 8;
/// Longest bulk string accepted in a reply.
const MAX_BULK: usize = 512 << 20;

/// The first complete reply in `buf` and the bytes it took; `Ok(None)` while it is incomplete;
/// `Err` when the bytes are not RESP (the connection is then out of step and must be closed).
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    parse_at(buf, 0, 0)
}

fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn number(text: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("bad number in reply: {:?}", String::from_utf8_lossy(text)))
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, String> {
    if depth > MAX_DEPTH {
        return Err("reply nested too deep".into());
    }
    let Some((head, next)) = line(buf, at) else {
        return Ok(None);
    };
    let (kind, body) = head.split_first().ok_or("empty reply line")?;
    let text = || String::from_utf8_lossy(body).into_owned();
    let reply = match kind {
        b'+' => Reply::Value(Value::SimpleString(text())),
        b'-' => Reply::Error(text()),
        b':' => Reply::Value(Value::Int(number(body)?)),
        b'$' => {
            let n = number(body)?;
            if n < 0 {
                return Ok(Some((Reply::Value(Value::Nil), next)));
            }
            let n = usize::try_from(n).ok().filter(|n| *n <= MAX_BULK);
            let n = n.ok_or("bulk reply too long")?;
            let Some(data) = buf.get(next..next + n + 2) else {
                return Ok(None);
            };
            if &data[n..] != b"\r\n" {
                return Err("bulk reply not ended by CRLF".into());
            }
            return Ok(Some((
                Reply::Value(Value::BulkString(data[..n].to_vec())),
                next + n + 2,
            )));
        }
        b'*' => {
            let n = number(body)?;
            if n < 0 {
                return Ok(Some((Reply::Value(Value::Nil), next)));
            }
            let mut items = Vec::new();
            let mut pos = next;
            for _ in 0..n {
                match parse_at(buf, pos, depth + 1)? {
                    None => return Ok(None),
                    Some((Reply::Value(v), used)) => {
                        items.push(v);
                        pos = used;
                    }
                    // An error inside an array: keep its text as a status-like item.
                    Some((Reply::Error(e), used)) => {
                        items.push(Value::SimpleString(e));
                        pos = used;
                    }
                }
            }
            return Ok(Some((Reply::Value(Value::Array(items)), pos)));
        }
        other => return Err(format!("unknown reply type {:?}", *other as char)),
    };
    Ok(Some((reply, next)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_write_replies_parse_whole_and_wait_when_cut() {
        let full = b"*3\r\n+applied\r\n:42\r\n$2\r\nn1\r\n-ERR x\r\n";
        let (first, used) = parse(full).unwrap().unwrap();
        assert_eq!(
            first,
            Reply::Value(Value::Array(vec![
                Value::SimpleString("applied".into()),
                Value::Int(42),
                Value::BulkString(b"n1".to_vec()),
            ]))
        );
        let (second, used2) = parse(&full[used..]).unwrap().unwrap();
        assert_eq!(second, Reply::Error("ERR x".into()));
        assert_eq!(used + used2, full.len());
        for cut in 0..used {
            assert_eq!(parse(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse(b"$-1\r\n").unwrap(),
            Some((Reply::Value(Value::Nil), 5))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b"$abc\r\n",
            b"$3\r\nabcd\r\n",
            b":1.5\r\n",
            b"\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "*1\r\n".repeat(20);
        assert!(parse(deep.as_bytes()).is_err());
    }
}
