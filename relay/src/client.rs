//! A device's side of the relay and enrollment APIs: HTTP/1.1 over TLS
//! (with the device certificate where it has one), and the raw TLS stream
//! for a WebSocket. Used by the agent, the tests and the load harness.

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};
use crate::tls::provider;

/// How long a request may take before it is given up.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer from the server.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: hyper::HeaderMap,
    /// Response body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The stable error code of an error answer, or "".
    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

/// A TLS client for one server (`host:port`), trusting the organisation root.
#[derive(Clone)]
pub struct DeviceClient {
    address: String,
    server_name: ServerName<'static>,
    config: Arc<rustls::ClientConfig>,
    local: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

fn roots(root_der: &[u8]) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(root_der.to_vec()))
        .map_err(|e| Error::Tls(format!("organisation root: {e}")))?;
    Ok(roots)
}

impl DeviceClient {
    /// A client presenting the device certificate `chain_pem` (leaf first)
    /// with its PKCS#8 key.
    pub fn new(
        address: &str,
        server_name: &str,
        root_der: &[u8],
        chain_pem: &str,
        key_pkcs8_der: &[u8],
    ) -> Result<Self> {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| Error::Tls("device certificate chain is not PEM".into()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()));
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots(root_der)?)
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Tls(format!("device certificate: {e}")))?;
        Self::with_config(address, server_name, config)
    }

    /// A client without a certificate (for enrollment).
    pub fn anonymous(address: &str, server_name: &str, root_der: &[u8]) -> Result<Self> {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots(root_der)?)
            .with_no_client_auth();
        Self::with_config(address, server_name, config)
    }

    fn with_config(address: &str, server_name: &str, config: rustls::ClientConfig) -> Result<Self> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| Error::Config(format!("invalid server name {server_name:?}")))?;
        Ok(Self {
            address: address.to_owned(),
            server_name,
            config: Arc::new(config),
            local: None,
        })
    }

    /// The same client, connecting from the local address `ip` (a test
    /// uses 127.0.0.2 to be another host than a flood from 127.0.0.1).
    pub fn from_local_address(mut self, ip: std::net::IpAddr) -> Self {
        self.local = Some(ip);
        self
    }

    /// A TLS connection to the server (for a WebSocket).
    pub async fn connect(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = match self.local {
            None => TcpStream::connect(&self.address).await?,
            Some(ip) => {
                let remote = tokio::net::lookup_host(&self.address)
                    .await?
                    .find(|a| a.is_ipv4() == ip.is_ipv4())
                    .ok_or_else(|| std::io::Error::other("no address of the same family"))?;
                let socket = if ip.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()?
                } else {
                    tokio::net::TcpSocket::new_v6()?
                };
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(remote).await?
            }
        };
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), tcp)
            .await
    }

    /// One request on a fresh connection. Transport and TLS failures
    /// (including a refused certificate) are `Err`; HTTP errors are answers.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> std::io::Result<Answer> {
        let headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        self.request_with(method, path, &headers, body).await
    }

    /// One request with extra headers (an admin's `authorization`, say).
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> std::io::Result<Answer> {
        tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.request_inner(method, path, headers, body),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request timed out"))?
    }

    async fn request_inner(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> std::io::Result<Answer> {
        let io_err = |e: hyper::Error| std::io::Error::other(e.to_string());
        let tls = self.connect().await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(io_err)?;
        tokio::spawn(connection);
        let host = match &self.server_name {
            ServerName::DnsName(name) => name.as_ref().to_owned(),
            ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => String::new(),
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let response = sender.send_request(request).await.map_err(io_err)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(io_err)?
            .to_bytes()
            .to_vec();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}
