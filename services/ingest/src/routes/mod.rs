//! The `/v1` router, API-key authentication and the JSON body extractor.

pub mod api_keys;
pub mod campaigns;
pub mod events;
pub mod idempotency;
pub mod inbound;
pub mod media;
pub mod messages;
pub mod numbers;
pub mod openapi;
pub mod operations;
pub mod page;
pub mod suppressions;
pub mod templates;
pub mod webhook_endpoints;
pub mod webhook_events;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::{Extension, Router};
use herald_shared::crypto::hash_api_key;
use herald_shared::db::tenants;
use herald_shared::domain::TenantId;
use serde::de::DeserializeOwned;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::{ApiError, AppState};

/// The router, built from the handlers' OpenAPI annotations: each route is registered with
/// its operation, so `GET /v1/openapi.json` describes exactly what is served.
pub fn router(state: Arc<AppState>, max_body_bytes: usize, max_upload_bytes: usize) -> Router {
    let (router, doc) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(api_keys::create))
        .routes(routes!(api_keys::list))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(numbers::create))
        .routes(routes!(numbers::list))
        .routes(routes!(numbers::get))
        .routes(routes!(numbers::update))
        .routes(routes!(numbers::delete))
        .routes(routes!(numbers::test))
        .routes(routes!(numbers::update_token))
        .routes(routes!(numbers::resume))
        .routes(routes!(numbers::set_portfolio_limit))
        .routes(routes!(suppressions::add))
        .routes(routes!(suppressions::list))
        .routes(routes!(suppressions::remove))
        .routes(routes!(templates::list))
        .routes(routes!(templates::sync))
        .routes(routes!(webhook_events::list))
        .routes(routes!(inbound::list))
        .routes(routes!(media::upload).layer(DefaultBodyLimit::max(max_upload_bytes)))
        .routes(routes!(webhook_endpoints::create))
        .routes(routes!(webhook_endpoints::list))
        .routes(routes!(webhook_endpoints::get))
        .routes(routes!(webhook_endpoints::update))
        .routes(routes!(webhook_endpoints::delete))
        .routes(routes!(webhook_endpoints::rotate_secret))
        .routes(routes!(webhook_endpoints::deliveries))
        .routes(routes!(webhook_endpoints::retry))
        .routes(routes!(campaigns::create))
        .routes(routes!(campaigns::list))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::add_recipients).layer(DefaultBodyLimit::max(max_upload_bytes)))
        .routes(routes!(campaigns::upload_errors))
        .routes(routes!(events::stream))
        .routes(routes!(messages::list))
        .routes(routes!(messages::export))
        .routes(routes!(campaigns::start))
        .routes(routes!(campaigns::schedule))
        .routes(routes!(campaigns::unschedule))
        .routes(routes!(campaigns::pause))
        .routes(routes!(campaigns::resume))
        .routes(routes!(campaigns::cancel))
        .routes(routes!(openapi::document))
        .routes(routes!(operations::healthz))
        .routes(routes!(operations::livez))
        .routes(routes!(operations::readyz))
        .split_for_parts();
    let doc = serde_json::to_vec(&openapi::finish(doc)).expect("the OpenAPI document serializes");
    router
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            idempotency::idempotent,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            "ingest",
            herald_shared::telemetry::timed,
        ))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(openapi::Document(doc.into())))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// An extractor's rejection in the API's shape, keeping the status axum gave it (413 for a
/// body past the limit, 415 for a missing JSON content type, 422 for JSON of the wrong shape).
pub fn rejected(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid {
            message: text,
            fields: Vec::new(),
        },
        _ => ApiError::BadRequest(text),
    }
}

/// The whole body, at most `limit` bytes (a 413 past it).
pub async fn body_bytes(request: Request, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|e| {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return ApiError::TooLarge(format!("the body is larger than {limit} bytes"));
                }
                cause = c.source();
            }
            ApiError::BadRequest(format!("the body cannot be read: {e}"))
        })
}

/// A JSON body read whole: 400 when it is not JSON, 422 when it is JSON of the wrong shape.
pub fn json_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let text = format!("the JSON body does not fit: {e}");
        match e.classify() {
            serde_json::error::Category::Data => rejected(StatusCode::UNPROCESSABLE_ENTITY, text),
            _ => ApiError::BadRequest(text),
        }
    })
}

/// A 415 for a body of media type `got` where `expected` are read.
pub fn unsupported(got: &str, expected: &str) -> ApiError {
    let got = if got.is_empty() { "none" } else { got };
    ApiError::UnsupportedMediaType(format!(
        "Content-Type {got} is not read here: send {expected}"
    ))
}

/// The request's media type (`text/csv`), lower case, without parameters; empty when none.
pub fn media_type(request: &Request) -> String {
    request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

/// The `{id}` of a campaign's routes, as their OpenAPI operations name it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path for the OpenAPI document; handlers read `ApiPath`
pub struct CampaignPath {
    /// The campaign.
    id: herald_shared::domain::CampaignId,
}

/// The `{id}` of a number's routes, as their OpenAPI operations name it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path for the OpenAPI document; handlers read `ApiPath`
pub struct NumberPath {
    /// The number (Herald's id).
    id: herald_shared::domain::NumberId,
}

/// The tenant whose API key came with the request.
pub struct Tenant(pub TenantId);

impl FromRequestParts<Arc<AppState>> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let hash = hash_api_key(key.trim());
        let tenant = tenants::tenant_for_key(&state.pool, &hash)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        state.admission.request(&hash)?;
        Ok(Self(tenant))
    }
}

/// `Path<T>` whose rejections use the API's error shape.
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejected(rejection.status(), rejection.body_text())),
        }
    }
}

/// A JSON body (`application/json`) whose rejections use the API's error shape; a string that
/// holds a NUL is a 422 naming where.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media = media_type(&req);
        let json = media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"));
        if !json {
            return Err(unsupported(&media, "application/json"));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| rejected(rejection.status(), rejection.body_text()))?;
        refuse_nul(&bytes)?;
        json_body(&bytes).map(Self)
    }
}

/// A 422 naming the first string (or key) of a JSON body that holds a NUL (`\u0000`), which
/// Postgres's text cannot store. Bodies without the escape are not parsed twice.
pub fn refuse_nul(bytes: &[u8]) -> Result<(), ApiError> {
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        // Not JSON: the parse that follows says so.
        return Ok(());
    };
    match nul_at(&value, String::new()) {
        Some(path) => Err(ApiError::invalid_field(
            &path,
            "must not contain NUL (\\u0000)",
        )),
        None => Ok(()),
    }
}

/// Where in `value` a string or key holds a NUL: `templates[0].values.body\01`.
fn nul_at(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let at = match path.is_empty() {
                true => key.escape_debug().to_string(),
                false => format!("{path}.{}", key.escape_debug()),
            };
            if key.contains('\0') {
                Some(at)
            } else {
                nul_at(item, at)
            }
        }),
        _ => None,
    }
}

/// `Query<T>` whose rejections use the API's error shape.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // `%00` is a NUL: nothing a query names may hold one.
        let query = parts.uri.query().unwrap_or_default();
        if let Some(pair) = query
            .split('&')
            .find(|pair| pair.to_ascii_lowercase().contains("%00"))
        {
            let name = pair.split('=').next().unwrap_or_default();
            return Err(ApiError::invalid_field(
                &name.replace("%00", "\\0"),
                "must not contain NUL (%00)",
            ));
        }
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[\\PC]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z.]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// `value` with a NUL put into its first string, or wrapped in an object holding one.
    fn with_nul(value: Value) -> Value {
        fn poison(v: &mut Value) -> bool {
            match v {
                Value::String(s) => {
                    s.push('\u{0}');
                    true
                }
                Value::Array(items) => items.iter_mut().any(poison),
                Value::Object(fields) => fields.values_mut().any(poison),
                _ => false,
            }
        }
        let mut value = value;
        if poison(&mut value) {
            value
        } else {
            json!({"wrapped": [value, "a\u{0}b"]})
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn any_body_is_read_or_refused_without_panicking(
            body in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = refuse_nul(&body);
            let _ = json_body::<Value>(&body);
            let _ = json_body::<campaigns::CreateCampaign>(&body);
        }

        #[test]
        fn a_nul_anywhere_in_a_json_body_is_refused_naming_where(value in any_json()) {
            let body = serde_json::to_vec(&with_nul(value)).unwrap();
            match refuse_nul(&body) {
                Err(ApiError::Invalid { fields, .. }) => {
                    prop_assert_eq!(fields.len(), 1);
                    prop_assert!(!fields[0].field.is_empty());
                    let nul = '\u{0}';
                    prop_assert!(!fields[0].field.contains(nul), "{:?}", fields[0].field);
                }
                other => prop_assert!(false, "not refused: {:?}", other.err()),
            }
        }
    }
}
