//! Keyset paging for the lists that answer a bare array (`data: [...]`, RAGFlow's shape): one page
//! at a time, in a stable order, with the way to the next page in the `Link` header (RFC 8288,
//! `rel="next"`) and in `X-Next-Cursor`, so the body keeps the shape existing clients read.
//!
//! A cursor names the last row of a page by its sort key, so the next page starts right after it
//! whatever was added or removed meanwhile: no row is skipped or shown twice, unlike an offset.

use super::error::ApiError;
use super::http::Request;
use super::{Reply, Result};
use base64::Engine;

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: i64 = 100;
/// Most rows one page may hold.
pub const MAX_LIMIT: i64 = 1000;
/// Header carrying the next page's cursor (also inside `Link`).
pub const NEXT_CURSOR_HEADER: &str = "x-next-cursor";

/// The sort key of a row a page ended on: an integer (a time, or an id) and a text tiebreak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub int: i64,
    pub text: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}:{}", self.int, self.text))
    }

    fn decode(s: &str) -> Option<Cursor> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (int, rest) = text.split_once(':')?;
        Some(Cursor {
            int: int.parse().ok()?,
            text: rest.to_owned(),
        })
    }
}

/// What a list request asks for: how many rows, after which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and `cursor` from the query.
    pub fn parse(req: &Request) -> Result<PageRequest> {
        let limit = match req.query_param("limit").filter(|s| !s.is_empty()) {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::bad("limit", format!("must be an integer from 1 to {MAX_LIMIT}"))
                })?,
        };
        let after = match req.query_param("cursor").filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(Cursor::decode(&c).ok_or_else(|| {
                ApiError::bad(
                    "cursor",
                    "is not a cursor this API gave out (take it from the Link or X-Next-Cursor header)",
                )
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// The row count to ask the database for: one more than the page, to know if another follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Cut `rows` (fetched with [`PageRequest::fetch`]) to the page, and the cursor after it if
    /// more rows follow.
    pub fn cut<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> (Vec<T>, Option<Cursor>) {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        (rows, next)
    }
}

impl Reply {
    /// Say where the next page is: `Link: <path?...&cursor=C>; rel="next"` and `X-Next-Cursor`.
    pub fn next_page(mut self, req: &Request, next: Option<Cursor>) -> Self {
        if let Some(c) = next {
            let cursor = c.encode();
            let mut query: Vec<&str> = req
                .query
                .split('&')
                .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
                .collect();
            let pair = format!("cursor={cursor}");
            query.push(&pair);
            self.headers.push((
                "link".into(),
                format!("<{}?{}>; rel=\"next\"", req.path, query.join("&")),
            ));
            self.headers.push((NEXT_CURSOR_HEADER.into(), cursor));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let c = Cursor {
            int: 1_795_478_400_000,
            text: "alice@example.com:x".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in ["", "!!", "bm9jb2xvbg", "YWJjOmRlZg"] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_page_is_cut_at_its_limit_and_names_what_follows() {
        let p = PageRequest {
            limit: 2,
            after: None,
        };
        let key = |n: &i64| Cursor {
            int: *n,
            text: String::new(),
        };
        assert_eq!(p.cut(vec![1, 2, 3], key), (vec![1, 2], Some(key(&2))));
        assert_eq!(p.cut(vec![1, 2], key), (vec![1, 2], None));
        assert_eq!(p.cut(Vec::<i64>::new(), key), (vec![], None));
    }
}
