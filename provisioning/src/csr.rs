//! PKCS#10 requests: parse, check the key and the self-signature.
//!
//! Only what we need is taken from the request: the P-256 public key. The
//! subject and any requested names or usages are ignored, because the CA
//! decides them (the rcgen trap: `CertificateSigningRequestParams::from_der`
//! would copy requested key usages, names and even `cA=TRUE`). A request that
//! asks for an extension we do not know is refused outright.

use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ECDSA_WITH_SHA256,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{Error, Result};

/// Largest CSR we parse, in bytes of DER; a P-256 request is about 300.
pub const CSR_SIZE_BYTES_MAX: usize = 4096;

/// An uncompressed P-256 public key (`04 || x || y`), checked to be on the curve
/// by the signature verification that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct P256PublicKey(pub(crate) [u8; 65]);

impl P256PublicKey {
    /// The 65 bytes of the uncompressed point.
    pub fn as_bytes(&self) -> &[u8; 65] {
        &self.0
    }
}

impl rcgen::PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// A request whose signature verified and whose key is P-256.
#[derive(Clone, Debug)]
pub struct VerifiedCsr {
    /// The requester's public key.
    pub public_key: P256PublicKey,
}

/// Decodes a CSR given as PEM (`CERTIFICATE REQUEST`) into DER.
pub fn csr_pem_to_der(pem: &str) -> Result<Vec<u8>> {
    pem_to_der(pem, &["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"]).ok_or(Error::MalformedCsr)
}

/// Decodes a certificate given as PEM (`CERTIFICATE`) into DER, as a
/// renewal presents it.
pub fn certificate_pem_to_der(pem: &str) -> Result<Vec<u8>> {
    pem_to_der(pem, &["CERTIFICATE"]).ok_or(Error::UnknownCertificate)
}

/// Decodes one PEM block with one of the accepted labels.
pub(crate) fn pem_to_der(pem: &str, labels: &[&str]) -> Option<Vec<u8>> {
    let (rest, block) = x509_parser::pem::parse_x509_pem(pem.trim().as_bytes()).ok()?;
    if !rest.iter().all(u8::is_ascii_whitespace) || !labels.contains(&block.label.as_str()) {
        return None;
    }
    Some(block.contents)
}

/// Parses a DER PKCS#10 request, checks that its key is ECDSA P-256, that it
/// is signed with ECDSA-SHA256 by that key, and that it requests no
/// extension we do not know.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr> {
    if der.len() > CSR_SIZE_BYTES_MAX {
        return Err(Error::MalformedCsr);
    }
    let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|_| Error::MalformedCsr)?;
    if !rest.is_empty() {
        return Err(Error::MalformedCsr);
    }
    let info = &csr.certification_request_info;
    let public_key = p256_key(&info.subject_pki)?;
    if csr.signature_algorithm.algorithm != OID_SIG_ECDSA_WITH_SHA256 {
        return Err(Error::UnsupportedKey(
            "signature algorithm must be ecdsa-with-SHA256",
        ));
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public_key.0[..])
        .verify(info.raw, &csr.signature_value.data)
        .map_err(|_| Error::CsrSignature)?;
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            match extension {
                // Known and harmless: the CA overwrites all of them.
                ParsedExtension::SubjectAlternativeName(_)
                | ParsedExtension::KeyUsage(_)
                | ParsedExtension::ExtendedKeyUsage(_)
                | ParsedExtension::BasicConstraints(_) => {}
                _ => return Err(Error::CsrExtension),
            }
        }
    }
    Ok(VerifiedCsr { public_key })
}

/// Checks that a SubjectPublicKeyInfo holds an uncompressed P-256 point.
pub(crate) fn p256_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<P256PublicKey> {
    if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
        return Err(Error::UnsupportedKey("key must be ECDSA P-256"));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .ok_or(Error::UnsupportedKey("key must be ECDSA P-256"))?;
    if curve != OID_EC_P256 {
        return Err(Error::UnsupportedKey("curve must be P-256"));
    }
    let point: [u8; 65] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| Error::UnsupportedKey("P-256 point must be 65 bytes, uncompressed"))?;
    if point[0] != 0x04 {
        return Err(Error::UnsupportedKey("P-256 point must be uncompressed"));
    }
    Ok(P256PublicKey(point))
}

/// Decodes the X25519 identity public key: 64 hex digits, not all zero.
pub fn parse_identity_key(hex_key: &str) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_key, &mut key).map_err(|_| Error::IdentityKey)?;
    if key == [0u8; 32] {
        return Err(Error::IdentityKey);
    }
    Ok(key)
}
