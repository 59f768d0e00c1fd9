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
