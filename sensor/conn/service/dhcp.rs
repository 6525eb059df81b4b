//! DHCP (`src/analyzer/protocol/dhcp/dhcp-protocol.pac`,
//! `dhcp-analyzer.pac`), attached on 67, 68 and 4011/udp or by the
//! `dhcp_cookie` signature.
//!
//! Each datagram is one message: the 236-byte BOOTP header, the 4-byte
//! cookie and options up to the end option (255). Running out of data is a
//! binpac exception, i.e. a violation. A message without a message-type
//! option (53) is a violation; a cookie other than 0x63825363 is a
//! violation; otherwise (even after the missing-type violation, which then
//! still removes the service) the analyzer confirms.
//!
//! Limits: stateless; the option walk is bounded by the datagram.

use super::{Cx, Parser};

const COOKIE: u32 = 0x6382_5363;

#[derive(Debug)]
pub(crate) struct Dhcp;

/// Bytes the parser consumes for an option value: fixed-size options are
/// read at their size whatever the length byte says
/// (`dhcp-options.pac`); None where binpac would fail on the length.
fn option_size(code: u8, len: u8) -> Option<usize> {
    let len = usize::from(len);
    Some(match code {
        19 | 53 | 116 => 1,
        57 => 2,
        1 | 2 | 28 | 50 | 51 | 54 | 58 | 59 => 4,
        3 | 4 | 5 | 6 | 42 | 44 => len / 4 * 4,
        61 if len < 1 => return None,
        81 if len < 3 => return None,
        _ => len,
    })
}

/// Parses one message: None on a binpac exception, else (cookie, has a
/// message type option).
fn parse(d: &[u8]) -> Option<(u32, bool)> {
    let cookie = u32::from_be_bytes(d.get(236..240)?.try_into().ok()?);
    let mut pos = 240;
    let mut has_type = false;
    loop {
        let &code = d.get(pos)?;
        pos += 1;
        match code {
            255 => break,
            0 => {}
            _ => {
                let &len = d.get(pos)?;
                pos += 1;
                if code == 53 {
                    has_type = true;
                }
                let n = option_size(code, len)?;
                d.get(pos..pos + n)?;
                pos += n;
            }
        }
    }
    Some((cookie, has_type))
}

impl Parser for Dhcp {
    fn deliver(&mut self, _is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        match parse(data) {
            None => cx.violation(),
            Some((cookie, has_type)) => {
                if !has_type {
                    cx.violation();
                }
                if cookie != COOKIE {
                    cx.violation();
                } else {
                    cx.confirm();
                }
            }
        }
        data.len()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn discover() -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 1;
        m[1] = 1;
        m[2] = 6;
        m.extend_from_slice(&COOKIE.to_be_bytes());
        m.extend_from_slice(&[53, 1, 1, 55, 2, 1, 3, 255]);
        m
    }

    #[test]
    fn parses() {
        assert_eq!(parse(&discover()), Some((COOKIE, true)));
        let mut m = discover();
        m.truncate(245);
        assert_eq!(parse(&m), None);
        let mut m = discover();
        m[240] = 12;
        assert_eq!(parse(&m).map(|x| x.1), Some(false));
        assert_eq!(parse(b"short"), None);
    }
}
