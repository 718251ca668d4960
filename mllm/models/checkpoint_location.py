"""Where a checkpoint named in `model_args` lives: a local directory or a reachable hub id.

`locate_checkpoint(value, key)` checks the location before anything is built and returns the local
path of one probe file (`config.json`), so a typo'd path or an unreachable hub id is an error naming
the key, not a traceback from deep inside transformers. Shared by every model family.
"""
from __future__ import annotations

import difflib
import os

from huggingface_hub import hf_hub_download, is_offline_mode
from huggingface_hub.errors import (
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import validate_repo_id

from ..config import ConfigError


def _looks_like_path(value: str) -> bool:
    # A hub id is 'name' or 'org/name': anything absolute, marked relative or deeper is meant as a directory.
    return (os.path.isabs(value) or value.startswith(('./', '../', '~')) or value in ('.', '..')
            or value.strip('/').count('/') > 1)


def _no_such_directory(where: str, value: str) -> ConfigError:
    message = f"{where}: no such directory: {value}"
    path = os.path.abspath(os.path.expanduser(value.rstrip('/') or '/'))
    parent = os.path.dirname(path)
    if os.path.isdir(parent):
        try:
            siblings = [e for e in os.listdir(parent) if os.path.isdir(os.path.join(parent, e))]
        except OSError:
            siblings = []
        close = difflib.get_close_matches(os.path.basename(path), siblings, n=1)
        if close:
            message += f". Did you mean '{os.path.join(os.path.dirname(value.rstrip('/')), close[0])}'?"
    else:
        missing = parent
        while not os.path.isdir(os.path.dirname(missing)):
            missing = os.path.dirname(missing)
        message += f" ({missing} does not exist either)"
    return ConfigError(message)


def _hub_file(repo_id: str, filename: str, where: str) -> str:
    """The local path of `filename` of a hub model (downloaded or cached); errors name the key."""
    try:
        return hf_hub_download(repo_id, filename)
    except GatedRepoError as e:
        raise ConfigError(f"{where}: the hub repository '{repo_id}' is gated: request access on its page and "
                          f"log in (`hf auth login`)") from e
    except RepositoryNotFoundError as e:
        raise ConfigError(f"{where}: '{repo_id}' is neither a local directory nor a model on the Hugging Face hub "
                          f"(a private one needs `hf auth login`)") from e
    except RemoteEntryNotFoundError as e:
        raise ConfigError(f"{where}: the hub repository '{repo_id}' has no {filename}: not a transformers "
                          f"checkpoint") from e
    except LocalEntryNotFoundError as e:
        if is_offline_mode():
            raise ConfigError(
                f"{where}: '{repo_id}' is not a local directory (relative to {os.getcwd()}), and the Hugging Face "
                f"hub is offline (HF_HUB_OFFLINE=1) with no cached copy of it. Give a checkpoint directory, "
                f"download it first (`hf download {repo_id}`) or unset HF_HUB_OFFLINE") from e
        raise ConfigError(f"{where}: could not reach the Hugging Face hub to fetch '{repo_id}' and there is no "
                          f"cached copy ({e})") from e
    except Exception as e:  # proxy, SSL, HTTP 401/5xx: the hub did not answer usefully
        raise ConfigError(f"{where}: could not fetch '{repo_id}' from the Hugging Face hub: "
                          f"{type(e).__name__}: {e}") from e


def locate_checkpoint(value, key: str, probe: str | None = 'config.json') -> str | None:
    """Check that `model_args.<key>` names a local directory or a reachable hub id.

    Returns the local path of its `probe` file (a hub file is downloaded into, or read from, the
    cache); with probe=None only the location is checked and None is returned. Hub ids are not
    probed then: which files a repository must hold is left to transformers.
    """
    where = f'model_args.{key}'
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a checkpoint directory or a hub id, got {value!r}")
    local = os.path.expanduser(value)
    if os.path.isdir(local):
        if probe is None:
            return None
        found = os.path.join(local, probe)
        if not os.path.isfile(found):
            raise ConfigError(f"{where}: {value} has no {probe}: not a transformers checkpoint directory")
        return found
    if os.path.exists(local):
        raise ConfigError(f"{where}: {value} is a file; expected a checkpoint directory")
    if _looks_like_path(value):
        raise _no_such_directory(where, value)
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise ConfigError(f"{where}: {value!r} is neither a local directory nor a hub id ('name' or "
                          f"'org/name')") from None
    return None if probe is None else _hub_file(value, probe, where)
