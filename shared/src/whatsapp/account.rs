//! The management reads a sender makes (reference §5): a number's profile, to test its
//! connection, and a WABA's templates, every page.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{CloudApiClient, GraphFailure};

/// `GET /{phone_number_id}` (reference §5.1), the fields Herald shows.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PhoneNumberProfile {
    #[serde(default)]
    pub verified_name: Option<String>,
    #[serde(default)]
    pub display_phone_number: Option<String>,
    /// `GREEN`, `YELLOW`, `RED`, `UNKNOWN`.
    #[serde(default)]
    pub quality_rating: Option<String>,
    /// Must be `CONNECTED` to send.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub name_status: Option<String>,
    #[serde(default)]
    pub throughput: Option<Throughput>,
    /// The portfolio's tier, `TIER_250` … `TIER_UNLIMITED`.
    #[serde(default)]
    pub whatsapp_business_manager_messaging_limit: Option<String>,
    /// The deprecated per-number tier, read when the portfolio's is missing.
    #[serde(default, skip_serializing)]
    pub messaging_limit_tier: Option<String>,
    #[serde(default)]
    pub health_status: Option<HealthStatus>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Throughput {
    /// `STANDARD` (80 mps), `HIGH` (1,000 mps), `NOT_APPLICABLE`.
    pub level: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
pub struct HealthStatus {
    /// `AVAILABLE`, `LIMITED`, `BLOCKED`.
    pub can_send_message: String,
}

impl PhoneNumberProfile {
    pub fn messaging_limit(&self) -> Option<&str> {
        self.whatsapp_business_manager_messaging_limit
            .as_deref()
            .or(self.messaging_limit_tier.as_deref())
    }

    pub fn throughput_level(&self) -> Option<&str> {
        self.throughput.as_ref().map(|t| t.level.as_str())
    }

    /// The most messages per second Meta grants this number, by its throughput level.
    pub fn throughput_cap(&self) -> Option<u32> {
        match self.throughput_level()? {
            "HIGH" => Some(1000),
            "STANDARD" => Some(80),
            _ => None,
        }
    }
}

const PROFILE_FIELDS: &str = "verified_name,display_phone_number,quality_rating,status,\
name_status,throughput,whatsapp_business_manager_messaging_limit,messaging_limit_tier,\
health_status";

/// A number's profile, read with its own token: the connection test.
pub async fn phone_number(
    client: &CloudApiClient,
    phone_number_id: &str,
    token: &SecretString,
) -> Result<PhoneNumberProfile, GraphFailure> {
    if !is_graph_id(phone_number_id) {
        return Err(GraphFailure::Unreachable(
            "the phone_number_id is not a Graph id (letters, digits, '-' and '_' only)".into(),
        ));
    }
    client
        .get(&format!("{phone_number_id}?fields={PROFILE_FIELDS}"), token)
        .await
}

/// A file uploaded to a number's WhatsApp Business Account: what Graph answers.
#[derive(Debug, Clone, Deserialize)]
struct Uploaded {
    id: String,
}

/// Uploads a file for `phone_number_id`'s messages (`POST /{phone_number_id}/media`,
/// `multipart/form-data`); answers Meta's media id, to send the file by.
pub async fn upload_media(
    client: &CloudApiClient,
    phone_number_id: &str,
    token: &SecretString,
    file_name: &str,
    mime_type: &str,
    file: &[u8],
) -> Result<String, GraphFailure> {
    if !is_graph_id(phone_number_id) {
        return Err(GraphFailure::Unreachable(
            "the phone_number_id is not a Graph id (letters, digits, '-' and '_' only)".into(),
        ));
    }
    let boundary = format!("herald-{:032x}", rand::random::<u128>());
    // Quotes and line breaks would end the header they are in.
    let file_name: String = file_name
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
        .collect();
    let mut body = Vec::with_capacity(file.len() + 512);
    for (name, value) in [("messaging_product", "whatsapp"), ("type", mime_type)] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: {mime_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type =
        hyper::header::HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
            .expect("a boundary of letters, digits and a dash");
    let uploaded: Uploaded = client
        .post_form(
            &format!("{phone_number_id}/media"),
            token,
            content_type,
            body.into(),
        )
        .await?;
    Ok(uploaded.id)
}

/// A template as Graph lists it (reference §5.2); `components` are kept as Meta wrote them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct GraphTemplate {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub language: String,
    pub status: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub sub_category: Option<String>,
    /// `POSITIONAL` (the default) or `NAMED`.
    #[serde(default)]
    pub parameter_format: Option<String>,
    #[serde(default)]
    pub components: Vec<serde_json::Value>,
    #[serde(default)]
    pub quality_score: Option<QualityScore>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct QualityScore {
    pub score: String,
}

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    /// Present while there are more pages.
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

const TEMPLATE_FIELDS: &str =
    "name,language,status,category,sub_category,components,parameter_format,quality_score";

/// Most pages read of one list: 100 per page, so 50,000 templates or numbers, far beyond
/// Meta's per-WABA caps; a cursor that never ends stops here rather than looping.
const MAX_PAGES: usize = 500;

/// Every template of `waba_id`.
pub async fn message_templates(
    client: &CloudApiClient,
    waba_id: &str,
    token: &SecretString,
) -> Result<Vec<GraphTemplate>, GraphFailure> {
    let path = format!("{waba_id}/message_templates?fields={TEMPLATE_FIELDS}&limit=100");
    every_page(client, waba_id, &path, token, "template list").await
}

#[derive(Deserialize)]
struct Listed {
    id: String,
}

/// The `phone_number_id`s `waba_id` lists (Graph `GET /{waba-id}/phone_numbers`).
pub async fn waba_phone_numbers(
    client: &CloudApiClient,
    waba_id: &str,
    token: &SecretString,
) -> Result<Vec<String>, GraphFailure> {
    let path = format!("{waba_id}/phone_numbers?fields=id&limit=100");
    let listed: Vec<Listed> = every_page(client, waba_id, &path, token, "number list").await?;
    Ok(listed.into_iter().map(|n| n.id).collect())
}

/// Every item of a list of `waba_id`'s starting at `path`, following `paging.cursors.after`
/// while Graph says there is a `next` page. The cursor goes to the configured Graph host,
/// never to the host `next` names.
async fn every_page<T: serde::de::DeserializeOwned>(
    client: &CloudApiClient,
    waba_id: &str,
    path: &str,
    token: &SecretString,
    what: &str,
) -> Result<Vec<T>, GraphFailure> {
    if !is_graph_id(waba_id) {
        return Err(GraphFailure::Unreachable(
            "the waba_id is not a Graph id (letters, digits, '-' and '_' only)".into(),
        ));
    }
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut page_path = path.to_owned();
        if let Some(cursor) = &after {
            page_path.push_str("&after=");
            page_path.push_str(&percent_encode(cursor));
        }
        let page: Page<T> = client.get(&page_path, token).await?;
        items.extend(page.data);
        let next = page.paging.and_then(|p| match (p.next, p.cursors) {
            (Some(_), Some(Cursors { after: Some(a) })) => Some(a),
            _ => None,
        });
        match next {
            Some(cursor) if after.as_ref() != Some(&cursor) => after = Some(cursor),
            _ => return Ok(items),
        }
    }
    Err(GraphFailure::Unreachable(format!(
        "the {what} did not end within {MAX_PAGES} pages"
    )))
}

/// Graph ids are digits; the simulator and tests use letters, `-` and `_` too. Anything else
/// (a `/`, `?`, `#`) would change the request's path.
fn is_graph_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A cursor as a query value: Graph's are base64-like, but `+`, `/` and `=` must not pass raw.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::WhatsAppSettings;
    use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    fn client(server: &MockServer) -> CloudApiClient {
        CloudApiClient::new(&WhatsAppSettings {
            base_url: server.uri(),
            api_version: "v23.0".into(),
            request_timeout_ms: 5000,
            connect_timeout_ms: 1000,
            proxy: SecretString::from(""),
        })
        .unwrap()
    }

    fn template(name: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "language": "en", "status": "APPROVED",
                           "category": "MARKETING", "components": []})
    }

    #[tokio::test]
    async fn every_page_of_templates_is_read_by_its_after_cursor() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v23.0/waba1/message_templates"))
            .and(query_param_is_missing("after"))
            .and(header("authorization", "Bearer tok"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": [template("a"), template("b")],
                "paging": {"cursors": {"before": "x", "after": "Q+1/="},
                           "next": "https://elsewhere.example/next"}
            })))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v23.0/waba1/message_templates"))
            .and(query_param("after", "Q+1/="))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": [template("c")],
                "paging": {"cursors": {"before": "y", "after": "end"}}
            })))
            .mount(&server)
            .await;
        let all = message_templates(&client(&server), "waba1", &SecretString::from("tok"))
            .await
            .unwrap();
        let names: Vec<_> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn a_refused_read_names_the_code_in_plain_words() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).set_body_json(serde_json::json!({
                "error": {"message": "Error validating access token", "type": "OAuthException",
                          "code": 190, "fbtrace_id": "A"}
            })))
            .mount(&server)
            .await;
        let e = phone_number(&client(&server), "123", &SecretString::from("old"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(190));
        assert!(
            e.plain_words().contains("invalid or expired"),
            "{}",
            e.plain_words()
        );
    }

    #[tokio::test]
    async fn an_id_that_would_change_the_path_is_refused_before_any_call() {
        let server = MockServer::start().await;
        let e = phone_number(&client(&server), "1/../2", &SecretString::from("t"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), None);
        assert!(server.received_requests().await.unwrap().is_empty());
    }
}
