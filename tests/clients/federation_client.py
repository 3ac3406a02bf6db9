"""Two upstreams at once through mcpgw's /mcp, with the official Python SDK (`mcp` on PyPI):
the project's fixture and the reference server `@modelcontextprotocol/server-everything`,
both registered as upstreams (`fixture__*`, `everything__*`). Checks namespaced lists, plain
calls to both, progress and log notifications during a call, a sampling request relayed to this
client and answered, and log messages the upstream sends outside any call.

usage: federation_client.py URL
       federation_client.py --stdio COMMAND [ARG ...]   (launches the gateway, e.g. `mcpgw stdio`
                                                         or `mcpgw connect URL`, over stdio)
Also reads a federated resource and gets a federated prompt. Exits 0 and prints PASS when every check holds; raises (exit 1) on the first failure.
"""

import asyncio
import os
import sys

from mcp import Client, StdioServerParameters, types


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main(server) -> None:
    logs = []
    sampled = []

    async def on_log(params):
        logs.append(params)

    async def on_sampling(context, params):
        sampled.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled-by-python"),
            model="mcpgw-test-model",
            stop_reason="endTurn",
        )

    # The session era: a sampling request mid-call and log messages outside any call are what
    # this checks (the stateless era has neither; its translation is tested on its own).
    async with Client(server, mode="legacy", logging_callback=on_log, sampling_callback=on_sampling) as client:
        tools, cursor = [], None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        names = {t.name for t in tools}
        for expected in [
            "fixture__test_simple_text",
            "fixture__test_tool_with_progress",
            "everything__echo",
            "everything__trigger-long-running-operation",
            "everything__trigger-sampling-request",
            "everything__toggle-simulated-logging",
        ]:
            assert expected in names, f"{expected} missing from {sorted(names)}"
        echo = next(t for t in tools if t.name == "everything__echo")
        assert echo.input_schema["properties"]["message"]["type"] == "string", echo.input_schema

        r = await client.call_tool("everything__echo", {"message": "hello through mcpgw"})
        assert text_of(r) == "Echo: hello through mcpgw", r
        r = await client.call_tool("fixture__test_simple_text", {})
        assert "simple text" in text_of(r), r

        resources = await client.list_resources()
        uris = {str(r.uri) for r in resources.resources}
        assert "test://static-text" in uris, f"test://static-text missing from {sorted(uris)}"
        read = await client.read_resource("test://static-text")
        assert read.contents and "static" in read.contents[0].text.lower(), read
        prompts = await client.list_prompts()
        names = {p.name for p in prompts.prompts}
        assert "fixture__test_simple_prompt" in names, f"fixture__test_simple_prompt missing from {sorted(names)}"
        got = await client.get_prompt("fixture__test_simple_prompt")
        assert "simple prompt" in got.messages[0].content.text, got

        await client.set_logging_level("debug")

        progress = []

        async def on_progress(value, total, message):
            progress.append(value)

        r = await client.call_tool(
            "everything__trigger-long-running-operation",
            {"duration": 1, "steps": 4},
            progress_callback=on_progress,
        )
        assert not r.is_error, r
        assert len(progress) >= 4, f"progress notifications: {progress}"
        assert progress == sorted(progress), progress

        progress.clear()
        r = await client.call_tool("fixture__test_tool_with_progress", {}, progress_callback=on_progress)
        assert len(progress) >= 3, f"fixture progress: {progress}"

        before = len(logs)
        r = await client.call_tool("fixture__test_tool_with_logging", {})
        assert len(logs) >= before + 3, f"log messages during the call: {logs[before:]}"

        r = await client.call_tool("everything__trigger-sampling-request", {"prompt": "say hi", "maxTokens": 10})
        assert sampled, "the sampling request never reached the client"
        assert "sampled-by-python" in text_of(r), r

        # Log messages the upstream sends on its own, outside any call, every 5 s.
        before = len(logs)
        r = await client.call_tool("everything__toggle-simulated-logging", {})
        deadline = asyncio.get_running_loop().time() + 15
        while not any("level" in str(l.data).lower() for l in logs[before:]):
            assert asyncio.get_running_loop().time() < deadline, f"no simulated log message: {logs[before:]}"
            await asyncio.sleep(0.2)
        await client.call_tool("everything__toggle-simulated-logging", {})
    print("PASS python federation")


if __name__ == "__main__":
    if sys.argv[1] == "--stdio":
        # The launched process gets this environment whole (the SDK passes only a few variables
        # by default).
        target = StdioServerParameters(command=sys.argv[2], args=sys.argv[3:], env=dict(os.environ))
    else:
        target = sys.argv[1]
    asyncio.run(main(target))
