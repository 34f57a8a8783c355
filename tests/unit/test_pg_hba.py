from __future__ import annotations

from hookyard.local_postgres import SECURE_HBA, allows_trust

INITDB_TRUST = """\
# TYPE  DATABASE        USER            ADDRESS                 METHOD
# "local" is for Unix domain socket connections only
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
"""


def test_initdb_trust_rules_are_found() -> None:
    assert allows_trust(INITDB_TRUST)


def test_comments_naming_trust_are_not_rules() -> None:
    assert not allows_trust("# local all all trust\nlocal all all scram-sha-256  # not trust\n")


def test_the_rules_written_over_trust_require_a_password() -> None:
    assert not allows_trust(SECURE_HBA)
    assert "scram-sha-256" in SECURE_HBA
