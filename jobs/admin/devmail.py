"""The development mailbox: what the development stack's SMTP sink accepted (DEBUG only), for
staff who may view jobs (the mail carries the jobs' payloads)."""

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from jobs.devstack import mail_sink as devmail
from jobs.rules.permissions import may_view_every_job


def mailbox(request: HttpRequest) -> HttpResponse:
    if not settings.DEBUG:
        raise Http404("the development mailbox exists only with DEBUG=1")
    if not may_view_every_job(request.user):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": "Development mailbox",
        "mails": devmail.read_mail(settings.JOB_DEV_MAILDIR),
        "maildir": settings.JOB_DEV_MAILDIR,
    }
    return render(request, "admin/jobs/dev_mailbox.html", context)
