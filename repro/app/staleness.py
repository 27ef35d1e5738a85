"""Does a record's row still hold at HEAD? Two checks that need no training:

- its code: the fingerprints of the files its run went through (``repro.app.fingerprints``) against the
  same files now;
- its command: the command its row prints (``repro.app.tables.shown_command``), parsed as the command
  line parses it and resolved against the presets now, must give the record's resolved config. This
  finds a preset edited after the run, and a printed command that lost an override.

A record made before records named their code (schema 1) cannot be checked for the first; it is
marked "not fingerprinted", never shown as current. ``python -m repro verify`` is the third check,
which trains: it replays the record's first steps at HEAD.
"""

from __future__ import annotations

import json
import re

from repro.app.arguments import request_of_command
from repro.app.fingerprints import code_changes
from repro.app.rows import portable
from repro.config import config_to_dict, resolve_config
from repro.errors import UserError
from repro.registry import get_paper


def printed_command_config(command: str, record: dict) -> dict:
    """The resolved config (as JSON gives it back) that a printed command asks for at HEAD; ``SEED``
    stands for the record's seed, as in a row of several seeds."""
    command = re.sub(r"--seed SEED\b", f"--seed {record['config'].get('seed')}", command)
    request = request_of_command(command)
    entry = get_paper(request.paper)
    if request.paper != record["paper"]:
        raise UserError(f"the command runs {request.paper}, the record is {record['paper']}'s")
    preset = request.preset or record["preset"]
    if preset != record["preset"]:
        raise UserError(f"the command runs preset {preset!r}, the record is of {record['preset']!r}")
    config = resolve_config(entry.config_class, entry.presets, preset, request.overrides, seed=request.seed,
                            max_epochs=request.max_epochs, accumulate_grad_batches=request.accumulate_grad_batches)
    return json.loads(json.dumps(config_to_dict(config)))


def config_changes(record: dict, command: str) -> list[str]:
    """How the config of ``command`` at HEAD differs from the record's (key: recorded -> now)."""
    try:
        now = printed_command_config(command, record)
    except UserError as error:
        return [str(error)]
    # the record's machine paths (a checkpoint under its --out) as the printed command writes them
    then = json.loads(portable(json.dumps(record.get("config") or {}), record.get("command", "")))
    return [f"{key}: {then.get(key, 'absent')!r} -> {now.get(key, 'absent')!r}"
            for key in sorted(set(then) | set(now)) if then.get(key) != now.get(key)]


def stale_reason(record: dict, command: str | None) -> str | None:
    """Why a record's row no longer holds at HEAD, in a few words; None when its code and config still do.
    ``command``: what its row prints (None for records that no ``repro run`` made)."""
    reasons = []
    if record.get("code"):
        changed = code_changes(record["code"])
        if changed:
            reasons.append("code moved since: " + ", ".join(changed[:3]) + (f" (+{len(changed) - 3} more)"
                                                                             if len(changed) > 3 else ""))
    if command is not None:
        differences = config_changes(record, command)
        if differences:
            reasons.append("its command now gives another config: " + "; ".join(differences[:3])
                           + (f" (+{len(differences) - 3} more)" if len(differences) > 3 else ""))
    return "; ".join(reasons) or None
