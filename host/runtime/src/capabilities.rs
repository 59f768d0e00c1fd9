//! What a plugin instance may reach, and the rules that keep it there.
//!
//! The runtime never performs I/O itself: the embedder (the backup engine) hands each instance
//! the capabilities its manifest entry grants, as trait objects. The runtime enforces the
//! rules that must hold whatever the embedder does: a Graph request goes only to the bound
//! connection's scheme, host and port, and never carries caller-chosen `Authorization`.

use std::io::Read;
use std::sync::Arc;

use url::Url;

/// An HTTP request that passed the allow-list, with an absolute URL on the bound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP response as the plugin will see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// One request of a batch with the indices of the requests it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub request: HttpRequest,
    pub depends_on: Vec<u32>,
}

/// A Microsoft Graph connection (implemented by the host's Graph gateway): it attaches tokens,
/// retries, throttles and counts.
pub trait GraphConnection: Send + Sync {
    /// The connection's Graph root, e.g. `https://graph.microsoft.com/`. Its scheme, host and
    /// port are the only ones a plugin bound to this connection may reach; relative plugin URLs
    /// are resolved against it.
    fn base_url(&self) -> &Url;
    /// Sends one request. `Err` is a transport failure after retries, in words.
    fn send(&self, request: HttpRequest) -> Result<HttpResponse, String>;
    /// Sends requests as `$batch` calls; responses in request order.
    fn batch(&self, requests: Vec<BatchItem>) -> Result<Vec<HttpResponse>, String>;
    /// Sends a GET and returns the body as a stream (following redirects).
    fn download(&self, request: HttpRequest) -> Result<Box<dyn Read + Send>, String>;
    /// Whether `url`, off the Graph origin, is a pre-authenticated URL this connection sends
    /// to without its token (Outlook's attachment upload URLs, which Graph hands out on
    /// `outlook.office.com`). A plugin may reach such a URL; by default none.
    fn preauthenticated(&self, url: &Url) -> bool {
        let _ = url;
        false
    }
}

/// A reference to content stored by a [`ContentStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRef {
    pub id: String,
    pub size: u64,
}

/// Where streamed content goes (the repository's chunker during a backup).
pub trait ContentStore: Send + Sync {
    /// Reads `reader` to the end, storing its bytes; returns the reference.
    fn store(&self, reader: &mut dyn Read) -> Result<ContentRef, String>;
    /// [`ContentStore::store`] for content of a known media type (the plugin's hint in
    /// `download-many`): a store may chunk by it (MIME structure for `message/rfc822`).
    /// The default ignores the type.
    fn store_typed(
        &self,
        reader: &mut dyn Read,
        content_type: Option<&str>,
    ) -> Result<ContentRef, String> {
        let _ = content_type;
        self.store(reader)
    }
    /// Reads part of stored content.
    fn read(&self, content: &ContentRef, offset: u64, len: u32) -> Result<Vec<u8>, String>;
}

/// Outcome of a create-if-absent put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    AlreadyExisted,
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    Refused(String),
    NotFound,
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
}

/// The blob store behind a sink.
pub trait BlobStore: Send + Sync {
    fn put(&self, key: &str, data: Vec<u8>) -> Result<PutOutcome, String>;
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, String>;
    fn delete(&self, key: &str) -> Result<DeleteOutcome, String>;
}

/// The old-id → new-id map of a restore, shared by all restorers of a run.
pub trait RemapTable: Send + Sync {
    fn record(&self, kind: &str, old_id: &str, new_id: &str);
    fn lookup(&self, old_id: &str) -> Option<String>;
}

/// An entry of a snapshot listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub kind: String,
    pub id: String,
    pub display_name: String,
}

/// Read access to the snapshot being restored.
pub trait SnapshotReader: Send + Sync {
    /// The item's JSON body, display name and parts (as content references).
    fn get(&self, kind: &str, id: &str) -> Option<crate::types::Item>;
    fn list(&self, kind: &str) -> Vec<SnapshotEntry>;
}

/// The capabilities granted to one plugin instance. Anything `None` is refused.
#[derive(Clone, Default)]
pub struct Capabilities {
    pub graph: Option<Arc<dyn GraphConnection>>,
    pub content: Option<Arc<dyn ContentStore>>,
    pub blob_store: Option<Arc<dyn BlobStore>>,
    pub remap: Option<Arc<dyn RemapTable>>,
    pub snapshot: Option<Arc<dyn SnapshotReader>>,
}

/// Headers a plugin may not set: the host owns authentication and routing.
const FORBIDDEN_HEADERS: &[&str] = &["authorization", "host", "proxy-authorization", "cookie"];

/// Resolves a plugin's URL against the connection and enforces the allow-list: relative URLs
/// join the base; absolute URLs must have the base's scheme, host and port.
pub(crate) fn resolve_url(base: &Url, requested: &str) -> Result<Url, String> {
    let url = if requested.contains("://") {
        Url::parse(requested).map_err(|e| format!("`{requested}` is not a valid URL: {e}"))?
    } else if requested.starts_with('/') {
        base.join(requested.trim_start_matches('/'))
            .map_err(|e| format!("`{requested}` is not a valid path: {e}"))?
    } else {
        return Err(format!(
            "`{requested}` is neither an absolute URL nor a path starting with `/`"
        ));
    };
    let same_origin = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_origin {
        return Err(format!(
            "{} is not the plugin's bound connection ({}); plugins may only reach the \
             connection the manifest binds them to",
            origin(&url),
            origin(base)
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URLs with user information are not allowed".into());
    }
    Ok(url)
}

fn origin(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{}", url.scheme(), url.host_str().unwrap_or(""), p),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
    }
}

/// [`resolve_url`], also accepting an absolute http(s) URL elsewhere, without user
/// information, that the connection vouches for as pre-authenticated
/// ([`GraphConnection::preauthenticated`]).
pub(crate) fn resolve_url_with(
    base: &Url,
    requested: &str,
    preauthenticated: &dyn Fn(&Url) -> bool,
) -> Result<Url, String> {
    resolve_url(base, requested).or_else(|refused| {
        let url = Url::parse(requested).map_err(|_| refused.clone())?;
        let plain = requested.contains("://")
            && matches!(url.scheme(), "http" | "https")
            && url.username().is_empty()
            && url.password().is_none();
        if plain && preauthenticated(&url) {
            Ok(url)
        } else {
            Err(refused)
        }
    })
}

/// Checks the plugin's headers; returns them as pairs.
pub(crate) fn check_headers(
    headers: Vec<crate::types::Header>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(headers.len());
    for h in headers {
        if FORBIDDEN_HEADERS
            .iter()
            .any(|f| h.name.eq_ignore_ascii_case(f))
        {
            return Err(format!(
                "plugins may not set the `{}` header: the host authenticates requests and \
                 plugins never hold tokens",
                h.name
            ));
        }
        if h.name.contains(['\r', '\n']) || h.value.contains(['\r', '\n']) {
            return Err(format!("header `{}` contains a line break", h.name));
        }
        out.push((h.name, h.value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://graph.microsoft.com/").unwrap()
    }

    #[test]
    fn relative_paths_join_the_base() {
        let u = resolve_url(&base(), "/v1.0/users?$top=999").unwrap();
        assert_eq!(
            u.as_str(),
            "https://graph.microsoft.com/v1.0/users?$top=999"
        );
    }

    #[test]
    fn base_with_a_path_keeps_it() {
        let b = Url::parse("http://127.0.0.1:8080/graph/").unwrap();
        let u = resolve_url(&b, "/v1.0/users").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/graph/v1.0/users");
    }

    #[test]
    fn absolute_urls_on_the_connection_pass() {
        let u = resolve_url(
            &base(),
            "https://graph.microsoft.com/v1.0/users?$skiptoken=abc",
        )
        .unwrap();
        assert_eq!(u.query(), Some("$skiptoken=abc"));
    }

    #[test]
    fn other_hosts_ports_and_schemes_are_refused() {
        for bad in [
            "https://evil.example.com/v1.0/users",
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://graph.microsoft.com.evil.example/v1.0",
            "v1.0/users",
        ] {
            let err = resolve_url(&base(), bad).unwrap_err();
            assert!(!err.is_empty(), "{bad} must be refused");
        }
        let err = resolve_url(&base(), "https://evil.example.com/x").unwrap_err();
        assert!(err.contains("not the plugin's bound connection"), "{err}");
        assert!(err.contains("https://graph.microsoft.com"), "{err}");
    }

    #[test]
    fn preauthenticated_urls_the_connection_vouches_for_pass() {
        let outlook = "https://outlook.office.com/api/v2.0/Users('u@t')/Messages('m')/AttachmentSessions('s')?authtoken=x";
        let vouch = |u: &Url| u.host_str() == Some("outlook.office.com");
        let u = resolve_url_with(&base(), outlook, &vouch).unwrap();
        assert_eq!(u.host_str(), Some("outlook.office.com"));
        assert!(resolve_url_with(&base(), outlook, &|_| false).is_err());
        for bad in [
            "https://evil.example.com/x",
            "https://user:pw@outlook.office.com/x",
            "ftp://outlook.office.com/x",
        ] {
            assert!(resolve_url_with(&base(), bad, &vouch).is_err(), "{bad}");
        }
        // Graph URLs resolve as before.
        assert!(resolve_url_with(&base(), "/v1.0/users", &|_| false).is_ok());
    }

    #[test]
    fn authorization_header_is_refused() {
        let err = check_headers(vec![crate::types::Header {
            name: "AUTHORIZATION".into(),
            value: "Bearer stolen".into(),
        }])
        .unwrap_err();
        assert!(
            err.contains("may not set the `AUTHORIZATION` header"),
            "{err}"
        );
        let ok = check_headers(vec![crate::types::Header {
            name: "ConsistencyLevel".into(),
            value: "eventual".into(),
        }])
        .unwrap();
        assert_eq!(ok, vec![("ConsistencyLevel".into(), "eventual".into())]);
    }
}
