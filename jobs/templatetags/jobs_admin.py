"""Links every admin page shows: the overview, the dead-letter queue, Flower, Grafana when it is
configured, and the development mailbox in DEBUG."""

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def operator_links() -> dict[str, str]:
    return {"flower": settings.FLOWER_URL, "grafana": settings.GRAFANA_URL, "mail": settings.DEBUG}
