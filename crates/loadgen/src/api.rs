//! The HTTP side the scenarios share: target URLs, the one client, reading error codes from
//! answers, the few admin calls a drop needs to set up and to check afterwards, and the
//! wire format of what it reads back. The load generator is a client like any other: these
//! types and limits are the API's as documented, not the server's own.

use anyhow::Context;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::borrow::Cow;
use std::time::Duration;

/// Most orders a drop check reads from the admin listing (at 100 per page).
const MAX_LISTED_ORDERS: usize = 2_000_000;
const LIST_PAGE_SIZE: usize = 100;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's base URL, e.g. `http://127.0.0.1:8080` (a path prefix is kept).
#[derive(Clone, Debug, PartialEq)]
pub struct Target(Url);

impl Target {
    pub fn parse(raw: &str) -> Result<Target, String> {
        let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        if url.scheme() != "http" {
            // reqwest is built without TLS here; a load test runs next to its servers anyway.
            return Err("only http:// targets are supported".into());
        }
        if url.host_str().is_none() || url.query().is_some() || url.fragment().is_some() {
            return Err("expected http://HOST[:PORT][/PREFIX] without query or fragment".into());
        }
        Ok(Target(url))
    }

    /// `path` (starting with `/`, may carry a query) under this target.
    pub fn endpoint(&self, path: &str) -> anyhow::Result<Url> {
        let joined = format!("{}{path}", self.0.as_str().trim_end_matches('/'));
        Url::parse(&joined).with_context(|| format!("bad URL {joined}"))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

/// The one client of a run: keep-alive HTTP/1.1 with a pool as large as the concurrency,
/// Nagle off (small requests would otherwise wait for ACKs), no proxy from the environment
/// (we measure the server, not a proxy), and redirects reported rather than followed (one
/// attempt is one request).
pub fn client(concurrency: u32, timeout: Duration) -> anyhow::Result<Client> {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(concurrency as usize)
        .timeout(timeout)
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .user_agent(concat!("stampede-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .context("a token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

/// One `Bearer` header per non-empty line, built once so attempts only clone them.
pub fn read_tokens(path: &std::path::Path) -> anyhow::Result<Vec<HeaderValue>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading tokens from {}", path.display()))?;
    let tokens = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(bearer)
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!tokens.is_empty(), "{} holds no tokens", path.display());
    Ok(tokens)
}

#[derive(Deserialize)]
struct ErrorEnvelope<'a> {
    #[serde(borrow)]
    error: ErrorDetail<'a>,
}

#[derive(Deserialize)]
struct ErrorDetail<'a> {
    #[serde(borrow)]
    code: Cow<'a, str>,
}

/// The stable error code of an answer (`{"error":{"code":…}}`), or `http_STATUS` when the
/// body has none (a proxy's error page, say). Borrows from the body: no allocation.
pub fn error_code(status: StatusCode, body: &[u8]) -> Cow<'_, str> {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(envelope) => envelope.error.code,
        Err(_) => Cow::Owned(format!("http_{}", status.as_u16())),
    }
}

/// The API refuses more than 1,000,000 units of a product in one order line, and a product
/// created with more stock or a larger purchase limit than that.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// The API refuses a price above one trillion won.
pub const MAX_WON: i64 = 1_000_000_000_000;
/// The API refuses more than 10,000,000 coupons per campaign.
pub const MAX_COUPON_QUANTITY: i64 = 10_000_000;

/// An order's `status` as the API writes it: `pending_payment → paid → confirmed`,
/// `pending_payment → cancelled`, `paid → refunded`.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Confirmed,
    Cancelled,
    Refunded,
}

#[derive(Deserialize, Debug, Clone, Copy, serde::Serialize, PartialEq, Eq)]
pub struct StockState {
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: i64,
}

/// The `error` of an answer or of a ticket: only its stable code matters here.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
}

/// A waiting-room ticket, as `POST /orders` answers it with `202` and
/// `GET /api/v1/queue/{ticket}` reads it back.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    pub ticket: String,
    /// `waiting`, `placing`, `placed`, `replayed`, `rejected` or `failed` (see
    /// [`TicketStatus`]); kept as text so that a status this client does not know yet reads
    /// as "not decided" rather than as an unreadable answer.
    pub status: String,
    #[serde(default)]
    pub position: u64,
    /// Under any target: `/api/v1/queue/{ticket}`.
    pub status_url: String,
    /// The order, once placed or replayed.
    pub order: Option<Created>,
    /// Why not, once rejected or failed.
    pub error: Option<Refusal>,
}

/// Where a ticket stands, as far as a buyer's client is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketStatus {
    /// `waiting` or `placing` (or a status unknown to this client): ask again later.
    Pending,
    /// `placed` or `replayed`, with the order.
    Placed { order_id: i64, replayed: bool },
    /// `rejected`: a refusal with its code (`out_of_stock`…); final.
    Rejected(String),
    /// `failed`: the placement failed; send the order again with the same Idempotency-Key.
    Failed(String),
    /// A decided status without what it promises (`placed` without an order…).
    Malformed,
}

impl TicketView {
    pub fn status(&self) -> TicketStatus {
        let code = || self.error.as_ref().map(|e| e.code.clone());
        match self.status.as_str() {
            "placed" | "replayed" => match &self.order {
                Some(order) => TicketStatus::Placed {
                    order_id: order.id,
                    replayed: self.status == "replayed",
                },
                None => TicketStatus::Malformed,
            },
            "rejected" => code().map_or(TicketStatus::Malformed, TicketStatus::Rejected),
            "failed" => TicketStatus::Failed(code().unwrap_or_else(|| "failed".to_owned())),
            _ => TicketStatus::Pending,
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
pub struct OrderRow {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub partner_orders: Vec<PartnerOrderRow>,
    /// The buyer's coupon the order used, if any.
    #[serde(default)]
    pub coupon_id: Option<i64>,
    #[serde(default)]
    pub points_used: i64,
}

#[derive(Deserialize, Debug, Clone)]
pub struct PartnerOrderRow {
    pub items: Vec<ItemRow>,
}

#[derive(Deserialize, Debug, Clone)]
pub struct ItemRow {
    pub product_id: i64,
    pub quantity: i64,
}

#[derive(Deserialize)]
struct OrdersPage {
    items: Vec<OrderRow>,
}

/// Admin calls against the first target, outside the measured run.
#[derive(Clone)]
pub struct Admin {
    client: Client,
    target: Target,
    auth: HeaderValue,
}

impl Admin {
    pub fn new(client: Client, target: Target, token: &str) -> anyhow::Result<Admin> {
        Ok(Admin {
            client,
            target,
            auth: bearer(token)?,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let response = request
            .header(AUTHORIZATION, self.auth.clone())
            .send()
            .await
            .with_context(|| format!("{what}: no answer"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            anyhow::bail!("{what}: HTTP {status} ({})", error_code(status, &body));
        }
        serde_json::from_slice(&body).with_context(|| format!("{what}: unexpected answer"))
    }

    /// POSTs `body` to `path` (under `/api/v1`…, as given) and parses the answer.
    pub async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
        what: &str,
    ) -> anyhow::Result<T> {
        let request = self.client.post(self.target.endpoint(path)?).json(body);
        self.call(request, what).await
    }

    /// A POST of `body` to `path` with the admin's token, for a call that adds headers of
    /// its own (an Idempotency-Key) and is sent by the caller.
    pub fn request_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<RequestBuilder> {
        Ok(self
            .client
            .post(self.target.endpoint(path)?)
            .header(AUTHORIZATION, self.auth.clone())
            .json(body))
    }

    /// GETs `path` and parses the answer.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> anyhow::Result<T> {
        let request = self.client.get(self.target.endpoint(path)?);
        self.call(request, what).await
    }

    pub async fn create_partner(&self, name: &str) -> anyhow::Result<i64> {
        let body = serde_json::json!({ "name": name, "commission_rate_bps": 1000 });
        let request = self
            .client
            .post(self.target.endpoint("/api/v1/partners")?)
            .json(&body);
        Ok(self
            .call::<Created>(request, "creating the partner")
            .await?
            .id)
    }

    pub async fn create_product(&self, body: &serde_json::Value) -> anyhow::Result<i64> {
        let request = self
            .client
            .post(self.target.endpoint("/api/v1/products")?)
            .json(body);
        Ok(self
            .call::<Created>(request, "creating the product")
            .await?
            .id)
    }

    pub async fn stock(&self, product_id: i64) -> anyhow::Result<StockState> {
        let request = self.client.get(
            self.target
                .endpoint(&format!("/api/v1/products/{product_id}"))?,
        );
        self.call(request, "reading the product back").await
    }

    async fn orders_page(&self, page: usize) -> anyhow::Result<Vec<OrderRow>> {
        let url = self
            .target
            .endpoint(&format!("/api/v1/orders?page={page}&size={LIST_PAGE_SIZE}"))?;
        Ok(self
            .call::<OrdersPage>(self.client.get(url), "listing orders")
            .await?
            .items)
    }

    /// The newest order id now (0 if none): orders above it are the run's.
    pub async fn latest_order_id(&self) -> anyhow::Result<i64> {
        Ok(self.orders_page(1).await?.first().map_or(0, |o| o.id))
    }

    /// Every order with an id above `watermark`, newest first. The listing is ordered by id
    /// descending; orders placed while we page push rows to later pages, so ids are
    /// de-duplicated and nothing is skipped.
    pub async fn orders_after(&self, watermark: i64) -> anyhow::Result<Vec<OrderRow>> {
        let mut seen = std::collections::HashSet::new();
        let mut orders = Vec::new();
        for page in 1..=MAX_LISTED_ORDERS / LIST_PAGE_SIZE {
            let rows = self.orders_page(page).await?;
            let last_page = rows.len() < LIST_PAGE_SIZE || rows.iter().any(|o| o.id <= watermark);
            orders.extend(
                rows.into_iter()
                    .filter(|o| o.id > watermark && seen.insert(o.id)),
            );
            if last_page {
                return Ok(orders);
            }
        }
        anyhow::bail!("more than {MAX_LISTED_ORDERS} orders to read back")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_http_base_urls() {
        let t = Target::parse("http://127.0.0.1:18181/").unwrap();
        assert_eq!(
            t.endpoint("/healthz").unwrap().as_str(),
            "http://127.0.0.1:18181/healthz"
        );
        assert_eq!(t.as_str(), "http://127.0.0.1:18181");
        let prefixed = Target::parse("http://lb.local/shop").unwrap();
        assert_eq!(
            prefixed
                .endpoint("/api/v1/products?page=1&size=40")
                .unwrap()
                .as_str(),
            "http://lb.local/shop/api/v1/products?page=1&size=40"
        );
        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("127.0.0.1:8080").is_err());
        assert!(Target::parse("http://h/?q=1").is_err());
    }

    #[test]
    fn error_codes_come_from_the_body_or_the_status() {
        let body = br#"{"error":{"code":"out_of_stock","message":"product 1 is out of stock"}}"#;
        let code = error_code(StatusCode::CONFLICT, body);
        assert_eq!(code, "out_of_stock");
        assert!(matches!(code, Cow::Borrowed(_)));
        assert_eq!(
            error_code(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>"),
            "http_502"
        );
    }

    #[test]
    fn tickets_are_read_as_the_waiting_room_writes_them() {
        let read = |raw: &str| serde_json::from_str::<TicketView>(raw).unwrap().status();
        let waiting = r#"{"ticket":"t1","status":"waiting","position":42,"status_url":"/api/v1/queue/t1","events_url":"/api/v1/queue/t1/events","order":null,"error":null}"#;
        let ticket: TicketView = serde_json::from_str(waiting).unwrap();
        assert_eq!(ticket.position, 42);
        assert_eq!(ticket.status_url, "/api/v1/queue/t1");
        assert_eq!(ticket.status(), TicketStatus::Pending);
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"placing","status_url":"/q/t","order":null,"error":null}"#
            ),
            TicketStatus::Pending
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"placed","status_url":"/q/t","order":{"id":7,"status":"pending_payment"},"error":null}"#
            ),
            TicketStatus::Placed {
                order_id: 7,
                replayed: false
            }
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"replayed","status_url":"/q/t","order":{"id":8},"error":null}"#
            ),
            TicketStatus::Placed {
                order_id: 8,
                replayed: true
            }
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"rejected","status_url":"/q/t","order":null,"error":{"code":"out_of_stock","message":"m"}}"#
            ),
            TicketStatus::Rejected("out_of_stock".into())
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"failed","status_url":"/q/t","order":null,"error":{"code":"unavailable","message":"m"}}"#
            ),
            TicketStatus::Failed("unavailable".into())
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"placed","status_url":"/q/t","order":null,"error":null}"#
            ),
            TicketStatus::Malformed
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"rejected","status_url":"/q/t","order":null,"error":null}"#
            ),
            TicketStatus::Malformed
        );
        assert_eq!(
            read(
                r#"{"ticket":"t","status":"parked","status_url":"/q/t","order":null,"error":null}"#
            ),
            TicketStatus::Pending
        );
    }

    #[test]
    fn order_statuses_are_read_from_the_apis_snake_case() {
        let read = |raw: &str| serde_json::from_str::<OrderStatus>(raw).unwrap();
        assert_eq!(read(r#""pending_payment""#), OrderStatus::PendingPayment);
        assert_eq!(read(r#""paid""#), OrderStatus::Paid);
        assert_eq!(read(r#""confirmed""#), OrderStatus::Confirmed);
        assert_eq!(read(r#""cancelled""#), OrderStatus::Cancelled);
        assert_eq!(read(r#""refunded""#), OrderStatus::Refunded);
        assert!(serde_json::from_str::<OrderStatus>(r#""PendingPayment""#).is_err());
    }
}
