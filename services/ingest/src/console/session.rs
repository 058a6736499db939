//! The console's sign-in: the API key, sealed (AES-GCM with the token key) into a session
//! cookie that lives as long as the browser session, at most `MAX_AGE`; HttpOnly, so no page
//! script can read it, and SameSite=Strict, so no other site's form can use it. It never
//! appears in a URL. Every request made with it is checked by the API as any other.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use herald_shared::crypto::TokenCipher;
use secrecy::{ExposeSecret, SecretString};

use super::Console;
use super::api::Api;

pub const COOKIE_NAME: &str = "herald_console";
/// Associated data of the sealed cookie: a token sealed for a number cannot pass for one.
const AAD: &[u8] = b"herald console session";
/// Longest a sign-in lasts, whatever the browser keeps.
const MAX_AGE_S: i64 = 12 * 3600;

/// The cookie's value: the key and when it was signed in with, sealed.
pub fn seal(cipher: &TokenCipher, key: &SecretString) -> String {
    let now = chrono::Utc::now().timestamp();
    let plain = SecretString::from(format!("{now}:{}", key.expose_secret()));
    URL_SAFE_NO_PAD.encode(cipher.encrypt(&plain, AAD))
}

fn open(cipher: &TokenCipher, value: &str) -> Option<SecretString> {
    let sealed = URL_SAFE_NO_PAD.decode(value).ok()?;
    let plain = cipher.decrypt(&sealed, AAD).ok()?;
    let (at, key) = plain.expose_secret().split_once(':')?;
    let age = chrono::Utc::now().timestamp() - at.parse::<i64>().ok()?;
    (0..MAX_AGE_S)
        .contains(&age)
        .then(|| SecretString::from(key.to_owned()))
}

/// The `Set-Cookie` value that signs in (or, with `None`, out).
pub fn set_cookie(console: &Console, value: Option<&str>, headers: &HeaderMap) -> String {
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"https"));
    let path = if console.base.is_empty() {
        "/"
    } else {
        &console.base
    };
    let (value, expiry) = match value {
        Some(v) => (v, ""),
        None => ("", "; Max-Age=0"),
    };
    format!(
        "{COOKIE_NAME}={value}; Path={path}; HttpOnly; SameSite=Strict{expiry}{}",
        if secure { "; Secure" } else { "" }
    )
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A signed-in request: the API as its key. Without a valid session, the browser is sent to
/// the sign-in page.
pub struct Signed(pub Api);

impl FromRequestParts<Arc<Console>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        if parts.method != Method::GET
            && parts.method != Method::HEAD
            && !same_origin(&parts.headers)
        {
            return Err((
                axum::http::StatusCode::FORBIDDEN,
                "a form of another site cannot act in the console",
            )
                .into_response());
        }
        cookie(&parts.headers, COOKIE_NAME)
            .and_then(|value| open(&console.cipher, value))
            .map(|key| Signed(Api::new(console.api.clone(), key)))
            .ok_or_else(|| Redirect::to(&console.href("/sign-in")).into_response())
    }
}

/// Whether a form comes from the console's own pages: a browser names the page's origin in
/// `Origin` on every POST; one that does not is a client with no cookies of another site.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or(headers.get(HOST))
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_with_its_cipher_only_and_not_once_expired() {
        let cipher = TokenCipher::from_base64(&SecretString::from(
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_owned(),
        ))
        .unwrap();
        let other = TokenCipher::from_base64(&SecretString::from(
            "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".to_owned(),
        ))
        .unwrap();
        let key = SecretString::from("hk_live_secret".to_owned());
        let sealed = seal(&cipher, &key);
        assert!(!sealed.contains("hk_live_secret"));
        assert_eq!(
            open(&cipher, &sealed).map(|k| k.expose_secret().to_owned()),
            Some("hk_live_secret".into())
        );
        assert!(open(&other, &sealed).is_none());
        assert!(open(&cipher, "not-a-cookie").is_none());
        let old = SecretString::from(format!(
            "{}:hk_live_secret",
            chrono::Utc::now().timestamp() - MAX_AGE_S - 1
        ));
        let expired = URL_SAFE_NO_PAD.encode(cipher.encrypt(&old, AAD));
        assert!(open(&cipher, &expired).is_none());
    }

    #[test]
    fn a_form_posted_from_another_site_is_told_apart() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, "herald.example:8080".parse().unwrap());
        assert!(
            same_origin(&headers),
            "no Origin: not a browser's cross-site form"
        );
        headers.insert(ORIGIN, "http://herald.example:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, "https://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
