//! The runtime's request to the core's request, the core's response to `worker::Response`.

use crate::api::http::{Request, Response};
use futures_util::StreamExt;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use worker::web_sys;

/// The core's request from the runtime's own, read without `worker::Request`: that conversion
/// reads `request.cf`, which the runtime builds on every access and keyward never uses.
/// A request without a body (every GET) is not read at all; one whose declared length is above
/// `read_limit(path)` is left unread too, and the core answers 413 from the declared length.
pub async fn request(
    req: web_sys::Request,
    read_limit: impl FnOnce(&str) -> u64,
) -> worker::Result<Request> {
    let raw = req.url();
    // The runtime's URL is already serialized: split it, and parse it only when it might not be.
    let (origin, path, query) = match crate::api::http::serialized_url_parts(&raw) {
        Some((origin, path, query)) => (origin.to_owned(), path.to_owned(), query.to_owned()),
        None => {
            let url = url::Url::parse(&raw)?;
            (
                url.origin().ascii_serialization(),
                url.path().to_owned(),
                url.query().unwrap_or("").to_owned(),
            )
        }
    };
    let headers: Vec<(String, String)> = worker::Headers(req.headers())
        .entries()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let (body, unread_len) = match declared {
        _ if req.body().is_none() => (Vec::new(), None),
        Some(n) if n > read_limit(&path) => (Vec::new(), Some(n)),
        _ => (read_body(&req).await.unwrap_or_default(), None),
    };
    Ok(Request {
        // The raw method: `worker::Method` maps every method it does not know to GET.
        method: req.method(),
        path,
        query,
        headers,
        body,
        unread_len,
        origin: Some(origin),
    })
}

async fn read_body(req: &web_sys::Request) -> Option<Vec<u8>> {
    let buffer = JsFuture::from(req.array_buffer().ok()?).await.ok()?;
    let buffer: js_sys::ArrayBuffer = buffer.dyn_into().ok()?;
    Some(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// The runtime's response for the core's: its headers in one `Headers`, a fixed body handed to
/// the `Response` constructor as a view of the bytes, which copies them (no `worker::Response` in
/// between, whose builder makes a `Headers` of its own, sets a content type on it and copies the
/// body into a new `Uint8Array` first). A streamed body goes through `worker`'s stream adapter.
pub fn response(mut resp: Response) -> worker::Result<web_sys::Response> {
    let headers = web_sys::Headers::new()?;
    for (n, v) in &resp.headers {
        headers.append(n, v)?;
    }
    if let Some(stream) = resp.stream.take() {
        // Each chunk is handed to the client as soon as the core yields it.
        let out = worker::Response::from_stream(stream.map(Ok::<_, worker::Error>))?;
        return Ok(out
            .with_status(resp.status)
            .with_headers(worker::Headers(headers))
            .into());
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(resp.status);
    init.set_headers(&headers);
    Ok(web_sys::Response::new_with_opt_u8_array_and_init(
        Some(&mut resp.body),
        &init,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    async fn a_core_response_becomes_the_runtimes_with_status_headers_and_body() {
        let core = Response::json(405, &serde_json::json!({"code": 405}))
            .with_header("allow", "GET, POST");
        let resp = response(core).expect("conversion");
        assert_eq!(resp.status(), 405);
        assert_eq!(
            resp.headers().get("allow").unwrap().as_deref(),
            Some("GET, POST")
        );
        assert_eq!(
            resp.headers().get("content-type").unwrap().as_deref(),
            Some("application/json")
        );
        let text = JsFuture::from(resp.text().unwrap()).await.unwrap();
        assert_eq!(text.as_string().as_deref(), Some(r#"{"code":405}"#));
    }

    fn runtime_request(method: &str, url: &str, body: Option<&str>) -> web_sys::Request {
        let init = web_sys::RequestInit::new();
        init.set_method(method);
        if let Some(b) = body {
            init.set_body(&wasm_bindgen::JsValue::from_str(b));
        }
        web_sys::Request::new_with_str_and_init(url, &init).expect("a request")
    }

    #[wasm_bindgen_test]
    async fn a_request_becomes_the_core_request_with_its_body_read_only_when_it_has_one() {
        let get = runtime_request("GET", "https://kw.example/api/v1/me?x=1", None);
        get.headers().set("Authorization", "Bearer t").unwrap();
        let core = request(get, |_| 10).await.expect("conversion");
        assert_eq!(core.method, "GET");
        assert_eq!(
            (core.path.as_str(), core.query.as_str()),
            ("/api/v1/me", "x=1")
        );
        assert_eq!(core.first_header("authorization"), Some("Bearer t"));
        assert!(core.body.is_empty() && core.unread_len.is_none());
        assert_eq!(core.origin.as_deref(), Some("https://kw.example"));

        let post = runtime_request(
            "POST",
            "https://kw.example/v1/embeddings",
            Some("{\"a\":1}"),
        );
        let core = request(post, |_| 10).await.expect("conversion");
        assert_eq!(core.body, b"{\"a\":1}");
        assert!(core.unread_len.is_none());
    }

    #[wasm_bindgen_test]
    async fn a_body_declared_above_the_paths_limit_is_left_unread() {
        let post = runtime_request(
            "POST",
            "https://kw.example/v1/embeddings",
            Some("0123456789ab"),
        );
        post.headers().set("content-length", "12").unwrap();
        let mut seen = String::new();
        let core = request(post, |path| {
            seen = path.to_owned();
            10
        })
        .await
        .expect("conversion");
        assert_eq!(seen, "/v1/embeddings");
        assert!(core.body.is_empty());
        assert_eq!(core.unread_len, Some(12));
    }
}
