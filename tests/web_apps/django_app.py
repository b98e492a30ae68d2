"""The Django example of docs/web.md in one file: a 0.5 s limit, /report given 3 s, /short 0.3 s."""

from __future__ import annotations

import threading
import time

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path

from hardstop.wsgi import TimeLimit, time_limit

settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["127.0.0.1"], SECRET_KEY="tests only")
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 - after settings

finally_ran = 0


def spin(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def slow(request):
    global finally_ran
    try:
        threading.Event().wait(30)
    finally:
        finally_ran += 1
    return HttpResponse("finished")


@time_limit(3)
def report(request):
    spin(0.7)
    return HttpResponse("report")


@time_limit(0.3)
def short(request):
    threading.Event().wait(30)
    return HttpResponse("finished")


def stats(request):
    return JsonResponse({"finally_ran": finally_ran})


urlpatterns = [path("slow", slow), path("report", report), path("stats", stats), path("short", short)]

application = TimeLimit(get_wsgi_application(), 0.5)
