//! `webinar sim bbb|sipmediagw`: one simulator on its own, until Ctrl-C.

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;
use webinar_infra::config::Settings;

use crate::cli::{SimApi, SimCommand};

pub(crate) async fn simulate(settings: Settings, which: SimCommand) -> anyhow::Result<()> {
    use webinar_infra::sim::bbb::BbbSim;
    use webinar_infra::sim::sipmediagw::{Api, Release, SipMediaGwSim};
    let cancel = CancellationToken::new();
    let (router, listen, what) = match which {
        SimCommand::Bbb { listen, secret } => {
            let secret = secret
                .or_else(|| {
                    settings
                        .bbb_secret
                        .as_ref()
                        .map(|s| s.expose_secret().to_owned())
                })
                .context("give the BBB secret with --secret or WEBINAR_BBB_SECRET")?;
            (
                BbbSim::new(&secret).router(),
                listen,
                "BigBlueButton API at /bigbluebutton/api",
            )
        }
        SimCommand::Sipmediagw {
            api,
            listen,
            token,
            slots,
            faults,
            gw_ids,
            v1_8_4,
        } => {
            let (api, default_token) = match api {
                SimApi::Legacy => (Api::Legacy, Some("1234".to_owned())),
                SimApi::Gateway => (Api::Gateway, None),
                // The proxy's own default token (`allowedToken`).
                SimApi::Proxy => (Api::Proxy, Some("1234".to_owned())),
            };
            let token = token.or(default_token);
            let mut sim = SipMediaGwSim::new(api, token.as_deref()).with_slots(slots);
            if !gw_ids.is_empty() {
                let ids: Vec<&str> = gw_ids.iter().map(String::as_str).collect();
                sim = sim.with_gw_ids(&ids);
            }
            if v1_8_4 {
                sim = sim.with_release(Release::V1_8_4);
            }
            sim.set_faults(&faults);
            (sim.router(), listen, "SIPMediaGW launcher")
        }
    };
    let address = webinar_infra::sim::spawn(router, listen, cancel.clone()).await?;
    println!("simulated {what} on http://{address}");
    crate::startup::shutdown_signal().await;
    cancel.cancel();
    Ok(())
}
