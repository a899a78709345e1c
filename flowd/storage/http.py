"""The HTTP transport of flowd's Azure clients: the SDK's own (requests), minus file-system lookups that
requests repeats on every request.

Per request, requests looks for ~/.netrc (two stat calls) and re-checks the CA bundle path (a stat, and two
more per TLS request); Azure signs its requests itself and the bundle does not move while flowd runs.
Profiled on 1,000 uploads of 100 KiB to Azurite, these lookups were about a fifth of the Python time spent
per upload on this machine, where a stat is slow. Proxies and the CA bundle still come from the
environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE ...), read once per connection pool.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.core.pipeline.transport._bigger_block_size_http_adapters import BiggerBlockSizeHTTPAdapter


def _signed_by_azure(request: requests.PreparedRequest) -> requests.PreparedRequest:
    """requests' own auth hook, left as it is: the pipeline has signed the request already. Having one at
    all is what stops requests from reading ~/.netrc for credentials on every request."""
    return request


class _Adapter(BiggerBlockSizeHTTPAdapter):
    """Connection-pool keys and certificate settings worked out once per host and settings, not per request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: dict[tuple[Any, ...], tuple[dict[str, Any], dict[str, Any]]] = {}

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: Any,
                                             cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        parts = urlsplit(request.url or "")
        key = (parts.scheme.lower(), parts.hostname, parts.port, verify, cert)
        try:
            found = self._keys.get(key)
        except TypeError:  # an unhashable cert or verify: do as requests does
            return super().build_connection_pool_key_attributes(request, verify, cert)
        if found is None:
            found = super().build_connection_pool_key_attributes(request, verify, cert)
            self._keys[key] = found
        host, pool = found
        return dict(host), dict(pool)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        done = (url.lower().startswith("https"), verify, cert)
        if getattr(conn, "_flowd_cert_verify", None) == done:
            return  # this pool was set up with exactly these settings already
        super().cert_verify(conn, url, verify, cert)
        conn._flowd_cert_verify = done


class FlowdTransport(RequestsTransport):  # type: ignore[misc]
    def _init_session(self, session: requests.Session) -> None:
        super()._init_session(session)
        adapter = _Adapter(max_retries=getattr(session.get_adapter("https://"), "max_retries", None))
        for prefix in self._protocols:
            session.mount(prefix, adapter)
        session.auth = _signed_by_azure


def transport() -> FlowdTransport:
    return FlowdTransport()
