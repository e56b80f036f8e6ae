//! A cluster's one HTTP/2 connection, driven through h2 itself. hyper's HTTP/2 client
//! hands every request to the connection's task over a dispatch channel, whose first block
//! (room for 32 requests) was about 9 KiB of every cluster's memory, held for the
//! connection's life, with hyper-util's pool around it to find a connection per host. An
//! h2 `SendRequest` is already a cheap handle onto its connection, so here each call opens
//! its stream on it directly and the pool is one slot. A server that does not choose h2
//! by ALPN, or a plain `http://` one, is spoken to in HTTP/1.1 through hyper-util's client,
//! as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Mutex;
use tokio::time::{Instant, Sleep};
use tower::{BoxError, Service};

/// hyper's HTTP/2 client settings, so that a server sees the same connection as before:
/// windows large enough that a big list is not held back by flow control, no server push.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;

/// Where a connection's buffers start, which h2 and hyper would otherwise start at 8 KiB
/// (bytes read), 16 KiB (frames to write) and 4 KiB (Huffman decoding): 28 KiB held for
/// the connection's life, a third of a cluster's memory. Once a cluster is synced its
/// frames are small (watch events, PINGs), so they start small and each grows to what the
/// largest frame through it needed. h2 writes its buffer out whenever less than a frame
/// head and 256 bytes is left in it, so at the least it accepts (265 bytes) nearly every
/// frame went out in a write and a TLS record of its own: 27 writes a cluster in a cold
/// start of 1,000, against 19 from 1 KiB up (about 1.4 KiB a cluster more than the least).
/// These are the settings the patch on h2 adds (crates/vendor/h2).
const READ_BUFFER: usize = 1024;
const WRITE_BUFFER: usize = 1024;
const HEADER_DECODE_BUFFER: usize = 0;

/// How a silent peer is found: a PING once nothing was read for `every`, and the
/// connection closed if its PONG has not come within `wait`.
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    pub every: Duration,
    pub wait: Duration,
}

/// What hands back a connected stream for a URI (TLS with ALPN, timeouts), as hyper-util's
/// client is given.
pub trait Connector:
    Service<Uri, Response = Self::Stream, Error: Into<BoxError>, Future: Send + Unpin + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
    type Stream: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static;
}

impl<C, S> Connector for C
where
    C: Service<Uri, Response = S> + Clone + Send + Sync + 'static,
    C::Error: Into<BoxError>,
    C::Future: Send + Unpin + 'static,
    S: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static,
{
    type Stream = S;
}

/// The HTTP/1.1 client a server that does not speak h2 is called through.
pub type Http1<C> = hyper_util::client::legacy::Client<C, kube::client::Body>;

/// An answer's body: a stream of the h2 connection, or an HTTP/1.1 body.
pub type Answer = http_body_util::Either<Stream, Incoming>;

/// Sends a cluster's requests over one HTTP/2 connection, opened on the first call and
/// again on the first call after it closed. Clones share the connection.
pub struct Http2<C: Connector> {
    shared: Arc<Shared<C>>,
}

impl<C: Connector> Clone for Http2<C> {
    fn clone(&self) -> Self {
        Http2 {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<C: Connector> {
    connector: C,
    /// What the HTTP/1.1 client connects through (the same connector, with the read and
    /// write timeouts an HTTP/2 connection leaves to its health check).
    http1_connector: C,
    keep_alive: KeepAlive,
    /// The open connection, numbered so that a call drops only the one it found closed.
    connection: Mutex<Option<(u64, h2::client::SendRequest<Bytes>)>>,
    opened: AtomicU64,
    /// Set once the server is found not to speak h2; how to build it until then.
    http1: OnceLock<Http1<C>>,
    build_http1: fn(C) -> Http1<C>,
}

impl<C: Connector> Http2<C> {
    /// A client connecting through `connector`; `http1` builds the client for a server that
    /// answers ALPN without h2, over `http1_connector`.
    pub fn new(
        connector: C,
        http1_connector: C,
        keep_alive: KeepAlive,
        http1: fn(C) -> Http1<C>,
    ) -> Self {
        Http2 {
            shared: Arc::new(Shared {
                connector,
                http1_connector,
                keep_alive,
                connection: Mutex::new(None),
                opened: AtomicU64::new(0),
                http1: OnceLock::new(),
                build_http1: http1,
            }),
        }
    }
}

impl<C: Connector> Service<Request<kube::client::Body>> for Http2<C> {
    type Response = Response<Answer>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Response<Answer>, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { shared.send(request).await })
    }
}

impl<C: Connector> Shared<C> {
    async fn send(
        &self,
        request: Request<kube::client::Body>,
    ) -> Result<Response<Answer>, BoxError> {
        if let Some(http1) = self.http1.get() {
            return over_http1(http1, request).await;
        }
        let (mut parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        if !body.is_empty() && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
            parts
                .headers
                .insert(http::header::CONTENT_LENGTH, body.len().into());
        }
        // A connection found closed on reuse (the server went away, a GOAWAY, a silent peer
        // given up on) costs one new connection, not the call: nothing was sent on it yet.
        let mut retried = false;
        loop {
            let (number, reused, send) = match self.connection(&parts.uri).await? {
                Via::H2 {
                    number,
                    reused,
                    send,
                } => (number, reused, send),
                Via::Http1(http1) => {
                    let request = Request::from_parts(parts, kube::client::Body::from(body));
                    return over_http1(http1, request).await;
                }
            };
            let head = Request::from_parts(parts.clone(), ());
            let opened = match send.ready().await {
                Ok(mut send) => send.send_request(head, body.is_empty()),
                Err(e) => Err(e),
            };
            let (answer, mut stream) = match opened {
                Ok(opened) => opened,
                Err(e) if reused && !retried && closed(&e) => {
                    self.forget(number).await;
                    retried = true;
                    continue;
                }
                Err(e) => return Err(from_h2(e)),
            };
            if !body.is_empty() {
                stream.send_data(body, true).map_err(from_h2)?;
            }
            let answer = answer.await.map_err(from_h2)?;
            return Ok(answer.map(|body| http_body_util::Either::Left(Stream { body })));
        }
    }

    /// The open connection, or a new one; HTTP/1.1 once the server turned out to speak
    /// nothing else.
    async fn connection(&self, uri: &Uri) -> Result<Via<'_, C>, BoxError> {
        let mut slot = self.connection.lock().await;
        if let Some((number, send)) = slot.as_ref() {
            return Ok(Via::H2 {
                number: *number,
                reused: true,
                send: send.clone(),
            });
        }
        let stream = tower::ServiceExt::oneshot(self.connector.clone(), origin(uri)?)
            .await
            .map_err(Into::into)?;
        if !stream.connected().is_negotiated_h2() {
            let http1 = self
                .http1
                .get_or_init(|| (self.build_http1)(self.http1_connector.clone()));
            return Ok(Via::Http1(http1));
        }
        let read = Arc::new(LastRead::default());
        let io = Reading {
            io: TokioIo::new(stream),
            read: Arc::clone(&read),
        };
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .initial_read_buffer_capacity(READ_BUFFER)
            .initial_write_buffer_capacity(WRITE_BUFFER)
            .initial_header_decode_buffer_capacity(HEADER_DECODE_BUFFER)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(from_h2)?;
        tokio::spawn(Drive::new(connection, read, self.keep_alive));
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        *slot = Some((number, send.clone()));
        Ok(Via::H2 {
            number,
            reused: false,
            send,
        })
    }

    /// Drops connection `number` if it is still the open one, so that the next call opens
    /// another.
    async fn forget(&self, number: u64) {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|(open, _)| *open == number) {
            *slot = None;
        }
    }
}

/// How a call goes out.
enum Via<'a, C: Connector> {
    /// Over connection `number`, which was `reused` if it was open before this call.
    H2 {
        number: u64,
        reused: bool,
        send: h2::client::SendRequest<Bytes>,
    },
    Http1(&'a Http1<C>),
}

/// Whether `e`, met before a request was sent, says its connection is closed rather than
/// that the request was refused.
fn closed(e: &h2::Error) -> bool {
    e.is_io() || e.is_go_away() || e.reason().is_some()
}

async fn over_http1(
    http1: &Http1<impl Connector>,
    request: Request<kube::client::Body>,
) -> Result<Response<Answer>, BoxError> {
    let answer = http1.request(request).await?;
    Ok(answer.map(http_body_util::Either::Right))
}

/// The scheme and authority a connector is given.
fn origin(uri: &Uri) -> Result<Uri, BoxError> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().cloned();
    parts.authority = uri.authority().cloned();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    Ok(Uri::from_parts(parts)?)
}

/// An h2 error as hyper reports one: an I/O error as itself (so that a closed connection
/// reads as the `UnexpectedEof` it is), anything else as the h2 error.
fn from_h2(e: h2::Error) -> BoxError {
    if !e.is_io() {
        return Box::new(e);
    }
    match e.into_io() {
        Some(io) => Box::new(io),
        None => "HTTP/2 connection I/O error".into(),
    }
}

/// A connection and its health check, polled as the connection's one task: it runs until
/// the server closes it, its peer falls silent, or its last handle is dropped (h2 then says
/// goodbye and ends it). Written by hand, as hyper's is: an `async` driver kept the
/// connection (1.3 KiB) twice, as its argument and among `select!`'s futures.
struct Drive<T: AsyncRead + AsyncWrite + Unpin> {
    connection: h2::client::Connection<T, Bytes>,
    /// h2 hands it out once; without it the connection has no health check.
    ping: Option<h2::PingPong>,
    read: Arc<LastRead>,
    keep_alive: KeepAlive,
    /// When to PING, or, with one in flight, when to give up on its PONG.
    timer: Pin<Box<Sleep>>,
    pinged: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Drive<T> {
    fn new(
        mut connection: h2::client::Connection<T, Bytes>,
        read: Arc<LastRead>,
        keep_alive: KeepAlive,
    ) -> Self {
        let ping = connection.ping_pong();
        let timer = Box::pin(tokio::time::sleep_until(read.at() + keep_alive.every));
        Drive {
            connection,
            ping,
            read,
            keep_alive,
            timer,
            pinged: false,
        }
    }

    /// Ready once the peer has not answered a PING, sent `every` after the last bytes read,
    /// within `wait`.
    fn poll_silent(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(ping) = self.ping.as_mut() else {
            return Poll::Pending;
        };
        loop {
            if self.pinged {
                match ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.pinged = false;
                        let due = self.read.at() + self.keep_alive.every;
                        self.timer.as_mut().reset(due);
                        continue;
                    }
                    // The connection is gone, and its own poll says so.
                    Poll::Ready(Err(_)) => return Poll::Pending,
                    Poll::Pending => return self.timer.as_mut().poll(cx),
                }
            }
            std::task::ready!(self.timer.as_mut().poll(cx));
            let due = self.read.at() + self.keep_alive.every;
            if due > self.timer.deadline() {
                self.timer.as_mut().reset(due);
                continue;
            }
            if ping.send_ping(h2::Ping::opaque()).is_err() {
                return Poll::Pending;
            }
            self.pinged = true;
            self.timer
                .as_mut()
                .reset(Instant::now() + self.keep_alive.wait);
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Future for Drive<T> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // The health check first: a PING it sends goes out with the connection's poll.
        if this.poll_silent(cx).is_ready() {
            let keep_alive = this.keep_alive;
            tracing::debug!(
                ?keep_alive,
                "no PONG from the server; HTTP/2 connection closed"
            );
            return Poll::Ready(());
        }
        let ended = std::task::ready!(Pin::new(&mut this.connection).poll(cx));
        if let Err(e) = ended {
            tracing::debug!(error = %e, "HTTP/2 connection closed");
        }
        Poll::Ready(())
    }
}

/// When the connection last read anything, in milliseconds since it opened.
struct LastRead {
    opened: Instant,
    millis: AtomicU64,
}

impl Default for LastRead {
    fn default() -> Self {
        LastRead {
            opened: Instant::now(),
            millis: AtomicU64::new(0),
        }
    }
}

impl LastRead {
    fn mark(&self) {
        let millis = self.opened.elapsed().as_millis() as u64;
        self.millis.store(millis, Ordering::Relaxed);
    }

    fn at(&self) -> Instant {
        self.opened + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// The connection's stream, noting when bytes were read.
struct Reading<T> {
    io: T,
    read: Arc<LastRead>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Reading<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.read.mark();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Reading<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The body of an answer on the h2 connection. The window is given back as the body is
/// read, so a watch that is read keeps flowing and one that is not holds the server back.
pub struct Stream {
    body: h2::RecvStream,
}

impl hyper::body::Body for Stream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match std::task::ready!(self.body.poll_data(cx)) {
            Some(Ok(data)) => {
                // Only fails once the stream is reset, which the next poll reports.
                let _ = self.body.flow_control().release_capacity(data.len());
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            Some(Err(e)) => Err(e),
            None => std::task::ready!(self.body.poll_trailers(cx)),
        };
        match polled {
            Ok(trailers) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            // A reset with NO_ERROR ends a body early without failing it (RFC 9113, 8.1).
            Err(e) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use futures::future::BoxFuture;
    use hyper_util::client::legacy::connect::Connected;
    use hyper_util::rt::TokioExecutor;
    use tokio::net::{TcpListener, TcpStream};

    use tokio::sync::watch;

    use super::*;

    /// A TCP stream that says what ALPN would have chosen.
    struct Tcp {
        io: TokioIo<TcpStream>,
        h2: bool,
    }

    impl Connection for Tcp {
        fn connected(&self) -> Connected {
            let connected = Connected::new();
            if self.h2 {
                connected.negotiated_h2()
            } else {
                connected
            }
        }
    }

    impl hyper::rt::Read for Tcp {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_read(cx, buf)
        }
    }

    impl hyper::rt::Write for Tcp {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.io).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.io).poll_shutdown(cx)
        }
    }

    type TestConnector = tower::util::BoxCloneSyncService<Uri, Tcp, std::io::Error>;

    fn connector(h2: bool) -> TestConnector {
        tower::util::BoxCloneSyncService::new(tower::service_fn(move |uri: Uri| {
            let connecting: BoxFuture<'static, std::io::Result<Tcp>> = Box::pin(async move {
                let authority = uri.authority().expect("an origin").as_str().to_string();
                let io = TokioIo::new(TcpStream::connect(authority).await?);
                Ok(Tcp { io, h2 })
            });
            connecting
        }))
    }

    fn http1(connector: TestConnector) -> Http1<TestConnector> {
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
    }

    fn get(addr: std::net::SocketAddr) -> Request<kube::client::Body> {
        Request::get(format!("http://{addr}/version"))
            .body(kube::client::Body::empty())
            .unwrap()
    }

    async fn text(answer: Response<Answer>) -> (http::Version, String) {
        let version = answer.version();
        let body = answer.into_body().collect().await.unwrap().to_bytes();
        (version, String::from_utf8(body.to_vec()).unwrap())
    }

    /// An h2 server counting its connections, and a client of it with these PING timings.
    /// The server's first connection falls silent (stops reading, so no PONG) once `freeze`
    /// is sent; each connection's end, by number, comes on `closures`.
    struct H2Server {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        freeze: watch::Sender<bool>,
        closures: tokio::sync::mpsc::UnboundedReceiver<usize>,
        client: Http2<TestConnector>,
    }

    async fn h2_server(every: Duration, wait: Duration) -> H2Server {
        let (freeze, frozen) = watch::channel(false);
        let (closed, closures) = tokio::sync::mpsc::unbounded_channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let number = count.fetch_add(1, Ordering::SeqCst) + 1;
                let mut freeze = frozen.clone();
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut connection = h2::server::handshake(socket).await.unwrap();
                    loop {
                        tokio::select! {
                            request = connection.accept() => match request {
                                Some(Ok((_, mut respond))) => {
                                    let mut body = respond
                                        .send_response(Response::new(()), false)
                                        .unwrap();
                                    body.send_data(Bytes::from("ok"), true).unwrap();
                                }
                                _ => break,
                            },
                            // A test that drops `freeze` unsent never freezes anything.
                            true = async { freeze.wait_for(|f| *f).await.is_ok() }, if number == 1 => {
                                // Held open and never read again.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                    let _ = closed.send(number);
                });
            }
        });
        let client = Http2::new(
            connector(true),
            connector(true),
            KeepAlive { every, wait },
            http1,
        );
        H2Server {
            addr,
            accepted,
            freeze,
            closures,
            client,
        }
    }

    #[tokio::test]
    async fn calls_share_one_connection_and_a_silent_peer_is_left_for_a_new_one() {
        let H2Server {
            addr,
            accepted,
            freeze,
            mut closures,
            client,
        } = h2_server(Duration::from_millis(100), Duration::from_millis(100)).await;

        let calls = (0..3).map(|_| client.clone().call(get(addr)));
        for answer in futures::future::try_join_all(calls).await.unwrap() {
            assert_eq!(text(answer).await, (http::Version::HTTP_2, "ok".into()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // Idle past a PING interval: the server answers the PING and the connection stays.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let answer = client.clone().call(get(addr)).await.unwrap();
        assert_eq!(text(answer).await.1, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // The server stops reading: no PONG within the wait, so the client closes its side,
        // and the next call goes over a new connection instead of waiting on the old one.
        freeze.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = tokio::time::timeout(Duration::from_secs(5), client.clone().call(get(addr)))
            .await
            .expect("a call on a silent connection would wait for ever")
            .unwrap();
        assert_eq!(text(answer).await.1, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert!(
            closures.try_recv().is_err(),
            "the server closed a connection"
        );
    }

    /// Long before its next PING: h2 wakes the connection when its last handle goes (hyper
    /// had to work around versions that did not).
    #[tokio::test]
    async fn dropping_the_client_ends_its_connection() {
        let H2Server {
            addr,
            mut closures,
            client,
            ..
        } = h2_server(Duration::from_secs(30), Duration::from_secs(15)).await;
        let answer = client.clone().call(get(addr)).await.unwrap();
        assert_eq!(text(answer).await.1, "ok");

        drop(client);
        let ended = tokio::time::timeout(Duration::from_secs(5), closures.recv()).await;
        assert_eq!(ended.expect("the connection outlived its client"), Some(1));
    }

    /// Each larger than the buffer it passes through starts at: the header block both ways
    /// (Huffman-coded on the way back), and the bodies' DATA frames.
    #[tokio::test]
    async fn header_blocks_and_frames_larger_than_the_buffers_start_at_pass_whole() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut connection = h2::server::handshake(socket).await.unwrap();
            while let Some(Ok((request, mut respond))) = connection.accept().await {
                tokio::spawn(async move {
                    let (head, mut body) = request.into_parts();
                    let mut echo = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        body.flow_control().release_capacity(chunk.len()).unwrap();
                        echo.extend_from_slice(&chunk);
                    }
                    let answer = Response::builder()
                        .header("x-echo", head.headers["x-big"].clone())
                        .body(())
                        .unwrap();
                    let mut send = respond.send_response(answer, false).unwrap();
                    send.send_data(Bytes::from(echo), true).unwrap();
                });
            }
        });
        let keep_alive = KeepAlive {
            every: Duration::from_secs(30),
            wait: Duration::from_secs(15),
        };
        let client = Http2::new(connector(true), connector(true), keep_alive, http1);

        let big_header: String = (0..8 * 1024)
            .map(|i| (b'a' + (i % 26) as u8) as char)
            .collect();
        let big_body: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..2 {
            let request = Request::post(format!("http://{addr}/echo"))
                .header("x-big", big_header.as_str())
                .body(kube::client::Body::from(big_body.clone()))
                .unwrap();
            let answer =
                tokio::time::timeout(Duration::from_secs(10), client.clone().call(request))
                    .await
                    .expect("the exchange stalled")
                    .unwrap();
            assert_eq!(answer.headers()["x-echo"], big_header.as_str());
            let body = answer.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), big_body.len());
            assert!(body == big_body, "the body came back changed");
        }
    }

    #[tokio::test]
    async fn a_server_without_h2_is_spoken_to_in_http1() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
                            Bytes::from("ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        let keep_alive = KeepAlive {
            every: Duration::from_secs(30),
            wait: Duration::from_secs(15),
        };
        let client = Http2::new(connector(false), connector(false), keep_alive, http1);
        for _ in 0..2 {
            let answer = client.clone().call(get(addr)).await.unwrap();
            assert_eq!(text(answer).await, (http::Version::HTTP_11, "ok".into()));
        }
    }
}
