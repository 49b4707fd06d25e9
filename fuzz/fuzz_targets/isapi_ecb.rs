//! The ECB mapping on arbitrary input: the first line is the method, the second the
//! configured mount (empty = none), the rest `NAME=value` server variables (`\x01` stands for
//! a line break inside a value, so ALL_RAW can hold several headers). `read_request` never
//! panics, and what it accepts keeps its promises: PATH_INFO is what lies below SCRIPT_NAME in
//! the decoded URL, identity comes only from the identity variables, and no header or
//! identity variable slips into the extras.

#![no_main]

use std::collections::HashMap;
use std::ffi::CStr;

use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::{
    decode_path, isapi_read_request as read_request, EcbFields, ServerVariables,
};

struct Table(HashMap<Vec<u8>, Vec<u8>>);

impl ServerVariables for Table {
    fn get(&mut self, name: &CStr) -> Option<Vec<u8>> {
        self.0.get(name.to_bytes()).cloned()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or_default().to_vec();
    let mount = lines.next().unwrap_or_default().to_vec();
    let vars: HashMap<Vec<u8>, Vec<u8>> = lines
        .filter_map(|line| {
            let eq = line.iter().position(|&b| b == b'=')?;
            let value = line[eq + 1..]
                .iter()
                .map(|&b| if b == 1 { b'\n' } else { b })
                .collect();
            Some((line[..eq].to_vec(), value))
        })
        .collect();
    let fields = EcbFields {
        method,
        query: Vec::new(),
        content_type: Vec::new(),
        total_bytes: data.len().checked_sub(3).map(|n| n as u64),
    };
    let mount = (!mount.is_empty()).then_some(mount.as_slice());
    let Ok(r) = read_request(fields, &mut Table(vars.clone()), mount) else {
        return;
    };
    let req = &r.request;
    let url = vars
        .get(&b"UNENCODED_URL"[..])
        .filter(|v| !v.is_empty())
        .or_else(|| vars.get(&b"HTTP_URL"[..]))
        .cloned()
        .unwrap_or_default();
    let mut raw_path = url.split(|&b| b == b'?').next().unwrap_or_default();
    // An absolute-form URL: the path follows the authority.
    let lower = raw_path.to_ascii_lowercase();
    for scheme in [&b"http://"[..], b"https://"] {
        if lower.starts_with(scheme) && raw_path.len() >= 8 {
            let rest = &raw_path[scheme.len()..];
            raw_path = match rest.iter().position(|&b| b == b'/') {
                Some(slash) => &rest[slash..],
                None => b"/",
            };
            break;
        }
    }
    let decoded = decode_path(&bytes::Bytes::copy_from_slice(raw_path));
    let mut joined = req.script_name.to_vec();
    joined.extend_from_slice(&req.path);
    assert_eq!(joined, decoded.to_vec());
    assert!(req.path.is_empty() || req.path.starts_with(b"/"));
    let user = vars.get(&b"REMOTE_USER"[..]).filter(|v| !v.is_empty());
    assert_eq!(req.remote_user.as_deref(), user.map(|v| v.as_slice()));
    for (key, _) in &req.extra {
        assert!(
            !key.starts_with(b"HTTP_") && key.as_ref() != b"REMOTE_USER",
            "{key:?}"
        );
    }
    for (name, _) in &req.headers {
        assert!(!name.is_empty() && !name.contains(&b':') && !name.contains(&b'\n'));
    }
});
