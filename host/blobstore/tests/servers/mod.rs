//! Real test servers started by the test run: moto (S3, with Object Lock) and Azurite (Azure
//! Blob). Each test starts its own server on a free loopback port and stops it on drop.
//!
//! Where the binaries come from:
//! * moto: `$CAIRN_MOTO_SERVER`, else `moto_server` on `PATH`
//!   (install: `pip install 'moto[server]'`);
//! * Azurite: `$CAIRN_AZURITE` or `$CAIRN_AZURITE_BIN` (path to `azurite-blob`), else
//!   `<workspace>/target/tools/node_modules/.bin/azurite-blob`, else `azurite-blob` on `PATH`
//!   (install: `npm install --prefix target/tools azurite@3.35.0`).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn wait_for_http(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited early with {status}");
        }
        if let Ok((code, _)) = http(port, "GET", "/", &[], b"") {
            if code > 0 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start listening on port {port} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 client for test set-up requests (bucket creation etc.).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// A running server process, killed on drop.
pub struct Server {
    pub port: u16,
    child: Child,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start moto's S3 server.
pub fn moto() -> Server {
    let bin = std::env::var_os("CAIRN_MOTO_SERVER")
        .map(PathBuf::from)
        .or_else(|| find_on_path("moto_server"))
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found. Install it with `pip install 'moto[server]'` \
                 (or set CAIRN_MOTO_SERVER to its path)"
            )
        });
    let port = free_port();
    let mut child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    wait_for_http(port, &mut child, "moto_server");
    Server {
        port,
        child,
        _dir: None,
    }
}

/// Create an S3 bucket on moto, optionally with Object Lock and a default retention.
pub fn moto_bucket(port: u16, bucket: &str, lock_days: Option<u32>) {
    let mut headers = vec![];
    if lock_days.is_some() {
        headers.push(("x-amz-bucket-object-lock-enabled", "true".to_string()));
    }
    let (code, body) = http(port, "PUT", &format!("/{bucket}"), &headers, b"").unwrap();
    assert_eq!(code, 200, "create bucket: {body}");
    if let Some(days) = lock_days {
        let xml = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>"
        );
        let (code, body) = http(
            port,
            "PUT",
            &format!("/{bucket}?object-lock"),
            &[],
            xml.as_bytes(),
        )
        .unwrap();
        assert_eq!(code, 200, "object lock configuration: {body}");
    }
}

/// Options for a store on moto.
pub fn moto_options(port: u16) -> cairn_blobstore::StoreOptions {
    [
        ("endpoint", format!("http://127.0.0.1:{port}")),
        ("allow_http", "true".to_string()),
        ("access_key_id", "testing".to_string()),
        ("secret_access_key", "testing".to_string()),
        ("region", "us-east-1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn azurite_bin() -> PathBuf {
    if let Some(p) =
        std::env::var_os("CAIRN_AZURITE").or_else(|| std::env::var_os("CAIRN_AZURITE_BIN"))
    {
        return PathBuf::from(p);
    }
    let ws = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let local = ws.join("target/tools/node_modules/.bin/azurite-blob");
    if local.is_file() {
        return local;
    }
    find_on_path("azurite-blob").unwrap_or_else(|| {
        panic!(
            "azurite-blob not found. Install it with `npm install --prefix target/tools azurite@3.35.0` \
             from the workspace root (or set CAIRN_AZURITE_BIN to the azurite-blob path)"
        )
    })
}

/// Start Azurite's blob service.
pub fn azurite() -> Server {
    let bin = azurite_bin();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(&bin)
        .args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--location",
            dir.path().to_str().unwrap(),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    wait_for_http(port, &mut child, "azurite-blob");
    Server {
        port,
        child,
        _dir: Some(dir),
    }
}

/// Create a container on Azurite (Shared Key signed).
pub fn azurite_container(port: u16, container: &str) {
    use base64::Engine;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(AZURITE_KEY)
        .unwrap();
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let sig = base64::engine::general_purpose::STANDARD
        .encode(ring::hmac::sign(&k, string_to_sign.as_bytes()).as_ref());
    let headers = [
        ("x-ms-date", date),
        ("x-ms-version", version.to_string()),
        (
            "Authorization",
            format!("SharedKey {AZURITE_ACCOUNT}:{sig}"),
        ),
    ];
    let (code, body) = http(
        port,
        "PUT",
        &format!("{path}?restype=container"),
        &headers,
        b"",
    )
    .unwrap();
    assert_eq!(code, 201, "create container: {body}");
}

/// Options for a store on Azurite.
pub fn azurite_options(port: u16) -> cairn_blobstore::StoreOptions {
    [
        ("use_emulator", "true".to_string()),
        ("endpoint", format!("http://127.0.0.1:{port}")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}
