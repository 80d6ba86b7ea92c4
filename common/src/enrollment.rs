//! Which pods are in the mesh, with Istio ambient's rules:
//! - `istio.io/dataplane-mode=none` on a pod keeps it out, whatever its namespace says;
//! - `istio.io/dataplane-mode=ambient` on a pod enrolls it, whatever its namespace says;
//! - otherwise the pod follows its namespace's `istio.io/dataplane-mode=ambient` label.

use std::{collections::BTreeMap, fmt};

use crate::labels::{DATAPLANE_MODE, DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_NONE};

pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Enrollment {
    /// In the mesh because of its namespace's label.
    EnrolledByNamespace,
    /// In the mesh because of its own label.
    EnrolledByPodLabel,
    /// Opted out with `istio.io/dataplane-mode=none`.
    OptedOut,
    /// Its namespace is not labelled `istio.io/dataplane-mode=ambient`.
    NamespaceNotAmbient,
    /// Its namespace is not known (not in the namespace source).
    NamespaceUnknown,
    /// The control plane, which sees the pod's and its namespace's labels, captures it.
    CapturedByControlPlane,
    /// The control plane does not capture it (labels, or e.g. host networking).
    NotCapturedByControlPlane,
}

impl Enrollment {
    pub fn is_enrolled(self) -> bool {
        matches!(self, Self::EnrolledByNamespace | Self::EnrolledByPodLabel | Self::CapturedByControlPlane)
    }
}

impl fmt::Display for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::EnrolledByNamespace => "enrolled: namespace is labelled istio.io/dataplane-mode=ambient",
            Self::EnrolledByPodLabel => "enrolled: pod is labelled istio.io/dataplane-mode=ambient",
            Self::OptedOut => "not enrolled: pod is labelled istio.io/dataplane-mode=none",
            Self::NamespaceNotAmbient => "not enrolled: namespace is not labelled istio.io/dataplane-mode=ambient",
            Self::NamespaceUnknown => "not enrolled: namespace is unknown to this node proxy",
            Self::CapturedByControlPlane => {
                "enrolled: the control plane captures this pod (its labels or its namespace's)"
            }
            Self::NotCapturedByControlPlane => "not enrolled: the control plane does not capture this pod",
        })
    }
}

/// Decide a pod's enrollment from its own labels and its namespace's (`None`: namespace unknown).
pub fn decide(namespace_labels: Option<&Labels>, pod_labels: &Labels) -> Enrollment {
    match pod_labels.get(DATAPLANE_MODE).map(String::as_str) {
        Some(DATAPLANE_MODE_NONE) => return Enrollment::OptedOut,
        Some(DATAPLANE_MODE_AMBIENT) => return Enrollment::EnrolledByPodLabel,
        _ => {}
    }
    match namespace_labels {
        None => Enrollment::NamespaceUnknown,
        Some(ns) if ns.get(DATAPLANE_MODE).is_some_and(|v| v == DATAPLANE_MODE_AMBIENT) => {
            Enrollment::EnrolledByNamespace
        }
        Some(_) => Enrollment::NamespaceNotAmbient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn namespace_label_enrolls() {
        let ns = labels(&[(DATAPLANE_MODE, "ambient")]);
        assert_eq!(decide(Some(&ns), &Labels::new()), Enrollment::EnrolledByNamespace);
    }

    #[test]
    fn pod_opt_out_beats_namespace() {
        let ns = labels(&[(DATAPLANE_MODE, "ambient")]);
        let pod = labels(&[(DATAPLANE_MODE, "none")]);
        assert_eq!(decide(Some(&ns), &pod), Enrollment::OptedOut);
        assert!(!decide(Some(&ns), &pod).is_enrolled());
    }

    #[test]
    fn pod_label_enrolls_in_plain_namespace() {
        let pod = labels(&[(DATAPLANE_MODE, "ambient")]);
        assert_eq!(decide(Some(&Labels::new()), &pod), Enrollment::EnrolledByPodLabel);
    }

    #[test]
    fn other_values_do_not_enroll() {
        let ns = labels(&[(DATAPLANE_MODE, "Ambient")]);
        assert_eq!(decide(Some(&ns), &Labels::new()), Enrollment::NamespaceNotAmbient);
        assert_eq!(decide(None, &Labels::new()), Enrollment::NamespaceUnknown);
    }
}
