"""A deterministic text sample for holding saetraj's tokenizers against tokenizers and sentencepiece.

Records are bytes; most are valid UTF-8 and many hold newlines, so the file separates records with NUL
(saetraj tokenize --null-separated). Kinds of record: prose with contractions (in odd cases too), code,
emoji (ZWJ sequences, skin tones, flags), CJK, scripts with combining marks, whitespace of every Unicode
kind and in runs, long digit runs in several scripts, special tokens inside text, and invalid UTF-8.
"""
import random

WORDS = ("the quick brown fox jumps over lazy dog attention feature sparse autoencoder layer token model "
         "residual stream Smith Mark Max gave flashlight room dark empty final correct answer left "
         "über naïve café façade coöperate Ångström résumé jalapeño").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D",
                "\u2019s", "'\u017f", "'x", "''", "'"]  # U+017F (long s) folds to s under caseless matching
PUNCT = list(".,;:!?-()[]{}\"'/\\@#$%^&*_+=<>|~`") + ["...", "--", "—", "–", "«", "»", "¿", "¡", "§"]
EMOJI = ["😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪", "🇯🇵", "❤️", "✨", "🤖", "🧑🏿‍💻", "1️⃣", "🫠", "☕", "\U0001F600\U0001F601"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "\u00a0", "\u2009", "\u3000", "\u2028", "\u0085",
          "\x0b", "\x0c", "\u200b", "\ufeff", "\u202f", "\u1680", "\u180e", " \t\n", "\n   \n", "\r\r\n"]
DIGITS = ["0123456789", "3.14159265358979", "1,000,000", "٣٤٥", "१२३", "１２３", "²³", "Ⅻ", "½", "⑦", "𝟘𝟙"]
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
            "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<|endof", "endoftext|>", "<||>", "<|"]
CODE = [
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "    if (err != nil) {\n        return err\n    }",
    "SELECT * FROM t WHERE id = 42;",
    "<div class=\"x\">&nbsp;</div>",
    "x = {'a': [1, 2, 3], \"b\": None}",
    "#include <torch/torch.h>\nint main() { return 0; }",
    "$ ls -la | grep '\\.cpp$' && echo \"done\"",
    "λx.λy.x y  ∀ε>0 ∃δ>0: |x−y|<δ ⇒ |f(x)−f(y)|<ε",
]
INVALID = [b"\xff", b"\xfe\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80",
           b"\xf5\x80\x80\x80", b"\xe0\x80\xaf"]


def _cjk(rng, n):
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0xAC00, 0xD7A3), (0x20000, 0x2A6DF)]
    lo, hi = rng.choice(ranges)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(n))


def _combining(rng):
    base = rng.choice(["e", "a", "o", "n", "क", "ب", "ש", "ก", "Z"])
    marks = "".join(chr(rng.choice([0x0301, 0x0308, 0x0323, 0x093F, 0x064E, 0x05B7, 0x0E34, 0x0489, 0x20DD]))
                    for _ in range(rng.randint(1, 6)))
    return base + marks


def _word(rng):
    w = rng.choice(WORDS)
    r = rng.random()
    if r < 0.1:
        w = w.upper()
    elif r < 0.25:
        w = w.capitalize()
    if rng.random() < 0.15:
        w += rng.choice(CONTRACTIONS)
    return w


def _piece(rng, kind):
    if kind == "prose":
        return " ".join(_word(rng) for _ in range(rng.randint(1, 12))) + rng.choice(["", ".", "!", "?", ","])
    if kind == "code":
        return rng.choice(CODE)
    if kind == "emoji":
        return "".join(rng.choice(EMOJI + [" ", "a"]) for _ in range(rng.randint(1, 6)))
    if kind == "cjk":
        return _cjk(rng, rng.randint(1, 20))
    if kind == "combining":
        return "".join(_combining(rng) for _ in range(rng.randint(1, 5)))
    if kind == "space":
        return "".join(rng.choice(SPACES) for _ in range(rng.randint(1, 4))) * rng.randint(1, 3)
    if kind == "digits":
        return rng.choice(DIGITS) if rng.random() < 0.5 else str(rng.randint(0, 10 ** rng.randint(1, 40)))
    if kind == "special":
        return rng.choice(SPECIALS)
    if kind == "punct":
        return "".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 6)))
    raise ValueError(kind)


KINDS = ["prose", "prose", "prose", "code", "emoji", "cjk", "combining", "space", "space", "digits", "special",
         "punct"]


def records(n=10_000, seed=0):
    """n records (bytes); every 50th holds invalid UTF-8, a few are empty."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 997 == 0:
            out.append(b"")
            continue
        parts = [_piece(rng, rng.choice(KINDS)) for _ in range(rng.randint(1, 8))]
        joiner = rng.choice(["", " ", " ", "\n", "  "])
        text = joiner.join(parts).encode("utf-8")
        if i % 50 == 7:
            cut = rng.randint(0, len(text))
            text = text[:cut] + rng.choice(INVALID) + text[cut:]
        assert b"\0" not in text
        out.append(text)
    return out


def training_text(seed=1, n=3000):
    """Valid text for training the tokenizers (a different draw from the compared records)."""
    return [r.decode("utf-8") for r in records(n, seed) if _valid(r) and r]


def _valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def write_null_separated(path, recs):
    with open(path, "wb") as f:
        for r in recs:
            f.write(r + b"\0")
