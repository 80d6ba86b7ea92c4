//! Random: Envoy's `RandomLoadBalancer`, `in_use[draw % len]`; and PASSTHROUGH's choice among
//! all of a cluster's endpoints.

/// A uniformly random endpoint of `in_use` (one draw); `None` when it is empty.
pub(super) fn pick(in_use: &[usize], random: &mut dyn FnMut() -> u64) -> Option<usize> {
    let len = in_use.len() as u64;
    if len == 0 {
        return None;
    }
    in_use.get((random() % len) as usize).copied()
}

/// A uniformly random index below `endpoints` (one draw), whatever the endpoints' health;
/// `None` when there are none.
pub(super) fn pick_any(endpoints: usize, random: &mut dyn FnMut() -> u64) -> Option<usize> {
    let len = endpoints as u64;
    if len == 0 {
        return None;
    }
    Some((random() % len) as usize)
}
