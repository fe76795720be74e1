//! Bearer tokens: HS256 JWTs whose claims describe the caller (ARCHITECTURE.md section 8).

use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use webinar_domain::Actor;

/// The claims of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    #[serde(default)]
    pub affiliations: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: i64,
}

impl Claims {
    pub fn into_actor(self) -> Actor {
        Actor {
            id: self.sub,
            name: self.name,
            affiliations: self.affiliations,
            groups: self.groups,
            roles: self.roles,
        }
    }
}

/// Why a token was refused. Messages never quote the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is malformed")]
    Malformed,
    #[error("the bearer token's signature does not verify")]
    BadSignature,
    #[error("the bearer token lacks a required claim or has an invalid one")]
    InvalidClaims,
    #[error("the Authorization header must be `Bearer <token>`")]
    BadScheme,
}

/// Signs and checks tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// A token for `claims` (the `token` command, the demo, tests).
    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        AuthError::BadSignature
                    }
                    ErrorKind::MissingRequiredClaim(_)
                    | ErrorKind::Json(_)
                    | ErrorKind::ImmatureSignature => AuthError::InvalidClaims,
                    _ => AuthError::Malformed,
                }
            })?;
        Ok(data.claims.into_actor())
    }

    /// Parses an `Authorization` header value.
    pub fn verify_header(&self, header: &str) -> Result<Actor, AuthError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::BadScheme)?;
        self.verify(token.trim())
    }
}

/// Claims valid for `ttl_seconds` from now.
pub fn claims(
    sub: &str,
    name: &str,
    affiliations: &[String],
    groups: &[String],
    roles: &[String],
    ttl_seconds: i64,
) -> Claims {
    Claims {
        sub: sub.to_owned(),
        name: name.to_owned(),
        affiliations: affiliations.to_vec(),
        groups: groups.to_vec(),
        roles: roles.to_vec(),
        exp: Utc::now().timestamp() + ttl_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn round_trips_the_claims() {
        let k = keys("s3cret");
        let token = k
            .issue(&claims(
                "u1",
                "Ada",
                &["faculty".into()],
                &[],
                &["admin".into()],
                60,
            ))
            .expect("signs");
        let actor = k
            .verify_header(&format!("Bearer {token}"))
            .expect("verifies");
        assert_eq!(actor.id, "u1");
        assert_eq!(actor.roles, vec!["admin".to_owned()]);
    }

    #[test]
    fn refuses_expired_forged_and_garbage_tokens() {
        let k = keys("s3cret");
        let expired = k
            .issue(&claims("u1", "Ada", &[], &[], &[], -3600))
            .expect("signs");
        assert_eq!(k.verify(&expired), Err(AuthError::Expired));
        let forged = keys("other")
            .issue(&claims("u1", "Ada", &[], &[], &[], 60))
            .expect("signs");
        assert_eq!(k.verify(&forged), Err(AuthError::BadSignature));
        assert_eq!(k.verify("not.a.jwt"), Err(AuthError::Malformed));
        assert_eq!(k.verify_header("Token abc"), Err(AuthError::BadScheme));
    }
}
