//! Refusing a request: the one shape every layer uses to say "answer this status and close"
//! (head, chunked framing, a CGI host's or IIS's variables, the checks before the app, a body
//! that breaks its limits), and the one error document each front end frames.

use std::borrow::Cow;
use std::fmt;

use crate::responder::reason;

/// The status to answer and why, for the log (never sent to the client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: u16,
    pub reason: Cow<'static, str>,
}

impl Reject {
    /// A refusal whose reason is fixed text (the parsers' case: no allocation).
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Reject {
            status,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A refusal whose reason names what was seen (a variable, a value).
    pub fn because(status: u16, reason: String) -> Self {
        Reject {
            status,
            reason: Cow::Owned(reason),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for Reject {}

/// The response the gateway gives of its own, before or instead of the app's: the front end
/// frames `status_line` (HTTP status line, CGI `Status:`, IIS's status string), the content
/// type and the body.
#[derive(Debug, PartialEq, Eq)]
pub struct ErrorDocument {
    /// `"404 Not Found"`.
    pub status_line: String,
    pub body: Vec<u8>,
}

impl ErrorDocument {
    pub const CONTENT_TYPE: &'static str = "text/plain; charset=utf-8";

    /// The status and its reason phrase as the body; `detail` (a traceback, only when the
    /// operator asked for it) follows after a blank line.
    pub fn new(status: u16, detail: Option<&str>) -> Self {
        let status_line = format!("{status} {}", reason(status));
        let mut body = Vec::with_capacity(status_line.len() + 1);
        body.extend_from_slice(status_line.as_bytes());
        body.push(b'\n');
        if let Some(detail) = detail {
            body.push(b'\n');
            body.extend_from_slice(detail.as_bytes());
            body.push(b'\n');
        }
        ErrorDocument { status_line, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_status() {
        let d = ErrorDocument::new(413, None);
        assert_eq!(d.status_line, "413 Content Too Large");
        assert_eq!(d.body, b"413 Content Too Large\n");
        let d = ErrorDocument::new(500, Some("Traceback"));
        assert_eq!(d.body, b"500 Internal Server Error\n\nTraceback\n");
    }

    #[test]
    fn a_reject_shows_status_and_reason() {
        assert_eq!(Reject::new(400, "bare CR").to_string(), "400 bare CR");
        assert_eq!(
            Reject::because(404, format!("{} outside the mount", "/x")).reason,
            "/x outside the mount"
        );
    }
}
