"""/forget and the models: the chats' pairs holding a person's erased words leave the memory of
every kept model version, the live one's included, so that no version answers from them any more,
rolled back to or not. (The weights learned from those pairs too, until the next retrain: that one
trains without them.)"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from bot.database import Database
from core_model.checkpoint import CheckpointError, load_memory, save_memory
from storage.registry import list_versions

log = logging.getLogger(__name__)


def purge_memories(database: Database, live: Path, texts: Sequence[str]) -> int:
    """Drop the learned pairs holding any of texts from the memory of every version folder and of
    live. Returns the pairs the live memory lost."""
    with database.reads.begin() as session:
        folders = {Path(version.folder) for version in list_versions(session)}
    dropped: dict[Path, int] = {}
    for folder in folders | {live}:
        try:
            memory = load_memory(folder)
        except CheckpointError as error:  # a broken version must not stop the others' purge
            log.warning("forget: %s", error)
            continue
        if memory is None:  # no such folder any more, or a model without a memory
            continue
        kept = memory.without(texts)
        if len(kept) < len(memory):
            save_memory(folder, kept)
            dropped[folder] = len(memory) - len(kept)
    return dropped.get(live, 0)
