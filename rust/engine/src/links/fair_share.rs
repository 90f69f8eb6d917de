//! The state of `vssim.scale.fair_share_links.FairShareLinks` and every rule that moves it: the
//! transfers' classes and their finish marks, the links' users, bytes and busy time, and the
//! background flows with their rates. The Python class keeps the clock (SimPy) and each
//! transfer's event; it calls in at each instant something changes and is told which transfers
//! finished and when the next one will.
//!
//! The arithmetic is the Python model's, operation for operation and in the same order (IEEE
//! f64; Python's `round` is [`f64::round_ties_even`]; sums from zero left to right; a class's
//! finish marks in a binary heap kept as Python's `heapq` keeps its list, since a sum over the
//! heap follows its order), and every iteration whose order could change a float follows
//! Python's order (classes in the order they came, a link's flows in the order their demands
//! came, the filled links by name): a run's figures are the bits they were when Python held it.
//!
//! How it works (the fluid model; `fair_share_links.py`'s module doc says why): transfers with
//! the same path form a class that progresses as one — its cumulative `work` per transfer grows
//! at its `rate`, and each transfer finishes when `work` reaches its own mark. Rates are the
//! max-min fair allocation ([`max_min_rates`]) of the classes and the background groups of the
//! links they cross; a link no transfer crosses has its background filled alone, once per change
//! of its flows.

use std::collections::HashMap;

use super::max_min::{max_min_rates, py_max, py_min, Class, Group};
use crate::error::{Error, Result};

/// Bytes of a transfer left when it counts as done (floating-point slack).
pub const SLACK: f64 = 1e-3;

/// How far below a link's capacity its background's total demand must stay for the flows to
/// get their demands without a fill (relative): far above the filling's rounding.
pub const FIT_MARGIN: f64 = 1e-9;

/// Python's `round(x)` of a float: to the nearest integer, ties to even.
fn py_round(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// A transfer's finish mark in its class's heap: ordered as Python orders the tuple
/// `(mark, seq, nbytes, event)` (marks, then the unique sequence number).
#[derive(Debug, Clone, Copy)]
struct Mark {
    mark: f64,
    seq: u64,
    nbytes: u64,
}

impl Mark {
    fn lt(&self, o: &Mark) -> bool {
        self.mark < o.mark || (self.mark == o.mark && self.seq < o.seq)
    }
}

/// `heapq`'s list operations, step for step (the list's order is part of the answer: see the
/// module doc).
mod heapq {
    use super::Mark;

    fn sift_down(heap: &mut [Mark], start: usize, mut pos: usize) {
        let item = heap[pos];
        while pos > start {
            let parent = (pos - 1) >> 1;
            if item.lt(&heap[parent]) {
                heap[pos] = heap[parent];
                pos = parent;
                continue;
            }
            break;
        }
        heap[pos] = item;
    }

    fn sift_up(heap: &mut [Mark], mut pos: usize) {
        let end = heap.len();
        let start = pos;
        let item = heap[pos];
        let mut child = 2 * pos + 1;
        while child < end {
            let right = child + 1;
            if right < end && !heap[child].lt(&heap[right]) {
                child = right;
            }
            heap[pos] = heap[child];
            pos = child;
            child = 2 * pos + 1;
        }
        heap[pos] = item;
        sift_down(heap, start, pos);
    }

    pub(super) fn push(heap: &mut Vec<Mark>, item: Mark) {
        heap.push(item);
        let last = heap.len() - 1;
        sift_down(heap, 0, last);
    }

    pub(super) fn pop(heap: &mut Vec<Mark>) -> Option<Mark> {
        let last = heap.pop()?;
        if heap.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut heap[0], last);
        sift_up(heap, 0);
        Some(top)
    }

    pub(super) fn heapify(heap: &mut [Mark]) {
        for i in (0..heap.len() / 2).rev() {
            sift_up(heap, i);
        }
    }
}

/// A key's background: per link (in the order given), its groups of equal flows (demand per flow
/// in bytes/s, how many).
pub type Table = Vec<(usize, Vec<(f64, i64)>)>;

/// Transfers with the same path.
#[derive(Debug, Clone)]
struct TransferClass {
    path: Vec<usize>,
    work: f64,
    rate: f64,
    heap: Vec<Mark>,
}

/// A link's background groups as the filling takes them, made once per change of its flows.
#[derive(Debug, Clone)]
struct GroupArgs {
    /// (link, demand in bytes moved, flows).
    groups: Vec<Group>,
    /// How many flows each has.
    counts: Vec<u64>,
}

/// What the classes and the flows of the links they cross make for the filling, kept while
/// neither changes.
#[derive(Debug, Clone)]
struct Layout {
    /// Which links some class crosses.
    shared: Vec<bool>,
    /// Those of them with background flows, by name; and how many groups each has.
    filled: Vec<usize>,
    counts: Vec<usize>,
    background: Vec<Group>,
    /// Counts the layouts made (a layout is known again by it).
    id: u64,
}

/// The links of a run and the transfers and background flows crossing them (see the module doc).
#[derive(Debug, Clone)]
pub struct FairShare {
    /// Per link: bytes moved (read) per second, bytes carried per byte moved, and its place
    /// among the links by name.
    capacity: Vec<f64>,
    weight: Vec<f64>,
    rank: Vec<usize>,
    users: Vec<u64>,
    /// Bytes each link carried, its background's since `bg_since` excepted.
    link_bytes: Vec<i64>,
    bg_since: Vec<Option<f64>>,
    link_busy: Vec<f64>,
    /// The classes in the order they came (Python's dict order); a run has tens at once, so a
    /// path's class is found by looking.
    classes: Vec<TransferClass>,
    classes_version: u64,
    /// Background flows: per key, per link (in the order given) its groups.
    background: HashMap<String, Table>,
    /// Per link: its flows whatever their key, (demand, how many) in the order the demands came;
    /// `None` when it has none.
    flows: Vec<Option<Vec<(f64, i64)>>>,
    load: Vec<f64>,
    bg_link_rate: Vec<Option<f64>>,
    loaded: Vec<bool>,
    /// Links whose flows changed since their rates were filled.
    refill: Vec<bool>,
    group_args: Vec<Option<GroupArgs>>,
    engine_rates: Vec<Option<Vec<f64>>>,
    alone_rates: Vec<Option<Vec<f64>>>,
    flows_version: u64,
    layout: Option<(u64, u64, Layout)>,
    layouts_made: u64,
    last_fill: Option<(u64, Vec<f64>)>,
    /// The time everything was settled to.
    last: f64,
    seq: u64,
    /// Transfers started.
    pub transfers: u64,
}

/// The transfers that finished at an instant (their sequence numbers, in the order they were
/// found done) and the time to the next finish (`inf`: none).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub finished: Vec<u64>,
    pub next_in: f64,
}

impl FairShare {
    /// Links of `capacity` bytes moved per second, `weight` bytes carried per byte moved (the
    /// target: 1 / compression), `rank` each link's place among the links by name; the clock
    /// at `now`.
    pub fn new(capacity: Vec<f64>, weight: Vec<f64>, rank: Vec<usize>, now: f64) -> Result<Self> {
        let n = capacity.len();
        if weight.len() != n || rank.len() != n {
            return Err(Error::invalid(
                "weight",
                format!(
                    "{} weights and {} ranks for {n} links; expected one each",
                    weight.len(),
                    rank.len()
                ),
            ));
        }
        let mut seen = vec![false; n];
        for &r in &rank {
            if r >= n || std::mem::replace(&mut seen[r], true) {
                return Err(Error::invalid(
                    "rank",
                    format!("{rank:?} is not an order of the {n} links"),
                ));
            }
        }
        for (l, (&c, &w)) in capacity.iter().zip(&weight).enumerate() {
            if !(c.is_finite() && c > 0.0 && w.is_finite() && w > 0.0) {
                return Err(Error::invalid(
                    "capacity",
                    format!("link {l}: capacity {c} and weight {w}; expected both finite and > 0"),
                ));
            }
        }
        Ok(FairShare {
            capacity,
            weight,
            rank,
            users: vec![0; n],
            link_bytes: vec![0; n],
            bg_since: vec![None; n],
            link_busy: vec![0.0; n],
            classes: Vec::new(),
            classes_version: 0,
            background: HashMap::new(),
            flows: vec![None; n],
            load: vec![0.0; n],
            bg_link_rate: vec![None; n],
            loaded: vec![false; n],
            refill: vec![false; n],
            group_args: vec![None; n],
            engine_rates: vec![None; n],
            alone_rates: vec![None; n],
            flows_version: 0,
            layout: None,
            layouts_made: 0,
            last_fill: None,
            last: now,
            seq: 0,
            transfers: 0,
        })
    }

    fn links(&self) -> usize {
        self.capacity.len()
    }

    /// A clock reading must be a number: a NaN or an infinity would poison every sum after it.
    fn check_now(now: f64) -> Result<()> {
        if !now.is_finite() {
            return Err(Error::invalid(
                "now",
                format!("{now}: expected a finite time (seconds)"),
            ));
        }
        Ok(())
    }

    fn check_link(&self, link: usize) -> Result<()> {
        if link >= self.links() {
            return Err(Error::invalid(
                "link",
                format!("{link} is not a link (there are {})", self.links()),
            ));
        }
        Ok(())
    }

    /// Progress every class (and the links' busy time) up to `now`.
    pub fn settle(&mut self, now: f64) -> Result<()> {
        Self::check_now(now)?;
        self.settle_to(now);
        Ok(())
    }

    fn settle_to(&mut self, now: f64) {
        let dt = now - self.last;
        if dt > 0.0 {
            for c in &mut self.classes {
                if !c.heap.is_empty() {
                    c.work += c.rate * dt;
                }
            }
            for l in 0..self.links() {
                if self.users[l] > 0 || self.loaded[l] {
                    self.link_busy[l] += dt;
                }
            }
        }
        self.last = now;
    }

    /// A transfer of `nbytes` over `path` starts at `now`; returns its sequence number.
    pub fn start(&mut self, now: f64, path: &[usize], nbytes: u64) -> Result<u64> {
        if path.is_empty() || nbytes == 0 {
            return Err(Error::invalid(
                "path",
                format!("{path:?} for {nbytes} bytes: a transfer crosses a link and moves bytes"),
            ));
        }
        for &l in path {
            self.check_link(l)?;
        }
        Self::check_now(now)?;
        self.settle_to(now);
        let at = match self.classes.iter().position(|c| c.path == path) {
            Some(at) => at,
            None => {
                self.classes.push(TransferClass {
                    path: path.to_vec(),
                    work: 0.0,
                    rate: 0.0,
                    heap: Vec::new(),
                });
                self.classes_version += 1;
                self.classes.len() - 1
            }
        };
        self.seq += 1;
        let seq = self.seq;
        let c = &mut self.classes[at];
        heapq::push(
            &mut c.heap,
            Mark {
                mark: c.work + nbytes as f64,
                seq,
                nbytes,
            },
        );
        for &l in path {
            self.users[l] += 1;
        }
        self.transfers += 1;
        Ok(seq)
    }

    fn release(&mut self, link: usize) {
        self.users[link] -= 1;
    }

    fn carried(&mut self, link: usize, nbytes: f64) {
        self.link_bytes[link] =
            self.link_bytes[link].saturating_add(py_round(nbytes * self.weight[link]));
    }

    /// `link`'s background bytes since `bg_since` up to the last settle.
    fn bg_pending(&self, link: usize) -> i64 {
        let Some(rate) = self.bg_link_rate[link] else {
            return 0;
        };
        let since = self.bg_since[link].unwrap_or(self.last);
        py_round(rate * (self.last - since) * self.weight[link])
    }

    /// `link`'s background rate is about to change: count what it carried so far.
    fn fold(&mut self, link: usize) {
        self.link_bytes[link] = self.link_bytes[link].saturating_add(self.bg_pending(link));
        self.bg_since[link] = Some(self.last);
    }

    /// Bytes each link carried up to the last settle (after compression on the target).
    pub fn link_bytes(&self) -> Vec<i64> {
        (0..self.links())
            .map(|l| self.link_bytes[l].saturating_add(self.bg_pending(l)))
            .collect()
    }

    /// Seconds each link had a transfer or a background flow on it.
    pub fn link_busy(&self) -> &[f64] {
        &self.link_busy
    }

    /// How many transfers cross each link now.
    pub fn users(&self) -> &[u64] {
        &self.users
    }

    /// Each link's background demand now (bytes/s).
    pub fn load(&self) -> &[f64] {
        &self.load
    }

    /// Bytes moved (read, before compression) over `link` up to `now`, transfers under way
    /// included. Changes nothing.
    pub fn moved(&self, link: usize, now: f64) -> Result<f64> {
        self.check_link(link)?;
        Self::check_now(now)?;
        let ahead = now - self.last;
        let mut out =
            self.link_bytes[link].saturating_add(self.bg_pending(link)) as f64 / self.weight[link];
        for c in &self.classes {
            if c.path.contains(&link) {
                let work = c.work + c.rate * ahead;
                let mut sum = 0.0;
                for m in &c.heap {
                    sum += py_max(0.0, m.nbytes as f64 - (m.mark - work));
                }
                out += sum;
            }
        }
        Ok(out)
    }

    fn remove_class(&mut self, at: usize) {
        self.classes.remove(at);
        self.classes_version += 1;
    }

    /// Class `at`'s transfer of `nbytes` left its links (finished or cancelled).
    fn leave_links(&mut self, at: usize, nbytes: u64) {
        for k in 0..self.classes[at].path.len() {
            let l = self.classes[at].path[k];
            self.release(l);
            self.carried(l, nbytes as f64);
        }
    }

    /// Takes transfer `seq` off its class at `now`; returns the bytes it had moved, or None
    /// when it is not under way (finished already).
    pub fn cancel(&mut self, seq: u64, now: f64) -> Result<Option<u64>> {
        Self::check_now(now)?;
        self.settle_to(now);
        let found = self
            .classes
            .iter()
            .enumerate()
            .find_map(|(at, c)| c.heap.iter().position(|m| m.seq == seq).map(|i| (at, i)));
        let Some((at, i)) = found else {
            return Ok(None);
        };
        let c = &mut self.classes[at];
        let m = c.heap[i];
        let left = py_round(m.nbytes as f64 - (m.mark - c.work));
        let moved = left.clamp(0, m.nbytes as i64) as u64;
        c.heap.remove(i);
        heapq::heapify(&mut c.heap);
        let empty = c.heap.is_empty();
        self.leave_links(at, moved);
        if empty {
            self.remove_class(at);
        }
        Ok(Some(moved))
    }

    /// Sets the background of `key` at `now`: per link, groups of equal flows (demand per flow
    /// in bytes/s, how many); groups with no demand or no flow are dropped. Returns whether it
    /// changed anything.
    pub fn set_flows(&mut self, key: &str, now: f64, flows: Table) -> Result<bool> {
        Self::check_now(now)?;
        let mut kept: Table = Vec::new();
        for (link, groups) in flows {
            self.check_link(link)?;
            let g: Vec<(f64, i64)> = groups
                .into_iter()
                .filter(|&(d, n)| d > 0.0 && n > 0)
                .collect();
            if g.is_empty() {
                continue;
            }
            // A link named twice: the later groups stand (as a dict's later key does).
            match kept.iter_mut().find(|(l, _)| *l == link) {
                Some(slot) => slot.1 = g,
                None => kept.push((link, g)),
            }
        }
        let old = self.background.get(key).cloned().unwrap_or_default();
        if same_tables(&old, &kept) {
            return Ok(false);
        }
        self.settle_to(now);
        self.flows_version += 1;
        self.background.remove(key);
        if !kept.is_empty() {
            self.background.insert(key.to_string(), kept.clone());
        }
        for (sign, table) in [(-1i64, &old), (1i64, &kept)] {
            for (link, groups) in table {
                let per = self.flows[*link].get_or_insert_with(Vec::new);
                for &(d, n) in groups {
                    match per.iter().position(|e| e.0 == d) {
                        Some(i) => {
                            let left = per[i].1 + sign * n;
                            if left != 0 {
                                per[i].1 = left;
                            } else {
                                per.remove(i);
                            }
                        }
                        None => {
                            let left = sign * n;
                            if left != 0 {
                                per.push((d, left));
                            }
                        }
                    }
                }
                let mut total = 0.0;
                for &(d, n) in groups {
                    total += d * n as f64;
                }
                self.load[*link] += sign as f64 * total;
            }
        }
        let mut changed: Vec<usize> = old.iter().chain(&kept).map(|(l, _)| *l).collect();
        changed.sort_unstable();
        changed.dedup();
        for &link in &changed {
            self.refill[link] = true;
            self.group_args[link] = None;
            self.engine_rates[link] = None;
            self.alone_rates[link] = None;
        }
        for &link in &changed {
            if self.flows[link].as_ref().is_some_and(|f| !f.is_empty()) {
                self.loaded[link] = true;
            } else {
                self.flows[link] = None;
                self.fold(link);
                self.bg_link_rate[link] = None;
                self.load[link] = 0.0;
                self.loaded[link] = false;
            }
        }
        Ok(true)
    }

    fn groups(&mut self, link: usize) -> &GroupArgs {
        let (flows, w) = (&self.flows, self.weight[link]);
        self.group_args[link].get_or_insert_with(|| {
            let per = flows[link].as_deref().unwrap_or(&[]);
            GroupArgs {
                groups: per
                    .iter()
                    .map(|&(d, n)| Group {
                        link,
                        demand: d / w,
                        flows: n as u64,
                    })
                    .collect(),
                counts: per.iter().map(|e| e.1 as u64).collect(),
            }
        })
    }

    /// `link`'s per-flow rates from the filling's, and its background total — unless the
    /// filling gave the same rates as last time for the same flows.
    fn set_flow_rates(&mut self, link: usize, rates: &[f64]) {
        if self.engine_rates[link].as_deref() == Some(rates) {
            return;
        }
        self.engine_rates[link] = Some(rates.to_vec());
        let w = self.weight[link];
        let g = self.groups(link);
        let mut total = 0.0;
        for (r, &n) in rates.iter().zip(&g.counts) {
            total += r * w * n as f64;
        }
        self.fold(link);
        self.bg_link_rate[link] = Some(total);
    }

    /// The layout of the classes and flows now: the one kept when neither changed since it was
    /// made, else a new one. Taken out (the caller puts it back with `keep_layout`).
    fn take_layout(&mut self) -> Layout {
        if let Some((cv, fv, layout)) = self.layout.take() {
            if cv == self.classes_version && fv == self.flows_version {
                return layout;
            }
        }
        let n = self.links();
        let mut shared = vec![false; n];
        for c in &self.classes {
            for &l in &c.path {
                shared[l] = true;
            }
        }
        let mut filled: Vec<usize> = (0..n)
            .filter(|&l| shared[l] && self.flows[l].is_some())
            .collect();
        filled.sort_by_key(|&l| self.rank[l]);
        let mut background = Vec::new();
        let mut counts = Vec::with_capacity(filled.len());
        for &l in &filled {
            let g = &self.groups(l).groups;
            counts.push(g.len());
            background.extend_from_slice(g);
        }
        self.layouts_made += 1;
        Layout {
            shared,
            filled,
            counts,
            background,
            id: self.layouts_made,
        }
    }

    fn keep_layout(&mut self, layout: Layout) {
        self.layout = Some((self.classes_version, self.flows_version, layout));
    }

    /// The max-min fair rates of every class and background flow now; returns the time to the
    /// next finish (inf: none).
    fn allocate(&mut self) -> Result<f64> {
        let layout = self.take_layout();
        // The layout was made for these classes, in this order (any change of them makes it
        // again).
        let classes: Vec<Class<'_>> = self
            .classes
            .iter()
            .map(|c| Class {
                path: &c.path,
                transfers: c.heap.len() as u64,
            })
            .collect();
        let filling = max_min_rates(&self.capacity, &classes, &layout.background);
        let (class_rates, bg_rates) = match filling {
            Ok(r) => r,
            Err(e) => {
                self.keep_layout(layout);
                return Err(e);
            }
        };
        let mut next_in = f64::INFINITY;
        for (c, &r) in self.classes.iter_mut().zip(&class_rates) {
            c.rate = r;
            if r > 0.0 {
                next_in = py_min(next_in, (c.heap[0].mark - c.work) / r);
            }
        }
        let same = self
            .last_fill
            .as_ref()
            .is_some_and(|(id, rates)| *id == layout.id && *rates == bg_rates);
        if !same {
            let mut at = 0;
            for (&link, &k) in layout.filled.iter().zip(&layout.counts) {
                self.set_flow_rates(link, &bg_rates[at..at + k]);
                at += k;
            }
            self.last_fill = Some((layout.id, bg_rates));
        }
        for link in 0..self.links() {
            if self.refill[link] && !layout.shared[link] && self.flows[link].is_some() {
                self.fill_alone(link)?;
            }
        }
        // Those filled with transfers are filled again when the transfers are gone.
        for link in 0..self.links() {
            self.refill[link] =
                layout.shared[link] && (self.refill[link] || self.flows[link].is_some());
        }
        self.keep_layout(layout);
        Ok(next_in)
    }

    /// The rates of `link`'s flows with no transfer on it, computed once per change of its
    /// flows; straight from the demands when they fit on a link that weighs a byte as a byte.
    fn fill_alone(&mut self, link: usize) -> Result<()> {
        let cap = self.capacity[link];
        if self.alone_rates[link].is_none() && self.weight[link] == 1.0 {
            let per = self.flows[link].as_deref().unwrap_or(&[]);
            let mut total = 0.0;
            for &(d, n) in per {
                total += d * n as f64;
            }
            if total <= cap * (1.0 - FIT_MARGIN) {
                let rates: Vec<f64> = per.iter().map(|e| e.0).collect();
                self.alone_rates[link] = Some(rates.clone());
                if self.engine_rates[link].as_deref() != Some(&rates[..]) {
                    self.engine_rates[link] = Some(rates);
                    self.fold(link);
                    self.bg_link_rate[link] = Some(total);
                }
                return Ok(());
            }
        }
        let rates = match self.alone_rates[link].clone() {
            Some(r) => r,
            None => {
                let groups = self.groups(link).groups.clone();
                let rates = match demands_if_they_fit(cap, &groups) {
                    Some(r) => r,
                    None => max_min_rates(&self.capacity, &[], &groups)?.1,
                };
                self.alone_rates[link] = Some(rates.clone());
                rates
            }
        };
        self.set_flow_rates(link, &rates);
        Ok(())
    }

    /// Finish what is done, recompute the rates; the finished transfers and the time to the
    /// next finish.
    pub fn reschedule(&mut self) -> Result<Schedule> {
        let mut done = Vec::new();
        loop {
            let mut finished = false;
            let mut at = 0;
            while at < self.classes.len() {
                loop {
                    let c = &mut self.classes[at];
                    let Some(top) = c.heap.first() else { break };
                    if top.mark - c.work > SLACK {
                        break;
                    }
                    let Some(m) = heapq::pop(&mut c.heap) else {
                        break;
                    };
                    self.leave_links(at, m.nbytes);
                    done.push(m.seq);
                    finished = true;
                }
                if self.classes[at].heap.is_empty() {
                    self.remove_class(at);
                } else {
                    at += 1;
                }
            }
            let next_in = self.allocate()?;
            if next_in > 0.0 || !finished {
                return Ok(Schedule {
                    finished: done,
                    next_in,
                });
            }
        }
    }

    /// The timer set for the earliest finish fired at `now`: whatever is due is done. Late in a
    /// long run a finish closer than the clock's resolution cannot move the clock (`now + dt ==
    /// now`): what is left of it within a few ulps of now at its rate is due too, or the timer
    /// would fire again and again at the same instant.
    pub fn wake(&mut self, now: f64) -> Result<Schedule> {
        Self::check_now(now)?;
        self.settle_to(now);
        let tick = py_max(1e-9, now.abs() * 1e-14);
        for c in &mut self.classes {
            let Some(top) = c.heap.first() else { continue };
            let left = top.mark - c.work;
            let due = py_max(py_max(SLACK, 1e-9 * top.nbytes as f64), c.rate * tick);
            if left <= due {
                c.work = py_max(c.work, top.mark);
            }
        }
        self.reschedule()
    }

    /// The classes now: (path, transfers, rate per transfer), in the order they came.
    pub fn classes(&self) -> Vec<(Vec<usize>, u64, f64)> {
        self.classes
            .iter()
            .map(|c| (c.path.clone(), c.heap.len() as u64, c.rate))
            .collect()
    }

    /// The background by key (sorted): per link, the groups (demand per flow, flows) set.
    pub fn background(&self) -> Vec<(String, Table)> {
        let mut out: Vec<_> = self
            .background
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every link's background flows now: (link, demand per flow, flows, rate per flow — the
    /// filling's in bytes moved, times the link's weight; NaN until the flows' first fill).
    pub fn flows(&self) -> Vec<(usize, f64, i64, f64)> {
        let mut out = Vec::new();
        for (l, per) in self.flows.iter().enumerate() {
            let rates = self.engine_rates[l].as_deref();
            for (i, &(d, n)) in per.as_deref().unwrap_or(&[]).iter().enumerate() {
                let rate = rates.map_or(f64::NAN, |r| r[i] * self.weight[l]);
                out.push((l, d, n, rate));
            }
        }
        out
    }
}

/// Python's `==` of two background tables (dicts link -> tuple of groups): the same links, each
/// with the same groups in the same order.
fn same_tables(a: &Table, b: &Table) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(l, g)| b.iter().any(|(m, h)| m == l && h == g))
}

/// The rates the filling gives background `groups` alone on a link of `capacity` when their
/// demands fit in it with room to spare: each its own demand (the filling, in ascending demand,
/// gives a group its demand while the flows left could all have it — true for every group when
/// all of them fit); None otherwise.
pub fn demands_if_they_fit(capacity: f64, groups: &[Group]) -> Option<Vec<f64>> {
    let mut total = 0.0;
    for g in groups {
        total += g.demand * g.flows as f64;
    }
    if total > capacity * (1.0 - FIT_MARGIN) {
        return None;
    }
    Some(groups.iter().map(|g| g.demand).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn two_links() -> FairShare {
        // Link 0: 400 B/s; link 1: 800 B/s.
        FairShare::new(vec![400.0, 800.0], vec![1.0, 1.0], vec![0, 1], 0.0).unwrap()
    }

    #[test]
    fn transfers_share_a_link_then_the_last_takes_it_all() {
        let mut s = two_links();
        let a = s.start(0.0, &[1], 800).unwrap();
        let b = s.start(0.0, &[1], 400).unwrap();
        let first = s.reschedule().unwrap();
        assert!(first.finished.is_empty());
        // 400 B/s each: b's 400 bytes in 1 s.
        assert_eq!(first.next_in, 1.0);
        let second = s.wake(1.0).unwrap();
        assert_eq!(second.finished, vec![b]);
        // a has 400 left, alone at 800 B/s.
        assert_eq!(second.next_in, 0.5);
        let third = s.wake(1.5).unwrap();
        assert_eq!(third.finished, vec![a]);
        assert_eq!(third.next_in, f64::INFINITY);
        assert_eq!(s.link_bytes(), vec![0, 1200]);
        assert_eq!(s.link_busy(), &[0.0, 1.5]);
        assert_eq!(s.users(), &[0, 0]);
    }

    #[test]
    fn a_cancelled_transfer_counts_what_it_moved_and_frees_its_share() {
        let mut s = two_links();
        let a = s.start(0.0, &[0, 1], 1000).unwrap();
        s.reschedule().unwrap();
        assert_eq!(s.cancel(a, 1.0).unwrap(), Some(400));
        assert_eq!(s.cancel(a, 1.0).unwrap(), None);
        assert!(s.cancel(a, f64::NAN).is_err());
        assert!(s.start(f64::INFINITY, &[0], 5).is_err());
        assert!(s.set_flows("k", f64::NAN, vec![]).is_err());
        assert_eq!(s.link_bytes(), vec![400, 400]);
        assert!(s.classes().is_empty());
    }

    #[test]
    fn background_takes_its_demand_and_leaves_the_rest() {
        let mut s = two_links();
        assert!(s
            .set_flows("g", 0.0, vec![(1, vec![(100.0, 2), (0.0, 5)])])
            .unwrap());
        // The same flows again change nothing (the zero demand was dropped).
        assert!(!s.set_flows("g", 0.0, vec![(1, vec![(100.0, 2)])]).unwrap());
        assert_eq!(s.load(), &[0.0, 200.0]);
        s.start(0.0, &[1], 600).unwrap();
        let r = s.reschedule().unwrap();
        assert_eq!(r.next_in, 1.0);
        assert_eq!(s.flows(), vec![(1, 100.0, 2, 100.0)]);
        s.wake(1.0).unwrap();
        assert!(s.set_flows("g", 2.0, vec![]).unwrap());
        // 600 of the transfer and 200 B/s of background for 2 s.
        assert_eq!(s.link_bytes(), vec![0, 1000]);
        assert_eq!(s.load(), &[0.0, 0.0]);
    }

    proptest! {
        /// The heap pops in (mark, seq) order whatever the pushes, removals and heapify did.
        #[test]
        fn the_heap_pops_in_order(
            marks in proptest::collection::vec(0u8..20, 1..60),
            gone in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut heap = Vec::new();
            for (seq, &m) in marks.iter().enumerate() {
                heapq::push(&mut heap, Mark { mark: f64::from(m), seq: seq as u64, nbytes: 1 });
            }
            for g in gone {
                if !heap.is_empty() {
                    heap.remove(g.index(heap.len()));
                    heapq::heapify(&mut heap);
                }
            }
            let mut out = Vec::new();
            while let Some(m) = heapq::pop(&mut heap) {
                out.push((m.mark, m.seq));
            }
            let mut sorted = out.clone();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            prop_assert_eq!(out, sorted);
        }
    }
}
