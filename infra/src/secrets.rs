//! Gateway bearer tokens, kept out of the event log.
//!
//! A token is written to `gateway_secrets` before the event that names it by fingerprint, so the
//! log, snapshots, read models and audit exports never contain it. The fingerprint is a salted
//! hash, so even a short token cannot be guessed back from it.

use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use webinar_domain::{GatewayId, InvalidValue, TokenFingerprint};

/// A SIPMediaGW bearer token as given by an administrator: 1..=1024 visible ASCII characters (it
/// travels in an `Authorization` header). Its `Debug` never shows it.
#[derive(Debug, Clone)]
pub struct GatewayToken(SecretString);

impl GatewayToken {
    pub const MAX_LEN: usize = 1024;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let token = raw.trim();
        if token.is_empty() {
            return Err(InvalidValue("must not be empty".into()));
        }
        if token.len() > Self::MAX_LEN {
            return Err(InvalidValue(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue(
                "must be visible ASCII characters without spaces".into(),
            ));
        }
        Ok(Self(SecretString::from(token.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

fn fingerprint(salt: &[u8], token: &str) -> TokenFingerprint {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(token.as_bytes());
    let digest = hex::encode(hasher.finalize());
    TokenFingerprint::from_hex(format!("sha256:{}", &digest[..32]))
}

/// Stores `token` for `gateway` and returns the fingerprint to put in the event.
pub async fn store_gateway_token(
    pool: &PgPool,
    gateway: GatewayId,
    token: &GatewayToken,
) -> Result<TokenFingerprint, sqlx::Error> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let fingerprint = fingerprint(&salt, token.expose());
    sqlx::query(
        "insert into gateway_secrets (gateway_id, fingerprint, salt, token) values ($1, $2, $3, $4)",
    )
    .bind(gateway.as_uuid())
    .bind(fingerprint.as_str())
    .bind(hex::encode(salt))
    .bind(token.expose())
    .execute(pool)
    .await?;
    Ok(fingerprint)
}

/// The token that `fingerprint` names, for the SIPMediaGW client.
pub async fn gateway_token(
    pool: &PgPool,
    gateway: GatewayId,
    fingerprint: &TokenFingerprint,
) -> Result<Option<SecretString>, sqlx::Error> {
    let token: Option<String> = sqlx::query_scalar(
        "select token from gateway_secrets where gateway_id = $1 and fingerprint = $2",
    )
    .bind(gateway.as_uuid())
    .bind(fingerprint.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(token.map(SecretString::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_visible_ascii_and_never_debug_printed() {
        let token = GatewayToken::parse(" 1234 ").expect("valid");
        assert_eq!(token.expose(), "1234");
        assert!(!format!("{token:?}").contains("1234"));
        assert!(GatewayToken::parse("").is_err());
        assert!(GatewayToken::parse("a b").is_err());
        assert!(GatewayToken::parse("é").is_err());
    }

    #[test]
    fn the_fingerprint_depends_on_the_salt() {
        let a = fingerprint(b"salt-a", "1234");
        let b = fingerprint(b"salt-b", "1234");
        assert_ne!(a, b);
        assert!(!a.as_str().contains("1234"));
    }
}
