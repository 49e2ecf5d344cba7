"""Per-batch augmentation of step-record windows (`TensorDict[B, S]`), on a copy, from a seeded generator.

Everything is drawn per sequence (row b of the batch) unless said otherwise:
- reward affine: `reward <- scale * reward + shift`, scale ~ U[reward_scale_min, reward_scale_max],
  shift ~ U[reward_shift_min, reward_shift_max]; `q_star` is multiplied by the same scale (Q* is
  linear in the reward for scale > 0, so its argmax is kept) but not shifted, since the shift's effect
  on values depends on the remaining horizon.
- action permutation pi (one per sequence): `action <- pi[action]`, and the last axis of `q_star`,
  `behavior_logits`, `teacher_logits` is permuted jointly so that column pi[a] holds the old column a.
- discrete-observation permutation sigma (one per sequence): `obs_discrete <- sigma[obs_discrete]`.
- masking (per record and field, probability `mask_<field>_prob`): the field is set to the neutral
  value 0 (action 0 = "no action", reward 0, obs_discrete id 0, an all-zero continuous or image
  observation). Masked fields are also what the losses read (e.g. DQN's action), so use masking
  with losses that do not read the masked field. `done` and `time` are never changed: they carry the
  episode structure every loss relies on.
Reset records (`time == 0`) stay recognisable: their action and reward (0) are never permuted,
scaled or shifted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict

from mouse.data.spec import ACTION_WIDTH_COLUMNS

_MASKABLE = ("action", "reward", "obs_discrete", "obs_continuous", "obs_image")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (all off by default); plain-typed and flat for Hydra."""

    reward_scale_min: float = 1.0
    reward_scale_max: float = 1.0
    reward_shift_min: float = 0.0
    reward_shift_max: float = 0.0
    permute_actions: bool = False
    permute_obs_discrete: bool = False
    mask_action_prob: float = 0.0
    mask_reward_prob: float = 0.0
    mask_obs_discrete_prob: float = 0.0
    mask_obs_continuous_prob: float = 0.0
    mask_obs_image_prob: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.reward_scale_min <= self.reward_scale_max:
            raise ValueError(
                "AugmentConfig needs 0 < reward_scale_min <= reward_scale_max, got "
                f"reward_scale_min={self.reward_scale_min}, reward_scale_max={self.reward_scale_max}"
            )
        if self.reward_shift_min > self.reward_shift_max:
            raise ValueError(
                f"AugmentConfig reward_shift_min={self.reward_shift_min} > reward_shift_max={self.reward_shift_max}"
            )
        for field in _MASKABLE:
            p = getattr(self, f"mask_{field}_prob")
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"AugmentConfig.mask_{field}_prob must be in [0, 1], got {p}")

    @property
    def enabled(self) -> bool:
        """True when any augmentation is on."""
        return self != AugmentConfig()


def _random_perms(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """[batch, n] int64: one uniformly random permutation of range(n) per row."""
    return torch.argsort(torch.rand(batch, n, generator=generator), dim=-1)


def _uniform(batch: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(batch, 1, generator=generator)


def _check_ids(key: str, ids: torch.Tensor, n: int, name: str) -> None:
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= n:
        raise ValueError(
            f"augment: batch[{key!r}] holds ids in [{lo}, {hi}], expected [0, {n - 1}] ({name}={n})"
        )


def augment(
    batch: TensorDict,
    cfg: AugmentConfig,
    generator: torch.Generator,
    num_actions: int | None = None,
    num_obs_discrete: int | None = None,
) -> TensorDict:
    """Return an augmented copy of `batch` ([B, S] step records; see the module docstring).

    `num_actions` defaults to the width of `q_star`/`behavior_logits`/`teacher_logits`;
    `num_obs_discrete` (the spec's `obs_discrete_size`) is needed for `permute_obs_discrete`.
    Random draws happen on CPU from `generator`, in a fixed order, so the result is seeded.
    """
    if batch.batch_dims != 2:
        raise ValueError(f"augment expects a TensorDict[B, S], got batch_size {list(batch.batch_size)}")
    out = batch.clone()
    if not cfg.enabled:
        return out
    B = batch.batch_size[0]
    device = batch.device if batch.device is not None else torch.device("cpu")
    acting = out["time"] > 0 if "time" in out.keys() else torch.ones(batch.batch_size, dtype=torch.bool)
    acting = acting.to(device)

    if (cfg.reward_scale_min, cfg.reward_scale_max, cfg.reward_shift_min, cfg.reward_shift_max) != (
        1,
        1,
        0,
        0,
    ):
        scale = _uniform(B, cfg.reward_scale_min, cfg.reward_scale_max, generator).to(device)
        shift = _uniform(B, cfg.reward_shift_min, cfg.reward_shift_max, generator).to(device)
        if "reward" in out.keys():
            out["reward"] = torch.where(acting, out["reward"] * scale + shift, out["reward"])
        if "q_star" in out.keys():
            out["q_star"] = out["q_star"] * scale[..., None]  # -inf stays -inf (scale > 0)

    if cfg.permute_actions:
        widths = {out[k].shape[-1] for k in ACTION_WIDTH_COLUMNS if k in out.keys()}
        if num_actions is None:
            if len(widths) != 1:
                raise ValueError(
                    "augment(permute_actions=True) needs num_actions: pass it, or include one of "
                    f"{ACTION_WIDTH_COLUMNS} in the batch"
                )
            num_actions = widths.pop()
        elif widths - {num_actions}:
            raise ValueError(
                f"augment: action columns have widths {sorted(widths)} but num_actions={num_actions}"
            )
        perm = _random_perms(B, num_actions, generator).to(device)  # new id = perm[b, old id]
        if "action" in out.keys():
            _check_ids("action", out["action"], num_actions, "num_actions")
            permuted = torch.gather(perm, 1, out["action"])
            out["action"] = torch.where(acting, permuted, out["action"])
        inverse = torch.argsort(perm, dim=-1)  # new column j holds old column inverse[j]
        for key in ACTION_WIDTH_COLUMNS:
            if key in out.keys():
                index = inverse[:, None, :].expand(out[key].shape)
                out[key] = torch.gather(out[key], -1, index)

    if cfg.permute_obs_discrete and "obs_discrete" in out.keys():
        if num_obs_discrete is None:
            raise ValueError(
                "augment(permute_obs_discrete=True) needs num_obs_discrete (spec.obs_discrete_size)"
            )
        _check_ids("obs_discrete", out["obs_discrete"], num_obs_discrete, "num_obs_discrete")
        sigma = _random_perms(B, num_obs_discrete, generator).to(device)
        out["obs_discrete"] = torch.gather(sigma, 1, out["obs_discrete"])

    for field in _MASKABLE:
        p = getattr(cfg, f"mask_{field}_prob")
        if p > 0 and field in out.keys():
            mask = (torch.rand(batch.batch_size, generator=generator) < p).to(device)
            value = out[field]
            shaped = mask.reshape(*mask.shape, *([1] * (value.dim() - 2)))
            out[field] = torch.where(shaped, torch.zeros((), dtype=value.dtype, device=device), value)
    return out
