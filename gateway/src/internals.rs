//! What bench/ and fuzz/ drive directly: the parsers, the connection I/O and responder, the
//! request and response types, and the Python side of a WSGI call. For those two crates only;
//! not an API: names and signatures change with the code they come from.

#[cfg(unix)]
pub use crate::cgi::meta::read_request as cgi_read_request;
#[cfg(unix)]
pub use crate::http::{
    body::{Drained, Finished, HttpBody},
    chunked::ChunkedDecoder,
    connection::precheck,
    head::{parse_head, parse_head_incremental, Head, HeadLimits, HeadScan},
    io::{ConnIo, SendLimits},
    proxy_protocol::{parse as parse_proxy_header, Header as ProxyHeader, Origin as ProxyOrigin},
    rate::{MinRate, RateMeter},
    response::HttpResponder,
    stream::Stream,
    Settings,
};
pub use crate::isapi::request::{read_request as isapi_read_request, EcbFields, ServerVariables};
pub use crate::python::{
    call::WsgiApp,
    environ::{EnvironBuilder, FrontEndKind},
    errors::WsgiErrors,
    file_wrapper::FileWrapper,
    input::WsgiInput,
    interpreter::start as start_interpreter,
};
pub use crate::reject::Reject;
pub use crate::request::{
    decode_path, BodyFailure, BodyReader, Framing, Peer, Request, Scheme, TcpPeer, Version,
};
pub use crate::responder::{BodyLength, Responder, ResponseHead};
pub use crate::trust::TrustPolicy;
