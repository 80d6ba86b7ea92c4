//! Balancers built from Clusters as the control plane writes them, against the behaviour Envoy
//! documents and tests (its own test vectors where it has them: `ring_hash_lb_test.cc`,
//! `maglev_lb_test.cc`).

use std::{collections::VecDeque, net::SocketAddr, sync::Arc, time::Duration};

use ambit_common::api::v1::{
    Cluster, ConsistentHash, HashAlgorithm, HashCookie, LbEndpoint, LoadBalancer, OutlierDetection, SimpleLoadBalancer,
    consistent_hash::Key, load_balancer::Policy as LbPolicy,
};
use http::request::Parts;

use super::{xxhash::xxhash64, *};

fn endpoint(ip: [u8; 4], port: u32) -> LbEndpoint {
    LbEndpoint { address: ip.to_vec(), port, ..Default::default() }
}

/// The hosts of Envoy's ring hash and Maglev tests: 127.0.0.1:90 to :95.
fn envoy_hosts() -> Vec<LbEndpoint> {
    (90..96).map(|port| endpoint([127, 0, 0, 1], port)).collect()
}

fn four() -> Vec<LbEndpoint> {
    (1..=4).map(|i| endpoint([10, 0, 0, i], 8080)).collect()
}

fn cluster(endpoints: Vec<LbEndpoint>, policy: LbPolicy) -> Cluster {
    Cluster {
        hostname: "reviews.bookinfo.svc.cluster.local".into(),
        port: 9080,
        endpoints,
        load_balancer: Some(LoadBalancer { policy: Some(policy) }),
        ..Default::default()
    }
}

fn simple(policy: SimpleLoadBalancer) -> LbPolicy {
    LbPolicy::Simple(policy as i32)
}

fn hashed(key: Key, algorithm: HashAlgorithm, table_size: u64) -> LbPolicy {
    LbPolicy::ConsistentHash(ConsistentHash { key: Some(key), algorithm: algorithm as i32, table_size })
}

fn balancer(cluster: &Cluster) -> Balancer {
    Balancer::new(cluster, 0).expect("the cluster compiles")
}

fn with_panic_threshold(mut cluster: Cluster, min_health_percent: u32) -> Cluster {
    cluster.outlier_detection =
        Some(OutlierDetection { min_health_percent, interval_ms: 10_000, ..Default::default() });
    cluster
}

fn request(build: impl FnOnce(http::request::Builder) -> http::request::Builder) -> Parts {
    build(http::Request::builder().uri("/reviews/1")).body(()).unwrap().into_parts().0
}

const PEER: &str = "10.1.0.2:40000";
const LOCAL: &str = "10.1.0.9:15008";

fn context(request: Option<&Parts>) -> LbContext<'_> {
    LbContext { request, peer: PEER.parse().unwrap(), local: LOCAL.parse().unwrap() }
}

/// Picks with exactly `draws` as the random draws: fails if the pick takes more or fewer.
fn pick_with(b: &Balancer, context: &LbContext<'_>, draws: &[u64]) -> Option<Pick> {
    let mut queue: VecDeque<u64> = draws.iter().copied().collect();
    let pick = b.pick(context, &mut || queue.pop_front().expect("the pick took more draws than given"));
    assert!(queue.is_empty(), "the pick took {} of {} draws", draws.len() - queue.len(), draws.len());
    pick
}

fn index(pick: Option<Pick>) -> Option<usize> {
    pick.map(|p| p.index)
}

#[test]
fn round_robin_rotates_from_the_seed_through_the_endpoints_in_use() {
    let b = Balancer::new(&cluster(four(), simple(SimpleLoadBalancer::RoundRobin)), 6).unwrap();
    let tcp = context(None);
    let picks: Vec<_> = (0..5).map(|_| index(pick_with(&b, &tcp, &[])).unwrap()).collect();
    assert_eq!(picks, [2, 3, 0, 1, 2]);
    // Endpoint 1 ejected: the rotation goes on (position 11) over [0, 2, 3].
    let without_1 = b.with_health(|i| i != 1);
    let picks: Vec<_> = (0..4).map(|_| index(pick_with(&without_1, &tcp, &[])).unwrap()).collect();
    assert_eq!(picks, [3, 0, 2, 3]);
}

#[test]
fn least_request_takes_the_less_busy_of_two_random_endpoints() {
    let b = balancer(&cluster(four(), simple(SimpleLoadBalancer::LeastRequest)));
    let tcp = context(None);
    let guards = [b.begin(0).unwrap(), b.begin(0).unwrap(), b.begin(1).unwrap()];
    assert_eq!((b.active_requests(0), b.active_requests(1), b.active_requests(2)), (2, 1, 0));
    // Draws are reduced modulo the endpoints in use, as Envoy's `random() % size`.
    assert_eq!(index(pick_with(&b, &tcp, &[4, 5])), Some(1), "1 has fewer than 0");
    assert_eq!(index(pick_with(&b, &tcp, &[1, 0])), Some(1), "0 has more than 1");
    assert_eq!(index(pick_with(&b, &tcp, &[2, 3])), Some(2), "a tie keeps the first");
    assert_eq!(index(pick_with(&b, &tcp, &[0, 0])), Some(0), "both choices may be the same");
    drop(guards);
    assert_eq!(b.active_requests(0), 0);
    assert_eq!(index(pick_with(&b, &tcp, &[0, 1])), Some(0));

    // Counts are shared with balancers rebuilt for another health, in both directions.
    let without_0 = b.with_health(|i| i != 0);
    let guard = without_0.begin(1).unwrap();
    assert_eq!((b.active_requests(1), guard.endpoint()), (1, 1));
    assert_eq!(index(pick_with(&without_0, &tcp, &[0, 1])), Some(2), "in use: [1, 2, 3]");
    assert!(b.begin(4).is_none());

    // UNSPECIFIED and an absent policy are Istio's default, LEAST_REQUEST: two draws.
    for load_balancer in [Some(LoadBalancer { policy: Some(simple(SimpleLoadBalancer::Unspecified)) }), None] {
        let b = balancer(&Cluster { endpoints: four(), load_balancer, ..Default::default() });
        assert_eq!(index(pick_with(&b, &tcp, &[3, 2])), Some(3));
    }
}

#[test]
fn random_takes_one_draw_modulo_the_endpoints_in_use() {
    let b = balancer(&cluster(four(), simple(SimpleLoadBalancer::Random)));
    let tcp = context(None);
    assert_eq!(index(pick_with(&b, &tcp, &[7])), Some(3));
    assert_eq!(index(pick_with(&b.with_health(|i| i != 3), &tcp, &[7])), Some(1));
}

#[test]
fn passthrough_takes_one_draw_modulo_all_endpoints_ejected_or_not() {
    let b = balancer(&cluster(four(), simple(SimpleLoadBalancer::Passthrough)));
    let tcp = context(None);
    assert_eq!(index(pick_with(&b, &tcp, &[7])), Some(3));
    // Outlier ejection does not narrow the choice: kube-proxy, behind a VIP, knows nothing of it.
    let ejected = b.with_health(|i| i == 0);
    assert_eq!(index(pick_with(&ejected, &tcp, &[7])), Some(3));
    assert_eq!(index(pick_with(&ejected, &tcp, &[5])), Some(1));
    let none = balancer(&cluster(vec![], simple(SimpleLoadBalancer::Passthrough)));
    assert_eq!(pick_with(&none, &tcp, &[]), None);
}

#[test]
fn ring_hash_places_requests_as_envoys_ring_does() {
    let key = Key::HeaderName("x-user".into());
    let b = balancer(&cluster(envoy_hosts(), hashed(key, HashAlgorithm::RingHash, 12)));
    let tcp = context(None);
    // Envoy's RingHashLoadBalancerTest.Basic, with its hashes as the draws of keyless requests.
    for (hash, port) in [(0, 94), (u64::MAX, 94), (3_551_244_743_356_806_947, 95), (3_551_244_743_356_806_948, 93)] {
        assert_eq!(index(pick_with(&b, &tcp, &[hash])), Some(port - 90), "hash {hash}");
    }
    assert_eq!(index(pick_with(&b, &tcp, &[16_117_243_373_044_804_880])), Some(0));

    // A request with the header goes where its value's hash does, every time, and takes no draw.
    let jason = request(|r| r.header("x-user", "jason"));
    let expected = index(pick_with(&b, &tcp, &[xxhash64(b"jason", 0)]));
    for _ in 0..3 {
        assert_eq!(index(pick_with(&b, &context(Some(&jason)), &[])), expected);
    }
    // Several values: sorted, then hashed together, so their order does not matter.
    let both = index(pick_with(&b, &tcp, &[xxhash64(b"ab", 0)]));
    for (first, second) in [("a", "b"), ("b", "a")] {
        let r = request(|r| r.header("x-user", first).header("x-user", second));
        assert_eq!(index(pick_with(&b, &context(Some(&r)), &[])), both);
    }
    // Without the header, a random hash.
    let other = request(|r| r.header("x-other", "jason"));
    assert_eq!(index(pick_with(&b, &context(Some(&other)), &[0])), Some(4));
}

#[test]
fn a_hash_table_skips_ejected_endpoints_and_uses_all_in_panic() {
    let ring = cluster(envoy_hosts(), hashed(Key::UseSourceIp(true), HashAlgorithm::RingHash, 12));
    let b = balancer(&ring);
    let source = context(None);
    let home = index(pick_with(&b, &source, &[])).unwrap();
    // Its endpoint ejected, the source moves to another.
    let without = b.with_health(|i| i != home);
    let moved = index(pick_with(&without, &source, &[])).unwrap();
    assert_ne!(moved, home);
    assert!(!without.in_use().contains(&home));
    // Back in, the source returns home.
    assert_eq!(index(pick_with(&without.with_health(|_| true), &source, &[])), Some(home));

    // Nothing healthy: no pick with Istio's threshold of 0; every endpoint under a threshold
    // (Envoy's test: hash 0 still goes to :94 in panic).
    assert_eq!(pick_with(&b.with_health(|_| false), &source, &[]), None);
    let keyless = cluster(envoy_hosts(), hashed(Key::UseSourceIp(false), HashAlgorithm::RingHash, 12));
    let panicking = balancer(&with_panic_threshold(keyless, 50)).with_health(|_| false);
    assert!(panicking.in_panic());
    assert_eq!(index(pick_with(&panicking, &source, &[0])), Some(4));
}

#[test]
fn maglev_places_requests_as_envoys_table_does() {
    let key = Key::QueryParameterName("user".into());
    let b = balancer(&cluster(envoy_hosts(), hashed(key, HashAlgorithm::Maglev, 7)));
    let tcp = context(None);
    // Envoy's MaglevLoadBalancerTest.Basic: hash i goes to host expected[i % 7].
    let expected = [2, 4, 0, 1, 5, 0, 3];
    for hash in 0..14 {
        assert_eq!(index(pick_with(&b, &tcp, &[hash])), Some(expected[(hash % 7) as usize]));
    }
    // The query parameter's raw first value is the key.
    let r = request(|r| r.uri("/reviews?x=1&user=jason%20b&user=other"));
    let expected = index(pick_with(&b, &tcp, &[xxhash64(b"jason%20b", 0)]));
    assert_eq!(index(pick_with(&b, &context(Some(&r)), &[])), expected);

    // The default table size is 65537: the source's hash and that hash modulo 65537 meet.
    let default_size = balancer(&cluster(envoy_hosts(), hashed(Key::UseSourceIp(true), HashAlgorithm::Maglev, 0)));
    let slot = xxhash64(b"10.1.0.2", 0) % 65537;
    let keyless = balancer(&cluster(envoy_hosts(), hashed(Key::UseSourceIp(false), HashAlgorithm::Maglev, 0)));
    assert_eq!(index(pick_with(&keyless, &tcp, &[slot])), index(pick_with(&default_size, &tcp, &[])));
}

#[test]
fn the_source_ip_is_hashed_as_text_for_http_and_tcp() {
    let b = balancer(&cluster(envoy_hosts(), hashed(Key::UseSourceIp(true), HashAlgorithm::RingHash, 0)));
    let expected = index(pick_with(&b, &context(None), &[]));
    let keyless = balancer(&cluster(envoy_hosts(), hashed(Key::UseSourceIp(false), HashAlgorithm::RingHash, 0)));
    assert_eq!(index(pick_with(&keyless, &context(None), &[xxhash64(b"10.1.0.2", 0)])), expected);
    let r = request(|r| r);
    assert_eq!(index(pick_with(&b, &context(Some(&r)), &[])), expected);
    // An HTTP key on a TCP connection: no key, a random hash.
    let header =
        balancer(&cluster(envoy_hosts(), hashed(Key::HeaderName("x-user".into()), HashAlgorithm::RingHash, 0)));
    assert!(pick_with(&header, &context(None), &[42]).is_some());
}

fn cookie_cluster(ttl_ms: Option<u64>) -> Cluster {
    let cookie = HashCookie { name: "session".into(), path: "/".into(), ttl_ms };
    cluster(envoy_hosts(), hashed(Key::Cookie(cookie), HashAlgorithm::RingHash, 0))
}

#[test]
fn a_missing_cookie_with_a_ttl_is_generated_and_set_on_the_response() {
    let b = balancer(&cookie_cluster(Some(60_000)));
    let tcp = context(None);
    let fresh = request(|r| r.header("cookie", "other=1"));
    let Some(Pick { index: first, set_cookie: Some(cookie) }) = pick_with(&b, &context(Some(&fresh)), &[]) else {
        panic!("a generated cookie");
    };
    // Envoy's value: the hex XXH64 of the connection's remote and local addresses.
    let value = format!("{:016x}", xxhash64(format!("{PEER}{LOCAL}").as_bytes(), 0));
    assert_eq!(
        cookie,
        SetCookie {
            name: "session".into(),
            value: value.clone(),
            path: "/".into(),
            max_age: Some(Duration::from_secs(60))
        }
    );
    assert_eq!(cookie.to_string(), format!("session=\"{value}\"; Max-Age=60; Path=/; HttpOnly"));
    assert_eq!(Some(first), index(pick_with(&b, &tcp, &[xxhash64(value.as_bytes(), 0)])));

    // The client sends it back (quoted or not): same endpoint, nothing to set.
    for header in [format!("session={value}"), format!("a=b; session=\"{value}\"")] {
        let back = request(|r| r.header("cookie", header));
        assert_eq!(pick_with(&b, &context(Some(&back)), &[]), Some(Pick { index: first, set_cookie: None }));
    }
    // An empty cookie counts as missing.
    let empty = request(|r| r.header("cookie", "session="));
    assert!(matches!(pick_with(&b, &context(Some(&empty)), &[]), Some(Pick { set_cookie: Some(_), .. })));
}

#[test]
fn cookie_ttls_follow_envoy() {
    let fresh = request(|r| r);
    let set_cookie =
        |ttl_ms, draws: &[u64]| match pick_with(&balancer(&cookie_cluster(ttl_ms)), &context(Some(&fresh)), draws) {
            Some(Pick { set_cookie, .. }) => set_cookie,
            other => panic!("{other:?}"),
        };
    // No TTL: never generated; the request gets a random hash.
    assert_eq!(set_cookie(None, &[5]), None);
    // A TTL of 0 (or under a second: Envoy keeps whole seconds) is a session cookie.
    for ttl_ms in [0, 999] {
        assert_eq!(set_cookie(Some(ttl_ms), &[]).unwrap().max_age, None);
    }
    assert_eq!(set_cookie(Some(1_500), &[]).unwrap().max_age, Some(Duration::from_secs(1)));
}

#[test]
fn panic_mode_uses_every_endpoint_when_too_few_are_healthy() {
    let b = balancer(&with_panic_threshold(cluster(four(), simple(SimpleLoadBalancer::Random)), 50));
    let tcp = context(None);
    let one_healthy = b.with_health(|i| i == 0);
    assert!(one_healthy.in_panic());
    assert_eq!(one_healthy.in_use(), [0, 1, 2, 3]);
    assert_eq!(index(pick_with(&one_healthy, &tcp, &[3])), Some(3));
    // 3 of 4 healthy is 75 %, but availability (75 % × 1.4) is 100 %: no panic.
    let three_healthy = b.with_health(|i| i != 3);
    assert!(!three_healthy.in_panic());
    assert_eq!(three_healthy.in_use(), [0, 1, 2]);
    // Istio's default threshold 0: nothing healthy means no endpoint (503 UH).
    let no_threshold = balancer(&cluster(four(), simple(SimpleLoadBalancer::Random))).with_health(|_| false);
    assert!(!no_threshold.in_panic());
    assert_eq!(pick_with(&no_threshold, &tcp, &[]), None);
}

#[test]
fn picks_run_concurrently_without_locks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Balancer>();
    send_sync::<ActiveRequest>();
    let b = Arc::new(balancer(&cluster(four(), simple(SimpleLoadBalancer::RoundRobin))));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = Arc::clone(&b);
            std::thread::spawn(move || {
                let tcp = context(None);
                (0..1000).map(|_| index(b.pick(&tcp, &mut || 0)).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut counts = [0; 4];
    for thread in threads {
        for i in thread.join().unwrap() {
            counts[i] += 1;
        }
    }
    // Every position of the rotation was taken exactly once.
    assert_eq!(counts, [1000; 4]);
}

#[test]
fn endpoints_are_addressed_as_envoy_writes_them() {
    let v6 = LbEndpoint {
        address: "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec(),
        port: 8080,
        ..Default::default()
    };
    let b = balancer(&cluster(vec![endpoint([10, 0, 0, 1], 80), v6], simple(SimpleLoadBalancer::Random)));
    assert_eq!(b.address(1), Some("[fd00::1]:8080".parse::<SocketAddr>().unwrap()));
    assert_eq!(b.shared.endpoints[0].hash_key, "10.0.0.1:80");
    assert_eq!(b.shared.endpoints[1].hash_key, "[fd00::1]:8080");
    assert_eq!(b.endpoint(0).map(|e| e.port), Some(80));
    assert_eq!(b.cluster(), "reviews.bookinfo.svc.cluster.local|9080|");
}

#[test]
fn unusable_policies_and_endpoints_are_refused_with_their_field() {
    let refused = |c: Cluster| Balancer::new(&c, 0).unwrap_err();
    let maglev = |size| hashed(Key::UseSourceIp(true), HashAlgorithm::Maglev, size);
    let err = refused(cluster(four(), maglev(65536)));
    assert_eq!(err.field, "loadBalancer.consistentHash.tableSize");
    assert_eq!(err.cluster, "reviews.bookinfo.svc.cluster.local|9080|");
    assert!(err.to_string().contains("prime"), "{err}");
    assert!(Balancer::new(&cluster(four(), maglev(5_000_011)), 0).is_ok());
    assert_eq!(refused(cluster(four(), maglev(5_000_017))).field, "loadBalancer.consistentHash.tableSize");
    let ring = hashed(Key::UseSourceIp(true), HashAlgorithm::RingHash, 8 * 1024 * 1024 + 1);
    assert_eq!(refused(cluster(four(), ring)).field, "loadBalancer.consistentHash.tableSize");
    assert_eq!(refused(cluster(four(), LbPolicy::Simple(42))).field, "loadBalancer.simple");
    let unknown_algorithm =
        LbPolicy::ConsistentHash(ConsistentHash { key: Some(Key::UseSourceIp(true)), algorithm: 9, table_size: 0 });
    assert_eq!(refused(cluster(four(), unknown_algorithm)).field, "loadBalancer.consistentHash.algorithm");
    let keyless = LbPolicy::ConsistentHash(ConsistentHash::default());
    assert_eq!(refused(cluster(four(), keyless)).field, "loadBalancer.consistentHash.key");
    let mut bad = four();
    bad[1].address = vec![10, 0, 0];
    assert_eq!(refused(cluster(bad, simple(SimpleLoadBalancer::Random))).field, "endpoints[1]");
    let mut bad = four();
    bad[2].port = 70_000;
    assert_eq!(refused(cluster(bad, simple(SimpleLoadBalancer::Random))).field, "endpoints[2]");
}

#[test]
fn a_new_version_of_the_cluster_keeps_active_counts_of_the_endpoints_that_remain() {
    let before = balancer(&cluster(four(), simple(SimpleLoadBalancer::LeastRequest)));
    let guard = before.begin(2).unwrap();
    let mut endpoints = four();
    endpoints.remove(0);
    let after = Balancer::carried_over(&cluster(endpoints, simple(SimpleLoadBalancer::LeastRequest)), &before).unwrap();
    assert_eq!(after.active_requests(1), 1, "the old endpoint 2 is now 1");
    drop(guard);
    assert_eq!(after.active_requests(1), 0, "a request begun before the update ends in the new counts");
}
