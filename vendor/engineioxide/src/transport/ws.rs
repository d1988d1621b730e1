//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::{sync::Arc, time::Duration};

use std::{future::Future, task::Poll};

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    mut req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let ws_key = req
        .headers()
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();
    // Only the upgrade future and the request's parts go into the task (the parts boxed):
    // what the task captures stays in its memory for as long as the connection lives.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let parts = Box::new(req.into_parts().0);

    tokio::spawn(async move {
        let conn = on_upgrade.await.map(hyper_util::rt::TokioIo::new);

        let res = match conn {
            // Unboxed by a call, so that the box is freed now rather than with the task.
            Ok(conn) => on_init(engine.clone(), conn, protocol, sid, unbox(parts)).await,
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return;
            }
        };

        match res {
            Ok(_) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed")
            }
            Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
    });

    Ok(ws_response(&ws_key))
}

fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Read packets from the websocket and handle them, it will block until the connection is closed
///
/// The opening (handshake or upgrade) runs in a boxed future of its own, which is freed once
/// the session is open: the future that lives as long as the connection only holds what
/// [`run`] needs. (Before, the opening's state, the request's parts and the connection were
/// part of the connection's future for as long as it lived.)
pub fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> impl Future<Output = Result<(), Error>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = Box::pin(open(engine.clone(), conn, protocol, sid, req_data));
    async move {
        let (socket, ws, heartbeat) = open.await?;
        run(engine, socket, ws, heartbeat).await;
        Ok(())
    }
}

/// The opening of a websocket session: the open packet of a new session, or the upgrade
/// of a polling session. It gives the session's socket, its websocket, and the heartbeat
/// (interval, timeout) that [`run`] must drive, if any.
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
async fn open<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<Session<H::Data, S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                // The polling session's heartbeat job goes on.
                Ok((socket, ws, None))
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        // The (v4) heartbeat of a session that starts on WebSocket runs in the session's task.
        let hb = (engine.config.ping_interval, engine.config.ping_timeout);
        if socket.protocol == ProtocolVersion::V4 {
            Ok((socket, ws, Some(hb)))
        } else {
            socket.clone().spawn_heartbeat(hb.0, hb.1);
            Ok((socket, ws, None))
        }
    }
}

/// An open websocket session: its socket, its websocket and the heartbeat to drive.
type Session<D, S> = (
    Arc<Socket<D>>,
    WebSocketStream<S>,
    Option<(Duration, Duration)>,
);

/// How many packet buffers the session writes before it flushes them and lets other tasks
/// run (the queue can be refilled by other threads as fast as it is emptied).
const WRITE_BUDGET: usize = 64;

/// Runs an open websocket session until it ends: one task reads the websocket, writes the
/// socket's queued packets to it, and runs its heartbeat if `heartbeat` is set.
///
/// It replaces a reader task, a writer task and (for v4) a heartbeat task per socket, and
/// the websocket's split halves, whose shared lock was another allocation. It keeps their
/// behaviour:
/// * the reader: each message goes to the handler, a close packet or frame, the end of the
///   stream or an error closes the session (with the reason the error maps to);
/// * the writer: it holds the `internal_rx` lock while it writes (a polling request in
///   progress during an upgrade may still hold it: reading goes on while it waits), writes
///   queued packets before it notices a cancelled session (a close packet queued by
///   [`Socket::close`] is written), flushes once the queue is empty or after
///   [`WRITE_BUDGET`] buffers, and closes the websocket when the session is cancelled;
/// * the heartbeat (v4): a ping at once and then every `interval` through the queue, and the
///   session closed with `HeartbeatTimeout` if no pong came `timeout` after a ping.
///   Without `heartbeat`, pongs (and v3 pings) go to the heartbeat job through
///   [`Socket::heartbeat`].
///
/// Once the session is cancelled and the queue is empty, the lock is released (so that the
/// session's `on_disconnect` does not wait for the close frame), and a peer that does not take
/// the close frame within `ping_timeout` has its connection dropped.
async fn run<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    mut ws: WebSocketStream<S>,
    heartbeat: Option<(Duration, Duration)>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The writer's lock. A polling request that was in progress during the upgrade may still
    // hold it; its (rarely needed) wait is boxed, so as not to be part of every connection.
    let mut guard = socket.internal_rx.try_lock().ok();
    let mut acquiring = guard
        .is_none()
        .then(|| Box::pin(socket.internal_rx.lock()));
    let cancelled = socket.cancellation_token.cancelled();
    tokio::pin!(cancelled);

    let (interval, timeout) = heartbeat.unwrap_or((Duration::MAX, Duration::MAX));
    // The time of the last ping, and whether its pong is still awaited.
    let mut last_ping = Instant::now();
    let mut awaiting_pong = false;
    // One timer for the next ping, the pong deadline and the closing deadline. As
    // `tokio::time::Interval`, whose first tick is at once, the first ping is sent at once.
    let mut timed = heartbeat.is_some();
    let timer = tokio::time::sleep_until(if timed { last_ping } else { far_future() });
    tokio::pin!(timer);

    let mut reading = true;
    let mut unflushed = false;
    let mut closing = false;

    std::future::poll_fn(|cx| {
        if let Some(lock) = acquiring.as_mut() {
            if let Poll::Ready(g) = lock.as_mut().poll(cx) {
                guard = Some(g);
                acquiring = None;
            }
        }

        // Read side: every message the websocket has, while the session is not cancelled.
        while reading && !closing {
            let msg = match ws.poll_next_unpin(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(msg))) => msg,
                Poll::Ready(end) => {
                    reading = false;
                    let reason = match end {
                        Some(Err(e)) => {
                            let e = Error::from(e);
                            #[cfg(feature = "tracing")]
                            tracing::debug!("error when handling packet: {:?}", e);
                            Option::<DisconnectReason>::from(&e)
                                .unwrap_or(DisconnectReason::TransportError)
                        }
                        _ => {
                            #[cfg(feature = "tracing")]
                            tracing::debug!(sid = %socket.id, "ws transport was closed");
                            DisconnectReason::TransportClose
                        }
                    };
                    engine.close_session(socket.id, reason);
                    break;
                }
            };
            match on_message(&engine, &socket, msg) {
                Ok(Read::Next) => {}
                Ok(Read::Pong) if heartbeat.is_some() => {
                    if awaiting_pong {
                        #[cfg(feature = "tracing")]
                        tracing::trace!(sid = ?socket.id, "pong received");
                        awaiting_pong = false;
                        let next = last_ping
                            .checked_add(interval)
                            .unwrap_or_else(far_future)
                            .max(Instant::now());
                        timer.as_mut().reset(next);
                    }
                }
                // At most one notification is stored: a stored one means the client is alive.
                Ok(Read::Pong) => socket.heartbeat.notify_one(),
                Ok(Read::Closed) => reading = false,
                Err(e) => {
                    reading = false;
                    #[cfg(feature = "tracing")]
                    tracing::debug!("error when handling packet: {:?}", e);
                    let reason = Option::<DisconnectReason>::from(&e)
                        .unwrap_or(DisconnectReason::TransportError);
                    engine.close_session(socket.id, reason);
                }
            }
        }

        // The timer: heartbeat ticks, or the closing deadline. Polled again after each
        // reset, so that it is registered with its new deadline.
        while timed && timer.as_mut().poll(cx).is_ready() {
            if closing {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "the peer did not take the close frame in time");
                return Poll::Ready(());
            } else if awaiting_pong {
                #[cfg(feature = "tracing")]
                tracing::debug!(sid = ?socket.id, "heartbeat timeout");
                // Queues a close packet and cancels the session: it is written below.
                socket.close(DisconnectReason::HeartbeatTimeout);
                timer.as_mut().reset(far_future());
                timed = false;
            } else {
                #[cfg(feature = "tracing")]
                tracing::trace!(sid = ?socket.id, "emitting ping");
                last_ping = Instant::now();
                awaiting_pong = true;
                timer
                    .as_mut()
                    .reset(last_ping.checked_add(timeout).unwrap_or_else(far_future));
                if socket.internal_tx.try_send(smallvec![Packet::Ping]).is_err() {
                    socket.close(DisconnectReason::HeartbeatTimeout);
                }
                // An idle point: the queue's buffer goes once the ping is taken, if nothing
                // else came.
                socket.internal_tx.release_when_empty();
            }
        }

        // Write side: the queued packets, while the lock is held and the websocket takes them.
        let mut drained = false;
        let mut blocked = false;
        if guard.is_some() {
            let mut written = 0;
            loop {
                if written == WRITE_BUDGET {
                    // Flush what was written and come back after other tasks ran.
                    cx.waker().wake_by_ref();
                    break;
                }
                // An error is the connection's: the read side ends the session with it.
                if ws.poll_ready_unpin(cx).is_pending() {
                    blocked = true;
                    break;
                }
                match socket.internal_tx.poll_recv(cx) {
                    Poll::Ready(Some(packets)) => {
                        for item in packets {
                            send_packet(&socket, &mut ws, item);
                        }
                        unflushed = true;
                        written += 1;
                    }
                    Poll::Ready(None) | Poll::Pending => {
                        drained = true;
                        break;
                    }
                }
            }
            if unflushed {
                #[cfg(feature = "tracing")]
                tracing::trace!(sid = %socket.id, "ws flush");
                if ws.poll_flush_unpin(cx).is_ready() {
                    unflushed = false;
                }
            }
        }

        // A cancelled session is closed once what was queued before is written (or cannot be:
        // a peer that does not read gets the closing deadline).
        if !closing
            && (drained || blocked || guard.is_none())
            && cancelled.as_mut().poll(cx).is_ready()
        {
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = %socket.id, "ws closing flush");
            closing = true;
            guard = None;
            acquiring = None;
            timed = true;
            let deadline = Instant::now()
                .checked_add(engine.config.ping_timeout)
                .unwrap_or_else(far_future);
            timer.as_mut().reset(deadline);
            if timer.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        if closing {
            return ws.poll_close_unpin(cx).map(|_| ());
        }
        Poll::Pending
    })
    .await
}

/// What the read side does after a message.
enum Read {
    Next,
    /// A pong (v4) or a ping (v3): the client is alive.
    Pong,
    /// The client closed the session (the session is closed already).
    Closed,
}

/// Handles a message read from the websocket.
fn on_message<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<Read, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                Ok(Read::Closed)
            }
            Packet::Pong | Packet::Ping => Ok(Read::Pong),
            Packet::Message(msg) => {
                engine.handler.on_message(msg, socket.clone());
                Ok(Read::Next)
            }
            p => Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
            Ok(Read::Next)
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            Ok(Read::Closed)
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
            Ok(Read::Next)
        }
    }
}

/// A deadline that is never reached (about 30 years away, as tokio's own "far future").
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

/// Maps a packet to a websocket message and writes it to the websocket's buffer (without
/// flushing). The websocket must be ready ([`SinkExt::poll_ready_unpin`]) for the first
/// packet of a buffer: tokio-tungstenite takes every message while it is ready, and the
/// packets of one buffer (a message and its binary attachments) are written together.
fn send_packet<D: Default + Send + Sync + 'static, S>(
    socket: &Socket<D>,
    ws: &mut WebSocketStream<S>,
    item: Packet,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let msg = match item {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if socket.protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                // This requires a new buffer. This is OK as it is only for the V3 protocol.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Message::Binary(buff.into())
            } else {
                Message::Binary(bin)
            }
        }
        // A Noop Packet maybe sent by the server to upgrade from a polling connection
        // In the case that the packet was not poll in time it will remain in the buffer and therefore
        // it should be discarded here
        Packet::Noop => return,
        item => {
            let packet: String = item.try_into().unwrap();
            Message::Text(packet.into())
        }
    };
    if let Err(_e) = ws.start_send_unpin(msg) {
        #[cfg(feature = "tracing")]
        tracing::debug!("[sid={}] error sending packet: {}", socket.id, _e);
    }
}
/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .internal_tx
        .send(smallvec![Packet::Noop])
        .await
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::{SinkExt, StreamExt};
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// Echoes every message.
    #[derive(Debug)]
    struct EchoHandler;
    impl EngineIoHandler for EchoHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
            socket.emit(msg).ok();
        }
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn engine(config: EngineIoConfig) -> Arc<EngineIo<EchoHandler>> {
        Arc::new(EngineIo::new(Arc::new(EchoHandler), config))
    }

    fn session(engine: &Arc<EngineIo<EchoHandler>>) -> Arc<Socket<()>> {
        engine.create_session(
            ProtocolVersion::V4,
            TransportType::Websocket,
            Request::<()>::default().into_parts().0,
            false,
        )
    }

    async fn ws_pair(buf: usize) -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(buf);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    async fn next(client: &mut WebSocketStream<DuplexStream>) -> Option<Message> {
        tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the server should answer in time")
            .map(|m| m.unwrap())
    }

    /// A polling request can still hold the lock at the end of an upgrade: the session reads
    /// meanwhile, and writes once it has the lock.
    #[tokio::test]
    async fn the_session_reads_while_a_polling_request_holds_the_lock() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, mut client) = ws_pair(1024).await;

        let polling = socket.internal_rx.lock().await;
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, None));
        client.send(Message::text("4hello")).await.unwrap();
        // The echo is queued by the handler (the message was read) but not written yet.
        let queued = async {
            while socket.internal_tx.is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(TIMEOUT, queued).await.expect("the message should be read");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), client.next()).await.is_err(),
            "nothing should be written without the lock"
        );

        drop(polling);
        assert_eq!(next(&mut client).await, Some(Message::text("4hello")));
        assert!(!task.is_finished());
    }

    #[tokio::test]
    async fn a_session_waiting_for_the_lock_stops_when_cancelled() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, _client) = ws_pair(1024).await;

        let _polling = socket.internal_rx.lock().await;
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, None));
        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("the session should stop")
            .unwrap();
    }

    /// A ping at once, and a close packet then a close frame when no pong comes.
    #[tokio::test]
    async fn the_heartbeat_closes_a_session_without_pongs() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, mut client) = ws_pair(1024).await;
        let hb = (Duration::from_secs(60), Duration::from_millis(50));
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, Some(hb)));

        assert_eq!(next(&mut client).await, Some(Message::text("2")));
        assert_eq!(next(&mut client).await, Some(Message::text("1")));
        assert!(matches!(next(&mut client).await, Some(Message::Close(_)) | None));
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        assert!(engine.get_socket(socket.id).is_none(), "the session is closed");
    }

    /// Pongs keep the session open; the next ping comes one interval after the last.
    #[tokio::test]
    async fn pongs_keep_the_session_open() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, mut client) = ws_pair(1024).await;
        let hb = (Duration::from_millis(30), Duration::from_millis(200));
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, Some(hb)));

        for _ in 0..4 {
            assert_eq!(next(&mut client).await, Some(Message::text("2")));
            client.send(Message::text("3")).await.unwrap();
        }
        client.send(Message::text("4still here")).await.unwrap();
        assert_eq!(next(&mut client).await, Some(Message::text("4still here")));
        assert!(!task.is_finished());
        assert!(engine.get_socket(socket.id).is_some());
    }

    /// A client that closes the websocket closes the session.
    #[tokio::test]
    async fn a_close_frame_closes_the_session() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, mut client) = ws_pair(1024).await;
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, None));

        client.close(None).await.unwrap();
        tokio::time::timeout(TIMEOUT, task).await.unwrap().unwrap();
        assert!(engine.get_socket(socket.id).is_none());
    }

    /// A cancelled session whose peer reads nothing is dropped after `ping_timeout`, and it
    /// releases the lock before (so that `on_disconnect` does not wait for the peer).
    #[tokio::test]
    async fn a_peer_that_does_not_read_is_dropped_after_closing() {
        let config = EngineIoConfig::builder()
            .ping_timeout(Duration::from_millis(100))
            .build();
        let engine = engine(config);
        let socket = session(&engine);
        let (server, _client) = ws_pair(64).await;
        let task = tokio::spawn(run(engine.clone(), socket.clone(), server, None));

        // Far more than the pipe holds.
        for _ in 0..64 {
            socket.emit("x".repeat(100)).unwrap();
        }
        engine.close_session(socket.id, DisconnectReason::ClosingServer);
        let lock = tokio::time::timeout(TIMEOUT, socket.internal_rx.lock()).await;
        assert!(lock.is_ok(), "the lock should be released when closing");
        tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("the session should end")
            .unwrap();
    }

    /// The future that lives as long as a connection stays small (it was 2,688 bytes for the
    /// reader task alone, plus 1,408 for the writer task).
    #[tokio::test]
    async fn the_session_future_is_small() {
        let engine = engine(EngineIoConfig::default());
        let socket = session(&engine);
        let (server, _client) = ws_pair(1024).await;
        let fut = run(engine.clone(), socket, server, Some((Duration::MAX, Duration::MAX)));
        let size = std::mem::size_of_val(&fut);
        println!("session future: {size} bytes");
        // 1,080 bytes in a debug build on 2026-12-03, a websocket (tungstenite's context) included.
        assert!(size <= 1280, "the session future is {size} bytes");
    }
}
