//! The send call. One `reqwest::Client` per process. Every number's requests go to the one
//! Graph host, so its idle pool is not capped: a cap below the sum of the numbers' in-flight
//! windows closed and reopened connections all the time (a tenth of the sender's CPU in B1).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::SendResponse;
use super::errors::{GraphError, GraphErrorBody};
use crate::settings::WhatsAppSettings;

/// Carries the sending owner's lease fencing token (design §5). Meta ignores it; a fencing
/// proxy, or the simulator's `fence_violations`, can check with it that a number's sends never
/// come from an owner older than one already seen.
pub const FENCE_HEADER: &str = "x-herald-fence";

#[derive(Debug, Clone)]
pub struct CloudApiClient {
    http: reqwest::Client,
    base_url: String,
    version: String,
}

/// How a send ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SendResult {
    /// HTTP 200: Meta accepted the message (accepted, not delivered).
    Accepted { wamid: String },
    /// Meta answered with a Graph error, perhaps saying when to try again (`Retry-After`).
    Rejected {
        http_status: u16,
        error: GraphError,
        retry_after: Option<Duration>,
    },
    /// No usable answer.
    Transport(TransportFailure),
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransportFailure {
    /// The request never reached Meta (connection refused, DNS): safe to resend.
    NotSent(String),
    /// The request may have been accepted (timeout, reset, 5xx without a Graph body).
    Ambiguous(String),
}

impl CloudApiClient {
    pub fn new(settings: &WhatsAppSettings) -> reqwest::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base_url: settings.base_url.trim_end_matches('/').to_owned(),
            version: settings.api_version.clone(),
        })
    }

    /// POSTs an already rendered message body for the business number `phone_number_id`, on
    /// behalf of the lease holder with fencing token `fence`.
    pub async fn send_message(
        &self,
        phone_number_id: &str,
        token: &SecretString,
        fence: i64,
        body: Bytes,
    ) -> SendResult {
        let url = format!(
            "{}/{}/{}/messages",
            self.base_url, self.version, phone_number_id
        );
        let mut auth = match HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())) {
            Ok(v) => v,
            Err(_) => {
                return SendResult::Transport(TransportFailure::NotSent(
                    "the access token has characters a header cannot carry".into(),
                ));
            }
        };
        auth.set_sensitive(true);
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/json")
            .header(FENCE_HEADER, fence)
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return SendResult::Transport(transport_failure(&e)),
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return SendResult::Transport(transport_failure(&e)),
        };
        if status.is_success() {
            return match serde_json::from_slice::<SendResponse>(&bytes) {
                Ok(ok) => match ok.messages.into_iter().next() {
                    Some(m) => SendResult::Accepted { wamid: m.id },
                    None => SendResult::Transport(TransportFailure::Ambiguous(
                        "200 without a message id".into(),
                    )),
                },
                Err(e) => SendResult::Transport(TransportFailure::Ambiguous(format!(
                    "unreadable 200 body: {e}"
                ))),
            };
        }
        match serde_json::from_slice::<GraphErrorBody>(&bytes) {
            Ok(body) => SendResult::Rejected {
                http_status: status.as_u16(),
                error: body.error,
                retry_after,
            },
            Err(_) => SendResult::Transport(TransportFailure::Ambiguous(format!(
                "HTTP {} without a Graph error body",
                status.as_u16()
            ))),
        }
    }
}

/// `Retry-After` in seconds (Meta documents none, but honours it where a proxy or a future
/// API version sends one); the HTTP-date form is not used by Graph and is ignored.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

fn transport_failure(e: &reqwest::Error) -> TransportFailure {
    // reqwest's Display never includes headers, so the token cannot leak through it.
    if e.is_connect() {
        TransportFailure::NotSent(e.to_string())
    } else {
        TransportFailure::Ambiguous(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    async fn client(server: &MockServer) -> CloudApiClient {
        CloudApiClient::new(&WhatsAppSettings {
            base_url: server.uri(),
            api_version: "v23.0".into(),
            request_timeout_ms: 5000,
            connect_timeout_ms: 1000,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn an_accepted_send_gives_the_wamid() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v23.0/123/messages"))
            .and(header("authorization", "Bearer secret"))
            .and(header(FENCE_HEADER, "7"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "messaging_product": "whatsapp",
                "contacts": [{"input": "+447400000001", "wa_id": "447400000001"}],
                "messages": [{"id": "wamid.OK"}]
            })))
            .mount(&server)
            .await;
        let result = client(&server)
            .await
            .send_message(
                "123",
                &SecretString::from("secret"),
                7,
                Bytes::from_static(b"{}"),
            )
            .await;
        assert_eq!(
            result,
            SendResult::Accepted {
                wamid: "wamid.OK".into()
            }
        );
    }

    #[tokio::test]
    async fn a_graph_error_carries_its_retry_after() {
        let server = MockServer::start().await;
        let error = serde_json::json!({"error": {
            "message": "(#131000) Something went wrong", "type": "OAuthException",
            "code": 131000, "fbtrace_id": "A"
        }});
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(500)
                    .insert_header("retry-after", "17")
                    .set_body_json(error),
            )
            .mount(&server)
            .await;
        let result = client(&server)
            .await
            .send_message(
                "123",
                &SecretString::from("secret"),
                7,
                Bytes::from_static(b"{}"),
            )
            .await;
        let SendResult::Rejected {
            http_status,
            error,
            retry_after,
        } = result
        else {
            panic!("a Graph error body is a rejection: {result:?}");
        };
        assert_eq!((http_status, error.code), (500, 131000));
        assert_eq!(retry_after, Some(Duration::from_secs(17)));
    }
}
