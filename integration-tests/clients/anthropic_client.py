"""The official Anthropic Python SDK as an agent, for the end-to-end tests.

Sends one Messages request through the gateway and prints what the SDK made of the answer as
one JSON line: the text, stop reason and usage, or the API error's status and body.

    anthropic_client.py BASE_URL MODEL [--stream] [--system TEXT] [--tool NAME] [--header K=V ...]
                        [--api-key KEY]
"""

import argparse
import json
import sys

import anthropic


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("model")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--system")
    parser.add_argument("--tool")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--prompt", default="Say hello")
    # The agent's own key for the gateway (identity), or a dummy where the route needs none.
    parser.add_argument("--api-key", default="agent-dummy-key")
    args = parser.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)
    # The agent holds no provider key: the gateway adds the provider's. The key the SDK sends is
    # the agent's own (or a dummy), and must never reach a provider.
    client = anthropic.Anthropic(base_url=args.base_url, api_key=args.api_key,
                                 default_headers=headers, max_retries=0)
    request = {"model": args.model, "max_tokens": 64,
               "messages": [{"role": "user", "content": args.prompt}]}
    if args.system:
        request["system"] = args.system
    if args.tool:
        request["tools"] = [{"name": args.tool, "description": "a tool",
                             "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}]
    try:
        if args.stream:
            with client.messages.stream(**request) as stream:
                events = [event.type for event in stream]
                message = stream.get_final_message()
        else:
            events = []
            message = client.messages.create(**request)
    except anthropic.APIStatusError as e:
        print(json.dumps({"status": e.status_code, "error": e.body}))
        return 0
    text = "".join(block.text for block in message.content if block.type == "text")
    calls = [{"name": b.name, "input": b.input} for b in message.content if b.type == "tool_use"]
    print(json.dumps({"status": 200, "model": message.model, "text": text, "stop_reason": message.stop_reason,
                      "usage": message.usage.model_dump(), "tool_calls": calls, "events": events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
