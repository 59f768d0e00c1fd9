//! A cheap sanity check of stored MIME before it is posted back to Graph.

/// Checks that `head` (the first bytes of a message of `size` bytes) starts like an RFC 822
/// message: at least one `Name: value` header line before the first blank line, no NUL bytes
/// in the header block, and a blank line ending the headers (within `head` unless the message
/// is longer than it).
pub fn check_head(head: &[u8], size: u64) -> Result<(), String> {
    if head.is_empty() {
        return Err("it is empty".into());
    }
    let end = find_blank_line(head);
    let header_block = match end {
        Some(e) => &head[..e],
        None if (head.len() as u64) < size => head,
        None => return Err("no blank line ends the header block".into()),
    };
    if header_block.contains(&0) {
        return Err("the header block contains NUL bytes".into());
    }
    let text = String::from_utf8_lossy(header_block);
    let mut headers = 0;
    for (n, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if n == 0 {
                return Err("it starts with a continuation line".into());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, _))
                if !name.is_empty()
                    && name.bytes().all(|b| (33..=126).contains(&b) && b != b':') =>
            {
                headers += 1
            }
            _ => return Err(format!("line {} is not a header line", n + 1)),
        }
    }
    if headers == 0 {
        return Err("it has no header lines".into());
    }
    Ok(())
}

fn find_blank_line(b: &[u8]) -> Option<usize> {
    (0..b.len()).find(|&i| b[i..].starts_with(b"\r\n\r\n") || b[i..].starts_with(b"\n\n"))
}

/// Standard base64 with padding (Graph's MIME import body).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Structure of a stored message, read by ranges (never whole in memory), for messages over
// Graph's MIME import limit: which parts can leave the MIME and go up as attachments.

/// Reads up to `len` bytes at `offset` of a stored message (fewer at its end).
pub type ReadAt<'a> = &'a dyn Fn(u64, u32) -> Result<Vec<u8>, String>;

/// Bytes read per `content.read` while scanning or decoding.
const WINDOW: u32 = 256 * 1024;
/// Bytes of a line kept for inspection (header and boundary lines are far shorter; RFC 5322
/// allows 998); longer lines are skipped over, not buffered.
const KEEP: usize = 4096;
/// Multipart nesting followed.
const MAX_DEPTH: usize = 16;

/// One line of the message: `start..end` without its line break, `next` after it.
struct Line {
    start: u64,
    end: u64,
    next: u64,
    /// At most [`KEEP`] bytes of the line.
    text: Vec<u8>,
}

/// Lines of a stored message, read window by window.
struct Lines<'a> {
    read: ReadAt<'a>,
    size: u64,
    buf: Vec<u8>,
    /// Offset of `buf[0]` in the message.
    buf_at: u64,
    /// Offset of the next line.
    pos: u64,
}

impl<'a> Lines<'a> {
    fn new(read: ReadAt<'a>, size: u64) -> Self {
        Lines {
            read,
            size,
            buf: Vec::new(),
            buf_at: 0,
            pos: 0,
        }
    }

    /// Appends the next window to `buf` (dropping what was consumed); false at the end.
    fn fill(&mut self) -> Result<bool, String> {
        let end = self.buf_at + self.buf.len() as u64;
        if end >= self.size {
            return Ok(false);
        }
        let consumed = (self.pos - self.buf_at) as usize;
        self.buf.drain(..consumed.min(self.buf.len()));
        self.buf_at = self.pos;
        let chunk = (self.read)(end, WINDOW)?;
        if chunk.is_empty() {
            return Err(format!(
                "the stored message ended at {end} of {} bytes",
                self.size
            ));
        }
        self.buf.extend_from_slice(&chunk);
        Ok(true)
    }

    fn next(&mut self) -> Result<Option<Line>, String> {
        if self.pos >= self.size {
            return Ok(None);
        }
        let start = self.pos;
        let mut text = Vec::new();
        let mut scanned = start; // bytes before this offset hold no line feed
        loop {
            let from = (scanned - self.buf_at) as usize;
            if let Some(i) = self.buf[from.min(self.buf.len())..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let lf = scanned + i as u64;
                let mut end = lf;
                if lf > start && self.byte(lf - 1) == Some(b'\r') {
                    end -= 1;
                }
                self.keep(&mut text, start, end);
                self.pos = lf + 1;
                return Ok(Some(Line {
                    start,
                    end,
                    next: lf + 1,
                    text,
                }));
            }
            scanned = self.buf_at + self.buf.len() as u64;
            // A long line: keep its head, let the rest go.
            if scanned - start > KEEP as u64 && text.is_empty() {
                self.keep(&mut text, start, start + KEEP as u64);
            }
            if scanned - self.pos > 2 * WINDOW as u64 {
                // Nothing before `scanned` is needed again except the CR test one byte back.
                self.pos = scanned - 1;
            }
            if !self.fill()? {
                let end = self.size;
                self.keep(&mut text, start, end);
                self.pos = end;
                return Ok(Some(Line {
                    start,
                    end,
                    next: end,
                    text,
                }));
            }
        }
    }

    fn byte(&self, at: u64) -> Option<u8> {
        at.checked_sub(self.buf_at)
            .and_then(|i| self.buf.get(i as usize).copied())
    }

    /// Adds `start..end` (what of it is still buffered, up to [`KEEP`]) to an empty `text`.
    fn keep(&self, text: &mut Vec<u8>, start: u64, end: u64) {
        if !text.is_empty() || start < self.buf_at {
            return;
        }
        let a = (start - self.buf_at) as usize;
        let b = ((end - self.buf_at) as usize)
            .min(self.buf.len())
            .min(a + KEEP);
        if a < b {
            text.extend_from_slice(&self.buf[a..b]);
        }
    }
}

/// The headers of an entity that decide what it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartHeaders {
    /// `type/subtype`, lower-case (`text/plain` if absent).
    pub mime_type: String,
    pub boundary: Option<String>,
    /// `inline`, `attachment` or empty, lower-case.
    pub disposition: String,
    /// `filename` of the disposition, else `name` of the type (RFC 2231 and 2047 decoded).
    pub name: Option<String>,
    /// `Content-ID` without angle brackets.
    pub content_id: Option<String>,
    /// `Content-Transfer-Encoding`, lower-case (`7bit` if absent).
    pub encoding: String,
}

impl PartHeaders {
    fn parse(lines: &[Vec<u8>]) -> PartHeaders {
        let mut fields: Vec<(String, String)> = Vec::new();
        for l in lines {
            let l = String::from_utf8_lossy(l);
            if l.starts_with(' ') || l.starts_with('\t') {
                if let Some(last) = fields.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(l.trim());
                }
            } else if let Some((k, v)) = l.split_once(':') {
                fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let ct = get("content-type").unwrap_or("text/plain");
        let disp = get("content-disposition").unwrap_or("");
        PartHeaders {
            mime_type: ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
            boundary: param(ct, "boundary").filter(|b| !b.is_empty()),
            disposition: disp
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase(),
            name: param(disp, "filename")
                .or_else(|| param(ct, "name"))
                .map(|n| decode_words(&n))
                .filter(|n| !n.is_empty()),
            content_id: get("content-id")
                .map(|c| {
                    c.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .trim()
                        .to_string()
                })
                .filter(|c| !c.is_empty()),
            encoding: get("content-transfer-encoding")
                .unwrap_or("7bit")
                .trim()
                .to_ascii_lowercase(),
        }
    }

    fn is_multipart(&self) -> bool {
        self.mime_type.starts_with("multipart/") && self.boundary.is_some()
    }

    /// An attachment rather than a body text: it has a file name, is disposed as an
    /// attachment, or is a non-text part referenced by `Content-ID`.
    pub fn is_attachment(&self) -> bool {
        self.name.is_some()
            || self.disposition == "attachment"
            || (self.content_id.is_some() && !self.mime_type.starts_with("text/"))
    }

    /// An attached e-mail (`message/rfc822`): what Outlook shows as an item attachment.
    pub fn is_message(&self) -> bool {
        self.mime_type == "message/rfc822"
    }

    /// Inline (shown in the body, referenced as `cid:`), as Graph's `isInline`.
    pub fn is_inline(&self) -> bool {
        self.disposition == "inline" || (self.disposition.is_empty() && self.content_id.is_some())
    }
}

/// A header parameter (`name=value`, quoted or not; RFC 2231 `name*=charset''value` and its
/// continuations `name*0*=…`).
fn param(v: &str, name: &str) -> Option<String> {
    let mut plain = None;
    let mut extended: Vec<(u32, String, bool)> = Vec::new();
    for p in split_params(v).into_iter().skip(1) {
        let Some((k, val)) = p.split_once('=') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let val = val.trim();
        let unquoted = val
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .map(|x| x.replace("\\\"", "\"").replace("\\\\", "\\"))
            .unwrap_or_else(|| val.to_string());
        if k == name {
            plain = Some(unquoted);
        } else if let Some(rest) = k.strip_prefix(name).and_then(|r| r.strip_prefix('*')) {
            // `*`, `*0`, `*0*`, `*1` …
            let encoded = rest.ends_with('*') || rest.is_empty();
            let n: u32 = rest.trim_end_matches('*').parse().unwrap_or(0);
            extended.push((n, unquoted, encoded));
        }
    }
    if extended.is_empty() {
        return plain;
    }
    extended.sort_by_key(|e| e.0);
    let mut bytes = Vec::new();
    for (i, (_, val, encoded)) in extended.iter().enumerate() {
        let val = if i == 0 && *encoded {
            // charset'language'value
            val.splitn(3, '\'').nth(2).unwrap_or(val).to_string()
        } else {
            val.clone()
        };
        if *encoded {
            bytes.extend(percent_decode(&val));
        } else {
            bytes.extend_from_slice(val.as_bytes());
        }
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Splits a header value at `;` outside quotes.
fn split_params(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut from = 0;
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b';' if !quoted => {
                out.push(&v[from..i]);
                from = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&v[from..]);
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?B?…?=`, `=?iso-8859-1?Q?…?=`) in a name.
fn decode_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut last_was_word = false;
    while let Some(at) = rest.find("=?") {
        let before = &rest[..at];
        let parsed = (|| {
            let inner = &rest[at + 2..];
            let (charset, inner) = inner.split_once('?')?;
            let (enc, inner) = inner.split_once('?')?;
            let end = inner.find("?=")?;
            let text = &inner[..end];
            let bytes = match enc.to_ascii_lowercase().as_str() {
                "b" => base64_decode(text.as_bytes()).ok()?,
                "q" => {
                    let t = text.replace('_', " ");
                    let mut d = QpDecoder::default();
                    let mut o = Vec::new();
                    d.feed(t.as_bytes(), &mut o);
                    d.finish(&mut o);
                    o
                }
                _ => return None,
            };
            let decoded = if charset.to_ascii_lowercase().starts_with("iso-8859-1")
                || charset.eq_ignore_ascii_case("latin1")
            {
                bytes.iter().map(|&c| c as char).collect()
            } else {
                String::from_utf8_lossy(&bytes).into_owned()
            };
            Some((
                decoded,
                at + 2 + charset.len() + 1 + enc.len() + 1 + end + 2,
            ))
        })();
        match parsed {
            Some((decoded, consumed)) => {
                // Whitespace between adjacent encoded words is dropped.
                if !(last_was_word && before.trim().is_empty()) {
                    out.push_str(before);
                }
                out.push_str(&decoded);
                rest = &rest[consumed..];
                last_was_word = true;
            }
            None => {
                out.push_str(&rest[..at + 2]);
                rest = &rest[at + 2..];
                last_was_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A leaf part of a multipart message.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Start of the delimiter line that opens the part.
    pub start: u64,
    /// Start of the next delimiter line: `start..end` can leave the message whole.
    pub end: u64,
    /// The part's body (after its header block, before the line break of the next delimiter).
    pub body_start: u64,
    pub body_end: u64,
    pub headers: PartHeaders,
}

/// What [`scan`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Structure {
    pub top: PartHeaders,
    /// Leaves of the multipart tree in order (empty for a single-part message).
    pub leaves: Vec<Leaf>,
}

/// Reads header lines up to the blank line (or the end).
fn read_headers(lines: &mut Lines) -> Result<PartHeaders, String> {
    let mut block = Vec::new();
    while let Some(l) = lines.next()? {
        if l.start == l.end {
            break;
        }
        if block.len() > 1000 {
            return Err("a header block has more than 1000 lines".into());
        }
        block.push(l.text);
    }
    Ok(PartHeaders::parse(&block))
}

/// `Some(closing)` if `line` is a delimiter of `boundary`.
fn delimiter(line: &[u8], boundary: &str) -> Option<bool> {
    let rest = line
        .strip_prefix(b"--")?
        .strip_prefix(boundary.as_bytes())?;
    let trimmed: &[u8] = {
        let mut r = rest;
        while let [head @ .., b' ' | b'\t'] = r {
            r = head;
        }
        r
    };
    match trimmed {
        b"" => Some(false),
        b"--" => Some(true),
        _ => None,
    }
}

/// Scans the message's multipart structure by ranges.
pub fn scan(read: ReadAt, size: u64) -> Result<Structure, String> {
    let mut lines = Lines::new(read, size);
    let top = read_headers(&mut lines)?;
    let mut leaves = Vec::new();
    if !top.is_multipart() {
        return Ok(Structure { top, leaves });
    }
    let mut stack: Vec<String> = vec![top.boundary.clone().unwrap_or_default()];
    let mut open: Option<Leaf> = None;
    let mut last_break = 0u64;
    while let Some(line) = lines.next()? {
        let hit = stack
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, b)| delimiter(&line.text, b).map(|c| (i, c)));
        let Some((depth, closing)) = hit else {
            last_break = line.next - line.end;
            continue;
        };
        if let Some(mut leaf) = open.take() {
            leaf.end = line.start;
            leaf.body_end = line.start.saturating_sub(last_break).max(leaf.body_start);
            leaves.push(leaf);
        }
        stack.truncate(depth + 1);
        if closing {
            stack.pop();
            if stack.is_empty() {
                break;
            }
            last_break = line.next - line.end;
            continue;
        }
        let start = line.start;
        let headers = read_headers(&mut lines)?;
        if headers.is_multipart() && stack.len() < MAX_DEPTH {
            stack.push(headers.boundary.clone().unwrap_or_default());
        } else {
            open = Some(Leaf {
                start,
                end: 0,
                body_start: lines.pos,
                body_end: 0,
                headers,
            });
        }
        last_break = 0;
    }
    if open.is_some() || !stack.is_empty() {
        return Err("a multipart boundary never closes".into());
    }
    Ok(Structure { top, leaves })
}

/// How a message over the import limit is restored: the MIME without `strip` (the ranges
/// `keep`, `kept` bytes) is imported, the parts of `strip` are attached afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub keep: Vec<(u64, u64)>,
    pub kept: u64,
    pub strip: Vec<Leaf>,
}

/// Chooses attachments to take out of a message of `size` bytes until the rest is at most
/// `limit` bytes; `Err` says why the message cannot be split so.
///
/// File attachments go first, largest first. An attached e-mail (`message/rfc822`, an item
/// attachment in Outlook) can only come back as a file, so it is taken out only when the
/// message does not fit without it (largest first again); files taken out before that which
/// fit back in then stay in the MIME (largest first).
pub fn split(s: &Structure, size: u64, limit: u64) -> Result<Split, String> {
    if s.leaves.is_empty() {
        return Err("it is a single-part message (nothing to attach separately)".into());
    }
    let len = |l: &Leaf| l.end - l.start;
    let mut candidates: Vec<&Leaf> = s
        .leaves
        .iter()
        .filter(|l| l.headers.is_attachment())
        .collect();
    candidates.sort_by(|a, b| {
        a.headers
            .is_message()
            .cmp(&b.headers.is_message())
            .then(len(b).cmp(&len(a)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept = size;
    let mut strip: Vec<Leaf> = Vec::new();
    for c in candidates {
        if kept <= limit {
            break;
        }
        kept -= len(c);
        strip.push(c.clone());
    }
    if kept <= limit && strip.iter().any(|l| l.headers.is_message()) {
        // Files that fit back beside the rest stay (`strip` holds files largest first).
        strip.retain(|l| {
            if l.headers.is_message() || kept + len(l) > limit {
                return true;
            }
            kept += len(l);
            false
        });
    }
    if kept > limit {
        return Err(format!(
            "without its attachments it is still {kept} bytes, over Graph's {limit}-byte import limit"
        ));
    }
    strip.sort_by_key(|l| l.start);
    let mut keep = Vec::new();
    let mut at = 0;
    for l in &strip {
        if l.start > at {
            keep.push((at, l.start));
        }
        at = l.end;
    }
    if at < size {
        keep.push((at, size));
    }
    Ok(Split { keep, kept, strip })
}

/// The `Subject` of an attached e-mail (`message/rfc822` leaf), read from the first 32 KiB
/// of its body (RFC 2047 decoded); `None` if it has none there or is not in plain 7/8-bit.
pub fn message_subject(read: ReadAt, leaf: &Leaf) -> Option<String> {
    if !matches!(leaf.headers.encoding.as_str(), "7bit" | "8bit" | "binary") {
        return None;
    }
    let want = (leaf.body_end.saturating_sub(leaf.body_start)).min(32 * 1024) as u32;
    let head = read(leaf.body_start, want).ok()?;
    let text = String::from_utf8_lossy(&head);
    let mut subject: Option<String> = None;
    for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(s) = subject.as_mut() {
                s.push(' ');
                s.push_str(line.trim());
            }
            continue;
        }
        if subject.is_some() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("subject") {
                subject = Some(v.trim().to_string());
            }
        }
    }
    subject
        .map(|s| decode_words(&s).trim().to_string())
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Content-Transfer-Encoding decoders, fed in slices.

const B64_INVALID: u8 = 0xff;

fn b64_value(c: u8) -> u8 {
    match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => B64_INVALID,
    }
}

/// Base64, ignoring line breaks and other whitespace; stops at padding.
#[derive(Default)]
pub struct Base64Decoder {
    quad: [u8; 4],
    n: usize,
    done: bool,
}

impl Base64Decoder {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        for &c in input {
            if self.done || c.is_ascii_whitespace() {
                continue;
            }
            if c == b'=' {
                self.flush(out);
                self.done = true;
                continue;
            }
            let v = b64_value(c);
            if v == B64_INVALID {
                return Err(format!("byte 0x{c:02x} is not base64"));
            }
            self.quad[self.n] = v;
            self.n += 1;
            if self.n == 4 {
                let q = &self.quad;
                out.push(q[0] << 2 | q[1] >> 4);
                out.push(q[1] << 4 | q[2] >> 2);
                out.push(q[2] << 6 | q[3]);
                self.n = 0;
            }
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        let q = self.quad;
        if self.n >= 2 {
            out.push(q[0] << 2 | q[1] >> 4);
        }
        if self.n >= 3 {
            out.push(q[1] << 4 | q[2] >> 2);
        }
        self.n = 0;
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
    }
}

fn base64_decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut d = Base64Decoder::default();
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    d.feed(input, &mut out)?;
    d.finish(&mut out);
    Ok(out)
}

/// Quoted-printable (RFC 2045 §6.7): `=XX`, soft line breaks (`=` at the end of a line),
/// trailing whitespace of lines dropped; hard line breaks come out as CRLF.
#[derive(Default)]
pub struct QpDecoder {
    /// Bytes held back: an escape in progress (`=`, `=X`, `=\r`) or trailing whitespace.
    pending: Vec<u8>,
}

impl QpDecoder {
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &c in input {
            self.byte(c, out);
        }
    }

    fn byte(&mut self, c: u8, out: &mut Vec<u8>) {
        if self.pending.first() == Some(&b'=') {
            self.pending.push(c);
            match self.pending.as_slice() {
                [b'=', b'\n'] | [b'=', b'\r', b'\n'] => self.pending.clear(),
                [b'=', b'\r'] => {}
                [b'=', h] if hex(*h).is_some() => {}
                [b'=', h, l] if hex(*h).is_some() && hex(*l).is_some() => {
                    out.push(hex(*h).unwrap_or(0) << 4 | hex(*l).unwrap_or(0));
                    self.pending.clear();
                }
                _ => {
                    // Not an escape: the bytes as they are.
                    let held = std::mem::take(&mut self.pending);
                    out.push(b'=');
                    for b in held.into_iter().skip(1) {
                        self.byte(b, out);
                    }
                }
            }
            return;
        }
        match c {
            b' ' | b'\t' => self.pending.push(c),
            b'\r' => {}
            b'\n' => {
                self.pending.clear();
                out.extend_from_slice(b"\r\n");
            }
            b'=' => {
                out.append(&mut self.pending);
                self.pending.push(b'=');
            }
            _ => {
                out.append(&mut self.pending);
                out.push(c);
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.pending.first() == Some(&b'=') {
            out.append(&mut self.pending);
        }
        self.pending.clear();
    }
}

/// A decoder for a `Content-Transfer-Encoding`.
pub enum Decoder {
    Base64(Base64Decoder),
    QuotedPrintable(QpDecoder),
    Identity,
}

impl Decoder {
    pub fn for_encoding(encoding: &str) -> Decoder {
        match encoding {
            "base64" => Decoder::Base64(Base64Decoder::default()),
            "quoted-printable" => Decoder::QuotedPrintable(QpDecoder::default()),
            _ => Decoder::Identity,
        }
    }

    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Decoder::Base64(d) => d.feed(input, out),
            Decoder::QuotedPrintable(d) => {
                d.feed(input, out);
                Ok(())
            }
            Decoder::Identity => {
                out.extend_from_slice(input);
                Ok(())
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Decoder::Base64(d) => d.finish(out),
            Decoder::QuotedPrintable(d) => d.finish(out),
            Decoder::Identity => {}
        }
    }
}

/// Decodes a leaf's body window by window, handing `sink` slices of decoded bytes (each at
/// most a window's worth plus a few bytes).
pub fn decode_leaf(
    read: ReadAt,
    leaf: &Leaf,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut d = Decoder::for_encoding(&leaf.headers.encoding);
    let mut at = leaf.body_start;
    let mut out = Vec::with_capacity(WINDOW as usize);
    while at < leaf.body_end {
        let want = (leaf.body_end - at).min(WINDOW as u64) as u32;
        let chunk = read(at, want)?;
        if chunk.is_empty() {
            return Err(format!("the stored message ended at {at}"));
        }
        at += chunk.len() as u64;
        d.feed(&chunk, &mut out)?;
        sink(&out)?;
        out.clear();
    }
    d.finish(&mut out);
    if !out.is_empty() {
        sink(&out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(data: &[u8]) -> impl Fn(u64, u32) -> Result<Vec<u8>, String> + '_ {
        move |at, len| {
            let a = (at as usize).min(data.len());
            let b = (a + len as usize).min(data.len());
            Ok(data[a..b].to_vec())
        }
    }

    fn sample(big: &[u8]) -> Vec<u8> {
        let b64: String = {
            let s = base64(big);
            s.as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\r\n")
        };
        format!(
            "From: a@b.c\r\nSubject: =?utf-8?B?R3LDvMOfZQ==?=\r\nContent-Type: multipart/mixed;\r\n boundary=\"outer\"\r\n\r\n\
             preamble\r\n--outer\r\nContent-Type: multipart/related; boundary=inner\r\n\r\n--inner\r\n\
             Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             <p>caf=C3=A9 =\r\nlong</p>\r\n--inner\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\n\
             Content-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n--inner--\r\n\r\n--outer\r\n\
             Content-Type: application/pdf; name=\"r.pdf\"\r\nContent-Disposition: attachment;\r\n filename*=utf-8''R%C3%A9sum%C3%A9.pdf\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--outer--  \r\nepilogue\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn scan_finds_nested_leaves_with_their_ranges() {
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let msg = sample(&big);
        let read = reader(&msg);
        let s = scan(&read, msg.len() as u64).unwrap();
        assert_eq!(s.top.mime_type, "multipart/mixed");
        assert_eq!(s.leaves.len(), 3);
        let html = &s.leaves[0];
        assert_eq!(html.headers.mime_type, "text/html");
        assert!(!html.headers.is_attachment());
        let body = &msg[html.body_start as usize..html.body_end as usize];
        assert_eq!(body, b"<p>caf=C3=A9 =\r\nlong</p>");
        let img = &s.leaves[1];
        assert!(img.headers.is_attachment() && img.headers.is_inline());
        assert_eq!(img.headers.content_id.as_deref(), Some("img1@x"));
        let pdf = &s.leaves[2];
        assert_eq!(pdf.headers.name.as_deref(), Some("Résumé.pdf"));
        assert!(!pdf.headers.is_inline());
        assert!(msg[pdf.start as usize..].starts_with(b"--outer\r\nContent-Type: application/pdf"));
        assert!(msg[pdf.end as usize..].starts_with(b"--outer--"));
        // Decoding in windows gives the original bytes.
        let mut got = Vec::new();
        decode_leaf(&read, pdf, &mut |b| {
            got.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, big);
        let mut html_text = Vec::new();
        decode_leaf(&read, html, &mut |b| {
            html_text.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(String::from_utf8(html_text).unwrap(), "<p>café long</p>");
    }

    #[test]
    fn split_takes_the_largest_attachments_out_and_leaves_valid_mime() {
        let big: Vec<u8> = (0..700_000u32).map(|i| (i % 7) as u8).collect();
        let msg = sample(&big);
        let read = reader(&msg);
        let s = scan(&read, msg.len() as u64).unwrap();
        let sp = split(&s, msg.len() as u64, 64 * 1024).unwrap();
        assert_eq!(sp.strip.len(), 1);
        assert_eq!(sp.strip[0].headers.name.as_deref(), Some("Résumé.pdf"));
        let mut rest = Vec::new();
        for (a, b) in &sp.keep {
            rest.extend_from_slice(&msg[*a as usize..*b as usize]);
        }
        assert_eq!(rest.len() as u64, sp.kept);
        let text = String::from_utf8(rest.clone()).unwrap();
        assert!(
            text.contains("--inner--\r\n\r\n--outer--  \r\nepilogue"),
            "{text}"
        );
        let again = scan(&reader(&rest), rest.len() as u64).unwrap();
        assert_eq!(again.leaves.len(), 2);
        assert_eq!(
            again.leaves[1].headers.content_id.as_deref(),
            Some("img1@x")
        );
        // Too small a limit, or a single part: cannot split.
        assert!(split(&s, msg.len() as u64, 100).is_err());
        let single = b"Subject: x\r\nContent-Type: text/plain\r\n\r\nbody\r\n";
        let s1 = scan(&reader(single), single.len() as u64).unwrap();
        assert!(split(&s1, 10_000_000, 100).is_err());
    }

    fn wrapped_b64(data: &[u8]) -> String {
        base64(data)
            .as_bytes()
            .chunks(76)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
    }

    /// A message with a text body, an attached e-mail (`message/rfc822`, no file name, as
    /// Exchange writes an item attachment) carrying `inner` bytes of its own attachment, and a
    /// PDF of `pdf` bytes.
    fn with_attached_mail(inner: usize, pdf: usize) -> Vec<u8> {
        let inner: Vec<u8> = (0..inner as u32).map(|i| (i % 253) as u8).collect();
        let pdf: Vec<u8> = (0..pdf as u32).map(|i| (i % 241) as u8).collect();
        format!(
            "From: a@b.c\r\nSubject: Board pack\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\r\nSee the minutes and the report.\r\n--outer\r\n\
             Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n\
             From: c@d.e\r\nSubject: =?utf-8?Q?Minutes_f=C3=BCr_March?=\r\n\tand April\r\n\
             Content-Type: multipart/mixed; boundary=\"mail\"\r\n\r\n--mail\r\n\
             Content-Type: text/plain\r\n\r\nThe minutes.\r\n--mail\r\n\
             Content-Type: application/octet-stream; name=\"scan.tif\"\r\n\
             Content-Disposition: attachment; filename=\"scan.tif\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {}\r\n--mail--\r\n\r\n--outer\r\n\
             Content-Type: application/pdf; name=\"report.pdf\"\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--outer--\r\n",
            wrapped_b64(&inner),
            wrapped_b64(&pdf),
        )
        .into_bytes()
    }

    /// (names of what leaves, whether the attached e-mail leaves) for a split at 3 MiB.
    fn leaving(msg: &[u8]) -> (Vec<String>, bool, u64) {
        let read = reader(msg);
        let s = scan(&read, msg.len() as u64).unwrap();
        let sp = split(&s, msg.len() as u64, 3 * 1024 * 1024).unwrap();
        assert!(sp.kept <= 3 * 1024 * 1024);
        let names = sp
            .strip
            .iter()
            .map(|l| {
                l.headers
                    .name
                    .clone()
                    .unwrap_or_else(|| l.headers.mime_type.clone())
            })
            .collect();
        (
            names,
            sp.strip.iter().any(|l| l.headers.is_message()),
            sp.kept,
        )
    }

    #[test]
    fn an_attached_email_stays_in_the_mime_unless_the_message_cannot_fit_with_it() {
        // A 2 MB attached e-mail and a 3 MB PDF: only the PDF leaves.
        let msg = with_attached_mail(1_500_000, 3_000_000);
        assert!(msg.len() > 6_000_000);
        let (names, message, _) = leaving(&msg);
        assert_eq!(names, ["report.pdf"]);
        assert!(!message);
        // The e-mail (2.5 MB) larger than the PDF (2 MB encoded): still only the PDF leaves
        // (largest first would have taken the e-mail).
        let msg = with_attached_mail(1_800_000, 1_500_000);
        let read = reader(&msg);
        let s = scan(&read, msg.len() as u64).unwrap();
        let mail = s.leaves.iter().find(|l| l.headers.is_message()).unwrap();
        let pdf = s.leaves.iter().find(|l| l.headers.name.is_some()).unwrap();
        assert!(mail.end - mail.start > pdf.end - pdf.start);
        assert!(mail.headers.is_attachment() && !mail.headers.is_inline());
        // The scanner does not descend into the e-mail: its own parts stay inside it.
        assert_eq!(s.leaves.len(), 3);
        assert_eq!(leaving(&msg).0, ["report.pdf"]);
        // An e-mail that cannot fit (4 MB): it leaves, and the PDF that had left first fits
        // back in.
        let msg = with_attached_mail(3_000_000, 400_000);
        let (names, message, kept) = leaving(&msg);
        assert_eq!(names, ["message/rfc822"]);
        assert!(message);
        assert!(kept > 400_000, "the PDF is in the rest ({kept} bytes)");
        // Its subject names it (RFC 2047 decoded, unfolded).
        let read = reader(&msg);
        let s = scan(&read, msg.len() as u64).unwrap();
        let mail = s.leaves.iter().find(|l| l.headers.is_message()).unwrap();
        assert_eq!(
            message_subject(&read, mail).as_deref(),
            Some("Minutes für March and April")
        );
        let pdf = s.leaves.iter().find(|l| l.headers.name.is_some()).unwrap();
        assert_eq!(message_subject(&read, pdf), None, "base64: not read");
    }

    #[test]
    fn an_unclosed_boundary_is_an_error() {
        let msg = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n";
        assert!(scan(&reader(msg), msg.len() as u64).is_err());
    }

    #[test]
    fn decoders_handle_any_slicing() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let enc = base64(&data);
        let wrapped = enc
            .as_bytes()
            .chunks(76)
            .flat_map(|c| c.iter().copied().chain(*b"\r\n"))
            .collect::<Vec<u8>>();
        for step in [1, 3, 4, 77, 1000] {
            let mut d = Base64Decoder::default();
            let mut out = Vec::new();
            for c in wrapped.chunks(step) {
                d.feed(c, &mut out).unwrap();
            }
            d.finish(&mut out);
            assert_eq!(out, data, "step {step}");
        }
        assert!(Base64Decoder::default()
            .feed(b"ab*c", &mut Vec::new())
            .is_err());
        let qp = b"a=3Db  \r\nsoft=\r\nbreak =E2=82=AC\r\nlast=\r\n";
        for step in [1, 2, 5] {
            let mut d = QpDecoder::default();
            let mut out = Vec::new();
            for c in qp.chunks(step) {
                d.feed(c, &mut out);
            }
            d.finish(&mut out);
            assert_eq!(out, "a=b\r\nsoftbreak €\r\nlast".as_bytes(), "step {step}");
        }
        assert_eq!(
            decode_words("=?utf-8?Q?caf=C3=A9_au_lait?= ok"),
            "café au lait ok"
        );
        assert_eq!(
            param("a; filename*0*=utf-8''a%20; filename*1=b.txt", "filename").unwrap(),
            "a b.txt"
        );
    }
}
