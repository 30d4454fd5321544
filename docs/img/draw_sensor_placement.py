"""Draw docs/img/sensor-placement.png, the patient guide's picture of where the sensor goes.

Run from the repository root: ``python docs/img/draw_sensor_placement.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Ellipse, FancyArrowPatch, FancyBboxPatch, Polygon

SKIN = "#f1d3bd"
LINE = "#5a4636"
SENSOR = "#1f77b4"
OK = "#2ca02c"


def back_view(ax: plt.Axes) -> None:
    """Seen from behind: head, shoulders, spine, the sensor between the shoulder blades."""
    ax.add_patch(Ellipse((0, 8.6), 1.6, 2.0, fc=SKIN, ec=LINE, lw=1.5))  # head
    ax.add_patch(Polygon([(-0.45, 7.6), (0.45, 7.6), (0.5, 7.2), (-0.5, 7.2)], fc=SKIN, ec=LINE))  # neck
    torso = [(-2.6, 7.1), (2.6, 7.1), (2.3, 4.0), (1.9, 1.2), (-1.9, 1.2), (-2.3, 4.0)]
    ax.add_patch(Polygon(torso, fc=SKIN, ec=LINE, lw=1.5))
    for sx in (-1, 1):  # arms and shoulder blades
        ax.add_patch(Polygon([(sx * 2.6, 7.1), (sx * 3.3, 6.6), (sx * 3.1, 2.6), (sx * 2.6, 2.6),
                              (sx * 2.35, 5.6)], fc=SKIN, ec=LINE, lw=1.2))
        ax.add_patch(Ellipse((sx * 1.25, 5.7), 1.5, 2.1, angle=sx * 12, fc="none", ec=LINE, lw=1, ls=":"))
    for k in range(17):  # spinous processes
        y = 7.2 - k * 0.36
        ax.add_patch(Ellipse((0, y), 0.28, 0.18, fc="#e2b89b", ec=LINE, lw=0.6))
    ax.add_patch(FancyBboxPatch((-0.55, 5.35), 1.1, 0.75, boxstyle="round,pad=0.05", fc=SENSOR, ec="k", lw=1.2))
    ax.text(0, 5.72, "sensor", color="white", ha="center", va="center", fontsize=9, weight="bold")
    ax.annotate("centre on the spine,\nbetween the shoulder blades\n(about a hand's width\nbelow the neck bone)",
                xy=(0.6, 5.75), xytext=(3.6, 6.9), fontsize=9, va="top",
                arrowprops={"arrowstyle": "->", "color": LINE})
    ax.annotate("neck bone (C7)", xy=(0.15, 7.2), xytext=(1.2, 8.3), fontsize=9,
                arrowprops={"arrowstyle": "->", "color": LINE})
    ax.set_title("From behind", fontsize=11)
    ax.set_xlim(-4, 7.5)
    ax.set_ylim(0.8, 10)


def side_view(ax: plt.Axes) -> None:
    """Seen from the side, sitting: upright (neutral) and the slouch the sensor detects."""
    def person(x0: float, lean_deg: float, color: str, label: str) -> None:
        import math
        a = math.radians(lean_deg)
        hip = (x0, 1.6)
        top = (x0 + 4.4 * math.sin(a), 1.6 + 4.4 * math.cos(a))
        ax.plot([hip[0], top[0]], [hip[1], top[1]], color=LINE, lw=9, solid_capstyle="round", alpha=0.35)
        ax.add_patch(Ellipse((top[0] + 0.25 * math.sin(a), top[1] + 0.9), 1.2, 1.4, fc=SKIN, ec=LINE))
        ax.plot([hip[0], hip[0] + 2.2], [hip[1], hip[1]], color=LINE, lw=7, alpha=0.35)  # thigh
        ax.plot([hip[0] + 2.2, hip[0] + 2.2], [hip[1], 0.0], color=LINE, lw=6, alpha=0.35)  # shin
        sx, sy = x0 + 3.2 * math.sin(a) - 0.35 * math.cos(a), 1.6 + 3.2 * math.cos(a) + 0.35 * math.sin(a)
        ax.add_patch(Ellipse((sx, sy), 0.5, 0.8, angle=-lean_deg, fc=SENSOR, ec="k"))
        ax.text(x0 + 1.0, -0.8, label, ha="center", fontsize=9, color=color, weight="bold")
        ax.plot([x0 - 0.8, x0 + 3.0], [1.55, 1.55], color="#999", lw=3)  # chair seat

    person(0.0, 0.0, OK, "upright = neutral\n(calibrate like this)")
    person(6.5, 25.0, "#d62728", "slouched: trunk 20°+\nforward of neutral")
    ax.plot([6.5, 6.5], [1.6, 6.4], color="#d62728", lw=1, ls="--")  # the upright reference
    ax.add_patch(FancyArrowPatch((6.5, 3.4), (7.3, 3.25), connectionstyle="arc3,rad=-0.3",
                                 arrowstyle="->", mutation_scale=14, color="#d62728"))
    ax.text(6.4, 3.55, "flexion", color="#d62728", fontsize=9, ha="right")
    ax.set_title("From the side, sitting", fontsize=11)
    ax.set_xlim(-2, 11)
    ax.set_ylim(-1.5, 8)


def main() -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 5.2), gridspec_kw={"width_ratios": [1.1, 1]})
    back_view(a)
    side_view(b)
    for ax in (a, b):
        ax.set_aspect("equal")
        ax.axis("off")
    fig.suptitle("Where the SpineWatch sensor goes", fontsize=13, weight="bold")
    fig.tight_layout()
    out = Path(__file__).with_name("sensor-placement.png")
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main()
