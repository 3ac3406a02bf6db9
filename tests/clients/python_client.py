"""Drives mcpgw with the official Python SDK (`mcp` on PyPI).

usage: python_client.py URL streamable|sse [--server]
Exits 0 and prints PASS when every check holds; raises (exit 1) on the first failure.
"""

import asyncio
import base64
import os
import sys

from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


async def collect(fetch):
    """Pages through a list; returns (items, pages)."""
    items, cursor, pages = [], None, 0
    while True:
        page = await fetch(cursor)
        pages += 1
        items.extend(page[0])
        cursor = page[1]
        if not cursor:
            return items, pages
        assert pages < 50, "pagination does not end"


async def main(url: str, transport: str, scoped: bool) -> None:
    logs = []

    async def on_log(params):
        logs.append(params)

    # With MCPGW_TOKEN set (a gateway with auth on), every request carries it as a bearer token.
    token = os.environ.get("MCPGW_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if transport == "sse":
        target = sse_client(url, headers=headers)
    elif headers:
        target = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    else:
        target = url
    # `log_level` opts in to log messages on 2026-07-28 (per request); the session era ignores it
    # and uses logging/setLevel below.
    async with Client(target, logging_callback=on_log, log_level="debug") as client:
        modern = client.protocol_version == "2026-07-28"
        # The default client probes the stateless era first: over streamable HTTP it gets it.
        assert modern == (transport != "sse"), client.protocol_version
        tools, tool_pages = await collect(lambda c: _tools(client, c))
        names = sorted(t.name for t in tools)
        if scoped:
            assert names == ["weather"], names
        else:
            assert names == ["broken", "echo", "filler_a", "filler_b", "weather"], names
            assert tool_pages >= 3, f"expected several pages, got {tool_pages}"
        weather = next(t for t in tools if t.name == "weather")
        assert weather.description == "Current weather for a city"
        assert weather.input_schema["required"] == ["city"], weather.input_schema

        resources, res_pages = await collect(lambda c: _resources(client, c))
        uris = sorted(str(r.uri) for r in resources)
        if scoped:
            assert uris == ["docs://readme"], uris
        else:
            assert uris == ["docs://license", "docs://logo.png", "docs://readme"], uris
            assert res_pages == 2, res_pages
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["docs://pages/{page}"], templates

        prompts, prompt_pages = await collect(lambda c: _prompts(client, c))
        pnames = sorted(p.name for p in prompts)
        if scoped:
            assert pnames == ["greet"], pnames
        else:
            assert pnames == ["describe_image", "greet", "review_page"], pnames
            assert prompt_pages == 2, prompt_pages

        # A REST-backed tool through the gateway, reaching the backend the test started.
        result = await client.call_tool("weather", {"city": "Paris"})
        assert not result.is_error, result
        text = result.content[0].text
        assert '"city":"Paris"' in text and '"temp_c":21' in text, text

        # Resources: text, binary, templated.
        readme = (await client.read_resource("docs://readme")).contents[0]
        assert readme.text == "# Hello from mcpgw" and readme.mime_type == "text/markdown", readme
        page = (await client.read_resource("docs://pages/intro")).contents[0]
        assert page.text == "Page intro of the docs", page
        if not scoped:
            logo = (await client.read_resource("docs://logo.png")).contents[0]
            assert logo.blob == PNG and base64.b64decode(logo.blob)[:4] == b"\x89PNG", logo
            assert logo.mime_type == "image/png"

        # A minijinja prompt with arguments.
        greet = await client.get_prompt("greet", {"name": "Ada"})
        assert greet.messages[0].role == "user" and greet.messages[0].content.text == "Hello Ada!", greet
        done = await client.complete({"type": "ref/prompt", "name": "greet"}, {"name": "name", "value": "A"})
        assert done.completion.values == ["Ada", "Alan"], done

        if not scoped:
            img = await client.get_prompt("describe_image", {"style": "vivid"})
            assert img.messages[0].content.text == "Describe this image in vivid words.", img
            assert img.messages[1].content.type == "image" and img.messages[1].content.mime_type == "image/png"
            review = await client.get_prompt("review_page", {"page": "setup"})
            embedded = review.messages[0].content
            assert embedded.type == "resource" and embedded.resource.text == "Page setup of the docs", embedded
            # Echo: POST body, and an upstream failure as an isError result.
            echo = await client.call_tool("echo", {"message": "hi", "n": 3})
            assert not echo.is_error and '"message":"hi"' in echo.content[0].text, echo
            broken = await client.call_tool("broken", {})
            assert broken.is_error and "HTTP 500" in broken.content[0].text, broken
            # Logging: after setLevel (session era) or with logLevel on each request (2026-07-28),
            # log notifications reach the client during a call.
            if not modern:
                await client.set_logging_level("debug")
            await client.call_tool("weather", {"city": "Oslo"})
            for _ in range(50):
                if logs:
                    break
                await asyncio.sleep(0.05)
            assert any("Oslo" in str(l.data) for l in logs), logs

        # Errors come back as JSON-RPC errors.
        try:
            await client.read_resource("docs://nope")
            raise AssertionError("reading a missing resource must fail")
        except Exception as e:  # noqa: BLE001 - any MCP error type is fine
            assert "not found" in str(e).lower(), e

        if not modern:
            await client.send_ping()
        version = client.protocol_version

    print(f"PASS python {transport} scoped={scoped} version={version}: {len(tools)} tools in {tool_pages} pages")


async def _tools(client, cursor):
    r = await client.list_tools(cursor=cursor)
    return r.tools, r.next_cursor


async def _resources(client, cursor):
    r = await client.list_resources(cursor=cursor)
    return r.resources, r.next_cursor


async def _prompts(client, cursor):
    r = await client.list_prompts(cursor=cursor)
    return r.prompts, r.next_cursor


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], "--server" in sys.argv[3:]))
