"""The API's docs page works with no network: Swagger UI comes from the app itself."""
from __future__ import annotations

import subprocess

import pytest
import requests

from orchestrator.store.access import Role, create_token
from tests.conftest import Served, free_port
from tests.integration.test_flower_browser import chromium

pytestmark = pytest.mark.integration


def test_the_docs_page_renders_the_operations_offline(engine, tmp_path) -> None:
    port = free_port()
    api = Served("api-docs", ["api", "--port", str(port), "--workers", "1"], "/healthz", port=port)
    try:
        page = requests.get(f"{api.base}/api/v1/docs", timeout=10).text
        assert "cdn." not in page and "/api/v1/docs/assets/swagger-ui-bundle.js" in page
        script = requests.get(f"{api.base}/api/v1/docs/assets/swagger-ui-bundle.js", timeout=10)
        assert script.status_code == 200 and len(script.content) > 100_000
        token = create_token(engine, "docs-reader", Role.VIEWER)
        # every host but this machine unreachable: only the app can serve the page's files
        dom = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
                              "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                              "--virtual-time-budget=15000", f"--user-data-dir={tmp_path / 'profile'}",
                              "--dump-dom", f"{api.base}/api/v1/docs#token={token}"],
                             capture_output=True, text=True, timeout=120).stdout
        assert 'class="swagger-ui"' in dom and "/api/v1/flows" in dom and "opblock" in dom, dom[-2000:]
    finally:
        api.stop()
