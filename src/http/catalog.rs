//! Partners, their sellers, products and the stock ledger. The use cases are
//! `app::catalog`; the listing's hottest reads are served from rendered bodies.

use super::auth::UserView;
use super::error::{ApiError, ApiResult};
use super::extract::{AuthUser, Json, Page, Path};
use super::page::PageView;
use super::rendered::RenderKey;
use super::state::AppState;
use crate::app::catalog::{ProductChange, ProductInput};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::{MovementRecord, PartnerRecord, ProductRecord, StockLevels};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPartnerBody {
    /// 1 to 200 characters (surrounding spaces are trimmed).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// The platform's commission, 0 to 10,000 basis points.
    #[schema(minimum = 0, maximum = 10000)]
    pub commission_rate_bps: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PartnerView {
    pub id: i64,
    pub name: String,
    pub commission_rate_bps: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSellerBody {
    #[schema(
        max_length = 254,
        pattern = r"^[!#-?A-~]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]*)*\.[A-Za-z0-9-]+$"
    )]
    pub email: String,
    /// 8 characters to 128 bytes.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductBody {
    /// 1 to 200 characters (surrounding spaces are trimmed).
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
    /// Won per unit.
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub price: i64,
    /// Units on hand at creation (recorded as an inbound movement).
    #[schema(minimum = 0, maximum = 1000000)]
    pub stock: i64,
    /// Required for admins; sellers may omit it (their own partner).
    pub partner_id: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub release_at: Option<Timestamp>,
    /// Units one buyer may buy, 1 to 1,000,000; no limit when absent.
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_per_user: Option<i64>,
}

/// Products to list at once: each validated as `POST /products` validates one, all
/// created in one transaction or none (any invalid item refuses the whole batch with
/// 422 `batch_invalid`, listing every invalid item by index).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProductsBody {
    /// 1 to `STAMPEDE_CATALOG_BATCH_MAX` products (1,000 by default; more is 422
    /// `batch_too_large`).
    #[schema(min_items = 1, max_items = 1000)]
    pub products: Vec<NewProductBody>,
}

#[derive(Serialize, ToSchema)]
pub struct ProductsView {
    /// The created products, in the order they were sent (ids ascending).
    pub products: Vec<ProductView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatchBody {
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: Option<String>,
    #[schema(minimum = 0, maximum = 1000000000000_i64)]
    pub price: Option<i64>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub release_at: Option<Timestamp>,
    /// `null` removes the limit; absent leaves it unchanged.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1000000)]
    pub max_per_user: Option<Option<i64>>,
}

/// Distinguishes an explicit `null` (`Some(None)`) from an absent field (`None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct ProductView {
    pub id: i64,
    pub partner_id: i64,
    pub name: String,
    pub price: i64,
    #[schema(value_type = String, format = DateTime)]
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundBody {
    #[schema(minimum = 1, maximum = 1000000)]
    pub quantity: i64,
    /// 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub memo: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Signed units added to `on_hand`: non-zero, at most 1,000,000 either way
    /// (e.g. -2 for two damaged units).
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub delta: i64,
    /// Why: 1 to 500 characters, kept on the ledger row.
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub memo: String,
}

#[derive(Serialize, ToSchema)]
pub struct StockView {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
    pub available: i64,
}

#[derive(Serialize, ToSchema)]
pub struct MovementView {
    pub id: i64,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub memo: Option<String>,
    pub on_hand_after: i64,
    pub held_after: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<NewProductBody> for ProductInput {
    fn from(body: NewProductBody) -> Self {
        ProductInput {
            name: body.name,
            price: body.price,
            stock: body.stock,
            partner_id: body.partner_id,
            release_at: body.release_at,
            max_per_user: body.max_per_user,
        }
    }
}

impl From<PartnerRecord> for PartnerView {
    fn from(p: PartnerRecord) -> Self {
        PartnerView {
            id: p.id,
            name: p.name,
            commission_rate_bps: p.commission_rate_bps,
            created_at: p.created_at,
        }
    }
}

impl From<ProductRecord> for ProductView {
    fn from(p: ProductRecord) -> Self {
        ProductView {
            id: p.id,
            partner_id: p.partner_id,
            name: p.name,
            price: p.price,
            release_at: p.release_at,
            max_per_user: p.max_per_user,
            on_hand: p.on_hand,
            held: p.held,
            available: p.on_hand - p.held,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl From<StockLevels> for StockView {
    fn from(s: StockLevels) -> Self {
        StockView {
            product_id: s.product_id,
            on_hand: s.on_hand,
            held: s.held,
            available: s.on_hand - s.held,
        }
    }
}

impl From<MovementRecord> for MovementView {
    fn from(m: MovementRecord) -> Self {
        MovementView {
            id: m.id,
            kind: m.kind,
            quantity: m.quantity,
            order_id: m.order_id,
            memo: m.memo,
            on_hand_after: m.on_hand_after,
            held_after: m.held_after,
            created_at: m.created_at,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/partners", tag = "catalog", security(("bearer" = [])), request_body = NewPartnerBody,
    responses((status = 201, body = PartnerView), (status = 403, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn create_partner(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewPartnerBody>,
) -> ApiResult<(StatusCode, axum::Json<PartnerView>)> {
    let catalog = &state.app.catalog;
    let partner = catalog
        .create_partner(&user.actor(), &body.name, body.commission_rate_bps)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(partner.into())))
}

#[utoipa::path(post, path = "/api/v1/partners/{id}/sellers", tag = "catalog", security(("bearer" = [])), request_body = NewSellerBody,
    params(("id" = i64, Path)), responses((status = 201, body = UserView), (status = 403, body = super::error::ErrorBody), (status = 404, description = "no such partner", body = super::error::ErrorBody),
        (status = 409, description = "`email_taken`", body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn create_seller(
    State(state): State<AppState>,
    user: AuthUser,
    Path(partner_id): Path<i64>,
    Json(body): Json<NewSellerBody>,
) -> ApiResult<(StatusCode, axum::Json<UserView>)> {
    let accounts = &state.app.accounts;
    let seller = accounts
        .create_seller(&user.actor(), partner_id, &body.email, body.password)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&seller))))
}

#[utoipa::path(post, path = "/api/v1/products", tag = "catalog", security(("bearer" = [])), request_body = NewProductBody,
    responses((status = 201, body = ProductView), (status = 403, body = super::error::ErrorBody), (status = 404, description = "no such partner", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn create_product(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewProductBody>,
) -> ApiResult<(StatusCode, axum::Json<ProductView>)> {
    let created = state
        .app
        .catalog
        .create_product(&user.actor(), body.into())
        .await?;
    Ok((StatusCode::CREATED, axum::Json(created.into())))
}

#[utoipa::path(post, path = "/api/v1/products/batch", tag = "catalog", security(("bearer" = [])), request_body = NewProductsBody,
    responses((status = 201, body = ProductsView), (status = 403, description = "not a seller or admin, or an item names another partner than the seller's own", body = super::error::ErrorBody),
        (status = 413, description = "`payload_too_large`: above `STAMPEDE_CATALOG_BATCH_BODY_LIMIT_BYTES`", body = super::error::ErrorBody),
        (status = 422, description = "`batch_invalid` (`items` lists each invalid item by index), `batch_too_large`, or `validation_failed` (an empty batch); nothing created", body = super::error::ErrorBody)))]
pub async fn create_products(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<NewProductsBody>,
) -> ApiResult<(StatusCode, axum::Json<ProductsView>)> {
    let inputs = body.products.into_iter().map(ProductInput::from).collect();
    let created = state
        .app
        .catalog
        .create_products(&user.actor(), inputs)
        .await?;
    let products = created.into_iter().map(ProductView::from).collect();
    Ok((StatusCode::CREATED, axum::Json(ProductsView { products })))
}

#[utoipa::path(get, path = "/api/v1/products", tag = "catalog", params(super::extract::PageQuery),
    responses((status = 200, body = PageView<ProductView>)))]
pub async fn list_products(State(state): State<AppState>, Page(page): Page) -> ApiResult<Response> {
    let key = RenderKey::Page {
        page: page.page,
        size: page.size,
    };
    rendered(&state, key, || async {
        let page = state.app.catalog.page(page).await?;
        Ok(Some(serde_json::to_vec(&PageView::<ProductView>::from(
            page,
        ))))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "catalog", params(("id" = i64, Path)),
    responses((status = 200, body = ProductView), (status = 404, body = super::error::ErrorBody)))]
pub async fn get_product(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    rendered(&state, RenderKey::Product(id), || async {
        let product = state.app.catalog.product(id).await?;
        Ok(product.map(|p| serde_json::to_vec(&ProductView::from(p))))
    })
    .await
}

/// Serves a rendered body while it is current, else renders, keeps and serves a new one.
/// `render` answers `None` for "not found".
async fn rendered<F, Fut>(state: &AppState, key: RenderKey, render: F) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ApiResult<Option<serde_json::Result<Vec<u8>>>>>,
{
    // Read the cursor before rendering: the body then reflects at least every event up to it.
    let cursor = state.events.cursor();
    let body = match state.rendered.get(key, cursor) {
        Some(body) => {
            state.metrics.cache_hits.inc();
            body
        }
        None => {
            let rendered = render()
                .await?
                .ok_or_else(|| ApiError::not_found("product"))?;
            let body = Bytes::from(rendered.map_err(ApiError::internal)?);
            state.rendered.put(key, cursor, body.clone());
            body
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

#[utoipa::path(patch, path = "/api/v1/products/{id}", tag = "catalog", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = ProductPatchBody, responses((status = 200, body = ProductView), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn update_product(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<ProductPatchBody>,
) -> ApiResult<axum::Json<ProductView>> {
    let change = ProductChange {
        name: body.name,
        price: body.price,
        release_at: body.release_at,
        max_per_user: body.max_per_user,
    };
    let updated = state
        .app
        .catalog
        .update_product(&user.actor(), id, change)
        .await?;
    Ok(axum::Json(updated.into()))
}

#[utoipa::path(post, path = "/api/v1/products/{id}/inbound", tag = "stock", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = InboundBody, responses((status = 200, body = StockView), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn inbound(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<InboundBody>,
) -> ApiResult<axum::Json<StockView>> {
    let levels = state
        .app
        .catalog
        .inbound(&user.actor(), id, body.quantity, body.memo.as_deref())
        .await?;
    Ok(axum::Json(levels.into()))
}

#[utoipa::path(post, path = "/api/v1/products/{id}/adjust", tag = "stock", security(("bearer" = [])), params(("id" = i64, Path)),
    request_body = AdjustBody, responses((status = 200, body = StockView), (status = 403, body = super::error::ErrorBody),
        (status = 404, body = super::error::ErrorBody), (status = 409, description = "`insufficient_stock`: on_hand would fall below held", body = super::error::ErrorBody),
        (status = 422, body = super::error::ErrorBody)))]
pub async fn adjust(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<AdjustBody>,
) -> ApiResult<axum::Json<StockView>> {
    let levels = state
        .app
        .catalog
        .adjust(&user.actor(), id, body.delta, &body.memo)
        .await?;
    Ok(axum::Json(levels.into()))
}

#[utoipa::path(get, path = "/api/v1/products/{id}/stock", tag = "stock", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = StockView), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn stock(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
) -> ApiResult<axum::Json<StockView>> {
    let levels = state.app.catalog.stock(&user.actor(), id).await?;
    Ok(axum::Json(levels.into()))
}

#[utoipa::path(get, path = "/api/v1/products/{id}/movements", tag = "stock", security(("bearer" = [])),
    params(("id" = i64, Path), super::extract::PageQuery),
    responses((status = 200, body = PageView<MovementView>), (status = 403, body = super::error::ErrorBody), (status = 404, body = super::error::ErrorBody)))]
pub async fn movements(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<i64>,
    Page(page): Page,
) -> ApiResult<axum::Json<PageView<MovementView>>> {
    let movements = state.app.catalog.movements(&user.actor(), id, page).await?;
    Ok(axum::Json(movements.into()))
}
