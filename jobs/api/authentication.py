"""API token authentication: DRF's, with the token and its user read by the store.

DRF reads them with `Token.objects.select_related("user").get(key=...)`, which Django compiles into
SQL again for every request: about a sixth of a single submission's time. The PostgreSQL store reads
the same row with a statement prepared once per connection. Nothing is cached: a deleted token or a
deactivated user is refused on the next request."""

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from jobs.adapters.store import store


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple:
        token = store().token_owner(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
