//! A cluster's client, built from its kubeconfig in the credentials directory. The file is
//! read once per client: its size checked, its fingerprint taken (so that a rotated token
//! is picked up) and its text parsed, all of the same bytes. A path that resolves (after
//! symbolic links) outside the credentials directory is refused. Nothing read from the
//! file ever reaches a message: errors name the cluster, the path and the kind of problem
//! (and a client that cannot be built, the TLS stack's cause).

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::ClusterClient;
use super::credentials;
use crate::cluster_api::Kubeconfigs;
use fleet_core::model::inventory::SecretRef;
use fleet_core::model::Cluster;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cluster {cluster}: kubeconfig {}: {reason}", path.display())]
    Unreadable {
        cluster: String,
        path: PathBuf,
        reason: String,
    },
    /// Found on the Cluster API management cluster, but its Secret is not there (now).
    #[error(
        "cluster {cluster}: kubeconfig {secret} (key value) not found on the management cluster"
    )]
    NoSecret { cluster: String, secret: SecretRef },
    #[error("cluster {cluster}: kubeconfig {} resolves outside the credentials directory; refusing it", path.display())]
    Escapes { cluster: String, path: PathBuf },
    #[error("cluster {cluster}: kubeconfig {path} is not usable (context {context}): {kind}")]
    Invalid {
        cluster: String,
        path: String,
        context: String,
        /// The kind of problem only; kube's own message may quote the file.
        kind: &'static str,
    },
    /// The kubeconfig parsed, but no client could be made of it. The cause is the TLS
    /// stack's or the auth layer's (a certificate that is not PEM, a token file that
    /// cannot be read), which names what is wrong, never the material itself.
    #[error("cluster {cluster}: kubeconfig {path} is not usable (context {context}): client cannot be built")]
    Client {
        cluster: String,
        path: String,
        context: String,
        /// Boxed: kube's errors are large, and every call of [`client`] would carry one.
        #[source]
        source: Box<super::transport::Error>,
    },
}

/// A kubeconfig is a few kilobytes; a bigger file is a mistake, not read into memory.
pub const MAX_KUBECONFIG_BYTES: usize = 1024 * 1024;

/// The resolved kubeconfig path, checked to stay inside `credentials_dir`.
pub fn resolve(credentials_dir: &Path, cluster: &Cluster) -> Result<PathBuf, Error> {
    let path = credentials_dir.join(&cluster.spec.kubeconfig);
    let unreadable = |e: std::io::Error| Error::Unreadable {
        cluster: cluster.name.clone(),
        path: path.clone(),
        reason: e.kind().to_string(),
    };
    let root = std::fs::canonicalize(credentials_dir).map_err(unreadable)?;
    let real = std::fs::canonicalize(&path).map_err(unreadable)?;
    if !real.starts_with(&root) {
        return Err(Error::Escapes {
            cluster: cluster.name.clone(),
            path,
        });
    }
    Ok(real)
}

/// A fingerprint of the file's bytes, to notice rotation.
pub fn fingerprint(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|bytes| print_of(&bytes))
}

/// The fingerprint of kubeconfig bytes: what a rotation check compares with what a client
/// was built from, so both are made here.
fn print_of(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A client, and the fingerprint of the kubeconfig bytes it was built from.
pub struct Built<C> {
    pub client: C,
    pub print: [u8; 32],
}

/// Where a cluster's kubeconfig is read from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A file in the credentials directory, resolved ([`resolve`]).
    File(PathBuf),
    /// A Secret on the Cluster API management cluster, as its watch last delivered it.
    Secret(SecretRef, Kubeconfigs),
}

impl Source {
    /// Where `cluster`'s kubeconfig is: its Secret when Cluster API found it (`secrets`
    /// holds those), else its file in `credentials_dir`.
    pub fn of(
        credentials_dir: &Path,
        secrets: Option<&Kubeconfigs>,
        cluster: &Cluster,
    ) -> Result<Source, Error> {
        match (&cluster.kubeconfig_secret, secrets) {
            (Some(secret), Some(secrets)) if secrets.get(secret).is_some() => {
                Ok(Source::Secret(secret.clone(), secrets.clone()))
            }
            (Some(secret), _) => Err(Error::NoSecret {
                cluster: cluster.name.clone(),
                secret: secret.clone(),
            }),
            (None, _) => resolve(credentials_dir, cluster).map(Source::File),
        }
    }

    /// A fingerprint of the bytes now, to notice rotation.
    pub fn fingerprint(&self) -> Option<[u8; 32]> {
        match self {
            Source::File(path) => fingerprint(path),
            Source::Secret(secret, secrets) => secrets.fingerprint(secret),
        }
    }

    /// Where its changes are announced.
    pub fn changes<'a>(&'a self, files: &'a credentials::Changes) -> &'a credentials::Changes {
        match self {
            Source::File(_) => files,
            Source::Secret(_, secrets) => secrets.changes(),
        }
    }

    /// How errors name it: the path, or the Secret.
    fn shown(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Secret(secret, _) => secret.to_string(),
        }
    }

    /// The bytes, at most [`MAX_KUBECONFIG_BYTES`] and one.
    fn read(&self) -> Result<Vec<u8>, &'static str> {
        match self {
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|_| "cannot be read")?;
                let limit = MAX_KUBECONFIG_BYTES as u64 + 1;
                // Room for the whole file and the read that finds its end, as `fs::read`
                // sizes its buffer: through `take`, which gives no size hint, `read_to_end`
                // starts at 32 bytes and doubles, 16 reads for a 5 KiB kubeconfig.
                let size = file.metadata().map_or(0, |m| m.len()).min(limit);
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0) + 1);
                std::io::Read::read_to_end(&mut std::io::Read::take(file, limit), &mut bytes)
                    .map_err(|_| "cannot be read")?;
                Ok(bytes)
            }
            Source::Secret(secret, secrets) => secrets
                .get(secret)
                .map(|b| b.to_vec())
                .ok_or("is no longer on the management cluster"),
        }
    }
}

/// Set to `1` to let a kubeconfig turn TLS verification off (`insecure-skip-tls-verify:
/// true`); without it such a kubeconfig is refused, since kube would silently honour it.
pub const INSECURE_ENV: &str = "PSQL_FLEET_ALLOW_INSECURE_TLS";

/// Whether the operator allowed kubeconfigs without TLS verification.
pub fn insecure_allowed() -> bool {
    std::env::var(INSECURE_ENV).is_ok_and(|v| v == "1")
}

/// A client for the cluster from its kubeconfig in `credentials_dir`, for one-off readers
/// (plan, demo) that do not watch the file; the insecure switch as the operator set it.
pub async fn client_in(credentials_dir: &Path, cluster: &Cluster) -> Result<kube::Client, Error> {
    build(
        &Source::File(resolve(credentials_dir, cluster)?),
        cluster,
        insecure_allowed(),
        &super::transport::user_agent(None),
        super::transport::client,
    )
    .await
    .map(|built| built.client)
}

/// Builds a client for the cluster from its kubeconfig and context; TLS verification can
/// only be switched off by the kubeconfig when `allow_insecure` (see [`INSECURE_ENV`]).
pub async fn client(
    source: &Source,
    cluster: &Cluster,
    allow_insecure: bool,
    user_agent: &str,
) -> Result<Built<ClusterClient>, Error> {
    build(
        source,
        cluster,
        allow_insecure,
        user_agent,
        super::transport::cluster_client,
    )
    .await
}

/// The client `make` builds from the kubeconfig's configuration, its errors named by the
/// cluster, the file and the context.
async fn build<C>(
    source: &Source,
    cluster: &Cluster,
    allow_insecure: bool,
    user_agent: &str,
    make: fn(&kube::Config) -> Result<C, super::transport::Error>,
) -> Result<Built<C>, Error> {
    let context = cluster.spec.context.clone();
    let shown_context = context.clone().unwrap_or_else(|| "current".into());
    let shown = source.shown();
    let invalid = |kind| Error::Invalid {
        cluster: cluster.name.clone(),
        path: shown.clone(),
        context: shown_context.clone(),
        kind,
    };
    let bytes = source.read().map_err(invalid)?;
    if bytes.len() > MAX_KUBECONFIG_BYTES {
        return Err(invalid("larger than 1 MiB"));
    }
    // kube-client 5 indexes past the end of a UTF-16 file of odd length (a panic, which
    // would end this cluster's worker); such a file is not a kubeconfig anyway.
    if matches!(bytes.as_slice(), [0xFF, 0xFE, ..] | [0xFE, 0xFF, ..]) && bytes.len() % 2 == 1 {
        return Err(invalid("does not parse as a kubeconfig"));
    }
    let print = print_of(&bytes);
    let kubeconfig = match source {
        Source::File(path) => file_text(bytes).and_then(|text| {
            let kubeconfig = parse(&text)?;
            Some(match path.parent() {
                Some(dir) => beside(kubeconfig, dir),
                None => kubeconfig,
            })
        }),
        Source::Secret(..) => std::str::from_utf8(&bytes).ok().and_then(parse),
    }
    .ok_or_else(|| invalid("does not parse as a kubeconfig"))?;
    let options = KubeConfigOptions {
        context,
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|_| invalid("context, cluster or user missing or malformed"))?;
    if config.accept_invalid_certs {
        if !allow_insecure {
            return Err(invalid(
                "sets insecure-skip-tls-verify; refused unless PSQL_FLEET_ALLOW_INSECURE_TLS=1",
            ));
        }
        tracing::warn!(cluster = %cluster.name, kubeconfig = %shown, "insecure-skip-tls-verify: the API server's certificate is not verified ({INSECURE_ENV} is set)");
    }
    // Every call is bounded, so a slow cluster never holds its worker for long.
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(super::transport::READ_TIMEOUT);
    config.write_timeout = Some(std::time::Duration::from_secs(15));
    // Says which replica wrote, in the API server's audit log.
    if let Ok(value) = http::HeaderValue::from_str(user_agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    let client = make(&config).map_err(|source| Error::Client {
        cluster: cluster.name.clone(),
        path: shown.clone(),
        context: shown_context.clone(),
        source: Box::new(source),
    })?;
    Ok(Built { client, print })
}

/// A kubeconfig's text as kube's `Kubeconfig::from_yaml` reads it (every document, merged
/// in order), parsed by serde_yaml (libyaml) where it can: kube's own parser (serde-saphyr)
/// took half again as long, 4% of a cold start at ten thousand clusters. A text serde_yaml
/// refuses, or one with merge keys (`<<`, which serde_yaml reads as a plain key), is left to
/// kube's parser, so that what kube reads is still read.
fn parse(text: &str) -> Option<Kubeconfig> {
    if !text.contains("<<") {
        let merged = serde_yaml::Deserializer::from_str(text)
            .map(|document| Kubeconfig::deserialize(document).ok())
            .try_fold(Kubeconfig::default(), |merged, next| {
                merged.merge(next?).ok()
            });
        if merged.is_some() {
            return merged;
        }
    }
    Kubeconfig::from_yaml(text).ok()
}

/// A kubeconfig file's text as kube's `Kubeconfig::read_from` decodes it: UTF-16 with its
/// byte order mark, UTF-8 with or without one.
fn file_text(bytes: Vec<u8>) -> Option<String> {
    let utf16 = |rest: &[u8], unit: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = rest.chunks_exact(2).map(|c| unit([c[0], c[1]])).collect();
        String::from_utf16(&units).ok()
    };
    match bytes.as_slice() {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, u16::from_be_bytes),
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec()).ok(),
        _ => String::from_utf8(bytes).ok(),
    }
}

/// The relative paths a kubeconfig file names (certificates, keys, token files, exec
/// commands with a separator), made absolute beside the file, as `Kubeconfig::read_from`
/// and client-go make them.
fn beside(mut kubeconfig: Kubeconfig, dir: &Path) -> Kubeconfig {
    let absolute = |file: &mut Option<String>| {
        if let Some(path) = file.as_deref().filter(|p| Path::new(p).is_relative()) {
            if let Some(joined) = dir.join(path).to_str() {
                *file = Some(joined.to_owned());
            }
        }
    };
    for cluster in kubeconfig
        .clusters
        .iter_mut()
        .filter_map(|c| c.cluster.as_mut())
    {
        absolute(&mut cluster.certificate_authority);
    }
    for user in kubeconfig
        .auth_infos
        .iter_mut()
        .filter_map(|u| u.auth_info.as_mut())
    {
        absolute(&mut user.client_certificate);
        absolute(&mut user.client_key);
        absolute(&mut user.token_file);
        if let Some(exec) = user.exec.as_mut() {
            if exec
                .command
                .as_deref()
                .is_some_and(|c| c.contains(std::path::MAIN_SEPARATOR))
            {
                absolute(&mut exec.command);
            }
        }
    }
    kubeconfig
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(kubeconfig: &str) -> Cluster {
        Cluster {
            origin: fleet_core::model::Origin {
                file: "clusters/c1.yaml".into(),
                document: 0,
            },
            name: "c1".into(),
            labels: Default::default(),
            spec: serde_yaml::from_str(&format!("kubeconfig: {kubeconfig}")).unwrap(),
            kubeconfig_secret: None,
        }
    }

    #[test]
    fn a_kubeconfig_linked_outside_the_credentials_directory_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("real.yaml"), "apiVersion: v1\n").unwrap();
        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join("ok.yaml"), "apiVersion: v1\n").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("real.yaml"),
            creds.path().join("evil.yaml"),
        )
        .unwrap();
        assert!(resolve(creds.path(), &cluster("ok.yaml")).is_ok());
        assert!(matches!(
            resolve(creds.path(), &cluster("evil.yaml")),
            Err(Error::Escapes { .. })
        ));
        assert!(matches!(
            resolve(creds.path(), &cluster("missing.yaml")),
            Err(Error::Unreadable { .. })
        ));
    }

    #[tokio::test]
    async fn a_found_cluster_reads_its_secret_and_never_the_credentials_directory() {
        let creds = tempfile::tempdir().unwrap();
        let secret = SecretRef {
            namespace: "capi".into(),
            name: "c1-kubeconfig".into(),
        };
        let mut found = cluster("c1.yaml");
        found.kubeconfig_secret = Some(secret.clone());
        // A file of the same name is not read for it.
        std::fs::write(creds.path().join("c1.yaml"), "apiVersion: v1\n").unwrap();
        let (secrets, writer) = crate::cluster_api::kubeconfigs::store();
        let Err(e) = Source::of(creds.path(), Some(&secrets), &found) else {
            panic!("a Secret not seen gave a kubeconfig")
        };
        assert_eq!(
            e.to_string(),
            "cluster c1: kubeconfig Secret capi/c1-kubeconfig (key value) not found on the management cluster"
        );
        writer.replace(
            [(
                secret,
                std::sync::Arc::from(
                    &b"users: [{name: u, user: {token: s3cr3t}}]\nnot: [valid"[..],
                ),
            )]
            .into(),
        );
        let source = Source::of(creds.path(), Some(&secrets), &found).unwrap();
        assert!(matches!(source, Source::Secret(..)));
        let Err(e) = client(&source, &found, false, "t").await else {
            panic!("a broken kubeconfig built a client")
        };
        let e = e.to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("Secret capi/c1-kubeconfig"), "{e}");
    }

    #[tokio::test]
    async fn errors_never_quote_the_kubeconfig() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        std::fs::write(
            &path,
            "users: [{name: u, user: {token: s3cr3t-token}}]\nthis is: [not valid",
        )
        .unwrap();
        let Err(e) = client(&Source::File(path.clone()), &cluster("c1.yaml"), false, "t").await
        else {
            panic!("a broken kubeconfig built a client")
        };
        let e = e.to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("cluster c1"), "{e}");
    }

    #[tokio::test]
    async fn a_client_that_cannot_be_built_says_why_without_quoting_the_kubeconfig() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', tls-server-name: 'not a name!'}}]\nusers: [{name: u, user: {token: s3cr3t-token}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        )
        .unwrap();
        let Err(e) = client(&Source::File(path.clone()), &cluster("c1.yaml"), false, "t").await
        else {
            panic!("a server name that is none built a client")
        };
        let said = crate::error_chain::chain(&e);
        assert!(said.starts_with("cluster c1: kubeconfig "), "{said}");
        assert!(
            said.ends_with("client cannot be built: tls-server-name is not a valid server name"),
            "{said}"
        );
        assert!(!said.contains("s3cr3t"), "{said}");
    }

    /// A kubeconfig naming its CA, a token file and two exec commands by relative paths;
    /// the CA (the simulator's) and the token are written beside it.
    fn relative_kubeconfig(dir: &Path) -> String {
        let tls = kube_sim::tls::generate().unwrap();
        std::fs::write(dir.join("ca.crt"), &tls.ca_pem).unwrap();
        std::fs::write(dir.join("token"), "t0ken").unwrap();
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', certificate-authority: ca.crt}}]\nusers: [{name: u, user: {tokenFile: token}}, {name: e, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: bin/creds}}}, {name: p, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
            .to_string()
    }

    #[test]
    fn relative_paths_resolve_beside_the_file_as_kube_resolves_them() {
        let creds = tempfile::tempdir().unwrap();
        let text = relative_kubeconfig(creds.path());
        let path = creds.path().join("c1.yaml");
        std::fs::write(&path, &text).unwrap();
        let ours = beside(Kubeconfig::from_yaml(&text).unwrap(), creds.path());
        let kubes = Kubeconfig::read_from(&path).unwrap();
        let dir = creds.path().display();
        assert_eq!(
            ours.clusters[0]
                .cluster
                .as_ref()
                .unwrap()
                .certificate_authority,
            Some(format!("{dir}/ca.crt"))
        );
        let users: Vec<_> = ours
            .auth_infos
            .iter()
            .map(|u| u.auth_info.as_ref().unwrap())
            .collect();
        assert_eq!(users[0].token_file, Some(format!("{dir}/token")));
        let exec = |i: usize| users[i].exec.as_ref().unwrap().command.clone();
        assert_eq!(exec(1), Some(format!("{dir}/bin/creds")));
        // A bare command is looked up on PATH, as client-go does.
        assert_eq!(exec(2), Some("aws".into()));
        assert_eq!(
            serde_json::to_value(&ours).unwrap(),
            serde_json::to_value(&kubes).unwrap()
        );
    }

    #[test]
    fn a_file_is_decoded_as_kube_decodes_it() {
        let text = "apiVersion: v1\nkind: Config\ncurrent-context: x\n";
        let utf16 = |unit: fn(u16) -> [u8; 2], bom: [u8; 2]| {
            let mut bytes = bom.to_vec();
            bytes.extend(text.encode_utf16().flat_map(unit));
            bytes
        };
        let with_bom = [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat();
        for bytes in [
            text.as_bytes().to_vec(),
            with_bom,
            utf16(u16::to_le_bytes, [0xFF, 0xFE]),
            utf16(u16::to_be_bytes, [0xFE, 0xFF]),
        ] {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &bytes).unwrap();
            let kubes = Kubeconfig::read_from(file.path()).unwrap();
            let ours = Kubeconfig::from_yaml(&file_text(bytes).unwrap()).unwrap();
            assert_eq!(ours.current_context.as_deref(), Some("x"));
            assert_eq!(
                serde_json::to_value(&ours).unwrap(),
                serde_json::to_value(&kubes).unwrap()
            );
        }
        assert_eq!(file_text(vec![0xC3, 0x28]), None);
    }

    #[test]
    fn a_kubeconfig_parses_as_kube_parses_it() {
        let simulated = kube_sim::kubeconfig::kubeconfig(
            "sim-001",
            "https://127.0.0.1:6443",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "t0ken",
        );
        let texts = [
            simulated.as_str(),
            // Documents merged in order: the first names the context.
            "current-context: a\n---\ncurrent-context: b\nclusters:\n- name: c\n  cluster: {server: 'https://x'}\n",
            "{\"apiVersion\": \"v1\", \"clusters\": null, \"users\": [{\"name\": \"u\", \"user\": {\"token\": \"123\"}}]}",
            "users:\n- name: u\n  user: {token: 0x1F, username: yes}\n",
            "clusters:\n- &c {name: a, cluster: {server: 'https://a', insecure-skip-tls-verify: true}}\n- <<: *c\n  name: b\n",
            "clusters:\n- name: a\n  name: b\n",
            "kind: [unclosed\n",
            "",
        ];
        for text in texts {
            let kubes = Kubeconfig::from_yaml(text).ok();
            let ours = parse(text);
            assert_eq!(
                ours.as_ref().map(|k| serde_json::to_value(k).unwrap()),
                kubes.as_ref().map(|k| serde_json::to_value(k).unwrap()),
                "{text}"
            );
        }
        assert_eq!(
            parse(texts[1]).unwrap().current_context.as_deref(),
            Some("a")
        );
    }

    #[tokio::test]
    async fn the_client_is_built_from_the_bytes_its_fingerprint_is_of() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        std::fs::write(&path, relative_kubeconfig(creds.path())).unwrap();
        let source = Source::File(path.clone());
        let built = client(&source, &cluster("c1.yaml"), false, "t")
            .await
            .unwrap();
        assert_eq!(Some(built.print), fingerprint(&path));
        assert_eq!(Some(built.print), source.fingerprint());
        // The CA was read from beside the file: with it moved away, no client is built.
        std::fs::rename(creds.path().join("ca.crt"), creds.path().join("moved.crt")).unwrap();
        assert!(client(&source, &cluster("c1.yaml"), false, "t")
            .await
            .is_err());
    }

    #[test]
    fn a_file_is_read_whole_and_an_oversized_one_only_past_the_limit() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        let text = relative_kubeconfig(creds.path());
        std::fs::write(&path, &text).unwrap();
        assert_eq!(Source::File(path.clone()).read().unwrap(), text.as_bytes());
        std::fs::write(&path, "").unwrap();
        assert_eq!(Source::File(path.clone()).read().unwrap(), b"");
        std::fs::write(&path, vec![b'#'; MAX_KUBECONFIG_BYTES + 4096]).unwrap();
        let read = Source::File(path).read().unwrap();
        assert_eq!(read.len(), MAX_KUBECONFIG_BYTES + 1);
    }

    #[tokio::test]
    async fn a_file_over_the_limit_is_refused_as_too_large() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        let mut text = relative_kubeconfig(creds.path());
        text.push_str(&format!("# {}\n", "x".repeat(MAX_KUBECONFIG_BYTES)));
        std::fs::write(&path, text).unwrap();
        let Err(e) = client(&Source::File(path), &cluster("c1.yaml"), false, "t").await else {
            panic!("a kubeconfig over 1 MiB was read")
        };
        assert!(e.to_string().contains("larger than 1 MiB"), "{e}");
    }

    #[tokio::test]
    async fn a_kubeconfig_without_tls_verification_is_refused_unless_allowed() {
        let creds = tempfile::tempdir().unwrap();
        let path = creds.path().join("c1.yaml");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
        )
        .unwrap();
        let Err(e) = client(&Source::File(path.clone()), &cluster("c1.yaml"), false, "t").await
        else {
            panic!("TLS verification switched off without the operator's consent")
        };
        assert!(e.to_string().contains("insecure-skip-tls-verify"), "{e}");
        assert!(e.to_string().contains(INSECURE_ENV), "{e}");
        assert!(
            client(&Source::File(path.clone()), &cluster("c1.yaml"), true, "t")
                .await
                .is_ok()
        );
    }
}
