//! Mail out: the SMTP transport (`AUTHD_SMTP_URL`, through lettre) and the two mails authd
//! writes. Which mail goes when, and their retries, are the outbox's business
//! ([`crate::service::outbox`]); this module only writes and hands over one message.

use std::time::Duration;

use lettre::{
    message::{Mailbox, MultiPart},
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{auth::email_token::EmailToken, domain::MailPurpose};

/// How long one SMTP conversation step may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The SMTP transport and what every mail carries: its sender and the base of its links.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
    /// The host of the public URL: the right-hand side of the mails' `Message-ID`.
    host: String,
}

/// What a mail says.
struct Content {
    subject: &'static str,
    text: String,
    html: String,
}

/// Why a mail was not handed over.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The server refused it for good (a `5xx`: an unknown recipient, a refused sender), or
    /// the recipient is not an address a mail can be written to: retrying cannot help.
    #[error("refused: {0}")]
    Permanent(String),
    /// The server is unreachable, timed out, or answered `4xx`: worth retrying.
    #[error("not sent: {0}")]
    Transient(String),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The transport holds the SMTP credentials.
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// Checks an `AUTHD_SMTP_URL`: `smtp://host[:port]` (plain), `smtp://...?tls=starttls` (or
/// lettre's own `tls=required`, and `tls=opportunistic`), `smtps://` (TLS from the first
/// byte), each with optional `user:password@`. The error never repeats the URL, which may
/// hold a password.
pub fn check_smtp_url(url: &SecretString) -> Result<(), String> {
    transport(url).map(drop)
}

fn transport(url: &SecretString) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut parsed = url::Url::parse(url.expose_secret())
        .map_err(|e| format!("is not a URL like smtp://mail.example.com:587?tls=starttls ({e})"))?;
    // `starttls` is the name people look for; lettre calls it `required`.
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| match (k.as_ref(), v.as_ref()) {
            ("tls", "starttls") => (k.into_owned(), "required".to_owned()),
            _ => (k.into_owned(), v.into_owned()),
        })
        .collect();
    if pairs.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    if !matches!(parsed.scheme(), "smtp" | "smtps") {
        return Err("must start with smtp:// or smtps://".into());
    }
    AsyncSmtpTransport::<Tokio1Executor>::from_url(parsed.as_str())
        .map(|builder| builder.timeout(Some(SMTP_TIMEOUT)).build())
        .map_err(|_| {
            "is not an SMTP URL authd can use: smtp://host[:port], smtps://host[:port], \
             with ?tls=starttls or ?tls=opportunistic on smtp://"
                .into()
        })
}

/// Checks an `AUTHD_MAIL_FROM`: an address, with or without a display name
/// (`authd <auth@example.com>`).
pub fn check_mail_from(from: &str) -> Result<(), String> {
    from.parse::<Mailbox>()
        .map(drop)
        .map_err(|_| format!("{from:?} is not an address like \"authd <auth@example.com>\""))
}

impl Mailer {
    /// A mailer for checked settings (see [`check_smtp_url`] and [`check_mail_from`]); links
    /// start with `public_url`.
    pub fn new(smtp_url: &SecretString, from: &str, public_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            transport: transport(smtp_url).map_err(|e| anyhow::anyhow!("AUTHD_SMTP_URL {e}"))?,
            from: from
                .parse()
                .map_err(|_| anyhow::anyhow!("AUTHD_MAIL_FROM is not an address"))?,
            public_url: public_url.trim_end_matches('/').to_owned(),
            host: url::Url::parse(public_url)
                .ok()
                .and_then(|url| url.host_str().map(str::to_owned))
                .unwrap_or_else(|| "localhost".into()),
        })
    }

    /// The mail `id` of `purpose` to `to`, carrying `token` in a link and on a line of its
    /// own. Its `Message-ID` comes from `id`, so that a mail sent again (its sender died
    /// before recording it sent) is the same message to the recipient's client.
    pub fn message(
        &self,
        id: uuid::Uuid,
        purpose: MailPurpose,
        to: &str,
        token: &EmailToken,
    ) -> Result<Message, SendError> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| SendError::Permanent("the recipient is not a mailbox address".into()))?;
        let content = self.content(purpose, &token.encode());
        Message::builder()
            .message_id(Some(format!("<{}@{}>", id.simple(), self.host)))
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))
            .map_err(|e| SendError::Permanent(e.to_string()))
    }

    /// The subject and the two bodies of a mail of `purpose` with `token`.
    fn content(&self, purpose: MailPurpose, token: &str) -> Content {
        let (subject, page, intro, within, outro) = match purpose {
            MailPurpose::PasswordReset => (
                "Reset your password",
                "reset-password",
                "Someone, we hope you, asked to reset the password of your account. \
                 To choose a new one, open this link",
                "within 30 minutes",
                "If you did not ask for this, ignore this mail: your password stays as it is.",
            ),
            MailPurpose::Verification => (
                "Confirm your e-mail address",
                "verify-email",
                "To confirm that this address is yours, open this link",
                "within 24 hours",
                "If you did not give this address to an account, ignore this mail.",
            ),
        };
        let link = format!("{}/{page}?token={token}", self.public_url);
        let text = format!(
            "{intro} {within}:\n\n{link}\n\nOr give this token to the application:\n\nToken: {token}\n\n{outro}\n"
        );
        let html = format!(
            "<!doctype html>\n<html><body>\n<p>{intro} {within}:</p>\n\
             <p><a href=\"{link}\">{link}</a></p>\n\
             <p>Or give this token to the application:</p>\n<p><code>{token}</code></p>\n\
             <p>{outro}</p>\n</body></html>\n",
            link = html_escape(&link),
            token = html_escape(token),
        );
        Content {
            subject,
            text,
            html,
        }
    }

    /// Hands `message` to the SMTP server.
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
            Err(e) => Err(SendError::Transient(e.to_string())),
        }
    }
}

/// `text` with the characters that mean something in HTML escaped.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::email_token::EmailTokenKey;

    fn secret(url: &str) -> SecretString {
        SecretString::from(url.to_owned())
    }

    #[test]
    fn smtp_urls_of_every_kind_are_taken_and_others_refused() {
        for url in [
            "smtp://localhost:2525",
            "smtp://mail.example.com?tls=starttls",
            "smtp://user:pass@mail.example.com:587?tls=required",
            "smtp://mail.example.com?tls=opportunistic",
            "smtps://user:p%40ss@mail.example.com:465",
        ] {
            assert_eq!(check_smtp_url(&secret(url)), Ok(()), "{url}");
        }
        for url in [
            "mail.example.com",
            "http://mail.example.com",
            "smtp://mail.example.com?tls=sometimes",
            "smtp://",
        ] {
            let err = check_smtp_url(&secret(url)).unwrap_err();
            assert!(!err.contains("pass"), "{err}");
        }
        let err = check_smtp_url(&secret("smtps://user:hunter2@/x")).unwrap_err();
        assert!(
            !err.contains("hunter2"),
            "the password is never repeated: {err}"
        );
    }

    #[test]
    fn a_mail_carries_its_token_in_a_link_and_on_its_own_line() {
        let mailer = Mailer::new(
            &secret("smtp://localhost:2525"),
            "authd <auth@example.com>",
            "https://auth.example.com/",
        )
        .unwrap();
        let token = EmailTokenKey::from_bytes(&[3; 32])
            .unwrap()
            .token(uuid::Uuid::new_v4());
        let text = token.encode();
        let id = uuid::Uuid::new_v4();
        let message = mailer
            .message(id, MailPurpose::PasswordReset, "bob@example.com", &token)
            .unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(raw.contains("From: authd <auth@example.com>"), "{raw}");
        assert!(raw.contains("To: bob@example.com"), "{raw}");
        assert!(
            raw.contains(&format!("Message-ID: <{}@auth.example.com>", id.simple())),
            "{raw}"
        );
        assert!(raw.contains("Subject: Reset your password"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/html"), "{raw}");
        // A short line: no transfer encoding breaks it.
        assert!(raw.contains(&format!("Token: {text}")), "{raw}");

        let reset = mailer.content(MailPurpose::PasswordReset, &text);
        let link = format!("https://auth.example.com/reset-password?token={text}");
        assert!(
            reset.text.contains(&format!("\n{link}\n")),
            "{}",
            reset.text
        );
        assert!(reset.text.contains(&format!("\nToken: {text}\n")));
        assert!(
            reset.html.contains(&format!("<a href=\"{link}\">")),
            "{}",
            reset.html
        );
        let verify = mailer.content(MailPurpose::Verification, &text);
        assert_eq!(verify.subject, "Confirm your e-mail address");
        assert!(verify.text.contains(&format!(
            "https://auth.example.com/verify-email?token={text}"
        )));

        assert!(matches!(
            mailer.message(id, MailPurpose::Verification, "not an address", &token),
            Err(SendError::Permanent(_))
        ));
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
