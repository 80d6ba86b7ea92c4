//! Cleanup: on drop, during a panic, per pod, and the sweep of stale runs.

use std::{
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
};

use ambit_e2e::{Place, Run, RunGuard, cmd, manifest::Manifest, ns, procs::ProcId, require_root, sweep_stale_runs};

use crate::{bare_cluster, quiet_pod};

/// Everything the manifest lists, as paths that exist while the run lives.
fn manifest_paths(manifest: &Manifest, run_dir: PathBuf) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = manifest.netns.iter().map(|n| ns::path(n)).collect();
    paths.extend(manifest.cgroups.iter().cloned());
    paths.push(run_dir);
    paths
}

fn assert_all_gone(paths: &[PathBuf], pids: &[u32]) {
    for path in paths {
        assert!(!path.exists(), "{} still exists after cleanup", path.display());
    }
    for pid in pids {
        let alive = ProcId::of(*pid).is_some_and(|p| p.is_alive());
        assert!(!alive, "process {pid} survived cleanup");
    }
}

#[test]
fn dropping_the_cluster_removes_everything() {
    require_root!();
    let cluster = bare_cluster(2);
    let pod = cluster.add_pod(quiet_pod("a", 1)).unwrap();
    let app = pod.spawn_app(&["serve", "--listen", "0.0.0.0:8080"]).unwrap();
    let pid = app.pid();
    let manifest = cluster.run().manifest();
    assert_eq!(manifest.netns.len(), 4, "fabric, 2 nodes, 1 pod: {manifest:?}");
    assert_eq!(manifest.processes.len(), 1, "{manifest:?}");
    let paths = manifest_paths(&manifest, cluster.run_dir().to_owned());
    for path in &paths {
        assert!(path.exists(), "{} should exist while the cluster lives", path.display());
    }
    drop(cluster); // before the pod and the app: they must not mind
    assert_all_gone(&paths, &[pid]);
    assert!(!manifest.cgroup_root.exists());
    assert!(!app.is_running());
    drop((app, pod));
}

#[test]
fn removing_a_pod_removes_its_resources() {
    require_root!();
    let cluster = bare_cluster(1);
    let pod = cluster.add_pod(quiet_pod("gone", 0)).unwrap();
    let app = pod.spawn_app(&["serve", "--listen", "0.0.0.0:8080"]).unwrap();
    let (netns, cgroup) = (pod.netns_path().to_owned(), pod.cgroup_path().to_owned());
    cluster.remove_pod(&pod).unwrap();
    assert!(!netns.exists() && !cgroup.exists());
    assert!(!app.is_running());
    assert!(cluster.remove_pod(&pod).is_err(), "removing twice is an error");
    assert!(pod.spawn_app(&["serve", "--listen", "0.0.0.0:1"]).is_err());
    // The name is free again; addresses are not reused.
    let again = cluster.add_pod(quiet_pod("gone", 0)).unwrap();
    assert_ne!(again.ip(), pod.ip());
    cluster.shutdown().unwrap();
}

#[test]
fn a_cluster_dropped_during_a_panic_still_cleans_up() {
    require_root!();
    type Seen = Option<(Vec<PathBuf>, u32)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let inner = seen.clone();
    let result = std::panic::catch_unwind(move || {
        let cluster = bare_cluster(1);
        let pod = cluster.add_pod(quiet_pod("doomed", 0)).unwrap();
        let app = pod.spawn_app(&["serve", "--listen", "0.0.0.0:8080"]).unwrap();
        let paths = manifest_paths(&cluster.run().manifest(), cluster.run_dir().to_owned());
        *inner.lock().unwrap() = Some((paths, app.pid()));
        panic!("deliberate panic with a live cluster");
    });
    assert!(result.is_err());
    let (paths, pid) = seen.lock().unwrap().take().expect("the closure recorded its resources");
    assert_all_gone(&paths, &[pid]);
}

#[test]
fn stale_runs_are_swept_and_nothing_else_is_touched() {
    require_root!();
    // A run with a namespace, cgroups and a process, whose owner then "dies".
    let stale = Run::create().unwrap();
    let netns = stale.create_netns("victim").unwrap();
    stale.create_cgroup("").unwrap();
    let cgroup = stale.create_cgroup("pods").unwrap();
    let mut sleep = Command::new("sleep");
    sleep.arg("1000");
    let sleeper = stale.spawn_in(sleep, Place { netns: &netns, cgroup: &cgroup }).unwrap().guard;
    let pid = sleeper.pid();
    std::mem::forget(sleeper); // a dead owner does not kill its processes
    // The run's own prefix, but not in its manifest: must survive.
    let unlisted = stale.netns_name("unlisted");
    cmd::ip(&["netns", "add", &unlisted]).unwrap();
    let stale_paths = manifest_paths(&stale.manifest(), stale.dir().to_owned());
    stale.set_owner(dead_process()).unwrap();

    // A live run must survive too.
    let live = Run::create().unwrap();
    let live_guard = RunGuard::new(live.clone());
    live.create_netns("alive").unwrap();

    let report = sweep_stale_runs();
    eprintln!("sweep: {report:?}");
    assert!(report.errors.iter().all(|e| !e.contains(stale.id())), "{report:?}");
    stale.kill(pid); // reap our zombie
    assert_all_gone(&stale_paths, &[pid]);
    assert!(ns::exists(&unlisted), "a namespace outside the manifest was deleted");
    assert!(ns::exists(&live.netns_name("alive")), "a live run was swept");
    assert!(live.dir().exists());
    cmd::ip(&["netns", "del", &unlisted]).unwrap();
    drop(live_guard);
    assert!(!ns::exists(&live.netns_name("alive")));
}

/// The identity of a process that has exited (and been reaped).
fn dead_process() -> ProcId {
    let mut child = Command::new("sleep").arg("1000").spawn().unwrap();
    let id = ProcId::of(child.id()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!id.is_alive());
    id
}
