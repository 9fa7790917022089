"""Built-in Gaussian noise schedules (see ``polydiff.schedules``)."""
from __future__ import annotations

from polydiff.hookspecs import hookimpl
from polydiff.schedules import EDM, VE, Flow, VPCosine, VPLinear
from polydiff.specs import ScheduleSpec


@hookimpl
def polydiff_schedules():
    """VP-linear, VP-cosine, VE, EDM and flow (rectified) schedules."""
    yield ScheduleSpec(name="vp-linear", summary="VP SDE, linear beta 0.1..20 (Song et al. 2021)", factory=VPLinear)
    yield ScheduleSpec(name="vp-cosine", summary="VP cosine, log-SNR -2 log tan (Nichol & Dhariwal 2021)",
                       factory=VPCosine)
    yield ScheduleSpec(name="ve", summary="VE SDE, geometric sigma 0.01..80 (Song et al. 2021)", factory=VE)
    yield ScheduleSpec(name="edm", summary="EDM sigma 0.002..80, rho 7, log-normal training (Karras et al. 2022)",
                       factory=EDM)
    yield ScheduleSpec(name="flow", summary="linear interpolant / rectified flow (Liu et al. 2023)", factory=Flow)
