//! A tree ensemble laid out for scoring batches: every tree is a run of
//! 16-byte nodes (f32 thresholds) in depth-first order, leaves loop back to
//! themselves, and a block of rows walks one tree at a time, several rows in
//! lockstep.
//!
//! Why this shape: tract's own TreeEnsembleClassifier scans every leaf of
//! every tree per row (quadratic in the tree count). Walking a tree is a
//! chain of dependent loads, so one row at a time leaves the core waiting on
//! memory; eight rows in lockstep keep eight chains in flight (fewer rows
//! than that walk one at a time). A leaf that points at itself lets a lane
//! that finished early keep stepping without a branch, and the comparison
//! picks the child by index, not by a jump.
//!
//! Limits: at most 2^28 features, 2^31 nodes; every listed leaf needs a
//! weight (onnxruntime refuses the same models); a tree must not loop.

use std::collections::HashMap;
use std::fmt::Debug;

/// How a branch compares the feature with its threshold (`nodes_modes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Leq = 0,
    Lt = 1,
    Gte = 2,
    Gt = 3,
    Eq = 4,
    Neq = 5,
}

impl Mode {
    /// `None` is LEAF; `Err` an unknown mode.
    pub fn parse(s: &str) -> Result<Option<Mode>, ()> {
        Ok(Some(match s {
            "BRANCH_LEQ" => Mode::Leq,
            "BRANCH_LT" => Mode::Lt,
            "BRANCH_GTE" => Mode::Gte,
            "BRANCH_GT" => Mode::Gt,
            "BRANCH_EQ" => Mode::Eq,
            "BRANCH_NEQ" => Mode::Neq,
            "LEAF" => return Ok(None),
            _ => return Err(()),
        }))
    }
}

/// The node and leaf-weight lists of a tree op, as the ONNX attributes give
/// them (one entry per node; one per leaf weight).
#[derive(Clone, Debug, Default)]
pub struct Attrs {
    pub node_tree: Vec<i64>,
    pub node_id: Vec<i64>,
    pub feature: Vec<i64>,
    /// `None` for a leaf.
    pub mode: Vec<Option<Mode>>,
    pub value: Vec<f64>,
    pub true_id: Vec<i64>,
    pub false_id: Vec<i64>,
    /// Shorter than the node list means false for the rest.
    pub missing_true: Vec<bool>,
    pub w_tree: Vec<i64>,
    pub w_node: Vec<i64>,
    pub w_target: Vec<i64>,
    pub w_value: Vec<f64>,
}

/// The scalar type thresholds and sums are kept in: f32 for float inputs,
/// f64 for double inputs, as onnxruntime does.
pub trait Real:
    Copy
    + Default
    + PartialOrd
    + Debug
    + Send
    + Sync
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    fn from_f64(v: f64) -> Self;
    fn from_usize(v: usize) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
}

impl Real for f32 {
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn from_usize(v: usize) -> Self {
        v as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
}

impl Real for f64 {
    fn from_f64(v: f64) -> Self {
        v
    }
    fn from_usize(v: usize) -> Self {
        v as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
}

const FEATURE_MASK: u32 = (1 << 28) - 1;
const MODE_SHIFT: u32 = 28;
const MISSING_BIT: u32 = 1 << 31;

/// One node. `bits` holds the feature index, the mode (bits 28..31) and
/// whether a missing value goes to the true child (bit 31). `next[1]` is the
/// true child; a leaf's children are itself and its threshold slot holds
/// its first weight.
#[derive(Clone, Copy, Debug)]
struct Node<T> {
    bits: u32,
    thr: T,
    next: [u32; 2],
}

/// A tree's entry point and the longest path from it to a leaf.
#[derive(Clone, Copy, Debug)]
struct Tree {
    root: u32,
    depth: u32,
}

/// Which comparison every branch uses, when they all use the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Uniform(Mode),
    Mixed,
}

#[derive(Debug)]
pub struct Forest<T> {
    nodes: Vec<Node<T>>,
    trees: Vec<Tree>,
    /// Per node: the range of its leaf weights in `weights`.
    ranges: Vec<[u32; 2]>,
    weights: Vec<(u32, T)>,
    /// Per node: the range of its non-zero leaf weights in `sparse`, and
    /// the outputs any of its weights names (bit k for output k). A random
    /// forest's leaf lists a weight for every class, nearly all of them
    /// zero (the bundled classifier: 172k of 190k); a summed zero changes
    /// no sum (a sum starts at +0 and never becomes -0), so summing only
    /// the rest while voting with the mask gives the same bits for a
    /// fraction of the work.
    sparse_ranges: Vec<[u32; 2]>,
    sparse: Vec<(u32, T)>,
    touched: Vec<u64>,
    /// Every output id is below 64, so `touched` is exact.
    masks: bool,
    layout: Layout,
    missing: bool,
    /// Inputs need at least this many columns.
    pub min_columns: usize,
}

/// Rows walk a tree together in groups of this many.
const LANES: usize = 8;

impl<T: Real> Forest<T> {
    /// Builds the layout. `outputs` is the number of classes or targets:
    /// weight ids must lie below it (when it is above 1; a single-output
    /// ensemble ignores them, as onnxruntime does).
    pub fn build(a: &Attrs, outputs: usize) -> Result<Forest<T>, String> {
        let n = a.node_id.len();
        for (name, len) in [
            ("nodes_treeids", a.node_tree.len()),
            ("nodes_featureids", a.feature.len()),
            ("nodes_modes", a.mode.len()),
            ("nodes_values", a.value.len()),
            ("nodes_truenodeids", a.true_id.len()),
            ("nodes_falsenodeids", a.false_id.len()),
        ] {
            if len != n {
                return Err(format!("{name} has {len} entries, nodes_nodeids {n}"));
            }
        }
        let w = a.w_node.len();
        if a.w_tree.len() != w || a.w_target.len() != w || a.w_value.len() != w {
            return Err(format!(
                "the leaf weight lists differ in length (node ids {w}, tree ids {}, target/class ids {}, weights {})",
                a.w_tree.len(),
                a.w_target.len(),
                a.w_value.len()
            ));
        }
        if n == 0 {
            return Err("the ensemble has no nodes".into());
        }
        if n >= (1 << 31) {
            return Err(format!("{n} nodes are more than this implementation holds"));
        }
        let mut index = HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((a.node_tree[i], a.node_id[i]), i).is_some() {
                return Err(format!(
                    "node {} of tree {} is listed twice",
                    a.node_id[i], a.node_tree[i]
                ));
            }
        }

        // Leaf weights in (tree, node, listing) order, the order onnxruntime
        // applies them in; weights on branch nodes are ignored, as there.
        let mut order: Vec<usize> = (0..w).collect();
        order.sort_by_key(|&i| (a.w_tree[i], a.w_node[i], i));
        let mut leaf_weights: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        for i in order {
            let Some(&at) = index.get(&(a.w_tree[i], a.w_node[i])) else {
                return Err(format!(
                    "a leaf weight names node {} of tree {}, which does not exist",
                    a.w_node[i], a.w_tree[i]
                ));
            };
            if a.mode[at].is_some() {
                continue;
            }
            let id = a.w_target[i];
            if id < 0 || (outputs > 1 && id as usize >= outputs) {
                return Err(format!(
                    "a weight of node {} in tree {} goes to output {id}, but there are {outputs}",
                    a.w_node[i], a.w_tree[i]
                ));
            }
            leaf_weights[at].push((id as u32, a.w_value[i]));
        }
        for (i, ws) in leaf_weights.iter().enumerate() {
            if a.mode[i].is_none() && ws.is_empty() {
                return Err(format!(
                    "leaf {} of tree {} has no weight",
                    a.node_id[i], a.node_tree[i]
                ));
            }
        }

        let mut modes = a.mode.iter().flatten();
        let first = modes.next().copied();
        let layout = match first {
            Some(m) if modes.all(|x| *x == m) => Layout::Uniform(m),
            Some(_) => Layout::Mixed,
            None => Layout::Uniform(Mode::Leq),
        };

        let mut f = Forest {
            nodes: Vec::with_capacity(n),
            trees: Vec::new(),
            ranges: Vec::with_capacity(n),
            weights: Vec::with_capacity(w),
            sparse_ranges: Vec::new(),
            sparse: Vec::new(),
            touched: Vec::new(),
            masks: true,
            layout,
            missing: false,
            min_columns: 1,
        };
        // new index of each listed node, once placed
        let mut placed: Vec<u32> = vec![u32::MAX; n];
        let mut depth_of: Vec<u32> = vec![0; n];
        // A tree starts wherever the tree id changes in the node list: that
        // is what onnxruntime takes for the roots.
        for i in 0..n {
            if i > 0 && a.node_tree[i] == a.node_tree[i - 1] {
                continue;
            }
            let root = f.place(a, &index, &leaf_weights, &mut placed, &mut depth_of, i)?;
            f.trees.push(Tree {
                root,
                depth: depth_of[i],
            });
        }
        f.index_sparse();
        Ok(f)
    }

    /// Fills `sparse_ranges`, `sparse` and `touched` from the placed
    /// leaves' weights.
    fn index_sparse(&mut self) {
        self.sparse_ranges = Vec::with_capacity(self.ranges.len());
        self.touched = Vec::with_capacity(self.ranges.len());
        for &[s, e] in &self.ranges {
            let start = self.sparse.len() as u32;
            let mut mask = 0u64;
            for &(k, w) in &self.weights[s as usize..e as usize] {
                if k < 64 {
                    mask |= 1 << k;
                } else {
                    self.masks = false;
                }
                // NaN is kept: it is not equal to zero.
                if w != T::default() {
                    self.sparse.push((k, w));
                }
            }
            self.sparse_ranges.push([start, self.sparse.len() as u32]);
            self.touched.push(mask);
        }
    }

    /// Places the tree under listed node `start` depth-first (iteratively:
    /// trees can be deep), checking children exist and nothing loops.
    fn place(
        &mut self,
        a: &Attrs,
        index: &HashMap<(i64, i64), usize>,
        leaf_weights: &[Vec<(u32, f64)>],
        placed: &mut [u32],
        depth_of: &mut [u32],
        start: usize,
    ) -> Result<u32, String> {
        const OPEN: u32 = u32::MAX - 1;
        if placed[start] != u32::MAX {
            return Ok(placed[start]);
        }
        // (listed index, children pushed?)
        let mut stack = vec![(start, false)];
        while let Some((i, expanded)) = stack.pop() {
            let tree = a.node_tree[i];
            let Some(mode) = a.mode[i] else {
                if placed[i] == u32::MAX {
                    let me = self.nodes.len() as u32;
                    let ws = &leaf_weights[i];
                    let start = self.weights.len() as u32;
                    self.weights
                        .extend(ws.iter().map(|&(id, v)| (id, T::from_f64(v))));
                    self.ranges.push([start, self.weights.len() as u32]);
                    self.nodes.push(Node {
                        bits: 0,
                        thr: T::from_f64(ws[0].1),
                        next: [me, me],
                    });
                    placed[i] = me;
                    depth_of[i] = 0;
                }
                continue;
            };
            let child = |id: i64, which: &str| -> Result<usize, String> {
                match index.get(&(tree, id)) {
                    Some(&c) if c == i => Err(format!(
                        "node {} of tree {tree} is its own {which} child",
                        a.node_id[i]
                    )),
                    Some(&c) => Ok(c),
                    None => Err(format!(
                        "node {} of tree {tree}: {which} child {id} does not exist",
                        a.node_id[i]
                    )),
                }
            };
            let t = child(a.true_id[i], "true")?;
            let fl = child(a.false_id[i], "false")?;
            if !expanded {
                if placed[i] == OPEN {
                    return Err(format!("tree {tree} loops through node {}", a.node_id[i]));
                }
                if placed[i] != u32::MAX {
                    continue;
                }
                // Reserve the slot now so the node precedes its subtrees.
                let me = self.nodes.len() as u32;
                let feature = a.feature[i];
                if !(0..=FEATURE_MASK as i64).contains(&feature) {
                    return Err(format!(
                        "node {} of tree {tree} reads feature {feature}",
                        a.node_id[i]
                    ));
                }
                self.min_columns = self.min_columns.max(feature as usize + 1);
                let missing = a.missing_true.get(i).copied().unwrap_or(false);
                self.missing |= missing;
                self.nodes.push(Node {
                    bits: feature as u32
                        | ((mode as u32) << MODE_SHIFT)
                        | if missing { MISSING_BIT } else { 0 },
                    thr: T::from_f64(a.value[i]),
                    next: [u32::MAX, u32::MAX],
                });
                self.ranges.push([0, 0]);
                placed[i] = OPEN;
                depth_of[i] = me; // remembers the slot until the node closes
                stack.push((i, true));
                for c in [t, fl] {
                    if placed[c] == OPEN {
                        return Err(format!("tree {tree} loops through node {}", a.node_id[c]));
                    }
                    if placed[c] == u32::MAX {
                        stack.push((c, false));
                    }
                }
            } else {
                let me = depth_of[i];
                let (pt, pf) = (placed[t], placed[fl]);
                if pt >= OPEN || pf >= OPEN {
                    return Err(format!("tree {tree} loops through node {}", a.node_id[i]));
                }
                self.nodes[me as usize].next = [pf, pt];
                placed[i] = me;
                depth_of[i] = 1 + depth_of[t].max(depth_of[fl]);
            }
        }
        Ok(placed[start])
    }

    pub fn trees(&self) -> usize {
        self.trees.len()
    }

    /// The first weight of a leaf (what a single-output ensemble adds).
    #[inline(always)]
    pub fn first_weight(&self, leaf: u32) -> T {
        self.nodes[leaf as usize].thr
    }

    /// All weights of a leaf, as (output, weight).
    #[inline(always)]
    pub fn leaf_weights(&self, leaf: u32) -> &[(u32, T)] {
        let [s, e] = self.ranges[leaf as usize];
        &self.weights[s as usize..e as usize]
    }

    /// A leaf's non-zero weights, as (output, weight), in listing order.
    #[inline(always)]
    pub fn sparse_weights(&self, leaf: u32) -> &[(u32, T)] {
        let [s, e] = self.sparse_ranges[leaf as usize];
        &self.sparse[s as usize..e as usize]
    }

    /// The outputs a leaf's weights name, bit k for output k; exact only
    /// when [`Self::has_masks`].
    #[inline(always)]
    pub fn touched(&self, leaf: u32) -> u64 {
        self.touched[leaf as usize]
    }

    /// Whether every output id is below 64, so [`Self::touched`] is exact.
    pub fn has_masks(&self) -> bool {
        self.masks
    }

    /// Calls `visit(tree, row, leaf)` for every tree and row of `x` (`rows`
    /// rows of `cols` values), tree by tree within the block, rows in order
    /// within a tree, so a per-row accumulator sees trees in listing order.
    pub fn walk_block(
        &self,
        x: &[T],
        cols: usize,
        rows: usize,
        visit: &mut impl FnMut(usize, u32),
    ) {
        use Mode::*;
        match (self.layout, self.missing) {
            (Layout::Uniform(Leq), false) => self.walk::<Cmp<0, false>>(x, cols, rows, visit),
            (Layout::Uniform(Leq), true) => self.walk::<Cmp<0, true>>(x, cols, rows, visit),
            (Layout::Uniform(Lt), false) => self.walk::<Cmp<1, false>>(x, cols, rows, visit),
            (Layout::Uniform(Lt), true) => self.walk::<Cmp<1, true>>(x, cols, rows, visit),
            (Layout::Uniform(Gte), false) => self.walk::<Cmp<2, false>>(x, cols, rows, visit),
            (Layout::Uniform(Gte), true) => self.walk::<Cmp<2, true>>(x, cols, rows, visit),
            (Layout::Uniform(Gt), false) => self.walk::<Cmp<3, false>>(x, cols, rows, visit),
            (Layout::Uniform(Gt), true) => self.walk::<Cmp<3, true>>(x, cols, rows, visit),
            (Layout::Uniform(Eq), false) => self.walk::<Cmp<4, false>>(x, cols, rows, visit),
            (Layout::Uniform(Eq), true) => self.walk::<Cmp<4, true>>(x, cols, rows, visit),
            (Layout::Uniform(Neq), false) => self.walk::<Cmp<5, false>>(x, cols, rows, visit),
            (Layout::Uniform(Neq), true) => self.walk::<Cmp<5, true>>(x, cols, rows, visit),
            (Layout::Mixed, false) => self.walk::<Cmp<MIXED, false>>(x, cols, rows, visit),
            (Layout::Mixed, true) => self.walk::<Cmp<MIXED, true>>(x, cols, rows, visit),
        }
    }

    fn walk<C: Compare>(
        &self,
        x: &[T],
        cols: usize,
        rows: usize,
        visit: &mut impl FnMut(usize, u32),
    ) {
        if rows == 0 {
            return;
        }
        let nodes = &self.nodes[..];
        for tree in &self.trees {
            let mut first = 0;
            while first < rows {
                let live = LANES.min(rows - first);
                if live < LANES {
                    // Too few rows left to fill the lanes: one at a time.
                    for r in first..rows {
                        let row = &x[r * cols..(r + 1) * cols];
                        let mut at = tree.root;
                        for _ in 0..tree.depth {
                            let node = &nodes[at as usize];
                            let v = row[(node.bits & FEATURE_MASK) as usize];
                            let next = node.next[C::go(v, node.thr, node.bits) as usize];
                            if next == at {
                                break;
                            }
                            at = next;
                        }
                        visit(r, at);
                    }
                    break;
                }
                let row: [&[T]; LANES] =
                    std::array::from_fn(|k| &x[(first + k) * cols..(first + k + 1) * cols]);
                let mut at = [tree.root; LANES];
                for _ in 0..tree.depth {
                    let mut moved = false;
                    for k in 0..LANES {
                        let node = &nodes[at[k] as usize];
                        let v = row[k][(node.bits & FEATURE_MASK) as usize];
                        let next = node.next[C::go(v, node.thr, node.bits) as usize];
                        moved |= next != at[k];
                        at[k] = next;
                    }
                    if !moved {
                        break;
                    }
                }
                for (k, leaf) in at.iter().enumerate() {
                    visit(first + k, *leaf);
                }
                first += LANES;
            }
        }
    }
}

const MIXED: u8 = u8::MAX;

/// A branch's comparison, chosen at compile time for uniform forests.
trait Compare {
    fn go<T: Real>(v: T, thr: T, bits: u32) -> bool;
}

struct Cmp<const MODE: u8, const MISSING: bool>;

impl<const MODE: u8, const MISSING: bool> Compare for Cmp<MODE, MISSING> {
    #[inline(always)]
    fn go<T: Real>(v: T, thr: T, bits: u32) -> bool {
        let mode = if MODE == MIXED {
            ((bits >> MODE_SHIFT) & 7) as u8
        } else {
            MODE
        };
        let hit = match mode {
            0 => v <= thr,
            1 => v < thr,
            2 => v >= thr,
            3 => v > thr,
            4 => v == thr,
            _ => v != thr,
        };
        if MISSING {
            hit | ((bits & MISSING_BIT != 0) & v.is_nan())
        } else {
            hit
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tree 0: x0 <= 0.5 ? leaf 1 (w 1) : leaf 2 (w 2).
    pub(crate) fn stump() -> Attrs {
        Attrs {
            node_tree: vec![0, 0, 0],
            node_id: vec![0, 1, 2],
            feature: vec![0, 0, 0],
            mode: vec![Some(Mode::Leq), None, None],
            value: vec![0.5, 0.0, 0.0],
            true_id: vec![1, 0, 0],
            false_id: vec![2, 0, 0],
            missing_true: vec![],
            w_tree: vec![0, 0],
            w_node: vec![1, 2],
            w_target: vec![0, 0],
            w_value: vec![1.0, 2.0],
        }
    }

    #[test]
    fn a_stump_splits_on_its_threshold() {
        let f = Forest::<f32>::build(&stump(), 1).unwrap();
        let x = [0.5f32, 0.6, f32::NAN];
        let mut got = vec![];
        f.walk_block(&x, 1, 3, &mut |r, leaf| got.push((r, f.first_weight(leaf))));
        assert_eq!(got, vec![(0, 1.0), (1, 2.0), (2, 2.0)]);
    }

    #[test]
    fn a_loop_is_refused() {
        let mut a = stump();
        a.mode[1] = Some(Mode::Leq);
        a.true_id[1] = 0;
        a.false_id[1] = 2;
        a.w_node = vec![2];
        a.w_tree = vec![0];
        a.w_target = vec![0];
        a.w_value = vec![1.0];
        let e = Forest::<f32>::build(&a, 1).unwrap_err();
        assert!(e.contains("loops"), "{e}");
    }

    #[test]
    fn a_leaf_without_weight_is_refused() {
        let mut a = stump();
        a.w_node.pop();
        a.w_tree.pop();
        a.w_target.pop();
        a.w_value.pop();
        let e = Forest::<f32>::build(&a, 1).unwrap_err();
        assert!(e.contains("leaf 2 of tree 0 has no weight"), "{e}");
    }
}
