from rest_framework import parsers
from rest_framework.exceptions import ParseError

from jobs.rules.input_limits import too_deep


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering a body nested deeper than JOB_MAX_JSON_DEPTH with a 400."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply") from None
        problem = too_deep(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}")
        return data
