//! SNTP (RFC 4330) client arithmetic: building a request, checking a server's reply and turning
//! the four timestamps into a clock offset and round trip. No sockets, no clock: times are passed in.

/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;
/// Size of an NTP packet without extensions or authenticator.
pub const PACKET_LEN: usize = 48;

const MODE_CLIENT: u8 = 3;
const MODE_SERVER: u8 = 4;
const MODE_BROADCAST: u8 = 5;
const VERSION: u8 = 4;
const LEAP_ALARM: u8 = 3;
/// NTP timestamp units (2^-32 s) per second.
const UNITS_PER_S: i128 = 1 << 32;

/// Why a reply was not usable; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SntpError {
    #[error("sntp: reply is {0} bytes, shorter than the {PACKET_LEN} of an NTP packet")]
    TooShort(usize),
    #[error("sntp: reply has mode {0}, expected 4 (server) or 5 (broadcast)")]
    WrongMode(u8),
    #[error(
        "sntp: kiss-of-death from server (stratum 0, code {0:?}): stop or slow down querying it"
    )]
    KissOfDeath(String),
    #[error("sntp: reply has stratum {0}, outside 1..=15 (server not synchronized)")]
    BadStratum(u8),
    #[error("sntp: reply has leap indicator 3 (server clock not synchronized)")]
    Unsynchronized,
    #[error("sntp: reply has a zero transmit timestamp")]
    ZeroTransmit,
    #[error(
        "sntp: reply's originate timestamp {got:#018x} is not our request's transmit timestamp \
         {expected:#018x} (stale or spoofed reply)"
    )]
    OriginateMismatch { expected: u64, got: u64 },
    #[error(
        "sntp: reply received at {received_ms} ms, before the request was sent at {sent_ms} ms"
    )]
    ReceivedBeforeSent { sent_ms: u64, received_ms: u64 },
}

/// Unix milliseconds to a 64-bit NTP timestamp (`seconds since 1900 << 32 | fraction`). Seconds
/// wrap modulo 2^32 as NTP eras do (era 1 starts 2036-02-07); [`ntp_to_unix_ms`] undoes this for
/// times from 1968 to 2104. The fraction is rounded down, so the round trip is exact in ms.
pub fn unix_ms_to_ntp(ms: u64) -> u64 {
    let secs = (ms / 1000 + NTP_UNIX_OFFSET_S) & 0xFFFF_FFFF;
    let frac = ((ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// A 64-bit NTP timestamp to Unix milliseconds, rounded to the nearest ms. Following RFC 4330
/// section 3, seconds with the top bit set are in era 0 (1968-2036), otherwise in era 1
/// (2036-2104). Times before 1970 give 0.
pub fn ntp_to_unix_ms(ntp: u64) -> u64 {
    let secs = ntp >> 32;
    let frac = ntp & 0xFFFF_FFFF;
    let ntp_secs = if secs & 0x8000_0000 != 0 {
        secs
    } else {
        secs + (1 << 32)
    };
    let Some(unix_secs) = ntp_secs.checked_sub(NTP_UNIX_OFFSET_S) else {
        return 0;
    };
    // frac * 1000 < 2^42: no overflow. Rounds to nearest; 999.5+ ms carries into the next second.
    let ms = (frac * 1000 + (1 << 31)) >> 32;
    unix_secs * 1000 + ms
}

/// A client request (LI 0, version 4, mode 3) whose transmit timestamp is `transmit_unix_ms`.
/// Keep `unix_ms_to_ntp(transmit_unix_ms)`: the reply must echo it as its originate timestamp.
pub fn request(transmit_unix_ms: u64) -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = (VERSION << 3) | MODE_CLIENT;
    packet[40..48].copy_from_slice(&unix_ms_to_ntp(transmit_unix_ms).to_be_bytes());
    packet
}

/// The fields of a server reply that the client uses. Timestamps are raw 64-bit NTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub originate: u64,
    pub receive: u64,
    pub transmit: u64,
    pub stratum: u8,
    pub mode: u8,
    pub leap: u8,
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Parses and sanity-checks a reply (RFC 4330 section 5): at least 48 bytes, mode 4 or 5,
/// stratum 1..=15 (0 is a kiss-of-death, whose 4-letter code is in the error), leap indicator
/// not 3 (alarm: server unsynchronized), non-zero transmit timestamp. The originate check needs
/// the request, so it is in [`measure`].
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, SntpError> {
    if bytes.len() < PACKET_LEN {
        return Err(SntpError::TooShort(bytes.len()));
    }
    let leap = bytes[0] >> 6;
    let mode = bytes[0] & 0x07;
    let stratum = bytes[1];
    if mode != MODE_SERVER && mode != MODE_BROADCAST {
        return Err(SntpError::WrongMode(mode));
    }
    if stratum == 0 {
        let code = bytes[12..16]
            .iter()
            .map(|&c| {
                if c.is_ascii_graphic() {
                    char::from(c)
                } else {
                    '?'
                }
            })
            .collect();
        return Err(SntpError::KissOfDeath(code));
    }
    if stratum > 15 {
        return Err(SntpError::BadStratum(stratum));
    }
    if leap == LEAP_ALARM {
        return Err(SntpError::Unsynchronized);
    }
    let transmit = be_u64(bytes, 40);
    if transmit == 0 {
        return Err(SntpError::ZeroTransmit);
    }
    Ok(Reply {
        originate: be_u64(bytes, 24),
        receive: be_u64(bytes, 32),
        transmit,
        stratum,
        mode,
        leap,
    })
}

/// One measurement: how far the server's clock is ahead of ours (negative: behind) and the
/// network round trip, both in ms rounded to nearest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub offset_ms: i64,
    pub round_trip_ms: u64,
}

/// `a - b` in NTP units, valid across an era boundary for differences under 68 years.
fn diff(a: u64, b: u64) -> i128 {
    i128::from(a.wrapping_sub(b) as i64)
}

/// `units * 1000 / divisor` rounded to nearest (halves away from zero).
fn units_to_ms(units: i128, divisor: i128) -> i128 {
    let n = units * 1000;
    if n >= 0 {
        (n + divisor / 2) / divisor
    } else {
        -((-n + divisor / 2) / divisor)
    }
}

/// Offset and round trip from our send time T1 (`sent_unix_ms`), the server's receive T2 and
/// transmit T3, and our receive time T4 (`received_unix_ms`):
/// `offset = ((T2 - T1) + (T3 - T4)) / 2`, `delay = (T4 - T1) - (T3 - T2)`, computed in NTP
/// units and rounded to ms at the end. A negative delay (server clock noise) is reported as 0.
///
/// `expected_originate` is the transmit timestamp our request carried (for [`request`],
/// `unix_ms_to_ntp(transmit_unix_ms)`; it may also be a random nonce). A reply not echoing it is
/// rejected: it answers some other request, or was forged.
pub fn measure(
    sent_unix_ms: u64,
    reply: &Reply,
    received_unix_ms: u64,
    expected_originate: u64,
) -> Result<Sample, SntpError> {
    if reply.originate != expected_originate {
        return Err(SntpError::OriginateMismatch {
            expected: expected_originate,
            got: reply.originate,
        });
    }
    if received_unix_ms < sent_unix_ms {
        return Err(SntpError::ReceivedBeforeSent {
            sent_ms: sent_unix_ms,
            received_ms: received_unix_ms,
        });
    }
    let t1 = unix_ms_to_ntp(sent_unix_ms);
    let t4 = unix_ms_to_ntp(received_unix_ms);
    let (t2, t3) = (reply.receive, reply.transmit);
    let offset_x2 = diff(t2, t1) + diff(t3, t4);
    let delay = diff(t4, t1) - diff(t3, t2);
    let offset_ms = units_to_ms(offset_x2, 2 * UNITS_PER_S);
    let round_trip_ms = units_to_ms(delay.max(0), UNITS_PER_S);
    Ok(Sample {
        // Differences are within +-2^63 units (~68 years), so these fit.
        offset_ms: offset_ms.clamp(i64::MIN.into(), i64::MAX.into()) as i64,
        round_trip_ms: round_trip_ms.clamp(0, u64::MAX.into()) as u64,
    })
}

/// What a server answers to `request` (for test responders): mode 4, the request's version,
/// `stratum`, originate = the request's transmit, and the given receive and transmit times.
/// `None` if `request` is shorter than 48 bytes or is not a client (mode 3) packet.
pub fn server_reply(
    request: &[u8],
    receive_unix_ms: u64,
    transmit_unix_ms: u64,
    stratum: u8,
) -> Option<[u8; PACKET_LEN]> {
    if request.len() < PACKET_LEN || request[0] & 0x07 != MODE_CLIENT {
        return None;
    }
    let version = (request[0] >> 3) & 0x07;
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = (version << 3) | MODE_SERVER;
    packet[1] = stratum;
    packet[2] = request[2]; // poll
    packet[3] = (-10i8) as u8; // precision: about 1 ms
    packet[12..16].copy_from_slice(b"LOCL");
    packet[16..24].copy_from_slice(&unix_ms_to_ntp(transmit_unix_ms).to_be_bytes()); // reference
    packet[24..32].copy_from_slice(&request[40..48]);
    packet[32..40].copy_from_slice(&unix_ms_to_ntp(receive_unix_ms).to_be_bytes());
    packet[40..48].copy_from_slice(&unix_ms_to_ntp(transmit_unix_ms).to_be_bytes());
    Some(packet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_700_000_000_123;

    /// Client clock `client_ms` sends; the server's clock is `ahead_ms` ahead; `net_ms` each way;
    /// the server holds the request `hold_ms`.
    fn exchange(client_ms: u64, ahead_ms: i64, net_ms: u64, hold_ms: u64) -> Sample {
        let req = request(client_ms);
        let server_rx = (client_ms as i64 + net_ms as i64 + ahead_ms) as u64;
        let server_tx = server_rx + hold_ms;
        let bytes = server_reply(&req, server_rx, server_tx, 2).unwrap();
        let reply = parse_reply(&bytes).unwrap();
        let received = client_ms + net_ms + hold_ms + net_ms;
        measure(client_ms, &reply, received, unix_ms_to_ntp(client_ms)).unwrap()
    }

    #[test]
    fn conversion_known_values() {
        assert_eq!(unix_ms_to_ntp(0), NTP_UNIX_OFFSET_S << 32);
        assert_eq!(unix_ms_to_ntp(500), (NTP_UNIX_OFFSET_S << 32) | 0x8000_0000);
        assert_eq!(ntp_to_unix_ms(NTP_UNIX_OFFSET_S << 32), 0);
        // Before 1970 (era 0, top bit set): clamps to 0.
        assert_eq!(ntp_to_unix_ms(0x8000_0000u64 << 32), 0);
        // 999.9999 ms rounds up into the next second.
        assert_eq!(
            ntp_to_unix_ms((NTP_UNIX_OFFSET_S << 32) | 0xFFFF_FFFF),
            1000
        );
    }

    #[test]
    fn conversion_round_trips_across_2036() {
        // 2036-02-07T06:28:16Z, where NTP seconds wrap to era 1.
        let era1 = ((1u64 << 32) - NTP_UNIX_OFFSET_S) * 1000;
        for ms in [0, 1, 999, NOW, era1 - 1, era1, era1 + 1, era1 + 123_456_789] {
            assert_eq!(ntp_to_unix_ms(unix_ms_to_ntp(ms)), ms, "{ms}");
        }
        assert_eq!(unix_ms_to_ntp(era1) >> 32, 0);
    }

    proptest! {
        #[test]
        fn conversion_round_trip(ms in 0u64..4_000_000_000_000) {
            prop_assert_eq!(ntp_to_unix_ms(unix_ms_to_ntp(ms)), ms);
        }

        #[test]
        fn measure_recovers_offset_and_delay(
            ahead in -100_000i64..100_000,
            net in 0u64..5_000,
            hold in 0u64..1_000,
        ) {
            let s = exchange(NOW, ahead, net, hold);
            prop_assert_eq!(s, Sample { offset_ms: ahead, round_trip_ms: 2 * net });
        }
    }

    #[test]
    fn request_layout() {
        let req = request(NOW);
        assert_eq!(req[0], 0x23); // LI 0, VN 4, mode 3
        assert_eq!(be_u64(&req, 40), unix_ms_to_ntp(NOW));
        assert!(req[1..40].iter().all(|&b| b == 0));
    }

    #[test]
    fn exact_example_server_250_ahead_20_each_way() {
        // T1 = NOW, T2 = NOW + 20 + 250, T3 = T2 + 5, T4 = NOW + 45.
        let s = exchange(NOW, 250, 20, 5);
        assert_eq!(
            s,
            Sample {
                offset_ms: 250,
                round_trip_ms: 40
            }
        );
    }

    #[test]
    fn negative_offset() {
        let s = exchange(NOW, -1234, 7, 0);
        assert_eq!(s.offset_ms, -1234);
        assert_eq!(s.round_trip_ms, 14);
    }

    #[test]
    fn asymmetric_path_gives_half_the_asymmetry() {
        // 10 ms out, 30 ms back, clocks equal: offset reads -10, rtt 40.
        let req = request(NOW);
        let bytes = server_reply(&req, NOW + 10, NOW + 10, 1).unwrap();
        let reply = parse_reply(&bytes).unwrap();
        let s = measure(NOW, &reply, NOW + 40, unix_ms_to_ntp(NOW)).unwrap();
        assert_eq!(
            s,
            Sample {
                offset_ms: -10,
                round_trip_ms: 40
            }
        );
    }

    #[test]
    fn kiss_of_death() {
        let mut bytes = server_reply(&request(NOW), NOW, NOW, 0).unwrap();
        bytes[12..16].copy_from_slice(b"RATE");
        let err = parse_reply(&bytes).unwrap_err();
        assert_eq!(err, SntpError::KissOfDeath("RATE".into()));
        assert!(err.to_string().contains("kiss-of-death"), "{err}");
        assert!(err.to_string().contains("RATE"), "{err}");
    }

    #[test]
    fn short_packet() {
        let bytes = server_reply(&request(NOW), NOW, NOW, 1).unwrap();
        assert_eq!(parse_reply(&bytes[..47]), Err(SntpError::TooShort(47)));
        assert_eq!(parse_reply(&[]), Err(SntpError::TooShort(0)));
        assert_eq!(server_reply(&bytes[..47], NOW, NOW, 1), None);
    }

    #[test]
    fn bad_fields_rejected() {
        let good = server_reply(&request(NOW), NOW, NOW, 1).unwrap();
        assert!(parse_reply(&good).is_ok());

        let mut b = good;
        b[0] = (4 << 3) | MODE_CLIENT;
        assert_eq!(parse_reply(&b), Err(SntpError::WrongMode(3)));
        let mut b = good;
        b[0] = (4 << 3) | MODE_BROADCAST;
        assert!(parse_reply(&b).is_ok());
        let mut b = good;
        b[1] = 16;
        assert_eq!(parse_reply(&b), Err(SntpError::BadStratum(16)));
        let mut b = good;
        b[0] |= LEAP_ALARM << 6;
        assert_eq!(parse_reply(&b), Err(SntpError::Unsynchronized));
        let mut b = good;
        b[40..48].fill(0);
        assert_eq!(parse_reply(&b), Err(SntpError::ZeroTransmit));
        // A server reply is not a request.
        assert_eq!(server_reply(&good, NOW, NOW, 1), None);
    }

    #[test]
    fn wrong_originate_rejected() {
        let req = request(NOW);
        let reply = parse_reply(&server_reply(&req, NOW, NOW, 1).unwrap()).unwrap();
        let expected = unix_ms_to_ntp(NOW + 1);
        let err = measure(NOW, &reply, NOW + 5, expected).unwrap_err();
        assert_eq!(
            err,
            SntpError::OriginateMismatch {
                expected,
                got: unix_ms_to_ntp(NOW)
            }
        );
        assert!(err.to_string().contains("spoofed"), "{err}");
    }

    #[test]
    fn received_before_sent_rejected() {
        let req = request(NOW);
        let reply = parse_reply(&server_reply(&req, NOW, NOW, 1).unwrap()).unwrap();
        assert!(matches!(
            measure(NOW, &reply, NOW - 1, unix_ms_to_ntp(NOW)),
            Err(SntpError::ReceivedBeforeSent { .. })
        ));
    }
}
