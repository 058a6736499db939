//! Signatures of the events Herald sends to its tenants' endpoints, as the Standard Webhooks
//! specification has them: `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
//! bytes of the secret `whsec_<base64>`. A receiver checks the signature and that the
//! timestamp is recent, and drops an id it has seen (a delivery is repeated when its answer
//! was not a 2xx in time).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const ID: &str = "webhook-id";
pub const TIMESTAMP: &str = "webhook-timestamp";
pub const SIGNATURE: &str = "webhook-signature";

const PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> SecretString {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    SecretString::from(format!("{PREFIX}{}", STANDARD.encode(key)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the secret is not whsec_ and base64")]
    BadSecret,
    #[error("no signature matches")]
    Mismatch,
}

fn mac(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<Hmac<Sha256>, SignatureError> {
    let encoded = secret.expose_secret();
    let key = STANDARD
        .decode(encoded.strip_prefix(PREFIX).unwrap_or(encoded))
        .map_err(|_| SignatureError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    Ok(mac)
}

/// The `webhook-signature` header's value for a message.
pub fn sign(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SignatureError> {
    let digest = mac(secret, id, timestamp, body)?.finalize().into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(digest)))
}

/// Checks a `webhook-signature` header (space-separated signatures, any of which may match)
/// in constant time per comparison.
pub fn verify(
    secret: &SecretString,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let expected = mac(secret, id, timestamp, body)?;
    let matches = header.split_whitespace().any(|signature| {
        let Some(encoded) = signature.strip_prefix("v1,") else {
            return false;
        };
        let Ok(given) = STANDARD.decode(encoded) else {
            return false;
        };
        expected.clone().verify_slice(&given).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specifications_example_signs_and_verifies() {
        // The example of the Standard Webhooks specification.
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let signature = sign(&secret, id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        verify(
            &secret,
            id,
            1614265330,
            body,
            &format!("v1,bm90IGl0 {signature}"),
        )
        .unwrap();
    }

    #[test]
    fn another_secret_a_changed_body_or_timestamp_does_not_verify() {
        let secret = new_secret();
        let signature = sign(&secret, "evt_1", 100, b"{}").unwrap();
        assert_eq!(
            verify(&new_secret(), "evt_1", 100, b"{}", &signature),
            Err(SignatureError::Mismatch)
        );
        assert!(verify(&secret, "evt_1", 100, b"{ }", &signature).is_err());
        assert!(verify(&secret, "evt_1", 101, b"{}", &signature).is_err());
        assert!(verify(&secret, "evt_2", 100, b"{}", &signature).is_err());
        verify(&secret, "evt_1", 100, b"{}", &signature).unwrap();
        assert!(new_secret().expose_secret().starts_with("whsec_"));
    }
}
