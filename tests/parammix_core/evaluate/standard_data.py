"""Tiny local copies of standard benchmarks' data sets, in each data set's own schema.

A handful of rows per data set, written as the files an air-gapped user would point
`evaluation.tasks.N.data_files` at. The columns and splits are those lm-eval's task YAMLs read
(`dataset_path` / `dataset_name`, `test_split` / `validation_split` / `fewshot_split`,
`doc_to_text`, `doc_to_target`, `process_docs`), with the values' real shapes (gsm8k's
"#### answer", MATH's \\boxed{}, ARC's labelled choices, TriviaQA's alias lists).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

GSM8K = [  # openai/gsm8k, config "main"
    {
        "question": "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    },
    {
        "question": "A box holds 6 pens. How many pens are in 5 boxes?",
        "answer": "There are 6 * 5 = <<6*5=30>>30 pens.\n#### 30",
    },
    {
        "question": "Sara had 20 dollars and spent 8. How much is left?",
        "answer": "She has 20 - 8 = <<20-8=12>>12 dollars left.\n#### 12",
    },
]

MATH_ALGEBRA = [  # EleutherAI/hendrycks_math, config "algebra"
    {
        "problem": "What is the value of $x$ if $2x + 3 = 11$?",
        "level": "Level 1",
        "type": "Algebra",
        "solution": "Subtract 3 and divide by 2: $x = \\boxed{4}$.",
    },
    {
        "problem": "Evaluate $3^2 + 4^2$.",
        "level": "Level 1",
        "type": "Algebra",
        "solution": "$9 + 16 = \\boxed{25}$.",
    },
    {
        "problem": "Simplify $\\frac{6}{8}$.",
        "level": "Level 2",
        "type": "Algebra",
        "solution": "Divide both by 2: $\\boxed{\\frac{3}{4}}$.",
    },
]

# openai/openai_humaneval. Rows 2 and 3 end their prompt inside a raw string that the test
# closes, so whatever the model writes there is inert: row 2 passes only if its test really
# runs (candidate(2, 3) == 5), row 3 fails only if its test really runs (== 6).
HUMANEVAL = [
    {
        "task_id": "HumanEval/0",
        "prompt": 'def add(a, b):\n    """Return the sum of a and b.\n    >>> add(2, 3)\n    5\n'
        '    """\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    },
    {
        "task_id": "HumanEval/1",
        "prompt": "def add(a, b):\n    return a + b\n\n\nNOTE = r'''",
        "canonical_solution": "",
        "test": "'''\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    },
    {
        "task_id": "HumanEval/2",
        "prompt": "def add(a, b):\n    return a + b\n\n\nNOTE = r'''",
        "canonical_solution": "",
        "test": "'''\n\n\ndef check(candidate):\n    assert candidate(2, 3) == 6\n",
        "entry_point": "add",
    },
]

MBPP = [  # google-research-datasets/mbpp, config "full"
    {
        "task_id": 11,
        "text": "Write a python function to add two numbers.",
        "code": "def add(a, b):\r\n  return a + b",
        "test_list": ["assert add(2, 3) == 5", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
    {
        "task_id": 12,
        "text": "Write a function to double a number.",
        "code": "def double(x):\r\n  return 2 * x",
        "test_list": ["assert double(2) == 4", "assert double(0) == 0", "assert double(5) == 10"],
        "test_setup_code": "",
        "challenge_test_list": [],
    },
]

GPQA_MAIN = [  # Idavidrein/gpqa, config "gpqa_main" (a subset of its many columns)
    {
        "Pre-Revision Question": "Which particle carries the electromagnetic force?",
        "Question": "Which particle carries the electromagnetic force?",
        "Correct Answer": "The photon",
        "Incorrect Answer 1": "The gluon",
        "Incorrect Answer 2": "The W boson",
        "Incorrect Answer 3": "The graviton",
        "Explanation": "Photons mediate electromagnetic interactions.",
        "Record ID": "rec001",
        "High-level domain": "Physics",
        "Subdomain": "Particle physics",
    },
    {
        "Pre-Revision Question": "What is the pH of pure water at 25 C?",
        "Question": "What is the pH of pure water at 25 C?",
        "Correct Answer": "7",
        "Incorrect Answer 1": "1",
        "Incorrect Answer 2": "14",
        "Incorrect Answer 3": "0",
        "Explanation": "Neutral water has pH 7 at 25 C.",
        "Record ID": "rec002",
        "High-level domain": "Chemistry",
        "Subdomain": "Physical chemistry",
    },
]

MMLU_ANATOMY = [  # cais/mmlu, config "anatomy"
    {
        "question": "Which bone is the longest in the human body?",
        "subject": "anatomy",
        "choices": ["Femur", "Tibia", "Humerus", "Ulna"],
        "answer": 0,
    },
    {
        "question": "How many chambers does the human heart have?",
        "subject": "anatomy",
        "choices": ["Two", "Three", "Four", "Five"],
        "answer": 2,
    },
    {
        "question": "Which organ produces insulin?",
        "subject": "anatomy",
        "choices": ["Liver", "Pancreas", "Kidney", "Spleen"],
        "answer": 1,
    },
]

ARC_CHALLENGE = [  # allenai/ai2_arc, config "ARC-Challenge"
    {
        "id": "Mercury_7175875",
        "question": "Which of these is a renewable source of energy?",
        "choices": {"text": ["coal", "wind", "oil", "natural gas"], "label": ["A", "B", "C", "D"]},
        "answerKey": "B",
    },
    {
        "id": "Mercury_SC_401169",
        "question": "What do plants need to make food?",
        "choices": {"text": ["sunlight", "sand", "rocks"], "label": ["1", "2", "3"]},
        "answerKey": "1",
    },
]

BBH_BOOLEAN_EXPRESSIONS = [  # SaylorTwift/bbh, config "boolean_expressions"
    {"input": "not ( True ) and ( True ) is", "target": "False"},
    {"input": "True and not not ( not False ) is", "target": "True"},
    {"input": "not True or ( False and True ) is", "target": "False"},
]


LAMBADA_OPENAI = [  # EleutherAI/lambada_openai, config "default": predict the last word
    {"text": "She opened the door, looked out at the rain and went back to her book"},
    {"text": "He counted the coins twice, but there were still only seven coins"},
    {"text": "The train left the station at noon and reached the coast by evening"},
]


def _trivia(question_id: str, question: str, value: str, aliases: list[str]) -> dict:
    return {
        "question": question,
        "question_id": question_id,
        "question_source": "http://www.triviacountry.com/",
        "entity_pages": {"doc_source": [], "filename": [], "title": [], "wiki_context": []},
        "search_results": {
            "description": [],
            "filename": [],
            "rank": [],
            "title": [],
            "url": [],
            "search_context": [],
        },
        "answer": {
            "aliases": aliases,
            "normalized_aliases": [a.lower() for a in aliases],
            "matched_wiki_entity_name": "",
            "normalized_matched_wiki_entity_name": "",
            "normalized_value": value.lower(),
            "type": "WikipediaEntity",
            "value": value,
        },
    }


TRIVIAQA = [  # mandarjoshi/trivia_qa, config "rc.nocontext"
    _trivia("tc_1", "Which planet is known as the Red Planet", "Mars", ["Mars", "The Red Planet"]),
    _trivia("tc_2", "What is the capital city of France", "Paris", ["Paris", "Paris, France"]),
]


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_parquet(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def write_all(root: Path) -> dict[str, dict[str, str]]:
    """Every data set under `root`; task name -> the `data_files` mapping (split -> file)."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        "gsm8k": {"test": write_jsonl(root / "gsm8k-test.jsonl", GSM8K)},
        "minerva_math_algebra": {"test": write_jsonl(root / "math-algebra.jsonl", MATH_ALGEBRA)},
        "humaneval": {"test": write_jsonl(root / "humaneval.jsonl", HUMANEVAL)},
        "mbpp": {"test": write_jsonl(root / "mbpp.jsonl", MBPP)},
        # gpqa scores its "train" split (the only one the hub has)
        "gpqa_main_zeroshot": {"train": write_parquet(root / "gpqa-main.parquet", GPQA_MAIN)},
        "mmlu_anatomy": {
            "test": write_parquet(root / "mmlu-anatomy-test.parquet", MMLU_ANATOMY[1:]),
            "dev": write_parquet(root / "mmlu-anatomy-dev.parquet", MMLU_ANATOMY[:1]),
        },
        "arc_challenge": {"test": write_jsonl(root / "arc-challenge.jsonl", ARC_CHALLENGE)},
        "bbh_zeroshot_boolean_expressions": {
            "test": write_jsonl(root / "bbh-boolean.jsonl", BBH_BOOLEAN_EXPRESSIONS)
        },
        "triviaqa": {"validation": write_jsonl(root / "triviaqa-val.jsonl", TRIVIAQA)},
        "lambada_openai": {"test": write_jsonl(root / "lambada-openai.jsonl", LAMBADA_OPENAI)},
    }


def all_texts() -> list[str]:
    """Every string of every data set (to train a pico tokenizer on)."""
    out: list[str] = []

    def visit(value: object) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit([GSM8K, MATH_ALGEBRA, HUMANEVAL, MBPP, GPQA_MAIN, MMLU_ANATOMY, ARC_CHALLENGE])
    visit([BBH_BOOLEAN_EXPRESSIONS, TRIVIAQA])
    return out
