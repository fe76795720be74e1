//! DNS for the SIPMediaGW client: a gateway's host name is resolved at each connection, and only
//! addresses the gateway address policy accepts are used.
//!
//! Registration accepts host names (a name cannot be judged before it is resolved, and it may
//! resolve differently tomorrow). Checking here, on the addresses the socket will actually use,
//! defeats DNS rebinding: a name that answered with a public address at registration and with
//! `169.254.169.254` or `127.0.0.1` now gets no connection, and so never sees the bearer token.
//! (IP literals never reach a resolver; the client checks those itself before each request.)

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use webinar_domain::gateway::{AddressRefused, GatewayAddressPolicy};

/// The system resolver, filtered by the policy.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    policy: Arc<GatewayAddressPolicy>,
}

impl PolicyResolver {
    pub fn new(policy: Arc<GatewayAddressPolicy>) -> Self {
        Self { policy }
    }

    /// The addresses of `host` the policy accepts; an error when there is none.
    pub async fn lookup(
        &self,
        host: &str,
    ) -> Result<Vec<SocketAddr>, Box<dyn StdError + Send + Sync>> {
        self.policy.check_name(host)?;
        let resolved = tokio::net::lookup_host((host, 0)).await?;
        let (usable, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
            resolved.partition(|address| self.policy.check_ip(address.ip()).is_ok());
        if !refused.is_empty() {
            tracing::warn!(
                host = %host.chars().take(255).collect::<String>(),
                refused = ?refused.iter().map(SocketAddr::ip).collect::<Vec<_>>(),
                "a gateway's name resolved to addresses the gateway address policy refuses"
            );
        }
        if usable.is_empty() {
            return Err(Box::new(AddressRefused::NoUsableAddress));
        }
        Ok(usable)
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.clone();
        Box::pin(async move {
            let addresses = resolver.lookup(name.as_str()).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The policy's refusal somewhere in `error`'s chain of sources (a connection the resolver
/// refused), if any.
pub fn refusal_within(error: &(dyn StdError + 'static)) -> Option<AddressRefused> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(refused) = error.downcast_ref::<AddressRefused>() {
            return Some(refused.clone());
        }
        next = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(allowed: &[&str]) -> PolicyResolver {
        PolicyResolver::new(Arc::new(
            GatewayAddressPolicy::parse(allowed).expect("valid networks"),
        ))
    }

    #[tokio::test]
    async fn resolved_addresses_the_policy_refuses_are_dropped() {
        // The system resolver hands an address literal back as is: it stands for a name that
        // resolves to that address.
        let refused = resolver(&[])
            .lookup("127.0.0.1")
            .await
            .expect_err("refused");
        assert_eq!(
            refusal_within(&*refused),
            Some(AddressRefused::NoUsableAddress)
        );
        let refused = resolver(&[])
            .lookup("169.254.169.254")
            .await
            .expect_err("refused");
        assert!(refusal_within(&*refused).is_some());
        let allowed = resolver(&["127.0.0.0/8"])
            .lookup("127.0.0.1")
            .await
            .expect("allowed");
        assert_eq!(allowed, [SocketAddr::from(([127, 0, 0, 1], 0))]);
        let refused = resolver(&[])
            .lookup("localhost")
            .await
            .expect_err("refused");
        assert_eq!(refusal_within(&*refused), Some(AddressRefused::LocalName));
    }
}
