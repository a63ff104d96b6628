"""Passwords: from the file a setting names, else from the systemd credential of the same purpose
(``LoadCredential=`` puts it in ``$CREDENTIALS_DIRECTORY``, readable by the service alone); never from argv
or the config file itself. An empty file means no password (the installer creates them empty)."""
from __future__ import annotations

import os
from pathlib import Path


class SecretError(ValueError):
    pass


def read_secret(path: str, where: str, credential: str) -> str | None:
    """The secret in ``path`` (the setting ``where``), else in credential ``credential``; None when neither
    has one. Only the line end is stripped: spaces may be part of a password."""
    if path:
        p = Path(path)
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        p = Path(os.environ["CREDENTIALS_DIRECTORY"]) / credential
        if not p.is_file():
            return None
    else:
        return None
    from .files import SECRET_MAX_BYTES, FileRefused, read_bounded

    try:
        return read_bounded(p, SECRET_MAX_BYTES).decode("utf-8").rstrip("\r\n") or None
    except FileRefused as e:
        raise SecretError(f"{where}: {e}") from None
    except OSError as e:
        raise SecretError(f"{where}: cannot read {p}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{where}: {p} is not UTF-8 text") from None
