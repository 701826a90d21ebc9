"""DP-SGD with Opacus, a privacy ledger, and budget enforcement.

Only the private (real) records go through :func:`dp_sgd_fit`: Poisson sampling over them,
per-sample gradient clipping to ``max_grad_norm`` and Gaussian noise, all by Opacus 1.6
(``PrivacyEngine.make_private_with_epsilon`` for a target (ε, δ), or ``make_private`` with an explicit
noise multiplier). Synthetic data is public (it is made from a spec and seeds, never from the real
records) and is used outside this function, at no privacy cost; see docs/training.md.

The ledger (:class:`PrivacyLedger`) records after every epoch the accountant's name, noise
multiplier, sample rate, steps, δ and ε (the accountant's own ``get_epsilon``), and training stops
before an epoch whose steps would push ε over the budget.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

AccountantName = Literal["rdp", "prv", "gdp"]


def default_delta(n: int) -> float:
    """δ default for a private set of n records: 1/(10·n), well below 1/n."""
    if n <= 0:
        raise ValueError("the private set is empty: cannot set delta")
    return 1.0 / (10.0 * n)


def check_delta(delta: float, n: int) -> None:
    if not 0 < delta < 1.0 / n:
        raise ValueError(
            f"train.delta={delta:g} must be in (0, 1/n) = (0, {1.0 / n:g}) for a private set of n={n} records"
        )


def _strict(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    if isinstance(x, dict):
        return {k: _strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_strict(v) for v in x]
    return x


class PrivacyLedger:
    """An append-only JSON privacy ledger (``ledger.json``), rewritten after every entry."""

    def __init__(self, path: Path | str | None, **header: Any):
        self.path = Path(path) if path is not None else None
        self.doc: dict[str, Any] = {"version": 1, **header, "entries": []}
        self._flush()

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.doc["entries"]

    def record(self, **entry: Any) -> dict[str, Any]:
        for k in ("accountant", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon"):
            if k not in entry:
                raise ValueError(f"ledger entry is missing {k!r}")
        self.entries.append(entry)
        self._flush()
        return entry

    def finish(self, **final: Any) -> None:
        self.doc["final"] = final
        self._flush()

    def _flush(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".json.tmp")
            # strict JSON: a non-finite ε (no privacy: non-private training) is written as "inf"
            tmp.write_text(json.dumps(_strict(self.doc), indent=2, allow_nan=False))
            tmp.replace(self.path)


def epsilon_after(accountant, delta: float, noise_multiplier: float, sample_rate: float, steps: int) -> float:
    """ε the Opacus accountant would report after ``steps`` more steps (the accountant is unchanged)."""
    probe = type(accountant)()
    probe.history = [tuple(h) for h in accountant.history]
    if steps > 0:
        if probe.history and probe.history[-1][:2] == (noise_multiplier, sample_rate):
            nm, q, s = probe.history.pop()
            probe.history.append((nm, q, s + steps))
        else:
            probe.history.append((noise_multiplier, sample_rate, steps))
    if not probe.history:
        return 0.0
    return float(probe.get_epsilon(delta))


def dp_sgd_fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    step_loss: Callable[[nn.Module, Any], torch.Tensor],
    *,
    batch_size: int,
    epochs: int,
    target_epsilon: float,
    delta: float,
    max_grad_norm: float,
    accountant: AccountantName = "rdp",
    noise_multiplier: float | None = None,
    seed: int = 0,
    ledger: PrivacyLedger | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    device: torch.device | str = "cpu",
    grad_sample_mode: str = "hooks",
) -> tuple[nn.Module, dict[str, Any]]:
    """Train ``model`` on the private ``dataset`` with DP-SGD; return (plain model, summary).

    ``step_loss(model, batch)`` returns the batch-mean loss (``loss_reduction="mean"``); each of its
    terms must depend on one record of the batch only (per-sample clipping bounds each record).
    With ``noise_multiplier=None`` Opacus calibrates σ so that ``epochs`` epochs reach
    ``target_epsilon``; with a given σ, training stops at the first epoch that would exceed it.
    """
    import warnings

    from opacus import PrivacyEngine  # heavy: opacus

    with warnings.catch_warnings():
        # secure_mode is off (no torchcsprng here; see docs/training.md); inputs never need grads;
        # the σ search probes small σ whose optimum sits at the largest order: all expected here
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
        return _dp_sgd_fit(
            model, optimizer, dataset, step_loss, batch_size=batch_size, epochs=epochs,
            target_epsilon=target_epsilon, delta=delta, max_grad_norm=max_grad_norm, accountant=accountant,
            noise_multiplier=noise_multiplier, seed=seed, ledger=ledger, on_epoch=on_epoch, device=device,
            engine_cls=PrivacyEngine, grad_sample_mode=grad_sample_mode,
        )


def _dp_sgd_fit(model, optimizer, dataset, step_loss, *, batch_size, epochs, target_epsilon, delta, max_grad_norm,
                accountant, noise_multiplier, seed, ledger, on_epoch, device, engine_cls, grad_sample_mode):

    n = len(dataset)
    check_delta(delta, n)
    if not (target_epsilon > 0 and math.isfinite(target_epsilon)):
        raise ValueError(f"target_epsilon must be a positive finite number (got {target_epsilon})")
    if max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm must be > 0 (got {max_grad_norm})")
    gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    loader = DataLoader(dataset, batch_size=min(batch_size, n), shuffle=True, generator=gen)
    engine = engine_cls(accountant=accountant)
    common = dict(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        max_grad_norm=max_grad_norm,
        poisson_sampling=True,
        noise_generator=noise_gen,
        grad_sample_mode=grad_sample_mode,
    )
    if noise_multiplier is None:
        pmodel, poptim, ploader = engine.make_private_with_epsilon(
            target_epsilon=target_epsilon, target_delta=delta, epochs=epochs, **common
        )
    else:
        pmodel, poptim, ploader = engine.make_private(noise_multiplier=noise_multiplier, **common)
    nm = float(poptim.noise_multiplier)
    q = 1.0 / len(ploader)  # Opacus' sample rate for Poisson sampling: batch_size / n
    q = float(getattr(ploader, "sample_rate", q))
    steps_per_epoch = len(ploader)
    acc = engine.accountant
    steps = 0
    stopped = None
    epochs_done = 0
    for epoch in range(epochs):
        eps_next = epsilon_after(acc, delta, nm, q, steps_per_epoch)
        if eps_next > target_epsilon * (1 + 1e-6):
            stopped = {"epoch": epoch, "reason": "budget", "epsilon_if_continued": eps_next}
            break
        pmodel.train()
        losses = []
        for batch in ploader:
            poptim.zero_grad(set_to_none=True)
            loss = step_loss(pmodel, batch)
            loss.backward()
            poptim.step()
            steps += 1
            losses.append(float(loss.detach()))
        epochs_done += 1
        eps = float(acc.get_epsilon(delta))
        info = {
            "epoch": epoch + 1,
            "accountant": acc.mechanism(),
            "noise_multiplier": nm,
            "sample_rate": q,
            "steps": steps,
            "delta": delta,
            "epsilon": eps,
            "max_grad_norm": max_grad_norm,
            "loss": sum(losses) / max(1, len(losses)),
        }
        if ledger is not None:
            ledger.record(**info)
        if on_epoch is not None:
            on_epoch(epoch, info)
    final_eps = float(acc.get_epsilon(delta)) if acc.history else 0.0
    if stopped is not None and ledger is not None:
        ledger.record(
            epoch=epochs_done,
            accountant=acc.mechanism(),
            noise_multiplier=nm,
            sample_rate=q,
            steps=steps,
            delta=delta,
            epsilon=final_eps,
            stopped="budget",
            epsilon_if_continued=stopped["epsilon_if_continued"],
        )
    plain = pmodel._module if hasattr(pmodel, "_module") else pmodel
    if hasattr(pmodel, "_close"):
        pmodel._close()  # removes Opacus' hooks from the wrapped module
    summary = {
        "accountant": acc.mechanism(),
        "noise_multiplier": nm,
        "sample_rate": q,
        "steps": steps,
        "epochs": epochs_done,
        "delta": delta,
        "epsilon": final_eps,
        "target_epsilon": target_epsilon,
        "max_grad_norm": max_grad_norm,
        "stopped": stopped,
    }
    plain.zero_grad(set_to_none=True)
    _strip_opacus(plain)
    return plain, summary


def _strip_opacus(model: nn.Module) -> None:
    """Remove Opacus' per-sample attributes left on parameters (so the model pickles/saves cleanly)."""
    for p in model.parameters():
        for attr in ("grad_sample", "_forward_counter", "summed_grad", "_current_grad_sample"):
            if hasattr(p, attr):
                try:
                    delattr(p, attr)
                except AttributeError:
                    pass
