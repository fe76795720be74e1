//! Gateways: administrators register and maintain the SIPMediaGW servers webinars stream through.

use async_graphql::{Context, Enum, InputObject, Object, ResultExt, SimpleObject, ID};
use chrono::{DateTime, Utc};
use webinar_domain::gateway::{
    parse_gw_ids, BrowsingName, GatewayApi as DomainApi, GatewayChanges, GatewaySpec,
};
use webinar_domain::{GatewayId, HttpUrl, InvalidValue, Label, RtmpUrl};
use webinar_infra::event_store::Written;
use webinar_infra::gateways::TokenInput;
use webinar_infra::secrets::GatewayToken;
use webinar_projections::gateways::GatewayRow;

use super::catching_up;
use super::context::parts;
use super::error::{from_command, ApiError};
use crate::state::AppState;

/// Which HTTP API a SIPMediaGW server speaks.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "DomainApi")]
pub enum GatewayApi {
    /// web.py launcher (SIPMediaGW v1.6/v1.7): `GET /start`, `/stop`, `/chat`, `/progress`.
    Legacy,
    /// FastAPI launcher (SIPMediaGW v1.8+): `POST /gateway/start|stop|command`, on one of the
    /// gateway's `gwIds`.
    Gateway,
    /// SIPMediaGW v1.8+ behind its proxy (`deploy/proxyAPI`): `POST /start` picks a gateway
    /// container and answers its id; bearer token.
    Proxy,
}

/// A live gateway: one SIPMediaGW server, the RTMP destination it pushes to, and the HLS URL the
/// audience plays. Its token is never shown; `hasToken` tells whether one is set.
#[derive(SimpleObject)]
pub struct Gateway {
    pub id: ID,
    pub name: String,
    pub rtmp_url: String,
    pub hls_url: String,
    pub broadcaster: String,
    pub sipmediagw_url: String,
    pub api: GatewayApi,
    /// `GATEWAY` API: the launcher's gateway containers a stream may run on (the docker compose
    /// projects `SIPMediaGW.sh -i` initialised).
    pub gw_ids: Vec<String>,
    /// `GATEWAY` API: the launcher's browsing script (`bigbluebutton`).
    pub browsing_name: String,
    pub enabled: bool,
    pub retired: bool,
    pub has_token: bool,
    /// Why it was disabled, when it is.
    pub disabled_reason: Option<String>,
    /// The sequence number of the gateway's last change of settings or state (reservations,
    /// which have their own read model, do not count).
    pub version: i64,
    pub registered_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The site it serves: the registering administrator's.
    pub site: String,
}

impl From<GatewayRow> for Gateway {
    fn from(row: GatewayRow) -> Self {
        Gateway {
            id: ID(row.gateway_id.to_string()),
            name: row.name,
            rtmp_url: row.rtmp_url,
            hls_url: row.hls_url,
            broadcaster: row.broadcaster,
            sipmediagw_url: row.sipmediagw_url,
            api: row.api.into(),
            gw_ids: row.gw_ids,
            browsing_name: row.browsing_name,
            enabled: row.enabled,
            retired: row.retired,
            has_token: row.has_token,
            disabled_reason: row.disabled_reason,
            version: row.version,
            registered_at: row.registered_at,
            updated_at: row.updated_at,
            site: row.site,
        }
    }
}

#[derive(InputObject)]
pub struct RegisterGatewayInput {
    pub name: String,
    /// `rtmp://` or `rtmps://`.
    pub rtmp_url: String,
    /// `http(s)://`: the HLS stream the audience plays.
    pub hls_url: String,
    pub broadcaster: String,
    /// `http(s)://`: the SIPMediaGW API. No two gateways may share one.
    pub sipmediagw_url: String,
    /// The bearer token SIPMediaGW expects. Stored apart; never shown again.
    pub sipmediagw_token: Option<String>,
    #[graphql(default_with = "GatewayApi::Legacy")]
    pub api: GatewayApi,
    /// Required for the `GATEWAY` API: the ids of the launcher's gateway containers (the project
    /// names `docker compose ls` lists on the SIPMediaGW host). A stream takes the first one no
    /// other stream holds.
    #[graphql(default)]
    pub gw_ids: Vec<String>,
    /// The launcher's browsing script (`GATEWAY` API). Default `bigbluebutton`.
    pub browsing_name: Option<String>,
}

#[derive(InputObject, Default)]
pub struct UpdateGatewayInput {
    pub name: Option<String>,
    pub rtmp_url: Option<String>,
    pub hls_url: Option<String>,
    pub broadcaster: Option<String>,
    pub sipmediagw_url: Option<String>,
    /// A new bearer token. Required when `sipmediagwUrl` changes (unless `clearToken` or
    /// `keepToken`): the old server's token must not be sent to the new one.
    pub sipmediagw_token: Option<String>,
    /// Remove the bearer token.
    pub clear_token: Option<bool>,
    /// Keep the current token although `sipmediagwUrl` changes (the same server under a new
    /// address, say). Without it, changing the URL needs a new token or `clearToken`.
    pub keep_token: Option<bool>,
    pub api: Option<GatewayApi>,
    /// Replaces the list of gateway containers.
    pub gw_ids: Option<Vec<String>>,
    pub browsing_name: Option<String>,
}

/// Parses one input field, naming it in the error.
fn field<T>(
    path: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::bad_input(path, e))
}

fn optional<T>(
    path: &str,
    raw: Option<&String>,
    parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
) -> Result<Option<T>, ApiError> {
    raw.map(|raw| field(path, raw, parse)).transpose()
}

pub fn parse_id(path: &str, id: &ID) -> Result<GatewayId, ApiError> {
    id.parse::<GatewayId>()
        .map_err(|e| ApiError::bad_input(path, e))
}

impl RegisterGatewayInput {
    fn parse(&self) -> Result<(GatewaySpec, Option<GatewayToken>), ApiError> {
        let spec = GatewaySpec {
            name: field("input.name", &self.name, Label::parse)?,
            rtmp_url: field("input.rtmpUrl", &self.rtmp_url, RtmpUrl::parse)?,
            hls_url: field("input.hlsUrl", &self.hls_url, HttpUrl::parse)?,
            broadcaster: field("input.broadcaster", &self.broadcaster, Label::parse)?,
            sipmediagw_url: field("input.sipmediagwUrl", &self.sipmediagw_url, HttpUrl::parse)?,
            api: self.api.into(),
            gw_ids: parse_gw_ids(&self.gw_ids)
                .map_err(|e| ApiError::bad_input("input.gwIds", e))?,
            browsing_name: optional(
                "input.browsingName",
                self.browsing_name.as_ref(),
                BrowsingName::parse,
            )?
            .unwrap_or_default(),
        };
        let token = optional(
            "input.sipmediagwToken",
            self.sipmediagw_token.as_ref(),
            GatewayToken::parse,
        )?;
        Ok((spec, token))
    }
}

impl UpdateGatewayInput {
    fn parse(&self) -> Result<(GatewayChanges, TokenInput), ApiError> {
        let changes = GatewayChanges {
            name: optional("input.name", self.name.as_ref(), Label::parse)?,
            rtmp_url: optional("input.rtmpUrl", self.rtmp_url.as_ref(), RtmpUrl::parse)?,
            hls_url: optional("input.hlsUrl", self.hls_url.as_ref(), HttpUrl::parse)?,
            broadcaster: optional("input.broadcaster", self.broadcaster.as_ref(), Label::parse)?,
            sipmediagw_url: optional(
                "input.sipmediagwUrl",
                self.sipmediagw_url.as_ref(),
                HttpUrl::parse,
            )?,
            api: self.api.map(Into::into),
            gw_ids: self
                .gw_ids
                .as_deref()
                .map(parse_gw_ids)
                .transpose()
                .map_err(|e| ApiError::bad_input("input.gwIds", e))?,
            browsing_name: optional(
                "input.browsingName",
                self.browsing_name.as_ref(),
                BrowsingName::parse,
            )?,
        };
        let token = optional(
            "input.sipmediagwToken",
            self.sipmediagw_token.as_ref(),
            GatewayToken::parse,
        )?;
        let keep = self.keep_token.unwrap_or(false);
        let token = match (token, self.clear_token.unwrap_or(false)) {
            (Some(_), true) => {
                return Err(ApiError::bad_input(
                    "input.clearToken",
                    "cannot both set and clear the token",
                ))
            }
            (Some(_), false) | (None, true) if keep => {
                return Err(ApiError::bad_input(
                    "input.keepToken",
                    "cannot keep the token while setting or clearing it",
                ))
            }
            (Some(token), false) => TokenInput::Set(token),
            (None, true) => TokenInput::Clear,
            (None, false) if keep => TokenInput::KeepAcrossMove,
            (None, false) => TokenInput::Keep,
        };
        Ok((changes, token))
    }
}

const PROJECTORS: &[&str] = &["gateways"];

/// Waits for the read model, then reads the gateway back; if it is still behind the write (which
/// committed), answers from the gateway's own events and says so.
async fn read_back(
    ctx: &Context<'_>,
    state: &AppState,
    written: Written<GatewayId>,
) -> Result<Gateway, ApiError> {
    let row = match state.settle(PROJECTORS, written.position).await {
        Ok(()) => state.reads().gateway_by_id(written.id).await?,
        Err(late) => {
            tracing::warn!(%late, "answering from the gateway's events");
            catching_up::mark(ctx);
            state.reads().gateway_from_log(written.id).await?
        }
    };
    row.map(Gateway::from)
        .ok_or_else(|| ApiError::not_found("gateway"))
}

#[derive(Default)]
pub struct GatewayQuery;

#[Object]
impl GatewayQuery {
    /// Every gateway, retired ones last. Administrators only.
    async fn gateways(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Gateway>> {
        async {
            let (state, request) = parts(ctx)?;
            let rows = state.reads().gateways(&request.caller).await?;
            Ok::<_, ApiError>(rows.into_iter().map(Gateway::from).collect())
        }
        .await
        .extend()
    }
}

#[derive(Default)]
pub struct GatewayMutation;

#[Object]
impl GatewayMutation {
    /// Adds a gateway; it is enabled at once.
    async fn register_gateway(
        &self,
        ctx: &Context<'_>,
        input: RegisterGatewayInput,
    ) -> async_graphql::Result<Gateway> {
        async {
            let (state, request) = parts(ctx)?;
            let (spec, token) = input.parse()?;
            let written = state
                .gateways()
                .register(&request.caller, &request.metadata(), spec, token)
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Changes any of a gateway's fields, its token included.
    async fn update_gateway(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateGatewayInput,
    ) -> async_graphql::Result<Gateway> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_id("id", &id)?;
            let (changes, token) = input.parse()?;
            let written = state
                .gateways()
                .update(&request.caller, &request.metadata(), id, changes, token)
                .await
                .map_err(|e| from_command(e, "input"))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Enables or disables a gateway; a disabled one takes no new webinars.
    async fn set_gateway_enabled(
        &self,
        ctx: &Context<'_>,
        id: ID,
        enabled: bool,
        reason: Option<String>,
    ) -> async_graphql::Result<Gateway> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_id("id", &id)?;
            let written = state
                .gateways()
                .set_enabled(&request.caller, &request.metadata(), id, enabled, reason)
                .await
                .map_err(|e| from_command(e, ""))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }

    /// Takes a gateway out of service for good; its SIPMediaGW URL becomes free again.
    async fn retire_gateway(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Gateway> {
        async {
            let (state, request) = parts(ctx)?;
            let id = parse_id("id", &id)?;
            let written = state
                .gateways()
                .retire(&request.caller, &request.metadata(), id)
                .await
                .map_err(|e| from_command(e, ""))?;
            read_back(ctx, state, written).await
        }
        .await
        .extend()
    }
}
