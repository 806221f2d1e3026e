"""The rate limit per token: its buckets on a clock of the test's, from many threads at once,
and a real service with a small limit answering 429 with Retry-After to one token alone."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, serving
from tests.conftest import cli, publish
from trainer.storage import open_store
from worker.api.errors import ApiError
from worker.api.ratelimit import RateLimit
from worker.api.tokens import Token


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _token(name: str) -> Token:
    return Token(name, name, "acme", ("read",), "2026-01-01T00:00:00+00:00")


def _refused(call, *args) -> ApiError:
    with pytest.raises(ApiError) as raised:
        call(*args)
    assert raised.value.status == 429
    return raised.value


def test_requests_a_minute_per_token() -> None:
    clock = Clock()
    limit = RateLimit(5, 0, clock)
    one, other = _token("one"), _token("other")
    for _ in range(5):
        limit.count_request(one)
    refused = _refused(limit.count_request, one)
    assert refused.headers == {"Retry-After": "12"}, "a request comes back every 60/5 s"
    assert refused.message == "rate limit: over 5 requests a minute for this token; retry in 12 s"
    limit.count_request(other)
    clock.now += 11.5
    assert _refused(limit.count_request, one).headers == {"Retry-After": "1"}
    clock.now += 0.5
    limit.count_request(one)
    clock.now += 3600
    for _ in range(5):  # a minute's worth at most, however long it waited
        limit.count_request(one)
    _refused(limit.count_request, one)
    for _ in range(10_000):
        limit.spend_bytes(one, 10**9)  # 0: no limit


def test_bytes_a_minute_per_token() -> None:
    clock = Clock()
    limit = RateLimit(0, 6000, clock)
    one = _token("one")
    limit.spend_bytes(one, 4000)
    limit.spend_bytes(one, 2000)
    refused = _refused(limit.spend_bytes, one, 1)
    assert refused.headers == {"Retry-After": "1"}
    assert "over 6,000 bytes uploaded a minute" in refused.message
    clock.now += 60
    limit.spend_bytes(one, 50_000)  # more than a minute's worth: taken from a full bucket
    assert _refused(limit.spend_bytes, one, 1).headers == {"Retry-After": "441"}
    limit.spend_bytes(_token("other"), 6000)


def test_counting_is_thread_safe() -> None:
    limit = RateLimit(1000, 0, Clock())
    token = _token("busy")

    def request(_: int) -> bool:
        try:
            limit.count_request(token)
        except ApiError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(request, range(3000))) == 1000


@pytest.fixture(scope="module")
def limited(
    redis_url: str, trained: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """The service allowing each token 5 requests and 30,000 uploaded bytes a minute."""
    folder = tmp_path_factory.mktemp("api-ratelimit")
    store = open_store(f"file://{folder / 'store'}")
    store.check()
    publish(store, trained)
    env = {
        "SCANDIGITS_BROKER_URL": redis_url,
        "SCANDIGITS_STORE": store.url,
        "SCANDIGITS_API_REQUESTS_PER_MINUTE": "5",
        "SCANDIGITS_API_BYTES_PER_MINUTE": "30000",
    }
    with serving(env, folder / "serve.log") as url:
        yield Api(url, store, env)


def test_the_sixth_request_of_a_minute_is_429(limited: Api) -> None:
    client = limited.client("read")
    statuses = [client.get("/v1/templates").status_code for _ in range(4)]
    statuses.append(client.delete("/v1/templates/claim").status_code)  # refused: counted too
    assert statuses == [200, 200, 200, 200, 403]
    reply = client.get("/v1/templates")
    assert reply.status_code == 429, reply.text
    wait = int(reply.headers["retry-after"])
    assert 1 <= wait <= 12
    assert reply.json() == {
        "error": f"rate limit: over 5 requests a minute for this token; retry in {wait} s"
    }
    assert limited.client("read").get("/v1/templates").status_code == 200, "another token"
    assert httpx.get(f"{limited.url}/livez").status_code == 200, "health needs no token"
    forged = {"Authorization": "Bearer sd_0123456789abcdef_" + "x" * 43}
    assert httpx.get(f"{limited.url}/v1/templates", headers=forged).status_code == 401


def test_an_upload_past_the_bytes_a_minute_is_429_and_nothing_stays(limited: Api) -> None:
    client = limited.client("submit")
    scan = ("files", ("a.png", b"\x89PNG" + bytes(20_000)))
    reply = client.post("/v1/batches", files=[scan, scan])
    assert reply.status_code == 429, reply.text
    assert "bytes uploaded a minute" in reply.json()["error"] and reply.headers["retry-after"]
    assert list(limited.store.list("batches/")) == [], "nothing uploaded is kept"


def test_serve_refuses_a_bad_limit_in_one_line() -> None:
    done = cli("serve", env={"SCANDIGITS_API_BYTES_PER_MINUTE": "2GiB"})
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        "error: SCANDIGITS_API_BYTES_PER_MINUTE must be a whole number of bytes a minute "
        "(0: no limit), not '2GiB'\n"
    )
