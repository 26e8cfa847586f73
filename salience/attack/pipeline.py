"""``salience attack`` end to end: prediction robustness, concentration vs vulnerability,
explanation fragility, targeted manipulation and detection, as one ``attack.json`` report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from salience._guard import model_guard
from salience.attack import detection, prediction
from salience.attack._maps import DIFFERENTIABLE, surrogate_for
from salience.attack._measures import default_k, distances
from salience.attack._pixel import PixelModel, input_space_eps
from salience.attack._stats import rank_correlation
from salience.attack.fragility import FragilityConfig, fragility_attack, random_sign
from salience.attack.manipulation import ManipulationConfig, manipulate, smoothed_map
from salience.jsonsafe import finite
from salience.methods import build_method, with_model_layer
from salience.methods.spec import parse_method_spec
from salience.models.layers import CamLayer, resolve_layer

Progress = Callable[[str, int], None]  # (stage, units done)


@dataclass(frozen=True)
class AttackConfig:
    attacks: tuple[str, ...] = ("pgd", "fgsm")  # the first is the primary (bisection, detection)
    eps: tuple[float, ...] | None = None  # pixel space; None: the primary norm's default
    steps: int = 10
    bisection: int = 6
    fragility: FragilityConfig = field(default_factory=FragilityConfig)
    manipulation: ManipulationConfig = field(default_factory=ManipulationConfig)
    manipulate: bool = True
    manipulation_methods: tuple[str, ...] | None = None  # None: every method with its own map
    detect_eps: float = 2 / 255
    examples: int = 4
    seed: int = 0
    batch: int = 8  # images per chunk of the attacks on maps (memory)


@dataclass
class Batch:
    """What is attacked: pixels, the label each attack keeps or flips, and class names."""

    pixels: torch.Tensor  # [N, C, H, W] in 0..1
    labels: torch.Tensor  # reference label: the true label, else the clean prediction
    correct: torch.Tensor  # bool: the clean prediction equals the reference label
    class_names: Sequence[str]

    def name(self, index: int) -> str:
        names = self.class_names
        return names[index] if 0 <= index < len(names) else f"class {index}"


def units(config: AttackConfig, methods: Sequence[str], n: int) -> dict[str, int]:
    """Progress units per stage (one unit: one attack pass over the batch or one step)."""
    eps = len(config.eps or prediction.DEFAULT_EPS["linf"])
    chunks = -(-n // config.batch)
    out = {
        "prediction": len(config.attacks) * eps + config.bisection + 1,
        "maps": len(methods) * chunks * (config.fragility.steps + 1),
    }
    if config.manipulate:
        out["manipulation"] = 2 * sum(manipulated(config, m) for m in methods)
    return out


def manipulated(config: AttackConfig, method: str) -> bool:
    """Whether the targeted manipulation runs on ``method`` (a name or a spec)."""
    name = parse_method_spec(method)[0]
    chosen = config.manipulation_methods
    return config.manipulate and name in DIFFERENTIABLE and (chosen is None or name in chosen)


def _mean(v: np.ndarray) -> float | None:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else None


def _per_class(batch: Batch, rows: np.ndarray, values: dict[str, np.ndarray]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    labels = batch.labels.cpu().numpy()
    for c in sorted(set(labels[rows].tolist())):
        sel = rows & (labels == c)
        out[batch.name(int(c))] = {
            "n": int(sel.sum()),
            **{k: _mean(v[sel]) for k, v in values.items()},
        }
    return out


class AttackRun:
    """One attack report over one batch; each stage fills part of :attr:`report`."""

    def __init__(
        self,
        pm: PixelModel,
        batch: Batch,
        methods: Sequence[str],
        config: AttackConfig,
        *,
        cam_layer: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.pm, self.batch, self.config = pm, batch, config
        # each method's parameters, with the model's CAM layer filled in where it takes one
        self.specs = {
            name: with_model_layer(name, params, cam_layer)
            for name, params in map(parse_method_spec, methods)
        }
        self.progress = progress or (lambda stage, n: None)
        self.report: dict[str, Any] = {}
        self.examples: dict[str, Any] = {}
        self.clean_maps: dict[str, torch.Tensor] = {}
        self.preds = pm.predict(batch.pixels).argmax(1)

    # --- helpers -------------------------------------------------------------------------
    def chunks(self) -> list[slice]:
        """Slices of ``config.batch`` images: attacks through maps keep double-backward graphs."""
        size, n = self.config.batch, len(self.batch.pixels)
        return [slice(i, i + size) for i in range(0, n, size)]

    def real_map(self, method: str, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        m = build_method(method, **self.specs[method])
        return m.explain(self.pm.model, self.pm.to_input(pixels), labels, output=self.pm.output)

    def layer(self, method: str) -> CamLayer | None:
        if surrogate_for(method) != "gradcam":
            return None
        x = self.pm.to_input(self.batch.pixels[:1])
        return resolve_layer(self.pm.model, self.specs[method].get("layer"), x)

    def budget(self, eps: float) -> dict[str, Any]:
        std = self.pm.std.flatten().tolist()
        return {"pixel": eps, "pixel_255": eps * 255, "input": input_space_eps(eps, std)}

    # --- stages --------------------------------------------------------------------------
    def predictions(self) -> None:
        cfg, b = self.config, self.batch
        rows = b.correct.cpu().numpy()
        pixels, labels = b.pixels[b.correct], b.labels[b.correct]
        attacks: dict[str, Any] = {}
        self.sweeps: dict[str, prediction.BudgetSweep] = {}
        for name in cfg.attacks:
            spec = prediction.get_attack(name)
            eps = cfg.eps or prediction.DEFAULT_EPS[spec.norm]
            sw = prediction.sweep(
                self.pm,
                pixels,
                labels,
                spec,
                eps,
                steps=cfg.steps,
                seed=cfg.seed,
                progress=lambda n: self.progress("prediction", n),
            )
            self.sweeps[name] = sw
            hits = sw.success.cpu().numpy()
            full = np.zeros((len(eps), len(rows)), bool)
            full[:, rows] = hits
            attacks[name] = {
                "norm": spec.norm,
                "eps": sw.eps,
                "budgets": [self.budget(e) for e in sw.eps],
                "success_rate": [float(h.mean()) if len(h) else None for h in hits],
                "per_class": _per_class(
                    b, rows, {f"success_rate@{e:.5g}": full[k] for k, e in enumerate(sw.eps)}
                ),
            }
        primary = cfg.attacks[0]
        spec = prediction.get_attack(primary)
        high = 4 * max(attacks[primary]["eps"])
        low, top = prediction.bracket(self.sweeps[primary], high)  # bisect between swept budgets
        smallest = prediction.smallest_budget(
            self.pm,
            pixels,
            labels,
            spec,
            top,
            low=low,
            steps=cfg.steps,
            iterations=cfg.bisection,
            progress=lambda n: self.progress("prediction", n),
        ).numpy()
        self.smallest = np.full(len(rows), np.nan)
        self.smallest[rows] = smallest
        solved = smallest[np.isfinite(smallest)]
        self.report["prediction"] = {
            "attack": primary,
            "norm": spec.norm,
            "eps": attacks[primary]["eps"],
            "success_rate": attacks[primary]["success_rate"],
            "budgets": attacks[primary]["budgets"],
            "attacked": int(rows.sum()),
            "steps": cfg.steps,
            "attacks": attacks,
            "smallest_eps": {
                "values": [finite(v) for v in self.smallest],
                "median": float(np.median(solved)) if len(solved) else None,
                "failed_at": high,
                "resolution": float((top - low).max()) / 2**cfg.bisection if len(low) else None,
            },
        }

    def clean_map(self, method: str) -> torch.Tensor:
        """The method's maps of the clean images for their predicted classes (computed once)."""
        if method not in self.clean_maps:
            self.clean_maps[method] = self.real_map(method, self.batch.pixels, self.preds)
        return self.clean_maps[method]

    def fragility(self, method: str) -> None:
        cfg, b = self.config.fragility, self.batch
        clean = self.clean_map(method)
        k = default_k(int(clean.shape[-2]), int(clean.shape[-1]), cfg.k)
        layer = self.layer(method)
        noise = random_sign(b.pixels, cfg.eps, cfg.seed)
        parts = [
            fragility_attack(
                self.pm,
                b.pixels[sl],
                self.preds[sl],
                clean[sl],
                method,
                cfg,
                k,
                layer,
                progress=lambda: self.progress("maps", 1),
                start=noise[sl],
            )
            for sl in self.chunks()
        ]
        adv = torch.cat([a for a, _ in parts])
        moved = torch.cat([m for _, m in parts])
        kept = (self.pm.predict(adv).argmax(1) == self.preds).cpu().numpy()
        kept_random = (self.pm.predict(noise).argmax(1) == self.preds).cpu().numpy()
        d_adv = distances(clean, self.real_map(method, adv, self.preds), k)
        d_rand = distances(clean, self.real_map(method, noise, self.preds), k)
        values = {f"{key}_attack": v for key, v in d_adv.items()}
        values.update({f"{key}_random": v for key, v in d_rand.items()})
        every = np.ones(len(kept), bool)
        entry: dict[str, Any] = {
            key: _mean(v[kept]) for key, v in values.items() if key.endswith("_attack")
        }
        entry.update({key: _mean(v) for key, v in values.items() if key.endswith("_random")})
        entry.update(
            {
                "labels_kept": float(kept.mean()),
                "labels_kept_random": float(kept_random.mean()),
                "moved": float(moved.float().mean()),
                "attacked_through": surrogate_for(method),
                "k": k,
                "budget": self.budget(cfg.eps),
                "per_class": _per_class(b, every, values),
            }
        )
        self.report.setdefault("methods", {})[method] = entry
        self.examples.setdefault("fragility", {})[method] = (adv, noise)

    def concentration(self, method: str) -> None:
        maps = self.clean_map(method).cpu().numpy()
        feats = detection.saliency_features(maps)
        names = dict(zip(detection.SALIENCY_FEATURES, feats.T, strict=True))
        seed = self.config.seed
        self.report.setdefault("concentration", {})[method] = {
            s: rank_correlation(names[s], self.smallest, seed)
            for s in ("gini", "entropy", "peak_share")
        }

    def detect(self, method: str) -> None:
        cfg, b = self.config, self.batch
        sweep = self.sweeps[cfg.attacks[0]]
        eps = min(sweep.eps, key=lambda e: abs(e - cfg.detect_eps))
        adv = sweep.adversarial[sweep.eps.index(eps)]
        clean_px = b.pixels[b.correct]
        clean_maps = self.clean_map(method)[b.correct].cpu().numpy()
        adv_pred = self.pm.predict(adv).argmax(1)
        adv_maps = self.real_map(method, adv, adv_pred).cpu().numpy()
        seed = cfg.seed
        self.report.setdefault("detection", {})[method] = {
            "attack": cfg.attacks[0],
            "budget": self.budget(eps),
            "saliency": detection.detector_auc(
                detection.saliency_features(clean_maps), detection.saliency_features(adv_maps), seed
            ),
            "softmax": detection.detector_auc(
                detection.softmax_features(self.pm.predict(clean_px).cpu().numpy()),
                detection.softmax_features(self.pm.predict(adv).cpu().numpy()),
                seed,
            ),
            "features": {
                "saliency": list(detection.SALIENCY_FEATURES),
                "softmax": list(detection.SOFTMAX_FEATURES),
            },
        }

    def manipulation(self, method: str) -> None:
        cfg, b, layer = self.config.manipulation, self.batch, self.layer(method)
        n = len(b.pixels)
        if n < 2:
            return
        order = torch.roll(torch.arange(n), 1)
        start = torch.softmax(self.pm.predict(b.pixels), 1)
        out: dict[str, Any] = {
            "target": "the clean map of the next image in the batch",
            "budget": self.budget(cfg.eps),
            "steps": cfg.steps,
        }
        for key, beta, explain in (
            ("real", cfg.beta, lambda p: self.real_map(method, p, self.preds)),
            (
                "smoothed",
                cfg.defence_beta,
                lambda p: smoothed_map(self.pm, p, self.preds, method, cfg.defence_beta, layer),
            ),
        ):
            clean = explain(b.pixels)
            target = clean[order]
            adv = torch.cat(
                [
                    manipulate(
                        self.pm, b.pixels[sl], self.preds[sl], target[sl], method, cfg, beta, layer
                    )
                    for sl in self.chunks()
                ]
            )
            after = explain(adv)
            probs = torch.softmax(self.pm.predict(adv), 1)
            values = {
                "similarity_before": distances(target, clean, 1)["spearman"],
                "similarity_after": distances(target, after, 1)["spearman"],
                "output_change": (probs - start).abs().amax(1).cpu().numpy(),
                "labels_kept": (probs.argmax(1) == self.preds).float().cpu().numpy(),
            }
            out[key] = {
                "beta": beta,
                **{name: _mean(v) for name, v in values.items()},
                "per_class": _per_class(b, np.ones(n, bool), values),
            }
            self.progress("manipulation", 1)
        self.report.setdefault("manipulation", {})[method] = out

    def run(self, model_name: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        b = self.batch
        self.report.update(
            {
                "model": model_name,
                "samples": len(b.pixels),
                "correct": int(b.correct.sum()),
                "config": asdict(self.config),
            }
        )
        with model_guard(self.pm.model):
            self.predictions()
            for method in self.specs:
                self.fragility(method)
                self.concentration(method)
                self.detect(method)
                if manipulated(self.config, method):
                    self.manipulation(method)
        self.report["seconds"] = time.perf_counter() - t0
        return self.report
