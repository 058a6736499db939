//! `POST /v1/media`: uploads a file to a sender number's WhatsApp Business Account (Graph
//! `POST /{phone_number_id}/media`) and answers Meta's media id, so that campaigns send one
//! file by id instead of a link Meta fetches again for every message.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use herald_shared::domain::NumberId;
use herald_shared::whatsapp::account;
use serde::{Deserialize, Serialize};

use super::{Tenant, rejected};
use crate::{ApiError, AppState};

const MB: usize = 1024 * 1024;

/// The file types Meta takes, the message kind each is sent as, and Meta's size limit.
const TYPES: &[(&str, &str, usize)] = &[
    ("image/jpeg", "image", 5 * MB),
    ("image/png", "image", 5 * MB),
    ("image/webp", "sticker", 500 * 1024),
    ("video/mp4", "video", 16 * MB),
    ("video/3gpp", "video", 16 * MB),
    ("audio/aac", "audio", 16 * MB),
    ("audio/amr", "audio", 16 * MB),
    ("audio/mpeg", "audio", 16 * MB),
    ("audio/mp4", "audio", 16 * MB),
    ("audio/ogg", "audio", 16 * MB),
    ("text/plain", "document", 100 * MB),
    ("application/pdf", "document", 100 * MB),
    ("application/msword", "document", 100 * MB),
    ("application/vnd.ms-excel", "document", 100 * MB),
    ("application/vnd.ms-powerpoint", "document", 100 * MB),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "document",
        100 * MB,
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "document",
        100 * MB,
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "document",
        100 * MB,
    ),
];

/// The file's type: the one its part declares, else the one its name's extension says.
fn file_type(
    declared: Option<&str>,
    file_name: &str,
) -> Option<&'static (&'static str, &'static str, usize)> {
    let declared = declared
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty() && t != "application/octet-stream");
    let by_extension = || {
        let extension = file_name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match extension.as_str() {
            "jpg" | "jpeg" => "image/jpeg",
            "png" => "image/png",
            "webp" => "image/webp",
            "mp4" => "video/mp4",
            "3gp" => "video/3gpp",
            "aac" => "audio/aac",
            "amr" => "audio/amr",
            "mp3" => "audio/mpeg",
            "m4a" => "audio/mp4",
            "ogg" | "opus" => "audio/ogg",
            "txt" => "text/plain",
            "pdf" => "application/pdf",
            "doc" => "application/msword",
            "xls" => "application/vnd.ms-excel",
            "ppt" => "application/vnd.ms-powerpoint",
            "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            _ => return None,
        })
    };
    let name = match declared {
        Some(t) => Some(t),
        None => by_extension().map(str::to_owned),
    }?;
    TYPES.iter().find(|(t, _, _)| *t == name)
}

/// The upload form (`multipart/form-data`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // describes the form for the OpenAPI document; the handler streams it
pub struct MediaForm {
    /// The sender number whose WhatsApp Business Account keeps the file.
    number_id: NumberId,
    /// The file: JPEG or PNG up to 5 MB, WebP stickers up to 500 KB, MP4 or 3GPP video and
    /// AAC, AMR, MP3, M4A or OGG audio up to 16 MB, PDF, text and Office documents up to
    /// 100 MB. Its type is the part's `Content-Type`, else its name's extension.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub struct MediaUploaded {
    /// Meta's media id: a campaign message sends the file by it (`{"image": {"id": …}}`).
    pub id: String,
    pub number_id: NumberId,
    pub mime_type: String,
    /// The message type it is sent as: `image`, `sticker`, `video`, `audio` or `document`.
    pub kind: String,
    pub file_name: String,
    pub bytes: usize,
}

/// Uploads a file to the number's WhatsApp Business Account and answers its media id.
#[utoipa::path(post, path = "/v1/media", tag = "media", operation_id = "upload_media",
    request_body(content((MediaForm = "multipart/form-data"))),
    responses(
        (status = 200, description = "Meta's media id for the file", body = MediaUploaded),
        (status = 404, description = "no such number"),
        (status = 422, description = "no number_id or file, a type Meta does not take, or a file over its type's limit"),
        (status = 502, description = "the Cloud API refused the upload (its error in plain words)"),
    ))]
pub async fn upload(
    State(state): State<Arc<AppState>>,
    Tenant(tenant): Tenant,
    request: Request,
) -> Result<Json<MediaUploaded>, ApiError> {
    let _slot = state.admission.upload(tenant)?;
    let mut form = Multipart::from_request(request, &state)
        .await
        .map_err(|e| rejected(e.status(), e.body_text()))?;
    let mut number = None;
    let mut file = None;
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| rejected(e.status(), e.body_text()))?
    {
        match field.name() {
            Some("number_id") => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| rejected(e.status(), e.body_text()))?;
                let id = text
                    .trim()
                    .parse::<NumberId>()
                    .map_err(|_| ApiError::invalid_field("number_id", "is not a number's id"))?;
                number = Some(id);
            }
            Some("file") => {
                let file_name = field.file_name().unwrap_or("file").to_owned();
                let &(mime_type, kind, most) = file_type(field.content_type(), &file_name)
                    .ok_or_else(|| {
                        ApiError::invalid_field(
                            "file",
                            "is of a type Meta does not take: JPEG, PNG, WebP, MP4, 3GPP, AAC, \
                             AMR, MP3, M4A, OGG, PDF, text or Office documents",
                        )
                    })?;
                let mut bytes = Vec::new();
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| rejected(e.status(), e.body_text()))?
                {
                    if bytes.len() + chunk.len() > most {
                        return Err(ApiError::invalid_field(
                            "file",
                            format!(
                                "is larger than Meta takes for {mime_type} ({} KB)",
                                most / 1024
                            ),
                        ));
                    }
                    bytes.extend_from_slice(&chunk);
                }
                if bytes.is_empty() {
                    return Err(ApiError::invalid_field("file", "is empty"));
                }
                file = Some((file_name, mime_type, kind, bytes));
            }
            _ => {}
        }
    }
    let number = number.ok_or_else(|| ApiError::invalid_field("number_id", "is required"))?;
    let (file_name, mime_type, kind, bytes) =
        file.ok_or_else(|| ApiError::invalid_field("file", "is required"))?;
    let (row, token) = super::numbers::with_token(&state, tenant, number).await?;
    let id = account::upload_media(
        &state.graph,
        &row.phone_number_id,
        &token,
        &file_name,
        mime_type,
        &bytes,
    )
    .await
    .map_err(|failure| ApiError::Upstream(failure.plain_words()))?;
    tracing::info!(number = %number, mime_type, bytes = bytes.len(), "media uploaded");
    Ok(Json(MediaUploaded {
        id,
        number_id: number,
        mime_type: mime_type.to_owned(),
        kind: kind.to_owned(),
        file_name,
        bytes: bytes.len(),
    }))
}
