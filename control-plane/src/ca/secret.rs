//! The CA's root in Kubernetes mode, from Secrets in the root namespace:
//!
//! 1. `cacerts`, Istio's plug-in CA Secret (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
//!    `cert-chain.pem`), when present: the user's CA, as istiod would use it;
//! 2. otherwise `ambit-ca` (`ca.crt`, `ca.key`), which the CA creates with a generated root on
//!    its first start. Two replicas racing to create it: the loser reads the winner's.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use super::root::{PemMaterial, RootCa, RootError, RootOrigin, generate_root};

/// Istio's plug-in CA Secret.
pub const PLUG_IN_SECRET: &str = "cacerts";
/// The Secret Ambit keeps its generated root in.
pub const GENERATED_SECRET: &str = "ambit-ca";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading Secret {namespace}/{name}: {reason}{}", rbac_hint(*.forbidden))]
    Read { namespace: String, name: String, reason: String, forbidden: bool },
    #[error("creating Secret {namespace}/{name}: {reason}{}", rbac_hint(*.forbidden))]
    Create { namespace: String, name: String, reason: String, forbidden: bool },
    #[error("Secret {namespace}/{name} has no key {key:?} (it holds: {present}): {hint}")]
    MissingKey { namespace: String, name: String, key: &'static str, present: String, hint: &'static str },
    #[error("Secret {namespace}/{name}: key {key:?} is not UTF-8 PEM")]
    NotPem { namespace: String, name: String, key: &'static str },
    #[error(transparent)]
    Root(#[from] RootError),
}

fn rbac_hint(forbidden: bool) -> &'static str {
    if forbidden {
        " (the control plane's service account needs `get` and `create` on secrets in its root namespace: see deploy/control-plane-rbac.yaml)"
    } else {
        ""
    }
}

/// The root from `cacerts` or `ambit-ca` in `namespace`, creating `ambit-ca` if neither exists.
pub async fn load_or_create(client: Client, namespace: &str, trust_domain: &str) -> Result<RootCa, SecretError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    if let Some(secret) = get(&api, namespace, PLUG_IN_SECRET).await? {
        let data = Data { namespace, name: PLUG_IN_SECRET, map: secret.data.unwrap_or_default() };
        let material = PemMaterial {
            cert: data.required("ca-cert.pem", "Istio's plug-in format needs ca-cert.pem and ca-key.pem")?,
            key: data.required("ca-key.pem", "Istio's plug-in format needs ca-cert.pem and ca-key.pem")?,
            root: data.optional("root-cert.pem")?,
            chain: data.optional("cert-chain.pem")?,
        };
        let origin = RootOrigin::PlugIn { at: format!("Secret {namespace}/{PLUG_IN_SECRET}") };
        return Ok(RootCa::from_pem(&material, origin)?);
    }
    let at = format!("Secret {namespace}/{GENERATED_SECRET}");
    if let Some(secret) = get(&api, namespace, GENERATED_SECRET).await? {
        return from_generated(secret, namespace, RootOrigin::Persisted { at });
    }
    create_generated(&api, namespace, trust_domain).await
}

/// Generates a root and stores it as `ambit-ca`; if another replica stored one first, that one.
async fn create_generated(api: &Api<Secret>, namespace: &str, trust_domain: &str) -> Result<RootCa, SecretError> {
    let at = format!("Secret {namespace}/{GENERATED_SECRET}");
    let (cert, key) = generate_root(trust_domain)?;
    let material = PemMaterial { cert: cert.clone(), key: key.clone(), ..Default::default() };
    let root = RootCa::from_pem(&material, RootOrigin::Generated { at: at.clone() })?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(GENERATED_SECRET.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some([("app.kubernetes.io/managed-by".to_owned(), "ambit-control-plane".to_owned())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(
            [("ca.crt".to_owned(), ByteString(cert.into_bytes())), ("ca.key".to_owned(), ByteString(key.into_bytes()))]
                .into(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(root),
        // Another replica created it first: use theirs, so every replica signs with one root.
        Err(kube::Error::Api(status)) if status.code == 409 => match get(api, namespace, GENERATED_SECRET).await? {
            Some(secret) => from_generated(secret, namespace, RootOrigin::Persisted { at }),
            None => Err(SecretError::Create {
                namespace: namespace.to_owned(),
                name: GENERATED_SECRET.to_owned(),
                reason: "it already exists, yet reading it finds nothing: retry".into(),
                forbidden: false,
            }),
        },
        Err(e) => Err(SecretError::Create {
            namespace: namespace.to_owned(),
            name: GENERATED_SECRET.to_owned(),
            forbidden: matches!(&e, kube::Error::Api(s) if s.code == 403),
            reason: e.to_string(),
        }),
    }
}

fn from_generated(secret: Secret, namespace: &str, origin: RootOrigin) -> Result<RootCa, SecretError> {
    let data = Data { namespace, name: GENERATED_SECRET, map: secret.data.unwrap_or_default() };
    let hint = "delete the Secret to have a new root generated (proxies then need the new root)";
    let material =
        PemMaterial { cert: data.required("ca.crt", hint)?, key: data.required("ca.key", hint)?, ..Default::default() };
    Ok(RootCa::from_pem(&material, origin)?)
}

async fn get(api: &Api<Secret>, namespace: &str, name: &str) -> Result<Option<Secret>, SecretError> {
    api.get_opt(name).await.map_err(|e| SecretError::Read {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        forbidden: matches!(&e, kube::Error::Api(s) if s.code == 403),
        reason: e.to_string(),
    })
}

struct Data<'a> {
    namespace: &'a str,
    name: &'a str,
    map: BTreeMap<String, ByteString>,
}

impl Data<'_> {
    fn optional(&self, key: &'static str) -> Result<Option<String>, SecretError> {
        let Some(bytes) = self.map.get(key) else { return Ok(None) };
        String::from_utf8(bytes.0.clone()).map(Some).map_err(|_| SecretError::NotPem {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            key,
        })
    }

    fn required(&self, key: &'static str, hint: &'static str) -> Result<String, SecretError> {
        self.optional(key)?.ok_or_else(|| SecretError::MissingKey {
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            key,
            present: self.map.keys().cloned().collect::<Vec<_>>().join(", "),
            hint,
        })
    }
}
