"""The HTTP client of remote sources against a real local server: outbound policy, retries,
backoff, Retry-After, timeouts, dropped connections, redirects and secret headers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ops_pipelines.sources import SourceNotAllowed, SourceUnavailable
from ops_pipelines.sources.http import HttpClient, HttpPolicy, check_url, host_allowed, is_loopback

LOCAL = HttpPolicy(allowed_hosts=("127.0.0.1",), backoff_initial=0.5, backoff_max=5.0, jitter=0.0, read_timeout=0.3)


class Sleeps(list):
    """Records the waits the client asks for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(policy: HttpPolicy = LOCAL, **kwargs) -> tuple[HttpClient, Sleeps]:
    sleeps = Sleeps()
    return HttpClient(policy, name="test source", sleep=sleeps, **kwargs), sleeps


def test_hosts_must_be_listed_and_https_is_required_except_on_loopback():
    nothing = HttpPolicy()
    with pytest.raises(SourceNotAllowed, match="OPS_SOURCE_ALLOWED_HOSTS lists nothing"):
        check_url("https://redmine.example.com/issues.json", nothing)
    with pytest.raises(SourceNotAllowed, match="'127.0.0.1' is not allowed"):
        check_url("http://127.0.0.1:8080/", nothing)  # loopback too must be listed
    listed = HttpPolicy(allowed_hosts=("redmine.example.com", "*.docs.example.com", "127.0.0.1", "::1"))
    check_url("https://redmine.example.com/issues.json", listed)
    check_url("https://a.docs.example.com/x", listed)
    check_url("http://127.0.0.1:3000/x", listed)
    check_url("http://[::1]:3000/x", listed)
    with pytest.raises(SourceNotAllowed, match="plain HTTP is refused for redmine.example.com"):
        check_url("http://redmine.example.com/issues.json", listed)
    with pytest.raises(SourceNotAllowed, match="'docs.example.com' is not allowed"):
        check_url("https://docs.example.com/x", listed)  # *.x matches subdomains, not x itself
    with pytest.raises(SourceNotAllowed, match="'evil.example.org' is not allowed"):
        check_url("https://evil.example.org/redmine.example.com", listed)
    with pytest.raises(SourceNotAllowed, match="credentials in a URL are refused") as refused:
        check_url("https://bot:hunter2@redmine.example.com/", listed)
    assert "hunter2" not in str(refused.value)
    with pytest.raises(SourceNotAllowed, match="not an http"):
        check_url("ftp://redmine.example.com/", listed)
    assert is_loopback("localhost") and is_loopback("127.0.0.5") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("example.com")
    assert host_allowed("a.b.example.com", ["*.example.com"]) and not host_allowed("example.com", ["*.example.com"])


def test_a_refused_url_is_never_requested(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    http, _ = client(HttpPolicy(allowed_hosts=("docs.example.com",)))
    with pytest.raises(SourceNotAllowed):
        http.get(f"{fake_site.url}/a")
    assert fake_site.requests == [] and http.requests == 0


def test_5xx_is_retried_with_exponential_backoff(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    fake_site.fail("status", times=2, status=503)
    http, sleeps = client()
    result = http.get(f"{fake_site.url}/a")
    assert result.status == 200 and b"alpha" in result.content
    assert [r.status for r in fake_site.requests] == [503, 503, 200]
    assert sleeps == [0.5, 1.0]  # initial, doubled (jitter 0 here)


def test_backoff_has_jitter_and_a_cap(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    fake_site.fail("status", times=4, status=500)
    policy = HttpPolicy(allowed_hosts=("127.0.0.1",), attempts=5, backoff_initial=1.0, backoff_max=3.0, jitter=0.5)
    http, sleeps = client(policy)
    assert http.get(f"{fake_site.url}/a").status == 200
    assert len(sleeps) == 4
    assert 1.0 <= sleeps[0] <= 1.5 and 2.0 <= sleeps[1] <= 2.5
    assert sleeps[2] == sleeps[3] == 3.0  # 4 s and 8 s capped


def test_429_honours_retry_after_up_to_the_cap(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    fake_site.fail("status", status=429, retry_after="1")
    fake_site.fail("status", status=429, retry_after="120")
    in_an_hour = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    fake_site.fail("status", status=503, retry_after=in_an_hour)
    http, sleeps = client()
    assert http.get(f"{fake_site.url}/a").status == 200
    assert sleeps == [1.0, 5.0, 5.0]  # Retry-After: 1 honoured; 120 s and an HTTP date capped at backoff_max


def test_retries_run_out_into_source_unavailable(fake_site, caplog):
    fake_site.fail("status", times=10, status=502)
    http, sleeps = client(log=logging.getLogger("test.http"))
    with caplog.at_level(logging.WARNING, logger="test.http"), pytest.raises(SourceUnavailable) as failed:
        http.get(f"{fake_site.url}/a")
    assert "failed after 4 attempt(s): HTTP 502" in str(failed.value)
    assert len(fake_site.requests) == 4 and len(sleeps) == 3
    assert "attempt 2/4" in caplog.text and "attempt 4/4" in caplog.text


def test_a_slow_response_times_out_and_is_retried(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    fake_site.fail("slow", seconds=3)
    http, sleeps = client()
    assert http.get(f"{fake_site.url}/a").status == 200
    assert len(fake_site.requests) == 2 and len(sleeps) == 1

    fake_site.fail("slow", times=4, seconds=3)
    with pytest.raises(SourceUnavailable, match="timed out"):
        http.get(f"{fake_site.url}/a")


def test_a_dropped_connection_is_retried(fake_site):
    fake_site.put_page("/a", "A", "alpha")
    fake_site.fail("drop", times=2)
    http, _ = client()
    assert http.get(f"{fake_site.url}/a").status == 200
    assert [r.status for r in fake_site.requests] == [None, None, 200]


def test_client_errors_are_answers_not_retries(fake_site):
    http, sleeps = client()
    assert http.get(f"{fake_site.url}/missing").status == 404
    assert len(fake_site.requests) == 1 and sleeps == []


def test_a_connection_refused_is_unavailable_after_retries():
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http, sleeps = client()
    with pytest.raises(SourceUnavailable, match="connection failed"):
        http.get(f"http://127.0.0.1:{port}/x")
    assert len(sleeps) == 3


def test_redirects_are_checked_and_secrets_stay_with_their_origin(fake_site, tmp_path):
    from ops_pipelines_tests.fake_servers import FakeSite

    other = FakeSite()
    try:
        other.put_page("/landing", "Landing", "moved here")
        fake_site.redirect("/old", f"{other.url}/landing")
        fake_site.put_page("/here", "Here", "same origin")
        fake_site.redirect("/same", "/here")
        http, _ = client(origin=fake_site.url, secret_headers={"X-Redmine-API-Key": "s3cret"})
        assert http.get(f"{fake_site.url}/same").status == 200
        assert [r.headers.get("x-redmine-api-key") for r in fake_site.requests] == ["s3cret", "s3cret"]
        result = http.get(f"{fake_site.url}/old")
        assert result.status == 200 and b"moved here" in result.content
        (landing,) = other.requests
        assert "x-redmine-api-key" not in landing.headers  # another port is another origin

        fake_site.redirect("/away", "https://elsewhere.example.org/x")
        with pytest.raises(SourceNotAllowed, match="elsewhere.example.org"):
            http.get(f"{fake_site.url}/away")
    finally:
        other.close()


def test_an_oversized_body_is_refused(fake_site):
    fake_site.put_page("/big", "Big", "x" * 5000)
    http, _ = client(HttpPolicy(allowed_hosts=("127.0.0.1",), max_bytes=1000))
    with pytest.raises(SourceUnavailable, match="larger than 1000 bytes") as refused:
        http.get(f"{fake_site.url}/big")
    assert refused.value.size > 5000  # the declared Content-Length: nothing was downloaded
    assert http.get(f"{fake_site.url}/big", max_bytes=100_000).status == 200
    with pytest.raises(SourceUnavailable, match="larger than 100 bytes"):
        http.get(f"{fake_site.url}/big", max_bytes=100)
