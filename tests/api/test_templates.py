"""Form templates over the HTTP API: kept in the store per tenant, checked as `scandigits
template check` checks a file, each mistake one line naming its line; scopes and tenants."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import Api, error, serving
from tests.conftest import cli
from trainer.errors import UserError
from trainer.storage import open_store
from worker.forms import stored

pytestmark = pytest.mark.e2e

CLAIM = "name: expense-claim\nfields:\n  account:\n    box: [0.10, 0.30, 0.50, 0.05]\n"
CLAIM_2 = CLAIM + "  total:\n    box: [0.10, 0.40, 0.30, 0.05]\n    digits: 6\n"
SHORT_BOX = "name: x\nfields:\n  total:\n    box: [0.1, 0.2]\n"
YAML = {"Content-Type": "application/yaml"}


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The service on a file store of its own, with no model and no worker."""
    folder = tmp_path_factory.mktemp("api-templates")
    store = open_store(f"file://{folder / 'store'}")
    store.check()
    env = {"SCANDIGITS_BROKER_URL": redis_url, "SCANDIGITS_STORE": store.url}
    with serving(env, folder / "serve.log") as url:
        yield Api(url, store, env)


def test_put_get_list_and_delete(api: Api) -> None:
    client = api.client("admin", tenant="acme")
    made = client.put("/v1/templates/claim", content=CLAIM, headers=YAML)
    assert made.status_code == 201, made.text
    assert made.json() == {"name": "claim", "form": "expense-claim", "fields": ["account"]}
    assert made.headers["location"] == f"{api.url}/v1/templates/claim"
    replaced = client.put(
        "/v1/templates/claim", content=CLAIM_2, headers={"Content-Type": "text/plain"}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["fields"] == ["account", "total"]
    assert client.put("/v1/templates/a-form", content=CLAIM, headers=YAML).status_code == 201

    got = client.get("/v1/templates/claim")
    assert got.status_code == 200 and got.text == CLAIM_2, "the YAML as it was put"
    assert got.headers["content-type"] == "application/yaml"
    assert client.get("/v1/templates").json() == {"templates": ["a-form", "claim"]}
    assert api.store.get("tenants/acme/templates/claim.yaml") == CLAIM_2.encode()
    template = stored.load(api.store, "acme", "claim")
    assert template.name == "expense-claim" and template.fields[1].digits == 6

    assert client.delete("/v1/templates/claim").status_code == 204
    assert error(client.get("/v1/templates/claim"), 404) == "no such template"
    assert error(client.delete("/v1/templates/claim"), 404) == "no such template"
    assert client.get("/v1/templates").json() == {"templates": ["a-form"]}
    with pytest.raises(UserError, match="no template named 'claim'"):
        stored.load(api.store, "acme", "claim")


def test_an_invalid_template_is_refused_as_template_check_refuses_it(
    api: Api, tmp_path: Path
) -> None:
    client = api.client("admin", tenant="checks")
    file = tmp_path / "claim.yaml"
    file.write_text(SHORT_BOX)
    checked = cli("template", "check", str(file))
    assert checked.returncode == 2, checked.stderr
    said = checked.stderr.strip().removeprefix(f"error: {file}")
    message = error(client.put("/v1/templates/claim", content=SHORT_BOX, headers=YAML), 422)
    assert message == f"claim.yaml{said}" and said.startswith(" line 4: field 'total': box")

    client.put("/v1/templates/claim", content=CLAIM, headers=YAML)
    for body, line in [
        ("name: x\nname: y\nfields: {}\n", "claim.yaml line 2: 'name' appears twice"),
        (b"name: x\nfields:\n  t\xff: 1\n", "claim.yaml line 3: not UTF-8 text"),
        ("", "claim.yaml line 1: empty"),
    ]:
        reply = client.put("/v1/templates/claim", content=body, headers=YAML)
        assert error(reply, 422).startswith(line)
    assert client.get("/v1/templates/claim").text == CLAIM, "a refused template replaces none"

    big = "#" * 300_000
    assert "over 256,000 bytes" in error(
        client.put("/v1/templates/claim", content=big, headers=YAML), 413
    )
    assert "application/yaml" in error(client.put("/v1/templates/claim", json={"a": 1}), 415)
    reply = client.put("/v1/templates/no%20spaces", content=CLAIM, headers=YAML)
    assert error(reply, 400) == "invalid template name 'no spaces'"
    assert client.get("/v1/templates").json() == {"templates": ["claim"]}


def test_tenants_and_scopes(api: Api) -> None:
    owner = api.client("admin", tenant="north")
    assert owner.put("/v1/templates/claim", content=CLAIM, headers=YAML).status_code == 201

    rival = api.client("admin", tenant="south")
    assert rival.get("/v1/templates").json() == {"templates": []}
    assert error(rival.get("/v1/templates/claim"), 404) == "no such template"
    assert error(rival.delete("/v1/templates/claim"), 404) == "no such template"
    assert rival.put("/v1/templates/claim", content=CLAIM_2, headers=YAML).status_code == 201
    assert owner.get("/v1/templates/claim").text == CLAIM, "each tenant has its own"

    reader = api.client("read", tenant="north")
    assert reader.get("/v1/templates/claim").text == CLAIM
    assert reader.get("/v1/templates").json() == {"templates": ["claim"]}
    for reply in (
        reader.put("/v1/templates/claim", content=CLAIM_2, headers=YAML),
        reader.delete("/v1/templates/claim"),
    ):
        assert error(reply, 403) == "the token lacks the admin scope"
    submitter = api.client("submit", tenant="north")
    assert error(submitter.get("/v1/templates"), 403) == "the token lacks the read scope"
    assert error(httpx.get(f"{api.url}/v1/templates/claim"), 401) == "a bearer token is required"
    assert owner.get("/v1/templates/claim").text == CLAIM
