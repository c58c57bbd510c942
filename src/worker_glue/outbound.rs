//! The outbound port over the Workers runtime: `fetch` with a timeout, a bounded body and no
//! redirects followed, streams with an idle timeout that abort their fetch when dropped, and RS256
//! signatures through WebCrypto (so no RSA code ships in the bundle).

use crate::store::outbound::{
    Outbound, OutboundError, OutboundRequest, OutboundResponse, StreamingResponse,
};
use futures_util::future::{select, Either};
use futures_util::StreamExt;
use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
use std::time::Duration;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use worker::{AbortController, Delay, Fetch, Headers, Method, RequestInit, RequestRedirect};

pub struct FetchOutbound;

/// Aborts its fetch when dropped, whatever the reason the call's owner let go of it.
struct AbortOnDrop(Option<AbortController>);

impl AbortOnDrop {
    fn signal(&self) -> worker::AbortSignal {
        self.0
            .as_ref()
            .map(AbortController::signal)
            .unwrap_or_else(worker::AbortSignal::abort)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        // Aborting a fetch whose body was read to its end does nothing.
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

fn unreachable(e: worker::Error) -> OutboundError {
    OutboundError::Unreachable(e.to_string())
}

/// A `worker::Request` for the core's outbound request.
fn build(req: &OutboundRequest) -> Result<worker::Request, OutboundError> {
    let headers = Headers::new();
    for (n, v) in &req.headers {
        headers
            .set(n, v)
            .map_err(|_| OutboundError::Unreachable(format!("invalid header {n}")))?;
    }
    let mut init = RequestInit::new();
    // Never follow a redirect: it would carry the credential headers to wherever the provider
    // points. workerd hands the 3xx back as it is, and the core refuses it.
    init.with_method(Method::from(req.method.to_owned()))
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    if let Some(b) = &req.body {
        init.with_body(Some(Uint8Array::from(b.as_slice()).into()));
    }
    worker::Request::new_with_init(&req.url, &init).map_err(unreachable)
}

async fn fetch_bounded(
    req: worker::Request,
    signal: &worker::AbortSignal,
    max: usize,
) -> Result<OutboundResponse, OutboundError> {
    let mut resp = Fetch::Request(req)
        .send_with_signal(signal)
        .await
        .map_err(|e| OutboundError::Unreachable(e.to_string()))?;
    let headers: Vec<(String, String)> = resp.headers().entries().collect();
    let mut body = Vec::new();
    let mut stream = resp
        .stream()
        .map_err(|e| OutboundError::Unreachable(e.to_string()))?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| OutboundError::Unreachable(e.to_string()))?;
        if body.len() + chunk.len() > max {
            return Err(OutboundError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(OutboundResponse {
        status: resp.status_code(),
        headers,
        body,
    })
}

impl Outbound for FetchOutbound {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let request = build(&req)?;
        let controller = AbortController::default();
        let signal = controller.signal();
        let work = Box::pin(fetch_bounded(request, &signal, req.max_response_bytes));
        let timer = Delay::from(Duration::from_millis(req.timeout_ms));
        let outcome = match select(work, timer).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(_) => {
                controller.abort();
                Err(OutboundError::Timeout)
            }
        };
        outcome
    }

    async fn send_streaming(
        &self,
        req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError> {
        let request = build(&req)?;
        let abort = AbortOnDrop(Some(AbortController::default()));
        let signal = abort.signal();
        let timer = Delay::from(Duration::from_millis(req.timeout_ms));
        let fetch = Box::pin(async move {
            Fetch::Request(request)
                .send_with_signal(&signal)
                .await
                .map_err(unreachable)
        });
        // On a timeout `abort` is dropped here, which aborts the fetch.
        let mut resp = match select(fetch, timer).await {
            Either::Left((outcome, _)) => outcome?,
            Either::Right(_) => return Err(OutboundError::Timeout),
        };
        let headers: Vec<(String, String)> = resp.headers().entries().collect();
        let max = req.max_response_bytes;
        let idle = Duration::from_millis(req.idle_timeout_ms.unwrap_or(req.timeout_ms));
        let chunks = resp.stream().map_err(unreachable)?;
        // Each chunk races the idle timer. The state owns `abort`: when the body ends, fails,
        // times out or is dropped (the client left, or the relay ended the stream), the fetch is
        // aborted and workerd closes the upstream connection.
        let body = futures_util::stream::unfold(Some((chunks, abort)), move |state| async move {
            let (mut chunks, abort) = state?;
            let next = match select(chunks.next(), Delay::from(idle)).await {
                Either::Left((item, _)) => Some(item),
                Either::Right(_) => None,
            };
            match next {
                Some(Some(Ok(c))) if c.len() > max => Some((Err(OutboundError::TooLarge), None)),
                Some(Some(Ok(c))) => Some((Ok(c), Some((chunks, abort)))),
                Some(Some(Err(e))) => Some((Err(unreachable(e)), None)),
                Some(None) => None,
                None => Some((Err(OutboundError::Timeout), None)),
            }
        });
        Ok(StreamingResponse {
            status: resp.status_code(),
            headers,
            body: Box::pin(body),
        })
    }

    async fn sign_rs256(&self, pkcs8_der: &[u8], data: &[u8]) -> Result<Vec<u8>, String> {
        let js = |e: JsValue| format!("{e:?}");
        let subtle = Reflect::get(&js_sys::global(), &"crypto".into())
            .and_then(|c| Reflect::get(&c, &"subtle".into()))
            .map_err(js)?;
        let algo = Object::new();
        Reflect::set(&algo, &"name".into(), &"RSASSA-PKCS1-v1_5".into()).map_err(js)?;
        Reflect::set(&algo, &"hash".into(), &"SHA-256".into()).map_err(js)?;
        let method = |name: &str| -> Result<Function, String> {
            Reflect::get(&subtle, &name.into())
                .map_err(js)?
                .dyn_into::<Function>()
                .map_err(js)
        };
        let args = Array::of5(
            &"pkcs8".into(),
            &Uint8Array::from(pkcs8_der).into(),
            &algo,
            &false.into(),
            &Array::of1(&"sign".into()),
        );
        let key = JsFuture::from(Promise::from(
            method("importKey")?.apply(&subtle, &args).map_err(js)?,
        ))
        .await
        .map_err(js)?;
        let sig = method("sign")?
            .call3(&subtle, &algo, &key, &Uint8Array::from(data))
            .map_err(js)?;
        let sig = JsFuture::from(Promise::from(sig)).await.map_err(js)?;
        Ok(Uint8Array::new(&sig).to_vec())
    }
}
