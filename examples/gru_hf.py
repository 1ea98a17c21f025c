"""Train a GRU with Hessian-free optimisation and structural damping, on your own batches.

The task: echo a stream of random +-1 inputs two steps late (``y_t = x_{t-2}``), squared loss.
Runs in a few seconds on a CPU::

    python examples/gru_hf.py
"""
import torch
from torch import nn

from hfrnn import HessianFree, HFOptions


class GRUNet(nn.Module):
    """A GRU (Cho et al. 2014) and a linear readout, time-major.

    ``forward`` returns the output pre-activations ``s`` and, for structural damping, the hidden
    states ``h``. They are not the pre-activations of a squashing function, so their distance is
    the squared one: ``hidden_nonlinearity = "linear"`` (a tanh RNN would return its
    pre-activations and say ``"tanh"``). Written out step by step rather than with ``nn.GRU``,
    whose forward-mode derivatives (used by the curvature products) are ~30x slower.
    """

    hidden_nonlinearity = "linear"

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(n_in, 3 * hidden)   # reset, update, candidate: input terms
        self.rec = nn.Linear(hidden, 3 * hidden)  # ... and recurrent terms
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x):  # x [T, B, n_in]
        h = x.new_zeros(x.shape[1], self.hidden)
        hs = []
        for a in self.inp(x).unbind(0):
            ar, az, an = a.chunk(3, -1)
            hr, hz, hn = self.rec(h).chunk(3, -1)
            r, z = torch.sigmoid(ar + hr), torch.sigmoid(az + hz)
            h = (1 - z) * torch.tanh(an + r * hn) + z * h
            hs.append(h)
        h = torch.stack(hs)
        return self.out(h), h  # (s [T, B, n_out], hidden states [T, B, hidden])


def echo_batch(n: int, T: int, delay: int, generator: torch.Generator):
    x = torch.randint(0, 2, (T, n, 1), generator=generator).float() * 2 - 1
    y = torch.zeros_like(x)
    y[delay:] = x[:-delay]
    mask = torch.zeros(T, n)
    mask[delay:] = 1.0  # score only the steps that have a target
    return x, y, mask


def main(iterations: int = 10, seed: int = 0, verbose: bool = True) -> list[float]:
    """Returns the test loss (per sequence) before training and after each iteration."""
    torch.manual_seed(seed)
    T, delay = 8, 2
    g = torch.Generator().manual_seed(seed)
    model = GRUNet(1, 8, 1)
    opts = HFOptions()
    opts.cg.max_iters = 30  # a small problem needs few CG steps
    opt = HessianFree(model, loss="squared", options=opts)
    test = echo_batch(500, T, delay, g)

    def test_loss() -> float:
        with torch.no_grad():
            s, _ = model(test[0])
        return float((0.5 * (s - test[1]).pow(2).sum(-1) * test[2]).sum() / test[2].shape[1])

    losses = [test_loss()]
    for it in range(iterations):
        info = opt.step(echo_batch(300, T, delay, g), echo_batch(100, T, delay, g))  # gradient, curvature batch
        losses.append(test_loss())
        if verbose:
            print(f"it {it + 1:2d}  train {info.loss_after:.4f}  test {losses[-1]:.4f}  lambda {info.damping:.3g}  "
                  f"rho {info.rho if info.rho is None else round(info.rho, 3)}  cg {info.cg_iters}")
    return losses


if __name__ == "__main__":
    main()
