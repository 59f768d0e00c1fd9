//! Read-ahead of page chains.
//!
//! A paged read is a chain: the next page's URL (`@odata.nextLink`) is in the body of the
//! current one, so a collector's pages are one after another, and the time it spends on a page
//! (parsing it, turning it into items, storing them) adds to the chain's length on top of
//! Graph's latency. Once a task handle has followed a `nextLink` (asked for the URL the
//! previous response named, with the same headers), the gateway treats its reads as a chain:
//! when such a follow-up is answered with another `nextLink`, it sends the request for that link
//! right away, with the same headers and the task's counters, while the caller works on the
//! page; when the caller then asks for exactly that URL, it gets the response already on its
//! way. The chain then takes Graph's time per page or the caller's, whichever is longer,
//! instead of both. A single read whose `nextLink` nobody follows is never read ahead.
//!
//! * Only identity reads (no Outlook mailbox, not SharePoint; those have per-mailbox and
//!   per-site limits of their own), normal priority, on the connection's Graph host.
//! * One page ahead per chain, and at most [`CHAINS`] chains remembered per task handle (a
//!   plugin may interleave a few, e.g. a list and the relationships of its items); the
//!   oldest is forgotten first.
//! * A page read ahead and never asked for costs one request (it is counted like any other);
//!   the counters say how many pages were read ahead and how many were used.
//! * A read-ahead that failed (retries exhausted, transport error) is not handed over: the
//!   caller's request is sent again as usual. An HTTP answer (410 resync, 404 …) is handed
//!   over as the caller would have received it.
//! * A request that is not a follow-up (another URL, other headers) is sent as usual and
//!   leaves the pages read ahead for other chains in place.
//! * `@odata.deltaLink` is never followed: it is the next run's starting point.

use std::sync::{Arc, Mutex};

use cairn_runtime::{HttpRequest, HttpResponse};
use serde::Deserialize;
use tokio::sync::oneshot;
use url::Url;

use crate::client::Received;
use crate::error::GatewayError;
use crate::pacer::Priority;
use crate::stats::Counters;
use crate::Gateway;

/// What identifies a request for matching: its URL and its headers (names lower-cased,
/// sorted; a per-request `client-request-id` does not count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    url: String,
    headers: Vec<(String, String)>,
}

impl Key {
    fn of(url: &Url, headers: &[(String, String)]) -> Key {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .filter(|(k, _)| k != "client-request-id")
            .collect();
        h.sort();
        Key {
            url: url.as_str().to_string(),
            headers: h,
        }
    }
}

/// What a task handle's last page announced.
pub(crate) enum Ahead {
    /// The `nextLink` of the last response, not requested yet.
    Expected(Key),
    /// The `nextLink` of the last response of a chain, requested ahead.
    Requested {
        key: Key,
        rx: oneshot::Receiver<Result<Received, GatewayError>>,
    },
}

impl Ahead {
    fn key(&self) -> &Key {
        match self {
            Ahead::Expected(k) | Ahead::Requested { key: k, .. } => k,
        }
    }
}

/// Chains remembered per task handle.
pub const CHAINS: usize = 4;

/// A task handle's read-ahead slots: what the last pages of up to [`CHAINS`] chains announced,
/// oldest first.
pub(crate) type Slot = Mutex<std::collections::VecDeque<Ahead>>;

fn remember(slot: &Slot, ahead: Ahead) {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    s.retain(|a| a.key() != ahead.key());
    if s.len() >= CHAINS {
        s.pop_front();
    }
    s.push_back(ahead);
}

#[derive(Deserialize)]
struct Links {
    #[serde(rename = "@odata.nextLink")]
    next: Option<String>,
}

/// The top-level `@odata.nextLink` of a JSON page, if it has one.
pub(crate) fn next_link(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Links>(body).ok()?.next
}

fn response_of(received: Received) -> HttpResponse {
    match received {
        Received::Buffered {
            status,
            headers,
            body,
            ..
        } => HttpResponse {
            status,
            headers,
            body,
        },
        Received::Streaming { .. } => unreachable!("read-ahead requests are buffered"),
    }
}

impl Gateway {
    /// Whether `request` is a page read that may be read ahead (and be answered from a page
    /// read ahead).
    fn chain_read(&self, request: &HttpRequest) -> bool {
        self.inner.read_ahead
            && request.method.eq_ignore_ascii_case("GET")
            && request.body.is_empty()
            && Priority::requested(&request.headers).unwrap_or_default() == Priority::Normal
            && self.inner.mailbox_of(&request.url).is_none()
            && crate::upload::preauthenticated(&self.inner.base, &request.url).is_none()
            && self.check_on_graph(&request.url).is_ok()
    }

    /// [`Gateway::send_counted`] for a task handle with a read-ahead slot: answers from the
    /// page read ahead when it is the one asked for, and reads the next page ahead.
    pub(crate) fn send_reading_ahead(
        &self,
        request: HttpRequest,
        counters: &Arc<Counters>,
        slot: &Slot,
    ) -> Result<HttpResponse, GatewayError> {
        if !self.chain_read(&request) {
            return self.send_counted(request, counters);
        }
        let key = Key::of(&request.url, &request.headers);
        let ahead = {
            let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
            s.iter()
                .position(|a| *a.key() == key)
                .and_then(|i| s.remove(i))
        };
        let following = ahead.is_some();
        let from_ahead = match ahead {
            Some(Ahead::Requested { rx, .. }) => {
                crate::blocking::park_on(rx).ok().and_then(Result::ok)
            }
            _ => None,
        };
        let headers = request.headers.clone();
        let response = match from_ahead {
            Some(received) => {
                counters.read_ahead_used();
                response_of(received)
            }
            None => self.send_counted(request, counters)?,
        };
        if response.status == 200 {
            if let Some(next) = next_link(&response.body).and_then(|n| Url::parse(&n).ok()) {
                if following {
                    self.read_ahead(next, headers, counters, slot);
                } else {
                    remember(slot, Ahead::Expected(Key::of(&next, &headers)));
                }
            }
        }
        Ok(response)
    }

    /// Sends the request for `url` now and keeps its answer in `slot`.
    fn read_ahead(
        &self,
        url: Url,
        headers: Vec<(String, String)>,
        counters: &Arc<Counters>,
        slot: &Slot,
    ) {
        let request = HttpRequest {
            method: "GET".into(),
            url,
            headers,
            body: vec![],
        };
        if !self.chain_read(&request) {
            return;
        }
        let key = Key::of(&request.url, &request.headers);
        let Ok(out) = self.outgoing(request, false) else {
            return;
        };
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        let c = counters.clone();
        counters.read_ahead();
        self.inner.handle.spawn(async move {
            let _ = tx.send(inner.execute(out, &c).await);
        });
        remember(slot, Ahead::Requested { key, rx });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_top_level_next_link_only() {
        let page = br#"{"@odata.context":"x","value":[{"id":"1","note":"@odata.nextLink"},
            {"id":"2","members@odata.nextLink":"https://g/v1.0/inner"}],
            "@odata.nextLink":"https://graph.microsoft.com/v1.0/users/delta?$skiptoken=a%2Fb\u0026x=1"}"#;
        assert_eq!(
            next_link(page).as_deref(),
            Some("https://graph.microsoft.com/v1.0/users/delta?$skiptoken=a%2Fb&x=1")
        );
        assert_eq!(
            next_link(
                br#"{"value":[],"@odata.deltaLink":"https://g/v1.0/users/delta?$deltatoken=z"}"#
            ),
            None,
            "a deltaLink is never followed"
        );
        assert_eq!(next_link(b"not json"), None);
        assert_eq!(next_link(br#"{"@odata.nextLink": 5}"#), None);
    }

    #[test]
    fn keys_ignore_header_case_order_and_request_ids() {
        let u = Url::parse("https://graph.microsoft.com/v1.0/users?$top=999").unwrap();
        let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = Key::of(
            &u,
            &h(&[
                ("Prefer", "odata.maxpagesize=999"),
                ("ConsistencyLevel", "eventual"),
                ("client-request-id", "1"),
            ]),
        );
        let b = Key::of(
            &u,
            &h(&[
                ("consistencylevel", "eventual"),
                ("prefer", "odata.maxpagesize=999"),
                ("Client-Request-Id", "2"),
            ]),
        );
        assert_eq!(a, b);
        let c = Key::of(&u, &h(&[("Prefer", "odata.maxpagesize=100")]));
        assert_ne!(a, c, "other headers, other request");
        let d = Key::of(
            &Url::parse("https://graph.microsoft.com/v1.0/users?$top=998").unwrap(),
            &h(&[
                ("Prefer", "odata.maxpagesize=999"),
                ("ConsistencyLevel", "eventual"),
            ]),
        );
        assert_ne!(a, d, "another URL");
    }
}
