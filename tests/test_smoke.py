from conftest import SCRIPTED, base_config, script


async def test_scripted_provider_streams_exact_deltas(serve):
    client = await serve(base_config(**SCRIPTED))
    got = await client.sse(
        "/v1/stream", params={"prompt": script(["a", "", "b\n", "c"]), "model": "scripted"}
    )
    assert got.status == 200
    assert "".join(d["content"] for d in got.json() if "content" in d) == "ab\nc"
