//! A small, total reader of BER/DER headers for the Kerberos and GSSAPI
//! parsers, shaped like Zeek's binpac ASN.1 helpers
//! (`src/analyzer/protocol/asn1/asn1.pac`): those analyzers do not decode
//! ASN.1 as a tree but read headers (`ASN1EncodingMeta`) and whole
//! elements (`ASN1Encoding`) one after the other off a cursor, and a
//! record's `&length` bounds what the fields inside it may read. Whether
//! Zeek confirms or reports a violation depends on exactly which reads run
//! out of data, so this module offers the same primitives instead of a
//! general ASN.1 decoder (which would accept and reject different inputs).
//!
//! What it does like binpac: a length byte with the high bit set is
//! followed by that many length bytes, read big-endian; more than 8 of
//! them give length 0 (binpac's `binary_to_int64` refuses them), and
//! `0x80` (BER's indefinite form) gives length 0 too. Tag numbers are one
//! byte (no multi-byte tags). A read past the end of the cursor's window
//! is an error, never a panic.
//!
//! Limits: a cursor never reads outside its window; nothing here recurses,
//! so depth is bounded by the callers' fixed record structure.

/// Why a structure did not parse (binpac's out-of-bound and invalid case
/// index exceptions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Asn1Error {
    #[error("needs {need} bytes at offset {at}, {have} left")]
    Short { at: usize, need: u64, have: usize },
    #[error("no case for value {value} at offset {at}")]
    NoCase { value: u64, at: usize },
}

pub(crate) type Res<T> = Result<T, Asn1Error>;

/// One element header (`ASN1EncodingMeta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub tag: u8,
    /// The first length byte as it was on the wire.
    pub len_byte: u8,
    /// The decoded length.
    pub len: u64,
}

impl Meta {
    /// binpac's `index`: the context tag number of `[n]` constructed tags
    /// (`tag - 0xa0`, wrapping as binpac's uint8 does).
    pub fn index(self) -> u8 {
        self.tag.wrapping_sub(0xa0)
    }
    /// binpac's `tag_num`: the low five bits, whatever the class.
    pub fn tag_num(self) -> u8 {
        self.tag & 0x1f
    }
}

/// A read position inside a window `[pos, end)` of a byte slice.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cur<'a> {
    d: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Cur<'a> {
    pub fn new(d: &'a [u8]) -> Self {
        Cur {
            d,
            pos: 0,
            end: d.len(),
        }
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.end
    }

    fn left(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// The next `n` bytes (binpac `bytestring &length=n`).
    pub fn take(&mut self, n: u64) -> Res<&'a [u8]> {
        let have = self.left();
        let short = Asn1Error::Short {
            at: self.pos,
            need: n,
            have,
        };
        let n = usize::try_from(n).map_err(|_| short)?;
        if n > have {
            return Err(short);
        }
        let s = self.d.get(self.pos..self.pos + n).ok_or(short)?;
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Res<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    pub fn u16_le(&mut self) -> Res<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]))
    }

    /// Everything left in the window (`&restofdata`).
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.d.get(self.pos..self.end).unwrap_or(&[]);
        self.pos = self.end;
        s
    }

    /// A header (`ASN1EncodingMeta`).
    pub fn meta(&mut self) -> Res<Meta> {
        let tag = self.u8()?;
        let len_byte = self.u8()?;
        let len = if len_byte & 0x80 == 0 {
            u64::from(len_byte)
        } else {
            let more = self.take(u64::from(len_byte & 0x7f))?;
            if more.len() > 8 {
                0
            } else {
                more.iter().fold(0u64, |a, &b| (a << 8) | u64::from(b))
            }
        };
        Ok(Meta { tag, len_byte, len })
    }

    /// A header and its content (`ASN1Encoding`).
    pub fn encoding(&mut self) -> Res<(Meta, &'a [u8])> {
        let m = self.meta()?;
        let body = self.take(m.len)?;
        Ok((m, body))
    }

    /// The next `n` bytes as a window of their own (a field with
    /// `&length=n`): the caller parses inside it, and this cursor moves
    /// past all `n` bytes whatever the field used.
    pub fn limit(&mut self, n: u64) -> Res<Cur<'a>> {
        let start = self.pos;
        self.take(n)?;
        Ok(Cur {
            d: self.d,
            pos: start,
            end: self.pos,
        })
    }

    /// An error for a case field without a matching case.
    pub fn no_case(&self, value: u64) -> Asn1Error {
        Asn1Error::NoCase {
            value,
            at: self.pos,
        }
    }
}

/// binpac's `binary_to_int64`: big-endian, 0 for more than 8 bytes.
pub(crate) fn to_int(b: &[u8]) -> u64 {
    if b.len() > 8 {
        return 0;
    }
    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_like_binpac() {
        let mut c = Cur::new(&[0x30, 0x82, 0x01, 0x00]);
        assert_eq!(
            c.meta(),
            Ok(Meta {
                tag: 0x30,
                len_byte: 0x82,
                len: 256
            })
        );
        // Indefinite form and over-long lengths read as 0.
        assert_eq!(Cur::new(&[0x30, 0x80]).meta().map(|m| m.len), Ok(0));
        let mut long = vec![0x04, 0x89];
        long.extend_from_slice(&[0xff; 9]);
        assert_eq!(Cur::new(&long).meta().map(|m| m.len), Ok(0));
        // Length bytes missing, or content past the window.
        assert!(Cur::new(&[0x30, 0x84, 0]).meta().is_err());
        assert!(Cur::new(&[0x04, 3, 1, 2]).encoding().is_err());
        let huge = [0x04, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(Cur::new(&huge).encoding().is_err());
    }

    #[test]
    fn limit_moves_past_the_window() {
        let mut c = Cur::new(&[1, 2, 3, 4, 5]);
        let mut w = c.limit(3).unwrap();
        assert_eq!(w.u8(), Ok(1));
        assert_eq!(w.rest(), &[2, 3]);
        assert!(w.u8().is_err());
        assert_eq!(c.u8(), Ok(4));
        assert!(c.limit(2).is_err());
    }

    #[test]
    fn index_wraps() {
        let m = Meta {
            tag: 0x30,
            len_byte: 0,
            len: 0,
        };
        assert_eq!(m.index(), 0x90);
        assert_eq!(m.tag_num(), 0x10);
    }
}
