//! Partners, products and their stock: what sellers list and how much of it there is.
//! Stock moves here only by inbound and correction (`adjust`); holds, commits and releases
//! move with orders (`app::placement`, `app::orders`). Reads of the listing go through the
//! cluster's listing cache.

use super::error::{require, AppError, AppResult, ItemError};
use crate::clock::SharedClock;
use crate::cluster::cache::Listing;
use crate::domain::values::MAX_QUANTITY;
use crate::domain::{Actor, DomainError, Quantity, Role, StockDelta, Timestamp, Won};
use crate::events::EventSync;
use crate::store::{
    AdjustOutcome, MovementRecord, NewProduct, Page, PageRequest, PartnerRecord, ProductPatch,
    ProductRecord, StockLevels, Store,
};
use std::collections::BTreeSet;
use std::sync::Arc;

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_MEMO_CHARS: usize = 500;
pub const MAX_COMMISSION_RATE_BPS: i64 = 10_000;
pub const MAX_SEEDED_PRODUCTS: usize = 1_000_000;

pub struct Catalog {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub events: EventSync,
    pub listing: Listing,
    /// Most products one [`Catalog::create_products`] request may carry
    /// (`catalog_batch_max`).
    pub batch_max: usize,
}

/// A product as a seller or admin asks for it, before validation.
pub struct ProductInput {
    pub name: String,
    pub price: i64,
    pub stock: i64,
    /// Required for admins; a seller's own partner when absent.
    pub partner_id: Option<i64>,
    pub release_at: Option<Timestamp>,
    pub max_per_user: Option<i64>,
}

/// A change to a product, before validation; `max_per_user: Some(None)` clears the limit.
pub struct ProductChange {
    pub name: Option<String>,
    pub price: Option<i64>,
    pub release_at: Option<Timestamp>,
    pub max_per_user: Option<Option<i64>>,
}

/// A name, memo or reason: trimmed, 1 to `max_chars` characters.
pub fn text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, DomainError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max_chars {
        return Err(DomainError::new(
            field,
            format!("must be 1 to {max_chars} characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

fn max_per_user(raw: i64) -> Result<i64, DomainError> {
    Quantity::new("max_per_user", raw).map(Quantity::get)
}

/// One product as the caller may list it: whose it is (`Forbidden` for a seller naming
/// another partner), then every field checked. The partner's existence is the caller's
/// to check, against the store.
fn new_product(actor: &Actor, input: ProductInput, now: Timestamp) -> AppResult<NewProduct> {
    let partner_id = match (actor.role, input.partner_id) {
        (Role::Seller, requested) => {
            let own = actor.partner_id.ok_or(AppError::Forbidden)?;
            if requested.is_some_and(|p| p != own) {
                return Err(AppError::Forbidden);
            }
            own
        }
        (_, Some(partner_id)) => partner_id,
        (_, None) => return Err(DomainError::new("partner_id", "is required for admins").into()),
    };
    if !(0..=MAX_QUANTITY).contains(&input.stock) {
        let message = format!("must be 0..={MAX_QUANTITY}");
        return Err(DomainError::new("stock", message).into());
    }
    Ok(NewProduct {
        partner_id,
        name: text("name", &input.name, MAX_NAME_CHARS)?,
        price: Won::new("price", input.price)?.get(),
        stock: input.stock,
        release_at: input.release_at.unwrap_or(now),
        max_per_user: input.max_per_user.map(max_per_user).transpose()?,
    })
}

impl Catalog {
    pub async fn create_partner(
        &self,
        actor: &Actor,
        name: &str,
        commission_rate_bps: i64,
    ) -> AppResult<PartnerRecord> {
        require(actor, &[Role::Admin])?;
        let name = text("name", name, MAX_NAME_CHARS)?;
        if !(0..=MAX_COMMISSION_RATE_BPS).contains(&commission_rate_bps) {
            return Err(
                DomainError::new("commission_rate_bps", "must be 0..=10000 basis points").into(),
            );
        }
        let now = self.clock.now();
        Ok(self
            .store
            .insert_partner(&name, commission_rate_bps, now)
            .await?)
    }

    /// Lists a product for the seller's own partner (or, for an admin, the partner named),
    /// with its opening stock as an inbound movement.
    pub async fn create_product(
        &self,
        actor: &Actor,
        input: ProductInput,
    ) -> AppResult<ProductRecord> {
        require(actor, &[Role::Seller, Role::Admin])?;
        let now = self.clock.now();
        let product = new_product(actor, input, now)?;
        self.store
            .partner(product.partner_id)
            .await?
            .ok_or_else(|| AppError::not_found("partner"))?;
        let created = self.store.insert_product(&product, now).await?;
        // The listing cache changes generation on the event: the caller's next read is
        // fresh.
        self.events.caught_up().await;
        Ok(created)
    }

    /// Lists up to `batch_max` products at once, each authorised and validated exactly as
    /// [`Catalog::create_product`] does, in one transaction.
    ///
    /// All or nothing: if any item is invalid (or names a partner that does not exist),
    /// none is created and every invalid item is reported with its index. A client then
    /// fixes its file and sends the same request again, with no need to work out which
    /// items already exist (a partial success retried as is would list them twice). An
    /// item naming another partner than the seller's own refuses the whole request
    /// (`Forbidden`), as it would alone.
    pub async fn create_products(
        &self,
        actor: &Actor,
        inputs: Vec<ProductInput>,
    ) -> AppResult<Vec<ProductRecord>> {
        require(actor, &[Role::Seller, Role::Admin])?;
        if inputs.is_empty() {
            let message = format!("must hold 1 to {} products", self.batch_max);
            return Err(DomainError::new("products", message).into());
        }
        if inputs.len() > self.batch_max {
            return Err(AppError::BatchTooLarge {
                max: self.batch_max,
                given: inputs.len(),
            });
        }
        let now = self.clock.now();
        let mut valid = Vec::with_capacity(inputs.len());
        let mut invalid = Vec::new();
        for (index, input) in inputs.into_iter().enumerate() {
            match new_product(actor, input, now) {
                Ok(product) => valid.push((index, product)),
                Err(AppError::Invalid(error)) => invalid.push(ItemError { index, error }),
                Err(other) => return Err(other),
            }
        }
        invalid.extend(self.unknown_partners(&valid).await?);
        if !invalid.is_empty() {
            invalid.sort_unstable_by_key(|e| e.index);
            return Err(AppError::InvalidItems(invalid));
        }
        let products: Vec<NewProduct> = valid.into_iter().map(|(_, p)| p).collect();
        let created = self.store.insert_products(&products, now).await?;
        self.events.caught_up().await;
        Ok(created)
    }

    /// The items naming a partner that does not exist, one read per distinct partner
    /// (usually one).
    async fn unknown_partners(&self, valid: &[(usize, NewProduct)]) -> AppResult<Vec<ItemError>> {
        let partners: BTreeSet<i64> = valid.iter().map(|(_, p)| p.partner_id).collect();
        let mut missing = BTreeSet::new();
        for partner_id in partners {
            if self.store.partner(partner_id).await?.is_none() {
                missing.insert(partner_id);
            }
        }
        Ok(valid
            .iter()
            .filter(|(_, p)| missing.contains(&p.partner_id))
            .map(|&(index, _)| ItemError {
                index,
                error: DomainError::new("partner_id", "no such partner"),
            })
            .collect())
    }

    pub async fn update_product(
        &self,
        actor: &Actor,
        id: i64,
        change: ProductChange,
    ) -> AppResult<ProductRecord> {
        self.managed(actor, id).await?;
        let patch = ProductPatch {
            name: change
                .name
                .as_deref()
                .map(|n| text("name", n, MAX_NAME_CHARS))
                .transpose()?,
            price: change
                .price
                .map(|p| Won::new("price", p).map(Won::get))
                .transpose()?,
            release_at: change.release_at,
            max_per_user: change
                .max_per_user
                .map(|m| m.map(max_per_user).transpose())
                .transpose()?,
        };
        let updated = self
            .store
            .update_product(id, &patch, self.clock.now())
            .await?
            .ok_or_else(|| AppError::not_found("product"))?;
        self.events.caught_up().await;
        Ok(updated)
    }

    /// Units received: `on_hand` grows, with an inbound movement.
    pub async fn inbound(
        &self,
        actor: &Actor,
        id: i64,
        quantity: i64,
        memo: Option<&str>,
    ) -> AppResult<StockLevels> {
        self.managed(actor, id).await?;
        let quantity = Quantity::new("quantity", quantity)?;
        let memo = memo.map(|m| text("memo", m, MAX_MEMO_CHARS)).transpose()?;
        let levels = self
            .store
            .inbound(id, quantity.get(), memo.as_deref(), self.clock.now())
            .await?
            .ok_or_else(|| AppError::not_found("product"))?;
        // The sold-out gate sees the new level before the caller does.
        self.events.caught_up().await;
        Ok(levels)
    }

    /// A correction of `on_hand` (damaged, found, counted), never below what open orders
    /// hold.
    pub async fn adjust(
        &self,
        actor: &Actor,
        id: i64,
        delta: i64,
        memo: &str,
    ) -> AppResult<StockLevels> {
        self.managed(actor, id).await?;
        let delta = StockDelta::new("delta", delta)?;
        let memo = text("memo", memo, MAX_MEMO_CHARS)?;
        let outcome = self
            .store
            .adjust(id, delta.get(), &memo, self.clock.now())
            .await?;
        let levels = match outcome {
            AdjustOutcome::Done(levels) => levels,
            AdjustOutcome::NotFound => return Err(AppError::not_found("product")),
            AdjustOutcome::BelowHeld => return Err(AppError::InsufficientStock),
        };
        self.events.caught_up().await;
        Ok(levels)
    }

    pub async fn stock(&self, actor: &Actor, id: i64) -> AppResult<StockLevels> {
        let p = self.managed(actor, id).await?;
        Ok(StockLevels {
            product_id: p.id,
            on_hand: p.on_hand,
            held: p.held,
        })
    }

    /// The product's stock ledger, newest first.
    pub async fn movements(
        &self,
        actor: &Actor,
        id: i64,
        page: PageRequest,
    ) -> AppResult<Page<MovementRecord>> {
        self.managed(actor, id).await?;
        Ok(self.store.movements(id, page).await?)
    }

    /// A page of the listing (by `release_at`), through the listing cache.
    pub async fn page(&self, page: PageRequest) -> AppResult<Page<ProductRecord>> {
        Ok(self.listing.page(self.store.as_ref(), page).await?)
    }

    /// One product, through the listing cache.
    pub async fn product(&self, id: i64) -> AppResult<Option<ProductRecord>> {
        Ok(self.listing.product(self.store.as_ref(), id).await?)
    }

    /// A product the caller may manage: 404 if it does not exist, 403 if it belongs to
    /// another partner.
    async fn managed(&self, actor: &Actor, id: i64) -> AppResult<ProductRecord> {
        require(actor, &[Role::Seller, Role::Admin])?;
        let product = self
            .store
            .product(id)
            .await?
            .ok_or_else(|| AppError::not_found("product"))?;
        if !actor.may_manage_partner(product.partner_id) {
            return Err(AppError::Forbidden);
        }
        Ok(product)
    }
}

/// Products per transaction when seeding: large enough that a commit (an fsync with
/// `synchronous=FULL`) is a small share of each batch's time, small enough that one batch's
/// rows and JSON stay a few megabytes.
pub const SEED_BATCH_PRODUCTS: usize = 5_000;

/// Creates a partner and `count` products for load tests, released one minute apart going
/// back from `now` (so `GET /products` sorted by `release_at` has a deep, realistic order),
/// each with `stock` units. Goes through the store's batch path like an API batch: ledger
/// rows and events included, [`SEED_BATCH_PRODUCTS`] per transaction. Returns the partner
/// id.
pub async fn seed(
    store: &dyn Store,
    now: Timestamp,
    count: usize,
    stock: i64,
) -> anyhow::Result<i64> {
    if !(1..=MAX_SEEDED_PRODUCTS).contains(&count) {
        anyhow::bail!("count must be 1..={MAX_SEEDED_PRODUCTS}");
    }
    if !(0..=MAX_QUANTITY).contains(&stock) {
        anyhow::bail!("stock must be 0..={MAX_QUANTITY}");
    }
    let partner = store.insert_partner("Seeded catalog", 1000, now).await?;
    let mut batch = Vec::with_capacity(SEED_BATCH_PRODUCTS.min(count));
    for i in 0..count {
        batch.push(NewProduct {
            partner_id: partner.id,
            name: format!("Seeded product {i}"),
            price: 10_000 + (i as i64 % 500) * 1_000,
            stock,
            release_at: Timestamp::from_millis(now.millis() - i as i64 * 60_000),
            max_per_user: None,
        });
        if batch.len() == SEED_BATCH_PRODUCTS || i + 1 == count {
            store.insert_products(&batch, now).await?;
            batch.clear();
        }
    }
    Ok(partner.id)
}
