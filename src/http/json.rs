//! JSON bodies: request extractors that answer in authd's error shape instead of axum's plain
//! text, and the JSON response.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequest, Request},
    http::{header::CONTENT_TYPE, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::{de::DeserializeOwned, Serialize};

use super::error::{ApiError, FieldError};

/// Largest request body accepted anywhere, in bytes; beyond it, `413`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Like `axum::Json`, but as an extractor a wrong content type is `415`, bad JSON `400`, a
/// field of the wrong type `422` naming the field, and an oversized body `413`, all as
/// [`ApiError`]s. As a response it is `axum::Json`.
pub struct ApiJson<T>(pub T);

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_content_type(req.headers(), is_json) {
            return Err(ApiError::UnsupportedMediaType(
                "expected Content-Type: application/json",
            ));
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Reads the whole body within [`MAX_BODY_BYTES`].
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| body_error(&rejection))
}

pub fn body_error(rejection: &BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::MalformedBody("the request body could not be read".into())
    }
}

/// Parses a JSON document into `T`, naming the offending field when the shape is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = without_location(&inner.to_string());
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body" } else { path.as_str() };
                ApiError::Validation(vec![FieldError::new(field, message)])
            }
            _ => malformed(&message),
        }
    })?;
    de.end()
        .map_err(|e| malformed(&without_location(&e.to_string())))?;
    Ok(value)
}

fn malformed(message: &str) -> ApiError {
    ApiError::MalformedBody(format!("the request body is not valid JSON: {message}"))
}

pub fn has_content_type(headers: &HeaderMap, accept: fn(&str) -> bool) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|essence| accept(&essence.trim().to_ascii_lowercase()))
        .unwrap_or(false)
}

pub fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// serde_json appends " at line L column C", which means nothing to an API client.
fn without_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[tokio::test]
    async fn responses_are_json_with_their_content_type() {
        let value =
            serde_json::json!({ "name": "ä \"quoted\"", "n": [1, 2], "long": "x".repeat(2000) });
        let response = ApiJson(&value).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
            value
        );
    }

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        name: Option<String>,
    }

    #[test]
    fn syntax_errors_are_malformed_bodies() {
        for bad in [&b"{"[..], b"not json", b"{\"name\": \"a\"} trailing", b""] {
            assert!(
                matches!(parse_json::<Body>(bad), Err(ApiError::MalformedBody(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wrong_types_name_the_field() {
        match parse_json::<Body>(br#"{"name": 5}"#) {
            Err(ApiError::Validation(fields)) => {
                assert_eq!(fields[0].field, "name");
                assert!(!fields[0].message.contains("line"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_json::<Body>(b"[1]"),
            Err(ApiError::Validation(_))
        ));
    }

    #[test]
    fn content_types() {
        for (ct, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, ct.parse().unwrap());
            assert_eq!(has_content_type(&h, is_json), ok, "{ct}");
        }
        assert!(!has_content_type(&HeaderMap::new(), is_json));
    }

    proptest::proptest! {
        #[test]
        fn parse_json_never_panics(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_json::<Body>(&raw);
        }
    }
}
