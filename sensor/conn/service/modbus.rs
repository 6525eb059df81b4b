//! Modbus/TCP (`src/analyzer/protocol/modbus/modbus-protocol.pac`,
//! `modbus-analyzer.pac`), attached on 502/tcp; no DPD signature.
//!
//! Each PDU is a 7-byte MBAP header (transaction id, protocol id that must
//! be 0, length that must be at least 2, unit id) and a function code,
//! followed by `length - 2` bytes of body. A header check failing, or a
//! body too short for its function code, is a binpac exception, i.e. a
//! violation; so are odd register byte counts and write-single-coil values
//! other than 0x0000/0xFF00. The first PDU that parses completely, in
//! either direction, confirms.
//!
//! Limits: a PDU is buffered up to [`MAX_PDU`] bytes (Modbus allows 260);
//! nothing is parsed after a content gap or a violation.

use super::{Cx, Parser};

const MAX_PDU: usize = 512;

#[derive(Debug, Default)]
struct Dir {
    buf: Vec<u8>,
    /// Bytes of the current PDU still to come (after the 8-byte header).
    left: usize,
    in_body: bool,
}

#[derive(Debug)]
pub(crate) struct Modbus {
    dirs: [Dir; 2],
    stop: bool,
}

fn be16(d: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([
        d.get(i).copied().unwrap_or(0),
        d.get(i + 1).copied().unwrap_or(0),
    ]))
}

/// Checks a PDU body; None on an exception, Some(false) on an analyzer
/// violation, Some(true) when fine.
fn body_ok(is_orig: bool, fc: u8, b: &[u8], truncated: bool) -> Option<bool> {
    let need = |n: usize| -> Option<()> { (b.len() >= n || truncated).then_some(()) };
    let bc8 = || usize::from(b.first().copied().unwrap_or(0));
    if !is_orig && fc & 0x80 != 0 {
        need(1)?;
        return Some(true);
    }
    match (is_orig, fc) {
        (true, 1..=4) | (true, 6) | (false, 6) | (false, 15 | 16) => need(4)?,
        (_, 5) => {
            need(4)?;
            let v = be16(b, 2);
            if b.len() >= 4 && v != 0 && v != 0xff00 {
                return Some(false);
            }
        }
        (_, 8) | (true, 24) => need(2)?,
        (true, 15 | 16) => {
            need(5)?;
            let bc = usize::from(b.get(4).copied().unwrap_or(0));
            need(5 + bc)?;
            if fc == 16 && !bc.is_multiple_of(2) {
                return Some(false);
            }
        }
        (_, 20 | 21) | (false, 1 | 2) => {
            need(1)?;
            need(1 + bc8())?;
        }
        (false, 3 | 4 | 23) => {
            need(1)?;
            let bc = bc8();
            need(1 + bc)?;
            if !bc.is_multiple_of(2) {
                return Some(false);
            }
        }
        (_, 22) => need(6)?,
        (true, 23) => {
            need(9)?;
            let bc = usize::from(b.get(8).copied().unwrap_or(0));
            need(9 + bc)?;
            if !bc.is_multiple_of(2) {
                return Some(false);
            }
        }
        (false, 24) => {
            need(4)?;
            if !be16(b, 0).is_multiple_of(2) {
                return Some(false);
            }
        }
        (_, 43) => need(1)?,
        _ => {}
    }
    Some(true)
}

impl Modbus {
    pub fn new() -> Self {
        Modbus {
            dirs: Default::default(),
            stop: false,
        }
    }
}

impl Parser for Modbus {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() && !self.stop {
            let dir = &mut self.dirs[d];
            if !dir.in_body {
                let n = (8 - dir.buf.len().min(8)).min(rest.len());
                let (take, r) = rest.split_at(n);
                dir.buf.extend_from_slice(take);
                rest = r;
                // The protocol id and length are checked as soon as read.
                if dir.buf.len() >= 4 && be16(&dir.buf, 2) != 0 {
                    self.stop = true;
                    cx.violation();
                    break;
                }
                if dir.buf.len() >= 6 && be16(&dir.buf, 4) < 2 {
                    self.stop = true;
                    cx.violation();
                    break;
                }
                if dir.buf.len() < 8 {
                    break;
                }
                dir.in_body = true;
                dir.left = be16(&dir.buf, 4) - 2;
            }
            let dir = &mut self.dirs[d];
            let n = dir.left.min(rest.len());
            let (take, r) = rest.split_at(n);
            let room = MAX_PDU.saturating_sub(dir.buf.len()).min(n);
            dir.buf.extend_from_slice(take.get(..room).unwrap_or(&[]));
            dir.left -= n;
            rest = r;
            if dir.left == 0 {
                let total = be16(&dir.buf, 4) + 6;
                let truncated = dir.buf.len() < total;
                let fc = dir.buf.get(7).copied().unwrap_or(0);
                let ok = body_ok(is_orig, fc, dir.buf.get(8..).unwrap_or(&[]), truncated);
                dir.buf.clear();
                dir.in_body = false;
                match ok {
                    None => {
                        self.stop = true;
                        cx.violation();
                    }
                    Some(fine) => {
                        if !fine {
                            cx.violation();
                        }
                        cx.confirm();
                    }
                }
            }
        }
        data.len()
    }

    fn undelivered(&mut self, _is_orig: bool, _len: u64, _cx: &mut Cx<'_>) {
        self.stop = true;
    }

    fn finished(&self, confirmed: bool, settled: bool, _seen: u64) -> bool {
        self.stop || (confirmed && settled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(m: &mut Modbus, is_orig: bool, data: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 502,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        m.deliver(is_orig, data, &mut cx);
        notes
    }

    #[test]
    fn read_coils() {
        let mut m = Modbus::new();
        let req = [0, 1, 0, 0, 0, 6, 1, 1, 0, 0, 0, 8];
        assert_eq!(feed(&mut m, true, &req[..5]).as_slice(), &[]);
        assert_eq!(feed(&mut m, true, &req[5..]).as_slice(), &[Note::Confirm]);
        assert!(
            feed(&mut m, false, &[0, 1, 0, 0, 0, 4, 1, 1, 1, 0xff]).as_slice() == [Note::Confirm]
        );
    }

    #[test]
    fn not_modbus() {
        let mut m = Modbus::new();
        assert_eq!(
            feed(&mut m, true, b"GET / HTTP/1.1\r\n").as_slice(),
            &[Note::Violation]
        );
        let mut m = Modbus::new();
        assert_eq!(
            feed(&mut m, true, &[0x16, 3, 1, 2, 0, 1]).as_slice(),
            &[Note::Violation]
        );
        let mut m = Modbus::new();
        // Body too short for read coils.
        assert_eq!(
            feed(&mut m, true, &[0, 1, 0, 0, 0, 3, 1, 1, 0]).as_slice(),
            &[Note::Violation]
        );
    }
}
