#![allow(dead_code)]
//! Shared helpers for the simulator's integration tests.

use cairn_graph_sim::testkit::{Client, HttpResponse};
use cairn_graph_sim::{Profile, SimConfig, SimHandle, Simulator};
use serde_json::Value;

pub async fn start(profile: Profile) -> SimHandle {
    Simulator::start(SimConfig::new(profile, 7))
        .await
        .expect("simulator starts")
}

pub async fn start_with(cfg: SimConfig) -> SimHandle {
    Simulator::start(cfg).await.expect("simulator starts")
}

/// A client authenticated as the default app through the real token endpoint.
pub async fn client(sim: &SimHandle) -> Client {
    let token = token(sim, sim.client_id(), sim.client_secret()).await;
    Client::new(&sim.base_url()).with_token(token)
}

/// A client authenticated as a new app granted exactly `permissions`.
pub async fn client_for(sim: &SimHandle, permissions: &[&str]) -> Client {
    let app = sim.add_app(permissions);
    Client::new(&sim.base_url()).with_token(token(sim, &app.client_id, &app.client_secret).await)
}

pub async fn token(sim: &SimHandle, id: &str, secret: &str) -> String {
    let mut c = Client::new(&sim.base_url());
    let r = c
        .post_form(
            &format!("/{}/oauth2/v2.0/token", sim.tenant_id()),
            &[
                ("client_id", id),
                ("client_secret", secret),
                ("grant_type", "client_credentials"),
                ("scope", "https://graph.microsoft.com/.default"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "token: {}", r.text());
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// The `id` of the first object `path` lists (asserting a 200).
pub async fn first_id(c: &mut Client, path: &str) -> String {
    let r = c.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()["value"][0]["id"].as_str().unwrap().to_string()
}

/// A `PUT` of `body` to an upload session's URL (`Content-Range` when `range` is given).
pub async fn put_range(
    c: &mut Client,
    url: &str,
    range: Option<impl AsRef<str>>,
    body: &[u8],
) -> HttpResponse {
    let mut headers = vec![("Content-Type", "application/octet-stream")];
    if let Some(r) = &range {
        headers.push(("Content-Range", r.as_ref()));
    }
    c.send("PUT", url, &headers, body).await.unwrap()
}

/// The `id`s of a collection page's `value`.
pub fn ids(v: &Value) -> Vec<String> {
    v["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

/// Checks that `ours` has the shape of Microsoft's `sample`: every property of the sample is
/// present with the same JSON type, recursively (values may differ; null matches anything;
/// `lenient` names properties the simulator may omit, with the reason in the caller).
pub fn assert_shape(sample: &Value, ours: &Value, lenient: &[&str]) {
    let mut errors = vec![];
    shape(sample, ours, "$", lenient, &mut errors);
    assert!(
        errors.is_empty(),
        "shape differs from the sample:\n{}\n--- ours:\n{}",
        errors.join("\n"),
        serde_json::to_string_pretty(ours).unwrap()
    );
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How many of the sample's properties `ours` has, recursively.
fn overlap(sample: &Value, ours: &Value) -> usize {
    match (sample, ours) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .filter_map(|(k, v)| b.get(k).map(|w| 1 + overlap(v, w)))
            .sum(),
        (Value::Array(a), Value::Array(b)) => match (a.first(), b.first()) {
            (Some(x), Some(y)) => overlap(x, y),
            _ => 0,
        },
        _ => 0,
    }
}

fn shape(sample: &Value, ours: &Value, path: &str, lenient: &[&str], errors: &mut Vec<String>) {
    match (sample, ours) {
        (Value::Null, _) | (_, Value::Null) => {}
        // Known sample defect (GRAPH.md §9): "isRead": "true" as a string.
        (Value::String(s), Value::Bool(_)) if s == "true" || s == "false" => {}
        (Value::Object(s), Value::Object(o)) => {
            for (k, sv) in s {
                match o.get(k) {
                    Some(ov) => shape(sv, ov, &format!("{path}.{k}"), lenient, errors),
                    None if lenient.contains(&k.as_str()) => {}
                    None => errors.push(format!(
                        "{path}.{k}: missing (sample has {})",
                        type_name(sv)
                    )),
                }
            }
        }
        (Value::Array(s), Value::Array(o)) => {
            if !s.is_empty() && o.is_empty() {
                errors.push(format!(
                    "{path}: sample array has {} element(s), ours is empty",
                    s.len()
                ));
                return;
            }
            for (i, se) in s.iter().enumerate() {
                // Compare with our element that best matches (same @odata.type, most keys in common).
                let best = o
                    .iter()
                    .max_by_key(|oe| {
                        let same_type = se.get("@odata.type").is_some()
                            && se.get("@odata.type") == oe.get("@odata.type");
                        let removed = se.get("@removed").is_some() == oe.get("@removed").is_some();
                        (same_type as usize * 100_000)
                            + (removed as usize * 50_000)
                            + overlap(se, oe)
                    })
                    .unwrap();
                shape(se, best, &format!("{path}[{i}]"), lenient, errors);
            }
        }
        (s, o) if type_name(s) != type_name(o) => errors.push(format!(
            "{path}: sample is {}, ours is {} ({o})",
            type_name(s),
            type_name(o)
        )),
        _ => {}
    }
}
