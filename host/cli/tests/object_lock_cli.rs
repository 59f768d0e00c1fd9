//! `cairn forget` and `cairn prune` on an S3 bucket with Object Lock (moto): the deletes the
//! store refuses are reported, and the commands still succeed.

use crate::support;

/// moto's S3 server (`moto_server`, or `$CAIRN_MOTO_SERVER`; `.ci/run` installs it), killed
/// on drop, with a minimal HTTP client for bucket set-up.
mod servers {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Server {
        pub port: u16,
        child: Child,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn http(
        port: u16,
        method: &str,
        path: &str,
        extra: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
             Content-Length: {}\r\n{extra}\r\n",
            body.len()
        )?;
        s.write_all(body)?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((code, text))
    }

    pub fn moto() -> Server {
        let bin = std::env::var_os("CAIRN_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("moto_server"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): install it with `pip install 'moto[server]'`",
                    bin.display()
                )
            });
        let mut server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http(port, "GET", "/", "", b""), Ok((c, _)) if c > 0) {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("moto_server exited early with {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        server.port = port;
        server
    }

    /// A bucket with Object Lock on and a default retention of `days` (compliance mode).
    pub fn locked_bucket(port: u16, bucket: &str, days: u32) {
        let (code, body) = http(
            port,
            "PUT",
            &format!("/{bucket}"),
            "x-amz-bucket-object-lock-enabled: true\r\n",
            b"",
        )
        .unwrap();
        assert_eq!(code, 200, "create bucket: {body}");
        let xml = format!(
            "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention>\
             <Mode>COMPLIANCE</Mode><Days>{days}</Days></DefaultRetention></Rule>\
             </ObjectLockConfiguration>"
        );
        let (code, body) = http(
            port,
            "PUT",
            &format!("/{bucket}?object-lock"),
            "",
            xml.as_bytes(),
        )
        .unwrap();
        assert_eq!(code, 200, "object lock configuration: {body}");
    }
}

use cairn_graph_sim::{Profile, SimConfig};
use support::{assert_ok, text, Env};

#[test]
fn object_lock_refusals_are_reported_and_not_fatal() {
    let moto = servers::moto();
    servers::locked_bucket(moto.port, "locked", 1);
    let env = Env::start(SimConfig::new(Profile::Small, 9));

    // `cairn init` against a bucket it cannot reach yet (no store options): the manifest and
    // keys are written, the repository is left for `init --repositories`.
    let dir = env.dir.path().join("s3");
    let out = env
        .cairn()
        .args(["init", "--with-keys", "--repo", "s3://locked/repo", "--dir"])
        .arg(&dir)
        .args(["--endpoint", &env.sim.base_url()])
        .args(["--tenant", &env.sim.tenant_id()])
        .args(["--client-id", &env.client_id])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_ok(&out);
    let manifest = dir.join("cairn.toml");
    let mut text_ = std::fs::read_to_string(&manifest).unwrap();
    text_.push_str(&format!(
        "\n[sinks.local.store]\nendpoint = \"http://127.0.0.1:{}\"\nallow_http = \"true\"\n\
         region = \"us-east-1\"\nchecksum_algorithm = \"sha256\"\naccess_key_id = \"testing\"\n\
         secret_access_key = \"env:CAIRN_TEST_S3_SECRET\"\n",
        moto.port
    ));
    std::fs::write(&manifest, text_).unwrap();
    let run = |args: &[&str]| {
        env.cairn()
            .args(args)
            .arg("-m")
            .arg(&manifest)
            .env("CAIRN_TEST_S3_SECRET", "testing")
            .output()
            .unwrap()
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(args);
        assert_ok(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let out = env
        .cairn()
        .args(["init", "--repositories", "--dir"])
        .arg(&dir)
        .env("CAIRN_TEST_S3_SECRET", "testing")
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        text(&out).contains("created the repository"),
        "{}",
        text(&out)
    );

    assert_ok(&run(&["backup"]));
    env.sim.churn(5.0);
    assert_ok(&run(&["backup"]));

    // forget: the snapshot object cannot be deleted; it is forgotten all the same.
    let v = json(&["forget", "--keep-last", "1", "--json"]);
    assert_eq!(v[0]["forget"].as_array().unwrap().len(), 1, "{v}");
    let refused = v[0]["refused"].to_string();
    assert!(refused.contains("snapshots/"), "{v}");
    assert_eq!(json(&["snapshots", "--json"]).as_array().unwrap().len(), 1);

    // prune: repack (marks the old packs), then delete after a zero grace period: the store
    // refuses every delete of a locked object; the refusals are listed, the exit is 0.
    let identity = support::identity(&manifest);
    let v = json(&[
        "prune",
        "--repack-threshold",
        "0.01",
        "-i",
        identity.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        !v[0]["report"]["marked"].as_array().unwrap().is_empty(),
        "{v}"
    );
    let out = run(&["prune", "--grace", "0s"]);
    assert_ok(&out);
    let t = text(&out);
    assert!(t.contains("the store refused to delete"), "{t}");
    let v = json(&["prune", "--grace", "0s", "--json"]);
    assert!(
        !v[0]["report"]["refused"].as_array().unwrap().is_empty(),
        "{v}"
    );
    // The remaining snapshot is intact.
    let v = json(&[
        "check",
        "--read-data",
        "-i",
        identity.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v[0]["ok"], true, "{v}");
}
