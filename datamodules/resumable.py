"""Training loaders that a run resumed from a mid-epoch checkpoint continues at the right batch.

Lightning restores a training loader's position only when the loader is stateful (has ``state_dict``
and ``load_state_dict``); a plain DataLoader restarts its epoch from the first batch, so a run resumed
mid-epoch would train on the epoch's first batches again and never see its last ones.
``ResumableDataLoader`` is a DataLoader over a batch sampler that counts the batches it has handed out
in the current epoch (Lightning saves the count in every checkpoint) and, after ``load_state_dict``,
starts its next pass at that batch. The batches before it are skipped in the batch sampler, as lists of
indices, so their data is never loaded. (Lightning does not prefetch from a loader whose length is
known, so the batches handed out are exactly the batches trained on.)

Random numbers: a DataLoader draws one number from the global torch generator each time an epoch's
iteration starts (the seed of its workers). The uninterrupted run drew it at the epoch's start, before
the checkpoint's generator state was saved (``repro.training.trainer.RandomStateInCheckpoint``); the
resumed pass puts the generator back after its draw, so dropout goes on with the same numbers. (Its
workers, if any, get another seed; none of these datasets draws random numbers when loading.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class SkippableBatches(Sampler[list[int]]):
    """A batch sampler whose next pass can start at a given batch (``skip``, used once)."""

    def __init__(self, batches: Iterable[list[int]]):
        self.batches = batches
        self.skip = 0

    @property
    def sampler(self):
        """The wrapped batch sampler's sampler (None if it has none): Lightning reaches a sampler's
        ``set_epoch`` through ``dataloader.batch_sampler.sampler``, as it did before the wrapping."""
        return getattr(self.batches, "sampler", None)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.batches, "set_epoch", None)):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        for index, batch in enumerate(self.batches):
            if index >= skip:
                yield batch

    def __len__(self) -> int:
        return len(self.batches)


class ResumableDataLoader(DataLoader):
    """A DataLoader over ``batch_sampler`` that resumes mid-epoch (see the module docstring)."""

    def __init__(self, dataset, batch_sampler, **kwargs):
        if not isinstance(batch_sampler, SkippableBatches):
            batch_sampler = SkippableBatches(batch_sampler)
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self.position = 0  # batches handed out in the current epoch
        self._start = 0

    def __iter__(self):
        start = self._start  # kept until a batch is taken: Lightning may start an iteration twice on resuming
        self.batch_sampler.skip = start
        if start:
            generator = torch.get_rng_state()
            batches = super().__iter__()
            torch.set_rng_state(generator)  # drawn already at the epoch's start (module docstring)
        else:
            batches = super().__iter__()
        return self._counted(batches, start)

    def _counted(self, batches, start: int):
        self.position, self._start = start, 0
        for batch in batches:
            self.position += 1
            yield batch

    def state_dict(self) -> dict:
        return {"position": self.position, "length": len(self)}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint from the end of an epoch starts the next epoch from its first batch
        position = int(state.get("position", 0))
        self._start = position if 0 < position < len(self) else 0
        self.position = self._start
