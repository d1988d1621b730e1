//! A lean Socket.IO v4 client over WebSocket: just enough Engine.IO and Socket.IO to
//! connect to a namespace with an `auth` payload, answer pings, send events with acks and
//! pick a few fields out of the frames it receives, without parsing JSON.
//!
//! The edge's integration tests and the load generator (`loadtest`, which re-exports it as
//! `loadtest::sio`) drive the edge with it.
//!
//! Each connection is one `tokio-tungstenite` stream with a 4 KiB read buffer and no
//! write buffering, so holding tens of thousands of them costs little memory.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Microseconds since the epoch (the wall clock: timings are differences of two readings).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub type Ws = WebSocketStream<TcpStream>;

/// Where to connect: the Socket.IO URL `http://host:port/namespace` taken apart.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `host:port` as given, for the `Host` header.
    pub authority: String,
    /// The namespace, e.g. `/demo`.
    pub nsp: String,
    /// `http://host:port`, for the HTTP endpoints next to Socket.IO (tickets).
    pub http_base: String,
}

impl Endpoint {
    /// Parses `http://host:port/ns` (also `ws://`; no TLS: the generator targets this machine).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .with_context(|| format!("{url}: only http:// or ws:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = path.trim_end_matches('/');
        let nsp = if path.is_empty() { "/".to_string() } else { path.to_string() };
        let addr = authority
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .find(SocketAddr::is_ipv4)
            .with_context(|| format!("{url}: {authority} has no IPv4 address"))?;
        Ok(Endpoint { addr, authority: authority.to_string(), nsp, http_base: format!("http://{authority}") })
    }

    /// The tenant: the namespace without its slash.
    pub fn tenant(&self) -> &str {
        self.nsp.trim_start_matches('/')
    }

    /// What comes after the packet type in every packet of this namespace.
    pub fn prefix(&self) -> String {
        if self.nsp == "/" { String::new() } else { format!("{},", self.nsp) }
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
}

/// Why a connection attempt failed; `code()` is the key it is counted under.
#[derive(Debug)]
pub enum Fail {
    Tcp(std::io::Error),
    Ws(String),
    /// The server refused the CONNECT with this SPEC code.
    Refused(String),
    Timeout,
    Closed,
    Protocol(String),
}

impl Fail {
    pub fn code(&self) -> String {
        match self {
            Fail::Tcp(e) => match e.kind() {
                std::io::ErrorKind::ConnectionRefused => "tcp_refused".into(),
                std::io::ErrorKind::AddrInUse | std::io::ErrorKind::AddrNotAvailable => {
                    "tcp_no_source_port".into()
                }
                _ if e.raw_os_error() == Some(24) => "tcp_too_many_open_files".into(),
                _ => "tcp_error".into(),
            },
            Fail::Ws(_) => "ws_handshake_failed".into(),
            Fail::Refused(c) => c.clone(),
            Fail::Timeout => "timeout".into(),
            Fail::Closed => "closed_during_handshake".into(),
            Fail::Protocol(_) => "protocol_error".into(),
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Tcp(e) => write!(f, "tcp: {e}"),
            Fail::Ws(e) => write!(f, "websocket: {e}"),
            Fail::Refused(c) => write!(f, "refused: {c}"),
            Fail::Timeout => write!(f, "timed out"),
            Fail::Closed => write!(f, "closed during the handshake"),
            Fail::Protocol(e) => write!(f, "protocol: {e}"),
        }
    }
}

/// A connected socket in one namespace.
pub struct Conn {
    pub ws: Ws,
    pub prefix: String,
    pub session_id: String,
    pub recovered: bool,
    next_ack: u64,
}

/// How long the steps of a handshake took, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From the TCP connect to the Socket.IO CONNECT acknowledgement.
    pub connect_us: u64,
}

/// Opens a WebSocket to `ep`, optionally from source address `src`, and connects to the
/// namespace with `auth` (a JSON object), then waits for the `session` event.
pub async fn connect(
    ep: &Endpoint,
    src: Option<IpAddr>,
    auth: &str,
    timeout: Duration,
) -> Result<(Conn, Timing), Fail> {
    match tokio::time::timeout(timeout, connect_inner(ep, src, auth)).await {
        Ok(r) => r,
        Err(_) => Err(Fail::Timeout),
    }
}

async fn connect_inner(ep: &Endpoint, src: Option<IpAddr>, auth: &str) -> Result<(Conn, Timing), Fail> {
    let t0 = now_us();
    let sock = TcpSocket::new_v4().map_err(Fail::Tcp)?;
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0)).map_err(Fail::Tcp)?;
    }
    let stream = sock.connect(ep.addr).await.map_err(Fail::Tcp)?;
    stream.set_nodelay(true).map_err(Fail::Tcp)?;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", ep.authority);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(|e| Fail::Ws(e.to_string()))?;
    let prefix = ep.prefix();
    // Engine.IO open packet.
    loop {
        let t = next_text(&mut ws).await?;
        if t.starts_with('0') {
            break;
        }
    }
    ws.send(Message::text(format!("40{prefix}{auth}"))).await.map_err(|e| Fail::Ws(e.to_string()))?;
    let mut connect_us = 0;
    loop {
        let t = next_text(&mut ws).await?;
        match parse(&t, &prefix) {
            Packet::Ping => {
                ws.send(Message::text("3")).await.map_err(|e| Fail::Ws(e.to_string()))?;
            }
            Packet::Connect(_) => connect_us = now_us().saturating_sub(t0),
            Packet::ConnectError(body) => {
                return Err(Fail::Refused(str_field(body, "message").unwrap_or("unknown").to_string()));
            }
            Packet::Event { name: "session", rest, .. } => {
                if connect_us == 0 {
                    return Err(Fail::Protocol("session before CONNECT".into()));
                }
                let session_id = str_field(rest, "id").unwrap_or_default().to_string();
                let recovered = rest.contains("\"recovered\":true");
                return Ok((Conn { ws, prefix, session_id, recovered, next_ack: 0 }, Timing { connect_us }));
            }
            Packet::Close | Packet::Disconnect => return Err(Fail::Closed),
            _ => {}
        }
    }
}

async fn next_text(ws: &mut Ws) -> Result<String, Fail> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(_))) | None => return Err(Fail::Closed),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(Fail::Ws(e.to_string())),
        }
    }
}

impl Conn {
    /// Sends `["event", payload]` with an ack id and returns that id.
    pub async fn emit_with_ack(&mut self, event: &str, payload: &str) -> anyhow::Result<u64> {
        self.next_ack += 1;
        let id = self.next_ack;
        let frame = format!("42{}{id}[\"{event}\",{payload}]", self.prefix);
        self.ws.send(Message::text(frame)).await?;
        Ok(id)
    }

    pub async fn pong(&mut self) -> anyhow::Result<()> {
        self.ws.send(Message::text("3")).await?;
        Ok(())
    }

    /// The next text frame; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Some(t.to_string()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Leaves the namespace and closes the WebSocket politely.
    pub async fn close(mut self) {
        let _ = self.ws.send(Message::text(format!("41{}", self.prefix))).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// One received frame, borrowed from its text.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Open,
    Close,
    Ping,
    Pong,
    /// Socket.IO CONNECT acknowledgement (the JSON after the namespace).
    Connect(&'a str),
    ConnectError(&'a str),
    Disconnect,
    /// An event; `rest` is everything after the event name's closing quote.
    Event {
        ack: Option<u64>,
        name: &'a str,
        rest: &'a str,
    },
    Ack {
        id: u64,
        body: &'a str,
    },
    Other,
}

/// Parses one Engine.IO text frame for the namespace whose `prefix` is `/ns,`.
pub fn parse<'a>(text: &'a str, prefix: &str) -> Packet<'a> {
    let b = text.as_bytes();
    match b.first() {
        Some(b'0') => return Packet::Open,
        Some(b'1') => return Packet::Close,
        Some(b'2') => return Packet::Ping,
        Some(b'3') => return Packet::Pong,
        Some(b'4') => {}
        _ => return Packet::Other,
    }
    let Some(kind) = b.get(1) else { return Packet::Other };
    let mut rest = &text[2..];
    if !prefix.is_empty() {
        match rest.strip_prefix(prefix) {
            Some(r) => rest = r,
            // `41/demo` may come without the trailing comma.
            None if *kind == b'1' && rest == prefix.trim_end_matches(',') => rest = "",
            None => return Packet::Other,
        }
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack = if digits > 0 { rest[..digits].parse().ok() } else { None };
    let body = &rest[digits..];
    match kind {
        b'0' => Packet::Connect(body),
        b'1' => Packet::Disconnect,
        b'4' => Packet::ConnectError(body),
        b'3' => match ack {
            Some(id) => Packet::Ack { id, body },
            None => Packet::Other,
        },
        b'2' => {
            let Some(after) = body.strip_prefix("[\"") else { return Packet::Other };
            let Some(end) = after.find('"') else { return Packet::Other };
            Packet::Event { ack, name: &after[..end], rest: &after[end + 1..] }
        }
        _ => Packet::Other,
    }
}

/// The unsigned integer after `"key":` (the first occurrence).
pub fn num_field(s: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let i = s.find(&pat)? + pat.len();
    let digits: &str = {
        let t = &s[i..];
        let t = t.trim_start();
        let n = t.bytes().take_while(u8::is_ascii_digit).count();
        &t[..n]
    };
    digits.parse().ok()
}

/// The string after `"key":"` up to the next quote (no escapes: enough for codes and ids).
pub fn str_field<'a>(s: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":\"");
    let i = s.find(&pat)? + pat.len();
    let end = s[i..].find('"')?;
    Some(&s[i..i + end])
}

/// Fetches a single-use ticket from the edge with a token (SPEC 3.3).
pub async fn fetch_ticket(http: &reqwest::Client, ep: &Endpoint, token: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{}/v1/tickets", ep.http_base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("ticket request: HTTP {status}: {body}");
    }
    str_field(&body, "ticket").map(str::to_string).context("ticket response without a ticket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frames() {
        let p = "/demo,";
        assert_eq!(parse("2", p), Packet::Ping);
        assert_eq!(parse("0{\"sid\":\"x\"}", p), Packet::Open);
        assert_eq!(parse("40/demo,{\"sid\":\"a\"}", p), Packet::Connect("{\"sid\":\"a\"}"));
        assert_eq!(
            parse("44/demo,{\"message\":\"invalid_token\"}", p),
            Packet::ConnectError("{\"message\":\"invalid_token\"}")
        );
        assert_eq!(parse("43/demo,12[{\"ok\":true}]", p), Packet::Ack { id: 12, body: "[{\"ok\":true}]" });
        assert_eq!(
            parse("42/demo,[\"lt\",{\"p\":1,\"s\":5,\"t\":99},{\"room\":\"r\"}]", p),
            Packet::Event { ack: None, name: "lt", rest: ",{\"p\":1,\"s\":5,\"t\":99},{\"room\":\"r\"}]" }
        );
        assert_eq!(parse("41/demo,", p), Packet::Disconnect);
        assert_eq!(parse("41/demo", p), Packet::Disconnect);
        assert_eq!(parse("42/other,[\"x\"]", p), Packet::Other);
        assert_eq!(parse("42[\"x\",1]", ""), Packet::Event { ack: None, name: "x", rest: ",1]" });
    }

    #[test]
    fn picks_fields() {
        let s = ",{\"p\":3,\"s\":17,\"t\": 1700000000000000,\"x\":\"xx\"},{\"offset\":\"42\",\"ts\":5}]";
        assert_eq!(num_field(s, "p"), Some(3));
        assert_eq!(num_field(s, "s"), Some(17));
        assert_eq!(num_field(s, "t"), Some(1_700_000_000_000_000));
        assert_eq!(num_field(s, "ts"), Some(5));
        assert_eq!(str_field(s, "offset"), Some("42"));
        assert_eq!(str_field(s, "nope"), None);
    }

    #[test]
    fn parses_endpoints() -> anyhow::Result<()> {
        let e = Endpoint::parse("http://127.0.0.1:4000/demo")?;
        assert_eq!(e.nsp, "/demo");
        assert_eq!(e.tenant(), "demo");
        assert_eq!(e.prefix(), "/demo,");
        assert_eq!(e.http_base, "http://127.0.0.1:4000");
        let e = Endpoint::parse("ws://localhost:3000")?;
        assert_eq!(e.prefix(), "");
        Ok(())
    }
}
