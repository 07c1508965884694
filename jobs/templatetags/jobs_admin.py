"""What admin pages use: the operator links (overview, dead letters, Flower, Grafana when it is
configured, the development mailbox in DEBUG) and the overview's filters."""

from django import template
from django.conf import settings

from jobs import formatting

register = template.Library()


@register.simple_tag
def operator_links() -> dict[str, str]:
    return {"flower": settings.FLOWER_URL, "grafana": settings.GRAFANA_URL, "mail": settings.DEBUG}


@register.filter
def seconds(value: float | None) -> str:
    return formatting.seconds(value)


@register.filter
def percent(value: float | None) -> str:
    """A fraction (0-1) as a percentage; '-' for none."""
    return "-" if value is None else f"{value * 100:.1f}%"
