//! The CGI meta-variables on arbitrary input: `NAME=value` lines (any bytes) as a host's
//! environment. `read_request` never panics, and what it accepts keeps its promises: no
//! `HTTP_*`, identity or process variable slips into the host extras, and Content-Length is
//! the number the host gave.

#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::cgi_read_request as read_request;

fuzz_target!(|data: &[u8]| {
    let vars: Vec<(OsString, OsString)> = data
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let eq = line.iter().position(|&b| b == b'=')?;
            Some((
                OsString::from_vec(line[..eq].to_vec()),
                OsString::from_vec(line[eq + 1..].to_vec()),
            ))
        })
        .collect();
    let iis = data.first().is_some_and(|b| b & 1 == 1);
    let Ok(cgi) = read_request(vars.clone(), iis) else {
        return;
    };
    let r = &cgi.request;
    for (key, _) in &r.extra {
        assert!(!key.starts_with(b"HTTP_"), "{key:?}");
        assert!(key.as_ref() != b"REMOTE_USER" && key.as_ref() != b"AUTH_TYPE");
        assert!(key.as_ref() != b"PATH" && !key.starts_with(b"WSGI_GATEWAY_"));
    }
    for (name, _) in &r.headers {
        assert!(!name.contains(&b'_'), "{name:?}");
        assert!(!name.eq_ignore_ascii_case(b"proxy"));
    }
    if let Some(n) = cgi.content_length {
        let given = vars
            .iter()
            .rev()
            .find(|(k, _)| k.as_encoded_bytes() == b"CONTENT_LENGTH")
            .map(|(_, v)| v.as_encoded_bytes());
        let parsed = given
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|t| t.parse::<u64>().ok());
        assert_eq!(parsed, Some(n));
    }
});
