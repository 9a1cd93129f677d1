"""The planar three-body problem (G = 1) for many configurations at once, as tensors of shape
(configurations, 3 bodies, 2 coordinates), integrated with the velocity Verlet (kick-drift-kick
leapfrog) scheme: symplectic and second order, so energy errors stay bounded and shrink as dt^2."""

import math

# the three pairs (i, j) of bodies; pair p's force on i points towards j
PAIR_I = (0, 0, 1)
PAIR_J = (1, 2, 2)

# Chenciner & Montgomery's figure-eight choreography for three unit masses (G = 1): published
# initial conditions, and its period. A correct integrator brings it back to the start.
FIGURE_EIGHT_POSITION = ((-0.97000436, 0.24308753), (0.97000436, -0.24308753), (0.0, 0.0))
FIGURE_EIGHT_VELOCITY = (
    (0.4662036850, 0.4323657300),
    (0.4662036850, 0.4323657300),
    (-0.93240737, -0.86473146),
)
FIGURE_EIGHT_PERIOD = 6.32591398


class ThreeBody:
    """Masses and the small matrices the force evaluation uses, for one dtype on one device.

    The state (configurations, 3, 2) is handled as (configurations, 6): pair differences and
    accelerations are then products with 6 x 6 matrices, one GEMM each on any device."""

    def __init__(self, torch, masses, dtype, device):
        self.torch = torch
        m0, m1, m2 = masses
        self.masses = torch.tensor(masses, dtype=dtype, device=device)
        plane = torch.eye(2, dtype=dtype)
        # pair p = (i, j): d_p = x_j - x_i
        difference = torch.zeros(3, 3, dtype=dtype)
        for p, (i, j) in enumerate(zip(PAIR_I, PAIR_J, strict=True)):
            difference[p, i], difference[p, j] = -1.0, 1.0
        # a_k = sum_p coefficient[k, p] * f_p with f_p = d_p / |d_p|^3
        coefficient = torch.tensor([[m1, m2, 0.0], [-m0, 0.0, m2], [0.0, -m0, -m1]], dtype=dtype)
        self.difference = torch.kron(difference, plane).T.contiguous().to(device)
        self.coefficient = torch.kron(coefficient, plane).T.contiguous().to(device)
        # sums each pair's two squared components: (configurations, 6) -> (configurations, 3)
        self.pair_sum = torch.kron(torch.eye(3, dtype=dtype), torch.ones(2, 1, dtype=dtype)).to(
            device
        )
        self.pair_i = torch.tensor(PAIR_I, device=device)
        self.pair_j = torch.tensor(PAIR_J, device=device)
        self.pair_mass = self.masses[self.pair_i] * self.masses[self.pair_j]

    def accelerations(self, x):
        """x: (configurations, 6). (Accelerations like x, each configuration's smallest squared
        distance between two bodies)."""
        d = x @ self.difference
        r2 = (d * d) @ self.pair_sum
        f = d.view(-1, 3, 2) * r2.rsqrt().pow(3).unsqueeze(-1)
        return f.view(-1, 6) @ self.coefficient, r2.amin(dim=1)

    def integrate(self, x, v, dt, steps):
        """Advance x and v (configurations, 3, 2) in place by steps of dt; return each
        configuration's smallest distance between two bodies along the way (where fixed steps
        stop being accurate)."""
        x, v = x.view(-1, 6), v.view(-1, 6)
        a, min_r2 = self.accelerations(x)
        for _ in range(steps):
            v.add_(a, alpha=0.5 * dt)
            x.add_(v, alpha=dt)
            a, r2 = self.accelerations(x)
            self.torch.minimum(min_r2, r2, out=min_r2)
            v.add_(a, alpha=0.5 * dt)
        return min_r2.sqrt()

    def energy(self, x, v):
        """Total energy per configuration, evaluated in float64 whatever the state's dtype, so
        the measure adds no rounding of its own."""
        x, v = x.double(), v.double()
        masses = self.masses.double()
        kinetic = 0.5 * (masses[None, :, None] * v * v).sum(dim=(1, 2))
        distance = (x[:, self.pair_j] - x[:, self.pair_i]).norm(dim=-1)
        potential = -(self.pair_mass.double() / distance).sum(dim=1)
        return kinetic + potential


def random_configurations(torch, count, masses, seed, dtype, device):
    """Bound configurations: positions uniform in [-1, 1]^2, random velocity directions scaled
    so that kinetic energy = |potential| / 2 (E = U / 2 < 0, never near 0, so the relative
    drift is well defined), centre of mass at rest at the origin."""
    generator = torch.Generator().manual_seed(seed)
    m = torch.tensor(masses, dtype=torch.float64)[None, :, None]
    x = torch.rand(count, 3, 2, generator=generator, dtype=torch.float64) * 2 - 1
    v = torch.randn(count, 3, 2, generator=generator, dtype=torch.float64)
    x -= (m * x).sum(dim=1, keepdim=True) / m.sum()
    v -= (m * v).sum(dim=1, keepdim=True) / m.sum()
    system = ThreeBody(torch, masses, torch.float64, "cpu")
    distance = (x[:, system.pair_j] - x[:, system.pair_i]).norm(dim=-1)
    potential = (system.pair_mass / distance).sum(dim=1)
    kinetic = 0.5 * (m * v * v).sum(dim=(1, 2))
    v *= (0.5 * potential / kinetic).sqrt()[:, None, None]
    return x.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)


def figure_eight(torch, dtype, device):
    """The figure-eight orbit as one configuration: (x, v) of shape (1, 3, 2)."""
    x = torch.tensor([FIGURE_EIGHT_POSITION], dtype=dtype, device=device)
    v = torch.tensor([FIGURE_EIGHT_VELOCITY], dtype=dtype, device=device)
    return x, v


def drift_summary(torch, e_start, e_end, min_distance, close_distance):
    """Relative energy drift |E_end - E_0| / |E_0| over the configurations that never came
    closer than close_distance (a fixed step cannot resolve a closer encounter). Non-finite
    results are counted apart: they are excluded, never hidden among the close encounters."""
    drift = ((e_end - e_start).abs() / e_start.abs()).cpu()
    finite = torch.isfinite(drift) & torch.isfinite(min_distance.cpu())
    kept = finite & (min_distance.cpu() >= close_distance)
    values = drift[kept]
    count = int(values.numel())
    return {
        "configurations": int(drift.numel()),
        "close_encounters": int((finite & ~kept).sum()),
        "non_finite": int((~finite).sum()),
        "kept": count,
        "median": float(values.median()) if count else math.nan,
        "max": float(values.max()) if count else math.nan,
    }
