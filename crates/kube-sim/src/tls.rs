//! A CA generated at start and a server certificate signed by it for 127.0.0.1, localhost
//! and `*.`[`crate::kubeconfig::SERVER_DOMAIN`]: every cluster is reached at the same
//! address under a TLS server name of its own (`<cluster>.kube-sim.test`, the
//! kubeconfig's `tls-server-name`), which the one wildcard name covers however many
//! clusters there are. Kubeconfigs carry the CA so clients verify the server as they would
//! a real one. A restarted simulator (with a state file) serves the certificate it saved,
//! so the kubeconfigs clients hold keep verifying.

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A key or certificate cannot be generated.
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The certificates do not make a server configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A saved PEM document cannot be read.
    #[error("cannot read the saved {what}: {source}")]
    Pem {
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
}

/// The PEM documents a server is started from: what a restart keeps.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certs {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for Certs {
    // The key is a secret: never in a log line or an error.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs").finish_non_exhaustive()
    }
}

/// The CA certificate (PEM, for kubeconfigs) and the server's TLS configuration.
pub struct Tls {
    pub ca_pem: String,
    pub certs: Certs,
    pub config: Arc<rustls::ServerConfig>,
}

pub fn generate() -> Result<Tls, TlsError> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "psql-fleet-sim-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        format!("*.{}", crate::kubeconfig::SERVER_DOMAIN),
    ])?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        )));
    params
        .distinguished_name
        .push(DnType::CommonName, "psql-fleet-sim");
    let server_cert = params.signed_by(&server_key, &issuer)?;
    load(Certs {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// The TLS configuration serving `certs` (freshly generated or restored).
pub fn load(certs: Certs) -> Result<Tls, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let chain = vec![
        CertificateDer::from_pem_slice(certs.server_cert_pem.as_bytes())
            .map_err(pem("server certificate"))?,
        CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).map_err(pem("CA certificate"))?,
    ];
    let key = PrivateKeyDer::from_pem_slice(certs.server_key_pem.as_bytes())
        .map_err(pem("server key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: certs.ca_pem.clone(),
        certs,
        config: Arc::new(config),
    })
}
