//! The standalone HTTP/1.1 front end: parsing, framing and the listener.

pub mod chunked;
pub mod head;
