//! The checks before a request reaches the app that every front end with the limit makes
//! alike (HTTP and IIS; a CGI host has neither limit): a declared body over `max-body-size`
//! and a header name the trust policy refuses. What only one front end checks stays with it
//! (HTTP: CONNECT and the mount; IIS matches its mount while reading the server variables).

use bytes::Bytes;

use crate::reject::Reject;
use crate::trust::TrustPolicy;

/// `Err`: answer its status and close without calling the app. `max_body` 0 = unlimited;
/// `declared` is the body length the request announced (none for chunked or unknown).
pub fn check(
    max_body: u64,
    policy: &TrustPolicy,
    declared: Option<u64>,
    headers: &[(Bytes, Bytes)],
) -> Result<(), Reject> {
    if let Some(n) = declared {
        if max_body > 0 && n > max_body {
            return Err(Reject::new(413, "request body larger than max-body-size"));
        }
    }
    if policy.refused_header(headers).is_some() {
        return Err(Reject::new(
            400,
            "header name with '_' refused (header-underscores = refuse)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &'static [u8]) -> (Bytes, Bytes) {
        (Bytes::from_static(name), Bytes::from_static(b"1"))
    }

    #[test]
    fn a_declared_body_over_the_limit_comes_first() {
        let refuse = TrustPolicy {
            refuse_underscores: true,
            ..Default::default()
        };
        let status = |max, declared, headers: &[_]| {
            check(max, &refuse, declared, headers).map_err(|r| r.status)
        };
        assert_eq!(status(10, Some(11), &[h(b"X_A")]), Err(413));
        assert_eq!(status(10, Some(10), &[h(b"X_A")]), Err(400));
        assert_eq!(status(0, Some(u64::MAX), &[h(b"X-A")]), Ok(()));
        assert_eq!(status(10, None, &[]), Ok(()));
        let dropped = TrustPolicy::default();
        assert_eq!(check(10, &dropped, Some(1), &[h(b"X_A")]), Ok(()));
    }
}
