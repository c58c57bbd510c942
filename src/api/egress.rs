//! Where provider calls may go, as the handlers apply it: every call leaves through
//! [`App::send_out`] or [`App::stream_out`], which mark it with the hop header; a request that
//! arrives with that header is refused before anything else (508); tenant URLs are checked against
//! the deployment itself and the operator's address policy when saved, and again before each relay
//! call (a row saved under an older policy is not called).

use super::error::{redact_secrets, ApiError, LOOP_DETECTED};
use super::http::{Request, Response};
use super::{error_response, App};
use crate::providers::address::{self, OwnHosts, HOP_HEADER, HOP_VALUE};
use crate::relay::{ErrorCode, ErrorType};
use crate::store::outbound::{
    Outbound, OutboundError, OutboundRequest, OutboundResponse, StreamingResponse,
};
use crate::store::Platform;

/// The relay's paths, which answer in OpenAI's error shape.
fn is_relay_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// The answer to a request carrying the hop header, if it does: 508 in the relay's OpenAI shape on
/// `/v1`, the envelope elsewhere, with one warning line (method and path, secrets cut out).
pub fn refuse_hop(req: &Request) -> Option<Response> {
    req.first_header(HOP_HEADER)?;
    let method: String = req
        .method
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(16)
        .collect();
    let path: String = req
        .path
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    log::warn!(
        "refused {method} {}: it carries {HOP_HEADER}, so it came from a keyward deployment; a \
         provider URL leads back to keyward",
        redact_secrets(&path)
    );
    Some(if is_relay_path(&req.path) {
        Response::json(
            508,
            &crate::relay::error_body(
                LOOP_DETECTED,
                ErrorType::InvalidRequest,
                Some(ErrorCode::LoopDetected),
            ),
        )
    } else {
        error_response(&ApiError::LoopDetected)
    })
}

/// Add the hop header (once) to an outbound request.
fn mark(req: &mut OutboundRequest) {
    req.headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case(HOP_HEADER));
    req.headers.push((HOP_HEADER.into(), HOP_VALUE.into()));
}

impl<P: Platform> App<P> {
    /// Where this deployment answers, as the request and the operator's config tell it.
    pub(crate) fn own_hosts(&self, req: &Request) -> OwnHosts {
        OwnHosts::new(
            req.first_header("host"),
            req.origin.as_deref(),
            &self.config.public_hosts,
        )
    }

    /// A tenant URL being saved in `field`: not this deployment, and of an allowed address class.
    pub(crate) fn check_saved_url(
        &self,
        req: &Request,
        field: &str,
        url: &str,
    ) -> super::Result<()> {
        address::check_destination(url, &self.config.address_policy, &self.own_hosts(req))
            .map_err(|why| ApiError::bad(field, why))
    }

    /// Why the stored provider URL `url` may not be called under the current policy, if not.
    pub(crate) fn stored_url_refusal(&self, url: &str) -> Option<String> {
        match url::Url::parse(url) {
            Ok(u) => address::refusal(&u, &self.config.address_policy),
            Err(_) => Some("it is not a valid URL".into()),
        }
    }

    /// Send a provider call, marked with the hop header. Redirects are never followed (the ports
    /// return a 3xx as it is; the callers refuse it).
    pub(crate) async fn send_out(
        &self,
        mut req: OutboundRequest,
    ) -> Result<OutboundResponse, OutboundError> {
        mark(&mut req);
        self.platform.outbound().send(req).await
    }

    /// Like [`App::send_out`], for an answer read as it arrives.
    pub(crate) async fn stream_out(
        &self,
        mut req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError> {
        mark(&mut req);
        self.platform.outbound().send_streaming(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hop_header_is_added_once_whatever_was_there() {
        let mut r = OutboundRequest {
            method: "GET",
            url: "http://p/".into(),
            headers: vec![("X-Keyward-Hop".into(), "forged".into())],
            body: None,
            timeout_ms: 1,
            max_response_bytes: 1,
            idle_timeout_ms: None,
        };
        mark(&mut r);
        assert_eq!(r.headers, vec![(HOP_HEADER.into(), HOP_VALUE.into())]);
    }

    #[test]
    fn a_hop_is_refused_in_the_shape_of_its_path() {
        let relay =
            refuse_hop(&Request::new("POST", "/v1/chat/completions").header(HOP_HEADER, "1"))
                .expect("refused");
        assert_eq!(relay.status, 508);
        assert_eq!(relay.json_body()["error"]["code"], "loop_detected");
        let api = refuse_hop(&Request::new("GET", "/api/v1/me").header("X-KEYWARD-HOP", ""))
            .expect("refused");
        assert_eq!(api.status, 508);
        assert_eq!(api.json_body()["code"], 508);
        assert!(refuse_hop(&Request::new("GET", "/api/v1/me")).is_none());
    }
}
