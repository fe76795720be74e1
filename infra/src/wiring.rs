//! All wiring in one place: the application services built from the settings, the pool, and the
//! read models' answers to the domain's questions (passed in by the caller, who knows them).

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sqlx::PgPool;
use webinar_domain::chat::ChatMessage;
use webinar_domain::gateway::Gateway;
use webinar_domain::ports::{
    GatewayDirectory, HeldGwIds, LiveWebinars, MeetingService, OwnerWebinars, StreamGateway,
};
use webinar_domain::retry::Backoff;
use webinar_domain::webinar::Webinar;
use webinar_domain::PermissionPolicy;

use crate::bbb::BbbClient;
use crate::bbb_webhooks::WebhookVerifier;
use crate::callbacks::CallbackSigner;
use crate::chat::{ChatRateLimiter, ChatService, Rate};
use crate::config::Settings;
use crate::event_store::CommandBus;
use crate::gateways::GatewayService;
use crate::idempotency::IdempotencyStore;
use crate::reactors::meetings::{MeetingWatcher, Sweep};
use crate::reactors::Outside;
use crate::sipmediagw::gateways::SipMediaGwGateways;
use crate::sipmediagw::SipMediaGwClient;
use crate::webinars::{MeetingLinks, OwnerQuota, WebinarService};

/// What the read models answer for the services (implemented by the `projections` crate).
#[derive(Clone)]
pub struct ReadPorts {
    pub gateway_directory: Arc<dyn GatewayDirectory>,
    pub live_webinars: Arc<dyn LiveWebinars>,
    pub owner_webinars: Arc<dyn OwnerWebinars>,
    pub held_gw_ids: Arc<dyn HeldGwIds>,
}

/// The application services, ready to use.
#[derive(Clone)]
pub struct Services {
    pub policy: PermissionPolicy,
    pub gateways: Arc<GatewayService>,
    pub webinars: Arc<WebinarService>,
    pub chat: Arc<ChatService>,
    /// BigBlueButton, when configured.
    pub meetings: Option<Arc<dyn MeetingService>>,
    pub signer: CallbackSigner,
    /// Checks bbb-webhooks deliveries, when webhooks are on.
    pub webhooks: Option<WebhookVerifier>,
    /// Answers of mutations sent with an `Idempotency-Key`.
    pub idempotency: Arc<IdempotencyStore>,
    /// What the reactors share.
    pub outside: Outside,
    pub watcher: Arc<MeetingWatcher>,
}

fn bus<A>(settings: &Settings, pool: &PgPool) -> CommandBus<A>
where
    A: cqrs_es::Aggregate<Services = ()> + webinar_domain::Identified,
    A::Command: Clone,
{
    CommandBus::new(
        pool.clone(),
        (),
        settings.snapshot_every,
        settings.command_retries,
    )
}

impl Services {
    pub fn build(
        settings: &Settings,
        pool: PgPool,
        jwt_secret: &SecretString,
        reads: ReadPorts,
    ) -> anyhow::Result<Self> {
        let policy = settings.permission_policy();
        // A typo in the allowed networks must stop the server, not silently allow nothing (or
        // everything).
        let addresses = settings.gateway_address_policy()?;
        let signer = CallbackSigner::from_secret(jwt_secret);
        let meetings = match settings.bbb() {
            Some(api) => Some(Arc::new(BbbClient::new(
                api,
                Duration::from_secs(settings.bbb_timeout_seconds),
            )?) as Arc<dyn MeetingService>),
            None => None,
        };
        let gateways = Arc::new(GatewayService::new(
            bus::<Gateway>(settings, &pool),
            pool.clone(),
            policy.clone(),
            addresses.clone(),
            reads.gateway_directory,
        ));
        let webinars = Arc::new(
            WebinarService::new(
                bus::<Webinar>(settings, &pool),
                policy.clone(),
                settings.slot_rules(),
                gateways.clone(),
                meetings.clone(),
                MeetingLinks {
                    public_url: settings.public_url(),
                    signer: signer.clone(),
                },
                pool.clone(),
            )
            .with_owner_quota(OwnerQuota {
                upcoming: reads.owner_webinars.clone(),
                max: settings.max_upcoming_webinars_per_owner,
            }),
        );
        let chat = Arc::new(ChatService::new(
            bus::<ChatMessage>(settings, &pool),
            webinars.clone(),
            policy.clone(),
            ChatRateLimiter::new(
                pool.clone(),
                Rate {
                    limit: settings.chat_rate_limit,
                    window: Duration::from_secs(settings.chat_rate_window_seconds),
                },
                Rate {
                    limit: settings.chat_webinar_rate_limit,
                    window: Duration::from_secs(settings.chat_rate_window_seconds),
                },
            ),
        ));
        let streams: Arc<dyn StreamGateway> = Arc::new(SipMediaGwGateways::new(
            SipMediaGwClient::new(
                Duration::from_secs(settings.sipmediagw_timeout_seconds),
                addresses,
            )?,
            gateways.clone(),
            reads.held_gw_ids.clone(),
            pool.clone(),
            settings.join_domain(),
        ));
        let retry = Duration::from_millis(settings.stream_retry_ms);
        let outside = Outside {
            webinars: webinars.clone(),
            gateways: gateways.clone(),
            chat: chat.clone(),
            streams,
            meetings: meetings.clone(),
            start_attempts: settings.stream_start_attempts.max(1),
            stop_attempts: settings.stream_stop_attempts.max(1),
            start_timeout: Duration::from_secs(settings.sipmediagw_timeout_seconds),
            reservation_grace: Duration::from_secs(settings.reservation_grace_seconds),
            backoff: Backoff {
                first: retry,
                max: (retry * 30).max(Duration::from_secs(30)),
            },
            chat_relay: settings.chat_relay,
        };
        let watcher = Arc::new(
            MeetingWatcher::new(
                outside.clone(),
                reads.live_webinars,
                settings.meeting_check_interval(),
                settings.end_grace_minutes,
            )
            .sweeping(settings.bbb_webhooks().map(|hooks| {
                Sweep {
                    register_hook: settings
                        .bbb_webhooks_register
                        .then(|| hooks.callback_url().to_owned()),
                }
            })),
        );
        Ok(Self {
            policy,
            gateways,
            webinars,
            chat,
            meetings,
            signer,
            webhooks: settings.bbb_webhooks(),
            idempotency: Arc::new(IdempotencyStore::new(pool.clone())),
            outside,
            watcher,
        })
    }
}
