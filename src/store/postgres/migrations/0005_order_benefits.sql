-- Coupons and points in orders (issue 4, item 2). The order names the user coupon it
-- holds or used; the coupon names the order back (user_coupons.order_id) while it is held
-- or used. Points held by an order are in point_holds.
ALTER TABLE orders ADD COLUMN coupon_id BIGINT REFERENCES user_coupons (id);
