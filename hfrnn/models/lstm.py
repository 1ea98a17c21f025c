"""The forget-gate LSTM of Gers, Schmidhuber & Cummins (1999), the paper's section 6 comparison.

``blocks`` memory blocks of ``cells_per_block`` cells (``M = blocks * cells_per_block`` cells in
all, block-major: cell ``m = j * S + k`` is cell ``k`` of block ``j``). The cells of a block share
its input gate ``i``, forget gate ``f`` and output gate ``o``; every cell has its own cell input
``z``. With ``y_{i-1}`` ``[B, M]`` the cell outputs of the previous step (zero before the first)::

    i_j = sigma(W_ix x + W_iy y_{i-1} + b_i [+ sum_k p_i[j,k] c_{i-1}[j,k]])   gates [B, blocks]
    f_j = sigma(W_fx x + W_fy y_{i-1} + b_f [+ sum_k p_f[j,k] c_{i-1}[j,k]])
    z   = tanh(W_cx x + W_cy y_{i-1} + b_c)                                    cell input [B, M]
    c[j,k] = f_j c_{i-1}[j,k] + i_j z[j,k]                                     cell state [B, M]
    o_j = sigma(W_ox x + W_oy y_{i-1} + b_o [+ sum_k p_o[j,k] c[j,k]])
    y[j,k] = o_j tanh(c[j,k])                                                  cell output [B, M]
    s   = W_yc y + b_y                                                         output pre-activations

The initial state is ``c_0 = y_0 = 0`` (the gate and cell-input biases play the role of the
RNN's ``b_init``). The squashing functions are tanh for both the cell input and the cell output
(Gers et al. use scaled logistics with the same ranges, [-2, 2] and [-1, 1]).

Peepholes (Gers, Schraudolph & Schmidhuber 2002) are optional. A gate is one unit per block, so
its peephole input is a weighted *sum* over the block's cell states with one weight per cell
(``p`` ``[3, blocks, cells_per_block]``, rows input, forget, output); input and forget gates see
``c_{i-1}``, the output gate sees the new ``c``. They add ``3 M`` parameters.

What the curvature backends see: ``forward`` returns ``(s, t)`` with ``t = c`` the cell states
``[T, B, M]``. The generic backend's structural-damping term uses ``(D o e)'' = 1 - tanh(t)^2``,
i.e. it penalises changes of the squashed cell states ``tanh(c)`` (the cell outputs before the
output gate), the LSTM's analogue of the RNN's ``h = tanh(t)``.

Initialisation (Gers et al.): weights uniform in ``[-init_scale, init_scale]`` (0.1); biases zero
except the forget gates', ``forget_bias`` (1.0), so that cells remember by default.

Parameter counts, :func:`count_parameters` against the paper's 300-unit tanh RNN
(``hfrnn.models.rnn.RNN``, ``H (n + H + 1) + H + K (H + 1)``), for the paper's sizes
(30 blocks x 10 cells, no peepholes; measured by instantiating both modules)::

    task              n_in = n_out   RNN(300)   LSTM(30x10)   LSTM + peepholes
    bouncing balls    225            225,825    272,865       273,765
    MIDI              128            167,528    205,838       206,738
    speech (MFCC)      39            114,039    144,339       145,239

The formula is ``(M + 3 blocks)(n_in + M + 1) + n_out (M + 1) [+ 3 M]``: the LSTM has "slightly
more" (+21%, +23%, +27%): the difference is the gates'
``3 blocks (n_in + M + 1)`` weights less the RNN's ``H`` initial-state biases.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

PARAM_NAMES = ("W_gx", "W_gy", "b_g", "W_cx", "W_cy", "b_c", "W_yc", "b_y")  # + "peep" with peepholes


def count_parameters(n_in: int, n_out: int, *, blocks: int = 30, cells_per_block: int = 10,
                     peepholes: bool = False) -> int:
    """Number of parameters of :class:`LSTM` with these sizes.

    ``(M + 3 blocks)(n_in + M + 1)`` gate and cell-input weights and biases, ``n_out (M + 1)``
    output weights and biases, and ``3 M`` peephole weights if enabled (``M = blocks * cells``).
    """
    M = blocks * cells_per_block
    return (M + 3 * blocks) * (n_in + M + 1) + n_out * (M + 1) + (3 * M if peepholes else 0)


def lstm_step(a: Tensor, y_prev: Tensor | None, c_prev: Tensor | None, W_y_t: Tensor,
              peep: Tensor | None, blocks: int) -> tuple[Tensor, Tensor, Tensor]:
    """One time step of the module docstring's equations.

    Args:
        a: the input drive ``W_x x_i + b`` ``[B, 3 blocks + M]`` (gates first, then cell inputs).
        y_prev, c_prev: previous cell outputs and states ``[B, M]``, or None at the first step
            (zero state: skipping the product keeps the first step exact and cheap).
        W_y_t: recurrent weights, transposed: ``[W_gy; W_cy]^T`` ``[M, 3 blocks + M]``.
        peep: peephole weights ``[3, blocks, M / blocks]`` or None.
        blocks: number of memory blocks.
    Returns:
        ``(c, y, gates)``: cell states and outputs ``[B, M]``; gates ``[B, 3, blocks]``
        (input, forget, output), each shared by the ``M / blocks`` cells of its block.
    """
    B = a.shape[0]
    z = a if y_prev is None else a + y_prev @ W_y_t
    zi, zf, zo, zc = z.split([blocks, blocks, blocks, z.shape[1] - 3 * blocks], dim=1)
    if peep is not None and c_prev is not None:
        cb = c_prev.view(B, blocks, -1)
        zi = zi + (cb * peep[0]).sum(-1)
        zf = zf + (cb * peep[1]).sum(-1)
    i, f = torch.sigmoid(zi), torch.sigmoid(zf)
    # Gates are [B, blocks]; unsqueeze(-1) broadcasts each over its block's cells.
    cb = i.unsqueeze(-1) * torch.tanh(zc).view(B, blocks, -1)
    if c_prev is not None:
        cb = cb + f.unsqueeze(-1) * c_prev.view(B, blocks, -1)
    if peep is not None:
        zo = zo + (cb * peep[2]).sum(-1)
    o = torch.sigmoid(zo)
    y = o.unsqueeze(-1) * torch.tanh(cb)
    return cb.reshape(B, -1), y.reshape(B, -1), torch.stack([i, f, o], dim=1)


def unroll(p: dict[str, Tensor], x: Tensor, blocks: int) -> tuple[Tensor, Tensor]:
    """Run the LSTM over a batch, out of place (autograd and ``torch.func`` trace it).

    Args:
        p: parameters by name: W_gx ``[3 blocks, n]``, W_gy ``[3 blocks, M]``, b_g ``[3 blocks]``
            (rows: input gates, forget gates, output gates), W_cx ``[M, n]``, W_cy ``[M, M]``,
            b_c ``[M]``, W_yc ``[K, M]``, b_y ``[K]``, optionally peep ``[3, blocks, M / blocks]``.
        x: inputs ``[T, B, n]``.
        blocks: number of memory blocks.
    Returns:
        ``(s, c)``: output pre-activations ``[T, B, K]`` and cell states ``[T, B, M]``.
    """
    # The input drive of all steps and all gates in one product; the loop keeps the recurrence.
    W_x = torch.cat([p["W_gx"], p["W_cx"]])
    b = torch.cat([p["b_g"], p["b_c"]])
    # unbind(0) views, not a[i]: indexing inside an autograd loop makes backward cost grow like T^2.
    drive = (x @ W_x.t() + b).unbind(0)
    W_y_t = torch.cat([p["W_gy"], p["W_cy"]]).t()
    peep = p.get("peep")
    cs, ys = [], []
    y, c = None, None
    for a in drive:
        c, y, _ = lstm_step(a, y, c, W_y_t, peep, blocks)
        cs.append(c)
        ys.append(y)
    s = torch.stack(ys) @ p["W_yc"].t() + p["b_y"]
    return s, torch.stack(cs)


class LSTM(nn.Module):
    """Forget-gate LSTM with shared per-block gates (see the module docstring).

    Args:
        n_in, n_out: input and output widths.
        blocks: memory blocks (30 in the paper).
        cells_per_block: cells sharing one set of gates (10 in the paper).
        forget_bias: initial forget-gate bias (positive: remember by default).
        peepholes: add per-cell peephole weights from the cell states to the block's gates.
        init_scale: weights start uniform in ``[-init_scale, init_scale]``.
        generator: the source of the initial weights (seeded by the caller).
    """

    hidden_nonlinearity = "tanh"  # what the structural term assumes of t (here tanh of the cell state)

    def __init__(self, n_in: int, n_out: int, *, blocks: int = 30, cells_per_block: int = 10,
                 forget_bias: float = 1.0, peepholes: bool = False, init_scale: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if min(n_in, n_out, blocks, cells_per_block) < 1:
            raise ValueError(f"sizes must be >= 1, got n_in={n_in} n_out={n_out} blocks={blocks} "
                             f"cells_per_block={cells_per_block}")
        self.blocks, self.cells_per_block = blocks, cells_per_block
        M, G = blocks * cells_per_block, 3 * blocks

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter((2 * torch.rand(*shape, generator=generator) - 1) * init_scale)

        self.W_gx, self.W_gy = uniform(G, n_in), uniform(G, M)
        b_g = torch.zeros(G)
        b_g[blocks:2 * blocks] = forget_bias
        self.b_g = nn.Parameter(b_g)
        self.W_cx, self.W_cy = uniform(M, n_in), uniform(M, M)
        self.b_c = nn.Parameter(torch.zeros(M))
        self.W_yc = uniform(n_out, M)
        self.b_y = nn.Parameter(torch.zeros(n_out))
        self.peep = uniform(3, blocks, cells_per_block) if peepholes else None

    @property
    def cells(self) -> int:
        return self.blocks * self.cells_per_block

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``[T, B, n]`` -> ``(s [T, B, K], c [T, B, blocks * cells_per_block])``."""
        return unroll(dict(self.named_parameters()), x, self.blocks)
