//! The catalogue: partners (sellers), products and their stock accounts outside order
//! placement ([`CatalogStore`]), with the rows they read and write. Stock is held,
//! committed and released by orders (`store::orders`); each backend's `stock.rs` writes
//! the accounts and their ledger.

use super::error::StoreResult;
use super::page::{Page, PageRequest};
use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use async_trait::async_trait;

/// Memo of the inbound movement that carries a new product's opening stock.
pub(crate) const INITIAL_STOCK_MEMO: &str = "initial stock";

#[async_trait]
pub trait CatalogStore: Send + Sync {
    async fn insert_partner(
        &self,
        name: &str,
        commission_rate_bps: i64,
        now: Timestamp,
    ) -> StoreResult<PartnerRecord>;
    async fn partner(&self, id: i64) -> StoreResult<Option<PartnerRecord>>;
    /// Creates the product, its stock account and (if `stock > 0`) an inbound movement,
    /// with `product.created` and `stock.changed` events, in one transaction.
    async fn insert_product(
        &self,
        product: &NewProduct,
        now: Timestamp,
    ) -> StoreResult<ProductRecord>;
    /// Creates every product as [`CatalogStore::insert_product`] would — its stock
    /// account, its opening inbound movement if `stock > 0`, and its `product.created` then
    /// `stock.changed` events, product by product in the given order — in ONE transaction:
    /// all of them or none. Returns them in the given order, ids ascending. A set-based
    /// statement per table, so its cost grows with rows, not with round trips; callers
    /// bound the slice (`catalog_batch_max`, or the seed's chunks).
    async fn insert_products(
        &self,
        products: &[NewProduct],
        now: Timestamp,
    ) -> StoreResult<Vec<ProductRecord>>;
    async fn product(&self, id: i64) -> StoreResult<Option<ProductRecord>>;
    /// Ordered by `release_at` then id, ascending.
    async fn list_products(&self, page: PageRequest) -> StoreResult<Page<ProductRecord>>;
    async fn update_product(
        &self,
        id: i64,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> StoreResult<Option<ProductRecord>>;
    /// Adds units to `on_hand` with an inbound movement and a `stock.changed` event.
    async fn inbound(
        &self,
        product_id: i64,
        quantity: i64,
        memo: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<StockLevels>>;
    /// Corrects `on_hand` by a signed `delta` with an `adjust` movement (quantity = delta)
    /// and a `stock.changed` event, in one transaction. A guarded conditional write: refused
    /// with [`AdjustOutcome::BelowHeld`], changing nothing, when `on_hand + delta < held`.
    async fn adjust(
        &self,
        product_id: i64,
        delta: i64,
        memo: &str,
        now: Timestamp,
    ) -> StoreResult<AdjustOutcome>;
    /// Newest first.
    async fn movements(
        &self,
        product_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<MovementRecord>>;
}

#[derive(Debug, Clone)]
pub struct PartnerRecord {
    pub id: i64,
    pub name: String,
    pub commission_rate_bps: i64,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub partner_id: i64,
    pub name: String,
    pub price: i64,
    pub stock: i64,
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub release_at: Option<Timestamp>,
    /// `Some(None)` clears the limit.
    pub max_per_user: Option<Option<i64>>,
}

impl NewProduct {
    /// What creating it announces, in order: `product.created`, then `stock.changed` only
    /// if it opens with stock (a product created empty has no stock event until its first
    /// inbound). Both backends, one product or a batch, write exactly these.
    pub(crate) fn creation_events(&self, id: i64) -> impl Iterator<Item = NewEvent> {
        let created = events::product_changed(events::PRODUCT_CREATED, id);
        let stocked = (self.stock > 0).then(|| events::stock_changed(id, self.stock, 0));
        std::iter::once(created).chain(stocked)
    }

    /// The record a product written from `self` with id `id` reads back as, before any
    /// order or correction touches it.
    pub fn created(&self, id: i64, now: Timestamp) -> ProductRecord {
        ProductRecord {
            id,
            partner_id: self.partner_id,
            name: self.name.clone(),
            price: self.price,
            release_at: self.release_at,
            max_per_user: self.max_per_user,
            on_hand: self.stock,
            held: 0,
            created_at: now,
            updated_at: now,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProductRecord {
    pub id: i64,
    pub partner_id: i64,
    pub name: String,
    pub price: i64,
    pub release_at: Timestamp,
    pub max_per_user: Option<i64>,
    pub on_hand: i64,
    pub held: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockLevels {
    pub product_id: i64,
    pub on_hand: i64,
    pub held: i64,
}

/// What a stock adjustment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustOutcome {
    /// Applied: the account's levels after it.
    Done(StockLevels),
    NotFound,
    /// Refused, nothing changed: `on_hand` would fall below `held` (the units promised to
    /// open orders), and so possibly below zero.
    BelowHeld,
}

#[derive(Debug, Clone)]
pub struct MovementRecord {
    pub id: i64,
    pub product_id: i64,
    pub kind: MovementKind,
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub memo: Option<String>,
    pub on_hand_after: i64,
    pub held_after: i64,
    pub created_at: Timestamp,
}
