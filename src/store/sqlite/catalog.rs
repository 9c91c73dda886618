use super::{insert_movement, move_stock, write_event, SqliteStore};
use crate::domain::order::MovementKind;
use crate::domain::{events, Timestamp};
use crate::store::{
    AdjustOutcome, CatalogStore, MovementRecord, NewProduct, Page, PageRequest, PartnerRecord,
    ProductPatch, ProductRecord, StockLevels, StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

const PRODUCT_SELECT: &str = "SELECT p.id, p.partner_id, p.name, p.price, p.release_at,
        p.max_per_user, s.on_hand, s.held, p.created_at, p.updated_at
    FROM products p JOIN stock s ON s.product_id = p.id";

fn product_from_row(row: &SqliteRow) -> StoreResult<ProductRecord> {
    Ok(ProductRecord {
        id: row.try_get("id")?,
        partner_id: row.try_get("partner_id")?,
        name: row.try_get("name")?,
        price: row.try_get("price")?,
        release_at: Timestamp::from_millis(row.try_get("release_at")?),
        max_per_user: row.try_get("max_per_user")?,
        on_hand: row.try_get("on_hand")?,
        held: row.try_get("held")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
    })
}

fn movement_from_row(row: &SqliteRow) -> StoreResult<MovementRecord> {
    let kind: String = row.try_get("kind")?;
    Ok(MovementRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        kind: MovementKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("movement kind {kind:?}")))?,
        quantity: row.try_get("quantity")?,
        order_id: row.try_get("order_id")?,
        memo: row.try_get("memo")?,
        on_hand_after: row.try_get("on_hand_after")?,
        held_after: row.try_get("held_after")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

impl SqliteStore {
    async fn product_in(&self, tx: &mut super::Tx, id: i64) -> StoreResult<Option<ProductRecord>> {
        let row = sqlx::query(&format!("{PRODUCT_SELECT} WHERE p.id = $1"))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(product_from_row).transpose()
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn insert_partner(
        &self,
        name: &str,
        commission_rate_bps: i64,
        now: Timestamp,
    ) -> StoreResult<PartnerRecord> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO partners (name, commission_rate_bps, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(commission_rate_bps)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await?;
        let event = events::partner_created(id, commission_rate_bps);
        write_event(&mut tx, &event, now.millis()).await?;
        tx.commit().await?;
        Ok(PartnerRecord {
            id,
            name: name.to_owned(),
            commission_rate_bps,
            created_at: now,
        })
    }

    async fn partner(&self, id: i64) -> StoreResult<Option<PartnerRecord>> {
        let row: Option<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT id, name, commission_rate_bps, created_at FROM partners WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(
            |(id, name, commission_rate_bps, created_at)| PartnerRecord {
                id,
                name,
                commission_rate_bps,
                created_at: Timestamp::from_millis(created_at),
            },
        ))
    }

    async fn insert_product(
        &self,
        product: &NewProduct,
        now: Timestamp,
    ) -> StoreResult<ProductRecord> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO products (partner_id, name, price, release_at, max_per_user, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(product.partner_id)
        .bind(&product.name)
        .bind(product.price)
        .bind(product.release_at.millis())
        .bind(product.max_per_user)
        .bind(now.millis())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO stock (product_id, on_hand, held) VALUES ($1, 0, 0)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        write_event(
            &mut tx,
            &events::product_changed(events::PRODUCT_CREATED, id),
            now.millis(),
        )
        .await?;
        if product.stock > 0 {
            let levels = move_stock(
                &mut tx,
                id,
                MovementKind::Inbound,
                product.stock,
                None,
                Some("initial stock"),
                now.millis(),
            )
            .await?;
            write_event(
                &mut tx,
                &events::stock_changed(id, levels.on_hand, levels.held),
                now.millis(),
            )
            .await?;
        }
        let record = self
            .product_in(&mut tx, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn product(&self, id: i64) -> StoreResult<Option<ProductRecord>> {
        let row = sqlx::query(&format!("{PRODUCT_SELECT} WHERE p.id = $1"))
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(product_from_row).transpose()
    }

    async fn list_products(&self, page: PageRequest) -> StoreResult<Page<ProductRecord>> {
        let rows = sqlx::query(&format!(
            "{PRODUCT_SELECT} ORDER BY p.release_at, p.id LIMIT $1 OFFSET $2"
        ))
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&self.reader)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&self.reader)
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

    async fn update_product(
        &self,
        id: i64,
        patch: &ProductPatch,
        now: Timestamp,
    ) -> StoreResult<Option<ProductRecord>> {
        let mut tx = self.write_tx().await?;
        // COALESCE keeps a column when its patch field is absent; the limit has a separate
        // flag because "absent" and "clear it" differ.
        let updated = sqlx::query(
            "UPDATE products SET name = COALESCE($2, name), price = COALESCE($3, price),
                 release_at = COALESCE($4, release_at),
                 max_per_user = CASE WHEN $5 THEN $6 ELSE max_per_user END,
                 updated_at = $7
             WHERE id = $1",
        )
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
        write_event(
            &mut tx,
            &events::product_changed(events::PRODUCT_UPDATED, id),
            now.millis(),
        )
        .await?;
        let record = self.product_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn inbound(
        &self,
        product_id: i64,
        quantity: i64,
        memo: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<Option<StockLevels>> {
        let mut tx = self.write_tx().await?;
        let levels = match move_stock(
            &mut tx,
            product_id,
            MovementKind::Inbound,
            quantity,
            None,
            memo,
            now.millis(),
        )
        .await
        {
            Ok(levels) => levels,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        write_event(
            &mut tx,
            &events::stock_changed(product_id, levels.on_hand, levels.held),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(Some(levels))
    }

    async fn adjust(
        &self,
        product_id: i64,
        delta: i64,
        memo: &str,
        now: Timestamp,
    ) -> StoreResult<AdjustOutcome> {
        let mut tx = self.write_tx().await?;
        // The guard is the WHERE clause: no read-then-write window, and `held >= 0` makes
        // it refuse a negative `on_hand` too.
        let row: Option<(i64, i64)> = sqlx::query_as(
            "UPDATE stock SET on_hand = on_hand + $2
             WHERE product_id = $1 AND on_hand + $2 >= held RETURNING on_hand, held",
        )
        .bind(product_id)
        .bind(delta)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((on_hand, held)) = row else {
            // Nothing changed; only tell a missing product from a refused correction.
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT product_id FROM stock WHERE product_id = $1")
                    .bind(product_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.rollback().await?;
            return Ok(match exists {
                Some(_) => AdjustOutcome::BelowHeld,
                None => AdjustOutcome::NotFound,
            });
        };
        let levels = StockLevels {
            product_id,
            on_hand,
            held,
        };
        let kind = MovementKind::Adjust;
        insert_movement(
            &mut tx,
            &levels,
            kind,
            delta,
            None,
            Some(memo),
            now.millis(),
        )
        .await?;
        write_event(
            &mut tx,
            &events::stock_changed(product_id, on_hand, held),
            now.millis(),
        )
        .await?;
        tx.commit().await?;
        Ok(AdjustOutcome::Done(levels))
    }

    async fn movements(
        &self,
        product_id: i64,
        page: PageRequest,
    ) -> StoreResult<Page<MovementRecord>> {
        let rows = sqlx::query(
            "SELECT id, product_id, kind, quantity, order_id, memo, on_hand_after, held_after, created_at
             FROM stock_movements WHERE product_id = $1 ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(product_id)
        .bind(page.size)
        .bind(page.offset())
        .fetch_all(&self.reader)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM stock_movements WHERE product_id = $1")
                .bind(product_id)
                .fetch_one(&self.reader)
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
}
