"""Real architectures through every stage: dense Llama, Qwen2 (tied embeddings), GPT-NeoX, and
the sparse MoE families Mixtral, Qwen2-MoE and OLMoE, each a user's local checkpoint
(`architectures.py`). Plus how MoE training treats the router's load-balancing loss."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from parammix_core import hvp, stages
from parammix_core.config import DeepSpeedConfig, TrainConfig, TrainingConfig
from parammix_core.data import load_prepared
from parammix_core.evaluate.heldout import block_losses, heldout_loss
from parammix_core.model import load_model, load_state, module_state
from parammix_core.objective import is_sparse_moe, lm_inputs, training_inputs
from parammix_core.search.mergemix import merged_loss_objective
from parammix_core.stages import mixed, validate
from parammix_core.train import sample_batch, train
from tests.parammix_core.architectures import (
    CPU,
    DOMAINS,
    FAMILIES,
    MOE,
    MicroRun,
    live_merges,
    micro_suite,
    micro_tokenizer,
    random_model,
    reference_merge,
    rel_err,
    run_stages,
)


@pytest.fixture(scope="module")
def tokenizer():
    return micro_tokenizer()


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> Path:
    return micro_suite(tmp_path_factory.mktemp("tasks"))


@pytest.fixture(scope="module", params=list(FAMILIES))
def run(request, tmp_path_factory, tokenizer, suite) -> MicroRun:
    return run_stages(request.param, tmp_path_factory.mktemp(request.param), tokenizer, suite)


# --- every stage on every family ----------------------------------------------------------


def test_base_is_the_users_checkpoint_and_experts_differ_from_it(run):
    exp, store = run.exp, run.store
    base = load_model(store.local_dir(run.base), exp.model, CPU)
    assert type(base).__name__ == type(run.written).__name__
    written = module_state(run.written)
    imported = module_state(base)
    assert list(imported) == list(written)
    for name, t in imported.items():
        assert torch.equal(t, written[name]), name

    for domain, ref in zip(exp.domains, run.experts, strict=True):
        expert = load_state(store.local_dir(ref), exp.model, CPU)
        unchanged = [n for n, t in expert.items() if torch.equal(t, imported[n])]
        assert not unchanged, f"{domain}: tensors the expert did not train: {unchanged}"
        if run.family in MOE:
            for layer in range(base.config.num_hidden_layers):
                prefix = f"model.layers.{layer}.mlp"
                router = expert[f"{prefix}.gate.weight"] - imported[f"{prefix}.gate.weight"]
                assert router.abs().max() > 1e-4, f"{domain}: router of layer {layer} unchanged"
                blocks = expert[f"{prefix}.experts.gate_up_proj"]
                moved = (blocks - imported[f"{prefix}.experts.gate_up_proj"]).flatten(1).norm(dim=1)
                assert (moved > 0).all(), f"{domain}: routed experts never trained: {moved}"


def test_moe_checkpoints_are_stored_in_the_hub_layout_and_merged_in_the_modules(run):
    """Why weights are read through transformers (`load_state`): the files of a sparse MoE
    (and GPT-NeoX) name their tensors otherwise than the live model does."""
    exp, store = run.exp, run.store
    file_names = set(load_file(run.weights(run.experts[0])))
    assert file_names == set(load_file(run.checkpoint / "model.safetensors"))
    state = load_state(store.local_dir(run.experts[0]), exp.model, CPU)
    model = load_model(store.local_dir(run.base), exp.model, CPU)
    buffers = {n for n, _ in model.named_buffers()} & set(model.state_dict())
    assert set(state) == {n for n, _ in model.named_parameters()} | buffers
    if run.family in MOE or run.family == "gpt_neox":
        assert file_names != set(state)
    if run.family in MOE:
        assert any(".experts.0." in n for n in file_names)  # one tensor per expert on disk
        assert state["model.layers.0.mlp.experts.gate_up_proj"].ndim == 3  # one per layer live


def test_every_merged_tensor_equals_the_float64_reference(run, tmp_path):
    """Routers and every routed expert included, compared in the checkpoint's own layout."""
    merges = 0
    for alpha, merged in live_merges(run, tmp_path):
        reference = reference_merge(run, alpha)
        assert set(merged) == set(reference)
        errors = {n: rel_err(merged[n], reference[n]) for n in reference}
        worst = max(errors, key=errors.get)
        assert errors[worst] <= 1e-6, f"alpha {alpha}: {worst} off by {errors[worst]:.2e}"
        merges += 1
    assert merges == len(run.alphas) == 6
    if run.family in MOE:
        layers = run.written.config.num_hidden_layers
        routers = [n for n in reference if n.endswith(".gate.weight") and "experts" not in n]
        assert len(routers) == layers
        assert sum(".experts.3." in n for n in reference) >= 2 * layers  # every routed expert


def test_evaluated_rows_are_the_reference_merges_scores(run, tmp_path):
    exp, store = run.exp, run.store
    rows = store.load_parquet(run.evals, "rows.parquet")
    assert len(rows) == len(run.alphas)
    scores = [c for c in rows.columns if c.startswith(("loss.", "task.", "group."))]
    assert np.isfinite(rows[scores].to_numpy()).all()
    for t in exp.evaluation.tasks:
        assert rows[f"task.{t.name}"].between(0, 1).all()
    k = len(exp.domains)
    losses = rows.loc[: k - 1, [f"loss.{d}" for d in exp.domains]].to_numpy()
    assert (np.argmin(losses, axis=0) == np.arange(k)).all()  # a vertex is its domain's best

    heldout = load_prepared(store.local_dir(run.data)).heldout
    replay = exp.training.replay  # the experts': a mixture merges at (alpha - r / K) / (1 - r)
    assert replay == 0.1
    for i in (0, k, len(rows) - 1):  # a vertex (past its expert), uniform, the last draw
        folder = tmp_path / f"reference{i}"
        folder.mkdir()
        shutil.copy(Path(store.local_dir(run.base)) / "config.json", folder)
        reference = reference_merge(run, (np.asarray(run.alphas[i]) - replay / k) / (1 - replay))
        save_file(
            {n: t.float().contiguous() for n, t in reference.items()}, folder / "model.safetensors"
        )
        model = load_model(folder, exp.model, CPU)
        for d in exp.domains:
            loss, _ = heldout_loss(model, heldout[d], 16, CPU)
            assert rows.loc[i, f"loss.{d}"] == pytest.approx(loss, rel=1e-5), (i, d)


def test_probe_outputs_are_finite_and_shaped(run):
    store = run.store
    k = len(DOMAINS)
    shards, summary, info = stages.load_probe(store, run.probe)
    model = load_model(store.local_dir(run.base), run.exp.model, CPU)
    p = sum(t.numel() for t in model.parameters())  # a tied parameter once
    grads = shards.grads()
    hg = torch.stack([shards.hg(i, j) for i in range(k) for j in range(k)])
    assert tuple(grads.shape) == (k, p) and tuple(hg.shape) == (k * k, p)
    assert torch.isfinite(grads).all() and torch.isfinite(hg).all()
    assert (grads.norm(dim=1) > 0).all()
    assert torch.isfinite(summary.gram).all() and tuple(summary.gram.shape) == (k * k, k * k)
    assert info["method"] == "double_backward"  # auto on the CPU
    curvature = np.asarray(info["relative_curvature"])
    cosines = np.asarray(info["task_vector_cosines"])
    for m in (curvature, cosines):
        assert m.shape == (k, k) and np.isfinite(m).all()
        np.testing.assert_allclose(np.diag(m), 1.0, rtol=1e-9)
    np.testing.assert_allclose(cosines, cosines.T, rtol=1e-9)
    layers = [g for g in info["per_layer_cosines"] if ".layers." in g]
    assert len(layers) == model.config.num_hidden_layers
    for group in info["per_layer_cosines"].values():
        assert np.isfinite(np.asarray(group)).all()


def test_the_final_model_loads_back_with_from_pretrained(run):
    store = run.store
    folder = store.local_dir(run.final)
    assert set(load_file(folder / "model.safetensors")) == set(
        load_file(run.checkpoint / "model.safetensors")
    )  # the family's own layout: any tool that reads the user's checkpoint reads this one
    exported = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    assert type(exported).__name__ == type(run.written).__name__
    assert len(AutoTokenizer.from_pretrained(folder)) == exported.config.vocab_size

    # the weights training ended with, from the run's last resumable checkpoint (module names)
    (last,) = [d for d in store.work_dir(run.final).iterdir() if d.name == "step-0000003"]
    trained = load_model(store.local_dir(run.base), run.exp.model, CPU)
    safetensors.torch.load_model(trained, str(last / "model.safetensors"))
    heldout = load_prepared(store.local_dir(run.data)).heldout
    blocks = torch.cat([heldout[d][:2] for d in DOMAINS])  # (6, T)
    with torch.no_grad():
        want = trained(blocks).logits
        got = exported(blocks).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    reported = store.load_json(run.final_scores, "scores.json")["metrics"]
    for d in DOMAINS:
        loss, _ = heldout_loss(exported, heldout[d], 16, CPU)
        assert loss == pytest.approx(reported[f"loss.{d}"], rel=1e-6), d


def test_validate_proxy_scores_real_mixed_runs_of_every_family(run):
    """Real mixed runs (the experts' budget) are loaded into the live merge model by name."""
    exp = run.exp.model_copy(
        update={
            "validation": run.exp.validation.model_copy(
                update={"n_mixtures": 3, "reruns": 1, "metrics": "loss"}
            )
        }
    )
    store = run.store
    mixtures = validate.validation_mixtures(exp)
    plan = validate.run_plan(exp, len(mixtures))
    runs = [mixed.train_mixed(exp, store, mixtures[i], s, run.data, run.base) for i, s in plan]
    ref = validate.validate_proxy(exp, store, mixtures, runs, run.data, run.base, run.experts)
    rows = store.load_parquet(ref, "rows.parquet")
    assert rows["kind"].value_counts().to_dict() == {"expert": 3, "merge": 3, "mix": 3, "rerun": 1}
    losses = rows[[f"loss.{d}" for d in exp.domains]].to_numpy()
    assert np.isfinite(losses).all()
    mix = rows[rows["kind"] == "mix"]
    assert (mix["gap_norm"] > 0).all() and (mix["update_norm"] > mix["gap_norm"] / 100).all()
    heldout = load_prepared(store.local_dir(run.data)).heldout
    model = load_model(store.local_dir(runs[1]), exp.model, CPU)
    row = mix[mix["mixture"] == 1].iloc[0]
    for d in exp.domains:
        loss, _ = heldout_loss(model, heldout[d], 16, CPU)
        assert row[f"loss.{d}"] == pytest.approx(loss, rel=1e-5), d


# --- MoE: the router's load-balancing loss -------------------------------------------------


def switch_aux_loss(router_logits: tuple[torch.Tensor, ...], n_experts: int, top_k: int):
    """Switch Transformer's balance loss over every layer's routing, written out here:
    E * sum_e (share of top-k assignments to e) * (mean router probability of e)."""
    probs = torch.softmax(torch.cat(router_logits).float(), dim=-1)  # (L*N, E)
    chosen = probs.topk(top_k, dim=-1).indices  # (L*N, k)
    share = F.one_hot(chosen, n_experts).sum(dim=(0, 1)).float() / probs.shape[0]  # (E,)
    return n_experts * (share * probs.mean(dim=0)).sum()


def manual_losses(model, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(LM cross-entropy, LM + coef * balance loss) of `model` on `batch`, by hand."""
    out = model(input_ids=batch, output_router_logits=True, use_cache=False)
    vocab = out.logits.shape[-1]
    ce = F.cross_entropy(out.logits[:, :-1].reshape(-1, vocab), batch[:, 1:].reshape(-1))
    cfg = model.config
    n_experts = getattr(cfg, "num_local_experts", None) or cfg.num_experts
    aux = switch_aux_loss(out.router_logits, n_experts, cfg.num_experts_per_tok)
    return ce, ce + cfg.router_aux_loss_coef * aux


def moe_model(family: str, **fields) -> torch.nn.Module:
    """A tiny MoE whose balance loss weighs enough to tell apart (coefficient 0.5)."""
    return random_model(
        family, 96, seed=1, router_aux_loss_coef=0.5, bos_token_id=1, eos_token_id=2, **fields
    )


def token_blocks(n: int, t: int, vocab: int = 96) -> torch.Tensor:
    return torch.randint(0, vocab, (n, t), generator=torch.Generator().manual_seed(3))


def adam_step(model, loss_of, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """One AdamW step of a copy of `model` on the scalar loss_of(copy), as the loop does it."""
    twin = type(model)(model.config)
    twin.load_state_dict(model.state_dict())
    twin.train()
    opt = torch.optim.AdamW(
        twin.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay
    )
    loss_of(twin).backward()
    torch.nn.utils.clip_grad_norm_(twin.parameters(), cfg.grad_clip)
    opt.step()
    return module_state(twin)


@pytest.mark.parametrize("family", MOE)
def test_training_descends_lm_plus_router_loss(family, tmp_path):
    model = moe_model(family)
    assert is_sparse_moe(model) and not model.config.output_router_logits  # the default: off
    blocks = {"a": token_blocks(16, 24)}
    cfg = TrainConfig(steps=1, batch_size=4, lr=1e-2, warmup_steps=0)
    batch = sample_batch([blocks["a"]], torch.ones(1), 4, torch.Generator().manual_seed(5))
    with torch.no_grad():
        ce, total = manual_losses(model, batch)
    assert total - ce > 1e-3  # the balance term is there to be seen
    with_aux = adam_step(model, lambda m: manual_losses(m, batch)[1], cfg)
    lm_only = adam_step(model, lambda m: manual_losses(m, batch)[0], cfg)

    result = train(model, blocks, [1.0], cfg, 5, tmp_path / "ckpt", CPU)
    assert result.losses[0] == pytest.approx(total.item(), rel=1e-5)
    trained = module_state(model)
    routers = [n for n in trained if n.endswith("mlp.gate.weight")]
    assert routers
    for name, t in trained.items():
        torch.testing.assert_close(t, with_aux[name], rtol=0, atol=1e-6, msg=name)
    gap = max((with_aux[n] - lm_only[n]).abs().max().item() for n in routers)
    assert gap > 1e-3  # without the balance loss the routers would have moved otherwise


@pytest.mark.parametrize("family", MOE)
def test_scores_are_lm_loss_only_whatever_the_config_says(family):
    model = moe_model(family, output_router_logits=True)  # a checkpoint that asks for aux
    blocks = token_blocks(4, 24)
    with torch.no_grad():
        ce, total = manual_losses(model, blocks)
        assert model(**lm_inputs(model, blocks)).loss.item() == pytest.approx(ce.item(), rel=1e-6)
        assert model(**training_inputs(model, blocks)).loss.item() == pytest.approx(
            total.item(), rel=1e-6
        )
    assert block_losses(model, blocks, 4, CPU).mean().item() == pytest.approx(ce.item(), rel=1e-5)
    state = module_state(model)
    objective = merged_loss_objective(model, state, [state, state], [blocks])
    with torch.no_grad():
        dev = objective(torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert dev.item() == pytest.approx(ce.item(), rel=1e-5)


@pytest.mark.parametrize("family", MOE)
def test_probe_gradient_is_of_the_training_objective(family):
    model = moe_model(family)
    batch = token_blocks(2, 16)
    g = hvp.gradient(model, [batch])
    by_hand = torch.autograd.grad(manual_losses(model, batch)[1], list(model.parameters()))
    torch.testing.assert_close(g, torch.cat([t.reshape(-1) for t in by_hand]), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("family", MOE)
def test_forward_over_reverse_runs_on_moe_and_matches_double_backward(family):
    """transformers' default grouped_mm experts have no forward-mode AD: the kernel switches
    to the eager expert loop for its duration, then back."""
    model = moe_model(family)
    assert model.config._experts_implementation == "grouped_mm"
    batch = token_blocks(2, 16)
    g = hvp.gradient(model, [batch])
    vectors = torch.stack([g, torch.randn(g.shape, generator=torch.Generator().manual_seed(0))])
    forward = hvp.hvp(model, batch, vectors, "forward_over_reverse", chunk_size=1)
    backward = hvp.hvp(model, batch, vectors, "double_backward")
    assert forward.method == "forward_over_reverse"
    assert model.config._experts_implementation == "grouped_mm"
    for a, b in zip(forward.values, backward.values, strict=True):  # float32 round-off only
        assert rel_err(a, b.double()) < 1e-5


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_descends_the_same_moe_objective(stage, tmp_path):
    pytest.importorskip("deepspeed")
    blocks = {"a": token_blocks(16, 24)}
    cfg = TrainConfig(steps=2, batch_size=4, lr=1e-2, warmup_steps=0)
    batch = sample_batch([blocks["a"]], torch.ones(1), 4, torch.Generator().manual_seed(5))
    plain, sharded = moe_model("mixtral"), moe_model("mixtral")
    with torch.no_grad():
        _, total = manual_losses(plain, batch)
    want = train(plain, blocks, [1.0], cfg, 5, tmp_path / "plain", CPU)
    system = TrainingConfig(engine="deepspeed", deepspeed=DeepSpeedConfig(zero_stage=stage))
    got = train(sharded, blocks, [1.0], cfg, 5, tmp_path / "ds", CPU, system=system)
    assert got.losses[0] == pytest.approx(total.item(), rel=1e-5)
    assert got.losses == pytest.approx(want.losses, rel=1e-5)
    for name, t in module_state(sharded).items():
        torch.testing.assert_close(t, module_state(plain)[name], rtol=0, atol=2e-5, msg=name)
