"""API token authentication: DRF's, with the token and its user read by one prepared statement.

DRF reads them with `Token.objects.select_related("user").get(key=...)`, which Django compiles
into SQL again for every request: about a sixth of a single submission's time. On PostgreSQL
the same row is read by a statement prepared once per connection (`statements.token_owner`);
elsewhere, or for a user model that statement cannot read, DRF's own query runs. Nothing is
cached: a deleted token or a deactivated user is refused on the next request.
"""

from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from jobs.services import statements


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple:
        if connection.vendor != "postgresql":
            return super().authenticate_credentials(key)
        try:
            token = statements.token_owner(key)
        except LookupError:
            return super().authenticate_credentials(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
