"""Turn a predictions JSONL of VQAv2 test-dev/test into the official result file for the evaluation server.

Input lines (written by prediction runs): {"id": ..., "pred": "<generated text>", "meta": {"question_id": 123, ...}}.
Output: [{"question_id": 123, "answer": "<answer>"}, ...], the answer pulled from the text with
mllm.metrics.answer_extraction.extract_answer ('' when none), then put through the official answer
processing (mllm.metrics.vqa.normalize_answer: punctuation, lower case, number words -> digits, articles,
contractions). The server normalises only when a question's ten answers disagree and otherwise compares
strings as they are, against answers the release stores normalised; an unprocessed "Yes" or "Two." would
then be scored wrong. `--raw-answers` writes the extracted answers unprocessed (the old behaviour).
Name the file as the server asks, e.g. vqa_OpenEnded_mscoco_test-dev2015_<method>_results.json.

    python tools/vqav2_submission.py predictions.jsonl vqa_OpenEnded_mscoco_test-dev2015_mine_results.json \
        [--questions /data/vqav2/v2_OpenEnded_mscoco_test-dev2015_questions.json]
With --questions, every question of the official file must be answered exactly once.
"""
from __future__ import annotations

import argparse
import json
import sys

from mllm.metrics.answer_extraction import extract_answer
from mllm.metrics.vqa import normalize_answer


class SubmissionError(ValueError):
    """A prediction line cannot be turned into a result; the message names file:line."""


def build_results(lines: list[str], source: str = 'predictions', require_cue: bool = False,
                  normalize: bool = True) -> list[dict]:
    """One result per prediction line; `normalize` applies the official answer processing."""
    results, seen = [], {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SubmissionError(f"{where}: not valid JSON ({e.msg})") from None
        meta = row.get('meta') if isinstance(row, dict) else None
        qid = meta.get('question_id') if isinstance(meta, dict) else None
        if qid is None:
            raise SubmissionError(f"{where}: no meta.question_id (predict with VQAv2Dataset or PureVQADataset)")
        if not isinstance(row.get('pred'), str):
            raise SubmissionError(f"{where}: no 'pred' text")
        if qid in seen:
            raise SubmissionError(f"{where}: question_id {qid} already answered at {source}:{seen[qid]}")
        seen[qid] = lineno
        answer = extract_answer(row['pred'], require_cue=require_cue) or ''
        if normalize:
            answer = normalize_answer(answer)
        results.append({'question_id': int(qid), 'answer': answer})
    return results


def check_complete(results: list[dict], questions: dict) -> None:
    """Raise unless `results` answers exactly the questions of the official questions JSON."""
    expected = {q['question_id'] for q in questions['questions']}
    got = {r['question_id'] for r in results}
    missing, extra = expected - got, got - expected
    if missing or extra:
        raise SubmissionError(f"{len(missing)} question(s) unanswered (e.g. {sorted(missing)[:5]}), "
                              f"{len(extra)} not in the questions file (e.g. {sorted(extra)[:5]})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument('predictions', help='predictions JSONL with id, pred and meta.question_id')
    parser.add_argument('output', help='result JSON to upload')
    parser.add_argument('--questions', help='official questions JSON to check that every question is answered')
    parser.add_argument('--require-cue', action='store_true', help="answers need 'The answer is' / 'Answer:'")
    parser.add_argument('--raw-answers', action='store_true',
                        help='write the extracted answers without the official answer processing')
    args = parser.parse_args(argv)
    with open(args.predictions, encoding='utf-8') as f:
        lines = f.readlines()
    try:
        results = build_results(lines, args.predictions, args.require_cue, normalize=not args.raw_answers)
        if args.questions:
            with open(args.questions, encoding='utf-8') as f:
                check_complete(results, json.load(f))
    except SubmissionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with open(args.output, 'w', encoding='utf-8') as f:
        json.dump(results, f, ensure_ascii=False)
    empty = sum(not r['answer'] for r in results)
    print(f"{len(results)} answers ({empty} empty) -> {args.output}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
