//! Serving a role's HTTP: the API, the webhook, every metrics listener, the simulator.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never ran: a client that
//! sends its headers a byte at a time held a connection, and a task, for ever. Here a
//! connection must deliver each request's headers within `header_read`, and a request body
//! that goes `body_idle` without a byte fails (its handler gets a body error; a long upload
//! that keeps sending is never cut off). On shutdown, idle connections close at once and busy
//! ones after their response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::settings::HttpTimeouts;

/// Serves `router` on `listener` until `shutdown` completes, then waits for the connections
/// to finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: &HttpTimeouts,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let body_idle = Duration::from_millis(timeouts.body_idle_ms.max(1));
    let router = router.layer(axum::middleware::map_request(move |request: Request| {
        std::future::ready(request.map(|body| Body::new(IdleTimeout::new(body, body_idle))))
    }));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(timeouts.header_read_ms.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: give the connections in hand a moment.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A request body that fails once it has sent nothing for `idle`. Its size hint is the inner
/// body's: an empty body is still known to be empty.
struct IdleTimeout {
    inner: Body,
    idle: Duration,
    /// Started when the body was last found with nothing to give.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl IdleTimeout {
    fn new(inner: Body, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            sleep: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {0:?}")]
struct BodyIdle(Duration);

impl hyper::body::Body for IdleTimeout {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.sleep = None;
            return Poll::Ready(frame);
        }
        let idle = this.idle;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyIdle(idle))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
