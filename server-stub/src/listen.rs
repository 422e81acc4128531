//! The accept loop and the time limits of a request, in place of `axum::serve` (which has neither a
//! header nor a body timeout).
//!
//! Each connection is served by hyper's HTTP/1 connection with a header read timeout; it holds one of
//! `max_connections` permits, so a connection over the limit is answered `503` (or, when even the
//! refusals are at their bound, closed) instead of waiting anywhere. A connection ends after its
//! lifetime; on shutdown the listener is closed at once and requests in progress get the grace period.
//! [`timeouts`], a middleware on the router, limits the time of a request's body and of the whole
//! request. The numbers are in [`crate::limits`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::limits::{self, Limits};

/// Serves `router` on `listener` until `shutdown` completes, then lets requests in progress finish
/// within the grace period and returns.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let all = u32::try_from(limits.max_connections).context("--max-connections is too large")?;
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(limits::MAX_REFUSALS));
    let (stop, stopping) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                eprintln!("lapterop-server: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => {
                let router = router.clone();
                let stopping = stopping.clone();
                tokio::spawn(connection(stream, peer, router, limits, stopping, permit));
            }
            Err(_) => {
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit));
                }
            }
        }
    }
    drop(listener);
    // Every connection task holds a permit until it ends.
    let _ = stop.send(true);
    if tokio::time::timeout(limits.shutdown_grace, connections.acquire_many(all))
        .await
        .is_err()
    {
        eprintln!(
            "lapterop-server: {} connections still open after {} s; closing them",
            limits.max_connections - connections.available_permits(),
            limits.shutdown_grace.as_secs()
        );
    }
    Ok(())
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req.map(Body::new))
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        () = tokio::time::sleep(limits.connection_lifetime) => {}
        _ = stopping.wait_for(|stop| *stop) => {}
    }
    // Finish the request in progress (an idle connection closes at once), within the grace period;
    // then the connection is dropped, closing it.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
}

/// Answers a connection over the limit `503` without reading its request, then closes it. It reads
/// what the client sent until the client closes, so that the close does not reset the connection
/// before the client has read the answer.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit) {
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: {}\r\n\
         Connection: close\r\nContent-Length: 47\r\n\r\nthe server is busy; try again in a few seconds\n",
        limits::RETRY_AFTER_SECONDS
    );
    let _ = tokio::time::timeout(limits::REFUSAL_TIME, async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Middleware: the request body must arrive within `limits.body` (else `408` and the connection is
/// closed) and the whole request must be answered within `limits.request` (else `503`).
pub async fn timeouts(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    let late = Arc::new(AtomicBool::new(false));
    let deadline = tokio::time::Instant::now() + limits.body;
    let late2 = late.clone();
    let req = req.map(|body| Body::new(Deadline::new(body, deadline, late2)));
    let answer = tokio::time::timeout(limits.request, next.run(req)).await;
    if late.load(Ordering::SeqCst) {
        let text = format!("the request body did not arrive within {} s\n", limits.body.as_secs());
        let mut resp = (StatusCode::REQUEST_TIMEOUT, text).into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    match answer {
        Ok(resp) => resp,
        Err(_) => {
            eprintln!(
                "lapterop-server: a request took longer than {} s; answered 503",
                limits.request.as_secs()
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, limits::RETRY_AFTER_SECONDS.to_string())],
                "the server took too long to answer; try again\n",
            )
                .into_response()
        }
    }
}

/// The body timed out (see [`timeouts`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimedOut;

/// A request body that fails once its deadline has passed, and says so in `late`.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    late: Arc<AtomicBool>,
}

impl Deadline {
    fn new(inner: Body, deadline: tokio::time::Instant, late: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            late,
        }
    }
}

impl hyper::body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.late.store(true, Ordering::SeqCst);
            return Poll::Ready(Some(Err(BodyTimedOut.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::routing::{get, post};

    use super::*;

    fn router(limits: Limits) -> Router {
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(axum::middleware::from_fn_with_state(limits, timeouts))
    }

    fn short() -> Limits {
        Limits {
            body: Duration::from_millis(200),
            request: Duration::from_millis(400),
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn a_request_that_takes_too_long_is_answered_503() {
        let req = Request::get("/slow").body(Body::empty()).unwrap();
        let started = std::time::Instant::now();
        let resp = router(short()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
        let req = Request::post("/echo").body(Body::new(Endless)).unwrap();
        let resp = router(short()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(resp.headers()[header::CONNECTION], "close");

        // A body in time passes.
        let req = Request::post("/echo").body(Body::from("hello")).unwrap();
        let resp = router(short()).oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let got = axum::body::to_bytes(resp.into_body(), 100).await.unwrap();
        assert_eq!(&got[..], b"hello");
    }

    /// A body whose next bytes never come.
    struct Endless;

    impl hyper::body::Body for Endless {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }
}
