"""A small client of the engine's incidents API, for the CLI (`gridwatch incidents …`)."""

from __future__ import annotations

from typing import Any

import httpx


class ApiError(RuntimeError):
    """The engine answered with an error (status and its reason), or did not answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}" if status else reason)
        self.status = status


class IncidentsClient:
    """Calls ``/api/…`` of a running engine with a bearer token.

    >>> IncidentsClient("http://127.0.0.1:8080", "t" * 16).base
    'http://127.0.0.1:8080/api'
    """

    def __init__(self, url: str, token: str | None, timeout_s: float = 10.0) -> None:
        self.base = url.rstrip("/") + "/api"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, self.base + path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"no engine answering at {self.base}: {exc}") from None
        if resp.status_code >= 400:
            try:
                reason = resp.json().get("detail", resp.text)
            except ValueError:
                reason = resp.text
            raise ApiError(resp.status_code, str(reason))
        return resp.json() if resp.content else None

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        result: list[dict[str, Any]] = self._call("GET", "/incidents", params=params)
        return result

    def show(self, incident_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/incidents/{incident_id}")
        return result

    def act(self, incident_id: str, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/incidents/{incident_id}/{action}", json=body or {})
        return result
