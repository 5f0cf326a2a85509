//! Password reset and address verification, with a real SMTP conversation over TCP: the
//! mails go to `examples/mail_catcher.rs`, a small SMTP server started by each test.

use std::{net::SocketAddr, time::Duration};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::helpers::*;

#[allow(dead_code)]
#[path = "../../examples/mail_catcher.rs"]
mod catcher;

use catcher::Received;

const PUBLIC_URL: &str = "https://auth.example.test";
const FROM: &str = "authd <auth@example.test>";
const NEW_PASSWORD: &str = "a completely different passphrase";

/// An SMTP server for one test, and the mails it received.
struct MailBox {
    addr: SocketAddr,
    mails: mpsc::UnboundedReceiver<Received>,
    server: tokio::task::JoinHandle<()>,
}

impl MailBox {
    async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mails) = mpsc::unbounded_channel();
        let server = tokio::spawn(catcher::serve(listener, move |mail| {
            let _ = tx.send(mail);
        }));
        Self {
            addr,
            mails,
            server,
        }
    }

    /// The next mail, within 20 s.
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(20), self.mails.recv())
            .await
            .expect("a mail arrives")
            .expect("the server runs")
    }

    /// Asserts that no further mail arrives within `wait`.
    async fn nothing_more(&mut self, wait: Duration) {
        if let Ok(Some(mail)) = tokio::time::timeout(wait, self.mails.recv()).await {
            panic!("an unexpected mail arrived: {}", mail.data);
        }
    }
}

impl Drop for MailBox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn smtp_url(addr: SocketAddr) -> String {
    format!("smtp://{addr}")
}

/// An app that mails through `mailbox`, with `extra` settings.
async fn mailing_app(mailbox: &MailBox, extra: &[(&str, &str)]) -> TestApp {
    let url = smtp_url(mailbox.addr);
    let mut settings = vec![
        ("AUTHD_SMTP_URL", url.as_str()),
        ("AUTHD_MAIL_FROM", FROM),
        ("AUTHD_PUBLIC_URL", PUBLIC_URL),
    ];
    settings.extend_from_slice(extra);
    spawn_app_with(&settings).await
}

/// The token of a mail, from its `Token:` line; checks it is also in the link.
fn token_of(mail: &Received, page: &str) -> String {
    let token = mail
        .line_after("Token: ")
        .expect("a Token: line")
        .to_owned();
    assert_eq!(token.len(), 43, "256 bits in base64url: {token}");
    // The link line may be wrapped by the quoted-printable encoding: unwrap it first.
    let unwrapped = mail.data.replace("=\r\n", "").replace("=3D", "=");
    assert!(
        unwrapped.contains(&format!("{PUBLIC_URL}/{page}?token={token}")),
        "{}",
        mail.data
    );
    token
}

/// The attempts of the one outbox row matching `filter`, polled until there are `at_least`
/// (or 10 s have passed).
async fn attempts_until(app: &TestApp, filter: &str, at_least: i64) -> i64 {
    let sql = format!("SELECT attempts FROM mail_outbox WHERE {filter}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempts: Vec<i64> = app.db.query_column(&sql).await;
        assert!(attempts.len() <= 1, "{attempts:?}");
        let n = attempts.first().copied().unwrap_or(0);
        if n >= at_least || tokio::time::Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn register_with_email(app: &TestApp, name: &str, email: &str) -> Value {
    let r = app
        .register(&json!({"username": name, "password": PASSWORD, "email": email}))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json().await.unwrap()
}

async fn ask_reset(app: &TestApp, email: &str) {
    let r = app
        .post_json("/auth/password-reset", &json!({ "email": email }))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/auth/password-reset/confirm",
        &json!({"token": token, "new_password": password}),
    )
    .await
}

async fn event_types(app: &TestApp, access: &str) -> Vec<String> {
    let r = app
        .client
        .get(app.url("/users/me/events"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap();
    let events: Vec<Value> = r.json().await.unwrap();
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_password_reset_goes_by_mail_and_ends_every_session() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[]).await;
    let name = unique_name("reset");
    let user = register_with_email(&app, &name, "Reset.Me@example.test").await;
    assert_eq!(user["email_verified"], false);
    let verification = mailbox.next().await;
    assert_eq!(verification.to, ["Reset.Me@example.test"]);
    let (access, refresh) = tokens(&app.login(&name, PASSWORD).await);

    // The address in other case is the same address.
    ask_reset(&app, "reset.me@EXAMPLE.test").await;
    let mail = mailbox.next().await;
    assert_eq!(mail.from, "auth@example.test");
    assert_eq!(mail.to, ["Reset.Me@example.test"]);
    assert!(
        mail.data.contains("From: authd <auth@example.test>"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Subject: Reset your password"));
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    let token = token_of(&mail, "reset-password");

    // A password the policy refuses does not use the token up.
    let r = confirm_reset(&app, &token, "password").await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["fields"][0]["field"], "new_password");
    let r = confirm_reset(&app, &token, &name).await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // Every session ended: its access token and its refresh token are refused at once.
    assert_eq!(app.me(&access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.refresh(&refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // The old password is gone, the new one works.
    let r = app
        .token(&[("username", &name), ("password", PASSWORD)])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (access, _) = tokens(&app.login(&name, NEW_PASSWORD).await);

    // Single use.
    let r = confirm_reset(&app, &token, "yet another fine passphrase").await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;
    let r = confirm_reset(&app, "not-a-token", "yet another fine passphrase").await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;

    let events = event_types(&app, &access).await;
    let at = |kind: &str| events.iter().position(|e| e == kind);
    assert!(
        at("password_reset") < at("password_reset_requested"),
        "{events:?}"
    );
    assert!(at("password_reset").is_some(), "{events:?}");

    // The token is stored only as a hash.
    let stored: Vec<Vec<u8>> = app
        .db
        .query_column("SELECT token_hash FROM email_tokens")
        .await;
    assert!(stored.iter().all(|h| h.len() == 32));
    mailbox.nothing_more(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_newer_reset_token_voids_the_older_and_unknown_addresses_get_no_mail() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[]).await;
    let name = unique_name("twice");
    register_with_email(&app, &name, "twice@example.test").await;
    mailbox.next().await; // verification

    // An unknown address: the same answer, and no mail.
    ask_reset(&app, "nobody@example.test").await;
    ask_reset(&app, "twice@example.test").await;
    let first = mailbox.next().await;
    assert_eq!(first.to, ["twice@example.test"]);
    ask_reset(&app, "twice@example.test").await;
    let second = mailbox.next().await;
    assert_eq!(second.to, ["twice@example.test"]);
    let (older, newer) = (
        token_of(&first, "reset-password"),
        token_of(&second, "reset-password"),
    );
    assert_ne!(older, newer);
    let r = confirm_reset(&app, &older, NEW_PASSWORD).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;
    assert_eq!(
        confirm_reset(&app, &newer, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    mailbox.nothing_more(Duration::from_millis(500)).await;

    // A password change voids outstanding reset tokens too.
    ask_reset(&app, "twice@example.test").await;
    let pending = token_of(&mailbox.next().await, "reset-password");
    let (access, _) = tokens(&app.login(&name, NEW_PASSWORD).await);
    let r = app
        .client
        .post(app.url("/users/me/password"))
        .bearer_auth(&access)
        .json(
            &json!({"current_password": NEW_PASSWORD, "new_password": "one more good passphrase"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = confirm_reset(&app, &pending, NEW_PASSWORD).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;
}

#[tokio::test]
async fn an_address_gets_at_most_three_mails_of_a_kind_an_hour() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[]).await;
    let name = unique_name("capped");
    register_with_email(&app, &name, "capped@example.test").await;
    mailbox.next().await; // a verification: another kind, its own count

    let mut last = String::new();
    for _ in 0..3 {
        ask_reset(&app, "capped@example.test").await;
        last = token_of(&mailbox.next().await, "reset-password");
    }
    ask_reset(&app, "capped@example.test").await;
    ask_reset(&app, "capped@example.test").await;
    mailbox.nothing_more(Duration::from_millis(700)).await;
    // Held-back requests made no token: the last mailed one is still good.
    assert_eq!(
        confirm_reset(&app, &last, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );

    // An hour later the address may get mail again.
    app.clock.advance(Duration::from_secs(3601));
    ask_reset(&app, "capped@example.test").await;
    assert_eq!(mailbox.next().await.to, ["capped@example.test"]);
}

#[tokio::test]
async fn verification_marks_the_address_and_gates_logins_when_asked() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[("AUTHD_REQUIRE_VERIFIED_EMAIL", "true")]).await;
    let name = unique_name("verify");
    register_with_email(&app, &name, "verify@example.test").await;
    let mail = mailbox.next().await;
    assert_eq!(mail.to, ["verify@example.test"]);
    assert!(mail.data.contains("Subject: Confirm your e-mail address"));
    let token = token_of(&mail, "verify-email");

    // Unverified: a right password gets 403, a wrong one still 401 (400 at /token).
    let r = app
        .token(&[("username", &name), ("password", PASSWORD)])
        .await;
    let body = assert_error(r, StatusCode::FORBIDDEN, "email_not_verified").await;
    assert!(body["error_description"].is_string());
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": name, "password": PASSWORD}),
        )
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "email_not_verified").await;
    let r = app
        .post_json(
            "/auth/login",
            &json!({"username": name, "password": "wrong password here"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let r = app
        .post_json("/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .post_json("/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;

    let (access, _) = tokens(&app.login(&name, PASSWORD).await);
    let me: Value = app.me(&access).await.json().await.unwrap();
    assert_eq!(me["email_verified"], true);
    assert!(event_types(&app, &access)
        .await
        .contains(&"email_verified".to_owned()));
    let r = app.post_bearer("/users/me/email/verify", &access).await;
    assert_error(r, StatusCode::CONFLICT, "already_verified").await;

    // A new address is not verified, and gets its own mail; the old address's token is void.
    let r = app
        .client
        .patch(app.url("/users/me"))
        .bearer_auth(&access)
        .json(&json!({"email": "moved@example.test"}))
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["email_verified"], false);
    let moved = mailbox.next().await;
    assert_eq!(moved.to, ["moved@example.test"]);
    let moved_token = token_of(&moved, "verify-email");

    let r = app.post_bearer("/users/me/email/verify", &access).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again = mailbox.next().await;
    assert_eq!(again.to, ["moved@example.test"]);
    let again_token = token_of(&again, "verify-email");
    assert_ne!(again_token, moved_token);

    // Back to another address before using the token: it verified the one it was sent to.
    let r = app
        .client
        .patch(app.url("/users/me"))
        .bearer_auth(&access)
        .json(&json!({"email": "third@example.test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    mailbox.next().await;
    let r = app
        .post_json("/auth/verify-email", &json!({ "token": again_token }))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;

    // No address at all: nothing to verify, and no login under the gate.
    let bare = unique_name("bare");
    app.register_user(&bare).await;
    let r = app
        .token(&[("username", &bare), ("password", PASSWORD)])
        .await;
    assert_error(r, StatusCode::FORBIDDEN, "email_not_verified").await;
}

#[tokio::test]
async fn verification_tokens_expire_after_a_day() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[]).await;
    let name = unique_name("late");
    register_with_email(&app, &name, "late@example.test").await;
    let token = token_of(&mailbox.next().await, "verify-email");
    let (access, _) = tokens(&app.login(&name, PASSWORD).await);
    let r = app.post_bearer("/users/me/email/verify", &access).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let fresh = token_of(&mailbox.next().await, "verify-email");

    app.clock.advance(Duration::from_secs(24 * 3600 + 1));
    let r = app
        .post_json("/auth/verify-email", &json!({ "token": token }))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;
    let r = app
        .post_json("/auth/verify-email", &json!({ "token": fresh }))
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;

    // Reset tokens last 30 minutes.
    ask_reset(&app, "late@example.test").await;
    let reset = token_of(&mailbox.next().await, "reset-password");
    app.clock.advance(Duration::from_secs(30 * 60 + 1));
    let r = confirm_reset(&app, &reset, NEW_PASSWORD).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;

    // Housekeeping deletes expired tokens, and mails once they are two days old.
    let pruned = app.auth.housekeeping().await.unwrap();
    assert_eq!((pruned.email_tokens, pruned.mails), (3, 0));
    app.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let pruned = app.auth.housekeeping().await.unwrap();
    assert_eq!(pruned.mails, 3);
    let left: Vec<i64> = app
        .db
        .query_column("SELECT COUNT(*) FROM mail_outbox")
        .await;
    assert_eq!(left, [0]);
}

#[tokio::test]
async fn tls_modes_never_fall_back_to_plain_text() {
    // A server that offers neither STARTTLS nor TLS: a mail for `?tls=starttls` or
    // `smtps://` must not be sent to it in clear.
    let mut mailbox = MailBox::start().await;
    for url in [
        format!("smtp://{}?tls=starttls", mailbox.addr),
        format!("smtps://{}", mailbox.addr),
    ] {
        let app = spawn_app_with(&[("AUTHD_SMTP_URL", url.as_str())]).await;
        register_with_email(&app, &unique_name("tls"), "tls@example.test").await;
        let attempts = attempts_until(&app, "sent_at IS NULL", 1).await;
        assert!(attempts >= 1, "{url}: tried, not sent");
        app.stop().await;
    }
    mailbox.nothing_more(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn without_smtp_the_mail_endpoints_answer_503_and_nothing_else_changes() {
    let app = spawn_app().await;
    let name = unique_name("nomail");
    let user = register_with_email(&app, &name, "nomail@example.test").await;
    assert_eq!(user["email_verified"], false);
    let (access, _) = tokens(&app.login(&name, PASSWORD).await);

    let r = app
        .post_json(
            "/auth/password-reset",
            &json!({"email": "nomail@example.test"}),
        )
        .await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "email_unavailable").await;
    let r = app
        .post_json(
            "/auth/password-reset/confirm",
            &json!({"token": "x".repeat(43), "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "email_unavailable").await;
    let r = app
        .post_json("/auth/verify-email", &json!({"token": "x".repeat(43)}))
        .await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "email_unavailable").await;
    // The credential is checked first.
    let r = app.post_json("/users/me/email/verify", &json!({})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = app.post_bearer("/users/me/email/verify", &access).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "email_unavailable").await;

    let queued: Vec<i64> = app
        .db
        .query_column("SELECT COUNT(*) FROM mail_outbox")
        .await;
    assert_eq!(queued, [0], "registration queued no mail");
}

#[tokio::test]
async fn bad_requests_get_422() {
    let mut mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[]).await;
    let r = app
        .post_json("/auth/password-reset", &json!({"email": "not an address"}))
        .await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["fields"][0]["field"], "email");
    let r = app
        .post_json("/auth/password-reset/confirm", &json!({}))
        .await;
    let body = assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["fields"].as_array().unwrap().len(), 2);
    let r = app.post_json("/auth/verify-email", &json!({})).await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let (_, pair) = app.new_session().await;
    let r = app
        .post_bearer(
            "/users/me/email/verify",
            pair["access_token"].as_str().unwrap(),
        )
        .await;
    assert_error(r, StatusCode::UNPROCESSABLE_ENTITY, "no_email").await;
    mailbox.nothing_more(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_mail_asked_while_smtp_is_down_arrives_once_after_a_restart() {
    // A port with nothing listening: the SMTP server is down.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let url = smtp_url(addr);
    let settings = [
        ("AUTHD_SMTP_URL", url.as_str()),
        ("AUTHD_MAIL_FROM", FROM),
        ("AUTHD_PUBLIC_URL", PUBLIC_URL),
    ];
    let app = spawn_app_with(&settings).await;
    let name = unique_name("outage");
    register_with_email(&app, &name, "outage@example.test").await;
    ask_reset(&app, "outage@example.test").await;
    // The request did not wait for SMTP; attempts fail meanwhile, and are retried.
    let attempts = attempts_until(&app, "purpose = 'reset'", 2).await;
    assert!(attempts >= 2, "retried while down: {attempts}");
    let db = app.db.clone();
    app.stop().await;

    // The server comes back, and two replicas start on the database.
    let mut mailbox = MailBox::start_on(addr).await;
    let first = spawn_app_on(db.clone(), &settings).await;
    let second = spawn_app_on(db, &settings).await;
    let mut reset = None;
    for _ in 0..2 {
        let mail = mailbox.next().await;
        if mail.data.contains("Subject: Reset your password") {
            assert!(reset.is_none(), "the reset mail arrived twice");
            reset = Some(token_of(&mail, "reset-password"));
        }
    }
    // Longer than a sender's poll: neither replica sends it again.
    mailbox.nothing_more(Duration::from_millis(1500)).await;
    let token = reset.expect("the reset mail arrived");
    assert_eq!(
        confirm_reset(&second, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    first.login(&name, NEW_PASSWORD).await;
}

#[tokio::test]
async fn the_server_logs_in_to_smtp_and_no_token_or_smtp_password_reaches_the_log() {
    let mut mailbox = MailBox::start().await;
    let db = TestDb::new().await;
    let smtp = format!("smtp://mailer:s3cret-pass@{}", mailbox.addr);
    let (mut child, base, mut stderr) = crate::operations::start_binary_with(
        &db,
        "debug",
        &[
            ("AUTHD_SMTP_URL", smtp.as_str()),
            ("AUTHD_MAIL_FROM", FROM),
            ("AUTHD_PUBLIC_URL", PUBLIC_URL),
            ("AUTHD_LOGIN_RATE_PER_MIN", "0"),
        ],
    );
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client.post(format!("{base}{path}")).json(&body);
        async move { request.send().await.unwrap() }
    };
    let name = unique_name("logged");
    let r = post(
        "/users",
        json!({"username": name, "password": PASSWORD, "email": "logged@example.test"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let verification = mailbox.next().await;
    assert_eq!(
        verification.login,
        Some(("mailer".to_owned(), "s3cret-pass".to_owned())),
        "the URL's credentials log in to the SMTP server"
    );
    let verify_token = token_of(&verification, "verify-email");
    let r = post("/auth/verify-email", json!({ "token": verify_token })).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = post(
        "/auth/password-reset",
        json!({"email": "logged@example.test"}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let reset_token = token_of(&mailbox.next().await, "reset-password");
    let r = post(
        "/auth/password-reset/confirm",
        json!({"token": reset_token, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    crate::operations::sigterm(&child);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut log).unwrap();
    assert!(log.contains("mail sent"), "{log}");
    for secret in [
        verify_token.as_str(),
        reset_token.as_str(),
        "s3cret-pass",
        NEW_PASSWORD,
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn reset_requests_share_the_per_ip_limit_of_the_credential_endpoints() {
    let mailbox = MailBox::start().await;
    let app = mailing_app(&mailbox, &[("AUTHD_LOGIN_RATE_PER_MIN", "3")]).await;
    let r = app
        .token(&[("username", "someone"), ("password", "wrong password")])
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    ask_reset(&app, "someone@example.test").await;
    let r = confirm_reset(&app, &"A".repeat(43), NEW_PASSWORD).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_token").await;
    let r = app
        .post_json(
            "/auth/password-reset",
            &json!({"email": "someone@example.test"}),
        )
        .await;
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}
