"""The ``meshrl`` command (``meshrl train``, ``meshrl eval``, ``meshrl export``), installed with the
wheel: the same Rust code as the ``meshrl`` binary, no Rust toolchain needed at run time."""

from __future__ import annotations

import sys

from meshrl import _core


def main(argv: list[str] | None = None) -> int:
    """Runs the command line with ``argv`` (default: ``sys.argv``); returns the exit code."""
    args = list(sys.argv if argv is None else ["meshrl", *argv])
    args[0] = "meshrl"
    return int(_core.cli_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
