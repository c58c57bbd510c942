//! Reading JSON request bodies strictly: content type, size, unknown fields, duplicate keys, types.

use super::error::ApiError;
use super::http::Request;
use serde::de::DeserializeOwned;

/// Management API body limit (../API.md: 64 KiB).
pub const MAX_BODY: usize = 64 * 1024;

/// Parse the body as `T`. An empty body with no content type reads as `{}` so that POSTs whose
/// fields are all optional work without one.
pub fn parse<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if req.body.len() > MAX_BODY || req.unread_len.is_some() {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    let content_type = req.first_header("content-type");
    if req.body.is_empty() && content_type.is_none() {
        return decode(b"{}");
    }
    if !is_json(req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    decode(&req.body)
}

/// Whether the request says its body is JSON (`application/json`, parameters allowed).
pub fn is_json(req: &Request) -> bool {
    req.first_header("content-type")
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ApiError::BadRequest(
            "Request body is not valid UTF-8".into(),
        ));
    }
    // Every body is an object; serde would otherwise read an array positionally into a struct.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::BadRequest(
            "Invalid JSON body: expected a JSON object".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let why = scrub_message(&e.inner().to_string());
        if path.is_empty() || path == "." {
            ApiError::BadRequest(format!("Invalid JSON body: {why}"))
        } else {
            ApiError::BadRequest(format!("{path}: {why}"))
        }
    })?;
    Ok(value)
}

/// For `#[serde(default, deserialize_with = "present")]`: `Some(None)` for an explicit `null`,
/// `None` for a field not sent, so a PATCH-like body can tell "clear" from "leave".
pub fn present<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Option<T>>, D::Error> {
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

/// For `#[serde(default, deserialize_with = "not_null")]`: a field that may be left out, but when
/// sent must be a value of its type (`null` is refused like any other wrong type).
pub fn not_null<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// serde echoes offending string values (`invalid type: string "..."`); a client may have put a
/// secret in the wrong field, so the value is cut from the message.
pub fn scrub_message(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(i) = rest.find("string \"") {
        out.push_str(&rest[..i + "string".len()]);
        let after = &rest[i + "string \"".len()..];
        rest = match after.find('"') {
            Some(j) => &after[j + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offending_string_values_are_not_echoed() {
        assert_eq!(
            scrub_message(r#"invalid type: string "kws_abc", expected i64 at line 1 column 9"#),
            "invalid type: string, expected i64 at line 1 column 9"
        );
        assert_eq!(
            scrub_message("missing field `name`"),
            "missing field `name`"
        );
    }
}
