"""How the command line reaches Millrace: through the HTTP API, always.

With ``--url`` and ``--token`` (or MILLRACE_API_URL and MILLRACE_TOKEN) the requests go to
that server and its roles apply. Without them the same requests go to the API app built in
this process on the configured database, acting as the user at the terminal (as an operator
on the server acts). One path either way: the API's checks, answers and audit events.
"""
from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import FlowError


class Refused(FlowError):
    """The API refused a request: its problem document."""

    def __init__(self, status: int, problem: dict[str, Any]):
        self.status, self.problem = status, problem
        errors = problem.get("errors") or []
        listed = "".join(f"\n  {e.get('path') or '(document)'}: {e.get('message')}" for e in errors)
        super().__init__(f"{problem.get('detail') or problem.get('title') or status}{listed}")


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


class Client:
    """``call(method, path, ...)`` against a server (``url``/``token``) or the app in this process."""

    def __init__(self, url: str | None = None, token: str | None = None):
        self.url = (url or "").rstrip("/") or None
        self.token = token
        self._app: Any = None

    @property
    def remote(self) -> bool:
        return self.url is not None

    def call(self, method: str, path: str, *, json_body: Any = None, text: str | None = None,
             content_type: str | None = None, params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None, ok: tuple[int, ...] = ()) -> Answer:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = f"/api/v1{path}" + (f"?{urllib.parse.urlencode(query, doseq=True)}" if query else "")
        sent = dict(headers or {})
        data: bytes | None = None
        if json_body is not None:
            data, sent["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif text is not None:
            data, sent["Content-Type"] = text.encode(), content_type or "application/yaml"
        status, raw, answered = self._remote(method, target, data, sent) if self.remote else \
            self._local(method, target, data, sent)
        try:
            body = json.loads(raw) if raw and answered.get("Content-Type", "").split(";")[0].endswith("json") \
                else raw.decode("utf-8", "replace") if raw else None
        except ValueError:
            raise FlowError(f"{self.url or 'the API'} answered {status} with a body that is not JSON") from None
        if status >= 400 and status not in ok:
            raise Refused(status, body if isinstance(body, dict) else {"detail": str(body)[:500]})
        return Answer(status, body, answered)

    def pages(self, path: str, params: dict[str, Any] | None = None, limit: int | None = None) -> list[Any]:
        """Every item of a list (all its pages, or the first ``limit`` items)."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.call("GET", path, params={**(params or {}), "limit": min(limit or 200, 200),
                                                   "cursor": cursor}).body
            items += page["items"]
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(items) >= limit):
                return items[:limit] if limit is not None else items

    def _remote(self, method: str, target: str, data: bytes | None,
                headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        if not self.token:  # checked when a request goes out: commands acting on this machine need none
            raise FlowError("--url needs --token (or MILLRACE_TOKEN): a token from `millrace tokens create`")
        request = urllib.request.Request(self.url + target, data=data, method=method, headers={
            **headers, "Authorization": f"Bearer {self.token}", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=330) as answer:  # noqa: S310 - the URL the user gave
                return answer.status, answer.read(), dict(answer.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), dict(exc.headers)
        except urllib.error.URLError as exc:
            raise FlowError(f"cannot reach {self.url}: {exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # reset, closed mid-answer, timed out
            raise FlowError(f"{self.url} did not answer: {exc.__class__.__name__}: {exc}") from None

    def _local(self, method: str, target: str, data: bytes | None,
               headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        from api.auth import LOCAL_OPERATOR

        if self._app is None:
            from orchestrator.cli.wiring import api_app

            self._app = api_app().test_client()
        answer = self._app.open(target, method=method, data=data, headers=headers,
                                environ_overrides={LOCAL_OPERATOR: os.environ.get("USER") or "cli"})
        return answer.status_code, answer.get_data(), dict(answer.headers)
