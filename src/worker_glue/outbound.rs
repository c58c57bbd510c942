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
use worker::{web_sys, AbortController, Delay, Headers};

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

/// Start the runtime's `fetch` for the core's outbound request: the URL as a string and a
/// `RequestInit` straight to the global `fetch` (no `worker::Request` in between, which would parse
/// the URL again in Rust), with `signal` to abort it.
async fn start_fetch(
    req: &OutboundRequest,
    signal: &worker::AbortSignal,
) -> Result<web_sys::Response, OutboundError> {
    // The same text `worker`'s own fetch gave (its error's display).
    let js = |e: JsValue| unreachable(worker::Error::from(e));
    let headers = web_sys::Headers::new().map_err(js)?;
    for (n, v) in &req.headers {
        headers
            .set(n, v)
            .map_err(|_| OutboundError::Unreachable(format!("invalid header {n}")))?;
    }
    let init = web_sys::RequestInit::new();
    init.set_method(req.method);
    init.set_headers(&headers);
    // Never follow a redirect: it would carry the credential headers to wherever the provider
    // points. workerd hands the 3xx back as it is, and the core refuses it.
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(signal));
    if let Some(b) = &req.body {
        init.set_body(&Uint8Array::from(b.as_slice()));
    }
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let promise = global.fetch_with_str_and_init(&req.url, &init);
    let resp = JsFuture::from(promise).await.map_err(js)?;
    resp.dyn_into::<web_sys::Response>().map_err(js)
}

/// The answer's headers, as the core reads them.
fn header_pairs(resp: &web_sys::Response) -> Vec<(String, String)> {
    Headers(resp.headers()).entries().collect()
}

async fn fetch_bounded(
    req: &OutboundRequest,
    signal: &worker::AbortSignal,
) -> Result<OutboundResponse, OutboundError> {
    let max = req.max_response_bytes;
    let raw = start_fetch(req, signal).await?;
    let status = raw.status();
    let headers = header_pairs(&raw);
    let declared = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    // A declared length bounds the body (HTTP framing ends it there), so one `arrayBuffer()`
    // reads it whole; without one the body is read chunk by chunk against the limit.
    let body = match declared.filter(|_| raw.body().is_some()) {
        Some(n) if n > max => return Err(OutboundError::TooLarge),
        Some(_) => match raw.array_buffer() {
            Ok(p) => {
                let buf = JsFuture::from(p)
                    .await
                    .map_err(|e| unreachable(worker::Error::from(e)))?;
                let bytes = Uint8Array::new(&buf);
                if bytes.length() as usize > max {
                    return Err(OutboundError::TooLarge);
                }
                bytes.to_vec()
            }
            Err(e) => return Err(unreachable(worker::Error::from(e))),
        },
        None => {
            let mut resp = worker::Response::from(raw);
            let mut body = Vec::new();
            let mut stream = resp.stream().map_err(unreachable)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(unreachable)?;
                if body.len() + chunk.len() > max {
                    return Err(OutboundError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            body
        }
    };
    Ok(OutboundResponse {
        status,
        headers,
        body,
    })
}

impl Outbound for FetchOutbound {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        // The runtime's own timer (`AbortSignal.timeout`) bounds the whole exchange, the body
        // included: when it fires, the fetch or the body being read rejects and workerd closes
        // the upstream connection. No timer of ours to set, race and clear on every call.
        let ms = u32::try_from(req.timeout_ms).unwrap_or(u32::MAX);
        let signal = worker::AbortSignal::from(web_sys::AbortSignal::timeout_with_u32(ms));
        match fetch_bounded(&req, &signal).await {
            Err(OutboundError::Unreachable(_)) if signal.aborted() => Err(OutboundError::Timeout),
            outcome => outcome,
        }
    }

    async fn send_streaming(
        &self,
        req: OutboundRequest,
    ) -> Result<StreamingResponse, OutboundError> {
        let abort = AbortOnDrop(Some(AbortController::default()));
        let signal = abort.signal();
        let timer = Delay::from(Duration::from_millis(req.timeout_ms));
        let fetch = Box::pin(start_fetch(&req, &signal));
        // On a timeout `abort` is dropped here, which aborts the fetch.
        let raw = match select(fetch, timer).await {
            Either::Left((outcome, _)) => outcome?,
            Either::Right(_) => return Err(OutboundError::Timeout),
        };
        let headers = header_pairs(&raw);
        let mut resp = worker::Response::from(raw);
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
