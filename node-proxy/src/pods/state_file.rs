//! The pods this node proxy was told about, persisted so that a restarted proxy re-enrolls them
//! without the CNI having to call again ("traffic flows again without touching the pods").

use std::{
    io,
    path::{Path, PathBuf},
};

use ambit_common::pod_api::PodSpec;

pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub(crate) fn new(state_dir: &Path) -> Self {
        Self { path: state_dir.join("pods.json") }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted pods; a missing file means none. A corrupt file is an error: silently
    /// forgetting pods would let their traffic bypass the mesh after a restart.
    pub(crate) fn load(&self) -> io::Result<Vec<PodSpec>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a valid pod list ({e}); move it aside to start without the \
                         persisted pods (the CNI will re-announce pods as they are created)",
                        self.path.display()
                    ),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Writes atomically: a crash mid-write leaves the previous version.
    pub(crate) fn store<'a>(&self, pods: impl Iterator<Item = &'a PodSpec>) -> io::Result<()> {
        let pods: Vec<&PodSpec> = pods.collect();
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&pods).map_err(io::Error::other)?)?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_corruption() {
        let dir = std::env::temp_dir().join(format!("ambit-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = StateFile::new(&dir);
        assert!(file.load().unwrap().is_empty());
        let pod: PodSpec = serde_json::from_value(serde_json::json!({
            "uid": "u1", "name": "a", "namespace": "ns", "ips": ["10.1.0.2"],
            "node": "n", "netns": "/run/netns/a"
        }))
        .unwrap();
        file.store([&pod].into_iter()).unwrap();
        assert_eq!(file.load().unwrap(), vec![pod]);
        std::fs::write(file.path(), b"{not json").unwrap();
        let err = file.load().unwrap_err();
        assert!(err.to_string().contains("move it aside"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
