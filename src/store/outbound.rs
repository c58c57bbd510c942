//! The outbound HTTP port: how the core calls model providers. Worker `fetch` in the glue, a real
//! HTTP client against a loopback stand-in in native tests.

use futures_util::Stream;
use std::pin::Pin;

/// A request to a provider. Every call carries its own timeout and response-size bound.
#[derive(Clone, PartialEq)]
pub struct OutboundRequest {
    pub method: &'static str,
    pub url: String,
    /// Header names in lowercase. May carry credentials: never log this struct's values.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
    /// Bodies longer than this are cut off and reported as [`OutboundError::TooLarge`].
    pub max_response_bytes: usize,
    /// Streams only: the longest wait for the next chunk once the headers are in. When it passes,
    /// the upstream call is aborted and the body ends with [`OutboundError::Timeout`].
    pub idle_timeout_ms: Option<u64>,
}

impl std::fmt::Debug for OutboundRequest {
    /// Shows method and URL only: headers and bodies may hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutboundRequest({} {})", self.method, self.url)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OutboundError {
    /// No answer within the request's timeout.
    Timeout,
    /// The connection failed (refused, DNS, TLS); the text is for the log.
    Unreachable(String),
    /// The answer was larger than the request's bound.
    TooLarge,
}

/// A response body arriving chunk by chunk.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Vec<u8>, OutboundError>>>>;

/// A response whose body is read as it arrives (server-sent events).
pub struct StreamingResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ChunkStream,
}

/// Outbound HTTP and the one signature the core needs for provider auth (Vertex service accounts).
#[allow(async_fn_in_trait)]
pub trait Outbound {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError>;
    /// Send and return once the headers are in; `timeout_ms` bounds the wait for them,
    /// `idle_timeout_ms` each wait for a chunk after them, and each chunk may be at most
    /// `max_response_bytes` long. Dropping the body stops the upstream call (its connection is
    /// closed), so a client that leaves stops the reading.
    async fn send_streaming(
        &self,
        req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError>;
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `data`, with a PKCS#8 DER private key.
    async fn sign_rs256(&self, pkcs8_der: &[u8], data: &[u8]) -> Result<Vec<u8>, String>;
}
