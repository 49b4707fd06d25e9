//! The PROXY protocol header parser on arbitrary bytes, as the reactor meets them: a growing
//! buffer. No panic; every proper prefix of a complete header asks for more; once a prefix is
//! judged (a header or a refusal) every longer one gets the same verdict, so a header split
//! across reads is judged as if it came whole; a header lies within the bytes given, and its
//! own bytes alone give the same header; each version's size rules hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wsgi_gateway::internals::parse_proxy_header;

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fuzz_target!(|data: &[u8]| {
    let whole = parse_proxy_header(data);
    if let Ok(Some(h)) = &whole {
        assert!(
            h.len > 0 && h.len <= data.len(),
            "{h:?} of {} bytes",
            data.len()
        );
        let own = &data[..h.len];
        assert_eq!(parse_proxy_header(own).as_ref(), Ok(&Some(h.clone())));
        if data.starts_with(b"PROXY ") {
            assert!(h.len <= 107 && own.ends_with(b"\r\n"), "{own:?}");
            assert!(!h.tls);
        } else {
            assert!(data.starts_with(V2_SIGNATURE), "{own:?}");
            let declared = u16::from_be_bytes([own[14], own[15]]);
            assert_eq!(h.len, 16 + usize::from(declared));
        }
    }
    // Every prefix: more wanted until the first verdict, then that verdict. Byte by byte up
    // to the verdict (or 600 bytes: v2 headers may be long), then a few longer prefixes.
    let mut first = None;
    let limit = data.len().min(600);
    for n in 0..=limit {
        match (parse_proxy_header(&data[..n]), &first) {
            (Ok(None), None) => {}
            (verdict, None) => first = Some((n, verdict)),
            (verdict, Some((at, v))) => assert_eq!(&verdict, v, "at {n}, decided at {at}"),
        }
    }
    match &first {
        Some((at, v)) => {
            assert_eq!(&whole, v, "whole input, decided at {at}");
            if let Ok(Some(h)) = v {
                assert_eq!(h.len, *at, "a header is decided at its last byte");
            }
        }
        None if data.len() <= limit => assert_eq!(whole, Ok(None)),
        None => {}
    }
});
