//! `GET /v1/openapi.json`: the API's OpenAPI 3.1 document, made from the handlers' own
//! annotations as the router is built (every route is registered through them), then finished
//! here with what every operation shares: the API-key scheme and its 401 on `/v1`, and the
//! error body on every 4xx and 5xx.

use std::sync::Arc;

use axum::Extension;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::InfoBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Components, ObjectBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Response, Tag, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::error::ErrorBody;

/// The document, serialized once.
#[derive(Clone)]
pub struct Document(pub Arc<[u8]>);

/// This document (OpenAPI 3.1, JSON).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "this document", body = Object, content_type = "application/json")))]
pub async fn document(Extension(doc): Extension<Document>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], doc.0.to_vec())
}

/// The document's start: what the annotations do not say.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("Herald")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "WhatsApp Business template campaigns: sender numbers, templates, suppressions, \
             campaigns and their recipients, live progress and per-message results. Every \
             `/v1` route but this document takes `Authorization: Bearer <API key>`. Lists \
             answer `{\"items\": [...], \"next_cursor\"}` a page at a time (`?limit=&cursor=`). \
             A `POST` with an `Idempotency-Key` header answers the same key and body within \
             24 h with the first answer again; the same key with another body is a 422.",
        ))
        .build();
    let tags = [
        ("api-keys", "the tenant's API keys"),
        ("numbers", "sender numbers and business portfolios"),
        ("templates", "message templates, synced from the Cloud API"),
        ("suppressions", "recipients never to send to"),
        (
            "campaigns",
            "campaigns, their recipients and their live progress",
        ),
        ("messages", "a campaign's messages, listed or exported"),
        ("webhook-events", "what Meta's webhooks sent"),
        ("inbound", "what users sent to the tenant's numbers"),
        ("media", "files uploaded to Meta, to send by id"),
        (
            "webhook-endpoints",
            "where Herald tells the tenant of campaigns, numbers, failures, replies and opt-outs",
        ),
        ("operations", "probes, metrics and this document"),
    ]
    .map(|(name, about)| {
        let mut tag = Tag::new(name);
        tag.description = Some(about.to_owned());
        tag
    });
    OpenApiBuilder::new().info(info).tags(Some(tags)).build()
}

/// Adds what every operation shares to the document the router collected.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    let components = doc.components.get_or_insert_with(Components::new);
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    components.schemas.extend(schemas);
    components.security_schemes.insert(
        "api_key".to_owned(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "an API key (`herald tenant create` or POST /v1/api-keys)",
                ))
                .build(),
        )),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let secured = path.starts_with("/v1/") && path != "/v1/openapi.json";
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            finish_operation(operation, secured);
        }
    }
    doc
}

fn finish_operation(operation: &mut Operation, secured: bool) {
    let responses = &mut operation.responses.responses;
    if secured {
        operation.security = Some(vec![SecurityRequirement::new("api_key", [] as [&str; 0])]);
        responses.insert(
            "401".to_owned(),
            RefOr::T(Response::new(
                "no API key, or one that is not valid (or was revoked)",
            )),
        );
        let mut limited = Response::new(
            "past the API key's request rate (`ingest.requests_per_key_per_s`), or, for an \
             upload, the tenant's uploads at once (`ingest.max_uploads_per_tenant`): try again \
             after `Retry-After` seconds",
        );
        limited.headers.insert(
            "Retry-After".to_owned(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("seconds to wait"))
                    .build(),
            ),
        );
        responses.insert("429".to_owned(), RefOr::T(limited));
        responses.insert(
            "default".to_owned(),
            RefOr::T(Response::new(
                "any other error: 400 (unreadable), 409 (a retry with an Idempotency-Key while \
                 the first is still processed), 413 (body too large), 415 (wrong content \
                 type), 422 (invalid, or an Idempotency-Key reused with another request), 500, \
                 503 (the database did not answer within `ingest.statement_timeout_ms`)",
            )),
        );
    }
    for (status, response) in responses.iter_mut() {
        let error = status == "default" || status.starts_with('4') || status.starts_with('5');
        if let RefOr::T(response) = response
            && error
            && response.content.is_empty()
        {
            response.content.insert(
                "application/json".to_owned(),
                RefOr::T(
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                        .build(),
                ),
            );
        }
    }
}
