"""Token estimates equal Python tiktoken's on a varied corpus.

The corpus and Python tiktoken's counts live in
`filters/core/src/accounting/testdata/tiktoken_counts.json`. This test regenerates both with
Python tiktoken and requires the file to match; `cargo test -p aimesh-core` requires the Rust
tokenizer to give the same counts for the same file. Together: Rust == Python, on every run of
`make test`. Regenerate after changing the corpus:

    cd tests && ../.venv/bin/python e2e/test_token_accounting_tiktoken.py --write
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import paths, tokens  # noqa: E402

FIXTURE = paths.REPO / "filters" / "core" / "src" / "accounting" / "testdata" / "tiktoken_counts.json"

HANDPICKED = [
    "hello world", "Hello, World!", " leading space", "trailing space ", "\n", "\n\n\n", "\t \t x",
    "I'm sure they'll say DON'T", "1234567890", "3.14159 2.71828 -0.5e-10", "1,000,000.00 USD",
    "こんにちは世界", "你好，世界！", "مرحبا بالعالم", "नमस्ते दुनिया", "Привет, мир", "Γειά σου Κόσμε",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈 flag", "e\u0301 combining", "Ｆｕｌｌｗｉｄｔｈ", "ß ẞ ﬁ ligature",
    "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>", "<|endofprompt|>",
    "https://example.com/path?q=1&r=two#frag", "user@example.org",
    "def f(x):\n    return x ** 2  # square\n",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}',
    "<div class=\"a\">&amp;&lt;</div>", "SELECT * FROM t WHERE id = 42;",
    "    indented\n\tand tabbed\r\nwindows line", "a\u00a0b\u2003c\u200bd",
    "camelCaseIdentifier snake_case_identifier SCREAMING_CASE",
    "!!!???...,,,;;;:::", "'''\"\"\"```", "A" * 50, "\u0000\u0001\u001f control",
    "a" * 5000, "ab" * 3000, " " * 3000, "\n" * 1000, "é" * 2000, "😀" * 500, "1" * 4000,
    "-" * 4000, "的" * 3000, "a " * 2000, ".\n" * 1500,
]

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz ",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"()-\n\t",
    "äöüßéèêàçñøåæœ ÄÖÜÉ",
    "αβγδεζηθικλμνξοπρστυφχψω АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ ",
    "日本語の文章とカタカナ漢字中文字符한국어 ",
    "😀😃😄😁🚀🌍🔥✨👍🏽🇫🇷 ",
    "{}[]()<>=+-*/%&|^~;:,.\"' \n\t0123456789_abcdefxyz",
]


def corpus() -> list[str]:
    rng = random.Random(20261122)
    out = list(HANDPICKED)
    for i in range(170):
        alphabet = "".join(rng.sample(ALPHABETS, k=rng.randint(1, 3)))
        n = rng.choice([1, 2, 5, 10, 30, 80, 200, 400])
        out.append("".join(rng.choice(alphabet) for _ in range(n)))
    return out


def reference() -> list[dict]:
    return [{"text": t, **{e: tokens.count(e, t) for e in tokens.ENCODINGS}} for t in corpus()]


def test_fixture_is_python_tiktoken_on_the_corpus():
    rows = json.loads(FIXTURE.read_text())
    want = reference()
    assert len(want) >= 200
    assert [r["text"] for r in rows] == [r["text"] for r in want], "corpus changed: regenerate"
    for got, exp in zip(rows, want):
        assert got == exp, exp["text"][:60]
    # Sanity: the corpus exercises both encodings differently.
    assert any(r["cl100k_base"] != r["o200k_base"] for r in want)


if __name__ == "__main__" and "--write" in sys.argv:
    FIXTURE.write_text(json.dumps(reference(), ensure_ascii=False, indent=0) + "\n")
    print(f"wrote {FIXTURE}")
