"""Could a fast convolution algorithm lift GANomaly's training past this CPU's fp32 ceiling?

Issue 3 asks for 350 GANomaly training samples/s on two cores; counted with the direct convolution's
arithmetic (``models.py --flops``) that is about 2x what these cores do on a large matrix product. A fast
algorithm does less arithmetic than the direct one, so this measures how much it could save on the
default network's two heavy layer shapes (4x4 kernels, stride 2: 64->128 at 16x16 and 128->256 at 8x8,
about 93% of the step's arithmetic, in GE, E, D and mirrored in GD).

A 4x4 stride-2 convolution is a 2x2 stride-1 convolution over a space-to-depth input (4x the
channels), which Winograd's minimal filtering algorithms apply to:

- F(2x2, 2x2): 9 multiplications per 4 outputs instead of 16 (1.78x less arithmetic). Implemented
  here in full (transforms included, checked against ``conv2d``) and timed.
- F(4x4, 2x2): 25 per 16 instead of 64 (2.56x less). Only its batched matrix products are timed: a
  bound that no implementation of it can beat, since the transforms only add time.

Forward pass only; the two backward convolutions of training have the same shapes.

Usage:
    python benchmarks/fastconv_bound.py --threads 1
    python benchmarks/fastconv_bound.py --threads 2
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from flops import best_time  # benchmarks/flops.py (the script directory is on the path)

# F(2, 2): y = A^T [(G g) * (B^T d)] with interpolation points 0, 1 and infinity, where
# B^T = [[1, -1, 0], [0, 1, 0], [0, -1, 1]] and A^T = [[1, 1, 0], [0, 1, 1]] are applied as slice
# additions in ``winograd_conv``; G transforms the kernel once.
_G = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])


def space_to_depth_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 4, 4) stride-2 kernel -> (Cout, 4*Cin, 2, 2) stride-1 kernel over the phases."""
    cout, cin = w.shape[:2]
    # w[o, c, 2s+p, 2t+q] -> w2[o, (c, p, q), s, t]
    return w.reshape(cout, cin, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(cout, 4 * cin, 2, 2)


def space_to_depth_input(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, H) -> padded by 1, split into its 4 phases, channels last: (B, H/2+1, H/2+1, 4*C), channel
    order (c, p, q) for xp[b, c, 2m+p, 2n+q]."""
    return F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2).permute(0, 2, 3, 1).contiguous()


def winograd_weight(w: torch.Tensor) -> torch.Tensor:
    """(Cout, Cin, 4, 4) kernel -> its F(2x2, 2x2) transform (9, 4*Cin, Cout), done once per step."""
    w2 = space_to_depth_weight(w)
    u = torch.einsum("ik,ockl,jl->ijco", _G, w2, _G)  # (3, 3, 4*Cin, Cout)
    return u.reshape(9, w2.shape[1], w2.shape[0])


def winograd_conv(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """4x4 stride-2 padding-1 convolution of x (B, Cin, H, H) by F(2x2, 2x2); returns (B, Cout, H/2, H/2).

    The transforms' matrices hold only 0 and +-1, so they are written as slice additions on a
    channels-last input: the nine transformed tiles then stack straight into the products' layout.
    """
    b = x.shape[0]
    xs = space_to_depth_input(x)  # (B, S, S, C'), S = 2T + 1
    t = (xs.shape[1] - 1) // 2
    c = xs.shape[3]
    ev, od, nx = slice(0, 2 * t, 2), slice(1, 2 * t + 1, 2), slice(2, 2 * t + 2, 2)
    # B^T d: rows (d0 - d1, d1, d2 - d1) of every 3-row tile; then the same on columns.
    rows = [xs[:, ev] - xs[:, od], xs[:, od], xs[:, nx] - xs[:, od]]  # 3 x (B, T, S, C')
    v = torch.stack(
        [c_ for r in rows for c_ in (r[:, :, ev] - r[:, :, od], r[:, :, od], r[:, :, nx] - r[:, :, od])]
    ).reshape(9, b * t * t, c)
    m = torch.bmm(v, u).reshape(3, 3, b, t, t, -1)  # (3, 3, B, T, T, Cout)
    # A^T m A: rows (m0 + m1, m1 + m2), then the same on columns.
    r0, r1 = m[0] + m[1], m[1] + m[2]  # (3, B, T, T, Cout)
    y = torch.stack([torch.stack([r[0] + r[1], r[1] + r[2]], dim=3) for r in (r0, r1)], dim=2)
    # y: (B, T, 2, T, 2, Cout) -> (B, Cout, 2T, 2T) as a channels-last view
    return y.reshape(b, 2 * t, 2 * t, -1).permute(0, 3, 1, 2)


def measure_layer(cin: int, cout: int, side: int, batch: int, repeats: int) -> str:
    """One Markdown row: direct convolution against the two Winograd variants for one layer shape."""
    x = torch.randn(batch, cin, side, side)
    w = torch.randn(cout, cin, 4, 4) / (cin * 16) ** 0.5
    ref = F.conv2d(x, w, stride=2, padding=1)
    u = winograd_weight(w)
    err = (winograd_conv(x, u) - ref).abs().max().item() / ref.abs().max().item()
    if err > 1e-4:
        raise SystemExit(f"F(2x2, 2x2) disagrees with conv2d: relative error {err:.2e}")

    def timed(fn: Callable[[], object]) -> float:
        return best_time(fn, repeats, calls=10, warmup=3)

    cl = torch.channels_last
    xl, wl = x.contiguous(memory_format=cl), w.contiguous(memory_format=cl)
    t_direct = min(
        timed(lambda: F.conv2d(x, w, stride=2, padding=1)),
        timed(lambda: F.conv2d(xl, wl, stride=2, padding=1)),
    )
    flops = 2 * batch * (side // 2) ** 2 * cout * cin * 16
    t_f22 = timed(lambda: winograd_conv(x, u))
    # F(4x4, 2x2): one 5x5 input tile per 4x4 output tile: 25 products (B*tiles, 4*Cin) x (4*Cin, Cout).
    n_tiles = batch * max(1, (side // 2) // 4) ** 2
    v4, u4 = torch.randn(25, n_tiles, 4 * cin), torch.randn(25, 4 * cin, cout)
    t_f42 = timed(lambda: torch.bmm(v4, u4))
    return (
        f"| {cin}->{cout} at {side}x{side} | {t_direct * 1e3:.2f} ({flops / t_direct / 1e9:.0f}) | "
        f"{t_f22 * 1e3:.2f} ({t_direct / t_f22:.2f}x) | {t_f42 * 1e3:.2f} ({t_direct / t_f42:.2f}x) |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=64, help="batch (GANomaly's default 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of 10 calls; best kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads {args.threads}, batch {args.batch_size}; forward of one layer, best of {args.repeats}")
    print("| layer | direct conv2d ms (GFLOP/s) | F(2x2,2x2) whole ms (x) | F(4x4,2x2) products ms (x) |")
    print("| --- | --- | --- | --- |")
    for cin, cout, side in [(64, 128, 16), (128, 256, 8)]:
        print(measure_layer(cin, cout, side, args.batch_size, args.repeats))


if __name__ == "__main__":
    main()
