use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

async fn assert_429(r: reqwest::Response) -> u64 {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests");
    assert!(body["detail"].is_string() && body["error_description"].is_string());
    retry_after
}

fn wrong_login(name: &str) -> [(&str, &str); 2] {
    [("username", name), ("password", "wrong-password-1")]
}

#[tokio::test]
async fn each_client_ip_gets_a_limited_number_of_credential_attempts() {
    let app = spawn_app_with(&[("AUTHD_LOGIN_RATE_PER_MIN", "4")]).await;
    let (_, pair) = {
        // Registration and login count too.
        app.new_session().await
    };
    let r = app.token(&wrong_login("someone")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .post_json("/auth/refresh", &json!({"refresh_token": "x"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Four attempts used: every credential endpoint now says 429.
    assert_429(app.token(&wrong_login("someone")).await).await;
    assert_429(
        app.post_json("/auth/login", &json!({"username": "a", "password": "b"}))
            .await,
    )
    .await;
    assert_429(
        app.register(&json!({"username": "newbie", "password": PASSWORD}))
            .await,
    )
    .await;
    assert_429(app.refresh(&tokens(&pair).1).await).await;
    // Endpoints that take no password are not limited.
    assert_eq!(app.me(&tokens(&pair).0).await.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_limit() {
    let app = spawn_app_with(&[("AUTHD_LOGIN_RATE_PER_MIN", "2")]).await;
    for i in 0..2 {
        let r = app
            .client
            .post(app.url("/token"))
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .form(&wrong_login("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = app
        .client
        .post(app.url("/token"))
        .header("x-forwarded-for", "198.51.100.99")
        .form(&wrong_login("x"))
        .send()
        .await
        .unwrap();
    assert_429(r).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit_and_ip() {
    let app = spawn_app_with(&[
        ("AUTHD_LOGIN_RATE_PER_MIN", "2"),
        ("AUTHD_TRUSTED_PROXIES", "127.0.0.1/32, ::1"),
    ])
    .await;
    let name = unique_name("proxied");
    let register = app
        .client
        .post(app.url("/users"))
        .header("x-forwarded-for", "203.0.113.1")
        .json(&json!({"username": name, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), StatusCode::CREATED);
    for client in ["203.0.113.10", "203.0.113.11", "203.0.113.12"] {
        for _ in 0..2 {
            let r = app
                .client
                .post(app.url("/token"))
                .header("x-forwarded-for", format!("6.6.6.6, {client}"))
                .form(&[("username", name.as_str()), ("password", PASSWORD)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{client}");
        }
    }
    let ips: Vec<String> = app
        .db
        .query_column("SELECT ip FROM sessions ORDER BY ip")
        .await;
    assert_eq!(ips.len(), 6);
    assert!(
        ips.iter().all(|ip| ip.starts_with("203.0.113.1")),
        "{ips:?}"
    );
}

#[tokio::test]
async fn repeated_failures_throttle_an_account_from_any_ip_and_a_success_resets() {
    let app = spawn_app_with(&[("AUTHD_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let name = unique_name("victim");
    app.register_user(&name).await;
    let from = |ip: &'static str, password: &'static str| {
        let name = name.clone();
        let app = &app;
        async move {
            app.client
                .post(app.url("/token"))
                .header("x-forwarded-for", ip)
                .form(&[("username", name.as_str()), ("password", password)])
                .send()
                .await
                .unwrap()
        }
    };
    // Five wrong passwords, each from another address (a spraying botnet).
    for i in 0..5 {
        let ip = [
            "192.0.2.1",
            "192.0.2.2",
            "192.0.2.3",
            "192.0.2.4",
            "192.0.2.5",
        ][i];
        assert_eq!(
            from(ip, "wrong-password-1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password waits, from a new address.
    let wait = assert_429(from("192.0.2.6", PASSWORD).await).await;
    assert!(wait <= 1, "the first lock is short: {wait}");
    // The lock ends; a success then resets the count.
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(from("192.0.2.6", PASSWORD).await.status(), StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(
            from("192.0.2.7", "wrong-password-1").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from("192.0.2.7", PASSWORD).await.status(),
        StatusCode::OK,
        "reset by the success"
    );
}

#[tokio::test]
async fn the_lock_doubles_and_unknown_names_behave_the_same() {
    let app = spawn_app().await;
    let name = unique_name("known");
    app.register_user(&name).await;
    for login in [name.as_str(), "nobody-by-this-name"] {
        let mut last_wait = 0;
        for failure in 1..=7 {
            if failure > 5 {
                // Wait out the previous lock, then fail again: the next lock is longer.
                app.clock.advance(Duration::from_secs(last_wait));
            }
            let r = app.token(&wrong_login(login)).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{login} failure {failure}"
            );
            if failure >= 5 {
                let wait = assert_429(app.token(&wrong_login(login)).await).await;
                assert!(wait >= last_wait, "{login}: {wait} after {last_wait}");
                last_wait = wait;
            }
        }
        assert_eq!(last_wait, 4, "{login}: the lock grew to {last_wait}");
    }
}

#[tokio::test]
async fn an_address_that_logged_in_before_is_not_exempt_from_the_lock() {
    let app = spawn_app_with(&[("AUTHD_TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    let name = unique_name("owner");
    app.register_user(&name).await;
    let login = |ip: &'static str, password: &'static str| {
        app.client
            .post(app.url("/token"))
            .header("x-forwarded-for", ip)
            .form(&[
                ("username", name.clone()),
                ("password", password.to_owned()),
            ])
            .send()
    };
    assert_eq!(
        login("192.0.2.50", PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );
    // An attacker behind the same address (an office NAT, a carrier NAT, a VPN) locks the
    // name; the address is no key around the lock (a device cookie is: see hardening.rs).
    for _ in 0..8 {
        login("192.0.2.50", "wrong-password-1").await.unwrap();
    }
    assert_429(login("192.0.2.50", PASSWORD).await.unwrap()).await;
}

#[tokio::test]
async fn over_long_passwords_are_refused_without_hashing() {
    let app = spawn_app().await;
    let (name, _) = app.new_session().await;
    let huge = "x".repeat(10_000);
    let r = app
        .token(&[("username", name.as_str()), ("password", huge.as_str())])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app
        .register(&json!({"username": "longpw", "password": "y".repeat(129)}))
        .await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn responses_carry_security_headers() {
    let app = spawn_app().await;
    let (_, pair) = app.new_session().await;
    for r in [
        app.me(&tokens(&pair).0).await,
        app.get("/nope").await,
        app.token(&wrong_login("a")).await,
    ] {
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
    }
    assert_eq!(
        app.get("/.well-known/jwks.json").await.headers()["cache-control"],
        "public, max-age=60"
    );
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, app.url("/token"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_off_by_default_and_allows_only_configured_origins() {
    let app = spawn_app().await;
    let r = preflight(&app, "https://app.example.com").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let app = spawn_app_with(&[("AUTHD_CORS_ORIGINS", "https://app.example.com")]).await;
    let r = preflight(&app, "https://app.example.com").await;
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let r = preflight(&app, "https://evil.example").await;
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn oversized_uris_and_headers_are_refused() {
    let app = spawn_app().await;
    let r = app.get(&format!("/users/me?{}", "a".repeat(3000))).await;
    assert_error(r, StatusCode::URI_TOO_LONG, "uri_too_long").await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .header("x-filler", "b".repeat(9000))
        .send()
        .await
        .unwrap();
    assert_error(
        r,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers_too_large",
    )
    .await;
}

#[tokio::test]
async fn slow_and_idle_connections_are_dropped() {
    let app = spawn_app_with(&[("AUTHD_HEADER_TIMEOUT_SECS", "1")]).await;
    // Slow loris: a request head that never ends.
    let mut slow = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Idle: connects and sends nothing.
    let mut idle = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    for stream in [&mut slow, &mut idle] {
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "the server closed the connection");
        let text = String::from_utf8_lossy(&buf);
        assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    // Ordinary requests still work.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}
