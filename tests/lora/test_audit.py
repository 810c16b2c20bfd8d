"""The gradient audit (loralab.lora.audit): each cause reproduced for real, the B = 0 rule,
and the guard that stops `loralab finetune` instead of training nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.lora import AdapterConfig, inject_lora, lora_layers, merge_lora
from loralab.lora.audit import GradientGuard, watch_gradients

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TwoLayer(nn.Module):
    """x -> up -> gelu -> down; ``spare`` is a Linear the forward never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down, self.spare = nn.Linear(8, 16), nn.Linear(16, 8), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.gelu(self.up(x)))


def _model(targets: tuple[str, ...] = ("up", "down")) -> nn.Module:
    torch.manual_seed(0)
    model = TwoLayer()
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=list(targets)),
                generator=torch.Generator().manual_seed(0))
    return model


def _step(model: nn.Module, opt: torch.optim.Optimizer | None = None,
          x: torch.Tensor | None = None,
          scale: float = 1.0):
    opt = opt or torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2,
                                   weight_decay=0.0)   # no decay: a zero-gradient A stays
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1)) if x is None else x
    with watch_gradients(model) as watch:
        (model(x).pow(2).mean() * scale).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return watch.audit(), opt


def _causes(audit) -> dict[str, str | None]:
    return {c.name: c.cause for c in audit.checks}


def test_healthy_first_step_a_is_zero_iff_b_is_zero() -> None:
    model = _model()
    audit, opt = _step(model)
    assert audit.ok, audit.message()
    for c in audit.checks:        # step 1: B = 0, so A's gradient is exactly 0 and A stays
        if c.role == "A":
            assert c.expected_zero and c.grad_norm == 0.0 and not c.moved
        else:
            assert not c.expected_zero and c.grad_norm > 0 and c.moved
    audit2, _ = _step(model, opt)  # step 2: B ≠ 0, so A must now learn too
    assert audit2.ok and all(c.grad_norm > 0 and c.moved for c in audit2.checks)


def test_recorded_norm_is_the_gradient_norm() -> None:
    model = _model()
    _step(model)                                   # B ≠ 0 from here on
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    with watch_gradients(model) as watch:
        model(x).pow(2).mean().backward()
    grads = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    for c in watch.audit().checks:
        assert c.grad_norm == pytest.approx(grads[c.name], rel=1e-6)
        assert not c.moved and c.cause == "not_moved"      # no optimizer step was taken


def test_frozen_by_a_later_call_is_named() -> None:
    model = _model()
    lora_layers(model)["down"].lora_B["default"].weight.requires_grad_(False)
    audit, _ = _step(model)
    assert _causes(audit)["down.lora_B.default.weight"] == "frozen"
    assert [c.name for c in audit.problems] == ["down.lora_B.default.weight"]
    assert "down.lora_B.default.weight" in audit.message()
    assert "requires_grad" in audit.message()


def test_a_target_the_forward_never_uses() -> None:
    model = _model(("up", "spare"))
    audit, _ = _step(model)
    causes = _causes(audit)
    assert causes["spare.lora_B.default.weight"] == "unused"
    assert causes["spare.lora_A.default.weight"] == "unused"
    assert causes["up.lora_B.default.weight"] is None


def test_non_finite_zero_gradient_both_zero_not_moved_inactive() -> None:
    audit, _ = _step(_model(), scale=float("nan"))
    assert set(_causes(audit).values()) == {"non_finite"}
    audit, _ = _step(_model(), x=torch.zeros(4, 8))         # x = 0: G = 0 in the first layer
    assert _causes(audit)["up.lora_B.default.weight"] == "zero_gradient"
    model = _model()
    with torch.no_grad():
        lora_layers(model)["up"].lora_A["default"].weight.zero_()
    assert _causes(_step(model)[0])["up.lora_A.default.weight"] == "both_zero"
    model = _model()
    a_only = [p for n, p in model.named_parameters() if "lora_A" in n]
    audit, _ = _step(model, torch.optim.AdamW(a_only, lr=1e-2))
    assert {c.cause for c in audit.checks if c.role == "B"} == {"not_moved"}
    model = _model()
    merge_lora(model)                  # nothing trains: autograd's error becomes the audit's
    with pytest.raises(LoralabError, match="merged"), GradientGuard(model):
        model(torch.randn(4, 8)).sum().backward()


def test_guard_raises_one_line_and_passes_a_healthy_step() -> None:
    model = _model()
    x = torch.randn(4, 8)
    with GradientGuard(model):
        model(x).sum().backward()
        torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    lora_layers(model)["up"].lora_A["default"].weight.requires_grad_(False)
    with pytest.raises(LoralabError, match="frozen") as info:
        with GradientGuard(model, "run lora-r2"):
            model(x).sum().backward()
    assert "\n" not in str(info.value) and str(info.value).startswith("run lora-r2: ")
    with pytest.raises(ZeroDivisionError):           # any other error goes through untouched
        with GradientGuard(model):
            raise ZeroDivisionError


transformers = pytest.importorskip("transformers")


def _llama(targets: list[str]) -> nn.Module:
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=32)
    model = transformers.LlamaForCausalLM(cfg)
    inject_lora(model, AdapterConfig(r=2, lora_alpha=4, target_modules=targets),
                generator=torch.Generator().manual_seed(0))
    # the state transformers < 4.35 leaves: reentrant checkpointing, no input gradients
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    model.disable_input_require_grads()
    return model.train()


def _hf_step(model: nn.Module):
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    with watch_gradients(model) as watch:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    return watch.audit()


@pytest.mark.filterwarnings("ignore")
def test_checkpointing_without_input_gradients_is_named() -> None:
    model = _llama(["q_proj", "v_proj", "lm_head"])   # lm_head outside the checkpoints: a loss
    causes = _causes(_hf_step(model))
    inner = [n for n in causes if ".layers." in n]
    assert inner and all(causes[n] == "checkpointing" for n in inner)
    assert causes["lm_head.lora_B.default.weight"] is None
    model.enable_input_require_grads()               # the fix makes every parameter learn
    assert _hf_step(model).ok


@pytest.mark.filterwarnings("ignore")
def test_guard_turns_a_graphless_loss_into_the_audit_message() -> None:
    model = _llama(["q_proj", "v_proj"])              # nothing outside the checkpoints
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    with pytest.raises(LoralabError, match="enable_input_require_grads"):
        with GradientGuard(model):
            model(input_ids=ids, labels=ids).loss.backward()
