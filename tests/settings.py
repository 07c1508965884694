"""The project's settings for its tests: the same, with a fast password hasher.

PBKDF2 costs tens of milliseconds per password on purpose; the tests make about 130 users.
The processes the tests start (web, workers, run_dev) inherit DJANGO_SETTINGS_MODULE, so a
password hashed in the test process is checked with the same hasher in theirs.
"""

from jobqueue_site.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
