//! The tenant's templates as Graph has them: syncing a WABA's list, and the pre-flight that
//! turns a campaign's template choices into checked [`CampaignTemplate`]s.

use herald_shared::db::numbers;
use herald_shared::db::templates::{self, CampaignTemplate, SyncCounts, TemplateRow};
use herald_shared::domain::TenantId;
use herald_shared::template::{Spec, Values, valid_value};
use herald_shared::whatsapp::GraphFailure;
use herald_shared::whatsapp::account;
use serde::{Deserialize, Serialize};
use sqlx::types::Json;

use crate::error::FieldError;
use crate::{ApiError, AppState};

/// How a sync of one WABA went.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WabaSync {
    pub waba_id: String,
    #[serde(flatten)]
    pub counts: SyncCounts,
    /// Why the WABA could not be read, in plain words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reads every template of each of `wabas` from Graph, with the token of one of the tenant's
/// numbers of that WABA, and stores what it read.
pub async fn sync(
    state: &AppState,
    tenant: TenantId,
    wabas: &[String],
) -> Result<Vec<WabaSync>, ApiError> {
    let mut report = Vec::with_capacity(wabas.len());
    for waba in wabas {
        let outcome = match read_waba(state, tenant, waba).await? {
            Ok(listed) => Ok(templates::replace_waba(&state.pool, tenant, waba, &listed).await?),
            Err(failure) => Err(failure.plain_words()),
        };
        match &outcome {
            Ok(counts) => tracing::info!(waba, ?counts, "templates synced"),
            Err(reason) => tracing::warn!(waba, %reason, "templates not synced"),
        }
        report.push(WabaSync {
            waba_id: waba.clone(),
            counts: outcome.clone().unwrap_or_default(),
            error: outcome.err(),
        });
    }
    Ok(report)
}

/// The WABA's templates, read with the first of its numbers' tokens that Graph takes.
async fn read_waba(
    state: &AppState,
    tenant: TenantId,
    waba: &str,
) -> Result<Result<Vec<account::GraphTemplate>, GraphFailure>, ApiError> {
    let mut last = GraphFailure::Unreachable(format!("no number of WABA {waba} to read it with"));
    for (number, sealed) in numbers::waba_tokens(&state.pool, tenant, waba).await? {
        let token = state
            .cipher
            .decrypt(&sealed, number.0.as_bytes())
            .map_err(|e| ApiError::Internal(e.into()))?;
        match account::message_templates(&state.graph, waba, &token).await {
            Ok(listed) => return Ok(Ok(listed)),
            // Another number's token may be valid where this one is not.
            Err(failure @ GraphFailure::Refused(_)) => last = failure,
            Err(failure) => return Ok(Err(failure)),
        }
    }
    Ok(Err(last))
}

/// One template a campaign asks for.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Choice {
    pub name: String,
    pub language: String,
    /// Its share of the recipients, relative to the others' (default 1).
    #[serde(default)]
    pub weight: Option<u32>,
    /// Values fixed for every recipient, by slot key (`header.media`, `button.0`, …);
    /// a recipient's own value for a key wins.
    #[serde(default)]
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    pub values: Values,
}

/// The pre-flight of a campaign's templates against the WABAs of its sender numbers: each
/// exists for every WABA (synced on demand when not yet known), is `APPROVED` in the
/// language asked for, takes the same values in every WABA, and Herald can fill it; the fixed
/// values fit its slots. `field` names a choice in errors (`template`, `templates[1]`).
pub async fn resolve(
    state: &AppState,
    tenant: TenantId,
    wabas: &[String],
    choices: &[(String, Choice)],
) -> Result<Result<Vec<CampaignTemplate>, Vec<FieldError>>, ApiError> {
    let mut synced = false;
    // Why a WABA could not be read when it was synced on demand: said with what is missing.
    let mut unread = Vec::new();
    let mut resolved = Vec::with_capacity(choices.len());
    let mut problems = Vec::new();
    for (position, (field, choice)) in choices.iter().enumerate() {
        let name = choice.name.trim();
        let language = choice.language.trim();
        let mut rows = templates::named(&state.pool, tenant, wabas, name).await?;
        if !synced && !covers(&rows, wabas, language) {
            // Not yet synced, or synced before the template was made: read Graph now.
            unread = sync(state, tenant, wabas)
                .await?
                .into_iter()
                .filter_map(|w| {
                    Some(format!(
                        "WABA {} could not be read: {}",
                        w.waba_id, w.error?
                    ))
                })
                .collect();
            synced = true;
            rows = templates::named(&state.pool, tenant, wabas, name).await?;
        }
        match check(&rows, wabas, name, language, &choice.values) {
            Ok(spec) => resolved.push(CampaignTemplate {
                position: position as i16,
                name: name.to_owned(),
                language: language.to_owned(),
                weight: choice.weight.unwrap_or(1) as i32,
                spec: Json(spec),
                fixed: Json(choice.values.clone()),
                message: None,
            }),
            Err((part, reason)) => problems.push(FieldError {
                row: None,
                field: format!("{field}.{part}"),
                reason: if unread.is_empty() {
                    reason
                } else {
                    format!("{reason} ({})", unread.join("; "))
                },
            }),
        }
    }
    Ok(if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    })
}

/// Whether every WABA has the template in `language`.
fn covers(rows: &[TemplateRow], wabas: &[String], language: &str) -> bool {
    wabas.iter().all(|w| {
        rows.iter()
            .any(|r| &r.waba_id == w && r.language == language)
    })
}

/// The template's slots, or the part of the choice that is wrong and why.
fn check(
    rows: &[TemplateRow],
    wabas: &[String],
    name: &str,
    language: &str,
    fixed: &Values,
) -> Result<Spec, (&'static str, String)> {
    if rows.is_empty() {
        return Err((
            "name",
            format!("no template named {name:?} in WABA {}", wabas.join(", ")),
        ));
    }
    let mut spec: Option<&Spec> = None;
    for waba in wabas {
        let Some(row) = rows
            .iter()
            .find(|r| &r.waba_id == waba && r.language == language)
        else {
            let mut languages: Vec<&str> = rows
                .iter()
                .filter(|r| &r.waba_id == waba)
                .map(|r| r.language.as_str())
                .collect();
            languages.dedup();
            let reason = if languages.is_empty() {
                format!("{name} does not exist in WABA {waba}")
            } else {
                format!(
                    "{name} has no {language:?} version in WABA {waba}; it has {}",
                    languages.join(", ")
                )
            };
            return Err(("language", reason));
        };
        if row.status != "APPROVED" {
            return Err((
                "name",
                format!(
                    "{name} ({language}) is {} in WABA {waba}; only an APPROVED template can be sent",
                    row.status
                ),
            ));
        }
        if let Some(what) = &row.spec.unsupported {
            return Err((
                "name",
                format!("{name} has {what}, which Herald cannot fill"),
            ));
        }
        match spec {
            Some(first) if *first != row.spec.0 => {
                return Err((
                    "name",
                    format!("{name} ({language}) takes different values in different WABAs"),
                ));
            }
            _ => spec = Some(&row.spec.0),
        }
    }
    let spec = spec.expect("at least one WABA").clone();
    let slots = spec.slots();
    for key in fixed.keys() {
        let Some(slot) = slots.iter().find(|s| s.key == key) else {
            return Err((
                "values",
                format!(
                    "{key} is not a parameter of {name}; it takes {}",
                    keys(&spec)
                ),
            ));
        };
        if let Err(reason) = valid_value(slot.kind, fixed.get(key).unwrap_or_default()) {
            return Err(("values", format!("{key} {reason}")));
        }
    }
    Ok(spec)
}

/// A template's slot keys, for messages (`body.1, body.2`, or "no values").
pub fn keys(spec: &Spec) -> String {
    let keys: Vec<String> = spec.slots().into_iter().map(|s| s.key).collect();
    if keys.is_empty() {
        "no values".into()
    } else {
        keys.join(", ")
    }
}

/// The pre-flight again, at start: each of the campaign's templates is read from Graph once
/// more (the stored copy is used when Graph cannot be reached) and must still be approved;
/// when its slots changed, every recipient must still fill them.
pub async fn recheck(
    state: &AppState,
    tenant: TenantId,
    campaign: herald_shared::domain::CampaignId,
    wabas: &[String],
) -> Result<Vec<FieldError>, ApiError> {
    let mix = templates::campaign_templates(&state.pool, campaign).await?;
    if mix.iter().all(|t| t.message.is_some()) {
        return Ok(Vec::new());
    }
    sync(state, tenant, wabas).await?;
    let mut problems = Vec::new();
    // A free-form message has no template to read again.
    for t in mix.iter().filter(|t| t.message.is_none()) {
        let field = if mix.len() == 1 {
            "template".to_owned()
        } else {
            format!("templates[{}]", t.position)
        };
        let rows = templates::named(&state.pool, tenant, wabas, &t.name).await?;
        let spec = match check(&rows, wabas, &t.name, &t.language, &t.fixed) {
            Ok(spec) => spec,
            Err((part, reason)) => {
                problems.push(FieldError {
                    row: None,
                    field: format!("{field}.{part}"),
                    reason,
                });
                continue;
            }
        };
        if spec == t.spec.0 {
            // Every recipient was checked against this spec on upload: a scan of them
            // (most of a second of Postgres at a million) would find nothing.
            continue;
        }
        let needed: Vec<String> = spec
            .slots()
            .into_iter()
            .filter(|s| s.required && t.fixed.get(&s.key).is_none())
            .map(|s| s.key)
            .collect();
        let lacking = if needed.is_empty() {
            0
        } else {
            templates::messages_missing(&state.pool, campaign, t.position, &needed).await?
        };
        if lacking == 0 {
            // Kept only once every recipient fills it, so that the stored spec is always one
            // they all fill: a start refused here scans again the next time.
            templates::set_campaign_spec(&state.pool, campaign, t.position, &spec).await?;
        } else {
            problems.push(FieldError {
                row: None,
                field: needed.join(", "),
                reason: format!(
                    "{lacking} recipients of template {} lack a value it now requires ({})",
                    t.name,
                    keys(&spec)
                ),
            });
        }
    }
    Ok(problems)
}
