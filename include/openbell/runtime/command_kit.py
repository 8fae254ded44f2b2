"""What ``openbell backtest`` and ``openbell report`` share as commands: bad input refused with one line on
stderr and exit code 2, and an output file (``--html``) written only into an existing directory, over an
existing file only with ``--force``, whole or not at all."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

Refuse = Callable[[str], Exception]  # the command's own error, from its one-line message


class Parser(argparse.ArgumentParser):
    """An argument parser that refuses bad arguments with one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message}; see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(2)


def refused(prog: str, exc: BaseException) -> int:
    """Say why ``prog`` cannot go on, on one line of stderr (the message's white space folded); exit code 2."""
    print(f"{prog}: {' '.join(str(exc).split())}", file=sys.stderr)
    return 2


def output_path(path: Path | None, force: bool, refuse: Refuse) -> Path | None:
    """The ``--html`` file ``path`` (None stays None) checked before any work: its directory must exist, and it
    may exist only as a file and with ``force``."""
    if path is None:
        return None
    if not path.parent.is_dir():
        raise refuse(f"--html {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise refuse(f"--html {path} is a directory")
    if path.exists() and not force:
        raise refuse(f"--html {path} exists: pass --force to overwrite it")
    return path


def write_whole(path: Path, data: bytes, force: bool, refuse: Refuse) -> int:
    """Write ``data`` to ``path``, whole or not at all (refused if ``path`` appeared since it was checked and
    ``force`` is not given); its size in bytes."""
    if path.exists() and not force:
        raise refuse(f"--html {path} appeared meanwhile: pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as f:  # the umask's mode, as any file the user writes
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(data)
