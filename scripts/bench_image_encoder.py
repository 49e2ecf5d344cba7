"""Compare StepEmbedder image encoders on synthetic MiniGrid-like symbolic grids (CPU, about 1 minute).

    python scripts/bench_image_encoder.py                    # linear, cells, conv; all tasks; 1 thread
    python scripts/bench_image_encoder.py --encoders cells cells-1layer cells-linear cells-pool  # ablations
    python scripts/bench_image_encoder.py --evals 100 200 --seed 1

Grids are 7x7x3 uint8 (object 0..10, colour 0..5, state 0..2; rows top to bottom, the agent below
the middle of the last row looking up), flattened channels last like MiniGrid's egocentric view.
Each encoder maps a grid to one token of width ``--hidden`` (a StepEmbedder with only the image
modality); a shared-size head (LayerNorm, Linear(D, 2D), GELU, Linear) reads the token, standing in
for the backbone. Tasks (fresh grids every step; accuracy on 2048 held-out grids after each of
``--evals`` steps):

* ``ahead``:  is the goal (id 8) in the cell directly ahead (row 5, column 3)? distractor goals elsewhere
* ``patch``:  is a goal anywhere in the 3x3 patch in front (rows 3..5, columns 2..4)?
* ``column``: which column (0..6) holds the one key (id 5)?  (7 classes)
* ``conj``:   is there a blue (colour 2) key? other keys have other colours, other objects may be blue

Encoders: ``linear`` (pixels / 255, one Linear; the default), ``cells``, ``conv`` (see
mouse.models.embedding.image) and three ablations of ``cells``: ``cells-1layer`` (one GELU, no per-cell
Linear), ``cells-linear`` (no nonlinearity: a linear map of the one-hot grid) and ``cells-pool`` (the
mean over cells instead of flatten + project).
Timing: forward of the embedder (validation included) on one batch of ``--time-batch`` x
``--time-seq`` steps, and forward + backward; median and p25/p75 over ``--reps`` runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from tensordict import TensorDict
from torch import nn

from mouse.models.embedding import StepEmbedder
from mouse.models.embedding.image import GridCellEncoder

H = W = 7
C = 3
GOAL, KEY, BLUE = 8, 5, 2
AHEAD = (5, 3)
PATCH_ROWS, PATCH_COLS = range(3, 6), range(2, 5)
TASKS = {"ahead": 2, "patch": 2, "column": 7, "conj": 2}  # name -> number of classes
ENCODERS = ("linear", "cells", "conv", "cells-1layer", "cells-linear", "cells-pool")

# Object frequencies of the random background (unseen, empty, wall, floor, door, key, ball, box, -, lava).
_OBJ_P = torch.tensor([0.10, 0.50, 0.20, 0.02, 0.04, 0.03, 0.04, 0.04, 0.0, 0.03])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", nargs="+", choices=ENCODERS, default=["linear", "cells", "conv"])
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--hidden", type=int, default=128, help="token width D (conf/train.yaml default)")
    p.add_argument("--cell-dim", type=int, default=32)
    p.add_argument("--evals", type=int, nargs="+", default=[50, 100, 300], help="steps to evaluate at")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-batch", type=int, default=16)
    p.add_argument("--time-seq", type=int, default=64)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args()


# ------------------------------------------------------------------------------------------- data
def background(n: int, g: torch.Generator) -> torch.Tensor:
    """``[n, H, W, C]`` int64 random grids without goals or keys."""
    obj = torch.multinomial(_OBJ_P, n * H * W, replacement=True, generator=g).view(n, H, W)
    obj[obj == KEY] = 1  # keys are placed by the tasks
    colour = torch.randint(0, 6, (n, H, W), generator=g)
    colour[obj <= 3] = 0
    colour[obj == 2] = 5  # grey walls
    state = torch.randint(0, 3, (n, H, W), generator=g) * (obj == 4)
    return torch.stack((obj, colour, state), dim=-1)


def _put(grid: torch.Tensor, rows: torch.Tensor, r: torch.Tensor, c: torch.Tensor, cell) -> None:
    grid[rows, r, c] = torch.as_tensor(cell, dtype=grid.dtype)


def make_batch(task: str, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(grids [n, H * W * C] uint8, labels [n] int64)`` for ``task``."""
    grid = background(n, g)
    idx = torch.arange(n)
    rand = lambda k: torch.randint(0, k, (n,), generator=g)  # noqa: E731
    coin = lambda p: torch.rand(n, generator=g) < p  # noqa: E731
    goal = (GOAL, 1, 0)
    if task == "ahead":
        label = coin(0.5)
        d = coin(0.5)
        dr, dc = rand(H), rand(W)
        d &= ~((dr == AHEAD[0]) & (dc == AHEAD[1]))
        _put(grid, idx[d], dr[d], dc[d], goal)
        ar, ac = torch.full((n,), AHEAD[0]), torch.full((n,), AHEAD[1])
        _put(grid, idx[label], ar[label], ac[label], goal)
    elif task == "patch":
        label = coin(0.5)
        pr, pc = rand(3) + PATCH_ROWS.start, rand(3) + PATCH_COLS.start
        _put(grid, idx[label], pr[label], pc[label], goal)
        outside = torch.tensor(
            [(r, c) for r in range(H) for c in range(W) if r not in PATCH_ROWS or c not in PATCH_COLS]
        )
        o = outside[rand(len(outside))]
        d = coin(0.7)
        _put(grid, idx[d], o[d, 0], o[d, 1], goal)
    elif task == "column":
        r, c = rand(H), rand(W)
        _put(grid, idx, r, c, (KEY, 0, 0))
        grid[idx, r, c, 1] = rand(6)
        label = c
    elif task == "conj":
        label = coin(0.5)
        for k in range(3):  # up to three keys, none blue
            on = coin(0.7) if k else torch.ones(n, dtype=torch.bool)
            r, c = rand(H), rand(W)
            colour = (rand(5) + BLUE + 1) % 6  # any colour but blue
            grid[idx[on], r[on], c[on]] = torch.stack(
                (torch.full((n,), KEY), colour, torch.zeros(n, dtype=torch.long)), -1
            )[on]
        r, c = rand(H), rand(W)
        _put(grid, idx[label], r[label], c[label], (KEY, BLUE, 0))  # the one blue key of positives
    else:
        raise ValueError(f"unknown task {task!r}; tasks: {list(TASKS)}")
    if task in ("ahead", "patch", "conj"):  # recompute the label from the grid (placements may overlap)
        obj, colour = grid[..., 0], grid[..., 1]
        if task == "ahead":
            label = obj[:, AHEAD[0], AHEAD[1]] == GOAL
        elif task == "patch":
            label = (
                (obj[:, PATCH_ROWS.start : PATCH_ROWS.stop, PATCH_COLS.start : PATCH_COLS.stop] == GOAL)
                .flatten(1)
                .any(1)
            )
        else:
            label = ((obj == KEY) & (colour == BLUE)).flatten(1).any(1)
    return grid.reshape(n, -1).to(torch.uint8), label.long()


# --------------------------------------------------------------------------------------- encoders
class CellsLinear(GridCellEncoder):
    """Ablation: value + position vectors flattened and projected (a linear map of the one-hot grid)."""

    def forward(self, pix: torch.Tensor) -> torch.Tensor:
        return self.proj((self.cell_values(pix) + self.pos_emb).flatten(1)).view(*pix.shape[:-1], -1)


class Cells1Layer(GridCellEncoder):
    """Ablation: one GELU on value + position vectors (no per-cell Linear), flattened and projected."""

    def forward(self, pix: torch.Tensor) -> torch.Tensor:
        cells = F.gelu(self.cell_values(pix) + self.pos_emb)
        return self.proj(cells.flatten(1)).view(*pix.shape[:-1], -1)


class CellsPool(GridCellEncoder):
    """Ablation: the per-cell MLP, then the mean over cells (position only via pos_emb)."""

    def __init__(self, shape, vocab, cell_dim, out_dim):
        super().__init__(shape, vocab, cell_dim, out_dim)
        self.proj = nn.Linear(cell_dim, out_dim)

    def forward(self, pix: torch.Tensor) -> torch.Tensor:
        cells = F.gelu(self.cell_mlp(F.gelu(self.cell_values(pix) + self.pos_emb)))
        return self.proj(cells.mean(1)).view(*pix.shape[:-1], -1)


def make_embedder(name: str, hidden: int, cell_dim: int) -> StepEmbedder:
    ablation = {"cells-1layer": Cells1Layer, "cells-linear": CellsLinear, "cells-pool": CellsPool}.get(name)
    lib = "cells" if ablation is not None else name
    emb = StepEmbedder(
        hidden,
        max_num_actions=1,
        include_action_token=False,
        include_reward_token=False,
        include_done_token=False,
        include_time_token=False,
        include_obs_image=True,
        max_num_obs_image=H * W * C,
        obs_image_shape=[H, W, C],
        obs_image_encoder=lib,
        obs_image_vocab=16,
        obs_image_cell_dim=cell_dim,
    )
    if ablation is not None:
        emb.obs_image_enc = ablation([H, W, C], 16, cell_dim, hidden)
        emb.obs_image_enc.reset_parameters(0.02)
    return emb


def stream(pix: torch.Tensor) -> TensorDict:
    return TensorDict({"obs_image": pix.unsqueeze(1)}, batch_size=[pix.shape[0], 1])


# ------------------------------------------------------------------------------------ train / time
def train_eval(name: str, task: str, args: argparse.Namespace) -> tuple[list[float], int]:
    """Held-out accuracy after each of ``args.evals`` training steps, and the embedder's size."""
    torch.manual_seed(args.seed)
    emb = make_embedder(name, args.hidden, args.cell_dim)
    D, K = args.hidden, TASKS[task]
    head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 2 * D), nn.GELU(), nn.Linear(2 * D, K))
    params = [*emb.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    test_pix, test_y = make_batch(task, 2048, torch.Generator().manual_seed(10_000 + args.seed))
    accs = []
    for step in range(1, max(args.evals) + 1):
        pix, y = make_batch(task, args.batch, g)
        loss = F.cross_entropy(head(emb(stream(pix))[0][:, 0]), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in args.evals:
            with torch.no_grad():
                pred = head(emb(stream(test_pix))[0][:, 0]).argmax(-1)
            accs.append((pred == test_y).float().mean().item())
    return accs, sum(p.numel() for p in emb.parameters())


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    """(median, p25, p75)."""
    q = statistics.quantiles(xs, n=4)
    return q[1], q[0], q[2]


def time_encoder(name: str, args: argparse.Namespace) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Milliseconds of the embedder's forward (no grad) and forward + backward on one batch."""
    emb = make_embedder(name, args.hidden, args.cell_dim)
    g = torch.Generator().manual_seed(0)
    n = args.time_batch * args.time_seq
    pix = make_batch("patch", n, g)[0].view(args.time_batch, args.time_seq, -1)
    td = TensorDict({"obs_image": pix}, batch_size=[args.time_batch, args.time_seq])
    fwd, fwd_bwd = [], []
    for i in range(args.reps + 3):
        t0 = time.perf_counter()
        with torch.no_grad():
            emb(td)
        t1 = time.perf_counter()
        emb(td)[0].sum().backward()
        t2 = time.perf_counter()
        if i >= 3:
            fwd.append(1e3 * (t1 - t0))
            fwd_bwd.append(1e3 * (t2 - t1))
    return quartiles(fwd), quartiles(fwd_bwd)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    evals = "/".join(map(str, args.evals))
    print(f"D={args.hidden} cell_dim={args.cell_dim} batch={args.batch} lr={args.lr}")
    print(f"held-out accuracy after {evals} steps; chance: ", end="")
    print(", ".join(f"{t} {1 / TASKS[t]:.2f}" for t in args.tasks))
    width = 6 * len(args.evals) - 1
    print(f"{'encoder':<12} {'params':>7}  " + "  ".join(f"{t:^{width}}" for t in args.tasks))
    for name in args.encoders:
        cells = []
        for task in args.tasks:
            accs, n_params = train_eval(name, task, args)
            cells.append("/".join(f"{a:.3f}".removeprefix("0") for a in accs))
        print(f"{name:<12} {n_params:>7}  " + "  ".join(f"{c:^{width}}" for c in cells), flush=True)
    print(f"\ntiming: one batch of {args.time_batch}x{args.time_seq} steps, ms, median [p25, p75]")
    for name in args.encoders:
        (m, lo, hi), (bm, blo, bhi) = time_encoder(name, args)
        fb = f"forward+backward {bm:7.2f} [{blo:.2f}, {bhi:.2f}]"
        print(f"{name:<12} forward {m:7.2f} [{lo:.2f}, {hi:.2f}]   {fb}", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
