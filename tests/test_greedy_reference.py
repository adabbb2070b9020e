"""Greedy decoding emits exactly the token ids recorded before the one-loop restructuring."""

from __future__ import annotations

import json

import pytest

from greedy_reference import REFERENCE, decode_all

pytestmark = pytest.mark.model


def test_greedy_configurations_match_the_reference(lm, rm):
    expected = json.loads(REFERENCE.read_text())
    got = decode_all(lm, rm)
    assert sorted(got) == sorted(expected)
    for name, ids in expected.items():
        assert got[name] == ids, name
