"""What admin pages use: the operator links (overview, dead letters, Flower, Grafana when it is
configured, the development mailbox in DEBUG) and the overview's filters."""

import django
from django import template
from django.conf import settings

from jobs import formatting
from jobs.rules.permissions import may_view_every_job

register = template.Library()


@register.simple_tag(takes_context=True)
def operator_links(context: template.Context) -> dict[str, str]:
    """The mailbox only for those who may open it (jobs.admin.devmail)."""
    mail = settings.DEBUG and may_view_every_job(context.get("user"))
    return {"flower": settings.FLOWER_URL, "grafana": settings.GRAFANA_URL, "mail": mail}


@register.filter
def seconds(value: float | None) -> str:
    return formatting.seconds(value)


@register.filter
def percent(value: float | None) -> str:
    """A fraction (0-1) as a percentage; '-' for none."""
    return "-" if value is None else f"{value * 100:.1f}%"


@register.inclusion_tag("admin/jobs/breadcrumbs.html")
def breadcrumbs(*parts: str) -> dict:
    """Home, (label, url) pairs, the page: as the admin draws them (a list from Django 6.1 on)."""
    *pairs, current = parts
    links = zip(pairs[::2], pairs[1::2], strict=True)
    return {"links": links, "current": current, "as_list": django.VERSION >= (6, 1)}
