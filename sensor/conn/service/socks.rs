//! SOCKS v4/v4a/v5 (`src/analyzer/protocol/socks/SOCKS.cc`,
//! `socks-protocol.pac`, `socks-analyzer.pac`; logged as `socks`),
//! attached on 1080/tcp or by the `dpd_socks4_*` / `dpd_socks5_*`
//! signatures (a client greeting answered by a server reply, in either
//! orientation for v4).
//!
//! The binpac grammar is a datagram flow: every in-order chunk of a
//! direction is parsed on its own as one message, and a chunk too short
//! for its message is a parse error (a violation). Messages, by state:
//!
//! * v5 greeting (client: version, method count, methods) and method
//!   selection (server: version, method; a method other than 0 and 0xff
//!   starts a sub-negotiation, username/password being the one parsed);
//! * the v5 request (command 1-3, reserved 0, an address of type 1, 3
//!   or 4, a port) and reply; a bad reserved byte or command is a
//!   violation after which nothing more is parsed;
//! * the v4 request (command, port, address, a NUL-terminated user, and a
//!   NUL-terminated host name when the address is 0.0.0.x) and reply.
//!
//! The first byte of every non-auth message is read as the SOCKS version,
//! and a version other than 4 or 5 is a violation: a v4 reply starting
//! with its customary 0 byte is therefore one, as in Zeek. A reply that
//! parses confirms. Once both sides are done, the rest of the stream is
//! the tunnelled protocol: it goes to a new PIA (DPD), so an HTTP request
//! through the proxy adds `http` after `socks`.
//!
//! Nothing is parsed on partial connections. Limits: none beyond the
//! message being one chunk.

use super::{ChildKind, Cx, Parser, GIVE_UP_AFTER};

#[derive(Debug, Default)]
pub(crate) struct Socks {
    in_auth_sub_negotiation: bool,
    past_authentication: bool,
    /// The v5 method the server selected; 255 until then.
    auth_method: u8,
    orig_done: bool,
    resp_done: bool,
    skip: bool,
}

/// How a message parse ended.
enum Parsed {
    Ok,
    /// Out of data or malformed (binpac's exception).
    Error,
    /// A semantic violation: reported, parsing goes on.
    Violation,
    /// A violation after which the analyzer skips everything.
    ViolationSkip,
}

struct Rd<'a> {
    d: &'a [u8],
    pos: usize,
}

impl<'a> Rd<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.d.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.d.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    /// Bytes up to and including the next NUL (`&until($element == 0)`).
    fn until_nul(&mut self) -> Option<()> {
        let rest = self.d.get(self.pos..)?;
        let i = rest.iter().position(|&b| b == 0)?;
        self.pos += i + 1;
        Some(())
    }
}

/// A SOCKS5 address; `None` at the end of data, `Some(false)` for an
/// unknown type (its `&restofdata` leaves nothing for the port).
fn address(r: &mut Rd<'_>) -> Option<bool> {
    match r.u8()? {
        1 => r.take(4).map(|_| true),
        3 => {
            let n = r.u8()?;
            r.take(usize::from(n)).map(|_| true)
        }
        4 => r.take(16).map(|_| true),
        _ => {
            r.pos = r.d.len();
            Some(false)
        }
    }
}

impl Socks {
    pub fn new() -> Self {
        Socks {
            auth_method: 255,
            ..Default::default()
        }
    }

    fn message(&mut self, is_orig: bool, d: &[u8], cx: &mut Cx<'_>) -> Parsed {
        let mut r = Rd { d, pos: 0 };
        if self.in_auth_sub_negotiation {
            return self.auth_message(is_orig, &mut r);
        }
        let Some(version) = r.u8() else {
            return Parsed::Error;
        };
        match version {
            4 if is_orig => {
                let ok = (|| {
                    r.take(1 + 2)?;
                    let addr = r.take(4)?;
                    r.until_nul()?;
                    if addr[..3] == [0, 0, 0] {
                        r.until_nul()?;
                    }
                    Some(())
                })();
                if ok.is_none() {
                    return Parsed::Error;
                }
                self.orig_done = true;
                Parsed::Ok
            }
            4 => {
                if r.take(1 + 1 + 2 + 4).is_none() {
                    return Parsed::Error;
                }
                cx.confirm();
                self.resp_done = true;
                Parsed::Ok
            }
            5 if !self.past_authentication => {
                if is_orig {
                    let Some(n) = r.u8() else {
                        return Parsed::Error;
                    };
                    if r.take(usize::from(n)).is_none() {
                        return Parsed::Error;
                    }
                } else {
                    let Some(m) = r.u8() else {
                        return Parsed::Error;
                    };
                    self.in_auth_sub_negotiation = m != 0 && m != 0xff;
                    self.past_authentication = true;
                    self.auth_method = m;
                }
                Parsed::Ok
            }
            5 => {
                let (Some(first), Some(reserved)) = (r.u8(), r.u8()) else {
                    return Parsed::Error;
                };
                let Some(known) = address(&mut r) else {
                    return Parsed::Error;
                };
                if r.take(2).is_none() {
                    return Parsed::Error;
                }
                if is_orig {
                    let command = first;
                    if reserved != 0 || command == 0 || command > 3 {
                        return Parsed::ViolationSkip;
                    }
                    if !known {
                        return Parsed::Violation;
                    }
                    self.orig_done = true;
                } else {
                    if !known {
                        return Parsed::Violation;
                    }
                    cx.confirm();
                    self.resp_done = true;
                }
                Parsed::Ok
            }
            _ => Parsed::Violation,
        }
    }

    /// Username/password (RFC 1929) or another method's opaque bytes.
    fn auth_message(&mut self, is_orig: bool, r: &mut Rd<'_>) -> Parsed {
        let ok = if self.auth_method != 2 {
            Some(())
        } else if is_orig {
            (|| {
                if r.u8()? == 1 {
                    let u = r.u8()?;
                    r.take(usize::from(u))?;
                    let p = r.u8()?;
                    r.take(usize::from(p))?;
                }
                Some(())
            })()
        } else {
            (|| {
                if r.u8()? == 1 {
                    r.u8()?;
                }
                Some(())
            })()
        };
        if ok.is_none() {
            return Parsed::Error;
        }
        if !is_orig {
            self.in_auth_sub_negotiation = false;
        }
        Parsed::Ok
    }
}

impl Parser for Socks {
    fn deliver(&mut self, is_orig: bool, data: &[u8], cx: &mut Cx<'_>) -> usize {
        if cx.partial || self.skip {
            return data.len();
        }
        match self.message(is_orig, data, cx) {
            Parsed::Ok => {}
            Parsed::Error | Parsed::Violation => cx.violation(),
            Parsed::ViolationSkip => {
                cx.violation();
                self.skip = true;
            }
        }
        if self.orig_done && self.resp_done {
            // The proxied stream starts with the next chunk.
            cx.child(ChildKind::Pia);
        }
        data.len()
    }

    fn finished(&self, confirmed: bool, settled: bool, seen: u64) -> bool {
        self.skip || (confirmed && settled) || seen > GIVE_UP_AFTER
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::service::{ConnInfo, Note, Notes, L4};

    fn feed(s: &mut Socks, is_orig: bool, d: &[u8]) -> Notes {
        let i = ConnInfo {
            proto: L4::Tcp,
            orig_h: "198.18.0.1".parse().unwrap(),
            orig_p: 40000,
            resp_h: "198.18.0.2".parse().unwrap(),
            resp_p: 10080,
        };
        let mut notes = Notes::new();
        let mut cx = Cx {
            info: &i,
            partial: false,
            notes: &mut notes,
        };
        s.deliver(is_orig, d, &mut cx);
        notes
    }

    #[test]
    fn v5_with_username_password_confirms_on_the_reply_then_hands_over() {
        let mut s = Socks::new();
        assert!(feed(&mut s, true, &[5, 2, 0, 2]).is_empty());
        assert!(feed(&mut s, false, &[5, 2]).is_empty());
        assert!(feed(&mut s, true, b"\x01\x04user\x04pass").is_empty());
        assert!(feed(&mut s, false, &[1, 0]).is_empty());
        assert!(feed(&mut s, true, b"\x05\x01\x00\x03\x0bexample.org\x00\x50").is_empty());
        assert_eq!(
            feed(&mut s, false, &[5, 0, 0, 1, 198, 18, 0, 2, 0x1f, 0x90]).as_slice(),
            &[Note::Confirm, Note::Child(ChildKind::Pia)]
        );
    }

    #[test]
    fn a_bad_command_stops_the_analyzer() {
        let mut s = Socks::new();
        feed(&mut s, true, &[5, 1, 0]);
        feed(&mut s, false, &[5, 0]);
        assert_eq!(
            feed(&mut s, true, &[5, 9, 0, 1, 1, 2, 3, 4, 0, 80]).as_slice(),
            &[Note::Violation]
        );
        assert!(s.skip);
    }

    #[test]
    fn a_v4_reply_with_its_zero_byte_is_a_version_violation() {
        let mut s = Socks::new();
        assert!(feed(&mut s, true, b"\x04\x01\x00\x50\x01\x02\x03\x04me\x00").is_empty());
        assert_eq!(
            feed(&mut s, false, &[0, 0x5a, 0, 0, 0, 0, 0, 0]).as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn short_and_foreign_messages_are_violations() {
        let mut s = Socks::new();
        assert_eq!(
            feed(&mut s, true, &[5, 3, 0]).as_slice(),
            &[Note::Violation]
        );
        let mut s = Socks::new();
        assert_eq!(
            feed(&mut s, true, b"GET / HTTP/1.1\r\n").as_slice(),
            &[Note::Violation]
        );
    }

    #[test]
    fn noise_never_panics() {
        let mut x: u32 = 3;
        for _ in 0..2000 {
            let mut s = Socks::new();
            for _ in 0..6 {
                let mut buf = vec![4 + (x % 2) as u8];
                for _ in 0..(x % 40) {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    buf.push((x >> 16) as u8);
                }
                feed(&mut s, x & 8 == 0, &buf);
            }
        }
    }
}
