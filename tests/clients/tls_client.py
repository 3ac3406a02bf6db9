"""The official Python SDK (`mcp` on PyPI) over https: trusts only the test CA given, lists the
gateway's tools and calls `weather`, in the session era over streamable HTTP.

usage: tls_client.py URL CA_FILE
Exits 0 and prints PASS when every check holds; raises (exit 1) otherwise.
"""

import asyncio
import ssl
import sys

import httpx2 as httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, ca: str) -> None:
    assert url.startswith("https://"), url
    context = ssl.create_default_context(cafile=ca)
    async with httpx.AsyncClient(verify=context, timeout=30) as http:
        async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "weather" in names, names
            r = await client.call_tool("weather", {"city": "Oslo"})
            assert not r.is_error and "Oslo" in r.content[0].text, r
    # Without the CA the certificate is refused.
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            await http.get(url.replace("/mcp", "/health"))
        raise AssertionError("an unknown CA was trusted")
    except httpx.ConnectError:
        pass
    print("PASS")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
