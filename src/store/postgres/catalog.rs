//! Partners, products and their stock accounts outside of order placement.

use super::catalog_batch;
use super::conn::{snapshot, PgStore};
use super::outbox;
use super::stock::{self, Movement};
use crate::domain::events::{self, NewEvent};
use crate::domain::order::MovementKind;
use crate::domain::Timestamp;
use crate::store::catalog::INITIAL_STOCK_MEMO;
use crate::store::rows::{movement_from_row, partner_from_row, product_from_row};
use crate::store::{
    sql, AdjustOutcome, CatalogStore, MovementRecord, NewProduct, Page, PageRequest, PartnerRecord,
    ProductPatch, ProductRecord, StockLevels, StoreResult,
};
use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::Row;

#[async_trait]
impl CatalogStore for PgStore {
    #[tracing::instrument(skip_all)]
    async fn insert_partner(
        &self,
        name: &str,
        commission_rate_bps: i64,
        now: Timestamp,
    ) -> StoreResult<PartnerRecord> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(sql::INSERT_PARTNER)
            .bind(name)
            .bind(commission_rate_bps)
            .bind(now.millis())
            .fetch_one(&mut *tx)
            .await?;
        let partner = partner_from_row(&row)?;
        let event = events::partner_created(partner.id, partner.commission_rate_bps);
        outbox::append(&mut tx, &[event], now).await?;
        tx.commit().await?;
        Ok(partner)
    }

    #[tracing::instrument(skip_all, fields(partner_id = id))]
    async fn partner(&self, id: i64) -> StoreResult<Option<PartnerRecord>> {
        let row = sqlx::query(sql::PARTNER_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(partner_from_row).transpose()
    }

    #[tracing::instrument(skip_all, fields(partner_id = product.partner_id))]
    async fn insert_product(
        &self,
        product: &NewProduct,
        now: Timestamp,
    ) -> StoreResult<ProductRecord> {
        insert_product(&self.pool, product, now).await
    }

    #[tracing::instrument(skip_all, fields(count = products.len()))]
    async fn insert_products(
        &self,
        products: &[NewProduct],
        now: Timestamp,
    ) -> StoreResult<Vec<ProductRecord>> {
        if products.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let records = catalog_batch::insert_products(&mut tx, products, now).await?;
        tx.commit().await?;
        Ok(records)
    }

    #[tracing::instrument(skip_all, fields(product_id = id))]
    async fn product(&self, id: i64) -> StoreResult<Option<ProductRecord>> {
        let mut conn = self.pool.acquire().await?;
        product(&mut conn, id).await
    }

    #[tracing::instrument(skip_all, fields(page = page.page, size = page.size))]
    async fn list_products(&self, page: PageRequest) -> StoreResult<Page<ProductRecord>> {
        list_products(&self.pool, page).await
    }

    #[tracing::instrument(skip_all, fields(product_id = id))]
    async fn update_product(
        &self,
        id: i64,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> StoreResult<Option<ProductRecord>> {
        update_product(&self.pool, id, patch, now).await
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, quantity = quantity))]
    async fn inbound(
        &self,
        product_id: i64,
        quantity: i64,
        memo: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<StockLevels>> {
        inbound(&self.pool, product_id, quantity, memo, now).await
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, delta = delta))]
    async fn adjust(
        &self,
        product_id: i64,
        delta: i64,
        memo: &str,
        now: Timestamp,
    ) -> StoreResult<AdjustOutcome> {
        adjust(&self.pool, product_id, delta, memo, now).await
    }

    #[tracing::instrument(skip_all, fields(product_id = product_id, page = page.page))]
    async fn movements(
        &self,
        product_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<MovementRecord>> {
        movements(&self.pool, product_id, page).await
    }
}

async fn product(conn: &mut PgConnection, id: i64) -> StoreResult<Option<ProductRecord>> {
    let row = sqlx::query(sql::PRODUCT_BY_ID)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(product_from_row).transpose()
}

/// Product, stock account, opening inbound movement and events in one transaction, so a
/// product never exists without its account.
async fn insert_product(
    pool: &PgPool,
    new: &NewProduct,
    now: Timestamp,
) -> StoreResult<ProductRecord> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(sql::INSERT_PRODUCT)
        .bind(new.partner_id)
        .bind(&new.name)
        .bind(new.price)
        .bind(new.release_at.millis())
        .bind(new.max_per_user)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO stock (product_id, on_hand, held) VALUES ($1, $2, 0)")
        .bind(id)
        .bind(new.stock)
        .execute(&mut *tx)
        .await?;
    // Like SQLite: the opening stock is an ordinary inbound, and a product created empty
    // has no stock event until its first inbound.
    let mut outgoing = vec![events::product_changed(events::PRODUCT_CREATED, id)];
    if new.stock > 0 {
        let after = (new.stock, 0);
        let opening = inbound_movement(id, new.stock, Some(INITIAL_STOCK_MEMO), after);
        stock::insert_movements(&mut tx, &[opening], now).await?;
        outgoing.push(events::stock_changed(id, new.stock, 0));
    }
    outbox::append(&mut tx, &outgoing, now).await?;
    tx.commit().await?;
    Ok(ProductRecord {
        id,
        partner_id: new.partner_id,
        name: new.name.clone(),
        price: new.price,
        release_at: new.release_at,
        max_per_user: new.max_per_user,
        on_hand: new.stock,
        held: 0,
        created_at: now,
        updated_at: now,
    })
}

fn inbound_movement(
    product_id: i64,
    quantity: i64,
    memo: Option<&str>,
    after: (i64, i64),
) -> Movement<'_> {
    Movement {
        product_id,
        kind: MovementKind::Inbound,
        quantity,
        order_id: None,
        memo,
        on_hand_after: after.0,
        held_after: after.1,
    }
}

async fn list_products(pool: &PgPool, page: PageRequest) -> StoreResult<Page<ProductRecord>> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sql::PRODUCTS_PAGE)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_PRODUCTS)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(product_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}

/// `max_per_user` is tri-state (leave, set, clear), hence the flag beside its value.
async fn update_product(
    pool: &PgPool,
    id: i64,
    patch: &ProductPatch,
    now: Timestamp,
) -> StoreResult<Option<ProductRecord>> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(sql::UPDATE_PRODUCT)
        .bind(id)
        .bind(patch.name.as_deref())
        .bind(patch.price)
        .bind(patch.release_at.map(Timestamp::millis))
        .bind(patch.max_per_user.is_some())
        .bind(patch.max_per_user.flatten())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
    if updated.rows_affected() == 0 {
        return Ok(None);
    }
    let record = product(&mut tx, id).await?;
    let event = events::product_changed(events::PRODUCT_UPDATED, id);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(record)
}

/// The `UPDATE` both changes and locks the account row, so the movement's balances are the
/// ones this transaction produced.
async fn inbound(
    pool: &PgPool,
    product_id: i64,
    quantity: i64,
    memo: Option<&str>,
    now: Timestamp,
) -> StoreResult<Option<StockLevels>> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "UPDATE stock SET on_hand = on_hand + $2 WHERE product_id = $1 RETURNING on_hand, held",
    )
    .bind(product_id)
    .bind(quantity)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let levels = StockLevels {
        product_id,
        on_hand: row.try_get("on_hand")?,
        held: row.try_get("held")?,
    };
    let after = (levels.on_hand, levels.held);
    let movement = inbound_movement(product_id, quantity, memo, after);
    stock::insert_movements(&mut tx, &[movement], now).await?;
    let event: NewEvent = events::stock_changed(product_id, levels.on_hand, levels.held);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(Some(levels))
}

/// The guard is the `UPDATE`'s own WHERE clause, never a read before it: the statement locks
/// the account row, and under READ COMMITTED a concurrent writer makes it wait and then
/// re-check `on_hand + delta >= held` against the committed row. `held >= 0`, so the same
/// guard keeps `on_hand` from going negative.
async fn adjust(
    pool: &PgPool,
    product_id: i64,
    delta: i64,
    memo: &str,
    now: Timestamp,
) -> StoreResult<AdjustOutcome> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(sql::ADJUST_STOCK)
        .bind(product_id)
        .bind(delta)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        // Nothing changed (the transaction rolls back when dropped); only tell a missing
        // product from a refused correction.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM stock WHERE product_id = $1)")
                .bind(product_id)
                .fetch_one(&mut *tx)
                .await?;
        return Ok(if exists {
            AdjustOutcome::BelowHeld
        } else {
            AdjustOutcome::NotFound
        });
    };
    let levels = StockLevels {
        product_id,
        on_hand: row.try_get("on_hand")?,
        held: row.try_get("held")?,
    };
    let movement = Movement {
        product_id,
        kind: MovementKind::Adjust,
        quantity: delta,
        order_id: None,
        memo: Some(memo),
        on_hand_after: levels.on_hand,
        held_after: levels.held,
    };
    stock::insert_movements(&mut tx, &[movement], now).await?;
    let event = events::stock_changed(product_id, levels.on_hand, levels.held);
    outbox::append(&mut tx, &[event], now).await?;
    tx.commit().await?;
    Ok(AdjustOutcome::Done(levels))
}

async fn movements(
    pool: &PgPool,
    product_id: i64,
    page: PageRequest,
) -> StoreResult<Page<MovementRecord>> {
    let mut tx = snapshot(pool).await?;
    let rows = sqlx::query(sql::MOVEMENTS_PAGE)
        .bind(product_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&mut *tx)
        .await?;
    let total: i64 = sqlx::query_scalar(sql::COUNT_MOVEMENTS)
        .bind(product_id)
        .fetch_one(&mut *tx)
        .await?;
    Ok(Page {
        items: rows
            .iter()
            .map(movement_from_row)
            .collect::<StoreResult<_>>()?,
        page: page.page,
        size: page.size,
        total,
    })
}
