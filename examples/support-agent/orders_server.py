"""The shop's orders service as an MCP server (the official Python SDK, Streamable HTTP), the
upstream the support agent reaches through Warden. It knows nothing of Warden: what its
tools may be asked, by whom, how often and with whose approval is the gateway's to decide.

    orders_server.py --port 18120
"""

import argparse
import json

from mcp.server import MCPServer
from mcp_types import ToolAnnotations

ORDERS = {
    "A-1001": {"customer": "ann@acme.test", "item": "Espresso machine", "total_usd": 249.00, "status": "delivered, damaged in transit", "card": "visa ending 1111"},
    "A-1002": {"customer": "ann@acme.test", "item": "Milk jug", "total_usd": 19.00, "status": "delivered", "card": "visa ending 1111"},
    "A-1003": {"customer": "ann@acme.test", "item": "Descaler", "total_usd": 12.50, "status": "delivered", "card": "visa ending 1111"},
    "A-1004": {"customer": "ann@acme.test", "item": "Tamper", "total_usd": 29.00, "status": "delivered", "card": "visa ending 1111"},
}
REFUNDS: list[dict] = []

server = MCPServer("orders", instructions="Orders of the shop: look them up, refund them.")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def get_order(order_id: str) -> str:
    """An order: item, total, status and the card it was paid with."""
    order = ORDERS.get(order_id)
    if order is None:
        raise ValueError(f"no order {order_id}")
    return json.dumps({"order_id": order_id, **order})


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def issue_refund(order_id: str, amount_usd: float, reason: str) -> str:
    """Refunds an amount of an order to the card it was paid with."""
    order = ORDERS.get(order_id)
    if order is None:
        raise ValueError(f"no order {order_id}")
    if amount_usd <= 0 or amount_usd > order["total_usd"]:
        raise ValueError(f"a refund of {order_id} is between 0 and {order['total_usd']} USD")
    refund = {"refund_id": f"R-{len(REFUNDS) + 1:04d}", "order_id": order_id, "amount_usd": amount_usd, "reason": reason}
    REFUNDS.append(refund)
    return json.dumps(refund)


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True))
def delete_customer(email: str) -> str:
    """Erases a customer and their order history."""
    return json.dumps({"deleted": email})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=18120)
    args = parser.parse_args()
    server.run(transport="streamable-http", host="127.0.0.1", port=args.port, streamable_http_path="/mcp/orders")
