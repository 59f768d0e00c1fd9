#![allow(dead_code)]
//! Shared helpers: a simulator on its own runtime, gateway configurations aimed at it, and
//! request builders.

use std::sync::Arc;
use std::time::Duration;

use cairn_gateway::{Cloud, ConcurrencyConfig, Credential, Gateway, GatewayConfig, RetryPolicy};
use cairn_graph_sim::{SimConfig, SimHandle, Simulator};
use cairn_runtime::{GraphConnection, HttpRequest, HttpResponse};
use serde_json::Value;
use url::Url;

/// A simulator running on a runtime of its own (the test thread stays a plain thread, as a
/// plugin's blocking thread is).
pub struct Env {
    pub sim: SimHandle,
    pub rt: tokio::runtime::Runtime,
}

impl Env {
    pub fn start(cfg: SimConfig) -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sim = rt
            .block_on(Simulator::start(cfg))
            .expect("simulator starts");
        Env { sim, rt }
    }

    pub fn small() -> Env {
        Env::start(SimConfig::default())
    }

    /// Endpoints of the simulator.
    pub fn cloud(&self) -> Cloud {
        Cloud::custom(&self.sim.base_url(), &self.sim.base_url()).unwrap()
    }

    /// The default app with its secret, short retry steps.
    pub fn config(&self) -> GatewayConfig {
        GatewayConfig::new(
            self.sim.tenant_id(),
            self.sim.client_id(),
            Credential::secret(self.sim.client_secret()),
        )
        .with_name("sim")
        .with_cloud(self.cloud())
        .with_retry(fast_retry())
    }

    pub fn gateway(&self) -> Arc<Gateway> {
        Gateway::connect(self.config()).expect("gateway connects")
    }

    pub fn graph_base(&self) -> Url {
        Url::parse(&format!("{}/", self.sim.base_url())).unwrap()
    }
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 10,
        max_total_wait: Duration::from_secs(30),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
    }
}

pub fn concurrency(initial: u32, min: u32, max: u32) -> ConcurrencyConfig {
    ConcurrencyConfig {
        initial,
        min,
        max,
        ..ConcurrencyConfig::default()
    }
}

pub fn request(conn: &dyn GraphConnection, method: &str, path: &str) -> HttpRequest {
    let url = if path.contains("://") {
        Url::parse(path).unwrap()
    } else {
        conn.base_url().join(path.trim_start_matches('/')).unwrap()
    };
    HttpRequest {
        method: method.into(),
        url,
        headers: vec![],
        body: vec![],
    }
}

pub fn get(conn: &dyn GraphConnection, path: &str) -> Result<HttpResponse, String> {
    conn.send(request(conn, "GET", path))
}

pub fn json(r: &HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

pub fn header<'a>(r: &'a HttpResponse, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Follows `@odata.nextLink` through the connection; returns the items and the page count.
pub fn get_all(conn: &dyn GraphConnection, path: &str) -> (Vec<Value>, usize) {
    let mut next = Some(path.to_string());
    let mut items = vec![];
    let mut pages = 0;
    while let Some(p) = next.take() {
        let r = get(conn, &p).expect("page");
        assert_eq!(r.status, 200, "{p}: {}", String::from_utf8_lossy(&r.body));
        let v = json(&r);
        pages += 1;
        items.extend(v["value"].as_array().cloned().unwrap_or_default());
        next = v["@odata.nextLink"].as_str().map(str::to_string);
    }
    (items, pages)
}

/// `n` ids of member users.
pub fn user_ids(conn: &dyn GraphConnection, n: usize) -> Vec<String> {
    let r = get(conn, &format!("/v1.0/users?$top={n}&$select=id")).unwrap();
    assert_eq!(r.status, 200);
    json(&r)["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect()
}
