//! Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

pub const HEADER: &str = "x-hub-signature-256";

/// The header value for `body` signed with `secret`.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a signature was refused; logged, never returned to the caller in detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Hub-Signature-256 header")]
    Missing,
    #[error("the header is not sha256=<64 hex digits>")]
    Malformed,
    #[error("the signature matches no configured app secret")]
    Mismatch,
}

/// Checks `header` against `body` with each secret, in constant time per comparison.
pub fn verify(
    secrets: &[SecretString],
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    // Meta sends 64 lowercase hex digits; anything else (uppercase included) is refused, so
    // every flipped byte of the header is a mismatch.
    let is_lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if hex_digest.len() != 64 || !hex_digest.iter().all(is_lower_hex) {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(body);
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secrets() -> Vec<SecretString> {
        vec![
            SecretString::from("old-secret"),
            SecretString::from("app-secret"),
        ]
    }

    #[test]
    fn a_body_signed_with_any_configured_secret_verifies() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        for s in secrets() {
            let header = sign(&s, body);
            assert_eq!(verify(&secrets(), body, Some(header.as_bytes())), Ok(()));
        }
    }

    #[test]
    fn missing_malformed_and_foreign_signatures_are_refused() {
        let body = b"{}";
        assert_eq!(verify(&secrets(), body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(&secrets(), body, Some(b"sha1=abc")),
            Err(SignatureError::Malformed)
        );
        let foreign = sign(&SecretString::from("someone-else"), body);
        assert_eq!(
            verify(&secrets(), body, Some(foreign.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    proptest! {
        #[test]
        fn any_flipped_byte_in_body_or_signature_is_refused(
            body in proptest::collection::vec(any::<u8>(), 1..512),
            index in any::<prop::sample::Index>(),
            in_body in any::<bool>(),
            bit in 0u8..8,
        ) {
            let secret = SecretString::from("app-secret");
            let mut header = sign(&secret, &body).into_bytes();
            let mut body = body;
            if in_body {
                let i = index.index(body.len());
                body[i] ^= 1 << bit;
            } else {
                let i = index.index(header.len());
                header[i] ^= 1 << bit;
            }
            prop_assert!(verify(&[secret], &body, Some(&header)).is_err());
        }
    }
}
