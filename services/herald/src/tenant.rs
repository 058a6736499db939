//! `herald tenant create`: a tenant and its first API key.

use herald_shared::crypto::new_api_key;
use herald_shared::db::tenants;
use herald_shared::domain::TenantId;
use secrecy::SecretString;
use sqlx::PgPool;

/// Creates a tenant with one API key; the key is returned once and only its hash is stored.
pub async fn create(pool: &PgPool, name: &str) -> anyhow::Result<(TenantId, SecretString)> {
    let id = TenantId::new();
    tenants::insert_tenant(pool, id, name).await?;
    let key = new_api_key();
    tenants::insert_api_key(pool, id, "default", &key.prefix, &key.hash).await?;
    Ok((id, key.key))
}
