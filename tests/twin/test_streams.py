"""Named random streams: reproducible, independent, no magic offsets."""

from __future__ import annotations

import numpy as np
import pytest

from twin.streams import seed_sequence, stream, stream_key


def test_same_seed_and_name_same_numbers() -> None:
    assert np.array_equal(stream(7, "a").random(5), stream(7, "a").random(5))


def test_streams_differ_by_name_and_by_seed() -> None:
    a, b, c = stream(7, "a").random(5), stream(7, "b").random(5), stream(8, "a").random(5)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)
    # no stream equals the plain default_rng(seed) stream
    assert not np.array_equal(a, np.random.default_rng(7).random(5))


def test_offsets_no_longer_collide() -> None:
    """The old scheme gave part A at seed s the same numbers as part B at seed s + k."""
    old_a, old_b = np.random.default_rng(1 + 7717), np.random.default_rng(3477 + 4241)
    assert np.array_equal(old_a.random(3), old_b.random(3))
    new_a, new_b = stream(1, "ev_priority/field"), stream(3477, "evacuation/plan")
    assert not np.array_equal(new_a.random(3), new_b.random(3))


def test_streams_are_uncorrelated() -> None:
    a, b = stream(1, "x").random(20_000), stream(1, "y").random(20_000)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.03


def test_bad_seed_or_name() -> None:
    with pytest.raises(ValueError, match="seed"):
        seed_sequence(-1, "a")
    with pytest.raises(ValueError, match="seed"):
        seed_sequence(True, "a")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name"):
        stream_key("")
