#!/usr/bin/env python3
"""Detection engine benchmark on a synthetic 20,000-rule library (not a test: it prints figures).

Measures, in one process: library build (compile) time, engine RSS, per-keystroke cost p50/p99 through the
KeystrokeBuffer (typing with word ends, typos fixed by Backspace, Enter), a full-buffer pass, and the same keystroke
workload on a bare pyahocorasick automaton scanning the same tail, so the engine's overhead ratio is visible.
The last line is one JSON object.

usage: .venv/bin/python bench/detect.py [--rules 20000] [--keys 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

import ahocorasick_rs
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.detect import Engine
from agent.detect.normalise import phrase_key
from bench.common import percentile
from signatures.schema import CATEGORIES, Library, Rule

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ba", "de", "fi", "gu", "ho", "ja", "ke", "ly", "mo",
             "nu", "pe", "qu", "ri", "so", "tu", "vi", "wa", "xe", "yo", "zu", "br", "st", "th", "ch"]


# What pupils mostly type: ordinary words, which rarely hit a rule.
_ORDINARY_TEXT = ("the and to of a in is it you that he was for on are with as i his they be at one have this from "
                   "or had by hot word but what some we can out other were all there when up use your how said an "
                   "each she which do their time if will way about many then them write would like so these her "
                   "long make thing see him two has look more day could go come did number sound no most people my "
                   "over know water than call first who may down side been now find homework tomorrow lol ok maths "
                   "english science teacher lesson break lunch football game phone mum dad friend school tonight "
                   "really good bad funny weekend party text message later soon sorry thanks please")
ORDINARY_WORDS = tuple(_ORDINARY_TEXT.split())


def pseudo_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(3, 5)))


def synthetic_library(count: int, rng: random.Random) -> Library:
    # A large vocabulary, as in real libraries, where most phrases share few words with other phrases.
    vocabulary = [pseudo_word(rng) for _ in range(40000)]
    rules = []
    for i in range(count):
        category = CATEGORIES[i % len(CATEGORIES)]
        phrases = tuple(" ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 3)))
                        for _ in range(rng.randint(1, 3)))
        rules.append(Rule(id=f"{category}.synthetic-{i}", category=category, phrases=phrases,
                          severity=rng.randint(1, 5), note="synthetic benchmark rule",
                          mode="substring" if i % 50 == 0 else "word",
                          allow=(rng.choice(vocabulary),) if i % 10 == 0 else ()))
    return Library(rules=tuple(rules), allow=tuple(rng.choice(vocabulary) for _ in range(200)), version="bench")


def keystroke_workload(library: Library, count: int, rng: random.Random) -> list[str]:
    """Typing: ordinary words, some library phrases, typos fixed with Backspace, Enter between messages."""
    phrases = [p for r in library.rules[:2000] for p in r.phrases]
    words = ORDINARY_WORDS
    keys: list[str] = []
    while len(keys) < count:
        text = " ".join(rng.choice(phrases) if rng.random() < 0.05 else rng.choice(words)
                        for _ in range(rng.randint(3, 25)))
        for ch in text:
            keys.append(ch)
            if rng.random() < 0.03:
                keys += ["x", "backspace"]
        keys.append("enter")
    return keys[:count]


def time_engine_keys(engine: Engine, keys: list[str]) -> list[float]:
    kb = engine.keystroke_buffer()
    clock = time.perf_counter_ns
    out = []
    for key in keys:
        t0 = clock()
        kb.feed(key)
        out.append((clock() - t0) / 1000)
    return out


def time_bare_keys(automaton: ahocorasick_rs.AhoCorasick, keys: list[str], tail: int) -> list[float]:
    """The floor: append or delete, then walk the automaton over the same tail the engine scans."""
    clock = time.perf_counter_ns
    buffer = ""
    out = []
    for key in keys:
        t0 = clock()
        if key == "backspace":
            buffer = buffer[:-1]
        elif key == "enter":
            buffer = ""
        else:
            buffer += key
            automaton.find_matches_as_indexes(buffer[-tail:], overlapping=True)
        out.append((clock() - t0) / 1000)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", type=int, default=20000)
    p.add_argument("--keys", type=int, default=20000)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    rng = random.Random(args.seed)
    process = psutil.Process()

    library = synthetic_library(args.rules, rng)
    keys = keystroke_workload(library, args.keys, rng)
    gc.collect()
    rss_before = process.memory_info().rss
    t0 = time.perf_counter()
    engine = Engine.from_library(library, profile="secondary")
    build_s = time.perf_counter() - t0
    gc.collect()
    rss_after = process.memory_info().rss
    engine_rss_mb = (rss_after - rss_before) / 2**20
    phrases = sum(len(r.phrases) for r in library.rules)
    print(f"library: {args.rules} rules, {phrases} phrases; build {build_s:.2f} s; engine RSS {engine_rss_mb:.1f} MB "
          f"(process {rss_after / 2**20:.1f} MB)")

    time_engine_keys(engine, keys[:2000])  # warm the fold cache
    engine_us = time_engine_keys(engine, keys)
    bare = ahocorasick_rs.AhoCorasick(sorted({phrase_key(phrase) for rule in library.rules for phrase in rule.phrases}),
                                      implementation=ahocorasick_rs.Implementation.ContiguousNFA)
    tail = 2 * engine.compiled.max_phrase_chars + 8
    bare_us = time_bare_keys(bare, keys, tail)
    p50, p99 = percentile(engine_us, 0.50), percentile(engine_us, 0.99)
    bare_p50, bare_p99 = percentile(bare_us, 0.50), percentile(bare_us, 0.99)
    print(f"keystrokes: {len(keys)}; engine p50 {p50:.1f} us p99 {p99:.1f} us max {max(engine_us):.0f} us; "
          f"bare automaton p50 {bare_p50:.1f} us p99 {bare_p99:.1f} us; p99 ratio {p99 / max(bare_p99, 0.01):.1f}x")

    buffer = "".join(k for k in keys[:3000] if len(k) == 1)[:1000]
    passes = []
    for _ in range(50):
        t0 = time.perf_counter_ns()
        engine.scan(buffer)
        passes.append((time.perf_counter_ns() - t0) / 1000)
    full_pass_us = statistics.median(passes)
    print(f"full pass over a {len(buffer)}-character buffer: median {full_pass_us:.0f} us")

    print(json.dumps({
        "rules": args.rules, "phrases": phrases, "keystrokes": len(keys),
        "keystroke_p50_us": round(p50, 1), "keystroke_p99_us": round(p99, 1),
        "bare_keystroke_p50_us": round(bare_p50, 1), "bare_keystroke_p99_us": round(bare_p99, 1),
        "full_pass_us": round(full_pass_us, 1), "full_pass_chars": len(buffer), "build_s": round(build_s, 3),
        "rss_mb": round(engine_rss_mb, 1), "process_rss_mb": round(rss_after / 2**20, 1),
        "budget_ok": p99 < 50 and engine_rss_mb < 40,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
