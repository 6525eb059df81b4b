//! Whether a TCP originator's address is real: proof that it received
//! what the responder sent.
//!
//! Anyone can put any source address on a SYN, an ACK, a RST or a data
//! segment. What a forger who is not on the path cannot do is learn the
//! responder's initial sequence number, which travels only to the real
//! owner of the address. So an originator counts as *verified* only when
//!
//! - one of its ACKs acknowledges a sequence number the responder sent
//!   (the responder's ISN + 1 after a SYN-ACK, or later data), or
//! - the responder acknowledged data (or a FIN) the originator sent, which
//!   a responder's TCP stack does only on a synchronised connection.
//!
//! Neither a blind ACK (its ack number is a guess) nor the real owner's
//! kernel RST to a SYN-ACK it never asked for (a RST without the ACK bit,
//! RFC 9293 3.10.7.1) passes. History letters cannot tell these apart:
//! `ShAR` is a verified client that reset, or a forger's blind ACK followed
//! by the victim's RST. This tracker looks at the numbers instead.
//!
//! It is separate from the Zeek state machine in `tcp.rs` on purpose:
//! Zeek's sequence bookkeeping follows Zeek's quirks (it adopts an ACK's
//! number as the peer's start when the peer was not seen), and conn.log
//! must keep them, while proof must not be adoptable.

use super::tcp::{ACK, RST, SYN};

/// What one direction has sent: the sequence range it has covered.
#[derive(Clone, Copy, Debug, Default)]
struct Sent {
    /// The first sequence number seen (the ISN when the SYN was seen).
    lo: u32,
    /// One past the highest sequence number sent (SYN and FIN count one).
    hi: u32,
    /// Whether anything was seen (`lo`/`hi` are meaningful).
    seen: bool,
    /// Whether `lo` is an ISN (the SYN was seen): its first data byte is
    /// then `lo + 1`.
    syn: bool,
}

impl Sent {
    fn add(&mut self, flags: u8, seq: u32, seg_len: u32) {
        if !self.seen {
            self.lo = seq;
            self.hi = seq;
            self.seen = true;
            self.syn = flags & SYN != 0;
        }
        let end = seq.wrapping_add(seg_len);
        // Only forward progress within half the sequence space counts: a
        // segment far ahead is a forger's guess, not what was sent.
        let ahead = end.wrapping_sub(self.hi) as i32;
        if ahead > 0 && ahead < (1 << 30) {
            self.hi = end;
        }
    }

    /// Whether `ack` acknowledges something this side sent: past the
    /// first sequence number (past the SYN itself when `data_only`), up to
    /// what was sent.
    fn acked_by(&self, ack: u32, data_only: bool) -> bool {
        if !self.seen {
            return false;
        }
        let first = if data_only && self.syn {
            self.lo.wrapping_add(1)
        } else {
            self.lo
        };
        let into = ack.wrapping_sub(first);
        let span = self.hi.wrapping_sub(first);
        into > 0 && into <= span && span < (1 << 31)
    }
}

/// Per-connection proof state (20 bytes); `sent[0]` is the originator.
#[derive(Clone, Copy, Debug, Default)]
pub struct Verifier {
    sent: [Sent; 2],
    verified: bool,
}

impl Verifier {
    /// A segment from the current originator (`is_orig`) or responder.
    /// `seg_len` counts payload plus one for SYN and for FIN.
    #[inline]
    pub fn segment(&mut self, is_orig: bool, flags: u8, seq: u32, ack: u32, seg_len: u32) {
        let (me, peer) = if is_orig { (0, 1) } else { (1, 0) };
        if flags & RST == 0 {
            self.sent[me].add(flags, seq, seg_len);
        }
        if self.verified || flags & ACK == 0 {
            return;
        }
        if is_orig {
            // The originator acknowledges what the responder sent: it
            // received the responder's packets.
            self.verified = self.sent[peer].acked_by(ack, false);
        } else if flags & RST == 0 {
            // The responder acknowledges the originator's data: its stack
            // accepted them on a synchronised connection.
            self.verified = self.sent[peer].acked_by(ack, true);
        }
    }

    /// Whether the originator has proven its address.
    pub fn orig_verified(&self) -> bool {
        self.verified
    }

    /// The roles were swapped (Zeek's flip): what was proven about the old
    /// originator says nothing about the new one.
    pub fn flip(&mut self) {
        self.sent.swap(0, 1);
        self.verified = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::tcp::FIN;

    const SA: u8 = SYN | ACK;

    #[test]
    fn a_completed_handshake_verifies_the_originator() {
        let mut v = Verifier::default();
        v.segment(true, SYN, 1000, 0, 1);
        v.segment(false, SA, 5000, 1001, 1);
        assert!(!v.orig_verified());
        v.segment(true, ACK, 1001, 5001, 0);
        assert!(v.orig_verified());
    }

    #[test]
    fn blind_acks_and_the_victims_own_reset_prove_nothing() {
        let mut v = Verifier::default();
        v.segment(true, SYN, 1000, 0, 1);
        v.segment(false, SA, 5000, 1001, 1);
        // The forger guesses; the real owner's kernel resets the SYN-ACK
        // it never asked for (seq = the SYN-ACK's ack, no ACK bit).
        for guess in [0, 1, 4999, 5000, 5002, 0xdead_beef] {
            v.segment(true, ACK, 1001, guess, 0);
        }
        v.segment(true, RST, 1001, 0, 0);
        assert!(!v.orig_verified());
        // Nor does data with a wrong ack, even when a forger piles it on.
        v.segment(true, ACK, 1001, 7, 100);
        assert!(!v.orig_verified());
    }

    #[test]
    fn an_ack_before_any_syn_ack_is_not_proof() {
        let mut v = Verifier::default();
        v.segment(true, SYN, 1000, 0, 1);
        v.segment(true, ACK, 1001, 1, 0);
        v.segment(false, RST | ACK, 0, 1001, 0);
        assert!(!v.orig_verified());
    }

    #[test]
    fn the_responder_acknowledging_data_verifies_midstream() {
        // Capture started mid-connection: no SYN seen.
        let mut v = Verifier::default();
        v.segment(true, ACK, 77_000, 9_000, 100);
        assert!(!v.orig_verified());
        v.segment(false, ACK, 9_000, 77_100, 0);
        assert!(v.orig_verified());
        // The responder acknowledging only the SYN is not data.
        let mut w = Verifier::default();
        w.segment(true, SYN, 1000, 0, 1);
        w.segment(false, SA, 5000, 1001, 1);
        assert!(!w.orig_verified());
        // ... but a FIN acknowledged is.
        w.segment(true, FIN | ACK, 1001, 3, 1);
        assert!(!w.orig_verified());
        w.segment(false, ACK, 5001, 1002, 0);
        assert!(w.orig_verified());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut v = Verifier::default();
        v.segment(true, SYN, u32::MAX - 1, 0, 1);
        v.segment(false, SA, u32::MAX, u32::MAX, 1);
        v.segment(true, ACK, u32::MAX, 0, 0);
        assert!(v.orig_verified());
    }

    #[test]
    fn a_flip_forgets_the_proof() {
        let mut v = Verifier::default();
        v.segment(true, SYN, 1000, 0, 1);
        v.segment(false, SA, 5000, 1001, 1);
        v.segment(true, ACK, 1001, 5001, 0);
        v.flip();
        assert!(!v.orig_verified());
    }
}
