//! The `Date` header value (RFC 9110 IMF-fixdate), formatted at most once a second per thread.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

thread_local! {
    static CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Appends the current date, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != now {
            *c = (now, format_date(now));
        }
        out.extend_from_slice(&c.1);
    });
}

/// `secs` since the epoch as an IMF-fixdate (29 bytes; httpdate formats it).
pub fn format_date(secs: u64) -> [u8; 29] {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(secs);
    let text = httpdate::fmt_http_date(time);
    let mut out = [b' '; 29];
    // IMF-fixdate is always 29 bytes for years 1000-9999.
    let n = text.len().min(out.len());
    out[..n].copy_from_slice(&text.as_bytes()[..n]);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(
            &super::format_date(784_111_777),
            b"Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(&super::format_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            &super::format_date(1_709_208_000),
            b"Thu, 29 Feb 2024 12:00:00 GMT"
        );
    }
}
