//! The end-callback URL we give BigBlueButton (`meta_endCallbackUrl`): signed, so that only BBB,
//! which got the URL from us, can end a webinar through it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use webinar_domain::WebinarId;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone)]
pub struct CallbackSigner {
    key: Vec<u8>,
}

impl CallbackSigner {
    /// A key derived from the JWT secret: one secret to configure, separate uses.
    pub fn from_secret(secret: &SecretString) -> Self {
        let mut mac =
            HmacSha256::new_from_slice(secret.expose_secret().as_bytes()).unwrap_or_else(|_| {
                HmacSha256::new_from_slice(b"webinar").expect("HMAC takes any key")
            });
        mac.update(b"bbb-end-callback");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, webinar: WebinarId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(webinar.to_string().as_bytes());
        mac
    }

    pub fn sign(&self, webinar: WebinarId) -> String {
        hex::encode(self.mac(webinar).finalize().into_bytes())
    }

    /// Constant-time check of `signature` for `webinar`.
    pub fn verify(&self, webinar: WebinarId, signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(webinar).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }

    /// The URL BBB calls when the meeting ends.
    pub fn callback_url(&self, public_url: &str, webinar: WebinarId) -> String {
        format!(
            "{public_url}/callbacks/bbb/end/{webinar}?sig={}",
            self.sign(webinar)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_signature_for_that_webinar_verifies() {
        let signer = CallbackSigner::from_secret(&SecretString::from("s".to_owned()));
        let (a, b) = (WebinarId::new(), WebinarId::new());
        let signature = signer.sign(a);
        assert!(signer.verify(a, &signature));
        assert!(!signer.verify(b, &signature));
        assert!(!signer.verify(a, "zz"));
        let other = CallbackSigner::from_secret(&SecretString::from("t".to_owned()));
        assert!(!other.verify(a, &signature));
    }
}
