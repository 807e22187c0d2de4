"""The built-in suite: well-formed, correct answers, deterministic, and scored right by lm-eval."""

import ast
import json
import math
import re
import shutil
import sysconfig
from pathlib import Path

import pytest
from lm_eval.api.model import LM
from lm_eval.evaluator import evaluate
from lm_eval.tasks import TaskManager

from parammix_core.data.sources import builtin_texts
from parammix_core.evaluate import BUILTIN_TASKS, SuiteError, write_builtin_suite
from parammix_core.evaluate.suite import parsing, score_choices
from parammix_core.evaluate.suite.documents import _number_slips

N_DOCS = 12
STDLIB_MODULES = ("textwrap.py", "shlex.py", "calendar.py", "fractions.py", "difflib.py")
WEB = [
    "The river was wide and slow in the summer, and the children swam there every day. "
    "Their parents watched from the shade of the old trees near the bank.\n\n"
    "In the evening the whole village gathered in the square to hear the music. "
    "Nobody wanted to go home before the last song had been played.",
    "A good book can change the way a person thinks about the world around them. "
    "Many readers remember the first novel that made them stay awake all night. "
    "Libraries keep these stories safe for the next generation of curious readers.",
]


@pytest.fixture(scope="module")
def stdlib(tmp_path_factory) -> Path:
    """A few real stdlib modules: enough code and docstrings, and fast to parse."""
    root = tmp_path_factory.mktemp("stdlib")
    for name in STDLIB_MODULES:
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, root / name)
    return root


@pytest.fixture(scope="module")
def suite(tmp_path_factory, stdlib) -> Path:
    out = tmp_path_factory.mktemp("suite")
    return write_builtin_suite(out, N_DOCS, seed=3, heldout_texts={"web": WEB}, stdlib_dir=stdlib)


# Held-out documents of the built-in math and sft domains: what the default's data stage keeps.
HELDOUT = {"web": WEB, "math": builtin_texts("math", 5, 6000), "sft": builtin_texts("sft", 5, 6000)}
CUTS = {"pm_arithmetic": ("math", "\nAnswer:"), "pm_sequences": ("sft", "\n### Response:\n")}


@pytest.fixture(scope="module")
def heldout_suite(tmp_path_factory, stdlib) -> Path:
    out = tmp_path_factory.mktemp("heldout-suite")
    return write_builtin_suite(out, N_DOCS, seed=3, heldout_texts=HELDOUT, stdlib_dir=stdlib)


def _docs(suite: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (suite / f"{name}.jsonl").read_text().splitlines()]


def test_every_task_has_yaml_and_well_formed_docs(suite):
    for name in BUILTIN_TASKS:
        assert (suite / f"{name}.yaml").is_file()
        docs = _docs(suite, name)
        assert len(docs) == N_DOCS
        for doc in docs:
            assert 0 <= doc["gold"] < len(doc["choices"])
            assert len(set(doc["choices"])) == len(doc["choices"]) >= 2
            assert doc["query"]
        assert len({json.dumps(d) for d in docs}) == N_DOCS, f"{name}: duplicate documents"


def test_arithmetic_gold_is_the_right_answer(suite):
    for doc in _docs(suite, "pm_arithmetic"):
        a, op, b = re.search(r"What is (\d+) ([-+*]) (\d+)\?", doc["query"]).groups()
        expected = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert doc["choices"][doc["gold"]] == f" {expected}"
        assert doc["query"].endswith(f"Answer: {a} {op} {b} =")


def test_sequences_gold_follows_the_rule(suite):
    for doc in _docs(suite, "pm_sequences"):
        answer = doc["choices"][doc["gold"]]
        if doc["kind"] == "comparison":
            pattern = r"(\w+) is \w+ than \w+\. \w+ is \w+ than (\w+)\. Who is the (\w+)\?"
            first, last, asked = re.search(pattern, doc["query"]).groups()
            top = asked in ("tallest", "oldest", "fastest", "heaviest")
            assert answer == (first if top else last)
        else:
            shown = re.search(r"sequence: ([\d, ]+)\n", doc["query"]).group(1)
            terms = [int(t) for t in shown.split(", ")]
            rule = {
                "arithmetic": terms[3] + (terms[3] - terms[2]),
                "geometric": terms[3] * (terms[3] // terms[2]),
                "fibonacci": terms[3] + terms[2],
            }[doc["kind"]]
            assert int(answer) == rule


def test_number_slips_change_the_last_number_everywhere():
    assert _number_slips(" 9 * 46 = 414. The answer is 414.") == [
        f" 9 * 46 = {w}. The answer is {w}." for w in (404, 413, 415, 424)
    ]
    # 231 is changed, not the 1 of 231's remainder nor the 2 (a whole number only).
    odd = " 231 divided by 2 leaves a remainder of 1, so 231 is odd."
    assert " 132 divided by 2 leaves a remainder of 1, so 132 is odd." in _number_slips(odd)
    assert len(_number_slips(odd)) == 5
    assert _number_slips("x = 2.5, so 7.") == [
        "x = 2.5, so 17.",
        "x = 2.5, so 6.",
        "x = 2.5, so 8.",
    ]
    assert _number_slips("bread, lamp, story") == []


@pytest.mark.parametrize("name", list(CUTS))
def test_heldout_tasks_are_the_domains_own_documents(heldout_suite, name):
    domain, marker = CUTS[name]
    texts = set(HELDOUT[domain])
    docs = _docs(heldout_suite, name)
    assert len(docs) == N_DOCS
    for doc in docs:
        gold, wrong = doc["choices"][doc["gold"]], doc["choices"][1 - doc["gold"]]
        assert doc["query"].endswith(marker)
        assert doc["query"] + gold in texts
        assert doc["query"] + wrong not in texts
        if doc["kind"] == "slip":
            assert wrong in _number_slips(gold)
        else:
            assert doc["kind"] == "other" and not _number_slips(gold)
            assert any(t.endswith(marker + wrong) for t in texts)


def test_too_few_heldout_documents_fall_back_to_generated_questions(tmp_path, stdlib, suite):
    few = {**HELDOUT, "math": HELDOUT["math"][: N_DOCS - 1], "sft": ["no response marker"]}
    with pytest.warns(UserWarning) as caught:
        out = write_builtin_suite(tmp_path, N_DOCS, 3, few, stdlib_dir=stdlib)
    messages = sorted(str(w.message) for w in caught)
    assert messages == [
        f"pm_arithmetic: heldout_texts['math'] gives {N_DOCS - 1} documents in the "
        f"'\\nAnswer:' format, need {N_DOCS}; using generated questions",
        f"pm_sequences: heldout_texts['sft'] gives 0 documents in the "
        f"'\\n### Response:\\n' format, need {N_DOCS}; using generated questions",
    ]
    # Without enough of them (or with none) the tasks are the generated ones.
    assert _docs(out, "pm_sequences") == _docs(suite, "pm_sequences")
    assert all(
        re.search(r"What is \d+ [-+*] \d+\?", d["query"]) for d in _docs(out, "pm_arithmetic")
    )


def test_word_order_pairs_come_from_heldout_sentences(suite):
    text = " ".join(" ".join(WEB).split())
    for doc in _docs(suite, "pm_word_order"):
        gold, wrong = doc["choices"][doc["gold"]], doc["choices"][1 - doc["gold"]]
        assert doc["query"] + gold in text
        assert doc["query"] + wrong not in text
        assert sorted(gold.split()) == sorted(wrong.split())


def test_code_completion_gold_completes_a_real_line(suite, stdlib):
    lines = {line.strip() for p in stdlib.glob("*.py") for line in p.read_text().splitlines()}
    for doc in _docs(suite, "pm_code_completion"):
        line = (doc["query"].split("\n")[-1] + doc["choices"][doc["gold"]]).strip()
        assert line in lines
        ast.parse(line + " pass" if line.endswith(":") else line)  # real code, not prose


def test_knowledge_gold_is_the_named_objects_first_sentence(suite, stdlib):
    documented = {}
    for p in stdlib.glob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            doc = isinstance(node, ast.FunctionDef | ast.ClassDef) and ast.get_docstring(node)
            if doc:
                documented.setdefault(node.name, []).append(" ".join(doc.split()))
    for doc in _docs(suite, "pm_stdlib_knowledge"):
        kind, name = doc["query"].removesuffix(':\n    """').split(" ")
        assert kind == doc["kind"] and doc["query"] == f'{kind} {name}:\n    """'
        gold = doc["choices"][doc["gold"]]
        assert gold.endswith(".") and any(d.startswith(gold) for d in documented[name])
        wrong = [c for i, c in enumerate(doc["choices"]) if i != doc["gold"]]
        assert len(wrong) == 2 and gold not in wrong
        assert all(abs(len(w) - len(gold)) <= 3 for w in wrong)  # length gives nothing away


def test_same_inputs_same_bytes_and_seed_matters(tmp_path, suite, stdlib):
    again = write_builtin_suite(tmp_path / "a", N_DOCS, 3, {"web": WEB}, stdlib_dir=stdlib)
    other = write_builtin_suite(tmp_path / "b", N_DOCS, 4, {"web": WEB}, stdlib_dir=stdlib)
    for name in BUILTIN_TASKS:
        assert (again / f"{name}.jsonl").read_bytes() == (suite / f"{name}.jsonl").read_bytes()
        yaml_a = (again / f"{name}.yaml").read_text().replace(str(again), "DIR")
        assert yaml_a == (suite / f"{name}.yaml").read_text().replace(str(suite), "DIR")
        assert (other / f"{name}.jsonl").read_bytes() != (suite / f"{name}.jsonl").read_bytes()


def test_a_task_given_its_own_count_gets_it_and_the_others_keep_theirs(tmp_path, suite, stdlib):
    out = write_builtin_suite(
        tmp_path, N_DOCS, 3, {"web": WEB}, stdlib_dir=stdlib, task_docs={"pm_stdlib_knowledge": 30}
    )
    for name in BUILTIN_TASKS:
        lines = (out / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == (30 if name == "pm_stdlib_knowledge" else N_DOCS), name
        if name != "pm_stdlib_knowledge":  # the same documents as without the override
            assert (out / f"{name}.jsonl").read_bytes() == (suite / f"{name}.jsonl").read_bytes()
    with pytest.raises(SuiteError, match=r"task_docs names no built-in task: \['mmlu'\]"):
        write_builtin_suite(
            tmp_path, N_DOCS, 3, {"web": WEB}, stdlib_dir=stdlib, task_docs={"mmlu": 5}
        )
    with pytest.raises(SuiteError, match="pm_word_order: documents must be at least 2"):
        write_builtin_suite(
            tmp_path, N_DOCS, 3, {"web": WEB}, stdlib_dir=stdlib, task_docs={"pm_word_order": 1}
        )


def test_too_few_sources_is_an_error(tmp_path, stdlib):
    with pytest.raises(SuiteError, match="pm_word_order: heldout_texts\\['web'\\] gives"):
        write_builtin_suite(tmp_path, 50, 0, {"web": WEB}, stdlib_dir=stdlib)
    with pytest.raises(SuiteError, match="no Python source files"):
        write_builtin_suite(tmp_path, 5, 0, {"web": WEB}, stdlib_dir=tmp_path / "empty")


def test_score_choices():
    doc = {"choices": [" a", " bbbb", " cc"], "gold": 1}
    scores = score_choices(doc, [(-1.0, False), (-2.0, False), (-3.0, False)])
    assert scores["acc"] == 0.0
    assert scores["acc_norm"] == 1.0  # -2/5 beats -1/2 and -3/3 per character
    assert scores["p_correct"] == pytest.approx(math.exp(-2) / sum(math.exp(-k) for k in (1, 2, 3)))


class PrefersChoice(LM):
    """A fake LM: log-likelihood 0 for one choice of each document and -1 for the others."""

    def __init__(self, docs: list[dict], pick) -> None:
        super().__init__()
        self.scores = {
            (d["query"], c): 0.0 if i == pick(d) else -1.0
            for d in docs
            for i, c in enumerate(d["choices"])
        }

    def loglikelihood(self, requests):
        return [(self.scores[r.args], False) for r in requests]

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        raise NotImplementedError


@pytest.mark.parametrize(
    "name,heldout", [(name, False) for name in BUILTIN_TASKS] + [(name, True) for name in CUTS]
)
def test_lm_eval_scores_the_tasks(suite, heldout_suite, name, heldout):
    suite = heldout_suite if heldout else suite
    docs = _docs(suite, name)
    tasks = TaskManager(include_path=str(suite), include_defaults=False).load([name])
    # The gold answer always wins: every metric is perfect.
    gold = PrefersChoice(docs, lambda d: d["gold"])
    res = evaluate(gold, tasks, bootstrap_iters=0, log_samples=False)
    assert res["results"][name]["acc,none"] == res["results"][name]["acc_norm,none"] == 1.0
    assert res["results"][name]["p_correct,none"] > 0.5
    # Choice 0 always wins: accuracy is the share of documents whose answer is listed first.
    res = evaluate(PrefersChoice(docs, lambda d: 0), tasks, bootstrap_iters=1, log_samples=False)
    result = res["results"][name]
    first = [d["gold"] == 0 for d in docs]
    assert result["acc,none"] == pytest.approx(sum(first) / len(docs))
    p = [
        (1.0 if f else math.exp(-1)) / (1 + (len(d["choices"]) - 1) * math.exp(-1))
        for d, f in zip(docs, first, strict=True)
    ]
    assert result["p_correct,none"] == pytest.approx(sum(p) / len(p))
    acc = sum(first) / len(first)
    assert result["acc_stderr,none"] == pytest.approx(math.sqrt(acc * (1 - acc) / (len(docs) - 1)))


NESTED = '''"""Module."""
if True:
    def first():
        """In an if."""
try:
    class Second:
        """In a try."""
        def method(self):
            """In a class."""
except ImportError:
    def third():
        """In a handler."""
match 1:
    case 1:
        def fourth():
            """In a case."""
x = [lambda: 1 for _ in range(2)]
'''


def test_docstring_owners_are_visited_in_ast_walk_order():
    tree = ast.parse(NESTED)
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef)
    walked = [n for n in ast.walk(tree) if isinstance(n, owners)]
    assert [n for n in parsing._statements(tree) if isinstance(n, owners)] == walked
    assert [ast.get_docstring(n) for n in walked] == [
        "Module.",
        "In an if.",
        "In a try.",
        "In a class.",
        "In a handler.",
        "In a case.",
    ]


def test_the_snapshot_is_parsed_once_per_process(tmp_path, monkeypatch, stdlib):
    calls = []
    parse = parsing._parse_docstrings
    monkeypatch.setattr(parsing, "_parse_docstrings", lambda s: calls.append(1) or parse(s))
    monkeypatch.setattr(parsing, "_PARSED", {})
    first = parsing.stdlib_material(stdlib, identity="abc")
    assert parsing.stdlib_material(tmp_path / "elsewhere", identity="abc") is first
    assert len(calls) == 1 and first.entries and first.docstrings
    parsing.stdlib_material(stdlib)  # a folder without a known identity: parsed again
    parsing.stdlib_material(stdlib)
    assert len(calls) == 3
    monkeypatch.setattr(parsing, "_PARSED", {})  # another process: reads what the first kept
    assert parsing.stdlib_material(stdlib, identity="abc") == first
    assert len(calls) == 3 and (stdlib / ".docstrings-abc.json").is_file()
