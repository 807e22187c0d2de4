"""Our pass@k stand-in for the hub's code_eval: the estimator and the execution."""

import pytest

from parammix_core.evaluate.code_eval import CodeEval, pass_at_k, passes


def test_the_unbiased_estimator():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 3, 2) == 1.0  # fewer failures than k: some sample always passes


def test_candidates_run_against_their_tests(monkeypatch):
    monkeypatch.setenv("HF_ALLOW_CODE_EVAL", "1")
    tests = ["assert add(2, 3) == 5", "assert sq(3) == 9"]
    candidates = [
        ["def add(a, b): return a + b", "def add(a, b): return a * b"],
        ["def sq(x):\n    while True: pass"],  # never ends: a timeout is a failure
    ]
    scores, results = CodeEval().compute(references=tests, predictions=candidates, k=[1])
    assert results == {0: [True, False], 1: [False]}
    assert scores == {"pass@1": pytest.approx((0.5 + 0.0) / 2)}
    assert not passes("import sys; sys.exit(3)")


def test_it_refuses_without_permission(monkeypatch):
    monkeypatch.delenv("HF_ALLOW_CODE_EVAL", raising=False)
    with pytest.raises(ValueError, match="allow_code_execution"):
        CodeEval().compute(references=["assert True"], predictions=[["pass"]], k=[1])
