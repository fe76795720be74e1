//! Settings, read once at start: defaults, then an optional TOML file, then environment variables.
//!
//! Environment names are the contract's (`DATABASE_URL`, `WEBINAR_*`); a TOML file uses the same
//! names in lower case without the prefix (`listen = "0.0.0.0:8080"`). Secrets are `SecretString`s
//! and print as `[REDACTED]`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;
use webinar_domain::PermissionPolicy;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// PostgreSQL; the database is created when missing.
    pub database_url: String,
    /// Largest number of pooled connections.
    pub database_max_connections: u32,
    /// How long a request waits for a pooled connection (or for PostgreSQL to accept one) before
    /// it answers `UNAVAILABLE`.
    pub database_acquire_timeout_ms: u64,
    pub listen: SocketAddr,
    /// How BigBlueButton and SIPMediaGW reach us (callbacks, the join page).
    pub public_url: Option<String>,
    /// The BBB API base, like Pod's `BBB_API_URL`.
    pub bbb_url: Option<String>,
    pub bbb_secret: Option<SecretString>,
    /// Checksum algorithm for BBB calls: `sha1`, `sha256` (default), `sha384` or `sha512`.
    pub bbb_checksum: crate::bbb::Checksum,
    /// HS256 key that signs and checks bearer tokens.
    pub jwt_secret: Option<SecretString>,
    /// `json` (default) or `pretty`.
    pub log_format: LogFormat,
    /// Take a snapshot of an aggregate every N events.
    pub snapshot_every: usize,
    /// How often a command is retried after an optimistic-lock conflict before `CONFLICT`.
    pub command_retries: u32,
    /// How long a mutation waits for the read models to include its events.
    pub read_your_writes_timeout_ms: u64,
    /// Events a projector applies per transaction.
    pub projection_batch_size: i64,
    /// How often consumers look at the log when no notification arrived.
    pub projection_poll_ms: u64,
    pub max_body_bytes: usize,
    pub max_query_depth: usize,
    pub max_query_complexity: usize,
    /// Longest webinar, in minutes.
    pub max_webinar_minutes: i64,
    /// How far in the past a webinar may be scheduled to start, in minutes.
    pub max_start_in_past_minutes: i64,
    /// Chat messages one person may post per `chat_rate_window_seconds`.
    pub chat_rate_limit: u32,
    pub chat_rate_window_seconds: u64,
    /// Whether this instance runs the reactors and the meeting watcher (one leader runs each across
    /// instances anyway; `false` keeps an instance away from BBB and SIPMediaGW entirely).
    pub run_reactors: bool,
    /// Timeout of SIPMediaGW start and stop calls (they may block 10-25 s).
    pub sipmediagw_timeout_seconds: u64,
    /// Timeout of BBB calls.
    pub bbb_timeout_seconds: u64,
    /// Start attempts on one gateway before the stream fails over.
    pub stream_start_attempts: u32,
    /// First pause between attempts of an outside call (start, stop, relay); doubles each time,
    /// with jitter, up to 30 s.
    pub stream_retry_ms: u64,
    /// Stop attempts before the stream is recorded as `StreamStopFailed`.
    pub stream_stop_attempts: u32,
    /// How often the stream health watcher reads a starting or live stream's HLS playlist
    /// (0 turns the watcher off).
    pub stream_health_interval_ms: u64,
    /// A playlist that has not advanced for this long is `STALLED`.
    pub stream_health_stall_ms: u64,
    /// A live stream the audience cannot watch for this long is restarted, then failed over
    /// (0: only report it).
    pub stream_health_act_ms: u64,
    /// Timeout of one playlist read.
    pub stream_health_timeout_ms: u64,
    /// How often each instance writes again how many viewers it has open per webinar (`watching`);
    /// a count not written again for three of these (a crashed instance) no longer counts.
    pub audience_heartbeat_ms: u64,
    /// Events one reactor handles at once (different webinars; one webinar's are in order).
    pub reactor_max_in_flight: usize,
    /// A reservation whose webinar was never scheduled on its gateway is released this long after
    /// it was made (a request that crashed between its two steps).
    pub reservation_grace_seconds: u64,
    /// How often live meetings are checked with BBB, in milliseconds (without webhooks).
    pub meeting_poll_ms: u64,
    /// Take BigBlueButton's news from its webhooks (`bbb-webhooks`) instead of polling.
    pub bbb_webhooks: bool,
    /// The URL bbb-webhooks posts to (default `<public_url>/bbb/webhooks`). Deliveries are
    /// checked against it, so it must be the URL registered, exactly.
    pub bbb_webhooks_callback_url: Option<String>,
    /// Register the hook with `hooks/create` at start-up and at each sweep (turn off when
    /// bbb-webhooks has it as a `permanentURLs` entry, as behind Scalelite).
    pub bbb_webhooks_register: bool,
    /// With webhooks, how often the reconciliation sweep (`getMeetings`) runs, in seconds.
    pub bbb_sweep_seconds: u64,
    /// A live webinar still running this long after its slot ends is ended.
    pub end_grace_minutes: i64,
    /// Where audience messages go: `sipmediagw` (Pod-compatible) or `bbb` (sendChatMessage, BBB 3.0+).
    pub chat_relay: ChatRelay,
    /// Affiliations that may create webinars (Pod's `MEETING_WEBINAR_AFFILIATION`).
    pub webinar_affiliations: Vec<String>,
    /// Group whose members may create webinars (Pod's `MEETING_WEBINAR_GROUP_ADMIN`).
    pub webinar_admin_group: String,

    // Limits against hostile clients (README, section Security).
    /// Longest GraphQL query text, in bytes, checked before parsing.
    pub max_query_bytes: usize,
    /// Most fields one operation may select once its fragments are expanded (counted without
    /// expanding them, before validation).
    pub max_query_fields: usize,
    /// Most aliases in one operation.
    pub max_query_aliases: usize,
    /// Most directives in one query document.
    pub max_query_directives: usize,
    /// Most operations in one batched POST.
    pub max_batch_operations: usize,
    /// Who may introspect the schema and open GraphiQL: `on`, `authenticated` or `off`.
    pub graphql_introspection: Introspection,
    /// Origins allowed to open `/ws` (`https://pod.example.org`); empty allows any.
    #[serde(deserialize_with = "list")]
    pub ws_allowed_origins: Vec<String>,
    /// How long a socket may stay open without `connection_init`.
    pub ws_init_timeout_ms: u64,
    /// A `/ws` client that has not taken a message within this is disconnected (close 4429).
    pub ws_send_timeout_ms: u64,
    /// Private, loopback or link-local networks gateways may be registered on (CIDRs, like
    /// `10.20.0.0/16`); public addresses are always allowed.
    #[serde(deserialize_with = "list")]
    pub gateway_allowed_networks: Vec<String>,
    /// Chat messages one webinar accepts per `chat_rate_window_seconds`, all viewers together.
    pub chat_webinar_rate_limit: u32,
    /// How far ahead a webinar may be scheduled, in days.
    pub schedule_horizon_days: i64,
    /// Webinars one owner may have scheduled and not yet ended.
    pub max_upcoming_webinars_per_owner: u32,
    /// When set, tokens must carry this `iss`.
    pub jwt_issuer: Option<String>,
    /// When set, tokens must carry this `aud`.
    pub jwt_audience: Option<String>,
    /// Which site each host name serves, as `host=site` entries (`pod.univ-a.fr=univ-a`): a
    /// request without a token's `site` claim acts in its `Host`'s site, `default` for any host
    /// not listed.
    #[serde(deserialize_with = "list")]
    pub sites: Vec<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <metrics_token>`.
    pub metrics_token: Option<SecretString>,
    /// Spare gateways capacity warnings want on top of the booked webinars: a slot falls short
    /// when its webinars plus this exceed the enabled gateways (0: warn only when webinars
    /// outnumber gateways; 1: also when no gateway is left for a fail-over). Never refuses a
    /// booking.
    pub capacity_margin: u32,
    /// How often, in milliseconds, the capacity monitor looks for shortfalls (it also looks
    /// shortly after each change to the log).
    pub capacity_check_ms: u64,
    /// How far ahead, in days, the capacity monitor looks (events and the
    /// `webinar_gateway_capacity_shortfall` gauge).
    pub capacity_horizon_days: i64,
}

/// Which site each host serves (the `sites` setting).
#[derive(Debug, Clone, Default)]
pub struct SiteHosts(Arc<std::collections::HashMap<String, webinar_domain::Site>>);

impl SiteHosts {
    /// The site of a request's `Host` header (its port ignored); `default` when unlisted.
    pub fn site_of(&self, host: Option<&str>) -> webinar_domain::Site {
        host.map(|h| {
            let name = match h.rsplit_once(':') {
                // An IPv6 literal's colons are inside brackets.
                Some((name, port)) if !port.contains(']') => name,
                _ => h,
            };
            name.to_ascii_lowercase()
        })
        .and_then(|name| self.0.get(&name).cloned())
        .unwrap_or_default()
    }

    /// A host that serves `site` (the first by name, when several do).
    pub fn host_of(&self, site: &webinar_domain::Site) -> Option<&str> {
        self.0
            .iter()
            .filter(|(_, s)| *s == site)
            .map(|(host, _)| host.as_str())
            .min()
    }

    /// The public base URL of `site`: `public_url` with its host replaced by the site's host,
    /// when `sites` names one (a player sent to another site's host would not see the event).
    pub fn public_url_of(&self, public_url: &str, site: &webinar_domain::Site) -> String {
        let Some(host) = self.host_of(site) else {
            return public_url.to_owned();
        };
        let scheme = public_url.split_once("://").map_or("https", |(s, _)| s);
        format!("{scheme}://{host}")
    }
}

/// Who may introspect the schema (and open GraphiQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Introspection {
    On,
    Authenticated,
    Off,
}

/// A list setting given either as a list (TOML, `["a","b"]` in the environment) or as one
/// comma-separated string (`WEBINAR_GATEWAY_ALLOWED_NETWORKS=10.0.0.0/8,127.0.0.0/8`).
fn list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(text) => text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(items) => items,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRelay {
    Sipmediagw,
    Bbb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/webinar";

impl Default for Settings {
    fn default() -> Self {
        let policy = PermissionPolicy::default();
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            database_max_connections: 20,
            database_acquire_timeout_ms: 3_000,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            bbb_url: None,
            bbb_secret: None,
            bbb_checksum: crate::bbb::Checksum::Sha256,
            jwt_secret: None,
            log_format: LogFormat::Json,
            snapshot_every: 50,
            command_retries: 12,
            read_your_writes_timeout_ms: 5_000,
            projection_batch_size: 500,
            projection_poll_ms: 500,
            // Large enough that an oversized field is refused by its own rule, naming the field.
            max_body_bytes: 16 * 1024 * 1024,
            max_query_depth: 12,
            max_query_complexity: 10_000,
            max_webinar_minutes: 300,
            max_start_in_past_minutes: 15,
            run_reactors: true,
            sipmediagw_timeout_seconds: 30,
            bbb_timeout_seconds: 10,
            stream_start_attempts: 3,
            stream_retry_ms: 1_000,
            stream_stop_attempts: 5,
            stream_health_interval_ms: 4_000,
            stream_health_stall_ms: 12_000,
            stream_health_act_ms: 30_000,
            stream_health_timeout_ms: 5_000,
            audience_heartbeat_ms: 5_000,
            reactor_max_in_flight: 32,
            reservation_grace_seconds: 120,
            meeting_poll_ms: 15_000,
            bbb_webhooks: false,
            bbb_webhooks_callback_url: None,
            bbb_webhooks_register: true,
            bbb_sweep_seconds: 300,
            end_grace_minutes: 15,
            chat_relay: ChatRelay::Sipmediagw,
            chat_rate_limit: 5,
            chat_rate_window_seconds: 10,
            webinar_affiliations: policy.webinar_affiliations,
            webinar_admin_group: policy.webinar_admin_group,
            max_query_bytes: 32 * 1024,
            max_query_fields: 2_000,
            max_query_aliases: 100,
            max_query_directives: 50,
            max_batch_operations: 10,
            graphql_introspection: Introspection::Authenticated,
            ws_allowed_origins: Vec::new(),
            ws_init_timeout_ms: 5_000,
            ws_send_timeout_ms: 10_000,
            gateway_allowed_networks: Vec::new(),
            chat_webinar_rate_limit: 200,
            schedule_horizon_days: 400,
            max_upcoming_webinars_per_owner: 100,
            jwt_issuer: None,
            jwt_audience: None,
            sites: Vec::new(),
            metrics_token: None,
            capacity_margin: 0,
            capacity_check_ms: 60_000,
            capacity_horizon_days: 7,
        }
    }
}

/// Names of the environment variables read, beyond `WEBINAR_*`.
const RAW_ENV: &[&str] = &["DATABASE_URL"];

impl Settings {
    /// Defaults, then `file` (when given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    path.display()
                ))));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment
            .merge(Env::prefixed("WEBINAR_"))
            .merge(Env::raw().only(RAW_ENV))
            .extract()
            .map_err(Box::new)
    }

    /// Keys that sign and check tokens with `secret`, expecting the configured issuer and audience.
    pub fn jwt_keys(&self, secret: &SecretString) -> crate::auth::JwtKeys {
        crate::auth::JwtKeys::new(secret)
            .expecting(self.jwt_issuer.clone(), self.jwt_audience.clone())
    }

    pub fn permission_policy(&self) -> PermissionPolicy {
        PermissionPolicy {
            webinar_affiliations: self.webinar_affiliations.clone(),
            webinar_admin_group: self.webinar_admin_group.clone(),
        }
    }

    /// The gateway address policy; a malformed `gateway_allowed_networks` entry is an error that
    /// names it (startup fails on it).
    pub fn gateway_address_policy(
        &self,
    ) -> Result<webinar_domain::gateway::GatewayAddressPolicy, webinar_domain::gateway::BadNetwork>
    {
        webinar_domain::gateway::GatewayAddressPolicy::parse(&self.gateway_allowed_networks)
    }

    pub fn slot_rules(&self) -> webinar_domain::SlotRules {
        webinar_domain::SlotRules {
            max_duration_minutes: self.max_webinar_minutes,
            max_start_in_past_minutes: self.max_start_in_past_minutes,
            max_days_ahead: self.schedule_horizon_days,
        }
    }

    /// The BBB API, when both its URL and secret are set.
    pub fn bbb(&self) -> Option<crate::bbb::BbbApi> {
        match (&self.bbb_url, &self.bbb_secret) {
            (Some(url), Some(secret)) => Some(crate::bbb::BbbApi::new(
                url,
                secret.clone(),
                self.bbb_checksum,
            )),
            _ => None,
        }
    }

    /// What SIPMediaGW gets as `domain`: our public host and `/live/join`, without a scheme (its
    /// browser opens `https://<domain>/<room>`).
    pub fn join_domain(&self) -> String {
        let public = self.public_url();
        let host = public
            .split_once("://")
            .map_or(public.as_str(), |(_, rest)| rest);
        format!("{host}/live/join")
    }

    /// Where bbb-webhooks delivers, when webhooks are on and BigBlueButton is configured.
    pub fn bbb_webhooks(&self) -> Option<crate::bbb_webhooks::WebhookVerifier> {
        let secret = self.bbb_secret.clone().filter(|_| self.bbb_webhooks)?;
        self.bbb_url.as_ref()?;
        let url = self
            .bbb_webhooks_callback_url
            .clone()
            .unwrap_or_else(|| format!("{}/bbb/webhooks", self.public_url()));
        Some(crate::bbb_webhooks::WebhookVerifier::new(url, secret))
    }

    /// How often the meeting watcher looks at BigBlueButton: the sweep with webhooks, the poll
    /// without.
    /// The stream health watcher's settings, or `None` when it is off.
    pub fn stream_health(&self) -> Option<crate::reactors::health::HealthSettings> {
        use webinar_domain::webinar::health::HealthRules;
        (self.stream_health_interval_ms > 0).then(|| crate::reactors::health::HealthSettings {
            interval: Duration::from_millis(self.stream_health_interval_ms),
            timeout: Duration::from_millis(self.stream_health_timeout_ms.max(1)),
            rules: HealthRules {
                stall_after: Duration::from_millis(self.stream_health_stall_ms),
                act_after: (self.stream_health_act_ms > 0)
                    .then(|| Duration::from_millis(self.stream_health_act_ms)),
            },
        })
    }

    /// The `sites` setting, checked: a typo must stop the server, not put a campus in `default`.
    pub fn site_hosts(&self) -> anyhow::Result<SiteHosts> {
        let mut hosts = std::collections::HashMap::new();
        for entry in &self.sites {
            let (host, site) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("sites: {entry:?} is not host=site"))?;
            let site = webinar_domain::Site::parse(site.trim())
                .map_err(|e| anyhow::anyhow!("sites: {entry:?}: {e}"))?;
            hosts.insert(host.trim().to_ascii_lowercase(), site);
        }
        Ok(SiteHosts(Arc::new(hosts)))
    }

    pub fn audience_heartbeat(&self) -> Duration {
        Duration::from_millis(self.audience_heartbeat_ms)
    }

    pub fn meeting_check_interval(&self) -> Duration {
        if self.bbb_webhooks {
            Duration::from_secs(self.bbb_sweep_seconds.max(1))
        } else {
            Duration::from_millis(self.meeting_poll_ms.max(1))
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn database_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.database_acquire_timeout_ms.max(1))
    }

    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }

    pub fn ws_init_timeout(&self) -> Duration {
        Duration::from_millis(self.ws_init_timeout_ms.max(1))
    }

    pub fn projection_poll(&self) -> Duration {
        Duration::from_millis(self.projection_poll_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Settings {
        Figment::new()
            .merge(Toml::string(text))
            .extract()
            .expect("valid settings")
    }

    #[test]
    fn list_settings_take_a_list_or_a_comma_separated_string() {
        let listed = from_toml(r#"gateway_allowed_networks = ["10.0.0.0/8", "127.0.0.0/8"]"#);
        let joined = from_toml(r#"gateway_allowed_networks = "10.0.0.0/8, 127.0.0.0/8,""#);
        assert_eq!(
            listed.gateway_allowed_networks,
            ["10.0.0.0/8", "127.0.0.0/8"]
        );
        assert_eq!(
            joined.gateway_allowed_networks,
            listed.gateway_allowed_networks
        );
        assert!(from_toml("").gateway_allowed_networks.is_empty());
        assert_eq!(
            from_toml(r#"graphql_introspection = "off""#).graphql_introspection,
            Introspection::Off
        );
    }
}
