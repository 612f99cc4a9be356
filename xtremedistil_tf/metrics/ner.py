"""NER scores exactly as conlleval computes them: a line-by-line port of the CoNLL-2000 shared task scorer
(conlleval, version 2004-01-26).

Kept as a port rather than taken from a library: seqeval's default mode is close but adds rules for S- tags that
conlleval does not have, and the CoNLL numbers this project reports must be conlleval's. tests/test_metrics.py
checks the port against seqeval (IOB1/IOB2 tags) and, when available, against the perl script itself.
"""
from __future__ import annotations

from typing import Any, Sequence


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'), as conlleval: split at the first '-'; no '-' means no type.

    Like the perl (`$type ? $type : ""`), a type of '0' counts as no type.
    """
    prefix, sep, kind = tag.partition("-")
    if not sep:
        return tag, ""
    return prefix, ("" if kind == "0" else kind)


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's endOfChunk: did a chunk end between the previous and the current word?"""
    return (
        (prev_tag == "B" and tag in ("B", "O"))
        or (prev_tag == "I" and tag in ("B", "O"))
        or (prev_tag == "E" and tag in ("E", "I", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
        or prev_tag in ("[", "]")
    )


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's startOfChunk: did a chunk start between the previous and the current word?"""
    return (
        (tag == "B" and prev_tag in ("B", "I", "O"))
        or (tag == "I" and prev_tag in ("O", "E"))
        or (tag == "E" and prev_tag in ("E", "O"))
        or (tag not in ("O", ".") and prev_type != type_)
        or tag in ("[", "]")
    )


def _check_tags(tags: Sequence[Any], where: str) -> None:
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"{where}: tags must be strings such as 'B-PER', got {type(tag).__name__} {tag!r}")


def get_entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Chunks of one tag sequence as (type, start, end), `end` inclusive, in order of their start.

    Uses conlleval's start/end rules, so IOB1 (an I-X after O or after another type opens a chunk), IOB2, IOE
    and the bracket tags behave as conlleval counts them; as in conlleval every chunk start opens a new chunk
    and the sequence end closes the last one. Note conlleval has no rule for S-: S-X S-X (and E-X B-X) of one
    type read as a single chunk there, and therefore here.
    """
    tags = list(tags)
    _check_tags(tags, "get_entities")
    entities: list[tuple[str, int, int]] = []
    open_start, open_type = -1, ""
    prev_tag, prev_type = "O", ""
    for i, raw in enumerate(tags + ["O"]):
        tag, type_ = _split_tag(raw)
        start = i < len(tags) and _start_of_chunk(prev_tag, tag, prev_type, type_)
        if open_start >= 0 and (start or _end_of_chunk(prev_tag, tag, prev_type, type_)):
            entities.append((open_type, open_start, i - 1))
            open_start = -1
        if start:
            open_start, open_type = i, type_
        prev_tag, prev_type = tag, type_
    if open_start >= 0:
        entities.append((open_type, open_start, len(tags) - 1))
    return entities


def _prf(correct: int, guessed: int, gold: int) -> dict[str, float]:
    precision = correct / guessed if guessed > 0 else 0.0
    recall = correct / gold if gold > 0 else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f}


def ner_metrics(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores exactly as conlleval computes them, as fractions in [0, 1] (conlleval prints %).

    The input is what conlleval would read from a file with one `word gold predicted` line per token and a
    blank line after every sentence. Returns precision (correct chunks / predicted chunks), recall (correct /
    gold chunks), f1, accuracy (token tags equal), the counts (`found_correct`, `found_guessed`,
    `correct_chunks`, `tokens`) and `per_type`: {type: {precision, recall, f1, found_correct, found_guessed,
    correct_chunks}} for every type seen in the gold or predicted chunks. A chunk is correct only if both
    sides start and end it at the same words with the same type.
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"ner_metrics: {len(true_seqs)} gold sentences but {len(pred_seqs)} predicted ones")
    correct_chunk = found_correct = found_guessed = correct_tags = token_counter = 0
    per_correct: dict[str, int] = {}
    per_gold: dict[str, int] = {}
    per_guessed: dict[str, int] = {}
    in_correct = False
    last_correct, last_correct_type, last_guessed, last_guessed_type = "O", "", "O", ""

    def lines():
        for s, (gold, pred) in enumerate(zip(true_seqs, pred_seqs)):
            gold, pred = list(gold), list(pred)
            if len(gold) != len(pred):
                raise ValueError(f"ner_metrics: sentence {s} has {len(gold)} gold tags but {len(pred)} predicted")
            _check_tags(gold, f"ner_metrics: sentence {s} (gold)")
            _check_tags(pred, f"ner_metrics: sentence {s} (predicted)")
            for g, p in zip(gold, pred):
                yield g, p, False
            yield "O", "O", True  # the blank line: a sentence break, out of any chunk, not a token

    for gold_tag, pred_tag, boundary in lines():
        correct, correct_type = _split_tag(gold_tag)
        guessed, guessed_type = _split_tag(pred_tag)
        end_c = _end_of_chunk(last_correct, correct, last_correct_type, correct_type)
        end_g = _end_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if in_correct:
            if end_c and end_g and last_guessed_type == last_correct_type:
                in_correct = False
                correct_chunk += 1
                per_correct[last_correct_type] = per_correct.get(last_correct_type, 0) + 1
            elif end_c != end_g or guessed_type != correct_type:
                in_correct = False
        start_c = _start_of_chunk(last_correct, correct, last_correct_type, correct_type)
        start_g = _start_of_chunk(last_guessed, guessed, last_guessed_type, guessed_type)
        if start_c and start_g and guessed_type == correct_type:
            in_correct = True
        if start_c:
            found_correct += 1
            per_gold[correct_type] = per_gold.get(correct_type, 0) + 1
        if start_g:
            found_guessed += 1
            per_guessed[guessed_type] = per_guessed.get(guessed_type, 0) + 1
        if not boundary:
            if correct == guessed and guessed_type == correct_type:
                correct_tags += 1
            token_counter += 1
        last_correct, last_correct_type = correct, correct_type
        last_guessed, last_guessed_type = guessed, guessed_type
    if in_correct:
        correct_chunk += 1
        per_correct[last_correct_type] = per_correct.get(last_correct_type, 0) + 1

    per_type = {}
    for t in sorted(set(per_gold) | set(per_guessed)):
        c, g, gold = per_correct.get(t, 0), per_guessed.get(t, 0), per_gold.get(t, 0)
        per_type[t] = {**_prf(c, g, gold), "found_correct": gold, "found_guessed": g, "correct_chunks": c}
    return {
        **_prf(correct_chunk, found_guessed, found_correct),
        "accuracy": correct_tags / token_counter if token_counter else 0.0,
        "found_correct": found_correct,
        "found_guessed": found_guessed,
        "correct_chunks": correct_chunk,
        "tokens": token_counter,
        "per_type": per_type,
    }


def remove_x(tags: Sequence[str], special_tokens: Sequence[str]) -> list[str]:
    """The original release's clean-up of its flat tag list before counting chunks (its `conlleval.remove_x`).

    Left to right: a tag with ':' keeps its second ':'-field (a language prefix dropped); a tag whose *original*
    string contains 'X' becomes `I-<type>` of the previous, already converted tag if that one contains 'B-' or 'I-',
    else 'O' (at index 0 the previous tag is the last one, unconverted, as Python's seq[-1] was there); a tag equal
    to a special token ([PAD], [CLS], [SEP]) becomes 'O'.
    """
    out = list(tags)
    _check_tags(out, "remove_x")
    specials = set(special_tokens)
    for i, original in enumerate(tags):
        if ":" in out[i]:
            out[i] = out[i].split(":")[1]
        if "X" in original:
            prev = out[i - 1]
            out[i] = "I-" + prev.split("-")[1] if ("B-" in prev or "I-" in prev) else "O"
        elif original in specials:
            out[i] = "O"
    return out


def flat_ner_metrics(true_tags: Sequence[str], pred_tags: Sequence[str],
                     special_tokens: Sequence[str]) -> dict[str, Any]:
    """The original release's NER score (`evaluation.ner_evaluate`): both tag lists cleaned by `remove_x`, then
    entity scores over them as **one** sequence (chunks may run across sentences), as fractions.

    The original counted chunks with a Python conlleval variant for IOB2/IOBES; on IOB1/IOB2 tags (CoNLL's) it
    counts as conlleval does (tests/test_metrics.py checks it on random sequences), so this is `ner_metrics`.
    """
    if len(true_tags) != len(pred_tags):
        raise ValueError(f"flat_ner_metrics: {len(true_tags)} gold tags but {len(pred_tags)} predicted")
    return ner_metrics([remove_x(true_tags, special_tokens)], [remove_x(pred_tags, special_tokens)])
