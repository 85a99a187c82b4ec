//! TLS to PostgreSQL and Redis through rustls (ring): the system roots plus
//! an optional CA file, and errors that name the setting to fix.
//!
//! May import: nothing of Recall's (the bottom layer). The layers:
//! docs/DESIGN.md, "Parts".

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Makes ring the process's rustls provider (the redis crate builds its
/// configs from the default). Idempotent; a provider already set wins.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How a TLS client checks the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Chain to a trusted root, hostname not checked (`sslmode=require`,
    /// `verify-ca`): stricter than libpq's `require`, which checks nothing.
    Chain,
    /// Chain and hostname (`sslmode=verify-full`).
    Full,
}

/// The roots a client trusts: the system's, plus every certificate in
/// `ca_file`. `setting` names the variable in errors.
pub fn roots(ca_file: Option<&Path>, setting: &str) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root rustls cannot parse is skipped, as browsers do.
        let _ = store.add(cert);
    }
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{setting} {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{setting} {}: no PEM certificate in the file",
                path.display()
            ));
        }
        for cert in certs {
            store
                .add(cert)
                .map_err(|e| format!("{setting} {}: {e}", path.display()))?;
        }
    }
    if store.is_empty() {
        return Err(format!(
            "no trusted roots: the system has none and {setting} is not set"
        ));
    }
    Ok(store)
}

/// A rustls client config over `roots`.
pub fn client_config(roots: RootCertStore, verify: Verify) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Full => webpki,
        Verify::Chain => Arc::new(ChainOnly(webpki)),
    };
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The signature checks of `ChainOnly`: webpki's own, unchanged.
macro_rules! signature_checks_of_webpki {
    ($($check:ident),*) => {$(
        fn $check(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            self.0.$check(message, cert, dss)
        }
    )*};
}

/// Checks the chain like webpki but accepts a certificate for another name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    signature_checks_of_webpki!(verify_tls12_signature, verify_tls13_signature);

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// An error's whole cause chain on one line, with a hint naming `setting`
/// when the server's certificate was not trusted.
pub fn explain(e: &(dyn std::error::Error + 'static), setting: &str) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    let untrusted = [
        "UnknownIssuer",
        "invalid peer certificate",
        "certificate verify failed",
    ];
    if untrusted.iter().any(|u| text.contains(u)) {
        text.push_str(&format!(
            " (the server's TLS certificate is not trusted: set {setting} to the CA that signed it)"
        ));
    }
    text
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn url_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised_in_urls() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:pw@localhost:6379/0",
            "postgres://u:p@[::1]:5432/db",
            "postgres://127.0.0.2/db?sslmode=disable",
        ] {
            assert!(url_host_is_loopback(url), "{url}");
        }
        for url in [
            "redis://redis:6379",
            "postgres://u:p@db.example.com/db",
            "postgres://10.0.0.1/db",
        ] {
            assert!(!url_host_is_loopback(url), "{url}");
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_names_the_setting() {
        let err = roots(Some(Path::new("/nonexistent/ca.pem")), "RECALL_X_CA_FILE").unwrap_err();
        assert!(err.contains("RECALL_X_CA_FILE"), "{err}");
        let empty = std::env::temp_dir().join(format!("recall-empty-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = roots(Some(&empty), "RECALL_X_CA_FILE").unwrap_err();
        let _ = std::fs::remove_file(&empty);
        assert!(err.contains("RECALL_X_CA_FILE"), "{err}");
    }
}
