//! A small SMTP server that takes every mail and prints it, to try authd's password-reset
//! and verification mail without a real mail server (the project's tests use it too):
//!
//! ```sh
//! cargo run --example mail_catcher -- 127.0.0.1:2525
//! AUTHD_SMTP_URL=smtp://127.0.0.1:2525 cargo run --release
//! ```
//!
//! It speaks just enough SMTP (RFC 5321) for a client sending over plain TCP: `EHLO`/`HELO`,
//! `AUTH PLAIN` (any name and password are taken, and noted), `MAIL`, `RCPT`, `DATA`,
//! `RSET`, `NOOP`, `QUIT`. No TLS, nothing relayed: never expose it beyond your machine.

use base64::{engine::general_purpose::STANDARD, Engine};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

/// A mail as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The envelope: `MAIL FROM` and each `RCPT TO`, without the angle brackets.
    pub from: String,
    pub to: Vec<String>,
    /// The message (headers and body) with the dot-stuffing undone, lines ending in CRLF.
    pub data: String,
    /// The name and password the client logged in with (`AUTH PLAIN`), if it did.
    pub login: Option<(String, String)>,
}

impl Received {
    /// The value of the first line of the message that starts with `prefix` (such as
    /// `"Token: "`), as it stands in the message.
    pub fn line_after(&self, prefix: &str) -> Option<&str> {
        self.data
            .lines()
            .find_map(|line| line.strip_prefix(prefix))
            .map(str::trim_end)
    }
}

/// Accepts SMTP sessions on `listener` until the task is dropped, handing each mail to
/// `deliver` once the client has sent all of it.
pub async fn serve(listener: TcpListener, deliver: impl Fn(Received) + Clone + Send + 'static) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let deliver = deliver.clone();
        tokio::spawn(async move {
            let _ = session(stream, deliver).await;
        });
    }
}

async fn session(stream: TcpStream, deliver: impl Fn(Received)) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 mail-catcher ESMTP\r\n").await?;
    let mut from = None;
    let mut to = Vec::new();
    let mut login = None;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => b"250-mail-catcher\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
            "AUTH" => match plain_login(command) {
                Some(credentials) => {
                    login = Some(credentials);
                    b"235 authenticated\r\n"
                }
                None => b"504 only AUTH PLAIN with an initial response\r\n",
            },
            "HELO" => b"250 mail-catcher\r\n",
            "MAIL" => {
                from = Some(address(command));
                to.clear();
                b"250 OK\r\n"
            }
            "RCPT" if from.is_some() => {
                to.push(address(command));
                b"250 OK\r\n"
            }
            "DATA" if from.is_some() && !to.is_empty() => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let data = read_data(&mut lines).await?;
                deliver(Received {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                    login: login.clone(),
                });
                b"250 OK: queued\r\n"
            }
            "RCPT" | "DATA" => b"503 bad sequence of commands\r\n",
            "RSET" => {
                from = None;
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// The name and password of `AUTH PLAIN <base64 of "\0name\0password">`.
fn plain_login(command: &str) -> Option<(String, String)> {
    let mut words = command.split_whitespace().skip(1);
    if !words.next()?.eq_ignore_ascii_case("PLAIN") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(words.next()?).ok()?).ok()?;
    let mut parts = decoded.split('\0').skip(1);
    Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
}

/// The address between the angle brackets of `MAIL FROM:<...>` or `RCPT TO:<...>`.
fn address(command: &str) -> String {
    command
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_default()
}

/// The lines of a `DATA` section up to the lone dot, un-dot-stuffed.
async fn read_data(
    lines: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<String> {
    let mut data = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let content = line.trim_end_matches(['\r', '\n']);
        if content == "." {
            return Ok(data);
        }
        data.push_str(content.strip_prefix('.').unwrap_or(content));
        data.push_str("\r\n");
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2525".into());
    let listener = TcpListener::bind(&addr).await?;
    println!("mail-catcher listening on {addr}; set AUTHD_SMTP_URL=smtp://{addr}");
    serve(listener, |mail: Received| {
        let login = match &mail.login {
            Some((name, _)) => format!(" (logged in as {name})"),
            None => String::new(),
        };
        println!(
            "----- mail from <{}> to <{}>{login} -----\n{}",
            mail.from,
            mail.to.join(">, <"),
            mail.data
        );
    })
    .await;
    Ok(())
}
