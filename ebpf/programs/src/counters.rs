use ambit_ebpf_types::Counter;

use crate::maps::AMBIT_COUNTERS;

#[inline(always)]
pub(crate) fn count(counter: Counter) {
    if let Some(slot) = AMBIT_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *slot += 1 };
    }
}
