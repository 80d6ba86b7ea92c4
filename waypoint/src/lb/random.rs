//! Random: Envoy's `RandomLoadBalancer`, `in_use[draw % len]`.

/// A uniformly random endpoint of `in_use` (one draw); `None` when it is empty.
pub(super) fn pick(in_use: &[usize], random: &mut dyn FnMut() -> u64) -> Option<usize> {
    let len = in_use.len() as u64;
    if len == 0 {
        return None;
    }
    in_use.get((random() % len) as usize).copied()
}
