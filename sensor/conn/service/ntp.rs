//! NTP (`src/analyzer/protocol/ntp/ntp-protocol.pac`, `ntp-mode7.pac`,
//! `ntp-analyzer.pac`), attached on 123/udp.
//!
//! Each datagram is one message, parsed by its mode: 1-5 the 48-byte
//! standard header, then extension fields while more than 24 bytes remain
//! (each with the `&enforce` length checks) and a MAC of 20 or 24 bytes;
//! 6 a control message (12 bytes, data, optional 12-byte MAC); 7 a
//! private message (8 bytes, data, a 20-byte MAC when the auth bit is set);
//! 0 anything. Running out of data or failing a check is a violation; a
//! parsed message confirms. A server-mode message from the originator, or a
//! client-mode message from the responder, flips the roles, once per
//! direction (binpac's per-flow `flipped_`).
//!
//! Limits: stateless apart from two flags; the extension walk is bounded
//! by the datagram.

use super::{Cx, Parser, GIVE_UP_AFTER};

#[derive(Debug)]
pub(crate) struct Ntp {
    /// binpac's `flipped_`, per flow (0 = originator's).
    flipped: [bool; 2],
}

impl Ntp {
    pub fn new() -> Self {
        Ntp {
            flipped: [false; 2],
        }
    }
}

fn be16(d: &[u8], i: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes([
        *d.get(i)?,
        *d.get(i + 1)?,
    ])))
}

fn be32(d: &[u8], i: usize) -> Option<u64> {
    Some(u64::from(u32::from_be_bytes(
        d.get(i..i + 4)?.try_into().ok()?,
    )))
}

/// Standard message (modes 1-5) after the first byte.
fn std_msg(d: &[u8]) -> Option<()> {
    // 47 bytes of fixed fields after the first byte.
    d.get(..48)?;
    let mut pos = 48;
    if d.len() - pos > 24 {
        // Extension fields until at most 24 bytes remain.
        while d.len().saturating_sub(pos) > 24 {
            let start = pos;
            let len = be16(d, pos + 2)? as u64;
            if len < 16 {
                return None;
            }
            let value_len = be32(d, pos + 14)?;
            if len < 18 || value_len > len - 18 {
                return None;
            }
            pos += 18;
            d.get(pos..pos + value_len as usize)?;
            pos += value_len as usize;
            let sig_len = be32(d, pos)?;
            if len < 22 || value_len > len - 22 {
                return None;
            }
            pos += 4;
            d.get(pos..pos + sig_len as usize)?;
            pos += sig_len as usize;
            // Padding up to the field's length.
            let end = start + len as usize;
            if end > pos {
                d.get(pos..end)?;
                pos = end;
            }
        }
    }
    // A trailing MAC of 20 or 24 bytes fits by construction.
    Some(())
}

fn control_msg(d: &[u8]) -> Option<()> {
    let c = be16(d, 10)?;
    d.get(12..12 + c)?;
    Some(())
}

fn mode7_msg(d: &[u8]) -> Option<()> {
    let auth = d.get(1)? & 0x80 != 0;
    let data_len = be16(d, 4)? & 0x0fff;
    let end = 6 + data_len;
    d.get(6..end)?;
    if auth {
        d.get(end..end + 20)?;
    }
    Some(())
}

/// Parses one message; returns its mode, or None on a parse failure.
pub(crate) fn parse(d: &[u8]) -> Option<u8> {
    let mode = d.first()? & 0x07;
    match mode {
        1..=5 => std_msg(d)?,
        6 => control_msg(d)?,
        7 => mode7_msg(d)?,
        _ => {}
    }
    Some(mode)
}

impl Parser for Ntp {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        match parse(data) {
            None => cx.violation(),
            Some(mode) => {
                cx.confirm();
                let flow = usize::from(!is_orig);
                if ((mode == 4 && is_orig) || (mode == 3 && !is_orig)) && !self.flipped[flow] {
                    self.flipped[flow] = true;
                    cx.flip();
                }
            }
        }
        data.len()
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        (confirmed && settled) || seen > GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let mut m = vec![0u8; 48];
        m[0] = 0x23; // v4, client
        assert_eq!(parse(&m), Some(3));
        m.truncate(47);
        assert_eq!(parse(&m), None);
        assert_eq!(parse(&[0x20]), Some(0));
        let ctl = [0x16, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 9, 9];
        assert_eq!(parse(&ctl), Some(6));
        assert_eq!(parse(&ctl[..13]), None);
        let m7 = [0x17, 0, 3, 42, 0, 0, 0, 0];
        assert_eq!(parse(&m7), Some(7));
        assert_eq!(parse(&[]), None);
        // 48 + 30 bytes: an extension field that does not fit.
        let mut e = vec![0u8; 78];
        e[0] = 0x24;
        e[50] = 0;
        e[51] = 8;
        assert_eq!(parse(&e), None);
    }
}
