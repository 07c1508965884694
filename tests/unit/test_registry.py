import pytest

from jobs import registry
from jobs.exceptions import DuplicateJobType, InvalidPayload, UnknownJobType
from tasks import job_type


@pytest.fixture
def throwaway():
    names: list[str] = []
    yield names
    for name in names:
        registry._registry.pop(name, None)


def test_builtin_types_are_registered():
    assert {"email", "email_welcome", "report", "noop"} <= set(registry.names())


def test_modules_from_job_handler_modules_are_loaded():
    assert "test.sleep" in registry.names()


def test_a_type_name_can_be_registered_only_once(throwaway):
    throwaway.append("unit.once")

    @job_type("unit.once")
    def first(payload, ctx):
        return None

    with pytest.raises(DuplicateJobType, match="unit.once"):

        @job_type("unit.once")
        def second(payload, ctx):
            return None


def test_unknown_type_lists_the_known_ones():
    with pytest.raises(UnknownJobType) as error:
        registry.get("no-such-type")
    assert "no-such-type" in str(error.value)
    assert "email_welcome" in str(error.value)


def test_decorator_options_and_defaults(throwaway):
    throwaway.append("unit.options")

    @job_type("unit.options", max_retries=7, timeout=12)
    def handler(payload, ctx):
        return payload

    registered = registry.get("unit.options")
    assert (registered.max_retries, registered.timeout, registered.handler) == (7, 12, handler)


def test_serializer_validator_names_the_bad_field():
    with pytest.raises(InvalidPayload) as error:
        registry.get("email").validate({"to": "not-an-address", "subject": "s", "body": "b"})
    assert "to" in error.value.details


def test_serializer_validator_accepts_a_list_of_recipients():
    payload = {"to": ["a@example.com", "b@example.com"], "subject": "s", "body": "b"}
    assert registry.get("email").validate(payload) == payload


def test_callable_validator_errors_become_invalid_payload(throwaway):
    throwaway.append("unit.callable")

    def needs_n(payload):
        if not isinstance(payload.get("n"), int):
            raise ValueError("n must be an integer")

    @job_type("unit.callable", validator=needs_n)
    def handler(payload, ctx):
        return None

    with pytest.raises(InvalidPayload, match="n must be an integer"):
        registry.get("unit.callable").validate({"n": "x"})
    assert registry.get("unit.callable").validate({"n": 1}) == {"n": 1}
