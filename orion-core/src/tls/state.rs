//! A node's live TLS material — the CA certificates it trusts and its own
//! certificate and key — and the rustls configs built over it.
//!
//! Every config reads the material at handshake time, so a renewed node
//! certificate or a changed set of trusted roots takes effect on the next
//! connection without a restart or a new listener.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use super::TlsError;

/// The crypto provider every Orion TLS config uses: ring (already in the
/// tree, and quick to build).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs ring as the process's default rustls provider when none is
/// installed yet. reqwest (built with rustls and no provider of its own)
/// panics building any client without one — also a plain-HTTP client — so
/// Orion calls this as a node starts; an embedder who installed another
/// provider first keeps it. Orion's own TLS configs name their provider and
/// never depend on the default.
pub fn ensure_default_provider() {
    if CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// This node's certificate and key, with when the certificate was issued and
/// when it expires (kept beside it: the renewal schedule reads them).
#[derive(Clone)]
pub struct NodeCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
    /// When it was issued.
    pub issued: SystemTime,
    /// When it expires.
    pub expires: SystemTime,
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert")
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

struct Material {
    /// Trusted CA certificates (one; two while the CA rotates).
    roots: Vec<CertificateDer<'static>>,
    /// Verifiers over `roots`, rebuilt when they change.
    server_verifier: Arc<rustls::client::WebPkiServerVerifier>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    /// This node's certificate and key; none before it has one (a node
    /// joining), when it serves no TLS and presents no certificate.
    key: Option<Arc<CertifiedKey>>,
    cert: Option<NodeCert>,
}

/// A node's TLS material, shared by its listeners and clients. Cheap to
/// clone; changes are seen by every config built from it.
#[derive(Clone)]
pub struct TlsState {
    inner: Arc<RwLock<Material>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.inner.read();
        f.debug_struct("TlsState")
            .field("roots", &m.roots.len())
            .field("cert", &m.cert)
            .finish()
    }
}

/// The certificates in a PEM bundle.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| TlsError::BadInput(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::BadInput("no certificate in the PEM text".into()));
    }
    Ok(certs)
}

fn verifiers(
    roots: &[CertificateDer<'static>],
    provider: &Arc<CryptoProvider>,
) -> Result<
    (
        Arc<rustls::client::WebPkiServerVerifier>,
        Arc<dyn ClientCertVerifier>,
    ),
    TlsError,
> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store
            .add(r.clone())
            .map_err(|e| TlsError::BadInput(format!("a CA certificate is not usable: {e}")))?;
    }
    let store = Arc::new(store);
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
        store.clone(),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::BadInput(format!("CA certificates: {e}")))?;
    let client = WebPkiClientVerifier::builder_with_provider(store, provider.clone())
        .build()
        .map_err(|e| TlsError::BadInput(format!("CA certificates: {e}")))?;
    Ok((server, client))
}

impl TlsState {
    /// Material trusting the CA certificates in `roots_pem`, with no node
    /// certificate yet.
    pub fn new(roots_pem: &str) -> Result<TlsState, TlsError> {
        ensure_default_provider();
        let provider = provider();
        let roots = parse_certs(roots_pem)?;
        let (server_verifier, client_verifier) = verifiers(&roots, &provider)?;
        Ok(TlsState {
            inner: Arc::new(RwLock::new(Material {
                roots,
                server_verifier,
                client_verifier,
                key: None,
                cert: None,
            })),
            provider,
        })
    }

    /// Material trusting `roots_pem` and presenting `cert`.
    pub fn with_cert(roots_pem: &str, cert: NodeCert) -> Result<TlsState, TlsError> {
        let s = TlsState::new(roots_pem)?;
        s.set_cert(cert)?;
        Ok(s)
    }

    /// Presents `cert` from the next handshake on.
    pub fn set_cert(&self, cert: NodeCert) -> Result<(), TlsError> {
        let chain = parse_certs(&cert.cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes())
            .map_err(|e| TlsError::BadInput(format!("not a PEM private key: {e}")))?;
        let signer = self
            .provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsError::BadInput(format!("the private key is not usable: {e}")))?;
        let key = Arc::new(CertifiedKey::new(chain, signer));
        let mut m = self.inner.write();
        m.key = Some(key);
        m.cert = Some(cert);
        Ok(())
    }

    /// Trusts the CA certificates in `roots_pem` (replacing those trusted
    /// before) from the next handshake on.
    pub fn set_roots(&self, roots_pem: &str) -> Result<(), TlsError> {
        let roots = parse_certs(roots_pem)?;
        let (server_verifier, client_verifier) = verifiers(&roots, &self.provider)?;
        let mut m = self.inner.write();
        m.roots = roots;
        m.server_verifier = server_verifier;
        m.client_verifier = client_verifier;
        Ok(())
    }

    /// The node certificate presented now, if any.
    pub fn cert(&self) -> Option<NodeCert> {
        self.inner.read().cert.clone()
    }

    /// The trusted CA certificates, PEM.
    pub fn roots_pem(&self) -> String {
        let m = self.inner.read();
        m.roots
            .iter()
            .map(|c| super::der_to_pem(c.as_ref()))
            .collect()
    }

    /// A server config presenting this node's certificate. With
    /// `require_client_cert`, a client must present a certificate from a
    /// trusted CA (the Raft port); without, it may present one (the API,
    /// where CLIs come with tokens and nodes with certificates).
    pub fn server_config(&self, require_client_cert: bool) -> Arc<ServerConfig> {
        let verifier = Arc::new(LiveClientVerifier {
            state: self.clone(),
            mandatory: require_client_cert,
        });
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(LiveResolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// A client config that trusts a server whose certificate chains to a
    /// trusted CA (whatever name it carries: the CA is this cluster's own, and
    /// nodes are dialled by addresses a certificate may not list) and presents
    /// this node's certificate when it has one.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LiveServerVerifier(self.clone())))
            .with_client_cert_resolver(Arc::new(LiveResolver(self.clone())));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

/// A client config for a client meant for plain HTTP: it trusts no CA, so an
/// `https://` URL fails. Given to reqwest, it also keeps reqwest from loading
/// the platform's certificate store (absent in a minimal container image,
/// where building the client would fail).
pub fn plain_client_config() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth()
}

/// A client config that accepts any server certificate: only for the first
/// request of a join, which fetches the CA and checks it against the digest
/// in the join token before anything else is sent.
pub fn unverified_client_config() -> ClientConfig {
    let provider = provider();
    ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth()
}

/// Hands out the node's current certificate, as a server and as a client.
#[derive(Debug)]
struct LiveResolver(TlsState);

impl ResolvesServerCert for LiveResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.inner.read().key.clone()
    }
}

impl ResolvesClientCert for LiveResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.inner.read().key.clone()
    }

    fn has_certs(&self) -> bool {
        self.0.inner.read().key.is_some()
    }
}

/// The most CA certificates a node sends after its own: one, the
/// cross-signed new CA while the cluster's CA rotates. Orion's CA issues
/// node certificates directly, so a longer chain is not from a member.
pub const MAX_INTERMEDIATES: usize = 1;

/// A presented chain longer than [`MAX_INTERMEDIATES`] allows.
#[derive(thiserror::Error)]
#[error("certificate chain too long: {0} CA certificates after the node's (at most {MAX_INTERMEDIATES})")]
pub struct ChainTooLong(pub usize);

// rustls shows the cause of a refused certificate with `Debug`: make it the
// sentence, so the log line says what was wrong.
impl std::fmt::Debug for ChainTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn check_chain_length(intermediates: &[CertificateDer<'_>]) -> Result<(), rustls::Error> {
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(ChainTooLong(intermediates.len()))),
        )));
    }
    Ok(())
}

/// Checks a server's chain against the trusted roots of the moment; a name
/// that does not match is not an error (see [`TlsState::client_config`]).
#[derive(Debug)]
struct LiveServerVerifier(TlsState);

impl ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        check_chain_length(intermediates)?;
        let v = self.0.inner.read().server_verifier.clone();
        match v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = self.0.inner.read().server_verifier.clone();
        v.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = self.0.inner.read().server_verifier.clone();
        v.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .inner
            .read()
            .server_verifier
            .supported_verify_schemes()
    }
}

/// Checks a client's chain against the trusted roots of the moment.
#[derive(Debug)]
struct LiveClientVerifier {
    state: TlsState,
    mandatory: bool,
}

impl ClientCertVerifier for LiveClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a node has one certificate and sends it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_chain_length(intermediates)?;
        let v = self.state.inner.read().client_verifier.clone();
        v.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = self.state.inner.read().client_verifier.clone();
        v.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let v = self.state.inner.read().client_verifier.clone();
        v.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.state
            .inner
            .read()
            .client_verifier
            .supported_verify_schemes()
    }
}

/// Accepts any certificate (signatures still checked): see
/// [`unverified_client_config`].
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::NodeRole;
    use crate::tls::{CertAuthority, NodeKey, Subject};

    fn leaf(ca: &CertAuthority, id: &str) -> CertificateDer<'static> {
        let key = NodeKey::generate().unwrap();
        let subject = Subject {
            node_id: id.into(),
            role: NodeRole::Manager,
            ips: vec![],
            dns: vec![],
        };
        let pem = ca
            .issue(&subject, &key.public_key(), Duration::from_secs(60))
            .unwrap();
        parse_certs(&pem).unwrap().remove(0)
    }

    fn one(pem: &str) -> CertificateDer<'static> {
        parse_certs(pem).unwrap().remove(0)
    }

    /// A node under a CA cross-signed by the trusted root (a CA rotation)
    /// is accepted with the cross-signed certificate after its own, by both
    /// ends' verifiers; a chain with more CAs than that is refused by name,
    /// even when every link is signed, and so is a certificate the trusted
    /// root never reaches.
    #[test]
    fn a_cross_signed_chain_passes_and_a_longer_one_is_refused() {
        let root = CertAuthority::generate("t").unwrap();
        let next = CertAuthority::generate("t").unwrap();
        let third = CertAuthority::generate("t").unwrap();
        let state = TlsState::new(&root.cert_pem).unwrap();
        let client = LiveClientVerifier {
            state: state.clone(),
            mandatory: true,
        };
        let server = LiveServerVerifier(state.clone());
        let now = UnixTime::now();
        let name = ServerName::try_from("localhost").unwrap();

        let cross = one(&root.cross_sign(&next).unwrap());
        let node = leaf(&next, "n1");
        client
            .verify_client_cert(&node, std::slice::from_ref(&cross), now)
            .expect("old root → cross-signed next CA → node");
        server
            .verify_server_cert(&node, std::slice::from_ref(&cross), &name, &[], now)
            .expect("the same, as a server");
        assert!(
            client.verify_client_cert(&node, &[], now).is_err(),
            "without the cross-signed link the old root does not reach it"
        );

        let deep = leaf(&third, "n2");
        let chain = [one(&next.cross_sign(&third).unwrap()), cross.clone()];
        for e in [
            client.verify_client_cert(&deep, &chain, now).unwrap_err(),
            server
                .verify_server_cert(&deep, &chain, &name, &[], now)
                .unwrap_err(),
        ] {
            assert!(
                e.to_string().contains(
                    "certificate chain too long: 2 CA certificates after the node's (at most 1)"
                ),
                "{e}"
            );
        }
        let long: Vec<_> = std::iter::repeat_n(cross, 9).collect();
        let e = client.verify_client_cert(&node, &long, now).unwrap_err();
        assert!(e.to_string().contains("too long: 9"), "{e}");
    }
}
