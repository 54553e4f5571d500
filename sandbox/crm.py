"""A tiny demo CRM for the example ``refunds`` skill, served by the sandbox at ``/crm``.

- ``GET /orders/{id}``: an order (customer, total, status, refunded so far) or 404;
- ``POST /refunds`` with ``{"order_id", "amount", "reason"?}``: refunds part of an order.
  The ``Idempotency-Key`` header deduplicates: the same key gets the first answer again
  (with ``Idempotent-Replayed: true``) and refunds nothing more, which is what makes
  "a risky action runs once per approval" visible in the demo. More than what is left to
  refund is a 422;
- ``GET /refunds``: every refund so far (handy to check what really ran).

State lives in memory and starts afresh with every sandbox run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["DemoCrm", "Order"]


@dataclass(slots=True)
class Order:
    id: str
    customer: str
    email: str
    total: Decimal
    currency: str = "EUR"
    status: str = "delivered"
    refunded: Decimal = Decimal("0")


@dataclass(slots=True)
class DemoCrm:
    """Orders and refunds in memory, with idempotent refunds."""

    orders: dict[str, Order] = field(default_factory=dict)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    _answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def sample(cls) -> DemoCrm:
        crm = cls()
        for order in (
            Order("1001", "Jane Doe", "jane.doe@example.com", Decimal("89.90")),
            Order("1002", "Bluebird Cafe", "accounts@bluebird.example", Decimal("1250.00")),
            Order("1003", "Ravi Menon", "ravi.menon@example.com", Decimal("42.50"), "GBP"),
            Order(
                "1004", "Lena Fischer", "lena.f@example.com", Decimal("310.00"), status="shipped"
            ),
            Order("1005", "Tomás Silva", "tomas@example.com", Decimal("15.00"), status="cancelled"),
        ):
            crm.orders[order.id] = order
        return crm

    def order(self, order_id: str) -> dict[str, Any] | None:
        order = self.orders.get(order_id)
        if order is None:
            return None
        return {
            "id": order.id,
            "customer": {"name": order.customer, "email": order.email},
            "total": float(order.total),
            "currency": order.currency,
            "status": order.status,
            "refunded": float(order.refunded),
            "refundable": float(order.total - order.refunded),
        }

    def refund(self, body: Any, idempotency_key: str | None) -> tuple[int, dict[str, Any], bool]:
        """(status, answer, replayed) for a refund request."""
        if idempotency_key and idempotency_key in self._answers:
            status, answer = self._answers[idempotency_key]
            return status, answer, True
        status, answer = self._refund(body)
        if idempotency_key:
            self._answers[idempotency_key] = (status, answer)
        return status, answer, False

    def _refund(self, body: Any) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            return 400, {"error": "expected a JSON object"}
        order = self.orders.get(str(body.get("order_id", "")))
        if order is None:
            return 404, {"error": "order not found"}
        try:
            amount = Decimal(str(body.get("amount")))
        except InvalidOperation:
            return 422, {"error": "amount must be a number"}
        if not amount.is_finite() or amount <= 0:
            return 422, {"error": "amount must be positive"}
        left = order.total - order.refunded
        if amount > left:
            return 422, {"error": f"only {left} {order.currency} left to refund"}
        order.refunded += amount
        refund = {
            "id": f"RF-{len(self.refunds) + 1:05d}",
            "order_id": order.id,
            "amount": float(amount),
            "currency": order.currency,
            "reason": str(body.get("reason") or ""),
            "status": "succeeded",
        }
        self.refunds.append(refund)
        return 201, refund


def routes(crm: DemoCrm) -> list[Route]:
    """The CRM's routes (mount under ``/crm``)."""

    async def get_order(request: Request) -> Response:
        found = crm.order(request.path_params["order_id"])
        if found is None:
            return JSONResponse({"error": "order not found"}, status_code=404)
        return JSONResponse(found)

    async def post_refund(request: Request) -> Response:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            return JSONResponse({"error": "malformed JSON"}, status_code=400)
        key = request.headers.get("idempotency-key")
        status, answer, replayed = crm.refund(body, key)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return JSONResponse(answer, status_code=status, headers=headers)

    async def list_refunds(_: Request) -> Response:
        return JSONResponse({"refunds": crm.refunds})

    return [
        Route("/orders/{order_id}", get_order, methods=["GET"]),
        Route("/refunds", post_refund, methods=["POST"]),
        Route("/refunds", list_refunds, methods=["GET"]),
    ]
