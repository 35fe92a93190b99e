//! Request bodies: JSON only, bounded, with the path of the offending value in
//! the error (`rules[0].action`), and the reading of bodies with a limit.

use crate::error::{ApiError, ErrorCode};
use crate::state::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A JSON body, parsed into `T`.
pub struct ApiJson<T>(pub T);

/// Reads a whole body, refusing more than `limit` bytes with 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::too_large(limit));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Whether the declared length alone is over the limit.
pub fn declared_too_large(headers: &HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5 && mime.to_ascii_lowercase().ends_with("+json"))
}

/// Parses JSON text into `T`; errors carry the path of the offending value.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let err = ApiError::bad_request(format!("invalid JSON: {inner}"));
        if path.is_empty() || path == "." {
            err
        } else {
            err.field(path)
        }
    })?;
    Ok(value)
}

/// A non-negative integer as JSON Schema counts them: `4304` or `4304.0`
/// (a number with no fraction is an integer there; serde takes only the
/// first). Floats only up to 2^53, where every integer is exact.
pub fn integral_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f) => Ok(f as u64),
        _ => Err(D::Error::custom(format!(
            "invalid value: {n}, expected a non-negative integer"
        ))),
    }
}

impl<T: DeserializeOwned> FromRequest<Shared> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        if declared_too_large(req.headers(), state.max_body) {
            return Err(ApiError::too_large(state.max_body));
        }
        let bytes = read_body(req.into_body(), state.max_body).await?;
        // Every request body of this API is an object: `[]` or `null` must not
        // slip through as an empty struct (serde takes a sequence for one).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        parse(&bytes).map(ApiJson)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        mac: String,
        items: Vec<u8>,
    }

    #[test]
    fn errors_name_the_offending_field() {
        let e = parse::<Body>(br#"{"mac": "x", "items": [1, 300]}"#).expect_err("range");
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(e.body.field.as_deref(), Some("items[1]"));
        let e = parse::<Body>(b"{").expect_err("syntax");
        assert_eq!(e.body.code, ErrorCode::BadRequest);
        let e = parse::<Body>(br#"{"mac": "x", "items": [], "x": 1}"#).expect_err("unknown");
        assert!(e.body.message.contains("unknown field"), "{e:?}");
    }

    #[derive(Debug, Deserialize)]
    struct Version {
        #[serde(deserialize_with = "integral_u64")]
        v: u64,
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        for (text, want) in [
            ("4304", Some(4304)),
            ("4304.0", Some(4304)),
            ("4.304e3", Some(4304)),
            ("18446744073709551615", Some(u64::MAX)),
            ("4304.5", None),
            ("-1", None),
            ("-1.0", None),
            ("1e300", None),
            ("18446744073709551616", None),
            ("\"1\"", None),
        ] {
            let got = parse::<Version>(format!("{{\"v\": {text}}}").as_bytes()).ok();
            assert_eq!(got.map(|v| v.v), want, "{text}");
        }
    }
}
