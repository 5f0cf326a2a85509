//! The `authd_device` cookie on the HTTP side: read from a login request, and set on a
//! successful login's answer (HttpOnly, SameSite=Strict, `Path=/`, a year long; `Secure`
//! unless the client talks plain HTTP to authd over loopback, as in local development).

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderValue},
    response::Response,
};
use cookie::{Cookie, SameSite};

use super::clients::peer_ip;

pub const DEVICE_COOKIE: &str = "authd_device";
const LIFETIME_DAYS: i64 = 365;

/// The device cookie a login request carried, and how an answer must set it.
#[derive(Debug)]
pub struct DeviceCookie {
    pub value: Option<String>,
    secure: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for DeviceCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = peer_ip(&parts.extensions).to_canonical();
        Ok(Self {
            value: read(&parts.headers),
            secure: !peer.is_loopback() || forwarded_https(&parts.headers),
        })
    }
}

impl DeviceCookie {
    /// Adds the `Set-Cookie` of `value` to `response`.
    pub fn set(&self, response: &mut Response, value: String) {
        let cookie = Cookie::build((DEVICE_COOKIE, value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(cookie::time::Duration::days(LIFETIME_DAYS))
            .secure(self.secure)
            .build();
        if let Ok(header) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, header);
        }
    }
}

/// The first `authd_device` value among the request's `Cookie` headers.
fn read(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == DEVICE_COOKIE)
        .map(|c| c.value().to_owned())
}

/// Whether a proxy in front says the client came over HTTPS. Only ever makes the cookie
/// stricter, so it is believed from anyone.
fn forwarded_https(headers: &HeaderMap) -> bool {
    headers
        .get_all("x-forwarded-proto")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("https")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "theme=dark; authd_device=abc.def.alice".parse().unwrap(),
        );
        assert_eq!(read(&h).as_deref(), Some("abc.def.alice"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "theme=dark".parse().unwrap());
        h.append(header::COOKIE, "authd_device=x.y.z".parse().unwrap());
        assert_eq!(read(&h).as_deref(), Some("x.y.z"));
        assert_eq!(read(&HeaderMap::new()), None);
    }

    #[test]
    fn the_cookie_is_strict_and_secure_except_plain_http_on_loopback() {
        let mut response = Response::new(axum::body::Body::empty());
        DeviceCookie {
            value: None,
            secure: true,
        }
        .set(&mut response, "v.t.alice".into());
        let set = response.headers()[header::SET_COOKIE].to_str().unwrap();
        for part in [
            "authd_device=v.t.alice",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=31536000",
            "Secure",
        ] {
            assert!(set.contains(part), "{set} lacks {part}");
        }
        let mut response = Response::new(axum::body::Body::empty());
        DeviceCookie {
            value: None,
            secure: false,
        }
        .set(&mut response, "v".into());
        assert!(!response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Secure"));

        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(forwarded_https(&h));
        assert!(!forwarded_https(&HeaderMap::new()));
    }
}
