from __future__ import annotations

import pytest

from tests.support.stack import TEST_SECRETS


@pytest.fixture(autouse=True)
def _test_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_SECRETS.items():
        monkeypatch.setenv(name, value)
