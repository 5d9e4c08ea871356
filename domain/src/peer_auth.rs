//! Proving that a message between node processes (a Raft frame, a heartbeat) comes from a member
//! of this cluster and is fresh: the sealed wire form (a header and the payload, then an
//! HMAC-SHA-256 of both keyed with the cluster secret), the receiver's checks in order (MAC,
//! recipient, membership, time window, sequence), the replay window as a state machine, the
//! bounded list of reasons a message is refused (a metric label), and the rules for the secret.
//!
//! Pure: the caller passes the wall-clock reading and the sequence number and does all I/O.
//!
//! Wire form: `RCP1` | channel (1 byte) | from length (1) | from | to length (1) | to |
//! timestamp_ms (8, big-endian) | seq (8, big-endian) | payload | MAC (32) over all before it.
//! The channel byte keeps a Raft frame from being replayed as a heartbeat and back; `to` keeps a
//! message for one node from being replayed to another.
//!
//! Freshness: the timestamp must be within ±window of the receiver's clock, and each sender's
//! sequence numbers are taken once: a sender numbers its messages upwards from its start time in
//! microseconds (so a restarted sender continues above its earlier numbers), and the receiver
//! remembers the highest number per sender and which of the 64 below it it saw (the IPsec
//! anti-replay window, RFC 4303 §3.4.3). Older ones are refused as replays. The time window bounds
//! how long a captured message is worth anything; the sequence window refuses one that is replayed
//! within it.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC at the end of a sealed message.
pub const MAC_LEN: usize = 32;
/// Allowed length of the cluster secret, in bytes (printable ASCII, no spaces).
pub const SECRET_LEN_RANGE: RangeInclusive<usize> = 32..=1024;
/// Sequence numbers below a sender's highest that the window still tells apart.
pub const SEQ_WINDOW: u64 = 64;

const MAGIC: &[u8; 4] = b"RCP1";
/// What the internal password is derived from (see [`PeerKey::internal_password`]).
pub const INTERNAL_PASSWORD_LABEL: &[u8] = b"rcluster internal password";
/// Smallest sealed message: empty ids and payload.
const MIN_LEN: usize = MAGIC.len() + 1 + 1 + 1 + 8 + 8 + MAC_LEN;

/// Which kind of peer traffic a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// Raft frames over TCP.
    Raft,
    /// Heartbeats (pings and pongs) over UDP.
    Heartbeat,
}

impl Channel {
    fn byte(self) -> u8 {
        match self {
            Channel::Raft => 1,
            Channel::Heartbeat => 2,
        }
    }
}

/// Why a peer's message was refused. The set is closed (it is a metric label): nothing a sender
/// chooses, such as its claimed id, becomes a label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// A frame's declared length is over the cap (refused before anything is allocated).
    TooLarge,
    /// Not a sealed message, or its sealed content makes no sense (wrong channel, bad ids, a
    /// payload that does not decode).
    Malformed,
    /// The MAC does not match: a forger's, or a sender with another cluster's secret.
    BadMac,
    /// Addressed to another node.
    WrongRecipient,
    /// The sender is not a member (nor a Raft voter).
    NotMember,
    /// Its timestamp is older than the window.
    Stale,
    /// Its timestamp is further ahead than the window.
    Future,
    /// Its sequence number was taken already, or is too far below the sender's newest.
    Replayed,
    /// More connections than allowed (in total, or from one peer).
    TooManyConnections,
    /// Authentic, but the Raft core refused it (a second leader in one term, a malformed entry).
    RaftInvalid,
}

impl Refusal {
    /// Every reason, for metrics that start at zero.
    pub const ALL: [Refusal; 10] = [
        Refusal::TooLarge,
        Refusal::Malformed,
        Refusal::BadMac,
        Refusal::WrongRecipient,
        Refusal::NotMember,
        Refusal::Stale,
        Refusal::Future,
        Refusal::Replayed,
        Refusal::TooManyConnections,
        Refusal::RaftInvalid,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::BadMac => "bad_mac",
            Refusal::WrongRecipient => "wrong_recipient",
            Refusal::NotMember => "not_member",
            Refusal::Stale => "stale",
            Refusal::Future => "future",
            Refusal::Replayed => "replayed",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::RaftInvalid => "raft_invalid",
        }
    }
}

/// Why a cluster secret is not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the cluster secret must be 32 to 1024 bytes, got {0}")]
    Length(usize),
    #[error("the cluster secret must be printable ASCII without spaces")]
    NotPrintable,
}

/// The key every member signs and checks with. Its `Debug` never shows it.
#[derive(Clone)]
pub struct PeerKey {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerKey(…)")
    }
}

impl PeerKey {
    /// The key from a secret file's text: one trailing line end is dropped, then the secret
    /// must be 32 to 1024 bytes of printable ASCII without spaces.
    pub fn from_secret(text: &str) -> Result<PeerKey, SecretError> {
        let secret = text
            .strip_suffix('\n')
            .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
        if !SECRET_LEN_RANGE.contains(&secret.len()) {
            return Err(SecretError::Length(secret.len()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::NotPrintable);
        }
        // HMAC takes a key of any length; the error case cannot happen, mapped for totality.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
            .map_err(|_| SecretError::Length(secret.len()))?;
        Ok(PeerKey { mac })
    }

    /// The password of the internal Redis user, derived from the cluster secret (hex of
    /// HMAC-SHA-256(secret, [`INTERNAL_PASSWORD_LABEL`])): every node holding the secret derives
    /// the same one, so one secret file serves peer messages and the modules' connections.
    /// The label keeps it apart from every sealed message's MAC, which starts with `RCP1`.
    pub fn internal_password(&self) -> String {
        hex::encode(self.tag(INTERNAL_PASSWORD_LABEL))
    }

    fn tag(&self, signed: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, signed: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        mac.update(signed);
        // Constant time.
        mac.verify_slice(tag).is_ok()
    }
}

/// The text of a new secret made from 32 random bytes (64 hex digits).
pub fn new_secret_text(random: [u8; 32]) -> String {
    hex::encode(random)
}

/// Who sent a message, to whom, when and with which number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub channel: Channel,
    pub from: String,
    pub to: String,
    /// The sender's wall clock, Unix milliseconds.
    pub timestamp_ms: u64,
    /// The sender's sequence number (see the module comment).
    pub seq: u64,
}

/// A message that passed every check.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub header: Header,
    pub payload: &'a [u8],
}

/// The sealed wire form of `payload`. Ids longer than 255 bytes (node ids have at most 32) are
/// cut, so the receiver refuses the message.
pub fn seal(key: &PeerKey, header: &Header, payload: &[u8]) -> Vec<u8> {
    fn id(s: &str) -> &[u8] {
        let b = s.as_bytes();
        &b[..b.len().min(255)]
    }
    let (from, to) = (id(&header.from), id(&header.to));
    let mut out = Vec::with_capacity(MIN_LEN + from.len() + to.len() + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(header.channel.byte());
    for part in [from, to] {
        // At most 255 by the cut above.
        out.push(u8::try_from(part.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&header.timestamp_ms.to_be_bytes());
    out.extend_from_slice(&header.seq.to_be_bytes());
    out.extend_from_slice(payload);
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    out
}

/// Checks the MAC and the channel, and splits a sealed message. Freshness and membership are the
/// caller's next steps (see [`Inbound`]).
pub fn open<'a>(key: &PeerKey, channel: Channel, bytes: &'a [u8]) -> Result<Opened<'a>, Refusal> {
    if bytes.len() < MIN_LEN || !bytes.starts_with(MAGIC) {
        return Err(Refusal::Malformed);
    }
    let (signed, tag) = bytes.split_at(bytes.len() - MAC_LEN);
    if !key.verify(signed, tag) {
        return Err(Refusal::BadMac);
    }
    let mut rest = &signed[MAGIC.len()..];
    let mut take = |n: usize| -> Result<&'a [u8], Refusal> {
        if rest.len() < n {
            return Err(Refusal::Malformed);
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let channel_byte = take(1)?[0];
    let mut id = || -> Result<String, Refusal> {
        let len = usize::from(take(1)?[0]);
        String::from_utf8(take(len)?.to_vec()).map_err(|_| Refusal::Malformed)
    };
    let (from, to) = (id()?, id()?);
    let mut number = || -> Result<u64, Refusal> {
        let b: [u8; 8] = take(8)?.try_into().map_err(|_| Refusal::Malformed)?;
        Ok(u64::from_be_bytes(b))
    };
    let (timestamp_ms, seq) = (number()?, number()?);
    if channel_byte != channel.byte() {
        return Err(Refusal::Malformed);
    }
    Ok(Opened {
        header: Header {
            channel,
            from,
            to,
            timestamp_ms,
            seq,
        },
        payload: rest,
    })
}

/// A frame's declared length as a buffer size, or `TooLarge` over `max_bytes`: checked before
/// anything is allocated.
pub fn frame_len(declared: u32, max_bytes: u64) -> Result<usize, Refusal> {
    if u64::from(declared) > max_bytes {
        return Err(Refusal::TooLarge);
    }
    usize::try_from(declared).map_err(|_| Refusal::TooLarge)
}

/// What the window remembers of one sender.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    highest: u64,
    /// Bit k set: `highest - k` was taken (bit 0 is `highest` itself).
    bits: u64,
    /// Receiver's clock when this sender was last accepted (to forget the quietest first).
    last_ms: u64,
}

/// The replay window of one receiver and channel: refuses messages outside ±`window_ms` of the
/// receiver's clock and sequence numbers taken before. Remembers at most `max_senders` senders
/// (the one heard from least recently is forgotten first).
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    window_ms: u64,
    max_senders: usize,
    senders: BTreeMap<String, Seen>,
}

impl ReplayWindow {
    pub fn new(window_ms: u64, max_senders: usize) -> ReplayWindow {
        ReplayWindow {
            window_ms,
            max_senders: max_senders.max(1),
            senders: BTreeMap::new(),
        }
    }

    /// Takes (`Ok`) or refuses one authenticated message from `from`, at `now_ms` on the
    /// receiver's clock. A refused message changes nothing.
    pub fn check(
        &mut self,
        from: &str,
        timestamp_ms: u64,
        seq: u64,
        now_ms: u64,
    ) -> Result<(), Refusal> {
        if timestamp_ms.saturating_add(self.window_ms) < now_ms {
            return Err(Refusal::Stale);
        }
        if timestamp_ms > now_ms.saturating_add(self.window_ms) {
            return Err(Refusal::Future);
        }
        match self.senders.get_mut(from) {
            Some(seen) => {
                if seq > seen.highest {
                    let shift = seq - seen.highest;
                    seen.bits = if shift >= SEQ_WINDOW {
                        0
                    } else {
                        seen.bits << shift
                    };
                    seen.bits |= 1;
                    seen.highest = seq;
                } else {
                    let behind = seen.highest - seq;
                    if behind >= SEQ_WINDOW || seen.bits & (1 << behind) != 0 {
                        return Err(Refusal::Replayed);
                    }
                    seen.bits |= 1 << behind;
                }
                seen.last_ms = now_ms;
            }
            None => {
                if self.senders.len() >= self.max_senders {
                    let quietest = self
                        .senders
                        .iter()
                        .min_by_key(|(_, s)| s.last_ms)
                        .map(|(id, _)| id.clone());
                    if let Some(id) = quietest {
                        self.senders.remove(&id);
                    }
                }
                self.senders.insert(
                    from.to_string(),
                    Seen {
                        highest: seq,
                        bits: 1,
                        last_ms: now_ms,
                    },
                );
            }
        }
        Ok(())
    }

    /// Forgets the senders `keep` says no (those that are no longer members).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.senders.retain(|id, _| keep(id));
    }

    /// Senders remembered.
    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }
}

/// One receiver's checks for one channel, in order: the MAC (and the channel), the recipient,
/// membership, then freshness. Non-members never reach the replay window, so they leave no state.
#[derive(Clone, Debug)]
pub struct Inbound {
    key: PeerKey,
    channel: Channel,
    me: String,
    window: ReplayWindow,
}

impl Inbound {
    pub fn new(key: PeerKey, channel: Channel, me: &str, window: ReplayWindow) -> Inbound {
        Inbound {
            key,
            channel,
            me: me.to_string(),
            window,
        }
    }

    /// Opens `bytes` if every check passes; `is_member` says whether a sender id may talk to
    /// this node; `now_ms` is this node's wall clock (Unix milliseconds).
    pub fn accept<'a>(
        &mut self,
        bytes: &'a [u8],
        now_ms: u64,
        is_member: impl Fn(&str) -> bool,
    ) -> Result<Opened<'a>, Refusal> {
        let opened = open(&self.key, self.channel, bytes)?;
        let h = &opened.header;
        if h.to != self.me {
            return Err(Refusal::WrongRecipient);
        }
        if h.from == self.me || !is_member(&h.from) {
            return Err(Refusal::NotMember);
        }
        self.window.check(&h.from, h.timestamp_ms, h.seq, now_ms)?;
        Ok(opened)
    }

    /// Forgets the replay state of senders that are no longer members.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.window.retain(keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test-secret";
    const NOW: u64 = 1_700_000_000_000;
    const WINDOW: u64 = 30_000;

    fn key() -> PeerKey {
        PeerKey::from_secret(SECRET).expect("valid secret")
    }

    fn header(from: &str, to: &str, timestamp_ms: u64, seq: u64) -> Header {
        Header {
            channel: Channel::Raft,
            from: from.into(),
            to: to.into(),
            timestamp_ms,
            seq,
        }
    }

    fn inbound() -> Inbound {
        Inbound::new(key(), Channel::Raft, "n1", ReplayWindow::new(WINDOW, 16))
    }

    fn members(id: &str) -> bool {
        matches!(id, "n1" | "n2" | "n3")
    }

    #[test]
    fn a_sealed_message_opens_with_its_header_and_payload() {
        let h = header("n2", "n1", NOW, 7);
        let sealed = seal(&key(), &h, b"{\"hello\":1}");
        let opened = open(&key(), Channel::Raft, &sealed).expect("opens");
        assert_eq!(opened.header, h);
        assert_eq!(opened.payload, b"{\"hello\":1}");
        // An empty payload too.
        let sealed = seal(&key(), &h, b"");
        assert_eq!(
            open(&key(), Channel::Raft, &sealed).map(|o| o.payload),
            Ok(&b""[..])
        );
    }

    #[test]
    fn a_forged_or_altered_message_is_refused() {
        let sealed = seal(&key(), &header("n2", "n1", NOW, 1), b"payload");
        // Any byte changed (header, payload or MAC) breaks the MAC; the magic is checked first.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            let expected = if i < MAGIC.len() {
                Refusal::Malformed
            } else {
                Refusal::BadMac
            };
            assert_eq!(open(&key(), Channel::Raft, &bad), Err(expected), "byte {i}");
        }
        // A MAC made up by someone without the key.
        let mut forged = sealed.clone();
        let n = forged.len();
        forged[n - MAC_LEN..].fill(0);
        assert_eq!(open(&key(), Channel::Raft, &forged), Err(Refusal::BadMac));
        // Junk, and plain JSON as the port took before.
        assert_eq!(
            open(&key(), Channel::Raft, b"{\"host\":\"x\"}"),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            open(&key(), Channel::Raft, &[0u8; 200]),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn the_internal_password_is_derived_from_the_secret() {
        let a = key().internal_password();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        // Every holder of the secret derives the same password; another secret another one.
        assert_eq!(a, key().internal_password());
        let other = PeerKey::from_secret(&"b".repeat(40)).expect("valid");
        assert_ne!(a, other.internal_password());
        // It is the HMAC of the label, pinned so that nodes of different versions agree.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(b"rcluster internal password");
        assert_eq!(a, hex::encode(mac.finalize().into_bytes()));
    }

    #[test]
    fn another_clusters_key_is_refused() {
        let other = PeerKey::from_secret("another-cluster-secret-0123456789abcdef").expect("valid");
        let sealed = seal(&other, &header("n2", "n1", NOW, 1), b"payload");
        assert_eq!(open(&key(), Channel::Raft, &sealed), Err(Refusal::BadMac));
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let sealed = seal(&key(), &header("n2", "n1", NOW, 1), b"some payload");
        for len in 0..sealed.len() {
            let r = open(&key(), Channel::Raft, &sealed[..len]);
            assert!(
                matches!(r, Err(Refusal::Malformed | Refusal::BadMac)),
                "{len}: {r:?}"
            );
        }
    }

    #[test]
    fn a_message_of_the_other_channel_is_refused() {
        let mut h = header("n2", "n1", NOW, 1);
        h.channel = Channel::Heartbeat;
        let sealed = seal(&key(), &h, b"ping");
        assert_eq!(
            open(&key(), Channel::Raft, &sealed),
            Err(Refusal::Malformed)
        );
        assert!(open(&key(), Channel::Heartbeat, &sealed).is_ok());
    }

    #[test]
    fn inbound_checks_recipient_and_membership_before_the_window() {
        let mut inbound = inbound();
        let to_n3 = seal(&key(), &header("n2", "n3", NOW, 1), b"x");
        assert_eq!(
            inbound.accept(&to_n3, NOW, members),
            Err(Refusal::WrongRecipient)
        );
        let stranger = seal(&key(), &header("n9", "n1", NOW, 1), b"x");
        assert_eq!(
            inbound.accept(&stranger, NOW, members),
            Err(Refusal::NotMember)
        );
        let myself = seal(&key(), &header("n1", "n1", NOW, 1), b"x");
        assert_eq!(
            inbound.accept(&myself, NOW, members),
            Err(Refusal::NotMember)
        );
        // Refused senders left no replay state.
        assert!(inbound.window.is_empty());
        let ok = seal(&key(), &header("n2", "n1", NOW, 1), b"x");
        assert_eq!(
            inbound.accept(&ok, NOW, members).map(|o| o.payload),
            Ok(&b"x"[..])
        );
        assert_eq!(inbound.window.len(), 1);
    }

    #[test]
    fn a_replayed_message_is_refused() {
        let mut inbound = inbound();
        let sealed = seal(&key(), &header("n2", "n1", NOW, 100), b"x");
        assert!(inbound.accept(&sealed, NOW, members).is_ok());
        assert_eq!(
            inbound.accept(&sealed, NOW + 5, members),
            Err(Refusal::Replayed)
        );
        // A genuine later message still passes; the old one stays refused.
        let next = seal(&key(), &header("n2", "n1", NOW + 10, 101), b"y");
        assert!(inbound.accept(&next, NOW + 10, members).is_ok());
        assert_eq!(
            inbound.accept(&sealed, NOW + 10, members),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn stale_and_too_new_timestamps_are_refused() {
        let mut w = ReplayWindow::new(WINDOW, 16);
        assert_eq!(w.check("n2", NOW - WINDOW - 1, 1, NOW), Err(Refusal::Stale));
        assert_eq!(
            w.check("n2", NOW + WINDOW + 1, 2, NOW),
            Err(Refusal::Future)
        );
        // The edges are inside.
        assert_eq!(w.check("n2", NOW - WINDOW, 3, NOW), Ok(()));
        assert_eq!(w.check("n2", NOW + WINDOW, 4, NOW), Ok(()));
        // Clocks near zero or the end of time do not overflow.
        assert_eq!(w.check("n3", u64::MAX, 1, 0), Err(Refusal::Future));
        assert_eq!(w.check("n3", 0, 1, u64::MAX), Err(Refusal::Stale));
    }

    #[test]
    fn the_sequence_window_takes_reordered_numbers_once() {
        let mut w = ReplayWindow::new(WINDOW, 16);
        assert_eq!(w.check("n2", NOW, 1000, NOW), Ok(()));
        // Reordered within the window: taken once each.
        assert_eq!(w.check("n2", NOW, 998, NOW), Ok(()));
        assert_eq!(w.check("n2", NOW, 998, NOW), Err(Refusal::Replayed));
        assert_eq!(w.check("n2", NOW, 999, NOW), Ok(()));
        assert_eq!(w.check("n2", NOW, 1000, NOW), Err(Refusal::Replayed));
        // Too far below the newest to tell: refused.
        assert_eq!(
            w.check("n2", NOW, 1000 - SEQ_WINDOW, NOW),
            Err(Refusal::Replayed)
        );
        assert_eq!(w.check("n2", NOW, 1000 - SEQ_WINDOW + 1, NOW), Ok(()));
        // A jump past the window forgets the bits, and the numbers in between are new.
        assert_eq!(w.check("n2", NOW, 5000, NOW), Ok(()));
        assert_eq!(w.check("n2", NOW, 4990, NOW), Ok(()));
        assert_eq!(w.check("n2", NOW, 5000, NOW), Err(Refusal::Replayed));
        // Each sender has its own numbers.
        assert_eq!(w.check("n3", NOW, 1000, NOW), Ok(()));
    }

    #[test]
    fn a_restarted_sender_continues_above_its_earlier_numbers() {
        let mut w = ReplayWindow::new(WINDOW, 16);
        // Sequence numbers start at the sender's start time in microseconds.
        let first_run = NOW * 1000;
        for k in 0..500 {
            assert_eq!(w.check("n2", NOW, first_run + k, NOW), Ok(()));
        }
        let second_run = (NOW + 2_000) * 1000;
        assert_eq!(w.check("n2", NOW + 2_000, second_run, NOW + 2_000), Ok(()));
        assert_eq!(
            w.check("n2", NOW + 2_000, first_run + 499, NOW + 2_000),
            Err(Refusal::Replayed)
        );
    }

    #[test]
    fn the_window_remembers_a_bounded_number_of_senders() {
        let mut w = ReplayWindow::new(WINDOW, 2);
        assert_eq!(w.check("a", NOW, 1, NOW), Ok(()));
        assert_eq!(w.check("b", NOW, 1, NOW + 1), Ok(()));
        assert_eq!(w.check("c", NOW, 1, NOW + 2), Ok(()));
        assert_eq!(w.len(), 2);
        // The quietest ("a") was forgotten; "b" still refuses its replay.
        assert_eq!(w.check("b", NOW, 1, NOW + 3), Err(Refusal::Replayed));
        w.retain(|id| id != "b");
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn frame_lengths_over_the_cap_are_refused() {
        assert_eq!(frame_len(100, 4 << 20), Ok(100));
        assert_eq!(frame_len(4 << 20, 4 << 20), Ok(4 << 20));
        assert_eq!(frame_len((4 << 20) + 1, 4 << 20), Err(Refusal::TooLarge));
        assert_eq!(frame_len(u32::MAX, 4 << 20), Err(Refusal::TooLarge));
    }

    #[test]
    fn secrets_are_checked() {
        assert!(PeerKey::from_secret(SECRET).is_ok());
        // One trailing line end is a file's, not the secret's.
        assert!(PeerKey::from_secret(&format!("{SECRET}\n")).is_ok());
        assert!(PeerKey::from_secret(&format!("{SECRET}\r\n")).is_ok());
        assert_eq!(
            PeerKey::from_secret("short").map(|_| ()),
            Err(SecretError::Length(5))
        );
        assert_eq!(
            PeerKey::from_secret(&"x".repeat(1025)).map(|_| ()),
            Err(SecretError::Length(1025))
        );
        assert_eq!(
            PeerKey::from_secret(&format!("{SECRET} with spaces")).map(|_| ()),
            Err(SecretError::NotPrintable)
        );
        assert_eq!(
            PeerKey::from_secret(&format!("{SECRET}\n\n")).map(|_| ()),
            Err(SecretError::NotPrintable)
        );
        let made = new_secret_text([7; 32]);
        assert_eq!(made.len(), 64);
        assert!(PeerKey::from_secret(&made).is_ok());
        // The key never shows in logs.
        assert_eq!(format!("{:?}", key()), "PeerKey(…)");
    }

    #[test]
    fn the_wire_form_is_pinned() {
        // Changing the layout breaks mixed-version clusters: this test says so.
        let sealed = seal(&key(), &header("n2", "n1", 1, 2), b"p");
        let expected_head: &[u8] = b"RCP1\x01\x02n2\x02n1\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x02p";
        assert_eq!(&sealed[..sealed.len() - MAC_LEN], expected_head);
    }
}
