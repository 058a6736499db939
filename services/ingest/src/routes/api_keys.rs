//! A tenant's API keys: made (the key shown once; only its hash is kept), listed, revoked. A
//! revoked key is refused from the moment the revocation commits, by every ingest replica:
//! keys are looked up on every request, never cached.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::crypto::new_api_key;
use herald_shared::db::tenants::{self, ApiKeyRow, Revoke};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::page::{Page, PageQuery};
use super::{ApiJson, ApiPath, ApiQuery, Tenant};
use crate::{ApiError, AppState};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// What the key is for (1 to 100 characters).
    name: String,
}

/// A new key: the only answer that ever holds it.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub row: ApiKeyRow,
    pub key: String,
}

/// Makes an API key; the answer is the only one that ever shows it.
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", operation_id = "create_api_key",
    request_body = NewKey,
    responses(
        (status = 201, description = "the key, shown this once", body = CreatedKey),
        (status = 422, description = "the name is empty or longer than 100 characters"),
    ))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid_field(
            "name",
            "must be 1 to 100 characters",
        ));
    }
    let key = new_api_key();
    let row = tenants::insert_api_key(&state.pool, tenant, name, &key.prefix, &key.hash).await?;
    tracing::info!(key = %row.id, prefix = %row.prefix, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            row,
            key: key.key.expose_secret().to_owned(),
        }),
    ))
}

/// The tenant's active keys, oldest first: ids, names, prefixes, when made and last used.
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", operation_id = "list_api_keys",
    params(PageQuery),
    responses((status = 200, description = "a page of keys", body = Page<ApiKeyRow>)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<ApiKeyRow>>, ApiError> {
    let limit = page.limit()?;
    let rows = tenants::api_keys(&state.pool, tenant, page.after_parsed()?, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |k| k.id.to_string())))
}

/// Revokes a key: every request with it is refused from then on, by every replica.
#[utoipa::path(delete, path = "/v1/api-keys/{id}", tag = "api-keys", operation_id = "revoke_api_key",
    params(("id" = uuid::Uuid, Path, description = "the key's id")),
    responses(
        (status = 204, description = "revoked"),
        (status = 404, description = "no such key"),
        (status = 409, description = "the tenant's last key: create another first"),
    ))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    match tenants::revoke_api_key(&state.pool, tenant, id).await? {
        Revoke::Revoked => {
            tracing::info!(key = %id, "API key revoked");
            Ok(StatusCode::NO_CONTENT)
        }
        Revoke::NotFound => Err(ApiError::NotFound("API key")),
        Revoke::Last => Err(ApiError::Conflict(
            "this is the tenant's last API key: create another first".into(),
        )),
    }
}
