//! The send call, on hyper's own HTTP/1.1 client: reqwest spends nearly twice its CPU per
//! request (URL parsing, layers), and the send path is most of the sender's work. One client
//! per process; every number's requests go to the one Graph host, so its idle pool is not
//! capped: a cap below the sum of the numbers' in-flight windows closed and reopened
//! connections all the time (a tenth of the sender's CPU in B1).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_platform_verifier::BuilderVerifierExt;
use secrecy::{ExposeSecret, SecretString};

use super::SendResponse;
use super::errors::{GraphError, GraphErrorBody};
use crate::settings::WhatsAppSettings;

/// Carries the sending owner's lease fencing token (design §5). Meta ignores it; a fencing
/// proxy, or the simulator's `fence_violations`, can check with it that a number's sends never
/// come from an owner older than one already seen.
pub const FENCE_HEADER: &str = "x-herald-fence";

/// Cheap to clone (every send task holds one): the pool is shared, the strings are `Arc`s.
#[derive(Debug, Clone)]
pub struct CloudApiClient {
    http: Client<HttpsConnector<Route>, Full<Bytes>>,
    base_url: Arc<str>,
    version: Arc<str>,
    request_timeout: Duration,
}

/// A request's URL and `Authorization` value, or why they cannot be made (the request is
/// then not sent). Its `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct Endpoint(Result<(Uri, HeaderValue), &'static str>);

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
    /// A client for `settings.base_url`, `https://` (verified against the system's roots) or
    /// plain `http://` (the simulator).
    pub fn new(settings: &WhatsAppSettings) -> anyhow::Result<Self> {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_millis(settings.connect_timeout_ms)));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_platform_verifier()?
            .with_no_client_auth();
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let base = base_url
            .parse::<Uri>()
            .map_err(|e| anyhow::anyhow!("whatsapp.base_url {base_url:?} is not a URL: {e}"))?;
        let route = Route::to(&base, settings.proxy.expose_secret(), tcp)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(route);
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self {
            http,
            base_url: base_url.into(),
            version: settings.api_version.as_str().into(),
            request_timeout: Duration::from_millis(settings.request_timeout_ms),
        })
    }

    /// Where `phone_number_id`'s sends go, with `token`: made once per number, so that a
    /// send formats, parses and checks nothing of its own.
    pub fn messages_endpoint(&self, phone_number_id: &str, token: &SecretString) -> Endpoint {
        self.endpoint(&format!("{phone_number_id}/messages"), token)
    }

    /// `{base}/{version}/{path}` with `token` as its bearer (marked sensitive: never shown).
    fn endpoint(&self, path: &str, token: &SecretString) -> Endpoint {
        let Ok(uri) = format!("{}/{}/{}", self.base_url, self.version, path).parse::<Uri>() else {
            return Endpoint(Err("the phone number id does not make a URL"));
        };
        let Ok(mut auth) = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        else {
            return Endpoint(Err("the access token has characters a header cannot carry"));
        };
        auth.set_sensitive(true);
        Endpoint(Ok((uri, auth)))
    }

    /// POSTs an already rendered message body to a number's `endpoint`, on behalf of the
    /// lease holder with fencing token `fence`.
    pub async fn send_message(&self, endpoint: &Endpoint, fence: i64, body: Bytes) -> SendResult {
        let (status, retry_after, bytes) = match self
            .exchange(Method::POST, endpoint, Payload::Send { fence, body })
            .await
        {
            Ok(answer) => answer,
            Err(failure) => return SendResult::Transport(failure),
        };
        if status.is_success() {
            return match serde_json::from_slice::<SendResponse>(&bytes) {
                Ok(ok) => match ok.messages.into_iter().next() {
                    Some(m) => SendResult::Accepted {
                        wamid: m.id.into_owned(),
                    },
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

    /// GETs `path_and_query` (after the API version) with `token`: a management read (a
    /// number's profile, a page of templates), its 200 body parsed as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path_and_query: &str,
        token: &SecretString,
    ) -> Result<T, GraphFailure> {
        self.manage(Method::GET, path_and_query, token, Payload::Empty)
            .await
    }

    /// POSTs a `multipart/form-data` body (its `content_type` naming the boundary) to `path`
    /// with `token`: a media upload. Its 200 body parsed as `T`.
    pub async fn post_form<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        token: &SecretString,
        content_type: HeaderValue,
        body: Bytes,
    ) -> Result<T, GraphFailure> {
        let form = Payload::Form { content_type, body };
        self.manage(Method::POST, path, token, form).await
    }

    /// A management call and its 200 body, or why there is none.
    async fn manage<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path_and_query: &str,
        token: &SecretString,
        payload: Payload,
    ) -> Result<T, GraphFailure> {
        let endpoint = self.endpoint(path_and_query, token);
        let (status, _, bytes) = self
            .exchange(method, &endpoint, payload)
            .await
            .map_err(|f| match f {
                TransportFailure::NotSent(why) | TransportFailure::Ambiguous(why) => {
                    GraphFailure::Unreachable(why)
                }
            })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| GraphFailure::Unreachable(format!("unreadable 200 body: {e}")));
        }
        match serde_json::from_slice::<GraphErrorBody>(&bytes) {
            Ok(body) => Err(GraphFailure::Refused(body.error)),
            Err(_) => Err(GraphFailure::Unreachable(format!(
                "HTTP {} without a Graph error body",
                status.as_u16()
            ))),
        }
    }

    /// One request to `endpoint` and its whole answer, within the request timeout.
    async fn exchange(
        &self,
        method: Method,
        endpoint: &Endpoint,
        payload: Payload,
    ) -> Result<(hyper::StatusCode, Option<Duration>, Bytes), TransportFailure> {
        let not_sent = |why: &str| TransportFailure::NotSent(why.into());
        let (uri, auth) = endpoint.0.as_ref().map_err(|why| not_sent(why))?;
        let request = Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(AUTHORIZATION, auth.clone());
        let request = match payload {
            Payload::Send { fence, body } => request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .header(
                    HeaderName::from_static(FENCE_HEADER),
                    HeaderValue::from(fence),
                )
                .body(Full::new(body)),
            Payload::Form { content_type, body } => request
                .header(CONTENT_TYPE, content_type)
                .body(Full::new(body)),
            Payload::Empty => request.body(Full::new(Bytes::new())),
        };
        let Ok(request) = request else {
            return Err(not_sent("the request could not be built"));
        };
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                // hyper-util's Display never includes headers, so the token cannot leak.
                if e.is_connect() {
                    TransportFailure::NotSent(error_chain(&e))
                } else {
                    TransportFailure::Ambiguous(error_chain(&e))
                }
            })?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| TransportFailure::Ambiguous(error_chain(&e)))?
                .to_bytes();
            Ok((parts.status, retry_after(&parts.headers), bytes))
        };
        match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Err(TransportFailure::Ambiguous(format!(
                "no answer within {} ms",
                self.request_timeout.as_millis()
            ))),
        }
    }
}

/// What a request carries.
enum Payload {
    Empty,
    /// A message: its JSON body, with the lease holder's fencing token.
    Send {
        fence: i64,
        body: Bytes,
    },
    /// A form (a media upload), `content_type` naming its boundary.
    Form {
        content_type: HeaderValue,
        body: Bytes,
    },
}

/// Why a management read gave nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum GraphFailure {
    /// Meta answered with an error.
    Refused(GraphError),
    /// No usable answer.
    Unreachable(String),
}

impl GraphFailure {
    /// What went wrong, in words an operator can act on (reference §2.4).
    pub fn plain_words(&self) -> String {
        let e = match self {
            GraphFailure::Refused(e) => e,
            GraphFailure::Unreachable(why) => {
                return format!("the Cloud API could not be reached: {why}");
            }
        };
        let code = e.code;
        let meaning = match code {
            190 => "the access token is invalid or expired: paste a new one".to_owned(),
            0 | 3 | 10 | 200..=299 => {
                "the access token lacks a permission this needs (whatsapp_business_management, whatsapp_business_messaging)".to_owned()
            }
            100 | 33 => {
                "Meta knows no such object, or the access token cannot see it: check the phone_number_id and waba_id".to_owned()
            }
            4 | 80007 | 130429 => "Meta is rate limiting these calls: try again in a minute".to_owned(),
            131031 => "the WhatsApp Business Account is restricted or disabled".to_owned(),
            _ => "the Cloud API refused the call".to_owned(),
        };
        format!("{meaning} (Graph error {code}: {})", e.message)
    }

    /// Meta's error code, when Meta answered.
    pub fn code(&self) -> Option<i64> {
        match self {
            GraphFailure::Refused(e) => Some(e.code),
            GraphFailure::Unreachable(_) => None,
        }
    }
}

/// How connections reach the Graph host: straight, or through an HTTP proxy's CONNECT
/// tunnel (TLS to Meta then runs inside it, end to end).
#[derive(Clone)]
struct Route {
    tcp: HttpConnector,
    tunnel: Option<Tunnel<HttpConnector>>,
}

impl std::fmt::Debug for Route {
    // Not the tunnel's: its headers carry the proxy's credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let via = if self.tunnel.is_some() {
            "proxy"
        } else {
            "direct"
        };
        f.debug_struct("Route").field("via", &via).finish()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Route {
    /// The route to `base`: through `proxy` when set, else as the environment's proxy
    /// variables say (the convention curl and reqwest follow), else straight.
    fn to(base: &Uri, proxy: &str, tcp: HttpConnector) -> anyhow::Result<Self> {
        let matcher = if proxy.is_empty() {
            Matcher::from_env()
        } else {
            anyhow::ensure!(
                proxy.parse::<Uri>().is_ok_and(|u| u.host().is_some()),
                "whatsapp.proxy is not an http://host:port URL"
            );
            Matcher::builder().all(proxy.to_owned()).build()
        };
        let tunnel = matcher.intercept(base).map(|intercept| {
            let tunnel = Tunnel::new(intercept.uri().clone(), tcp.clone());
            match intercept.basic_auth() {
                Some(auth) => tunnel.with_auth(auth.clone()),
                None => tunnel,
            }
        });
        Ok(Self { tcp, tunnel })
    }
}

impl tower_service::Service<Uri> for Route {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        match &mut self.tunnel {
            Some(tunnel) => tunnel.poll_ready(cx).map_err(Into::into),
            None => self.tcp.poll_ready(cx).map_err(Into::into),
        }
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        match &mut self.tunnel {
            Some(tunnel) => {
                // The tunnel asks for the destination's port, and assumes 443 when the URL
                // names none.
                let connecting = tunnel.call(with_port(dst));
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
            None => {
                let connecting = self.tcp.call(dst);
                Box::pin(async move { connecting.await.map_err(Into::into) })
            }
        }
    }
}

/// `dst` with its scheme's default port written out.
fn with_port(dst: Uri) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let port = if dst.scheme_str() == Some("http") {
        80
    } else {
        443
    };
    let Some(host) = dst.host() else { return dst };
    let mut parts = dst.clone().into_parts();
    match format!("{host}:{port}").parse() {
        Ok(authority) => parts.authority = Some(authority),
        Err(_) => return dst,
    }
    Uri::from_parts(parts).unwrap_or(dst)
}

/// The longest wait a `Retry-After` can ask for: Meta's own longest (131049: a day).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// `Retry-After` in seconds (Meta documents none, but honours it where a proxy or a future
/// API version sends one), at most `MAX_RETRY_AFTER`: an unbounded one would overflow the
/// retry's due time. The HTTP-date form is not used by Graph and is ignored.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits past u64 are still a number of seconds: longer than the bound.
    let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// An error and its sources ("client error (Connect): tcp connect error: Connection refused"):
/// hyper's top-level messages alone say too little to act on.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    /// Settings for a client of `base_url`: 5 s to answer, 1 s to connect, no proxy.
    fn settings(base_url: &str) -> WhatsAppSettings {
        WhatsAppSettings {
            base_url: base_url.to_owned(),
            api_version: "v23.0".into(),
            request_timeout_ms: 5000,
            connect_timeout_ms: 1000,
            proxy: SecretString::from(""),
        }
    }

    impl CloudApiClient {
        /// A send for number `123` with token `secret`.
        async fn send(&self, fence: i64, body: Bytes) -> SendResult {
            let endpoint = self.messages_endpoint("123", &SecretString::from("secret"));
            self.send_message(&endpoint, fence, body).await
        }
    }

    async fn client(server: &MockServer) -> CloudApiClient {
        CloudApiClient::new(&settings(&server.uri())).unwrap()
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
            .send(7, Bytes::from_static(b"{}"))
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
            .send(7, Bytes::from_static(b"{}"))
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

    #[test]
    fn retry_after_is_read_in_seconds_and_bounded() {
        let read = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers)
        };
        assert_eq!(read("17"), Some(Duration::from_secs(17)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        // A day at most, however large the number (past u64 too).
        assert_eq!(read("86401"), Some(MAX_RETRY_AFTER));
        assert_eq!(read("18446744073709551615"), Some(MAX_RETRY_AFTER));
        assert_eq!(read("99999999999999999999999999"), Some(MAX_RETRY_AFTER));
        for ignored in ["", "-5", "1.5", "Wed, 21 Oct 2026 07:28:00 GMT"] {
            assert_eq!(read(ignored), None, "{ignored:?}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_was_not_sent() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = CloudApiClient::new(&settings(&format!("http://127.0.0.1:{port}"))).unwrap();
        let result = client.send(7, Bytes::new()).await;
        let SendResult::Transport(TransportFailure::NotSent(why)) = result else {
            panic!("a refused connection is safe to resend: {result:?}");
        };
        assert!(why.contains("refused"), "{why}");
        assert!(!why.contains("secret"));
    }

    #[tokio::test]
    async fn no_answer_in_time_is_ambiguous() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
            .mount(&server)
            .await;
        let client = CloudApiClient::new(&WhatsAppSettings {
            request_timeout_ms: 100,
            ..settings(&server.uri())
        })
        .unwrap();
        let result = client.send(7, Bytes::new()).await;
        assert_eq!(
            result,
            SendResult::Transport(TransportFailure::Ambiguous(
                "no answer within 100 ms".into()
            ))
        );
    }

    #[test]
    fn a_base_url_that_is_no_url_is_refused() {
        let err = CloudApiClient::new(&settings("not a url")).unwrap_err();
        assert!(err.to_string().contains("not a URL"), "{err}");
    }

    /// A CONNECT proxy on loopback answering every tunnel request with `answer` (a status
    /// line) and, when that is a 200, relaying bytes both ways; gives its URL and the targets
    /// it was asked for.
    async fn connect_proxy(answer: &'static str) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = targets.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let target = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(target.clone());
                    let _ = client
                        .write_all(format!("{answer}\r\n\r\n").as_bytes())
                        .await;
                    if answer.contains(" 200 ") {
                        let mut upstream = tokio::net::TcpStream::connect(&target).await.unwrap();
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        (url, targets)
    }

    fn through(base_url: String, proxy: String) -> CloudApiClient {
        CloudApiClient::new(&WhatsAppSettings {
            proxy: SecretString::from(proxy),
            ..settings(&base_url)
        })
        .unwrap()
    }

    #[tokio::test]
    async fn sends_go_through_the_configured_proxy() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "messaging_product": "whatsapp", "messages": [{"id": "wamid.PROXIED"}]
            })))
            .mount(&server)
            .await;
        let (proxy, targets) = connect_proxy("HTTP/1.1 200 Connection established").await;
        let result = through(server.uri(), proxy).send(7, Bytes::new()).await;
        assert_eq!(
            result,
            SendResult::Accepted {
                wamid: "wamid.PROXIED".into()
            }
        );
        let server_address = server.uri().trim_start_matches("http://").to_owned();
        assert_eq!(*targets.lock().unwrap(), vec![server_address]);
    }

    #[tokio::test]
    async fn a_tunnel_the_proxy_refuses_was_not_sent() {
        let server = MockServer::start().await;
        let (proxy, targets) = connect_proxy("HTTP/1.1 403 Forbidden").await;
        let result = through(server.uri(), proxy).send(7, Bytes::new()).await;
        assert!(
            matches!(result, SendResult::Transport(TransportFailure::NotSent(_))),
            "a refused tunnel is safe to resend: {result:?}"
        );
        assert_eq!(targets.lock().unwrap().len(), 1);
        assert!(server.received_requests().await.unwrap().is_empty());
    }

    #[test]
    fn a_proxy_that_is_no_url_is_refused() {
        let err = CloudApiClient::new(&WhatsAppSettings {
            proxy: SecretString::from("not a proxy"),
            ..settings("https://graph.facebook.com")
        })
        .unwrap_err();
        assert!(err.to_string().contains("whatsapp.proxy"), "{err}");
    }

    #[test]
    fn the_proxy_password_is_never_printed() {
        let client = through(
            "https://graph.facebook.com".into(),
            "http://herald:hunter2@127.0.0.1:3128".into(),
        );
        let route = Route::to(
            &"https://graph.facebook.com".parse().unwrap(),
            "http://herald:hunter2@127.0.0.1:3128",
            HttpConnector::new(),
        )
        .unwrap();
        use base64::Engine;
        let header = base64::engine::general_purpose::STANDARD.encode("herald:hunter2");
        for printed in [format!("{client:?}"), format!("{route:?}")] {
            assert!(!printed.contains("hunter2"), "{printed}");
            assert!(!printed.contains(&header), "{printed}");
        }
        assert!(format!("{route:?}").contains("proxy"));
    }

    #[test]
    fn a_url_without_a_port_gets_its_scheme_default() {
        let port = |u: &str| with_port(u.parse().unwrap()).port_u16();
        assert_eq!(port("http://graph.example"), Some(80));
        assert_eq!(port("https://graph.facebook.com"), Some(443));
        assert_eq!(port("http://127.0.0.1:8090"), Some(8090));
    }
}
