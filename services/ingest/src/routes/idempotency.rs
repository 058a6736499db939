//! `Idempotency-Key` on every `POST`: the first answer to a key is kept for 24 hours and
//! replayed (with `Idempotent-Replayed: true`) to a retry of the same request — same method,
//! path, query and body, compared by SHA-256; the same key with another request is a 422, and
//! while the first is still being processed a 409. A 5xx, or a request whose body the handler
//! did not read whole, keeps nothing: a retry is processed afresh. Bodies of any size work (a
//! CSV upload is hashed as it streams through).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use herald_shared::crypto::hash_api_key;
use herald_shared::db::{idempotency, tenants};
use herald_shared::domain::TenantId;
use sha2::{Digest, Sha256};

use crate::{ApiError, AppState};

const HEADER: &str = "idempotency-key";
/// The largest answer kept (upload reports list at most 1,000 refused rows).
const MAX_KEPT: usize = 16 * 1024 * 1024;

pub async fn idempotent(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER) else {
        return next.run(request).await;
    };
    let key = match key.to_str().map(str::trim) {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_owned(),
        _ => {
            return ApiError::invalid_field(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    // The handler answers 401 itself.
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| k.trim().to_owned());
    let Some(tenant) = tenant(&state, bearer).await else {
        return next.run(request).await;
    };
    match run(&state, tenant, &key, request, next).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn tenant(state: &AppState, bearer: Option<String>) -> Option<TenantId> {
    tenants::tenant_for_key(&state.pool, &hash_api_key(&bearer?))
        .await
        .ok()
        .flatten()
}

async fn run(
    state: &AppState,
    tenant: TenantId,
    key: &str,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let pool = &state.pool;
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    {
        let mut h = hasher.lock().expect("hasher poisoned");
        h.update(request.method().as_str());
        h.update(b" ");
        h.update(request.uri().path_and_query().map_or("", |p| p.as_str()));
        h.update(b"\n");
    }
    let Some(recorded) = idempotency::claim(pool, tenant, key).await? else {
        // The first request with this key: processed, its body hashed on the way.
        let (parts, body) = request.into_parts();
        let read_whole = Arc::new(AtomicBool::new(body.size_hint().exact() == Some(0)));
        let body = hashed(body, hasher.clone(), read_whole.clone());
        let response = next.run(Request::from_parts(parts, body)).await;
        if response.status().is_server_error() || !read_whole.load(Ordering::Acquire) {
            idempotency::release(pool, tenant, key).await?;
            return Ok(response);
        }
        let (parts, body) = response.into_parts();
        let bytes = match axum::body::to_bytes(body, MAX_KEPT).await {
            Ok(bytes) => bytes,
            Err(e) => {
                idempotency::release(pool, tenant, key).await?;
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "an answer to keep could not be read: {e}"
                )));
            }
        };
        let hash = hasher.lock().expect("hasher poisoned").clone().finalize();
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        idempotency::record(
            pool,
            tenant,
            key,
            &hash,
            parts.status.as_u16(),
            content_type,
            &bytes,
        )
        .await?;
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    };
    let Some(status) = recorded.status else {
        return Err(ApiError::Conflict(
            "a request with this Idempotency-Key is still being processed".into(),
        ));
    };
    // A retry: the same request?
    let mut body = request.into_body().into_data_stream();
    let mut read = 0usize;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("the body cannot be read: {e}")))?;
        read += chunk.len();
        if read > state.max_upload_bytes {
            return Err(ApiError::TooLarge(format!(
                "the body is larger than {} bytes",
                state.max_upload_bytes
            )));
        }
        hasher.lock().expect("hasher poisoned").update(&chunk);
    }
    let hash = hasher.lock().expect("hasher poisoned").clone().finalize();
    if recorded.request_hash.as_deref() != Some(hash.as_slice()) {
        return Err(ApiError::invalid_field(
            "Idempotency-Key",
            "was used with another request in the last 24 hours: use a new key",
        ));
    }
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = (status, recorded.body.unwrap_or_default()).into_response();
    let headers = response.headers_mut();
    if let Some(ct) = recorded
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(CONTENT_TYPE, ct);
    }
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

/// `body`, fed to `hasher` as it is read; `read_whole` is set once it has all been read.
fn hashed(body: Body, hasher: Arc<Mutex<Sha256>>, read_whole: Arc<AtomicBool>) -> Body {
    let chunks = body.into_data_stream().map(move |chunk| {
        if let Ok(bytes) = &chunk {
            hasher.lock().expect("hasher poisoned").update(bytes);
        }
        chunk
    });
    let end = futures::stream::once(async move {
        read_whole.store(true, Ordering::Release);
        None
    })
    .filter_map(|x: Option<Result<axum::body::Bytes, axum::Error>>| async move { x });
    Body::from_stream(chunks.chain(end))
}
