//! Bearer tokens: HS256 JWTs whose claims describe the caller (ARCHITECTURE.md section 8).

use chrono::{DateTime, Utc};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use webinar_domain::{Actor, Site};

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
    /// Not valid before (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Checked only when `jwt_issuer` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Checked only when `jwt_audience` is set (a string or a list in tokens we receive).
    #[serde(default, skip_serializing)]
    pub aud: Option<serde_json::Value>,
    /// The site the person acts in; without it, the site of the host the request came to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
}

/// The prefix of our own components' actor ids (`system:meeting-watcher`): no token may claim it.
pub const SYSTEM_SUBJECT_PREFIX: &str = "system:";

/// Most entries in one of a token's lists (groups, roles, affiliations).
const MAX_CLAIM_ENTRIES: usize = 1_000;

impl Claims {
    /// The person, in the token's site (or `site` when the token names none).
    pub fn into_actor(self, site: Site) -> Result<Actor, AuthError> {
        let site = match self.site {
            Some(claimed) => Site::parse(&claimed).map_err(|_| AuthError::InvalidClaims)?,
            None => site,
        };
        Ok(Actor {
            id: self.sub,
            name: self.name,
            affiliations: self.affiliations,
            groups: self.groups,
            roles: self.roles,
            site,
        })
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
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    #[error("the bearer token was issued for another issuer or audience")]
    WrongIssuerOrAudience,
    #[error("the bearer token's subject is reserved for the server's own components")]
    ReservedSubject,
    #[error("this host serves another site: its tokens must carry a `site` claim")]
    SiteClaimRequired,
}

/// A verified caller and when their token expires.
#[derive(Debug, Clone)]
pub struct Verified {
    pub actor: Actor,
    pub expires_at: DateTime<Utc>,
    /// Whether the token named the site (else the actor is in the default site, for the caller to
    /// replace with the host's).
    pub site_claimed: bool,
}

impl Verified {
    /// The actor, at a host serving `host_site`. A token that names its site acts there, whatever
    /// the host. One that names none is a `default`-site token: refused on another site's host, or
    /// anyone could pick a site by sending its `Host`.
    pub fn actor_at(self, host_site: &Site) -> Result<Actor, AuthError> {
        if !self.site_claimed && host_site.as_str() != Site::DEFAULT {
            return Err(AuthError::SiteClaimRequired);
        }
        Ok(self.actor)
    }
}

/// Signs and checks tokens with one shared secret.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtKeys {
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        // Checked below, only when configured.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
            issuer: None,
            audience: None,
        }
    }

    /// Tokens must carry `iss` = `issuer` and an `aud` naming `audience`, when set; tokens we
    /// issue carry them.
    pub fn expecting(mut self, issuer: Option<String>, audience: Option<String>) -> Self {
        if let Some(issuer) = &issuer {
            self.validation.set_issuer(&[issuer]);
            self.validation
                .required_spec_claims
                .insert("iss".to_owned());
        }
        if let Some(audience) = &audience {
            self.validation.set_audience(&[audience]);
            self.validation.validate_aud = true;
            self.validation
                .required_spec_claims
                .insert("aud".to_owned());
        }
        self.issuer = issuer;
        self.audience = audience;
        self
    }

    /// A token for `claims` (the `token` command, the demo, tests), with the expected issuer and
    /// audience.
    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        #[derive(Serialize)]
        struct Issued<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
        }
        let mut claims = claims.clone();
        if claims.iss.is_none() {
            claims.iss.clone_from(&self.issuer);
        }
        let issued = Issued {
            claims: &claims,
            aud: self.audience.as_deref(),
        };
        encode(&Header::new(Algorithm::HS256), &issued, &self.encoding)
    }

    pub fn verify(&self, token: &str) -> Result<Actor, AuthError> {
        self.verify_until(token).map(|verified| verified.actor)
    }

    /// The caller and the expiry of their token (a socket is closed then).
    pub fn verify_until(&self, token: &str) -> Result<Verified, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let data =
            decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => AuthError::Expired,
                    ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                        AuthError::WrongIssuerOrAudience
                    }
                    ErrorKind::MissingRequiredClaim(_) => {
                        match self.issuer.is_some() || self.audience.is_some() {
                            true => AuthError::WrongIssuerOrAudience,
                            false => AuthError::InvalidClaims,
                        }
                    }
                    ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => {
                        AuthError::BadSignature
                    }
                    ErrorKind::Json(_) => AuthError::InvalidClaims,
                    _ => AuthError::Malformed,
                }
            })?;
        let claims = data.claims;
        if claims.sub.trim_start().starts_with(SYSTEM_SUBJECT_PREFIX) {
            return Err(AuthError::ReservedSubject);
        }
        webinar_domain::Person::parse(&claims.sub, &claims.name)
            .map_err(|_| AuthError::InvalidClaims)?;
        for list in [&claims.affiliations, &claims.groups, &claims.roles] {
            let bad = |entry: &String| entry.len() > 200 || entry.chars().any(char::is_control);
            if list.len() > MAX_CLAIM_ENTRIES || list.iter().any(bad) {
                return Err(AuthError::InvalidClaims);
            }
        }
        let expires_at = DateTime::from_timestamp(claims.exp, 0).ok_or(AuthError::InvalidClaims)?;
        let site_claimed = claims.site.is_some();
        Ok(Verified {
            actor: claims.into_actor(Site::default())?,
            expires_at,
            site_claimed,
        })
    }

    /// Parses an `Authorization` header value.
    pub fn verify_header(&self, header: &str) -> Result<Actor, AuthError> {
        self.verify_header_until(header)
            .map(|verified| verified.actor)
    }

    /// Parses an `Authorization` header value, keeping the token's expiry.
    pub fn verify_header_until(&self, header: &str) -> Result<Verified, AuthError> {
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::BadScheme)?;
        self.verify_until(token.trim())
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
        nbf: None,
        iss: None,
        aud: None,
        site: None,
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

    #[test]
    fn refuses_tokens_not_yet_valid_reserved_subjects_and_control_characters() {
        let k = keys("s3cret");
        let mut early = claims("u1", "Ada", &[], &[], &[], 3600);
        early.nbf = Some(Utc::now().timestamp() + 600);
        let early = k.issue(&early).expect("signs");
        assert_eq!(k.verify(&early), Err(AuthError::NotYetValid));
        let system = k
            .issue(&claims(
                "system:meeting-watcher",
                "Watcher",
                &[],
                &[],
                &[],
                60,
            ))
            .expect("signs");
        assert_eq!(k.verify(&system), Err(AuthError::ReservedSubject));
        for (sub, name, groups) in [
            ("u1", "A\0da", vec![]),
            ("u\u{1}", "Ada", vec![]),
            ("u1", "Ada", vec!["g\0".to_owned()]),
        ] {
            let token = k
                .issue(&claims(sub, name, &[], &groups, &[], 60))
                .expect("signs");
            assert_eq!(
                k.verify(&token),
                Err(AuthError::InvalidClaims),
                "{sub} {name}"
            );
        }
    }

    #[test]
    fn checks_issuer_and_audience_when_configured() {
        let strict =
            keys("s3cret").expecting(Some("https://idp.univ.fr".into()), Some("webinar".into()));
        let plain = keys("s3cret");
        let ours = strict
            .issue(&claims("u1", "Ada", &[], &[], &[], 60))
            .expect("signs");
        assert!(strict.verify(&ours).is_ok());
        // Another application's token from the same secret, or one with no iss/aud, is refused.
        let bare = plain
            .issue(&claims("u1", "Ada", &[], &[], &[], 60))
            .expect("signs");
        assert_eq!(strict.verify(&bare), Err(AuthError::WrongIssuerOrAudience));
        let other =
            keys("s3cret").expecting(Some("https://idp.univ.fr".into()), Some("pod".into()));
        let foreign = other
            .issue(&claims("u1", "Ada", &[], &[], &[], 60))
            .expect("signs");
        assert_eq!(
            strict.verify(&foreign),
            Err(AuthError::WrongIssuerOrAudience)
        );
        // Unconfigured, iss and aud are ignored.
        assert!(plain.verify(&ours).is_ok());
    }
}
