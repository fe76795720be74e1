//! Simulators of SIPMediaGW and BigBlueButton, faithful to PROTOCOLS.md where it matters to us
//! (status codes, error shapes under HTTP 200, checksums, one stream per server), with fault
//! injection and call counters for tests. They run in process (`serve --demo`, tests) or alone
//! (`webinar sim bbb|sipmediagw`).

pub mod bbb;
pub mod sipmediagw;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listen` until `cancel`; returns the bound address.
pub async fn spawn(
    router: Router,
    listen: SocketAddr,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, "simulator stopped with an error");
        }
    });
    Ok(address)
}
