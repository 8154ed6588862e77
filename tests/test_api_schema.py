"""Schemathesis against the real app, in process: every operation, every check, a bounded number of
generated requests each (derandomized, so that a run is repeatable). Writes go to a private copy
of the seed index.

The service runs with an API key, so the checks also see that a request without it is refused.
The schema is the one docs/API.md is written from; the first test shows the app serves it.
"""

import shutil

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from qa import Engine
from qa.api import create_app
from qa.apidoc import openapi_schema

from .conftest import make_settings

KEY = "documented"  # the key qa.apidoc writes its schema for (it never appears in the schema)
AUTH = {"Authorization": f"Bearer {KEY}"}


class FixtureApp:
    """An ASGI app that hands each request to the app the `app` fixture built: the schema is loaded
    when the module is, the app (with its model and index) only when a test needs it."""

    target = None

    async def __call__(self, scope, receive, send):
        await self.target(scope, receive, send)


# Loaded from the schema itself, not from a running app: schemathesis' fixture-based loader does
# not work with this pytest, and building the schema needs no model.
schema = schemathesis.openapi.from_dict(openapi_schema())
schema.app = FixtureApp()


@pytest.fixture(scope="module")
def app(tmp_path_factory, seed_index, encoder):
    directory = tmp_path_factory.mktemp("schema") / "index"
    shutil.copytree(seed_index, directory)
    engine = Engine(make_settings(directory, api_key=KEY), encoder=encoder)
    FixtureApp.target = create_app(engine)
    yield FixtureApp.target
    FixtureApp.target = None
    engine.close()


def test_the_app_serves_the_documented_schema(app):
    with TestClient(app) as client:
        assert client.get("/openapi.json", headers=AUTH).json() == openapi_schema()


@schema.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_to_its_schema(case, app):
    case.call_and_validate(headers=AUTH)
