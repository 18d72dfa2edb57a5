//! The organisation PKI: a root CA, one or more generations of issuing CA,
//! device certificates and CRLs. Pure: time and randomness come in as
//! arguments; the only I/O is [`Pki::open_or_create`] and
//! [`Pki::rotate_issuing`], which read and write the data directory.
//!
//! Files in the data directory (`<dir>`):
//!
//! - `root.crt.pem`, `root.key.sealed`: the root CA. The sealed root key may
//!   be moved offline after the first start; it is needed only to rotate the
//!   issuing CA.
//! - `issuing-<n>.crt.pem`, `issuing-<n>.key.sealed`: generation `n` of the
//!   issuing CA. The highest generation issues; older ones are kept so that
//!   their certificates stay valid and their CRLs can still be signed.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use rand_core::CryptoRng;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::csr::{P256PublicKey, VerifiedCsr};
use crate::error::{Error, Result};
use crate::keystore::{self, Kek};
use crate::types::{CertSerial, DeviceId};

/// The OID of the X25519 identity-key extension, as text.
///
/// A UUID-based OID (ITU-T X.667, arc 2.25) needs no registration. The
/// extension's value is an OCTET STRING holding the 32-byte key.
pub const IDENTITY_KEY_OID: &str = "2.25.257553891903628009591340796816248656578";

/// The UUID integer under 2.25 (c1c31344-f6f3-4abf-b3eb-19566491d2c2).
const IDENTITY_KEY_UUID: u128 = 257_553_891_903_628_009_591_340_796_816_248_656_578;

/// rcgen writes OID arcs as `u64`, too small for a UUID arc. The certificate
/// is therefore built with this placeholder OID, whose DER encoding has
/// exactly the same length (20 bytes) as the real one, and [`OidPatchingKey`]
/// swaps in the real OID before signing; the same swap is applied to the
/// finished certificate. The placeholder arcs are random, so the byte
/// pattern occurs nowhere else by accident; if it occurs more than once the
/// issuance is refused.
const PLACEHOLDER_ARCS: [u64; 4] = [2, 25, 16_089_734_061_462_546_405, 1_239_637_126_111_145_484];

static IDENTITY_OID_DER: LazyLock<Vec<u8>> =
    LazyLock::new(|| oid_content(&[2, 25, IDENTITY_KEY_UUID]));
static PLACEHOLDER_OID_DER: LazyLock<Vec<u8>> =
    LazyLock::new(|| oid_content(&PLACEHOLDER_ARCS.map(u128::from)));

/// DER content octets of an OID (without tag and length).
pub(crate) fn oid_content(arcs: &[u128]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |mut value: u128| {
        let mut digits = vec![(value & 0x7f) as u8];
        value >>= 7;
        while value > 0 {
            digits.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        digits.reverse();
        out.extend_from_slice(&digits);
    };
    if let [first, second, rest @ ..] = arcs {
        push(first * 40 + second);
        for arc in rest {
            push(*arc);
        }
    }
    out
}

/// Replaces the single occurrence of the placeholder OID with the real one.
/// `None` if the placeholder does not occur exactly once.
fn patch_oid(bytes: &[u8]) -> Option<Vec<u8>> {
    let pattern = PLACEHOLDER_OID_DER.as_slice();
    let mut found = bytes
        .windows(pattern.len())
        .enumerate()
        .filter(|(_, w)| *w == pattern);
    let (at, _) = found.next()?;
    if found.next().is_some() {
        return None;
    }
    let mut out = bytes.to_vec();
    out[at..at + pattern.len()].copy_from_slice(&IDENTITY_OID_DER);
    Some(out)
}

/// A CA key that signs what rcgen built, with the identity-key OID swapped in
/// if the placeholder is present (certificates), unchanged otherwise (CRLs).
struct OidPatchingKey(KeyPair);

impl Drop for OidPatchingKey {
    fn drop(&mut self) {
        // Wipes rcgen's PKCS#8 copy of the key; ring's own key schedule is
        // not wiped (ring offers no way to).
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl PublicKeyData for OidPatchingKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        PublicKeyData::algorithm(&self.0)
    }
}

impl SigningKey for OidPatchingKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let pattern = PLACEHOLDER_OID_DER.as_slice();
        if msg.windows(pattern.len()).any(|w| w == pattern) {
            let patched =
                patch_oid(msg).ok_or(rcgen::Error::X509("placeholder occurs twice".into()))?;
            self.0.sign(&patched)
        } else {
            self.0.sign(msg)
        }
    }
}

/// Validity of the root CA.
const ROOT_VALIDITY: Duration = Duration::days(20 * 365);
/// Validity of each issuing CA generation.
const ISSUING_VALIDITY: Duration = Duration::days(5 * 365);
/// Certificates start a little in the past so a device whose clock runs
/// slightly behind still accepts them.
const BACKDATE: Duration = Duration::minutes(5);

/// What the PKI needs to know about the organisation and its endpoints.
#[derive(Clone, Debug)]
pub struct PkiConfig {
    /// Organisation name, written into the subjects (`O=`).
    pub org_name: String,
    /// Public base URL of the enrollment service, e.g.
    /// `https://enroll.example.org`; CRL distribution points live under it.
    pub public_base_url: String,
    /// Validity of device certificates.
    pub device_validity: Duration,
    /// How long a CRL is valid (`nextUpdate - thisUpdate`).
    pub crl_validity: Duration,
}

impl PkiConfig {
    /// A configuration with the default validities (90 days for devices,
    /// 7 days for CRLs).
    pub fn new(org_name: impl Into<String>, public_base_url: impl Into<String>) -> Self {
        PkiConfig {
            org_name: org_name.into(),
            public_base_url: public_base_url.into(),
            device_validity: Duration::days(90),
            crl_validity: Duration::days(7),
        }
    }

    /// URL of the CRL of issuing CA generation `generation`.
    pub fn crl_url(&self, generation: u32) -> String {
        format!(
            "{}/pki/crl/{generation}.der",
            self.public_base_url.trim_end_matches('/')
        )
    }
}

/// One generation of the issuing CA.
pub struct IssuingCa {
    generation: u32,
    cert_der: Vec<u8>,
    cert_pem: String,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, OidPatchingKey>,
}

impl std::fmt::Debug for IssuingCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuingCa")
            .field("generation", &self.generation)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl IssuingCa {
    /// The generation number (1 for the first issuing CA).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn from_parts(generation: u32, cert_der: Vec<u8>, key: KeyPair) -> Result<Self> {
        let (_, x509) = X509Certificate::from_der(&cert_der)
            .map_err(|_| Error::PkiState(format!("issuing-{generation}.crt.pem does not parse")))?;
        let not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), OidPatchingKey(key))?;
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        Ok(IssuingCa {
            generation,
            cert_der,
            cert_pem,
            not_after,
            issuer,
        })
    }
}

/// A freshly issued device certificate.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The certificate's serial number.
    pub serial: CertSerial,
    /// The device id named in the subject and the SAN.
    pub device_id: DeviceId,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// The certificate, PEM.
    pub pem: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// Generation of the issuing CA that signed it.
    pub issuer_generation: u32,
}

/// A TLS server certificate for the organisation's listeners.
pub struct ServerCertificate {
    /// Leaf, then the issuing CA, DER.
    pub chain_der: Vec<Vec<u8>>,
    /// Leaf, then the issuing CA, PEM.
    pub chain_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8_der: Zeroizing<Vec<u8>>,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// What a device certificate is made of, besides the key.
#[derive(Clone, Debug)]
pub struct DeviceCertRequest<'a> {
    /// The verified request (carries the device's P-256 key).
    pub csr: &'a VerifiedCsr,
    /// The device id, fresh for enrollment, kept on renewal.
    pub device_id: DeviceId,
    /// The X25519 identity public key.
    pub identity_key: [u8; 32],
    /// The serial number, fresh and random.
    pub serial: CertSerial,
}

/// What we read back from a presented device certificate.
#[derive(Clone, Debug)]
pub struct DeviceCertInfo {
    /// Serial number.
    pub serial: CertSerial,
    /// Device id from the subject alternative name.
    pub device_id: DeviceId,
    /// The certificate's P-256 key.
    pub public_key: P256PublicKey,
    /// The X25519 identity key from our extension.
    pub identity_key: [u8; 32],
    /// Generation of the issuing CA that signed it.
    pub issuer_generation: u32,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

/// The organisation's CAs, loaded into memory.
pub struct Pki {
    dir: PathBuf,
    config: PkiConfig,
    root_der: Vec<u8>,
    root_pem: String,
    /// Sorted by generation, ascending; never empty.
    issuing: Vec<IssuingCa>,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("issuing", &self.issuing)
            .finish_non_exhaustive()
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    // rcgen does not expose its PEM encoder for arbitrary DER, so this is the
    // 64-column base64 of RFC 7468.
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII: local invariant.
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn random_serial(rng: &mut (impl CryptoRng + ?Sized)) -> CertSerial {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    CertSerial::from_random(bytes)
}

fn ca_name(org: &str, common_name: String) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, common_name);
    dn
}

fn root_params(config: &PkiConfig, now: OffsetDateTime, serial: CertSerial) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    params.not_before = now - BACKDATE;
    params.not_after = now + ROOT_VALIDITY;
    params.distinguished_name = ca_name(
        &config.org_name,
        format!("{} Kontor Root CA", config.org_name),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn issuing_params(
    config: &PkiConfig,
    generation: u32,
    now: OffsetDateTime,
    serial: CertSerial,
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    params.not_before = now - BACKDATE;
    params.not_after = now + ISSUING_VALIDITY;
    params.distinguished_name = ca_name(
        &config.org_name,
        format!("{} Kontor Issuing CA {generation}", config.org_name),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = true;
    params
}

fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = secret;
        let mut file = options.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn read_pem_cert(path: &Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    crate::csr::pem_to_der(&text, &["CERTIFICATE"])
        .ok_or_else(|| Error::PkiState(format!("{} is not a PEM certificate", path.display())))
}

fn generate_key() -> Result<KeyPair> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn load_key(kek: &Kek, path: &Path, label: &str) -> Result<KeyPair> {
    let sealed = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let pkcs8 = keystore::open(kek, label, &sealed)?;
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| Error::SealedKey(label.to_owned()))
}

impl Pki {
    /// Loads the PKI from `dir`, creating the root and the first issuing CA
    /// if the directory holds none. The root key is not needed when the
    /// root certificate already exists (it may be offline).
    pub fn open_or_create(
        dir: &Path,
        kek: &Kek,
        config: PkiConfig,
        now: OffsetDateTime,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let root_path = dir.join("root.crt.pem");
        if !root_path.exists() {
            let key = generate_key()?;
            let params = root_params(&config, now, random_serial(rng));
            let cert = params.self_signed(&key)?;
            let sealed = keystore::seal(kek, "root", &Zeroizing::new(key.serialize_der()), rng);
            write_file(&dir.join("root.key.sealed"), &sealed, true)?;
            write_file(&root_path, cert.pem().as_bytes(), false)?;
        }
        let root_der = read_pem_cert(&root_path)?;
        let mut pki = Pki {
            dir: dir.to_owned(),
            config,
            root_pem: pem_encode("CERTIFICATE", &root_der),
            root_der,
            issuing: Vec::new(),
        };
        let mut generation = 1;
        loop {
            let cert_path = dir.join(format!("issuing-{generation}.crt.pem"));
            if !cert_path.exists() {
                break;
            }
            let label = format!("issuing-{generation}");
            let key = load_key(kek, &dir.join(format!("{label}.key.sealed")), &label)?;
            pki.issuing.push(IssuingCa::from_parts(
                generation,
                read_pem_cert(&cert_path)?,
                key,
            )?);
            generation += 1;
        }
        if pki.issuing.is_empty() {
            pki.rotate_issuing(kek, None, now, rng)?;
        }
        Ok(pki)
    }

    /// Creates the next generation of issuing CA, signed by the root, and
    /// makes it the one that issues. Older generations stay loaded: their
    /// certificates remain valid and their CRLs are still signed.
    ///
    /// `root_key_file` names the sealed root key when it is not in the data
    /// directory (the operator brought it from offline storage).
    pub fn rotate_issuing(
        &mut self,
        kek: &Kek,
        root_key_file: Option<&Path>,
        now: OffsetDateTime,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<u32> {
        let root_key_path =
            root_key_file.map_or_else(|| self.dir.join("root.key.sealed"), Path::to_owned);
        if !root_key_path.exists() {
            return Err(Error::RootKeyOffline);
        }
        let root_key = load_key(kek, &root_key_path, "root")?;
        let root = Issuer::from_ca_cert_der(&self.root_der.as_slice().into(), root_key)?;
        let generation = self.issuing.last().map_or(1, |ca| ca.generation + 1);
        let key = generate_key()?;
        let params = issuing_params(&self.config, generation, now, random_serial(rng));
        let cert = params.signed_by(&key, &root)?;
        let label = format!("issuing-{generation}");
        let sealed = keystore::seal(kek, &label, &Zeroizing::new(key.serialize_der()), rng);
        write_file(&self.dir.join(format!("{label}.key.sealed")), &sealed, true)?;
        write_file(
            &self.dir.join(format!("{label}.crt.pem")),
            cert.pem().as_bytes(),
            false,
        )?;
        self.issuing
            .push(IssuingCa::from_parts(generation, cert.der().to_vec(), key)?);
        Ok(generation)
    }

    /// The configuration.
    pub fn config(&self) -> &PkiConfig {
        &self.config
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root certificate, PEM.
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// The issuing CA that signs new certificates.
    pub fn current(&self) -> &IssuingCa {
        // `open_or_create` never returns a Pki without an issuing CA: local invariant.
        self.issuing.last().expect("at least one issuing CA")
    }

    /// All issuing CA generations, oldest first.
    pub fn issuing(&self) -> &[IssuingCa] {
        &self.issuing
    }

    /// The issuing CA of generation `generation`.
    pub fn generation(&self, generation: u32) -> Option<&IssuingCa> {
        self.issuing.iter().find(|ca| ca.generation == generation)
    }

    /// Issues a device certificate from a verified request. Pure: no I/O.
    pub fn issue_device(
        &self,
        request: &DeviceCertRequest<'_>,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate> {
        let ca = self.current();
        let urn = request.device_id.urn();
        let not_before = now - BACKDATE;
        let not_after = now + self.config.device_validity;
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(request.serial.as_bytes()));
        params.not_before = not_before;
        params.not_after = not_after;
        params.distinguished_name = ca_name(&self.config.org_name, urn.clone());
        params.subject_alt_names = vec![SanType::URI(urn.try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.config.crl_url(ca.generation)],
        }];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let mut content = Vec::with_capacity(34);
        content.extend_from_slice(&[0x04, 0x20]);
        content.extend_from_slice(&request.identity_key);
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &PLACEHOLDER_ARCS,
            content,
        )];
        let cert = params
            .signed_by(&request.csr.public_key, &ca.issuer)
            .map_err(|_| {
                Error::MalformedRequest("request contains a reserved byte sequence".into())
            })?;
        let der = patch_oid(cert.der()).ok_or_else(|| {
            Error::MalformedRequest("request contains a reserved byte sequence".into())
        })?;
        Ok(IssuedCertificate {
            serial: request.serial,
            device_id: request.device_id,
            pem: pem_encode("CERTIFICATE", &der),
            der,
            not_before,
            not_after,
            issuer_generation: ca.generation,
        })
    }

    /// Issues a TLS server certificate for the organisation's own listeners
    /// (relay, enrollment) with a fresh P-256 key, signed by the current
    /// issuing CA, so devices trust it through the root they got at
    /// enrollment. `names` are DNS names or IP addresses. Pure: no I/O.
    pub fn issue_server(
        &self,
        names: &[String],
        validity: Duration,
        now: OffsetDateTime,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<ServerCertificate> {
        if names.is_empty() {
            return Err(Error::MalformedRequest(
                "a server certificate needs a name".into(),
            ));
        }
        let ca = self.current();
        let key = generate_key()?;
        let mut params = CertificateParams::default();
        params.serial_number = Some(SerialNumber::from_slice(random_serial(rng).as_bytes()));
        params.not_before = now - BACKDATE;
        params.not_after = now + validity;
        params.distinguished_name = ca_name(&self.config.org_name, names[0].clone());
        params.subject_alt_names = names
            .iter()
            .map(|name| match name.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => Ok(SanType::DnsName(name.clone().try_into()?)),
            })
            .collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Clients (and TLS scanners) can check the server certificate's
        // revocation too.
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.config.crl_url(ca.generation)],
        }];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let cert = params.signed_by(&key, &ca.issuer)?;
        Ok(ServerCertificate {
            chain_der: vec![cert.der().to_vec(), ca.cert_der.clone()],
            chain_pem: format!("{}{}", cert.pem(), ca.cert_pem),
            key_pkcs8_der: Zeroizing::new(key.serialize_der()),
            not_after: now + validity,
        })
    }

    /// The PEM chain a device presents: its certificate, then its issuing CA.
    pub fn chain_pem(&self, cert: &IssuedCertificate) -> String {
        let issuing = self
            .generation(cert.issuer_generation)
            .unwrap_or(self.current());
        format!("{}{}", cert.pem, issuing.cert_pem)
    }

    /// Checks that `der` is a device certificate signed by one of our issuing
    /// CAs and reads its fields. Does not look at validity or revocation.
    pub fn verify_device_cert(&self, der: &[u8]) -> Result<DeviceCertInfo> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| Error::UnknownCertificate)?;
        if !rest.is_empty() {
            return Err(Error::UnknownCertificate);
        }
        let ca = self
            .issuing
            .iter()
            .rev()
            .find(|ca| {
                X509Certificate::from_der(&ca.cert_der).is_ok_and(|(_, ca_cert)| {
                    ca_cert.subject() == cert.issuer()
                        && cert.verify_signature(Some(ca_cert.public_key())).is_ok()
                })
            })
            .ok_or(Error::UnknownCertificate)?;
        let serial = CertSerial::from_slice(cert.raw_serial()).ok_or(Error::UnknownCertificate)?;
        let public_key =
            crate::csr::p256_key(cert.public_key()).map_err(|_| Error::UnknownCertificate)?;
        let mut device_id = None;
        let mut identity_key = None;
        for extension in cert.extensions() {
            if extension.oid.as_bytes() == IDENTITY_OID_DER.as_slice()
                && let [0x04, 0x20, key @ ..] = extension.value
            {
                identity_key = <[u8; 32]>::try_from(key).ok();
            }
            if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) =
                extension.parsed_extension()
            {
                for name in &san.general_names {
                    if let x509_parser::extensions::GeneralName::URI(uri) = name {
                        device_id = DeviceId::from_urn(uri);
                    }
                }
            }
        }
        Ok(DeviceCertInfo {
            serial,
            device_id: device_id.ok_or(Error::UnknownCertificate)?,
            public_key,
            identity_key: identity_key.ok_or(Error::UnknownCertificate)?,
            issuer_generation: ca.generation,
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
        })
    }

    /// Signs the CRL of issuing CA `generation` listing `revoked`.
    /// `crl_number` must grow with every CRL of that CA.
    pub fn crl(
        &self,
        generation: u32,
        revoked: &[(CertSerial, OffsetDateTime)],
        crl_number: u64,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>> {
        let ca = self
            .generation(generation)
            .ok_or_else(|| Error::PkiState(format!("no issuing CA generation {generation}")))?;
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + self.config.crl_validity,
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|(serial, at)| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial.as_bytes()),
                    revocation_time: *at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&ca.issuer)?.der().to_vec())
    }
}
