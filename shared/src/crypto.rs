//! Secrets at rest: sender-number access tokens (AES-256-GCM) and API keys (SHA-256).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, Generate, KeyInit, Nonce, Payload};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The first byte of every stored token: which key encrypted it, so keys can rotate.
const KEY_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the token encryption key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("a stored token could not be decrypted (wrong key, or moved to another row)")]
    Decrypt,
}

/// Encrypts and decrypts access tokens. The row id is the associated data, so a ciphertext
/// copied to another row does not decrypt.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for TokenCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCipher(..)")
    }
}

impl TokenCipher {
    pub fn from_base64(key: &SecretString) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| CryptoError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    pub fn encrypt(&self, token: &SecretString, row_id: &[u8]) -> Vec<u8> {
        let nonce = Nonce::<Aes256Gcm>::generate();
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: token.expose_secret().as_bytes(),
                    aad: row_id,
                },
            )
            .expect("AES-GCM encryption of a short token cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(KEY_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn decrypt(&self, stored: &[u8], row_id: &[u8]) -> Result<SecretString, CryptoError> {
        if stored.len() < 1 + NONCE_LEN || stored[0] != KEY_VERSION {
            return Err(CryptoError::Decrypt);
        }
        let nonce = Nonce::<Aes256Gcm>::try_from(&stored[1..1 + NONCE_LEN])
            .map_err(|_| CryptoError::Decrypt)?;
        let plain = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &stored[1 + NONCE_LEN..],
                    aad: row_id,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        let token = String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretString::from(token))
    }
}

/// A freshly made API key: shown to the user once; only `hash` is stored.
pub struct NewApiKey {
    pub key: SecretString,
    pub prefix: String,
    pub hash: Vec<u8>,
}

/// Makes an API key `hk_<8 chars>_<43 chars>`: 256 random bits, so an unsalted hash is safe.
pub fn new_api_key() -> NewApiKey {
    let random: [u8; 32] = rand::random();
    let body = URL_SAFE_NO_PAD.encode(random);
    let prefix = format!("hk_{}", &body[..8]);
    let key = format!("{prefix}_{}", &body[8..]);
    let hash = hash_api_key(&key);
    NewApiKey {
        key: SecretString::from(key),
        prefix,
        hash,
    }
}

pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> TokenCipher {
        TokenCipher::from_base64(&SecretString::from(STANDARD.encode([7u8; 32]))).unwrap()
    }

    #[test]
    fn a_token_round_trips_for_its_own_row_only() {
        let c = cipher();
        let sealed = c.encrypt(&SecretString::from("EAAG-token"), b"row-1");
        assert_eq!(
            c.decrypt(&sealed, b"row-1").unwrap().expose_secret(),
            "EAAG-token"
        );
        assert!(c.decrypt(&sealed, b"row-2").is_err());
        assert!(!sealed.windows(4).any(|w| w == b"EAAG"));
    }

    #[test]
    fn a_short_or_wrong_key_is_refused() {
        assert!(TokenCipher::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        assert!(TokenCipher::from_base64(&SecretString::from("not base64!")).is_err());
    }

    #[test]
    fn api_keys_are_unique_and_hash_stably() {
        let a = new_api_key();
        let b = new_api_key();
        assert_ne!(a.key.expose_secret(), b.key.expose_secret());
        assert!(a.key.expose_secret().starts_with(&a.prefix));
        assert_eq!(hash_api_key(a.key.expose_secret()), a.hash);
    }
}
