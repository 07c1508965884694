"""Who a request comes from, for every limit kept per client address: the API's rate limits, the
admin's login lockout and the Flower gate's all ask `client_address`, so they agree."""

from collections.abc import Mapping
from types import SimpleNamespace

from django.http.request import HttpHeaders
from rest_framework.throttling import BaseThrottle


def client_address(meta: Mapping[str, str]) -> str:
    """The address in a request's META (Django's, or the Flower gate's REMOTE_ADDR and
    HTTP_X_FORWARDED_FOR): DRF's rule, which believes X-Forwarded-For only through
    JOB_TRUSTED_PROXIES proxies (NUM_PROXIES) and takes the peer's address with 0."""
    return BaseThrottle().get_ident(SimpleNamespace(META=meta, headers=HttpHeaders(meta)))
