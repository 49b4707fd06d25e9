//! wsgi-gateway: front end → `Request` → pool → WSGI call → responder → front end.


pub mod http;

pub mod python {}
pub mod request;

