"""Bearer tokens with roles for the HTTP API, and a brake on guessing them.

Tokens come from the config (``api.tokens``: name, token, role ``viewer`` or ``operator``); the name is
recorded as the actor of what its holder does. A client (by its socket address: forwarded-for headers are
not trusted) that presents ``max_failures`` wrong tokens within ``window_s`` gets 429 for every further
wrong or missing token until the window has passed; a valid token is always accepted. Tokens are
compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine import metrics
from engine.api.peers import PEER_HEADER, verify
from engine.config.models import ApiToken

logger = logging.getLogger(__name__)

ROLE_RANK = {"reporter": 0, "viewer": 1, "operator": 2}
# Another worker of the scale-out, asking with a signature (never a token): it reads what a viewer reads.
PEER = ApiToken(name="peer-worker", token="-" * 16, role="viewer")

bearer = HTTPBearer(auto_error=False, description="A token from the config's `api.tokens`.")


class TokenAuth:
    """Checks a presented token against the configured ones for a role.

    >>> auth = TokenAuth([ApiToken(name="ops", token="o" * 20, role="operator")], max_failures=2)
    >>> auth.check("o" * 20, "operator", "10.0.0.1").name
    'ops'
    >>> for _ in range(2):
    ...     try:
    ...         auth.check("guess", "viewer", "10.0.0.9")
    ...     except HTTPException as exc:
    ...         code = exc.status_code
    >>> code, auth.blocked("10.0.0.9"), auth.blocked("10.0.0.1")
    (401, True, False)
    """

    def __init__(
        self,
        tokens: list[ApiToken],
        max_failures: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        peer_secret: str | None = None,
    ) -> None:
        self.tokens = tokens
        self.peer_secret = peer_secret  # a scale-out worker asking for a site it does not hold (engine/api/peers.py)
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str) -> bool:
        q = self._failures.get(client)
        if not q:
            return False
        now = self._clock()
        while q and now - q[0] > self.window_s:
            q.popleft()
        return len(q) >= self.max_failures

    def check(self, presented: str | None, role: str, client: str) -> ApiToken:
        """A valid token is always let in (a duty officer behind the same NAT as a guesser must not be locked
        out); wrong ones from an address that has sent ``max_failures`` within ``window_s`` get 429."""
        for t in self.tokens if presented else []:
            if hmac.compare_digest(t.token.encode(), presented.encode()):  # type: ignore[union-attr]
                if ROLE_RANK[t.role] < ROLE_RANK[role]:
                    raise HTTPException(403, f"token {t.name!r} is a {t.role}; this needs an {role}")
                return t
        if self.blocked(client):
            raise HTTPException(429, "too many wrong tokens from this address; try again in a minute",
                                headers={"Retry-After": str(int(self.window_s))})  # fmt: skip
        if not presented:
            raise HTTPException(401, "send Authorization: Bearer <token> (tokens are set in api.tokens)")
        self._failures.setdefault(client, deque()).append(self._clock())
        metrics.AUTH_FAILURES.inc()
        logger.warning("wrong API token from %s", client)
        raise HTTPException(401, "unknown token")

    def require(self, role: str, allow_query: bool = False) -> Any:
        """A FastAPI dependency: the token holder with at least ``role``.

        ``allow_query``: the token may also come as ``?token=`` (EventSource and <img> cannot send headers).
        """

        def dependency(
            request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
        ) -> ApiToken:
            presented = creds.credentials if creds else None
            if presented is None and allow_query:
                presented = request.query_params.get("token")
            client = request.client.host if request.client else "?"
            signed = request.headers.get(PEER_HEADER)
            peer_may = presented is None and signed and self.peer_secret and ROLE_RANK[role] <= ROLE_RANK["viewer"]
            if peer_may and verify(self.peer_secret, request.url.path, signed):  # type: ignore[arg-type]
                return PEER
            return self.check(presented, role, client)

        return Depends(dependency)
