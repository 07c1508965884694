"""A team's job types: monthly invoices charged through a payment gateway.

The example of docs/howto/testing-job-types.md; its tests are test_billing_jobs.py.
"""

from rest_framework import serializers

from tasks import PermanentError, job_type, schedule


class GatewayDown(Exception):
    """The payment gateway did not answer: worth another try."""


class Gateway:
    """The payment gateway's client; the tests put a fake in its place."""

    def charge(self, customer: str, cents: int) -> str:
        raise GatewayDown("no gateway configured")


gateway = Gateway()


class InvoicePayload(serializers.Serializer):
    customer = serializers.CharField(max_length=50)
    cents = serializers.IntegerField(min_value=1)


@job_type("billing.invoice", max_retries=3, timeout=30, validator=InvoicePayload)
def invoice(payload, ctx):
    if payload["customer"].startswith("closed-"):
        raise PermanentError(f"account {payload['customer']} is closed")  # dead now, no retries
    charge_id = gateway.charge(payload["customer"], payload["cents"])  # GatewayDown: retried later
    return {"charge": charge_id, "attempt": ctx.attempt}


@job_type("billing.close_month", max_retries=0, timeout=60)
def close_month(payload, ctx):
    return {"closed": payload["month"]}


schedule("billing-close-month", job_type="billing.close_month", cron="0 6 1 * *", payload={"month": "current"})
