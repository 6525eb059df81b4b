//! Line splitting as Zeek's `ContentLine_Analyzer` does it
//! (`src/analyzer/protocol/tcp/ContentLine.cc`): CR, LF and CRLF end a line
//! (or only LF/CRLF for FTP's NVT), a CRLF split across two deliveries
//! counts once, and "plain delivery" hands the next N bytes through
//! unsplit (HTTP bodies).
//!
//! Limits: only the first `keep` bytes of a line are stored (the rest is
//! counted in [`Piece::Line::len`] but dropped); the buffer never holds
//! more than `keep` bytes and shrinks back after a long line. `max_line`
//! reproduces a Zeek `max_line_length` (IRC uses 1000): a line reaching it
//! is cut there.

/// One unit handed out by [`LineSplitter::next`].
/// A piece whose line was copied out (see [`LineSplitter::next_owned`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Owned<'d> {
    /// A line of this full length; its first bytes are in the buffer.
    Line(usize),
    Plain(&'d [u8]),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'s, 'd> {
    /// A complete line without its terminator; `head` is its first `keep`
    /// bytes and `len` its full length.
    Line { head: &'s [u8], len: usize },
    /// Bytes of a plain delivery.
    Plain(&'d [u8]),
}

/// Capacity kept after a long line, so memory shrinks back.
const SHRINK_ABOVE: usize = 512;

/// Position of the first CR or LF in `d` (eight bytes at a time).
pub(crate) fn find_eol(d: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGH != 0
    };
    let mut base = 0;
    for c in d.chunks_exact(8) {
        let Ok(a) = <[u8; 8]>::try_from(c) else {
            break;
        };
        let w = u64::from_le_bytes(a);
        if has(w, b'\r') || has(w, b'\n') {
            break;
        }
        base += 8;
    }
    d.get(base..)?
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .map(|p| base + p)
}

#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    buf: Vec<u8>,
    /// Length of the current line so far (may exceed `buf.len()`).
    len: usize,
    last_char: u8,
    cr_eol: bool,
    lf_eol: bool,
    keep: usize,
    /// 0 = unlimited.
    max_line: usize,
    plain: u64,
    /// The previous call returned a line held in `buf`.
    emitted: bool,
}

impl LineSplitter {
    /// CR, LF and CRLF all end a line (ContentLine's default).
    pub fn new(keep: usize) -> Self {
        LineSplitter {
            buf: Vec::new(),
            len: 0,
            last_char: 0,
            cr_eol: true,
            lf_eol: true,
            keep,
            max_line: 0,
            plain: 0,
            emitted: false,
        }
    }

    /// Only LF and CRLF end a line (`SetCRLFAsEOL(LF_as_EOL)`, FTP).
    pub fn lf_only(keep: usize) -> Self {
        LineSplitter {
            cr_eol: false,
            ..Self::new(keep)
        }
    }

    /// A Zeek `max_line_length` (the line is cut when it reaches it).
    pub fn with_max_line(mut self, max_line: usize) -> Self {
        self.max_line = max_line;
        self
    }

    /// `SetCRLFAsEOL(0)` (true) or back to CR, LF and CRLF (false): HTTP
    /// inside a multipart part.
    pub fn set_crlf_only(&mut self, crlf_only: bool) {
        self.cr_eol = !crlf_only;
        self.lf_eol = !crlf_only;
    }

    /// Hands the next `n` bytes through as [`Piece::Plain`].
    pub fn set_plain(&mut self, n: u64) {
        self.plain = n;
    }

    pub fn plain_remaining(&self) -> u64 {
        self.plain
    }

    /// True if part of a line is buffered.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        !self.emitted && self.len > 0
    }

    fn reset_line(&mut self) {
        self.buf.clear();
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf.shrink_to(SHRINK_ABOVE);
        }
        self.len = 0;
        self.emitted = false;
    }

    /// Drops the last byte of the line (a CR that turned out to start a
    /// CRLF).
    fn pop(&mut self) {
        if self.len > 0 {
            if self.buf.len() == self.len {
                self.buf.pop();
            }
            self.len -= 1;
        }
    }

    fn line(&mut self) -> Piece<'_, 'static> {
        self.emitted = true;
        Piece::Line {
            head: &self.buf,
            len: self.len,
        }
    }

    /// Appends `seg` (no CR/LF in it) to the current line.
    fn extend(&mut self, seg: &[u8]) {
        if let Some(&last) = seg.last() {
            let room = self.keep.saturating_sub(self.buf.len()).min(seg.len());
            self.buf.extend_from_slice(seg.get(..room).unwrap_or(&[]));
            self.len += seg.len();
            self.last_char = last;
        }
    }

    /// Consumes bytes from `data` until one piece is complete and returns
    /// it; `None` once `data` is used up without completing one.
    pub fn next<'d>(&mut self, data: &mut &'d [u8]) -> Option<Piece<'_, 'd>> {
        if self.emitted {
            self.reset_line();
        }
        loop {
            let (&first, rest) = data.split_first()?;
            if self.cr_eol && self.last_char == b'\r' && first == b'\n' {
                // The CR already ended the line; swallow the LF.
                self.last_char = first;
                *data = rest;
                continue;
            }
            if self.plain > 0 {
                let n = usize::try_from(self.plain)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let (p, r) = data.split_at(n);
                self.plain -= n as u64;
                self.last_char = 0;
                *data = r;
                return Some(Piece::Plain(p));
            }
            break;
        }
        loop {
            let d: &'d [u8] = data;
            let eol = find_eol(d).unwrap_or(d.len());
            // Bytes before the terminator, up to the line limit.
            let mut plain_len = eol;
            if self.max_line > 0 {
                let room = self.max_line.saturating_sub(self.len);
                if plain_len > room {
                    plain_len = room;
                }
            }
            self.extend(d.get(..plain_len).unwrap_or(&[]));
            let Some(&c) = d.get(plain_len) else {
                *data = &[];
                return None;
            };
            if self.max_line > 0 && self.len >= self.max_line {
                // ContentLine cannot grow its buffer further: it emits what
                // it has, minus the last byte, and this byte is lost.
                self.pop();
                self.last_char = c;
                *data = d.get(plain_len + 1..).unwrap_or(&[]);
                return Some(self.line());
            }
            let after = d.get(plain_len + 1..).unwrap_or(&[]);
            if c == b'\r' {
                if after.first() == Some(&b'\n') {
                    self.last_char = b'\n';
                    *data = after.get(1..).unwrap_or(&[]);
                    return Some(self.line());
                }
                if self.cr_eol {
                    self.last_char = c;
                    *data = after;
                    return Some(self.line());
                }
                self.extend(b"\r");
                *data = after;
                continue;
            }
            // LF.
            if self.last_char == b'\r' {
                if self.len == 0 {
                    self.last_char = c;
                    *data = after;
                    continue;
                }
                self.pop();
                self.last_char = c;
                *data = after;
                return Some(self.line());
            }
            if self.lf_eol {
                self.last_char = c;
                *data = after;
                return Some(self.line());
            }
            self.extend(b"\n");
            *data = after;
        }
    }

    /// [`Self::next`] for callers that need `self` while handling a line:
    /// the line is copied into `out` (cleared first).
    pub fn next_owned<'d>(&mut self, data: &mut &'d [u8], out: &mut Vec<u8>) -> Option<Owned<'d>> {
        match self.next(data)? {
            Piece::Line { head, len } => {
                out.clear();
                out.extend_from_slice(head);
                Some(Owned::Line(len))
            }
            Piece::Plain(p) => Some(Owned::Plain(p)),
        }
    }

    /// [`Self::flush`] into `out`; returns the line's full length.
    pub fn flush_owned(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        match self.flush()? {
            Piece::Line { head, len } => {
                out.clear();
                out.extend_from_slice(head);
                Some(len)
            }
            Piece::Plain(_) => None,
        }
    }

    /// End of this direction: ContentLine flushes a partial line as if a
    /// newline had arrived (`EndpointEOF`).
    pub fn flush(&mut self) -> Option<Piece<'_, 'static>> {
        if self.emitted {
            self.reset_line();
        }
        if self.len > 0 {
            Some(self.line())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &mut LineSplitter, chunks: &[&[u8]]) -> Vec<String> {
        let mut out = Vec::new();
        for c in chunks {
            let mut d: &[u8] = c;
            while let Some(p) = s.next(&mut d) {
                match p {
                    Piece::Line { head, .. } => out.push(String::from_utf8_lossy(head).into()),
                    Piece::Plain(p) => out.push(format!("<{}>", p.len())),
                }
            }
        }
        out
    }

    #[test]
    fn crlf_variants() {
        let mut s = LineSplitter::new(100);
        assert_eq!(
            lines(&mut s, &[b"a\r\nb\nc\rd", b"e\r", b"\nf\r\n"]),
            vec!["a", "b", "c", "de", "f"]
        );
    }

    #[test]
    fn lf_only_keeps_bare_cr() {
        let mut s = LineSplitter::lf_only(100);
        assert_eq!(lines(&mut s, &[b"a\rb\r", b"\nc\n"]), vec!["a\rb", "c"]);
    }

    #[test]
    fn plain_delivery_and_keep() {
        let mut s = LineSplitter::new(3);
        let mut d: &[u8] = b"abcdef\r\n";
        match s.next(&mut d) {
            Some(Piece::Line { head, len }) => {
                assert_eq!(head, b"abc");
                assert_eq!(len, 6);
            }
            other => panic!("{other:?}"),
        }
        s.set_plain(4);
        assert_eq!(lines(&mut s, &[b"12", b"345\n"]), vec!["<2>", "<2>", "5"]);
    }

    #[test]
    fn max_line_cuts() {
        let mut s = LineSplitter::new(2000).with_max_line(10);
        let out = lines(&mut s, &[b"0123456789abc\n"]);
        assert_eq!(out, vec!["012345678", "bc"]);
    }

    #[test]
    fn eol_search() {
        assert_eq!(find_eol(b"abcdefghijklmnop\rq"), Some(16));
        assert_eq!(find_eol(b"abc\n"), Some(3));
        assert_eq!(find_eol(b"abcdefghijklmnopqrstuvwxyz"), None);
        assert_eq!(find_eol(b""), None);
        assert_eq!(find_eol(b"\x8d\x0a"), Some(1));
    }

    #[test]
    fn flush_partial() {
        let mut s = LineSplitter::new(10);
        let mut d: &[u8] = b"GET /";
        assert!(s.next(&mut d).is_none());
        assert!(s.has_partial());
        assert!(matches!(s.flush(), Some(Piece::Line { len: 5, .. })));
        assert!(s.flush().is_none());
    }
}
