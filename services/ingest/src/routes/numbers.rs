//! `POST /v1/numbers`: register a sender number. The access token is cleaned of what pasting
//! adds (spaces, quotes, a `Bearer ` prefix), encrypted before it is stored and never returned.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use herald_shared::db::numbers::{self, NewNumber};
use herald_shared::domain::{NumberId, NumberState};
use herald_shared::stream::registry;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ApiJson, ApiPath, Tenant};
use crate::error::FieldError;
use crate::{ApiError, AppState};

/// The most a number can be granted by Meta (reference §3.1).
const MAX_THROUGHPUT: u32 = 1000;

#[derive(Deserialize)]
pub struct CreateNumber {
    phone_number_id: String,
    waba_id: String,
    display_number: String,
    access_token: SecretString,
    /// Meta's cap for this number (80 by default, up to 1,000).
    throughput_ceiling: Option<u32>,
    /// The rate to start sending at; defaults to the configured rate, capped by the ceiling.
    rate: Option<u32>,
    portfolio_id: Option<String>,
}

/// A sender number as the API shows it (never with its token).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NumberView {
    pub id: NumberId,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_number: String,
    pub state: NumberState,
    pub throughput_ceiling: u32,
    pub rate: u32,
    /// The business portfolio whose daily recipient limit the number shares.
    #[serde(default)]
    pub portfolio_id: Option<String>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiJson(req): ApiJson<CreateNumber>,
) -> Result<(StatusCode, axum::Json<NumberView>), ApiError> {
    let mut problems = Vec::new();
    let mut require = |field: &str, value: &str| {
        if value.trim().is_empty() {
            problems.push(FieldError {
                row: None,
                field: field.into(),
                reason: "is required".into(),
            });
        }
    };
    require("phone_number_id", &req.phone_number_id);
    require("waba_id", &req.waba_id);
    require("display_number", &req.display_number);
    let token = clean_token(req.access_token.expose_secret());
    if token.is_none() {
        require("access_token", "");
    }
    let ceiling = req.throughput_ceiling.unwrap_or(80);
    if !(1..=MAX_THROUGHPUT).contains(&ceiling) {
        problems.push(FieldError {
            row: None,
            field: "throughput_ceiling".into(),
            reason: format!("must be between 1 and {MAX_THROUGHPUT}"),
        });
    }
    let rate = req.rate.unwrap_or(state.default_rate).min(ceiling).max(1);
    if !problems.is_empty() {
        return Err(ApiError::Invalid {
            message: "the number is incomplete".into(),
            details: problems,
        });
    }
    let portfolio = req
        .portfolio_id
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let id = NumberId::new();
    let token = token.expect("checked above");
    let token = state.cipher.encrypt(&token, id.0.as_bytes());
    let inserted = numbers::insert_number(
        &state.pool,
        &NewNumber {
            id,
            tenant,
            phone_number_id: req.phone_number_id.trim(),
            waba_id: req.waba_id.trim(),
            display_number: req.display_number.trim(),
            access_token: &token,
            throughput_ceiling: ceiling as i32,
            current_rate: rate as i32,
            portfolio_id: portfolio.as_deref(),
        },
    )
    .await?;
    if !inserted {
        return Err(ApiError::Conflict(format!(
            "phone_number_id {} is already registered",
            req.phone_number_id.trim()
        )));
    }
    let mut redis = state.redis.clone();
    registry::add_number(&mut redis, &state.keys, id).await?;
    tracing::info!(number = %id, phone_number_id = %req.phone_number_id, "sender number registered");
    Ok((
        StatusCode::CREATED,
        axum::Json(NumberView {
            id,
            phone_number_id: req.phone_number_id.trim().to_owned(),
            waba_id: req.waba_id.trim().to_owned(),
            display_number: req.display_number.trim().to_owned(),
            state: NumberState::Active,
            throughput_ceiling: ceiling,
            rate,
            portfolio_id: portfolio,
        }),
    ))
}

#[derive(Deserialize)]
pub struct NewToken {
    access_token: SecretString,
}

/// Replaces a number's access token (after a 190, say) and lets it send again.
pub async fn update_token(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
    ApiJson(req): ApiJson<NewToken>,
) -> Result<StatusCode, ApiError> {
    let Some(token) = clean_token(req.access_token.expose_secret()) else {
        return Err(ApiError::Invalid {
            message: "the token is empty".into(),
            details: vec![FieldError {
                row: None,
                field: "access_token".into(),
                reason: "is required".into(),
            }],
        });
    };
    let token = state.cipher.encrypt(&token, id.0.as_bytes());
    if !numbers::resume_number(&state.pool, tenant, id, Some(&token)).await? {
        return Err(ApiError::NotFound("number"));
    }
    tracing::info!(number = %id, "access token replaced; number active");
    Ok(StatusCode::NO_CONTENT)
}

/// Lets a paused number send again (after an operator fixed what paused it).
pub async fn resume(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    ApiPath(id): ApiPath<NumberId>,
) -> Result<StatusCode, ApiError> {
    if !numbers::resume_number(&state.pool, tenant, id, None).await? {
        return Err(ApiError::NotFound("number"));
    }
    tracing::info!(number = %id, "number resumed");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
pub struct PortfolioLimit {
    /// Unique recipients per rolling 24 h (Meta's messaging limit: 250, 2,000, 10,000,
    /// 100,000); `null` for unlimited.
    daily_recipient_limit: Option<u32>,
}

/// Sets the messaging limit of a business portfolio, shared by the tenant's numbers that name
/// it as their `portfolio_id`. Messages to new recipients beyond it wait for capacity.
pub async fn set_portfolio_limit(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    axum::extract::Path(portfolio): axum::extract::Path<String>,
    ApiJson(req): ApiJson<PortfolioLimit>,
) -> Result<StatusCode, ApiError> {
    let limit = match req.daily_recipient_limit {
        None => None,
        Some(n) if (1..=i32::MAX as u32).contains(&n) => Some(n as i32),
        Some(_) => {
            return Err(ApiError::Invalid {
                message: "the limit is out of range".into(),
                details: vec![FieldError {
                    row: None,
                    field: "daily_recipient_limit".into(),
                    reason: "must be at least 1, or null for unlimited".into(),
                }],
            });
        }
    };
    numbers::set_portfolio_limit(&state.pool, tenant, portfolio.trim(), limit).await?;
    tracing::info!(portfolio = %portfolio, ?limit, "portfolio limit set");
    Ok(StatusCode::NO_CONTENT)
}

/// An access token as pasted: surrounding white space and quotes, and a `Bearer ` prefix
/// (copied from a header), taken off; `None` when nothing is left. A Graph token never
/// contains white space or quotes itself.
fn clean_token(raw: &str) -> Option<SecretString> {
    let mut token = raw.trim();
    loop {
        let before = token;
        token = token.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
        if let Some(prefix) = token.get(..7)
            && prefix.eq_ignore_ascii_case("bearer ")
        {
            token = &token[7..];
        }
        if token == before {
            break;
        }
    }
    // A pasted "Bearer " alone is no token.
    let empty = token.is_empty() || token.eq_ignore_ascii_case("bearer");
    (!empty).then(|| SecretString::from(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cleaned(raw: &str) -> Option<String> {
        clean_token(raw).map(|t| t.expose_secret().to_owned())
    }

    #[test]
    fn pasted_tokens_lose_their_spaces_quotes_and_bearer_prefix() {
        for raw in [
            "EAAGtoken",
            "  EAAGtoken\n",
            "\"EAAGtoken\"",
            "'EAAGtoken'",
            "Bearer EAAGtoken",
            "bearer   EAAGtoken",
            " \"Bearer EAAGtoken\" ",
            "'BEARER EAAGtoken'\r\n",
        ] {
            assert_eq!(cleaned(raw).as_deref(), Some("EAAGtoken"), "{raw:?}");
        }
        for empty in ["", "   ", "\"\"", "Bearer ", "' Bearer  '"] {
            assert_eq!(cleaned(empty), None, "{empty:?}");
        }
    }

    proptest! {
        #[test]
        fn any_wrapping_of_a_token_cleans_back_to_it(
            token in "[A-Za-z0-9_-]{1,60}",
            before in "[ \t\"']{0,3}",
            bearer in proptest::bool::ANY,
            after in "[ \t\r\n\"']{0,3}",
        ) {
            let raw = format!("{before}{}{token}{after}", if bearer { "Bearer " } else { "" });
            prop_assert_eq!(cleaned(&raw), Some(token));
        }
    }
}
