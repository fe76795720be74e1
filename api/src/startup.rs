//! Building and running the server: the pool, the projector runners, the HTTP stack.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::MatchedPath;
use axum::http::{HeaderName, Request};
use axum::Router;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use webinar_infra::config::{Introspection, Settings};
use webinar_infra::consumer::{
    Leadership, ProjectionProgress, ProjectorRunner, Reactor, ReactorOptions, ReactorRunner,
    RunnerOptions,
};
use webinar_infra::event_log;
use webinar_infra::hls::HlsProbe;
use webinar_infra::reactors::chat::ChatRelayReactor;
use webinar_infra::reactors::health::StreamHealthWatcher;
use webinar_infra::reactors::reservations::ReservationReactor;
use webinar_infra::reactors::stream::StreamReactor;

use crate::feed::ChangeFeed;
use crate::graphql::{build_schema, Limits};
use crate::routes::{self, LiveResponses, Shared};
use crate::state::AppState;

/// Stream health checks one instance runs at once (each is one short GET, with a timeout).
const HEALTH_CHECKS_IN_FLIGHT: usize = 256;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A server bound to its port, not yet serving. Tests bind port 0 and ask for the address.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    feed: ChangeFeed,
    cancel: CancellationToken,
}

/// The span of one request: its method and route, never its path or query. Paths carry secrets
/// (the join page's room key: whoever has it joins the meeting), query strings too (the end
/// callback's signature), so the route template is logged (`/live/join/{room}`), or `unmatched`.
fn http_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!(
        "http",
        method = %request.method(),
        route,
        request_id,
    )
}

impl Application {
    /// Creates the database if needed, migrates it, and binds `settings.listen`.
    pub async fn build(settings: Settings, jwt_secret: SecretString) -> anyhow::Result<Self> {
        let pool = webinar_infra::db::prepare(
            &settings.database_url,
            settings.database_max_connections,
            settings.database_acquire_timeout(),
        )
        .await?;
        Self::build_with_pool(settings, pool, jwt_secret).await
    }

    /// Binds `settings.listen` over an existing, migrated pool.
    pub async fn build_with_pool(
        mut settings: Settings,
        pool: PgPool,
        jwt_secret: SecretString,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        // Without a public URL, BBB and SIPMediaGW reach us where we listen (port 0 resolved).
        if settings.public_url.is_none() {
            settings.public_url = Some(format!("http://{}", listener.local_addr()?));
        }
        webinar_infra::metrics::install();
        let progress = ProjectionProgress::new(webinar_projections::all().iter().map(|p| p.name()));
        let limits = Limits {
            depth: settings.max_query_depth,
            complexity: settings.max_query_complexity,
            query: crate::graphql::limits::QueryLimits {
                max_bytes: settings.max_query_bytes,
                max_fields: settings.max_query_fields,
                max_aliases: settings.max_query_aliases,
                max_directives: settings.max_query_directives,
                max_mutations: settings.max_batch_operations,
            },
            introspection: settings.graphql_introspection != Introspection::Off,
        };
        let state = AppState::new(settings, pool, &jwt_secret, progress)?;
        let feed = ChangeFeed::default();
        let schema = build_schema(state.clone(), feed.clone(), limits);
        let router = routes::router(Shared {
            live_responses: LiveResponses::new(state.reads().clone()),
            state: state.clone(),
            schema,
        })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(http_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        );
        Ok(Self {
            listener,
            router,
            state,
            feed,
            cancel: CancellationToken::new(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.settings().listen)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling it stops the server gracefully (as SIGTERM does).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Serves until `shutdown` completes or the token is cancelled: in-flight requests finish,
    /// projector runners stop at a batch boundary.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let cancel = self.cancel.clone();
        let pool = self.state.pool().clone();
        let settings = self.state.settings().clone();
        let wake = event_log::spawn_listener(pool.clone(), cancel.clone());
        self.feed.spawn(pool.clone(), cancel.clone());
        tokio::spawn(self.state.presence().clone().run(cancel.clone()));
        tokio::spawn(webinar_infra::metrics::run_upkeep(cancel.clone()));
        let options = RunnerOptions {
            batch_size: settings.projection_batch_size,
            poll: settings.projection_poll(),
        };
        // Every consumer this instance may lead, its lock held on one connection.
        let mut leadership = Leadership::new(pool.clone(), settings.projection_poll());
        let mut runners = Vec::new();
        // One commit wakes every consumer: they share one watermark read.
        let watermarks = event_log::Watermarks::default();
        for projector in webinar_projections::all() {
            let leads = leadership.seat(projector.name());
            let runner = ProjectorRunner::new(
                pool.clone(),
                Arc::clone(&projector),
                options,
                self.state.progress().clone(),
            )
            .sharing(watermarks.clone());
            runners.push(tokio::spawn(runner.run(
                leads,
                wake.clone(),
                cancel.clone(),
            )));
        }
        if settings.run_reactors {
            let outside = self.state.outside().clone();
            let reactors: Vec<Arc<dyn Reactor>> = vec![
                Arc::new(StreamReactor::new(outside.clone())),
                Arc::new(ChatRelayReactor::new(outside.clone())),
                Arc::new(ReservationReactor::new(outside.clone())),
            ];
            let mut health_watcher = None;
            if let Some(health) = settings.stream_health() {
                let probe = HlsProbe::new(health.timeout, settings.gateway_address_policy()?)?;
                health_watcher = Some(Arc::new(StreamHealthWatcher::new(outside, probe, health)));
            }
            let options = ReactorOptions {
                batch_size: settings.projection_batch_size,
                poll: settings.projection_poll(),
                max_in_flight: settings.reactor_max_in_flight.max(1),
                ..ReactorOptions::default()
            };
            // Each live stream's check is one short GET, in flight at once with the others': a
            // budget of its own, so that a farm of dead gateways (each check waiting out its
            // timeout) does not delay the checks of streams elsewhere.
            let watching = ReactorOptions {
                max_in_flight: options.max_in_flight.max(HEALTH_CHECKS_IN_FLIGHT),
                ..options
            };
            let runs = reactors
                .into_iter()
                .map(|reactor| (reactor, options))
                .chain(health_watcher.map(|w| (w as Arc<dyn Reactor>, watching)));
            for (reactor, options) in runs {
                let leads = leadership.seat(reactor.name());
                let runner =
                    ReactorRunner::new(pool.clone(), reactor, options).sharing(watermarks.clone());
                runners.push(tokio::spawn(runner.run(
                    leads,
                    wake.clone(),
                    cancel.clone(),
                )));
            }
            let leads = leadership.seat("meeting_watcher");
            runners.push(tokio::spawn(self.state.watcher().clone().run(
                leads,
                wake.clone(),
                cancel.clone(),
            )));
        }
        // Capacity warnings: events and the gauge, from the read models only (no outside system),
        // so whether or not this instance runs the reactors.
        let capacity = Arc::new(webinar_infra::capacity::CapacityMonitor::from_settings(
            &settings,
            pool.clone(),
            Arc::new(webinar_projections::capacity::PgCapacityReads { pool: pool.clone() }),
        ));
        let leads = leadership.seat("capacity_monitor");
        runners.push(tokio::spawn(capacity.run(
            leads,
            wake.clone(),
            cancel.clone(),
        )));
        runners.push(tokio::spawn(leadership.run(cancel.clone())));
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => trigger.cancel(),
                _ = trigger.cancelled() => {}
            }
        });
        tracing::info!(address = %self.local_addr(), "listening");
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(cancel.clone().cancelled_owned())
            .await;
        cancel.cancel();
        for runner in runners {
            if tokio::time::timeout(Duration::from_secs(30), runner)
                .await
                .is_err()
            {
                tracing::warn!("a consumer did not stop within 30 s");
            }
        }
        tracing::info!("stopped");
        served.context("serving HTTP")
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        _ = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
