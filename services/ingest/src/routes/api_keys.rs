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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    name: String,
}

/// A new key: the only answer that ever holds it.
#[derive(Serialize, Deserialize, Debug)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub row: ApiKeyRow,
    pub key: String,
}

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
pub async fn list(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<Page<ApiKeyRow>>, ApiError> {
    let limit = page.limit()?;
    let rows = tenants::api_keys(&state.pool, tenant, page.after_parsed()?, limit + 1).await?;
    Ok(Json(Page::new(rows, limit, |k| k.id.to_string())))
}

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
