//! Pre-authenticated upload URLs: Outlook's (attachment upload sessions) and SharePoint's
//! (drive item upload sessions).
//!
//! **SharePoint / OneDrive.** `POST /drives/{d}/items/{parent}:/{name}:/createUploadSession`
//! answers with an `uploadUrl` on the drive's SharePoint host
//! (`https://contoso.sharepoint.com/sites/Finance/_api/v2.0/drives/{d}/items/{p}/uploadSession?guid='…'&…&tempauth=…`,
//! `https://contoso-my.sharepoint.com/personal/{user}/_api/v2.0/…` for a OneDrive) that carries
//! its own credential (`tempauth`); Microsoft's documentation says not to send an
//! `Authorization` header to it (https://learn.microsoft.com/graph/api/driveitem-createuploadsession).
//! Such URLs are recognised when they are on a host of the cloud's SharePoint domain
//! (`*.sharepoint.com` for Microsoft's global cloud) or on the connection's own Graph host and
//! port (the simulator), their path has `_api/v2.x/…/uploadSession` and their query a
//! `tempauth`; they are sent without the token, outside the Graph limiter, in the SharePoint
//! slot, and counted as SharePoint resource units (2 a write, 1 a status read).
//!
//! **Outlook.**
//!
//! `POST …/messages/{id}/attachments/createUploadSession` answers with an `uploadUrl` on Outlook
//! (`https://outlook.office.com/api/v2.0/Users('{user}@{tenant}')/Messages('{id}')/AttachmentSessions('{id}')?authtoken=…`)
//! that carries its own credential. Microsoft's documentation says not to send an
//! `Authorization` header to it (https://learn.microsoft.com/graph/outlook-large-attachments):
//! the gateway sends such requests **without** the bearer token, outside the connection-wide
//! Graph limiter but in the mailbox's Outlook slots (uploads count against the mailbox's
//! concurrency and request limits), and shows them in messages without their query (the
//! `authtoken`).
//!
//! A URL is an upload URL when its path is `api/v2.0/Users('…')/{Messages|Events}('…')/AttachmentSessions('…')`,
//! its query has an `authtoken`, and it is on the cloud's Outlook host (for Microsoft's clouds)
//! or on the connection's own Graph host and port (the simulator serves both).

use url::Url;

/// Outlook hosts that issue upload URLs, by the Graph host of a cloud.
fn outlook_hosts(graph_host: &str) -> &'static [&'static str] {
    match graph_host {
        "graph.microsoft.com" => &["outlook.office.com", "outlook.office365.com"],
        "graph.microsoft.us" => &["outlook.office365.us"],
        "dod-graph.microsoft.us" => &["outlook-dod.office365.us"],
        "microsoftgraph.chinacloudapi.cn" => &["partner.outlook.cn"],
        _ => &[],
    }
}

/// SharePoint domains whose hosts issue drive upload URLs, by the Graph host of a cloud.
fn sharepoint_domains(graph_host: &str) -> &'static [&'static str] {
    match graph_host {
        "graph.microsoft.com" => &["sharepoint.com"],
        "graph.microsoft.us" => &["sharepoint.us"],
        "dod-graph.microsoft.us" => &["sharepoint-mil.us"],
        "microsoftgraph.chinacloudapi.cn" => &["sharepoint.cn"],
        _ => &[],
    }
}

/// What a pre-authenticated URL is, for the slots it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Preauthenticated {
    /// An Outlook attachment upload URL of this mailbox (lower-case user id).
    Outlook(String),
    /// A SharePoint drive item upload URL.
    Drive,
}

/// The kind of pre-authenticated URL `url` is, if the connection whose Graph root is `graph`
/// may send to it without its token; `None` for every other URL.
pub(crate) fn preauthenticated(graph: &Url, url: &Url) -> Option<Preauthenticated> {
    if let Some(mailbox) = mailbox_of(graph, url) {
        return Some(Preauthenticated::Outlook(mailbox));
    }
    is_drive_upload(graph, url).then_some(Preauthenticated::Drive)
}

/// Whether `url` is a SharePoint drive upload URL the connection whose Graph root is `graph`
/// may send to without its token.
pub(crate) fn is_drive_upload(graph: &Url, url: &Url) -> bool {
    if !url.username().is_empty() || url.password().is_some() {
        return false;
    }
    let Some(host) = url.host_str() else {
        return false;
    };
    let on_graph = url.scheme() == graph.scheme()
        && Some(host) == graph.host_str()
        && url.port_or_known_default() == graph.port_or_known_default();
    let host_l = host.to_ascii_lowercase();
    let on_sharepoint = url.scheme() == "https"
        && url.port_or_known_default() == Some(443)
        && sharepoint_domains(graph.host_str().unwrap_or(""))
            .iter()
            .any(|d| {
                host_l
                    .strip_suffix(d)
                    .and_then(|sub| sub.strip_suffix('.'))
                    .is_some_and(|sub| !sub.is_empty() && !sub.contains('.'))
            });
    if !(on_graph || on_sharepoint) {
        return false;
    }
    if !url
        .query_pairs()
        .any(|(k, v)| k == "tempauth" && !v.is_empty())
    {
        return false;
    }
    let Some(segs) = url.path_segments() else {
        return false;
    };
    let segs: Vec<&str> = segs.filter(|s| !s.is_empty()).collect();
    let Some(at) = segs.iter().position(|s| s.eq_ignore_ascii_case("_api")) else {
        return false;
    };
    let rest = &segs[at + 1..];
    rest.len() >= 2
        && rest[0].to_ascii_lowercase().starts_with("v2.")
        && rest[rest.len() - 1].eq_ignore_ascii_case("uploadSession")
}

/// `X` of a path segment `Name('X')` (case-insensitive name; `'` may be percent-encoded).
fn key_of(seg: &str, name: &str) -> Option<String> {
    let seg = seg
        .replace("%27", "'")
        .replace("%28", "(")
        .replace("%29", ")");
    let open = seg.find("('")?;
    if !seg[..open].eq_ignore_ascii_case(name) {
        return None;
    }
    let key = seg[open + 2..].strip_suffix("')")?;
    (!key.is_empty()).then(|| key.to_string())
}

/// The mailbox (lower-case user id, as the gateway keys Outlook slots) of an Outlook upload URL
/// that the connection whose Graph root is `graph` may send to without its token; `None` for
/// every other URL.
pub(crate) fn mailbox_of(graph: &Url, url: &Url) -> Option<String> {
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let host = url.host_str()?;
    let on_graph = url.scheme() == graph.scheme()
        && Some(host) == graph.host_str()
        && url.port_or_known_default() == graph.port_or_known_default();
    let on_outlook = url.scheme() == "https"
        && url.port_or_known_default() == Some(443)
        && outlook_hosts(graph.host_str().unwrap_or(""))
            .iter()
            .any(|h| host.eq_ignore_ascii_case(h));
    if !(on_graph || on_outlook) {
        return None;
    }
    if !url
        .query_pairs()
        .any(|(k, v)| k == "authtoken" && !v.is_empty())
    {
        return None;
    }
    let segs: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    let [api, version, user, item, session] = segs.as_slice() else {
        return None;
    };
    if !api.eq_ignore_ascii_case("api") || !version.eq_ignore_ascii_case("v2.0") {
        return None;
    }
    key_of(session, "AttachmentSessions")?;
    key_of(item, "Messages").or_else(|| key_of(item, "Events"))?;
    let user = key_of(user, "Users")?.replace("%40", "@");
    let id = user.split('@').next().unwrap_or(&user);
    Some(id.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Url {
        Url::parse("https://graph.microsoft.com/").unwrap()
    }

    const DOCS: &str = "https://outlook.office.com/api/v2.0/Users('a8e8e219-4931-95c1-b73d-62626fd79c32@72aa88bf-76f0-494f-91ab-2d7cd730db47')/Messages('AAMkADI5MAAIT3drCAAA=')/AttachmentSessions('AAMkADI5MAAIT3k0tAAA=')?authtoken=eyJhbGciOiJSUzI1NiIsImtpZCI6IktmYUNIUlN6bllHMmNI";

    #[test]
    fn the_documented_upload_url_is_recognised_with_its_mailbox() {
        let url = Url::parse(DOCS).unwrap();
        assert_eq!(
            mailbox_of(&graph(), &url).as_deref(),
            Some("a8e8e219-4931-95c1-b73d-62626fd79c32")
        );
        let event = DOCS.replace("/Messages(", "/Events(");
        assert!(mailbox_of(&graph(), &Url::parse(&event).unwrap()).is_some());
    }

    #[test]
    fn the_simulator_serves_upload_urls_on_its_graph_origin() {
        let sim = Url::parse("http://127.0.0.1:8080/").unwrap();
        let url = Url::parse(&DOCS.replace("https://outlook.office.com", "http://127.0.0.1:8080"))
            .unwrap();
        assert!(mailbox_of(&sim, &url).is_some());
        // Another port of the same host is not the connection.
        let other =
            Url::parse(&DOCS.replace("https://outlook.office.com", "http://127.0.0.1:9090"))
                .unwrap();
        assert!(mailbox_of(&sim, &other).is_none());
    }

    const DRIVE: &str = "https://contoso.sharepoint.com/sites/Finance/_api/v2.0/drives/b!abc/items/01PARENT/uploadSession?guid='6f1c6b2e-1a52-4c39-9e0d-6b2f5d1e0a11'&overwrite=False&rename=False&dc=0&tempauth=eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0";

    #[test]
    fn sharepoint_drive_upload_urls_are_recognised() {
        let url = Url::parse(DRIVE).unwrap();
        assert_eq!(
            preauthenticated(&graph(), &url),
            Some(Preauthenticated::Drive)
        );
        // A OneDrive's personal site, and API v2.1.
        let od = DRIVE
            .replace("contoso.sharepoint.com", "contoso-my.sharepoint.com")
            .replace("/sites/Finance/", "/personal/adele_contoso_com/")
            .replace("/v2.0/", "/v2.1/");
        assert!(is_drive_upload(&graph(), &Url::parse(&od).unwrap()));
        // The simulator serves them on its Graph origin.
        let sim = Url::parse("http://127.0.0.1:8080/").unwrap();
        let local = DRIVE.replace("https://contoso.sharepoint.com", "http://127.0.0.1:8080");
        assert!(is_drive_upload(&sim, &Url::parse(&local).unwrap()));
        let gov = Url::parse("https://graph.microsoft.us/").unwrap();
        let us = DRIVE.replace("sharepoint.com", "sharepoint.us");
        assert!(is_drive_upload(&gov, &Url::parse(&us).unwrap()));
        assert!(!is_drive_upload(&graph(), &Url::parse(&us).unwrap()));
    }

    #[test]
    fn other_urls_are_not_drive_upload_urls() {
        for bad in [
            // No tempauth.
            DRIVE.split('?').next().unwrap().to_string(),
            DRIVE.replace("tempauth=", "authtoken="),
            // Not SharePoint: another host, a look-alike, a sub-sub-domain, plain http, a port.
            DRIVE.replace(
                "contoso.sharepoint.com",
                "contoso.sharepoint.com.evil.example",
            ),
            DRIVE.replace("contoso.sharepoint.com", "evil-sharepoint.com"),
            DRIVE.replace("contoso.sharepoint.com", "a.b.sharepoint.com"),
            DRIVE.replace("https://", "http://"),
            DRIVE.replace("sharepoint.com/", "sharepoint.com:8443/"),
            // Not an upload session.
            DRIVE.replace("/uploadSession", "/content"),
            DRIVE.replace("/_api/", "/api/"),
            // User information.
            DRIVE.replace("https://", "https://user:pw@"),
        ] {
            let url = Url::parse(&bad).unwrap();
            assert!(!is_drive_upload(&graph(), &url), "{bad}");
            assert!(preauthenticated(&graph(), &url).is_none(), "{bad}");
        }
    }

    #[test]
    fn other_urls_are_not_upload_urls() {
        for bad in [
            // No authtoken.
            DOCS.split('?').next().unwrap().to_string(),
            // Another host, or Outlook of another cloud, or plain http.
            DOCS.replace("outlook.office.com", "evil.example.com"),
            DOCS.replace("outlook.office.com", "outlook.office365.us"),
            DOCS.replace("https://", "http://"),
            // Not an attachment session.
            DOCS.replace("AttachmentSessions", "Attachments"),
            DOCS.replace("/api/v2.0/", "/api/beta/"),
            // A Graph URL with an authtoken query.
            "https://graph.microsoft.com/v1.0/users/x/messages?authtoken=abc".into(),
            // User information.
            DOCS.replace("https://", "https://user:pw@"),
        ] {
            let url = Url::parse(&bad).unwrap();
            assert!(mailbox_of(&graph(), &url).is_none(), "{bad}");
        }
        let gov = Url::parse("https://graph.microsoft.us/").unwrap();
        let url = Url::parse(&DOCS.replace("outlook.office.com", "outlook.office365.us")).unwrap();
        assert!(mailbox_of(&gov, &url).is_some());
    }
}
