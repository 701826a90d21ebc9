"""The private fine-tune stage: public (synthetic) pretraining, then DP-SGD / PATE / non-private
fine-tuning on the private real set, with optional SynFace domain mixup; evaluation on the
identity-disjoint test split(s); safetensors weights + model card + privacy ledger.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dmsfactory.privacy.dp import PrivacyLedger, check_delta, default_delta, dp_sgd_fit
from dmsfactory.privacy.pate import PATEAccountant, aggregate, calibrate_sigma, vote_histogram
from dmsfactory.training.config import TrainConfig
from dmsfactory.training.data import HEAD_VALUES, IGNORE, TensorSet, load_split
from dmsfactory.training.model import DMSNet, per_sample_loss, to_input

Progress = Callable[[dict], None] | None


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _t(ts: TensorSet, device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(ts.x).to(device), torch.from_numpy(ts.y).to(device)


def _emit(progress: Progress, **event) -> None:
    if progress is not None:
        progress(event)


def random_flip(x: torch.Tensor, y: torch.Tensor, heads: tuple[str, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror each image with p = 0.5; the subject's left eye becomes the right one (labels swapped)."""
    if len(x) == 0:
        return x, y
    m = (torch.rand(len(x), generator=gen) < 0.5).to(x.device)
    x = torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)
    if "eye_left" in heads and "eye_right" in heads:
        i, j = heads.index("eye_left"), heads.index("eye_right")
        y = y.clone()
        yl, yr = y[:, i].clone(), y[:, j].clone()
        y[:, i] = torch.where(m, yr, yl)
        y[:, j] = torch.where(m, yl, yr)
    return x, y


def mixup_loss(
    model: nn.Module,
    x_real: torch.Tensor,
    y_real: torch.Tensor,
    syn_x: torch.Tensor,
    syn_y: torch.Tensor,
    heads: tuple[str, ...],
    lam_max: float,
    gen: torch.Generator,
) -> torch.Tensor:
    """Per-sample SynFace domain-mixup loss: each real record is mixed with one random synthetic one.

    λ ~ U(0, lam_max) per sample is the weight of the synthetic image. The partner and λ are drawn
    independently of the private data, so each per-sample term depends on one private record only.
    """
    b = len(x_real)
    idx = torch.randint(0, len(syn_x), (b,), generator=gen).to(x_real.device)
    lam = (torch.rand(b, generator=gen) * lam_max).to(x_real.device)
    xs, ys = syn_x[idx], syn_y[idx]
    xm = lam.view(-1, 1, 1, 1) * to_input(xs) + (1 - lam).view(-1, 1, 1, 1) * to_input(x_real)
    logits = model(xm)
    return lam * per_sample_loss(logits, ys, heads) + (1 - lam) * per_sample_loss(logits, y_real, heads)


def fit(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    heads: tuple[str, ...],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    mix: tuple[torch.Tensor, torch.Tensor, float] | None = None,
    progress: Progress = None,
    phase: str = "fit",
    flip: bool = False,
) -> list[float]:
    """Plain (non-private) Adam training; ``mix`` = (syn_x, syn_y, lam_max) enables domain mixup."""
    if len(x) == 0 or epochs == 0:
        return []
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        tot, nb = 0.0, 0
        for i in range(0, len(x), batch_size):
            bi = perm[i : i + batch_size]
            xb, yb = x[bi], y[bi]
            if flip:
                xb, yb = random_flip(xb, yb, heads, gen)
            opt.zero_grad(set_to_none=True)
            if mix is not None:
                loss = mixup_loss(model, xb, yb, mix[0], mix[1], heads, mix[2], gen).mean()
            else:
                loss = per_sample_loss(model(to_input(xb)), yb, heads).mean()
            loss.backward()
            opt.step()
            tot += float(loss.detach())
            nb += 1
        losses.append(tot / max(1, nb))
        _emit(progress, phase=phase, epoch=ep + 1, epochs=epochs, loss=losses[-1])
    return losses


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    model.eval()
    outs: dict[str, list] = {h: [] for h in model.heads}
    for i in range(0, len(x), batch_size):
        lo = model(to_input(x[i : i + batch_size]))
        for h in model.heads:
            outs[h].append(lo[h].argmax(1))
    return {h: (torch.cat(v) if v else torch.zeros(0, dtype=torch.long)) for h, v in outs.items()}


def evaluate(model: nn.Module, ts: TensorSet, device, heads: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Accuracy per head (over samples that carry that label) and balanced accuracy of 'class'."""
    if len(ts) == 0:
        return {"n": 0}
    x, y = _t(ts, device)
    pred = predict(model, x)
    res: dict[str, Any] = {"n": len(ts)}
    for i, h in enumerate(ts.heads):
        if heads is not None and h not in heads:
            continue
        t = y[:, i]
        m = t != IGNORE
        if int(m.sum()) == 0:
            continue
        res[f"{h}_acc"] = float((pred[h][m] == t[m]).float().mean())
        res.setdefault("majority_baseline", {})[h] = float(np.bincount(t[m].cpu().numpy()).max() / int(m.sum()))
        if h == "class":
            recs = [float((pred[h][t == c] == c).float().mean()) for c in range(len(HEAD_VALUES[h])) if int((t == c).sum())]
            res["class_balanced_acc"] = float(np.mean(recs))
    return res


def _partition(ts: TensorSet, k: int, rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    """Disjoint partitions for the teachers: by identity when there are ≥ k identities."""
    ids = sorted(set(ts.identity))
    if len(ids) >= k:
        order = rng.permutation(len(ids))
        owner = {ids[j]: r % k for r, j in enumerate(order)}
        parts = [np.array([i for i, s in enumerate(ts.identity) if owner[s] == t], np.int64) for t in range(k)]
        return parts, "identity"
    perm = rng.permutation(len(ts))
    return [np.sort(perm[t::k]) for t in range(k)], "record"


def _save_model(model: DMSNet, path: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={k: json.dumps(v) for k, v in meta.items()})


def load_model(path: str | Path) -> tuple[DMSNet, dict[str, Any]]:
    """Load weights written by :func:`train_from_spec` (architecture from the file's metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    with safe_open(str(p), "pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    if "heads" not in meta or "width" not in meta:
        raise ValueError(f"{p}: no dmsfactory metadata (heads, width)")
    m = DMSNet(tuple(meta["heads"]), int(meta["width"]))
    m.load_state_dict(load_file(str(p)))
    return m, meta


def run_training(
    cfg: TrainConfig,
    syn_train: TensorSet,
    real_train: TensorSet | None,
    tests: dict[str, TensorSet],
    out_dir: Path | None,
    *,
    seed: int,
    progress: Progress = None,
    pretrained_state: dict[str, torch.Tensor] | None = None,
) -> dict[str, Any]:
    """The whole stage on in-memory sets (``train_from_spec`` loads them from shards).

    ``pretrained_state``: weights of an earlier public pretraining with the same config and seed
    (benchmarks reuse it across ε values); skips the synthetic pretraining epochs.
    """
    device = resolve_device(cfg.device)
    heads = tuple(cfg.heads)
    method = cfg.method
    if method != "synthetic_only" and (real_train is None or len(real_train) == 0):
        raise ValueError(f"train.private_data: no private samples found for method {method!r}")
    if len(syn_train) == 0 and cfg.pretrain_epochs > 0:
        raise ValueError("train.dataset_dir: no synthetic train samples found")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model = DMSNet(heads, cfg.width).to(device)
    sx, sy = _t(syn_train, device)
    # 1. public pretraining on synthetic data (no privacy cost)
    if pretrained_state is not None:
        model.load_state_dict(pretrained_state)
        pre_losses = []
    else:
        pre_losses = fit(model, sx, sy, heads, epochs=cfg.pretrain_epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                         seed=seed, progress=progress, phase="pretrain_synthetic", flip=cfg.flip)
    n_priv = 0 if real_train is None else len(real_train)
    eps_target = cfg.epsilon
    delta = None
    if method in ("dp_sgd", "pate"):
        delta = cfg.delta if cfg.delta is not None else default_delta(n_priv)
        check_delta(delta, n_priv)
    ledger = None
    if method in ("dp_sgd", "pate", "non_private"):
        ledger = PrivacyLedger(
            out_dir / "ledger.json" if out_dir is not None else None,
            method=method,
            private_records=n_priv,
            target_epsilon=eps_target if method != "non_private" else math.inf,
            delta=delta,
            public_data="synthetic shards: public, no privacy cost (see docs/training.md)",
        )
    privacy: dict[str, Any] = {"method": method, "epsilon": 0.0 if method == "synthetic_only" else math.inf, "delta": delta}
    mix = None
    if cfg.mixup.enabled and method in ("dp_sgd", "non_private"):
        if len(syn_train) == 0:
            raise ValueError("train.mixup needs synthetic train samples")
        mix = (sx, sy, cfg.mixup.lam_max)
    fine_losses: list[float] = []
    if method == "non_private" or (method == "dp_sgd" and math.isinf(eps_target)):
        rx, ry = _t(real_train, device)
        fine_losses = fit(model, rx, ry, heads, epochs=cfg.epochs, lr=cfg.private_lr, batch_size=cfg.batch_size,
                          seed=seed + 7, mix=mix, progress=progress, phase="finetune_private_nonprivate", flip=cfg.flip)
        ledger.record(accountant="none", noise_multiplier=0.0, sample_rate=min(1.0, cfg.batch_size / n_priv),
                      steps=cfg.epochs * math.ceil(n_priv / cfg.batch_size), delta=delta, epsilon=math.inf,
                      epoch=cfg.epochs, note="no DP: epsilon is infinite")
    elif method == "dp_sgd":
        rx, ry = _t(real_train, device)
        ds = torch.utils.data.TensorDataset(rx, ry)
        mgen = torch.Generator().manual_seed(seed + 11)

        def step_loss(m: nn.Module, batch) -> torch.Tensor:
            xb, yb = batch
            if len(xb) == 0:
                return sum((p * 0).sum() for p in m.parameters())
            if cfg.flip:
                xb, yb = random_flip(xb, yb, heads, mgen)
            if mix is not None:
                per = mixup_loss(m, xb, yb, mix[0], mix[1], heads, mix[2], mgen)
            else:
                per = per_sample_loss(m(to_input(xb)), yb, heads)
            return per.mean()

        opt = torch.optim.Adam(model.parameters(), lr=cfg.private_lr)
        model, dp_info = dp_sgd_fit(
            model, opt, ds, step_loss,
            batch_size=cfg.batch_size, epochs=cfg.epochs, target_epsilon=eps_target, delta=delta,
            max_grad_norm=cfg.dp.max_grad_norm, accountant=cfg.dp.accountant,
            noise_multiplier=cfg.dp.noise_multiplier, seed=seed + 13, ledger=ledger,
            on_epoch=lambda e, info: _emit(progress, phase="finetune_private_dp", epoch=e + 1, epochs=cfg.epochs,
                                           loss=info["loss"], epsilon=info["epsilon"]),
            device=device, grad_sample_mode=cfg.dp.grad_sample_mode,
        )
        privacy.update(dp_info)
    elif method == "pate":
        privacy.update(_run_pate(cfg, model, syn_train, real_train, sx, delta, ledger, device, seed, progress))
        model = privacy.pop("_student")
    # evaluation
    model.eval()
    metrics = {name: evaluate(model, ts, device, heads=privacy.get("trained_heads")) for name, ts in tests.items()}
    if ledger is not None:
        ledger.finish(epsilon=privacy.get("epsilon"), delta=delta, metrics=metrics)
    summary = {
        "method": method,
        "_state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "seed": seed,
        "device": str(device),
        "heads": list(privacy.get("trained_heads") or heads),
        "synthetic_train": len(syn_train),
        "private_train": n_priv,
        "mixup": cfg.mixup.model_dump() if mix is not None else None,
        "privacy": {k: v for k, v in privacy.items() if not k.startswith("_")},
        "metrics": metrics,
        "losses": {"pretrain": pre_losses, "finetune": fine_losses},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if out_dir is not None:
        meta = {"heads": list(heads), "width": cfg.width, "image_size": cfg.image_size, "crop": cfg.crop, "crop_scale": cfg.crop_scale,
                "method": method, "epsilon": privacy.get("epsilon"), "delta": delta}
        _save_model(model, out_dir / "model.safetensors", meta)
        summary["model"] = str(out_dir / "model.safetensors")
        summary["report"] = str(out_dir / "MODEL_CARD.md")
        if ledger is not None:
            summary["ledger"] = str(out_dir / "ledger.json")
        (out_dir / "metrics.json").write_text(
            json.dumps({k: v for k, v in summary.items() if not k.startswith("_")}, indent=2, allow_nan=True))
        (out_dir / "MODEL_CARD.md").write_text(model_card(summary, cfg))
    return summary


def _run_pate(cfg, pretrained, syn_train, real_train, sx, delta, ledger, device, seed, progress) -> dict[str, Any]:
    pc = cfg.pate
    heads = tuple(cfg.heads)
    rng = np.random.default_rng(seed + 17)
    parts, unit = _partition(real_train, pc.teachers, rng)
    if min(len(p) for p in parts) == 0:
        raise ValueError(f"train.pate.teachers={pc.teachers} is more than the private set can fill (n={len(real_train)})")
    rx, ry = _t(real_train, device)
    nq = min(pc.queries, len(syn_train))
    qidx = np.sort(rng.permutation(len(syn_train))[:nq])
    qx = sx[torch.from_numpy(qidx).to(device)]
    preds = []
    for t, p in enumerate(parts):
        teacher = copy.deepcopy(pretrained)
        pi = torch.from_numpy(p).to(device)
        fit(teacher, rx[pi], ry[pi], heads, epochs=pc.teacher_epochs, lr=cfg.private_lr, batch_size=cfg.batch_size,
            seed=seed + 100 + t, flip=cfg.flip)
        preds.append(predict(teacher, qx)["class"].cpu().numpy())
        _emit(progress, phase="pate_teachers", epoch=t + 1, epochs=len(parts))
    votes = vote_histogram(np.stack(preds), len(HEAD_VALUES["class"]))
    info: dict[str, Any] = {"teachers": len(parts), "partition_unit": unit, "queries": nq}
    if math.isinf(cfg.epsilon):
        labels = votes.argmax(1)
        answered = np.ones(nq, bool)
        ledger.record(accountant="none", noise_multiplier=0.0, sample_rate=1.0, steps=nq, delta=delta,
                      epsilon=math.inf, note="no noise: epsilon is infinite")
        info.update(epsilon=math.inf, epsilon_data_dependent=math.inf, sigma=0.0)
    else:
        thr_ratio = pc.sigma_threshold_ratio if pc.threshold_fraction is not None else None
        sigma = pc.sigma or calibrate_sigma(cfg.epsilon, delta, nq, thr_ratio)
        s1 = sigma * pc.sigma_threshold_ratio if thr_ratio is not None else None
        thr = pc.threshold_fraction * len(parts) if pc.threshold_fraction is not None else None
        acc = PATEAccountant(sigma=sigma, sigma_threshold=s1)
        res = aggregate(votes, sigma=sigma, delta=delta, budget_epsilon=cfg.epsilon, rng=rng, threshold=thr,
                        sigma_threshold=s1, accountant=acc)
        for e in res.ledger:
            ledger.record(**e)
        labels, answered = res.labels, res.answered
        info.update(epsilon=res.epsilon, epsilon_data_dependent=res.epsilon_data_dependent, sigma=sigma,
                    sigma_threshold=s1, threshold=thr, stopped_at=res.stopped_at, accountant="pate_rdp_gnmax")
    true_cls = syn_train.y[qidx, heads.index("class")]
    info["answered"] = int(answered.sum())
    info["label_agreement_with_synthetic_truth"] = (
        float((labels[answered] == true_cls[answered]).mean()) if answered.any() else None
    )
    # student: the public pretrained model trained on the answered queries with the teachers' labels
    student = copy.deepcopy(pretrained)
    if answered.any():
        ci = heads.index("class")
        sy = torch.full((int(answered.sum()), len(heads)), IGNORE, dtype=torch.long)
        sy[:, ci] = torch.from_numpy(labels[answered])
        ax = qx[torch.from_numpy(np.nonzero(answered)[0]).to(device)]
        fit(student, ax, sy.to(device), heads, epochs=pc.student_epochs, lr=cfg.private_lr,
            batch_size=cfg.batch_size, seed=seed + 23, progress=progress, phase="pate_student", flip=cfg.flip)
    info["trained_heads"] = ["class"]
    info["_student"] = student
    return info


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "∞" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def at_majority(metrics: dict[str, Any]) -> list[str]:
    """Heads whose accuracy is not above the majority-label rate, as "class 0.169 = 0.169" /
    "phone 0.750 < 0.812": such a head does no better than always predicting the most common label."""
    out = []
    for head, base in (metrics.get("majority_baseline") or {}).items():
        acc = metrics.get(f"{head}_acc")
        if acc is not None and acc <= base + 1e-6:  # accuracies are float32 means: equal counts differ by ~1e-8
            out.append(f"{head} {acc:.3f} {'=' if abs(acc - base) <= 1e-6 else '<'} {base:.3f}")
    return out


def model_card(summary: dict[str, Any], cfg: TrainConfig) -> str:
    p = summary["privacy"]
    lines = [
        "# DMS state classifier — model card",
        "",
        f"- Method: **{summary['method']}**; heads: {', '.join(summary['heads'])}",
        f"- Data: {summary['synthetic_train']} synthetic (public) train images; {summary['private_train']} private "
        f"real records (`{cfg.private_data}`, split `{cfg.private_split}`)",
        f"- Privacy: ε = {_fmt(p.get('epsilon'))}, δ = {_fmt(p.get('delta'))}"
        + (f", accountant `{p.get('accountant')}`" if p.get("accountant") else "")
        + (f", noise multiplier {_fmt(p.get('noise_multiplier') or p.get('sigma'))}" if p.get("noise_multiplier") or p.get("sigma") else ""),
        f"- Domain mixup: {summary['mixup'] or 'off'}",
        f"- Seed {summary['seed']}, device {summary['device']}, {summary['seconds']} s",
        "",
        "## Metrics (identity-disjoint test splits)",
        "",
    ]
    for name, m in summary["metrics"].items():
        lines.append(f"- **{name}** (n={m.get('n')}): "
                     + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if isinstance(v, float)))
        if m.get("majority_baseline"):
            lines.append("  - majority-label rate (what a constant prediction scores): "
                         + ", ".join(f"{k} {v:.3f}" for k, v in m["majority_baseline"].items()))
            low = at_majority(m)
            if low:
                lines.append("  - **at or below the majority-label rate (no better than always predicting the most "
                             "common label): " + ", ".join(low) + "**")
    lines += [
        "",
        "## Notes",
        "- Synthetic images are public: they are rendered from a spec and seeds, never from the private records,",
        "  so training on them costs no privacy budget. Only the private real set is accounted (see ledger.json).",
        "- Unit of privacy: one private image (record) for DP-SGD; for PATE one identity when teachers are",
        "  partitioned by identity (see `partition_unit`).",
    ]
    if summary["method"] == "pate":
        lines.append("- PATE's data-dependent ε is reported for information; the guarantee is the data-independent ε.")
    return "\n".join(lines) + "\n"


def train_from_spec(spec, out_dir: str | Path, progress: Progress = None) -> dict[str, Any]:
    """Run the stage for ``spec.train`` (a :class:`TrainConfig`); write model, card, ledger to ``out_dir``."""
    cfg: TrainConfig | None = spec.train
    if cfg is None:
        raise ValueError("spec has no 'train:' section")
    torch.set_num_threads(int(getattr(getattr(spec, "run", None), "torch_threads", 1) or 1))
    seed = cfg.seed if cfg.seed is not None else int(spec.seed)
    heads = tuple(cfg.heads)
    ds_dir = Path(cfg.dataset_dir or spec.output.dir)
    if not ds_dir.is_dir():
        raise FileNotFoundError(f"train.dataset_dir: synthetic dataset not found at {ds_dir} (generate it first)")
    load = lambda d, split, limit=None: load_split(d, split, heads, cfg.image_size, cfg.crop, limit, cfg.crop_scale)  # noqa: E731
    _emit(progress, phase="load", what=str(ds_dir))
    syn_train = load(ds_dir, "train", cfg.max_synthetic)
    tests = {"synthetic_test": load(ds_dir, "test")}
    real_train = None
    if cfg.method != "synthetic_only" or cfg.private_data:
        pdir = Path(cfg.private_data)
        if not pdir.is_dir():
            raise FileNotFoundError(f"train.private_data: directory not found: {pdir}")
        if cfg.method != "synthetic_only":
            real_train = load(pdir, cfg.private_split)
        if cfg.private_split != "test":
            rt = load(pdir, "test")
            if len(rt):
                tests["real_test"] = rt
        if real_train is not None:
            leaked = set(real_train.identity) & set(rt.identity) if cfg.private_split != "test" else set()
            if leaked:
                raise ValueError(f"train.private_data: identities in both {cfg.private_split} and test: {sorted(leaked)[:5]}")
    summary = run_training(cfg, syn_train, real_train, tests, Path(out_dir), seed=seed, progress=progress)
    summary.pop("_state", None)
    return summary
