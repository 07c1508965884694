from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON renderer; text that UTF-8 cannot carry (a lone surrogate, in a job stored before
    submissions refused it) is written as JSON escapes instead of failing the answer with a 500."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            escaping = renderers.JSONRenderer()
            escaping.ensure_ascii = True
            return escaping.render(data, accepted_media_type, renderer_context)
