//! `mirror` / `mirrors`: which copies of a request go out, and the authority they carry. A copy
//! is fire and forget — its response is discarded and it never delays or changes the response
//! to the original request; that is the pipeline's job, this module only decides.

use ambit_common::api::v1::Mirror;

/// The mirrors a request is copied to: each fires when its own uniform draw in
/// `[0, 1_000_000)` is below its `per_million` (so 1 000 000 always, 0 never). `draw` is called
/// once per mirror, in order.
pub fn mirrors_to_fire(mirrors: &[Mirror], mut draw: impl FnMut() -> u32) -> Vec<&Mirror> {
    mirrors.iter().filter(|m| draw() < m.per_million).collect()
}

/// The authority of a mirrored copy: "-shadow" appended to the host, the port kept
/// (`reviews:9080` → `reviews-shadow:9080`), as Envoy's request mirror policy does.
pub fn shadow_authority(authority: &str) -> String {
    let port_start = match authority.rfind(':') {
        // An IPv6 literal's colons are inside the brackets.
        Some(i) if !authority[..i].contains(':') || authority[..i].ends_with(']') => i,
        _ => authority.len(),
    };
    let (host, port) = authority.split_at(port_start);
    format!("{host}-shadow{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror(cluster: &str, per_million: u32) -> Mirror {
        Mirror { cluster: cluster.into(), per_million }
    }

    #[test]
    fn the_shadow_host_gets_the_suffix_and_keeps_its_port() {
        assert_eq!(shadow_authority("httpbin:8000"), "httpbin-shadow:8000");
        assert_eq!(shadow_authority("httpbin.default.svc.cluster.local"), "httpbin.default.svc.cluster.local-shadow");
        assert_eq!(shadow_authority("[fd00::1]:80"), "[fd00::1]-shadow:80");
    }

    #[test]
    fn each_mirror_fires_at_its_own_rate_over_every_draw() {
        // mirrorPercentage 10 % and 100 %: over all 1 000 000 draws, exactly 100 000 and all.
        let mirrors = [mirror("v2", 100_000), mirror("audit", 1_000_000), mirror("off", 0)];
        let mut fired = [0u32; 3];
        for point in 0..1_000_000u32 {
            let draws = std::cell::Cell::new(0);
            for m in mirrors_to_fire(&mirrors, || {
                draws.set(draws.get() + 1);
                point
            }) {
                let i = mirrors.iter().position(|x| x.cluster == m.cluster).unwrap();
                fired[i] += 1;
            }
            assert_eq!(draws.get(), 3, "one independent draw per mirror");
        }
        assert_eq!(fired, [100_000, 1_000_000, 0]);
    }
}
