"""/docs and /redoc work on a closed network: every script, style and icon they load is served
by the API itself (issue: a blank /docs where the CDN cannot be reached)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from urbanpulse.api.app import create_app
from urbanpulse.core.settings import Settings


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan: the documentation pages need neither the database nor Kafka.
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.local") as client:
        yield client


def loaded_urls(html: str) -> list[str]:
    """Whatever the page makes the browser fetch: src/href attributes and spec URLs."""
    attributes = re.findall(r'(?:src|href|spec-url)="([^"]*)"', html)
    specs = re.findall(r"url: '([^']*)'", html)
    return attributes + specs


@pytest.mark.parametrize(
    ("page", "marker"),
    [("/docs", b"SwaggerUIBundle"), ("/redoc", b"Redoc")],
)
async def test_the_docs_pages_load_only_local_files(
    http: httpx.AsyncClient, page: str, marker: bytes
) -> None:
    response = await http.get(page)
    assert response.status_code == 200
    urls = loaded_urls(response.text)
    assert any(u.endswith(".js") for u in urls), urls
    assert "http" not in response.text.replace("http-equiv", ""), "an absolute URL: a CDN"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await http.get(url)
        assert asset.status_code == 200, url
        if url.endswith(".js"):
            assert "javascript" in asset.headers["content-type"]
            assert marker in asset.content
        if url.endswith(".css"):
            assert asset.headers["content-type"].startswith("text/css")
            assert b".swagger-ui" in asset.content


async def test_swagger_ui_does_not_call_the_online_validator(http: httpx.AsyncClient) -> None:
    assert '"validatorUrl": null' in (await http.get("/docs")).text
