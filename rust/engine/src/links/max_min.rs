//! Max-min fair rates by progressive filling (the fluid model of `vssim.scale.fair_share_links`,
//! whose module doc says why): every open flow's rate rises together from zero; when a link is
//! full, the flows crossing it keep the rate they reached and the others go on rising; a
//! background flow stops at its demand.
//!
//! The arithmetic is the one the Python model did, operation for operation and in the same order
//! (IEEE f64 throughout; counts turned into f64 where Python's `float * int` did), so a run's
//! figures are the same bits as before the port: the stable sort by demand, the [`FULL`]
//! tolerance, the step and level arithmetic, the sums accumulated from `0.0` left to right.
//! `tests/test_max_min_reference.py` holds the Python model and checks the two agree exactly.

use crate::error::{Error, Result};

/// A link counts as full when less than this share of its capacity is left, a background flow as
/// at its demand within this share of it (floating-point slack; model choice).
pub const FULL: f64 = 1e-9;

/// Transfers that share a path: every one of them gets the same rate.
#[derive(Debug, Clone, Copy)]
pub struct Class<'a> {
    /// The links crossed (indices into the capacities).
    pub path: &'a [usize],
    /// How many transfers (at least 1).
    pub transfers: u64,
}

/// Equal background flows on one link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Group {
    /// The link (an index into the capacities).
    pub link: usize,
    /// Each flow's demand (bytes/s, finite and > 0).
    pub demand: f64,
    /// How many flows (at least 1).
    pub flows: u64,
}

/// Python's `min(a, b)`: `a` unless `b` is smaller (so a NaN never replaces, and of two equal
/// values the first stays).
pub(super) fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

/// Python's `max(a, b)`: `a` unless `b` is larger.
pub(super) fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

fn check(capacity: &[f64], classes: &[Class<'_>], background: &[Group]) -> Result<()> {
    let links = capacity.len();
    for (l, &c) in capacity.iter().enumerate() {
        if !(c.is_finite() && c > 0.0) {
            return Err(Error::invalid(
                "capacity",
                format!("link {l}: {c}: expected a finite capacity > 0 (bytes/s)"),
            ));
        }
    }
    let mut total: u64 = 0;
    for (i, c) in classes.iter().enumerate() {
        if c.path.is_empty() {
            return Err(Error::invalid(
                "classes",
                format!("class {i}: an empty path: a transfer crosses at least one link"),
            ));
        }
        if let Some(&l) = c.path.iter().find(|&&l| l >= links) {
            return Err(Error::invalid(
                "classes",
                format!("class {i}: link {l}: expected a link index below {links}"),
            ));
        }
        if c.transfers == 0 {
            return Err(Error::invalid(
                "classes",
                format!("class {i}: 0 transfers: expected at least 1"),
            ));
        }
        total = c
            .transfers
            .checked_mul(c.path.len() as u64)
            .and_then(|t| t.checked_add(total))
            .ok_or_else(|| {
                Error::invalid("classes", format!("class {i}: too many transfers in all"))
            })?;
    }
    for (j, g) in background.iter().enumerate() {
        if g.link >= links {
            return Err(Error::invalid(
                "background",
                format!(
                    "group {j}: link {}: expected a link index below {links}",
                    g.link
                ),
            ));
        }
        if !(g.demand.is_finite() && g.demand > 0.0) {
            return Err(Error::invalid(
                "background",
                format!(
                    "group {j}: demand {}: expected a finite demand > 0 (bytes/s)",
                    g.demand
                ),
            ));
        }
        if g.flows == 0 {
            return Err(Error::invalid(
                "background",
                format!("group {j}: 0 flows: expected at least 1"),
            ));
        }
        total = total.checked_add(g.flows).ok_or_else(|| {
            Error::invalid("background", format!("group {j}: too many flows in all"))
        })?;
    }
    Ok(())
}

/// Progressive filling on a link only background flows cross (closed form): in ascending demand
/// (a stable sort: equal demands in the order of `groups`), a group gets its demand while the
/// flows left could all have it, else every flow left gets an equal share of what is left.
fn fill_one_link(capacity: f64, groups: &[usize], background: &[Group], out: &mut [f64]) {
    let mut left = capacity;
    let mut flows: u64 = groups.iter().map(|&j| background[j].flows).sum();
    let mut order = groups.to_vec();
    // `sort_by` is stable, as Python's `sorted`; demands are finite (checked), so the order is
    // total.
    order.sort_by(|&a, &b| background[a].demand.total_cmp(&background[b].demand));
    for (k, &j) in order.iter().enumerate() {
        let Group {
            demand, flows: n, ..
        } = background[j];
        if demand * flows as f64 <= left {
            out[j] = demand;
            left -= demand * n as f64;
            flows -= n;
            continue;
        }
        let share = left / flows as f64;
        for &j2 in &order[k..] {
            out[j2] = share;
        }
        return;
    }
}

/// The max-min fair rates, by progressive filling: `classes` (a path of links and a number of
/// transfers each, every transfer of a class at the same rate) and `background` (groups of equal
/// flows on one link each, capped at their demand) on links of `capacity` (bytes/s, by index).
/// Returns the per-transfer rate of each class and the per-flow rate of each background group.
///
/// Each round raises every open flow by the same step, to the first link to fill or the first
/// demand met, and closes the flows that it stops. Links that no transfer crosses do not interact
/// with the others: their background is filled on its own, in closed form.
pub fn max_min_rates(
    capacity: &[f64],
    classes: &[Class<'_>],
    background: &[Group],
) -> Result<(Vec<f64>, Vec<f64>)> {
    check(capacity, classes, background)?;
    let links = capacity.len();
    let mut class_rate = vec![0.0; classes.len()];
    let mut bg_rate = vec![0.0; background.len()];

    // The links transfers cross, in first-crossed order (the order only changes which of equal
    // values a `min` keeps).
    let mut is_shared = vec![false; links];
    let mut shared: Vec<usize> = Vec::new();
    for c in classes {
        for &l in c.path {
            if !is_shared[l] {
                is_shared[l] = true;
                shared.push(l);
            }
        }
    }
    let mut alone: Vec<Vec<usize>> = vec![Vec::new(); links];
    for (j, g) in background.iter().enumerate() {
        if !is_shared[g.link] {
            alone[g.link].push(j);
        }
    }
    for (l, groups) in alone.iter().enumerate() {
        if !groups.is_empty() {
            fill_one_link(capacity[l], groups, background, &mut bg_rate);
        }
    }

    let mut rem = capacity.to_vec();
    let mut n_on = vec![0u64; links];
    let mut on_link: Vec<Vec<usize>> = vec![Vec::new(); links];
    let mut bg_on: Vec<Vec<usize>> = vec![Vec::new(); links];
    for (i, c) in classes.iter().enumerate() {
        for &l in c.path {
            n_on[l] += c.transfers;
            on_link[l].push(i);
        }
    }
    // Python's heap of (demand, index), popped in order: sorted once (nothing is pushed later).
    let mut demands: Vec<(f64, usize)> = Vec::new();
    for (j, g) in background.iter().enumerate() {
        if is_shared[g.link] {
            n_on[g.link] += g.flows;
            bg_on[g.link].push(j);
            demands.push((g.demand, j));
        }
    }
    demands.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut next_demand = 0;
    let mut class_open = vec![true; classes.len()];
    let mut open_classes = classes.len();
    let mut bg_open: Vec<bool> = (0..background.len())
        .map(|j| is_shared[background[j].link])
        .collect();

    let mut level = 0.0_f64;
    let mut busy: Vec<(usize, u64)> = Vec::with_capacity(shared.len());
    let mut frozen_classes: Vec<usize> = Vec::new();
    let mut frozen_bg: Vec<usize> = Vec::new();
    let mut class_mark = vec![false; classes.len()];
    let mut bg_mark = vec![false; background.len()];
    // Every round closes a class or a background group (the link that sets the step fills, or
    // the demand that sets it is met): more rounds than both would be a bug, not a slow input.
    let mut rounds_left = classes.len() + background.len() + 1;
    while open_classes > 0 {
        if rounds_left == 0 {
            return Err(Error::State(
                "max-min filling made no progress (a bug: every round closes a flow)".to_owned(),
            ));
        }
        rounds_left -= 1;
        busy.clear();
        busy.extend(
            shared
                .iter()
                .filter(|&&l| n_on[l] > 0)
                .map(|&l| (l, n_on[l])),
        );
        let Some(&(l0, n0)) = busy.first() else {
            return Err(Error::State(
                "max-min filling: open transfers but no link carries them (a bug)".to_owned(),
            ));
        };
        let mut step = rem[l0] / n0 as f64;
        for &(l, n) in &busy[1..] {
            step = py_min(step, rem[l] / n as f64);
        }
        while next_demand < demands.len() && !bg_open[demands[next_demand].1] {
            next_demand += 1;
        }
        if next_demand < demands.len() {
            step = py_min(step, demands[next_demand].0 - level);
        }
        step = py_max(step, 0.0);
        level += step;
        for &(l, n) in &busy {
            rem[l] -= step * n as f64;
            if rem[l] <= FULL * capacity[l] {
                for &i in &on_link[l] {
                    if class_open[i] && !class_mark[i] {
                        class_mark[i] = true;
                        frozen_classes.push(i);
                    }
                }
                for &j in &bg_on[l] {
                    if bg_open[j] && !bg_mark[j] {
                        bg_mark[j] = true;
                        frozen_bg.push(j);
                    }
                }
            }
        }
        while next_demand < demands.len()
            && demands[next_demand].0 - level <= FULL * demands[next_demand].0
        {
            let j = demands[next_demand].1;
            next_demand += 1;
            if !bg_mark[j] {
                bg_mark[j] = true;
                frozen_bg.push(j);
            }
        }
        for i in frozen_classes.drain(..) {
            class_mark[i] = false;
            class_rate[i] = level;
            class_open[i] = false;
            open_classes -= 1;
            for &l in classes[i].path {
                n_on[l] -= classes[i].transfers;
            }
        }
        for j in frozen_bg.drain(..) {
            bg_mark[j] = false;
            if bg_open[j] {
                bg_rate[j] = py_min(level, background[j].demand);
                bg_open[j] = false;
                n_on[background[j].link] -= background[j].flows;
            }
        }
    }
    // Background flows on shared links still open once every transfer is placed: their links
    // have room left for them alone.
    let mut groups: Vec<usize> = Vec::new();
    for &l in &shared {
        groups.clear();
        groups.extend(bg_on[l].iter().copied().filter(|&j| bg_open[j]));
        if !groups.is_empty() {
            let mut taken = 0.0;
            for &j in &groups {
                taken += level * background[j].flows as f64;
            }
            fill_one_link(rem[l] + taken, &groups, background, &mut bg_rate);
        }
    }
    Ok((class_rate, bg_rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn class(path: &[usize], transfers: u64) -> Class<'_> {
        Class { path, transfers }
    }

    fn group(link: usize, demand: f64, flows: u64) -> Group {
        Group {
            link,
            demand,
            flows,
        }
    }

    #[test]
    fn a_transfer_left_room_takes_it() {
        // Two transfers over target (200) and csv (400), one over csv alone: the pair is
        // bottlenecked on the target at 100 each, the third takes the csv's 200 left.
        let (rates, bg) =
            max_min_rates(&[200.0, 400.0], &[class(&[0, 1], 2), class(&[1], 1)], &[]).unwrap();
        assert_eq!(rates, vec![100.0, 200.0]);
        assert!(bg.is_empty());
    }

    #[test]
    fn background_stops_at_its_demand_and_the_transfer_takes_the_rest() {
        let (rates, bg) = max_min_rates(&[100.0], &[class(&[0], 1)], &[group(0, 10.0, 3)]).unwrap();
        assert_eq!(bg, vec![10.0]);
        assert_eq!(rates, vec![70.0]);
    }

    #[test]
    fn a_link_only_background_crosses_is_filled_in_ascending_demand() {
        // 100 for 1 flow of 10 and 3 of 50: the small one has its demand, the others share 90.
        let (rates, bg) =
            max_min_rates(&[100.0], &[], &[group(0, 50.0, 3), group(0, 10.0, 1)]).unwrap();
        assert!(rates.is_empty());
        assert_eq!(bg, vec![30.0, 10.0]);
    }

    #[test]
    fn background_left_open_fills_what_the_transfers_leave() {
        // Link 0 (10) bottlenecks the transfer at 5 beside one flow of demand 100; on link 1
        // (1000) the transfer takes 5 and the flows of demand 400 share the rest.
        let (rates, bg) = max_min_rates(
            &[10.0, 1000.0],
            &[class(&[0, 1], 1)],
            &[group(0, 100.0, 1), group(1, 400.0, 3)],
        )
        .unwrap();
        assert_eq!(rates, vec![5.0]);
        assert_eq!(bg[0], 5.0);
        assert_eq!(bg[1], (1000.0 - 5.0) / 3.0);
    }

    #[test]
    fn bad_input_is_refused_by_name() {
        let msg = |e: Error| e.to_string();
        let e = max_min_rates(&[0.0], &[class(&[0], 1)], &[]).unwrap_err();
        assert!(msg(e).contains("capacity"));
        let e = max_min_rates(&[1.0], &[class(&[1], 1)], &[]).unwrap_err();
        assert!(msg(e).contains("link 1: expected a link index below 1"));
        let e = max_min_rates(&[1.0], &[class(&[], 1)], &[]).unwrap_err();
        assert!(msg(e).contains("empty path"));
        let e = max_min_rates(&[1.0], &[class(&[0], 0)], &[]).unwrap_err();
        assert!(msg(e).contains("0 transfers"));
        let e = max_min_rates(&[1.0], &[], &[group(0, f64::NAN, 1)]).unwrap_err();
        assert!(msg(e).contains("demand NaN"));
        let e = max_min_rates(&[1.0], &[], &[group(0, 1.0, 0)]).unwrap_err();
        assert!(msg(e).contains("0 flows"));
        let e = max_min_rates(&[1.0], &[], &[group(3, 1.0, 1)]).unwrap_err();
        assert!(msg(e).contains("group 0: link 3"));
        let e = max_min_rates(&[1.0], &[class(&[0], u64::MAX), class(&[0], 1)], &[]).unwrap_err();
        assert!(msg(e).contains("too many transfers"));
    }

    /// Capacities, classes (path, transfers) and background groups.
    type Case = (Vec<f64>, Vec<(Vec<usize>, u64)>, Vec<Group>);

    fn case() -> impl Strategy<Value = Case> {
        (1usize..7).prop_flat_map(|links| {
            (
                prop::collection::vec(1e6f64..1e10, links),
                prop::collection::vec(
                    (
                        prop::collection::btree_set(0..links, 1..=links.min(4))
                            .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
                        1u64..6,
                    ),
                    0..10,
                ),
                prop::collection::vec(
                    (0..links, 1e5f64..1e10, 1u64..300).prop_map(|(l, d, n)| group(l, d, n)),
                    0..8,
                ),
            )
        })
    }

    proptest! {
        /// Feasible, and every transfer is bottlenecked: some link of its path is full and
        /// carries no faster flow; a background flow is at its demand or so bottlenecked.
        #[test]
        fn every_flow_is_bottlenecked((cap, cls, bg) in case()) {
            let classes: Vec<Class<'_>> = cls.iter().map(|(p, n)| class(p, *n)).collect();
            let (rates, bg_rates) = max_min_rates(&cap, &classes, &bg).unwrap();
            let mut used = vec![0.0; cap.len()];
            let mut fastest = vec![0.0f64; cap.len()];
            for (c, &r) in classes.iter().zip(&rates) {
                for &l in c.path {
                    used[l] += c.transfers as f64 * r;
                    fastest[l] = fastest[l].max(r);
                }
            }
            for (g, &r) in bg.iter().zip(&bg_rates) {
                used[g.link] += g.flows as f64 * r;
                fastest[g.link] = fastest[g.link].max(r);
            }
            let tol = 1e-6;
            for (l, &u) in used.iter().enumerate() {
                prop_assert!(u <= cap[l] * (1.0 + tol));
            }
            let bottleneck = |l: usize, r: f64| {
                used[l] >= cap[l] * (1.0 - tol) && r >= fastest[l] * (1.0 - tol)
            };
            for (c, &r) in classes.iter().zip(&rates) {
                prop_assert!(r > 0.0);
                prop_assert!(c.path.iter().any(|&l| bottleneck(l, r)));
            }
            for (g, &r) in bg.iter().zip(&bg_rates) {
                prop_assert!(r <= g.demand * (1.0 + tol));
                prop_assert!(r >= g.demand * (1.0 - tol) || bottleneck(g.link, r));
            }
        }
    }
}
