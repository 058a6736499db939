//! The console's way to the API: the `/v1` router itself, called in-process with the signed-in
//! key as the bearer header. Every page is made of public API answers, so whatever the console
//! does a client can do with curl, under the same rules (validation, limits, rate).

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::multipart::Field;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, Request, StatusCode};
use axum::response::Response;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

/// Largest API answer a page reads whole (a page of 100 items is far below).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// What the API refused, as a page shows it.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
    /// Each field (or upload row) and what is wrong with it.
    pub fields: Vec<(String, String)>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// The API's error body (`{"error": {"message", "fields"}}`), or its status alone.
    fn from_answer(status: StatusCode, body: &[u8]) -> Self {
        let parsed: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let error = &parsed["error"];
        let message = error["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| status.to_string());
        let fields = error["fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .map(|f| {
                        let name = f["field"].as_str().unwrap_or_default().to_owned();
                        let reason = f["reason"].as_str().unwrap_or_default().to_owned();
                        (name, reason)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            status,
            message,
            fields,
        }
    }
}

/// The API, as one signed-in key.
#[derive(Clone)]
pub struct Api {
    router: Router,
    key: SecretString,
}

impl Api {
    pub fn new(router: Router, key: SecretString) -> Self {
        Self { router, key }
    }

    /// The API's answer to one request, whatever its status.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Body,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path).header(
            AUTHORIZATION,
            format!("Bearer {}", self.key.expose_secret()),
        );
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request.body(body).expect("a request of valid parts");
        let mut router = self.router.clone();
        match tower_service::Service::call(&mut router, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Reads an answer: its JSON when 2xx, else what the API refused.
    pub async fn read<T: DeserializeOwned>(response: Response) -> Result<T, Refusal> {
        let status = response.status();
        let body = match axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await {
            Ok(body) => body,
            Err(e) => {
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("the API's answer could not be read: {e}"),
                ));
            }
        };
        if !status.is_success() {
            return Err(Refusal::from_answer(status, &body));
        }
        let body = if body.is_empty() {
            Bytes::from_static(b"null")
        } else {
            body
        };
        serde_json::from_slice(&body).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!("the API answered what the console does not read: {e}"),
            )
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Refusal> {
        Self::read(self.call(Method::GET, path, None, Body::empty()).await).await
    }

    /// Sends `json` with `method` (POST, PUT…) and reads the answer.
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: &serde_json::Value,
    ) -> Result<T, Refusal> {
        let body = Body::from(serde_json::to_vec(json).expect("JSON serializes"));
        Self::read(
            self.call(method, path, Some("application/json"), body)
                .await,
        )
        .await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        json: &serde_json::Value,
    ) -> Result<T, Refusal> {
        self.send(Method::POST, path, json).await
    }

    /// POSTs a form's file field as `text/csv`, streamed as it arrives (never held whole).
    pub async fn post_file(&self, path: &str, mut field: Field<'_>) -> Response {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let body = Body::from_stream(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        }));
        let pump = async move {
            loop {
                let chunk = match field.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(e) => Err(std::io::Error::other(e.to_string())),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        };
        let call = self.call(Method::POST, path, Some("text/csv"), body);
        let ((), response) = tokio::join!(pump, call);
        response
    }

    pub async fn delete(&self, path: &str) -> Result<(), Refusal> {
        let response = self.call(Method::DELETE, path, None, Body::empty()).await;
        Self::read::<serde_json::Value>(response).await.map(|_| ())
    }

    /// Whether the key is one the API takes.
    pub async fn signs_in(&self) -> Result<bool, Refusal> {
        let response = self
            .call(Method::GET, "/v1/numbers?limit=1", None, Body::empty())
            .await;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(false),
            _ => Self::read::<serde_json::Value>(response)
                .await
                .map(|_| true),
        }
    }
}
