"""Quiz packs: quizzes simulated once, taken later and offline, that do not give their answers
away to someone reading the files.

A pack folder holds `pack.json` (the questions, evidence and sealed feedback), `plots/*.png`
(text metadata stripped) and `quiz.md` or a self-contained `quiz.html`. What is right is written
nowhere in the clear. Every option of every part carries one sealed blob, all of the same
length; the blob holds the feedback on the whole part *and* whether that option is right, and
it opens only with that option:

    option key  = HMAC-SHA256(pack salt, "question/part/option")
    keystream   = HMAC-SHA256(HMAC(option key, "enc"), nonce || counter), block after block
    sealed      = nonce || (padded JSON XOR keystream) || HMAC(HMAC(option key, "mac"),
                                                               nonce || ciphertext)

Options are shuffled with the OS's randomness, so neither a letter nor a position means
anything; no hash of an option (salted or not) stands anywhere that could be compared with
the options. The incidents are drawn with a random key that stays out of the pack (it is in
the instructor's `--key-out` file), so the pack cannot be re-simulated to find the causes.

What this does not stop: opening the blob of every option in turn is answering every option
in turn. `debugsim quiz take` and the HTML record the first answer to each part and lock it;
a person who writes their own program to open all options has, in effect, tried every
answer. A pack protects the key from being *read*, not from being *guessed*.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import struct
import zlib
from pathlib import Path

from .files import write_atomic
from .quiz import Answer, Feedback, Part, Question, QuizError, key_entries, dumps_key

FORMAT = "debugsim-quiz-pack"
VERSION = 1
NONCE, TAG, BLOCK = 16, 32, 32
PAD_TO = 512


class PackError(QuizError):
    """A pack that cannot be read (one line)."""


# --- sealing ----------------------------------------------------------------------------

def option_key(salt: bytes, question: str, part: str, option: str) -> bytes:
    return hmac.new(salt, f"{question}/{part}/{option}".encode(), hashlib.sha256).digest()


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    enc = hmac.new(key, b"enc", hashlib.sha256).digest()
    blocks = (length + BLOCK - 1) // BLOCK
    return b"".join(hmac.new(enc, nonce + struct.pack(">I", i), hashlib.sha256).digest()
                    for i in range(blocks))[:length]


def _tag(key: bytes, data: bytes) -> bytes:
    mac = hmac.new(key, b"mac", hashlib.sha256).digest()
    return hmac.new(mac, data, hashlib.sha256).digest()


def seal(key: bytes, plaintext: bytes, size: int) -> str:
    if len(plaintext) > size:
        raise ValueError("plaintext longer than the pack's sealed size")
    padded = plaintext + b" " * (size - len(plaintext))
    nonce = secrets.token_bytes(NONCE)
    cipher = bytes(a ^ b for a, b in zip(padded, _keystream(key, nonce, size)))
    return base64.b64encode(nonce + cipher + _tag(key, nonce + cipher)).decode()


def unseal(key: bytes, sealed: str) -> bytes:
    raw = base64.b64decode(sealed)
    nonce, cipher, tag = raw[:NONCE], raw[NONCE:-TAG], raw[-TAG:]
    if not hmac.compare_digest(tag, _tag(key, nonce + cipher)):
        raise PackError("a sealed answer does not open: the pack is damaged")
    return bytes(a ^ b for a, b in zip(cipher, _keystream(key, nonce, len(cipher))))


def _plaintext(feedback: Feedback) -> bytes:
    return json.dumps(feedback.to_dict(), separators=(",", ":")).encode()


# --- PNG metadata -----------------------------------------------------------------------

def clean_png(data: bytes) -> bytes:
    """The PNG without its text and time chunks (software, titles, dates)."""
    signature, chunks, at = data[:8], [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        end = at + 12 + length
        if kind not in (b"tEXt", b"zTXt", b"iTXt", b"tIME"):
            chunks.append(data[at:end])
        at = end
    return signature + b"".join(chunks)


def png_chunks(data: bytes) -> list[bytes]:
    kinds, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        kinds.append(kind)
        at += 12 + length
    return kinds


# --- making a pack ----------------------------------------------------------------------

def make(questions: list[Question], answers: list[Answer], out: Path, fmt: str,
         key: str, key_out: Path | None = None) -> list[Path]:
    """Write the pack for already-built questions into `out`; returns the files written."""
    out = Path(out)
    if key_out is not None and _inside(Path(key_out), out):
        raise QuizError("--key-out must be outside the pack folder (the pack is what "
                        "learners get)")
    if fmt not in ("md", "html"):
        raise QuizError(f"unknown format '{fmt}'; choose md or html")
    (out / "plots").mkdir(parents=True, exist_ok=True)
    salt = secrets.token_bytes(32)
    size = _sealed_size(answers)
    written: list[Path] = []
    data = {"format": FORMAT, "version": VERSION, "salt": salt.hex(), "questions": []}
    for question, answer in zip(questions, answers):
        plots, seen = [], set()
        for source in question.plots:
            image = clean_png(Path(source).read_bytes())
            if image in seen:                   # e.g. loss.png and the `plot loss` probe's
                continue
            seen.add(image)
            name = f"plots/{question.id}-{len(plots) + 1}.png"
            (out / name).write_bytes(image)
            written.append(out / name)
            plots.append(name)
        parts = []
        for part in question.parts:
            options = [{"id": letter, "text": text,
                        "sealed": seal(option_key(salt, question.id, part.kind, letter),
                                       _plaintext(answer.feedback[part.kind][letter]), size)}
                       for letter, text in part.options]
            parts.append({"kind": part.kind, "prompt": part.prompt, "options": options})
        data["questions"].append({
            "id": question.id, "title": question.title, "topics": question.topics,
            "story": question.story, "changes": question.changes, "log": question.log,
            "evidence": question.evidence, "plots": plots, "parts": parts})
    write_atomic(out / "pack.json", json.dumps(data, indent=1) + "\n")
    written.append(out / "pack.json")
    if fmt == "md":
        write_atomic(out / "quiz.md", markdown(data))
        written.append(out / "quiz.md")
    else:
        from .quizhtml import html
        write_atomic(out / "quiz.html", html(data, out))
        written.append(out / "quiz.html")
    if key_out is not None:
        key_out = Path(key_out)
        key_out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(key_out, dumps_key(key_entries(questions, answers, key)))
    return written


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _sealed_size(answers: list[Answer]) -> int:
    longest = max(len(_plaintext(f)) for a in answers for part in a.feedback.values()
                  for f in part.values())
    return (longest // PAD_TO + 1) * PAD_TO


def markdown(data: dict) -> str:
    count = len(data["questions"])
    lines = ["# Diagnosis quiz", "",
             f"{count} incidents. For each: which is the root cause, and which fix? "
             "Check your answers offline with `debugsim quiz take .` in this folder: the "
             "answers and explanations are sealed in pack.json and open only with the "
             "option you choose (your first answer counts).", ""]
    for q in data["questions"]:
        lines += [f"## {q['title']} of {count}", "", q["story"], ""]
        if q["changes"]:
            lines += ["```", *q["changes"], "```", ""]
        lines += ["Log excerpt:", "", "```", q["log"], "```", ""]
        for text in q["evidence"]:
            lines += ["```", text, "```", ""]
        lines += [f"![plot {i}]({p})" for i, p in enumerate(q["plots"], 1)] + [""]
        for part in q["parts"]:
            lines += [f"**{part['prompt']}**", ""]
            lines += [f"- [{o['id']}] {o['text']}" for o in part["options"]] + [""]
    return "\n".join(lines)


# --- taking a pack ----------------------------------------------------------------------

def load(folder: Path) -> list[Question]:
    """The pack's questions; each part's options open their sealed feedback when chosen."""
    path = Path(folder) / "pack.json"
    if not path.exists():
        raise QuizError(f"{folder} is not a quiz pack (no pack.json); make one with "
                             "`debugsim quiz make`")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise KeyError("format")
        if data["version"] > VERSION:
            raise QuizError(f"{path} was made by a newer debugsim (pack version "
                                 f"{data['version']})")
        salt = bytes.fromhex(data["salt"])
        return [_question(q, salt, Path(folder)) for q in data["questions"]]
    except QuizError:
        raise
    except (ValueError, KeyError, TypeError, zlib.error) as error:
        raise QuizError(f"{path} is not a readable quiz pack ({error})") from None


def _question(q: dict, salt: bytes, folder: Path) -> Question:
    parts = []
    for part in q["parts"]:
        sealed = {o["id"]: o["sealed"] for o in part["options"]}

        def opener(letter, qid=q["id"], kind=part["kind"], sealed=sealed):
            plain = unseal(option_key(salt, qid, kind, letter), sealed[letter])
            try:
                return Feedback.from_dict(json.loads(plain))
            except (ValueError, KeyError) as error:
                raise PackError(f"a sealed answer is unreadable: {error}") from None
        parts.append(Part(part["kind"], part["prompt"],
                          [(o["id"], o["text"]) for o in part["options"]], opener))
    return Question(q["id"], q["title"], q["topics"], q["story"], q["changes"], q["log"],
                    q["evidence"], [str(folder / p) for p in q["plots"]], parts)
