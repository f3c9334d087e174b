"""L-BFGS on the pixels of an image, kept inside [0, 255]: the optimiser behind Gatys and refinement.

Why not torch.optim.LBFGS: Gatys needs to clamp the pixels, report progress and honour cancel between
iterations, so we called its step() once per iteration with max_iter=1. Its default max_eval is then
max_iter * 5 // 4 = 1, which leaves its strong-Wolfe line search max_ls = max_eval - 1 = 0 trials: it takes
one trial step and, when that raises the loss, returns step 0. The image, the gradient and the curvature
memory are then exactly what they were, so every later step() tries the same trial and rejects it again:
the loss stays flat for the rest of the run (issue 17: refinement flat from iteration ~10 of 30). Each step()
also re-evaluated the loss at the point its line search had just scored, two evaluations per iteration.

This loop is the textbook method (Nocedal & Wright, Numerical Optimization, 2nd ed., algorithms 7.4 and 3.1)
with the bound handled by projection: the search direction comes from the two-loop recursion on the
gradient with the components that push a pixel out through 0 or 255 zeroed, each trial point is clamped,
and a trial is accepted only when it lowers the loss by the Armijo margin measured along the step actually
taken (backtracking with a quadratic fit otherwise). So every iteration either lowers the loss or, when no
trial does, forgets its curvature memory and retries along the plain gradient; when even that fails (the loss
has converged to float precision) the remaining iterations return at once instead of repeating the search.
An accepted unit step costs one loss evaluation per iteration, and the loss and gradient at the new pixels
are the next iteration's starting point (no second evaluation).

The first iteration has no curvature to scale it; its trial step moves the pixel with the largest gradient
by `first_step` grey levels (torch's own choice, 1/||g||_1, moves it by a tiny fraction of a level on an image,
so its first iteration changed nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

Evaluate = Callable[[Tensor], tuple[float, Tensor]]  # pixels -> (loss, gradient of the loss at those pixels)


@dataclass
class ProjectedLbfgs:
    """Minimise `evaluate` over images in [lo, hi]. Call `start(x0)` once, then `step()` once per iteration;
    `x`, `f` and `g` hold the current pixels, loss and gradient."""

    evaluate: Evaluate
    history: int = 20  # curvature pairs kept: two image-sized tensors each
    first_step: float = 32.0  # grey levels moved by the most-pulled pixel on the first trial
    step_length: float = 1.0  # first trial on later iterations (1: the quasi-Newton step)
    lo: float = 0.0
    hi: float = 255.0
    c1: float = 1e-4  # Armijo sufficient-decrease constant
    max_trials: int = 8  # loss evaluations per iteration at most
    evaluations: int = 0
    _pairs: list[tuple[Tensor, Tensor, float]] = field(default_factory=list)  # (s, y, 1 / s.y)
    _gamma: float = 1.0  # scale of the initial inverse Hessian, s.y / y.y of the newest pair
    _stuck: bool = False  # not even a short step along the gradient lowered the loss: converged

    def start(self, x0: Tensor) -> float:
        self.x = x0.detach().clamp(self.lo, self.hi).contiguous()
        self.f, self.g = self._eval(self.x)
        return self.f

    def _eval(self, x: Tensor) -> tuple[float, Tensor]:
        self.evaluations += 1
        f, g = self.evaluate(x)
        return f, g.detach().reshape(x.shape)

    def _free_gradient(self) -> Tensor:
        # a pixel at a bound whose descent direction points out of the box cannot move: leave it out
        blocked = ((self.x <= self.lo) & (self.g > 0)) | ((self.x >= self.hi) & (self.g < 0))
        return self.g.masked_fill(blocked, 0.0)

    def _direction(self, g: Tensor) -> Tensor:
        # two-loop recursion: d = -H g with H the L-BFGS inverse-Hessian estimate
        q = g.neg()
        alphas = []
        for s, y, rho in reversed(self._pairs):
            a = rho * float(torch.vdot(s.flatten(), q.flatten()))
            q.add_(y, alpha=-a)
            alphas.append(a)
        q.mul_(self._gamma)
        for (s, y, rho), a in zip(self._pairs, reversed(alphas), strict=True):
            b = rho * float(torch.vdot(y.flatten(), q.flatten()))
            q.add_(s, alpha=a - b)
        return q

    def step(self) -> float:
        """One iteration; returns the loss at the new pixels (lower than before unless nothing could lower it)."""
        g = self._free_gradient()
        gmax = float(g.abs().max())
        if gmax == 0.0 or self._stuck:
            return self.f  # stationary within the box, or converged as far as float32 can tell
        for restart in (False, True):
            if restart or not self._pairs:
                self._pairs.clear()
                d, t = g.neg(), self.first_step / gmax
            else:
                d, t = self._direction(g), self.step_length
                if float(torch.vdot(g.flatten(), d.flatten())) >= 0:
                    continue  # not a descent direction (round-off in the memory): start afresh
            accepted = self._search(d, t)
            if accepted is not None:
                self._remember(*accepted)
                return self.f
        self._stuck = True  # the pixels, gradient and memory would be the same next time: do not retry
        return self.f

    def _search(self, d: Tensor, t: float) -> tuple[Tensor, Tensor] | None:
        """Backtrack from step `t` along `d` until the projected trial lowers the loss enough. On success moves
        to it and returns the curvature pair (s, y); None when no trial was accepted."""
        for _ in range(self.max_trials):
            x_new = (self.x + t * d).clamp_(self.lo, self.hi)
            s = x_new - self.x
            slope = float(torch.vdot(self.g.flatten(), s.flatten()))  # first-order change along the real step
            if slope >= 0:
                return None  # the projection left no descent in this direction
            f_new, g_new = self._eval(x_new)
            if f_new <= self.f + self.c1 * slope:
                y = g_new - self.g
                self.x, self.f, self.g = x_new, f_new, g_new
                return s, y
            # minimum of the quadratic through f, the slope and f_new, kept within [0.1, 0.5] of the trial
            rise = f_new - self.f - slope
            fraction = -slope / (2 * rise) if rise > 0 else 0.5
            t *= min(0.5, max(0.1, fraction))
        return None

    def _remember(self, s: Tensor, y: Tensor) -> None:
        sy = float(torch.vdot(s.flatten(), y.flatten()))
        yy = float(torch.vdot(y.flatten(), y.flatten()))
        if sy <= 1e-10 * yy or yy == 0.0:
            return  # no positive curvature along this step (the bound or non-convexity): keep the old memory
        if len(self._pairs) == self.history:
            self._pairs.pop(0)
        self._pairs.append((s, y, 1.0 / sy))
        self._gamma = sy / yy
