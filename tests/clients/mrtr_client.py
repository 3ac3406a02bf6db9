"""A 2026-07-28 client (the official Python SDK, `mode="2026-07-28"`) calling tools of
session-era upstreams through mcpgw that ask their client mid-call: the gateway turns those
requests into `input_required` and the SDK's callbacks answer them on its retries. The fixture's
sampling, elicitation and two-round tools, and the reference server's sampling tool.

usage: mrtr_client.py URL
Exits 0 and prints PASS when every check holds; raises (exit 1) on the first failure.
"""

import asyncio
import sys

from mcp import Client, types


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main(url: str) -> None:
    sampled, elicited = [], []

    async def on_sampling(context, params):
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled-{len(sampled)}"),
            model="mcpgw-test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(context, params):
        elicited.append(params)
        return types.ElicitResult(action="accept", content={"username": "ann", "email": "ann@example.com", "name": "ann"})

    async with Client(url, mode="2026-07-28", sampling_callback=on_sampling, elicitation_callback=on_elicitation) as client:
        assert client.protocol_version == "2026-07-28", client.protocol_version

        r = await client.call_tool("fixture__test_sampling", {"prompt": "capital of France?"})
        assert text_of(r) == "LLM response: sampled-1", r
        assert sampled[0].messages[0].content.text == "capital of France?", sampled

        r = await client.call_tool("fixture__test_elicitation", {"message": "who are you?"})
        assert "action=accept" in text_of(r) and "ann@example.com" in text_of(r), r
        assert elicited[0].message == "who are you?", elicited

        r = await client.call_tool("fixture__mcpgw_ask_twice", {})
        assert text_of(r).startswith("llm=sampled-2 user={") and '"name":"ann"' in text_of(r), r

        r = await client.call_tool("everything__trigger-sampling-request", {"prompt": "say hi", "maxTokens": 10})
        assert not r.is_error, r
        assert "sampled-3" in text_of(r), r
    print("PASS python mrtr")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
