"""Smoke test of the fixture upstream over SSE or stdio with the official Python SDK.

usage: fixture_smoke.py sse URL | fixture_smoke.py stdio NODE SERVER_MJS
Prints PASS when tools, resources and prompts list and a tool call answers.
"""

import asyncio
import sys

from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client


async def main() -> None:
    if sys.argv[1] == "sse":
        target = sse_client(sys.argv[2])
    else:
        target = StdioServerParameters(command=sys.argv[2], args=[sys.argv[3], "--transport", "stdio"])
    async with Client(target, mode="legacy") as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"test_simple_text", "test_sampling", "test_tool_with_progress"} <= tools, tools
        result = await client.call_tool("test_simple_text", {})
        assert result.content[0].text == "This is a simple text response for testing.", result
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert "test://static-text" in uris, uris
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "test_prompt_with_arguments" in prompts, prompts
    print(f"PASS fixture {sys.argv[1]}: {len(tools)} tools")


asyncio.run(main())
