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
