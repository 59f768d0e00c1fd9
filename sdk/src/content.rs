//! Large content (message MIME, file bodies): streamed by the host between Graph and the
//! repository's chunks, never whole in plugin memory.

use crate::graph::Request;
use crate::world::cairn::plugin::content as host;
use crate::{ContentRef, PluginError};

/// Sends a GET (following redirects) and streams the response body into the repository.
/// Returns the reference to attach to an item part ([`crate::PartData::Stored`]).
///
/// A non-2xx status is an error whose message names the status (`HTTP 404 …`); use
/// [`failed_status`] to recover it. Collectors may call this only from the second step of a
/// task on (the host opens the task's storage when the first step's items arrive).
pub fn download(req: Request) -> Result<ContentRef, PluginError> {
    Ok(host::download(&req)?)
}

/// The media type that makes the host chunk a download at its MIME structure (see
/// [`download_many`]).
pub const MESSAGE_RFC822: &str = "message/rfc822";

/// Sends several GETs at once (the host runs up to 4 at a time, Outlook's per-mailbox
/// concurrency) and streams each body into the repository, like [`download`]. Each request
/// comes with the body's media type if the plugin knows it: [`MESSAGE_RFC822`] makes the
/// host cut chunks at the MIME structure so an attachment shared by many messages is stored
/// once. One result per request, in order; a failure fails only its own entry (use
/// [`failed_status`] on it).
pub fn download_many(reqs: Vec<(Request, Option<String>)>) -> Vec<Result<ContentRef, PluginError>> {
    let reqs: Vec<host::DownloadRequest> = reqs
        .into_iter()
        .map(|(request, content_type)| host::DownloadRequest {
            request,
            content_type,
        })
        .collect();
    host::download_many(&reqs)
        .into_iter()
        .map(|r| r.map_err(PluginError::from))
        .collect()
}

/// Reads up to `len` bytes at `offset` of stored content (restorers, to inspect a part).
pub fn read(content: &ContentRef, offset: u64, len: u32) -> Result<Vec<u8>, PluginError> {
    host::read(content, offset, len).map_err(PluginError::Other)
}

/// The HTTP status a failed [`download`] reports in its message (`… HTTP 404 …`), if any.
pub fn failed_status(err: &PluginError) -> Option<u16> {
    let msg = match err {
        PluginError::Other(m) | PluginError::Refused(m) => m,
        _ => return None,
    };
    let at = msg.find("HTTP ")?;
    msg[at + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_of_a_failed_download() {
        let e = PluginError::Other(
            "Graph unavailable: GET /v1.0/users/x/messages/y/$value: HTTP 404 (ErrorItemNotFound: gone)".into(),
        );
        assert_eq!(failed_status(&e), Some(404));
        assert_eq!(failed_status(&PluginError::Other("timeout".into())), None);
    }
}
