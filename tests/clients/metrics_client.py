"""Traffic for the metrics test, with the official Python SDK (`mcp` on PyPI), in the session era
over streamable HTTP with a bearer token (MCPGW_TOKEN): lists tools, calls a federated tool and a
REST tool once each, and one tool that does not exist.

usage: metrics_client.py URL FEDERATED_TOOL REST_TOOL
Exits 0 and prints PASS when every call answered as expected; raises (exit 1) otherwise.
"""

import asyncio
import os
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main(url: str, federated: str, rest: str) -> None:
    headers = {"Authorization": f"Bearer {os.environ['MCPGW_TOKEN']}"}
    target = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(target, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert federated in names and rest in names, names
        r = await client.call_tool(federated, {})
        assert not r.is_error, r
        r = await client.call_tool(rest, {"city": "Oslo"})
        assert not r.is_error and "Oslo" in r.content[0].text, r
        try:
            await client.call_tool("no_such_tool", {})
            raise AssertionError("an unknown tool was called")
        except AssertionError:
            raise
        except Exception:
            pass
    print("PASS")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
