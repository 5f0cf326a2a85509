//! authd's cookies on the HTTP side: `authd_device`, read from a login request and set on a
//! successful login's answer (HttpOnly, SameSite=Strict, `Path=/`, a year long), and the
//! cookie-mode refresh token `authd_refresh` (HttpOnly, SameSite=Strict, `Path=/auth`, as
//! long as the refresh token). Both are `Secure` unless the client talks plain HTTP to
//! authd over loopback, as in local development.

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderMap, HeaderValue},
    response::Response,
};
use cookie::{Cookie, SameSite};

use super::clients::peer_ip;

pub const DEVICE_COOKIE: &str = "authd_device";
pub const REFRESH_COOKIE: &str = "authd_refresh";
const LIFETIME_DAYS: i64 = 365;

/// The device cookie a login request carried, the refresh cookie a refresh or logout
/// carried, and how an answer must set them.
#[derive(Debug)]
pub struct AuthCookies {
    /// The `authd_device` value.
    pub value: Option<String>,
    /// The `authd_refresh` value (cookie mode).
    pub refresh: Option<String>,
    secure: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for AuthCookies {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = peer_ip(&parts.extensions).to_canonical();
        Ok(Self {
            value: read(&parts.headers, DEVICE_COOKIE),
            refresh: read(&parts.headers, REFRESH_COOKIE),
            secure: !peer.is_loopback() || forwarded_https(&parts.headers),
        })
    }
}

impl AuthCookies {
    /// Adds the `Set-Cookie` of the device cookie `value` to `response`.
    pub fn set(&self, response: &mut Response, value: String) {
        let lifetime = cookie::time::Duration::days(LIFETIME_DAYS);
        self.set_cookie(response, DEVICE_COOKIE, value, "/", lifetime);
    }

    /// Sets the refresh cookie to `value` for `seconds`; `None` deletes it.
    pub fn set_refresh(&self, response: &mut Response, value: Option<(String, i64)>) {
        let (value, seconds) = value.unwrap_or_default();
        let lifetime = cookie::time::Duration::seconds(seconds);
        self.set_cookie(response, REFRESH_COOKIE, value, "/auth", lifetime);
    }

    fn set_cookie(
        &self,
        response: &mut Response,
        name: &'static str,
        value: String,
        path: &'static str,
        lifetime: cookie::time::Duration,
    ) {
        let cookie = Cookie::build((name, value))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path(path)
            .max_age(lifetime)
            .secure(self.secure)
            .build();
        if let Ok(header) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, header);
        }
    }
}

/// The first value of the cookie `name` among the request's `Cookie` headers.
fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
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
        assert_eq!(read(&h, DEVICE_COOKIE).as_deref(), Some("abc.def.alice"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "theme=dark".parse().unwrap());
        h.append(header::COOKIE, "authd_device=x.y.z".parse().unwrap());
        assert_eq!(read(&h, DEVICE_COOKIE).as_deref(), Some("x.y.z"));
        assert_eq!(read(&HeaderMap::new(), DEVICE_COOKIE), None);
    }

    #[test]
    fn the_cookie_is_strict_and_secure_except_plain_http_on_loopback() {
        let mut response = Response::new(axum::body::Body::empty());
        AuthCookies {
            value: None,
            refresh: None,
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
        AuthCookies {
            value: None,
            refresh: None,
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
