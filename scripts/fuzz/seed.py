"""Gives the fuzzer's server a little of everything, so that generated requests reach the
handlers behind the id and permission checks rather than stopping at 404 or 403: a partner
with a seller, products with stock, a coupon campaign, and a buyer with points, a coupon
and orders in several states (unpaid, paid, shipped, delivered, confirmed).

Usage: seed.py BASE_URL ADMIN_EMAIL ADMIN_PASSWORD OUT_JSON
The admin exists already (`stampede admin create-user`); OUT_JSON receives the email and
password of each role the fuzzer signs in as. Exits non-zero on any unexpected answer.
"""

import json
import sys

import requests

PASSWORD = "fuzz-pass-1"


class Api:
    def __init__(self, base):
        self.base = base.rstrip("/") + "/api/v1"
        self.session = requests.Session()

    def call(self, method, path, token=None, body=None, expect=(200, 201), **headers):
        if token:
            headers["Authorization"] = f"Bearer {token}"
        answer = self.session.request(
            method, self.base + path, json=body, headers=headers, timeout=30
        )
        if answer.status_code not in expect:
            sys.exit(f"seed: {method} {path} answered {answer.status_code}: {answer.text}")
        return answer.json() if answer.content else None

    def login(self, email, password):
        body = {"email": email, "password": password}
        return self.call("POST", "/auth/login", body=body)["access_token"]


def place(api, buyer, product, key, quantity=1, **extra):
    body = {"items": [{"product_id": product, "quantity": quantity}], **extra}
    return api.call("POST", "/orders", buyer, body, **{"Idempotency-Key": key})


def pay(api, buyer, order):
    body = {"payment_key": f"fuzz-pay-{order['id']}", "amount": order["payable"]}
    return api.call("POST", f"/orders/{order['id']}/pay", buyer, body)


def main():
    base, admin_email, admin_password, out = sys.argv[1:5]
    api = Api(base)
    admin = api.login(admin_email, admin_password)

    partner = api.call("POST", "/partners", admin, {"name": "Fuzz Co", "commission_rate_bps": 1000})
    seller_email = "seller@fuzz.invalid"
    api.call(
        "POST",
        f"/partners/{partner['id']}/sellers",
        admin,
        {"email": seller_email, "password": PASSWORD},
    )
    seller = api.login(seller_email, PASSWORD)
    products = [
        api.call(
            "POST",
            "/products",
            seller,
            {"name": f"Fuzz sneaker {n}", "price": 10_000 * n, "stock": 1_000, "max_per_user": None},
        )["id"]
        for n in (1, 2, 3)
    ]
    campaign = api.call(
        "POST",
        "/coupons",
        admin,
        {"name": "Fuzz 10%", "discount_type": "percent", "discount_value": 10, "total_quantity": 1_000},
    )

    buyer_email = "buyer@fuzz.invalid"
    api.call("POST", "/auth/signup", body={"email": buyer_email, "password": PASSWORD})
    buyer = api.login(buyer_email, PASSWORD)
    buyer_id = api.call("GET", "/me", buyer)["id"]
    grant = {"user_id": buyer_id, "amount": 50_000, "reason": "fuzz seed"}
    api.call("POST", "/admin/points/grant", admin, grant, **{"Idempotency-Key": "fuzz-grant"})
    coupon = api.call("POST", f"/coupons/{campaign['id']}/issue", buyer)

    # Orders in each state a seller or the buyer can move on from.
    place(api, buyer, products[0], "fuzz-unpaid")
    paid = pay(api, buyer, place(api, buyer, products[0], "fuzz-paid", coupon_id=coupon["id"]))
    for key, steps in (
        ("fuzz-preparing", ["prepare"]),
        ("fuzz-shipped", ["prepare", "ship"]),
        ("fuzz-delivered", ["prepare", "ship", "deliver"]),
        ("fuzz-confirmed", ["prepare", "ship", "deliver"]),
    ):
        order = pay(api, buyer, place(api, buyer, products[1], key, points=1_000))
        part = order["partner_orders"][0]["id"]
        for step in steps:
            body = {"carrier": "CJ Logistics", "tracking_number": f"FUZZ-{part}"} if step == "ship" else None
            api.call("POST", f"/partner-orders/{part}/{step}", seller, body)
        if key == "fuzz-confirmed":
            api.call("POST", f"/orders/{order['id']}/confirm", buyer)
    api.call("POST", f"/products/{products[2]}/adjust", admin, {"delta": -1, "memo": "fuzz seed"})

    roles = {
        "admin": {"email": admin_email, "password": admin_password},
        "seller": {"email": seller_email, "password": PASSWORD},
        "buyer": {"email": buyer_email, "password": PASSWORD},
    }
    with open(out, "w") as f:
        json.dump(roles, f)
    print(
        f"seeded: partner {partner['id']}, products {products}, campaign {campaign['id']}, "
        f"orders up to {paid['id'] + 4}"
    )


if __name__ == "__main__":
    main()
