"""Shopify `orders/create` -> one stock reservation per order line.

The reservation rows commit with the handler's inbox row; their key (shop, order, line) also
makes a second order webhook for the same order (Shopify sends new ids for some retries)
reserve nothing twice.
"""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from common.errors import PermanentError
from handlers.payloads import read
from workers.plugin import Effects, Event

SHOP_HEADER = "x-shopify-shop-domain"
MAX_QUANTITY = 2**31 - 1

_RESERVE = sa.text(
    """
    INSERT INTO stock_reservations (shop, order_id, line_item_id, sku, quantity, event_id)
    SELECT :shop, :order_id, l.line_item_id, l.sku, l.quantity, :event_id
    FROM unnest(CAST(:lines AS text[]), CAST(:skus AS text[]), CAST(:quantities AS integer[]))
         AS l (line_item_id, sku, quantity)
    ON CONFLICT (shop, order_id, line_item_id) DO NOTHING
    """
)


class LineItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int | str
    sku: str | None = Field(default=None, max_length=256)
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class Order(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int | str
    line_items: list[LineItem] = Field(max_length=10_000)


def handle(event: Event, tx: Connection) -> Effects:
    shop = event.headers.get(SHOP_HEADER)
    if not shop:
        raise PermanentError(f"no {SHOP_HEADER} header: whose order is it?")
    order = read(event, Order)
    if not order.line_items:
        return Effects.ignore("order has no lines")
    reserved = tx.execute(
        _RESERVE,
        {
            "shop": shop,
            "order_id": str(order.id),
            "event_id": event.id,
            "lines": [str(line.id) for line in order.line_items],
            "skus": [line.sku for line in order.line_items],
            "quantities": [line.quantity for line in order.line_items],
        },
    ).rowcount
    return Effects(rows=reserved)
