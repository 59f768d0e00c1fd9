//! Streaming downloads. Graph answers content requests with a 302 to a pre-authenticated URL
//! (SharePoint, a CDN): that URL carries its own credential, so the bearer token is never sent
//! to it — not even when it is on the Graph host.

use std::sync::Arc;

use url::Url;

use crate::blocking::Chunks;
use crate::client::{display_target, error_summary, Outgoing, Received};
use crate::error::GatewayError;
use crate::stats::Counters;
use crate::Inner;

/// Redirect hops followed after the Graph response.
const MAX_HOPS: usize = 5;

/// Request headers passed on to a redirect target.
fn forwarded(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "range" | "accept" | "if-none-match" | "if-modified-since"
    )
}

fn location(headers: &[(String, String)]) -> Option<&str> {
    crate::header(headers, "location")
}

pub(crate) async fn open(
    inner: &Arc<Inner>,
    graph_request: Outgoing,
    task: Arc<Counters>,
) -> Result<Chunks, GatewayError> {
    let graph_target = display_target(&graph_request.url, true);
    let forwarded_headers: Vec<(String, String)> = graph_request
        .headers
        .iter()
        .filter(|(k, _)| forwarded(k))
        .cloned()
        .collect();
    let graph_url = graph_request.url.clone();
    let template = |url: Url| Outgoing {
        method: reqwest::Method::GET,
        url,
        headers: forwarded_headers.clone(),
        body: vec![],
        auth: false,
        idempotent: true,
        graph_limited: false,
        mailboxes: vec![],
        stream: true,
        priority: crate::pacer::Priority::Normal,
        conditional_access: 0,
    };
    let mut graph_request = Some(graph_request);
    // A pre-authenticated URL that has expired (401/403) is asked for again once.
    for round in 0..2 {
        let req = match graph_request.take() {
            Some(r) => r,
            None => Outgoing {
                auth: true,
                graph_limited: true,
                mailboxes: inner.mailbox_of(&graph_url).into_iter().collect(),
                ..template(graph_url.clone())
            },
        };
        let mut received = inner.execute(req, &task).await?;
        let mut current = graph_url.clone();
        let mut hops = 0;
        loop {
            match received {
                Received::Streaming { response, permits } => {
                    return Ok(pump(inner, response, permits, task));
                }
                Received::Buffered {
                    status,
                    headers,
                    body,
                    ..
                } => {
                    let on_graph = hops == 0;
                    if (300..400).contains(&status) {
                        let Some(loc) = location(&headers) else {
                            task.failure();
                            return Err(GatewayError::Request(format!(
                                "GET {graph_target}: HTTP {status} without a Location"
                            )));
                        };
                        let next = current.join(loc).map_err(|e| {
                            task.failure();
                            GatewayError::Request(format!(
                                "GET {graph_target}: HTTP {status} with an invalid Location ({e})"
                            ))
                        })?;
                        hops += 1;
                        if hops > MAX_HOPS {
                            task.failure();
                            return Err(GatewayError::Request(format!(
                                "GET {graph_target}: more than {MAX_HOPS} redirects"
                            )));
                        }
                        if !matches!(next.scheme(), "http" | "https") {
                            task.failure();
                            return Err(GatewayError::Request(format!(
                                "GET {graph_target}: redirect to a non-HTTP URL"
                            )));
                        }
                        current = next.clone();
                        received = inner.execute(template(next), &task).await?;
                        continue;
                    }
                    if !on_graph && (status == 401 || status == 403) && round == 0 {
                        tracing::debug!(target: "cairn_gateway", "GET {graph_target}: the download URL was refused ({status}); asking Graph again");
                        break;
                    }
                    task.failure();
                    let shown = if on_graph {
                        format!("GET {graph_target}")
                    } else {
                        format!(
                            "GET {graph_target} (redirected to {})",
                            display_target(&current, false)
                        )
                    };
                    let summary = error_summary(&body);
                    return Err(GatewayError::Request(if summary.is_empty() {
                        format!("{shown}: HTTP {status}")
                    } else {
                        format!("{shown}: HTTP {status} ({summary})")
                    }));
                }
            }
        }
    }
    task.failure();
    Err(GatewayError::Request(format!(
        "GET {graph_target}: the pre-authenticated download URL was refused twice"
    )))
}

/// Moves the body into a channel from a task on the runtime; the permits (if any) are held
/// until the body is read or the reader dropped.
fn pump(
    inner: &Arc<Inner>,
    mut response: reqwest::Response,
    permits: Vec<crate::limiter::Permit>,
    task: Arc<Counters>,
) -> Chunks {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    inner.handle.spawn(async move {
        let _permits = permits;
        loop {
            match response.chunk().await {
                Ok(Some(b)) => {
                    task.bytes(b.len() as u64);
                    if tx.send(Ok(b)).await.is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx
                        .send(Err(format!(
                            "the download was interrupted: {}",
                            crate::token::describe(&e.without_url())
                        )))
                        .await;
                    break;
                }
            }
        }
    });
    rx
}
