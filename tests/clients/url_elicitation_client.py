"""A URL elicitation answered as a person would, with the official Python SDK (`mcp` on PyPI):
calls TOOL through the gateway as the holder of MCPGW_TOKEN; when the gateway asks the user to
authorize an upstream (elicitation mode "url"), follows the link headlessly as a browser would
(signs in to the gateway with the same token, logs in at the authorization server as LOGIN and
consents), then accepts; the call must then succeed and say it ran as LOGIN.

usage: url_elicitation_client.py URL TOOL LOGIN MODE   (MODE: legacy or 2026-07-28)
Exits 0 and prints PASS when it did; raises (exit 1) otherwise.
"""

import asyncio
import html
import json
import os
import re
import sys
from urllib.parse import urljoin

import httpx2 as httpx
from mcp import Client, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m, f"no {name} in the page"
    return html.unescape(m.group(1))


async def follow(link: str, token: str, login: str) -> None:
    """Opens the gateway's connect link in a headless browser and goes through to the end."""
    gateway = link.split("/oauth/")[0]
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as b:
        r = await b.get(link)
        if r.status_code == 200 and 'id="login"' in r.text:
            form = {"_csrf": hidden(r.text, "_csrf"), "next": hidden(r.text, "next"), "token": token}
            r = await b.post(f"{gateway}/oauth/login", data=form)
            assert r.status_code == 303, (r.status_code, r.text)
            r = await b.get(link)
        assert r.status_code == 303, (r.status_code, r.text)
        at = urljoin(link, r.headers["location"])
        for _ in range(12):
            if at.startswith((f"{gateway}/oauth/callback?", f"{gateway}/oauth/callback/")):
                r = await b.get(at)
                assert r.status_code == 200 and "Connected to" in r.text, (r.status_code, r.text)
                return
            r = await b.get(at)
            if not r.is_redirect:
                if 'name="password"' in r.text:
                    r = await b.post(at, data={"prompt": "login", "login": login, "password": "any"})
                else:
                    r = await b.post(at, data={"prompt": "consent"})
            assert r.is_redirect, (at, r.status_code, r.text[:300])
            at = urljoin(at, r.headers["location"])
        raise AssertionError(f"never sent back to the gateway: {at}")


async def main(url: str, tool: str, login: str, mode: str) -> None:
    token = os.environ["MCPGW_TOKEN"]
    asked = []

    async def on_elicitation(context, params):
        assert params.mode == "url", params
        asked.append(params.url)
        await follow(params.url, token, login)
        return types.ElicitResult(action="accept")

    headers = {"Authorization": f"Bearer {token}"}
    target = streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    async with Client(target, mode=mode, elicitation_callback=on_elicitation) as client:
        r = await client.call_tool(tool, {})
        assert not r.is_error, r
        who = json.loads(r.content[0].text)
        assert who["sub"] == login, who
        assert len(asked) == 1, asked
        # Connected now: the next call asks nothing.
        r = await client.call_tool(tool, {})
        assert not r.is_error and len(asked) == 1, (r, asked)
    print(f"PASS url elicitation ({mode}) as {login}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]))
