"""A support agent working one ticket through Warden, with the official SDKs (`openai`,
`anthropic`, `mcp`) pointed at the gateway as an agent team would point them: the agent's own
key, the token of the user it acts for, the ticket as its session. It holds no provider key.

The models behind the gateway are mocks (they cannot plan), so the agent's steps are written
out here; every call is a real SDK call through Envoy and Warden's chain. Each step states what
the gateway must do, and the script stops with an error if it does something else: `make demo`
runs it, and a test runs it on ports of its own.

    agent.py --gateway http://127.0.0.1:10000 --session ticket-4711 --user-token JWT \
             --approver target/debug/warden-dev
"""

import argparse
import asyncio
import json
import subprocess
import sys
import uuid

import anthropic
import openai
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

# The agent's own credential (a demo key; its sha256 is in policy.yaml).
AGENT_KEY = "wk-support-4e9b2c7a1f6d3085"
CARD = "4111 1111 1111 1111"
TICKET = (
    "Hi, Ann here. Order A-1001 (the espresso machine) arrived broken. Please refund it to my "
    f"card {CARD}. The milk jug, descaler and tamper (A-1002, A-1003, A-1004) came with it: "
    "refund those too, I am sending everything back."
)


def step(title):
    print(f"\n### {title}", flush=True)


def show(text):
    print(f"    {text}", flush=True)


def expect(holds, what):
    if not holds:
        sys.exit(f"agent.py: expected {what}")


def served(answer):
    """Who answered: the mock providers sign their answers (`served_by`)."""
    return (answer.model_extra or {}).get("served_by")


def approve(approver, denial, session):
    """The approver (a person, in some approval UI) signs the call the denial describes."""
    wanted = denial["requires"]["approval"]
    return subprocess.run(
        [approver, "approval", "--tool", wanted["tool"], "--args-sha256", wanted["args_sha256"],
         "--session", session, "--agent", "support-agent", "--tenant", "acme", "--jti", str(uuid.uuid4())],
        check=True, capture_output=True, text=True,
    ).stdout.strip()


def denial_of(result):
    return (result.meta or {}).get("warden/denial")


async def orders_session(args, headers):
    """The MCP part of the ticket: look the order up, refund it with an approval, and the rest."""
    http = create_mcp_http_client(headers={"x-api-key": AGENT_KEY, **headers})
    async with Client(streamable_http_client(f"{args.gateway}/mcp/orders", http_client=http)) as orders:
        step("mcp: the agent lists the orders server's tools (delete_customer matches no rule: never shown)")
        names = [t.name for t in (await orders.list_tools()).tools]
        show(f"tools: {names}")
        expect(names == ["get_order", "issue_refund"], f"get_order and issue_refund only, got {names}")

        step("mcp: get_order is a read: allowed, and the server answers")
        result = await orders.call_tool("get_order", {"order_id": "A-1001"})
        order = json.loads(result.content[0].text)
        show(f"order: {order}")
        expect(not result.is_error and order["total_usd"] == 249.0, "the order")

        refund = {"order_id": "A-1001", "amount_usd": 249.0, "reason": "arrived damaged"}
        step("mcp: issue_refund is a write: it needs a person's approval, bound to these arguments")
        result = await orders.call_tool("issue_refund", refund)
        denial = denial_of(result)
        show(f"is_error={result.is_error}: {result.content[0].text[:150]}…")
        expect(result.is_error and denial and denial["reason"] == "approval_required", "approval_required")

        step("approver: a person approves this one refund; the agent retries with the approval")
        approval = approve(args.approver, denial, args.session)
        show(f"approval: {approval[:24]}… (tool {denial['requires']['approval']['tool']}, single use)")
        result = await orders.call_tool("issue_refund", refund, meta={"warden/approval": approval})
        show(f"is_error={result.is_error}: {result.content[0].text}")
        expect(not result.is_error and "R-0001" in result.content[0].text, "the refund made")

        step("mcp: the same approval again (a replayed call): refused, it was used once")
        result = await orders.call_tool("issue_refund", refund, meta={"warden/approval": approval})
        denial = denial_of(result)
        show(f"is_error={result.is_error}: reason {denial and denial['reason']}")
        expect(result.is_error and denial and denial["reason"] == "approval_reused", "approval_reused")

        step("mcp: three more refunds, each approved: the policy allows 3 per ticket, so the last is refused")
        for order_id, amount in [("A-1002", 19.0), ("A-1003", 12.5), ("A-1004", 29.0)]:
            call = {"order_id": order_id, "amount_usd": amount, "reason": "returned with A-1001"}
            denial = denial_of(await orders.call_tool("issue_refund", call))
            approval = approve(args.approver, denial, args.session)
            try:
                result = await orders.call_tool("issue_refund", call, meta={"warden/approval": approval})
                show(f"{order_id}: {result.content[0].text}")
                expect(order_id != "A-1004" and not result.is_error, f"the refund of {order_id}, and no fourth")
            except MCPError as refused:
                # token-budget answers in JSON-RPC: the SDK raises it.
                data = refused.error.data or {}
                show(f"{order_id}: refused: JSON-RPC {refused.error.code} {refused.error.message!r}, rule {data.get('rule')}")
                expect(order_id == "A-1004" and data.get("rule") == "refunds-per-session", "only A-1004 refused")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--user-token", required=True)
    parser.add_argument("--approver", required=True)
    args = parser.parse_args()
    headers = {"x-user-token": args.user_token, "x-agent-session": args.session}
    # max_retries=0: every failover below is the gateway's, not the SDK's.
    gpt = openai.OpenAI(base_url=f"{args.gateway}/v1", api_key=AGENT_KEY, default_headers=headers, max_retries=0)
    print(f"Ticket {args.session}, from ann@acme.test: {TICKET}")

    step("identity: the agent's key without the token of the user it acts for is refused")
    anonymous = openai.OpenAI(base_url=f"{args.gateway}/v1", api_key=AGENT_KEY, max_retries=0,
                              default_headers={"x-agent-session": args.session})
    try:
        anonymous.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        expect(False, "a refusal")
    except openai.APIStatusError as refused:
        show(f"{refused.status_code}: {refused.body}")
        expect(refused.status_code == 401, "401")

    step("openai: the agent (acting for ann@acme.test) reads the ticket with gpt-4o; the card number is masked on the way")
    answer = gpt.chat.completions.create(model="gpt-4o", messages=[
        {"role": "system", "content": "You are the shop's support agent. Say what the customer wants."},
        {"role": "user", "content": TICKET},
    ])
    text = answer.choices[0].message.content
    show(f"served by {served(answer)} as {answer.model}, usage {answer.usage.prompt_tokens} in / {answer.usage.completion_tokens} out")
    show(f"the provider read: …{text[text.index('refund it'):][:60]}…")
    expect(CARD not in text and "[PAYMENT_CARD]" in text, "the card masked")

    asyncio.run(orders_session(args, headers))

    step("anthropic: the agent drafts its reply to Ann with claude-sonnet-4")
    claude = anthropic.Anthropic(base_url=args.gateway, api_key=AGENT_KEY, default_headers=headers, max_retries=0)
    message = claude.messages.create(model="claude-sonnet-4", max_tokens=300, messages=[
        {"role": "user", "content": "Draft a reply: A-1001, A-1002 and A-1003 refunded, A-1004 needs a supervisor."},
    ])
    show(f"served by {served(message)} as {message.model}, usage {message.usage.input_tokens} in / {message.usage.output_tokens} out")
    expect(served(message) == "anthropic", "anthropic")

    step("router: the first gpt-4o provider fails (503); the gateway fails over to the backup account")
    answer = gpt.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Classify the ticket: refund, damaged item."}],
        extra_headers={"x-mock-fail": "openai=503"},  # the mock provider named openai fails this request
    )
    show(f"HTTP 200 to the SDK, served by {served(answer)} as {answer.model}")
    expect(served(answer) == "backup", "backup")

    step("token-budget: the ticket's cent of gpt-4o is spent: the next call is moved to gpt-4o-mini (our own model)")
    answer = gpt.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Summarise the ticket."}])
    show(f"asked for gpt-4o, served by {served(answer)} as {answer.model}")
    expect(served(answer) == "local" and answer.model == "gpt-4o-mini", "gpt-4o-mini from local")


if __name__ == "__main__":
    main()
