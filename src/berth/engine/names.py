"""Container names as docker makes them: adjective_surname, unique among containers."""

from __future__ import annotations

import os

ADJECTIVES = ("admiring", "brave", "clever", "dazzling", "eager", "festive", "gifted",
              "happy", "jolly", "keen", "lucid", "modest", "nifty", "optimistic", "peaceful",
              "quirky", "relaxed", "serene", "tender", "upbeat", "vibrant", "wizardly",
              "youthful", "zealous")
SURNAMES = ("archimedes", "bohr", "curie", "darwin", "euler", "faraday", "gauss", "hopper",
            "johnson", "kepler", "lovelace", "meitner", "noether", "pascal", "ritchie",
            "shannon", "thompson", "turing", "volta", "wozniak", "yalow", "zuse")


def _pick(words: tuple[str, ...]) -> str:
    # os.urandom, not random: `import random` costs `berth run` ~2.5 ms
    return words[int.from_bytes(os.urandom(4), "little") % len(words)]


def generate(taken: set[str]) -> str:
    for _ in range(1000):
        name = f"{_pick(ADJECTIVES)}_{_pick(SURNAMES)}"
        if name not in taken:
            return name
    n = 1
    while f"{name}{n}" in taken:
        n += 1
    return f"{name}{n}"
