//! A small HTTP/1.1 client for tests and benchmarks (keep-alive, no TLS, no extra dependencies).

use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response as received.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case header names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP client bound to one `host:port`, with an optional bearer token.
pub struct Client {
    addr: String,
    conn: Option<BufReader<TcpStream>>,
    pub token: Option<String>,
    pub timeout: Duration,
}

fn split_url(url: &str) -> (String, String) {
    let rest = url.trim_start_matches("http://");
    match rest.find('/') {
        Some(i) => (rest[..i].to_string(), rest[i..].to_string()),
        None => (rest.to_string(), "/".to_string()),
    }
}

impl Client {
    /// `base` is `http://127.0.0.1:port` (a path is ignored).
    pub fn new(base: &str) -> Self {
        Client {
            addr: split_url(base).0,
            conn: None,
            token: None,
            timeout: Duration::from_secs(30),
        }
    }
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Sends a request; `target` is a path (`/v1.0/users`) or a full `http://` URL on the same host.
    pub async fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        let path = if target.starts_with("http://") {
            split_url(target).1
        } else {
            target.to_string()
        };
        let path = path.replace(' ', "%20").replace('"', "%22");
        for attempt in 0..2 {
            let reused = self.conn.is_some();
            if self.conn.is_none() {
                let s = TcpStream::connect(&self.addr).await?;
                s.set_nodelay(true)?;
                self.conn = Some(BufReader::new(s));
            }
            let mut req = format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
                self.addr,
                body.len()
            );
            if let Some(t) = &self.token {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                {
                    req.push_str(&format!("Authorization: Bearer {t}\r\n"));
                }
            }
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            let conn = self.conn.as_mut().unwrap();
            let mut bytes = req.into_bytes();
            bytes.extend_from_slice(body);
            if let Err(e) = conn.get_mut().write_all(&bytes).await {
                self.conn = None;
                if attempt == 0 {
                    continue;
                }
                return Err(e);
            }
            match tokio::time::timeout(self.timeout, read_response(conn)).await {
                Ok(Ok(Some(r))) => {
                    if r.header("connection")
                        .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                    {
                        self.conn = None;
                    }
                    return Ok(r);
                }
                Ok(Ok(None)) if attempt == 0 && reused => {
                    // The server closed an idle keep-alive connection: retry once on a new one.
                    self.conn = None;
                    continue;
                }
                Ok(Ok(None)) => {
                    self.conn = None;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
                Ok(Err(e)) => {
                    self.conn = None;
                    return Err(e);
                }
                Err(_) => {
                    self.conn = None;
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out",
                    ));
                }
            }
        }
        unreachable!()
    }

    pub async fn get(&mut self, target: &str) -> HttpResponse {
        self.send("GET", target, &[], b"")
            .await
            .expect("GET failed")
    }
    pub async fn get_with(&mut self, target: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.send("GET", target, headers, b"")
            .await
            .expect("GET failed")
    }
    pub async fn post_json(&mut self, target: &str, body: &Value) -> HttpResponse {
        let b = serde_json::to_vec(body).unwrap();
        self.send("POST", target, &[("Content-Type", "application/json")], &b)
            .await
            .expect("POST failed")
    }
    pub async fn patch_json(&mut self, target: &str, body: &Value) -> HttpResponse {
        let b = serde_json::to_vec(body).unwrap();
        self.send("PATCH", target, &[("Content-Type", "application/json")], &b)
            .await
            .expect("PATCH failed")
    }
    pub async fn delete(&mut self, target: &str) -> HttpResponse {
        self.send("DELETE", target, &[], b"")
            .await
            .expect("DELETE failed")
    }
    pub async fn post_form(&mut self, target: &str, form: &[(&str, &str)]) -> HttpResponse {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            "POST",
            target,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .await
        .expect("POST failed")
    }
    /// Follows `@odata.nextLink` until it is absent; returns all `value` items and the page count.
    pub async fn get_all(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
    ) -> (Vec<Value>, usize, Value) {
        let mut url = target.to_string();
        let mut items = vec![];
        let mut pages = 0;
        loop {
            let r = self.get_with(&url, headers).await;
            assert_eq!(r.status, 200, "GET {url}: {}", r.text());
            let v = r.json();
            pages += 1;
            items.extend(v["value"].as_array().cloned().unwrap_or_default());
            match v["@odata.nextLink"].as_str() {
                Some(n) => url = n.to_string(),
                None => return (items, pages, v),
            }
        }
    }
}

async fn read_response(conn: &mut BufReader<TcpStream>) -> std::io::Result<Option<HttpResponse>> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if conn.read_line(&mut h).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "eof in headers",
            ));
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mut body = vec![];
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            if conn.read_line(&mut size).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "eof in chunked body",
                ));
            }
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
                })?;
            if n == 0 {
                let mut end = String::new();
                conn.read_line(&mut end).await?;
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            conn.read_exact(&mut chunk).await?;
            chunk.truncate(n);
            body.extend(chunk);
        }
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0u8; len];
        conn.read_exact(&mut body).await?;
    }
    Ok(Some(HttpResponse {
        status,
        headers,
        body,
    }))
}
