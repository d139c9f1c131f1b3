"""Named random streams: one independent generator per (seed, name).

A run has one seed; every part that draws random numbers asks for its own stream by
name (``stream(seed, "ev_priority/field_signals")``) instead of offsetting the seed by a
magic number (``seed + 7717``), which made streams of different seeds coincide (seed
``s + 7717`` of one part was seed ``s' + 4241`` of another). The streams are children
of :class:`numpy.random.SeedSequence`: the name becomes the child's spawn key (a hash
of the name), so streams are statistically independent of each other and of the
plain ``default_rng(seed)`` stream, and adding a stream changes no other.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stream_key(name: str) -> int:
    """The spawn key of a stream name (64 bits of its BLAKE2b hash)."""
    if not name:
        raise ValueError("a random stream needs a name")
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")


def seed_sequence(seed: int, name: str) -> np.random.SeedSequence:
    """The :class:`~numpy.random.SeedSequence` of stream ``name`` under ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"a seed is an integer >= 0 (got {seed!r})")
    return np.random.SeedSequence(int(seed), spawn_key=(stream_key(name),))


def stream(seed: int, name: str) -> np.random.Generator:
    """A generator for stream ``name`` under ``seed`` (same inputs, same numbers)."""
    return np.random.default_rng(seed_sequence(seed, name))
