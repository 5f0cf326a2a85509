//! Fuzzes the path every protected request takes before the database: the `Authorization`
//! header parser, then JWT verification with both an HS256 and an Ed25519 key set.
#![no_main]

use std::sync::LazyLock;

use authd::{
    auth::TokenKeys,
    http::extract::{bearer_token, Bearer},
};
use axum::http::{header::AUTHORIZATION, HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<[TokenKeys; 2]> = LazyLock::new(|| {
    let ed = TokenKeys::generate_ed25519(chrono::Utc::now()).expect("a key");
    [
        TokenKeys::hs256(b"fuzzing-secret-of-at-least-32-bytes!", "authd", "authd"),
        TokenKeys::ed25519(&[ed], "authd", "authd").expect("a key set"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let now = chrono::Utc::now().timestamp();
    // The raw bytes as a token, whatever the header parser would say.
    if let Ok(text) = std::str::from_utf8(data) {
        for keys in KEYS.iter() {
            assert!(keys.verify(text, now).is_err(), "a fuzzed token verified");
        }
    }
    // The same bytes as an Authorization header value.
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, value);
    if let Bearer::Token(token) = bearer_token(&headers) {
        for keys in KEYS.iter() {
            assert!(keys.verify(token, now).is_err(), "a fuzzed token verified");
        }
    }
});
