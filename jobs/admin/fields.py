"""Form fields of the admin that read JSON an operator typed, as the services will store it."""

from typing import Any

from django import forms
from django.forms.fields import InvalidJSONInput

from jobs.rules.input_limits import NotJSON, parse_json


def json_text(text: str) -> Any:
    """`text` parsed as JSON a job can keep, or a form error saying why not."""
    try:
        return parse_json(text)
    except NotJSON as exc:
        raise forms.ValidationError(f"Not valid JSON: {exc}") from None


class PayloadField(forms.JSONField):
    """Django's JSONField reading through `parse_json`: deep nesting, NaN, 1e999, NUL and lone
    surrogates are a form error, and the text comes back as typed, never re-encoded."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        return json_text(value)

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return parse_json(data)
        except NotJSON:
            return InvalidJSONInput(data)
