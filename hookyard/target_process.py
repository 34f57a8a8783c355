"""`python -m hookyard.target_process TARGET FD`: one target served by functions-framework's
own gunicorn application, with its settings, on a socket the supervisor already bound.

The same server a deployment runs (`functions-framework --target TARGET`), except for the
listening socket: inheriting one bound by the supervisor means no port is chosen, released
and raced for, and a restarted target comes back on the address the front door knows.
"""

from __future__ import annotations

import sys

from hookyard.supervisor import MAIN_PY


def main(argv: list[str]) -> None:
    target, fd = argv
    from functions_framework import create_app
    from functions_framework._http import create_server

    app = create_app(target, str(MAIN_PY))  # type: ignore[no-untyped-call]
    # functions-framework's options reach gunicorn unchanged: `bind` replaces host:port.
    create_server(app, False, bind=f"fd://{int(fd)}").run("127.0.0.1", 0)  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main(sys.argv[1:])
