//! TLS for the device API: mandatory client certificates from the
//! organisation's CA, checked against its CRLs and, at every handshake,
//! against provisioning's in-memory deny list, so a revocation takes effect
//! at once without rebuilding the server configuration.
//!
//! TLS 1.2 and 1.3 only, with ring's suites: all ECDHE (forward secret) and
//! AEAD (AES-GCM, ChaCha20-Poly1305).

use std::sync::Arc;

use kontor_provisioning::service::DenyList;
use kontor_provisioning::{CertSerial, DeviceId};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::error::{Error, Result};

/// What the server presents and whom it trusts.
#[derive(Debug)]
pub struct TlsMaterial {
    /// The server's certificate chain, leaf first.
    pub server_chain: Vec<CertificateDer<'static>>,
    /// The server's private key.
    pub server_key: PrivateKeyDer<'static>,
    /// The organisation's root CA, which vouches (through its issuing CAs)
    /// for every device certificate.
    pub client_roots: Vec<CertificateDer<'static>>,
    /// The organisation's CRLs, one per issuing CA generation.
    pub crls: Vec<CertificateRevocationListDer<'static>>,
}

/// The crypto provider of the whole tree (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The device listener's TLS configuration.
pub fn server_config(material: TlsMaterial, deny: DenyList) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for root in material.client_roots {
        roots
            .add(root)
            .map_err(|e| Error::Tls(format!("organisation root: {e}")))?;
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(material.crls)
        // The issuing CAs publish CRLs for device certificates; the root
        // publishes none for the issuing CAs (it is offline), so only the
        // device certificate's revocation is checked.
        .only_check_end_entity_revocation()
        .build()
        .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
    let verifier = Arc::new(DenyListVerifier { inner, deny });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(material.server_chain, material.server_key)
        .map_err(|e| Error::Tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Our order of suites (ring's, strongest first), not the client's.
    config.ignore_client_order = true;
    // No session resumption: a resumed session skips the client certificate
    // check, and a device revoked since its last full handshake must be
    // refused at the next one.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A TLS configuration without client certificates, for the enrollment
/// listener (devices have no certificate yet; the token authenticates).
pub fn server_config_without_client_auth(
    server_chain: Vec<CertificateDer<'static>>,
    server_key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(server_chain, server_key)
        .map_err(|e| Error::Tls(format!("server certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The device identity a verified client certificate names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// From the SAN URI `urn:kontor:device:<hex>`.
    pub device_id: DeviceId,
    /// The certificate's serial.
    pub serial: CertSerial,
}

/// Reads the device id and serial from a (verified) device certificate.
pub fn peer_identity(der: &[u8]) -> Result<PeerIdentity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| Error::DeviceRefused("unreadable client certificate"))?;
    let serial = CertSerial::from_slice(cert.raw_serial()).ok_or(Error::DeviceRefused(
        "client certificate serial is not ours",
    ))?;
    let san = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or(Error::DeviceRefused("client certificate names no device"))?;
    let device_id = san
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => DeviceId::from_urn(uri),
            _ => None,
        })
        .ok_or(Error::DeviceRefused("client certificate names no device"))?;
    Ok(PeerIdentity { device_id, serial })
}

/// WebPKI verification, then the deny list.
#[derive(Debug)]
struct DenyListVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    deny: DenyList,
}

impl ClientCertVerifier for DenyListVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.deny.contains_raw(cert.raw_serial()) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }
}
