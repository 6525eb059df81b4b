//! DCE/RPC over TCP (`src/analyzer/protocol/dce-rpc/DCE_RPC.cc`,
//! `dce_rpc-protocol.pac`, `dce_rpc-analyzer.pac`), attached on 135/tcp or
//! by the `dpd_dce_rpc` signature.
//!
//! Each PDU starts with a 16-byte header: version 5 (`&enforce`), minor
//! version, type, flags, data representation (byte order), fragment
//! length, auth length, call id; the PDU is `frag_length` bytes. A header
//! with another version, or a fragment length too small for the header and
//! the auth trailer, is a binpac exception, i.e. a violation, after which
//! nothing more is parsed. Every PDU that parses confirms (the analyzer
//! confirms once). Nothing is parsed after a content gap.
//!
//! Limits: only the 16 header bytes are kept per direction; PDU bodies
//! are skipped.

use super::{Cx, Parser};

#[derive(Debug, Default)]
struct Dir {
    hdr: [u8; 16],
    hdr_len: usize,
    left: usize,
}

#[derive(Debug)]
pub(crate) struct DceRpc {
    dirs: [Dir; 2],
    stop: bool,
}

impl DceRpc {
    pub fn new() -> Self {
        DceRpc {
            dirs: Default::default(),
            stop: false,
        }
    }
}

impl Parser for DceRpc {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        let d = usize::from(!is_orig);
        let mut rest = data;
        while !rest.is_empty() && !self.stop {
            let dir = &mut self.dirs[d];
            if dir.left == 0 {
                while dir.hdr_len < 16 {
                    let Some((&b, r)) = rest.split_first() else {
                        break;
                    };
                    dir.hdr[dir.hdr_len] = b;
                    dir.hdr_len += 1;
                    rest = r;
                    if dir.hdr_len == 1 && b != 5 {
                        self.stop = true;
                        cx.violation();
                        return data.len();
                    }
                }
                if dir.hdr_len < 16 {
                    break;
                }
                let h = dir.hdr;
                let little = h[4] >> 4 != 0;
                let rd = |i: usize| {
                    if little {
                        u16::from_le_bytes([h[i], h[i + 1]])
                    } else {
                        u16::from_be_bytes([h[i], h[i + 1]])
                    }
                };
                let frag = usize::from(rd(8));
                let auth = usize::from(rd(10));
                let trailer = if auth > 0 { auth + 8 } else { 0 };
                if frag < 16 + trailer {
                    self.stop = true;
                    cx.violation();
                    break;
                }
                dir.hdr_len = 0;
                dir.left = frag - 16;
                if dir.left == 0 {
                    cx.confirm();
                    continue;
                }
            }
            let dir = &mut self.dirs[d];
            let n = dir.left.min(rest.len());
            dir.left -= n;
            rest = rest.get(n..).unwrap_or(&[]);
            if dir.left == 0 {
                cx.confirm();
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

    #[test]
    fn bind() {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "10.0.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "10.0.0.2".parse().unwrap(),
            resp_p: 135,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        let mut pdu = vec![5, 0, 11, 3, 0x10, 0, 0, 0, 20, 0, 0, 0, 1, 0, 0, 0];
        pdu.extend_from_slice(&[0; 4]);
        let mut d = DceRpc::new();
        d.deliver(true, &pdu, &mut cx);
        assert_eq!(notes.as_slice(), &[Note::Confirm]);
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        let mut d = DceRpc::new();
        d.deliver(true, b"\x05\x00\x0b\x03\x10\x00\x00\x00\x02\x00", &mut cx);
        d.deliver(true, b"\x00\x00\x01\x00\x00\x00", &mut cx);
        assert_eq!(notes.as_slice(), &[Note::Violation]);
    }
}
