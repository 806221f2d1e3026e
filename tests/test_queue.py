"""The broker's address: never printed with its password."""

from __future__ import annotations

import pytest

from tests.conftest import cli

pytestmark = pytest.mark.e2e  # starts Redis, the S3 server, workers or the CLI


@pytest.mark.parametrize("password", ["Kx/Zq9", "Kx#Zq9", "Kx?Zq9"])
@pytest.mark.parametrize("command", [("resume", "b1"), ("worker",)])
def test_a_broker_password_is_never_printed(password, command, tmp_path) -> None:
    """A password with an unescaped / # or ? breaks the URL: one line that shows none of it."""
    env = {
        "SCANDIGITS_BROKER_URL": f"redis://:{password}@127.0.0.1:6390/0",
        "SCANDIGITS_STORE": f"file://{tmp_path}",
    }
    result = cli(*command, env=env)
    shown = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in shown
    assert "Kx" not in shown and "Zq9" not in shown
    assert "bad broker URL" in result.stderr.strip().splitlines()[-1]
