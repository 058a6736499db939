//! A small client for Herald's HTTP API, used by the demo and the tests.

use herald_ingest::views::{CampaignView, NumberView, UploadReport};
use herald_shared::domain::{CampaignId, NumberId};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    key: SecretString,
}

/// The WABA `create_number` registers its numbers under.
pub const DEMO_WABA: &str = "100000000000001";

/// A call the API refused: its status and error body.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}: {body}")]
pub struct ApiRefusal {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiClient {
    pub fn new(base: impl Into<String>, key: SecretString) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into(),
            key,
        }
    }

    /// Follows the Server-Sent Events of `path`, calling `each(event, data)` for every event,
    /// until the server ends the stream.
    pub async fn follow_events(
        &self,
        path: &str,
        mut each: impl FnMut(&str, &str),
    ) -> anyhow::Result<()> {
        let mut response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header("accept", "text/event-stream")
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.json().await.unwrap_or(Value::Null);
            return Err(ApiRefusal { status, body }.into());
        }
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = pending.drain(..end + 2).collect();
                let block = String::from_utf8_lossy(&block);
                let (mut event, mut data) = ("", String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v;
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !event.is_empty() {
                    each(event, &data);
                }
            }
        }
        Ok(())
    }

    /// The API key this client uses.
    pub fn key(&self) -> SecretString {
        self.key.clone()
    }

    /// POSTs `body` to `path` and reads the answer as `T`; a non-2xx answer is an `ApiRefusal`.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        self.json(reqwest::Method::POST, path, body).await
    }

    /// PATCHes `path` with `body` and reads the answer as `T`.
    pub async fn patch<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        self.json(reqwest::Method::PATCH, path, body).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<T> {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .json(body)
            .send()
            .await?;
        read(response).await
    }

    /// DELETEs `path` (answered by 204); a non-2xx answer is an `ApiRefusal`.
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let request = self.http.delete(format!("{}{path}", self.base));
        self.without_answer(request).await
    }

    /// PUTs `body` to `path`; a non-2xx answer is an `ApiRefusal`.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let request = self.http.put(format!("{}{path}", self.base)).json(body);
        self.without_answer(request).await
    }

    /// POSTs to an action `path` that answers 204 (`/v1/numbers/{id}/resume`).
    pub async fn act(&self, path: &str) -> anyhow::Result<()> {
        let request = self.http.post(format!("{}{path}", self.base));
        self.without_answer(request).await
    }

    async fn without_answer(&self, request: reqwest::RequestBuilder) -> anyhow::Result<()> {
        let response = request.bearer_auth(self.key.expose_secret()).send().await?;
        read::<Value>(response).await.map(|_| ()).or_else(|e| {
            // 204 has no body to read.
            match e.downcast_ref::<serde_json::Error>() {
                Some(_) => Ok(()),
                None => Err(e),
            }
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .send()
            .await?;
        read(response).await
    }

    /// Registers a number of WABA `DEMO_WABA` sending at `rate`, after the connection test
    /// Herald makes against the Cloud API (or the simulator).
    pub async fn create_number(
        &self,
        phone_number_id: &str,
        access_token: &str,
        rate: u32,
    ) -> anyhow::Result<NumberView> {
        self.register_number(phone_number_id, access_token, rate, true)
            .await
    }

    /// Registers a number without testing it: for a Cloud API stand-in that only takes sends.
    pub async fn create_untested_number(
        &self,
        phone_number_id: &str,
        access_token: &str,
        rate: u32,
    ) -> anyhow::Result<NumberView> {
        self.register_number(phone_number_id, access_token, rate, false)
            .await
    }

    async fn register_number(
        &self,
        phone_number_id: &str,
        access_token: &str,
        rate: u32,
        verify: bool,
    ) -> anyhow::Result<NumberView> {
        self.post(
            "/v1/numbers",
            &json!({
                "phone_number_id": phone_number_id,
                "waba_id": DEMO_WABA,
                "display_number": format!("+{phone_number_id}"),
                "access_token": access_token,
                "throughput_ceiling": rate,
                "rate": rate,
                "verify": verify,
            }),
        )
        .await
    }

    pub async fn create_campaign(
        &self,
        name: &str,
        template: &str,
        language: &str,
        numbers: &[NumberId],
    ) -> anyhow::Result<CampaignView> {
        self.post(
            "/v1/campaigns",
            &json!({
                "name": name,
                "template": {"name": template, "language": language},
                "sender_numbers": numbers,
            }),
        )
        .await
    }

    /// Uploads `(phone, variables)` rows.
    pub async fn upload(
        &self,
        campaign: CampaignId,
        rows: &[(String, Vec<String>)],
    ) -> anyhow::Result<UploadReport> {
        let recipients: Vec<Value> = rows
            .iter()
            .map(|(phone, variables)| json!({"phone": phone, "variables": variables}))
            .collect();
        self.post(
            &format!("/v1/campaigns/{campaign}/recipients"),
            &json!({ "recipients": recipients }),
        )
        .await
    }

    pub async fn start(&self, campaign: CampaignId) -> anyhow::Result<CampaignView> {
        self.post(&format!("/v1/campaigns/{campaign}/start"), &json!({}))
            .await
    }

    pub async fn pause(&self, campaign: CampaignId) -> anyhow::Result<CampaignView> {
        self.post(&format!("/v1/campaigns/{campaign}/pause"), &json!({}))
            .await
    }

    pub async fn resume(&self, campaign: CampaignId) -> anyhow::Result<CampaignView> {
        self.post(&format!("/v1/campaigns/{campaign}/resume"), &json!({}))
            .await
    }

    pub async fn cancel(&self, campaign: CampaignId) -> anyhow::Result<CampaignView> {
        self.post(&format!("/v1/campaigns/{campaign}/cancel"), &json!({}))
            .await
    }

    pub async fn campaign(&self, campaign: CampaignId) -> anyhow::Result<CampaignView> {
        self.get(&format!("/v1/campaigns/{campaign}")).await
    }

    /// POSTs a raw `body` of `content_type` (a CSV, a form) to `path`, read back as `T`.
    pub async fn post_raw<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<T> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await?;
        read(response).await
    }

    /// Uploads a CSV to a campaign, its numbers read in `default_country` when given.
    pub async fn upload_csv(
        &self,
        campaign: CampaignId,
        csv: impl Into<reqwest::Body>,
        default_country: Option<&str>,
    ) -> anyhow::Result<UploadReport> {
        let query = default_country
            .map(|c| format!("?default_country={c}"))
            .unwrap_or_default();
        self.post_raw(
            &format!("/v1/campaigns/{campaign}/recipients{query}"),
            "text/csv",
            csv,
        )
        .await
    }

    /// GETs `path` as text (a CSV export).
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return Err(ApiRefusal { status, body }.into());
        }
        Ok(text)
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        return Err(ApiRefusal { status, body }.into());
    }
    Ok(serde_json::from_slice(&bytes)?)
}
