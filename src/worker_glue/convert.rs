//! `worker::Request` to the core's request, the core's response to `worker::Response`.

use crate::api::http::{Request, Response};
use futures_util::StreamExt;

pub async fn request(mut req: worker::Request, read_limit: u64) -> worker::Result<Request> {
    let url = req.url()?;
    let headers: Vec<(String, String)> = req
        .headers()
        .entries()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .collect();
    let declared = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let (body, unread_len) = match declared {
        Some(n) if n > read_limit => (Vec::new(), Some(n)),
        _ => (req.bytes().await.unwrap_or_default(), None),
    };
    Ok(Request {
        // The raw method: `worker::Method` maps every method it does not know to GET.
        method: req.inner().method(),
        path: url.path().to_owned(),
        query: url.query().unwrap_or("").to_owned(),
        headers,
        body,
        unread_len,
        origin: Some(url.origin().ascii_serialization()),
    })
}

pub fn response(resp: Response) -> worker::Result<worker::Response> {
    let headers = worker::Headers::new();
    for (n, v) in &resp.headers {
        headers.append(n, v)?;
    }
    let out = match resp.stream {
        // Each chunk is handed to the client as soon as the core yields it.
        Some(stream) => worker::Response::from_stream(stream.map(Ok::<_, worker::Error>))?,
        None => worker::Response::from_bytes(resp.body)?,
    };
    Ok(out.with_status(resp.status).with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn a_core_response_becomes_a_worker_response_with_status_and_headers() {
        let core = Response::json(405, &serde_json::json!({"code": 405}))
            .with_header("allow", "GET, POST");
        let resp = response(core).expect("conversion");
        assert_eq!(resp.status_code(), 405);
        assert_eq!(
            resp.headers().get("allow").unwrap().as_deref(),
            Some("GET, POST")
        );
        assert_eq!(
            resp.headers().get("content-type").unwrap().as_deref(),
            Some("application/json")
        );
    }
}
