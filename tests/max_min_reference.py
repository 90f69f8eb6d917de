"""The reference model of max-min fair filling: the pure-Python algorithm that
``vssim.scale.fair_share_links`` ran before the engine's ``links::max_min`` took it over (the
figures in ``tests/golden`` were recorded with it). ``test_max_min_engine`` checks the engine
returns exactly these bits. One change from that code: the float sum of the last loop is written
out left to right from ``0.0``, what ``sum()`` did on Python 3.11 (3.12's ``sum`` compensates), so
the model means the same on every Python."""

from __future__ import annotations

import heapq

#: A link counts as full when less than this share of its capacity is left, a background flow
#: as at its demand within this share of it (the engine's ``links::FULL``).
FULL = 1e-9


def fill_one_link(
    capacity: float, groups: list[int], background: list[tuple[str, float, int]], out: list[float]
) -> None:
    left = capacity
    flows = sum(background[j][2] for j in groups)
    for k, j in enumerate(sorted(groups, key=lambda j: background[j][1])):
        _, demand, n = background[j]
        if demand * flows <= left:
            out[j] = demand
            left -= demand * n
            flows -= n
            continue
        share = left / flows
        for j2 in sorted(groups, key=lambda j: background[j][1])[k:]:
            out[j2] = share
        return


def max_min_rates(
    capacity: dict[str, float],
    classes: list[tuple[tuple[str, ...], int]],
    background: list[tuple[str, float, int]],
) -> tuple[list[float], list[float]]:
    class_rate = [0.0] * len(classes)
    bg_rate = [0.0] * len(background)
    shared = {link for path, _ in classes for link in path}
    alone: dict[str, list[int]] = {}
    for j, (link, _, _) in enumerate(background):
        if link not in shared:
            alone.setdefault(link, []).append(j)
    for link, groups in alone.items():
        fill_one_link(capacity[link], groups, background, bg_rate)
    rem = {link: capacity[link] for link in shared}
    n_on = dict.fromkeys(shared, 0)
    on_link: dict[str, list[int]] = {link: [] for link in shared}
    bg_on: dict[str, list[int]] = {link: [] for link in shared}
    for i, (path, n) in enumerate(classes):
        for link in path:
            n_on[link] += n
            on_link[link].append(i)
    demands: list[tuple[float, int]] = []
    for j, (link, demand, n) in enumerate(background):
        if link in shared:
            n_on[link] += n
            bg_on[link].append(j)
            demands.append((demand, j))
    heapq.heapify(demands)
    open_classes = set(range(len(classes)))
    open_bg = {j for _, j in demands}
    level = 0.0
    while open_classes:
        busy = [(link, n) for link, n in n_on.items() if n > 0]
        step = min(rem[link] / n for link, n in busy)
        while demands and demands[0][1] not in open_bg:
            heapq.heappop(demands)
        if demands:
            step = min(step, demands[0][0] - level)
        step = max(step, 0.0)
        level += step
        frozen_classes: set[int] = set()
        frozen_bg: set[int] = set()
        for link, n in busy:
            rem[link] -= step * n
            if rem[link] <= FULL * capacity[link]:
                frozen_classes.update(i for i in on_link[link] if i in open_classes)
                frozen_bg.update(j for j in bg_on[link] if j in open_bg)
        while demands and demands[0][0] - level <= FULL * demands[0][0]:
            frozen_bg.add(heapq.heappop(demands)[1])
        for i in frozen_classes:
            class_rate[i] = level
            open_classes.discard(i)
            path, n = classes[i]
            for link in path:
                n_on[link] -= n
        for j in frozen_bg:
            if j in open_bg:
                bg_rate[j] = min(level, background[j][1])
                open_bg.discard(j)
                n_on[background[j][0]] -= background[j][2]
    for link in shared:
        groups = [j for j in bg_on[link] if j in open_bg]
        if groups:
            taken = 0.0
            for j in groups:
                taken += level * background[j][2]
            fill_one_link(rem[link] + taken, groups, background, bg_rate)
    return class_rate, bg_rate
