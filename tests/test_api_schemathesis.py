"""Schemathesis against the API's own OpenAPI schema, on daphne, with a market streamed into it.

Every operation gets the schema's examples, boundary values and generated input (bad input
included); every response is checked: no 5xx, status codes, content types and bodies that match
the schema, bad input rejected, valid input accepted, and authentication really enforced.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from knox.models import AuthToken

from instruments.models import BrokerAccount
from tests.daphne import running_daphne
from tests.market_data import load_demo_market, stream_simulated_market

ROOT = Path(__file__).resolve().parent.parent
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def streamed_market(transactional_db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    load_demo_market()
    stream_simulated_market(seconds=4.0)


def test_every_operation_answers_as_its_schema_says(streamed_market, subprocess_env, alice, tmp_path):
    _, token = AuthToken.objects.create(alice)
    account = BrokerAccount.objects.create(user=alice, label="Paper", kind=BrokerAccount.Kind.PAPER)
    # Ids cannot be guessed from the schema: give the detail operation Alice's own account.
    (tmp_path / "schemathesis.toml").write_text(
        f'[[operations]]\ninclude-operation-id = "accounts_retrieve"\nparameters = {{ account_id = {account.pk} }}\n'
    )
    # Throttling is tested on its own; here it would only turn generated requests into 429s.
    env = {**subprocess_env, "API_THROTTLE_USER": "1000000/min", "API_THROTTLE_ANON": "1000000/min"}
    with running_daphne(env) as base:
        run = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{base}/api/schema/?format=json",
                "--header",
                f"Authorization: Token {token}",
                "--checks",
                "all",
                # Revoking the run's own token would fail every later request: tested in test_api_auth.
                "--exclude-operation-id",
                "auth_token_revoke",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--seed",
                "20261121",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--request-timeout",
                "20",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    assert run.returncode == 0, run.stdout[-12000:] + run.stderr[-3000:]
    assert "No issues found" in run.stdout
    # Every operation but the excluded one was selected and tested.
    selected, total = map(int, re.search(r"Selected: (\d+)/(\d+)", run.stdout).groups())
    tested = int(re.search(r"Tested: (\d+)", run.stdout).group(1))
    assert selected == tested == total - 1 and total >= 2
