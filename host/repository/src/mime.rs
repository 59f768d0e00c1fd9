//! Where MIME content gets forced chunk cuts.
//!
//! Content-defined chunking alone finds an attachment shared by many messages, but the chunk
//! that holds each copy's own headers and boundaries runs into the attachment, so every copy
//! costs about one chunk of its own. [`MimeCutter`] scans a MIME stream (RFC 5322 / RFC 2046)
//! as it passes and asks for a cut
//!
//! - after every header block (the message's, each part's, each nested `message/rfc822`'s), so
//!   a body starts a chunk, and
//! - before every boundary line (`--boundary`, `--boundary--`), so a body ends one,
//!
//! which makes an identical body (an attachment, a newsletter's text) chunk identically in
//! every message, whatever headers surround it. Between forced cuts the content-defined chunker
//! runs as usual. The scanner only decides where to cut: the bytes pass through unchanged, in
//! order, so the stored content is byte for byte the input.
//!
//! It never holds a whole message: state is the current header block (up to [`HEAD_MAX`],
//! for `Content-Type`), the start of a line that may be a boundary line (up to [`HOLD_MAX`])
//! and the boundaries seen so far (up to [`MAX_BOUNDARIES`]). Input that is not MIME simply
//! gets no cuts.

/// Longest header block parsed for `Content-Type`; longer blocks are passed through unparsed.
pub(crate) const HEAD_MAX: usize = 64 * 1024;
/// Longest line held back while it may still be a boundary line (`--` + at most 70
/// characters of boundary + `--` + transport padding + CRLF, with room to spare).
pub(crate) const HOLD_MAX: usize = 160;
/// Boundaries remembered per message (nested multiparts rarely go deeper than a few).
pub(crate) const MAX_BOUNDARIES: usize = 64;

/// What the scanner hands on: bytes of the stream, in order, and cut marks between them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// The next bytes of the stream.
    Bytes(&'a [u8]),
    /// End the current chunk here.
    Cut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In a header block (the message's, a part's or a nested message's).
    Headers,
    /// In a body, preamble or epilogue.
    Body,
}

/// A streaming MIME scanner that marks forced cut points (see the module docs).
#[derive(Debug)]
pub(crate) struct MimeCutter {
    mode: Mode,
    /// Bytes of the current line held back while it may be a boundary line.
    held: Vec<u8>,
    /// Whether the current line is being held.
    holding: bool,
    /// Bytes of the current line seen so far.
    line_len: usize,
    /// Whether the current line has anything besides CR and LF.
    line_nonblank: bool,
    /// The current header block (while in [`Mode::Headers`] and not over [`HEAD_MAX`]).
    head: Vec<u8>,
    head_overflow: bool,
    /// Boundaries of the multiparts seen so far.
    boundaries: Vec<Vec<u8>>,
}

impl Default for MimeCutter {
    fn default() -> Self {
        MimeCutter::new()
    }
}

impl MimeCutter {
    /// A scanner at the start of a message (in its header block).
    pub(crate) fn new() -> MimeCutter {
        MimeCutter {
            mode: Mode::Headers,
            held: Vec::new(),
            holding: false,
            line_len: 0,
            line_nonblank: false,
            head: Vec::new(),
            head_overflow: false,
            boundaries: Vec::new(),
        }
    }

    /// Scans `data`, the next bytes of the stream, handing every byte and every cut to `out`
    /// in stream order. Bytes of a line that may be a boundary line are held until the line
    /// is decided (at most [`HOLD_MAX`]), so a cut can go before it.
    pub(crate) fn feed<E>(
        &mut self,
        data: &[u8],
        out: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = data;
        while !rest.is_empty() {
            let (seg, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            rest = &rest[seg.len()..];
            if self.line_len == 0 {
                // A line starts: hold it if it could be a boundary line.
                self.holding = !self.boundaries.is_empty();
            }
            self.line_len += seg.len();
            if !self.line_nonblank {
                self.line_nonblank = seg.iter().any(|&b| b != b'\r' && b != b'\n');
            }
            if self.mode == Mode::Headers && !self.head_overflow {
                if self.head.len() + seg.len() > HEAD_MAX {
                    self.head_overflow = true;
                    self.head = Vec::new();
                } else {
                    self.head.extend_from_slice(seg);
                }
            }
            if self.holding {
                self.held.extend_from_slice(seg);
                if !self.may_be_boundary() {
                    self.holding = false;
                    out(Piece::Bytes(&self.held))?;
                    self.held.clear();
                }
            } else {
                out(Piece::Bytes(seg))?;
            }
            if complete {
                self.end_line(out)?;
            }
        }
        Ok(())
    }

    /// The stream ended: hands on any held bytes.
    pub(crate) fn finish<E>(
        &mut self,
        out: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.held.is_empty() {
            out(Piece::Bytes(&self.held))?;
            self.held.clear();
        }
        self.holding = false;
        self.line_len = 0;
        Ok(())
    }

    /// Whether the held start of the line may still turn out to be a boundary line.
    fn may_be_boundary(&self) -> bool {
        let h = &self.held;
        if h.len() > HOLD_MAX || h.first().is_some_and(|&b| b != b'-') {
            return false;
        }
        if h.get(1).is_some_and(|&b| b != b'-') {
            return false;
        }
        // The characters after `--` must start some known boundary (or be the line's end).
        let after: &[u8] = h.get(2..).unwrap_or(&[]);
        let text_end = after
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(after.len());
        let text = &after[..text_end];
        self.boundaries.iter().any(|b| {
            let n = text.len().min(b.len());
            b[..n] == text[..n]
        })
    }

    /// A complete line was scanned (its bytes are held or already handed on).
    fn end_line<E>(&mut self, out: &mut dyn FnMut(Piece<'_>) -> Result<(), E>) -> Result<(), E> {
        let blank = !self.line_nonblank;
        self.line_len = 0;
        self.line_nonblank = false;
        if self.holding {
            self.holding = false;
            let closing = self.boundary_line(&self.held);
            if let Some(closing) = closing {
                // A boundary line ends the body before it and starts the next part's
                // header block (or, closing, the epilogue).
                out(Piece::Cut)?;
                out(Piece::Bytes(&self.held))?;
                self.held.clear();
                self.mode = if closing { Mode::Body } else { Mode::Headers };
                self.head.clear();
                self.head_overflow = false;
                return Ok(());
            }
            out(Piece::Bytes(&self.held))?;
            self.held.clear();
        }
        if self.mode == Mode::Headers && blank {
            // The header block ended: the body starts a chunk.
            out(Piece::Cut)?;
            let head = std::mem::take(&mut self.head);
            let parsed = (!self.head_overflow).then(|| parse_head(&head));
            self.head_overflow = false;
            self.mode = Mode::Body;
            if let Some(h) = parsed {
                if let Some(b) = h
                    .boundary
                    .filter(|_| h.media_type.starts_with("multipart/"))
                {
                    if !self.boundaries.contains(&b) && self.boundaries.len() < MAX_BOUNDARIES {
                        self.boundaries.push(b);
                    }
                }
                let encoded = matches!(h.encoding.as_str(), "base64" | "quoted-printable");
                if matches!(h.media_type.as_str(), "message/rfc822" | "message/global") && !encoded
                {
                    // A nested message: its own header block follows.
                    self.mode = Mode::Headers;
                }
            }
        }
        Ok(())
    }

    /// `Some(closing)` if `line` is a boundary line of a known boundary.
    fn boundary_line(&self, line: &[u8]) -> Option<bool> {
        let mut end = line.len();
        while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
            end -= 1;
        }
        while end > 0 && matches!(line[end - 1], b' ' | b'\t') {
            end -= 1;
        }
        let text = line[..end].strip_prefix(b"--")?;
        self.boundaries.iter().find_map(|b| {
            if text == b.as_slice() {
                Some(false)
            } else if text.len() == b.len() + 2 && text.starts_with(b) && text.ends_with(b"--") {
                Some(true)
            } else {
                None
            }
        })
    }
}

/// What the scanner needs from a header block.
#[derive(Debug, Default, PartialEq, Eq)]
struct Head {
    /// `Content-Type` media type, lower case (`text/plain` if absent).
    media_type: String,
    /// The `boundary` parameter.
    boundary: Option<Vec<u8>>,
    /// `Content-Transfer-Encoding`, lower case.
    encoding: String,
}

/// Parses the fields the scanner needs from a header block (folded lines unfolded).
fn parse_head(block: &[u8]) -> Head {
    let mut head = Head {
        media_type: "text/plain".into(),
        ..Default::default()
    };
    // Unfold: a line starting with white space continues the previous field.
    let mut fields: Vec<Vec<u8>> = Vec::new();
    for line in block.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        match (line[0], fields.last_mut()) {
            (b' ' | b'\t', Some(last)) => last.extend_from_slice(line),
            _ => fields.push(line.to_vec()),
        }
    }
    for f in &fields {
        let Some(colon) = f.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&f[..colon])
            .trim()
            .to_ascii_lowercase();
        let value = &f[colon + 1..];
        match name.as_str() {
            "content-type" => {
                let (media, params) = match value.iter().position(|&b| b == b';') {
                    Some(i) => (&value[..i], &value[i + 1..]),
                    None => (value, &[][..]),
                };
                let media = String::from_utf8_lossy(media).trim().to_ascii_lowercase();
                if !media.is_empty() {
                    head.media_type = media;
                }
                head.boundary = param(params, "boundary").filter(|b| !b.is_empty());
            }
            "content-transfer-encoding" => {
                head.encoding = String::from_utf8_lossy(value).trim().to_ascii_lowercase();
            }
            _ => {}
        }
    }
    head
}

/// The value of parameter `want` in `; name=value; name="quoted \" value"` (RFC 2045).
fn param(mut s: &[u8], want: &str) -> Option<Vec<u8>> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    loop {
        while s.first().is_some_and(|&b| ws(b) || b == b';') {
            s = &s[1..];
        }
        if s.is_empty() {
            return None;
        }
        let eq = s.iter().position(|&b| b == b'=' || b == b';')?;
        if s[eq] == b';' {
            // A parameter without a value: skip it.
            s = &s[eq..];
            continue;
        }
        let name = String::from_utf8_lossy(&s[..eq])
            .trim()
            .to_ascii_lowercase();
        s = &s[eq + 1..];
        while s.first().is_some_and(|&b| ws(b)) {
            s = &s[1..];
        }
        let value = if s.first() == Some(&b'"') {
            let mut v = Vec::new();
            let mut i = 1;
            while i < s.len() && s[i] != b'"' {
                if s[i] == b'\\' && i + 1 < s.len() {
                    i += 1;
                }
                v.push(s[i]);
                i += 1;
            }
            s = &s[(i + 1).min(s.len())..];
            v
        } else {
            let end = s
                .iter()
                .position(|&b| b == b';' || ws(b))
                .unwrap_or(s.len());
            let v = s[..end].to_vec();
            s = &s[end..];
            v
        };
        if name == want {
            return Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in pieces of `step` bytes; returns the segments between cuts.
    fn segments(data: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut c = MimeCutter::new();
        let mut segs: Vec<Vec<u8>> = vec![Vec::new()];
        let mut out = |p: Piece<'_>| -> Result<(), ()> {
            match p {
                Piece::Bytes(b) => segs.last_mut().unwrap().extend_from_slice(b),
                Piece::Cut => segs.push(Vec::new()),
            }
            Ok(())
        };
        for piece in data.chunks(step.max(1)) {
            c.feed(piece, &mut out).unwrap();
        }
        c.finish(&mut out).unwrap();
        segs.retain(|s| !s.is_empty());
        segs
    }

    const MSG: &str = "From: a@contoso.com\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"outer b\"\r\n\r\n\
preamble\r\n--outer b\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nHello\r\n-- \r\nsig\r\n--inner\r\nContent-Type: text/html\r\n\r\n<p>Hello</p>\r\n--inner--\r\n\
\r\n--outer b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
QUJD\r\nREVG\r\n--outer b\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/mixed; boundary=nb\r\n\r\n\
--nb\r\n\r\nnested body\r\n--nb--\r\n\r\n--outer b--  \r\nepilogue\r\n";

    #[test]
    fn cuts_after_header_blocks_and_before_boundary_lines() {
        let segs = segments(MSG.as_bytes(), MSG.len());
        let s: Vec<String> = segs
            .iter()
            .map(|s| String::from_utf8(s.clone()).unwrap())
            .collect();
        assert_eq!(
            s,
            vec![
                "From: a@contoso.com\r\nContent-Type: multipart/mixed;\r\n\tboundary=\"outer b\"\r\n\r\n",
                "preamble\r\n",
                "--outer b\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n",
                "--inner\r\nContent-Type: text/plain\r\n\r\n",
                "Hello\r\n-- \r\nsig\r\n",
                "--inner\r\nContent-Type: text/html\r\n\r\n",
                "<p>Hello</p>\r\n",
                "--inner--\r\n\r\n",
                "--outer b\r\nContent-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                "QUJD\r\nREVG\r\n",
                "--outer b\r\nContent-Type: message/rfc822\r\n\r\n",
                "Subject: inner\r\nContent-Type: multipart/mixed; boundary=nb\r\n\r\n",
                "--nb\r\n\r\n",
                "nested body\r\n",
                "--nb--\r\n\r\n",
                "--outer b--  \r\nepilogue\r\n",
            ]
        );
        assert_eq!(segs.concat(), MSG.as_bytes());
    }

    #[test]
    fn cuts_do_not_depend_on_how_the_stream_is_split() {
        let whole = segments(MSG.as_bytes(), MSG.len());
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(segments(MSG.as_bytes(), step), whole, "step {step}");
        }
    }

    #[test]
    fn an_attachment_body_is_one_segment_whatever_surrounds_it() {
        let body = "QUJDREVG".repeat(1000);
        let msg = |hdr: &str, b: &str| {
            format!(
                "{hdr}Content-Type: multipart/mixed; boundary={b}\r\n\r\n--{b}\r\n\r\nhi\r\n--{b}\r\n\
                 Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--{b}--\r\n"
            )
        };
        let one = segments(msg("To: x\r\n", "aa").as_bytes(), 100);
        let two = segments(msg("To: someone else\r\nCc: y\r\n", "zzzz").as_bytes(), 33);
        let want = format!("{body}\r\n").into_bytes();
        assert!(one.contains(&want));
        assert!(two.contains(&want));
    }

    #[test]
    fn lf_only_and_non_mime_input() {
        let lf = "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nx\n--b--\n";
        let segs = segments(lf.as_bytes(), 5);
        assert_eq!(segs.concat(), lf.as_bytes());
        assert!(segs.contains(&b"x\n".to_vec()), "{segs:?}");
        // Binary without line breaks: no cuts, bytes intact.
        let bin: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 | 1).collect();
        let bin: Vec<u8> = bin
            .into_iter()
            .map(|b| if b == b'\n' { 1 } else { b })
            .collect();
        assert_eq!(segments(&bin, 999), vec![bin.clone()]);
        // Lines that look like boundaries of an unknown boundary are left alone.
        let plain = "Subject: x\r\n\r\n--b\r\n--b--\r\n";
        assert_eq!(
            segments(plain.as_bytes(), 3),
            vec![b"Subject: x\r\n\r\n".to_vec(), b"--b\r\n--b--\r\n".to_vec()]
        );
    }

    #[test]
    fn encoded_message_parts_are_bodies_and_huge_headers_are_passed_through() {
        let enc = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n\
                   Content-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp5\r\n--b--\r\n";
        let segs = segments(enc.as_bytes(), 11);
        assert!(
            segs.contains(&b"U3ViamVjdDogeA0KDQp5\r\n".to_vec()),
            "{segs:?}"
        );
        let mut big = String::from("Content-Type: multipart/mixed; boundary=b\r\n");
        while big.len() <= HEAD_MAX {
            big.push_str("X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        big.push_str("\r\n--b\r\n\r\nbody\r\n--b--\r\n");
        let segs = segments(big.as_bytes(), 4096);
        assert_eq!(segs.concat(), big.as_bytes());
        // The header block was too long to parse: its boundary is unknown, so only the cut
        // after the block is made.
        assert_eq!(segs.len(), 2);
    }

    #[test]
    fn parameters() {
        assert_eq!(
            param(b" charset=utf-8; boundary=\"a \\\"q\\\" b\"", "boundary"),
            Some(b"a \"q\" b".to_vec())
        );
        assert_eq!(
            param(b"; flag; Boundary=xyz", "boundary"),
            Some(b"xyz".to_vec())
        );
        assert_eq!(param(b"charset=utf-8", "boundary"), None);
        let h = parse_head(b"Content-Type: Multipart/Mixed;\r\n boundary=\"--=_x\"\r\nContent-Transfer-Encoding: 7BIT\r\n\r\n");
        assert_eq!(h.media_type, "multipart/mixed");
        assert_eq!(h.boundary, Some(b"--=_x".to_vec()));
        assert_eq!(h.encoding, "7bit");
    }
}
